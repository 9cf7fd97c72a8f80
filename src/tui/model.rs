//! What the terminal UI shows, built from the event stream: one row per call, per frame, per
//! message and per connection, with the text of their detail panes.

use std::collections::HashMap;

use crate::analysis::health::ConnectionHealth;
use crate::event::{ConnectionEnd, Event, FrameDetail, FrameEvent, MessageEvent, Sink};
use crate::http2::call::{grpc_status_name, header_name, header_value, lossless, Call, CallEnd};
use crate::http2::frame::{error_code_name, setting};
use crate::http2::hpack::Representation;

#[derive(Debug, Clone)]
pub struct FrameRow {
    pub packet: u64,
    pub ts_ns: i64,
    pub conn: u64,
    pub stream: u32,
    pub src: String,
    pub kind: &'static str,
    pub flags: String,
    pub length: u32,
    pub summary: String,
    pub detail: Vec<String>,
    /// The frame's bytes, for the hex pane.
    pub raw: Option<Vec<u8>>,
}

/// A hex dump: offset, 16 bytes in two groups of 8, and the printable characters.
pub fn hex_dump(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, row)| {
            let mut hex = String::with_capacity(50);
            for (j, b) in row.iter().enumerate() {
                if j == 8 {
                    hex.push(' ');
                }
                hex.push_str(&format!("{b:02x} "));
            }
            let text: String = row
                .iter()
                .map(|&b| {
                    if (0x20..0x7f).contains(&b) {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            format!("{:04x}  {hex:<49} {text}", i * 16)
        })
        .collect()
}

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
    /// Frames and messages of this call, in capture order, as indexes into `Model::items`.
    pub items: Vec<usize>,
    pub detail: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ConnRow {
    pub conn: u64,
    pub client: String,
    pub server: String,
    pub end: String,
    pub duration_s: f64,
    pub calls: usize,
    pub bytes: [u64; 2],
    /// Frames on stream 0 (SETTINGS, PING, GOAWAY, WINDOW_UPDATE), as indexes into `items`.
    pub items: Vec<usize>,
    /// The connection's health report (PINGs, GOAWAYs, resets, idle, flow control, end).
    pub detail: Vec<String>,
}

/// A frame or a message, as listed under a call.
#[derive(Debug, Clone)]
pub enum Item {
    Frame(FrameRow),
    Message {
        packet: u64,
        ts_ns: i64,
        side: &'static str,
        index: u32,
        summary: String,
        detail: Vec<String>,
    },
}

impl Item {
    pub fn detail(&self) -> &[String] {
        match self {
            Item::Frame(f) => &f.detail,
            Item::Message { detail, .. } => detail,
        }
    }
}

pub struct Model {
    pub items: Vec<Item>,
    pub calls: Vec<CallRow>,
    pub conns: Vec<ConnRow>,
    /// Items of calls not ended yet, by (connection, stream).
    open: HashMap<(u64, u32), Vec<usize>>,
    pub packets: u64,
    pub errors: u64,
    pub first_ts_ns: Option<i64>,
    /// Connection health, followed alongside; its report becomes the connection's detail.
    health: crate::analysis::health::Health<Box<dyn FnMut(ConnectionHealth)>>,
    reports: std::rc::Rc<std::cell::RefCell<HashMap<u64, ConnectionHealth>>>,
}

impl Default for Model {
    fn default() -> Self {
        let reports: std::rc::Rc<std::cell::RefCell<HashMap<u64, ConnectionHealth>>> =
            Default::default();
        let sink = reports.clone();
        Model {
            items: Vec::new(),
            calls: Vec::new(),
            conns: Vec::new(),
            open: HashMap::new(),
            packets: 0,
            errors: 0,
            first_ts_ns: None,
            health: crate::analysis::health::Health::new(Box::new(move |r: ConnectionHealth| {
                sink.borrow_mut().insert(r.conn, r);
            })),
            reports,
        }
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("items", &self.items.len())
            .field("calls", &self.calls.len())
            .field("conns", &self.conns.len())
            .finish()
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

fn frame_row(f: &FrameEvent) -> FrameRow {
    let h = &f.header;
    let mut summary = String::new();
    let mut detail = vec![format!(
        "{} frame, stream {}, {} bytes, flags 0x{:02x} {}",
        h.kind.name(),
        h.stream,
        h.length,
        h.flags,
        h.kind.flag_names(h.flags).join(" ")
    )];
    let code = |c: u32| {
        error_code_name(c)
            .map(String::from)
            .unwrap_or(format!("0x{c:x}"))
    };
    match &f.detail {
        FrameDetail::Settings { ack, settings } => {
            if *ack {
                summary = "ACK".into();
            }
            for s in settings {
                let name = setting::name(s.id)
                    .map(String::from)
                    .unwrap_or(format!("0x{:x}", s.id));
                summary.push_str(&format!("{name}={} ", s.value));
                detail.push(format!("  {name} = {}", s.value));
            }
        }
        FrameDetail::RstStream { error_code } => summary = code(*error_code),
        FrameDetail::GoAway {
            last_stream_id,
            error_code,
            debug_data,
        } => {
            summary = format!("last={last_stream_id} {}", code(*error_code));
            detail.push(format!(
                "  last stream id {last_stream_id}, {}",
                code(*error_code)
            ));
            detail.push(format!("  debug data: {:?}", lossless(debug_data)));
        }
        FrameDetail::WindowUpdate { increment } => summary = format!("+{increment}"),
        FrameDetail::Ping { ack, opaque } => {
            summary = format!("{}{}", if *ack { "ACK " } else { "" }, hex::encode(opaque))
        }
        FrameDetail::Data { data_len, .. } => summary = format!("{data_len} bytes of data"),
        FrameDetail::PushPromise {
            promised_stream, ..
        } => summary = format!("promised {promised_stream}"),
        FrameDetail::Priority(p) => {
            summary = format!("depends on {} weight {}", p.depends_on, p.weight as u16 + 1)
        }
        FrameDetail::Malformed(e) => summary = format!("malformed: {e}"),
        _ => {}
    }
    if let Some(list) = &f.headers {
        let pick = |n: &str| {
            list.iter()
                .find(|h| h.name == n.as_bytes())
                .map(header_value)
        };
        let parts: Vec<String> = [":method", ":path", ":status", "grpc-status"]
            .iter()
            .filter_map(|n| {
                pick(n).map(|v| {
                    if n.starts_with(':') {
                        v
                    } else {
                        format!("{n}={v}")
                    }
                })
            })
            .collect();
        summary = parts.join(" ");
        detail.push("  headers:".into());
        for h in list {
            detail.push(format!(
                "    {}: {}    [{}]",
                header_name(h),
                header_value(h),
                repr(&h.repr)
            ));
        }
    }
    for n in &f.notes {
        detail.push(format!("  note: {n}"));
    }
    FrameRow {
        packet: f.origin.packet,
        ts_ns: f.origin.ts_ns,
        conn: f.origin.conn,
        stream: h.stream,
        src: f.origin.src.to_string(),
        kind: h.kind.name(),
        flags: h.kind.flag_names(h.flags).join(","),
        length: h.length,
        summary,
        detail,
        raw: f.raw.clone(),
    }
}

fn message_item(m: &MessageEvent) -> Item {
    let d = &m.decoded;
    let mut detail = vec![format!(
        "{} message #{}, {} bytes{}{}",
        m.side.as_str(),
        m.index,
        d.length,
        if d.compressed { ", compressed" } else { "" },
        d.encoding
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    )];
    if let Some(t) = &d.type_name {
        detail.push(format!("  type {t}"));
    }
    if let Some(p) = &d.problem {
        detail.push(format!("  note: {p}"));
    }
    let summary = match (&d.json, &d.fields) {
        (Some(j), _) => {
            let pretty = serde_json::to_string_pretty(j).unwrap_or_default();
            detail.extend(pretty.lines().map(|l| format!("  {l}")));
            j.to_string()
        }
        (None, Some(f)) => {
            let pretty = serde_json::to_string_pretty(f).unwrap_or_default();
            detail.push("  schema-less fields:".into());
            detail.extend(pretty.lines().map(|l| format!("  {l}")));
            "(no schema)".into()
        }
        _ => String::new(),
    };
    Item::Message {
        packet: m.origin.packet,
        ts_ns: m.origin.ts_ns,
        side: m.side.as_str(),
        index: m.index,
        summary,
        detail,
    }
}

fn call_row(c: &Call, items: Vec<usize>) -> CallRow {
    let grpc_status = c.grpc_status();
    let problem = matches!(c.end, CallEnd::Reset { .. } | CallEnd::Unfinished)
        || grpc_status.is_some_and(|g| g != 0)
        || c.status().is_some_and(|s| s >= 400);
    let mut detail = Vec::new();
    for (title, list) in [
        ("request headers", &c.request_headers),
        ("response headers", &c.response_headers),
        ("trailers", &c.response_trailers),
    ] {
        if let Some(list) = list {
            detail.push(format!("{title}:"));
            detail.extend(
                list.iter()
                    .map(|h| format!("  {}: {}", header_name(h), header_value(h))),
            );
        }
    }
    if let CallEnd::Reset {
        by_client,
        error_code,
    } = c.end
    {
        detail.push(format!(
            "reset by the {} ({})",
            if by_client { "client" } else { "server" },
            error_code_name(error_code).unwrap_or("?")
        ));
    }
    detail.extend(c.notes.iter().map(|n| format!("note: {n}")));
    CallRow {
        conn: c.conn,
        stream: c.stream,
        method: c.method().unwrap_or_else(|| "-".into()),
        path: c.path().unwrap_or_else(|| "-".into()),
        status: c
            .status()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into()),
        grpc_status,
        duration_ms: c.duration_ns() as f64 / 1e6,
        messages: (c.request_messages, c.response_messages),
        start_ts_ns: c.start_ts_ns,
        problem,
        items,
        detail,
    }
}

impl Model {
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

    fn push(&mut self, conn: u64, stream: u32, item: Item) {
        let i = self.items.len();
        self.items.push(item);
        if stream == 0 {
            // Connection-level frames are listed under their connection at its end.
            self.open.entry((conn, 0)).or_default().push(i);
        } else {
            self.open.entry((conn, stream)).or_default().push(i);
        }
    }

    fn conn_end(&mut self, e: &ConnectionEnd) {
        let items = self.open.remove(&(e.conn, 0)).unwrap_or_default();
        self.health.event(Event::ConnectionEnd(e.clone()));
        let detail = self
            .reports
            .borrow_mut()
            .remove(&e.conn)
            .map(|h| {
                crate::analysis::health::to_text(&h)
                    .lines()
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let calls = self.calls.iter().filter(|c| c.conn == e.conn).count();
        self.conns.push(ConnRow {
            conn: e.conn,
            client: e.client.to_string(),
            server: e.server.to_string(),
            end: e.end.as_str().to_string(),
            duration_s: e.last_ts_ns.saturating_sub(e.first_ts_ns) as f64 / 1e9,
            calls,
            bytes: e.bytes,
            items,
            detail,
        });
    }
}

impl Sink for Model {
    fn event(&mut self, event: Event) {
        match event {
            Event::Frame(f) => {
                self.health.event(Event::Frame(f.clone()));
                self.first_ts_ns.get_or_insert(f.origin.ts_ns);
                self.packets = self.packets.max(f.origin.packet);
                let row = frame_row(&f);
                self.push(f.origin.conn, f.header.stream, Item::Frame(row));
            }
            Event::Message(m) => {
                let item = message_item(&m);
                self.push(m.origin.conn, m.stream, item);
            }
            Event::Call(c) => {
                self.health.event(Event::Call(c.clone()));
                let items = self.open.remove(&(c.conn, c.stream)).unwrap_or_default();
                self.calls.push(call_row(&c, items));
            }
            Event::ConnectionEnd(e) => self.conn_end(&e),
            Event::Error(_) | Event::Gap(_) => self.errors += 1,
        }
    }
}
