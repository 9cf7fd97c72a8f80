//! Finding frame boundaries without the start of the conversation: in a connection the capture
//! joined mid-way, or after bytes went missing. A position is taken when the frame header there
//! is plausible and a chain of plausible frames follows it (or fills the bytes at hand).

use super::frame::{FrameHeader, FrameType, FRAME_HEADER_LEN};

/// Where to look, at most, for the next frame boundary.
pub const MAX_SCAN: usize = 64 * 1024;

/// Frames a chain needs to be believed when it does not fill the bytes at hand.
const CHAIN: usize = 3;

/// Could a frame start with these 9 bytes?
pub fn plausible(raw: &[u8; FRAME_HEADER_LEN]) -> bool {
    if raw[5] & 0x80 != 0 {
        // The reserved bit is always sent as 0.
        return false;
    }
    let h = FrameHeader::parse(raw);
    if h.flags & !h.kind.defined_flags() != 0 {
        return false;
    }
    let len = h.length;
    let on_stream = h.stream != 0;
    match h.kind {
        FrameType::Data => on_stream,
        FrameType::Headers | FrameType::Continuation => on_stream && len > 0,
        FrameType::PushPromise => on_stream && (4..=1 << 20).contains(&len),
        FrameType::Priority => on_stream && len == 5,
        FrameType::RstStream => on_stream && len == 4,
        FrameType::Settings => {
            !on_stream && len % 6 == 0 && len <= 6 * 32 && (h.flags & 1 == 0 || len == 0)
        }
        FrameType::Ping => !on_stream && len == 8,
        FrameType::GoAway => !on_stream && (8..=1 << 16).contains(&len),
        FrameType::WindowUpdate => len == 4,
        FrameType::Unknown(_) => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Frames start at this offset.
    At(usize),
    /// Consistent so far, but too little to be sure: wait for more bytes.
    NeedMore,
    /// No frame boundary in the bytes scanned.
    Nothing,
}

enum Chain {
    Good,
    /// Plausible frames that run to the end of the bytes: how many, and whether the last one
    /// ends exactly where the bytes do.
    Open(usize, bool),
    Bad,
}

fn chain_at(buf: &[u8], start: usize) -> Chain {
    let mut pos = start;
    let mut frames = 0;
    loop {
        if pos >= buf.len() {
            return Chain::Open(frames, pos == buf.len());
        }
        let Some(raw) = buf.get(pos..pos + FRAME_HEADER_LEN) else {
            // A header cut by the end of the bytes: cannot judge it yet.
            return Chain::Open(frames, false);
        };
        let raw: &[u8; FRAME_HEADER_LEN] = raw.try_into().unwrap_or(&[0xff; FRAME_HEADER_LEN]);
        if !plausible(raw) {
            return Chain::Bad;
        }
        frames += 1;
        if frames >= CHAIN {
            return Chain::Good;
        }
        pos += FRAME_HEADER_LEN + FrameHeader::parse(raw).length as usize;
    }
}

/// Whether the bytes start like a TLS record (handshake, alert, change-cipher-spec or
/// application data): encrypted HTTP/2 is not decodable, and its noise must not be taken for frames.
pub fn looks_like_tls(buf: &[u8]) -> bool {
    matches!(buf, [0x14..=0x17, 0x03, 0x00..=0x04, ..])
}

/// Looks for frame boundaries in `buf`. `at_end`: no more bytes will come, so a lone frame that
/// fills the rest is accepted.
pub fn find_frames(buf: &[u8], at_end: bool) -> Sync {
    let mut need_more = false;
    for start in 0..buf.len().min(MAX_SCAN) {
        match chain_at(buf, start) {
            Chain::Good => return Sync::At(start),
            Chain::Open(n, _) if n >= 2 => return Sync::At(start),
            // Offset 0 is where a segment began, the likeliest boundary: a lone frame whose
            // length is exactly what the bytes hold is believed, as is any lone frame at the end.
            Chain::Open(1, exact) if start == 0 && (exact || at_end) => return Sync::At(start),
            Chain::Open(_, _) if start == 0 => return Sync::NeedMore,
            Chain::Open(_, _) => need_more = true,
            Chain::Bad => {}
        }
    }
    if need_more && !at_end {
        Sync::NeedMore
    } else {
        Sync::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut v = (len as u32).to_be_bytes()[1..].to_vec();
        v.push(kind);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend(std::iter::repeat_n(0x41, len));
        v
    }

    #[test]
    fn finds_a_chain_after_garbage() {
        let mut b = b"\x17\x03\x03garbage tail of a frame".to_vec();
        let start = b.len();
        b.extend(frame(1, 4, 7, 20));
        b.extend(frame(0, 0, 7, 100));
        b.extend(frame(8, 0, 0, 4));
        b.extend(frame(6, 0, 0, 8));
        assert_eq!(find_frames(&b, false), Sync::At(start));
    }

    #[test]
    fn two_frames_filling_the_bytes_are_enough() {
        let mut b = frame(1, 4, 1_392_369, 30);
        b.extend(frame(8, 0, 0, 4));
        assert_eq!(find_frames(&b, false), Sync::At(0));
        // A HEADERS frame and the first 9 bytes of a long DATA frame.
        let mut b = frame(1, 4, 1, 50);
        b.extend(&frame(0, 0, 1, 2438)[..9]);
        assert_eq!(find_frames(&b, false), Sync::At(0));
    }

    #[test]
    fn a_lone_frame_needs_an_exact_fit_or_the_end() {
        let b = frame(0, 1, 3, 40);
        assert_eq!(find_frames(&b, false), Sync::At(0));
        let cut = &b[..30];
        assert_eq!(find_frames(cut, false), Sync::NeedMore);
        assert_eq!(find_frames(cut, true), Sync::At(0));
    }

    #[test]
    fn text_is_not_http2() {
        let b = b"GET / HTTP/1.1\r\nHost: example\r\nUser-Agent: x\r\n\r\n".repeat(20);
        assert_eq!(find_frames(&b, true), Sync::Nothing);
    }
}
