//! The one path of journaled work, shared by ring changes and repairs (DESIGN §6): the
//! journal goes into the cluster state by compare-and-swap before its worker starts, so
//! of several web nodes sharing a store exactly one runs it; a web node that starts finds
//! a journal left by one that stopped and takes it over (again by compare-and-swap, so
//! one of several resuming at once wins); the worker saves its progress into it; and the
//! journal leaves the state when the work is over.

use super::membership::{Cluster, ClusterError};
use super::state::{ClusterState, Journal, RepairJournal};

/// A journal kept in the cluster state while its work runs.
pub trait Journaled: Clone + Send + Sync + 'static {
    /// Where the cluster state keeps it.
    fn slot(state: &ClusterState) -> &Option<Self>;
    fn slot_mut(state: &mut ClusterState) -> &mut Option<Self>;
    /// The web node running it.
    fn runner(&self) -> &str;
    fn set_runner(&mut self, runner: &str);
    /// Whether `stored`, read from the state, is this same run (a roll-back of a ring
    /// change is another run of the same change).
    fn same_run(&self, stored: &Self) -> bool;
    /// What it is, for the operator.
    fn describe(&self) -> String;
}

impl Journaled for Journal {
    fn slot(state: &ClusterState) -> &Option<Self> {
        &state.migration
    }
    fn slot_mut(state: &mut ClusterState) -> &mut Option<Self> {
        &mut state.migration
    }
    fn runner(&self) -> &str {
        &self.runner
    }
    fn set_runner(&mut self, runner: &str) {
        self.runner = runner.to_string();
    }
    fn same_run(&self, stored: &Self) -> bool {
        self.id == stored.id && self.cancelled == stored.cancelled
    }
    fn describe(&self) -> String {
        Journal::describe(self)
    }
}

impl Journaled for RepairJournal {
    fn slot(state: &ClusterState) -> &Option<Self> {
        &state.repair
    }
    fn slot_mut(state: &mut ClusterState) -> &mut Option<Self> {
        &mut state.repair
    }
    fn runner(&self) -> &str {
        &self.runner
    }
    fn set_runner(&mut self, runner: &str) {
        self.runner = runner.to_string();
    }
    fn same_run(&self, stored: &Self) -> bool {
        self.id == stored.id
    }
    fn describe(&self) -> String {
        format!("a repair ({}, started {})", self.reason, self.started_at)
    }
}

/// Why a journal could not be taken over.
#[derive(Debug, PartialEq, Eq)]
pub enum NotTaken {
    /// Another web node took it over first.
    TakenBy(String),
    /// Another journal of its kind replaced it.
    Replaced(String),
    /// The work finished meanwhile.
    Gone,
}

/// Writes `journal` into the state, unless `admit` refuses the state as it is (another
/// change or repair journaled, a ring that changed meanwhile, …).
pub async fn record<J: Journaled, E: From<ClusterError>>(
    cluster: &Cluster,
    journal: &J,
    admit: impl Fn(&ClusterState) -> Result<(), E>,
) -> Result<(), E> {
    cluster
        .update(|current: &ClusterState| {
            admit(current)?;
            let mut next = current.clone();
            *J::slot_mut(&mut next) = Some(journal.clone());
            Ok::<_, E>(Some(next))
        })
        .await?;
    Ok(())
}

/// Makes this web node (`instance`) the runner of `read`, a journal read from the state,
/// if it is still there as read. Returns the journal as stored, with its progress.
pub async fn take_over<J: Journaled>(
    cluster: &Cluster,
    read: &J,
    instance: &str,
) -> Result<Result<J, NotTaken>, ClusterError> {
    let mut taken = None;
    let outcome = cluster
        .update(|current: &ClusterState| match J::slot(current) {
            Some(stored) if read.same_run(stored) && stored.runner() == read.runner() => {
                let mut mine = stored.clone();
                mine.set_runner(instance);
                let mut next = current.clone();
                *J::slot_mut(&mut next) = Some(mine.clone());
                taken = Some(mine);
                Ok(Some(next))
            }
            Some(stored) if read.same_run(stored) => {
                Err(Refusal::Not(NotTaken::TakenBy(stored.runner().to_string())))
            }
            Some(other) => Err(Refusal::Not(NotTaken::Replaced(other.describe()))),
            None => Err(Refusal::Not(NotTaken::Gone)),
        })
        .await;
    match outcome {
        Ok(_) => Ok(Ok(
            taken.expect("a successful take-over recorded its journal")
        )),
        Err(Refusal::Not(why)) => Ok(Err(why)),
        Err(Refusal::Cluster(e)) => Err(e),
    }
}

/// Changes the stored journal of this run with `change` (progress, arcs done). Returns
/// false, changing nothing, when the state no longer holds this run.
pub async fn save<J: Journaled>(
    cluster: &Cluster,
    journal: &J,
    change: impl Fn(&mut J),
) -> Result<bool, ClusterError> {
    let mut saved = false;
    cluster
        .update(|current: &ClusterState| match J::slot(current) {
            Some(stored) if journal.same_run(stored) => {
                let mut next = current.clone();
                if let Some(stored) = J::slot_mut(&mut next) {
                    change(stored);
                }
                saved = true;
                Ok::<_, ClusterError>(Some(next))
            }
            _ => Ok(None),
        })
        .await?;
    Ok(saved)
}

/// Takes this run's journal out of the state, with `also` the rest of what its end
/// changes (the ring a change switches to). Returns false, changing nothing, when the
/// state no longer holds this run.
pub async fn finish<J: Journaled>(
    cluster: &Cluster,
    journal: &J,
    also: impl Fn(&mut ClusterState),
) -> Result<bool, ClusterError> {
    let mut finished = false;
    cluster
        .update(|current: &ClusterState| match J::slot(current) {
            Some(stored) if journal.same_run(stored) => {
                let mut next = current.clone();
                *J::slot_mut(&mut next) = None;
                also(&mut next);
                finished = true;
                Ok::<_, ClusterError>(Some(next))
            }
            _ => Ok(None),
        })
        .await?;
    Ok(finished)
}

/// A take-over's refusal, or the store's error, through [`Cluster::update`].
enum Refusal {
    Not(NotTaken),
    Cluster(ClusterError),
}

impl From<ClusterError> for Refusal {
    fn from(e: ClusterError) -> Self {
        Refusal::Cluster(e)
    }
}
