use std::collections::HashSet;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use h2scope::capture::compressed::{Compression, Position};
use h2scope::capture::defrag::FragmentKey;
use h2scope::capture::{link, live, rereadable, CaptureReader, OwnedPacket};
use h2scope::event::{ErrorEvent, ErrorKind, Event, Sink};
use h2scope::grpc::schema::Schemas;
use h2scope::grpc::Bodies;
use h2scope::haproxy::{self, check, config, ExportOptions, Selector};
use h2scope::http2::connection::{AssumeTarget, AssumedPath};
use h2scope::output::clock::TimeFormat;
use h2scope::output::fields::{Fields, FieldsOptions, FieldsRoute};
use h2scope::output::filter::{FieldList, Filter, FilterRoute};
use h2scope::output::grpcurl::{Grpcurl, GrpcurlOptions};
use h2scope::output::jsonl::JsonLines;
use h2scope::output::pcapng::{CaptureFile, Format as WriteFormat};
use h2scope::output::text::{Text, TextOptions, TextRoute};
use h2scope::output::{Counting, Summary};
use h2scope::parallel::Route;
use h2scope::pipeline::{harvest_schemas_with, open_capture, Config, Dissector};
use h2scope::tls::KeyLog;

#[derive(Parser)]
#[command(
    name = "h2scope",
    version,
    about = "Look inside HTTP/2 and gRPC traffic in packet captures"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dissect capture files (pcap or pcapng; `-` reads stdin).
    Read(ReadArgs),
    /// Dissect traffic on a live interface as it flows (needs the `live` build feature).
    Capture(CaptureArgs),
    /// Per connection: keepalive PINGs and round trips, GOAWAYs, resets, idle periods, flow
    /// control, how it ended.
    Health(AnalysisArgs),
    /// Per method: calls, grpc-status mix, latency percentiles, sizes, messages per call.
    Stats(AnalysisArgs),
    /// Browse calls, frames and decoded messages of a capture in the terminal.
    Tui(TuiArgs),
    /// Export a recorded gRPC call as an HAProxy `mode tcp` health check.
    Haproxy(Box<HaproxyArgs>),
    /// Send bytes to a server and look for bytes in its answer, as HAProxy's tcp-check does.
    Check(CheckArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    /// JSON Lines (`json` is accepted too).
    #[value(alias = "json")]
    Jsonl,
}

/// How `read` and `capture` print events.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum EventFormat {
    Text,
    /// JSON Lines (`json` is accepted too).
    #[value(alias = "json")]
    Jsonl,
    /// The fields named with -e, one line per event (tshark's -T fields).
    Fields,
    /// Each gRPC call as the grpcurl command that makes it again (a shell script).
    Grpcurl,
}

/// The time column of text lines, as tshark's `-t` names its forms.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
enum TimeArg {
    /// Seconds since the first packet.
    #[default]
    R,
    /// Local time of day.
    A,
    /// Local date and time.
    Ad,
    /// Seconds since 1970.
    E,
    /// UTC time of day.
    U,
    /// UTC date and time.
    Ud,
}

impl From<TimeArg> for TimeFormat {
    fn from(t: TimeArg) -> TimeFormat {
        match t {
            TimeArg::R => TimeFormat::Relative,
            TimeArg::A => TimeFormat::Absolute,
            TimeArg::Ad => TimeFormat::AbsoluteDate,
            TimeArg::E => TimeFormat::Epoch,
            TimeArg::U => TimeFormat::Utc,
            TimeArg::Ud => TimeFormat::UtcDate,
        }
    }
}

#[derive(clap::Args, Clone)]
struct SchemaArgs {
    /// A .proto file, or a directory of them, to decode gRPC messages with (repeatable).
    /// Compiled at run time: no protoc needed.
    #[arg(long = "proto", value_name = "FILE|DIR")]
    protos: Vec<PathBuf>,
    /// Where imports of the --proto files are found (repeatable).
    #[arg(long = "proto-path", short = 'I', value_name = "DIR")]
    proto_paths: Vec<PathBuf>,
    /// A binary FileDescriptorSet (`protoc -o`, `buf build -o`) (repeatable).
    #[arg(long = "descriptor-set", value_name = "FILE")]
    descriptor_sets: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct HaproxyArgs {
    /// The capture to take the call from.
    #[arg(required_unless_present = "read_file", conflicts_with = "read_file")]
    file: Option<String>,
    /// The capture to take the call from, as tshark takes it.
    #[arg(short = 'r', long = "read-file", value_name = "FILE")]
    read_file: Option<String>,
    /// Export the first call to this method (default: the first grpc.health.v1.Health/Check).
    #[arg(long, value_name = "/pkg.Svc/Method", conflicts_with = "call")]
    path: Option<String>,
    /// Export this call, as `read` numbers them (connection:stream).
    #[arg(long, value_name = "CONN:STREAM")]
    call: Option<String>,
    /// Add or override a request header, e.g. `--header :authority=api.example:443` (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Expect these bytes (hex) in the answer instead of the recorded response.
    #[arg(long, value_name = "HEX", conflicts_with = "expect_string")]
    expect_hex: Option<String>,
    /// Expect this text in the answer (e.g. a string field of the response message).
    #[arg(long, value_name = "TEXT")]
    expect_string: Option<String>,
    /// Mark the server down as soon as a wrong answer arrives, not at the check timeout.
    #[arg(long)]
    fast_fail: bool,
    /// Name of the backend section.
    #[arg(long, default_value = "grpc_backend")]
    backend: String,
    /// Name of the server line.
    #[arg(long, default_value = "grpc1")]
    server_name: String,
    /// Address of the server line (default: the server of the recorded call).
    #[arg(long, value_name = "HOST:PORT")]
    server: Option<String>,
    /// Check interval in milliseconds.
    #[arg(long, default_value_t = 2000)]
    inter: u32,
    #[arg(long, default_value_t = 2)]
    rise: u32,
    #[arg(long, default_value_t = 3)]
    fall: u32,
    /// Write the section to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// `text`: the HAProxy section; `json`: send and expect hex for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Try the check against a live server before printing it.
    #[arg(long, value_name = "HOST:PORT")]
    verify: Option<String>,
    /// Timeout of --verify (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    /// Decrypt the capture's TLS connections with the secrets in this key log (SSLKEYLOGFILE),
    /// to export a call recorded over TLS.
    #[arg(long = "tls-keylog", value_name = "FILE", value_parser = parse_keylog)]
    tls_keylog: Option<Arc<KeyLog>>,
    #[command(flatten)]
    tls: CheckTlsArgs,
    /// Check in clear even when the call was recorded over TLS (a backend behind a TLS
    /// terminator).
    #[arg(long, conflicts_with_all = ["ssl", "sni", "ca_file"])]
    no_ssl: bool,
    #[command(flatten)]
    schema: SchemaArgs,
}

/// How a check runs over TLS (`tcp-check connect ssl alpn h2`).
#[derive(clap::Args)]
struct CheckTlsArgs {
    /// Check over TLS with ALPN h2 (the default for `haproxy` when the call was recorded over
    /// TLS).
    #[arg(long)]
    ssl: bool,
    /// The server name to send (implies --ssl; `haproxy` defaults to the recorded SNI).
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// Verify the server's certificate with these PEM CA certificates (implies --ssl); without
    /// it, any certificate is accepted, as HAProxy's `verify none`.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

impl CheckTlsArgs {
    /// The TLS of the check: what the flags ask for, over what was `recorded`.
    fn options(&self, recorded: Option<check::TlsOptions>) -> Option<check::TlsOptions> {
        let asked = self.ssl || self.sni.is_some() || self.ca_file.is_some();
        if !asked {
            return recorded;
        }
        Some(check::TlsOptions {
            sni: self.sni.clone().or_else(|| recorded.and_then(|r| r.sni)),
            ca_file: self.ca_file.clone(),
        })
    }
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The server to check.
    addr: String,
    /// Bytes to send, as hex or `@FILE` (a file of hex).
    #[arg(long, value_name = "HEX|@FILE")]
    send_hex: String,
    /// Bytes the answer must contain, as hex or `@FILE`.
    #[arg(long, value_name = "HEX|@FILE")]
    expect_hex: String,
    /// How long to wait for the answer (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    /// Do not decode and print the answer.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    tls: CheckTlsArgs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 2s or 500ms"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} is not a duration like 2s or 500ms"))
}

/// `stats --interval`: a duration, more than nothing.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?}: an interval must be longer than 0"));
    }
    Ok(d)
}

/// How events are shown (shared by `read` and `capture`).
#[derive(clap::Args, Clone)]
struct OutputArgs {
    /// Output format (`-T` as tshark spells it): text, jsonl, fields (with -e), or grpcurl.
    #[arg(short = 'T', long, value_enum, default_value_t = EventFormat::Text)]
    format: EventFormat,
    /// With -T fields: a field to print, named as display filters name them (`path`,
    /// `grpc_status`, `request_headers.user-agent`); repeatable, printed in this order.
    #[arg(short = 'e', long = "field", value_name = "FIELD")]
    fields: Vec<String>,
    /// With -T fields: tshark's -E options, `header=y`, `separator=,` (or /t, /s),
    /// `quote=d|s|n`, `aggregator=,`, `occurrence=f|l|a|N`. Repeatable.
    #[arg(short = 'E', value_name = "NAME=VALUE")]
    field_options: Vec<String>,
    /// One line per call (request/response) instead of one per frame.
    #[arg(long)]
    calls: bool,
    /// Show every header under its frame or call (`-V` as tshark spells it).
    #[arg(short, long, visible_short_alias = 'V')]
    verbose: bool,
    /// Show each frame's bytes, as tshark's -x: a hex and ASCII dump under its line, `raw`
    /// (hex) in JSON Lines. Its 9-byte header and up to 64 KiB of payload; bytes the capture
    /// lacks are left out. gRPC messages show theirs too, decompressed.
    #[arg(short = 'x', long = "hex")]
    hex: bool,
    /// The time column of text lines, as tshark's -t: r (seconds since the first packet), a
    /// (local time of day), ad (local date and time), e (seconds since 1970), u, ud (UTC).
    #[arg(short = 't', long = "time-format", value_enum, value_name = "FORMAT", default_value_t = TimeArg::R, hide_possible_values = true)]
    time: TimeArg,
    /// Print only the summary (like tshark -q).
    #[arg(short, long)]
    quiet: bool,
    /// Leave out the summary at the end.
    #[arg(long)]
    no_summary: bool,
    /// Show only the events this display filter matches, on the fields of their JSON Lines form,
    /// e.g. `-Y 'event == call && grpc_status != 0'` (see the README; the summary counts all).
    #[arg(short = 'Y', long = "display-filter", value_name = "EXPR")]
    display_filter: Option<Filter>,
    /// What -T grpcurl gives grpcurl of the schemas: filled in from the schema options.
    #[arg(skip)]
    grpcurl: GrpcurlOptions,
}

impl OutputArgs {
    /// The fields and options of -T fields, or what is wrong with them.
    fn field_list(&self) -> Result<(FieldList, FieldsOptions), String> {
        let list = FieldList::parse(&self.fields)
            .map_err(|e| format!("-e: {} (at character {})", e.message, e.at))?;
        let mut opts = FieldsOptions::default();
        for o in &self.field_options {
            opts.set(o).map_err(|e| format!("-E: {e}"))?;
        }
        Ok((list, opts))
    }

    /// Frames and messages keep their bytes for `-x`, or a field or filter on `raw`.
    fn keep_bytes_in(&self, cfg: &mut Config) {
        let fields_use_raw = || {
            self.format == EventFormat::Fields
                && self.field_list().is_ok_and(|(list, _)| list.uses("raw"))
        };
        let keep = self.hex
            || self.display_filter.as_ref().is_some_and(|f| f.uses("raw"))
            || fields_use_raw();
        cfg.http2.keep_frame_bytes = keep;
        cfg.grpc.keep_bytes = keep;
    }

    /// `-T fields` naming no field of a message's decoded contents, nor of a call's decoded
    /// status details, in its fields or its filter: message bodies are then not decoded, and
    /// schemas are not harvested from reflection first.
    fn fields_without_contents(&self) -> bool {
        const CONTENTS: [&str; 6] = [
            "json",
            "fields",
            "type",
            "problem",
            "harvested",
            "grpc_status_details",
        ];
        let filter_reads = |f: &Filter| CONTENTS.iter().any(|k| f.uses(k));
        self.format == EventFormat::Fields
            && self
                .field_list()
                .is_ok_and(|(list, _)| !CONTENTS.iter().any(|k| list.uses(k)))
            && !self.display_filter.as_ref().is_some_and(filter_reads)
    }

    /// `-T fields` naming neither `json` nor `fields`, in its fields or its filter: messages are
    /// decoded for their type and problems, but not written out.
    fn fields_without_shown_bodies(&self) -> bool {
        const SHOWN: [&str; 2] = ["json", "fields"];
        self.format == EventFormat::Fields
            && self
                .field_list()
                .is_ok_and(|(list, _)| !SHOWN.iter().any(|k| list.uses(k)))
            && !self
                .display_filter
                .as_ref()
                .is_some_and(|f| SHOWN.iter().any(|k| f.uses(k)))
    }

    /// Options that do not go together, said before anything is read.
    fn check(&self) -> Result<(), ExitCode> {
        let problem = match self.format {
            EventFormat::Fields if self.fields.is_empty() => {
                Some("-T fields needs at least one -e FIELD, as -e path -e grpc_status".into())
            }
            EventFormat::Fields => match self.field_list() {
                Ok((list, _)) => unknown_field_problem("-e", list.roots(), &list.field_names()),
                Err(e) => Some(e),
            },
            _ if !self.fields.is_empty() || !self.field_options.is_empty() => {
                Some("-e and -E choose the fields of -T fields; add -T fields".into())
            }
            _ => None,
        }
        .or_else(|| {
            let filter = self.display_filter.as_ref()?;
            unknown_field_problem("-Y", filter.roots(), &filter.field_names())
        });
        match problem {
            Some(p) => {
                eprintln!("h2scope: {p}");
                Err(ExitCode::from(2))
            }
            None => Ok(()),
        }
    }
}

/// What to say of a field no event has, if one of `fields` (top-level names) is one; `dotted`
/// are the whole fields, for those named as tshark names them.
fn unknown_field_problem(flag: &str, fields: &[String], dotted: &[String]) -> Option<String> {
    let (name, near) = h2scope::output::filter::unknown_field(fields)?;
    let tshark = dotted
        .iter()
        .filter(|d| d.split('.').next() == Some(name))
        .find_map(|d| Some((d, h2scope::output::filter::tshark_equivalent(d)?)));
    let problem = match (tshark, near) {
        (Some((field, Some(ours))), _) => {
            format!("{field:?} is tshark's name for what is {ours} here")
        }
        (Some((field, None)), _) => {
            format!("{field:?} is a tshark field; h2scope names its fields otherwise")
        }
        (None, Some(n)) => format!("no event has a field {name:?} (did you mean {n:?}?)"),
        (None, None) => format!("no event has a field {name:?}"),
    };
    Some(format!(
        "{flag}: {problem}; fields are the keys of the JSON Lines events, see the README"
    ))
}

/// How traffic is decoded (shared by `read` and `capture`).
#[derive(clap::Args, Clone)]
struct DecodeArgs {
    /// Treat TCP on this port as HTTP/2 even without a preface (repeatable), like tshark's
    /// `-d tcp.port==N,http2`.
    #[arg(long = "h2-port", value_name = "PORT")]
    h2_ports: Vec<u16>,
    #[command(flatten)]
    schema: SchemaArgs,
    /// gRPC messages larger than this are reported with their length, not decoded.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    max_message_size: usize,
    /// For streams whose request headers the capture lacks: the method they call, for one
    /// stream (`CONN:STREAM=/pkg.Svc/Method`) or every stream to a server port
    /// (`PORT=/pkg.Svc/Method`). Repeatable.
    #[arg(long = "assume-path", value_name = "TARGET=PATH", value_parser = parse_assume)]
    assume_paths: Vec<AssumedPath>,
    /// Decrypt TLS connections with the secrets in this key log: what SSLKEYLOGFILE makes
    /// programs write, or Wireshark's `RSA Session-ID:` lines. Read again as it grows.
    #[arg(long = "tls-keylog", value_name = "FILE", value_parser = parse_keylog)]
    tls_keylog: Option<Arc<KeyLog>>,
    /// A tshark preference (repeatable): `tls.keylog_file:FILE` (as --tls-keylog),
    /// `uat:protobuf_search_paths:"DIR","TRUE"` (as --proto DIR; with "FALSE", as -I DIR), and
    /// `protobuf.pbf_as_hf:TRUE` (changes nothing: message fields are always shown).
    #[arg(short = 'o', value_name = "NAME:VALUE", value_parser = parse_pref)]
    prefs: Vec<Pref>,
    /// Decode as, in tshark's words (repeatable): `tcp.port==N,http2` is --h2-port N;
    /// `tcp.port==N,tls` changes nothing, as TLS is recognised on any port.
    #[arg(short = 'd', value_name = "tcp.port==N,PROTO", value_parser = parse_decode_as)]
    decode_as: Vec<Option<u16>>,
    /// TCP connections followed at once (threads share them): when that many are open, the
    /// least recently active tenth are ended, as `evicted`. One with calls in flight holds a
    /// few kB (its HPACK tables, buffers and open calls), so this bounds memory on captures of
    /// many connections open together; raise it for a busier capture point.
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    max_connections: u64,
}

impl DecodeArgs {
    /// tshark's spellings (`-o`, `-d`) folded into h2scope's own options: the last key log
    /// preference counts, and --tls-keylog before it. Without either, the key logs kept beside
    /// `files` (see [`keylog_beside`]).
    fn settle(&mut self, files: &[String]) {
        let mut keylog = None;
        for pref in self.prefs.drain(..) {
            match pref {
                Pref::KeyLog(k) => keylog = Some(k),
                Pref::ProtoSearchPath { dir, load_all } => match load_all {
                    true => self.schema.protos.push(dir),
                    false => self.schema.proto_paths.push(dir),
                },
                Pref::NoEffect => {}
            }
        }
        self.tls_keylog = self.tls_keylog.take().or(keylog);
        if self.tls_keylog.is_none() {
            self.tls_keylog = keylog_beside(files);
        }
        self.h2_ports.extend(self.decode_as.drain(..).flatten());
    }
}

/// The key logs kept beside capture files, as captures are often shared with theirs
/// (`x.pcapng` with `x.keylog` or `x.keylog.txt`; `x.pcap.gz` too), all in one: secrets are
/// found by client random, so one file's cannot be taken for another's. Each one used is
/// named on stderr; one that is not a key log is named and passed over.
fn keylog_beside(files: &[String]) -> Option<Arc<KeyLog>> {
    const CAPTURES: &[&str] = &["pcap", "pcapng", "cap"];
    let mut found: Option<KeyLog> = None;
    for file in files.iter().filter(|f| f.as_str() != "-") {
        let mut stem = PathBuf::from(file);
        if Compression::for_extension(&stem).is_some() {
            stem.set_extension("");
        }
        if !stem
            .extension()
            .is_some_and(|e| CAPTURES.iter().any(|c| e == *c))
        {
            continue;
        }
        stem.set_extension("");
        for ext in ["keylog", "keylog.txt"] {
            let candidate = stem.with_extension(ext);
            if !candidate.is_file() {
                continue;
            }
            match KeyLog::open(&candidate) {
                Ok(log) if !log.is_empty() => {
                    eprintln!(
                        "h2scope: TLS secrets from {}, found beside the capture \
                         (--tls-keylog FILE gives others, --tls-keylog /dev/null none)",
                        candidate.display()
                    );
                    let all = found.get_or_insert_with(|| KeyLog::from_text(""));
                    all.absorb(&log);
                }
                Ok(_) => {}
                Err(e) => eprintln!("h2scope: {e}; not used as the capture's key log"),
            }
        }
    }
    found.map(Arc::new)
}

/// A tshark preference h2scope understands (`-o NAME:VALUE`).
#[derive(Clone)]
enum Pref {
    KeyLog(Arc<KeyLog>),
    /// A row of Wireshark's "Protobuf search paths" table: a directory, and whether all its
    /// files are loaded (else it is searched for imports only).
    ProtoSearchPath {
        dir: PathBuf,
        load_all: bool,
    },
    /// A preference whose effect h2scope has anyway.
    NoEffect,
}

fn parse_keylog(s: &str) -> Result<Arc<KeyLog>, String> {
    KeyLog::open(std::path::Path::new(s))
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

fn parse_pref(s: &str) -> Result<Pref, String> {
    const UNDERSTOOD: &str = "h2scope reads tls.keylog_file:FILE, \
        uat:protobuf_search_paths:\"DIR\",\"TRUE\" (or \"FALSE\") and protobuf.pbf_as_hf";
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected NAME:VALUE, as tls.keylog_file:keys.log"))?;
    match name {
        "tls.keylog_file" | "ssl.keylog_file" => parse_keylog(value).map(Pref::KeyLog),
        "protobuf.pbf_as_hf" => Ok(Pref::NoEffect),
        "uat" => {
            let (table, row) = value.split_once(':').unwrap_or((value, ""));
            if table != "protobuf_search_paths" {
                return Err(format!("table {table:?} is not understood; {UNDERSTOOD}"));
            }
            match uat_row(row).as_deref() {
                Some([dir, load_all]) if ["TRUE", "FALSE"].contains(&load_all.as_str()) => {
                    Ok(Pref::ProtoSearchPath {
                        dir: PathBuf::from(dir),
                        load_all: load_all == "TRUE",
                    })
                }
                _ => Err(format!(
                    "{row:?}: expected \"DIR\",\"TRUE\" (load every file) or \"DIR\",\"FALSE\" \
                     (imports only), as Wireshark writes a row of protobuf_search_paths"
                )),
            }
        }
        _ => Err(format!(
            "preference {name:?} is not understood; {UNDERSTOOD}"
        )),
    }
}

/// The fields of a row of a Wireshark UAT table: quoted, separated by commas.
fn uat_row(row: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut rest = row.trim();
    while !rest.is_empty() {
        let (field, after) = rest.strip_prefix('"')?.split_once('"')?;
        fields.push(field.to_string());
        rest = after.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some(fields)
}

/// tshark's `-d tcp.port==N,PROTO`: the port to treat as HTTP/2, or none for TLS (recognised on
/// any port).
fn parse_decode_as(s: &str) -> Result<Option<u16>, String> {
    let usage = "expected tcp.port==N,http2 (as --h2-port N) or tcp.port==N,tls";
    let (selector, proto) = s.split_once(',').ok_or_else(|| format!("{s:?}: {usage}"))?;
    let port = (selector
        .strip_prefix("tcp.port==")
        .and_then(|p| p.parse::<u16>().ok()))
    .ok_or_else(|| format!("{selector:?}: {usage}"))?;
    match proto {
        "http2" => Ok(Some(port)),
        "tls" | "ssl" => Ok(None),
        _ => Err(format!(
            "{proto:?}: h2scope decodes HTTP/2, and TLS under it; {usage}"
        )),
    }
}

fn parse_assume(s: &str) -> Result<AssumedPath, String> {
    let (target, path) = s.split_once('=').ok_or_else(|| {
        format!("{s:?}: expected CONN:STREAM=/pkg.Svc/Method or PORT=/pkg.Svc/Method")
    })?;
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?}: a gRPC path starts with '/', as /pkg.Svc/Method"
        ));
    }
    let target = match target.split_once(':') {
        Some((c, st)) => AssumeTarget::Stream {
            conn: c
                .parse()
                .map_err(|_| format!("{c:?} is not a connection number"))?,
            stream: st
                .parse()
                .map_err(|_| format!("{st:?} is not a stream id"))?,
        },
        None => AssumeTarget::Port(
            target
                .parse()
                .map_err(|_| format!("{target:?} is not a port"))?,
        ),
    };
    Ok(AssumedPath {
        target,
        path: path.to_string(),
    })
}

/// The captures a command reads: as arguments, or with `-r` as tshark and tcpdump take them.
#[derive(clap::Args)]
struct Inputs {
    /// Capture files; `-` for standard input.
    #[arg(required_unless_present = "read_files")]
    files: Vec<String>,
    /// A capture file, as tshark and tcpdump take it (repeatable; read before the others).
    #[arg(short = 'r', long = "read-file", value_name = "FILE")]
    read_files: Vec<String>,
}

impl Inputs {
    /// `-r` files first, then the others, as one list in `files`.
    fn join(&mut self) {
        self.read_files.append(&mut self.files);
        std::mem::swap(&mut self.read_files, &mut self.files);
    }
}

#[derive(clap::Args)]
struct ReadArgs {
    #[command(flatten)]
    inputs: Inputs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    decode: DecodeArgs,
    /// Stop after this many packets (per file).
    #[arg(short = 'c', long = "count", value_name = "N")]
    count: Option<u64>,
    /// Read each file once: schemas learned from server reflection then decode only the calls
    /// after the reflection exchange (the default reads files twice to use them everywhere,
    /// except with -q, whose counts do not depend on them).
    #[arg(long)]
    single_pass: bool,
    /// Write the packets of the selected traffic (--conn, --path, --port; all packets without
    /// them) to this file, pcapng unless --pcap; `-` writes to standard output (to pipe to a
    /// compressor). Printing stops unless -P is given, as with tshark.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// Write classic pcap instead of pcapng.
    #[arg(long)]
    pcap: bool,
    /// With -w: compress the file written (`gzip`, `zstd`, `lz4` or `none`), as tshark's
    /// --compress. Default: as the file's extension says (.gz, .zst, .lz4), else none.
    #[arg(long, value_enum, value_name = "TYPE")]
    compress: Option<CompressArg>,
    /// With -w: only this connection (as `read` numbers them; repeatable).
    #[arg(long = "conn", value_name = "N")]
    conns: Vec<u64>,
    /// With -w: only the connections that carried a call to this path. (`-Y` with -w likewise
    /// writes only the connections that had an event the filter matches.)
    #[arg(long, value_name = "/pkg.Svc/Method")]
    path: Option<String>,
    /// With -w: only TCP packets from or to this port.
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// With -w: print the dissection too.
    #[arg(short = 'P', long = "print")]
    print: bool,
    /// Flush the output after each packet, as tshark's -l: to follow a capture as it is
    /// written (`tcpdump -U -w - | h2scope read -l -`). Reads on one thread.
    #[arg(short = 'l')]
    line_buffered: bool,
    /// Threads for one capture: its connections are split among them by address, and the
    /// output stays in capture order. Default: one per core for a file of 64 MB or more
    /// (decompressed) whose packets average under 512 bytes, else one. (Several files are read one per core instead; -w, and -T grpcurl unless told, read on one thread.)
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(clap::Args)]
struct TuiArgs {
    /// The capture to browse (or `-i` for a live interface).
    #[arg(
        required_unless_present_any = ["interface", "read_file"],
        conflicts_with_all = ["interface", "read_file"]
    )]
    file: Option<String>,
    /// The capture to browse, as tshark takes it.
    #[arg(
        short = 'r',
        long = "read-file",
        value_name = "FILE",
        conflicts_with = "interface"
    )]
    read_file: Option<String>,
    /// Browse live traffic on this interface (needs the `live` build feature and capture
    /// rights). Packets are recorded to a temporary file, or to `-w FILE`.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    interface: Option<String>,
    /// With -i: capture filter (BPF), as tcpdump takes it.
    #[arg(
        short = 'f',
        long = "filter",
        value_name = "BPF",
        requires = "interface"
    )]
    filter: Option<String>,
    /// With -i: keep the recorded packets in this pcapng file.
    #[arg(
        short = 'w',
        long = "write",
        value_name = "FILE",
        requires = "interface"
    )]
    write: Option<String>,
    /// The time columns, as tshark's -t: r (seconds since the first packet), a (local time
    /// of day), u (UTC time of day), e (seconds since 1970); `t` cycles through them.
    #[arg(short = 't', long = "time-format", value_enum, value_name = "FORMAT", default_value_t = TimeArg::R, hide_possible_values = true)]
    time: TimeArg,
    #[command(flatten)]
    decode: DecodeArgs,
}

fn tui(args: TuiArgs) -> ExitCode {
    use h2scope::tui::{app::App, feed::Loader, model::Model};
    // A call's detail ends with its grpcurl command, with the schema flags -T grpcurl gives.
    let (schemas, grpcurl) = match schemas_and_flags(&args.decode.schema) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if writes_stdout(args.write.as_deref().map(std::path::Path::new)) {
        eprintln!("h2scope: the TUI draws on standard output; give -w a file name");
        return ExitCode::from(2);
    }
    let compressed = args
        .write
        .as_deref()
        .and_then(|w| Compression::for_extension(std::path::Path::new(w)));
    if let Some(c) = compressed {
        eprintln!(
            "h2scope: the TUI reads its -w file back as it goes, so it writes it uncompressed; \
             give a name without .{} and compress it afterwards",
            c.extension()
        );
        return ExitCode::from(2);
    }
    let cfg = config(&args.decode);
    // Sources are opened before the terminal is taken, so that what goes wrong is readable.
    let (app, loader) = match (&args.file, &args.interface) {
        (Some(file), _) => match Loader::file(file, &cfg, schemas.clone()) {
            Ok((loader, store)) => {
                let mut model = Model::new(store);
                model.grpcurl = grpcurl;
                let mut app = App::new(model, file);
                app.tls_keys = cfg.tls_keys.clone();
                (app, loader)
            }
            Err(e) => {
                eprintln!("h2scope: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, Some(iface)) => {
            match Loader::live(
                iface,
                args.filter.as_deref(),
                &cfg,
                schemas.clone(),
                args.write.as_deref(),
            ) {
                Ok((loader, store, recording)) => {
                    let mut model = Model::new(store);
                    model.grpcurl = grpcurl;
                    let mut app = App::new(model, &recording);
                    app.tls_keys = cfg.tls_keys.clone();
                    app.label = format!("live on {iface}");
                    app.follow = true;
                    (app, loader)
                }
                Err(e) => {
                    eprintln!("h2scope: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        (None, None) => unreachable!("clap requires a file or -i"),
    };
    let mut app = app;
    app.time = args.time.into();
    match h2scope::tui::run(app, Some(loader), schemas) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("h2scope: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
struct AnalysisArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// `text` or `jsonl` (one object per connection for health, one for stats).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// `stats`: count only the calls this display filter matches (fields of JSON Lines call
    /// events); `health`: show only the connections whose report matches (fields of its JSON
    /// form), e.g. `-Y 'client_side.pings > 0'`.
    #[arg(short = 'Y', long = "display-filter", value_name = "EXPR")]
    display_filter: Option<Filter>,
    #[command(flatten)]
    decode: DecodeArgs,
    /// Threads for one capture: its connections are split among them by address, each
    /// thread analyses its own, and the reports come out as one thread writes them. Default:
    /// one per core for a file of 64 MB or more (decompressed) whose packets average under
    /// 512 bytes, else one. A filter on `conn` runs on one thread.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// `stats`: also count calls by interval of time, by when they ended (`10s`, `500ms`, `1m`;
    /// a bare number is seconds), intervals starting on multiples of it since 1970 (UTC), as
    /// a metrics system buckets them.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    interval: Option<Duration>,
}

#[derive(clap::Args)]
struct CaptureArgs {
    /// Interface to capture on (`any` for all, as `tcpdump -i any`).
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        required_unless_present = "list_interfaces"
    )]
    interface: Option<String>,
    /// List the interfaces and exit.
    #[arg(short = 'D', long = "list-interfaces")]
    list_interfaces: bool,
    /// Capture filter in BPF syntax, as tcpdump takes it (e.g. 'tcp port 50051').
    #[arg(short = 'f', long = "filter", value_name = "BPF")]
    filter: Option<String>,
    /// Record every captured packet to this file (pcapng unless --pcap) while dissecting. `-`
    /// writes to standard output, as `tcpdump -w -`: then only the summary is shown, on stderr.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// Write classic pcap instead of pcapng.
    #[arg(long)]
    pcap: bool,
    /// With -w: compress the file written (`gzip`, `zstd`, `lz4` or `none`), as tshark's
    /// --compress. Default: as the file's extension says (.gz, .zst, .lz4), else none.
    #[arg(long, value_enum, value_name = "TYPE")]
    compress: Option<CompressArg>,
    /// With -w: start a new file when the current one reaches this many megabytes.
    #[arg(long, value_name = "MB")]
    ring_size: Option<u64>,
    /// With --ring-size: keep this many files, deleting the oldest.
    #[arg(long, value_name = "N", default_value_t = 10)]
    ring_files: usize,
    /// Stop after this many packets.
    #[arg(short = 'c', long = "count", value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Bytes captured per packet.
    #[arg(short = 's', long = "snaplen", default_value_t = 262_144)]
    snaplen: u32,
    /// The kernel's capture buffer in KiB, as tcpdump's -B. Packets are handed over as they
    /// come, each in a slot as large as the interface's largest packet: the 2 MiB most tools
    /// default to hold only 32 of loopback's 64 KiB packets, and a burst overflows them.
    #[arg(
        short = 'B',
        long = "buffer-size",
        value_name = "KIB",
        default_value_t = live::DEFAULT_BUFFER_KIB
    )]
    buffer_size: u32,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    decode: DecodeArgs,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // From here on, `-r FILE` and a plain FILE are one list, tshark's `-o` and `-d` are
    // h2scope's own options, and a key log kept beside the captures is one given.
    match &mut cli.command {
        Command::Read(a) => {
            a.inputs.join();
            a.decode.settle(&a.inputs.files);
        }
        Command::Health(a) | Command::Stats(a) => {
            a.inputs.join();
            a.decode.settle(&a.inputs.files);
        }
        Command::Tui(a) => {
            a.file = a.file.take().or(a.read_file.take());
            a.decode.settle(a.file.as_slice());
        }
        Command::Haproxy(a) => {
            a.file = a.file.take().or(a.read_file.take());
            if a.tls_keylog.is_none() {
                a.tls_keylog = keylog_beside(a.file.as_slice());
            }
        }
        Command::Capture(a) => a.decode.settle(&[]),
        Command::Check(_) => {}
    }
    match cli.command {
        Command::Read(args) => read(args),
        Command::Capture(args) => capture(args),
        Command::Health(args) => analyse(args, true),
        Command::Tui(args) => tui(args),
        Command::Stats(args) => analyse(args, false),
        Command::Haproxy(args) => haproxy(*args),
        Command::Check(args) => check(args),
    }
}

/// The output a command writes: its format, and the display filter events pass first.
struct Out<W: Write> {
    fmt: Fmt<W>,
    filter: Option<Filter>,
}

enum Fmt<W: Write> {
    Text(Text<W>),
    Jsonl(JsonLines<W>),
    Fields(Fields<W>),
    Grpcurl(Grpcurl<W>),
}

impl<W: Write> Sink for Out<W> {
    fn wants(&mut self) -> h2scope::event::Wants<'_> {
        let wants = match &mut self.fmt {
            Fmt::Text(t) => t.wants(),
            Fmt::Jsonl(j) => j.wants(),
            Fmt::Fields(f) => f.wants(),
            // The filter chooses calls: their messages are needed whatever it says.
            Fmt::Grpcurl(g) => return g.wants(),
        };
        // What the filter cannot show is not built.
        match &self.filter {
            Some(f) => wants.narrowed(f.may_show_frames(), f.may_show_messages()),
            None => wants,
        }
    }
    #[inline]
    fn event(&mut self, event: Event) {
        if self.filter.is_some() {
            return self.filtered(event);
        }
        self.show(event);
    }
    fn line(&mut self, text: &[u8]) {
        match &mut self.fmt {
            Fmt::Text(t) => t.line(text),
            Fmt::Jsonl(j) => j.line(text),
            Fmt::Fields(f) => f.line(text),
            Fmt::Grpcurl(g) => g.line(text),
        }
    }
    fn time_base(&mut self, first_ts_ns: i64) {
        if let Fmt::Text(t) = &mut self.fmt {
            t.set_base(first_ts_ns);
        }
    }
    fn closed(&self) -> bool {
        match &self.fmt {
            Fmt::Text(t) => t.closed(),
            Fmt::Jsonl(j) => j.closed(),
            Fmt::Fields(f) => f.closed(),
            Fmt::Grpcurl(g) => g.closed(),
        }
    }
}

impl<W: Write> Out<W> {
    #[inline]
    fn show(&mut self, event: Event) {
        match &mut self.fmt {
            Fmt::Text(t) => t.event(event),
            Fmt::Jsonl(j) => j.event(event),
            Fmt::Fields(f) => f.event(event),
            Fmt::Grpcurl(g) => g.event(event),
        }
    }

    /// Apart from the unfiltered path, which it would slow down when inlined there.
    #[inline(never)]
    fn filtered(&mut self, event: Event) {
        // -T grpcurl shows calls, made of the request messages before them: those all pass.
        let chosen = matches!(self.fmt, Fmt::Grpcurl(_)) && !matches!(event, Event::Call(_));
        if chosen || self.filter.as_ref().is_none_or(|f| f.matches(&event)) {
            self.show(event);
        } else if let (Fmt::Grpcurl(g), Event::Call(c)) = (&mut self.fmt, &event) {
            // Its request messages passed, to make its command: they go with it.
            g.forget(c);
        }
    }

    fn flush(&mut self) {
        match &mut self.fmt {
            Fmt::Text(t) => t.flush(),
            Fmt::Jsonl(j) => j.flush(),
            Fmt::Fields(f) => f.flush(),
            Fmt::Grpcurl(g) => g.flush(),
        }
    }

    /// A file or capture has ended: -T grpcurl says which calls had no command.
    fn end_of_input(&mut self, name: &str) {
        if let Fmt::Grpcurl(g) = &mut self.fmt {
            let not_grpc = g.file_done();
            if not_grpc > 0 {
                eprintln!(
                    "h2scope: {name}: {not_grpc} HTTP/2 request(s) not gRPC, no grpcurl command for them"
                );
            }
        }
    }

    fn text(&mut self) -> Option<&mut Text<W>> {
        match &mut self.fmt {
            Fmt::Text(t) => Some(t),
            Fmt::Jsonl(_) | Fmt::Fields(_) | Fmt::Grpcurl(_) => None,
        }
    }

    fn io_error(&mut self) -> Option<io::Error> {
        match &mut self.fmt {
            Fmt::Text(t) => t.io_error(),
            Fmt::Jsonl(j) => j.io_error(),
            Fmt::Fields(f) => f.io_error(),
            Fmt::Grpcurl(g) => g.io_error(),
        }
    }
}

/// The schemas the options ask for, and what -T grpcurl (and the TUI) give grpcurl of them
/// ([`GrpcurlOptions::load`]), or the exit code after saying what is wrong with them.
fn schemas_and_flags(args: &SchemaArgs) -> Result<(Schemas, GrpcurlOptions), ExitCode> {
    GrpcurlOptions::load(&args.protos, &args.proto_paths, &args.descriptor_sets).map_err(|e| {
        eprintln!("h2scope: schema: {e}");
        ExitCode::from(2)
    })
}

/// The schemas the options ask for, or the exit code after saying what is wrong with them.
fn schemas_for(args: &SchemaArgs) -> Result<Schemas, ExitCode> {
    schemas_and_flags(args).map(|(schemas, _)| schemas)
}

fn config(args: &DecodeArgs) -> Config {
    let mut cfg = Config::default();
    cfg.http2.forced_ports = args.h2_ports.clone();
    cfg.http2.assumed_paths = args.assume_paths.clone();
    // Without a key log, an empty one: pcapng files may carry their own secrets.
    cfg.tls_keys = Some(
        args.tls_keylog
            .clone()
            .unwrap_or_else(|| Arc::new(KeyLog::from_text(""))),
    );
    cfg.grpc.max_message_size = args.max_message_size;
    cfg.grpc.max_decompressed_size = args.max_message_size.max(cfg.grpc.max_decompressed_size);
    cfg.flows.max_flows = usize::try_from(args.max_connections).unwrap_or(usize::MAX);
    cfg
}

fn make_sink<W: Write>(o: &OutputArgs, quiet: bool, out: W) -> Counting<Out<BufWriter<W>>> {
    let out = BufWriter::with_capacity(1 << 16, out);
    let quiet = o.quiet || quiet;
    let fmt = match o.format {
        EventFormat::Text => Fmt::Text(Text::new(out, text_options(o, quiet))),
        EventFormat::Jsonl => Fmt::Jsonl(JsonLines::new(out, o.calls, quiet)),
        // A summary alone is the text one: a line of fields has nothing to show.
        EventFormat::Fields | EventFormat::Grpcurl if quiet => {
            Fmt::Text(Text::new(out, text_options(o, quiet)))
        }
        EventFormat::Grpcurl => Fmt::Grpcurl(Grpcurl::new(out, o.grpcurl.clone())),
        EventFormat::Fields => {
            let (list, opts) = o.field_list().expect("checked by OutputArgs::check");
            Fmt::Fields(Fields::new(out, list, opts, o.calls))
        }
    };
    let inner = Out {
        fmt,
        filter: o.display_filter.clone(),
    };
    // Quiet outputs show no event: the dissection only counts them.
    if quiet {
        Counting::counts_only(inner)
    } else {
        Counting::new(inner)
    }
}

fn print_summary<W: Write>(sink: &mut Counting<Out<W>>, summary: &Summary) {
    match &mut sink.inner.fmt {
        Fmt::Text(t) => t.summary(summary),
        Fmt::Jsonl(j) => j.summary(summary),
        // Lines of fields end without a summary, as tshark's do (-q prints the text one), and
        // a script of grpcurl commands has none either.
        Fmt::Fields(f) => f.flush(),
        Fmt::Grpcurl(g) => g.flush(),
    }
}

fn capture_warnings(reader: &CaptureReader) -> Vec<String> {
    reader.warnings().iter().map(ToString::to_string).collect()
}

/// How `--compress` names a compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CompressArg {
    None,
    Gzip,
    Zstd,
    Lz4,
}

/// The compression of a file written to `path`: as `--compress` says, else as its extension.
fn compression_for(path: &std::path::Path, arg: Option<CompressArg>) -> Option<Compression> {
    match arg {
        None => Compression::for_extension(path),
        Some(CompressArg::None) => None,
        Some(CompressArg::Gzip) => Some(Compression::Gzip),
        Some(CompressArg::Zstd) => Some(Compression::Zstd),
        Some(CompressArg::Lz4) => Some(Compression::Lz4),
    }
}

/// Opens the `-w` file (pcapng unless `--pcap`); says on stderr why it cannot.
fn open_write(
    path: &std::path::Path,
    pcap: bool,
    ring_size: Option<u64>,
    ring_files: usize,
    compress: Option<CompressArg>,
) -> Result<CaptureFile, ExitCode> {
    let format = if pcap {
        WriteFormat::Pcap
    } else {
        WriteFormat::Pcapng
    };
    let compression = compression_for(path, compress);
    CaptureFile::create(path, format, ring_size, ring_files, compression).map_err(|e| {
        eprintln!("h2scope: {}: cannot write: {e}", write_target(path));
        ExitCode::FAILURE
    })
}

/// How messages name a `-w` target: `-` is standard output.
fn write_target(path: &std::path::Path) -> String {
    if path == std::path::Path::new("-") {
        "standard output".to_string()
    } else {
        path.display().to_string()
    }
}

/// `-w -`: the capture goes to standard output, so nothing else may.
fn writes_stdout(write: Option<&std::path::Path>) -> bool {
    write == Some(std::path::Path::new("-"))
}

/// Progress on stderr for long runs on a terminal: bytes, packets/s, ETA. Silent when stderr is
/// not a terminal, with --quiet, for standard input, and while output streams to the same
/// terminal.
struct Progress {
    /// The file's size, when it is a regular file; a pipe (`<(…)`) has none.
    total: Option<u64>,
    /// Bytes read from the file: compressed bytes for a compressed file, as its size is. A
    /// pass with a reader of its own gives its bytes to [`Progress::at`] instead.
    position: Option<Position>,
    bytes: u64,
    /// Before the line: what the pass is for.
    label: &'static str,
    /// Whether a packet came yet.
    begun: bool,
    started: Instant,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new(path: &str, reader: &CaptureReader, quiet: bool) -> Option<Progress> {
        if quiet || path == "-" || !io::stderr().is_terminal() {
            return None;
        }
        let meta = std::fs::metadata(path).ok()?;
        Some(Progress {
            total: (meta.is_file() && meta.len() > 0).then_some(meta.len()),
            position: Some(reader.position()),
            bytes: 0,
            label: "",
            begun: false,
            started: Instant::now(),
            last: Instant::now(),
            shown: false,
        })
    }

    /// For the pass that gathers schemas from reflection before the output starts, through a
    /// reader of its own (`reader` is the file's, for what it knows of the file): the pass says
    /// the bytes of the records it read. Those are decompressed bytes, so a compressed file's
    /// line has no share of its size.
    fn schema_pass(path: &str, reader: &CaptureReader, quiet: bool) -> Option<Progress> {
        let mut p = Progress::new(path, reader, quiet)?;
        p.position = None;
        p.label = "reading for schemas first: ";
        if reader.compression().is_some() {
            p.total = None;
        }
        Some(p)
    }
}

/// The progress line: position, rate and time left, or only position and rate when the size
/// of the input is unknown.
fn progress_line(bytes: u64, total: Option<u64>, packets: u64, secs: f64) -> String {
    let secs = secs.max(0.001);
    let rate = packets as f64 / secs;
    let Some(total) = total else {
        return format!(
            "{:.0} MB, {:.0} MB/s, {rate:.0} packets/s",
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / secs
        );
    };
    // A file still being written can outgrow the size it had when opened.
    let done = bytes.min(total) as f64;
    let left = (total as f64 - done).max(0.0);
    format!(
        "{:.0} / {:.0} MB ({:.0}%), {rate:.0} packets/s, ETA {:.0} s",
        done / 1e6,
        total as f64 / 1e6,
        100.0 * done / total.max(1) as f64,
        left / (done / secs).max(1.0)
    )
}

trait Tick {
    fn tick(&mut self, packets: u64);
    fn done(&mut self);
    /// A pass that counts its own bytes: `bytes` read so far, in `packets`.
    fn at(&mut self, bytes: u64, packets: u64);
}

impl Tick for Option<Progress> {
    fn tick(&mut self, packets: u64) {
        let Some(p) = self.as_mut() else { return };
        if !p.begun {
            // The clock starts with the first packet: a pass before it (the TUI's schema
            // harvest) would otherwise count as slow reading and skew the rate and the ETA.
            p.begun = true;
            p.started = Instant::now();
            p.last = p.started;
        }
        // Looking at the clock every packet would cost more than the packet.
        if packets % 1024 != 0 || p.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        p.last = Instant::now();
        let line = progress_line(
            p.position.as_ref().map_or(p.bytes, Position::bytes),
            p.total,
            packets,
            p.started.elapsed().as_secs_f64(),
        );
        eprint!("\r{}{line}   ", p.label);
        p.shown = true;
    }

    fn at(&mut self, bytes: u64, packets: u64) {
        if let Some(p) = self.as_mut() {
            p.bytes = bytes;
        }
        self.tick(packets);
    }

    fn done(&mut self) {
        if self.as_ref().is_some_and(|p| p.shown) {
            eprint!("\r{:70}\r", "");
        }
    }
}

/// Connections that carried a call to `path` and had an event the display filter matches
/// (whichever is given), found by a first pass: what `-w` writes with `--path` or `-Y`.
fn conns_selected(
    file: &str,
    path: Option<&str>,
    filter: Option<&Filter>,
    cfg: &Config,
    schemas: Schemas,
) -> HashSet<u64> {
    struct Conns<'a> {
        path: Option<&'a str>,
        filter: Option<&'a Filter>,
        by_path: HashSet<u64>,
        by_filter: HashSet<u64>,
    }
    impl Sink for Conns<'_> {
        fn wants(&mut self) -> h2scope::event::Wants<'_> {
            use h2scope::event::Wants;
            match self.filter {
                // What the filter cannot match is not built.
                Some(f) => Wants::Everything.narrowed(f.may_show_frames(), f.may_show_messages()),
                None => Wants::Calls(None),
            }
        }
        fn event(&mut self, e: Event) {
            let Some(conn) = e.conn() else {
                return;
            };
            if let (Some(path), Event::Call(c)) = (self.path, &e) {
                // `Call::path` without its string: UTF-8 paths compare as they lie.
                let got = c
                    .request_header(":path")
                    .map(h2scope::http2::call::lossless_str);
                if got.as_deref() == Some(path) {
                    self.by_path.insert(conn);
                }
            }
            if let Some(f) = self.filter {
                if !self.by_filter.contains(&conn) && f.matches(&e) {
                    self.by_filter.insert(conn);
                }
            }
        }
    }
    let mut found = Conns {
        path,
        filter,
        by_path: HashSet::new(),
        by_filter: HashSet::new(),
    };
    if let Ok(mut reader) = open_capture(file, cfg) {
        let mut d = Dissector::with_schemas(cfg.clone(), schemas);
        let _ = reader.for_each_packet(|p| {
            d.packet(p, &mut found);
            true
        });
        d.finish(&mut found);
    }
    match (path, filter) {
        (Some(_), Some(_)) => found
            .by_path
            .intersection(&found.by_filter)
            .copied()
            .collect(),
        (Some(_), None) => found.by_path,
        _ => found.by_filter,
    }
}

enum FileOutcome {
    Done {
        failed: bool,
    },
    Failed,
    /// Stop everything with this exit code (output closed, or a write failed).
    Stop(ExitCode),
}

/// Which events the output shows, so that threads send only those (the counts for the summary
/// are kept by the threads themselves), formatted by the threads.
fn route(o: &OutputArgs, silent: bool) -> Box<dyn Route> {
    let route: Box<dyn Route> = match o.format {
        _ if o.quiet || silent => return Box::new(h2scope::parallel::DropAll),
        EventFormat::Jsonl if o.calls => Box::new(h2scope::output::jsonl::RouteCalls),
        EventFormat::Jsonl => Box::new(h2scope::output::jsonl::route_all),
        EventFormat::Text => Box::new(TextRoute(text_options(o, false))),
        EventFormat::Fields => {
            let (list, opts) = o.field_list().expect("checked by OutputArgs::check");
            Box::new(FieldsRoute::new(list, opts, o.calls))
        }
        // Calls and their request messages go to the writing thread, which makes the commands
        // and applies the filter to the calls.
        EventFormat::Grpcurl => return Box::new(h2scope::output::grpcurl::RouteRequests),
    };
    match &o.display_filter {
        Some(f) => Box::new(FilterRoute::new(f.clone(), route)),
        None => route,
    }
}

fn text_options(o: &OutputArgs, quiet: bool) -> TextOptions {
    TextOptions {
        calls_only: o.calls,
        verbose: o.verbose,
        hex: o.hex,
        quiet: o.quiet || quiet,
        time: o.time.into(),
    }
}

/// Fragments of IP datagrams not yet whole, held while `read -w` selects by connection or
/// port: a datagram's connection is known only with its last fragment, and its earlier ones
/// are written just before it (so a file cut out of a capture reassembles as the capture did).
/// Held bytes are bounded as the defragmenter's are; the oldest go first.
#[derive(Default)]
struct HeldFragments {
    packets: std::collections::VecDeque<(FragmentKey, OwnedPacket)>,
    bytes: usize,
}

impl HeldFragments {
    fn hold(&mut self, key: FragmentKey, p: &h2scope::capture::Packet<'_>) {
        self.bytes += p.data.len();
        self.packets.push_back((key, p.to_owned_packet()));
        while self.bytes > h2scope::capture::defrag::MAX_BYTES {
            match self.packets.pop_front() {
                Some((_, p)) => self.bytes -= p.data.len(),
                None => break,
            }
        }
    }

    /// The fragments held of datagram `key`, in capture order.
    fn take(&mut self, key: FragmentKey) -> Vec<OwnedPacket> {
        let (taken, kept): (Vec<_>, Vec<_>) = self.packets.drain(..).partition(|(k, _)| *k == key);
        self.packets = kept.into();
        self.bytes -= taken.iter().map(|(_, p)| p.data.len()).sum::<usize>();
        taken.into_iter().map(|(_, p)| p).collect()
    }
}

/// Reads one capture file into the sink (the body of `read`, per file).
fn read_file<W: Write>(
    file: &str,
    args: &ReadArgs,
    base_schemas: &Schemas,
    sink: &mut Counting<Out<W>>,
    silent: bool,
    shards: usize,
) -> FileOutcome {
    let mut failed = false;
    let mut cfg = config(&args.decode);
    args.output.keep_bytes_in(&mut cfg);
    let Some(mut reader) = open_input(file, &cfg) else {
        return FileOutcome::Failed;
    };
    // Nothing shown needs the messages' contents: skip decoding them (counts stay).
    cfg.grpc.bodies = if args.shows_little(silent) {
        Bodies::Skip
    } else if args.output.fields_without_shown_bodies() {
        Bodies::Check
    } else {
        Bodies::Show
    };
    let limit = args.count.unwrap_or(u64::MAX);
    // Schemas from reflection exchanges anywhere in the file apply to every call in it, so a
    // file (not a pipe) is read twice: unless nothing shown depends on them, as for a summary
    // (its counts do not) or -w without -P (nothing shown).
    let shows_contents = !(args.output.quiet || silent || args.output.fields_without_contents());
    // Not over lines streaming to the same terminal, which would break into it.
    let streaming_here = !silent && io::stdout().is_terminal();
    let quiet_progress = args.output.quiet || args.inputs.files.len() > 1 || streaming_here;
    let schemas = if args.single_pass || !rereadable(file) || !shows_contents {
        base_schemas.clone()
    } else {
        // The output waits for this pass: a key log makes it read the whole file.
        let mut progress = Progress::schema_pass(file, &reader, quiet_progress);
        let (mut packets, mut bytes) = (0u64, 0u64);
        let schemas = if shards > 1 {
            h2scope::parallel::harvest(file, base_schemas.clone(), &cfg, limit, shards, |p| {
                packets += 1;
                bytes += p.data.len() as u64 + 16;
                progress.at(bytes, packets);
            })
        } else {
            harvest_schemas_with(file, base_schemas.clone(), &cfg, limit, u64::MAX, |b, n| {
                progress.at(b, n);
                true
            })
        };
        progress.done();
        schemas
    };
    let filter = args.output.display_filter.as_ref();
    let selected_conns = match (&args.write, args.path.as_deref(), filter) {
        (Some(_), None, None) | (None, _, _) => None,
        (Some(_), path, filter) => Some(conns_selected(file, path, filter, &cfg, schemas.clone())),
    };
    let mut writer = match args
        .write
        .as_deref()
        .map(|p| open_write(p, args.pcap, None, 1, args.compress))
    {
        None => None,
        Some(Ok(w)) => Some(w),
        Some(Err(code)) => return FileOutcome::Stop(code),
    };
    let mut write_error = None;
    let mut written = 0u64;
    let mut held = HeldFragments::default();
    // -w writes a selection: fragments wait for their datagram's connection.
    let selects = !args.conns.is_empty() || selected_conns.is_some() || args.port.is_some();
    sink.tally = Default::default();
    let mut seen = 0u64;
    let mut progress = Progress::new(file, &reader, quiet_progress);
    // A large file without -w: its connections split across threads.
    let mut sharded = None;
    if shards > 1 && writer.is_none() {
        // The threads format the lines, text times included (see `route`).
        let outcome = h2scope::parallel::dissect(
            &mut reader,
            &cfg,
            &schemas,
            shards,
            limit,
            &*route(&args.output, silent),
            &mut sink.inner,
            |_| {
                progress.tick(seen);
                seen += 1;
            },
        );
        sink.tally.merge(&outcome.tally);
        sharded = Some((outcome.result, outcome.stats));
    }
    // Secrets of the TLS connections written go into a pcapng output with them.
    let embed_keys = cfg
        .tls_keys
        .clone()
        .filter(|_| writer.is_some() && !args.pcap);
    let mut dissector = Dissector::with_schemas(cfg, schemas);
    let result = if let Some((result, _)) = &mut sharded {
        std::mem::replace(result, Ok(()))
    } else {
        reader.for_each_packet(|pkt| {
            progress.tick(seen);
            if let Some(t) = sink.inner.text() {
                t.set_base(pkt.ts_ns);
            }
            let conn = dissector.packet(pkt, sink);
            if let Some(w) = writer.as_mut() {
                let fragment = dissector.last_fragment().filter(|_| selects);
                match (fragment, conn) {
                    // A datagram's connection is known with its last fragment: the others
                    // wait for it.
                    (Some(key), None) => held.hold(key, pkt),
                    _ => {
                        let by_conn =
                            args.conns.is_empty() || conn.is_some_and(|c| args.conns.contains(&c));
                        let by_path = selected_conns
                            .as_ref()
                            .is_none_or(|set| conn.is_some_and(|c| set.contains(&c)));
                        let by_port = args.port.is_none_or(|p| {
                            dissector
                                .last_ports()
                                .is_some_and(|(a, b)| a == p || b == p)
                        });
                        let earlier = fragment.map(|k| held.take(k)).unwrap_or_default();
                        if by_conn && by_path && by_port && write_error.is_none() {
                            for p in earlier {
                                match w.write_packet(p.link, p.ts_ns, &p.data, p.orig_len) {
                                    Ok(()) => written += 1,
                                    Err(e) => write_error = Some(e),
                                }
                            }
                            // Secrets to embed only once some are known (given, or met in
                            // the file).
                            if let Some(keys) = embed_keys.as_deref().filter(|k| !k.is_empty()) {
                                if let Ok(seg) = link::decode(pkt.link, pkt.data) {
                                    if let Err(e) = w.embed_tls_secrets(keys, seg.payload) {
                                        write_error = Some(e);
                                    }
                                }
                            }
                            match w.write_packet(pkt.link, pkt.ts_ns, pkt.data, pkt.orig_len) {
                                Ok(()) => written += 1,
                                Err(e) => write_error = Some(e),
                            }
                        }
                    }
                }
            }
            if args.line_buffered {
                sink.inner.flush();
            }
            seen += 1;
            // Without -w, a closed output is the end (`| head`); with it, the file goes on.
            seen < limit && (writer.is_some() || !sink.closed())
        })
    };
    progress.done();
    if let Err(e) = &result {
        // Everything decodable so far is still shown; the error says where reading stopped
        // (the threads have put it among the events already).
        if sharded.is_none() {
            sink.event(Event::Error(ErrorEvent {
                origin: None,
                stream: None,
                kind: ErrorKind::Capture,
                message: e.to_string(),
            }));
        }
        eprintln!("h2scope: {e}");
        failed = true;
    }
    if let Some(w) = writer.as_mut() {
        if let Some(e) = write_error.or_else(|| w.finish().err()) {
            eprintln!(
                "h2scope: writing {}: {e}",
                args.write
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            return FileOutcome::Stop(ExitCode::FAILURE);
        }
        eprintln!(
            "h2scope: wrote {written} packets to {}",
            args.write
                .as_ref()
                .map(|p| write_target(p))
                .unwrap_or_default()
        );
    }
    let stats = match sharded {
        Some((_, stats)) => stats,
        None => dissector.finish(sink),
    };
    sink.inner.end_of_input(file);
    let summary = Summary {
        file: file.to_string(),
        stats,
        tally: sink.tally.clone(),
        warnings: capture_warnings(&reader),
        live: None,
    };
    if !args.output.no_summary && !silent {
        print_summary(sink, &summary);
    } else {
        // What is still buffered goes out now, so that a failed write is told.
        sink.inner.flush();
    }
    if let Some(e) = sink.inner.io_error() {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return FileOutcome::Stop(ExitCode::SUCCESS);
        }
        eprintln!("h2scope: writing output: {e}");
        return FileOutcome::Stop(ExitCode::FAILURE);
    }
    FileOutcome::Done { failed }
}

impl ReadArgs {
    /// Only counts or calls are shown (`-q`, `--calls`, or `-w` without `-P`), or fields
    /// without message contents: message contents are not decoded, and the output costs little
    /// beside the dissection.
    fn shows_little(&self, silent: bool) -> bool {
        self.output.quiet || self.output.calls || silent || self.output.fields_without_contents()
    }
}

/// Whether one file is worth splitting across threads by default: 64 MB or more (once
/// decompressed) of packets averaging under 512 bytes. The threads share out the work done per
/// packet and the formatting of the output; the reading thread copies every segment to them
/// and merges their lines. On full-size segments that costs more than the split saves, whatever
/// the output (91 MB of 1.5 kB packets, one thread against two: `-q` 0.032 against 0.048 s;
/// since bulk bytes are written as hex with SIMD, JSON Lines 46 against 73 ms and text 43
/// against 53 ms; TLS, decrypted, text 49 against 52 ms and JSON Lines 54 against 80 ms).
fn worth_threads(file: &str) -> bool {
    worth_threads_from(file, 64 << 20)
}

fn worth_threads_from(file: &str, min_file: u64) -> bool {
    const MAX_AVERAGE_PACKET: u64 = 512;
    // Packets are judged on the first 2000 or 2 MB. What a compressed file holds is judged
    // from its first 8 MB, decompressed: captures compress from 2 to 30 times, so its size on
    // disk says little about the work it holds. The estimate comes out low by what the
    // decoder holds back (zstd its window, 2 MiB by default; LZ4 a block, up to 4 MiB), so it
    // needs to reach half the size asked of a plain file (threads win from a few MB anyway).
    const SAMPLE: u64 = 2 << 20;
    const COMPRESSED_SAMPLE: u64 = 8 << 20;
    let Ok(meta) = std::fs::metadata(file) else {
        return false;
    };
    // A pipe (`<(…)`, a FIFO) has no size, and what the sample read would be gone from it.
    if !rereadable(file) {
        return false;
    }
    let Ok(mut reader) = CaptureReader::open(file) else {
        return false;
    };
    let compressed = reader.compression().is_some();
    let big_enough = |size: u64| size >= min_file;
    if !compressed && !big_enough(meta.len()) {
        return false;
    }
    if compressed && meta.len() < min_file / 64 {
        return false;
    }
    let position = reader.position();
    let (mut packets, mut data, mut records) = (0u64, 0u64, 0u64);
    let mut to_the_end = true;
    let _ = reader.for_each_packet(|p| {
        packets += 1;
        data += p.data.len() as u64;
        records += p.data.len() as u64 + 16;
        to_the_end = if compressed {
            records < COMPRESSED_SAMPLE
        } else {
            records < SAMPLE && packets < 2000
        };
        to_the_end
    });
    if compressed {
        // The records handed out trail what was decompressed by the reader's buffer: a
        // little, against the sample.
        let size = if to_the_end {
            records
        } else {
            (meta.len() as u128 * records as u128 / position.bytes().max(1) as u128) as u64
        };
        if !big_enough(size.saturating_mul(2)) {
            return false;
        }
    }
    packets > 0 && data / packets < MAX_AVERAGE_PACKET
}

/// Sends what a file's output writes to the main thread, which prints the files in order.
struct ChannelWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn read(mut args: ReadArgs) -> ExitCode {
    if let Err(code) = args.output.check() {
        return code;
    }
    let base_schemas = match schemas_and_flags(&args.decode.schema) {
        Ok((schemas, flags)) => {
            args.output.grpcurl = flags;
            schemas
        }
        Err(code) => return code,
    };
    if args.write.is_some() && args.inputs.files.len() > 1 {
        eprintln!("h2scope: -w writes the selection of one capture; give one file");
        return ExitCode::from(2);
    }
    let selects = args.path.is_some() || args.output.display_filter.is_some();
    if let Some(pipe) = args
        .inputs
        .files
        .iter()
        .find(|f| args.write.is_some() && selects && !rereadable(f))
    {
        eprintln!(
            "h2scope: -w with --path or -Y reads the capture twice (first to find the connections), \
             and {} can be read only once; save it to a file first",
            if pipe == "-" { "standard input" } else { pipe.as_str() }
        );
        return ExitCode::from(2);
    }
    if args.print && writes_stdout(args.write.as_deref()) {
        eprintln!(
            "h2scope: -P prints to standard output, where -w - writes the capture; write it to a file"
        );
        return ExitCode::from(2);
    }
    let silent = args.write.is_some() && !args.print;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !one_file_per_core(&args.inputs.files, threads) {
        let mut sink = make_sink(&args.output, silent, io::stdout().lock());
        // One file (or a pipe): a large one is split across the cores. The threads also
        // format the lines; the writing thread only puts them in order.
        return exit_code(args.inputs.files.iter().map(|file| {
            // The commands of -T grpcurl are all made on the writing thread: the workers would
            // only build events for it (93 MB of small packets: 2.4 s on one thread, 3.0 s on two).
            let shards = match args.output.format {
                // Each packet's lines go out as it is read.
                _ if args.line_buffered => 1,
                EventFormat::Grpcurl => args.threads.unwrap_or(1),
                _ => shards_for(file, args.threads, threads),
            };
            read_file(file, &args, &base_schemas, &mut sink, silent, shards)
        }));
    }
    files_in_parallel(args.inputs.files.len(), threads, |i, out| {
        let mut sink = make_sink(&args.output, silent, out);
        read_file(
            &args.inputs.files[i],
            &args,
            &base_schemas,
            &mut sink,
            silent,
            1,
        )
    })
}

/// Several files: one worker per core (at most `threads`) takes the files in turn, and
/// `per_file(i, out)` handles file `i`; each file's output goes through its own bounded channel,
/// and the files are printed in the order given.
fn files_in_parallel(
    n: usize,
    threads: usize,
    per_file: impl Fn(usize, ChannelWriter) -> FileOutcome + Sync,
) -> ExitCode {
    let workers = threads.min(n);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| std::sync::mpsc::sync_channel(64)).unzip();
    let outcomes: Vec<std::sync::Mutex<Option<FileOutcome>>> =
        (0..n).map(|_| std::sync::Mutex::new(None)).collect();
    let txs: Vec<std::sync::Mutex<Option<std::sync::mpsc::SyncSender<Vec<u8>>>>> = txs
        .into_iter()
        .map(|t| std::sync::Mutex::new(Some(t)))
        .collect();
    let mut stop = None;
    std::thread::scope(|scope| {
        for w in 0..workers {
            let (per_file, txs, outcomes) = (&per_file, &txs, &outcomes);
            scope.spawn(move || {
                for i in (w..n).step_by(workers) {
                    let Some(tx) = txs[i].lock().ok().and_then(|mut t| t.take()) else {
                        continue;
                    };
                    let outcome = per_file(i, ChannelWriter(tx));
                    if let Ok(mut slot) = outcomes[i].lock() {
                        *slot = Some(outcome);
                    }
                }
            });
        }
        let mut stdout = io::stdout().lock();
        // Leaving drops the channels: the files still being read see their output closed,
        // and stop.
        'files: for rx in rxs {
            for chunk in rx {
                if let Err(e) = stdout.write_all(&chunk) {
                    stop = Some(if e.kind() == io::ErrorKind::BrokenPipe {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    });
                    break 'files;
                }
            }
        }
        let _ = stdout.flush();
    });
    if let Some(code) = stop {
        return code;
    }
    // A file whose worker stopped without an outcome failed.
    exit_code(
        outcomes
            .into_iter()
            .map(|o| o.into_inner().ok().flatten().unwrap_or(FileOutcome::Failed)),
    )
}

/// Whether several files are read one per core (`cores` of them), each on one thread: not
/// standard input, which only one of them could read.
fn one_file_per_core(files: &[String], cores: usize) -> bool {
    files.len() > 1 && cores > 1 && !files.iter().any(|f| f == "-")
}

/// Threads for one file: as `--threads` says, else one per core for a file worth it (see
/// [`worth_threads`]).
fn shards_for(file: &str, threads: Option<usize>, cores: usize) -> usize {
    threads.unwrap_or_else(|| if worth_threads(file) { cores } else { 1 })
}

/// The exit code of files handled in turn: the first that stops everything ends it (a lazy
/// iterator handles no file after it), else a failure if any failed.
fn exit_code(outcomes: impl IntoIterator<Item = FileOutcome>) -> ExitCode {
    let mut failed = false;
    for outcome in outcomes {
        match outcome {
            FileOutcome::Done { failed: f } => failed |= f,
            FileOutcome::Failed => failed = true,
            FileOutcome::Stop(code) => return code,
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `health` and `stats`: one pass, the analysis as the sink; a large file's connections split
/// across threads, each with its own part of the analysis, or several files one per core.
fn analyse(args: AnalysisArgs, health: bool) -> ExitCode {
    if health && args.interval.is_some() {
        eprintln!("h2scope: --interval is for stats (health reports each connection whole)");
        return ExitCode::from(2);
    }
    // stats filters call events; health filters its reports, which have keys of their own.
    let unknown = match &args.display_filter {
        Some(f) if !health => unknown_field_problem("-Y", f.roots(), &f.field_names()),
        _ => None,
    };
    if let Some(problem) = unknown {
        eprintln!("h2scope: {problem}");
        return ExitCode::from(2);
    }
    let schemas = match schemas_for(&args.decode.schema) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let files = &args.inputs.files;
    let filter = args.display_filter.as_ref();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if one_file_per_core(files, cores) {
        return files_in_parallel(files.len(), cores, |i, out| {
            analyse_file(&files[i], &args, &schemas, health, out, 1)
        });
    }
    // A filter on connection numbers needs them, which only one thread knows as it goes.
    let by_conn = h2scope::analysis::parts::filter_needs_one_thread(filter);
    exit_code(files.iter().map(|file| {
        let shards = if by_conn {
            1
        } else {
            shards_for(file, args.threads, cores)
        };
        analyse_file(file, &args, &schemas, health, io::stdout().lock(), shards)
    }))
}

/// Opens a capture to read, or says why it cannot.
fn open_input(file: &str, cfg: &h2scope::pipeline::Config) -> Option<CaptureReader> {
    open_capture(file, cfg)
        .map_err(|e| eprintln!("h2scope: {e}"))
        .ok()
}

/// `health` or `stats` of one file, written to `out`.
fn analyse_file(
    file: &str,
    args: &AnalysisArgs,
    schemas: &Schemas,
    health: bool,
    out: impl Write,
    shards: usize,
) -> FileOutcome {
    use h2scope::analysis::parts::{self, ReportFormat, StatsLines, StatsPart};
    use h2scope::analysis::stats::CallStats;
    let mut out = BufWriter::new(out);
    let filter = args.display_filter.as_ref();
    let report_format = match args.format {
        Format::Text => ReportFormat::Text,
        Format::Jsonl => ReportFormat::Jsonl,
    };
    let mut cfg = config(&args.decode);
    let Some(mut reader) = open_input(file, &cfg) else {
        return FileOutcome::Failed;
    };
    cfg.grpc.bodies = Bodies::Skip;
    // Cleared before the stats report is written. Health reports come as connections end: on
    // a terminal they would break into the progress line, so it shows only when they go
    // elsewhere. Several files at once show none, as for `read`.
    let quiet = (health && io::stdout().is_terminal()) || args.inputs.files.len() > 1;
    let mut progress = Progress::new(file, &reader, quiet);
    let mut lines = LinesOut {
        out: &mut out,
        error: None,
    };
    let mut run = PartsRun {
        reader: &mut reader,
        cfg: &cfg,
        schemas,
        shards,
        lines: &mut lines,
        progress: &mut progress,
    };
    let result = if health {
        run.run(&|| parts::health_part(filter, report_format)).0
    } else {
        let interval = args
            .interval
            .map(|d| d.as_nanos().min(i64::MAX as u128) as i64);
        // The parts' lines are their connections' figures, for the report at the end.
        let mut stats_lines = StatsLines::new(CallStats::with_intervals(interval));
        run.lines = &mut stats_lines;
        let (result, parts) = run.run(&|| StatsPart::new(filter, interval));
        let mut stats = stats_lines.stats;
        for part in parts {
            stats.absorb(part.stats);
        }
        let written = match args.format {
            Format::Text => stats.write_text(lines.out),
            Format::Jsonl => stats.write_json(lines.out),
        };
        if let Err(e) = written {
            lines.error.get_or_insert(e);
        }
        result
    };
    let write_error = lines.error.take();
    if let Some(e) = write_error.or_else(|| out.flush().err()) {
        // A reader that has seen enough (`| head`) is not a failure.
        if e.kind() == io::ErrorKind::BrokenPipe {
            return FileOutcome::Stop(ExitCode::SUCCESS);
        }
        eprintln!("h2scope: writing output: {e}");
        return FileOutcome::Stop(ExitCode::FAILURE);
    }
    match result {
        Ok(()) => FileOutcome::Done { failed: false },
        Err(e) => {
            eprintln!("h2scope: {e}");
            FileOutcome::Done { failed: true }
        }
    }
}

/// Where the lines of `health` and `stats` go: standard output, minding whether writing failed.
struct LinesOut<'a, W: Write> {
    out: &'a mut W,
    error: Option<io::Error>,
}

impl<W: Write> Sink for LinesOut<'_, W> {
    fn event(&mut self, _: Event) {}

    fn line(&mut self, line: &[u8]) {
        if self.error.is_none() {
            self.error = self.out.write_all(line).err();
        }
    }

    fn closed(&self) -> bool {
        self.error.is_some()
    }
}

/// A part run alone, its lines written after every event: at the end of the input every
/// connection still open ends at once, and 100,000 health reports waiting for the last of
/// them took 100 MB.
struct Flushed<'a, P> {
    part: &'a mut P,
    lines: &'a mut dyn Sink,
    buf: Vec<u8>,
}

impl<P: h2scope::parallel::Part> Flushed<'_, P> {
    fn flush(&mut self) {
        self.part
            .lines(&mut h2scope::parallel::Lines::to(&mut self.buf));
        if !self.buf.is_empty() {
            self.lines.line(&self.buf);
            self.buf.clear();
        }
    }
}

impl<P: h2scope::parallel::Part> Sink for Flushed<'_, P> {
    fn event(&mut self, event: Event) {
        self.part.event(event);
        self.flush();
    }

    fn quiet(&mut self, conn: u64) {
        self.part.quiet(conn);
    }

    fn wants(&mut self) -> h2scope::event::Wants<'_> {
        self.part.wants()
    }

    fn closed(&self) -> bool {
        self.lines.closed()
    }
}

/// A capture to dissect into a part of an analysis (see [`PartsRun::run`]).
struct PartsRun<'a> {
    reader: &'a mut CaptureReader,
    cfg: &'a h2scope::pipeline::Config,
    schemas: &'a Schemas,
    shards: usize,
    lines: &'a mut dyn Sink,
    progress: &'a mut Option<Progress>,
}

impl PartsRun<'_> {
    /// Dissects the capture into parts made by `make`: one per thread on `shards` threads,
    /// or one on this thread, its lines written as they come. Returns how reading ended and
    /// the parts.
    fn run<P: h2scope::parallel::Part>(
        self,
        make: &(dyn Fn() -> P + Sync),
    ) -> (Result<(), h2scope::capture::CaptureError>, Vec<P>) {
        let PartsRun {
            reader,
            cfg,
            schemas,
            shards,
            lines,
            progress,
        } = self;
        let mut seen = 0u64;
        if shards > 1 {
            let (outcome, parts) = h2scope::parallel::dissect_parts(
                reader,
                cfg,
                schemas,
                shards,
                u64::MAX,
                make,
                lines,
                |_| {
                    progress.tick(seen);
                    seen += 1;
                },
            );
            progress.done();
            return (outcome.result, parts);
        }
        let mut part = make();
        let mut dissector = Dissector::with_schemas(cfg.clone(), schemas.clone());
        let mut out = Flushed {
            part: &mut part,
            lines,
            buf: Vec::new(),
        };
        let result = reader.for_each_packet(|p| {
            progress.tick(seen);
            seen += 1;
            dissector.packet(p, &mut out);
            !out.lines.closed()
        });
        progress.done();
        dissector.finish(&mut out);
        out.part.end();
        out.flush();
        (result, vec![part])
    }
}

fn capture(mut args: CaptureArgs) -> ExitCode {
    if let Err(code) = args.output.check() {
        return code;
    }
    if args.list_interfaces {
        return match live::list_interfaces() {
            Ok(list) => {
                for (i, iface) in list.iter().enumerate() {
                    match &iface.description {
                        Some(d) => println!("{}. {} ({d})", i + 1, iface.name),
                        None => println!("{}. {}", i + 1, iface.name),
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("h2scope: {e}");
                ExitCode::from(2)
            }
        };
    }
    let iface = args.interface.clone().unwrap_or_default();
    let schemas = match schemas_and_flags(&args.decode.schema) {
        Ok((schemas, flags)) => {
            args.output.grpcurl = flags;
            schemas
        }
        Err(code) => return code,
    };
    let mut cap = match live::LiveCapture::open(
        &iface,
        args.filter.as_deref(),
        args.snaplen,
        args.buffer_size,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("h2scope: {e}");
            return ExitCode::from(2);
        }
    };
    let ring = args.ring_size.map(|mb| mb.max(1) << 20);
    let mut writer = match args
        .write
        .as_deref()
        .map(|p| open_write(p, args.pcap, ring, args.ring_files, args.compress))
    {
        None => None,
        Some(Ok(w)) => Some(w),
        Some(Err(code)) => return code,
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // SIGINT and SIGTERM end the capture cleanly: calls flushed, files complete.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    eprintln!(
        "h2scope: capturing on {iface}{}; Ctrl-C to stop",
        args.filter
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default()
    );
    // With -w -, standard output carries the capture: only the summary is shown, on stderr,
    // as tcpdump says what it captured.
    let to_stdout = writes_stdout(args.write.as_deref());
    let shown: Box<dyn Write> = if to_stdout {
        Box::new(io::stderr())
    } else {
        Box::new(io::stdout().lock())
    };
    let mut sink = make_sink(&args.output, to_stdout, shown);
    let mut cfg = config(&args.decode);
    args.output.keep_bytes_in(&mut cfg);
    // A pcapng file gets the secrets of its TLS connections as the key log gets them.
    let mut embed = cfg
        .tls_keys
        .clone()
        .filter(|k| k.may_grow() && writer.is_some() && !args.pcap)
        .map(h2scope::output::embed::SecretsEmbedder::new);
    let mut dissector = Dissector::with_schemas(cfg, schemas);
    let started = Instant::now();
    let limit = args.count.unwrap_or(u64::MAX);
    let duration = args.duration.map(Duration::from_secs_f64);
    let mut seen = 0u64;
    let mut last_stats = Instant::now();
    let mut reported_drops = 0u64;
    let mut failure = None;
    while !stop.load(Ordering::SeqCst)
        && seen < limit
        && duration.is_none_or(|d| started.elapsed() < d)
        // `| head` has seen enough, unless there is a file to go on writing.
        && (writer.is_some() || !sink.closed())
    {
        match cap.next_packet() {
            Ok(Some(pkt)) => {
                seen += 1;
                if let Some(t) = sink.inner.text() {
                    t.set_base(pkt.ts_ns);
                }
                if let Some(w) = writer.as_mut() {
                    let written = match embed.as_mut() {
                        Some(e) => e.packet(w, &pkt),
                        None => w.write_packet(pkt.link, pkt.ts_ns, pkt.data, pkt.orig_len),
                    };
                    if let Err(e) = written {
                        failure = Some(format!("writing the capture file: {e}"));
                        break;
                    }
                }
                dissector.packet(&pkt, &mut sink);
                // Each frame is shown as soon as its bytes are complete.
                sink.inner.flush();
            }
            // The secrets held packets wait for come while the link is quiet.
            Ok(None) => {
                if let (Some(e), Some(w)) = (embed.as_mut(), writer.as_mut()) {
                    if let Err(err) = e.poll(w) {
                        failure = Some(format!("writing the capture file: {err}"));
                        break;
                    }
                }
                dissector.quiet(h2scope::capture::live::now_ns(), &mut sink);
                sink.inner.flush();
            }
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            let s = cap.stats();
            let drops = s.dropped + s.if_dropped;
            if drops > reported_drops {
                eprintln!(
                    "h2scope: {} packets dropped so far ({} by the kernel, {} by the interface)",
                    drops, s.dropped, s.if_dropped
                );
                reported_drops = drops;
            }
        }
    }
    let live_stats = cap.stats();
    if let Some(w) = writer.as_mut() {
        if let Some(Err(e)) = embed.as_mut().map(|e| e.finish(w)) {
            failure.get_or_insert(format!("writing the capture file: {e}"));
        }
        if let Err(e) = w.finish() {
            failure.get_or_insert(format!("writing the capture file: {e}"));
        }
    }
    let stats = dissector.finish(&mut sink);
    sink.inner.end_of_input(&format!("interface {iface}"));
    let summary = Summary {
        file: format!("interface {iface}"),
        stats,
        tally: sink.tally.clone(),
        warnings: Vec::new(),
        live: Some(live_stats),
    };
    if !args.output.no_summary {
        print_summary(&mut sink, &summary);
    }
    sink.inner.flush();
    match failure {
        Some(f) => {
            eprintln!("h2scope: {f}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

fn haproxy(args: HaproxyArgs) -> ExitCode {
    // clap requires FILE or -r; `main` moved -r's into `file`.
    let file = args.file.clone().unwrap_or_default();
    let schemas = match schemas_for(&args.schema) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let selector = match (&args.path, &args.call) {
        (_, Some(c)) => {
            let parsed = c
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
            match parsed {
                Some((conn, stream)) => Selector::Call { conn, stream },
                None => {
                    eprintln!("h2scope: --call takes CONN:STREAM, e.g. --call 0:1 (numbers as `h2scope read` prints them)");
                    return ExitCode::from(2);
                }
            }
        }
        (Some(p), None) => Selector::Path(p.clone()),
        (None, None) => Selector::Path(haproxy::HEALTH_CHECK_PATH.to_string()),
    };
    let mut headers = Vec::new();
    for h in &args.headers {
        // `:authority=x` and `name: value` both work; the first `=` or `:` after the name splits.
        let split = if let Some(rest) = h.strip_prefix(':') {
            rest.find(['=', ':'])
                .map(|i| (format!(":{}", &rest[..i]), rest[i + 1..].to_string()))
        } else {
            h.find(['=', ':'])
                .map(|i| (h[..i].to_string(), h[i + 1..].to_string()))
        };
        match split {
            Some((n, v)) => headers.push((n.trim().to_string(), v.trim().to_string())),
            None => {
                eprintln!(
                    "h2scope: --header takes NAME=VALUE, e.g. --header :authority=api.example:443"
                );
                return ExitCode::from(2);
            }
        }
    }
    let expect = match (&args.expect_hex, &args.expect_string) {
        (Some(h), _) => match hex::decode(h.trim()) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("h2scope: --expect-hex: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(s)) => Some(s.as_bytes().to_vec()),
        (None, None) => None,
    };

    let keys = args.tls_keylog.clone();
    let recorded = match haproxy::find_call(&file, &selector, schemas, keys) {
        Ok(r) => r,
        Err(haproxy::FindError::Capture(e)) => {
            eprintln!("h2scope: {e}");
            return ExitCode::FAILURE;
        }
        Err(haproxy::FindError::NotFound {
            candidates,
            encrypted,
        }) => {
            let what = match &selector {
                Selector::Path(p) => format!("no gRPC call to {p}"),
                Selector::Call { conn, stream } => format!("no gRPC call {conn}:{stream}"),
            };
            eprintln!("h2scope: {file}: {what}");
            if candidates.is_empty() {
                eprintln!("  the capture holds no complete gRPC call");
            } else {
                eprintln!("  gRPC calls in the capture (choose one with --call or --path):");
                for c in &candidates {
                    eprintln!("    {c}");
                }
            }
            if encrypted > 0 {
                eprintln!(
                    "  {encrypted} TLS connection(s) could not be decrypted: give their secrets with --tls-keylog FILE (what SSLKEYLOGFILE makes clients write)"
                );
            }
            return ExitCode::FAILURE;
        }
    };
    let tls = if args.no_ssl {
        None
    } else {
        args.tls.options(recorded.recorded_tls())
    };
    if let (Some(t), Some(info)) = (&tls, &recorded.tls) {
        if info.joined && t.sni.is_none() {
            eprintln!("h2scope: warning: the capture joined the call's TLS connection after its handshake, so its SNI is unknown and the check sends none (give --sni NAME if the server needs one)");
        }
        if let (Some(sni), None) = (info.sni.as_ref().filter(|s| !s.is_empty()), &t.sni) {
            eprintln!("h2scope: warning: the recorded SNI {sni:?} is not a host name, so the check sends none (give --sni NAME if the server needs one)");
        }
    }
    let opts = ExportOptions {
        headers,
        expect,
        fast_fail: args.fast_fail,
        tls: tls.is_some(),
    };
    let hc = match haproxy::build(&recorded, &opts) {
        Ok(hc) => hc,
        Err(e) => {
            eprintln!(
                "h2scope: call {}:{}: {e}",
                recorded.call.conn, recorded.call.stream
            );
            return ExitCode::FAILURE;
        }
    };
    for w in &hc.warnings {
        eprintln!("h2scope: warning: {w}");
    }
    let copts = config::ConfigOptions {
        backend: args.backend.clone(),
        server_name: args.server_name.clone(),
        server_addr: args.server.clone(),
        inter_ms: args.inter,
        rise: args.rise,
        fall: args.fall,
        source: file.clone(),
        tls: tls.clone(),
    };
    let text = match args.format {
        Format::Text => config::render(&recorded, &hc, &copts),
        Format::Jsonl => {
            let mut s = config::render_json(&recorded, &hc, &copts).to_string();
            s.push('\n');
            s
        }
    };
    let written = match &args.output {
        Some(path) => std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display())),
        None => io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = written {
        eprintln!("h2scope: writing the config: {e}");
        return ExitCode::FAILURE;
    }
    match &args.verify {
        Some(addr) => run_check(
            addr,
            &hc.send(),
            &hc.expect,
            args.timeout,
            tls.as_ref(),
            false,
        ),
        None => ExitCode::SUCCESS,
    }
}

fn hex_arg(name: &str, v: &str) -> Result<Vec<u8>, String> {
    let text = match v.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{name}: {path}: {e}"))?,
        None => v.to_string(),
    };
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&clean).map_err(|e| format!("{name}: not hex: {e}"))
}

fn check(args: CheckArgs) -> ExitCode {
    let send = match hex_arg("--send-hex", &args.send_hex) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("h2scope: {e}");
            return ExitCode::from(2);
        }
    };
    let expect = match hex_arg("--expect-hex", &args.expect_hex) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("h2scope: {e}");
            return ExitCode::from(2);
        }
    };
    let tls = args.tls.options(None);
    run_check(
        &args.addr,
        &send,
        &expect,
        args.timeout,
        tls.as_ref(),
        args.quiet,
    )
}

/// Runs a check; prints what happened and the decoded answer. Exit 0 on a match, 1 on a wrong
/// answer or timeout, 2 when the server cannot be reached.
fn run_check(
    addr: &str,
    send: &[u8],
    expect: &[u8],
    timeout: Duration,
    tls: Option<&check::TlsOptions>,
    quiet: bool,
) -> ExitCode {
    let result = match check::run(addr, send, expect, timeout, tls) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("h2scope: check: {e}");
            return ExitCode::from(2);
        }
    };
    let verdict = match result.outcome {
        check::Outcome::Matched => "MATCH: the expected bytes arrived",
        check::Outcome::Closed => {
            "MISMATCH: the server closed the connection without the expected bytes"
        }
        check::Outcome::TimedOut => {
            "MISMATCH: the expected bytes did not arrive before the timeout"
        }
    };
    let over = match &result.tls {
        Some(t) => format!(" over {t}"),
        None => String::new(),
    };
    eprintln!(
        "h2scope: check {addr}{over}: {verdict} ({} bytes received in {:.1} ms)",
        result.received.len(),
        result.elapsed.as_secs_f64() * 1000.0
    );
    if result.tls.as_ref().is_some_and(|t| t.alpn.is_none()) {
        eprintln!("h2scope: warning: the server chose no ALPN protocol; HTTP/2 over TLS needs h2");
    }
    if !quiet {
        let mut schemas = Schemas::bundled();
        let events = check::explain(&result, send, &mut schemas);
        let mut text = Text::new(
            io::stderr(),
            TextOptions {
                calls_only: false,
                verbose: true,
                hex: false,
                quiet: false,
                time: TimeFormat::Relative,
            },
        );
        for e in events {
            text.event(e);
        }
    }
    match result.outcome {
        check::Outcome::Matched => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::{progress_line, worth_threads_from};

    /// Durations as the flags take them; a number too large for a `Duration` is an error, not
    /// a panic, and an interval of nothing is refused.
    #[test]
    fn durations_parse_or_say_why_not() {
        use std::time::Duration;
        assert_eq!(
            super::parse_duration("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            super::parse_duration("1.5"),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(super::parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["99999999999999999999999", "-1s", "1e9", "10h", "", "nan"] {
            assert!(super::parse_duration(bad).is_err(), "{bad}");
        }
        assert!(super::parse_interval("0").is_err());
        assert!(super::parse_interval("0ms").is_err());
        assert_eq!(super::parse_interval("10s"), Ok(Duration::from_secs(10)));
    }

    /// Every subcommand's flags are well formed (unique names and shorts), which clap checks
    /// only when that subcommand is parsed: a clash would panic there at run time.
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn progress_shows_eta_for_a_file_and_only_the_rate_for_a_pipe() {
        assert_eq!(
            progress_line(25_000_000, Some(100_000_000), 200_000, 2.0),
            "25 / 100 MB (25%), 100000 packets/s, ETA 6 s"
        );
        // A file that grew while read is done, not past done.
        assert_eq!(
            progress_line(120_000_000, Some(100_000_000), 10, 1.0),
            "100 / 100 MB (100%), 10 packets/s, ETA 0 s"
        );
        assert_eq!(
            progress_line(30_000_000, None, 300_000, 3.0),
            "30 MB, 10 MB/s, 100000 packets/s"
        );
        // No time yet is not a division by zero.
        assert!(!progress_line(1, None, 1, 0.0).contains("inf"));
    }

    /// The shipped recordings stand for the two kinds of large file: small packets are split
    /// across threads and full-size segments are not. What is small or not a capture is never
    /// split.
    #[test]
    fn threads_by_default_for_small_packets() {
        let at = |f: &str| format!("{}/testdata/{f}", env!("CARGO_MANIFEST_DIR"));
        let (health, bulk) = (at("grpc-health.pcap"), at("grpc-bulk.pcap"));
        assert!(worth_threads_from(&health, 0));
        assert!(!worth_threads_from(&bulk, 0));
        assert!(!worth_threads_from(&health, 64 << 20));
        assert!(!worth_threads_from(env!("CARGO_MANIFEST_DIR"), 0));
        // A compressed file is judged by what it holds: a hundred copies of the health
        // capture, gzipped to less than a tenth.
        let dir = std::env::temp_dir().join(format!("h2scope-worth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copies = dir.join("copies.pcap");
        let made = std::process::Command::new("python3")
            .arg(format!(
                "{}/scripts/replicate-capture",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args([&health, copies.to_str().unwrap(), "1000"])
            .status()
            .unwrap();
        assert!(made.success());
        let plain_len = std::fs::metadata(&copies).unwrap().len();
        let gz = dir.join("copies.pcap.gz");
        let out = std::process::Command::new("gzip")
            .arg("-c")
            .arg(&copies)
            .output()
            .unwrap();
        std::fs::write(&gz, out.stdout).unwrap();
        let gz = gz.to_str().unwrap();
        let gz_len = std::fs::metadata(gz).unwrap().len();
        assert!(gz_len * 10 < plain_len, "{gz_len} of {plain_len}");
        // Estimated from its first 8 MB; half the threshold will do.
        assert!(worth_threads_from(gz, plain_len));
        assert!(worth_threads_from(gz, plain_len * 3 / 2));
        assert!(!worth_threads_from(gz, plain_len * 4));
        // Too small to look into.
        assert!(!worth_threads_from(gz, gz_len * 65));
        assert!(!worth_threads_from(copies.to_str().unwrap(), plain_len * 2));
        std::fs::remove_dir_all(&dir).ok();
        assert!(!worth_threads_from("/nonexistent/capture.pcap", 0));
    }
}
