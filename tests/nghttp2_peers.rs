//! nghttp2's own server and client (Debian's nghttp2-server and nghttp2-client, installed by
//! `scripts/install-deps`) as peers, for the HTTP/2 that gRPC stacks never send: padded HEADERS,
//! DATA and PUSH_PROMISE frames, server push, PRIORITY frames and priority fields, and a header
//! block continued in CONTINUATION frames. Recorded through the test proxy, the capture must
//! give the calls the client asked for and the server pushed, with the sizes of the files
//! served, no error and no protocol note, and the same frames as tshark finds in it.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::recorder::{Link, Recorder};
use h2scope::event::Event;
use h2scope::http2::frame::{flags, FrameType};
use h2scope::pipeline::Config;

/// Whether nghttpd and nghttp are here; under `H2SCOPE_REQUIRE_NGHTTP2` (CI) they must be.
fn nghttp2_available() -> bool {
    let found = ["nghttpd", "nghttp"]
        .iter()
        .all(|tool| Command::new(tool).arg("--version").output().is_ok());
    common::needs(
        found,
        "H2SCOPE_REQUIRE_NGHTTP2",
        "nghttp2 (nghttpd, nghttp)",
    )
}

struct Nghttpd {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Nghttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nghttpd in clear text serving `dir`, padding its frames, pushing /style.css with /index.html.
fn nghttpd(dir: &std::path::Path) -> Nghttpd {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("nghttpd")
        .args(["--no-tls", "--padding=20", "-p/index.html=/style.css", "-d"])
        .arg(dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nghttpd did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Nghttpd { child, addr }
}

#[test]
fn nghttp2_padding_push_priority_and_continuation() {
    if !nghttp2_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("h2scope-nghttp2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        ("index.html", b"<html>hi</html>\n".to_vec()),
        ("style.css", b"body{}\n".to_vec()),
        ("big.bin", common::noise(7, 50_000)),
    ];
    for (name, body) in &files {
        std::fs::write(dir.join(name), body).unwrap();
    }
    let server = nghttpd(&dir);
    let rec = Recorder::new(Link::Ethernet, 1460, 11_000);
    let pcap = rec.run(async {
        let proxy = rec
            .proxy(SocketAddr::from(([127, 0, 0, 1], 0)), server.addr)
            .await;
        let out = tokio::task::spawn_blocking(move || {
            // --continuation: a header block of more than 16 KiB, cut into CONTINUATION frames.
            Command::new("nghttp")
                .args(["-n", "--padding=13", "--continuation", "-H", "x-trace: abc"])
                .arg(format!("http://{proxy}/index.html"))
                .arg(format!("http://{proxy}/big.bin"))
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    drop(server);
    let capture = dir.join("nghttp2.pcap");
    std::fs::write(&capture, &pcap).unwrap();

    let (events, _, _) = common::dissect_bytes(pcap, Config::default());
    let errors: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Error(_)))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let frames = common::frames(&events);
    assert!(frames.iter().all(|f| f.notes.is_empty()));
    let kinds: BTreeMap<&str, usize> = frames.iter().fold(BTreeMap::new(), |mut m, f| {
        *m.entry(f.header.kind.name()).or_default() += 1;
        m
    });
    for kind in [
        FrameType::Priority,
        FrameType::PushPromise,
        FrameType::Continuation,
    ] {
        assert!(kinds.contains_key(kind.name()), "no {kind:?} in {kinds:?}");
    }
    let padded = frames
        .iter()
        .filter(|f| f.header.has(flags::PADDED))
        .count();
    assert!(padded >= 5, "{padded} padded frames");

    // What was asked for and what was pushed, with the bytes of each file.
    let mut calls: Vec<(String, u64, bool)> = common::calls(&events)
        .iter()
        .map(|c| (c.path().unwrap(), c.response_bytes, c.pushed))
        .collect();
    calls.sort();
    let size = |name: &str| files.iter().find(|f| f.0 == name).unwrap().1.len() as u64;
    assert_eq!(
        calls,
        [
            ("/big.bin".into(), size("big.bin"), false),
            ("/index.html".into(), size("index.html"), false),
            ("/style.css".into(), size("style.css"), true),
        ]
    );
    // The 16 KiB header block is whole again: its custom header decoded once.
    let request = common::calls(&events)
        .into_iter()
        .find(|c| c.path().as_deref() == Some("/index.html"))
        .unwrap();
    assert_eq!(request.request_header("x-trace"), Some(&b"abc"[..]));

    if let Some(mut theirs) = common::tshark_frames(&capture, server_port(&events), None) {
        let mut ours: Vec<common::Frame> = frames
            .iter()
            .map(|f| {
                (
                    f.origin.src.port(),
                    f.header.stream,
                    f.header.kind.code(),
                    f.header.length,
                    f.header.flags,
                )
            })
            .collect();
        assert!(theirs.len() > 20, "{theirs:?}");
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The server's port, as the calls name it.
fn server_port(events: &[Event]) -> u16 {
    common::calls(events)[0].server.port()
}
