//! Shared by the `capture` and `http2_stream` targets: the whole pipeline, then every output.

#![allow(dead_code)]

use std::io::{sink, Cursor};
use std::sync::{Arc, OnceLock};

use h2scope::analysis::health::{self, Health};
use h2scope::analysis::stats::CallStats;
use h2scope::capture::CaptureReader;
use h2scope::event::{Event, Sink};
use h2scope::grpc::schema::Schemas;
use h2scope::output::fields::{write_line, FieldsOptions};
use h2scope::output::filter::{FieldList, Filter};
use h2scope::output::grpcurl::{Grpcurl, GrpcurlOptions};
use h2scope::output::jsonl::{event_json, JsonLines};
use h2scope::output::text::{Text, TextOptions};
use h2scope::output::{Counting, Summary, Tally};
use h2scope::pipeline::{Config, Dissector};
use h2scope::tls::KeyLog;

/// `Dissector::new` parses the bundled descriptor set every time, which would cost most of
/// each run; parse it once and hand every run a fresh copy (reflection may add to it).
fn bundled_schemas() -> Schemas {
    static BUNDLED: OnceLock<Schemas> = OnceLock::new();
    BUNDLED.get_or_init(Schemas::bundled).clone()
}

/// Display filters whose answers on each event must be the same decided on the fields they
/// name (written alone by the JSON Lines writer, or decided for a whole kind of event) as on
/// the event's whole JSON form.
fn filters() -> &'static [Filter] {
    static FILTERS: OnceLock<Vec<Filter>> = OnceLock::new();
    FILTERS.get_or_init(|| {
        [
            "type == DATA or type == HEADERS and stream > 1",
            "grpc_status != 0",
            "not grpc_status",
            "event != frame and path contains a",
            "notes or malformed or problem",
            "headers[\":path\"] ~ x or request_headers.user-agent contains g",
            "json or fields.1 or harvested",
            "length >= 5 and dir == response",
            "flag_names == END_STREAM or end == reset",
            "event == error or event == gap",
            "conn == 0 and (binary_metadata or trailers.grpc-status == 0)",
        ]
        .iter()
        .map(|f| f.parse().expect("a filter of the fuzz target"))
        .collect()
    })
}

/// Fields of every shape for `-T fields`: scalars, lists, header lists by name, objects.
fn fields() -> &'static (FieldList, FieldsOptions) {
    static FIELDS: OnceLock<(FieldList, FieldsOptions)> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let names = [
            "event",
            "conn",
            "type",
            "flag_names",
            "headers",
            "request_headers.user-agent",
            "json",
            "fields.1",
            "notes",
            "grpc_status",
            "settings.0",
        ];
        let mut opts = FieldsOptions::default();
        opts.set("quote=d")
            .expect("a fields option of the fuzz target");
        let list = FieldList::parse(&names).expect("fields of the fuzz target");
        (list, opts)
    })
}

/// Looks at everything but messages, as `health` does.
struct NoMessages;

impl Sink for NoMessages {
    fn wants(&mut self) -> h2scope::event::Wants<'_> {
        h2scope::event::Wants::AllButMessages(None)
    }

    fn event(&mut self, event: Event) {
        assert!(!matches!(event, Event::Message(_)), "a message was built");
    }
}

/// `data` as a capture, read as the command line reads one: with an empty key log that
/// secrets embedded in a pcapng file fill.
fn open(data: &[u8]) -> Option<(CaptureReader, Config)> {
    let mut reader = CaptureReader::from_read("fuzz", Cursor::new(data.to_vec())).ok()?;
    let keys = Arc::new(KeyLog::from_text(""));
    let hooked = keys.clone();
    reader.on_tls_secrets(Box::new(move |text| {
        hooked.add_text(&String::from_utf8_lossy(text))
    }));
    let config = Config {
        tls_keys: Some(keys),
        ..Config::default()
    };
    Some((reader, config))
}

/// Dissects `data` into `sink` without decoding bodies, as the summary and `--calls` do (their
/// deframers then skip the bytes of messages), and returns what it counted.
fn tally_of<S: Sink>(data: &[u8], mut sink: Counting<S>) -> Tally {
    if let Some((mut reader, mut config)) = open(data) {
        config.grpc.bodies = h2scope::grpc::Bodies::Skip;
        let mut dissector = Dissector::with_schemas(config, bundled_schemas());
        let _ = reader.for_each_packet(|p| {
            dissector.packet(p, &mut sink);
            true
        });
        dissector.finish(&mut sink);
    }
    sink.tally
}

/// Events, and what `health` and `stats` make of them: they pack a connection's figures while
/// it is quiet.
struct Swept<F: FnMut(health::ConnectionHealth)> {
    events: Vec<Event>,
    health: Health<F>,
    stats: CallStats,
}

impl<F: FnMut(health::ConnectionHealth)> Sink for Swept<F> {
    fn event(&mut self, event: Event) {
        self.health.event(event.clone());
        self.stats.event(event.clone());
        self.events.push(event);
    }

    fn quiet(&mut self, conn: u64) {
        self.health.quiet(conn);
        self.stats.quiet(conn);
    }
}

/// The events of `data`, its health reports and statistics, with a sweep after every packet,
/// which compacts every connection quiet for `quiet_ns` (0: all of them, each time).
fn swept(data: &[u8], quiet_ns: i64) -> Option<String> {
    let (mut reader, mut config) = open(data)?;
    config.flows.external_sweeps = true;
    config.flows.quiet_ns = quiet_ns;
    let mut dissector = Dissector::with_schemas(config, bundled_schemas());
    let mut reports = Vec::new();
    let mut all = Swept {
        events: Vec::new(),
        health: Health::new(|h| reports.push(health::to_json(&h))),
        stats: CallStats::default(),
    };
    let _ = reader.for_each_packet(|p| {
        dissector.packet(p, &mut all);
        dissector.sweep(p.index, p.ts_ns, &mut all);
        true
    });
    dissector.finish(&mut all);
    all.health.finish();
    let Swept {
        events, mut stats, ..
    } = all;
    Some(format!("{events:?}\n{reports:?}\n{}", stats.to_json()))
}

/// Reads `data` as a capture file, dissects every packet into a `Vec<Event>`, then renders
/// every event and the summary through the JSON Lines and text sinks (into `io::sink()`).
/// A summary (counts only), a calls-only output and a sink without messages (as `health`),
/// which build fewer events, must count the same; display filters must decide on each event
/// as on its whole JSON form; connections compacted after every packet must give the same
/// events as connections never compacted.
pub fn dissect_and_render(data: Vec<u8>) {
    let counts_only = tally_of(&data, Counting::counts_only(Vec::<Event>::new()));
    let calls_only = tally_of(&data, Counting::new(JsonLines::new(sink(), true, false)));
    let no_messages = tally_of(&data, Counting::new(NoMessages));
    // Compacting a quiet connection gives back room, not state.
    assert_eq!(
        swept(&data, 0),
        swept(&data, i64::MAX),
        "compacting connections changed the events, health or statistics"
    );
    let Some((mut reader, mut config)) = open(&data) else {
        return;
    };
    // Frames and messages keep their bytes, for -x and `raw`.
    config.http2.keep_frame_bytes = true;
    config.grpc.keep_bytes = true;
    let mut dissector = Dissector::with_schemas(config, bundled_schemas());
    let mut events: Vec<Event> = Vec::new();
    let mut first_ts = None;
    let result = reader.for_each_packet(|p| {
        first_ts.get_or_insert(p.ts_ns);
        dissector.packet(p, &mut events);
        true
    });
    let stats = dissector.finish(&mut events);

    let mut json = JsonLines::new(sink(), false, false);
    let mut grpcurl = Grpcurl::new(sink(), GrpcurlOptions::default());
    let mut json_calls = JsonLines::new(sink(), true, false);
    let mut text = Text::new(
        sink(),
        TextOptions {
            verbose: true,
            hex: true,
            ..TextOptions::default()
        },
    );
    let mut text_calls = Text::new(
        sink(),
        TextOptions {
            calls_only: true,
            ..TextOptions::default()
        },
    );
    if let Some(ts) = first_ts {
        text.set_base(ts);
        text_calls.set_base(ts);
    }
    // `health` and `stats` on the same events, reports written as their commands write them.
    let mut health = Health::new(|h| {
        let _ = health::to_json(&h);
        let _ = health::to_text(&h);
    });
    let mut call_stats = CallStats::with_intervals(Some(1_000_000_000));
    let mut tally = Tally::default();
    for event in &events {
        tally.count(event);
    }
    assert_eq!(tally, counts_only, "a summary counts otherwise");
    assert_eq!(tally, calls_only, "--calls counts otherwise");
    assert_eq!(
        tally, no_messages,
        "a sink without messages counts otherwise"
    );
    for event in events {
        let whole = event_json(&event);
        for f in filters() {
            assert_eq!(
                f.matches(&event),
                f.matches_json(&whole),
                "{f:?} on {whole}"
            );
        }
        let (list, opts) = fields();
        let mut line = Vec::new();
        if write_line(list, opts, &event, &mut line) {
            assert_eq!(line.last(), Some(&b'\n'), "a line of fields ends its line");
        }
        health.event(event.clone());
        call_stats.event(event.clone());
        json.event(event.clone());
        grpcurl.event(event.clone());
        json_calls.event(event.clone());
        text_calls.event(event.clone());
        text.event(event);
    }
    let mut warnings: Vec<String> = reader.warnings().iter().map(|w| format!("{w:?}")).collect();
    if let Err(e) = result {
        warnings.push(e.to_string());
    }
    let summary = Summary {
        file: "fuzz".to_string(),
        stats,
        tally,
        warnings,
        live: None,
    };
    health.finish();
    let _ = call_stats.to_json();
    let _ = call_stats.to_text();
    json.summary(&summary);
    text.summary(&summary);
    grpcurl.file_done();
    assert!(json.io_error().is_none());
    assert!(grpcurl.io_error().is_none());
    assert!(text.io_error().is_none());
}
