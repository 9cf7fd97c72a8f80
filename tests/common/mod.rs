//! Test support: run the pipeline in-process, and record real TCP conversations as captures.

#![allow(dead_code)]

pub mod echo;
pub mod haproxy;
pub mod peers;
pub mod recorder;
pub mod tls;

use h2scope::capture::CaptureReader;
use h2scope::event::{Event, FrameEvent};
use h2scope::http2::call::Call;
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

/// A classic (little-endian) pcap file without the records (numbered from 1) that `drop` picks:
/// packets the capture missed.
pub fn pcap_without(bytes: &[u8], drop: impl Fn(usize) -> bool) -> Vec<u8> {
    let mut out = bytes[..24].to_vec();
    let mut at = 24;
    let mut n = 1;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let end = at + 16 + caplen;
        if !drop(n) {
            out.extend_from_slice(&bytes[at..end]);
        }
        at = end;
        n += 1;
    }
    out
}

/// Serves `router` on a fresh IPv4 loopback port, in the background of the current runtime.
pub async fn serve(router: tonic::transport::server::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

/// `len` bytes of xorshift noise from `seed`: they do not compress, and look like no structure.
pub fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Every capture the tests read whole: the public corpus (`../shared`), the shipped recordings
/// and the tests' own.
pub fn captures() -> Vec<String> {
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

pub fn public_capture(name: &str) -> String {
    format!(
        "{}/../shared/captures/public/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A hand-built capture of one connection 127.0.0.1:40000 → 127.0.0.1:50051: handshake, then
/// each side's bytes in segments of at most `mss` bytes, alternating.
pub fn conversation_capture(client: &[u8], server: &[u8], mss: usize) -> Vec<u8> {
    let (mut ci, mut si) = (client.chunks(mss), server.chunks(mss));
    let mut segments = Vec::new();
    loop {
        let (c, s) = (ci.next(), si.next());
        if c.is_none() && s.is_none() {
            break;
        }
        segments.extend(c.map(|c| (true, c.to_vec())));
        segments.extend(s.map(|s| (false, s.to_vec())));
    }
    segments_capture(&segments)
}

/// A hand-built capture of one connection 127.0.0.1:40000 → 127.0.0.1:50051: handshake, then
/// the given segments in order (`true`: from the client).
pub fn segments_capture(segments: &[(bool, Vec<u8>)]) -> Vec<u8> {
    segments_capture_with(segments, true)
}

/// As [`segments_capture`], with or without the handshake (a capture that joined mid-way).
pub fn segments_capture_with(segments: &[(bool, Vec<u8>)], handshake: bool) -> Vec<u8> {
    let start = 1_000_000_000i64 + if handshake { 3000 } else { 1000 };
    let timed: Vec<(i64, bool, Vec<u8>)> = segments
        .iter()
        .enumerate()
        .map(|(i, (from_client, bytes))| (start + i as i64 * 1000, *from_client, bytes.clone()))
        .collect();
    timed_capture(&timed, handshake)
}

/// As [`segments_capture_with`], each segment at the time given with it (ns since 1970; the
/// handshake comes 2 µs before the first).
pub fn timed_capture(segments: &[(i64, bool, Vec<u8>)], handshake: bool) -> Vec<u8> {
    use etherparse::PacketBuilder;
    use h2scope::capture::LinkType;
    use h2scope::output::pcap::PcapWriter;
    let mut w = PcapWriter::new(Vec::new(), LinkType(101), 65535).unwrap();
    let mut write = |ts: i64, src: u16, dst: u16, seq: u32, ack: u32, syn: bool, payload: &[u8]| {
        let b = PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64).tcp(src, dst, seq, 65535);
        let b = if syn { b.syn() } else { b };
        let b = b.ack(ack);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        w.write_packet(ts, &out, out.len() as u32).unwrap();
    };
    if handshake {
        let first = segments.first().map_or(1_000_003_000, |s| s.0);
        write(first - 2000, 40000, 50051, 100, 0, true, &[]);
        write(first - 1000, 50051, 40000, 900, 101, true, &[]);
    }
    let (mut cs, mut ss) = (101u32, 901u32);
    for (ts, from_client, bytes) in segments {
        if *from_client {
            write(*ts, 40000, 50051, cs, ss, false, bytes);
            cs = cs.wrapping_add(bytes.len() as u32);
        } else {
            write(*ts, 50051, 40000, ss, cs, false, bytes);
            ss = ss.wrapping_add(bytes.len() as u32);
        }
    }
    w.into_inner()
}

/// One HTTP/2 frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn frames(events: &[Event]) -> Vec<&FrameEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Frame(f) => Some(f),
            _ => None,
        })
        .collect()
}

pub fn calls(events: &[Event]) -> Vec<&Call> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Call(c) => Some(&**c),
            _ => None,
        })
        .collect()
}

/// A tonic server with only the health service, on a free loopback port, in its own runtime
/// (keep the runtime: dropping it stops the server).
pub fn health_server() -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let (_reporter, health) = tonic_health::server::health_reporter();
        serve(tonic::transport::Server::builder().add_service(health)).await
    });
    (rt, addr)
}

/// Whether this run may capture on `lo` (root, and a binary built with `live`). Under
/// `H2SCOPE_REQUIRE_LIVE` (CI) it must.
pub fn can_capture_on_lo() -> bool {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_h2scope"))
        .args([
            "capture",
            "-i",
            "lo",
            "--duration",
            "0.1",
            "-q",
            "--no-summary",
        ])
        .output()
        .unwrap();
    let ok = out.status.success();
    if !ok {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            std::env::var_os("H2SCOPE_REQUIRE_LIVE").is_none(),
            "live capture must work here: {err}"
        );
        eprintln!("cannot capture on lo here, skipping: {err}");
    }
    ok
}

/// The words of a command line as `sh` itself reads them (a here-document's `<<'END'` is left
/// to the caller). The oracle for the quoting of the commands `read -T grpcurl` writes.
pub fn sh_words(line: &str) -> Vec<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\0' {line}"))
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{line}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_terminator('\0').map(String::from).collect()
}

/// Runs tshark on `capture` with `args` and returns what it printed; `None` where it is not
/// installed, which CI (`H2SCOPE_REQUIRE_TSHARK`, set by `scripts/test`) does not allow.
pub fn tshark(capture: &std::path::Path, args: &[&str]) -> Option<String> {
    let run = std::process::Command::new("tshark")
        .arg("-r")
        .arg(capture)
        .args(args)
        .output();
    let Ok(out) = run else {
        assert!(
            std::env::var_os("H2SCOPE_REQUIRE_TSHARK").is_none(),
            "tshark is required here (scripts/install-deps installs it)"
        );
        return None;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Whether a tool a test needs was `found`; a test without it skips, except under the
/// environment variable `require` (CI: `scripts/test` sets it, `scripts/install-deps` installs
/// the tool).
pub fn needs(found: bool, require: &str, what: &str) -> bool {
    if !found {
        assert!(
            std::env::var_os(require).is_none(),
            "{what} is required here: scripts/install-deps installs it"
        );
        eprintln!("{what} not installed: skipping (scripts/install-deps installs it)");
    }
    found
}

/// A frame as both sides are compared on: source port, stream, type, length, flags.
pub type Frame = (u16, u32, u8, u32, u8);

/// Every frame tshark finds, decoding the server's port as HTTP/2, or as TLS decrypted with
/// `keylog`; `None` without tshark.
pub fn tshark_frames(
    capture: &std::path::Path,
    port: u16,
    keylog: Option<&std::path::Path>,
) -> Option<Vec<Frame>> {
    let decode = match keylog {
        None => vec!["-d".to_string(), format!("tcp.port=={port},http2")],
        Some(keys) => vec![
            "-d".to_string(),
            format!("tcp.port=={port},tls"),
            "-o".to_string(),
            format!("tls.keylog_file:{}", keys.display()),
        ],
    };
    let decode: Vec<&str> = decode.iter().map(String::as_str).collect();
    let fields = ["-T", "fields", "-e", "tcp.srcport", "-e", "http2.streamid"];
    let more = [
        "-e",
        "http2.type",
        "-e",
        "http2.length",
        "-e",
        "http2.flags",
    ];
    let each = ["-E", "occurrence=a", "-E", "aggregator=;"];
    let args = [&decode[..], &fields, &more, &each].concat();
    let out = tshark(capture, &args)?;
    let mut frames = Vec::new();
    for line in out.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 5 || cols[2].is_empty() {
            continue;
        }
        let each = |i: usize| cols[i].split(';').collect::<Vec<_>>();
        let (streams, types, lengths, flags) = (each(1), each(2), each(3), each(4));
        for i in 0..types.len() {
            frames.push((
                cols[0].parse().unwrap(),
                streams[i].parse().unwrap(),
                types[i].parse().unwrap(),
                lengths[i].parse().unwrap(),
                u8::from_str_radix(flags[i].trim_start_matches("0x"), 16).unwrap(),
            ));
        }
    }
    Some(frames)
}
