//! Pace and pause of ring changes and repairs from the console: `+`/`-` step the pace,
//! `p` pauses or resumes, through the admin's SetPace, PauseMoves and ResumeMoves.

use ratatui::style::{Color, Style};
use ratatui::text::Line;

use super::app::{Command, Failure, Level, State};

/// The pace in force, as the web node reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PaceInfo {
    /// MB/s; 0 = unlimited.
    pub mbps: u64,
    pub paused: bool,
    pub measured_bytes_per_sec: f64,
}

/// Where `-` starts from unlimited when nothing moves to measure.
pub const FIRST_LIMIT_MBPS: u64 = 100;
/// Doubling past this lifts the limit: the disks are slower than that anyway.
pub const HIGHEST_LIMIT_MBPS: u64 = 1024;

/// The pace `+` sets: double, and unlimited past [`HIGHEST_LIMIT_MBPS`].
pub fn faster(mbps: u64) -> u64 {
    match mbps {
        0 => 0,
        m if m * 2 > HIGHEST_LIMIT_MBPS => 0,
        m => m * 2,
    }
}

/// The pace `-` sets: half, at least 1 MB/s; from unlimited, half the measured rate
/// (so the change slows at once) or [`FIRST_LIMIT_MBPS`] when nothing was measured.
pub fn slower(mbps: u64, measured_bytes_per_sec: f64) -> u64 {
    if mbps == 0 {
        let measured_mbps = (measured_bytes_per_sec / 1_000_000.0 / 2.0).round() as u64;
        return if measured_mbps >= 1 {
            measured_mbps
        } else {
            FIRST_LIMIT_MBPS
        };
    }
    (mbps / 2).max(1)
}

pub fn text(mbps: u64) -> String {
    if mbps == 0 {
        "unlimited".into()
    } else {
        format!("{mbps} MB/s")
    }
}

fn current(state: &mut State) -> Option<PaceInfo> {
    let pace = state.cluster.as_ref().and_then(|c| c.pace);
    if pace.is_none() {
        state.message = Some((
            Level::Error,
            "the pace is not known yet: wait for the web node to answer".into(),
        ));
    }
    pace
}

pub fn on_faster(state: &mut State) -> Vec<Command> {
    let Some(pace) = current(state) else {
        return vec![];
    };
    if pace.mbps == 0 {
        state.message = Some((Level::Info, "the pace is already unlimited".into()));
        return vec![];
    }
    let next = faster(pace.mbps);
    state.say(Level::Info, format!("setting the pace to {}…", text(next)));
    vec![Command::SetPace(next)]
}

pub fn on_slower(state: &mut State) -> Vec<Command> {
    let Some(pace) = current(state) else {
        return vec![];
    };
    let next = slower(pace.mbps, pace.measured_bytes_per_sec);
    if next == pace.mbps {
        state.message = Some((Level::Info, format!("the pace is already {}", text(next))));
        return vec![];
    }
    state.say(Level::Info, format!("setting the pace to {}…", text(next)));
    vec![Command::SetPace(next)]
}

pub fn on_toggle_pause(state: &mut State) -> Vec<Command> {
    let Some(pace) = current(state) else {
        return vec![];
    };
    if pace.paused {
        state.say(Level::Info, "resuming ring changes and repairs…");
        vec![Command::ResumeMoves]
    } else {
        state.say(Level::Info, "pausing ring changes and repairs…");
        vec![Command::PauseMoves]
    }
}

/// The web node's answer to a pace change: the pace now in force, or why not.
pub fn on_set(state: &mut State, result: Result<PaceInfo, Failure>) -> Vec<Command> {
    match result {
        Ok(pace) => {
            if let Some(c) = state.cluster.as_mut() {
                c.pace = Some(pace);
            }
            state.say(Level::Success, summary(&pace));
        }
        Err(f) => state.say(Level::Error, format!("pace refused: {f}")),
    }
    vec![Command::Refresh]
}

fn summary(pace: &PaceInfo) -> String {
    let measured = format!(
        "measured {:.1} MB/s",
        pace.measured_bytes_per_sec / 1_000_000.0
    );
    if pace.paused {
        format!(
            "moves PAUSED (pace {} when resumed; p resumes); {measured}",
            text(pace.mbps)
        )
    } else {
        format!(
            "moves at pace {} (+/- to change); {measured}",
            text(pace.mbps)
        )
    }
}

/// The migration panel's pace line.
pub fn line(pace: &PaceInfo) -> Line<'static> {
    let color = if pace.paused {
        Color::Yellow
    } else {
        Color::Gray
    };
    Line::styled(summary(pace), Style::new().fg(color))
}
