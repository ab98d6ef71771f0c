//! The on-disk store: `DIR/{videoId}/{filename}`, the original Tritontube's layout, so a
//! folder written by the original system is served as it is.
//!
//! - Writes land whole or not at all: a hidden temp file in the same folder is written,
//!   fsynced, renamed over the real name, and the folder is fsynced. A write that fails or
//!   is abandoned removes its temp file (see [`PendingWrite`]).
//! - Every file's SHA-256 is known: computed while writing and kept in a hidden sidecar
//!   (`.{filename}.sha256`) with the size, mtime and inode it describes; a missing or stale
//!   sidecar (files of the original system have none) is recomputed on demand.
//! - Hidden names (starting with `.`) belong to the store; keys can never name them.
//! - All file I/O runs on the blocking pool, never on the async threads.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::client::{CHUNK_BYTES, FileStat, NodeStats};
use super::keys::{KeyError, make_key, split_key};

/// Keys per batch when listing, so a node with 100 000 files never builds one big reply.
pub const LIST_BATCH: usize = 1000;

const SIDECAR_SUFFIX: &str = ".sha256";
const TEMP_SUFFIX: &str = ".part";
const SIDECAR_FORMAT: &str = "tritontube-sha256-v1";
/// Longest file name common file systems accept.
const MAX_NAME_BYTES: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    BadKey(#[from] KeyError),
    #[error("no such file")]
    NotFound,
    #[error("SHA-256 mismatch: expected {expected}, received data hashes to {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("expected SHA-256 must be 64 hex digits")]
    BadChecksum,
    #[error("offset {offset} is beyond the end of the file ({size} bytes)")]
    OutOfRange { offset: u64, size: u64 },
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

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Absent, or a path through something that is not a folder: both mean "no such file".
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T, F>(f: F) -> StoreResult<T>
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
struct Totals {
    files: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    /// Serialises the short metadata steps (create folder + temp file, rename, delete,
    /// remove empty folder) so the running totals stay exact and a folder is never
    /// removed under a write that is about to use it. Data is written outside it.
    meta: Mutex<Totals>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Totals> {
        // The totals are plain counters: still usable after a panic elsewhere.
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn paths(&self, key: &str) -> StoreResult<KeyPaths> {
        let (video_id, file_name) = split_key(key)?;
        let dir = self.root.join(video_id);
        Ok(KeyPaths {
            file: dir.join(file_name),
            sidecar: dir.join(sidecar_name(file_name)),
            dir,
        })
    }
}

struct KeyPaths {
    dir: PathBuf,
    file: PathBuf,
    sidecar: PathBuf,
}

/// `.{name}.sha256`, or a name derived from the hash of `name` when that would be too long.
fn sidecar_name(file_name: &str) -> String {
    if 1 + file_name.len() + SIDECAR_SUFFIX.len() <= MAX_NAME_BYTES {
        format!(".{file_name}{SIDECAR_SUFFIX}")
    } else {
        format!(
            ".h-{}{SIDECAR_SUFFIX}",
            hex::encode(Sha256::digest(file_name.as_bytes()))
        )
    }
}

fn temp_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        ".tmp-{}-{}{TEMP_SUFFIX}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn mtime_nanos(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// What a sidecar records: the hash, and which exact file version it describes.
#[derive(Debug, PartialEq, Eq)]
struct Sidecar {
    sha256: String,
    size: u64,
    mtime: i128,
    ino: u64,
}

impl Sidecar {
    fn describing(meta: &fs::Metadata, sha256: String) -> Self {
        Sidecar {
            sha256,
            size: meta.len(),
            mtime: mtime_nanos(meta),
            ino: meta.ino(),
        }
    }

    fn matches(&self, meta: &fs::Metadata) -> bool {
        self.size == meta.len() && self.mtime == mtime_nanos(meta) && self.ino == meta.ino()
    }

    fn encode(&self) -> String {
        format!(
            "{SIDECAR_FORMAT} {} {} {} {}\n",
            self.sha256, self.size, self.mtime, self.ino
        )
    }

    /// None for anything torn or foreign: the hash is then recomputed.
    fn decode(text: &str) -> Option<Self> {
        let line = text.strip_suffix('\n')?;
        let mut parts = line.split(' ');
        if parts.next()? != SIDECAR_FORMAT {
            return None;
        }
        let sha256 = parts.next()?.to_string();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let sidecar = Sidecar {
            sha256,
            size: parts.next()?.parse().ok()?,
            mtime: parts.next()?.parse().ok()?,
            ino: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(sidecar)
    }
}

/// Writes the sidecar through a temp file so readers never see half of one. Best effort:
/// a sidecar is a cache, and a missing one is recomputed.
fn write_sidecar(dir: &Path, sidecar_path: &Path, sidecar: &Sidecar) {
    let temp = dir.join(temp_name());
    let result = fs::write(&temp, sidecar.encode()).and_then(|()| fs::rename(&temp, sidecar_path));
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        tracing::warn!(path = %sidecar_path.display(), error = %e, "could not write checksum sidecar");
    }
}

fn hash_file(file: &File, path: &Path) -> StoreResult<String> {
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

/// Size and hash of an open file: from its sidecar when that still describes it, otherwise
/// hashed now (and the sidecar rewritten).
fn stat_open(file: &File, meta: &fs::Metadata, paths: &KeyPaths) -> StoreResult<FileStat> {
    let recorded = fs::read_to_string(&paths.sidecar)
        .ok()
        .and_then(|text| Sidecar::decode(&text));
    if let Some(sidecar) = recorded.filter(|s| s.matches(meta)) {
        return Ok(FileStat {
            size: meta.len(),
            sha256: sidecar.sha256,
        });
    }
    let sha256 = hash_file(file, &paths.file)?;
    // Only record the hash if the file did not change while it was being read.
    let after = file.metadata().map_err(io_err("stat", &paths.file))?;
    if Sidecar::describing(meta, String::new()).matches(&after) {
        write_sidecar(
            &paths.dir,
            &paths.sidecar,
            &Sidecar::describing(meta, sha256.clone()),
        );
    }
    Ok(FileStat {
        size: meta.len(),
        sha256,
    })
}

/// Opens a stored regular file; NotFound for anything else.
fn open_regular(path: &Path) -> StoreResult<(File, fs::Metadata)> {
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

fn fsync_dir(dir: &Path) -> StoreResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing folder", dir))
}

/// A stored file opened for reading, with the size and hash of exactly the bytes it holds.
#[derive(Debug)]
pub struct OpenFile {
    pub stat: FileStat,
    file: Arc<File>,
    path: PathBuf,
}

impl OpenFile {
    /// Streams `length` bytes from `offset` (0 = to the end) in chunks of [`CHUNK_BYTES`];
    /// each chunk is read only when the previous one has been taken.
    pub fn range(
        self,
        offset: u64,
        length: u64,
    ) -> StoreResult<impl Stream<Item = StoreResult<Bytes>> + Send + 'static> {
        let size = self.stat.size;
        if offset > size {
            return Err(StoreError::OutOfRange { offset, size });
        }
        let end = if length == 0 {
            size
        } else {
            offset.saturating_add(length).min(size)
        };
        Ok(async_stream::try_stream! {
            let mut position = offset;
            while position < end {
                let want = (end - position).min(CHUNK_BYTES as u64) as usize;
                let file = Arc::clone(&self.file);
                let path = self.path.clone();
                let chunk = blocking(move || {
                    let mut buf = vec![0u8; want];
                    file.read_exact_at(&mut buf, position)
                        .map_err(io_err("reading", &path))?;
                    Ok(Bytes::from(buf))
                })
                .await?;
                position += chunk.len() as u64;
                yield chunk;
            }
        })
    }
}

/// A write in progress. Its temp file becomes the real file only through [`commit`];
/// dropped any other way (error, cancelled request), the temp file is removed.
///
/// [`commit`]: PendingWrite::commit
#[derive(Debug)]
pub struct PendingWrite {
    // Moved into the blocking pool for each write; `None` only while it is there.
    state: Option<WriteState>,
    store: Arc<Inner>,
    key: String,
}

#[derive(Debug)]
struct WriteState {
    file: File,
    hasher: Sha256,
    size: u64,
    temp: TempFile,
}

/// Removes the temp file when dropped, unless it was renamed into place.
#[derive(Debug)]
struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    fn persisted(&mut self) {
        self.path = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        let remove = move || {
            if let Err(e) = fs::remove_file(&path) {
                if !is_absent(&e) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove temp file");
                }
            }
        };
        // Keep the unlink off the async threads when there is a runtime to hand it to.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

impl PendingWrite {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Appends `data` to the temp file (and to the running hash).
    pub async fn write(&mut self, data: Bytes) -> StoreResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut state = self
            .state
            .take()
            .ok_or_else(|| StoreError::Task("write after a failed write".into()))?;
        let state = blocking(move || {
            state.file.write_all(&data).map_err(|e| StoreError::Io {
                op: "writing",
                path: state.temp.path.clone().unwrap_or_default(),
                source: e,
            })?;
            state.hasher.update(&data);
            state.size += data.len() as u64;
            Ok(state)
        })
        .await?;
        self.state = Some(state);
        Ok(())
    }

    /// Makes the written bytes the file under the key, atomically, if their hash is the
    /// expected one; otherwise keeps nothing.
    pub async fn commit(mut self, expected_sha256: Option<String>) -> StoreResult<FileStat> {
        let state = self
            .state
            .take()
            .ok_or_else(|| StoreError::Task("commit after a failed write".into()))?;
        let store = Arc::clone(&self.store);
        let key = std::mem::take(&mut self.key);
        blocking(move || commit_blocking(&store, &key, state, expected_sha256)).await
    }
}

fn commit_blocking(
    store: &Inner,
    key: &str,
    state: WriteState,
    expected_sha256: Option<String>,
) -> StoreResult<FileStat> {
    let WriteState {
        file,
        hasher,
        size,
        mut temp,
    } = state;
    let sha256 = hex::encode(hasher.finalize());
    if let Some(expected) = expected_sha256 {
        if expected != sha256 {
            // Dropping `temp` removes the bytes received.
            return Err(StoreError::ChecksumMismatch {
                expected,
                actual: sha256,
            });
        }
    }
    let paths = store.paths(key)?;
    let temp_path = temp.path.clone().unwrap_or_default();
    file.sync_all().map_err(io_err("syncing", &temp_path))?;
    // A rename keeps the inode and mtime, so this describes the file under its real name.
    let meta = file.metadata().map_err(io_err("stat", &temp_path))?;
    drop(file);
    {
        let mut totals = store.lock();
        let previous = match fs::metadata(&paths.file) {
            Ok(m) if m.is_file() => Some(m.len()),
            _ => None,
        };
        fs::rename(&temp_path, &paths.file).map_err(io_err("renaming into", &paths.file))?;
        temp.persisted();
        match previous {
            Some(old) => totals.bytes = totals.bytes.saturating_sub(old) + size,
            None => {
                totals.files += 1;
                totals.bytes += size;
            }
        }
        write_sidecar(
            &paths.dir,
            &paths.sidecar,
            &Sidecar::describing(&meta, sha256.clone()),
        );
    }
    fsync_dir(&paths.dir)?;
    Ok(FileStat { size, sha256 })
}

/// The store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`: removes temp files a crash left
    /// behind and counts the files held.
    pub async fn open(root: impl Into<PathBuf>) -> StoreResult<Store> {
        let root = root.into();
        blocking(move || {
            fs::create_dir_all(&root).map_err(io_err("creating", &root))?;
            let totals = scan(&root)?;
            tracing::info!(
                root = %root.display(),
                files = totals.files,
                bytes = totals.bytes,
                "storage folder scanned"
            );
            Ok(Store {
                inner: Arc::new(Inner {
                    root,
                    meta: Mutex::new(totals),
                }),
            })
        })
        .await
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn stats(&self) -> NodeStats {
        let totals = self.inner.lock();
        NodeStats {
            file_count: totals.files,
            total_bytes: totals.bytes,
        }
    }

    /// Starts writing `key`. The key is validated before anything touches the disk.
    pub async fn begin_write(&self, key: &str) -> StoreResult<PendingWrite> {
        let paths = self.inner.paths(key)?;
        let inner = Arc::clone(&self.inner);
        let state = blocking(move || {
            // Under the lock, so a delete cannot remove the folder before the temp file
            // is in it.
            let _guard = inner.lock();
            fs::create_dir_all(&paths.dir).map_err(io_err("creating", &paths.dir))?;
            let temp_path = paths.dir.join(temp_name());
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp_path)
                .map_err(io_err("creating", &temp_path))?;
            Ok(WriteState {
                file,
                hasher: Sha256::new(),
                size: 0,
                temp: TempFile {
                    path: Some(temp_path),
                },
            })
        })
        .await?;
        Ok(PendingWrite {
            state: Some(state),
            store: Arc::clone(&self.inner),
            key: key.to_string(),
        })
    }

    /// Stores a whole buffer under `key`.
    pub async fn put(
        &self,
        key: &str,
        data: Bytes,
        expected_sha256: Option<String>,
    ) -> StoreResult<FileStat> {
        let mut pending = self.begin_write(key).await?;
        pending.write(data).await?;
        pending.commit(expected_sha256).await
    }

    /// The whole file.
    pub async fn read(&self, key: &str) -> StoreResult<Bytes> {
        let paths = self.inner.paths(key)?;
        blocking(move || {
            let (mut file, meta) = open_regular(&paths.file)?;
            let mut data = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut data)
                .map_err(io_err("reading", &paths.file))?;
            Ok(Bytes::from(data))
        })
        .await
    }

    /// Opens the file for streaming, with the size and hash of the version opened.
    pub async fn open_read(&self, key: &str) -> StoreResult<OpenFile> {
        let paths = self.inner.paths(key)?;
        blocking(move || {
            let (file, meta) = open_regular(&paths.file)?;
            let stat = stat_open(&file, &meta, &paths)?;
            Ok(OpenFile {
                stat,
                file: Arc::new(file),
                path: paths.file,
            })
        })
        .await
    }

    pub async fn stat(&self, key: &str) -> StoreResult<FileStat> {
        Ok(self.open_read(key).await?.stat)
    }

    /// Removes the file and its sidecar, and the video folder once empty. Succeeds when
    /// the file is already absent.
    pub async fn delete(&self, key: &str) -> StoreResult<()> {
        let paths = self.inner.paths(key)?;
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut totals = inner.lock();
            let size = match fs::metadata(&paths.file) {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => return Ok(()),
                Err(e) if is_absent(&e) => return Ok(()),
                Err(e) => return Err(io_err("stat", &paths.file)(e)),
            };
            match fs::remove_file(&paths.file) {
                Ok(()) => {
                    totals.files = totals.files.saturating_sub(1);
                    totals.bytes = totals.bytes.saturating_sub(size);
                }
                Err(e) if is_absent(&e) => {}
                Err(e) => return Err(io_err("deleting", &paths.file)(e)),
            }
            match fs::remove_file(&paths.sidecar) {
                Ok(()) => {}
                Err(e) if is_absent(&e) => {}
                Err(e) => return Err(io_err("deleting", &paths.sidecar)(e)),
            }
            // Fails harmlessly while anything (another file, a write in progress) is left.
            let folder_removed = fs::remove_dir(&paths.dir).is_ok();
            drop(totals);
            fsync_dir(if folder_removed {
                &inner.root
            } else {
                &paths.dir
            })
        })
        .await
    }

    /// Every key, in batches of at most [`LIST_BATCH`], with size and hash when
    /// `with_stat`. The walk runs on the blocking pool, at most two batches ahead of the
    /// reader, and stops when the reader goes away.
    pub fn list(
        &self,
        with_stat: bool,
    ) -> impl Stream<Item = StoreResult<Vec<ListedKey>>> + Send + 'static {
        let (tx, rx) = mpsc::channel(2);
        let root = self.inner.root.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = walk(&root, with_stat, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// One listed key, with its size and hash when asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedKey {
    pub key: String,
    pub stat: Option<FileStat>,
}

/// The valid, non-hidden names in a folder (others are the store's own or unreachable
/// through a key).
fn visible_entries(dir: &Path) -> StoreResult<Vec<(String, fs::FileType)>> {
    let mut names = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // A folder removed by a concurrent delete holds nothing.
        Err(e) if is_absent(&e) => return Ok(names),
        Err(e) => return Err(io_err("listing", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err("listing", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        // Follow symbolic links, as reads do, so listing and serving agree (an operator
        // may link a video folder from another disk).
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        names.push((name, meta.file_type()));
    }
    Ok(names)
}

fn walk(
    root: &Path,
    with_stat: bool,
    tx: &mpsc::Sender<StoreResult<Vec<ListedKey>>>,
) -> StoreResult<()> {
    let mut batch = Vec::with_capacity(LIST_BATCH);
    for (video_id, file_type) in visible_entries(root)? {
        if !file_type.is_dir() {
            continue;
        }
        let dir = root.join(&video_id);
        for (file_name, file_type) in visible_entries(&dir)? {
            if !file_type.is_file() {
                continue;
            }
            let key = make_key(&video_id, &file_name);
            if split_key(&key).is_err() {
                tracing::debug!(key, "skipping a file no key can name");
                continue;
            }
            let stat = if with_stat {
                let paths = KeyPaths {
                    file: dir.join(&file_name),
                    sidecar: dir.join(sidecar_name(&file_name)),
                    dir: dir.clone(),
                };
                match open_regular(&paths.file) {
                    Ok((file, meta)) => Some(stat_open(&file, &meta, &paths)?),
                    // Deleted since the folder was read.
                    Err(StoreError::NotFound) => continue,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            batch.push(ListedKey { key, stat });
            if batch.len() == LIST_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(LIST_BATCH));
                if tx.blocking_send(Ok(full)).is_err() {
                    return Ok(());
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Ok(batch));
    }
    Ok(())
}

/// Counts the files held; removes temp files left by a crash and sidecars whose file is
/// gone.
fn scan(root: &Path) -> StoreResult<Totals> {
    let mut totals = Totals::default();
    for (video_id, file_type) in visible_entries(root)? {
        if !file_type.is_dir() {
            continue;
        }
        let dir = root.join(&video_id);
        let entries = fs::read_dir(&dir).map_err(io_err("listing", &dir))?;
        let mut files = Vec::new();
        let mut hidden = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &dir))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Ok(meta) = fs::metadata(entry.path()) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            if name.starts_with('.') {
                hidden.push(name);
            } else if split_key(&make_key(&video_id, &name)).is_ok() {
                totals.files += 1;
                totals.bytes += meta.len();
                files.push(name);
            }
        }
        let wanted: HashSet<String> = files.iter().map(|f| sidecar_name(f)).collect();
        for name in hidden {
            let stale_temp = name.starts_with(".tmp-") && name.ends_with(TEMP_SUFFIX);
            let orphan_sidecar = name.ends_with(SIDECAR_SUFFIX) && !wanted.contains(&name);
            if stale_temp || orphan_sidecar {
                let path = dir.join(&name);
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove leftover file");
                }
            }
        }
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_round_trips_and_refuses_torn_text() {
        let s = Sidecar {
            sha256: "a".repeat(64),
            size: 12,
            mtime: 1_700_000_000_123_456_789,
            ino: 42,
        };
        let text = s.encode();
        assert_eq!(Sidecar::decode(&text), Some(s));
        for cut in 0..text.len() {
            assert_eq!(Sidecar::decode(&text[..cut]), None, "{cut}");
        }
        assert_eq!(Sidecar::decode("other 1 2 3 4\n"), None);
    }

    #[test]
    fn sidecar_names_stay_within_limits_and_hidden() {
        assert_eq!(sidecar_name("manifest.mpd"), ".manifest.mpd.sha256");
        let long = "x".repeat(255);
        let name = sidecar_name(&long);
        assert!(name.len() <= MAX_NAME_BYTES && name.starts_with('.'));
        assert!(temp_name().starts_with('.') && temp_name().ends_with(TEMP_SUFFIX));
    }

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
