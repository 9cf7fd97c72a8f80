//! Captures made in the test run from real gRPC peers (tonic server and client, over loopback,
//! through a recording proxy), then dissected. These cover what the public corpus lacks: SLL2,
//! IPv6 with many calls, dynamic-table reuse across many calls on one connection, sequence
//! numbers that wrap, frames split over many small segments.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::calls;
use common::recorder::{Link, Recorder};
use h2scope::event::{ErrorKind, Event};
use h2scope::http2::call::CallEnd;
use h2scope::http2::frame::FrameType;
use h2scope::http2::hpack::Representation;
use h2scope::pipeline::Config;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::ServingStatus;

const CHECKS: usize = 25;

/// Runs a health server and a client through the recorder: `CHECKS` unary Check calls on one
/// connection, one for an unknown service (NOT_FOUND), and a Watch stream that sees two status
/// changes before the client cancels it.
async fn health_traffic(rec: &Recorder, loopback: &str) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("shop.Cart", ServingStatus::Serving)
        .await;
    let server_addr: SocketAddr = format!("{loopback}:0").parse().unwrap();
    let listener = tokio::net::TcpListener::bind(server_addr).await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let proxy = rec.proxy(server_addr, upstream).await;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{proxy}")).unwrap();
    let channel = endpoint.connect().await.unwrap();
    let mut client = HealthClient::new(channel);
    for i in 0..CHECKS {
        let service = if i % 2 == 0 { "" } else { "shop.Cart" };
        let resp = client
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(resp.into_inner().status, ServingStatus::Serving as i32);
    }
    let err = client
        .check(HealthCheckRequest {
            service: "no.Such".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let mut watch = client
        .watch(HealthCheckRequest {
            service: "shop.Cart".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());
    reporter
        .set_service_status("shop.Cart", ServingStatus::NotServing)
        .await;
    assert!(watch.message().await.unwrap().is_some());
    drop(watch);
    drop(client);
    // Let the cancellation and the connection close reach the recorder.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn record(link: Link, mss: usize, isn_base: u32, loopback: &str) -> Vec<u8> {
    let rec = Recorder::new(link, mss, isn_base);
    rec.run(health_traffic(&rec, loopback))
}

/// What every recording of `health_traffic` must show, whatever the link type and segmenting.
fn check_health_capture(pcap: Vec<u8>) {
    let (events, stats, ok) = common::dissect_bytes(pcap, Config::default());
    assert!(ok, "capture did not read back");
    let errors: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error(er) => Some(er.message.clone()),
            _ => None,
        })
        .collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Gap(_))));
    assert_eq!(stats.http2_connections, 1);

    let calls = calls(&events);
    assert_eq!(calls.len(), CHECKS + 2, "calls: {calls:#?}");
    let checks: Vec<_> = calls
        .iter()
        .filter(|c| c.path().as_deref() == Some("/grpc.health.v1.Health/Check"))
        .collect();
    assert_eq!(checks.len(), CHECKS + 1);
    let ok_checks = checks
        .iter()
        .filter(|c| c.grpc_status() == Some(0) && c.status() == Some(200))
        .count();
    assert_eq!(ok_checks, CHECKS);
    let not_found = checks
        .iter()
        .find(|c| c.grpc_status() == Some(5))
        .expect("NOT_FOUND check");
    assert!(not_found.grpc_message().is_some_and(|m| !m.is_empty()));
    for c in &checks {
        assert_eq!(c.method().as_deref(), Some("POST"));
        assert_eq!(c.end, CallEnd::Complete);
        // A serialized HealthCheckRequest plus the 5-byte gRPC prefix.
        assert!(c.request_bytes >= 5);
        assert!(c.response_bytes >= 5 || c.grpc_status() == Some(5));
        assert!(c.end_ts_ns >= c.start_ts_ns);
    }
    let watch = calls
        .iter()
        .find(|c| c.path().as_deref() == Some("/grpc.health.v1.Health/Watch"))
        .expect("watch call");
    assert!(
        matches!(
            watch.end,
            CallEnd::Reset {
                by_client: true,
                error_code: 8
            }
        ),
        "watch ended {:?}",
        watch.end
    );
    // Two streamed HealthCheckResponses of 2 bytes each, with their 5-byte prefixes.
    assert_eq!(watch.response_bytes, 14);

    // Every message decodes with the bundled grpc.health.v1 schema.
    let messages: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 2 * CHECKS + 1 + 3);
    for m in &messages {
        let t = m.decoded.type_name.as_deref().unwrap_or_default();
        assert!(t.starts_with("grpc.health.v1.HealthCheck"), "{m:?}");
        assert!(m.decoded.json.is_some());
    }
    let watch_replies: Vec<_> = messages
        .iter()
        .filter(|m| m.path.as_deref() == Some("/grpc.health.v1.Health/Watch") && m.index < 2)
        .filter_map(|m| m.decoded.json.as_ref()?.to_value().get("status").cloned())
        .collect();
    assert_eq!(watch_replies, ["SERVING", "NOT_SERVING"]);
    assert_eq!((watch.request_messages, watch.response_messages), (1, 2));

    // Every header block decoded, and later calls really did use the dynamic table.
    let mut dynamic_refs = 0;
    for e in &events {
        if let Event::Frame(f) = e {
            if f.header.kind == FrameType::Headers {
                let list = f.headers.as_ref().expect("headers decoded");
                dynamic_refs += list
                    .iter()
                    .filter(|h| matches!(h.repr, Representation::Indexed { index } if index > 61))
                    .count();
            }
            assert!(f.notes.is_empty(), "frame notes: {:?}", f.notes);
        }
    }
    assert!(
        dynamic_refs > CHECKS,
        "only {dynamic_refs} dynamic-table references"
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::Error(er) if er.kind == ErrorKind::Hpack)));
}

#[test]
fn ethernet_ipv4_many_calls_one_connection() {
    check_health_capture(record(Link::Ethernet, 1460, 1_000_000, "127.0.0.1"));
}

#[test]
fn sll2_ipv6_small_segments_and_sequence_wrap() {
    // Frames cut into 7-byte segments, and sequence numbers that pass 2^32 mid-conversation.
    check_health_capture(record(Link::Sll2, 7, u32::MAX - 3000, "[::1]"));
}

#[test]
fn sll_and_bsd_null_links() {
    check_health_capture(record(Link::Sll, 300, 42, "127.0.0.1"));
    check_health_capture(record(Link::Null, 1000, 7, "[::1]"));
}

/// `testdata/grpc-health.pcap` is such a recording, kept in the repository for the README's first
/// command and for tests that need a fixed file. `H2SCOPE_REGENERATE=1` records it anew.
#[test]
fn testdata_capture_is_a_health_recording() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/grpc-health.pcap");
    if std::env::var_os("H2SCOPE_REGENERATE").is_some() {
        std::fs::write(
            &path,
            record(Link::Ethernet, 1460, 3_000_000_000, "127.0.0.1"),
        )
        .unwrap();
    }
    check_health_capture(std::fs::read(&path).unwrap());
}
