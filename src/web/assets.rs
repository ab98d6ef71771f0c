//! The pages' own script and style sheet, built into the binary (no CDN, no build step).
//! Pages link them with a query naming their content hash, so they can be cached for a
//! long time and a new binary's files are fetched at once.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use sha2::{Digest, Sha256};

static APP_JS: &str = include_str!("../../assets/app.js");
static APP_CSS: &str = include_str!("../../assets/app.css");
static TUS_JS: &str = include_str!("../../assets/tus/tus.min.js");
static FAVICON_ICO: &[u8] = include_bytes!("../../assets/favicon.ico");
static FAVICON_SVG: &str = include_str!("../../assets/favicon.svg");

static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    hash.update(APP_JS);
    hash.update(APP_CSS);
    hex::encode(&hash.finalize()[..6])
});

/// A short hash of the script and style sheet, for their URLs.
pub fn version() -> &'static str {
    &VERSION
}

const LONG_CACHE: &str = "public, max-age=31536000, immutable";

pub async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, LONG_CACHE),
        ],
        APP_JS,
    )
}

pub async fn app_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, LONG_CACHE),
        ],
        APP_CSS,
    )
}

/// `/favicon.ico`, which browsers ask for whatever the page links.
pub async fn favicon_ico() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/x-icon"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON_ICO,
    )
}

/// The icon the pages link, sharp at every size.
pub async fn favicon_svg() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON_SVG,
    )
}

/// tus-js-client, vendored like dash.js (assets/tus/README.md).
pub async fn tus_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        TUS_JS,
    )
}
