//! Cutting length-prefixed gRPC messages (1 flag byte, 4-byte big-endian length, body) out of a
//! stream's DATA, whatever the DATA frame and TCP segment boundaries. Bodies larger than the
//! message size cap are reported with their length and skipped, never buffered; so are all
//! bodies of a deframer told nobody reads them.

use std::borrow::Cow;

/// Flag bit: the body is compressed with the stream's `grpc-encoding`.
pub const FLAG_COMPRESSED: u8 = 0x01;
/// Flag bit (gRPC-Web): the body is trailers, not a message.
pub const FLAG_TRAILERS: u8 = 0x80;

/// One message as cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage<'a> {
    pub flags: u8,
    /// Length from the prefix.
    pub length: u32,
    pub body: Body<'a>,
}

/// What became of a message's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    /// Borrowed from the pushed bytes when the message lay wholly in them, the common case;
    /// owned when it was put together across pushes.
    Kept(Cow<'a, [u8]>),
    /// Larger than the message size cap: counted, not kept.
    OverCap,
    /// This many bytes of it were not in the capture.
    Missing(u64),
    /// Not kept because nothing reads it (see [`Deframer::keep_bodies`]).
    Unread,
}

impl Body<'_> {
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Body::Kept(b) => Some(b),
            _ => None,
        }
    }
}

impl RawMessage<'_> {
    pub fn into_owned(self) -> RawMessage<'static> {
        RawMessage {
            flags: self.flags,
            length: self.length,
            body: match self.body {
                Body::Kept(b) => Body::Kept(Cow::Owned(b.into_owned())),
                Body::OverCap => Body::OverCap,
                Body::Missing(n) => Body::Missing(n),
                Body::Unread => Body::Unread,
            },
        }
    }
}

/// What is done with a body, decided when its prefix is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    OverCap,
    Unread,
}

#[derive(Debug)]
enum State {
    Prefix {
        buf: [u8; 5],
        have: usize,
    },
    Body {
        flags: u8,
        length: u32,
        buf: Vec<u8>,
        got: u32,
        fate: Fate,
        missing: u64,
    },
    /// Framing lost (a gap outside a body): nothing more is cut from this stream.
    Lost,
}

#[derive(Debug)]
pub struct Deframer {
    state: State,
    /// A prefix's length is 32 bits: a larger cap is no cap.
    max_message: u32,
    /// False when nothing reads the bodies: they are then neither buffered nor lent.
    keep_bodies: bool,
    /// grpc-web-text: DATA is base64; undecoded characters carried between chunks.
    text: Option<Vec<u8>>,
}

impl Deframer {
    pub fn new(max_message: usize, base64_text: bool) -> Self {
        Deframer {
            state: State::Prefix {
                buf: [0; 5],
                have: 0,
            },
            max_message: u32::try_from(max_message).unwrap_or(u32::MAX),
            keep_bodies: true,
            text: base64_text.then(Vec::new),
        }
    }

    /// Whether bodies are kept (the default) or only counted: a summary, calls only and
    /// statistics read none, and a message of many segments then costs no copy. Applies to
    /// bodies whose prefix comes after.
    pub fn keep_bodies(&mut self, keep: bool) {
        self.keep_bodies = keep;
    }

    fn fate(&self, length: u32) -> Fate {
        if length > self.max_message {
            Fate::OverCap
        } else if self.keep_bodies {
            Fate::Keep
        } else {
            Fate::Unread
        }
    }

    pub fn is_lost(&self) -> bool {
        matches!(self.state, State::Lost)
    }

    /// Bytes of a message started but not finished (for the end-of-stream report).
    pub fn pending(&self) -> Option<(u32, u32)> {
        match &self.state {
            State::Prefix { have, .. } if *have > 0 => Some((*have as u32, 5)),
            State::Body { length, got, .. } => Some((*got, *length)),
            _ => None,
        }
    }

    pub fn push<'a>(&mut self, bytes: &'a [u8], out: &mut Vec<RawMessage<'a>>) {
        match self.text.take() {
            None => self.push_binary(bytes, out),
            Some(mut carry) => {
                // Base64 is decoded in whole quads; grpc-web-text may concatenate padded chunks,
                // which quad-wise decoding handles.
                carry.extend(bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()));
                let whole = carry.len() / 4 * 4;
                let mut decoded = Vec::with_capacity(whole / 4 * 3);
                let mut ok = true;
                for quad in carry[..whole].chunks(4) {
                    match base64_quad(quad) {
                        Some((b, n)) => decoded.extend_from_slice(&b[..n]),
                        None => {
                            ok = false;
                            break;
                        }
                    }
                }
                carry.drain(..whole);
                self.text = Some(carry);
                let mut cut = Vec::new();
                self.push_binary(&decoded, &mut cut);
                out.extend(cut.into_iter().map(|m| m.into_owned()));
                if !ok {
                    self.state = State::Lost;
                }
            }
        }
    }

    fn push_binary<'a>(&mut self, mut bytes: &'a [u8], out: &mut Vec<RawMessage<'a>>) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Lost => return,
                State::Prefix { have: 0, .. } if bytes.len() >= 5 => {
                    let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                    let end = 5 + length as usize;
                    let fate = self.fate(length);
                    if fate != Fate::OverCap && bytes.len() >= end {
                        // The whole message is here: no copy.
                        out.push(RawMessage {
                            flags: bytes[0],
                            length,
                            body: match fate {
                                Fate::Keep => Body::Kept(Cow::Borrowed(&bytes[5..end])),
                                _ => Body::Unread,
                            },
                        });
                        bytes = &bytes[end..];
                        continue;
                    }
                    self.state = State::Body {
                        flags: bytes[0],
                        length,
                        buf: Vec::new(),
                        got: 0,
                        fate,
                        missing: 0,
                    };
                    bytes = &bytes[5..];
                    self.complete_if_done(out);
                }
                State::Prefix { buf, have } => {
                    let take = (5 - *have).min(bytes.len());
                    buf[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &bytes[take..];
                    if *have == 5 {
                        let flags = buf[0];
                        let length = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
                        self.state = State::Body {
                            flags,
                            length,
                            buf: Vec::new(),
                            got: 0,
                            fate: self.fate(length),
                            missing: 0,
                        };
                        self.complete_if_done(out);
                    }
                }
                State::Body {
                    length,
                    buf,
                    got,
                    fate,
                    ..
                } => {
                    let take = ((*length - *got) as usize).min(bytes.len());
                    if *fate == Fate::Keep {
                        if buf.is_empty() {
                            // Reserve from what arrived, not from the (untrusted) prefix alone:
                            // up to 16 times the first piece, which holds a message of a few
                            // segments without regrowing, and costs a liar little.
                            let rest = (*length - *got) as usize;
                            buf.reserve(rest.min(take.saturating_mul(16)));
                        }
                        buf.extend_from_slice(&bytes[..take]);
                    }
                    *got += take as u32;
                    bytes = &bytes[take..];
                    self.complete_if_done(out);
                }
            }
        }
    }

    fn complete_if_done(&mut self, out: &mut Vec<RawMessage<'_>>) {
        if let State::Body {
            flags,
            length,
            got,
            fate,
            missing,
            buf,
        } = &mut self.state
        {
            if *got == *length {
                out.push(RawMessage {
                    flags: *flags,
                    length: *length,
                    body: match fate {
                        _ if *missing > 0 => Body::Missing(*missing),
                        Fate::Keep => Body::Kept(Cow::Owned(std::mem::take(buf))),
                        Fate::OverCap => Body::OverCap,
                        Fate::Unread => Body::Unread,
                    },
                });
                self.state = State::Prefix {
                    buf: [0; 5],
                    have: 0,
                };
            }
        }
    }

    /// `n` bytes of the stream are missing. Inside a body the framing survives; elsewhere it is
    /// lost for good. Returns whether the framing survived.
    pub fn gap(&mut self, n: u64, out: &mut Vec<RawMessage<'_>>) -> bool {
        if self.text.is_some() {
            self.state = State::Lost;
            return false;
        }
        match &mut self.state {
            State::Body {
                length,
                got,
                missing,
                buf,
                ..
            } if (*length - *got) as u64 >= n => {
                *got += n as u32;
                *missing += n;
                *buf = Vec::new();
                self.complete_if_done(out);
                true
            }
            State::Prefix { have: 0, .. } if n == 0 => true,
            _ => {
                self.state = State::Lost;
                false
            }
        }
    }
}

fn base64_value(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    })
}

/// Decodes one group of 4 base64 characters (standard or URL alphabet, `=` padding).
fn base64_quad(q: &[u8]) -> Option<([u8; 3], usize)> {
    let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let mut v: u32 = 0;
    for &c in &q[..4 - pad] {
        v = (v << 6) | base64_value(c)? as u32;
    }
    v <<= 6 * pad as u32;
    let b = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
    Some((b, 3 - pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(flags: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![flags];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn messages_across_any_split() {
        let stream = [msg(0, b"hello"), msg(0, b""), msg(1, b"xyz")].concat();
        for split in 1..stream.len() {
            let mut d = Deframer::new(1024, false);
            let mut out = Vec::new();
            for chunk in stream.chunks(split) {
                d.push(chunk, &mut out);
            }
            assert_eq!(out.len(), 3, "split {split}");
            assert_eq!(out[0].body.bytes(), Some(&b"hello"[..]));
            assert_eq!(out[1].body.bytes(), Some(&b""[..]));
            assert_eq!(out[2].flags, 1);
            assert!(d.pending().is_none());
        }
    }

    /// A prefix may lie about the length: what is reserved follows what arrived, not it.
    #[test]
    fn reservation_follows_the_data_not_the_prefix() {
        let reserved = |d: &Deframer| match &d.state {
            State::Body { buf, .. } => buf.capacity(),
            _ => 0,
        };
        let mut d = Deframer::new(64 << 20, false);
        let mut out = Vec::new();
        let mut first = vec![0];
        first.extend_from_slice(&(60u32 << 20).to_be_bytes());
        first.extend_from_slice(b"abc");
        d.push(&first, &mut out);
        assert!(reserved(&d) <= 16 * 3, "{} bytes reserved", reserved(&d));
        // A message of a few segments fits what its first segment reserved.
        let mut d = Deframer::new(64 << 20, false);
        let body = vec![7u8; 5000];
        let stream = msg(0, &body);
        let (head, rest) = stream.split_at(1000);
        d.push(head, &mut out);
        let before = reserved(&d);
        assert!(before >= 4995, "{before}");
        d.push(rest, &mut out);
        assert_eq!(out.last().and_then(|m| m.body.bytes()), Some(&body[..]));
    }

    #[test]
    fn oversized_body_is_counted_not_kept() {
        let mut d = Deframer::new(4, false);
        let (long, ok) = (msg(0, b"too long body"), msg(0, b"ok"));
        let mut out = Vec::new();
        d.push(&long, &mut out);
        d.push(&ok, &mut out);
        assert_eq!(out[0].length, 13);
        assert_eq!(out[0].body, Body::OverCap);
        assert_eq!(out[1].body.bytes(), Some(&b"ok"[..]));
    }

    /// A message wholly inside one push is lent from it; one put together across pushes is owned.
    #[test]
    fn whole_messages_are_borrowed_split_ones_owned() {
        use std::borrow::Cow;
        let stream = [msg(0, b"first"), msg(0, b"second")].concat();
        let mut d = Deframer::new(1024, false);
        let mut out = Vec::new();
        d.push(&stream[..12], &mut out);
        d.push(&stream[12..], &mut out);
        assert!(matches!(&out[0].body, Body::Kept(Cow::Borrowed(b)) if b == b"first"));
        assert!(matches!(&out[1].body, Body::Kept(Cow::Owned(b)) if b == b"second"));
    }

    /// Unread bodies are cut and measured like kept ones, whole or split, and never buffered;
    /// a body over the cap or partly missing says so rather than being merely unread.
    #[test]
    fn unread_bodies_are_measured_not_kept() {
        let body = vec![7u8; 3000];
        let stream = [msg(0, b"small"), msg(1, &body), msg(0, &[1; 40])].concat();
        let mut d = Deframer::new(32, false);
        d.keep_bodies(false);
        let mut out = Vec::new();
        for chunk in stream.chunks(1000) {
            d.push(chunk, &mut out);
            if let State::Body { buf, .. } = &d.state {
                assert_eq!(buf.capacity(), 0);
            }
        }
        let got: Vec<_> = out.iter().map(|m| (m.flags, m.length, &m.body)).collect();
        assert_eq!(
            got,
            [
                (0, 5, &Body::Unread),
                (1, 3000, &Body::OverCap),
                (0, 40, &Body::OverCap)
            ]
        );
        let mut d = Deframer::new(1 << 20, false);
        d.keep_bodies(false);
        let mut out = Vec::new();
        d.push(&stream[..100], &mut out);
        assert!(d.gap(10, &mut out));
        d.push(&stream[110..], &mut out);
        let got: Vec<_> = out.iter().map(|m| &m.body).collect();
        assert_eq!(got, [&Body::Unread, &Body::Missing(10), &Body::Unread]);
    }

    #[test]
    fn huge_claimed_length_allocates_nothing_up_front() {
        let mut d = Deframer::new(usize::MAX, false);
        let mut out = Vec::new();
        d.push(&[0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3], &mut out);
        assert!(out.is_empty());
        assert_eq!(d.pending(), Some((3, u32::MAX)));
    }

    #[test]
    fn gap_inside_body_keeps_framing() {
        let mut d = Deframer::new(1024, false);
        let (m, next) = (msg(0, b"0123456789"), msg(0, b"next"));
        let mut out = Vec::new();
        d.push(&m[..8], &mut out);
        assert!(d.gap(4, &mut out));
        d.push(&m[12..], &mut out);
        d.push(&next, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].body, Body::Missing(4));
        assert_eq!(out[1].body.bytes(), Some(&b"next"[..]));
        assert!(!d.gap(1, &mut out));
        assert!(d.is_lost());
    }

    #[test]
    fn grpc_web_text_base64_in_padded_chunks() {
        use base64::Engine;
        let e = base64::engine::general_purpose::STANDARD;
        let a = e.encode(msg(0, b"hi"));
        let b = e.encode(msg(0x80, b"grpc-status: 0\r\n"));
        let text = format!("{a}{b}");
        let mut d = Deframer::new(1024, true);
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(3) {
            d.push(chunk, &mut out);
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].body.bytes(), Some(&b"hi"[..]));
        assert_eq!(out[1].flags, FLAG_TRAILERS);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// However the stream is cut, the same messages come out, and nothing panics on junk.
        #[test]
        fn splits_do_not_matter(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
                                cuts in proptest::collection::vec(1usize..50, 1..20),
                                junk in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut stream = Vec::new();
            for b in &bodies {
                stream.push(0);
                stream.extend_from_slice(&(b.len() as u32).to_be_bytes());
                stream.extend_from_slice(b);
            }
            let mut d = Deframer::new(1 << 10, false);
            let mut out = Vec::new();
            let mut rest = &stream[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                d.push(&rest[..n], &mut out);
                rest = &rest[n..];
                i += 1;
            }
            let got: Vec<Vec<u8>> = out.iter().map(|m| m.body.bytes().unwrap().to_vec()).collect();
            prop_assert_eq!(got, bodies);
            let mut out = Vec::new();
            d.push(&junk, &mut out);
            let mut t = Deframer::new(16, true);
            t.push(&junk, &mut out);
        }
    }
}
