//! Work caught in the middle, held there by a storage node frozen with SIGSTOP so the
//! interruption provably lands mid-way: orphan collection beside a real upload that is
//! still storing, a delete made while a holder is down, and a web node killed with
//! SIGKILL in the middle of a delete. Real storage nodes, real SQLite, real ffmpeg.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use support::web::{
    WebOptions, WebProcess, free_port, http_client, make_video, start_web_ring, upload_file,
};
use support::{
    StorageProcess, pseudo_random_bytes, sha256_hex, start_storage_node, start_storage_node_at,
    start_storage_nodes,
};
use tritontube::admin_cli::connect;
use tritontube::meta::{MetaStore, VideoStatus};
use tritontube::node::client::StorageClient;
use tritontube::proto::admin::{ClusterHealthRequest, ListWorkersRequest, StartRepairRequest};

/// A guard against hanging forever, never a measurement.
const PATIENCE: Duration = Duration::from_secs(180);

/// These tests stop nodes and start them again at the same address; while one is down
/// its port is free and a node of another test could take it. So they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// The copies of video `id`'s files: key → (node, SHA-256) for every node that answers.
async fn copies_of(nodes: &[String], id: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let prefix = format!("{id}/");
    let mut copies: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for node in nodes {
        let client = StorageClient::connect_lazy(node).unwrap();
        for info in client.keys(true).await.expect("list a node's keys") {
            if info.key.starts_with(&prefix) {
                copies
                    .entry(info.key)
                    .or_default()
                    .push((node.clone(), info.sha256));
            }
        }
    }
    copies
}

/// The keys of video `id` on the nodes.
async fn keys_of(nodes: &[String], id: &str) -> BTreeSet<String> {
    copies_of(nodes, id).await.into_keys().collect()
}

/// SHA-256 of every file of video `id` as the web node at `url` serves it.
async fn served_hashes(url: &str, keys: &BTreeSet<String>) -> BTreeMap<String, String> {
    let client = http_client();
    let mut hashes = BTreeMap::new();
    for key in keys {
        let response = client
            .get(format!("{url}/content/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{key}");
        let body = response.bytes().await.unwrap();
        hashes.insert(key.clone(), sha256_hex(&body));
    }
    hashes
}

/// Uploads `video` as `{id}.mp4` and returns what the web node then serves of it.
async fn upload_and_read(url: &str, video: &Path, id: &str, nodes: &[String]) -> Served {
    let response = upload_file(url, video, &format!("{id}.mp4")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "upload of {id}");
    let keys = keys_of(nodes, id).await;
    assert!(
        keys.iter().any(|k| k.ends_with(".m4s")),
        "no segment stored: {keys:?}"
    );
    Served {
        hashes: served_hashes(url, &keys).await,
    }
}

struct Served {
    hashes: BTreeMap<String, String>,
}

impl Served {
    /// The second upload of an id shares no served media segment with the first, and
    /// every file it serves is what the nodes hold now. (Initialisation segments carry
    /// only the codec set-up, the same for both uploads.)
    async fn assert_only_new_bytes(&self, old: &Served, nodes: &[String], id: &str) {
        let old_hashes: BTreeSet<&String> = old.hashes.values().collect();
        let segments: Vec<(&String, &String)> = self
            .hashes
            .iter()
            .filter(|(key, _)| key.contains("/chunk-"))
            .collect();
        assert!(!segments.is_empty(), "no segment compared");
        for (key, hash) in segments {
            assert!(
                !old_hashes.contains(hash),
                "{key} is served with the old upload's bytes"
            );
        }
        let held = copies_of(nodes, id).await;
        for (key, hash) in &self.hashes {
            let copies = &held[key];
            assert!(
                copies.iter().all(|(_, sha)| sha == hash),
                "{key}: the nodes hold {copies:?}, the web node served {hash}"
            );
        }
    }
}

/// An MP4 like [`make_video`]'s but with a tone of `hertz`, so that no file of its DASH
/// version (audio segments included) is the same as one of a video made with another tone.
fn make_video_with_tone(dir: &Path, file_name: &str, size: &str, hertz: u32) -> PathBuf {
    let path = dir.join(file_name);
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=25"),
        ])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency={hertz}:sample_rate=48000"))
        .args(["-t", "6", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make the test video");
    path
}

/// Video status in the SQLite file at `db` (a second connection, as an operator's).
async fn status_in(db: &Path, id: &str) -> Option<VideoStatus> {
    MetaStore::sqlite(db)
        .await
        .unwrap()
        .get_video(id)
        .await
        .unwrap()
        .value
        .map(|v| v.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orphan_collection_spares_a_real_upload_held_mid_store_and_takes_it_once_abandoned() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let running = start_storage_nodes(2).await;
    let frozen = StorageProcess::start().await;
    let mut nodes: Vec<String> = running.iter().map(|n| n.address()).collect();
    nodes.push(frozen.address.clone());
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("metadata.db");
    let (http_port, admin_port) = (free_port(), free_port());
    let flags = ["--replicas", "1", "--work-dir"];
    let uploads = work.path().join("uploads");
    let mut extra: Vec<&str> = flags.to_vec();
    extra.push(uploads.to_str().unwrap());
    let mut web = WebProcess::spawn(&db, &nodes, http_port, admin_port, &extra).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "held.mp4", 12, "320x240");

    // The upload stores its files on the ring; those owned by the frozen node wait for it
    // (at least 30 s each), so the upload is held in the middle of storing.
    frozen.signal("-STOP");
    let upload = {
        let url = web.url.clone();
        let part = reqwest::multipart::Part::bytes(std::fs::read(&clip).unwrap())
            .file_name("held.mp4")
            .mime_str("video/mp4")
            .unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        tokio::spawn(async move {
            http_client()
                .post(format!("{url}/upload"))
                .multipart(form)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let stored = loop {
        let stored = keys_of(&nodes[..2], "held").await;
        if !stored.is_empty() {
            break stored;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never stored a file"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Real orphans: files of a video nobody claimed, on both nodes that answer.
    let mut ghosts = BTreeSet::new();
    for (i, node) in running.iter().enumerate() {
        let key = format!("ghost/chunk-0-{i:05}.m4s");
        let data = Bytes::from(pseudo_random_bytes(8192, i as u64));
        node.client().put(&key, data, None).await.unwrap();
        ghosts.insert(key);
    }

    // The orphan collector (a repair) runs while the upload is held.
    let mut admin = connect(&web.admin, None).unwrap();
    let worker_id = loop {
        let started = admin
            .start_repair(StartRepairRequest {
                dry_run: false,
                verify: false,
            })
            .await;
        match started {
            Ok(reply) => break reply.into_inner().worker_id,
            // A repair the web node started by itself is running: the next one is ours.
            Err(e) if e.code() == tonic::Code::FailedPrecondition => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("cannot start a repair: {e}"),
        }
    };
    eventually("the repair to end", || async {
        let workers = connect(&web.admin, None)
            .unwrap()
            .list_workers(ListWorkersRequest {})
            .await
            .unwrap()
            .into_inner()
            .workers;
        workers.iter().any(|w| {
            w.id == worker_id && matches!(w.state.as_str(), "done" | "failed" | "interrupted")
        })
    })
    .await;
    // It ran while the upload was still storing: the upload has not answered, its claim
    // is still the one of an upload in progress.
    assert!(!upload.is_finished(), "the upload ended before the repair");
    assert!(
        status_in(&db, "held")
            .await
            .is_some_and(VideoStatus::in_upload)
    );
    let after = keys_of(&nodes[..2], "held").await;
    assert!(
        stored.is_subset(&after),
        "the repair took files of the upload in progress: {:?}",
        stored.difference(&after).collect::<Vec<_>>()
    );
    assert!(
        keys_of(&nodes[..2], "ghost").await.is_empty(),
        "the real orphans were left"
    );

    // The web node dies mid-upload: what it stored is now an abandoned upload's.
    web.kill();
    let answer = upload.await.unwrap();
    assert!(answer.is_err(), "the upload answered: {answer:?}");
    assert!(!keys_of(&nodes[..2], "held").await.is_empty());
    assert!(
        status_in(&db, "held")
            .await
            .is_some_and(VideoStatus::in_upload)
    );
    frozen.signal("-CONT");
    web = WebProcess::spawn(&db, &nodes, http_port, admin_port, &extra).await;
    // The restarted node drops the abandoned claim with its files; a copy the frozen node
    // only wrote once it ran again is an orphan for the next repair.
    eventually("the abandoned upload's files to be collected", || async {
        if keys_of(&nodes, "held").await.is_empty() {
            return true;
        }
        let _ = connect(&web.admin, None)
            .unwrap()
            .start_repair(StartRepairRequest {
                dry_run: false,
                verify: false,
            })
            .await;
        false
    })
    .await;
    assert_eq!(status_in(&db, "held").await, None);
    // And the id is free again.
    let response = upload_file(&web.url, &clip, "held.mp4").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_with_a_holder_down_finishes_when_it_returns() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut all = start_storage_nodes(3).await;
    let nodes: Vec<String> = all.iter().map(|n| n.address()).collect();
    let web = {
        let every: Vec<_> = all.iter().collect();
        start_web_ring(
            &every,
            WebOptions {
                replicas: 2,
                admin_token: Some("secret".into()),
                ..WebOptions::default()
            },
        )
        .await
    };
    let videos = tempfile::tempdir().unwrap();
    let first = make_video(videos.path(), "first.mp4", 6, "320x240");
    let second = make_video_with_tone(videos.path(), "second.mp4", "352x288", 660);
    let old = upload_and_read(&web.url, &first, "doomed", &nodes).await;

    // The node holding the most copies of the video goes down.
    let copies = copies_of(&nodes, "doomed").await;
    let holder = nodes
        .iter()
        .max_by_key(|n| {
            copies
                .values()
                .filter(|c| c.iter().any(|(h, _)| h == *n))
                .count()
        })
        .unwrap()
        .clone();
    let index = nodes.iter().position(|n| *n == holder).unwrap();
    let node = all.remove(index);
    let dir = node.dir.clone();
    let temp = node.stop().await;
    let held_there: Vec<String> = support::files_under(&dir.join("doomed"));
    assert!(
        held_there.iter().any(|f| f.ends_with(".m4s")),
        "the stopped node holds no segment of the video: {held_there:?}"
    );
    eventually("the web node to see the holder down", || async {
        let health = connect(&web.admin, Some("secret"))
            .unwrap()
            .cluster_health(ClusterHealthRequest {})
            .await
            .unwrap()
            .into_inner();
        health.nodes.iter().any(|n| n.address == holder && !n.up)
    })
    .await;

    // The delete cannot reach every copy: it says so, and leaves a tombstone.
    let client = http_client();
    let delete = client
        .delete(format!("{}/api/videos/doomed", web.url))
        .header("x-tritontube-token", "secret")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        web.meta
            .get_video("doomed")
            .await
            .unwrap()
            .value
            .map(|v| v.status),
        Some(VideoStatus::Deleting)
    );
    // Nothing of it is served any more, and the id stays taken until the delete ends.
    for key in old.hashes.keys() {
        let response = client
            .get(format!("{}/content/{key}", web.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{key}");
    }
    let early = upload_file(&web.url, &second, "doomed.mp4").await;
    assert_eq!(early.status(), StatusCode::CONFLICT);

    // The holder returns with its copies: they go, and the tombstone with them.
    let mut back = start_storage_node_at(&dir, &holder).await;
    back.temp = temp;
    all.push(back);
    eventually("the delete to finish", || async {
        keys_of(&nodes, "doomed").await.is_empty()
            && web.meta.get_video("doomed").await.unwrap().value.is_none()
    })
    .await;

    // The same id again: only the new bytes are served.
    let new = upload_and_read(&web.url, &second, "doomed", &nodes).await;
    new.assert_only_new_bytes(&old, &nodes, "doomed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_web_node_killed_mid_delete_finishes_it_from_the_tombstone() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let steady = start_storage_node().await;
    let frozen = StorageProcess::start().await;
    let nodes = vec![steady.address(), frozen.address.clone()];
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("metadata.db");
    let uploads = work.path().join("uploads");
    let extra = ["--replicas", "2", "--work-dir", uploads.to_str().unwrap()];
    let (http_port, admin_port) = (free_port(), free_port());
    let mut web = WebProcess::spawn(&db, &nodes, http_port, admin_port, &extra).await;
    let videos = tempfile::tempdir().unwrap();
    let first = make_video(videos.path(), "first.mp4", 6, "320x240");
    let second = make_video_with_tone(videos.path(), "second.mp4", "352x288", 660);
    let old = upload_and_read(&web.url, &first, "doomed", &nodes).await;

    // A holder frozen: the delete lists every node first, so it waits on this one.
    frozen.signal("-STOP");
    let delete = {
        let url = web.url.clone();
        tokio::spawn(async move {
            http_client()
                .delete(format!("{url}/api/videos/doomed"))
                .send()
                .await
        })
    };
    eventually("the tombstone", || async {
        status_in(&db, "doomed").await == Some(VideoStatus::Deleting)
    })
    .await;
    web.kill();
    // The kill landed mid-delete: the request never got its answer, the tombstone is
    // still recorded, and every copy is still on the nodes.
    assert!(delete.await.unwrap().is_err(), "the delete answered");
    assert_eq!(status_in(&db, "doomed").await, Some(VideoStatus::Deleting));
    assert_eq!(
        keys_of(&nodes[..1], "doomed").await,
        old.hashes.keys().cloned().collect()
    );

    // The restart finishes the delete from the tombstone.
    frozen.signal("-CONT");
    web = WebProcess::spawn(&db, &nodes, http_port, admin_port, &extra).await;
    eventually("the delete to finish", || async {
        keys_of(&nodes, "doomed").await.is_empty() && status_in(&db, "doomed").await.is_none()
    })
    .await;

    // The same id again: only the new bytes are served.
    let new = upload_and_read(&web.url, &second, "doomed", &nodes).await;
    new.assert_only_new_bytes(&old, &nodes, "doomed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_add_says_so_when_its_change_is_cancelled_mid_way() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let nodes = start_storage_nodes(2).await;
    let newcomer = StorageProcess::start().await;
    let every: Vec<_> = nodes.iter().collect();
    let two: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    let web = start_web_ring(&every, WebOptions::default()).await;
    web.meta
        .claim_video("kept", chrono::Utc::now())
        .await
        .unwrap();
    web.meta
        .finish_video("kept", &tritontube::meta::VideoDetails::default())
        .await
        .unwrap();
    let ring = support::ring_of(&two, 1);
    for i in 0..150 {
        let key = format!("kept/chunk-0-{i:05}.m4s");
        let data = Bytes::from(pseudo_random_bytes(16 * 1024, i));
        for owner in ring.owners(&key) {
            let node = nodes.iter().find(|n| n.address() == owner).unwrap();
            node.client().put(&key, data.clone(), None).await.unwrap();
        }
    }
    let mut admin = connect(&web.admin, None).unwrap();
    let mut progress = admin
        .watch_migration(tritontube::proto::admin::WatchMigrationRequest {})
        .await
        .unwrap()
        .into_inner();
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_tritontube"))
        .args(["admin", "add", &web.admin, &newcomer.address])
        .output();
    let cli = tokio::spawn(cli);
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
    // Held mid-change: journaled, files still to copy.
    let held = admin
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .journaled
        .expect("the change is journaled");
    assert!(held.files_done < held.files_total, "{held:?}");
    let cancel = {
        let mut admin = admin.clone();
        tokio::spawn(async move {
            admin
                .cancel_change(tritontube::proto::admin::CancelChangeRequest {})
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    newcomer.signal("-CONT");
    cancel.await.unwrap().expect("the cancel is accepted");

    // The command that asked for the add does not report it done.
    let output = tokio::time::timeout(PATIENCE, cli)
        .await
        .expect("admin add ends")
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "admin add succeeded: {stdout}");
    assert!(!stdout.contains("Successfully added"), "{stdout}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert_eq!(
        support::web::ring_nodes(&web.admin).await,
        two.iter().cloned().collect()
    );
}
