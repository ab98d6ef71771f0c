//! The HTTP surface: routes, shared state, and how errors become responses.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

use super::progress::Uploads;
use super::serve::{ContentCache, VersionCache, serve_content, serve_versioned_content};
use super::upload::upload;
use super::{WebConfig, api, assets, captions, hardening, pages};
use crate::library::content::{Content, ContentError};
use crate::meta::{MetaError, MetaStore};
use crate::node::keys::{self, KeyError};
use crate::web::metrics::WebMetrics;
use crate::web::metrics::upload::UploadOutcome;

pub struct AppState {
    pub meta: MetaStore,
    pub content: Content,
    pub cache: ContentCache,
    /// Each id's current content version, briefly remembered.
    pub versions: VersionCache,
    /// The uploads this node is processing, for the page's progress display.
    pub uploads: Uploads,
    /// Locks of the resumable uploads in use.
    pub tus: super::tus::Partials,
    /// The admin token, when set: deleting a video requires it.
    pub admin_token: Option<String>,
    /// Who may delete: the operator's credential (see [`crate::trust::credential`]).
    pub credential: Arc<crate::trust::credential::AdminCredential>,
    pub config: WebConfig,
    pub metrics: Arc<WebMetrics>,
    /// Uploads in progress per client address.
    pub upload_slots: hardening::UploadSlots,
    /// The web node's background workers (upload processing among them).
    pub runner: Arc<crate::background::Runner>,
}

pub type SharedState = Arc<AppState>;

static DASH_JS: &[u8] = include_bytes!("../../assets/dashjs/dash.all.min.js");

pub fn router(state: SharedState) -> Router {
    let upload_limit = axum::middleware::from_fn_with_state(
        state.upload_slots.clone(),
        hardening::limit_uploads_per_client,
    );
    let routes = Router::new()
        .route("/", get(index))
        .route(
            "/upload",
            // The upload handler enforces its own limit while streaming to disk.
            post(upload)
                .layer(DefaultBodyLimit::disable())
                .layer(upload_limit),
        )
        .route("/videos/{id}", get(player))
        .route("/content/{id}/{file}", get(serve_content))
        .route(
            "/content/{id}/{version}/{file}",
            get(serve_versioned_content),
        )
        .route("/api/videos", get(api::list_videos))
        .route(
            "/api/videos/{id}",
            get(api::get_video).delete(api::delete_video),
        )
        .route(
            "/api/videos/{id}/captions/{lang}",
            axum::routing::put(captions::put_caption).delete(captions::delete_caption),
        )
        .route("/api/uploads/{id}", get(api::upload_status))
        .route("/static/dash.all.min.js", get(dash_js))
        .route("/static/app.js", get(assets::app_js))
        .route("/static/app.css", get(assets::app_css))
        .route("/static/favicon.svg", get(assets::favicon_svg))
        .route("/favicon.ico", get(assets::favicon_ico))
        .route("/static/tus.min.js", get(assets::tus_js))
        .merge(super::tus::router())
        .route("/healthz", get(healthz))
        .route("/metrics", get(crate::web::metrics::scrape));
    hardening::with_security_headers(routes, state.config.viewer_tls.is_some())
        .layer(state.metrics.http.layer())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Everything a handler can fail with; the response never shows internals.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl WebError {
    /// The upload outcome this error ends an upload with.
    pub fn upload_outcome(&self) -> UploadOutcome {
        match self {
            WebError::BadRequest(_) => UploadOutcome::BadRequest,
            WebError::Unauthorized(_) => UploadOutcome::Unauthorized,
            WebError::NotFound(_) => UploadOutcome::NotFound,
            WebError::Conflict(_) => UploadOutcome::Conflict,
            WebError::TooLarge(_) => UploadOutcome::TooLarge,
            WebError::Timeout(_) => UploadOutcome::Timeout,
            WebError::Unavailable(_) => UploadOutcome::Unavailable,
            WebError::Internal(_) => UploadOutcome::Failed,
        }
    }
}

/// How a finished upload's result is counted.
pub fn upload_outcome<T>(result: &Result<T, WebError>) -> UploadOutcome {
    result
        .as_ref()
        .err()
        .map_or(UploadOutcome::Stored, WebError::upload_outcome)
}

impl From<KeyError> for WebError {
    fn from(e: KeyError) -> Self {
        WebError::BadRequest(e.to_string())
    }
}

impl From<MetaError> for WebError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::AlreadyExists(id) => {
                WebError::Conflict(format!("a video named {id:?} already exists"))
            }
            MetaError::NotFound(id) => WebError::NotFound(format!("no video named {id:?}")),
            MetaError::Unavailable(why) => {
                WebError::Unavailable(format!("the metadata store is unavailable: {why}"))
            }
            MetaError::Internal(why) => WebError::Internal(why),
        }
    }
}

impl From<ContentError> for WebError {
    fn from(e: ContentError) -> Self {
        WebError::Unavailable(format!("storage is unavailable: {e}"))
    }
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The status, logged as it deserves; internals are logged, never sent.
    pub fn logged_status(&self) -> StatusCode {
        let status = self.status();
        if let WebError::Internal(detail) = self {
            tracing::error!(%detail, "request failed");
        } else if status.is_server_error() {
            tracing::warn!(error = %self, "request refused");
        }
        status
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.logged_status();
        let mut response = (status, format!("{self}\n")).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        challenge_if_unauthorized(&mut response);
        response
    }
}

/// What a 401 asks for (RFC 9110 §11.6.1): the admin or upload token as a bearer token
/// (RFC 6750), the one credential an HTTP client can show here.
pub const AUTH_CHALLENGE: &str = "Bearer realm=\"tritontube\"";

/// Adds the `WWW-Authenticate` challenge every 401 must carry.
pub fn challenge_if_unauthorized(response: &mut Response) {
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(AUTH_CHALLENGE),
        );
    }
}

/// Videos on one page of the index.
pub const INDEX_PAGE_SIZE: usize = 24;

#[derive(serde::Deserialize)]
struct IndexQuery {
    after: Option<String>,
}

async fn index(
    State(state): State<SharedState>,
    axum::extract::Query(query): axum::extract::Query<IndexQuery>,
) -> Result<Html<String>, WebError> {
    let after = api::parse_cursor(query.after.as_deref())?;
    let listing = state
        .meta
        .list_videos_page(INDEX_PAGE_SIZE, after.as_ref())
        .await?;
    Ok(Html(pages::index(
        &listing.value,
        after.is_some(),
        listing.stale,
        state.admin_token.is_some(),
    )))
}

async fn player(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    keys::validate_video_id(&id)
        .map_err(|_| WebError::NotFound(format!("no video named {id:?}")))?;
    match state.meta.get_video(&id).await?.value {
        Some(video) => Ok(Html(pages::player(&video, state.admin_token.is_some()))),
        None => Err(WebError::NotFound(format!("no video named {id:?}"))),
    }
}

async fn dash_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        DASH_JS,
    )
}

/// Up when the metadata store answers; a lookup of an id that cannot exist is the
/// cheapest question that goes all the way to it.
async fn healthz(State(state): State<SharedState>) -> impl IntoResponse {
    match state.meta.get_video(".healthz").await {
        Ok(read) if !read.stale => (StatusCode::OK, "ok\n".to_string()),
        Ok(_) => (
            StatusCode::OK,
            "degraded: metadata reads may be stale\n".to_string(),
        ),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}
