//! A frame's detail as it is stored: the decoded parts its lines are made from, not the lines.
//!
//! Formatting every frame's lines while the file was read was the largest part of the reading
//! thread's work, for lines that are looked at for a handful of frames. The parts are written
//! as the frame is read, and the lines made from them when the frame is selected.
//!
//! The record is the viewer's own (an unlinked temporary file), but it is read back with the
//! same care as input: a damaged record decodes to `None`, never to a panic.

use bytes::Bytes;

use crate::event::FrameDetail;
use crate::http2::frame::{FrameHeader, PriorityInfo, Setting, FRAME_HEADER_LEN};
use crate::http2::hpack::{HeaderField, Representation};

/// What a frame's detail pane is made from (its bytes are stored beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameParts {
    pub header: FrameHeader,
    /// A malformed payload comes back as [`FrameDetail::Skipped`]: its error is in the notes
    /// and in the row's summary, and it has no line of its own.
    pub detail: FrameDetail,
    pub headers: Option<Vec<HeaderField>>,
    pub notes: Vec<String>,
}

/// Appends the parts of a frame to `out`.
pub fn encode(
    out: &mut Vec<u8>,
    header: &FrameHeader,
    detail: &FrameDetail,
    headers: Option<&[HeaderField]>,
    notes: &[String],
) {
    out.extend_from_slice(&header.encode());
    encode_detail(out, detail);
    match headers {
        None => out.push(0),
        Some(list) => {
            out.push(1);
            put_u32(out, list.len() as u32);
            for f in list {
                encode_field(out, f);
            }
        }
    }
    put_u32(out, notes.len() as u32);
    for n in notes {
        put_bytes(out, n.as_bytes());
    }
}

/// The parts [`encode`] wrote, or `None` if `b` is not such a record.
pub fn decode(mut b: &[u8]) -> Option<FrameParts> {
    let r = &mut b;
    let header = FrameHeader::parse(take::<FRAME_HEADER_LEN>(r)?);
    let detail = decode_detail(r)?;
    let headers = match byte(r)? {
        0 => None,
        _ => {
            let n = u32_of(r)?;
            // Each field takes at least 11 bytes: a count that the rest cannot hold is damage,
            // not a reason to reserve memory.
            let mut list = Vec::with_capacity((n as usize).min(r.len() / 11));
            for _ in 0..n {
                list.push(decode_field(r)?);
            }
            Some(list)
        }
    };
    let n = u32_of(r)?;
    let mut notes = Vec::with_capacity((n as usize).min(r.len() / 4));
    for _ in 0..n {
        notes.push(String::from_utf8_lossy(bytes(r)?).into_owned());
    }
    Some(FrameParts {
        header,
        detail,
        headers,
        notes,
    })
}

mod tag {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const PRIORITY: u8 = 2;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PUSH_PROMISE: u8 = 5;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
    pub const UNKNOWN: u8 = 10;
    pub const SKIPPED: u8 = 11;
}

fn encode_detail(out: &mut Vec<u8>, d: &FrameDetail) {
    match d {
        FrameDetail::Data {
            data_len,
            pad_len,
            missing,
        } => {
            out.push(tag::DATA);
            put_u32(out, *data_len);
            put_pad(out, *pad_len);
            out.extend_from_slice(&missing.to_le_bytes());
        }
        FrameDetail::Headers { priority, pad_len } => {
            out.push(tag::HEADERS);
            match priority {
                None => out.push(0),
                Some(p) => {
                    out.push(1);
                    put_priority(out, p);
                }
            }
            put_pad(out, *pad_len);
        }
        FrameDetail::Priority(p) => {
            out.push(tag::PRIORITY);
            put_priority(out, p);
        }
        FrameDetail::RstStream { error_code } => {
            out.push(tag::RST_STREAM);
            put_u32(out, *error_code);
        }
        FrameDetail::Settings { ack, settings } => {
            out.push(tag::SETTINGS);
            out.push(u8::from(*ack));
            put_u32(out, settings.len() as u32);
            for s in settings {
                out.extend_from_slice(&s.id.to_le_bytes());
                put_u32(out, s.value);
            }
        }
        FrameDetail::PushPromise {
            promised_stream,
            pad_len,
        } => {
            out.push(tag::PUSH_PROMISE);
            put_u32(out, *promised_stream);
            put_pad(out, *pad_len);
        }
        FrameDetail::Ping { ack, opaque } => {
            out.push(tag::PING);
            out.push(u8::from(*ack));
            out.extend_from_slice(opaque);
        }
        FrameDetail::GoAway {
            last_stream_id,
            error_code,
            debug_data,
        } => {
            out.push(tag::GOAWAY);
            put_u32(out, *last_stream_id);
            put_u32(out, *error_code);
            put_bytes(out, debug_data);
        }
        FrameDetail::WindowUpdate { increment } => {
            out.push(tag::WINDOW_UPDATE);
            put_u32(out, *increment);
        }
        FrameDetail::Continuation => out.push(tag::CONTINUATION),
        FrameDetail::Unknown => out.push(tag::UNKNOWN),
        FrameDetail::Malformed(_) | FrameDetail::Skipped => out.push(tag::SKIPPED),
    }
}

fn decode_detail(r: &mut &[u8]) -> Option<FrameDetail> {
    Some(match byte(r)? {
        tag::DATA => FrameDetail::Data {
            data_len: u32_of(r)?,
            pad_len: pad(r)?,
            missing: u64::from_le_bytes(*take::<8>(r)?),
        },
        tag::HEADERS => FrameDetail::Headers {
            priority: match byte(r)? {
                0 => None,
                _ => Some(priority(r)?),
            },
            pad_len: pad(r)?,
        },
        tag::PRIORITY => FrameDetail::Priority(priority(r)?),
        tag::RST_STREAM => FrameDetail::RstStream {
            error_code: u32_of(r)?,
        },
        tag::SETTINGS => {
            let ack = byte(r)? != 0;
            let n = u32_of(r)?;
            let mut settings = Vec::with_capacity((n as usize).min(r.len() / 6));
            for _ in 0..n {
                let id = u16::from_le_bytes(*take::<2>(r)?);
                settings.push(Setting {
                    id,
                    value: u32_of(r)?,
                });
            }
            FrameDetail::Settings { ack, settings }
        }
        tag::PUSH_PROMISE => FrameDetail::PushPromise {
            promised_stream: u32_of(r)?,
            pad_len: pad(r)?,
        },
        tag::PING => FrameDetail::Ping {
            ack: byte(r)? != 0,
            opaque: *take::<8>(r)?,
        },
        tag::GOAWAY => FrameDetail::GoAway {
            last_stream_id: u32_of(r)?,
            error_code: u32_of(r)?,
            debug_data: bytes(r)?.to_vec(),
        },
        tag::WINDOW_UPDATE => FrameDetail::WindowUpdate {
            increment: u32_of(r)?,
        },
        tag::CONTINUATION => FrameDetail::Continuation,
        tag::UNKNOWN => FrameDetail::Unknown,
        tag::SKIPPED => FrameDetail::Skipped,
        _ => return None,
    })
}

/// Representation kinds, and the bits of the flags byte.
const INDEXED: u8 = 0;
const INCREMENTAL: u8 = 1;
const WITHOUT: u8 = 2;
const NEVER: u8 = 3;
const UNKNOWN_ENTRY: u8 = 4;
const NAME_UNKNOWN: u8 = 1;
const VALUE_UNKNOWN: u8 = 2;
const HUFFMAN_NAME: u8 = 4;
const HUFFMAN_VALUE: u8 = 8;
const HAS_NAME_INDEX: u8 = 16;

fn encode_field(out: &mut Vec<u8>, f: &HeaderField) {
    put_bytes(out, &f.name);
    put_bytes(out, &f.value);
    let mut flags = 0;
    if f.name_unknown {
        flags |= NAME_UNKNOWN;
    }
    if f.value_unknown {
        flags |= VALUE_UNKNOWN;
    }
    let (kind, index) = match f.repr {
        Representation::Indexed { index } => (INDEXED, index),
        Representation::Unknown { index } => (UNKNOWN_ENTRY, index),
        Representation::IncrementalIndexing {
            name_index,
            huffman_name,
            huffman_value,
        }
        | Representation::WithoutIndexing {
            name_index,
            huffman_name,
            huffman_value,
        }
        | Representation::NeverIndexed {
            name_index,
            huffman_name,
            huffman_value,
        } => {
            if huffman_name {
                flags |= HUFFMAN_NAME;
            }
            if huffman_value {
                flags |= HUFFMAN_VALUE;
            }
            if name_index.is_some() {
                flags |= HAS_NAME_INDEX;
            }
            let kind = match f.repr {
                Representation::IncrementalIndexing { .. } => INCREMENTAL,
                Representation::WithoutIndexing { .. } => WITHOUT,
                _ => NEVER,
            };
            (kind, name_index.unwrap_or(0))
        }
    };
    out.push(kind);
    out.push(flags);
    put_u32(out, index);
}

fn decode_field(r: &mut &[u8]) -> Option<HeaderField> {
    let name = Bytes::copy_from_slice(bytes(r)?);
    let value = Bytes::copy_from_slice(bytes(r)?);
    let kind = byte(r)?;
    let flags = byte(r)?;
    let index = u32_of(r)?;
    let name_index = (flags & HAS_NAME_INDEX != 0).then_some(index);
    let (huffman_name, huffman_value) = (flags & HUFFMAN_NAME != 0, flags & HUFFMAN_VALUE != 0);
    let repr = match kind {
        INDEXED => Representation::Indexed { index },
        UNKNOWN_ENTRY => Representation::Unknown { index },
        INCREMENTAL => Representation::IncrementalIndexing {
            name_index,
            huffman_name,
            huffman_value,
        },
        WITHOUT => Representation::WithoutIndexing {
            name_index,
            huffman_name,
            huffman_value,
        },
        NEVER => Representation::NeverIndexed {
            name_index,
            huffman_name,
            huffman_value,
        },
        _ => return None,
    };
    Some(HeaderField {
        name,
        value,
        repr,
        name_unknown: flags & NAME_UNKNOWN != 0,
        value_unknown: flags & VALUE_UNKNOWN != 0,
    })
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn put_pad(out: &mut Vec<u8>, pad: Option<u8>) {
    match pad {
        None => out.extend_from_slice(&[0, 0]),
        Some(p) => out.extend_from_slice(&[1, p]),
    }
}

fn put_priority(out: &mut Vec<u8>, p: &PriorityInfo) {
    out.push(u8::from(p.exclusive));
    put_u32(out, p.depends_on);
    out.push(p.weight);
}

fn take<'a, const N: usize>(r: &mut &'a [u8]) -> Option<&'a [u8; N]> {
    let (head, rest) = r.split_first_chunk::<N>()?;
    *r = rest;
    Some(head)
}

fn byte(r: &mut &[u8]) -> Option<u8> {
    take::<1>(r).map(|b| b[0])
}

fn u32_of(r: &mut &[u8]) -> Option<u32> {
    take::<4>(r).map(|b| u32::from_le_bytes(*b))
}

fn bytes<'a>(r: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = u32_of(r)? as usize;
    let (head, rest) = r.split_at_checked(n)?;
    *r = rest;
    Some(head)
}

fn pad(r: &mut &[u8]) -> Option<Option<u8>> {
    let [has, p] = *take::<2>(r)?;
    Some((has != 0).then_some(p))
}

fn priority(r: &mut &[u8]) -> Option<PriorityInfo> {
    Some(PriorityInfo {
        exclusive: byte(r)? != 0,
        depends_on: u32_of(r)?,
        weight: byte(r)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::frame::{FrameError, FrameType};

    fn field(name: &str, value: &str, repr: Representation, unknown: bool) -> HeaderField {
        HeaderField {
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            repr,
            name_unknown: false,
            value_unknown: unknown,
        }
    }

    fn header(kind: FrameType) -> FrameHeader {
        FrameHeader {
            length: 0x12_3456,
            kind,
            flags: 0x25,
            stream: 0x7fff_fffe,
        }
    }

    fn details() -> Vec<FrameDetail> {
        let p = PriorityInfo {
            exclusive: true,
            depends_on: 9,
            weight: 255,
        };
        vec![
            FrameDetail::Data {
                data_len: 7,
                pad_len: Some(3),
                missing: u64::MAX,
            },
            FrameDetail::Headers {
                priority: Some(p),
                pad_len: None,
            },
            FrameDetail::Headers {
                priority: None,
                pad_len: Some(0),
            },
            FrameDetail::Priority(p),
            FrameDetail::RstStream { error_code: 8 },
            FrameDetail::Settings {
                ack: false,
                settings: vec![
                    Setting {
                        id: 4,
                        value: 65535,
                    },
                    Setting { id: 0xfe, value: 0 },
                ],
            },
            FrameDetail::Settings {
                ack: true,
                settings: Vec::new(),
            },
            FrameDetail::PushPromise {
                promised_stream: 2,
                pad_len: Some(200),
            },
            FrameDetail::Ping {
                ack: true,
                opaque: *b"12345678",
            },
            FrameDetail::GoAway {
                last_stream_id: 5,
                error_code: 0xb,
                debug_data: b"too_many_pings".to_vec(),
            },
            FrameDetail::WindowUpdate { increment: 1 },
            FrameDetail::Continuation,
            FrameDetail::Unknown,
            FrameDetail::Skipped,
        ]
    }

    #[test]
    fn parts_come_back_as_written() {
        let list = vec![
            field(":path", "/a", Representation::Indexed { index: 4 }, false),
            field(
                "x-id",
                "é\u{0}",
                Representation::NeverIndexed {
                    name_index: None,
                    huffman_name: true,
                    huffman_value: false,
                },
                false,
            ),
            field(
                "te",
                "trailers",
                Representation::IncrementalIndexing {
                    name_index: Some(0),
                    huffman_name: false,
                    huffman_value: true,
                },
                false,
            ),
            field(
                "",
                "",
                Representation::WithoutIndexing {
                    name_index: Some(70),
                    huffman_name: false,
                    huffman_value: false,
                },
                true,
            ),
            field("", "", Representation::Unknown { index: 99 }, true),
        ];
        for (i, detail) in details().into_iter().enumerate() {
            let headers = (i % 2 == 0).then(|| list.clone());
            let notes = vec!["a note".to_string(); i % 3];
            let mut out = Vec::new();
            let h = header(FrameType::from_code(i as u8));
            encode(&mut out, &h, &detail, headers.as_deref(), &notes);
            let parts = decode(&out).unwrap();
            assert_eq!(
                parts,
                FrameParts {
                    header: h,
                    detail,
                    headers,
                    notes
                }
            );
        }
    }

    #[test]
    fn a_malformed_payload_comes_back_skipped() {
        let mut out = Vec::new();
        let err = FrameError::PaddingTooLong { pad: 9, len: 3 };
        let h = header(FrameType::Data);
        encode(&mut out, &h, &FrameDetail::Malformed(err), None, &[]);
        assert_eq!(decode(&out).unwrap().detail, FrameDetail::Skipped);
    }

    #[test]
    fn damaged_records_decode_to_none() {
        let mut out = Vec::new();
        let list = vec![field(
            "a",
            "b",
            Representation::Indexed { index: 62 },
            false,
        )];
        let detail = FrameDetail::GoAway {
            last_stream_id: 1,
            error_code: 2,
            debug_data: vec![1; 40],
        };
        encode(
            &mut out,
            &header(FrameType::GoAway),
            &detail,
            Some(&list),
            &["n".into()],
        );
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]), None, "cut at {cut}");
        }
        // Huge counts in a short record reserve nothing and fail.
        let mut huge = out[..FRAME_HEADER_LEN].to_vec();
        huge.push(tag::SETTINGS);
        huge.push(0);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), None);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::http2::frame::FrameType;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes decode to parts or to `None`, and parts decoded from a damaged record
        /// (a byte changed, the end cut) are as good as any: nothing panics or over-reserves.
        #[test]
        fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn damaged_records_never_panic(at: usize, to: u8, cut: usize, n in 0usize..4) {
            let fields: Vec<HeaderField> = (0..n)
                .map(|i| HeaderField {
                    name: Bytes::from(format!("name-{i}")),
                    value: Bytes::from(vec![b'v'; i * 7]),
                    repr: Representation::IncrementalIndexing {
                        name_index: (i % 2 == 0).then_some(i as u32),
                        huffman_name: i % 3 == 0,
                        huffman_value: true,
                    },
                    name_unknown: false,
                    value_unknown: i == 2,
                })
                .collect();
            let h = FrameHeader { length: 40, kind: FrameType::Headers, flags: 0x24, stream: 3 };
            let detail = FrameDetail::Headers { priority: None, pad_len: Some(2) };
            let mut out = Vec::new();
            encode(&mut out, &h, &detail, Some(&fields), &["note".into()]);
            let whole = decode(&out).unwrap();
            prop_assert_eq!(whole.headers.as_deref(), Some(&fields[..]));
            let i = at % out.len();
            out[i] = to;
            let _ = decode(&out);
            out.truncate(cut % (out.len() + 1));
            let _ = decode(&out);
        }
    }
}
