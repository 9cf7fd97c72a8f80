//! Agreement with tshark as the project measures it: `scripts/agreement` runs the corpus's own
//! tool (`../shared/tools/h2cmp.py`) over every public capture with one set of options. The
//! figures may only grow; the references' own totals are checked too, so that a changed corpus
//! is noticed rather than compared against old numbers.
//!
//! What is left out, and why (each is also named in `tests/tshark_reference.rs` or
//! `tests/grpc_reference.rs`):
//! - 5 frames: the two oss-fuzz reproducers, whose TCP streams are damaged on purpose;
//! - 13 header blocks: 10 in captures that start mid-connection, where h2scope writes an HPACK
//!   entry it never saw as `<unknown dynamic #N>` and tshark as `<unknown>` with an empty value;
//!   2 where tshark lists a block split by CONTINUATION per fragment (h2scope: the whole block
//!   once); 1 in a fuzzed reproducer;
//! - 4 messages: gRPC-Web trailer frames, which tshark counts as messages and h2scope gives as
//!   the call's trailers.

use std::process::Command;

/// (matched, in the references, ours) of each figure of a totals line such as
/// `frames 1287/1292 (99.61%), header blocks 334/347 (96.25%) on 44 captures`.
fn totals(line: &str) -> Vec<(u64, u64)> {
    line.split(", ")
        .filter_map(|part| {
            let fraction = part.split_whitespace().find(|w| w.contains('/'))?;
            let (a, b) = fraction.split_once('/')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

#[test]
fn agreement_with_tshark_does_not_fall() {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/agreement"))
        .env("H2SCOPE", env!("CARGO_BIN_EXE_h2scope"))
        .output()
        .expect("scripts/agreement runs (python3 is installed by scripts/install-deps)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("crashed or failed"), "{text}");
    let line = |first: &str| {
        let l = (text.lines())
            .find(|l| l.starts_with(first) && l.contains(" on "))
            .unwrap_or_else(|| panic!("no totals line for {first}: {text}"));
        totals(l)
    };
    // (figure, at least matched, reference total)
    let expected = [
        (line("frames"), [(1287, 1292), (334, 347)]),
        (line("messages"), [(107, 111), (84, 84)]),
    ];
    for (got, want) in expected {
        assert_eq!(got.len(), 2, "{text}");
        for ((matched, total), (at_least, reference_total)) in got.into_iter().zip(want) {
            assert_eq!(total, reference_total, "the corpus changed: {text}");
            assert!(
                matched >= at_least,
                "{matched}/{total} < {at_least}: {text}"
            );
        }
    }
}
