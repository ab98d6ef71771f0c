//! The data-at-risk panel: files below R good copies, the resync queue and its errors,
//! and per node the hinted and quarantined copies and the last and next scrub; the last
//! and next repair. It takes the etcd panel's room when the console has no etcd.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use crate::admin::wire;

/// What the panel shows, from a ClusterHealth answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RiskInfo {
    pub under_replicated: u64,
    pub queue_length: u64,
    pub healed: u64,
    /// Queue entries: key, tries, last error.
    pub queue: Vec<(String, u32, String)>,
    pub nodes: Vec<NodeRisk>,
    /// Unix milliseconds; 0 when unknown.
    pub last_repair_ms: i64,
    pub next_repair_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeRisk {
    pub address: String,
    pub up: bool,
    pub hinted: u64,
    pub quarantined: u64,
    pub last_scrub_ms: u64,
    pub next_scrub_ms: u64,
}

pub fn risk_info(r: &wire::ClusterHealthResponse) -> RiskInfo {
    RiskInfo {
        under_replicated: r.files_under_replicated,
        queue_length: r.resync_queue_length,
        healed: r.resync_healed,
        queue: r
            .resync
            .iter()
            .map(|i| (i.key.clone(), i.attempts, i.last_error.clone()))
            .collect(),
        nodes: r
            .nodes
            .iter()
            .map(|n| NodeRisk {
                address: n.address.clone(),
                up: n.up,
                hinted: n.hinted,
                quarantined: n.quarantined,
                last_scrub_ms: n.scrub_last_finished_ms,
                next_scrub_ms: n.scrub_next_pass_ms,
            })
            .collect(),
        last_repair_ms: r.last_repair.as_ref().map_or(0, |l| l.finished_at_ms),
        next_repair_ms: r.next_repair_at_ms,
    }
}

/// "06-01 12:00" in UTC, or "-".
fn when(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .filter(|_| ms > 0)
        .map(|t| t.format("%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn draw(frame: &mut Frame, area: Rect, risk: Option<&RiskInfo>, title_note: &str) {
    let warn = Style::new().fg(Color::Yellow);
    let ok = Style::new().fg(Color::Green);
    let dim = Style::new().fg(Color::DarkGray);
    let block = Block::bordered().title(format!(" data at risk{title_note} "));
    let Some(risk) = risk else {
        frame.render_widget(
            Paragraph::new("waiting for the storage's health…")
                .style(dim)
                .block(block),
            area,
        );
        return;
    };
    let style_of = |n: u64| if n > 0 { warn } else { ok };
    let mut lines = vec![Line::from(vec![
        Span::raw("below R: "),
        Span::styled(
            risk.under_replicated.to_string(),
            style_of(risk.under_replicated),
        ),
        Span::raw("  resync queue: "),
        Span::styled(risk.queue_length.to_string(), style_of(risk.queue_length)),
        Span::raw(format!(
            " (healed {})  repair last {} next {}",
            risk.healed,
            when(risk.last_repair_ms),
            when(risk.next_repair_ms)
        )),
    ])];
    for (key, tries, error) in risk.queue.iter().take(2) {
        let text = if error.is_empty() {
            format!("  {key}")
        } else {
            format!("  {key}: {tries} tries, {error}")
        };
        lines.push(Line::styled(text, warn));
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let head_h = (lines.len() as u16).min(inner.height);
    let [head, table] =
        ratatui::layout::Layout::vertical([Constraint::Length(head_h), Constraint::Min(0)])
            .areas(inner);
    frame.render_widget(Paragraph::new(lines), head);
    let rows = risk.nodes.iter().map(|n| {
        Row::new(vec![
            Cell::from(n.address.clone()),
            Cell::from(if n.up { "up" } else { "DOWN" }),
            Cell::from(n.hinted.to_string()).style(style_of(n.hinted)),
            Cell::from(n.quarantined.to_string()).style(style_of(n.quarantined)),
            Cell::from(when(n.last_scrub_ms as i64)),
            Cell::from(when(n.next_scrub_ms as i64)),
        ])
    });
    let header = Row::new(["node", "", "hinted", "rot", "scrub last", "next"]).style(dim);
    let widths = [
        Constraint::Min(15),
        Constraint::Length(4),
        Constraint::Length(6),
        Constraint::Length(4),
        Constraint::Length(11),
        Constraint::Length(11),
    ];
    frame.render_widget(Table::new(rows, widths).header(header), table);
}
