//! Refusals as an operator meets them, with the binary as users run it: certificates of
//! another cluster's CA refused as such (not as tampering), the admin CLI saying which
//! certificate was refused and what to do, the refused handshakes logged by the storage
//! nodes and the admin service, and the CLI ending quietly when its reader goes away.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, AlertDescription, CertificateError};
use tritontube::trust::tls::ClusterTls;

/// How long a process may take to start or to log a line before the test gives up.
const PATIENCE: Duration = Duration::from_secs(60);

fn tritontube() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tritontube"))
}

/// The folders of certificates the tests use, made with `tritontube cert`.
struct CertDirs {
    _temp: tempfile::TempDir,
    /// The cluster's: its CA, a node certificate for 127.0.0.1 and the operator `root`.
    cluster: PathBuf,
    /// Another cluster's, made the same way.
    foreign: PathBuf,
    /// The cluster's ca.crt with the other cluster's operator certificate: a client that
    /// trusts the service, so the service is the one to refuse.
    mixed: PathBuf,
}

fn cert_dirs() -> CertDirs {
    let temp = tempfile::tempdir().unwrap();
    let (cluster, foreign, mixed) = (
        temp.path().join("cluster"),
        temp.path().join("foreign"),
        temp.path().join("mixed"),
    );
    for dir in [&cluster, &foreign] {
        for args in [
            &["create-ca"][..],
            &["create-node", "127.0.0.1"][..],
            &["create-client", "root"][..],
        ] {
            let made = tritontube()
                .arg("cert")
                .args(args)
                .arg("--certs-dir")
                .arg(dir)
                .output()
                .unwrap();
            assert!(made.status.success(), "{args:?}: {made:?}");
        }
    }
    std::fs::create_dir(&mixed).unwrap();
    std::fs::copy(cluster.join("ca.crt"), mixed.join("ca.crt")).unwrap();
    for file in ["client.root.crt", "client.root.key"] {
        std::fs::copy(foreign.join(file), mixed.join(file)).unwrap();
    }
    CertDirs {
        _temp: temp,
        cluster,
        foreign,
        mixed,
    }
}

/// A `tritontube` server process whose stderr is read line by line as it comes.
struct Logged {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Logged {
    fn spawn(command: &mut Command) -> Logged {
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let read = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                read.lock().unwrap().push(line);
            }
        });
        Logged { child, lines }
    }

    /// The first line that contains every one of `needles`; fails once `PATIENCE` is over.
    async fn line_with(&self, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|line| needles.iter().all(|needle| line.contains(needle)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "no line with {needles:?} in:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_listening(&mut self, address: &str) {
        let start = Instant::now();
        while std::net::TcpStream::connect(address).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "exited ({status}) instead of listening on {address}:\n{}",
                    self.lines.lock().unwrap().join("\n")
                );
            }
            assert!(start.elapsed() < PATIENCE, "never listened on {address}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tritontube storage --certs-dir CLUSTER` on 127.0.0.1.
async fn storage_process(certs: &CertDirs, store: &Path) -> (Logged, String) {
    let port = support::web::free_port();
    let address = format!("127.0.0.1:{port}");
    let mut storage = Logged::spawn(
        tritontube()
            .args([
                "storage",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .arg("--certs-dir")
            .arg(&certs.cluster)
            .arg(store),
    );
    storage.wait_listening(&address).await;
    (storage, address)
}

/// A TLS client connection to `address` from the loopback address `from` (each peer
/// address has a log line of its own), as `tls` calls: the handshake's error, or the
/// error the first read after it gives (in TLS 1.3 a server refuses the client's
/// certificate after the client's side of the handshake is over).
async fn handshake_from(from: &str, address: &str, tls: rustls::ClientConfig) -> rustls::Error {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket
        .connect(address.parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let error = match TlsConnector::from(Arc::new(tls)).connect(name, tcp).await {
        Err(error) => error,
        Ok(mut stream) => {
            let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            let mut answer = [0u8; 16];
            match stream.read(&mut answer).await {
                Err(error) => error,
                Ok(n) => panic!("{from}: the handshake was accepted ({n} bytes came back)"),
            }
        }
    };
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("{from}: not a TLS error: {error}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clusters_certificates_are_refused_as_of_an_unknown_ca_and_logged() {
    let certs = cert_dirs();
    let store = tempfile::tempdir().unwrap();
    let (storage, address) = storage_process(&certs, store.path()).await;

    // A client of the other cluster does not trust this one: its CA is unknown to it
    // (not a bad signature, which is what two CAs of the same name gave).
    let foreign = ClusterTls::client(&certs.foreign, "root").unwrap();
    let error = handshake_from("127.0.0.2", &address, (*foreign.rustls_client()).clone()).await;
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );
    // A client that trusts this cluster but shows the other's certificate is told its
    // CA is unknown (an alert of "unknown CA", not "decrypt error").
    let mixed = ClusterTls::client(&certs.mixed, "root").unwrap();
    let error = handshake_from("127.0.0.3", &address, (*mixed.rustls_client()).clone()).await;
    assert!(
        matches!(
            error,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA)
        ),
        "{error:?}"
    );
    // A client with no certificate at all.
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(certs.cluster.join("ca.crt")).unwrap();
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = Arc::new(tritontube::trust::tls::cluster_provider());
    let anonymous = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let error = handshake_from("127.0.0.4", &address, anonymous).await;
    assert!(
        matches!(
            error,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
        ),
        "{error:?}"
    );

    // The storage node logged each refusal, naming the peer and why.
    storage
        .line_with(&[
            "storage node refused a TLS handshake",
            "127.0.0.2:",
            "UnknownCA",
        ])
        .await;
    storage
        .line_with(&[
            "storage node refused a TLS handshake",
            "127.0.0.3:",
            "UnknownIssuer",
        ])
        .await;
    storage
        .line_with(&[
            "storage node refused a TLS handshake",
            "127.0.0.4:",
            "no certificate",
        ])
        .await;
}

fn admin(certs_dir: &Path, args: &[&str]) -> Output {
    tritontube()
        .arg("admin")
        .arg("--certs-dir")
        .arg(certs_dir)
        .args(args)
        .env_remove("TRITONTUBE_ADMIN_TOKEN")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

/// A storage node and a web node of the cluster, as processes; the web node's admin
/// service answers the operator.
struct Cluster {
    _storage: Logged,
    web: Logged,
    admin: String,
    _work: tempfile::TempDir,
}

impl Cluster {
    async fn start(certs: &CertDirs) -> Cluster {
        let work = tempfile::tempdir().unwrap();
        let (storage, storage_address) = storage_process(certs, &work.path().join("store")).await;
        let admin_address = format!("127.0.0.1:{}", support::web::free_port());
        let mut web = Logged::spawn(
            tritontube()
                .args(["web", "--host", "127.0.0.1", "--port", "0"])
                .arg("--certs-dir")
                .arg(&certs.cluster)
                .arg("--work-dir")
                .arg(work.path().join("uploads"))
                .arg("sqlite")
                .arg(work.path().join("m.db"))
                .arg("nw")
                .arg(format!("{admin_address},{storage_address}")),
        );
        web.wait_listening(&admin_address).await;
        // The admin service answers once the web node's control plane is up.
        let start = Instant::now();
        while !admin(&certs.cluster, &["list", &admin_address])
            .status
            .success()
        {
            assert!(
                start.elapsed() < PATIENCE,
                "the admin service never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Cluster {
            _storage: storage,
            web,
            admin: admin_address,
            _work: work,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_says_which_certificate_was_refused_and_the_service_logs_it() {
    let certs = cert_dirs();
    let cluster = Cluster::start(&certs).await;
    let admin_address = cluster.admin.clone();

    // The service refuses the other cluster's operator certificate: every command says
    // so, and what to do, instead of "operation was canceled" or "transport error".
    for args in [
        &["list", &admin_address][..],
        &["status", &admin_address][..],
        &["delete", &admin_address, "kept"][..],
        &["pause", &admin_address][..],
    ] {
        let refused = admin(&certs.mixed, args);
        assert!(!refused.status.success(), "{args:?}: {refused:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains(&format!(
                "the admin service at {admin_address} refused this client's certificate"
            )) && stderr.contains("UnknownCA")
                && stderr.contains("tritontube cert create-client root"),
            "{args:?}: {stderr}"
        );
    }
    // The CLI with the other cluster's CA does not trust the service.
    let untrusted = admin(&certs.foreign, &["list", &admin_address]);
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(
        stderr.contains(&format!(
            "the admin service at {admin_address} showed a certificate that is not signed by \
             the CA in {}/ca.crt (UnknownIssuer)",
            certs.foreign.display()
        )),
        "{stderr}"
    );

    // The admin service logged the refusal, naming the peer.
    cluster
        .web
        .line_with(&[
            "admin service refused a TLS handshake",
            "127.0.0.1:",
            "UnknownIssuer",
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_ends_quietly_when_its_reader_has_gone() {
    let certs = cert_dirs();
    let cluster = Cluster::start(&certs).await;
    let admin_address = cluster.admin.clone();

    for args in [
        &["status", &admin_address][..],
        &["list", &admin_address][..],
    ] {
        // stdout is a pipe whose reader is gone before anything is written, as for
        // `tritontube admin status ADDR | head -0`.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let cut = tritontube()
            .arg("admin")
            .arg("--certs-dir")
            .arg(&certs.cluster)
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&cut.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.trim().is_empty(), "{args:?}: {stderr}");
        // As `cat` or `seq` end in such a pipeline: killed by SIGPIPE, 128 + 13.
        assert_eq!(cut.status.code(), Some(141), "{args:?}: {cut:?}");
    }
}
