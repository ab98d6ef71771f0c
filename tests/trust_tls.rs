//! Mutual TLS on the internal links, with certificates made by `tritontube cert`:
//! storage nodes serve only members of the cluster, the web node calls them over TLS, and
//! the admin service and HTTP DELETE need the operator's credential. Every refusal leaves
//! the stores and the metadata as they were.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::certs::{Certs, make_certs};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tritontube::meta::MetaStore;
use tritontube::node::server::{NodeOptions, run_secure};
use tritontube::proto::admin::video_content_admin_service_client::VideoContentAdminServiceClient;
use tritontube::proto::admin::{
    AddNodeRequest, CancelChangeRequest, ChangeKind, DeleteVideoRequest, ListNodesRequest,
    RemoveNodeRequest, StartChangeRequest, StartRepairRequest,
};
use tritontube::proto::storage::storage_service_client::StorageServiceClient;
use tritontube::proto::storage::{
    DeleteFilesRequest, DeleteRequest, DownloadRequest, GetFileRequest, ListFilesRequest,
    PullFileRequest, PutFileChunk, ScrubRequest, UploadRequest,
};
use tritontube::trust::certs;
use tritontube::trust::tls::ClusterTls;
use tritontube::web::{ContentSpec, WebConfig};

fn pem(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A client that trusts the cluster CA and shows `identity` (cert, key), if any.
fn client_tls(certs: &Certs, identity: Option<(&Path, &str)>) -> ClientTlsConfig {
    let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem(&certs
        .cluster
        .join(certs::CA_CERT))));
    match identity {
        None => config,
        Some((dir, name)) => config.identity(Identity::from_pem(
            pem(&dir.join(format!("{name}.crt"))),
            pem(&dir.join(format!("{name}.key"))),
        )),
    }
}

/// Every way an outsider or a wrong member may try to call: (what, TLS settings).
fn strangers(certs: &Certs) -> Vec<(&'static str, Option<ClientTlsConfig>)> {
    vec![
        ("a plain connection", None),
        ("TLS without a certificate", Some(client_tls(certs, None))),
        (
            "a node certificate of another CA",
            Some(client_tls(certs, Some((&certs.foreign, "node")))),
        ),
        (
            "an operator certificate of another CA",
            Some(client_tls(certs, Some((&certs.foreign, "client.root")))),
        ),
    ]
}

async fn channel(address: &str, tls: Option<ClientTlsConfig>) -> Option<Channel> {
    let endpoint = match tls {
        None => Endpoint::from_shared(format!("http://{address}")).unwrap(),
        Some(tls) => Endpoint::from_shared(format!("https://{address}"))
            .unwrap()
            .tls_config(tls)
            .unwrap(),
    };
    // A refused handshake may fail the connection or, later, the first call.
    endpoint
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .ok()
}

struct TlsNode {
    address: String,
    dir: PathBuf,
    _temp: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_tls_node(certs_dir: &Path) -> TlsNode {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let tls = ClusterTls::node(certs_dir).unwrap();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let served = dir.clone();
    tokio::spawn(async move {
        run_secure(
            listener,
            None,
            served,
            NodeOptions::default(),
            Some(tls),
            stopped.cancelled_owned(),
        )
        .await
        .unwrap();
    });
    TlsNode {
        address,
        dir,
        _temp: temp,
        stop,
    }
}

/// Every file under the store (the node's own bookkeeping aside) with its bytes.
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

/// Tries every storage RPC that reads, lists, writes or deletes; returns the status code
/// of each call that was refused, and panics on one that went through.
async fn try_every_storage_call(
    channel: Option<Channel>,
    existing: &str,
    source: &str,
    what: &str,
) -> Vec<tonic::Code> {
    let Some(channel) = channel else {
        return Vec::new();
    };
    let mut client = StorageServiceClient::new(channel);
    let data = b"written by a stranger".to_vec();
    let sha = support::sha256_hex(&data);
    let results = vec![
        client
            .upload_file(UploadRequest {
                key: "intruder/a.m4s".into(),
                data: data.clone().into(),
            })
            .await
            .map(drop),
        client
            .put_file(tokio_stream::iter(vec![PutFileChunk {
                key: "intruder/b.m4s".into(),
                data: data.clone().into(),
                ..Default::default()
            }]))
            .await
            .map(drop),
        client
            .pull_file(PullFileRequest {
                key: "intruder/c.m4s".into(),
                source_address: source.into(),
                expected_sha256: sha,
            })
            .await
            .map(drop),
        client
            .delete_file(DeleteRequest {
                key: existing.into(),
            })
            .await
            .map(drop),
        client
            .delete_files(DeleteFilesRequest {
                keys: vec![existing.into()],
            })
            .await
            .map(drop),
        client
            .scrub(ScrubRequest { start_now: true })
            .await
            .map(drop),
        client
            .download_file(DownloadRequest {
                key: existing.into(),
            })
            .await
            .map(drop),
        client
            .get_file(GetFileRequest {
                key: existing.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        client.list_files(ListFilesRequest {}).await.map(drop),
    ];
    results
        .into_iter()
        .enumerate()
        .map(|(call, result)| match result {
            Ok(()) => panic!("{what}: storage call #{call} went through"),
            Err(status) => status.code(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_nodes_serve_only_members_of_the_cluster() {
    let certs = make_certs();
    let node = start_tls_node(&certs.cluster).await;
    let other = start_tls_node(&certs.cluster).await;

    // A member (a node certificate of the cluster CA) writes and reads.
    let member = client_tls(&certs, Some((&certs.cluster, "node")));
    let mut client = StorageServiceClient::new(
        channel(&node.address, Some(member.clone()))
            .await
            .expect("a member connects"),
    );
    let kept = b"a member's file".to_vec();
    let stored = client
        .upload_file(UploadRequest {
            key: "kept/manifest.mpd".into(),
            data: kept.clone().into(),
        })
        .await
        .unwrap();
    assert!(stored.into_inner().success);
    // Node to node over TLS: the other node pulls the file from this one.
    let mut other_client =
        StorageServiceClient::new(channel(&other.address, Some(member.clone())).await.unwrap());
    other_client
        .pull_file(PullFileRequest {
            key: "kept/manifest.mpd".into(),
            source_address: node.address.clone(),
            expected_sha256: support::sha256_hex(&kept),
        })
        .await
        .expect("a node pulls from another over TLS");
    let before = store_contents(&node.dir);
    assert_eq!(before.get("kept/manifest.mpd"), Some(&kept));
    assert_eq!(
        store_contents(&other.dir).get("kept/manifest.mpd"),
        Some(&kept)
    );

    for (what, tls) in strangers(&certs) {
        let connected = channel(&node.address, tls).await;
        try_every_storage_call(connected, "kept/manifest.mpd", &other.address, what).await;
        assert_eq!(
            store_contents(&node.dir),
            before,
            "{what} changed the store"
        );
    }

    // An operator's certificate is the cluster's, but storage is for nodes only.
    let operator = client_tls(&certs, Some((&certs.cluster, "client.root")));
    let connected = channel(&node.address, Some(operator)).await;
    assert!(
        connected.is_some(),
        "the operator's certificate passes the handshake"
    );
    let codes = try_every_storage_call(
        connected,
        "kept/manifest.mpd",
        &other.address,
        "an operator certificate",
    )
    .await;
    assert!(
        codes.iter().all(|c| *c == tonic::Code::PermissionDenied),
        "{codes:?}"
    );
    assert_eq!(store_contents(&node.dir), before);

    // The direct-copy protocol, spoken in the clear on the node's port, gets nothing.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(&node.address).await.unwrap();
    raw.write_all(b"TTCOPY1\nkept/manifest.mpd\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        raw.read_to_end(&mut answer),
    )
    .await;
    assert!(
        !answer.windows(kept.len()).any(|w| w == kept.as_slice()),
        "a plain copy request was served"
    );
    assert!(!answer.starts_with(b"OK"), "{answer:?}");
}

struct TlsWeb {
    admin: String,
    url: String,
    meta: MetaStore,
    _work: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for TlsWeb {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_tls_web(certs: &Certs, nodes: &[&TlsNode], token: &str) -> TlsWeb {
    let work = tempfile::tempdir().unwrap();
    let meta = MetaStore::sqlite(&work.path().join("meta.db"))
        .await
        .unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", http.local_addr().unwrap());
    let admin_address = admin.local_addr().unwrap().to_string();
    let config = WebConfig {
        work_dir: work.path().join("uploads"),
        cluster_tls: Some(ClusterTls::node(&certs.cluster).unwrap()),
        repair_every: None,
        ..WebConfig::default()
    };
    let content = ContentSpec::Ring {
        seed_nodes: nodes.iter().map(|n| n.address.clone()).collect(),
        spares: Vec::new(),
        virtual_nodes: tritontube::ring::DEFAULT_VIRTUAL_NODES,
        replicas: 1,
        admin_token: Some(token.into()),
    };
    let stop = CancellationToken::new();
    let (served_meta, stopped) = (meta.clone(), stop.clone());
    tokio::spawn(async move {
        tritontube::web::run(http, Some(admin), served_meta, content, config, stopped)
            .await
            .unwrap();
    });
    TlsWeb {
        admin: admin_address,
        url,
        meta,
        _work: work,
        stop,
    }
}

fn operator(certs: &Certs) -> ClusterTls {
    ClusterTls::client(&certs.cluster, "root").unwrap()
}

async fn ring_nodes(web: &TlsWeb, certs: &Certs) -> Vec<String> {
    let tls = operator(certs);
    let mut client =
        tritontube::admin_cli::connect_tls(&web.admin, None, Some(&tls)).expect("connect");
    let mut nodes = client
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    nodes.sort();
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_and_deletes_need_the_operators_credential() {
    let certs = make_certs();
    let (a, b, newcomer) = (
        start_tls_node(&certs.cluster).await,
        start_tls_node(&certs.cluster).await,
        start_tls_node(&certs.cluster).await,
    );
    let web = start_tls_web(&certs, &[&a, &b], "s3cret").await;

    // A recorded video with its manifest on its owner, put there by a member.
    web.meta
        .claim_video("kept", chrono::Utc::now())
        .await
        .unwrap();
    web.meta
        .finish_video("kept", &tritontube::meta::VideoDetails::default())
        .await
        .unwrap();
    let key = "kept/manifest.mpd";
    let ring = support::ring_of(&[a.address.clone(), b.address.clone()], 1);
    let owner = ring.owners(key)[0].to_string();
    let manifest = b"<MPD/>".to_vec();
    let member = client_tls(&certs, Some((&certs.cluster, "node")));
    StorageServiceClient::new(channel(&owner, Some(member)).await.unwrap())
        .upload_file(UploadRequest {
            key: key.into(),
            data: manifest.clone().into(),
        })
        .await
        .unwrap();

    // The web node reads it from the ring over TLS.
    let http = support::web::http_client();
    let served = http
        .get(format!("{}/content/kept/manifest.mpd", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), reqwest::StatusCode::OK);
    assert_eq!(served.bytes().await.unwrap().as_ref(), manifest.as_slice());

    let ring_before = ring_nodes(&web, &certs).await;
    assert_eq!(ring_before.len(), 2);
    let stores = |nodes: [&TlsNode; 3]| nodes.map(|n| store_contents(&n.dir));
    let files_before = stores([&a, &b, &newcomer]);

    // Callers without the operator's credential, one mutating call each.
    let mut callers: Vec<(String, Option<ClientTlsConfig>, Option<&str>)> = strangers(&certs)
        .into_iter()
        .map(|(what, tls)| (what.to_string(), tls, None))
        .collect();
    let node_cert = client_tls(&certs, Some((&certs.cluster, "node")));
    callers.push(("a node certificate".into(), Some(node_cert.clone()), None));
    callers.push((
        "a node certificate and a wrong token".into(),
        Some(node_cert),
        Some("guess"),
    ));
    for (what, tls, token) in callers {
        let Some(channel) = channel(&web.admin, tls).await else {
            continue; // refused at the handshake
        };
        let token: Option<tonic::metadata::AsciiMetadataValue> = token.map(|t| t.parse().unwrap());
        let mut client = VideoContentAdminServiceClient::with_interceptor(
            channel,
            move |mut request: tonic::Request<()>| {
                if let Some(token) = &token {
                    request
                        .metadata_mut()
                        .insert(tritontube::trust::credential::TOKEN_HEADER, token.clone());
                }
                Ok(request)
            },
        );
        let node = newcomer.address.clone();
        let refused = [
            client
                .add_node(AddNodeRequest {
                    node_address: node.clone(),
                })
                .await
                .map(drop),
            client
                .remove_node(RemoveNodeRequest {
                    node_address: a.address.clone(),
                })
                .await
                .map(drop),
            client
                .start_change(StartChangeRequest {
                    kind: ChangeKind::Add as i32,
                    node_address: node.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
            client.cancel_change(CancelChangeRequest {}).await.map(drop),
            client
                .start_repair(StartRepairRequest {
                    dry_run: false,
                    verify: false,
                })
                .await
                .map(drop),
            client
                .delete_video(DeleteVideoRequest { id: "kept".into() })
                .await
                .map(drop),
        ];
        for (call, result) in refused.into_iter().enumerate() {
            let status = result.expect_err(&format!("{what}: admin call #{call} went through"));
            // A certificate of the cluster passes the handshake and is then refused by
            // the credential check; anything else never gets past the handshake.
            if what.starts_with("a node certificate") && !what.contains("another CA") {
                assert_eq!(status.code(), tonic::Code::Unauthenticated, "{what}");
            }
        }
    }

    // HTTP DELETE: no token, a wrong one.
    for token in [None, Some("guess")] {
        let mut request = http.delete(format!("{}/api/videos/kept", web.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            reqwest::StatusCode::UNAUTHORIZED,
            "{token:?}"
        );
    }

    assert_eq!(ring_nodes(&web, &certs).await, ring_before);
    assert_eq!(stores([&a, &b, &newcomer]), files_before);
    assert!(web.meta.get_video("kept").await.unwrap().value.is_some());

    // The operator's certificate is enough: the newcomer joins over TLS.
    let tls = operator(&certs);
    let mut client = tritontube::admin_cli::connect_tls(&web.admin, None, Some(&tls)).unwrap();
    client
        .add_node(AddNodeRequest {
            node_address: newcomer.address.clone(),
        })
        .await
        .expect("the operator adds a node");
    assert_eq!(ring_nodes(&web, &certs).await.len(), 3);
    let served = http
        .get(format!("{}/content/kept/manifest.mpd", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(served.bytes().await.unwrap().as_ref(), manifest.as_slice());
}

/// One etcd member that serves clients only over TLS with a certificate of the cluster CA
/// (`--client-cert-auth`), as docs/deploy.md starts it; killed on drop.
struct TlsEtcd {
    child: std::process::Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_etcd(certs: &Certs) -> TlsEtcd {
    support::require_tool("etcd", "etcd-server");
    let dir = tempfile::tempdir().unwrap();
    let (client_port, peer_port) = (support::web::free_port(), support::web::free_port());
    let client_url = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let child = std::process::Command::new("etcd")
        .args(["--name", "m0", "--data-dir"])
        .arg(dir.path().join("m0.etcd"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("m0={peer_url}")])
        .arg("--cert-file")
        .arg(certs.cluster.join(certs::NODE_CERT))
        .arg("--key-file")
        .arg(certs.cluster.join(certs::NODE_KEY))
        .arg("--trusted-ca-file")
        .arg(certs.cluster.join(certs::CA_CERT))
        .arg("--client-cert-auth")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn etcd");
    TlsEtcd {
        child,
        endpoint: format!("127.0.0.1:{client_port}"),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_is_reached_over_mutual_tls_and_strangers_are_refused() {
    let certs = make_certs();
    let etcd = start_tls_etcd(&certs);
    let endpoints = vec![etcd.endpoint.clone()];
    let node = ClusterTls::node(&certs.cluster).unwrap();
    let mut store = None;
    for _ in 0..300 {
        if let Ok(connected) = MetaStore::etcd_tls(&endpoints, Some(&node)).await {
            store = Some(connected);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let store = store.expect("a web node's certificate opens etcd");
    store.claim_video("kept", chrono::Utc::now()).await.unwrap();

    assert!(
        MetaStore::etcd(&endpoints).await.is_err(),
        "a plain client reached etcd"
    );
    for (what, tls) in strangers(&certs).into_iter().skip(1) {
        let connected =
            tritontube::meta::etcd::EtcdStore::connect_tls(&endpoints, tls.clone()).await;
        if let Ok(stranger) = connected {
            // Connected lazily: the first write must fail, and write nothing.
            let stranger = MetaStore::Etcd(stranger);
            assert!(
                stranger
                    .claim_video(&format!("intruder-{}", what.len()), chrono::Utc::now())
                    .await
                    .is_err(),
                "{what} wrote to etcd"
            );
        }
    }
    let ids: Vec<String> = store
        .list_videos()
        .await
        .unwrap()
        .value
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(ids, ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consoles_etcd_panel_probes_over_mutual_tls_with_the_operators_certificate() {
    let certs = make_certs();
    let etcd = start_tls_etcd(&certs);
    let operator = operator(&certs);
    let mut probed = Err(String::new());
    for _ in 0..300 {
        let mut client = None;
        probed = tritontube::tui::sources::probe_once(&etcd.endpoint, Some(&operator), &mut client)
            .await;
        if probed.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = probed.expect("the operator's certificate reaches etcd");
    assert_ne!(status.member_id, 0);
    assert_eq!(status.members.len(), 1);
    assert_eq!(status.members[0].name, "m0");

    // Without the cluster's certificate the panel gets nothing.
    let mut client = None;
    let plain = tritontube::tui::sources::probe_once(&etcd.endpoint, None, &mut client).await;
    assert!(plain.is_err(), "a plain probe reached etcd: {plain:?}");
    let foreign = ClusterTls::client(&certs.foreign, "root").unwrap();
    let mut client = None;
    let refused =
        tritontube::tui::sources::probe_once(&etcd.endpoint, Some(&foreign), &mut client).await;
    assert!(
        refused.is_err(),
        "a foreign CA's certificate reached etcd: {refused:?}"
    );
}
