//! Drawing the TUI: a summary bar, the call (or connection) list, the frames and messages of the
//! selection, and the detail of the selected one.

use std::cell::Cell;

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::app::{App, Pane, View, HELP};
use super::model::{Item, Model};
use crate::output::clock::{self, TimeFormat};

/// Colours, unless `NO_COLOR` says not to; selection and problems still stand out by weight.
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn from_env() -> Self {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn problem(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Red)
        } else {
            Style::default().add_modifier(Modifier::BOLD)
        }
    }

    fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    fn border(&self, focused: bool) -> Style {
        match (focused, self.color) {
            (true, true) => Style::default().fg(Color::Cyan),
            (true, false) => Style::default().add_modifier(Modifier::BOLD),
            _ => Style::default(),
        }
    }
}

fn rel(model: &Model, ts: i64) -> f64 {
    ts.saturating_sub(model.first_ts_ns.unwrap_or(ts)) as f64 / 1e9
}

/// A time column's text in the app's time format, to the millisecond (`millis`) or to the
/// microsecond.
fn time_text(app: &App, ts: i64, millis: bool) -> String {
    let mut s = String::new();
    match (app.time, millis) {
        (TimeFormat::Relative, true) => s = format!("{:.3}", rel(&app.model, ts)),
        (TimeFormat::Relative, false) => s = format!("{:.6}", rel(&app.model, ts)),
        (absolute, true) => clock::push_absolute_millis(&mut s, absolute, ts),
        (absolute, false) => clock::push_absolute(&mut s, absolute, ts),
    }
    s
}

/// A time column's width: `relative` for seconds since the first packet. A time of day is
/// kept whole on a narrow screen (other columns give way), where a number of seconds may lose
/// a decimal.
fn time_width(app: &App, relative: u16, millis: bool) -> Constraint {
    match app.time {
        TimeFormat::Relative => Constraint::Length(relative),
        absolute => Constraint::Min(absolute.width() as u16 - if millis { 3 } else { 0 }),
    }
}

/// Where the panes go on a screen of a given size. Drawing and mouse clicks both use it, so a
/// click lands on the row that was drawn there.
struct Areas {
    bar: Rect,
    list: Rect,
    items: Rect,
    /// The detail, and the hex pane under it when there is one.
    detail: Rect,
    status: Rect,
}

fn areas(area: Rect) -> Areas {
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .split(area);
    // Narrow screens stack the panes; wide ones put the list on the left.
    let wide = area.width >= 120;
    let (list, right) = if wide {
        let cols = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Percentage(55), Constraint::Percentage(45)])
            .split(rows[1]);
        (cols[0], cols[1])
    } else {
        let parts = Layout::default()
            .direction(Direction::Vertical)
            .constraints([Constraint::Percentage(40), Constraint::Percentage(60)])
            .split(rows[1]);
        (parts[0], parts[1])
    };
    let right = Layout::default()
        .direction(if wide {
            Direction::Vertical
        } else {
            Direction::Horizontal
        })
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(right);
    Areas {
        bar: rows[0],
        list,
        items: right[0],
        detail: right[1],
        status: rows[2],
    }
}

/// What a left click at (`x`, `y`) on a `screen` points at: a pane, and the row of its list
/// under the pointer if there is one.
pub fn click(app: &App, screen: Rect, x: u16, y: u16) -> Option<(Pane, Option<usize>)> {
    let a = areas(screen);
    let inside = |r: Rect| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height;
    // The row under the pointer in a table drawn with `window`: below the border and header.
    let row = |r: Rect, len: usize, selected: Option<usize>, top: &Cell<usize>| {
        let (range, _) = window(len, selected, r, top);
        let line = y.checked_sub(r.y + 2)? as usize;
        (line < range.len() && y + 1 < r.y + r.height).then_some(range.start + line)
    };
    if inside(a.list) {
        let (len, sel) = match app.view {
            View::Calls => (app.visible().len(), app.call),
            View::Connections => (app.model.conns.len(), app.conn),
        };
        Some((Pane::List, row(a.list, len, Some(sel), &app.list_top)))
    } else if inside(a.items) {
        let sel = (app.focus != Pane::List).then_some(app.item);
        Some((
            Pane::Items,
            row(a.items, app.items().len(), sel, &app.items_top),
        ))
    } else if inside(a.detail) {
        Some((Pane::Detail, None))
    } else {
        None
    }
}

pub fn draw(f: &mut Frame<'_>, app: &App, theme: &Theme) {
    let area = f.area();
    let a = areas(area);
    let m = &app.model;
    let bar = format!(
        " h2scope │ {}{} │ {} packets │ {} connections │ {} calls │ {} errors │ filter: {}{}",
        app.label,
        if app.feed.is_empty() {
            String::new()
        } else {
            format!(" ({})", app.feed)
        },
        m.packets,
        m.conns.len(),
        m.calls.len(),
        m.errors,
        if app.filter().is_empty() {
            "-"
        } else {
            app.filter()
        },
        if app.follow { " │ following" } else { "" }
    );
    f.render_widget(
        Paragraph::new(bar).style(Style::default().add_modifier(Modifier::REVERSED)),
        a.bar,
    );

    match app.view {
        View::Calls => draw_calls(f, app, theme, a.list),
        View::Connections => draw_conns(f, app, theme, a.list),
    }
    draw_items(f, app, theme, a.items);
    let current = app.current();
    let raw = current.raw.as_deref().filter(|_| app.focus != Pane::List);
    let (detail_area, hex_area) = match raw {
        None => (a.detail, None),
        Some(_) => {
            let parts = Layout::default()
                .direction(Direction::Vertical)
                .constraints([Constraint::Percentage(60), Constraint::Percentage(40)])
                .split(a.detail);
            (parts[0], Some(parts[1]))
        }
    };
    let cursor = app.detail_line.min(current.lines.len().saturating_sub(1));
    let in_detail = app.focus == Pane::Detail;
    let (range, _) = window_rows(
        current.lines.len(),
        in_detail.then_some(cursor),
        detail_area.height.saturating_sub(2) as usize,
        &app.detail_top,
    );
    let detail: Vec<Line<'_>> = current.lines[range.clone()]
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let line = Line::from(l.text.clone());
            if in_detail && range.start + k == cursor {
                line.style(theme.selected())
            } else {
                line
            }
        })
        .collect();
    f.render_widget(
        Paragraph::new(detail).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" detail ")
                .border_style(theme.border(in_detail)),
        ),
        detail_area,
    );
    if let (Some(area), Some(raw)) = (hex_area, raw) {
        let span = current
            .lines
            .get(cursor)
            .and_then(|l| l.span.clone())
            .map(|s| s.start.min(raw.len())..s.end.min(raw.len()));
        f.render_widget(
            Paragraph::new(hex_lines(raw, span.clone(), area, theme)).block(
                Block::default().borders(Borders::ALL).title(match span {
                    Some(s) if !s.is_empty() => format!(
                        " bytes {}..{} of {} (the detail line under the cursor) ",
                        s.start,
                        s.end,
                        raw.len()
                    ),
                    _ if app.on_message() => {
                        " bytes of the message (decompressed, after its 5-byte prefix) ".to_string()
                    }
                    _ => " bytes (9-byte frame header, then payload) ".to_string(),
                }),
            ),
            area,
        );
    }

    let status = match &app.typing {
        Some(t) => format!(" filter: {t}▏  (Enter to apply, Esc to cancel)"),
        None => format!(" {}", app.status),
    };
    f.render_widget(Paragraph::new(status), a.status);

    if app.help {
        let w = area.width.min(84);
        let h = (HELP.len() as u16 + 2).min(area.height);
        let r = Rect::new(
            area.x + (area.width - w) / 2,
            area.y + (area.height - h) / 2,
            w,
            h,
        );
        let lines: Vec<Line<'_>> = HELP
            .iter()
            .map(|(k, what)| Line::from(format!(" {k:<12} {what}")))
            .collect();
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys ")),
            r,
        );
    }
}

/// The rows of a list that fit in `area` with `selected` on screen: the range to build and the
/// selection within it. Building every row on each redraw costs as much as the list is long,
/// which is what makes a viewer of a million frames lag. `top` is the first row shown by the
/// last draw; it moves only as far as needed to keep the selection in view, so the list does not
/// jump under the pointer when a visible row is clicked or the selection moves back up.
fn window(
    len: usize,
    selected: Option<usize>,
    area: Rect,
    top: &Cell<usize>,
) -> (std::ops::Range<usize>, Option<usize>) {
    // Borders and the header row take three lines.
    window_rows(len, selected, (area.height as usize).saturating_sub(3), top)
}

/// [`window`] for a body of `body` lines.
fn window_rows(
    len: usize,
    selected: Option<usize>,
    body: usize,
    top: &Cell<usize>,
) -> (std::ops::Range<usize>, Option<usize>) {
    let body = body.max(1);
    let mut start = top.get().min(len.saturating_sub(body));
    if let Some(s) = selected {
        if s < start {
            start = s;
        } else if s >= start + body {
            start = s + 1 - body;
        }
    }
    top.set(start);
    let end = (start + body).min(len);
    (start..end, selected.map(|s| s.saturating_sub(start)))
}

fn draw_calls(f: &mut Frame<'_>, app: &App, theme: &Theme, area: Rect) {
    let m = &app.model;
    let (range, selected) = window(app.visible().len(), Some(app.call), area, &app.list_top);
    let rows: Vec<Row<'_>> = app.visible()[range]
        .iter()
        .map(|&i| {
            let c = &m.calls[i];
            let row = Row::new(vec![
                format!("#{}", c.conn),
                c.stream.to_string(),
                time_text(app, c.start_ts_ns, true),
                c.method.clone(),
                c.path.clone(),
                c.status.clone(),
                Model::grpc_status_text(c.grpc_status),
                // A call in progress shows how long it has run so far.
                format!("{:.1}ms{}", c.duration_ms, if c.open { "…" } else { "" }),
                format!("{}/{}", c.messages.0, c.messages.1),
            ]);
            if c.problem {
                row.style(theme.problem())
            } else {
                row
            }
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(6),
            time_width(app, 8, true),
            Constraint::Length(6),
            Constraint::Min(20),
            Constraint::Length(4),
            Constraint::Length(13),
            Constraint::Length(9),
            Constraint::Length(5),
        ],
    )
    .header(
        Row::new(vec![
            "conn", "stream", "time", "method", "path", "http", "grpc", "duration", "msgs",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(theme.selected())
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(" calls ")
            .border_style(theme.border(app.focus == Pane::List)),
    );
    let mut state = TableState::default().with_selected(selected);
    f.render_stateful_widget(table, area, &mut state);
}

fn draw_conns(f: &mut Frame<'_>, app: &App, theme: &Theme, area: Rect) {
    let (range, selected) = window(app.model.conns.len(), Some(app.conn), area, &app.list_top);
    let rows: Vec<Row<'_>> = app.model.conns[range]
        .iter()
        .map(|c| {
            Row::new(vec![
                format!("#{}", c.conn),
                c.client.clone(),
                c.server.clone(),
                c.tls.clone(),
                c.calls.to_string(),
                format!("{:.3}s", c.duration_s),
                format!("{}/{}", c.bytes[0], c.bytes[1]),
                c.pings.to_string(),
                c.goaways.to_string(),
                c.end.clone(),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Min(15),
            Constraint::Min(15),
            Constraint::Length(4),
            Constraint::Length(5),
            Constraint::Length(9),
            Constraint::Length(13),
            Constraint::Length(5),
            Constraint::Length(6),
            Constraint::Length(11),
        ],
    )
    .header(
        Row::new(vec![
            "conn", "client", "server", "tls", "calls", "lifetime", "bytes", "pings", "goaway",
            "end",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(theme.selected())
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(" connections ")
            .border_style(theme.border(app.focus == Pane::List)),
    );
    let mut state = TableState::default().with_selected(selected);
    f.render_stateful_widget(table, area, &mut state);
}

fn draw_items(f: &mut Frame<'_>, app: &App, theme: &Theme, area: Rect) {
    let m = &app.model;
    let focused = app.focus != Pane::List;
    let (range, selected) = window(
        app.items().len(),
        focused.then_some(app.item),
        area,
        &app.items_top,
    );
    let rows: Vec<Row<'_>> = app.items()[range]
        .iter()
        .map(|&i| match &m.items[i] {
            Item::Frame(fr) => Row::new(vec![
                fr.packet.to_string(),
                time_text(app, fr.ts_ns, false),
                format!(":{}", fr.src_port),
                fr.kind.name().to_string(),
                fr.kind.flag_names(fr.flags).join(","),
                fr.length.to_string(),
                m.item_summary(i),
            ]),
            Item::Message {
                packet,
                ts_ns,
                side,
                index,
                ..
            } => Row::new(vec![
                packet.to_string(),
                time_text(app, *ts_ns, false),
                format!("  ↳ {} #{index}", side.as_str()),
                "MESSAGE".into(),
                String::new(),
                String::new(),
                m.item_summary(i),
            ]),
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            time_width(app, 9, false),
            Constraint::Length(12),
            Constraint::Length(13),
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec![
            "pkt", "time", "from", "type", "flags", "len", "summary",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(theme.selected())
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(" frames and messages ")
            .border_style(theme.border(app.focus == Pane::Items)),
    );
    let mut state = TableState::default().with_selected(selected);
    f.render_stateful_widget(table, area, &mut state);
}

/// The hex rows that fit in `area`, scrolled so that the highlighted bytes (`span`) start on
/// screen, with those bytes (hex and text) in the selection style.
fn hex_lines(
    raw: &[u8],
    span: Option<std::ops::Range<usize>>,
    area: Rect,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let rows = raw.len().div_ceil(16);
    let body = (area.height as usize).saturating_sub(2).max(1);
    let first = span
        .as_ref()
        .map(|s| (s.start / 16).saturating_sub(1))
        .unwrap_or(0)
        .min(rows.saturating_sub(body));
    let lit = |i: usize| span.as_ref().is_some_and(|s| s.contains(&i));
    (first..rows.min(first + body))
        .map(|row| {
            let text = super::model::hex_row(raw, row);
            let base = row * 16;
            let n = (raw.len() - base).min(16);
            if !(0..n).any(|j| lit(base + j)) {
                return Line::from(text);
            }
            // Columns of byte j: hex at 6 + 3j (+1 after the eighth), text at 56 + j.
            let mut marked = vec![false; text.len()];
            for j in (0..n).filter(|&j| lit(base + j)) {
                let h = 6 + 3 * j + usize::from(j >= 8);
                marked[h] = true;
                marked[h + 1] = true;
                if let Some(m) = marked.get_mut(56 + j) {
                    *m = true;
                }
            }
            let mut spans = Vec::new();
            let mut start = 0;
            for k in 1..=text.len() {
                if k == text.len() || marked[k] != marked[start] {
                    let piece = text[start..k].to_string();
                    spans.push(if marked[start] {
                        Span::styled(piece, theme.selected())
                    } else {
                        Span::raw(piece)
                    });
                    start = k;
                }
            }
            Line::from(spans)
        })
        .collect()
}
