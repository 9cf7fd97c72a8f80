//! HTTP/2 frames (RFC 9113 §4 and §6): header, types, flags and payload parsing.
//!
//! Parsing never fails on a frame's *kind* (unknown types are kept as such); it fails only where
//! the payload contradicts its own framing (padding longer than the payload, a PING that is not 8
//! bytes, ...). Such frames are still shown, with the error annotated.

use std::fmt;

pub const FRAME_HEADER_LEN: usize = 9;
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;

pub mod flags {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    Unknown(u8),
}

impl FrameType {
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => FrameType::Data,
            1 => FrameType::Headers,
            2 => FrameType::Priority,
            3 => FrameType::RstStream,
            4 => FrameType::Settings,
            5 => FrameType::PushPromise,
            6 => FrameType::Ping,
            7 => FrameType::GoAway,
            8 => FrameType::WindowUpdate,
            9 => FrameType::Continuation,
            other => FrameType::Unknown(other),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            FrameType::Data => 0,
            FrameType::Headers => 1,
            FrameType::Priority => 2,
            FrameType::RstStream => 3,
            FrameType::Settings => 4,
            FrameType::PushPromise => 5,
            FrameType::Ping => 6,
            FrameType::GoAway => 7,
            FrameType::WindowUpdate => 8,
            FrameType::Continuation => 9,
            FrameType::Unknown(c) => c,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FrameType::Data => "DATA",
            FrameType::Headers => "HEADERS",
            FrameType::Priority => "PRIORITY",
            FrameType::RstStream => "RST_STREAM",
            FrameType::Settings => "SETTINGS",
            FrameType::PushPromise => "PUSH_PROMISE",
            FrameType::Ping => "PING",
            FrameType::GoAway => "GOAWAY",
            FrameType::WindowUpdate => "WINDOW_UPDATE",
            FrameType::Continuation => "CONTINUATION",
            FrameType::Unknown(_) => "UNKNOWN",
        }
    }

    /// Flags defined for this type, to tell a plausible frame header from noise.
    pub fn defined_flags(self) -> u8 {
        use flags::*;
        match self {
            FrameType::Data => END_STREAM | PADDED,
            FrameType::Headers => END_STREAM | END_HEADERS | PADDED | PRIORITY,
            FrameType::Settings | FrameType::Ping => ACK,
            FrameType::PushPromise => END_HEADERS | PADDED,
            FrameType::Continuation => END_HEADERS,
            _ => 0,
        }
    }

    /// Names of the flags set in `f` that this type defines, as tshark prints them.
    pub fn flag_names(self, f: u8) -> Vec<&'static str> {
        self.flag_name_iter(f).collect()
    }

    /// [`Self::flag_names`] without the vector (every frame line lists its flags).
    pub fn flag_name_iter(self, f: u8) -> impl Iterator<Item = &'static str> {
        use flags::*;
        let first = match self {
            FrameType::Settings | FrameType::Ping => (ACK, "ACK"),
            _ => (END_STREAM, "END_STREAM"),
        };
        let defined = self.defined_flags();
        [
            first,
            (END_HEADERS, "END_HEADERS"),
            (PADDED, "PADDED"),
            (PRIORITY, "PRIORITY"),
        ]
        .into_iter()
        .filter(move |&(bit, _)| f & bit != 0 && defined & bit != 0)
        .map(|(_, name)| name)
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameType::Unknown(c) => write!(f, "UNKNOWN({c})"),
            other => f.write_str(other.name()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub length: u32,
    pub kind: FrameType,
    pub flags: u8,
    /// The reserved bit is masked off.
    pub stream: u32,
}

impl FrameHeader {
    pub fn parse(b: &[u8; FRAME_HEADER_LEN]) -> Self {
        FrameHeader {
            length: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: FrameType::from_code(b[3]),
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let l = self.length.to_be_bytes();
        let s = self.stream.to_be_bytes();
        [
            l[1],
            l[2],
            l[3],
            self.kind.code(),
            self.flags,
            s[0],
            s[1],
            s[2],
            s[3],
        ]
    }
}

/// Stream dependency carried by PRIORITY frames and HEADERS with the PRIORITY flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityInfo {
    pub exclusive: bool,
    pub depends_on: u32,
    /// As sent (0-255); the effective weight is one more.
    pub weight: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub id: u16,
    pub value: u32,
}

pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 1;
    pub const ENABLE_PUSH: u16 = 2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 3;
    pub const INITIAL_WINDOW_SIZE: u16 = 4;
    pub const MAX_FRAME_SIZE: u16 = 5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 6;
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 8;
    pub const NO_RFC7540_PRIORITIES: u16 = 9;
    /// gRPC C-core's own settings. 0xfe03 (gRFC G1): `-bin` metadata may travel as bytes.
    pub const GRPC_ALLOW_TRUE_BINARY_METADATA: u16 = 0xfe03;
    pub const GRPC_PREFERRED_RECEIVE_CRYPTO_FRAME_SIZE: u16 = 0xfe04;
    pub const GRPC_ALLOW_SECURITY_FRAME: u16 = 0xfe05;

    pub fn name(id: u16) -> Option<&'static str> {
        Some(match id {
            HEADER_TABLE_SIZE => "HEADER_TABLE_SIZE",
            ENABLE_PUSH => "ENABLE_PUSH",
            MAX_CONCURRENT_STREAMS => "MAX_CONCURRENT_STREAMS",
            INITIAL_WINDOW_SIZE => "INITIAL_WINDOW_SIZE",
            MAX_FRAME_SIZE => "MAX_FRAME_SIZE",
            MAX_HEADER_LIST_SIZE => "MAX_HEADER_LIST_SIZE",
            ENABLE_CONNECT_PROTOCOL => "ENABLE_CONNECT_PROTOCOL",
            NO_RFC7540_PRIORITIES => "NO_RFC7540_PRIORITIES",
            GRPC_ALLOW_TRUE_BINARY_METADATA => "GRPC_ALLOW_TRUE_BINARY_METADATA",
            GRPC_PREFERRED_RECEIVE_CRYPTO_FRAME_SIZE => "GRPC_PREFERRED_RECEIVE_CRYPTO_FRAME_SIZE",
            GRPC_ALLOW_SECURITY_FRAME => "GRPC_ALLOW_SECURITY_FRAME",
            _ => return None,
        })
    }
}

/// An error code as the outputs show it: its RFC 9113 name, or `0x…` for one it does not define.
pub fn error_code_label(code: u32) -> std::borrow::Cow<'static, str> {
    match error_code_name(code) {
        Some(name) => name.into(),
        None => format!("0x{code:x}").into(),
    }
}

/// RFC 9113 §7 error codes.
pub fn error_code_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("padding length {pad} exceeds payload of {len} bytes")]
    PaddingTooLong { pad: usize, len: usize },
    #[error("{kind} payload of {len} bytes, expected {expected}")]
    BadLength {
        kind: &'static str,
        len: usize,
        expected: &'static str,
    },
}

/// Parsed payload. Header block fragments and DATA are slices of the frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    Data {
        data: &'a [u8],
        pad_len: Option<u8>,
    },
    Headers {
        priority: Option<PriorityInfo>,
        fragment: &'a [u8],
        pad_len: Option<u8>,
    },
    Priority(PriorityInfo),
    RstStream {
        error_code: u32,
    },
    Settings {
        ack: bool,
        settings: Vec<Setting>,
    },
    PushPromise {
        promised_stream: u32,
        fragment: &'a [u8],
        pad_len: Option<u8>,
    },
    Ping {
        ack: bool,
        opaque: [u8; 8],
    },
    GoAway {
        last_stream_id: u32,
        error_code: u32,
        debug_data: &'a [u8],
    },
    WindowUpdate {
        increment: u32,
    },
    Continuation {
        fragment: &'a [u8],
    },
    Unknown,
}

/// Splits off the padding of a PADDED frame: returns the content and the pad length.
fn unpad<'a>(h: &FrameHeader, p: &'a [u8]) -> Result<(&'a [u8], Option<u8>), FrameError> {
    if !h.has(flags::PADDED) {
        return Ok((p, None));
    }
    let Some((&pad, rest)) = p.split_first() else {
        return Err(FrameError::PaddingTooLong { pad: 1, len: 0 });
    };
    if pad as usize > rest.len() {
        return Err(FrameError::PaddingTooLong {
            pad: pad as usize,
            len: p.len(),
        });
    }
    Ok((&rest[..rest.len() - pad as usize], Some(pad)))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn priority(b: &[u8]) -> PriorityInfo {
    let dep = be32(b);
    PriorityInfo {
        exclusive: dep & 0x8000_0000 != 0,
        depends_on: dep & 0x7fff_ffff,
        weight: b[4],
    }
}

fn exact(kind: &'static str, p: &[u8], n: usize, expected: &'static str) -> Result<(), FrameError> {
    if p.len() == n {
        Ok(())
    } else {
        Err(FrameError::BadLength {
            kind,
            len: p.len(),
            expected,
        })
    }
}

/// Parses a complete payload of the frame described by `h`.
pub fn parse_payload<'a>(h: &FrameHeader, p: &'a [u8]) -> Result<Payload<'a>, FrameError> {
    Ok(match h.kind {
        FrameType::Data => {
            let (data, pad_len) = unpad(h, p)?;
            Payload::Data { data, pad_len }
        }
        FrameType::Headers => {
            let (mut rest, pad_len) = unpad(h, p)?;
            let priority = if h.has(flags::PRIORITY) {
                if rest.len() < 5 {
                    return Err(FrameError::BadLength {
                        kind: "HEADERS",
                        len: rest.len(),
                        expected: "at least 5 with PRIORITY",
                    });
                }
                let pr = priority(rest);
                rest = &rest[5..];
                Some(pr)
            } else {
                None
            };
            Payload::Headers {
                priority,
                fragment: rest,
                pad_len,
            }
        }
        FrameType::Priority => {
            exact("PRIORITY", p, 5, "5")?;
            Payload::Priority(priority(p))
        }
        FrameType::RstStream => {
            exact("RST_STREAM", p, 4, "4")?;
            Payload::RstStream {
                error_code: be32(p),
            }
        }
        FrameType::Settings => {
            if p.len() % 6 != 0 {
                return Err(FrameError::BadLength {
                    kind: "SETTINGS",
                    len: p.len(),
                    expected: "a multiple of 6",
                });
            }
            Payload::Settings {
                ack: h.has(flags::ACK),
                settings: p
                    .chunks_exact(6)
                    .map(|c| Setting {
                        id: u16::from_be_bytes([c[0], c[1]]),
                        value: be32(&c[2..]),
                    })
                    .collect(),
            }
        }
        FrameType::PushPromise => {
            let (rest, pad_len) = unpad(h, p)?;
            if rest.len() < 4 {
                return Err(FrameError::BadLength {
                    kind: "PUSH_PROMISE",
                    len: rest.len(),
                    expected: "at least 4",
                });
            }
            Payload::PushPromise {
                promised_stream: be32(rest) & 0x7fff_ffff,
                fragment: &rest[4..],
                pad_len,
            }
        }
        FrameType::Ping => {
            exact("PING", p, 8, "8")?;
            let mut opaque = [0u8; 8];
            opaque.copy_from_slice(p);
            Payload::Ping {
                ack: h.has(flags::ACK),
                opaque,
            }
        }
        FrameType::GoAway => {
            if p.len() < 8 {
                return Err(FrameError::BadLength {
                    kind: "GOAWAY",
                    len: p.len(),
                    expected: "at least 8",
                });
            }
            Payload::GoAway {
                last_stream_id: be32(p) & 0x7fff_ffff,
                error_code: be32(&p[4..]),
                debug_data: &p[8..],
            }
        }
        FrameType::WindowUpdate => {
            exact("WINDOW_UPDATE", p, 4, "4")?;
            Payload::WindowUpdate {
                increment: be32(p) & 0x7fff_ffff,
            }
        }
        FrameType::Continuation => Payload::Continuation { fragment: p },
        FrameType::Unknown(_) => Payload::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(len: u32, kind: u8, flags: u8, stream: u32) -> FrameHeader {
        let mut b = [0u8; 9];
        b[..3].copy_from_slice(&len.to_be_bytes()[1..]);
        b[3] = kind;
        b[4] = flags;
        b[5..].copy_from_slice(&stream.to_be_bytes());
        FrameHeader::parse(&b)
    }

    #[test]
    fn header_roundtrip_masks_reserved_bit() {
        let h = hdr(70_000, 0, 1, 0x8000_0003);
        assert_eq!(h.length, 70_000);
        assert_eq!(h.stream, 3);
        assert_eq!(FrameHeader::parse(&h.encode()), h);
    }

    #[test]
    fn padded_headers_with_priority() {
        let h = hdr(
            0,
            1,
            flags::PADDED | flags::PRIORITY | flags::END_HEADERS,
            1,
        );
        let p = [2, 0x80, 0, 0, 3, 15, 0x82, 0x84, 0, 0];
        match parse_payload(&h, &p).unwrap() {
            Payload::Headers {
                priority: Some(pr),
                fragment,
                pad_len: Some(2),
            } => {
                assert!(pr.exclusive);
                assert_eq!(pr.depends_on, 3);
                assert_eq!(pr.weight, 15);
                assert_eq!(fragment, &[0x82, 0x84]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_padding_and_lengths_are_errors() {
        let h = hdr(0, 0, flags::PADDED, 1);
        assert!(parse_payload(&h, &[5, 1, 2]).is_err());
        assert!(parse_payload(&h, &[]).is_err());
        assert!(parse_payload(&hdr(0, 6, 0, 0), &[0; 7]).is_err());
        assert!(parse_payload(&hdr(0, 4, 0, 0), &[0; 7]).is_err());
        assert!(parse_payload(&hdr(0, 7, 0, 0), &[0; 7]).is_err());
        assert!(parse_payload(&hdr(0, 1, flags::PRIORITY, 1), &[0; 4]).is_err());
    }

    #[test]
    fn flag_names_follow_type() {
        assert_eq!(FrameType::Settings.flag_names(1), vec!["ACK"]);
        assert_eq!(
            FrameType::Headers.flag_names(0x25),
            vec!["END_STREAM", "END_HEADERS", "PRIORITY"]
        );
        assert!(FrameType::WindowUpdate.flag_names(0xff).is_empty());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_header_roundtrips(len in 0u32..(1 << 24), kind: u8, f: u8, stream in 0u32..(1 << 31)) {
            let h = FrameHeader { length: len, kind: FrameType::from_code(kind), flags: f, stream };
            prop_assert_eq!(FrameHeader::parse(&h.encode()), h);
        }

        /// Any payload with any header either parses into slices of itself or is refused;
        /// nothing panics, and what is parsed accounts for the bytes.
        #[test]
        fn any_payload_parses_or_is_refused(kind in 0u8..12, f: u8, stream: u32, payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let h = FrameHeader { length: payload.len() as u32, kind: FrameType::from_code(kind), flags: f, stream };
            match parse_payload(&h, &payload) {
                Ok(Payload::Data { data, pad_len }) => {
                    let overhead = pad_len.map(|p| p as usize + 1).unwrap_or(0);
                    prop_assert_eq!(data.len() + overhead, payload.len());
                }
                Ok(Payload::Settings { settings, .. }) => prop_assert_eq!(settings.len() * 6, payload.len()),
                Ok(Payload::Headers { fragment, priority, pad_len }) => {
                    let overhead = pad_len.map(|p| p as usize + 1).unwrap_or(0)
                        + if priority.is_some() { 5 } else { 0 };
                    prop_assert_eq!(fragment.len() + overhead, payload.len());
                }
                Ok(_) | Err(_) => {}
            }
        }
    }
}
