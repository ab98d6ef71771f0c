//! What mutual TLS on the internal links costs, beside the same cluster without it, in one
//! run: (a) the cold segment path, viewers' GETs of segments the web node's cache does not
//! hold (every one a web→storage read), and (b) a ring change, `tritontube admin add` of
//! a node that receives files from the others (node→node direct copies).
//!
//! Two clusters of release-built processes on 127.0.0.1, alike but for `--certs-dir`: two
//! `tritontube storage` nodes and a `tritontube web` node (SQLite, default R and V, a
//! one-byte segment cache), plus a spare node to add. The same DASH-like files are put
//! straight onto both. Each round measures the cold path on both clusters (alternating
//! which goes first), then adds the spare node to each (timed) and removes it again.
//!
//! `cargo bench --bench tls -- --bench` (or scripts/bench/tls.sh) prints a markdown table.
//! Without `--bench` (as under `cargo test --all-targets`) it runs a small round once, as
//! a smoke test. TLS_VIDEOS (default 16, 30 files each), TLS_ROUNDS (default 3),
//! TLS_SECONDS (cold-path seconds per cluster and round, default 10) and TLS_CONNECTIONS
//! (default 16) change the size; TLS_PROFILE=FILE records the TLS cluster's first cold
//! round with `perf record -a -g`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use common::{
    Stopped, StorageProcess, env_usize, free_port, median, pseudo_random_bytes, visible_files,
    wait_for_port,
};
use futures::StreamExt;
use tritontube::node::client::StorageClient;
use tritontube::ring::{DEFAULT_REPLICAS, DEFAULT_VIRTUAL_NODES, Ring};
use tritontube::trust::certs;
use tritontube::trust::tls::ClusterTls;

const BIN: &str = env!("CARGO_BIN_EXE_tritontube");
/// A 4 s segment at the transcoder's 3000 kbit/s, and its 128 kbit/s audio companion.
const VIDEO_SEGMENT_BYTES: usize = 1_500_000;
const AUDIO_SEGMENT_BYTES: usize = 64_000;
/// Segments per representation of a video (60 s in 4 s segments).
const SEGMENTS: usize = 15;

struct Cluster {
    name: &'static str,
    certs: Option<PathBuf>,
    nodes: Vec<StorageProcess>,
    spare: StorageProcess,
    admin: String,
    web: String,
    _web: Stopped,
}

impl Cluster {
    fn start(name: &'static str, root: &Path, certs: Option<&Path>) -> Cluster {
        let dir = root.join(name);
        let flags: Vec<String> = certs
            .map(|c| vec!["--certs-dir".to_string(), c.display().to_string()])
            .unwrap_or_default();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut nodes: Vec<StorageProcess> = (1..=3)
            .map(|i| StorageProcess::start_with(&dir.join(format!("node{i}")), &flags))
            .collect();
        let spare = nodes.pop().unwrap();
        let (http_port, admin_port) = (free_port(), free_port());
        let admin = format!("127.0.0.1:{admin_port}");
        let ring: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
        let web = Command::new(BIN)
            .args(["web", "--host", "127.0.0.1", "--port"])
            .arg(http_port.to_string())
            .args(["--cache-bytes", "1"])
            .args(&flags)
            .arg("--work-dir")
            .arg(dir.join("web-work"))
            .arg("sqlite")
            .arg(dir.join("metadata.db"))
            .arg("nw")
            .arg(format!("{admin},{}", ring.join(",")))
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("web.log")).unwrap())
            .spawn()
            .expect("start tritontube web");
        let web_process = Stopped(web);
        wait_for_port(http_port);
        wait_for_port(admin_port);
        Cluster {
            name,
            certs: certs.map(Path::to_path_buf),
            nodes,
            spare,
            admin,
            web: format!("http://127.0.0.1:{http_port}"),
            _web: web_process,
        }
    }

    fn ring(&self) -> Ring {
        Ring::with_nodes(
            DEFAULT_VIRTUAL_NODES,
            DEFAULT_REPLICAS,
            self.nodes.iter().map(|n| n.addr.to_string()),
        )
    }

    /// Puts every key on the holders the ring names, as the web node would have.
    async fn seed(&self, keys: &[(String, usize, u64)]) {
        let tls = self.certs.as_deref().map(|c| ClusterTls::node(c).unwrap());
        let ring = self.ring();
        let jobs = keys.iter().map(|(key, size, seed)| {
            let holders: Vec<StorageClient> = ring
                .owners(key)
                .into_iter()
                .map(|a| StorageClient::connect_lazy_tls(a, tls.as_ref()).unwrap())
                .collect();
            async move {
                let data = Bytes::from(pseudo_random_bytes(*size, *seed));
                for client in holders {
                    client.put(key, data.clone(), None).await.unwrap();
                }
            }
        });
        futures::stream::iter(jobs)
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
    }

    /// Runs `tritontube admin VERB ADMIN SPARE`; returns the time taken.
    fn admin(&self, verb: &str) -> Duration {
        let mut command = Command::new(BIN);
        command.arg("admin");
        if let Some(certs) = &self.certs {
            command.arg("--certs-dir").arg(certs);
        }
        let started = Instant::now();
        let output = command
            .args([verb, &self.admin, &self.spare.addr.to_string()])
            .output()
            .expect("run tritontube admin");
        let took = started.elapsed();
        assert!(
            output.status.success(),
            "{}: admin {verb} failed: {} {}",
            self.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        took
    }

    /// The web node's segment cache counters (hits, misses).
    async fn cache_counts(&self, http: &reqwest::Client) -> (u64, u64) {
        let text = http
            .get(format!("{}/metrics", self.web))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let counter = |suffix: &str| {
            text.lines()
                .filter(|l| l.split(' ').next().is_some_and(|n| n.ends_with(suffix)))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        };
        (counter("_cache_hits_total"), counter("_cache_misses_total"))
    }
}

/// One cold-path load: CONNECTIONS clients GET random segments for `seconds`.
struct Load {
    requests: u64,
    bytes: u64,
    errors: u64,
    seconds: f64,
    latencies_ms: Vec<f64>,
    hits: u64,
    misses: u64,
}

impl Load {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    fn mbs(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return f64::NAN;
        }
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    }
}

async fn cold_load(
    cluster: &Cluster,
    http: &reqwest::Client,
    keys: &Arc<Vec<String>>,
    seconds: f64,
    connections: usize,
) -> Load {
    let (hits_before, misses_before) = cluster.cache_counts(http).await;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    // The viewers walk the (shuffled) keys together: a key comes round again only after
    // every other, long after the web node's one-byte cache has let it go.
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..connections).map(|_| {
        let (http, keys, web) = (http.clone(), Arc::clone(keys), cluster.web.clone());
        let next = Arc::clone(&next);
        tokio::spawn(async move {
            let (mut requests, mut bytes, mut errors, mut latencies) = (0, 0, 0, Vec::new());
            while Instant::now() < until {
                let key = &keys[next.fetch_add(1, Ordering::Relaxed) % keys.len()];
                let asked = Instant::now();
                let body = match http.get(format!("{web}/content/{key}")).send().await {
                    Ok(response) if response.status().is_success() => response.bytes().await,
                    Ok(_) => {
                        errors += 1;
                        continue;
                    }
                    Err(e) => Err(e),
                };
                match body {
                    Ok(body) => {
                        latencies.push(asked.elapsed().as_secs_f64() * 1e3);
                        requests += 1;
                        bytes += body.len() as u64;
                    }
                    Err(_) => errors += 1,
                }
            }
            (requests, bytes, errors, latencies)
        })
    });
    let mut load = Load {
        requests: 0,
        bytes: 0,
        errors: 0,
        seconds: 0.0,
        latencies_ms: Vec::new(),
        hits: 0,
        misses: 0,
    };
    for done in futures::future::join_all(workers).await {
        let (requests, bytes, errors, latencies) = done.unwrap();
        load.requests += requests;
        load.bytes += bytes;
        load.errors += errors;
        load.latencies_ms.extend(latencies);
    }
    load.seconds = started.elapsed().as_secs_f64();
    let (hits, misses) = cluster.cache_counts(http).await;
    (load.hits, load.misses) = (hits - hits_before, misses - misses_before);
    load
}

/// Records the whole machine with `perf record -a -g` until the returned process is
/// interrupted.
fn profiler(file: &str) -> std::process::Child {
    let child = Command::new("perf")
        .args(["record", "-a", "-g", "-F", "999", "-o", file])
        .stderr(Stdio::null())
        .spawn()
        .expect("run perf record");
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn stop_profiler(mut perf: std::process::Child) {
    Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status()
        .unwrap();
    perf.wait().unwrap();
}

struct Change {
    took: Duration,
    files: usize,
    bytes: u64,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (videos, rounds, seconds, connections) = if full {
        (
            env_usize("TLS_VIDEOS", 16),
            env_usize("TLS_ROUNDS", 3),
            env_usize("TLS_SECONDS", 10) as f64,
            env_usize("TLS_CONNECTIONS", 16),
        )
    } else {
        (1, 1, 1.0, 4)
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let certs_dir = temp.path().join("certs");
    certs::create_ca(&certs_dir).unwrap();
    certs::create_node(&certs_dir, &["127.0.0.1".into(), "localhost".into()]).unwrap();
    certs::create_client(&certs_dir, tritontube::trust::tls::DEFAULT_CLIENT).unwrap();
    let clusters = [
        Cluster::start("plain", temp.path(), None),
        Cluster::start("tls", temp.path(), Some(&certs_dir)),
    ];

    let mut keys = Vec::new();
    for v in 0..videos {
        for rep in 0..2 {
            for n in 1..=SEGMENTS {
                let size = if rep == 0 {
                    VIDEO_SEGMENT_BYTES
                } else {
                    AUDIO_SEGMENT_BYTES
                };
                let key = format!("bench{v:03}/chunk-{rep}-{n:05}.m4s");
                keys.push((key, size, (v * 1000 + rep * 100 + n) as u64));
            }
        }
    }
    let key_bytes: usize = keys.iter().map(|(_, size, _)| size).sum();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let seeding = Instant::now();
    for cluster in &clusters {
        runtime.block_on(cluster.seed(&keys));
    }
    eprintln!(
        "seeded {} keys ({:.0} MB, R = {DEFAULT_REPLICAS}) on both clusters in {:.1} s",
        keys.len(),
        key_bytes as f64 / 1e6,
        seeding.elapsed().as_secs_f64()
    );
    let mut names: Vec<String> = keys.iter().map(|(k, _, _)| k.clone()).collect();
    // Fisher–Yates with a fixed xorshift: videos and audio interleaved, the same each run.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..names.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        names.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let names = Arc::new(names);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    // Warm both (connections, page cache) before anything is counted.
    for cluster in &clusters {
        runtime.block_on(cold_load(
            cluster,
            &http,
            &names,
            seconds.min(3.0),
            connections,
        ));
    }

    let mut loads: Vec<[Option<Load>; 2]> = Vec::new();
    let mut changes: Vec<[Option<Change>; 2]> = Vec::new();
    for round in 0..rounds {
        // Alternate which cluster goes first, so a burst of load elsewhere hits both alike.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut round_loads = [None, None];
        for &i in &order {
            let perf = std::env::var("TLS_PROFILE")
                .ok()
                .filter(|_| round == 0 && i == 1)
                .map(|file| profiler(&file));
            let load =
                runtime.block_on(cold_load(&clusters[i], &http, &names, seconds, connections));
            if let Some(perf) = perf {
                stop_profiler(perf);
            }
            eprintln!(
                "round {}: {} cold path {:.0} req/s, {:.0} MB/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, {} cache hits",
                round + 1,
                clusters[i].name,
                load.rps(),
                load.mbs(),
                load.percentile(0.5),
                load.percentile(0.99),
                load.errors,
                load.hits
            );
            round_loads[i] = Some(load);
        }
        loads.push(round_loads);
        let mut round_changes = [None, None];
        for &i in &order {
            let cluster = &clusters[i];
            let took = cluster.admin("add");
            let received = visible_files(&cluster.spare.dir);
            let change = Change {
                took,
                files: received.len(),
                bytes: received.iter().map(|(_, size)| size).sum(),
            };
            cluster.admin("remove");
            eprintln!(
                "round {}: {} ring change {:.2} s, {} files, {:.0} MB",
                round + 1,
                cluster.name,
                change.took.as_secs_f64(),
                change.files,
                change.bytes as f64 / 1e6
            );
            round_changes[i] = Some(change);
        }
        changes.push(round_changes);
    }

    for (round, pair) in loads.iter().enumerate() {
        for load in pair.iter().flatten() {
            assert!(
                load.requests > 0 && load.errors == 0,
                "round {}: {} requests, {} errors",
                round + 1,
                load.requests,
                load.errors
            );
        }
    }
    for pair in &changes {
        for change in pair.iter().flatten() {
            assert!(change.files > 0, "the added node received nothing");
        }
    }

    println!(
        "{} keys ({:.0} MB; per video {SEGMENTS} video segments of {VIDEO_SEGMENT_BYTES} B and {SEGMENTS} audio segments of {AUDIO_SEGMENT_BYTES} B) \
         on 2 nodes, R = {DEFAULT_REPLICAS}, V = {DEFAULT_VIRTUAL_NODES}; cold path: {connections} concurrent viewers, {seconds:.0} s per cluster and round; {rounds} rounds.",
        keys.len(),
        key_bytes as f64 / 1e6
    );
    println!();
    println!(
        "| round | cluster | cold GET req/s | MB/s | p50 ms | p99 ms | errors | cache hits | ring change s | files | MB | files/s | MB/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mb = |bytes: u64| bytes as f64 / 1e6;
    for round in 0..rounds {
        for i in 0..2 {
            let (load, change) = (
                loads[round][i].as_ref().unwrap(),
                changes[round][i].as_ref().unwrap(),
            );
            let took = change.took.as_secs_f64();
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {} of {} | {took:.2} | {} | {:.0} | {:.0} | {:.0} |",
                round + 1,
                clusters[i].name,
                load.rps(),
                load.mbs(),
                load.percentile(0.5),
                load.percentile(0.99),
                load.errors,
                load.hits,
                load.hits + load.misses,
                change.files,
                mb(change.bytes),
                change.files as f64 / took,
                mb(change.bytes) / took
            );
        }
    }
    let med_load = |i: usize, f: &dyn Fn(&Load) -> f64| {
        median(loads.iter().map(|p| f(p[i].as_ref().unwrap())).collect())
    };
    let med_change = |i: usize, f: &dyn Fn(&Change) -> f64| {
        median(changes.iter().map(|p| f(p[i].as_ref().unwrap())).collect())
    };
    let fps = |c: &Change| c.files as f64 / c.took.as_secs_f64();
    let mbs = |c: &Change| mb(c.bytes) / c.took.as_secs_f64();
    for (i, cluster) in clusters.iter().enumerate() {
        println!(
            "| **median** | **{}** | **{:.0}** | {:.0} | **{:.2}** | **{:.2}** | | | {:.2} | | | **{:.0}** | **{:.0}** |",
            cluster.name,
            med_load(i, &Load::rps),
            med_load(i, &Load::mbs),
            med_load(i, &|l| l.percentile(0.5)),
            med_load(i, &|l| l.percentile(0.99)),
            med_change(i, &|c| c.took.as_secs_f64()),
            med_change(i, &fps),
            med_change(i, &mbs),
        );
    }
    println!();
    println!("| goal: TLS costs at most 10 % | plain | TLS | TLS ÷ plain | |");
    println!("|---|---:|---:|---:|---|");
    let row = |what: &str, plain: f64, tls: f64, higher_is_better: bool| {
        let ratio = tls / plain;
        let met = if higher_is_better {
            ratio >= 0.9
        } else {
            ratio <= 1.1
        };
        println!(
            "| {what} | {plain:.2} | {tls:.2} | {ratio:.3} | {} |",
            if met { "met" } else { "**missed**" }
        );
    };
    row(
        "cold path req/s",
        med_load(0, &Load::rps),
        med_load(1, &Load::rps),
        true,
    );
    row(
        "cold path p50 ms",
        med_load(0, &|l| l.percentile(0.5)),
        med_load(1, &|l| l.percentile(0.5)),
        false,
    );
    row(
        "cold path p99 ms",
        med_load(0, &|l| l.percentile(0.99)),
        med_load(1, &|l| l.percentile(0.99)),
        false,
    );
    row(
        "ring change files/s",
        med_change(0, &fps),
        med_change(1, &fps),
        true,
    );
    row(
        "ring change MB/s",
        med_change(0, &mbs),
        med_change(1, &mbs),
        true,
    );
}
