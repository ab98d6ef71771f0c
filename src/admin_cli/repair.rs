//! `tritontube admin repair ADMIN [--dry-run]` and the storage health in `admin status`.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use super::{AdminClient, describe};
use crate::admin::wire::{
    ClusterHealthResponse, ListWorkersRequest, RepairPlan, StartRepairRequest, WorkerInfo,
};

const POLL_EVERY: Duration = Duration::from_millis(300);

/// Prints the plan; without `dry_run`, then repairs and follows the worker to its end.
/// Err when something could not be repaired, saying what.
pub async fn run(
    client: &mut AdminClient,
    admin: &str,
    dry_run: bool,
    verify: bool,
) -> anyhow::Result<()> {
    // Verifying reads all the data: once is enough, so only a dry run verifies its plan
    // (a real repair verifies as it surveys).
    let plan = client
        .start_repair(StartRepairRequest {
            dry_run: true,
            verify: verify && dry_run,
        })
        .await
        .map_err(describe)?
        .into_inner()
        .plan
        .unwrap_or_default();
    out!("{}", plan_report(&plan))?;
    if dry_run {
        outln!("Dry run: nothing was changed.")?;
        return Ok(());
    }
    let mut interrupted = super::interrupt_listener()?;
    let worker_id = client
        .start_repair(StartRepairRequest {
            dry_run: false,
            verify,
        })
        .await
        .map_err(describe)?
        .into_inner()
        .worker_id;
    let follow = follow_worker(client, worker_id);
    let last = tokio::select! {
        last = follow => last?,
        _ = interrupted.recv() => {
            eprintln!(
                "\nStopped following. The repair goes on in the web node: follow it with \
                 `tritontube admin status {admin}`."
            );
            std::process::exit(130);
        }
    };
    if last.state == "done" {
        outln!("Repair finished: {}", last.outcome)?;
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "the repair did not finish: {}",
            last.outcome
        ))
    }
}

/// Polls the worker list until worker `id` has finished; shows its progress meanwhile.
async fn follow_worker(client: &mut AdminClient, id: u64) -> anyhow::Result<WorkerInfo> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("repair [{bar:30}] {pos}/{len} files  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    });
    let mut last_line = String::new();
    loop {
        let workers = client
            .list_workers(ListWorkersRequest {})
            .await
            .map_err(describe)?
            .into_inner()
            .workers;
        let Some(worker) = workers.into_iter().find(|w| w.id == id) else {
            return Err(anyhow::anyhow!(
                "worker {id} is no longer listed by the web node"
            ));
        };
        let detail = format!(
            "{} of {}, {}/s, {} errors",
            HumanBytes(worker.bytes_done),
            HumanBytes(worker.bytes_total),
            HumanBytes(worker.bytes_per_second as u64),
            worker.errors
        );
        match &bar {
            Some(bar) => {
                bar.set_length(worker.files_total);
                bar.set_position(worker.files_done);
                bar.set_message(detail);
            }
            None => {
                let line = format!(
                    "repair: {}/{} files, {detail}",
                    worker.files_done, worker.files_total
                );
                if line != last_line {
                    eprintln!("{line}");
                    last_line = line;
                }
            }
        }
        if matches!(worker.state.as_str(), "done" | "failed" | "interrupted") {
            if let Some(bar) = &bar {
                bar.finish();
            }
            return Ok(worker);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The plan, one kind a line.
pub fn plan_report(plan: &RepairPlan) -> String {
    let mut out = String::from("Repair plan:\n");
    for line in crate::admin::report::plan_lines(plan) {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// The storage health block of `admin status`.
pub fn health_report(health: &ClusterHealthResponse) -> String {
    let mut out = format!(
        "Storage health (R = {}): {} quarantined copies, {} hinted copies waiting for their owner\n",
        health.replicas, health.quarantined, health.hinted
    );
    let _ = writeln!(
        out,
        "Files below R good copies: {}; resync queue: {} (healed since start: {})",
        health.files_under_replicated, health.resync_queue_length, health.resync_healed
    );
    for item in &health.resync {
        let _ = writeln!(
            out,
            "  resync {} ({}){}",
            item.key,
            item.reason,
            if item.last_error.is_empty() {
                String::new()
            } else {
                format!(
                    ": {} failed tries, last: {}; next try {}",
                    item.attempts,
                    item.last_error,
                    super::progress::time(item.next_at_ms)
                )
            }
        );
    }
    for n in &health.nodes {
        if n.up {
            let _ = writeln!(
                out,
                "  {} up: {} files, {} used, {} free of {}, {} quarantined, scrub {}",
                n.address,
                n.file_count,
                HumanBytes(n.total_bytes),
                HumanBytes(n.free_bytes),
                HumanBytes(n.disk_total_bytes),
                n.quarantined,
                if !n.scrub_enabled {
                    "off".to_string()
                } else if n.scrub_running {
                    format!("running {}/{}", n.scrub_files_checked, n.scrub_files_total)
                } else if n.scrub_last_finished_ms == 0 {
                    "idle, no pass finished yet".to_string()
                } else {
                    format!(
                        "last pass {} ({} corrupt found)",
                        super::progress::time(n.scrub_last_finished_ms as i64),
                        n.scrub_corrupt_found
                    )
                }
            );
        } else {
            let _ = writeln!(out, "  {} DOWN: {}", n.address, n.error);
        }
    }
    if let Some(plan) = &health.last_survey {
        let _ = writeln!(
            out,
            "Last survey: {} under-replicated, {} missing, {} misplaced, {} orphans",
            plan.under_replicated,
            plan.missing.unwrap_or_default().files,
            plan.misplaced.unwrap_or_default().files,
            plan.orphans.unwrap_or_default().files
        );
    }
    match &health.last_repair {
        Some(r) => {
            let _ = writeln!(
                out,
                "Last repair ({}): {}",
                super::progress::time(r.finished_at_ms),
                r.outcome
            );
        }
        None => out.push_str("No repair has finished on this web node since it started.\n"),
    }
    if !health.repair_wanted.is_empty() {
        let _ = writeln!(
            out,
            "Repair wanted ({}): waits for the running work",
            health.repair_wanted
        );
    }
    out
}
