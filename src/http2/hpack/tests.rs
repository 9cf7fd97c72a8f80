//! Decoder tests: RFC 7541 Appendix C vectors, malformed input, unknown past.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert!(digits.len() % 2 == 0, "odd hex in test vector");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn decode(decoder: &mut Decoder, block: &str) -> Result<Vec<HeaderField>, HpackError> {
    let mut out = Vec::new();
    decoder.decode(&hex(block), &mut out).map(|()| out)
}

fn pairs(fields: &[HeaderField]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|f| {
            (
                String::from_utf8(f.name.to_vec()).unwrap(),
                String::from_utf8(f.value.to_vec()).unwrap(),
            )
        })
        .collect()
}

fn expect(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|&(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// Dynamic table as (name, value) newest first, plus its size.
fn table(decoder: &Decoder) -> (Vec<(String, String)>, usize) {
    let entries = decoder
        .dynamic_table()
        .iter()
        .map(|e| {
            (
                String::from_utf8(e.name().unwrap().to_vec()).unwrap(),
                String::from_utf8(e.value().to_vec()).unwrap(),
            )
        })
        .collect();
    (entries, decoder.table_size())
}

// ---- C.2 ------------------------------------------------------------------

#[test]
fn c_2_1_literal_with_indexing() {
    let mut d = Decoder::new();
    let fields = decode(
        &mut d,
        "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
    )
    .unwrap();
    assert_eq!(pairs(&fields), expect(&[("custom-key", "custom-header")]));
    assert_eq!(
        fields[0].repr,
        Representation::IncrementalIndexing {
            name_index: None,
            huffman_name: false,
            huffman_value: false
        }
    );
    assert_eq!(table(&d), (expect(&[("custom-key", "custom-header")]), 55));
}

#[test]
fn c_2_2_literal_without_indexing() {
    let mut d = Decoder::new();
    let fields = decode(&mut d, "040c 2f73 616d 706c 652f 7061 7468").unwrap();
    assert_eq!(pairs(&fields), expect(&[(":path", "/sample/path")]));
    assert_eq!(
        fields[0].repr,
        Representation::WithoutIndexing {
            name_index: Some(4),
            huffman_name: false,
            huffman_value: false
        }
    );
    assert_eq!(d.table_len(), 0);
}

#[test]
fn c_2_3_literal_never_indexed() {
    let mut d = Decoder::new();
    let fields = decode(&mut d, "1008 7061 7373 776f 7264 0673 6563 7265 74").unwrap();
    assert_eq!(pairs(&fields), expect(&[("password", "secret")]));
    assert_eq!(
        fields[0].repr,
        Representation::NeverIndexed {
            name_index: None,
            huffman_name: false,
            huffman_value: false
        }
    );
    assert_eq!(d.table_len(), 0);
}

#[test]
fn c_2_4_indexed() {
    let mut d = Decoder::new();
    let fields = decode(&mut d, "82").unwrap();
    assert_eq!(pairs(&fields), expect(&[(":method", "GET")]));
    assert_eq!(fields[0].repr, Representation::Indexed { index: 2 });
    assert!(fields[0].is_complete());
    assert_eq!(d.table_len(), 0);
}

// ---- C.3 / C.4: requests on one connection -----------------------------------

const REQUEST_1: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
];
const REQUEST_2: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const REQUEST_3: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];

fn check_requests(blocks: [&str; 3], huffman: bool) {
    let mut d = Decoder::new();

    let fields = decode(&mut d, blocks[0]).unwrap();
    assert_eq!(pairs(&fields), expect(REQUEST_1));
    assert_eq!(
        fields[3].repr,
        Representation::IncrementalIndexing {
            name_index: Some(1),
            huffman_name: false,
            huffman_value: huffman
        }
    );
    assert_eq!(
        table(&d),
        (expect(&[(":authority", "www.example.com")]), 57)
    );

    let fields = decode(&mut d, blocks[1]).unwrap();
    assert_eq!(pairs(&fields), expect(REQUEST_2));
    assert_eq!(fields[3].repr, Representation::Indexed { index: 62 });
    assert_eq!(
        table(&d),
        (
            expect(&[
                ("cache-control", "no-cache"),
                (":authority", "www.example.com")
            ]),
            110
        )
    );

    let fields = decode(&mut d, blocks[2]).unwrap();
    assert_eq!(pairs(&fields), expect(REQUEST_3));
    assert_eq!(
        fields[4].repr,
        Representation::IncrementalIndexing {
            name_index: None,
            huffman_name: huffman,
            huffman_value: huffman
        }
    );
    assert_eq!(
        table(&d),
        (
            expect(&[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com")
            ]),
            164
        )
    );
    assert!(d.last_size_updates().is_empty());
}

#[test]
fn c_3_requests_without_huffman() {
    check_requests(
        [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
        false,
    );
}

#[test]
fn c_4_requests_with_huffman() {
    check_requests(
        [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
        true,
    );
}

// ---- C.5 / C.6: responses with eviction at table size 256 --------------------

const RESPONSE_1: &[(&str, &str)] = &[
    (":status", "302"),
    ("cache-control", "private"),
    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
    ("location", "https://www.example.com"),
];
const RESPONSE_2: &[(&str, &str)] = &[
    (":status", "307"),
    ("cache-control", "private"),
    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
    ("location", "https://www.example.com"),
];
const RESPONSE_3: &[(&str, &str)] = &[
    (":status", "200"),
    ("cache-control", "private"),
    ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
    ("location", "https://www.example.com"),
    ("content-encoding", "gzip"),
    (
        "set-cookie",
        "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    ),
];

const C5: [&str; 3] = [
    "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
     2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
     6c65 2e63 6f6d",
    "4803 3330 37c1 c0bf",
    "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
     54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
     5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
     3d31",
];

const C6: [&str; 3] = [
    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
     2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
    "4883 640e ffc1 c0bf",
    "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
     77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
     9587 3160 65c0 03ed 4ee5 b106 3d50 07",
];

fn check_responses(mut d: Decoder, blocks: [&str; 3]) {
    let fields = decode(&mut d, blocks[0]).unwrap();
    assert_eq!(pairs(&fields), expect(RESPONSE_1));
    assert_eq!(
        table(&d),
        (
            expect(&[
                ("location", "https://www.example.com"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("cache-control", "private"),
                (":status", "302"),
            ]),
            222
        )
    );

    let fields = decode(&mut d, blocks[1]).unwrap();
    assert_eq!(pairs(&fields), expect(RESPONSE_2));
    assert_eq!(
        table(&d),
        (
            expect(&[
                (":status", "307"),
                ("location", "https://www.example.com"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("cache-control", "private"),
            ]),
            222
        )
    );

    let fields = decode(&mut d, blocks[2]).unwrap();
    assert_eq!(pairs(&fields), expect(RESPONSE_3));
    assert_eq!(
        table(&d),
        (
            expect(&[
                (
                    "set-cookie",
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
                ),
                ("content-encoding", "gzip"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ]),
            215
        )
    );
}

/// The vectors assume `SETTINGS_HEADER_TABLE_SIZE` = 256 already in force.
fn decoder_256() -> Decoder {
    let mut d = Decoder::new();
    d.set_max_table_size_limit(256);
    assert_eq!(d.max_table_size(), 256);
    d
}

#[test]
fn c_5_responses_without_huffman() {
    check_responses(decoder_256(), C5);
}

#[test]
fn c_6_responses_with_huffman() {
    check_responses(decoder_256(), C6);
}

#[test]
fn c_5_with_explicit_size_update() {
    // Same vectors, but the encoder announces the 256-byte table itself, as
    // it must after a SETTINGS change: 3f e1 01 = size update to 256.
    let mut d = Decoder::new();
    d.set_max_table_size_limit(4096);
    let mut blocks = C5.map(str::to_owned);
    blocks[0].insert_str(0, "3fe101");
    let mut out = Vec::new();
    d.decode(&hex(&blocks[0]), &mut out).unwrap();
    assert_eq!(d.last_size_updates(), [256]);
    assert_eq!(d.max_table_size(), 256);
    d.decode(&hex(&blocks[1]), &mut out).unwrap();
    assert!(d.last_size_updates().is_empty());
    d.decode(&hex(&blocks[2]), &mut out).unwrap();
    assert_eq!(d.table_size(), 215);
    assert_eq!(d.table_len(), 3);
}

// ---- size updates --------------------------------------------------------------

#[test]
fn two_size_updates_at_start_are_recorded() {
    let mut d = Decoder::new();
    decode(&mut d, "400a 6375 7374 6f6d 2d6b 6579 0161").unwrap();
    assert_eq!(d.table_len(), 1);
    // Shrink to 0 (clears), then back to 4096, then a field.
    let fields = decode(&mut d, "20 3fe11f 82").unwrap();
    assert_eq!(d.last_size_updates(), [0, 4096]);
    assert_eq!(d.table_len(), 0);
    assert_eq!(d.max_table_size(), 4096);
    assert_eq!(pairs(&fields), expect(&[(":method", "GET")]));
}

#[test]
fn block_of_only_a_size_update_is_accepted() {
    let mut d = Decoder::new();
    assert_eq!(decode(&mut d, "3f61").unwrap(), []);
    assert_eq!(d.last_size_updates(), [128]);
}

#[test]
fn size_update_above_limit_is_rejected() {
    let mut d = Decoder::new();
    // 4097 = 31 + 4066 -> 3f e2 1f
    assert_eq!(
        decode(&mut d, "3fe21f"),
        Err(HpackError::SizeUpdateTooLarge {
            requested: 4097,
            limit: 4096
        })
    );
    d.set_max_table_size_limit(100);
    assert_eq!(
        decode(&mut d, "3f61"),
        Err(HpackError::SizeUpdateTooLarge {
            requested: 128,
            limit: 100
        })
    );
}

#[test]
fn size_update_above_supported_maximum_is_rejected() {
    let mut d = Decoder::new();
    d.set_max_table_size_limit(u32::MAX);
    // 2^20 + 1 = 31 + 1048546 -> 3f e2 ff 3f
    assert_eq!(
        decode(&mut d, "3fe2ff3f"),
        Err(HpackError::TableSizeUnsupported {
            requested: (1 << 20) + 1,
            supported: MAX_SUPPORTED_TABLE_SIZE
        })
    );
    // 2^20 itself is fine.
    decode(&mut d, "3fe1ff3f").unwrap();
    assert_eq!(d.max_table_size(), 1 << 20);
}

#[test]
fn size_update_after_field_is_rejected() {
    let mut d = Decoder::new();
    assert_eq!(
        decode(&mut d, "82 3f61"),
        Err(HpackError::SizeUpdateNotAtStart)
    );
}

#[test]
fn lowering_the_limit_shrinks_the_table() {
    let mut d = Decoder::new();
    decode(&mut d, C5[0]).unwrap();
    assert_eq!(d.table_size(), 222);
    d.set_max_table_size_limit(130);
    assert_eq!(d.max_table_size(), 130);
    assert_eq!(d.table_len(), 2);
    assert_eq!(d.table_size(), 128);
    // Raising it again leaves the current size alone until a size update.
    d.set_max_table_size_limit(4096);
    assert_eq!(d.max_table_size(), 130);
}

// ---- malformed input --------------------------------------------------------------

#[test]
fn lone_3f_is_truncated() {
    // A size update whose prefix promises continuation octets that never come.
    let mut d = Decoder::new();
    assert_eq!(decode(&mut d, "3f"), Err(HpackError::Truncated));
}

#[test]
fn truncated_inputs() {
    for block in ["ff", "7f", "40", "4005 6162", "04", "0f", "1f80", "ff80"] {
        let mut d = Decoder::new();
        let err = decode(&mut d, block).unwrap_err();
        assert!(
            matches!(
                err,
                HpackError::Truncated | HpackError::StringTooLong { .. }
            ),
            "{block}: {err:?}"
        );
    }
}

#[test]
fn huge_integer_is_rejected() {
    let mut d = Decoder::new();
    assert_eq!(
        decode(&mut d, "ff ffff ffff 7f"),
        Err(HpackError::IntegerOverflow)
    );
    // A string length beyond u32.
    assert_eq!(
        decode(&mut d, "00 7f ffff ffff 7f"),
        Err(HpackError::IntegerOverflow)
    );
}

#[test]
fn string_length_past_end_is_rejected() {
    let mut d = Decoder::new();
    assert_eq!(
        decode(&mut d, "00 05 6162"),
        Err(HpackError::StringTooLong {
            len: 5,
            remaining: 2
        })
    );
    // A length near u32::MAX must be refused before any allocation.
    assert_eq!(
        decode(&mut d, "00 7f80ffffff0f 61"),
        Err(HpackError::StringTooLong {
            len: u32::MAX,
            remaining: 1
        })
    );
}

#[test]
fn eos_in_huffman_string_is_rejected() {
    let mut d = Decoder::new();
    assert_eq!(
        decode(&mut d, "00 01 61 84 ffffffff"),
        Err(HpackError::Huffman(HuffmanError::EosInString))
    );
}

#[test]
fn bad_huffman_padding_is_rejected() {
    let mut d = Decoder::new();
    // Value: '0' (00000) + padding 110.
    assert_eq!(
        decode(&mut d, "04 81 06"),
        Err(HpackError::Huffman(HuffmanError::InvalidPadding))
    );
    // Value: '0' (00000) + 11 bits of ones.
    assert_eq!(
        decode(&mut d, "04 82 07ff"),
        Err(HpackError::Huffman(HuffmanError::PaddingTooLong))
    );
}

#[test]
fn index_zero_is_rejected() {
    let mut d = Decoder::new();
    assert_eq!(decode(&mut d, "80"), Err(HpackError::InvalidIndex(0)));
}

#[test]
fn index_past_table_is_rejected() {
    let mut d = Decoder::new();
    assert_eq!(decode(&mut d, "be"), Err(HpackError::InvalidIndex(62)));
    // Also as a literal's name index.
    assert_eq!(
        decode(&mut d, "7f00 0161"),
        Err(HpackError::InvalidIndex(63))
    );
    decode(&mut d, "400a 6375 7374 6f6d 2d6b 6579 0161").unwrap();
    assert_eq!(decode(&mut d, "be").unwrap()[0].name[..], b"custom-key"[..]);
    assert_eq!(decode(&mut d, "bf"), Err(HpackError::InvalidIndex(63)));
}

#[test]
fn header_list_bomb_is_capped() {
    let mut d = Decoder::new();
    d.set_max_header_list_size(10_000);
    // One 3 KB entry, then a block that references it 100 times.
    let value = vec![b'v'; 3000];
    let mut block = vec![0x40, 0x01, b'x'];
    integer::encode(value.len(), 7, 0, &mut block);
    block.extend_from_slice(&value);
    let mut out = Vec::new();
    d.decode(&block, &mut out).unwrap();
    assert_eq!(out[0].value, value);
    let bomb = vec![0xbe; 100];
    out.clear();
    assert_eq!(
        d.decode(&bomb, &mut out),
        Err(HpackError::HeaderListTooLarge { limit: 10_000 })
    );
    // 3 × 3033 bytes fit in the budget, the fourth reference does not.
    assert_eq!(out.len(), 3);
}

#[test]
fn header_list_size_counts_overhead() {
    let mut d = Decoder::new();
    // ":method: GET" is 7 + 3 + 32 = 42 bytes.
    d.set_max_header_list_size(84);
    assert_eq!(decode(&mut d, "8282").unwrap().len(), 2);
    assert_eq!(
        decode(&mut d, "828282"),
        Err(HpackError::HeaderListTooLarge { limit: 84 })
    );
}

#[test]
fn decoder_never_panics_on_short_inputs() {
    // Every block of up to two bytes, in both modes.
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            let mut out = Vec::new();
            let _ = Decoder::new().decode(&[a, b], &mut out);
            let _ = Decoder::with_unknown_past().decode(&[a, b], &mut out);
        }
        let _ = Decoder::new().decode(&[a], &mut Vec::new());
    }
}

// ---- unknown past -------------------------------------------------------------

#[test]
fn unknown_past_indexed_reference() {
    let mut d = Decoder::with_unknown_past();
    assert!(d.past_unknown());
    let fields = decode(&mut d, "82 c0").unwrap();
    assert_eq!(fields[0].name[..], b":method"[..]);
    let f = &fields[1];
    assert_eq!(f.repr, Representation::Unknown { index: 64 });
    assert!(f.name_unknown && f.value_unknown && !f.is_complete());
    assert!(f.name.is_empty() && f.value.is_empty());
}

#[test]
fn unknown_past_known_entries_come_first() {
    let mut d = Decoder::with_unknown_past();
    // Insert custom-key: a, then index 62 is it and 63 is from the past.
    let fields = decode(&mut d, "400a 6375 7374 6f6d 2d6b 6579 0161 be bf").unwrap();
    assert_eq!(fields[1].name[..], b"custom-key"[..]);
    assert!(fields[1].is_complete());
    assert_eq!(fields[2].repr, Representation::Unknown { index: 63 });
}

#[test]
fn unknown_past_name_reference_keeps_value() {
    let mut d = Decoder::with_unknown_past();
    // Literal with incremental indexing, name index 70 (unknown), value "v".
    let fields = decode(&mut d, "7f07 0176").unwrap();
    let f = &fields[0];
    assert!(f.name_unknown && !f.value_unknown);
    assert_eq!(f.value[..], b"v"[..]);
    assert_eq!(
        f.repr,
        Representation::IncrementalIndexing {
            name_index: Some(70),
            huffman_name: false,
            huffman_value: false
        }
    );
    // The inserted entry keeps the unknown name; referencing it says so.
    let fields = decode(&mut d, "be").unwrap();
    let f = &fields[0];
    assert_eq!(f.repr, Representation::Indexed { index: 62 });
    assert!(f.name_unknown && !f.value_unknown);
    assert_eq!(f.value[..], b"v"[..]);
    assert_eq!(d.dynamic_table().get(0).unwrap().name(), None);
}

#[test]
fn unknown_past_accepts_large_size_updates_until_limit_known() {
    let mut d = Decoder::with_unknown_past();
    // 3f e1 ff 03 = 31 + 0x61 + 0x7f * 2^7 + 3 * 2^14 = 65536
    decode(&mut d, "3fe1ff03").unwrap();
    assert_eq!(d.max_table_size(), 65536);
    d.set_max_table_size_limit(4096);
    assert_eq!(d.max_table_size(), 4096);
    assert!(matches!(
        decode(&mut d, "3fe21f"),
        Err(HpackError::SizeUpdateTooLarge { .. })
    ));
}

#[test]
fn unknown_past_ends_with_size_update_to_zero() {
    let mut d = Decoder::with_unknown_past();
    assert_eq!(
        decode(&mut d, "be").unwrap()[0].repr,
        Representation::Unknown { index: 62 }
    );
    decode(&mut d, "20 3fe11f").unwrap();
    assert!(!d.past_unknown());
    assert_eq!(decode(&mut d, "be"), Err(HpackError::InvalidIndex(62)));
}

#[test]
fn unknown_past_ends_when_known_entries_fill_the_table() {
    let mut d = Decoder::with_unknown_past();
    // Max size 100 becomes known, then two 34-byte entries leave 32 bytes:
    // an old entry could still fit.
    decode(&mut d, "3f45 4001 6101 78 4001 6201 78").unwrap();
    assert_eq!(d.max_table_size(), 100);
    assert!(d.past_unknown());
    // A 35-byte entry evicts the first and leaves 31 bytes, too small for any
    // entry: nothing from before the capture can remain.
    decode(&mut d, "4001 6302 7879").unwrap();
    assert_eq!(d.table_size(), 69);
    assert!(!d.past_unknown());
    assert_eq!(decode(&mut d, "bf").unwrap()[0].name[..], b"b"[..]);
    assert_eq!(decode(&mut d, "c0"), Err(HpackError::InvalidIndex(64)));
}

#[test]
fn unknown_past_is_not_resolved_without_a_known_max() {
    let mut d = Decoder::with_unknown_past();
    // Fill the assumed 4096-byte table: the real one may be larger.
    let mut block = Vec::new();
    for i in 0..130u8 {
        block.extend_from_slice(&[0x40, 0x01, i, 0x00]);
    }
    d.decode(&block, &mut Vec::new()).unwrap();
    assert!(d.past_unknown());
}

// ---- encode_plain ---------------------------------------------------------------

#[test]
fn encode_plain_uses_only_static_table_and_literals() {
    let headers: &[(&[u8], &[u8])] = &[
        (b":method", b"GET"),
        (b":path", b"/a/b"),
        (b"x-custom", b"value"),
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
    ];
    let mut block = Vec::new();
    encode_plain(headers, &mut block);
    let mut expected = hex("82 0404 2f612f62 00 0878 2d63 7573 746f 6d05 7661 6c75 65 88");
    expected.extend_from_slice(&hex("0f10 10"));
    expected.extend_from_slice(b"application/grpc");
    assert_eq!(block, expected);

    let mut d = Decoder::new();
    let mut out = Vec::new();
    d.decode(&block, &mut out).unwrap();
    let got: Vec<(&[u8], &[u8])> = out.iter().map(|f| (&f.name[..], &f.value[..])).collect();
    assert_eq!(got, headers);
    assert_eq!(d.table_len(), 0);
    assert!(matches!(
        out[2].repr,
        Representation::WithoutIndexing {
            name_index: None,
            ..
        }
    ));
    assert!(matches!(
        out[4].repr,
        Representation::WithoutIndexing {
            name_index: Some(31),
            ..
        }
    ));
}

#[test]
fn encode_plain_long_strings_use_multi_octet_lengths() {
    let value = vec![b'a'; 300];
    let headers: &[(&[u8], &[u8])] = &[(b"x", &value)];
    let mut block = Vec::new();
    encode_plain(headers, &mut block);
    let mut out = Vec::new();
    Decoder::new().decode(&block, &mut out).unwrap();
    assert_eq!(out[0].value, value);
}

#[test]
fn field_spans_tile_the_block() {
    // Each C.5 and C.6 block, decoded in sequence, and one with a size update in front.
    for blocks in [C5, C6] {
        let mut d = decoder_256();
        for block in blocks
            .iter()
            .map(|b| b.to_string())
            .chain(["3fe1 01 88".to_string()])
        {
            let bytes = hex(&block);
            let spans = field_spans(&bytes);
            let fields = decode(&mut d, &block).unwrap();
            assert_eq!(spans.len(), fields.len(), "{block}");
            for pair in spans.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            assert_eq!(spans.last().unwrap().end, bytes.len());
            assert!(spans.iter().all(|s| s.start < s.end));
        }
    }
    // A truncated literal ends the list instead of running past the block.
    assert_eq!(field_spans(&hex("82 410f 7777")), vec![0..1]);
}

/// `:path` as a literal without indexing, Huffman-coded, as h2 sends it on every call.
fn path_block(path: &str) -> Vec<u8> {
    let mut coded = Vec::new();
    huffman::encode(path.as_bytes(), &mut coded);
    assert!(coded.len() < 127);
    let mut block = vec![0x04, 0x80 | coded.len() as u8];
    block.extend_from_slice(&coded);
    block
}

/// Repeated Huffman literals come from the thread's recent strings, also for another decoder: the same value, sharing
/// the first decoding's bytes; strings of the same length that differ, strings pushed out by
/// newer ones and strings that failed to decode are decoded anew.
#[test]
fn repeated_huffman_literals_are_decoded_once() {
    let mut d = Decoder::new();
    let paths: Vec<String> = (0..11).map(|i| format!("/pkg.Svc/Method{i}")).collect();
    let value = |d: &mut Decoder, p: &str| {
        let mut out = Vec::new();
        d.decode(&path_block(p), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].name[..], b":path");
        out.remove(0).value
    };
    let first = value(&mut d, &paths[0]);
    let again = value(&mut Decoder::new(), &paths[0]);
    assert_eq!(&again[..], paths[0].as_bytes());
    assert_eq!(first.as_ptr(), again.as_ptr(), "not shared: decoded twice");
    // Same coded length, other bytes.
    let other = value(&mut d, &paths[1]);
    assert_eq!(&other[..], paths[1].as_bytes());
    // Eleven strings through eight slots, twice: every one still right.
    for _ in 0..2 {
        for p in &paths {
            assert_eq!(&value(&mut d, p)[..], p.as_bytes());
        }
    }
    // EOS inside the string fails every time, not only the first.
    let bad = [0x04, 0x84, 0xff, 0xff, 0xff, 0xff];
    for _ in 0..2 {
        let mut out = Vec::new();
        assert!(d.clone().decode(&bad, &mut out).is_err());
    }
}

/// A block seen again with the table unchanged gives the list it gave before, the same one; a
/// block that indexes the dynamic table decodes anew once an insertion moved what it points at.
#[test]
fn repeated_blocks_share_their_list_until_the_table_changes() {
    let mut d = Decoder::new();
    let insert = |d: &mut Decoder, value: &str| {
        let mut block = hex("40 03 782d61");
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
        d.decode_shared(&block).unwrap();
    };
    insert(&mut d, "one");
    let newest = hex("be 04 02 2f61");
    let first = d.decode_shared(&newest).unwrap();
    let again = d.decode_shared(&newest).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    assert_eq!(pairs(&again), expect(&[("x-a", "one"), (":path", "/a")]));
    insert(&mut d, "two");
    let moved = d.decode_shared(&newest).unwrap();
    assert_eq!(pairs(&moved), expect(&[("x-a", "two"), (":path", "/a")]));
    // A block that inserts changes what its repeat decodes to, so it is decoded each time.
    let inserting = hex("40 03 782d62 01 31");
    d.decode_shared(&inserting).unwrap();
    d.decode_shared(&inserting).unwrap();
    assert_eq!(d.table_len(), 4);
    // A size update is reported for its block only, not for a repeat after it.
    d.decode_shared(&hex("3f e1 1f be")).unwrap();
    assert_eq!(d.last_size_updates(), &[4096]);
    d.decode_shared(&newest).unwrap();
    assert!(d.last_size_updates().is_empty());
}

/// Pieces of header blocks that touch the table in every way: indexed static and dynamic
/// references (valid or not), literals that insert, literals that do not.
const PIECES: [&str; 7] = [
    "82",
    "be",
    "bf",
    "40 03 782d61 01 31",
    "40 03 782d61 01 32",
    "04 02 2f61",
    "7e 01 33",
];

proptest::proptest! {
    /// `decode_shared` gives what `decode` gives, block after block, with the same table and
    /// size updates, however often blocks repeat and whatever they do to the table.
    #[test]
    fn decode_shared_is_decode(
        pool in proptest::collection::vec(
            (0..4usize, proptest::collection::vec(0..PIECES.len(), 0..4)),
            1..5,
        ),
        order in proptest::collection::vec(0..5usize, 1..24),
    ) {
        // A few blocks, in an order that repeats them: the repeats are what is under test.
        let pool: Vec<Vec<u8>> = pool
            .into_iter()
            .map(|(update, pieces)| {
                let mut block = match update {
                    1 => hex("20"),
                    2 => hex("3f 41"),
                    _ => Vec::new(),
                };
                for p in pieces {
                    block.extend(hex(PIECES[p]));
                }
                block
            })
            .collect();
        let mut plain = Decoder::new();
        let mut shared = Decoder::new();
        for i in order {
            let block = &pool[i % pool.len()];
            let mut out = Vec::new();
            let a = plain.decode(block, &mut out).map(|()| out);
            let b = shared.decode_shared(block).map(|l| l.to_vec());
            proptest::prop_assert_eq!(&a, &b);
            proptest::prop_assert_eq!(plain.last_size_updates(), shared.last_size_updates());
            proptest::prop_assert_eq!(table(&plain), table(&shared));
            if a.is_err() {
                break;
            }
        }
    }
}

#[test]
fn only_tables_within_the_default_size_freeze_cheaply() {
    let mut d = Decoder::new();
    d.set_max_table_size_limit(1 << 16);
    // A size update to 65,536, then a 5,000-byte value added to the table.
    let mut block = hex("3fe1ff03");
    block.extend_from_slice(&[0x40, 0x01, b'a']);
    integer::encode(5000, 7, 0, &mut block);
    block.extend(std::iter::repeat_n(b'v', 5000));
    assert!(d.freezes_cheaply());
    d.decode(&block, &mut Vec::new()).unwrap();
    assert_eq!(d.table_len(), 1);
    assert!(!d.freezes_cheaply());
}
