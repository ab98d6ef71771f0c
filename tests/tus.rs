//! Resumable uploads (tus 1.0.0 at /api/tus/): the protocol's answers, refusals, expiry
//! and the disk bound with a plain HTTP client, and a real tus client (tus-js-client in
//! Chromium) whose connection is cut at half and that resumes from the server's offset.
//! Real storage nodes, real SQLite, real ffmpeg.

mod support;

use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::web::{
    WebOptions, browser_script, http_client, make_video, run_browser, start_web_local,
    start_web_ring,
};
use support::{StorageNode, start_storage_node};

const TUS: (&str, &str) = ("Tus-Resumable", "1.0.0");

fn metadata(filename: &str) -> String {
    format!(
        "filename {},filetype {}",
        base64::engine::general_purpose::STANDARD.encode(filename),
        base64::engine::general_purpose::STANDARD.encode("video/mp4")
    )
}

async fn create(url: &str, filename: &str, length: u64) -> reqwest::Response {
    http_client()
        .post(format!("{url}/api/tus/"))
        .header(TUS.0, TUS.1)
        .header("Upload-Length", length.to_string())
        .header("Upload-Metadata", metadata(filename))
        .send()
        .await
        .unwrap()
}

async fn head(url: &str) -> reqwest::Response {
    http_client()
        .head(url)
        .header(TUS.0, TUS.1)
        .send()
        .await
        .unwrap()
}

async fn patch(url: &str, offset: u64, data: Vec<u8>) -> reqwest::Response {
    http_client()
        .patch(url)
        .header(TUS.0, TUS.1)
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(data)
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {response:?}"))
        .to_str()
        .unwrap()
        .to_string()
}

async fn get_json(url: &str) -> Value {
    let body = http_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

async fn upload_phase(url: &str, id: &str) -> Value {
    for _ in 0..2400 {
        let status = get_json(&format!("{url}/api/uploads/{id}")).await;
        if status["phase"] == "ready" || status["phase"] == "failed" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the upload of {id} never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tus_creation_offsets_appends_and_processes_like_a_form_upload() {
    let (web, _dir) = start_web_local(WebOptions::default()).await;
    let url = &web.url;

    // What the server supports.
    let options = http_client()
        .request(Method::OPTIONS, format!("{url}/api/tus/"))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&options, "tus-version"), "1.0.0");
    assert_eq!(
        header(&options, "tus-extension"),
        "creation,termination,expiration"
    );
    assert_eq!(
        header(&options, "tus-max-size"),
        (64 * 1024 * 1024).to_string()
    );

    // Refusals at creation change nothing.
    let no_version = http_client()
        .post(format!("{url}/api/tus/"))
        .header("Upload-Length", "10")
        .header("Upload-Metadata", metadata("a.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(header(&no_version, "tus-version"), "1.0.0");
    let no_name = http_client()
        .post(format!("{url}/api/tus/"))
        .header(TUS.0, TUS.1)
        .header("Upload-Length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(no_name.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        create(url, ".hidden.mp4", 10).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        create(url, "big.mp4", 65 * 1024 * 1024).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        create(url, "empty.mp4", 0).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert!(web.meta.list_videos().await.unwrap().value.is_empty());

    let videos = tempfile::tempdir().unwrap();
    let clip = std::fs::read(make_video(videos.path(), "resumed.mp4", 6, "320x240")).unwrap();
    let length = clip.len() as u64;
    let created = create(url, "resumed.mp4", length).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(header(&created, "tus-resumable"), "1.0.0");
    assert!(!header(&created, "upload-expires").is_empty());
    let location = header(&created, "location");
    assert!(location.starts_with("/api/tus/"), "{location}");
    let upload = format!("{url}{location}");
    let at_start = head(&upload).await;
    assert_eq!(at_start.status(), StatusCode::OK);
    assert_eq!(header(&at_start, "upload-offset"), "0");
    assert_eq!(header(&at_start, "upload-length"), length.to_string());
    assert_eq!(header(&at_start, "cache-control"), "no-store");

    // Wrong content type, wrong offset, no version: refused, nothing written.
    let wrong_type = http_client()
        .patch(&upload)
        .header(TUS.0, TUS.1)
        .header("Upload-Offset", "0")
        .header("Content-Type", "video/mp4")
        .body(clip.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let wrong_offset = patch(&upload, 5, clip[..100].to_vec()).await;
    assert_eq!(wrong_offset.status(), StatusCode::CONFLICT);
    let unversioned = http_client()
        .patch(&upload)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(clip.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unversioned.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(header(&head(&upload).await, "upload-offset"), "0");

    // Half, then the rest from the offset the server reports.
    let half = clip.len() / 2;
    let first = patch(&upload, 0, clip[..half].to_vec()).await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&first, "upload-offset"), half.to_string());
    let progress = get_json(&format!("{url}/api/uploads/resumed")).await;
    assert_eq!(progress["phase"], "receiving", "{progress}");
    assert_eq!(progress["received_bytes"], half as u64, "{progress}");
    let offset: usize = header(&head(&upload).await, "upload-offset")
        .parse()
        .unwrap();
    assert_eq!(offset, half);
    // More than the declared length is refused.
    let mut too_much = clip[offset..].to_vec();
    too_much.push(0);
    assert_eq!(
        patch(&upload, offset as u64, too_much).await.status(),
        StatusCode::BAD_REQUEST
    );
    let offset: usize = header(&head(&upload).await, "upload-offset")
        .parse()
        .unwrap();
    let last = patch(&upload, offset as u64, clip[offset..].to_vec()).await;
    assert_eq!(last.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&last, "upload-offset"), length.to_string());
    let ended = upload_phase(url, "resumed").await;
    assert_eq!(ended["phase"], "ready", "{ended}");
    assert_eq!(ended["received_bytes"], length, "{ended}");
    // A finished upload is no longer a partial one.
    assert_eq!(head(&upload).await.status(), StatusCode::NOT_FOUND);
    // Same id rules as a form upload: the id is taken now.
    assert_eq!(
        create(url, "resumed.mp4", length).await.status(),
        StatusCode::CONFLICT
    );

    // Termination: the partial goes.
    let doomed = format!(
        "{url}{}",
        header(&create(url, "doomed.mp4", 100).await, "location")
    );
    assert_eq!(
        patch(&doomed, 0, vec![1; 10]).await.status(),
        StatusCode::NO_CONTENT
    );
    let terminated = http_client()
        .delete(&doomed)
        .header(TUS.0, TUS.1)
        .send()
        .await
        .unwrap();
    assert_eq!(terminated.status(), StatusCode::NO_CONTENT);
    assert_eq!(head(&doomed).await.status(), StatusCode::NOT_FOUND);

    // A name that is no upload never reaches the file system.
    assert_eq!(
        head(&format!("{url}/api/tus/..%2F..%2Fetc")).await.status(),
        StatusCode::NOT_FOUND
    );

    // Not a video: processed like a form upload, so it fails with the reason.
    let junk = b"not a video\n".repeat(40);
    let junk_url = format!(
        "{url}{}",
        header(
            &create(url, "junk.mp4", junk.len() as u64).await,
            "location"
        )
    );
    assert_eq!(
        patch(&junk_url, 0, junk).await.status(),
        StatusCode::NO_CONTENT
    );
    let failed = upload_phase(url, "junk").await;
    assert_eq!(failed["phase"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("not a video"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_uploads_expire_and_count_against_their_bound() {
    let (web, dir) = start_web_local(WebOptions {
        partial_upload_expiry: Duration::from_secs(1),
        partial_upload_bytes: 1000,
        ..WebOptions::default()
    })
    .await;
    let url = &web.url;
    let first = create(url, "one.mp4", 600).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = format!("{url}{}", header(&first, "location"));
    assert_eq!(
        patch(&first, 0, vec![7; 100]).await.status(),
        StatusCode::NO_CONTENT
    );
    // 600 + 600 > 1000: refused while the first is live.
    let over = create(url, "two.mp4", 600).await;
    assert_eq!(over.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(
        create(url, "small.mp4", 300).await.status(),
        StatusCode::CREATED
    );

    // A second and a half later both have expired.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(head(&first).await.status(), StatusCode::GONE);
    // The space is free again, and the expired partials' files are gone.
    assert_eq!(
        create(url, "two.mp4", 600).await.status(),
        StatusCode::CREATED
    );
    let tus_dir = web.work.path().join("uploads").join("tus");
    let left: Vec<String> = std::fs::read_dir(&tus_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    drop(dir);
}

/// tus-js-client in Chromium uploads through a proxy that cuts the connection once half
/// of the file has gone through; the page resumes by itself from the server's offset,
/// the video gets to ready and plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_resumes_an_upload_cut_at_half_from_the_servers_offset() {
    let node = start_storage_node().await;
    let refs: Vec<&StorageNode> = vec![&node];
    let web = start_web_ring(&refs, WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "cut.mp4", 8, "320x240");
    let size = std::fs::metadata(&clip).unwrap().len();
    let seen = run_browser(
        browser_script("tus.mjs")
            .arg(&web.url)
            .arg(&clip)
            .args(["cut", "180000"]),
        "the resumed upload",
    )
    .await;
    let cut_at = seen["cutAt"].as_u64().unwrap();
    assert_eq!(cut_at, size / 2, "{seen}");
    // The server kept what arrived before the cut, and the client went on from there.
    assert_eq!(seen["headOffset"].as_u64(), Some(cut_at), "{seen}");
    let patches: Vec<u64> = seen["patchOffsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap())
        .collect();
    assert_eq!(patches, [0, cut_at], "{seen}");
    // The resumed PATCH sent exactly the second half; the bytes sent twice (PATCH bodies
    // the proxy got from the browser, less the file) are at most what was in flight when
    // the connection broke, never the first half again.
    assert_eq!(
        seen["bytesAfterResume"].as_u64(),
        Some(size - cut_at),
        "{seen}"
    );
    let resent = seen["resentBytes"].as_u64().unwrap();
    assert!(resent < size / 4, "{seen}");
    assert!(seen["currentTime"].as_f64().unwrap() > 1.0, "{seen}");
    let video = web.meta.get_video("cut").await.unwrap().value.unwrap();
    assert_eq!(video.details.unwrap().source_bytes, size);
}

/// tus-js-client in Chromium: the connection is cut at half and every tus request is
/// refused until the page is loaded again; the reloaded page names the unfinished upload,
/// the same file is chosen again and the upload goes on from the server's offset (HEAD),
/// sending only the rest and creating no new upload; the video gets to ready and plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_resumes_an_upload_after_a_page_reload_from_the_servers_offset() {
    let node = start_storage_node().await;
    let refs: Vec<&StorageNode> = vec![&node];
    let web = start_web_ring(&refs, WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "reloaded.mp4", 4, "320x240");
    let size = std::fs::metadata(&clip).unwrap().len();
    let seen = run_browser(
        browser_script("tus.mjs")
            .arg(&web.url)
            .arg(&clip)
            .args(["reloaded", "180000", "reload"]),
        "the upload resumed after a reload",
    )
    .await;
    let cut_at = seen["cutAt"].as_u64().unwrap();
    assert_eq!(cut_at, size / 2, "{seen}");
    assert_eq!(
        seen["patchOffsetsBeforeReload"],
        serde_json::json!([0]),
        "{seen}"
    );
    assert!(
        seen["resumeNote"]
            .as_str()
            .unwrap()
            .contains("reloaded.mp4"),
        "{seen}"
    );
    // After the reload: the server's offset asked for, one PATCH from there with only
    // the rest, and the upload created once in all.
    assert_eq!(seen["headOffset"].as_u64(), Some(cut_at), "{seen}");
    assert_eq!(seen["patchOffsets"], serde_json::json!([cut_at]), "{seen}");
    assert_eq!(
        seen["bytesAfterResume"].as_u64(),
        Some(size - cut_at),
        "{seen}"
    );
    assert_eq!(seen["creations"], 1, "{seen}");
    assert!(seen["resentBytes"].as_u64().unwrap() < size / 4, "{seen}");
    assert_eq!(seen["storedForResuming"], 0, "{seen}");
    assert!(seen["currentTime"].as_f64().unwrap() > 1.0, "{seen}");
    let video = web.meta.get_video("reloaded").await.unwrap().value.unwrap();
    assert_eq!(video.details.unwrap().source_bytes, size);
}
