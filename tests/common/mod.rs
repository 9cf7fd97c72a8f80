//! Test support: run the pipeline in-process, and record real TCP conversations as captures.

#![allow(dead_code)]

pub mod recorder;

use h2scope::capture::CaptureReader;
use h2scope::event::Event;
use h2scope::pipeline::{Config, Dissector, Stats};

/// Dissects a capture file completely and returns every event.
pub fn dissect_file(path: &str, cfg: Config) -> (Vec<Event>, Stats) {
    let mut reader = CaptureReader::open(path).unwrap_or_else(|e| panic!("{e}"));
    dissect_reader(&mut reader, cfg)
}

pub fn dissect_bytes(bytes: Vec<u8>, cfg: Config) -> (Vec<Event>, Stats, bool) {
    match CaptureReader::from_read("mem", std::io::Cursor::new(bytes)) {
        Ok(mut r) => {
            let mut d = Dissector::new(cfg);
            let mut events = Vec::new();
            let ok = r
                .for_each_packet(|p| {
                    d.packet(p, &mut events);
                    true
                })
                .is_ok();
            let stats = d.finish(&mut events);
            (events, stats, ok)
        }
        Err(_) => (Vec::new(), Stats::default(), false),
    }
}

pub fn dissect_reader(reader: &mut CaptureReader, cfg: Config) -> (Vec<Event>, Stats) {
    let mut d = Dissector::new(cfg);
    let mut events = Vec::new();
    reader
        .for_each_packet(|p| {
            d.packet(p, &mut events);
            true
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let stats = d.finish(&mut events);
    (events, stats)
}

pub fn public_capture(name: &str) -> String {
    format!(
        "{}/../shared/captures/public/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}
