//! Prometheus metrics end to end: real storage nodes with their metrics listeners, a real
//! web node on SQLite (and one on etcd), a real upload of an ffmpeg clip, real GETs; then
//! every endpoint is scraped, the series that must have moved are checked by count, and
//! `promtool check metrics` (Debian's `prometheus` package) must parse every output.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use support::etcd::EtcdCluster;
use support::web::{WebOptions, http_client, make_video, start_web, upload_bytes, upload_file};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tritontube::meta::MetaStore;
use tritontube::node::client::StorageClient;
use tritontube::proto::admin::{ListWorkersRequest, StartRepairRequest, TrafficStatsRequest};
use tritontube::web::ContentSpec;

/// A storage node in the test process with its metrics listener on.
struct MeteredNode {
    address: String,
    metrics_url: String,
    _dir: TempDir,
    stop: CancellationToken,
}

impl Drop for MeteredNode {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_metered_node() -> MeteredNode {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind metrics");
    let address = listener.local_addr().unwrap().to_string();
    let metrics_url = format!("http://{}/metrics", metrics.local_addr().unwrap());
    let stop = CancellationToken::new();
    let served = dir.path().to_path_buf();
    let shutdown = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        tritontube::node::server::run_with_metrics(
            listener,
            Some(metrics),
            served,
            tritontube::node::server::NodeOptions::default(),
            shutdown,
        )
        .await
        .expect("storage node failed");
    });
    MeteredNode {
        address,
        metrics_url,
        _dir: dir,
        stop,
    }
}

/// Runs `promtool check metrics` on `text`; its lint hints are accepted, a parse error
/// (or any other failure) fails the test.
fn promtool_accepts(what: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // 0: clean; 3: lint hints only. A parse error exits 1.
    let code = output.status.code();
    assert!(
        matches!(code, Some(0) | Some(3)) && !said.contains("error"),
        "promtool rejected the metrics of {what} (exit {code:?}): {said}\n--- metrics ---\n{text}"
    );
}

async fn scrape(url: &str) -> String {
    let response = http_client().get(url).send().await.expect("scrape");
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The samples of a scrape: (metric name, labels) → value.
struct Samples(Vec<(String, BTreeMap<String, String>, f64)>);

impl Samples {
    fn parse(text: &str) -> Samples {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value: f64 = value.parse().expect("a sample value");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closed labels");
                    let labels = body
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("label=value");
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            samples.push((name, labels, value));
        }
        Samples(samples)
    }

    /// The sum of the samples of `name` whose labels include all of `labels`; None when
    /// there is no such series.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// As [`Self::sum`], failing the test when the series is absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.sum(name, labels)
            .unwrap_or_else(|| panic!("no series {name} with {labels:?}"))
    }
}

async fn get_status(url: &str) -> StatusCode {
    let response = http_client().get(url).send().await.unwrap();
    let status = response.status();
    response.bytes().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn web_and_storage_nodes_count_what_happened_and_promtool_parses_it() {
    support::require_tool("promtool", "prometheus");
    let nodes = vec![
        start_metered_node().await,
        start_metered_node().await,
        start_metered_node().await,
    ];
    let addresses: Vec<String> = nodes.iter().map(|n| n.address.clone()).collect();
    let web = start_web_on(&addresses, 2).await;
    let videos = tempfile::tempdir().unwrap();
    let clip = make_video(videos.path(), "clip.mp4", 4, "160x120");

    // One stored upload, one refused as a duplicate, one that is not a video.
    assert_eq!(
        upload_file(&web.url, &clip, "clip.mp4").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        upload_file(&web.url, &clip, "clip.mp4").await.status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        upload_bytes(&web.url, "junk.mp4", b"not a video at all".to_vec())
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );

    // The manifest and a segment twice each (a miss, then a hit), a missing file twice
    // (misses), and a path no route matches.
    let held = holdings_of(&addresses).await;
    let chunk = held
        .keys()
        .find(|k| k.starts_with("clip/chunk-"))
        .expect("a segment")
        .clone();
    let content = |key: &str| format!("{}/content/{key}", web.url);
    for key in ["clip/manifest.mpd", chunk.as_str()] {
        assert_eq!(get_status(&content(key)).await, StatusCode::OK);
        assert_eq!(get_status(&content(key)).await, StatusCode::OK);
    }
    for _ in 0..2 {
        assert_eq!(
            get_status(&content("clip/missing.m4s")).await,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        get_status(&format!("{}/no/such/page", web.url)).await,
        StatusCode::NOT_FOUND
    );

    let text = scrape(&format!("{}/metrics", web.url)).await;
    promtool_accepts("the web node", &text);
    let web_samples = Samples::parse(&text);
    let s = &web_samples;
    let requests = "tritontube_http_requests_total";
    let content_route = ("route", "/content/{id}/{file}");
    assert_eq!(
        s.get(
            requests,
            &[content_route, ("status", "200"), ("method", "GET")]
        ),
        4.0
    );
    assert_eq!(s.get(requests, &[content_route, ("status", "404")]), 2.0);
    assert_eq!(
        s.get(requests, &[("route", "/upload"), ("status", "303")]),
        1.0
    );
    assert_eq!(
        s.get(requests, &[("route", "/upload"), ("status", "409")]),
        1.0
    );
    assert_eq!(
        s.get(requests, &[("route", "unmatched"), ("status", "404")]),
        1.0,
        "raw URLs must not become routes"
    );
    assert!(!text.contains("no/such/page") && !text.contains("clip/manifest.mpd"));
    assert_eq!(
        s.get(
            "tritontube_http_request_duration_seconds_count",
            &[content_route]
        ),
        6.0
    );
    assert!(
        s.get("tritontube_http_response_bytes_total", &[content_route]) > 0.0,
        "bytes served"
    );

    // Cache: the first read of each file went to storage, the second came from memory;
    // a missing file is looked for in storage every time.
    assert_eq!(s.get("tritontube_cache_hits_total", &[]), 2.0);
    assert_eq!(s.get("tritontube_cache_misses_total", &[]), 4.0);
    assert!(s.get("tritontube_cache_bytes", &[]) > 0.0);
    assert_eq!(s.get("tritontube_cache_entries", &[]), 2.0);
    assert_eq!(s.get("tritontube_cache_evictions_total", &[]), 0.0);

    // Uploads by outcome and stage.
    let uploads = "tritontube_uploads_total";
    assert_eq!(s.get(uploads, &[("outcome", "stored")]), 1.0);
    assert_eq!(s.get(uploads, &[("outcome", "conflict")]), 1.0);
    assert_eq!(s.get(uploads, &[("outcome", "bad_request")]), 1.0);
    let stages = "tritontube_upload_stage_duration_seconds_count";
    // The file that is not a video was received whole, then failed its probe.
    assert_eq!(
        s.get(stages, &[("stage", "receive"), ("outcome", "ok")]),
        2.0
    );
    for stage in ["transcode", "store"] {
        assert_eq!(
            s.get(stages, &[("stage", stage), ("outcome", "ok")]),
            1.0,
            "{stage}"
        );
    }
    assert_eq!(s.get(stages, &[("stage", "probe"), ("outcome", "ok")]), 1.0);
    assert_eq!(
        s.get(stages, &[("stage", "probe"), ("outcome", "error")]),
        1.0
    );

    // Storage calls: every copy written (files × R), reads, and the missing file's misses.
    let copies: usize = held.values().map(Vec::len).sum();
    assert_eq!(copies, held.len() * 2, "R = 2: {held:?}");
    let calls = "tritontube_storage_calls_total";
    assert_eq!(
        s.get(calls, &[("rpc", "PutFile"), ("outcome", "ok")]),
        copies as f64
    );
    for address in &addresses {
        assert!(
            s.sum(calls, &[("node", address), ("rpc", "PutFile")])
                .is_some(),
            "no calls recorded for {address}"
        );
    }
    assert!(s.get(calls, &[("rpc", "GetFile"), ("outcome", "ok")]) >= 2.0);
    assert!(s.get(calls, &[("rpc", "GetFile"), ("outcome", "not_found")]) >= 2.0);
    assert_eq!(
        s.get(
            "tritontube_storage_call_duration_seconds_count",
            &[("rpc", "PutFile")]
        ),
        copies as f64
    );

    // The library, the ring, the migration worker (idle) and the metadata store.
    assert_eq!(
        s.get("tritontube_library_videos", &[("status", "ready")]),
        1.0
    );
    assert_eq!(
        s.get("tritontube_library_videos", &[("status", "processing")]),
        0.0
    );
    let library_bytes = s.get("tritontube_library_stored_bytes", &[]);
    assert!(library_bytes > 0.0);
    assert_eq!(s.get("tritontube_ring_nodes", &[]), 3.0);
    assert_eq!(s.get("tritontube_ring_replicas", &[]), 2.0);
    assert_eq!(
        s.get("tritontube_ring_virtual_nodes", &[]),
        f64::from(tritontube::ring::DEFAULT_VIRTUAL_NODES)
    );
    assert_eq!(
        s.get("tritontube_worker_running", &[("worker", "migration")]),
        0.0
    );
    let ops = "tritontube_metadata_operations_total";
    assert_eq!(
        s.get(
            ops,
            &[
                ("store", "sqlite"),
                ("op", "claim_video"),
                ("outcome", "ok")
            ]
        ),
        2.0,
        "the stored upload and the one that was not a video"
    );
    assert_eq!(
        s.get(ops, &[("op", "claim_video"), ("outcome", "already_exists")]),
        1.0
    );
    assert_eq!(
        s.get(ops, &[("op", "finish_video"), ("outcome", "ok")]),
        1.0
    );
    assert_eq!(
        s.sum("tritontube_metadata_errors_total", &[])
            .unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        s.get("tritontube_metadata_quorum", &[("store", "sqlite")]),
        1.0
    );

    // The admin service's cumulative counters agree with the scrape; the scrape itself
    // is one more request, counted once its answer was written.
    let mut admin = tritontube::admin_cli::connect(&web.admin, None).unwrap();
    let traffic = admin
        .traffic_stats(TrafficStatsRequest {})
        .await
        .expect("TrafficStats")
        .into_inner();
    let scraped_requests = s.get(requests, &[]) as u64;
    assert_eq!(traffic.requests, scraped_requests + 1);
    let scraped_bytes = s.get("tritontube_http_response_bytes_total", &[]) as u64;
    assert_eq!(traffic.bytes_served, scraped_bytes + text.len() as u64);
    assert_eq!(traffic.cache_hits, 2);
    assert_eq!(traffic.cache_misses, 4);
    assert_eq!(traffic.server_errors, 0);
    assert!(traffic.at_unix_ms >= traffic.started_at_unix_ms && traffic.started_at_unix_ms > 0);
    let again = admin
        .traffic_stats(TrafficStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.requests, traffic.requests,
        "RPCs are not HTTP requests"
    );
    assert_eq!(again.started_at_unix_ms, traffic.started_at_unix_ms);

    // Each storage node: its files, its writes and reads, its disk, and the series the
    // checksum and scrub code report into.
    let mut exposed = metric_names(&text);
    let mut files_on_nodes = 0.0;
    let mut bytes_on_nodes = 0.0;
    let mut writes = 0.0;
    let mut reads = 0.0;
    for node in &nodes {
        let text = scrape(&node.metrics_url).await;
        promtool_accepts(&node.address, &text);
        exposed.extend(metric_names(&text));
        let n = Samples::parse(&text);
        let held_here = held.values().filter(|h| h.contains(&node.address)).count();
        assert_eq!(
            n.get("tritontube_node_files", &[]),
            held_here as f64,
            "{}",
            node.address
        );
        files_on_nodes += n.get("tritontube_node_files", &[]);
        bytes_on_nodes += n.get("tritontube_node_bytes", &[]);
        assert!(held_here == 0 || n.get("tritontube_node_bytes", &[]) > 0.0);
        assert!(n.get("tritontube_node_disk_free_bytes", &[]) > 0.0);
        assert!(n.get("tritontube_node_disk_size_bytes", &[]) > 0.0);
        assert_eq!(n.get("tritontube_node_checksum_failures_total", &[]), 0.0);
        assert_eq!(n.get("tritontube_node_scrub_passes_total", &[]), 0.0);
        let rpcs = "tritontube_node_rpcs_total";
        writes += n
            .sum(rpcs, &[("op", "write"), ("outcome", "ok")])
            .unwrap_or(0.0);
        reads += n
            .sum(rpcs, &[("op", "read"), ("outcome", "ok")])
            .unwrap_or(0.0);
        assert_eq!(
            n.sum(rpcs, &[("op", "write")]),
            n.sum(
                "tritontube_node_rpc_duration_seconds_count",
                &[("op", "write")]
            ),
        );
    }
    assert_eq!(files_on_nodes, copies as f64);
    assert_eq!(
        bytes_on_nodes,
        2.0 * library_bytes,
        "two copies of the library"
    );
    assert_eq!(writes, copies as f64, "one write per copy");
    assert_eq!(
        reads,
        s.get(calls, &[("rpc", "GetFile"), ("outcome", "ok")]),
        "the nodes served the reads the web node made"
    );

    // Families appear with their first sample; the metadata errors one is checked by
    // the etcd test, which makes a write fail.
    exposed.insert("tritontube_metadata_errors_total".to_string());
    dashboard_queries_parse_and_name_exposed_metrics(&exposed);

    // A repair's progress: one copy lost on a node, a repair run through the admin
    // service, and the repair worker's gauges say what it did.
    let (lost_key, holders) = held.iter().next().expect("a stored key");
    StorageClient::connect_lazy(&holders[0])
        .unwrap()
        .delete(lost_key)
        .await
        .unwrap();
    let worker = admin
        .start_repair(StartRepairRequest {
            dry_run: false,
            verify: false,
        })
        .await
        .expect("StartRepair")
        .into_inner()
        .worker_id;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let workers = admin
            .list_workers(ListWorkersRequest {})
            .await
            .unwrap()
            .into_inner()
            .workers;
        if workers
            .iter()
            .any(|w| w.id == worker && matches!(w.state.as_str(), "done" | "failed"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the repair never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = scrape(&format!("{}/metrics", web.url)).await;
    promtool_accepts("web node after a repair", &text);
    let s = Samples::parse(&text);
    let repair = [("worker", "repair")];
    assert_eq!(s.get("tritontube_worker_running", &repair), 0.0);
    assert_eq!(s.get("tritontube_worker_errors", &repair), 0.0);
    assert!(s.get("tritontube_worker_files_done", &repair) >= 1.0);
    assert_eq!(
        s.get("tritontube_worker_files_done", &repair),
        s.get("tritontube_worker_files_planned", &repair)
    );
    assert!(s.get("tritontube_worker_bytes_done", &repair) > 0.0);
    assert_eq!(
        holdings_of(&addresses).await.get(lost_key),
        Some(holders),
        "the lost copy is back"
    );
}

/// Every metric name a scrape declares (`# TYPE`) or has samples of.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        names.extend(name.filter(|n| !n.is_empty()).map(String::from));
    }
    names
}

/// The repository's Grafana dashboard: every query is valid PromQL (promtool checks it as
/// a recording rule) and names only metrics the endpoints expose; the sample scrape
/// configs are valid Prometheus configs.
fn dashboard_queries_parse_and_name_exposed_metrics(exposed: &BTreeSet<String>) {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(docs.join("grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().expect("a query").to_string());
        }
    }
    assert!(queries.len() >= 30, "{} queries", queries.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        let concrete = query
            .replace("$__rate_interval", "1m")
            .replace("$web", ".*")
            .replace("$storage", ".*");
        rules += &format!(
            "      - record: dashboard:query_{i}\n        expr: '{}'\n",
            concrete.replace('\'', "''")
        );
        let mut rest = query.as_str();
        while let Some(at) = rest.find("tritontube_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            assert!(
                exposed.contains(name) || exposed.contains(base),
                "the dashboard queries {name}, which no endpoint exposes: {query}"
            );
            rest = &tail[end..];
        }
    }
    let work = tempfile::tempdir().unwrap();
    let rules_file = work.path().join("dashboard-rules.yml");
    std::fs::write(&rules_file, rules).unwrap();
    promtool_succeeds(&["check", "rules"], &rules_file);
    for config in ["prometheus.yml", "prometheus-etcd.yml"] {
        promtool_succeeds(&["check", "config", "--syntax-only"], &docs.join(config));
        // In full: the alert rules it loads are found and valid too.
        promtool_succeeds(&["check", "config"], &docs.join(config));
    }
    alerts_cover_the_data_at_risk(exposed, &queries);
}

/// Each data-at-risk gauge is exposed, drawn by the dashboard and alerted on by the
/// shipped rules, whose unit tests (firing when a gauge stays up, quiet when it heals)
/// promtool runs.
fn alerts_cover_the_data_at_risk(exposed: &BTreeSet<String>, queries: &[String]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let alerts = std::fs::read_to_string(root.join("docs/prometheus-alerts.yml")).unwrap();
    for gauge in [
        "tritontube_files_under_replicated",
        "tritontube_quarantined_copies",
        "tritontube_hinted_copies",
        "tritontube_resync_queue_length",
    ] {
        assert!(exposed.contains(gauge), "{gauge} is not exposed");
        assert!(
            queries.iter().any(|q| q.contains(gauge)),
            "the dashboard does not draw {gauge}"
        );
        assert!(
            alerts
                .lines()
                .any(|l| l.trim_start().starts_with("expr:") && l.contains(gauge)),
            "no alert rule on {gauge}"
        );
    }
    promtool_succeeds(
        &["check", "rules"],
        &root.join("docs/prometheus-alerts.yml"),
    );
    promtool_succeeds(
        &["test", "rules"],
        &root.join("tests/prometheus/alerts_test.yml"),
    );
}

fn promtool_succeeds(args: &[&str], file: &Path) {
    let output = Command::new("promtool")
        .args(args)
        .arg(file)
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool {args:?} {} failed: {}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A web node on SQLite over the nodes at `addresses`, with `replicas` copies.
async fn start_web_on(addresses: &[String], replicas: u32) -> support::web::WebNode {
    let work = tempfile::tempdir().expect("temp dir");
    let meta = MetaStore::sqlite(&work.path().join("metadata.db"))
        .await
        .expect("sqlite");
    let options = WebOptions {
        replicas,
        ..WebOptions::default()
    };
    let content = ContentSpec::Ring {
        seed_nodes: addresses.to_vec(),
        spares: Vec::new(),
        virtual_nodes: options.virtual_nodes,
        replicas,
        admin_token: None,
    };
    start_web(work, meta, content, options).await
}

/// Every key held by the nodes at `addresses`, with the nodes holding it.
async fn holdings_of(addresses: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for address in addresses {
        let client = tritontube::node::client::StorageClient::connect_lazy(address).unwrap();
        for info in client.keys(false).await.expect("list keys") {
            all.entry(info.key).or_default().push(address.clone());
        }
    }
    all
}

#[tokio::test]
async fn storage_command_serves_metrics_on_the_port_it_is_given() {
    support::require_tool("promtool", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let port = support::web::free_port();
    let metrics_port = support::web::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tritontube"))
        .args([
            "storage",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .arg(dir.path())
        .env("TRITONTUBE_METRICS_PORT", metrics_port.to_string())
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn a storage node");
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let mut text = None;
    for _ in 0..200 {
        if let Ok(response) = http_client().get(&url).send().await {
            text = Some(response.text().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = text.expect("the storage node never served its metrics");
    promtool_accepts("a storage node process", &text);
    let samples = Samples::parse(&text);
    assert_eq!(samples.get("tritontube_node_files", &[]), 0.0);
    assert!(samples.get("tritontube_node_disk_free_bytes", &[]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_quorum_gauge_follows_the_cluster() {
    support::require_tool("promtool", "prometheus");
    let mut etcd = EtcdCluster::start(3).await;
    let node = start_metered_node().await;
    let work = tempfile::tempdir().unwrap();
    let meta = MetaStore::etcd(&etcd.endpoints())
        .await
        .expect("etcd store");
    let content = ContentSpec::Ring {
        seed_nodes: vec![node.address.clone()],
        spares: Vec::new(),
        virtual_nodes: 8,
        replicas: 1,
        admin_token: None,
    };
    let web = start_web(work, meta, content, WebOptions::default()).await;
    let url = format!("{}/metrics", web.url);
    let quorum =
        |text: &str| Samples::parse(text).get("tritontube_metadata_quorum", &[("store", "etcd")]);

    let text = scrape(&url).await;
    promtool_accepts("a web node on etcd", &text);
    assert_eq!(quorum(&text), 1.0);

    // Two of three members down: no quorum, and the scrape still answers.
    let leader = etcd
        .wait_for_leader(std::time::Duration::from_secs(10))
        .await;
    let doomed: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for i in &doomed {
        etcd.kill(*i);
    }
    let text = scrape(&url).await;
    assert_eq!(quorum(&text), 0.0, "{text}");
    // A write fails fast, and is counted as a metadata error and an unavailable upload.
    let refused = upload_bytes(&web.url, "late.mp4", b"whatever".to_vec()).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let samples = Samples::parse(&scrape(&url).await);
    assert_eq!(
        samples.get(
            "tritontube_metadata_errors_total",
            &[
                ("store", "etcd"),
                ("op", "claim_video"),
                ("outcome", "unavailable")
            ]
        ),
        1.0
    );
    assert_eq!(
        samples.get("tritontube_uploads_total", &[("outcome", "unavailable")]),
        1.0
    );

    // Back up: the gauge returns to 1 by itself.
    for i in &doomed {
        etcd.restart(*i);
    }
    etcd.wait_for_leader(std::time::Duration::from_secs(20))
        .await;
    let mut back = false;
    for _ in 0..40 {
        if quorum(&scrape(&url).await) == 1.0 {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(back, "the quorum gauge never returned to 1");
}
