//! The on-disk store: `DIR/{videoId}/{filename}`, the original Tritontube's layout, so a
//! folder written by the original system is served as it is.
//!
//! - Writes land whole or not at all ([`super::write`]): a hidden temp file in the same
//!   folder is written, fsynced, renamed over the real name, and the folder is fsynced. A
//!   write that fails or is abandoned leaves nothing. A full disk (or one that would go
//!   below the configured reserve) is [`StoreError::DiskFull`].
//! - Every file's SHA-256 is recorded when it is stored ([`super::record`]); reads check the
//!   bytes against it ([`super::verify`]) and never complete with bytes that differ: the copy
//!   is moved to the quarantine ([`super::quarantine`]) and the read fails with
//!   [`StoreError::Corrupt`].
//! - Hidden names (starting with `.`) belong to the store; keys can never name them.
//! - All file I/O runs on the blocking pool, never on the async threads.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;

use super::disk::{DiskSpace, disk_space, is_disk_full};
use super::index::{PositionIndex, RangeDigest};
use super::keys::split_key;
use super::quarantine::{FoundBy, Quarantine, QuarantinedCopy};
use super::record::sidecar_name;
use super::stat::{FileStat, NodeStats};
use super::verify::{FirstSight, OpenFile, SmallRead};
pub use super::walk::ListedKey;
use super::walk::{build_index, list_keys, scan, walk, walk_batches};
use super::write::{Arrival, PendingWrite};
use crate::ring::KeyRange;

pub use super::keys::KeyError;

/// Keys per batch when listing, so a node with 100 000 files never builds one big reply.
pub const LIST_BATCH: usize = 1000;
/// Free space a node keeps by default: writes that would leave less are refused, so the
/// node's own small files (records, quarantine notes) and its neighbours on the disk
/// still have room.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    BadKey(#[from] KeyError),
    #[error("no such file")]
    NotFound,
    #[error("SHA-256 mismatch: expected {expected}, received data hashes to {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error(
        "CRC-32C mismatch: the source's record says {expected:08x}, the bytes received give {actual:08x}"
    )]
    CopyMismatch { expected: u32, actual: u32 },
    #[error("expected SHA-256 must be 64 hex digits")]
    BadChecksum,
    #[error("offset {offset} is beyond the end of the file ({size} bytes)")]
    OutOfRange { offset: u64, size: u64 },
    /// The stored copy does not match the SHA-256 recorded when it was stored; it has
    /// been moved to the quarantine (unless a new write replaced it meanwhile).
    #[error("stored copy of {key} is corrupt ({reason}); moved to quarantine")]
    Corrupt { key: String, reason: String },
    /// No room for the write: the disk is full, or the write would go below the reserve.
    #[error("disk full: {0}")]
    DiskFull(String),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("storage task failed: {0}")]
    Task(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Maps an I/O error on `path`; a full disk becomes [`StoreError::DiskFull`].
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| {
        if is_disk_full(&source) {
            StoreError::DiskFull(format!("no space left on the device while {op}"))
        } else {
            StoreError::Io {
                op,
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Absent, or a path through something that is not a folder: both mean "no such file".
pub(crate) fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Runs blocking file work on the blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> StoreResult<T>
where
    F: FnOnce() -> StoreResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// Checks an expected hash before anything is written; returns it lowercased.
pub fn parse_expected_sha256(hex_digest: &str) -> StoreResult<Option<String>> {
    if hex_digest.is_empty() {
        return Ok(None);
    }
    if hex_digest.len() != 64 || !hex_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::BadChecksum);
    }
    Ok(Some(hex_digest.to_ascii_lowercase()))
}

#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub files: u64,
    pub bytes: u64,
}

/// What the metadata lock guards.
#[derive(Debug)]
pub(crate) struct Meta {
    pub totals: Totals,
    pub quarantine: Quarantine,
    /// Every key held, in ring order, with its digest part ([`super::index`]).
    pub index: PositionIndex,
}

/// How a store is run.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Writes that would leave less free space than this are refused ([`StoreError::DiskFull`]).
    pub min_free_bytes: u64,
    /// Check reads against the recorded SHA-256. Only ever off to measure what the check
    /// costs: without it, rotted bytes are served.
    pub verify_reads: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            verify_reads: true,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub root: PathBuf,
    pub options: StoreOptions,
    /// Serialises the short metadata steps (create folder + temp file, rename, delete,
    /// remove empty folder, opening a file with its record, quarantining) so the running
    /// totals stay exact, a folder is never removed under a write that is about to use
    /// it, and a file and its record are always seen as one. Data is read and written
    /// outside it.
    meta: Mutex<Meta>,
    /// Corrupt copies found since the process started (each read or scrub that failed).
    checksum_failures: AtomicU64,
}

impl Inner {
    pub fn lock(&self) -> MutexGuard<'_, Meta> {
        // Plain counters and a list: still usable after a panic elsewhere.
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn paths(&self, key: &str) -> StoreResult<KeyPaths> {
        let (video_id, file_name) = split_key(key)?;
        Ok(KeyPaths::new(&self.root.join(video_id), file_name))
    }

    /// Refuses a write of `incoming` more bytes when it would leave less than the reserve.
    /// Without a reserve nothing is checked: the file system says when it is full.
    pub fn check_room(&self, incoming: u64) -> StoreResult<()> {
        let reserve = self.options.min_free_bytes;
        if reserve == 0 {
            return Ok(());
        }
        let space = disk_space(&self.root).map_err(io_err("checking free space", &self.root))?;
        if space.free_bytes < reserve.saturating_add(incoming) {
            return Err(StoreError::DiskFull(format!(
                "{} bytes free, a write of {incoming} more bytes would go below the \
                 {reserve}-byte reserve (--min-free-bytes)",
                space.free_bytes
            )));
        }
        Ok(())
    }

    /// Moves the copy of `key` at `paths` aside when it is still the version `version`
    /// (device, inode) that was found corrupt, and counts the finding. Returns the error
    /// the read must fail with.
    pub fn quarantine(
        &self,
        paths: &KeyPaths,
        version: (u64, u64),
        copy: QuarantinedCopy,
    ) -> StoreError {
        self.checksum_failures.fetch_add(1, Ordering::Relaxed);
        let error = StoreError::Corrupt {
            key: copy.key.clone(),
            reason: copy.reason.clone(),
        };
        tracing::error!(
            key = copy.key,
            reason = copy.reason,
            found_by = copy.found_by.as_str(),
            "corrupt copy found; moving it to quarantine"
        );
        let copy_key = copy.key.clone();
        let mut meta = self.lock();
        let current = match fs::metadata(&paths.file) {
            Ok(m) if m.is_file() && (m.dev(), m.ino()) == version => m,
            // Written again (or deleted) since it was opened: the new version is not
            // the one that failed.
            _ => return error,
        };
        if let Err(e) = meta.quarantine.admit(&paths.file, copy) {
            tracing::error!(error = %e, "could not quarantine a corrupt copy");
            return error;
        }
        meta.totals.files = meta.totals.files.saturating_sub(1);
        meta.totals.bytes = meta.totals.bytes.saturating_sub(current.len());
        meta.index.remove(&copy_key);
        if let Err(e) = fs::remove_file(&paths.sidecar) {
            if !is_absent(&e) {
                tracing::warn!(path = %paths.sidecar.display(), error = %e, "could not remove a checksum record");
            }
        }
        let folder_removed = fs::remove_dir(&paths.dir).is_ok();
        let synced = File::open(if folder_removed {
            &self.root
        } else {
            &paths.dir
        })
        .and_then(|dir| dir.sync_all());
        if let Err(e) = synced {
            tracing::warn!(error = %e, "could not sync a folder after quarantining");
        }
        error
    }
}

/// Where a key's file and its record live.
#[derive(Clone, Debug)]
pub(crate) struct KeyPaths {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub sidecar: PathBuf,
}

impl KeyPaths {
    pub fn new(dir: &Path, file_name: &str) -> KeyPaths {
        KeyPaths {
            file: dir.join(file_name),
            sidecar: dir.join(sidecar_name(file_name)),
            dir: dir.to_path_buf(),
        }
    }
}

/// Opens a stored regular file; NotFound for anything else.
pub(crate) fn open_regular(path: &Path) -> StoreResult<(File, fs::Metadata)> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if is_absent(&e) => return Err(StoreError::NotFound),
        Err(e) => return Err(io_err("opening", path)(e)),
    };
    let meta = file.metadata().map_err(io_err("stat", path))?;
    if !meta.is_file() {
        return Err(StoreError::NotFound);
    }
    Ok((file, meta))
}

/// A folder opened for an fsync. Opened while the metadata lock is held, so a concurrent
/// delete that removes the folder once it is empty cannot make the later fsync fail:
/// syncing an open handle of a removed folder succeeds.
pub(crate) struct OpenDir<'a> {
    handle: File,
    path: &'a Path,
}

/// Deletes `key`'s file and sidecar; returns the folder whose entries changed (the
/// root, when the video's folder went with its last file), None when nothing was held.
fn delete_blocking(inner: &Inner, key: &str, paths: KeyPaths) -> StoreResult<Option<PathBuf>> {
    let mut meta = inner.lock();
    meta.quarantine.clear(key);
    meta.index.remove(key);
    let size = match fs::metadata(&paths.file) {
        Ok(m) if m.is_file() => Some(m.len()),
        Ok(_) => return Ok(None),
        Err(e) if is_absent(&e) => None,
        Err(e) => return Err(io_err("stat", &paths.file)(e)),
    };
    if let Some(size) = size {
        match fs::remove_file(&paths.file) {
            Ok(()) => {
                meta.totals.files = meta.totals.files.saturating_sub(1);
                meta.totals.bytes = meta.totals.bytes.saturating_sub(size);
            }
            Err(e) if is_absent(&e) => {}
            Err(e) => return Err(io_err("deleting", &paths.file)(e)),
        }
    }
    match fs::remove_file(&paths.sidecar) {
        Ok(()) => {}
        Err(e) if is_absent(&e) => {}
        Err(e) => return Err(io_err("deleting", &paths.sidecar)(e)),
    }
    if size.is_none() {
        return Ok(None);
    }
    // Fails harmlessly while anything (another file, a write in progress) is left.
    let folder_removed = fs::remove_dir(&paths.dir).is_ok();
    Ok(Some(if folder_removed {
        inner.root.clone()
    } else {
        paths.dir
    }))
}

pub(crate) fn open_dir(path: &Path) -> StoreResult<OpenDir<'_>> {
    let handle = File::open(path).map_err(io_err("syncing folder", path))?;
    Ok(OpenDir { handle, path })
}

impl OpenDir<'_> {
    pub fn sync(self) -> StoreResult<()> {
        self.handle
            .sync_all()
            .map_err(io_err("syncing folder", self.path))
    }
}

/// What a node reports about its health, beside its file count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreHealth {
    pub stats: NodeStats,
    pub disk: DiskSpace,
    pub min_free_bytes: u64,
    pub quarantined: u64,
    pub checksum_failures: u64,
}

/// The store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens (creating if needed) the store at `root` with the default options.
    pub async fn open(root: impl Into<PathBuf>) -> StoreResult<Store> {
        Self::open_with(root, StoreOptions::default()).await
    }

    /// Opens (creating if needed) the store at `root`: removes temp files a crash left
    /// behind, counts the files held and loads the quarantine.
    pub async fn open_with(root: impl Into<PathBuf>, options: StoreOptions) -> StoreResult<Store> {
        let root = root.into();
        blocking(move || {
            fs::create_dir_all(&root).map_err(io_err("creating", &root))?;
            super::disk::spread_folders(&root);
            let totals = scan(&root)?;
            let quarantine = Quarantine::load(&root)?;
            tracing::info!(
                root = %root.display(),
                files = totals.files,
                bytes = totals.bytes,
                quarantined = quarantine.len(),
                "storage folder scanned"
            );
            Ok(Store {
                inner: Arc::new(Inner {
                    root,
                    options,
                    meta: Mutex::new(Meta {
                        totals,
                        quarantine,
                        index: PositionIndex::default(),
                    }),
                    checksum_failures: AtomicU64::new(0),
                }),
            })
        })
        .await
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn stats(&self) -> NodeStats {
        let meta = self.inner.lock();
        NodeStats {
            file_count: meta.totals.files,
            total_bytes: meta.totals.bytes,
        }
    }

    /// Counts, free space and what verification has found.
    pub async fn health(&self) -> StoreResult<StoreHealth> {
        let (stats, quarantined) = {
            let meta = self.inner.lock();
            (
                NodeStats {
                    file_count: meta.totals.files,
                    total_bytes: meta.totals.bytes,
                },
                meta.quarantine.len() as u64,
            )
        };
        let root = self.inner.root.clone();
        let disk =
            blocking(move || disk_space(&root).map_err(io_err("checking free space", &root)))
                .await?;
        Ok(StoreHealth {
            stats,
            disk,
            min_free_bytes: self.inner.options.min_free_bytes,
            quarantined,
            checksum_failures: self.inner.checksum_failures.load(Ordering::Relaxed),
        })
    }

    /// Every quarantined copy, oldest first.
    pub fn quarantined(&self) -> Vec<QuarantinedCopy> {
        self.inner.lock().quarantine.list()
    }

    /// Starts writing `key`. The key is validated, and the reserve checked, before
    /// anything touches the disk.
    pub async fn begin_write(&self, key: &str, arrival: Arrival) -> StoreResult<PendingWrite> {
        PendingWrite::begin(Arc::clone(&self.inner), key, arrival).await
    }

    /// Stores a whole buffer under `key`, checked as `arrival` says.
    pub async fn put(&self, key: &str, data: Bytes, arrival: Arrival) -> StoreResult<FileStat> {
        PendingWrite::whole(Arc::clone(&self.inner), key, arrival, data).await
    }

    /// Blocking: stores under `key` the bytes `next` puts in `buf` (see
    /// [`super::write::write_blocking`]).
    pub(crate) fn write_blocking<E>(
        &self,
        key: &str,
        arrival: Arrival,
        size: u64,
        buf: &mut [u8],
        next: impl FnMut(&mut [u8]) -> Result<usize, E>,
    ) -> Result<StoreResult<FileStat>, E> {
        super::write::write_blocking(&self.inner, key, arrival, size, buf, next)
    }

    /// Blocking: the file under `key` opened to be copied to another node, with its
    /// recorded size and sums (a file with no record is hashed now). Its bytes are not
    /// read here: the node copying them checks them.
    pub(crate) fn open_for_copy(&self, key: &str) -> StoreResult<(FileStat, Arc<File>)> {
        super::verify::open_for_copy(Arc::clone(&self.inner), key)
    }

    /// The whole file, checked against its recorded SHA-256.
    pub async fn read(&self, key: &str) -> StoreResult<Bytes> {
        self.open_read(key).await?.read_all(FoundBy::Read).await
    }

    /// The whole file, read and verified at once, if it is at most `limit` bytes;
    /// otherwise the file opened for a verified streaming read.
    pub async fn open_small(&self, key: &str, limit: u64) -> StoreResult<SmallRead> {
        OpenFile::open_small(Arc::clone(&self.inner), key, limit).await
    }

    /// Opens the file for a verified read, with its recorded size and hash. A file with
    /// no record is hashed now and that hash recorded (trust on first use).
    pub async fn open_read(&self, key: &str) -> StoreResult<OpenFile> {
        OpenFile::open(
            Arc::clone(&self.inner),
            key,
            FirstSight::HashNow,
            FoundBy::Read,
        )
        .await
    }

    /// Opens the file for the scrub: a file with no record is left for the scrub to hash
    /// at its own pace.
    pub(crate) async fn open_for_scrub(&self, key: &str) -> StoreResult<OpenFile> {
        OpenFile::open(
            Arc::clone(&self.inner),
            key,
            FirstSight::Defer,
            FoundBy::Scrub,
        )
        .await
    }

    /// The recorded size and hash (no bytes are read, except to record a first hash).
    pub async fn stat(&self, key: &str) -> StoreResult<FileStat> {
        Ok(self.open_read(key).await?.stat)
    }

    /// Reads the whole file and checks it against its record: the size and hash on
    /// success, [`StoreError::Corrupt`] (and the copy quarantined) otherwise.
    pub async fn verify(&self, key: &str) -> StoreResult<FileStat> {
        let file = OpenFile::open(
            Arc::clone(&self.inner),
            key,
            FirstSight::HashNow,
            FoundBy::Verify,
        )
        .await?;
        let stat = file.stat.clone();
        file.check_whole(FoundBy::Verify).await?;
        Ok(stat)
    }

    /// Removes the file, its record and any quarantined copy of it, and the video folder
    /// once empty. Succeeds when the file is already absent.
    pub async fn delete(&self, key: &str) -> StoreResult<()> {
        self.delete_many(vec![key.to_string()]).await.map(|_| ())
    }

    /// Deletes every key, syncing each folder touched once at the end; returns how many
    /// were held. All keys are checked first: a bad one deletes nothing. An I/O error
    /// stops the deletes; those before it stay done.
    pub async fn delete_many(&self, keys: Vec<String>) -> StoreResult<u64> {
        let paths = keys
            .iter()
            .map(|key| self.inner.paths(key))
            .collect::<StoreResult<Vec<_>>>()?;
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut to_sync = std::collections::BTreeSet::new();
            let mut deleted = 0;
            for (key, paths) in keys.iter().zip(paths) {
                if let Some(folder) = delete_blocking(&inner, key, paths)? {
                    to_sync.insert(folder);
                    deleted += 1;
                }
            }
            for folder in &to_sync {
                match File::open(folder) {
                    Ok(handle) => handle
                        .sync_all()
                        .map_err(io_err("syncing folder", folder))?,
                    // Removed since, by a later key's delete here or by a concurrent
                    // delete, whichever removed it syncs the root for it.
                    Err(e) if is_absent(&e) => {}
                    Err(e) => return Err(io_err("syncing folder", folder)(e)),
                }
            }
            Ok(deleted)
        })
        .await
    }

    /// Builds the position index by one walk over the records (at start, and again by
    /// each full scrub pass); returns the keys indexed.
    pub async fn build_index(&self) -> StoreResult<usize> {
        let inner = Arc::clone(&self.inner);
        blocking(move || build_index(&inner)).await
    }

    /// Whether the position index has been built (arc requests are served from it).
    pub fn index_ready(&self) -> bool {
        self.inner.lock().index.is_ready()
    }

    /// The digest of each arc; None until the index is built.
    pub fn range_digests(&self, ranges: &[KeyRange]) -> Option<Vec<RangeDigest>> {
        // One arc per lock, so writes go on between arcs.
        ranges
            .iter()
            .map(|range| self.inner.lock().index.digests(*range))
            .collect()
    }

    /// Every video id with a file here; None until the index is built.
    pub fn held_videos(&self) -> Option<std::collections::BTreeSet<String>> {
        self.inner.lock().index.video_ids()
    }

    /// The keys of one arc, from the position index once it is built (a cost in the keys
    /// of the arc), else by walking the whole disk and keeping those in the arc.
    pub fn list_in(
        &self,
        with_stat: bool,
        range: KeyRange,
    ) -> impl Stream<Item = StoreResult<Vec<ListedKey>>> + Send + 'static {
        let (tx, rx) = mpsc::channel(2);
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let indexed = inner.lock().index.keys_in(range);
            let listed = match indexed {
                Some(keys) => list_keys(&inner, keys, with_stat, &tx),
                None => walk_batches(&inner, with_stat, |batch| {
                    let kept: Vec<ListedKey> = batch
                        .into_iter()
                        .filter(|listed| range.contains_key(&listed.key))
                        .collect();
                    kept.is_empty() || tx.blocking_send(Ok(kept)).is_ok()
                }),
            };
            if let Err(e) = listed {
                let _ = tx.blocking_send(Err(e));
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    /// Every key, in batches of at most [`LIST_BATCH`], with size and hash when
    /// `with_stat`. The walk runs on the blocking pool, at most two batches ahead of the
    /// reader, and stops when the reader goes away.
    pub fn list(
        &self,
        with_stat: bool,
    ) -> impl Stream<Item = StoreResult<Vec<ListedKey>>> + Send + 'static {
        let (tx, rx) = mpsc::channel(2);
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = walk(&inner, with_stat, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_hash_is_checked_before_use() {
        assert_eq!(parse_expected_sha256("").unwrap(), None);
        assert_eq!(
            parse_expected_sha256(&"AB".repeat(32)).unwrap(),
            Some("ab".repeat(32))
        );
        assert!(parse_expected_sha256("abc").is_err());
        assert!(parse_expected_sha256(&"g".repeat(64)).is_err());
    }
}
