//! The web node end to end: real storage nodes, real SQLite, real ffmpeg, HTTP.

mod support;

use std::collections::BTreeSet;

use reqwest::StatusCode;
use reqwest::header;
use support::web::{
    WebOptions, decoded_frames, holdings, http_client, make_video, start_web_local, start_web_ring,
    upload_bytes, upload_file,
};
use support::{StorageNode, start_storage_node};
use tritontube::ring::Ring;

async fn three_nodes() -> Vec<StorageNode> {
    vec![
        start_storage_node().await,
        start_storage_node().await,
        start_storage_node().await,
    ]
}

async fn video_ids(url: &str) -> String {
    http_client()
        .get(format!("{url}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_spreads_files_over_the_ring_and_plays_back() {
    let nodes = three_nodes().await;
    let refs: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(&refs, WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "clip.mp4", 9, "320x240");

    let response = upload_file(&web.url, &clip, "clip.mp4").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/");

    // Every file landed on exactly its ring owner.
    let ring = Ring::with_nodes(
        tritontube::ring::DEFAULT_VIRTUAL_NODES,
        1,
        nodes.iter().map(|n| n.address()),
    );
    let held = holdings(&refs).await;
    assert!(held.contains_key("clip/manifest.mpd"), "{held:?}");
    assert!(held.keys().any(|k| k.starts_with("clip/init-")));
    assert!(held.keys().filter(|k| k.starts_with("clip/chunk-")).count() >= 3);
    for (key, holders) in &held {
        let owners: Vec<String> = ring.owners(key).into_iter().map(String::from).collect();
        assert_eq!(holders, &owners, "{key}");
    }
    // More than one node got files: the ring spreads them.
    let used: BTreeSet<&String> = held.values().flatten().collect();
    assert!(used.len() >= 2, "all files on one node: {held:?}");

    // The index lists it; the player page loads dash.js from this node.
    let index = video_ids(&web.url).await;
    assert!(index.contains("href=\"/videos/clip\""), "{index}");
    let player = http_client()
        .get(format!("{}/videos/clip", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(player.status(), StatusCode::OK);
    let html = player.text().await.unwrap();
    assert!(html.contains("/static/dash.all.min.js"));
    // The manifest and poster at versioned URLs.
    let version = tritontube::library::videos::content_version(
        &web.meta.get_video("clip").await.unwrap().value.unwrap(),
    );
    assert!(html.contains(&format!("/content/clip/{version}/manifest.mpd")));
    assert!(html.contains(&format!("poster=\"/content/clip/{version}/poster.jpg\"")));
    assert!(held.contains_key("clip/poster.jpg"), "{held:?}");
    let dash = http_client()
        .get(format!("{}/static/dash.all.min.js", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(dash.status(), StatusCode::OK);
    assert!(dash.bytes().await.unwrap().len() > 100_000);

    // A real client plays the whole stream over HTTP.
    let url = format!("{}/content/clip/manifest.mpd", web.url);
    let frames = tokio::task::spawn_blocking(move || decoded_frames(&url))
        .await
        .unwrap();
    assert!(frames >= 9 * 25 - 5, "decoded only {frames} frames of 225");

    let listing = web.meta.list_videos().await.unwrap().value;
    assert_eq!(listing.len(), 1);
    let details = listing[0].details.clone().expect("details");
    assert!((details.duration_seconds - 9.0).abs() < 0.5);
    assert_eq!(details.file_count as usize, held.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn content_route_speaks_http_properly() {
    let (web, _dir) = start_web_local(WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "http.mp4", 5, "160x120");
    assert_eq!(
        upload_file(&web.url, &clip, "http.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
    let client = http_client();
    let base = format!("{}/content/http", web.url);

    let manifest = client
        .get(format!("{base}/manifest.mpd"))
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), StatusCode::OK);
    assert_eq!(
        manifest.headers()[header::CONTENT_TYPE],
        "application/dash+xml"
    );
    let etag = manifest.headers()[header::ETAG]
        .to_str()
        .unwrap()
        .to_string();
    let manifest_body = manifest.text().await.unwrap();
    assert!(manifest_body.contains("<MPD"));

    let segment_url = format!("{base}/chunk-0-00001.m4s");
    let whole = client.get(&segment_url).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()[header::CONTENT_TYPE], "video/iso.segment");
    // An unversioned name may hold another upload's bytes after a delete: revalidated.
    assert_eq!(whole.headers()[header::CACHE_CONTROL], "public, no-cache");
    // The versioned name never changes: immutable. Another version is not found.
    let version = tritontube::library::videos::content_version(
        &web.meta.get_video("http").await.unwrap().value.unwrap(),
    );
    let versioned = client
        .get(format!("{base}/{version}/chunk-0-00001.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(versioned.status(), StatusCode::OK);
    assert!(
        versioned.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let other = client
        .get(format!("{base}/1{version}/chunk-0-00001.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let poster = client
        .get(format!("{base}/{version}/poster.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(poster.status(), StatusCode::OK);
    assert_eq!(poster.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert!(poster.bytes().await.unwrap().starts_with(&[0xFF, 0xD8]));
    let length: usize = whole.headers()[header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let segment = whole.bytes().await.unwrap();
    assert_eq!(segment.len(), length);

    // Byte ranges, twice: once read through, once from the cache.
    for _ in 0..2 {
        let part = client
            .get(&segment_url)
            .header(header::RANGE, "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            part.headers()[header::CONTENT_RANGE],
            format!("bytes 10-19/{length}").as_str()
        );
        assert_eq!(part.bytes().await.unwrap(), segment.slice(10..20));
    }
    let suffix = client
        .get(&segment_url)
        .header(header::RANGE, "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(suffix.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(suffix.bytes().await.unwrap(), segment.slice(length - 5..));
    let beyond = client
        .get(&segment_url)
        .header(header::RANGE, format!("bytes={length}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        beyond.headers()[header::CONTENT_RANGE],
        format!("bytes */{length}").as_str()
    );

    // Revalidation by ETag.
    let revalidated = client
        .get(format!("{base}/manifest.mpd"))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    // HEAD: the headers, no body.
    let head = client.head(&segment_url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()[header::CONTENT_LENGTH],
        length.to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());

    // Unknown ids and files, and traversal.
    for (path, expected) in [
        ("/content/http/nope.m4s", StatusCode::NOT_FOUND),
        ("/content/nobody/manifest.mpd", StatusCode::NOT_FOUND),
        ("/videos/nobody", StatusCode::NOT_FOUND),
        ("/content/..%2F..%2Fetc/passwd", StatusCode::BAD_REQUEST),
        (
            "/content/http/..%2F..%2F..%2Fetc%2Fpasswd",
            StatusCode::BAD_REQUEST,
        ),
        ("/content/http/.hidden", StatusCode::BAD_REQUEST),
    ] {
        let response = client
            .get(format!("{}{path}", web.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("root:"), "{path} leaked a file");
    }
    // Clients normalise `%2E%2E` away; sent raw it must still reach nothing outside.
    let normalised = client
        .get(format!("{}/content/%2E%2E/passwd", web.url))
        .send()
        .await
        .unwrap();
    assert!(normalised.status().is_client_error());
    let health = client
        .get(format!("{}/healthz", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_uploads_are_refused_and_store_nothing() {
    let nodes = three_nodes().await;
    let refs: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(
        &refs,
        WebOptions {
            max_upload_bytes: 2 * 1024 * 1024,
            ..WebOptions::default()
        },
    )
    .await;
    let client = http_client();
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "ok.mp4", 3, "160x120");
    let clip_bytes = std::fs::read(&clip).unwrap();

    // No file field at all.
    let form = reqwest::multipart::Form::new().text("other", "x");
    let response = client
        .post(format!("{}/upload", web.url))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("no file"));

    // Not a video.
    let response = upload_bytes(&web.url, "notes.mp4", b"just some text\n".repeat(100)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("not a video"));

    // Audio only is not a video either.
    let audio = videos.path().join("tone.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "2",
        ])
        .arg(&audio)
        .status()
        .unwrap();
    assert!(made.success());
    let response = upload_file(&web.url, &audio, "tone.mp4").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Too large.
    let response = upload_bytes(&web.url, "huge.mp4", vec![0u8; 3 * 1024 * 1024]).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Names that cannot be a video id.
    for name in [".mp4", "..mp4", "a\\b.mp4", "..", ".hidden.mp4"] {
        let response = upload_bytes(&web.url, name, clip_bytes.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name:?}");
    }

    // Nothing of any of that is stored or recorded.
    assert!(holdings(&refs).await.is_empty());
    assert!(web.meta.list_videos().await.unwrap().value.is_empty());
    let work_left: Vec<_> = std::fs::read_dir(web.work.path().join("uploads"))
        .unwrap()
        .collect();
    assert!(work_left.is_empty(), "temp files left: {work_left:?}");

    // A good upload, then the same id again: 409 and the first copy untouched.
    assert_eq!(
        upload_bytes(&web.url, "ok.mp4", clip_bytes.clone())
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let before = holdings(&refs).await;
    let response = upload_bytes(&web.url, "ok.mov", clip_bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(holdings(&refs).await, before);
    assert_eq!(web.meta.list_videos().await.unwrap().value.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_names_render_safely_and_their_links_work() {
    let (web, _dir) = start_web_local(WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "x.mp4", 2, "160x120");
    let id = "<script>alert(1)<script> \"quoted\" 'é' 動画";
    let response = upload_file(&web.url, &clip, &format!("{id}.mp4")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let index = video_ids(&web.url).await;
    assert!(!index.contains("<script>alert"), "{index}");
    assert!(
        index.contains("&lt;script&gt;alert(1)&lt;script&gt; &quot;quoted&quot; &#39;é&#39; 動画")
    );
    let link_start = index.find("href=\"/videos/").unwrap() + "href=\"".len();
    let link = &index[link_start..index[link_start..].find('"').unwrap() + link_start];
    let player = http_client()
        .get(format!("{}{link}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(player.status(), StatusCode::OK);
    let manifest_link = link.replace("/videos/", "/content/") + "/manifest.mpd";
    let manifest = http_client()
        .get(format!("{}{manifest_link}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn videos_are_listed_newest_first() {
    let (web, _dir) = start_web_local(WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "c.mp4", 2, "160x120");
    for name in ["first", "second", "third"] {
        let response = upload_file(&web.url, &clip, &format!("{name}.mp4")).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    let index = video_ids(&web.url).await;
    let at = |name: &str| index.find(&format!(">{name}<")).unwrap();
    assert!(
        at("third") < at("second") && at("second") < at("first"),
        "{index}"
    );
}

/// A viewer's whole journey in a real browser: headless Chromium uploads the MP4 through
/// the index page's form, lands back on the list, opens the player and plays the video.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_uploads_and_plays_the_video() {
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "run scripts/setup.sh first: it installs the browser test's npm packages"
    );
    let nodes = three_nodes().await;
    let refs: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(&refs, WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "browser.mp4", 8, "640x360");
    let uploaded = tokio::process::Command::new("node")
        .arg(browser_dir.join("upload.mjs"))
        .arg(&web.url)
        .arg(&clip)
        .args(["browser", "120000"])
        .output()
        .await
        .expect("node runs");
    assert!(
        uploaded.status.success(),
        "browser upload failed: {} {}",
        String::from_utf8_lossy(&uploaded.stdout),
        String::from_utf8_lossy(&uploaded.stderr)
    );
    let screenshot = std::env::var("TRITONTUBE_SCREENSHOT")
        .unwrap_or_else(|_| videos.path().join("player.png").display().to_string());
    let url = format!("{}/videos/browser", web.url);
    let output = tokio::process::Command::new("node")
        .arg(browser_dir.join("play.mjs"))
        .args([&url, "3", &screenshot, "90000"])
        .output()
        .await
        .expect("node runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "playback failed: {report} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert!(seen["currentTime"].as_f64().unwrap() > 3.0, "{seen}");
    assert!(seen["totalVideoFrames"].as_u64().unwrap() > 0, "{seen}");
    assert_eq!(seen["videoWidth"], 640, "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_abandoned_by_a_crash_is_cleaned_up_on_start() {
    let node = start_storage_node().await;
    let work = tempfile::tempdir().unwrap();
    let meta = tritontube::meta::MetaStore::sqlite(&work.path().join("metadata.db"))
        .await
        .unwrap();
    // What a web node killed mid-upload leaves: a processing claim and some files.
    meta.claim_video("ghost", chrono::Utc::now()).await.unwrap();
    node.client()
        .put(
            "ghost/chunk-0-00001.m4s",
            bytes::Bytes::from_static(b"half"),
            None,
        )
        .await
        .unwrap();
    let content = tritontube::web::ContentSpec::Ring {
        seed_nodes: vec![node.address()],
        spares: Vec::new(),
        virtual_nodes: 8,
        replicas: 1,
        admin_token: None,
    };
    let web = support::web::start_web(work, meta.clone(), content, WebOptions::default()).await;
    let mut answered = false;
    for _ in 0..100 {
        if http_client().get(&web.url).send().await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(answered);
    assert!(meta.get_video("ghost").await.unwrap().value.is_none());
    assert!(node.client().keys(false).await.unwrap().is_empty());
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "ghost.mp4", 2, "160x120");
    assert_eq!(
        upload_file(&web.url, &clip, "ghost.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_upload_is_given_up_and_leaves_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (web, dir) = start_web_local(WebOptions {
        upload_idle_timeout: std::time::Duration::from_secs(1),
        ..WebOptions::default()
    })
    .await;
    let address = web.url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let boundary = "tritontubeboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"stall.mp4\"\r\n\
Content-Type: video/mp4\r\n\r\n"
    );
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: {address}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
Content-Length: 1000000\r\n\r\n{head}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&[0u8; 1000]).await.unwrap();
    // Then nothing more: the node must answer by itself, not wait for ever.
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut answer))
        .await
        .expect("a stalled upload must be answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The claim is rolled back in the background; nothing stays.
    let mut gone = false;
    for _ in 0..100 {
        if web.meta.get_video("stall").await.unwrap().value.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the stalled upload's claim stayed");
    assert!(support::files_under(&dir).is_empty());
}
