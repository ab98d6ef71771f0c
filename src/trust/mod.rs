//! Trust between hosts: the cluster's certificates and who may do what (DESIGN.md §6c).
//!
//! - [`certs`]: `tritontube cert create-ca|create-node|create-client` (rcgen).
//! - [`cli`]: the `cert` subcommand's command line.
//! - [`credential`]: the one check of an operator's credential.
//! - [`tls`]: mutual TLS on the internal links and the role checks.
//! - [`listen`]: secure by default off loopback.
//! - [`probe`]: whether a service speaks TLS, for a clear error when a client lacks it.
//! - [`handshake`]: why a TLS handshake with a service failed, for a clear error.
//! - [`refusals`]: the rate-limited log of the handshakes a listener refused.
//! - [`accept`]: a TLS listener for gRPC that logs the handshakes it refuses.

pub mod accept;
pub mod certs;
pub mod cli;
pub mod credential;
pub mod handshake;
pub mod listen;
pub mod probe;
pub mod refusals;
pub mod tls;

/// What a certificate's holder is to the cluster, written in its subject's OU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The cluster CA itself.
    Ca,
    /// A storage or web node: may call the storage RPCs.
    Node,
    /// An operator: may call the mutating admin RPCs and delete videos.
    Client,
}

impl Role {
    pub fn unit(self) -> &'static str {
        match self {
            Role::Ca => "tritontube-ca",
            Role::Node => "tritontube-node",
            Role::Client => "tritontube-client",
        }
    }
}

/// The role a peer's certificate (DER) carries in its subject's OU; `None` for a
/// certificate that names none or cannot be parsed. Only meaningful once the TLS
/// handshake has checked the certificate against the cluster CA.
pub fn role_of(cert_der: &[u8]) -> Option<Role> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let unit = cert.subject().iter_organizational_unit().next()?;
    let unit = unit.as_str().ok()?;
    [Role::Ca, Role::Node, Role::Client]
        .into_iter()
        .find(|role| role.unit() == unit)
}
