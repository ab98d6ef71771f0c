//! The admin service and ring changes: real storage nodes, a real web node (in process, and
//! as a process killed with SIGKILL mid-migration), real uploads.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, stream};
use reqwest::StatusCode;
use support::web::{
    WebOptions, WebProcess, decoded_frames, free_port, holdings, http_client, make_video,
    ring_nodes, start_web_ring, upload_file,
};
use support::{StorageNode, ring_of, sha256_hex, start_storage_node_with, start_storage_nodes};
use tonic::Code;
use tritontube::admin_cli::connect;
use tritontube::proto::admin::{
    AddNodeRequest, CancelChangeRequest, ChangeKind, ClusterStatusRequest, DeleteVideoRequest,
    ListNodesRequest, ListWorkersRequest, PauseMovesRequest, PlanChangeRequest, RemoveNodeRequest,
    ResumeMovesRequest, SetPaceRequest, StartChangeRequest, StartRepairRequest,
    WatchMigrationRequest,
};
use tritontube::ring::{DEFAULT_VIRTUAL_NODES, Ring};

/// Every key sits on exactly the holders `ring` wants.
fn assert_placed(held: &BTreeMap<String, Vec<String>>, ring: &Ring) {
    for (key, holders) in held {
        let mut owners: Vec<String> = ring.owners(key).into_iter().map(String::from).collect();
        owners.sort();
        assert_eq!(holders, &owners, "{key} is not where the ring wants it");
    }
}

fn changed_keys(before: &Ring, after: &Ring, keys: &BTreeSet<String>) -> usize {
    before.diff(after, keys.iter().map(String::as_str)).len()
}

async fn plays(url: &str, id: &str) -> u64 {
    let manifest = format!("{url}/content/{id}/manifest.mpd");
    tokio::task::spawn_blocking(move || decoded_frames(&manifest))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adding_and_removing_nodes_moves_exactly_the_changed_keys() {
    let all = start_storage_nodes(4).await;
    let first_three: Vec<&StorageNode> = all[..3].iter().collect();
    let every: Vec<&StorageNode> = all.iter().collect();
    let web = start_web_ring(
        &first_three,
        WebOptions {
            replicas: 2,
            ..WebOptions::default()
        },
    )
    .await;
    let videos = tempfile::tempdir().unwrap();
    for name in ["one", "two"] {
        let clip = make_video(videos.path(), &format!("{name}.mp4"), 6, "320x240");
        let response = upload_file(&web.url, &clip, &format!("{name}.mp4")).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    let three: Vec<String> = all[..3].iter().map(|n| n.address()).collect();
    let four: Vec<String> = all.iter().map(|n| n.address()).collect();
    let before = holdings(&every).await;
    let keys: BTreeSet<String> = before.keys().cloned().collect();
    assert_placed(&before, &ring_of(&three, 2));

    let mut admin = connect(&web.admin, None).unwrap();
    let newcomer = all[3].address();

    // The plan says what will move before anything does.
    let plan = admin
        .plan_change(PlanChangeRequest {
            kind: ChangeKind::Add as i32,
            node_address: newcomer.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let expected_moves = changed_keys(&ring_of(&three, 2), &ring_of(&four, 2), &keys);
    assert_eq!(plan.files as usize, expected_moves);
    assert!(plan.moves.iter().all(|m| m.to == newcomer));
    assert_eq!(holdings(&every).await, before, "a plan changed something");

    let moved = admin
        .add_node(AddNodeRequest {
            node_address: newcomer.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .migrated_file_count;
    assert_eq!(moved as usize, expected_moves);
    assert!(moved > 0);
    let after_add = holdings(&every).await;
    assert_eq!(after_add.keys().cloned().collect::<BTreeSet<_>>(), keys);
    assert_placed(&after_add, &ring_of(&four, 2));
    assert_eq!(ring_nodes(&web.admin).await, four.iter().cloned().collect());
    for id in ["one", "two"] {
        assert!(plays(&web.url, id).await >= 6 * 25 - 5);
    }

    // The progress stream reports the finished change.
    let mut progress = admin
        .watch_migration(WatchMigrationRequest {})
        .await
        .unwrap()
        .into_inner();
    let last = progress
        .message()
        .await
        .unwrap()
        .expect("a progress report");
    assert!(last.finished);
    assert_eq!(last.files_done, last.files_total);
    assert_eq!(last.errors, 0);
    assert_eq!(last.node_address, newcomer);

    // Remove one of the original three: its files go elsewhere and it ends empty.
    let leaving = all[0].address();
    let remaining: Vec<String> = four.iter().filter(|a| **a != leaving).cloned().collect();
    let expected_moves = changed_keys(&ring_of(&four, 2), &ring_of(&remaining, 2), &keys);
    let moved = admin
        .remove_node(RemoveNodeRequest {
            node_address: leaving.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .migrated_file_count;
    assert_eq!(moved as usize, expected_moves);
    let after_remove = holdings(&every).await;
    assert_eq!(after_remove.keys().cloned().collect::<BTreeSet<_>>(), keys);
    assert_placed(&after_remove, &ring_of(&remaining, 2));
    assert!(all[0].client().keys(false).await.unwrap().is_empty());
    for id in ["one", "two"] {
        assert!(plays(&web.url, id).await >= 6 * 25 - 5);
    }

    // The removed node is now a spare the console can offer back.
    let status = admin
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let spare = status.nodes.iter().find(|n| n.address == leaving).unwrap();
    assert!(!spare.in_ring && spare.healthy);
    assert_eq!(status.replicas, 2);
    assert_eq!(status.tokens.len(), 3 * DEFAULT_VIRTUAL_NODES as usize);
    let share_sum: f64 = status.nodes.iter().map(|n| n.share).sum();
    assert!((share_sum - 1.0).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_changes_are_refused_with_fitting_codes() {
    let all = start_storage_nodes(2).await;
    let refs: Vec<&StorageNode> = all.iter().collect();
    let web = start_web_ring(
        &refs,
        WebOptions {
            replicas: 2,
            ..WebOptions::default()
        },
    )
    .await;
    let mut admin = connect(&web.admin, None).unwrap();
    let add = |node: &str| AddNodeRequest {
        node_address: node.to_string(),
    };
    let remove = |node: &str| RemoveNodeRequest {
        node_address: node.to_string(),
    };

    let duplicate = admin.add_node(add(&all[0].address())).await.unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let dead = format!("127.0.0.1:{}", free_port());
    let unreachable = admin.add_node(add(&dead)).await.unwrap_err();
    assert_eq!(unreachable.code(), Code::Unavailable, "{unreachable:?}");
    for bad in ["", "nohost", "host:notaport", "host:0"] {
        let refused = admin.add_node(add(bad)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{bad}");
    }
    let unknown = admin.remove_node(remove(&dead)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let below = admin
        .remove_node(remove(&all[0].address()))
        .await
        .unwrap_err();
    assert_eq!(below.code(), Code::FailedPrecondition);
    assert!(below.message().contains("replicas"), "{}", below.message());

    // Nothing changed.
    assert_eq!(ring_nodes(&web.admin).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_token_is_required_when_set() {
    let all = start_storage_nodes(2).await;
    let refs: Vec<&StorageNode> = all[..1].iter().collect();
    let web = start_web_ring(
        &refs,
        WebOptions {
            admin_token: Some("s3cret".into()),
            ..WebOptions::default()
        },
    )
    .await;
    web.meta
        .claim_video("kept", chrono::Utc::now())
        .await
        .unwrap();
    web.meta
        .finish_video("kept", &tritontube::meta::VideoDetails::default())
        .await
        .unwrap();
    let (first, second) = (all[0].address(), all[1].address());

    // Every mutating RPC, without the token and with a wrong one.
    for token in [None, Some("guess")] {
        let admin = connect(&web.admin, token).unwrap();
        let calls: Vec<(&str, Result<(), tonic::Status>)> = vec![
            (
                "AddNode",
                admin
                    .clone()
                    .add_node(AddNodeRequest {
                        node_address: second.clone(),
                    })
                    .await
                    .map(drop),
            ),
            (
                "RemoveNode",
                admin
                    .clone()
                    .remove_node(RemoveNodeRequest {
                        node_address: first.clone(),
                    })
                    .await
                    .map(drop),
            ),
            (
                "StartChange",
                admin
                    .clone()
                    .start_change(StartChangeRequest {
                        kind: ChangeKind::Add as i32,
                        node_address: second.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
            ),
            (
                "CancelChange",
                admin
                    .clone()
                    .cancel_change(CancelChangeRequest {})
                    .await
                    .map(drop),
            ),
            (
                "StartRepair",
                admin
                    .clone()
                    .start_repair(StartRepairRequest {
                        dry_run: false,
                        verify: true,
                    })
                    .await
                    .map(drop),
            ),
            (
                "DeleteVideo",
                admin
                    .clone()
                    .delete_video(DeleteVideoRequest { id: "kept".into() })
                    .await
                    .map(drop),
            ),
            (
                "SetPace",
                admin
                    .clone()
                    .set_pace(SetPaceRequest { mbps: 1 })
                    .await
                    .map(drop),
            ),
            (
                "PauseMoves",
                admin
                    .clone()
                    .pause_moves(PauseMovesRequest {})
                    .await
                    .map(drop),
            ),
            (
                "ResumeMoves",
                admin
                    .clone()
                    .resume_moves(ResumeMovesRequest {})
                    .await
                    .map(drop),
            ),
            (
                "ListNodes",
                admin
                    .clone()
                    .list_nodes(ListNodesRequest {})
                    .await
                    .map(drop),
            ),
        ];
        for (rpc, answer) in calls {
            let refused = answer.expect_err(rpc);
            assert_eq!(
                refused.code(),
                Code::Unauthenticated,
                "{rpc} with {token:?}"
            );
        }
    }

    // Nothing changed: one node, no ring change or repair ever started (only the
    // long-lived loops and the upload's processing ran), the video kept.
    let mut right = connect(&web.admin, Some("s3cret")).unwrap();
    assert_eq!(
        right
            .list_nodes(ListNodesRequest {})
            .await
            .unwrap()
            .into_inner()
            .nodes,
        vec![first.clone()]
    );
    let workers = right
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        workers
            .workers
            .iter()
            .all(|w| w.kind != "ring change" && w.kind != "repair"),
        "{workers:?}"
    );
    assert!(web.meta.get_video("kept").await.unwrap().value.is_some());
    let pace = right
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .pace
        .unwrap();
    assert_eq!(
        (pace.mbps, pace.paused),
        (0, false),
        "the pace is unchanged"
    );

    // With the token the same calls are served.
    right
        .add_node(AddNodeRequest {
            node_address: second.clone(),
        })
        .await
        .unwrap();
    right
        .delete_video(DeleteVideoRequest { id: "kept".into() })
        .await
        .unwrap();
    assert!(web.meta.get_video("kept").await.unwrap().value.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_two_replicas_every_segment_survives_a_dead_node() {
    let mut all = start_storage_nodes(3).await;
    let refs: Vec<&StorageNode> = all.iter().collect();
    let web = start_web_ring(
        &refs,
        WebOptions {
            replicas: 2,
            ..WebOptions::default()
        },
    )
    .await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "sturdy.mp4", 8, "320x240");
    assert_eq!(
        upload_file(&web.url, &clip, "sturdy.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
    let held = holdings(&refs).await;
    assert!(held.values().all(|h| h.len() == 2));
    let keys: Vec<String> = held.keys().cloned().collect();

    // Stop the node holding the manifest's first copy.
    let ring = ring_of(&all.iter().map(|n| n.address()).collect::<Vec<_>>(), 2);
    let victim = ring.primary("sturdy/manifest.mpd").unwrap().to_string();
    let index = all.iter().position(|n| n.address() == victim).unwrap();
    let stopped = all.remove(index);
    let _files = stopped.stop().await;

    // Nothing was read before, so no file comes from the web node's cache.
    let client = http_client();
    for key in &keys {
        let response = client
            .get(format!("{}/content/{key}", web.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{key}");
    }
    assert!(plays(&web.url, "sturdy").await >= 8 * 25 - 5);
}

/// Records the videos of [`seed_files`] in the metadata store as stored videos: files of
/// a video without a record are orphans, and a repair the health monitor starts by itself
/// (when it first sees a node with an empty, new store, such as a newcomer) would delete
/// them under the test. (A claim alone is not enough: a web node starting up drops the
/// claims of uploads it finds unfinished, with their files.)
async fn record_seeded(meta: &tritontube::meta::MetaStore) {
    for video in 0..10 {
        let id = format!("seed{video}");
        meta.claim_video(&id, chrono::Utc::now()).await.unwrap();
        let details = tritontube::meta::VideoDetails::default();
        meta.finish_video(&id, &details).await.unwrap();
    }
}

/// Keys written straight to the nodes where `ring` wants them; returns key → SHA-256.
async fn seed_files(
    nodes: &[&StorageNode],
    ring: &Ring,
    count: usize,
    size: usize,
) -> BTreeMap<String, String> {
    let by_address: BTreeMap<String, &StorageNode> =
        nodes.iter().map(|n| (n.address(), *n)).collect();
    let mut hashes = BTreeMap::new();
    let puts = (0..count).map(|i| {
        let key = format!("seed{}/chunk-0-{i:05}.m4s", i % 10);
        let data = Bytes::from(support::pseudo_random_bytes(size, i as u64));
        hashes.insert(key.clone(), sha256_hex(&data));
        let targets: Vec<_> = ring
            .owners(&key)
            .into_iter()
            .map(|a| by_address[a].client())
            .collect();
        async move {
            for client in targets {
                client.put(&key, data.clone(), None).await.unwrap();
            }
        }
    });
    let puts: Vec<_> = puts.collect();
    stream::iter(puts)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    hashes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_web_node_killed_mid_migration_finishes_it_after_restart() {
    let all = start_storage_nodes(4).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    let three: Vec<String> = all[..3].iter().map(|n| n.address()).collect();
    let replicas = 1;
    let ring = ring_of(&three, replicas);
    let hashes = seed_files(&every, &ring, 1500, 24 * 1024).await;

    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("metadata.db");
    record_seeded(&tritontube::meta::MetaStore::sqlite(&db).await.unwrap()).await;
    let (http_port, admin_port) = (free_port(), free_port());
    // At a pace (36 MB take ~9 s at 4 MB/s) the change is still running when each kill
    // lands: copies at full speed finish before the first kill.
    let extra = ["--replicas", "1", "--move-mbps", "4"];
    let mut web = WebProcess::spawn(&db, &three, http_port, admin_port, &extra).await;
    let newcomer = all[3].address();

    // Kill it at several points of one change: each restart resumes from what the nodes
    // really hold.
    for kill_after in [1u64, 120, 240] {
        let mut admin = connect(&web.admin, None).unwrap();
        let mut progress = admin
            .watch_migration(WatchMigrationRequest {})
            .await
            .unwrap()
            .into_inner();
        let request = AddNodeRequest {
            node_address: newcomer.clone(),
        };
        let mut adder = connect(&web.admin, None).unwrap();
        let add = tokio::spawn(async move { adder.add_node(request).await });
        let reached = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(report)) = progress.message().await {
                if report.files_done >= kill_after || report.finished {
                    return report;
                }
            }
            panic!("the progress stream ended early");
        })
        .await
        .expect("progress within a minute");
        if !reached.finished && kill_after == 1 {
            // One change at a time: a second one is refused while this one runs.
            let busy = admin
                .remove_node(RemoveNodeRequest {
                    node_address: three[0].clone(),
                })
                .await
                .unwrap_err();
            assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
        }
        assert!(
            !reached.finished,
            "the change ended before the kill: {reached:?}"
        );
        web.kill();
        let _ = add.await;
        // The kill landed mid-change: the change is still journaled.
        let state = tritontube::meta::MetaStore::sqlite(&db)
            .await
            .unwrap()
            .load_cluster_state()
            .await
            .unwrap()
            .expect("a cluster state");
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        assert!(
            !state["migration"].is_null(),
            "no change journaled after the kill at {kill_after} files"
        );
        web = WebProcess::spawn(&db, &three, http_port, admin_port, &extra).await;
    }

    // After the last restart the change completes (resumed on start, or re-run), once
    // its pace is lifted.
    let mut admin = connect(&web.admin, None).unwrap();
    admin.set_pace(SetPaceRequest { mbps: 0 }).await.unwrap();
    let mut done = false;
    for _ in 0..600 {
        let listed = admin
            .list_nodes(ListNodesRequest {})
            .await
            .map(|r| r.into_inner().nodes)
            .unwrap_or_default();
        if listed.contains(&newcomer) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "the interrupted change never finished");

    // Nothing lost, nothing duplicated, every key where the new ring wants it, intact.
    let four: Vec<String> = all.iter().map(|n| n.address()).collect();
    let held = holdings(&every).await;
    assert_eq!(
        held.keys().cloned().collect::<BTreeSet<_>>(),
        hashes.keys().cloned().collect::<BTreeSet<_>>()
    );
    assert_placed(&held, &ring_of(&four, replicas));
    let client = http_client();
    for (key, hash) in hashes.iter().step_by(50) {
        let body = client
            .get(format!("{}/content/{key}", web.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&sha256_hex(&body), hash, "{key}");
    }
    // The restarted node keeps the change even though its command line lists three.
    web.kill();
    let web = WebProcess::spawn(&db, &three, http_port, admin_port, &extra).await;
    assert!(ring_nodes(&web.admin).await.contains(&newcomer));
}

/// The RPCs a node of the original system lacks (its contract ends before PullFile).
const ADDED_SINCE_THE_ORIGINAL: [&str; 6] = [
    "PullFile",
    "DeleteFiles",
    "Scrub",
    "ListQuarantine",
    "RangeDigests",
    "HeldVideos",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_without_pull_gets_its_files_relayed() {
    let all = start_storage_nodes(2).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    // A real node that answers as one of the original system's: UNIMPLEMENTED for
    // every RPC added since, so a ring change onto it must relay the bytes itself.
    let old_dir = tempfile::tempdir().unwrap();
    let original = start_storage_node_with(
        old_dir.path(),
        "127.0.0.1:0",
        tritontube::node::server::NodeOptions {
            withheld_rpcs: ADDED_SINCE_THE_ORIGINAL.map(String::from).to_vec(),
            ..Default::default()
        },
    )
    .await;
    let newcomer = original.address();
    let refused = original
        .client()
        .pull("v/f", &all[0].address(), &"0".repeat(64))
        .await
        .unwrap_err();
    assert!(refused.is_unimplemented(), "{refused}");
    let two: Vec<String> = all.iter().map(|n| n.address()).collect();
    let hashes = seed_files(&every, &ring_of(&two, 1), 200, 4096).await;
    let web = start_web_ring(&every, WebOptions::default()).await;
    record_seeded(&web.meta).await;
    let moved = connect(&web.admin, None)
        .unwrap()
        .add_node(AddNodeRequest {
            node_address: newcomer.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .migrated_file_count;
    assert!(moved > 0);
    let client = tritontube::node::client::StorageClient::connect_lazy(&newcomer).unwrap();
    let held = client.keys(true).await.unwrap();
    assert_eq!(held.len() as i32, moved);
    for info in held {
        assert_eq!(hashes[&info.key], info.sha256);
    }

    // Removed again, it gives every file back; it has no DeleteFiles, so its copies are
    // deleted one call at a time.
    connect(&web.admin, None)
        .unwrap()
        .remove_node(RemoveNodeRequest {
            node_address: newcomer.clone(),
        })
        .await
        .unwrap();
    assert!(client.keys(false).await.unwrap().is_empty());
    let mut back = BTreeMap::new();
    for node in &all {
        for info in node.client().keys(true).await.unwrap() {
            back.insert(info.key, info.sha256);
        }
    }
    assert_eq!(back, hashes.into_iter().collect::<BTreeMap<_, _>>());
}

/// Sets or clears the immutable flag (`chattr +i`), which makes even root's unlink fail.
fn set_immutable(path: &std::path::Path, immutable: bool) {
    use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
    let file = std::fs::File::open(path).unwrap();
    let flags = ioctl_getflags(&file).expect("the file system keeps inode flags (ext4)");
    let flags = if immutable {
        flags | IFlags::IMMUTABLE
    } else {
        flags - IFlags::IMMUTABLE
    };
    ioctl_setflags(&file, flags).expect("setting the immutable flag (needs root)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_surplus_copy_that_cannot_be_deleted_keeps_the_change_journaled_until_run_again() {
    let all = start_storage_nodes(3).await;
    let every: Vec<&StorageNode> = all.iter().collect();
    let two: Vec<String> = all[..2].iter().map(|n| n.address()).collect();
    let three: Vec<String> = all.iter().map(|n| n.address()).collect();
    let before = ring_of(&two, 1);
    let hashes = seed_files(&every[..2], &before, 120, 2048).await;
    let web = start_web_ring(&every[..2], WebOptions::default()).await;
    record_seeded(&web.meta).await;

    // A key that moves to the newcomer: its old copy is surplus once it has arrived.
    let after = ring_of(&three, 1);
    let moving = hashes
        .keys()
        .find(|key| after.owners(key) == [three[2].as_str()])
        .expect("a key for the newcomer")
        .clone();
    let holder = every
        .iter()
        .find(|n| n.address() == before.owners(&moving)[0])
        .unwrap();
    let stuck = holder.dir.join(&moving);
    set_immutable(&stuck, true);

    let mut admin = connect(&web.admin, None).unwrap();
    let add = AddNodeRequest {
        node_address: three[2].clone(),
    };
    let failed = admin.add_node(add.clone()).await.unwrap_err();
    set_immutable(&stuck, false);
    assert_eq!(failed.code(), Code::Aborted, "{failed:?}");
    assert!(
        failed.message().contains("surplus copies on") && failed.message().contains("run it again"),
        "{}",
        failed.message()
    );
    // A watcher that comes after the failure gets this node's final report of it, not a
    // report of a change "running elsewhere" that never ends.
    let mut watch = admin
        .watch_migration(WatchMigrationRequest {})
        .await
        .unwrap()
        .into_inner();
    let last = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut last = None;
        while let Some(progress) = watch.message().await.unwrap() {
            last = Some(progress);
        }
        last
    })
    .await
    .expect("the watch of a failed change ends")
    .expect("a report of the change");
    assert!(last.finished && last.errors > 0, "{last:?}");
    assert!(last.last_error.contains("run it again"), "{last:?}");
    // Every file has its new copy; nothing was lost; the ring has not switched.
    let held = holdings(&every).await;
    assert_eq!(held.len(), hashes.len());
    assert!(held[&moving].contains(&three[2]));
    assert_eq!(
        ring_nodes(&web.admin).await.len(),
        2,
        "the ring switches only when the change is done"
    );

    // Asked again, the journaled change finishes: every key on its owner alone.
    admin.add_node(add).await.unwrap();
    let held = holdings(&every).await;
    assert_eq!(
        held.keys().cloned().collect::<BTreeSet<_>>(),
        hashes.keys().cloned().collect()
    );
    assert_placed(&held, &after);
}
