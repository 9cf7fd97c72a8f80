//! Human-readable output: one line per frame in the spirit of tshark's summary lines, or one
//! line per call with `--calls`.

use std::fmt::Write as _;
use std::io::Write;

use super::clock::{self, TimeFormat};
use super::{Addr, Summary};

use crate::event::{Event, FrameDetail, FrameEvent, MessageEvent, Origin, Sink};
use crate::grpc::message::Schemaless;
use crate::grpc::wire::{self, LenGuess, Node, WireValue};
use crate::http2::call::{
    grpc_status_name, header_name, header_value, lossless, lossless_str, printable,
    printable_owned, Call, CallEnd,
};
use crate::http2::frame::{error_code_label, setting, FrameType, FRAME_HEADER_LEN};
use crate::http2::hpack::HeaderField;
use crate::parallel::{ConnSlot, Handoff};

#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    pub calls_only: bool,
    /// Every header on its own line under the frame.
    pub verbose: bool,
    /// Each frame's bytes (those its event kept) as a hex dump under its line.
    pub hex: bool,
    /// Nothing per event; only the summary.
    pub quiet: bool,
    /// The time column's form (tshark's `-t`).
    pub time: TimeFormat,
}

pub struct Text<W: Write> {
    out: W,
    opts: TextOptions,
    /// Times are shown relative to the first packet, as tshark does.
    base_ns: Option<i64>,
    line: String,
    io_error: Option<std::io::Error>,
    /// Connection numbers are left out, and where the (last) one goes is noted here: lines
    /// formatted on a worker thread, which does not know the capture's numbering.
    conn_hole: Option<Option<usize>>,
}

/// What a line's head (see [`Text::head`]) is made from.
#[derive(Clone, Copy, PartialEq)]
struct HeadKey {
    origin: Origin,
    base_ns: Option<i64>,
    time: TimeFormat,
    /// The connection number is left out (a worker thread's line).
    hole: bool,
}

thread_local! {
    /// The head written last on this thread, its text, and where its connection number goes
    /// when it is left out.
    static LAST_HEAD: std::cell::RefCell<(Option<HeadKey>, String, Option<usize>)> =
        const { std::cell::RefCell::new((None, String::new(), None)) };
}

/// `bytes` as hex dump rows (`-x`), each indented by `indent` spaces.
fn push_dump(l: &mut String, indent: usize, bytes: &[u8]) {
    for row in super::hexdump::hex_dump(bytes) {
        let _ = writeln!(l, "{:>indent$}{row}", "");
    }
}

/// A message's hex dump (`-x`) stops after this many bytes, as a frame's does.
const MESSAGE_DUMP_MAX: usize = crate::http2::connection::MAX_RAW;

/// Connection numbers are shown as `#N` padded to this width, as `{:<3}` does.
const CONN_WIDTH: u8 = 3;

impl<W: Write> Text<W> {
    pub fn new(out: W, opts: TextOptions) -> Self {
        Text {
            out,
            opts,
            base_ns: None,
            line: String::new(),
            io_error: None,
            conn_hole: None,
        }
    }

    /// `#` and the connection number (or the hole for it).
    fn conn(&mut self, n: u64) {
        self.line.push('#');
        match &mut self.conn_hole {
            Some(at) => *at = Some(self.line.len()),
            None => push_left(&mut self.line, n, CONN_WIDTH.into()),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn set_base(&mut self, ts_ns: i64) {
        self.base_ns.get_or_insert(ts_ns);
    }

    pub fn io_error(&mut self) -> Option<std::io::Error> {
        self.io_error.take()
    }

    pub fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.io_error.get_or_insert(e);
        }
    }

    /// Nanoseconds since the capture's first packet.
    fn rel_ns(&self, ts_ns: i64) -> i64 {
        ts_ns.saturating_sub(self.base_ns.unwrap_or(ts_ns))
    }

    /// The time column: seconds since the first packet, or the time `-t` asks for.
    fn push_time(&mut self, ts_ns: i64) {
        match self.opts.time {
            TimeFormat::Relative => {
                let rel_ns = self.rel_ns(ts_ns);
                push_seconds(&mut self.line, rel_ns)
            }
            absolute => clock::push_absolute(&mut self.line, absolute, ts_ns),
        }
    }

    /// The start every line about a place in the capture shares: record, time, connection,
    /// source → destination.
    fn head(&mut self, o: &Origin) {
        // The frames and messages of one packet share their head: the last one's text is
        // copied (it was a sixth of the text output's instructions).
        let key = HeadKey {
            origin: *o,
            base_ns: self.base_ns,
            time: self.opts.time,
            hole: self.conn_hole.is_some(),
        };
        let start = self.line.len();
        let hit = LAST_HEAD.with_borrow(|(last, text, hole)| {
            if *last != Some(key) {
                return false;
            }
            self.line.push_str(text);
            if let Some(at) = &mut self.conn_hole {
                *at = hole.map(|off| start + off);
            }
            true
        });
        if hit {
            return;
        }
        // As `{:>6} {:>11.6} #{:<3} {} → {}` writes it, without the formatting machinery for
        // all but the time (most lines are short, and this start is half of them).
        push_right(&mut self.line, o.packet, 6);
        self.line.push(' ');
        self.push_time(o.ts_ns);
        self.line.push(' ');
        self.conn(o.conn);
        let l = &mut self.line;
        l.push(' ');
        Addr(&o.src).push_to(l);
        l.push_str(" → ");
        Addr(&o.dst).push_to(l);
        LAST_HEAD.with_borrow_mut(|(last, text, hole)| {
            *last = Some(key);
            text.clear();
            text.push_str(&self.line[start..]);
            *hole = self.conn_hole.flatten().map(|at| at - start);
        });
    }

    fn flush_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        self.line(line.as_bytes());
        self.line = line;
        self.line.clear();
    }

    fn frame(&mut self, f: &FrameEvent) {
        let o = &f.origin;
        let h = &f.header;
        self.head(o);
        let l = &mut self.line;
        l.push(' ');
        push_right(l, h.stream.into(), 5);
        l.push(' ');
        match h.kind {
            FrameType::Unknown(_) => {
                let _ = write!(l, "{}", h.kind);
            }
            known => l.push_str(known.name()),
        }
        let mut flags = h.kind.flag_name_iter(h.flags).peekable();
        if flags.peek().is_some() {
            l.push('[');
            for (i, flag) in flags.enumerate() {
                if i > 0 {
                    l.push(',');
                }
                l.push_str(flag);
            }
            l.push(']');
        }
        l.push_str(" len=");
        push_uint(l, h.length.into());
        describe(l, f);
        for n in &f.notes {
            let _ = write!(l, "  [!] {n}");
        }
        l.push('\n');
        if self.opts.verbose {
            if let Some(list) = &f.headers {
                for hf in list.iter() {
                    let _ = writeln!(l, "{:>20}{}: {}", "", name(hf), value(hf));
                }
            }
        }
        if let Some(raw) = f.raw.as_deref().filter(|_| self.opts.hex) {
            push_dump(l, 20, raw);
            let whole = FRAME_HEADER_LEN + h.length as usize;
            if raw.len() < whole {
                let _ = writeln!(l, "{:>20}({} of the frame's {whole} bytes)", "", raw.len());
            }
        }
        self.flush_line();
    }

    fn message(&mut self, m: &MessageEvent) {
        let o = &m.origin;
        let d = &m.decoded;
        self.head(o);
        let l = &mut self.line;
        l.push(' ');
        push_right(l, m.stream.into(), 5);
        l.push_str("   ↳ ");
        l.push_str(m.side.as_str());
        l.push_str(" #");
        push_uint(l, m.index.into());
        l.push(' ');
        push_uint(l, d.length.into());
        l.push('B');
        if d.compressed {
            let _ = write!(l, " ({})", d.encoding.as_deref().unwrap_or("compressed"));
        }
        match (&d.type_name, &d.json, &d.fields) {
            (Some(t), Some(json), _) => {
                l.push(' ');
                l.push_str(t);
                l.push(' ');
                l.push_str(json.as_str());
            }
            (None, Some(json), _) => {
                l.push(' ');
                l.push_str(json.as_str());
            }
            (_, None, Some(fields)) => {
                l.push_str(" (no schema) ");
                raw_fields(l, fields);
            }
            _ => {}
        }
        if let Some(p) = &d.problem {
            let _ = write!(l, "  [!] {p}");
        }
        if !d.harvested.is_empty() {
            let _ = write!(l, "  (schema files: {})", d.harvested.join(", "));
        }
        l.push('\n');
        if self.opts.verbose {
            if let Some(json) = &d.json {
                let pretty = super::jsonl::pretty(json.as_str());
                for line in pretty.lines() {
                    let _ = writeln!(l, "{:>22}{line}", "");
                }
            }
            if let Some(fields) = &d.fields {
                tree(l, fields, 22);
            }
        }
        if let Some(bytes) = d.bytes.as_deref().filter(|_| self.opts.hex) {
            let shown = &bytes[..bytes.len().min(MESSAGE_DUMP_MAX)];
            push_dump(l, 22, shown);
            if shown.len() < bytes.len() {
                let _ = writeln!(
                    l,
                    "{:>22}(the first {} of {} bytes)",
                    "",
                    shown.len(),
                    bytes.len()
                );
            }
        }
        self.flush_line();
    }

    fn call(&mut self, c: &Call) {
        if !self.opts.calls_only {
            // Among frame lines, a call is announced where it ends (`{:>6} ` of "CALL").
            self.line.push_str("  CALL ");
        }
        self.push_time(c.start_ts_ns);
        self.line.push(' ');
        self.conn(c.conn);
        // As `" {:>5} {} → {} {} {}"` writes stream, client, server, method and path.
        let l = &mut self.line;
        l.push(' ');
        push_right(l, c.stream.into(), 5);
        l.push(' ');
        Addr(&c.client).push_to(l);
        l.push_str(" → ");
        Addr(&c.server).push_to(l);
        for name in [":method", ":path"] {
            l.push(' ');
            l.push_str(&printable(
                &c.request_header(name).map_or("-".into(), lossless_str),
            ));
        }
        match c.status() {
            Some(s) => {
                l.push(' ');
                push_uint(l, s.into());
            }
            None => l.push_str(" -"),
        }
        if let Some(g) = c.grpc_status() {
            l.push_str(" grpc-status=");
            push_uint(l, g.into());
            if let Some(n) = grpc_status_name(g) {
                l.push('(');
                l.push_str(n);
                l.push(')');
            }
        }
        if let Some(m) = c.grpc_message() {
            let _ = write!(l, " grpc-message={m:?}");
        }
        l.push(' ');
        push_micros(l, c.duration_ns(), Unit::Millis, 0);
        l.push_str("ms");
        if let Some(deadline) = c.deadline_ns() {
            l.push_str(" deadline=");
            push_micros(l, deadline, Unit::Millis, 0);
            l.push_str("ms");
        }
        l.push_str(" req=");
        push_uint(l, c.request_bytes);
        l.push_str("B resp=");
        push_uint(l, c.response_bytes);
        l.push('B');
        match c.end {
            CallEnd::Complete => {
                if c.request_stopped {
                    l.push_str(" (request stopped by the server: RST_STREAM NO_ERROR)");
                }
            }
            CallEnd::Reset {
                by_client,
                error_code,
            } => {
                let _ = write!(
                    l,
                    " RESET by {} {}",
                    if by_client { "client" } else { "server" },
                    error_code_label(error_code)
                );
                if c.reset_at_deadline() {
                    l.push_str(" at its deadline");
                }
            }
            CallEnd::Unfinished => l.push_str(" (unfinished)"),
            CallEnd::Refused { last_stream_id } => {
                let _ = write!(l, " REFUSED by GOAWAY (last stream {last_stream_id})");
            }
        }
        if c.grpc {
            l.push_str(" msgs=");
            push_uint(l, c.request_messages.into());
            l.push('/');
            push_uint(l, c.response_messages.into());
        }
        for n in &c.notes {
            let _ = write!(l, "  [!] {n}");
        }
        if c.pushed {
            l.push_str(" (pushed)");
        }
        if c.upgraded {
            l.push_str(" (h2c upgrade)");
        }
        l.push('\n');
        if self.opts.verbose {
            for (title, list) in [
                ("request", &c.request_headers),
                ("response", &c.response_headers),
                ("request trailers", &c.request_trailers),
                ("trailers", &c.response_trailers),
            ] {
                if let Some(list) = list {
                    let _ = writeln!(l, "{:>14}{title}:", "");
                    for hf in list.iter() {
                        let _ = writeln!(l, "{:>16}{}: {}", "", name(hf), value(hf));
                        if hf.name.ends_with(b"-bin") {
                            if let Some(b) = crate::grpc::message::decode_bin_header(&hf.value) {
                                // A NUL first: sent as bytes, not base64 (see decode_bin_header).
                                let how = match hf.value.first() {
                                    Some(0) => "binary",
                                    _ => "base64-decoded",
                                };
                                let _ = writeln!(l, "{:>18}({how}) {}", "", hex::encode(b));
                            }
                        }
                    }
                }
            }
            if let Some(details) = &c.grpc_status_details {
                let _ = writeln!(l, "{:>14}grpc-status-details-bin: {details}", "");
            }
        }
        self.flush_line();
    }

    pub fn summary(&mut self, s: &Summary) {
        let st = &s.stats;
        let t = &s.tally;
        let l = &mut self.line;
        let _ = writeln!(l, "\n== {} ==", s.file);
        let _ = writeln!(
            l,
            "packets: {} ({} TCP), duration {:.3}s",
            st.packets,
            st.tcp_packets,
            st.first_ts_ns
                .map(|f| st.last_ts_ns.saturating_sub(f) as f64 / 1e9)
                .unwrap_or(0.0)
        );
        let _ = writeln!(
            l,
            "TCP connections: {} ({} HTTP/2, {} HTTP/1.1 gRPC-Web, {} other, skipped: {} bytes)",
            st.flows.connections,
            st.http2_connections,
            st.http1_connections,
            st.other_connections,
            st.other_bytes
        );
        if st.tls_connections > 0 {
            let _ = write!(
                l,
                "TLS connections: {} ({} decrypted)",
                st.tls_connections, st.tls_decrypted
            );
            if st.tls_decrypted < st.tls_connections {
                let _ = write!(
                    l,
                    "; to decrypt, give the secrets SSLKEYLOGFILE wrote with --tls-keylog FILE (if given, errors of kind tls say why not)"
                );
            }
            l.push('\n');
        }
        let _ = write!(l, "HTTP/2 frames: {}", t.frames);
        let by_type = t.frames_by_type();
        if !by_type.is_empty() {
            let parts: Vec<String> = by_type.iter().map(|(k, v)| format!("{k}×{v}")).collect();
            let _ = write!(l, " ({})", parts.join(" "));
        }
        l.push('\n');
        let _ = writeln!(l, "calls: {}, gRPC messages: {}", t.calls, t.messages);
        let _ = writeln!(
            l,
            "gaps: {} ({} bytes missing), retransmitted segments: {}",
            t.gaps, t.gap_bytes, st.flows.retransmitted
        );
        let _ = writeln!(
            l,
            "errors: {}, frames with protocol notes: {}",
            t.errors, t.frames_with_notes
        );
        // Not an error of the capture's, but a partial decode all the same: it must not pass
        // unseen, and its remedy is an option.
        if st.flows.evicted > 0 {
            let _ = writeln!(
                l,
                "connections evicted: {} (the flow table was full: anything after on them was read as from connections joined mid-way; a larger --max-connections keeps them, at a few kB each)",
                st.flows.evicted
            );
        }
        if !st.skipped_packets.is_empty() {
            let parts: Vec<String> = st
                .skipped_packets
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(l, "packets not decoded: {}", parts.join(", "));
        }
        if let Some(live) = &s.live {
            let _ = writeln!(
                l,
                "capture: {} packets received by the filter, {} dropped by the kernel, {} by the interface",
                live.received, live.dropped, live.if_dropped
            );
        }
        for w in &s.warnings {
            let _ = writeln!(l, "warning: {w}");
        }
        self.flush_line();
        let _ = self.out.flush();
    }
}

fn name(h: &HeaderField) -> String {
    printable_owned(header_name(h))
}

fn value(h: &HeaderField) -> String {
    printable_owned(header_value(h))
}

/// Nanoseconds as seconds the way `{:>11.6}` writes `ns as f64 / 1e9`.
fn push_seconds(l: &mut String, ns: i64) {
    push_micros(l, ns, Unit::Seconds, 11);
}

/// What [`push_micros`] writes nanoseconds in.
#[derive(Clone, Copy)]
enum Unit {
    /// Six decimals.
    Seconds,
    /// Three decimals.
    Millis,
}

/// Nanoseconds in `unit` to the microsecond, right-aligned in `width`, the way
/// `{:>width$.6}` (seconds) or `{:>width$.3}` (milliseconds) writes the `f64` quotient. In
/// integers where that gives the same digits: below a day and a bit (where the float is exact
/// to far less than a nanosecond) and off a rounding tie; through the float otherwise.
fn push_micros(l: &mut String, ns: i64, unit: Unit, width: usize) {
    let (per_unit, decimals) = match unit {
        Unit::Seconds => (1_000_000, 6),
        Unit::Millis => (1_000, 3),
    };
    if !(0..100_000_000_000_000).contains(&ns) || ns % 1000 == 500 {
        let _ = write!(
            l,
            "{:>width$.decimals$}",
            ns as f64 / (per_unit as f64 * 1e3)
        );
        return;
    }
    let micros = (ns as u64 + 500) / 1000;
    let mut whole = itoa::Buffer::new();
    let whole = whole.format(micros / per_unit);
    let mut frac = itoa::Buffer::new();
    let frac = frac.format(micros % per_unit);
    let len = whole.len() + 1 + decimals;
    pad(l, SPACES, width.saturating_sub(len));
    l.push_str(whole);
    l.push('.');
    pad(l, ZEROS, decimals - frac.len());
    l.push_str(frac);
}

const SPACES: &str = "                ";
const ZEROS: &str = "0000000000000000";

/// `n` copies of `fill`'s one character, pushed a slice at a time (one by one, they were about
/// 4% of the text output's instructions).
fn pad(l: &mut String, fill: &str, mut n: usize) {
    // The whole fill, then cut back: a copy of a known length is a few moves, where one of
    // `n` bytes was a call to memset or memcpy.
    while n > 0 {
        let k = n.min(fill.len());
        l.push_str(fill);
        l.truncate(l.len() - (fill.len() - k));
        n -= k;
    }
}

/// `n` right-aligned in `width` columns, as `{:>width}` writes it.
fn push_right(l: &mut String, n: u64, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    pad(l, SPACES, width.saturating_sub(digits.len()));
    l.push_str(digits);
}

/// `n` left-aligned in `width` columns, as `{:<width}` writes it.
fn push_left(l: &mut String, n: u64, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    l.push_str(digits);
    pad(l, SPACES, width.saturating_sub(digits.len()));
}

fn push_uint(l: &mut String, n: u64) {
    l.push_str(itoa::Buffer::new().format(n));
}

/// A header's value as [`value`] shows it, without a string of its own when it is valid UTF-8
/// (nearly always).
fn push_value(l: &mut String, h: &HeaderField) {
    match std::str::from_utf8(&h.value) {
        Ok(text) if !h.value_unknown => l.push_str(&printable(text)),
        _ => l.push_str(&value(h)),
    }
}

fn find<'a>(list: &'a [HeaderField], n: &str) -> Option<&'a HeaderField> {
    list.iter().find(|h| h.name == n.as_bytes())
}

/// The part of a frame line that says what matters for its type.
fn describe(l: &mut String, f: &FrameEvent) {
    match &f.detail {
        FrameDetail::Data {
            data_len, missing, ..
        } => {
            if *missing > 0 {
                let _ = write!(l, " ({data_len} data bytes, {missing} missing)");
            }
        }
        FrameDetail::Headers { priority, .. } => {
            if let Some(p) = priority {
                let _ = write!(l, " dep={} w={}", p.depends_on, p.weight as u16 + 1);
            }
        }
        FrameDetail::Priority(p) => {
            let _ = write!(
                l,
                " depends on {}{} weight {}",
                p.depends_on,
                if p.exclusive { " (exclusive)" } else { "" },
                p.weight as u16 + 1
            );
        }
        FrameDetail::RstStream { error_code } => {
            l.push(' ');
            l.push_str(&error_code_label(*error_code));
        }
        FrameDetail::Settings { settings, .. } => {
            for s in settings {
                match setting::name(s.id) {
                    Some(n) => {
                        l.push(' ');
                        l.push_str(n);
                    }
                    None => {
                        let _ = write!(l, " 0x{:x}", s.id);
                    }
                }
                l.push('=');
                push_uint(l, s.value.into());
            }
        }
        FrameDetail::PushPromise {
            promised_stream, ..
        } => {
            let _ = write!(l, " promised={promised_stream}");
        }
        FrameDetail::Ping { opaque, .. } => {
            let _ = write!(l, " opaque={}", hex::encode(opaque));
        }
        FrameDetail::GoAway {
            last_stream_id,
            error_code,
            debug_data,
        } => {
            let _ = write!(
                l,
                " last_stream={last_stream_id} {}",
                error_code_label(*error_code)
            );
            if !debug_data.is_empty() {
                let _ = write!(l, " {:?}", lossless(debug_data));
            }
        }
        FrameDetail::WindowUpdate { increment } => {
            l.push_str(" +");
            push_uint(l, (*increment).into());
        }
        FrameDetail::Continuation | FrameDetail::Unknown | FrameDetail::Skipped => {}
        FrameDetail::Malformed(_) => {}
    }
    if let Some(list) = &f.headers {
        // The request line, the status and the gRPC status, as "  POST /a status=200 ...".
        let mut first = true;
        for (name, label) in [
            (":method", ""),
            (":path", ""),
            (":status", "status="),
            ("grpc-status", "grpc-status="),
        ] {
            let Some(h) = find(list, name) else {
                continue;
            };
            l.push_str(if first { "  " } else { " " });
            first = false;
            l.push_str(label);
            push_value(l, h);
            if name == "grpc-status" {
                let code = (!h.value_unknown)
                    .then(|| std::str::from_utf8(&h.value).ok()?.parse().ok())
                    .flatten();
                if let Some(n) = code.and_then(grpc_status_name) {
                    l.push('(');
                    l.push_str(n);
                    l.push(')');
                }
            }
        }
        l.push_str(" (");
        push_uint(l, list.len() as u64);
        l.push_str(" headers)");
    } else if matches!(
        f.header.kind,
        FrameType::Headers | FrameType::PushPromise | FrameType::Continuation
    ) && f.header.has(crate::http2::frame::flags::END_HEADERS)
    {
        l.push_str(" (headers not decoded)");
    }
}

impl<W: Write> Sink for Text<W> {
    fn closed(&self) -> bool {
        self.io_error.is_some()
    }

    fn wants(&mut self) -> crate::event::Wants<'_> {
        if self.opts.calls_only {
            crate::event::Wants::Calls(None)
        } else {
            crate::event::Wants::Everything
        }
    }

    fn event(&mut self, event: Event) {
        self.show(&event);
    }

    fn time_base(&mut self, first_ts_ns: i64) {
        self.set_base(first_ts_ns);
    }

    fn line(&mut self, text: &[u8]) {
        if self.io_error.is_none() {
            if let Err(e) = self.out.write_all(text) {
                self.io_error = Some(e);
            }
        }
    }
}

impl<W: Write> Text<W> {
    /// Writes an event's lines.
    fn show(&mut self, event: &Event) {
        if self.opts.quiet {
            return;
        }
        match event {
            Event::Call(c) => self.call(c),
            _ if self.opts.calls_only => {}
            Event::Frame(f) => self.frame(f),
            Event::Message(m) => self.message(m),
            Event::ConnectionEnd(c) => {
                let by = match c.end {
                    crate::event::EndKind::HalfClosed { by_client }
                    | crate::event::EndKind::Rst { by_client } => {
                        if by_client {
                            " by client"
                        } else {
                            " by server"
                        }
                    }
                    crate::event::EndKind::Fin => match c.closed_first {
                        Some(f) if f.by_client => ", client first",
                        Some(_) => ", server first",
                        None => "",
                    },
                    _ => "",
                };
                self.line.push_str("  CONN ");
                self.push_time(c.last_ts_ns);
                self.line.push(' ');
                self.conn(c.conn);
                let _ = writeln!(
                    self.line,
                    " {} ↔ {} connection ended ({}{by}) after {:.3}s; client sent {} B, server {} B{}",
                    Addr(&c.client),
                    Addr(&c.server),
                    c.end.as_str(),
                    c.last_ts_ns.saturating_sub(c.first_ts_ns) as f64 / 1e9,
                    c.bytes[0],
                    c.bytes[1],
                    if c.mid { " (joined mid-way)" } else { "" }
                );
                // The line ends with the newline above: TLS details and TCP's trouble go on
                // their own, under the connection number, past the record and time columns.
                let indent = 7 + self.opts.time.width();
                if let Some(t) = &c.tls {
                    let _ = writeln!(self.line, "{:>indent$} over {t}", "");
                }
                let trouble: Vec<String> = [("client", &c.tcp[0]), ("server", &c.tcp[1])]
                    .into_iter()
                    .filter_map(|(who, t)| tcp_trouble(t).map(|t| format!("{who} {t}")))
                    .collect();
                if !trouble.is_empty() {
                    let _ = writeln!(self.line, "{:>indent$} TCP: {}", "", trouble.join("; "));
                }
                self.flush_line();
            }
            Event::Gap(g) => {
                self.head(&g.origin);
                let _ = writeln!(self.line, " GAP {} bytes missing from the capture", g.bytes);
                self.flush_line();
            }
            Event::Error(e) => {
                if let Some(o) = &e.origin {
                    self.head(o);
                    self.line.push(' ');
                }
                let _ = write!(self.line, "ERROR {}", e.kind.as_str());
                if let Some(s) = e.stream {
                    let _ = write!(self.line, " stream {s}");
                }
                let _ = writeln!(self.line, ": {}", e.message);
                self.flush_line();
            }
        }
    }
}

/// What went wrong with one side's segments, shortly (`health` says more), if anything.
fn tcp_trouble(t: &crate::tcp::TcpSide) -> Option<String> {
    let mut parts = Vec::new();
    if t.retransmitted > 0 {
        parts.push(format!("{} sent again", t.retransmitted));
    }
    if t.holes > 0 {
        parts.push(format!("{} holes", t.holes));
    }
    if t.out_of_order > 0 {
        parts.push(format!("{} out of order", t.out_of_order));
    }
    if t.zero_windows > 0 {
        parts.push(format!(
            "zero window {}x for {:.3}s",
            t.zero_windows,
            t.zero_window_ns as f64 / 1e9
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// [`crate::parallel::Route`] for text output: the worker threads format the lines, with the
/// time base the reader gives them.
pub struct TextRoute(pub TextOptions);

impl crate::parallel::Route for TextRoute {
    fn route(&self, event: &Event, first_ts_ns: i64, buf: &mut Vec<u8>) -> Handoff {
        let opts = self.0;
        if opts.quiet || (opts.calls_only && !matches!(event, Event::Call(_))) {
            return Handoff::Drop;
        }
        let start = buf.len();
        let mut text = Text::new(&mut *buf, opts);
        // Room for a usual line at once, rather than growing to it.
        text.line.reserve(256);
        text.base_ns = Some(first_ts_ns);
        text.conn_hole = Some(None);
        text.show(event);
        let at = text.conn_hole.flatten();
        Handoff::Line(at.map(|at| ConnSlot {
            at: start + at,
            width: CONN_WIDTH,
        }))
    }

    fn shows(&self) -> crate::parallel::Shows {
        match self.0 {
            TextOptions { quiet: true, .. } => crate::parallel::Shows::Nothing,
            TextOptions {
                calls_only: true, ..
            } => crate::parallel::Shows::Calls,
            _ => crate::parallel::Shows::Everything,
        }
    }
}

/// Bytes fields longer than this are cut in the one-line view, as a packet list cuts them;
/// `-v` and JSON Lines show them whole. A bulk message is often one large bytes field.
const SUMMARY_BYTES: usize = 64;
/// Packed varints beyond this many are cut the same way.
const SUMMARY_VALUES: usize = 16;

fn push_bytes_summary(l: &mut String, bytes: &[u8]) {
    l.push_str("0x");
    l.push_str(&wire::hex(&bytes[..bytes.len().min(SUMMARY_BYTES)]));
    if bytes.len() > SUMMARY_BYTES {
        let _ = write!(l, "… ({} bytes)", bytes.len());
    }
}

fn push_varints_summary(l: &mut String, values: &[u64]) {
    if values.len() > SUMMARY_VALUES {
        push_varints(l, &values[..SUMMARY_VALUES]);
        l.pop();
        let _ = write!(l, ",…] ({} values)", values.len());
    } else {
        push_varints(l, values);
    }
}

/// Numbers as a JSON array: `[3,270]`.
fn push_varints(l: &mut String, values: &[u64]) {
    l.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            l.push(',');
        }
        let _ = write!(l, "{v}");
    }
    l.push(']');
}

/// A string as a JSON string: quoted and escaped.
fn push_quoted(l: &mut String, s: &str) {
    let mut bytes = std::mem::take(l).into_bytes();
    super::jsonl::write_str(&mut bytes, s.as_bytes());
    // Still UTF-8: the string was, and escapes are ASCII.
    *l = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
}

/// A schema-less field tree on one line, in the manner of `protoc --decode_raw`:
/// `1: 150 2: "text" 3 { 1: 1 }`.
fn raw_fields(l: &mut String, fields: &Schemaless) {
    match fields {
        Schemaless::Fields(nodes) => raw_nodes(l, nodes),
        Schemaless::Bytes(b) => l.push_str(&wire::hex(b)),
        Schemaless::Text(t) => l.push_str(&printable(t)),
    }
}

fn raw_nodes(l: &mut String, nodes: &[Node]) {
    for (i, node) in nodes.iter().enumerate() {
        if i > 0 {
            l.push(' ');
        }
        let (n, value) = match node {
            Node::Malformed { shown, .. } => {
                let _ = write!(l, "<malformed {}>", wire::hex(shown));
                continue;
            }
            Node::Truncated { offset, .. } => {
                let _ = write!(l, "<not shown from byte {offset}>");
                continue;
            }
            Node::Field { number, value, .. } => (number, value),
        };
        if let Some(inner) = value.nested() {
            let _ = write!(l, "{n} {{ ");
            raw_nodes(l, inner);
            l.push_str(" }");
            continue;
        }
        let _ = write!(l, "{n}: ");
        match value {
            WireValue::Len { guess, .. } => match guess {
                LenGuess::String(s) => push_quoted(l, s),
                LenGuess::Bytes(b) => push_bytes_summary(l, b),
                LenGuess::PackedVarints(values) => push_varints_summary(l, values),
                LenGuess::Message(_) => {}
            },
            other => push_number(l, other),
        }
    }
}

/// A varint's or a fixed-size field's value, as its number.
fn push_number(l: &mut String, v: &WireValue) {
    match *v {
        WireValue::Varint(n) | WireValue::I64(n) => push_uint(l, n),
        WireValue::I32(n) => push_uint(l, n.into()),
        WireValue::Len { .. } | WireValue::Group { .. } => {}
    }
}

/// The field tree, one field per line, indented.
fn tree(l: &mut String, fields: &Schemaless, indent: usize) {
    if let Schemaless::Fields(nodes) = fields {
        tree_nodes(l, nodes, indent);
    }
}

fn tree_nodes(l: &mut String, nodes: &[Node], indent: usize) {
    tree_lines(nodes, indent, &mut |_, line| {
        l.push_str(line);
        l.push('\n');
    });
}

/// A schema-less field tree, one field per line, indented as `-V` shows it. Each line goes to
/// `line` with the bytes it stands for in the message (the TUI points at them in its hex pane).
pub fn tree_lines(
    nodes: &[Node],
    indent: usize,
    line: &mut dyn FnMut(Option<std::ops::Range<usize>>, &str),
) {
    let mut l = String::new();
    for node in nodes {
        l.clear();
        let (n, value, span) = match node {
            Node::Malformed {
                offset,
                shown,
                remaining,
            } => {
                let _ = write!(
                    l,
                    "{:indent$}<malformed at {offset}: {}>",
                    "",
                    wire::hex(shown)
                );
                line(Some(*offset..offset + remaining), &l);
                continue;
            }
            Node::Truncated { offset, shown } => {
                let _ = write!(
                    l,
                    "{:indent$}<not shown from byte {offset}: {}>",
                    "",
                    wire::hex(shown)
                );
                line(Some(*offset..offset + shown.len()), &l);
                continue;
            }
            Node::Field {
                number,
                value,
                span,
            } => (number, value, span),
        };
        let wire = value.wire_name();
        if let Some(inner) = value.nested() {
            let _ = write!(l, "{:indent$}{n} ({wire}) {{", "");
            line(Some(span.clone()), &l);
            tree_lines(inner, indent + 2, line);
            l.clear();
            let _ = write!(l, "{:indent$}}}", "");
            line(None, &l);
            continue;
        }
        let _ = write!(l, "{:indent$}{n} ({wire}): ", "");
        match value {
            WireValue::Len { guess, .. } => match guess {
                LenGuess::String(s) => push_quoted(&mut l, s),
                LenGuess::Bytes(b) => {
                    l.push('"');
                    l.push_str(&wire::hex(b));
                    l.push('"');
                }
                LenGuess::PackedVarints(values) => push_varints(&mut l, values),
                LenGuess::Message(_) => {}
            },
            other => push_number(&mut l, other),
        }
        line(Some(span.clone()), &l);
    }
}

#[cfg(test)]
mod tests {
    use super::{push_micros, push_seconds, Unit};
    use proptest::prelude::*;

    fn both(ns: i64) -> (String, String) {
        let mut l = String::new();
        push_seconds(&mut l, ns);
        (l, format!("{:>11.6}", ns as f64 / 1e9))
    }

    /// A call's duration, as `{:.3}` writes it in milliseconds.
    fn both_millis(ns: i64) -> (String, String) {
        let mut l = String::new();
        push_micros(&mut l, ns, Unit::Millis, 0);
        (l, format!("{:.3}", ns as f64 / 1e6))
    }

    #[test]
    fn seconds_read_as_the_float_formatting_writes_them() {
        for ns in [
            0,
            1,
            499,
            500,
            501,
            999,
            1000,
            568_500,
            568_499,
            999_999_499,
            999_999_500,
            999_999_501,
            1_000_000_000,
            86_399_999_999_999,
            99_999_999_999_999,
            100_000_000_000_000,
            -1,
            -1500,
            i64::MAX,
            i64::MIN,
        ] {
            let (a, b) = both(ns);
            assert_eq!(a, b, "{ns}");
            let (a, b) = both_millis(ns);
            assert_eq!(a, b, "{ns} ms");
        }
    }

    proptest! {
        #[test]
        fn any_time_reads_as_the_float_formatting_writes_it(
            ns in prop_oneof![0i64..10_000_000_000, 0i64..200_000_000_000_000, any::<i64>()],
        ) {
            let (a, b) = both(ns);
            prop_assert_eq!(a, b);
            let (a, b) = both_millis(ns);
            prop_assert_eq!(a, b);
        }
    }
}
