//! The integrity record of a stored file: the SHA-256, CRC-32C and size recorded when the
//! file was stored, kept on the file itself as an extended attribute (`user.tritontube.rec`,
//! 45 bytes, which fit in an ext4 inode), or, on a file system without user attributes and
//! for files stored before, in a hidden sidecar `.{filename}.sha256` beside it. The
//! attribute wins when both exist. It cannot describe another file, costs no inode, rename
//! or unlink of its own (a sidecar doubled the inodes a node made and freed, and inode
//! allocation after many deletes was a ring change's largest cost), and is read with the
//! file's descriptor in one call.
//!
//! The record is the truth about a file's bytes: a read or a scrub whose bytes hash to
//! anything else has found a corrupt copy. The SHA-256 is the file's identity (what
//! uploads, pulls and repair compare, and what the scrub checks); the CRC-32C is what a
//! read checks, as Ceph's BlueStore and HDFS do: it finds every burst of corruption up to
//! 32 bits and any other with odds of 2^-32 of a miss, at ~30 GB/s against SHA-256's
//! ~2 GB/s, which made hashing half a storage node's work on a cache miss. Any mismatch is
//! settled by the SHA-256 before a copy is quarantined. A record from before the CRC (v1)
//! is read with the SHA-256 and gains its CRC from the bytes that matched.
//!
//! A record is never recomputed because the file looks
//! changed (an in-place overwrite keeps the size and may keep the mtime); only a file with
//! no record at all — one of the original system's folders — is hashed on first sight and
//! that hash recorded (trust on first use).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::stat::CHUNK_BYTES;
use super::store::{StoreResult, io_err};

pub(crate) const SIDECAR_SUFFIX: &str = ".sha256";
pub(crate) const TEMP_SUFFIX: &str = ".part";
const RECORD_FORMAT_V1: &str = "tritontube-sha256-v1";
/// v1 plus the CRC-32C (8 hex digits) as a fifth field.
const RECORD_FORMAT: &str = "tritontube-sha256-v2";
/// The extended attribute holding a file's record.
const RECORD_XATTR: &str = "user.tritontube.rec";
/// Its layout: version 1, then the SHA-256 (32 bytes), the CRC-32C and the size (both
/// big-endian).
const XATTR_VERSION: u8 = 1;
const XATTR_BYTES: usize = 1 + 32 + 4 + 8;
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
    /// None in a record written before reads checked a CRC.
    pub crc32c: Option<u32>,
    pub size: u64,
    mtime: i128,
    ino: u64,
}

impl Record {
    pub fn describing(meta: &fs::Metadata, digest: FileDigest) -> Self {
        Record {
            sha256: digest.sha256,
            crc32c: Some(digest.crc32c),
            size: meta.len(),
            mtime: mtime_nanos(meta),
            ino: meta.ino(),
        }
    }

    /// This record with `crc` as its CRC-32C (for a record that lacked it or had it wrong).
    pub fn with_crc32c(&self, crc: u32) -> Record {
        Record {
            crc32c: Some(crc),
            ..self.clone()
        }
    }

    /// Whether `meta` is still exactly the file this record was made from (same inode,
    /// size and mtime): used only to make sure a trust-on-first-use hash describes the
    /// file it is recorded for, never to accept bytes.
    pub fn same_version(&self, meta: &fs::Metadata) -> bool {
        self.size == meta.len() && self.mtime == mtime_nanos(meta) && self.ino == meta.ino()
    }

    fn encode(&self) -> String {
        match self.crc32c {
            Some(crc) => format!(
                "{RECORD_FORMAT} {} {} {} {} {crc:08x}\n",
                self.sha256, self.size, self.mtime, self.ino
            ),
            None => format!(
                "{RECORD_FORMAT_V1} {} {} {} {}\n",
                self.sha256, self.size, self.mtime, self.ino
            ),
        }
    }

    /// The attribute's value; None for a record without a CRC (never attached).
    fn to_xattr(&self) -> Option<[u8; XATTR_BYTES]> {
        let mut value = [0u8; XATTR_BYTES];
        value[0] = XATTR_VERSION;
        hex::decode_to_slice(&self.sha256, &mut value[1..33]).ok()?;
        value[33..37].copy_from_slice(&self.crc32c?.to_be_bytes());
        value[37..].copy_from_slice(&self.size.to_be_bytes());
        Some(value)
    }

    /// The record an attribute holds for the file `meta` describes (the attribute lives on
    /// its inode); None for anything else.
    fn from_xattr(value: &[u8], meta: &fs::Metadata) -> Option<Self> {
        if value.len() != XATTR_BYTES || value[0] != XATTR_VERSION {
            return None;
        }
        Some(Record {
            sha256: hex::encode(&value[1..33]),
            crc32c: Some(u32::from_be_bytes(value[33..37].try_into().ok()?)),
            size: u64::from_be_bytes(value[37..].try_into().ok()?),
            mtime: mtime_nanos(meta),
            ino: meta.ino(),
        })
    }

    /// None for anything torn or foreign: the file then counts as having no record.
    fn decode(text: &str) -> Option<Self> {
        let line = text.strip_suffix('\n')?;
        let mut parts = line.split(' ');
        let with_crc = match parts.next()? {
            RECORD_FORMAT => true,
            RECORD_FORMAT_V1 => false,
            _ => return None,
        };
        let sha256 = parts.next()?.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let size = parts.next()?.parse().ok()?;
        let mtime = parts.next()?.parse().ok()?;
        let ino = parts.next()?.parse().ok()?;
        let crc32c = match with_crc {
            true => {
                let hex = parts.next()?;
                (hex.len() == 8).then_some(())?;
                Some(u32::from_str_radix(hex, 16).ok()?)
            }
            false => None,
        };
        let record = Record {
            sha256,
            crc32c,
            size,
            mtime,
            ino,
        };
        parts.next().is_none().then_some(record)
    }
}

/// The record of the open `file` (`meta` its metadata): its attribute, else the sidecar.
pub(crate) fn record_of(file: &File, meta: &fs::Metadata, sidecar: &Path) -> Option<Record> {
    let mut value = [0u8; XATTR_BYTES + 1];
    // No attribute (ENODATA), none possible (EOPNOTSUPP) or a foreign one: the sidecar.
    match rustix::fs::fgetxattr(file, RECORD_XATTR, &mut value[..]) {
        Ok(len) => Record::from_xattr(&value[..len], meta).or_else(|| read_record(sidecar)),
        Err(_) => read_record(sidecar),
    }
}

/// Puts `record` on `file` as its attribute. Fails on a file system without user
/// attributes, or for a record without a CRC: the caller then keeps a sidecar.
pub(crate) fn attach_record(file: &File, record: &Record) -> io::Result<()> {
    let value = record
        .to_xattr()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a record without a CRC"))?;
    rustix::fs::fsetxattr(file, RECORD_XATTR, &value, rustix::fs::XattrFlags::empty())?;
    Ok(())
}

/// Records `record` for `file` (at `paths`-like `dir` and `sidecar`): on the file when the
/// file system allows it, removing the sidecar it replaces; else in the sidecar. Best
/// effort, as [`write_record`].
pub(crate) fn keep_record(file: &File, dir: &Path, sidecar: &Path, record: &Record) {
    match attach_record(file, record) {
        Ok(()) => {
            if let Err(e) = fs::remove_file(sidecar) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %sidecar.display(), error = %e, "could not remove a replaced checksum record");
                }
            }
        }
        Err(_) => write_record(dir, sidecar, record),
    }
}

/// The SHA-256, size and CRC-32C recorded for the stored file at `path` (for tools and
/// tests that look at a node's folder from outside).
pub fn recorded_sums(path: &Path) -> Option<(String, u64, Option<u32>)> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let name = path.file_name()?.to_str()?;
    let sidecar = path.with_file_name(sidecar_name(name));
    let record = record_of(&file, &meta, &sidecar)?;
    Some((record.sha256, record.size, record.crc32c))
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

/// Both sums of a file's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileDigest {
    /// Lowercase hex.
    pub sha256: String,
    pub crc32c: u32,
}

/// Computes both sums as the bytes go by (the CRC costs a few percent of the SHA-256).
#[derive(Clone, Debug, Default)]
pub(crate) struct FileHasher {
    sha256: Sha256,
    crc32c: u32,
}

impl FileHasher {
    pub fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        self.crc32c = crc32c::crc32c_append(self.crc32c, data);
    }

    pub fn finish(self) -> FileDigest {
        FileDigest {
            sha256: hex::encode(self.sha256.finalize()),
            crc32c: self.crc32c,
        }
    }
}

/// Both sums of everything in `file`, read from the start.
pub(crate) fn hash_file(file: &File, path: &Path) -> StoreResult<FileDigest> {
    let mut hasher = FileHasher::default();
    read_through(file, path, |chunk| hasher.update(chunk))?;
    Ok(hasher.finish())
}

/// Hands every byte of `file`, from the start, to `take` in chunks; returns how many
/// bytes there were.
pub(crate) fn read_through(
    file: &File,
    path: &Path,
    mut take: impl FnMut(&[u8]),
) -> StoreResult<u64> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut offset = 0u64;
    loop {
        let n = file
            .read_at(&mut buf, offset)
            .map_err(io_err("reading", path))?;
        if n == 0 {
            return Ok(offset);
        }
        take(&buf[..n]);
        offset += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_torn_text() {
        let r = Record {
            sha256: "a".repeat(64),
            crc32c: Some(0x0012_abcd),
            size: 12,
            mtime: 1_700_000_000_123_456_789,
            ino: 42,
        };
        let v1 = Record {
            crc32c: None,
            ..r.clone()
        };
        for record in [r, v1] {
            let text = record.encode();
            assert_eq!(Record::decode(&text), Some(record));
            for cut in 0..text.len() {
                assert_eq!(Record::decode(&text[..cut]), None, "{cut}");
            }
        }
        assert_eq!(Record::decode("other 1 2 3 4\n"), None);
        let v1_with_crc = format!("{RECORD_FORMAT_V1} {} 1 2 3 0000abcd\n", "a".repeat(64));
        assert_eq!(Record::decode(&v1_with_crc), None);
    }

    #[test]
    fn the_crc_is_crc32c_of_the_bytes_in_any_pieces() {
        let mut whole = FileHasher::default();
        whole.update(b"123456789");
        let mut pieces = FileHasher::default();
        pieces.update(b"1234");
        pieces.update(b"56789");
        // The CRC-32C check value of "123456789" (RFC 3720, iSCSI).
        assert_eq!(whole.clone().finish().crc32c, 0xe306_9283);
        assert_eq!(whole.finish(), pieces.finish());
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
