//! A ring change's progress as the control plane reports it: what the admin service's
//! WatchMigration and ClusterStatus send (mapped in `admin::mapping`), what the web node's
//! metrics read, and what the console shows.

use chrono::{DateTime, Utc};

use super::super::state::{ArcsDone, ChangeKind};

#[derive(Clone, Debug, PartialEq)]
pub struct ChangeProgress {
    pub id: String,
    pub kind: ChangeKind,
    pub node: String,
    /// Files and bytes to move in the arcs listed so far (whole only at the end).
    pub files_total: u64,
    pub files_done: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub bytes_per_second: f64,
    pub current_key: String,
    pub errors: u64,
    pub last_error: String,
    pub finished: bool,
    pub started_at: DateTime<Utc>,
    pub events: Vec<String>,
    pub arcs: ArcProgress,
}

/// Where a change stands in its arcs of the keyspace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArcProgress {
    pub total: u64,
    /// Arcs done, as the journal records them (a prefix in ring order).
    pub done: u64,
    /// The arc being worked on, counted from 1 (0 before the first).
    pub now: u64,
    /// The arc this run started at, counted from 0 (a resumed change starts past 0).
    pub first: u64,
    /// The most keys one arc's inventory held.
    pub keys_max: u64,
    /// Keys listed from the nodes so far.
    pub keys_listed: u64,
}

impl ArcProgress {
    /// As another web node's journal records it.
    pub fn of_journal(arcs: Option<ArcsDone>) -> Self {
        let arcs = arcs.unwrap_or_default();
        ArcProgress {
            total: arcs.count,
            done: arcs.done,
            now: (arcs.done + 1).min(arcs.count),
            first: arcs.done,
            ..ArcProgress::default()
        }
    }
}
