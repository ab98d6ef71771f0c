//! Browser hardening on every response, and a bound on the uploads one client address may
//! have in progress at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::set_header::SetResponseHeaderLayer;

/// Only the page's own scripts, styles and media; dash.js feeds the video element through
/// Media Source blob: URLs. No plugins, no framing by other sites.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Uploads one client address may have in progress at once.
pub const DEFAULT_UPLOADS_PER_CLIENT: usize = 4;

/// A year, as browsers' preload lists ask.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000; includeSubDomains";

/// Adds the security headers to every response of `router` (a handler's own value wins),
/// and HSTS when the viewers' listener is HTTPS.
pub fn with_security_headers<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    https: bool,
) -> Router<S> {
    let headers: [(HeaderName, &'static str); 4] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    let mut router = router.layer(axum::middleware::from_fn(move |request, next| {
        opener_policy(https, request, next)
    }));
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if https {
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        ));
    }
    router
}

/// `Cross-Origin-Opener-Policy: same-origin`, where browsers obey it: an origin they
/// trust (this listener's HTTPS, a TLS-terminating proxy that says so, or loopback). On a
/// plain-HTTP host address Chromium ignores it and logs an error on every page.
async fn opener_policy(https: bool, request: Request, next: Next) -> Response {
    let trusted = https || trusted_origin(request.headers());
    let mut response = next.run(request).await;
    if trusted {
        response
            .headers_mut()
            .entry(HeaderName::from_static("cross-origin-opener-policy"))
            .or_insert(HeaderValue::from_static("same-origin"));
    }
    response
}

fn trusted_origin(headers: &axum::http::HeaderMap) -> bool {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // `[::1]:8080`, `localhost:8080`, `127.0.0.1`: the host part without the port.
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    forwarded_https || loopback
}

/// Counts the uploads in progress per client address.
#[derive(Clone)]
pub struct UploadSlots {
    limit: usize,
    in_progress: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One upload's place in [`UploadSlots`], given back when dropped (the request finished,
/// failed or its client went away).
pub struct UploadSlot {
    slots: UploadSlots,
    client: IpAddr,
}

impl UploadSlots {
    pub fn new(limit: usize) -> UploadSlots {
        UploadSlots {
            limit,
            in_progress: Arc::default(),
        }
    }

    /// A slot for `client`, or `None` when it already has `limit` uploads in progress.
    pub fn try_take(&self, client: IpAddr) -> Option<UploadSlot> {
        let mut counts = self.in_progress.lock().unwrap();
        let count = counts.entry(client).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(UploadSlot {
            slots: self.clone(),
            client,
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.in_progress.lock().unwrap();
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// The slot of the upload a request carries; the upload is counted until every clone is
/// dropped.
#[derive(Clone)]
pub struct HeldUploadSlot {
    _slot: Arc<UploadSlot>,
}

/// Middleware for the upload routes: answers 429 when the client address has its limit
/// of uploads in progress; otherwise the request carries a slot until it is answered and
/// its processing is over.
pub async fn limit_uploads_per_client(
    State(slots): State<UploadSlots>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let Some(slot) = slots.try_take(peer.ip()) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "5")],
            format!(
                "too many uploads in progress from {}: at most {} at once",
                peer.ip(),
                slots.limit
            ),
        )
            .into_response();
    };
    // The upload handler keeps a clone while it processes after answering.
    let slot = HeldUploadSlot {
        _slot: Arc::new(slot),
    };
    let mut request = request;
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    drop(slot);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opener_policy_is_for_origins_browsers_trust() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = axum::http::HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            trusted_origin(&headers)
        };
        assert!(with(&[("host", "127.0.0.1:8080")]));
        assert!(with(&[("host", "localhost:8080")]));
        assert!(with(&[("host", "[::1]:8080")]));
        assert!(with(&[
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-proto", "https")
        ]));
        assert!(!with(&[("host", "10.0.0.5:8080")]));
        assert!(!with(&[("host", "video.example:8080")]));
        assert!(!with(&[]));
    }

    #[test]
    fn slots_are_bounded_per_address_and_given_back() {
        let slots = UploadSlots::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = slots.try_take(a).unwrap();
        let _second = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none());
        let _other = slots
            .try_take(b)
            .expect("another address has its own slots");
        drop(first);
        assert!(slots.try_take(a).is_some());
    }
}
