//! `read -q` counts without building the events it would not show, and `read --calls` builds
//! no frame or message events. Their summaries must still count what the full output shows:
//! the same frames, calls, messages, gaps and errors, on one thread and on several, in both
//! formats, on every public capture and on the shipped recordings.

mod common;

use common::captures;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_h2scope");

fn read(file: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("read")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The text summary: from the last line that names the file.
fn text_summary(file: &str, args: &[&str]) -> String {
    let text = read(file, args);
    let at = text.rfind("\n== ").map_or(0, |i| i + 1);
    text[at..].to_string()
}

/// The JSON Lines summary (the last line) of `read` with these arguments.
fn summary(file: &str, args: &[&str]) -> serde_json::Value {
    let mut with_format = vec!["--format", "jsonl"];
    with_format.extend_from_slice(args);
    let text = read(file, &with_format);
    let last = text.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_default();
    assert_eq!(v["event"], "summary", "{file} {args:?}: {last}");
    v
}

/// Every event of a capture, dissected in this process.
fn dissect<S: h2scope::event::Sink>(file: &str, sink: &mut S) {
    let mut reader = h2scope::capture::CaptureReader::open(file).unwrap();
    let mut d = h2scope::pipeline::Dissector::new(h2scope::pipeline::Config::default());
    let _ = reader.for_each_packet(|p| {
        d.packet(p, sink);
        true
    });
    d.finish(sink);
}

#[test]
fn a_summary_counts_what_the_full_output_shows() {
    let files = captures();
    assert!(files.len() >= 40, "{} captures", files.len());
    let mut with_calls = 0;
    for file in &files {
        let full = summary(file, &["--threads", "1"]);
        let full_text = text_summary(file, &["--threads", "1"]);
        assert!(full_text.starts_with("== "), "{file}: {full_text}");
        for threads in ["1", "2"] {
            for light in ["-q", "--calls"] {
                let json = summary(file, &[light, "--threads", threads]);
                assert_eq!(json, full, "{file}: {light} --threads {threads}");
                let text = text_summary(file, &[light, "--threads", threads]);
                assert_eq!(
                    text, full_text,
                    "{file}: {light} --threads {threads} (text)"
                );
            }
        }
        if full["calls"].as_u64() > Some(0) && full["messages"].as_u64() > Some(0) {
            with_calls += 1;
        }
    }
    // Not a comparison of zeros: most captures carry gRPC calls and messages.
    assert!(with_calls >= 20, "{with_calls} captures with calls");
}

/// `health` looks at everything but messages (`Wants::AllButMessages`), and message events are
/// then not built. Such a sink must still get every other event, in the same order, as a sink
/// that takes everything, and a `Counting` around it must count the messages all the same.
#[test]
fn a_sink_without_messages_gets_every_other_event() {
    use h2scope::event::{Event, Sink, Wants};
    use h2scope::output::Counting;

    struct NoMessages(Vec<Event>);
    impl Sink for NoMessages {
        fn wants(&mut self) -> Wants<'_> {
            Wants::AllButMessages(None)
        }
        fn event(&mut self, e: Event) {
            self.0.push(e);
        }
    }
    let mut messages = 0;
    for file in captures() {
        let mut full = Counting::new(Vec::<Event>::new());
        dissect(&file, &mut full);
        let mut part = Counting::new(NoMessages(Vec::new()));
        dissect(&file, &mut part);
        assert_eq!(part.tally, full.tally, "{file}");
        messages += full.tally.messages;
        let others: Vec<String> = full
            .inner
            .iter()
            .filter(|e| !matches!(e, Event::Message(_)))
            .map(|e| format!("{e:?}"))
            .collect();
        let got: Vec<String> = part.inner.0.iter().map(|e| format!("{e:?}")).collect();
        assert!(got == others, "{file}: other events differ");
    }
    assert!(messages > 100, "only {messages} messages in all captures");
}

/// A display filter writes only the fields it names and decides on them, and decides on
/// `event` alone when that is enough (`event == call and ...` for a frame). Both must agree,
/// on every event of every capture, with deciding on the event's whole JSON Lines form.
#[test]
fn a_display_filter_decides_as_on_the_whole_event() {
    use h2scope::output::filter::Filter;
    use h2scope::output::jsonl::event_json;
    use h2scope::output::keys::keys_of;

    let texts = [
        "event == call and grpc_status != 0",
        "type == DATA or type == HEADERS and stream > 1",
        "not event == message",
        "event != frame and path contains Health",
        "headers[\":path\"] ~ Watch or request_headers.user-agent contains grpc",
        "json or fields",
        "event == error or notes",
        "length >= 5 and dir == response",
        "binary_metadata or trailers.grpc-status == 0",
        "conn == 1 and (flag_names == END_STREAM or end == reset)",
        "grpc_status != 0",
        "not grpc_status and stream > 0",
        // Fields read from the event itself (`filter::direct`), each kind of value.
        "type_code >= 4 and flags == 0",
        "index == 0 and not compressed and not encoding and dir == request",
        "status == 200 or packet < 10",
        "type contains Health or type == SETTINGS",
        "event",
    ];
    let filters: Vec<Filter> = texts.iter().map(|f| f.parse().unwrap()).collect();
    let mut shown = vec![0usize; filters.len()];
    let mut kinds = std::collections::BTreeSet::new();
    let mut events = 0;
    for file in captures() {
        let mut all = Vec::new();
        dissect(&file, &mut all);
        for e in &all {
            let whole = event_json(e);
            // The lists of keys that decide filters for whole kinds, and catch misspelt
            // fields, hold every key written.
            let kind = whole["event"].as_str().unwrap_or_default().to_string();
            let keys = keys_of(&kind).unwrap_or_else(|| panic!("{file}: kind {kind}"));
            for k in whole.as_object().into_iter().flat_map(|o| o.keys()) {
                assert!(keys.contains(&k.as_str()), "{file}: {kind} has {k}");
            }
            kinds.insert(kind);
            for (i, f) in filters.iter().enumerate() {
                let m = f.matches(e);
                assert_eq!(m, f.matches_json(&whole), "{file}: {} on {whole}", texts[i]);
                shown[i] += usize::from(m);
            }
        }
        events += all.len();
    }
    let all_kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
    assert_eq!(
        all_kinds,
        ["call", "connection", "error", "frame", "gap", "message"]
    );
    // Each filter but the last shows some events and hides others, so both answers were
    // checked.
    for (f, n) in texts.iter().zip(&shown) {
        assert!(*n > 0, "{f} shows nothing");
        assert!(*n < events || *f == "event", "{f} shows all {events}");
    }
}
