//! Self-healing with real storage nodes and real files on disk: corrupt bytes are never
//! served nor spread, lost copies are restored (on demand and by themselves), uploads go
//! on with a node down and hand their copies over when it returns, orphans are removed,
//! and a repair interrupted by a killed web node finishes after its restart.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use support::web::{
    WebNode, WebOptions, WebProcess, decoded_frames, free_port, holdings, http_client, make_video,
    start_web_ring, upload_file,
};
use support::{
    StorageNode, StorageProcess, pseudo_random_bytes, ring_of, sha256_hex, start_storage_node,
    start_storage_node_at, start_storage_nodes,
};
use tritontube::admin_cli::connect;
use tritontube::meta::{MetaStore, VideoDetails};
use tritontube::proto::admin::{
    AddNodeRequest, ClusterHealthRequest, ListWorkersRequest, StartRepairRequest, WorkerInfo,
};
use tritontube::ring::Ring;

/// A guard against hanging forever, never a measurement.
const PATIENCE: Duration = Duration::from_secs(120);

/// These tests stop nodes and start them again at the same address. While a node is
/// down its port is free, and a node another test binds to port 0 could get it; the
/// first test's web node would then take that node for its own and repair it. So they
/// run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn addresses(nodes: &[&StorageNode]) -> Vec<String> {
    nodes.iter().map(|n| n.address()).collect()
}

/// Whether every key sits on exactly its owners, and `keys` are all there; says what is
/// wrong on stderr when not.
fn placed(held: &BTreeMap<String, Vec<String>>, ring: &Ring, keys: &BTreeSet<String>) -> bool {
    let held_keys: BTreeSet<String> = held.keys().cloned().collect();
    if held_keys != *keys {
        eprintln!(
            "missing: {:?}; unexpected: {:?}",
            keys.difference(&held_keys).collect::<Vec<_>>(),
            held_keys.difference(keys).collect::<Vec<_>>()
        );
        return false;
    }
    let misplaced: Vec<_> = held
        .iter()
        .filter(|(key, holders)| {
            let mut owners: Vec<String> = ring.owners(key).into_iter().map(String::from).collect();
            owners.sort();
            **holders != owners
        })
        .collect();
    if !misplaced.is_empty() {
        eprintln!("misplaced: {misplaced:?}");
    }
    misplaced.is_empty()
}

/// Records video ids as finished uploads, so their files are not orphans.
async fn record_videos(meta: &MetaStore, ids: &[&str]) {
    for id in ids {
        meta.claim_video(id, chrono::Utc::now()).await.unwrap();
        meta.finish_video(id, &VideoDetails::default())
            .await
            .unwrap();
    }
}

/// Puts `count` files of videos `ids` on the owners `ring` names; returns the keys.
async fn seed_files(
    nodes: &[&StorageNode],
    ring: &Ring,
    ids: &[&str],
    count: usize,
) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for i in 0..count {
        let key = format!("{}/chunk-0-{i:05}.m4s", ids[i % ids.len()]);
        let data = Bytes::from(pseudo_random_bytes(4096 + i, i as u64));
        let sha = sha256_hex(&data);
        for owner in ring.owners(&key) {
            let node = nodes.iter().find(|n| n.address() == owner).unwrap();
            node.client()
                .put(&key, data.clone(), Some(&sha))
                .await
                .unwrap();
        }
        keys.insert(key);
    }
    keys
}

/// Overwrites 8 bytes in the middle of the copy of `key` on `node`, keeping its size.
fn corrupt(node: &StorageNode, key: &str) {
    let path = node.dir.join(key);
    let mut data = std::fs::read(&path).unwrap();
    let middle = data.len() / 2;
    for byte in &mut data[middle..middle + 8] {
        *byte ^= 0x5a;
    }
    std::fs::write(&path, data).unwrap();
}

/// Polls until `done` holds, within PATIENCE.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a repair through the admin service and waits for its worker's final status.
async fn repair(web: &str, verify: bool) -> WorkerInfo {
    let mut admin = connect(web, None).unwrap();
    let id = admin
        .start_repair(StartRepairRequest {
            dry_run: false,
            verify,
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    wait_worker(web, id).await
}

async fn wait_worker(admin_address: &str, id: u64) -> WorkerInfo {
    let mut admin = connect(admin_address, None).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let workers = admin
            .list_workers(ListWorkersRequest {})
            .await
            .unwrap()
            .into_inner()
            .workers;
        if let Some(w) = workers.iter().find(|w| w.id == id) {
            if matches!(w.state.as_str(), "done" | "failed" | "interrupted") {
                return w.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker {id} never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every copy of every key verifies on its node.
async fn all_copies_good(nodes: &[&StorageNode]) -> bool {
    for node in nodes {
        let client = node.client();
        for info in client.keys(false).await.unwrap() {
            match client.verify(&info.key).await {
                Ok(Some(_)) => {}
                _ => return false,
            }
        }
    }
    true
}

async fn upload_clip(web: &WebNode, name: &str) -> StatusCode {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_video(dir.path(), &format!("{name}.mp4"), 4, "320x240");
    upload_file(&web.url, &clip, &format!("{name}.mp4"))
        .await
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_bytes_are_never_served() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let all = start_storage_nodes(3).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    let web = start_web_ring(
        &every,
        WebOptions {
            replicas: 2,
            ..WebOptions::default()
        },
    )
    .await;
    assert_eq!(upload_clip(&web, "rot").await, StatusCode::SEE_OTHER);
    let ring = ring_of(&addresses(&every), 2);
    let held = holdings(&every).await;
    let segments: Vec<&String> = held.keys().filter(|k| k.ends_with(".m4s")).collect();
    assert!(segments.len() >= 2);
    let http = http_client();

    // One chunk corrupt on its first owner (read first), another on its second owner.
    for (key, owner_index) in [(segments[0], 0), (segments[1], 1)] {
        let owners = ring.owners(key);
        let bad = all
            .iter()
            .find(|n| n.address() == owners[owner_index])
            .unwrap();
        let good = all
            .iter()
            .find(|n| n.address() == owners[1 - owner_index])
            .unwrap();
        let good_bytes = std::fs::read(good.dir.join(key)).unwrap();
        corrupt(bad, key);

        // The original's unary read on the corrupt copy: DATA_LOSS, not the bytes.
        let mut raw =
            tritontube::proto::storage::storage_service_client::StorageServiceClient::connect(
                format!("http://{}", bad.address()),
            )
            .await
            .unwrap();
        let answer = raw
            .download_file(tritontube::proto::storage::DownloadRequest { key: key.clone() })
            .await;
        assert_eq!(answer.unwrap_err().code(), tonic::Code::DataLoss);

        for _ in 0..3 {
            let response = http
                .get(format!("{}/content/{key}", web.url))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.bytes().await.unwrap(), good_bytes, "{key}");
        }
        // Moved aside, not deleted, and counted.
        let quarantined = bad.client().quarantine().await.unwrap();
        assert!(quarantined.iter().any(|q| q.key == *key), "{quarantined:?}");
        assert!(bad.client().health().await.unwrap().checksum_failures >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ring_change_and_a_repair_leave_only_good_copies() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let all = start_storage_nodes(4).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    let three = addresses(&every[..3]);
    let web = start_web_ring(
        &every[..3],
        WebOptions {
            replicas: 2,
            ..WebOptions::default()
        },
    )
    .await;
    let ids = ["alpha", "beta", "gamma"];
    record_videos(&web.meta, &ids).await;
    let before = ring_of(&three, 2);
    let keys = seed_files(&every[..3], &before, &ids, 150).await;
    let newcomer = all[3].address();
    let mut four = three.clone();
    four.push(newcomer.clone());
    let after = ring_of(&four, 2);

    // A key whose copy is corrupt on the holder that STAYS, and whose other (good) copy
    // moves to the newcomer: the change must copy the good one, never delete it while it
    // is the only good one, and the corrupt copy must be replaced by a good one.
    let moving = keys
        .iter()
        .find(|k| {
            let wanted = after.owners(k);
            let old = before.owners(k);
            old.iter().filter(|o| wanted.contains(o)).count() == 1
        })
        .expect("a key that keeps one holder and moves its other copy");
    let wanted = after.owners(moving);
    let old = before.owners(moving);
    let stayer = old.iter().find(|o| wanted.contains(o)).unwrap().to_string();
    let leaver = old
        .iter()
        .find(|o| !wanted.contains(o))
        .unwrap()
        .to_string();
    let node_at = |address: &str| all.iter().find(|n| n.address() == address).unwrap();
    let seeded = std::fs::read(node_at(&leaver).dir.join(moving)).unwrap();
    let seeded_sha = sha256_hex(&seeded);
    corrupt(node_at(&stayer), moving);

    // Watches the good copy throughout: on the leaver until it is deleted, then on the
    // newcomer (asked in that order, so a delete that follows the copy is never taken
    // for a loss).
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        let (leaver, newcomer_client) = (node_at(&leaver).client(), all[3].client());
        let key = moving.clone();
        tokio::spawn(async move {
            let mut lost_at = Vec::new();
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let on_leaver = matches!(leaver.verify(&key).await, Ok(Some(_)));
                let on_newcomer = matches!(newcomer_client.verify(&key).await, Ok(Some(_)));
                if !on_leaver && !on_newcomer {
                    lost_at.push(chrono::Utc::now());
                }
            }
            lost_at
        })
    };

    let moved = connect(&web.admin, None)
        .unwrap()
        .add_node(AddNodeRequest {
            node_address: newcomer.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .migrated_file_count;
    assert!(moved > 0);
    // The corrupt copy is found (quarantined) by the change's pull or by the resync
    // queue, and copied again from the good one: every owner ends with the seeded bytes.
    eventually("the owners of the key to hold the seeded bytes", || async {
        for owner in &wanted {
            let node = node_at(owner);
            let good =
                matches!(node.client().verify(moving).await, Ok(Some(s)) if s.sha256 == seeded_sha);
            if !good {
                return false;
            }
            let bytes = std::fs::read(node.dir.join(moving)).unwrap_or_default();
            if sha256_hex(&bytes) != seeded_sha {
                return false;
            }
        }
        true
    })
    .await;
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let lost_at = watcher.await.unwrap();
    assert!(
        lost_at.is_empty(),
        "the only good copy of {moving} was gone at {lost_at:?}"
    );
    // Found, not overwritten unseen (its quarantine entry goes once a good copy is
    // written again, so the node's count is what tells).
    let stayer_health = node_at(&stayer).client().health().await.unwrap();
    assert!(
        stayer_health.checksum_failures >= 1,
        "the corrupt copy on {stayer} was never found"
    );
    eventually("every key where the new ring wants it", || async {
        placed(&holdings(&every).await, &after, &keys)
    })
    .await;

    // A repair that verifies finds a corrupt copy nobody has read yet and restores it.
    let victim = keys.iter().find(|k| *k != moving).unwrap();
    let mut holders = after.owners(victim);
    holders.sort();
    let first = all.iter().find(|n| n.address() == holders[0]).unwrap();
    corrupt(first, victim);
    let worker = repair(&web.admin, true).await;
    assert_eq!(worker.state, "done", "{}", worker.outcome);
    assert!(worker.files_done >= 1);
    let workers = connect(&web.admin, None)
        .unwrap()
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        placed(&holdings(&every).await, &after, &keys),
        "after {worker:?}; all workers: {workers:?}; videos: {:?}",
        web.meta.list_videos().await.unwrap().value
    );
    assert!(all_copies_good(&every).await, "a corrupt copy is left");
}

/// Stops `node`, empties its folder (a replaced disk) and starts it again at its address.
async fn wipe_and_restart(node: StorageNode) -> StorageNode {
    let address = node.address();
    let dir = node.dir.clone();
    let temp = node.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let mut restarted = start_storage_node_at(&dir, &address).await;
    restarted.temp = temp;
    restarted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_is_refilled_on_demand_then_by_itself() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut all = start_storage_nodes(3).await;
    let ids = ["one", "two", "three", "four"];
    let web = {
        let every: Vec<&StorageNode> = all.iter().collect();
        start_web_ring(
            &every,
            WebOptions {
                replicas: 2,
                ..WebOptions::default()
            },
        )
        .await
    };
    record_videos(&web.meta, &ids).await;
    let ring = ring_of(&addresses(&all.iter().collect::<Vec<_>>()), 2);
    let keys = seed_files(&all.iter().collect::<Vec<_>>(), &ring, &ids, 200).await;
    let mut admin = connect(&web.admin, None).unwrap();

    // On demand. (Should the web node have noticed the new store first, the repair it
    // started by itself is the one this request returns.)
    let wiped = all.pop().unwrap();
    all.push(wipe_and_restart(wiped).await);
    let worker = repair(&web.admin, false).await;
    assert_eq!(worker.state, "done", "{}", worker.outcome);
    assert!(worker.files_done > 0);
    assert!(placed(
        &holdings(&all.iter().collect::<Vec<_>>()).await,
        &ring,
        &keys
    ));

    // By itself: nobody asks; the web node sees the new store and repairs it.
    let wiped = all.pop().unwrap();
    all.push(wipe_and_restart(wiped).await);
    let every: Vec<&StorageNode> = all.iter().collect();
    eventually("the wiped node to be refilled by itself", || async {
        placed(&holdings(&every).await, &ring, &keys)
    })
    .await;
    let health = admin
        .cluster_health(ClusterHealthRequest {})
        .await
        .unwrap()
        .into_inner();
    let report = health
        .last_repair
        .expect("the automatic repair is reported");
    assert_eq!(report.failed, 0, "{}", report.outcome);
    assert!(health.repair.unwrap().state == "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_go_on_with_a_node_down_and_hand_over_when_it_returns() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut all = start_storage_nodes(3).await;
    let ring = ring_of(&addresses(&all.iter().collect::<Vec<_>>()), 2);
    let web = {
        let every: Vec<&StorageNode> = all.iter().collect();
        start_web_ring(
            &every,
            WebOptions {
                replicas: 2,
                ..WebOptions::default()
            },
        )
        .await
    };
    let mut admin = connect(&web.admin, None).unwrap();

    // One node of three is down: two can still hold both copies.
    let down = all.pop().unwrap();
    let (address, dir) = (down.address(), down.dir.clone());
    let temp = down.stop().await;
    assert_eq!(upload_clip(&web, "resilient").await, StatusCode::SEE_OTHER);
    let manifest = format!("{}/content/resilient/manifest.mpd", web.url);
    let frames = tokio::task::spawn_blocking(move || decoded_frames(&manifest))
        .await
        .unwrap();
    assert!(frames >= 4 * 25 - 5, "{frames} frames");
    let hinted = admin
        .cluster_health(ClusterHealthRequest {})
        .await
        .unwrap()
        .into_inner()
        .hinted;
    assert!(hinted > 0, "copies owned by the dead node are hinted");

    // It comes back: its copies are handed over, the stand-ins' deleted, the hints gone.
    let mut back = start_storage_node_at(&dir, &address).await;
    back.temp = temp;
    all.push(back);
    let every: Vec<&StorageNode> = all.iter().collect();
    let keys: BTreeSet<String> = holdings(&every).await.keys().cloned().collect();
    eventually("the hinted copies to reach their owner", || async {
        let hinted = connect(&web.admin, None)
            .unwrap()
            .cluster_health(ClusterHealthRequest {})
            .await
            .unwrap()
            .into_inner()
            .hinted;
        hinted == 0 && placed(&holdings(&every).await, &ring, &keys)
    })
    .await;

    // Below R nodes answering: refused with 503, and nothing is left behind.
    let second = all.pop().unwrap();
    let _kept = second.stop().await;
    let third = all.pop().unwrap();
    let _kept_too = third.stop().await;
    let before = holdings(&all.iter().collect::<Vec<_>>()).await;
    assert_eq!(
        upload_clip(&web, "refused").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    eventually("the refused upload's rollback", || async {
        holdings(&all.iter().collect::<Vec<_>>()).await == before
    })
    .await;
    // The claim goes after the files (in the same background rollback).
    eventually("the refused upload's record to go", || async {
        web.meta.get_video("refused").await.unwrap().value.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_removes_orphans_and_spares_uploads_in_progress() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let all = start_storage_nodes(3).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    let web = start_web_ring(
        &every,
        WebOptions {
            replicas: 2,
            ..WebOptions::default()
        },
    )
    .await;
    let ring = ring_of(&addresses(&every), 2);
    record_videos(&web.meta, &["kept"]).await;
    let mut keys = seed_files(&every, &ring, &["kept"], 20).await;
    // An upload in progress: claimed (as every upload is before it writes), files stored.
    web.meta
        .claim_video("uploading", chrono::Utc::now())
        .await
        .unwrap();
    keys.extend(seed_files(&every, &ring, &["uploading"], 10).await);
    // Orphans: files of a video nobody claimed (a failed upload's rollback that could not
    // reach this node), one of them on a node that does not own it.
    let orphans = seed_files(&every, &ring, &["ghost"], 5).await;
    all[0]
        .client()
        .put("ghost/stray.m4s", Bytes::from_static(b"stray"), None)
        .await
        .unwrap();

    // A dry run reports them and changes nothing.
    let before = holdings(&every).await;
    let mut admin = connect(&web.admin, None).unwrap();
    let plan = admin
        .start_repair(StartRepairRequest {
            dry_run: true,
            verify: false,
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    eprintln!(
        "PLAN {plan:?} videos {:?}",
        web.meta
            .list_videos()
            .await
            .unwrap()
            .value
            .iter()
            .map(|v| (v.id.clone(), v.status))
            .collect::<Vec<_>>()
    );
    assert_eq!(plan.orphans.unwrap().files, orphans.len() as u64 + 1);
    assert_eq!(
        holdings(&every).await,
        before,
        "a dry run changed something"
    );

    let worker = repair(&web.admin, false).await;
    assert_eq!(worker.state, "done", "{}", worker.outcome);
    let after = holdings(&every).await;
    assert!(
        after.keys().all(|k| !k.starts_with("ghost/")),
        "orphans left"
    );
    assert!(
        placed(&after, &ring, &keys),
        "a file of a recorded video was touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_web_node_killed_mid_repair_finishes_it_after_restart() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let a = start_storage_node().await;
    let b = start_storage_node().await;
    let c = StorageProcess::start().await;
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("meta.db");
    let nodes = vec![a.address(), b.address(), c.address.clone()];
    let ring = ring_of(&nodes, 2);
    let ids = ["v1", "v2", "v3"];
    {
        let meta = MetaStore::sqlite(&db).await.unwrap();
        record_videos(&meta, &ids).await;
    }
    // Every file sits on a and b only: those C owns are missing there and must be copied.
    let two = [&a, &b];
    let mut missing_on_c = 0;
    for i in 0..1500 {
        let key = format!("{}/chunk-0-{i:05}.m4s", ids[i % 3]);
        let data = Bytes::from(pseudo_random_bytes(2048, i as u64));
        let owners = ring.owners(&key);
        if owners.contains(&c.address.as_str()) {
            missing_on_c += 1;
        }
        for node in two {
            node.client().put(&key, data.clone(), None).await.unwrap();
        }
    }
    assert!(missing_on_c > 100);
    // C already holds a file, so it is not taken for a wiped node when first seen.
    let own = (0..)
        .map(|i| format!("v1/own-{i}.m4s"))
        .find(|k| ring.owners(k).contains(&c.address.as_str()))
        .unwrap();
    let data = Bytes::from_static(b"held by c");
    for owner in ring.owners(&own) {
        let client = tritontube::node::client::StorageClient::connect_lazy(owner).unwrap();
        client.put(&own, data.clone(), None).await.unwrap();
    }
    let missing_on_c = missing_on_c + 1;
    let (http_port, admin_port) = (free_port(), free_port());
    let mut web = WebProcess::spawn(&db, &nodes, http_port, admin_port, &["--replicas", "2"]).await;
    let mut admin = connect(&web.admin, None).unwrap();
    let worker = admin
        .start_repair(StartRepairRequest {
            dry_run: false,
            verify: false,
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    // Once the survey is done, pause the node being refilled, then kill the web node.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let workers = admin
            .list_workers(ListWorkersRequest {})
            .await
            .unwrap()
            .into_inner()
            .workers;
        let w = workers.iter().find(|w| w.id == worker).unwrap();
        assert_ne!(w.state, "done", "finished before it could be interrupted");
        if w.files_total > 0 {
            c.signal("-STOP");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
    }
    web.kill();
    c.signal("-CONT");
    let c_keys = |address: String| async move {
        tritontube::node::client::StorageClient::connect_lazy(&address)
            .unwrap()
            .keys(false)
            .await
            .unwrap()
            .len()
    };
    assert!(
        c_keys(c.address.clone()).await < missing_on_c,
        "nothing was left to do"
    );

    // Restarted on the same store, it finds the repair journaled and finishes it.
    let web = WebProcess::spawn(&db, &nodes, http_port, admin_port, &["--replicas", "2"]).await;
    let address = c.address.clone();
    eventually("the resumed repair to refill the node", || {
        let address = address.clone();
        async move { c_keys(address).await == missing_on_c }
    })
    .await;
    let workers = connect(&web.admin, None)
        .unwrap()
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert!(
        workers
            .iter()
            .any(|w| w.kind == "repair" && w.description.contains("asked by the operator")),
        "{workers:?}"
    );
}
