//! The cluster on several hosts: network namespaces on a bridge (tests/support/netns.rs),
//! a 3-member etcd cluster, three storage nodes and two web nodes, each on its own host
//! address, every internal link mutual TLS with certificates made by `tritontube cert`.
//! Needs root; fails, naming why, when it cannot make the namespaces.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use support::netns::{Network, wait_listening};
use support::web::{decoded_frames, http_client, make_video, upload_bytes};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tritontube::admin_cli::{AdminClient, Caller};
use tritontube::proto::admin::video_content_admin_service_client::VideoContentAdminServiceClient;
use tritontube::proto::admin::{
    AddNodeRequest, ClusterHealthRequest, DeleteVideoRequest, ListNodesRequest, RemoveNodeRequest,
    StartRepairRequest,
};
use tritontube::proto::storage::storage_service_client::StorageServiceClient;
use tritontube::proto::storage::{DeleteRequest, DownloadRequest, ListFilesRequest, UploadRequest};
use tritontube::trust::tls::ClusterTls;

const ETCD: [&str; 3] = ["e1", "e2", "e3"];
const STORAGE: [&str; 3] = ["s1", "s2", "s3"];
const WEB: [&str; 2] = ["w1", "w2"];
const REPLICAS: u32 = 2;
const STORAGE_PORT: u16 = 8090;
const HTTP_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 8081;
/// A bound on waits for things that happen by themselves (start-up, hand-over): long
/// enough for a loaded 2-core machine, and a failure instead of a hang.
const PATIENCE: Duration = Duration::from_secs(120);

fn tritontube_cert(certs: &Path, args: &[&str]) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tritontube"))
        .arg("cert")
        .args(args)
        .arg("--certs-dir")
        .arg(certs)
        .output()
        .expect("run tritontube cert");
    assert!(output.status.success(), "cert {args:?}: {output:?}");
}

/// The hosts and what runs on them.
struct Cluster {
    net: Network,
    dir: tempfile::TempDir,
    certs: PathBuf,
    /// Another CA's certificates (a node's and an operator's), for outsiders.
    foreign: PathBuf,
}

impl Cluster {
    async fn start() -> Cluster {
        support::require_tool("etcd", "etcd-server");
        let mut names: Vec<&str> = Vec::new();
        names.extend(ETCD);
        names.extend(STORAGE);
        names.extend(WEB);
        names.push("outsider");
        let net = Network::new(&names);
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let foreign = dir.path().join("foreign");
        let every_address: Vec<String> = names
            .iter()
            .filter(|n| **n != "outsider")
            .map(|n| net.address(n).to_string())
            .collect();
        for certs_dir in [&certs, &foreign] {
            tritontube_cert(certs_dir, &["create-ca"]);
            let mut node = vec!["create-node"];
            node.extend(every_address.iter().map(String::as_str));
            tritontube_cert(certs_dir, &node);
            tritontube_cert(certs_dir, &["create-client", "root"]);
        }
        let mut cluster = Cluster {
            net,
            dir,
            certs,
            foreign,
        };
        cluster.start_etcd();
        for host in STORAGE {
            cluster.start_storage(host);
        }
        for host in STORAGE {
            wait_listening(&cluster.storage_address(host), PATIENCE, host).await;
        }
        for host in WEB {
            cluster.start_web(host);
        }
        for host in WEB {
            cluster.wait_web(host).await;
        }
        cluster
    }

    fn log(&self, what: &str) -> PathBuf {
        self.dir.path().join(format!("{what}.log"))
    }

    fn start_etcd(&mut self) {
        let peers: BTreeMap<&str, String> = ETCD
            .iter()
            .map(|h| (*h, format!("https://{}:2380", self.net.address(h))))
            .collect();
        let peer = |host: &str| peers[host].clone();
        let initial = ETCD
            .iter()
            .map(|h| format!("{h}={}", peer(h)))
            .collect::<Vec<_>>()
            .join(",");
        let cert = self.certs.join("node.crt");
        let key = self.certs.join("node.key");
        let ca = self.certs.join("ca.crt");
        for host in ETCD {
            let client_url = format!("https://{}:2379", self.net.address(host));
            let mut command = self.net.command(host, "etcd");
            command
                .args(["--name", host, "--data-dir"])
                .arg(self.dir.path().join(format!("{host}.etcd")))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer(host)])
                .args(["--initial-advertise-peer-urls", &peer(host)])
                .args(["--initial-cluster", &initial])
                .args([
                    "--initial-cluster-token",
                    &format!("tt-{}", self.net.gateway),
                ])
                .arg("--cert-file")
                .arg(&cert)
                .arg("--key-file")
                .arg(&key)
                .arg("--trusted-ca-file")
                .arg(&ca)
                .arg("--client-cert-auth")
                .arg("--peer-cert-file")
                .arg(&cert)
                .arg("--peer-key-file")
                .arg(&key)
                .arg("--peer-trusted-ca-file")
                .arg(&ca)
                .arg("--peer-client-cert-auth");
            let log = self.log(host);
            self.net.spawn(command, &log);
        }
    }

    fn store(&self, host: &str) -> PathBuf {
        self.dir.path().join(format!("{host}.store"))
    }

    fn storage_address(&self, host: &str) -> String {
        format!("{}:{STORAGE_PORT}", self.net.address(host))
    }

    fn start_storage(&mut self, host: &str) {
        let mut command = self.net.command(host, env!("CARGO_BIN_EXE_tritontube"));
        command
            .args(["storage", "--host", &self.net.address(host).to_string()])
            .args(["--port", &STORAGE_PORT.to_string()])
            .arg("--certs-dir")
            .arg(&self.certs)
            .arg(self.store(host))
            .env("RUST_LOG", "warn");
        let log = self.log(host);
        self.net.spawn(command, &log);
    }

    fn url(&self, web: &str) -> String {
        format!("http://{}:{HTTP_PORT}", self.net.address(web))
    }

    fn admin_address(&self, web: &str) -> String {
        format!("{}:{ADMIN_PORT}", self.net.address(web))
    }

    fn start_web(&mut self, host: &str) {
        let etcd = ETCD
            .iter()
            .map(|h| format!("{}:2379", self.net.address(h)))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = vec![self.admin_address(host)];
        nodes.extend(STORAGE.iter().map(|h| self.storage_address(h)));
        let mut command = self.net.command(host, env!("CARGO_BIN_EXE_tritontube"));
        command
            .args(["web", "--host", &self.net.address(host).to_string()])
            .args(["--port", &HTTP_PORT.to_string()])
            .args(["--replicas", &REPLICAS.to_string()])
            .args(["--ladder", "240p:400k"])
            .arg("--certs-dir")
            .arg(&self.certs)
            .arg("--work-dir")
            .arg(self.dir.path())
            .args(["etcd", &etcd, "nw", &nodes.join(",")])
            .env("RUST_LOG", "warn");
        let log = self.log(host);
        self.net.spawn(command, &log);
    }

    async fn wait_web(&self, host: &str) {
        let url = format!("{}/healthz", self.url(host));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            if let Ok(answer) = http_client().get(&url).send().await
                && answer.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self.log(host)).unwrap_or_default();
        panic!("web node {host} never became healthy; its log:\n{log}");
    }

    /// The operator's console link to a web node's admin service.
    fn operator(&self, web: &str) -> AdminClient {
        Caller {
            token: None,
            tls: Some(ClusterTls::client(&self.certs, "root").unwrap()),
        }
        .connect(&self.admin_address(web))
        .unwrap()
    }

    /// Every file in every store (the nodes' own bookkeeping aside) with its bytes.
    fn disks(&self) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        STORAGE
            .iter()
            .map(|host| (host.to_string(), store_contents(&self.store(host))))
            .collect()
    }

    /// Which storage hosts hold each key, on disk.
    fn holders(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut held: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (host, files) in self.disks() {
            for key in files.keys() {
                held.entry(key.clone())
                    .or_default()
                    .insert(self.storage_address(&host));
            }
        }
        held
    }
}

fn store_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    support::files_under(dir)
        .into_iter()
        .filter(|path| !path.split('/').any(|part| part.starts_with('.')))
        .filter(|path| dir.join(path).is_file())
        .map(|path| {
            let bytes = std::fs::read(dir.join(&path)).unwrap();
            (path, bytes)
        })
        .collect()
}

/// A short, small test video.
fn clip(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(make_video(dir, &format!("{name}.mp4"), 2, "320x240")).unwrap()
}

/// Polls `done` until it holds, failing the test after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn fetch(url: &str) -> (StatusCode, Vec<u8>) {
    let answer = http_client().get(url).send().await.expect("GET");
    (answer.status(), answer.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_uploaded_through_one_web_host_plays_through_both() {
    let cluster = Cluster::start().await;
    let videos = tempfile::tempdir().unwrap();
    let uploaded = upload_bytes(&cluster.url("w1"), "crossing.mp4", clip(videos.path(), "c")).await;
    assert_eq!(uploaded.status(), StatusCode::SEE_OTHER);

    let manifest = |web: &str| format!("{}/content/crossing/manifest.mpd", cluster.url(web));
    eventually("the manifest through the other web host", || async {
        fetch(&manifest("w2")).await.0 == StatusCode::OK
    })
    .await;
    let (_, served) = fetch(&manifest("w2")).await;
    assert_eq!(fetch(&manifest("w1")).await, (StatusCode::OK, served));
    for web in WEB {
        let url = manifest(web);
        let frames = tokio::task::spawn_blocking(move || decoded_frames(&url))
            .await
            .unwrap();
        assert!(frames >= 2 * 25 - 5, "{web}: {frames} frames");
    }
    // Every file is on the storage hosts' disks, R copies each.
    let held = cluster.holders();
    assert!(
        held.keys().any(|k| k == "crossing/manifest.mpd"),
        "{held:?}"
    );
    assert!(
        held.values().all(|h| h.len() == REPLICAS as usize),
        "{held:?}"
    );
}

/// Whether every key on the disks sits on exactly its R owners; says what is wrong when not.
fn placed_on_owners(cluster: &Cluster) -> bool {
    let addresses: Vec<String> = STORAGE.iter().map(|h| cluster.storage_address(h)).collect();
    let ring = support::ring_of(&addresses, REPLICAS);
    let misplaced: Vec<_> = cluster
        .holders()
        .into_iter()
        .filter(|(key, holders)| {
            let owners: BTreeSet<String> = ring.owners(key).into_iter().map(String::from).collect();
            *holders != owners || owners.len() != REPLICAS as usize
        })
        .collect();
    if !misplaced.is_empty() {
        eprintln!("not on their owners: {misplaced:?}");
    }
    misplaced.is_empty()
}

async fn hinted(cluster: &Cluster, web: &str) -> u64 {
    cluster
        .operator(web)
        .cluster_health(ClusterHealthRequest {})
        .await
        .expect("cluster health")
        .into_inner()
        .hinted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_host_cut_off_during_an_upload_gets_its_copies_back() {
    let cluster = Cluster::start().await;
    let videos = tempfile::tempdir().unwrap();
    let video = clip(videos.path(), "c");

    // The link goes down while the upload is in flight (sent, then transcoded for a
    // second or more before any copy is written).
    let url = cluster.url("w1");
    let upload = tokio::spawn(async move { upload_bytes(&url, "detour.mp4", video).await });
    cluster.net.cut("s3");
    let uploaded = upload.await.unwrap();
    assert_eq!(uploaded.status(), StatusCode::SEE_OTHER);
    let manifest = format!("{}/content/detour/manifest.mpd", cluster.url("w2"));
    assert_eq!(fetch(&manifest).await.0, StatusCode::OK);
    assert!(
        cluster.disks()["s3"].is_empty(),
        "the cut-off host got files"
    );
    assert!(hinted(&cluster, "w1").await > 0, "s3's copies are hinted");
    let keys: BTreeSet<String> = cluster.holders().into_keys().collect();
    assert!(keys.contains("detour/manifest.mpd"), "{keys:?}");

    // The link comes back: the health monitor sees s3 return and hands its copies over.
    cluster.net.restore("s3");
    eventually("s3's copies to be handed back", || async {
        hinted(&cluster, "w1").await == 0
            && cluster.holders().into_keys().collect::<BTreeSet<_>>() == keys
            && placed_on_owners(&cluster)
    })
    .await;
    assert!(!cluster.disks()["s3"].is_empty());
}

fn pem(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The ways a host outside the cluster may try to call: (what, TLS settings). Each trusts
/// the cluster's CA, so that it is the server, not the caller, that refuses.
fn outsiders(cluster: &Cluster) -> Vec<(&'static str, Option<ClientTlsConfig>)> {
    let trusting = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem(&cluster.certs.join("ca.crt"))))
    };
    let foreign = |name: &str| {
        trusting().identity(Identity::from_pem(
            pem(&cluster.foreign.join(format!("{name}.crt"))),
            pem(&cluster.foreign.join(format!("{name}.key"))),
        ))
    };
    vec![
        ("a plain connection", None),
        ("TLS without a certificate", Some(trusting())),
        ("a node certificate of another CA", Some(foreign("node"))),
        (
            "an operator certificate of another CA",
            Some(foreign("client.root")),
        ),
    ]
}

/// A channel to `address`, or none when the handshake is refused at once.
async fn channel(address: &str, tls: Option<ClientTlsConfig>) -> Option<Channel> {
    let endpoint = match tls {
        None => Endpoint::from_shared(format!("http://{address}")).unwrap(),
        Some(tls) => Endpoint::from_shared(format!("https://{address}"))
            .unwrap()
            .tls_config(tls)
            .unwrap(),
    };
    endpoint
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .ok()
}

/// Lists, reads, writes and deletes on a storage node; panics on a call that went through.
async fn try_storage(channel: Channel, existing: &str, what: &str) {
    let mut client = StorageServiceClient::new(channel);
    let data = b"written from outside".to_vec();
    let calls = [
        (
            "list",
            client.list_files(ListFilesRequest {}).await.map(drop),
        ),
        (
            "read",
            client
                .download_file(DownloadRequest {
                    key: existing.into(),
                })
                .await
                .map(drop),
        ),
        (
            "write",
            client
                .upload_file(UploadRequest {
                    key: "intruder/a.m4s".into(),
                    data: data.into(),
                })
                .await
                .map(drop),
        ),
        (
            "delete",
            client
                .delete_file(DeleteRequest {
                    key: existing.into(),
                })
                .await
                .map(drop),
        ),
    ];
    for (call, result) in calls {
        assert!(result.is_err(), "{what}: storage {call} went through");
    }
}

/// Lists, changes the ring, repairs and deletes on an admin service; panics on a call
/// that went through.
async fn try_admin(channel: Channel, cluster: &Cluster, what: &str) {
    let mut client = VideoContentAdminServiceClient::new(channel);
    let node = cluster.storage_address("s1");
    let calls = [
        (
            "list",
            client.list_nodes(ListNodesRequest {}).await.map(drop),
        ),
        (
            "add",
            client
                .add_node(AddNodeRequest {
                    node_address: format!("{}:{STORAGE_PORT}", cluster.net.address("outsider")),
                })
                .await
                .map(drop),
        ),
        (
            "remove",
            client
                .remove_node(RemoveNodeRequest { node_address: node })
                .await
                .map(drop),
        ),
        (
            "repair",
            client
                .start_repair(StartRepairRequest {
                    dry_run: false,
                    verify: false,
                })
                .await
                .map(drop),
        ),
        (
            "delete",
            client
                .delete_video(DeleteVideoRequest { id: "kept".into() })
                .await
                .map(drop),
        ),
    ];
    for (call, result) in calls {
        assert!(result.is_err(), "{what}: admin {call} went through");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_outside_the_cluster_can_do_nothing() {
    let cluster = Cluster::start().await;
    let videos = tempfile::tempdir().unwrap();
    let uploaded = upload_bytes(&cluster.url("w1"), "kept.mp4", clip(videos.path(), "c")).await;
    assert_eq!(uploaded.status(), StatusCode::SEE_OTHER);
    let manifest = format!("{}/content/kept/manifest.mpd", cluster.url("w2"));
    let (status, served) = fetch(&manifest).await;
    assert_eq!(status, StatusCode::OK);
    let before = cluster.disks();
    assert!(before.values().all(|files| !files.is_empty()), "{before:?}");

    // The same calls with the cluster's node certificate go through: the refusals below
    // are the certificates', not the network's.
    let member = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem(&cluster.certs.join("ca.crt"))))
        .identity(Identity::from_pem(
            pem(&cluster.certs.join("node.crt")),
            pem(&cluster.certs.join("node.key")),
        ));
    for host in STORAGE {
        let connected = channel(&cluster.storage_address(host), Some(member.clone()))
            .await
            .expect("a member connects");
        StorageServiceClient::new(connected)
            .list_files(ListFilesRequest {})
            .await
            .expect("a member lists");
    }

    // The test process calls from its own address on the bridge, outside the cluster.
    for (what, tls) in outsiders(&cluster) {
        for host in STORAGE {
            if let Some(connected) = channel(&cluster.storage_address(host), tls.clone()).await {
                try_storage(connected, "kept/manifest.mpd", what).await;
            }
        }
        for web in WEB {
            if let Some(connected) = channel(&cluster.admin_address(web), tls.clone()).await {
                try_admin(connected, &cluster, what).await;
            }
        }
    }

    // From the outsider host itself, with the project's own tools.
    let foreign = cluster.foreign.to_str().unwrap().to_string();
    for web in WEB {
        let admin = cluster.admin_address(web);
        for extra in [vec![], vec!["--certs-dir", foreign.as_str()]] {
            for command in [
                vec!["list", admin.as_str()],
                vec!["delete", admin.as_str(), "kept"],
            ] {
                let output = cluster
                    .net
                    .command("outsider", env!("CARGO_BIN_EXE_tritontube"))
                    .arg("admin")
                    .args(&extra)
                    .args(&command)
                    .env_remove("TRITONTUBE_CERTS_DIR")
                    .output()
                    .unwrap();
                assert!(
                    !output.status.success(),
                    "admin {extra:?} {command:?} from outside: {output:?}"
                );
            }
        }
        let deleted = cluster
            .net
            .command("outsider", "curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "DELETE",
            ])
            .arg(format!("{}/api/videos/kept", cluster.url(web)))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&deleted.stdout),
            "401",
            "{deleted:?}"
        );
    }

    assert_eq!(cluster.disks(), before, "a file changed on a storage host");
    let listed = cluster
        .operator("w1")
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let expected: Vec<String> = STORAGE.iter().map(|h| cluster.storage_address(h)).collect();
    assert_eq!(
        listed.into_iter().collect::<BTreeSet<_>>(),
        expected.into_iter().collect()
    );
    assert_eq!(fetch(&manifest).await, (StatusCode::OK, served));
}

/// Uploads `video` until a web node accepts it, within [`PATIENCE`]; each attempt under
/// a new id (`ID-N`), since one that timed out on the client may still have claimed its
/// id. Returns the accepted id.
async fn upload_until_accepted(url: &str, id: &str, video: &[u8]) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    for attempt in 0.. {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let name = format!("{id}-{attempt}");
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            upload_bytes(url, &format!("{name}.mp4"), video.to_vec()),
        )
        .await;
        match answer {
            Ok(answer) if answer.status() == StatusCode::SEE_OTHER => return name,
            Ok(answer) => seen.push(format!(
                "{}: {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            )),
            Err(_) => seen.push("no answer within 30 s".into()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{url} never accepted {id}; answers: {seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_host_cut_off_from_the_etcd_majority_answers_503_and_recovers() {
    let cluster = Cluster::start().await;
    let videos = tempfile::tempdir().unwrap();
    let video = clip(videos.path(), "c");
    upload_until_accepted(&cluster.url("w1"), "before", &video).await;

    // w1 and e1 on one side, the majority (e2, e3) on the other; w1 still reaches the
    // storage hosts, w2 and the test.
    let minority = ["w1", "e1"];
    let majority = ["e2", "e3"];
    for a in minority {
        for b in majority {
            cluster.net.separate(a, b);
        }
    }
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        upload_bytes(&cluster.url("w1"), "cut.mp4", video.clone()),
    )
    .await
    .expect("a write without the etcd majority must not hang");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = refused.text().await.unwrap();
    assert!(body.contains("metadata store"), "{body}");
    // The other web host, on the majority's side, still takes uploads.
    let written = upload_until_accepted(&cluster.url("w2"), "majority", &video).await;
    assert!(
        cluster.holders().keys().all(|k| !k.starts_with("cut/")),
        "the refused upload left files"
    );

    // The partition heals: w1 takes writes again by itself.
    for a in minority {
        for b in majority {
            cluster.net.join(a, b);
        }
    }
    upload_until_accepted(&cluster.url("w1"), "after", &video).await;
    let (status, _) = fetch(&format!(
        "{}/content/{written}/manifest.mpd",
        cluster.url("w1")
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
}
