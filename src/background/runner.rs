//! The runner: owns the workers of one process, drives each one step at a time, keeps
//! their statuses for the operator and stops them on shutdown within a drain deadline.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Step, Worker, WorkerKind, WorkerState, WorkerStatus};

/// Finished workers kept per kind for `admin status`.
const KEEP_FINISHED: usize = 8;

/// What a worker gets: its status to publish and the signal to stop.
#[derive(Clone)]
pub struct WorkerContext {
    pub status: watch::Sender<WorkerStatus>,
    /// Cancelled on shutdown or when the operator stops this worker: stop taking new
    /// items, let those in flight finish, return from the step.
    pub stop: CancellationToken,
}

impl WorkerContext {
    /// Changes the published status in place.
    pub fn report(&self, change: impl FnOnce(&mut WorkerStatus)) {
        self.status.send_modify(change);
    }

    /// Records an event in the published status.
    pub fn event(&self, text: impl Into<String>) {
        let text = text.into();
        self.report(|s| s.event(text));
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

/// Owns every worker of one process.
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
    /// Starts the worker `make` builds from its context. It runs to its end whoever asked
    /// for it: [`Step::Finished`] makes it `done`, an error `failed`, and a stop between
    /// steps what [`Worker::stop`] says (`done` for a loop, `interrupted` for work left).
    pub fn start<W: Worker>(
        &self,
        kind: WorkerKind,
        description: &str,
        make: impl FnOnce(WorkerContext) -> W,
    ) -> WorkerHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (status, _) = watch::channel(WorkerStatus {
            id,
            kind,
            description: description.to_string(),
            started_at: Utc::now(),
            ..WorkerStatus::default()
        });
        let context = WorkerContext {
            status: status.clone(),
            stop: self.shutdown.child_token(),
        };
        let handle = WorkerHandle {
            id,
            status: status.clone(),
            stop: context.stop.clone(),
        };
        self.remember(handle.clone());
        let worker = make(context.clone());
        self.tasks.spawn(drive(worker, context));
        handle
    }

    fn remember(&self, handle: WorkerHandle) {
        let kind = handle.status.borrow().kind;
        let mut workers = self.workers.lock().expect("worker table lock");
        workers.insert(handle.id, handle);
        // Forget the oldest finished workers of this kind beyond the few kept, so many
        // short jobs (uploads) do not push the last repair out of sight.
        let finished: Vec<u64> = workers
            .iter()
            .filter(|(_, h)| {
                let s = h.status.borrow();
                s.kind == kind && s.state.is_finished()
            })
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
    pub fn running(&self, kind: WorkerKind) -> Option<WorkerHandle> {
        self.find(kind, |s| !s.state.is_finished())
    }

    /// The newest worker of `kind`, running or finished.
    pub fn latest(&self, kind: WorkerKind) -> Option<WorkerHandle> {
        self.find(kind, |_| true)
    }

    fn find(
        &self,
        kind: WorkerKind,
        wanted: impl Fn(&WorkerStatus) -> bool,
    ) -> Option<WorkerHandle> {
        let workers = self.workers.lock().expect("worker table lock");
        workers
            .values()
            .rev()
            .find(|h| {
                let s = h.status.borrow();
                s.kind == kind && wanted(&s)
            })
            .cloned()
    }

    /// Asks every worker to stop and waits up to `drain` for them to finish what is in
    /// flight. Returns false when some were still running at the deadline.
    pub async fn shutdown(&self, drain: Duration) -> bool {
        for handle in self.workers.lock().expect("worker table lock").values() {
            handle.stop("the process is stopping; journaled work resumes when it starts again");
        }
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(drain, self.tasks.wait()).await.is_ok()
    }
}

/// Runs `worker` step by step until it finishes, fails or is stopped, then records how
/// it ended in its status.
async fn drive<W: Worker>(mut worker: W, context: WorkerContext) {
    let ending: Result<String, String> = loop {
        if context.stop.is_cancelled() {
            break worker.stop().await.map_err(|e| e.to_string());
        }
        let step = worker.work().await;
        context.report(|s| worker.status(s));
        match step {
            Ok(Step::Busy) => {}
            Ok(Step::Idle) => {
                tokio::select! {
                    _ = context.stop.cancelled() => {}
                    _ = worker.wait_for_work() => {}
                }
            }
            Ok(Step::Finished(text)) => break Ok(text),
            Err(e) => break Err(e.to_string()),
        }
    };
    let stopped = context.stop.is_cancelled();
    context.report(|s| {
        s.finished_at = Some(Utc::now());
        s.current_item.clear();
        s.state = match (&ending, stopped) {
            (Ok(_), _) => WorkerState::Done,
            (Err(_), true) => WorkerState::Interrupted,
            (Err(_), false) => WorkerState::Failed,
        };
        match ending {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts to `until`, one per step, waiting for a go between steps when `paced`.
    struct Counter {
        count: u64,
        until: u64,
        go: Option<tokio::sync::mpsc::Receiver<()>>,
    }

    impl Worker for Counter {
        type Error = String;

        async fn work(&mut self) -> Result<Step, String> {
            if self.count == self.until {
                return Ok(Step::Finished(format!("counted to {}", self.count)));
            }
            self.count += 1;
            Ok(if self.go.is_some() {
                Step::Idle
            } else {
                Step::Busy
            })
        }

        async fn wait_for_work(&mut self) {
            if let Some(go) = &mut self.go {
                go.recv().await;
            }
        }

        async fn stop(&mut self) -> Result<String, String> {
            Err(format!("stopped at {}", self.count))
        }

        fn status(&self, status: &mut WorkerStatus) {
            status.files_done = self.count;
        }
    }

    #[tokio::test]
    async fn a_worker_outlives_whoever_started_it() {
        let runner = Runner::default();
        let (go, wait) = tokio::sync::mpsc::channel(1);
        let handle = {
            // The caller's future is dropped right away, as a request's is when its client
            // goes away: the worker still runs to its end.
            let start = async {
                runner.start(WorkerKind::Test, "count", |_| Counter {
                    count: 0,
                    until: 2,
                    go: Some(wait),
                })
            };
            start.await
        };
        assert_eq!(handle.status().state, WorkerState::Running);
        for _ in 0..2 {
            go.send(()).await.unwrap();
        }
        let done = handle.finished().await;
        assert_eq!(done.state, WorkerState::Done);
        assert_eq!(done.outcome, "counted to 2");
        assert_eq!(done.files_done, 2, "the worker's own status is published");
        assert_eq!(runner.statuses().len(), 1);
    }

    #[tokio::test]
    async fn shutdown_interrupts_between_steps_within_the_deadline() {
        let runner = Runner::default();
        let (_go, wait) = tokio::sync::mpsc::channel(1);
        let handle = runner.start(WorkerKind::Test, "count", |_| Counter {
            count: 0,
            until: 10,
            go: Some(wait),
        });
        // The first step is done and the worker waits for a go that never comes.
        let mut status = handle.subscribe();
        status.wait_for(|s| s.files_done == 1).await.unwrap();
        assert!(runner.running(WorkerKind::Test).is_some());
        assert!(runner.shutdown(Duration::from_secs(5)).await);
        let status = handle.finished().await;
        assert_eq!(status.state, WorkerState::Interrupted);
        assert_eq!(status.outcome, "stopped at 1");
        assert!(runner.running(WorkerKind::Test).is_none());
    }

    #[tokio::test]
    async fn finished_workers_are_kept_per_kind() {
        let runner = Runner::default();
        let first = runner.start(WorkerKind::Repair, "one", |_| Counter {
            count: 0,
            until: 1,
            go: None,
        });
        first.finished().await;
        for _ in 0..KEEP_FINISHED + 3 {
            let job = runner.start(WorkerKind::UploadProcessing, "job", |_| Counter {
                count: 0,
                until: 1,
                go: None,
            });
            job.finished().await;
        }
        // One more start prunes the finished jobs beyond the kept few.
        runner
            .start(WorkerKind::UploadProcessing, "last", |_| Counter {
                count: 0,
                until: 1,
                go: None,
            })
            .finished()
            .await;
        assert_eq!(runner.latest(WorkerKind::Repair).unwrap().id, first.id);
        let uploads = runner
            .statuses()
            .iter()
            .filter(|s| s.kind == WorkerKind::UploadProcessing)
            .count();
        assert!(uploads <= KEEP_FINISHED + 1, "{uploads}");
    }
}
