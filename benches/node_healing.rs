//! What self-healing costs a storage node, against release-built `tritontube storage`
//! processes over loopback, in one run:
//!
//! 1. Verified reads: GetFile and DownloadFile of a 1.5 MB segment on a node that checks
//!    every read against the recorded SHA-256, beside a node run with the (hidden,
//!    measuring-only) `--unverified-reads`; one at a time (latency) and with 8 concurrent
//!    readers (req/s, p99). Beside them: `cat` of the file and SHA-256 of it in process.
//! 2. The scrub: one pass over 100 segments at the default rate (16 MB/s) and unthrottled,
//!    and what 8 concurrent readers get from three nodes holding the same files, with no
//!    scrub, with the default-rate scrub and with an unthrottled scrub running without
//!    pause (rounds alternating between the three).
//!
//! `cargo bench --bench node_healing -- --bench`. Without `--bench` (as under
//! `cargo test --all-targets`) it makes a few runs only, as a smoke test.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use common::{StorageProcess, pseudo_random_bytes};
use sha2::Digest;
use tritontube::node::client::{MAX_MESSAGE_BYTES, StorageClient};
use tritontube::proto::storage::DownloadRequest;
use tritontube::proto::storage::storage_service_client::StorageServiceClient;

const SEGMENT_BYTES: usize = 1_500_000;
const READERS: usize = 8;

struct Plan {
    runs: usize,
    load: Duration,
    rounds: usize,
    scrub_files: usize,
}

fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn row(what: &str, samples: &mut [Duration]) {
    println!(
        "  {what:<44} median {:>6.2} ms   p90 {:>6.2}   p99 {:>6.2}",
        ms(quantile(samples, 0.5)),
        ms(quantile(samples, 0.9)),
        ms(quantile(samples, 0.99))
    );
}

async fn seed(client: &StorageClient, count: usize) -> Vec<String> {
    let mut keys = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("video-{}/chunk-0-{i:05}.m4s", i % 10);
        let data = Bytes::from(pseudo_random_bytes(SEGMENT_BYTES, i as u64 + 1));
        client.put(&key, data, None).await.unwrap();
        keys.push(key);
    }
    keys
}

/// `READERS` tasks reading whole segments through GetFile for `duration`: requests done
/// and every latency.
async fn load(
    client: &StorageClient,
    keys: &[String],
    duration: Duration,
) -> (usize, Vec<Duration>) {
    let keys = Arc::new(keys.to_vec());
    let until = Instant::now() + duration;
    let mut tasks = Vec::new();
    for reader in 0..READERS {
        let client = client.clone();
        let keys = Arc::clone(&keys);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = reader;
            while Instant::now() < until {
                let started = Instant::now();
                let data = client.get(&keys[i % keys.len()]).await.unwrap().unwrap();
                latencies.push(started.elapsed());
                assert_eq!(data.len(), SEGMENT_BYTES);
                i += READERS;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    (all.len(), all)
}

async fn read_path(plan: &Plan) {
    let verified_dir = tempfile::tempdir().unwrap();
    let unverified_dir = tempfile::tempdir().unwrap();
    let verified = StorageProcess::start_with(verified_dir.path(), &["--scrub-mbps", "0"]);
    let unverified = StorageProcess::start_with(
        unverified_dir.path(),
        &["--scrub-mbps", "0", "--unverified-reads"],
    );
    let nodes = [("verified", &verified), ("unverified", &unverified)];
    let mut clients = Vec::new();
    let mut raws = Vec::new();
    let mut keys = Vec::new();
    for (_, node) in nodes {
        let client = StorageClient::connect_lazy(&node.addr.to_string()).unwrap();
        keys = seed(&client, 20).await;
        // Warm the connection and the page cache.
        for key in &keys {
            client.get(key).await.unwrap().unwrap();
        }
        raws.push(
            StorageServiceClient::connect(format!("http://{}", node.addr))
                .await
                .unwrap()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        );
        clients.push(client);
    }

    // One at a time, alternating between the two nodes so both see the same machine.
    let mut get = [Vec::new(), Vec::new()];
    let mut download = [Vec::new(), Vec::new()];
    for run in 0..plan.runs {
        let key = &keys[run % keys.len()];
        for n in 0..2 {
            let started = Instant::now();
            clients[n].get(key).await.unwrap().unwrap();
            get[n].push(started.elapsed());
            let started = Instant::now();
            let reply = raws[n]
                .download_file(DownloadRequest { key: key.clone() })
                .await
                .unwrap()
                .into_inner();
            download[n].push(started.elapsed());
            assert_eq!(reply.data.len(), SEGMENT_BYTES);
        }
    }
    // 8 concurrent readers, rounds alternating.
    let mut served = [0usize; 2];
    let mut busy = [Vec::new(), Vec::new()];
    for _ in 0..plan.rounds {
        for n in 0..2 {
            let (count, latencies) = load(&clients[n], &keys, plan.load).await;
            served[n] += count;
            busy[n].extend(latencies);
        }
    }

    // References: the file through `cat`, and SHA-256 of it in this process.
    let file = verified_dir.path().join(&keys[0]);
    let mut cat = Vec::new();
    let mut hash = Vec::new();
    let data = std::fs::read(&file).unwrap();
    for _ in 0..plan.runs {
        let started = Instant::now();
        let status = Command::new("cat")
            .arg(&file)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        cat.push(started.elapsed());
        assert!(status.success());
        let started = Instant::now();
        std::hint::black_box(sha2::Sha256::digest(&data));
        hash.push(started.elapsed());
    }

    println!(
        "read path ({} runs one at a time; {} rounds of {:.0} s with {READERS} readers; {SEGMENT_BYTES} B segments, page cache warm):",
        plan.runs,
        plan.rounds,
        plan.load.as_secs_f64()
    );
    for (n, (name, _)) in nodes.iter().enumerate() {
        row(&format!("GetFile, {name}"), &mut get[n]);
        row(&format!("DownloadFile, {name}"), &mut download[n]);
    }
    for (n, (name, _)) in nodes.iter().enumerate() {
        let seconds = plan.load.as_secs_f64() * plan.rounds as f64;
        println!(
            "  {READERS} readers, {name:<10}  {:>7.1} req/s  {:>7.1} MB/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
            served[n] as f64 / seconds,
            served[n] as f64 * SEGMENT_BYTES as f64 / seconds / 1e6,
            ms(quantile(&mut busy[n], 0.5)),
            ms(quantile(&mut busy[n], 0.99))
        );
    }
    row("reference: cat (one process)", &mut cat);
    row("reference: SHA-256 in process", &mut hash);
}

/// Runs one scrub pass now and waits for it: bytes checked and the pass's duration.
async fn one_pass(client: &StorageClient) -> (u64, Duration) {
    let before = client.scrub(false).await.unwrap().passes_completed;
    assert!(client.scrub(true).await.unwrap().started);
    loop {
        let report = client.scrub(false).await.unwrap();
        if report.passes_completed > before {
            let last = report.last.unwrap();
            return (
                last.bytes_checked,
                Duration::from_millis(last.finished_unix_ms - last.started_unix_ms),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Readers' requests and latencies while the node scrubs without pause (a new pass as
/// each ends); waits for the last pass to end before returning.
async fn load_while_scrubbing(
    client: &StorageClient,
    keys: &[String],
    plan: &Plan,
    scrub: bool,
) -> (usize, Vec<Duration>) {
    let keep_scrubbing = scrub.then(|| {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                let _ = client.scrub(true).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    });
    let measured = load(client, keys, plan.load).await;
    if let Some(task) = keep_scrubbing {
        task.abort();
        while client.scrub(false).await.unwrap().running {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    measured
}

async fn scrub(plan: &Plan) {
    let setups: [(&str, &[&str]); 3] = [
        ("no scrub", &["--scrub-mbps", "0"]),
        ("scrub at 16 MB/s (default)", &[]),
        ("scrub unthrottled", &["--scrub-mbps", "1000000"]),
    ];
    println!(
        "scrub ({} segments, {:.0} MB per node, page cache warm; {READERS} readers, {} rounds of {:.0} s, alternating):",
        plan.scrub_files,
        (plan.scrub_files * SEGMENT_BYTES) as f64 / 1e6,
        plan.rounds,
        plan.load.as_secs_f64()
    );
    let mut nodes = Vec::new();
    let mut keys = Vec::new();
    for (name, flags) in setups {
        let dir = tempfile::tempdir().unwrap();
        let node = StorageProcess::start_with(dir.path(), flags);
        let client = StorageClient::connect_lazy(&node.addr.to_string()).unwrap();
        keys = seed(&client, plan.scrub_files).await;
        let scrubbing = !flags.contains(&"0");
        if scrubbing {
            let (bytes, took) = one_pass(&client).await;
            println!(
                "  {name:<28} one pass alone: {:>6.1} MB in {:>6.2} s = {:>7.1} MB/s",
                bytes as f64 / 1e6,
                took.as_secs_f64(),
                bytes as f64 / 1e6 / took.as_secs_f64().max(1e-3)
            );
        }
        nodes.push((name, scrubbing, client, node, dir));
    }
    let mut served = vec![0usize; nodes.len()];
    let mut latencies = vec![Vec::new(); nodes.len()];
    for _ in 0..plan.rounds {
        for (n, (_, scrubbing, client, _, _)) in nodes.iter().enumerate() {
            let (count, mut samples) = load_while_scrubbing(client, &keys, plan, *scrubbing).await;
            served[n] += count;
            latencies[n].append(&mut samples);
        }
    }
    let seconds = plan.load.as_secs_f64() * plan.rounds as f64;
    for (n, (name, ..)) in nodes.iter().enumerate() {
        println!(
            "  {name:<28} readers: {:>7.1} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
            served[n] as f64 / seconds,
            ms(quantile(&mut latencies[n], 0.5)),
            ms(quantile(&mut latencies[n], 0.99))
        );
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full {
        Plan {
            runs: 200,
            load: Duration::from_secs(5),
            rounds: 3,
            scrub_files: 100,
        }
    } else {
        Plan {
            runs: 3,
            load: Duration::from_millis(300),
            rounds: 1,
            scrub_files: 4,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        read_path(&plan).await;
        scrub(&plan).await;
    });
}
