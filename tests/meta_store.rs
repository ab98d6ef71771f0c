//! The metadata store's behaviours, run against SQLite and against a real etcd cluster,
//! and etcd's behaviour when members fail.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use support::etcd::EtcdCluster;
use tritontube::meta::{MetaError, MetaStore, VideoDetails, VideoStatus};

/// Generous bound for anything that must "return, not hang".
const NO_HANG: Duration = Duration::from_secs(15);

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 123_456_789).unwrap()
}

fn details(n: u64) -> VideoDetails {
    VideoDetails {
        duration_seconds: 12.5 + n as f64,
        source_bytes: 1_000_000 + n,
        file_count: 7 + n,
        stored_bytes: 900_000 + n,
    }
}

async fn ids(store: &MetaStore) -> Vec<String> {
    let read = store.list_videos().await.expect("list");
    assert!(!read.stale);
    read.value.into_iter().map(|v| v.id).collect()
}

// ---- the shared suite -------------------------------------------------------------------

async fn lifecycle(store: MetaStore) {
    assert!(store.list_videos().await.unwrap().value.is_empty());
    assert_eq!(store.get_video("a").await.unwrap().value, None);

    store.claim_video("a", at(1)).await.unwrap();
    let a = store.get_video("a").await.unwrap();
    assert!(!a.stale);
    let a = a.value.expect("claimed video");
    assert_eq!(a.id, "a");
    assert_eq!(a.uploaded_at, at(1));
    assert_eq!(a.status, VideoStatus::Processing);
    assert_eq!(a.details, None);

    store.finish_video("a", &details(1)).await.unwrap();
    let a = store.get_video("a").await.unwrap().value.unwrap();
    assert_eq!(a.status, VideoStatus::Ready);
    assert_eq!(a.uploaded_at, at(1));
    assert_eq!(a.details, Some(details(1)));

    store.claim_video("c", at(3)).await.unwrap();
    store.claim_video("b", at(2)).await.unwrap();
    store.claim_video("b2", at(2)).await.unwrap();
    // Newest first; equal times by id.
    assert_eq!(ids(&store).await, ["c", "b", "b2", "a"]);

    store.remove_video("b").await.unwrap();
    store.remove_video("b").await.unwrap(); // idempotent
    store.remove_video("never-existed").await.unwrap();
    assert_eq!(ids(&store).await, ["c", "b2", "a"]);
    assert_eq!(store.get_video("b").await.unwrap().value, None);

    // A removed id can be claimed again, Ready ones too once removed.
    store.claim_video("b", at(4)).await.unwrap();
    store.remove_video("a").await.unwrap();
    store.claim_video("a", at(5)).await.unwrap();
    assert_eq!(ids(&store).await, ["a", "b", "c", "b2"]);
    let a = store.get_video("a").await.unwrap().value.unwrap();
    assert_eq!(a.status, VideoStatus::Processing);
    assert_eq!(a.details, None);
}

async fn duplicate_claim(store: MetaStore) {
    store.claim_video("dup", at(1)).await.unwrap();
    match store.claim_video("dup", at(2)).await {
        Err(MetaError::AlreadyExists(id)) => assert_eq!(id, "dup"),
        other => panic!("second claim of a processing id: {other:?}"),
    }
    store.finish_video("dup", &details(0)).await.unwrap();
    assert!(matches!(
        store.claim_video("dup", at(3)).await,
        Err(MetaError::AlreadyExists(_))
    ));
    // The failed claims changed nothing.
    let v = store.get_video("dup").await.unwrap().value.unwrap();
    assert_eq!(v.uploaded_at, at(1));
    assert_eq!(v.status, VideoStatus::Ready);
}

async fn finish_unknown(store: MetaStore) {
    assert!(matches!(
        store.finish_video("ghost", &details(0)).await,
        Err(MetaError::NotFound(_))
    ));
    assert!(store.list_videos().await.unwrap().value.is_empty());
}

async fn concurrent_claims(store: MetaStore) {
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_video("race", at(i)).await })
        })
        .collect();
    let mut won = 0;
    let mut lost = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(MetaError::AlreadyExists(_)) => lost += 1,
            Err(e) => panic!("unexpected claim error: {e}"),
        }
    }
    assert_eq!((won, lost), (1, 15));
    assert_eq!(ids(&store).await, ["race"]);
}

async fn details_round_trip(store: MetaStore) {
    let big = VideoDetails {
        duration_seconds: 5400.125,
        source_bytes: 40_000_000_000,
        file_count: 1352,
        stored_bytes: 39_999_999_999,
    };
    store.claim_video("movie", at(1)).await.unwrap();
    store.finish_video("movie", &big).await.unwrap();
    let listed = store.list_videos().await.unwrap().value;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].details, Some(big.clone()));
    assert_eq!(listed[0].status, VideoStatus::Ready);
    // Names with spaces and other characters survive.
    store.claim_video("big buck bunny", at(2)).await.unwrap();
    store.finish_video("big buck bunny", &details(2)).await.unwrap();
    let v = store.get_video("big buck bunny").await.unwrap().value.unwrap();
    assert_eq!(v.details, Some(details(2)));
}

async fn cluster_state(store: MetaStore) {
    assert_eq!(store.load_cluster_state().await.unwrap(), None);
    let doc = r#"{"ring":{"nodes":["127.0.0.1:8090","127.0.0.1:8091"]},"migration":null}"#;
    store.save_cluster_state(doc).await.unwrap();
    assert_eq!(store.load_cluster_state().await.unwrap().as_deref(), Some(doc));
    store.save_cluster_state("{}").await.unwrap();
    assert_eq!(store.load_cluster_state().await.unwrap().as_deref(), Some("{}"));
    // The cluster document is not a video.
    assert!(store.list_videos().await.unwrap().value.is_empty());
}

type Behaviour = fn(MetaStore) -> futures::future::BoxFuture<'static, ()>;

fn suite() -> Vec<(&'static str, Behaviour)> {
    vec![
        ("lifecycle", |s| Box::pin(lifecycle(s))),
        ("duplicate_claim", |s| Box::pin(duplicate_claim(s))),
        ("finish_unknown", |s| Box::pin(finish_unknown(s))),
        ("concurrent_claims", |s| Box::pin(concurrent_claims(s))),
        ("details_round_trip", |s| Box::pin(details_round_trip(s))),
        ("cluster_state", |s| Box::pin(cluster_state(s))),
    ]
}

#[tokio::test]
async fn sqlite_suite() {
    for (name, behaviour) in suite() {
        eprintln!("sqlite: {name}");
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::sqlite(&dir.path().join("meta.db")).await.unwrap();
        behaviour(store).await;
    }
}

#[tokio::test]
async fn etcd_suite() {
    let Some(cluster) = EtcdCluster::start(5).await else {
        return;
    };
    for (name, behaviour) in suite() {
        eprintln!("etcd: {name}");
        cluster.wipe().await;
        let store = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
        behaviour(store).await;
    }
}
