//! The quarantine: copies whose bytes no longer match their recorded SHA-256, moved aside
//! (never deleted) into `DIR/.quarantine/`, a hidden folder no key can name, so they are
//! neither served nor listed, and repair can see what was lost and from when.
//!
//! Each entry is two files, `{stem}.json` (what was found, for which key, when) and
//! `{stem}.data` (the bytes as they were). The record is written first, so a crash between
//! the two steps leaves a record without data, dropped on the next start, and the copy
//! still under its key, found corrupt again by the next read or scrub.
//!
//! An entry lasts until its key is written again (a repair restored it) or deleted (the
//! video was removed): keeping corrupt bytes once a good copy is back serves nobody.
//! All of it runs under the store's metadata lock, on the blocking pool.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::disk::is_cross_device;
use super::record::{is_temp_name, temp_name};
use super::store::{StoreResult, io_err, is_absent};

/// The quarantine folder's name inside the store folder.
pub const QUARANTINE_DIR: &str = ".quarantine";

/// What found a corrupt copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FoundBy {
    /// A read (GetFile, DownloadFile, a pull from this node).
    Read,
    /// The background scrub.
    Scrub,
    /// An explicit check (StatFile with `verify`).
    Verify,
}

impl FoundBy {
    pub fn as_str(self) -> &'static str {
        match self {
            FoundBy::Read => "read",
            FoundBy::Scrub => "scrub",
            FoundBy::Verify => "verify",
        }
    }
}

/// One quarantined copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedCopy {
    pub key: String,
    /// Size of the quarantined bytes.
    pub size: u64,
    pub quarantined_unix_ms: u64,
    /// Why, in words ("bytes hash to …, recorded …").
    pub reason: String,
    /// The SHA-256 recorded when the file was stored: what a good copy hashes to.
    pub expected_sha256: String,
    /// What the bytes hashed to; empty when the size alone gave them away.
    pub actual_sha256: String,
    pub found_by: FoundBy,
}

#[derive(Debug)]
struct Entry {
    stem: String,
    copy: QuarantinedCopy,
}

#[derive(Debug)]
pub struct Quarantine {
    dir: PathBuf,
    entries: Vec<Entry>,
}

fn stem() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        crate::node::now_unix_ms(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Quarantine {
    /// The quarantine of the store at `root`, as left on disk (creates nothing).
    pub fn load(root: &Path) -> StoreResult<Quarantine> {
        let dir = root.join(QUARANTINE_DIR);
        let mut quarantine = Quarantine {
            dir,
            entries: Vec::new(),
        };
        let listing = match fs::read_dir(&quarantine.dir) {
            Ok(listing) => listing,
            Err(e) if is_absent(&e) => return Ok(quarantine),
            Err(e) => return Err(io_err("listing", &quarantine.dir)(e)),
        };
        for entry in listing {
            let entry = entry.map_err(io_err("listing", &quarantine.dir))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_temp_name(&name) {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let data = quarantine.dir.join(format!("{stem}.data"));
            let copy = fs::read_to_string(entry.path())
                .ok()
                .and_then(|text| serde_json::from_str::<QuarantinedCopy>(&text).ok());
            match copy {
                Some(copy) if data.is_file() => quarantine.entries.push(Entry {
                    stem: stem.to_string(),
                    copy,
                }),
                // Torn, or the crash came before the data was moved: nothing to keep.
                _ => {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        quarantine
            .entries
            .sort_by_key(|e| e.copy.quarantined_unix_ms);
        Ok(quarantine)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every quarantined copy, oldest first.
    pub fn list(&self) -> Vec<QuarantinedCopy> {
        self.entries.iter().map(|e| e.copy.clone()).collect()
    }

    /// Moves the file at `file` into the quarantine, recorded as `copy`.
    pub fn admit(&mut self, file: &Path, copy: QuarantinedCopy) -> StoreResult<()> {
        fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
        let stem = stem();
        let record = self.dir.join(format!("{stem}.json"));
        let data = self.dir.join(format!("{stem}.data"));
        let temp = self.dir.join(temp_name());
        let text = serde_json::to_string_pretty(&copy).expect("a quarantine record serialises");
        fs::write(&temp, text)
            .and_then(|()| fs::rename(&temp, &record))
            .map_err(|e| {
                let _ = fs::remove_file(&temp);
                io_err("writing quarantine record", &record)(e)
            })?;
        if let Err(e) = move_file(file, &data) {
            let _ = fs::remove_file(&record);
            return Err(e);
        }
        if let Ok(handle) = fs::File::open(&self.dir) {
            let _ = handle.sync_all();
        }
        self.entries.push(Entry { stem, copy });
        Ok(())
    }

    /// Drops every entry for `key` (it was written again or deleted); returns how many.
    pub fn clear(&mut self, key: &str) -> usize {
        let before = self.entries.len();
        let dir = self.dir.clone();
        self.entries.retain(|entry| {
            if entry.copy.key != key {
                return true;
            }
            for suffix in ["data", "json"] {
                let path = dir.join(format!("{}.{suffix}", entry.stem));
                if let Err(e) = fs::remove_file(&path) {
                    if !is_absent(&e) {
                        tracing::warn!(path = %path.display(), error = %e, "could not remove a quarantined copy");
                    }
                }
            }
            false
        });
        before - self.entries.len()
    }
}

/// Renames `from` to `to`; copies then removes when they are on different file systems (a
/// video folder linked in from another disk).
fn move_file(from: &Path, to: &Path) -> StoreResult<()> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if is_cross_device(&e) => {
            fs::copy(from, to)
                .and_then(|_| fs::File::open(to)?.sync_all())
                .map_err(|e| {
                    let _ = fs::remove_file(to);
                    io_err("copying into quarantine", to)(e)
                })?;
            fs::remove_file(from).map_err(io_err("removing", from))
        }
        Err(e) => Err(io_err("moving into quarantine", to)(e)),
    }
}
