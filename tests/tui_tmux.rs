//! End to end: the real `tritontube tui` binary in a tmux pane, against real etcd, real
//! storage nodes and a real web node with its admin service (all on 127.0.0.1). The test
//! types like an operator — `a`, an address, Enter — reads the screen with capture-pane,
//! watches the migration reach 100 %, removes a node through the plan confirmation, sees
//! an etcd member die and the admin service go away, then quits with `q` and checks the
//! shell got its terminal back. A second test quits the console in the middle of a change
//! and checks that the change goes on without it.

mod support;

use bytes::Bytes;
use support::etcd::EtcdCluster;
use support::tmux::{PATIENCE, PROMPT, Tmux, last_line};
use support::web::{WebOptions, holdings, start_web};
use support::{StorageProcess, start_storage_node};
use tritontube::admin_cli::connect;
use tritontube::meta::MetaStore;
use tritontube::proto::admin::{ListNodesRequest, WatchMigrationRequest};
use tritontube::ring::Ring;
use tritontube::web::ContentSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_adds_a_node_and_watches_the_migration() {
    assert!(
        Tmux::available(),
        "tmux is not installed: run scripts/setup.sh (Debian package tmux)"
    );
    let mut etcd = EtcdCluster::start(3).await;

    // Two nodes in the ring holding files where the ring wants them, and a third to add.
    let a = start_storage_node().await;
    let b = start_storage_node().await;
    let c = start_storage_node().await;
    let ring = Ring::with_nodes(
        tritontube::ring::DEFAULT_VIRTUAL_NODES,
        1,
        [a.address(), b.address()],
    );
    for i in 0..60 {
        let key = format!("video-{}/chunk-{i:05}.m4s", i % 3);
        let owner = ring.primary(&key).unwrap();
        let node = if owner == a.address() { &a } else { &b };
        let data = Bytes::from(vec![(i % 251) as u8; 48 * 1024 + i * 100]);
        node.client()
            .put(&key, data, None)
            .await
            .expect("seed file");
    }

    let meta = MetaStore::etcd(&etcd.endpoints())
        .await
        .expect("etcd store");
    let content = ContentSpec::Ring {
        seed_nodes: vec![a.address(), b.address()],
        spares: Vec::new(),
        virtual_nodes: tritontube::ring::DEFAULT_VIRTUAL_NODES,
        replicas: 1,
        admin_token: Some("s3cret".into()),
    };
    let options = WebOptions {
        replicas: 1,
        admin_token: Some("s3cret".into()),
        ..WebOptions::default()
    };
    let web = start_web(tempfile::tempdir().unwrap(), meta, content, options).await;

    let log = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("watch", 100, 30);
    tmux.wait_for("the shell prompt", |s| s.contains(PROMPT))
        .await;
    let command = format!(
        "{} tui {} --etcd {} --token s3cret --log-file {}",
        env!("CARGO_BIN_EXE_tritontube"),
        web.admin,
        etcd.endpoints().join(","),
        log.path().join("console.log").display()
    );
    tmux.type_text(&command);
    tmux.keys(&["Enter"]);

    let screen = tmux
        .wait_for("the console to show the cluster", |s| {
            s.contains("● up")
                && s.contains("3/3 healthy")
                && s.contains(&a.address())
                && s.contains(&b.address())
        })
        .await;
    assert!(screen.contains('★'), "a leader is marked:\n{screen}");

    // Add the third node the way an operator does.
    tmux.keys(&["a"]);
    tmux.wait_for("the add prompt", |s| s.contains("Add a storage node"))
        .await;
    tmux.type_text(&c.address());
    tmux.keys(&["Enter"]);
    let added = format!("added {}:", c.address());
    let screen = tmux
        .wait_for("the migration to finish", |s| {
            s.contains("100%") && s.contains("finished ✔") && s.contains(&added)
        })
        .await;
    eprintln!("after adding a node:\n{screen}");
    let moved = c.client().keys(false).await.expect("list new node").len();
    assert!(moved > 0, "the new node received files");
    assert!(
        screen.contains(&format!("{added} {moved} files migrated")),
        "the console reports the {moved} files moved:\n{screen}"
    );

    // Remove the selected node: the confirmation shows PlanChange's plan before anything
    // moves.
    let selected = screen
        .lines()
        .find_map(|l| l.split("▶ ● ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a selected node")
        .to_string();
    let first = &selected;
    tmux.keys(&["d"]);
    let screen = tmux
        .wait_for("the removal plan", |s| s.contains("will move:"))
        .await;
    eprintln!("the removal confirmation:\n{screen}");
    assert!(screen.contains(&format!("Remove {first} from the ring?")));
    assert!(
        screen.contains(&format!("{first} → ")),
        "moves from the node:\n{screen}"
    );
    // Removing asks for the node's port to be typed, then Enter.
    let port = first.rsplit_once(':').unwrap().1.to_string();
    tmux.keys(&[port.as_str(), "Enter"]);
    let removed = format!("removed {first}:");
    tmux.wait_for("the removal to finish", |s| {
        s.contains(&removed) && s.contains("finished ✔")
    })
    .await;

    // An etcd member dies: its row turns to down, the cluster keeps quorum.
    etcd.kill(2);
    let screen = tmux
        .wait_for("the dead etcd member", |s| {
            s.contains("2/3 healthy") && s.contains(" down")
        })
        .await;
    eprintln!("after killing an etcd member:\n{screen}");
    assert!(!screen.contains("quorum lost"), "2 of 3 is a majority");

    // The admin service goes away: a red status line, the data kept as stale.
    web.stop().await;
    let screen = tmux
        .wait_for("the admin service to be reported down", |s| {
            s.contains("unreachable") && s.contains("stale")
        })
        .await;
    eprintln!("after stopping the web node:\n{screen}");
    assert!(
        screen.contains(&c.address()),
        "the last data stays on screen"
    );

    // Quit: the shell is back, on the normal screen, and reads lines again.
    tmux.keys(&["q"]);
    let screen = tmux
        .wait_for("the shell prompt after quitting", |s| {
            last_line(s).trim_end() == PROMPT && !s.contains("Storage nodes")
        })
        .await;
    assert!(
        screen.contains(" tui "),
        "the command line is back in view:\n{screen}"
    );
    tmux.type_text("echo restored-$((20+22))");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the shell to run a command", |s| s.contains("restored-42"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_the_console_leaves_a_change_running() {
    assert!(
        Tmux::available(),
        "tmux is not installed: run scripts/setup.sh (Debian package tmux)"
    );
    let a = start_storage_node().await;
    let b = start_storage_node().await;
    let newcomer = StorageProcess::start().await;
    let ring = Ring::with_nodes(
        tritontube::ring::DEFAULT_VIRTUAL_NODES,
        1,
        [a.address(), b.address()],
    );
    for i in 0..120 {
        let key = format!("video-{}/chunk-{i:05}.m4s", i % 4);
        let node = if ring.primary(&key).unwrap() == a.address() {
            &a
        } else {
            &b
        };
        let data = Bytes::from(vec![(i % 251) as u8; 32 * 1024 + i]);
        node.client().put(&key, data, None).await.unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let meta = MetaStore::sqlite(&work.path().join("meta.db"))
        .await
        .unwrap();
    let content = ContentSpec::Ring {
        seed_nodes: vec![a.address(), b.address()],
        spares: Vec::new(),
        virtual_nodes: tritontube::ring::DEFAULT_VIRTUAL_NODES,
        replicas: 1,
        admin_token: None,
    };
    let web = start_web(work, meta, content, WebOptions::default()).await;
    let mut admin = connect(&web.admin, None).unwrap();

    let log = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("quit", 100, 30);
    tmux.wait_for("the shell prompt", |s| s.contains(PROMPT))
        .await;
    tmux.type_text(&format!(
        "{} tui {} --log-file {}",
        env!("CARGO_BIN_EXE_tritontube"),
        web.admin,
        log.path().join("console.log").display()
    ));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the console", |s| {
        s.contains("● up") && s.contains(&a.address())
    })
    .await;

    // The operator adds the node from the console; once the change has taken its
    // inventory, the new node is paused so the change is held in the middle.
    let mut progress = admin
        .watch_migration(WatchMigrationRequest {})
        .await
        .unwrap()
        .into_inner();
    tmux.keys(&["a"]);
    tmux.wait_for("the add prompt", |s| s.contains("Add a storage node"))
        .await;
    tmux.type_text(&newcomer.address);
    tmux.keys(&["Enter"]);
    loop {
        let report = tokio::time::timeout(PATIENCE, progress.message())
            .await
            .expect("progress")
            .unwrap()
            .expect("an open stream");
        assert!(!report.finished, "finished before the node was paused");
        if report.files_total > 0 {
            newcomer.signal("-STOP");
            break;
        }
    }

    // Quit while the change is held: the console leaves, the change does not.
    tmux.keys(&["q"]);
    tmux.wait_for("the shell prompt after quitting", |s| {
        last_line(s).trim_end() == PROMPT && !s.contains("Storage nodes")
    })
    .await;
    newcomer.signal("-CONT");
    let last = loop {
        let report = tokio::time::timeout(PATIENCE, progress.message())
            .await
            .expect("the change goes on")
            .unwrap()
            .expect("the stream ends with the finished report");
        if report.finished {
            break report;
        }
    };
    assert_eq!(last.errors, 0, "{}", last.last_error);
    assert!(last.files_done > 0);
    let nodes = admin
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert!(nodes.contains(&newcomer.address), "{nodes:?}");
    let moved = tritontube::node::client::StorageClient::connect_lazy(&newcomer.address)
        .unwrap()
        .keys(false)
        .await
        .unwrap();
    assert_eq!(moved.len() as u64, last.files_done);
    assert_eq!(holdings(&[&a, &b]).await.len() + moved.len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_filters_the_node_table_and_the_selection_follows() {
    assert!(
        Tmux::available(),
        "tmux is not installed: run scripts/setup.sh (Debian package tmux)"
    );
    let nodes = support::start_storage_nodes(3).await;
    let refs: Vec<&support::StorageNode> = nodes.iter().collect();
    let web = support::web::start_web_ring(&refs, WebOptions::default()).await;
    let mut addresses: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    addresses.sort();
    let log = tempfile::tempdir().unwrap();
    // 80×24: the compact layout, where only the nodes table marks nodes with "● ".
    let tmux = Tmux::start("filter", 80, 24);
    tmux.run_console(&format!(
        "{} --log-file {}",
        web.admin,
        log.path().join("console.log").display()
    ))
    .await;
    tmux.wait_for("the console", |s| {
        s.contains("Storage nodes (3)") && addresses.iter().all(|a| s.contains(a.as_str()))
    })
    .await;
    let table_rows = |s: &str| s.matches("● 127.0.0.1:").count();

    // The last node's port, typed after `/`: one row left, and it is the selected one.
    let wanted = &addresses[2];
    let port = wanted.rsplit_once(':').unwrap().1;
    tmux.keys(&["/"]);
    tmux.type_text(port);
    let screen = tmux
        .wait_for("the table narrowed live", |s| {
            s.contains(&format!("Storage nodes (1 of 3) · /{port}▏"))
        })
        .await;
    eprintln!("filtering:\n{screen}");
    assert_eq!(table_rows(&screen), 1, "{screen}");
    assert!(screen.contains(&format!("▶ ● {wanted}")), "{screen}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the filter kept", |s| {
        s.contains(&format!("Storage nodes (1 of 3) · /{port} "))
    })
    .await;
    // Remove acts on the row shown.
    tmux.keys(&["d"]);
    tmux.wait_for("the removal confirmation", |s| {
        s.contains(&format!("Remove {wanted} from the ring?"))
    })
    .await;
    tmux.keys(&["Escape"]);
    // A key right after Esc would read as Alt+key: wait for the popup to close first.
    tmux.wait_for("the confirmation to close", |s| !s.contains("Remove "))
        .await;
    // Esc while typing a filter clears it: every node again.
    tmux.keys(&["/"]);
    tmux.wait_for("the filter being edited", |s| {
        s.contains(&format!("/{port}▏"))
    })
    .await;
    tmux.keys(&["Escape"]);
    let screen = tmux
        .wait_for("every node again", |s| s.contains("Storage nodes (3) "))
        .await;
    assert_eq!(table_rows(&screen), 3, "{screen}");
    assert!(screen.contains(&format!("▶ ● {wanted}")), "{screen}");
    tmux.keys(&["q"]);
    tmux.wait_for("the shell prompt after quitting", |s| {
        last_line(s).trim_end() == PROMPT
    })
    .await;
}
