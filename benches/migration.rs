//! A 4th storage node joins three that hold DASH-like files: the time of
//! `tritontube admin add` (files/s, MB/s) beside `cp -r` of the same files on the same
//! disk, in the same run, and the share of the files that moved beside the ideal 1/4.
//!
//! Everything runs as release-built processes on 127.0.0.1: four `tritontube storage`
//! nodes, a `tritontube web` node on SQLite (default R and V), and the `tritontube admin`
//! command timed as a user runs it. The files are put straight onto the holders the ring
//! wants. Each round adds the node (timed), copies what it received with `cp -r` (timed),
//! then removes it again (timed too, the files move back) so the next round starts alike.
//!
//! `cargo bench --bench migration -- --bench` (or scripts/bench/migration.sh) prints a
//! markdown table. Without `--bench` (as under `cargo test --all-targets`) it moves a few
//! files once, as a smoke test. MIGRATION_VIDEOS (default 40, 30 files each) and
//! MIGRATION_ROUNDS (default 3) change the size; MIGRATION_PROFILE=FILE records round 1's
//! add (MIGRATION_PROFILE_ROUND=N another's) with `perf record -a -g`; MIGRATION_WEB_LOG=FILE keeps the web node's log. Temporary folders live under $TMPDIR.

use std::process::{Command, Stdio};
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

const BIN: &str = env!("CARGO_BIN_EXE_tritontube");
/// A 4 s segment at the transcoder's 3000 kbit/s, and its 128 kbit/s audio companion.
const VIDEO_SEGMENT_BYTES: usize = 1_500_000;
const AUDIO_SEGMENT_BYTES: usize = 64_000;
/// Segments per representation of a video (60 s in 4 s segments).
const SEGMENTS: usize = 15;

/// Puts every file on the holders `ring` names, as the web node would have.
async fn seed(nodes: &[&StorageProcess], ring: &Ring, videos: usize) -> (usize, u64) {
    let mut jobs = Vec::new();
    for v in 0..videos {
        for rep in 0..2 {
            for n in 1..=SEGMENTS {
                let key = format!("bench{v:03}/chunk-{rep}-{n:05}.m4s");
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
                        let node = nodes.iter().find(|n| n.addr.to_string() == a).unwrap();
                        StorageClient::connect_lazy(&node.addr.to_string()).unwrap()
                    })
                    .collect();
                jobs.push(async move {
                    let data = Bytes::from(pseudo_random_bytes(size, seed));
                    for client in holders {
                        client.put(&key, data.clone(), None).await.unwrap();
                    }
                    size as u64
                });
            }
        }
    }
    let files = jobs.len();
    let bytes = futures::stream::iter(jobs)
        .buffer_unordered(8)
        .fold(0, |sum, size| async move { sum + size })
        .await;
    (files, bytes)
}

/// Runs `tritontube admin VERB ADMIN NODE`; returns the time taken and the files migrated.
fn admin(verb: &str, admin: &str, node: &str) -> (Duration, u64) {
    let started = Instant::now();
    let output = Command::new(BIN)
        .args(["admin", verb, admin, node])
        .output()
        .expect("run tritontube admin");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "admin {verb} failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let migrated = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Number of files migrated: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("migrated count");
    (took, migrated)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (videos, rounds) = if full {
        (
            env_usize("MIGRATION_VIDEOS", 40),
            env_usize("MIGRATION_ROUNDS", 3),
        )
    } else {
        (2, 1)
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let nodes: Vec<StorageProcess> = (1..=4)
        .map(|i| StorageProcess::start(&temp.path().join(format!("node{i}"))))
        .collect();
    let three: Vec<String> = nodes[..3].iter().map(|n| n.addr.to_string()).collect();
    let newcomer = nodes[3].addr.to_string();
    let ring = Ring::with_nodes(
        DEFAULT_VIRTUAL_NODES,
        DEFAULT_REPLICAS,
        three.iter().cloned(),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let seeding = Instant::now();
    let (keys, key_bytes) =
        runtime.block_on(seed(&nodes[..3].iter().collect::<Vec<_>>(), &ring, videos));
    eprintln!(
        "seeded {keys} keys ({:.0} MB, R = {DEFAULT_REPLICAS}) in {:.1} s",
        key_bytes as f64 / 1e6,
        seeding.elapsed().as_secs_f64()
    );
    let copies: usize = nodes.iter().map(|n| visible_files(&n.dir).len()).sum();

    let (http_port, admin_port) = (free_port(), free_port());
    let admin_address = format!("127.0.0.1:{admin_port}");
    let web_log = std::fs::File::create(temp.path().join("web.log")).unwrap();
    let web = Command::new(BIN)
        .args(["web", "--host", "127.0.0.1", "--port"])
        .arg(http_port.to_string())
        .arg("--work-dir")
        .arg(temp.path().join("web-work"))
        .arg("sqlite")
        .arg(temp.path().join("metadata.db"))
        .arg("nw")
        .arg(format!("{admin_address},{}", three.join(",")))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(web_log)
        .spawn()
        .expect("start tritontube web");
    let _web = Stopped(web);
    wait_for_port(admin_port);

    struct Round {
        add: Duration,
        moved: u64,
        files: usize,
        bytes: u64,
        cp: Duration,
        sync: Duration,
        dd: Duration,
        remove: Duration,
    }
    let mut results = Vec::new();
    for round in 1..=rounds {
        // MIGRATION_PROFILE=FILE: whole-machine samples (perf record -a -g) of one round's
        // add, round 1 unless MIGRATION_PROFILE_ROUND says.
        let profiler = std::env::var("MIGRATION_PROFILE")
            .ok()
            .filter(|_| round == env_usize("MIGRATION_PROFILE_ROUND", 1))
            .map(|file| {
                let child = Command::new("perf")
                    .args(["record", "-a", "-g", "-F", "999", "-o", &file])
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("run perf record");
                std::thread::sleep(Duration::from_millis(300));
                child
            });
        let (add, moved) = admin("add", &admin_address, &newcomer);
        if let Some(mut perf) = profiler {
            Command::new("kill")
                .args(["-INT", &perf.id().to_string()])
                .status()
                .unwrap();
            perf.wait().unwrap();
        }
        let received = visible_files(&nodes[3].dir);
        let bytes: u64 = received.iter().map(|(_, size)| size).sum();

        // The reference copies exactly the files the node received, from the same disk.
        let staging = temp.path().join(format!("cp-source-{round}"));
        for (path, _) in &received {
            let rel = path.strip_prefix(&nodes[3].dir).unwrap();
            std::fs::create_dir_all(staging.join(rel.parent().unwrap())).unwrap();
            std::fs::hard_link(path, staging.join(rel)).unwrap();
        }
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
        // The node makes every file durable; `sync` shows what that costs `cp`.
        let started = Instant::now();
        Command::new("sync").status().unwrap();
        let sync = started.elapsed();
        std::fs::remove_dir_all(&staging).unwrap();
        std::fs::remove_dir_all(&target).unwrap();
        // The disk's own durable write bandwidth, same bytes, same folder: one stream of
        // zeros, fsynced once at the end.
        let dd_file = temp.path().join(format!("dd-{round}"));
        let started = Instant::now();
        let status = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", dd_file.display()))
            .args([
                "bs=1M",
                &format!("count={}", bytes.div_ceil(1 << 20)),
                "conv=fsync",
                "status=none",
            ])
            .status()
            .expect("run dd");
        let dd = started.elapsed();
        assert!(status.success());
        std::fs::remove_file(&dd_file).unwrap();

        let (remove, _) = admin("remove", &admin_address, &newcomer);
        eprintln!(
            "round {round}: add {:.2} s ({moved} keys, {} files, {:.0} MB), cp -r {:.2} s (+ sync {:.2} s), remove {:.2} s",
            add.as_secs_f64(),
            received.len(),
            bytes as f64 / 1e6,
            cp.as_secs_f64(),
            sync.as_secs_f64(),
            remove.as_secs_f64()
        );
        results.push(Round {
            add,
            moved,
            files: received.len(),
            bytes,
            cp,
            sync,
            dd,
            remove,
        });
    }

    // MIGRATION_WEB_LOG=FILE keeps the web node's log (its workers log each step).
    if let Ok(keep) = std::env::var("MIGRATION_WEB_LOG") {
        std::fs::copy(temp.path().join("web.log"), keep).expect("copy the web node's log");
    }
    let per_s = |count: f64, d: Duration| count / d.as_secs_f64();
    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!(
        "{keys} keys ({:.0} MB; per video {SEGMENTS} video segments of {VIDEO_SEGMENT_BYTES} B and {SEGMENTS} audio segments of {AUDIO_SEGMENT_BYTES} B) \
         on 3 nodes, R = {DEFAULT_REPLICAS}, V = {DEFAULT_VIRTUAL_NODES}: {copies} file copies; {rounds} rounds.",
        mb(key_bytes)
    );
    println!();
    println!(
        "| round | files to the new node | MB | `admin add` s | files/s | MB/s | `cp -r` s | files/s | MB/s | add ÷ cp (files/s) | `sync` after cp, s | `dd conv=fsync` s | `admin remove` s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in results.iter().enumerate() {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.0} | {:.0} | {:.3} | {:.0} | {:.0} | {:.3} | {:.2} | {:.2} | {:.2} |",
            i + 1,
            r.files,
            mb(r.bytes),
            r.add.as_secs_f64(),
            per_s(r.files as f64, r.add),
            per_s(mb(r.bytes), r.add),
            r.cp.as_secs_f64(),
            per_s(r.files as f64, r.cp),
            per_s(mb(r.bytes), r.cp),
            r.cp.as_secs_f64() / r.add.as_secs_f64(),
            r.sync.as_secs_f64(),
            r.dd.as_secs_f64(),
            r.remove.as_secs_f64()
        );
    }
    let med = |f: &dyn Fn(&Round) -> f64| median(results.iter().map(f).collect());
    let add_fps = med(&|r| per_s(r.files as f64, r.add));
    let add_mbs = med(&|r| per_s(mb(r.bytes), r.add));
    let cp_fps = med(&|r| per_s(r.files as f64, r.cp));
    let cp_mbs = med(&|r| per_s(mb(r.bytes), r.cp));
    let cp_sync_fps = med(&|r| per_s(r.files as f64, r.cp + r.sync));
    let ratio = add_fps / cp_fps;
    println!(
        "| **median** | | | **{:.2}** | **{add_fps:.0}** | **{add_mbs:.0}** | **{:.3}** | **{cp_fps:.0}** | **{cp_mbs:.0}** | **{ratio:.3}** | {:.2} | {:.2} | {:.2} |",
        med(&|r| r.add.as_secs_f64()),
        med(&|r| r.cp.as_secs_f64()),
        med(&|r| r.sync.as_secs_f64()),
        med(&|r| r.dd.as_secs_f64()),
        med(&|r| r.remove.as_secs_f64()),
    );
    println!();
    let first = &results[0];
    let moved_share = first.files as f64 / copies as f64;
    let keys_share = first.moved as f64 / keys as f64;
    let cp_sync_ratio = add_fps / cp_sync_fps;
    let target = if cp_sync_ratio >= 1.0 {
        "met"
    } else {
        "**missed**"
    };
    println!("| target | Tritontube | reference | ratio | |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| files/s ≥ 1.0 × `cp -r` + `sync` (durable, as our copies are) | {add_fps:.0} files/s | {cp_sync_fps:.0} files/s | {cp_sync_ratio:.3} | {target} |"
    );
    println!(
        "| (for scale) against `cp -r` alone | {add_fps:.0} files/s, {add_mbs:.0} MB/s | {cp_fps:.0} files/s, {cp_mbs:.0} MB/s | {ratio:.3} | |"
    );
    let dd_mbs = med(&|r| per_s(mb(r.bytes), r.dd));
    println!(
        "| (the disk) MB/s against `dd conv=fsync` of as many bytes | {add_mbs:.0} MB/s | {dd_mbs:.0} MB/s | {:.3} | |",
        add_mbs / dd_mbs
    );
    println!(
        "| copies moved to the 4th node ÷ all copies | {}/{copies} = {moved_share:.3} | ideal 1/4 = 0.250 | {:.2} | |",
        first.files,
        moved_share / 0.25
    );
    println!(
        "| keys whose holders changed ÷ keys (R = {DEFAULT_REPLICAS}) | {}/{keys} = {keys_share:.3} | ideal {DEFAULT_REPLICAS}/4 = {:.3} | {:.2} | |",
        first.moved,
        f64::from(DEFAULT_REPLICAS) / 4.0,
        keys_share / (f64::from(DEFAULT_REPLICAS) / 4.0)
    );
}
