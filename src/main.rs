use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use h2scope::capture::{CaptureReader, CaptureWarning};
use h2scope::event::{ErrorEvent, ErrorKind, Event, Sink};
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

fn read(args: ReadArgs) -> ExitCode {
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
        let mut cfg = Config::default();
        cfg.http2.forced_ports = args.h2_ports.clone();
        let mut dissector = Dissector::new(cfg);
        sink.tally = Default::default();
        let limit = args.count.unwrap_or(u64::MAX);
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
