//! Small messages decoded before come from a memo (`grpc::memo`) instead of being decoded again.
//! On real traffic, every message must come out as a full decode gives it: each shipped and
//! public capture is dissected with the memo in use and with it bypassed (keeping the bytes, as
//! the TUI and the HAProxy export do, skips it), and their messages compared.

mod common;

use common::captures;
use h2scope::event::Event;
use h2scope::pipeline::Config;
use h2scope::tls::KeyLog;
use std::sync::Arc;

/// What a message event shows of its decoding, as text.
fn shown(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => {
                let d = &m.decoded;
                Some(format!(
                    "{} {}/{} {:?} {:?} {:?} {:?}",
                    m.origin.packet,
                    m.stream,
                    m.index,
                    d.type_name,
                    d.json.as_ref().map(|j| j.as_str()),
                    d.problem,
                    d.fields,
                ))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn messages_from_the_memo_are_those_a_full_decode_gives() {
    let mut messages = 0;
    let mut repeats = 0;
    for file in captures() {
        let keys = std::fs::read_to_string(
            file.replace(".pcapng", ".keylog")
                .replace(".pcap", ".keylog"),
        )
        .ok()
        .map(|text| Arc::new(KeyLog::from_text(&text)));
        let config = |keep_bytes: bool| {
            let mut cfg = Config {
                tls_keys: keys.clone(),
                ..Config::default()
            };
            cfg.grpc.keep_bytes = keep_bytes;
            cfg
        };
        let bytes = std::fs::read(&file).unwrap();
        let (with_memo, _, _) = common::dissect_bytes(bytes.clone(), config(false));
        let (without, _, _) = common::dissect_bytes(bytes, config(true));
        let (a, b) = (shown(&with_memo), shown(&without));
        assert_eq!(a, b, "{file}");
        messages += a.len();
        repeats += repeated_small(&without);
    }
    // Both answers were checked: messages a memo would hold, and some it would find again.
    assert!(
        messages > 200 && repeats > 20,
        "{messages} messages, {repeats} repeats"
    );
}

/// Messages with a type whose bytes (up to 128) came before as the same type: those the memo
/// answers in the run that uses it.
fn repeated_small(events: &[Event]) -> usize {
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .filter(|e| match e {
            Event::Message(m) => match (&m.decoded.type_name, &m.decoded.bytes) {
                (Some(t), Some(b)) if b.len() <= 128 => !seen.insert((t.clone(), b.clone())),
                _ => false,
            },
            _ => false,
        })
        .count()
}
