//! HAProxy `mode tcp` health checks for gRPC backends, built from a recorded call.
//!
//! HAProxy's `tcp-check send-binary` replays raw bytes on a fresh connection and `tcp-check
//! expect binary` looks for bytes of the answer. The bytes sent must stand on their own: a client
//! preface, an empty SETTINGS frame, the request HEADERS on stream 1 re-encoded with the static
//! table and literals only (never the capture's bytes, whose dynamic-table references would mean
//! nothing on a new connection), and one DATA frame (split at 16 KiB if needed) with the request
//! message(s), uncompressed.

pub mod check;
pub mod config;

use std::collections::HashMap;

use crate::event::{Event, Sink};
use crate::grpc::message::Json;
use crate::grpc::Side;
use crate::http2::call::{lossless, printable, Call};
use crate::http2::frame::{flags, FrameHeader, FrameType, DEFAULT_MAX_FRAME_SIZE, PREFACE};
use crate::http2::hpack::encode_plain;

pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// Why a call could not be taken from a capture.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("{0}")]
    Capture(#[from] crate::capture::CaptureError),
    /// Nothing matched; `candidates` lists the gRPC calls there are (`--call` lines).
    /// `encrypted` counts the TLS connections left encrypted, where the call may be.
    #[error("no matching gRPC call")]
    NotFound {
        candidates: Vec<String>,
        encrypted: u64,
    },
}

/// Reads a capture (twice: schemas from reflection first) and returns the first gRPC call the
/// selector picks, with its messages' bytes. Calls in TLS connections are found when `tls_keys`
/// (or the capture's own pcapng secrets) decrypt them.
pub fn find_call(
    path: &str,
    selector: &Selector,
    schemas: crate::grpc::schema::Schemas,
    tls_keys: Option<std::sync::Arc<crate::tls::KeyLog>>,
) -> Result<Recorded, FindError> {
    use crate::pipeline::{harvest_schemas, open_capture, Config, Dissector};
    let mut cfg = Config::default();
    cfg.grpc.keep_bytes = true;
    cfg.tls_keys = tls_keys;
    let find = |schemas| -> Result<Recorded, FindError> {
        let mut reader = open_capture(path, &cfg)?;
        let mut dissector = Dissector::with_schemas(cfg.clone(), schemas);
        let mut collector = Collector::new(selector.clone());
        // A read error part-way still leaves what was found before it.
        let _ = reader.for_each_packet(|pkt| {
            dissector.packet(pkt, &mut collector);
            collector.found.is_none()
        });
        // Ends the connections still open, the found call's among them: its end says whether
        // it was carried in TLS.
        let stats = dissector.finish(&mut collector);
        collector.found.take().ok_or(FindError::NotFound {
            candidates: collector.candidates(),
            encrypted: stats.tls_connections.saturating_sub(stats.tls_decrypted),
        })
    };
    // Reading stops at the call, which is usually near the start. Only if its messages are not
    // decoded with the schemas at hand is the whole file read for schemas served by reflection
    // (a health check never needs it: its schema is bundled).
    let found = find(schemas.clone())?;
    let undecoded = found
        .requests
        .iter()
        .chain(&found.responses)
        .any(|m| m.type_name.is_none());
    if !undecoded || !crate::capture::rereadable(path) {
        return Ok(found);
    }
    let harvested = harvest_schemas(path, schemas, &cfg, u64::MAX);
    Ok(find(harvested).unwrap_or(found))
}

/// A gRPC call as recorded, with its messages' bytes.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub call: Call,
    pub requests: Vec<RecordedMessage>,
    /// Request messages past those kept ([`MAX_KEPT_REQUESTS`], [`MAX_KEPT_BYTES`]): a call
    /// that sent them cannot be replayed.
    pub requests_left_out: u64,
    /// The first response message (the check expects its bytes); the others are not kept.
    pub responses: Vec<RecordedMessage>,
    /// The TLS its connection was carried in (decrypted, or the call would not be known).
    pub tls: Option<crate::tls::TlsInfo>,
}

impl Recorded {
    /// The check's TLS as the call was recorded: over TLS with its SNI, or none in clear.
    pub fn recorded_tls(&self) -> Option<check::TlsOptions> {
        self.tls.as_ref().map(|t| check::TlsOptions {
            sni: t.sni.clone().filter(|s| is_host_name(s)),
            ca_file: None,
        })
    }
}

/// Whether a recorded SNI can be sent again and written into a config line: a host name has
/// no spaces or control characters (RFC 6066), and a capture's may have anything.
pub fn is_host_name(sni: &str) -> bool {
    !sni.is_empty() && sni.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Debug, Clone)]
pub struct RecordedMessage {
    /// Decompressed message bytes (`None` if the capture did not have them whole).
    pub bytes: Option<Vec<u8>>,
    pub type_name: Option<std::sync::Arc<str>>,
    pub json: Option<Json>,
}

/// Which recorded call to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The first call with this path.
    Path(String),
    /// Connection and stream numbers as h2scope prints them.
    Call { conn: u64, stream: u32 },
}

impl Selector {
    fn matches(&self, c: &Call) -> bool {
        match self {
            Selector::Path(p) => c.path().as_deref() == Some(p.as_str()),
            Selector::Call { conn, stream } => c.conn == *conn && c.stream == *stream,
        }
    }
}

/// A sink that keeps the first gRPC call matching the selector, with its messages, and a short
/// list of the other gRPC calls (to suggest when nothing matches).
pub struct Collector {
    selector: Selector,
    pending: HashMap<(u64, u32), Kept>,
    pub found: Option<Recorded>,
    /// The other gRPC calls, one entry per path and status: a capture of a thousand alike calls
    /// suggests one of them, not a page of the same line.
    kinds: Vec<CallKind>,
}

/// Calls of one path that ended with one status: the first of them, and how many there were.
struct CallKind {
    conn: u64,
    stream: u32,
    path: String,
    status: Option<u32>,
    count: u64,
}

const MAX_CANDIDATES: usize = 50;

/// What a call that may be the one chosen keeps of its messages until it ends: a health check
/// sends a few small ones, while a capture's streaming calls may send millions.
pub const MAX_KEPT_REQUESTS: usize = 64;
pub const MAX_KEPT_BYTES: usize = 1 << 20;

#[derive(Default)]
struct Kept {
    requests: Vec<RecordedMessage>,
    request_bytes: usize,
    requests_left_out: u64,
    first_response: Option<RecordedMessage>,
}

impl Collector {
    pub fn new(selector: Selector) -> Self {
        Collector {
            selector,
            pending: HashMap::new(),
            found: None,
            kinds: Vec::new(),
        }
    }

    /// The other gRPC calls seen, as `--call` lines: the first call of each path and status,
    /// with how many more there were.
    pub fn candidates(&self) -> Vec<String> {
        self.kinds
            .iter()
            .map(|k| {
                let status = k
                    .status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into());
                let more = match k.count - 1 {
                    0 => String::new(),
                    1 => "  (and 1 more call like it)".into(),
                    n => format!("  (and {n} more calls like it)"),
                };
                format!(
                    "--call {}:{}  {}  grpc-status {status}{more}",
                    k.conn,
                    k.stream,
                    printable(&k.path)
                )
            })
            .collect()
    }

    fn note_candidate(&mut self, call: &Call) {
        let path = call.path().unwrap_or_else(|| "-".into());
        let status = call.grpc_status();
        // At most MAX_CANDIDATES kinds: a look through them all is cheap.
        if let Some(kind) = (self.kinds.iter_mut()).find(|k| k.path == path && k.status == status) {
            kind.count += 1;
        } else if self.kinds.len() < MAX_CANDIDATES {
            self.kinds.push(CallKind {
                conn: call.conn,
                stream: call.stream,
                path,
                status,
                count: 1,
            });
        }
    }
}

impl Sink for Collector {
    fn event(&mut self, event: Event) {
        if let Some(found) = &mut self.found {
            if let Event::ConnectionEnd(end) = event {
                if end.conn == found.call.conn {
                    found.tls = end.tls;
                }
            }
            return;
        }
        match event {
            Event::Message(m) => {
                // Only the messages of calls the selector may choose.
                let may_match = match &self.selector {
                    Selector::Path(p) => m.path.as_deref() == Some(p.as_str()),
                    Selector::Call { conn, stream } => {
                        m.origin.conn == *conn && m.stream == *stream
                    }
                };
                if !may_match {
                    return;
                }
                let kept = self.pending.entry((m.origin.conn, m.stream)).or_default();
                let side = m.side;
                let size = m.decoded.bytes.as_ref().map_or(0, Vec::len);
                let message = RecordedMessage {
                    bytes: m.decoded.bytes,
                    type_name: m.decoded.type_name,
                    json: m.decoded.json,
                };
                match side {
                    Side::Request
                        if kept.requests.len() < MAX_KEPT_REQUESTS
                            && kept.request_bytes + size <= MAX_KEPT_BYTES =>
                    {
                        kept.request_bytes += size;
                        kept.requests.push(message);
                    }
                    Side::Request => kept.requests_left_out += 1,
                    Side::Response => {
                        kept.first_response.get_or_insert(message);
                    }
                }
            }
            Event::Call(call) => {
                let kept = self
                    .pending
                    .remove(&(call.conn, call.stream))
                    .unwrap_or_default();
                if !call.grpc {
                    return;
                }
                if self.selector.matches(&call) {
                    self.found = Some(Recorded {
                        call: *call,
                        requests: kept.requests,
                        requests_left_out: kept.requests_left_out,
                        responses: kept.first_response.into_iter().collect(),
                        tls: None,
                    });
                } else {
                    self.note_candidate(&call);
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Headers to add or override, names lowercased (`:authority` to aim at another host).
    pub headers: Vec<(String, String)>,
    /// What to look for in the answer instead of the derived bytes.
    pub expect: Option<Vec<u8>>,
    pub fast_fail: bool,
    /// The check runs over TLS: `:scheme` is `https`.
    pub tls: bool,
}

/// One `tcp-check send-binary` line and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendPart {
    pub comment: String,
    pub bytes: Vec<u8>,
}

/// The fast-failure pair of rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastFail {
    /// The part of the expected bytes a failing answer shares; waited for with `rbinary`.
    pub common: Vec<u8>,
}

impl FastFail {
    /// `rbinary` matches an uppercase hex dump and is not byte-aligned: `^(..)*?` aligns it.
    pub fn rbinary(&self) -> String {
        format!("^(..)*?{}", hex::encode_upper(&self.common))
    }
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub parts: Vec<SendPart>,
    pub expect: Vec<u8>,
    pub expect_comment: String,
    pub fast_fail: Option<FastFail>,
    pub warnings: Vec<String>,
}

impl HealthCheck {
    pub fn send(&self) -> Vec<u8> {
        self.parts
            .iter()
            .flat_map(|p| p.bytes.iter().copied())
            .collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExportError {
    #[error(
        "the recorded call has no request headers (decoding failed or the capture started later)"
    )]
    NoRequestHeaders,
    #[error("the recorded call has no :path")]
    NoPath,
    #[error("request message {0} is not complete in the capture; it cannot be replayed")]
    IncompleteRequest(usize),
    #[error("no response message was recorded: give --expect-hex or --expect-string")]
    NothingToExpect,
    #[error("the recorded call sent more than {MAX_KEPT_REQUESTS} request messages or {} MiB of them, too many for a health check to replay", MAX_KEPT_BYTES >> 20)]
    TooManyRequests,
}

/// Headers that belong to one hop, or that would make the replay wrong.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "grpc-encoding",
    // Without it the server answers uncompressed, so the expected bytes stay valid.
    "grpc-accept-encoding",
    "te",
    "content-type",
];

const SECRET: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-api-key",
];

fn frame(kind: FrameType, flag: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = FrameHeader {
        length: payload.len() as u32,
        kind,
        flags: flag,
        stream,
    }
    .encode()
    .to_vec();
    out.extend_from_slice(payload);
    out
}

/// The 5-byte gRPC prefix and the message, uncompressed.
pub fn grpc_message(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Header names and values, in order.
pub type HeaderList = Vec<(String, String)>;

/// The request headers to send, in order: pseudo-headers, then gRPC's, then the recorded rest;
/// and warnings about them.
pub fn request_headers(
    rec: &Recorded,
    opts: &ExportOptions,
) -> Result<(HeaderList, Vec<String>), ExportError> {
    let list = rec
        .call
        .request_headers
        .as_ref()
        .ok_or(ExportError::NoRequestHeaders)?;
    let mut warnings = Vec::new();
    let path = rec.call.path().ok_or(ExportError::NoPath)?;
    let authority = rec
        .call
        .authority()
        .unwrap_or_else(|| rec.call.server.to_string());
    let mut out: Vec<(String, String)> = vec![
        (":method".into(), "POST".into()),
        (
            ":scheme".into(),
            if opts.tls { "https" } else { "http" }.into(),
        ),
        (":path".into(), path),
        (":authority".into(), authority),
        ("content-type".into(), "application/grpc".into()),
        ("te".into(), "trailers".into()),
    ];
    for h in list.iter() {
        if h.name_unknown || h.value_unknown {
            continue;
        }
        let name = lossless(&h.name).to_ascii_lowercase();
        if name.starts_with(':') || DROPPED.contains(&name.as_str()) {
            continue;
        }
        if SECRET.contains(&name.as_str()) {
            warnings.push(format!(
                "the recorded request carries {name:?}: it will be written into the HAProxy config"
            ));
        }
        out.push((name, lossless(&h.value)));
    }
    for (name, value) in &opts.headers {
        let name = name.trim().to_ascii_lowercase();
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value.clone(),
            None => out.push((name, value.clone())),
        }
    }
    Ok((out, warnings))
}

/// Builds the bytes to send and to expect.
pub fn build(rec: &Recorded, opts: &ExportOptions) -> Result<HealthCheck, ExportError> {
    let (headers, mut warnings) = request_headers(rec, opts)?;
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let mut block = Vec::new();
    encode_plain(&pairs, &mut block);

    if rec.requests_left_out > 0 {
        return Err(ExportError::TooManyRequests);
    }
    let mut body = Vec::new();
    for (i, m) in rec.requests.iter().enumerate() {
        let bytes = m.bytes.as_ref().ok_or(ExportError::IncompleteRequest(i))?;
        body.extend_from_slice(&grpc_message(bytes));
    }
    if rec.requests.len() > 1 {
        warnings.push(format!(
            "the recorded call sent {} request messages; all are replayed in one DATA frame",
            rec.requests.len()
        ));
    }
    let path = rec.call.path().unwrap_or_default();
    let mut parts = vec![
        SendPart {
            comment: "client connection preface and an empty SETTINGS frame".into(),
            bytes: [PREFACE.as_slice(), &frame(FrameType::Settings, 0, 0, &[])].concat(),
        },
        SendPart {
            comment: format!(
                "HEADERS stream 1 END_HEADERS: POST {} ({} headers, static table and literals only)",
                printable(&path),
                headers.len()
            ),
            bytes: frame(FrameType::Headers, flags::END_HEADERS, 1, &block),
        },
    ];
    let what = rec
        .requests
        .first()
        .and_then(|m| Some(format!("{} {}", m.type_name.as_deref()?, m.json.as_ref()?)))
        .unwrap_or_else(|| format!("{} message bytes", body.len()));
    let chunks: Vec<&[u8]> = if body.is_empty() {
        vec![&[]]
    } else {
        body.chunks(DEFAULT_MAX_FRAME_SIZE as usize).collect()
    };
    let n = chunks.len();
    let mut data = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let flag = if i + 1 == n { flags::END_STREAM } else { 0 };
        data.extend_from_slice(&frame(FrameType::Data, flag, 1, chunk));
    }
    parts.push(SendPart {
        comment: format!("DATA stream 1 END_STREAM: {what}"),
        bytes: data,
    });

    let response = rec.responses.first();
    match rec.call.grpc_status() {
        Some(0) => {}
        Some(s) => warnings.push(format!(
            "the recorded call failed (grpc-status {s}): the check expects a failure's answer"
        )),
        None => warnings.push("the recorded call has no grpc-status".into()),
    }
    let health = path == HEALTH_CHECK_PATH;
    if health {
        let serving = response
            .and_then(|m| m.json.as_ref())
            .is_some_and(|j| j.to_value()["status"] == "SERVING");
        if !serving {
            warnings.push("the recorded health check answer is not SERVING".into());
        }
    }
    let (expect, expect_comment, fast_fail) = match (&opts.expect, response) {
        (Some(e), _) => (
            e.clone(),
            "the bytes given on the command line".to_string(),
            None,
        ),
        (None, Some(m)) => {
            let bytes = m.bytes.as_ref().ok_or(ExportError::NothingToExpect)?;
            let message = grpc_message(bytes);
            let shown = match (&m.type_name, &m.json) {
                (Some(t), Some(j)) => format!("{t} {j}"),
                _ => format!("{} message bytes", bytes.len()),
            };
            if health {
                // The whole DATA frame: frame header (stream 1), gRPC prefix, message.
                let data = frame(FrameType::Data, 0, 1, &message);
                // NOT_SERVING differs from SERVING only in the last byte (08 02 vs 08 01).
                let ff = FastFail {
                    common: data[..data.len() - 1].to_vec(),
                };
                (
                    data,
                    format!("the response DATA frame on stream 1 carrying {shown}"),
                    Some(ff),
                )
            } else {
                let header = frame(FrameType::Data, 0, 1, &message)[..9].to_vec();
                (
                    message,
                    format!("the length-prefixed response message {shown}"),
                    Some(FastFail { common: header }),
                )
            }
        }
        (None, None) => return Err(ExportError::NothingToExpect),
    };
    Ok(HealthCheck {
        parts,
        expect,
        expect_comment,
        fast_fail: if opts.fast_fail { fast_fail } else { None },
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::hpack::{Decoder, HeaderField, Representation};
    use std::net::SocketAddr;

    fn hf(n: &str, v: &str) -> HeaderField {
        HeaderField {
            name: n.as_bytes().to_vec().into(),
            value: v.as_bytes().to_vec().into(),
            repr: Representation::Indexed { index: 70 },
            name_unknown: false,
            value_unknown: false,
        }
    }

    fn recorded(path: &str, req: &[u8], resp: &[u8]) -> Recorded {
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:50051".parse().unwrap();
        let mut call = Call::new(3, 41, a, b, 0, 1);
        call.grpc = true;
        call.request_headers = Some(
            vec![
                hf(":method", "POST"),
                hf(":scheme", "http"),
                hf(":path", path),
                hf(":authority", "backend:50051"),
                hf("content-type", "application/grpc"),
                hf("user-agent", "grpc-go/1.64"),
                hf("grpc-accept-encoding", "gzip"),
                hf("grpc-encoding", "gzip"),
                hf("authorization", "Bearer x"),
                hf("te", "trailers"),
            ]
            .into(),
        );
        call.response_trailers = Some(vec![hf("grpc-status", "0")].into());
        Recorded {
            call,
            requests: vec![RecordedMessage {
                bytes: Some(req.to_vec()),
                type_name: None,
                json: None,
            }],
            requests_left_out: 0,
            responses: vec![RecordedMessage {
                bytes: Some(resp.to_vec()),
                type_name: Some("grpc.health.v1.HealthCheckResponse".into()),
                json: Json::of(&serde_json::json!({"status": "SERVING"})).ok(),
            }],
            tls: None,
        }
    }

    /// The collector keeps the messages of calls the selector may choose and no others, a
    /// bounded number of requests and the first answer; a call that sent more requests than
    /// it keeps is not exported (its replay would not be the call).
    #[test]
    fn only_calls_that_may_be_chosen_keep_messages_and_only_so_many() {
        let message = |stream: u32, path: &str, side: Side, index: u32| {
            Event::Message(Box::new(crate::event::MessageEvent {
                path: Some(path.into()),
                decoded: crate::grpc::message::Decoded {
                    bytes: Some(vec![8, 1]),
                    ..Default::default()
                },
                ..crate::event::MessageEvent::at(3, stream, side, index)
            }))
        };
        let path = "/grpc.health.v1.Health/Check";
        let mut c = Collector::new(Selector::Path(path.into()));
        for i in 0..100 {
            c.event(message(1, "/other.Svc/Upload", Side::Request, i));
            c.event(message(41, path, Side::Request, i));
            c.event(message(41, path, Side::Response, i));
        }
        assert_eq!(c.pending.len(), 1, "the other call's messages are not kept");
        let mut call = recorded(path, b"", b"").call;
        call.stream = 41;
        c.event(Event::Call(Box::new(call)));
        let found = c.found.as_ref().unwrap();
        assert_eq!(found.requests.len(), MAX_KEPT_REQUESTS);
        assert_eq!(found.requests_left_out, 100 - MAX_KEPT_REQUESTS as u64);
        assert_eq!(found.responses.len(), 1);
        assert!(matches!(
            build(found, &ExportOptions::default()),
            Err(ExportError::TooManyRequests)
        ));
    }

    /// When no call matches, the calls there are come one line per path and status, each
    /// naming its first call and how many more are like it; together they are every gRPC call
    /// the dissection ends.
    #[test]
    fn candidates_group_alike_calls() {
        use crate::pipeline::{open_capture, Config, Dissector};
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/grpc-health.pcap");
        let Err(FindError::NotFound { candidates, .. }) = find_call(
            file,
            &Selector::Path("/no/such.Method".into()),
            crate::grpc::schema::Schemas::default(),
            None,
        ) else {
            panic!("a call matched a path no call has");
        };
        // What one dissection of the file says, counted here its own way: gRPC calls by path
        // and status, in the order they end.
        #[derive(Default)]
        struct Kinds(Vec<(String, String, u64)>);
        impl Sink for Kinds {
            fn event(&mut self, e: Event) {
                let Event::Call(c) = e else { return };
                if !c.grpc {
                    return;
                }
                let path = c.path().unwrap_or_else(|| "-".into());
                let status = c.grpc_status().map_or("-".into(), |s| s.to_string());
                match self.0.iter_mut().find(|k| k.0 == path && k.1 == status) {
                    Some(k) => k.2 += 1,
                    None => self.0.push((path, status, 1)),
                }
            }
        }
        let cfg = Config::default();
        let mut reader = open_capture(file, &cfg).unwrap();
        let mut dissector = Dissector::new(cfg);
        let mut seen = Kinds::default();
        // Every packet, whether it is TCP or not.
        let read = reader.for_each_packet(|p| {
            let _ = dissector.packet(p, &mut seen);
            true
        });
        read.unwrap();
        dissector.finish(&mut seen);
        let kinds = seen.0;
        assert!(kinds.iter().any(|k| k.2 > 1), "the file repeats calls");
        assert_eq!(candidates.len(), kinds.len(), "{candidates:#?}");
        for (line, (path, status, count)) in candidates.iter().zip(&kinds) {
            let head = format!("  {path}  grpc-status {status}");
            assert!(
                line.starts_with("--call ") && line.contains(&head),
                "{line}"
            );
            match count - 1 {
                0 => assert!(!line.contains("more call"), "{line}"),
                n => assert!(
                    line.ends_with(&format!(
                        "{n} more call{} like it)",
                        if n == 1 { "" } else { "s" }
                    )),
                    "{line}"
                ),
            }
        }
    }

    #[test]
    fn health_check_blob_and_expect() {
        let rec = recorded(HEALTH_CHECK_PATH, &[], &[0x08, 0x01]);
        let hc = build(
            &rec,
            &ExportOptions {
                fast_fail: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(hex::encode(&hc.expect), "00000700000000000100000000020801");
        assert_eq!(
            hc.fast_fail.as_ref().unwrap().rbinary(),
            "^(..)*?000007000000000001000000000208"
        );
        let send = hc.send();
        assert!(send.starts_with(PREFACE));
        assert_eq!(&send[24..33], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        // HEADERS on stream 1 with END_HEADERS, decodable by a fresh decoder.
        let h = FrameHeader::parse(send[33..42].try_into().unwrap());
        assert_eq!(
            (h.kind, h.flags, h.stream),
            (FrameType::Headers, flags::END_HEADERS, 1)
        );
        let block = &send[42..42 + h.length as usize];
        let mut out = Vec::new();
        Decoder::new().decode(block, &mut out).unwrap();
        let names: Vec<String> = out.iter().map(|f| lossless(&f.name)).collect();
        assert_eq!(
            names,
            [
                ":method",
                ":scheme",
                ":path",
                ":authority",
                "content-type",
                "te",
                "user-agent",
                "authorization"
            ]
        );
        assert!(out.iter().all(
            |f| matches!(f.repr, Representation::Indexed { index } if index <= 61)
                || matches!(f.repr, Representation::WithoutIndexing { .. })
        ));
        // Exactly one DATA frame with END_STREAM and an empty message.
        let rest = &send[42 + h.length as usize..];
        assert_eq!(rest, &[0, 0, 5, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
        assert!(hc.warnings.iter().any(|w| w.contains("authorization")));
    }

    #[test]
    fn overrides_big_messages_and_custom_expect() {
        let big = vec![7u8; 40_000];
        let rec = recorded(
            "/servicestatus.HealthCheck/Status",
            &big,
            b"\x0a\x13MagicResponseCodeOK",
        );
        let opts = ExportOptions {
            headers: vec![
                (":authority".into(), "svc.example:443".into()),
                ("X-Env".into(), "prod".into()),
            ],
            ..Default::default()
        };
        let hc = build(&rec, &opts).unwrap();
        let (headers, _) = request_headers(&rec, &opts).unwrap();
        assert!(headers.contains(&(":authority".into(), "svc.example:443".into())));
        assert!(headers.contains(&("x-env".into(), "prod".into())));
        let data = &hc.parts[2].bytes;
        // 40005 bytes in frames of 16384: three frames, END_STREAM on the last only.
        let mut at = 0;
        let mut frames = Vec::new();
        while at < data.len() {
            let h = FrameHeader::parse(data[at..at + 9].try_into().unwrap());
            frames.push((h.length, h.flags));
            at += 9 + h.length as usize;
        }
        assert_eq!(frames, [(16384, 0), (16384, 0), (7237, 1)]);
        assert_eq!(&hc.expect[..5], &[0, 0, 0, 0, 21]);
        assert!(hc.expect.ends_with(b"MagicResponseCodeOK"));
    }
}
