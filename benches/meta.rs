//! Metadata store figures, SQLite against a real five-member etcd cluster (started here):
//! create / read / list latency (p50, p99), the time to list 10 000 videos, and how long
//! writes stall when the etcd leader is killed.
//!
//! `cargo bench --bench meta` (or `scripts/bench/meta.sh`). META_BENCH_OPS and
//! META_BENCH_VIDEOS change the number of timed operations and of listed videos.

mod common;
#[path = "../tests/support/etcd.rs"]
mod etcd_cluster;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::env_usize;
use futures::StreamExt;
use tritontube::meta::{MetaError, MetaStore, VideoDetails};

fn details() -> VideoDetails {
    VideoDetails {
        duration_seconds: 60.0,
        source_bytes: 10_000_000,
        file_count: 20,
        stored_bytes: 9_000_000,
        ..VideoDetails::default()
    }
}

struct Summary {
    p50: Duration,
    p99: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Summary {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Creates `n` Ready videos, `parallel` at a time.
async fn fill(store: &MetaStore, prefix: &str, n: usize, parallel: usize) {
    futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            let id = format!("{prefix}{i:06}");
            async move {
                store.claim_video(&id, Utc::now()).await.unwrap();
                store.finish_video(&id, &details()).await.unwrap();
            }
        })
        .buffer_unordered(parallel)
        .collect::<Vec<()>>()
        .await;
}

async fn measure(name: &str, store: &MetaStore, ops: usize, videos: usize) {
    // Create: claim + finish, the two writes of an upload; claims timed on their own.
    let mut claims = Vec::with_capacity(ops);
    let mut creates = Vec::with_capacity(ops);
    for i in 0..ops {
        let id = format!("lat{i:06}");
        let t = Instant::now();
        store.claim_video(&id, Utc::now()).await.unwrap();
        claims.push(t.elapsed());
        store.finish_video(&id, &details()).await.unwrap();
        creates.push(t.elapsed());
    }
    let mut reads = Vec::with_capacity(ops);
    for i in 0..ops {
        let id = format!("lat{:06}", (i * 7919) % ops);
        let t = Instant::now();
        let got = store.get_video(&id).await.unwrap();
        reads.push(t.elapsed());
        assert!(got.value.is_some());
    }
    // List with `ops` videos in the store (a small index).
    let mut lists = Vec::with_capacity(100);
    for _ in 0..100 {
        let t = Instant::now();
        store.list_videos().await.unwrap();
        lists.push(t.elapsed());
    }
    let (claims, creates, reads, lists) = (
        summarize(claims),
        summarize(creates),
        summarize(reads),
        summarize(lists),
    );

    fill(store, "big", videos - ops.min(videos), 32).await;
    let mut big = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let n = store.list_videos().await.unwrap().value.len();
        big.push(t.elapsed());
        assert!(n >= videos);
    }
    let big = summarize(big);

    println!("{name}:");
    println!(
        "  claim               p50 {:>11}  p99 {:>11}",
        ms(claims.p50),
        ms(claims.p99)
    );
    println!(
        "  create (claim+fin.) p50 {:>11}  p99 {:>11}",
        ms(creates.p50),
        ms(creates.p99)
    );
    println!(
        "  read (get_video)    p50 {:>11}  p99 {:>11}",
        ms(reads.p50),
        ms(reads.p99)
    );
    println!(
        "  list ({ops} videos)   p50 {:>11}  p99 {:>11}",
        ms(lists.p50),
        ms(lists.p99)
    );
    println!("  list ({videos} videos) median of 5: {}", ms(big.p50));
}

/// Writes one claim after another while the leader is killed; reports the longest gap
/// between two successful writes and the writes refused meanwhile.
async fn leader_kill_stall(cluster: &mut etcd_cluster::EtcdCluster, store: &MetaStore) {
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let stop_at = Duration::from_secs(12);
    let kill_at = Duration::from_secs(2);
    let start = Instant::now();
    let mut last_ok = Instant::now();
    let mut worst = Duration::ZERO;
    let mut worst_end = Duration::ZERO;
    let mut refused = 0;
    let mut killed_at = None;
    let mut i = 0;
    while start.elapsed() < stop_at {
        if killed_at.is_none() && start.elapsed() >= kill_at {
            cluster.kill(leader);
            killed_at = Some(start.elapsed());
        }
        let id = format!("stall{i:06}");
        i += 1;
        match store.claim_video(&id, Utc::now()).await {
            Ok(()) | Err(MetaError::AlreadyExists(_)) => {
                let gap = last_ok.elapsed();
                if gap > worst {
                    worst = gap;
                    worst_end = start.elapsed();
                }
                last_ok = Instant::now();
            }
            Err(MetaError::Unavailable(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let killed_at = killed_at.unwrap_or_default();
    println!(
        "etcd leader kill (member {leader}, at {:.1} s):",
        killed_at.as_secs_f64()
    );
    println!(
        "  longest gap between successful writes: {} (ending at {:.2} s), {refused} writes refused (Unavailable), {i} attempted",
        ms(worst),
        worst_end.as_secs_f64()
    );
    cluster.restart(leader);
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` measure nothing.
    if !std::env::args().any(|a| a == "--bench") {
        println!("metadata benchmark: run it with `cargo bench --bench meta`");
        return;
    }
    let ops = env_usize("META_BENCH_OPS", 1000);
    let videos = env_usize("META_BENCH_VIDEOS", 10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = MetaStore::sqlite(&dir.path().join("bench.db"))
            .await
            .unwrap();
        measure("SQLite (WAL, synchronous=FULL)", &sqlite, ops, videos).await;

        let mut cluster = etcd_cluster::EtcdCluster::start(5).await;
        let etcd = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
        measure("etcd (5 members, loopback)", &etcd, ops, videos).await;
        leader_kill_stall(&mut cluster, &etcd).await;
    });
}
