//! Protocol edge cases on hand-made conversations: violations are annotated and decoding goes on;
//! HPACK failures mark one direction; settings bound the peer's HPACK encoder once acknowledged.

mod common;

use common::{calls, frame, frames, segments_capture};
use h2scope::event::{ErrorKind, Event, FrameEvent};
use h2scope::grpc::message::Schemaless;
use h2scope::grpc::wire::{Node, WireValue};
use h2scope::http2::call::CallEnd;
use h2scope::http2::frame::{flags, FrameType, PREFACE};
use h2scope::http2::hpack::encode_plain;
use h2scope::pipeline::Config;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const EH: u8 = flags::END_HEADERS;
const ES: u8 = flags::END_STREAM;

fn block(headers: &[(&str, &str)]) -> Vec<u8> {
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let mut out = Vec::new();
    encode_plain(&pairs, &mut out);
    out
}

fn request(path: &str) -> Vec<u8> {
    block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
    ])
}

fn client(frames: &[Vec<u8>]) -> (bool, Vec<u8>) {
    (true, frames.concat())
}

fn server(frames: &[Vec<u8>]) -> (bool, Vec<u8>) {
    (false, frames.concat())
}

fn run(segments: &[(bool, Vec<u8>)]) -> Vec<Event> {
    let (events, _, ok) = common::dissect_bytes(segments_capture(segments), Config::default());
    assert!(ok);
    events
}

fn notes_of(f: &FrameEvent) -> String {
    f.notes.join("; ")
}

#[test]
fn violations_are_annotated_and_decoding_goes_on() {
    let events = run(&[
        (true, PREFACE.to_vec()),
        client(&[
            frame(SETTINGS, 0, 0, &[]),
            frame(DATA, 0, 0, b"x"),
            frame(HEADERS, EH | ES, 2, &request("/even")),
            frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0]),
            frame(PING, 0, 0, &[1; 7]),
            frame(SETTINGS, 0, 3, &[]),
            frame(HEADERS, EH | ES, 1, &request("/ok")),
        ]),
        server(&[
            frame(SETTINGS, 0, 0, &[]),
            frame(HEADERS, EH, 1, &block(&[(":status", "200")])),
            frame(DATA, ES, 1, b"hello"),
            frame(DATA, 0, 1, b"late"),
            frame(DATA, 0, 5, &vec![0u8; 20_000]),
        ]),
    ]);
    let f = frames(&events);
    assert_eq!(f.len(), 12);
    let note = |i: usize| notes_of(f[i]);
    assert!(note(1).contains("DATA on stream 0"), "{}", note(1));
    assert!(note(2).contains("even-numbered stream 2"), "{}", note(2));
    assert!(note(3).contains("increment 0"), "{}", note(3));
    assert!(note(4).contains("PING payload of 7 bytes"), "{}", note(4));
    assert!(note(5).contains("SETTINGS on stream 3"), "{}", note(5));
    assert!(note(6).is_empty(), "{}", note(6));
    assert!(note(10).contains("DATA on closed stream 1"), "{}", note(10));
    assert!(
        note(11).contains("exceed SETTINGS_MAX_FRAME_SIZE 16384"),
        "{}",
        note(11)
    );
    let ok = calls(&events)
        .into_iter()
        .find(|c| c.path().as_deref() == Some("/ok"))
        .unwrap();
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.response_bytes, 5);
    assert_eq!(ok.end, CallEnd::Complete);
}

#[test]
fn interrupted_header_block_loses_that_directions_hpack_only() {
    let req = request("/a");
    let (first, rest) = req.split_at(4);
    let events = run(&[
        (true, PREFACE.to_vec()),
        client(&[
            frame(HEADERS, 0, 1, first),
            frame(DATA, ES, 1, b"x"),
            frame(CONTINUATION, EH, 1, rest),
            frame(HEADERS, EH | ES, 3, &request("/b")),
        ]),
        server(&[frame(HEADERS, EH | ES, 3, &block(&[(":status", "404")]))]),
    ]);
    let f = frames(&events);
    assert!(notes_of(f[1]).contains("CONTINUATION expected"));
    assert!(notes_of(f[2]).contains("CONTINUATION without a preceding HEADERS"));
    assert!(f[3].headers.is_none());
    assert!(notes_of(f[3]).contains("HPACK state lost"));
    // The server's direction has its own HPACK state and is still decoded.
    assert_eq!(f[4].headers.as_ref().unwrap()[0].value[..], b"404"[..]);
}

#[test]
fn hpack_error_is_reported_once_and_frames_still_shown() {
    let events = run(&[
        (true, PREFACE.to_vec()),
        client(&[
            frame(HEADERS, EH, 1, &[0x3f]),
            frame(HEADERS, EH | ES, 3, &request("/b")),
            frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()),
        ]),
    ]);
    let hpack_errors: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::Error(er) if er.kind == ErrorKind::Hpack))
        .collect();
    assert_eq!(hpack_errors.len(), 1);
    let f = frames(&events);
    assert_eq!(f.len(), 3);
    assert!(f.iter().all(|f| f.headers.is_none()));
    let c = calls(&events);
    let reset = c.iter().find(|c| c.stream == 3).unwrap();
    assert_eq!(
        reset.end,
        CallEnd::Reset {
            by_client: true,
            error_code: 8
        }
    );
}

/// SETTINGS_HEADER_TABLE_SIZE=100 from the server: once the client has acknowledged it, a size
/// update above 100 in the client's next block is an HPACK error; before the ACK it is allowed.
#[test]
fn header_table_size_bounds_the_peer_after_ack() {
    let settings = frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 100]);
    let mut big_update = vec![0x3f, 0xe1, 0x1f]; // dynamic table size update to 4096
    big_update.extend_from_slice(&request("/x"));
    let before_ack = run(&[
        (true, PREFACE.to_vec()),
        server(std::slice::from_ref(&settings)),
        client(&[frame(HEADERS, EH | ES, 1, &big_update)]),
    ]);
    assert!(!before_ack.iter().any(|e| matches!(e, Event::Error(_))));
    assert_eq!(frames(&before_ack)[1].table_size_updates, vec![4096]);

    let after_ack = run(&[
        (true, PREFACE.to_vec()),
        server(&[settings]),
        client(&[
            frame(SETTINGS, flags::ACK, 0, &[]),
            frame(HEADERS, EH | ES, 1, &big_update),
        ]),
    ]);
    assert!(after_ack
        .iter()
        .any(|e| matches!(e, Event::Error(er) if er.kind == ErrorKind::Hpack)));
}

#[test]
fn preface_split_across_segments_and_server_speaking_first() {
    let events = run(&[
        server(&[frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])]),
        (true, PREFACE[..5].to_vec()),
        (true, PREFACE[5..].to_vec()),
        client(&[frame(HEADERS, EH | ES, 1, &request("/split"))]),
        server(&[frame(HEADERS, EH | ES, 1, &block(&[(":status", "200")]))]),
    ]);
    let f = frames(&events);
    assert_eq!(f.len(), 3);
    // The server's SETTINGS is reported with the packet that carried it (record 3).
    assert_eq!(f[0].origin.packet, 3);
    assert_eq!(calls(&events)[0].path().as_deref(), Some("/split"));
}

/// gRPC C-core servers send their SETTINGS as soon as they accept, with settings of their own
/// (0xfe03, true binary metadata): HTTP/2 from the first packet. A server-first SETTINGS with a
/// setting nobody defined is held until the client's preface confirms it; without one, the
/// connection is not HTTP/2.
#[test]
fn server_speaking_first_with_settings_of_its_own() {
    let settings = |id: u16| {
        let mut body = vec![0, 4, 0, 0x3f, 0xff, 0xff];
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 1]);
        frame(SETTINGS, 0, 0, &body)
    };
    for id in [0xfe03, 0x7777] {
        let events = run(&[
            server(&[settings(id)]),
            (true, PREFACE.to_vec()),
            client(&[frame(HEADERS, EH | ES, 1, &request("/first"))]),
            server(&[frame(HEADERS, EH | ES, 1, &block(&[(":status", "200")]))]),
        ]);
        assert_eq!(frames(&events).len(), 3, "setting {id:#x}");
        // Known at once with gRPC's setting; otherwise held until the preface confirmed it,
        // and shown with its own packet all the same.
        assert_eq!(frames(&events)[0].origin.packet, 3, "setting {id:#x}");
        assert_eq!(calls(&events)[0].path().as_deref(), Some("/first"));
    }
    let (events, stats, _) = common::dissect_bytes(
        segments_capture(&[
            server(&[settings(0x7777)]),
            (true, b"not a preface at all, nor HTTP/1.1".to_vec()),
        ]),
        Config::default(),
    );
    assert!(events.is_empty());
    assert_eq!(stats.other_connections, 1);
}

/// In a connection joined mid-way, a whole SETTINGS frame first says nothing of who is the
/// client: the client's follows a preface the capture may have missed. Without a header block
/// to tell, the side on the higher (ephemeral) port is the client, as for any frames found
/// mid-way; the server-first rule is for connections seen from their start. Here the client,
/// curl-like, is on the higher port and its SETTINGS comes first.
#[test]
fn mid_way_settings_first_is_not_taken_for_a_server_speaking_first() {
    // The capture's "server" side (port 50051) is the real client here.
    let curl = |frames: &[Vec<u8>]| (false, frames.concat());
    let responder = |frames: &[Vec<u8>]| (true, frames.concat());
    let (events, _, ok) = common::dissect_bytes(
        common::segments_capture_with(
            &[
                curl(&[frame(
                    SETTINGS,
                    0,
                    0,
                    &[0, 3, 0, 0, 0, 100, 0, 2, 0, 0, 0, 0],
                )]),
                responder(&[frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 128])]),
                curl(&[frame(SETTINGS, flags::ACK, 0, &[])]),
            ],
            false,
        ),
        Config::default(),
    );
    assert!(ok);
    let end = events
        .iter()
        .find_map(|e| match e {
            Event::ConnectionEnd(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(end.client.port(), 50051);
    assert!(end.mid);
    let senders: Vec<(u16, bool)> = frames(&events)
        .iter()
        .map(|f| (f.origin.src.port(), f.from_client))
        .collect();
    assert_eq!(senders, [(50051, true), (40000, false), (50051, true)]);
}

/// A server that has answered whole may ask the client to stop the rest of its request with
/// RST_STREAM(NO_ERROR) (RFC 9113 §8.1), as gRPC C-core does when tonic's END_STREAM comes in a
/// frame of its own after the request. The call is complete, its request stopped; the client's
/// END_STREAM that crossed the reset makes no note. A reset with another code, or before the
/// response ended, is still a reset.
#[test]
fn a_server_stopping_the_request_after_a_whole_answer_completes_the_call() {
    let status = block(&[(":status", "200"), ("grpc-status", "0")]);
    let answer = |stream: u32, end: bool, code: u32| {
        let mut frames = vec![frame(HEADERS, EH, stream, &block(&[(":status", "200")]))];
        if end {
            frames.push(frame(HEADERS, EH | ES, stream, &status));
        }
        frames.push(frame(RST_STREAM, 0, stream, &code.to_be_bytes()));
        server(&frames)
    };
    let events = run(&[
        (true, PREFACE.to_vec()),
        client(&[
            frame(HEADERS, EH, 1, &request("/stopped")),
            frame(DATA, 0, 1, &[0, 0, 0, 0, 0]),
        ]),
        answer(1, true, 0),
        client(&[frame(DATA, ES, 1, &[])]),
        client(&[frame(HEADERS, EH, 3, &request("/cancelled"))]),
        answer(3, true, 8),
        client(&[frame(HEADERS, EH, 5, &request("/unanswered"))]),
        answer(5, false, 0),
    ]);
    let c = calls(&events);
    assert_eq!(c.len(), 3, "{c:#?}");
    assert_eq!(c[0].path().as_deref(), Some("/stopped"));
    assert_eq!(c[0].end, CallEnd::Complete);
    assert!(c[0].request_stopped && !c[0].request_ended);
    assert_eq!((c[0].grpc_status(), c[0].request_messages), (Some(0), 1));
    let reset = |error_code| CallEnd::Reset {
        by_client: false,
        error_code,
    };
    assert_eq!((c[1].end, c[1].request_stopped), (reset(8), false));
    assert_eq!((c[2].end, c[2].request_stopped), (reset(0), false));
    let noted: Vec<String> = frames(&events)
        .iter()
        .filter(|f| !f.notes.is_empty())
        .map(|f| format!("{} {}", f.header.stream, notes_of(f)))
        .collect();
    assert!(noted.is_empty(), "{noted:?}");

    // The same in the wild: a GET whose HEADERS did not end the stream, answered whole, then
    // the server's RST_STREAM(NO_ERROR).
    let (events, _) = common::dissect_file(
        &common::public_capture("sv_http2-continuation.pcap"),
        Config::default(),
    );
    let c = calls(&events);
    assert_eq!(c.len(), 1, "{c:#?}");
    assert_eq!(
        (c[0].path().as_deref(), c[0].status()),
        (Some("/tata"), Some(200))
    );
    assert_eq!((c[0].end, c[0].request_stopped), (CallEnd::Complete, true));
}

/// A client gives up on a call (its deadline passed) and resets the stream; the server's answer
/// was already on its way, as gRPC C-core's trailers-only DEADLINE_EXCEEDED and a DATA frame
/// are here. RFC 9113 §5.4.2 expects such frames: they make no second call on the stream and
/// no note, while DATA on a stream that ended normally is still STREAM_CLOSED. The status and
/// the message that crossed the reset are the reset call's.
#[test]
fn frames_in_flight_across_a_reset_make_no_new_call() {
    let status = |code: &str| block(&[(":status", "200"), ("grpc-status", code)]);
    let events = run(&[
        (true, PREFACE.to_vec()),
        client(&[frame(HEADERS, EH | ES, 1, &request("/slow"))]),
        client(&[frame(RST_STREAM, 0, 1, &8u32.to_be_bytes())]),
        server(&[
            frame(DATA, 0, 1, &[0, 0, 0, 0, 0]),
            frame(HEADERS, EH | ES, 1, &status("4")),
            frame(RST_STREAM, 0, 1, &0u32.to_be_bytes()),
        ]),
        client(&[frame(HEADERS, EH | ES, 3, &request("/next"))]),
        server(&[frame(HEADERS, EH | ES, 3, &status("0"))]),
        server(&[frame(DATA, 0, 3, &[0, 0, 0, 0, 0])]),
    ]);
    let c = calls(&events);
    assert_eq!(c.len(), 2, "{c:#?}");
    assert_eq!(c[0].path().as_deref(), Some("/slow"));
    assert_eq!(
        c[0].end,
        CallEnd::Reset {
            by_client: true,
            error_code: 8
        }
    );
    assert_eq!(c[0].grpc_status(), Some(4));
    assert!(!c[0].reset_at_deadline());
    // The message that crossed too.
    assert_eq!((c[0].response_messages, c[0].response_bytes), (1, 5));
    assert_eq!(c[1].path().as_deref(), Some("/next"));
    let notes: Vec<(u32, String)> = frames(&events)
        .iter()
        .filter(|f| !f.notes.is_empty())
        .map(|f| (f.header.stream, notes_of(f)))
        .collect();
    assert_eq!(
        notes,
        [(3, "DATA on closed stream 3 (STREAM_CLOSED)".to_string())]
    );

    // The same in the wild: a DNS-over-HTTPS client cancels stream 7, whose answer (HEADERS
    // and two DATA frames) was already on its way.
    let (events, _) = common::dissect_file(
        &common::public_capture("sv_dns-over-http2.pcap"),
        Config::default(),
    );
    let c = calls(&events);
    let on_7: Vec<_> = c.iter().filter(|c| c.stream == 7).collect();
    assert_eq!(on_7.len(), 1, "{c:#?}");
    assert!(matches!(
        on_7[0].end,
        CallEnd::Reset {
            by_client: true,
            error_code: 8
        }
    ));
    // Its answer, status and bytes, is the call's.
    assert_eq!(on_7[0].status(), Some(200));
    assert_eq!(on_7[0].response_bytes, 468);
    assert!(frames(&events).iter().all(|f| f.notes.is_empty()));
}

/// What the events of a timed conversation say, in order: `frame STREAM TYPE` for frames and
/// `call STREAM` for calls, with a call's grpc-status if it has one.
fn timeline(segments: &[(i64, bool, Vec<u8>)]) -> Vec<String> {
    let capture = common::timed_capture(segments, true);
    let (events, _, ok) = common::dissect_bytes(capture, Config::default());
    assert!(ok);
    events
        .iter()
        .filter_map(|e| match e {
            Event::Frame(f) if f.header.stream != 0 => {
                Some(format!("frame {} {}", f.header.stream, f.header.kind))
            }
            Event::Call(c) => Some(match c.grpc_status() {
                Some(g) => format!("call {} status {g}", c.stream),
                None => format!("call {}", c.stream),
            }),
            _ => None,
        })
        .collect()
}

const MS: i64 = 1_000_000;
const T0: i64 = 1_700_000_000 * 1_000_000_000;

/// A call the client reset while its answer was unfinished is held for an answer that may
/// cross the reset, for a second of capture time: the connection's first packet a second after
/// the reset lets it go, before that packet's frames; one within the second does not. Nothing
/// crossed here, so the call has no status.
#[test]
fn a_reset_call_waits_a_second_for_an_answer_crossing_its_reset() {
    let events = timeline(&[
        (
            T0,
            true,
            [PREFACE.to_vec(), frame(HEADERS, EH | ES, 1, &request("/a"))].concat(),
        ),
        (T0 + MS, true, frame(RST_STREAM, 0, 1, &8u32.to_be_bytes())),
        (
            T0 + 500 * MS,
            true,
            frame(HEADERS, EH | ES, 3, &request("/b")),
        ),
        (
            T0 + 1200 * MS,
            false,
            frame(
                HEADERS,
                EH | ES,
                3,
                &block(&[(":status", "200"), ("grpc-status", "0")]),
            ),
        ),
    ]);
    assert_eq!(
        events,
        [
            "frame 1 HEADERS",
            "frame 1 RST_STREAM",
            "frame 3 HEADERS",
            "call 1",
            "frame 3 HEADERS",
            "call 3 status 0",
        ],
    );
}

/// A held call goes as soon as nothing more can cross: the server's trailers (END_STREAM) or
/// its own RST_STREAM on the stream, after the frame that brought them; and its answer's
/// headers and trailers, which came after the reset, are the call's.
#[test]
fn a_held_call_goes_with_the_answer_that_crossed_its_reset() {
    let status = |code: &str| block(&[("grpc-status", code), ("grpc-message", "late")]);
    let events = timeline(&[
        (
            T0,
            true,
            [
                PREFACE.to_vec(),
                frame(HEADERS, EH | ES, 1, &request("/a")),
                frame(HEADERS, EH | ES, 3, &request("/b")),
            ]
            .concat(),
        ),
        (
            T0 + MS,
            true,
            [
                frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()),
                frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()),
            ]
            .concat(),
        ),
        (
            T0 + 2 * MS,
            false,
            frame(HEADERS, EH, 1, &block(&[(":status", "200")])),
        ),
        (T0 + 3 * MS, false, frame(HEADERS, EH | ES, 1, &status("4"))),
        (
            T0 + 4 * MS,
            false,
            frame(RST_STREAM, 0, 3, &0u32.to_be_bytes()),
        ),
    ]);
    assert_eq!(
        events,
        [
            "frame 1 HEADERS",
            "frame 3 HEADERS",
            "frame 1 RST_STREAM",
            "frame 3 RST_STREAM",
            "frame 1 HEADERS",
            "frame 1 HEADERS",
            "call 1 status 4",
            "frame 3 RST_STREAM",
            "call 3",
        ],
    );
}

/// The answer to a held call is its call's even when many other streams were reset since (the
/// server's resets of sixteen other calls here): it opens no call of its own.
#[test]
fn a_held_call_gets_its_answer_after_many_other_resets() {
    let mut opened = vec![PREFACE.to_vec()];
    let mut resets = Vec::new();
    for i in 0..17u32 {
        opened.push(frame(HEADERS, EH | ES, 1 + 2 * i, &request("/a")));
        if i > 0 {
            resets.push(frame(RST_STREAM, 0, 1 + 2 * i, &2u32.to_be_bytes()));
        }
    }
    let late = block(&[(":status", "200"), ("grpc-status", "4")]);
    let events = timeline(&[
        (T0, true, opened.concat()),
        (T0 + MS, true, frame(RST_STREAM, 0, 1, &8u32.to_be_bytes())),
        (T0 + 2 * MS, false, resets.concat()),
        (T0 + 3 * MS, false, frame(HEADERS, EH | ES, 1, &late)),
    ]);
    let calls: Vec<&String> = events.iter().filter(|e| e.starts_with("call")).collect();
    assert_eq!(calls.len(), 17, "{events:#?}");
    assert_eq!(events.last().unwrap(), "call 1 status 4", "{events:#?}");
}

/// At most sixteen calls are held on a connection: the seventeenth reset lets the first go at
/// once. A call whose answer had ended is not held, nor is one the server reset; the
/// connection's end lets go of the rest, in the order they were reset.
#[test]
fn held_calls_are_bounded_and_let_go_at_the_end() {
    let mut opened = vec![PREFACE.to_vec()];
    let mut resets = Vec::new();
    for i in 0..17u32 {
        opened.push(frame(HEADERS, EH | ES, 1 + 2 * i, &request("/a")));
        resets.push(frame(RST_STREAM, 0, 1 + 2 * i, &8u32.to_be_bytes()));
    }
    let ok = block(&[(":status", "200"), ("grpc-status", "0")]);
    let events = timeline(&[
        (T0, true, opened.concat()),
        (T0 + MS, true, resets.concat()),
        (
            T0 + 2 * MS,
            true,
            frame(HEADERS, EH | ES, 35, &request("/b")),
        ),
        (
            T0 + 3 * MS,
            false,
            frame(RST_STREAM, 0, 35, &2u32.to_be_bytes()),
        ),
        (T0 + 4 * MS, true, frame(HEADERS, EH, 37, &request("/c"))),
        (T0 + 5 * MS, false, frame(HEADERS, EH | ES, 37, &ok)),
        (
            T0 + 6 * MS,
            true,
            frame(RST_STREAM, 0, 37, &8u32.to_be_bytes()),
        ),
    ]);
    let position = |what: &str| events.iter().position(|e| e == what).unwrap();
    assert!(
        position("call 1") < position("frame 33 RST_STREAM"),
        "{events:#?}"
    );
    assert_eq!(
        position("call 37 status 0"),
        position("frame 37 RST_STREAM") + 1,
        "{events:#?}"
    );
    let calls: Vec<&str> = events
        .iter()
        .filter(|e| e.starts_with("call"))
        .map(String::as_str)
        .collect();
    let held: Vec<String> = (3..=33).step_by(2).map(|s| format!("call {s}")).collect();
    assert_eq!(
        calls[..3],
        ["call 1", "call 35", "call 37 status 0"],
        "{events:#?}"
    );
    assert_eq!(calls[3..], held, "{events:#?}");
}

#[test]
fn not_http2_is_skipped_quietly() {
    let (events, stats, _) = common::dissect_bytes(
        segments_capture(&[
            (true, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            (
                false,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
            ),
        ]),
        Config::default(),
    );
    assert!(events.is_empty());
    assert_eq!(stats.other_connections, 1);
    assert_eq!(stats.http2_connections, 0);
}

#[test]
fn forced_port_decodes_without_preface() {
    let segments = [
        client(&[frame(HEADERS, EH | ES, 1, &request("/forced"))]),
        server(&[frame(HEADERS, EH | ES, 1, &block(&[(":status", "200")]))]),
    ];
    let (events, _, _) = common::dissect_bytes(segments_capture(&segments), Config::default());
    assert!(frames(&events).is_empty());
    let mut cfg = Config::default();
    cfg.http2.forced_ports = vec![50051];
    let (events, _, _) = common::dissect_bytes(segments_capture(&segments), cfg);
    assert_eq!(frames(&events).len(), 2);
    assert_eq!(calls(&events)[0].path().as_deref(), Some("/forced"));
}

/// A failed gRPC call whose trailers carry `grpc-status-details-bin` (a google.rpc.Status with
/// an ErrorInfo detail) and a percent-encoded `grpc-message`.
#[test]
fn grpc_status_details_and_message_are_decoded() {
    use base64::Engine;
    use prost::Message;
    // google.rpc.Status { code: 8, message: "slow", details: [Any(ErrorInfo{reason: "QUOTA"})] }
    let error_info = [0x0a, 0x05, b'Q', b'U', b'O', b'T', b'A'];
    let type_url = b"type.googleapis.com/google.rpc.ErrorInfo";
    let any = prost_types::Any {
        type_url: String::from_utf8(type_url.to_vec()).unwrap(),
        value: error_info.to_vec(),
    };
    let mut status = vec![0x08, 0x08, 0x12, 0x04];
    status.extend_from_slice(b"slow");
    let any_bytes = any.encode_to_vec();
    status.push(0x1a);
    status.push(any_bytes.len() as u8);
    status.extend_from_slice(&any_bytes);
    let details = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&status);
    let trailers = block(&[
        ("grpc-status", "8"),
        ("grpc-message", "quota%20exceeded%3A%20try%20later"),
        ("grpc-status-details-bin", &details),
    ]);
    let events = run(&[
        (true, PREFACE.to_vec()),
        client(&[
            frame(HEADERS, EH, 1, &request("/svc.S/M")),
            frame(DATA, ES, 1, &[0, 0, 0, 0, 2, 0x08, 0x01]),
        ]),
        server(&[
            frame(
                HEADERS,
                EH,
                1,
                &block(&[(":status", "200"), ("content-type", "application/grpc")]),
            ),
            frame(HEADERS, EH | ES, 1, &trailers),
        ]),
    ]);
    let c = calls(&events);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].grpc_status(), Some(8));
    assert_eq!(
        c[0].grpc_message().as_deref(),
        Some("quota exceeded: try later")
    );
    let d = c[0].grpc_status_details.as_ref().unwrap();
    assert_eq!(d["code"], 8);
    assert_eq!(d["details"][0]["reason"], "QUOTA");
    assert_eq!(c[0].request_messages, 1);
    // The request message has no schema: decoded schema-less.
    let m = events
        .iter()
        .find_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .unwrap();
    let Some(Schemaless::Fields(fields)) = &m.decoded.fields else {
        panic!("not decoded schema-less: {m:?}");
    };
    assert_eq!(
        fields[0],
        Node::Field {
            number: 1,
            value: WireValue::Varint(1),
            span: 0..2,
        }
    );
}

/// A connection the capture joined mid-way: the first header block refers to a dynamic-table entry
/// from before the capture (shown as unknown, never guessed); a later block empties the table
/// with a size update, after which every header is known again, and a note says so.
#[test]
fn unknown_hpack_past_is_marked_until_the_table_is_known() {
    let mut first = vec![0xbe]; // indexed field 62: an entry from before the capture
    first.extend_from_slice(&request("/a"));
    let mut second = vec![0x20, 0x3f, 0xe1, 0x1f]; // size update to 0, then back to 4096
    second.extend_from_slice(&request("/b"));
    let segments = [
        client(&[frame(HEADERS, EH | ES, 41, &first)]),
        server(&[frame(HEADERS, EH | ES, 41, &block(&[(":status", "200")]))]),
        client(&[frame(HEADERS, EH | ES, 43, &second)]),
    ];
    let (events, _, ok) = common::dissect_bytes(
        common::segments_capture_with(&segments, false),
        Config::default(),
    );
    assert!(ok);
    let f = frames(&events);
    assert_eq!(f.len(), 3);
    let unknown = &f[0].headers.as_ref().unwrap()[0];
    assert!(unknown.name_unknown && unknown.value_unknown);
    assert_eq!(
        h2scope::http2::call::header_name(unknown),
        "<unknown dynamic #62>"
    );
    // Everything else in the first block is known and right.
    assert!(f[0].headers.as_ref().unwrap()[1..]
        .iter()
        .all(|h| h.is_complete()));
    assert!(
        f[2].notes.iter().any(|n| n.contains("fully known")),
        "{:?}",
        f[2].notes
    );
    assert!(f[2]
        .headers
        .as_ref()
        .unwrap()
        .iter()
        .all(|h| h.is_complete()));
    let c = calls(&events);
    assert_eq!(
        c.iter()
            .filter(|c| c.path().as_deref() == Some("/b"))
            .count(),
        1
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Error(er) if er.kind == ErrorKind::Resync)));
}

/// A DATA frame packed with empty gRPC messages (16 KiB of them, as one frame may hold
/// millions): every message is shown, in order, and past a bound they are emitted as they come,
/// before their frame, instead of all being held until it ends.
#[test]
fn a_frame_of_many_empty_messages_is_shown_whole_without_holding_them_all() {
    const N: usize = 3276;
    let events = run(&[
        (true, PREFACE.to_vec()),
        client(&[
            frame(SETTINGS, 0, 0, &[]),
            frame(HEADERS, EH, 1, &request("/pkg.Svc/Many")),
            frame(DATA, ES, 1, &[0u8; 5].repeat(N)),
        ]),
    ]);
    let data_at = events
        .iter()
        .position(|e| matches!(e, Event::Frame(f) if f.header.stream == 1 && f.header.length as usize == 5 * N))
        .unwrap();
    let messages: Vec<(usize, u32)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Message(m) => Some((i, m.index)),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), N);
    assert!(messages.iter().map(|m| m.1).eq(0..N as u32));
    assert!(messages[0].0 < data_at, "the first messages were held");
    assert!(
        messages[N - 1].0 > data_at,
        "the last ones follow their frame"
    );
}

/// A call's timeline: its start, the request sent whole (the client's END_STREAM), the
/// response headers (the server's answer begins), its end; each from the packet that carried it.
#[test]
fn a_calls_request_end_and_response_start_are_timed() {
    let events = run(&[
        (true, PREFACE.to_vec()),
        client(&[frame(SETTINGS, 0, 0, &[])]),
        client(&[frame(HEADERS, EH, 1, &request("/pkg.Svc/Slow"))]),
        client(&[frame(DATA, ES, 1, &[0, 0, 0, 0, 0])]),
        server(&[frame(SETTINGS, 0, 0, &[])]),
        server(&[frame(HEADERS, EH, 1, &block(&[(":status", "200")]))]),
        server(&[
            frame(DATA, 0, 1, &[0, 0, 0, 0, 0]),
            frame(HEADERS, EH | ES, 1, &block(&[("grpc-status", "0")])),
        ]),
    ]);
    let calls = calls(&events);
    assert_eq!(calls.len(), 1);
    let c = calls[0];
    let fs = frames(&events);
    let ts = |from_client: bool, kind: FrameType, flags: u8| {
        fs.iter()
            .find(|f| {
                f.from_client == from_client
                    && f.header.stream == 1
                    && f.header.kind == kind
                    && f.header.flags == flags
            })
            .unwrap()
            .origin
            .ts_ns
    };
    let start = ts(true, FrameType::Headers, EH);
    let answer = ts(false, FrameType::Headers, EH);
    assert_eq!(c.start_ts_ns, start);
    assert_eq!(c.request_end_ts_ns, Some(ts(true, FrameType::Data, ES)));
    assert_eq!(c.response_start_ts_ns, Some(answer));
    assert_eq!(c.time_to_response_ns(), Some(answer - start));
    assert!(answer - start > 0);
    assert_eq!(c.end_ts_ns, ts(false, FrameType::Headers, EH | ES));
}

fn goaway(last: u32) -> Vec<u8> {
    frame(
        GOAWAY,
        0,
        0,
        &[last.to_be_bytes(), 0u32.to_be_bytes()].concat(),
    )
}

fn answer(stream: u32) -> Vec<u8> {
    frame(
        HEADERS,
        EH | ES,
        stream,
        &block(&[(":status", "200"), ("grpc-status", "0")]),
    )
}

/// What each call's end says, by stream, in the order the calls came out.
fn ends(events: &[Event]) -> Vec<(u32, CallEnd)> {
    calls(events).iter().map(|c| (c.stream, c.end)).collect()
}

/// Calls crossing the server's GOAWAY, as a capture near the client sees them: requests sent
/// before the GOAWAY arrived, on streams above its last stream, are refused at the GOAWAY (the
/// client gives them up then), before the call at or below it that the server still answers.
/// The first GOAWAY of a graceful shutdown (the largest stream id) refuses nothing.
#[test]
fn calls_above_a_goaway_from_the_server_are_refused_at_the_goaway() {
    let events = run(&[
        client(&[
            PREFACE.to_vec(),
            frame(HEADERS, EH | ES, 1, &request("/a")),
            frame(HEADERS, EH | ES, 3, &request("/b")),
            frame(HEADERS, EH, 5, &request("/c")),
        ]),
        server(&[goaway(0x7fff_ffff)]),
        server(&[goaway(1)]),
        server(&[answer(1)]),
    ]);
    let refused = CallEnd::Refused { last_stream_id: 1 };
    assert_eq!(
        ends(&events),
        [(3, refused), (5, refused), (1, CallEnd::Complete)]
    );
    // They end with the GOAWAY that refused them, in the order of their streams.
    let at_goaway = frames(&events)
        .iter()
        .filter(|f| f.header.kind == FrameType::GoAway)
        .map(|f| f.origin.packet)
        .next_back();
    for c in calls(&events).iter().filter(|c| c.stream != 1) {
        assert_eq!(Some(c.end_packet), at_goaway);
    }
}

/// As a capture near the server sees them: streams the client opened after the server's
/// GOAWAY (it was on its way) are refused; one the client resets stays refused; one the server
/// answers all the same was not refused, and says so. Those whose request ended wait a second
/// for such an answer (here, until the capture's end).
#[test]
fn streams_opened_after_the_servers_goaway_are_refused() {
    let events = run(&[
        client(&[PREFACE.to_vec(), frame(HEADERS, EH | ES, 1, &request("/a"))]),
        server(&[goaway(1), answer(1)]),
        client(&[
            frame(HEADERS, EH | ES, 3, &request("/b")),
            frame(HEADERS, EH, 5, &request("/c")),
            frame(HEADERS, EH, 7, &request("/d")),
        ]),
        client(&[frame(DATA, ES, 5, &[0, 0, 0, 0, 0])]),
        client(&[frame(RST_STREAM, 0, 7, &8u32.to_be_bytes())]),
        client(&[frame(HEADERS, EH | ES, 9, &request("/e"))]),
        server(&[answer(9)]),
    ]);
    let refused = CallEnd::Refused { last_stream_id: 1 };
    assert_eq!(
        ends(&events),
        [
            (1, CallEnd::Complete),
            (7, refused),
            (9, CallEnd::Complete),
            (3, refused),
            (5, refused),
        ]
    );
    let on_9 = calls(&events).into_iter().find(|c| c.stream == 9).unwrap();
    assert!(
        on_9.notes
            .iter()
            .any(|n| n.contains("above the last stream 1")),
        "{:?}",
        on_9.notes
    );
    let on_5 = calls(&events).into_iter().find(|c| c.stream == 5).unwrap();
    assert_eq!(on_5.request_bytes, 5);
    // Refused calls are not protocol errors: no frame has a note.
    assert!(frames(&events).iter().all(|f| f.notes.is_empty()));
}
