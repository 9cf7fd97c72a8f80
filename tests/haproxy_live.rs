//! The HAProxy export proven under a real HAProxy (Debian's `haproxy`, installed by
//! `scripts/test`): health checks exported by `h2scope haproxy` from recorded traffic keep a real
//! tonic server UP while it serves, mark it DOWN when it stops serving, and UP again when it
//! recovers, as HAProxy's stats socket reports. Covered: a call that was first on its connection,
//! a call from the middle of a connection (HPACK dynamic-table references in the capture), the
//! fast-fail variant, and the classic example's `servicestatus.HealthCheck/Status` answering
//! `MagicResponseCodeOK`. Also `h2scope check` against the same server.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::haproxy::{export, h2scope, haproxy_available, Haproxy};
use common::recorder::{Link, Recorder};
use tonic::codegen::http;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_prost::ProstCodec;
use tower::service_fn;

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResult {
    #[prost(string, tag = "1")]
    pub status: String,
}

/// `servicestatus.HealthCheck`: answers `MagicResponseCodeOK` while `ok` is set.
#[derive(Clone)]
struct Magic {
    ok: Arc<AtomicBool>,
}

impl tonic::server::NamedService for Magic {
    const NAME: &'static str = "servicestatus.HealthCheck";
}

impl tower::Service<http::Request<tonic::body::Body>> for Magic {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let ok = self.ok.clone();
        Box::pin(async move {
            if req.uri().path() != "/servicestatus.HealthCheck/Status" {
                return Ok(Status::unimplemented("").into_http());
            }
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<HealthCheckResult, StatusRequest>::default());
            let svc = service_fn(move |_: Request<StatusRequest>| {
                let ok = ok.load(Ordering::SeqCst);
                async move {
                    let status = if ok {
                        "MagicResponseCodeOK"
                    } else {
                        "MagicResponseCodeKO"
                    };
                    Ok::<_, Status>(Response::new(HealthCheckResult {
                        status: status.into(),
                    }))
                }
            });
            Ok(grpc.unary(svc, req).await)
        })
    }
}

struct Server {
    addr: SocketAddr,
    reporter: tonic_health::server::HealthReporter,
    magic: Arc<AtomicBool>,
    rt: tokio::runtime::Runtime,
}

impl Server {
    fn start() -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let magic = Arc::new(AtomicBool::new(true));
        let (reporter, addr) = rt.block_on(async {
            let (reporter, health) = tonic_health::server::health_reporter();
            let addr = common::serve(
                tonic::transport::Server::builder()
                    .add_service(health)
                    .add_service(Magic { ok: magic.clone() }),
            )
            .await;
            (reporter, addr)
        });
        Server {
            addr,
            reporter,
            magic,
            rt,
        }
    }

    fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.rt
            .block_on(self.reporter.set_service_status("", status));
    }

    /// Records three health checks and a Status call on one connection, through the proxy.
    fn record(&self) -> Vec<u8> {
        let rec = Recorder::new(Link::Ethernet, 1460, 5);
        let upstream = self.addr;
        self.rt.block_on(async {
            let proxy = rec.proxy("127.0.0.1:0".parse().unwrap(), upstream).await;
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{proxy}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            for _ in 0..3 {
                health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .unwrap();
            }
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.unwrap();
            let r: Response<HealthCheckResult> = grpc
                .unary(
                    Request::new(StatusRequest {}),
                    http::uri::PathAndQuery::from_static("/servicestatus.HealthCheck/Status"),
                    ProstCodec::default(),
                )
                .await
                .unwrap();
            assert_eq!(r.into_inner().status, "MagicResponseCodeOK");
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        rec.to_pcap()
    }
}

#[test]
fn exported_checks_follow_the_server_under_real_haproxy() {
    if !haproxy_available() {
        return;
    }
    let server = Server::start();
    let dir = std::env::temp_dir().join(format!("h2scope-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("recorded.pcap");
    std::fs::write(&capture, server.record()).unwrap();

    // Stream 1: the first call of its connection; stream 5: the third, whose headers the
    // capture encodes with dynamic-table references.
    let first = export(
        &dir,
        &capture,
        "health_first",
        server.addr,
        &["--call", "0:1"],
    );
    let middle = export(
        &dir,
        &capture,
        "health_middle",
        server.addr,
        &["--call", "0:5"],
    );
    let fast = export(&dir, &capture, "health_fast", server.addr, &["--fast-fail"]);
    let magic = export(
        &dir,
        &capture,
        "magic",
        server.addr,
        &["--path", "/servicestatus.HealthCheck/Status"],
    );
    assert!(first.contains("tcp-check expect binary 00000700000000000100000000020801"));
    assert!(fast.contains("tcp-check expect rbinary ^(..)*?000007000000000001000000000208"));
    assert!(magic.contains(&hex::encode("MagicResponseCodeOK")));
    // The call from the middle of the connection is rebuilt exactly like the first one.
    let sends = |cfg: &str| -> Vec<String> {
        cfg.lines()
            .filter(|l| l.contains("send-binary"))
            .map(String::from)
            .collect()
    };
    assert_eq!(sends(&first), sends(&middle));

    let haproxy = Haproxy::start(&dir, &[first, middle, fast, magic]);
    let health = ["health_first", "health_middle", "health_fast"];
    let all = ["health_first", "health_middle", "health_fast", "magic"];
    haproxy.wait_for(&all, "UP", Duration::from_secs(15));

    server.set_serving(false);
    let fast_down = haproxy.wait_for(&["health_fast"], "DOWN", Duration::from_secs(15));
    haproxy.wait_for(&health, "DOWN", Duration::from_secs(20));
    assert!(haproxy.status("magic").starts_with("UP"));
    // The fast-fail rules decide on the wrong answer at once: no check waits for its timeout
    // (2 s), so two failed checks (fall 2) take about two intervals.
    assert!(
        fast_down < Duration::from_millis(1900),
        "fast-fail took {fast_down:?}"
    );
    let fast_check_ms = haproxy
        .servers()
        .into_iter()
        .find(|(b, _, _)| b == "health_fast")
        .map(|(_, _, d)| d)
        .unwrap();
    assert!(
        (0..1000).contains(&fast_check_ms),
        "fast-fail check took {fast_check_ms} ms"
    );

    server.set_serving(true);
    haproxy.wait_for(&health, "UP", Duration::from_secs(15));

    server.magic.store(false, Ordering::SeqCst);
    haproxy.wait_for(&["magic"], "DOWN", Duration::from_secs(15));
    server.magic.store(true, Ordering::SeqCst);
    haproxy.wait_for(&["magic"], "UP", Duration::from_secs(15));
    drop(haproxy);
    std::fs::remove_dir_all(&dir).ok();
}

/// The same over TLS. A health check recorded through a TLS front (its secrets in the client's
/// key log) is found with `--tls-keylog` and exported as `tcp-check connect ssl alpn h2 sni
/// localhost`. The front answers only handshakes naming "localhost" and negotiating ALPN, so
/// both are proven sent: the export given another name stays DOWN, as do the one forced to
/// clear text and the same check with ALPN taken out. With and
/// without `--ca-file` the checks follow the server's health; `--verify` and `check --ssl`
/// handshake as HAProxy does.
#[test]
fn tls_checks_follow_the_server_under_real_haproxy() {
    if !haproxy_available() {
        return;
    }
    let server = Server::start();
    let dir = std::env::temp_dir().join(format!("h2scope-haproxy-tls-{}", std::process::id()));
    // A space in the CA file's path: the config must quote it.
    let ca_dir = dir.join("front ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let secrets = Arc::new(common::tls::Secrets::default());
    let (front_cfg, client_cfg, pem) = common::tls::localhost_only(secrets.clone());
    let front = server
        .rt
        .block_on(common::tls::terminate(front_cfg, server.addr, false));
    let rec = Recorder::new(Link::Ethernet, 1460, 9);
    server.rt.block_on(async {
        let proxy = rec.proxy("127.0.0.1:0".parse().unwrap(), front).await;
        let channel = common::tls::channel(client_cfg, proxy).await;
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        for _ in 0..2 {
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let capture = dir.join("recorded-tls.pcap");
    std::fs::write(&capture, rec.to_pcap()).unwrap();
    let keylog = dir.join("keys.log");
    std::fs::write(&keylog, secrets.text()).unwrap();
    let ca = ca_dir.join("ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let (capture_s, keylog_s, ca_s) = (
        capture.to_str().unwrap(),
        keylog.to_str().unwrap(),
        ca.to_str().unwrap(),
    );

    // Without the secrets the call is out of sight, and the error says how to reach it.
    let o = h2scope(&["haproxy", capture_s]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("1 TLS connection(s)") && err.contains("--tls-keylog"),
        "{err}"
    );

    let keys = ["--tls-keylog", keylog_s];
    let none = export(&dir, &capture, "tls_none", front, &keys);
    let verified = export(
        &dir,
        &capture,
        "tls_ca",
        front,
        &[&keys[..], &["--ca-file", ca_s]].concat(),
    );
    let wrong_sni = export(
        &dir,
        &capture,
        "tls_wrong_sni",
        front,
        &[&keys[..], &["--sni", "other.example"]].concat(),
    );
    let clear = export(
        &dir,
        &capture,
        "tls_clear",
        front,
        &[&keys[..], &["--no-ssl"]].concat(),
    );
    assert!(
        none.contains("    tcp-check connect ssl alpn h2 sni localhost\n"),
        "{none}"
    );
    assert!(none.contains(" check verify none "), "{none}");
    assert!(
        verified.contains(&format!(" check verify required ca-file '{ca_s}' ")),
        "{verified}"
    );
    assert!(wrong_sni.contains("sni other.example\n"), "{wrong_sni}");
    assert!(
        !clear.contains("ssl") && !clear.contains("verify"),
        "{clear}"
    );

    // The same check without ALPN, as a hand-written one might be: the front refuses it.
    let no_alpn = none
        .replace("backend tls_none", "backend tls_no_alpn")
        .replace(" alpn h2", "");
    let haproxy = Haproxy::start(&dir, &[none, verified, wrong_sni, clear, no_alpn]);
    let good = ["tls_none", "tls_ca"];
    haproxy.wait_for(&good, "UP", Duration::from_secs(15));
    haproxy.wait_for(
        &["tls_wrong_sni", "tls_clear", "tls_no_alpn"],
        "DOWN",
        Duration::from_secs(15),
    );
    server.set_serving(false);
    haproxy.wait_for(&good, "DOWN", Duration::from_secs(20));
    server.set_serving(true);
    haproxy.wait_for(&good, "UP", Duration::from_secs(15));
    drop(haproxy);

    // `--verify` runs the exported check over TLS, as HAProxy does.
    let front_s = front.to_string();
    let o = h2scope(&[
        "haproxy",
        capture_s,
        "--tls-keylog",
        keylog_s,
        "--ca-file",
        ca_s,
        "--verify",
        &front_s,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("over TLS 1.3") && err.contains("ALPN h2") && err.contains("MATCH"),
        "{err}"
    );
    assert!(err.contains("{\"status\":\"SERVING\"}"), "{err}");

    let o = h2scope(&[
        "haproxy",
        capture_s,
        "--tls-keylog",
        keylog_s,
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (send, expect) = (
        v["send_hex"].as_str().unwrap().to_string(),
        v["expect_hex"].as_str().unwrap().to_string(),
    );
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            &front_s,
            "--send-hex",
            &send,
            "--expect-hex",
            &expect,
        ];
        args.extend_from_slice(extra);
        let o = h2scope(&args);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = check(&["--sni", "localhost"]);
    assert_eq!(code, Some(0), "{err}");
    // Handshakes that fail are the server's unreachability (exit 2), and say why: no SNI, a
    // certificate from another authority, or no TLS at all.
    let (code, err) = check(&["--ssl"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("TLS handshake failed"), "{err}");
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_ca = dir.join("other.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let (code, err) = check(&[
        "--sni",
        "localhost",
        "--ca-file",
        other_ca.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("TLS handshake failed") && err.contains("certificate"),
        "{err}"
    );
    let plain = server.addr.to_string();
    let o = h2scope(&[
        "check",
        &plain,
        "--send-hex",
        &send,
        "--expect-hex",
        &expect,
        "--ssl",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A CA file that holds no certificate is the user's mistake: exit 2 before connecting.
    let (code, err) = check(&["--ca-file", keylog_s]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_command_matches_mismatches_and_fails_to_connect() {
    let server = Server::start();
    let dir = std::env::temp_dir().join(format!("h2scope-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("recorded.pcap");
    std::fs::write(&capture, server.record()).unwrap();
    let o = h2scope(&["haproxy", capture.to_str().unwrap(), "--format", "json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let send = v["send_hex"].as_str().unwrap().to_string();
    let expect = v["expect_hex"].as_str().unwrap().to_string();
    let addr = server.addr.to_string();

    // `haproxy --verify` runs the same check with the exported bytes.
    let o = h2scope(&["haproxy", capture.to_str().unwrap(), "--verify", &addr]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("tcp-check send-binary"));

    let o = h2scope(&["check", &addr, "--send-hex", &send, "--expect-hex", &expect]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("MATCH"), "{err}");
    // The answer is decoded: the health response and its status.
    assert!(err.contains("{\"status\":\"SERVING\"}"), "{err}");

    // Send from a file too; a server that answers NOT_SERVING: mismatch, and the answer says why.
    server.set_serving(false);
    let send_file = dir.join("send.hex");
    std::fs::write(&send_file, &send).unwrap();
    let send_arg = format!("@{}", send_file.display());
    let o = h2scope(&[
        "check",
        &addr,
        "--send-hex",
        &send_arg,
        "--expect-hex",
        &expect,
        "--timeout",
        "500ms",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("NOT_SERVING"), "{err}");

    // Garbage instead of a preface: the server hangs up.
    let o = h2scope(&[
        "check",
        &addr,
        "--send-hex",
        "00112233",
        "--expect-hex",
        &expect,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("closed"));

    // A listener that never answers: timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let t = Instant::now();
    let o = h2scope(&[
        "check",
        &silent_addr,
        "--send-hex",
        &send,
        "--expect-hex",
        &expect,
        "--timeout",
        "300ms",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&o.stderr).contains("timeout"));

    // A closed port: exit 2.
    drop(silent);
    let o = h2scope(&[
        "check",
        &silent_addr,
        "--send-hex",
        &send,
        "--expect-hex",
        &expect,
    ]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}
