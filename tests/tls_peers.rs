//! gRPC over TLS between real peers, recorded in the test run and decrypted with the secrets the
//! client logged: a tonic client whose connections go through rustls, a rustls server in front
//! of a tonic server, and the recorder between them on the wire. Every AEAD suite of TLS 1.2 and
//! 1.3 that rustls offers is run once, and TLS 1.3 once more after a HelloRetryRequest; in TLS
//! 1.3 the server also rolls its keys (KeyUpdate) after its first answer, which makes the client
//! roll its own.
//!
//! The public TLS captures are compared with tshark in `tshark_reference.rs` and
//! `grpc_reference.rs`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::recorder::{Link, Recorder};
use common::tls::{suite, Secrets, Tls};
use h2scope::event::{ErrorKind, Event};
use h2scope::grpc::Side;
use h2scope::pipeline::{Config, Stats};
use h2scope::tls::KeyLog;
use rustls::CipherSuite;

/// Records [`common::tls::traffic`] over `tls` through the recorder. Returns the capture and the
/// client's key log.
fn record(tls: &Tls) -> (Vec<u8>, String) {
    let secrets = Arc::new(Secrets::default());
    let (server, client) = common::tls::configs(tls, secrets.clone());
    let tls13 = tls.version.version == rustls::ProtocolVersion::TLSv1_3;
    let rec = Recorder::new(Link::Ethernet, 1460, 5_000);
    let pcap = rec.run(async {
        let front = common::tls::serve(server, tls13).await;
        let proxy = rec
            .proxy(SocketAddr::from(([127, 0, 0, 1], 0)), front)
            .await;
        common::tls::traffic(common::tls::channel(client, proxy).await, 300_000).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    });
    (pcap, secrets.text())
}

/// (stream, type, length) of every HTTP/2 frame tshark finds when given the key log, sorted;
/// `None` without tshark (the project's `scripts/install-deps` installs it for CI).
fn tshark_frames(pcap: &[u8], log: &str, port: u16) -> Option<Vec<(u32, u8, u32)>> {
    let dir = std::env::temp_dir().join(format!("h2scope-tls-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cap, keys) = (dir.join("tls.pcap"), dir.join("keys.log"));
    std::fs::write(&cap, pcap).unwrap();
    std::fs::write(&keys, log).unwrap();
    let out = common::tshark_frames(&cap, port, Some(&keys));
    std::fs::remove_dir_all(&dir).ok();
    let mut frames: Vec<(u32, u8, u32)> = out?
        .into_iter()
        .map(|(_, stream, kind, length, _)| (stream, kind, length))
        .collect();
    frames.sort();
    Some(frames)
}

/// No error at all, and `connections` TLS connections, every one decrypted.
fn assert_all_decrypted(events: &[Event], stats: &Stats, connections: u64, what: &str) {
    let errors: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::Error(_)))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}");
    assert_eq!(
        (stats.tls_connections, stats.tls_decrypted),
        (connections, connections),
        "{what}"
    );
}

/// tshark decrypts the same recording with the same key log into the same frames.
fn assert_frames_as_tshark(events: &[Event], pcap: &[u8], log: &str, what: &str) {
    let server = events
        .iter()
        .find_map(|e| match e {
            Event::ConnectionEnd(c) => Some(c.server.port()),
            _ => None,
        })
        .unwrap();
    if let Some(theirs) = tshark_frames(pcap, log, server) {
        let mut ours: Vec<(u32, u8, u32)> = common::frames(events)
            .iter()
            .map(|f| (f.header.stream, f.header.kind.code(), f.header.length))
            .collect();
        ours.sort();
        assert_eq!(ours, theirs, "{what}: frames differ from tshark's");
    }
}

/// The messages of the `tls` errors among `events`.
fn tls_errors(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Error(e) if e.kind == ErrorKind::Tls => Some(e.message.clone()),
            _ => None,
        })
        .collect()
}

/// The key log with every secret changed in its first digit: none of them opens anything.
fn wrong_secrets(log: &str) -> String {
    log.lines()
        .map(|l| {
            let (head, secret) = l.rsplit_once(' ').unwrap();
            let flipped = if secret.starts_with('0') { "1" } else { "0" };
            format!("{head} {flipped}{}\n", &secret[1..])
        })
        .collect()
}

fn config(keys: Option<&str>) -> Config {
    Config {
        tls_keys: keys.map(|k| Arc::new(KeyLog::from_text(k))),
        ..Config::default()
    }
}

fn check(tls: Tls, version: &str, name: &str) {
    let (pcap, log) = record(&tls);
    verify(pcap, &log, version, name);
}

/// The checks of a recording of [`record`]'s traffic and its key log.
fn verify(pcap: Vec<u8>, log: &str, version: &str, name: &str) {
    assert!(!log.is_empty(), "rustls logged no secrets");

    let (events, stats, ok) = common::dissect_bytes(pcap.clone(), config(Some(log)));
    assert!(ok);
    assert_all_decrypted(&events, &stats, 1, name);
    let calls = common::calls(&events);
    let paths: Vec<_> = calls.iter().map(|c| c.path().unwrap_or_default()).collect();
    assert_eq!(
        paths,
        [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Check",
            "/test.echo.Echo/Unary"
        ],
        "{name}"
    );
    assert!(calls.iter().all(|c| c.grpc_status() == Some(0)), "{name}");
    // The big request and its echo, whole: each is many records and many segments.
    let big: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) if m.decoded.length > 300_000 => Some(m.side),
            _ => None,
        })
        .collect();
    assert_eq!(big, [Side::Request, Side::Response], "{name}");
    let end = events
        .iter()
        .find_map(|e| match e {
            Event::ConnectionEnd(c) => c.tls.clone(),
            _ => None,
        })
        .expect("connection end with TLS");
    assert_eq!(end.version, Some(version), "{name}");
    assert_eq!(end.suite_name, Some(name));
    assert_eq!(end.alpn.as_deref(), Some("h2"), "{name}");
    assert_eq!(end.sni.as_deref(), Some("localhost"), "{name}");
    assert!(end.decrypted);

    assert_frames_as_tshark(&events, &pcap, log, name);

    verify_joined(&pcap, log, &events, version, name);

    // Without the key log: recognised as TLS, nothing decrypted, no error.
    let (events, stats, _) = common::dissect_bytes(pcap.clone(), config(None));
    assert_eq!(
        (stats.tls_connections, stats.tls_decrypted),
        (1, 0),
        "{name}"
    );
    assert!(common::calls(&events).is_empty());
    assert!(!events.iter().any(|e| matches!(e, Event::Error(_))));

    // With a key log that lacks this connection: one error that says so, at its end.
    let other = format!("CLIENT_RANDOM {} {}\n", "ab".repeat(32), "cd".repeat(48));
    let (events, stats, _) = common::dissect_bytes(pcap.clone(), config(Some(&other)));
    assert_eq!(stats.tls_decrypted, 0, "{name}");
    let missing: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error(e) => Some((e.kind, e.message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(missing.len(), 1, "{name}: {missing:?}");
    assert_eq!(missing[0].0, ErrorKind::Tls);
    assert!(
        missing[0].1.contains("in the key log for client random"),
        "{missing:?}"
    );

    // With wrong secrets: one error per direction that says so, and no call made up.
    let (events, stats, _) = common::dissect_bytes(pcap, config(Some(&wrong_secrets(log))));
    assert_eq!(
        (stats.tls_connections, stats.tls_decrypted),
        (1, 0),
        "{name}"
    );
    assert!(common::calls(&events).is_empty(), "{name}");
    let errors = tls_errors(&events);
    assert_eq!(errors.len(), 2, "{name}: {errors:?}");
    assert!(errors[0].contains("does not decrypt"), "{errors:?}");
}

/// The recording cut after its first call, as a capture started while the connection was
/// open: TLS 1.3 decrypts with the logged traffic secrets (and the KeyUpdates made of them)
/// found by trial; TLS 1.2, whose keys need the hellos, says it cannot. `whole` are the events
/// of the whole recording.
fn verify_joined(pcap: &[u8], log: &str, whole: &[Event], version: &str, name: &str) {
    let first_end = common::calls(whole)[0].end_packet as usize;
    let cut = common::pcap_without(pcap, |n| n <= first_end);
    let (events, stats, _) = common::dissect_bytes(cut.clone(), config(Some(log)));
    let what = format!("{name} joined after packet {first_end}");
    let end = events.iter().find_map(|e| match e {
        Event::ConnectionEnd(c) => c.tls.clone(),
        _ => None,
    });
    if version == "TLS 1.2" {
        assert_eq!(
            (stats.tls_connections, stats.tls_decrypted),
            (1, 0),
            "{what}"
        );
        let errors = tls_errors(&events);
        assert_eq!(errors.len(), 1, "{what}: {errors:?}");
        assert!(
            errors[0].contains("without its handshake"),
            "{what}: {errors:?}"
        );
        assert!(common::calls(&events).is_empty(), "{what}");
        return;
    }
    assert_eq!(
        (stats.tls_connections, stats.tls_decrypted),
        (1, 1),
        "{what}"
    );
    assert!(
        tls_errors(&events).is_empty(),
        "{what}: {:?}",
        tls_errors(&events)
    );
    let end = end.expect("connection end with TLS");
    assert_eq!(
        (end.version, end.suite_name),
        (Some("TLS 1.3"), Some(name)),
        "{what}"
    );
    assert!(end.joined && end.decrypted && end.sni.is_none(), "{what}");
    // Every frame after the cut, as the whole recording has it (packets renumbered).
    let key = |f: &&h2scope::event::FrameEvent, shift: u64| {
        (
            f.origin.packet + shift,
            f.header.stream,
            f.header.kind.code(),
            f.header.length,
        )
    };
    let ours: Vec<_> = common::frames(&events)
        .iter()
        .map(|f| key(f, first_end as u64))
        .collect();
    let theirs: Vec<_> = common::frames(whole)
        .iter()
        .map(|f| key(f, 0))
        .filter(|k| k.0 > first_end as u64)
        .collect();
    assert_eq!(ours, theirs, "{what}");
    // The big echo, both ways, decoded whole.
    let big = events
        .iter()
        .filter(|e| matches!(e, Event::Message(m) if m.decoded.length > 300_000))
        .count();
    assert_eq!(big, 2, "{what}");
    // Without the key log, or with another connection's secrets: not decrypted; the second
    // says so once.
    let (_, stats, _) = common::dissect_bytes(cut.clone(), config(None));
    assert_eq!(
        (stats.tls_connections, stats.tls_decrypted),
        (1, 0),
        "{what}"
    );
    let (events, stats, _) = common::dissect_bytes(cut, config(Some(&wrong_secrets(log))));
    assert_eq!(stats.tls_decrypted, 0, "{what}");
    let errors = tls_errors(&events);
    assert_eq!(errors.len(), 1, "{what}: {errors:?}");
    assert!(
        errors[0].contains("none of the key log's"),
        "{what}: {errors:?}"
    );
}

#[test]
fn tls13_aes_128_gcm() {
    check(
        Tls {
            version: &rustls::version::TLS13,
            suite: suite(CipherSuite::TLS13_AES_128_GCM_SHA256),
            retry: false,
        },
        "TLS 1.3",
        "TLS_AES_128_GCM_SHA256",
    );
}

#[test]
fn tls13_after_a_hello_retry_request() {
    check(
        Tls {
            version: &rustls::version::TLS13,
            suite: suite(CipherSuite::TLS13_AES_128_GCM_SHA256),
            retry: true,
        },
        "TLS 1.3",
        "TLS_AES_128_GCM_SHA256",
    );
}

#[test]
fn tls13_aes_256_gcm() {
    check(
        Tls {
            version: &rustls::version::TLS13,
            suite: suite(CipherSuite::TLS13_AES_256_GCM_SHA384),
            retry: false,
        },
        "TLS 1.3",
        "TLS_AES_256_GCM_SHA384",
    );
}

#[test]
fn tls13_chacha20_poly1305() {
    check(
        Tls {
            version: &rustls::version::TLS13,
            suite: suite(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
            retry: false,
        },
        "TLS 1.3",
        "TLS_CHACHA20_POLY1305_SHA256",
    );
}

#[test]
fn tls12_ecdhe_ecdsa_aes_128_gcm() {
    check(
        Tls {
            version: &rustls::version::TLS12,
            suite: suite(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
            retry: false,
        },
        "TLS 1.2",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    );
}

#[test]
fn tls12_ecdhe_ecdsa_aes_256_gcm() {
    check(
        Tls {
            version: &rustls::version::TLS12,
            suite: suite(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
            retry: false,
        },
        "TLS 1.2",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    );
}

#[test]
fn tls12_ecdhe_ecdsa_chacha20_poly1305() {
    check(
        Tls {
            version: &rustls::version::TLS12,
            suite: suite(CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
            retry: false,
        },
        "TLS 1.2",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    );
}

/// `testdata/grpc-tls.pcap` and `testdata/grpc-tls.keylog` are such a recording (TLS 1.3,
/// AES-128-GCM, with KeyUpdate), kept for the README and the benchmark script.
/// `H2SCOPE_REGENERATE=1` records them anew.
#[test]
fn testdata_tls_capture_decrypts_with_its_key_log() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let (pcap_path, log_path) = (dir.join("grpc-tls.pcap"), dir.join("grpc-tls.keylog"));
    if std::env::var_os("H2SCOPE_REGENERATE").is_some() {
        let (pcap, log) = record(&Tls {
            version: &rustls::version::TLS13,
            suite: suite(CipherSuite::TLS13_AES_128_GCM_SHA256),
            retry: false,
        });
        std::fs::write(&pcap_path, pcap).unwrap();
        std::fs::write(&log_path, log).unwrap();
    }
    verify(
        std::fs::read(&pcap_path).unwrap(),
        &std::fs::read_to_string(&log_path).unwrap(),
        "TLS 1.3",
        "TLS_AES_128_GCM_SHA256",
    );
}

/// `testdata/grpc-tls.pcap`, its key log, its events when decrypted, and its server.
fn testdata_tls() -> (Vec<u8>, String, Vec<Event>, SocketAddr) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let pcap = std::fs::read(dir.join("grpc-tls.pcap")).unwrap();
    let log = std::fs::read_to_string(dir.join("grpc-tls.keylog")).unwrap();
    let (whole, _, _) = common::dissect_bytes(pcap.clone(), config(Some(&log)));
    let server = whole
        .iter()
        .find_map(|e| match e {
            Event::ConnectionEnd(c) => Some(c.server),
            _ => None,
        })
        .unwrap();
    (pcap, log, whole, server)
}

/// The TCP segments of a capture that carry data: record number, towards `server` or not,
/// payload.
fn data_segments(pcap: &[u8], server: SocketAddr) -> Vec<(usize, bool, Vec<u8>)> {
    let mut reader =
        h2scope::capture::CaptureReader::from_read("mem", std::io::Cursor::new(pcap.to_vec()))
            .unwrap();
    let mut out = Vec::new();
    reader
        .for_each_packet(|p| {
            if let Ok(seg) = h2scope::capture::link::decode(p.link, p.data) {
                if !seg.payload.is_empty() {
                    out.push((p.index as usize, seg.dst == server, seg.payload.to_vec()));
                }
            }
            true
        })
        .unwrap();
    out
}

/// Record numbers of the full-size segments towards the server (or towards the client).
fn full_segments(pcap: &[u8], server: SocketAddr, to_server: bool) -> Vec<usize> {
    data_segments(pcap, server)
        .into_iter()
        .filter(|(_, to, payload)| *to == to_server && payload.len() == 1460)
        .map(|(index, _, _)| index)
        .collect()
}

/// Segments lost in the middle of the 300 kB message of one direction: decryption finds the
/// next record (the sequence number moved on by the records lost), the HTTP/2 stage is told
/// how much application data is missing, and every call is still there.
#[test]
fn decryption_goes_on_after_segments_are_lost() {
    let (pcap, log, whole, server) = testdata_tls();
    let paths = |events: &[Event]| -> Vec<(String, Option<u32>)> {
        common::calls(events)
            .iter()
            .map(|c| (c.path().unwrap_or_default(), c.grpc_status()))
            .collect()
    };
    for (to_server, dropped) in [(true, 1), (true, 15), (false, 1), (false, 15)] {
        let what = format!(
            "{dropped} segments to the {}",
            if to_server { "server" } else { "client" }
        );
        let segments = full_segments(&pcap, server, to_server);
        assert!(segments.len() > 100, "{what}: {segments:?}");
        let drop = &segments[segments.len() / 2..][..dropped];
        let cut = common::pcap_without(&pcap, |n| drop.contains(&n));
        let (events, stats, _) = common::dissect_bytes(cut, config(Some(&log)));
        let errors = tls_errors(&events);
        assert!(errors.is_empty(), "{what}: {errors:?}");
        assert_eq!(stats.tls_decrypted, 1);
        // Every call is there. A status after the gap may be unknown: the gap cut frame
        // headers, and HPACK's table is not known to be whole again until it refills.
        let (got, want) = (paths(&events), paths(&whole));
        assert_eq!(got.len(), want.len(), "{what}: {got:?}");
        for ((path, status), (want_path, want_status)) in got.iter().zip(&want) {
            assert_eq!(path, want_path, "{what}");
            assert!(status.is_none() || status == want_status, "{what}: {got:?}");
        }
        assert!(
            got[..3].iter().all(|(_, s)| *s == Some(0)),
            "{what}: {got:?}"
        );
        // The HTTP/2 stage saw one gap in that direction: what the capture lost, plus the rest
        // of the records it cut (whose tags cannot be checked), less the records' overhead.
        let gaps: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Gap(g) if (g.origin.dst == server) == to_server => Some(g.bytes),
                _ => None,
            })
            .collect();
        let lost = 1460 * dropped as u64;
        assert_eq!(gaps.len(), 1, "{what}: {gaps:?}");
        assert!(
            gaps[0] + 64 * dropped as u64 >= lost && gaps[0] <= lost + 2 * 16_384,
            "{what}: gap of {} bytes",
            gaps[0]
        );
        // The other direction's big message is whole.
        let whole_other = events.iter().any(|e| {
            matches!(e, Event::Message(m) if m.decoded.length > 300_000
                && (m.side == Side::Request) != to_server
                && m.decoded.problem.is_none())
        });
        assert!(whole_other, "{what}");
    }
}

/// A second connection of the same client resumes the first one's session (TLS 1.2: the
/// abbreviated handshake, where the server's ChangeCipherSpec comes first; TLS 1.3: a PSK from
/// a ticket). Both decrypt, as tshark also finds.
#[test]
fn resumed_sessions_decrypt() {
    for (version, id) in [
        (
            &rustls::version::TLS12,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            &rustls::version::TLS13,
            CipherSuite::TLS13_AES_128_GCM_SHA256,
        ),
    ] {
        let tls = Tls {
            version,
            suite: suite(id),
            retry: false,
        };
        let secrets = Arc::new(Secrets::default());
        let (server, client) = common::tls::configs(&tls, secrets.clone());
        let client = Arc::new(client);
        let kinds = Arc::new(std::sync::Mutex::new(Vec::new()));
        let rec = Recorder::new(Link::Ethernet, 1460, 9_000);
        let pcap = rec.run(async {
            let front = common::tls::serve(server, false).await;
            let proxy = rec
                .proxy(SocketAddr::from(([127, 0, 0, 1], 0)), front)
                .await;
            for _ in 0..2 {
                let channel = common::tls::channel_with(client.clone(), proxy, kinds.clone()).await;
                common::tls::traffic(channel, 100).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        });
        let what = format!("{:?}", version.version);
        assert_eq!(
            *kinds.lock().unwrap(),
            [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed],
            "{what}"
        );
        let log = secrets.text();
        let (events, stats, _) = common::dissect_bytes(pcap.clone(), config(Some(&log)));
        assert_all_decrypted(&events, &stats, 2, &what);
        let calls = common::calls(&events);
        assert_eq!(calls.len(), 8, "{what}");
        assert!(calls.iter().all(|c| c.grpc_status() == Some(0)), "{what}");
        assert_frames_as_tshark(&events, &pcap, &log, &what);
    }
}

/// The TLS testdata capture's segments, in order, as (from the client, payload).
fn segments_of(pcap: &[u8], server: SocketAddr) -> Vec<(bool, Vec<u8>)> {
    data_segments(pcap, server)
        .into_iter()
        .map(|(_, to_server, payload)| (to_server, payload))
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// However TCP cut the records (every segment of the recording split again at arbitrary
    /// points, down to single bytes), the same frames come out of decryption.
    #[test]
    fn records_cut_anywhere_decrypt_to_the_same_frames(cuts in proptest::collection::vec(1usize..1500, 1..64)) {
        let (pcap, log, whole, server) = testdata_tls();
        let key = |events: &[Event]| -> Vec<(u32, u8, u32, u8)> {
            common::frames(events)
                .iter()
                .map(|f| (f.header.stream, f.header.kind.code(), f.header.length, f.header.flags))
                .collect()
        };
        let mut recut = Vec::new();
        let mut next = cuts.iter().cycle();
        for (from_client, bytes) in segments_of(&pcap, server) {
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = (*next.next().unwrap()).min(rest.len());
                recut.push((from_client, rest[..n].to_vec()));
                rest = &rest[n..];
            }
        }
        let (events, stats, _) =
            common::dissect_bytes(common::segments_capture(&recut), config(Some(&log)));
        proptest::prop_assert_eq!(stats.tls_decrypted, 1);
        proptest::prop_assert!(tls_errors(&events).is_empty());
        proptest::prop_assert_eq!(key(&events), key(&whole));
    }
}

/// A ClientHello whose first segment holds fewer bytes than tell a hello (a record header sent
/// on its own): the connection is still recognised and decrypted, whatever the cut.
#[test]
fn a_hello_cut_in_its_header_is_recognised() {
    let (pcap, log, whole, server) = testdata_tls();
    let segments = segments_of(&pcap, server);
    for cut in 1..=6 {
        let mut recut = segments.clone();
        let (from_client, first) = recut.remove(0);
        assert!(from_client);
        recut.insert(0, (true, first[cut..].to_vec()));
        recut.insert(0, (true, first[..cut].to_vec()));
        let (events, stats, _) =
            common::dissect_bytes(common::segments_capture(&recut), config(Some(&log)));
        assert_eq!(
            (stats.tls_connections, stats.tls_decrypted),
            (1, 1),
            "cut {cut}"
        );
        assert_eq!(
            common::frames(&events).len(),
            common::frames(&whole).len(),
            "cut {cut}"
        );
    }
}
