//! Web nodes on a real etcd cluster: a shared ring, one winner among duplicate uploads,
//! and uploads that fail fast without quorum and recover when it returns.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use support::etcd::EtcdCluster;
use support::web::{
    holdings, http_client, make_video, ring_nodes, start_web_on_etcd, upload_bytes,
};
use support::{StorageNode, start_storage_node};
use tritontube::admin_cli::connect;
use tritontube::meta::{MetaStore, VideoStatus};
use tritontube::proto::admin::AddNodeRequest;
use tritontube::ring::{DEFAULT_VIRTUAL_NODES, Ring};

/// Held by the tests that take the quorum away, so that what one counts in the
/// process's metrics is its own.
static QUORUM_LOSS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn etcd(members: usize) -> EtcdCluster {
    EtcdCluster::start(members).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_web_nodes_share_one_ring_and_one_winner_per_id() {
    let cluster = etcd(3).await;
    let storage = [
        start_storage_node().await,
        start_storage_node().await,
        start_storage_node().await,
        start_storage_node().await,
    ];
    let three: Vec<&StorageNode> = storage[..3].iter().collect();
    let every: Vec<&StorageNode> = storage.iter().collect();
    let a = start_web_on_etcd(&cluster, &three, 1).await;
    let b = start_web_on_etcd(&cluster, &three, 1).await;

    // A node added through A's admin service is used by B.
    let newcomer = storage[3].address();
    let mut admin_a = connect(&a.admin, None).unwrap();
    admin_a
        .add_node(AddNodeRequest {
            node_address: newcomer.clone(),
        })
        .await
        .unwrap();
    let mut seen_by_b = false;
    for _ in 0..100 {
        if ring_nodes(&b.admin).await.contains(&newcomer) {
            seen_by_b = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_by_b, "web node B never saw the ring change");

    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "shared.mp4", 4, "160x120");
    let clip = std::fs::read(clip).unwrap();
    let response = upload_bytes(&b.url, "shared.mp4", clip.clone()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let ring = Ring::with_nodes(
        DEFAULT_VIRTUAL_NODES,
        1,
        storage.iter().map(|n| n.address()),
    );
    for (key, holders) in holdings(&every).await {
        assert_eq!(
            holders,
            vec![ring.primary(&key).unwrap().to_string()],
            "{key}"
        );
    }
    // Both web nodes list it and serve it.
    for web in [&a, &b] {
        let index = http_client()
            .get(&web.url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(index.contains("href=\"/videos/shared\""));
    }

    // Eight uploads of one id at once, through both web nodes: exactly one wins.
    let uploads = (0..8).map(|i| {
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let clip = clip.clone();
        tokio::spawn(async move { upload_bytes(&url, "race.mp4", clip).await.status() })
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(uploads)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::SEE_OTHER)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SEE_OTHER || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    let videos = a.meta.list_videos().await.unwrap().value;
    assert_eq!(videos.iter().filter(|v| v.id == "race").count(), 1);
}

/// Uploads `id` until it is accepted (an election may be under way); bounded.
async fn upload_until_accepted(url: &str, id: &str, clip: &[u8]) {
    for _ in 0..60 {
        let status = upload_bytes(url, &format!("{id}.mp4"), clip.to_vec())
            .await
            .status();
        if status == StatusCode::SEE_OTHER {
            return;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{id}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{id} was never accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_two_members_down_and_fails_fast_without_quorum() {
    let _alone = QUORUM_LOSS.lock().await;
    let mut cluster = etcd(5).await;
    let storage = [start_storage_node().await, start_storage_node().await];
    let refs: Vec<&StorageNode> = storage.iter().collect();
    let web = start_web_on_etcd(&cluster, &refs, 1).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = std::fs::read(make_video(videos.path(), "q.mp4", 2, "160x120")).unwrap();
    upload_until_accepted(&web.url, "before", &clip).await;

    // Two members down, the leader among them: still writable and readable.
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let other = (leader + 1) % 5;
    cluster.kill(leader);
    cluster.kill(other);
    upload_until_accepted(&web.url, "two-down", &clip).await;
    let index = http_client().get(&web.url).send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let index = index.text().await.unwrap();
    assert!(index.contains(">two-down<") && index.contains(">before<"));

    // A third down: no quorum. Uploads fail fast with a readable 503, nothing hangs,
    // and the list is still served, marked as possibly stale.
    let third = (leader + 2) % 5;
    cluster.kill(third);
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        upload_bytes(&web.url, "no-quorum.mp4", clip.clone()),
    )
    .await
    .expect("an upload without quorum must not hang");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.text().await.unwrap().contains("metadata store"));
    let index = tokio::time::timeout(Duration::from_secs(30), async {
        http_client().get(&web.url).send().await.unwrap()
    })
    .await
    .expect("the index must not hang");
    assert_eq!(index.status(), StatusCode::OK);
    let index = index.text().await.unwrap();
    assert!(index.contains(">before<") && index.contains("may be out of date"));
    // Nothing of the refused upload was stored.
    assert!(
        holdings(&refs)
            .await
            .keys()
            .all(|k| !k.starts_with("no-quorum/"))
    );

    // Quorum back: uploads work again by themselves.
    cluster.restart(leader);
    cluster.restart(other);
    cluster.restart(third);
    upload_until_accepted(&web.url, "after", &clip).await;
}

/// Whether `id` has a record, read with the quorum (a stale read proves nothing).
async fn has_record(store: &MetaStore, id: &str) -> Option<bool> {
    match store.get_video(id).await {
        Ok(read) if !read.stale => Some(read.value.is_some()),
        _ => None,
    }
}

/// Releases of a claim refused for want of a quorum, as the web node at `url` counts them
/// (the count is the process's: tests that lose the quorum take [`QUORUM_LOSS`]).
async fn refused_releases(url: &str) -> f64 {
    let text = http_client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("tritontube_metadata_operations_total{"))
        .filter(|l| l.contains("op=\"release_claim\"") && l.contains("outcome=\"unavailable\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_that_loses_the_quorum_midway_frees_its_id_when_the_quorum_returns() {
    let _alone = QUORUM_LOSS.lock().await;
    let mut cluster = etcd(3).await;
    let storage = [start_storage_node().await];
    let refs: Vec<&StorageNode> = storage.iter().collect();
    let web = start_web_on_etcd(&cluster, &refs, 1).await;
    let observer = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
    let videos = tempfile::tempdir().unwrap();
    // Long enough to transcode for seconds after its claim, before its next write.
    let clip = std::fs::read(make_video(videos.path(), "m.mp4", 6, "640x360")).unwrap();
    let (url, body) = (web.url.clone(), clip.clone());
    let upload = tokio::spawn(async move { upload_bytes(&url, "midway.mp4", body).await });

    // The claim is in: then the quorum goes (two members of three).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let read = observer.get_video("midway").await.unwrap();
        if let Some(video) = read.value {
            assert_eq!(video.status, VideoStatus::Processing, "{video:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never claimed its id"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill(0);
    cluster.kill(1);
    let refused = tokio::time::timeout(Duration::from_secs(60), upload)
        .await
        .expect("an upload without quorum must not hang")
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.text().await.unwrap().contains("metadata store"));

    // The failed upload's first try to release its claim is refused too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while refused_releases(&web.url).await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed upload never tried to release its claim"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The quorum returns: the failed upload's claim goes by itself, with no new upload
    // to prompt it, and none of its files stays behind.
    cluster.restart(0);
    cluster.restart(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while has_record(&observer, "midway").await != Some(false) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed upload's claim was never released: {:?}",
            observer.get_video("midway").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        holdings(&refs)
            .await
            .keys()
            .all(|k| !k.starts_with("midway/"))
    );
    // So the client's retry of the same name is accepted, not refused as a duplicate.
    upload_until_accepted(&web.url, "midway", &clip).await;
}
