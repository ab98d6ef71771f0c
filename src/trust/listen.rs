//! Secure by default off loopback: a process that would listen beyond this machine needs
//! the cluster's certificates, or `--insecure` to say it means the original's open protocol.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::tls::ClusterTls;

/// `--certs-dir` and `--insecure`, shared by the servers' command lines.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// Folder of the cluster's certificates (`tritontube cert …`): every internal link
    /// becomes mutual TLS.
    #[arg(long, env = "TRITONTUBE_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Serve the original's open, unencrypted protocol even off loopback.
    #[arg(long, env = "TRITONTUBE_INSECURE", conflicts_with = "certs_dir")]
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "refusing to listen on {0} without certificates: anyone on the network could read \
         and change the cluster. Pass --certs-dir DIR (made with `tritontube cert`), or \
         --insecure to serve the original's open protocol"
    )]
    InsecureOffLoopback(SocketAddr),
    #[error(transparent)]
    Cert(#[from] super::certs::CertError),
}

impl TrustArgs {
    /// The node's TLS when `--certs-dir` is given; otherwise `None`, which is refused
    /// when any of `listening` is off loopback and `--insecure` was not passed.
    pub fn node_tls(&self, listening: &[SocketAddr]) -> Result<Option<ClusterTls>, ListenError> {
        if let Some(dir) = &self.certs_dir {
            return Ok(Some(ClusterTls::node(dir)?));
        }
        if !self.insecure
            && let Some(open) = listening.iter().find(|a| !a.ip().is_loopback())
        {
            return Err(ListenError::InsecureOffLoopback(*open));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loopback_needs_certificates_or_insecure() {
        let loopback: SocketAddr = "127.0.0.1:8090".parse().unwrap();
        let open: SocketAddr = "10.77.0.2:8090".parse().unwrap();
        let everywhere: SocketAddr = "0.0.0.0:8090".parse().unwrap();
        let plain = TrustArgs::default();
        assert!(plain.node_tls(&[loopback]).unwrap().is_none());
        for refused in [open, everywhere] {
            let error = plain.node_tls(&[loopback, refused]).unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains("--certs-dir") && text.contains("--insecure"),
                "{text}"
            );
        }
        let insecure = TrustArgs {
            insecure: true,
            ..TrustArgs::default()
        };
        assert!(insecure.node_tls(&[open]).unwrap().is_none());
        let missing = TrustArgs {
            certs_dir: Some("/nonexistent/certs".into()),
            ..TrustArgs::default()
        };
        let text = missing.node_tls(&[open]).unwrap_err().to_string();
        assert!(text.contains("tritontube cert create-node"), "{text}");
    }
}
