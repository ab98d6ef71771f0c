//! How an admin reply reads to a person, in one wording for `tritontube admin` and the
//! console: the CLI prints these lines, the console shows the same lines in its popups.

use indicatif::HumanBytes;

use crate::proto::admin::{RepairPlan, Tally};

fn tally(t: &Option<Tally>) -> String {
    let t = t.unwrap_or_default();
    format!("{} files ({})", t.files, HumanBytes(t.bytes))
}

/// A repair plan, one kind a line.
pub fn plan_lines(plan: &RepairPlan) -> Vec<String> {
    let mut lines = vec![
        format!("missing copies to restore:  {}", tally(&plan.missing)),
        format!("misplaced copies to move:   {}", tally(&plan.misplaced)),
        format!("orphans to delete:          {}", tally(&plan.orphans)),
        format!("quarantined (corrupt) copies: {}", plan.quarantined),
        format!("files under-replicated:     {}", plan.under_replicated),
    ];
    if plan.deferred.as_ref().is_some_and(|d| d.files > 0) || !plan.unreachable.is_empty() {
        lines.push(format!(
            "waiting for nodes that do not answer ({}): {}",
            plan.unreachable.join(", "),
            tally(&plan.deferred)
        ));
    }
    if plan.orphans_kept_because_stale {
        lines.push("orphans are kept: the metadata store could only be read stale".to_string());
    }
    lines
}
