//! Background workers, in the shape of Garage's `util/background`: long cluster work (a
//! ring change, a repair) runs as a task owned by the web node's [`Runner`], not by the
//! request that asked for it, so a client that goes away cancels nothing. Each worker
//! publishes a [`WorkerStatus`]; the runner lists them for the admin service and stops
//! them on shutdown within a drain deadline (their journals let the next start resume).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Events a worker keeps for the console.
const MAX_EVENTS: usize = 50;
/// Finished workers kept for `admin status`.
const KEEP_FINISHED: usize = 8;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkerState {
    #[default]
    Running,
    /// Asked to stop (shutdown or cancel); finishing what is in flight.
    Stopping,
    Done,
    Failed,
    /// Stopped before the end; its journal lets it resume.
    Interrupted,
}

impl WorkerState {
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Running => "running",
            WorkerState::Stopping => "stopping",
            WorkerState::Done => "done",
            WorkerState::Failed => "failed",
            WorkerState::Interrupted => "interrupted",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            WorkerState::Done | WorkerState::Failed | WorkerState::Interrupted
        )
    }
}

/// What a worker reports about itself.
#[derive(Clone, Debug, Default)]
pub struct WorkerStatus {
    pub id: u64,
    /// "ring change", "repair", …
    pub kind: String,
    /// What it does, e.g. "add 127.0.0.1:8093".
    pub description: String,
    pub state: WorkerState,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Items waiting to be worked on.
    pub queue: u64,
    pub errors: u64,
    pub last_error: String,
    /// How the worker holds itself back (parallelism, rate), for the operator.
    pub throttle: String,
    pub current_item: String,
    pub bytes_per_second: f64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Human-readable events, oldest first, time-stamped, bounded.
    pub events: VecDeque<String>,
    /// The outcome once finished: what it did, or why it stopped.
    pub outcome: String,
    /// Why it was asked to stop, if it was ("cancelled by the operator", …).
    pub stop_reason: String,
}

impl WorkerStatus {
    /// Logs `text` and keeps it among the last events.
    pub fn event(&mut self, text: impl Into<String>) {
        let text = text.into();
        tracing::info!(worker = self.id, kind = %self.kind, "{text}");
        self.events
            .push_back(format!("{} {text}", Utc::now().format("%H:%M:%S")));
        if self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }
}

/// What a worker's task gets: its status to publish and the signal to stop.
pub struct WorkerContext {
    pub status: watch::Sender<WorkerStatus>,
    /// Cancelled on shutdown or when the operator cancels this worker: stop taking new
    /// items, let those in flight finish, return.
    pub stop: CancellationToken,
}

impl WorkerContext {
    /// Changes the published status in place.
    pub fn report(&self, change: impl FnOnce(&mut WorkerStatus)) {
        self.status.send_modify(change);
    }
}

/// A started worker: its status as it changes, and a way to ask it to stop.
#[derive(Clone)]
pub struct WorkerHandle {
    pub id: u64,
    status: watch::Sender<WorkerStatus>,
    stop: CancellationToken,
}

impl WorkerHandle {
    pub fn status(&self) -> WorkerStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<WorkerStatus> {
        self.status.subscribe()
    }

    /// Asks the worker to stop, saying why; it finishes what is in flight.
    pub fn stop(&self, reason: &str) {
        self.status.send_modify(|s| {
            if !s.state.is_finished() {
                s.state = WorkerState::Stopping;
                s.stop_reason = reason.to_string();
            }
        });
        self.stop.cancel();
    }

    /// Waits until the worker has finished and returns its final status.
    pub async fn finished(&self) -> WorkerStatus {
        let mut status = self.status.subscribe();
        // The handle holds a sender, so the channel cannot close while we wait.
        let finished = status.wait_for(|s| s.state.is_finished()).await;
        finished
            .map(|s| s.clone())
            .unwrap_or_else(|_| self.status())
    }
}

/// Owns every worker of this web node.
pub struct Runner {
    next_id: AtomicU64,
    workers: Mutex<BTreeMap<u64, WorkerHandle>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Default for Runner {
    fn default() -> Self {
        Runner {
            next_id: AtomicU64::new(1),
            workers: Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }
}

impl Runner {
    /// Starts `work` as a worker. It runs to its end whoever asked for it; its result
    /// (Ok: what it did; Err: why it stopped) becomes the final status. A worker that
    /// returns after being asked to stop is `Interrupted`.
    pub fn spawn<F, Fut>(&self, kind: &str, description: &str, work: F) -> WorkerHandle
    where
        F: FnOnce(WorkerContext) -> Fut,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (status, _) = watch::channel(WorkerStatus {
            id,
            kind: kind.to_string(),
            description: description.to_string(),
            started_at: Utc::now(),
            ..WorkerStatus::default()
        });
        let stop = self.shutdown.child_token();
        let handle = WorkerHandle {
            id,
            status: status.clone(),
            stop: stop.clone(),
        };
        self.remember(handle.clone());
        let context = WorkerContext {
            status: status.clone(),
            stop: stop.clone(),
        };
        let task = work(context);
        self.tasks.spawn(async move {
            let outcome = task.await;
            status.send_modify(|s| {
                s.finished_at = Some(Utc::now());
                s.current_item.clear();
                s.state = match (&outcome, stop.is_cancelled()) {
                    (Ok(_), _) => WorkerState::Done,
                    (Err(_), true) => WorkerState::Interrupted,
                    (Err(_), false) => WorkerState::Failed,
                };
                match outcome {
                    Ok(text) => {
                        s.event(format!("done: {text}"));
                        s.outcome = text;
                    }
                    Err(why) => {
                        s.errors = s.errors.max(1);
                        s.last_error = why.clone();
                        s.event(format!("stopped: {why}"));
                        s.outcome = why;
                    }
                }
            });
        });
        handle
    }

    fn remember(&self, handle: WorkerHandle) {
        let mut workers = self.workers.lock().expect("worker table lock");
        workers.insert(handle.id, handle);
        // Forget the oldest finished workers beyond the few kept for the operator.
        let finished: Vec<u64> = workers
            .iter()
            .filter(|(_, h)| h.status.borrow().state.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in finished
            .iter()
            .take(finished.len().saturating_sub(KEEP_FINISHED))
        {
            workers.remove(id);
        }
    }

    /// Every worker this runner knows, oldest first: those running and the last finished.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        let workers = self.workers.lock().expect("worker table lock");
        workers.values().map(WorkerHandle::status).collect()
    }

    /// The running worker of `kind`, if any.
    pub fn running(&self, kind: &str) -> Option<WorkerHandle> {
        let workers = self.workers.lock().expect("worker table lock");
        workers
            .values()
            .rev()
            .find(|h| {
                let s = h.status.borrow();
                s.kind == kind && !s.state.is_finished()
            })
            .cloned()
    }

    /// The newest worker of `kind`, running or finished.
    pub fn latest(&self, kind: &str) -> Option<WorkerHandle> {
        let workers = self.workers.lock().expect("worker table lock");
        workers
            .values()
            .rev()
            .find(|h| h.status.borrow().kind == kind)
            .cloned()
    }

    /// Asks every worker to stop and waits up to `drain` for them to finish what is in
    /// flight. Returns false when some were still running at the deadline.
    pub async fn shutdown(&self, drain: Duration) -> bool {
        for handle in self.workers.lock().expect("worker table lock").values() {
            handle.stop(
                "the web node is stopping; its journal resumes the work when it starts again",
            );
        }
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(drain, self.tasks.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_worker_outlives_whoever_started_it() {
        let runner = Runner::default();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let handle = {
            // The caller's future is dropped right away, as a request's is when its client
            // goes away: the worker still runs to its end.
            let start = async {
                runner.spawn("test", "wait", |_| async move {
                    wait.await.map_err(|e| e.to_string())?;
                    Ok("finished".to_string())
                })
            };
            start.await
        };
        assert_eq!(handle.status().state, WorkerState::Running);
        go.send(()).unwrap();
        let done = handle.finished().await;
        assert_eq!(done.state, WorkerState::Done);
        assert_eq!(done.outcome, "finished");
        assert_eq!(runner.statuses().len(), 1);
    }

    #[tokio::test]
    async fn shutdown_interrupts_within_the_deadline() {
        let runner = Runner::default();
        let handle = runner.spawn("test", "loop", |ctx| async move {
            ctx.stop.cancelled().await;
            Err("stopped by shutdown".to_string())
        });
        assert!(runner.running("test").is_some());
        assert!(runner.shutdown(Duration::from_secs(5)).await);
        let status = handle.finished().await;
        assert_eq!(status.state, WorkerState::Interrupted);
        assert!(runner.running("test").is_none());
    }
}
