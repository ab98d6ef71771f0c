//! Addresses as operators give them (storage nodes, the admin service, etcd members):
//! checked and turned into URLs the same way everywhere.

/// Checks a storage node address as an operator types it: `host:port` (an IPv6 host in
/// brackets), port 1–65535, no scheme or spaces. Returns it trimmed, or why it is refused.
pub fn validate_address(input: &str) -> Result<String, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("type an address as host:port".into());
    }
    if s.contains(char::is_whitespace) {
        return Err("an address has no spaces".into());
    }
    if s.contains("://") {
        return Err("give host:port without a scheme".into());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("missing :port (host:port)".into());
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        // An IPv6 literal must be bracketed so its colons are not taken for the port.
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    };
    if !host_ok {
        return Err(format!("invalid host {host:?}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.to_string()),
        _ => Err(format!("invalid port {port:?} (1–65535)")),
    }
}

/// `host:port` → `http://host:port`; an address that already has a scheme is kept.
pub fn with_scheme(address: &str) -> String {
    let address = address.trim().trim_end_matches('/');
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheme_is_added_only_when_missing() {
        assert_eq!(with_scheme("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(with_scheme(" localhost:8081 "), "http://localhost:8081");
        assert_eq!(with_scheme("https://e:2379"), "https://e:2379");
        assert_eq!(
            with_scheme(" http://10.0.0.1:2379/ "),
            "http://10.0.0.1:2379"
        );
    }

    #[test]
    fn addresses_are_validated() {
        for ok in [
            "localhost:8090",
            "127.0.0.1:1",
            "node-3.example:65535",
            "[::1]:8090",
        ] {
            assert_eq!(validate_address(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            "localhost",
            ":8090",
            "localhost:0",
            "localhost:99999",
            "a b:1",
            "x:y",
            "http://a:1",
            "::1:80",
            "[::1:80",
        ] {
            assert!(validate_address(bad).is_err(), "{bad:?} accepted");
        }
    }
}
