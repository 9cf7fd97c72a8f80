//! The TUI's state and its keys, kept apart from the terminal so that it can be tested.

use std::cell::Cell;
use std::path::PathBuf;

use serde_json::Value;

use super::model::{CallRow, Item, Model, Update};
use super::store::Detail;
use crate::output::clock::TimeFormat;
use crate::output::filter::Filter;
use crate::output::keys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Calls,
    Connections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    List,
    Items,
    Detail,
}

/// A request the terminal loop carries out for the app (it touches files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Export this call as a HAProxy check.
    Export {
        conn: u64,
        stream: u32,
    },
    /// Write this connection's packets to a file.
    WriteConnection {
        conn: u64,
    },
}

pub struct App {
    pub model: Model,
    /// The capture file exports and `w` read (for a live session, the file it records to).
    pub source: String,
    /// What the summary bar calls the source (the file, or the interface).
    pub label: String,
    pub view: View,
    pub focus: Pane,
    /// Selection in the call list (an index into `visible`), in the item list, and the detail
    /// scroll.
    pub call: usize,
    pub conn: usize,
    pub item: usize,
    /// The cursor line in the detail pane; the hex pane highlights the bytes it describes.
    pub detail_line: usize,
    /// Change with [`App::set_filter`], which keeps `visible` in step.
    filter: String,
    list_filter: ListFilter,
    /// Indexes of the calls the filter lets through, computed once per filter rather than on
    /// every key and redraw: with a million calls a per-draw scan is what makes a viewer lag.
    visible: Vec<usize>,
    /// Typing a filter after `/`.
    pub typing: Option<String>,
    pub help: bool,
    pub status: String,
    /// Where exported checks and written captures go.
    pub out_dir: PathBuf,
    /// The secrets that decrypt `source`: exports find calls in its TLS connections, and
    /// written connections carry their secrets.
    pub tls_keys: Option<std::sync::Arc<crate::tls::KeyLog>>,
    /// First row shown of the list and of the frames pane, as the last draw left them: drawing
    /// scrolls only as needed, and a click maps to the row that is on screen.
    pub list_top: Cell<usize>,
    pub items_top: Cell<usize>,
    pub detail_top: Cell<usize>,
    /// Follow new calls as they arrive (live captures, or a file still loading).
    pub follow: bool,
    /// How the time columns show times (`-t`, and the `t` key cycles through them).
    pub time: TimeFormat,
    /// What the source is doing (loading, capturing, dropped packets), for the summary bar.
    pub feed: String,
}

/// The call list's filter, from the text typed after `/`.
#[derive(Debug, Clone)]
pub enum ListFilter {
    /// Nothing typed: every call.
    All,
    /// A display filter, as `read -Y` takes it, on the fields of the JSON Lines `call` event
    /// and [`ROW_FIELDS`]. `json` says it names a field the row does not keep, which is read
    /// back from the call's stored JSON Lines object: an open call has none.
    Display { filter: Filter, json: bool },
    /// Words that must all match: `status!=0` or `errors` (a problem call), `conn=N`,
    /// `stream=N`, or text of the path.
    Words(String),
}

/// The fields of the JSON Lines `call` event a row keeps, and two of its own: `problem` (a
/// reset, an error status or an unfinished call) and `open` (no end seen yet).
pub const ROW_FIELDS: [&str; 13] = [
    "event",
    "conn",
    "stream",
    "method",
    "path",
    "status",
    "grpc_status",
    "duration",
    "start_ts",
    "request_messages",
    "response_messages",
    "problem",
    "open",
];

impl ListFilter {
    /// A display filter if the text is one on the fields rows keep; words otherwise, so that a
    /// bare path fragment and the short forms (`status!=0`, `conn=3`) still work. The note
    /// says why a text that looked like a display filter was taken as words.
    pub fn parse(text: &str) -> (ListFilter, Option<String>) {
        let text = text.trim();
        let short = |w: &str| {
            matches!(
                Word::of(w),
                Word::Problem | Word::Conn(Some(_)) | Word::Stream(Some(_))
            )
        };
        if text.is_empty() {
            return (ListFilter::All, None);
        }
        if text.split_whitespace().all(short) {
            return (ListFilter::Words(text.into()), None);
        }
        let call_field = |n: &str| keys::CALL.contains(&n) || ROW_FIELDS.contains(&n);
        match Filter::parse(text) {
            Ok(f) => match f.roots().iter().find(|n| !call_field(n)) {
                None => {
                    let json = f.roots().iter().any(|n| !ROW_FIELDS.contains(&n.as_str()));
                    (ListFilter::Display { filter: f, json }, None)
                }
                // A lone word is a path fragment, not a field.
                Some(_) if !text.contains(char::is_whitespace) && f.roots().len() == 1 => {
                    (ListFilter::Words(text.into()), None)
                }
                Some(n) => (
                    ListFilter::Words(text.into()),
                    Some(format!(
                        "calls have no field {n:?} (they have the fields of read's call events, \
                         and problem and open): taken as path words"
                    )),
                ),
            },
            Err(_) => (ListFilter::Words(text.into()), None),
        }
    }

    /// Does a call match? `json` gives its stored JSON Lines object, read only for a filter
    /// that needs it.
    pub fn matches(&self, c: &CallRow, json: impl FnOnce() -> Option<Vec<u8>>) -> bool {
        match self {
            ListFilter::All => true,
            ListFilter::Display {
                filter,
                json: false,
            } => filter.matches_fields(|name| row_field(c, name)),
            ListFilter::Display { filter, json: true } => {
                let json = json();
                filter.matches_fields_or_json(|name| row_field(c, name), json.as_deref())
            }
            ListFilter::Words(text) => text.split_whitespace().all(|w| match Word::of(w) {
                Word::Problem => c.problem,
                Word::Conn(n) => n == Some(c.conn),
                Word::Stream(n) => n == Some(c.stream),
                Word::Path(text) => c.path.contains(text),
            }),
        }
    }
}

/// Whether `filter` lets call `i` of `model` through.
fn keeps(filter: &ListFilter, model: &Model, i: usize) -> bool {
    let Some(c) = model.calls.get(i) else {
        return false;
    };
    filter.matches(c, || model.call_json(i))
}

/// A word of [`ListFilter::Words`].
enum Word<'a> {
    /// `status!=0` or `errors`: a problem call.
    Problem,
    /// `conn=N`; `None` when N is not a number, which no call has.
    Conn(Option<u64>),
    /// `stream=N`, likewise.
    Stream(Option<u32>),
    /// Any other word: text of the path.
    Path(&'a str),
}

impl<'a> Word<'a> {
    fn of(w: &'a str) -> Word<'a> {
        if w == "status!=0" || w == "errors" {
            Word::Problem
        } else if let Some(n) = w.strip_prefix("conn=") {
            Word::Conn(n.parse().ok())
        } else if let Some(n) = w.strip_prefix("stream=") {
            Word::Stream(n.parse().ok())
        } else {
            Word::Path(w)
        }
    }
}

/// A row's field, as the JSON Lines call event has it: null where the call has no value (`-`
/// in the row), so that comparisons go as they go on `read -Y`.
fn row_field(c: &CallRow, name: &str) -> Option<Value> {
    let text = |s: &str| {
        if s == "-" {
            Value::Null
        } else {
            Value::from(s)
        }
    };
    Some(match name {
        "event" => Value::from("call"),
        "conn" => Value::from(c.conn),
        "stream" => Value::from(c.stream),
        "method" => text(&c.method),
        "path" => text(&c.path),
        "status" => c.status.parse::<u64>().map_or(Value::Null, Value::from),
        "grpc_status" => c.grpc_status.map_or(Value::Null, Value::from),
        "duration" => Value::from(c.duration_ms / 1e3),
        "start_ts" => Value::from(c.start_ts_ns as f64 / 1e9),
        "request_messages" => Value::from(c.messages.0),
        "response_messages" => Value::from(c.messages.1),
        "problem" => Value::from(c.problem),
        "open" => Value::from(c.open),
        _ => return None,
    })
}

impl App {
    pub fn new(model: Model, source: &str) -> Self {
        let visible = (0..model.calls.len()).collect();
        App {
            visible,
            model,
            source: source.to_string(),
            label: source.to_string(),
            view: View::Calls,
            focus: Pane::List,
            call: 0,
            conn: 0,
            item: 0,
            detail_line: 0,
            filter: String::new(),
            list_filter: ListFilter::All,
            typing: None,
            help: false,
            status: "? for help".into(),
            out_dir: PathBuf::from("."),
            tls_keys: None,
            list_top: Cell::new(0),
            items_top: Cell::new(0),
            detail_top: Cell::new(0),
            follow: false,
            time: TimeFormat::Relative,
            feed: String::new(),
        }
    }

    /// Applies updates from the dissection, keeping the filtered list in step: new calls are
    /// tested once, and calls whose row changed (a call that ended) are tested again.
    pub fn apply(&mut self, updates: impl IntoIterator<Item = Update>) {
        let before = self.model.calls.len();
        for u in updates {
            self.model.apply(u);
        }
        let selected = self.visible.get(self.call).copied();
        for i in self.model.take_changed() {
            if i >= before {
                continue;
            }
            let keep = self.keeps(i);
            match (self.visible.binary_search(&i), keep) {
                (Err(at), true) => self.visible.insert(at, i),
                (Ok(at), false) => {
                    self.visible.remove(at);
                }
                _ => {}
            }
        }
        for i in before..self.model.calls.len() {
            if self.keeps(i) {
                self.visible.push(i);
            }
        }
        // The selection stays on its call when rows come and go before it.
        if let Some(sel) = selected {
            let (Ok(at) | Err(at)) = self.visible.binary_search(&sel);
            self.call = at.min(self.visible.len().saturating_sub(1));
        }
        if self.follow && self.view == View::Calls && self.focus == Pane::List {
            let last = self.visible.len().saturating_sub(1);
            if last != self.call {
                self.call = last;
                self.item = 0;
                self.detail_line = 0;
            }
        }
    }

    /// Whether the filter lets call `i` through.
    fn keeps(&self, i: usize) -> bool {
        keeps(&self.list_filter, &self.model, i)
    }

    /// The calls the filter lets through. A filter that reads each call's stored JSON back
    /// (most of its time is parsing it) scans a long list in two halves at once.
    fn scan(&self) -> Vec<usize> {
        let n = self.model.calls.len();
        let reads_json = matches!(self.list_filter, ListFilter::Display { json: true, .. });
        if !reads_json || n < 10_000 {
            return (0..n).filter(|&i| self.keeps(i)).collect();
        }
        let (filter, model) = (&self.list_filter, &self.model);
        let half = n / 2;
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                (0..half)
                    .filter(|&i| keeps(filter, model, i))
                    .collect::<Vec<_>>()
            });
            let second: Vec<usize> = (half..n).filter(|&i| keeps(filter, model, i)).collect();
            // A panic in the other half is the filter's, as it would be on this thread.
            let mut all = first
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            all.extend(second);
            all
        })
    }

    /// Indexes of the calls the filter lets through.
    pub fn visible(&self) -> &[usize] {
        &self.visible
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Applies a filter (see [`ListFilter::parse`]) and goes back to the first call; returns
    /// why a text that looked like a display filter was taken as words, if it was.
    pub fn set_filter(&mut self, filter: &str) -> Option<String> {
        self.filter = filter.to_string();
        let (list_filter, note) = ListFilter::parse(filter);
        self.list_filter = list_filter;
        self.visible = self.scan();
        self.call = 0;
        self.item = 0;
        self.detail_line = 0;
        note
    }

    /// The items (frames, messages) of the selected call or connection.
    pub fn items(&self) -> &[usize] {
        match self.view {
            View::Calls => self
                .visible
                .get(self.call)
                .map(|&i| self.model.calls[i].items.as_slice())
                .unwrap_or_default(),
            View::Connections => self
                .model
                .conns
                .get(self.conn)
                .map(|c| c.items.as_slice())
                .unwrap_or_default(),
        }
    }

    pub fn selected_item(&self) -> Option<&Item> {
        self.items().get(self.item).map(|&i| &self.model.items[i])
    }

    /// What the detail and hex panes show: the selected call or connection while the list has
    /// the focus, else the selected frame or message. Read from the store on demand.
    pub fn current(&self) -> Detail {
        if self.focus == Pane::List {
            return match self.view {
                View::Calls => self
                    .visible
                    .get(self.call)
                    .map(|&i| self.model.call_detail(i))
                    .unwrap_or_default(),
                View::Connections => self.model.conn_detail(self.conn),
            };
        }
        self.items()
            .get(self.item)
            .map(|&i| self.model.item_detail(i))
            .unwrap_or_default()
    }

    /// The text of the detail pane.
    pub fn detail(&self) -> Vec<String> {
        self.current().lines.into_iter().map(|l| l.text).collect()
    }

    /// Whether the selection is a gRPC message (not a frame, nor a row of the list).
    pub fn on_message(&self) -> bool {
        self.focus != Pane::List
            && (self.items().get(self.item))
                .and_then(|&i| self.model.items.get(i))
                .is_some_and(|item| matches!(item, super::model::Item::Message { .. }))
    }

    /// The hex dump of the selected frame or message (nothing for lists).
    pub fn hex(&self) -> Vec<String> {
        if self.focus == Pane::List {
            return Vec::new();
        }
        self.current()
            .raw
            .as_deref()
            .map(super::model::hex_dump)
            .unwrap_or_default()
    }

    fn list_len(&self) -> usize {
        match self.view {
            View::Calls => self.visible().len(),
            View::Connections => self.model.conns.len(),
        }
    }

    fn move_by(&mut self, delta: isize) {
        let clamp = |v: usize, len: usize| -> usize {
            let n = v as isize + delta;
            n.clamp(0, len.saturating_sub(1) as isize) as usize
        };
        match self.focus {
            Pane::List => {
                let len = self.list_len();
                match self.view {
                    View::Calls => self.call = clamp(self.call, len),
                    View::Connections => self.conn = clamp(self.conn, len),
                }
                self.item = 0;
                self.detail_line = 0;
            }
            Pane::Items => {
                self.item = clamp(self.item, self.items().len());
                self.detail_line = 0;
            }
            Pane::Detail => {
                let len = self.current().lines.len();
                self.detail_line = clamp(self.detail_line, len);
            }
        }
    }

    fn jump(&mut self, end: bool) {
        self.move_by(if end { isize::MAX / 2 } else { isize::MIN / 2 });
    }

    /// Next (or previous) call matching the filter's path words, from the selection on.
    fn next_match(&mut self, forward: bool) {
        let v = self.visible();
        if v.is_empty() {
            self.status = "no call matches".into();
            return;
        }
        self.call = if forward {
            (self.call + 1) % v.len()
        } else {
            (self.call + v.len() - 1) % v.len()
        };
        self.item = 0;
    }

    /// A click on a pane, and on one of its rows if `row` is given: focus there and select it.
    pub fn click(&mut self, pane: Pane, row: Option<usize>) {
        self.focus = pane;
        let Some(row) = row else { return };
        match pane {
            Pane::List => {
                match self.view {
                    View::Calls => self.call = row.min(self.visible.len().saturating_sub(1)),
                    View::Connections => {
                        self.conn = row.min(self.model.conns.len().saturating_sub(1))
                    }
                }
                self.item = 0;
            }
            Pane::Items => self.item = row.min(self.items().len().saturating_sub(1)),
            Pane::Detail => return,
        }
        self.detail_line = 0;
    }

    /// Handles one key; returns what the terminal loop must do.
    pub fn key(&mut self, key: Key) -> Action {
        if let Some(text) = self.typing.as_mut() {
            match key {
                Key::Enter => {
                    let filter = self.typing.take().unwrap_or_default();
                    let note = self.set_filter(&filter);
                    self.status = format!("{} calls match {:?}", self.visible().len(), self.filter);
                    if let Some(note) = note {
                        self.status = format!("{}; {note}", self.status);
                    }
                }
                Key::Esc => self.typing = None,
                Key::Backspace => {
                    text.pop();
                }
                Key::Char(c) => text.push(c),
                _ => {}
            }
            return Action::None;
        }
        if self.help {
            self.help = false;
            return Action::None;
        }
        match key {
            Key::Char('q') => return Action::Quit,
            Key::Char('?') => self.help = true,
            Key::Down | Key::Char('j') => self.move_by(1),
            Key::Up | Key::Char('k') => self.move_by(-1),
            Key::PageDown => self.move_by(20),
            Key::PageUp => self.move_by(-20),
            Key::Char('g') | Key::Home => self.jump(false),
            Key::Char('G') | Key::End => self.jump(true),
            Key::Tab => {
                self.focus = match self.focus {
                    Pane::List => Pane::Items,
                    Pane::Items => Pane::Detail,
                    Pane::Detail => Pane::List,
                }
            }
            Key::Enter => {
                self.focus = match self.focus {
                    Pane::List => Pane::Items,
                    _ => Pane::Detail,
                }
            }
            Key::Esc => {
                self.focus = match self.focus {
                    Pane::Detail => Pane::Items,
                    _ => Pane::List,
                }
            }
            Key::Char('/') => self.typing = Some(String::new()),
            Key::Char('f') => {
                self.follow = !self.follow;
                self.status = if self.follow {
                    "following new calls (f to stop)".into()
                } else {
                    "not following".into()
                };
                if self.follow {
                    self.view = View::Calls;
                    self.focus = Pane::List;
                    self.call = self.visible.len().saturating_sub(1);
                    self.item = 0;
                    self.detail_line = 0;
                }
            }
            Key::Char('t') => {
                // Those that fit a column: the dated forms would crowd the frames out.
                self.time = match self.time {
                    TimeFormat::Relative => TimeFormat::Absolute,
                    TimeFormat::Absolute => TimeFormat::Utc,
                    TimeFormat::Utc => TimeFormat::Epoch,
                    _ => TimeFormat::Relative,
                };
                self.status = format!("time: {}", self.time.describe());
            }
            Key::Char('n') => self.next_match(true),
            Key::Char('N') => self.next_match(false),
            Key::Char('c') => {
                self.view = match self.view {
                    View::Calls => View::Connections,
                    View::Connections => View::Calls,
                };
                self.focus = Pane::List;
                self.item = 0;
            }
            Key::Char('e') => {
                let v = self.visible();
                if let Some(&i) = v.get(self.call) {
                    let c = &self.model.calls[i];
                    return Action::Export {
                        conn: c.conn,
                        stream: c.stream,
                    };
                }
            }
            Key::Char('w') => {
                let conn = match self.view {
                    View::Calls => self
                        .visible()
                        .get(self.call)
                        .map(|&i| self.model.calls[i].conn),
                    View::Connections => self.model.conns.get(self.conn).map(|c| c.conn),
                };
                if let Some(conn) = conn {
                    return Action::WriteConnection { conn };
                }
            }
            _ => {}
        }
        Action::None
    }
}

/// Keys as the app sees them, whatever the terminal library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Tab,
    Backspace,
}

pub const HELP: &[(&str, &str)] = &[
    ("↑ ↓ j k", "move"),
    ("PgUp PgDn", "move by a page"),
    ("g G", "first, last"),
    ("Tab", "next pane"),
    (
        "(detail)",
        "↑ ↓ move the cursor; the hex pane highlights the bytes of its line",
    ),
    ("click, wheel", "select a row, scroll"),
    ("Enter", "into the frames of a call, then into the detail"),
    ("Esc", "back"),
    (
        "/",
        "filter: as read -Y on call fields (grpc_status != 0 and duration > 0.5, request_headers.x-id == 7), or path text, status!=0, conn=N, stream=N",
    ),
    ("n N", "next, previous call"),
    ("f", "follow: keep the newest call selected as calls arrive"),
    (
        "t",
        "time: since the first packet, local time of day, UTC, since 1970",
    ),
    ("c", "calls or connections"),
    (
        "e",
        "export the selected call as a HAProxy health check (to a file)",
    ),
    ("w", "write the selected call's connection to a pcapng file"),
    ("?", "this help"),
    ("q", "quit"),
];
