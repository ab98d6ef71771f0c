//! The storage's health in the console: what ClusterHealth reports (copies quarantined
//! and hinted, files under-replicated, each node's disk, the repair running or last), the
//! line and popup that show it, and the repair started from the console after its plan.

use std::collections::BTreeMap;

use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};

use crate::admin::wire;

/// A node's free disk is low below this fraction of the disk, or below twice its reserve.
const LOW_DISK_FRACTION: f64 = 0.10;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiskInfo {
    pub free: u64,
    pub total: u64,
    pub reserve: u64,
    pub quarantined: u64,
}

impl DiskInfo {
    /// Whether the node will soon refuse writes for lack of space.
    pub fn low(&self) -> bool {
        self.total > 0
            && ((self.free as f64) < self.total as f64 * LOW_DISK_FRACTION
                || self.free < self.reserve.saturating_mul(2))
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RepairInfo {
    /// The repair worker's id.
    pub worker_id: u64,
    pub description: String,
    pub state: String,
    pub files_done: u64,
    pub files_total: u64,
    pub errors: u64,
    pub outcome: String,
}

impl RepairInfo {
    pub fn running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "stopping")
    }
}

/// A ClusterHealth answer, as the console keeps it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthInfo {
    pub quarantined: u64,
    pub hinted: u64,
    /// From the last survey (None until one has run).
    pub under_replicated: Option<u64>,
    pub last_repair: Option<String>,
    pub repair: Option<RepairInfo>,
    /// Why a repair waits to start, if one does.
    pub wanted: String,
    pub disks: BTreeMap<String, DiskInfo>,
    /// Data at risk, for the console's panel.
    pub risk: super::risk::RiskInfo,
}

pub fn health_info(r: wire::ClusterHealthResponse) -> HealthInfo {
    let risk = super::risk::risk_info(&r);
    HealthInfo {
        risk,
        quarantined: r.quarantined,
        hinted: r.hinted,
        under_replicated: r.last_survey.map(|p| p.under_replicated),
        last_repair: r.last_repair.map(|l| l.outcome),
        repair: r.repair.map(|w| RepairInfo {
            worker_id: w.id,
            description: w.description,
            state: w.state,
            files_done: w.files_done,
            files_total: w.files_total,
            errors: w.errors,
            outcome: w.outcome,
        }),
        wanted: r.repair_wanted,
        disks: r
            .nodes
            .into_iter()
            .filter(|n| n.up)
            .map(|n| {
                let disk = DiskInfo {
                    free: n.free_bytes,
                    total: n.disk_total_bytes,
                    reserve: n.min_free_bytes,
                    quarantined: n.quarantined,
                };
                (n.address, disk)
            })
            .collect(),
    }
}

/// The plan of a repair as lines for the confirmation popup.
pub fn plan_lines(plan: &wire::RepairPlan) -> Vec<String> {
    crate::admin::report::plan_lines(plan)
}

/// One line: the repair running (or the last one), what needs healing, low disks.
pub fn summary_line(health: &HealthInfo) -> Line<'static> {
    let warn = Style::new().fg(Color::Yellow);
    let ok = Style::new().fg(Color::Green);
    let mut spans = vec![Span::raw("health: ")];
    match &health.repair {
        Some(r) if r.running() => spans.push(Span::styled(
            format!("repair {}/{} files", r.files_done, r.files_total),
            warn,
        )),
        _ if !health.wanted.is_empty() => spans.push(Span::styled("repair waiting", warn)),
        _ => match (&health.repair, &health.last_repair) {
            (Some(r), _) if r.state != "done" => spans.push(Span::styled(
                format!("repair {}", r.state),
                Style::new().fg(Color::Red),
            )),
            (_, Some(_)) => spans.push(Span::styled("repaired", ok)),
            _ => spans.push(Span::raw("R repairs")),
        },
    }
    let count =
        |n: u64, what: &str| Span::styled(format!("{n} {what}"), if n > 0 { warn } else { ok });
    for (n, what) in [
        (health.under_replicated.unwrap_or(0), "under-replicated"),
        (health.quarantined, "quarantined"),
        (health.hinted, "hinted"),
    ] {
        spans.push(Span::raw(" · "));
        spans.push(count(n, what));
    }
    let low: Vec<&str> = health
        .disks
        .iter()
        .filter(|(_, d)| d.low())
        .map(|(a, _)| a.as_str())
        .collect();
    if !low.is_empty() {
        spans.push(Span::styled(
            format!(" · disk low: {}", low.join(", ")),
            Style::new().fg(Color::Red),
        ));
    }
    Line::from(spans)
}
