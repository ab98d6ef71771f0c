//! Writing a file into the store: whole or not at all.
//!
//! A hidden temp file in the key's folder receives the bytes (checked as they come, see
//! [`Arrival`]); on commit it is fsynced, its record written to a temp file too, and both renamed into
//! place under the metadata lock, then the folder is fsynced. A write refused or failed
//! at any step — including a full disk, or one that would go below the reserve — removes
//! its temp files (and the video folder it created, when left empty) before it answers,
//! so nothing of it stays behind.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::record::{FileDigest, FileHasher, Record, attach_record, temp_name, write_record_temp};
use super::stat::FileStat;
use super::store::{
    Inner, KeyPaths, StoreError, StoreResult, blocking, io_err, is_absent, open_dir,
};

/// A write in progress. Its temp file becomes the real file only through [`commit`];
/// dropped any other way (error, cancelled request), the temp file is removed.
///
/// [`commit`]: PendingWrite::commit
#[derive(Debug)]
pub struct PendingWrite {
    // Moved into the blocking pool for each write; `None` only while it is there, or
    // after the write failed (and was cleaned up).
    state: Option<WriteState>,
    store: Arc<Inner>,
    key: String,
}

/// How the bytes of a write are checked before they become the file.
#[derive(Clone, Debug)]
pub enum Arrival {
    /// New bytes: both sums are computed as they come, and the SHA-256 must be this one
    /// when one is given.
    Hashed(Option<String>),
    /// A copy of a file another node holds under this record (a pull): only the CRC-32C
    /// is computed, and it must be the recorded one. The source checked its bytes against
    /// the same CRC as it read them, and the record's two sums were made from the same
    /// bytes, so the SHA-256 is recorded as the source's without hashing the copy again
    /// (HDFS moves blocks between data nodes the same way); the scrub checks it later.
    Copy { sha256: String, crc32c: u32 },
}

#[derive(Debug)]
enum ArrivalSum {
    Hashed {
        hasher: FileHasher,
        expected: Option<String>,
    },
    Copy {
        running: u32,
        sha256: String,
        crc32c: u32,
    },
}

impl ArrivalSum {
    fn new(arrival: Arrival) -> Self {
        match arrival {
            Arrival::Hashed(expected) => ArrivalSum::Hashed {
                hasher: FileHasher::default(),
                expected,
            },
            Arrival::Copy { sha256, crc32c } => ArrivalSum::Copy {
                running: 0,
                sha256,
                crc32c,
            },
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            ArrivalSum::Hashed { hasher, .. } => hasher.update(data),
            ArrivalSum::Copy { running, .. } => *running = crc32c::crc32c_append(*running, data),
        }
    }

    /// The sums to record, or why the bytes are not the expected ones.
    fn settle(&self) -> StoreResult<FileDigest> {
        match self {
            ArrivalSum::Hashed { hasher, expected } => {
                let digest = hasher.clone().finish();
                match expected {
                    Some(expected) if *expected != digest.sha256 => {
                        Err(StoreError::ChecksumMismatch {
                            expected: expected.clone(),
                            actual: digest.sha256,
                        })
                    }
                    _ => Ok(digest),
                }
            }
            ArrivalSum::Copy {
                running,
                sha256,
                crc32c,
            } if running == crc32c => Ok(FileDigest {
                sha256: sha256.clone(),
                crc32c: *crc32c,
            }),
            ArrivalSum::Copy {
                running, crc32c, ..
            } => Err(StoreError::CopyMismatch {
                expected: *crc32c,
                actual: *running,
            }),
        }
    }
}

#[derive(Debug)]
struct WriteState {
    file: File,
    sum: ArrivalSum,
    size: u64,
    temp: TempFile,
    paths: KeyPaths,
}

/// Removes the temp file when dropped, unless it was renamed into place or removed.
#[derive(Debug)]
struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    fn persisted(&mut self) {
        self.path = None;
    }

    /// Removes the file now, on the calling thread.
    fn remove_now(&mut self) {
        if let Some(path) = self.path.take() {
            remove_quietly(&path);
        }
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if !is_absent(&e) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove temp file");
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        // Keep the unlink off the async threads when there is a runtime to hand it to.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(move || remove_quietly(&path))),
            Err(_) => remove_quietly(&path),
        }
    }
}

/// Removes what a failed write made (its temp file, and its video folder when nothing
/// else is in it), before the failure is answered.
fn abandon(store: &Inner, state: WriteState) {
    let WriteState {
        file,
        mut temp,
        paths,
        ..
    } = state;
    drop(file);
    // Under the lock, so the folder is not removed under another write about to use it.
    let _meta = store.lock();
    temp.remove_now();
    let _ = fs::remove_dir(&paths.dir);
}

impl PendingWrite {
    pub(crate) async fn begin(
        store: Arc<Inner>,
        key: &str,
        arrival: Arrival,
    ) -> StoreResult<PendingWrite> {
        let paths = store.paths(key)?;
        let inner = Arc::clone(&store);
        let state = blocking(move || begin_blocking(&inner, paths, arrival)).await?;
        Ok(PendingWrite {
            state: Some(state),
            store,
            key: key.to_string(),
        })
    }

    /// Stores `data` as the whole file in one hand-off to the blocking pool (a pulled
    /// segment arrives as one message: three hand-offs per file were measurable).
    pub(crate) async fn whole(
        store: Arc<Inner>,
        key: &str,
        arrival: Arrival,
        data: Bytes,
    ) -> StoreResult<FileStat> {
        let paths = store.paths(key)?;
        let key = key.to_string();
        blocking(move || {
            let state = begin_blocking(&store, paths, arrival)?;
            let state = append_blocking(&store, state, &data)?;
            commit_blocking(&store, &key, state)
        })
        .await
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Gives the write up: removes its temp file (and its video folder when that is left
    /// empty) before returning.
    pub async fn abandon(mut self) {
        if let Some(state) = self.state.take() {
            let store = Arc::clone(&self.store);
            let _ = tokio::task::spawn_blocking(move || abandon(&store, state)).await;
        }
    }

    /// Appends `data` to the temp file (and to the running sum). Refused, and the write
    /// abandoned, when the bytes would not fit above the reserve.
    pub async fn write(&mut self, data: Bytes) -> StoreResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        let state = self
            .state
            .take()
            .ok_or_else(|| StoreError::Task("write after a failed write".into()))?;
        let store = Arc::clone(&self.store);
        let state = blocking(move || append_blocking(&store, state, &data)).await?;
        self.state = Some(state);
        Ok(())
    }

    /// Makes the written bytes the file under the key, atomically, if they pass the
    /// write's [`Arrival`] check; otherwise keeps nothing. Their sums are recorded as the
    /// truth about the file's bytes, and any quarantined copy of the key is cleared (it
    /// was replaced).
    pub async fn commit(mut self) -> StoreResult<FileStat> {
        let state = self
            .state
            .take()
            .ok_or_else(|| StoreError::Task("commit after a failed write".into()))?;
        let store = Arc::clone(&self.store);
        let key = std::mem::take(&mut self.key);
        blocking(move || commit_blocking(&store, &key, state)).await
    }
}

impl Drop for PendingWrite {
    /// A write dropped half way (its request was cancelled) cleans up in the background.
    fn drop(&mut self) {
        let Some(state) = self.state.take() else {
            return;
        };
        let store = Arc::clone(&self.store);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(move || abandon(&store, state))),
            Err(_) => abandon(&store, state),
        }
    }
}

/// Blocking: stores under `key` the `size` bytes `next` puts in `buf` (it returns how
/// many, 0 at the end, or why it could not), checked as `arrival` says. The outer error is `next`'s;
/// on any failure nothing of the write stays.
pub(crate) fn write_blocking<E>(
    store: &Inner,
    key: &str,
    arrival: Arrival,
    size: u64,
    buf: &mut [u8],
    mut next: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<StoreResult<FileStat>, E> {
    let begun = store
        .paths(key)
        .and_then(|paths| begin_blocking(store, paths, arrival));
    let mut state = match begun {
        Ok(state) => state,
        Err(e) => return Ok(Err(e)),
    };
    if size > 0 {
        // All the blocks at once, instead of a delayed allocation per page written (half
        // of ext4's cost per page in a ring change's profile). Where the file system
        // cannot, the writes allocate as they go.
        let _ = rustix::fs::fallocate(&state.file, rustix::fs::FallocateFlags::empty(), 0, size);
    }
    loop {
        let n = match next(buf) {
            Ok(n) => n,
            Err(e) => {
                abandon(store, state);
                return Err(e);
            }
        };
        if n == 0 && state.size != size {
            // A file preallocated to `size` must not be kept shorter (or longer).
            let short = format!("{} of {size} bytes of {key} arrived", state.size);
            abandon(store, state);
            return Ok(Err(StoreError::Task(short)));
        }
        if n == 0 {
            return Ok(commit_blocking(store, key, state));
        }
        state = match append_blocking(store, state, &buf[..n]) {
            Ok(state) => state,
            Err(e) => return Ok(Err(e)),
        };
    }
}

fn begin_blocking(store: &Inner, paths: KeyPaths, arrival: Arrival) -> StoreResult<WriteState> {
    store.check_room(0)?;
    // Under the lock, so a delete cannot remove the folder before the temp file is in it.
    let _meta = store.lock();
    let created_dir = !paths.dir.is_dir();
    fs::create_dir_all(&paths.dir).map_err(io_err("creating", &paths.dir))?;
    let temp_path = paths.dir.join(temp_name());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp_path)
        .map_err(|e| {
            if created_dir {
                let _ = fs::remove_dir(&paths.dir);
            }
            io_err("creating", &temp_path)(e)
        })?;
    Ok(WriteState {
        file,
        sum: ArrivalSum::new(arrival),
        size: 0,
        temp: TempFile {
            path: Some(temp_path),
        },
        paths,
    })
}

/// Appends to the temp file; a failure abandons the write.
fn append_blocking(store: &Inner, mut state: WriteState, data: &[u8]) -> StoreResult<WriteState> {
    let written = store.check_room(data.len() as u64).and_then(|()| {
        let temp_path = state.temp.path.clone().unwrap_or_default();
        state
            .file
            .write_all(data)
            .map_err(io_err("writing", &temp_path))
    });
    if let Err(e) = written {
        abandon(store, state);
        return Err(e);
    }
    state.sum.update(data);
    state.size += data.len() as u64;
    Ok(state)
}

fn commit_blocking(store: &Inner, key: &str, state: WriteState) -> StoreResult<FileStat> {
    let digest = match state.sum.settle() {
        Ok(digest) => digest,
        Err(e) => {
            abandon(store, state);
            return Err(e);
        }
    };
    let (sha256, crc32c) = (digest.sha256.clone(), digest.crc32c);
    let temp_path = state.temp.path.clone().unwrap_or_default();
    // A rename keeps the inode and mtime, so this describes the file under its real name.
    // The record goes on the file before the fsync, which makes both durable; a file
    // system without user attributes gets a sidecar (written after, see write_record_temp).
    let prepared = state
        .file
        .metadata()
        .map_err(io_err("syncing", &temp_path))
        .and_then(|meta| {
            let record = Record::describing(&meta, digest);
            let attached = attach_record(&state.file, &record).is_ok();
            state
                .file
                .sync_all()
                .map_err(io_err("syncing", &temp_path))?;
            match attached {
                true => Ok(None),
                false => write_record_temp(&state.paths.dir, &record).map(Some),
            }
        });
    let record_temp = match prepared {
        Ok(path) => path,
        Err(e) => {
            abandon(store, state);
            return Err(e);
        }
    };
    let WriteState {
        file,
        size,
        mut temp,
        paths,
        ..
    } = state;
    drop(file);
    let dir = {
        let mut meta = store.lock();
        let previous = match fs::metadata(&paths.file) {
            Ok(m) if m.is_file() => Some(m.len()),
            _ => None,
        };
        if let Err(e) = fs::rename(&temp_path, &paths.file) {
            if let Some(record_temp) = &record_temp {
                remove_quietly(record_temp);
            }
            temp.remove_now();
            let _ = fs::remove_dir(&paths.dir);
            return Err(io_err("renaming into", &paths.file)(e));
        }
        temp.persisted();
        match &record_temp {
            Some(record_temp) => {
                if let Err(e) = fs::rename(record_temp, &paths.sidecar) {
                    // An old record must not describe the new bytes: without one, the
                    // file is hashed afresh on first sight, from the bytes just fsynced.
                    tracing::warn!(path = %paths.sidecar.display(), error = %e, "could not put a checksum record in place");
                    remove_quietly(record_temp);
                    remove_quietly(&paths.sidecar);
                }
            }
            // The attribute wins over a sidecar the replaced file may have had; removed
            // all the same, so nothing stale is left in the folder.
            None if previous.is_some() => remove_quietly(&paths.sidecar),
            None => {}
        }
        match previous {
            Some(old) => meta.totals.bytes = meta.totals.bytes.saturating_sub(old) + size,
            None => {
                meta.totals.files += 1;
                meta.totals.bytes += size;
            }
        }
        meta.index.put(key, &sha256);
        let cleared = meta.quarantine.clear(key);
        if cleared > 0 {
            tracing::info!(key, cleared, "a quarantined key was written again");
        }
        open_dir(&paths.dir)?
    };
    dir.sync()?;
    Ok(FileStat {
        size,
        sha256,
        crc32c: Some(crc32c),
    })
}
