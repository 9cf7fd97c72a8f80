//! HPACK: several header blocks decoded in sequence by one decoder (a connection's direction),
//! once with `Decoder::new()` and once with `Decoder::with_unknown_past()`.
//!
//! Input layout:
//!   byte 0   table size limit: low 3 bits choose `set_max_table_size_limit`'s argument
//!            (0 = never called, see `LIMITS`), the high 5 bits the number of blocks decoded
//!            before it is called
//!   byte 1   low 2 bits choose `set_max_header_list_size` (see `LIST_SIZES`)
//!   rest     blocks, each a u16 BE length then that many bytes; the last block takes whatever
//!            is left when the length says more
//!
//! Besides panics, checks what the API documents: the table never exceeds its maximum, its size
//! is the sum of its entries' sizes, a decoded block stays within the header list budget, a
//! fresh decoder never reports unknown fields, what was decoded re-encodes (`encode_plain`,
//! Huffman) and decodes back to the same fields, and a twin decoder that decodes every block
//! with `decode_shared` (which skips blocks it has seen) gives the same fields, size updates
//! and table. Every block is decoded twice in a row, so that the twin meets repeats; after the
//! repeat the twin is frozen and thawed, as a quiet connection's decoders are.

#![no_main]

use h2scope::http2::hpack::{
    encode_plain, huffman, Decoder, HeaderField, Representation, DEFAULT_MAX_HEADER_LIST_SIZE,
    MAX_SUPPORTED_TABLE_SIZE,
};
use libfuzzer_sys::fuzz_target;

const LIMITS: [Option<u32>; 8] = [
    None,
    Some(0),
    Some(32),
    Some(256),
    Some(4096),
    Some(65536),
    Some(MAX_SUPPORTED_TABLE_SIZE),
    Some(u32::MAX),
];
const LIST_SIZES: [usize; 4] = [DEFAULT_MAX_HEADER_LIST_SIZE, 64, 1024, 16384];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let limit = LIMITS[(data[0] & 7) as usize];
    let limit_at = (data[0] >> 3) as usize;
    let list_size = LIST_SIZES[(data[1] & 3) as usize];
    let blocks = split_blocks(&data[2..]);

    run(Decoder::new(), false, &blocks, limit, limit_at, list_size);
    run(
        Decoder::with_unknown_past(),
        true,
        &blocks,
        limit,
        limit_at,
        list_size,
    );
});

fn split_blocks(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut blocks = Vec::new();
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let len = len.min(rest.len());
        blocks.push(&rest[..len]);
        rest = &rest[len..];
    }
    blocks
}

fn run(
    mut dec: Decoder,
    unknown_past: bool,
    blocks: &[&[u8]],
    limit: Option<u32>,
    limit_at: usize,
    list_size: usize,
) {
    dec.set_max_header_list_size(list_size);
    check_table(&dec);
    let mut shared = dec.clone();
    // The repeat carries no index: the limit is set once.
    let twice = blocks
        .iter()
        .enumerate()
        .flat_map(|(i, &b)| [(i, b), (usize::MAX, b)]);
    for (i, block) in twice {
        if i == limit_at {
            if let Some(n) = limit {
                dec.set_max_table_size_limit(n);
                shared.set_max_table_size_limit(n);
                assert_eq!(dec.max_table_size_limit(), n);
                assert!(dec.max_table_size() <= n as usize);
                check_table(&dec);
            }
        }
        let mut out = Vec::new();
        let result = dec.decode(block, &mut out);
        check_table(&dec);
        let twin = shared.decode_shared(block);
        match (&result, &twin) {
            (Ok(()), Ok(list)) => assert_eq!(out[..], list[..], "decode_shared differs"),
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!("decode gave {result:?}, decode_shared {twin:?}"),
        }
        assert_eq!(dec.last_size_updates(), shared.last_size_updates());
        assert!(dec.dynamic_table().iter().eq(shared.dynamic_table().iter()));
        if i == usize::MAX {
            // After each block's repeat, the twin goes quiet as a quiet connection's decoders
            // do (its table packed, its recent lists dropped) and is made whole again: what
            // follows must decode as with the decoder that never went quiet.
            shared = shared.freeze().thaw();
            assert_eq!(dec.last_size_updates(), shared.last_size_updates());
            assert!(dec.dynamic_table().iter().eq(shared.dynamic_table().iter()));
            assert_eq!(dec.table_size(), shared.table_size());
            assert_eq!(dec.max_table_size(), shared.max_table_size());
        }
        if result.is_err() {
            // Documented: the direction is desynchronised; the pipeline stops decoding it.
            break;
        }
        let used: usize = out.iter().map(|f| f.name.len() + f.value.len() + 32).sum();
        assert!(
            used <= list_size,
            "decoded block of {used} bytes exceeds the header list budget {list_size}"
        );
        for &u in dec.last_size_updates() {
            assert!(u <= dec.max_table_size_limit());
            assert!(u <= MAX_SUPPORTED_TABLE_SIZE);
        }
        if !unknown_past {
            // A decoder that knows its whole past never reports unknown fields.
            assert!(!dec.past_unknown());
            for f in &out {
                assert!(f.is_complete(), "unknown field from Decoder::new(): {f:?}");
                assert!(!matches!(f.repr, Representation::Unknown { .. }));
            }
        }
        for f in &out {
            if f.name_unknown {
                assert!(f.name.is_empty());
            }
            if f.value_unknown {
                assert!(f.value.is_empty());
            }
            huffman_round_trip(&f.name);
            huffman_round_trip(&f.value);
        }
        plain_round_trip(&out, list_size);
    }
}

fn check_table(dec: &Decoder) {
    let t = dec.dynamic_table();
    let sum: usize = t.iter().map(|e| e.size()).sum();
    assert_eq!(
        sum,
        dec.table_size(),
        "table size is not the sum of its entries"
    );
    assert_eq!(t.len(), dec.table_len());
    assert!(
        dec.table_size() <= dec.max_table_size(),
        "table holds {} bytes, more than its maximum {}",
        dec.table_size(),
        dec.max_table_size()
    );
    assert!(dec.max_table_size() <= MAX_SUPPORTED_TABLE_SIZE as usize);
}

fn huffman_round_trip(s: &[u8]) {
    let mut enc = Vec::new();
    huffman::encode(s, &mut enc);
    assert_eq!(enc.len(), huffman::encoded_len(s));
    assert!(huffman::max_decoded_len(enc.len()) >= s.len());
    let mut dec = Vec::new();
    huffman::decode(&enc, &mut dec).expect("Huffman coding of a decoded string does not decode");
    assert_eq!(dec, s);
}

/// `encode_plain` needs no table state, so a fresh decoder must read back the complete fields.
fn plain_round_trip(fields: &[HeaderField], list_size: usize) {
    let pairs: Vec<(&[u8], &[u8])> = fields
        .iter()
        .filter(|f| f.is_complete())
        .map(|f| (&f.name[..], &f.value[..]))
        .collect();
    let mut block = Vec::new();
    encode_plain(&pairs, &mut block);
    let mut dec = Decoder::new();
    dec.set_max_header_list_size(list_size);
    let mut out = Vec::new();
    dec.decode(&block, &mut out)
        .unwrap_or_else(|e| panic!("encode_plain output does not decode: {e}"));
    assert_eq!(out.len(), pairs.len());
    for (f, (n, v)) in out.iter().zip(&pairs) {
        assert_eq!((&f.name[..], &f.value[..]), (*n, *v));
    }
    assert_eq!(
        dec.table_len(),
        0,
        "encode_plain output changed the dynamic table"
    );
}
