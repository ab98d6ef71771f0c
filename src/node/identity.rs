//! The store's identity: a marker file `DIR/.tritontube-store` written the first time a
//! storage node serves a folder, holding a random id and the creation time.
//!
//! A node whose disk was replaced or whose folder was wiped comes back with a new id (and
//! `recreated` set), even though its address is the same, so the web node can tell that
//! every copy it held is gone and must be restored, instead of trusting its last listing.

use std::fs;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::record::temp_name;
use super::store::{StoreResult, io_err, is_absent};

pub const MARKER_NAME: &str = ".tritontube-store";
const MARKER_FORMAT: &str = "tritontube-store-v1";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreIdentity {
    /// 32 hex digits, random, fixed for the life of the folder; empty when unknown.
    pub id: String,
    pub created_unix_ms: u64,
    /// True when this process found no (readable) marker and wrote a new one: the folder
    /// is new, was wiped or replaced, or comes from the original system (then it already
    /// held files).
    pub recreated: bool,
}

impl StoreIdentity {
    /// Reads the marker in `root`, or writes a new one (durably) when there is none.
    pub fn load_or_create(root: &Path) -> StoreResult<StoreIdentity> {
        let path = root.join(MARKER_NAME);
        match fs::read_to_string(&path) {
            Ok(text) => {
                if let Some(identity) = decode(&text) {
                    return Ok(identity);
                }
                tracing::warn!(path = %path.display(), "unreadable store marker: writing a new one");
            }
            Err(e) if is_absent(&e) => {}
            Err(e) => return Err(io_err("reading", &path)(e)),
        }
        let identity = StoreIdentity {
            id: new_id(root),
            created_unix_ms: crate::node::now_unix_ms(),
            recreated: true,
        };
        let temp = root.join(temp_name());
        let written = fs::File::create(&temp)
            .and_then(|mut file| {
                writeln!(
                    file,
                    "{MARKER_FORMAT} {} {}",
                    identity.id, identity.created_unix_ms
                )?;
                file.sync_all()
            })
            .and_then(|()| fs::rename(&temp, &path))
            .and_then(|()| fs::File::open(root)?.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_err("writing", &path)(e));
        }
        tracing::info!(id = identity.id, "new store marker written");
        Ok(identity)
    }
}

fn decode(text: &str) -> Option<StoreIdentity> {
    let mut parts = text.strip_suffix('\n')?.split(' ');
    if parts.next()? != MARKER_FORMAT {
        return None;
    }
    let id = parts.next()?.to_string();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let created_unix_ms = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(StoreIdentity {
        id,
        created_unix_ms,
        recreated: false,
    })
}

/// Unique enough for telling folders apart: the time to the nanosecond, the process, the
/// folder and an address from this process's memory, hashed.
fn new_id(root: &Path) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let local = 0u8;
    let mut hasher = Sha256::new();
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(root.as_os_str().as_encoded_bytes());
    hasher.update((&local as *const u8 as usize).to_le_bytes());
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_written_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = StoreIdentity::load_or_create(dir.path()).unwrap();
        assert!(first.recreated);
        let again = StoreIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(
            (again.id.as_str(), again.created_unix_ms, again.recreated),
            (first.id.as_str(), first.created_unix_ms, false)
        );
        // A wiped folder gets a different identity.
        fs::remove_file(dir.path().join(MARKER_NAME)).unwrap();
        let wiped = StoreIdentity::load_or_create(dir.path()).unwrap();
        assert!(wiped.recreated && wiped.id != first.id);
    }

    #[test]
    fn torn_markers_are_not_believed() {
        let text = format!("{MARKER_FORMAT} {} 12\n", "a".repeat(32));
        assert!(decode(&text).is_some());
        for cut in 0..text.len() {
            assert!(decode(&text[..cut]).is_none(), "{cut}");
        }
    }
}
