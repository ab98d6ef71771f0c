//! Storage node round trip over loopback, against a release-built `tritontube storage`:
//! median put+get of a 1.5 MB segment (100 runs, streaming and compatible RPCs), the
//! node's resident memory idle and after 1 000 puts, and beside them a reference on the
//! same disk (`cp` + `cat` of the same file, and an in-process durable write + read).
//!
//! `cargo bench --bench node_roundtrip` (or scripts/bench/node-roundtrip.sh). Without
//! `--bench` (as under `cargo test --all-targets`) it makes a few runs only, as a smoke test.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use common::{StorageProcess, pseudo_random_bytes};
use tritontube::node::client::{MAX_MESSAGE_BYTES, StorageClient};
use tritontube::proto::storage::storage_service_client::StorageServiceClient;
use tritontube::proto::storage::{DownloadRequest, UploadRequest};

const SEGMENT_BYTES: usize = 1_500_000;

struct Plan {
    runs: usize,
    puts: usize,
}

/// A storage node process, stopped (SIGTERM) when dropped.
struct Summary {
    median: Duration,
    p10: Duration,
    p90: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Summary {
        median: at(0.5),
        p10: at(0.1),
        p90: at(0.9),
    }
}

fn print_row(what: &str, s: &Summary) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  {what:<46} median {:>7.2} ms   (p10 {:.2}, p90 {:.2})",
        ms(s.median),
        ms(s.p10),
        ms(s.p90)
    );
}

async fn node_figures(plan: &Plan, data: &Bytes) {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = StorageProcess::start(dir.path());
    let idle = node.rss_kib();
    let client = StorageClient::connect_lazy(&node.addr.to_string()).unwrap();
    let mut raw = StorageServiceClient::connect(format!("http://{}", node.addr))
        .await
        .unwrap()
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    // Warm the connections up so the first run does not pay for the handshake.
    client.put("warm/up", data.clone(), None).await.unwrap();
    client.get("warm/up").await.unwrap().unwrap();

    let mut streaming = Vec::with_capacity(plan.runs);
    for i in 0..plan.runs {
        let key = format!("roundtrip/seg-{i:05}.m4s");
        let started = Instant::now();
        client.put(&key, data.clone(), None).await.unwrap();
        let back = client.get(&key).await.unwrap().unwrap();
        streaming.push(started.elapsed());
        assert_eq!(back.len(), data.len());
    }
    let mut unary = Vec::with_capacity(plan.runs);
    for i in 0..plan.runs {
        let key = format!("unary/seg-{i:05}.m4s");
        let started = Instant::now();
        raw.upload_file(UploadRequest {
            key: key.clone(),
            data: data.clone(),
        })
        .await
        .unwrap();
        let back = raw
            .download_file(DownloadRequest { key })
            .await
            .unwrap()
            .into_inner();
        unary.push(started.elapsed());
        assert!(back.found && back.data.len() == data.len());
    }

    let started = Instant::now();
    for i in 0..plan.puts {
        let key = format!("video-{}/chunk-0-{i:05}.m4s", i % 10);
        client.put(&key, data.clone(), None).await.unwrap();
    }
    let puts_took = started.elapsed();
    let after = node.rss_kib();

    println!(
        "storage node ({} build, loopback, {} B segment, {} runs):",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        data.len(),
        plan.runs
    );
    print_row(
        "put+get, streaming (PutFile + GetFile)",
        &summarize(streaming),
    );
    print_row(
        "put+get, compatible (UploadFile + DownloadFile)",
        &summarize(unary),
    );
    println!(
        "  {} puts in {:.2} s ({:.1} MB/s)",
        plan.puts,
        puts_took.as_secs_f64(),
        (plan.puts * data.len()) as f64 / puts_took.as_secs_f64() / 1e6
    );
    println!("  RSS idle                {:>8} KiB", idle);
    println!("  RSS after {:>5} puts    {:>8} KiB", plan.puts, after);
}

fn reference_figures(plan: &Plan, data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("segment.m4s");
    std::fs::write(&source, data).unwrap();

    let mut cp_cat = Vec::with_capacity(plan.runs);
    for i in 0..plan.runs {
        let target = dir.path().join(format!("copy-{i:05}.m4s"));
        let started = Instant::now();
        let cp = Command::new("cp")
            .arg(&source)
            .arg(&target)
            .status()
            .unwrap();
        let cat = Command::new("cat")
            .arg(&target)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        cp_cat.push(started.elapsed());
        assert!(cp.success() && cat.success());
    }

    // What the node's durable write costs at the least: temp file, fsync, rename, fsync
    // of the folder, then a read.
    let mut durable = Vec::with_capacity(plan.runs);
    for i in 0..plan.runs {
        let temp = dir.path().join(format!(".tmp-{i}"));
        let target = dir.path().join(format!("durable-{i:05}.m4s"));
        let started = Instant::now();
        let mut file = std::fs::File::create(&temp).unwrap();
        file.write_all(data).unwrap();
        file.sync_all().unwrap();
        std::fs::rename(&temp, &target).unwrap();
        std::fs::File::open(dir.path()).unwrap().sync_all().unwrap();
        let back = std::fs::read(&target).unwrap();
        durable.push(started.elapsed());
        assert_eq!(back.len(), data.len());
    }

    println!("reference on the same disk ({} runs):", plan.runs);
    print_row("cp + cat (two processes)", &summarize(cp_cat));
    print_row(
        "write + fsync + rename + fsync dir + read",
        &summarize(durable),
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full {
        Plan {
            runs: 100,
            puts: 1000,
        }
    } else {
        Plan { runs: 3, puts: 10 }
    };
    let data = Bytes::from(pseudo_random_bytes(SEGMENT_BYTES, 1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(node_figures(&plan, &data));
    reference_figures(&plan, &data);
}
