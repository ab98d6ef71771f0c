//! The control plane's promises, with real storage nodes, SQLite and etcd: a ring change
//! belongs to the web node, not to the client that asked for it; of two web nodes asked
//! for two changes at once exactly one runs; readers never wait for writes or changes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use support::etcd::EtcdCluster;
use support::web::{WebOptions, holdings, ring_nodes, start_web_on_etcd, start_web_ring};
use support::{
    StorageNode, StorageProcess, pseudo_random_bytes, ring_of, start_storage_node,
    start_storage_nodes,
};
use tokio::io::AsyncWriteExt;

use tonic::Code;
use tritontube::admin_cli::connect;
use tritontube::background::{DRAIN_DEADLINE, Runner};
use tritontube::cluster::{ControlPlane, Seed};
use tritontube::meta::MetaStore;
use tritontube::proto::admin::{
    AddNodeRequest, CancelChangeRequest, ChangeKind, ListWorkersRequest, StartChangeRequest,
    WatchMigrationRequest,
};
use tritontube::ring::{DEFAULT_VIRTUAL_NODES, Ring};

/// A guard against hanging forever, never a measurement.
const PATIENCE: Duration = Duration::from_secs(120);

/// Puts `count` files straight on the owners `ring` names, as uploads would have.
/// Puts `count` files of 7 videos on the holders `ring` names. The videos are recorded
/// in the metadata store first: files of a video without a record are orphans, and a
/// repair the health monitor starts by itself (it does when a node first shows an empty,
/// new store while others hold files) deletes them.
async fn seed_files(
    meta: &MetaStore,
    nodes: &[&StorageNode],
    ring: &Ring,
    count: usize,
) -> BTreeSet<String> {
    for video in 0..count.min(7) {
        let id = format!("v{video}");
        meta.claim_video(&id, chrono::Utc::now()).await.unwrap();
        let details = tritontube::meta::VideoDetails::default();
        meta.finish_video(&id, &details).await.unwrap();
    }
    let mut keys = BTreeSet::new();
    for i in 0..count {
        let key = format!("v{}/chunk-0-{:05}.m4s", i % 7, i);
        let data = Bytes::from(pseudo_random_bytes(16 * 1024 + i, i as u64));
        for owner in ring.owners(&key) {
            let node = nodes.iter().find(|n| n.address() == owner).unwrap();
            node.client().put(&key, data.clone(), None).await.unwrap();
        }
        keys.insert(key);
    }
    keys
}

/// Every key sits on exactly the holders `ring` wants, and no key is missing.
fn assert_placed(held: &BTreeMap<String, Vec<String>>, ring: &Ring, keys: &BTreeSet<String>) {
    assert_eq!(
        &held.keys().cloned().collect::<BTreeSet<_>>(),
        keys,
        "keys lost or made up"
    );
    for (key, holders) in held {
        let mut owners: Vec<String> = ring.owners(key).into_iter().map(String::from).collect();
        owners.sort();
        assert_eq!(holders, &owners, "{key} is not where the ring wants it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_whose_client_goes_away_finishes_by_itself() {
    let all = start_storage_nodes(3).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    let web = start_web_ring(
        &every[..2],
        WebOptions {
            replicas: 2,
            ..WebOptions::default()
        },
    )
    .await;
    let two: Vec<String> = all[..2].iter().map(|n| n.address()).collect();
    let three: Vec<String> = all.iter().map(|n| n.address()).collect();
    let keys = seed_files(&web.meta, &every, &ring_of(&two, 2), 400).await;

    let mut watcher = connect(&web.admin, None).unwrap();
    let admin = web.admin.clone();
    let newcomer = all[2].address();
    let request = {
        let newcomer = newcomer.clone();
        tokio::spawn(async move {
            connect(&admin, None)
                .unwrap()
                .add_node(AddNodeRequest {
                    node_address: newcomer,
                })
                .await
        })
    };
    // The first progress report of this change, then the client goes away.
    let mut progress = watcher
        .watch_migration(WatchMigrationRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(PATIENCE, progress.message())
        .await
        .expect("a progress report")
        .unwrap()
        .expect("the stream is open");
    assert_eq!(first.node_address, newcomer);
    assert!(
        !first.finished,
        "the change finished before its client left"
    );
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());

    let mut last = first;
    while !last.finished {
        last = tokio::time::timeout(PATIENCE, progress.message())
            .await
            .expect("the change goes on")
            .unwrap()
            .expect("the stream ends with the finished report");
    }
    assert_eq!(last.errors, 0, "{}", last.last_error);
    assert_eq!(last.files_done, last.files_total);
    assert!(last.files_done > 0);
    assert_eq!(
        ring_nodes(&web.admin).await,
        three.iter().cloned().collect()
    );
    assert_placed(&holdings(&every).await, &ring_of(&three, 2), &keys);

    // The worker that ran it is listed with its outcome.
    let workers = watcher
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(workers.journaled.is_none());
    // Found by kind: a repair the web node starts by itself afterwards (the new node came
    // up empty) may be listed after it.
    let worker = workers
        .workers
        .iter()
        .find(|w| w.kind == "ring change")
        .expect("the change's worker");
    assert_eq!(worker.state, "done");
    assert_eq!(worker.files_done, last.files_done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_web_nodes_asked_at_once_exactly_one_changes_the_ring() {
    let etcd = EtcdCluster::start(3).await;
    let all = start_storage_nodes(4).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    let first = start_web_on_etcd(&etcd, &every[..2], 2).await;
    let second = start_web_on_etcd(&etcd, &every[..2], 2).await;
    let two: Vec<String> = all[..2].iter().map(|n| n.address()).collect();
    let keys = seed_files(&first.meta, &every, &ring_of(&two, 2), 200).await;

    // Two operators, two web nodes, two different nodes to add, at the same moment.
    let ask = |admin: String, node: String| async move {
        connect(&admin, None)
            .unwrap()
            .add_node(AddNodeRequest { node_address: node })
            .await
    };
    let (a, b) = tokio::join!(
        ask(first.admin.clone(), all[2].address()),
        ask(second.admin.clone(), all[3].address()),
    );
    let (winner, refusal) = match (a, b) {
        (Ok(_), Err(refused)) => (all[2].address(), refused),
        (Err(refused), Ok(_)) => (all[3].address(), refused),
        other => panic!("exactly one change must run: {other:?}"),
    };
    assert_eq!(refusal.code(), Code::FailedPrecondition, "{refusal:?}");
    assert!(
        refusal.message().contains("add 127.0.0.1:"),
        "the refusal names the running change: {}",
        refusal.message()
    );

    let mut expected: Vec<String> = two.clone();
    expected.push(winner);
    let want: BTreeSet<String> = expected.iter().cloned().collect();
    // The web node that ran it switched; the other follows the switch through its watch.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for web in [&first, &second] {
        while ring_nodes(&web.admin).await != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a web node never saw the switch"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Nothing lost, nothing duplicated: every key exactly on its R owners.
    assert_placed(&holdings(&every).await, &ring_of(&expected, 2), &keys);
}

/// A named pipe: a file whose reader waits until the test writes, so an upload can be
/// held in the middle for as long as the test needs.
fn fifo(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("held-upload");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    path
}

/// Opens the pipe's writing end without blocking when dropped, so a reader still
/// waiting in `open` (a test that failed before it wrote) is let go: otherwise the
/// runtime's shutdown waits for that blocked thread forever and the failure hangs.
struct ReleasePipe(std::path::PathBuf);

impl Drop for ReleasePipe {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        const O_NONBLOCK: i32 = 0o4000;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_never_wait_for_an_upload_or_a_ring_change() {
    let all = start_storage_nodes(3).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    let two: Vec<String> = all[..2].iter().map(|n| n.address()).collect();
    let three: Vec<String> = all.iter().map(|n| n.address()).collect();
    let work = tempfile::tempdir().unwrap();
    let meta = MetaStore::sqlite(&work.path().join("meta.db"))
        .await
        .unwrap();
    let runner = Arc::new(Runner::default());
    let plane = ControlPlane::start(
        meta.clone(),
        Seed {
            nodes: &two,
            spares: &[],
            virtual_nodes: DEFAULT_VIRTUAL_NODES,
            // One holder per file: the held upload below reads its pipe once.
            replicas: 1,
            repair_every: None,
            resync_poll: tritontube::cluster::resync::DEFAULT_POLL_EVERY,
            move_mbps: None,
            tls: None,
            range_keys: tritontube::cluster::arcs::DEFAULT_RANGE_KEYS,
        },
        runner.clone(),
    )
    .await
    .unwrap();
    let cluster = plane.cluster.clone();
    let mut keys = seed_files(&meta, &every, &ring_of(&two, 1), 40).await;

    // An upload that has chosen its holders and is sending its bytes, held mid-way.
    let pipe = fifo(work.path());
    let _release = ReleasePipe(pipe.clone());
    let upload = {
        let cluster = cluster.clone();
        let pipe = pipe.clone();
        tokio::spawn(async move { cluster.put_file("big/chunk-0-00001.m4s", &pipe, None).await })
    };
    keys.insert("big/chunk-0-00001.m4s".to_string());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while cluster.writes_before(u64::MAX) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A ring change starts, and must wait for that upload before its inventory.
    let migrator = plane.migrator.clone();
    let newcomer = all[2].address();
    let change = {
        let migrator = Arc::clone(&migrator);
        tokio::spawn(async move { migrator.add_node(&newcomer).await })
    };
    while cluster.snapshot().migration.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Meanwhile every read completes: none waits behind the upload or the change.
    let mut reads = 0;
    for key in keys
        .iter()
        .filter(|k| !k.starts_with("big/"))
        .cycle()
        .take(100)
    {
        let opened = tokio::time::timeout(PATIENCE, cluster.open(key, 0, 0))
            .await
            .expect("a read waited on the upload or the change")
            .unwrap()
            .expect("the file is found");
        let mut body = opened.body;
        let mut size = 0;
        while let Some(chunk) = futures::StreamExt::next(&mut body).await {
            size += chunk.unwrap().len() as u64;
        }
        assert_eq!(size, opened.stat.size);
        reads += 1;
    }
    assert_eq!(reads, 100);
    assert!(
        !upload.is_finished(),
        "the upload was not held during the reads"
    );
    assert!(
        !change.is_finished(),
        "the change did not wait for the upload"
    );

    // The upload ends; then the change runs and places it too.
    let mut writer = tokio::fs::OpenOptions::new()
        .write(true)
        .open(&pipe)
        .await
        .unwrap();
    writer
        .write_all(&pseudo_random_bytes(1024 * 1024, 99))
        .await
        .unwrap();
    drop(writer);
    let stored = upload.await.unwrap().unwrap();
    assert_eq!(stored.size, 1024 * 1024);
    let moved = tokio::time::timeout(PATIENCE, change)
        .await
        .expect("the change finishes")
        .unwrap()
        .unwrap();
    assert!(moved > 0);
    assert_placed(&holdings(&every).await, &ring_of(&three, 1), &keys);
    assert!(runner.shutdown(DRAIN_DEADLINE).await);
}

/// The ring change journaled in the metadata store, if any (the journal as JSON).
async fn journal_of(meta: &MetaStore) -> Option<serde_json::Value> {
    let state = meta.load_cluster_state().await.unwrap()?;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    Some(state["migration"].clone()).filter(|m| !m.is_null())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_add_moves_every_file_back() {
    let a = start_storage_node().await;
    let b = start_storage_node().await;
    let newcomer = StorageProcess::start().await;
    let two = vec![a.address(), b.address()];
    let web = start_web_ring(&[&a, &b], WebOptions::default()).await;
    let keys = seed_files(&web.meta, &[&a, &b], &ring_of(&two, 1), 150).await;
    let mut admin = connect(&web.admin, None).unwrap();

    // Nothing runs: nothing to cancel.
    let refused = admin
        .cancel_change(CancelChangeRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    let mut progress = admin
        .watch_migration(WatchMigrationRequest {})
        .await
        .unwrap()
        .into_inner();
    admin
        .start_change(StartChangeRequest {
            kind: ChangeKind::Add as i32,
            node_address: newcomer.address.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Held in the middle: the new node is paused once the inventory is taken.
    loop {
        let report = tokio::time::timeout(PATIENCE, progress.message())
            .await
            .expect("progress")
            .unwrap()
            .expect("open stream");
        assert!(!report.finished, "finished before it could be held");
        if report.files_total > 0 {
            newcomer.signal("-STOP");
            break;
        }
    }
    // Held mid-change: the ring has not switched, the change is journaled, not cancelled,
    // with files still to copy.
    assert_eq!(ring_nodes(&web.admin).await, two.iter().cloned().collect());
    let journal = journal_of(&web.meta)
        .await
        .expect("the change is journaled");
    assert_eq!(journal["cancelled"], false, "{journal}");
    let held = admin
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .journaled
        .expect("the change is listed as journaled");
    assert!(held.files_done < held.files_total, "{held:?}");
    let cancel = {
        let mut admin = admin.clone();
        tokio::spawn(async move { admin.cancel_change(CancelChangeRequest {}).await })
    };
    // The forward copies in flight finish once the node runs again; then the roll-back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    newcomer.signal("-CONT");
    let description = cancel.await.unwrap().unwrap().into_inner().description;
    assert_eq!(description, format!("cancelling add {}", newcomer.address));
    // The cancel turned the journal into its roll-back (unless that has finished already).
    if let Some(journal) = journal_of(&web.meta).await {
        assert_eq!(journal["cancelled"], true, "{journal}");
    }

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let rollback = loop {
        let workers = admin
            .list_workers(ListWorkersRequest {})
            .await
            .unwrap()
            .into_inner();
        // Found by what it does: a repair the web node starts by itself afterwards (the
        // new node came up empty) may be listed after it.
        let done = workers
            .workers
            .iter()
            .find(|w| w.description == description && w.state == "done")
            .cloned();
        if let Some(last) = done.filter(|_| workers.journaled.is_none()) {
            // The stopped forward worker is listed too, with why it stopped.
            let forward = workers
                .workers
                .iter()
                .find(|w| w.description == format!("add {}", newcomer.address))
                .expect("the forward worker");
            assert_eq!(forward.state, "interrupted");
            assert!(
                forward.outcome.contains("cancelled by the operator"),
                "{forward:?}"
            );
            break last;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the roll-back never finished: {workers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rollback.errors, 0, "{}", rollback.last_error);
    // The ring is as it was, every file is back on its old owner, the new node is empty.
    assert_eq!(ring_nodes(&web.admin).await, two.iter().cloned().collect());
    assert_placed(&holdings(&[&a, &b]).await, &ring_of(&two, 1), &keys);
    let left = tritontube::node::client::StorageClient::connect_lazy(&newcomer.address)
        .unwrap()
        .keys(false)
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "{} files left on the cancelled node",
        left.len()
    );
}
