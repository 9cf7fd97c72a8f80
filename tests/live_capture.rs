//! Live capture on the loopback interface while a real gRPC server and client talk (needs the
//! `live` feature and the right to capture: CI runs as root). The live output shows the calls and
//! messages; the recorded pcapng reads back to the same frames; tshark reads it too.

#![cfg(feature = "live")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_h2scope");

fn frame_key(e: &Value) -> (String, String, u64, String, u64) {
    (
        e["src"].as_str().unwrap().to_string(),
        e["dst"].as_str().unwrap().to_string(),
        e["stream"].as_u64().unwrap(),
        e["type"].as_str().unwrap().to_string(),
        e["length"].as_u64().unwrap(),
    )
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Starts `h2scope capture -i lo` with `args` (JSON Lines out) and waits until it captures.
fn start_capture(args: &[&std::ffi::OsStr]) -> std::process::Child {
    start_capture_as("jsonl", args)
}

/// Starts `h2scope capture -i lo --format FORMAT` with `args` and waits until it captures.
fn start_capture_as(format: &str, args: &[&std::ffi::OsStr]) -> std::process::Child {
    let mut all: Vec<&std::ffi::OsStr> = vec!["--format".as_ref(), format.as_ref()];
    all.extend(args);
    spawn_capture(&all).0
}

/// Starts `h2scope capture -i lo` with `args`, waits until it captures, and gives its
/// standard error after the line that says so.
fn spawn_capture(
    args: &[&std::ffi::OsStr],
) -> (std::process::Child, BufReader<std::process::ChildStderr>) {
    let mut child = Command::new(BIN)
        .args(["capture", "-i", "lo"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("capturing on lo"), "{line}");
    (child, stderr)
}

/// Waits until the capture has shown `calls` calls that ended with grpc-status 0 (it prints
/// each packet's events at once), stops it as a user would (Ctrl-C), and returns its events.
fn stop_capture(child: std::process::Child, calls: usize) -> Vec<Value> {
    jsonl(&stop_capture_when(child, |text| {
        // The last line may be still on its way.
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["event"] == "call" && e["grpc_status"] == 0)
            .count()
            >= calls
    }))
}

/// Stops the capture (Ctrl-C) once what it printed so far satisfies `ready`, or after 20 s,
/// and returns all it printed. Waiting for the output rather than for a fixed time: on a busy
/// machine (the tests run side by side, in a debug build) the capture can lag behind the
/// traffic by more than half a second, and a Ctrl-C then would cut off the last calls.
fn stop_capture_when(mut child: std::process::Child, ready: impl Fn(&str) -> bool) -> String {
    use std::io::Read;
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let printed = printed.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                printed.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        })
    };
    let waiting = Instant::now();
    while !ready(&String::from_utf8_lossy(&printed.lock().unwrap()))
        && waiting.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "Ctrl-C took too long"
    );
    reader.join().unwrap();
    let text = String::from_utf8(printed.lock().unwrap().clone()).unwrap();
    text
}

/// `n` health checks on one channel to the server at `addr`.
fn health_checks(rt: &tokio::runtime::Runtime, addr: std::net::SocketAddr, n: usize) {
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        for _ in 0..n {
            client
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .unwrap();
        }
    });
}

#[test]
fn live_capture_shows_calls_and_records_a_readable_file() {
    if !common::can_capture_on_lo() {
        return;
    }
    let (rt, addr) = common::health_server();
    let dir = std::env::temp_dir().join(format!("h2scope-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("live.pcapng");
    let filter = format!("tcp port {}", addr.port());
    let child = start_capture(&["-f".as_ref(), filter.as_ref(), "-w".as_ref(), file.as_ref()]);

    health_checks(&rt, addr, 5);
    let events = stop_capture(child, 5);

    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "call").collect();
    let checks = calls
        .iter()
        .filter(|c| c["path"] == "/grpc.health.v1.Health/Check" && c["grpc_status"] == 0)
        .count();
    assert_eq!(checks, 5, "{calls:?}");
    let replies = events
        .iter()
        .filter(|e| e["event"] == "message" && e["json"]["status"] == "SERVING")
        .count();
    assert_eq!(replies, 5);
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert!(summary["received"].as_u64().unwrap() >= summary["packets"].as_u64().unwrap());
    // Counted, but not necessarily 0: the socket sees all of lo's traffic until its filter is
    // set, and with the other tests' loopback traffic beside it the kernel may drop some of
    // that (6 once, with every call above still complete).
    assert!(summary["kernel_drops"].is_u64(), "{summary}");

    // The file holds what was dissected live.
    let mut live: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "frame")
        .map(frame_key)
        .collect();
    let read = Command::new(BIN)
        .args(["read", "--format", "jsonl", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(read.status.success());
    let mut from_file: Vec<_> = jsonl(&String::from_utf8(read.stdout).unwrap())
        .iter()
        .filter(|e| e["event"] == "frame")
        .map(frame_key)
        .collect();
    live.sort();
    from_file.sort();
    assert!(!live.is_empty());
    assert_eq!(live, from_file);

    // tshark reads the file without complaint.
    match Command::new("tshark")
        .args(["-r", file.to_str().unwrap()])
        .output()
    {
        Ok(t) => {
            assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
            assert!(!t.stdout.is_empty());
        }
        Err(_) => assert!(
            std::env::var_os("H2SCOPE_REQUIRE_TSHARK").is_none(),
            "tshark is required here"
        ),
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Live, a call the client cancelled is held a second for an answer that may cross its reset,
/// and shown once that second is up although the wire stays quiet: no packet of its connection
/// comes to let it go (the channel stays open and idle until the capture has stopped).
#[test]
fn live_capture_shows_a_cancelled_call_while_the_wire_is_quiet() {
    if !common::can_capture_on_lo() {
        return;
    }
    let (rt, addr) = common::health_server();
    let filter = format!("tcp port {}", addr.port());
    let child = start_capture(&["-f".as_ref(), filter.as_ref()]);
    let (channel, cancelled) = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let request = tonic_health::pb::HealthCheckRequest::default();
        let mut watch = client.watch(request).await.unwrap().into_inner();
        watch.message().await.unwrap().unwrap();
        drop(watch);
        (channel, Instant::now())
    });
    let is_watch = |e: &Value| e["event"] == "call" && e["path"] == "/grpc.health.v1.Health/Watch";
    let text = stop_capture_when(child, |text| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|e| is_watch(&e))
    });
    let waited = cancelled.elapsed();
    drop(channel);
    let events = jsonl(&text);
    let call = events
        .iter()
        .find(|e| is_watch(e))
        .unwrap_or_else(|| panic!("no Watch call shown: {events:#?}"));
    assert_eq!(call["end"], "reset", "{call}");
    assert_eq!(call["reset_by"], "client", "{call}");
    assert_eq!(call["response_messages"], 1, "{call}");
    // A second of hold and one of quiet ticks, with room for a busy machine; without the ticks
    // the call would wait for the connection's end, after the capture's 20 s.
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

/// `capture -w -` writes the capture to standard output, as `tcpdump -w -` does, to be piped
/// on (here straight into `h2scope read -`); the summary goes to standard error.
#[test]
fn live_capture_writes_to_standard_output() {
    if !common::can_capture_on_lo() {
        return;
    }
    let (rt, addr) = common::health_server();
    let filter = format!("tcp port {}", addr.port());
    let (mut child, mut stderr) =
        spawn_capture(&["-f".as_ref(), filter.as_ref(), "-w".as_ref(), "-".as_ref()]);
    // Standard output is read meanwhile, so that the pipe never fills.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut bytes).unwrap();
        bytes
    });
    health_checks(&rt, addr, 3);
    std::thread::sleep(Duration::from_millis(500));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let recorded = reader.join().unwrap();
    assert!(rest.contains("calls: 3"), "summary on stderr: {rest}");

    let mut read = Command::new(BIN)
        .args(["read", "--calls", "--format", "jsonl", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = read.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &recorded).unwrap();
    drop(stdin);
    let out = read.wait_with_output().unwrap();
    assert!(out.status.success());
    let checks = jsonl(&String::from_utf8(out.stdout).unwrap())
        .iter()
        .filter(|e| {
            e["event"] == "call"
                && e["path"] == "/grpc.health.v1.Health/Check"
                && e["grpc_status"] == 0
        })
        .count();
    assert_eq!(checks, 3);
}

/// `capture -T fields` prints the chosen fields of live calls, as `read -T fields` does.
#[test]
fn live_capture_prints_fields() {
    if !common::can_capture_on_lo() {
        return;
    }
    let (rt, addr) = common::health_server();
    let filter = format!("tcp port {}", addr.port());
    let child = start_capture_as(
        "fields",
        &[
            "-f".as_ref(),
            filter.as_ref(),
            "-e".as_ref(),
            "path".as_ref(),
            "-e".as_ref(),
            "grpc_status".as_ref(),
            "-Y".as_ref(),
            "event == call".as_ref(),
        ],
    );
    health_checks(&rt, addr, 3);
    let text = stop_capture_when(child, |text| text.lines().count() >= 3);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, ["/grpc.health.v1.Health/Check\t0"; 3], "{text}");
}

/// Live traffic as grpcurl commands: each health check, as it ends, becomes the command that
/// makes it again, to the server captured.
#[test]
fn live_capture_prints_grpcurl_commands() {
    if !common::can_capture_on_lo() {
        return;
    }
    let (rt, addr) = common::health_server();
    let filter = format!("tcp port {}", addr.port());
    let child = start_capture_as("grpcurl", &["-f".as_ref(), filter.as_ref()]);
    health_checks(&rt, addr, 3);
    let text = stop_capture_when(child, |text| {
        text.lines().filter(|l| l.starts_with("grpcurl ")).count() >= 3
    });
    let commands: Vec<Vec<String>> = text
        .lines()
        .filter(|l| l.starts_with("grpcurl "))
        .map(common::sh_words)
        .collect();
    assert_eq!(commands.len(), 3, "{text}");
    for words in commands {
        let n = words.len();
        assert_eq!(words[n - 1], "grpc.health.v1.Health/Check", "{text}");
        assert_eq!(words[n - 2], addr.to_string(), "{text}");
        assert!(words.contains(&"-plaintext".to_string()), "{text}");
    }
    assert_eq!(
        text.matches("#   answered: {\"status\":\"SERVING\"}")
            .count(),
        3,
        "{text}"
    );
}

#[test]
fn capture_errors_say_what_to_do() {
    let out = Command::new(BIN)
        .args(["capture", "-i", "nosuch0", "--duration", "0.1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no such interface") || err.contains("permission denied"),
        "{err}"
    );

    // As an unprivileged user, where one can be made (root with setpriv).
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if root && setpriv {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(["capture", "-i", "lo", "--duration", "0.1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("permission denied") && err.contains("CAP_NET_RAW"),
            "{err}"
        );
    } else {
        eprintln!("not root: the permission message is covered by the unit test of classify()");
    }
}

/// A live capture of TLS whose key log is written while it runs (as SSLKEYLOGFILE is): the file
/// is empty when the capture starts, and read again when a connection needs its secrets. The
/// pcapng it records carries the secrets (logged after the ClientHello was captured) ahead of
/// the handshake, so that h2scope and tshark decrypt it without the key log.
#[test]
fn live_capture_decrypts_tls_with_a_key_log_written_as_it_runs() {
    use common::tls::{suite, Secrets, Tls};
    use std::sync::Arc;
    if !common::can_capture_on_lo() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("h2scope-live-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys.log");
    std::fs::write(&keys, "").unwrap();
    let recorded = dir.join("tls.pcapng");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tls = Tls {
        version: &rustls::version::TLS13,
        suite: suite(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
        retry: false,
    };
    let secrets = Arc::new(Secrets::to_file(keys.clone()));
    let (server, client) = common::tls::configs(&tls, secrets);
    let front = rt.block_on(common::tls::serve(server, true));
    let filter = format!("tcp port {}", front.port());
    let child = start_capture(&[
        "-f".as_ref(),
        filter.as_ref(),
        "--tls-keylog".as_ref(),
        keys.as_ref(),
        "-w".as_ref(),
        recorded.as_ref(),
    ]);

    // A small echo: a burst of 300 kB on lo outruns the capture's buffer.
    rt.block_on(async {
        common::tls::traffic(common::tls::channel(client, front).await, 2_000).await
    });
    let events = stop_capture(child, 4);
    let calls = |events: &[Value]| -> Vec<(String, u64)> {
        events
            .iter()
            .filter(|e| e["event"] == "call")
            .map(|c| {
                (
                    c["path"].as_str().unwrap_or("").to_string(),
                    c["grpc_status"].as_u64().unwrap_or(99),
                )
            })
            .collect()
    };
    let expected = [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Check",
        "/test.echo.Echo/Unary",
    ]
    .map(|p| (p.to_string(), 0));
    assert_eq!(calls(&events), expected);
    let summary = events.last().unwrap();
    assert_eq!(summary["tls_decrypted"], 1, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");

    // The recording, without the key log.
    let out = Command::new(BIN)
        .args(["read", "--format", "jsonl"])
        .arg(&recorded)
        .output()
        .unwrap();
    assert!(out.status.success());
    let read_back = jsonl(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(calls(&read_back), expected);
    let summary = read_back.last().unwrap();
    assert_eq!(summary["tls_decrypted"], 1, "{summary}");
    // tshark, in one pass, finds the secrets before the handshake too.
    let tshark = Command::new("tshark")
        .args(["-d", &format!("tcp.port=={},tls", front.port())])
        .arg("-r")
        .arg(&recorded)
        .args([
            "-Y",
            "http2.header.name == \":path\"",
            "-T",
            "fields",
            "-e",
            "http2.headers.path",
        ])
        .output()
        .expect("tshark (scripts/install-deps installs it)");
    let paths = String::from_utf8_lossy(&tshark.stdout);
    assert_eq!(
        paths.matches("/grpc.health.v1.Health/Check").count(),
        3,
        "tshark: {paths}"
    );
    assert!(paths.contains("/test.echo.Echo/Unary"), "tshark: {paths}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `capture -w x.pcapng.zst` (and a ring of gzip files) write whole compressed files once the
/// capture stops: the tools test them and they read back to the calls made.
#[test]
fn live_capture_writes_compressed_files() {
    if !common::can_capture_on_lo() {
        return;
    }
    let (rt, addr) = common::health_server();
    let dir = std::env::temp_dir().join(format!("h2scope-live-zst-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("live.pcapng.zst");
    let ring = dir.join("ring.pcapng.gz");
    let filter = format!("tcp port {}", addr.port());
    let one = start_capture(&["-f".as_ref(), filter.as_ref(), "-w".as_ref(), file.as_ref()]);
    let rotating = start_capture(&[
        "-f".as_ref(),
        filter.as_ref(),
        "-w".as_ref(),
        ring.as_ref(),
        "--ring-size".as_ref(),
        "1".as_ref(),
    ]);
    health_checks(&rt, addr, 4);
    stop_capture(one, 4);
    stop_capture(rotating, 4);
    let ring_file = dir.join("ring_00001.pcapng.gz");
    for (path, tool) in [(&file, "zstd"), (&ring_file, "gzip")] {
        let test = Command::new(tool).arg("-t").arg(path).output().unwrap();
        assert!(
            test.status.success(),
            "{tool} -t {}: {test:?}",
            path.display()
        );
        let read = Command::new(BIN)
            .args([
                "read",
                "--calls",
                "--format",
                "jsonl",
                path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(read.status.success());
        let checks = jsonl(&String::from_utf8(read.stdout).unwrap())
            .iter()
            .filter(|e| e["event"] == "call" && e["grpc_status"] == 0)
            .count();
        assert_eq!(checks, 4, "{}", path.display());
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A TCP connection whose reading can be stopped: reads wait while paused, writes go on.
struct Pausable {
    inner: tokio::net::TcpStream,
    paused: std::sync::Arc<std::sync::Mutex<(bool, Option<std::task::Waker>)>>,
}

impl tokio::io::AsyncRead for Pausable {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        {
            let mut p = self.paused.lock().unwrap();
            if p.0 {
                p.1 = Some(cx.waker().clone());
                return std::task::Poll::Pending;
            }
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Pausable {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A client that stops reading, as a slow consumer does: its kernel's small receive buffer
/// fills with a tonic server's answers (150 kB, under the HTTP/2 windows the client gave) and
/// the kernel closes the TCP receive window until the client reads again, 500 ms later. The
/// connection's TCP figures must show the client's receive window closed once, for about
/// those 500 ms, and the server's never; and the call must be whole.
#[test]
fn live_capture_sees_a_client_that_stops_reading() {
    if !common::can_capture_on_lo() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = rt.block_on(common::serve(
        tonic::transport::Server::builder().add_service(common::echo::Echo),
    ));
    let filter = format!("tcp port {}", addr.port());
    let (child, stderr) = spawn_capture(&[
        "--format".as_ref(),
        "jsonl".as_ref(),
        "-f".as_ref(),
        filter.as_ref(),
    ]);
    // What it says of drops, kept for the end.
    let warnings = std::thread::spawn(move || {
        use std::io::Read;
        let mut text = String::new();
        let mut stderr = stderr;
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let paused = std::sync::Arc::new(std::sync::Mutex::new((false, None)));
    let answers = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let inner = socket.connect(addr).await.unwrap();
        let io = Pausable {
            inner,
            paused: paused.clone(),
        };
        let (client, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 22)
            .initial_connection_window_size(1 << 22)
            .handshake::<_, bytes::Bytes>(io)
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request = tonic::codegen::http::Request::post(format!(
            "http://{addr}/test.echo.Echo/ServerStream"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
        paused.lock().unwrap().0 = true;
        let (answer, mut body) = client.send_request(request, false).unwrap();
        let message = prost::Message::encode_to_vec(&common::echo::EchoRequest {
            text: "big".into(),
            payload: common::noise(7, 50_000),
            seq: 0,
        });
        let mut framed = vec![0];
        framed.extend((message.len() as u32).to_be_bytes());
        framed.extend(message);
        body.send_data(framed.into(), true).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let waker = {
            let mut p = paused.lock().unwrap();
            p.0 = false;
            p.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        let mut answer = answer.await.unwrap().into_body();
        let mut bytes = 0;
        while let Some(chunk) = answer.data().await {
            let chunk = chunk.unwrap();
            bytes += chunk.len();
            let _ = answer.flow_control().release_capacity(chunk.len());
        }
        bytes
    });
    // Three answers of the payload, each framed.
    assert!(answers > 150_000, "{answers}");
    let text = stop_capture_when(child, |text| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|e| e["event"] == "connection")
    });
    let warnings = warnings.join().unwrap();
    assert!(!warnings.contains("dropped"), "{warnings}");
    let events = jsonl(&text);
    let conn = events
        .iter()
        .find(|e| e["event"] == "connection")
        .unwrap_or_else(|| panic!("no connection event: {events:#?}"));
    let client = &conn["tcp_analysis"]["client"];
    assert_eq!(client["zero_windows"], 1, "{conn}");
    let closed = client["zero_window_s"].as_f64().unwrap();
    assert!((0.3..2.0).contains(&closed), "{conn}");
    assert_eq!(conn["tcp_analysis"]["server"]["zero_windows"], 0, "{conn}");
    let call = events.iter().find(|e| e["event"] == "call").unwrap();
    assert_eq!(call["grpc_status"], 0, "{call}");
    assert_eq!(call["response_messages"], 3, "{call}");
}
