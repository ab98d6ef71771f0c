//! Web node fixtures: a real web node in the test process over real storage nodes and a
//! real SQLite file, test videos made by ffmpeg, and HTTP helpers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tritontube::meta::MetaStore;
use tritontube::web::{self, ContentSpec, WebConfig};

use super::StorageNode;

pub struct WebNode {
    pub url: String,
    /// Admin service address (`host:port`), for a ring.
    pub admin: String,
    pub meta: MetaStore,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    pub work: TempDir,
}

impl WebNode {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("web node task").expect("web node run");
        }
    }
}

impl Drop for WebNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct WebOptions {
    pub virtual_nodes: u32,
    pub replicas: u32,
    pub max_upload_bytes: u64,
    pub admin_token: Option<String>,
    pub upload_idle_timeout: std::time::Duration,
    /// Scheduled repairs; None in tests, which ask for repairs or trigger them.
    pub repair_every: Option<std::time::Duration>,
    /// Resumable uploads: how long a partial one is kept, and the bytes set aside for them.
    pub partial_upload_expiry: std::time::Duration,
    pub partial_upload_bytes: u64,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            virtual_nodes: tritontube::ring::DEFAULT_VIRTUAL_NODES,
            replicas: 1,
            max_upload_bytes: 64 * 1024 * 1024,
            admin_token: None,
            upload_idle_timeout: std::time::Duration::from_secs(60),
            repair_every: None,
            partial_upload_expiry: WebConfig::default().partial_upload_expiry,
            partial_upload_bytes: WebConfig::default().partial_upload_bytes,
        }
    }
}

/// A web node on SQLite in a temp folder, over the ring of `nodes`.
pub async fn start_web_ring(nodes: &[&StorageNode], options: WebOptions) -> WebNode {
    let work = tempfile::tempdir().expect("temp dir");
    let meta = MetaStore::sqlite(&work.path().join("metadata.db"))
        .await
        .expect("sqlite");
    let content = ContentSpec::Ring {
        seed_nodes: nodes.iter().map(|n| n.address()).collect(),
        spares: Vec::new(),
        virtual_nodes: options.virtual_nodes,
        replicas: options.replicas,
        admin_token: options.admin_token.clone(),
    };
    start_web(work, meta, content, options).await
}

/// A web node on the etcd cluster `etcd`, over the ring of `nodes` with `replicas` copies.
pub async fn start_web_on_etcd(
    etcd: &super::etcd::EtcdCluster,
    nodes: &[&StorageNode],
    replicas: u32,
) -> WebNode {
    let meta = MetaStore::etcd(&etcd.endpoints())
        .await
        .expect("etcd store");
    let content = ContentSpec::Ring {
        seed_nodes: nodes.iter().map(|n| n.address()).collect(),
        spares: Vec::new(),
        virtual_nodes: tritontube::ring::DEFAULT_VIRTUAL_NODES,
        replicas,
        admin_token: None,
    };
    start_web(
        tempfile::tempdir().expect("temp dir"),
        meta,
        content,
        WebOptions::default(),
    )
    .await
}

/// A web node in single-machine mode: files in one local folder.
pub async fn start_web_local(options: WebOptions) -> (WebNode, PathBuf) {
    let work = tempfile::tempdir().expect("temp dir");
    let meta = MetaStore::sqlite(&work.path().join("metadata.db"))
        .await
        .expect("sqlite");
    let dir = work.path().join("files");
    let node = start_web(work, meta, ContentSpec::Local(dir.clone()), options).await;
    (node, dir)
}

pub async fn start_web(
    work: TempDir,
    meta: MetaStore,
    content: ContentSpec,
    options: WebOptions,
) -> WebNode {
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let url = format!("http://{}", http.local_addr().unwrap());
    let admin_address = admin.local_addr().unwrap().to_string();
    let config = WebConfig {
        max_upload_bytes: options.max_upload_bytes,
        work_dir: work.path().join("uploads"),
        cache_bytes: 32 * 1024 * 1024,
        upload_idle_timeout: options.upload_idle_timeout,
        repair_every: options.repair_every,
        partial_upload_expiry: options.partial_upload_expiry,
        partial_upload_bytes: options.partial_upload_bytes,
        ..WebConfig::default()
    };
    let shutdown = CancellationToken::new();
    let admin = matches!(content, ContentSpec::Ring { .. }).then_some(admin);
    let task = tokio::spawn(web::run(
        http,
        admin,
        meta.clone(),
        content,
        config,
        shutdown.clone(),
    ));
    // Answering HTTP means start-up is over (abandoned uploads cleared, ring loaded), so
    // what a test writes next cannot race with it.
    let client = http_client();
    for _ in 0..600 {
        if task.is_finished() {
            break;
        }
        let answered = client.get(format!("{url}/healthz")).send().await;
        if answered.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    WebNode {
        url,
        admin: admin_address,
        meta,
        shutdown,
        task: Some(task),
        work,
    }
}

/// An MP4 made by ffmpeg from its test sources: `seconds` long, with a tone.
pub fn make_video(dir: &Path, file_name: &str, seconds: u32, size: &str) -> PathBuf {
    let path = dir.join(file_name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=25"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make the test video");
    path
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// POSTs `data` as the `file` field named `file_name`.
pub async fn upload_bytes(url: &str, file_name: &str, data: Vec<u8>) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(data)
        .file_name(file_name.to_string())
        .mime_str("video/mp4")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    http_client()
        .post(format!("{url}/upload"))
        .multipart(form)
        .send()
        .await
        .expect("upload request")
}

pub async fn upload_file(url: &str, path: &Path, file_name: &str) -> reqwest::Response {
    upload_bytes(url, file_name, std::fs::read(path).expect("read video")).await
}

/// Every key held by the nodes, with the nodes holding it.
pub async fn holdings(nodes: &[&StorageNode]) -> BTreeMap<String, Vec<String>> {
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in nodes {
        for info in node.client().keys(false).await.expect("list keys") {
            all.entry(info.key).or_default().push(node.address());
        }
    }
    for holders in all.values_mut() {
        holders.sort();
    }
    all
}

/// Decodes the whole stream behind `manifest_url` with ffprobe; returns the video frames
/// it read.
pub fn decoded_frames(manifest_url: &str) -> u64 {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(manifest_url)
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe could not read {manifest_url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // One line per program and per stream, all with the same count.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.trim().trim_end_matches(',').parse().ok())
        .unwrap_or(0)
}

/// A free loopback port (bound, then released), for servers run as separate processes.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tritontube web` as a child process, so a test can kill it with SIGKILL.
pub struct WebProcess {
    pub child: std::process::Child,
    pub url: String,
    pub admin: String,
}

impl WebProcess {
    /// Starts `tritontube web --port HTTP sqlite DB nw ADMIN,NODES…` and waits until the
    /// admin service answers.
    pub async fn spawn(
        db: &Path,
        nodes: &[String],
        http_port: u16,
        admin_port: u16,
        extra: &[&str],
    ) -> Self {
        let admin = format!("127.0.0.1:{admin_port}");
        let mut list = vec![admin.clone()];
        list.extend(nodes.iter().cloned());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tritontube"))
            .args([
                "web",
                "--host",
                "127.0.0.1",
                "--port",
                &http_port.to_string(),
            ])
            .args(extra)
            .arg("sqlite")
            .arg(db)
            .args(["nw", &list.join(",")])
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn web node");
        let process = WebProcess {
            child,
            url: format!("http://127.0.0.1:{http_port}"),
            admin,
        };
        let mut client = tritontube::admin_cli::connect(&process.admin, None).unwrap();
        for _ in 0..200 {
            let request = tritontube::proto::admin::ListNodesRequest {};
            if client.list_nodes(request).await.is_ok() {
                return process;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the web node did not start");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WebProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The ring's nodes, as the admin service at `admin` lists them.
pub async fn ring_nodes(admin: &str) -> BTreeSet<String> {
    tritontube::admin_cli::connect(admin, None)
        .unwrap()
        .list_nodes(tritontube::proto::admin::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes
        .into_iter()
        .collect()
}

/// A Node command that runs one of `tests/browser`'s scripts (Playwright driving the
/// system's Chromium); fails loudly when the npm packages are missing.
pub fn browser_script(script: &str) -> tokio::process::Command {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "run scripts/setup.sh first: it installs the browser test's npm packages (playwright-core)"
    );
    let mut command = tokio::process::Command::new("node");
    command.arg(browser_dir.join(script));
    command
}

/// Runs a browser script to its end and returns the JSON report it printed; a script
/// that fails (any page error, failed request or failed check) fails the test, naming
/// `what` with everything the script said.
pub async fn run_browser(command: &mut tokio::process::Command, what: &str) -> serde_json::Value {
    let output = command.output().await.expect("node runs (install Node.js)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{what} failed: {report} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    eprintln!("the browser saw: {seen}");
    seen
}
