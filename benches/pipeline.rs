//! Throughput of the stages, with divan: `cargo bench`. Inputs are real: RFC 7541 C.6 header
//! blocks, and the recorded gRPC traffic of testdata/grpc-health.pcap replicated into many
//! connections. Figures against tshark come from scripts/bench-vs-tshark.

use divan::counter::BytesCount;
use divan::{black_box, Bencher};
use h2scope::capture::{link, CaptureReader};
use h2scope::event::{Event, Sink};
use h2scope::http2::frame::{parse_payload, FrameHeader};
use h2scope::http2::hpack::Decoder;
use h2scope::pipeline::{Config, Dissector};
use h2scope::tcp::Assembler;

fn main() {
    divan::main();
}

/// RFC 7541 C.6.1-C.6.3: three response blocks with Huffman coding and eviction (table 256).
const C6: [&str; 3] = [
    "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
    "4883640effc1c0bf",
    "88c16196d07abe941054d444a8200595040b8166e084a62d1bff5f8b1d75d0620d263d4c7441eac0c0bf",
];

/// The three blocks with a fresh decoder, and Huffman strings decoded afresh (not from the
/// thread's recent strings, which the blocks of the previous round would fill).
#[divan::bench]
fn hpack_c6_block(bencher: Bencher) {
    let blocks: Vec<Vec<u8>> = C6.iter().map(|h| hex::decode(h).unwrap()).collect();
    bencher.bench_local(|| {
        h2scope::http2::hpack::forget_recent_strings();
        let mut d = Decoder::new();
        d.set_max_table_size_limit(256);
        let mut out = Vec::with_capacity(8);
        for b in &blocks {
            out.clear();
            d.decode(black_box(b), &mut out).unwrap();
        }
        black_box(out.len())
    });
}

#[divan::bench]
fn frame_header_and_payload(bencher: Bencher) {
    // A SETTINGS frame with 3 settings, as every connection starts with.
    let frame = hex::decode("00001204000000000000030000006400040100000000020000000000").unwrap();
    bencher.bench_local(|| {
        let h = FrameHeader::parse(black_box(frame[..9].try_into().unwrap()));
        black_box(parse_payload(&h, &frame[9..9 + h.length as usize]).is_ok())
    });
}

#[divan::bench]
fn tcp_reassembly_in_order(bencher: Bencher) {
    let seg = vec![0x41u8; 1448];
    bencher
        .counter(BytesCount::new(1448usize * 1000))
        .bench_local(|| {
            let mut a = Assembler::new(1 << 20);
            let mut n = 0usize;
            for i in 0..1000u32 {
                a.segment(1 + i * 1448, false, false, &seg, &mut |c| {
                    if let h2scope::tcp::Chunk::Data(d) = c {
                        n += d.len();
                    }
                });
            }
            black_box(n)
        });
}

/// The recorded capture, replicated in memory (as packets) into `copies` connections.
fn packets(copies: u16) -> Vec<(i64, u32, Vec<u8>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/grpc-health.pcap");
    let mut r = CaptureReader::open(path).unwrap();
    let mut base = Vec::new();
    r.for_each_packet(|p| {
        base.push((p.ts_ns, p.link.0, p.data.to_vec()));
        true
    })
    .unwrap();
    let mut out = Vec::new();
    for k in 0..copies {
        for (ts, lt, data) in &base {
            let mut d = data.clone();
            // Ethernet + IPv4 (20 bytes) + TCP: give each copy its own client port.
            let server_port = 34793u16;
            let sport = u16::from_be_bytes([d[34], d[35]]);
            let at = if sport == server_port { 36 } else { 34 };
            d[at..at + 2].copy_from_slice(&(1024 + k).to_be_bytes());
            out.push((ts + k as i64 * 1_000_000, *lt, d));
        }
    }
    out
}

struct Count(usize);

impl Sink for Count {
    fn event(&mut self, e: Event) {
        if matches!(e, Event::Frame(_)) {
            self.0 += 1;
        }
    }
}

#[divan::bench(args = [false, true])]
fn whole_pipeline(bencher: Bencher, decode_bodies: bool) {
    let pkts = packets(200);
    let bytes: usize = pkts.iter().map(|p| p.2.len()).sum();
    bencher.counter(BytesCount::new(bytes)).bench_local(|| {
        let mut cfg = Config::default();
        cfg.grpc.bodies = if decode_bodies {
            h2scope::grpc::Bodies::Show
        } else {
            h2scope::grpc::Bodies::Skip
        };
        let mut d = Dissector::new(cfg);
        let mut sink = Count(0);
        for (i, (ts, lt, data)) in pkts.iter().enumerate() {
            let p = h2scope::capture::Packet {
                index: i as u64 + 1,
                ts_ns: *ts,
                link: h2scope::capture::LinkType(*lt),
                data,
                orig_len: data.len() as u32,
            };
            d.packet(&p, &mut sink);
        }
        d.finish(&mut sink);
        black_box(sink.0)
    });
}

#[divan::bench]
fn link_decode(bencher: Bencher) {
    let pkts = packets(1);
    bencher.bench_local(|| {
        let mut n = 0;
        for (_, lt, data) in &pkts {
            if link::decode(h2scope::capture::LinkType(*lt), data).is_ok() {
                n += 1;
            }
        }
        black_box(n)
    });
}

/// The events of the recorded traffic, once: what a display filter and `-T fields` look at.
fn events() -> Vec<Event> {
    events_of("grpc-health.pcap", Config::default())
}

/// The events of a capture in testdata/, dissected with `cfg`.
fn events_of(capture: &str, cfg: Config) -> Vec<Event> {
    let path = format!("{}/testdata/{capture}", env!("CARGO_MANIFEST_DIR"));
    let mut reader = CaptureReader::open(&path).unwrap();
    let mut d = Dissector::new(cfg);
    let mut events: Vec<Event> = Vec::new();
    reader
        .for_each_packet(|p| {
            d.packet(p, &mut events);
            true
        })
        .unwrap();
    d.finish(&mut events);
    events
}

/// A display filter tested on every frame, message and call, as `read -Y` does: the fields it
/// names written by the JSON Lines writer and read back.
#[divan::bench]
fn display_filter(bencher: Bencher) {
    let events = events();
    let filter: h2scope::output::filter::Filter = "type == RST_STREAM".parse().unwrap();
    bencher
        .counter(divan::counter::ItemsCount::new(events.len()))
        .bench_local(|| events.iter().filter(|e| filter.matches(e)).count());
}

/// `-T fields -e type -e stream -e path` lines of every event.
#[divan::bench]
fn fields_lines(bencher: Bencher) {
    use h2scope::output::fields::{write_line, FieldsOptions};
    let events = events();
    let list = h2scope::output::filter::FieldList::parse(&["type", "stream", "path"]).unwrap();
    let opts = FieldsOptions::default();
    let mut buf = Vec::new();
    bencher
        .counter(divan::counter::ItemsCount::new(events.len()))
        .bench_local(|| {
            buf.clear();
            for e in &events {
                write_line(&list, &opts, e, &mut buf);
            }
            buf.len()
        });
}

/// The message bodies of testdata/grpc-bulk.pcap (a label and 16 KiB of bytes each), as the
/// capture carries them.
fn bulk_bodies() -> Vec<Vec<u8>> {
    let mut cfg = Config::default();
    cfg.grpc.keep_bytes = true;
    let bodies: Vec<Vec<u8>> = events_of("grpc-bulk.pcap", cfg)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) => m.decoded.bytes,
            _ => None,
        })
        .collect();
    assert!(!bodies.is_empty());
    bodies
}

/// Bulk messages without a schema: walked (each bytes field tried as text, as a message and as
/// packed varints before it is taken for bytes) and written as JSON Lines' `fields`, the bytes
/// as hex.
#[divan::bench]
fn schemaless_bulk_messages(bencher: Bencher) {
    use h2scope::grpc::message::Schemaless;
    let bodies = bulk_bodies();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let mut buf = Vec::new();
    bencher.counter(BytesCount::new(bytes)).bench_local(|| {
        buf.clear();
        for body in &bodies {
            let tree = Schemaless::Fields(h2scope::grpc::wire::decode_raw(body));
            h2scope::output::jsonl::write_schemaless(&mut buf, &tree);
        }
        buf.len()
    });
}
