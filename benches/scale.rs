//! The control plane at scale: for each N, N keys of 1 KiB laid out directly on the disks
//! of three storage nodes where the ring places them (R = 2, default virtual nodes), each
//! file with the node's own integrity record, and the videos' records in SQLite; then,
//! timed as a user runs them, `tritontube admin add` of a fourth node, `admin remove` of
//! it, `admin repair` and `admin repair --dry-run` on the healthy cluster, and `admin
//! repair` after one node's folder was wiped. Peak RSS (VmHWM) of the web node and of each
//! storage node is read just before each stops.
//!
//! Release-built processes on 127.0.0.1: `tritontube storage` ×4 and a `tritontube web`
//! node on SQLite (`--repair-every-secs 0`: no scheduled repair; the web node still
//! starts a repair by itself when it sees the wiped node come back, which `admin repair`
//! then follows). Keys look like real ones: videos of 100 files
//! (`video-00042/chunk-0-00017.m4s`). Reference for the file rate: `cp -r` of one node's
//! folder on the same disk, then `sync`.
//!
//! `cargo bench --bench scale -- --bench` (or scripts/bench/scale.sh) prints a markdown
//! table; SCALE_KEYS (default `20000 200000`) lists the key counts. Without `--bench` (as
//! under `cargo test --all-targets`) it runs every step once on 300 keys, as a smoke test.
//! Temporary folders live under $TMPDIR; the run refuses to start when the disk would
//! keep less than 20 GB free.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{
    Stopped, StorageProcess, free_port, pseudo_random_bytes, visible_files, wait_for_port,
};
use futures::StreamExt;
use tritontube::background::WorkerKind;
use tritontube::meta::{MetaStore, VideoDetails};
use tritontube::node::disk::disk_space;
use tritontube::node::layout::lay_out_file;
use tritontube::proto::admin::video_content_admin_service_client::VideoContentAdminServiceClient;
use tritontube::proto::admin::{ClusterHealthRequest, ListWorkersRequest};
use tritontube::ring::{DEFAULT_REPLICAS, DEFAULT_VIRTUAL_NODES, Ring};

const BIN: &str = env!("CARGO_BIN_EXE_tritontube");
const FILE_BYTES: usize = 1024;
const FILES_PER_VIDEO: usize = 100;
/// Free space the run never goes below.
const KEEP_FREE_BYTES: u64 = 20_000_000_000;
/// Blocks one laid-out copy takes, with its folder's share and the copies a run makes
/// besides (the moves of a ring change, the reference copy): a generous bound.
const DISK_BYTES_PER_KEY: u64 = 4 * 4096;
/// The web node probes its nodes this often (cluster::health::PROBE_EVERY) and may start
/// a repair after a probe: the cluster counts as quiet after this long with nothing running.
const QUIET_FOR: Duration = Duration::from_secs(6);

/// The file name of the `i`th file of a video: the manifest, two init segments, then
/// segments of a video and an audio rendition, as the web node stores them.
fn file_name(i: usize) -> String {
    match i {
        0 => "manifest.mpd".to_string(),
        1 => "init-0.m4s".to_string(),
        2 => "init-1.m4s".to_string(),
        i if i % 2 == 1 => format!("chunk-0-{:05}.m4s", (i - 1) / 2),
        i => format!("chunk-1-{:05}.m4s", (i - 2) / 2),
    }
}

fn video_id(v: usize) -> String {
    format!("video-{v:05}")
}

fn key_of(k: usize) -> String {
    format!(
        "{}/{}",
        video_id(k / FILES_PER_VIDEO),
        file_name(k % FILES_PER_VIDEO)
    )
}

/// A field of /proc/PID/status in KiB (VmHWM: peak resident set).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} of {pid}"))
}

fn peak_mb(pid: u32) -> f64 {
    status_kib(pid, "VmHWM") as f64 / 1024.0
}

/// Writes every key's copies where `ring` places them (`dirs`: each node's folder by
/// address), with a few threads, and syncs the file system once.
fn lay_out(keys: usize, ring: &Ring, dirs: &HashMap<String, PathBuf>) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= keys {
                        break;
                    }
                    let key = key_of(k);
                    let data = pseudo_random_bytes(FILE_BYTES, k as u64);
                    for owner in ring.owners(&key) {
                        lay_out_file(&dirs[owner], &key, &data)
                            .unwrap_or_else(|e| panic!("laying out {key}: {e}"));
                    }
                }
            });
        }
    });
    assert!(Command::new("sync").status().unwrap().success());
}

/// The records the web node writes for finished uploads of these videos.
async fn record_videos(db: &Path, keys: usize) {
    let meta = MetaStore::sqlite(db).await.expect("open SQLite");
    let videos = keys.div_ceil(FILES_PER_VIDEO);
    futures::stream::iter(0..videos)
        .map(|v| {
            let meta = meta.clone();
            async move {
                let id = video_id(v);
                let files = (keys - v * FILES_PER_VIDEO).min(FILES_PER_VIDEO) as u64;
                meta.claim_video(&id, chrono::Utc::now()).await.unwrap();
                let details = VideoDetails {
                    duration_seconds: 4.0 * (files as f64 / 2.0),
                    file_count: files,
                    stored_bytes: files * FILE_BYTES as u64,
                    width: 640,
                    height: 360,
                    ..VideoDetails::default()
                };
                meta.finish_video(&id, &details).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// Runs `tritontube admin ARGS…` to its end; returns the wall time and its stdout.
fn admin(args: &[&str]) -> (Duration, String) {
    let started = Instant::now();
    let output = Command::new(BIN)
        .arg("admin")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tritontube admin");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "admin {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (took, stdout)
}

fn migrated(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Number of files migrated: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("migrated count")
}

/// The line `admin repair` ends with ("Repair finished: …").
fn repair_outcome(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Repair finished: "))
        .expect("repair outcome")
        .to_string()
}

/// Waits until the web node runs no ring change or repair (its long-lived workers, such as
/// the resync queue, always run), journals no change and wants no repair, for QUIET_FOR in
/// a row, so one step's tail (a repair the web node started by itself) does
/// not run into the next step.
async fn wait_quiet(admin: &str) {
    let mut client = VideoContentAdminServiceClient::connect(format!("http://{admin}"))
        .await
        .expect("connect to the admin service");
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut quiet_since: Option<Instant> = None;
    loop {
        let workers = client
            .list_workers(ListWorkersRequest {})
            .await
            .expect("list workers")
            .into_inner();
        let health = client
            .cluster_health(ClusterHealthRequest {})
            .await
            .expect("cluster health")
            .into_inner();
        let busy = workers.journaled.is_some()
            || !health.repair_wanted.is_empty()
            || workers
                .workers
                .iter()
                .filter(|w| {
                    w.kind == WorkerKind::RingChange.name() || w.kind == WorkerKind::Repair.name()
                })
                .any(|w| !matches!(w.state.as_str(), "done" | "failed" | "interrupted"));
        match (busy, quiet_since) {
            (true, _) => quiet_since = None,
            (false, None) => quiet_since = Some(Instant::now()),
            (false, Some(since)) if since.elapsed() >= QUIET_FOR => return,
            (false, Some(_)) => {}
        }
        assert!(Instant::now() < deadline, "the web node never went quiet");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

struct Run {
    keys: usize,
    layout: Duration,
    add: Duration,
    moved: u64,
    remove: Duration,
    moved_back: u64,
    repair_healthy: Duration,
    dry_run: Duration,
    repair_wiped: Duration,
    copied: usize,
    web_peak_mb: f64,
    node_peak_mb: f64,
    reference: Duration,
    reference_files: usize,
}

fn run(keys: usize, runtime: &tokio::runtime::Runtime) -> Run {
    let temp = tempfile::tempdir().expect("temp dir");
    let free = disk_space(temp.path()).expect("free space").free_bytes;
    let need = keys as u64 * DISK_BYTES_PER_KEY;
    assert!(
        free.saturating_sub(need) >= KEEP_FREE_BYTES,
        "{keys} keys need about {} GB and would leave less than {} GB free ({} GB free)",
        need / 1_000_000_000,
        KEEP_FREE_BYTES / 1_000_000_000,
        free / 1_000_000_000
    );
    let dirs: Vec<PathBuf> = (1..=4)
        .map(|i| temp.path().join(format!("node{i}")))
        .collect();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let ring = Ring::with_nodes(
        DEFAULT_VIRTUAL_NODES,
        DEFAULT_REPLICAS,
        addresses[..3].iter().cloned(),
    );
    let by_address: HashMap<String, PathBuf> = addresses
        .iter()
        .cloned()
        .zip(dirs.iter().cloned())
        .collect();

    let db = temp.path().join("metadata.db");
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| runtime.block_on(record_videos(&db, keys)));
        lay_out(keys, &ring, &by_address);
    });
    let layout = started.elapsed();
    let held: Vec<usize> = dirs[..3].iter().map(|d| visible_files(d).len()).collect();
    assert_eq!(
        held.iter().sum::<usize>(),
        keys * DEFAULT_REPLICAS as usize,
        "every key laid out R times"
    );
    eprintln!(
        "{keys} keys: laid out {} copies ({held:?}) and {} video records in {:.1} s",
        keys * DEFAULT_REPLICAS as usize,
        keys.div_ceil(FILES_PER_VIDEO),
        layout.as_secs_f64()
    );

    let start = |i: usize| StorageProcess::start_at(&dirs[i], ports[i]);
    let mut nodes: Vec<StorageProcess> = (0..4).map(start).collect();
    let node_pids: Vec<u32> = nodes.iter().map(|n| n.pid()).collect();
    let (http_port, admin_port) = (free_port(), free_port());
    let admin_address = format!("127.0.0.1:{admin_port}");
    let web_log = std::fs::File::create(temp.path().join("web.log")).unwrap();
    let web = Command::new(BIN)
        .args(["web", "--host", "127.0.0.1", "--port"])
        .arg(http_port.to_string())
        .args(["--repair-every-secs", "0", "--work-dir"])
        .arg(temp.path().join("web-work"))
        .arg("sqlite")
        .arg(&db)
        .arg("nw")
        .arg(format!("{admin_address},{}", addresses[..3].join(",")))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(web_log)
        .spawn()
        .expect("start tritontube web");
    let web = Stopped(web);
    wait_for_port(admin_port);
    wait_for_port(http_port);
    runtime.block_on(wait_quiet(&admin_address));

    let (add, out) = admin(&["add", &admin_address, &addresses[3]]);
    let moved = migrated(&out);
    eprintln!(
        "{keys} keys: admin add {:.2} s, {moved} files moved",
        add.as_secs_f64()
    );
    assert!(moved > 0, "adding a node moved nothing");
    runtime.block_on(wait_quiet(&admin_address));

    let (remove, out) = admin(&["remove", &admin_address, &addresses[3]]);
    let moved_back = migrated(&out);
    eprintln!(
        "{keys} keys: admin remove {:.2} s, {moved_back} files moved",
        remove.as_secs_f64()
    );
    runtime.block_on(wait_quiet(&admin_address));

    let (repair_healthy, out) = admin(&["repair", &admin_address]);
    eprintln!(
        "{keys} keys: admin repair (healthy) {:.2} s: {}",
        repair_healthy.as_secs_f64(),
        repair_outcome(&out)
    );
    runtime.block_on(wait_quiet(&admin_address));

    let (dry_run, _) = admin(&["repair", "--dry-run", &admin_address]);
    eprintln!(
        "{keys} keys: admin repair --dry-run {:.2} s",
        dry_run.as_secs_f64()
    );

    // The third node loses its folder (a replaced disk) and comes back empty at its address.
    let wiped = 2;
    let before_wipe = visible_files(&dirs[wiped]).len();
    let mut node_peak_mb = peak_mb(node_pids[wiped]);
    drop(nodes.remove(wiped));
    std::fs::remove_dir_all(&dirs[wiped]).unwrap();
    nodes.insert(wiped, start(wiped));
    let (repair_wiped, out) = admin(&["repair", &admin_address]);
    let copied = visible_files(&dirs[wiped]).len();
    eprintln!(
        "{keys} keys: admin repair after a wipe {:.2} s, {copied} files back of {before_wipe}: {}",
        repair_wiped.as_secs_f64(),
        repair_outcome(&out)
    );
    assert_eq!(copied, before_wipe, "the wiped node was not refilled");
    runtime.block_on(wait_quiet(&admin_address));

    let web_peak_mb = peak_mb(web.0.id());
    drop(web);
    for node in nodes.drain(..) {
        node_peak_mb = node_peak_mb.max(peak_mb(node.pid()));
    }

    // Reference: the same disk copying one node's folder of 1 KiB files, then syncing.
    let reference_files = visible_files(&dirs[0]).len();
    let target = temp.path().join("cp-target");
    let started = Instant::now();
    assert!(
        Command::new("cp")
            .arg("-r")
            .arg(&dirs[0])
            .arg(&target)
            .status()
            .unwrap()
            .success()
    );
    assert!(Command::new("sync").status().unwrap().success());
    let reference = started.elapsed();
    eprintln!(
        "{keys} keys: cp -r + sync of {reference_files} files {:.2} s",
        reference.as_secs_f64()
    );
    Run {
        keys,
        layout,
        add,
        moved,
        remove,
        moved_back,
        repair_healthy,
        dry_run,
        repair_wiped,
        copied,
        web_peak_mb,
        node_peak_mb,
        reference,
        reference_files,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = if full {
        std::env::var("SCALE_KEYS")
            .unwrap_or_else(|_| "20000 200000".into())
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("SCALE_KEYS: key counts"))
            .collect()
    } else {
        vec![300]
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let runs: Vec<Run> = sizes.iter().map(|&keys| run(keys, &runtime)).collect();

    let rate = |files: f64, d: Duration| files / d.as_secs_f64();
    println!(
        "| keys | `admin add` s | files moved | files/s | `admin remove` s | `repair` healthy s | `repair --dry-run` s | `repair` after wipe s | files copied | web peak RSS MB | max node peak RSS MB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        println!(
            "| {} | {:.1} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.0} | {:.0} |",
            r.keys,
            r.add.as_secs_f64(),
            r.moved,
            rate(r.moved as f64, r.add),
            r.remove.as_secs_f64(),
            r.repair_healthy.as_secs_f64(),
            r.dry_run.as_secs_f64(),
            r.repair_wiped.as_secs_f64(),
            r.copied,
            r.web_peak_mb,
            r.node_peak_mb
        );
    }
    println!();
    println!(
        "| keys | laid out in s | files moved back by `remove` | files/s `remove` | files/s `repair` after wipe | reference: `cp -r` + `sync` of one node's folder | files | files/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        println!(
            "| {} | {:.1} | {} | {:.0} | {:.0} | {:.1} s | {} | {:.0} |",
            r.keys,
            r.layout.as_secs_f64(),
            r.moved_back,
            rate(r.moved_back as f64, r.remove),
            rate(r.copied as f64, r.repair_wiped),
            r.reference.as_secs_f64(),
            r.reference_files,
            rate(r.reference_files as f64, r.reference)
        );
    }
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let web_max = runs.iter().map(|r| r.web_peak_mb).fold(0.0, f64::max);
    println!(
        "- Goal: web node peak RSS under 128 MB at every N: largest {web_max:.0} MB — {}.",
        verdict(web_max < 128.0)
    );
    let (first, last) = (runs.first().unwrap(), runs.last().unwrap());
    let (small, large) = (
        rate(first.moved as f64, first.add),
        rate(last.moved as f64, last.add),
    );
    println!(
        "- Goal: files/s (`admin add`) at the largest N ({}) at least 0.8 × the rate at the smallest ({}): {large:.0} vs {small:.0} files/s = {:.2} × — {}.",
        last.keys,
        first.keys,
        large / small,
        verdict(large >= 0.8 * small)
    );
    match runs.iter().find(|r| r.keys == 2_000_000) {
        Some(r) => println!(
            "- Goal: a repair of a healthy 2 000 000-key cluster under 10 s: {:.1} s — {}.",
            r.repair_healthy.as_secs_f64(),
            verdict(r.repair_healthy < Duration::from_secs(10))
        ),
        None => println!(
            "- Goal: a repair of a healthy 2 000 000-key cluster under 10 s: not measured in this run (2000000 not in SCALE_KEYS)."
        ),
    }
}
