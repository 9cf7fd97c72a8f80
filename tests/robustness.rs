//! A capture is attacker-controlled: every corpus file cut at many points and with random bytes
//! changed must go through the whole pipeline without a panic, and what is decodable is still
//! decoded. Deterministic (seeded), so a failure reproduces.

mod common;

use h2scope::analysis::health::{self, ConnectionHealth, Health};
use h2scope::analysis::stats::CallStats;
use h2scope::capture::{CaptureError, CaptureReader};
use h2scope::event::{Event, Sink};
use h2scope::pipeline::Config;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = common::public_capture("");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".pcap") || name.ends_with(".pcapng") {
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    assert!(out.len() >= 40, "corpus not found at {dir}");
    out
}

/// xorshift64*: small, seeded, good enough to pick positions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn header_len(b: &[u8]) -> usize {
    if b.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize
    } else {
        24
    }
}

fn frames(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Frame(_)))
        .count()
}

#[test]
fn truncated_captures_decode_what_they_hold() {
    for (name, bytes) in corpus() {
        let (full, _, ok) = common::dissect_bytes(bytes.clone(), Config::default());
        assert!(ok, "{name} does not read");
        let full_frames = frames(&full);
        let mut last = 0;
        for i in 1..=40 {
            let cut = bytes.len() * i / 41;
            let (events, _, ok) = common::dissect_bytes(bytes[..cut].to_vec(), Config::default());
            // A file cut inside a record is a warning, not an error; only a cut inside the file
            // header (pcap: 24 bytes, pcapng: the section header block) is refused.
            assert!(
                ok || cut < header_len(&bytes),
                "{name} cut at {cut} failed to read"
            );
            let n = frames(&events);
            assert!(
                n <= full_frames,
                "{name} cut at {cut}: more frames than whole"
            );
            // A longer prefix never shows fewer frames than a shorter one.
            assert!(
                n >= last,
                "{name} cut at {cut}: {n} frames, fewer than {last}"
            );
            last = n;
        }
        for cut in 0..64.min(bytes.len()) {
            common::dissect_bytes(bytes[..cut].to_vec(), Config::default());
        }
    }
}

#[test]
fn corrupted_captures_do_not_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for (_name, bytes) in corpus() {
        for _ in 0..30 {
            let mut b = bytes.clone();
            let flips = 1 + rng.below(16);
            for _ in 0..flips {
                let at = rng.below(b.len());
                b[at] = rng.next() as u8;
            }
            common::dissect_bytes(b, Config::default());
        }
        // Corruption concentrated after the file header, where record lengths live.
        for _ in 0..10 {
            let mut b = bytes.clone();
            let at = 24 + rng.below(b.len().saturating_sub(24).max(1));
            for k in 0..8 {
                if let Some(x) = b.get_mut(at + k) {
                    *x = 0xff;
                }
            }
            common::dissect_bytes(b, Config::default());
        }
    }
}

#[test]
fn garbage_is_refused_with_a_clear_error() {
    let mut rng = Rng(99);
    for len in [0usize, 1, 4, 23, 24, 100, 4096] {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        match CaptureReader::from_read("garbage.bin", std::io::Cursor::new(bytes)) {
            Ok(_) => panic!("random bytes accepted as a capture"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("garbage.bin: "), "{msg}");
            }
        }
    }
}

#[test]
fn huge_record_length_is_refused_without_allocating() {
    // A valid pcap header, then a record that claims 4 GiB.
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    b.extend_from_slice(&[2, 0, 4, 0]);
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    b.extend_from_slice(&vec![0u8; 2 << 20]);
    let mut r = CaptureReader::from_read("huge.pcap", std::io::Cursor::new(b)).unwrap();
    let err = r.for_each_packet(|_| true).unwrap_err();
    assert!(
        matches!(err, CaptureError::RecordTooLarge { record: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("huge.pcap"));
}

/// HTTP/2 bytes at random after a valid preface: every frame type, lengths, HPACK garbage.
#[test]
fn random_http2_streams_do_not_panic() {
    let mut rng = Rng(7);
    for round in 0..300 {
        let mut client = h2scope::http2::frame::PREFACE.to_vec();
        let mut server = Vec::new();
        let mut whole_frames = 0;
        for side in [&mut client, &mut server] {
            let frames = rng.below(12);
            whole_frames += frames;
            for _ in 0..frames {
                let len = match rng.below(4) {
                    0 => rng.below(16),
                    1 => rng.below(300),
                    2 => 6 * rng.below(4),
                    _ => rng.below(3000),
                };
                let kind = rng.below(12) as u8;
                let flags = rng.next() as u8;
                let stream = if rng.below(3) == 0 {
                    0
                } else {
                    rng.below(9) as u32
                };
                side.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
                side.push(kind);
                side.push(flags);
                side.extend_from_slice(&stream.to_be_bytes());
                for _ in 0..len {
                    side.push(if rng.below(4) == 0 {
                        0x3f
                    } else {
                        rng.next() as u8
                    });
                }
            }
            if round % 3 == 0 {
                // End in the middle of a frame.
                side.extend_from_slice(&[0, 0x40, 0, 1, 0, 0, 0, 0, 1, 0x82]);
            }
        }
        let pcap = common::conversation_capture(&client, &server, rng.below(1400) + 1);
        let (events, _, ok) = common::dissect_bytes(pcap, Config::default());
        assert!(ok);
        assert!(
            events.iter().any(|e| matches!(e, Event::Frame(_))) || whole_frames == 0,
            "round {round}: {} {} {:?}",
            hex::encode(&client),
            hex::encode(&server),
            events
        );
    }
}

/// One dissector and three threads on `b`: the same events, or `None` if `b` is no capture.
fn one_and_threads(name: &str, b: Vec<u8>) -> Option<()> {
    use h2scope::grpc::schema::Schemas;
    // One dissector, with a reading error where the CLI reports it: after the packets' events,
    // before the connections still open are ended.
    let mut r = CaptureReader::from_read("mem", std::io::Cursor::new(b.clone())).ok()?;
    let mut d = h2scope::pipeline::Dissector::new(Config::default());
    let mut one = Vec::new();
    if let Err(e) = r.for_each_packet(|p| {
        d.packet(p, &mut one);
        true
    }) {
        one.push(Event::Error(h2scope::event::ErrorEvent {
            origin: None,
            stream: None,
            kind: h2scope::event::ErrorKind::Capture,
            message: e.to_string(),
        }));
    }
    let one_stats = d.finish(&mut one);
    let mut r = CaptureReader::from_read("mem", std::io::Cursor::new(b)).ok()?;
    let mut many: Vec<Event> = Vec::new();
    let out = h2scope::parallel::dissect(
        &mut r,
        &Config::default(),
        &Schemas::bundled(),
        3,
        u64::MAX,
        &|_: &Event, _: &mut Vec<u8>| h2scope::parallel::Handoff::Event,
        &mut many,
        |_| {},
    );
    let show = |v: &[Event]| v.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>();
    assert_eq!(show(&many), show(&one), "{name}");
    assert_eq!(out.stats.packets, one_stats.packets, "{name}");
    assert_eq!(out.tally.frames as usize, frames(&one), "{name}");
    Some(())
}

/// Corrupted captures through the threaded reader: no panic, no hang, and the same events as
/// one dissector (the merge must hold up when packets are garbage, flows odd, times jump).
#[test]
fn corrupted_captures_read_the_same_on_several_threads() {
    let mut rng = Rng(0x5eed_7777_0000_0002);
    let mut compared = 0;
    for (name, bytes) in corpus() {
        for round in 0..8 {
            let mut b = bytes.clone();
            if round > 0 {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
            }
            if one_and_threads(&format!("{name}, round {round}"), b).is_none() {
                continue;
            }
            compared += 1;
        }
    }
    assert!(compared > 100);
}

/// Found by the `capture_threads` fuzz target: a record that is not a packet left the packet
/// count behind the last packet's number, and connections open at the end were ended at the
/// count (one dissector) or at the number (threads).
#[test]
fn connections_end_at_the_last_packet_after_skipped_records() {
    let b = std::fs::read(format!(
        "{}/tests/data/threads-end-after-skipped-record.pcapng",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let (events, _, _) = common::dissect_bytes(b.clone(), Config::default());
    let last = events
        .iter()
        .filter_map(|e| match e {
            Event::Error(e) => e.origin.map(|o| o.packet),
            _ => None,
        })
        .max();
    assert_eq!(last, Some(39));
    one_and_threads("fuzz finding", b).unwrap();
}

/// Compressed captures are as untrusted: a compressed corpus file cut anywhere or with bytes
/// changed must not panic, and a cut never shows more frames than the whole file (nor fewer
/// than a shorter cut). Compressed by the real tools, as users' files are.
#[test]
fn compressed_captures_cut_or_corrupted_do_not_panic() {
    let mut rng = Rng(0x5eed_c0de_0000_0007);
    let tools: [(&str, &[&str]); 3] = [
        ("gzip", &["-c"]),
        ("zstd", &["-q", "-c"]),
        ("lz4", &["-q", "-c"]),
    ];
    // Every fifth file of the corpus keeps this test to a few seconds.
    for (name, bytes) in corpus().into_iter().step_by(5) {
        let (full, _, ok) = common::dissect_bytes(bytes.clone(), Config::default());
        assert!(ok, "{name} does not read");
        let full_frames = frames(&full);
        for (tool, flags) in tools {
            let mut child = std::process::Command::new(tool)
                .args(flags)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/install-deps installs it)"));
            let mut stdin = child.stdin.take().unwrap();
            let input = bytes.clone();
            let writer = std::thread::spawn(move || {
                use std::io::Write;
                stdin.write_all(&input).unwrap()
            });
            let packed = child.wait_with_output().unwrap().stdout;
            writer.join().unwrap();
            let (events, _, ok) = common::dissect_bytes(packed.clone(), Config::default());
            assert!(ok && frames(&events) == full_frames, "{tool} {name}");
            let mut last = 0;
            for i in 1..=20 {
                let cut = packed.len() * i / 21;
                let (events, _, _) =
                    common::dissect_bytes(packed[..cut].to_vec(), Config::default());
                let n = frames(&events);
                assert!(n <= full_frames, "{tool} {name} cut at {cut}");
                assert!(
                    n >= last,
                    "{tool} {name} cut at {cut}: {n} frames, fewer than {last}"
                );
                last = n;
            }
            for _ in 0..20 {
                let mut b = packed.clone();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                common::dissect_bytes(b, Config::default());
            }
        }
    }
}

/// Every event, and what `health` and `stats` make of them, which pack a connection's figures
/// when it goes quiet.
struct Everything<F: FnMut(ConnectionHealth)> {
    events: Vec<Event>,
    health: Health<F>,
    stats: CallStats,
}

impl<F: FnMut(ConnectionHealth)> Sink for Everything<F> {
    fn event(&mut self, event: Event) {
        self.health.event(event.clone());
        self.stats.event(event.clone());
        self.events.push(event);
    }

    fn quiet(&mut self, conn: u64) {
        self.health.quiet(conn);
        self.stats.quiet(conn);
    }
}

/// A sweep compacts the connections that have gone quiet, which gives back room, not state:
/// with every connection compacted after every packet (its HTTP/2 state in its quiet form,
/// its `health` and `stats` figures packed), each capture dissects to the events, health
/// reports and statistics it gives with none ever compacted.
#[test]
fn compacting_connections_changes_no_event() {
    let run = |file: &str, quiet_ns| {
        let mut cfg = Config::default();
        cfg.flows.external_sweeps = true;
        cfg.flows.quiet_ns = quiet_ns;
        let mut d = h2scope::pipeline::Dissector::new(cfg);
        let mut reports = Vec::new();
        let mut all = Everything {
            events: Vec::new(),
            health: Health::new(|r| reports.push(health::to_json(&r))),
            stats: CallStats::default(),
        };
        let mut reader = CaptureReader::open(file).unwrap();
        let read = reader.for_each_packet(|p| {
            d.packet(p, &mut all);
            // The same sweeps in both runs: only compaction differs.
            d.sweep(p.index, p.ts_ns, &mut all);
            true
        });
        // A damaged record ends reading (tests/data has such captures): what came before
        // it is compared.
        let ended = read.map_err(|e| e.to_string());
        d.finish(&mut all);
        all.health.finish();
        let Everything {
            events, mut stats, ..
        } = all;
        format!(
            "{events:#?}\n{ended:?}\n{reports:#?}\n{:#}",
            stats.to_json()
        )
    };
    let mut with_frames = 0;
    for file in common::captures() {
        let compacted = run(&file, 0);
        with_frames += usize::from(compacted.contains("Frame("));
        assert_eq!(compacted, run(&file, i64::MAX), "{file}");
    }
    assert!(with_frames >= 20, "{with_frames} captures with frames");
}
