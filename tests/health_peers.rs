//! Connection health from real peers, in a known scenario: a tonic client with 100 ms keepalive
//! PINGs and 64 KiB windows, a slow reader that makes the server wait on flow control, a cancelled
//! Watch (RST_STREAM CANCEL), and a graceful server shutdown (GOAWAY) while a Watch still runs.
//! The figures `h2scope health` reports are checked against the scenario.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::echo::{Echo, EchoReply, EchoRequest};
use common::recorder::{Link, Recorder};
use h2scope::analysis::health::{ConnectionHealth, Health};
use h2scope::pipeline::{Config, Dissector};
use tonic::codegen::http;
use tonic_prost::ProstCodec;

async fn scenario(rec: &Recorder) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("svc", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Echo)
            .add_service(health)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stop_rx.await;
                },
            ),
    );
    let proxy = rec.proxy("127.0.0.1:0".parse().unwrap(), upstream).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{proxy}"))
        .unwrap()
        .http2_keep_alive_interval(Duration::from_millis(100))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();

    // Idle with keepalive: about 7 PINGs, each acknowledged.
    tokio::time::sleep(Duration::from_millis(700)).await;

    // A slow reader: three 100 KB replies against a 64 KiB window; the client waits before
    // reading, so the server is blocked on flow control meanwhile.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let big = EchoRequest {
        text: "big".into(),
        payload: vec![7u8; 100_000],
        seq: 1,
    };
    let mut replies = grpc
        .server_streaming(
            tonic::Request::new(big),
            http::uri::PathAndQuery::from_static("/test.echo.Echo/ServerStream"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut n = 0;
    while replies.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);

    // A Watch the client cancels.
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let ask = || tonic_health::pb::HealthCheckRequest {
        service: "svc".into(),
    };
    let mut watch = client.watch(ask()).await.unwrap().into_inner();
    assert!(watch.message().await.unwrap().is_some());
    drop(watch);

    // A Watch still running when the server shuts down gracefully.
    let mut watch = client.watch(ask()).await.unwrap().into_inner();
    assert!(watch.message().await.unwrap().is_some());
    stop_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(watch);
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[test]
fn health_report_matches_the_scenario() {
    let rec = Recorder::new(Link::Ethernet, 1460, 99);
    let pcap = rec.run(scenario(&rec));

    let reports: Arc<Mutex<Vec<ConnectionHealth>>> = Arc::default();
    let sink_reports = reports.clone();
    let mut health = Health::new(move |r| sink_reports.lock().unwrap().push(r));
    let mut d = Dissector::new(Config::default());
    let mut r =
        h2scope::capture::CaptureReader::from_read("mem", std::io::Cursor::new(pcap)).unwrap();
    r.for_each_packet(|p| {
        d.packet(p, &mut health);
        true
    })
    .unwrap();
    d.finish(&mut health);
    health.finish();
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let h = &reports[0];
    let json = h2scope::analysis::health::to_json(h);
    let text = h2scope::analysis::health::to_text(h);
    let [client, server] = &h.sides;

    // Keepalive: the client PINGs every ~100 ms while idle, and every PING is answered.
    assert!(client.pings >= 5, "{text}");
    assert_eq!(client.unacked_pings, 0, "{text}");
    assert_eq!(client.rtts.count, client.pings, "{text}");
    let intervals = &json["client_side"]["ping_interval"];
    let min = intervals["min_ms"].as_f64().unwrap();
    assert!(min >= 90.0, "PINGs closer than the interval: {text}");
    assert!(json["ping_flood"] == false);

    // Flow control: the server waited on the client's 64 KiB window while it did not read.
    assert!(server.blocked_ns >= 250_000_000, "{text}");
    assert!(server.stream_blocked_ns >= 250_000_000, "{text}");
    assert!(server.data_bytes >= 300_000);

    // The cancelled Watch.
    assert_eq!(client.resets_with("CANCEL"), 2, "{text}");

    // The graceful shutdown: the server's GOAWAY, with the second Watch still running.
    let goaway = server.goaways.first().expect("server GOAWAY");
    assert_eq!(goaway.error, "NO_ERROR");
    assert_eq!(goaway.running_streams.len(), 1, "{text}");
    assert!(goaway.refused_streams.is_empty());
    assert_eq!(h.calls, 3);
    assert!(json["end"] == "fin" || json["end"] == "rst", "{json}");
}
