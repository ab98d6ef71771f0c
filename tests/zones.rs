//! Zones: the copies of a file land in distinct failure domains, so a whole zone can go
//! down and every file stays readable; `admin zone` moves a node between zones with a
//! ring change. Real storage nodes on port 0, a real web node, real ffmpeg.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::StatusCode;
use support::web::{
    WebNode, WebOptions, decoded_frames, holdings, http_client, make_video, start_web_ring,
    upload_file,
};
use support::{StorageNode, ring_of, start_storage_nodes, start_zoned_storage_node};
use tritontube::admin_cli::connect;
use tritontube::proto::admin::{ChangeKind, ClusterStatusRequest, StartChangeRequest};

async fn upload_ready(web: &WebNode, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_video(dir.path(), &format!("{name}.mp4"), 4, "320x240");
    let response = upload_file(&web.url, &clip, &format!("{name}.mp4")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let api = format!("{}/api/videos/{name}", web.url);
    for _ in 0..600 {
        let body = http_client()
            .get(&api)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let video: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if video["state"] == "ready" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} never became ready");
}

/// Every key and the zones of the nodes holding it.
async fn zones_held(
    nodes: &[&StorageNode],
    zone_of: &BTreeMap<String, String>,
) -> BTreeMap<String, BTreeSet<String>> {
    holdings(nodes)
        .await
        .into_iter()
        .map(|(key, holders)| {
            let zones = holders.iter().map(|h| zone_of[h].clone()).collect();
            (key, zones)
        })
        .collect()
}

/// Reads every key of the videos through the web node, and decodes each video whole.
async fn all_readable(web: &WebNode, keys: &BTreeSet<String>, videos: &[&str]) {
    let client = http_client();
    for key in keys {
        let response = client
            .get(format!("{}/content/{key}", web.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{key}");
    }
    for video in videos {
        let manifest = format!("{}/content/{video}/manifest.mpd", web.url);
        let frames = tokio::task::spawn_blocking(move || decoded_frames(&manifest))
            .await
            .unwrap();
        assert!(frames >= 90, "{video}: {frames} frames");
    }
}

async fn ring_zones(web: &WebNode) -> BTreeMap<String, String> {
    let mut admin = connect(&web.admin, None).unwrap();
    let status = admin
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    status
        .nodes
        .into_iter()
        .filter(|n| n.in_ring)
        .map(|n| (n.address, n.zone))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_zone_down_keeps_every_file_readable() {
    let mut nodes = Vec::new();
    for zone in ["east", "east", "west", "west"] {
        nodes.push(start_zoned_storage_node(zone).await);
    }
    let zone_of: BTreeMap<String, String> = nodes
        .iter()
        .zip(["east", "east", "west", "west"])
        .map(|(n, z)| (n.address(), z.to_string()))
        .collect();
    let every: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(
        &every,
        WebOptions {
            replicas: 2,
            ..WebOptions::default()
        },
    )
    .await;
    // The web node learnt each node's zone when it made the first ring.
    assert_eq!(ring_zones(&web).await, zone_of);

    let videos = ["harbour", "meadow"];
    for video in videos {
        upload_ready(&web, video).await;
    }
    let held = zones_held(&every, &zone_of).await;
    let keys: BTreeSet<String> = held.keys().cloned().collect();
    assert!(keys.len() > 10, "{} keys", keys.len());
    for (key, zones) in &held {
        assert_eq!(zones.len(), 2, "{key} is held in {zones:?}");
    }
    // Without zones, some of these files would have had both copies in one zone: the
    // check above is not one the plain rule passes by luck.
    let addresses: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    let plain = ring_of(&addresses, 2);
    let one_zone_only = keys
        .iter()
        .filter(|key| {
            let zones: BTreeSet<&String> = plain.owners(key).iter().map(|n| &zone_of[*n]).collect();
            zones.len() == 1
        })
        .count();
    assert!(
        one_zone_only > 0,
        "the plain ring would also split every key"
    );

    // The whole west zone goes down (both its nodes at once).
    let mut nodes = nodes;
    for node in nodes.drain(2..) {
        node.stop().await;
    }
    all_readable(&web, &keys, &videos).await;
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_zone_moves_nodes_into_zones_and_migrates_what_must_move() {
    let nodes = start_storage_nodes(4).await;
    let every: Vec<&StorageNode> = nodes.iter().collect();
    let web = start_web_ring(
        &every,
        WebOptions {
            replicas: 2,
            ..WebOptions::default()
        },
    )
    .await;
    assert!(ring_zones(&web).await.values().all(String::is_empty));
    upload_ready(&web, "lagoon").await;
    let keys: BTreeSet<String> = holdings(&every).await.keys().cloned().collect();

    let wanted: BTreeMap<String, String> = nodes
        .iter()
        .zip(["north", "north", "south", "south"])
        .map(|(n, z)| (n.address(), z.to_string()))
        .collect();

    // Bad input changes nothing: a zone name with a space, an unknown node.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tritontube"))
            .arg("admin")
            .args(args)
            .output()
            .expect("tritontube runs")
    };
    let bad = cli(&["zone", &web.admin, &nodes[0].address(), "north pole"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("zone name"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let unknown = cli(&["zone", &web.admin, "127.0.0.1:1", "north"]);
    assert!(!unknown.status.success());
    assert!(ring_zones(&web).await.values().all(String::is_empty));

    // The operator's command, one node at a time; each is a ring change that finishes.
    for (node, zone) in &wanted {
        let out = tokio::task::spawn_blocking({
            let admin = web.admin.clone();
            let (node, zone) = (node.clone(), zone.clone());
            move || cli(&["zone", &admin, &node, &zone])
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("Node {node} is now in zone {zone}")),
            "{stdout}"
        );
    }
    assert_eq!(ring_zones(&web).await, wanted);

    // Every file now sits in both zones, on exactly the owners the zoned ring names.
    let held = holdings(&every).await;
    assert_eq!(held.keys().cloned().collect::<BTreeSet<_>>(), keys);
    let mut zoned = ring_of(&nodes.iter().map(|n| n.address()).collect::<Vec<_>>(), 2);
    for (node, zone) in &wanted {
        zoned.set_zone(node, Some(zone));
    }
    for (key, holders) in &held {
        let mut owners: Vec<String> = zoned.owners(key).into_iter().map(String::from).collect();
        owners.sort();
        assert_eq!(holders, &owners, "{key}");
        let zones: BTreeSet<&String> = holders.iter().map(|h| &wanted[h]).collect();
        assert_eq!(zones.len(), 2, "{key}: {holders:?}");
    }

    // Asking for the zone a node is already in is refused, saying so.
    let mut admin = connect(&web.admin, None).unwrap();
    let again = admin
        .start_change(StartChangeRequest {
            kind: ChangeKind::Zone as i32,
            node_address: nodes[0].address(),
            zone: "north".into(),
        })
        .await
        .unwrap_err();
    assert!(
        again.message().contains("already in zone north"),
        "{again:?}"
    );

    // A node added later takes the zone it reports.
    let newcomer = start_zoned_storage_node("south").await;
    let out = tokio::task::spawn_blocking({
        let admin = web.admin.clone();
        let node = newcomer.address();
        move || cli(&["add", &admin, &node])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ring_zones(&web).await[&newcomer.address()], "south");
    web.stop().await;
}
