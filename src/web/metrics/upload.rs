//! Uploads by outcome, and how long each stage took: receive (the body to disk), probe
//! (ffprobe), transcode (ffmpeg) and store (every DASH file on its holders; it overlaps
//! the transcode, since files are stored as ffmpeg finishes them).

use std::future::Future;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadStage {
    Receive,
    Probe,
    Transcode,
    Store,
}

impl UploadStage {
    fn label(self) -> &'static str {
        match self {
            UploadStage::Receive => "receive",
            UploadStage::Probe => "probe",
            UploadStage::Transcode => "transcode",
            UploadStage::Store => "store",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
    /// Whether the stage finished well; a failed stage's time is worth seeing too.
    outcome: &'static str,
}

fn stage_histogram() -> Histogram {
    Histogram::new(crate::metrics::stage_buckets())
}

#[derive(Clone, Debug)]
pub struct UploadMetrics {
    outcomes: Family<OutcomeLabels, Counter>,
    stages: Family<StageLabels, Histogram, fn() -> Histogram>,
}

impl UploadMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = UploadMetrics {
            outcomes: Family::default(),
            stages: Family::new_with_constructor(stage_histogram),
        };
        registry.register(
            "uploads",
            "Uploads by outcome: stored, bad_request, conflict, too_large, timeout, \
             unavailable, failed, abandoned (the client went away)",
            metrics.outcomes.clone(),
        );
        registry.register(
            "upload_stage_duration_seconds",
            "Time each upload stage took (receive, probe, transcode, store), by outcome",
            metrics.stages.clone(),
        );
        metrics
    }

    /// Runs one stage of an upload and records how long it took.
    pub async fn time<T, E>(
        &self,
        stage: UploadStage,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = work.await;
        let labels = StageLabels {
            stage: stage.label(),
            outcome: if result.is_ok() { "ok" } else { "error" },
        };
        self.stages
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// An upload starting; tell the returned guard how it ended.
    pub fn pending(&self) -> PendingUpload {
        PendingUpload {
            metrics: self.clone(),
            counted: false,
        }
    }

    fn count(&self, outcome: &'static str) {
        self.outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

/// How an upload ended, as its `outcome` label; the HTTP side says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadOutcome {
    Stored,
    BadRequest,
    Unauthorized,
    NotFound,
    Conflict,
    TooLarge,
    Timeout,
    Unavailable,
    Failed,
}

impl UploadOutcome {
    fn label(self) -> &'static str {
        match self {
            UploadOutcome::Stored => "stored",
            UploadOutcome::BadRequest => "bad_request",
            UploadOutcome::Unauthorized => "unauthorized",
            UploadOutcome::NotFound => "not_found",
            UploadOutcome::Conflict => "conflict",
            UploadOutcome::TooLarge => "too_large",
            UploadOutcome::Timeout => "timeout",
            UploadOutcome::Unavailable => "unavailable",
            UploadOutcome::Failed => "failed",
        }
    }
}

/// One upload whose outcome is not known yet: counted as abandoned if it is dropped
/// before [`PendingUpload::finish`] (a client that went away while sending).
pub struct PendingUpload {
    metrics: UploadMetrics,
    counted: bool,
}

impl PendingUpload {
    pub fn finish(mut self, outcome: UploadOutcome) {
        self.counted = true;
        self.metrics.count(outcome.label());
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if !self.counted {
            self.metrics.count("abandoned");
        }
    }
}
