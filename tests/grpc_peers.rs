//! gRPC traffic from real peers, recorded in the test run and dissected: a tonic server with an
//! echo service (unary, server, client and bidi streaming), the health service, and server
//! reflection; a tonic client that compresses with gzip, sends a 1 MiB message, and asks for the
//! echo service's schema by reflection at the very end. h2scope is given no `.proto` for the echo
//! service: it decodes the echo calls with the schema harvested from the reflection exchange,
//! including the calls that came before it.

mod common;

use std::time::Duration;

use common::echo::{Echo, EchoReply, EchoRequest};
use common::recorder::{Link, Recorder};
use h2scope::event::{Event, MessageEvent};
use h2scope::grpc::schema::Schemas;
use h2scope::grpc::Side;
use h2scope::pipeline::{Config, Dissector};
use tonic::codec::CompressionEncoding;
use tonic::codegen::http;
use tonic::Request;
use tonic_prost::ProstCodec;

fn echo_descriptor_set() -> &'static [u8] {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let mut c = protox::Compiler::new([dir]).unwrap();
    c.open_files(["echo.proto"]).unwrap();
    Box::leak(c.encode_file_descriptor_set().into_boxed_slice())
}

fn req(text: &str, seq: i32) -> EchoRequest {
    EchoRequest {
        text: text.into(),
        payload: Vec::new(),
        seq,
    }
}

fn path(p: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(p)
}

/// 1 MiB that does not compress away.
fn big_payload() -> Vec<u8> {
    common::noise(12345, 1 << 20)
}

async fn traffic(rec: &Recorder) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>>().await;
    let health = health
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(echo_descriptor_set())
        .build_v1()
        .unwrap();
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(echo_descriptor_set())
        .build_v1alpha()
        .unwrap();
    let upstream = common::serve(
        tonic::transport::Server::builder()
            .add_service(Echo)
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_alpha),
    )
    .await;
    let channel = rec.channel(upstream).await;

    let mut gz = tonic::client::Grpc::new(channel.clone())
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let codec = || ProstCodec::<EchoRequest, EchoReply>::default();

    gz.ready().await.unwrap();
    let r = gz
        .unary(
            Request::new(req("unary", 1)),
            path("/test.echo.Echo/Unary"),
            codec(),
        )
        .await
        .unwrap();
    assert_eq!(r.into_inner().text, "echo unary");

    gz.ready().await.unwrap();
    let mut s = gz
        .server_streaming(
            Request::new(req("fan", 0)),
            path("/test.echo.Echo/ServerStream"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while s.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);

    gz.ready().await.unwrap();
    let items = vec![req("a", 1), req("b", 2), req("c", 3)];
    let r = gz
        .client_streaming(
            Request::new(tokio_stream::iter(items)),
            path("/test.echo.Echo/ClientStream"),
            codec(),
        )
        .await
        .unwrap();
    assert_eq!(r.into_inner().text, "a+b+c");

    gz.ready().await.unwrap();
    let items = vec![req("x", 7), req("y", 8), req("z", 9)];
    let mut s = gz
        .streaming(
            Request::new(tokio_stream::iter(items)),
            path("/test.echo.Echo/Bidi"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut seqs = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        seqs.push(m.seq);
    }
    assert_eq!(seqs, [7, 8, 9]);

    // A 1 MiB message each way, uncompressed: it spans dozens of DATA frames and TCP segments.
    let mut plain = tonic::client::Grpc::new(channel.clone());
    plain.ready().await.unwrap();
    let big = EchoRequest {
        text: "big".into(),
        payload: big_payload(),
        seq: 42,
    };
    let r = plain
        .unary(Request::new(big), path("/test.echo.Echo/Unary"), codec())
        .await
        .unwrap();
    assert_eq!(r.into_inner().payload.len(), 1 << 20);

    let mut health_client = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let status = health_client
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(status.into_inner().status, 1);

    // Reflection last: the schema it carries must still serve the calls above.
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut refl = ServerReflectionClient::new(channel.clone());
    let asks = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "test.echo.Echo".into(),
            )),
        },
    ];
    let mut answers = refl
        .server_reflection_info(tokio_stream::iter(asks))
        .await
        .unwrap()
        .into_inner();
    let mut got = 0;
    while answers.message().await.unwrap().is_some() {
        got += 1;
    }
    assert_eq!(got, 2);

    // The older v1alpha protocol, which many servers still speak.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest as AlphaAsk;
    let mut alpha = AlphaClient::new(channel);
    let ask = AlphaAsk {
        host: String::new(),
        message_request: Some(AlphaRequest::FileByFilename("echo.proto".into())),
    };
    let mut answers = alpha
        .server_reflection_info(tokio_stream::iter(vec![ask]))
        .await
        .unwrap()
        .into_inner();
    assert!(answers.message().await.unwrap().is_some());

    // One more call after the reflection exchanges: even a single pass knows its schema.
    gz.ready().await.unwrap();
    let r = gz
        .unary(
            Request::new(req("after", 5)),
            path("/test.echo.Echo/Unary"),
            codec(),
        )
        .await
        .unwrap();
    assert_eq!(r.into_inner().text, "echo after");
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn record() -> Vec<u8> {
    let rec = Recorder::new(Link::Ethernet, 1460, 77_000);
    rec.run(traffic(&rec))
}

fn dissect(pcap: &[u8], schemas: Schemas, cfg: Config) -> (Vec<Event>, Schemas) {
    let mut d = Dissector::with_schemas(cfg, schemas);
    let mut events = Vec::new();
    let mut r =
        h2scope::capture::CaptureReader::from_read("mem", std::io::Cursor::new(pcap.to_vec()))
            .unwrap();
    r.for_each_packet(|p| {
        d.packet(p, &mut events);
        true
    })
    .unwrap();
    d.finish(&mut events);
    (events, d.into_schemas())
}

fn messages(events: &[Event]) -> Vec<&MessageEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(&**m),
            _ => None,
        })
        .collect()
}

fn of_path<'a>(ms: &[&'a MessageEvent], p: &str) -> Vec<&'a MessageEvent> {
    ms.iter()
        .copied()
        .filter(|m| m.path.as_deref() == Some(p))
        .collect()
}

#[test]
fn grpc_streaming_compression_big_message_and_harvested_schema() {
    let pcap = record();

    // First pass: only reflection responses are looked at; they teach the echo schema.
    let mut harvest_cfg = Config::default();
    harvest_cfg.grpc.bodies = h2scope::grpc::Bodies::Skip;
    let (undecoded, schemas) = dissect(&pcap, Schemas::bundled(), harvest_cfg);
    assert!(schemas.harvested_files().iter().any(|f| f == "echo.proto"));
    // Without body decoding (as for a summary, which skips even decompressing them), the
    // compressed messages are all counted, marked compressed, and carry no decoded body.
    let undecoded = messages(&undecoded);
    let compressed = undecoded.iter().filter(|m| m.decoded.compressed).count();
    assert!(compressed >= 10, "{compressed} compressed messages");
    assert!(undecoded
        .iter()
        .filter(|m| !m.path.as_deref().unwrap_or("").contains("ServerReflection"))
        .all(|m| m.decoded.json.is_none() && m.decoded.problem.is_none()));

    let (events, _) = dissect(&pcap, schemas, Config::default());
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::Error(_) | Event::Gap(_))));
    let ms = messages(&events);
    assert_eq!(
        ms.len(),
        undecoded.len(),
        "messages counted without decoding"
    );

    let unary = of_path(&ms, "/test.echo.Echo/Unary");
    assert_eq!(unary.len(), 6);
    let small: Vec<_> = unary.iter().filter(|m| m.decoded.length < 1000).collect();
    for m in &small {
        assert!(m.decoded.compressed, "{m:?}");
        assert_eq!(m.decoded.encoding.as_deref(), Some("gzip"));
    }
    assert_eq!(
        small[0].decoded.type_name.as_deref(),
        Some("test.echo.EchoRequest")
    );
    assert_eq!(
        small[0].decoded.json.as_ref().unwrap().to_value()["text"],
        "unary"
    );
    assert_eq!(
        small[1].decoded.type_name.as_deref(),
        Some("test.echo.EchoReply")
    );
    assert_eq!(
        small[1].decoded.json.as_ref().unwrap().to_value()["text"],
        "echo unary"
    );
    let big: Vec<_> = unary
        .iter()
        .filter(|m| m.decoded.length >= 1 << 20)
        .collect();
    assert_eq!(big.len(), 2);
    for m in big {
        assert!(!m.decoded.compressed);
        let json = m
            .decoded
            .json
            .as_ref()
            .expect("1 MiB message decoded")
            .to_value();
        assert_eq!(json["seq"], 42);
        assert_eq!(
            json["payload"].as_str().unwrap().len(),
            (1 << 20) / 3 * 4 + 4
        );
    }

    let sides = |p: &str| {
        let v = of_path(&ms, p);
        (
            v.iter().filter(|m| m.side == Side::Request).count(),
            v.iter().filter(|m| m.side == Side::Response).count(),
        )
    };
    assert_eq!(sides("/test.echo.Echo/ServerStream"), (1, 3));
    assert_eq!(sides("/test.echo.Echo/ClientStream"), (3, 1));
    assert_eq!(sides("/test.echo.Echo/Bidi"), (3, 3));
    for m in of_path(&ms, "/test.echo.Echo/Bidi") {
        assert!(m.decoded.json.is_some() && m.decoded.compressed);
    }
    let cs = of_path(&ms, "/test.echo.Echo/ClientStream");
    let indexes: Vec<u32> = cs
        .iter()
        .filter(|m| m.side == Side::Request)
        .map(|m| m.index)
        .collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert_eq!(
        cs.iter()
            .find(|m| m.side == Side::Response)
            .unwrap()
            .decoded
            .json
            .as_ref()
            .unwrap()
            .to_value()["text"],
        "a+b+c"
    );

    let health = of_path(&ms, "/grpc.health.v1.Health/Check");
    assert_eq!(health.len(), 2);
    assert!(health
        .iter()
        .all(|m| m.decoded.compressed && m.decoded.json.is_some()));
    assert_eq!(
        health[1].decoded.json.as_ref().unwrap().to_value()["status"],
        "SERVING"
    );

    let refl = of_path(
        &ms,
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    );
    assert_eq!(refl.len(), 4);
    assert!(refl.iter().all(|m| m.decoded.type_name.is_some()));
    assert!(refl
        .iter()
        .any(|m| m.decoded.harvested.iter().any(|f| f == "echo.proto")));

    let alpha = of_path(
        &ms,
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    );
    assert_eq!(alpha.len(), 2);
    assert_eq!(
        alpha[1].decoded.type_name.as_deref(),
        Some("grpc.reflection.v1alpha.ServerReflectionResponse")
    );
    assert!(alpha[1].decoded.harvested.iter().any(|f| f == "echo.proto"));

    let calls = common::calls(&events);
    assert_eq!(calls.len(), 9);
    assert!(calls.iter().all(|c| c.grpc && c.grpc_status() == Some(0)));

    // One pass only: the echo calls came before the reflection exchange, so they stay
    // schema-less, and the reflection exchange itself still decodes with the bundled schema.
    let (events, _) = dissect(&pcap, Schemas::bundled(), Config::default());
    let ms = messages(&events);
    let echo = of_path(&ms, "/test.echo.Echo/Bidi");
    assert!(echo
        .iter()
        .all(|m| m.decoded.type_name.is_none() && m.decoded.fields.is_some()));

    // A message size limit below 1 MiB: the big messages are reported with their length only.
    let mut small_limit = Config::default();
    small_limit.grpc.max_message_size = 64 << 10;
    let (events, _) = dissect(&pcap, Schemas::bundled(), small_limit);
    let ms = messages(&events);
    let big: Vec<_> = of_path(&ms, "/test.echo.Echo/Unary")
        .into_iter()
        .filter(|m| m.decoded.length >= 1 << 20)
        .collect();
    assert_eq!(big.len(), 2);
    assert!(big
        .iter()
        .all(|m| m.decoded.json.is_none() && m.decoded.problem.is_some()));

    // The HAProxy export stops reading at the call; the echo call's schema comes only from the
    // reflection exchange at the very end, so the export reads the file for it then.
    let path = std::env::temp_dir().join(format!("h2scope-peers-{}.pcap", std::process::id()));
    std::fs::write(&path, &pcap).unwrap();
    let rec = h2scope::haproxy::find_call(
        path.to_str().unwrap(),
        &h2scope::haproxy::Selector::Path("/test.echo.Echo/Unary".into()),
        Schemas::bundled(),
        None,
    )
    .unwrap();
    assert_eq!(
        rec.requests[0].type_name.as_deref(),
        Some("test.echo.EchoRequest")
    );
    assert_eq!(
        rec.responses[0].json.as_ref().unwrap().to_value()["text"],
        "echo unary"
    );
    // That reading of the file first searched its bytes for a reflection path, to decide
    // whether a schema pass is worth it: tonic's HPACK encoder Huffman-codes the path, and the
    // coded form was found (the plain one is not there).
    let [plain, coded] = h2scope::grpc::message::reflection_path_starts();
    assert!(h2scope::capture::scan::holds_any_in(&pcap[..], &[&coded]).unwrap());
    assert!(!h2scope::capture::scan::holds_any_in(&pcap[..], &[&plain]).unwrap());
    assert!(h2scope::pipeline::may_hold_reflection(
        path.to_str().unwrap(),
        &Config::default(),
        u64::MAX
    ));

    // `read` on the file, on one thread and two: the echo calls before the reflection exchange
    // are decoded with its schema, and with `--single-pass` only the call after it is.
    for threads in ["1", "2"] {
        let types = |extra: &[&str]| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_h2scope"))
                .args([
                    "read",
                    "--format",
                    "jsonl",
                    "--no-summary",
                    "--threads",
                    threads,
                ])
                .args([
                    "-Y",
                    "event == message && path == \"/test.echo.Echo/Unary\"",
                ])
                .args(extra)
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].clone())
                .collect::<Vec<_>>()
        };
        let two_pass = types(&[]);
        assert_eq!(two_pass.len(), 6, "{threads} threads");
        assert!(two_pass
            .iter()
            .all(|t| t.as_str().is_some_and(|t| t.starts_with("test.echo."))));
        let one_pass = types(&["--single-pass"]);
        assert_eq!(one_pass.len(), 6);
        // The last call comes after the reflection exchange: a single pass knows it too.
        assert!(one_pass[..4].iter().all(|t| t.is_null()), "{one_pass:?}");
        assert_eq!(one_pass[4..], two_pass[4..]);
    }
    std::fs::remove_file(&path).ok();
}
