//! Pace and pause of a ring change, changed live through the admin service and kept in
//! the journal across a restart of the web node: real storage nodes, a real SQLite file.

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::web::{WebNode, WebOptions, start_web, start_web_ring};
use support::{StorageNode, pseudo_random_bytes, ring_of, start_storage_nodes};
use tritontube::admin_cli::connect;
use tritontube::meta::{MetaStore, VideoDetails};
use tritontube::proto::admin::{
    ChangeKind, ClusterStatusRequest, ListWorkersRequest, PaceReply, PauseMovesRequest,
    ResumeMovesRequest, SetPaceRequest, StartChangeRequest, WorkerInfo,
};
use tritontube::web::ContentSpec;

const PATIENCE: Duration = Duration::from_secs(120);

async fn pace(admin: &str) -> PaceReply {
    connect(admin, None)
        .unwrap()
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .pace
        .expect("the pace is reported")
}

async fn change_worker(admin: &str) -> Option<WorkerInfo> {
    let workers = connect(admin, None)
        .unwrap()
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    workers.into_iter().rev().find(|w| w.kind == "ring change")
}

async fn journaled(admin: &str) -> bool {
    connect(admin, None)
        .unwrap()
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .journaled
        .is_some()
}

async fn seed(web: &WebNode, nodes: &[&StorageNode], count: usize) {
    web.meta
        .claim_video("paced", chrono::Utc::now())
        .await
        .unwrap();
    web.meta
        .finish_video("paced", &VideoDetails::default())
        .await
        .unwrap();
    let addresses: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    let ring = ring_of(&addresses, 1);
    for i in 0..count {
        let key = format!("paced/chunk-0-{i:05}.m4s");
        let owner = ring.owners(&key)[0].to_string();
        let node = nodes.iter().find(|n| n.address() == owner).unwrap();
        let data = Bytes::from(pseudo_random_bytes(20_000, i as u64));
        node.client().put(&key, data, None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ring_change_is_paused_paced_and_resumed_live_and_a_restart_keeps_the_pause() {
    let all = start_storage_nodes(3).await;
    let two: Vec<&StorageNode> = all[..2].iter().collect();
    let mut web = start_web_ring(&two, WebOptions::default()).await;
    seed(&web, &two, 300).await;
    let mut admin = connect(&web.admin, None).unwrap();
    let fresh = pace(&web.admin).await;
    assert_eq!(
        (fresh.mbps, fresh.paused),
        (0, false),
        "unlimited by default"
    );

    // Paused before the change starts: it is journaled and copies nothing.
    let paused = admin
        .pause_moves(PauseMovesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(paused.paused);
    admin
        .start_change(StartChangeRequest {
            kind: ChangeKind::Add as i32,
            node_address: all[2].address(),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = change_worker(&web.admin)
        .await
        .expect("the change's worker");
    assert_eq!(held.files_done, 0, "{held:?}");
    assert!(held.throttle.contains("paused"), "{held:?}");
    assert!(journaled(&web.admin).await);
    assert!(all[2].client().keys(false).await.unwrap().is_empty());

    // A restarted web node on the same metadata honours the pause it finds journaled.
    let work = std::mem::replace(&mut web.work, tempfile::tempdir().unwrap());
    web.stop().await;
    let meta = MetaStore::sqlite(&work.path().join("metadata.db"))
        .await
        .unwrap();
    let content = ContentSpec::Ring {
        seed_nodes: two.iter().map(|n| n.address()).collect(),
        spares: Vec::new(),
        virtual_nodes: tritontube::ring::DEFAULT_VIRTUAL_NODES,
        replicas: 1,
        admin_token: None,
    };
    let web = start_web(work, meta, content, WebOptions::default()).await;
    let mut admin = connect(&web.admin, None).unwrap();
    assert!(
        pace(&web.admin).await.paused,
        "the pause is kept in the journal"
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while change_worker(&web.admin).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never resumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(change_worker(&web.admin).await.unwrap().files_done, 0);
    assert!(all[2].client().keys(false).await.unwrap().is_empty());

    // A slow pace, then resumed: it moves, and the rate shown is the one measured.
    let set = admin
        .set_pace(SetPaceRequest { mbps: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((set.mbps, set.paused), (1, true));
    admin.resume_moves(ResumeMovesRequest {}).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let moving = loop {
        let w = change_worker(&web.admin).await.unwrap();
        // The status shows the pace within a refresh (twice a second).
        if w.files_done >= 20 && w.throttle.contains("pace 1 MB/s") {
            break w;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress: {w:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(moving.throttle.contains("pace 1 MB/s"), "{moving:?}");
    let measured = pace(&web.admin).await.measured_bytes_per_sec;
    assert!(measured > 0.0, "nothing measured while moving");
    // The pace holds (a loaded machine only moves slower): well below unlimited.
    assert!(measured < 2e6, "{measured} B/s at a pace of 1 MB/s");

    // Unlimited again, live: the change finishes.
    admin.set_pace(SetPaceRequest { mbps: 0 }).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while journaled(&web.admin).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = change_worker(&web.admin).await.unwrap();
    assert_eq!(done.state, "done", "{done:?}");
    assert_eq!(pace(&web.admin).await.mbps, 0, "unlimited after `pace 0`");
}
