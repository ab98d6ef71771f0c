//! Undoing a failed upload: its files, then its claim on the video id. The client of a
//! failed upload was told it failed, so the id must come free even when the metadata
//! store cannot take the write now (a web node cut off from the etcd quorum): the claim
//! is released again and again until the store takes it. A claim whose own write had an
//! unknown outcome is released the same way and fenced off, since it may still land (a
//! request held up in a cut link's TCP buffers is delivered once the link is back).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::library::content::Content;
use crate::meta::{Claim, MetaStore};

/// The first wait before trying a release again; it doubles up to [`LAST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(250);
/// Short enough that a retried upload of the same name finds the id free soon after the
/// store is writable again.
const LAST_WAIT: Duration = Duration::from_secs(4);

/// Undoes a failed upload, including one whose request future was dropped midway.
pub(super) struct Rollback {
    meta: MetaStore,
    content: Content,
    claim: Claim,
    /// Keys written so far (recorded before each write, so a half-written one is in).
    pub(super) stored: Arc<Mutex<Vec<String>>>,
    armed: bool,
}

impl Rollback {
    pub(super) fn new(meta: MetaStore, content: Content, claim: Claim) -> Rollback {
        Rollback {
            meta,
            content,
            claim,
            stored: Arc::default(),
            armed: true,
        }
    }

    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (meta, content, claim) = (self.meta.clone(), self.content.clone(), self.claim.clone());
        let stored = std::mem::take(&mut *self.stored.lock().expect("stored keys lock"));
        // Files first: once the claim is gone a new upload may store under the same id.
        let cleanup = async move {
            for key in &stored {
                if let Err(e) = content.delete(key).await {
                    tracing::error!(%key, error = %e, "could not remove a file of a failed upload");
                }
            }
            tracing::info!(id = %claim.id, files = stored.len(), "removed a failed upload's files");
            release(meta, claim, false).await;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(cleanup);
            }
            Err(_) => {
                tracing::error!(id = %self.claim.id, "no runtime to roll back a failed upload")
            }
        }
    }
}

/// Releases, in the background, a claim whose write had an unknown outcome.
pub(super) fn release_uncertain(meta: MetaStore, claim: Claim) {
    tokio::spawn(release(meta, claim, true));
}

/// Releases `claim`, trying again with a growing wait until the store takes it. Only this
/// claim's record is ever removed, so a late try cannot touch a newer upload of the id.
async fn release(meta: MetaStore, claim: Claim, may_still_land: bool) {
    let mut wait = FIRST_WAIT;
    let mut failures = 0u32;
    loop {
        match meta.release_claim(&claim, may_still_land).await {
            Ok(()) => {
                tracing::info!(id = %claim.id, failures, "released the claim of a failed upload");
                return;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(id = %claim.id, error = %e, retry_in = ?wait, "cannot release the claim of a failed upload yet");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LAST_WAIT);
    }
}
