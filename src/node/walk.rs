//! Walking the store folder: listing keys (in batches, for StreamKeys, ListFiles and the
//! scrub) and the scan at start-up that counts files and clears what a crash left.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use tokio::sync::mpsc;

use super::keys::{make_key, split_key};
use super::record::{SIDECAR_SUFFIX, is_temp_name, sidecar_name};
use super::stat::FileStat;
use super::store::{
    Inner, KeyPaths, LIST_BATCH, StoreError, StoreResult, Totals, io_err, is_absent,
};
use super::verify::recorded_stat;

/// One listed key, with its size and hash when asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedKey {
    pub key: String,
    pub stat: Option<FileStat>,
}

/// The valid, non-hidden names in a folder (others are the store's own or unreachable
/// through a key), sorted so a walk has a stable order the scrub can resume in.
pub(crate) fn visible_entries(dir: &Path) -> StoreResult<Vec<(String, fs::FileType)>> {
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
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}

/// Sends every key (video ids in name order, then file names in name order) in batches.
pub(crate) fn walk(
    inner: &Inner,
    with_stat: bool,
    tx: &mpsc::Sender<StoreResult<Vec<ListedKey>>>,
) -> StoreResult<()> {
    walk_batches(inner, with_stat, |batch| {
        tx.blocking_send(Ok(batch)).is_ok()
    })
}

/// Hands every key to `take` in batches of at most [`LIST_BATCH`]; stops early when
/// `take` returns false.
pub(crate) fn walk_batches(
    inner: &Inner,
    with_stat: bool,
    mut take: impl FnMut(Vec<ListedKey>) -> bool,
) -> StoreResult<()> {
    let mut batch = Vec::with_capacity(LIST_BATCH);
    for (video_id, file_type) in visible_entries(&inner.root)? {
        if !file_type.is_dir() {
            continue;
        }
        let dir = inner.root.join(&video_id);
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
                match recorded_stat(inner, &KeyPaths::new(&dir, &file_name)) {
                    Ok(stat) => Some(stat),
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
                if !take(full) {
                    return Ok(());
                }
            }
        }
    }
    if !batch.is_empty() {
        take(batch);
    }
    Ok(())
}

/// Sends `keys` (from the position index) in batches, with their recorded size and hash
/// when `with_stat`; a key deleted since is left out.
pub(crate) fn list_keys(
    inner: &Inner,
    keys: Vec<String>,
    with_stat: bool,
    tx: &mpsc::Sender<StoreResult<Vec<ListedKey>>>,
) -> StoreResult<()> {
    for chunk in keys.chunks(LIST_BATCH) {
        let mut batch = Vec::with_capacity(chunk.len());
        for key in chunk {
            let stat = if with_stat {
                match recorded_stat(inner, &inner.paths(key)?) {
                    Ok(stat) => Some(stat),
                    Err(StoreError::NotFound) => continue,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            batch.push(ListedKey {
                key: key.clone(),
                stat,
            });
        }
        if tx.blocking_send(Ok(batch)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Blocking: builds the position index from one walk over the records (see
/// [`super::index`]); the old index serves until it ends. Returns the keys indexed.
pub(crate) fn build_index(inner: &Inner) -> StoreResult<usize> {
    inner.lock().index.begin_build();
    let walked = walk_batches(inner, true, |batch| {
        let found = batch
            .into_iter()
            .filter_map(|listed| Some((listed.key, listed.stat?.sha256)));
        inner.lock().index.found(found);
        true
    });
    let mut meta = inner.lock();
    if let Err(e) = walked {
        meta.index.abandon_build();
        return Err(e);
    }
    let differing = meta.index.finish_build();
    if differing > 0 {
        tracing::warn!(
            keys = differing,
            "position index rebuilt: keys changed on disk outside the node"
        );
    }
    Ok(meta.index.len())
}

/// Counts the files held; removes temp files left by a crash and records whose file is
/// gone.
pub(crate) fn scan(root: &Path) -> StoreResult<Totals> {
    let mut totals = Totals::default();
    // The node's own files at the top (store marker, scrub progress) are written through
    // temp files too.
    for entry in fs::read_dir(root).map_err(io_err("listing", root))? {
        let entry = entry.map_err(io_err("listing", root))?;
        if entry.file_name().to_str().is_some_and(is_temp_name) {
            let _ = fs::remove_file(entry.path());
        }
    }
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
            let orphan_record = name.ends_with(SIDECAR_SUFFIX) && !wanted.contains(&name);
            if is_temp_name(&name) || orphan_record {
                let path = dir.join(&name);
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove leftover file");
                }
            }
        }
    }
    Ok(totals)
}
