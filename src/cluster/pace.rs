//! Pace and pause for the data that ring changes and repairs move.
//!
//! The settings (MB/s, 0 = unlimited; paused) live in the cluster state document, the
//! journal every web node shares: a restarted web node honours them, and a change made on
//! one web node reaches the others through the store's watch. Before each file is
//! copied, the worker asks the [`Pacer`] to admit its bytes: a token bucket refilled at
//! the pace in force *now* (read again at every check), so a new pace or a pause takes
//! effect within [`RECHECK`] even for copies already waiting. Copies in flight finish;
//! nothing of the journal is lost by a pause. The resync queue is not paced: healing a
//! lost copy is never held back.
//!
//! The rate reported is measured: bytes of the copies that finished within the last
//! [`WINDOW`], not the pace asked for.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a waiting copy looks at the pace again.
pub const RECHECK: Duration = Duration::from_millis(100);
/// The span over which the moving rate is measured.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Largest credit a paced bucket keeps: a quarter second at the pace, so a pause or a
/// slower pace is not followed by a burst.
const BURST: Duration = Duration::from_millis(250);

/// The operator's pace, kept in the journal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaceSettings {
    /// MB/s (10^6 bytes) for ring changes and repairs together; 0 = unlimited.
    #[serde(default)]
    pub mbps: u64,
    /// Copying stopped until resumed (the work stays journaled).
    #[serde(default)]
    pub paused: bool,
}

impl PaceSettings {
    pub fn bytes_per_second(&self) -> Option<f64> {
        (self.mbps > 0).then_some(self.mbps as f64 * 1e6)
    }

    /// "unlimited", "25 MB/s", "paused (25 MB/s when resumed)".
    pub fn describe(&self) -> String {
        let pace = match self.mbps {
            0 => "unlimited".to_string(),
            mbps => format!("{mbps} MB/s"),
        };
        if self.paused {
            format!("paused (pace {pace} when resumed)")
        } else {
            format!("pace {pace}")
        }
    }
}

/// The token bucket and the measured rate of one web node.
pub struct Pacer {
    bucket: Mutex<Bucket>,
    moved: Mutex<VecDeque<(Instant, u64)>>,
    changed: Notify,
}

struct Bucket {
    /// Bytes that may start now; negative after a file larger than the credit.
    credit: f64,
    at: Instant,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            bucket: Mutex::new(Bucket {
                credit: 0.0,
                at: Instant::now(),
            }),
            moved: Mutex::new(VecDeque::new()),
            changed: Notify::new(),
        }
    }
}

impl Pacer {
    /// Wakes the copies waiting, to look at a new pace at once.
    pub fn settings_changed(&self) {
        self.changed.notify_waiters();
    }

    /// Waits until `bytes` may be copied under the settings `current()` returns (read
    /// again at every check). False when `stop` fires first.
    pub async fn admit(
        &self,
        bytes: u64,
        current: impl Fn() -> PaceSettings,
        stop: &CancellationToken,
    ) -> bool {
        loop {
            if stop.is_cancelled() {
                return false;
            }
            let settings = current();
            let wait = if settings.paused {
                RECHECK
            } else {
                match self.take(bytes, settings.bytes_per_second()) {
                    None => return true,
                    Some(wait) => wait.min(RECHECK),
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Takes `bytes` from the bucket refilled at `rate`: None when they may go now,
    /// else how long until there is credit.
    fn take(&self, bytes: u64, rate: Option<f64>) -> Option<Duration> {
        let mut bucket = self.bucket.lock().expect("pace lock");
        let now = Instant::now();
        let Some(rate) = rate else {
            bucket.credit = 0.0;
            bucket.at = now;
            return None;
        };
        let earned = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.credit = (bucket.credit + earned).min(rate * BURST.as_secs_f64());
        bucket.at = now;
        if bucket.credit >= 0.0 {
            // Any credit lets a file start; a large one leaves the bucket in debt.
            bucket.credit -= bytes as f64;
            return None;
        }
        Some(Duration::from_secs_f64(-bucket.credit / rate))
    }

    /// Counts `bytes` of a copy that finished, for the measured rate.
    pub fn moved(&self, bytes: u64) {
        let mut moved = self.moved.lock().expect("pace lock");
        let now = Instant::now();
        moved.push_back((now, bytes));
        while moved
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
        {
            moved.pop_front();
        }
    }

    /// Bytes per second moved over the last [`WINDOW`].
    pub fn measured(&self) -> f64 {
        let moved = self.moved.lock().expect("pace lock");
        let now = Instant::now();
        let bytes: u64 = moved
            .iter()
            .filter(|(at, _)| now.duration_since(*at) <= WINDOW)
            .map(|(_, b)| b)
            .sum();
        bytes as f64 / WINDOW.as_secs_f64()
    }

    /// What a worker's status shows: the settings and the rate measured.
    pub fn throttle(&self, settings: PaceSettings) -> String {
        format!(
            "{}; measured {:.1} MB/s",
            settings.describe(),
            self.measured() / 1e6
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_holds_copies_to_the_pace_in_force() {
        let pacer = Pacer::default();
        let stop = CancellationToken::new();
        let paced = || PaceSettings {
            mbps: 1,
            paused: false,
        };
        let started = Instant::now();
        // Ten files of 500 kB at 1 MB/s: the first goes at once, the rest 0.5 s apart.
        for _ in 0..10 {
            assert!(pacer.admit(500_000, paced, &stop).await);
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(4400), "{took:?}");
        assert!(took <= Duration::from_millis(4800), "{took:?}");
        // Unlimited: no wait at all.
        let started = Instant::now();
        for _ in 0..100 {
            assert!(pacer.admit(500_000, PaceSettings::default, &stop).await);
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_copies_until_resumed_or_stopped() {
        let pacer = std::sync::Arc::new(Pacer::default());
        let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stop = CancellationToken::new();
        let waiting = {
            let (pacer, paused, stop) = (pacer.clone(), paused.clone(), stop.clone());
            tokio::spawn(async move {
                let current = || PaceSettings {
                    mbps: 0,
                    paused: paused.load(std::sync::atomic::Ordering::SeqCst),
                };
                pacer.admit(1, current, &stop).await
            })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "a paused copy started");
        paused.store(false, std::sync::atomic::Ordering::SeqCst);
        pacer.settings_changed();
        assert!(waiting.await.unwrap());

        let current = || PaceSettings {
            mbps: 0,
            paused: true,
        };
        let held = {
            let (pacer, stop) = (pacer.clone(), stop.clone());
            tokio::spawn(async move { pacer.admit(1, current, &stop).await })
        };
        stop.cancel();
        assert!(
            !held.await.unwrap(),
            "a stop ends the wait without admitting"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_shown_is_the_rate_measured() {
        let pacer = Pacer::default();
        assert_eq!(pacer.measured(), 0.0);
        for _ in 0..5 {
            pacer.moved(2_000_000);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(pacer.measured(), 2_000_000.0);
        tokio::time::sleep(WINDOW * 2).await;
        assert_eq!(pacer.measured(), 0.0);
    }
}
