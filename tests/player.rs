//! The player people expect, in real Chromium (tests/browser/player.mjs) at 390 px wide
//! and from the keyboard: quality menu, shortcuts, captions, storyboard previews on the
//! seek bar, remembered volume and position. Screenshots go to target/screenshots/.
//! Real storage nodes, SQLite, ffmpeg.

mod support;

use reqwest::StatusCode;
use support::web::{
    WebOptions, browser_script, http_client, make_video, run_browser, start_web_ring, upload_file,
};
use support::{StorageNode, start_storage_node};

const CAPTIONS: &str = "WEBVTT\n\n00:00.000 --> 00:09.000\nHello from the captions\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_player_has_a_quality_menu_shortcuts_captions_previews_and_memory() {
    let node = start_storage_node().await;
    let refs: Vec<&StorageNode> = vec![&node];
    let web = start_web_ring(&refs, WebOptions::default()).await;
    let videos = tempfile::tempdir().unwrap();
    // 480p: two renditions (480p, 360p) for the menu.
    let clip = make_video(videos.path(), "watch.mp4", 10, "854x480");
    assert_eq!(
        upload_file(&web.url, &clip, "watch.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
    let put = http_client()
        .put(format!("{}/api/videos/watch/captions/en", web.url))
        .body(CAPTIONS)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let seen = run_browser(
        browser_script("player.mjs")
            .arg(format!("{}/videos/watch", web.url))
            .arg(&shots)
            .arg("120000"),
        "the player test",
    )
    .await;
    // Script's controls replace the browser's, and nothing is wider than the phone.
    assert_eq!(seen["nativeControls"], false, "{seen}");
    assert!(seen["pageWidth"].as_u64().unwrap() <= 390, "{seen}");
    // Keyboard alone: Tab reaches the controls; k, →, m, c do what they say.
    assert_eq!(seen["reachedPlayByTab"], true, "{seen}");
    assert_eq!(seen["afterK"]["paused"], false, "{seen}");
    let seeked = seen["seekedBy"].as_f64().unwrap();
    assert!((4.0..6.0).contains(&seeked), "{seen}");
    assert_eq!(seen["afterM"]["muted"], true, "{seen}");
    assert_eq!(seen["afterC"]["captions"], "showing", "{seen}");
    assert_eq!(seen["pausedByK"], true, "{seen}");
    // The quality menu: Auto and each rendition by height; the keyboard pins 360p.
    assert_eq!(seen["menuOpen"], true, "{seen}");
    assert_eq!(
        seen["menuItems"],
        serde_json::json!(["Auto", "480p", "360p"]),
        "{seen}"
    );
    assert_eq!(seen["qualityButton"], "Quality: 360p", "{seen}");
    assert_eq!(seen["menuClosed"], true, "{seen}");
    // The storyboard tile under the pointer at 60 % of a 10 s video.
    let time = seen["preview"]["time"].as_f64().unwrap();
    assert!((5.0..7.0).contains(&time), "{seen}");
    assert!(
        seen["preview"]["image"]
            .as_str()
            .unwrap()
            .contains("storyboard-001.jpg"),
        "{seen}"
    );
    assert_eq!(seen["preview"]["position"], "-480px 0px", "{seen}");
    assert_eq!(seen["sheetAnswers"], serde_json::json!([200]), "{seen}");
    // Captions on screen.
    assert_eq!(seen["cueShown"], "Hello from the captions", "{seen}");
    // Volume and position remembered; the page offers to resume and does.
    assert_eq!(seen["volumeAfterReload"], 0.3, "{seen}");
    assert!(
        seen["resumeText"].as_str().unwrap().contains("0:06"),
        "{seen}"
    );
    assert!(seen["resumedAt"].as_f64().unwrap() >= 6.0, "{seen}");
    assert_eq!(seen["fullscreen"], "player-box", "{seen}");
    for shot in ["quality-menu.png", "seek-preview.png", "captions.png"] {
        let bytes = std::fs::read(shots.join(shot)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{shot}");
    }
}
