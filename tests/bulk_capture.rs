//! Bulk gRPC traffic from real peers: a tonic client streams 24 messages of 16 KiB to the echo
//! service's bidi method, which streams them back, uncompressed, over an Ethernet link with a
//! 1460-byte MSS. This is the shape of a busy data path (full-size segments, messages spanning
//! many DATA frames), where the health-check capture is the shape of a control path (small
//! packets, a header block in most of them).
//!
//! `testdata/grpc-bulk.pcap`, which `scripts/bench-vs-tshark 110 testdata/grpc-bulk.pcap`
//! replicates, is such a recording: `H2SCOPE_REGENERATE=1 cargo test --test bulk_capture` records
//! it anew. A fresh recording and the shipped file are checked the same way.

mod common;

use std::time::Duration;

use common::echo::{Echo, EchoReply, EchoRequest};
use common::recorder::{Link, Recorder};
use h2scope::event::Event;
use h2scope::grpc::Side;
use h2scope::pipeline::{Config, Stats};
use tonic::codegen::http;
use tonic::Request;
use tonic_prost::ProstCodec;

const MESSAGES: i32 = 24;
const PAYLOAD: usize = 16 << 10;

fn payload(seq: i32) -> Vec<u8> {
    // Random-looking bytes, as compressed or encrypted blobs are: nothing along the way can
    // shortcut them, and a schema-less decode sees plain bytes.
    common::noise(0x9E37_79B9 ^ seq as u32, PAYLOAD)
}

async fn traffic(rec: &Recorder) {
    let upstream = common::serve(tonic::transport::Server::builder().add_service(Echo)).await;
    let channel = rec.channel(upstream).await;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let items: Vec<EchoRequest> = (0..MESSAGES)
        .map(|seq| EchoRequest {
            text: format!("bulk {seq}"),
            payload: payload(seq),
            seq,
        })
        .collect();
    let mut replies = client
        .streaming(
            Request::new(tokio_stream::iter(items)),
            http::uri::PathAndQuery::from_static("/test.echo.Echo/Bidi"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut seqs = Vec::new();
    while let Some(m) = replies.message().await.unwrap() {
        assert_eq!(m.payload, payload(m.seq));
        seqs.push(m.seq);
    }
    assert_eq!(seqs, (0..MESSAGES).collect::<Vec<_>>());
    // Let the proxy record the connection's end.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn record() -> Vec<u8> {
    let rec = Recorder::new(Link::Ethernet, 1460, 91_000);
    rec.run(traffic(&rec))
}

/// What every recording of this conversation must show, whatever its timing and segmentation.
fn check(events: &[Event], stats: &Stats) {
    let mut lengths = [Vec::new(), Vec::new()];
    let mut calls = Vec::new();
    for e in events {
        match e {
            Event::Message(m) => {
                assert_eq!(m.path.as_deref(), Some("/test.echo.Echo/Bidi"));
                assert!(!m.decoded.compressed);
                assert_eq!(m.decoded.problem, None, "{m:?}");
                lengths[m.side as usize].push(m.decoded.length);
            }
            Event::Call(c) => calls.push(c),
            Event::Gap(g) => panic!("gap in a lossless recording: {g:?}"),
            Event::Error(e) => panic!("error on real traffic: {e:?}"),
            _ => {}
        }
    }
    // Each message: text (2 + "bulk N"), payload (tag, 3-byte length, 16 KiB), seq.
    let expected = |side: Side| -> Vec<u32> {
        (0..MESSAGES)
            .map(|seq| {
                let text = format!(
                    "{}bulk {seq}",
                    if side == Side::Response { "echo " } else { "" }
                );
                let seq_field = if seq == 0 { 0 } else { 2 };
                (2 + text.len() + 1 + 3 + PAYLOAD + seq_field) as u32
            })
            .collect()
    };
    assert_eq!(lengths[Side::Request as usize], expected(Side::Request));
    assert_eq!(lengths[Side::Response as usize], expected(Side::Response));
    assert_eq!(calls.len(), 1);
    let call = calls[0];
    assert_eq!(call.path().as_deref(), Some("/test.echo.Echo/Bidi"));
    assert_eq!(call.grpc_status(), Some(0));
    assert_eq!(
        (call.request_messages, call.response_messages),
        (MESSAGES as u32, MESSAGES as u32)
    );
    assert!(call.request_bytes > (MESSAGES as u64) * PAYLOAD as u64);
    assert!(call.response_bytes > (MESSAGES as u64) * PAYLOAD as u64);
    assert_eq!(stats.http2_connections, 1);
    assert_eq!(stats.flows.gaps, 0);
}

#[test]
fn bulk_bidi_stream_of_real_peers_decodes_whole() {
    let (events, stats, ok) = common::dissect_bytes(record(), Config::default());
    assert!(ok);
    check(&events, &stats);
}

#[test]
fn testdata_bulk_capture_is_such_a_recording() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/grpc-bulk.pcap");
    if std::env::var_os("H2SCOPE_REGENERATE").is_some() {
        std::fs::write(&path, record()).unwrap();
    }
    let (events, stats) = common::dissect_file(path.to_str().unwrap(), Config::default());
    check(&events, &stats);
    // Full-size segments: the point of this capture.
    assert!(stats.packets > 500, "{} packets", stats.packets);
}

/// A person reading the text view gets one short line per message, as a packet list shows
/// it; `-v` and JSON Lines carry the whole body.
#[test]
fn text_view_cuts_long_bytes_and_verbose_shows_them() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/grpc-bulk.pcap");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_h2scope"))
            .args(args)
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(&["read"]);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("↳ request #0 "))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    assert!(line.contains(r#"1: "bulk 0""#), "{line}");
    // 64 of the payload's bytes, then how long it is.
    let head = &h2scope::grpc::wire::hex(&payload(0))[..128];
    assert!(
        line.contains(&format!("2: 0x{head}… (16384 bytes)")),
        "{line}"
    );
    assert!(line.len() < 400, "{} bytes", line.len());

    let whole = h2scope::grpc::wire::hex(&payload(0));
    assert!(run(&["read", "-v"]).contains(&whole));
    let jsonl = run(&["read", "--format", "jsonl"]);
    assert!(jsonl.contains(&format!(r#""bytes":"{whole}""#)));
}
