//! `view(&state, frame)`: draws the console from the state and changes nothing.
//!
//! Two layouts: below 100×30 the panels stack and the ring shrinks beside the nodes
//! table; from 100×30 up the ring gets its own column with a legend.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Circle, Points};
use ratatui::widgets::{
    Block, BorderType, Cell, Clear, Gauge, HighlightSpacing, Paragraph, Row, Table, TableState,
    Wrap,
};

use super::app::{
    AdminLink, ChangeKind, EtcdRow, Focus, Level, MigrationInfo, Mode, NodeInfo, PlanView, State,
};
use super::health;
use super::keys::{self, Context};
use crate::ring::Ring;

/// Node colours, by the node's place in the sorted node list. Red is kept for failures.
const PALETTE: [Color; 8] = [
    Color::Cyan,
    Color::Yellow,
    Color::Magenta,
    Color::Green,
    Color::Blue,
    Color::LightCyan,
    Color::LightYellow,
    Color::LightMagenta,
];

const ERROR: Style = Style::new().fg(Color::Red);
const DIM: Style = Style::new().fg(Color::DarkGray);
const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);

pub fn view(state: &State, frame: &mut Frame) {
    let area = frame.area();
    let compact = area.width < 100 || area.height < 30;
    let banners = banners(state);
    let [title, banner_area, body, message, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banners.len() as u16),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);

    draw_title(state, frame, title);
    frame.render_widget(Paragraph::new(banners), banner_area);
    if compact {
        draw_compact(state, frame, body);
    } else {
        draw_wide(state, frame, body);
    }
    draw_message(state, frame, message);
    frame.render_widget(Paragraph::new(key_hints(Context::of(&state.mode))), help);

    match &state.mode {
        // The filter is typed in the nodes panel's title.
        Mode::Normal | Mode::FilterNodes => {}
        Mode::Help => draw_help(frame, area),
        Mode::AddNode { input, error } => draw_add(frame, area, input, error.as_deref()),
        Mode::ConfirmRemove { node, plan, typed } => draw_confirm(frame, area, node, plan, typed),
        Mode::ConfirmCancelChange { change } => draw_confirm_cancel(frame, area, change),
        Mode::ConfirmRepair { plan } => draw_confirm_repair(frame, area, plan.as_ref()),
        Mode::Videos(videos) => super::videos::draw(frame, area, videos),
    }
}

fn draw_compact(state: &State, frame: &mut Frame, body: Rect) {
    let node_rows = state.nodes().len().max(1) as u16;
    // The data-at-risk panel: a summary line and a row per node.
    let risk_h = (node_rows + 4).min(8);
    let etcd_h = match (state.etcd_configured(), state.show_risk) {
        (true, false) => state.etcd.len() as u16 + 3,
        (true, true) => (state.etcd.len() as u16 + 3).max(risk_h),
        (false, _) => risk_h,
    };
    let [top, etcd, migration] = Layout::vertical([
        Constraint::Length((node_rows + 3).clamp(7, 9)),
        Constraint::Length(etcd_h),
        Constraint::Min(3),
    ])
    .areas(body);
    // The circle needs twice as many columns as rows to look round.
    let ring_w = (top.height.saturating_sub(2) * 2 + 2).min(top.width / 4);
    let [ring, nodes] =
        Layout::horizontal([Constraint::Length(ring_w), Constraint::Min(0)]).areas(top);
    draw_ring(state, frame, ring, false);
    draw_nodes(state, frame, nodes);
    draw_etcd_or_risk(state, frame, etcd);
    draw_migration(state, frame, migration, true);
}

fn draw_wide(state: &State, frame: &mut Frame, body: Rect) {
    let mig_h = (body.height / 3).clamp(7, 14);
    let [upper, migration] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(mig_h)]).areas(body);
    // The tables need about 72 columns to show every figure whole; the ring gets the rest.
    let ring_w = upper.width.saturating_sub(72).clamp(24, 60);
    let [ring, right] =
        Layout::horizontal([Constraint::Length(ring_w), Constraint::Min(0)]).areas(upper);
    let node_rows = state.nodes().len().max(1) as u16;
    let [nodes, etcd] =
        Layout::vertical([Constraint::Length(node_rows + 3), Constraint::Min(3)]).areas(right);
    draw_ring(state, frame, ring, true);
    draw_nodes(state, frame, nodes);
    draw_etcd_or_risk(state, frame, etcd);
    draw_migration(state, frame, migration, false);
}

fn panel(title: impl Into<Line<'static>>, focused: bool) -> Block<'static> {
    let block = Block::bordered().title(title);
    if focused {
        block
            .border_type(BorderType::Thick)
            .border_style(Style::new().fg(Color::Cyan))
    } else {
        block.border_style(DIM)
    }
}

/// Colour of a node: its place among all known nodes, sorted by address.
fn node_color(state: &State, address: &str) -> Color {
    state
        .nodes()
        .iter()
        .position(|n| n.address == address)
        .map_or(Color::Gray, |i| PALETTE[i % PALETTE.len()])
}

fn draw_title(state: &State, frame: &mut Frame, area: Rect) {
    let (link, style) = match &state.admin {
        AdminLink::Connecting => ("connecting", Style::new().fg(Color::Yellow)),
        AdminLink::Up => ("up", Style::new().fg(Color::Green)),
        AdminLink::Down(f) if f.is_unauthenticated() => ("token refused", ERROR),
        AdminLink::Down(_) => ("down", ERROR),
    };
    let mut spans = vec![
        Span::styled(" Tritontube ", BOLD.add_modifier(Modifier::REVERSED)),
        Span::raw(format!(" admin {} ", state.admin_address)),
        Span::styled(format!("● {link}"), style),
    ];
    if state.etcd_configured() {
        let healthy = state.etcd_healthy();
        let style = if state.quorum_lost() {
            ERROR
        } else if healthy < state.etcd_size() {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new().fg(Color::Green)
        };
        spans.push(Span::raw("  etcd "));
        spans.push(Span::styled(
            format!("{healthy}/{} healthy", state.etcd_size()),
            style,
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
    frame.render_widget(
        Paragraph::new(format!("{} ", state.clock)).alignment(Alignment::Right),
        area,
    );
}

/// One full-width red line per failure the operator must know about.
fn banners(state: &State) -> Vec<Line<'static>> {
    let style = Style::new()
        .fg(Color::White)
        .bg(Color::Red)
        .add_modifier(Modifier::BOLD);
    let mut out = Vec::new();
    if let AdminLink::Down(f) = &state.admin {
        // The age comes before the detail, which is what a narrow screen cuts off.
        let age = match state.stale_for() {
            Some(s) => format!("data shown is {s} s old"),
            None => "no data yet".into(),
        };
        let text = if f.is_unauthenticated() {
            format!(
                " ✖ admin refused the token: {} — restart with --token — {age}",
                f.message
            )
        } else {
            format!(" ✖ admin {} unreachable — {age} — {f}", state.admin_address)
        };
        out.push(Line::styled(text, style));
    }
    if state.quorum_lost() {
        out.push(Line::styled(
            format!(
                " ✖ etcd quorum lost: {} of {} members answer — uploads and ring changes fail",
                state.etcd_answering(),
                state.etcd_size()
            ),
            style,
        ));
    }
    out
}

fn draw_message(state: &State, frame: &mut Frame, area: Rect) {
    let line = match (&state.message, &state.pending) {
        (Some((level, text)), _) => Line::styled(format!(" {text}"), level_style(*level)),
        (None, Some((kind, node))) => Line::raw(format!(" {} {node}…", kind.verb())),
        (None, None) => Line::raw(""),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn level_style(level: Level) -> Style {
    match level {
        Level::Info => Style::new(),
        Level::Success => Style::new().fg(Color::Green),
        Level::Error => ERROR,
    }
}

/// The help bar: the key table's rows for the current context.
pub fn key_hints(context: Context) -> Line<'static> {
    let key = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    let mut spans = vec![Span::raw(" ")];
    for b in keys::bindings(context).filter(|b| !b.short.is_empty()) {
        spans.push(Span::styled(b.label, key));
        spans.push(Span::raw(format!(" {}  ", b.short)));
    }
    Line::from(spans)
}

/// Token positions to draw: the service's, or derived from the members when it sent none.
fn tokens(state: &State) -> Vec<(u64, String)> {
    let Some(c) = &state.cluster else {
        return vec![];
    };
    if !c.tokens.is_empty() {
        return c.tokens.clone();
    }
    let members = c.nodes.iter().filter(|n| n.in_ring).map(|n| &n.address);
    let ring = Ring::with_nodes(c.virtual_nodes.max(1), c.replicas.max(1), members);
    ring.tokens().map(|(p, n)| (p, n.to_string())).collect()
}

fn draw_ring(state: &State, frame: &mut Frame, area: Rect, legend: bool) {
    let title = match &state.cluster {
        Some(c) if legend => format!(" Ring · V={} R={} ", c.virtual_nodes, c.replicas),
        _ => " Ring ".to_string(),
    };
    let block = panel(title, false);
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let in_ring: Vec<_> = state.nodes().iter().filter(|n| n.in_ring).collect();
    let zones = zone_shares(&in_ring);
    let legend_h = if legend {
        (in_ring.len() + zones.len()) as u16
    } else {
        0
    };
    let [circle_area, legend_area] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(legend_h)]).areas(inner);
    let w = circle_area.width.min(circle_area.height * 2);
    let h = (w / 2).min(circle_area.height);
    let circle_area = Rect {
        x: circle_area.x + (circle_area.width - w) / 2,
        y: circle_area.y + (circle_area.height - h) / 2,
        width: w,
        height: h,
    };

    // Group the points by node so each node is drawn in one colour.
    let mut by_node: Vec<(Color, Vec<(f64, f64)>)> = Vec::new();
    for (position, node) in tokens(state) {
        let color = node_color(state, &node);
        let angle = position as f64 / 2f64.powi(64) * std::f64::consts::TAU;
        // Position 0 at the top, growing clockwise, like a clock face.
        let point = (angle.sin() * 0.9, angle.cos() * 0.9);
        match by_node.iter_mut().find(|(c, _)| *c == color) {
            Some((_, points)) => points.push(point),
            None => by_node.push((color, vec![point])),
        }
    }
    let empty = by_node.is_empty();
    let canvas = Canvas::default()
        .marker(Marker::Braille)
        .x_bounds([-1.0, 1.0])
        .y_bounds([-1.0, 1.0])
        .paint(move |ctx| {
            if empty {
                ctx.draw(&Circle {
                    x: 0.0,
                    y: 0.0,
                    radius: 0.9,
                    color: Color::DarkGray,
                });
            }
            for (color, points) in &by_node {
                ctx.draw(&Points {
                    coords: points,
                    color: *color,
                });
            }
        });
    frame.render_widget(canvas, circle_area);

    if legend {
        let width = in_ring
            .iter()
            .map(|n| n.address.len())
            .chain(zones.iter().map(|(z, _)| z.len() + 5))
            .max()
            .unwrap_or(0);
        let mut lines: Vec<Line> = in_ring
            .iter()
            .map(|n| {
                Line::from(vec![
                    Span::styled("● ", Style::new().fg(node_color(state, &n.address))),
                    Span::raw(format!("{:<width$}", n.address)),
                    Span::raw(format!("{:>7.1}%", n.share * 100.0)),
                ])
            })
            .collect();
        lines.extend(zones.iter().map(|(zone, share)| {
            Line::from(vec![
                Span::raw("  "),
                Span::styled(format!("{:<width$}", format!("zone {zone}")), DIM),
                Span::styled(format!("{:>7.1}%", share * 100.0), DIM),
            ])
        }));
        frame.render_widget(Paragraph::new(lines), legend_area);
    }
}

/// The share of the ring each zone holds as first replica (nodes in no zone left out).
fn zone_shares(in_ring: &[&NodeInfo]) -> Vec<(String, f64)> {
    let mut zones: Vec<(String, f64)> = Vec::new();
    for node in in_ring.iter().filter(|n| !n.zone.is_empty()) {
        match zones.iter_mut().find(|(z, _)| *z == node.zone) {
            Some((_, share)) => *share += node.share,
            None => zones.push((node.zone.clone(), node.share)),
        }
    }
    zones.sort_by(|a, b| a.0.cmp(&b.0));
    zones
}

/// Width the node table needs without its zone column: the columns, the gaps between
/// them, the selection marker and the borders.
const NODE_TABLE_WIDTH: u16 = 16 + 5 + 6 + 8 + 6 + 9 + 6 + 6 + 2 + 2;

fn draw_nodes(state: &State, frame: &mut Frame, area: Rect) {
    let stale = state.stale_for();
    let visible = state.visible_nodes();
    let filter = super::filter::title_note(
        &state.node_filter,
        state.mode == super::app::Mode::FilterNodes,
    );
    let title = match stale {
        Some(s) => format!(" Storage nodes · stale, {s} s old{filter} "),
        None => format!(
            " Storage nodes ({}){filter} ",
            super::filter::count(visible.len(), state.nodes().len())
        ),
    };
    let block = panel(title, state.focus == Focus::Nodes);
    if state.cluster.is_none() {
        let text = match &state.admin {
            AdminLink::Connecting => "asking the admin service…",
            _ => "no data: the admin service has not answered",
        };
        frame.render_widget(Paragraph::new(text).style(DIM).block(block), area);
        return;
    }
    // The zone column shows once some node has a zone, and only where it fits: a
    // squeezed table would cut the figures of the other columns.
    let zone_width = state
        .nodes()
        .iter()
        .map(|n| n.zone.chars().count())
        .max()
        .filter(|longest| *longest > 0)
        .map(|longest| longest.clamp(4, 10) as u16);
    let zoned = zone_width.is_some_and(|w| area.width > NODE_TABLE_WIDTH + w);
    let mut titles = vec![
        "node", "ring", "health", "latency", "files", "bytes", "share",
    ];
    if zoned {
        titles.insert(1, "zone");
    }
    let header = Row::new(titles).style(BOLD);
    let disks = state.health.as_ref().map(|h| &h.disks);
    let rows = visible.iter().map(|n| {
        let disk = disks.and_then(|d| d.get(&n.address));
        let health = if !n.healthy {
            Span::styled("down", ERROR)
        } else if disk.is_some_and(|d| d.low()) {
            Span::styled("disk!", Style::new().fg(Color::Red))
        } else if let Some(q) = disk.map(|d| d.quarantined).filter(|q| *q > 0) {
            Span::styled(format!("rot {q}"), Style::new().fg(Color::Yellow))
        } else {
            Span::styled("ok", Style::new().fg(Color::Green))
        };
        let mut cells = vec![
            Cell::from(Line::from(vec![
                Span::styled("● ", Style::new().fg(node_color(state, &n.address))),
                Span::raw(n.address.clone()),
            ])),
            Cell::from(if n.in_ring { "ring" } else { "spare" }),
            Cell::from(health),
            Cell::from(Line::from(fmt_latency(n.latency_us, n.healthy)).right_aligned()),
            Cell::from(Line::from(n.files.to_string()).right_aligned()),
            Cell::from(Line::from(fmt_bytes(n.bytes)).right_aligned()),
            Cell::from(Line::from(fmt_share(n.share, n.in_ring)).right_aligned()),
        ];
        if zoned {
            cells.insert(1, Cell::from(n.zone.clone()));
        }
        let row = Row::new(cells);
        if stale.is_some() {
            row.style(DIM)
        } else if !n.healthy {
            row.style(ERROR)
        } else {
            row
        }
    });
    let mut widths = vec![
        Constraint::Min(16),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(6),
    ];
    if let Some(width) = zone_width.filter(|_| zoned) {
        widths.insert(1, Constraint::Length(width));
    }
    let table = Table::new(rows, widths).header(header).block(block);
    let mut table_state = TableState::default().with_selected(Some(state.node_selected));
    frame.render_stateful_widget(
        selectable(table, state.focus == Focus::Nodes),
        area,
        &mut table_state,
    );
}

fn selectable(table: Table<'_>, focused: bool) -> Table<'_> {
    // The marker column is always there so columns do not jump when focus moves.
    let table = table.highlight_spacing(HighlightSpacing::Always);
    if focused {
        table
            .highlight_symbol("▶ ")
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    } else {
        table.highlight_symbol("  ")
    }
}

/// Without etcd, or with `h`, its room shows the data at risk instead.
fn draw_etcd_or_risk(state: &State, frame: &mut Frame, area: Rect) {
    let risk = state.health.as_ref().map(|h| &h.risk);
    if !state.etcd_configured() {
        super::risk::draw(frame, area, risk, " · etcd not configured");
    } else if state.show_risk {
        super::risk::draw(frame, area, risk, " · h shows etcd");
    } else {
        draw_etcd(state, frame, area);
    }
}

fn draw_etcd(state: &State, frame: &mut Frame, area: Rect) {
    if !state.etcd_configured() {
        let block = panel(" etcd ", false);
        frame.render_widget(
            Paragraph::new("etcd not configured (start with --etcd EP1,EP2,…)")
                .style(DIM)
                .block(block),
            area,
        );
        return;
    }
    let title = format!(
        " etcd members · {}/{} healthy ",
        state.etcd_healthy(),
        state.etcd_size()
    );
    let block = panel(title, state.focus == Focus::Etcd);
    let header = Row::new([
        "name", "endpoint", "term", "index", "db", "health", "latency",
    ])
    .style(BOLD);
    let leader = state.etcd_leader();
    let rows = state.etcd.iter().map(|r| etcd_row(state, r, leader));
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Min(15),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
        ],
    )
    .header(header)
    .block(block);
    let mut table_state = TableState::default().with_selected(Some(state.etcd_selected));
    frame.render_stateful_widget(
        selectable(table, state.focus == Focus::Etcd),
        area,
        &mut table_state,
    );
}

fn etcd_row<'a>(state: &'a State, r: &'a EtcdRow, leader: Option<u64>) -> Row<'a> {
    let is_leader = r.healthy() && leader.is_some() && r.member_id == leader;
    let name = format!(
        "{}{}",
        if is_leader { "★ " } else { "  " },
        state.etcd_name(r).unwrap_or("?")
    );
    let health = match (&r.error, &r.status, r.probed) {
        (_, _, false) => Span::styled("…", DIM),
        (Some(_), _, _) => Span::styled("down", ERROR),
        (None, Some(s), _) if s.leader_id == 0 => Span::styled("no leader", ERROR),
        _ => Span::styled("ok", Style::new().fg(Color::Green)),
    };
    let right = |s: String| Cell::from(Line::from(s).right_aligned());
    let cells = match (&r.status, &r.error) {
        (Some(s), None) => vec![
            right(s.raft_term.to_string()),
            right(s.raft_index.to_string()),
            right(fmt_bytes(s.db_size)),
            Cell::from(health),
            right(fmt_latency(s.latency_us, true)),
        ],
        _ => vec![
            right("—".into()),
            right("—".into()),
            right("—".into()),
            Cell::from(health),
            right("—".into()),
        ],
    };
    let mut all = vec![Cell::from(name), Cell::from(r.endpoint.as_str())];
    all.extend(cells);
    let row = Row::new(all);
    if r.probed && !r.healthy() {
        row.style(ERROR)
    } else {
        row
    }
}

fn draw_migration(state: &State, frame: &mut Frame, area: Rect, compact: bool) {
    let block = panel(" Migration · events ", state.focus == Focus::Log);
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let head: Vec<Line> = match &state.migration {
        Some(m) => {
            let n_gauges = if compact { 1 } else { 2 };
            let [gauges, rest] =
                Layout::vertical([Constraint::Length(n_gauges), Constraint::Min(0)]).areas(inner);
            draw_gauges(frame, gauges, m, compact);
            let mut head = vec![migration_line(m)];
            head.extend(pace_line(state));
            head.extend(state.health.as_ref().map(health::summary_line));
            head.extend(state.traffic.line());
            draw_log(state, frame, rest, head);
            return;
        }
        None => match &state.pending {
            Some((kind, node)) => vec![Line::raw(format!(
                "{} {node}: waiting for the migration to start…",
                kind.verb()
            ))],
            None => vec![Line::styled("No migration has run on this cluster.", DIM)],
        },
    };
    let mut head = head;
    head.extend(pace_line(state));
    head.extend(state.health.as_ref().map(health::summary_line));
    head.extend(state.traffic.line());
    draw_log(state, frame, inner, head);
}

fn pace_line(state: &State) -> Option<Line<'static>> {
    let pace = state.cluster.as_ref()?.pace.as_ref()?;
    Some(super::pace::line(pace))
}

fn percent(ratio: f64) -> u64 {
    // Floor, so 100 % means done rather than 99.6 % rounded up.
    (ratio * 100.0).floor() as u64
}

fn draw_gauges(frame: &mut Frame, area: Rect, m: &MigrationInfo, compact: bool) {
    let color = if m.errors > 0 {
        Color::Red
    } else if m.finished {
        Color::Green
    } else {
        Color::Cyan
    };
    let style = Style::new().fg(color).bg(Color::DarkGray);
    let files = match m.arc_label() {
        Some(arc) => format!("{arc} · files {}/{}", m.files_done, m.files_total),
        None => format!("files {}/{}", m.files_done, m.files_total),
    };
    let bytes = format!("{} / {}", fmt_bytes(m.bytes_done), fmt_bytes(m.bytes_total));
    if compact {
        let label = format!("{files} · {bytes} · {}%", percent(m.ratio()));
        frame.render_widget(
            Gauge::default()
                .gauge_style(style)
                .ratio(m.ratio())
                .label(label),
            area,
        );
        return;
    }
    let [top, bottom] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    frame.render_widget(
        Gauge::default()
            .gauge_style(style)
            .ratio(m.files_ratio())
            .label(format!("{files} · {}%", percent(m.files_ratio()))),
        top,
    );
    frame.render_widget(
        Gauge::default()
            .gauge_style(style)
            .ratio(m.ratio())
            .label(format!("bytes {bytes} · {}%", percent(m.ratio()))),
        bottom,
    );
}

fn migration_line(m: &MigrationInfo) -> Line<'static> {
    let what = format!(
        "{} {}",
        match m.kind {
            ChangeKind::Add => "add",
            ChangeKind::Remove => "remove",
            ChangeKind::Zone => "zone",
        },
        m.node
    );
    let errors = Span::styled(
        format!("errors {}", m.errors),
        if m.errors > 0 { ERROR } else { Style::new() },
    );
    if m.finished {
        let state = if m.errors == 0 {
            Span::styled("finished ✔ ", Style::new().fg(Color::Green))
        } else {
            Span::styled("finished with errors ", ERROR)
        };
        let mut spans = vec![
            state,
            Span::raw(format!("{what} · {} files · ", m.files_done)),
            errors,
        ];
        if !m.last_error.is_empty() {
            spans.push(Span::styled(format!(" · last: {}", m.last_error), ERROR));
        }
        return Line::from(spans);
    }
    let eta = m
        .eta_seconds()
        .map_or_else(|| "—".to_string(), fmt_duration);
    let mut spans = vec![
        Span::styled("running ", Style::new().fg(Color::Cyan)),
        Span::raw(format!(
            "{what} · {}/s · ETA {eta} · ",
            fmt_bytes(m.bytes_per_second as u64)
        )),
        errors,
    ];
    if !m.current_key.is_empty() {
        spans.push(Span::styled(format!(" · {}", m.current_key), DIM));
    }
    Line::from(spans)
}

/// Header lines, then as much of the event log's tail as fits (minus the scroll).
fn draw_log(state: &State, frame: &mut Frame, area: Rect, head: Vec<Line<'static>>) {
    let room = (area.height as usize).saturating_sub(head.len());
    let end = state.log.len().saturating_sub(state.log_scroll);
    let start = end.saturating_sub(room);
    let mut lines = head;
    lines.extend(state.log.range(start..end).map(|l| {
        Line::from(vec![
            // Lines logged before the first tick have no clock yet.
            Span::styled(
                if l.at.is_empty() {
                    String::new()
                } else {
                    format!("{} ", l.at)
                },
                DIM,
            ),
            Span::styled(l.text.clone(), level_style(l.level)),
        ])
    }));
    frame.render_widget(Paragraph::new(lines), area);
}

/// A rectangle of at most `w`×`h` centred in `area`.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn popup(frame: &mut Frame, area: Rect, title: &str, lines: Vec<Line<'static>>) {
    frame.render_widget(Clear, area);
    let block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(Style::new().fg(Color::Cyan))
        .title(format!(" {title} "));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let key = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    let mut lines = Vec::new();
    // Prompts, confirmations, the filter and the videos view show their own keys on
    // their bottom line; listing them here too would not fit in 80×24.
    lines.push(Line::styled(Context::Normal.title(), BOLD));
    for b in keys::bindings(Context::Normal).chain([&keys::QUIT_ANYWHERE]) {
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<9}", b.label), key),
            Span::raw(b.help),
        ]));
    }
    lines.push(Line::styled(
        "Popups, prompts and the filter show their keys below.",
        DIM,
    ));
    let h = lines.len() as u16 + 2;
    popup(frame, centered(area, 64, h), "Keys", lines);
}

fn draw_add(frame: &mut Frame, area: Rect, input: &str, error: Option<&str>) {
    let mut lines = vec![
        Line::raw("Address of the storage node (host:port):"),
        Line::from(vec![
            Span::styled("> ", BOLD),
            Span::raw(input.to_string()),
            Span::styled("█", Style::new().fg(Color::Cyan)),
        ]),
    ];
    lines.push(match error {
        Some(e) => Line::styled(e.to_string(), ERROR),
        None => Line::raw(""),
    });
    lines.push(key_hints(Context::AddPrompt));
    popup(frame, centered(area, 56, 6), "Add a storage node", lines);
}

fn draw_confirm(frame: &mut Frame, area: Rect, node: &str, plan: &PlanView, typed: &str) {
    let mut lines = vec![Line::styled(format!("Remove {node} from the ring?"), BOLD)];
    match plan {
        PlanView::Loading => lines.push(Line::styled("computing the plan…", DIM)),
        PlanView::Failed(f) => lines.push(Line::styled(format!("no plan: {f}"), ERROR)),
        PlanView::Ready(p) => {
            lines.push(Line::raw(format!(
                "{} files ({}) will move:",
                p.files,
                fmt_bytes(p.bytes)
            )));
            // Keep the popup inside an 80×24 screen; the total above covers the rest.
            let shown = 8;
            for m in p.moves.iter().take(shown) {
                lines.push(Line::raw(format!(
                    "  {} → {}  {} files  {}",
                    m.from,
                    m.to,
                    m.files,
                    fmt_bytes(m.bytes)
                )));
            }
            if p.moves.len() > shown {
                lines.push(Line::styled(
                    format!("  … and {} more moves", p.moves.len() - shown),
                    DIM,
                ));
            }
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::raw(format!(
        "Type its port ({}) to remove it: {typed}▏",
        super::app::port_of(node)
    )));
    lines.push(key_hints(Context::Confirm));
    let h = lines.len() as u16 + 2;
    popup(frame, centered(area, 70, h), "Remove a storage node", lines);
}

fn draw_confirm_cancel(frame: &mut Frame, area: Rect, change: &str) {
    let lines = vec![
        Line::styled(format!("Cancel {change}?"), BOLD),
        Line::raw("Every file already moved goes back to the ring as it was,"),
        Line::raw("then the ring stays unchanged."),
        Line::raw(""),
        key_hints(Context::ConfirmCancel),
    ];
    let h = lines.len() as u16 + 2;
    popup(
        frame,
        centered(area, 70, h),
        "Cancel the ring change",
        lines,
    );
}

fn draw_confirm_repair(
    frame: &mut Frame,
    area: Rect,
    plan: Option<&Result<Vec<String>, super::app::Failure>>,
) {
    let mut lines = vec![Line::styled("Repair the storage?", BOLD)];
    match plan {
        None => lines.push(Line::styled("surveying the nodes…", DIM)),
        Some(Err(f)) => lines.push(Line::styled(format!("no plan: {f}"), ERROR)),
        Some(Ok(plan)) => lines.extend(plan.iter().map(|l| Line::raw(l.clone()))),
    }
    lines.push(Line::raw(""));
    lines.push(key_hints(Context::ConfirmRepair));
    let h = lines.len() as u16 + 2;
    popup(frame, centered(area, 70, h), "Repair", lines);
}

pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    // Switch units at 1000 so a figure never needs a fourth digit before the point.
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn fmt_latency(us: u64, known: bool) -> String {
    if !known {
        "—".into()
    } else if us < 1000 {
        format!("{us} µs")
    } else {
        format!("{:.1} ms", us as f64 / 1000.0)
    }
}

fn fmt_share(share: f64, in_ring: bool) -> String {
    if in_ring {
        format!("{:.1}%", share * 100.0)
    } else {
        "—".into()
    }
}

pub fn fmt_duration(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    }
}
