//! The videos view: a panel over the console listing the videos (id, state, size, files,
//! length, qualities), newest first, with a key to delete the selected one after a
//! confirmation. Its state lives in [`super::app::Mode::Videos`]; `update` hands it the
//! keys and results that concern it, and `draw` renders it.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, BorderType, Cell, Clear, Paragraph, Row, Table, TableState};

use super::app::{Action, Command, Failure, Level, Mode, State};
use super::keys::Context;
use super::view::{fmt_bytes, fmt_duration, key_hints};

/// Videos fetched at once: the newest; the view says when there are more.
pub const PAGE: u32 = 200;

/// One video as the admin service lists it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VideoRow {
    pub id: String,
    /// `processing`, `ready` or `deleting`.
    pub state: String,
    pub bytes: u64,
    pub files: u64,
    pub duration_seconds: f64,
    pub height: u32,
    pub renditions: u32,
}

/// A ListVideos answer: the rows, and whether older videos were left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VideoList {
    pub rows: Vec<VideoRow>,
    pub more: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct VideosView {
    pub list: Option<Result<VideoList, Failure>>,
    pub selected: usize,
    /// The id waiting for the operator's confirmation.
    pub confirm: Option<String>,
    /// Deletes sent and not answered yet.
    pub deleting: Vec<String>,
    /// Only videos whose id contains this are shown (`/`); empty shows all.
    pub filter: String,
    /// The filter is being typed.
    pub filtering: bool,
}

impl VideosView {
    /// The rows the filter lets through; `selected` indexes these.
    pub fn visible_rows(&self) -> Vec<&VideoRow> {
        match &self.list {
            Some(Ok(list)) => list
                .rows
                .iter()
                .filter(|r| super::filter::matches(&self.filter, &r.id))
                .collect(),
            _ => vec![],
        }
    }

    pub fn selected_row(&self) -> Option<&VideoRow> {
        self.visible_rows().get(self.selected).copied()
    }

    /// Keeps the selection on the video `keep` while it is shown, else on a shown row.
    fn reselect(&mut self, keep: Option<&str>) {
        let ids: Vec<&str> = self.visible_rows().iter().map(|r| r.id.as_str()).collect();
        self.selected = super::filter::reselect(&ids, keep.as_ref(), self.selected);
    }

    /// A key while the filter is typed.
    fn on_filter_key(&mut self, action: Action) {
        let keep = self.selected_row().map(|r| r.id.clone());
        match action {
            Action::Input(c) if !c.is_control() => self.filter.push(c),
            Action::Backspace => {
                self.filter.pop();
            }
            Action::Submit => self.filtering = false,
            Action::Cancel => {
                self.filter.clear();
                self.filtering = false;
            }
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => {
                let last = self.visible_rows().len().saturating_sub(1);
                self.selected = (self.selected + 1).min(last);
            }
            _ => {}
        }
        self.reselect(keep.as_deref());
    }
}

/// The key context of the view: the list, its filter, or the confirmation.
pub fn context(view: &VideosView) -> Context {
    if view.confirm.is_some() {
        Context::ConfirmDelete
    } else if view.filtering {
        Context::Filter
    } else {
        Context::Videos
    }
}

/// Opens the view and asks for the list.
pub fn open(state: &mut State) -> Vec<Command> {
    state.mode = Mode::Videos(VideosView::default());
    vec![Command::ListVideos]
}

/// A key while the view is open.
pub fn on_key(state: &mut State, action: Action) -> Vec<Command> {
    let Mode::Videos(view) = &mut state.mode else {
        return vec![];
    };
    if let Some(id) = view.confirm.clone() {
        return match action {
            Action::Confirm => {
                view.confirm = None;
                view.deleting.push(id.clone());
                state.say(Level::Info, format!("deleting video {id}…"));
                vec![Command::DeleteVideo(id)]
            }
            Action::Cancel => {
                view.confirm = None;
                vec![]
            }
            _ => vec![],
        };
    }
    if view.filtering {
        view.on_filter_key(action);
        return vec![];
    }
    let len = view.visible_rows().len();
    match action {
        Action::OpenFilter => {
            view.filtering = true;
            vec![]
        }
        Action::Up => {
            view.selected = view.selected.saturating_sub(1);
            vec![]
        }
        Action::Down => {
            view.selected = (view.selected + 1).min(len.saturating_sub(1));
            vec![]
        }
        Action::Refresh => vec![Command::ListVideos],
        Action::OpenRemove => {
            match view.selected_row() {
                Some(row) if row.state == "ready" || row.state == "deleting" => {
                    view.confirm = Some(row.id.clone());
                }
                Some(row) => {
                    let text = format!("{} is still being uploaded; delete it once ready", row.id);
                    state.say(Level::Error, text);
                }
                None => {}
            }
            vec![]
        }
        Action::Cancel => {
            state.mode = Mode::Normal;
            vec![]
        }
        _ => vec![],
    }
}

/// A ListVideos answer; ignored once the view is closed.
pub fn on_listed(state: &mut State, result: Result<VideoList, Failure>) -> Vec<Command> {
    if let Mode::Videos(view) = &mut state.mode {
        let keep = view.selected_row().map(|r| r.id.clone());
        view.list = Some(result);
        view.reselect(keep.as_deref());
    }
    vec![]
}

/// A DeleteVideo answer: logged, and the list fetched again if it is open.
pub fn on_deleted(state: &mut State, id: String, result: Result<u64, Failure>) -> Vec<Command> {
    match result {
        Ok(files) => state.say(
            Level::Success,
            format!("deleted video {id} ({files} files)"),
        ),
        Err(f) => state.say(Level::Error, format!("delete {id} refused: {f}")),
    }
    match &mut state.mode {
        Mode::Videos(view) => {
            view.deleting.retain(|d| *d != id);
            vec![Command::ListVideos]
        }
        _ => vec![],
    }
}

const DIM: Style = Style::new().fg(Color::DarkGray);

fn state_style(state: &str) -> Style {
    match state {
        "ready" => Style::new().fg(Color::Green),
        "processing" => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Red),
    }
}

/// Draws the view over the console (inside `area`, leaving the title, message and help
/// rows, so the outcome of a delete shows under the list).
pub fn draw(frame: &mut Frame, area: Rect, view: &VideosView) {
    let inner = Rect {
        x: area.x,
        y: area.y + 1,
        width: area.width,
        height: area.height.saturating_sub(3),
    };
    frame.render_widget(Clear, inner);
    let shown = view.visible_rows();
    let note = super::filter::title_note(&view.filter, view.filtering);
    let title = match &view.list {
        Some(Ok(list)) => format!(
            " Videos ({}{}){note} ",
            if list.more { "newest " } else { "" },
            super::filter::count(shown.len(), list.rows.len())
        ),
        _ => format!(" Videos{note} "),
    };
    let block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(Style::new().fg(Color::Cyan))
        .title(title)
        .title_bottom(key_hints(context(view)));
    let rows = match &view.list {
        None => {
            frame.render_widget(
                Paragraph::new(Line::styled("loading…", DIM)).block(block),
                inner,
            );
            return;
        }
        Some(Err(f)) => {
            let text = Line::styled(
                format!("cannot list videos: {f}"),
                Style::new().fg(Color::Red),
            );
            frame.render_widget(Paragraph::new(text).block(block), inner);
            return;
        }
        Some(Ok(list)) if list.rows.is_empty() => {
            frame.render_widget(
                Paragraph::new(Line::styled("no videos", DIM)).block(block),
                inner,
            );
            return;
        }
        Some(Ok(_)) if shown.is_empty() => {
            let text = format!("no video id contains \"{}\"", view.filter);
            frame.render_widget(Paragraph::new(Line::styled(text, DIM)).block(block), inner);
            return;
        }
        Some(Ok(_)) => shown,
    };
    let table_rows = rows.iter().map(|r| {
        let state = if view.deleting.contains(&r.id) {
            "deleting".to_string()
        } else {
            r.state.clone()
        };
        let quality = match (r.height, r.renditions) {
            (0, _) => String::new(),
            (h, 0 | 1) => format!("{h}p"),
            (h, n) => format!("{h}p ×{n}"),
        };
        Row::new(vec![
            Cell::from(r.id.clone()),
            Cell::from(state.clone()).style(state_style(&state)),
            Cell::from(fmt_bytes(r.bytes)),
            Cell::from(r.files.to_string()),
            Cell::from(fmt_duration(r.duration_seconds.round() as u64)),
            Cell::from(quality),
        ])
    });
    let table = Table::new(
        table_rows,
        [
            Constraint::Min(12),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(9),
        ],
    )
    .header(
        Row::new(["id", "state", "size", "files", "length", "quality"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .block(block);
    let mut table_state = TableState::default().with_selected(Some(view.selected));
    frame.render_stateful_widget(table, inner, &mut table_state);

    if let Some(id) = &view.confirm {
        let lines = vec![
            Line::styled(
                format!("Delete video {id}?"),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Line::raw("Every file of it goes from every node."),
            Line::raw(""),
            key_hints(Context::ConfirmDelete),
        ];
        let w = 56.min(area.width);
        let popup = Rect {
            x: area.x + (area.width - w) / 2,
            y: area.y + area.height / 2 - 3,
            width: w,
            height: 6,
        };
        frame.render_widget(Clear, popup);
        let block = Block::bordered()
            .border_type(BorderType::Double)
            .border_style(Style::new().fg(Color::Red))
            .title(" Delete a video ");
        frame.render_widget(Paragraph::new(lines).block(block), popup);
    }
}
