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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::haproxy::{export, h2scope, haproxy_available, Haproxy};
use common::peers::*;
use common::recorder::{Link, Recorder};
use serde_json::Value;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

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
    let (dir, capture) = saved("grpc-web", pcap);
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
