//! `read --threads N`: one capture's connections split across threads must print exactly what
//! one thread prints (same events, same order, same connection numbers, same summary), on every
//! public capture and on a capture of many connections of real traffic.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_h2scope");

fn run(args: &[&str], threads: &str) -> Vec<u8> {
    let out = Command::new(BIN)
        .args(["read", "--threads", threads])
        .args(args)
        .output()
        .unwrap();
    out.stdout
}

fn same(args: &[&str]) {
    let one = run(args, "1");
    assert!(!one.is_empty(), "{args:?}");
    for n in ["2", "3"] {
        let many = run(args, n);
        if one != many {
            let (a, b) = (
                String::from_utf8_lossy(&one),
                String::from_utf8_lossy(&many),
            );
            let at = a.lines().zip(b.lines()).position(|(x, y)| x != y);
            panic!(
                "{args:?} with {n} threads differs at line {at:?}:\n{:?}\n{:?}",
                at.and_then(|i| a.lines().nth(i)),
                at.and_then(|i| b.lines().nth(i))
            );
        }
    }
}

#[test]
fn every_public_capture_reads_the_same_on_several_threads() {
    let dir = format!("{}/../shared/captures/public", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.to_string_lossy().to_string();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            continue;
        }
        same(&["--format", "jsonl", &name]);
        n += 1;
    }
    assert!(n >= 30, "{n} captures");
}

/// A capture whose reading fails part-way: the error line comes where one thread puts it (after
/// the packets' events, before the connections still open are ended), in both formats.
#[test]
fn a_reading_error_comes_in_the_same_place_on_several_threads() {
    let f = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/threads-end-after-skipped-record.pcapng"
    );
    same(&["--format", "jsonl", f]);
    same(&["--format", "text", f]);
}

/// testdata replicated into 300 connections that overlap in time (scripts/replicate-capture
/// does the same for the benchmarks): text, JSON Lines, calls only and summary only.
#[test]
fn many_connections_read_the_same_on_several_threads() {
    let dir = std::env::temp_dir().join(format!("h2scope-threads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("many.pcap");
    let status = Command::new("python3")
        .arg(format!(
            "{}/scripts/replicate-capture",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(format!(
            "{}/testdata/grpc-health.pcap",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&big)
        .arg("300")
        .status()
        .unwrap();
    assert!(status.success());
    let f = big.to_str().unwrap();
    same(&["--format", "jsonl", f]);
    same(&["--format", "text", "-v", f]);
    same(&["--format", "jsonl", "--calls", f]);
    same(&["-q", f]);
    same(&["-q", "--format", "jsonl", "--single-pass", f]);
    // Display filters: decided by the workers, or, on connection numbers (which only the merge
    // knows), by the output thread, with text times counted from the capture's first packet.
    same(&["-Y", "stream == 53 or type == GOAWAY", f]);
    same(&["-Y", "conn == 7 || conn > 297", f]);
    same(&["-Y", "conn == 7", "--calls", f]);
    same(&[
        "-Y",
        "conn < 3 && json.status == SERVING",
        "--format",
        "jsonl",
        f,
    ]);
    // -q prints the summary alone, counted by the threads.
    let summary = run(&["-q", "--format", "jsonl", f], "2");
    let text = String::from_utf8(summary).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["calls"], 300 * 27);
    assert_eq!(v["http2_connections"], 300);
    std::fs::remove_dir_all(&dir).ok();
}
