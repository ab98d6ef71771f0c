//! Metadata store: the videos and the cluster state (ring membership and migration
//! journal), in SQLite on one machine or in an etcd cluster.
//!
//! - [`sqlite`]: one SQLite file (rusqlite, bundled), blocking calls off the async threads.
//! - [`etcd`]: an etcd v3 cluster; the original's `videos/{id}` keys, the rest under
//!   `tritontube/`.
//! - [`claim`]: an upload's named hold on a video id, which only it can release.
//! - [`metrics`]: the store's operations and quorum, recorded where it dispatches.

pub mod claim;
pub mod etcd;
pub mod metrics;
pub mod sqlite;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use claim::Claim;
pub use etcd::EtcdStore;
pub use sqlite::SqliteStore;

/// Where a video is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoStatus {
    /// Claimed by an upload that is still transcoding or storing.
    Processing,
    /// The lowest rendition is stored and the manifest lists what is stored: viewers can
    /// watch while the higher renditions are still being encoded.
    Playable,
    /// Every file is stored; playable.
    Ready,
    /// A tombstone: a delete has begun and its files may be partly gone. The record stays
    /// (so the id cannot be claimed) until every file is deleted; a web node that starts
    /// with tombstones finishes them.
    Deleting,
}

impl VideoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VideoStatus::Processing => "processing",
            VideoStatus::Playable => "playable",
            VideoStatus::Ready => "ready",
            VideoStatus::Deleting => "deleting",
        }
    }

    /// Still owned by the upload that claimed it (encoding or storing goes on).
    pub fn in_upload(self) -> bool {
        matches!(self, VideoStatus::Processing | VideoStatus::Playable)
    }

    /// Has a manifest viewers can play.
    pub fn watchable(self) -> bool {
        matches!(self, VideoStatus::Playable | VideoStatus::Ready)
    }

    /// Reads [`Self::as_str`] back; anything unknown (the original wrote no status) is
    /// Ready.
    pub fn parse(s: &str) -> VideoStatus {
        match s {
            "processing" => VideoStatus::Processing,
            "playable" => VideoStatus::Playable,
            "deleting" => VideoStatus::Deleting,
            _ => VideoStatus::Ready,
        }
    }
}

/// One video rendition of the DASH ladder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendition {
    pub width: u32,
    pub height: u32,
    /// Target video bitrate, kbit/s.
    pub bitrate_kbps: u32,
}

/// What is known of one video once it is stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoDetails {
    pub duration_seconds: f64,
    /// Bytes of the uploaded MP4.
    pub source_bytes: u64,
    /// Number of DASH files stored and their total size.
    pub file_count: u64,
    pub stored_bytes: u64,
    /// Size of the source video; 0 when unknown (videos stored before this was recorded).
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
    /// The video renditions in the manifest, highest first.
    #[serde(default)]
    pub renditions: Vec<Rendition>,
    /// Whether `{id}/poster.jpg` was stored.
    #[serde(default)]
    pub poster: bool,
    /// Whether `{id}/storyboard.vtt` (seek-bar previews) and its sheets were stored.
    #[serde(default)]
    pub storyboard: bool,
    /// The caption tracks stored beside the video (set on their own, never by an upload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captions: Vec<Caption>,
}

/// Puts `caption` in place of the track of `lang` (or removes it); returns the old one.
pub fn replace_caption(
    captions: &mut Vec<Caption>,
    lang: &str,
    caption: Option<&Caption>,
) -> Option<Caption> {
    let old = captions
        .iter()
        .position(|c| c.lang == lang)
        .map(|at| captions.remove(at));
    if let Some(new) = caption {
        captions.push(new.clone());
        captions.sort_by(|a, b| a.lang.cmp(&b.lang));
    }
    old
}

/// A WebVTT caption track: its language tag and the file holding it under the video's id
/// (named after its content, so a replaced track gets a URL no cache has seen).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caption {
    pub lang: String,
    pub file: String,
}

/// Where a page of the newest-first listing ends: the last video shown. The next page
/// starts strictly after it, so videos added meanwhile never shift a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub uploaded_at: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    pub fn after(video: &Video) -> Cursor {
        Cursor {
            uploaded_at: video.uploaded_at,
            id: video.id.clone(),
        }
    }

    /// `{unix nanoseconds}:{id}`; opaque to clients.
    pub fn encode(&self) -> String {
        format!("{}:{}", unix_nanos(self.uploaded_at), self.id)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (nanos, id) = s.split_once(':')?;
        let nanos: i64 = nanos.parse().ok()?;
        if id.is_empty() {
            return None;
        }
        Some(Cursor {
            uploaded_at: DateTime::from_timestamp_nanos(nanos),
            id: id.to_owned(),
        })
    }

    /// Whether `video` comes after this cursor in newest-first order.
    pub fn precedes(&self, video: &Video) -> bool {
        video.uploaded_at < self.uploaded_at
            || (video.uploaded_at == self.uploaded_at && video.id > self.id)
    }
}

/// Nanoseconds since 1970, saturating outside ±292 years.
pub fn unix_nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// One page of the newest-first listing and the cursor of the next, if there is one.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub videos: Vec<Video>,
    pub next: Option<Cursor>,
}

/// Cuts `videos` (sorted newest first) to the page after `after`.
pub(crate) fn page_of(videos: Vec<Video>, limit: usize, after: Option<&Cursor>) -> Page {
    let mut videos: Vec<Video> = videos
        .into_iter()
        .filter(|v| after.is_none_or(|c| c.precedes(v)))
        .take(limit.saturating_add(1))
        .collect();
    let next = if videos.len() > limit {
        videos.truncate(limit);
        videos.last().map(Cursor::after)
    } else {
        None
    };
    Page { videos, next }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Video {
    pub id: String,
    pub uploaded_at: DateTime<Utc>,
    pub status: VideoStatus,
    /// None while processing, and for videos written by the original system.
    pub details: Option<VideoDetails>,
}

/// A copy written to a stand-in node because its owner did not answer (hinted handoff):
/// repair hands it to `owner` when it answers again, then deletes it from `stand_in`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    pub key: String,
    pub owner: String,
    pub stand_in: String,
    pub at: DateTime<Utc>,
}

/// A key on the resync queue: a copy of it was found bad (quarantined by a read, a pull
/// or the scrub), so it is copied again from a good copy to every owner lacking one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncEntry {
    pub key: String,
    /// What put it there, in words (which node, found how).
    pub reason: String,
    pub queued_at: DateTime<Utc>,
    /// Failed tries so far; each doubles the wait before the next.
    pub attempts: u32,
    /// Not tried again before this.
    pub next_at: DateTime<Utc>,
    /// Why the last try failed; empty before the first failure.
    pub last_error: String,
}

/// A read result and whether it may be stale (served by a member without quorum).
#[derive(Clone, Debug, PartialEq)]
pub struct Read<T> {
    pub value: T,
    pub stale: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("video {0:?} already exists")]
    AlreadyExists(String),
    #[error("video {0:?} not found")]
    NotFound(String),
    /// The store cannot answer now (etcd without quorum, no member reachable, a deadline
    /// passed); retrying later may work. For a write the outcome is unknown: etcd may
    /// still commit it once the quorum returns (a claim then shows up as a Processing
    /// video that [`MetaStore::release_claim`] clears).
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    #[error("metadata store error: {0}")]
    Internal(String),
}

pub type MetaResult<T> = Result<T, MetaError>;

/// The metadata store in use. An enum rather than a trait object: two backends, static
/// dispatch, and async methods without boxing.
#[derive(Clone)]
pub enum MetaStore {
    Sqlite(SqliteStore),
    Etcd(EtcdStore),
}

/// Runs operation `$op` on the backend, counted and timed for the metrics.
macro_rules! dispatch {
    ($self:ident, $op:literal, $store:ident => $call:expr) => {
        crate::meta::metrics::observe($self.kind(), $op, async {
            match $self {
                MetaStore::Sqlite($store) => $call,
                MetaStore::Etcd($store) => $call,
            }
        })
        .await
    };
}

impl MetaStore {
    /// Opens (creating and migrating if needed) the SQLite file at `path`.
    pub async fn sqlite(path: &std::path::Path) -> MetaResult<Self> {
        Ok(MetaStore::Sqlite(SqliteStore::open(path).await?))
    }

    /// Connects to etcd; endpoints are `host:port` or `http://host:port`. `Unavailable`
    /// when no member answers.
    pub async fn etcd(endpoints: &[String]) -> MetaResult<Self> {
        Ok(MetaStore::Etcd(EtcdStore::connect(endpoints).await?))
    }

    /// As [`Self::etcd`]; with `tls` (this host's certificate), over mutual TLS.
    pub async fn etcd_tls(
        endpoints: &[String],
        tls: Option<&crate::trust::tls::ClusterTls>,
    ) -> MetaResult<Self> {
        let tls = tls.map(|tls| tls.client_config());
        Ok(MetaStore::Etcd(
            EtcdStore::connect_tls(endpoints, tls).await?,
        ))
    }

    /// Claims `id` for an upload (status Processing). `AlreadyExists` if the id is taken in
    /// any state; of two concurrent claims exactly one succeeds.
    pub async fn claim_video(&self, id: &str, at: DateTime<Utc>) -> MetaResult<()> {
        self.claim(&Claim::new(id, at)).await
    }

    /// As [`Self::claim_video`], under a claim the caller keeps, so that it can release it
    /// with [`Self::release_claim`] whatever became of the write.
    pub async fn claim(&self, claim: &Claim) -> MetaResult<()> {
        dispatch!(self, "claim_video", s => s.claim_video(claim).await)
    }

    /// Removes the record that `claim` made, in any state, with its keys; a record that
    /// another claim made (or none) is left alone. Idempotent. With `may_still_land` (the
    /// claim's own write had an unknown outcome) it also makes sure that the claim can
    /// never land afterward: on etcd a small fence key per such claim, kept.
    pub async fn release_claim(&self, claim: &Claim, may_still_land: bool) -> MetaResult<()> {
        dispatch!(self, "release_claim", s => s.release_claim(claim, may_still_land).await)
    }

    /// Marks a claimed (or playable) video Ready with its details (on etcd this is when
    /// the original's `videos/{id}` key appears). `NotFound` if it was never claimed or
    /// was removed.
    pub async fn finish_video(&self, id: &str, details: &VideoDetails) -> MetaResult<()> {
        dispatch!(self, "finish_video", s => s.set_details(id, VideoStatus::Ready, details).await)
    }

    /// Marks a claimed video Playable with the details so far (the renditions stored);
    /// the upload still owns it. `NotFound` if it was never claimed or was removed.
    pub async fn publish_video(&self, id: &str, details: &VideoDetails) -> MetaResult<()> {
        dispatch!(self, "publish_video", s => s.set_details(id, VideoStatus::Playable, details).await)
    }

    /// Sets (`Some`) or removes (`None`) the caption track of `lang` of a playable or
    /// ready video; returns the track it replaced or removed. `NotFound` for any other.
    pub async fn set_caption(
        &self,
        id: &str,
        lang: &str,
        caption: Option<&Caption>,
    ) -> MetaResult<Option<Caption>> {
        dispatch!(self, "set_caption", s => s.set_caption(id, lang, caption).await)
    }

    /// Forgets a video in any state (a failed upload's claim, or a deletion). Idempotent.
    pub async fn remove_video(&self, id: &str) -> MetaResult<()> {
        dispatch!(self, "remove_video", s => s.remove_video(id).await)
    }

    /// One video. On etcd without quorum, read from any member still up with `stale` set;
    /// `Unavailable` only when no member answers.
    pub async fn get_video(&self, id: &str) -> MetaResult<Read<Option<Video>>> {
        dispatch!(self, "get_video", s => s.get_video(id).await)
    }

    /// Starts deleting `id`: a Ready video becomes a Deleting tombstone (on etcd the
    /// original's `videos/{id}` key goes at once, so the original lists it no more).
    /// Returns the status it had; a Processing video is left as it is (an upload owns it)
    /// and a Deleting one stays so. `NotFound` if there is no such video.
    pub async fn begin_delete(&self, id: &str) -> MetaResult<VideoStatus> {
        dispatch!(self, "begin_delete", s => s.begin_delete(id).await)
    }

    /// Up to `limit` videos after `after`, newest first (equal times by id), and the
    /// cursor of the next page; stale as for [`Self::get_video`].
    pub async fn list_videos_page(
        &self,
        limit: usize,
        after: Option<&Cursor>,
    ) -> MetaResult<Read<Page>> {
        dispatch!(self, "list_videos_page", s => s.list_videos_page(limit, after).await)
    }

    /// Every video, newest first (equal times by id); stale as for [`Self::get_video`].
    pub async fn list_videos(&self) -> MetaResult<Read<Vec<Video>>> {
        dispatch!(self, "list_videos", s => s.list_videos().await)
    }

    /// The cluster state document (ring + migration journal, JSON owned by the web node),
    /// or None if never saved. On etcd without quorum it comes from any member still up
    /// (possibly stale) rather than failing.
    pub async fn load_cluster_state(&self) -> MetaResult<Option<String>> {
        dispatch!(self, "load_cluster_state", s => s.load_cluster_state().await)
    }

    pub async fn save_cluster_state(&self, json: &str) -> MetaResult<()> {
        dispatch!(self, "save_cluster_state", s => s.save_cluster_state(json).await)
    }

    /// Saves `json` only if the stored document still is `expected` (None: never saved):
    /// of two web nodes changing the cluster at once, exactly one wins. False when the
    /// document changed; load it again and retry from there.
    pub async fn compare_and_swap_cluster_state(
        &self,
        expected: Option<&str>,
        json: &str,
    ) -> MetaResult<bool> {
        dispatch!(self, "compare_and_swap_cluster_state", s => s.compare_and_swap_cluster_state(expected, json).await)
    }

    /// Every later change of the cluster state document, as it happens. SQLite has one
    /// writer (this process), so its stream never yields.
    pub async fn watch_cluster_state(&self) -> MetaResult<BoxStream<'static, String>> {
        dispatch!(self, "watch_cluster_state", s => s.watch_cluster_state().await)
    }

    /// Records a hinted copy (replacing an older hint for the same key and owner).
    pub async fn record_hint(&self, hint: &Hint) -> MetaResult<()> {
        dispatch!(self, "record_hint", s => s.record_hint(hint).await)
    }

    /// Every hinted copy waiting for its owner, by owner then key.
    pub async fn hints(&self) -> MetaResult<Vec<Hint>> {
        dispatch!(self, "hints", s => s.hints().await)
    }

    /// Forgets the hint for `key` on `owner` (handed off, or no longer needed). Idempotent.
    pub async fn remove_hint(&self, key: &str, owner: &str) -> MetaResult<()> {
        dispatch!(self, "remove_hint", s => s.remove_hint(key, owner).await)
    }

    /// Puts `entry` on the resync queue unless its key is already there (false then).
    pub async fn queue_resync(&self, entry: &ResyncEntry) -> MetaResult<bool> {
        dispatch!(self, "queue_resync", s => s.queue_resync(entry).await)
    }

    /// Rewrites a queued entry (a failed try); an entry no longer queued stays gone.
    pub async fn update_resync(&self, entry: &ResyncEntry) -> MetaResult<()> {
        dispatch!(self, "update_resync", s => s.update_resync(entry).await)
    }

    /// Every key waiting to be copied again, by key.
    pub async fn resync_queue(&self) -> MetaResult<Vec<ResyncEntry>> {
        dispatch!(self, "resync_queue", s => s.resync_queue().await)
    }

    /// Takes `key` off the resync queue (healed, or nothing left to heal). Idempotent.
    pub async fn remove_resync(&self, key: &str) -> MetaResult<()> {
        dispatch!(self, "remove_resync", s => s.remove_resync(key).await)
    }

    /// A short name for logs and pages: "sqlite" or "etcd".
    pub fn kind(&self) -> &'static str {
        match self {
            MetaStore::Sqlite(_) => "sqlite",
            MetaStore::Etcd(_) => "etcd",
        }
    }
}

/// Newest first; equal times by id.
pub(crate) fn sort_newest_first(videos: &mut [Video]) {
    videos.sort_by(|a, b| {
        b.uploaded_at
            .cmp(&a.uploaded_at)
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// Reads RFC 3339 and the layouts go-sqlite3 writes (`2006-01-02 15:04:05.999999999-07:00`
/// and the same without an offset, meaning UTC).
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let t_form = s.replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&t_form) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = t_form.trim_end_matches('Z');
    for layout in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, layout) {
            return Some(t.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(naive, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_layouts_of_both_systems() {
        let want = DateTime::parse_from_rfc3339("2024-05-01T19:34:56.789012345Z")
            .unwrap()
            .with_timezone(&Utc);
        for s in [
            "2024-05-01T19:34:56.789012345Z",
            "2024-05-01 12:34:56.789012345-07:00",
            "2024-05-01T12:34:56.789012345-07:00",
            "2024-05-01 19:34:56.789012345",
            "2024-05-01 19:34:56.789012345Z",
        ] {
            assert_eq!(parse_time(s), Some(want), "{s}");
        }
        assert!(parse_time("2024-05-01 19:34:56").is_some());
        assert!(parse_time("2024-05-01").is_some());
        assert_eq!(parse_time("yesterday"), None);
    }
}
