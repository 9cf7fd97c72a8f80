//! The command line as users and scripts meet it: the JSON Lines schema documented in the README,
//! text output, stdin, and error messages.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_h2scope");

fn testdata(name: &str) -> String {
    format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// What a run that must succeed writes on standard output.
fn stdout(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn jsonl(args: &[&str]) -> Vec<Value> {
    stdout(args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn has(v: &Value, key: &str, check: fn(&Value) -> bool) {
    let got = v.get(key).unwrap_or_else(|| panic!("no {key:?} in {v}"));
    assert!(check(got), "{key:?} has the wrong type in {v}");
}

#[test]
fn jsonl_schema_of_frames_calls_and_summary() {
    let events = jsonl(&["read", "--format", "jsonl", &testdata("grpc-health.pcap")]);
    assert!(events.iter().all(|e| e["event"].is_string()));
    let frames: Vec<&Value> = events.iter().filter(|e| e["event"] == "frame").collect();
    assert_eq!(frames.len(), 169);
    for f in &frames {
        has(f, "packet", |v| v.as_u64().is_some_and(|n| n >= 1));
        has(f, "ts", Value::is_f64);
        has(f, "conn", Value::is_u64);
        has(f, "src", |v| v.as_str().is_some_and(|s| s.contains(':')));
        has(f, "dst", |v| v.as_str().is_some_and(|s| s.contains(':')));
        has(f, "stream", Value::is_u64);
        has(f, "type", Value::is_string);
        has(f, "type_code", Value::is_u64);
        has(f, "flags", Value::is_u64);
        has(f, "length", Value::is_u64);
        match f["type"].as_str().unwrap() {
            "HEADERS" => has(f, "headers", |v| {
                v.as_array().is_some_and(|a| {
                    a.iter().all(|p| {
                        p.as_array()
                            .is_some_and(|p| p.len() == 2 && p[0].is_string())
                    })
                })
            }),
            "SETTINGS" => {
                has(f, "ack", Value::is_boolean);
                has(f, "settings", Value::is_array);
            }
            "WINDOW_UPDATE" => has(f, "increment", Value::is_u64),
            "RST_STREAM" => has(f, "error_code", Value::is_u64),
            "GOAWAY" => {
                has(f, "error_code", Value::is_u64);
                has(f, "last_stream_id", Value::is_u64);
                has(f, "debug_data", Value::is_string);
            }
            _ => {}
        }
    }
    // Packet numbers never go backwards and the first frame's packet is a real record number.
    let packets: Vec<u64> = frames
        .iter()
        .map(|f| f["packet"].as_u64().unwrap())
        .collect();
    assert!(packets.windows(2).all(|w| w[0] <= w[1]));

    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "call").collect();
    assert_eq!(calls.len(), 27);
    for c in &calls {
        for key in [
            "conn",
            "stream",
            "method",
            "path",
            "authority",
            "status",
            "grpc_status",
            "grpc_message",
            "start_ts",
            "end_ts",
            "request_bytes",
            "response_bytes",
        ] {
            assert!(c.get(key).is_some(), "call without {key}: {c}");
        }
    }
    let not_found: Vec<_> = calls.iter().filter(|c| c["grpc_status"] == 5).collect();
    assert_eq!(not_found.len(), 1);
    assert_eq!(not_found[0]["grpc_message"], "service not registered");
    assert_eq!(not_found[0]["path"], "/grpc.health.v1.Health/Check");
    assert_eq!(not_found[0]["method"], "POST");
    assert_eq!(not_found[0]["status"], 200);

    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["calls"], 27);
    assert_eq!(summary["frames"], 169);
    assert_eq!(summary["http2_connections"], 1);
}

#[test]
fn calls_only() {
    let events = jsonl(&[
        "read",
        "--format",
        "jsonl",
        "--calls",
        "--no-summary",
        &testdata("grpc-health.pcap"),
    ]);
    assert_eq!(events.len(), 27);
    assert!(events.iter().all(|e| e["event"] == "call"));
}

/// `-T grpcurl` on every shipped and public capture: one comment per gRPC call, in the order
/// the JSON Lines give the calls, each followed by a grpcurl command to the call's server and
/// method or by the reason there is none.
#[test]
fn grpcurl_commands_for_every_grpc_call() {
    let dir = public("");
    let mut files: Vec<(String, Vec<String>)> = ["grpc-health.pcap", "grpc-bulk.pcap"]
        .iter()
        .map(|f| (testdata(f), Vec::new()))
        .collect();
    files.push((
        testdata("grpc-tls.pcap"),
        vec!["--tls-keylog".into(), testdata("grpc-tls.keylog")],
    ));
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".pcap") && !name.ends_with(".pcapng") {
            continue;
        }
        let stem = name.trim_end_matches(".pcapng").trim_end_matches(".pcap");
        let keylog = ["keylog", "keylog.txt"]
            .iter()
            .map(|x| format!("{dir}{stem}.{x}"))
            .find(|k| std::path::Path::new(k).exists());
        let args = keylog.map(|k| vec!["--tls-keylog".into(), k]);
        files.push((format!("{dir}{name}"), args.unwrap_or_default()));
    }
    let mut commands = 0;
    let mut over_tls = 0;
    for (file, extra) in &files {
        let mut args: Vec<&str> = vec!["read", "-T", "jsonl", "--calls", "--no-summary"];
        args.extend(extra.iter().map(String::as_str));
        args.push(file);
        let calls: Vec<Value> = jsonl(&args)
            .into_iter()
            .filter(|c| c["event"] == "call" && c["grpc"] == true && c["pushed"] == false)
            .collect();
        let mut args: Vec<&str> = vec!["read", "-T", "grpcurl"];
        args.extend(extra.iter().map(String::as_str));
        args.push(file);
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success(), "{file}");
        let script = String::from_utf8(out.stdout).unwrap();
        let mut lines = script.lines().peekable();
        for call in &calls {
            let head = lines.next().unwrap_or_else(|| panic!("{file}: ends early"));
            let path = call["path"].as_str().unwrap_or("(no :path)");
            let want = format!("# call {}:{} {path} at ", call["conn"], call["stream"]);
            assert!(head.starts_with(&want), "{file}: {head:?}, want {want:?}");
            let mut told = false;
            while let Some(l) = lines.next_if(|l| l.starts_with("#   ")) {
                told |= l.starts_with("#   no command: ");
            }
            if told {
                continue;
            }
            let line = lines.next().unwrap_or_else(|| panic!("{file}: no command"));
            let command = line.strip_suffix(" <<'H2SCOPE_EOF'").unwrap_or(line);
            let words = common::sh_words(command);
            assert_eq!(words[0], "grpcurl", "{file}: {line}");
            let n = words.len();
            assert_eq!(words[n - 1], path.trim_start_matches('/'), "{file}: {line}");
            assert_eq!(
                words[n - 2],
                call["server"].as_str().unwrap(),
                "{file}: {line}"
            );
            assert_eq!(
                words.contains(&"-plaintext".to_string()),
                call["tls"] == false,
                "{file}: {line}"
            );
            over_tls += usize::from(call["tls"] == true);
            if words.contains(&"@".to_string()) {
                while lines.next().is_some_and(|l| l != "H2SCOPE_EOF") {}
            }
            commands += 1;
        }
        assert_eq!(lines.next(), None, "{file}: more than the calls");
    }
    // The health checks (bundled schema) and the TLS captures' calls get commands.
    assert!(commands >= 27 && over_tls > 0, "{commands} {over_tls}");
}

#[test]
fn stdin_gives_the_same_as_the_file() {
    let file = testdata("grpc-health.pcap");
    let by_file = Command::new(BIN)
        .args(["read", "--format", "jsonl", "--no-summary", &file])
        .output()
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["read", "--format", "jsonl", "--no-summary", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A few bytes at a time, as a pipe from tcpdump delivers them.
    for chunk in bytes.chunks(7) {
        stdin.write_all(chunk).unwrap();
    }
    drop(stdin);
    let by_stdin = child.wait_with_output().unwrap();
    assert!(by_stdin.status.success());
    assert_eq!(by_file.stdout, by_stdin.stdout);
}

#[test]
fn text_output_shows_frames_calls_and_summary() {
    let out = Command::new(BIN)
        .args(["read", &testdata("grpc-health.pcap")])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("HEADERS[END_HEADERS]"));
    assert!(text.contains("POST /grpc.health.v1.Health/Check"));
    assert!(text.contains("grpc-status=5(NOT_FOUND)"));
    assert!(text.contains("RST_STREAM len=4 CANCEL"));
    assert!(text.contains("HTTP/2 frames: 169"));
    let calls = Command::new(BIN)
        .args([
            "read",
            "--calls",
            "--no-summary",
            &testdata("grpc-health.pcap"),
        ])
        .output()
        .unwrap();
    let calls = String::from_utf8(calls.stdout).unwrap();
    assert_eq!(calls.lines().count(), 27);
}

#[test]
fn errors_name_the_file_and_what_is_wrong() {
    // Exit status 1, and standard error says every one of `says`.
    let fails = |args: &[&str], says: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(says.iter().all(|s| err.contains(s)), "{args:?}: {err}");
    };
    fails(
        &["read", "/nonexistent/x.pcap"],
        &["/nonexistent/x.pcap", "cannot open"],
    );

    let dir = std::env::temp_dir().join(format!("h2scope-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bogus = dir.join("notes.txt");
    std::fs::write(&bogus, "hello, this is not a capture file\n").unwrap();
    let bogus = bogus.to_str().unwrap();
    fails(&["read", bogus], &["notes.txt", "not a pcap or pcapng"]);
    // The TUI reads the capture before it takes the terminal, so a bad file is a plain error.
    fails(&["tui", bogus], &["notes.txt", "not a pcap or pcapng"]);

    // A capture cut in the middle of a record: everything before it is shown, with a warning.
    let bytes = std::fs::read(testdata("grpc-health.pcap")).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let out = Command::new(BIN)
        .args(["read", cut.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("truncated capture"), "{text}");
    assert!(text.contains("calls: 27"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_lost_segment_is_a_gap_event_and_decoding_goes_on() {
    let bytes = std::fs::read(testdata("grpc-health.pcap")).unwrap();
    let dir = std::env::temp_dir().join(format!("h2scope-gap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gap.pcap");
    // Record 40 carries client bytes in the middle of the conversation.
    std::fs::write(&path, common::pcap_without(&bytes, |n| n == 40)).unwrap();
    let events = jsonl(&["read", "--format", "jsonl", path.to_str().unwrap()]);
    let gaps: Vec<&Value> = events.iter().filter(|e| e["event"] == "gap").collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let g = gaps[0];
    for key in ["packet", "ts", "conn", "src", "dst"] {
        assert!(g.get(key).is_some(), "gap without {key}");
    }
    assert!(g["bytes"].as_u64().unwrap() > 0);
    let errors: Vec<&Value> = events.iter().filter(|e| e["event"] == "error").collect();
    assert!(!errors.is_empty());
    for e in &errors {
        assert!(e["kind"].is_string() && e["message"].is_string(), "{e}");
    }
    // The other direction is still decoded after the gap.
    let gap_packet = g["packet"].as_u64().unwrap();
    let other_side = g["dst"].as_str().unwrap();
    assert!(events.iter().any(|e| e["event"] == "frame"
        && e["src"] == other_side
        && e["packet"].as_u64().unwrap() > gap_packet));
    std::fs::remove_dir_all(&dir).ok();
}

fn public(p: &str) -> String {
    format!(
        "{}/../shared/captures/public/{p}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn message_events_in_jsonl() {
    let events = jsonl(&["read", "--format", "jsonl", &testdata("grpc-health.pcap")]);
    let messages: Vec<&Value> = events.iter().filter(|e| e["event"] == "message").collect();
    assert_eq!(messages.len(), 2 * 25 + 1 + 3);
    for m in &messages {
        for key in [
            "packet",
            "ts",
            "conn",
            "src",
            "dst",
            "stream",
            "path",
            "dir",
            "index",
            "compressed",
            "encoding",
            "length",
            "type",
            "json",
            "fields",
        ] {
            assert!(m.get(key).is_some(), "message without {key}: {m}");
        }
        assert!(m["dir"] == "request" || m["dir"] == "response");
        assert!(m["type"].as_str().unwrap().starts_with("grpc.health.v1."));
    }
    let watch: Vec<&&Value> = messages
        .iter()
        .filter(|m| m["path"] == "/grpc.health.v1.Health/Watch" && m["dir"] == "response")
        .collect();
    assert_eq!(watch[1]["index"], 1);
    assert_eq!(watch[1]["json"]["status"], "NOT_SERVING");
    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "call").collect();
    assert!(calls
        .iter()
        .all(|c| c["grpc"] == true && c["request_messages"] == 1));
    assert_eq!(events.last().unwrap()["messages"], 54);
}

#[test]
fn schemas_from_proto_dirs_and_descriptor_sets() {
    let capture = public("packt_client_streaming.pcapng");
    let typed = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["read", "--format", "jsonl"];
        args.extend_from_slice(extra);
        args.push(&capture);
        jsonl(&args)
            .into_iter()
            .filter(|e| e["event"] == "message")
            .map(|e| e["type"].as_str().unwrap_or("-").to_string())
            .collect()
    };
    assert!(typed(&[]).iter().all(|t| t == "-"));
    let dir = public("protos/grpc-go-course");
    let by_dir = typed(&["--proto", &dir]);
    assert_eq!(
        by_dir,
        [
            "greet.GreetRequest",
            "greet.GreetRequest",
            "greet.GreetRequest",
            "greet.GreetResponse"
        ]
    );
    // The same schema as a binary FileDescriptorSet, as `protoc -o` writes it.
    let tmp = std::env::temp_dir().join(format!("h2scope-fds-{}.bin", std::process::id()));
    let mut c = protox::Compiler::new([&dir]).unwrap();
    c.open_files(["greet.proto"]).unwrap();
    std::fs::write(&tmp, c.encode_file_descriptor_set()).unwrap();
    assert_eq!(typed(&["--descriptor-set", tmp.to_str().unwrap()]), by_dir);
    // -T grpcurl gives each call the flags of the schema that defines its service: the
    // descriptor set's, or the .proto files' when both define it (grpcurl takes one kind).
    let commands = |extra: &[&str]| -> Vec<String> {
        let args = [&["read", "-T", "grpcurl"][..], extra, &[&capture]].concat();
        let script = stdout(&args);
        let lines: Vec<String> = (script.lines())
            .filter(|l| l.starts_with("grpcurl "))
            .map(String::from)
            .collect();
        assert!(!lines.is_empty(), "{script}");
        lines
    };
    let set = tmp.to_str().unwrap();
    let protoset = format!(" -protoset {set} ");
    assert!(commands(&["--descriptor-set", set])
        .iter()
        .all(|c| c.contains(&protoset) && !c.contains("-proto ")));
    let both = commands(&["--descriptor-set", set, "--proto", &dir]);
    assert!(both
        .iter()
        .all(|c| c.contains(" -proto greet.proto ") && !c.contains("-protoset")));
    std::fs::remove_file(&tmp).ok();
}

#[test]
fn proto_errors_say_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("h2scope-proto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.proto");
    std::fs::write(
        &bad,
        "syntax = \"proto3\";\nmessage A {\n  string name = 1\n}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "read",
            "--proto",
            bad.to_str().unwrap(),
            &testdata("grpc-health.pcap"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.proto:4:1:"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `read -w` writes the packets of the selected traffic; the written file dissects to exactly
/// the calls of the selected connections.
#[test]
fn read_w_writes_the_selected_connections() {
    let source = public("t5g_free5gc.pcap");
    let all = jsonl(&[
        "read",
        "--format",
        "jsonl",
        "--calls",
        "--no-summary",
        &source,
    ]);
    let path = "/nausf-auth/v1/ue-authentications";
    let conns: std::collections::BTreeSet<u64> = all
        .iter()
        .filter(|c| c["path"] == path)
        .map(|c| c["conn"].as_u64().unwrap())
        .collect();
    assert!(!conns.is_empty());
    let expected: Vec<String> = all
        .iter()
        .filter(|c| conns.contains(&c["conn"].as_u64().unwrap()))
        .map(|c| c["path"].as_str().unwrap().to_string())
        .collect();

    let dir = std::env::temp_dir().join(format!("h2scope-w-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("selected.pcapng");
    let o = Command::new(BIN)
        .args(["read", &source, "-w", out.to_str().unwrap(), "--path", path])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty(), "-w without -P prints nothing");
    let written = jsonl(&[
        "read",
        "--format",
        "jsonl",
        "--calls",
        "--no-summary",
        out.to_str().unwrap(),
    ]);
    let mut got: Vec<String> = written
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_string())
        .collect();
    let mut want = expected.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);

    // --conn and --port select the same way; classic pcap with --pcap.
    let conn = conns.iter().next().unwrap().to_string();
    let out2 = dir.join("conn.pcap");
    let o = Command::new(BIN)
        .args([
            "read",
            &source,
            "-w",
            out2.to_str().unwrap(),
            "--pcap",
            "--conn",
            &conn,
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let one = jsonl(&[
        "read",
        "--format",
        "jsonl",
        "--calls",
        "--no-summary",
        out2.to_str().unwrap(),
    ]);
    assert!(one.iter().any(|c| c["path"] == path));
    assert!(std::fs::read(&out2)
        .unwrap()
        .starts_with(&[0x4d, 0x3c, 0xb2, 0xa1]));
    let out3 = dir.join("port.pcapng");
    let o = Command::new(BIN)
        .args([
            "read",
            &source,
            "-w",
            out3.to_str().unwrap(),
            "--port",
            "29509",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let by_port = jsonl(&[
        "read",
        "--format",
        "jsonl",
        "--calls",
        "--no-summary",
        out3.to_str().unwrap(),
    ]);
    assert!(!by_port.is_empty());
    assert!(by_port
        .iter()
        .all(|c| c["server"].as_str().unwrap().ends_with(":29509")));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn health_and_stats_commands() {
    let h = jsonl(&["health", "--format", "jsonl", &testdata("grpc-health.pcap")]);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["event"], "connection_health");
    assert_eq!(h[0]["calls"], 27);
    assert_eq!(h[0]["end"], "fin");
    assert_eq!(h[0]["client_side"]["resets"]["CANCEL"], 1);
    assert_eq!(h[0]["server_side"]["goaways"][0]["error"], "NO_ERROR");
    let s = jsonl(&["stats", "--format", "jsonl", &testdata("grpc-health.pcap")]);
    let check = &s[0]["methods"]["/grpc.health.v1.Health/Check"];
    assert_eq!(check["calls"], 26);
    assert_eq!(check["outcomes"]["OK"], 25);
    assert_eq!(check["outcomes"]["NOT_FOUND"], 1);
    let p50 = check["latency_ms"]["p50"].as_f64().unwrap();
    let max = check["latency_ms"]["max"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= max);
    assert_eq!(s[0]["total"]["calls"], 27);
    let text = Command::new(BIN)
        .args(["stats", &testdata("grpc-health.pcap")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("/grpc.health.v1.Health/Watch"));
}

/// Several files are read in parallel, one per core, and printed in the order given: the output
/// is what reading them one by one prints.
#[test]
fn several_files_in_parallel_keep_their_order() {
    let files = [
        testdata("grpc-health.pcap"),
        public("http2-h2c.pcap"),
        public("t5g_free5gc.pcap"),
        public("packt_bidi_streaming.pcapng"),
    ];
    for command in ["read", "stats", "health"] {
        let mut one_by_one = Vec::new();
        for f in &files {
            let o = Command::new(BIN)
                .args([command, "--format", "jsonl", f])
                .output()
                .unwrap();
            one_by_one.extend(o.stdout);
        }
        let mut args = vec![command, "--format", "jsonl"];
        args.extend(files.iter().map(String::as_str));
        let together = Command::new(BIN).args(&args).output().unwrap();
        assert!(together.status.success());
        let lines = String::from_utf8(one_by_one).unwrap();
        assert!(lines.lines().count() >= files.len(), "{command}: {lines}");
        assert_eq!(
            String::from_utf8(together.stdout).unwrap(),
            lines,
            "{command}"
        );
    }
}

#[test]
fn tls_keylog_flags_decrypt_and_say_what_is_wrong() {
    let capture = public("grpc_sslkeylog_echo_tls.pcapng");
    let keylog = public("grpc_sslkeylog_echo_tls.keylog");
    let pref = format!("tls.keylog_file:{keylog}");
    for args in [
        vec![
            "read",
            "--format",
            "jsonl",
            "--tls-keylog",
            &keylog,
            &capture,
        ],
        vec!["read", "--format", "jsonl", "-o", &pref, &capture],
    ] {
        let events = jsonl(&args);
        let summary = events.last().unwrap();
        assert_eq!(summary["tls_connections"], 1, "{args:?}");
        assert_eq!(summary["tls_decrypted"], 1);
        assert_eq!(summary["calls"], 8);
        assert_eq!(summary["messages"], 41);
        let conn = events
            .iter()
            .find(|e| e["event"] == "connection")
            .expect("connection event");
        assert_eq!(conn["tls"]["version"], "TLS 1.3");
        assert_eq!(conn["tls"]["cipher_suite"], "TLS_AES_128_GCM_SHA256");
        assert_eq!(conn["tls"]["alpn"], "h2");
        assert_eq!(conn["tls"]["sni"], "grpc.domain.com");
    }
    // Without one (an empty file is none): counted, and the summary says how to decrypt.
    let out = Command::new(BIN)
        .args(["read", "-q", "--tls-keylog", "/dev/null", &capture])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("TLS connections: 1 (0 decrypted)") && text.contains("--tls-keylog"),
        "{text}"
    );
    // Without the flag, the key log kept beside the capture is used, and named.
    let out = Command::new(BIN)
        .args(["read", "-q", &capture])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("TLS connections: 1 (1 decrypted)"), "{text}");
    assert!(
        err.contains("TLS secrets from") && err.contains("grpc_sslkeylog_echo_tls.keylog"),
        "{err}"
    );
    // A key log that cannot be used is a usage error naming the file.
    let usage = |args: &[&str], says: &str| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    };
    usage(
        &["read", "--tls-keylog", "/nonexistent/keys.log", &capture],
        "/nonexistent/keys.log",
    );
    usage(
        &["read", "--tls-keylog", &capture, &capture],
        "holds no TLS secrets",
    );
    usage(
        &["read", "-o", "http2.tcp.port:80", &capture],
        "h2scope reads tls.keylog_file:FILE",
    );
    usage(
        &["read", "-o", "uat:protobuf_search_paths:\"x\"", &capture],
        "expected \"DIR\",\"TRUE\"",
    );
    usage(
        &["read", "-d", "tcp.port==80,http", &capture],
        "tcp.port==N,http2",
    );
}

/// The decoding options of a tshark command line (as the corpus README gives them) decode as
/// h2scope's own: `-d tcp.port==N,http2` and Wireshark's protobuf search paths.
#[test]
fn tshark_decoding_options_are_taken_as_tshark_writes_them() {
    let capture = public("grpc_person_search.pcapng");
    let wkt = public("protos/wireshark/well_know_types");
    let user = public("protos/wireshark/user_defined_types");
    let search = |dir: &str, all: &str| format!("uat:protobuf_search_paths:\"{dir}\",\"{all}\"");
    let (wkt_path, user_path) = (search(&wkt, "FALSE"), search(&user, "TRUE"));
    let tshark_style = jsonl(&[
        "read",
        "--format",
        "jsonl",
        "-d",
        "tcp.port==50051,http2",
        "-o",
        &wkt_path,
        "-o",
        &user_path,
        "-o",
        "protobuf.pbf_as_hf:TRUE",
        &capture,
    ]);
    let ours = jsonl(&[
        "read",
        "--format",
        "jsonl",
        "--h2-port",
        "50051",
        "--proto",
        &user,
        "-I",
        &wkt,
        &capture,
    ]);
    assert_eq!(tshark_style, ours);
    let types: Vec<&str> = (ours.iter())
        .filter(|e| e["event"] == "message")
        .map(|e| e["type"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(types.len(), 3, "{types:?}");
    assert!(
        types.iter().all(|t| t.starts_with("tutorial.")),
        "{types:?}"
    );
}

/// One set of schema options for the whole corpus: every .proto below `protos/`, with the
/// directories their imports are relative to given again as include paths (compiled once).
#[test]
fn one_proto_tree_with_nested_include_paths_decodes_the_corpus() {
    let protos = public("protos");
    let wkt = public("protos/wireshark/well_know_types");
    let user = public("protos/wireshark/user_defined_types");
    for (file, package) in [
        ("grpc_person_search.pcapng", "tutorial."),
        ("packt_unary.pcapng", "greet."),
    ] {
        let events = jsonl(&[
            "read",
            "--format",
            "jsonl",
            "--proto",
            &protos,
            "-I",
            &user,
            "-I",
            &wkt,
            &public(file),
        ]);
        let messages: Vec<&Value> = (events.iter())
            .filter(|e| e["event"] == "message")
            .collect();
        assert!(!messages.is_empty(), "{file}");
        for m in messages {
            assert!(
                m["type"].as_str().is_some_and(|t| t.starts_with(package)) && m["json"].is_object(),
                "{file}: {m}"
            );
        }
    }
}

/// Key logs kept beside captures (`x.keylog`, `x.keylog.txt`) decrypt them without a flag,
/// several files' at once; a file of that name that is not a key log is named and passed over.
#[test]
fn key_logs_beside_the_captures_are_used() {
    let dir = std::env::temp_dir().join(format!("h2scope-beside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = |from: &str, to: &str| {
        let to = dir.join(to);
        std::fs::copy(public(from), &to).unwrap();
        to.display().to_string()
    };
    let echo = copy("grpc_sslkeylog_echo_tls.pcapng", "echo.pcapng");
    copy("grpc_sslkeylog_echo_tls.keylog", "echo.keylog");
    let person = copy(
        "grpc_person_search_protobuf_and_json_tls.pcapng",
        "person.pcapng",
    );
    copy(
        "grpc_person_search_protobuf_and_json_tls.keylog.txt",
        "person.keylog.txt",
    );
    let other = copy(
        "grpc_person_search_protobuf_and_json_tls.pcapng",
        "other.pcapng",
    );
    std::fs::write(dir.join("other.keylog"), "not a key log\n").unwrap();
    let out = Command::new(BIN)
        .args(["read", "-q", &echo, &person, &other])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // echo's and person's own, and person's secrets open its copy too: they are one key log.
    assert_eq!(
        text.matches("TLS connections: 1 (1 decrypted)").count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches("TLS connections: 2 (2 decrypted)").count(),
        2,
        "{text}"
    );
    for used in ["echo.keylog", "person.keylog.txt"] {
        assert!(err.contains(&format!("{used}, found beside")), "{err}");
    }
    assert!(
        err.contains("other.keylog") && err.contains("not used"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Secrets embedded in a pcapng file by Wireshark's `editcap --inject-secrets` decrypt it
/// without a key log on the command line.
#[test]
fn secrets_embedded_in_pcapng_decrypt_it() {
    let dir = std::env::temp_dir().join(format!("h2scope-dsb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("with-secrets.pcapng");
    let made = Command::new("editcap")
        .arg("--inject-secrets")
        .arg(format!("tls,{}", testdata("grpc-tls.keylog")))
        .arg(testdata("grpc-tls.pcap"))
        .arg(&out)
        .output();
    match made {
        Ok(m) => assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr)),
        Err(_) => {
            // editcap comes with tshark (wireshark-common), which scripts/install-deps installs.
            assert!(
                std::env::var_os("H2SCOPE_REQUIRE_TSHARK").is_none(),
                "editcap is required here"
            );
            return;
        }
    }
    let path = out.to_str().unwrap();
    let summary = jsonl(&["read", "--format", "jsonl", "-q", path]);
    let s = summary.last().unwrap();
    assert_eq!(
        (&s["tls_connections"], &s["tls_decrypted"]),
        (&1.into(), &1.into())
    );
    assert_eq!(s["calls"], 4);
    // The same file with no secrets in it stays encrypted (without the key log beside it).
    let plain = jsonl(&[
        "read",
        "--format",
        "jsonl",
        "-q",
        "--tls-keylog",
        "/dev/null",
        &testdata("grpc-tls.pcap"),
    ]);
    assert_eq!(plain.last().unwrap()["tls_decrypted"], 0);
    // stats reads them too.
    let stats = Command::new(BIN).args(["stats", path]).output().unwrap();
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(text.contains("/test.echo.Echo/Unary"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `read -w` from a decrypted capture puts the secrets of the TLS connections it writes into the
/// pcapng file, so that the file decrypts on its own, in h2scope and in tshark.
#[test]
fn written_pcapng_carries_the_secrets_of_its_tls_connections() {
    let dir = std::env::temp_dir().join(format!("h2scope-w-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ng, classic) = (dir.join("cut.pcapng"), dir.join("cut.pcap"));
    let keylog = testdata("grpc-tls.keylog");
    for (out, extra) in [(&ng, None), (&classic, Some("--pcap"))] {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "read",
            "-q",
            "--tls-keylog",
            &keylog,
            &testdata("grpc-tls.pcap"),
        ])
        .args(["--path", "/test.echo.Echo/Unary", "-w"])
        .arg(out)
        .args(extra);
        let run = cmd.output().unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let summary = |path: &std::path::Path| {
        jsonl(&["read", "--format", "jsonl", "-q", path.to_str().unwrap()])
            .pop()
            .unwrap()
    };
    let s = summary(&ng);
    assert_eq!(
        (&s["tls_decrypted"], &s["calls"]),
        (&1.into(), &4.into()),
        "{s}"
    );
    // Classic pcap cannot hold secrets: it stays encrypted.
    assert_eq!(summary(&classic)["tls_decrypted"], 0);
    // tshark finds the same HTTP/2 frames with no key log given.
    let port = jsonl(&["read", "--format", "jsonl", "--calls", ng.to_str().unwrap()])
        .iter()
        .find(|e| e["event"] == "call")
        .map(|c| {
            c["server"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string()
        })
        .unwrap();
    match Command::new("tshark")
        .arg("-r")
        .arg(&ng)
        .args([
            "-d",
            &format!("tcp.port=={port},tls"),
            "-T",
            "fields",
            "-e",
            "http2.type",
        ])
        .output()
    {
        Ok(t) => {
            let frames = String::from_utf8_lossy(&t.stdout)
                .split(['\n', ','])
                .filter(|v| !v.is_empty())
                .count();
            assert_eq!(frames as u64, s["frames"].as_u64().unwrap());
        }
        Err(_) => assert!(
            std::env::var_os("H2SCOPE_REQUIRE_TSHARK").is_none(),
            "tshark is required here"
        ),
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The headers a `haproxy --format json` export sends, decoded.
fn exported_headers(v: &Value) -> Vec<(String, String)> {
    let send = hex::decode(v["send_hex"].as_str().unwrap()).unwrap();
    // Client preface (24 bytes), empty SETTINGS (9), then the HEADERS frame.
    let len = u32::from_be_bytes([0, send[33], send[34], send[35]]) as usize;
    let block = &send[42..42 + len];
    let mut out = Vec::new();
    h2scope::http2::hpack::Decoder::new()
        .decode(block, &mut out)
        .unwrap();
    out.iter()
        .map(|f| {
            (
                String::from_utf8_lossy(&f.name).into_owned(),
                String::from_utf8_lossy(&f.value).into_owned(),
            )
        })
        .collect()
}

fn haproxy_json(args: &[&str]) -> Value {
    let args = [&["haproxy", "--format", "json"][..], args].concat();
    serde_json::from_str(&stdout(&args)).unwrap()
}

/// A call recorded over TLS exports a check over TLS (`ssl alpn h2`, the recorded SNI, `verify
/// none`, `:scheme https`) once its key log decrypts it; the flags change each part, and a call
/// in clear can be checked over TLS too.
#[test]
fn haproxy_export_over_tls() {
    let capture = testdata("grpc-tls.pcap");
    let keylog = testdata("grpc-tls.keylog");
    let scheme = |v: &Value| {
        exported_headers(v)
            .into_iter()
            .find(|(n, _)| n == ":scheme")
            .unwrap()
            .1
    };
    let v = haproxy_json(&[&capture, "--tls-keylog", &keylog]);
    // The key log beside the capture is the same one.
    assert_eq!(haproxy_json(&[&capture]), v);
    let config = v["config"].as_str().unwrap();
    assert!(
        config.contains("    tcp-check connect ssl alpn h2 sni localhost\n"),
        "{config}"
    );
    assert!(config.contains(" check verify none inter 2000"), "{config}");
    assert!(config.contains("as recorded (TLS 1.3 TLS_AES_128_GCM_SHA256, ALPN h2, SNI localhost)"));
    assert_eq!(v["tls"]["sni"], "localhost");
    assert_eq!(v["tls"]["alpn"], "h2");
    assert!(v["tls"]["ca_file"].is_null());
    assert_eq!(scheme(&v), "https");

    let v = haproxy_json(&[
        &capture,
        "--tls-keylog",
        &keylog,
        "--sni",
        "api.example",
        "--ca-file",
        "/etc/ssl/certs/ca-certificates.crt",
    ]);
    let config = v["config"].as_str().unwrap();
    assert!(
        config.contains("connect ssl alpn h2 sni api.example\n"),
        "{config}"
    );
    assert!(config.contains(" check verify required ca-file /etc/ssl/certs/ca-certificates.crt "));
    assert!(!config.contains("verify none"));

    // Behind a TLS terminator the backend speaks clear text.
    let v = haproxy_json(&[&capture, "--tls-keylog", &keylog, "--no-ssl"]);
    let config = v["config"].as_str().unwrap();
    assert!(config.contains("    tcp-check connect\n") && !config.contains("verify"));
    assert!(v["tls"].is_null());
    assert_eq!(scheme(&v), "http");

    // A call recorded in clear, checked over TLS: no SNI unless given.
    let clear = testdata("grpc-health.pcap");
    let v = haproxy_json(&[&clear, "--ssl"]);
    let config = v["config"].as_str().unwrap();
    assert!(
        config.contains("    tcp-check connect ssl alpn h2\n"),
        "{config}"
    );
    assert!(!config.contains("as recorded"));
    assert_eq!(scheme(&v), "https");
    let v = haproxy_json(&[&clear, "--sni", "grpc.internal"]);
    assert!(v["config"]
        .as_str()
        .unwrap()
        .contains("ssl alpn h2 sni grpc.internal\n"));

    // Without the secrets (none beside it either): not found, and the error says what to give.
    let out = Command::new(BIN)
        .args(["haproxy", &capture, "--tls-keylog", "/dev/null"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("1 TLS connection(s) could not be decrypted") && err.contains("--tls-keylog"),
        "{err}"
    );
    // From a capture that joined the connection after its handshake: TLS 1.3 still decrypts,
    // but the SNI was in the handshake, and the warning says how to give it.
    let joined = std::env::temp_dir().join(format!("h2scope-joined-{}.pcap", std::process::id()));
    let bytes = std::fs::read(&capture).unwrap();
    std::fs::write(&joined, common::pcap_without(&bytes, |n| n <= 10)).unwrap();
    let out = Command::new(BIN)
        .args(["haproxy", joined.to_str().unwrap(), "--tls-keylog", &keylog])
        .output()
        .unwrap();
    std::fs::remove_file(&joined).ok();
    let (config, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{err}");
    assert!(
        config.contains("    tcp-check connect ssl alpn h2\n"),
        "{config}"
    );
    assert!(config.contains("joined mid-way"), "{config}");
    assert!(
        err.contains("SNI is unknown") && err.contains("--sni"),
        "{err}"
    );
    // Contradictory flags are a usage error.
    let out = Command::new(BIN)
        .args(["haproxy", &capture, "--no-ssl", "--sni", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `-Y`: the events shown are exactly the unfiltered output's events that the expression,
/// written here again by hand on the JSON, selects; the summary still counts everything.
#[test]
fn display_filter_selects_the_events_its_fields_name() {
    let capture = testdata("grpc-health.pcap");
    let all = jsonl(&["read", "--format", "jsonl", "--no-summary", &capture]);
    type Pick = fn(&Value) -> bool;
    let cases: [(&str, Pick); 8] = [
        ("event == call && end == reset", |e| {
            e["event"] == "call" && e["end"] == "reset"
        }),
        ("type == RST_STREAM or type == GOAWAY", |e| {
            e["type"] == "RST_STREAM" || e["type"] == "GOAWAY"
        }),
        (
            "event == message and dir == response and json.status == SERVING",
            |e| {
                e["event"] == "message"
                    && e["dir"] == "response"
                    && e["json"]["status"] == "SERVING"
            },
        ),
        ("flag_names == END_STREAM && stream > 40", |e| {
            e["flag_names"]
                .as_array()
                .is_some_and(|f| f.iter().any(|n| n == "END_STREAM"))
                && e["stream"].as_u64().is_some_and(|s| s > 40)
        }),
        ("headers[\":path\"] contains Watch", |e| {
            e["headers"].as_array().is_some_and(|h| {
                h.iter()
                    .any(|p| p[0] == ":path" && p[1].as_str().unwrap().contains("Watch"))
            })
        }),
        ("path ~ '/Check$' and not (request_bytes > 5)", |e| {
            e["path"].as_str().is_some_and(|p| p.ends_with("/Check"))
                && e["request_bytes"].as_u64().is_none_or(|b| b <= 5)
        }),
        ("duration >= 0.0005 and event == call", |e| {
            e["event"] == "call" && e["duration"].as_f64().unwrap() >= 0.0005
        }),
        // No message can match: message events are not built.
        ("event != message and stream == 1", |e| {
            e.get("event").is_some() && e["event"] != "message" && e["stream"] == 1
        }),
    ];
    // The events `read` shows with this filter (and these options).
    let filtered = |filter: &str, options: &[&str]| {
        let mut args = vec!["read", "--format", "jsonl", "--no-summary", "-Y", filter];
        args.extend_from_slice(options);
        args.push(&capture);
        jsonl(&args)
    };
    for (filter, pick) in cases {
        let shown = filtered(filter, &[]);
        let expected: Vec<&Value> = all.iter().filter(|e| pick(e)).collect();
        assert!(!expected.is_empty(), "{filter} selects nothing");
        assert!(expected.len() < all.len(), "{filter} selects everything");
        assert_eq!(shown.iter().collect::<Vec<_>>(), expected, "{filter}");
    }
    // A null field is present: the reset Watch has no grpc-status, which != 0 shows and > 0
    // does not (as the README says).
    let count = |filter: &str| filtered(filter, &["--calls"]).len();
    assert_eq!(
        (
            count("grpc_status != 0"),
            count("grpc_status > 0"),
            count("grpc_status == null")
        ),
        (2, 1, 1)
    );
    // What no frame or message can match is not built, and is counted all the same.
    let last = |args: &[&str]| jsonl(args).pop().unwrap();
    for threads in ["1", "2"] {
        let full = last(&[
            "read",
            "-q",
            "--format",
            "jsonl",
            "--threads",
            threads,
            &capture,
        ]);
        for filter in [
            "event == call and grpc_status == 0",
            "not event == message",
            // Only calls have grpc_status, only frames and calls have flag_names or end.
            "grpc_status != 0",
            "flag_names == END_STREAM or end == reset",
        ] {
            let filtered = last(&[
                "read",
                "--format",
                "jsonl",
                "--threads",
                threads,
                "-Y",
                filter,
                &capture,
            ]);
            assert_eq!(filtered, full, "{filter} --threads {threads}");
        }
    }
    // Text output and --calls filter the same events; the summary counts them all.
    let out = Command::new(BIN)
        .args(["read", "--calls", "-Y", "end == reset", &capture])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let calls: Vec<&str> = text.lines().filter(|l| l.contains("POST")).collect();
    assert_eq!(calls.len(), 1, "{text}");
    assert!(
        calls[0].contains("Health/Watch") && calls[0].contains("RESET"),
        "{text}"
    );
    assert!(text.contains("calls: 27"), "{text}");
    // A wrong filter is a usage error that says where.
    let out = Command::new(BIN)
        .args(["read", "-Y", "grpc_status == 0 and (", &capture])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at character 23") && err.contains("field name"),
        "{err}"
    );
}

/// `stats -Y` counts only the calls the filter matches; `health -Y` shows only the connections
/// whose report matches.
#[test]
fn stats_and_health_take_display_filters() {
    let capture = testdata("grpc-health.pcap");
    let stats = |filter: &str| -> Value {
        let v = jsonl(&["stats", "--format", "jsonl", "-Y", filter, &capture]);
        assert_eq!(v.len(), 1);
        v[0]["total"].clone()
    };
    assert_eq!(stats("event == call")["calls"], 27);
    assert_eq!(stats("path contains Watch")["calls"], 1);
    assert_eq!(stats("grpc_status_name == NOT_FOUND")["calls"], 1);
    assert_eq!(stats("grpc_status == 0")["outcomes"]["OK"], 25);
    let health =
        |filter: &str| jsonl(&["health", "--format", "jsonl", "-Y", filter, &capture]).len();
    assert_eq!(health("end == fin"), 1);
    assert_eq!(health("client_side.pings > 0"), 0);
    assert_eq!(health("calls == 27 and client_side.resets.CANCEL == 1"), 1);
}

/// `-w` with `-Y` writes the connections that had an event the filter matches (and, with
/// `--path`, a call to that path too), as tshark's `-Y` selects what `-w` writes.
#[test]
fn display_filter_selects_the_connections_written() {
    let dir = std::env::temp_dir().join(format!("h2scope-cli-select-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let three = dir.join("three.pcap");
    let status = Command::new("python3")
        .arg(format!(
            "{}/scripts/replicate-capture",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(testdata("grpc-health.pcap"))
        .arg(&three)
        .arg("3")
        .status()
        .unwrap();
    assert!(status.success());
    let written = |args: &[&str]| -> Value {
        let out = dir.join("out.pcapng");
        let run = Command::new(BIN)
            .arg("read")
            .arg(&three)
            .arg("-w")
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let summary = jsonl(&["read", "-q", "--format", "jsonl", out.to_str().unwrap()]);
        summary[0].clone()
    };
    let one = written(&["-Y", "conn == 1 and event == call"]);
    assert_eq!(
        (one["tcp_connections"].clone(), one["calls"].clone()),
        (1.into(), 27.into())
    );
    let two = written(&["-Y", "conn != 1"]);
    assert_eq!(two["tcp_connections"], 2);
    let both = written(&["-Y", "conn >= 1", "--path", "/grpc.health.v1.Health/Watch"]);
    assert_eq!(both["tcp_connections"], 2);
    let none = written(&["-Y", "grpc_status == 99"]);
    assert_eq!(none["packets"], 0);
    std::fs::remove_dir_all(&dir).ok();
}

/// `-T fields -e ...` prints, for each event, the values its JSON Lines form has for the
/// fields, as written here again by hand: strings bare, lists joined by commas, header lists
/// searched by name, null as nothing. Threads give the same lines, `conn` included.
#[test]
fn fields_output_prints_the_json_lines_values() {
    let capture = testdata("grpc-health.pcap");
    let all = jsonl(&["read", "--format", "jsonl", "--no-summary", &capture]);
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    let expected: Vec<String> = all
        .iter()
        .map(|e| {
            let agent = e["request_headers"]
                .as_array()
                .and_then(|h| h.iter().find(|p| p[0] == "user-agent"))
                .map(|p| text(&p[1]))
                .unwrap_or_default();
            let flags = e["flag_names"]
                .as_array()
                .map(|f| f.iter().map(text).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            [
                text(&e["event"]),
                text(&e["stream"]),
                text(&e["type"]),
                text(&e["grpc_status"]),
                agent,
                flags,
                text(&e["json"]["status"]),
            ]
            .join("\t")
        })
        .collect();
    let fields = [
        "-e",
        "event",
        "-e",
        "stream",
        "-e",
        "type",
        "-e",
        "grpc_status",
        "-e",
        "request_headers.user-agent",
        "-e",
        "flag_names",
        "-e",
        "json.status",
    ];
    let run = |extra: &[&str]| -> String {
        let out = Command::new(BIN)
            .args(["read", "-T", "fields"])
            .args(extra)
            .arg(&capture)
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let got = run(&fields);
    assert_eq!(got.lines().collect::<Vec<_>>(), expected);
    assert!(got.contains("\ttonic/0.14.9\t") && got.contains("\tSERVING"));
    let mut threaded = fields.to_vec();
    threaded.extend(["--threads", "2"]);
    assert_eq!(run(&threaded), got);
    // conn is numbered by the output thread.
    let conns = ["-e", "conn", "-e", "stream", "--threads"];
    assert_eq!(
        run(&[&conns[..], &["1"]].concat()),
        run(&[&conns[..], &["2"]].concat())
    );
    // Only events with one of the fields; tshark's -E options; -Y first.
    let calls = run(&[
        "-e",
        "path",
        "-e",
        "grpc_status",
        "-Y",
        "event == call",
        "-E",
        "header=y",
        "-E",
        "separator=,",
        "-E",
        "quote=d",
    ]);
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 28, "{calls}");
    assert_eq!(lines[0], "\"path\",\"grpc_status\"");
    assert_eq!(lines[1], "\"/grpc.health.v1.Health/Check\",\"0\"");
    assert_eq!(run(&["-e", "grpc_message"]).lines().count(), 1);
    // Fields only calls have: frames and messages are not built, and print nothing anyway.
    let call_fields = ["-e", "grpc_status", "-e", "request_messages"];
    let only_calls = run(&call_fields);
    assert_eq!(only_calls.lines().count(), 27);
    assert_eq!(
        only_calls,
        run(&[&call_fields[..], &["-Y", "event == call"]].concat())
    );
    assert_eq!(
        only_calls,
        run(&[&call_fields[..], &["--threads", "2"]].concat())
    );
    // Fields without message contents decode no bodies: the same lines as with a field that
    // makes them decoded (type), that field's column taken off.
    let plain = run(&["-e", "path", "-e", "length", "-e", "stream"]);
    let decoded = run(&["-e", "path", "-e", "length", "-e", "stream", "-e", "type"]);
    let cut: Vec<&str> = decoded
        .lines()
        .map(|l| l.rsplit_once('\t').unwrap().0)
        .collect();
    assert_eq!(plain.lines().collect::<Vec<_>>(), cut);
    assert!(decoded.contains("grpc.health.v1.HealthCheckResponse"));
    // Mistakes are usage errors that say what to do.
    for (args, says) in [
        (&["read", "-T", "fields"][..], "needs at least one -e"),
        (&["read", "-e", "path"][..], "add -T fields"),
        (
            &["read", "-T", "fields", "-e", "a..b"][..],
            "field \"a..b\"",
        ),
        (
            &["read", "-T", "fields", "-e", "path", "-E", "quote=x"][..],
            "quote=x",
        ),
        (
            &["read", "-T", "fields", "-e", "strem"][..],
            "did you mean \"stream\"",
        ),
        (
            &["read", "-Y", "grpc_stauts != 0"][..],
            "did you mean \"grpc_status\"",
        ),
        (&["stats", "-Y", "zzz"][..], "no event has a field \"zzz\""),
        // tshark's names get h2scope's.
        (
            &["read", "-Y", "http2.streamid == 1"][..],
            "\"http2.streamid\" is tshark's name for what is stream here",
        ),
        (
            &[
                "read",
                "-T",
                "fields",
                "-e",
                "stream",
                "-e",
                "http2.headers.path",
            ][..],
            "for what is path here",
        ),
        (
            &["stats", "-Y", "tcp.flags.syn"][..],
            "\"tcp.flags.syn\" is a tshark field",
        ),
    ] {
        let out = Command::new(BIN).args(args).arg(&capture).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn r_names_the_capture_as_for_tshark() {
    let file = testdata("grpc-health.pcap");
    let bulk = testdata("grpc-bulk.pcap");
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        out.stdout
    };
    for (with_r, plain) in [
        (
            vec!["read", "--format", "jsonl", "-r", &file],
            vec!["read", "--format", "jsonl", &file],
        ),
        // -r files come first, then the others.
        (
            vec!["read", "-q", "-r", &bulk, &file],
            vec!["read", "-q", &bulk, &file],
        ),
        (vec!["stats", "-r", &file], vec!["stats", &file]),
        (vec!["health", "-r", &file], vec!["health", &file]),
        (vec!["haproxy", "-r", &file], vec!["haproxy", &file]),
    ] {
        let got = run(&with_r);
        assert!(!got.is_empty(), "{with_r:?}");
        assert_eq!(got, run(&plain), "{with_r:?}");
    }
    // The TUI takes -r too: a file it cannot open is named before the terminal is taken.
    let out = Command::new(BIN)
        .args(["tui", "-r", "/nonexistent/x.pcap"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.pcap: cannot open"));
    // Without any capture it is still a usage error.
    for cmd in ["read", "stats", "haproxy", "tui"] {
        let out = Command::new(BIN).arg(cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
    }
}

/// `read -w -` writes the selection to standard output, for a pipe (`| gzip`, `| h2scope read
/// -`): the same bytes as a file, TLS secrets included.
#[test]
fn w_dash_writes_the_capture_to_standard_output() {
    let dir = std::env::temp_dir().join(format!("h2scope-w-dash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tls = testdata("grpc-tls.pcap");
    let keylog = testdata("grpc-tls.keylog");
    let health = testdata("grpc-health.pcap");
    for (input, extra) in [
        (&health, vec!["--path", "/grpc.health.v1.Health/Watch"]),
        (&health, vec!["--pcap"]),
        (&tls, vec!["--tls-keylog", keylog.as_str()]),
    ] {
        let file = dir.join("out");
        let to_file = Command::new(BIN)
            .args(["read", input, "-w", file.to_str().unwrap()])
            .args(&extra)
            .output()
            .unwrap();
        assert!(to_file.status.success() && to_file.stdout.is_empty());
        let to_stdout = Command::new(BIN)
            .args(["read", input, "-w", "-"])
            .args(&extra)
            .output()
            .unwrap();
        assert!(to_stdout.status.success(), "{extra:?}");
        let written = std::fs::read(&file).unwrap();
        // pcapng section headers carry no time, so the two are the same bytes.
        assert_eq!(to_stdout.stdout, written, "{extra:?}");
        assert!(String::from_utf8_lossy(&to_stdout.stderr).contains("to standard output"));
    }
    // -P would print into the capture.
    let out = Command::new(BIN)
        .args(["read", &health, "-w", "-", "-P"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

/// A named pipe (as `<(…)` gives) is read once: the reflection pass, the thread choice's sample
/// and a `-w` selection pass would each take bytes away from the dissection, or wait forever
/// for a second writer.
#[test]
fn a_named_pipe_is_read_once() {
    let dir = std::env::temp_dir().join(format!("h2scope-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("capture.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let file = testdata("grpc-health.pcap");
    let fifo_path = fifo.to_str().unwrap();
    for args in [
        &["read", "--format", "jsonl", "--no-summary"][..],
        &["read", "-q", "--format", "jsonl"][..],
        &["stats", "--format", "jsonl"][..],
        &["health", "--format", "jsonl"][..],
    ] {
        let by_file = Command::new(BIN).args(args).arg(&file).output().unwrap();
        assert!(by_file.status.success());
        let child = Command::new(BIN)
            .args(args)
            .arg(fifo_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let writer = {
            let (fifo, file) = (fifo.clone(), file.clone());
            std::thread::spawn(move || {
                // Blocks until the reader opens the pipe; a reader that opens it again later
                // finds no writer.
                let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
                let _ = w.write_all(&std::fs::read(file).unwrap());
            })
        };
        let pid = child.id();
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(child.wait_with_output().unwrap()));
        let Ok(by_pipe) = wait.recv_timeout(std::time::Duration::from_secs(30)) else {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{args:?} on a named pipe does not end");
        };
        writer.join().unwrap();
        assert!(
            by_pipe.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&by_pipe.stderr)
        );
        let without_file = |out: &[u8]| {
            String::from_utf8_lossy(out)
                .replace(&file, "CAPTURE")
                .replace(fifo_path, "CAPTURE")
        };
        assert_eq!(
            without_file(&by_file.stdout),
            without_file(&by_pipe.stdout),
            "{args:?}"
        );
    }
    // -w with a selection needs a first pass over the capture: a usage error on a pipe.
    let out = Command::new(BIN)
        .args(["read", "-w", "/dev/null", "-Y", "stream == 1", fifo_path])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("can be read only once"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `| head` has seen enough: a closed output ends the run, as it ends tshark's, rather than
/// the rest of the capture being dissected for nobody. The capture here never ends (its
/// connections are sent again and again on new ports), so a run that does not stop at the
/// closed output does not stop at all.
#[test]
fn a_closed_output_stops_the_reading() {
    let dir = std::env::temp_dir().join(format!("h2scope-closed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = std::fs::read(testdata("grpc-health.pcap")).unwrap();
    for (k, args) in [
        &["read"][..],
        &["read", "--threads", "1"][..],
        &["read", "--threads", "2", "--format", "jsonl"][..],
        &["read", "-T", "fields", "-e", "type"][..],
        &["health", "--threads", "1"][..],
        &["health", "--threads", "2"][..],
    ]
    .into_iter()
    .enumerate()
    {
        // Two inputs for `read`: files are then read one per core, each into its channel.
        let inputs = if args[0] == "read" && k == 0 { 2 } else { 1 };
        let fifos: Vec<_> = (0..inputs)
            .map(|i| {
                let f = dir.join(format!("{k}-{i}.fifo"));
                assert!(Command::new("mkfifo").arg(&f).status().unwrap().success());
                f
            })
            .collect();
        let mut child = Command::new(BIN)
            .args(args)
            .args(&fifos)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let writers: Vec<_> = fifos
            .iter()
            .map(|f| {
                let (f, pcap) = (f.clone(), pcap.clone());
                std::thread::spawn(move || {
                    let w = std::fs::OpenOptions::new().write(true).open(f).unwrap();
                    endless(&pcap, w);
                })
            })
            .collect();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
        assert!(!first.is_empty(), "{args:?} wrote nothing");
        drop(stdout);
        let pid = child.id();
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(child.wait()));
        let Ok(status) = wait.recv_timeout(std::time::Duration::from_secs(60)) else {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{args:?} goes on reading after its output was closed");
        };
        assert!(status.unwrap().success(), "{args:?}");
        // The writers end as the reader goes away.
        writers.into_iter().for_each(|w| w.join().unwrap());
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Writes the pcap file `pcap` (Ethernet, IPv4, one server port) over and over, each round's
/// client on a port of its own, until the reader goes away.
fn endless(pcap: &[u8], mut w: impl Write) {
    const SERVER_PORT: u16 = 34793;
    if w.write_all(&pcap[..24]).is_err() {
        return;
    }
    for round in 0u32.. {
        let mut at = 24;
        while at + 16 <= pcap.len() {
            let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
            let mut record = pcap[at..at + 16 + caplen].to_vec();
            at += 16 + caplen;
            let data = &mut record[16..];
            let src = u16::from_be_bytes([data[34], data[35]]);
            let client = if src == SERVER_PORT { 36 } else { 34 };
            let port = 1024 + (round % 60000) as u16;
            data[client..client + 2].copy_from_slice(&port.to_be_bytes());
            if w.write_all(&record).is_err() {
                return;
            }
        }
    }
}

/// `-t` writes the time column in tshark's forms: every frame line's time is the time tshark's
/// `-t` gives its packet, truncated to the microsecond, also in time zones off the hour; and
/// several threads write what one does.
#[test]
fn text_times_are_tsharks() {
    let cases = [
        (testdata("grpc-health.pcap"), None),
        (testdata("grpc-tls.pcap"), Some(testdata("grpc-tls.keylog"))),
    ];
    for (file, keylog) in &cases {
        for (format, zones) in [
            ("a", &["UTC", "America/St_Johns", "Asia/Kathmandu"][..]),
            ("ad", &["America/St_Johns"][..]),
            ("e", &["UTC"][..]),
            ("u", &["Asia/Kathmandu"][..]),
            ("ud", &["UTC"][..]),
        ] {
            for tz in zones {
                let run = |threads: &str| {
                    let mut c = Command::new(BIN);
                    c.env("TZ", tz).args([
                        "read",
                        "--no-summary",
                        "--threads",
                        threads,
                        "-t",
                        format,
                    ]);
                    if let Some(k) = keylog {
                        c.args(["--tls-keylog", k]);
                    }
                    let out = c.arg(file).output().unwrap();
                    assert!(out.status.success());
                    String::from_utf8(out.stdout).unwrap()
                };
                let ours = run("1");
                assert_eq!(ours, run("2"), "{file} -t {format}");
                let tshark = match Command::new("tshark")
                    .env("TZ", tz)
                    .args(["-r", file, "-t", format, "-T", "fields"])
                    .args(["-e", "frame.number", "-e", "_ws.col.Time"])
                    .output()
                {
                    Ok(t) => String::from_utf8(t.stdout).unwrap(),
                    Err(_) => {
                        assert!(
                            std::env::var_os("H2SCOPE_REQUIRE_TSHARK").is_none(),
                            "tshark is required here"
                        );
                        return;
                    }
                };
                let theirs: std::collections::HashMap<&str, String> = tshark
                    .lines()
                    .filter_map(|l| {
                        let (n, time) = l.split_once('\t')?;
                        // To the microsecond: the nanoseconds cut off.
                        let (whole, frac) = time.rsplit_once('.')?;
                        Some((n, format!("{whole}.{}", &frac[..6])))
                    })
                    .collect();
                let words = if format.ends_with('d') { 2 } else { 1 };
                let mut frames = 0;
                for line in ours.lines() {
                    let mut w = line.split_whitespace();
                    let Some(n) = w.next().filter(|n| n.parse::<u64>().is_ok()) else {
                        continue;
                    };
                    let time: Vec<&str> = w.take(words).collect();
                    assert_eq!(
                        Some(&time.join(" ")),
                        theirs.get(n),
                        "{file} -t {format} TZ={tz}: {line}"
                    );
                    frames += 1;
                }
                assert!(frames > 50, "{file}: {frames} frame lines");
            }
        }
    }
}

/// `stats --interval`: each interval holds the calls that ended in it, as `read --calls` dates
/// them, on the shipped captures and every public one with calls; intervals start on
/// multiples of their width since 1970.
#[test]
fn stats_intervals_hold_the_calls_that_ended_in_them() {
    let mut files = vec![testdata("grpc-health.pcap"), testdata("grpc-bulk.pcap")];
    let public = format!("{}/../shared/captures/public", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(&public).unwrap() {
        let name = entry.unwrap().path().to_string_lossy().to_string();
        if (name.ends_with(".pcap") || name.ends_with(".pcapng")) && !name.contains("tls") {
            files.push(name);
        }
    }
    let (mut checked, mut intervals_seen) = (0, 0);
    for file in &files {
        for (arg, width) in [("10ms", 0.01), ("1s", 1.0)] {
            let calls = Command::new(BIN)
                .args(["read", "--calls", "--format", "jsonl", "--no-summary", file])
                .output()
                .unwrap();
            assert!(calls.status.success());
            // (calls, largest latency in ms, request bytes) by interval start, from the calls.
            let mut expected: std::collections::BTreeMap<i64, (u64, f64, u64)> = Default::default();
            let mut near_edge = false;
            for line in String::from_utf8(calls.stdout).unwrap().lines() {
                let c: Value = serde_json::from_str(line).unwrap();
                let end = c["end_ts"].as_f64().unwrap();
                let at = end / width;
                // A float time within a microsecond of an edge could fall either side.
                near_edge |= (at - at.round()).abs() * width < 2e-6;
                let e = expected.entry(at.floor() as i64).or_default();
                e.0 += 1;
                if c["end"] != "unfinished" {
                    e.1 = e.1.max(c["duration"].as_f64().unwrap() * 1e3);
                }
                e.2 += c["request_bytes"].as_u64().unwrap();
            }
            if near_edge || expected.is_empty() {
                continue;
            }
            let out = Command::new(BIN)
                .args(["stats", "--interval", arg, "--format", "jsonl", file])
                .output()
                .unwrap();
            assert!(out.status.success());
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            let rows = report["intervals"].as_array().unwrap();
            assert_eq!(rows.len(), expected.len(), "{file} {arg}");
            for (row, (&start, &(calls, max_ms, bytes))) in rows.iter().zip(&expected) {
                let at = row["start"].as_f64().unwrap();
                assert!((at - start as f64 * width).abs() < 1e-6, "{file}: {row}");
                assert_eq!(row["seconds"].as_f64(), Some(width));
                assert_eq!(row["calls"].as_u64(), Some(calls), "{file} {arg}: {row}");
                assert_eq!(row["request_bytes"]["total"].as_u64(), Some(bytes));
                if let Some(max) = row["latency_ms"]["max"].as_f64() {
                    assert!((max - max_ms).abs() < 1e-3, "{file}: {row} {max_ms}");
                }
                intervals_seen += 1;
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} captures and widths checked");
    assert!(intervals_seen >= 60, "{intervals_seen} intervals");
}

/// `-x` shows each frame's bytes, as tshark's `-x`: in JSON Lines as `raw`, whose first nine
/// bytes are the frame header the other fields describe; in text as a hex dump under the frame's
/// line with the same bytes; `-e raw` and `-Y` on `raw` keep them without `-x`.
#[test]
fn hex_shows_each_frames_bytes() {
    for name in ["grpc-health.pcap", "grpc-bulk.pcap"] {
        let file = testdata(name);
        let events = jsonl(&["read", "-T", "jsonl", "-x", "--no-summary", &file]);
        let mut raws = Vec::new();
        for f in events.iter().filter(|e| e["event"] == "frame") {
            let raw = hex::decode(f["raw"].as_str().unwrap_or_else(|| panic!("{f}"))).unwrap();
            let length = f["length"].as_u64().unwrap() as usize;
            let head = u32::from_be_bytes([0, raw[0], raw[1], raw[2]]) as usize;
            assert_eq!(head, length, "{f}");
            assert_eq!(u64::from(raw[3]), f["type_code"].as_u64().unwrap(), "{f}");
            assert_eq!(u64::from(raw[4]), f["flags"].as_u64().unwrap(), "{f}");
            let stream = u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7fff_ffff;
            assert_eq!(u64::from(stream), f["stream"].as_u64().unwrap(), "{f}");
            if f.get("missing").is_none() {
                assert_eq!(raw.len(), 9 + length.min(64 * 1024), "{f}");
            }
            raws.push(raw);
        }
        assert!(raws.len() > 80, "{name}: {} frames", raws.len());
        // Each message's bytes are those its DATA frames carried after its 5-byte prefix (the
        // captures are uncompressed, their frames unpadded and under 64 KiB). A message can
        // come before the frame event that ends it (the frame's end is in a later segment).
        let key = |e: &Value| {
            (
                e["conn"].as_u64().unwrap_or(0),
                e["stream"].as_u64().unwrap_or(0),
                e["src"].as_str().unwrap_or("").to_string(),
            )
        };
        let mut carried: std::collections::HashMap<(u64, u64, String), Vec<u8>> =
            Default::default();
        for e in events.iter().filter(|e| e["type"] == "DATA") {
            let raw = hex::decode(e["raw"].as_str().unwrap()).unwrap();
            carried.entry(key(e)).or_default().extend(&raw[9..]);
        }
        let mut messages = 0;
        for e in events.iter().filter(|e| e["event"] == "message") {
            let raw = hex::decode(e["raw"].as_str().unwrap_or_else(|| panic!("{e}"))).unwrap();
            let data = carried.get_mut(&key(e)).expect("DATA for each message");
            let len = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
            assert_eq!(data[0], 0, "uncompressed");
            assert_eq!(raw, data[5..5 + len], "{e}");
            data.drain(..5 + len);
            messages += 1;
        }
        assert!(messages > 20, "{name}: {messages} messages");
        // Frames' and messages' bytes, in the order of their lines.
        let all: Vec<Vec<u8>> = (events.iter())
            .filter_map(|e| Some(hex::decode(e.get("raw")?.as_str()?).unwrap()))
            .collect();
        // Without -x, no bytes.
        let plain = jsonl(&["read", "-T", "jsonl", "--no-summary", &file]);
        assert!(plain.iter().all(|e| e.get("raw").is_none()));

        // The text dump: rows under each frame line, read back into bytes.
        let text = stdout(&["read", "-x", "--no-summary", &file]);
        let mut dumped: Vec<Vec<u8>> = Vec::new();
        for line in text.lines() {
            let row = line.trim_start();
            // Under a frame's line (20 columns in) or a message's (22).
            let indent = line.len() - row.len();
            let is_row = (indent == 20 || indent == 22)
                && row.len() > 6
                && row[..4].bytes().all(|b| b.is_ascii_hexdigit())
                && &row[4..6] == "  ";
            if !is_row {
                // A frame's or a message's line starts the next dump.
                if line.contains(" len=") || line.contains('↳') {
                    dumped.push(Vec::new());
                }
                continue;
            }
            let offset = usize::from_str_radix(&row[..4], 16).unwrap();
            let bytes = dumped.last_mut().expect("a dump follows its frame line");
            assert_eq!(offset, bytes.len(), "{line}");
            // Sixteen bytes at most, in two groups, before the printable column.
            let hex_part = &row[6..(6 + 49).min(row.len())];
            bytes.extend(
                hex_part
                    .split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).unwrap()),
            );
        }
        assert_eq!(dumped, all, "{name}");

        // -e raw keeps the bytes without -x; -V is -v, as tshark spells it.
        let fields: Vec<Vec<u8>> =
            stdout(&["read", "-T", "fields", "-e", "raw", "--no-summary", &file])
                .lines()
                .map(|l| hex::decode(l).unwrap())
                .collect();
        assert_eq!(fields, all, "{name}");
        let verbose = |flag: &str| stdout(&["read", flag, "-c", "40", &file]);
        assert_eq!(verbose("-V"), verbose("-v"));
    }
}

/// `-l` sends each packet's lines as the packet is read, as tshark's `-l`: a capture followed
/// as it is written (`tcpdump -U -w - | h2scope read -l -`) shows its frames while the writer
/// is still writing. Without it they wait in the output buffer.
#[test]
fn l_flushes_each_packets_lines() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::Duration;
    let pcap = std::fs::read(testdata("grpc-health.pcap")).unwrap();
    // The file header and the first four records: the fourth holds the server's SETTINGS.
    let mut end = 24;
    for _ in 0..4 {
        let len = u32::from_le_bytes(pcap[end + 8..end + 12].try_into().unwrap()) as usize;
        end += 16 + len;
    }
    for (flag, shows) in [(Some("-l"), true), (None, false)] {
        let mut child = Command::new(BIN)
            .args(["read", "--threads", "2"])
            .args(flag)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&pcap[..end]).unwrap();
        stdin.flush().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        // The input stays open: only a flush brings the line out now.
        let wait = if shows { 20 } else { 1 };
        let line = rx.recv_timeout(Duration::from_secs(wait));
        if shows {
            assert!(line.unwrap().contains("SETTINGS"));
        } else {
            assert!(line.is_err(), "{line:?}");
        }
        drop(stdin);
        assert!(child.wait().unwrap().success());
    }
}

/// A capture is the attacker's text: a path and header values holding a newline, ESC sequences
/// (clear the screen, retitle the window) and a NUL. Printed as text, as fields, in `stats`, and
/// in the comments of an exported HAProxy config, they come out escaped: nothing reaches the
/// terminal that it would obey, and no line of the config is the capture's.
#[test]
fn control_characters_from_a_capture_are_escaped_in_text() {
    use common::frame;
    use h2scope::http2::hpack::encode_plain;
    let path = "/grpc.health.v1.Health/Check\n    tcp-check send-binary 00\u{1b}[2J";
    let mut request = Vec::new();
    encode_plain(
        &[
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.as_bytes()),
            (b":authority", b"svc"),
            (b"content-type", b"application/grpc"),
            (b"x-note", b"\x1b]0;owned\x07 and \x00"),
        ],
        &mut request,
    );
    let mut response = Vec::new();
    encode_plain(
        &[(b":status", b"200"), (b"content-type", b"application/grpc")],
        &mut response,
    );
    let mut trailers = Vec::new();
    encode_plain(&[(b"grpc-status", b"0")], &mut trailers);
    let serving = [0, 0, 0, 0, 2, 8, 1];
    let pcap = common::segments_capture(&[
        (
            true,
            [
                h2scope::http2::frame::PREFACE.as_slice(),
                &frame(4, 0, 0, &[]),
            ]
            .concat(),
        ),
        (false, frame(4, 0, 0, &[])),
        (
            true,
            [frame(1, 4, 1, &request), frame(0, 1, 1, &[0, 0, 0, 0, 0])].concat(),
        ),
        (
            false,
            [
                frame(1, 4, 1, &response),
                frame(0, 0, 1, &serving),
                frame(1, 5, 1, &trailers),
            ]
            .concat(),
        ),
    ]);
    let dir = std::env::temp_dir().join(format!("h2scope-controls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("controls.pcap");
    std::fs::write(&capture, pcap).unwrap();
    let capture = capture.to_str().unwrap();

    let obeyed = |text: &str| text.contains(['\u{1b}', '\u{7}', '\0']);
    for args in [
        vec!["read", capture],
        vec!["read", "-V", capture],
        vec!["read", "--calls", "-V", capture],
        vec![
            "read",
            "-T",
            "fields",
            "-e",
            "path",
            "-e",
            "request_headers.x-note",
            capture,
        ],
        vec!["stats", capture],
    ] {
        let text = stdout(&args);
        assert!(!obeyed(&text), "{args:?}: {text:?}");
        assert!(
            text.contains("Check\\n    tcp-check send-binary 00\\u{1b}[2J"),
            "{args:?}: {text}"
        );
    }
    let v = stdout(&["read", "-V", capture]);
    assert!(v.contains("x-note: \\u{1b}]0;owned\\u{7} and \\0"), "{v}");
    // JSON escapes them as JSON does, and keeps the value itself.
    let calls = jsonl(&["read", "--calls", "--format", "jsonl", capture]);
    assert_eq!(calls[0]["path"], path);

    let o = Command::new(BIN)
        .args([
            "haproxy",
            capture,
            "--call",
            "0:1",
            "--server",
            "127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = String::from_utf8(o.stdout).unwrap();
    assert!(!obeyed(&config), "{config}");
    // The preface, the HEADERS frame and the DATA frame: the path's fake line stays in a comment.
    let sends = config
        .lines()
        .filter(|l| l.trim_start().starts_with("tcp-check send-binary"))
        .count();
    assert_eq!(sends, 3, "{config}");
    let comment = "    # HEADERS stream 1 END_HEADERS: POST /grpc.health.v1.Health/Check\\n    tcp-check send-binary 00\\u{1b}[2J (";
    assert!(config.contains(comment), "{config}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `copies` of the one connection of an Ethernet/IPv4 pcap, each from its own client port,
/// their packets taken in turn: connections open at the same time, as a busy server sees them.
fn interleaved_copies(path: &str, copies: u16) -> Vec<u8> {
    let data = std::fs::read(path).unwrap();
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let caplen = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        records.push(&data[at..at + 16 + caplen]);
        at += 16 + caplen;
    }
    let tcp = |r: &[u8]| 16 + 14 + usize::from(r[16 + 14] & 0x0f) * 4;
    // The first packet is the client's SYN: its source port is the one each copy changes.
    let client_port = {
        let t = tcp(records[0]);
        [records[0][t], records[0][t + 1]]
    };
    let mut out = data[..24].to_vec();
    for r in &records {
        for k in 0..copies {
            let mut r = r.to_vec();
            let t = tcp(&r);
            let port = (u16::from_be_bytes(client_port) + k).to_be_bytes();
            for p in [t, t + 2] {
                if r[p..p + 2] == client_port {
                    r[p..p + 2].copy_from_slice(&port);
                }
            }
            out.extend_from_slice(&r);
        }
    }
    out
}

/// `--max-connections` bounds the connections followed at once: past it, the least recently
/// active are ended as `evicted`, on one thread or two, and the summary counts them and, in
/// text, says what to do; by default, three at once are all followed to their end.
#[test]
fn max_connections_evicts_the_least_recently_active() {
    let dir = std::env::temp_dir().join(format!("h2scope-cli-max-conn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let three = dir.join("three-at-once.pcap");
    std::fs::write(&three, interleaved_copies(&testdata("grpc-health.pcap"), 3)).unwrap();
    let three = three.to_str().unwrap();
    let ends = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["read", "--format", "jsonl", three];
        all.extend_from_slice(args);
        let events = jsonl(&all);
        let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
        assert_eq!(summary["packets"], 3 * 89);
        let ends: Vec<String> = events
            .iter()
            .filter(|e| e["event"] == "connection")
            .map(|e| e["end"].as_str().unwrap().to_string())
            .collect();
        // The summary counts TCP connections, as `tcp_connections` does: those evicted before
        // any HTTP/2 was seen on them too, which have no `connection` event.
        let evicted = ends.iter().filter(|e| *e == "evicted").count() as u64;
        let counted = summary["evicted_connections"].as_u64().unwrap();
        let tcp = summary["tcp_connections"].as_u64().unwrap();
        assert!(
            evicted <= counted && counted <= tcp && (counted == 0) == (evicted == 0),
            "{args:?}: {counted} evicted of {tcp}, {evicted} connection events"
        );
        assert_eq!(summary["expired_connections"], 0, "{args:?}");
        ends
    };
    let whole = ends(&[]);
    assert_eq!(whole, ["fin", "fin", "fin"]);
    for threads in ["1", "2"] {
        let bounded = ends(&["--max-connections", "2", "--threads", threads]);
        assert!(
            bounded.iter().any(|e| e == "evicted"),
            "{threads} threads: {bounded:?}"
        );
        let text = stdout(&[
            "read",
            "-q",
            "--max-connections",
            "2",
            "--threads",
            threads,
            three,
        ]);
        assert!(
            text.contains("connections evicted: ") && text.contains("--max-connections"),
            "{threads} threads: {text}"
        );
    }
    assert!(!stdout(&["read", "-q", three]).contains("evicted"));
    let out = Command::new(BIN)
        .args(["read", "-q", "--max-connections", "0", three])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-connections"));
    std::fs::remove_dir_all(&dir).ok();
}
