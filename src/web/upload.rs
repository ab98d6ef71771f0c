//! `POST /upload`: stream the MP4 to a temp file, check it is a video, transcode it to
//! DASH, store every file on its holders, then record the video. The id is claimed first,
//! so a taken id is refused before the body is read and two uploads of one id cannot both
//! proceed; any failure (or a client that goes away) removes the claim and every file
//! already stored.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::extract::multipart::{Field, Multipart, MultipartError};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::content::Content;
use super::routes::{SharedState, WebError};
use super::transcode::{self, TranscodeError};
use crate::meta::{MetaStore, VideoDetails};
use crate::metrics::upload::{UploadMetrics, UploadStage};
use crate::node::keys;

/// DASH files stored at once per upload.
const STORE_PARALLELISM: usize = 8;
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

/// Undoes a failed upload, including one whose request future was dropped midway.
struct Rollback {
    meta: MetaStore,
    content: Content,
    id: String,
    stored: Arc<Mutex<Vec<String>>>,
    armed: bool,
}

impl Rollback {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (meta, content, id) = (self.meta.clone(), self.content.clone(), self.id.clone());
        let stored = std::mem::take(&mut *self.stored.lock().expect("stored keys lock"));
        let cleanup = async move {
            for key in &stored {
                if let Err(e) = content.delete(key).await {
                    tracing::error!(%key, error = %e, "could not remove a file of a failed upload");
                }
            }
            if let Err(e) = meta.remove_video(&id).await {
                tracing::error!(%id, error = %e, "could not remove the claim of a failed upload");
            }
            tracing::info!(%id, files = stored.len(), "rolled back a failed upload");
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(cleanup);
            }
            Err(_) => tracing::error!(id = %self.id, "no runtime to roll back a failed upload"),
        }
    }
}

pub async fn upload(
    State(state): State<SharedState>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<Response, WebError> {
    let limit = state.config.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit.saturating_add(DRAIN_BYTES)) {
        return Err(too_large(limit));
    }
    let field = loop {
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
    let file_name = field
        .file_name()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| WebError::BadRequest("the uploaded file has no name".to_string()))?
        .to_string();
    let id = video_id_for(&file_name)?;

    state.meta.claim_video(&id, Utc::now()).await?;
    let rollback = Rollback {
        meta: state.meta.clone(),
        content: state.content.clone(),
        id: id.clone(),
        stored: Arc::default(),
        armed: true,
    };
    let work = tempfile::Builder::new()
        .prefix("upload-")
        .tempdir_in(&state.config.work_dir)
        .map_err(|e| WebError::Internal(format!("temp dir: {e}")))?;
    let source = work.path().join("source.mp4");
    let stages = &state.metrics.uploads;
    let source_bytes = stages
        .time(
            UploadStage::Receive,
            receive(field, &source, limit, state.config.upload_idle_timeout),
        )
        .await?;
    let probe = stages
        .time(UploadStage::Probe, transcode::probe(&source))
        .await?;
    let out_dir = work.path().join("dash");
    tokio::fs::create_dir(&out_dir)
        .await
        .map_err(|e| WebError::Internal(format!("temp dir: {e}")))?;
    let started = std::time::Instant::now();
    let (file_count, stored_bytes) = transcode_and_store(
        &state.content,
        &id,
        &source,
        &out_dir,
        &probe,
        &rollback.stored,
        stages,
    )
    .await?;
    tracing::info!(%id, files = file_count, elapsed = ?started.elapsed(), "transcoded and stored");
    let details = VideoDetails {
        duration_seconds: probe.duration_seconds,
        source_bytes,
        file_count,
        stored_bytes,
    };
    state.meta.finish_video(&id, &details).await?;
    rollback.disarm();
    tracing::info!(%id, elapsed = ?started.elapsed(), "upload stored");
    Ok(Redirect::to("/").into_response())
}

fn too_large(limit: u64) -> WebError {
    WebError::TooLarge(format!(
        "the upload is larger than the limit of {limit} bytes"
    ))
}

/// Streams the field to `path`, refusing it once it passes `limit` bytes.
/// An upload that sends nothing for `idle_timeout` is given up (and its claim removed), so
/// a stalled client cannot hold an id in processing for ever.
async fn receive(
    mut field: Field<'_>,
    path: &Path,
    limit: u64,
    idle_timeout: std::time::Duration,
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
            let mut drained = 0u64;
            while drained < DRAIN_BYTES {
                match field.chunk().await {
                    Ok(Some(chunk)) => drained += chunk.len() as u64,
                    _ => break,
                }
            }
            return Err(too_large(limit));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    if received == 0 {
        return Err(WebError::BadRequest(
            "the uploaded file is empty".to_string(),
        ));
    }
    Ok(received)
}

/// Runs ffmpeg and stores each DASH file under `{id}/{name}` as soon as it is finished,
/// at most [`STORE_PARALLELISM`] at once; the manifest goes last, once every segment is
/// stored, so it never points at a missing one. Returns the files and bytes stored.
async fn transcode_and_store(
    content: &Content,
    id: &str,
    source: &Path,
    out_dir: &Path,
    probe: &transcode::Probe,
    stored: &Mutex<Vec<String>>,
    stages: &UploadMetrics,
) -> Result<(u64, u64), WebError> {
    let (ready, finished) = mpsc::channel::<PathBuf>(64);
    let encode = async {
        let encoding = transcode::to_dash(source, out_dir, probe, ready);
        let result = stages.time(UploadStage::Transcode, encoding).await;
        result.map_err(WebError::from)
    };
    let store = async {
        let mut manifest = None;
        let segments = ReceiverStream::new(finished).filter_map(|path| {
            let path = if path.file_name().is_some_and(|n| n == "manifest.mpd") {
                manifest = Some(path);
                None
            } else {
                Some(path)
            };
            futures::future::ready(path)
        });
        let (count, bytes) = segments
            .map(|path| async move { store_file(content, id, &path, stored).await })
            .buffer_unordered(STORE_PARALLELISM)
            .try_fold((0u64, 0u64), |(n, sum), size| async move {
                Ok((n + 1, sum + size))
            })
            .await?;
        let manifest =
            manifest.ok_or_else(|| WebError::Internal("ffmpeg wrote no manifest".into()))?;
        let manifest_bytes = store_file(content, id, &manifest, stored).await?;
        Ok::<_, WebError>((count + 1, bytes + manifest_bytes))
    };
    let store = stages.time(UploadStage::Store, store);
    // A failed store drops the encoder (ffmpeg is killed); a failed encode ends the stream.
    let ((), stored_totals) = futures::future::try_join(encode, store).await?;
    Ok(stored_totals)
}

async fn store_file(
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
