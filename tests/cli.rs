//! The `tritontube` binary as users run it: `up`, `admin`, and `web`'s start-up errors.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::web::{WebOptions, free_port, http_client, start_web_ring};
use support::{StorageNode, StorageProcess, start_storage_node};
use tritontube::admin_cli::connect;
use tritontube::proto::admin::{ClusterStatusRequest, WatchMigrationRequest};
use tritontube::ring::{DEFAULT_VIRTUAL_NODES, Ring};

fn tritontube() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tritontube"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_cli_prints_what_the_original_printed() {
    let nodes = [
        start_storage_node().await,
        start_storage_node().await,
        start_storage_node().await,
    ];
    let refs: Vec<_> = nodes[..2].iter().collect();
    let web = start_web_ring(&refs, WebOptions::default()).await;
    let admin = web.admin.clone();
    let run = move |args: Vec<String>| {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = tritontube();
            command.arg("admin");
            for arg in args {
                command.arg(arg.replace("ADMIN", &admin));
            }
            command.output().expect("run tritontube admin")
        })
    };

    let listed = run(vec!["list".into(), "ADMIN".into()]).await.unwrap();
    assert!(listed.status.success());
    let mut expected: Vec<String> = nodes[..2].iter().map(|n| n.address()).collect();
    expected.sort();
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        format!("Nodes in cluster:\n{}\n", expected.join("\n"))
    );

    let third = nodes[2].address();
    let added = run(vec!["add".into(), "ADMIN".into(), third.clone()])
        .await
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let text = String::from_utf8_lossy(&added.stdout);
    assert!(
        text.starts_with(&format!(
            "Successfully added node: {third}\nNumber of files migrated: "
        )),
        "{text}"
    );

    let removed = run(vec!["remove".into(), "ADMIN".into(), third.clone()])
        .await
        .unwrap();
    assert!(removed.status.success());
    assert!(
        String::from_utf8_lossy(&removed.stdout)
            .starts_with(&format!("Successfully removed node: {third}\n"))
    );

    // Errors: a clear message on stderr and a non-zero exit.
    let unknown = run(vec!["remove".into(), "ADMIN".into(), "127.0.0.1:1".into()])
        .await
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not in the ring"));
    let dead_admin = format!("127.0.0.1:{}", free_port());
    let unreachable = run(vec!["list".into(), dead_admin]).await.unwrap();
    assert!(!unreachable.status.success());
}

/// Ctrl-C on `admin add` stops the following, not the change, and says how to follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_on_admin_add_leaves_the_change_running() {
    let a = start_storage_node().await;
    let b = start_storage_node().await;
    let newcomer = StorageProcess::start().await;
    let ring = Ring::with_nodes(DEFAULT_VIRTUAL_NODES, 1, [a.address(), b.address()]);
    for i in 0..80 {
        let key = format!("v{}/chunk-0-{i:05}.m4s", i % 3);
        let node: &StorageNode = if ring.primary(&key).unwrap() == a.address() {
            &a
        } else {
            &b
        };
        let data = bytes::Bytes::from(vec![(i % 251) as u8; 16 * 1024 + i]);
        node.client().put(&key, data, None).await.unwrap();
    }
    let web = start_web_ring(&[&a, &b], WebOptions::default()).await;
    let mut watch = connect(&web.admin, None)
        .unwrap()
        .watch_migration(WatchMigrationRequest {})
        .await
        .unwrap()
        .into_inner();

    let mut child = tritontube()
        .args(["admin", "add", &web.admin, &newcomer.address])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The change has taken its inventory: hold it by pausing the new node, then Ctrl-C.
    loop {
        let report = tokio::time::timeout(Duration::from_secs(60), watch.message())
            .await
            .expect("progress")
            .unwrap()
            .expect("open stream");
        assert!(!report.finished, "finished before the test could hold it");
        if report.files_total > 0 {
            newcomer.signal("-STOP");
            break;
        }
    }
    // Plain progress lines (stderr is not a terminal) name the change.
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a progress line");
    assert!(
        line.starts_with(&format!("add {}: ", newcomer.address)),
        "{line}"
    );
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    // Bounded: a client that missed the Ctrl-C would follow the held change for ever.
    let pid = child.id().to_string();
    let status = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .unwrap_or_else(|_| {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        newcomer.signal("-CONT");
        panic!("admin add did not stop on Ctrl-C")
    })
    .unwrap()
    .unwrap();
    assert_eq!(status.code(), Some(130));
    let said: Vec<String> = rx.iter().collect();
    let said = said.join("\n");
    assert!(
        said.contains("The change goes on in the web node"),
        "{said}"
    );
    assert!(
        said.contains(&format!("tritontube admin status {}", web.admin)),
        "{said}"
    );

    newcomer.signal("-CONT");
    let last = loop {
        let report = tokio::time::timeout(Duration::from_secs(60), watch.message())
            .await
            .expect("the change goes on")
            .unwrap()
            .expect("open stream");
        if report.finished {
            break report;
        }
    };
    assert_eq!(last.errors, 0, "{}", last.last_error);
    assert!(last.files_done > 0);
    let status = tritontube()
        .args(["admin", "status", &web.admin])
        .output()
        .unwrap();
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("No ring change is journaled."), "{text}");
    assert!(
        text.contains(&format!("ring change — add {}: done", newcomer.address)),
        "{text}"
    );
}

#[test]
fn web_without_ffmpeg_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = tritontube()
        .args(["web", "--host", "127.0.0.1", "--port", "0", "sqlite"])
        .arg(dir.path().join("m.db"))
        .arg("fs")
        .arg(dir.path().join("files"))
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ffmpeg was not found"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn web_refuses_a_malformed_command_line() {
    for args in [
        vec!["web", "mysql", "x", "fs", "d"],
        vec!["web", "sqlite", "x", "s3", "d"],
        vec!["web", "sqlite", "x"],
    ] {
        let output = tritontube().args(&args).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn up_runs_the_whole_system_and_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let mut child = tritontube()
        .arg("up")
        .arg("--data")
        .arg(data.path())
        .args(["--port", "0", "--admin-port", "0", "--storage-port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take(7)
            .collect::<Vec<String>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(60), lines)
        .await
        .expect("up prints its addresses")
        .unwrap();
    let field = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|rest| rest.split_whitespace().next().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
    };
    let web = field("web:");
    let admin = field("admin:");
    let web_metrics = field("metrics:");
    let storage_metrics = lines
        .iter()
        .find(|l| l.ends_with("(storage)"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no storage metrics in {lines:?}"))
        .to_string();

    let index = http_client().get(&web).send().await.unwrap();
    assert_eq!(index.status(), reqwest::StatusCode::OK);
    assert!(index.text().await.unwrap().contains("Upload"));
    for (url, series) in [
        (&web_metrics, "tritontube_ring_nodes 3"),
        (&storage_metrics, "tritontube_node_files 0"),
    ] {
        let metrics = http_client().get(url).send().await.unwrap();
        assert_eq!(metrics.status(), reqwest::StatusCode::OK, "{url}");
        assert!(metrics.text().await.unwrap().contains(series), "{url}");
    }

    let status = connect(&admin, None)
        .unwrap()
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.nodes.iter().filter(|n| n.in_ring).count(), 3);
    let spare: Vec<_> = status.nodes.iter().filter(|n| !n.in_ring).collect();
    assert_eq!(spare.len(), 1);
    assert!(spare[0].healthy);

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(data.path().join("metadata.db").exists());
}
