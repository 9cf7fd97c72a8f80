//! The other gRPC stacks as test peers (gRPC C-core through Debian's python3-grpcio,
//! `tests/peers/grpc_core.py`; @grpc/grpc-js over Node's http2, `tests/peers/grpc_js/`), the
//! tonic side of their conversations, and what a recording of them is held to: the calls as
//! their client saw them ([`Seen`]), tshark's frames, the same output on two threads.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use super::echo::{Echo, EchoReply, EchoRequest};
use super::haproxy::{h2scope, BIN};
use super::recorder::Recorder;
use h2scope::grpc::schema::Schemas;
use serde_json::Value;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_prost::ProstCodec;

pub const PYTHON: &str = "/usr/bin/python3";
pub const ECHO_PROTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/echo.proto");

/// What the peer scripts' servers refuse a Unary "fail" with.
pub const FAIL_DETAILS: &str = "refused 'fail': caf\u{e9} \u{2014} 50% off\nsecond line";

/// The other gRPC implementations, each driven by a script of the same services and calls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Peer {
    /// gRPC C-core (chttp2): Debian's python3-grpcio, `tests/peers/grpc_core.py`.
    Core,
    /// @grpc/grpc-js over Node's http2 (nghttp2): `tests/peers/grpc_js/grpc_js.js`.
    Js,
}

impl Peer {
    pub fn command(self) -> Command {
        self.command_with(&[])
    }

    /// The script run with these options of its runtime (`node --tls-keylog=FILE`).
    pub fn command_with(self, runtime: &[String]) -> Command {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers");
        let mut c = match self {
            Peer::Core => Command::new(PYTHON),
            Peer::Js => Command::new("node"),
        };
        c.args(runtime);
        c.arg(match self {
            Peer::Core => format!("{dir}/grpc_core.py"),
            Peer::Js => format!("{dir}/grpc_js/grpc_js.js"),
        });
        c
    }

    /// What its server says in the `served-by` trailer.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Core => "c-core",
            Peer::Js => "grpc-js",
        }
    }

    /// Whether it is installed; under `H2SCOPE_REQUIRE_GRPC_STACKS` (CI) it must be.
    pub fn available(self) -> bool {
        let probe = match self {
            Peer::Core => Command::new(PYTHON).args(["-c", "import grpc"]).output(),
            Peer::Js => Command::new("node")
                .args(["-e", "require('@grpc/grpc-js')"])
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/grpc_js"))
                .output(),
        };
        let found = probe.is_ok_and(|o| o.status.success());
        let what = match self {
            Peer::Core => "gRPC C-core (Debian's python3-grpcio)",
            Peer::Js => "grpc-js (node, and npm ci in tests/peers/grpc_js)",
        };
        super::needs(found, "H2SCOPE_REQUIRE_GRPC_STACKS", what)
    }
}

/// A peer script's server, stopped when dropped.
pub struct PeerServer {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
}

impl PeerServer {
    pub fn start(peer: Peer) -> PeerServer {
        Self::start_with(peer.command())
    }

    /// A peer's server with settings of its script's environment (`H2SCOPE_MAX_STREAMS`...).
    pub fn start_with_env(peer: Peer, env: &[(&str, &str)]) -> PeerServer {
        let mut command = peer.command();
        command.envs(env.iter().copied());
        Self::start_with(command)
    }

    pub fn start_with(mut command: Command) -> PeerServer {
        let mut child = command
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the server prints its port");
        PeerServer {
            stdin: child.stdin.take(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    pub fn set_serving(&mut self, serving: bool) {
        self.say(if serving { "up" } else { "down" });
    }

    /// A line to the script's server on its standard input.
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        // End of input stops it; the kill is for a server that hangs.
        drop(self.stdin.take());
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call as its client saw it: the ground truth the dissection is held to.
#[derive(Debug)]
pub struct Seen {
    pub path: String,
    pub code: i64,
    pub details: Option<String>,
    /// The answers' fields as the schema's JSON names them, defaults left out.
    pub answers: Vec<Value>,
    /// Trailing metadata: text values, or the hex of `-bin` ones.
    pub trailers: Vec<(String, String)>,
    /// The encoding its request messages were sent in (`gzip`, `deflate`), if any; whether its
    /// answers were gzipped (when known).
    pub request_encoding: Option<String>,
    pub gzip_response: Option<bool>,
    /// The deadline the client gave the call, in seconds.
    pub timeout: Option<f64>,
}

/// What a tonic client got back: the answers and trailers of a call, or the status it failed
/// with.
pub type TonicGot = Result<(Vec<Value>, Vec<(String, String)>), Status>;

impl Seen {
    /// What a tonic client got: its answers and trailers, or the status it failed with (and
    /// that status's trailers). No deadline: the tonic calls set none.
    pub fn of_tonic(path: &str, got: TonicGot, gzip_request: bool, gzip_response: bool) -> Seen {
        let (code, details, answers, trailers, gzip_response) = match got {
            Ok((answers, trailers)) => (0, None, answers, trailers, Some(gzip_response)),
            Err(e) => (
                e.code() as i64,
                Some(e.message().to_string()),
                Vec::new(),
                trailers_of(e.metadata()),
                None,
            ),
        };
        Seen {
            path: path.into(),
            code,
            details,
            answers,
            trailers,
            request_encoding: gzip_request.then(|| "gzip".into()),
            gzip_response,
            timeout: None,
        }
    }
}

/// The 1 MiB payload of the "big" call, as the peer scripts make it.
pub fn big_payload() -> Vec<u8> {
    (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect()
}

/// An echo answer as proto3's JSON mapping writes it: defaults left out, bytes in base64.
pub fn echo_json(text: &str, payload: &[u8], seq: i64) -> Value {
    use base64::Engine;
    let mut m = serde_json::Map::new();
    if !text.is_empty() {
        m.insert("text".into(), text.into());
    }
    if !payload.is_empty() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
        m.insert("payload".into(), b64.into());
    }
    if seq != 0 {
        m.insert("seq".into(), seq.into());
    }
    Value::Object(m)
}

pub fn health_json(status: i64) -> Value {
    let name = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"][status as usize];
    serde_json::json!({ "status": name })
}

/// A peer script's client report, as [`Seen`] calls.
pub fn seen_from_report(report: &str) -> Vec<Seen> {
    let calls: Vec<Value> = serde_json::from_str(report).expect("the client prints JSON");
    calls
        .iter()
        .map(|c| {
            let answers = c["answers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| match a.get("status") {
                    Some(s) => health_json(s.as_i64().unwrap()),
                    None => echo_json(
                        a["text"].as_str().unwrap(),
                        &hex::decode(a["payload"].as_str().unwrap()).unwrap(),
                        a["seq"].as_i64().unwrap(),
                    ),
                })
                .collect();
            let trailers = c["trailers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            Seen {
                path: c["path"].as_str().unwrap().into(),
                code: c["code"].as_i64().unwrap(),
                details: c["details"].as_str().map(String::from),
                answers,
                trailers,
                request_encoding: c["encoding"].as_str().map(String::from),
                gzip_response: None,
                timeout: c["timeout"].as_f64(),
            }
        })
        .collect()
}

pub fn trailers_of(md: &MetadataMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for kv in md.iter() {
        match kv {
            tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                out.push((k.to_string(), v.to_str().unwrap().to_string()))
            }
            tonic::metadata::KeyAndValueRef::Binary(k, v) => {
                out.push((k.to_string(), hex::encode(v.to_bytes().unwrap())))
            }
        }
    }
    out.retain(|(k, _)| k == "served-by" || k == "checksum-bin");
    out
}

pub fn path(p: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(p)
}

pub fn echo(text: &str, seq: i32, payload: Vec<u8>) -> EchoRequest {
    EchoRequest {
        text: text.into(),
        payload,
        seq,
    }
}

/// A tonic client's calls to a peer's server, through the recorder: the same calls as the peer
/// scripts' clients make. `gzip_answers`: whether the server gzips the answer to a gzipped call.
pub async fn tonic_calls(rec: &Recorder, server: SocketAddr, gzip_answers: bool) -> Vec<Seen> {
    let channel = rec.channel(server).await;
    let codec = || ProstCodec::<EchoRequest, EchoReply>::default();
    let mut seen = Vec::new();
    let unary = |seen: &mut Vec<Seen>, r: Result<tonic::Response<EchoReply>, Status>, gzip| {
        let got = r.map(|r| {
            let trailers = trailers_of(r.metadata());
            let m = r.into_inner();
            (vec![echo_json(&m.text, &m.payload, m.seq.into())], trailers)
        });
        let answer_gzip = gzip && gzip_answers;
        seen.push(Seen::of_tonic(
            "/test.echo.Echo/Unary",
            got,
            gzip,
            answer_gzip,
        ));
    };

    let mut plain = tonic::client::Grpc::new(channel.clone());
    let mut req = Request::new(echo("hello", 1, Vec::new()));
    req.metadata_mut().insert("tenant", "blue".parse().unwrap());
    req.metadata_mut()
        .insert_bin("trace-bin", MetadataValue::from_bytes(&[1, 2, 3]));
    plain.ready().await.unwrap();
    let r = plain
        .unary(req, path("/test.echo.Echo/Unary"), codec())
        .await;
    unary(&mut seen, r, false);

    plain.ready().await.unwrap();
    let req = Request::new(echo("fail", 2, Vec::new()));
    let r = plain
        .unary(req, path("/test.echo.Echo/Unary"), codec())
        .await;
    unary(&mut seen, r, false);

    let mut gz = tonic::client::Grpc::new(channel.clone())
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    gz.ready().await.unwrap();
    let text = format!("gzip {}", "z".repeat(300));
    let req = Request::new(echo(&text, 3, (0..=255).collect()));
    let r = gz.unary(req, path("/test.echo.Echo/Unary"), codec()).await;
    unary(&mut seen, r, true);

    plain.ready().await.unwrap();
    let req = Request::new(echo("fan", 7, Vec::new()));
    let mut s = plain
        .server_streaming(req, path("/test.echo.Echo/ServerStream"), codec())
        .await
        .unwrap()
        .into_inner();
    let mut answers = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        answers.push(echo_json(&m.text, &m.payload, m.seq.into()));
    }
    let got = Ok((answers, Vec::new()));
    seen.push(Seen::of_tonic(
        "/test.echo.Echo/ServerStream",
        got,
        false,
        false,
    ));

    // A message sixteen times the initial window each way: many frames, flow control at work.
    plain.ready().await.unwrap();
    let req = Request::new(echo("big", 5, big_payload()));
    let r = plain
        .unary(req, path("/test.echo.Echo/Unary"), codec())
        .await;
    unary(&mut seen, r, false);

    let mut health = HealthClient::new(channel);
    for service in ["", "no.such.Service"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await;
        let got = r.map(|r| (vec![health_json(r.into_inner().status.into())], Vec::new()));
        let path = "/grpc.health.v1.Health/Check";
        seen.push(Seen::of_tonic(path, got, false, false));
    }
    seen
}

/// Runs a peer script's client against `server` through the recorder; what it saw.
pub async fn peer_calls(peer: Peer, rec: &Recorder, server: SocketAddr) -> Vec<Seen> {
    client_calls(peer.command(), rec, server).await
}

/// [`peer_calls`] with the client's command given.
pub async fn client_calls(mut client: Command, rec: &Recorder, server: SocketAddr) -> Vec<Seen> {
    let proxy = rec
        .proxy(SocketAddr::from(([127, 0, 0, 1], 0)), server)
        .await;
    // Blocking, on a thread of its own: the proxy it talks through runs on this runtime.
    let target = proxy.to_string();
    let out = tokio::task::spawn_blocking(move || client.args(["client", &target]).output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    seen_from_report(&String::from_utf8(out.stdout).unwrap())
}

/// `pcap` written as `NAME.pcap` in a scratch folder of its own: (folder, file).
pub fn saved(name: &str, pcap: Vec<u8>) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let capture = dir.join(format!("{name}.pcap"));
    std::fs::write(&capture, pcap).unwrap();
    (dir, capture)
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("h2scope-stacks-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads `capture` as a user would (with `extra` options) and holds every call to what its
/// client saw. Every frame must also be one tshark finds (decrypting with the same key log); the
/// output on two threads must be the same, and `stats` and the TUI must count the same calls.
pub fn assert_dissection_matches(capture: &Path, seen: &[Seen], extra: &[&str]) -> Vec<Value> {
    let read = |threads: &str| {
        let out = Command::new(BIN)
            .args(["read", "--format", "jsonl", "--proto", ECHO_PROTO])
            .args(["--threads", threads])
            .args(extra)
            .arg(capture)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = read("1");
    assert!(
        text == read("2"),
        "{}: two threads differ",
        capture.display()
    );
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let call_count = events.iter().filter(|e| e["event"] == "call").count();
    let out = Command::new(BIN)
        .args(["stats", "--format", "jsonl"])
        .args(extra)
        .arg(capture)
        .output()
        .unwrap();
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["total"]["calls"], call_count, "{stats}");
    if extra.is_empty() {
        let path = capture.to_str().unwrap();
        let model = h2scope::tui::load(path, &Default::default(), Schemas::bundled()).unwrap();
        assert_eq!(model.calls.len(), call_count);
    }
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(summary["gaps"], 0, "{summary}");
    // Three conforming stacks: nothing for the protocol notes to say.
    for e in &events {
        let notes = e["notes"].as_array().map_or(0, Vec::len);
        assert_eq!(notes, 0, "{e}");
    }

    let keylog = extra
        .iter()
        .position(|a| *a == "--tls-keylog")
        .map(|i| Path::new(extra[i + 1]));
    assert_frames_are_tsharks(capture, &events, keylog);

    // Calls in the order they began: the clients make them one after another.
    let mut calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "call").collect();
    calls.sort_by_key(|c| c["start_packet"].as_u64());
    assert_eq!(calls.len(), seen.len(), "{calls:#?}");
    for (call, want) in calls.iter().zip(seen) {
        let id = format!("call {}:{} {}", call["conn"], call["stream"], want.path);
        assert_eq!(call["path"], want.path.as_str(), "{id}");
        if want.code == 4 && call["end"] == "reset" {
            // The client reset the stream at its deadline. The server's DEADLINE_EXCEEDED, when
            // it sent one, crossed the reset: it makes no call of its own (the count above) and
            // is this call's status; without one, the call was reset at its deadline.
            assert_eq!(call["reset_by"], "client", "{id}");
            assert_eq!(call["error_code"], 8, "{id}");
            if call["grpc_status"].is_null() {
                assert_eq!(call["reset_at_deadline"], true, "{id}");
            } else {
                assert_eq!(call["grpc_status"], 4, "{id}");
                assert_eq!(call["reset_at_deadline"], false, "{id}");
            }
        } else {
            assert_eq!(call["reset_at_deadline"], false, "{id}");
            assert_eq!(call["grpc_status"], want.code, "{id}");
            assert_eq!(call["end"], "complete", "{id}");
            // A client reports the message of a failure only (grpc-js servers send "OK" with
            // a success), and words a deadline's itself.
            if want.code != 0 && want.code != 4 {
                let details = want.details.as_deref();
                assert_eq!(call["grpc_message"].as_str(), details, "{id}");
            }
        }
        let messages = |dir: &str| -> Vec<&Value> {
            events
                .iter()
                .filter(|e| {
                    e["event"] == "message"
                        && e["conn"] == call["conn"]
                        && e["stream"] == call["stream"]
                        && e["dir"] == dir
                })
                .collect()
        };
        let answers: Vec<&Value> = messages("response").iter().map(|m| &m["json"]).collect();
        assert_eq!(answers, want.answers.iter().collect::<Vec<_>>(), "{id}");
        // C-core writes the time left when it sends the headers, rounded up to a coarser unit
        // (10 s left as `10100m`): near the deadline given, not equal to it.
        match (want.timeout, call["deadline"].as_f64()) {
            (None, None) => {}
            (Some(t), Some(d)) => assert!(d > t * 0.8 && d < t * 1.05, "{id}: deadline {d} of {t}"),
            (t, d) => panic!("{id}: deadline {d:?}, given {t:?}"),
        }
        for m in messages("request") {
            assert_eq!(
                m["compressed"],
                want.request_encoding.is_some(),
                "{id}: {m}"
            );
            let encoding = want.request_encoding.as_deref();
            assert_eq!(m["encoding"].as_str(), encoding, "{id}: {m}");
        }
        if let Some(gzip) = want.gzip_response {
            for m in messages("response") {
                assert_eq!(m["compressed"], gzip, "{id}: {m}");
            }
        }
        // Each trailer the client got, as the call's trailers (or its trailers-only answer)
        // carry it; `-bin` ones decoded.
        for (name, value) in &want.trailers {
            let shown = if name.ends_with("-bin") {
                call["binary_metadata"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| b[0] == name.as_str())
                    .map(|b| b[1].clone())
            } else {
                // A trailers-only answer carries them in its one header block.
                ["trailers", "response_headers"]
                    .iter()
                    .filter_map(|list| call[*list].as_array())
                    .flatten()
                    .find(|h| h[0] == name.as_str())
                    .map(|h| h[1].clone())
            };
            assert_eq!(shown, Some(Value::from(value.as_str())), "{id}: {name}");
        }
    }
    events
}

/// The frames of `events` (as `read --format jsonl` gives them) are those tshark finds in
/// `capture`, each by its source port, stream, type, length and flags.
pub fn assert_frames_are_tsharks(capture: &Path, events: &[Value], keylog: Option<&Path>) {
    let port = |addr: &Value| -> u16 {
        let addr: SocketAddr = addr.as_str().unwrap().parse().unwrap();
        addr.port()
    };
    let server = events.iter().find(|e| e["event"] == "call").unwrap()["server"].clone();
    let Some(mut theirs) = super::tshark_frames(capture, port(&server), keylog) else {
        return;
    };
    let number = |e: &Value, key: &str| e[key].as_u64().unwrap();
    // (A capture of HTTP/1.1 has no frames: gRPC-Web.)
    let mut ours: Vec<super::Frame> = events
        .iter()
        .filter(|e| e["event"] == "frame")
        .map(|e| {
            (
                port(&e["src"]),
                number(e, "stream") as u32,
                number(e, "type_code") as u8,
                number(e, "length") as u32,
                number(e, "flags") as u8,
            )
        })
        .collect();
    if ours.is_empty() {
        return;
    }
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours, theirs, "{}", capture.display());
}

/// The tonic server of the echo and health services (which knows test.echo.Echo, serving), on
/// the runtime at hand; with `web`, it also answers gRPC-Web (tonic-web), over HTTP/1.1 too.
pub async fn tonic_server(web: bool) -> SocketAddr {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("test.echo.Echo", tonic_health::ServingStatus::Serving)
        .await;
    let mut server = tonic::transport::Server::builder();
    if !web {
        return super::serve(server.add_service(Echo).add_service(health)).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server
        .accept_http1(true)
        .layer(tonic_web::GrpcWebLayer::new())
        .add_service(Echo)
        .add_service(health);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(router.serve_with_incoming(incoming));
    addr
}

/// `h2scope ARGS --format jsonl CAPTURE`, which must succeed: its lines, parsed.
pub fn jsonl(capture: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.extend(["--format", "jsonl"]);
    text(capture, &all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `h2scope ARGS CAPTURE`, which must succeed: what it wrote.
pub fn text(capture: &Path, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push(capture.to_str().unwrap());
    let out = h2scope(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A Unary echo call on `channel`, as the tests' tonic clients make it.
pub async fn unary_echo(
    channel: tonic::transport::Channel,
    req: EchoRequest,
) -> Result<tonic::Response<EchoReply>, Status> {
    unary_echo_request(channel, Request::new(req)).await
}

/// [`unary_echo`] of a request with metadata of its own.
pub async fn unary_echo_request(
    channel: tonic::transport::Channel,
    req: Request<EchoRequest>,
) -> Result<tonic::Response<EchoReply>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = ProstCodec::<EchoRequest, EchoReply>::default();
    grpc.unary(req, path("/test.echo.Echo/Unary"), codec).await
}

/// A ServerStream echo call on `channel`: its answers, as they come.
pub async fn server_stream_echo(
    channel: tonic::transport::Channel,
    req: EchoRequest,
) -> tonic::Streaming<EchoReply> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = ProstCodec::<EchoRequest, EchoReply>::default();
    let path = path("/test.echo.Echo/ServerStream");
    grpc.server_streaming(Request::new(req), path, codec)
        .await
        .unwrap()
        .into_inner()
}
