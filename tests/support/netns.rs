//! Several hosts on one machine: N network namespaces on a Linux bridge, each joined by a
//! veth pair and given its own address in a private test subnet `10.77.<net>.0/24`. The
//! test process itself reaches them through the bridge's address `10.77.<net>.254`; no
//! other address is ever contacted. Needs root; fails the test, naming why, when it
//! cannot make the namespaces. Dropping the value kills every process it started and
//! deletes the namespaces and the bridge, also when the test failed.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Harnesses made by this process so far: part of every name, so tests run in parallel.
static MADE: AtomicU32 = AtomicU32::new(0);

pub struct Host {
    pub name: String,
    /// The namespace's name (`ip netns exec NAMESPACE …`).
    pub namespace: String,
    pub address: Ipv4Addr,
    /// The veth end on the bridge's side; down cuts the host off.
    veth: String,
}

pub struct Network {
    bridge: String,
    /// The test process's own address on the bridge.
    pub gateway: Ipv4Addr,
    hosts: Vec<Host>,
    children: Vec<Child>,
}

/// Runs `ip ARGS…`; panics with its error output when it fails.
fn ip(args: &[&str]) {
    let output = run_ip(args);
    assert!(
        output.status.success(),
        "`ip {}` failed: {} (the multi-host tests need root and the `ip` command of iproute2)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

fn run_ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (install iproute2: scripts/setup.sh): {e}"))
}

/// A third octet no bridge on this machine uses yet, starting from one derived from the
/// process id so that parallel test processes rarely even try the same one.
fn free_subnet(seed: u32) -> u8 {
    let shown = run_ip(&["-4", "-o", "addr", "show"]);
    let in_use = String::from_utf8_lossy(&shown.stdout).into_owned();
    (0..250u32)
        .map(|step| ((seed + step) % 250 + 1) as u8)
        .find(|octet| !in_use.contains(&format!("10.77.{octet}.")))
        .expect("every 10.77.x.0/24 test subnet is in use")
}

impl Network {
    /// Makes one namespace per name in `names`, each with loopback up and one address on
    /// a fresh bridge.
    pub fn new(names: &[&str]) -> Network {
        assert!(
            is_root(),
            "the multi-host tests make network namespaces and need root (run them as root)"
        );
        let pid = std::process::id();
        let serial = MADE.fetch_add(1, Ordering::SeqCst);
        let net = free_subnet(pid.wrapping_mul(7).wrapping_add(serial * 31));
        // Interface names are at most 15 bytes: keep the process id's last digits.
        let tag = format!("{}{}", pid % 100_000, serial);
        let bridge = format!("ttb{tag}");
        let gateway = Ipv4Addr::new(10, 77, net, 254);
        let mut network = Network {
            bridge: bridge.clone(),
            gateway,
            hosts: Vec::new(),
            children: Vec::new(),
        };
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for (i, name) in names.iter().enumerate() {
            let namespace = format!("tt-{pid}-{serial}-{name}");
            let veth = format!("ttv{tag}h{i}");
            let inner = format!("ttp{tag}h{i}");
            let address = Ipv4Addr::new(10, 77, net, i as u8 + 1);
            ip(&["netns", "add", &namespace]);
            // Pushed before the links: if a later step fails, drop still deletes it.
            network.hosts.push(Host {
                name: name.to_string(),
                namespace: namespace.clone(),
                address,
                veth: veth.clone(),
            });
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &veth, "master", &bridge]);
            ip(&["link", "set", &veth, "up"]);
            ip(&["link", "set", &inner, "netns", &namespace]);
            let inside = |args: &[&str]| {
                let mut all = vec!["-n", namespace.as_str()];
                all.extend_from_slice(args);
                ip(&all);
            };
            inside(&["link", "set", &inner, "name", "eth0"]);
            inside(&["addr", "add", &format!("{address}/24"), "dev", "eth0"]);
            inside(&["link", "set", "eth0", "up"]);
            inside(&["link", "set", "lo", "up"]);
        }
        network
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    pub fn address(&self, name: &str) -> Ipv4Addr {
        self.host(name).address
    }

    /// A command that runs `program` inside `host`'s namespace.
    pub fn command(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.host(host).namespace])
            .arg(program);
        command
    }

    /// Starts `command` (from [`Network::command`]) with its output appended to `log`;
    /// it is killed when the network is dropped. Returns its index for [`Network::kill`].
    pub fn spawn(&mut self, mut command: Command, log: &Path) -> usize {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn a process in a namespace");
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn kill(&mut self, index: usize) {
        let child = &mut self.children[index];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Takes `host`'s link down: nothing reaches it and it reaches nothing.
    pub fn cut(&self, host: &str) {
        ip(&["link", "set", &self.host(host).veth, "down"]);
    }

    pub fn restore(&self, host: &str) {
        ip(&["link", "set", &self.host(host).veth, "up"]);
    }

    /// Drops every packet between `a` and `b` (both ways), the rest of the network
    /// untouched: a partition between two hosts that keep their links.
    pub fn separate(&self, a: &str, b: &str) {
        for (from, to) in [(a, b), (b, a)] {
            let target = format!("{}/32", self.address(to));
            ip(&[
                "-n",
                &self.host(from).namespace,
                "route",
                "add",
                "blackhole",
                &target,
            ]);
        }
    }

    pub fn join(&self, a: &str, b: &str) {
        for (from, to) in [(a, b), (b, a)] {
            let target = format!("{}/32", self.address(to));
            ip(&[
                "-n",
                &self.host(from).namespace,
                "route",
                "del",
                "blackhole",
                &target,
            ]);
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace deletes its veth end, and with it the pair.
        for host in &self.hosts {
            let _ = run_ip(&["netns", "del", &host.namespace]);
            let _ = run_ip(&["link", "del", &host.veth]);
        }
        let _ = run_ip(&["link", "del", &self.bridge]);
    }
}

/// Whether the effective user is root, from /proc (no unsafe call needed).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Waits until `address` accepts TCP connections, up to `limit`.
pub async fn wait_listening(address: &str, limit: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} never listened on {address}");
}
