//! JSON Lines output: one object per event. The field names are a public interface (README).

use std::io::Write;

use serde_json::{json, Map, Value};

use super::Summary;
use crate::event::{
    ConnectionEnd, EndKind, ErrorEvent, Event, FrameDetail, FrameEvent, GapEvent, MessageEvent,
    Origin, Sink,
};
use crate::grpc::message::decode_bin_header;
use crate::http2::call::{grpc_status_name, header_name, header_value, lossless, Call, CallEnd};
use crate::http2::frame::{error_code_name, setting};
use crate::http2::hpack::HeaderField;

pub struct JsonLines<W: Write> {
    out: W,
    /// Only call events (`--calls`).
    calls_only: bool,
    /// No events at all (only the summary, if asked for).
    quiet: bool,
    io_error: Option<std::io::Error>,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W, calls_only: bool, quiet: bool) -> Self {
        JsonLines {
            out,
            calls_only,
            quiet,
            io_error: None,
        }
    }

    pub fn io_error(&mut self) -> Option<std::io::Error> {
        self.io_error.take()
    }

    pub fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.io_error.get_or_insert(e);
        }
    }

    pub fn summary(&mut self, s: &Summary) {
        let v = summary_json(s);
        self.write(&v);
        let _ = self.out.flush();
    }

    fn write(&mut self, v: &Value) {
        if self.io_error.is_some() {
            return;
        }
        let res = serde_json::to_writer(&mut self.out, v)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"));
        if let Err(e) = res {
            self.io_error = Some(e);
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn event(&mut self, event: Event) {
        if self.quiet {
            return;
        }
        let v = match &event {
            Event::Call(c) => call_json(c),
            _ if self.calls_only => return,
            Event::Frame(f) => frame_json(f),
            Event::Message(m) => message_json(m),
            Event::Gap(g) => gap_json(g),
            Event::Error(e) => error_json(e),
            Event::ConnectionEnd(c) => connection_json(c),
        };
        self.write(&v);
    }
}

pub fn ts(ns: i64) -> f64 {
    ns as f64 / 1e9
}

fn origin_fields(m: &mut Map<String, Value>, o: &Origin) {
    m.insert("packet".into(), o.packet.into());
    m.insert("ts".into(), ts(o.ts_ns).into());
    m.insert("conn".into(), o.conn.into());
    m.insert("src".into(), o.src.to_string().into());
    m.insert("dst".into(), o.dst.to_string().into());
}

pub fn headers_json(list: &[HeaderField]) -> Value {
    Value::Array(
        list.iter()
            .map(|h| json!([header_name(h), header_value(h)]))
            .collect(),
    )
}

fn error_code_json(m: &mut Map<String, Value>, code: u32) {
    m.insert("error_code".into(), code.into());
    m.insert(
        "error_name".into(),
        error_code_name(code)
            .map(Value::from)
            .unwrap_or(Value::Null),
    );
}

pub fn frame_json(f: &FrameEvent) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), "frame".into());
    origin_fields(&mut m, &f.origin);
    let h = &f.header;
    m.insert("stream".into(), h.stream.into());
    m.insert("type".into(), h.kind.name().into());
    m.insert("type_code".into(), h.kind.code().into());
    m.insert("flags".into(), h.flags.into());
    m.insert("flag_names".into(), json!(h.kind.flag_names(h.flags)));
    m.insert("length".into(), h.length.into());
    match &f.detail {
        FrameDetail::Data {
            data_len,
            pad_len,
            missing,
        } => {
            m.insert("data_length".into(), (*data_len).into());
            if let Some(p) = pad_len {
                m.insert("pad_length".into(), (*p).into());
            }
            if *missing > 0 {
                m.insert("missing".into(), (*missing).into());
            }
        }
        FrameDetail::Headers { priority, pad_len } => {
            if let Some(p) = priority {
                m.insert("priority".into(), priority_json(p));
            }
            if let Some(p) = pad_len {
                m.insert("pad_length".into(), (*p).into());
            }
        }
        FrameDetail::Priority(p) => {
            m.insert("priority".into(), priority_json(p));
        }
        FrameDetail::RstStream { error_code } => error_code_json(&mut m, *error_code),
        FrameDetail::Settings { ack, settings } => {
            m.insert("ack".into(), (*ack).into());
            m.insert(
                "settings".into(),
                Value::Array(settings.iter().map(|s| json!([s.id, s.value])).collect()),
            );
            m.insert(
                "setting_names".into(),
                Value::Array(
                    settings
                        .iter()
                        .map(|s| setting::name(s.id).map(Value::from).unwrap_or(Value::Null))
                        .collect(),
                ),
            );
        }
        FrameDetail::PushPromise {
            promised_stream,
            pad_len,
        } => {
            m.insert("promised_stream".into(), (*promised_stream).into());
            if let Some(p) = pad_len {
                m.insert("pad_length".into(), (*p).into());
            }
        }
        FrameDetail::Ping { ack, opaque } => {
            m.insert("ack".into(), (*ack).into());
            m.insert("opaque".into(), hex::encode(opaque).into());
        }
        FrameDetail::GoAway {
            last_stream_id,
            error_code,
            debug_data,
        } => {
            m.insert("last_stream_id".into(), (*last_stream_id).into());
            error_code_json(&mut m, *error_code);
            m.insert("debug_data".into(), lossless(debug_data).into());
        }
        FrameDetail::WindowUpdate { increment } => {
            m.insert("increment".into(), (*increment).into());
        }
        FrameDetail::Continuation | FrameDetail::Unknown | FrameDetail::Skipped => {}
        FrameDetail::Malformed(e) => {
            m.insert("malformed".into(), e.to_string().into());
        }
    }
    if let Some(list) = &f.headers {
        m.insert("headers".into(), headers_json(list));
    }
    if !f.table_size_updates.is_empty() {
        m.insert("table_size_updates".into(), json!(f.table_size_updates));
    }
    if !f.notes.is_empty() {
        m.insert("notes".into(), json!(f.notes));
    }
    Value::Object(m)
}

fn priority_json(p: &crate::http2::frame::PriorityInfo) -> Value {
    json!({"exclusive": p.exclusive, "depends_on": p.depends_on, "weight": p.weight as u16 + 1})
}

fn opt_headers(list: &Option<Vec<HeaderField>>) -> Value {
    list.as_deref().map(headers_json).unwrap_or(Value::Null)
}

pub fn call_json(c: &Call) -> Value {
    let (end, reset_by, error_code) = match c.end {
        CallEnd::Complete => ("complete", Value::Null, Value::Null),
        CallEnd::Reset {
            by_client,
            error_code,
        } => (
            "reset",
            if by_client { "client" } else { "server" }.into(),
            error_code.into(),
        ),
        CallEnd::Unfinished => ("unfinished", Value::Null, Value::Null),
    };
    let grpc_status = c.grpc_status();
    let mut v = json!({
        "event": "call",
        "conn": c.conn,
        "stream": c.stream,
        "client": c.client.to_string(),
        "server": c.server.to_string(),
        "method": c.method(),
        "path": c.path(),
        "authority": c.authority(),
        "status": c.status(),
        "grpc_status": grpc_status,
        "grpc_status_name": grpc_status.and_then(grpc_status_name),
        "grpc_message": c.grpc_message(),
        "start_ts": ts(c.start_ts_ns),
        "end_ts": ts(c.end_ts_ns),
        "duration": ts(c.duration_ns()),
        "start_packet": c.start_packet,
        "end_packet": c.end_packet,
        "request_bytes": c.request_bytes,
        "response_bytes": c.response_bytes,
        "end": end,
        "reset_by": reset_by,
        "error_code": error_code,
        "pushed": c.pushed,
        "upgraded": c.upgraded,
        "request_headers": opt_headers(&c.request_headers),
        "response_headers": opt_headers(&c.response_headers),
        "request_trailers": opt_headers(&c.request_trailers),
        "trailers": opt_headers(&c.response_trailers),
        "grpc": c.grpc,
        "request_messages": c.request_messages,
        "response_messages": c.response_messages,
        "grpc_status_details": c.grpc_status_details,
        "binary_metadata": binary_metadata(&[
            &c.request_headers,
            &c.response_headers,
            &c.response_trailers,
        ]),
    });
    if !c.notes.is_empty() {
        v["notes"] = json!(c.notes);
    }
    v
}

pub fn message_json(e: &MessageEvent) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), "message".into());
    origin_fields(&mut m, &e.origin);
    let d = &e.decoded;
    m.insert("stream".into(), e.stream.into());
    m.insert("path".into(), e.path.clone().into());
    m.insert("dir".into(), e.side.as_str().into());
    m.insert("index".into(), e.index.into());
    m.insert("compressed".into(), d.compressed.into());
    m.insert("encoding".into(), d.encoding.clone().into());
    m.insert("length".into(), d.length.into());
    m.insert("type".into(), d.type_name.clone().into());
    m.insert("json".into(), d.json.clone().unwrap_or(Value::Null));
    m.insert("fields".into(), d.fields.clone().unwrap_or(Value::Null));
    if let Some(p) = &d.problem {
        m.insert("problem".into(), p.clone().into());
    }
    if !d.harvested.is_empty() {
        m.insert("harvested".into(), json!(d.harvested));
    }
    Value::Object(m)
}

/// `-bin` metadata of a header list, base64-decoded, as `[[name, hex], ...]`.
pub fn binary_metadata(lists: &[&Option<Vec<HeaderField>>]) -> Value {
    let mut out = Vec::new();
    for list in lists.iter().filter_map(|l| l.as_ref()) {
        for h in list {
            if h.name.ends_with(b"-bin") {
                let decoded = decode_bin_header(&h.value)
                    .map(hex::encode)
                    .map(Value::from)
                    .unwrap_or(Value::Null);
                out.push(json!([lossless(&h.name), decoded]));
            }
        }
    }
    Value::Array(out)
}

pub fn end_by(end: &EndKind) -> Value {
    match end {
        EndKind::HalfClosed { by_client } | EndKind::Rst { by_client } => {
            if *by_client { "client" } else { "server" }.into()
        }
        _ => Value::Null,
    }
}

pub fn connection_json(c: &ConnectionEnd) -> Value {
    json!({
        "event": "connection",
        "conn": c.conn,
        "client": c.client.to_string(),
        "server": c.server.to_string(),
        "protocol": c.protocol,
        "start_ts": ts(c.first_ts_ns),
        "end_ts": ts(c.last_ts_ns),
        "duration": ts(c.last_ts_ns.saturating_sub(c.first_ts_ns)),
        "bytes_to_server": c.bytes[0],
        "bytes_to_client": c.bytes[1],
        "packets": c.packets,
        "end": c.end.as_str(),
        "end_by": end_by(&c.end),
        "joined_mid_way": c.mid,
    })
}

fn gap_json(g: &GapEvent) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), "gap".into());
    origin_fields(&mut m, &g.origin);
    m.insert("bytes".into(), g.bytes.into());
    Value::Object(m)
}

fn error_json(e: &ErrorEvent) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), "error".into());
    match &e.origin {
        Some(o) => origin_fields(&mut m, o),
        None => {
            for k in ["packet", "ts", "conn", "src", "dst"] {
                m.insert(k.into(), Value::Null);
            }
        }
    }
    m.insert(
        "stream".into(),
        e.stream.map(Value::from).unwrap_or(Value::Null),
    );
    m.insert("kind".into(), e.kind.as_str().into());
    m.insert("message".into(), e.message.clone().into());
    Value::Object(m)
}

fn summary_json(s: &Summary) -> Value {
    json!({
        "event": "summary",
        "file": s.file,
        "packets": s.stats.packets,
        "tcp_packets": s.stats.tcp_packets,
        "skipped_packets": s.stats.skipped_packets,
        "tcp_connections": s.stats.flows.connections,
        "http2_connections": s.stats.http2_connections,
        "http1_connections": s.stats.http1_connections,
        "other_connections": s.stats.other_connections,
        "calls": s.tally.calls,
        "messages": s.tally.messages,
        "frames": s.tally.frames,
        "frames_by_type": s.tally.frames_by_type,
        "gaps": s.tally.gaps,
        "gap_bytes": s.tally.gap_bytes,
        "errors": s.tally.errors,
        "retransmitted_segments": s.stats.flows.retransmitted,
        "capture_warnings": s.warnings,
        "received": s.live.map(|l| l.received),
        "kernel_drops": s.live.map(|l| l.dropped),
        "interface_drops": s.live.map(|l| l.if_dropped),
    })
}
