//! Publish first, perfect later: an upload plays at its lowest rendition while the higher
//! ones are still encoded, with a manifest listing only what is stored, and the full
//! manifest (under a new URL) once the ladder is done. Real storage nodes, real SQLite,
//! real ffmpeg.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;
use support::start_storage_node;
use support::web::{WebOptions, decoded_frames, http_client, make_video, start_web_ring};

async fn get(url: &str) -> (StatusCode, String) {
    let response = http_client()
        .get(url)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn get_json(url: &str) -> Value {
    let (status, body) = get(url).await;
    assert_eq!(status, StatusCode::OK, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn video_representations(manifest: &str) -> usize {
    let start = manifest.find("contentType=\"video\"").expect("a video set");
    let end = start + manifest[start..].find("</AdaptationSet>").unwrap();
    manifest[start..end].matches("<Representation ").count()
}

fn heights(video: &Value) -> Vec<u64> {
    video["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["height"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_video_plays_at_its_lowest_rendition_before_the_ladder_is_done() {
    let node = start_storage_node().await;
    let web = start_web_ring(&[&node], WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "early.mp4", 6, "1280x720");
    let part = reqwest::multipart::Part::bytes(std::fs::read(&clip).unwrap())
        .file_name("early.mp4")
        .mime_str("video/mp4")
        .unwrap();
    let response = http_client()
        .post(format!("{}/upload", web.url))
        .header(header::ACCEPT, "application/json")
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // Watch the video's state until it is playable.
    let api = format!("{}/api/videos/early", web.url);
    let mut states = Vec::new();
    let playable = loop {
        let (status, body) = get(&api).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let video: Value = serde_json::from_str(&body).unwrap();
        let state = video["state"].as_str().unwrap().to_string();
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        match state.as_str() {
            "playable" => break video,
            "processing" => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("the video went {other} without being playable first: {states:?}"),
        }
    };
    // The upload's own status says so too, with the rendition stored.
    let upload = get_json(&format!("{}/api/uploads/early", web.url)).await;
    let playable_manifest_url = playable["manifest_url"].as_str().unwrap().to_string();
    let (status, manifest) = get(&format!("{}{playable_manifest_url}", web.url)).await;
    assert_eq!(status, StatusCode::OK);
    // The final URL is not served before the video is ready: a cache would keep the
    // partial manifest under it.
    let final_url = playable_manifest_url.replace("-p1/", "/");
    assert_ne!(final_url, playable_manifest_url);
    let (final_status, _) = get(&format!("{}{final_url}", web.url)).await;
    let still = get_json(&api).await;

    assert_eq!(heights(&playable), [360], "{playable}");
    assert!(
        ["playable", "ready"].contains(&upload["phase"].as_str().unwrap()),
        "{upload}"
    );
    assert!(!heights(&upload).is_empty(), "{upload}");
    assert_eq!(video_representations(&manifest), 1, "{manifest}");
    assert!(manifest.contains("contentType=\"audio\""), "{manifest}");
    if still["state"] == "playable" {
        assert_eq!(final_status, StatusCode::NOT_FOUND);
    }
    // The player page offers it, and says more qualities are coming.
    let (_, page) = get(&format!("{}/videos/early", web.url)).await;
    assert!(page.contains(&playable_manifest_url), "{page}");

    // The stream behind the playable manifest decodes whole.
    let url = format!("{}{playable_manifest_url}", web.url);
    let frames = tokio::task::spawn_blocking(move || decoded_frames(&url))
        .await
        .unwrap();
    assert!(frames >= 140, "{frames} frames");

    // Then the ladder is done: a new manifest URL lists every rendition.
    let ready = loop {
        let video = get_json(&api).await;
        match video["state"].as_str().unwrap() {
            "ready" => break video,
            "playable" => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("the video went {other}"),
        }
    };
    assert_eq!(heights(&ready), [720, 480, 360], "{ready}");
    let ready_url = ready["manifest_url"].as_str().unwrap();
    assert_eq!(ready_url, final_url);
    let (_, full) = get(&format!("{}{ready_url}", web.url)).await;
    assert_eq!(video_representations(&full), 3, "{full}");
    // A viewer who started while it was playable keeps being served.
    let (status, _) = get(&format!("{}{playable_manifest_url}", web.url)).await;
    assert_eq!(status, StatusCode::OK);
    let url = format!("{}{ready_url}", web.url);
    let frames = tokio::task::spawn_blocking(move || decoded_frames(&url))
        .await
        .unwrap();
    assert!(frames >= 140, "{frames} frames");
}

/// The seek-bar storyboard: a WebVTT file whose cues (one per 2 s here) point into JPEG
/// sprite sheets of 5×5 tiles, stored on the ring beside the renditions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_gets_a_storyboard_of_seek_previews() {
    let node = start_storage_node().await;
    let web = start_web_ring(&[&node], WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "board.mp4", 10, "320x240");
    let response = support::web::upload_file(&web.url, &clip, "board.mp4").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let video = get_json(&format!("{}/api/videos/board", web.url)).await;
    let url = video["storyboard_url"].as_str().expect("a storyboard URL");
    assert!(url.ends_with("/storyboard.vtt"), "{url}");
    let (status, cues) = get(&format!("{}{url}", web.url)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cues.starts_with("WEBVTT\n"), "{cues}");
    assert_eq!(cues.matches(" --> ").count(), 5, "{cues}");
    assert!(
        cues.contains("00:00:00.000 --> 00:00:02.000\nstoryboard-001.jpg#xywh=0,0,160,120\n"),
        "{cues}"
    );
    assert!(
        cues.contains("00:00:08.000 --> 00:00:10.000\nstoryboard-001.jpg#xywh=640,0,160,120\n"),
        "{cues}"
    );
    // The sheet is a JPEG of 5×5 tiles, served beside the cue file.
    let sheet = format!(
        "{}{}",
        web.url,
        url.replace("storyboard.vtt", "storyboard-001.jpg")
    );
    let output = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0"])
        .arg(&sheet)
        .output()
        .await
        .expect("ffprobe runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "mjpeg,800,600",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
