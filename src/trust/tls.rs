//! Mutual TLS on the internal links (tonic's rustls): a host's certificate and the
//! cluster CA, loaded from `--certs-dir`, and the check of what a peer's certificate
//! allows it to call.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
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
    /// The file of the certificate this host shows.
    cert: PathBuf,
    /// The same identity and CA as rustls settings, for a listener that terminates TLS
    /// itself (a storage node's port, which also serves direct copies) and for the
    /// direct-copy puller.
    serving: Arc<rustls::ServerConfig>,
    calling: Arc<rustls::ClientConfig>,
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
        let (ca_pem, cert_pem, key_pem) = (
            certs::read(&dir.join(CA_CERT))?,
            certs::read(&dir.join(cert))?,
            certs::read(&dir.join(key))?,
        );
        let unusable = |why: String| CertError::Unusable {
            dir: dir.to_path_buf(),
            why,
        };
        let (serving, calling) = rustls_configs(&ca_pem, &cert_pem, &key_pem).map_err(unusable)?;
        Ok(ClusterTls {
            ca: Certificate::from_pem(ca_pem),
            identity: Identity::from_pem(cert_pem, key_pem),
            dir: dir.to_path_buf(),
            cert: dir.join(cert),
            serving,
            calling,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificate file this host shows (`node.crt` or `client.NAME.crt`).
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// Serving: this host's certificate; every client must show one from the cluster CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    /// Serving with rustls directly: as [`Self::server_config`], HTTP/2 offered by ALPN
    /// for gRPC clients.
    pub fn rustls_server(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.serving)
    }

    /// Calling with rustls directly (no ALPN: the direct-copy protocol is not HTTP).
    pub fn rustls_client(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.calling)
    }

    /// Calling: the server must show a certificate from the cluster CA for the name or
    /// address called; this host shows its own.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
    }
}

/// rustls settings to serve and to call with `cert_pem`/`key_pem`, trusting only the CA
/// of `ca_pem` and requiring a certificate of it from every client.
fn rustls_configs(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| format!("{CA_CERT}: {e}"))?;
        roots.add(ca).map_err(|e| format!("{CA_CERT}: {e}"))?;
    }
    let roots = Arc::new(roots);
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate: {e}"))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("the key: {e}"))?;
    let provider = Arc::new(cluster_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::clone(&roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let mut serving = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| format!("the certificate and its key: {e}"))?;
    // tonic's clients insist on HTTP/2 by ALPN.
    serving.alpn_protocols = vec![b"h2".to_vec()];
    // Both ends are the cluster's: the server picks by its own order (AES-128-GCM first),
    // also for tonic's clients, which offer AES-256-GCM first.
    serving.ignore_client_order = true;
    let calling = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the certificate and its key: {e}"))?;
    Ok((Arc::new(serving), Arc::new(calling)))
}

/// The cryptography of the internal links: aws-lc-rs (its AES-GCM and record handling
/// cost less CPU per byte than ring's on x86-64, see `benches/tls_records.rs`) with the
/// TLS 1.3 suites in the order the cluster prefers: AES-128-GCM (as safe as AES-256-GCM
/// here and fewer rounds per block), then AES-256-GCM, then ChaCha20-Poly1305 for a peer
/// without AES instructions. The same suites as rustls's defaults, only reordered.
pub fn cluster_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::aws_lc_rs::{self, cipher_suite};
    let preferred = [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    let mut provider = aws_lc_rs::default_provider();
    let rest: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|suite| !preferred.contains(suite))
        .copied()
        .collect();
    provider.cipher_suites = preferred.into_iter().chain(rest).collect();
    provider
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
