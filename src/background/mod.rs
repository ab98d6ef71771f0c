//! Background work, in the shape of Garage's `util/background`: every long-lived loop of
//! a process is a [`Worker`] that a [`Runner`] owns. The runner calls [`Worker::work`]
//! step by step, waits with [`Worker::wait_for_work`] when a step finds nothing to do,
//! publishes the [`WorkerStatus`] each worker reports, and stops them all on shutdown
//! within a drain deadline. A client that started a worker cannot stop it by going away,
//! and `admin status` lists every worker of the web node (a storage node's scrub reports
//! through its own scrub RPC).

mod runner;
mod status;

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

pub use runner::{Runner, WorkerContext, WorkerHandle};
pub use status::{WorkerState, WorkerStatus};

/// How long workers get on shutdown to finish what they have in flight.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// What runs in the background. Names are what `admin status` and the console show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkerKind {
    /// A journaled ring change (add, remove, zone) or its roll-back.
    RingChange,
    /// A journaled anti-entropy repair.
    Repair,
    /// The queue of keys whose copies were found bad.
    Resync,
    /// Probes the storage nodes and starts repairs.
    HealthMonitor,
    /// Follows the cluster state other web nodes save.
    MembershipWatch,
    /// Uploads taken in, transcoded and stored.
    UploadProcessing,
    /// Video deletes left unfinished (tombstones), retried until they end.
    VideoDeletes,
    /// A storage node's periodic check of every file against its record.
    Scrub,
    /// A worker of a unit test.
    #[default]
    Test,
}

impl WorkerKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkerKind::RingChange => "ring change",
            WorkerKind::Repair => "repair",
            WorkerKind::Resync => "resync",
            WorkerKind::HealthMonitor => "health monitor",
            WorkerKind::MembershipWatch => "membership watch",
            WorkerKind::UploadProcessing => "upload processing",
            WorkerKind::VideoDeletes => "video deletes",
            WorkerKind::Scrub => "scrub",
            WorkerKind::Test => "test",
        }
    }

    /// Workers that run as long as their process (as opposed to a job that ends).
    pub fn is_long_lived(self) -> bool {
        !matches!(self, WorkerKind::RingChange | WorkerKind::Repair)
    }
}

impl Display for WorkerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one call of [`Worker::work`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// More to do at once: the runner calls `work` again (after checking for a stop).
    Busy,
    /// Nothing to do now: the runner waits in `wait_for_work` (or for a stop).
    Idle,
    /// The work is over; what it did, for the operator.
    Finished(String),
}

/// A long-lived loop or a long job, driven by the [`Runner`] one step at a time. Each
/// step should be short (one arc, one round, one batch) so a stop is seen between steps;
/// a step that is asked to stop finishes what it has in flight and returns.
pub trait Worker: Send + 'static {
    /// Why a step failed. A failure ends the worker (`failed`, or `interrupted` when it
    /// was asked to stop); a loop that only logs its errors returns `Idle` instead.
    type Error: Display + Send;

    /// Does one step of the work.
    fn work(&mut self) -> impl Future<Output = Result<Step, Self::Error>> + Send;

    /// Waits until there may be work again, after a step that returned [`Step::Idle`].
    fn wait_for_work(&mut self) -> impl Future<Output = ()> + Send;

    /// Asked to stop between two steps: Ok with what it leaves behind when nothing is
    /// lost by stopping (a loop), Err when work is left undone (a journal resumes it).
    fn stop(&mut self) -> impl Future<Output = Result<String, Self::Error>> + Send {
        async { Ok("stopped".to_string()) }
    }

    /// Fills in what the worker knows about itself, after every step (the runner keeps
    /// the rest: state, times, outcome). Workers may also report from inside a step
    /// through their [`WorkerContext`].
    fn status(&self, _status: &mut WorkerStatus) {}
}
