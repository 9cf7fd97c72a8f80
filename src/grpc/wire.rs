//! Schema-less protobuf decoding, in the manner of `protoc --decode_raw`: field numbers and wire
//! types are always shown; length-delimited fields are guessed as text, nested message, packed
//! numbers or bytes. It never fails: bytes that do not parse are shown as such.

use serde_json::{json, Map, Value};

/// Nested messages are guessed at most this deep.
const MAX_DEPTH: usize = 32;
/// Fields listed at most per message tree, so that a pathological message stays cheap.
const MAX_NODES: usize = 50_000;

/// Decodes `bytes` as a protobuf message without a schema: a JSON array of fields.
pub fn decode_raw(bytes: &[u8]) -> Value {
    let mut budget = MAX_NODES;
    let (fields, _) = walk(bytes, 0, &mut budget, None);
    Value::Array(fields)
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

/// Walks one message (or group body when `group` is set). Returns the fields and whether the
/// bytes parsed cleanly to the end.
fn walk(bytes: &[u8], depth: usize, budget: &mut usize, group: Option<u64>) -> (Vec<Value>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if *budget == 0 {
            out.push(json!({"truncated": hex(&bytes[at..bytes.len().min(at + 64)]), "offset": at}));
            return (out, false);
        }
        *budget -= 1;
        let Some((tag, n)) = read_varint(&bytes[at..]) else {
            out.push(malformed(bytes, at));
            return (out, false);
        };
        let field = tag >> 3;
        let wire = tag & 7;
        if field == 0 || field > 536_870_911 {
            out.push(malformed(bytes, at));
            return (out, false);
        }
        let start = at;
        at += n;
        let mut m = Map::new();
        m.insert("field".into(), field.into());
        match wire {
            0 => {
                let Some((v, n)) = read_varint(&bytes[at..]) else {
                    out.push(malformed(bytes, start));
                    return (out, false);
                };
                at += n;
                m.insert("wire".into(), "varint".into());
                m.insert("value".into(), v.into());
                let signed = ((v >> 1) as i64) ^ -((v & 1) as i64);
                if v > 1 && signed < 0 {
                    m.insert("zigzag".into(), signed.into());
                }
            }
            1 => {
                let Some(b) = bytes.get(at..at + 8) else {
                    out.push(malformed(bytes, start));
                    return (out, false);
                };
                at += 8;
                let v = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                m.insert("wire".into(), "i64".into());
                m.insert("value".into(), v.into());
                let d = f64::from_bits(v);
                if d.is_finite() && d != 0.0 && d.abs() > 1e-300 && d.abs() < 1e300 {
                    m.insert("double".into(), d.into());
                }
            }
            5 => {
                let Some(b) = bytes.get(at..at + 4) else {
                    out.push(malformed(bytes, start));
                    return (out, false);
                };
                at += 4;
                let v = u32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
                m.insert("wire".into(), "i32".into());
                m.insert("value".into(), v.into());
                let f = f32::from_bits(v);
                if f.is_finite() && f != 0.0 && f.abs() > 1e-30 && f.abs() < 1e30 {
                    m.insert("float".into(), (f as f64).into());
                }
            }
            2 => {
                let Some((len, n)) = read_varint(&bytes[at..]) else {
                    out.push(malformed(bytes, start));
                    return (out, false);
                };
                at += n;
                let end = at.checked_add(len as usize).filter(|&e| e <= bytes.len());
                let Some(end) = end else {
                    out.push(malformed(bytes, start));
                    return (out, false);
                };
                let body = &bytes[at..end];
                at = end;
                m.insert("wire".into(), "len".into());
                m.insert("length".into(), body.len().into());
                guess_len(body, depth, budget, &mut m);
            }
            3 => {
                if depth >= MAX_DEPTH {
                    out.push(malformed(bytes, start));
                    return (out, false);
                }
                // A group runs to its end-group tag; find it by walking.
                let (inner, consumed, ok) = walk_group(&bytes[at..], depth + 1, budget, field);
                at += consumed;
                m.insert("wire".into(), "group".into());
                m.insert("group".into(), Value::Array(inner));
                if !ok {
                    out.push(Value::Object(m));
                    return (out, false);
                }
            }
            4 => {
                if group == Some(field) {
                    return (out, true);
                }
                out.push(malformed(bytes, start));
                return (out, false);
            }
            _ => {
                out.push(malformed(bytes, start));
                return (out, false);
            }
        }
        out.push(Value::Object(m));
    }
    (out, group.is_none())
}

/// Walks a group body; returns its fields, the bytes consumed (including the end tag) and
/// whether it ended properly.
fn walk_group(
    bytes: &[u8],
    depth: usize,
    budget: &mut usize,
    field: u64,
) -> (Vec<Value>, usize, bool) {
    // Find the end tag by scanning field by field (the same walk, remembering the position).
    let mut at = 0;
    while at < bytes.len() {
        let Some((tag, n)) = read_varint(&bytes[at..]) else {
            break;
        };
        if tag & 7 == 4 && tag >> 3 == field {
            let (fields, ok) = walk(&bytes[..at], depth, budget, None);
            return (fields, at + n, ok);
        }
        let Some(skip) = skip_field(&bytes[at + n..], tag & 7) else {
            break;
        };
        at += n + skip;
    }
    (vec![malformed(bytes, 0)], bytes.len(), false)
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

fn guess_len(body: &[u8], depth: usize, budget: &mut usize, m: &mut Map<String, Value>) {
    if body.is_empty() {
        m.insert("string".into(), "".into());
        return;
    }
    if let Ok(s) = std::str::from_utf8(body) {
        if s.chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        {
            m.insert("string".into(), s.into());
            return;
        }
    }
    if depth < MAX_DEPTH {
        // A failed guess still spends its budget, which bounds the total work.
        let (fields, ok) = walk(body, depth + 1, budget, None);
        if ok && !fields.is_empty() {
            m.insert("message".into(), Value::Array(fields));
            return;
        }
    }
    if let Some(values) = packed_varints(body) {
        m.insert("packed_varints".into(), json!(values));
        return;
    }
    m.insert("bytes".into(), hex(body).into());
}

/// Lower-case hex of `bytes`, one table lookup per byte. The `hex` crate's encoders cost 13 to
/// 30 instructions a byte, and a bytes field of a bulk message is tens of kilobytes.
pub fn hex(bytes: &[u8]) -> String {
    const PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0; 2]; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = [DIGITS[b >> 4], DIGITS[b & 15]];
            b += 1;
        }
        t
    };
    let mut out = vec![0; bytes.len() * 2];
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&PAIRS[usize::from(b)]);
    }
    String::from_utf8(out).unwrap_or_default()
}

fn packed_varints(b: &[u8]) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let (v, n) = read_varint(&b[at..])?;
        out.push(v);
        at += n;
    }
    Some(out)
}

fn malformed(bytes: &[u8], at: usize) -> Value {
    let end = bytes.len().min(at + 256);
    json!({"malformed": hex(&bytes[at..end]), "offset": at, "remaining": bytes.len() - at})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_the_hex_crates_lower_case() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(hex(&all), hex::encode(&all));
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn decodes_like_decode_raw() {
        // {1: 150, 2: "testing", 3: {1: 1}, 4: [3, 270] packed, 5: fixed32 1.5f}
        let mut b = vec![0x08, 0x96, 0x01, 0x12, 0x07];
        b.extend_from_slice(b"testing");
        b.extend_from_slice(&[0x1a, 0x02, 0x08, 0x01]);
        b.extend_from_slice(&[0x22, 0x03, 0x03, 0x8e, 0x02]);
        b.push(0x2d);
        b.extend_from_slice(&1.5f32.to_le_bytes());
        let v = decode_raw(&b);
        let a = v.as_array().unwrap();
        assert_eq!(a[0]["value"], 150);
        assert_eq!(a[1]["string"], "testing");
        assert_eq!(a[2]["message"][0]["value"], 1);
        assert_eq!(a[3]["packed_varints"], json!([3, 270]));
        assert_eq!(a[4]["float"], 1.5);
    }

    #[test]
    fn malformed_input_is_shown_not_dropped() {
        let v = decode_raw(&[0x08, 0x96, 0x01, 0x12, 0x50, 0x41]);
        let a = v.as_array().unwrap();
        assert_eq!(a[0]["value"], 150);
        assert_eq!(a[1]["malformed"], "125041");
        assert_eq!(a[1]["offset"], 3);
    }

    #[test]
    fn groups_and_deep_nesting_are_bounded() {
        // field 1 start-group, field 2 varint 5, field 1 end-group
        let v = decode_raw(&[0x0b, 0x10, 0x05, 0x0c]);
        assert_eq!(v[0]["group"][0]["value"], 5);
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
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_fails_and_accounts_for_every_byte(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let v = decode_raw(&bytes);
            prop_assert!(v.is_array());
        }
    }
}
