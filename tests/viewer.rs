//! The viewer's side of the web node: the JSON API and its pagination, uploads followed by
//! script, the ladder and poster, deletes (crash-safe, and the id coming back), refusals
//! that reach a client still sending. Real storage nodes, real SQLite, real ffmpeg.

mod support;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;
use support::web::{
    WebOptions, browser_script, holdings, http_client, make_video, run_browser, start_web,
    start_web_local, start_web_ring, upload_bytes, upload_file,
};
use support::{StorageNode, start_storage_node};
use tritontube::library::videos::content_version;
use tritontube::meta::{MetaStore, VideoDetails};
use tritontube::web::ContentSpec;

async fn get_json(url: &str) -> (StatusCode, Value) {
    let response = http_client()
        .get(url)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    let json = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (status, json)
}

/// POSTs a file as the index page's script does; returns the status and JSON answer.
async fn script_upload(url: &str, file_name: &str, data: Vec<u8>) -> (StatusCode, Value) {
    let part = reqwest::multipart::Part::bytes(data)
        .file_name(file_name.to_string())
        .mime_str("video/mp4")
        .unwrap();
    let response = http_client()
        .post(format!("{url}/upload"))
        .header(header::ACCEPT, "application/json")
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, json_of(response).await)
}

/// Polls the upload status until it ends; returns every phase seen (in order, without
/// repeats) and the last status.
async fn follow_upload(url: &str, id: &str) -> (Vec<String>, Value) {
    let mut phases: Vec<String> = Vec::new();
    for _ in 0..2400 {
        let (status, body) = get_json(&format!("{url}/api/uploads/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let phase = body["phase"].as_str().unwrap().to_string();
        if phases.last() != Some(&phase) {
            phases.push(phase.clone());
        }
        if phase == "ready" || phase == "failed" {
            return (phases, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the upload of {id} never ended: {phases:?}");
}

async fn json_of(response: reqwest::Response) -> Value {
    let body = response.text().await.unwrap();
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

fn is_json_error(body: &Value) -> bool {
    body["error"].as_str().is_some_and(|e| !e.is_empty())
}

/// Waits until the web node answers: it clears processing claims as it starts, so a test
/// writing records directly must not race its start.
async fn wait_until_up(url: &str) {
    for _ in 0..200 {
        if http_client()
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the web node at {url} did not start");
}

async fn record(meta: &MetaStore, id: &str, secs: i64) {
    let at = Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap();
    meta.claim_video(id, at).await.unwrap();
    let details = VideoDetails {
        duration_seconds: 61.0,
        width: 1280,
        height: 720,
        ..VideoDetails::default()
    };
    meta.finish_video(id, &details).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_pages_through_videos_newest_first() {
    let (web, _dir) = start_web_local(WebOptions::default()).await;
    wait_until_up(&web.url).await;
    for n in 0..30 {
        record(&web.meta, &format!("v{n:02}"), n).await;
    }
    let mut ids = Vec::new();
    let mut url = format!("{}/api/videos?limit=7", web.url);
    let mut pages = 0;
    loop {
        let (status, body) = get_json(&url).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let videos = body["videos"].as_array().unwrap();
        assert!(videos.len() <= 7);
        ids.extend(videos.iter().map(|v| v["id"].as_str().unwrap().to_string()));
        pages += 1;
        match body["next"].as_str() {
            Some(next) => {
                let next: String =
                    percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
                        .to_string();
                url = format!("{}/api/videos?limit=7&after={next}", web.url);
            }
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let expected: Vec<String> = (0..30).rev().map(|n| format!("v{n:02}")).collect();
    assert_eq!(ids, expected);

    let (status, one) = get_json(&format!("{}/api/videos/v07", web.url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["state"], "ready");
    assert_eq!(one["duration_seconds"], 61.0);
    assert_eq!(
        (one["width"].as_u64(), one["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(one["uploaded_at"], "2023-11-14T22:13:27Z");
    assert_eq!(one["player_url"], "/videos/v07");

    // Errors are JSON with the right status.
    for (path, want) in [
        ("/api/videos/nobody", StatusCode::NOT_FOUND),
        ("/api/videos/.hidden", StatusCode::NOT_FOUND),
        ("/api/videos?limit=0", StatusCode::BAD_REQUEST),
        ("/api/videos?limit=100000", StatusCode::BAD_REQUEST),
        ("/api/videos?limit=x", StatusCode::BAD_REQUEST),
        ("/api/videos?after=garbage", StatusCode::BAD_REQUEST),
        ("/api/uploads/nobody", StatusCode::NOT_FOUND),
    ] {
        let (status, body) = get_json(&format!("{}{path}", web.url)).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(is_json_error(&body), "{path}: {body}");
    }

    // The index shows one page of cards, and a link to the next.
    let index = http_client()
        .get(format!("{}/", web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(index.matches("<li class=\"card\"").count(), 24, "{index}");
    assert!(index.contains(">v29<") && !index.contains(">v05<"));
    assert!(index.contains("1:01") && index.contains("1280×720"));
    let next_start = index.find("rel=\"next\" href=\"").unwrap() + "rel=\"next\" href=\"".len();
    let next = &index[next_start..next_start + index[next_start..].find('"').unwrap()];
    let older = http_client()
        .get(format!("{}{next}", web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(older.matches("<li class=\"card\"").count(), 6, "{older}");
    assert!(older.contains(">v05<") && older.contains(">v00<") && !older.contains(">v06<"));
    assert!(!older.contains("rel=\"next\""));
    let bad = http_client()
        .get(format!("{}/?after=garbage", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

/// The script's way: 202 once the body is in, then the processing state until ready; a
/// file that is not a video fails with its reason and leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_script_upload_reports_its_phases_until_ready() {
    let (web, dir) = start_web_local(WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "phased.mp4", 6, "320x240");
    let (status, body) = script_upload(&web.url, "phased.mp4", std::fs::read(&clip).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["id"], "phased");
    assert_eq!(body["status_url"], "/api/uploads/phased");
    let (phases, last) = follow_upload(&web.url, "phased").await;
    assert_eq!(last["phase"], "ready", "{last}");
    assert_eq!(last["transcode_percent"], 100.0, "{last}");
    assert_eq!(
        last["received_bytes"],
        std::fs::metadata(&clip).unwrap().len()
    );
    assert!(last["stored_files"].as_u64().unwrap() >= 3, "{last}");
    // The phases come in their order (the quick ones may pass between two looks).
    let order = [
        "receiving",
        "probing",
        "transcoding",
        "storing",
        "playable",
        "ready",
    ];
    let positions: Vec<usize> = phases
        .iter()
        .map(|p| order.iter().position(|o| o == p).expect("a known phase"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{phases:?}");

    let (_, video) = get_json(&format!("{}/api/videos/phased", web.url)).await;
    assert_eq!(video["state"], "ready");
    assert_eq!(video["width"], 320);
    assert_eq!(video["renditions"].as_array().unwrap().len(), 1);
    let poster = video["poster_url"].as_str().unwrap();
    let jpeg = http_client()
        .get(format!("{}{poster}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(jpeg.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert!(jpeg.bytes().await.unwrap().starts_with(&[0xFF, 0xD8]));

    // Not a video: accepted, then failed with the reason; nothing stays.
    let (status, _) = script_upload(&web.url, "junk.mp4", b"not a video\n".repeat(50)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, last) = follow_upload(&web.url, "junk").await;
    assert_eq!(last["phase"], "failed");
    assert!(
        last["error"].as_str().unwrap().contains("not a video"),
        "{last}"
    );
    let mut gone = false;
    for _ in 0..100 {
        if web.meta.get_video("junk").await.unwrap().value.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the failed upload's claim stayed");
    assert!(
        support::files_under(&dir)
            .iter()
            .all(|f| !f.starts_with("junk")),
        "{:?}",
        support::files_under(&dir)
    );
    // Refusals made before the body is in are JSON too.
    let (status, body) = script_upload(&web.url, "phased.mp4", b"x".to_vec()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(is_json_error(&body), "{body}");
}

/// A 720p source gets the ladder's 720p, 480p and 360p in one manifest, one audio track.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_720p_upload_gets_a_ladder_of_renditions() {
    let (web, _dir) = start_web_local(WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "tall.mp4", 4, "1280x720");
    assert_eq!(
        upload_file(&web.url, &clip, "tall.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, video) = get_json(&format!("{}/api/videos/tall", web.url)).await;
    let heights: Vec<u64> = video["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights, [720, 480, 360], "{video}");
    let manifest = http_client()
        .get(format!(
            "{}{}",
            web.url,
            video["manifest_url"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(manifest.matches("<AdaptationSet").count(), 2, "{manifest}");
    assert_eq!(manifest.matches("<Representation").count(), 4, "{manifest}");
    for size in [
        "width=\"1280\" height=\"720\"",
        "width=\"854\" height=\"480\"",
        "width=\"640\" height=\"360\"",
    ] {
        assert!(manifest.contains(size), "{size} missing: {manifest}");
    }
    // Every rendition plays: the init segment each representation's id names is there.
    let ids: Vec<&str> = manifest
        .split("<Representation id=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(ids.len(), 4, "{manifest}");
    for representation in ids {
        let init = http_client()
            .get(format!(
                "{}/content/tall/init-{representation}.m4s",
                web.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(init.status(), StatusCode::OK, "init-{representation}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_removes_every_file_and_the_id_can_be_uploaded_again() {
    let nodes = [
        start_storage_node().await,
        start_storage_node().await,
        start_storage_node().await,
    ];
    let refs: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(
        &refs,
        WebOptions {
            replicas: 2,
            admin_token: Some("secret".into()),
            ..WebOptions::default()
        },
    )
    .await;
    let videos = tempfile::tempdir().unwrap();
    let first = make_video(videos.path(), "first.mp4", 3, "320x240");
    let second = make_video(videos.path(), "second.mp4", 5, "160x120");
    assert_eq!(
        upload_file(&web.url, &first, "gone.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
    let old = web.meta.get_video("gone").await.unwrap().value.unwrap();
    let old_version = content_version(&old);
    let old_files = old.details.as_ref().unwrap().file_count;
    let client = http_client();
    // Read through this node's cache before the delete.
    let old_segment = client
        .get(format!("{}/content/gone/chunk-0-00001.m4s", web.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();

    let delete = |token: Option<&'static str>| {
        let mut request = client.delete(format!("{}/api/videos/gone", web.url));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request.send()
    };
    for token in [None, Some("wrong")] {
        let refused = delete(token).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(is_json_error(&json_of(refused).await));
    }
    assert!(!holdings(&refs).await.is_empty());
    let deleted = delete(Some("secret")).await.unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let body = json_of(deleted).await;
    assert_eq!(body["deleted_files"].as_u64(), Some(old_files));
    assert!(holdings(&refs).await.is_empty(), "files left on the nodes");
    assert!(web.meta.get_video("gone").await.unwrap().value.is_none());
    let again = delete(Some("secret")).await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    for path in [
        "/api/videos/gone".to_string(),
        "/videos/gone".to_string(),
        "/content/gone/manifest.mpd".to_string(),
        "/content/gone/chunk-0-00001.m4s".to_string(),
        format!("/content/gone/{old_version}/manifest.mpd"),
    ] {
        let response = client
            .get(format!("{}{path}", web.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // The same id, another video: new URLs, and never the old bytes.
    assert_eq!(
        upload_file(&web.url, &second, "gone.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
    let new = web.meta.get_video("gone").await.unwrap().value.unwrap();
    let new_version = content_version(&new);
    assert_ne!(new_version, old_version);
    let stale = client
        .get(format!(
            "{}/content/gone/{old_version}/manifest.mpd",
            web.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::NOT_FOUND);
    let fresh = client
        .get(format!(
            "{}/content/gone/{new_version}/chunk-0-00001.m4s",
            web.url
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let unversioned = client
        .get(format!("{}/content/gone/chunk-0-00001.m4s", web.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_ne!(fresh, old_segment);
    assert_eq!(unversioned, fresh);

    // An upload still being processed cannot be deleted.
    wait_until_up(&web.url).await;
    web.meta.claim_video("busy", Utc::now()).await.unwrap();
    let busy = client
        .delete(format!("{}/api/videos/busy", web.url))
        .header("x-tritontube-token", "secret")
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), StatusCode::CONFLICT);
}

/// What a web node killed mid-delete leaves: a tombstone and some of the files. The next
/// start finishes the delete, and the id can be uploaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_interrupted_by_a_crash_is_finished_at_start() {
    let node = start_storage_node().await;
    let work = tempfile::tempdir().unwrap();
    let meta = MetaStore::sqlite(&work.path().join("metadata.db"))
        .await
        .unwrap();
    record(&meta, "doomed", 1).await;
    record(&meta, "kept", 2).await;
    meta.begin_delete("doomed").await.unwrap();
    for key in [
        "doomed/chunk-0-00002.m4s",
        "doomed/manifest.mpd",
        "kept/manifest.mpd",
    ] {
        node.client()
            .put(key, bytes::Bytes::from_static(b"data"), None)
            .await
            .unwrap();
    }
    let content = ContentSpec::Ring {
        seed_nodes: vec![node.address()],
        spares: Vec::new(),
        virtual_nodes: 8,
        replicas: 1,
        admin_token: None,
    };
    let web = start_web(work, meta.clone(), content, WebOptions::default()).await;
    wait_until_up(&web.url).await;
    assert!(meta.get_video("doomed").await.unwrap().value.is_none());
    let keys: Vec<String> = node
        .client()
        .keys(false)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(keys, ["kept/manifest.mpd"]);
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "doomed.mp4", 2, "160x120");
    assert_eq!(
        upload_file(&web.url, &clip, "doomed.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
}

/// A refusal made while the client is still sending reaches it as an answer, not as a
/// broken connection: the node reads the rest of the file first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_reach_a_client_still_sending() {
    let (web, _dir) = start_web_local(WebOptions {
        max_upload_bytes: 4 * 1024 * 1024,
        ..WebOptions::default()
    })
    .await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "taken.mp4", 2, "160x120");
    assert_eq!(
        upload_file(&web.url, &clip, "taken.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
    // Far more than a socket buffer: an early close would break the client's send.
    let big = vec![7u8; 3 * 1024 * 1024 + 512 * 1024];
    let long_name = format!("{}.mp4", "n".repeat(300));
    for (name, want) in [
        (long_name.as_str(), StatusCode::BAD_REQUEST),
        (".hidden.mp4", StatusCode::BAD_REQUEST),
        ("taken.mp4", StatusCode::CONFLICT),
    ] {
        for round in 0..3 {
            let response = upload_bytes(&web.url, name, big.clone()).await;
            assert_eq!(response.status(), want, "{name} round {round}");
        }
    }
    let too_big = upload_bytes(&web.url, "huge.mp4", vec![0u8; 12 * 1024 * 1024]).await;
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The oversized upload's claim is rolled back in the background.
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = web.meta.list_videos().await.unwrap().value;
        if listed.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<&str> = listed.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["taken"]);
}

/// The journey with the pages' script in a real browser (tests/browser/viewer.mjs): the
/// progress bar moves while a 720p file is sent, the state reaches ready, the poster shows
/// on the index, dash.js plays it with more than one video quality, and the player page
/// deletes it (with the admin token).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_follows_an_upload_plays_its_qualities_and_deletes_it() {
    let nodes = [
        start_storage_node().await,
        start_storage_node().await,
        start_storage_node().await,
    ];
    let refs: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(
        &refs,
        WebOptions {
            admin_token: Some("browser-secret".into()),
            ..WebOptions::default()
        },
    )
    .await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "journey.mp4", 8, "1280x720");
    let seen = run_browser(
        browser_script("viewer.mjs").arg(&web.url).arg(&clip).args([
            "journey",
            "browser-secret",
            "240000",
        ]),
        "the browser journey",
    )
    .await;
    // The bar moved while the file was being sent: several values between 0 and 100.
    let sent: Vec<u64> = seen["sendingValues"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .filter(|v| (1..100).contains(v))
        .collect();
    assert!(sent.len() >= 3, "the progress bar did not move: {seen}");
    let phases: Vec<&str> = seen["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(phases.last(), Some(&"ready"), "{seen}");
    assert!(phases.contains(&"sending"), "{seen}");
    assert!(phases.contains(&"transcoding"), "{seen}");
    assert!(seen["problems"].as_array().unwrap().is_empty(), "{seen}");
    // The poster on the index, with its text alternative.
    assert!(seen["poster"]["width"].as_u64().unwrap() > 0, "{seen}");
    assert_eq!(seen["poster"]["alt"], "Frame from journey");
    // dash.js has the ladder: 720p, 480p, 360p.
    let heights: Vec<u64> = seen["qualities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["height"].as_u64())
        .collect();
    assert!(heights.len() > 1, "one quality only: {seen}");
    assert_eq!(heights.iter().max(), Some(&720), "{seen}");
    assert!(seen["currentTime"].as_f64().unwrap() > 2.0, "{seen}");
    assert!(
        seen["videoPoster"]
            .as_str()
            .unwrap()
            .ends_with("/poster.jpg")
    );
    // Deleted: confirmed, asked for the token, gone from the list, the API and the nodes.
    assert_eq!(seen["dialogs"], serde_json::json!(["confirm", "prompt"]));
    assert!(
        !seen["listedAfterDelete"]
            .as_array()
            .unwrap()
            .iter()
            .any(|id| id == "journey")
    );
    assert_eq!(seen["apiAfterDelete"], 404);
    assert!(holdings(&refs).await.is_empty());
    assert!(web.meta.get_video("journey").await.unwrap().value.is_none());
}

/// `tritontube admin delete ADMIN ID`, and the ListVideos RPC the console uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_service_lists_and_deletes_videos() {
    let nodes = [start_storage_node().await, start_storage_node().await];
    let refs: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(
        &refs,
        WebOptions {
            admin_token: Some("cli-secret".into()),
            ..WebOptions::default()
        },
    )
    .await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "c.mp4", 2, "160x120");
    for id in ["one", "two", "three"] {
        assert_eq!(
            upload_file(&web.url, &clip, &format!("{id}.mp4"))
                .await
                .status(),
            StatusCode::SEE_OTHER
        );
    }
    let mut client = tritontube::admin_cli::connect(&web.admin, Some("cli-secret")).unwrap();
    let first = client
        .list_videos(tritontube::proto::admin::ListVideosRequest {
            limit: 2,
            after: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = first.videos.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["three", "two"]);
    assert_eq!(first.videos[0].state, "ready");
    assert_eq!((first.videos[0].width, first.videos[0].height), (160, 120));
    assert!(first.videos[0].bytes > 0 && first.videos[0].files >= 4);
    let rest = client
        .list_videos(tritontube::proto::admin::ListVideosRequest {
            limit: 2,
            after: first.next.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.videos.len(), 1);
    assert_eq!(rest.videos[0].id, "one");
    assert!(rest.next.is_empty());
    // The console's videos view reads the same list.
    let console = tritontube::tui::sources::admin_client(&web.admin, Some("cli-secret")).unwrap();
    let seen = tritontube::tui::sources::list_videos(console)
        .await
        .unwrap();
    let ids: Vec<&str> = seen.rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["three", "two", "one"]);
    assert!(!seen.more);
    assert_eq!(seen.rows[0].state, "ready");

    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tritontube"))
            .arg("admin")
            .args(args)
            .env_remove("TRITONTUBE_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let refused = cli(&["delete", &web.admin, "two"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("token"));
    let done = cli(&["--token", "cli-secret", "delete", &web.admin, "two"]);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        out.starts_with("Successfully deleted video: two\nNumber of files deleted: "),
        "{out}"
    );
    assert!(web.meta.get_video("two").await.unwrap().value.is_none());
    assert!(holdings(&refs).await.keys().all(|k| !k.starts_with("two/")));
    let unknown = cli(&["--token", "cli-secret", "delete", &web.admin, "two"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no video named"));
}

/// Two web nodes on one etcd cluster: pages through the time index, a delete through
/// one, a re-upload of the id through it, and the other node never answering with the
/// old video's bytes once its version lookup expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_etcd_a_reupload_is_seen_by_every_web_node() {
    let cluster = support::etcd::EtcdCluster::start(1).await;
    let nodes = [start_storage_node().await, start_storage_node().await];
    let refs: Vec<&StorageNode> = nodes.iter().collect();
    let on_etcd = || async {
        let meta = MetaStore::etcd(&cluster.endpoints()).await.unwrap();
        let content = ContentSpec::Ring {
            seed_nodes: refs.iter().map(|n| n.address()).collect(),
            spares: Vec::new(),
            virtual_nodes: 64,
            replicas: 1,
            admin_token: None,
        };
        start_web(
            tempfile::tempdir().unwrap(),
            meta,
            content,
            WebOptions::default(),
        )
        .await
    };
    let a = on_etcd().await;
    let b = on_etcd().await;
    let videos = tempfile::tempdir().unwrap();
    let first = make_video(videos.path(), "first.mp4", 3, "320x240");
    let second = make_video(videos.path(), "second.mp4", 5, "160x120");
    for id in ["older", "shared"] {
        assert_eq!(
            upload_file(&a.url, &first, &format!("{id}.mp4"))
                .await
                .status(),
            StatusCode::SEE_OTHER
        );
    }
    let (_, page) = get_json(&format!("{}/api/videos?limit=1", b.url)).await;
    assert_eq!(page["videos"][0]["id"], "shared");
    let next = page["next"].as_str().unwrap().replace(':', "%3A");
    let (_, rest) = get_json(&format!("{}/api/videos?limit=1&after={next}", b.url)).await;
    assert_eq!(rest["videos"][0]["id"], "older");
    assert!(rest["next"].is_null());

    let segment = |web: &str| {
        let url = format!("{web}/content/shared/chunk-0-00001.m4s");
        async move { http_client().get(url).send().await.unwrap() }
    };
    let old = segment(&b.url).await.bytes().await.unwrap();
    let deleted = http_client()
        .delete(format!("{}/api/videos/shared", a.url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(
        upload_file(&a.url, &second, "shared.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
    let fresh = segment(&a.url).await.bytes().await.unwrap();
    assert_ne!(fresh, old);
    // B remembered the old version for at most VERSION_TTL; after it, the new bytes.
    tokio::time::sleep(tritontube::web::serve::VERSION_TTL + Duration::from_millis(500)).await;
    assert_eq!(segment(&b.url).await.bytes().await.unwrap(), fresh);
    let (_, video) = get_json(&format!("{}/api/videos/shared", b.url)).await;
    assert_eq!(video["width"], 160);
    let manifest = http_client()
        .get(format!(
            "{}{}",
            b.url,
            video["manifest_url"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), StatusCode::OK);
}
