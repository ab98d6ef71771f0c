//! The tower layer that counts every HTTP request by method, route and status, times it
//! until its response head is ready, and counts the body bytes actually sent.
//!
//! The route is the router's matched path (`/content/{id}/{file}`), never the raw URL,
//! so the number of series stays bounded; requests no route matched are `unmatched`.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tower::{Layer, Service};

/// The route label: the matched path, or `unmatched`.
#[derive(Clone, Debug)]
struct Route(Option<MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl Hash for Route {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: Route,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimedLabels {
    method: &'static str,
    route: Route,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
}

/// Methods outside the usual set share one label value, so a client cannot create series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(crate::metrics::latency_buckets())
}

/// Totals across routes, read by the admin service's TrafficStats.
#[derive(Debug, Default)]
pub struct TrafficTotals {
    pub requests: AtomicU64,
    pub bytes_served: AtomicU64,
    pub server_errors: AtomicU64,
}

#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<TimedLabels, Histogram, fn() -> Histogram>,
    bytes: Family<RouteLabels, Counter>,
    totals: Arc<TrafficTotals>,
}

impl HttpMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            bytes: Family::default(),
            totals: Arc::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by method, route (matched path) and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time until the response head was ready, by method and route",
            metrics.duration.clone(),
        );
        registry.register(
            "http_response_bytes",
            "Response body bytes sent, by route",
            metrics.bytes.clone(),
        );
        metrics
    }

    pub fn totals(&self) -> &TrafficTotals {
        &self.totals
    }

    pub fn layer(&self) -> HttpMetricsLayer {
        HttpMetricsLayer {
            metrics: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct HttpMetricsLayer {
    metrics: HttpMetrics,
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct HttpMetricsService<S> {
    inner: S,
    metrics: HttpMetrics,
}

impl<S> Service<Request<Body>> for HttpMetricsService<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = HttpMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let route = Route(request.extensions().get::<MatchedPath>().cloned());
        let method = method_label(request.method());
        HttpMetricsFuture {
            inner: self.inner.call(request),
            started: Instant::now(),
            labels: Some((method, route)),
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct HttpMetricsFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        labels: Option<(&'static str, Route)>,
        metrics: HttpMetrics,
    }
}

impl<F, E> Future for HttpMetricsFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let response = match result {
            Ok(response) => response,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let Some((method, route)) = this.labels.take() else {
            return Poll::Ready(Ok(response));
        };
        let metrics = &*this.metrics;
        let status = response.status();
        metrics
            .duration
            .get_or_create(&TimedLabels {
                method,
                route: route.clone(),
            })
            .observe(this.started.elapsed().as_secs_f64());
        metrics.totals.requests.fetch_add(1, Ordering::Relaxed);
        if status.is_server_error() {
            metrics.totals.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        let bytes = metrics.bytes.get_or_create_owned(&RouteLabels {
            route: route.clone(),
        });
        metrics
            .requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status: status.as_u16(),
            })
            .inc();
        let totals = Arc::clone(&metrics.totals);
        Poll::Ready(Ok(response.map(|inner| {
            Body::new(CountingBody {
                inner,
                bytes,
                totals,
            })
        })))
    }
}

pin_project_lite::pin_project! {
    /// Counts the bytes of a response body as they are sent.
    struct CountingBody {
        #[pin]
        inner: Body,
        bytes: Counter,
        totals: Arc<TrafficTotals>,
    }
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
            let n = data.len() as u64;
            this.bytes.inc_by(n);
            this.totals.bytes_served.fetch_add(n, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
