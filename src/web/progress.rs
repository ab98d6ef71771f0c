//! Where each upload this web node handles is: bytes received, probing, transcoding (with
//! ffmpeg's own percentage), storing, ready, or failed with the reason. Kept in memory:
//! the page polls it while the upload runs, and a finished upload's last state stays a
//! while so a page that looks late still learns how it ended.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::meta::Rendition;

/// How long a finished upload's state is kept.
const KEEP_FINISHED: Duration = Duration::from_secs(15 * 60);
/// At most this many finished uploads are remembered (the oldest go first).
const MAX_FINISHED: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Being processed by another web node: no detail known here.
    Processing,
    Receiving,
    Probing,
    Transcoding,
    Storing,
    /// The lowest rendition is stored and plays; the higher ones are being encoded.
    Playable,
    Ready,
    Failed,
}

impl Phase {
    pub fn finished(self) -> bool {
        matches!(self, Phase::Ready | Phase::Failed)
    }
}

/// What `GET /api/uploads/{id}` answers.
#[derive(Clone, Debug, Serialize)]
pub struct UploadStatus {
    pub id: String,
    pub phase: Phase,
    pub received_bytes: u64,
    /// Share of the video ffmpeg has encoded, 0 to 100.
    pub transcode_percent: f64,
    pub stored_files: u64,
    /// The renditions stored so far (the lowest once playable, every one once ready).
    pub renditions: Vec<Rendition>,
    /// Why it failed, for `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    #[serde(skip)]
    finished_at: Option<Instant>,
}

#[derive(Default)]
pub struct Uploads {
    by_id: Mutex<HashMap<String, UploadStatus>>,
}

impl Uploads {
    /// Starts tracking an upload of `id` (replacing how an earlier one of that id ended).
    pub fn start(&self, id: &str) {
        let mut by_id = self.by_id.lock().expect("uploads lock");
        prune(&mut by_id);
        by_id.insert(
            id.to_owned(),
            UploadStatus {
                id: id.to_owned(),
                phase: Phase::Receiving,
                received_bytes: 0,
                transcode_percent: 0.0,
                stored_files: 0,
                renditions: Vec::new(),
                error: None,
                started_at: Utc::now(),
                finished_at: None,
            },
        );
    }

    /// Changes the tracked state of `id`, if it is tracked.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut UploadStatus)) {
        let mut by_id = self.by_id.lock().expect("uploads lock");
        if let Some(status) = by_id.get_mut(id) {
            change(status);
            if status.phase.finished() && status.finished_at.is_none() {
                status.finished_at = Some(Instant::now());
            }
        }
    }

    pub fn set_phase(&self, id: &str, phase: Phase) {
        self.update(id, |s| s.phase = phase);
    }

    pub fn fail(&self, id: &str, error: String) {
        self.update(id, |s| {
            s.phase = Phase::Failed;
            s.error = Some(error);
        });
    }

    pub fn get(&self, id: &str) -> Option<UploadStatus> {
        let mut by_id = self.by_id.lock().expect("uploads lock");
        prune(&mut by_id);
        by_id.get(id).cloned()
    }

    /// Forgets `id` (its video was deleted).
    pub fn forget(&self, id: &str) {
        self.by_id.lock().expect("uploads lock").remove(id);
    }
}

fn prune(by_id: &mut HashMap<String, UploadStatus>) {
    by_id.retain(|_, s| s.finished_at.is_none_or(|at| at.elapsed() < KEEP_FINISHED));
    let finished = by_id.values().filter(|s| s.finished_at.is_some()).count();
    if finished > MAX_FINISHED {
        let mut ages: Vec<(Instant, String)> = by_id
            .values()
            .filter_map(|s| s.finished_at.map(|at| (at, s.id.clone())))
            .collect();
        ages.sort();
        for (_, id) in ages.into_iter().take(finished - MAX_FINISHED) {
            by_id.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_phases_and_keeps_how_it_ended() {
        let uploads = Uploads::default();
        assert!(uploads.get("a").is_none());
        uploads.start("a");
        uploads.update("a", |s| s.received_bytes = 10);
        uploads.set_phase("a", Phase::Transcoding);
        let a = uploads.get("a").unwrap();
        assert_eq!((a.phase, a.received_bytes), (Phase::Transcoding, 10));
        uploads.fail("a", "not a video".into());
        let a = uploads.get("a").unwrap();
        assert_eq!(a.phase, Phase::Failed);
        assert_eq!(a.error.as_deref(), Some("not a video"));
        // A new upload of the id starts afresh.
        uploads.start("a");
        assert_eq!(uploads.get("a").unwrap().phase, Phase::Receiving);
        uploads.forget("a");
        assert!(uploads.get("a").is_none());
        // Updates of untracked ids change nothing.
        uploads.set_phase("b", Phase::Ready);
        assert!(uploads.get("b").is_none());
    }

    #[test]
    fn finished_uploads_are_bounded() {
        let uploads = Uploads::default();
        for n in 0..MAX_FINISHED + 10 {
            let id = format!("v{n}");
            uploads.start(&id);
            uploads.set_phase(&id, Phase::Ready);
        }
        uploads.start("last");
        let count = uploads.by_id.lock().unwrap().len();
        assert_eq!(count, MAX_FINISHED + 1);
    }
}
