//! What the terminal UI shows, built from the event stream: one row per call, per frame, per
//! message and per connection.
//!
//! Two halves, so that dissection can run on another thread (or from a live interface) while
//! the screen is in use: a [`Builder`] turns events into [`Update`]s and writes each row's
//! detail to the [store](super::store); the [`Model`] applies updates and holds only the index
//! of rows and their one-line summaries. A call gets its row at its first frame, so calls in
//! progress (a long stream, a live capture) show up at once, and the row is completed when the
//! call ends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::ops::Range;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::analysis::health::ConnectionHealth;
use crate::event::{ConnectionEnd, Event, FrameDetail, FrameEvent, MessageEvent, Sink};
use crate::grpc::message::Schemaless;
use crate::grpc::Side;
use crate::http2::call::{
    grpc_status_name, header_value, lossless, printable, Call, CallEnd, HeaderText,
};
use crate::http2::frame::{
    error_code_label, error_code_name, flags, setting, FrameHeader, FrameType, FRAME_HEADER_LEN,
};
use crate::http2::hpack::{field_spans, HeaderField, Representation};
use crate::output::grpcurl::{GrpcurlOptions, PendingCalls, Requests};

use super::frame_record;
use super::store::{Detail, DetailLine, DetailWriter, StoreReader, StoreWriter, Stored};

#[derive(Debug, Clone)]
pub struct FrameRow {
    pub packet: u64,
    pub ts_ns: i64,
    pub stream: u32,
    /// The sender's port: it tells the two sides apart in little room.
    pub src_port: u16,
    pub kind: FrameType,
    pub flags: u8,
    pub length: u32,
    pub stored: Stored,
}

/// A frame or a message, as listed under a call or a connection.
#[derive(Debug, Clone)]
pub enum Item {
    Frame(FrameRow),
    Message {
        packet: u64,
        ts_ns: i64,
        side: Side,
        index: u32,
        stored: Stored,
    },
}

impl Item {
    pub fn packet(&self) -> u64 {
        match self {
            Item::Frame(f) => f.packet,
            Item::Message { packet, .. } => *packet,
        }
    }

    fn stored(&self) -> Stored {
        match self {
            Item::Frame(f) => f.stored,
            Item::Message { stored, .. } => *stored,
        }
    }
}

pub use crate::output::hexdump::{hex_dump, hex_row};

#[derive(Debug, Clone)]
pub struct CallRow {
    pub conn: u64,
    pub stream: u32,
    pub method: String,
    pub path: String,
    pub status: String,
    pub grpc_status: Option<u32>,
    pub duration_ms: f64,
    pub messages: (u32, u32),
    pub start_ts_ns: i64,
    /// A reset, an error status or an unfinished call: highlighted.
    pub problem: bool,
    /// Still in progress: no end seen yet.
    pub open: bool,
    /// Frames and messages of this call, in capture order, as indexes into `Model::items`.
    pub items: Vec<usize>,
    pub stored: Stored,
    /// The call's JSON Lines object, which display filters on the fields a row does not keep
    /// read back; nothing while the call is open.
    pub json: Stored,
    /// What a gRPC call sent ([`Requests::to_record`]), from which its detail shows the grpcurl
    /// command that makes it again; nothing while the call is open, or for other calls.
    pub requests: Stored,
}

#[derive(Debug, Clone)]
pub struct ConnRow {
    pub conn: u64,
    pub client: String,
    pub server: String,
    pub end: String,
    /// "1.3" and the like for a connection carried in TLS, once it ended.
    pub tls: String,
    pub duration_s: f64,
    pub calls: usize,
    pub bytes: [u64; 2],
    /// PINGs sent (not their ACKs) and GOAWAYs, counted as the frames arrive.
    pub pings: u32,
    pub goaways: u32,
    /// Frames on stream 0 (SETTINGS, PING, GOAWAY, WINDOW_UPDATE), as indexes into `items`.
    pub items: Vec<usize>,
    /// The connection's health report once it ended.
    pub stored: Stored,
}

/// Who an item is listed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Call(usize),
    Conn(usize),
}

/// One change to the [`Model`], in the order the builder made them.
#[derive(Debug, Clone)]
pub enum Update {
    Item {
        owner: Owner,
        item: Item,
    },
    /// A call's row: new if `index` is the number of calls so far, else it replaces that row's
    /// fields (its items stay).
    Call {
        index: usize,
        row: CallRow,
    },
    /// Likewise for a connection.
    Conn {
        index: usize,
        row: ConnRow,
    },
    /// A connection still open has a new detail: its health report so far.
    ConnDetail {
        index: usize,
        stored: Stored,
    },
    Error,
    FirstTs(i64),
}

#[derive(Debug, Default)]
pub struct Model {
    pub items: Vec<Item>,
    pub calls: Vec<CallRow>,
    pub conns: Vec<ConnRow>,
    pub packets: u64,
    pub errors: u64,
    pub first_ts_ns: Option<i64>,
    /// Calls whose row was replaced since the last [`take_changed`](Self::take_changed): a
    /// filter may now let them through, or not.
    changed: Vec<usize>,
    store: Option<StoreReader>,
    /// The schema flags of the calls' grpcurl commands.
    pub grpcurl: GrpcurlOptions,
}

impl Model {
    pub fn new(store: StoreReader) -> Self {
        Model {
            store: Some(store),
            ..Model::default()
        }
    }

    /// The grpc-status with its name, or `-`.
    pub fn grpc_status_text(g: Option<u32>) -> String {
        match g {
            Some(g) => match grpc_status_name(g) {
                Some(n) => format!("{g} {n}"),
                None => g.to_string(),
            },
            None => "-".into(),
        }
    }

    pub fn apply(&mut self, u: Update) {
        match u {
            Update::Item { owner, item } => {
                let i = self.items.len();
                let list = match owner {
                    Owner::Call(c) => self.calls.get_mut(c).map(|row| {
                        if let (true, Item::Message { side, .. }) = (row.open, &item) {
                            if *side == Side::Request {
                                row.messages.0 += 1;
                            } else {
                                row.messages.1 += 1;
                            }
                        }
                        &mut row.items
                    }),
                    Owner::Conn(c) => self.conns.get_mut(c).map(|row| {
                        if let Item::Frame(f) = &item {
                            match f.kind {
                                FrameType::Ping if f.flags & flags::ACK == 0 => row.pings += 1,
                                FrameType::GoAway => row.goaways += 1,
                                _ => {}
                            }
                        }
                        &mut row.items
                    }),
                };
                if let Some(list) = list {
                    list.push(i);
                    self.packets = self.packets.max(item.packet());
                    self.items.push(item);
                }
            }
            Update::Call { index, mut row } => match self.calls.get_mut(index) {
                Some(old) => {
                    row.items = std::mem::take(&mut old.items);
                    *old = row;
                    self.changed.push(index);
                }
                None => self.calls.push(row),
            },
            Update::Conn { index, mut row } => match self.conns.get_mut(index) {
                Some(old) => {
                    row.items = std::mem::take(&mut old.items);
                    (row.pings, row.goaways) = (old.pings, old.goaways);
                    *old = row;
                }
                None => self.conns.push(row),
            },
            Update::ConnDetail { index, stored } => {
                if let Some(row) = self.conns.get_mut(index) {
                    row.stored = stored;
                }
            }
            Update::Error => self.errors += 1,
            Update::FirstTs(t) => {
                self.first_ts_ns.get_or_insert(t);
            }
        }
    }

    /// Calls whose rows were replaced since the last call.
    pub fn take_changed(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.changed)
    }

    fn fetch(&self, s: Stored) -> Detail {
        self.store.as_ref().map(|r| r.get(s)).unwrap_or_default()
    }

    /// The one-line summary of item `i`, read back from the store (rows on screen only).
    pub fn item_summary(&self, i: usize) -> String {
        match (self.items.get(i), &self.store) {
            (Some(it), Some(r)) => r.summary(it.stored()),
            _ => String::new(),
        }
    }

    /// The detail of item `i` (a frame or a message), read back from the store.
    pub fn item_detail(&self, i: usize) -> Detail {
        let Some(item) = self.items.get(i) else {
            return Detail::default();
        };
        let mut d = self.fetch(item.stored());
        if let Some(parts) = d.deferred.take() {
            d.lines = frame_lines_of(&parts, d.raw.as_deref());
        }
        d
    }

    /// An ended call's detail is made from its JSON Lines object; a call in progress has one
    /// stored as it goes.
    pub fn call_detail(&self, i: usize) -> Detail {
        let Some(c) = self.calls.get(i) else {
            return Detail::default();
        };
        match self.call_json(i) {
            Some(json) => {
                let json = serde_json::from_slice(&json).unwrap_or(Value::Null);
                let mut lines = call_lines(&json);
                let requests = self.store.as_ref().and_then(|s| s.bytes(c.requests));
                if let Some(requests) = requests {
                    lines.extend(grpcurl_lines(&json, &requests, &self.grpcurl));
                }
                Detail {
                    lines,
                    ..Detail::default()
                }
            }
            None => self.fetch(c.stored),
        }
    }

    /// The JSON Lines object of call `i`, once it has ended.
    pub fn call_json(&self, i: usize) -> Option<Vec<u8>> {
        let c = self.calls.get(i)?;
        self.store.as_ref()?.bytes(c.json)
    }

    pub fn conn_detail(&self, i: usize) -> Detail {
        self.conns
            .get(i)
            .map(|c| self.fetch(c.stored))
            .unwrap_or_default()
    }
}

fn repr(r: &Representation) -> String {
    match r {
        Representation::Indexed { index } => format!("indexed #{index}"),
        Representation::IncrementalIndexing { name_index, .. } => match name_index {
            Some(i) => format!("literal, indexed name #{i}, added to table"),
            None => "literal, added to table".into(),
        },
        Representation::WithoutIndexing { name_index, .. } => match name_index {
            Some(i) => format!("literal, indexed name #{i}"),
            None => "literal".into(),
        },
        Representation::NeverIndexed { name_index, .. } => match name_index {
            Some(i) => format!("literal never indexed, name #{i}"),
            None => "literal never indexed".into(),
        },
        Representation::Unknown { index } => format!("entry #{index} from before the capture"),
    }
}

fn pick(list: &[HeaderField], name: &str) -> Option<String> {
    list.iter()
        .find(|h| h.name == name.as_bytes())
        .map(header_value)
}

/// What a row keeps of a method or path: a one-byte header field may name a table entry of a
/// megabyte, and a capture may hold millions of calls.
const ROW_TEXT_MAX: usize = 1024;

fn row_text(mut s: String) -> String {
    if s.len() > ROW_TEXT_MAX {
        let mut cut = ROW_TEXT_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Header blocks an open call's progress shows: its request and response headers and trailers,
/// and a few more (1xx answers); past them, the latest replaces the last kept.
const PROGRESS_HEADERS_MAX: usize = 8;

/// What a frame's summary and detail lines are made from: a frame event as it is read, or its
/// parts read back from the store.
struct FrameView<'a> {
    header: &'a FrameHeader,
    detail: &'a FrameDetail,
    headers: Option<&'a [HeaderField]>,
    notes: &'a [String],
    raw: Option<&'a [u8]>,
}

impl<'a> FrameView<'a> {
    fn of(f: &'a FrameEvent) -> Self {
        FrameView {
            header: &f.header,
            detail: &f.detail,
            headers: f.headers.as_deref(),
            notes: &f.notes,
            raw: f.raw.as_deref(),
        }
    }
}

/// The detail lines of a frame stored as its parts (see [`frame_record`]), with its bytes.
fn frame_lines_of(parts: &[u8], raw: Option<&[u8]>) -> Vec<DetailLine> {
    let Some(p) = frame_record::decode(parts) else {
        return vec![DetailLine::text("(this frame's stored detail is damaged)")];
    };
    let view = FrameView {
        header: &p.header,
        detail: &p.detail,
        headers: p.headers.as_deref(),
        notes: &p.notes,
        raw,
    };
    let mut w = DetailWriter::new();
    frame_lines(&view, &mut w);
    w.take_lines()
}

/// Where the header block fragment starts in a HEADERS or PUSH_PROMISE frame.
fn fragment_start(h: &FrameHeader) -> Option<usize> {
    let pad = usize::from(h.has(flags::PADDED));
    match h.kind {
        FrameType::Headers => {
            Some(FRAME_HEADER_LEN + pad + if h.has(flags::PRIORITY) { 5 } else { 0 })
        }
        FrameType::PushPromise => Some(FRAME_HEADER_LEN + pad + 4),
        _ => None,
    }
}

/// A frame's one-line summary in the list: the request or response a header block carries,
/// or what matters for the frame's type.
fn frame_summary(f: &FrameView<'_>) -> String {
    if let Some(list) = f.headers {
        // Written in place: this is made for every header block of the capture.
        let mut summary = String::new();
        for name in [":method", ":path", ":status", "grpc-status"] {
            let Some(field) = list.iter().find(|h| h.name == name.as_bytes()) else {
                continue;
            };
            if !summary.is_empty() {
                summary.push(' ');
            }
            if !name.starts_with(':') {
                summary.push_str(name);
                summary.push('=');
            }
            let _ = write!(summary, "{}", HeaderText { field, value: true });
        }
        return summary;
    }
    match f.detail {
        FrameDetail::Settings { ack, settings } => {
            let mut summary = String::from(if *ack { "ACK" } else { "" });
            for s in settings {
                match setting::name(s.id) {
                    Some(name) => summary.push_str(name),
                    None => {
                        let _ = write!(summary, "0x{:x}", s.id);
                    }
                }
                let _ = write!(summary, "={} ", s.value);
            }
            summary
        }
        FrameDetail::RstStream { error_code: c } => error_code_label(*c).into_owned(),
        FrameDetail::GoAway {
            last_stream_id,
            error_code: c,
            ..
        } => format!("last={last_stream_id} {}", error_code_label(*c)),
        FrameDetail::WindowUpdate { increment } => format!("+{increment}"),
        FrameDetail::Ping { ack, opaque } => {
            let opaque = hex::encode(opaque);
            if *ack {
                format!("ACK {opaque}")
            } else {
                opaque
            }
        }
        FrameDetail::Data { data_len, .. } => format!("{data_len} bytes of data"),
        FrameDetail::PushPromise {
            promised_stream, ..
        } => format!("promised {promised_stream}"),
        FrameDetail::Priority(p) => {
            format!("depends on {} weight {}", p.depends_on, p.weight as u16 + 1)
        }
        FrameDetail::Malformed(e) => format!("malformed: {e}"),
        _ => String::new(),
    }
}

/// Writes the frame's detail into `w`, each line with the bytes it describes.
fn frame_lines(f: &FrameView<'_>, w: &mut DetailWriter) {
    let h = f.header;
    let end = FRAME_HEADER_LEN + h.length as usize;
    w.line(
        Some(0..FRAME_HEADER_LEN),
        format_args!(
            "{} frame, stream {}, {} bytes, flags 0x{:02x} {}",
            h.kind.name(),
            h.stream,
            h.length,
            h.flags,
            h.kind.flag_names(h.flags).join(" ")
        ),
    );
    let at = |off: usize, len: usize| Some(FRAME_HEADER_LEN + off..FRAME_HEADER_LEN + off + len);
    let pad_line = |w: &mut DetailWriter, pad: Option<u8>| {
        if let Some(p) = pad {
            w.line(at(0, 1), format_args!("  pad length {p}"));
        }
    };
    let padding_line = |w: &mut DetailWriter, pad: Option<u8>| {
        if let Some(p) = pad.filter(|&p| p > 0) {
            let span = end.saturating_sub(p as usize)..end;
            w.line(Some(span), format_args!("  padding, {p} bytes"));
        }
    };
    let priority = |w: &mut DetailWriter, p: &crate::http2::frame::PriorityInfo, off: usize| {
        w.line(
            at(off, 5),
            format_args!(
                "  depends on stream {}{}, weight {}",
                p.depends_on,
                if p.exclusive { " (exclusive)" } else { "" },
                p.weight as u16 + 1
            ),
        );
    };
    match f.detail {
        FrameDetail::Settings { settings, .. } => {
            for (i, s) in settings.iter().enumerate() {
                let name = setting::name(s.id)
                    .map(String::from)
                    .unwrap_or(format!("0x{:x}", s.id));
                w.line(at(6 * i, 6), format_args!("  {name} = {}", s.value));
            }
        }
        FrameDetail::RstStream { error_code: c } => {
            w.line(
                at(0, 4),
                format_args!("  error code {}", error_code_label(*c)),
            );
        }
        FrameDetail::GoAway {
            last_stream_id,
            error_code: c,
            debug_data,
        } => {
            w.line(at(0, 4), format_args!("  last stream id {last_stream_id}"));
            w.line(
                at(4, 4),
                format_args!("  error code {}", error_code_label(*c)),
            );
            w.line(
                at(8, debug_data.len()),
                format_args!("  debug data: {:?}", lossless(debug_data)),
            );
        }
        FrameDetail::WindowUpdate { increment } => {
            w.line(
                at(0, 4),
                format_args!("  window size increment {increment}"),
            );
        }
        FrameDetail::Ping { opaque, .. } => {
            w.line(
                at(0, 8),
                format_args!("  opaque data {}", hex::encode(opaque)),
            );
        }
        FrameDetail::Data {
            data_len,
            pad_len,
            missing,
        } => {
            pad_line(w, *pad_len);
            let off = usize::from(pad_len.is_some());
            w.line(
                at(off, *data_len as usize),
                format_args!("  data, {data_len} bytes"),
            );
            padding_line(w, *pad_len);
            if *missing > 0 {
                w.line(
                    None,
                    format_args!("  {missing} bytes missing from the capture"),
                );
            }
        }
        FrameDetail::Headers {
            priority: p,
            pad_len,
        } => {
            pad_line(w, *pad_len);
            if let Some(p) = p {
                priority(w, p, usize::from(pad_len.is_some()));
            }
        }
        FrameDetail::PushPromise {
            promised_stream,
            pad_len,
        } => {
            pad_line(w, *pad_len);
            w.line(
                at(usize::from(pad_len.is_some()), 4),
                format_args!("  promised stream {promised_stream}"),
            );
        }
        FrameDetail::Priority(p) => priority(w, p, 0),
        _ => {}
    }
    if let Some(list) = f.headers {
        // A block that came whole in this frame: each field's bytes can be pointed at.
        let pad = match f.detail {
            FrameDetail::Headers { pad_len, .. } | FrameDetail::PushPromise { pad_len, .. } => {
                pad_len.unwrap_or(0) as usize
            }
            _ => 0,
        };
        let fragment = fragment_start(h).filter(|_| h.has(flags::END_HEADERS));
        let spans: Vec<Range<usize>> = match (fragment, f.raw) {
            (Some(start), Some(raw)) if end <= raw.len() && start + pad <= end => {
                field_spans(&raw[start..end - pad])
                    .into_iter()
                    .map(|s| s.start + start..s.end + start)
                    .collect()
            }
            _ => Vec::new(),
        };
        let spans = (spans.len() == list.len()).then_some(spans);
        let block = fragment
            .filter(|_| spans.is_some())
            .map(|start| start..end.saturating_sub(pad));
        w.line(block, format_args!("  headers:"));
        for (i, field) in list.iter().enumerate() {
            w.line(
                spans.as_ref().map(|s| s[i].clone()),
                format_args!(
                    "    {}: {}    [{}]",
                    HeaderText {
                        field,
                        value: false
                    },
                    HeaderText { field, value: true },
                    repr(&field.repr)
                ),
            );
        }
        if let FrameDetail::Headers { pad_len, .. } = f.detail {
            padding_line(w, *pad_len);
        }
    }
    for n in f.notes {
        w.line(None, format_args!("  note: {n}"));
    }
}

/// Writes a message's detail into `w` and returns its summary.
fn message_detail(m: &MessageEvent, w: &mut DetailWriter) -> String {
    let d = &m.decoded;
    w.line(
        None,
        format_args!(
            "{} message #{}, {} bytes{}{}",
            m.side.as_str(),
            m.index,
            d.length,
            if d.compressed { ", compressed" } else { "" },
            d.encoding
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
    );
    if let Some(t) = &d.type_name {
        w.line(None, format_args!("  type {t}"));
    }
    if let Some(p) = &d.problem {
        w.line(None, format_args!("  note: {p}"));
    }
    match (&d.json, &d.fields) {
        (Some(j), _) => {
            let pretty = crate::output::jsonl::pretty(j.as_str());
            let spans: HashMap<&str, &Range<usize>> =
                (d.key_spans.iter()).map(|(k, s)| (&**k, s)).collect();
            let mut paths = JsonPaths::default();
            for l in pretty.lines() {
                let span = (!spans.is_empty())
                    .then(|| paths.line(l))
                    .flatten()
                    .and_then(|p| spans.get(p.as_str()).map(|&s| s.clone()));
                w.line(span, format_args!("  {l}"));
            }
            j.to_string()
        }
        (None, Some(Schemaless::Fields(nodes))) => {
            // As `-V` shows it, each field with its bytes for the hex pane.
            w.line(None, format_args!("  schema-less fields:"));
            crate::output::text::tree_lines(nodes, 2, &mut |span, l| {
                w.line(span, format_args!("{l}"))
            });
            "(no schema)".into()
        }
        (None, Some(f)) => {
            // As JSON Lines writes it, made readable.
            let mut json = Vec::new();
            crate::output::jsonl::write_schemaless(&mut json, f);
            let pretty = crate::output::jsonl::pretty(&String::from_utf8_lossy(&json));
            w.line(None, format_args!("  schema-less fields:"));
            for l in pretty.lines() {
                w.line(None, format_args!("  {l}"));
            }
            "(no schema)".into()
        }
        _ => String::new(),
    }
}

/// Follows the lines of pretty JSON (as [`crate::output::jsonl::pretty`] writes it: one key or
/// element per line, `{` and `[` ending the line that opens them) and names what each line
/// holds by its path from the top: `a`, `a.b`, `a[2]`, `a[2].b` (see
/// [`crate::grpc::message::Decoded::key_spans`]).
#[derive(Default)]
struct JsonPaths {
    /// The objects and arrays open: each one's path, and for an array its next element.
    open: Vec<(String, Option<usize>)>,
}

impl JsonPaths {
    fn line(&mut self, line: &str) -> Option<String> {
        let text = line.trim_start();
        if text.starts_with(['}', ']']) {
            self.open.pop();
            return None;
        }
        let Some((inside, element)) = self.open.last_mut() else {
            // The top object.
            if text == "{" {
                self.open.push((String::new(), None));
            }
            return None;
        };
        let (path, value) = match element {
            Some(next) => {
                let path = format!("{inside}[{next}]");
                *next += 1;
                (path, text)
            }
            None => {
                let rest = text.strip_prefix('"')?;
                // The key's closing quote: the first not escaped.
                let mut end = 0;
                let bytes = rest.as_bytes();
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                let value = rest.get(end..)?.strip_prefix("\": ")?;
                let key = &rest[..end];
                // A key with escapes names no field (a map's key, say): its path matches none,
                // but what it opens is still followed.
                let path = match inside.as_str() {
                    _ if key.contains('\\') => "\\".to_string(),
                    "" => key.to_string(),
                    _ => format!("{inside}.{key}"),
                };
                (path, value)
            }
        };
        match value.trim_end_matches(',') {
            "{" => self.open.push((path.clone(), None)),
            "[" => self.open.push((path.clone(), Some(0))),
            _ => {}
        }
        Some(path)
    }
}

fn headers_detail(w: &mut DetailWriter, title: &str, list: &[HeaderField]) {
    w.line(None, format_args!("{title}:"));
    for field in list {
        w.line(
            None,
            format_args!(
                "  {}: {}",
                HeaderText {
                    field,
                    value: false
                },
                HeaderText { field, value: true }
            ),
        );
    }
}

/// The detail of an ended call, made from its JSON Lines object (what the builder stores for
/// it): its header lists, how it was reset, its notes.
fn call_lines(json: &Value) -> Vec<DetailLine> {
    let Value::Object(call) = json else {
        return vec![DetailLine::text("(this call's stored detail is damaged)")];
    };
    let mut lines = call_outline(call);
    for (title, key) in [
        ("request headers", "request_headers"),
        ("response headers", "response_headers"),
        ("trailers", "trailers"),
    ] {
        let Some(Value::Array(list)) = call.get(key) else {
            continue;
        };
        lines.push(DetailLine::text(format!("{title}:")));
        for field in list {
            let text = |i: usize| field.get(i).and_then(Value::as_str).unwrap_or_default();
            lines.push(DetailLine::text(format!("  {}: {}", text(0), text(1))));
        }
    }
    if call.get("end").and_then(Value::as_str) == Some("reset") {
        let by = call.get("reset_by").and_then(Value::as_str).unwrap_or("?");
        let code = (call.get("error_code").and_then(Value::as_u64))
            .and_then(|c| u32::try_from(c).ok())
            .and_then(error_code_name)
            .unwrap_or("?");
        let at_deadline = call.get("reset_at_deadline") == Some(&Value::Bool(true));
        let when = if at_deadline { " at its deadline" } else { "" };
        lines.push(DetailLine::text(format!(
            "reset by the {by} ({code}){when}"
        )));
    }
    if let Some(last) = call.get("goaway_last_stream_id").and_then(Value::as_u64) {
        lines.push(DetailLine::text(format!(
            "refused: above the last stream {last} of the server's GOAWAY, never processed \
             (a client may retry it)"
        )));
    }
    if let Some(Value::Array(notes)) = call.get("notes") {
        for n in notes {
            lines.push(DetailLine::text(format!(
                "note: {}",
                n.as_str().unwrap_or_default()
            )));
        }
    }
    lines
}

/// The head of a call's detail: what was called, how it ended, how long it took against its
/// deadline, and what went each way; the list's columns, in words and whole.
fn call_outline(call: &serde_json::Map<String, Value>) -> Vec<DetailLine> {
    let str_of = |k: &str| call.get(k).and_then(Value::as_str);
    let num = |k: &str| call.get(k).and_then(Value::as_f64);
    let mut lines = Vec::new();
    let mut what = [str_of("method"), str_of("path")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(a) = str_of("authority") {
        let _ = write!(what, " on {a}");
    }
    if !what.is_empty() {
        lines.push(DetailLine::text(printable(&what)));
    }
    let mut outcome = Vec::new();
    if let Some(s) = call.get("status").and_then(Value::as_u64) {
        outcome.push(format!("HTTP {s}"));
    }
    if let Some(g) = call.get("grpc_status").and_then(Value::as_u64) {
        let name = str_of("grpc_status_name").map_or(String::new(), |n| format!(" {n}"));
        outcome.push(format!("grpc-status {g}{name}"));
    }
    let mut outcome = outcome.join(", ");
    if let Some(m) = str_of("grpc_message") {
        let _ = write!(outcome, ": {}", printable(m));
    }
    if !outcome.is_empty() {
        lines.push(DetailLine::text(outcome));
    }
    if let Some(d) = num("duration") {
        let mut time = format!("took {:.3} ms", d * 1e3);
        if let Some(limit) = num("deadline") {
            let _ = write!(time, " of a {:.3} ms deadline", limit * 1e3);
        }
        if let Some(t) = num("time_to_response") {
            let _ = write!(time, "; the response began after {:.3} ms", t * 1e3);
        }
        lines.push(DetailLine::text(time));
    }
    let side = |messages: &str, bytes: &str| {
        let b = call.get(bytes).and_then(Value::as_u64).unwrap_or(0);
        match call.get(messages).and_then(Value::as_u64) {
            Some(m) if call.get("grpc") == Some(&Value::Bool(true)) => {
                format!("{m} message{} ({b} B)", if m == 1 { "" } else { "s" })
            }
            _ => format!("{b} B"),
        }
    };
    lines.push(DetailLine::text(format!(
        "request {}, response {}",
        side("request_messages", "request_bytes"),
        side("response_messages", "response_bytes")
    )));
    lines
}

/// A call's row. Its detail is made from its stored JSON Lines object when it is looked at
/// ([`call_lines`]).
fn call_row(c: &Call) -> CallRow {
    let grpc_status = c.grpc_status();
    let problem = matches!(
        c.end,
        CallEnd::Reset { .. } | CallEnd::Unfinished | CallEnd::Refused { .. }
    ) || grpc_status.is_some_and(|g| g != 0)
        || c.status().is_some_and(|s| s >= 400);
    CallRow {
        conn: c.conn,
        stream: c.stream,
        method: row_text(c.method().unwrap_or_else(|| "-".into())),
        path: row_text(c.path().unwrap_or_else(|| "-".into())),
        status: c
            .status()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into()),
        grpc_status,
        duration_ms: c.duration_ns() as f64 / 1e6,
        messages: (c.request_messages, c.response_messages),
        start_ts_ns: c.start_ts_ns,
        problem,
        open: false,
        items: Vec::new(),
        stored: Stored::default(),
        json: Stored::default(),
        requests: Stored::default(),
    }
}

/// Bytes into the store; the first failure is kept, and what could not be stored is empty.
fn put(store: &mut StoreWriter, error: &mut Option<std::io::Error>, bytes: &[u8]) -> Stored {
    match store.put_bytes(bytes) {
        Ok(s) => s,
        Err(e) => {
            error.get_or_insert(e);
            Stored::default()
        }
    }
}

/// The grpcurl command that makes an ended call again, as `-T grpcurl` writes it (without the
/// comment naming the call, which the row does), made when the call is looked at: from its
/// JSON Lines object and what it sent.
fn grpcurl_lines(json: &Value, requests: &[u8], opts: &GrpcurlOptions) -> Vec<DetailLine> {
    let Some(call) = call_of(json) else {
        return Vec::new();
    };
    let requests = Requests::from_record(requests);
    let text = crate::output::grpcurl::render(&call, &requests, opts);
    let mut lines = vec![DetailLine::text("made again with grpcurl:")];
    lines.extend(
        text.lines()
            .skip(1)
            .map(|l| DetailLine::text(format!("  {l}"))),
    );
    lines
}

/// The parts of a call the grpcurl command is made of, read back from its JSON Lines object.
/// Header fields whose HPACK entries predate the capture are written as `<unknown dynamic #N>`:
/// read back as unknown.
fn call_of(v: &Value) -> Option<Call> {
    let addr = |k: &str| v.get(k)?.as_str()?.parse().ok();
    let count = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
    let mut c = Call::new(
        v.get("conn")?.as_u64()?,
        u32::try_from(v.get("stream")?.as_u64()?).ok()?,
        addr("client")?,
        addr("server")?,
        0,
        0,
    );
    let unknown = |t: &str| t.starts_with("<unknown dynamic #");
    let field = |name: &str, value: &str| HeaderField {
        name: name.as_bytes().to_vec().into(),
        value: value.as_bytes().to_vec().into(),
        repr: Representation::Indexed { index: 0 },
        name_unknown: unknown(name),
        value_unknown: unknown(value),
    };
    c.request_headers = v
        .get("request_headers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|f| Some(field(f.get(0)?.as_str()?, f.get(1)?.as_str()?)))
                .collect::<Vec<_>>()
                .into()
        });
    if let Some(s) = v.get("grpc_status").and_then(Value::as_u64) {
        c.response_trailers = Some(vec![field("grpc-status", &s.to_string())].into());
    }
    c.grpc = v.get("grpc") == Some(&Value::Bool(true));
    c.pushed = v.get("pushed") == Some(&Value::Bool(true));
    c.tls = v.get("tls") == Some(&Value::Bool(true));
    c.request_messages = count("request_messages");
    c.response_messages = count("response_messages");
    Some(c)
}

/// A call the builder has given a row to.
struct OpenCall {
    index: usize,
    /// What is known while the call is in progress; `None` once it ended.
    progress: Option<Box<Progress>>,
}

/// A call in progress: its row, and the header lists (with their titles) and reset seen so
/// far. Its row and detail are sent when the batch is taken, and only if the call is still in
/// progress then: most calls end within their batch and never cost a provisional detail.
struct Progress {
    row: CallRow,
    headers: Vec<(&'static str, crate::http2::hpack::HeaderList)>,
    reset: Option<u32>,
    dirty: bool,
}

type Reports = std::rc::Rc<std::cell::RefCell<HashMap<u64, ConnectionHealth>>>;

/// Turns events into [`Update`]s, writing each row's detail to the store.
pub struct Builder {
    store: StoreWriter,
    /// Reused for every frame's detail.
    scratch: DetailWriter,
    /// Reused for every call's JSON Lines object.
    json: Vec<u8>,
    /// Reused for every frame's stored parts.
    parts: Vec<u8>,
    out: Vec<Update>,
    /// Rows of calls by (connection, stream), kept until the connection ends so that frames
    /// after a call's end (a late WINDOW_UPDATE, a RST_STREAM) still land on its row.
    calls: BTreeMap<(u64, u32), OpenCall>,
    /// Calls in progress whose row changed since the last batch.
    dirty: Vec<(u64, u32)>,
    /// Looked up for every event: foldhash, not SipHash (the numbers are the dissector's own).
    conns: HashMap<u64, usize, foldhash::fast::RandomState>,
    n_calls: usize,
    n_conns: usize,
    first_ts: bool,
    /// Connection health, followed alongside; its report becomes the connection's detail.
    health: crate::analysis::health::Health<Box<dyn FnMut(ConnectionHealth)>>,
    reports: Reports,
    /// Live: open connections' details show their health so far, refreshed this often, for
    /// the connections that had frames since (a file is read through too fast to need it,
    /// and its connections end with it).
    live_refresh: Option<Duration>,
    last_refresh: Option<Instant>,
    active: BTreeSet<u64>,
    /// The first failure to write the store; rows after it have empty details.
    pub store_error: Option<std::io::Error>,
    /// What the calls not yet ended sent, for their grpcurl commands.
    requests: PendingCalls,
}

impl Builder {
    pub fn new(store: StoreWriter) -> Self {
        let reports: Reports = Default::default();
        let sink = reports.clone();
        Builder {
            store,
            scratch: DetailWriter::new(),
            json: Vec::new(),
            parts: Vec::new(),
            out: Vec::new(),
            calls: BTreeMap::new(),
            dirty: Vec::new(),
            conns: HashMap::default(),
            n_calls: 0,
            n_conns: 0,
            first_ts: false,
            health: crate::analysis::health::Health::new(Box::new(move |r: ConnectionHealth| {
                sink.borrow_mut().insert(r.conn, r);
            })),
            reports,
            live_refresh: None,
            last_refresh: None,
            active: BTreeSet::new(),
            store_error: None,
            requests: PendingCalls::default(),
        }
    }

    /// Open connections' details show their health so far, refreshed every `every`.
    pub fn refresh_open_health(&mut self, every: Duration) {
        self.live_refresh = Some(every);
    }

    /// New details for the open connections that had frames since the last refresh, when
    /// one is due.
    fn refresh_health(&mut self) {
        let Some(every) = self.live_refresh else {
            return;
        };
        if self.active.is_empty() || self.last_refresh.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last_refresh = Some(Instant::now());
        // A bound on the store's growth when very many connections are busy.
        const MOST: usize = 1000;
        for conn in std::mem::take(&mut self.active).into_iter().take(MOST) {
            let (Some(&index), Some(h)) = (self.conns.get(&conn), self.health.snapshot(conn))
            else {
                continue;
            };
            let lines = crate::analysis::health::to_text_open(&h)
                .lines()
                .map(DetailLine::text)
                .collect();
            let stored = self.put(&Detail {
                summary: String::new(),
                lines,
                raw: None,
                deferred: None,
            });
            self.out.push(Update::ConnDetail { index, stored });
        }
    }

    /// The updates made since the last call, with their details readable from the store.
    pub fn take(&mut self) -> Vec<Update> {
        self.refresh_health();
        for key in std::mem::take(&mut self.dirty) {
            let Some(OpenCall {
                index,
                progress: Some(p),
            }) = self.calls.get_mut(&key)
            else {
                continue;
            };
            let index = *index;
            p.dirty = false;
            let w = &mut self.scratch;
            w.line(None, format_args!("call in progress"));
            for (title, list) in &p.headers {
                headers_detail(w, title, list);
            }
            if let Some(c) = p.reset {
                w.line(None, format_args!("reset ({})", error_code_label(c)));
            }
            let mut row = p.row.clone();
            row.stored = Self::store(
                &mut self.store,
                &mut self.scratch,
                "",
                None,
                &mut self.store_error,
            );
            self.out.push(Update::Call { index, row });
        }
        if let Err(e) = self.store.flush() {
            self.store_error.get_or_insert(e);
        }
        // The next batch is as large: it starts with room for it.
        let room = self.out.len();
        std::mem::replace(&mut self.out, Vec::with_capacity(room))
    }

    /// Updates waiting to be taken.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Stores the detail written in the scratch writer, with the frame's bytes `raw`.
    fn store_scratch(&mut self, summary: &str, raw: Option<&[u8]>) -> Stored {
        Self::store(
            &mut self.store,
            &mut self.scratch,
            summary,
            raw,
            &mut self.store_error,
        )
    }

    fn store(
        store: &mut StoreWriter,
        w: &mut DetailWriter,
        summary: &str,
        raw: Option<&[u8]>,
        error: &mut Option<std::io::Error>,
    ) -> Stored {
        store.put_written(w, summary, raw).unwrap_or_else(|e| {
            error.get_or_insert(e);
            Stored::default()
        })
    }

    fn put(&mut self, d: &Detail) -> Stored {
        match self.store.put(d) {
            Ok(s) => s,
            Err(e) => {
                self.store_error.get_or_insert(e);
                Stored::default()
            }
        }
    }

    fn conn_index(&mut self, conn: u64, f: Option<&FrameEvent>) -> usize {
        if let Some(&i) = self.conns.get(&conn) {
            return i;
        }
        let index = self.n_conns;
        self.n_conns += 1;
        self.conns.insert(conn, index);
        // Until the connection ends, its first frame's sender stands for the client (the
        // preface comes first on a connection seen from its start).
        let (client, server) = f
            .map(|f| (f.origin.src.to_string(), f.origin.dst.to_string()))
            .unwrap_or_default();
        let stored = self.put(&Detail {
            summary: String::new(),
            lines: vec![DetailLine::text(if self.live_refresh.is_some() {
                "connection in progress: its health report so far comes within a second"
            } else {
                "connection in progress: its health report comes when it ends"
            })],
            raw: None,
            deferred: None,
        });
        self.out.push(Update::Conn {
            index,
            row: ConnRow {
                conn,
                client,
                server,
                end: "open".into(),
                tls: String::new(),
                duration_s: 0.0,
                calls: 0,
                bytes: [0, 0],
                pings: 0,
                goaways: 0,
                items: Vec::new(),
                stored,
            },
        });
        index
    }

    /// The row of (conn, stream), made at its first frame or message.
    fn call_index(&mut self, conn: u64, stream: u32, ts_ns: i64) -> usize {
        if let Some(c) = self.calls.get(&(conn, stream)) {
            return c.index;
        }
        let index = self.n_calls;
        self.n_calls += 1;
        let row = CallRow {
            conn,
            stream,
            method: "-".into(),
            path: "-".into(),
            status: "…".into(),
            grpc_status: None,
            duration_ms: 0.0,
            messages: (0, 0),
            start_ts_ns: ts_ns,
            problem: false,
            open: true,
            items: Vec::new(),
            stored: Stored::default(),
            json: Stored::default(),
            requests: Stored::default(),
        };
        self.out.push(Update::Call {
            index,
            row: row.clone(),
        });
        self.calls.insert(
            (conn, stream),
            OpenCall {
                index,
                progress: Some(Box::new(Progress {
                    row,
                    headers: Vec::new(),
                    reset: None,
                    dirty: false,
                })),
            },
        );
        index
    }

    /// A call in progress learnt something from a frame: its row is sent again with the batch.
    fn progress(&mut self, f: &FrameEvent) {
        let key = (f.origin.conn, f.header.stream);
        let Some(OpenCall {
            progress: Some(p), ..
        }) = self.calls.get_mut(&key)
        else {
            return;
        };
        let row = &mut p.row;
        if let Some(list) = &f.headers {
            let title = if let Some(m) = pick(list, ":method") {
                row.method = row_text(m);
                if let Some(path) = pick(list, ":path") {
                    row.path = row_text(path);
                }
                "request headers"
            } else if let Some(s) = pick(list, ":status") {
                row.status = row_text(s);
                "response headers"
            } else {
                "trailers"
            };
            if let Some(g) = pick(list, "grpc-status") {
                row.grpc_status = g.trim().parse().ok();
                row.problem |= row.grpc_status.is_some_and(|g| g != 0);
            }
            if p.headers.len() >= PROGRESS_HEADERS_MAX {
                p.headers.pop();
            }
            p.headers.push((title, list.clone()));
        }
        if let FrameDetail::RstStream { error_code: c } = f.detail {
            row.problem = true;
            p.reset = Some(c);
        }
        row.duration_ms = f.origin.ts_ns.saturating_sub(row.start_ts_ns) as f64 / 1e6;
        if !p.dirty {
            p.dirty = true;
            self.dirty.push(key);
        }
    }

    fn frame(&mut self, f: &FrameEvent) {
        if !self.first_ts {
            self.first_ts = true;
            self.out.push(Update::FirstTs(f.origin.ts_ns));
        }
        let conn = self.conn_index(f.origin.conn, Some(f));
        let owner = if f.header.stream == 0 {
            Owner::Conn(conn)
        } else {
            Owner::Call(self.call_index(f.origin.conn, f.header.stream, f.origin.ts_ns))
        };
        // The lines are made when the frame is looked at: only its parts are stored.
        let summary = frame_summary(&FrameView::of(f));
        self.parts.clear();
        frame_record::encode(
            &mut self.parts,
            &f.header,
            &f.detail,
            f.headers.as_deref(),
            &f.notes,
        );
        let stored = match self
            .store
            .put_deferred(&summary, &self.parts, f.raw.as_deref())
        {
            Ok(s) => s,
            Err(e) => {
                self.store_error.get_or_insert(e);
                Stored::default()
            }
        };
        let h = &f.header;
        self.out.push(Update::Item {
            owner,
            item: Item::Frame(FrameRow {
                packet: f.origin.packet,
                ts_ns: f.origin.ts_ns,
                stream: h.stream,
                src_port: f.origin.src.port(),
                kind: h.kind,
                flags: h.flags,
                length: h.length,
                stored,
            }),
        });
        if h.stream != 0
            && (f.headers.is_some() || matches!(f.detail, FrameDetail::RstStream { .. }))
        {
            self.progress(f);
        }
    }

    fn message(&mut self, m: &MessageEvent) {
        self.conn_index(m.origin.conn, None);
        let call = self.call_index(m.origin.conn, m.stream, m.origin.ts_ns);
        let summary = message_detail(m, &mut self.scratch);
        // For the hex pane, as much as of a frame.
        let raw = (m.decoded.bytes.as_deref())
            .map(|b| &b[..b.len().min(crate::http2::connection::MAX_RAW)]);
        let stored = self.store_scratch(&summary, raw);
        // The summary of a message decoded is its JSON: kept for the call's grpcurl command.
        let json = m.decoded.json.is_some().then_some(summary);
        self.requests.message(m, json);
        self.out.push(Update::Item {
            owner: Owner::Call(call),
            item: Item::Message {
                packet: m.origin.packet,
                ts_ns: m.origin.ts_ns,
                side: m.side,
                index: m.index,
                stored,
            },
        });
    }

    fn call(&mut self, c: &Call) {
        self.conn_index(c.conn, None);
        let index = self.call_index(c.conn, c.stream, c.start_ts_ns);
        if let Some(open) = self.calls.get_mut(&(c.conn, c.stream)) {
            open.progress = None;
        }
        let mut row = call_row(c);
        self.json.clear();
        crate::output::jsonl::write_call(&mut self.json, c);
        row.json = put(&mut self.store, &mut self.store_error, &self.json);
        let requests = self.requests.take(c.conn, c.stream);
        if c.grpc && !c.pushed {
            let record = requests.to_record();
            row.requests = put(&mut self.store, &mut self.store_error, &record);
        }
        self.out.push(Update::Call { index, row });
    }

    fn conn_end(&mut self, e: &ConnectionEnd) {
        let index = self.conn_index(e.conn, None);
        let keys: Vec<(u64, u32)> = self
            .calls
            .range((e.conn, 0)..=(e.conn, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        let calls = keys.len();
        for k in keys {
            self.calls.remove(&k);
        }
        self.health.event(Event::ConnectionEnd(Box::new(e.clone())));
        self.active.remove(&e.conn);
        let lines = self
            .reports
            .borrow_mut()
            .remove(&e.conn)
            .map(|h| {
                crate::analysis::health::to_text(&h)
                    .lines()
                    .map(DetailLine::text)
                    .collect()
            })
            .unwrap_or_default();
        let stored = self.put(&Detail {
            summary: String::new(),
            lines,
            raw: None,
            deferred: None,
        });
        self.out.push(Update::Conn {
            index,
            row: ConnRow {
                conn: e.conn,
                client: e.client.to_string(),
                server: e.server.to_string(),
                end: e.end.as_str().to_string(),
                tls: e
                    .tls
                    .as_ref()
                    .and_then(|t| t.version)
                    .map(|v| v.trim_start_matches("TLS ").to_string())
                    .unwrap_or_default(),
                duration_s: e.last_ts_ns.saturating_sub(e.first_ts_ns) as f64 / 1e9,
                calls,
                bytes: e.bytes,
                pings: 0,
                goaways: 0,
                items: Vec::new(),
                stored,
            },
        });
    }
}

impl Builder {
    /// Takes in an event without owning it: events dissected on another thread go back there
    /// to be freed (see `feed::dissect_beside`).
    pub fn add(&mut self, event: &Event) {
        match event {
            Event::Frame(f) => {
                self.frame(f);
                self.health.frame(f);
                if self.live_refresh.is_some() {
                    self.active.insert(f.origin.conn);
                }
            }
            Event::Message(m) => self.message(m),
            Event::Call(c) => {
                self.call(c);
                self.health.call(c);
            }
            Event::ConnectionEnd(e) => self.conn_end(e),
            Event::Error(_) | Event::Gap(_) => self.out.push(Update::Error),
        }
    }
}

impl Sink for Builder {
    fn event(&mut self, event: Event) {
        self.add(&event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row keeps the start of a huge path, cut on a character boundary.
    #[test]
    fn row_text_is_cut_on_a_character() {
        assert_eq!(row_text("/a.B/C".into()), "/a.B/C");
        let long = format!("/{}", "é".repeat(1000));
        let cut = row_text(long);
        assert!(cut.len() <= ROW_TEXT_MAX + '…'.len_utf8());
        assert!(cut.ends_with("é…"));
    }

    /// The events of the shipped captures and of the public ones (when `../shared` is there),
    /// frames with their bytes, by file.
    fn events_of_captures() -> Vec<(String, Vec<Event>)> {
        let mut files = Vec::new();
        for dir in ["testdata", "../shared/captures/public"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                    files.push(e.path());
                }
            }
        }
        assert!(files.len() >= 3, "{files:?}");
        let mut all = Vec::new();
        for path in &files {
            let mut cfg = crate::pipeline::Config::default();
            cfg.http2.keep_frame_bytes = true;
            let path = path.to_str().unwrap();
            let Ok(mut reader) = crate::pipeline::open_capture(path, &cfg) else {
                continue;
            };
            let mut d = crate::pipeline::Dissector::new(cfg);
            let mut events: Vec<Event> = Vec::new();
            let _ = reader.for_each_packet(|p| {
                d.packet(p, &mut events);
                true
            });
            d.finish(&mut events);
            all.push((path.to_string(), events));
        }
        all
    }

    /// Each line of pretty JSON is named by its path from the top: keys, nested keys, array
    /// elements and the keys inside them; a key with escapes is followed but names nothing.
    #[test]
    fn pretty_json_lines_are_named_by_their_paths() {
        let json = r#"{"a":1,"b":{"c":"x{"},"items":[{"name":"n"},{"name":"m","e":[]}],"ids":[1,2],"m":{"we\"ird":{"z":1}},"last":true}"#;
        let pretty = crate::output::jsonl::pretty(json);
        let mut paths = JsonPaths::default();
        let named: Vec<Option<String>> = pretty.lines().map(|l| paths.line(l)).collect();
        let want = [
            None,
            Some("a"),
            Some("b"),
            Some("b.c"),
            None,
            Some("items"),
            Some("items[0]"),
            Some("items[0].name"),
            None,
            Some("items[1]"),
            Some("items[1].name"),
            Some("items[1].e"),
            None,
            None,
            Some("ids"),
            Some("ids[0]"),
            Some("ids[1]"),
            None,
            Some("m"),
            Some("\\"),
            Some("\\.z"),
            None,
            None,
            Some("last"),
            None,
        ];
        let want: Vec<Option<String>> = want.iter().map(|p| p.map(String::from)).collect();
        assert_eq!(named, want, "{pretty}");
    }

    /// A frame's lines made from its stored parts are the lines made from the frame.
    #[test]
    fn stored_frames_give_the_lines_of_the_frames() {
        let mut frames = 0;
        let mut with_headers = 0;
        for (path, events) in events_of_captures() {
            for e in &events {
                let Event::Frame(f) = e else { continue };
                let mut w = DetailWriter::new();
                frame_lines(&FrameView::of(f), &mut w);
                let want = w.take_lines();
                let mut parts = Vec::new();
                frame_record::encode(
                    &mut parts,
                    &f.header,
                    &f.detail,
                    f.headers.as_deref(),
                    &f.notes,
                );
                assert_eq!(frame_lines_of(&parts, f.raw.as_deref()), want, "{path}");
                frames += 1;
                with_headers += usize::from(f.headers.is_some());
            }
        }
        assert!(
            frames > 500 && with_headers > 100,
            "{frames} {with_headers}"
        );
    }

    /// An ended call's lines made from its JSON Lines object are its outline, header lists,
    /// reset and notes as the call has them.
    #[test]
    fn stored_calls_give_the_lines_of_the_calls() {
        let mut calls = 0;
        let mut reset = 0;
        for (path, events) in events_of_captures() {
            for e in &events {
                let Event::Call(c) = e else { continue };
                let mut w = DetailWriter::new();
                let what = [c.method(), c.path()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                match c.authority() {
                    Some(a) => w.line(
                        None,
                        format_args!("{}", printable(&format!("{what} on {a}"))),
                    ),
                    None if !what.is_empty() => w.line(None, format_args!("{}", printable(&what))),
                    None => {}
                }
                let http = c.status().map(|s| format!("HTTP {s}"));
                let grpc = c.grpc_status().map(|g| match grpc_status_name(g) {
                    Some(n) => format!("grpc-status {g} {n}"),
                    None => format!("grpc-status {g}"),
                });
                let mut outcome = [http, grpc]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Some(m) = c.grpc_message() {
                    outcome = format!("{outcome}: {}", printable(&m));
                }
                if !outcome.is_empty() {
                    w.line(None, format_args!("{outcome}"));
                }
                let ms = |ns: i64| ns as f64 / 1e6;
                let mut time = format!("took {:.3} ms", ms(c.duration_ns()));
                if let Some(d) = c.deadline_ns() {
                    let _ = write!(time, " of a {:.3} ms deadline", ms(d));
                }
                if let Some(t) = c.time_to_response_ns() {
                    let _ = write!(time, "; the response began after {:.3} ms", ms(t));
                }
                w.line(None, format_args!("{time}"));
                let side = |m: u32, b: u64| match (c.grpc, m) {
                    (true, 1) => format!("1 message ({b} B)"),
                    (true, m) => format!("{m} messages ({b} B)"),
                    (false, _) => format!("{b} B"),
                };
                w.line(
                    None,
                    format_args!(
                        "request {}, response {}",
                        side(c.request_messages, c.request_bytes),
                        side(c.response_messages, c.response_bytes)
                    ),
                );
                for (title, list) in [
                    ("request headers", &c.request_headers),
                    ("response headers", &c.response_headers),
                    ("trailers", &c.response_trailers),
                ] {
                    if let Some(list) = list {
                        headers_detail(&mut w, title, list);
                    }
                }
                if let CallEnd::Reset {
                    by_client,
                    error_code,
                } = c.end
                {
                    let by = if by_client { "client" } else { "server" };
                    let code = error_code_name(error_code).unwrap_or("?");
                    let when = if c.reset_at_deadline() {
                        " at its deadline"
                    } else {
                        ""
                    };
                    w.line(None, format_args!("reset by the {by} ({code}){when}"));
                    reset += 1;
                }
                if let CallEnd::Refused { last_stream_id } = c.end {
                    w.line(
                        None,
                        format_args!(
                            "refused: above the last stream {last_stream_id} of the server's \
                             GOAWAY, never processed (a client may retry it)"
                        ),
                    );
                }
                for n in &c.notes {
                    w.line(None, format_args!("note: {n}"));
                }
                let mut json = Vec::new();
                crate::output::jsonl::write_call(&mut json, c);
                let json = serde_json::from_slice(&json).unwrap();
                assert_eq!(call_lines(&json), w.take_lines(), "{path}");
                calls += 1;
            }
        }
        assert!(calls > 50 && reset > 0, "{calls} {reset}");
    }
}
