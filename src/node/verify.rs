//! Verified reads: a stored file is served only as far as its bytes are known to match the
//! sums recorded when it was stored: a read checks the CRC-32C, and settles any mismatch
//! with the SHA-256 before it quarantines anything (see [`super::record`] for why); the
//! scrub and an explicit verify check the SHA-256.
//!
//! - A whole-file read hashes the bytes as they stream and holds back the last chunk until
//!   the hash is confirmed, so a reader never receives a complete-looking corrupt file: it
//!   gets every chunk but the last, then DATA_LOSS.
//! - A byte range hashes the whole file first and only then sends the range. A range
//!   cannot be checked on its own against a whole-file hash; per-block hashes would need a
//!   new on-disk format that the original system's folders do not have. The price is one
//!   sequential read of the whole file per range, which for DASH segments (≈ 1–2 MB) is
//!   about a millisecond, and leaves the file in the page cache for the range itself.
//! - A file with no record at all (the original system's folders) is hashed on first sight
//!   and that hash recorded (trust on first use); a record is never replaced because the
//!   file looks changed.
//!
//! On a mismatch the copy is moved to the quarantine and the read fails with
//! [`StoreError::Corrupt`] (DATA_LOSS on the wire).

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

use super::quarantine::{FoundBy, QuarantinedCopy};
use super::record::{
    FileDigest, FileHasher, Record, hash_file, keep_record, read_through, record_of,
};
use super::stat::{CHUNK_BYTES, FileStat};
use super::store::{Inner, KeyPaths, StoreError, StoreResult, blocking, io_err, open_regular};

/// What to do with a file that has no record yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FirstSight {
    /// Hash it now and record that (reads: they need the hash before the first byte).
    HashNow,
    /// Leave it to the caller, who hashes it anyway (the scrub, at its own pace).
    Defer,
}

/// Everything needed to judge a hash and quarantine the copy; cheap to clone.
#[derive(Clone, Debug)]
struct Judge {
    store: Arc<Inner>,
    key: String,
    paths: KeyPaths,
    /// (device, inode) of the version opened: only that version may be quarantined.
    version: (u64, u64),
    /// The record; None for a file seen for the first time by the scrub.
    record: Option<Record>,
}

impl Judge {
    /// Blocking. Ok when `actual` is the recorded SHA-256; otherwise quarantines the copy.
    fn check_sha(&self, size: u64, actual: String, found_by: FoundBy) -> StoreResult<()> {
        let Some(record) = &self.record else {
            return Ok(());
        };
        if actual == record.sha256 {
            return Ok(());
        }
        Err(self.store.quarantine(
            &self.paths,
            self.version,
            QuarantinedCopy {
                key: self.key.clone(),
                size,
                quarantined_unix_ms: crate::node::now_unix_ms(),
                reason: format!(
                    "bytes hash to {actual}, recorded {} when stored",
                    record.sha256
                ),
                expected_sha256: record.sha256.clone(),
                actual_sha256: actual,
                found_by,
            },
        ))
    }

    /// What a read of this file sums: the CRC alone when the record has one.
    fn read_sum(&self) -> ReadSum {
        match self.record.as_ref().and_then(|r| r.crc32c) {
            Some(_) => ReadSum::Crc(0),
            None => ReadSum::Full(FileHasher::default()),
        }
    }

    /// Blocking. Ok when `sum` (of all `size` bytes read from `file`) matches the record,
    /// with the CRC-32C the bytes were found to have (None when there is no record).
    /// A CRC that differs is settled by the SHA-256 of the file: only a copy whose SHA-256
    /// differs too is quarantined (a wrong CRC in the record is mended instead).
    fn check_read(
        &self,
        file: &File,
        size: u64,
        sum: ReadSum,
        found_by: FoundBy,
    ) -> StoreResult<Option<u32>> {
        let Some(record) = &self.record else {
            return Ok(None);
        };
        match sum {
            ReadSum::Crc(crc) if Some(crc) == record.crc32c && size == record.size => Ok(Some(crc)),
            ReadSum::Crc(_) => {
                self.check_digest(hash_file(file, &self.paths.file)?, size, found_by)
            }
            ReadSum::Full(hasher) => self.check_digest(hasher.finish(), size, found_by),
        }
    }

    /// Blocking. Checks the SHA-256 of `digest`; when it matches, makes sure the record
    /// carries the right CRC (a v1 record gains it; a wrong one is mended) and returns it.
    fn check_digest(
        &self,
        digest: FileDigest,
        size: u64,
        found_by: FoundBy,
    ) -> StoreResult<Option<u32>> {
        self.check_sha(size, digest.sha256, found_by)?;
        let Some(record) = &self.record else {
            return Ok(None);
        };
        if record.crc32c == Some(digest.crc32c) {
            return Ok(record.crc32c);
        }
        if record.crc32c.is_some() {
            tracing::warn!(path = %self.paths.file.display(), "the recorded CRC-32C was wrong (the SHA-256 matches): mending the record");
        }
        let _meta = self.store.lock();
        if let Ok((file, meta)) = open_regular(&self.paths.file) {
            let unchanged = (meta.dev(), meta.ino()) == self.version
                && record_of(&file, &meta, &self.paths.sidecar).as_ref() == Some(record);
            if unchanged {
                let completed = record.with_crc32c(digest.crc32c);
                keep_record(&file, &self.paths.dir, &self.paths.sidecar, &completed);
            }
        }
        Ok(Some(digest.crc32c))
    }
}

/// The running sum of a read (see [`Judge::read_sum`]).
#[derive(Clone, Debug)]
enum ReadSum {
    Crc(u32),
    /// A record with no CRC: the SHA-256 checks the bytes, and the CRC completes the record.
    Full(FileHasher),
}

impl ReadSum {
    fn update(&mut self, data: &[u8]) {
        match self {
            ReadSum::Crc(crc) => *crc = crc32c::crc32c_append(*crc, data),
            ReadSum::Full(hasher) => hasher.update(data),
        }
    }
}

/// A stored file opened for reading, with the size and hash recorded for it.
#[derive(Debug)]
pub struct OpenFile {
    /// The recorded size and SHA-256 (what a good copy is). The hash is empty only for a
    /// file the scrub opened before anything recorded it.
    pub stat: FileStat,
    file: Arc<File>,
    judge: Judge,
}

/// Blocking: the file under `paths` and its record, seen together under the lock so a
/// concurrent write never pairs new bytes with an old record.
fn open_with_record(
    store: &Inner,
    paths: &KeyPaths,
) -> StoreResult<(File, fs::Metadata, Option<Record>)> {
    let _meta = store.lock();
    let (file, meta) = open_regular(&paths.file)?;
    let record = record_of(&file, &meta, &paths.sidecar);
    Ok((file, meta, record))
}

/// Blocking: hashes a file that has no record and records that hash, if the file under
/// the name is still the one hashed and nobody recorded another meanwhile.
fn trust_on_first_use(
    store: &Inner,
    file: &File,
    meta: &fs::Metadata,
    paths: &KeyPaths,
) -> StoreResult<Record> {
    let record = Record::describing(meta, hash_file(file, &paths.file)?);
    remember_first_sight(store, paths, &record);
    Ok(record)
}

fn remember_first_sight(store: &Inner, paths: &KeyPaths, record: &Record) {
    let _meta = store.lock();
    let Ok((file, meta)) = open_regular(&paths.file) else {
        return;
    };
    if record.same_version(&meta) && record_of(&file, &meta, &paths.sidecar).is_none() {
        tracing::info!(path = %paths.file.display(), "no checksum record: recording the hash of the bytes found (first sight)");
        keep_record(&file, &paths.dir, &paths.sidecar, record);
    }
}

/// Blocking: the recorded size and hash of the file at `paths` (hashed now if it has no
/// record), for listings. Reads no bytes of a recorded file.
pub(crate) fn recorded_stat(store: &Inner, paths: &KeyPaths) -> StoreResult<FileStat> {
    let (file, meta, record) = open_with_record(store, paths)?;
    let record = match record {
        Some(record) => record,
        None => trust_on_first_use(store, &file, &meta, paths)?,
    };
    Ok(FileStat {
        size: record.size,
        sha256: record.sha256,
        crc32c: record.crc32c,
    })
}

/// Blocking: see [`super::store::Store::open_for_copy`].
pub(crate) fn open_for_copy(store: Arc<Inner>, key: &str) -> StoreResult<(FileStat, Arc<File>)> {
    let paths = store.paths(key)?;
    let opened = OpenFile::open_now(
        store,
        paths,
        key.to_string(),
        FirstSight::HashNow,
        FoundBy::Read,
    )?;
    Ok((opened.stat, opened.file))
}

/// What [`OpenFile::open_small`] found: the whole file, read and verified, or the file
/// opened for streaming because it is larger than asked.
pub enum SmallRead {
    Whole(FileStat, Bytes),
    Large(OpenFile),
}

impl OpenFile {
    pub(crate) async fn open(
        store: Arc<Inner>,
        key: &str,
        first_sight: FirstSight,
        found_by: FoundBy,
    ) -> StoreResult<OpenFile> {
        let paths = store.paths(key)?;
        let key = key.to_string();
        blocking(move || OpenFile::open_now(store, paths, key, first_sight, found_by)).await
    }

    /// Opens the file and, if it is at most `limit` bytes, reads and verifies it whole, in
    /// one hand-off to the blocking pool: a small file is then served with no further
    /// waits for a thread (each costs a wake-up, which under load is most of the time).
    pub(crate) async fn open_small(
        store: Arc<Inner>,
        key: &str,
        limit: u64,
    ) -> StoreResult<SmallRead> {
        let paths = store.paths(key)?;
        let key = key.to_string();
        blocking(move || {
            let file = OpenFile::open_now(store, paths, key, FirstSight::HashNow, FoundBy::Read)?;
            if file.stat.size > limit {
                return Ok(SmallRead::Large(file));
            }
            let (stat, data) = file.read_all_checked(FoundBy::Read)?;
            Ok(SmallRead::Whole(stat, data))
        })
        .await
    }

    /// Blocking: opens the file under `paths` with its record.
    fn open_now(
        store: Arc<Inner>,
        paths: KeyPaths,
        key: String,
        first_sight: FirstSight,
        found_by: FoundBy,
    ) -> StoreResult<OpenFile> {
        let (file, meta, record) = open_with_record(&store, &paths)?;
        let record = match (record, first_sight) {
            (Some(record), _) => Some(record),
            (None, FirstSight::HashNow) => Some(trust_on_first_use(&store, &file, &meta, &paths)?),
            (None, FirstSight::Defer) => None,
        };
        let stat = record.as_ref().map_or(
            FileStat {
                size: meta.len(),
                sha256: String::new(),
                crc32c: None,
            },
            |r| FileStat {
                size: r.size,
                sha256: r.sha256.clone(),
                crc32c: r.crc32c,
            },
        );
        let judge = Judge {
            store: Arc::clone(&store),
            key,
            paths,
            version: (meta.dev(), meta.ino()),
            record,
        };
        if stat.size != meta.len() {
            // Truncated or grown since it was stored: no need to read a byte.
            let recorded = judge.record.clone().expect("a size mismatch has a record");
            return Err(judge.store.quarantine(
                &judge.paths,
                judge.version,
                QuarantinedCopy {
                    key: judge.key.clone(),
                    size: meta.len(),
                    quarantined_unix_ms: crate::node::now_unix_ms(),
                    reason: format!(
                        "size is {} bytes, recorded {} when stored",
                        meta.len(),
                        recorded.size
                    ),
                    expected_sha256: recorded.sha256,
                    actual_sha256: String::new(),
                    found_by,
                },
            ));
        }
        Ok(OpenFile {
            stat,
            file: Arc::new(file),
            judge,
        })
    }

    /// Streams `length` bytes from `offset` (0 = to the end) in chunks of [`CHUNK_BYTES`],
    /// each read only when the previous one has been taken, verified as the module says:
    /// the stream ends with [`StoreError::Corrupt`] instead of the last chunk (whole
    /// file) or before the first (a range) when the bytes do not match.
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
        let verify = self.judge.store.options.verify_reads;
        // A whole file is hashed as it streams; a range is checked before it starts.
        let hash_as_streamed = verify && offset == 0 && end == size;
        Ok(async_stream::try_stream! {
            let OpenFile { file, judge, .. } = self;
            if verify && !hash_as_streamed {
                check_whole(Arc::clone(&file), judge.clone(), size, FoundBy::Read).await?;
            }
            let mut hasher = hash_as_streamed.then(|| judge.read_sum());
            let mut position = offset;
            while position < end {
                let want = (end - position).min(CHUNK_BYTES as u64) as usize;
                let (chunk, next) =
                    read_chunk(Arc::clone(&file), &judge, position, want, hasher).await?;
                hasher = next;
                position += chunk.len() as u64;
                if position == end {
                    // The last chunk goes out only once the whole file's hash matches.
                    check_streamed(&judge, &file, size, hasher.take()).await?;
                }
                yield chunk;
            }
            // An empty file has no last chunk to hold back, but is checked all the same.
            check_streamed(&judge, &file, size, hasher).await?;
        })
    }

    /// The whole file in one buffer, checked before it is returned.
    pub async fn read_all(self, found_by: FoundBy) -> StoreResult<Bytes> {
        blocking(move || self.read_all_now(found_by)).await
    }

    /// Blocking [`OpenFile::read_all`].
    fn read_all_now(self, found_by: FoundBy) -> StoreResult<Bytes> {
        Ok(self.read_all_checked(found_by)?.1)
    }

    /// Blocking: the whole file, checked, with its stat; the stat's CRC is the one the
    /// bytes were found to have when they were checked (a record's v1 gap or wrong CRC
    /// mended), so whoever copies them can rely on it.
    fn read_all_checked(self, found_by: FoundBy) -> StoreResult<(FileStat, Bytes)> {
        use std::io::Read;
        let OpenFile {
            mut stat,
            file,
            judge,
        } = self;
        let mut data = Vec::with_capacity(stat.size as usize);
        // Read into spare capacity (no zeroing first); the file was opened for this read,
        // so its position is the start. One byte more than recorded would mean it grew.
        (&*file)
            .take(stat.size + 1)
            .read_to_end(&mut data)
            .map_err(io_err("reading", &judge.paths.file))?;
        if judge.store.options.verify_reads || data.len() as u64 != stat.size {
            let mut sum = judge.read_sum();
            sum.update(&data);
            if let Some(crc) = judge.check_read(&file, data.len() as u64, sum, found_by)? {
                stat.crc32c = Some(crc);
            }
        }
        Ok((stat, Bytes::from(data)))
    }

    /// Reads the whole file and checks it against the record.
    pub async fn check_whole(self, found_by: FoundBy) -> StoreResult<()> {
        check_whole(self.file, self.judge, self.stat.size, found_by).await
    }

    /// Hashes the whole file for the scrub, in one task on the blocking pool (one hand-off
    /// per file, not per chunk, so a busy machine does not slow the scrub further), calling
    /// `pace(bytes)` after each chunk: it may sleep to keep the scrub's rate, and returns
    /// false to stop (then None).
    pub(crate) async fn hash_paced(
        &self,
        mut pace: impl FnMut(u64) -> bool + Send + 'static,
    ) -> StoreResult<Option<FileHasher>> {
        let file = Arc::clone(&self.file);
        let path = self.judge.paths.file.clone();
        let size = self.stat.size;
        blocking(move || {
            let mut hasher = FileHasher::default();
            let mut buf = vec![0u8; CHUNK_BYTES];
            let mut position = 0u64;
            while position < size {
                let want = (size - position).min(CHUNK_BYTES as u64) as usize;
                file.read_exact_at(&mut buf[..want], position)
                    .map_err(io_err("reading", &path))?;
                hasher.update(&buf[..want]);
                position += want as u64;
                if !pace(want as u64) {
                    return Ok(None);
                }
            }
            Ok(Some(hasher))
        })
        .await
    }

    /// Ends a scrub of this file with the hash of all its bytes: checked against the
    /// record (quarantined on a mismatch), or recorded if the file had none.
    pub(crate) async fn finish_scrub(self, hasher: FileHasher) -> StoreResult<()> {
        let OpenFile { stat, file, judge } = self;
        blocking(move || {
            let digest = hasher.finish();
            if judge.record.is_some() {
                return judge
                    .check_digest(digest, stat.size, FoundBy::Scrub)
                    .map(drop);
            }
            let meta = file.metadata().map_err(io_err("stat", &judge.paths.file))?;
            remember_first_sight(
                &judge.store,
                &judge.paths,
                &Record::describing(&meta, digest),
            );
            Ok(())
        })
        .await
    }
}

/// Reads `want` bytes at `position`, adding them to `hasher` when there is one.
async fn read_chunk(
    file: Arc<File>,
    judge: &Judge,
    position: u64,
    want: usize,
    mut hasher: Option<ReadSum>,
) -> StoreResult<(Bytes, Option<ReadSum>)> {
    let path = judge.paths.file.clone();
    blocking(move || {
        let mut buf = vec![0u8; want];
        file.read_exact_at(&mut buf, position)
            .map_err(io_err("reading", &path))?;
        if let Some(hasher) = &mut hasher {
            hasher.update(&buf);
        }
        Ok((Bytes::from(buf), hasher))
    })
    .await
}

/// Checks the sum of everything streamed, which is then the whole file (nothing to do
/// when the stream was not summed, or was checked already).
async fn check_streamed(
    judge: &Judge,
    file: &Arc<File>,
    size: u64,
    sum: Option<ReadSum>,
) -> StoreResult<()> {
    let Some(sum) = sum else {
        return Ok(());
    };
    let (judge, file) = (judge.clone(), Arc::clone(file));
    blocking(move || judge.check_read(&file, size, sum, FoundBy::Read).map(drop)).await
}

/// Reads the whole file and checks it: by the read sum for a read, by the SHA-256 for an
/// explicit verify (what repair and ring changes ask before they trust a copy).
async fn check_whole(
    file: Arc<File>,
    judge: Judge,
    size: u64,
    found_by: FoundBy,
) -> StoreResult<()> {
    blocking(move || {
        if found_by == FoundBy::Read {
            let mut sum = judge.read_sum();
            let size = read_through(&file, &judge.paths.file, |chunk| sum.update(chunk))?;
            return judge.check_read(&file, size, sum, found_by).map(drop);
        }
        judge
            .check_digest(hash_file(&file, &judge.paths.file)?, size, found_by)
            .map(drop)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::super::record::{Record, attach_record, record_of, recorded_sums};
    use super::super::store::Store;
    use super::super::write::Arrival;
    use bytes::Bytes;
    use std::path::{Path, PathBuf};

    fn stored(root: &Path) -> PathBuf {
        root.join("v1").join("a.m4s")
    }

    fn sidecar(root: &Path) -> PathBuf {
        root.join("v1").join(".a.m4s.sha256")
    }

    fn record(root: &Path) -> Record {
        let file = std::fs::File::open(stored(root)).unwrap();
        let meta = file.metadata().unwrap();
        record_of(&file, &meta, &sidecar(root)).expect("a record")
    }

    /// A store with `v1/a.m4s` of 300 000 × `byte`, and that file's record.
    async fn stored_file(dir: &Path, byte: u8) -> (Store, Bytes, Record) {
        let store = Store::open(dir).await.unwrap();
        let data = Bytes::from(vec![byte; 300_000]);
        store
            .put("v1/a.m4s", data.clone(), Arrival::Hashed(None))
            .await
            .unwrap();
        (store, data, record(dir))
    }

    /// Replaces the record on the file by a sidecar with `text` (an earlier version's).
    fn sidecar_instead(dir: &Path, text: &str) {
        rustix::fs::removexattr(stored(dir), "user.tritontube.rec").unwrap();
        std::fs::write(sidecar(dir), text).unwrap();
    }

    #[tokio::test]
    async fn a_record_is_kept_on_the_file_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (store, data, good) = stored_file(dir.path(), 4).await;
        assert!(!sidecar(dir.path()).exists(), "no sidecar beside it");
        let (sha256, size, crc) = recorded_sums(&stored(dir.path())).unwrap();
        assert_eq!(
            (sha256, size, crc),
            (good.sha256.clone(), 300_000, good.crc32c)
        );
        // A v2 sidecar (a file stored by an earlier version) still serves as its record.
        let v2 = format!(
            "tritontube-sha256-v2 {} 300000 0 0 {:08x}\n",
            good.sha256,
            crc.unwrap()
        );
        sidecar_instead(dir.path(), &v2);
        assert_eq!(store.read("v1/a.m4s").await.unwrap(), data);
        assert_eq!(record(dir.path()).crc32c, crc);
    }

    #[tokio::test]
    async fn a_record_without_a_crc_is_read_by_its_sha256_and_gains_the_crc() {
        let dir = tempfile::tempdir().unwrap();
        let (store, data, good) = stored_file(dir.path(), 5).await;
        // As a sidecar written before reads checked a CRC.
        let v1 = format!("tritontube-sha256-v1 {} {} 0 0\n", good.sha256, good.size);
        sidecar_instead(dir.path(), &v1);
        assert_eq!(record(dir.path()).crc32c, None);

        assert_eq!(store.read("v1/a.m4s").await.unwrap(), data);
        // The CRC is on the file now, and the sidecar it replaces is gone.
        assert_eq!(record(dir.path()), good);
        assert!(!sidecar(dir.path()).exists());
    }

    #[tokio::test]
    async fn a_wrong_crc_with_the_right_sha256_is_mended_not_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let (store, data, good) = stored_file(dir.path(), 9).await;
        let wrong = good.with_crc32c(good.crc32c.unwrap() ^ 1);
        let file = std::fs::File::open(stored(dir.path())).unwrap();
        attach_record(&file, &wrong).unwrap();
        assert_eq!(record(dir.path()), wrong);

        assert_eq!(store.read("v1/a.m4s").await.unwrap(), data);
        assert_eq!(record(dir.path()), good);
        assert!(store.quarantined().is_empty());
    }
}
