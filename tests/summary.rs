//! `read -q` counts without building the events it would not show. Its summary must still
//! count what the full output shows: the same frames, calls, messages, gaps and errors, on one
//! thread and on several, on every public capture and on the shipped recordings.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_h2scope");

/// The JSON Lines summary (the last line) of `read` with these arguments.
fn summary(file: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["read", "--format", "jsonl"])
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
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
        for threads in ["1", "2"] {
            let quiet = summary(file, &["-q", "--threads", threads]);
            assert_eq!(quiet, full, "{file}: -q --threads {threads}");
        }
        if full["calls"].as_u64() > Some(0) && full["messages"].as_u64() > Some(0) {
            with_calls += 1;
        }
    }
    // Not a comparison of zeros: most captures carry gRPC calls and messages.
    assert!(with_calls >= 20, "{with_calls} captures with calls");
}
