//! The integrity record of a stored file: the SHA-256 (and size) recorded when the file was
//! stored, kept in a hidden sidecar `.{filename}.sha256` beside it.
//!
//! The record is the truth about a file's bytes: a read or a scrub whose bytes hash to
//! anything else has found a corrupt copy. It is never recomputed because the file looks
//! changed (an in-place overwrite keeps the size and may keep the mtime); only a file with
//! no record at all — one of the original system's folders — is hashed on first sight and
//! that hash recorded (trust on first use).

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::client::CHUNK_BYTES;
use super::store::{StoreResult, io_err};

pub(crate) const SIDECAR_SUFFIX: &str = ".sha256";
pub(crate) const TEMP_SUFFIX: &str = ".part";
const RECORD_FORMAT: &str = "tritontube-sha256-v1";
/// Longest file name common file systems accept.
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// `.{name}.sha256`, or a name derived from the hash of `name` when that would be too long.
pub(crate) fn sidecar_name(file_name: &str) -> String {
    if 1 + file_name.len() + SIDECAR_SUFFIX.len() <= MAX_NAME_BYTES {
        format!(".{file_name}{SIDECAR_SUFFIX}")
    } else {
        format!(
            ".h-{}{SIDECAR_SUFFIX}",
            hex::encode(Sha256::digest(file_name.as_bytes()))
        )
    }
}

/// A hidden, unique name for a file being written in a store folder.
pub(crate) fn temp_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        ".tmp-{}-{}{TEMP_SUFFIX}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with(".tmp-") && name.ends_with(TEMP_SUFFIX)
}

fn mtime_nanos(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// What a sidecar records: the hash and size the file had when it was stored, and (for
/// diagnosis only) the mtime and inode it had then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub sha256: String,
    pub size: u64,
    mtime: i128,
    ino: u64,
}

impl Record {
    pub fn describing(meta: &fs::Metadata, sha256: String) -> Self {
        Record {
            sha256,
            size: meta.len(),
            mtime: mtime_nanos(meta),
            ino: meta.ino(),
        }
    }

    /// Whether `meta` is still exactly the file this record was made from (same inode,
    /// size and mtime): used only to make sure a trust-on-first-use hash describes the
    /// file it is recorded for, never to accept bytes.
    pub fn same_version(&self, meta: &fs::Metadata) -> bool {
        self.size == meta.len() && self.mtime == mtime_nanos(meta) && self.ino == meta.ino()
    }

    fn encode(&self) -> String {
        format!(
            "{RECORD_FORMAT} {} {} {} {}\n",
            self.sha256, self.size, self.mtime, self.ino
        )
    }

    /// None for anything torn or foreign: the file then counts as having no record.
    fn decode(text: &str) -> Option<Self> {
        let line = text.strip_suffix('\n')?;
        let mut parts = line.split(' ');
        if parts.next()? != RECORD_FORMAT {
            return None;
        }
        let sha256 = parts.next()?.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let record = Record {
            sha256,
            size: parts.next()?.parse().ok()?,
            mtime: parts.next()?.parse().ok()?,
            ino: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(record)
    }
}

/// The record in `sidecar`, if there is a readable one.
pub(crate) fn read_record(sidecar: &Path) -> Option<Record> {
    fs::read_to_string(sidecar)
        .ok()
        .and_then(|text| Record::decode(&text))
}

/// Writes `record` to a new temp file in `dir` and returns its path, to be renamed over
/// the sidecar. Not fsynced: the data file is fsynced before it is renamed into place, so
/// a record lost in a crash is rebuilt from the very same bytes on first sight.
pub(crate) fn write_record_temp(dir: &Path, record: &Record) -> StoreResult<std::path::PathBuf> {
    let temp = dir.join(temp_name());
    if let Err(e) = fs::write(&temp, record.encode()) {
        let _ = fs::remove_file(&temp);
        return Err(io_err("writing checksum record", &temp)(e));
    }
    Ok(temp)
}

/// Writes `record` as the sidecar at `sidecar`, replacing any other. Best effort (for trust
/// on first use, where a missing record is simply made again later).
pub(crate) fn write_record(dir: &Path, sidecar: &Path, record: &Record) {
    let result = write_record_temp(dir, record).and_then(|temp| {
        fs::rename(&temp, sidecar).map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_err("renaming checksum record", sidecar)(e)
        })
    });
    if let Err(e) = result {
        tracing::warn!(path = %sidecar.display(), error = %e, "could not write checksum record");
    }
}

/// SHA-256 of everything in `file`, read from the start.
pub(crate) fn hash_file(file: &File, path: &Path) -> StoreResult<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut offset = 0u64;
    loop {
        let n = file
            .read_at(&mut buf, offset)
            .map_err(io_err("hashing", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_torn_text() {
        let r = Record {
            sha256: "a".repeat(64),
            size: 12,
            mtime: 1_700_000_000_123_456_789,
            ino: 42,
        };
        let text = r.encode();
        assert_eq!(Record::decode(&text), Some(r));
        for cut in 0..text.len() {
            assert_eq!(Record::decode(&text[..cut]), None, "{cut}");
        }
        assert_eq!(Record::decode("other 1 2 3 4\n"), None);
    }

    #[test]
    fn sidecar_names_stay_within_limits_and_hidden() {
        assert_eq!(sidecar_name("manifest.mpd"), ".manifest.mpd.sha256");
        let long = "x".repeat(255);
        let name = sidecar_name(&long);
        assert!(name.len() <= MAX_NAME_BYTES && name.starts_with('.'));
        assert!(is_temp_name(&temp_name()));
    }
}
