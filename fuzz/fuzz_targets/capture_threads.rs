//! Arbitrary bytes as a capture file, dissected by one dissector and by `parallel::dissect` on
//! three threads: the merged events must be the same, in the same order, with the same
//! connection numbers.

#![no_main]

use std::io::Cursor;

use h2scope::capture::CaptureReader;
use h2scope::event::Event;
use h2scope::grpc::schema::Schemas;
use h2scope::pipeline::{Config, Dissector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let schemas = Schemas::empty();
    let Ok(mut one_reader) = CaptureReader::from_read("fuzz", Cursor::new(data.to_vec())) else {
        return;
    };
    let mut d = Dissector::with_schemas(Config::default(), schemas.clone());
    let mut one: Vec<Event> = Vec::new();
    let _ = one_reader.for_each_packet(|p| {
        d.packet(p, &mut one);
        true
    });
    d.finish(&mut one);

    let Ok(mut reader) = CaptureReader::from_read("fuzz", Cursor::new(data.to_vec())) else {
        return;
    };
    let mut many: Vec<Event> = Vec::new();
    h2scope::parallel::dissect(
        &mut reader,
        &Config::default(),
        &schemas,
        3,
        u64::MAX,
        |_| true,
        &mut many,
        |_| {},
    );
    let show = |v: &[Event]| v.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>();
    assert_eq!(show(&one), show(&many));
});
