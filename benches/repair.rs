//! A wiped storage node refilled by `tritontube admin repair`, beside `cp -r` (and
//! `cp -r` + `sync`) of the very files it lost, on the same disk, in the same run.
//!
//! Release-built processes on 127.0.0.1: three `tritontube storage` nodes holding
//! DASH-like files of recorded videos (R = 2), a `tritontube web` node on SQLite. Each
//! round hard-links the third node's files aside, stops it, empties its folder (a replaced
//! disk), starts it again at its address, and times `tritontube admin repair` as a user
//! runs it (plan, survey, copies with SHA-256 check and fsync, ring placement). Then `cp -r`
//! copies the hard-linked files, timed, and `sync`.
//!
//! `cargo bench --bench repair -- --bench` (or scripts/bench/repair.sh) prints a markdown
//! table. Without `--bench` (as under `cargo test --all-targets`) it refills a few files
//! once, as a smoke test. REPAIR_VIDEOS (default 30, 30 files each) and REPAIR_ROUNDS
//! (default 3) change the size. Temporary folders live under $TMPDIR.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use common::{
    Stopped, StorageProcess, env_usize, free_port, median, pseudo_random_bytes, visible_files,
    wait_for_port,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tritontube::meta::{MetaStore, VideoDetails};
use tritontube::node::client::StorageClient;
use tritontube::ring::{DEFAULT_VIRTUAL_NODES, Ring};

const BIN: &str = env!("CARGO_BIN_EXE_tritontube");
const VIDEO_SEGMENT_BYTES: usize = 1_500_000;
const AUDIO_SEGMENT_BYTES: usize = 64_000;
const SEGMENTS: usize = 15;
const REPLICAS: u32 = 2;

/// Records the videos, then puts every file on the holders `ring` names with its hash.
async fn seed(meta: &MetaStore, addresses: &[String], ring: &Ring, videos: usize) -> u64 {
    let mut jobs = Vec::new();
    for v in 0..videos {
        let id = format!("bench{v:03}");
        meta.claim_video(&id, chrono::Utc::now()).await.unwrap();
        meta.finish_video(&id, &VideoDetails::default())
            .await
            .unwrap();
        for rep in 0..2 {
            for n in 1..=SEGMENTS {
                let key = format!("{id}/chunk-{rep}-{n:05}.m4s");
                let size = if rep == 0 {
                    VIDEO_SEGMENT_BYTES
                } else {
                    AUDIO_SEGMENT_BYTES
                };
                let seed = (v * 1000 + rep * 100 + n) as u64;
                let holders: Vec<StorageClient> = ring
                    .owners(&key)
                    .into_iter()
                    .map(|a| {
                        assert!(addresses.iter().any(|n| n == a));
                        StorageClient::connect_lazy(a).unwrap()
                    })
                    .collect();
                jobs.push(async move {
                    let data = Bytes::from(pseudo_random_bytes(size, seed));
                    let sha = hex::encode(Sha256::digest(&data));
                    for client in holders {
                        client.put(&key, data.clone(), Some(&sha)).await.unwrap();
                    }
                    size as u64
                });
            }
        }
    }
    futures::stream::iter(jobs)
        .buffer_unordered(8)
        .fold(0, |sum, size| async move { sum + size })
        .await
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (videos, rounds) = if full {
        (
            env_usize("REPAIR_VIDEOS", 30),
            env_usize("REPAIR_ROUNDS", 3),
        )
    } else {
        (2, 1)
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| temp.path().join(format!("node{i}")))
        .collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let start = |i: usize| StorageProcess::start_at(&dirs[i], ports[i]);
    let mut nodes: Vec<StorageProcess> = (0..3).map(start).collect();
    let addresses: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
    let ring = Ring::with_nodes(DEFAULT_VIRTUAL_NODES, REPLICAS, addresses.iter().cloned());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = temp.path().join("metadata.db");
    let seeding = Instant::now();
    let bytes = runtime.block_on(async {
        let meta = MetaStore::sqlite(&db).await.unwrap();
        seed(&meta, &addresses, &ring, videos).await
    });
    eprintln!(
        "seeded {} keys ({:.0} MB, R = {REPLICAS}) in {:.1} s",
        videos * 2 * SEGMENTS,
        bytes as f64 / 1e6,
        seeding.elapsed().as_secs_f64()
    );

    let (http_port, admin_port) = (free_port(), free_port());
    let admin_address = format!("127.0.0.1:{admin_port}");
    let web_log = std::fs::File::create(temp.path().join("web.log")).unwrap();
    let web = Command::new(BIN)
        .args(["web", "--host", "127.0.0.1", "--port"])
        .arg(http_port.to_string())
        .args([
            "--replicas",
            &REPLICAS.to_string(),
            "--repair-every-secs",
            "0",
        ])
        .arg("--work-dir")
        .arg(temp.path().join("web-work"))
        .arg("sqlite")
        .arg(&db)
        .arg("nw")
        .arg(format!("{admin_address},{}", addresses.join(",")))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(web_log)
        .spawn()
        .expect("start tritontube web");
    let _web = Stopped(web);
    wait_for_port(admin_port);

    struct Round {
        files: usize,
        bytes: u64,
        repair: Duration,
        cp: Duration,
        sync: Duration,
    }
    let mut results = Vec::new();
    for round in 1..=rounds {
        // What the node holds, kept aside by hard links: the reference copies these.
        let held = visible_files(&dirs[2]);
        let bytes: u64 = held.iter().map(|(_, size)| size).sum();
        let staging = temp.path().join(format!("cp-source-{round}"));
        for (path, _) in &held {
            let rel = path.strip_prefix(&dirs[2]).unwrap();
            std::fs::create_dir_all(staging.join(rel.parent().unwrap())).unwrap();
            std::fs::hard_link(path, staging.join(rel)).unwrap();
        }
        // A replaced disk: the node comes back empty at its address.
        drop(nodes.pop());
        std::fs::remove_dir_all(&dirs[2]).unwrap();
        nodes.push(start(2));

        let started = Instant::now();
        let output = Command::new(BIN)
            .args(["admin", "repair", &admin_address])
            .output()
            .expect("run tritontube admin repair");
        let repair = started.elapsed();
        assert!(
            output.status.success(),
            "repair failed: {} {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let refilled = visible_files(&dirs[2]);
        assert_eq!(refilled.len(), held.len(), "the node was not refilled");

        let target = temp.path().join(format!("cp-target-{round}"));
        let started = Instant::now();
        let status = Command::new("cp")
            .arg("-r")
            .arg(&staging)
            .arg(&target)
            .status()
            .unwrap();
        let cp = started.elapsed();
        assert!(status.success());
        let started = Instant::now();
        Command::new("sync").status().unwrap();
        let sync = started.elapsed();
        std::fs::remove_dir_all(&staging).unwrap();
        std::fs::remove_dir_all(&target).unwrap();
        eprintln!(
            "round {round}: repair {:.2} s ({} files, {:.0} MB), cp -r {:.2} s (+ sync {:.2} s)",
            repair.as_secs_f64(),
            held.len(),
            bytes as f64 / 1e6,
            cp.as_secs_f64(),
            sync.as_secs_f64()
        );
        results.push(Round {
            files: held.len(),
            bytes,
            repair,
            cp,
            sync,
        });
    }

    let per_s = |count: f64, d: Duration| count / d.as_secs_f64();
    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!(
        "{} keys on 3 nodes, R = {REPLICAS}; the third node wiped and refilled; {rounds} rounds.",
        videos * 2 * SEGMENTS
    );
    println!();
    println!(
        "| round | files refilled | MB | `admin repair` s | files/s | MB/s | `cp -r` s | files/s | `cp -r` + `sync` s | repair ÷ (cp + sync) time |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in results.iter().enumerate() {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.0} | {:.0} | {:.3} | {:.0} | {:.2} | {:.2} |",
            i + 1,
            r.files,
            mb(r.bytes),
            r.repair.as_secs_f64(),
            per_s(r.files as f64, r.repair),
            per_s(mb(r.bytes), r.repair),
            r.cp.as_secs_f64(),
            per_s(r.files as f64, r.cp),
            (r.cp + r.sync).as_secs_f64(),
            r.repair.as_secs_f64() / (r.cp + r.sync).as_secs_f64()
        );
    }
    let med = |f: &dyn Fn(&Round) -> f64| median(results.iter().map(f).collect());
    println!(
        "| **median** | | | **{:.2}** | **{:.0}** | **{:.0}** | **{:.3}** | **{:.0}** | **{:.2}** | **{:.2}** |",
        med(&|r| r.repair.as_secs_f64()),
        med(&|r| per_s(r.files as f64, r.repair)),
        med(&|r| per_s(mb(r.bytes), r.repair)),
        med(&|r| r.cp.as_secs_f64()),
        med(&|r| per_s(r.files as f64, r.cp)),
        med(&|r| (r.cp + r.sync).as_secs_f64()),
        med(&|r| r.repair.as_secs_f64() / (r.cp + r.sync).as_secs_f64()),
    );
}
