//! `POST /upload`: stream the MP4 to a temp file, check it is a video, transcode it to
//! a DASH ladder and a poster, store every file on its holders, then record the video.
//! The id is claimed first, so a taken id is refused without storing the body and two
//! uploads of one id cannot both proceed; any failure removes the claim and every file
//! already stored. Once the body is in, the processing is a worker of the web node
//! ([`super::processing`]): the client going away does not stop it. Each phase is
//! reported to [`super::progress`] for the page.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::extract::State;
use axum::extract::multipart::{Field, Multipart, MultipartError};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use chrono::Utc;
use tokio::io::AsyncWriteExt;

use super::hardening::HeldUploadSlot;
use super::pages::encode_segment;
use super::progress::Phase;
use super::rollback::{self, Rollback};
use super::routes::{SharedState, WebError};
use super::transcode::{self, TranscodeError};
use super::{api, processing, publish};
use crate::library::content::Content;
use crate::meta::{Claim, MetaError, VideoDetails};
use crate::node::keys;
use crate::web::metrics::upload::UploadStage;

/// Bytes of an oversized upload read and thrown away before answering 413: a client that
/// is still sending when the connection closes sees a broken pipe instead of the answer.
/// Anything declared larger than the limit plus this is refused unread.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;

impl From<MultipartError> for WebError {
    fn from(e: MultipartError) -> Self {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            WebError::TooLarge(e.body_text())
        } else {
            WebError::BadRequest(format!("malformed upload: {}", e.body_text()))
        }
    }
}

impl From<TranscodeError> for WebError {
    fn from(e: TranscodeError) -> Self {
        match e {
            TranscodeError::NotAVideo(why) => WebError::BadRequest(format!("not a video: {why}")),
            other => WebError::Internal(other.to_string()),
        }
    }
}

/// The video id of an uploaded file: its name without the extension.
pub fn video_id_for(file_name: &str) -> Result<String, WebError> {
    let id = match file_name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => file_name,
    };
    keys::validate_video_id(id)
        .map_err(|e| WebError::BadRequest(format!("invalid video name {id:?}: {e}")))?;
    Ok(id.to_string())
}

/// An upload whose body is in: what is left is to probe, transcode, store and record.
pub(super) struct Received {
    pub(super) id: String,
    rollback: Rollback,
    /// Holds the source and ffmpeg's output; removed when dropped.
    work: tempfile::TempDir,
    source: PathBuf,
    pub(super) source_bytes: u64,
}

/// `POST /upload`. A plain form gets the original's answers: 303 to `/` once the video is
/// stored, or the error as text. A client asking for JSON (the index page's script) gets
/// 202 with the status URL as soon as the body is in, and follows the processing there;
/// processing then belongs to the web node, not to the request.
pub async fn upload(
    State(state): State<SharedState>,
    slot: Option<Extension<HeldUploadSlot>>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let json = api::wants_json(&headers);
    let refuse = |e: WebError| {
        if json {
            api::ApiError(e).into_response()
        } else {
            e.into_response()
        }
    };
    if let Err(e) = api::check_upload_token(&state, &headers) {
        return refuse(e);
    }
    // Counted as abandoned unless it is told how it ended: a client that goes away while
    // sending drops this future midway.
    let outcome = state.metrics.uploads.pending();
    let received = match receive_upload(&state, &headers, multipart).await {
        Ok(received) => received,
        Err(e) => {
            outcome.finish(e.upload_outcome());
            return refuse(e);
        }
    };
    let id = received.id.clone();
    // Still counted against its client while it is processed.
    let ended = processing::start(state, received, outcome, slot);
    if json {
        let status_url = format!("/api/uploads/{}", encode_segment(&id));
        let body = serde_json::json!({ "id": id, "status_url": status_url });
        return (StatusCode::ACCEPTED, Json(body)).into_response();
    }
    let result = ended.await.unwrap_or_else(|_| {
        Err(WebError::Unavailable(
            "the web node stopped while processing the upload".into(),
        ))
    });
    match result {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => refuse(e),
    }
}

/// Reads the form up to the end of the file's body: the name, the claim, the bytes.
/// A refusal made while the client is still sending (bad name, taken id, too large)
/// first reads the rest of the file, up to [`DRAIN_BYTES`], so the client gets the answer
/// instead of a broken pipe.
async fn receive_upload(
    state: &SharedState,
    headers: &HeaderMap,
    mut multipart: Multipart,
) -> Result<Received, WebError> {
    let limit = state.config.max_upload_bytes;
    let idle_timeout = state.config.upload_idle_timeout;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit.saturating_add(DRAIN_BYTES)) {
        return Err(too_large(limit));
    }
    let mut field = loop {
        match multipart.next_field().await? {
            Some(field) if field.name() == Some("file") => break field,
            Some(_) => continue,
            None => {
                return Err(WebError::BadRequest(
                    "no file in the upload (form field \"file\")".to_string(),
                ));
            }
        }
    };
    let claimed = async {
        let file_name = field
            .file_name()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| WebError::BadRequest("the uploaded file has no name".to_string()))?
            .to_string();
        let id = video_id_for(&file_name)?;
        Ok::<_, WebError>(take_id(state, &id).await?)
    }
    .await;
    let claim = match claimed {
        Ok(claim) => claim,
        Err(e) => {
            drain(&mut field, idle_timeout).await;
            return Err(e);
        }
    };
    let id = claim.id.clone();
    state.uploads.start(&id);
    state.versions.invalidate(&id).await;
    let rollback = Rollback::new(state.meta.clone(), state.content.clone(), claim);
    let failed = |e: WebError| {
        state.uploads.fail(&id, e.to_string());
        e
    };
    let work = tempfile::Builder::new()
        .prefix("upload-")
        .tempdir_in(&state.config.work_dir)
        .map_err(|e| failed(WebError::Internal(format!("temp dir: {e}"))))?;
    let source = work.path().join("source.mp4");
    let uploads = &state.uploads;
    let receiving = receive(field, &source, limit, idle_timeout, |n| {
        uploads.update(&id, |s| s.received_bytes = n)
    });
    let source_bytes = state
        .metrics
        .uploads
        .time(UploadStage::Receive, receiving)
        .await
        .map_err(failed)?;
    Ok(Received {
        id,
        rollback,
        work,
        source,
        source_bytes,
    })
}

/// A whole file that came in another way (a finished resumable upload): claims its id
/// (the same refusals as a form upload), takes the file into a work folder of its own and
/// processes it in the background exactly as a script upload whose body is in; the
/// client follows it at `/api/uploads/{id}`. On a refusal the file is left where it was.
pub(super) async fn process_file(
    state: SharedState,
    id: String,
    file: &Path,
    source_bytes: u64,
) -> Result<(), WebError> {
    let outcome = state.metrics.uploads.pending();
    let claim = match take_id(&state, &id).await {
        Ok(claim) => claim,
        Err(e) => {
            let e = WebError::from(e);
            outcome.finish(e.upload_outcome());
            return Err(e);
        }
    };
    state.uploads.start(&id);
    state
        .uploads
        .update(&id, |s| s.received_bytes = source_bytes);
    state.versions.invalidate(&id).await;
    let rollback = Rollback::new(state.meta.clone(), state.content.clone(), claim);
    let taken = async {
        let work = tempfile::Builder::new()
            .prefix("upload-")
            .tempdir_in(&state.config.work_dir)?;
        let source = work.path().join("source.mp4");
        tokio::fs::rename(file, &source).await?;
        Ok::<_, std::io::Error>((work, source))
    }
    .await;
    let (work, source) = match taken {
        Ok(taken) => taken,
        Err(e) => {
            let e = WebError::Internal(format!("taking the upload in: {e}"));
            state.uploads.fail(&id, e.to_string());
            outcome.finish(e.upload_outcome());
            return Err(e);
        }
    };
    let received = Received {
        id,
        rollback,
        work,
        source,
        source_bytes,
    };
    processing::start(state, received, outcome, ());
    Ok(())
}

/// Claims `id` for an upload. When the store cannot say whether the claim was written
/// (etcd without quorum), it is released in the background: the client is refused, so
/// the id must not stay taken if the write lands after all.
async fn take_id(state: &SharedState, id: &str) -> Result<Claim, MetaError> {
    let claim = Claim::new(id, Utc::now());
    match state.meta.claim(&claim).await {
        Ok(()) => Ok(claim),
        Err(e @ MetaError::Unavailable(_)) => {
            rollback::release_uncertain(state.meta.clone(), claim);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Reads and drops the rest of a refused file, at most [`DRAIN_BYTES`].
async fn drain(field: &mut Field<'_>, idle_timeout: std::time::Duration) {
    let mut drained = 0u64;
    while drained < DRAIN_BYTES {
        match tokio::time::timeout(idle_timeout, field.chunk()).await {
            Ok(Ok(Some(chunk))) => drained += chunk.len() as u64,
            _ => break,
        }
    }
}

/// Probes, transcodes, stores and records a received upload, reporting each phase; a
/// failure is reported with its reason and rolled back.
pub(super) async fn process(state: SharedState, received: Received) -> Result<(), WebError> {
    let id = received.id.clone();
    let result = process_inner(&state, received).await;
    match &result {
        Ok(()) => {
            state.uploads.set_phase(&id, Phase::Ready);
            state.metrics.library_changed();
        }
        Err(e) => {
            state.uploads.fail(&id, e.to_string());
            tracing::info!(%id, error = %e, "upload failed");
        }
    }
    state.versions.invalidate(&id).await;
    result
}

async fn process_inner(state: &SharedState, received: Received) -> Result<(), WebError> {
    let Received {
        id,
        rollback,
        work,
        source,
        source_bytes,
    } = received;
    state.uploads.set_phase(&id, Phase::Probing);
    let stages = &state.metrics.uploads;
    let probe = stages
        .time(UploadStage::Probe, transcode::probe(&source))
        .await?;
    let renditions = state.config.ladder.for_source(probe.width, probe.height);
    let started = std::time::Instant::now();
    state.uploads.set_phase(&id, Phase::Transcoding);
    let poster_path = work.path().join(POSTER);
    let (stored, poster) = futures::future::join(
        publish::publish_lowest(
            state,
            &id,
            &source,
            work.path(),
            &probe,
            &renditions,
            &rollback.stored,
        ),
        store_poster(state, &id, &source, &poster_path, &probe, &rollback.stored),
    )
    .await;
    let (mut file_count, mut stored_bytes, storyboard) = stored?;
    if let Some(size) = poster {
        file_count += 1;
        stored_bytes += size;
    }
    let (lowest, _) = publish::split_ladder(&renditions);
    let mut details = VideoDetails {
        duration_seconds: probe.duration_seconds,
        source_bytes,
        file_count,
        stored_bytes,
        width: probe.width,
        height: probe.height,
        renditions: lowest.to_vec(),
        poster: poster.is_some(),
        captions: Vec::new(),
        storyboard,
    };
    state.meta.publish_video(&id, &details).await?;
    state.versions.invalidate(&id).await;
    state.uploads.update(&id, |s| {
        s.phase = Phase::Playable;
        s.renditions = details.renditions.clone();
    });
    tracing::info!(%id, files = file_count, elapsed = ?started.elapsed(), "playable");
    let (files, bytes, manifest_change) = publish::add_higher(
        state,
        &id,
        &source,
        work.path(),
        &probe,
        &renditions,
        &rollback.stored,
    )
    .await?;
    details.file_count += files;
    details.stored_bytes = (details.stored_bytes + bytes).saturating_add_signed(manifest_change);
    details.renditions = renditions;
    state.meta.finish_video(&id, &details).await?;
    rollback.disarm();
    state
        .uploads
        .update(&id, |s| s.renditions = details.renditions.clone());
    tracing::info!(%id, files = details.file_count, elapsed = ?started.elapsed(), "upload stored");
    Ok(())
}

/// The poster's file name, beside the DASH files.
pub const POSTER: &str = "poster.jpg";

/// Makes and stores the poster; returns its size. A video without a poster is still a
/// video, so a failure here is logged, not fatal.
async fn store_poster(
    state: &SharedState,
    id: &str,
    source: &Path,
    path: &Path,
    probe: &transcode::Probe,
    stored: &Mutex<Vec<String>>,
) -> Option<u64> {
    if let Err(e) = transcode::poster(source, path, probe).await {
        tracing::warn!(%id, error = %e, "no poster for this video");
        return None;
    }
    match store_file(&state.content, id, path, stored).await {
        Ok(size) => Some(size),
        Err(e) => {
            tracing::warn!(%id, error = %e, "could not store the poster");
            None
        }
    }
}

fn too_large(limit: u64) -> WebError {
    WebError::TooLarge(format!(
        "the upload is larger than the limit of {limit} bytes"
    ))
}

/// Streams the field to `path`, refusing it once it passes `limit` bytes; `on_progress`
/// hears the bytes received so far.
/// An upload that sends nothing for `idle_timeout` is given up (and its claim removed), so
/// a stalled client cannot hold an id in processing for ever.
async fn receive(
    mut field: Field<'_>,
    path: &Path,
    limit: u64,
    idle_timeout: std::time::Duration,
    on_progress: impl Fn(u64),
) -> Result<u64, WebError> {
    let io = |e: std::io::Error| WebError::Internal(format!("writing the upload: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut received: u64 = 0;
    let idle = || {
        WebError::Timeout(format!(
            "the upload sent nothing for {} s",
            idle_timeout.as_secs()
        ))
    };
    while let Some(chunk) = tokio::time::timeout(idle_timeout, field.chunk())
        .await
        .map_err(|_| idle())??
    {
        received += chunk.len() as u64;
        if received > limit {
            drop(file);
            drain(&mut field, idle_timeout).await;
            return Err(too_large(limit));
        }
        file.write_all(&chunk).await.map_err(io)?;
        on_progress(received);
    }
    file.flush().await.map_err(io)?;
    if received == 0 {
        return Err(WebError::BadRequest(
            "the uploaded file is empty".to_string(),
        ));
    }
    Ok(received)
}

/// Stores one file under `{id}/{name}`; returns its size.
pub(super) async fn store_file(
    content: &Content,
    id: &str,
    path: &Path,
    stored: &Mutex<Vec<String>>,
) -> Result<u64, WebError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = keys::make_key(id, &name);
    // Recorded before the write, so a rollback also removes a half-replicated file.
    stored.lock().expect("stored keys lock").push(key.clone());
    Ok(content.put_file(&key, path).await?.size)
}
