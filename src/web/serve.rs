//! `GET|HEAD /content/{id}/{file}`: a DASH file from the store, with MIME type, length,
//! byte ranges, ETag revalidation and cache lifetimes. Small files (every segment) are
//! kept in a bounded in-memory cache, so hot segments are served without a node round trip.
//!
//! Caching and deletes: an id can be deleted and uploaded again, so a name like
//! `/content/clip/chunk-0-00001.m4s` may later hold other bytes. Browsers and proxies
//! therefore get two kinds of URL:
//! - versioned, `/content/{id}/{version}/{file}` (what the pages use): the version is the
//!   upload's time, so a re-upload gets new URLs; these are `immutable` for a year, and a
//!   version that is not the current one is 404, never another upload's bytes;
//! - unversioned, `/content/{id}/{file}` (the original's URLs, for its clients): `no-cache`,
//!   revalidated by ETag (the file's SHA-256) on every use, which is cheap (304) and can
//!   never hand out an old upload's bytes.
//!
//! The in-memory cache is keyed by version too, so a re-upload made through another web
//! node is never served from this node's memory; a delete through this node also drops
//! the id's entries at once. The current version of an id is looked up in the metadata
//! store and remembered for [`VERSION_TTL`].

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::routes::{SharedState, WebError};
use crate::library::content::ContentError;
use crate::library::videos::content_version;
use crate::meta::{MetaStore, VideoStatus};
use crate::node::keys;
use crate::node::stat::FileStat;
use crate::web::metrics::CacheMetrics;

/// Files up to this size are cached whole; larger ones are streamed straight through.
pub const MAX_CACHED_FILE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct CachedFile {
    pub stat: FileStat,
    pub data: Bytes,
}

pub type ContentCache = moka::future::Cache<String, CachedFile>;

/// A cache holding at most `capacity_bytes` of file data, counting its evictions.
pub fn new_cache(capacity_bytes: u64, metrics: &CacheMetrics) -> ContentCache {
    moka::future::Cache::builder()
        .max_capacity(capacity_bytes)
        .support_invalidation_closures()
        .weigher(|key: &String, file: &CachedFile| {
            u32::try_from(file.data.len() + key.len()).unwrap_or(u32::MAX)
        })
        .eviction_listener(metrics.eviction_listener())
        .build()
}

/// How long this node trusts what it last read of an id's version: the longest a
/// re-upload made through another web node can be answered from before it.
pub const VERSION_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// What the metadata store says of an id, as far as its files are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentVersion {
    /// A recorded video (processing or ready) and its version.
    Current(String),
    /// Being deleted: its files are going.
    Deleting,
    /// No record: files put on the ring by other means are still served unversioned.
    Unrecorded,
}

pub type VersionCache = moka::future::Cache<String, ContentVersion>;

pub fn new_version_cache() -> VersionCache {
    moka::future::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(VERSION_TTL)
        .build()
}

async fn current_version(state: &SharedState, id: &str) -> Result<ContentVersion, WebError> {
    let meta: &MetaStore = &state.meta;
    state
        .versions
        .try_get_with(id.to_owned(), async move {
            let video = meta.get_video(id).await?.value;
            Ok::<_, crate::meta::MetaError>(match video {
                None => ContentVersion::Unrecorded,
                Some(v) if v.status == VideoStatus::Deleting => ContentVersion::Deleting,
                Some(v) => ContentVersion::Current(content_version(&v)),
            })
        })
        .await
        .map_err(|e| WebError::Unavailable(format!("the metadata store is unavailable: {e}")))
}

/// Drops everything this node remembers of `id`'s files (it was deleted).
pub async fn forget_video(state: &SharedState, id: &str) {
    let prefix = format!("{id}/");
    if let Err(e) = state
        .cache
        .invalidate_entries_if(move |key, _| key.starts_with(&prefix))
    {
        tracing::warn!(error = %e, "cannot drop cached files of a deleted video");
    }
    state.versions.invalidate(id).await;
}

pub fn mime_for(file: &str) -> &'static str {
    match file
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
    {
        Some(ext) => match ext.as_str() {
            "mpd" => "application/dash+xml",
            "m4s" => "video/iso.segment",
            "mp4" | "m4v" => "video/mp4",
            "m4a" => "audio/mp4",
            "m3u8" => "application/vnd.apple.mpegurl",
            "vtt" => "text/vtt",
            "jpg" | "jpeg" => "image/jpeg",
            _ => "application/octet-stream",
        },
        None => "application/octet-stream",
    }
}

/// Versioned URLs never change what they name; unversioned ones may (a delete and a
/// re-upload of the id), so they are revalidated by ETag on every use.
fn cache_control(versioned: bool) -> &'static str {
    if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "public, no-cache"
    }
}

/// One byte range of a `Range: bytes=…` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `a-b` (inclusive) or `a-`.
    From { start: u64, end: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses a single-range header; None for anything else (then the whole file is sent,
    /// as RFC 9110 allows for ranges a server does not support).
    pub fn parse(value: &str) -> Option<ByteRange> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (start, end) = spec.split_once('-')?;
        let (start, end) = (start.trim(), end.trim());
        if start.is_empty() {
            return end.parse().ok().map(ByteRange::Suffix);
        }
        let start: u64 = start.parse().ok()?;
        let end = match end {
            "" => None,
            e => {
                let e: u64 = e.parse().ok()?;
                if e < start {
                    return None;
                }
                Some(e)
            }
        };
        Some(ByteRange::From { start, end })
    }

    /// First and last byte (inclusive) within a file of `size` bytes, or None when the
    /// range cannot be satisfied (416).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From { start, end } if start < size => {
                Some((start, end.map_or(size - 1, |e| e.min(size - 1))))
            }
            ByteRange::From { .. } => None,
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(n) if size > 0 => Some((size.saturating_sub(n), size - 1)),
            ByteRange::Suffix(_) => None,
        }
    }
}

fn etag(stat: &FileStat) -> String {
    format!("\"{}\"", &stat.sha256[..stat.sha256.len().min(32)])
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        })
}

/// What to send: the whole file (200), one range (206), or that the range is unsatisfiable.
enum Plan {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

fn plan(headers: &HeaderMap, size: u64) -> Plan {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(ByteRange::parse);
    match range {
        None => Plan::Whole,
        Some(r) => match r.resolve(size) {
            Some((first, last)) => Plan::Part(first, last),
            None => Plan::Unsatisfiable,
        },
    }
}

fn head_builder(file: &str, stat: &FileStat, versioned: bool) -> axum::http::response::Builder {
    Response::builder()
        .header(header::CONTENT_TYPE, mime_for(file))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag(stat))
        .header(header::CACHE_CONTROL, cache_control(versioned))
}

fn finish(builder: axum::http::response::Builder, body: Body) -> Response {
    builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn unsatisfiable(size: u64) -> Response {
    let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    response
}

/// Answers from a file held in memory.
fn respond_cached(
    file: &str,
    cached: &CachedFile,
    method: &Method,
    headers: &HeaderMap,
    versioned: bool,
) -> Response {
    let size = cached.data.len() as u64;
    let builder = head_builder(file, &cached.stat, versioned);
    if not_modified(headers, &etag(&cached.stat)) {
        return finish(builder.status(StatusCode::NOT_MODIFIED), Body::empty());
    }
    let (status, first, last) = match plan(headers, size) {
        Plan::Unsatisfiable => return unsatisfiable(size),
        Plan::Whole => (StatusCode::OK, 0, size.saturating_sub(1)),
        Plan::Part(first, last) => (StatusCode::PARTIAL_CONTENT, first, last),
    };
    let length = if size == 0 { 0 } else { last - first + 1 };
    let mut builder = builder
        .status(status)
        .header(header::CONTENT_LENGTH, length);
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{size}"),
        );
    }
    let body = if *method == Method::HEAD || length == 0 {
        Body::empty()
    } else {
        Body::from(cached.data.slice(first as usize..=last as usize))
    };
    finish(builder, body)
}

/// Why a file was not loaded into the cache.
#[derive(Debug)]
enum FetchError {
    Missing,
    /// Too large to cache: streamed instead.
    Large,
    Failed(String),
}

/// Loads a whole file for the cache, if it is small enough to keep.
async fn fetch_small(state: &SharedState, key: &str) -> Result<CachedFile, FetchError> {
    let unavailable =
        |e: &dyn std::fmt::Display| FetchError::Failed(format!("storage is unavailable: {e}"));
    // Read whole before anything is sent: a copy that fails verification is passed over
    // for the next holder, so corrupt bytes reach neither the viewer nor this cache.
    match state.content.read_whole(key, MAX_CACHED_FILE_BYTES).await {
        Ok(Some((stat, data))) => Ok(CachedFile { stat, data }),
        Ok(None) => Err(FetchError::Missing),
        Err(ContentError::TooLarge(_)) => Err(FetchError::Large),
        Err(e) => Err(unavailable(&e)),
    }
}

/// `/content/{id}/{file}`: the original's URL, revalidated on every use.
pub async fn serve_content(
    State(state): State<SharedState>,
    method: Method,
    Path((id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    serve(state, method, &id, None, &file, headers).await
}

/// `/content/{id}/{version}/{file}`: immutable, and 404 unless `version` is current.
pub async fn serve_versioned_content(
    State(state): State<SharedState>,
    method: Method,
    Path((id, version, file)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    serve(state, method, &id, Some(&version), &file, headers).await
}

async fn serve(
    state: SharedState,
    method: Method,
    id: &str,
    wanted_version: Option<&str>,
    file: &str,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let (id, file) = (id.to_owned(), file.to_owned());
    keys::validate_video_id(&id)?;
    keys::validate_file_name(&file)?;
    let key = keys::make_key(&id, &file);
    let missing = || WebError::NotFound(format!("no file {file:?} in video {id:?}"));
    let version = match current_version(&state, &id).await? {
        ContentVersion::Deleting => return Err(missing()),
        ContentVersion::Current(v) => v,
        ContentVersion::Unrecorded if wanted_version.is_none() => String::new(),
        ContentVersion::Unrecorded => return Err(missing()),
    };
    if wanted_version.is_some_and(|w| !crate::library::videos::version_serves(w, &version)) {
        return Err(WebError::NotFound(format!(
            "video {id:?} has no version {:?} (it was deleted or uploaded again)",
            wanted_version.unwrap_or_default()
        )));
    }
    let versioned = wanted_version.is_some();
    // The version is part of the key (after a newline, which no file name holds), so a
    // re-upload is never answered from the old upload's entry.
    let cache_key = format!("{key}\n{}", wanted_version.unwrap_or(&version));

    // Concurrent misses for one file share one fetch: a popular segment that just fell
    // out of the cache costs the storage nodes one read, not one per viewer.
    let mut read_from_storage = false;
    let fetched = state
        .cache
        .try_get_with(cache_key, async {
            read_from_storage = true;
            fetch_small(&state, &key).await
        })
        .await;
    state.metrics.cache.record_lookup(read_from_storage);
    let opened = match fetched {
        Ok(cached) => return Ok(respond_cached(&file, &cached, &method, &headers, versioned)),
        Err(e) => match &*e {
            FetchError::Missing => return Err(missing()),
            FetchError::Failed(why) => return Err(WebError::Unavailable(why.clone())),
            FetchError::Large => match state.content.open(&key, 0, 0).await? {
                Some(opened) => opened,
                None => return Err(missing()),
            },
        },
    };
    let stat = opened.stat.clone();

    // A large file: stream it, never holding it whole.
    let builder = head_builder(&file, &stat, versioned);
    if not_modified(&headers, &etag(&stat)) {
        return Ok(finish(
            builder.status(StatusCode::NOT_MODIFIED),
            Body::empty(),
        ));
    }
    let size = stat.size;
    match plan(&headers, size) {
        Plan::Unsatisfiable => Ok(unsatisfiable(size)),
        Plan::Whole => {
            let builder = builder
                .status(StatusCode::OK)
                .header(header::CONTENT_LENGTH, size);
            let body = match method {
                Method::HEAD => Body::empty(),
                _ => Body::from_stream(opened.body),
            };
            Ok(finish(builder, body))
        }
        Plan::Part(first, last) => {
            drop(opened);
            let length = last - first + 1;
            let builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_LENGTH, length)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {first}-{last}/{size}"),
                );
            if method == Method::HEAD {
                return Ok(finish(builder, Body::empty()));
            }
            let Some(part) = state.content.open(&key, first, length).await? else {
                return Err(missing());
            };
            Ok(finish(builder, Body::from_stream(part.body)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_resolve() {
        let r = |s: &str| ByteRange::parse(s);
        assert_eq!(r("bytes=0-99").unwrap().resolve(1000), Some((0, 99)));
        assert_eq!(r("bytes=900-").unwrap().resolve(1000), Some((900, 999)));
        assert_eq!(r("bytes=900-5000").unwrap().resolve(1000), Some((900, 999)));
        assert_eq!(r("bytes=-100").unwrap().resolve(1000), Some((900, 999)));
        assert_eq!(r("bytes=-5000").unwrap().resolve(1000), Some((0, 999)));
        assert_eq!(r("bytes=1000-").unwrap().resolve(1000), None);
        assert_eq!(r("bytes=-0").unwrap().resolve(1000), None);
        assert_eq!(r("bytes=0-").unwrap().resolve(0), None);
        assert_eq!(r("bytes=5-1"), None);
        assert_eq!(r("bytes=0-1,5-6"), None);
        assert_eq!(r("items=0-1"), None);
        assert_eq!(r("bytes=x-1"), None);
    }

    #[test]
    fn mime_types_by_extension() {
        assert_eq!(mime_for("manifest.mpd"), "application/dash+xml");
        assert_eq!(mime_for("chunk-0-00001.m4s"), "video/iso.segment");
        assert_eq!(mime_for("a.MP4"), "video/mp4");
        assert_eq!(mime_for("noext"), "application/octet-stream");
        assert_eq!(mime_for("poster.jpg"), "image/jpeg");
    }
}
