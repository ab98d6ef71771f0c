//! An upload's hold on a video id. A claim names itself with a token unique across
//! processes, so the upload that made it can remove its own record later (after a write
//! with an unknown outcome, or once a lost quorum returns) without ever touching a record
//! that another upload made since.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub id: String,
    /// The upload time the claim records.
    pub at: DateTime<Utc>,
    /// Stored in the record (etcd), so a claim retried after an ambiguous failure can
    /// tell its own earlier success from someone else's.
    pub token: String,
}

impl Claim {
    pub fn new(id: &str, at: DateTime<Utc>) -> Claim {
        Claim {
            id: id.to_owned(),
            at,
            token: token(),
        }
    }
}

/// A token unique across processes and calls.
fn token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!(
        "{:x}-{:x}-{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_of_one_id_and_time_have_different_tokens() {
        let at = Utc::now();
        assert_ne!(Claim::new("a", at).token, Claim::new("a", at).token);
    }
}
