//! Why a TLS handshake with a service fails: a client whose calls fail at the transport
//! (tonic says only "transport error" or "operation was canceled") learns whether the
//! service refused its certificate or it refused the service's, and what to do.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, AlertDescription, CertificateError, ClientConfig};

/// How long the check waits to connect, and then for the service's first answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// What an HTTP/2 client sends first (its preface and an empty SETTINGS frame): a gRPC
/// service that accepted the handshake answers it with its own SETTINGS.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// A handshake that failed over a certificate.
#[derive(Debug)]
pub enum HandshakeRefusal {
    /// This client does not trust the certificate the service showed.
    ServiceNotTrusted(CertificateError),
    /// The service refused this client's certificate with this alert.
    ClientRefused(AlertDescription),
}

/// Shakes hands with the gRPC service at `address` (`host:port`, a scheme accepted) as
/// `config` does, and tells whether a certificate was refused on either side. `None`: the
/// handshake went through, or failed for another reason (nothing listening, a timeout).
pub async fn check(address: &str, config: &ClientConfig) -> Option<HandshakeRefusal> {
    let bare = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .unwrap_or(address);
    let host = bare.rsplit_once(':').map_or(bare, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).ok()?;
    let mut config = config.clone();
    // As tonic's clients offer it: the service may insist on it.
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = tokio::time::timeout(CHECK_TIMEOUT, TcpStream::connect(bare))
        .await
        .ok()?
        .ok()?;
    let handshake = tokio::time::timeout(CHECK_TIMEOUT, connector.connect(name, tcp)).await;
    let mut tls = match handshake.ok()? {
        Ok(tls) => tls,
        Err(e) => return refusal(&e),
    };
    // In TLS 1.3 the client's side of the handshake ends before the service has looked
    // at its certificate: a refusal comes as an alert in answer to the first request.
    // A write the service has already closed the connection for may fail: the alert is
    // read all the same.
    let _ = tls.write_all(H2_PREFACE).await;
    let _ = tls.flush().await;
    let mut answer = [0u8; 64];
    match tokio::time::timeout(CHECK_TIMEOUT, tls.read(&mut answer))
        .await
        .ok()?
    {
        Ok(_) => None,
        Err(e) => refusal(&e),
    }
}

fn refusal(error: &std::io::Error) -> Option<HandshakeRefusal> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(why) => {
            Some(HandshakeRefusal::ServiceNotTrusted(why.clone()))
        }
        rustls::Error::AlertReceived(alert) => Some(HandshakeRefusal::ClientRefused(*alert)),
        _ => None,
    }
}

impl HandshakeRefusal {
    /// What an operator reads: what happened at `address` (the `what` there) and what to
    /// do. `certs_dir`: the client's `--certs-dir`; `cert`: the certificate it showed;
    /// `make`: the command that makes the right one.
    pub fn explain(
        &self,
        what: &str,
        address: &str,
        certs_dir: &std::path::Path,
        cert: &std::path::Path,
        make: &str,
    ) -> String {
        let certs_dir = certs_dir.display();
        match self {
            HandshakeRefusal::ClientRefused(alert) => format!(
                "the {what} at {address} refused this client's certificate {} (TLS alert \
                 {alert:?}): is it signed by the cluster's CA? Make one with `{make}` in the \
                 cluster's certs folder (the one with its ca.key) and pass that folder as \
                 --certs-dir",
                cert.display()
            ),
            HandshakeRefusal::ServiceNotTrusted(
                why @ (CertificateError::UnknownIssuer | CertificateError::BadSignature),
            ) => format!(
                "the {what} at {address} showed a certificate that is not signed by the CA in \
                 {certs_dir}/ca.crt ({why:?}): is {certs_dir} the certs folder of the cluster \
                 this service belongs to?"
            ),
            HandshakeRefusal::ServiceNotTrusted(
                why @ (CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. }),
            ) => format!(
                "the {what} at {address} showed a certificate that is not made for that \
                 address ({why}): call it by a name or address its host's certificate names, \
                 or make that certificate again with `tritontube cert create-node` naming it"
            ),
            HandshakeRefusal::ServiceNotTrusted(why) => format!(
                "this client does not trust the certificate of the {what} at {address} \
                 ({why}), checked against {certs_dir}/ca.crt"
            ),
        }
    }
}
