//! A gRPC message body read without its schema, as `read` shows a message whose method it has no
//! `.proto` for: `wire::decode_raw` guesses each length-delimited field (text, nested message,
//! packed varints, bytes), and JSON Lines writes the tree as its `fields`.
//!
//! The whole input is the body. Besides panics, checks what the tree promises: every field's
//! span and every offset lies within the body, the spans of a message's fields follow each other
//! without overlapping, a length-delimited field's contents fit in its span (a nested message's
//! fields inside them), and the JSON written is valid JSON.

#![no_main]

use h2scope::grpc::message::Schemaless;
use h2scope::grpc::wire::{decode_raw, LenGuess, Node, WireValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let nodes = decode_raw(body);
    check(&nodes, 0..body.len());
    let mut json = Vec::new();
    h2scope::output::jsonl::write_schemaless(&mut json, &Schemaless::Fields(nodes));
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&json) {
        panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(&json));
    }
});

/// The nodes of one message that lies at `within` in the body.
fn check(nodes: &[Node], within: std::ops::Range<usize>) {
    let mut at = within.start;
    for node in nodes {
        match node {
            Node::Field { value, span, .. } => {
                assert!(
                    span.start >= at && span.end <= within.end,
                    "{span:?} in {within:?}"
                );
                assert!(span.start < span.end, "empty field {span:?}");
                at = span.end;
                match value {
                    WireValue::Len { length, guess } => {
                        assert!(*length <= span.len(), "{length} in {span:?}");
                        if let LenGuess::Message(inner) = guess {
                            check(inner, span.end - length..span.end);
                        }
                    }
                    WireValue::Group { fields, .. } => check(fields, span.clone()),
                    _ => {}
                }
            }
            Node::Malformed {
                offset,
                shown,
                remaining,
            } => {
                assert!(
                    *offset >= at && offset + remaining <= within.end,
                    "{offset}+{remaining} in {within:?}"
                );
                assert!(shown.len() <= *remaining);
            }
            Node::Truncated { offset, .. } => {
                assert!(*offset >= at && *offset <= within.end);
            }
        }
    }
}
