//! Certificates for TLS tests, made with the project's own `tritontube cert` code.

use std::path::PathBuf;

use tritontube::trust::certs;

/// The cluster's certificates and another cluster's (same names, another CA), each with a
/// node certificate for 127.0.0.1/localhost and the operator `root`.
pub struct Certs {
    _dir: tempfile::TempDir,
    pub cluster: PathBuf,
    pub foreign: PathBuf,
}

pub fn make_certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, foreign) = (dir.path().join("cluster"), dir.path().join("foreign"));
    for certs_dir in [&cluster, &foreign] {
        certs::create_ca(certs_dir).unwrap();
        certs::create_node(certs_dir, &["127.0.0.1".into(), "localhost".into()]).unwrap();
        certs::create_client(certs_dir, "root").unwrap();
    }
    Certs {
        _dir: dir,
        cluster,
        foreign,
    }
}
