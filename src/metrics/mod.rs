//! What every layer's metrics share, written in the Prometheus text format by the
//! Prometheus project's `prometheus-client` crate: the name prefix, the buckets, the text
//! encoding and the gRPC meter layer. Each layer owns its own metrics, as Garage's
//! `block/metrics.rs` and `table/metrics.rs` do — the web node's in `web::metrics`, the
//! storage node's in `node::metrics` (and its callers' in `node::call_metrics`), the
//! metadata store's in `meta::metrics` — and no module here imports a layer it measures.
//!
//! - [`grpc`]: a tower wrapper that times gRPC calls to their end and reads their status;
//!   both sides of the storage service use it.
//! - [`traffic`]: a web node's traffic counters as TrafficStats answers them, and rates
//!   from two readings, for the console.

pub mod grpc;
pub mod traffic;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;

/// Every metric name starts with this (the registries add the underscore).
pub const PREFIX: &str = "tritontube";

/// Histogram buckets for request and call latencies, seconds: 0.5 ms to about 33 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 17)
}

/// Histogram buckets for upload stages, seconds: 10 ms to about 45 min.
pub fn stage_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.01, 2.0, 19)
}

/// The registry in the Prometheus text format (version 0.0.4), the format every Prometheus
/// server and `promtool check metrics` read.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail; an encoder error would be a bug in a metric.
    if let Err(e) = prometheus_text::encode(&mut text, registry) {
        tracing::error!(error = %e, "could not encode the metrics");
    }
    text
}

/// An HTTP answer carrying `text` with the Prometheus content type.
pub fn scrape_response(text: String) -> Response {
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    response
}

/// Milliseconds since the Unix epoch, for replies that carry a time.
pub fn unix_ms(at: std::time::SystemTime) -> i64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
