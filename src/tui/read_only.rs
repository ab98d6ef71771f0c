//! `--read-only`: the console shows everything and refuses every action that would
//! change the cluster, saying why.

use super::app::Action;

/// Why `action` is refused in a read-only console, or None for one that changes nothing.
pub fn refusal(action: &Action) -> Option<String> {
    let what = match action {
        Action::OpenAdd => "adding a node",
        Action::OpenRemove => "removing a node or deleting a video",
        Action::OpenCancelChange => "cancelling a ring change",
        Action::OpenRepair => "repairing the storage",
        Action::FasterPace | Action::SlowerPace => "changing the pace",
        Action::TogglePause => "pausing or resuming moves",
        _ => return None,
    };
    Some(format!(
        "read-only console (--read-only): {what} is refused; start it without --read-only to act"
    ))
}
