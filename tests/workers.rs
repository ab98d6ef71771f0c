//! One shape for background work, seen from outside: every long-lived loop of a web node
//! is a worker that `admin status` lists, each upload is processed by a worker of the web
//! node, and a client that goes away mid-processing stops nothing.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use support::start_storage_nodes;
use support::web::{WebOptions, http_client, make_video, start_web_ring, upload_file};
use tritontube::admin_cli::connect;
use tritontube::meta::VideoStatus;
use tritontube::proto::admin::{ListWorkersRequest, WorkerInfo};

/// A bound on waits for what happens by itself, long enough for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(120);

async fn workers(admin: &str) -> Vec<WorkerInfo> {
    connect(admin, None)
        .unwrap()
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers
}

fn by_kind(workers: &[WorkerInfo]) -> BTreeMap<&str, Vec<&WorkerInfo>> {
    let mut kinds: BTreeMap<&str, Vec<&WorkerInfo>> = BTreeMap::new();
    for w in workers {
        kinds.entry(w.kind.as_str()).or_default().push(w);
    }
    kinds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_status_lists_every_background_loop_and_each_upload_processed() {
    let nodes = start_storage_nodes(2).await;
    let refs: Vec<_> = nodes.iter().collect();
    let web = start_web_ring(&refs, WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let video = make_video(videos.path(), "Ocean_Trip.mp4", 2, "320x240");
    let response = upload_file(&web.url, &video, "Ocean_Trip.mp4").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    let listed = workers(&web.admin).await;
    let kinds = by_kind(&listed);
    for long_lived in [
        "health monitor",
        "membership watch",
        "resync",
        "video deletes",
    ] {
        let found = kinds
            .get(long_lived)
            .unwrap_or_else(|| panic!("no {long_lived} worker in {listed:?}"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].state, "running", "{found:?}");
    }
    // The health monitor says what it saw of the nodes.
    let monitor = kinds["health monitor"][0];
    assert_eq!(monitor.files_total, 2, "{monitor:?}");
    let upload = kinds
        .get("upload processing")
        .unwrap_or_else(|| panic!("the upload was not processed by a worker: {listed:?}"));
    assert_eq!(upload.len(), 1, "{upload:?}");
    assert!(
        upload[0].description.starts_with("Ocean_Trip"),
        "{upload:?}"
    );
    assert_eq!(upload[0].state, "done", "{upload:?}");
    assert!(upload[0].outcome.contains("files stored"), "{upload:?}");

    // The operator's view of the same: `tritontube admin status`.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tritontube"))
        .args(["admin", "status", &web.admin])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&status.stdout);
    for line in [
        "health monitor — probes the storage nodes",
        "membership watch — follows the cluster state",
        "resync — copies again the keys",
        "video deletes — finishes the video deletes",
        "upload processing — Ocean_Trip",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plain_form_upload_whose_client_goes_away_mid_processing_is_still_stored() {
    let nodes = start_storage_nodes(2).await;
    let refs: Vec<_> = nodes.iter().collect();
    let web = start_web_ring(&refs, WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    // Long enough that its transcoding outlasts the wait for it to begin.
    let video = make_video(videos.path(), "Long_Walk.mp4", 20, "640x360");
    let request = {
        let (url, video) = (web.url.clone(), video.clone());
        tokio::spawn(async move { upload_file(&url, &video, "Long_Walk.mp4").await })
    };
    // The body is in and the processing has begun: the client goes away.
    let client = http_client();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = client
            .get(format!("{}/api/uploads/Long_Walk", web.url))
            .send()
            .await
            .unwrap();
        if reply.status() == StatusCode::OK {
            let body: serde_json::Value =
                serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
            if matches!(body["phase"].as_str(), Some("transcoding" | "storing")) {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processing never began"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !request.is_finished(),
        "the form was answered before it could go away"
    );
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    let before = web.meta.get_video("Long_Walk").await.unwrap().value;
    assert!(
        before.is_some_and(|v| v.status != VideoStatus::Ready),
        "the client went away only once the video was stored"
    );

    // The web node finishes it anyway: stored, recorded, and served.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let video = web.meta.get_video("Long_Walk").await.unwrap().value;
        if video
            .as_ref()
            .is_some_and(|v| v.status == VideoStatus::Ready)
        {
            break;
        }
        assert!(video.is_some(), "the upload was rolled back");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let manifest = client
        .get(format!("{}/content/Long_Walk/manifest.mpd", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), StatusCode::OK);
    let processed = workers(&web.admin).await;
    assert!(
        processed.iter().any(|w| w.kind == "upload processing"
            && w.description.starts_with("Long_Walk")
            && w.state == "done"),
        "{processed:?}"
    );
    web.stop().await;
}
