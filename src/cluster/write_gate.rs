//! Writes counted per cluster-state version, the way Garage counts writes per layout
//! version: a ring change waits until no write that chose its holders on an older state
//! is still running, without any reader or writer waiting on a lock held across I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Default)]
pub struct WriteGate {
    /// version → writes started on it and not finished.
    running: Mutex<BTreeMap<u64, usize>>,
    finished: Notify,
}

/// One running write; dropping it (finished, failed or cancelled) lets a change go on.
pub struct WriteTicket<'a> {
    gate: &'a WriteGate,
    version: u64,
}

impl WriteGate {
    /// Counts a write that chose its holders on state `version`. The caller must take the
    /// ticket while it still holds the state it read (see `Cluster::begin_write`), so a
    /// change that installs a newer state always sees it.
    pub fn enter(&self, version: u64) -> WriteTicket<'_> {
        *self.lock().entry(version).or_default() += 1;
        WriteTicket {
            gate: self,
            version,
        }
    }

    /// Returns once no write started on a version older than `version` is running.
    pub async fn wait_older_than(&self, version: u64) {
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            // Registered before the check, so a write ending in between is not missed.
            finished.as_mut().enable();
            if self.older_than(version) == 0 {
                return;
            }
            finished.await;
        }
    }

    /// Writes running on versions older than `version`.
    pub fn older_than(&self, version: u64) -> usize {
        self.lock().range(..version).map(|(_, n)| n).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, usize>> {
        self.running.lock().expect("write gate lock")
    }
}

impl Drop for WriteTicket<'_> {
    fn drop(&mut self) {
        let mut running = self.gate.lock();
        if let Some(n) = running.get_mut(&self.version) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.version);
            }
        }
        drop(running);
        self.gate.finished.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_change_waits_for_older_writes_only() {
        let gate = Arc::new(WriteGate::default());
        let old = gate.enter(1);
        let current = gate.enter(2);
        assert_eq!(gate.older_than(2), 1);
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.wait_older_than(2).await })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "returned while a version-1 write runs"
        );
        drop(old);
        waiter.await.unwrap();
        // A write on the new version never holds the change up.
        gate.wait_older_than(2).await;
        drop(current);
        assert_eq!(gate.older_than(u64::MAX), 0);
    }
}
