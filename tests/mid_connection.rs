//! Captures that start mid-connection, made from real ones by dropping their first N packets:
//! whatever h2scope shows must agree with the decode of the whole capture (frames, header fields,
//! messages), fields it cannot know are marked unknown (never guessed), and once frame boundaries
//! are found again it sees the rest.

mod common;

use std::collections::BTreeMap;

use h2scope::capture::{CaptureReader, LinkType};
use h2scope::event::Event;
use h2scope::output::pcapng::PcapngWriter;
use h2scope::pipeline::Config;

struct Record {
    ts: i64,
    link: LinkType,
    data: Vec<u8>,
    orig: u32,
}

fn records(path: &str) -> Vec<Record> {
    let mut r = CaptureReader::open(path).unwrap();
    let mut out = Vec::new();
    r.for_each_packet(|p| {
        out.push(Record {
            ts: p.ts_ns,
            link: p.link,
            data: p.data.to_vec(),
            orig: p.orig_len,
        });
        true
    })
    .unwrap();
    out
}

fn rewrite(recs: &[Record]) -> Vec<u8> {
    let mut w = PcapngWriter::new(Vec::new()).unwrap();
    for r in recs {
        w.write_packet(r.link, r.ts, &r.data, r.orig).unwrap();
    }
    w.into_inner()
}

/// (packet in the whole capture, src, dst, stream, type, length, flags)
type FrameId = (u64, String, String, u32, u8, u32, u8);
/// (packet in the whole capture, stream, direction, length)
type MessageId = (u64, u32, String, u32);
/// Header fields, `None` where unknown.
type Fields = Vec<(Option<String>, Option<String>)>;

struct Decode {
    /// Identical frames in one packet are kept side by side.
    frames: BTreeMap<FrameId, Vec<Fields>>,
    /// Decoded JSON (with a schema) and schema-less tree, as text.
    messages: BTreeMap<MessageId, (Option<String>, Option<String>)>,
}

fn decode(pcap: Vec<u8>, shift: u64) -> Decode {
    let (events, _, ok) = common::dissect_bytes(pcap, Config::default());
    assert!(ok);
    let mut frames = BTreeMap::new();
    let mut messages = BTreeMap::new();
    for e in events {
        match e {
            Event::Frame(f) => {
                let h = f.header;
                let id = (
                    f.origin.packet + shift,
                    f.origin.src.to_string(),
                    f.origin.dst.to_string(),
                    h.stream,
                    h.kind.code(),
                    h.length,
                    h.flags,
                );
                let fields = f
                    .headers
                    .unwrap_or_default()
                    .iter()
                    .map(|hf| {
                        (
                            (!hf.name_unknown)
                                .then(|| String::from_utf8_lossy(&hf.name).into_owned()),
                            (!hf.value_unknown)
                                .then(|| String::from_utf8_lossy(&hf.value).into_owned()),
                        )
                    })
                    .collect();
                frames.entry(id).or_insert_with(Vec::new).push(fields);
            }
            Event::Message(m) => {
                let d = &m.decoded;
                let shown = (
                    d.json.as_ref().map(|v| v.to_string()),
                    d.fields.as_ref().map(|v| format!("{v:?}")),
                );
                messages.insert(
                    (
                        m.origin.packet + shift,
                        m.stream,
                        m.side.as_str().into(),
                        d.length,
                    ),
                    shown,
                );
            }
            _ => {}
        }
    }
    Decode { frames, messages }
}

/// Checks one capture cut at many points; returns (frames compared, frames expected after the
/// cut, fields known, fields marked unknown).
/// `slack`: frames completed within this many packets after the cut may have started before it.
fn check(
    path: &str,
    cuts: impl Iterator<Item = usize>,
    slack: u64,
) -> (usize, usize, usize, usize) {
    let recs = records(path);
    let full = decode(rewrite(&recs), 0);
    let mut totals = (0, 0, 0, 0);
    for n in cuts {
        if n >= recs.len() {
            break;
        }
        let cut = decode(rewrite(&recs[n..]), n as u64);
        for (id, lists) in &cut.frames {
            let Some(whole) = full.frames.get(id) else {
                panic!("{path} cut at {n}: frame {id:?} is not in the whole decode");
            };
            assert!(lists.len() <= whole.len(), "{path} cut at {n}: {id:?}");
            for fields in lists {
                // The known fields must be those of one of the identical frames of the whole.
                let fits = |w: &Fields| {
                    fields.len() == w.len()
                        && fields.iter().zip(w).all(|((name, value), (wn, wv))| {
                            name.as_ref().is_none_or(|x| Some(x) == wn.as_ref())
                                && value.as_ref().is_none_or(|x| Some(x) == wv.as_ref())
                        })
                };
                assert!(
                    fields.is_empty() || whole.iter().any(fits),
                    "{path} cut at {n}: {id:?} decoded {fields:?}, whole {whole:?}"
                );
                for (name, _) in fields {
                    if name.is_some() {
                        totals.2 += 1;
                    } else {
                        totals.3 += 1;
                    }
                }
            }
        }
        for (key, (json, fields)) in &cut.messages {
            if let Some((wjson, wfields)) = full.messages.get(key) {
                // Decoded with a schema: as in the whole. Schema-less (the path may be unknown
                // after the cut): the same tree where the whole is schema-less too.
                if json.is_some() {
                    assert_eq!(json, wjson, "{path} cut at {n}: message {key:?}");
                } else if wfields.is_some() {
                    assert_eq!(fields, wfields, "{path} cut at {n}: message {key:?}");
                }
            }
        }
        // Recall: frames that complete a few packets after the cut are all found again.
        let later: Vec<&FrameId> = full
            .frames
            .keys()
            .filter(|id| id.0 > n as u64 + slack)
            .collect();
        let found = later
            .iter()
            .filter(|id| cut.frames.contains_key(id))
            .count();
        if std::env::var_os("MID_DEBUG").is_some() && found < later.len() {
            let missing: Vec<_> = later
                .iter()
                .filter(|id| !cut.frames.contains_key(id))
                .collect();
            eprintln!("{path} cut {n}: missing {missing:?}");
        }
        totals.0 += found;
        totals.1 += later.len();
    }
    totals
}

#[test]
fn cut_captures_agree_with_the_whole_and_mark_unknowns() {
    let testdata = format!("{}/testdata/grpc-health.pcap", env!("CARGO_MANIFEST_DIR"));
    let public = common::public_capture;
    let cases: Vec<(String, Vec<usize>, u64)> = vec![
        (testdata, (1..60).step_by(3).collect(), 4),
        (
            public("sv_dns-over-http2-post.pcap"),
            (1..140).step_by(7).collect(),
            4,
        ),
        (
            public("pcapfileex_http2_sample.pcapng"),
            (1..95).step_by(5).collect(),
            4,
        ),
        (
            public("packt_server_streaming.pcapng"),
            (1..28).collect(),
            4,
        ),
        (
            public("t5g_free5gc.pcap"),
            (5..240).step_by(13).collect(),
            4,
        ),
        // 16 KiB DATA frames over up to 30 small segments (a utun MTU): one completing that
        // long after the cut may have begun before it.
        (
            public("arkime_http2-nghttp2.pcap"),
            (2..95).step_by(9).collect(),
            30,
        ),
    ];
    let mut all = (0, 0, 0, 0);
    for (path, cuts, slack) in cases {
        let (found, expected, known, unknown) = check(&path, cuts.into_iter(), slack);
        // Once frame boundaries are found again nothing is missed.
        assert!(
            found * 100 >= expected * 97,
            "{path}: only {found} of {expected} later frames found"
        );
        all = (
            all.0 + found,
            all.1 + expected,
            all.2 + known,
            all.3 + unknown,
        );
    }
    // The cuts do hit HPACK state: some fields are unknown, and many are still known.
    assert!(all.3 > 0 && all.2 > all.3, "{all:?}");
}
