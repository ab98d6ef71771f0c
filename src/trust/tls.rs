//! Mutual TLS on the internal links (tonic's rustls): a host's certificate and the
//! cluster CA, loaded from `--certs-dir`, and the check of what a peer's certificate
//! allows it to call.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};

use super::Role;
use super::certs::{self, CA_CERT, CertError, NODE_CERT, NODE_KEY};

/// The operator name `tritontube admin` and the console use unless told otherwise.
pub const DEFAULT_CLIENT: &str = "root";

/// A host's identity in the cluster and the CA its peers must be signed by.
#[derive(Clone, Debug)]
pub struct ClusterTls {
    ca: Certificate,
    identity: Identity,
    dir: PathBuf,
}

impl ClusterTls {
    /// A storage or web node's: `ca.crt`, `node.crt`, `node.key`.
    pub fn node(dir: &Path) -> Result<ClusterTls, CertError> {
        Self::load(dir, NODE_CERT, NODE_KEY, "create-node HOST…")
    }

    /// An operator's: `ca.crt`, `client.NAME.crt`, `client.NAME.key`.
    pub fn client(dir: &Path, name: &str) -> Result<ClusterTls, CertError> {
        Self::load(
            dir,
            &certs::client_cert_file(name),
            &certs::client_key_file(name),
            &format!("create-client {name}"),
        )
    }

    fn load(dir: &Path, cert: &str, key: &str, make: &str) -> Result<ClusterTls, CertError> {
        for file in [CA_CERT, cert, key] {
            let path = dir.join(file);
            if !path.exists() {
                return Err(CertError::Missing {
                    path,
                    make: format!("tritontube cert {make} --certs-dir {}", dir.display()),
                });
            }
        }
        Ok(ClusterTls {
            ca: Certificate::from_pem(certs::read(&dir.join(CA_CERT))?),
            identity: Identity::from_pem(
                certs::read(&dir.join(cert))?,
                certs::read(&dir.join(key))?,
            ),
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Serving: this host's certificate; every client must show one from the cluster CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    /// Calling: the server must show a certificate from the cluster CA for the name or
    /// address called; this host shows its own.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
    }
}

/// The URL of `address` (`host:port`, a scheme accepted) for a channel with or without TLS.
pub fn url(address: &str, tls: bool) -> String {
    let bare = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .unwrap_or(address);
    if tls {
        format!("https://{bare}")
    } else {
        format!("http://{bare}")
    }
}

/// The role of the certificate the caller showed in the TLS handshake; `None` on a plain
/// connection (or, which the handshake prevents, a certificate naming no role).
pub fn caller_role<T>(request: &Request<T>) -> Option<Role> {
    let certs = request.peer_certs()?;
    super::role_of(certs.first()?.as_ref())
}

/// Lets a call through only from a caller whose certificate carries one of `allowed`.
/// `tls_on` false (an `--insecure` server) lets everything through, as the original did.
pub fn require_role<T>(request: &Request<T>, tls_on: bool, allowed: &[Role]) -> Result<(), Status> {
    if !tls_on {
        return Ok(());
    }
    match caller_role(request) {
        Some(role) if allowed.contains(&role) => Ok(()),
        Some(role) => Err(Status::permission_denied(format!(
            "a {} certificate may not call this service",
            role.unit()
        ))),
        None => Err(Status::unauthenticated(
            "this service needs a certificate from the cluster CA",
        )),
    }
}
