//! Arbitrary bytes as a capture file, dissected by one dissector and by `parallel::dissect` on
//! three threads: the merged events must be the same, in the same order, with the same
//! connection numbers; and so must the JSON Lines and text output the threads format
//! themselves, and the grpcurl commands made from what they hand over.

#![no_main]

use std::io::Cursor;

use h2scope::capture::CaptureReader;
use h2scope::event::{ErrorEvent, ErrorKind, Event, Sink};
use h2scope::grpc::schema::Schemas;
use h2scope::output::grpcurl::{Grpcurl, GrpcurlOptions, RouteRequests};
use h2scope::output::jsonl::{self, JsonLines};
use h2scope::output::text::{Text, TextOptions, TextRoute};
use h2scope::parallel::{self, Handoff, Route};
use h2scope::pipeline::{Config, Dissector};
use libfuzzer_sys::fuzz_target;

/// One dissector, with a reading error where the CLI reports it.
fn one(data: &[u8], schemas: &Schemas, sink: &mut dyn Sink) -> Option<()> {
    let mut reader = CaptureReader::from_read("fuzz", Cursor::new(data.to_vec())).ok()?;
    let mut d = Dissector::with_schemas(Config::default(), schemas.clone());
    if let Err(e) = reader.for_each_packet(|p| {
        d.packet(p, sink);
        true
    }) {
        sink.event(Event::Error(ErrorEvent {
            origin: None,
            stream: None,
            kind: ErrorKind::Capture,
            message: e.to_string(),
        }));
    }
    d.finish(sink);
    Some(())
}

fn threads(data: &[u8], schemas: &Schemas, route: &dyn Route, sink: &mut dyn Sink) -> Option<()> {
    let mut reader = CaptureReader::from_read("fuzz", Cursor::new(data.to_vec())).ok()?;
    parallel::dissect(
        &mut reader,
        &Config::default(),
        schemas,
        3,
        u64::MAX,
        route,
        sink,
        |_| {},
    );
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let schemas = Schemas::empty();
    let mut a: Vec<Event> = Vec::new();
    let mut b: Vec<Event> = Vec::new();
    if one(data, &schemas, &mut a).is_none() {
        return;
    }
    threads(
        data,
        &schemas,
        &|_: &Event, _: &mut Vec<u8>| Handoff::Event,
        &mut b,
    );
    let show = |v: &[Event]| v.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>();
    assert_eq!(show(&a), show(&b));

    let mut a = JsonLines::new(Vec::new(), false, false);
    let mut b = JsonLines::new(Vec::new(), false, false);
    one(data, &schemas, &mut a);
    threads(data, &schemas, &jsonl::route_all, &mut b);
    assert_eq!(a.into_inner(), b.into_inner());

    for verbose in [false, true] {
        let opts = TextOptions {
            verbose,
            ..TextOptions::default()
        };
        let mut a = Text::new(Vec::new(), opts);
        let mut b = Text::new(Vec::new(), opts);
        // One dissector shows times from the first packet, as the CLI sets it.
        let first = CaptureReader::from_read("fuzz", Cursor::new(data.to_vec()))
            .ok()
            .and_then(|mut r| {
                let mut first = None;
                let _ = r.for_each_packet(|p| {
                    first = Some(p.ts_ns);
                    false
                });
                first
            });
        if let Some(t) = first {
            a.set_base(t);
        }
        one(data, &schemas, &mut a);
        threads(data, &schemas, &TextRoute(opts), &mut b);
        assert_eq!(a.into_inner(), b.into_inner());
    }

    // grpcurl commands are made on the writing thread, from the calls and request messages
    // the threads hand over.
    let mut a = Grpcurl::new(Vec::new(), GrpcurlOptions::default());
    let mut b = Grpcurl::new(Vec::new(), GrpcurlOptions::default());
    one(data, &schemas, &mut a);
    threads(data, &schemas, &RouteRequests, &mut b);
    assert_eq!(a.file_done(), b.file_done());
    assert_eq!(a.into_inner(), b.into_inner());
});
