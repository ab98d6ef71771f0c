//! Video deletes left unfinished, as a background worker: a delete whose files could not
//! all be removed (a holder down) or whose web node stopped midway keeps its tombstone;
//! this worker finishes it at start and then keeps trying, so the id is freed without an
//! operator asking again. A tombstone is only taken once it has stood for a whole round
//! ([`RETRY_EVERY`]), so a delete request still under way finishes its own.

use std::collections::BTreeSet;
use std::time::Duration;

use super::content::Content;
use super::videos;
use crate::background::{Runner, Step, Worker, WorkerHandle, WorkerKind, WorkerStatus};
use crate::meta::MetaStore;

/// Time between two looks for tombstones.
pub const RETRY_EVERY: Duration = Duration::from_secs(60);

/// Finishes the deletes a previous run left (before the web node serves, as it did
/// before there was a worker), then starts the worker on `runner` for the rest; it runs
/// until the runner shuts down.
pub async fn start(runner: &Runner, meta: MetaStore, content: Content) -> WorkerHandle {
    let mut deletes = Deletes {
        meta,
        content,
        seen: None,
        left: 0,
        finished: 0,
        failed: 0,
    };
    let Ok(_) = deletes.work().await;
    runner.start(
        WorkerKind::VideoDeletes,
        "finishes the video deletes left unfinished (tombstones)",
        |_| deletes,
    )
}

struct Deletes {
    meta: MetaStore,
    content: Content,
    /// The tombstones of the last round; None before the first, which takes them all
    /// (it runs before the web node serves, so no request of this node is under way).
    seen: Option<BTreeSet<String>>,
    left: u64,
    finished: u64,
    failed: u64,
}

impl Worker for Deletes {
    type Error = std::convert::Infallible;

    async fn work(&mut self) -> Result<Step, Self::Error> {
        let now: BTreeSet<String> = match videos::tombstones(&self.meta).await {
            Ok(ids) => ids.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for unfinished deletes");
                return Ok(Step::Idle);
            }
        };
        let due: Vec<&String> = match &self.seen {
            None => now.iter().collect(),
            Some(before) => now.intersection(before).collect(),
        };
        let mut left = now.len() as u64;
        for id in due {
            match videos::finish_delete(&self.meta, &self.content, id).await {
                Ok(files) => {
                    left -= 1;
                    self.finished += 1;
                    tracing::info!(%id, files, "finished a delete left unfinished");
                }
                Err(e) => {
                    self.failed += 1;
                    tracing::warn!(%id, error = %e, "cannot finish a delete yet");
                }
            }
        }
        self.left = left;
        self.seen = Some(now);
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(RETRY_EVERY).await;
    }

    fn status(&self, status: &mut WorkerStatus) {
        status.queue = self.left;
        status.files_done = self.finished;
        status.errors = self.failed;
    }
}
