//! What a ring change does to viewers: the p99 latency of segment GETs through the web
//! node while idle, while ring changes run back to back at full speed, and while they run
//! paced at a quarter of the copy rate measured at full speed, all in one run.
//!
//! Everything runs as release-built processes on 127.0.0.1: four `tritontube storage`
//! nodes, a `tritontube web` node on SQLite (default R and V) with its segment cache off
//! (`--cache-bytes 0`), so every GET reaches a storage node, and `tritontube admin` as a
//! user runs it. The videos are recorded in the SQLite file and their files put straight
//! onto the holders the ring wants. Viewers are tasks that each GET a random segment, wait
//! a little (PACE_THINK_MS, default 100), and go again. In each phase a 4th node is added
//! and removed again, over and over, for the whole window (PACE_WINDOW_S, default 15 s).
//!
//! `cargo bench --bench pace -- --bench` (or scripts/bench/pace.sh) prints a markdown table.
//! Without `--bench` (as under `cargo test --all-targets`) it runs each phase for a moment
//! on a few files, as a smoke test. PACE_VIDEOS (default 12, 30 files each) and
//! PACE_VIEWERS (default 32) change the size.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use common::{
    Stopped, StorageProcess, env_usize, free_port, median, pseudo_random_bytes, visible_files,
    wait_for_port,
};
use futures::StreamExt;
use tritontube::meta::{MetaStore, VideoDetails};
use tritontube::node::client::StorageClient;
use tritontube::ring::{DEFAULT_REPLICAS, DEFAULT_VIRTUAL_NODES, Ring};

const BIN: &str = env!("CARGO_BIN_EXE_tritontube");
/// A 4 s segment at the transcoder's 3000 kbit/s, and its 128 kbit/s audio companion.
const VIDEO_SEGMENT_BYTES: usize = 1_500_000;
const AUDIO_SEGMENT_BYTES: usize = 64_000;
const SEGMENTS: usize = 15;

/// Records every video and puts its files on the holders `ring` names; returns the keys.
async fn seed(meta: &MetaStore, ring: &Ring, videos: usize) -> Vec<String> {
    let mut jobs = Vec::new();
    let mut keys = Vec::new();
    for v in 0..videos {
        let id = format!("paced{v:03}");
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
                    .map(|a| StorageClient::connect_lazy(a).unwrap())
                    .collect();
                keys.push(key.clone());
                jobs.push(async move {
                    let data = Bytes::from(pseudo_random_bytes(size, seed));
                    for client in holders {
                        client.put(&key, data.clone(), None).await.unwrap();
                    }
                });
            }
        }
    }
    futures::stream::iter(jobs)
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    keys
}

/// Runs `tritontube admin ARGS…`; panics with its output when it fails.
fn admin(args: &[&str]) -> String {
    let output = Command::new(BIN)
        .arg("admin")
        .args(args)
        .output()
        .expect("run tritontube admin");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "admin {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Latencies (ms) of the GETs `viewers` viewers make within `window`, and the failures.
async fn watch(
    url: &str,
    keys: &[String],
    viewers: usize,
    think: Duration,
    window: Duration,
) -> (Vec<f64>, usize) {
    let client = reqwest::Client::new();
    let end = Instant::now() + window;
    let tasks = (0..viewers).map(|viewer| {
        let client = client.clone();
        let keys = keys.to_vec();
        let url = url.to_string();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut failed = 0;
            let mut pick = fastrand::Rng::with_seed(viewer as u64);
            while Instant::now() < end {
                let key = &keys[pick.usize(..keys.len())];
                let started = Instant::now();
                let ok = match client.get(format!("{url}/content/{key}")).send().await {
                    Ok(response) if response.status().is_success() => {
                        response.bytes().await.is_ok()
                    }
                    _ => false,
                };
                if ok {
                    seen.push(started.elapsed().as_secs_f64() * 1000.0);
                } else {
                    failed += 1;
                }
                tokio::time::sleep(think).await;
            }
            (seen, failed)
        })
    });
    let mut all = Vec::new();
    let mut failures = 0;
    for task in futures::future::join_all(tasks).await {
        let (seen, failed) = task.unwrap();
        all.extend(seen);
        failures += failed;
    }
    (all, failures)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One phase's figures.
struct Phase {
    name: String,
    latencies: Vec<f64>,
    failures: usize,
    changes: usize,
    /// MB/s of the changes that finished in the window (files the new node received).
    copy_mbs: Vec<f64>,
}

/// Adds and removes `newcomer` again and again until `stop`; returns the changes made and
/// the MB/s of each add (bytes the new node received ÷ the time of `admin add`).
fn churn(admin_address: &str, node: &str, dir: &Path, stop: &AtomicBool) -> (usize, Vec<f64>) {
    let mut changes = 0;
    let mut rates = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        admin(&["add", admin_address, node]);
        let took = started.elapsed().as_secs_f64();
        let bytes: u64 = visible_files(dir).iter().map(|(_, s)| s).sum();
        rates.push(bytes as f64 / 1e6 / took);
        admin(&["remove", admin_address, node]);
        changes += 2;
    }
    (changes, rates)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (videos, viewers, window) = if full {
        (
            env_usize("PACE_VIDEOS", 12),
            env_usize("PACE_VIEWERS", 32),
            Duration::from_secs(env_usize("PACE_WINDOW_S", 15) as u64),
        )
    } else {
        (1, 2, Duration::from_secs(1))
    };
    let think = Duration::from_millis(env_usize("PACE_THINK_MS", 100) as u64);
    let temp = tempfile::tempdir().expect("temp dir");
    let nodes: Vec<StorageProcess> = (1..=4)
        .map(|i| StorageProcess::start(&temp.path().join(format!("node{i}"))))
        .collect();
    let three: Vec<String> = nodes[..3].iter().map(|n| n.addr.to_string()).collect();
    let ring = Ring::with_nodes(
        DEFAULT_VIRTUAL_NODES,
        DEFAULT_REPLICAS,
        three.iter().cloned(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = temp.path().join("metadata.db");
    let keys = runtime.block_on(async {
        let meta = MetaStore::sqlite(&db).await.unwrap();
        seed(&meta, &ring, videos).await
    });
    let key_bytes = videos * SEGMENTS * (VIDEO_SEGMENT_BYTES + AUDIO_SEGMENT_BYTES);

    let (http_port, admin_port) = (free_port(), free_port());
    let admin_address = format!("127.0.0.1:{admin_port}");
    let web_log = std::fs::File::create(temp.path().join("web.log")).unwrap();
    let web = Command::new(BIN)
        .args(["web", "--host", "127.0.0.1", "--port"])
        .arg(http_port.to_string())
        .args(["--cache-bytes", "0", "--work-dir"])
        .arg(temp.path().join("web-work"))
        .arg("sqlite")
        .arg(&db)
        .arg("nw")
        .arg(format!("{admin_address},{}", three.join(",")))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(web_log)
        .spawn()
        .expect("start tritontube web");
    let _web = Stopped(web);
    wait_for_port(admin_port);
    wait_for_port(http_port);
    let url = format!("http://127.0.0.1:{http_port}");

    let run_phase = |name: String, with_changes: bool| -> Phase {
        let stop = Arc::new(AtomicBool::new(false));
        let churner = with_changes.then(|| {
            let stop = stop.clone();
            let admin_address = admin_address.clone();
            let node = nodes[3].addr.to_string();
            let dir = nodes[3].dir.clone();
            std::thread::spawn(move || churn(&admin_address, &node, &dir, &stop))
        });
        let (mut latencies, failures) =
            runtime.block_on(watch(&url, &keys, viewers, think, window));
        stop.store(true, Ordering::Relaxed);
        let (changes, copy_mbs) = churner.map_or((0, Vec::new()), |t| t.join().unwrap());
        latencies.sort_by(f64::total_cmp);
        eprintln!(
            "{name}: {} GETs, {failures} failed, {changes} changes",
            latencies.len()
        );
        Phase {
            name,
            latencies,
            failures,
            changes,
            copy_mbs,
        }
    };

    let idle = run_phase("idle".into(), false);
    let fast = run_phase("ring changes at full speed".into(), true);
    let copy_mbs = median(fast.copy_mbs.clone());
    let pace = ((copy_mbs / 4.0).round() as u64).max(1);
    admin(&["pace", &admin_address, &pace.to_string()]);
    let paced = run_phase(
        format!("ring changes paced at {pace} MB/s (¼ of {copy_mbs:.0} MB/s)"),
        true,
    );
    admin(&["pace", &admin_address, "0"]);

    println!(
        "{} keys ({:.0} MB; per video {SEGMENTS} video segments of {VIDEO_SEGMENT_BYTES} B and {SEGMENTS} audio segments of {AUDIO_SEGMENT_BYTES} B) \
         on 3 nodes, R = {DEFAULT_REPLICAS}, V = {DEFAULT_VIRTUAL_NODES}; {viewers} viewers, each GETs a random segment and waits {} ms; {} s per phase.",
        keys.len(),
        key_bytes as f64 / 1e6,
        think.as_millis(),
        window.as_secs()
    );
    println!();
    println!(
        "| phase | GETs | failed | p50 ms | p90 ms | p99 ms | max ms | p99 ÷ idle | ring changes in the window | copy MB/s (median add) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let idle_p99 = percentile(&idle.latencies, 99.0);
    for phase in [&idle, &fast, &paced] {
        let p99 = percentile(&phase.latencies, 99.0);
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {} |",
            phase.name,
            phase.latencies.len(),
            phase.failures,
            percentile(&phase.latencies, 50.0),
            percentile(&phase.latencies, 90.0),
            p99,
            phase.latencies.last().copied().unwrap_or(f64::NAN),
            p99 / idle_p99,
            phase.changes,
            if phase.copy_mbs.is_empty() {
                "–".to_string()
            } else {
                format!("{:.0}", median(phase.copy_mbs.clone()))
            }
        );
    }
    println!();
    let ratio = percentile(&paced.latencies, 99.0) / idle_p99;
    println!(
        "Goal: paced p99 within 1.3 × idle: {ratio:.2} × — {}.",
        if ratio <= 1.3 { "met" } else { "**missed**" }
    );
}
