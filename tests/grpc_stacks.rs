//! gRPC stacks other than tonic as peers. Every other recorded test talks tonic to tonic
//! (hyper's h2). Two more HTTP/2 stacks and HPACK encoders, each driven by a script of the same
//! services and calls, which `scripts/install-deps` installs:
//! - gRPC C-core (chttp2), Debian's python3-grpcio, `tests/peers/grpc_core.py`, with Google's
//!   protobuf library and habits of its own: BDP PINGs, trailers-only answers to errors, gzip
//!   chosen per call, its own SETTINGS sent before the client's preface, and `-bin` metadata
//!   sent as bytes ("true binary", gRFC G1) between two C-core peers;
//! - @grpc/grpc-js over Node's http2 (nghttp2), `tests/peers/grpc_js/grpc_js.js`, with
//!   protobufjs.
//!
//! Recordings of a tonic client against each peer's server, each peer's client against a tonic
//! server, C-core on both sides, and grpc-js against C-core are each held to what their client
//! saw: every call's path, status, message, trailers, deadline and answers, and the encoding
//! (gzip, deflate) of its messages, must come out of `h2scope read --format jsonl` as the
//! client got them. A health
//! check recorded from each peer's server is exported with `h2scope haproxy` and must follow that
//! server's health under a real HAProxy. grpc-js also runs over TLS (Node's OpenSSL), decrypted
//! with the key log `node --tls-keylog` writes.
//!
//! Two gRPC proxies bring two more HTTP/2 stacks: HAProxy (`mode http`, h2 on both sides) and
//! nginx (`grpc_pass`). tonic calls through each are recorded on both legs, and each leg must
//! give every call as the client saw it. gRPC-Web over HTTP/1.1, as a browser speaks it (Node's
//! fetch, `tests/peers/grpc_js/grpc_web.js`), is held to what it got from a tonic-web server.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use common::echo::{Echo, EchoReply, EchoRequest};
use common::haproxy::{export, h2scope, haproxy_available, Haproxy, BIN};
use common::recorder::{Link, Recorder};
use h2scope::grpc::schema::Schemas;
use serde_json::Value;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_prost::ProstCodec;

const PYTHON: &str = "/usr/bin/python3";
const ECHO_PROTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/echo.proto");

/// What the peer scripts' servers refuse a Unary "fail" with.
const FAIL_DETAILS: &str = "refused 'fail': caf\u{e9} \u{2014} 50% off\nsecond line";

/// The other gRPC implementations, each driven by a script of the same services and calls.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Peer {
    /// gRPC C-core (chttp2): Debian's python3-grpcio, `tests/peers/grpc_core.py`.
    Core,
    /// @grpc/grpc-js over Node's http2 (nghttp2): `tests/peers/grpc_js/grpc_js.js`.
    Js,
}

impl Peer {
    fn command(self) -> Command {
        self.command_with(&[])
    }

    /// The script run with these options of its runtime (`node --tls-keylog=FILE`).
    fn command_with(self, runtime: &[String]) -> Command {
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
    fn name(self) -> &'static str {
        match self {
            Peer::Core => "c-core",
            Peer::Js => "grpc-js",
        }
    }

    /// Whether it is installed; under `H2SCOPE_REQUIRE_GRPC_STACKS` (CI) it must be.
    fn available(self) -> bool {
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
        common::needs(found, "H2SCOPE_REQUIRE_GRPC_STACKS", what)
    }
}

/// A peer script's server, stopped when dropped.
struct PeerServer {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

impl PeerServer {
    fn start(peer: Peer) -> PeerServer {
        Self::start_with(peer.command())
    }

    fn start_with(mut command: Command) -> PeerServer {
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

    fn set_serving(&mut self, serving: bool) {
        self.say(if serving { "up" } else { "down" });
    }

    /// A line to the script's server on its standard input.
    fn say(&mut self, line: &str) {
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
struct Seen {
    path: String,
    code: i64,
    details: Option<String>,
    /// The answers' fields as the schema's JSON names them, defaults left out.
    answers: Vec<Value>,
    /// Trailing metadata: text values, or the hex of `-bin` ones.
    trailers: Vec<(String, String)>,
    /// The encoding its request messages were sent in (`gzip`, `deflate`), if any; whether its
    /// answers were gzipped (when known).
    request_encoding: Option<String>,
    gzip_response: Option<bool>,
    /// The deadline the client gave the call, in seconds.
    timeout: Option<f64>,
}

/// What a tonic client got back: the answers and trailers of a call, or the status it failed
/// with.
type TonicGot = Result<(Vec<Value>, Vec<(String, String)>), Status>;

impl Seen {
    /// What a tonic client got: its answers and trailers, or the status it failed with (and
    /// that status's trailers). No deadline: the tonic calls set none.
    fn of_tonic(path: &str, got: TonicGot, gzip_request: bool, gzip_response: bool) -> Seen {
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
fn big_payload() -> Vec<u8> {
    (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect()
}

/// An echo answer as proto3's JSON mapping writes it: defaults left out, bytes in base64.
fn echo_json(text: &str, payload: &[u8], seq: i64) -> Value {
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

fn health_json(status: i64) -> Value {
    let name = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"][status as usize];
    serde_json::json!({ "status": name })
}

/// A peer script's client report, as [`Seen`] calls.
fn seen_from_report(report: &str) -> Vec<Seen> {
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

fn trailers_of(md: &MetadataMap) -> Vec<(String, String)> {
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

fn path(p: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(p)
}

fn echo(text: &str, seq: i32, payload: Vec<u8>) -> EchoRequest {
    EchoRequest {
        text: text.into(),
        payload,
        seq,
    }
}

/// A tonic client's calls to a peer's server, through the recorder: the same calls as the peer
/// scripts' clients make. `gzip_answers`: whether the server gzips the answer to a gzipped call.
async fn tonic_calls(rec: &Recorder, server: SocketAddr, gzip_answers: bool) -> Vec<Seen> {
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
async fn peer_calls(peer: Peer, rec: &Recorder, server: SocketAddr) -> Vec<Seen> {
    client_calls(peer.command(), rec, server).await
}

/// [`peer_calls`] with the client's command given.
async fn client_calls(mut client: Command, rec: &Recorder, server: SocketAddr) -> Vec<Seen> {
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

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("h2scope-stacks-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads `capture` as a user would (with `extra` options) and holds every call to what its
/// client saw. Every frame must also be one tshark finds (decrypting with the same key log); the
/// output on two threads must be the same, and `stats` and the TUI must count the same calls.
fn assert_dissection_matches(capture: &Path, seen: &[Seen], extra: &[&str]) -> Vec<Value> {
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
            // it sent one, crossed the reset: it makes no call of its own (the count above),
            // and this call has no status.
            assert_eq!(call["reset_by"], "client", "{id}");
            assert_eq!(call["error_code"], 8, "{id}");
            assert!(call["grpc_status"].is_null(), "{id}");
            assert_eq!(call["reset_at_deadline"], true, "{id}");
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
fn assert_frames_are_tsharks(capture: &Path, events: &[Value], keylog: Option<&Path>) {
    let port = |addr: &Value| -> u16 {
        let addr: SocketAddr = addr.as_str().unwrap().parse().unwrap();
        addr.port()
    };
    let server = events.iter().find(|e| e["event"] == "call").unwrap()["server"].clone();
    let Some(mut theirs) = common::tshark_frames(capture, port(&server), keylog) else {
        return;
    };
    let number = |e: &Value, key: &str| e[key].as_u64().unwrap();
    // (A capture of HTTP/1.1 has no frames: gRPC-Web.)
    let mut ours: Vec<common::Frame> = events
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

/// The names the C-core side gave its SETTINGS.
fn setting_names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "frame" && e["type"] == "SETTINGS")
        .flat_map(|e| e["setting_names"].as_array().unwrap().clone())
        .filter_map(|n| n.as_str().map(String::from))
        .collect()
}

/// A tonic client against `peer`'s server: the dissection holds what tonic got.
fn tonic_client_against(peer: Peer) -> Vec<Value> {
    let server = PeerServer::start(peer);
    let rec = Recorder::new(Link::Ethernet, 1460, 7_000);
    let mut seen = Vec::new();
    // C-core gzips the answer to a gzipped call when asked to; grpc-js cannot be asked.
    let gzip_answers = peer == Peer::Core;
    let pcap = rec.run(async { seen = tonic_calls(&rec, server.addr, gzip_answers).await });
    // What tonic got back is what the script sends.
    assert_eq!(seen[1].code, 3);
    assert_eq!(seen[1].details.as_deref(), Some(FAIL_DETAILS));
    assert_eq!(
        seen[0].trailers,
        [
            ("checksum-bin".into(), "0001feff".into()),
            ("served-by".into(), peer.name().into())
        ]
    );
    let dir = scratch(&format!("tonic-client-{}", peer.name()));
    let capture = dir.join("tonic-client.pcap");
    std::fs::write(&capture, pcap).unwrap();
    let events = assert_dissection_matches(&capture, &seen, &[]);
    std::fs::remove_dir_all(&dir).ok();
    events
}

#[test]
fn tonic_client_against_a_grpc_core_server() {
    if !Peer::Core.available() {
        return;
    }
    let events = tonic_client_against(Peer::Core);
    assert!(setting_names(&events)
        .iter()
        .any(|n| n == "GRPC_ALLOW_TRUE_BINARY_METADATA"));
    // C-core pings to measure bandwidth; each PING is answered.
    let pings = |ack: bool| {
        events
            .iter()
            .filter(|e| e["type"] == "PING" && e["ack"] == ack)
            .count()
    };
    assert!(pings(false) > 0 && pings(true) == pings(false));
}

#[test]
fn tonic_client_against_a_grpc_js_server() {
    if Peer::Js.available() {
        tonic_client_against(Peer::Js);
    }
}

/// The tonic server of the echo and health services (which knows test.echo.Echo, serving), on
/// the runtime at hand; with `web`, it also answers gRPC-Web (tonic-web), over HTTP/1.1 too.
async fn tonic_server(web: bool) -> SocketAddr {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("test.echo.Echo", tonic_health::ServingStatus::Serving)
        .await;
    let mut server = tonic::transport::Server::builder();
    if !web {
        return common::serve(server.add_service(Echo).add_service(health)).await;
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

/// `peer`'s client against a tonic server: the dissection holds what the client got.
fn client_against_tonic(peer: Peer) {
    let rec = Recorder::new(Link::Ethernet, 1460, 8_000);
    let mut seen = Vec::new();
    let pcap = rec.run(async {
        let server = tonic_server(false).await;
        seen = peer_calls(peer, &rec, server).await;
    });
    // tonic's echo answers what the scripts' servers refuse, and at once; the health service
    // does not know the unknown service.
    let codes: Vec<i64> = seen.iter().map(|s| s.code).collect();
    assert_eq!(codes, [0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0]);
    let dir = scratch(&format!("client-{}", peer.name()));
    let capture = dir.join("client.pcap");
    std::fs::write(&capture, pcap).unwrap();
    assert_dissection_matches(&capture, &seen, &[]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn grpc_core_client_against_a_tonic_server() {
    if Peer::Core.available() {
        client_against_tonic(Peer::Core);
    }
}

#[test]
fn grpc_js_client_against_a_tonic_server() {
    if Peer::Js.available() {
        client_against_tonic(Peer::Js);
    }
}

/// `client`'s client against `server`'s server, neither of them tonic.
fn peers_together(client: Peer, server: Peer) -> (PathBuf, Vec<Value>) {
    let running = PeerServer::start(server);
    let rec = Recorder::new(Link::Ethernet, 1460, 9_000);
    let mut seen = Vec::new();
    let pcap = rec.run(async { seen = peer_calls(client, &rec, running.addr).await });
    assert_eq!(seen[1].details.as_deref(), Some(FAIL_DETAILS));
    // The slow call ran out of its deadline.
    assert_eq!(seen.last().unwrap().code, 4);
    let dir = scratch(&format!("{}-{}", client.name(), server.name()));
    let capture = dir.join("peers.pcap");
    std::fs::write(&capture, pcap).unwrap();
    let events = assert_dissection_matches(&capture, &seen, &[]);
    (dir, events)
}

/// C-core's HTTP/2 (chttp2) against nghttp2's, the two stacks that are not tonic's.
#[test]
fn grpc_js_client_against_a_grpc_core_server() {
    if Peer::Js.available() && Peer::Core.available() {
        let (dir, _) = peers_together(Peer::Js, Peer::Core);
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// grpc-js over TLS, Node's OpenSSL on both sides, the client's secrets written by
/// `node --tls-keylog`: TLS 1.3 as OpenSSL prefers it (AES-256-GCM, SHA-384) and TLS 1.2 with
/// ECDHE-ECDSA and ChaCha20-Poly1305 are decrypted, and every call is what the client saw.
#[test]
fn grpc_js_over_openssl_tls_decrypted_with_nodes_key_log() {
    if !Peer::Js.available() {
        return;
    }
    let dir = scratch("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let tls12 = [
        "--tls-max-v1.2",
        "--tls-cipher-list=ECDHE-ECDSA-CHACHA20-POLY1305",
    ];
    for (runtime, version, suite) in [
        (&[][..], "TLS 1.3", "TLS_AES_256_GCM_SHA384"),
        (
            &tls12[..],
            "TLS 1.2",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
    ] {
        let runtime: Vec<String> = runtime.iter().map(|f| f.to_string()).collect();
        let keys = dir.join(format!("{version}.keys"));
        let mut server = Peer::Js.command_with(&runtime);
        server.env("H2SCOPE_TLS_DIR", &dir);
        let server = PeerServer::start_with(server);
        let mut client_runtime = runtime.clone();
        client_runtime.push(format!("--tls-keylog={}", keys.display()));
        let mut client = Peer::Js.command_with(&client_runtime);
        client.env("H2SCOPE_TLS_DIR", &dir);
        let rec = Recorder::new(Link::Ethernet, 1460, 12_000);
        let mut seen = Vec::new();
        let pcap = rec.run(async { seen = client_calls(client, &rec, server.addr).await });
        drop(server);
        let capture = dir.join(format!("{version}.pcap"));
        std::fs::write(&capture, pcap).unwrap();
        let keylog = keys.to_str().unwrap();
        let events = assert_dissection_matches(&capture, &seen, &["--tls-keylog", keylog]);
        let conns: Vec<&Value> = events
            .iter()
            .filter(|e| e["event"] == "connection")
            .collect();
        assert_eq!(
            conns.len(),
            3,
            "{version}: the plain, gzip and deflate channels"
        );
        for c in conns {
            let tls = &c["tls"];
            assert_eq!(tls["version"], version, "{c}");
            assert_eq!(tls["cipher_suite"], suite, "{c}");
            assert_eq!(tls["decrypted"], true, "{c}");
            assert_eq!(tls["sni"], "localhost", "{c}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Two C-core peers both allow true binary metadata, so `-bin` values travel as a NUL and the
/// bytes; the client still sees them as it would in base64.
#[test]
fn grpc_core_on_both_sides_sends_true_binary_metadata() {
    if !Peer::Core.available() {
        return;
    }
    let (dir, events) = peers_together(Peer::Core, Peer::Core);
    let capture = dir.join("peers.pcap");
    let call = events
        .iter()
        .find(|e| e["event"] == "call" && e["path"] == "/test.echo.Echo/Unary")
        .unwrap();
    let raw = |list: &Value, name: &str| -> String {
        list.as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .unwrap()[1]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(raw(&call["request_headers"], "trace-bin").starts_with('\0'));
    assert!(raw(&call["trailers"], "checksum-bin").starts_with('\0'));
    let bins: Vec<&Value> = call["binary_metadata"].as_array().unwrap().iter().collect();
    assert_eq!(
        bins,
        [
            &serde_json::json!(["trace-bin", "010203"]),
            &serde_json::json!(["checksum-bin", "0001feff"])
        ]
    );
    // On a terminal, the NULs and other controls come out escaped.
    let out = h2scope(&["read", "-V", capture.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("trace-bin: \\0\\u{1}\\u{2}\\u{3}"), "{text}");
    assert!(text.contains("(binary) 010203"), "{text}");
    assert!(!text.contains(['\0', '\u{1}']));
    std::fs::remove_dir_all(&dir).ok();
}

/// A health check recorded from each peer's server, exported, keeps it UP under a real HAProxy
/// while it serves, DOWN when it answers NOT_SERVING, and UP again; `--verify` agrees.
#[test]
fn health_checks_exported_from_peer_servers_follow_them_under_haproxy() {
    if !haproxy_available() {
        return;
    }
    for peer in [Peer::Core, Peer::Js] {
        if peer.available() {
            exported_check_follows(peer);
        }
    }
}

fn exported_check_follows(peer: Peer) {
    let mut server = PeerServer::start(peer);
    let rec = Recorder::new(Link::Ethernet, 1460, 10_000);
    let pcap = rec.run(async {
        let mut health = HealthClient::new(rec.channel(server.addr).await);
        for _ in 0..3 {
            let r = health.check(HealthCheckRequest::default()).await.unwrap();
            assert_eq!(r.into_inner().status, 1);
        }
    });
    let dir = scratch(&format!("haproxy-{}", peer.name()));
    let capture = dir.join("health.pcap");
    std::fs::write(&capture, pcap).unwrap();
    // The third call's headers lean on the HPACK table the first two filled.
    let first = export(&dir, &capture, "first", server.addr, &["--call", "0:1"]);
    let third = export(
        &dir,
        &capture,
        "third",
        server.addr,
        &["--call", "0:5", "--fast-fail"],
    );
    assert!(
        first.contains("tcp-check expect binary 00000700000000000100000000020801"),
        "{first}"
    );

    let o = h2scope(&[
        "haproxy",
        capture.to_str().unwrap(),
        "--verify",
        &server.addr.to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let haproxy = Haproxy::start(&dir, &[first, third]);
    let both = ["first", "third"];
    haproxy.wait_for(&both, "UP", Duration::from_secs(15));
    server.set_serving(false);
    haproxy.wait_for(&both, "DOWN", Duration::from_secs(20));
    let o = h2scope(&[
        "haproxy",
        capture.to_str().unwrap(),
        "--verify",
        &server.addr.to_string(),
    ]);
    assert!(!o.status.success());
    server.set_serving(true);
    haproxy.wait_for(&both, "UP", Duration::from_secs(15));
    drop(haproxy);
    std::fs::remove_dir_all(&dir).ok();
}

/// gRPC's keepalive rules as a real server enforces them: a tonic client that PINGs an idle
/// connection every 100 ms (keepalive while idle) is, by C-core's defaults (no PINGs without
/// calls, two strikes), sent away with GOAWAY ENHANCE_YOUR_CALM "too_many_pings". `health` must
/// tell the story: the client's PINGs without data, their interval and round trip, the server's
/// GOAWAY with its debug data, and the flood.
#[test]
fn a_grpc_core_server_sends_a_pinging_client_away() {
    if !Peer::Core.available() {
        return;
    }
    let server = PeerServer::start(Peer::Core);
    let rec = Recorder::new(Link::Ethernet, 1460, 13_000);
    let pcap = rec.run(async {
        let proxy = rec
            .proxy(SocketAddr::from(([127, 0, 0, 1], 0)), server.addr)
            .await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{proxy}"))
            .unwrap()
            .http2_keep_alive_interval(Duration::from_millis(100))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel);
        let r = health.check(HealthCheckRequest::default()).await.unwrap();
        assert_eq!(r.into_inner().status, 1);
        // Idle, pinging: C-core strikes the second and third PING and sends the fourth's sender
        // away; a second is ample.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    });
    drop(server);
    let dir = scratch("keepalive");
    let capture = dir.join("keepalive.pcap");
    std::fs::write(&capture, pcap).unwrap();

    let out = h2scope(&["health", "--format", "jsonl", capture.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["event"] == "connection_health")
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    let client = &r["client_side"];
    assert!(client["pings"].as_u64().unwrap() >= 3, "{r}");
    assert!(
        client["max_pings_without_data"].as_u64().unwrap() >= 3,
        "{r}"
    );
    let interval = client["ping_interval"]["avg_ms"].as_f64().unwrap();
    assert!((80.0..500.0).contains(&interval), "{r}");
    assert!(
        client["ping_rtt"]["max_ms"].as_f64().unwrap() < 100.0,
        "{r}"
    );
    let goaways = r["server_side"]["goaways"].as_array().unwrap();
    assert!(
        goaways
            .iter()
            .any(|g| g["error"] == "ENHANCE_YOUR_CALM" && g["debug"] == "too_many_pings"),
        "{r}"
    );
    assert_eq!(r["ping_flood"], true, "{r}");
    assert_eq!(r["calls"], 1, "{r}");

    // The text report says it in words; the frames carry no protocol note.
    let out = h2scope(&["health", capture.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("server sent GOAWAY ENHANCE_YOUR_CALM") && text.contains("too_many_pings"),
        "{text}"
    );
    // ... and what to change.
    assert!(
        text.contains("the client's PINGs (")
            && text.contains("make the client's keepalive time longer"),
        "{text}"
    );
    let out = h2scope(&["read", "--format", "jsonl", capture.to_str().unwrap()]);
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.last().unwrap()["errors"], 0);
    assert!(events
        .iter()
        .all(|e| e["notes"].as_array().is_none_or(Vec::is_empty)));
    std::fs::remove_dir_all(&dir).ok();
}

/// A graceful shutdown as a real server does it: C-core, told to stop with a grace period while a
/// call runs, sends GOAWAY NO_ERROR (first with the largest stream id and a PING, then with the
/// last stream it took) and lets the call finish. `health` must list that call as still running
/// under the GOAWAY, refuse none, and the call must end with its answer.
#[test]
fn a_grpc_core_server_drains_gracefully() {
    if !Peer::Core.available() {
        return;
    }
    let mut server = PeerServer::start(Peer::Core);
    let addr = server.addr;
    let rec = Recorder::new(Link::Ethernet, 1460, 17_000);
    let mut answer = None;
    let pcap = rec.run(async {
        let mut grpc = tonic::client::Grpc::new(rec.channel(addr).await);
        grpc.ready().await.unwrap();
        let slow = tokio::spawn(async move {
            let codec = ProstCodec::<EchoRequest, EchoReply>::default();
            let req = Request::new(echo("slow", 9, Vec::new()));
            grpc.unary(req, path("/test.echo.Echo/Unary"), codec).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.say("drain");
        answer = Some(slow.await.unwrap().map(|r| r.into_inner().text));
    });
    drop(server);
    assert_eq!(answer.unwrap().unwrap(), "echo slow");
    let dir = scratch("drain");
    let capture = dir.join("drain.pcap");
    std::fs::write(&capture, pcap).unwrap();

    let out = h2scope(&["health", "--format", "jsonl", capture.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    let goaways = r["server_side"]["goaways"].as_array().unwrap();
    assert!(!goaways.is_empty(), "{r}");
    for g in goaways {
        assert_eq!(g["error"], "NO_ERROR", "{r}");
        assert_eq!(g["refused_streams"], serde_json::json!([]), "{r}");
    }
    // The last GOAWAY names the stream the slow call ran on, which was still running.
    let last = goaways.last().unwrap();
    assert_eq!(last["last_stream_id"], 1, "{r}");
    assert_eq!(last["running_streams"], serde_json::json!([1]), "{r}");
    assert_eq!(r["refused_streams"], 0, "{r}");

    let out = h2scope(&[
        "read",
        "--calls",
        "--format",
        "jsonl",
        capture.to_str().unwrap(),
    ]);
    let calls: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "call")
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["grpc_status"], 0);
    assert_eq!(calls[0]["end"], "complete");
    // It outlived the GOAWAY.
    let goaway_ts = last["ts"].as_f64().unwrap();
    assert!(calls[0]["end_ts"].as_f64().unwrap() > goaway_ts);
    std::fs::remove_dir_all(&dir).ok();
}

/// A peer that stops answering, as keepalive is there to find out: the C-core server is
/// stopped (SIGSTOP) after a call, the tonic client PINGs the idle connection (every 100 ms,
/// giving each 300 ms) and gives up on it. `health` must show the client's PING never
/// acknowledged, a dead peer.
#[test]
fn keepalive_finds_a_stalled_server() {
    if !Peer::Core.available() {
        return;
    }
    let server = PeerServer::start(Peer::Core);
    let (addr, pid) = (server.addr, server.child.id().to_string());
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    };
    let rec = Recorder::new(Link::Ethernet, 1460, 18_000);
    let pcap = rec.run(async {
        let proxy = rec.proxy(SocketAddr::from(([127, 0, 0, 1], 0)), addr).await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{proxy}"))
            .unwrap()
            .http2_keep_alive_interval(Duration::from_millis(100))
            .keep_alive_timeout(Duration::from_millis(300))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel);
        let r = health.check(HealthCheckRequest::default()).await.unwrap();
        assert_eq!(r.into_inner().status, 1);
        signal("-STOP");
        tokio::time::sleep(Duration::from_millis(1000)).await;
    });
    // Woken once the recording is over: what it answers now is not in the capture.
    signal("-CONT");
    drop(server);
    let dir = scratch("stalled");
    let capture = dir.join("stalled.pcap");
    std::fs::write(&capture, pcap).unwrap();

    let out = h2scope(&["health", "--format", "jsonl", capture.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    let client = &r["client_side"];
    assert!(client["pings"].as_u64().unwrap() >= 1, "{r}");
    assert!(client["unacked_pings"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["server_side"]["unacked_pings"], 0, "{r}");
    assert_eq!(r["calls"], 1, "{r}");
    let out = h2scope(&["health", capture.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("never acknowledged (dead peer?)"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A request larger than the server takes: C-core, limited to 1 KiB, answers the 1 MiB message
/// with RESOURCE_EXHAUSTED while the client is still sending it, and resets the stream to stop
/// the rest (RFC 9113 §8.1 lets a server that has answered do so). The call must carry the status
/// and message the client got, the reset be the server's, and the request's DATA in flight
/// across the reset carry no note.
#[test]
fn a_request_too_large_for_a_grpc_core_server() {
    if !Peer::Core.available() {
        return;
    }
    let mut command = Peer::Core.command();
    command.env("H2SCOPE_MAX_RECEIVE", "1024");
    let server = PeerServer::start_with(command);
    let rec = Recorder::new(Link::Ethernet, 1460, 19_000);
    let mut got = None;
    let pcap = rec.run(async {
        let mut grpc = tonic::client::Grpc::new(rec.channel(server.addr).await);
        grpc.ready().await.unwrap();
        let codec = ProstCodec::<EchoRequest, EchoReply>::default();
        let req = Request::new(echo("big", 5, big_payload()));
        got = Some(grpc.unary(req, path("/test.echo.Echo/Unary"), codec).await);
    });
    drop(server);
    let status = got.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let dir = scratch("too-large");
    let capture = dir.join("too-large.pcap");
    std::fs::write(&capture, pcap).unwrap();

    let out = h2scope(&["read", "--format", "jsonl", capture.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_frames_are_tsharks(&capture, &events, None);
    for e in &events {
        assert!(e["notes"].as_array().is_none_or(Vec::is_empty), "{e}");
    }
    assert_eq!(events.last().unwrap()["errors"], 0);
    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "call").collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = calls[0];
    assert_eq!(call["grpc_status"], 8, "{call}");
    assert_eq!(call["grpc_message"], status.message(), "{call}");
    if call["end"] == "reset" {
        assert_eq!(call["reset_by"], "server", "{call}");
    } else {
        assert_eq!(call["end"], "complete", "{call}");
    }
    assert_eq!(call["reset_at_deadline"], false);
    let out = h2scope(&["stats", "--format", "jsonl", capture.to_str().unwrap()]);
    let stats = String::from_utf8(out.stdout).unwrap();
    assert!(stats.contains("\"RESOURCE_EXHAUSTED\":1"), "{stats}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A client that cancels a server stream it has read enough of: tonic drops the stream after
/// five answers of C-core's endless one, which resets it (CANCEL) while more answers are on
/// their way. The call ends reset by the client, without a status and not at a deadline; the
/// answers that crossed the reset carry no note; `health` counts the client's CANCEL.
#[test]
fn a_client_cancels_a_grpc_core_server_stream() {
    if !Peer::Core.available() {
        return;
    }
    let server = PeerServer::start(Peer::Core);
    let rec = Recorder::new(Link::Ethernet, 1460, 20_000);
    let pcap = rec.run(async {
        let mut grpc = tonic::client::Grpc::new(rec.channel(server.addr).await);
        grpc.ready().await.unwrap();
        let codec = ProstCodec::<EchoRequest, EchoReply>::default();
        let req = Request::new(echo("endless", 1, Vec::new()));
        let mut answers = grpc
            .server_streaming(req, path("/test.echo.Echo/ServerStream"), codec)
            .await
            .unwrap()
            .into_inner();
        for seq in 0..5 {
            assert_eq!(answers.message().await.unwrap().unwrap().seq, seq);
        }
        drop(answers);
        // The server's answers sent before the reset reached it arrive meanwhile.
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    drop(server);
    let dir = scratch("cancel");
    let capture = dir.join("cancel.pcap");
    std::fs::write(&capture, pcap).unwrap();

    let out = h2scope(&["read", "--format", "jsonl", capture.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_frames_are_tsharks(&capture, &events, None);
    for e in &events {
        assert!(e["notes"].as_array().is_none_or(Vec::is_empty), "{e}");
    }
    assert_eq!(events.last().unwrap()["errors"], 0);
    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "call").collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = calls[0];
    assert_eq!(call["end"], "reset", "{call}");
    assert_eq!(call["reset_by"], "client", "{call}");
    assert_eq!(call["error_code"], 8, "{call}");
    assert!(call["grpc_status"].is_null(), "{call}");
    assert_eq!(call["reset_at_deadline"], false, "{call}");
    assert!(call["response_messages"].as_u64().unwrap() >= 5, "{call}");
    let out = h2scope(&["health", "--format", "jsonl", capture.to_str().unwrap()]);
    let health: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health["client_side"]["resets"]["CANCEL"], 1, "{health}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The richer error model: C-core refuses a call with a google.rpc.Status (a BadRequest in its
/// details) in `grpc-status-details-bin`, encoded by the peer script. The call's
/// `grpc_status_details` must be that status decoded with the bundled schemas, from the very
/// bytes tonic handed its client.
#[test]
fn rich_error_details_from_a_grpc_core_server() {
    if !Peer::Core.available() {
        return;
    }
    let server = PeerServer::start(Peer::Core);
    let rec = Recorder::new(Link::Ethernet, 1460, 21_000);
    let mut got = None;
    let pcap = rec.run(async {
        let mut grpc = tonic::client::Grpc::new(rec.channel(server.addr).await);
        grpc.ready().await.unwrap();
        let codec = ProstCodec::<EchoRequest, EchoReply>::default();
        let req = Request::new(echo("details", 1, Vec::new()));
        got = Some(grpc.unary(req, path("/test.echo.Echo/Unary"), codec).await);
    });
    drop(server);
    let status = got.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "bad field");
    let dir = scratch("details");
    let capture = dir.join("details.pcap");
    std::fs::write(&capture, pcap).unwrap();
    let out = h2scope(&[
        "read",
        "--calls",
        "--format",
        "jsonl",
        capture.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let call: Value = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "call")
        .unwrap();
    assert_eq!(
        call["grpc_status_details"],
        serde_json::json!({
            "code": 3,
            "message": "bad field",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "text", "description": "must not be details"}]
            }]
        }),
        "{call}"
    );
    let shown = call["binary_metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b[0] == "grpc-status-details-bin")
        .map(|b| b[1].as_str().unwrap().to_string());
    assert_eq!(shown, Some(hex::encode(status.details())));
    std::fs::remove_dir_all(&dir).ok();
}

/// A schema learned from another stack's server reflection: grpc-js (@grpc/reflection, its
/// descriptors written by protobufjs) describes the echo service to tonic's reflection client,
/// then a call is made. Given no `.proto`, h2scope must decode that call with the schema the
/// exchange carried.
#[test]
fn a_schema_learned_from_grpc_js_reflection() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    if !Peer::Js.available() {
        return;
    }
    let server = PeerServer::start(Peer::Js);
    let rec = Recorder::new(Link::Ethernet, 1460, 22_000);
    let pcap = rec.run(async {
        let channel = rec.channel(server.addr).await;
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "test.echo.Echo".into(),
            )),
        };
        let mut answers = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter(vec![ask]))
            .await
            .unwrap()
            .into_inner();
        assert!(answers.message().await.unwrap().is_some());
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let codec = ProstCodec::<EchoRequest, EchoReply>::default();
        let req = Request::new(echo("hello", 1, vec![1, 2, 3]));
        let r = grpc.unary(req, path("/test.echo.Echo/Unary"), codec).await;
        assert_eq!(r.unwrap().into_inner().text, "echo hello");
    });
    drop(server);
    let dir = scratch("reflection");
    let capture = dir.join("reflection.pcap");
    std::fs::write(&capture, pcap).unwrap();
    let out = h2scope(&["read", "--format", "jsonl", capture.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let messages: Vec<(&Value, &Value)> = events
        .iter()
        .filter(|e| e["event"] == "message" && e["path"] == "/test.echo.Echo/Unary")
        .map(|e| (&e["type"], &e["json"]))
        .collect();
    assert_eq!(
        messages,
        [
            (
                &Value::from("test.echo.EchoRequest"),
                &serde_json::json!({"text": "hello", "payload": "AQID", "seq": 1})
            ),
            (
                &Value::from("test.echo.EchoReply"),
                &serde_json::json!({"text": "echo hello", "payload": "AQID", "seq": 1})
            ),
        ]
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Flow control as a slow reader makes it: a tonic client with 64 KiB windows (the protocol's
/// default) reads C-core's eight answers of 64 KiB each with a pause before each, so the server
/// waits on the windows. `health` must time the server's waits and give the client's windows.
#[test]
fn a_slow_reader_keeps_a_grpc_core_server_waiting_on_flow_control() {
    if !Peer::Core.available() {
        return;
    }
    let server = PeerServer::start(Peer::Core);
    let addr = server.addr;
    let rec = Recorder::new(Link::Ethernet, 1460, 23_000);
    let pcap = rec.run(async {
        let proxy = rec.proxy(SocketAddr::from(([127, 0, 0, 1], 0)), addr).await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{proxy}"))
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let codec = ProstCodec::<EchoRequest, EchoReply>::default();
        let req = Request::new(echo("large", 1, Vec::new()));
        let mut answers = grpc
            .server_streaming(req, path("/test.echo.Echo/ServerStream"), codec)
            .await
            .unwrap()
            .into_inner();
        let mut seen = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match answers.message().await.unwrap() {
                Some(m) => {
                    assert_eq!(m.payload.len(), 65_536);
                    seen += 1;
                }
                None => break,
            }
        }
        assert_eq!(seen, 8);
    });
    drop(server);
    let dir = scratch("slow-reader");
    let capture = dir.join("slow-reader.pcap");
    std::fs::write(&capture, pcap).unwrap();
    let out = h2scope(&["health", "--format", "jsonl", capture.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let server_side = &r["server_side"];
    let waited = server_side["blocked_on_window_ms"].as_f64().unwrap()
        + server_side["blocked_on_stream_windows_ms"]
            .as_f64()
            .unwrap();
    // Eight pauses of 50 ms, each with the server's next answer held up by a window.
    assert!(waited > 200.0, "{r}");
    assert!(waited < 1000.0, "{r}");
    // Its windows never held more than the client allowed, a WINDOW_UPDATE's worth at a time.
    assert!(
        server_side["max_stream_window"].as_u64().unwrap() <= 2 * 65_535,
        "{r}"
    );
    assert_eq!(r["client_side"]["blocked_on_window_ms"], 0.0, "{r}");
    let out = h2scope(&["health", capture.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("server blocked on flow control"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The gRPC proxies people put in front of servers, each with an HTTP/2 stack of its own:
/// HAProxy (`mode http`, `proto h2` on both sides) and nginx (`grpc_pass`).
#[derive(Clone, Copy, Debug)]
enum GrpcProxy {
    Haproxy,
    Nginx,
}

impl GrpcProxy {
    fn available(self) -> bool {
        match self {
            GrpcProxy::Haproxy => haproxy_available(),
            GrpcProxy::Nginx => {
                let found = Command::new("nginx").arg("-v").output().is_ok();
                common::needs(found, "H2SCOPE_REQUIRE_GRPC_STACKS", "nginx (nginx-light)")
            }
        }
    }

    /// Starts it in `dir`, listening on `front` and passing calls to `upstream`; it runs as long
    /// as what is returned is kept.
    fn start(self, dir: &Path, front: SocketAddr, upstream: SocketAddr) -> Box<dyn std::any::Any> {
        let running: Box<dyn std::any::Any> = match self {
            GrpcProxy::Haproxy => Box::new(Haproxy::start(
                dir,
                &[format!(
                    "frontend grpc\n    mode http\n    bind {front} proto h2\n    default_backend tonic\n\nbackend tonic\n    mode http\n    server s1 {upstream} proto h2\n"
                )],
            )),
            GrpcProxy::Nginx => {
                let d = dir.display();
                // Every path nginx would write to is in the scratch folder; a request body
                // may be as large as the calls make it.
                let conf = format!(
                    "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n    client_max_body_size 0;\n    server {{\n        listen {front} http2;\n        location / {{ grpc_pass grpc://{upstream}; }}\n    }}\n}}\n"
                );
                let path = dir.join("nginx.conf");
                std::fs::write(&path, conf).unwrap();
                let child = Command::new("nginx")
                    .args(["-p", &format!("{d}/"), "-c"])
                    .arg(&path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                Box::new(Daemon(child))
            }
        };
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(front).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{self:?} does not listen on {front}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        running
    }
}

/// A process stopped when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on (as far as one can tell before using it).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A tonic client's calls to a tonic server through `proxy`, recorded on both legs: each leg,
/// the proxy's HTTP/2 against tonic's, must give every call as the client saw it.
fn through(proxy: GrpcProxy) {
    let dir = scratch(&format!("{proxy:?}"));
    let front_leg = Recorder::new(Link::Ethernet, 1460, 14_000);
    let back_leg = Recorder::new(Link::Ethernet, 1460, 15_000);
    let mut seen = Vec::new();
    let mut running = None;
    let front = front_leg.run(async {
        let server = tonic_server(false).await;
        let upstream = back_leg
            .proxy(SocketAddr::from(([127, 0, 0, 1], 0)), server)
            .await;
        let listen = free_port();
        running = Some(proxy.start(&dir, listen, upstream));
        seen = tonic_calls(&front_leg, listen, true).await;
    });
    drop(running);
    let back = back_leg.to_pcap();
    // tonic's echo answers every call, and its health service does not know the unknown one.
    let codes: Vec<i64> = seen.iter().map(|s| s.code).collect();
    assert_eq!(codes, [0, 0, 0, 0, 0, 0, 5], "{proxy:?}: {seen:?}");
    for (leg, pcap) in [("front", front), ("back", back)] {
        let capture = dir.join(format!("{leg}.pcap"));
        std::fs::write(&capture, pcap).unwrap();
        let events = assert_dissection_matches(&capture, &seen, &[]);
        let conns = events.iter().filter(|e| e["event"] == "connection").count();
        assert!(conns >= 1, "{proxy:?} {leg}: {conns} connections");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// HAProxy's HTTP/2 (mux-h2) on both sides of the proxy.
#[test]
fn calls_through_haproxy_as_a_grpc_proxy() {
    if GrpcProxy::Haproxy.available() {
        through(GrpcProxy::Haproxy);
    }
}

/// nginx's HTTP/2 towards the client, its gRPC module's towards the server.
#[test]
fn calls_through_nginx_as_a_grpc_proxy() {
    if GrpcProxy::Nginx.available() {
        through(GrpcProxy::Nginx);
    }
}

/// gRPC-Web as a browser speaks it, over HTTP/1.1 (Node's fetch), binary and base64 text,
/// against a tonic-web server: every call (status, answers, the trailers in the body's last
/// frame, a trailers-only answer's status in the headers) as the client saw it.
#[test]
fn grpc_web_client_against_a_tonic_web_server() {
    if !Peer::Js.available() {
        return;
    }
    let rec = Recorder::new(Link::Ethernet, 1460, 16_000);
    let mut seen = Vec::new();
    let pcap = rec.run(async {
        let server = tonic_server(true).await;
        let mut client = Command::new("node");
        client.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/grpc_js/grpc_web.js"
        ));
        seen = client_calls(client, &rec, server).await;
    });
    let codes: Vec<i64> = seen.iter().map(|s| s.code).collect();
    assert_eq!(codes, [0, 0, 0, 0, 0, 5], "{seen:?}");
    assert_eq!(seen[2].answers.len(), 3);
    let dir = scratch("grpc-web");
    let capture = dir.join("grpc-web.pcap");
    std::fs::write(&capture, pcap).unwrap();
    let events = assert_dissection_matches(&capture, &seen, &[]);
    let summary = events.last().unwrap();
    assert_eq!(summary["http2_connections"], 0, "{summary}");
    assert!(
        summary["http1_connections"].as_u64() >= Some(1),
        "{summary}"
    );
    // The answers of the text calls were base64 on the wire.
    let texts = events
        .iter()
        .filter(|e| {
            e["event"] == "call" && e["response_headers"].to_string().contains("grpc-web-text")
        })
        .count();
    assert_eq!(texts, 2);
    std::fs::remove_dir_all(&dir).ok();
}
