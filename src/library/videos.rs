//! A video as a whole: the version its content URLs carry, the listing by pages, and
//! deleting it everywhere.
//!
//! A delete is crash-safe: the record first becomes a tombstone (so the id cannot be
//! claimed and the video is listed as deleting), then every file goes from every node,
//! and only then the record. A web node killed in between finds the tombstone when it
//! starts and finishes the job; repair sees the leftovers of a tombstone as files of a
//! video that is going away.

use crate::meta::{Cursor, MetaError, MetaStore, Page, Read, Video, VideoStatus, unix_nanos};

use super::content::{Content, ContentError};

/// Why a page of the listing could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("after={0:?} is not a cursor from an earlier page")]
    BadCursor(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// The `after` of a listing: absent (or empty), or a cursor an earlier page gave.
pub fn parse_cursor(after: Option<&str>) -> Result<Option<Cursor>, ListError> {
    match after.filter(|a| !a.is_empty()) {
        None => Ok(None),
        Some(text) => Cursor::decode(text)
            .map(Some)
            .ok_or_else(|| ListError::BadCursor(text.to_string())),
    }
}

/// Up to `limit` videos, newest first, after the cursor `after` of an earlier page.
pub async fn list_page(
    meta: &MetaStore,
    limit: usize,
    after: Option<&str>,
) -> Result<Read<Page>, ListError> {
    let after = parse_cursor(after)?;
    Ok(meta.list_videos_page(limit, after.as_ref()).await?)
}

/// The version in a video's content URLs: its upload time, so a video deleted and
/// uploaded again under the same id gets URLs no cache has seen. While only part of the
/// ladder is stored (playable), the version also names how many renditions the manifest
/// lists, so the manifest a cache kept then is never taken for the final one.
pub fn content_version(video: &Video) -> String {
    let upload = format!("{:x}", unix_nanos(video.uploaded_at));
    match (video.status, &video.details) {
        (VideoStatus::Playable, Some(details)) => {
            format!("{upload}-p{}", details.renditions.len())
        }
        (VideoStatus::Playable, None) => format!("{upload}-p0"),
        _ => upload,
    }
}

/// Whether content asked for under version `wanted` may be served while `current` is the
/// video's version: the same upload, and never the final version before the video is
/// ready (a playable version asked for later gets the fuller manifest, which is honest).
pub fn version_serves(wanted: &str, current: &str) -> bool {
    let upload = |v: &str| v.split_once('-').map_or(v, |(u, _)| u).to_string();
    if upload(wanted) != upload(current) {
        return false;
    }
    wanted == current || wanted.contains("-p")
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no video named {0:?}")]
    NotFound(String),
    #[error("video {0:?} is still being uploaded; delete it once it is ready")]
    Busy(String),
    #[error(transparent)]
    Meta(MetaError),
    #[error("deleting the files of {id:?}: {source}")]
    Content { id: String, source: ContentError },
}

impl From<MetaError> for DeleteError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::NotFound(id) => DeleteError::NotFound(id),
            other => DeleteError::Meta(other),
        }
    }
}

/// Deletes video `id` and every file of it on every node; returns how many files went.
/// An upload still in progress is refused (`Busy`); a delete left unfinished is finished.
pub async fn delete_video(
    meta: &MetaStore,
    content: &Content,
    id: &str,
) -> Result<usize, DeleteError> {
    if meta.begin_delete(id).await?.in_upload() {
        return Err(DeleteError::Busy(id.to_owned()));
    }
    let files = finish_delete(meta, content, id).await?;
    tracing::info!(%id, files, "deleted a video");
    Ok(files)
}

/// The part of a delete after the tombstone: idempotent, so it can be run again.
pub async fn finish_delete(
    meta: &MetaStore,
    content: &Content,
    id: &str,
) -> Result<usize, DeleteError> {
    let files = content
        .delete_video_files(id)
        .await
        .map_err(|source| DeleteError::Content {
            id: id.to_owned(),
            source,
        })?;
    meta.remove_video(id).await?;
    Ok(files)
}

/// The ids whose delete is under way or was left unfinished (their tombstones).
pub async fn tombstones(meta: &MetaStore) -> Result<Vec<String>, MetaError> {
    Ok(meta
        .list_videos()
        .await?
        .value
        .into_iter()
        .filter(|v| v.status == VideoStatus::Deleting)
        .map(|v| v.id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::version_serves;

    #[test]
    fn a_playable_version_never_passes_for_the_final_one() {
        // Ready: the final version, and the playable versions of the same upload.
        assert!(version_serves("18a", "18a"));
        assert!(version_serves("18a-p1", "18a"));
        // Playable: its own version, but not the final one (it would be cached as final).
        assert!(version_serves("18a-p1", "18a-p1"));
        assert!(!version_serves("18a", "18a-p1"));
        // Another upload of the id: nothing.
        assert!(!version_serves("17f", "18a"));
        assert!(!version_serves("17f-p1", "18a-p1"));
    }
}
