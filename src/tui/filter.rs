//! `/` filters the list that has the keyboard: the storage nodes (by address) or the
//! videos (by id). Typed text narrows the rows live, case-insensitive substring; Enter
//! keeps the filter, Esc clears it. The filter is shown in the panel's title.

use super::app::{Action, Mode, State};

/// Whether `text` passes `filter` (an empty filter passes everything).
pub fn matches(filter: &str, text: &str) -> bool {
    filter.is_empty() || text.to_lowercase().contains(&filter.to_lowercase())
}

/// The panel title's note for a filter: `` · /text`` (with a cursor while it is typed),
/// empty when there is none.
pub fn title_note(filter: &str, editing: bool) -> String {
    match (filter.is_empty(), editing) {
        (true, false) => String::new(),
        (_, true) => format!(" · /{filter}▏"),
        (false, false) => format!(" · /{filter}"),
    }
}

/// "3" or "1 of 3": the rows shown, of how many.
pub fn count(shown: usize, total: usize) -> String {
    if shown == total {
        total.to_string()
    } else {
        format!("{shown} of {total}")
    }
}

/// The index to select among `visible` after the rows changed: the row that was selected
/// (`keep`) if it is still shown, else the old index clamped to the rows shown.
pub fn reselect<T: PartialEq>(visible: &[T], keep: Option<&T>, old: usize) -> usize {
    keep.and_then(|k| visible.iter().position(|v| v == k))
        .unwrap_or(old)
        .min(visible.len().saturating_sub(1))
}

/// A key while the node filter is typed: the rows narrow live, the selection stays on
/// the same node while it is shown.
pub(super) fn on_node_key(state: &mut State, action: Action) {
    let selected = state.selected_node().map(|n| n.address.clone());
    match action {
        Action::Input(c) if !c.is_control() => state.node_filter.push(c),
        Action::Backspace => {
            state.node_filter.pop();
        }
        Action::Submit => state.mode = Mode::Normal,
        Action::Cancel => {
            state.node_filter.clear();
            state.mode = Mode::Normal;
        }
        Action::Up | Action::Down => {
            let shown = state.visible_nodes().len();
            state.node_selected =
                super::app::step(state.node_selected, shown, action == Action::Down);
            return;
        }
        _ => return,
    }
    reselect_node(state, selected.as_deref());
}

/// Keeps the selection on `keep` if it is shown, else on a row that is.
pub(super) fn reselect_node(state: &mut State, keep: Option<&str>) {
    let visible: Vec<&str> = state
        .visible_nodes()
        .iter()
        .map(|n| n.address.as_str())
        .collect();
    state.node_selected = reselect(&visible, keep.as_ref(), state.node_selected);
}
