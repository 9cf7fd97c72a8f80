//! `read -T grpcurl` on traffic of real peers: a tonic client calls the echo service (with
//! metadata, a deadline, binary metadata, a client stream, a message too long for the command
//! line) and the health service, through a recording proxy. The commands h2scope writes are
//! read back as `sh` would read them, checked against what the client sent, and their calls are
//! made again on the same server (as grpcurl would make them: JSON turned into protobuf with
//! the method's schema, metadata from the `-H` headers); the server answers as it answered the
//! recorded calls.

mod common;

use std::time::Duration;

use base64::Engine;
use common::echo::{Echo, EchoReply, EchoRequest};
use common::recorder::{Link, Recorder};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use tonic::codegen::http;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::Request;
use tonic_prost::ProstCodec;

const BIN: &str = env!("CARGO_BIN_EXE_h2scope");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn req(text: &str, payload: Vec<u8>, seq: i32) -> EchoRequest {
    EchoRequest {
        text: text.into(),
        payload,
        seq,
    }
}

fn path(p: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(p)
}

/// The calls the client makes, with what it sends and what the server answered.
struct Sent {
    unary: EchoRequest,
    unary_reply: EchoReply,
    stream: Vec<EchoRequest>,
    stream_reply: EchoReply,
    long: EchoRequest,
    long_reply: EchoReply,
    trace: Vec<u8>,
}

fn sent() -> Sent {
    let unary = req("o'brien says \"hi\"", vec![0, 1, 2, 255], 42);
    let stream = vec![
        req("a", vec![], 1),
        req("b", vec![7], 2),
        req("c", vec![], -3),
    ];
    let long = req("long", common::noise(7, 6000), 9);
    Sent {
        unary_reply: common::echo::reply(&unary, unary.seq),
        stream_reply: EchoReply {
            text: "a+b+c".into(),
            payload: Vec::new(),
            seq: 3,
        },
        long_reply: common::echo::reply(&long, long.seq),
        unary,
        stream,
        long,
        trace: vec![0xde, 0xad, 0xbe, 0xef, 0x00],
    }
}

/// One call in the output: its comment lines, and its command's words with the here-document's
/// lines, if it has a command.
#[derive(Debug)]
struct Block {
    comments: Vec<String>,
    words: Vec<String>,
    stdin: Vec<String>,
}

fn blocks(script: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut lines = script.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("# call ") {
            out.push(Block {
                comments: vec![line.to_string()],
                words: Vec::new(),
                stdin: Vec::new(),
            });
        } else if let Some(rest) = line.strip_prefix('#') {
            out.last_mut()
                .unwrap()
                .comments
                .push(rest.trim().to_string());
        } else {
            let b = out.last_mut().expect("a command after its call's comment");
            assert!(b.words.is_empty(), "two commands for one call: {script}");
            let (line, heredoc) = match line.strip_suffix(" <<'H2SCOPE_EOF'") {
                Some(command) => (command, Some("H2SCOPE_EOF")),
                None => (line, None),
            };
            let words = common::sh_words(line);
            if let Some(end) = heredoc {
                for l in lines.by_ref() {
                    if l == end {
                        break;
                    }
                    b.stdin.push(l.to_string());
                }
            }
            b.words = words;
        }
    }
    out
}

impl Block {
    fn method(&self) -> &str {
        self.words.last().unwrap()
    }
    fn target(&self) -> &str {
        &self.words[self.words.len() - 2]
    }
    /// The values of every `flag`.
    fn flag(&self, flag: &str) -> Vec<&str> {
        self.words
            .windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }
    /// The request messages as JSON, from `-d` or, for `-d @`, from standard input. grpcurl
    /// reads a stream of JSON values either way.
    fn messages(&self) -> Vec<serde_json::Value> {
        let d = self.flag("-d");
        assert_eq!(d.len(), 1, "{self:?}");
        let text = if d[0] == "@" {
            self.stdin.join("\n")
        } else {
            d[0].to_string()
        };
        serde_json::Deserializer::from_str(&text)
            .into_iter::<serde_json::Value>()
            .map(Result::unwrap)
            .collect()
    }
}

fn echo_pool() -> DescriptorPool {
    let mut c = protox::Compiler::new([format!("{ROOT}/tests/data")]).unwrap();
    c.open_files(["echo.proto"]).unwrap();
    DescriptorPool::decode(c.encode_file_descriptor_set().as_slice()).unwrap()
}

/// JSON as grpcurl turns it into a message: with the schema, by the protobuf JSON mapping.
fn to_request(pool: &DescriptorPool, json: &serde_json::Value) -> EchoRequest {
    let desc = pool.get_message_by_name("test.echo.EchoRequest").unwrap();
    let m = DynamicMessage::deserialize(desc, json.clone()).unwrap();
    EchoRequest::decode(m.encode_to_vec().as_slice()).unwrap()
}

fn h2scope(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .current_dir(ROOT)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A request with the metadata of the command's `-H` headers, as grpcurl makes it: a binary
/// header's value is base64, decoded.
fn with_metadata<T>(b: &Block, mut r: Request<T>) -> Request<T> {
    for h in b.flag("-H") {
        let (name, value) = h.split_once(':').unwrap();
        let value = value.trim();
        if name.ends_with("-bin") {
            let key = MetadataKey::from_bytes(name.as_bytes()).unwrap();
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(value.trim_end_matches('='))
                .unwrap();
            r.metadata_mut()
                .insert_bin(key, MetadataValue::from_bytes(&bytes));
        } else {
            let key = MetadataKey::from_bytes(name.as_bytes()).unwrap();
            r.metadata_mut().insert(key, value.parse().unwrap());
        }
    }
    r
}

/// The call a command makes, made with tonic: its metadata from `-H`, its messages from the
/// JSON, on the server it names.
async fn make_again(b: &Block, pool: &DescriptorPool) -> EchoReply {
    let target = b.target().to_string();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let messages: Vec<EchoRequest> = b.messages().iter().map(|j| to_request(pool, j)).collect();
    let codec = ProstCodec::<EchoRequest, EchoReply>::default();
    let method = format!("/{}", b.method());
    let method = http::uri::PathAndQuery::try_from(method).unwrap();
    if b.method().ends_with("ClientStream") {
        let r = with_metadata(b, Request::new(tokio_stream::iter(messages)));
        grpc.client_streaming(r, method, codec)
            .await
            .unwrap()
            .into_inner()
    } else {
        assert_eq!(messages.len(), 1);
        let r = with_metadata(b, Request::new(messages.into_iter().next().unwrap()));
        grpc.unary(r, method, codec).await.unwrap().into_inner()
    }
}

/// Every word comes back from the shell as it was, whatever it holds.
#[test]
fn the_shell_reads_the_words_back() {
    for w in [
        "plain",
        "a b",
        "it's",
        "",
        "$HOME",
        "`id`",
        "[::1]:50051",
        "x'y'z",
        "*",
        "a\\b",
        "{\"k\":\"v w\"}",
        "tab\there",
        "new\nline",
        "~",
        "#",
        "!",
    ] {
        let line = h2scope::output::grpcurl::shell_word(w);
        assert_eq!(common::sh_words(&line), [w], "{line}");
    }
}

#[test]
fn commands_make_the_recorded_calls_again() {
    let rec = Recorder::new(Link::Ethernet, 1460, 5_000);
    let sent = sent();
    let dir = std::env::temp_dir().join(format!("h2scope-grpcurl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("calls.pcap");
    let file_arg = file.to_str().unwrap().to_string();
    let rec2 = rec.clone();
    rec.run(async {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<tonic_health::pb::health_server::HealthServer<
                tonic_health::server::HealthService,
            >>()
            .await;
        let upstream = common::serve(
            tonic::transport::Server::builder()
                .add_service(Echo)
                .add_service(health),
        )
        .await;
        let channel = rec2.channel(upstream).await;
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        let codec = || ProstCodec::<EchoRequest, EchoReply>::default();

        let mut r = Request::new(sent.unary.clone());
        r.set_timeout(Duration::from_secs(30));
        r.metadata_mut()
            .insert("x-user", "o'brien".parse().unwrap());
        r.metadata_mut()
            .insert_bin("x-trace-bin", MetadataValue::from_bytes(&sent.trace));
        grpc.ready().await.unwrap();
        let reply = grpc
            .unary(r, path("/test.echo.Echo/Unary"), codec())
            .await
            .unwrap();
        assert_eq!(reply.into_inner(), sent.unary_reply);

        grpc.ready().await.unwrap();
        let reply = grpc
            .client_streaming(
                Request::new(tokio_stream::iter(sent.stream.clone())),
                path("/test.echo.Echo/ClientStream"),
                codec(),
            )
            .await
            .unwrap();
        assert_eq!(reply.into_inner(), sent.stream_reply);

        grpc.ready().await.unwrap();
        let reply = grpc
            .unary(
                Request::new(sent.long.clone()),
                path("/test.echo.Echo/Unary"),
                codec(),
            )
            .await
            .unwrap();
        assert_eq!(reply.into_inner(), sent.long_reply);

        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        // The server is still up: the commands are read and their calls made again on it.
        rec2.write_pcap(&file);
        let proto = "tests/data/echo.proto";
        let script = h2scope(&["read", "-T", "grpcurl", "--proto", proto, &file_arg]);
        let found = blocks(&script);
        assert_eq!(found.len(), 4, "{script}");
        let pool = echo_pool();

        // The unary call: metadata, deadline, binary metadata as base64, the schema's files.
        let unary = &found[0];
        assert_eq!(unary.method(), "test.echo.Echo/Unary", "{script}");
        assert_eq!(unary.target(), upstream.to_string());
        assert_eq!(unary.words[0], "grpcurl");
        assert!(unary.words.contains(&"-plaintext".to_string()));
        assert_eq!(unary.flag("-import-path"), ["tests/data"]);
        assert_eq!(unary.flag("-proto"), ["echo.proto"]);
        let trace = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&sent.trace);
        let headers = unary.flag("-H");
        assert!(headers.contains(&"x-user: o'brien"), "{headers:?}");
        assert!(
            headers
                .iter()
                .any(|h| h.trim_end_matches('=') == format!("x-trace-bin: {trace}")),
            "{headers:?}"
        );
        let deadline: f64 = unary.flag("-max-time")[0].parse().unwrap();
        assert!(deadline > 25.0 && deadline <= 30.0, "{deadline}");
        let messages: Vec<EchoRequest> = unary
            .messages()
            .iter()
            .map(|j| to_request(&pool, j))
            .collect();
        assert_eq!(messages, std::slice::from_ref(&sent.unary));
        // The recorded answer is in a comment, to compare a call made again with.
        let answer = unary
            .comments
            .iter()
            .find_map(|c| c.strip_prefix("answered: "))
            .unwrap_or_else(|| panic!("{unary:?}"));
        let desc = pool.get_message_by_name("test.echo.EchoReply").unwrap();
        let json: serde_json::Value = serde_json::from_str(answer).unwrap();
        let answer = DynamicMessage::deserialize(desc, json).unwrap();
        assert_eq!(
            EchoReply::decode(answer.encode_to_vec().as_slice()).unwrap(),
            sent.unary_reply
        );

        let stream = &found[1];
        assert_eq!(stream.method(), "test.echo.Echo/ClientStream");
        let messages: Vec<EchoRequest> = stream
            .messages()
            .iter()
            .map(|j| to_request(&pool, j))
            .collect();
        assert_eq!(messages, sent.stream);

        // 6000 bytes of payload are 8000 of base64: given on standard input.
        let long = &found[2];
        assert_eq!(long.flag("-d"), ["@"]);
        assert_eq!(long.stdin.len(), 1);
        let messages: Vec<EchoRequest> = long
            .messages()
            .iter()
            .map(|j| to_request(&pool, j))
            .collect();
        assert_eq!(messages, std::slice::from_ref(&sent.long));

        // The health check is decoded with the bundled schema, which grpcurl gets by
        // reflection: no schema flags for it.
        let check = &found[3];
        assert_eq!(check.method(), "grpc.health.v1.Health/Check");
        assert!(check.flag("-proto").is_empty() && check.flag("-import-path").is_empty());
        assert_eq!(check.messages(), [serde_json::json!({})]);

        // Made again, the calls get the answers the recorded ones got.
        assert_eq!(make_again(unary, &pool).await, sent.unary_reply);
        assert_eq!(make_again(stream, &pool).await, sent.stream_reply);
        assert_eq!(make_again(long, &pool).await, sent.long_reply);

        // Without the schema, the echo calls cannot be made again, and the output says why.
        let script = h2scope(&["read", "-T", "grpcurl", &file_arg]);
        let found = blocks(&script);
        assert_eq!(found.len(), 4, "{script}");
        for b in &found[..3] {
            assert!(b.words.is_empty(), "{b:?}");
            assert!(
                b.comments[1].starts_with("no command: request message 0")
                    && b.comments[1].contains("no schema"),
                "{b:?}"
            );
        }
        assert_eq!(found[3].method(), "grpc.health.v1.Health/Check");

        // A display filter chooses calls; the messages they are made of still count.
        let script = h2scope(&[
            "read",
            "-T",
            "grpcurl",
            "--proto",
            proto,
            "-Y",
            "path contains \"Stream\"",
            &file_arg,
        ]);
        let found = blocks(&script);
        assert_eq!(found.len(), 1, "{script}");
        assert_eq!(found[0].messages().len(), 3);

        // On two threads, the same script.
        let one = h2scope(&[
            "read",
            "-T",
            "grpcurl",
            "--proto",
            proto,
            "--threads",
            "1",
            &file_arg,
        ]);
        let two = h2scope(&[
            "read",
            "-T",
            "grpcurl",
            "--proto",
            proto,
            "--threads",
            "2",
            &file_arg,
        ]);
        assert_eq!(one, two);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
