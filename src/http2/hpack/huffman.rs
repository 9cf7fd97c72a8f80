//! HPACK Huffman code (RFC 7541 §5.2, Appendix B).
//!
//! Decoding walks the code tree four bits at a time through a transition
//! table computed at compile time from the code list below. Every code is at
//! least five bits long, so one nibble can complete at most one symbol, which
//! keeps a transition down to "next node, maybe one symbol, maybe EOS".

/// Why a Huffman-coded string literal was rejected (RFC 7541 §5.2).
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffmanError {
    /// The string contains the EOS symbol, which an encoder must never emit.
    #[error("EOS symbol inside the string")]
    EosInString,
    /// More than 7 bits of padding follow the last symbol.
    #[error("padding longer than 7 bits")]
    PaddingTooLong,
    /// The bits after the last symbol are not a prefix of EOS (all ones).
    #[error("padding is not a prefix of EOS")]
    InvalidPadding,
}

/// Symbol number of EOS in the code list.
const EOS: usize = 256;

// Appendix B of RFC 7541, split into lengths and codes so that each table
// stays compact and the row comments give the first symbol of the row.
#[rustfmt::skip]
/// Bit length of each symbol's code, indexed by symbol (256 = EOS).
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
     6, 10, 10, 12, 13,  6,  8, 11, 10, 10,  8, 11,  8,  6,  6,  6, // 0x20
     5,  5,  5,  6,  6,  6,  6,  6,  6,  6,  7,  8, 15,  6, 12, 10, // 0x30
    13,  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, // 0x40
     7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  8, 13, 19, 13, 14,  6, // 0x50
    15,  5,  6,  5,  6,  5,  6,  6,  6,  5,  7,  7,  6,  6,  6,  5, // 0x60
     6,  7,  6,  5,  5,  6,  7,  7,  7,  7,  7, 15, 11, 14, 13, 28, // 0x70
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
    30, // 0x100
];

/// Code of each symbol, right-aligned in its bit length.
#[rustfmt::skip]
const CODES: [u32; 257] = [
    0x00001ff8, 0x007fffd8, 0x0fffffe2, 0x0fffffe3, 0x0fffffe4, 0x0fffffe5, // 0x00
    0x0fffffe6, 0x0fffffe7, 0x0fffffe8, 0x00ffffea, 0x3ffffffc, 0x0fffffe9, // 0x06
    0x0fffffea, 0x3ffffffd, 0x0fffffeb, 0x0fffffec, 0x0fffffed, 0x0fffffee, // 0x0c
    0x0fffffef, 0x0ffffff0, 0x0ffffff1, 0x0ffffff2, 0x3ffffffe, 0x0ffffff3, // 0x12
    0x0ffffff4, 0x0ffffff5, 0x0ffffff6, 0x0ffffff7, 0x0ffffff8, 0x0ffffff9, // 0x18
    0x0ffffffa, 0x0ffffffb, 0x00000014, 0x000003f8, 0x000003f9, 0x00000ffa, // 0x1e
    0x00001ff9, 0x00000015, 0x000000f8, 0x000007fa, 0x000003fa, 0x000003fb, // 0x24
    0x000000f9, 0x000007fb, 0x000000fa, 0x00000016, 0x00000017, 0x00000018, // 0x2a
    0x00000000, 0x00000001, 0x00000002, 0x00000019, 0x0000001a, 0x0000001b, // 0x30
    0x0000001c, 0x0000001d, 0x0000001e, 0x0000001f, 0x0000005c, 0x000000fb, // 0x36
    0x00007ffc, 0x00000020, 0x00000ffb, 0x000003fc, 0x00001ffa, 0x00000021, // 0x3c
    0x0000005d, 0x0000005e, 0x0000005f, 0x00000060, 0x00000061, 0x00000062, // 0x42
    0x00000063, 0x00000064, 0x00000065, 0x00000066, 0x00000067, 0x00000068, // 0x48
    0x00000069, 0x0000006a, 0x0000006b, 0x0000006c, 0x0000006d, 0x0000006e, // 0x4e
    0x0000006f, 0x00000070, 0x00000071, 0x00000072, 0x000000fc, 0x00000073, // 0x54
    0x000000fd, 0x00001ffb, 0x0007fff0, 0x00001ffc, 0x00003ffc, 0x00000022, // 0x5a
    0x00007ffd, 0x00000003, 0x00000023, 0x00000004, 0x00000024, 0x00000005, // 0x60
    0x00000025, 0x00000026, 0x00000027, 0x00000006, 0x00000074, 0x00000075, // 0x66
    0x00000028, 0x00000029, 0x0000002a, 0x00000007, 0x0000002b, 0x00000076, // 0x6c
    0x0000002c, 0x00000008, 0x00000009, 0x0000002d, 0x00000077, 0x00000078, // 0x72
    0x00000079, 0x0000007a, 0x0000007b, 0x00007ffe, 0x000007fc, 0x00003ffd, // 0x78
    0x00001ffd, 0x0ffffffc, 0x000fffe6, 0x003fffd2, 0x000fffe7, 0x000fffe8, // 0x7e
    0x003fffd3, 0x003fffd4, 0x003fffd5, 0x007fffd9, 0x003fffd6, 0x007fffda, // 0x84
    0x007fffdb, 0x007fffdc, 0x007fffdd, 0x007fffde, 0x00ffffeb, 0x007fffdf, // 0x8a
    0x00ffffec, 0x00ffffed, 0x003fffd7, 0x007fffe0, 0x00ffffee, 0x007fffe1, // 0x90
    0x007fffe2, 0x007fffe3, 0x007fffe4, 0x001fffdc, 0x003fffd8, 0x007fffe5, // 0x96
    0x003fffd9, 0x007fffe6, 0x007fffe7, 0x00ffffef, 0x003fffda, 0x001fffdd, // 0x9c
    0x000fffe9, 0x003fffdb, 0x003fffdc, 0x007fffe8, 0x007fffe9, 0x001fffde, // 0xa2
    0x007fffea, 0x003fffdd, 0x003fffde, 0x00fffff0, 0x001fffdf, 0x003fffdf, // 0xa8
    0x007fffeb, 0x007fffec, 0x001fffe0, 0x001fffe1, 0x003fffe0, 0x001fffe2, // 0xae
    0x007fffed, 0x003fffe1, 0x007fffee, 0x007fffef, 0x000fffea, 0x003fffe2, // 0xb4
    0x003fffe3, 0x003fffe4, 0x007ffff0, 0x003fffe5, 0x003fffe6, 0x007ffff1, // 0xba
    0x03ffffe0, 0x03ffffe1, 0x000fffeb, 0x0007fff1, 0x003fffe7, 0x007ffff2, // 0xc0
    0x003fffe8, 0x01ffffec, 0x03ffffe2, 0x03ffffe3, 0x03ffffe4, 0x07ffffde, // 0xc6
    0x07ffffdf, 0x03ffffe5, 0x00fffff1, 0x01ffffed, 0x0007fff2, 0x001fffe3, // 0xcc
    0x03ffffe6, 0x07ffffe0, 0x07ffffe1, 0x03ffffe7, 0x07ffffe2, 0x00fffff2, // 0xd2
    0x001fffe4, 0x001fffe5, 0x03ffffe8, 0x03ffffe9, 0x0ffffffd, 0x07ffffe3, // 0xd8
    0x07ffffe4, 0x07ffffe5, 0x000fffec, 0x00fffff3, 0x000fffed, 0x001fffe6, // 0xde
    0x003fffe9, 0x001fffe7, 0x001fffe8, 0x007ffff3, 0x003fffea, 0x003fffeb, // 0xe4
    0x01ffffee, 0x01ffffef, 0x00fffff4, 0x00fffff5, 0x03ffffea, 0x007ffff4, // 0xea
    0x03ffffeb, 0x07ffffe6, 0x03ffffec, 0x03ffffed, 0x07ffffe7, 0x07ffffe8, // 0xf0
    0x07ffffe9, 0x07ffffea, 0x07ffffeb, 0x0ffffffe, 0x07ffffec, 0x07ffffed, // 0xf6
    0x07ffffee, 0x07ffffef, 0x07fffff0, 0x03ffffee, 0x3fffffff, // 0xfc
];

/// Marks a child slot in the code tree as a leaf; the low bits hold the symbol.
const LEAF: u16 = 0x8000;
/// A complete prefix code over 257 symbols has exactly 256 internal nodes,
/// so a decoder state (the internal node reached so far) fits in a `u8`.
const INTERNAL_NODES: usize = 256;
/// Longest padding an encoder may append (RFC 7541 §5.2).
const MAX_PADDING_BITS: u8 = 7;

const FLAG_EMIT: u8 = 1;
const FLAG_EOS: u8 = 2;

#[derive(Clone, Copy)]
struct Step {
    next: u8,
    symbol: u8,
    flags: u8,
}

/// How a string ending in a given state is judged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Accept,
    PaddingTooLong,
    InvalidPadding,
}

struct Machine {
    steps: [[Step; 16]; INTERNAL_NODES],
    ends: [End; INTERNAL_NODES],
}

// A `static` rather than a `const` so the 12 KiB table exists once instead of
// being materialised at every use site.
static MACHINE: Machine = build_machine();

/// Builds the nibble transition table. Runs at compile time, so a code list
/// that is not a complete prefix code fails the build instead of a decode.
const fn build_machine() -> Machine {
    // children[node][bit]: 0 = not yet assigned (the root is never a child),
    // LEAF | symbol, or the id of another internal node.
    let mut children = [[0u16; 2]; INTERNAL_NODES];
    let mut allocated = 1usize;
    let mut symbol = 0usize;
    while symbol <= EOS {
        let len = CODE_LENGTHS[symbol] as u32;
        let code = CODES[symbol];
        assert!(len >= 5 && len <= 30, "code length out of range");
        let mut node = 0usize;
        let mut bit_pos = len - 1;
        while bit_pos > 0 {
            let bit = ((code >> bit_pos) & 1) as usize;
            let child = children[node][bit];
            if child == 0 {
                assert!(allocated < INTERNAL_NODES, "too many internal nodes");
                children[node][bit] = allocated as u16;
                node = allocated;
                allocated += 1;
            } else {
                assert!(child & LEAF == 0, "code list is not a prefix code");
                node = child as usize;
            }
            bit_pos -= 1;
        }
        let bit = (code & 1) as usize;
        assert!(children[node][bit] == 0, "code list is not a prefix code");
        children[node][bit] = LEAF | symbol as u16;
        symbol += 1;
    }
    assert!(allocated == INTERNAL_NODES, "code list is not complete");

    // Valid padding is a prefix of EOS, whose code is all ones, so only nodes
    // on the all-ones path from the root may end a string, and only within
    // MAX_PADDING_BITS of the root.
    let mut ends = [End::InvalidPadding; INTERNAL_NODES];
    let mut node = 0usize;
    let mut depth = 0u8;
    loop {
        ends[node] = if depth <= MAX_PADDING_BITS {
            End::Accept
        } else {
            End::PaddingTooLong
        };
        let child = children[node][1];
        if child & LEAF != 0 {
            break;
        }
        node = child as usize;
        depth += 1;
    }

    let empty = Step {
        next: 0,
        symbol: 0,
        flags: 0,
    };
    let mut steps = [[empty; 16]; INTERNAL_NODES];
    let mut state = 0usize;
    while state < INTERNAL_NODES {
        let mut nibble = 0usize;
        while nibble < 16 {
            let mut step = empty;
            let mut node = state;
            let mut bit_pos = 4;
            while bit_pos > 0 {
                bit_pos -= 1;
                let child = children[node][(nibble >> bit_pos) & 1];
                assert!(child != 0, "code list is not complete");
                if child & LEAF == 0 {
                    node = child as usize;
                    continue;
                }
                node = 0;
                if (child & !LEAF) as usize == EOS {
                    step.flags |= FLAG_EOS;
                    break;
                }
                assert!(step.flags & FLAG_EMIT == 0, "two symbols in a nibble");
                step.flags |= FLAG_EMIT;
                step.symbol = (child & !LEAF) as u8;
            }
            step.next = node as u8;
            steps[state][nibble] = step;
            nibble += 1;
        }
        state += 1;
    }
    Machine { steps, ends }
}

/// Upper bound on the decoded length of `encoded_len` Huffman-coded bytes:
/// the shortest code is 5 bits.
pub fn max_decoded_len(encoded_len: usize) -> usize {
    encoded_len.saturating_mul(8) / 5
}

/// Decodes a Huffman-coded string literal, appending the octets to `out`.
///
/// # Errors
///
/// A [`HuffmanError`] for EOS inside the string or bad padding; `out` is then
/// left as it was.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let start = out.len();
    out.reserve(max_decoded_len(input.len()));
    let mut state = 0u8;
    for &byte in input {
        for nibble in [byte >> 4, byte & 0x0f] {
            let step = MACHINE.steps[usize::from(state)][usize::from(nibble)];
            if step.flags & FLAG_EOS != 0 {
                out.truncate(start);
                return Err(HuffmanError::EosInString);
            }
            if step.flags & FLAG_EMIT != 0 {
                out.push(step.symbol);
            }
            state = step.next;
        }
    }
    let verdict = match MACHINE.ends[usize::from(state)] {
        End::Accept => return Ok(()),
        End::PaddingTooLong => HuffmanError::PaddingTooLong,
        End::InvalidPadding => HuffmanError::InvalidPadding,
    };
    out.truncate(start);
    Err(verdict)
}

/// Length in bits of the Huffman code of `byte`.
pub fn code_len(byte: u8) -> usize {
    usize::from(CODE_LENGTHS[usize::from(byte)])
}

/// Length in bytes of the Huffman coding of `input`, padding included.
pub fn encoded_len(input: &[u8]) -> usize {
    let bits: usize = input.iter().map(|&b| code_len(b)).sum();
    bits.div_ceil(8)
}

/// Huffman-codes `input` and appends it to `out`, padded with the most
/// significant bits of EOS as §5.2 requires.
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(input));
    // Holds fewer than 8 pending bits between symbols; a symbol adds at most
    // 30, so 64 bits never overflow.
    let mut pending: u64 = 0;
    let mut pending_bits: u32 = 0;
    for &byte in input {
        let len = u32::from(CODE_LENGTHS[usize::from(byte)]);
        pending = (pending << len) | u64::from(CODES[usize::from(byte)]);
        pending_bits += len;
        while pending_bits >= 8 {
            pending_bits -= 8;
            out.push((pending >> pending_bits) as u8);
        }
        pending &= (1 << pending_bits) - 1;
    }
    if pending_bits > 0 {
        let pad = 8 - pending_bits;
        out.push(((pending << pad) | ((1 << pad) - 1)) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn dec(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(input, &mut out).map(|()| out)
    }

    // Pairs from RFC 7541 Appendix C.4 and C.6.
    const RFC_STRINGS: &[(&str, &str)] = &[
        ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
        ("no-cache", "a8eb 1064 9cbf"),
        ("custom-key", "25a8 49e9 5ba9 7d7f"),
        ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
        ("302", "6402"),
        ("private", "aec3 771a 4b"),
        (
            "Mon, 21 Oct 2013 20:13:21 GMT",
            "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
        ),
        (
            "https://www.example.com",
            "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
        ),
        ("307", "640e ff"),
        ("gzip", "9bd9 ab"),
        (
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 \
             ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ),
    ];

    #[test]
    fn rfc_examples_decode() {
        for &(plain, coded) in RFC_STRINGS {
            assert_eq!(dec(&hex(coded)).unwrap(), plain.as_bytes(), "{plain}");
        }
    }

    #[test]
    fn rfc_examples_encode() {
        for &(plain, coded) in RFC_STRINGS {
            let mut out = Vec::new();
            encode(plain.as_bytes(), &mut out);
            assert_eq!(out, hex(coded), "{plain}");
            assert_eq!(encoded_len(plain.as_bytes()), out.len());
        }
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut coded = Vec::new();
        encode(&all, &mut coded);
        assert_eq!(dec(&coded).unwrap(), all);
        for b in 0..=255u8 {
            let mut coded = Vec::new();
            encode(&[b], &mut coded);
            assert_eq!(dec(&coded).unwrap(), [b]);
        }
    }

    #[test]
    fn empty_string_is_valid() {
        assert_eq!(dec(&[]).unwrap(), b"");
    }

    #[test]
    fn eos_is_rejected() {
        // 30 one bits is EOS itself, here followed by two bits of padding.
        assert_eq!(
            dec(&[0xff, 0xff, 0xff, 0xff]),
            Err(HuffmanError::EosInString)
        );
        // EOS after a real symbol ('0' = 00000), then more ones.
        assert_eq!(
            dec(&[0x07, 0xff, 0xff, 0xff, 0xff]),
            Err(HuffmanError::EosInString)
        );
    }

    #[test]
    fn padding_longer_than_seven_bits_is_rejected() {
        assert_eq!(dec(&[0xff]), Err(HuffmanError::PaddingTooLong));
        // '0' (00000) then 11 ones.
        assert_eq!(dec(&[0x07, 0xff]), Err(HuffmanError::PaddingTooLong));
    }

    #[test]
    fn padding_not_all_ones_is_rejected() {
        // '0' (00000) then padding 110 instead of 111.
        assert_eq!(dec(&[0x06]), Err(HuffmanError::InvalidPadding));
        // 'a' (00011) then padding 000.
        assert_eq!(dec(&[0x18]), Err(HuffmanError::InvalidPadding));
    }

    #[test]
    fn error_leaves_output_untouched() {
        let mut out = b"keep".to_vec();
        assert!(decode(&[0x07, 0xff, 0xff, 0xff, 0xff], &mut out).is_err());
        assert_eq!(out, b"keep");
    }

    #[test]
    fn output_never_exceeds_bound() {
        // 8 bytes of '0' codes (00000) pack 12 symbols plus 4 bits of padding.
        let mut coded = Vec::new();
        encode(&[b'0'; 12], &mut coded);
        assert_eq!(coded.len(), 8);
        assert!(dec(&coded).unwrap().len() <= max_decoded_len(coded.len()));
    }
}
