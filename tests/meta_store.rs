//! The metadata store's behaviours, run against SQLite and against a real etcd cluster,
//! and etcd's behaviour when members fail.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use support::etcd::EtcdCluster;
use tritontube::meta::{
    Caption, Claim, Cursor, MetaError, MetaStore, Rendition, ResyncEntry, VideoDetails, VideoStatus,
};

/// Generous bound for anything that must "return, not hang".
const NO_HANG: Duration = Duration::from_secs(15);

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 123_456_789)
        .unwrap()
}

fn details(n: u64) -> VideoDetails {
    VideoDetails {
        duration_seconds: 12.5 + n as f64,
        source_bytes: 1_000_000 + n,
        file_count: 7 + n,
        stored_bytes: 900_000 + n,
        width: 1280,
        height: 720,
        renditions: vec![
            Rendition {
                width: 1280,
                height: 720,
                bitrate_kbps: 3000,
            },
            Rendition {
                width: 640,
                height: 360,
                bitrate_kbps: 800,
            },
        ],
        poster: n % 2 == 0,
        captions: Vec::new(),
        storyboard: n % 3 == 0,
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
        ..VideoDetails::default()
    };
    store.claim_video("movie", at(1)).await.unwrap();
    store.finish_video("movie", &big).await.unwrap();
    let listed = store.list_videos().await.unwrap().value;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].details, Some(big.clone()));
    assert_eq!(listed[0].status, VideoStatus::Ready);
    // Names with spaces and other characters survive.
    store.claim_video("big buck bunny", at(2)).await.unwrap();
    store
        .finish_video("big buck bunny", &details(2))
        .await
        .unwrap();
    let v = store
        .get_video("big buck bunny")
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(v.details, Some(details(2)));
}

async fn cluster_state(store: MetaStore) {
    assert_eq!(store.load_cluster_state().await.unwrap(), None);
    let doc = r#"{"ring":{"nodes":["127.0.0.1:8090","127.0.0.1:8091"]},"migration":null}"#;
    store.save_cluster_state(doc).await.unwrap();
    assert_eq!(
        store.load_cluster_state().await.unwrap().as_deref(),
        Some(doc)
    );
    store.save_cluster_state("{}").await.unwrap();
    assert_eq!(
        store.load_cluster_state().await.unwrap().as_deref(),
        Some("{}")
    );
    // The cluster document is not a video.
    assert!(store.list_videos().await.unwrap().value.is_empty());
}

/// Of several web nodes changing the cluster state at once, exactly one wins; a stale
/// expectation never overwrites.
async fn cluster_state_compare_and_swap(store: MetaStore) {
    assert!(
        store
            .compare_and_swap_cluster_state(None, r#"{"version":1}"#)
            .await
            .unwrap()
    );
    // Absent is no longer true, and a wrong expectation changes nothing.
    assert!(
        !store
            .compare_and_swap_cluster_state(None, r#"{"version":9}"#)
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap_cluster_state(Some(r#"{"version":0}"#), r#"{"version":9}"#)
            .await
            .unwrap()
    );
    let racers = (0..8).map(|i| {
        let store = store.clone();
        async move {
            store
                .compare_and_swap_cluster_state(
                    Some(r#"{"version":1}"#),
                    &format!(r#"{{"version":2,"writer":{i}}}"#),
                )
                .await
                .unwrap()
        }
    });
    let won = futures::future::join_all(racers).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let winner = won.iter().position(|w| *w).unwrap();
    assert_eq!(
        store.load_cluster_state().await.unwrap(),
        Some(format!(r#"{{"version":2,"writer":{winner}}}"#))
    );
}

/// Walking the pages visits every video once, newest first, whatever the page size; a
/// video added meanwhile does not shift the pages after the cursor.
async fn pages(store: MetaStore) {
    let empty = store.list_videos_page(10, None).await.unwrap().value;
    assert!(empty.videos.is_empty() && empty.next.is_none());
    // 23 videos, three of them sharing one time (then ordered by id).
    for n in 0..20 {
        store.claim_video(&format!("v{n:02}"), at(n)).await.unwrap();
    }
    for id in ["same-b", "same-a", "same-c"] {
        store.claim_video(id, at(7)).await.unwrap();
    }
    let everything = ids(&store).await;
    assert_eq!(everything.len(), 23);
    for limit in [1, 4, 7, 23, 50] {
        let mut seen = Vec::new();
        let mut after: Option<Cursor> = None;
        let mut pages = 0;
        loop {
            let page = store
                .list_videos_page(limit, after.as_ref())
                .await
                .unwrap()
                .value;
            assert!(page.videos.len() <= limit);
            seen.extend(page.videos.iter().map(|v| v.id.clone()));
            pages += 1;
            match page.next {
                Some(next) => {
                    // Cursors survive their text form.
                    after = Some(Cursor::decode(&next.encode()).unwrap());
                }
                None => break,
            }
            if pages == 2 {
                // Newer than everything: lands on the first page, shifts nothing here.
                store
                    .claim_video(&format!("late-{limit}"), at(1000 + limit as i64))
                    .await
                    .unwrap();
            }
        }
        assert_eq!(pages, 23usize.div_ceil(limit).max(1), "limit {limit}");
        assert_eq!(seen, everything, "limit {limit}");
        store.remove_video(&format!("late-{limit}")).await.unwrap();
    }
    let first = store.list_videos_page(3, None).await.unwrap().value;
    assert_eq!(
        first
            .videos
            .iter()
            .map(|v| v.id.as_str())
            .collect::<Vec<_>>(),
        ["v19", "v18", "v17"]
    );
    assert!(Cursor::decode("nonsense").is_none());
    assert!(Cursor::decode("12:").is_none());
}

/// A delete leaves a tombstone that blocks the id until it is removed; an upload in
/// progress is not turned into one.
async fn tombstones(store: MetaStore) {
    assert!(matches!(
        store.begin_delete("nobody").await,
        Err(MetaError::NotFound(_))
    ));
    store.claim_video("busy", at(1)).await.unwrap();
    assert_eq!(
        store.begin_delete("busy").await.unwrap(),
        VideoStatus::Processing
    );
    let busy = store.get_video("busy").await.unwrap().value.unwrap();
    assert_eq!(busy.status, VideoStatus::Processing);

    store.claim_video("gone", at(2)).await.unwrap();
    store.finish_video("gone", &details(2)).await.unwrap();
    assert_eq!(
        store.begin_delete("gone").await.unwrap(),
        VideoStatus::Ready
    );
    let tomb = store.get_video("gone").await.unwrap().value.unwrap();
    assert_eq!(tomb.status, VideoStatus::Deleting);
    assert_eq!(tomb.details, Some(details(2)));
    // Again: still a tombstone, and the id stays taken until the record goes.
    assert_eq!(
        store.begin_delete("gone").await.unwrap(),
        VideoStatus::Deleting
    );
    assert!(matches!(
        store.claim_video("gone", at(3)).await,
        Err(MetaError::AlreadyExists(_))
    ));
    // A tombstone cannot be finished back into a video.
    assert!(matches!(
        store.finish_video("gone", &details(2)).await,
        Err(MetaError::NotFound(_))
    ));
    let listed = store.list_videos().await.unwrap().value;
    assert!(
        listed
            .iter()
            .any(|v| v.id == "gone" && v.status == VideoStatus::Deleting)
    );
    store.remove_video("gone").await.unwrap();
    store.claim_video("gone", at(4)).await.unwrap();
    assert_eq!(
        store
            .get_video("gone")
            .await
            .unwrap()
            .value
            .unwrap()
            .uploaded_at,
        at(4)
    );
}

/// A published video is playable with the details so far, still owned by its upload (a
/// delete waits), and becomes ready with the whole ladder.
async fn publish_then_finish(store: MetaStore) {
    assert!(matches!(
        store.publish_video("nobody", &details(0)).await,
        Err(MetaError::NotFound(_))
    ));
    store.claim_video("early", at(1)).await.unwrap();
    let mut lowest = details(3);
    lowest.renditions.truncate(1);
    store.publish_video("early", &lowest).await.unwrap();
    let early = store.get_video("early").await.unwrap().value.unwrap();
    assert_eq!(early.status, VideoStatus::Playable);
    assert_eq!(early.details, Some(lowest.clone()));
    let listed = store.list_videos().await.unwrap().value;
    assert!(
        listed
            .iter()
            .any(|v| v.id == "early" && v.status == VideoStatus::Playable)
    );
    assert_eq!(
        store.begin_delete("early").await.unwrap(),
        VideoStatus::Playable
    );
    // A caption set while playable stays when the upload finishes.
    let en = Caption {
        lang: "en".into(),
        file: "captions-en-1.vtt".into(),
    };
    assert_eq!(
        store.set_caption("early", "en", Some(&en)).await.unwrap(),
        None
    );
    store.finish_video("early", &details(3)).await.unwrap();
    let early = store.get_video("early").await.unwrap().value.unwrap();
    assert_eq!(early.status, VideoStatus::Ready);
    let mut with_caption = details(3);
    with_caption.captions = vec![en.clone()];
    assert_eq!(early.details, Some(with_caption));
    // Replaced, added, removed; listed by language.
    let en2 = Caption {
        lang: "en".into(),
        file: "captions-en-2.vtt".into(),
    };
    let fr = Caption {
        lang: "fr".into(),
        file: "captions-fr-1.vtt".into(),
    };
    assert_eq!(
        store.set_caption("early", "fr", Some(&fr)).await.unwrap(),
        None
    );
    assert_eq!(
        store.set_caption("early", "en", Some(&en2)).await.unwrap(),
        Some(en)
    );
    let captions = |v: tritontube::meta::Video| v.details.unwrap().captions;
    assert_eq!(
        captions(store.get_video("early").await.unwrap().value.unwrap()),
        [en2.clone(), fr.clone()]
    );
    assert_eq!(
        store.set_caption("early", "fr", None).await.unwrap(),
        Some(fr)
    );
    assert_eq!(
        captions(store.get_video("early").await.unwrap().value.unwrap()),
        [en2]
    );
    // Only a video that plays has captions.
    store.claim_video("claimed", at(5)).await.unwrap();
    assert!(matches!(
        store.set_caption("claimed", "en", None).await,
        Err(MetaError::NotFound(_))
    ));
    assert!(matches!(
        store.set_caption("nobody", "en", None).await,
        Err(MetaError::NotFound(_))
    ));
    // Ready is final: it is not published again.
    assert!(matches!(
        store.publish_video("early", &lowest).await,
        Err(MetaError::NotFound(_))
    ));
}

/// The resync queue: one entry per key, a second queueing keeps the first (and its
/// tries), an update changes only a queued entry, removal is idempotent.
async fn resync_queue(store: MetaStore) {
    assert!(store.resync_queue().await.unwrap().is_empty());
    let entry = |key: &str, reason: &str| ResyncEntry {
        key: key.into(),
        reason: reason.into(),
        queued_at: at(1),
        attempts: 0,
        next_at: at(1),
        last_error: String::new(),
    };
    assert!(store.queue_resync(&entry("v/b.m4s", "read")).await.unwrap());
    assert!(
        store
            .queue_resync(&entry("v/a.m4s", "scrub"))
            .await
            .unwrap()
    );
    let mut tried = entry("v/b.m4s", "read");
    tried.attempts = 2;
    tried.next_at = at(3);
    tried.last_error = "no good copy".into();
    store.update_resync(&tried).await.unwrap();
    assert!(
        !store
            .queue_resync(&entry("v/b.m4s", "again"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.resync_queue().await.unwrap(),
        vec![entry("v/a.m4s", "scrub"), tried.clone()]
    );
    store.remove_resync("v/b.m4s").await.unwrap();
    store.remove_resync("v/b.m4s").await.unwrap();
    // An entry healed (removed) is not brought back by a late update.
    store.update_resync(&tried).await.unwrap();
    assert_eq!(
        store.resync_queue().await.unwrap(),
        vec![entry("v/a.m4s", "scrub")]
    );
}

/// Each etcd test runs a five-member cluster; three at once on two cores starve them
/// enough that a member misses the deadlines the fail-fast test checks.
/// Releasing a claim removes only the record that claim made, in any state.
async fn released_claims(store: MetaStore) {
    let held = Claim::new("held", at(1));
    store.claim(&held).await.unwrap();
    store.publish_video("held", &details(1)).await.unwrap();
    let rival = Claim::new("held", at(2));
    assert!(matches!(
        store.claim(&rival).await,
        Err(MetaError::AlreadyExists(_))
    ));
    store.release_claim(&rival, true).await.unwrap();
    assert!(
        store.get_video("held").await.unwrap().value.is_some(),
        "the release of a claim that never landed removed another claim's video"
    );
    store.release_claim(&held, false).await.unwrap();
    assert!(store.get_video("held").await.unwrap().value.is_none());
    assert!(ids(&store).await.is_empty());
    store.release_claim(&held, false).await.unwrap();
    store.claim(&Claim::new("held", at(3))).await.unwrap();
}

/// A claim whose write had an unknown outcome and was then released can never land
/// afterward (an attempt delivered late, once a cut link is back), and its id stays free.
async fn etcd_a_released_claim_never_lands(cluster: &EtcdCluster) {
    let store = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
    let late = Claim::new("late", at(3));
    store.release_claim(&late, true).await.unwrap();
    assert!(
        store.claim(&late).await.is_err(),
        "a claim landed after its release"
    );
    assert!(store.get_video("late").await.unwrap().value.is_none());
    store.claim(&Claim::new("late", at(4))).await.unwrap();
}

static ONE_ETCD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Behaviour = fn(MetaStore) -> futures::future::BoxFuture<'static, ()>;

fn suite() -> Vec<(&'static str, Behaviour)> {
    vec![
        ("lifecycle", |s| Box::pin(lifecycle(s))),
        ("duplicate_claim", |s| Box::pin(duplicate_claim(s))),
        ("finish_unknown", |s| Box::pin(finish_unknown(s))),
        ("concurrent_claims", |s| Box::pin(concurrent_claims(s))),
        ("details_round_trip", |s| Box::pin(details_round_trip(s))),
        ("cluster_state", |s| Box::pin(cluster_state(s))),
        ("cluster_state_compare_and_swap", |s| {
            Box::pin(cluster_state_compare_and_swap(s))
        }),
        ("pages", |s| Box::pin(pages(s))),
        ("tombstones", |s| Box::pin(tombstones(s))),
        ("publish_then_finish", |s| Box::pin(publish_then_finish(s))),
        ("resync_queue", |s| Box::pin(resync_queue(s))),
        ("released_claims", |s| Box::pin(released_claims(s))),
    ]
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tritontube=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

#[tokio::test]
async fn sqlite_suite() {
    init_logs();
    for (name, behaviour) in suite() {
        eprintln!("sqlite: {name}");
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::sqlite(&dir.path().join("meta.db"))
            .await
            .unwrap();
        behaviour(store).await;
    }
}

#[tokio::test]
async fn etcd_suite() {
    let _alone = ONE_ETCD_AT_A_TIME.lock().await;
    init_logs();
    let cluster = EtcdCluster::start(5).await;
    for (name, behaviour) in suite() {
        eprintln!("etcd: {name}");
        cluster.wipe().await;
        let store = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
        behaviour(store).await;
    }
}

// ---- data written by the original system ------------------------------------------------

#[tokio::test]
async fn sqlite_opens_a_file_of_the_original_system() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    {
        // The original's schema, and rows as its Go driver wrote them.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS videos (
                 id TEXT PRIMARY KEY,
                 uploaded_at DATETIME NOT NULL
             );
             INSERT INTO videos (id, uploaded_at)
                 VALUES ('old', '2024-05-01 12:34:56.789012345-07:00');
             INSERT INTO videos (id, uploaded_at)
                 VALUES ('older', '2024-04-01 08:00:00+00:00');",
        )
        .unwrap();
    }
    let store = MetaStore::sqlite(&path).await.unwrap();
    let listed = store.list_videos().await.unwrap().value;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, "old");
    assert_eq!(
        listed[0].uploaded_at,
        DateTime::parse_from_rfc3339("2024-05-01T19:34:56.789012345Z").unwrap()
    );
    assert_eq!(listed[1].id, "older");
    for v in &listed {
        assert_eq!(v.status, VideoStatus::Ready);
        assert_eq!(v.details, None);
    }
    assert!(matches!(
        store.claim_video("old", at(0)).await,
        Err(MetaError::AlreadyExists(_))
    ));
    store.claim_video("new", at(0)).await.unwrap();
    store.finish_video("new", &details(0)).await.unwrap();
    drop(store);

    // The original's own statements still work on the migrated file, and what we wrote
    // is text its driver parses.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO videos (id, uploaded_at) VALUES ('from-go', '2025-01-01 00:00:00+00:00')",
        [],
    )
    .unwrap();
    let stored: String = conn
        .query_row("SELECT uploaded_at FROM videos WHERE id = 'new'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "2023-11-14T22:13:20.123456789Z");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
    drop(conn);

    // Re-opening does not migrate twice.
    let store = MetaStore::sqlite(&path).await.unwrap();
    let listed = store.list_videos().await.unwrap().value;
    let names: Vec<&str> = listed.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(names, ["from-go", "old", "older", "new"]);
    assert_eq!(listed[0].status, VideoStatus::Ready);
    assert_eq!(listed[3].details, Some(details(0)));
    // Rows the original added after the migration have no sort key of their own; pages
    // still place them by their upload time.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_videos_page(1, after.as_ref())
            .await
            .unwrap()
            .value;
        paged.extend(page.videos.into_iter().map(|v| v.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, names);
}

#[tokio::test]
async fn sqlite_watch_never_yields() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::sqlite(&dir.path().join("m.db")).await.unwrap();
    let mut changes = store.watch_cluster_state().await.unwrap();
    store.save_cluster_state("{}").await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(futures::FutureExt::now_or_never(changes.next()), None);
}

/// Keys in the original's shape are read as Ready videos, and ours are what it expects.
async fn etcd_original_shape(cluster: &EtcdCluster) {
    let mut raw = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .unwrap();
    raw.put("videos/x", "2024-05-01T12:34:56.789012345-07:00", None)
        .await
        .unwrap();
    raw.put("videos/y", "2024-05-02T10:00:00Z", None)
        .await
        .unwrap();
    let store = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
    let listed = store.list_videos().await.unwrap().value;
    let names: Vec<&str> = listed.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(names, ["y", "x"]);
    assert_eq!(
        listed[1].uploaded_at,
        DateTime::parse_from_rfc3339("2024-05-01T19:34:56.789012345Z").unwrap()
    );
    for v in &listed {
        assert_eq!(v.status, VideoStatus::Ready);
        assert_eq!(v.details, None);
    }
    assert!(matches!(
        store.claim_video("x", at(0)).await,
        Err(MetaError::AlreadyExists(_))
    ));

    // The original sees a video only once it is Ready, with the time in its layout.
    store.claim_video("z", at(0)).await.unwrap();
    assert!(raw.get("videos/z", None).await.unwrap().kvs().is_empty());
    store.finish_video("z", &details(0)).await.unwrap();
    let got = raw.get("videos/z", None).await.unwrap();
    assert_eq!(
        got.kvs()[0].value_str().unwrap(),
        "2023-11-14T22:13:20.123456789Z"
    );
    store.remove_video("x").await.unwrap();
    assert!(raw.get("videos/x", None).await.unwrap().kvs().is_empty());
}

/// A save made through one store is seen by another store's watch.
async fn etcd_watch(cluster: &EtcdCluster) {
    let watcher = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
    let writer = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
    let mut changes = watcher.watch_cluster_state().await.unwrap();
    writer.save_cluster_state(r#"{"v":1}"#).await.unwrap();
    writer.save_cluster_state(r#"{"v":2}"#).await.unwrap();
    for want in [r#"{"v":1}"#, r#"{"v":2}"#] {
        let got = tokio::time::timeout(NO_HANG, changes.next())
            .await
            .expect("watch delivered nothing");
        assert_eq!(got.as_deref(), Some(want));
    }
}

#[tokio::test]
async fn etcd_specifics() {
    let _alone = ONE_ETCD_AT_A_TIME.lock().await;
    init_logs();
    let cluster = EtcdCluster::start(5).await;
    etcd_original_shape(&cluster).await;
    cluster.wipe().await;
    etcd_watch(&cluster).await;
    cluster.wipe().await;
    etcd_pages_index_what_came_before(&cluster).await;
    cluster.wipe().await;
    etcd_a_released_claim_never_lands(&cluster).await;
}

/// Pages come from a time index. Videos that have no entry in it (the original's, and
/// records written before the index existed) get one the first time a page is read, and
/// an entry whose video is gone is dropped.
async fn etcd_pages_index_what_came_before(cluster: &EtcdCluster) {
    let mut raw = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .unwrap();
    raw.put("videos/legacy-old", "2024-05-01T12:00:00Z", None)
        .await
        .unwrap();
    raw.put("videos/legacy-new", "2024-05-03 12:00:00.5+00:00", None)
        .await
        .unwrap();
    let record = r#"{"uploaded_at":"2024-05-02T00:00:00Z","status":"ready","claim":"old"}"#;
    raw.put("tritontube/videos/unindexed", record, None)
        .await
        .unwrap();
    raw.put("videos/unindexed", "2024-05-02T00:00:00Z", None)
        .await
        .unwrap();
    raw.put("tritontube/by-time/00000000000000000001/ghost", "", None)
        .await
        .unwrap();
    let store = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
    store.claim_video("fresh", at(0)).await.unwrap();

    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = store
            .list_videos_page(2, after.as_ref())
            .await
            .unwrap()
            .value;
        seen.extend(page.videos.into_iter().map(|v| v.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["legacy-new", "unindexed", "legacy-old", "fresh"]);
    assert_eq!(ids(&store).await, seen);
    let index = raw
        .get(
            "tritontube/by-time/",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        index.kvs().len(),
        4,
        "one entry per video, the dangling one dropped"
    );
    // Deleting and removing keep the index in step.
    assert_eq!(
        store.begin_delete("legacy-old").await.unwrap(),
        VideoStatus::Ready
    );
    store.remove_video("legacy-old").await.unwrap();
    store.remove_video("fresh").await.unwrap();
    let index = raw
        .get(
            "tritontube/by-time/",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(index.count(), 2);
    let first = store.list_videos_page(10, None).await.unwrap().value;
    let ids: Vec<&str> = first.videos.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["legacy-new", "unindexed"]);
    assert!(first.next.is_none());
}

// ---- etcd with members down -------------------------------------------------------------

/// Retries `claim` until it succeeds (bounded). A claim that timed out may still have
/// landed, so finding the id taken by the time a retry runs counts as success too.
async fn claim_eventually(store: &MetaStore, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match store.claim_video(id, at(100)).await {
            Ok(()) => return,
            Err(MetaError::AlreadyExists(_)) => return,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "claims never recovered: {e}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[tokio::test]
async fn etcd_survives_two_failures_and_fails_fast_without_quorum() {
    let _alone = ONE_ETCD_AT_A_TIME.lock().await;
    init_logs();
    let mut cluster = EtcdCluster::start(5).await;
    let store = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
    let watcher = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
    let mut changes = watcher.watch_cluster_state().await.unwrap();
    store.claim_video("before", at(1)).await.unwrap();
    store.finish_video("before", &details(1)).await.unwrap();

    // Two members down, the leader among them: the other three elect a new one.
    let leader = cluster.wait_for_leader(NO_HANG).await;
    let other = (leader + 1) % cluster.len();
    cluster.kill(leader);
    cluster.kill(other);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    assert!(new_leader != leader && new_leader != other);
    tokio::time::timeout(NO_HANG, store.claim_video("with-three", at(2)))
        .await
        .expect("claim hung")
        .expect("claim with three members of five");
    store.finish_video("with-three", &details(2)).await.unwrap();
    let listed = store.list_videos().await.unwrap();
    assert!(!listed.stale);
    let names: Vec<&str> = listed.value.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(names, ["with-three", "before"]);

    // A third member down: no quorum. Writes fail with Unavailable instead of hanging,
    // reads answer from a surviving member, marked stale.
    let third = (0..cluster.len()).find(|&i| cluster.is_running(i)).unwrap();
    cluster.kill(third);
    let claim = tokio::time::timeout(NO_HANG, store.claim_video("no-quorum", at(3)))
        .await
        .expect("claim without quorum hung");
    assert!(
        matches!(claim, Err(MetaError::Unavailable(_))),
        "claim without quorum: {claim:?}"
    );
    let save = tokio::time::timeout(NO_HANG, store.save_cluster_state("{}"))
        .await
        .expect("save without quorum hung");
    assert!(matches!(save, Err(MetaError::Unavailable(_))), "{save:?}");
    let listed = tokio::time::timeout(NO_HANG, store.list_videos())
        .await
        .expect("list without quorum hung")
        .expect("stale list from a surviving member");
    assert!(listed.stale);
    let names: Vec<&str> = listed.value.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(names, ["with-three", "before"]);
    let got = tokio::time::timeout(NO_HANG, store.get_video("before"))
        .await
        .expect("get without quorum hung")
        .expect("stale get");
    assert!(got.stale);
    assert_eq!(got.value.unwrap().details, Some(details(1)));

    // No member at all: reads are refused too, promptly.
    let survivors: Vec<usize> = (0..cluster.len())
        .filter(|&i| cluster.is_running(i))
        .collect();
    for &i in &survivors {
        cluster.kill(i);
    }
    let listed = tokio::time::timeout(NO_HANG, store.list_videos())
        .await
        .expect("list with no member hung");
    assert!(
        matches!(listed, Err(MetaError::Unavailable(_))),
        "{listed:?}"
    );

    // Everyone back: writes work again by themselves, reads are fresh again.
    for i in 0..cluster.len() {
        cluster.restart(i);
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    claim_eventually(&store, "after-restart").await;
    store.claim_video("after-restart-2", at(101)).await.unwrap();
    let listed = store.list_videos().await.unwrap();
    assert!(!listed.stale);
    // The claim refused without quorum may still have been committed once the quorum
    // came back: a write that answers Unavailable has an unknown outcome.
    let mut names: Vec<&str> = listed.value.iter().map(|v| v.id.as_str()).collect();
    names.retain(|&n| n != "no-quorum");
    assert_eq!(
        names,
        ["after-restart-2", "after-restart", "with-three", "before"]
    );

    // The watch opened before all this re-established itself.
    let writer = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
    writer
        .save_cluster_state(r#"{"after":"restart"}"#)
        .await
        .unwrap();
    // (The save refused without quorum may surface first, as the claim may have.)
    let seen = tokio::time::timeout(NO_HANG, async {
        while let Some(v) = changes.next().await {
            if v != "{}" {
                return Some(v);
            }
        }
        None
    })
    .await
    .expect("watch did not recover");
    assert_eq!(seen.as_deref(), Some(r#"{"after":"restart"}"#));
}
