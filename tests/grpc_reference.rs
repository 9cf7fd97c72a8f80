//! gRPC messages against tshark 4.0.17 on the public corpus, with the `.proto` files shipped in
//! `../shared/captures/public/protos/`: the multiset of messages (ports, direction, length) must
//! equal tshark's, and every text value tshark's protobuf dissector shows must be among the
//! values h2scope decodes. Exceptions are named with the reason.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use h2scope::event::Event;
use h2scope::grpc::schema::Schemas;
use h2scope::grpc::Side;
use h2scope::pipeline::{Config, Dissector};
use serde_json::Value;

struct Case {
    file: &'static str,
    protos: &'static [&'static str],
    includes: &'static [&'static str],
    /// tshark counts gRPC-Web trailer frames as messages; h2scope shows them as trailers.
    web_trailers: usize,
    /// tshark decodes no message at all here (see the case); h2scope must find some.
    tshark_fails: bool,
}

const WIRESHARK: &[&str] = &["protos/wireshark/user_defined_types"];
const WKT: &[&str] = &["protos/wireshark/well_know_types"];
const GO_COURSE: &[&str] = &["protos/grpc-go-course"];

const CASES: &[Case] = &[
    Case {
        file: "packt_unary.pcapng",
        protos: GO_COURSE,
        includes: &[],
        web_trailers: 0,
        tshark_fails: false,
    },
    Case {
        file: "packt_server_streaming.pcapng",
        protos: GO_COURSE,
        includes: &[],
        web_trailers: 0,
        tshark_fails: false,
    },
    Case {
        file: "packt_client_streaming.pcapng",
        protos: GO_COURSE,
        includes: &[],
        web_trailers: 0,
        tshark_fails: false,
    },
    Case {
        file: "packt_bidi_streaming.pcapng",
        protos: GO_COURSE,
        includes: &[],
        web_trailers: 0,
        tshark_fails: false,
    },
    Case {
        file: "grpc_person_search.pcapng",
        protos: WIRESHARK,
        includes: WKT,
        web_trailers: 0,
        tshark_fails: false,
    },
    Case {
        file: "grpc_person_search_protobuf_with_image.pcapng",
        protos: WIRESHARK,
        includes: WKT,
        web_trailers: 0,
        tshark_fails: false,
    },
    // JSON bodies under `application/grpc`: tshark shows them in its json layer only.
    Case {
        file: "grpc_person_search_json_with_image.pcapng",
        protos: WIRESHARK,
        includes: WKT,
        web_trailers: 0,
        tshark_fails: false,
    },
    Case {
        file: "client-grpc-web-proto-http2-send-two-unary.pcapng",
        protos: WIRESHARK,
        includes: WKT,
        web_trailers: 2,
        tshark_fails: false,
    },
    // gRPC-Web text (base64) over HTTP/1.1 with chunked bodies.
    Case {
        file: "client-grpc-web-text-http1-send-two-unary.pcapng",
        protos: WIRESHARK,
        includes: WKT,
        web_trailers: 2,
        tshark_fails: false,
    },
    // No .proto exists for these: decoded schema-less.
    Case {
        file: "deepflow_grpc-service-name.pcap",
        protos: &[],
        includes: &[],
        web_trailers: 0,
        tshark_fails: false,
    },
    // TLS, decrypted with the key logs tshark was given.
    Case {
        file: "grpc_sslkeylog_echo_tls.pcapng",
        protos: &["protos/grpc_sslkeylog"],
        includes: &[],
        web_trailers: 0,
        tshark_fails: false,
    },
    Case {
        file: "grpc_person_search_protobuf_and_json_tls.pcapng",
        protos: WIRESHARK,
        includes: WKT,
        web_trailers: 0,
        tshark_fails: false,
    },
    Case {
        file: "sv_http2-errorcode.pcap",
        protos: &[],
        includes: &[],
        web_trailers: 0,
        tshark_fails: false,
    },
];

/// The key log each TLS capture was dissected with.
const KEYLOGS: &[(&str, &str)] = &[
    (
        "grpc_sslkeylog_echo_tls.pcapng",
        "grpc_sslkeylog_echo_tls.keylog",
    ),
    (
        "grpc_person_search_protobuf_and_json_tls.pcapng",
        "grpc_person_search_protobuf_and_json_tls.keylog.txt",
    ),
];

fn config(file: &str) -> Config {
    let mut cfg = Config::default();
    if let Some((_, keylog)) = KEYLOGS.iter().find(|(f, _)| *f == file) {
        cfg.tls_keys = Some(std::sync::Arc::new(
            h2scope::tls::KeyLog::open(&public(keylog)).unwrap(),
        ));
    }
    cfg
}

fn public(p: &str) -> PathBuf {
    PathBuf::from(common::public_capture(p))
}

fn schemas(case: &Case) -> Schemas {
    let mut s = Schemas::bundled();
    let protos: Vec<PathBuf> = case.protos.iter().map(|p| public(p)).collect();
    let includes: Vec<PathBuf> = case.includes.iter().map(|p| public(p)).collect();
    s.add_proto_files(&protos, &includes).unwrap();
    s
}

fn is_text(v: &str) -> bool {
    if v.is_empty() || v.len() > 200 || v.ends_with(" UTC") {
        return false;
    }
    if v.contains(':') && v.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
        return false;
    }
    v.chars().any(|c| c.is_alphabetic())
        && !v
            .replace(['.', '-'], "")
            .chars()
            .all(|c| c.is_ascii_digit())
}

fn reference(file: &str) -> (Vec<(u16, u16, u32)>, Vec<String>) {
    let text = std::fs::read_to_string(public(&format!("{file}.tshark.json"))).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let mut msgs = Vec::new();
    let mut texts = Vec::new();
    for pkt in json.as_array().unwrap() {
        let layers = &pkt["_source"]["layers"];
        let tcp = match &layers["tcp"] {
            Value::Array(a) => &a[0],
            t => t,
        };
        let port = |k: &str| tcp[k].as_str().and_then(|s| s.parse::<u16>().ok());
        let (Some(sp), Some(dp)) = (port("tcp.srcport"), port("tcp.dstport")) else {
            continue;
        };
        let mut stack = vec![&layers["grpc"]];
        while let Some(v) = stack.pop() {
            match v {
                Value::Object(m) => {
                    if let Some(len) = m.get("grpc.message_length").and_then(|l| l.as_str()) {
                        msgs.push((sp, dp, len.parse().unwrap()));
                    }
                    stack.extend(m.values());
                }
                Value::Array(a) => stack.extend(a.iter()),
                _ => {}
            }
        }
        let mut stack = vec![&layers["protobuf"]];
        while let Some(v) = stack.pop() {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        match x.as_str() {
                            Some(s) if k.starts_with("pbf.") && is_text(s) => {
                                texts.push(s.to_string())
                            }
                            _ => stack.push(x),
                        }
                    }
                }
                Value::Array(a) => stack.extend(a.iter()),
                _ => {}
            }
        }
    }
    (msgs, texts)
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn counts<T: Ord + Clone>(v: &[T]) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for x in v {
        *m.entry(x.clone()).or_default() += 1;
    }
    m
}

#[test]
fn messages_and_values_match_tshark() {
    let mut failures = Vec::new();
    for case in CASES {
        let (ref_msgs, ref_texts) = reference(case.file);
        let mut d = Dissector::with_schemas(config(case.file), schemas(case));
        let mut events = Vec::new();
        let mut r =
            h2scope::capture::CaptureReader::open(&common::public_capture(case.file)).unwrap();
        r.for_each_packet(|p| {
            d.packet(p, &mut events);
            true
        })
        .unwrap();
        d.finish(&mut events);
        let mut ours = Vec::new();
        let mut texts = Vec::new();
        for e in &events {
            if let Event::Message(m) = e {
                ours.push((m.origin.src.port(), m.origin.dst.port(), m.decoded.length));
                assert!(
                    m.decoded.json.is_some() || m.decoded.fields.is_some(),
                    "{}: message not decoded: {m:?}",
                    case.file
                );
                if !case.protos.is_empty() && case.file.contains("json") {
                    assert!(m.decoded.json.is_some());
                } else if !case.protos.is_empty() {
                    assert!(m.decoded.type_name.is_some(), "{}: {m:?}", case.file);
                }
                if let Some(j) = &m.decoded.json {
                    strings(&j.to_value(), &mut texts);
                }
                if let Some(f) = &m.decoded.fields {
                    // The strings of the field tree as JSON Lines shows it.
                    let mut json = Vec::new();
                    h2scope::output::jsonl::write_schemaless(&mut json, f);
                    strings(&serde_json::from_slice(&json).unwrap(), &mut texts);
                }
            }
        }
        let (rc, oc) = (counts(&ref_msgs), counts(&ours));
        if case.tshark_fails {
            if !ref_msgs.is_empty() || ours.is_empty() {
                failures.push(format!(
                    "{}: tshark {ref_msgs:?} vs ours {ours:?}",
                    case.file
                ));
            }
        } else if case.web_trailers == 0 {
            if rc != oc {
                failures.push(format!(
                    "{}: messages {ref_msgs:?} vs ours {ours:?}",
                    case.file
                ));
            }
        } else {
            let extra: usize = ref_msgs.len() - ours.len();
            let subset = oc
                .iter()
                .all(|(k, n)| rc.get(k).copied().unwrap_or(0) >= *n);
            if extra != case.web_trailers || !subset {
                failures.push(format!(
                    "{}: messages {ref_msgs:?} vs ours {ours:?}",
                    case.file
                ));
            }
        }
        let tc = counts(&texts);
        for (t, n) in counts(&ref_texts) {
            if tc.get(&t).copied().unwrap_or(0) < n {
                failures.push(format!(
                    "{}: tshark shows {t:?} ×{n}, h2scope not",
                    case.file
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// gRPC-Web trailers in DATA end up as the call's trailers, so grpc-status is known.
#[test]
fn grpc_web_trailers_become_call_trailers() {
    let (events, _) = common::dissect_file(
        &common::public_capture("client-grpc-web-proto-http2-send-two-unary.pcapng"),
        Config::default(),
    );
    let calls = common::calls(&events);
    assert_eq!(calls.len(), 2);
    for c in calls {
        assert_eq!(c.grpc_status(), Some(0));
        assert_eq!((c.request_messages, c.response_messages), (1, 1));
    }
    let sides: Vec<Side> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.side),
            _ => None,
        })
        .collect();
    assert_eq!(
        sides,
        [Side::Request, Side::Response, Side::Request, Side::Response]
    );
}
