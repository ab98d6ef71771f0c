//! Caption tracks: PUT and DELETE /api/videos/{id}/captions/{lang} with the admin token,
//! WebVTT checked and bounded, stored on the ring, listed by the API and offered by the
//! player page; a video's delete takes its tracks. Real storage nodes, SQLite, ffmpeg.

mod support;

use reqwest::{StatusCode, header};
use serde_json::Value;
use support::web::{
    WebOptions, browser_script, holdings, http_client, make_video, run_browser, start_web_ring,
    upload_file,
};
use support::{StorageNode, start_storage_node};

const TOKEN: &str = "caption-secret";
const VTT: &str = "WEBVTT\n\n00:00.500 --> 00:03.000\nHello from the captions\n";

async fn put(url: &str, token: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut request = http_client()
        .put(url)
        .header(header::CONTENT_TYPE, "text/vtt")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn video(url: &str) -> Value {
    let text = http_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caption_tracks_are_checked_stored_listed_offered_and_deleted() {
    let nodes = [start_storage_node().await, start_storage_node().await];
    let refs: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(
        &refs,
        WebOptions {
            admin_token: Some(TOKEN.into()),
            ..WebOptions::default()
        },
    )
    .await;
    let url = &web.url;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "talk.mp4", 4, "320x240");
    assert_eq!(
        upload_file(url, &clip, "talk.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
    let en = format!("{url}/api/videos/talk/captions/en");

    // Refusals change nothing.
    assert_eq!(put(&en, None, VTT).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        put(&en, Some("wrong"), VTT).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = put(
        &format!("{url}/api/videos/talk/captions/english!"),
        Some(TOKEN),
        VTT,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = put(&en, Some(TOKEN), "not a caption file").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("WEBVTT"), "{body}");
    let huge = format!("{VTT}{}", "x".repeat(600 * 1024));
    assert_eq!(
        put(&en, Some(TOKEN), &huge).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        put(
            &format!("{url}/api/videos/nobody/captions/en"),
            Some(TOKEN),
            VTT
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let api = format!("{url}/api/videos/talk");
    assert_eq!(video(&api).await["captions"], serde_json::json!([]));
    let before = holdings(&refs).await;
    assert!(!before.keys().any(|k| k.contains("captions")), "{before:?}");

    // Stored, listed, served as text/vtt, offered by the player.
    let (status, listed) = put(&en, Some(TOKEN), VTT).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let shown = video(&api).await;
    assert_eq!(shown["captions"], listed);
    assert_eq!(shown["captions"][0]["lang"], "en");
    let track_url = shown["captions"][0]["url"].as_str().unwrap().to_string();
    let track = http_client()
        .get(format!("{url}{track_url}"))
        .send()
        .await
        .unwrap();
    assert_eq!(track.status(), StatusCode::OK);
    assert_eq!(track.headers()[header::CONTENT_TYPE], "text/vtt");
    assert_eq!(track.text().await.unwrap(), VTT);
    let page = http_client()
        .get(format!("{url}/videos/talk"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!(
            "<track kind=\"subtitles\" srclang=\"en\" label=\"en\" src=\"{track_url}\">"
        )),
        "{page}"
    );
    assert!(
        holdings(&refs)
            .await
            .keys()
            .any(|k| k.starts_with("talk/captions-en-"))
    );

    // Replaced: a new URL, the old file gone; a second language beside it.
    let replaced = VTT.replace("Hello", "Hi");
    let (status, listed) = put(&en, Some(TOKEN), &replaced).await;
    assert_eq!(status, StatusCode::OK);
    let new_url = listed[0]["url"].as_str().unwrap().to_string();
    assert_ne!(new_url, track_url);
    let (status, listed) = put(
        &format!("{url}/api/videos/talk/captions/pt-BR"),
        Some(TOKEN),
        VTT,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let langs: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["lang"].as_str().unwrap())
        .collect();
    assert_eq!(langs, ["en", "pt-BR"]);
    let caption_files = |held: &std::collections::BTreeMap<String, Vec<String>>| {
        held.keys()
            .filter(|k| k.contains("/captions-"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(caption_files(&holdings(&refs).await).len(), 2);

    // DELETE of a caption: gone from the list and the ring.
    let delete = |lang: &str, token: Option<&str>| {
        let mut request = http_client().delete(format!("{url}/api/videos/talk/captions/{lang}"));
        if let Some(token) = token {
            request = request.bearer_auth(token.to_string());
        }
        request.send()
    };
    assert_eq!(
        delete("en", None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        delete("en", Some(TOKEN)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        delete("en", Some(TOKEN)).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let shown = video(&api).await;
    assert_eq!(shown["captions"].as_array().unwrap().len(), 1, "{shown}");
    let files = caption_files(&holdings(&refs).await);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("talk/captions-pt-BR-"), "{files:?}");

    // DELETE of the video: its tracks go with it.
    let deleted = http_client()
        .delete(&api)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let held = holdings(&refs).await;
    assert!(!held.keys().any(|k| k.starts_with("talk/")), "{held:?}");
}

/// The upload page's caption chooser in Chromium: a video and a .vtt with a language are
/// chosen together; the page asks for the admin token, the track is stored on the ring,
/// listed by the API and offered by the player page as a text track with our cue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_uploads_a_video_with_captions_from_the_upload_page() {
    let nodes = [start_storage_node().await];
    let refs: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(
        &refs,
        WebOptions {
            admin_token: Some(TOKEN.into()),
            ..WebOptions::default()
        },
    )
    .await;
    let files = tempfile::tempdir().unwrap();
    let clip = make_video(files.path(), "lecture.mp4", 3, "320x240");
    let vtt = files.path().join("lecture.fr.vtt");
    std::fs::write(&vtt, VTT).unwrap();
    let seen = run_browser(
        browser_script("upload-captions.mjs")
            .arg(&web.url)
            .arg(&clip)
            .arg(&vtt)
            .args(["lecture", "fr", TOKEN, "180000"]),
        "the upload with captions",
    )
    .await;
    // The page asked for the token once and PUT the track under the chosen language.
    assert_eq!(seen["prompts"].as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(
        seen["captionPuts"],
        serde_json::json!([{"url": "/api/videos/lecture/captions/fr", "status": 200}]),
        "{seen}"
    );
    assert_eq!(seen["captionsStatus"], "Captions (fr) added.", "{seen}");
    // Listed by the API as the browser saw it, and by the API now.
    let listed = video(&format!("{}/api/videos/lecture", web.url)).await;
    assert_eq!(seen["api"]["captions"], listed["captions"], "{seen}");
    let captions = listed["captions"].as_array().unwrap();
    assert_eq!(captions.len(), 1, "{listed}");
    assert_eq!(captions[0]["lang"], "fr");
    let track_url = captions[0]["url"].as_str().unwrap();
    // Stored on the ring, byte for byte.
    let track = http_client()
        .get(format!("{}{track_url}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(track.status(), StatusCode::OK);
    assert_eq!(track.text().await.unwrap(), VTT);
    let held = holdings(&refs).await;
    assert!(
        held.keys().any(|k| k.starts_with("lecture/captions-fr-")),
        "{held:?}"
    );
    // Offered by the player page as a subtitles track whose cue Chromium loaded.
    assert_eq!(
        seen["tracks"],
        serde_json::json!([{"kind": "subtitles", "srclang": "fr", "src": track_url}]),
        "{seen}"
    );
    assert_eq!(seen["ccPressed"], "true", "{seen}");
    assert_eq!(
        seen["textTracks"],
        serde_json::json!([{"kind": "subtitles", "language": "fr", "cues": ["Hello from the captions"]}]),
        "{seen}"
    );
}
