//! What a worker reports: its state, counters and last events.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use super::WorkerKind;

/// Events a worker keeps for the console.
const MAX_EVENTS: usize = 50;

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
    pub kind: WorkerKind,
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

    /// Counts one error and keeps it as the last.
    pub fn error(&mut self, text: impl Into<String>) {
        self.errors += 1;
        self.last_error = text.into();
    }
}
