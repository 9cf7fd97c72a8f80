//! Scenarios the gRPC stacks bring about on their own, each recorded and held to what the
//! peers did: gRPC C-core's keepalive policy sending a pinging client away, its graceful
//! shutdown, a stalled server keepalive finds, a request too large, a cancelled server stream,
//! rich error details, a slow reader waiting on flow control, calls waiting for a stream under
//! the server's limit, metadata larger than a frame; and a schema learned from
//! grpc-js's server reflection. The peers are those of `tests/grpc_stacks.rs`
//! (`common::peers`), which `scripts/install-deps` installs.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::peers::{
    assert_frames_are_tsharks, big_payload, echo, jsonl, saved, server_stream_echo, text,
    unary_echo, unary_echo_request, Peer, PeerServer,
};
use common::recorder::{Link, Recorder};
use serde_json::Value;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

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
        let channel = rec
            .channel_with(server.addr, |e| {
                e.http2_keep_alive_interval(Duration::from_millis(100))
                    .keep_alive_while_idle(true)
            })
            .await;
        let mut health = HealthClient::new(channel);
        let r = health.check(HealthCheckRequest::default()).await.unwrap();
        assert_eq!(r.into_inner().status, 1);
        // Idle, pinging: C-core strikes the second and third PING and sends the fourth's sender
        // away; a second is ample.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    });
    drop(server);
    let (dir, capture) = saved("keepalive", pcap);

    let reports: Vec<Value> = jsonl(&capture, &["health"])
        .into_iter()
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
    let text = text(&capture, &["health"]);
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
    let events = jsonl(&capture, &["read"]);
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
        let channel = rec.channel(addr).await;
        let slow = tokio::spawn(unary_echo(channel, echo("slow", 9, Vec::new())));
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.say("drain");
        answer = Some(slow.await.unwrap().map(|r| r.into_inner().text));
    });
    drop(server);
    assert_eq!(answer.unwrap().unwrap(), "echo slow");
    let (dir, capture) = saved("drain", pcap);

    let reports = jsonl(&capture, &["health"]);
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

    let calls: Vec<Value> = jsonl(&capture, &["read", "--calls"])
        .into_iter()
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
        let channel = rec
            .channel_with(addr, |e| {
                e.http2_keep_alive_interval(Duration::from_millis(100))
                    .keep_alive_timeout(Duration::from_millis(300))
                    .keep_alive_while_idle(true)
            })
            .await;
        let mut health = HealthClient::new(channel);
        let r = health.check(HealthCheckRequest::default()).await.unwrap();
        assert_eq!(r.into_inner().status, 1);
        signal("-STOP");
        tokio::time::sleep(Duration::from_millis(1000)).await;
    });
    // Woken once the recording is over: what it answers now is not in the capture.
    signal("-CONT");
    drop(server);
    let (dir, capture) = saved("stalled", pcap);

    let reports = jsonl(&capture, &["health"]);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    let client = &r["client_side"];
    assert!(client["pings"].as_u64().unwrap() >= 1, "{r}");
    assert!(client["unacked_pings"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["server_side"]["unacked_pings"], 0, "{r}");
    assert_eq!(r["calls"], 1, "{r}");
    let text = text(&capture, &["health"]);
    assert!(text.contains("never acknowledged (dead peer?)"), "{text}");
    // The client gave up 300 ms after its PING, as its keepalive timeout says.
    let after = client["closed_after_unacked_ping_s"].as_f64().unwrap();
    assert!((0.25..0.6).contains(&after), "{r}");
    assert!(
        r["server_side"]["closed_after_unacked_ping_s"].is_null(),
        "{r}"
    );
    assert!(text.contains("it closed the connection 0.3"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The other way round: a server's keepalive finds a client that does not answer. A tonic
/// server PINGs an idle connection after 100 ms and gives the PING 300 ms; the C-core client
/// (Python's grpcio) makes a call and idles, then is stopped (SIGSTOP). Idle, it does not read
/// its connection, so the PING goes unanswered even before the stop. The server sends GOAWAY
/// and closes first; the client's FIN follows once it is killed. `health` must show the server's
/// PING never acknowledged and the server closing the connection about 300 ms after it, and the
/// connection say the server closed first.
#[test]
fn a_tonic_servers_keepalive_finds_a_stalled_grpc_core_client() {
    use std::io::BufRead;
    if !Peer::Core.available() {
        return;
    }
    let rec = Recorder::new(Link::Ethernet, 1460, 26_000);
    let pcap = rec.run(async {
        let server = common::serve(
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_millis(100)))
                .http2_keepalive_timeout(Some(Duration::from_millis(300)))
                .add_service(common::echo::Echo),
        )
        .await;
        let proxy = rec
            .proxy(SocketAddr::from(([127, 0, 0, 1], 0)), server)
            .await;
        let mut client = Peer::Core
            .command()
            .args(["hold", &proxy.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = client.stdout.take().unwrap();
        // Blocking, on a thread of its own: the proxy it talks through runs on this runtime.
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .unwrap();
            line
        })
        .await
        .unwrap();
        assert_eq!(line.trim(), "ready");
        // A few PINGs answered, then none.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let pid = client.id().to_string();
        assert!(Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success());
        tokio::time::sleep(Duration::from_millis(1000)).await;
        client.kill().unwrap();
        client.wait().unwrap();
        // The proxy relays the client's FIN into the recording.
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let (dir, capture) = saved("stalled-client", pcap);

    let reports = jsonl(&capture, &["health"]);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    let server = &r["server_side"];
    assert!(server["unacked_pings"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(server["goaways"][0]["error"], "NO_ERROR", "{r}");
    assert_eq!(r["client_side"]["unacked_pings"], 0, "{r}");
    assert_eq!(r["calls"], 1, "{r}");
    let after = server["closed_after_unacked_ping_s"].as_f64().unwrap();
    assert!((0.25..0.6).contains(&after), "{r}");
    assert!(
        r["client_side"]["closed_after_unacked_ping_s"].is_null(),
        "{r}"
    );
    let text = text(&capture, &["health"]);
    assert!(text.contains("server PINGs:"), "{text}");
    assert!(text.contains("never acknowledged (dead peer?)"), "{text}");
    assert!(text.contains("it closed the connection 0."), "{text}");
    let events = jsonl(&capture, &["read"]);
    let conn = events.iter().find(|e| e["event"] == "connection").unwrap();
    assert_eq!(conn["end"], "fin", "{conn}");
    assert_eq!(conn["closed_first_by"], "server", "{conn}");
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
    let server = PeerServer::start_with_env(Peer::Core, &[("H2SCOPE_MAX_RECEIVE", "1024")]);
    let rec = Recorder::new(Link::Ethernet, 1460, 19_000);
    let mut got = None;
    let pcap = rec.run(async {
        let channel = rec.channel(server.addr).await;
        got = Some(unary_echo(channel, echo("big", 5, big_payload())).await);
    });
    drop(server);
    let status = got.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let (dir, capture) = saved("too-large", pcap);

    let events = jsonl(&capture, &["read"]);
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
    let stats = &jsonl(&capture, &["stats"])[0];
    assert_eq!(
        stats["total"]["outcomes"]["RESOURCE_EXHAUSTED"], 1,
        "{stats}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A client that cancels a server stream it has read enough of: tonic drops the stream after
/// five answers of C-core's endless one (an answer every 10 ms), which resets it (CANCEL)
/// while more answers are on their way: 100 ms each way between the capture and the server
/// make sure of some. The call ends reset by the client, without a status and not at a
/// deadline; the answers that crossed the reset carry no note, are decoded as the others and
/// are the call's; `health` counts the client's CANCEL.
#[test]
fn a_client_cancels_a_grpc_core_server_stream() {
    if !Peer::Core.available() {
        return;
    }
    let server = PeerServer::start(Peer::Core);
    let rec =
        Recorder::new(Link::Ethernet, 1460, 20_000).with_server_latency(Duration::from_millis(100));
    let pcap = rec.run(async {
        let channel = rec.channel(server.addr).await;
        let request = echo("endless", 1, Vec::new());
        let mut answers = server_stream_echo(channel.clone(), request).await;
        for seq in 0..5 {
            assert_eq!(answers.message().await.unwrap().unwrap().seq, seq);
        }
        drop(answers);
        // The server's answers sent before the reset reached it arrive meanwhile, on the
        // connection the channel keeps open.
        tokio::time::sleep(Duration::from_millis(400)).await;
        drop(channel);
    });
    drop(server);
    let (dir, capture) = saved("cancel", pcap);

    let events = jsonl(&capture, &["read"]);
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
    // Every answer on the wire, those after the reset too, is a message event of the call.
    let reset = events
        .iter()
        .position(|e| e["event"] == "frame" && e["type"] == "RST_STREAM")
        .unwrap();
    let answers = |from: usize| {
        events[from..]
            .iter()
            .filter(|e| e["event"] == "message" && e["dir"] == "response")
            .inspect(|m| assert_eq!(m["fields"][0]["string"], "echo endless", "{m}"))
            .count()
    };
    assert!(answers(reset) >= 3, "{events:#?}");
    assert_eq!(call["response_messages"], answers(0), "{call}");
    let health = &jsonl(&capture, &["health"])[0];
    assert_eq!(health["client_side"]["resets"]["CANCEL"], 1, "{health}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A deadline status crossing the client's reset, as on a network with some distance to the
/// server: a client asks C-core for an answer within 200 ms (`grpc-timeout`) and gives up
/// after 350 ms, resetting the stream (CANCEL); with 150 ms each way between the capture and
/// the server, C-core's DEADLINE_EXCEEDED left it before the reset arrived, and reaches the
/// capture after the reset. (The client is the `h2` crate's: tonic's gives up at the very
/// deadline it sends, which races the server's timer.) The status is the call's, not just its
/// frame's: the call ends reset by the client, with grpc-status 4 and not "reset at its
/// deadline", and `stats` counts it as DEADLINE_EXCEEDED.
#[test]
fn a_deadline_status_crossing_the_clients_reset_is_the_calls() {
    if !Peer::Core.available() {
        return;
    }
    let server = PeerServer::start(Peer::Core);
    let rec =
        Recorder::new(Link::Ethernet, 1460, 22_000).with_server_latency(Duration::from_millis(150));
    let pcap = rec.run(async {
        let proxy = rec
            .proxy(SocketAddr::from(([127, 0, 0, 1], 0)), server.addr)
            .await;
        let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request =
            tonic::codegen::http::Request::post(format!("http://{proxy}/test.echo.Echo/Unary"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("grpc-timeout", "200m")
                .body(())
                .unwrap();
        let (answer, mut body) = client.send_request(request, false).unwrap();
        let message = prost::Message::encode_to_vec(&echo("slow", 1, Vec::new()));
        let mut framed = vec![0];
        framed.extend((message.len() as u32).to_be_bytes());
        framed.extend(message);
        body.send_data(framed.into(), true).unwrap();
        let got = tokio::time::timeout(Duration::from_millis(350), answer).await;
        assert!(got.is_err(), "the client was to give up first: {got:?}");
        // Dropping the stream resets it; the server's status, on its way, arrives meanwhile.
        drop(body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    drop(server);
    let (dir, capture) = saved("crossing", pcap);

    let events = jsonl(&capture, &["read"]);
    assert_frames_are_tsharks(&capture, &events, None);
    for e in &events {
        assert!(e["notes"].as_array().is_none_or(Vec::is_empty), "{e}");
    }
    // On the wire, the client's reset came first.
    let frames: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "frame" && e["stream"] == 1)
        .collect();
    let position = |kind: &str| frames.iter().position(|f| f["type"] == kind);
    let (reset, status) = (
        position("RST_STREAM"),
        position("HEADERS").map(|_| frames.iter().rposition(|f| f["type"] == "HEADERS").unwrap()),
    );
    assert!(
        reset.is_some() && status.is_some() && reset < status,
        "{frames:#?}"
    );
    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "call").collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = calls[0];
    assert_eq!(call["end"], "reset", "{call}");
    assert_eq!(call["reset_by"], "client", "{call}");
    assert_eq!(call["error_code"], 8, "{call}");
    assert_eq!(call["grpc_status"], 4, "{call}");
    assert_eq!(call["grpc_status_name"], "DEADLINE_EXCEEDED", "{call}");
    assert_eq!(call["reset_at_deadline"], false, "{call}");
    assert_eq!(call["deadline"], 0.2, "{call}");
    // The call ended at the reset; its answer came after.
    assert!(
        call["response_start_ts"].as_f64().unwrap() > call["end_ts"].as_f64().unwrap(),
        "{call}"
    );
    let stats = &jsonl(&capture, &["stats"])[0];
    assert_eq!(
        stats["total"]["outcomes"]["DEADLINE_EXCEEDED"], 1,
        "{stats}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// What h2scope measures, held to a round trip known beforehand: 100 ms each way between the
/// recorder and a tonic server, a tonic client making three health checks and then PINGing
/// the idle connection (300 ms after the last answer). Seen where the client is, every call's
/// time to response and every PING's round trip is those 200 ms and a little (the peers' own
/// time), and `read`, `stats` and `health` must say so.
#[test]
fn timings_measure_a_known_round_trip() {
    let rec =
        Recorder::new(Link::Ethernet, 1460, 23_000).with_server_latency(Duration::from_millis(100));
    let pcap = rec.run(async {
        let (_reporter, health) = tonic_health::server::health_reporter();
        let server = common::serve(tonic::transport::Server::builder().add_service(health)).await;
        let channel = rec
            .channel_with(server, |e| {
                e.http2_keep_alive_interval(Duration::from_millis(300))
                    .keep_alive_while_idle(true)
            })
            .await;
        let mut client = HealthClient::new(channel);
        for _ in 0..3 {
            client.check(HealthCheckRequest::default()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    });
    let (dir, capture) = saved("round-trip", pcap);
    let around_200_ms = |s: f64| (0.2..0.4).contains(&s);

    let calls = jsonl(&capture, &["read", "--calls"]);
    let calls: Vec<&Value> = calls.iter().filter(|e| e["event"] == "call").collect();
    assert_eq!(calls.len(), 3, "{calls:#?}");
    for call in &calls {
        let ttr = call["time_to_response"].as_f64().unwrap();
        assert!(around_200_ms(ttr), "{call}");
        assert!(around_200_ms(call["duration"].as_f64().unwrap()), "{call}");
    }
    let stats = &jsonl(&capture, &["stats"])[0];
    let p50 = stats["total"]["time_to_response_ms"]["p50"]
        .as_f64()
        .unwrap();
    assert!(around_200_ms(p50 / 1000.0), "{stats}");
    let health = &jsonl(&capture, &["health"])[0];
    let rtt = &health["client_side"]["ping_rtt"];
    // A PING every 300 ms after the last answer, which takes 200 ms to come: the last one
    // still unanswered when the recording stops.
    assert!(rtt["count"].as_u64().unwrap() >= 1, "{health}");
    for key in ["min_ms", "max_ms"] {
        assert!(
            around_200_ms(rtt[key].as_f64().unwrap() / 1000.0),
            "{health}"
        );
    }
    // The TCP handshake took that round trip too, all of it between the capture and the
    // server: the capture was taken next to the client.
    let secs = |key: &str| health[key].as_f64().unwrap();
    assert!(around_200_ms(secs("initial_rtt")), "{health}");
    assert!(around_200_ms(secs("initial_rtt_to_server")), "{health}");
    assert!(secs("initial_rtt_to_client") < 0.01, "{health}");
    assert_eq!(health["capture_point"], "next to the client", "{health}");
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
        let channel = rec.channel(server.addr).await;
        got = Some(unary_echo(channel, echo("details", 1, Vec::new())).await);
    });
    drop(server);
    let status = got.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "bad field");
    let (dir, capture) = saved("details", pcap);
    let call: Value = jsonl(&capture, &["read", "--calls"])
        .into_iter()
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
        let r = unary_echo(channel, echo("hello", 1, vec![1, 2, 3])).await;
        assert_eq!(r.unwrap().into_inner().text, "echo hello");
    });
    drop(server);
    let (dir, capture) = saved("reflection", pcap);
    let events = jsonl(&capture, &["read"]);
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

/// Flow control on a long path: 50 ms each way between the recorder and C-core, and a tonic
/// client with 64 KiB windows reading eight answers of 64 KiB as fast as they come. The server
/// can have only a window's worth in flight per round trip, so it waits about a round trip
/// for each WINDOW_UPDATE. Seen near the client, the server's window is hardly ever at zero
/// (the client's update follows the DATA that used it up): the wait shows as the time from
/// each update to the server's next DATA. `health` must time that at several round trips,
/// most of the call, and the client never waiting.
#[test]
fn small_windows_on_a_long_path_keep_a_grpc_core_server_waiting() {
    if !Peer::Core.available() {
        return;
    }
    let server = PeerServer::start(Peer::Core);
    let rec =
        Recorder::new(Link::Ethernet, 1460, 26_000).with_server_latency(Duration::from_millis(50));
    let pcap = rec.run(async {
        let channel = rec
            .channel_with(server.addr, |e| {
                e.initial_stream_window_size(65_535)
                    .initial_connection_window_size(65_535)
            })
            .await;
        let mut answers = server_stream_echo(channel, echo("large", 1, Vec::new())).await;
        let mut seen = 0;
        while let Some(m) = answers.message().await.unwrap() {
            assert_eq!(m.payload.len(), 65_536);
            seen += 1;
        }
        assert_eq!(seen, 8);
    });
    drop(server);
    let (dir, capture) = saved("long-path", pcap);
    let r = &jsonl(&capture, &["health"])[0];
    let server_side = &r["server_side"];
    let ms = |key: &str| server_side[key].as_f64().unwrap();
    let waited = ms("blocked_on_window_ms") + ms("waited_after_window_update_ms");
    assert!(ms("blocked_on_window_ms") < 100.0, "{r}");
    let call = jsonl(&capture, &["read", "--calls"])
        .into_iter()
        .find(|e| e["event"] == "call")
        .unwrap();
    let duration_ms = call["duration"].as_f64().unwrap() * 1000.0;
    // Eight windows, one a round trip of 100 ms: at least five round trips waited, and most
    // of the call.
    assert!(waited >= 500.0, "{waited} ms of {duration_ms}: {r}");
    assert!(
        waited <= duration_ms && waited > duration_ms * 0.6,
        "{waited} ms of {duration_ms}: {r}"
    );
    assert_eq!(r["client_side"]["blocked_on_window_ms"], 0.0, "{r}");
    let text = text(&capture, &["health"]);
    assert!(text.contains("its DATA resumed"), "{text}");
    // The handshake shows the capture next to the client, the receiver: the text says which
    // of the two figures is the server's wait.
    assert_eq!(r["capture_point"], "next to the client", "{r}");
    assert!(
        text.contains("captured next to the client, its receiver: the time after the updates"),
        "{text}"
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
        let channel = rec
            .channel_with(addr, |e| {
                e.initial_stream_window_size(65_535)
                    .initial_connection_window_size(65_535)
            })
            .await;
        let mut answers = server_stream_echo(channel, echo("large", 1, Vec::new())).await;
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
    let (dir, capture) = saved("slow-reader", pcap);
    let r = &jsonl(&capture, &["health"])[0];
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
    let text = text(&capture, &["health"]);
    assert!(text.contains("server blocked on flow control"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The server's stream limit at work: C-core allows two calls at once on a connection
/// (SETTINGS_MAX_CONCURRENT_STREAMS 2); a tonic client starts six of 200 ms together, and its
/// HTTP/2 stack holds back the rest until a stream ends. On the wire every call takes 200 ms,
/// while the client waited up to three times that. `health` must say that the client kept two
/// streams open, the server's limit, for about the 600 ms the calls queued, with none refused.
#[test]
fn calls_wait_for_a_stream_under_a_grpc_core_servers_limit() {
    if !Peer::Core.available() {
        return;
    }
    let server = PeerServer::start_with_env(Peer::Core, &[("H2SCOPE_MAX_STREAMS", "2")]);
    let rec = Recorder::new(Link::Ethernet, 1460, 24_000);
    let mut waited = Vec::new();
    let pcap = rec.run(async {
        let channel = rec.channel(server.addr).await;
        // The first call is alone: the server's SETTINGS have come before the six start.
        unary_echo(channel.clone(), echo("hello", 0, Vec::new()))
            .await
            .unwrap();
        let calls: Vec<_> = (1..=6)
            .map(|seq| {
                let channel = channel.clone();
                tokio::spawn(async move {
                    let start = std::time::Instant::now();
                    unary_echo(channel, echo("nap", seq, Vec::new()))
                        .await
                        .unwrap();
                    start.elapsed()
                })
            })
            .collect();
        for c in calls {
            waited.push(c.await.unwrap());
        }
    });
    drop(server);
    // The client's view: the last calls waited for a stream.
    let longest = waited.iter().max().unwrap();
    assert!(*longest > Duration::from_millis(500), "{waited:?}");
    let (dir, capture) = saved("stream-limit", pcap);

    let events = jsonl(&capture, &["read"]);
    assert_frames_are_tsharks(&capture, &events, None);
    assert_eq!(events.last().unwrap()["errors"], 0);
    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "call").collect();
    assert_eq!(calls.len(), 7, "{calls:?}");
    for call in &calls[1..] {
        assert_eq!(call["grpc_status"], 0, "{call}");
        // The wire's view: a nap each, never the wait before the stream opened.
        let d = call["duration"].as_f64().unwrap();
        assert!((0.19..0.45).contains(&d), "{call}");
        // C-core answers once the handler returns: the response begins after the nap, once
        // the request was whole.
        let answer = call["time_to_response"].as_f64().unwrap();
        assert!((0.19..=d).contains(&answer), "{call}");
        assert!(
            call["request_end_ts"].as_f64() <= call["response_start_ts"].as_f64(),
            "{call}"
        );
    }
    let r = &jsonl(&capture, &["health"])[0];
    assert_eq!(r["max_concurrent_streams"], 2, "{r}");
    assert_eq!(r["peak_open_streams"], 2, "{r}");
    assert_eq!(r["refused_streams"], 0, "{r}");
    let at_limit = r["at_stream_limit_s"].as_f64().unwrap();
    assert!((0.5..1.5).contains(&at_limit), "{r}");
    let text = text(&capture, &["health"]);
    assert!(
        text.contains("up to 2 open at once, the server allows 2; at that limit for 0."),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Metadata larger than a frame, each way: tonic sends 40,000 bytes of request metadata, which
/// its HTTP/2 stack splits into HEADERS and CONTINUATION frames unless C-core's SETTINGS (4 MiB
/// frames) came first; C-core (taking header lists of up to 1 MiB) sends them back as a
/// trailer, split by its own stack into the client's 16 KiB frames. The call must carry both
/// header blocks whole, byte for byte what the client sent and got, the CONTINUATION frames be
/// tshark's, and nothing be noted.
#[test]
fn metadata_larger_than_a_frame_from_tonic_and_grpc_core() {
    if !Peer::Core.available() {
        return;
    }
    let server = PeerServer::start_with_env(Peer::Core, &[("H2SCOPE_MAX_METADATA", "1048576")]);
    let rec = Recorder::new(Link::Ethernet, 1460, 25_000);
    // Letters and digits in no repeating run: HPACK's Huffman code shortens it by a fifth at
    // most, leaving well over two frames' worth.
    let big: String = (0..40_000u32)
        .map(|i| {
            let c = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                [(i * 7 + i / 62) as usize % 62];
            c as char
        })
        .collect();
    let mut got = None;
    let pcap = rec.run(async {
        let channel = rec
            .channel_with(server.addr, |e| e.http2_max_header_list_size(1 << 20))
            .await;
        let mut req = tonic::Request::new(echo("mirror", 1, Vec::new()));
        req.metadata_mut().insert("big-md", big.parse().unwrap());
        got = Some(unary_echo_request(channel, req).await.unwrap());
    });
    drop(server);
    let got = got.unwrap();
    let echoed = got.metadata().get("big-md-echo").unwrap().to_str().unwrap();
    assert_eq!(echoed, big);
    let (dir, capture) = saved("big-metadata", pcap);

    let events = jsonl(&capture, &["read"]);
    assert_frames_are_tsharks(&capture, &events, None);
    for e in &events {
        assert!(e["notes"].as_array().is_none_or(Vec::is_empty), "{e}");
    }
    assert_eq!(events.last().unwrap()["errors"], 0);
    // The request's HEADERS come first on stream 1, from the client.
    let client = &events
        .iter()
        .find(|e| e["type"] == "HEADERS" && e["stream"] == 1)
        .unwrap()["src"];
    let continuations = |from_client: bool| {
        events
            .iter()
            .filter(|e| e["type"] == "CONTINUATION" && (e["src"] == *client) == from_client)
            .count()
    };
    // tonic splits its block into 16 KiB frames until C-core's SETTINGS (frames up to 4 MiB)
    // reach it, which races the request: split or whole, the block must be read the same.
    let client_headers = events
        .iter()
        .find(|e| e["type"] == "HEADERS" && e["src"] == *client)
        .unwrap();
    let split = client_headers["flags"].as_u64().unwrap() & 0x4 == 0;
    assert_eq!(continuations(true) >= 1, split, "{client_headers}");
    assert!(continuations(false) >= 1, "no CONTINUATION from the server");
    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "call").collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = calls[0];
    let header = |list: &str, name: &str| {
        call[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .and_then(|h| h[1].as_str())
            .map(str::to_string)
    };
    assert_eq!(
        header("request_headers", "big-md").as_deref(),
        Some(big.as_str())
    );
    assert_eq!(
        header("trailers", "big-md-echo").as_deref(),
        Some(big.as_str())
    );
    assert_eq!(call["grpc_status"], 0, "{call}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Streams opened before a distant server's limit reaches the client: C-core allows two
/// streams (`MAX_CONCURRENT_STREAMS` 2), 150 ms away; tonic's client does not wait for the
/// server's SETTINGS and starts six calls at once on the new connection. They are not over the
/// limit, which the client does not have yet (C-core, whose SETTINGS are not acknowledged
/// either, takes all six), and every call succeeds. `health` must show six open at once where
/// the server allows two, say why, and count none opened over the limit or refused.
#[test]
fn streams_opened_before_a_distant_servers_limit_arrives() {
    if !Peer::Core.available() {
        return;
    }
    let server = PeerServer::start_with_env(Peer::Core, &[("H2SCOPE_MAX_STREAMS", "2")]);
    let rec =
        Recorder::new(Link::Ethernet, 1460, 25_000).with_server_latency(Duration::from_millis(150));
    let mut got = Vec::new();
    let pcap = rec.run(async {
        let channel = rec.channel(server.addr).await;
        let calls: Vec<_> = (1..=6)
            .map(|seq| tokio::spawn(unary_echo(channel.clone(), echo("nap", seq, Vec::new()))))
            .collect();
        for c in calls {
            got.push(c.await.unwrap().map(|_| ()));
        }
    });
    drop(server);
    assert!(got.iter().all(Result::is_ok), "{got:?}");
    let (dir, capture) = saved("early-streams", pcap);

    let events = jsonl(&capture, &["read"]);
    assert_frames_are_tsharks(&capture, &events, None);
    for e in &events {
        assert!(e["notes"].as_array().is_none_or(Vec::is_empty), "{e}");
    }
    let calls = events.iter().filter(|e| e["event"] == "call");
    assert_eq!(calls.filter(|c| c["grpc_status"] == 0).count(), 6);
    let r = &jsonl(&capture, &["health"])[0];
    assert_eq!(r["max_concurrent_streams"], 2, "{r}");
    assert_eq!(r["peak_open_streams"], 6, "{r}");
    assert_eq!(r["streams_opened_over_limit"], 0, "{r}");
    assert_eq!(r["refused_streams"], 0, "{r}");
    let text = text(&capture, &["health"]);
    assert!(
        text.contains("up to 6 open at once, the server allows 2 (the rest opened before the client had the server's SETTINGS)"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Calls crossing a server's GOAWAY, as a rolling restart brings about: a grpc-js server,
/// told to drain while a slow call runs, sends one GOAWAY naming the last stream it took
/// (nghttp2 then ignores streams above it), while a tonic client 100 ms away goes on calling
/// every 20 ms. The calls it sent before the GOAWAY reached it, on streams above that last
/// one, were never processed: each must end "refused" (not "unfinished"), with no answer;
/// every call at or below the last stream must end complete, as many as the client had
/// answers; `health` must list the refused streams under the GOAWAY and `stats` count them.
/// The same from both ends of the long path: next to the client, the refused requests come
/// before the GOAWAY; next to the server, after it.
fn calls_crossing_a_servers_goaway(near_server: bool, isn_base: u32) {
    if !Peer::Js.available() {
        return;
    }
    let mut server = PeerServer::start(Peer::Js);
    let addr = server.addr;
    let latency = Duration::from_millis(100);
    let rec = Recorder::new(Link::Ethernet, 1460, isn_base);
    let rec = if near_server {
        rec.with_client_latency(latency)
    } else {
        rec.with_server_latency(latency)
    };
    let mut answered = 0;
    let pcap = rec.run(async {
        let channel = rec.channel(addr).await;
        let slow = tokio::spawn(unary_echo(channel.clone(), echo("slow", 0, Vec::new())));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut calls = Vec::new();
        for i in 1..=30 {
            if i == 6 {
                server.say("drain");
            }
            let call = unary_echo(channel.clone(), echo("quick", i, Vec::new()));
            calls.push(tokio::spawn(call));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for call in calls {
            answered += usize::from(call.await.unwrap().is_ok());
        }
        assert!(slow.await.unwrap().is_ok());
        answered += 1;
    });
    drop(server);
    let name = if near_server {
        "goaway-near-server"
    } else {
        "goaway-near-client"
    };
    let (dir, capture) = saved(name, pcap);

    let events = jsonl(&capture, &["read"]);
    // grpc-js sends its GOAWAY again as it closes the connection. (The client may send one
    // of its own as it closes, naming no stream of the server's: the server's are these.)
    let server = events
        .iter()
        .find(|e| e["event"] == "call")
        .map(|c| c["server"].clone())
        .unwrap();
    let goaways: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "frame" && e["type"] == "GOAWAY" && e["src"] == server)
        .map(|e| e["last_stream_id"].as_u64().unwrap())
        .collect();
    assert!(
        !goaways.is_empty() && goaways.iter().all(|&l| l == goaways[0]),
        "{goaways:?}"
    );
    let last = goaways[0];
    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "call").collect();
    let mut refused = Vec::new();
    let mut complete = 0;
    for c in &calls {
        let stream = c["stream"].as_u64().unwrap();
        if stream > last {
            assert_eq!(c["end"], "refused", "{c}");
            assert_eq!(c["goaway_last_stream_id"], last, "{c}");
            assert!(c["status"].is_null() && c["grpc_status"].is_null(), "{c}");
            assert_eq!(c["response_bytes"], 0, "{c}");
            assert_eq!(c["request_messages"], 1, "{c}");
            refused.push(stream);
        } else {
            assert_eq!(c["end"], "complete", "{c}");
            assert_eq!(c["grpc_status"], 0, "{c}");
            complete += 1;
        }
    }
    assert_eq!(complete, answered, "{calls:#?}");
    assert!(!refused.is_empty(), "{calls:#?}");
    refused.sort_unstable();
    for e in &events {
        assert!(e["notes"].as_array().is_none_or(Vec::is_empty), "{e}");
    }

    let health = &jsonl(&capture, &["health"])[0];
    let g = &health["server_side"]["goaways"][0];
    assert_eq!(g["refused_streams"], serde_json::json!(refused), "{health}");
    // The TCP handshake tells which end of the long path the capture was taken at.
    let point = if near_server { "server" } else { "client" };
    assert_eq!(
        health["capture_point"],
        format!("next to the {point}"),
        "{health}"
    );
    let stats = text(&capture, &["stats"]);
    assert!(
        stats.contains(&format!("REFUSED×{}", refused.len())),
        "{stats}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn calls_crossing_a_servers_goaway_seen_near_the_client() {
    calls_crossing_a_servers_goaway(false, 27_000);
}

#[test]
fn calls_crossing_a_servers_goaway_seen_near_the_server() {
    calls_crossing_a_servers_goaway(true, 28_000);
}
