//! The one check of an operator's credential, for the admin service's calls and the web
//! node's HTTP `DELETE` (and any mutating route added later): the operator's client
//! certificate or the admin token. Open without either only on loopback with no
//! certificates configured (`tritontube up`'s zero configuration).

use super::Role;

/// Where a caller puts the admin token: a gRPC metadata key, and an HTTP header (beside
/// `Authorization: Bearer`).
pub const TOKEN_HEADER: &str = "x-tritontube-token";

/// What a web node accepts as an operator's credential.
#[derive(Debug, Clone)]
pub struct AdminCredential {
    token: Option<String>,
    open: bool,
}

/// Why a call was refused; the text names what to present.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("admin token refused")]
    WrongToken,
    #[error(
        "this needs the operator's client certificate (tritontube cert create-client) or the \
         admin token (--token or TRITONTUBE_ADMIN_TOKEN)"
    )]
    NoCredential,
}

impl AdminCredential {
    /// `token`: the admin token, if any. `open`: whether a caller with neither credential
    /// is let through when no token is set — only for a node that listens on loopback
    /// alone and has no certificates.
    pub fn new(token: Option<String>, open: bool) -> AdminCredential {
        AdminCredential { token, open }
    }

    pub fn token_is_set(&self) -> bool {
        self.token.is_some()
    }

    /// `token`: the one the caller sent; `role`: its TLS certificate's, when it showed one.
    pub fn check(&self, token: Option<&str>, role: Option<Role>) -> Result<(), Refusal> {
        if role == Some(Role::Client) {
            return Ok(());
        }
        match (&self.token, token) {
            (Some(expected), Some(given)) if same_token(given.trim(), expected) => Ok(()),
            (Some(_), Some(_)) => Err(Refusal::WrongToken),
            (None, _) if self.open => Ok(()),
            _ => Err(Refusal::NoCredential),
        }
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same_token("secret", "secret"));
        assert!(!same_token("secret", "secreT"));
        assert!(!same_token("secret", "secre"));
    }

    #[test]
    fn the_operator_certificate_or_the_token_and_open_only_when_told() {
        let token = AdminCredential::new(Some("s3cret".into()), false);
        assert_eq!(token.check(Some("s3cret"), None), Ok(()));
        assert_eq!(token.check(Some("guess"), None), Err(Refusal::WrongToken));
        assert_eq!(token.check(None, None), Err(Refusal::NoCredential));
        assert_eq!(token.check(None, Some(Role::Client)), Ok(()));
        assert_eq!(
            token.check(None, Some(Role::Node)),
            Err(Refusal::NoCredential)
        );

        let closed = AdminCredential::new(None, false);
        assert_eq!(closed.check(None, None), Err(Refusal::NoCredential));
        assert_eq!(
            closed.check(Some("any"), Some(Role::Node)),
            Err(Refusal::NoCredential)
        );
        assert_eq!(closed.check(None, Some(Role::Client)), Ok(()));

        let loopback = AdminCredential::new(None, true);
        assert_eq!(loopback.check(None, None), Ok(()));
        // A set token is always required, even on loopback.
        let loopback_token = AdminCredential::new(Some("t".into()), true);
        assert_eq!(loopback_token.check(None, None), Err(Refusal::NoCredential));
    }
}
