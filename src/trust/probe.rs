//! Whether a service speaks TLS: a client without `--certs-dir` that cannot talk to a
//! service learns why, instead of the raw HTTP/2 error a TLS listener's refusal makes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

/// How long the probe waits to connect and for the first bytes of the answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// TLS record types a server answers a ClientHello with: a handshake or an alert.
const HANDSHAKE: u8 = 0x16;
const ALERT: u8 = 0x15;

/// Sends a TLS ClientHello to `address` (`host:port`, a scheme accepted) and tells whether
/// a TLS record comes back. Nothing is authenticated: only the record's framing is read.
pub async fn speaks_tls(address: &str) -> bool {
    let bare = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .unwrap_or(address);
    tokio::time::timeout(PROBE_TIMEOUT, probe(bare))
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

async fn probe(address: &str) -> Option<bool> {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("a valid name"));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // No roots: the server's certificate is never looked at, only its first record.
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).ok()?;
    let mut stream = TcpStream::connect(address).await.ok()?;
    stream.write_all(&hello).await.ok()?;
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).await.ok()?;
    // A record header: its type, then the major version 3 of TLS 1.0–1.3.
    Some(matches!(header[0], HANDSHAKE | ALERT) && header[1] == 3)
}

/// The error a client without certificates gives when the service at `address` wants
/// TLS.
pub fn wants_tls_error(what: &str, address: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the {what} at {address} speaks only TLS: pass --certs-dir DIR (or set \
         TRITONTUBE_CERTS_DIR), the folder with the cluster's ca.crt and your operator \
         certificate client.USER.crt (made with `tritontube cert create-client USER`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_plain_listener_is_not_taken_for_tls() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 64];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        assert!(!speaks_tls(&address).await);
        // Nothing listening: not TLS either.
        assert!(!speaks_tls(&address).await);
    }
}
