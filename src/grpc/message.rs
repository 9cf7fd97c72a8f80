//! From a raw length-prefixed message to what a person wants to see: decompressed, decoded with
//! the method's schema as JSON, or schema-less as a field tree; reflection responses feed the
//! schemas; gRPC-Web trailer frames become trailers.

use base64::Engine;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value as PValue};
use serde::Serialize;
use serde_json::Value;

use std::ops::Range;
use std::sync::Arc;

use super::compression::decompress;
use super::deframe::{Body, RawMessage, FLAG_COMPRESSED, FLAG_TRAILERS};
use super::memo::Remembered;
use super::schema::Schemas;
use super::{wire, Bodies, Flavor, GrpcConfig, GrpcStream, Side};

/// A decoded message, ready for an event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub compressed: bool,
    pub encoding: Option<String>,
    /// Body length from the message prefix (bytes on the wire).
    pub length: u32,
    /// Full name of the message type used, if a schema was found.
    pub type_name: Option<Arc<str>>,
    pub json: Option<Json>,
    /// What is shown of a message no schema decoded.
    pub fields: Option<Schemaless>,
    /// Why the message is not (fully) decoded.
    pub problem: Option<String>,
    /// Schema files this message carries (server reflection), now used for decoding.
    pub harvested: Vec<String>,
    /// The message bytes, decompressed, when [`GrpcConfig::keep_bytes`] asks for them.
    pub bytes: Option<Vec<u8>>,
    /// With `bytes` and `json` from a schema, when [`GrpcConfig::key_spans`] asks: where the
    /// field of each key of `json` lies in `bytes`, by the key's path (`a`, `a.b`, `a[2]`,
    /// `a[2].b`; from a field's first occurrence to the end of its last), for pointing at them
    /// (the TUI's hex pane).
    pub key_spans: Vec<(Box<str>, Range<usize>)>,
}

/// A decoded message's JSON, kept as the compact text serde_json wrote: every output shows that
/// text, and building a tree of `serde_json` values first cost an allocation per field.
#[derive(Debug, Clone)]
pub struct Json(Arc<str>);

impl Json {
    /// `v` as compact JSON text.
    pub fn of<T: Serialize + ?Sized>(v: &T) -> Result<Json, serde_json::Error> {
        thread_local! {
            // serde_json::to_string would start each message at 128 bytes and shrink the
            // result: two allocations where one of the exact size will do.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            serde_json::to_writer(&mut *buf, v)?;
            // serde_json writes UTF-8 only.
            let json = std::str::from_utf8(buf)
                .map(|text| Json(text.into()))
                .map_err(serde::ser::Error::custom);
            // A huge message's room is not kept for the small ones after it.
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            json
        })
    }

    /// A JSON text as it came (a JSON codec's body): checked, and without the whitespace
    /// between its tokens (a JSON Lines line has no line break), so that its keys keep their
    /// order and its numbers their digits.
    pub fn compacted(text: &[u8]) -> Result<Json, serde_json::Error> {
        serde_json::from_slice::<serde::de::IgnoredAny>(text)?;
        // Outside strings a valid text is ASCII; inside, skipping a string does not check it.
        let text = std::str::from_utf8(text).map_err(serde::de::Error::custom)?;
        let out: String = json_chars(text)
            .filter(|&(c, quoted)| quoted || !matches!(c, ' ' | '\t' | '\n' | '\r'))
            .map(|(c, _)| c)
            .collect();
        Ok(Json(out.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text parsed, for looking inside (a field's value, pretty printing).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.as_str()).unwrap_or(Value::Null)
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The characters of a JSON text, each with whether it belongs to a string (its quotes
/// included): what lies between tokens can then be told from what a string holds.
pub fn json_chars(text: &str) -> impl Iterator<Item = (char, bool)> + '_ {
    let (mut in_string, mut escaped) = (false, false);
    text.chars().map(move |c| {
        let quoted = in_string || c == '"';
        match c {
            _ if !in_string => in_string = c == '"',
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => in_string = false,
            _ => {}
        }
        (c, quoted)
    })
}

/// What is shown of a message that no schema decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Schemaless {
    /// Its fields, read without a schema.
    Fields(Vec<wire::Node>),
    /// Bytes that could not be read as a message (compressed without a known encoding, or not
    /// decompressible), shown as hex.
    Bytes(Vec<u8>),
    /// A JSON body that is not valid JSON, as text.
    Text(String),
}

pub enum Outcome {
    Message(Decoded),
    /// A gRPC-Web trailer frame: header lines, not a message.
    WebTrailers(Vec<(Vec<u8>, Vec<u8>)>),
}

/// Decodes one message of a stream.
pub fn decode(
    raw: &RawMessage<'_>,
    stream: &GrpcStream,
    side: Side,
    path: Option<&str>,
    schemas: &mut Schemas,
    cfg: &GrpcConfig,
) -> Outcome {
    let web = matches!(stream.flavor, Flavor::Web | Flavor::WebText);
    if web && raw.flags & FLAG_TRAILERS != 0 {
        if let Some(body) = raw.body.bytes() {
            return Outcome::WebTrailers(parse_web_trailers(body));
        }
    }
    let compressed = raw.flags & FLAG_COMPRESSED != 0;
    let mut d = Decoded {
        compressed,
        encoding: stream.encoding[side as usize].clone(),
        length: raw.length,
        ..Decoded::default()
    };
    let body = match &raw.body {
        Body::Kept(body) => body,
        Body::Missing(n) => {
            d.problem = Some(format!(
                "{n} bytes of this message missing from the capture"
            ));
            return Outcome::Message(d);
        }
        Body::OverCap => {
            d.problem = Some(format!(
                "{} bytes, larger than the message size limit of {} bytes; not decoded",
                raw.length, cfg.max_message_size
            ));
            return Outcome::Message(d);
        }
        // Nothing shown reads it (see `GrpcConfig::reads_bodies`).
        Body::Unread => return Outcome::Message(d),
    };
    // Nothing shown needs the contents (a summary, calls only, statistics): not even
    // decompressed. Server-reflection responses are decoded all the same, for their schemas.
    if !cfg.reads_contents(path) {
        return Outcome::Message(d);
    }
    let plain;
    let bytes: &[u8] = if compressed {
        match d.encoding.as_deref() {
            None | Some("identity") => {
                d.problem = Some("compressed flag set without a grpc-encoding; shown raw".into());
                d.fields = Some(Schemaless::Bytes(body.to_vec()));
                return Outcome::Message(d);
            }
            Some(enc) => match decompress(enc, body, cfg.max_decompressed_size) {
                Ok(v) => {
                    plain = v;
                    &plain
                }
                Err(e) => {
                    d.problem = Some(e.to_string());
                    d.fields = Some(Schemaless::Bytes(body[..body.len().min(4096)].to_vec()));
                    return Outcome::Message(d);
                }
            },
        }
    } else {
        body
    };
    if cfg.keep_bytes {
        d.bytes = Some(bytes.to_vec());
    }
    if cfg.bodies == Bodies::Skip && !is_reflection(path) {
        return Outcome::Message(d);
    }
    // Otherwise decoded for the type and problems, and written out only if shown.
    let show = cfg.bodies == Bodies::Show;
    if stream.json || looks_like_json(bytes) {
        match Json::compacted(bytes) {
            Ok(json) => {
                if !stream.json {
                    d.problem = Some("JSON body under a protobuf content-type".into());
                }
                d.json = show.then_some(json);
                return Outcome::Message(d);
            }
            Err(e) if stream.json => {
                d.problem = Some(format!("not valid JSON: {e}"));
                d.fields =
                    show.then(|| Schemaless::Text(String::from_utf8_lossy(bytes).into_owned()));
                return Outcome::Message(d);
            }
            Err(_) => {}
        }
    }
    let types = path.and_then(|p| schemas.method(p));
    if types.is_none() && path.is_none() {
        match infer(schemas, side, bytes) {
            Inferred::One(types, name) => {
                let desc = match side {
                    Side::Request => types.input,
                    Side::Response => types.output,
                };
                if let Ok((_, json)) = decode_with(&desc, bytes, show) {
                    d.type_name = Some(desc.full_name().into());
                    d.json = json;
                    d.key_spans = key_spans(&desc, &d, bytes, cfg);
                    d.problem = Some(format!("no :path in the capture; decoded as {name}, the only loaded method whose type fits"));
                    return Outcome::Message(d);
                }
            }
            Inferred::Many(names) => {
                d.problem = Some(format!(
                    "no :path in the capture; several loaded methods fit: {}",
                    names.join(", ")
                ));
            }
            Inferred::None => {}
        }
    }
    match types {
        Some(t) => {
            let desc = match side {
                Side::Request => t.input,
                Side::Response => t.output,
            };
            // Reflection responses are decoded for their schemas each time; key spans are
            // not remembered.
            let memo = !cfg.keep_bytes && !is_reflection(path);
            if memo {
                let found = schemas.memo.get(&desc, bytes);
                if let Some(found) = found.filter(|f| f.json.is_some() || !show) {
                    d.type_name = Some(found.type_name);
                    d.json = found.json.filter(|_| show);
                    return Outcome::Message(d);
                }
            }
            match decode_with(&desc, bytes, show) {
                Ok((msg, json)) => {
                    let type_name: Arc<str> = desc.full_name().into();
                    if memo {
                        let found = Remembered {
                            type_name: type_name.clone(),
                            json: json.clone(),
                        };
                        schemas.memo.put(&desc, bytes, &found);
                    }
                    d.type_name = Some(type_name);
                    d.json = json;
                    d.key_spans = key_spans(&desc, &d, bytes, cfg);
                    if side == Side::Response && is_reflection(path) {
                        d.harvested = schemas.harvest(&descriptor_files(&msg));
                    }
                }
                Err(e) => {
                    d.problem = Some(format!("does not decode as {}: {e}", desc.full_name()));
                    d.fields = show.then(|| Schemaless::Fields(wire::decode_raw(bytes)));
                }
            }
        }
        None => d.fields = show.then(|| Schemaless::Fields(wire::decode_raw(bytes))),
    }
    Outcome::Message(d)
}

/// [`Decoded::key_spans`], when the bytes are kept and the JSON is shown.
fn key_spans(
    desc: &MessageDescriptor,
    d: &Decoded,
    bytes: &[u8],
    cfg: &GrpcConfig,
) -> Vec<(Box<str>, Range<usize>)> {
    let mut out = Vec::new();
    if !(cfg.keep_bytes && cfg.key_spans) || d.json.is_none() {
        return out;
    }
    let mut budget = KEY_SPANS_MAX;
    note_key_spans(desc, bytes, 0, "", 0, &mut budget, &mut out);
    out
}

/// Key spans noted per message at most: a message of many fields, its schema perhaps from the
/// capture's reflection, stays cheap.
const KEY_SPANS_MAX: usize = 50_000;

/// Notes where the fields of `bytes` (a `desc` at `base` in the message) lie, under their JSON
/// paths below `prefix`: `a.b` for a field of a nested message, `a[2]` for the third element of
/// a repeated message field and `a[2].b` for a field in it. A field that comes several times
/// spans from its first occurrence to the end of its last.
fn note_key_spans(
    desc: &MessageDescriptor,
    bytes: &[u8],
    base: usize,
    prefix: &str,
    depth: usize,
    budget: &mut usize,
    out: &mut Vec<(Box<str>, Range<usize>)>,
) {
    // By field number: where its path is in `out`, and how many times it came.
    let mut seen: std::collections::HashMap<u64, (usize, usize)> = std::collections::HashMap::new();
    for f in wire::top_level(bytes) {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let span = base + f.span.start..base + f.span.end;
        let Some(field) = u32::try_from(f.number).ok().and_then(|n| desc.get_field(n)) else {
            continue;
        };
        let (index, occurrence) = match seen.get_mut(&f.number) {
            Some((i, count)) => {
                out[*i].1.end = span.end;
                *count += 1;
                (*i, *count - 1)
            }
            None => {
                let path = match prefix {
                    "" => field.json_name().to_string(),
                    _ => format!("{prefix}.{}", field.json_name()),
                };
                seen.insert(f.number, (out.len(), 1));
                out.push((path.into(), span.clone()));
                (out.len() - 1, 0)
            }
        };
        // A nested message's own fields. A map is not walked (its JSON keys are the map's);
        // the fields of well-known types, which JSON writes in forms of their own, find no
        // line to point from and cost only their budget.
        let Some(body) = f.body else {
            continue;
        };
        let prost_reflect::Kind::Message(inner) = field.kind() else {
            continue;
        };
        if depth >= wire::MAX_DEPTH || field.is_map() {
            continue;
        }
        let key = out[index].0.to_string();
        let path = if field.is_list() {
            let element = format!("{key}[{occurrence}]");
            out.push((element.clone().into(), span));
            element
        } else {
            key
        };
        let inner_bytes = &bytes[body.clone()];
        note_key_spans(
            &inner,
            inner_bytes,
            base + body.start,
            &path,
            depth + 1,
            budget,
            out,
        );
    }
}

enum Inferred {
    One(super::schema::MethodTypes, String),
    Many(Vec<String>),
    None,
}

/// Tries every loaded method's type for this side: a clean decode (every field known) of a
/// non-empty message is a fit. One message type fitting (whatever the number of methods using it)
/// is an answer; several are listed.
fn infer(schemas: &Schemas, side: Side, bytes: &[u8]) -> Inferred {
    if bytes.is_empty() {
        return Inferred::None;
    }
    let mut fits: Vec<(String, super::schema::MethodTypes)> = Vec::new();
    for (path, types) in schemas.user_methods() {
        let desc = match side {
            Side::Request => &types.input,
            Side::Response => &types.output,
        };
        if let Ok(msg) = DynamicMessage::decode(desc.clone(), bytes) {
            if msg.unknown_fields().next().is_none() {
                fits.push((path, types));
            }
        }
    }
    let type_of = |t: &super::schema::MethodTypes| match side {
        Side::Request => t.input.full_name().to_string(),
        Side::Response => t.output.full_name().to_string(),
    };
    let mut kinds: Vec<String> = fits.iter().map(|(_, t)| type_of(t)).collect();
    kinds.sort();
    kinds.dedup();
    match (kinds.len(), fits.into_iter().next()) {
        (1, Some((path, types))) => Inferred::One(types, path),
        (0, _) | (_, None) => Inferred::None,
        _ => Inferred::Many(kinds),
    }
}

/// `bytes` decoded as a `desc`, and its JSON when `show` asks for it.
fn decode_with(
    desc: &MessageDescriptor,
    bytes: &[u8],
    show: bool,
) -> Result<(DynamicMessage, Option<Json>), String> {
    let msg = DynamicMessage::decode(desc.clone(), bytes).map_err(|e| e.to_string())?;
    if !show {
        return Ok((msg, None));
    }
    // The canonical JSON mapping refuses some values that decode fine (a Timestamp past year
    // 9999, say); then the message is shown field by field without the well-known-type rules.
    let json = canonical_json(&msg)
        .or_else(|_| Json::of(&PlainJson(&msg)))
        .map_err(|e| e.to_string())?;
    Ok((msg, Some(json)))
}

/// A message in protobuf's canonical JSON mapping, with the entries of its maps (map fields,
/// and `google.protobuf.Struct`) in key order. prost-reflect keeps a map in a `HashMap`, so
/// its serializer wrote the entries in an order that changed from one message to the next.
fn canonical_json(msg: &DynamicMessage) -> Result<Json, serde_json::Error> {
    let json = Json::of(msg)?;
    if !has_unordered_map(msg, 0) {
        return Ok(json);
    }
    use prost_reflect::ReflectMessage;
    let mut tree: Ordered = serde_json::from_str(json.as_str())?;
    sort_maps(&mut tree, &msg.descriptor(), 0);
    Json::of(&tree)
}

/// Nesting followed at most when looking for maps to order (prost-reflect decodes no deeper).
const MAX_MAP_DEPTH: usize = 100;

/// Whether the message holds a map of two entries or more, at any depth.
fn has_unordered_map(msg: &DynamicMessage, depth: usize) -> bool {
    fn value_has(v: &PValue, depth: usize) -> bool {
        match v {
            PValue::Map(m) => m.len() > 1 || m.values().any(|v| value_has(v, depth)),
            PValue::Message(m) => has_unordered_map(m, depth + 1),
            PValue::List(items) => items.iter().any(|v| value_has(v, depth)),
            _ => false,
        }
    }
    depth < MAX_MAP_DEPTH && msg.fields().any(|(_, v)| value_has(v, depth))
}

/// JSON read back with the order of its objects' entries kept (`serde_json::Value` sorts
/// them), to put a message's map entries in order without moving its fields.
enum Ordered {
    Object(Vec<(String, Ordered)>),
    Array(Vec<Ordered>),
    Leaf(Value),
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
                Ok(Ordered::Leaf(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                Ok(Ordered::Leaf(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                Ok(Ordered::Leaf(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Ordered, E> {
                Ok(Ordered::Leaf(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
                Ok(Ordered::Leaf(v.into()))
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Leaf(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = a.next_element()? {
                    items.push(v);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered::Object(entries))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Ordered::Leaf(v) => v.serialize(s),
            Ordered::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Ordered::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Puts the entries of the maps in `v`, the JSON of a `desc`, in key order: numbers by value,
/// strings by their bytes (as `MapKey` orders them).
fn sort_maps(v: &mut Ordered, desc: &MessageDescriptor, depth: usize) {
    if depth >= MAX_MAP_DEPTH {
        return;
    }
    match desc.full_name() {
        // Their JSON is the map (or holds Structs): every object in it is one.
        "google.protobuf.Struct" | "google.protobuf.Value" | "google.protobuf.ListValue" => {
            return sort_objects(v, depth);
        }
        // Written in forms of their own, with no maps of theirs (an Any's packed message is
        // left as it is).
        name if name.starts_with("google.protobuf.") => return,
        _ => {}
    }
    let Ordered::Object(entries) = v else {
        return;
    };
    for (key, value) in entries.iter_mut() {
        let Some(field) = desc.get_field_by_json_name(key) else {
            continue;
        };
        let prost_reflect::Kind::Message(inner) = field.kind() else {
            continue;
        };
        match value {
            Ordered::Object(map) if field.is_map() => {
                let numeric = !matches!(
                    inner.map_entry_key_field().kind(),
                    prost_reflect::Kind::String | prost_reflect::Kind::Bool
                );
                if numeric {
                    map.sort_by_key(|(k, _)| k.parse::<i128>().unwrap_or(i128::MAX));
                } else {
                    map.sort_by(|a, b| a.0.cmp(&b.0));
                }
                if let prost_reflect::Kind::Message(m) = inner.map_entry_value_field().kind() {
                    for (_, v) in map.iter_mut() {
                        sort_maps(v, &m, depth + 1);
                    }
                }
            }
            Ordered::Array(items) => {
                for item in items {
                    sort_maps(item, &inner, depth + 1);
                }
            }
            other => sort_maps(other, &inner, depth + 1),
        }
    }
}

/// Sorts the entries of every object in `v` by key (the JSON of Structs).
fn sort_objects(v: &mut Ordered, depth: usize) {
    if depth >= MAX_MAP_DEPTH {
        return;
    }
    match v {
        Ordered::Object(entries) => {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, v) in entries {
                sort_objects(v, depth + 1);
            }
        }
        Ordered::Array(items) => {
            for item in items {
                sort_objects(item, depth + 1);
            }
        }
        Ordered::Leaf(_) => {}
    }
}

/// A message as JSON without the special forms of well-known types, its fields in the
/// schema's order as the canonical mapping writes them (map entries by key).
struct PlainJson<'a>(&'a DynamicMessage);

impl Serialize for PlainJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (field, value) in self.0.fields() {
            let kind = field.kind();
            map.serialize_entry(field.json_name(), &PlainValue(value, &kind))?;
        }
        map.end()
    }
}

/// A field's value in [`PlainJson`], read with its field's kind (enums by name).
struct PlainValue<'a>(&'a PValue, &'a prost_reflect::Kind);

impl Serialize for PlainValue<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let PlainValue(v, kind) = *self;
        match v {
            PValue::Message(m) => PlainJson(m).serialize(s),
            PValue::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&PlainValue(item, kind))?;
                }
                seq.end()
            }
            PValue::Map(entries) => {
                let value_kind = match kind {
                    prost_reflect::Kind::Message(d) if d.is_map_entry() => {
                        d.map_entry_value_field().kind()
                    }
                    other => other.clone(),
                };
                let mut sorted: Vec<_> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(b.0));
                let mut map = s.serialize_map(Some(sorted.len()))?;
                for (k, v) in sorted {
                    let key = match k {
                        prost_reflect::MapKey::Bool(b) => b.to_string(),
                        prost_reflect::MapKey::I32(n) => n.to_string(),
                        prost_reflect::MapKey::I64(n) => n.to_string(),
                        prost_reflect::MapKey::U32(n) => n.to_string(),
                        prost_reflect::MapKey::U64(n) => n.to_string(),
                        prost_reflect::MapKey::String(s) => s.clone(),
                    };
                    map.serialize_entry(&key, &PlainValue(v, &value_kind))?;
                }
                map.end()
            }
            scalar => plain_scalar(scalar, kind).serialize(s),
        }
    }
}

/// A value that is no message, list or map, as [`PlainJson`] writes it.
fn plain_scalar(v: &PValue, kind: &prost_reflect::Kind) -> Value {
    match v {
        PValue::Bool(b) => (*b).into(),
        PValue::I32(n) => (*n).into(),
        PValue::I64(n) => n.to_string().into(),
        PValue::U32(n) => (*n).into(),
        PValue::U64(n) => n.to_string().into(),
        PValue::F32(f) => serde_json::Number::from_f64(*f as f64)
            .map(Value::Number)
            .unwrap_or_else(|| f.to_string().into()),
        PValue::F64(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or_else(|| f.to_string().into()),
        PValue::String(s) => s.clone().into(),
        PValue::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b).into(),
        PValue::EnumNumber(n) => match kind {
            prost_reflect::Kind::Enum(e) => e
                .get_value(*n)
                .map(|ev| Value::from(ev.name()))
                .unwrap_or_else(|| (*n).into()),
            _ => (*n).into(),
        },
        PValue::Message(_) | PValue::List(_) | PValue::Map(_) => Value::Null,
    }
}

fn looks_like_json(b: &[u8]) -> bool {
    matches!(b.first(), Some(b'{') | Some(b'['))
}

/// The start both reflection methods' paths share, as it begins a `:path` on the wire: plain (an
/// HTTP/1.1 request line, or an HPACK literal left uncoded) and Huffman-coded up to its last whole
/// byte (an HPACK string starts on a byte, so its first bytes do not depend on what follows).
pub fn reflection_path_starts() -> [Vec<u8>; 2] {
    const START: &[u8] = b"/grpc.reflection.v1";
    let mut coded = Vec::new();
    crate::http2::hpack::huffman::encode(START, &mut coded);
    let whole_bits: usize = START
        .iter()
        .map(|&b| crate::http2::hpack::huffman::code_len(b))
        .sum();
    coded.truncate(whole_bits / 8);
    [START.to_vec(), coded]
}

pub(super) fn is_reflection(path: Option<&str>) -> bool {
    matches!(
        path,
        Some("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
            | Some("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    )
}

/// `file_descriptor_response.file_descriptor_proto` of a ServerReflectionResponse.
fn descriptor_files(msg: &DynamicMessage) -> Vec<Vec<u8>> {
    let Some(resp) = msg.get_field_by_name("file_descriptor_response") else {
        return Vec::new();
    };
    let PValue::Message(resp) = resp.as_ref() else {
        return Vec::new();
    };
    let Some(list) = resp.get_field_by_name("file_descriptor_proto") else {
        return Vec::new();
    };
    match list.as_ref() {
        PValue::List(items) => items
            .iter()
            .filter_map(|v| v.as_bytes().map(|b| b.to_vec()))
            .collect(),
        _ => Vec::new(),
    }
}

/// gRPC-Web trailers: HTTP/1-style `name: value` lines.
fn parse_web_trailers(body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    body.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let name = line[..colon].trim_ascii().to_ascii_lowercase();
            let value = line[colon + 1..].trim_ascii().to_vec();
            (!name.is_empty()).then_some((name, value))
        })
        .collect()
}

/// The bytes of a `-bin` metadata value. gRPC sends them in base64 (standard alphabet, padding
/// optional), or, between peers that both set `GRPC_ALLOW_TRUE_BINARY_METADATA` (gRPC C-core
/// does), as a NUL byte followed by the bytes themselves: base64 never holds a NUL.
pub fn decode_bin_header(value: &[u8]) -> Option<Vec<u8>> {
    if let Some((0, bytes)) = value.split_first() {
        return Some(bytes.to_vec());
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    // Several values may be joined with commas.
    let mut out = Vec::new();
    for part in value.split(|&b| b == b',') {
        out.extend(engine.decode(part.trim_ascii()).ok()?);
    }
    Some(out)
}

/// `grpc-status-details-bin` as a `google.rpc.Status` in JSON (its `Any` details decoded where
/// their type is known).
pub fn decode_status_details(value: &[u8], schemas: &Schemas) -> Option<Value> {
    let bytes = decode_bin_header(value)?;
    let desc = schemas.message("google.rpc.Status")?;
    match decode_with(&desc, &bytes, true) {
        Ok((_, json)) => json.map(|j| j.to_value()),
        Err(_) => Some(serde_json::json!({"undecodable": wire::hex(&bytes)})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// `-bin` values in base64 (padded or not, several joined by commas) and as gRPC C-core
    /// sends them between peers that allow it: a NUL, then the bytes, commas and all.
    #[test]
    fn bin_metadata_in_base64_and_as_true_binary() {
        assert_eq!(decode_bin_header(b"AAH+/w"), Some(vec![0, 1, 0xfe, 0xff]));
        assert_eq!(decode_bin_header(b"AAH+/w=="), Some(vec![0, 1, 0xfe, 0xff]));
        assert_eq!(decode_bin_header(b"AQ, Ag"), Some(vec![1, 2]));
        assert_eq!(
            decode_bin_header(b"\0\0\x01,\xfe"),
            Some(vec![0, 1, b',', 0xfe])
        );
        assert_eq!(decode_bin_header(b"\0"), Some(vec![]));
        assert_eq!(decode_bin_header(b"not base64!"), None);
    }

    /// Map entries come in key order (numbers by value), at every depth and in Structs, and
    /// the same on every decode: prost-reflect's maps are `HashMap`s, whose order changed from
    /// one message to the next. Fields keep the schema's order.
    #[test]
    fn map_entries_come_in_key_order() {
        use prost::Message as _;
        use prost_reflect::MapKey;
        let schemas = compiled(
            "maps",
            r#"syntax = "proto3"; package m; import "google/protobuf/struct.proto";
            message Inner { map<string, int32> tags = 1; }
            message M { string zeta = 1; map<string, int32> tags = 2;
                        map<int32, Inner> by_id = 3; repeated Inner list = 4;
                        google.protobuf.Struct meta = 5; int32 alpha = 6; }"#,
        );
        let desc = schemas.message("m.M").unwrap();
        let inner_desc = schemas.message("m.Inner").unwrap();
        let tags = |keys: &[&str]| {
            PValue::Map(
                (keys.iter().enumerate())
                    .map(|(i, k)| (MapKey::String(k.to_string()), PValue::I32(i as i32)))
                    .collect(),
            )
        };
        let inner = |keys: &[&str]| {
            let mut m = DynamicMessage::new(inner_desc.clone());
            m.set_field_by_name("tags", tags(keys));
            PValue::Message(m)
        };
        let mut m = DynamicMessage::new(desc.clone());
        m.set_field_by_name("zeta", PValue::String("z".into()));
        m.set_field_by_name("tags", tags(&["d", "b", "e", "a", "c"]));
        let by_id = [(10, ["y", "x"]), (9, ["q", "p"]), (-1, ["n", "m"])]
            .map(|(k, keys)| (MapKey::I32(k), inner(&keys)));
        m.set_field_by_name("by_id", PValue::Map(by_id.into_iter().collect()));
        m.set_field_by_name("list", PValue::List(vec![inner(&["t", "s", "u"])]));
        let meta: DynamicMessage = DynamicMessage::deserialize(
            schemas.message("google.protobuf.Struct").unwrap(),
            &mut serde_json::Deserializer::from_str(
                r#"{"k2":{"y":1,"x":[{"b":1,"a":2}]},"k1":true}"#,
            ),
        )
        .unwrap();
        m.set_field_by_name("meta", PValue::Message(meta));
        m.set_field_by_name("alpha", PValue::I32(7));
        let bytes = m.encode_to_vec();
        let want = concat!(
            r#"{"zeta":"z","tags":{"a":3,"b":1,"c":4,"d":0,"e":2},"#,
            r#""byId":{"-1":{"tags":{"m":1,"n":0}},"9":{"tags":{"p":1,"q":0}},"10":{"tags":{"x":1,"y":0}}},"#,
            r#""list":[{"tags":{"s":1,"t":0,"u":2}}],"#,
            // A Struct's numbers are doubles, which prost-reflect writes with a fraction.
            r#""meta":{"k1":true,"k2":{"x":[{"a":2.0,"b":1.0}],"y":1.0}},"alpha":7}"#
        );
        for _ in 0..8 {
            let (_, json) = decode_with(&desc, &bytes, true).unwrap();
            assert_eq!(json.unwrap().as_str(), want);
        }
    }

    /// A message the canonical JSON mapping refuses (a Timestamp past year 9999) is written
    /// field by field, still in the schema's order, with map entries by key.
    #[test]
    fn json_past_the_canonical_mapping_keeps_the_schemas_order() {
        use prost::Message as _;
        let schemas = compiled(
            "plain",
            r#"syntax = "proto3"; package p; import "google/protobuf/timestamp.proto";
            message M { string zeta = 1; google.protobuf.Timestamp when = 2;
                        map<string, int32> tags = 3; int32 alpha = 4; }"#,
        );
        let desc = schemas.message("p.M").unwrap();
        let mut ts = DynamicMessage::new(schemas.message("google.protobuf.Timestamp").unwrap());
        ts.set_field_by_name("seconds", PValue::I64(1_000_000_000_000_000));
        let mut m = DynamicMessage::new(desc.clone());
        m.set_field_by_name("zeta", PValue::String("z".into()));
        m.set_field_by_name("when", PValue::Message(ts));
        let tags = [("b", 2), ("a", 1)]
            .map(|(k, v)| (prost_reflect::MapKey::String(k.into()), PValue::I32(v)));
        m.set_field_by_name("tags", PValue::Map(tags.into_iter().collect()));
        m.set_field_by_name("alpha", PValue::I32(7));
        assert!(Json::of(&m).is_err(), "the canonical mapping takes it");
        let (_, json) = decode_with(&desc, &m.encode_to_vec(), true).unwrap();
        assert_eq!(
            json.unwrap().as_str(),
            r#"{"zeta":"z","when":{"seconds":"1000000000000000"},"tags":{"a":1,"b":2},"alpha":7}"#
        );
    }

    /// The key spans of `bytes` read as the bundled type `name`, as the TUI asks for them;
    /// with the descriptor and the decoded message they were asked for.
    #[allow(clippy::type_complexity)]
    fn spans_of(
        name: &str,
        bytes: &[u8],
    ) -> (Vec<(Box<str>, Range<usize>)>, (MessageDescriptor, Decoded)) {
        let desc = Schemas::bundled().message(name).unwrap();
        let d = Decoded {
            json: Json::of(&serde_json::json!({})).ok(),
            ..Decoded::default()
        };
        let cfg = GrpcConfig {
            keep_bytes: true,
            key_spans: true,
            ..GrpcConfig::default()
        };
        (key_spans(&desc, &d, bytes, &cfg), (desc, d))
    }

    /// Schemas with one `.proto` file of this text (named `name.proto`) added to the bundled.
    fn compiled(name: &str, text: &str) -> Schemas {
        let dir = std::env::temp_dir().join(format!("h2scope-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}.proto"));
        std::fs::write(&file, text).unwrap();
        let mut schemas = Schemas::bundled();
        let added = schemas.add_proto_files(&[file], std::slice::from_ref(&dir));
        let _ = std::fs::remove_dir_all(&dir);
        added.unwrap();
        schemas
    }

    /// Keys inside nested messages get their bytes too, by path: a repeated message field as a
    /// whole, each of its elements, and the fields inside each.
    #[test]
    fn nested_json_keys_know_their_fields_bytes() {
        // field_violations { field "a" description "b" } field_violations { field "c" }
        let bytes = [
            0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x0a, 0x03, 0x0a, 0x01, b'c',
        ];
        let (spans, _) = spans_of("google.rpc.BadRequest", &bytes);
        let want: Vec<(Box<str>, Range<usize>)> = [
            ("fieldViolations", 0..13),
            ("fieldViolations[0]", 0..8),
            ("fieldViolations[0].field", 2..5),
            ("fieldViolations[0].description", 5..8),
            ("fieldViolations[1]", 8..13),
            ("fieldViolations[1].field", 10..13),
        ]
        .into_iter()
        .map(|(k, r)| (k.into(), r))
        .collect();
        assert_eq!(spans, want);
    }

    /// Each top-level key of a message's JSON gets the bytes of its field: the JSON name, as the
    /// JSON has it; a repeated field from its first occurrence to the end of its last.
    #[test]
    fn json_keys_know_their_fields_bytes() {
        // stack_entries "a", detail "d", stack_entries "b"
        let bytes = [0x0a, 0x01, b'a', 0x12, 0x01, b'd', 0x0a, 0x01, b'b'];
        let (spans, (desc, d)) = spans_of("google.rpc.DebugInfo", &bytes);
        assert_eq!(
            spans,
            [("stackEntries".into(), 0..9), ("detail".into(), 3..6)]
        );
        // Not unless asked for, and nothing to point into without the bytes.
        let bytes_only = GrpcConfig {
            keep_bytes: true,
            ..GrpcConfig::default()
        };
        assert!(key_spans(&desc, &d, &bytes, &bytes_only).is_empty());
        assert!(key_spans(&desc, &d, &bytes, &GrpcConfig::default()).is_empty());
    }

    #[test]
    fn a_json_body_keeps_its_order_and_digits_without_its_line_breaks() {
        let body = b"{\"b\": 1,\n  \"a\": [1.50, \"x y\\\" \\n\"],\r\n \"n\": 123456789012345678901234567890}\n";
        let json = Json::compacted(body).unwrap();
        assert_eq!(
            json.as_str(),
            r#"{"b":1,"a":[1.50,"x y\" \n"],"n":123456789012345678901234567890}"#
        );
        assert!(Json::compacted(b"{\"a\": 1").is_err());
        assert!(Json::compacted(b"\"\xff\"").is_err());
    }

    fn raw(flags: u8, body: &[u8]) -> RawMessage<'_> {
        RawMessage {
            flags,
            length: body.len() as u32,
            body: Body::Kept(body.into()),
        }
    }

    fn message(o: Outcome) -> Decoded {
        match o {
            Outcome::Message(d) => d,
            Outcome::WebTrailers(_) => panic!("trailers"),
        }
    }

    #[test]
    fn health_check_decodes_with_bundled_schema() {
        let mut s = Schemas::bundled();
        let stream = GrpcStream::new(Flavor::Grpc, false, 1 << 20);
        let cfg = GrpcConfig::default();
        let path = Some("/grpc.health.v1.Health/Check");
        let d = message(decode(
            &raw(0, &[0x0a, 0x03, b'f', b'o', b'o']),
            &stream,
            Side::Request,
            path,
            &mut s,
            &cfg,
        ));
        assert_eq!(
            d.type_name.as_deref(),
            Some("grpc.health.v1.HealthCheckRequest")
        );
        assert_eq!(
            d.json.unwrap().to_value(),
            serde_json::json!({"service": "foo"})
        );
        let d = message(decode(
            &raw(0, &[0x08, 0x01]),
            &stream,
            Side::Response,
            path,
            &mut s,
            &cfg,
        ));
        assert_eq!(
            d.json.unwrap().to_value(),
            serde_json::json!({"status": "SERVING"})
        );
        // Unknown method: schema-less.
        let d = message(decode(
            &raw(0, &[0x08, 0x01]),
            &stream,
            Side::Response,
            Some("/x.Y/Z"),
            &mut s,
            &cfg,
        ));
        assert!(d.json.is_none());
        let Some(Schemaless::Fields(fields)) = d.fields else {
            panic!("no field tree");
        };
        assert!(matches!(
            fields[0],
            wire::Node::Field {
                number: 1,
                value: wire::WireValue::Varint(1),
                ..
            }
        ));
    }

    /// A small message seen again is taken from the memo, as it was decoded the first time;
    /// one whose bytes are kept (the TUI, the HAProxy export) is decoded each time, for its
    /// key spans.
    #[test]
    fn repeated_small_messages_come_from_the_memo() {
        let mut s = Schemas::bundled();
        let stream = GrpcStream::new(Flavor::Grpc, false, 1 << 20);
        let path = Some("/grpc.health.v1.Health/Check");
        let body = [0x0a, 0x03, b'f', b'o', b'o'];
        let decoded = |cfg: &GrpcConfig, s: &mut Schemas| {
            message(decode(&raw(0, &body), &stream, Side::Request, path, s, cfg))
        };
        let desc = s.message("grpc.health.v1.HealthCheckRequest").unwrap();
        let plain = GrpcConfig::default();
        let first = decoded(&plain, &mut s);
        let kept = s.memo.get(&desc, &body).expect("kept in the memo");
        assert_eq!(kept.type_name, first.type_name.clone().unwrap());
        assert_eq!(
            kept.json.map(|j| j.to_value()),
            Some(serde_json::json!({"service": "foo"}))
        );
        // What the memo holds is what comes out: a planted answer shows that it is used.
        let planted = Remembered {
            type_name: "planted".into(),
            json: Some(Json::of(&serde_json::json!({"service": "planted"})).unwrap()),
        };
        s.memo.put(&desc, &body, &planted);
        let again = decoded(&plain, &mut s);
        assert_eq!(again.type_name.as_deref(), Some("planted"));
        assert_eq!(
            again.json.map(|j| j.to_value()),
            Some(serde_json::json!({"service": "planted"}))
        );
        let with_bytes = GrpcConfig {
            keep_bytes: true,
            key_spans: true,
            ..GrpcConfig::default()
        };
        let spanned = decoded(&with_bytes, &mut s);
        assert_eq!(spanned.type_name, first.type_name);
        assert_eq!(
            spanned.json.map(|j| j.to_value()),
            Some(serde_json::json!({"service": "foo"}))
        );
        assert_eq!(spanned.key_spans.len(), 1);
        assert_eq!(spanned.bytes.as_deref(), Some(&body[..]));
    }

    #[test]
    fn checked_bodies_have_their_type_and_problems_but_nothing_shown() {
        let mut s = Schemas::bundled();
        let stream = GrpcStream::new(Flavor::Grpc, false, 1 << 20);
        let mut decoded = |bodies, body: &[u8], path| {
            let cfg = GrpcConfig {
                bodies,
                ..GrpcConfig::default()
            };
            message(decode(
                &raw(0, body),
                &stream,
                Side::Response,
                path,
                &mut s,
                &cfg,
            ))
        };
        let check = Some("/grpc.health.v1.Health/Check");
        // A fit, a misfit (field 1 as bytes, not the enum's varint), and no schema.
        for (body, path) in [
            (&[0x08, 0x01][..], check),
            (&[0x0a, 0x01, 0x00][..], check),
            (&[0x08, 0x01][..], Some("/x.Y/Z")),
        ] {
            let (shown, checked) = (
                decoded(Bodies::Show, body, path),
                decoded(Bodies::Check, body, path),
            );
            assert_eq!(checked.type_name, shown.type_name);
            assert_eq!(checked.problem, shown.problem);
            assert!(shown.json.is_some() || shown.fields.is_some());
            assert!(checked.json.is_none() && checked.fields.is_none());
            let skipped = decoded(Bodies::Skip, body, path);
            assert!(skipped.type_name.is_none() && skipped.problem.is_none());
        }
    }

    #[test]
    fn compressed_messages_and_problems() {
        use std::io::Write;
        let mut s = Schemas::bundled();
        let cfg = GrpcConfig::default();
        let mut stream = GrpcStream::new(Flavor::Grpc, false, 1 << 20);
        let path = Some("/grpc.health.v1.Health/Check");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&[0x08, 0x02]).unwrap();
        let gz = e.finish().unwrap();
        // Flag set, no encoding known: shown raw.
        let d = message(decode(
            &raw(1, &gz),
            &stream,
            Side::Response,
            path,
            &mut s,
            &cfg,
        ));
        assert!(d.problem.is_some() && d.json.is_none());
        stream.encoding[1] = Some("gzip".into());
        let d = message(decode(
            &raw(1, &gz),
            &stream,
            Side::Response,
            path,
            &mut s,
            &cfg,
        ));
        assert_eq!(
            d.json.unwrap().to_value(),
            serde_json::json!({"status": "NOT_SERVING"})
        );
        assert!(d.compressed);
        stream.encoding[1] = Some("br".into());
        let d = message(decode(
            &raw(1, &gz),
            &stream,
            Side::Response,
            path,
            &mut s,
            &cfg,
        ));
        assert!(d.problem.unwrap().contains("not supported"));
    }

    #[test]
    fn grpc_web_trailers_are_not_messages() {
        let mut s = Schemas::bundled();
        let stream = GrpcStream::new(Flavor::Web, false, 1 << 20);
        match decode(
            &raw(0x80, b"grpc-status: 0\r\ngrpc-message: fine\r\n"),
            &stream,
            Side::Response,
            None,
            &mut s,
            &GrpcConfig::default(),
        ) {
            Outcome::WebTrailers(t) => {
                assert_eq!(t[0], (b"grpc-status".to_vec(), b"0".to_vec()));
                assert_eq!(t[1], (b"grpc-message".to_vec(), b"fine".to_vec()));
            }
            Outcome::Message(_) => panic!("message"),
        }
    }

    #[test]
    fn status_details_with_known_any() {
        let s = Schemas::bundled();
        let info = s.message("google.rpc.ErrorInfo").unwrap();
        let mut ei = DynamicMessage::new(info);
        ei.set_field_by_name("reason", PValue::String("QUOTA".into()));
        let any = prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
            value: ei.encode_to_vec(),
        };
        let status = s.message("google.rpc.Status").unwrap();
        let mut st = DynamicMessage::new(status);
        st.set_field_by_name("code", PValue::I32(8));
        st.set_field_by_name("message", PValue::String("slow down".into()));
        let any_msg = DynamicMessage::decode(
            s.message("google.protobuf.Any").unwrap(),
            any.encode_to_vec().as_slice(),
        )
        .unwrap();
        st.set_field_by_name("details", PValue::List(vec![PValue::Message(any_msg)]));
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(st.encode_to_vec());
        let json = decode_status_details(b64.as_bytes(), &s).unwrap();
        assert_eq!(json["code"], 8);
        assert_eq!(json["message"], "slow down");
        assert_eq!(
            json["details"][0]["@type"],
            "type.googleapis.com/google.rpc.ErrorInfo"
        );
        assert_eq!(json["details"][0]["reason"], "QUOTA");
    }
}

#[cfg(test)]
mod props {
    use super::Json;
    use crate::output::jsonl::value_tests::value;
    use proptest::prelude::*;
    use serde_json::Value;

    proptest! {
        /// A body laid out over lines comes out on one line, the same value.
        #[test]
        fn a_pretty_body_is_compacted_to_the_same_value(v in value()) {
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            let json = Json::compacted(pretty.as_bytes()).unwrap();
            prop_assert!(!json.as_str().contains('\n'));
            prop_assert_eq!(json.as_str(), v.to_string());
        }

        /// JSON read back in order and written again is the same text: putting map entries
        /// in order changes nothing else (numbers and escapes included).
        #[test]
        fn ordered_json_writes_back_what_it_read(v in value()) {
            let text = v.to_string();
            let tree: super::Ordered = serde_json::from_str(&text).unwrap();
            let written = Json::of(&tree).unwrap();
            prop_assert_eq!(written.as_str(), text);
        }

        /// Any bytes: an error, or one line of valid JSON.
        #[test]
        fn any_bytes_give_an_error_or_one_line_of_json(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(json) = Json::compacted(&bytes) {
                prop_assert!(!json.as_str().contains(['\n', '\r']));
                prop_assert!(serde_json::from_str::<Value>(json.as_str()).is_ok());
            }
        }
    }
}
