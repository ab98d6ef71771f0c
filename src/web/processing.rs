//! Upload processing as background work: an upload whose body is in is probed,
//! transcoded, stored and recorded by a worker of the web node's runner, one worker per
//! upload, so `admin status` lists what is being processed and how the last ones ended. A
//! client that goes away (a plain form closed, a script that stops following) does not
//! stop it; a web node that stops gives it the drain deadline, and the next start removes
//! what it left (its claim is still in processing).

use std::fmt;

use tokio::sync::oneshot;

use super::routes::{SharedState, WebError};
use super::upload::{Received, process};
use crate::background::{Step, Worker, WorkerKind, WorkerStatus};
use crate::web::metrics::upload::PendingUpload;

/// Starts processing `received`; the receiver gets how it ended. `held` (the client's
/// upload slot) is kept until then, so the upload still counts against its client.
pub(super) fn start<H: Send + 'static>(
    state: SharedState,
    received: Received,
    outcome: PendingUpload,
    held: H,
) -> oneshot::Receiver<Result<(), WebError>> {
    let (reply, ended) = oneshot::channel();
    let description = format!("{} ({} bytes)", received.id, received.source_bytes);
    let runner = state.runner.clone();
    runner.start(WorkerKind::UploadProcessing, &description, |_| Processing {
        job: Some((state, received, outcome)),
        reply: Some(reply),
        id: String::new(),
        held: Some(held),
    });
    ended
}

struct Processing<H> {
    job: Option<(SharedState, Received, PendingUpload)>,
    reply: Option<oneshot::Sender<Result<(), WebError>>>,
    id: String,
    held: Option<H>,
}

impl<H: Send + 'static> Worker for Processing<H> {
    type Error = Failed;

    async fn work(&mut self) -> Result<Step, Failed> {
        let Some((state, received, outcome)) = self.job.take() else {
            return Ok(Step::Finished("processed".into()));
        };
        self.id = received.id.clone();
        let result = process(state.clone(), received).await;
        outcome.finish(super::routes::upload_outcome(&result));
        self.held = None;
        let ended = match &result {
            Ok(()) => {
                let stored = state.uploads.get(&self.id).map_or(0, |s| s.stored_files);
                Ok(Step::Finished(format!(
                    "{}: {stored} files stored",
                    self.id
                )))
            }
            Err(e) => Err(Failed(self.id.clone(), e.clone())),
        };
        if let Some(reply) = self.reply.take() {
            // Nobody waits when the client asked to follow the processing on its own.
            let _ = reply.send(result);
        }
        ended
    }

    async fn wait_for_work(&mut self) {}

    fn status(&self, status: &mut WorkerStatus) {
        status.current_item = self.id.clone();
    }
}

/// An upload that could not be processed, with the detail the client does not see.
pub(super) struct Failed(String, WebError);

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.1 {
            WebError::Internal(detail) => write!(f, "{}: {detail}", self.0),
            other => write!(f, "{}: {other}", self.0),
        }
    }
}
