//! Following a ring change from the command line: a progress bar (files, bytes, rate,
//! ETA) when stderr is a terminal, one plain line a second otherwise, so logs of scripts
//! stay readable.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressStyle};

use super::AdminClient;
use crate::admin::wire::{ListWorkersResponse, MigrationProgress, WatchMigrationRequest};

/// How often a plain progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

/// Follows change `change_id` until it finishes; returns the files moved, or why it failed.
pub async fn follow(client: &mut AdminClient, change_id: &str) -> anyhow::Result<u64> {
    let mut display = Display::new();
    // The watch ends when the change does; reopened if the stream breaks meanwhile.
    loop {
        let mut stream = client
            .watch_migration(WatchMigrationRequest {})
            .await
            .map_err(|s| anyhow::anyhow!("{} ({:?})", s.message(), s.code()))?
            .into_inner();
        while let Some(progress) = stream
            .message()
            .await
            .map_err(|s| anyhow::anyhow!("{} ({:?})", s.message(), s.code()))?
        {
            if progress.id != change_id {
                continue;
            }
            display.show(&progress);
            if progress.finished {
                display.finish();
                return if progress.errors == 0 && progress.last_error.is_empty() {
                    Ok(progress.files_done)
                } else {
                    Err(anyhow::anyhow!("{}", progress.last_error))
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

enum Display {
    Bar(ProgressBar),
    Plain { last: Option<Instant> },
}

impl Display {
    fn new() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} files  {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            Display::Bar(bar)
        } else {
            Display::Plain { last: None }
        }
    }

    fn show(&mut self, p: &MigrationProgress) {
        match self {
            Display::Bar(bar) => {
                bar.set_prefix(describe(p));
                bar.set_length(p.files_total);
                bar.set_position(p.files_done);
                bar.set_message(details(p));
            }
            Display::Plain { last } => {
                let due = last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY);
                if due || p.finished {
                    *last = Some(Instant::now());
                    eprintln!(
                        "{}: {}/{} files, {}",
                        describe(p),
                        p.files_done,
                        p.files_total,
                        details(p)
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish();
        }
    }
}

fn describe(p: &MigrationProgress) -> String {
    let kind = match p.kind() {
        crate::admin::wire::ChangeKind::Add => "add",
        crate::admin::wire::ChangeKind::Remove => "remove",
        crate::admin::wire::ChangeKind::Zone => "zone",
    };
    match arc_label(p) {
        Some(arc) => format!("{kind} {} ({arc})", p.node_address),
        None => format!("{kind} {}", p.node_address),
    }
}

/// "arc 3/20" while a change works through several arcs of the ring.
fn arc_label(p: &MigrationProgress) -> Option<String> {
    if p.arcs_total <= 1 {
        return None;
    }
    let now = if p.finished {
        p.arcs_done
    } else {
        p.arc_now.max(1)
    };
    Some(format!("arc {now}/{}", p.arcs_total))
}

/// Bytes, rate, ETA and errors of a change. With several arcs the totals count the arcs
/// listed so far, so no ETA is made from them.
fn details(p: &MigrationProgress) -> String {
    let by_arcs = p.arcs_total > 1 && !p.finished;
    let mut text = format!(
        "{} of {}{}, {}/s",
        HumanBytes(p.bytes_done),
        HumanBytes(p.bytes_total),
        if by_arcs { " so far" } else { "" },
        HumanBytes(p.bytes_per_second as u64)
    );
    if !by_arcs && !p.finished && p.bytes_per_second > 0.0 && p.bytes_total > p.bytes_done {
        let left = (p.bytes_total - p.bytes_done) as f64 / p.bytes_per_second;
        let _ = write!(
            text,
            ", ETA {}",
            HumanDuration(Duration::from_secs_f64(left))
        );
    }
    if p.errors > 0 {
        let _ = write!(text, ", {} errors (last: {})", p.errors, p.last_error);
    }
    text
}

/// Unix milliseconds as a UTC time for people.
pub fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// `tritontube admin status`: the journaled change and every worker, one block each.
pub fn status_report(reply: &ListWorkersResponse) -> String {
    let mut out = String::new();
    match &reply.journaled {
        Some(p) => {
            let _ = writeln!(
                out,
                "Ring change journaled: {} (id {}, run by {}), {}/{} files, {}",
                describe(p),
                p.id,
                if reply.journaled_runner.is_empty() {
                    "an older web node"
                } else {
                    &reply.journaled_runner
                },
                p.files_done,
                p.files_total,
                details(p)
            );
        }
        None => out.push_str("No ring change is journaled.\n"),
    }
    if reply.workers.is_empty() {
        out.push_str("No background work has run on this web node since it started.\n");
        return out;
    }
    out.push_str("Workers of this web node:\n");
    for w in &reply.workers {
        let _ = writeln!(
            out,
            "  #{} {} — {}: {} ({}/{} files, {} of {}, {} errors, queue {})",
            w.id,
            w.kind,
            w.description,
            w.state,
            w.files_done,
            w.files_total,
            HumanBytes(w.bytes_done),
            HumanBytes(w.bytes_total),
            w.errors,
            w.queue
        );
        let _ = write!(out, "     started {}", time(w.started_at_ms));
        if w.finished_at_ms > 0 {
            let _ = write!(out, ", finished {}", time(w.finished_at_ms));
        }
        if !w.throttle.is_empty() {
            let _ = write!(out, ", {}", w.throttle);
        }
        if !w.current_item.is_empty() && w.finished_at_ms == 0 {
            let _ = write!(out, "; now: {}", w.current_item);
        }
        out.push('\n');
        if !w.outcome.is_empty() {
            let _ = writeln!(out, "     {}", w.outcome);
        } else if !w.last_error.is_empty() {
            let _ = writeln!(out, "     last error: {}", w.last_error);
        }
    }
    out
}
