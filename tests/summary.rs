//! `read -q` counts without building the events it would not show, and `read --calls` builds
//! no frame or message events. Their summaries must still count what the full output shows:
//! the same frames, calls, messages, gaps and errors, on one thread and on several, in both
//! formats, on every public capture and on the shipped recordings.

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

fn captures() -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = Vec::new();
    for dir in [
        format!("{root}/../shared/captures/public"),
        format!("{root}/testdata"),
        format!("{root}/tests/data"),
    ] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().path().to_string_lossy().to_string();
            if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                files.push(name);
            }
        }
    }
    files.sort();
    files
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
    use h2scope::capture::CaptureReader;
    use h2scope::event::{Event, Sink, Wants};
    use h2scope::output::Counting;
    use h2scope::pipeline::{Config, Dissector};

    struct NoMessages(Vec<Event>);
    impl Sink for NoMessages {
        fn wants(&mut self) -> Wants<'_> {
            Wants::AllButMessages(None)
        }
        fn event(&mut self, e: Event) {
            self.0.push(e);
        }
    }
    fn dissect<S: Sink>(file: &str, sink: &mut S) {
        let mut reader = CaptureReader::open(file).unwrap();
        let mut d = Dissector::new(Config::default());
        let _ = reader.for_each_packet(|p| {
            d.packet(p, sink);
            true
        });
        d.finish(sink);
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
