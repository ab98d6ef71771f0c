//! How fast data at risk heals: the time from a quarantine to R good copies (the resync
//! queue), for copies found bad by a viewer's read, and the time from a copy that rots
//! unread to its repair, found by the scrub (nodes run with `--scrub-interval`,
//! HEAL_SCRUB_INTERVAL_S, default 30 s; a node's first pass comes at a random point of
//! its first interval, then one every interval).
//!
//! Everything runs as release-built processes on 127.0.0.1: three `tritontube storage`
//! nodes and a `tritontube web` node on SQLite (default R and V, `--cache-bytes 0`). A copy
//! is made rotten by flipping bytes in the middle of its file on disk (size kept). The
//! quarantine time is the node's own (`quarantined_unix_ms`); a copy counts as healed when
//! its node verifies it again (read and hashed against the SHA-256 recorded at upload).
//!
//! `cargo bench --bench heal -- --bench` (or scripts/bench/heal.sh) prints a markdown
//! table. Without `--bench` (as under `cargo test --all-targets`) it heals one read-found
//! copy, as a smoke test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use common::{
    Stopped, StorageProcess, env_usize, free_port, median, pseudo_random_bytes, wait_for_port,
};
use tritontube::meta::{MetaStore, VideoDetails};
use tritontube::node::client::StorageClient;
use tritontube::ring::{DEFAULT_REPLICAS, DEFAULT_VIRTUAL_NODES, Ring};

const BIN: &str = env!("CARGO_BIN_EXE_tritontube");
const FILE_BYTES: usize = 256 * 1024;
/// Longest wait for one copy to heal before the run gives up on it.
const PATIENCE: Duration = Duration::from_secs(300);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Flips bytes in the middle of the file of `key` in `dir`, keeping its size.
fn rot(dir: &std::path::Path, key: &str) {
    let path = dir.join(key);
    let mut data = std::fs::read(&path).unwrap();
    let middle = data.len() / 2;
    for byte in &mut data[middle..middle + 16] {
        *byte ^= 0x5a;
    }
    std::fs::write(&path, data).unwrap();
}

/// Waits until `node` has quarantined its copy of `key`; returns the node's quarantine
/// time (Unix ms).
async fn quarantined_at(node: &StorageClient, key: &str) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = node
            .quarantine()
            .await
            .unwrap()
            .into_iter()
            .filter(|q| q.key == key)
            .map(|q| q.quarantined_unix_ms)
            .max();
        if let Some(at) = found {
            return at;
        }
        assert!(Instant::now() < deadline, "{key} was never quarantined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `node` holds a copy of `key` that verifies to `sha256`; returns when
/// (Unix ms). Only asks for a verification once the node lists the key again, so a read
/// here never finds the bad copy itself.
async fn healed_at(node: &StorageClient, key: &str, sha256: &str) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if node.stat(key).await.unwrap().is_some() {
            if let Ok(Some(stat)) = node.verify(key).await {
                assert_eq!(stat.sha256, sha256, "{key} healed with other bytes");
                return now_ms();
            }
        }
        assert!(Instant::now() < deadline, "{key} never healed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let interval = env_usize("HEAL_SCRUB_INTERVAL_S", 30);
    let (read_cases, scrub_cases) = if full {
        (env_usize("HEAL_READ_CASES", 5), 3)
    } else {
        (1, 0)
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let interval_flag = format!("{interval}s");
    let nodes: Vec<StorageProcess> = (1..=3)
        .map(|i| {
            StorageProcess::start_with(
                &temp.path().join(format!("node{i}")),
                &["--scrub-interval", &interval_flag],
            )
        })
        .collect();
    let started_ms = now_ms();
    let addresses: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
    let ring = Ring::with_nodes(
        DEFAULT_VIRTUAL_NODES,
        DEFAULT_REPLICAS,
        addresses.iter().cloned(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = temp.path().join("metadata.db");
    let files = 40;
    let hashes: Vec<(String, String)> = runtime.block_on(async {
        let meta = MetaStore::sqlite(&db).await.unwrap();
        meta.claim_video("heal", chrono::Utc::now()).await.unwrap();
        meta.finish_video("heal", &VideoDetails::default())
            .await
            .unwrap();
        let mut hashes = Vec::new();
        for i in 0..files {
            let key = format!("heal/chunk-0-{i:05}.m4s");
            let data = Bytes::from(pseudo_random_bytes(FILE_BYTES, i as u64));
            let sha = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&data))
            };
            for owner in ring.owners(&key) {
                let client = StorageClient::connect_lazy(owner).unwrap();
                client.put(&key, data.clone(), Some(&sha)).await.unwrap();
            }
            hashes.push((key, sha));
        }
        hashes
    });

    let (http_port, admin_port) = (free_port(), free_port());
    let web_log = std::fs::File::create(temp.path().join("web.log")).unwrap();
    let web = Command::new(BIN)
        .args(["web", "--host", "127.0.0.1", "--port"])
        .arg(http_port.to_string())
        .args(["--cache-bytes", "0", "--work-dir"])
        .arg(temp.path().join("web-work"))
        .arg("sqlite")
        .arg(&db)
        .arg("nw")
        .arg(format!("127.0.0.1:{admin_port},{}", addresses.join(",")))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(web_log)
        .spawn()
        .expect("start tritontube web");
    let _web = Stopped(web);
    wait_for_port(admin_port);
    wait_for_port(http_port);
    let url = format!("http://127.0.0.1:{http_port}");
    let node_of = |address: &str| {
        nodes
            .iter()
            .find(|n| n.addr.to_string() == address)
            .unwrap()
    };

    // A viewer's read meets the bad copy: the web node serves a good one and names the key.
    let mut from_read = Vec::new();
    let mut missed_reads = 0;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        for (key, sha) in hashes.iter().take(read_cases) {
            let first = ring.owners(key)[0].to_string();
            rot(&node_of(&first).dir, key);
            let body = client
                .get(format!("{url}/content/{key}"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let served = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&body))
            };
            assert_eq!(&served, sha, "{key}: the viewer got bad bytes");
            let node = StorageClient::connect_lazy(&first).unwrap();
            // Read at once: the entry goes when the copy is back, which can be quick.
            let listed = node.quarantine().await.unwrap();
            let Some(quarantined) = listed
                .iter()
                .filter(|q| &q.key == key)
                .map(|q| q.quarantined_unix_ms)
                .max()
            else {
                // The read went to the other holder first; the scrub will find this one.
                missed_reads += 1;
                continue;
            };
            let healed = healed_at(&node, key, sha).await;
            eprintln!(
                "read: {key} healed {} ms after its quarantine",
                healed - quarantined
            );
            from_read.push((healed.saturating_sub(quarantined)) as f64 / 1000.0);
        }
    });

    // Copies rot unread, on different nodes; the scrub finds them.
    let mut from_scrub = Vec::new();
    let mut rotted_after_start = 0;
    runtime.block_on(async {
        let mut cases = Vec::new();
        for (key, sha) in hashes.iter().skip(read_cases) {
            if cases.len() == scrub_cases {
                break;
            }
            let holder = ring.owners(key)[0].to_string();
            if cases
                .iter()
                .any(|(_, _, h): &(String, String, String)| *h == holder)
            {
                continue;
            }
            cases.push((key.clone(), sha.clone(), holder));
        }
        let rotted = now_ms();
        rotted_after_start = rotted.saturating_sub(started_ms);
        for (key, _, holder) in &cases {
            rot(&node_of(holder).dir, key);
        }
        let watches = cases.iter().map(|(key, sha, holder)| async move {
            let node = StorageClient::connect_lazy(holder).unwrap();
            let quarantined = quarantined_at(&node, key).await;
            let healed = healed_at(&node, key, sha).await;
            eprintln!(
                "scrub: {key} on {holder}: found {} ms after it rotted, healed {} ms later",
                quarantined.saturating_sub(rotted),
                healed.saturating_sub(quarantined)
            );
            (
                quarantined.saturating_sub(rotted) as f64 / 1000.0,
                healed.saturating_sub(quarantined) as f64 / 1000.0,
            )
        });
        from_scrub = futures::future::join_all(watches).await;
    });

    let secs = |v: &[f64]| {
        if v.is_empty() {
            "–".to_string()
        } else {
            let max = v.iter().copied().fold(f64::MIN, f64::max);
            format!("{:.1} / {max:.1}", median(v.to_vec()))
        }
    };
    println!(
        "3 nodes, R = {DEFAULT_REPLICAS}, {files} files of {} KiB; nodes started with `--scrub-interval {interval}s` \
         {:.0} s before the copies rotted unread; the web node's resync worker polls the nodes' quarantine lists every 10 s.",
        FILE_BYTES / 1024,
        rotted_after_start as f64 / 1000.0
    );
    println!();
    println!("| what | copies | median / max s |");
    println!("|---|---:|---:|");
    println!(
        "| quarantine by a viewer's read → R good copies | {} (+{missed_reads} read from the good holder) | {} |",
        from_read.len(),
        secs(&from_read)
    );
    let found: Vec<f64> = from_scrub.iter().map(|(f, _)| *f).collect();
    let healed: Vec<f64> = from_scrub.iter().map(|(_, h)| *h).collect();
    let total: Vec<f64> = from_scrub.iter().map(|(f, h)| f + h).collect();
    println!(
        "| unread rotten copy → found by the scrub (interval {interval} s) | {} | {} |",
        found.len(),
        secs(&found)
    );
    println!(
        "| scrub's quarantine → R good copies | {} | {} |",
        healed.len(),
        secs(&healed)
    );
    println!(
        "| unread rotten copy → repaired (interval {interval} s) | {} | {} |",
        total.len(),
        secs(&total)
    );
}
