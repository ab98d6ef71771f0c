//! The JSON API, for scripts and for the pages' own script:
//! `GET /api/videos?limit=&after=`, `GET|DELETE /api/videos/{id}` and
//! `GET /api/uploads/{id}`. Errors are `{"error": "…"}` with the matching status.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::pages::encode_segment;
use super::progress::{Phase, UploadStatus};
use super::routes::{SharedState, WebError};
use super::serve::forget_video;
use crate::library::videos::{self, DeleteError, content_version};
use crate::meta::{Cursor, Rendition, Video, VideoStatus};
use crate::node::keys;
use crate::trust::credential::{Refusal, TOKEN_HEADER};

/// Videos per page when the client names no limit, and the most it may ask for.
pub const DEFAULT_LIMIT: usize = 24;
pub const MAX_LIMIT: usize = 200;

/// A [`WebError`] answered as JSON.
pub struct ApiError(pub WebError);

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.logged_status();
        let error = self.0.to_string();
        let mut response = (status, Json(ErrorBody { error })).into_response();
        super::routes::challenge_if_unauthorized(&mut response);
        response
    }
}

/// Whether the client asked for JSON (the pages' script does; a plain form does not).
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A video as the API shows it.
#[derive(Serialize)]
pub struct VideoJson {
    pub id: String,
    pub state: VideoStatus,
    pub uploaded_at: DateTime<Utc>,
    pub duration_seconds: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub renditions: Vec<Rendition>,
    /// Bytes stored (every DASH file and the poster, one copy each).
    pub bytes: Option<u64>,
    pub source_bytes: Option<u64>,
    pub files: Option<u64>,
    pub player_url: String,
    pub manifest_url: String,
    pub poster_url: Option<String>,
    /// Seek-bar previews: WebVTT cues with `#xywh=` tiles in JPEG sprite sheets.
    pub storyboard_url: Option<String>,
    /// The caption tracks, each a WebVTT file.
    pub captions: Vec<super::captions::CaptionJson>,
    /// How the upload is going, while this node processes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadStatus>,
}

impl VideoJson {
    pub fn new(video: &Video, upload: Option<UploadStatus>) -> VideoJson {
        let id = encode_segment(&video.id);
        let base = format!("/content/{id}/{}", content_version(video));
        let details = video.details.as_ref();
        let known = |v: u32| (v > 0).then_some(v);
        VideoJson {
            id: video.id.clone(),
            state: video.status,
            uploaded_at: video.uploaded_at,
            duration_seconds: details.map(|d| d.duration_seconds),
            width: details.and_then(|d| known(d.width)),
            height: details.and_then(|d| known(d.height)),
            renditions: details.map(|d| d.renditions.clone()).unwrap_or_default(),
            bytes: details.map(|d| d.stored_bytes),
            source_bytes: details.map(|d| d.source_bytes),
            files: details.map(|d| d.file_count),
            player_url: format!("/videos/{id}"),
            manifest_url: format!("{base}/manifest.mpd"),
            poster_url: details
                .filter(|d| d.poster)
                .map(|_| format!("{base}/poster.jpg")),
            storyboard_url: details
                .filter(|d| d.storyboard)
                .map(|_| format!("{base}/{}", super::storyboard::STORYBOARD)),
            captions: super::captions::captions_json(video),
            upload,
        }
    }
}

#[derive(Serialize)]
pub struct VideoPage {
    pub videos: Vec<VideoJson>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
    /// The metadata store answered without quorum: the list may be out of date.
    pub stale: bool,
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// The `after` of a listing: absent, or a cursor from an earlier page.
pub fn parse_cursor(after: Option<&str>) -> Result<Option<Cursor>, WebError> {
    videos::parse_cursor(after).map_err(|e| WebError::BadRequest(e.to_string()))
}

fn parse_limit(limit: Option<&str>) -> Result<usize, WebError> {
    match limit.filter(|l| !l.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(WebError::BadRequest(format!(
                "limit={text:?} must be a number from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

pub async fn list_videos(
    State(state): State<SharedState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<VideoPage>, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let after = parse_cursor(query.after.as_deref())?;
    let listing = state.meta.list_videos_page(limit, after.as_ref()).await?;
    let videos = listing
        .value
        .videos
        .iter()
        .map(|v| VideoJson::new(v, tracked(&state, v)))
        .collect();
    Ok(Json(VideoPage {
        videos,
        next: listing.value.next.map(|c| c.encode()),
        stale: listing.stale,
    }))
}

/// This node's progress of `video`'s upload, while it is processed.
fn tracked(state: &SharedState, video: &Video) -> Option<UploadStatus> {
    video
        .status
        .in_upload()
        .then(|| state.uploads.get(&video.id))
        .flatten()
}

fn not_found(id: &str) -> WebError {
    WebError::NotFound(format!("no video named {id:?}"))
}

async fn find(state: &SharedState, id: &str) -> Result<Video, WebError> {
    keys::validate_video_id(id).map_err(|_| not_found(id))?;
    state
        .meta
        .get_video(id)
        .await?
        .value
        .ok_or_else(|| not_found(id))
}

pub async fn get_video(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<VideoJson>, ApiError> {
    let video = find(&state, &id).await?;
    let upload = tracked(&state, &video);
    Ok(Json(VideoJson::new(&video, upload)))
}

/// The token a request carries: `Authorization: Bearer …` or `X-Tritontube-Token`.
pub fn given_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| {
        headers
            .get(crate::trust::credential::TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
    })
}

/// With `--upload-token`, an upload needs that token (or the operator's credential).
pub fn check_upload_token(state: &SharedState, headers: &HeaderMap) -> Result<(), WebError> {
    let Some(expected) = &state.config.upload_token else {
        return Ok(());
    };
    let given = given_token(headers);
    if given.is_some_and(|given| crate::trust::credential::same_token(given.trim(), expected))
        || state.credential.token_is_set() && state.credential.check(given, None).is_ok()
    {
        return Ok(());
    }
    Err(WebError::Unauthorized(
        "uploading needs the upload token (Authorization: Bearer TOKEN)".into(),
    ))
}

/// Deleting needs the operator's credential; the viewers' listener takes no client
/// certificate (plain HTTP, or HTTPS for browsers), so only the token can be shown on it,
/// and a refusal names only the token.
pub(super) fn check_token(state: &SharedState, headers: &HeaderMap) -> Result<(), WebError> {
    state
        .credential
        .check(given_token(headers), None)
        .map_err(|refusal| {
            WebError::Unauthorized(http_refusal(&refusal, state.credential.token_is_set()))
        })
}

/// A refusal worded for an HTTP client: what to send, or that nothing can be sent.
fn http_refusal(refusal: &Refusal, token_is_set: bool) -> String {
    match refusal {
        Refusal::WrongToken => refusal.to_string(),
        Refusal::NoCredential if token_is_set => format!(
            "this needs the admin token: send it as `Authorization: Bearer TOKEN` (or in an \
             {TOKEN_HEADER} header)"
        ),
        Refusal::NoCredential => "this web node has no admin token (--admin-token), so it \
             takes no changes over HTTP: start it with --admin-token and send that token as \
             `Authorization: Bearer TOKEN`"
            .to_string(),
    }
}

#[derive(Serialize)]
pub struct Deleted {
    pub id: String,
    pub deleted_files: usize,
}

impl From<DeleteError> for WebError {
    fn from(e: DeleteError) -> Self {
        match e {
            DeleteError::NotFound(id) => not_found(&id),
            DeleteError::Busy(_) => WebError::Conflict(e.to_string()),
            DeleteError::Meta(m) => m.into(),
            DeleteError::Content { .. } => WebError::Unavailable(e.to_string()),
        }
    }
}

pub async fn delete_video(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Deleted>, ApiError> {
    check_token(&state, &headers)?;
    keys::validate_video_id(&id).map_err(|_| not_found(&id))?;
    let result = videos::delete_video(&state.meta, &state.content, &id).await;
    // Whatever happened, what this node remembers of the id may be out of date.
    forget_video(&state, &id).await;
    let deleted_files = result.map_err(WebError::from)?;
    state.uploads.forget(&id);
    Ok(Json(Deleted { id, deleted_files }))
}

pub async fn upload_status(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(status) = state.uploads.get(&id) {
        return Ok(Json(status).into_response());
    }
    // Not processed here: what the metadata store knows.
    let video = find(&state, &id).await?;
    let phase = match video.status {
        VideoStatus::Ready => Phase::Ready,
        VideoStatus::Processing => Phase::Processing,
        VideoStatus::Playable => Phase::Playable,
        VideoStatus::Deleting => return Err(ApiError(not_found(&id))),
    };
    let renditions = video.details.map(|d| d.renditions).unwrap_or_default();
    let body = serde_json::json!({ "id": video.id, "phase": phase, "renditions": renditions });
    Ok((StatusCode::OK, Json(body)).into_response())
}
