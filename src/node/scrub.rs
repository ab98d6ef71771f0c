//! The scrub: a background task that re-reads and re-hashes every stored file at a bounded
//! rate and quarantines what no longer matches its record, so rot is found on copies
//! nobody reads, before the last good copy elsewhere is lost too.
//!
//! - One pass walks every key in sorted order; a pass starts every `interval` (counted
//!   from the end of the previous one), or at once when asked ([`Scrubber::start_now`]).
//!   No pass runs at start-up unless one was interrupted: the schedule and the position
//!   reached are kept in `DIR/.tritontube-scrub`, so a restart resumes the pass where it
//!   stopped instead of starting over (or never finishing on a node restarted daily).
//! - The rate is paced per chunk read (at most one second of catch-up after a stall), so
//!   serving keeps the disk for itself; a rate of 0 turns the scrub off.
//! - A file with no record yet is hashed at the scrub's pace and that hash recorded.
//! - Each finished pass rebuilds the node's position index ([`super::index`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::record::temp_name;
use super::store::{Store, StoreError};
use crate::background::{Runner, Step, Worker, WorkerKind, WorkerStatus};

const STATE_FILE: &str = ".tritontube-scrub";
/// How often the position reached is saved during a pass.
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// Default pace: a sixth or less of what one disk streams, so reads keep their speed.
pub const DEFAULT_SCRUB_MBPS: u64 = 16;
pub const DEFAULT_SCRUB_INTERVAL: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug)]
pub struct ScrubConfig {
    /// Bytes per second; 0 turns the scrub off.
    pub rate_bytes_per_sec: u64,
    /// Time from the end of one pass to the start of the next.
    pub interval: Duration,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            rate_bytes_per_sec: DEFAULT_SCRUB_MBPS * 1_000_000,
            interval: DEFAULT_SCRUB_INTERVAL,
        }
    }
}

/// One pass: when, how far, what it found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassProgress {
    pub started_unix_ms: u64,
    /// 0 while the pass runs.
    pub finished_unix_ms: u64,
    pub files_checked: u64,
    pub bytes_checked: u64,
    /// What the store held when the pass started.
    pub files_total: u64,
    pub bytes_total: u64,
    /// Copies found corrupt (and quarantined) by this pass.
    pub corrupt_found: u64,
    /// Files that could not be read (I/O errors other than corruption).
    pub errors: u64,
    /// The last key checked; the pass resumes after it.
    pub cursor: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub key: String,
    pub found_unix_ms: u64,
    pub reason: String,
}

/// What the scrub reports through the node's RPCs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    pub enabled: bool,
    pub rate_bytes_per_sec: u64,
    pub interval: Duration,
    pub running: bool,
    /// The pass under way (or interrupted, to be resumed).
    pub current: Option<PassProgress>,
    /// The last finished pass.
    pub last: Option<PassProgress>,
    pub last_finding: Option<Finding>,
    /// When the next pass is due (0 when the scrub is off).
    pub next_pass_unix_ms: u64,
    /// Passes finished since the process started.
    pub passes_completed: u64,
}

/// What survives a restart.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Saved {
    current: Option<PassProgress>,
    last: Option<PassProgress>,
    last_finding: Option<Finding>,
    next_pass_unix_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    saved: Saved,
    running: bool,
    start_requested: bool,
    passes_completed: u64,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    config: ScrubConfig,
    state_path: PathBuf,
    state: Mutex<State>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Saves the schedule and progress. Best effort: losing it costs a repeated pass.
    async fn save(&self) {
        let saved = self.lock().saved.clone();
        let text = serde_json::to_string(&saved).expect("scrub state serialises");
        let dir = self.state_path.parent().unwrap_or(Path::new("."));
        let temp = dir.join(temp_name());
        let written = match tokio::fs::write(&temp, text).await {
            Ok(()) => tokio::fs::rename(&temp, &self.state_path).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&temp).await;
            tracing::warn!(error = %e, "could not save the scrub's progress");
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the scrub is off on this node (--scrub-mbps 0)")]
pub struct ScrubOff;

/// Handle on a node's scrub; cheap to clone.
#[derive(Clone, Debug)]
pub struct Scrubber {
    shared: Arc<Shared>,
}

impl Scrubber {
    /// Starts the scrub of `store` (unless the rate is 0) from the schedule and progress
    /// saved in its folder, as a worker of `runner`; the runner's shutdown stops it,
    /// saving where it got to.
    pub async fn start(store: Store, config: ScrubConfig, runner: &Runner) -> Scrubber {
        let state_path = store.root().join(STATE_FILE);
        let saved = tokio::fs::read_to_string(&state_path)
            .await
            .ok()
            .and_then(|text| serde_json::from_str::<Saved>(&text).ok())
            .unwrap_or_default();
        let scrubber = Self::with_state(store, config, state_path, saved);
        if config.rate_bytes_per_sec == 0 {
            return scrubber;
        }
        let shared = Arc::clone(&scrubber.shared);
        schedule_first_pass(&shared).await;
        runner.start(
            WorkerKind::Scrub,
            "re-reads every file and quarantines what no longer matches its record",
            |context| Scrubbing {
                shared,
                stop: context.stop,
                due_in: Duration::ZERO,
            },
        );
        scrubber
    }

    /// A scrub that never runs and reports nothing (for a service without one).
    pub fn off(store: Store) -> Scrubber {
        let state_path = store.root().join(STATE_FILE);
        let config = ScrubConfig {
            rate_bytes_per_sec: 0,
            ..ScrubConfig::default()
        };
        Self::with_state(store, config, state_path, Saved::default())
    }

    fn with_state(
        store: Store,
        config: ScrubConfig,
        state_path: PathBuf,
        saved: Saved,
    ) -> Scrubber {
        Scrubber {
            shared: Arc::new(Shared {
                store,
                config,
                state_path,
                state: Mutex::new(State {
                    saved,
                    ..State::default()
                }),
                wake: Notify::new(),
            }),
        }
    }

    pub fn report(&self) -> ScrubReport {
        let config = self.shared.config;
        let state = self.shared.lock();
        ScrubReport {
            enabled: config.rate_bytes_per_sec > 0,
            rate_bytes_per_sec: config.rate_bytes_per_sec,
            interval: config.interval,
            running: state.running,
            current: state.saved.current.clone(),
            last: state.saved.last.clone(),
            last_finding: state.saved.last_finding.clone(),
            next_pass_unix_ms: if config.rate_bytes_per_sec > 0 {
                state.saved.next_pass_unix_ms
            } else {
                0
            },
            passes_completed: state.passes_completed,
        }
    }

    /// Starts a pass now, unless one is running (returns whether this call started one).
    pub fn start_now(&self) -> Result<bool, ScrubOff> {
        if self.shared.config.rate_bytes_per_sec == 0 {
            return Err(ScrubOff);
        }
        let mut state = self.shared.lock();
        if state.running || state.start_requested {
            return Ok(false);
        }
        state.start_requested = true;
        drop(state);
        self.shared.wake.notify_one();
        Ok(true)
    }
}

/// How long after a node's first start its first pass begins: `fraction` (in [0, 1)) of
/// one interval.
pub fn first_pass_delay(interval: Duration, fraction: f64) -> Duration {
    interval.mul_f64(fraction.clamp(0.0, 1.0))
}

/// On the first start on a folder, the first pass comes at a random point of the first
/// interval (as Garage does), so nodes started together do not all scrub at once and rot
/// is not left unread for a whole interval.
async fn schedule_first_pass(shared: &Shared) {
    {
        let mut state = shared.lock();
        if state.saved.next_pass_unix_ms == 0 {
            state.saved.next_pass_unix_ms = crate::node::now_unix_ms()
                + first_pass_delay(shared.config.interval, fastrand::f64()).as_millis() as u64;
        }
    }
    shared.save().await;
}

/// The scrub as a background worker: one pass per step, when one is due.
struct Scrubbing {
    shared: Arc<Shared>,
    stop: CancellationToken,
    /// Time until the next pass is due, as the last step saw it.
    due_in: Duration,
}

impl Worker for Scrubbing {
    type Error = std::convert::Infallible;

    async fn work(&mut self) -> Result<Step, Self::Error> {
        let (due_in, resume) = {
            let state = self.shared.lock();
            let due = state.saved.next_pass_unix_ms;
            let wait = Duration::from_millis(due.saturating_sub(crate::node::now_unix_ms()));
            let go = state.start_requested || state.saved.current.is_some();
            (
                if go { Duration::ZERO } else { wait },
                state.saved.current.is_some(),
            )
        };
        self.due_in = due_in;
        if !due_in.is_zero() {
            return Ok(Step::Idle);
        }
        if resume {
            tracing::info!("resuming an interrupted scrub pass");
        }
        // A stopped pass saved where it got to; the runner sees the stop next.
        run_pass(&self.shared, &self.stop).await;
        Ok(Step::Busy)
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            _ = self.shared.wake.notified() => {}
            _ = tokio::time::sleep(self.due_in) => {}
        }
    }

    async fn stop(&mut self) -> Result<String, Self::Error> {
        Ok("stopped; an unfinished pass resumes where it got to".into())
    }

    fn status(&self, status: &mut WorkerStatus) {
        let state = self.shared.lock();
        if let Some(pass) = state.saved.current.as_ref().or(state.saved.last.as_ref()) {
            status.files_done = pass.files_checked;
            status.files_total = pass.files_total;
            status.bytes_done = pass.bytes_checked;
            status.bytes_total = pass.bytes_total;
            status.errors = pass.errors + pass.corrupt_found;
            status.current_item = pass.cursor.clone();
        }
        status.throttle = format!("{} MB/s", self.shared.config.rate_bytes_per_sec / 1_000_000);
    }
}

/// Runs (or resumes) one pass; a stop saves where it got to.
async fn run_pass(shared: &Shared, shutdown: &CancellationToken) {
    let mut progress = {
        let mut state = shared.lock();
        state.running = true;
        state.start_requested = false;
        match state.saved.current.clone() {
            Some(interrupted) => interrupted,
            None => {
                let stats = shared.store.stats();
                let fresh = PassProgress {
                    started_unix_ms: crate::node::now_unix_ms(),
                    files_total: stats.file_count,
                    bytes_total: stats.total_bytes,
                    ..PassProgress::default()
                };
                state.saved.current = Some(fresh.clone());
                fresh
            }
        }
    };
    tracing::info!(
        files = progress.files_total,
        bytes = progress.bytes_total,
        "scrub pass started"
    );
    let keys = match sorted_keys(&shared.store).await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::error!(error = %e, "scrub: cannot list the store");
            progress.errors += 1;
            Vec::new()
        }
    };
    let pacer = Arc::new(Mutex::new(Pacer::new(shared.config.rate_bytes_per_sec)));
    let mut saved_at = Instant::now();
    let resume_after = progress.cursor.clone();
    for key in keys.iter().filter(|k| **k > resume_after) {
        match scrub_file(&shared.store, key, &pacer, shutdown).await {
            Outcome::Stopped => {
                shared.lock().running = false;
                shared.save().await;
                return;
            }
            Outcome::Gone => {}
            Outcome::Good(bytes) => {
                progress.files_checked += 1;
                progress.bytes_checked += bytes;
            }
            Outcome::Corrupt(bytes, reason) => {
                progress.files_checked += 1;
                progress.bytes_checked += bytes;
                progress.corrupt_found += 1;
                shared.lock().saved.last_finding = Some(Finding {
                    key: key.clone(),
                    found_unix_ms: crate::node::now_unix_ms(),
                    reason,
                });
            }
            Outcome::Failed => progress.errors += 1,
        }
        progress.cursor = key.clone();
        shared.lock().saved.current = Some(progress.clone());
        if saved_at.elapsed() >= SAVE_EVERY {
            shared.save().await;
            saved_at = Instant::now();
        }
    }
    // A full pass also rebuilds the position index, which reconciles it with anything
    // changed on disk behind the node's back.
    if let Err(e) = shared.store.build_index().await {
        tracing::error!(error = %e, "scrub: cannot rebuild the position index");
        progress.errors += 1;
    }
    progress.finished_unix_ms = crate::node::now_unix_ms();
    tracing::info!(
        files = progress.files_checked,
        bytes = progress.bytes_checked,
        corrupt = progress.corrupt_found,
        errors = progress.errors,
        "scrub pass finished"
    );
    {
        let mut state = shared.lock();
        state.saved.current = None;
        state.saved.last = Some(progress);
        state.saved.next_pass_unix_ms =
            crate::node::now_unix_ms() + shared.config.interval.as_millis() as u64;
        state.running = false;
        state.passes_completed += 1;
    }
    shared.save().await;
}

async fn sorted_keys(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    let mut batches = std::pin::pin!(store.list(false));
    while let Some(batch) = batches.next().await {
        keys.extend(batch?.into_iter().map(|listed| listed.key));
    }
    keys.sort_unstable();
    Ok(keys)
}

enum Outcome {
    Good(u64),
    Corrupt(u64, String),
    /// Deleted since the listing.
    Gone,
    Failed,
    Stopped,
}

async fn scrub_file(
    store: &Store,
    key: &str,
    pacer: &Arc<Mutex<Pacer>>,
    shutdown: &CancellationToken,
) -> Outcome {
    let file = match store.open_for_scrub(key).await {
        Ok(file) => file,
        Err(StoreError::NotFound) => return Outcome::Gone,
        Err(StoreError::Corrupt { reason, .. }) => return Outcome::Corrupt(0, reason),
        Err(e) => {
            tracing::warn!(key, error = %e, "scrub: cannot open");
            return Outcome::Failed;
        }
    };
    let size = file.stat.size;
    let paced = {
        let pacer = Arc::clone(pacer);
        let shutdown = shutdown.clone();
        move |bytes| {
            pacer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pace(bytes, &shutdown)
        }
    };
    let hasher = match file.hash_paced(paced).await {
        Ok(Some(hasher)) => hasher,
        Ok(None) => return Outcome::Stopped,
        Err(e) => {
            tracing::warn!(key, error = %e, "scrub: cannot read");
            return Outcome::Failed;
        }
    };
    match file.finish_scrub(hasher).await {
        Ok(()) => Outcome::Good(size),
        Err(StoreError::Corrupt { reason, .. }) => Outcome::Corrupt(size, reason),
        Err(e) => {
            tracing::warn!(key, error = %e, "scrub: cannot check");
            Outcome::Failed
        }
    }
}

/// Keeps reads at `rate` bytes per second on average, with at most a second of catch-up.
struct Pacer {
    rate: u64,
    next: Instant,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            rate,
            next: Instant::now(),
        }
    }

    /// Blocking: sleeps until `bytes` more fit the rate; false when the node shuts down.
    fn pace(&mut self, bytes: u64, shutdown: &CancellationToken) -> bool {
        let now = Instant::now();
        let earliest = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        self.next =
            self.next.max(earliest) + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        // In short naps, so a shutdown is noticed within one.
        loop {
            if shutdown.is_cancelled() {
                return false;
            }
            let left = self.next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pass_falls_within_the_first_interval() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(first_pass_delay(day, 0.0), Duration::ZERO);
        assert_eq!(first_pass_delay(day, 0.5), Duration::from_secs(12 * 3600));
        assert!(first_pass_delay(day, 0.999_999) < day);
        assert_eq!(
            first_pass_delay(day, 7.0),
            day,
            "out-of-range draws are clamped"
        );
    }
}
