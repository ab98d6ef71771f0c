//! What the cluster is made of, as saved in the metadata store: the ring, the spare nodes
//! and the change under way. Pure data; [`super::membership`] loads and saves it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ring::Ring;

/// What the cluster is made of; saved as JSON in the metadata store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub ring: Ring,
    /// Known nodes outside the ring (added by `up`, or removed earlier): offered to the
    /// operator, never written to.
    #[serde(default)]
    pub spares: BTreeSet<String>,
    /// The change under way, if any: until it finishes, `ring` is still the old ring.
    #[serde(default)]
    pub migration: Option<Journal>,
    /// The repair under way, if any; never at the same time as a change.
    #[serde(default)]
    pub repair: Option<RepairJournal>,
    /// The operator's pace and pause for ring changes and repairs.
    #[serde(default)]
    pub pace: super::pace::PaceSettings,
    /// Raised by every save, so a web node following the store's watch never goes back
    /// to an older state delivered late, and writes can be counted per version.
    #[serde(default)]
    pub version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Add,
    Remove,
    /// The node moves into another zone (or out of any): the target ring says which.
    Zone,
}

impl ChangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Add => "add",
            ChangeKind::Remove => "remove",
            ChangeKind::Zone => "zone",
        }
    }
}

/// A ring change in progress: enough to finish it after a crash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub id: String,
    pub kind: ChangeKind,
    pub node: String,
    pub target: Ring,
    pub started_at: DateTime<Utc>,
    /// The operator cancelled the change: `target` is now the ring as it was before it,
    /// and finishing the journal moves every file back there.
    #[serde(default)]
    pub cancelled: bool,
    /// The web node running the change (empty in journals written before this field).
    #[serde(default)]
    pub runner: String,
    /// Where the change had got to when last saved, for the other web nodes to show.
    #[serde(default)]
    pub progress: Option<JournalProgress>,
    /// The arcs the change works through and how many are done (None until its worker
    /// first counts them, and in journals written before arcs).
    #[serde(default)]
    pub arcs: Option<ArcsDone>,
}

/// How far a change has worked through the keyspace: the whole ring cut into `count`
/// arcs ([`crate::ring::KeyRange::split_whole`]), fixed when the change starts, of which
/// the first `done`, in ring order, hold every key where the target ring wants it. A
/// resumed change starts at arc `done`, so a crash re-does at most one arc.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArcsDone {
    pub count: u64,
    pub done: u64,
}

/// A repair in progress: a repair recomputes its work from what the nodes hold, so the
/// journal only needs to say that one runs, where, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepairJournal {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub runner: String,
    /// What asked for it: the operator, a node back from the dead, the schedule.
    pub reason: String,
    /// Every copy is read and checked first (a deep repair).
    #[serde(default)]
    pub verify: bool,
}

/// A running change's progress as saved in its journal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JournalProgress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub bytes_per_second: f64,
    pub errors: u64,
    pub last_error: String,
    pub saved_at: Option<DateTime<Utc>>,
}

impl JournalProgress {
    pub fn of(status: &crate::background::WorkerStatus) -> Self {
        JournalProgress {
            files_done: status.files_done,
            files_total: status.files_total,
            bytes_done: status.bytes_done,
            bytes_total: status.bytes_total,
            bytes_per_second: status.bytes_per_second,
            errors: status.errors,
            last_error: status.last_error.clone(),
            saved_at: Some(Utc::now()),
        }
    }
}

impl Journal {
    /// "add 127.0.0.1:8093", "zone 127.0.0.1:8093 rack-2", or "cancelling add
    /// 127.0.0.1:8093".
    pub fn describe(&self) -> String {
        let prefix = if self.cancelled { "cancelling " } else { "" };
        match self.kind {
            ChangeKind::Zone => format!(
                "{prefix}zone {} {}",
                self.node,
                self.target.zone(&self.node).unwrap_or("(none)")
            ),
            kind => format!("{prefix}{} {}", kind.name(), self.node),
        }
    }
}

impl ClusterState {
    /// The ring new files are placed on: the target ring while a change runs.
    pub fn write_ring(&self) -> &Ring {
        self.migration.as_ref().map_or(&self.ring, |j| &j.target)
    }

    /// Holders to write a new file to.
    pub fn write_holders(&self, key: &str) -> Vec<String> {
        self.write_ring()
            .owners(key)
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// Holders to read from, in order: wanted owners, then (during a change) old owners.
    pub fn read_holders(&self, key: &str) -> Vec<String> {
        let mut holders = self.write_holders(key);
        if self.migration.is_some() {
            for node in self.ring.owners(key) {
                if !holders.iter().any(|h| h == node) {
                    holders.push(node.to_string());
                }
            }
        }
        holders
    }

    /// Every node that may hold files: ring members, a change's target ring, and the node
    /// it adds or removes (which a cancelled add's target no longer contains).
    pub fn data_nodes(&self) -> BTreeSet<String> {
        let mut nodes: BTreeSet<String> = self.ring.nodes().map(String::from).collect();
        if let Some(journal) = &self.migration {
            nodes.extend(journal.target.nodes().map(String::from));
            nodes.insert(journal.node.clone());
        }
        nodes
    }
}

pub fn to_json(state: &ClusterState) -> String {
    serde_json::to_string(state).expect("cluster state serializes")
}
