//! The hosts of the multi-host tests and what runs on them: etcd members, storage nodes
//! and web nodes started with `ip netns exec`, all with the cluster's certificates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use tritontube::admin_cli::{AdminClient, Caller};
use tritontube::trust::tls::ClusterTls;

use crate::support;
use crate::support::netns::{Network, wait_listening};
use crate::support::web::{http_client, make_video};

pub const ETCD: [&str; 3] = ["e1", "e2", "e3"];
pub const STORAGE: [&str; 3] = ["s1", "s2", "s3"];
pub const WEB: [&str; 2] = ["w1", "w2"];
pub const REPLICAS: u32 = 2;
pub const STORAGE_PORT: u16 = 8090;
const HTTP_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 8081;
/// A bound on waits for things that happen by themselves (start-up, hand-over): long
/// enough for a loaded 2-core machine, and a failure instead of a hang.
pub const PATIENCE: Duration = Duration::from_secs(120);

fn tritontube_cert(certs: &Path, args: &[&str]) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tritontube"))
        .arg("cert")
        .args(args)
        .arg("--certs-dir")
        .arg(certs)
        .output()
        .expect("run tritontube cert");
    assert!(output.status.success(), "cert {args:?}: {output:?}");
}

/// The hosts and what runs on them.
pub struct Cluster {
    pub net: Network,
    pub dir: tempfile::TempDir,
    pub certs: PathBuf,
    /// Another CA's certificates (a node's and an operator's), for outsiders.
    pub foreign: PathBuf,
    /// Held until the cluster is gone (the last field, so dropped last): one cluster of
    /// nine hosts at a time keeps two cores from starving the browser and the nodes.
    _alone: tokio::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Cluster {
    pub async fn start() -> Cluster {
        let alone = ONE_CLUSTER_AT_A_TIME.lock().await;
        support::require_tool("etcd", "etcd-server");
        let mut names: Vec<&str> = Vec::new();
        names.extend(ETCD);
        names.extend(STORAGE);
        names.extend(WEB);
        names.push("outsider");
        let net = Network::new(&names);
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let foreign = dir.path().join("foreign");
        let every_address: Vec<String> = names
            .iter()
            .filter(|n| **n != "outsider")
            .map(|n| net.address(n).to_string())
            .collect();
        for certs_dir in [&certs, &foreign] {
            tritontube_cert(certs_dir, &["create-ca"]);
            let mut node = vec!["create-node"];
            node.extend(every_address.iter().map(String::as_str));
            tritontube_cert(certs_dir, &node);
            tritontube_cert(certs_dir, &["create-client", "root"]);
        }
        let mut cluster = Cluster {
            net,
            dir,
            certs,
            foreign,
            _alone: alone,
        };
        cluster.start_etcd();
        for host in STORAGE {
            cluster.start_storage(host);
        }
        for host in STORAGE {
            wait_listening(&cluster.storage_address(host), PATIENCE, host).await;
        }
        for host in WEB {
            cluster.start_web(host);
        }
        for host in WEB {
            cluster.wait_web(host).await;
        }
        cluster
    }

    fn log(&self, what: &str) -> PathBuf {
        self.dir.path().join(format!("{what}.log"))
    }

    fn start_etcd(&mut self) {
        let peers: BTreeMap<&str, String> = ETCD
            .iter()
            .map(|h| (*h, format!("https://{}:2380", self.net.address(h))))
            .collect();
        let peer = |host: &str| peers[host].clone();
        let initial = ETCD
            .iter()
            .map(|h| format!("{h}={}", peer(h)))
            .collect::<Vec<_>>()
            .join(",");
        let cert = self.certs.join("node.crt");
        let key = self.certs.join("node.key");
        let ca = self.certs.join("ca.crt");
        for host in ETCD {
            let client_url = format!("https://{}:2379", self.net.address(host));
            let mut command = self.net.command(host, "etcd");
            command
                .args(["--name", host, "--data-dir"])
                .arg(self.dir.path().join(format!("{host}.etcd")))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer(host)])
                .args(["--initial-advertise-peer-urls", &peer(host)])
                .args(["--initial-cluster", &initial])
                .args([
                    "--initial-cluster-token",
                    &format!("tt-{}", self.net.gateway),
                ])
                .arg("--cert-file")
                .arg(&cert)
                .arg("--key-file")
                .arg(&key)
                .arg("--trusted-ca-file")
                .arg(&ca)
                .arg("--client-cert-auth")
                .arg("--peer-cert-file")
                .arg(&cert)
                .arg("--peer-key-file")
                .arg(&key)
                .arg("--peer-trusted-ca-file")
                .arg(&ca)
                .arg("--peer-client-cert-auth");
            let log = self.log(host);
            self.net.spawn(command, &log);
        }
    }

    pub fn store(&self, host: &str) -> PathBuf {
        self.dir.path().join(format!("{host}.store"))
    }

    pub fn storage_address(&self, host: &str) -> String {
        format!("{}:{STORAGE_PORT}", self.net.address(host))
    }

    fn start_storage(&mut self, host: &str) {
        let mut command = self.net.command(host, env!("CARGO_BIN_EXE_tritontube"));
        command
            .args(["storage", "--host", &self.net.address(host).to_string()])
            .args(["--port", &STORAGE_PORT.to_string()])
            .arg("--certs-dir")
            .arg(&self.certs)
            .arg(self.store(host))
            .env("RUST_LOG", "warn");
        let log = self.log(host);
        self.net.spawn(command, &log);
    }

    pub fn url(&self, web: &str) -> String {
        format!("http://{}:{HTTP_PORT}", self.net.address(web))
    }

    pub fn admin_address(&self, web: &str) -> String {
        format!("{}:{ADMIN_PORT}", self.net.address(web))
    }

    fn start_web(&mut self, host: &str) {
        let etcd = ETCD
            .iter()
            .map(|h| format!("{}:2379", self.net.address(h)))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = vec![self.admin_address(host)];
        nodes.extend(STORAGE.iter().map(|h| self.storage_address(h)));
        let mut command = self.net.command(host, env!("CARGO_BIN_EXE_tritontube"));
        command
            .args(["web", "--host", &self.net.address(host).to_string()])
            .args(["--port", &HTTP_PORT.to_string()])
            .args(["--replicas", &REPLICAS.to_string()])
            .args(["--ladder", "240p:400k"])
            .arg("--certs-dir")
            .arg(&self.certs)
            .arg("--work-dir")
            .arg(self.dir.path())
            .args(["etcd", &etcd, "nw", &nodes.join(",")])
            .env("RUST_LOG", "warn");
        let log = self.log(host);
        self.net.spawn(command, &log);
    }

    async fn wait_web(&self, host: &str) {
        let url = format!("{}/healthz", self.url(host));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            if let Ok(answer) = http_client().get(&url).send().await
                && answer.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self.log(host)).unwrap_or_default();
        panic!("web node {host} never became healthy; its log:\n{log}");
    }

    /// The operator's console link to a web node's admin service.
    pub fn operator(&self, web: &str) -> AdminClient {
        Caller {
            token: None,
            tls: Some(ClusterTls::client(&self.certs, "root").unwrap()),
        }
        .connect(&self.admin_address(web))
        .unwrap()
    }

    /// Every file in every store (the nodes' own bookkeeping aside) with its bytes.
    pub fn disks(&self) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        STORAGE
            .iter()
            .map(|host| (host.to_string(), store_contents(&self.store(host))))
            .collect()
    }

    /// Which storage hosts hold each key, on disk.
    pub fn holders(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut held: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (host, files) in self.disks() {
            for key in files.keys() {
                held.entry(key.clone())
                    .or_default()
                    .insert(self.storage_address(&host));
            }
        }
        held
    }
}

fn store_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    support::files_under(dir)
        .into_iter()
        .filter(|path| !path.split('/').any(|part| part.starts_with('.')))
        .filter(|path| dir.join(path).is_file())
        .map(|path| {
            let bytes = std::fs::read(dir.join(&path)).unwrap();
            (path, bytes)
        })
        .collect()
}

/// A short, small test video.
pub fn clip(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(make_video(dir, &format!("{name}.mp4"), 2, "320x240")).unwrap()
}

/// Polls `done` until it holds, failing the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}");
}

pub async fn fetch(url: &str) -> (StatusCode, Vec<u8>) {
    let answer = http_client().get(url).send().await.expect("GET");
    (answer.status(), answer.bytes().await.unwrap().to_vec())
}
