//! Heal at once: a copy found bad by a read or by the scrub is copied again from a good
//! copy by the resync queue, without a repair; the queue survives a restart of the web
//! node, retries what fails and lists its errors. Real storage nodes, real files, a real
//! SQLite file.

mod support;

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use support::web::{
    WebNode, WebOptions, http_client, make_video, start_web, start_web_ring, upload_file,
};
use support::{
    StorageNode, pseudo_random_bytes, ring_of, sha256_hex, start_storage_node_at,
    start_storage_nodes,
};
use tritontube::admin_cli::connect;
use tritontube::meta::{MetaStore, VideoDetails};
use tritontube::proto::admin::{ClusterHealthRequest, ClusterHealthResponse};
use tritontube::web::ContentSpec;

/// A guard against hanging forever, never a measurement.
const PATIENCE: Duration = Duration::from_secs(120);

/// One test stops a node and starts it again at its address; while it is down another
/// test's node could bind that port. So they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

fn options() -> WebOptions {
    WebOptions {
        replicas: 2,
        ..WebOptions::default()
    }
}

/// A recorded video `id` with one segment on its owners; returns its key and bytes.
async fn seed_one(web: &WebNode, nodes: &[StorageNode], id: &str) -> (String, Bytes) {
    web.meta.claim_video(id, chrono::Utc::now()).await.unwrap();
    web.meta
        .finish_video(id, &VideoDetails::default())
        .await
        .unwrap();
    let key = format!("{id}/chunk-0-00001.m4s");
    let data = Bytes::from(pseudo_random_bytes(50_000, 7));
    let addresses: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    for owner in ring_of(&addresses, 2).owners(&key) {
        let node = nodes.iter().find(|n| n.address() == owner).unwrap();
        node.client()
            .put(&key, data.clone(), Some(&sha256_hex(&data)))
            .await
            .unwrap();
    }
    (key, data)
}

/// The owners of `key`: the one whose copy is made corrupt, and the other.
fn owners<'a>(nodes: &'a [StorageNode], key: &str) -> (&'a StorageNode, &'a StorageNode) {
    let addresses: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    let ring = ring_of(&addresses, 2);
    let owners = ring.owners(key);
    let find = |a: &str| nodes.iter().find(|n| n.address() == a).unwrap();
    (find(owners[0]), find(owners[1]))
}

/// Overwrites bytes in the middle of the copy of `key` on `node`, keeping its size.
fn corrupt(node: &StorageNode, key: &str) {
    let path = node.dir.join(key);
    let mut data = std::fs::read(&path).unwrap();
    let middle = data.len() / 2;
    for byte in &mut data[middle..middle + 8] {
        *byte ^= 0x5a;
    }
    std::fs::write(&path, data).unwrap();
}

/// Whether `node` holds exactly `data` under `key`, checked by the node and on disk.
async fn holds(node: &StorageNode, key: &str, data: &[u8]) -> bool {
    let verified =
        matches!(node.client().verify(key).await, Ok(Some(s)) if s.sha256 == sha256_hex(data));
    verified && std::fs::read(node.dir.join(key)).is_ok_and(|b| b == data)
}

/// The value of the web node's gauge `name` (summed over its series).
async fn gauge(web: &WebNode, name: &str) -> f64 {
    let text = http_client()
        .get(format!("{}/metrics", web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(!series.is_empty(), "{name} is not exposed");
    series.iter().sum()
}

/// The four data-at-risk gauges: files below R, quarantined, hinted, resync queue.
async fn at_risk(web: &WebNode) -> [f64; 4] {
    [
        gauge(web, "tritontube_files_under_replicated").await,
        gauge(web, "tritontube_quarantined_copies").await,
        gauge(web, "tritontube_hinted_copies").await,
        gauge(web, "tritontube_resync_queue_length").await,
    ]
}

async fn health(admin: &str) -> ClusterHealthResponse {
    connect(admin, None)
        .unwrap()
        .cluster_health(ClusterHealthRequest {})
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_quarantined_by_a_read_is_copied_again_without_a_repair() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let nodes = start_storage_nodes(3).await;
    let every: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(&every, options()).await;
    let (key, data) = seed_one(&web, &nodes, "read").await;
    let (bad, _good) = owners(&nodes, &key);
    corrupt(bad, &key);

    // The read is served from the good copy; the bad one is quarantined, then replaced.
    let response = http_client()
        .get(format!("{}/content/{key}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), data);
    eventually("the corrupt copy to be replaced by a good one", || async {
        holds(bad, &key, &data).await
    })
    .await;
    assert!(bad.client().health().await.unwrap().checksum_failures >= 1);
    eventually("the queue to empty", || async {
        let h = health(&web.admin).await;
        h.resync_queue_length == 0 && h.resync_healed >= 1 && h.files_under_replicated == 0
    })
    .await;
    // No repair did it.
    assert!(health(&web.admin).await.last_repair.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rot_the_scrub_finds_is_copied_again_without_a_read() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let nodes = start_storage_nodes(3).await;
    let every: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(&every, options()).await;
    let (key, data) = seed_one(&web, &nodes, "rot").await;
    let (bad, _good) = owners(&nodes, &key);
    corrupt(bad, &key);
    // Nobody reads it: the node's scrub finds it, the web node sees the quarantine.
    assert!(bad.client().scrub(true).await.unwrap().started);
    eventually("the rotten copy to be replaced by a good one", || async {
        holds(bad, &key, &data).await
    })
    .await;
    // The pass may still be running when the copy is back: its report comes at its end.
    eventually("the scrub pass to report the rotten copy", || async {
        let scrub = bad.client().scrub(false).await.unwrap();
        scrub.last.is_some_and(|last| last.corrupt_found >= 1)
    })
    .await;
    assert!(health(&web.admin).await.last_repair.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_survives_a_restart_retries_and_lists_its_errors() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut nodes = start_storage_nodes(3).await;
    let every: Vec<&StorageNode> = nodes.iter().collect();
    let mut web = start_web_ring(&every, options()).await;
    let (key, data) = seed_one(&web, &nodes, "held").await;
    let (bad, good) = owners(&nodes, &key);
    let (bad_address, good_address) = (bad.address(), good.address());
    assert_eq!(
        at_risk(&web).await,
        [0.0; 4],
        "a healthy cluster has nothing at risk"
    );
    corrupt(bad, &key);

    // The good copy's node is down: the read finds the bad copy and nothing to serve,
    // and the queue cannot heal the key yet.
    let index = nodes
        .iter()
        .position(|n| n.address() == good_address)
        .unwrap();
    let stopped = nodes.remove(index);
    let good_dir = stopped.dir.clone();
    let good_temp = stopped.stop().await;
    let response = http_client()
        .get(format!("{}/content/{key}", web.url))
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), StatusCode::OK);
    eventually("a failed try to be listed", || async {
        let h = health(&web.admin).await;
        h.resync
            .iter()
            .any(|i| i.key == key && i.attempts >= 1 && !i.last_error.is_empty())
            && h.files_under_replicated >= 1
    })
    .await;
    let listed = health(&web.admin).await;
    let item = listed.resync.iter().find(|i| i.key == key).unwrap().clone();
    assert!(item.reason.contains(&bad_address), "{item:?}");
    assert!(item.next_at_ms > item.queued_at_ms, "{item:?}");
    let report = tritontube::admin_cli::repair::health_report(&listed);
    assert!(
        report.contains(&key) && report.contains(&item.last_error),
        "{report}"
    );

    // An upload while the node is down leaves hinted copies. Every gauge shows the risk.
    let clips = tempfile::tempdir().unwrap();
    let clip = make_video(clips.path(), "hinted.mp4", 4, "320x240");
    let uploaded = upload_file(&web.url, &clip, "hinted.mp4").await.status();
    assert_eq!(uploaded, StatusCode::SEE_OTHER);
    eventually("every data-at-risk gauge to show it", || async {
        let [under, quarantined, hinted, queued] = at_risk(&web).await;
        under >= 1.0 && quarantined >= 1.0 && hinted >= 1.0 && queued >= 1.0
    })
    .await;

    // A restarted web node on the same metadata file has the entry as it was (a new
    // finding would start over with no tries and another reason).
    let work = std::mem::replace(&mut web.work, tempfile::tempdir().unwrap());
    web.stop().await;
    let meta = MetaStore::sqlite(&work.path().join("metadata.db"))
        .await
        .unwrap();
    let seed: Vec<String> = {
        let mut all: Vec<String> = nodes.iter().map(|n| n.address()).collect();
        all.push(good_address.clone());
        all
    };
    let content = ContentSpec::Ring {
        seed_nodes: seed,
        spares: Vec::new(),
        virtual_nodes: tritontube::ring::DEFAULT_VIRTUAL_NODES,
        replicas: 2,
        admin_token: None,
    };
    let web = start_web(work, meta, content, options()).await;
    eventually("the restarted web node to list the entry", || async {
        health(&web.admin)
            .await
            .resync
            .iter()
            .any(|i| i.key == key && i.attempts >= item.attempts && i.reason == item.reason)
    })
    .await;

    // The good copy's node returns: the key is healed from it, with no repair asked.
    let mut back = start_storage_node_at(&good_dir, &good_address).await;
    back.temp = good_temp;
    let bad = nodes.iter().find(|n| n.address() == bad_address).unwrap();
    eventually(
        "the bad copy to be replaced from the returned node",
        || async { holds(bad, &key, &data).await },
    )
    .await;
    eventually("the queue to empty", || async {
        let h = health(&web.admin).await;
        h.resync_queue_length == 0 && h.files_under_replicated == 0
    })
    .await;
    // The hinted copies are handed over by the repair the node's return starts.
    eventually("every data-at-risk gauge back to zero", || async {
        at_risk(&web).await == [0.0; 4]
    })
    .await;
}
