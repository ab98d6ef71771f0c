//! The cluster on several hosts: network namespaces on a bridge (tests/support/netns.rs),
//! a 3-member etcd cluster, three storage nodes and two web nodes, each on its own host
//! address, every internal link mutual TLS with certificates made by `tritontube cert`.
//! Needs root; fails, naming why, when it cannot make the namespaces.

#[path = "../support/mod.rs"]
mod support;

mod cluster;
mod outsider;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster::*;
use reqwest::StatusCode;
use support::web::{browser_script, run_browser, upload_bytes};
use tritontube::proto::admin::ClusterHealthRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_uploaded_through_one_web_host_plays_through_both() {
    let cluster = Cluster::start().await;
    let videos = tempfile::tempdir().unwrap();
    let uploaded = upload_bytes(&cluster.url("w1"), "crossing.mp4", clip(videos.path(), "c")).await;
    assert_eq!(uploaded.status(), StatusCode::SEE_OTHER);

    let manifest = |web: &str| format!("{}/content/crossing/manifest.mpd", cluster.url(web));
    eventually("the manifest through the other web host", || async {
        fetch(&manifest("w2")).await.0 == StatusCode::OK
    })
    .await;
    let (_, served) = fetch(&manifest("w2")).await;
    assert_eq!(fetch(&manifest("w1")).await, (StatusCode::OK, served));
    // A viewer's browser plays it through each web host's own address: the player page,
    // dash.js, the manifest and every segment, with no page error or failed request.
    for web in WEB {
        let play = || {
            let mut command = browser_script("play.mjs");
            command
                .arg(format!("{}/videos/crossing", cluster.url(web)))
                .args(["1.5", "", "90000"]);
            command
        };
        // Playback has been seen, rarely, to stall at its very start with no error and no
        // failed request (cause not yet found): such a stall is reported and tried once
        // more; any page error, failed request or second stall fails the test.
        let first = play().output().await.expect("node runs (install Node.js)");
        let report = String::from_utf8_lossy(&first.stdout);
        let stalled = report.contains("Timeout") && report.contains("\"problems\":[]");
        let seen: serde_json::Value = if first.status.success() {
            serde_json::from_str(report.trim()).unwrap()
        } else if stalled {
            eprintln!("playback through {web} stalled, trying once more: {report}");
            run_browser(&mut play(), &format!("playback through {web}, second try")).await
        } else {
            panic!(
                "playback through {web} failed: {report} {}",
                String::from_utf8_lossy(&first.stderr)
            );
        };
        assert_eq!(seen["ok"], true, "{web}: {seen}");
        assert!(seen["currentTime"].as_f64().unwrap() > 1.5, "{web}: {seen}");
        assert!(
            seen["totalVideoFrames"].as_u64().unwrap() > 0,
            "{web}: {seen}"
        );
        assert_eq!(seen["videoHeight"], 240, "{web}: {seen}");
    }
    // Every file is on the storage hosts' disks, R copies each.
    let held = cluster.holders();
    assert!(
        held.keys().any(|k| k == "crossing/manifest.mpd"),
        "{held:?}"
    );
    assert!(
        held.values().all(|h| h.len() == REPLICAS as usize),
        "{held:?}"
    );
}

/// Whether every key on the disks sits on exactly its R owners; says what is wrong when not.
fn placed_on_owners(cluster: &Cluster) -> bool {
    let addresses: Vec<String> = STORAGE.iter().map(|h| cluster.storage_address(h)).collect();
    let ring = support::ring_of(&addresses, REPLICAS);
    let misplaced: Vec<_> = cluster
        .holders()
        .into_iter()
        .filter(|(key, holders)| {
            let owners: BTreeSet<String> = ring.owners(key).into_iter().map(String::from).collect();
            *holders != owners || owners.len() != REPLICAS as usize
        })
        .collect();
    if !misplaced.is_empty() {
        eprintln!("not on their owners: {misplaced:?}");
    }
    misplaced.is_empty()
}

async fn hinted(cluster: &Cluster, web: &str) -> u64 {
    cluster
        .operator(web)
        .cluster_health(ClusterHealthRequest {})
        .await
        .expect("cluster health")
        .into_inner()
        .hinted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_host_cut_off_during_an_upload_gets_its_copies_back() {
    let cluster = Cluster::start().await;
    let videos = tempfile::tempdir().unwrap();
    let video = clip(videos.path(), "c");

    // The link goes down while the upload is in flight (sent, then transcoded for a
    // second or more before any copy is written).
    let url = cluster.url("w1");
    let upload = tokio::spawn(async move { upload_bytes(&url, "detour.mp4", video).await });
    cluster.net.cut("s3");
    let uploaded = upload.await.unwrap();
    assert_eq!(uploaded.status(), StatusCode::SEE_OTHER);
    let manifest = format!("{}/content/detour/manifest.mpd", cluster.url("w2"));
    assert_eq!(fetch(&manifest).await.0, StatusCode::OK);
    assert!(
        cluster.disks()["s3"].is_empty(),
        "the cut-off host got files"
    );
    assert!(hinted(&cluster, "w1").await > 0, "s3's copies are hinted");
    let keys: BTreeSet<String> = cluster.holders().into_keys().collect();
    assert!(keys.contains("detour/manifest.mpd"), "{keys:?}");

    // The link comes back: the health monitor sees s3 return and hands its copies over.
    cluster.net.restore("s3");
    eventually("s3's copies to be handed back", || async {
        hinted(&cluster, "w1").await == 0
            && cluster.holders().into_keys().collect::<BTreeSet<_>>() == keys
            && placed_on_owners(&cluster)
    })
    .await;
    assert!(!cluster.disks()["s3"].is_empty());
}

/// Uploads `video` until a web node accepts it, within [`PATIENCE`]; each attempt under
/// a new id (`ID-N`), since one that timed out on the client may still have claimed its
/// id. Returns the accepted id.
async fn upload_until_accepted(url: &str, id: &str, video: &[u8]) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    for attempt in 0.. {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let name = format!("{id}-{attempt}");
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            upload_bytes(url, &format!("{name}.mp4"), video.to_vec()),
        )
        .await;
        match answer {
            Ok(answer) if answer.status() == StatusCode::SEE_OTHER => return name,
            Ok(answer) => seen.push(format!(
                "{}: {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            )),
            Err(_) => seen.push("no answer within 30 s".into()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{url} never accepted {id}; answers: {seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_host_cut_off_from_the_etcd_majority_answers_503_and_recovers() {
    let cluster = Cluster::start().await;
    let videos = tempfile::tempdir().unwrap();
    let video = clip(videos.path(), "c");
    upload_until_accepted(&cluster.url("w1"), "before", &video).await;

    // w1 and e1 on one side, the majority (e2, e3) on the other; w1 still reaches the
    // storage hosts, w2 and the test.
    let minority = ["w1", "e1"];
    let majority = ["e2", "e3"];
    for a in minority {
        for b in majority {
            cluster.net.separate(a, b);
        }
    }
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        upload_bytes(&cluster.url("w1"), "cut.mp4", video.clone()),
    )
    .await
    .expect("a write without the etcd majority must not hang");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = refused.text().await.unwrap();
    assert!(body.contains("metadata store"), "{body}");
    // The other web host, on the majority's side, still takes uploads.
    let written = upload_until_accepted(&cluster.url("w2"), "majority", &video).await;
    assert!(
        cluster.holders().keys().all(|k| !k.starts_with("cut/")),
        "the refused upload left files"
    );

    // The partition heals: w1 takes writes again by itself.
    for a in minority {
        for b in majority {
            cluster.net.join(a, b);
        }
    }
    upload_until_accepted(&cluster.url("w1"), "after", &video).await;
    let (status, _) = fetch(&format!(
        "{}/content/{written}/manifest.mpd",
        cluster.url("w1")
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
}
