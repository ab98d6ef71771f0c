//! The links between TLS members beyond gRPC calls: storage nodes with the cluster's
//! certificates move files to each other through the direct-copy protocol inside mutual
//! TLS (not GetFile) and serve it only to node certificates of the cluster CA; and the
//! admin command line without certificates is told that the admin service wants TLS.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use support::certs::{Certs, make_certs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tritontube::node::server::{NodeOptions, run_secure};
use tritontube::proto::storage::UploadRequest;
use tritontube::proto::storage::storage_service_client::StorageServiceClient;
use tritontube::trust::certs;
use tritontube::trust::tls::ClusterTls;
use tritontube::web::{ContentSpec, WebConfig};

/// A storage node with certificates, and its metrics listener.
struct TlsNode {
    address: String,
    metrics: String,
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
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let metrics_url = format!("http://{}/metrics", metrics.local_addr().unwrap());
    let tls = ClusterTls::node(certs_dir).unwrap();
    let stop = CancellationToken::new();
    let (served, stopped) = (dir.clone(), stop.clone());
    tokio::spawn(async move {
        run_secure(
            listener,
            Some(metrics),
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
        metrics: metrics_url,
        dir,
        _temp: temp,
        stop,
    }
}

/// Calls a node's RPCs the way a member does: a node certificate of the cluster CA.
async fn member_client(
    certs: &Certs,
    address: &str,
) -> StorageServiceClient<tonic::transport::Channel> {
    let pem = |file: &str| std::fs::read_to_string(certs.cluster.join(file)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem(certs::CA_CERT)))
        .identity(Identity::from_pem(
            pem(certs::NODE_CERT),
            pem(certs::NODE_KEY),
        ));
    let channel = Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a member connects");
    StorageServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
}

/// The node's count of RPCs `rpc` that ended well (direct copies count as `Copy`).
async fn served_calls(node: &TlsNode, rpc: &str) -> u64 {
    let text = reqwest::get(&node.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with("tritontube_node_rpcs_total{"))
        .filter(|line| line.contains(&format!("rpc=\"{rpc}\"")) && line.contains("outcome=\"ok\""))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

struct TlsWeb {
    admin: String,
    stop: CancellationToken,
    _work: tempfile::TempDir,
}

impl Drop for TlsWeb {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_tls_web(certs: &Certs, nodes: &[&TlsNode]) -> TlsWeb {
    let work = tempfile::tempdir().unwrap();
    let meta = tritontube::meta::MetaStore::sqlite(&work.path().join("meta.db"))
        .await
        .unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
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
        admin_token: None,
    };
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        tritontube::web::run(http, Some(admin), meta, content, config, stopped)
            .await
            .unwrap();
    });
    TlsWeb {
        admin: admin_address,
        stop,
        _work: work,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_change_between_tls_nodes_moves_files_by_direct_copy() {
    let certs = make_certs();
    let (a, b, newcomer) = (
        start_tls_node(&certs.cluster).await,
        start_tls_node(&certs.cluster).await,
        start_tls_node(&certs.cluster).await,
    );
    let web = start_tls_web(&certs, &[&a, &b]).await;

    // Files of segment sizes on their owners, put there by a member.
    let ring = support::ring_of(&[a.address.clone(), b.address.clone()], 1);
    let mut files = Vec::new();
    for i in 0..40u64 {
        let key = format!("v{}/seg{i:03}.m4s", i % 4);
        let data = support::pseudo_random_bytes(20_000 + (i as usize * 37_311) % 1_500_000, i);
        let owner = ring.owners(&key)[0].to_string();
        let stored = member_client(&certs, &owner)
            .await
            .upload_file(UploadRequest {
                key: key.clone(),
                data: data.clone().into(),
            })
            .await
            .unwrap();
        assert!(stored.into_inner().success);
        files.push((key, support::sha256_hex(&data)));
    }
    let copies_before = served_calls(&a, "Copy").await + served_calls(&b, "Copy").await;

    let operator = ClusterTls::client(&certs.cluster, "root").unwrap();
    let mut admin =
        tritontube::admin_cli::connect_tls(&web.admin, None, Some(&operator)).expect("connect");
    let moved = admin
        .add_node(tritontube::proto::admin::AddNodeRequest {
            node_address: newcomer.address.clone(),
        })
        .await
        .expect("the operator adds a node")
        .into_inner()
        .migrated_file_count;

    // What the newcomer received is intact.
    assert!(moved > 0, "the ring change moved files");
    let received: Vec<String> = support::files_under(&newcomer.dir)
        .into_iter()
        .filter(|path| !path.split('/').any(|part| part.starts_with('.')))
        .filter(|path| newcomer.dir.join(path).is_file())
        .collect();
    assert!(!received.is_empty(), "the newcomer received files");
    for key in &received {
        let bytes = std::fs::read(newcomer.dir.join(key)).unwrap();
        let (_, sha256) = files.iter().find(|(k, _)| k == key).expect("a seeded key");
        assert_eq!(&support::sha256_hex(&bytes), sha256, "{key}");
    }

    // It travelled by direct copy: one served Copy per file received, and no GetFile.
    let copies = served_calls(&a, "Copy").await + served_calls(&b, "Copy").await;
    assert_eq!(copies - copies_before, received.len() as u64);
    assert_eq!(served_calls(&a, "GetFile").await, 0);
    assert_eq!(served_calls(&b, "GetFile").await, 0);
}

/// A TLS client that trusts the cluster CA and shows the certificate `cert_dir/name.crt`.
fn raw_client(certs: &Certs, cert_dir: &Path, name: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(certs.cluster.join(certs::CA_CERT)).unwrap();
    roots.add(ca).unwrap();
    let chain = vec![CertificateDer::from_pem_file(cert_dir.join(format!("{name}.crt"))).unwrap()];
    let key = PrivateKeyDer::from_pem_file(cert_dir.join(format!("{name}.key"))).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    TlsConnector::from(Arc::new(config))
}

/// Asks for `key` through the copy protocol inside TLS with `client` (plain TCP without)
/// and returns everything the node answered until it closed the connection.
async fn ask_for_copy(address: &str, client: Option<TlsConnector>, key: &str) -> Vec<u8> {
    let request = format!("TTCOPY1\n{key}\n");
    let tcp = TcpStream::connect(address).await.unwrap();
    let mut answer = Vec::new();
    let exchange = async {
        match client {
            None => {
                let mut tcp = tcp;
                tcp.write_all(request.as_bytes()).await?;
                tcp.read_to_end(&mut answer).await
            }
            Some(client) => {
                let name = ServerName::try_from("127.0.0.1").unwrap();
                let mut tls = client.connect(name, tcp).await?;
                tls.write_all(request.as_bytes()).await?;
                tls.flush().await?;
                tls.read_to_end(&mut answer).await
            }
        }
    };
    // A refused handshake or a reset ends the answer as well as a close; a member's
    // connection stays open for its next request, so a timeout ends that one.
    let _ = tokio::time::timeout(Duration::from_secs(5), exchange).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_copies_under_tls_are_served_only_to_nodes_of_the_cluster() {
    let certs = make_certs();
    let node = start_tls_node(&certs.cluster).await;
    // A client that holds its connection open without a word does not hold up others.
    let _silent = TcpStream::connect(&node.address).await.unwrap();
    let data = support::pseudo_random_bytes(300_000, 7);
    let key = "kept/seg.m4s";
    member_client(&certs, &node.address)
        .await
        .upload_file(UploadRequest {
            key: key.into(),
            data: data.clone().into(),
        })
        .await
        .unwrap();

    // A member gets the file, so the refusals below are the certificate's doing.
    let member = ask_for_copy(
        &node.address,
        Some(raw_client(&certs, &certs.cluster, "node")),
        key,
    )
    .await;
    let header = format!("OK {} {} ", data.len(), support::sha256_hex(&data));
    assert!(
        member.starts_with(header.as_bytes()),
        "{:?}",
        &member[..member.len().min(120)]
    );
    assert!(member.ends_with(&data));
    assert_eq!(served_calls(&node, "Copy").await, 1);

    let operator = ask_for_copy(
        &node.address,
        Some(raw_client(&certs, &certs.cluster, "client.root")),
        key,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&operator).starts_with("ERR 7 "),
        "an operator's certificate is told no: {operator:?}"
    );
    for (what, client) in [
        (
            "a node certificate of another CA",
            Some(raw_client(&certs, &certs.foreign, "node")),
        ),
        ("a plain connection", None),
    ] {
        // Refused at the handshake: at most a TLS alert comes back, never the file.
        let answer = ask_for_copy(&node.address, client, key).await;
        assert!(
            !answer.starts_with(b"OK") && answer.len() < 64,
            "{what} got {answer:?}"
        );
    }
    assert_eq!(
        served_calls(&node, "Copy").await,
        1,
        "nothing more was served"
    );
    assert!(std::fs::read(node.dir.join(key)).unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_command_without_certificates_says_the_service_wants_tls() {
    let certs = make_certs();
    let node = start_tls_node(&certs.cluster).await;
    let web = start_tls_web(&certs, &[&node]).await;
    let certs_dir = certs.cluster.display().to_string();
    let admin = |args: Vec<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tritontube"));
        command
            .arg("admin")
            .args(args)
            .env_remove("TRITONTUBE_CERTS_DIR")
            .env("NO_COLOR", "1");
        command
    };
    let address = web.admin.clone();
    let log = tempfile::tempdir().unwrap();
    let log_file = log.path().join("console.log").display().to_string();
    let (plain, console, secure) = tokio::task::spawn_blocking(move || {
        (
            admin(vec!["list", &address]).output().unwrap(),
            std::process::Command::new(env!("CARGO_BIN_EXE_tritontube"))
                .args(["tui", "--log-file", &log_file, &address])
                .env_remove("TRITONTUBE_CERTS_DIR")
                .output()
                .unwrap(),
            admin(vec!["--certs-dir", &certs_dir, "list", &address])
                .output()
                .unwrap(),
        )
    })
    .await
    .unwrap();
    for (what, output) in [("admin list", &plain), ("tui", &console)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: {stderr}");
        assert!(
            stderr.contains("speaks only TLS") && stderr.contains("--certs-dir"),
            "{what}: {stderr}"
        );
    }
    // With the operator's certificate the same command works.
    let listed = String::from_utf8_lossy(&secure.stdout);
    assert!(
        secure.status.success(),
        "{}",
        String::from_utf8_lossy(&secure.stderr)
    );
    assert!(listed.contains(&node.address), "{listed}");
}
