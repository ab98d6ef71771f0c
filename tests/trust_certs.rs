//! `tritontube cert …` and the original Go tools' single-dash flags, run as users run them.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tritontube::trust::{Role, role_of};

fn tritontube() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tritontube"))
}

fn cert(dir: &Path, args: &[&str]) -> std::process::Output {
    tritontube()
        .arg("cert")
        .args(args)
        .arg("--certs-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn der(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).unwrap();
    pem.contents
}

#[test]
fn cert_commands_make_a_ca_signed_chain_of_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let mut printed = String::new();
    for args in [
        &["create-ca"][..],
        &["create-node", "127.0.0.1", "node1.example"][..],
        &["create-client", "root"][..],
    ] {
        let output = cert(&certs, args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        printed.push_str(&String::from_utf8_lossy(&output.stdout));
        printed.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    for file in [
        "ca.crt",
        "ca.key",
        "node.crt",
        "node.key",
        "client.root.crt",
        "client.root.key",
    ] {
        let path = certs.join(file);
        assert!(printed.contains(&path.display().to_string()), "{printed}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    let ca_der = der(&certs.join("ca.crt"));
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert!(ca.is_ca());
    assert_eq!(role_of(&ca_der), Some(Role::Ca));
    for (file, role) in [("node.crt", Role::Node), ("client.root.crt", Role::Client)] {
        let leaf_der = der(&certs.join(file));
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(leaf.issuer(), ca.subject(), "{file}");
        leaf.verify_signature(Some(ca.public_key()))
            .unwrap_or_else(|e| panic!("{file} is not signed by the CA: {e}"));
        assert_eq!(role_of(&leaf_der), Some(role), "{file}");
    }
    let node_der = der(&certs.join("node.crt"));
    let (_, node) = x509_parser::parse_x509_certificate(&node_der).unwrap();
    let names = format!(
        "{:?}",
        node.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(names.contains("node1.example"), "{names}");
    assert!(
        names.contains("127.0.0.1") || names.contains("[127, 0, 0, 1]"),
        "{names}"
    );
}

#[test]
fn cert_commands_refuse_without_a_ca_and_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");

    let orphan = cert(&certs, &["create-node", "127.0.0.1"]);
    assert!(!orphan.status.success());
    assert!(
        String::from_utf8_lossy(&orphan.stderr).contains("create-ca"),
        "{orphan:?}"
    );
    assert!(!certs.join("node.crt").exists() && !certs.join("node.key").exists());

    assert!(cert(&certs, &["create-ca"]).status.success());
    let ca_key = std::fs::read(certs.join("ca.key")).unwrap();
    let again = cert(&certs, &["create-ca"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{again:?}"
    );
    assert_eq!(std::fs::read(certs.join("ca.key")).unwrap(), ca_key);

    let bad_name = cert(&certs, &["create-client", "../evil"]);
    assert!(!bad_name.status.success());
    let files = std::fs::read_dir(&certs).unwrap().count();
    assert_eq!(files, 2, "only the CA's two files");

    let no_dir = tritontube()
        .args(["cert", "create-ca"])
        .env_remove("TRITONTUBE_CERTS_DIR")
        .output()
        .unwrap();
    assert!(!no_dir.status.success());
    assert!(String::from_utf8_lossy(&no_dir.stderr).contains("--certs-dir"));
}

/// The subject of the certificate at `path`, as text.
fn subject(path: &Path) -> String {
    let der = der(path);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.subject().to_string()
}

#[test]
fn every_ca_gets_a_subject_of_its_own_and_keeps_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second, named) = (
        dir.path().join("first"),
        dir.path().join("second"),
        dir.path().join("named"),
    );
    assert!(cert(&first, &["create-ca"]).status.success());
    assert!(cert(&second, &["create-ca"]).status.success());
    let named_ca = cert(&named, &["create-ca", "--name", "prod-eu"]);
    assert!(named_ca.status.success(), "{named_ca:?}");
    let subjects: Vec<String> = [&first, &second, &named]
        .iter()
        .map(|certs| subject(&certs.join("ca.crt")))
        .collect();
    // Two clusters' CAs can be told apart by name, so TLS refuses a stranger's
    // certificate as signed by an unknown CA, not as a bad signature.
    assert_ne!(subjects[0], subjects[1]);
    assert!(subjects[2].contains("prod-eu"), "{}", subjects[2]);
    for (certs, subject) in [&first, &second, &named].into_iter().zip(&subjects) {
        assert!(subject.contains("OU=tritontube-ca"), "{subject}");
        assert_eq!(role_of(&der(&certs.join("ca.crt"))), Some(Role::Ca));
        // A leaf names its CA's subject as its issuer and still carries its role.
        assert!(cert(certs, &["create-client", "root"]).status.success());
        let leaf_der = der(&certs.join("client.root.crt"));
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(&leaf.issuer().to_string(), subject);
        assert_eq!(role_of(&leaf_der), Some(Role::Client));
    }

    let bad = cert(&dir.path().join("bad"), &["create-ca", "--name", "a/b"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("CA name"),
        "{bad:?}"
    );
    assert!(!dir.path().join("bad").join("ca.crt").exists());
}

/// Waits for `address` to accept connections, or fails naming `what`.
async fn wait_listening(address: &str, child: &mut std::process::Child, what: &str) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(address).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited ({status}) instead of listening");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_tools_single_dash_command_lines_start_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let storage_port = support::web::free_port().to_string();
    let mut storage = Killed(
        tritontube()
            .args(["storage", "-host", "127.0.0.1", "-port", &storage_port])
            .arg(dir.path().join("store"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let storage_address = format!("127.0.0.1:{storage_port}");
    wait_listening(&storage_address, &mut storage.0, "storage -host -port").await;
    let mut client =
        tritontube::proto::storage::storage_service_client::StorageServiceClient::connect(format!(
            "http://{storage_address}"
        ))
        .await
        .unwrap();
    let listed = client
        .list_files(tritontube::proto::storage::ListFilesRequest {})
        .await
        .unwrap();
    assert!(listed.into_inner().keys.is_empty());

    let web_port = support::web::free_port().to_string();
    let mut web = Killed(
        tritontube()
            .args([
                "web",
                "-host",
                "127.0.0.1",
                &format!("-port={web_port}"),
                "sqlite",
            ])
            .arg(dir.path().join("m.db"))
            .arg("fs")
            .arg(dir.path().join("files"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let web_address = format!("127.0.0.1:{web_port}");
    wait_listening(&web_address, &mut web.0, "web -host -port=").await;
    let index = support::web::http_client()
        .get(format!("http://{web_address}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), reqwest::StatusCode::OK);
}

#[test]
fn off_loopback_a_node_without_certificates_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let refused = [
        tritontube()
            .args(["storage", "--host", "0.0.0.0", "--port", "0"])
            .arg(dir.path().join("store"))
            .env_remove("TRITONTUBE_CERTS_DIR")
            .output()
            .unwrap(),
        tritontube()
            .args(["web", "-host", "0.0.0.0", "-port", "0", "sqlite"])
            .arg(dir.path().join("m.db"))
            .arg("fs")
            .arg(dir.path().join("files"))
            .env_remove("TRITONTUBE_CERTS_DIR")
            .output()
            .unwrap(),
    ];
    for output in refused {
        assert!(!output.status.success(), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--certs-dir") && stderr.contains("--insecure"),
            "{stderr}"
        );
    }
    assert!(
        !dir.path().join("store").exists(),
        "nothing is made on disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_keeps_the_open_protocol_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::web::free_port().to_string();
    let mut storage = Killed(
        tritontube()
            .args(["storage", "-host", "0.0.0.0", "-port", &port, "-insecure"])
            .arg(dir.path().join("store"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let address = format!("127.0.0.1:{port}");
    wait_listening(&address, &mut storage.0, "storage --insecure").await;
    let mut client =
        tritontube::proto::storage::storage_service_client::StorageServiceClient::connect(format!(
            "http://{address}"
        ))
        .await
        .unwrap();
    assert!(
        client
            .list_files(tritontube::proto::storage::ListFilesRequest {})
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_lines_take_certs_dir_and_the_admin_cli_needs_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    for args in [
        &["create-ca"][..],
        &["create-node", "127.0.0.1"][..],
        &["create-client", "root"][..],
    ] {
        assert!(cert(&certs, args).status.success());
    }
    let storage_port = support::web::free_port();
    let storage_address = format!("127.0.0.1:{storage_port}");
    let mut storage = Killed(
        tritontube()
            .args([
                "storage",
                "-host",
                "127.0.0.1",
                "-port",
                &storage_port.to_string(),
            ])
            .arg("--certs-dir")
            .arg(&certs)
            .arg(dir.path().join("store"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(&storage_address, &mut storage.0, "storage --certs-dir").await;

    let admin_address = format!("127.0.0.1:{}", support::web::free_port());
    let mut web = Killed(
        tritontube()
            .args(["web", "--host", "127.0.0.1", "--port", "0"])
            .env("TRITONTUBE_CERTS_DIR", &certs)
            .arg("sqlite")
            .arg(dir.path().join("m.db"))
            .arg("nw")
            .arg(format!("{admin_address},{storage_address}"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(&admin_address, &mut web.0, "web with TRITONTUBE_CERTS_DIR").await;

    let admin = |extra: &[&str]| {
        let mut command = tritontube();
        command
            .arg("admin")
            .args(extra)
            .args(["list", &admin_address]);
        command.env_remove("TRITONTUBE_CERTS_DIR").output().unwrap()
    };
    let certs_arg = certs.to_str().unwrap();
    // The web node answers only once its control plane is up: retry the operator's call.
    let mut listed = admin(&["--certs-dir", certs_arg]);
    for _ in 0..200 {
        if listed.status.success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed = admin(&["--certs-dir", certs_arg]);
    }
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        format!("Nodes in cluster:\n{storage_address}\n")
    );

    let plain = admin(&[]);
    assert!(!plain.status.success(), "{plain:?}");
    let stranger = admin(&["--certs-dir", certs_arg, "--user", "nobody"]);
    assert!(!stranger.status.success());
    let stderr = String::from_utf8_lossy(&stranger.stderr);
    assert!(stderr.contains("create-client nobody"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_secure_makes_certificates_and_speaks_only_tls() {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().unwrap();
    let mut up = Killed(
        tritontube()
            .arg("up")
            .arg("--data")
            .arg(data.path())
            .args(["--port", "0", "--admin-port", "0", "--storage-port", "0"])
            .arg("--secure")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = up.0.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take(8)
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
    let admin = field("admin:");
    let certs = std::path::PathBuf::from(field("certs:"));
    assert_eq!(certs, data.path().join("certs"));
    for file in ["ca.crt", "node.key", "client.root.key"] {
        let mode = std::fs::metadata(certs.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    let operator = tritontube::trust::tls::ClusterTls::client(&certs, "root").unwrap();
    let mut client = tritontube::admin_cli::connect_tls(&admin, None, Some(&operator)).unwrap();
    let nodes = client
        .list_nodes(tritontube::proto::admin::ListNodesRequest {})
        .await
        .expect("the operator's certificate opens the admin service")
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 3);
    // Plain calls reach neither the admin service nor a storage node.
    let mut plain = tritontube::admin_cli::connect(&admin, None).unwrap();
    assert!(
        plain
            .list_nodes(tritontube::proto::admin::ListNodesRequest {})
            .await
            .is_err()
    );
    let storage =
        tritontube::proto::storage::storage_service_client::StorageServiceClient::connect(format!(
            "http://{}",
            nodes[0]
        ))
        .await;
    if let Ok(mut storage) = storage {
        assert!(
            storage
                .list_files(tritontube::proto::storage::ListFilesRequest {})
                .await
                .is_err()
        );
    }
}

#[test]
fn up_off_loopback_needs_secure() {
    let data = tempfile::tempdir().unwrap();
    let output = tritontube()
        .arg("up")
        .arg("--data")
        .arg(data.path().join("d"))
        .args([
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--admin-port",
            "0",
            "--storage-port",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--secure"));
    assert!(!data.path().join("d").exists(), "nothing is made on disk");
}
