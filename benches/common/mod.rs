//! What the benchmarks share: a release storage node run as a child process, and test data.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
