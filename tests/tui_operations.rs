//! The console's actions run end to end: the real `tritontube tui` in a tmux pane, keys
//! pressed as an operator presses them, and the effect checked on the real cluster (real
//! storage nodes, a real web node on SQLite, a real upload transcoded by ffmpeg) — not
//! the command the console sends. And the console keeps drawing and answering keys while
//! the web node is frozen with SIGSTOP.

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::tmux::{PATIENCE, Tmux};
use support::web::{
    WebOptions, WebProcess, free_port, holdings, http_client, make_video, ring_nodes,
    start_web_ring, upload_file,
};
use support::{
    StorageNode, files_under, pseudo_random_bytes, ring_of, start_storage_node, start_storage_nodes,
};
use tritontube::admin_cli::connect;
use tritontube::meta::{MetaStore, VideoDetails};
use tritontube::proto::admin::{
    ClusterStatusRequest, ListWorkersRequest, ListWorkersResponse, PaceReply,
};

/// Starts the console in `tmux` against `admin` and waits until it shows the cluster.
async fn open_console(tmux: &Tmux, admin: &str, log: &std::path::Path, nodes: &[String]) {
    tmux.run_console(&format!(
        "{admin} --log-file {}",
        log.join("console.log").display()
    ))
    .await;
    tmux.wait_for("the console to show the cluster", |s| {
        s.contains("● up") && nodes.iter().all(|n| s.contains(n.as_str()))
    })
    .await;
}

/// The clock in the console's top-right corner (`HH:MM:SS`).
fn clock(screen: &str) -> Option<String> {
    let first = screen.lines().next()?;
    let last = first.split_whitespace().last()?;
    let b = last.as_bytes();
    (b.len() == 8 && b[2] == b':' && b[5] == b':').then(|| last.to_string())
}

/// Sends SIGCONT to a process frozen with SIGSTOP when dropped, so a failing test never
/// leaves it frozen.
struct Frozen(u32);

impl Frozen {
    fn freeze(pid: u32) -> Frozen {
        signal("-STOP", pid);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(signal: &str, pid: u32) {
    let sent = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill {signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_keeps_drawing_and_answering_keys_while_the_web_node_is_frozen() {
    assert!(
        Tmux::available(),
        "tmux is not installed: run scripts/setup.sh (Debian package tmux)"
    );
    let nodes = start_storage_nodes(2).await;
    let addresses: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    let work = tempfile::tempdir().unwrap();
    let mut web = WebProcess::spawn(
        &work.path().join("meta.db"),
        &addresses,
        free_port(),
        free_port(),
        &[],
    )
    .await;
    let tmux = Tmux::start("frozen", 100, 30);
    open_console(&tmux, &web.admin, work.path(), &addresses).await;

    let frozen = Frozen::freeze(web.child.id());
    // The status poll times out: the banner and the title say the admin does not answer.
    let screen = tmux
        .wait_for("the frozen web node to be reported", |s| {
            s.contains("● down") && s.contains("unreachable") && s.contains("stale")
        })
        .await;
    eprintln!("with the web node frozen:\n{screen}");
    assert!(
        screen.contains(&format!("admin {} unreachable", web.admin)),
        "{screen}"
    );
    // The clock keeps ticking while every call to the web node hangs.
    let before = clock(&screen).expect("a clock on screen");
    for _ in 0..2 {
        let seen = clock(&tmux.screen()).unwrap_or_default();
        tmux.wait_for("the clock to advance", |s| {
            clock(s).is_some_and(|c| c != seen)
        })
        .await;
    }
    let after = clock(&tmux.screen()).expect("a clock on screen");
    assert_ne!(before, after);
    // Keys are answered: the selection moves, the help opens and closes.
    tmux.keys(&["Down"]);
    tmux.wait_for("the selection to move to the second node", |s| {
        s.contains(&format!("▶ ● {}", addresses_sorted(&addresses)[1]))
    })
    .await;
    tmux.keys(&["?"]);
    tmux.wait_for("the help", |s| s.contains("quit from anywhere"))
        .await;
    tmux.keys(&["?"]);
    tmux.wait_for("the help to close", |s| !s.contains("quit from anywhere"))
        .await;
    let still = tmux.screen();
    assert!(still.contains("● down"), "still frozen:\n{still}");

    // Thawed, the web node answers again and the console says so by itself.
    drop(frozen);
    tmux.wait_for("the web node to be back", |s| {
        s.contains("● up") && !s.contains("✖ admin") && s.contains("is back")
    })
    .await;
    tmux.keys(&["q"]);
    web.kill();
}

fn addresses_sorted(addresses: &[String]) -> Vec<String> {
    let mut sorted = addresses.to_vec();
    sorted.sort();
    sorted
}

async fn video_state(url: &str, id: &str) -> Option<String> {
    let response = http_client()
        .get(format!("{url}/api/videos/{id}"))
        .send()
        .await
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
    json["state"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consoles_repair_and_delete_act_on_the_real_cluster() {
    assert!(
        Tmux::available(),
        "tmux is not installed: run scripts/setup.sh (Debian package tmux)"
    );
    let nodes = start_storage_nodes(3).await;
    let refs: Vec<&StorageNode> = nodes.iter().collect();
    let addresses: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    let options = WebOptions {
        replicas: 2,
        ..WebOptions::default()
    };
    let web = start_web_ring(&refs, options).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "clip.mp4", 2, "320x240");
    let response = upload_file(&web.url, &clip, "clip.mp4").await;
    assert_eq!(response.status().as_u16(), 303, "the upload is taken");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match video_state(&web.url, "clip").await.as_deref() {
            Some("ready") => break,
            Some("failed") => panic!("the upload failed"),
            _ => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = holdings(&refs).await;
    assert!(held.keys().all(|k| k.starts_with("clip/")), "{held:?}");
    assert!(held.values().all(|h| h.len() == 2), "two copies: {held:?}");

    // A copy of the manifest is lost on one of its holders.
    let manifest = "clip/manifest.mpd";
    let holder = &held[manifest][0];
    let node = nodes.iter().find(|n| n.address() == *holder).unwrap();
    let good = node.client().get(manifest).await.unwrap().expect("a copy");
    node.client().delete(manifest).await.unwrap();
    assert!(node.client().get(manifest).await.unwrap().is_none());

    let log = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("repair-delete", 120, 40);
    open_console(&tmux, &web.admin, log.path(), &addresses).await;

    // R shows the plan (the lost copy), y starts the repair, and its outcome is reported.
    tmux.keys(&["R"]);
    let screen = tmux
        .wait_for("the repair plan", |s| {
            s.contains("Repair the storage?") && s.contains("missing copies to restore:")
        })
        .await;
    eprintln!("the repair confirmation:\n{screen}");
    assert!(
        screen.contains("missing copies to restore:  1 files"),
        "{screen}"
    );
    tmux.keys(&["y"]);
    let screen = tmux
        .wait_for("the repair's outcome", |s| s.contains("(1 restored,"))
        .await;
    eprintln!("after the repair:\n{screen}");
    let restored = node.client().get(manifest).await.unwrap();
    assert_eq!(restored.as_ref(), Some(&good), "the copy is back, whole");

    // v lists the videos; / narrows them; x and y delete the selected one.
    tmux.keys(&["v"]);
    tmux.wait_for("the videos", |s| {
        s.contains("Videos (1)") && s.contains("ready")
    })
    .await;
    tmux.keys(&["/"]);
    tmux.type_text("CLI");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the filter kept", |s| s.contains("Videos (1) · /CLI "))
        .await;
    tmux.keys(&["x"]);
    tmux.wait_for("the delete confirmation", |s| {
        s.contains("Delete video clip?")
    })
    .await;
    tmux.keys(&["y"]);
    // Reported on the message line under the view, and the list fetched again.
    let screen = tmux
        .wait_for("the delete to be reported", |s| {
            s.contains("deleted video clip (") && s.contains("no videos")
        })
        .await;
    eprintln!("after the delete:\n{screen}");

    // Gone from the metadata and from every node's disk.
    let record = web.meta.get_video("clip").await.unwrap();
    assert!(record.value.is_none(), "still in the metadata");
    assert!(holdings(&refs).await.is_empty(), "still on the nodes");
    for node in &nodes {
        let left: Vec<String> = files_under(&node.dir)
            .into_iter()
            .filter(|p| p.starts_with("clip"))
            .collect();
        assert!(left.is_empty(), "{} keeps {left:?}", node.address());
    }
    tmux.keys(&["Escape"]);
    // A key right after Esc would read as Alt+key: wait for the view to close first.
    tmux.wait_for("the videos view to close", |s| !s.contains("no videos"))
        .await;
    tmux.keys(&["q"]);
}

async fn pace(admin: &str) -> PaceReply {
    connect(admin, None)
        .unwrap()
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .pace
        .expect("the pace is reported")
}

async fn workers(admin: &str) -> ListWorkersResponse {
    connect(admin, None)
        .unwrap()
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The console's message line: the one above the help bar.
fn message_line(screen: &str) -> &str {
    let lines: Vec<&str> = screen.lines().collect();
    let help = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .unwrap_or(0);
    lines.get(help.saturating_sub(1)).copied().unwrap_or("")
}

/// Presses `key` and waits until the web node's status reports `expected`.
async fn press_for_pace(
    tmux: &Tmux,
    admin: &str,
    key: &str,
    screen_text: &str,
    expected: (u64, bool),
) {
    tmux.keys(&[key]);
    // The message line, which shows the web node's answer: the migration panel's pace
    // line can still show a status polled before the key.
    tmux.wait_for(screen_text, |s| message_line(s).contains(screen_text))
        .await;
    let now = pace(admin).await;
    assert_eq!((now.mbps, now.paused), expected, "after {key}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consoles_pace_and_cancel_act_on_a_running_change() {
    assert!(
        Tmux::available(),
        "tmux is not installed: run scripts/setup.sh (Debian package tmux)"
    );
    let a = start_storage_node().await;
    let b = start_storage_node().await;
    let newcomer = start_storage_node().await;
    let two = vec![a.address(), b.address()];
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("meta.db");
    {
        let meta = MetaStore::sqlite(&db).await.unwrap();
        meta.claim_video("paced", chrono::Utc::now()).await.unwrap();
        meta.finish_video("paced", &VideoDetails::default())
            .await
            .unwrap();
    }
    let ring = ring_of(&two, 1);
    let count = 240;
    for i in 0..count {
        let key = format!("paced/chunk-0-{i:05}.m4s");
        let node = if ring.owners(&key)[0] == a.address() {
            &a
        } else {
            &b
        };
        let data = Bytes::from(pseudo_random_bytes(100_000, i as u64));
        node.client().put(&key, data, None).await.unwrap();
    }
    let before = holdings(&[&a, &b]).await;
    assert_eq!(before.len(), count);
    // 24 MB at 1 MB/s: the change stays open while the keys are pressed.
    let mut web = WebProcess::spawn(
        &db,
        &two,
        free_port(),
        free_port(),
        &["--replicas", "1", "--move-mbps", "1"],
    )
    .await;
    let log = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("pace-cancel", 120, 40);
    open_console(&tmux, &web.admin, log.path(), &two).await;

    tmux.keys(&["a"]);
    tmux.wait_for("the add prompt", |s| s.contains("Add a storage node"))
        .await;
    tmux.type_text(&newcomer.address());
    tmux.keys(&["Enter"]);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let listed = workers(&web.admin).await;
        let moving = listed
            .workers
            .iter()
            .any(|w| w.kind == "ring change" && w.state == "running" && w.files_done > 0);
        if moving {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never moved: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tmux.wait_for("the running change", |s| s.contains("running add"))
        .await;

    // p pauses, + and - step the pace, p resumes: each seen in the web node's status.
    press_for_pace(&tmux, &web.admin, "p", "moves PAUSED", (1, true)).await;
    press_for_pace(
        &tmux,
        &web.admin,
        "+",
        "pace 2 MB/s when resumed",
        (2, true),
    )
    .await;
    press_for_pace(
        &tmux,
        &web.admin,
        "-",
        "pace 1 MB/s when resumed",
        (1, true),
    )
    .await;
    press_for_pace(&tmux, &web.admin, "p", "moves at pace 1 MB/s", (1, false)).await;
    let listed = workers(&web.admin).await;
    assert!(
        listed.journaled.is_some(),
        "the change ended before the cancel: {listed:?}"
    );

    // x asks, y cancels: the change is rolled back and leaves the journal.
    tmux.keys(&["x"]);
    tmux.wait_for("the cancel confirmation", |s| {
        s.contains(&format!("Cancel add {}?", newcomer.address()))
    })
    .await;
    tmux.keys(&["y"]);
    let screen = tmux
        .wait_for("the cancel to be reported", |s| {
            s.contains("every file goes back where it was")
        })
        .await;
    eprintln!("after the cancel:\n{screen}");
    // The roll-back copies back at the pace; lift it from the console.
    tmux.keys(&["+"]);
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    loop {
        let listed = workers(&web.admin).await;
        if listed.journaled.is_none() {
            let forward = listed
                .workers
                .iter()
                .find(|w| w.description == format!("add {}", newcomer.address()))
                .expect("the forward worker");
            assert_eq!(forward.state, "interrupted", "{forward:?}");
            assert!(
                forward.outcome.contains("cancelled by the operator"),
                "{forward:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the roll-back never finished: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ring_nodes(&web.admin).await, two.iter().cloned().collect());
    let after = holdings(&[&a, &b]).await;
    let moved: Vec<_> = before
        .iter()
        .filter(|(key, holders)| after.get(*key) != Some(holders))
        .map(|(key, holders)| (key, holders, after.get(key)))
        .collect();
    assert!(moved.is_empty(), "not back where they were: {moved:?}");
    assert_eq!(after.len(), before.len());
    assert!(
        newcomer.client().keys(false).await.unwrap().is_empty(),
        "files left on the cancelled node"
    );
    tmux.keys(&["q"]);
    web.kill();
}
