//! Display filters (`read -Y EXPR`): which events are shown, decided on the fields of their JSON
//! Lines form, so the names a filter uses are the documented schema's.
//!
//! ```text
//! expr    = or
//! or      = and { ("or" | "||") and }
//! and     = not { ("and" | "&&") not }
//! not     = ("not" | "!") not | primary
//! primary = "(" expr ")" | field [ op value ]
//! op      = "==" | "!=" | "<" | "<=" | ">" | ">=" | "contains" | "matches" | "~"
//! value   = number | "text" | 'text' | true | false | null | bare-word
//! field   = name { "." name | "[" text "]" }
//! ```
//!
//! A field that holds a list (flag names, header lists) matches when any of its values does; a
//! header list's field is the values of headers of that name (`request_headers.user-agent`,
//! `headers[":path"]`). A field an event lacks makes its comparisons false, `!=` included, as in
//! tshark; a bare field is true when the event has it, not null and not false.

use regex_lite::Regex;
use serde_json::Value;

use crate::event::{Event, Sink};
use crate::output::{jsonl, keys};
use crate::parallel::{Handoff, Route, Shows};

/// A compiled display filter.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Expr,
    /// The top-level fields the expression names, each once: only these are written and read
    /// when an event is tested.
    roots: Vec<String>,
    /// What the filter says of every event of a kind (in the order of [`KINDS`]), when
    /// `event` alone decides it (`event == "call" and ...` is false for any frame) or fields
    /// the kind never has (`type == DATA` for a connection, whose whole `Value` the test would
    /// otherwise build).
    by_kind: [Option<bool>; 6],
}

/// The kinds of event [`Filter::by_kind`] knows, as their JSON Lines `event` names.
const KINDS: [&str; 6] = keys::EVENT_KINDS;

/// The place of the event's kind in [`KINDS`].
fn kind_index(event: &Event) -> usize {
    match event {
        Event::Frame(_) => 0,
        Event::Message(_) => 1,
        Event::Call(_) => 2,
        Event::Gap(_) => 3,
        Event::Error(_) => 4,
        Event::ConnectionEnd(_) => 5,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("display filter, at character {at}: {message}")]
pub struct FilterError {
    /// 1-based position in the expression.
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Present(Field),
    Compare(Field, Op, Literal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    /// The top-level field it starts from.
    root: String,
    /// The names below it.
    path: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    Matches,
}

#[derive(Debug, Clone)]
enum Literal {
    Num(f64),
    Text(String),
    Bool(bool),
    Null,
    Pattern(Regex),
}

/// Deeper nesting than this is refused: the parser recurses, and a filter comes from the
/// command line, not from the capture, but a stack overflow is no way to say no.
const MAX_DEPTH: usize = 64;

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut p = Parser::new(text)?;
        let expr = p.or()?;
        p.end_of_text()?;
        let mut roots = Vec::new();
        expr.roots(&mut roots);
        let by_kind = KINDS.map(|k| expr.given_event(k));
        Ok(Filter {
            expr,
            roots,
            by_kind,
        })
    }

    /// Whether the event is shown.
    ///
    /// Frames, messages and calls write only the top-level fields the filter names, by the
    /// JSON Lines writer, and those are parsed: building the whole `Value` of every event cost
    /// five times the JSON Lines output itself.
    pub fn matches(&self, event: &Event) -> bool {
        if let Some(known) = self.by_kind[kind_index(event)] {
            return known;
        }
        with_root(event, &self.roots, |root| eval(&self.expr, root))
    }

    /// The top-level fields the filter names, each once.
    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    /// Every field the filter names, dotted (`request_headers.user-agent`).
    pub fn field_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.expr.field_names(&mut out);
        out
    }

    /// Whether a record whose top-level fields are given by `field` (for the names of
    /// [`Filter::roots`]) is shown: for views that keep a few fields of an event, not the
    /// event (the TUI's call list).
    pub fn matches_fields(&self, field: impl Fn(&str) -> Option<Value>) -> bool {
        self.matches_fields_or_json(field, None)
    }

    /// [`Filter::matches_fields`], with the fields `field` does not give taken from the JSON
    /// object `json` (a stored JSON Lines line), of which only those fields are parsed.
    pub fn matches_fields_or_json(
        &self,
        field: impl Fn(&str) -> Option<Value>,
        json: Option<&[u8]>,
    ) -> bool {
        let text = json.and_then(|j| std::str::from_utf8(j).ok()).unwrap_or("");
        let mut picked = Vec::new();
        if !pick(text, &self.roots, &mut picked) {
            picked.clear();
        }
        let picked: Vec<Option<Picked>> = (self.roots.iter().enumerate())
            .map(|(i, n)| {
                field(n)
                    .map(Picked::Json)
                    .or_else(|| picked.get_mut(i)?.take())
            })
            .collect();
        let root = Root::Named {
            names: &self.roots,
            picked: &picked,
            text,
        };
        eval(&self.expr, &root)
    }

    /// Whether an event with this JSON Lines form is shown.
    pub fn matches_json(&self, v: &Value) -> bool {
        eval(&self.expr, &Root::Whole(v))
    }

    /// Whether some frame may match: a filter that no frame and no message can match lets the
    /// dissection build neither (see [`crate::event::Wants`]).
    pub fn may_show_frames(&self) -> bool {
        self.by_kind[0] != Some(false)
    }

    /// Whether some gRPC message may match.
    pub fn may_show_messages(&self) -> bool {
        self.by_kind[1] != Some(false)
    }

    /// The filter looks at this top-level field.
    pub fn uses(&self, name: &str) -> bool {
        self.roots.iter().any(|r| r == name)
    }
}

/// The first of `fields` (top-level names) that no kind of event has, with the name of one
/// that is close to it, if any: a misspelt field would otherwise match nothing, silently.
pub fn unknown_field(fields: &[String]) -> Option<(&str, Option<&'static str>)> {
    let name = fields.iter().find(|f| !keys::is_event_key(f))?;
    let closest = keys::EVENT_KINDS
        .iter()
        .filter_map(|k| keys::keys_of(k))
        .flatten()
        .map(|k| (edit_distance(name, k), *k))
        .min();
    // One edit in a short name, two in a longer one (a swap of two letters is two).
    let near = if name.chars().count() < 5 { 1 } else { 2 };
    Some((name, closest.filter(|(d, _)| *d <= near).map(|(_, k)| k)))
}

/// Levenshtein distance, for [`unknown_field`]'s suggestion.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// A line longer than this is not kept for the next event's.
const LINE_KEPT: usize = 1 << 20;

/// Hands `f` the top-level fields `roots` of an event's JSON Lines form. Frames, messages and
/// calls write only those fields, with the JSON Lines writer, and they are parsed alone:
/// building the whole `Value` of every event cost five times the JSON Lines output itself.
fn with_root<T>(event: &Event, roots: &[String], f: impl FnOnce(&Root<'_>) -> T) -> T {
    thread_local! {
        static KEPT: std::cell::RefCell<Kept> = const {
            std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new()))
        };
    }
    KEPT.with(|kept| match kept.try_borrow_mut() {
        Ok(mut kept) => with_kept(event, roots, &mut kept, f),
        // `f` tests another event's fields on this thread.
        Err(_) => with_kept(event, roots, &mut Default::default(), f),
    })
}

/// An event's text, where each field's value lies in it, and those values: kept from event to
/// event for their buffers.
type Kept = (Vec<u8>, jsonl::Spans, Vec<Option<Picked>>);

fn with_kept<T>(
    event: &Event,
    roots: &[String],
    (line, spans, picked): &mut Kept,
    f: impl FnOnce(&Root<'_>) -> T,
) -> T {
    // The commonest fields are read from the event itself, when they are all the filter
    // names: writing them as JSON and reading them back cost two thirds of `-T fields -e type`.
    let mut direct_vals = [None; MAX_DIRECT];
    if roots.len() <= MAX_DIRECT
        && roots.iter().zip(&mut direct_vals).all(|(name, v)| {
            *v = direct(event, name);
            v.is_some()
        })
    {
        return f(&Root::Direct {
            names: roots,
            vals: &direct_vals[..roots.len()],
        });
    }
    line.clear();
    picked.clear();
    let mut named = None;
    if jsonl::write_event_spans(line, event, roots, spans) {
        if let Ok(text) = std::str::from_utf8(line) {
            // The values are read where the writer put them, not looked for in the text.
            let mut all = true;
            picked.extend(spans.iter().map(|span| {
                let value = picked_value(text, span.clone()?);
                all &= value.is_some();
                value
            }));
            named = all.then_some(text);
        }
    }
    let result = match named {
        Some(text) => f(&Root::Named {
            names: roots,
            picked,
            text,
        }),
        None => f(&Root::Whole(&jsonl::event_json(event))),
    };
    if line.capacity() > LINE_KEPT {
        *line = Vec::new();
    }
    picked.clear();
    result
}

/// Whether some event of this kind may have one of the top-level fields `roots`.
fn may_have(kind: &str, roots: &[String]) -> bool {
    keys::keys_of(kind).is_none_or(|keys| roots.iter().any(|r| keys.contains(&r.as_str())))
}

/// Fields of events, named as display filters name them (`path`, `json.status`,
/// `request_headers.user-agent`): what `-T fields -e FIELD` prints.
#[derive(Debug, Clone)]
pub struct FieldList {
    fields: Vec<Field>,
    names: Vec<String>,
    roots: Vec<String>,
    /// [`FieldList::may_have`] for each of [`KINDS`].
    kinds: [bool; 6],
}

impl FieldList {
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<FieldList, FilterError> {
        let mut fields = Vec::new();
        let mut roots = Vec::new();
        for name in names {
            let text = name.as_ref();
            let parse = || {
                let mut p = Parser::new(text)?;
                let field = p.field()?;
                p.end_of_text()?;
                Ok(field)
            };
            let field = parse().map_err(|e: FilterError| FilterError {
                at: e.at,
                message: format!("field {text:?}: {}", e.message),
            })?;
            if !roots.contains(&field.root) {
                roots.push(field.root.clone());
            }
            fields.push(field);
        }
        let kinds = KINDS.map(|k| may_have(k, &roots));
        Ok(FieldList {
            fields,
            names: names.iter().map(|n| n.as_ref().to_string()).collect(),
            roots,
            kinds,
        })
    }

    /// The fields as they were written.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether some event of this kind (its `event` name) may have one of the fields: events
    /// of a kind that cannot print no line, and need not be built.
    pub fn may_have(&self, kind: &str) -> bool {
        may_have(kind, &self.roots)
    }

    /// The top-level fields the fields start from, each once.
    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    /// Every field, dotted (`request_headers.user-agent`).
    pub fn field_names(&self) -> Vec<String> {
        self.fields.iter().map(Field::dotted).collect()
    }

    /// Some field starts from this top-level field.
    pub fn uses(&self, name: &str) -> bool {
        self.roots.iter().any(|r| r == name)
    }

    /// Calls `each(i, value)` for every value of the `i`th field in the event, fields in
    /// order, a field's values in the order of its list (lists are flattened, as a filter
    /// sees them).
    pub fn each_value(&self, event: &Event, mut each: impl FnMut(usize, Val<'_>)) {
        if !self.kinds[kind_index(event)] {
            return;
        }
        with_root(event, &self.roots, |root| {
            for (i, f) in self.fields.iter().enumerate() {
                for v in values(root, f).as_slice() {
                    each(i, *v);
                }
            }
        })
    }
}

impl Field {
    fn dotted(&self) -> String {
        std::iter::once(&self.root)
            .chain(&self.path)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// tshark's names of the fields h2scope has under another name: someone used to
/// `-Y http2.streamid == 1` is told `stream`.
const TSHARK_NAMES: &[(&str, &str)] = &[
    ("frame.number", "packet"),
    ("frame.time_epoch", "ts"),
    ("frame.time_relative", "ts"),
    ("http2.streamid", "stream"),
    ("http2.type", "type_code (or type, by name)"),
    ("http2.flags", "flags (or flag_names)"),
    ("http2.length", "length"),
    (
        "http2.header",
        "headers (frames) or request_headers.NAME (calls)",
    ),
    (
        "http2.header.name",
        "headers (frames) or request_headers.NAME (calls)",
    ),
    (
        "http2.header.value",
        "headers.NAME (frames) or request_headers.NAME (calls)",
    ),
    ("http2.headers.path", "path"),
    ("http2.headers.method", "method"),
    ("http2.headers.status", "status"),
    ("http2.headers.authority", "authority"),
    ("http2.rst_stream.error", "error_code (or error_name)"),
    ("http2.goaway.error", "error_code (or error_name)"),
    ("http2.goaway.last_stream_id", "last_stream_id"),
    ("http2.window_update.window_size_increment", "increment"),
    ("http2.settings.id", "settings (or setting_names)"),
    ("http2.ping", "opaque"),
    ("http2.pong", "opaque"),
    ("http2.data.data", "raw (with -x)"),
    ("http2.body.reassembled.data", "json or fields (messages)"),
    ("grpc.message_length", "length (messages)"),
    ("grpc.compressed_flag", "compressed (messages)"),
    ("grpc.message_data", "json or fields (messages)"),
    ("tcp.srcport", "src"),
    ("tcp.dstport", "dst"),
    (
        "tcp.port",
        "src or dst, each \"ip:port\" (src matches \":50051$\" or dst matches \":50051$\")",
    ),
    ("ip.src", "src"),
    ("ip.dst", "dst"),
    ("ip.addr", "src or dst, each \"ip:port\""),
];

/// The top-level names of tshark's protocols, which no event has.
const TSHARK_PROTOCOLS: &[&str] = &[
    "frame", "eth", "ip", "ipv6", "tcp", "tls", "http", "http2", "grpc", "pbf", "protobuf",
];

/// What h2scope calls a field named as tshark names it, when `field` (dotted) is one of
/// tshark's: `Some(Some(name))` for a field it knows, `Some(None)` for another field of a
/// protocol tshark names so.
pub fn tshark_equivalent(field: &str) -> Option<Option<&'static str>> {
    let root = field.split('.').next().unwrap_or(field);
    if !TSHARK_PROTOCOLS.contains(&root) {
        return None;
    }
    Some(
        TSHARK_NAMES
            .iter()
            .find(|(t, _)| *t == field)
            .map(|(_, ours)| *ours),
    )
}

impl Expr {
    /// Every field the expression names, in order.
    fn each_field(&self, f: &mut impl FnMut(&Field)) {
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => {
                a.each_field(f);
                b.each_field(f);
            }
            Expr::Not(a) => a.each_field(f),
            Expr::Present(field) | Expr::Compare(field, _, _) => f(field),
        }
    }

    fn field_names(&self, out: &mut Vec<String>) {
        self.each_field(&mut |f| out.push(f.dotted()));
    }

    /// The value of the expression for every event whose `event` field is `kind`, when that
    /// field alone decides it, or fields the kind never has.
    fn given_event(&self, kind: &str) -> Option<bool> {
        match self {
            Expr::Or(a, b) => match (a.given_event(kind), b.given_event(kind)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Expr::And(a, b) => match (a.given_event(kind), b.given_event(kind)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Not(a) => a.given_event(kind).map(|v| !v),
            Expr::Present(f) | Expr::Compare(f, _, _) if f.root == "event" && f.path.is_empty() => {
                // Evaluated as any event of the kind would be, so the two cannot disagree.
                let mut event = serde_json::Map::new();
                event.insert("event".into(), Value::String(kind.into()));
                Some(eval(self, &Root::Whole(&Value::Object(event))))
            }
            // A field no event of the kind has: a bare field and every comparison are false.
            Expr::Present(f) | Expr::Compare(f, _, _)
                if keys::keys_of(kind).is_some_and(|keys| !keys.contains(&f.root.as_str())) =>
            {
                Some(false)
            }
            Expr::Present(_) | Expr::Compare(..) => None,
        }
    }

    fn roots(&self, out: &mut Vec<String>) {
        self.each_field(&mut |f| {
            if !out.contains(&f.root) {
                out.push(f.root.clone());
            }
        });
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::parse(s)
    }
}

/// A filter applied by the worker threads of one capture (see [`crate::parallel`]), before
/// they format: what does not match is dropped where it was made. Workers number connections
/// on their own, so a filter on `conn` sends each event whole to the output thread, which
/// filters with the capture's numbers.
pub struct FilterRoute {
    filter: Filter,
    inner: Box<dyn Route>,
    by_conn: bool,
}

impl FilterRoute {
    pub fn new(filter: Filter, inner: Box<dyn Route>) -> Self {
        let by_conn = filter.uses("conn");
        FilterRoute {
            filter,
            inner,
            by_conn,
        }
    }
}

impl Route for FilterRoute {
    fn route(&self, event: &Event, first_ts_ns: i64, buf: &mut Vec<u8>) -> Handoff {
        let shown = match (self.inner.shows(), event) {
            (Shows::Nothing, _) => false,
            (Shows::Calls, e) => matches!(e, Event::Call(_)),
            (Shows::Everything, _) => true,
        };
        if !shown {
            Handoff::Drop
        } else if self.by_conn {
            Handoff::Event
        } else if self.filter.matches(event) {
            self.inner.route(event, first_ts_ns, buf)
        } else {
            Handoff::Drop
        }
    }

    fn shows(&self) -> Shows {
        self.inner.shows().narrowed(
            self.filter.may_show_frames(),
            self.filter.may_show_messages(),
        )
    }
}

/// A sink that passes on only the events a filter matches.
pub struct Filtered<'a, S: Sink + ?Sized> {
    filter: &'a Filter,
    inner: &'a mut S,
}

impl<'a, S: Sink + ?Sized> Filtered<'a, S> {
    pub fn new(filter: &'a Filter, inner: &'a mut S) -> Self {
        Filtered { filter, inner }
    }
}

impl<S: Sink + ?Sized> Sink for Filtered<'_, S> {
    fn event(&mut self, event: Event) {
        if self.filter.matches(&event) {
            self.inner.event(event);
        }
    }

    fn wants(&mut self) -> crate::event::Wants<'_> {
        self.inner.wants()
    }

    fn closed(&self) -> bool {
        self.inner.closed()
    }
}

/// Puts in `out` the values of `names` among the top-level fields of a JSON object, in their
/// order (`None` for a name the object does not have); false if the text is not such an
/// object. The text is a stored JSON Lines line, of which a filter reads a few fields, so it is
/// read by a scanner of its own: `serde_json` took more to read them than the writer took to
/// write them.
fn pick(text: &str, names: &[String], out: &mut Vec<Option<Picked>>) -> bool {
    out.clear();
    out.resize(names.len(), None);
    pick_into(text, names, out).is_some()
}

fn pick_into(text: &str, names: &[String], out: &mut [Option<Picked>]) -> Option<()> {
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_space(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return Some(());
    }
    loop {
        let key_end = string_end(bytes, at)?;
        // The writer's keys are the program's own names, never escaped: compared as bytes.
        let key = &bytes[at + 1..key_end - 1];
        at = skip_space(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_space(bytes, at + 1);
        let end = value_end(bytes, start)?;
        if let Some(i) = names.iter().position(|n| n.as_bytes() == key) {
            let value = picked_value(text, start..end)?;
            for (j, n) in names.iter().enumerate().skip(i + 1) {
                if n.as_bytes() == key {
                    out[j] = Some(value.clone());
                }
            }
            out[i] = Some(value);
        }
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => return Some(()),
            _ => return None,
        }
    }
}

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while text.get(at).is_some_and(|b| b" \t\r\n".contains(b)) {
        at += 1;
    }
    at
}

/// Where the JSON string that starts at `at` ends (past its closing quote).
fn string_end(text: &[u8], at: usize) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', text.get(i..)?)?;
        match text[i] {
            b'"' => return Some(i + 1),
            _ => i += 2,
        }
    }
}

/// Where the JSON value that starts at `at` ends; checked no further than its brackets and
/// strings, since [`picked_value`] parses whatever is not a plain scalar.
fn value_end(text: &[u8], at: usize) -> Option<usize> {
    match *text.get(at)? {
        b'"' => string_end(text, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match *text.get(i)? {
                    b'"' => {
                        i = string_end(text, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        // A number or a word, up to what follows it.
        _ => {
            let len = text[at..]
                .iter()
                .position(|b| b",}] \t\r\n".contains(b))
                .unwrap_or(text.len() - at);
            (len > 0).then_some(at + len)
        }
    }
}

/// A top-level field's value read from an event's JSON text: strings without escapes, counts
/// and the three words where they lie in the text (most of what filters and fields read, and
/// no allocation), anything else parsed by `serde_json`.
#[derive(Debug, Clone, PartialEq)]
enum Picked {
    /// Where the string's text (within its quotes) lies.
    Str(std::ops::Range<usize>),
    Uint(u64),
    Bool(bool),
    Null,
    Json(Value),
}

/// The JSON value at `span` of `text`; `None` if it is not one.
fn picked_value(text: &str, span: std::ops::Range<usize>) -> Option<Picked> {
    let raw = text.as_bytes().get(span.clone())?;
    Some(match raw {
        [b'"', inner @ .., b'"'] if !inner.iter().any(|&b| b == b'\\' || b < 0x20) => {
            Picked::Str(span.start + 1..span.end - 1)
        }
        b"true" => Picked::Bool(true),
        b"false" => Picked::Bool(false),
        b"null" => Picked::Null,
        b"0" => Picked::Uint(0),
        [b'1'..=b'9', rest @ ..] if rest.len() < 19 && rest.iter().all(u8::is_ascii_digit) => {
            Picked::Uint(text.get(span)?.parse().ok()?)
        }
        _ => Picked::Json(serde_json::from_slice(raw).ok()?),
    })
}

/// A value a filter tests or `-T fields` prints: text, a count and the words as they were
/// picked, or a part of a parsed JSON value. Strings, booleans, null and counts are never
/// [`Val::Json`], so that each is compared one way, whichever way it was read.
#[derive(Debug, Clone, Copy)]
pub enum Val<'v> {
    Str(&'v str),
    Uint(u64),
    Bool(bool),
    Null,
    /// A number that is not a count, an object or a list.
    Json(&'v Value),
}

impl<'v> Val<'v> {
    fn of(v: &'v Value) -> Self {
        match v {
            Value::String(s) => Val::Str(s),
            Value::Bool(b) => Val::Bool(*b),
            Value::Null => Val::Null,
            Value::Number(n) => n.as_u64().map_or(Val::Json(v), Val::Uint),
            _ => Val::Json(v),
        }
    }

    fn picked(p: &'v Picked, text: &'v str) -> Option<Self> {
        Some(match p {
            Picked::Str(span) => Val::Str(text.get(span.clone())?),
            Picked::Uint(n) => Val::Uint(*n),
            Picked::Bool(b) => Val::Bool(*b),
            Picked::Null => Val::Null,
            Picked::Json(v) => Val::of(v),
        })
    }

    /// The value as `serde_json` reads it.
    #[cfg(test)]
    fn to_value(self) -> Value {
        match self {
            Val::Str(s) => Value::String(s.into()),
            Val::Uint(n) => n.into(),
            Val::Bool(b) => b.into(),
            Val::Null => Value::Null,
            Val::Json(v) => v.clone(),
        }
    }
}

/// What a filter's fields start from: an event's whole JSON form, or the values of the
/// top-level fields the filter names (see [`Filter::roots`]), picked from `text`.
enum Root<'v> {
    Whole(&'v Value),
    Named {
        names: &'v [String],
        picked: &'v [Option<Picked>],
        text: &'v str,
    },
    /// Each of `names` read from the event by [`direct`].
    Direct {
        names: &'v [String],
        vals: &'v [Option<Val<'v>>],
    },
}

/// Fields a filter names at most for [`Root::Direct`].
const MAX_DIRECT: usize = 4;

/// A top-level field read straight from the event, for the kinds and fields that have it here
/// (the commonest in filters and `-T fields`): the value the event's JSON form gives, as
/// [`Val::of`] reads it. `None` for the others, which are read from that form. The fuzz
/// targets and `tests/summary.rs` check filters decided this way against the whole JSON form.
fn direct<'v>(event: &'v Event, name: &str) -> Option<Val<'v>> {
    let text = |t: Option<&'v str>| t.map_or(Val::Null, Val::Str);
    let count = |n: Option<u64>| n.map_or(Val::Null, Val::Uint);
    Some(match event {
        Event::Frame(f) => {
            let h = &f.header;
            match name {
                "event" => Val::Str("frame"),
                "packet" => Val::Uint(f.origin.packet),
                "conn" => Val::Uint(f.origin.conn),
                "stream" => Val::Uint(u64::from(h.stream)),
                "type" => Val::Str(h.kind.name()),
                "type_code" => Val::Uint(u64::from(h.kind.code())),
                "flags" => Val::Uint(u64::from(h.flags)),
                "length" => Val::Uint(u64::from(h.length)),
                _ => return None,
            }
        }
        Event::Message(m) => {
            let d = &m.decoded;
            match name {
                "event" => Val::Str("message"),
                "packet" => Val::Uint(m.origin.packet),
                "conn" => Val::Uint(m.origin.conn),
                "stream" => Val::Uint(u64::from(m.stream)),
                "path" => text(m.path.as_deref()),
                "dir" => Val::Str(m.side.as_str()),
                "index" => Val::Uint(m.index as u64),
                "compressed" => Val::Bool(d.compressed),
                "encoding" => text(d.encoding.as_deref()),
                "length" => Val::Uint(u64::from(d.length)),
                "type" => text(d.type_name.as_deref()),
                _ => return None,
            }
        }
        Event::Call(c) => match name {
            "event" => Val::Str("call"),
            "conn" => Val::Uint(c.conn),
            "stream" => Val::Uint(u64::from(c.stream)),
            "status" => count(c.status().map(u64::from)),
            "grpc_status" => count(c.grpc_status().map(u64::from)),
            _ => return None,
        },
        _ => return None,
    })
}

impl<'v> Root<'v> {
    /// The top-level field `name`.
    fn get(&self, name: &str) -> Option<Val<'v>> {
        match *self {
            Root::Whole(v) => v.get(name).map(Val::of),
            Root::Named {
                names,
                picked,
                text,
            } => {
                let i = names.iter().position(|n| n == name)?;
                Val::picked(picked.get(i)?.as_ref()?, text)
            }
            Root::Direct { names, vals } => {
                let i = names.iter().position(|n| n == name)?;
                *vals.get(i)?
            }
        }
    }
}

fn eval(e: &Expr, v: &Root<'_>) -> bool {
    match e {
        Expr::Or(a, b) => eval(a, v) || eval(b, v),
        Expr::And(a, b) => eval(a, v) && eval(b, v),
        Expr::Not(a) => !eval(a, v),
        Expr::Present(f) => values(v, f)
            .as_slice()
            .iter()
            .any(|x| !matches!(x, Val::Null | Val::Bool(false))),
        Expr::Compare(f, Op::Ne, lit) => {
            let values = values(v, f);
            let values = values.as_slice();
            !values.is_empty() && !values.iter().any(|x| compare(*x, Op::Eq, lit))
        }
        Expr::Compare(f, op, lit) => values(v, f)
            .as_slice()
            .iter()
            .any(|x| compare(*x, *op, lit)),
    }
}

/// The values of a field: most fields are one top-level value, found without a list.
enum Values<'v> {
    One(Option<Val<'v>>),
    Many(Vec<Val<'v>>),
}

impl<'v> Values<'v> {
    fn as_slice(&self) -> &[Val<'v>] {
        match self {
            Values::One(v) => v.as_slice(),
            Values::Many(v) => v,
        }
    }
}

fn values<'v>(root: &Root<'v>, field: &Field) -> Values<'v> {
    match root.get(&field.root) {
        one if field.path.is_empty() && !matches!(one, Some(Val::Json(Value::Array(_)))) => {
            Values::One(one)
        }
        _ => Values::Many(resolve(root, field)),
    }
}

/// A header list is an array of `[name, value]` pairs.
fn as_pair(v: &Value) -> Option<(&str, &Value)> {
    match v.as_array()?.as_slice() {
        [Value::String(n), value] => Some((n, value)),
        _ => None,
    }
}

/// The values a field names in `root`, lists flattened.
fn resolve<'v>(root: &Root<'v>, field: &Field) -> Vec<Val<'v>> {
    let start = match root.get(&field.root) {
        Some(Val::Json(v)) => v,
        // A string, a count or a word has no fields below it.
        Some(scalar) if field.path.is_empty() => return vec![scalar],
        _ => return Vec::new(),
    };
    let mut current: Vec<&Value> = vec![start];
    for name in &field.path {
        let mut next = Vec::new();
        for v in current {
            match v {
                Value::Object(map) => next.extend(map.get(name.as_str())),
                Value::Array(items) if items.iter().all(|i| as_pair(i).is_some()) => next.extend(
                    items
                        .iter()
                        .filter_map(as_pair)
                        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, value)| value),
                ),
                Value::Array(items) => match name.parse::<usize>() {
                    Ok(i) => next.extend(items.get(i)),
                    Err(_) => next.extend(items.iter().filter_map(|i| i.get(name.as_str()))),
                },
                _ => {}
            }
        }
        current = next;
    }
    let mut out = Vec::with_capacity(current.len());
    for v in current {
        match v {
            Value::Array(items) if !items.iter().any(|i| as_pair(i).is_some()) => {
                out.extend(items.iter().map(Val::of))
            }
            _ => out.push(Val::of(v)),
        }
    }
    out
}

fn compare(v: Val<'_>, op: Op, lit: &Literal) -> bool {
    use std::cmp::Ordering;
    let ordered = |o: Option<Ordering>| match (op, o) {
        (_, None) => false,
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    };
    let number = |v: Val<'_>| match v {
        Val::Uint(n) => Some(n as f64),
        Val::Json(Value::Number(x)) => x.as_f64(),
        _ => None,
    };
    match (lit, op) {
        (Literal::Pattern(re), _) => text_of(v).is_some_and(|t| re.is_match(&t)),
        (_, Op::Contains) => {
            let needle: std::borrow::Cow<'_, str> = match lit {
                Literal::Text(s) => s.as_str().into(),
                Literal::Num(n) => number_text(*n).into(),
                Literal::Bool(b) => b.to_string().into(),
                Literal::Null | Literal::Pattern(_) => return false,
            };
            text_of(v).is_some_and(|t| t.contains(needle.as_ref()))
        }
        (Literal::Num(n), _) => {
            let x = match v {
                Val::Str(s) => s.trim().parse::<f64>().ok(),
                v => number(v),
            };
            ordered(x.and_then(|x| x.partial_cmp(n)))
        }
        (Literal::Text(s), _) => match v {
            Val::Str(x) => ordered(Some(x.cmp(s.as_str()))),
            Val::Bool(b) => op == Op::Eq && b.to_string() == *s,
            v => match (number(v), s.parse::<f64>()) {
                (Some(x), Ok(n)) => ordered(x.partial_cmp(&n)),
                _ => false,
            },
        },
        (Literal::Bool(b), Op::Eq) => matches!(v, Val::Bool(x) if x == *b),
        (Literal::Null, Op::Eq) => matches!(v, Val::Null),
        _ => false,
    }
}

/// Text to search in: strings as they are, numbers and booleans as written.
fn text_of(v: Val<'_>) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Val::Str(s) => Some(s.into()),
        Val::Uint(n) => Some(n.to_string().into()),
        Val::Bool(b) => Some(b.to_string().into()),
        // An object (a decoded message's `json`) is searched in its JSON text.
        Val::Json(v @ (Value::Number(_) | Value::Object(_))) => Some(v.to_string().into()),
        Val::Null | Val::Json(_) => None,
    }
}

fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Text(String),
    Num(f64),
    Op(&'static str),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Dot,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("{w:?}"),
            Tok::Text(t) => format!("text {t:?}"),
            Tok::Num(n) => format!("number {n}"),
            Tok::Op(o) => format!("'{o}'"),
            Tok::Open => "'('".into(),
            Tok::Close => "')'".into(),
            Tok::OpenBracket => "'['".into(),
            Tok::CloseBracket => "']'".into(),
            Tok::Dot => "'.'".into(),
        }
    }
}

struct Token {
    tok: Tok,
    /// 1-based character position.
    at: usize,
    /// Whitespace came before it (a field's parts are written together).
    spaced: bool,
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '/')
}

fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut spaced = true;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        if c.is_whitespace() {
            spaced = true;
            i += 1;
            continue;
        }
        let (tok, len) = match c {
            '(' => (Tok::Open, 1),
            ')' => (Tok::Close, 1),
            '[' => (Tok::OpenBracket, 1),
            ']' => (Tok::CloseBracket, 1),
            // Inside a field (`a.b`, `deep.0`) a dot separates; elsewhere it may start `.5`.
            '.' if !spaced
                && matches!(
                    out.last().map(|t: &Token| &t.tok),
                    Some(Tok::Word(_) | Tok::CloseBracket | Tok::Num(_))
                ) =>
            {
                (Tok::Dot, 1)
            }
            '.' if !chars.get(i + 1).is_some_and(char::is_ascii_digit) => (Tok::Dot, 1),
            '"' | '\'' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(FilterError {
                                at,
                                message: "text not closed".into(),
                            })
                        }
                        Some(&q) if q == c => break,
                        Some('\\') if chars.get(j + 1).is_some() => {
                            s.push(chars[j + 1]);
                            j += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                (Tok::Text(s), j + 1 - i)
            }
            _ => match (c, chars.get(i + 1)) {
                ('=', Some('=')) => (Tok::Op("=="), 2),
                ('!', Some('=')) => (Tok::Op("!="), 2),
                ('<', Some('=')) => (Tok::Op("<="), 2),
                ('>', Some('=')) => (Tok::Op(">="), 2),
                ('&', Some('&')) => (Tok::Op("&&"), 2),
                ('|', Some('|')) => (Tok::Op("||"), 2),
                _ => match c {
                    '<' => (Tok::Op("<"), 1),
                    '>' => (Tok::Op(">"), 1),
                    '!' => (Tok::Op("!"), 1),
                    '~' => (Tok::Op("~"), 1),
                    '=' => (Tok::Op("=="), 1),
                    c if c.is_ascii_digit() || c == '.' || c == '-' => {
                        // After a field's dot only an index: `deep.0.x` is three parts.
                        let index = matches!(out.last().map(|t: &Token| &t.tok), Some(Tok::Dot));
                        let mut j = i;
                        while j < chars.len()
                            && (chars[j].is_ascii_alphanumeric()
                                || (!index && matches!(chars[j], '.' | '-' | '+')))
                        {
                            j += 1;
                        }
                        let word: String = chars[i..j].iter().collect();
                        match word.parse::<f64>() {
                            Ok(n) if n.is_finite() => (Tok::Num(n), j - i),
                            // `-1x` and the like: a bare word.
                            _ => (Tok::Word(word), j - i),
                        }
                    }
                    c if is_word(c) => {
                        let mut j = i;
                        while j < chars.len() && is_word(chars[j]) {
                            j += 1;
                        }
                        (Tok::Word(chars[i..j].iter().collect()), j - i)
                    }
                    _ => {
                        return Err(FilterError {
                            at,
                            message: format!("unexpected {c:?}"),
                        })
                    }
                },
            },
        };
        out.push(Token { tok, at, spaced });
        spaced = false;
        i += len;
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Position just past the text, for "expected ... at the end".
    end: usize,
    depth: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Parser, FilterError> {
        Ok(Parser {
            tokens: lex(text)?,
            at: 0,
            end: text.chars().count() + 1,
            depth: 0,
        })
    }

    /// An error if tokens are left after what was parsed.
    fn end_of_text(&self) -> Result<(), FilterError> {
        match self.tokens.get(self.at) {
            Some(t) => Err(self.error_at(t.at, format!("unexpected {}", t.tok.describe()))),
            None => Ok(()),
        }
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |t| t.at)
    }

    fn error_at(&self, at: usize, message: String) -> FilterError {
        FilterError { at, message }
    }

    fn expected(&self, what: &str) -> FilterError {
        let found = match self.tokens.get(self.at) {
            Some(t) => t.tok.describe(),
            None => "the end".into(),
        };
        self.error_at(self.pos(), format!("expected {what}, found {found}"))
    }

    fn keyword(&mut self, words: &[&str], ops: &[&str]) -> bool {
        let hit = match self.peek() {
            Some(Tok::Word(w)) => words.iter().any(|k| w.eq_ignore_ascii_case(k)),
            Some(Tok::Op(o)) => ops.contains(o),
            _ => false,
        };
        if hit {
            self.at += 1;
        }
        hit
    }

    fn nested(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(self.pos(), "nested too deeply".into()));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.keyword(&["or"], &["||"]) {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.not()?;
        while self.keyword(&["and"], &["&&"]) {
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, FilterError> {
        if self.keyword(&["not"], &["!"]) {
            self.nested()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        if self.peek() == Some(&Tok::Open) {
            self.at += 1;
            self.nested()?;
            let inner = self.or()?;
            self.depth -= 1;
            if self.peek() != Some(&Tok::Close) {
                return Err(self.expected("')'"));
            }
            self.at += 1;
            return Ok(inner);
        }
        let field = self.field()?;
        let op = match self.peek() {
            Some(Tok::Op("==")) => Op::Eq,
            Some(Tok::Op("!=")) => Op::Ne,
            Some(Tok::Op("<")) => Op::Lt,
            Some(Tok::Op("<=")) => Op::Le,
            Some(Tok::Op(">")) => Op::Gt,
            Some(Tok::Op(">=")) => Op::Ge,
            Some(Tok::Op("~")) => Op::Matches,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("contains") => Op::Contains,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("matches") => Op::Matches,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("eq") => Op::Eq,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("ne") => Op::Ne,
            _ => return Ok(Expr::Present(field)),
        };
        self.at += 1;
        let value_at = self.pos();
        let lit = match self.tokens.get(self.at).map(|t| t.tok.clone()) {
            Some(Tok::Num(n)) => Literal::Num(n),
            Some(Tok::Text(s)) => Literal::Text(s),
            Some(Tok::Word(w)) => match w.as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "null" => Literal::Null,
                _ => Literal::Text(w),
            },
            _ => return Err(self.expected("a value (a number, \"text\", true, false or null)")),
        };
        self.at += 1;
        let lit = match (op, lit) {
            (Op::Matches, Literal::Text(s)) => {
                Literal::Pattern(Regex::new(&s).map_err(|e| {
                    self.error_at(value_at, format!("not a regular expression: {e}"))
                })?)
            }
            (Op::Matches, _) => {
                return Err(self.error_at(value_at, "matches takes a \"pattern\"".into()))
            }
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Literal::Bool(_) | Literal::Null) => {
                return Err(self.error_at(
                    value_at,
                    "only == and != compare with true, false or null".into(),
                ))
            }
            (_, lit) => lit,
        };
        Ok(Expr::Compare(field, op, lit))
    }

    fn field(&mut self) -> Result<Field, FilterError> {
        let mut path = Vec::new();
        let root = match self.peek() {
            Some(Tok::Word(w))
                if !["and", "or", "not", "contains", "matches"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                let w = w.clone();
                self.at += 1;
                w
            }
            _ => return Err(self.expected("a field name (as in the JSON Lines output)")),
        };
        // Parts are written together: `a.b["c"]`, no spaces.
        while let Some(t) = self.tokens.get(self.at).filter(|t| !t.spaced) {
            match t.tok {
                Tok::Dot => {
                    self.at += 1;
                    match self.tokens.get(self.at).map(|t| (&t.tok, t.spaced)) {
                        Some((Tok::Word(w), false)) => path.push(w.clone()),
                        Some((Tok::Num(n), false)) if n.fract() == 0.0 && *n >= 0.0 => {
                            path.push(number_text(*n))
                        }
                        _ => return Err(self.expected("a name after '.'")),
                    }
                    self.at += 1;
                }
                Tok::OpenBracket => {
                    self.at += 1;
                    let name = match self.peek() {
                        Some(Tok::Text(s)) | Some(Tok::Word(s)) => s.clone(),
                        Some(Tok::Num(n)) if n.fract() == 0.0 && *n >= 0.0 => number_text(*n),
                        _ => return Err(self.expected("a \"name\" inside [ ]")),
                    };
                    self.at += 1;
                    if self.peek() != Some(&Tok::CloseBracket) {
                        return Err(self.expected("']'"));
                    }
                    self.at += 1;
                    path.push(name);
                }
                _ => break,
            }
        }
        Ok(Field { root, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: &str, v: &Value) -> bool {
        Filter::parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .matches_json(v)
    }

    fn call() -> Value {
        json!({
            "event": "call", "conn": 3, "stream": 5, "path": "/grpc.health.v1.Health/Check",
            "grpc_status": 14, "grpc_status_name": "UNAVAILABLE", "grpc_message": null,
            "duration": 0.25, "pushed": false, "reset_by": "client",
            "request_headers": [[":path", "/grpc.health.v1.Health/Check"], ["user-agent", "grpc-go/1.64"], ["x-id", "a"], ["X-Id", "b"]],
        })
    }

    /// `event`, and fields a kind of event never has, decide a filter for the whole kind.
    #[test]
    fn kinds_of_event_a_filter_cannot_match() {
        let f = |t: &str| Filter::parse(t).unwrap();
        let kinds = |t: &str| {
            let f = f(t);
            (f.may_show_frames(), f.may_show_messages(), f.by_kind)
        };
        // By kind: frame, message, call, gap, error, connection.
        let (t, f, u) = (Some(true), Some(false), None);
        assert_eq!(
            kinds("grpc_status != 0"),
            (false, false, [f, f, u, f, f, f])
        );
        assert_eq!(
            kinds("path contains Watch"),
            (false, true, [f, u, u, f, f, f])
        );
        assert_eq!(kinds("type == DATA"), (true, true, [u, u, f, f, f, f]));
        assert_eq!(kinds("not grpc_status"), (true, true, [t, t, u, t, t, t]));
        assert_eq!(
            kinds("event == call or type == GOAWAY"),
            (true, true, [u, u, t, f, f, f])
        );
        assert_eq!(kinds("event != frame and flags"), (false, false, [f; 6]));
        assert_eq!(kinds("bytes > 10"), (false, false, [f, f, f, u, f, f]));
        assert_eq!(kinds("end == evicted"), (false, false, [f, f, u, f, f, u]));
    }

    /// Each of tshark's names is told a field events have.
    #[test]
    fn tshark_names_lead_to_fields_events_have() {
        for (theirs, ours) in TSHARK_NAMES {
            assert_eq!(tshark_equivalent(theirs), Some(Some(*ours)));
            let field = ours.split([' ', '.']).next().unwrap();
            assert!(keys::is_event_key(field), "{theirs}: {ours}");
        }
        assert_eq!(tshark_equivalent("http2.nope"), Some(None));
        assert_eq!(tshark_equivalent("stream"), None);
        assert_eq!(tshark_equivalent("headers.grpc-status"), None);
    }

    #[test]
    fn fields_no_event_has_are_found_with_a_suggestion() {
        let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            unknown_field(&names(&["event", "grpc_status", "tls"])),
            None
        );
        assert_eq!(
            unknown_field(&names(&["path", "grpc_stauts"])),
            Some(("grpc_stauts", Some("grpc_status")))
        );
        assert_eq!(
            unknown_field(&names(&["strem"])),
            Some(("strem", Some("stream")))
        );
        assert_eq!(unknown_field(&names(&["zzz"])), Some(("zzz", None)));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn comparisons_on_numbers_text_and_lists() {
        let c = call();
        assert!(m("grpc_status != 0", &c));
        assert!(m("grpc_status == 14 and duration > 0.1", &c));
        assert!(!m("grpc_status == 0 || duration < 0.1", &c));
        assert!(m("grpc_status_name == UNAVAILABLE", &c));
        assert!(m("path contains \"Health\"", &c));
        assert!(m("path ~ '^/grpc\\.health\\.'", &c));
        assert!(m("path matches \"Check$\"", &c));
        assert!(m("request_headers.user-agent contains grpc-go", &c));
        assert!(m(
            "request_headers[\":path\"] == \"/grpc.health.v1.Health/Check\"",
            &c
        ));
        // Several headers of a name: any matches; != needs all to differ.
        assert!(m("request_headers.x-id == b", &c));
        assert!(!m("request_headers.x-id != b", &c));
        assert!(m("request_headers.x-id != c", &c));
        assert!(m("stream >= 5 && stream <= 5 && conn eq 3", &c));
        assert!(m(
            "(grpc_status == 0 or grpc_status == 14) and not pushed",
            &c
        ));
        assert!(m("!(event == frame)", &c));
    }

    #[test]
    fn missing_fields_and_presence() {
        let c = call();
        // A field the event lacks: every comparison is false, != too.
        assert!(!m("error_code == 8", &c));
        assert!(!m("error_code != 8", &c));
        assert!(m("not error_code", &c));
        assert!(m("reset_by", &c));
        assert!(!m("grpc_message", &c));
        assert!(!m("pushed", &c));
        assert!(m("grpc_message == null", &c));
        let frame = json!({"event": "frame", "type": "HEADERS", "flag_names": ["END_STREAM", "END_HEADERS"]});
        assert!(m("flag_names == END_STREAM", &frame));
        assert!(!m("flag_names == PADDED", &frame));
        assert!(m("flag_names contains STREAM", &frame));
        let msg = json!({"event": "message", "json": {"status": "SERVING", "n": {"deep": [1, 2]}}});
        assert!(m("json.status == SERVING", &msg));
        assert!(m("json.n.deep == 2", &msg));
        assert!(m("json.n.deep.0 == 1", &msg));
        assert!(m("json contains SERVING", &msg));
    }

    proptest::proptest! {
        /// Any text parses or is refused with a position inside it (or just past it), and what
        /// parses evaluates: no panic either way.
        #[test]
        fn any_text_parses_or_is_refused(text in "[a-z_.:\\[\\]()!=<>~&|'\" 0-9-]{0,40}") {
            match Filter::parse(&text) {
                Ok(f) => {
                    f.matches_json(&call());
                }
                Err(e) => proptest::prop_assert!(e.at >= 1 && e.at <= text.chars().count() + 1),
            }
        }
    }

    #[test]
    fn errors_say_where() {
        let e = |f: &str| Filter::parse(f).unwrap_err();
        assert_eq!(e("grpc_status ==").at, 15);
        assert!(e("grpc_status ==").message.contains("expected a value"));
        assert_eq!(e("a == 1 b").at, 8);
        assert!(e("(a == 1").message.contains("')'"));
        assert!(e("path ~ '('").message.contains("regular expression"));
        assert!(e("a < true").message.contains("only =="));
        assert!(e("a == \"x").message.contains("not closed"));
        assert!(e("a == $").message.contains("unexpected"));
        assert!(e("").message.contains("field name"));
        assert!(e(&"(".repeat(100)).message.contains("nested"));
        assert!(e(&"!".repeat(100)).message.contains("nested"));
    }
}

#[cfg(test)]
mod pick_tests {
    use super::*;
    use proptest::prelude::*;

    /// The reading `pick` replaced, kept as the reference it must agree with.
    fn pick_by_serde(text: &[u8], names: &[String]) -> Option<Vec<Option<Value>>> {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(text) else {
            return None;
        };
        Some(names.iter().map(|n| map.get(n).cloned()).collect())
    }

    fn picked(text: &[u8], names: &[String]) -> Option<Vec<Option<Value>>> {
        let text = std::str::from_utf8(text).ok()?;
        let mut out = vec![Some(Picked::Null); 3];
        pick(text, names, &mut out).then_some(())?;
        Some(out.iter().map(|p| as_value(p.as_ref(), text)).collect())
    }

    fn as_value(p: Option<&Picked>, text: &str) -> Option<Value> {
        Some(Val::picked(p?, text).expect("within the text").to_value())
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
            "[a-z\"\\\\{}\\[\\],:]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-z_]{1,6}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_serde(
            fields in prop::collection::vec(("[a-z_]{1,6}", any_json()), 0..6),
            extra in "[a-z_]{1,6}",
            pretty in any::<bool>(),
        ) {
            let object: serde_json::Map<String, Value> = fields.into_iter().collect();
            let mut names: Vec<String> = object.keys().cloned().collect();
            names.push(extra);
            let value = Value::Object(object);
            let text = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            prop_assert_eq!(picked(&text, &names), pick_by_serde(&text, &names));
        }

        /// Damaged text: never a panic, and never values serde would not read.
        #[test]
        fn damaged_text_is_not_misread(
            text in prop::collection::vec(
                prop::sample::select(b"{}[]\",:\\ ab01-.e\xc3\xa9".to_vec()),
                0..40,
            ),
        ) {
            let names = vec!["a".to_string(), "b".to_string()];
            if let Some(values) = picked(&text, &names) {
                prop_assert!(values.iter().flatten().all(|v| serde_json::to_vec(v).is_ok()));
            }
        }
    }

    /// Every top-level field of every frame, message and call of the shipped and public
    /// captures, as the writer writes them for a filter.
    #[test]
    fn agrees_with_serde_on_real_events() {
        let mut dirs = vec![std::path::PathBuf::from("testdata")];
        dirs.push("../shared/captures/public".into());
        let mut seen = 0;
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = path.to_string_lossy().to_string();
                if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
                    continue;
                }
                let Ok(mut reader) = crate::capture::CaptureReader::open(&name) else {
                    continue;
                };
                let mut d = crate::pipeline::Dissector::new(Default::default());
                let mut events: Vec<Event> = Vec::new();
                let _ = reader.for_each_packet(|p| {
                    d.packet(p, &mut events);
                    true
                });
                d.finish(&mut events);
                for event in &events {
                    let kind = match event {
                        Event::Frame(_) => "frame",
                        Event::Message(_) => "message",
                        Event::Call(_) => "call",
                        _ => continue,
                    };
                    let names: Vec<String> = keys::keys_of(kind)
                        .unwrap()
                        .iter()
                        .map(|k| k.to_string())
                        .collect();
                    let mut text = Vec::new();
                    let mut spans = Vec::new();
                    assert!(jsonl::write_event_spans(
                        &mut text, event, &names, &mut spans
                    ));
                    let by_serde = pick_by_serde(&text, &names);
                    let values = picked(&text, &names);
                    assert!(values.is_some(), "{}", String::from_utf8_lossy(&text));
                    assert_eq!(values, by_serde);
                    // Where the writer says it put each value.
                    let text = std::str::from_utf8(&text).unwrap();
                    let at_spans: Vec<Option<Value>> = spans
                        .iter()
                        .map(|span| {
                            let p = picked_value(text, span.clone()?).expect("a value");
                            as_value(Some(&p), text)
                        })
                        .collect();
                    assert_eq!(Some(at_spans), by_serde);
                    seen += 1;
                }
            }
        }
        assert!(seen > 1000, "{seen} events");
    }
}
