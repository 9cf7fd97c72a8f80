use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use h2scope::capture::{CaptureReader, CaptureWarning};
use h2scope::event::{ErrorEvent, ErrorKind, Event, Sink};
use h2scope::grpc::schema::Schemas;
use h2scope::output::jsonl::JsonLines;
use h2scope::output::text::{Text, TextOptions};
use h2scope::output::{Counting, Summary};
use h2scope::pipeline::{Config, Dissector};

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
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Jsonl,
}

#[derive(clap::Args)]
struct ReadArgs {
    /// Capture files; `-` for standard input.
    #[arg(required = true)]
    files: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// One line per call (request/response) instead of one per frame.
    #[arg(long)]
    calls: bool,
    /// Show every header under its frame or call.
    #[arg(short, long)]
    verbose: bool,
    /// Print only the summary (like tshark -q).
    #[arg(short, long)]
    quiet: bool,
    /// Leave out the summary at the end.
    #[arg(long)]
    no_summary: bool,
    /// Treat TCP on this port as HTTP/2 even without a preface (repeatable), like tshark's
    /// `-d tcp.port==N,http2`.
    #[arg(long = "h2-port", value_name = "PORT")]
    h2_ports: Vec<u16>,
    /// Stop after this many packets (per file).
    #[arg(short = 'c', long = "count", value_name = "N")]
    count: Option<u64>,
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
    /// gRPC messages larger than this are reported with their length, not decoded.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    max_message_size: usize,
    /// Read each file once: schemas learned from server reflection then decode only the calls
    /// after the reflection exchange (the default reads files twice to use them everywhere).
    #[arg(long)]
    single_pass: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Read(args) => read(args),
    }
}

enum Out<W: Write> {
    Text(Text<W>),
    Jsonl(JsonLines<W>),
}

impl<W: Write> Sink for Out<W> {
    fn event(&mut self, event: Event) {
        match self {
            Out::Text(t) => t.event(event),
            Out::Jsonl(j) => j.event(event),
        }
    }
}

impl<W: Write> Out<W> {
    fn io_error(&mut self) -> Option<io::Error> {
        match self {
            Out::Text(t) => t.io_error(),
            Out::Jsonl(j) => j.io_error(),
        }
    }
}

fn load_schemas(args: &ReadArgs) -> Result<Schemas, String> {
    let mut schemas = Schemas::bundled();
    for set in &args.descriptor_sets {
        schemas
            .add_descriptor_set_file(set)
            .map_err(|e| e.to_string())?;
    }
    if !args.protos.is_empty() {
        schemas
            .add_proto_files(&args.protos, &args.proto_paths)
            .map_err(|e| e.to_string())?;
    }
    Ok(schemas)
}

fn config(args: &ReadArgs) -> Config {
    let mut cfg = Config::default();
    cfg.http2.forced_ports = args.h2_ports.clone();
    cfg.grpc.max_message_size = args.max_message_size;
    cfg.grpc.max_decompressed_size = args.max_message_size.max(cfg.grpc.max_decompressed_size);
    cfg
}

/// Reads a file once, looking only at server-reflection responses, and returns the schemas
/// with what they taught. Reading errors are left for the main pass to report.
fn harvest(file: &str, schemas: Schemas, cfg: &Config, limit: u64) -> Schemas {
    let Ok(mut reader) = CaptureReader::open(file) else {
        return schemas;
    };
    let mut cfg = cfg.clone();
    cfg.grpc.harvest_only = true;
    let mut dissector = Dissector::with_schemas(cfg, schemas);
    let mut discard = Discard;
    let mut seen = 0u64;
    let _ = reader.for_each_packet(|pkt| {
        dissector.packet(pkt, &mut discard);
        seen += 1;
        seen < limit
    });
    dissector.finish(&mut discard);
    dissector.into_schemas()
}

struct Discard;

impl Sink for Discard {
    fn event(&mut self, _: Event) {}
}

fn read(args: ReadArgs) -> ExitCode {
    let base_schemas = match load_schemas(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("h2scope: schema: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let sink = match args.format {
        Format::Text => Out::Text(Text::new(
            out,
            TextOptions {
                calls_only: args.calls,
                verbose: args.verbose,
                quiet: args.quiet,
            },
        )),
        Format::Jsonl => Out::Jsonl(JsonLines::new(out, args.calls)),
    };
    let mut sink = Counting::new(sink);
    let mut failed = false;
    for file in &args.files {
        let mut reader = match CaptureReader::open(file) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("h2scope: {e}");
                failed = true;
                continue;
            }
        };
        let cfg = config(&args);
        let limit = args.count.unwrap_or(u64::MAX);
        // Schemas from reflection exchanges anywhere in the file apply to every call in it, so a
        // file (not a pipe) is read twice.
        let schemas = if args.single_pass || file == "-" {
            base_schemas.clone()
        } else {
            harvest(file, base_schemas.clone(), &cfg, limit)
        };
        let mut dissector = Dissector::with_schemas(cfg, schemas);
        sink.tally = Default::default();
        let mut seen = 0u64;
        let result = reader.for_each_packet(|pkt| {
            if let Out::Text(t) = &mut sink.inner {
                t.set_base(pkt.ts_ns);
            }
            dissector.packet(pkt, &mut sink);
            seen += 1;
            seen < limit
        });
        if let Err(e) = &result {
            // Everything decodable so far is still shown; the error says where reading stopped.
            sink.event(Event::Error(ErrorEvent {
                origin: None,
                stream: None,
                kind: ErrorKind::Capture,
                message: e.to_string(),
            }));
            eprintln!("h2scope: {e}");
            failed = true;
        }
        let stats = dissector.finish(&mut sink);
        let warnings = reader
            .warnings()
            .iter()
            .map(|w| match w {
                CaptureWarning::TruncatedRecord { after_record } => format!(
                    "the file ends inside the record after record {after_record} (truncated capture)"
                ),
                CaptureWarning::UnknownInterface { record, interface } => {
                    format!("record {record} refers to undeclared interface {interface}; skipped")
                }
            })
            .collect();
        let summary = Summary {
            file: file.clone(),
            stats,
            tally: sink.tally.clone(),
            warnings,
        };
        if !args.no_summary {
            match &mut sink.inner {
                Out::Text(t) => t.summary(&summary),
                Out::Jsonl(j) => j.summary(&summary),
            }
        }
        if let Some(e) = sink.inner.io_error() {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("h2scope: writing output: {e}");
            return ExitCode::FAILURE;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
