//! `--threads N`: one capture's connections split across threads must print exactly what one
//! thread prints (same events, same order, same connection numbers, same summary; the same
//! health reports and call statistics), on every public capture and on a capture of many
//! connections of real traffic.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_h2scope");

/// `h2scope COMMAND --threads N ARGS...`, for `args` = COMMAND ARGS...
fn run(args: &[&str], threads: &str) -> Vec<u8> {
    let out = Command::new(BIN)
        .arg(args[0])
        .args(["--threads", threads])
        .args(&args[1..])
        .output()
        .unwrap();
    out.stdout
}

/// testdata's health capture made into `copies` connections by `scripts/replicate-capture`
/// with `options`, in a directory of its own: the directory, and the capture's path.
fn replicated(name: &str, options: &[&str], copies: usize) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("h2scope-threads-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join(format!("{name}.pcap"));
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("python3")
        .arg(format!("{root}/scripts/replicate-capture"))
        .args(options)
        .arg(format!("{root}/testdata/grpc-health.pcap"))
        .arg(&capture)
        .arg(copies.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    (dir, capture.to_string_lossy().into_owned())
}

/// Runs on one thread, then on two and three, and returns what one thread printed.
fn same(args: &[&str]) -> Vec<u8> {
    let one = run(args, "1");
    // `read` always prints its summary; an analysis has nothing to say without HTTP/2.
    assert!(!one.is_empty() || args[0] != "read", "{args:?}");
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
    one
}

#[test]
fn every_public_capture_reads_the_same_on_several_threads() {
    let dir = format!("{}/../shared/captures/public", env!("CARGO_MANIFEST_DIR"));
    let (mut n, mut analysed) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.to_string_lossy().to_string();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            continue;
        }
        same(&["read", "--format", "jsonl", &name]);
        for command in ["stats", "health"] {
            if !same(&[command, "--format", "jsonl", &name]).is_empty() {
                analysed += 1;
            }
        }
        n += 1;
    }
    assert!(n >= 30, "{n} captures");
    assert!(analysed >= 40, "{analysed} analyses with something to say");
}

/// A capture whose reading fails part-way: the error line comes where one thread puts it (after
/// the packets' events, before the connections still open are ended), in both formats.
#[test]
fn a_reading_error_comes_in_the_same_place_on_several_threads() {
    let f = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/threads-end-after-skipped-record.pcapng"
    );
    same(&["read", "--format", "jsonl", f]);
    same(&["read", "--format", "text", f]);
}

/// testdata replicated into 300 connections that overlap in time (scripts/replicate-capture
/// does the same for the benchmarks): text, JSON Lines, calls only and summary only.
#[test]
fn many_connections_read_the_same_on_several_threads() {
    let (dir, big) = replicated("many", &[], 300);
    let f = big.as_str();
    same(&["read", "--format", "jsonl", f]);
    same(&["read", "--format", "text", "-v", f]);
    same(&["read", "--format", "jsonl", "--calls", f]);
    same(&["read", "-q", f]);
    same(&["read", "-q", "--format", "jsonl", "--single-pass", f]);
    // Display filters: decided by the workers, or, on connection numbers (which only the merge
    // knows), by the output thread, with text times counted from the capture's first packet.
    same(&["read", "-Y", "stream == 53 or type == GOAWAY", f]);
    same(&["read", "-Y", "conn == 7 || conn > 297", f]);
    same(&["read", "-Y", "conn == 7", "--calls", f]);
    same(&[
        "read",
        "-Y",
        "conn < 3 && json.status == SERVING",
        "--format",
        "jsonl",
        f,
    ]);
    // Each thread analyses its connections; the reports come in the order one thread writes
    // them, and the statistics are merged.
    for command in ["stats", "health"] {
        same(&[command, f]);
        same(&[command, "--format", "jsonl", f]);
    }
    same(&["stats", "-Y", "grpc_status != 0 || stream > 40", f]);
    // By interval: wide ones hold thousands of calls (latencies in buckets), narrow ones few.
    same(&["stats", "--interval", "1m", "--format", "jsonl", f]);
    same(&["stats", "--interval", "20ms", f]);
    same(&[
        "health",
        "-Y",
        "calls > 26 && client_side.resets.CANCEL == 1",
        f,
    ]);
    // A filter on connection numbers runs on one thread.
    same(&["stats", "-Y", "conn < 5", f]);
    same(&["health", "-Y", "conn > 290", "--format", "jsonl", f]);
    let stats = run(&["stats", "--format", "jsonl", f], "3");
    let v: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(v["total"]["calls"], 300 * 27);
    assert_eq!(v["connections"].as_object().unwrap().len(), 300);
    assert!(
        v["connections"]["299"]["calls"] == 27,
        "{}",
        v["connections"]
    );
    let health = run(&["health", "--format", "jsonl", f], "3");
    let conns: Vec<u64> = String::from_utf8(health)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["conn"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let mut sorted = conns.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, (0..300).collect::<Vec<_>>());
    // -q prints the summary alone, counted by the threads.
    let summary = run(&["read", "-q", "--format", "jsonl", f], "2");
    let text = String::from_utf8(summary).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["calls"], 300 * 27);
    assert_eq!(v["http2_connections"], 300);
    std::fs::remove_dir_all(&dir).ok();
}

/// 2,500 connections still open at the end of the capture (`replicate-capture --open`): each
/// worker ends its own in pieces of 1,024 and hands each piece on as it is made, and the merge
/// writes them in connection order across the workers as they come, as one thread does.
#[test]
fn connections_open_at_the_end_end_the_same_on_several_threads() {
    let (dir, open) = replicated("open", &["--open"], 2500);
    let f = open.as_str();
    let ends = same(&["read", "--format", "jsonl", "-Y", "event == connection", f]);
    let ended = String::from_utf8_lossy(&ends)
        .lines()
        .filter(|l| l.contains(r#""end":"capture-end""#))
        .count();
    assert_eq!(ended, 2500);
    same(&["read", "--format", "jsonl", "--calls", f]);
    same(&["read", f]);
    let reports = same(&["health", "--format", "jsonl", f]);
    assert_eq!(String::from_utf8_lossy(&reports).lines().count(), 2500);
    same(&["stats", "--format", "jsonl", f]);
    std::fs::remove_dir_all(&dir).unwrap();
}
