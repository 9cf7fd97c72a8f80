//! JSON Lines output: one object per event. The field names are a public interface (README).

use std::io::Write;

use serde_json::{json, Map, Value};

use super::{keys, Summary};
use crate::event::{
    ConnectionEnd, EndKind, ErrorEvent, Event, FrameDetail, FrameEvent, GapEvent, MessageEvent,
    Origin, Sink,
};
use crate::grpc::message::{decode_bin_header, json_chars, Json, Schemaless};
use crate::grpc::wire::{self, LenGuess, Node, WireValue};
use crate::http2::call::{
    grpc_status_name, header_name, header_value, lossless, lossless_str, Call, CallEnd,
};
use crate::http2::frame::{error_code_name, setting};
use crate::http2::hpack::{HeaderField, HeaderList};
use crate::parallel::{ConnSlot, Handoff};

/// Bytes of lines gathered before they are written: the size of the writer's buffer
/// (`make_sink`), which a write that large bypasses.
const BATCH: usize = 64 << 10;

pub struct JsonLines<W: Write> {
    /// Taken only by [`JsonLines::into_inner`], which the drop (that writes what is gathered)
    /// would otherwise forbid.
    out: Option<W>,
    /// Only call events (`--calls`).
    calls_only: bool,
    /// No events at all (only the summary, if asked for).
    quiet: bool,
    /// Lines written by hand, gathered until [`BATCH`] bytes and then written at once: the
    /// writer takes a batch that size without copying it into its own buffer.
    scratch: Vec<u8>,
    io_error: Option<std::io::Error>,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W, calls_only: bool, quiet: bool) -> Self {
        JsonLines {
            out: Some(out),
            calls_only,
            quiet,
            scratch: Vec::with_capacity(BATCH + 4096),
            io_error: None,
        }
    }

    pub fn io_error(&mut self) -> Option<std::io::Error> {
        self.io_error.take()
    }

    pub fn flush(&mut self) {
        self.write_batch();
        if let Err(e) = self.out().flush() {
            self.io_error.get_or_insert(e);
        }
    }

    pub fn summary(&mut self, s: &Summary) {
        let v = summary_json(s);
        self.write(&v);
        let _ = self.out().flush();
    }

    fn write(&mut self, v: &Value) {
        self.write_batch();
        if self.io_error.is_some() {
            return;
        }
        let out = self.out();
        let res = serde_json::to_writer(&mut *out, v)
            .map_err(std::io::Error::from)
            .and_then(|_| out.write_all(b"\n"));
        if let Err(e) = res {
            self.io_error = Some(e);
        }
    }

    /// Writes one object the given function appends, and a newline.
    fn write_with(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        if self.io_error.is_some() {
            return;
        }
        f(&mut self.scratch);
        self.scratch.push(b'\n');
        if self.scratch.len() >= BATCH {
            self.write_batch();
        }
    }

    /// Writes the lines gathered so far.
    fn write_batch(&mut self) {
        if self.scratch.is_empty() {
            return;
        }
        if self.io_error.is_none() {
            if let Some(Err(e)) = self.out.as_mut().map(|o| o.write_all(&self.scratch)) {
                self.io_error = Some(e);
            }
        }
        self.scratch.clear();
    }

    fn out(&mut self) -> &mut W {
        self.out
            .as_mut()
            .expect("the writer is taken only by into_inner")
    }

    /// The writer, with every line written to it.
    pub fn into_inner(mut self) -> W {
        self.write_batch();
        self.out.take().expect("the writer is taken only here")
    }
}

/// Lines still gathered go to the writer (whose own drop flushes them, as a `BufWriter` does).
impl<W: Write> Drop for JsonLines<W> {
    fn drop(&mut self) {
        self.write_batch();
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn closed(&self) -> bool {
        self.io_error.is_some()
    }

    fn wants(&mut self) -> crate::event::Wants<'_> {
        if self.calls_only {
            crate::event::Wants::Calls(None)
        } else {
            crate::event::Wants::Everything
        }
    }

    fn event(&mut self, event: Event) {
        if self.quiet {
            return;
        }
        let v = match &event {
            Event::Call(c) => return self.write_with(|b| write_call(b, c)),
            _ if self.calls_only => return,
            Event::Frame(f) => return self.write_with(|b| write_frame(b, f)),
            Event::Message(m) => return self.write_with(|b| write_message(b, m)),
            Event::ConnectionEnd(c) => return self.write_with(|b| write_connection(b, c)),
            Event::Gap(g) => gap_json(g),
            Event::Error(e) => error_json(e),
        };
        // Into the batch like the others: writing it alone would first write out the batch,
        // which the writer would then copy, being short of its size.
        self.write_with(|buf| {
            // A `Value` always serializes.
            let _ = serde_json::to_writer(buf, &v);
        });
    }

    fn line(&mut self, text: &[u8]) {
        self.write_batch();
        if self.io_error.is_some() {
            return;
        }
        if let Err(e) = self.out().write_all(text) {
            self.io_error = Some(e);
        }
    }
}

/// [`crate::parallel::Route`] for a full JSON Lines output: frames, messages and calls are
/// formatted by the workers, the rare rest here.
pub fn route_all(event: &Event, buf: &mut Vec<u8>) -> Handoff {
    match write_without_conn(buf, event) {
        Some(at) => {
            buf.push(b'\n');
            Handoff::Line(at.map(|at| ConnSlot { at, width: 0 }))
        }
        None => Handoff::Event,
    }
}

/// [`crate::parallel::Route`] for `--calls`: only calls, formatted by the workers.
pub struct RouteCalls;

impl crate::parallel::Route for RouteCalls {
    fn route(&self, event: &Event, _: i64, buf: &mut Vec<u8>) -> Handoff {
        match event {
            Event::Call(_) => route_all(event, buf),
            _ => Handoff::Drop,
        }
    }

    fn shows(&self) -> crate::parallel::Shows {
        crate::parallel::Shows::Calls
    }
}

/// Seconds as an `f64`: the one nearest to the exact value, which prints as the capture's own
/// digits. `ns as f64 / 1e9` rounds twice (a 19-digit integer does not fit an `f64`), and its
/// shortest form showed digits no capture had (`1718679245.7765021` for a microsecond clock's
/// `1718679245.776502`).
pub fn ts(ns: i64) -> f64 {
    let mut text = Vec::with_capacity(24);
    write_seconds(&mut text, ns);
    // Digits, a sign and a point: always a number.
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(ns as f64 / 1e9)
}

/// Seconds as a JSON number, exactly: whole seconds, a point and the nanoseconds without
/// trailing zeros (one digit at least), as tshark writes epoch times. It parses to [`ts`]'s
/// `f64`.
pub fn write_seconds(buf: &mut Vec<u8>, ns: i64) {
    if ns < 0 {
        buf.push(b'-');
    }
    let abs = ns.unsigned_abs();
    buf.extend_from_slice(itoa::Buffer::new().format(abs / 1_000_000_000).as_bytes());
    // The nanoseconds as nine digits with their leading zeros, made by pairs rather than by a
    // general formatter (a call's line writes seven times), then cut.
    let nanos = (abs % 1_000_000_000) as u32;
    let mut text = [b'.'; 10];
    text[1] = b'0' + (nanos / 100_000_000) as u8;
    let mut rest = nanos % 100_000_000;
    for at in [8, 6, 4, 2] {
        let pair = (rest % 100) as usize * 2;
        text[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        rest /= 100;
    }
    let mut len = text.len();
    while len > 2 && text[len - 1] == b'0' {
        len -= 1;
    }
    buf.extend_from_slice(&text[..len]);
}

/// "00", "01", ... "99".
const DIGIT_PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

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

thread_local! {
    /// The last two times [`Obj::seconds`] wrote, and their texts: the events of one packet
    /// share its time, and a call's end comes between frames of a later packet.
    static LAST_SECONDS: std::cell::RefCell<[(Option<i64>, Vec<u8>); 2]> =
        const { std::cell::RefCell::new([(None, Vec::new()), (None, Vec::new())]) };
}

/// The origin [`Obj::origin`] wrote last on this thread.
struct LastOrigin {
    /// The origin, and whether its connection number was left out (a worker thread's line).
    origin: Option<(Origin, bool)>,
    text: Vec<u8>,
    /// Where in `text` the connection number goes, when it was left out.
    hole: Option<usize>,
}

thread_local! {
    static LAST_ORIGIN: std::cell::RefCell<LastOrigin> = const {
        std::cell::RefCell::new(LastOrigin {
            origin: None,
            text: Vec::new(),
            hole: None,
        })
    };
}

/// A JSON object written straight into a buffer: frames are most of the output, and building a
/// `serde_json::Value` for each would cost more than the whole dissection.
struct Obj<'a, K: Keys = AllKeys> {
    buf: &'a mut Vec<u8>,
    first: bool,
    /// `Some`: leave the connection number out and note where it goes, as for a line formatted
    /// on a worker thread, which does not know the capture's numbering (see
    /// [`write_without_conn`]).
    conn_hole: Option<Option<usize>>,
    /// The keys written; the others are left out.
    keys: K,
    /// Every key this kind of object may have ([`keys::FRAME`]...), checked as keys are written
    /// so that the lists cannot fall behind the writers.
    #[cfg(debug_assertions)]
    known: &'static [&'static str],
}

/// A key of an object as it is written after another, `,"name":` (made by [`key!`]): each key
/// costs one copy of a few bytes, where the comma, the quotes and the name took four.
#[derive(Debug, Clone, Copy)]
struct Key(&'static str);

impl Key {
    #[inline(always)]
    fn name(self) -> &'static str {
        &self.0[2..self.0.len() - 2]
    }
}

/// The [`Key`] of a name.
macro_rules! key {
    ($name:literal) => {
        $crate::output::jsonl::Key(concat!(",\"", $name, "\":"))
    };
}

/// Which keys of an object are written: all of them for the output, only those a display
/// filter names when it tests an event (see [`write_event_keys`]).
trait Keys {
    /// Every key is written (the output, not a filter's test).
    const ALL: bool = false;
    fn has(&self, k: &str) -> bool;
    /// The value of key `k` begins at `at` in the buffer.
    fn began(&mut self, k: &str, at: usize);
    /// The value last begun ends at `at`.
    fn ended(&mut self, at: usize);
}

#[derive(Clone, Copy)]
struct AllKeys;

impl Keys for AllKeys {
    const ALL: bool = true;
    #[inline(always)]
    fn has(&self, _: &str) -> bool {
        true
    }
    #[inline(always)]
    fn began(&mut self, _: &str, _: usize) {}
    #[inline(always)]
    fn ended(&mut self, _: usize) {}
}

/// Where each named key's value lies in the buffer it was written to: the spans of
/// [`write_event_spans`], in the order of its names.
pub type Spans = Vec<Option<std::ops::Range<usize>>>;

/// Only the named keys, noting where their values were written.
struct Named<'k> {
    names: &'k [String],
    spans: &'k mut Spans,
    /// The key whose value is being written.
    open: Option<usize>,
}

impl Keys for Named<'_> {
    fn has(&self, k: &str) -> bool {
        self.names.iter().any(|n| n == k)
    }
    fn began(&mut self, k: &str, at: usize) {
        self.open = self.names.iter().position(|n| n == k);
        if let Some(i) = self.open {
            self.spans[i] = Some(at..at);
        }
    }
    fn ended(&mut self, at: usize) {
        if let Some(span) = self.open.take().and_then(|i| self.spans[i].as_mut()) {
            span.end = at;
        }
    }
}

impl<'a> Obj<'a> {
    fn new(buf: &'a mut Vec<u8>) -> Self {
        Self::with_hole(buf, false)
    }
    fn with_hole(buf: &'a mut Vec<u8>, conn_hole: bool) -> Self {
        buf.push(b'{');
        Obj {
            buf,
            first: true,
            conn_hole: conn_hole.then_some(None),
            keys: AllKeys,
            #[cfg(debug_assertions)]
            known: &[],
        }
    }
}

impl<'a, 'k> Obj<'a, Named<'k>> {
    fn only(buf: &'a mut Vec<u8>, names: &'k [String], spans: &'k mut Spans) -> Self {
        buf.push(b'{');
        spans.clear();
        spans.resize(names.len(), None);
        Obj {
            buf,
            first: true,
            conn_hole: None,
            keys: Named {
                names,
                spans,
                open: None,
            },
            #[cfg(debug_assertions)]
            known: &[],
        }
    }
}

impl<K: Keys> Obj<'_, K> {
    /// The keys this object may have (checked in debug builds).
    #[inline(always)]
    fn of(self, _known: &'static [&'static str]) -> Self {
        #[cfg(debug_assertions)]
        return Obj {
            known: _known,
            ..self
        };
        #[cfg(not(debug_assertions))]
        self
    }
    /// Whether `k` is written: a value that costs to compute is computed only then.
    #[inline(always)]
    fn wants(&self, k: Key) -> bool {
        self.keys.has(k.name())
    }
    /// Where an event comes from: `packet`, `ts`, `conn`, `src` and `dst`. The frames and
    /// messages of one packet repeat them, so the output copies the text it wrote last time
    /// when they are the same (about 500 instructions a line of numbers and addresses).
    fn origin(&mut self, o: &Origin) {
        // A filter's test writes only some keys, and notes where: it does without.
        if !K::ALL {
            self.origin_fields(o);
            return;
        }
        let hole = self.conn_hole.is_some();
        let hit = LAST_ORIGIN.with_borrow(|last| {
            if last.origin != Some((*o, hole)) {
                return false;
            }
            if !self.first {
                self.buf.push(b',');
            }
            self.first = false;
            let start = self.buf.len();
            self.buf.extend_from_slice(&last.text);
            if hole {
                self.conn_hole = Some(last.hole.map(|off| start + off));
            }
            true
        });
        if hit {
            return;
        }
        // Where the first key starts, after the comma that goes before it.
        let start = self.buf.len() + usize::from(!self.first);
        self.origin_fields(o);
        LAST_ORIGIN.with_borrow_mut(|last| {
            last.origin = Some((*o, hole));
            last.text.clear();
            last.text.extend_from_slice(&self.buf[start..]);
            last.hole = self.conn_hole.flatten().map(|at| at - start);
        });
    }
    fn origin_fields(&mut self, o: &Origin) {
        self.uint(key!("packet"), o.packet);
        self.seconds(key!("ts"), o.ts_ns);
        self.conn(o.conn);
        self.addr(key!("src"), &o.src);
        self.addr(key!("dst"), &o.dst);
    }
    fn conn(&mut self, n: u64) {
        if !self.wants(key!("conn")) {
            return;
        }
        if self.conn_hole.is_some() {
            self.key(key!("conn"));
            self.conn_hole = Some(Some(self.buf.len()));
        } else {
            self.uint(key!("conn"), n);
        }
    }
    // This and the writers of one key and value are inlined into every caller: keys are
    // literals, so their copy becomes a few moves instead of a call to memcpy (5% of JSON Lines,
    // measured), one copy with the comma and quotes around (see `key!`).
    #[inline(always)]
    fn key(&mut self, k: Key) {
        #[cfg(debug_assertions)]
        debug_assert!(
            self.known.is_empty() || self.known.contains(&k.name()),
            "{} is missing from its event's list of keys",
            k.name()
        );
        let text = if self.first {
            self.first = false;
            &k.0[1..]
        } else {
            self.keys.ended(self.buf.len());
            k.0
        };
        self.buf.extend_from_slice(text.as_bytes());
        self.keys.began(k.name(), self.buf.len());
    }
    fn json<T: serde::Serialize + ?Sized>(&mut self, k: Key, v: &T) {
        if !self.wants(k) {
            return;
        }
        self.key(k);
        // Writing to a Vec cannot fail; a value that cannot be serialized is written as null.
        if serde_json::to_writer(&mut *self.buf, v).is_err() {
            self.buf.extend_from_slice(b"null");
        }
    }
    /// `v` written by `write`, or `null`.
    fn opt_with<T>(&mut self, k: Key, v: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
        if !self.wants(k) {
            return;
        }
        self.key(k);
        match v {
            Some(v) => write(self.buf, v),
            None => self.buf.extend_from_slice(b"null"),
        }
    }
    /// JSON text made elsewhere (a decoded message), written as it is.
    fn raw(&mut self, k: Key, v: Option<&str>) {
        self.opt_with(k, v, |buf, text| buf.extend_from_slice(text.as_bytes()));
    }
    /// What is shown of a message no schema decoded (see [`write_schemaless`]).
    fn schemaless(&mut self, k: Key, v: Option<&Schemaless>) {
        self.opt_with(k, v, write_schemaless);
    }
    /// A JSON value (`grpc_status_details`), written by [`write_value`].
    fn value(&mut self, k: Key, v: Option<&Value>) {
        self.opt_with(k, v, write_value);
    }
    /// One of the program's own names (an event, a frame type, a flag, an error code): known
    /// to need no escaping, so written as it is.
    #[inline(always)]
    fn name(&mut self, k: Key, v: &'static str) {
        if !self.wants(k) {
            return;
        }
        self.key(k);
        write_name(self.buf, v);
    }
    #[inline(always)]
    fn opt_name(&mut self, k: Key, v: Option<&'static str>) {
        match v {
            Some(v) => self.name(k, v),
            None => self.null(k),
        }
    }
    #[inline(always)]
    fn null(&mut self, k: Key) {
        if !self.wants(k) {
            return;
        }
        self.key(k);
        self.buf.extend_from_slice(b"null");
    }
    /// A string value, escaped by [`write_str`] (the hot path skips serde's machinery).
    #[inline(always)]
    fn str(&mut self, k: Key, v: &str) {
        if !self.wants(k) {
            return;
        }
        self.key(k);
        write_str(self.buf, v.as_bytes());
    }
    #[inline(always)]
    fn opt_str(&mut self, k: Key, v: Option<&str>) {
        match v {
            Some(v) => self.str(k, v),
            None => self.null(k),
        }
    }
    /// A list of [`Self::name`]s.
    fn names(&mut self, k: Key, v: impl IntoIterator<Item = &'static str>) {
        if !self.wants(k) {
            return;
        }
        self.key(k);
        self.buf.push(b'[');
        for (i, s) in v.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            write_name(self.buf, s);
        }
        self.buf.push(b']');
    }
    #[inline(always)]
    fn opt_uint(&mut self, k: Key, n: Option<u64>) {
        match n {
            Some(n) => self.uint(k, n),
            None => self.null(k),
        }
    }
    /// Text from the capture (`write_text`), or null.
    fn opt_text(&mut self, k: Key, v: Option<&[u8]>) {
        if !self.wants(k) {
            return;
        }
        self.key(k);
        match v {
            Some(v) => write_text(self.buf, v, None),
            None => self.buf.extend_from_slice(b"null"),
        }
    }
    /// Seconds (a time since 1970, or a duration), by [`write_seconds`]. The events of one
    /// packet share its time, so the texts of the last two are kept.
    fn seconds(&mut self, k: Key, ns: i64) {
        if !self.wants(k) {
            return;
        }
        self.key(k);
        LAST_SECONDS.with_borrow_mut(|last| {
            if last[0].0 != Some(ns) {
                last.swap(0, 1);
                if last[0].0 != Some(ns) {
                    last[0].1.clear();
                    write_seconds(&mut last[0].1, ns);
                    last[0].0 = Some(ns);
                }
            }
            self.buf.extend_from_slice(&last[0].1);
        });
    }
    #[inline(always)]
    fn bool(&mut self, k: Key, v: bool) {
        if !self.wants(k) {
            return;
        }
        self.key(k);
        self.buf
            .extend_from_slice(if v { &b"true"[..] } else { &b"false"[..] });
    }
    #[inline(always)]
    fn uint(&mut self, k: Key, n: u64) {
        if !self.wants(k) {
            return;
        }
        self.key(k);
        write_uint(self.buf, n);
    }
    /// An address as a string; its text (digits, dots, colons, brackets) needs no escaping.
    #[inline(always)]
    fn addr(&mut self, k: Key, a: &std::net::SocketAddr) {
        if !self.wants(k) {
            return;
        }
        self.key(k);
        self.buf.push(b'"');
        super::Addr(a).write_to(self.buf);
        self.buf.push(b'"');
    }
    /// Bytes as a string of hex digits (the value of a key just written).
    fn hex(&mut self, bytes: &[u8]) {
        write_hex(self.buf, bytes);
    }
    /// Closes the object; returns where the connection number goes, if it was left out.
    fn end(mut self) -> Option<usize> {
        self.keys.ended(self.buf.len());
        self.buf.push(b'}');
        self.conn_hole.flatten()
    }
}

/// Any event as a JSON value, as [`JsonLines`] writes it.
pub fn event_json(event: &Event) -> Value {
    match event {
        Event::Frame(f) => frame_json(f),
        Event::Message(m) => message_json(m),
        Event::Call(c) => call_json(c),
        Event::Gap(g) => gap_json(g),
        Event::Error(e) => error_json(e),
        Event::ConnectionEnd(c) => connection_json(c),
    }
}

/// The fields `keys` of a frame, message or call, as a JSON object appended to `buf`: what a
/// display filter looks at, without writing the rest; `spans` is given where each key's value
/// was written (`None`: the event has no such key), so that it need not be found again. False
/// (and nothing written) for the other events, which have only [`event_json`].
pub fn write_event_spans(
    buf: &mut Vec<u8>,
    event: &Event,
    keys: &[String],
    spans: &mut Spans,
) -> bool {
    match event {
        Event::Frame(f) => frame_obj(Obj::only(buf, keys, spans), f),
        Event::Message(m) => message_obj(Obj::only(buf, keys, spans), m),
        Event::Call(c) => call_obj(Obj::only(buf, keys, spans), c),
        _ => return false,
    };
    true
}

/// `event` as [`JsonLines`] writes it, but with the connection number left out, for a worker
/// thread (see [`crate::parallel`]): returns where the number goes. `None` for the events
/// formatted only on the output thread (gaps, errors and connection ends: rare, and written
/// through `serde_json` values).
pub fn write_without_conn(buf: &mut Vec<u8>, event: &Event) -> Option<Option<usize>> {
    Some(match event {
        Event::Frame(f) => frame_obj(Obj::with_hole(buf, true), f),
        Event::Message(m) => message_obj(Obj::with_hole(buf, true), m),
        Event::Call(c) => call_obj(Obj::with_hole(buf, true), c),
        _ => return None,
    })
}

/// One frame event as a JSON object, appended to `buf`.
pub fn write_frame(buf: &mut Vec<u8>, f: &FrameEvent) {
    frame_obj(Obj::new(buf), f);
}

fn frame_obj<K: Keys>(o: Obj<'_, K>, f: &FrameEvent) -> Option<usize> {
    let mut o = o.of(keys::FRAME);
    let h = &f.header;
    o.name(key!("event"), "frame");
    o.origin(&f.origin);
    o.uint(key!("stream"), h.stream as u64);
    o.name(key!("type"), h.kind.name());
    o.uint(key!("type_code"), h.kind.code() as u64);
    o.uint(key!("flags"), h.flags as u64);
    o.names(key!("flag_names"), h.kind.flag_name_iter(h.flags));
    o.uint(key!("length"), h.length as u64);
    let error_code = |o: &mut Obj<'_, K>, code: u32| {
        o.uint(key!("error_code"), code as u64);
        o.opt_name(key!("error_name"), error_code_name(code));
    };
    match &f.detail {
        FrameDetail::Data {
            data_len,
            pad_len,
            missing,
        } => {
            o.uint(key!("data_length"), *data_len as u64);
            if let Some(p) = pad_len {
                o.uint(key!("pad_length"), *p as u64);
            }
            if *missing > 0 {
                o.uint(key!("missing"), *missing);
            }
        }
        FrameDetail::Headers { priority, pad_len } => {
            if let Some(p) = priority {
                o.json(key!("priority"), &priority_json(p));
            }
            if let Some(p) = pad_len {
                o.uint(key!("pad_length"), *p as u64);
            }
        }
        FrameDetail::Priority(p) => o.json(key!("priority"), &priority_json(p)),
        FrameDetail::RstStream { error_code: c } => error_code(&mut o, *c),
        FrameDetail::Settings { ack, settings } => {
            o.bool(key!("ack"), *ack);
            let pairs: Vec<[u32; 2]> = settings.iter().map(|s| [s.id as u32, s.value]).collect();
            o.json(key!("settings"), &pairs);
            let names: Vec<Option<&str>> = settings.iter().map(|s| setting::name(s.id)).collect();
            o.json(key!("setting_names"), &names);
        }
        FrameDetail::PushPromise {
            promised_stream,
            pad_len,
        } => {
            o.uint(key!("promised_stream"), *promised_stream as u64);
            if let Some(p) = pad_len {
                o.uint(key!("pad_length"), *p as u64);
            }
        }
        FrameDetail::Ping { ack, opaque } => {
            o.bool(key!("ack"), *ack);
            o.str(key!("opaque"), &hex::encode(opaque));
        }
        FrameDetail::GoAway {
            last_stream_id,
            error_code: c,
            debug_data,
        } => {
            o.uint(key!("last_stream_id"), *last_stream_id as u64);
            error_code(&mut o, *c);
            o.json(key!("debug_data"), &lossless(debug_data));
        }
        FrameDetail::WindowUpdate { increment } => o.uint(key!("increment"), *increment as u64),
        FrameDetail::Continuation | FrameDetail::Unknown | FrameDetail::Skipped => {}
        FrameDetail::Malformed(e) => o.json(key!("malformed"), &e.to_string()),
    }
    if let Some(list) = f.headers.as_ref().filter(|_| o.wants(key!("headers"))) {
        o.key(key!("headers"));
        write_headers(o.buf, Some(list));
    }
    if !f.table_size_updates.is_empty() {
        o.json(key!("table_size_updates"), &f.table_size_updates);
    }
    if !f.notes.is_empty() {
        o.json(key!("notes"), &f.notes);
    }
    if let Some(raw) = f.raw.as_ref().filter(|_| o.wants(key!("raw"))) {
        o.key(key!("raw"));
        o.hex(raw);
    }
    o.end()
}

/// One frame event as a JSON value (the same object as [`write_frame`] writes).
pub fn frame_json(f: &FrameEvent) -> Value {
    let mut buf = Vec::new();
    write_frame(&mut buf, f);
    serde_json::from_slice(&buf).unwrap_or(Value::Null)
}

fn priority_json(p: &crate::http2::frame::PriorityInfo) -> Value {
    json!({"exclusive": p.exclusive, "depends_on": p.depends_on, "weight": p.weight as u16 + 1})
}

/// An unsigned integer. Most of a line's numbers (stream, type code, flags, lengths) are
/// below 100: those are two stores, where `itoa` and the copy of its digits cost some fifty
/// instructions (the copy is a call to `memcpy`, its length not being known).
#[inline(always)]
fn write_uint(buf: &mut Vec<u8>, n: u64) {
    if n < 10 {
        buf.push(b'0' + n as u8);
    } else if n < 100 {
        buf.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
    } else {
        buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
}

/// A name of the program's own (see [`Obj::name`]) as a JSON string.
#[inline(always)]
fn write_name(buf: &mut Vec<u8>, name: &'static str) {
    debug_assert!(
        !name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20),
        "{name}"
    );
    buf.push(b'"');
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'"');
}

/// Header lists written lately on this thread, with their JSON. Lists are shared: a frame's
/// with its call's, and calls that repeat their headers share one (see the connection's recent
/// lists). So most lists are written more than once, and the second time is a copy. A slot
/// holds its list, so that no other list can come to have its address.
struct HeadersJson {
    slots: [(Option<HeaderList>, Vec<u8>); 8],
    next: usize,
}

/// Larger lists are written each time rather than kept.
const HEADERS_JSON_MAX: usize = 4096;

thread_local! {
    static HEADERS_JSON: std::cell::RefCell<HeadersJson> = std::cell::RefCell::new(HeadersJson {
        slots: Default::default(),
        next: 0,
    });
}

/// A header list as `[[name, value], ...]`, written without intermediate values.
fn write_headers(buf: &mut Vec<u8>, list: Option<&HeaderList>) {
    let Some(list) = list else {
        buf.extend_from_slice(b"null");
        return;
    };
    HEADERS_JSON.with_borrow_mut(|cache| {
        let known = cache
            .slots
            .iter()
            .find(|(l, _)| l.as_ref().is_some_and(|l| HeaderList::ptr_eq(l, list)));
        if let Some((_, json)) = known {
            buf.extend_from_slice(json);
            return;
        }
        let start = buf.len();
        write_header_fields(buf, list);
        let json = &buf[start..];
        if json.len() <= HEADERS_JSON_MAX {
            let next = cache.next;
            let slot = &mut cache.slots[next];
            slot.0 = Some(list.clone());
            slot.1.clear();
            slot.1.extend_from_slice(json);
            cache.next = (next + 1) % cache.slots.len();
        }
    });
}

fn write_header_fields(buf: &mut Vec<u8>, list: &[HeaderField]) {
    buf.push(b'[');
    for (i, h) in list.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.push(b'[');
        write_text(buf, &h.name, h.name_unknown.then(|| header_name(h)));
        buf.push(b',');
        write_text(buf, &h.value, h.value_unknown.then(|| header_value(h)));
        buf.push(b']');
    }
    buf.push(b']');
}

/// Bytes as a JSON string: UTF-8 as it is, anything else escaped as `lossless` does; `shown`
/// replaces them (unknown HPACK fields).
fn write_text(buf: &mut Vec<u8>, bytes: &[u8], shown: Option<String>) {
    match shown {
        Some(s) => write_str(buf, s.as_bytes()),
        // ASCII, nearly every header, needs neither UTF-8 validation nor a `str`.
        None if bytes.is_ascii() => write_str(buf, bytes),
        None => write_str(buf, lossless_str(bytes).as_bytes()),
    }
}

/// Appends UTF-8 text as a JSON string, escaped exactly as serde_json escapes it (`\"`, `\\`,
/// the short escapes for \b \f \n \r \t, `\u00xx` for other controls). Header names and
/// values are most of a frame line: the text is scanned eight bytes at a time and copied in
/// runs between escapes.
pub(crate) fn write_str(buf: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.reserve(text.len() + 2);
    buf.push(b'"');
    let mut run = 0;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        // Most strings are short: their tail is checked as one word too, padded with a letter.
        let w = match rest.first_chunk::<8>() {
            Some(word) => u64::from_le_bytes(*word),
            None => {
                let mut pad = [b'a'; 8];
                pad[..rest.len()].copy_from_slice(rest);
                u64::from_le_bytes(pad)
            }
        };
        let end = (i + 8).min(text.len());
        if !may_need_escape(w) {
            i = end;
            continue;
        }
        while i < end {
            let b = text[i];
            i += 1;
            let short: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0..=0x1f => b"",
                _ => continue,
            };
            buf.extend_from_slice(&text[run..i - 1]);
            run = i;
            if short.is_empty() {
                let hex = [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
                buf.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex[0], hex[1]]);
            } else {
                buf.extend_from_slice(short);
            }
        }
    }
    buf.extend_from_slice(&text[run..]);
    buf.push(b'"');
}

/// A `serde_json::Value`, as `serde_json::to_writer` writes it, with strings through
/// [`write_str`]: a message body of bytes is a hex string of twice its length, which serde's
/// byte-at-a-time escaping made the largest cost of a bulk capture's JSON Lines.
pub(crate) fn write_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => buf.extend_from_slice(b"null"),
        Value::Bool(b) => buf.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_uint(buf, u);
            } else if serde_json::to_writer(&mut *buf, n).is_err() {
                buf.extend_from_slice(b"null");
            }
        }
        Value::String(s) => write_str(buf, s.as_bytes()),
        Value::Array(items) => write_array(buf, items, write_value),
        Value::Object(map) => {
            buf.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_str(buf, k.as_bytes());
                buf.push(b':');
                write_value(buf, item);
            }
            buf.push(b'}');
        }
    }
}

/// A message read without a schema: its fields as an array of objects, one per field (keys in
/// alphabetical order: `field`, `wire`, the value as `value`, `string`, `message`, `bytes` (hex)
/// or `packed_varints`, and readings such as `zigzag` or `double`), or its bytes as a string.
pub fn write_schemaless(buf: &mut Vec<u8>, v: &Schemaless) {
    match v {
        Schemaless::Fields(nodes) => write_nodes(buf, nodes),
        Schemaless::Bytes(b) => write_hex(buf, b),
        Schemaless::Text(t) => write_str(buf, t.as_bytes()),
    }
}

fn write_nodes(buf: &mut Vec<u8>, nodes: &[Node]) {
    write_array(buf, nodes, write_node);
}

/// `items` as a JSON array, each written by `write`.
fn write_array<T>(
    buf: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) {
    buf.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write(buf, item);
    }
    buf.push(b']');
}

fn write_node(buf: &mut Vec<u8>, n: &Node) {
    let uint = |buf: &mut Vec<u8>, key: &[u8], v: u64| {
        buf.extend_from_slice(key);
        write_uint(buf, v);
    };
    match n {
        Node::Malformed {
            offset,
            shown,
            remaining,
        } => {
            buf.extend_from_slice(b"{\"malformed\":");
            write_hex(buf, shown);
            uint(buf, b",\"offset\":", *offset as u64);
            uint(buf, b",\"remaining\":", *remaining as u64);
        }
        Node::Truncated { offset, shown } => {
            uint(buf, b"{\"offset\":", *offset as u64);
            buf.extend_from_slice(b",\"truncated\":");
            write_hex(buf, shown);
        }
        Node::Field { number, value, .. } => {
            buf.push(b'{');
            if let WireValue::Len {
                guess: LenGuess::Bytes(b),
                ..
            } = value
            {
                buf.extend_from_slice(b"\"bytes\":");
                write_hex(buf, b);
                buf.push(b',');
            }
            if let Some(d) = value.double() {
                buf.extend_from_slice(b"\"double\":");
                write_float(buf, d);
                buf.push(b',');
            }
            uint(buf, b"\"field\":", *number);
            if let Some(f) = value.float() {
                buf.extend_from_slice(b",\"float\":");
                write_float(buf, f64::from(f));
            }
            match value {
                WireValue::Varint(v) => uint(buf, b",\"value\":", *v),
                WireValue::I64(v) => uint(buf, b",\"value\":", *v),
                WireValue::I32(v) => uint(buf, b",\"value\":", u64::from(*v)),
                WireValue::Len { length, guess } => {
                    uint(buf, b",\"length\":", *length as u64);
                    match guess {
                        LenGuess::Message(inner) => {
                            buf.extend_from_slice(b",\"message\":");
                            write_nodes(buf, inner);
                        }
                        LenGuess::PackedVarints(values) => {
                            buf.extend_from_slice(b",\"packed_varints\":");
                            write_array(buf, values, |buf, v| write_uint(buf, *v));
                        }
                        LenGuess::String(text) => {
                            buf.extend_from_slice(b",\"string\":");
                            write_str(buf, text.as_bytes());
                        }
                        LenGuess::Bytes(_) => {}
                    }
                }
                WireValue::Group { fields, .. } => {
                    buf.extend_from_slice(b",\"group\":");
                    write_nodes(buf, fields);
                }
            }
            buf.extend_from_slice(b",\"wire\":\"");
            buf.extend_from_slice(value.wire_name().as_bytes());
            buf.push(b'"');
            if let Some(z) = value.zigzag() {
                buf.extend_from_slice(b",\"zigzag\":");
                buf.extend_from_slice(itoa::Buffer::new().format(z).as_bytes());
            }
        }
    }
    buf.push(b'}');
}

/// Compact JSON text laid out as `serde_json::to_string_pretty` lays out values, keeping the
/// order of the keys (a message's fields come in its schema's order, which a `serde_json`
/// value would sort).
pub fn pretty(json: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut chars = json_chars(json).peekable();
    while let Some((c, quoted)) = chars.next() {
        if quoted {
            out.push(c);
            continue;
        }
        match c {
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&(close, false)) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Bytes as a JSON string of lower-case hex (which needs no escaping).
fn write_hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.push(b'"');
    wire::push_hex(buf, bytes);
    buf.push(b'"');
}

/// A finite float as serde_json writes it.
fn write_float(buf: &mut Vec<u8>, f: f64) {
    if serde_json::to_writer(&mut *buf, &f).is_err() {
        buf.extend_from_slice(b"null");
    }
}

/// Whether any of the eight bytes may be a control character, `"` or `\\` (never a false
/// "no"; a "yes" is checked byte by byte). The usual has-less-than bit trick, on each test.
fn may_need_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    (below(w, 0x20)
        | below(w ^ (ONES * u64::from(b'"')), 1)
        | below(w ^ (ONES * u64::from(b'\\')), 1))
        != 0
}

/// One call event as a JSON object, appended to `buf`.
pub fn write_call(buf: &mut Vec<u8>, c: &Call) {
    call_obj(Obj::new(buf), c);
}

fn call_obj<K: Keys>(o: Obj<'_, K>, c: &Call) -> Option<usize> {
    let mut o = o.of(keys::CALL);
    o.name(key!("event"), "call");
    o.conn(c.conn);
    o.uint(key!("stream"), c.stream as u64);
    o.addr(key!("client"), &c.client);
    o.addr(key!("server"), &c.server);
    o.opt_text(key!("method"), c.request_header(":method"));
    o.opt_text(key!("path"), c.request_header(":path"));
    o.opt_text(key!("authority"), c.request_header(":authority"));
    o.opt_uint(key!("status"), c.status().map(u64::from));
    let grpc_status = c.grpc_status();
    o.opt_uint(key!("grpc_status"), grpc_status.map(u64::from));
    o.opt_name(
        key!("grpc_status_name"),
        grpc_status.and_then(grpc_status_name),
    );
    o.opt_str(key!("grpc_message"), c.grpc_message().as_deref());
    o.seconds(key!("start_ts"), c.start_ts_ns);
    o.seconds(key!("end_ts"), c.end_ts_ns);
    o.seconds(key!("duration"), c.duration_ns());
    o.opt_with(key!("request_end_ts"), c.request_end_ts_ns, write_seconds);
    o.opt_with(
        key!("response_start_ts"),
        c.response_start_ts_ns,
        write_seconds,
    );
    o.opt_with(
        key!("time_to_response"),
        c.time_to_response_ns(),
        write_seconds,
    );
    o.opt_with(key!("deadline"), c.deadline_ns(), write_seconds);
    o.uint(key!("start_packet"), c.start_packet);
    o.uint(key!("end_packet"), c.end_packet);
    o.uint(key!("request_bytes"), c.request_bytes);
    o.uint(key!("response_bytes"), c.response_bytes);
    let (end, reset_by, error_code) = match c.end {
        CallEnd::Complete => ("complete", None, None),
        CallEnd::Reset {
            by_client,
            error_code,
        } => ("reset", Some(side_name(by_client)), Some(error_code)),
        CallEnd::Unfinished => ("unfinished", None, None),
        CallEnd::Refused { .. } => ("refused", None, None),
    };
    o.name(key!("end"), end);
    o.opt_name(key!("reset_by"), reset_by);
    o.opt_uint(key!("error_code"), error_code.map(u64::from));
    if let CallEnd::Refused { last_stream_id } = c.end {
        o.uint(key!("goaway_last_stream_id"), u64::from(last_stream_id));
    }
    o.bool(key!("request_stopped"), c.request_stopped);
    o.bool(key!("reset_at_deadline"), c.reset_at_deadline());
    o.bool(key!("pushed"), c.pushed);
    o.bool(key!("upgraded"), c.upgraded);
    o.bool(key!("tls"), c.tls);
    for (key, list) in [
        (key!("request_headers"), &c.request_headers),
        (key!("response_headers"), &c.response_headers),
        (key!("request_trailers"), &c.request_trailers),
        (key!("trailers"), &c.response_trailers),
    ] {
        if o.wants(key) {
            o.key(key);
            write_headers(o.buf, list.as_ref());
        }
    }
    o.bool(key!("grpc"), c.grpc);
    o.uint(key!("request_messages"), c.request_messages as u64);
    o.uint(key!("response_messages"), c.response_messages as u64);
    o.value(key!("grpc_status_details"), c.grpc_status_details.as_ref());
    if o.wants(key!("binary_metadata")) {
        o.json(
            key!("binary_metadata"),
            &binary_metadata(&[
                &c.request_headers,
                &c.response_headers,
                &c.response_trailers,
            ]),
        );
    }
    if !c.notes.is_empty() {
        o.json(key!("notes"), &c.notes);
    }
    o.end()
}

/// One call event as a JSON value (the same object as [`write_call`] writes).
pub fn call_json(c: &Call) -> Value {
    let mut buf = Vec::new();
    write_call(&mut buf, c);
    serde_json::from_slice(&buf).unwrap_or(Value::Null)
}

/// One message event as a JSON object, appended to `buf`.
pub fn write_message(buf: &mut Vec<u8>, e: &MessageEvent) {
    message_obj(Obj::new(buf), e);
}

fn message_obj<K: Keys>(o: Obj<'_, K>, e: &MessageEvent) -> Option<usize> {
    let mut o = o.of(keys::MESSAGE);
    let d = &e.decoded;
    o.name(key!("event"), "message");
    o.origin(&e.origin);
    o.uint(key!("stream"), e.stream as u64);
    o.opt_str(key!("path"), e.path.as_deref());
    o.name(key!("dir"), e.side.as_str());
    o.uint(key!("index"), e.index as u64);
    o.bool(key!("compressed"), d.compressed);
    o.opt_str(key!("encoding"), d.encoding.as_deref());
    o.uint(key!("length"), d.length as u64);
    o.opt_str(key!("type"), d.type_name.as_deref());
    o.raw(key!("json"), d.json.as_ref().map(Json::as_str));
    o.schemaless(key!("fields"), d.fields.as_ref());
    if let Some(p) = &d.problem {
        o.json(key!("problem"), p);
    }
    if !d.harvested.is_empty() {
        o.json(key!("harvested"), &d.harvested);
    }
    if let Some(raw) = d.bytes.as_ref().filter(|_| o.wants(key!("raw"))) {
        o.key(key!("raw"));
        o.hex(raw);
    }
    o.end()
}

/// One message event as a JSON value (the same object as [`write_message`] writes).
pub fn message_json(e: &MessageEvent) -> Value {
    let mut buf = Vec::new();
    write_message(&mut buf, e);
    serde_json::from_slice(&buf).unwrap_or(Value::Null)
}

/// `-bin` metadata of a header list, decoded (see [`decode_bin_header`]), as `[[name, hex], ...]`.
pub fn binary_metadata(lists: &[&Option<HeaderList>]) -> Value {
    let mut out = Vec::new();
    for list in lists.iter().filter_map(|l| l.as_ref()) {
        for h in list.iter() {
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

/// `"client"` or `"server"`, as JSON Lines name a side.
fn side_name(by_client: bool) -> &'static str {
    if by_client {
        "client"
    } else {
        "server"
    }
}

pub fn end_by(end: &EndKind) -> Value {
    end_side(end).into()
}

/// The side that half-closed or reset the connection, for those ends.
fn end_side(end: &EndKind) -> Option<&'static str> {
    match end {
        EndKind::HalfClosed { by_client } | EndKind::Rst { by_client } => {
            Some(side_name(*by_client))
        }
        _ => None,
    }
}

/// A connection event as JSON Lines writes it, serialized straight from its fields: building a
/// `Value` of it cost 30,000 instructions, 3% of the JSON Lines of small-packet traffic on short
/// connections. The keys are in the order the lines have always had (serde_json's maps sort
/// theirs).
#[derive(serde::Serialize)]
struct ConnectionLine<'a> {
    bytes_to_client: u64,
    bytes_to_server: u64,
    capture_point: Option<&'static str>,
    client: AddrText<'a>,
    closed_first_by: Option<&'static str>,
    closed_first_ts: Option<f64>,
    conn: u64,
    duration: f64,
    end: &'static str,
    end_by: Option<&'static str>,
    end_ts: f64,
    event: &'static str,
    initial_rtt: Option<f64>,
    initial_rtt_to_client: Option<f64>,
    initial_rtt_to_server: Option<f64>,
    joined_mid_way: bool,
    packets: u64,
    protocol: &'static str,
    server: AddrText<'a>,
    start_ts: f64,
    tcp_analysis: TcpAnalysis,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Value>,
}

/// An address as its text, without making a `String` of it first.
struct AddrText<'a>(&'a std::net::SocketAddr);

impl serde::Serialize for AddrText<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

#[derive(serde::Serialize)]
struct TcpAnalysis {
    client: TcpLine,
    server: TcpLine,
}

/// One side's [`crate::tcp::TcpSide`], keys in order as in [`ConnectionLine`].
#[derive(serde::Serialize)]
struct TcpLine {
    holes: u64,
    out_of_order_segments: u64,
    packets: u64,
    retransmitted_segments: u64,
    zero_window_s: f64,
    zero_windows: u64,
}

impl TcpLine {
    fn of(t: &crate::tcp::TcpSide) -> TcpLine {
        TcpLine {
            holes: t.holes,
            out_of_order_segments: t.out_of_order,
            packets: t.packets,
            retransmitted_segments: t.retransmitted,
            zero_window_s: ts(t.zero_window_ns),
            zero_windows: t.zero_windows,
        }
    }
}

impl<'a> ConnectionLine<'a> {
    fn of(c: &'a ConnectionEnd) -> Self {
        let h = Handshake::of(c.handshake.as_ref());
        ConnectionLine {
            bytes_to_client: c.bytes[1],
            bytes_to_server: c.bytes[0],
            capture_point: h.capture_point,
            client: AddrText(&c.client),
            closed_first_by: c.closed_first.map(|f| side_name(f.by_client)),
            closed_first_ts: c.closed_first.map(|f| ts(f.ts_ns)),
            conn: c.conn,
            duration: ts(c.last_ts_ns.saturating_sub(c.first_ts_ns)),
            end: c.end.as_str(),
            end_by: end_side(&c.end),
            end_ts: ts(c.last_ts_ns),
            event: "connection",
            initial_rtt: h.total,
            initial_rtt_to_client: h.to_client,
            initial_rtt_to_server: h.to_server,
            joined_mid_way: c.mid,
            packets: c.packets,
            protocol: c.protocol,
            server: AddrText(&c.server),
            start_ts: ts(c.first_ts_ns),
            tcp_analysis: TcpAnalysis {
                client: TcpLine::of(&c.tcp[0]),
                server: TcpLine::of(&c.tcp[1]),
            },
            tls: c.tls.as_ref().map(|t| t.to_json()),
        }
    }
}

/// One connection event as a JSON object, appended to `buf`.
pub fn write_connection(buf: &mut Vec<u8>, c: &ConnectionEnd) {
    // Numbers, strings and a `Value`: nothing that fails to serialize.
    let _ = serde_json::to_writer(buf, &ConnectionLine::of(c));
}

/// One connection event as a JSON value (the same object as [`write_connection`] writes).
pub fn connection_json(c: &ConnectionEnd) -> Value {
    serde_json::to_value(ConnectionLine::of(c)).unwrap_or(Value::Null)
}

/// What TCP showed of one side's segments (see [`crate::tcp::TcpSide`]).
pub fn tcp_json(t: &crate::tcp::TcpSide) -> Value {
    serde_json::to_value(TcpLine::of(t)).unwrap_or(Value::Null)
}

/// A connection's TCP handshake round trip (seconds; null when the capture did not show the
/// handshake whole) and where the capture was taken, as `connection` and `connection_health`
/// events give them.
pub fn handshake_fields(m: &mut Map<String, Value>, h: Option<&crate::event::HandshakeRtt>) {
    let h = Handshake::of(h);
    m.insert("initial_rtt".into(), h.total.into());
    m.insert("initial_rtt_to_server".into(), h.to_server.into());
    m.insert("initial_rtt_to_client".into(), h.to_client.into());
    m.insert("capture_point".into(), h.capture_point.into());
}

/// What [`handshake_fields`] and [`ConnectionLine`] show of a handshake.
struct Handshake {
    total: Option<f64>,
    to_server: Option<f64>,
    to_client: Option<f64>,
    capture_point: Option<&'static str>,
}

impl Handshake {
    fn of(h: Option<&crate::event::HandshakeRtt>) -> Handshake {
        Handshake {
            total: h.map(|h| ts(h.total_ns())),
            to_server: h.map(|h| ts(h.server_ns)),
            to_client: h.map(|h| ts(h.client_ns)),
            capture_point: h.and_then(|h| h.capture_point()).map(|p| p.as_str()),
        }
    }
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
        "tls_connections": s.stats.tls_connections,
        "tls_decrypted": s.stats.tls_decrypted,
        "calls": s.tally.calls,
        "messages": s.tally.messages,
        "frames": s.tally.frames,
        "frames_by_type": s.tally.frames_by_type(),
        "gaps": s.tally.gaps,
        "gap_bytes": s.tally.gap_bytes,
        "errors": s.tally.errors,
        "retransmitted_segments": s.stats.flows.retransmitted,
        "evicted_connections": s.stats.flows.evicted,
        "expired_connections": s.stats.flows.expired,
        "capture_warnings": s.warnings,
        "received": s.live.map(|l| l.received),
        "kernel_drops": s.live.map(|l| l.dropped),
        "interface_drops": s.live.map(|l| l.if_dropped),
    })
}

#[cfg(test)]
mod addr_tests {
    use super::Obj;

    /// Addresses written by hand read the same as `Display` writes them.
    #[test]
    fn addresses_match_display() {
        for a in [
            "127.0.0.1:50051",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.4:8080",
            "[::1]:443",
            "[2001:db8::2:1]:1",
        ] {
            let a: std::net::SocketAddr = a.parse().unwrap();
            let mut buf = Vec::new();
            let mut o = Obj::new(&mut buf);
            o.addr(key!("a"), &a);
            o.end();
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                format!("{{\"a\":\"{a}\"}}")
            );
        }
    }
}

#[cfg(test)]
mod escape_tests {
    use super::{write_str, write_text};

    /// Every ASCII character, some non-ASCII text, and bytes that are not UTF-8 come out as
    /// serde_json writes the same text (after `lossless` for the invalid bytes).
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let ascii: String = (0u8..=0x7f).map(char::from).collect();
        // Long enough for the eight-byte scan, with escapes at every offset within a word.
        let mixed: String = (0..200)
            .map(|i| ["abcdefg", "\"", "\\", "\n", "\u{1f}", "é", "€x"][i % 7])
            .collect();
        for text in [
            ascii.as_str(),
            mixed.as_str(),
            "a plain run of text longer than several words, with one quote at the end\"",
            "",
            "plain",
            "é€😀\u{2028}",
            "a\"b\\c\u{1}\u{7f}",
        ] {
            let mut buf = Vec::new();
            write_str(&mut buf, text.as_bytes());
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
        let mut buf = Vec::new();
        write_text(&mut buf, b"ok\xff\x00", None);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            serde_json::to_string(&crate::http2::call::lossless(b"ok\xff\x00")).unwrap()
        );
    }
}

#[cfg(test)]
pub(crate) mod value_tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::{pretty, wire, write_schemaless, Schemaless};

    fn written(v: &Value) -> String {
        let mut buf = Vec::new();
        super::write_value(&mut buf, v);
        String::from_utf8(buf).unwrap()
    }

    /// Decoded bodies hold every kind of JSON value: each comes out as serde_json writes it.
    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let v = json!({
            "z": null, "t": true, "f": false, "u": u64::MAX, "i": i64::MIN, "n": -1,
            "x": [0.1, 1.5, -0.0, 1e300, 2.5e-308, 123456789.125],
            "s": "quote \" backslash \\ nl \n é 😀 \u{1}",
            "nested": [[], {}, [{"a": [1, {"b": "c"}]}]],
            "bytes": "00ff".repeat(5000),
        });
        assert_eq!(written(&v), serde_json::to_string(&v).unwrap());
    }

    /// Any JSON value (the test values of every JSON writer and reader).
    pub(crate) fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".*".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn integers_are_written_as_itoa_writes_them() {
        let big = [100, 999, 1000, 65_535, u64::from(u32::MAX), u64::MAX];
        for n in (0..200).chain(big) {
            let mut buf = b"x".to_vec();
            super::write_uint(&mut buf, n);
            assert_eq!(buf, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn schemaless_fields_keep_their_json_lines_form() {
        // The sample, then {6: sint -2, 7: double 2.5, 8: bytes 00ff} and a stray byte.
        let mut b = wire::tests::sample();
        b.extend_from_slice(&[0x30, 0x03, 0x39]);
        b.extend_from_slice(&2.5f64.to_le_bytes());
        b.extend_from_slice(&[0x42, 0x02, 0x00, 0xff, 0x07]);
        let mut out = Vec::new();
        write_schemaless(&mut out, &Schemaless::Fields(wire::decode_raw(&b)));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"[{"field":1,"value":150,"wire":"varint"},"#,
                r#"{"field":2,"length":7,"string":"testing","wire":"len"},"#,
                r#"{"field":3,"length":2,"message":[{"field":1,"value":1,"wire":"varint"}],"wire":"len"},"#,
                r#"{"field":4,"length":3,"packed_varints":[3,270],"wire":"len"},"#,
                r#"{"field":5,"float":1.5,"value":1069547520,"wire":"i32"},"#,
                r#"{"field":6,"value":3,"wire":"varint","zigzag":-2},"#,
                r#"{"double":2.5,"field":7,"value":4612811918334230528,"wire":"i64"},"#,
                r#"{"bytes":"00ff","field":8,"length":2,"wire":"len"},"#,
                r#"{"malformed":"07","offset":41,"remaining":1}]"#
            )
        );
        let mut out = Vec::new();
        write_schemaless(&mut out, &Schemaless::Bytes(vec![0xab, 0x01]));
        assert_eq!(out, br#""ab01""#);
    }

    proptest! {
        #[test]
        fn schemaless_fields_are_valid_json(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut out = Vec::new();
            write_schemaless(&mut out, &Schemaless::Fields(wire::decode_raw(&bytes)));
            let v: Value = serde_json::from_slice(&out).unwrap();
            prop_assert!(v.is_array());
        }

        #[test]
        fn compact_text_is_laid_out_as_serde_json_pretty_prints(v in value()) {
            prop_assert_eq!(pretty(&v.to_string()), serde_json::to_string_pretty(&v).unwrap());
        }

        #[test]
        fn any_value_is_written_as_serde_json_writes_it(v in value()) {
            prop_assert_eq!(written(&v), serde_json::to_string(&v).unwrap());
        }
    }
}

#[cfg(test)]
mod headers_tests {
    use super::{write_header_fields, write_headers};
    use crate::http2::hpack::{HeaderField, HeaderList, Representation};

    fn list(fields: &[(&str, &str)]) -> HeaderList {
        fields
            .iter()
            .map(|(n, v)| HeaderField {
                name: bytes::Bytes::copy_from_slice(n.as_bytes()),
                value: bytes::Bytes::copy_from_slice(v.as_bytes()),
                repr: Representation::Indexed { index: 62 },
                name_unknown: false,
                value_unknown: false,
            })
            .collect()
    }

    /// Lists written again, from the cache or not, read as written the first time: twelve
    /// lists through eight slots, two of them with the same fields in different lists.
    #[test]
    fn header_lists_written_again_are_the_same() {
        let lists: Vec<HeaderList> = (0..12)
            .map(|i| list(&[(":path", &format!("/s/M{}", i % 10)), ("te", "trailers")]))
            .collect();
        let fresh = |l: &HeaderList| {
            let mut b = Vec::new();
            write_header_fields(&mut b, l);
            b
        };
        for round in 0..3 {
            for (i, l) in lists.iter().enumerate() {
                let mut b = b"x".to_vec();
                write_headers(&mut b, Some(l));
                assert_eq!(&b[1..], &fresh(l)[..], "round {round}, list {i}");
            }
        }
        let mut b = Vec::new();
        write_headers(&mut b, None);
        assert_eq!(b, b"null");
    }
}

#[cfg(test)]
mod seconds_tests {
    use super::{ts, write_seconds};
    use proptest::prelude::*;

    fn text(ns: i64) -> String {
        let mut buf = Vec::new();
        write_seconds(&mut buf, ns);
        String::from_utf8(buf).unwrap()
    }

    /// The digits by pairs are those a general formatter gives: whole seconds, then the nine
    /// digits of the nanoseconds without trailing zeros, one digit at least.
    #[test]
    fn seconds_by_pairs_are_the_formatters_digits() {
        let reference = |ns: i64| {
            let sign = if ns < 0 { "-" } else { "" };
            let abs = ns.unsigned_abs();
            let frac = format!("{:09}", abs % 1_000_000_000);
            let frac = frac.trim_end_matches('0');
            let frac = if frac.is_empty() { "0" } else { frac };
            format!("{sign}{}.{frac}", abs / 1_000_000_000)
        };
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut values = vec![
            0,
            1,
            -1,
            10,
            100_000_000,
            999_999_999,
            1_000_000_000,
            i64::MAX,
            i64::MIN,
        ];
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Whole numbers of ms, of µs, and any, small and large.
            let v = x as i64 >> (x % 48);
            values.extend([v, v - v % 1_000_000, v - v % 1000]);
        }
        for ns in values {
            assert_eq!(text(ns), reference(ns), "{ns}");
        }
    }

    #[test]
    fn seconds_are_written_with_the_captures_digits() {
        assert_eq!(text(0), "0.0");
        assert_eq!(text(1_500_000_000), "1.5");
        assert_eq!(text(-1_500_000_000), "-1.5");
        assert_eq!(text(-1), "-0.000000001");
        assert_eq!(text(1_718_679_245_776_502_000), "1718679245.776502");
        assert_eq!(text(1_718_679_245_776_502_123), "1718679245.776502123");
        assert_eq!(text(i64::MIN), "-9223372036.854775808");
        // A microsecond clock's time, as serde_json writes the f64 `ts` gives: the same
        // digits (dividing the nanoseconds by 1e9 wrote 1718679245.7765021).
        let f = serde_json::to_string(&ts(1_718_679_245_776_502_000)).unwrap();
        assert_eq!(f, "1718679245.776502");
    }

    proptest! {
        /// Any time is its whole seconds, a point and its nine digits of nanoseconds without
        /// trailing zeros (one digit at least).
        #[test]
        fn text_is_seconds_point_nanoseconds(ns in any::<i64>()) {
            let abs = ns.unsigned_abs();
            let frac = format!("{:09}", abs % 1_000_000_000);
            let frac = frac.trim_end_matches('0');
            let sign = if ns < 0 { "-" } else { "" };
            let frac = if frac.is_empty() { "0" } else { frac };
            prop_assert_eq!(text(ns), format!("{sign}{}.{frac}", abs / 1_000_000_000));
        }

        /// The text parses to `ts`'s f64, and for times to the microsecond (pcap's usual
        /// clock) it is what serde_json writes for that f64.
        #[test]
        fn text_and_f64_agree(secs in 0i64..4_000_000_000, micros in 0i64..1_000_000, nanos in 0i64..1000) {
            let ns = secs * 1_000_000_000 + micros * 1000 + nanos;
            prop_assert_eq!(text(ns).parse::<f64>().unwrap(), ts(ns));
            let us = ns - nanos;
            let shortest = serde_json::to_string(&ts(us)).unwrap();
            prop_assert_eq!(shortest.parse::<f64>().unwrap(), text(us).parse::<f64>().unwrap());
            prop_assert_eq!(shortest, text(us));
        }
    }
}
