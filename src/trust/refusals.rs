//! An audit trail of refused TLS handshakes: a warning naming the peer and why, at most one
//! line per peer address in each [`WINDOW`] with a count of the refusals left out, so a
//! flood of attempts cannot fill the disk.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_rustls::rustls;

/// One line per peer address at most this often.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Peer addresses remembered at once; beyond them new peers share one line.
const MAX_PEERS: usize = 4096;

/// The refusals of one listener (`what`: "storage node", "admin service").
pub struct RefusalLog {
    what: &'static str,
    /// Keyed by the peer's IP (its port changes with every connection); `None` stands for
    /// the peers that found the table full.
    peers: Mutex<HashMap<Option<IpAddr>, Seen>>,
}

struct Seen {
    logged_at: Instant,
    suppressed: u64,
}

impl RefusalLog {
    pub fn new(what: &'static str) -> RefusalLog {
        RefusalLog {
            what,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Logs `error`, a failed handshake with `peer`, when TLS itself refused it (a
    /// certificate, a missing one, bytes that are not TLS) and the peer's window allows;
    /// true when it was such a refusal. Other failures (a reset, a timeout) are the
    /// caller's to log.
    pub fn handshake_failed(&self, peer: SocketAddr, error: &io::Error) -> bool {
        let Some(reason) = refusal_reason(error) else {
            return false;
        };
        if let Some(suppressed) = self.admit(peer.ip(), Instant::now()) {
            tracing::warn!(
                %peer,
                %reason,
                suppressed,
                "the {} refused a TLS handshake",
                self.what
            );
        }
        true
    }

    /// `Some(refusals left out since the last line)` when a line for `ip` is due at `now`.
    fn admit(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = Some(ip);
        if !peers.contains_key(&key) && peers.len() >= MAX_PEERS {
            peers.retain(|_, seen| now.duration_since(seen.logged_at) < WINDOW);
            if peers.len() >= MAX_PEERS {
                key = None;
            }
        }
        match peers.get_mut(&key) {
            Some(seen) if now.duration_since(seen.logged_at) < WINDOW => {
                seen.suppressed += 1;
                None
            }
            Some(seen) => {
                let suppressed = seen.suppressed;
                *seen = Seen {
                    logged_at: now,
                    suppressed: 0,
                };
                Some(suppressed)
            }
            None => {
                let seen = Seen {
                    logged_at: now,
                    suppressed: 0,
                };
                peers.insert(key, seen);
                Some(0)
            }
        }
    }
}

/// Why TLS refused a handshake, when `error` is such a refusal (rustls's error, which
/// tokio-rustls wraps in the I/O error).
pub fn refusal_reason(error: &io::Error) -> Option<String> {
    let error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match error {
        rustls::Error::AlertReceived(alert) => {
            format!("the peer refused this host's certificate (TLS alert {alert:?})")
        }
        rustls::Error::NoCertificatesPresented => {
            "the peer showed no certificate (one from the cluster CA is required)".to_string()
        }
        rustls::Error::InvalidMessage(_) => {
            format!("the peer does not speak TLS ({error})")
        }
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_peer_per_window_with_the_count_left_out() {
        let log = RefusalLog::new("storage node");
        let (flooder, other): (IpAddr, IpAddr) =
            ("10.0.0.6".parse().unwrap(), "10.0.0.7".parse().unwrap());
        let start = Instant::now();
        assert_eq!(log.admit(flooder, start), Some(0));
        for second in 1..4 {
            let now = start + Duration::from_secs(second);
            assert_eq!(log.admit(flooder, now), None);
        }
        // Another peer has a window of its own.
        assert_eq!(log.admit(other, start + Duration::from_secs(1)), Some(0));
        assert_eq!(log.admit(flooder, start + WINDOW), Some(3));
        assert_eq!(log.admit(flooder, start + WINDOW), None);
    }

    #[test]
    fn a_full_table_shares_one_line_among_new_peers() {
        let log = RefusalLog::new("admin service");
        let start = Instant::now();
        for n in 0..MAX_PEERS as u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            assert_eq!(log.admit(ip, start), Some(0));
        }
        let late = |n: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + n));
        assert_eq!(log.admit(late(0), start), Some(0));
        assert_eq!(log.admit(late(1), start), None);
        assert_eq!(log.peers.lock().unwrap().len(), MAX_PEERS + 1);
        // Once the windows have passed, old peers make room again.
        assert_eq!(log.admit(late(2), start + WINDOW), Some(0));
        assert_eq!(log.peers.lock().unwrap().len(), 1);
    }

    #[test]
    fn only_tls_refusals_are_refusals() {
        let refused = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert!(refusal_reason(&refused).unwrap().contains("no certificate"));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(refusal_reason(&reset), None);
    }
}
