//! What the benchmarks share: a release storage node run as a child process, and test data.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, stopped (SIGTERM, then waited for) when dropped.
pub struct Stopped(pub Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// `tritontube storage` on a free loopback port, stopped when dropped.
pub struct StorageProcess {
    process: Stopped,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl StorageProcess {
    pub fn start(dir: &Path) -> StorageProcess {
        Self::start_with(dir, &[])
    }

    /// The same with extra command-line flags.
    pub fn start_with(dir: &Path, flags: &[&str]) -> StorageProcess {
        Self::start_on(dir, 0, flags)
    }

    /// A node on `port` (one restarted where it was).
    pub fn start_at(dir: &Path, port: u16) -> StorageProcess {
        Self::start_on(dir, port, &[])
    }

    fn start_on(dir: &Path, port: u16, flags: &[&str]) -> StorageProcess {
        std::fs::create_dir_all(dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tritontube"))
            .args([
                "storage",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(flags)
            .arg(dir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tritontube storage");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr: SocketAddr = loop {
            let line = lines.next().expect("node exited before listening").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split([' ', ',']).next().unwrap().parse().unwrap();
            }
        };
        // Keep draining the log so the node never blocks on a full pipe; pass on trouble.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("storage node {addr}: {line}");
                }
            }
        });
        StorageProcess {
            process: Stopped(child),
            addr,
            dir: dir.to_path_buf(),
        }
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// Resident memory now, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id()))
            .expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }
}

/// Incompressible bytes (xorshift), the same for the same seed.
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

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (at most 30 s) until something accepts on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stored files (not the store's hidden bookkeeping) under `dir`, with their sizes.
pub fn visible_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for video in std::fs::read_dir(dir).unwrap().flatten() {
        if !video.path().is_dir() || video.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        for file in std::fs::read_dir(video.path()).unwrap().flatten() {
            if !file.file_name().to_string_lossy().starts_with('.') {
                out.push((file.path(), file.metadata().unwrap().len()));
            }
        }
    }
    out
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A size from the environment (`NAME=…`), or `default` when unset or not a number.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
