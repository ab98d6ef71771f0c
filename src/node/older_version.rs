//! A node that answers as an older version would: the RPCs named in
//! `--answer-as-older-without` get UNIMPLEMENTED, as from a node built before they existed
//! (the original system's nodes have none of the RPCs added since). Callers must fall back
//! for each (relay instead of PullFile, one DeleteFile per key instead of DeleteFiles,
//! listing instead of RangeDigests); this is how that is tested against a real node.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;
use tower::{Layer, Service};

/// Wraps the node's gRPC routes; a request for a withheld RPC never reaches them.
#[derive(Clone, Debug, Default)]
pub struct WithholdLayer {
    methods: Arc<BTreeSet<String>>,
}

impl WithholdLayer {
    /// `methods`: RPC names as in the proto (`PullFile`, `RangeDigests`, …).
    pub fn new(methods: impl IntoIterator<Item = String>) -> Self {
        WithholdLayer {
            methods: Arc::new(methods.into_iter().collect()),
        }
    }
}

impl<S> Layer<S> for WithholdLayer {
    type Service = Withhold<S>;

    fn layer(&self, inner: S) -> Withhold<S> {
        Withhold {
            inner,
            methods: self.methods.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Withhold<S> {
    inner: S,
    methods: Arc<BTreeSet<String>>,
}

impl<S, B> Service<http::Request<B>> for Withhold<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        if self.methods.contains(method) {
            let answer = Status::unimplemented(format!("{method} is not served by this node"));
            return Box::pin(std::future::ready(Ok(answer.into_http())));
        }
        Box::pin(self.inner.call(request))
    }
}
