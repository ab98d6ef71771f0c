//! Laying out a store folder from outside a running node: each file under its key with the
//! integrity record a node's own write gives it, for tools and benchmarks that fill a
//! node's folder with many files before the node starts.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::keys::split_key;
use super::record::{FileHasher, Record, attach_record, temp_name, write_record_temp};
use super::store::{KeyPaths, StoreResult, io_err};

/// Blocking: stores `data` as the file of `key` in the store folder `root`, with its
/// record, as a node's write does (temp file renamed into place), but without the fsyncs
/// that make each of a node's writes durable on its own: the caller syncs the file system
/// once when the whole folder is written (`sync`), as no node serves it meanwhile.
pub fn lay_out_file(root: &Path, key: &str, data: &[u8]) -> StoreResult<()> {
    let (video_id, file_name) = split_key(key)?;
    let paths = KeyPaths::new(&root.join(video_id), file_name);
    fs::create_dir_all(&paths.dir).map_err(io_err("creating", &paths.dir))?;
    let temp = paths.dir.join(temp_name());
    let written = write_in_place(&paths, &temp, data);
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// Writes `data` and its record to `temp`, then renames it to the key's file.
fn write_in_place(paths: &KeyPaths, temp: &Path, data: &[u8]) -> StoreResult<()> {
    let mut file = File::create_new(temp).map_err(io_err("creating", temp))?;
    file.write_all(data).map_err(io_err("writing", temp))?;
    let mut hasher = FileHasher::default();
    hasher.update(data);
    let meta = file.metadata().map_err(io_err("reading", temp))?;
    let record = Record::describing(&meta, hasher.finish());
    // A file system without user attributes keeps the record in a sidecar.
    if attach_record(&file, &record).is_err() {
        let record_temp = write_record_temp(&paths.dir, &record)?;
        fs::rename(&record_temp, &paths.sidecar).map_err(|e| {
            let _ = fs::remove_file(&record_temp);
            io_err("renaming into", &paths.sidecar)(e)
        })?;
    }
    fs::rename(temp, &paths.file).map_err(io_err("renaming into", &paths.file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::record::recorded_sums;
    use sha2::{Digest, Sha256};

    #[test]
    fn a_laid_out_file_carries_the_record_of_its_bytes() {
        let root = tempfile::tempdir().unwrap();
        let data = b"some bytes of a segment";
        lay_out_file(root.path(), "video-1/chunk-0-00001.m4s", data).unwrap();
        let path = root.path().join("video-1/chunk-0-00001.m4s");
        assert_eq!(fs::read(&path).unwrap(), data);
        let (sha256, size, crc) = recorded_sums(&path).expect("a record");
        assert_eq!(sha256, hex::encode(Sha256::digest(data)));
        assert_eq!(size, data.len() as u64);
        assert_eq!(crc, Some(crc32c::crc32c(data)));
        let names: Vec<_> = fs::read_dir(root.path().join("video-1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp file left: {names:?}");
    }

    #[test]
    fn a_bad_key_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        assert!(lay_out_file(root.path(), "../escape", b"x").is_err());
        assert!(lay_out_file(root.path(), "no-slash", b"x").is_err());
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
