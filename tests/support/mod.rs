//! Shared test fixtures: real servers on 127.0.0.1:0 in temporary folders.
//! Each test file uses only part of this module.
#![allow(dead_code)]

pub mod certs;
pub mod etcd;
pub mod netns;
pub mod tmux;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tritontube::node::client::StorageClient;

/// A storage node running inside the test process.
pub struct StorageNode {
    pub addr: SocketAddr,
    /// The folder it serves.
    pub dir: PathBuf,
    /// Owns `dir` when the node was started in a fresh temporary folder.
    pub temp: Option<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl StorageNode {
    /// `host:port`, as nodes are named in a ring.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    pub fn client(&self) -> StorageClient {
        StorageClient::connect_lazy(&self.address()).expect("well-formed address")
    }

    /// Shuts the node down gracefully and waits until it has stopped; returns the
    /// temporary folder (if it owned one) so the files outlive the node.
    pub async fn stop(mut self) -> Option<TempDir> {
        self.stop_inner().await;
        self.temp.take()
    }

    async fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("storage node task panicked");
        }
    }
}

impl Drop for StorageNode {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A storage node in a fresh temporary folder.
pub async fn start_storage_node() -> StorageNode {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node = start_storage_node_in(temp.path()).await;
    node.temp = Some(temp);
    node
}

/// A storage node serving `dir` (which the caller owns).
pub async fn start_storage_node_in(dir: &Path) -> StorageNode {
    start_storage_node_at(dir, "127.0.0.1:0").await
}

/// A storage node serving `dir` on `address` (a node restarted where it was).
pub async fn start_storage_node_at(dir: &Path, address: &str) -> StorageNode {
    start_storage_node_with(dir, address, Default::default()).await
}

/// A storage node in a fresh temporary folder that says it stands in `zone`.
pub async fn start_zoned_storage_node(zone: &str) -> StorageNode {
    let temp = tempfile::tempdir().expect("temp dir");
    let options = tritontube::node::server::NodeOptions {
        zone: Some(zone.to_string()),
        ..Default::default()
    };
    let mut node = start_storage_node_with(temp.path(), "127.0.0.1:0", options).await;
    node.temp = Some(temp);
    node
}

/// Binds `address`. A node restarted on its old port may find it taken for a moment by a
/// connection that was given it as its local port; that is waited out (up to 10 s).
async fn bind_again(address: &str) -> TcpListener {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return listener,
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("bind {address}: {e}"),
        }
    }
}

/// A storage node serving `dir` on `address` with `options`.
pub async fn start_storage_node_with(
    dir: &Path,
    address: &str,
    options: tritontube::node::server::NodeOptions,
) -> StorageNode {
    let listener = bind_again(address).await;
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = oneshot::channel::<()>();
    let served = dir.to_path_buf();
    let task = tokio::spawn(async move {
        tritontube::node::server::run_with(listener, served, options, async {
            let _ = rx.await;
        })
        .await
        .expect("storage node failed");
    });
    StorageNode {
        addr,
        dir: dir.to_path_buf(),
        temp: None,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// Fails the test, naming the tool and its Debian package, when `command --version` does
/// not run: a test that could not run must never pass (`scripts/setup.sh` installs it).
pub fn require_tool(command: &str, package: &str) {
    let works = std::process::Command::new(command)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        works,
        "`{command}` is not installed: run scripts/setup.sh (Debian package {package})"
    );
}

/// `n` storage nodes, each in its own temporary folder.
pub async fn start_storage_nodes(n: usize) -> Vec<StorageNode> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(start_storage_node().await);
    }
    nodes
}

/// The ring the web node builds over `addresses` with the default virtual nodes.
pub fn ring_of(addresses: &[String], replicas: u32) -> tritontube::ring::Ring {
    tritontube::ring::Ring::with_nodes(
        tritontube::ring::DEFAULT_VIRTUAL_NODES,
        replicas,
        addresses.iter().cloned(),
    )
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Every path under `dir` (recursively), relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(
                path.strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A storage node in its own process, so the test can pause it (SIGSTOP) and hold a ring
/// change in the middle for as long as it needs.
pub struct StorageProcess {
    child: std::process::Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl StorageProcess {
    pub async fn start() -> StorageProcess {
        let dir = tempfile::tempdir().unwrap();
        let port = web::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tritontube"))
            .args([
                "storage",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .arg(dir.path().join("store"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn tritontube storage");
        let address = format!("127.0.0.1:{port}");
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the storage node never listened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        StorageProcess {
            child,
            address,
            _dir: dir,
        }
    }

    /// Sends `signal` (`-STOP`, `-CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

impl Drop for StorageProcess {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
