//! Differential tests of the HPACK decoder against loona-hpack, plus
//! robustness properties on arbitrary input.

use std::collections::VecDeque;

use h2scope::http2::hpack::{huffman, Decoder, HeaderField};
use proptest::prelude::*;

type Pair = (Vec<u8>, Vec<u8>);

const TABLE_SIZE: u32 = 4096;

const COMMON_NAMES: &[&str] = &[
    ":authority",
    ":method",
    ":path",
    ":scheme",
    ":status",
    "accept",
    "accept-encoding",
    "cache-control",
    "content-length",
    "content-type",
    "cookie",
    "date",
    "grpc-encoding",
    "grpc-status",
    "grpc-message",
    "set-cookie",
    "te",
    "user-agent",
    "x-request-id",
];

const COMMON_VALUES: &[&str] = &[
    "",
    "GET",
    "POST",
    "/",
    "/index.html",
    "http",
    "https",
    "200",
    "404",
    "gzip, deflate",
    "application/grpc",
    "trailers",
    "0",
    "no-cache",
];

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(COMMON_NAMES).prop_map(|s| s.as_bytes().to_vec()),
        2 => "[a-z][a-z0-9-]{0,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..16),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(COMMON_VALUES).prop_map(|s| s.as_bytes().to_vec()),
        3 => prop::collection::vec(any::<u8>(), 0..40),
        1 => prop::collection::vec(any::<u8>(), 100..700),
    ]
}

/// Header lists for consecutive blocks of one connection, some preceded by a
/// dynamic table size change. Repeating names keeps the dynamic table in use.
fn blocks() -> impl Strategy<Value = Vec<(Option<u32>, Vec<Pair>)>> {
    let size_change = prop_oneof![
        6 => Just(None),
        1 => prop::sample::select(&[0u32, 64, 200, 512, 1024, 4096][..]).prop_map(Some),
    ];
    let list = prop::collection::vec((name(), value()), 1..16);
    prop::collection::vec((size_change, list), 1..10)
        .prop_flat_map(|blocks| {
            // Re-send some earlier fields verbatim so indexed references happen.
            let n = blocks.len();
            (
                Just(blocks),
                prop::collection::vec(any::<prop::sample::Index>(), n),
            )
        })
        .prop_map(|(mut blocks, picks)| {
            for i in 1..blocks.len() {
                let earlier: Vec<Pair> = blocks[..i].iter().flat_map(|b| b.1.clone()).collect();
                let repeat = earlier[picks[i].index(earlier.len())].clone();
                blocks[i].1.push(repeat);
            }
            blocks
        })
}

fn push_integer(value: usize, prefix_bits: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push(0x80 | (rest % 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
}

fn push_string(s: &[u8], huffman_coded: bool, out: &mut Vec<u8>) {
    if huffman_coded {
        let mut coded = Vec::new();
        huffman::encode(s, &mut coded);
        push_integer(coded.len(), 7, 0x80, out);
        out.extend_from_slice(&coded);
    } else {
        push_integer(s.len(), 7, 0, out);
        out.extend_from_slice(s);
    }
}

/// Our decoder's output as plain pairs. A block with a reference into the
/// unknown past (possible only with `with_unknown_past`) has no plain-pair
/// form and comes back as an error, which also keeps it out of comparisons.
fn ours(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<Pair>, String> {
    let mut out = Vec::new();
    decoder.decode(block, &mut out).map_err(|e| e.to_string())?;
    if !out.iter().all(HeaderField::is_complete) {
        return Err("reference into the unknown past".into());
    }
    Ok(out
        .into_iter()
        .map(|f| (f.name.to_vec(), f.value.to_vec()))
        .collect())
}

fn loona_decoder() -> loona_hpack::Decoder<'static> {
    let mut d = loona_hpack::Decoder::new();
    d.set_max_allowed_table_size(TABLE_SIZE as usize);
    d
}

fn theirs(decoder: &mut loona_hpack::Decoder<'_>, block: &[u8]) -> Result<Vec<Pair>, String> {
    decoder.decode(block).map_err(|e| format!("{e:?}"))
}

proptest! {
    /// loona-hpack encodes (literal names, indexed names, indexed fields,
    /// dynamic table insertions); both decoders must return the input.
    #[test]
    fn loona_encoder_round_trips(blocks in blocks()) {
        let mut encoder = loona_hpack::Encoder::new();
        let mut reference = loona_decoder();
        let mut decoder = Decoder::new();
        for (size_change, headers) in &blocks {
            let mut block = Vec::new();
            if let Some(size) = *size_change {
                // loona's encoder shrinks its table silently; the size update
                // the peer must see is ours to add.
                encoder.set_max_table_size(size as usize);
                push_integer(size as usize, 5, 0x20, &mut block);
            }
            encoder
                .encode_into(headers.iter().map(|(n, v)| (&n[..], &v[..])), &mut block)
                .unwrap();
            let got = ours(&mut decoder, &block);
            prop_assert_eq!(got.as_ref(), Ok(headers));
            prop_assert_eq!(&got, &theirs(&mut reference, &block));
            prop_assert!(decoder.table_size() <= decoder.max_table_size());
            prop_assert_eq!(decoder.last_size_updates(), size_change.as_slice());
        }
    }
}

/// One field representation for the hand-built blocks below.
#[derive(Debug, Clone)]
enum Op {
    /// Indexed field; the selector picks any valid index.
    Indexed(prop::sample::Index),
    Literal {
        /// 0 = incremental indexing, 1 = without indexing, 2 = never indexed.
        kind: u8,
        /// `None`: literal name; otherwise a selector for a name index.
        name_index: Option<prop::sample::Index>,
        name: Vec<u8>,
        value: Vec<u8>,
        huffman_name: bool,
        huffman_value: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<prop::sample::Index>().prop_map(Op::Indexed),
        3 => (
            0u8..3,
            prop::option::of(any::<prop::sample::Index>()),
            name(),
            value(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(kind, name_index, name, value, huffman_name, huffman_value)| Op::Literal {
                kind,
                name_index,
                name,
                value,
                huffman_name,
                huffman_value,
            }),
    ]
}

/// The index space as the encoder sees it: a minimal model kept by the test
/// so it can pick only valid indices.
struct Model {
    entries: VecDeque<Pair>,
    size: usize,
    max: usize,
    statics: Vec<Pair>,
}

impl Model {
    fn new() -> Self {
        // Learn the static table from loona so the model does not share our
        // decoder's copy of it.
        let mut d = loona_decoder();
        let statics = (0x81..=0xbdu8)
            .map(|b| d.decode(&[b]).unwrap().remove(0))
            .collect();
        Model {
            entries: VecDeque::new(),
            size: 0,
            max: TABLE_SIZE as usize,
            statics,
        }
    }

    fn len(&self) -> usize {
        self.statics.len() + self.entries.len()
    }

    fn get(&self, index: usize) -> Pair {
        match index.checked_sub(self.statics.len() + 1) {
            None => self.statics[index - 1].clone(),
            Some(i) => self.entries[i].clone(),
        }
    }

    fn evict(&mut self, target: usize) {
        while self.size > target {
            let (n, v) = self.entries.pop_back().unwrap();
            self.size -= n.len() + v.len() + 32;
        }
    }

    fn set_max(&mut self, max: usize) {
        self.max = max;
        self.evict(max);
    }

    fn insert(&mut self, field: Pair) {
        let size = field.0.len() + field.1.len() + 32;
        if size > self.max {
            self.entries.clear();
            self.size = 0;
        } else {
            self.evict(self.max - size);
            self.size += size;
            self.entries.push_front(field);
        }
    }
}

fn hand_blocks() -> impl Strategy<Value = Vec<(Option<u32>, Vec<Op>)>> {
    let size_change = prop_oneof![
        5 => Just(None),
        1 => prop::sample::select(&[0u32, 100, 300, 1000, 4096][..]).prop_map(Some),
    ];
    prop::collection::vec((size_change, prop::collection::vec(op(), 1..12)), 1..8)
}

proptest! {
    /// Every representation kind, Huffman or not, indexed names from both
    /// tables: both decoders must agree with each other and with the model.
    #[test]
    fn hand_built_blocks_agree(blocks in hand_blocks()) {
        let mut model = Model::new();
        let mut reference = loona_decoder();
        let mut decoder = Decoder::new();
        for (size_change, ops) in &blocks {
            let mut block = Vec::new();
            let mut expected = Vec::new();
            if let Some(size) = *size_change {
                model.set_max(size as usize);
                push_integer(size as usize, 5, 0x20, &mut block);
            }
            for op in ops {
                match op {
                    Op::Indexed(pick) => {
                        let index = 1 + pick.index(model.len());
                        push_integer(index, 7, 0x80, &mut block);
                        expected.push(model.get(index));
                    }
                    Op::Literal { kind, name_index, name, value, huffman_name, huffman_value } => {
                        let (prefix_bits, flags) = match kind {
                            0 => (6, 0x40),
                            1 => (4, 0x00),
                            _ => (4, 0x10),
                        };
                        let name = match name_index {
                            Some(pick) => {
                                let index = 1 + pick.index(model.len());
                                push_integer(index, prefix_bits, flags, &mut block);
                                model.get(index).0
                            }
                            None => {
                                push_integer(0, prefix_bits, flags, &mut block);
                                push_string(name, *huffman_name, &mut block);
                                name.clone()
                            }
                        };
                        push_string(value, *huffman_value, &mut block);
                        let field = (name, value.clone());
                        if *kind == 0 {
                            model.insert(field.clone());
                        }
                        expected.push(field);
                    }
                }
            }
            let got = ours(&mut decoder, &block);
            prop_assert_eq!(got.as_ref(), Ok(&expected));
            prop_assert_eq!(&got, &theirs(&mut reference, &block));
            prop_assert_eq!(decoder.table_len(), model.entries.len());
            prop_assert_eq!(decoder.table_size(), model.size);
        }
    }

    /// Arbitrary bytes: no panic, in either mode, over several blocks on one
    /// decoder; where both decoders accept a block they agree on it.
    #[test]
    fn arbitrary_bytes_never_panic(blocks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 1..4)) {
        let mut decoder = Decoder::new();
        let mut unknown = Decoder::with_unknown_past();
        let mut reference = loona_decoder();
        let mut in_sync = true;
        for block in &blocks {
            let mut out = Vec::new();
            let _ = unknown.decode(block, &mut out);
            let got = ours(&mut decoder, block);
            let want = theirs(&mut reference, block);
            if in_sync && got.is_ok() && want.is_ok() {
                prop_assert_eq!(&got, &want);
            }
            in_sync &= got.is_ok() && want.is_ok();
        }
    }

    /// Valid blocks with a few bytes corrupted reach deeper than random
    /// bytes do; same properties.
    #[test]
    fn corrupted_blocks_never_panic(
        headers in prop::collection::vec((name(), value()), 1..12),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut encoder = loona_hpack::Encoder::new();
        let mut block = Vec::new();
        // Two blocks so the second leans on the dynamic table.
        encoder.encode_into(headers.iter().map(|(n, v)| (&n[..], &v[..])), &mut block).unwrap();
        let first_len = block.len();
        encoder.encode_into(headers.iter().map(|(n, v)| (&n[..], &v[..])), &mut block).unwrap();
        for (at, byte) in &flips {
            let i = at.index(block.len());
            block[i] ^= byte;
        }
        let (first, second) = block.split_at(first_len);
        for mut decoder in [Decoder::new(), Decoder::with_unknown_past()] {
            let mut reference = loona_decoder();
            let a = ours(&mut decoder, first);
            let b = theirs(&mut reference, first);
            if a.is_ok() && b.is_ok() {
                prop_assert_eq!(&a, &b);
                let a = ours(&mut decoder, second);
                let b = theirs(&mut reference, second);
                if a.is_ok() && b.is_ok() {
                    prop_assert_eq!(&a, &b);
                }
            }
        }
    }

    #[test]
    fn huffman_round_trips(input in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut coded = Vec::new();
        huffman::encode(&input, &mut coded);
        prop_assert_eq!(coded.len(), huffman::encoded_len(&input));
        let mut decoded = Vec::new();
        prop_assert_eq!(huffman::decode(&coded, &mut decoded), Ok(()));
        prop_assert_eq!(&decoded, &input);
        // loona's Huffman decoder agrees on our encoding.
        let reference = loona_hpack::huffman::HuffmanDecoder::new().decode(&coded);
        prop_assert_eq!(reference.ok(), Some(input));
    }

    #[test]
    fn huffman_decode_is_bounded(input in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut out = Vec::new();
        let ok = huffman::decode(&input, &mut out).is_ok();
        prop_assert!(out.len() <= huffman::max_decoded_len(input.len()));
        let reference = loona_hpack::huffman::HuffmanDecoder::new().decode(&input);
        prop_assert_eq!(ok, reference.is_ok());
        if ok {
            prop_assert_eq!(reference.ok(), Some(out));
        }
    }
}

#[test]
fn static_table_matches_loona() {
    for b in 0x81..=0xbdu8 {
        let mut decoder = Decoder::new();
        let got = ours(&mut decoder, &[b]).unwrap();
        let want = theirs(&mut loona_decoder(), &[b]).unwrap();
        assert_eq!(got, want, "static index {}", b & 0x7f);
    }
}
