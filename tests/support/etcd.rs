//! A real etcd cluster for tests: N `etcd` processes on 127.0.0.1 with free ports and
//! temporary data folders, killed when the value is dropped. Members can be killed and
//! restarted one by one, and the leader found.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    _dir: tempfile::TempDir,
}

/// Fails the test, naming the tool, when the `etcd` binary is not on PATH: a test that
/// could not run must never pass (`scripts/setup.sh` installs it). Its own copy of
/// `support::require_tool`, because benches/meta.rs includes this file alone.
fn require_etcd() {
    let works = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        works,
        "`etcd` is not installed: run scripts/setup.sh (Debian package etcd-server)"
    );
}

/// Ports the kernel says are free now. The listeners are held until all are picked, so
/// one call never returns the same port twice.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl EtcdCluster {
    /// Starts `n` members and waits until they have a leader; fails the test when `etcd`
    /// is not installed.
    pub async fn start(n: usize) -> EtcdCluster {
        require_etcd();
        let dir = tempfile::Builder::new()
            .prefix("tritontube-etcd-")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            token,
            _dir: dir,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_for_leader(Duration::from_secs(30)).await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        let client_url = format!("http://127.0.0.1:{}", m.client_port);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.members[i].child = Some(child);
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// `127.0.0.1:port` of every member.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Kills member `i` (SIGKILL: no goodbye to its peers).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its old data; it rejoins the cluster.
    pub fn restart(&mut self, i: usize) {
        if self.members[i].child.is_none() {
            self.spawn(i);
        }
    }

    /// The data folder and log file of member `i`.
    pub fn member_paths(&self, i: usize) -> (&Path, &Path) {
        (&self.members[i].data_dir, &self.members[i].log)
    }

    /// The index of the member that is leader now, as the running members report it.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if !self.is_running(i) {
                continue;
            }
            let Some((member_id, leader_id)) = self.status(i).await else {
                continue;
            };
            if leader_id == 0 {
                continue;
            }
            if member_id == leader_id {
                return Some(i);
            }
            for j in 0..self.members.len() {
                if j != i
                    && self.is_running(j)
                    && self.status(j).await.is_some_and(|(id, _)| id == leader_id)
                {
                    return Some(j);
                }
            }
        }
        None
    }

    /// (member id, leader id) of member `i`, if it answers.
    async fn status(&self, i: usize) -> Option<(u64, u64)> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(1));
        let fut = async {
            let mut c = Client::connect([self.endpoint(i)], Some(options))
                .await
                .ok()?;
            let s = c.status().await.ok()?;
            Some((s.header()?.member_id(), s.leader()))
        };
        tokio::time::timeout(Duration::from_secs(2), fut)
            .await
            .ok()
            .flatten()
    }

    /// Waits (polling) until the running members agree on a leader; panics after `limit`.
    pub async fn wait_for_leader(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(i) = self.leader().await {
                return i;
            }
            if tokio::time::Instant::now() > deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| {
                        let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(5).collect();
                        format!("{}: {}", m.name, tail.join("\n"))
                    })
                    .collect();
                panic!(
                    "etcd cluster has no leader after {limit:?}\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes every key (a fresh store between tests sharing one cluster). Retries for a
    /// while: a busy machine can make the cluster change leader now and then.
    pub async fn wipe(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let mut c = Client::connect(self.endpoints(), None).await?;
                c.delete("", Some(etcd_client::DeleteOptions::new().with_all_keys()))
                    .await
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) if tokio::time::Instant::now() > deadline => panic!("wipe etcd: {e}"),
                Err(_) if tokio::time::Instant::now() > deadline => panic!("wipe etcd: timed out"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
