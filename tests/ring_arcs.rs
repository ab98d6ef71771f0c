//! Ring changes work through the keyspace arc by arc (DESIGN §3, §6): with a small
//! `--range-keys`, a change lists, moves and journals one arc at a time, and a web node
//! killed with SIGKILL in the middle is resumed by the next one at the first arc not done.
//! Real storage nodes, a real web node process, real SQLite.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use support::web::{WebProcess, free_port, ring_nodes};
use support::{StorageNode, pseudo_random_bytes, ring_of, sha256_hex, start_storage_nodes};
use tritontube::admin_cli::connect;
use tritontube::meta::MetaStore;
use tritontube::proto::admin::{
    ChangeKind, MigrationProgress, PauseMovesRequest, ResumeMovesRequest, SetPaceRequest,
    StartChangeRequest, WatchMigrationRequest,
};
use tritontube::ring::{KeyRange, Ring};

/// A guard against hanging forever, never a measurement.
const PATIENCE: Duration = Duration::from_secs(180);
/// The bound on keys per arc the tests give the web node.
const RANGE_KEYS: u64 = 20;

/// Records `videos` videos in the metadata store at `db` (files of a video without a
/// record are orphans a repair would delete) and puts `count` files of them on the
/// holders `ring` names. Returns key → SHA-256.
async fn seed(
    db: &Path,
    nodes: &[&StorageNode],
    ring: &Ring,
    count: usize,
    size: usize,
) -> BTreeMap<String, String> {
    let meta = MetaStore::sqlite(db).await.unwrap();
    for video in 0..7 {
        let id = format!("v{video}");
        meta.claim_video(&id, chrono::Utc::now()).await.unwrap();
        let details = tritontube::meta::VideoDetails::default();
        meta.finish_video(&id, &details).await.unwrap();
    }
    let mut keys = BTreeMap::new();
    for i in 0..count {
        let key = format!("v{}/chunk-0-{:05}.m4s", i % 7, i);
        let data = Bytes::from(pseudo_random_bytes(size + i, i as u64));
        for owner in ring.owners(&key) {
            let node = nodes.iter().find(|n| n.address() == owner).unwrap();
            node.client().put(&key, data.clone(), None).await.unwrap();
        }
        keys.insert(key, sha256_hex(&data));
    }
    keys
}

/// Every key sits on exactly the holders `ring` wants, each copy with its SHA-256, and
/// no key is missing or made up.
async fn assert_placed(nodes: &[&StorageNode], ring: &Ring, keys: &BTreeMap<String, String>) {
    let mut held: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in nodes {
        for info in node.client().keys(true).await.expect("list keys") {
            assert_eq!(
                keys.get(&info.key),
                Some(&info.sha256),
                "{} on {} is not the file stored",
                info.key,
                node.address()
            );
            held.entry(info.key).or_default().push(node.address());
        }
    }
    assert_eq!(
        held.keys().collect::<BTreeSet<_>>(),
        keys.keys().collect::<BTreeSet<_>>(),
        "keys lost or made up"
    );
    for (key, holders) in &mut held {
        holders.sort();
        let mut owners: Vec<String> = ring.owners(key).into_iter().map(String::from).collect();
        owners.sort();
        assert_eq!(holders, &owners, "{key} is not where the ring wants it");
    }
}

/// The ring change journaled in the SQLite file at `db`, if any (the journal as JSON).
async fn journal_in(db: &Path) -> Option<serde_json::Value> {
    let meta = MetaStore::sqlite(db).await.unwrap();
    let state = meta.load_cluster_state().await.unwrap()?;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    Some(state["migration"].clone()).filter(|m| !m.is_null())
}

/// Follows the change the web node at `admin` runs until it finishes; its last report.
async fn finished_progress(admin: &str) -> MigrationProgress {
    let mut stream = connect(admin, None)
        .unwrap()
        .watch_migration(WatchMigrationRequest {})
        .await
        .unwrap()
        .into_inner();
    loop {
        let report = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("the change goes on")
            .unwrap()
            .expect("the stream ends with the finished report");
        if report.finished {
            return report;
        }
    }
}

/// The index, in `arcs`, of the arc holding `key`.
fn arc_of(arcs: &[KeyRange], key: &str) -> usize {
    arcs.iter()
        .position(|a| a.contains_key(key))
        .expect("arcs cover the ring")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ring_change_works_arc_by_arc_within_the_key_bound() {
    let all = start_storage_nodes(4).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    let three: Vec<String> = all[..3].iter().map(|n| n.address()).collect();
    let four: Vec<String> = all.iter().map(|n| n.address()).collect();
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("metadata.db");
    let keys = seed(&db, &every[..3], &ring_of(&three, 2), 300, 4096).await;
    let uploads = work.path().join("uploads");
    let range_keys = RANGE_KEYS.to_string();
    let flags = [
        "--replicas",
        "2",
        "--range-keys",
        &range_keys,
        "--work-dir",
        uploads.to_str().unwrap(),
    ];
    let web = WebProcess::spawn(&db, &three, free_port(), free_port(), &flags).await;

    // The operator's command, as a process: its report names the arcs.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tritontube"))
        .args(["admin", "add", &web.admin, &four[3]])
        .output()
        .await
        .expect("tritontube admin add runs");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "admin add failed: {said}");

    let last = finished_progress(&web.admin).await;
    assert_eq!(last.errors, 0, "{}", last.last_error);
    // 600 copies, 20 keys per arc: 30 arcs, every one done, and the command said so.
    assert_eq!(last.arcs_total, 30, "{last:?}");
    assert_eq!(last.arcs_done, last.arcs_total, "{last:?}");
    assert_eq!(last.arcs_first, 0);
    assert!(
        said.contains(&format!("(arc {n}/{n})", n = last.arcs_total)),
        "admin add did not show the arcs: {said}"
    );
    // Each key was listed once, in its own arc, and no arc's inventory held much more
    // than the bound (equal arcs hold about 10 keys each here; one arc would hold 300).
    assert_eq!(last.keys_listed, keys.len() as u64, "{last:?}");
    assert!(
        last.arc_keys_max <= 2 * RANGE_KEYS,
        "an arc's inventory held {} keys",
        last.arc_keys_max
    );
    assert!(last.files_done > 0);
    assert_eq!(last.files_done, last.files_total);
    assert_eq!(ring_nodes(&web.admin).await, four.iter().cloned().collect());
    assert!(
        journal_in(&db).await.is_none(),
        "the journal was left behind"
    );
    assert_placed(&every, &ring_of(&four, 2), &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_ring_change_resumes_at_its_unfinished_arc() {
    let all = start_storage_nodes(3).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    let two: Vec<String> = all[..2].iter().map(|n| n.address()).collect();
    let three: Vec<String> = all.iter().map(|n| n.address()).collect();
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("metadata.db");
    let (old_ring, new_ring) = (ring_of(&two, 1), ring_of(&three, 1));
    let keys = seed(&db, &every[..2], &old_ring, 400, 32 * 1024).await;
    let uploads = work.path().join("uploads");
    let range_keys = RANGE_KEYS.to_string();
    let (http_port, admin_port) = (free_port(), free_port());
    let flags = vec!["--replicas", "1", "--work-dir", uploads.to_str().unwrap()];
    let mut web = {
        let mut first = flags.clone();
        first.extend(["--range-keys", &range_keys]);
        WebProcess::spawn(&db, &two, http_port, admin_port, &first).await
    };
    let mut admin = connect(&web.admin, None).unwrap();
    // A slow pace keeps the change going long enough to be caught between two arcs.
    admin.set_pace(SetPaceRequest { mbps: 1 }).await.unwrap();
    admin
        .start_change(StartChangeRequest {
            kind: ChangeKind::Add as i32,
            node_address: three[2].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let journal = journal_in(&db).await.expect("the change is journaled");
        if journal["arcs"]["done"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no arc was ever done: {journal}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Held where it stands (the pause is kept in the store, so the next web node starts
    // held too), then killed.
    admin.pause_moves(PauseMovesRequest {}).await.unwrap();
    web.kill();

    // The kill landed mid-change: some arcs done, not all; the ring not switched.
    let journal = journal_in(&db)
        .await
        .expect("the change is still journaled");
    let total = journal["arcs"]["count"].as_u64().unwrap();
    let done = journal["arcs"]["done"].as_u64().unwrap();
    // 400 copies, 20 keys per arc.
    assert_eq!(total, 20, "{journal}");
    assert!(0 < done && done < total, "{journal}");

    // A new web node on the same store, with the default bound: the journal's arcs hold.
    web = WebProcess::spawn(&db, &two, http_port, admin_port, &flags).await;
    let mut admin = connect(&web.admin, None).unwrap();
    admin.set_pace(SetPaceRequest { mbps: 0 }).await.unwrap();
    admin.resume_moves(ResumeMovesRequest {}).await.unwrap();
    let last = finished_progress(&web.admin).await;
    assert_eq!(last.errors, 0, "{}", last.last_error);
    assert_eq!(last.arcs_total, total, "{last:?}");
    assert_eq!(
        last.arcs_first, done,
        "the resumed change did not start at arc {done}"
    );
    assert_eq!(last.arcs_done, total);

    // What is left after arc `done`: the resumed change listed only those keys and moved
    // at most those files; nothing of the arcs done before was listed or copied again.
    let arcs = KeyRange::split_whole(total);
    let left: Vec<&String> = keys
        .keys()
        .filter(|k| arc_of(&arcs, k) >= done as usize)
        .collect();
    let left_to_move = left
        .iter()
        .filter(|k| old_ring.owners(k) != new_ring.owners(k))
        .count() as u64;
    assert_eq!(last.keys_listed, left.len() as u64, "{last:?}");
    assert!(
        last.files_done <= left_to_move,
        "{} files copied after the restart, {left_to_move} left to move",
        last.files_done
    );
    assert!(last.files_done > 0, "{last:?}");

    assert_eq!(
        ring_nodes(&web.admin).await,
        three.iter().cloned().collect()
    );
    assert!(
        journal_in(&db).await.is_none(),
        "the journal was left behind"
    );
    assert_placed(&every, &new_ring, &keys).await;
}
