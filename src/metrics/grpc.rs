//! A tower wrapper around a gRPC service — a client channel or a server's router — that
//! reports every call once: its path, its outcome and how long it took until its last
//! byte (for a streaming reply, the whole transfer).
//!
//! The outcome is the `grpc-status` the reply carries: in its headers for a reply that is
//! only an error, otherwise in its trailers. A reply whose body is dropped before its end
//! (the reader stopped, or the client went away) is [`Outcome::Abandoned`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::{Layer, Service};

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The gRPC status of the reply.
    Status(Code),
    /// The transport failed, or the reply was not gRPC (no status, HTTP error).
    Transport,
    /// The reply was dropped before its end.
    Abandoned,
}

impl Outcome {
    /// The label value: the status code's name in snake case, `transport_error` or
    /// `abandoned`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Status(code) => match code {
                Code::Ok => "ok",
                Code::Cancelled => "cancelled",
                Code::Unknown => "unknown",
                Code::InvalidArgument => "invalid_argument",
                Code::DeadlineExceeded => "deadline_exceeded",
                Code::NotFound => "not_found",
                Code::AlreadyExists => "already_exists",
                Code::PermissionDenied => "permission_denied",
                Code::ResourceExhausted => "resource_exhausted",
                Code::FailedPrecondition => "failed_precondition",
                Code::Aborted => "aborted",
                Code::OutOfRange => "out_of_range",
                Code::Unimplemented => "unimplemented",
                Code::Internal => "internal",
                Code::Unavailable => "unavailable",
                Code::DataLoss => "data_loss",
                Code::Unauthenticated => "unauthenticated",
            },
            Outcome::Transport => "transport_error",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// The method name of a gRPC path (`/storage.StorageService/GetFile` → `GetFile`).
pub fn method_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Told about every call that ends.
pub trait CallObserver: Clone + Send + Sync + 'static {
    fn finished(&self, path: &str, outcome: Outcome, elapsed: Duration);
}

/// Wraps services in [`Metered`].
#[derive(Clone, Debug)]
pub struct MeterLayer<O> {
    observer: O,
}

impl<O> MeterLayer<O> {
    pub fn new(observer: O) -> Self {
        MeterLayer { observer }
    }
}

impl<S, O: Clone> Layer<S> for MeterLayer<O> {
    type Service = Metered<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        Metered::new(inner, self.observer.clone())
    }
}

#[derive(Clone, Debug)]
pub struct Metered<S, O> {
    inner: S,
    observer: O,
}

impl<S, O> Metered<S, O> {
    pub fn new(inner: S, observer: O) -> Self {
        Metered { inner, observer }
    }
}

/// One call in flight; reports itself exactly once, as abandoned if dropped unreported.
struct CallRecord<O: CallObserver> {
    path: http::uri::PathAndQuery,
    started: Instant,
    observer: O,
    reported: bool,
}

impl<O: CallObserver> CallRecord<O> {
    fn finish(mut self, outcome: Outcome) {
        self.report(outcome);
    }

    fn report(&mut self, outcome: Outcome) {
        if !self.reported {
            self.reported = true;
            self.observer
                .finished(self.path.path(), outcome, self.started.elapsed());
        }
    }
}

impl<O: CallObserver> Drop for CallRecord<O> {
    fn drop(&mut self) {
        self.report(Outcome::Abandoned);
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.trim().parse::<i32>().ok().map(Code::from_i32)
}

impl<S, O, ReqBody, ResBody> Service<http::Request<ReqBody>> for Metered<S, O>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    O: CallObserver,
{
    type Response = http::Response<MeteredBody<ResBody, O>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future, O>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let record = CallRecord {
            path,
            started: Instant::now(),
            observer: self.observer.clone(),
            reported: false,
        };
        MeteredFuture {
            inner: self.inner.call(request),
            record: Some(record),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct MeteredFuture<F, O: CallObserver> {
        #[pin]
        inner: F,
        record: Option<CallRecord<O>>,
    }
}

impl<F, O, ResBody, E> Future for MeteredFuture<F, O>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    O: CallObserver,
{
    type Output = Result<http::Response<MeteredBody<ResBody, O>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let record = this.record.take();
        Poll::Ready(match result {
            Ok(response) => {
                let pending = match record {
                    Some(record) if response.status() != http::StatusCode::OK => {
                        record.finish(Outcome::Transport);
                        None
                    }
                    // A reply that is only an error carries its status in the headers.
                    Some(record) => match grpc_status(response.headers()) {
                        Some(code) => {
                            record.finish(Outcome::Status(code));
                            None
                        }
                        None => Some(record),
                    },
                    None => None,
                };
                Ok(response.map(|inner| MeteredBody {
                    inner,
                    record: pending,
                }))
            }
            Err(e) => {
                if let Some(record) = record {
                    record.finish(Outcome::Transport);
                }
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A reply body that reports its call when its trailers pass (or it ends or fails).
    pub struct MeteredBody<B, O: CallObserver> {
        #[pin]
        inner: B,
        record: Option<CallRecord<O>>,
    }
}

impl<B, O> Body for MeteredBody<B, O>
where
    B: Body,
    O: CallObserver,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(record) = this.record.take() {
                        let outcome =
                            grpc_status(trailers).map_or(Outcome::Transport, Outcome::Status);
                        record.finish(outcome);
                    }
                }
            }
            Some(Err(_)) | None => {
                if let Some(record) = this.record.take() {
                    record.finish(Outcome::Transport);
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_and_labels() {
        assert_eq!(method_name("/storage.StorageService/GetFile"), "GetFile");
        assert_eq!(Outcome::Status(Code::Ok).label(), "ok");
        assert_eq!(Outcome::Status(Code::DataLoss).label(), "data_loss");
        assert_eq!(Outcome::Abandoned.label(), "abandoned");
    }
}
