//! `-T grpcurl`: each gRPC call as the grpcurl command that makes it again, as a browser's
//! "copy as cURL" does for HTTP. The output is a shell script: a comment line that says which
//! call it is, then the command, or why there is none.
//!
//! grpcurl sends JSON that it turns into protobuf with the method's schema, so a call can only
//! be made again when h2scope decoded its request messages with a schema too (`--proto`,
//! `--descriptor-set`, the bundled ones, or one learned from server reflection in the capture).
//! The command gives grpcurl the same schema files when they came from `--proto` or
//! `--descriptor-set`; otherwise grpcurl asks the server's reflection service, as it does by
//! default.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::clock::{push_absolute, TimeFormat};
use crate::event::{Event, MessageEvent, Sink, Wants};
use crate::grpc::schema::{ProtoInputs, SchemaError, Schemas};
use crate::grpc::Side;
use crate::http2::call::{grpc_status_name, Call};
use crate::parallel::{Handoff, Route};

/// Request messages up to this much JSON go on the command line (`-d '...'`); more is given to
/// grpcurl on its standard input (`-d @` and a here-document). Linux takes at most 128 KiB in one
/// argument, and a long line is hard to read anyway.
const INLINE_MAX: usize = 4096;

/// JSON kept for the request messages of one call, and for all calls not yet ended: a capture
/// is untrusted, and a client stream may go on for ever.
const CALL_MAX: usize = 16 << 20;
const PENDING_MAX: usize = 64 << 20;
/// What a call held and each message of it cost besides their JSON: a flood of empty messages
/// or of calls must count against the limits too.
const CALL_COST: usize = 128;
const MESSAGE_COST: usize = 48;

/// The first answer is shown in a comment up to this many characters.
const ANSWER_MAX: usize = 200;

/// Ends the here-document of `-d @`; message JSON is one line each and never this word.
const HEREDOC_END: &str = "H2SCOPE_EOF";

/// Request headers grpcurl writes itself, or that are not metadata (gRPC-Web's among them).
const NOT_METADATA: [&str; 14] = [
    "content-type",
    "te",
    "user-agent",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "accept-encoding",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "accept",
    "x-grpc-web",
];

/// Schema files given on the command line, and the services they define: a call to one of
/// them gets the files' grpcurl flags.
#[derive(Debug, Clone, Default)]
pub struct SchemaFlags {
    pub services: HashSet<String>,
    /// `-import-path DIR -proto FILE ...` or `-protoset FILE ...`, not yet quoted.
    pub flags: Vec<String>,
}

impl SchemaFlags {
    /// grpcurl's flags for `.proto` files and directories, with the include paths h2scope
    /// compiles them with ([`ProtoInputs`]), each file named relative to its include path.
    pub fn for_protos(protos: &[PathBuf], include_paths: &[PathBuf]) -> Result<Self, SchemaError> {
        let inputs = ProtoInputs::of(protos, include_paths)?;
        let imports = inputs.includes.iter().map(|d| ("-import-path", d));
        let files = inputs.files.iter().map(|f| ("-proto", &f.name));
        Ok(SchemaFlags {
            services: HashSet::new(),
            flags: imports
                .chain(files)
                .flat_map(|(flag, path)| [flag.to_string(), path_text(path)])
                .collect(),
        })
    }

    /// grpcurl's flags for binary descriptor sets.
    pub fn for_descriptor_sets(sets: &[PathBuf]) -> Self {
        SchemaFlags {
            services: HashSet::new(),
            flags: sets
                .iter()
                .flat_map(|s| ["-protoset".to_string(), path_text(s)])
                .collect(),
        }
    }
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// What the commands are made with.
#[derive(Debug, Clone, Default)]
pub struct GrpcurlOptions {
    /// Tried in order; grpcurl takes `-proto` or `-protoset` files, not both, so a call gets
    /// the first source that defines its service.
    pub schemas: Vec<SchemaFlags>,
}

impl GrpcurlOptions {
    /// The schemas h2scope decodes with for what it was given (`--proto`, `--proto-path`,
    /// `--descriptor-set`: the bundled schemas, then the descriptor sets, then the `.proto`
    /// files), and grpcurl's flags for the services they define: the `.proto` files with their
    /// import paths, else the descriptor sets. A call to any other service gets none, and
    /// grpcurl asks the server's reflection service. Each input is compiled or read once.
    pub fn load(
        protos: &[PathBuf],
        include_paths: &[PathBuf],
        descriptor_sets: &[PathBuf],
    ) -> Result<(Schemas, Self), SchemaError> {
        let mut schemas = Schemas::bundled();
        let mut from_sets = HashSet::new();
        for set in descriptor_sets {
            from_sets.extend(schemas.add_descriptor_set_file(set)?);
        }
        let from_protos: HashSet<String> = (schemas.add_proto_files(protos, include_paths)?)
            .into_iter()
            .collect();
        let mut opts = GrpcurlOptions::default();
        if !protos.is_empty() {
            let mut flags = SchemaFlags::for_protos(protos, include_paths)?;
            flags.services = from_protos;
            opts.schemas.push(flags);
        }
        if !descriptor_sets.is_empty() {
            let mut flags = SchemaFlags::for_descriptor_sets(descriptor_sets);
            flags.services = from_sets;
            opts.schemas.push(flags);
        }
        Ok((schemas, opts))
    }
}

/// The request messages of a call not yet ended, as JSON, and the start of its first answer.
#[derive(Debug, Default, Clone)]
pub struct Requests {
    pub json: Vec<String>,
    bytes: usize,
    /// Why the call cannot be made again from these messages.
    pub problem: Option<String>,
    /// The first response message as JSON, cut at [`ANSWER_MAX`] characters: a call made again
    /// can be compared with it.
    pub answer: Option<String>,
}

impl Requests {
    /// Keeps the start of the first response message. `text` is its JSON, when the caller
    /// has written it already.
    pub fn answered(&mut self, m: &MessageEvent, text: Option<&str>) {
        if m.index != 0 {
            return;
        }
        let Some(json) = &m.decoded.json else {
            return;
        };
        let text = text.map_or_else(|| json.to_string(), str::to_string);
        self.answer = Some(match text.char_indices().nth(ANSWER_MAX) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text,
        });
    }

    /// Adds a request message, or says why it cannot be sent again. `text` is its JSON, when
    /// the caller has written it already.
    pub fn push(&mut self, m: &MessageEvent, text: Option<String>) {
        if self.problem.is_some() {
            return;
        }
        let d = &m.decoded;
        let problem = match &d.json {
            Some(json) => {
                let text = text.unwrap_or_else(|| json.to_string());
                if self.bytes + text.len() + MESSAGE_COST > CALL_MAX {
                    Some(format!(
                        "its request messages hold more than {} MiB of JSON",
                        CALL_MAX >> 20
                    ))
                } else {
                    self.bytes += text.len() + MESSAGE_COST;
                    self.json.push(text);
                    None
                }
            }
            None => Some(format!(
                "request message {} ({} bytes) was not decoded: {}",
                m.index,
                d.length,
                match (&d.problem, &d.type_name) {
                    (Some(p), _) => p.clone(),
                    (None, Some(t)) => format!("no JSON for {t}"),
                    (None, None) => "no schema for its method (give --proto or --descriptor-set, or capture a server reflection exchange)".into(),
                }
            )),
        };
        if let Some(why) = problem {
            self.give_up(why);
        }
    }

    /// The call cannot be made again: its messages are let go.
    fn give_up(&mut self, why: String) {
        self.problem = Some(why);
        self.json.clear();
        self.bytes = 0;
    }

    /// What it holds, for the limit on calls not yet ended.
    fn bytes(&self) -> usize {
        CALL_COST
            + self.bytes
            + self.problem.as_ref().map_or(0, String::len)
            + self.answer.as_ref().map_or(0, String::len)
    }

    /// As one record, to be kept (the TUI's store) and read back by [`Requests::from_record`]:
    /// a first line (never empty, even for a call that sent nothing), a line per message (`j`),
    /// the problem (`p`), the answer (`a`). JSON has no raw line break, and a problem's are made
    /// spaces.
    pub fn to_record(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes + 64);
        out.extend_from_slice(b"requests\n");
        for j in &self.json {
            out.extend_from_slice(b"j ");
            out.extend_from_slice(j.as_bytes());
            out.push(b'\n');
        }
        if let Some(p) = &self.problem {
            out.extend_from_slice(b"p ");
            out.extend_from_slice(p.replace('\n', " ").as_bytes());
            out.push(b'\n');
        }
        if let Some(a) = &self.answer {
            out.extend_from_slice(b"a ");
            out.extend_from_slice(a.as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// What [`Requests::to_record`] wrote; lines it did not write are skipped.
    pub fn from_record(record: &[u8]) -> Requests {
        let mut r = Requests::default();
        for line in String::from_utf8_lossy(record).lines() {
            match line.split_at_checked(2) {
                Some(("j ", j)) => {
                    r.bytes += j.len();
                    r.json.push(j.to_string());
                }
                Some(("p ", p)) => r.problem = Some(p.to_string()),
                Some(("a ", a)) => r.answer = Some(a.to_string()),
                _ => {}
            }
        }
        r
    }
}

/// The request messages of the calls not yet ended, with bounds: a capture is untrusted, and a
/// client stream may go on for ever.
#[derive(Debug, Default)]
pub struct PendingCalls {
    calls: HashMap<(u64, u32), Requests>,
    bytes: usize,
}

impl PendingCalls {
    /// A message of a call not yet ended: a request message is kept, the first answer noted.
    /// `text` is its JSON, when the caller has written it already.
    pub fn message(&mut self, m: &MessageEvent, text: Option<String>) {
        let key = (m.origin.conn, m.stream);
        let before = self.calls.get(&key).map_or(0, Requests::bytes);
        if m.side == Side::Response {
            if let Some(r) = self.calls.get_mut(&key) {
                r.answered(m, text.as_deref());
                self.bytes = self.bytes - before + r.bytes();
            }
            return;
        }
        let full = self.bytes > PENDING_MAX;
        let r = self.calls.entry(key).or_default();
        if full && r.problem.is_none() {
            r.give_up(format!(
                "calls not yet ended held more than {} MiB of request JSON",
                PENDING_MAX >> 20
            ));
        } else {
            r.push(m, text);
        }
        self.bytes = self.bytes - before + r.bytes();
    }

    /// What a call that has ended sent.
    pub fn take(&mut self, conn: u64, stream: u32) -> Requests {
        match self.calls.remove(&(conn, stream)) {
            Some(r) => {
                self.bytes -= r.bytes();
                r
            }
            None => Requests::default(),
        }
    }

    pub fn clear(&mut self) {
        self.calls.clear();
        self.bytes = 0;
    }
}

/// A word as a POSIX shell reads it back: as it is when it holds only characters the shell
/// leaves alone, else in single quotes (a quote inside as `'\''`).
pub fn shell_word(s: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_./:@%+=,".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `grpc-timeout` (an integer and a unit, H M S m u n) in seconds, as `-max-time` takes them.
pub fn timeout_seconds(v: &str) -> Option<String> {
    // As a decimal of nanoseconds, not a float: `100m` is 0.1, not 0.1000000000000000055.
    let ns = crate::http2::call::grpc_timeout_ns(v)?;
    let (secs, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    Some(if frac == 0 {
        secs.to_string()
    } else {
        let frac = format!("{frac:09}");
        format!("{secs}.{}", frac.trim_end_matches('0'))
    })
}

/// The lines for one call: a comment that names it, then the grpcurl command, or a comment
/// saying why there is none.
pub fn render(call: &Call, requests: &Requests, opts: &GrpcurlOptions) -> String {
    let mut out = String::new();
    let path = call.path();
    let _ = write!(
        out,
        "# call {}:{} {} at ",
        call.conn,
        call.stream,
        path.as_deref().unwrap_or("(no :path)")
    );
    push_absolute(&mut out, TimeFormat::UtcDate, call.start_ts_ns);
    out.push_str(" UTC, ");
    match call.grpc_status() {
        Some(s) => {
            let _ = write!(
                out,
                "grpc-status {s} ({})",
                grpc_status_name(s).unwrap_or("unknown code")
            );
        }
        None => out.push_str("no grpc-status"),
    }
    out.push('\n');
    let cannot = |out: &mut String, why: &str| {
        let _ = writeln!(out, "#   no command: {why}");
    };
    let Some(path) = path else {
        cannot(
            &mut out,
            "its request headers were not decoded (give --assume-path for a capture that began mid-connection)",
        );
        return out;
    };
    let Some((service, _)) = path
        .strip_prefix('/')
        .and_then(|m| m.rsplit_once('/'))
        .filter(|(s, m)| !s.is_empty() && !m.is_empty())
    else {
        cannot(
            &mut out,
            "its :path is not a gRPC method (/pkg.Service/Method)",
        );
        return out;
    };
    if let Some(problem) = &requests.problem {
        cannot(&mut out, problem);
        return out;
    }
    let mut notes = Vec::new();
    if call
        .request_header("content-type")
        .is_some_and(|t| t.starts_with(b"application/grpc-web"))
    {
        notes.push(
            "the call was gRPC-Web; grpcurl makes it over HTTP/2, which the server (or a proxy before it) must take"
                .to_string(),
        );
    }
    let mut words: Vec<String> = vec!["grpcurl".into()];
    let target = call.server.to_string();
    let tls = call.tls || call.request_header(":scheme") == Some(b"https");
    if !tls {
        words.push("-plaintext".into());
    }
    // Over TLS, :authority is also the name the certificate is checked against.
    if let Some(authority) = call.authority() {
        if tls || authority != target {
            words.extend(["-authority".into(), authority]);
        }
    }
    if let Some(t) = call.request_header("grpc-timeout") {
        match std::str::from_utf8(t).ok().and_then(timeout_seconds) {
            Some(secs) => words.extend(["-max-time".into(), secs]),
            None => notes.push("a malformed grpc-timeout was left out".to_string()),
        }
    }
    let mut unknown = 0;
    for h in call.request_headers.iter().flat_map(|l| l.iter()) {
        if !h.is_complete() {
            unknown += 1;
            continue;
        }
        if h.name.first() == Some(&b':') || NOT_METADATA.iter().any(|n| h.name[..] == *n.as_bytes())
        {
            continue;
        }
        match (std::str::from_utf8(&h.name), std::str::from_utf8(&h.value)) {
            (Ok(name), Ok(value)) if !value.contains(['\0', '\r', '\n']) => {
                words.extend(["-H".into(), format!("{name}: {value}")]);
            }
            _ => notes.push(format!(
                "header {} left out: not text",
                String::from_utf8_lossy(&h.name)
            )),
        }
    }
    if unknown > 0 {
        notes.push(format!(
            "{unknown} request header field(s) left out: their HPACK entries predate the capture"
        ));
    }
    if let Some(source) = opts.schemas.iter().find(|s| s.services.contains(service)) {
        words.extend(source.flags.iter().cloned());
    }
    let json_bytes: usize = requests.json.iter().map(String::len).sum();
    let heredoc = json_bytes + requests.json.len() > INLINE_MAX;
    match requests.json.len() {
        0 => notes.push(
            "the call sent no request message; grpcurl sends an empty one to a unary method".into(),
        ),
        _ if heredoc => words.extend(["-d".into(), "@".into()]),
        _ => words.extend(["-d".into(), requests.json.join(" ")]),
    }
    if call.request_messages as usize > requests.json.len() {
        notes.push(format!(
            "{} request messages were sent, {} are in the command",
            call.request_messages,
            requests.json.len()
        ));
    }
    words.push(target);
    words.push(path.trim_start_matches('/').to_string());
    if let Some(answer) = &requests.answer {
        notes.push(match call.response_messages {
            0 | 1 => format!("answered: {answer}"),
            n => format!("answered {n} messages, the first: {answer}"),
        });
    }
    for n in notes {
        let _ = writeln!(out, "#   {n}");
    }
    let line: Vec<String> = words.iter().map(|w| shell_word(w)).collect();
    out.push_str(&line.join(" "));
    if heredoc && !requests.json.is_empty() {
        let _ = writeln!(out, " <<'{HEREDOC_END}'");
        for j in &requests.json {
            out.push_str(j);
            out.push('\n');
        }
        out.push_str(HEREDOC_END);
    }
    out.push('\n');
    out
}

/// Writes a grpcurl command for each gRPC call as it ends.
pub struct Grpcurl<W: Write> {
    out: W,
    opts: GrpcurlOptions,
    pending: PendingCalls,
    not_grpc: u64,
    io_error: Option<std::io::Error>,
}

impl<W: Write> Grpcurl<W> {
    pub fn new(out: W, opts: GrpcurlOptions) -> Self {
        Grpcurl {
            out,
            opts,
            pending: PendingCalls::default(),
            not_grpc: 0,
            io_error: None,
        }
    }

    pub fn io_error(&mut self) -> Option<std::io::Error> {
        self.io_error.take()
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.io_error.get_or_insert(e);
        }
    }

    /// The end of a file (calls are numbered per file, and every call has ended): how many
    /// calls were not gRPC, and had no command.
    /// A call the display filter left out: what was kept of it goes.
    pub fn forget(&mut self, call: &Call) {
        self.pending.take(call.conn, call.stream);
    }

    pub fn file_done(&mut self) -> u64 {
        self.pending.clear();
        self.flush();
        std::mem::take(&mut self.not_grpc)
    }

    fn call(&mut self, call: &Call) {
        let requests = self.pending.take(call.conn, call.stream);
        if !call.grpc || call.pushed {
            self.not_grpc += 1;
            return;
        }
        let text = render(call, &requests, &self.opts);
        if self.io_error.is_none() {
            if let Err(e) = self.out.write_all(text.as_bytes()) {
                self.io_error = Some(e);
            }
        }
    }
}

/// On the threads of a large capture: calls, their request messages and their first response
/// message go to the writing thread as they are, in capture order; it makes the commands (and applies `-Y` to the calls).
pub struct RouteRequests;

impl Route for RouteRequests {
    fn route(&self, event: &Event, _: i64, _: &mut Vec<u8>) -> Handoff {
        match event {
            Event::Message(m) if m.side == Side::Request || m.index == 0 => Handoff::Event,
            Event::Call(_) => Handoff::Event,
            _ => Handoff::Drop,
        }
    }
}

impl<W: Write> Sink for Grpcurl<W> {
    fn closed(&self) -> bool {
        self.io_error.is_some()
    }

    fn wants(&mut self) -> Wants<'_> {
        Wants::Everything.narrowed(false, true)
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Message(m) => self.pending.message(&m, None),
            Event::Call(c) => self.call(&c),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::hpack::{Bytes, HeaderField, Representation};
    use std::sync::Arc;

    fn field(name: &str, value: &str) -> HeaderField {
        HeaderField {
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            repr: Representation::Indexed { index: 62 },
            name_unknown: false,
            value_unknown: false,
        }
    }

    fn call(headers: &[(&str, &str)]) -> Call {
        let mut c = Call::new(
            3,
            5,
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:50051".parse().unwrap(),
            1_795_337_161_060_688_000,
            9,
        );
        let list: Vec<HeaderField> = headers.iter().map(|(n, v)| field(n, v)).collect();
        c.request_headers = Some(Arc::from(list));
        c.response_trailers = Some(Arc::from(vec![field("grpc-status", "5")]));
        c.grpc = true;
        c.request_messages = 1;
        c
    }

    fn requests(json: &[&str]) -> Requests {
        Requests {
            json: json.iter().map(|s| s.to_string()).collect(),
            bytes: json.iter().map(|s| s.len()).sum(),
            problem: None,
            answer: None,
        }
    }

    #[test]
    fn a_unary_call_becomes_one_command() {
        let c = call(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "api.example:50051"),
            (":path", "/pkg.Svc/Get"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", "1500m"),
            ("x-user", "o'brien"),
            ("x-trace-bin", "AAEC"),
        ]);
        let text = render(&c, &requests(&[r#"{"name":"a b"}"#]), &Default::default());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "# call 3:5 /pkg.Svc/Get at 2026-11-22 08:46:01.060688 UTC, grpc-status 5 (NOT_FOUND)"
        );
        assert_eq!(lines.len(), 2, "{text}");
        // tests/grpcurl.rs has the shell read such lines back.
        assert_eq!(
            lines[1],
            r#"grpcurl -plaintext -authority api.example:50051 -max-time 1.5 -H 'x-user: o'\''brien' -H 'x-trace-bin: AAEC' -d '{"name":"a b"}' 10.0.0.2:50051 pkg.Svc/Get"#
        );
    }

    #[test]
    fn tls_keeps_the_authority_and_schema_flags_go_to_their_services() {
        let c = call(&[
            (":scheme", "https"),
            (":authority", "10.0.0.2:50051"),
            (":path", "/pkg.Svc/Get"),
        ]);
        let mut opts = GrpcurlOptions::default();
        opts.schemas.push(SchemaFlags {
            services: HashSet::from(["other.Svc".to_string()]),
            flags: vec!["-protoset".into(), "other.pb".into()],
        });
        opts.schemas.push(SchemaFlags {
            services: HashSet::from(["pkg.Svc".to_string()]),
            flags: vec![
                "-import-path".into(),
                "my protos".into(),
                "-proto".into(),
                "svc.proto".into(),
            ],
        });
        let text = render(&c, &requests(&["{}"]), &opts);
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "grpcurl -authority 10.0.0.2:50051 -import-path 'my protos' -proto svc.proto -d '{}' 10.0.0.2:50051 pkg.Svc/Get"
        );
    }

    #[test]
    fn long_or_many_messages_go_to_a_here_document() {
        let mut c = call(&[(":scheme", "http"), (":path", "/pkg.Svc/Put")]);
        c.request_messages = 2;
        let big = format!(r#"{{"blob":"{}"}}"#, "A".repeat(INLINE_MAX));
        let text = render(&c, &requests(&[&big, "{}"]), &Default::default());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].ends_with("-d @ 10.0.0.2:50051 pkg.Svc/Put <<'H2SCOPE_EOF'"),
            "{text}"
        );
        assert_eq!(lines[2], big);
        assert_eq!(lines[3], "{}");
        assert_eq!(lines[4], HEREDOC_END);
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn calls_that_cannot_be_made_again_say_why() {
        let c = call(&[(":scheme", "http"), (":path", "/pkg.Svc/Get")]);
        let r = Requests {
            problem: Some("request message 0 (7 bytes) was not decoded: no schema".into()),
            ..Default::default()
        };
        let text = render(&c, &r, &Default::default());
        assert!(text
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("#   no command: request message 0"));
        assert!(text.lines().all(|l| l.starts_with('#')), "{text}");

        let mut c = call(&[(":scheme", "http")]);
        c.request_headers = None;
        let text = render(&c, &requests(&["{}"]), &Default::default());
        assert!(
            text.contains("(no :path)") && text.contains("no command"),
            "{text}"
        );

        let c = call(&[(":scheme", "http"), (":path", "/index.html")]);
        let text = render(&c, &requests(&["{}"]), &Default::default());
        assert!(text.contains("not a gRPC method"), "{text}");
    }

    #[test]
    fn unknown_fields_and_odd_values_are_left_out_with_a_note() {
        let mut c = call(&[(":scheme", "http"), (":path", "/pkg.Svc/Get"), ("x-a", "1")]);
        let mut list = c.request_headers.as_deref().unwrap().to_vec();
        list.push(HeaderField {
            name_unknown: true,
            value_unknown: true,
            ..field("", "")
        });
        list.push(field("x-bad", "a\nb"));
        c.request_headers = Some(Arc::from(list));
        let text = render(&c, &requests(&["{}"]), &Default::default());
        assert!(
            text.contains("#   1 request header field(s) left out"),
            "{text}"
        );
        assert!(text.contains("#   header x-bad left out"), "{text}");
        assert!(text.contains("-H 'x-a: 1'"), "{text}");
        assert!(!text.contains("x-bad:"), "{text}");
    }

    #[test]
    fn the_first_answer_is_shown_cut_short() {
        let mut c = call(&[(":scheme", "http"), (":path", "/pkg.Svc/Watch")]);
        let mut r = requests(&["{}"]);
        r.answer = Some(r#"{"status":"SERVING"}"#.into());
        c.response_messages = 1;
        let text = render(&c, &r, &Default::default());
        assert_eq!(
            text.lines().nth(1),
            Some(r#"#   answered: {"status":"SERVING"}"#)
        );
        c.response_messages = 3;
        let text = render(&c, &r, &Default::default());
        assert!(
            text.contains("#   answered 3 messages, the first: {"),
            "{text}"
        );

        let long = serde_json::json!({ "text": "\u{e9}".repeat(300) });
        let m = MessageEvent {
            origin: crate::event::Origin {
                packet: 1,
                ts_ns: 0,
                conn: 3,
                src: c.server,
                dst: c.client,
            },
            stream: 5,
            path: None,
            side: Side::Response,
            index: 0,
            decoded: crate::grpc::message::Decoded {
                json: crate::grpc::message::Json::of(&long).ok(),
                ..Default::default()
            },
        };
        let mut r = Requests::default();
        r.answered(&m, None);
        let answer = r.answer.unwrap();
        assert_eq!(answer.chars().count(), ANSWER_MAX + 3);
        assert!(answer.ends_with("\u{e9}..."), "{answer}");
    }

    /// Calls held until they end count what they hold, empty messages and answers included,
    /// and give it all back when taken: a flood of empty messages reaches the limit, and a
    /// capture's worth of calls leaves nothing behind.
    #[test]
    fn calls_held_count_all_they_hold() {
        let empty = serde_json::json!({});
        let message = |stream: u32, side: Side, index: u32| MessageEvent {
            decoded: crate::grpc::message::Decoded {
                json: crate::grpc::message::Json::of(&empty).ok(),
                ..Default::default()
            },
            ..MessageEvent::at(1, stream, side, index)
        };
        let mut p = PendingCalls::default();
        for stream in [1, 3, 5] {
            p.message(&message(stream, Side::Request, 0), None);
            p.message(&message(stream, Side::Response, 0), None);
        }
        assert!(p.bytes >= 3 * (CALL_COST + MESSAGE_COST + 4));
        for stream in [1, 3, 5, 7] {
            p.take(1, stream);
        }
        assert_eq!(p.bytes, 0);
        // Empty messages of one call: the call gives up once they would pass its limit.
        let mut r = Requests::default();
        let m = message(1, Side::Request, 0);
        for _ in 0..(CALL_MAX / MESSAGE_COST + 1) {
            r.push(&m, None);
        }
        assert!(r.problem.is_some());
        assert!(r.json.is_empty());
    }

    #[test]
    fn requests_read_back_from_their_record() {
        let mut r = requests(&[r#"{"a":"x\ny"}"#, "{}"]);
        r.answer = Some(r#"{"ok":true}"#.into());
        let back = Requests::from_record(&r.to_record());
        assert_eq!(
            (back.json, back.answer, back.bytes),
            (r.json, r.answer, r.bytes)
        );
        let r = Requests {
            problem: Some("one\ntwo".into()),
            ..Default::default()
        };
        let back = Requests::from_record(&r.to_record());
        assert_eq!(back.problem.as_deref(), Some("one two"));
        assert!(back.json.is_empty() && back.answer.is_none());
        assert!(!Requests::default().to_record().is_empty());
        assert!(Requests::from_record(b"\xff\nj\nx y\n").json.is_empty());
    }

    #[test]
    fn grpc_timeouts_in_seconds() {
        for (v, s) in [
            ("1S", Some("1")),
            ("100m", Some("0.1")),
            ("2M", Some("120")),
            ("1H", Some("3600")),
            ("250u", Some("0.00025")),
            ("7n", Some("0.000000007")),
            ("99999999H", Some("359999996400")),
            ("123456789S", None),
            ("S", None),
            ("", None),
            ("1x", None),
            ("-1S", None),
        ] {
            assert_eq!(timeout_seconds(v).as_deref(), s, "{v}");
        }
    }
}
