//! `update(state, action)`: every change to the console's state, pure and without I/O.
//! It answers with the [`Command`]s the runtime should start.

use super::model::*;
use crate::node::address::validate_address;
use crate::tui::health::HealthInfo;

/// Applies one action; returns the work to start. No I/O.
pub fn update(state: &mut State, action: Action) -> Vec<Command> {
    if state.read_only {
        if let Some(why) = crate::tui::read_only::refusal(&action) {
            state.message = Some((Level::Error, why));
            return vec![];
        }
    }
    match action {
        Action::Quit => {
            state.quit = true;
            vec![]
        }
        Action::Tick { clock } => {
            state.clock = clock;
            state.ticks += 1;
            vec![]
        }
        Action::Status(result) => on_status(state, result),
        Action::Migration(m) => {
            apply_migration(state, m);
            vec![]
        }
        Action::Etcd(probe) => {
            on_etcd(state, probe);
            vec![]
        }
        Action::Planned { node, result } => {
            if let Mode::ConfirmRemove { node: n, plan, .. } = &mut state.mode {
                // A plan for a popup since closed or reopened on another node is dropped.
                if *n == node {
                    *plan = match result {
                        Ok(p) => PlanView::Ready(p),
                        Err(f) => PlanView::Failed(f),
                    };
                }
            }
            vec![]
        }
        Action::Changed { kind, node, result } => {
            if state.pending.as_ref().is_some_and(|(_, n)| *n == node) {
                state.pending = None;
            }
            match result {
                Ok(count) => {
                    let done = match kind {
                        ChangeKind::Add => "added",
                        ChangeKind::Remove => "removed",
                        ChangeKind::Zone => "moved to its zone",
                    };
                    state.say(
                        Level::Success,
                        format!("{done} {node}: {count} files migrated"),
                    );
                }
                Err(f) => state.say(Level::Error, format!("{} {node} refused: {f}", kind.verb())),
            }
            vec![Command::Refresh]
        }
        Action::Health(health) => {
            on_health(state, health);
            vec![]
        }
        Action::Traffic(reading) => {
            state.traffic.record(reading);
            vec![]
        }
        Action::RepairPlanned(result) => {
            if let Mode::ConfirmRepair { plan } = &mut state.mode {
                *plan = Some(result);
            }
            vec![]
        }
        Action::RepairStarted(result) => {
            match result {
                Ok(worker) => {
                    state.awaited_repair = Some(worker);
                    state.say(Level::Info, format!("repair started (worker {worker})"))
                }
                Err(f) => state.say(Level::Error, format!("repair refused: {f}")),
            }
            vec![Command::Refresh]
        }
        Action::ChangeCancelled(result) => {
            match result {
                Ok(rollback) => state.say(
                    Level::Success,
                    format!("{rollback}: every file goes back where it was"),
                ),
                Err(f) => state.say(Level::Error, format!("cancel refused: {f}")),
            }
            vec![Command::Refresh]
        }
        Action::PaceSet(result) => crate::tui::pace::on_set(state, result),
        Action::VideosListed(result) => crate::tui::videos::on_listed(state, result),
        Action::VideoDeleted { id, result } => crate::tui::videos::on_deleted(state, id, result),
        key => on_key(state, key),
    }
}

fn on_key(state: &mut State, action: Action) -> Vec<Command> {
    match (&mut state.mode, action) {
        (Mode::FilterNodes, action) => {
            crate::tui::filter::on_node_key(state, action);
            vec![]
        }
        (Mode::Help, Action::ToggleHelp | Action::Cancel) => {
            state.mode = Mode::Normal;
            vec![]
        }
        (Mode::AddNode { input, error }, Action::Input(c)) => {
            if !c.is_control() {
                input.push(c);
                *error = None;
            }
            vec![]
        }
        (Mode::AddNode { input, error }, Action::Backspace) => {
            input.pop();
            *error = None;
            vec![]
        }
        (Mode::AddNode { .. }, Action::Cancel) => {
            state.mode = Mode::Normal;
            vec![]
        }
        (Mode::AddNode { input, error }, Action::Submit) => {
            let checked = validate_address(input).and_then(|addr| {
                let in_ring = state
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.nodes.iter().any(|n| n.address == addr && n.in_ring));
                if in_ring {
                    Err(format!("{addr} is already in the ring"))
                } else {
                    Ok(addr)
                }
            });
            match checked {
                Ok(addr) => {
                    state.mode = Mode::Normal;
                    state.pending = Some((ChangeKind::Add, addr.clone()));
                    state.say(Level::Info, format!("adding {addr}…"));
                    vec![Command::AddNode(addr)]
                }
                Err(e) => {
                    *error = Some(e);
                    vec![]
                }
            }
        }
        (Mode::ConfirmRemove { .. }, Action::Cancel) => {
            state.mode = Mode::Normal;
            vec![]
        }
        (Mode::ConfirmRemove { typed, .. }, Action::Input(c)) => {
            if c.is_ascii_digit() {
                typed.push(c);
            }
            vec![]
        }
        (Mode::ConfirmRemove { typed, .. }, Action::Backspace) => {
            typed.pop();
            vec![]
        }
        (Mode::ConfirmRemove { node, plan, typed }, Action::Confirm) => {
            // Confirming before the plan is known would be confirming blind.
            if *plan == PlanView::Loading {
                return vec![];
            }
            let port = port_of(node);
            if typed != port {
                let text = format!("type {node}'s port ({port}) to remove it");
                state.message = Some((Level::Error, text));
                return vec![];
            }
            let node = node.clone();
            state.mode = Mode::Normal;
            state.pending = Some((ChangeKind::Remove, node.clone()));
            state.say(Level::Info, format!("removing {node}…"));
            vec![Command::RemoveNode(node)]
        }
        (Mode::ConfirmRepair { .. }, Action::Cancel) => {
            state.mode = Mode::Normal;
            vec![]
        }
        (Mode::ConfirmRepair { plan }, Action::Confirm) => {
            // Confirming before the plan is known would be confirming blind.
            if !matches!(plan, Some(Ok(_))) {
                return vec![];
            }
            state.mode = Mode::Normal;
            state.say(Level::Info, "starting a repair…".to_string());
            vec![Command::StartRepair]
        }
        (Mode::ConfirmCancelChange { .. }, Action::Cancel) => {
            state.mode = Mode::Normal;
            vec![]
        }
        (Mode::ConfirmCancelChange { change }, Action::Confirm) => {
            let text = format!("cancelling {change}…");
            state.mode = Mode::Normal;
            state.say(Level::Info, text);
            vec![Command::CancelChange]
        }
        (Mode::Videos(_), action) => crate::tui::videos::on_key(state, action),
        (Mode::Normal, action) => on_normal_key(state, action),
        // Keys that mean nothing in the current mode.
        _ => vec![],
    }
}

fn on_normal_key(state: &mut State, action: Action) -> Vec<Command> {
    match action {
        Action::Cancel => {
            state.quit = true;
            vec![]
        }
        Action::ToggleHelp => {
            state.mode = Mode::Help;
            vec![]
        }
        Action::OpenVideos => crate::tui::videos::open(state),
        Action::FasterPace => crate::tui::pace::on_faster(state),
        Action::SlowerPace => crate::tui::pace::on_slower(state),
        Action::TogglePause => crate::tui::pace::on_toggle_pause(state),
        Action::OpenFilter => {
            state.focus = Focus::Nodes;
            state.mode = Mode::FilterNodes;
            vec![]
        }
        Action::ToggleRisk => {
            if !state.etcd_configured() {
                let text = "without etcd the data at risk is always shown";
                state.message = Some((Level::Info, text.into()));
                return vec![];
            }
            state.show_risk = !state.show_risk;
            if !state.etcd_shown() && state.focus == Focus::Etcd {
                state.focus = Focus::Nodes;
            }
            vec![]
        }
        Action::FocusNext => {
            state.focus = state.focus.next(state.etcd_shown());
            vec![]
        }
        Action::Up | Action::Down => {
            let down = action == Action::Down;
            match state.focus {
                Focus::Nodes => {
                    let shown = state.visible_nodes().len();
                    state.node_selected = step(state.node_selected, shown, down)
                }
                Focus::Etcd => {
                    state.etcd_selected = step(state.etcd_selected, state.etcd.len(), down)
                }
                Focus::Log => {
                    let max = state.log.len().saturating_sub(1);
                    state.log_scroll = if down {
                        state.log_scroll.saturating_sub(1)
                    } else {
                        (state.log_scroll + 1).min(max)
                    };
                }
            }
            vec![]
        }
        Action::Refresh => {
            state.message = Some((Level::Info, "refreshing…".into()));
            vec![Command::Refresh]
        }
        Action::OpenAdd => {
            if let Some(busy) = busy(state) {
                state.message = Some((Level::Error, busy));
                return vec![];
            }
            // A selected spare is the likely node to add: start with its address.
            let input = match state.selected_node() {
                Some(n) if state.focus == Focus::Nodes && !n.in_ring => n.address.clone(),
                _ => String::new(),
            };
            state.mode = Mode::AddNode { input, error: None };
            vec![]
        }
        Action::OpenRepair => {
            if let Some(busy) = busy(state) {
                state.message = Some((Level::Error, busy));
                return vec![];
            }
            if let Some(r) = state.health.as_ref().and_then(|h| h.repair.as_ref()) {
                if r.running() {
                    let text = format!(
                        "wait: a repair is running ({}/{} files)",
                        r.files_done, r.files_total
                    );
                    state.message = Some((Level::Error, text));
                    return vec![];
                }
            }
            state.mode = Mode::ConfirmRepair { plan: None };
            vec![Command::PlanRepair]
        }
        Action::OpenCancelChange => {
            match &state.migration {
                Some(m) if !m.finished => {
                    state.mode = Mode::ConfirmCancelChange {
                        change: format!("{} {}", m.kind.verb(), m.node),
                    };
                }
                _ => state.message = Some((Level::Error, "no ring change is running".into())),
            }
            vec![]
        }
        Action::OpenRemove => {
            if let Some(busy) = busy(state) {
                state.message = Some((Level::Error, busy));
                return vec![];
            }
            if state.focus != Focus::Nodes {
                state.message = Some((Level::Error, "select a node in the nodes table".into()));
                return vec![];
            }
            let Some(node) = state.selected_node() else {
                state.message = Some((Level::Error, "no node selected".into()));
                return vec![];
            };
            if !node.in_ring {
                let text = format!("{} is a spare, not in the ring", node.address);
                state.message = Some((Level::Error, text));
                return vec![];
            }
            let node = node.address.clone();
            state.mode = Mode::ConfirmRemove {
                node: node.clone(),
                plan: PlanView::Loading,
                typed: String::new(),
            };
            vec![Command::PlanRemove(node)]
        }
        _ => vec![],
    }
}

/// The port of a `host:port` address (what removing it asks to be typed).
pub fn port_of(node: &str) -> &str {
    node.rsplit_once(':').map_or(node, |(_, port)| port)
}

/// Keeps the health answer; logs a repair that has just finished.
fn on_health(state: &mut State, health: HealthInfo) {
    let was_running = state
        .health
        .as_ref()
        .and_then(|h| h.repair.as_ref())
        .is_some_and(|r| r.running());
    // A repair this console started is reported even when it ran and ended between two
    // polls, never seen running.
    let awaited = |r: &crate::tui::health::RepairInfo| state.awaited_repair == Some(r.worker_id);
    if let Some(r) = health
        .repair
        .as_ref()
        .filter(|r| !r.running() && (was_running || awaited(r)))
    {
        state.awaited_repair = None;
        let level = if r.state == "done" {
            Level::Success
        } else {
            Level::Error
        };
        state.log(level, format!("{}: {}", r.description, r.outcome));
    }
    state.health = Some(health);
}

/// Why a new change cannot start now, if it cannot.
fn busy(state: &State) -> Option<String> {
    if let Some((kind, node)) = &state.pending {
        return Some(format!("wait: {} {node} is still running", kind.verb()));
    }
    match &state.migration {
        Some(m) if !m.finished => Some(format!(
            "wait: a migration ({} {}) is still running",
            m.kind.verb(),
            m.node
        )),
        _ => None,
    }
}

pub(in crate::tui) fn step(current: usize, len: usize, down: bool) -> usize {
    if len == 0 {
        0
    } else if down {
        (current + 1).min(len - 1)
    } else {
        current.saturating_sub(1).min(len - 1)
    }
}

fn on_status(state: &mut State, result: Result<ClusterInfo, Failure>) -> Vec<Command> {
    match result {
        Ok(mut info) => {
            if state.admin != AdminLink::Up && state.status_tick.is_some() {
                state.log(
                    Level::Success,
                    format!("admin {} is back", state.admin_address),
                );
            }
            state.admin = AdminLink::Up;
            state.status_tick = Some(state.ticks);
            if let Some(m) = info.migration.take() {
                apply_migration(state, m);
            }
            // Keep the selection on the same node when nodes come and go.
            let selected = state.selected_node().map(|n| n.address.clone());
            info.nodes.sort_by(|a, b| a.address.cmp(&b.address));
            state.cluster = Some(info);
            crate::tui::filter::reselect_node(state, selected.as_deref());
        }
        Err(f) => {
            let was = std::mem::replace(&mut state.admin, AdminLink::Down(f.clone()));
            // Log the transition once, not every second.
            if !matches!(&was, AdminLink::Down(old) if old.code == f.code) {
                let text = if f.is_unauthenticated() {
                    format!("admin {} refused the token: {}", state.admin_address, f)
                } else {
                    format!("admin {} unreachable: {}", state.admin_address, f)
                };
                state.log(Level::Error, text);
            }
        }
    }
    vec![]
}

fn apply_migration(state: &mut State, m: MigrationInfo) {
    // Copy into the log the events not seen yet: the service sends all of them each time.
    let start = match &state.seen_event {
        Some((id, n)) if *id == m.id && *n <= m.events.len() => *n,
        _ => 0,
    };
    for e in &m.events[start..] {
        // The service stamps its events with its own clock; one clock (ours) keeps the
        // log in order.
        let text = split_clock(e).map_or(e.as_str(), |(_, text)| text);
        state.log(Level::Info, text.to_string());
    }
    let was_running = state.migration.as_ref().is_some_and(|old| !old.finished);
    if m.finished && was_running {
        let level = if m.errors == 0 {
            Level::Success
        } else {
            Level::Error
        };
        state.log(
            level,
            format!(
                "migration for {} {} finished: {} files, {} errors",
                m.kind.verb(),
                m.node,
                m.files_done,
                m.errors
            ),
        );
    }
    state.seen_event = Some((m.id.clone(), m.events.len()));
    state.migration = Some(m);
}

fn on_etcd(state: &mut State, probe: EtcdProbe) {
    let Some(idx) = state.etcd.iter().position(|r| r.endpoint == probe.endpoint) else {
        return;
    };
    let was_answering = state.etcd[idx].probed.then(|| state.etcd[idx].answering());
    let lost_before = state.quorum_lost();
    match probe.result {
        Ok(status) => {
            for m in &status.members {
                state.etcd_names.insert(m.id, m.name.clone());
            }
            let row = &mut state.etcd[idx];
            row.member_id = Some(status.member_id);
            row.status = Some(status);
            row.error = None;
        }
        Err(e) => {
            let row = &mut state.etcd[idx];
            row.error = Some(e);
            // Keep the last figures (shown dimmed) but not the leader claim.
            if let Some(s) = &mut row.status {
                s.leader_id = 0;
            }
        }
    }
    let row = &mut state.etcd[idx];
    row.probed = true;
    // A member that never answered can still be named from another's member list.
    if row.member_id.is_none() {
        let ep = strip_scheme(&row.endpoint).to_string();
        let others = state.etcd.iter().filter_map(|r| r.status.as_ref());
        let found = others
            .flat_map(|s| s.members.iter())
            .find(|m| m.client_urls.iter().any(|u| strip_scheme(u) == ep))
            .map(|m| m.id);
        state.etcd[idx].member_id = found;
    }
    let now_answering = state.etcd[idx].answering();
    let label = state
        .etcd_name(&state.etcd[idx])
        .map(|n| format!("{n} ({})", state.etcd[idx].endpoint))
        .unwrap_or_else(|| state.etcd[idx].endpoint.clone());
    // Leaderless moments (elections) show in the table; the log keeps to members that
    // stop or start answering.
    match (was_answering, now_answering) {
        (Some(true) | None, false) => {
            let why = state.etcd[idx].error.clone().unwrap_or_default();
            state.log(Level::Error, format!("etcd {label} down: {why}"));
        }
        (Some(false), true) => state.log(Level::Success, format!("etcd {label} is back")),
        _ => {}
    }
    let lost_now = state.quorum_lost();
    if lost_now && !lost_before {
        let text = format!(
            "etcd quorum lost: {} of {} members answer",
            state.etcd_answering(),
            state.etcd_size()
        );
        state.log(Level::Error, text);
    } else if lost_before && !lost_now {
        state.log(Level::Success, "etcd quorum is back");
    }
}

/// `"HH:MM:SS rest"` → (`"HH:MM:SS"`, `"rest"`).
fn split_clock(line: &str) -> Option<(&str, &str)> {
    let (at, rest) = line.split_once(' ')?;
    let b = at.as_bytes();
    let is_clock = b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit());
    is_clock.then_some((at, rest))
}

pub fn strip_scheme(s: &str) -> &str {
    s.split_once("://").map_or(s, |(_, rest)| rest)
}
