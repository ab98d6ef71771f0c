//! Resumable uploads, tus 1.0.0 (<https://tus.io/protocols/resumable-upload>) at
//! `/api/tus/`, with the creation, termination and expiration extensions.
//!
//! A partial upload is two files in `{work_dir}/tus/`: `{upload}.part`, the bytes so far
//! (its length is the offset), and `{upload}.json`, what the creation said (video id, file
//! name, length). Both live on disk, so an upload survives a restart of the web node. A
//! partial expires a set time after its last byte arrived (its file's modification time);
//! expired partials are removed whenever one is created and when they are asked for.
//! Declared lengths of the partials count against a bound of their own, so unfinished
//! uploads cannot fill the disk. One request at a time works on an upload (a lock per
//! upload), and a PATCH whose client went away still finishes its write before the next
//! request sees the offset. A finished upload is processed exactly like a form upload
//! ([`super::upload::process_file`]): same id rules, refusals and progress.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::options;
use base64::Engine;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::routes::{SharedState, WebError};
use super::upload::{process_file, video_id_for};

pub const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,termination,expiration";
const OFFSET_CONTENT_TYPE: &str = "application/offset+octet-stream";

/// The partial uploads' locks (one per upload in use).
#[derive(Default)]
pub struct Partials {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Partials {
    fn lock_for(&self, upload: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("tus locks")
            .entry(upload.to_owned())
            .or_default()
            .clone()
    }

    fn forget(&self, upload: &str) {
        self.locks.lock().expect("tus locks").remove(upload);
    }
}

/// What a creation said, kept beside the bytes.
#[derive(Debug, Serialize, Deserialize)]
struct Info {
    video_id: String,
    filename: String,
    length: u64,
}

/// A refusal: the status and a message for people.
#[derive(Debug)]
struct TusError(StatusCode, String);

impl From<WebError> for TusError {
    fn from(e: WebError) -> Self {
        TusError(e.logged_status(), e.to_string())
    }
}

fn internal(what: &str) -> impl FnOnce(std::io::Error) -> TusError + '_ {
    move |e| TusError::from(WebError::Internal(format!("{what}: {e}")))
}

impl IntoResponse for TusError {
    fn into_response(self) -> Response {
        let mut response = (self.0, format!("{}\n", self.1)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.0 == StatusCode::PRECONDITION_FAILED {
            headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
        }
        response
    }
}

type TusResult = Result<Response, TusError>;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/api/tus", options(capabilities).post(create))
        .route("/api/tus/", options(capabilities).post(create))
        .route(
            "/api/tus/{upload}",
            options(capabilities)
                .head(offset)
                .patch(append)
                .delete(terminate)
                // Bounded by the declared length while streaming to disk.
                .layer(DefaultBodyLimit::disable()),
        )
        .layer(axum::middleware::map_response(
            |mut response: Response| async move {
                response
                    .headers_mut()
                    .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
                response
            },
        ))
}

fn folder(state: &SharedState) -> PathBuf {
    state.config.work_dir.join("tus")
}

/// An upload's name in URLs: a UUID in its simple form, checked before it names a file.
fn parse_upload(upload: &str) -> Result<String, TusError> {
    let not_found = || TusError(StatusCode::NOT_FOUND, format!("no upload {upload:?}"));
    let parsed = uuid::Uuid::try_parse(upload).map_err(|_| not_found())?;
    let simple = parsed.simple().to_string();
    if simple == upload {
        Ok(simple)
    } else {
        Err(not_found())
    }
}

fn paths(state: &SharedState, upload: &str) -> (PathBuf, PathBuf) {
    let dir = folder(state);
    (
        dir.join(format!("{upload}.part")),
        dir.join(format!("{upload}.json")),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_resumable(headers: &HeaderMap) -> Result<(), TusError> {
    match header_str(headers, "tus-resumable") {
        Some(TUS_VERSION) => Ok(()),
        Some(other) => Err(TusError(
            StatusCode::PRECONDITION_FAILED,
            format!("tus version {other:?} is not supported; this server speaks {TUS_VERSION}"),
        )),
        None => Err(TusError(
            StatusCode::PRECONDITION_FAILED,
            format!("the Tus-Resumable header is missing (this server speaks {TUS_VERSION})"),
        )),
    }
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent).
fn parse_metadata(value: &str) -> Result<HashMap<String, String>, TusError> {
    let bad = |why: String| TusError(StatusCode::BAD_REQUEST, format!("Upload-Metadata: {why}"));
    let mut pairs = HashMap::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, encoded) = item.split_once(' ').unwrap_or((item, ""));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| bad(format!("the value of {key:?} is not base64")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| bad(format!("the value of {key:?} is not UTF-8")))?;
        pairs.insert(key.to_owned(), text);
    }
    Ok(pairs)
}

/// An HTTP date (RFC 9110), as `Upload-Expires` wants it.
fn http_date(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn expires_at(state: &SharedState, modified: SystemTime) -> SystemTime {
    modified + state.config.partial_upload_expiry
}

async fn read_info(json: &Path) -> Result<Option<Info>, TusError> {
    match tokio::fs::read(json).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            TusError::from(WebError::Internal(format!(
                "a partial upload's record: {e}"
            )))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(internal("reading a partial upload")(e)),
    }
}

async fn remove(state: &SharedState, upload: &str) {
    let (part, json) = paths(state, upload);
    for path in [json, part] {
        if let Err(e) = tokio::fs::remove_file(&path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a partial upload");
        }
    }
}

/// A live partial upload: what it is, its offset and when it expires.
struct Partial {
    info: Info,
    offset: u64,
    expires: SystemTime,
}

/// The partial `upload`, or 404 (unknown) / 410 (expired, and then removed).
async fn open(state: &SharedState, upload: &str) -> Result<Partial, TusError> {
    let (part, json) = paths(state, upload);
    let gone = || TusError(StatusCode::NOT_FOUND, format!("no upload {upload:?}"));
    let info = read_info(&json).await?.ok_or_else(gone)?;
    let meta = match tokio::fs::metadata(&part).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone()),
        Err(e) => return Err(internal("reading a partial upload")(e)),
    };
    let expires = expires_at(state, meta.modified().unwrap_or_else(|_| SystemTime::now()));
    if expires <= SystemTime::now() {
        remove(state, upload).await;
        return Err(TusError(
            StatusCode::GONE,
            format!("upload {upload:?} expired"),
        ));
    }
    Ok(Partial {
        info,
        offset: meta.len(),
        expires,
    })
}

/// Removes expired partials; returns the declared bytes of those that remain.
async fn sweep(state: &SharedState) -> Result<u64, TusError> {
    let dir = folder(state);
    let mut entries = match tokio::fs::read_dir(&dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(internal("listing partial uploads")(e)),
    };
    let mut reserved = 0u64;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(internal("listing partial uploads"))?
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(upload) = name.strip_suffix(".json") else {
            continue;
        };
        // Skipped if another request holds it: it is in use, not expired.
        let lock = state.tus.lock_for(upload);
        let Ok(_guard) = lock.try_lock() else {
            if let Ok(Some(info)) = read_info(&entry.path()).await {
                reserved += info.length;
            }
            continue;
        };
        match open(state, upload).await {
            Ok(partial) => reserved += partial.info.length,
            Err(TusError(StatusCode::GONE, _)) => {
                tracing::info!(upload, "removed an expired partial upload");
            }
            Err(TusError(status, why)) => {
                tracing::warn!(upload, %status, why, "an unreadable partial upload");
            }
        }
    }
    Ok(reserved)
}

/// `OPTIONS`: what this server supports.
async fn capabilities(State(state): State<SharedState>) -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            ("tus-version", TUS_VERSION.to_string()),
            ("tus-extension", EXTENSIONS.to_string()),
            ("tus-max-size", state.config.max_upload_bytes.to_string()),
        ],
    )
        .into_response()
}

/// `POST`: creates an upload of `Upload-Length` bytes for the file named in
/// `Upload-Metadata`; the id rules and refusals of a form upload apply at once.
async fn create(State(state): State<SharedState>, headers: HeaderMap) -> TusResult {
    check_resumable(&headers)?;
    let bad = |why: &str| TusError(StatusCode::BAD_REQUEST, why.to_owned());
    if headers.contains_key("upload-defer-length") {
        return Err(bad(
            "Upload-Defer-Length is not supported: send Upload-Length",
        ));
    }
    let length: u64 = header_str(&headers, "upload-length")
        .ok_or_else(|| bad("Upload-Length is missing"))?
        .trim()
        .parse()
        .map_err(|_| bad("Upload-Length is not a number of bytes"))?;
    if length == 0 {
        return Err(bad("the uploaded file is empty"));
    }
    let limit = state.config.max_upload_bytes;
    if length > limit {
        return Err(TusError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload is larger than the limit of {limit} bytes"),
        ));
    }
    let metadata = parse_metadata(header_str(&headers, "upload-metadata").unwrap_or(""))?;
    let filename = metadata
        .get("filename")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("Upload-Metadata has no filename"))?;
    let video_id = video_id_for(filename)?;
    if state
        .meta
        .get_video(&video_id)
        .await
        .map_err(WebError::from)?
        .value
        .is_some()
    {
        return Err(
            WebError::Conflict(format!("a video named {video_id:?} already exists")).into(),
        );
    }
    let reserved = sweep(&state).await?;
    let bound = state.config.partial_upload_bytes;
    if reserved.saturating_add(length) > bound {
        return Err(TusError(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "unfinished uploads already hold {reserved} of the {bound} bytes set aside for them; try again later"
            ),
        ));
    }
    let upload = uuid::Uuid::new_v4().simple().to_string();
    let dir = folder(&state);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(internal("making the partial uploads' folder"))?;
    let (part, json) = paths(&state, &upload);
    let info = Info {
        video_id: video_id.clone(),
        filename: filename.clone(),
        length,
    };
    tokio::fs::File::create(&part)
        .await
        .map_err(internal("creating a partial upload"))?;
    // The record is written whole under a temporary name first, so a crash never leaves
    // a half record.
    let temporary = dir.join(format!("{upload}.json.tmp"));
    let record = serde_json::to_vec(&info).expect("a partial upload's record serializes");
    tokio::fs::write(&temporary, record)
        .await
        .map_err(internal("recording a partial upload"))?;
    tokio::fs::rename(&temporary, &json)
        .await
        .map_err(internal("recording a partial upload"))?;
    state.uploads.start(&video_id);
    tracing::info!(%upload, id = %video_id, length, "resumable upload created");
    let expires = http_date(expires_at(&state, SystemTime::now()));
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/api/tus/{upload}")),
            (header::HeaderName::from_static("upload-expires"), expires),
        ],
    )
        .into_response())
}

fn offset_headers(partial: &Partial) -> [(&'static str, String); 4] {
    [
        ("upload-offset", partial.offset.to_string()),
        ("upload-length", partial.info.length.to_string()),
        ("upload-expires", http_date(partial.expires)),
        ("cache-control", "no-store".to_string()),
    ]
}

/// `HEAD`: how many bytes the server has.
async fn offset(
    State(state): State<SharedState>,
    UrlPath(upload): UrlPath<String>,
    headers: HeaderMap,
) -> TusResult {
    check_resumable(&headers)?;
    let upload = parse_upload(&upload)?;
    let lock = state.tus.lock_for(&upload);
    let _guard = lock.lock().await;
    let partial = open(&state, &upload).await?;
    Ok((StatusCode::OK, offset_headers(&partial)).into_response())
}

/// `DELETE`: gives the upload up.
async fn terminate(
    State(state): State<SharedState>,
    UrlPath(upload): UrlPath<String>,
    headers: HeaderMap,
) -> TusResult {
    check_resumable(&headers)?;
    let upload = parse_upload(&upload)?;
    let lock = state.tus.lock_for(&upload);
    let guard = lock.lock().await;
    let partial = open(&state, &upload).await?;
    remove(&state, &upload).await;
    drop(guard);
    state.tus.forget(&upload);
    state.uploads.forget(&partial.info.video_id);
    tracing::info!(%upload, "resumable upload terminated");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PATCH`: appends the body at `Upload-Offset`, which must be the server's offset. The
/// work runs in a task of its own holding the upload's lock, so bytes that arrived before
/// a client went away are on disk before anyone asks for the offset again.
async fn append(
    State(state): State<SharedState>,
    UrlPath(upload): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> TusResult {
    check_resumable(&headers)?;
    let content_type = header_str(&headers, "content-type").unwrap_or("");
    if content_type != OFFSET_CONTENT_TYPE {
        return Err(TusError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("a PATCH must be sent as {OFFSET_CONTENT_TYPE}"),
        ));
    }
    let claimed: u64 = header_str(&headers, "upload-offset")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            TusError(
                StatusCode::BAD_REQUEST,
                "Upload-Offset is missing or not a number".into(),
            )
        })?;
    let upload = parse_upload(&upload)?;
    let lock = state.tus.lock_for(&upload);
    let task = tokio::spawn(async move {
        let _guard = lock.lock_owned().await;
        write_at(&state, &upload, claimed, body).await
    });
    task.await
        .map_err(|e| TusError::from(WebError::Internal(format!("the upload task: {e}"))))?
}

async fn write_at(state: &SharedState, upload: &str, claimed: u64, body: Body) -> TusResult {
    let mut partial = open(state, upload).await?;
    if claimed != partial.offset {
        return Err(TusError(
            StatusCode::CONFLICT,
            format!(
                "Upload-Offset {claimed} is not the server's offset {}",
                partial.offset
            ),
        ));
    }
    let (part, json) = paths(state, upload);
    let mut file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(&part)
        .await
        .map_err(internal("opening a partial upload"))?;
    let length = partial.info.length;
    let id = partial.info.video_id.clone();
    let idle = state.config.upload_idle_timeout;
    let mut stream = body.into_data_stream();
    let mut refusal = None;
    loop {
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(None) => break,
            // The client went away or stalled: keep what arrived; it resumes from there.
            Ok(Some(Err(_))) | Err(_) => break,
        };
        if partial.offset + chunk.len() as u64 > length {
            refusal = Some(TusError(
                StatusCode::BAD_REQUEST,
                format!("the body goes past Upload-Length {length}"),
            ));
            break;
        }
        file.write_all(&chunk)
            .await
            .map_err(internal("writing a partial upload"))?;
        partial.offset += chunk.len() as u64;
        state
            .uploads
            .update(&id, |s| s.received_bytes = partial.offset);
    }
    file.flush()
        .await
        .map_err(internal("writing a partial upload"))?;
    drop(file);
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    if partial.offset == length {
        // Whole: from here on it is a received upload like any other.
        if let Err(e) = process_file(state.clone(), id.clone(), &part, length).await {
            remove(state, upload).await;
            state.tus.forget(upload);
            return Err(e.into());
        }
        if let Err(e) = tokio::fs::remove_file(&json).await {
            tracing::warn!(%upload, error = %e, "cannot remove a finished upload's record");
        }
        state.tus.forget(upload);
        tracing::info!(%upload, %id, length, "resumable upload complete");
    }
    let expires = expires_at(state, SystemTime::now());
    partial.expires = expires;
    Ok((StatusCode::NO_CONTENT, offset_headers(&partial)).into_response())
}

/// Default time a partial upload is kept after its last byte.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_pairs_decode() {
        let parsed =
            parse_metadata("filename bXkgY2xpcC5tcDQ=,filetype dmlkZW8vbXA0, flag").unwrap();
        assert_eq!(parsed["filename"], "my clip.mp4");
        assert_eq!(parsed["filetype"], "video/mp4");
        assert_eq!(parsed["flag"], "");
        assert!(parse_metadata("filename not*base64").is_err());
        assert!(parse_metadata("").unwrap().is_empty());
    }

    #[test]
    fn upload_names_are_simple_uuids() {
        let name = uuid::Uuid::new_v4().simple().to_string();
        assert_eq!(parse_upload(&name).unwrap(), name);
        for bad in [
            "../etc",
            "",
            "x",
            &name.to_uppercase(),
            &format!("{name}.json"),
        ] {
            assert!(parse_upload(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_dates() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(at), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
