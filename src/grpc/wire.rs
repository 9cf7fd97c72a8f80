//! Schema-less protobuf decoding, in the manner of `protoc --decode_raw`: field numbers and wire
//! types are always shown; length-delimited fields are guessed as text, nested message, packed
//! numbers or bytes. It never fails: bytes that do not parse are shown as such.
//!
//! The result is a typed tree rather than JSON values: the outputs write it directly (a bulk
//! message's bytes field goes to JSON Lines as hex without an intermediate string to escape).

use std::ops::Range;

/// Nested messages are followed at most this deep (guessed without a schema here, walked with
/// one for the key spans of `message`).
pub(crate) const MAX_DEPTH: usize = 32;
/// Fields listed at most per message tree, so that a pathological message stays cheap.
const MAX_NODES: usize = 50_000;
/// Bytes kept of what follows a field that does not parse.
const MALFORMED_SHOWN: usize = 256;
/// Bytes kept of what follows the last field listed when the tree is cut at [`MAX_NODES`].
const TRUNCATED_SHOWN: usize = 64;

/// One entry of a message read without its schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Field {
        number: u64,
        value: WireValue,
        /// Where the field lies in the message, its tag included (for pointing at its bytes).
        span: Range<usize>,
    },
    /// Bytes at `offset` that are no field: the first of them, and how many there were.
    /// Offsets count from the start of the message, also inside nested fields.
    Malformed {
        offset: usize,
        shown: Vec<u8>,
        remaining: usize,
    },
    /// The tree was cut at [`MAX_NODES`] entries; the first bytes not listed.
    Truncated { offset: usize, shown: Vec<u8> },
}

/// A field's value, by wire type.
#[derive(Debug, Clone, PartialEq)]
pub enum WireValue {
    Varint(u64),
    I64(u64),
    I32(u32),
    Len {
        length: usize,
        guess: LenGuess,
    },
    /// A group, and whether it ended with its end-group tag.
    Group {
        fields: Vec<Node>,
        ended: bool,
    },
}

/// What the bytes of a length-delimited field look like.
#[derive(Debug, Clone, PartialEq)]
pub enum LenGuess {
    String(String),
    Message(Vec<Node>),
    PackedVarints(Vec<u64>),
    Bytes(Vec<u8>),
}

impl WireValue {
    /// The wire type's name as the outputs show it.
    pub fn wire_name(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::I64(_) => "i64",
            WireValue::I32(_) => "i32",
            WireValue::Len { .. } => "len",
            WireValue::Group { .. } => "group",
        }
    }

    /// A varint read as a `sint` (ZigZag), when that reading is negative: the hint that the
    /// field may be signed.
    pub fn zigzag(&self) -> Option<i64> {
        let WireValue::Varint(v) = *self else {
            return None;
        };
        let signed = ((v >> 1) as i64) ^ -((v & 1) as i64);
        (v > 1 && signed < 0).then_some(signed)
    }

    /// A fixed 64-bit value read as a `double`, when that reading looks like a number someone
    /// would send.
    pub fn double(&self) -> Option<f64> {
        let WireValue::I64(v) = *self else {
            return None;
        };
        let d = f64::from_bits(v);
        (d.is_finite() && d != 0.0 && d.abs() > 1e-300 && d.abs() < 1e300).then_some(d)
    }

    /// The fields inside: of a group, or of a length-delimited field read as a message.
    pub fn nested(&self) -> Option<&[Node]> {
        match self {
            WireValue::Len {
                guess: LenGuess::Message(fields),
                ..
            }
            | WireValue::Group { fields, .. } => Some(fields),
            _ => None,
        }
    }

    /// A fixed 32-bit value read as a `float`, on the same terms as [`WireValue::double`].
    pub fn float(&self) -> Option<f32> {
        let WireValue::I32(v) = *self else {
            return None;
        };
        let f = f32::from_bits(v);
        (f.is_finite() && f != 0.0 && f.abs() > 1e-30 && f.abs() < 1e30).then_some(f)
    }
}

/// Decodes `bytes` as a protobuf message without a schema.
pub fn decode_raw(bytes: &[u8]) -> Vec<Node> {
    let mut budget = MAX_NODES;
    walk(bytes, 0, 0, &mut budget, None).0
}

/// One field of a message as [`top_level`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldAt {
    pub number: u64,
    /// Where the field lies, tag included.
    pub span: Range<usize>,
    /// A length-delimited field's contents (after its tag and length).
    pub body: Option<Range<usize>>,
}

/// The top-level fields of a message, in the order they come. Stops at bytes that are not a
/// field (or a group, which it does not walk), and after [`MAX_NODES`] fields.
pub fn top_level(bytes: &[u8]) -> Vec<FieldAt> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() && out.len() < MAX_NODES {
        let Some((tag, n)) = read_varint(&bytes[at..]) else {
            break;
        };
        let Some(len) = skip_field(&bytes[at + n..], tag & 7) else {
            break;
        };
        let end = at + n + len;
        let body = (tag & 7 == 2)
            .then(|| read_varint(&bytes[at + n..]))
            .flatten()
            .map(|(_, k)| at + n + k..end);
        out.push(FieldAt {
            number: tag >> 3,
            span: at..end,
            body,
        });
        at = end;
    }
    out
}

/// Reads a base-128 varint; `None` when cut short or longer than 10 bytes.
pub fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Walks one message (or group body when `group` is set) that starts at `base` in the whole
/// message. Returns the fields and whether the bytes parsed cleanly to the end.
fn walk(
    bytes: &[u8],
    base: usize,
    depth: usize,
    budget: &mut usize,
    group: Option<u64>,
) -> (Vec<Node>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if *budget == 0 {
            out.push(Node::Truncated {
                offset: base + at,
                shown: bytes[at..bytes.len().min(at + TRUNCATED_SHOWN)].to_vec(),
            });
            return (out, false);
        }
        *budget -= 1;
        let Some((tag, n)) = read_varint(&bytes[at..]) else {
            out.push(malformed(bytes, at, base));
            return (out, false);
        };
        let number = tag >> 3;
        let wire = tag & 7;
        if number == 0 || number > 536_870_911 {
            out.push(malformed(bytes, at, base));
            return (out, false);
        }
        let start = at;
        at += n;
        let value = match wire {
            0 => {
                let Some((v, n)) = read_varint(&bytes[at..]) else {
                    out.push(malformed(bytes, start, base));
                    return (out, false);
                };
                at += n;
                WireValue::Varint(v)
            }
            1 => {
                let Some(b) = bytes.get(at..at + 8) else {
                    out.push(malformed(bytes, start, base));
                    return (out, false);
                };
                at += 8;
                WireValue::I64(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            5 => {
                let Some(b) = bytes.get(at..at + 4) else {
                    out.push(malformed(bytes, start, base));
                    return (out, false);
                };
                at += 4;
                WireValue::I32(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            }
            2 => {
                let Some((len, n)) = read_varint(&bytes[at..]) else {
                    out.push(malformed(bytes, start, base));
                    return (out, false);
                };
                at += n;
                let end = at.checked_add(len as usize).filter(|&e| e <= bytes.len());
                let Some(end) = end else {
                    out.push(malformed(bytes, start, base));
                    return (out, false);
                };
                let body = &bytes[at..end];
                let guess = guess_len(body, base + at, depth, budget);
                at = end;
                WireValue::Len {
                    length: body.len(),
                    guess,
                }
            }
            3 => {
                if depth >= MAX_DEPTH {
                    out.push(malformed(bytes, start, base));
                    return (out, false);
                }
                // A group runs to its end-group tag; find it by walking.
                let (fields, consumed, ended) =
                    walk_group(&bytes[at..], base + at, depth + 1, budget, number);
                at += consumed;
                let value = WireValue::Group { fields, ended };
                if !ended {
                    let span = base + start..base + at;
                    out.push(Node::Field {
                        number,
                        value,
                        span,
                    });
                    return (out, false);
                }
                value
            }
            4 => {
                if group == Some(number) {
                    return (out, true);
                }
                out.push(malformed(bytes, start, base));
                return (out, false);
            }
            _ => {
                out.push(malformed(bytes, start, base));
                return (out, false);
            }
        };
        let span = base + start..base + at;
        out.push(Node::Field {
            number,
            value,
            span,
        });
    }
    (out, group.is_none())
}

/// Walks a group body; returns its fields, the bytes consumed (including the end tag) and
/// whether it ended properly.
fn walk_group(
    bytes: &[u8],
    base: usize,
    depth: usize,
    budget: &mut usize,
    field: u64,
) -> (Vec<Node>, usize, bool) {
    // Find the end tag by scanning field by field (the same walk, remembering the position).
    let mut at = 0;
    while at < bytes.len() {
        let Some((tag, n)) = read_varint(&bytes[at..]) else {
            break;
        };
        if tag & 7 == 4 && tag >> 3 == field {
            let (fields, ok) = walk(&bytes[..at], base, depth, budget, None);
            return (fields, at + n, ok);
        }
        let Some(skip) = skip_field(&bytes[at + n..], tag & 7) else {
            break;
        };
        at += n + skip;
    }
    (vec![malformed(bytes, 0, base)], bytes.len(), false)
}

/// Length of a field's payload after its tag, for skipping.
fn skip_field(b: &[u8], wire: u64) -> Option<usize> {
    match wire {
        0 => read_varint(b).map(|(_, n)| n),
        1 => (b.len() >= 8).then_some(8),
        5 => (b.len() >= 4).then_some(4),
        2 => {
            let (len, n) = read_varint(b)?;
            let end = n.checked_add(len as usize)?;
            (end <= b.len()).then_some(end)
        }
        _ => None,
    }
}

/// Guesses what the length-delimited `body`, at `base` in the whole message, holds.
fn guess_len(body: &[u8], base: usize, depth: usize, budget: &mut usize) -> LenGuess {
    if body.is_empty() {
        return LenGuess::String(String::new());
    }
    if let Ok(s) = std::str::from_utf8(body) {
        if s.chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        {
            return LenGuess::String(s.to_owned());
        }
    }
    if depth < MAX_DEPTH {
        // A failed guess still spends its budget, which bounds the total work.
        let (fields, ok) = walk(body, base, depth + 1, budget, None);
        if ok && !fields.is_empty() {
            return LenGuess::Message(fields);
        }
    }
    match packed_varints(body) {
        Some(values) => LenGuess::PackedVarints(values),
        None => LenGuess::Bytes(body.to_vec()),
    }
}

/// Appends the lower-case hex of `bytes` to `out`. A bytes field of a bulk message is tens of
/// kilobytes: `faster-hex` writes 32 digits per AVX2 step, where a table lookup per byte took
/// about five instructions a byte (half of a bulk capture's JSON Lines).
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + 2 * bytes.len(), 0);
    // Fails only when the room is short of twice the bytes, which it is not.
    let written = faster_hex::hex_encode(bytes, &mut out[start..]).is_ok();
    debug_assert!(written);
}

/// Lower-case hex of `bytes` (see [`push_hex`]).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    push_hex(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}

/// `b` read as packed varints, if it is nothing but whole varints. Checked before a value is
/// kept: the bytes of a bulk field are no such run, but only show it kilobytes in, and the list
/// built on the way there (grown, copied, dropped) was most of a bulk message's walk.
fn packed_varints(b: &[u8]) -> Option<Vec<u64>> {
    read_varints(b, Vec::with_capacity(packed_varint_count(b)?))
}

/// The varints of `b` one after another, appended to `out`; `None` at one that is cut short or
/// too long.
fn read_varints(b: &[u8], mut out: Vec<u64>) -> Option<Vec<u64>> {
    let mut at = 0;
    while at < b.len() {
        let (v, n) = read_varint(&b[at..])?;
        out.push(v);
        at += n;
    }
    Some(out)
}

/// How many varints `b` holds when it is a run of whole ones as [`read_varint`] reads them: a
/// byte with its high bit clear ends one, and none may take more than ten bytes. Eight bytes at
/// a time, from the bytes that end a varint (their high bits, cleared).
fn packed_varint_count(b: &[u8]) -> Option<usize> {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if b.last().is_some_and(|last| last & 0x80 != 0) {
        return None;
    }
    // Continuation bytes since the last byte that ended a varint.
    let mut run = 0;
    let mut count = 0;
    let mut chunks = b.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let ends = !u64::from_le_bytes(word) & HIGH;
        if ends == 0 {
            run += 8;
        } else {
            // The first byte (the lowest) that ends a varint ends the run carried in.
            if run + ends.trailing_zeros() / 8 >= 10 {
                return None;
            }
            run = ends.leading_zeros() / 8;
            count += ends.count_ones() as usize;
        }
        if run >= 10 {
            return None;
        }
    }
    for &byte in chunks.remainder() {
        if byte & 0x80 == 0 {
            count += 1;
            run = 0;
        } else {
            run += 1;
            if run >= 10 {
                return None;
            }
        }
    }
    Some(count)
}

/// The bytes from `at` on, which do not parse, of a body that starts at `base` in the message.
fn malformed(bytes: &[u8], at: usize, base: usize) -> Node {
    let end = bytes.len().min(at + MALFORMED_SHOWN);
    Node::Malformed {
        offset: base + at,
        shown: bytes[at..end].to_vec(),
        remaining: bytes.len() - at,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `{1: 150, 2: "testing", 3: {1: 1}, 4: [3, 270] packed, 5: fixed32 1.5f}`
    pub(crate) fn sample() -> Vec<u8> {
        let mut b = vec![0x08, 0x96, 0x01, 0x12, 0x07];
        b.extend_from_slice(b"testing");
        b.extend_from_slice(&[0x1a, 0x02, 0x08, 0x01]);
        b.extend_from_slice(&[0x22, 0x03, 0x03, 0x8e, 0x02]);
        b.push(0x2d);
        b.extend_from_slice(&1.5f32.to_le_bytes());
        b
    }

    fn value(n: &Node) -> &WireValue {
        match n {
            Node::Field { value, .. } => value,
            other => panic!("not a field: {other:?}"),
        }
    }

    #[test]
    fn hex_is_the_hex_crates_lower_case() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(hex(&all), hex::encode(&all));
        // Around the widths of the SIMD steps (16 and 32 bytes) and their tails.
        for n in [1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255] {
            assert_eq!(hex(&all[..n]), hex::encode(&all[..n]));
            // Appended after what the buffer holds, which stays.
            let mut out = b"x:".to_vec();
            push_hex(&mut out, &all[n..]);
            assert_eq!(out, format!("x:{}", hex::encode(&all[n..])).into_bytes());
        }
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn decodes_like_decode_raw() {
        let a = decode_raw(&sample());
        assert_eq!(value(&a[0]), &WireValue::Varint(150));
        assert!(
            matches!(value(&a[1]), WireValue::Len { length: 7, guess: LenGuess::String(s) } if s == "testing")
        );
        let WireValue::Len {
            guess: LenGuess::Message(inner),
            ..
        } = value(&a[2])
        else {
            panic!("not a message: {:?}", a[2]);
        };
        assert_eq!(value(&inner[0]), &WireValue::Varint(1));
        assert!(
            matches!(value(&a[3]), WireValue::Len { guess: LenGuess::PackedVarints(v), .. } if v == &[3, 270])
        );
        assert_eq!(value(&a[4]).float(), Some(1.5));
        assert_eq!(value(&a[4]).wire_name(), "i32");
    }

    fn span(n: &Node) -> Range<usize> {
        match n {
            Node::Field { span, .. } => span.clone(),
            other => panic!("not a field: {other:?}"),
        }
    }

    /// Every field knows where it lies in the whole message, tag included, also inside nested
    /// messages and groups; so do bytes that do not parse inside a group.
    #[test]
    fn fields_know_their_bytes_in_the_message() {
        let b = [
            0x08, 0x96, 0x01, // 1: varint 150, at 0..3
            0x12, 0x02, 0x08, 0x01, // 2: message { 1: 1 }, at 3..7, its field at 5..7
            0x1b, 0x08, 0x05, 0x1c, // 3: group { 1: 5 }, at 7..11, its field at 8..10
            0x23, 0x0f,
            0x01, // 4: a group that never ends, bytes of no field inside, at 11..14
        ];
        let a = decode_raw(&b);
        assert_eq!(
            a.iter().map(span).collect::<Vec<_>>(),
            [0..3, 3..7, 7..11, 11..14]
        );
        let inner = value(&a[1]).nested().unwrap();
        assert_eq!(span(&inner[0]), 5..7);
        assert_eq!(&b[span(&inner[0])], [0x08, 0x01]);
        let group = value(&a[2]).nested().unwrap();
        assert_eq!(span(&group[0]), 8..10);
        let broken = value(&a[3]).nested().unwrap();
        assert!(
            matches!(
                broken[0],
                Node::Malformed {
                    offset: 12,
                    remaining: 2,
                    ..
                }
            ),
            "{broken:?}"
        );
    }

    #[test]
    fn signed_and_floating_readings_are_offered_only_when_plausible() {
        assert_eq!(WireValue::Varint(3).zigzag(), Some(-2));
        assert_eq!(WireValue::Varint(4).zigzag(), None);
        assert_eq!(WireValue::Varint(1).zigzag(), None);
        assert_eq!(WireValue::I64(2.5f64.to_bits()).double(), Some(2.5));
        assert_eq!(WireValue::I64(0).double(), None);
        assert_eq!(WireValue::I64(f64::NAN.to_bits()).double(), None);
        assert_eq!(WireValue::I32(1).float(), None);
    }

    #[test]
    fn malformed_input_is_shown_not_dropped() {
        let a = decode_raw(&[0x08, 0x96, 0x01, 0x12, 0x50, 0x41]);
        assert_eq!(value(&a[0]), &WireValue::Varint(150));
        assert_eq!(
            a[1],
            Node::Malformed {
                offset: 3,
                shown: vec![0x12, 0x50, 0x41],
                remaining: 3
            }
        );
    }

    #[test]
    fn groups_and_deep_nesting_are_bounded() {
        // field 1 start-group, field 2 varint 5, field 1 end-group
        let a = decode_raw(&[0x0b, 0x10, 0x05, 0x0c]);
        let WireValue::Group {
            fields,
            ended: true,
        } = value(&a[0])
        else {
            panic!("not an ended group: {:?}", a[0]);
        };
        assert_eq!(value(&fields[0]), &WireValue::Varint(5));
        // 200 levels of nested length-delimited fields.
        let mut b: Vec<u8> = vec![0x08, 0x01];
        for _ in 0..200 {
            let mut outer = vec![0x0a];
            let mut len = b.len();
            while len >= 0x80 {
                outer.push((len as u8) | 0x80);
                len >>= 7;
            }
            outer.push(len as u8);
            outer.extend_from_slice(&b);
            b = outer;
        }
        let _ = decode_raw(&b);
    }

    #[test]
    fn a_huge_message_is_cut_at_the_node_budget() {
        let b: Vec<u8> = [0x08, 0x01].repeat(MAX_NODES + 100);
        let a = decode_raw(&b);
        assert_eq!(a.len(), MAX_NODES + 1);
        assert!(
            matches!(&a[MAX_NODES], Node::Truncated { offset, shown } if *offset == 2 * MAX_NODES && shown.len() == TRUNCATED_SHOWN)
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Input bytes the tree holds (kept bytes and strings), which must stay within the input.
    fn kept(nodes: &[Node]) -> usize {
        nodes
            .iter()
            .map(|n| match n {
                Node::Field { value, .. } => match value {
                    WireValue::Len { guess, .. } => match guess {
                        LenGuess::String(s) => s.len(),
                        LenGuess::Bytes(b) => b.len(),
                        LenGuess::Message(m) => kept(m),
                        LenGuess::PackedVarints(_) => 0,
                    },
                    WireValue::Group { fields, .. } => kept(fields),
                    _ => 0,
                },
                _ => 0,
            })
            .sum()
    }

    /// Bytes with runs of continuation bytes around ten long, where the count's eight-byte
    /// steps could go wrong: mostly 0x80 and 0xff, some bytes that end a varint.
    fn varint_runs() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![4 => Just(0x80u8), 4 => Just(0xffu8), 1 => 0u8..0x80, 1 => any::<u8>()],
            0..64,
        )
    }

    proptest! {
        #[test]
        fn packed_varints_are_read_as_one_by_one(
            bytes in prop_oneof![varint_runs(), proptest::collection::vec(any::<u8>(), 0..64)]
        ) {
            let counted = packed_varints(&bytes);
            // As it read before it counted first: a value at a time, into a list grown as it goes.
            prop_assert_eq!(&counted, &read_varints(&bytes, Vec::new()));
            if let Some(values) = counted {
                prop_assert_eq!(values.capacity(), values.len());
            }
        }

        #[test]
        fn never_fails_and_keeps_no_more_than_it_read(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let nodes = decode_raw(&bytes);
            prop_assert!(kept(&nodes) <= bytes.len());
        }
    }
}
