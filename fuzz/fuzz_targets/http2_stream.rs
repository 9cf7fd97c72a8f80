//! Arbitrary bytes as both sides of one HTTP/2-over-TCP connection, packed into an in-memory
//! pcap, so that the frame parser, HPACK, call tracking and gap handling are reached at once.
//!
//! Input layout:
//!   byte 0      MSS: 0..=63 -> 1..=64 bytes; 64..=255 -> 8, 16, ..., 1536 bytes
//!   bytes 1..3  split point (u16 BE) modulo the remaining length: client bytes | server bytes
//!   byte 3      gaps: low 7 bits n; n = 0 no gap; else skip data segment n (high bit clear)
//!               or every n-th data segment (high bit set), leaving holes in the sequence space
//!   byte 4      flags, see `F_*` below
//!   rest        client bytes (after the connection preface) then server bytes

#![no_main]

use etherparse::PacketBuilder;
use h2scope::capture::LinkType;
use h2scope::http2::frame::PREFACE;
use h2scope::output::pcap::PcapWriter;
use libfuzzer_sys::fuzz_target;

mod common;

/// Client sends FIN after its data.
const F_CLIENT_FIN: u8 = 1 << 0;
/// Server sends FIN after its data.
const F_SERVER_FIN: u8 = 1 << 1;
/// Client sends RST at the very end.
const F_CLIENT_RST: u8 = 1 << 2;
/// Within each direction, every pair of segments is sent in swapped order.
const F_REORDER: u8 = 1 << 3;
/// Every data segment is sent twice (retransmission).
const F_DUPLICATE: u8 = 1 << 4;
/// No three-way handshake: the capture starts mid-connection.
const F_NO_HANDSHAKE: u8 = 1 << 5;
/// The client bytes are not prefixed with the connection preface.
const F_NO_PREFACE: u8 = 1 << 6;
/// IPv6 instead of IPv4.
const F_IPV6: u8 = 1 << 7;

const CLIENT: u16 = 40000;
const SERVER: u16 = 50051;

struct Seg<'a> {
    from_client: bool,
    seq: u32,
    payload: &'a [u8],
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let mss = match data[0] {
        b @ 0..=63 => b as usize + 1,
        b => (b as usize - 63) * 8,
    };
    let rest = &data[5..];
    let split = u16::from_be_bytes([data[1], data[2]]) as usize % (rest.len() + 1);
    let gap = data[3];
    let flags = data[4];

    let mut client = Vec::with_capacity(PREFACE.len() + split);
    if flags & F_NO_PREFACE == 0 {
        client.extend_from_slice(PREFACE);
    }
    client.extend_from_slice(&rest[..split]);
    let server = &rest[split..];

    let pcap = build_capture(&client, server, mss, gap, flags);
    if let Some(path) = dump_path() {
        // For reproducing a finding with the CLI: `h2scope read <path>`.
        std::fs::write(path, &pcap).expect("cannot write H2SCOPE_FUZZ_DUMP_PCAP");
    }
    common::dissect_and_render(pcap);
});

/// `H2SCOPE_FUZZ_DUMP_PCAP=file.pcap`: also write the capture built from the input there.
fn dump_path() -> Option<&'static std::path::Path> {
    static PATH: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    PATH.get_or_init(|| std::env::var_os("H2SCOPE_FUZZ_DUMP_PCAP").map(Into::into))
        .as_deref()
}

fn build_capture(client: &[u8], server: &[u8], mss: usize, gap: u8, flags: u8) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), LinkType(101), 65535).unwrap();
    let mut ts = 1_000_000_000i64;
    let ipv6 = flags & F_IPV6 != 0;
    let mut write = |from_client: bool, seq: u32, ack: u32, tcp_flags: u8, payload: &[u8]| {
        let (src, dst) = if from_client {
            (CLIENT, SERVER)
        } else {
            (SERVER, CLIENT)
        };
        let ip = if ipv6 {
            let mut a = [0u8; 16];
            a[15] = 1;
            PacketBuilder::ipv6(a, a, 64)
        } else {
            PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
        };
        let mut b = ip.tcp(src, dst, seq, 65535);
        if tcp_flags & SYN != 0 {
            b = b.syn();
        }
        if tcp_flags & FIN != 0 {
            b = b.fin();
        }
        if tcp_flags & RST != 0 {
            b = b.rst();
        }
        let b = b.ack(ack);
        let mut out = Vec::with_capacity(payload.len() + 60);
        b.write(&mut out, payload).unwrap();
        ts += 1000;
        w.write_packet(ts, &out, out.len() as u32).unwrap();
    };

    let (c_isn, s_isn) = (100u32, 900u32);
    if flags & F_NO_HANDSHAKE == 0 {
        write(true, c_isn, 0, SYN, &[]);
        write(false, s_isn, c_isn.wrapping_add(1), SYN, &[]);
    }
    let mut cs: Vec<Seg<'_>> = split_segments(client, mss, c_isn.wrapping_add(1), true);
    let mut ss: Vec<Seg<'_>> = split_segments(server, mss, s_isn.wrapping_add(1), false);
    if flags & F_REORDER != 0 {
        for list in [&mut cs, &mut ss] {
            for pair in list.chunks_mut(2) {
                pair.reverse();
            }
        }
    }
    let c_end = c_isn.wrapping_add(1).wrapping_add(client.len() as u32);
    let s_end = s_isn.wrapping_add(1).wrapping_add(server.len() as u32);

    // Alternate the directions, as a request/response exchange would.
    let mut order = Vec::with_capacity(cs.len() + ss.len());
    let (mut ci, mut si) = (cs.into_iter(), ss.into_iter());
    loop {
        let (c, s) = (ci.next(), si.next());
        if c.is_none() && s.is_none() {
            break;
        }
        order.extend(c);
        order.extend(s);
    }

    // Acknowledgments are cumulative, as a real receiver's: a reordered segment is not acked
    // before the one it overtook has arrived. Skipped segments stand for bytes the capture lost
    // but the receiver got, so they count as received.
    let mut c_rx = Received::new(c_isn.wrapping_add(1));
    let mut s_rx = Received::new(s_isn.wrapping_add(1));
    let n = (gap & 0x7f) as usize;
    let every = gap & 0x80 != 0;
    for (i, seg) in order.iter().enumerate() {
        let k = i + 1;
        let skip = n != 0 && if every { k % n == 0 } else { k == n };
        if seg.from_client {
            c_rx.add(seg.seq, seg.payload.len());
        } else {
            s_rx.add(seg.seq, seg.payload.len());
        }
        if skip {
            continue;
        }
        let ack = if seg.from_client {
            s_rx.ack()
        } else {
            c_rx.ack()
        };
        let times = if flags & F_DUPLICATE != 0 { 2 } else { 1 };
        for _ in 0..times {
            write(seg.from_client, seg.seq, ack, 0, seg.payload);
        }
    }

    if flags & F_CLIENT_FIN != 0 {
        write(true, c_end, s_end, FIN, &[]);
    }
    if flags & F_SERVER_FIN != 0 {
        write(false, s_end, c_end.wrapping_add(1), FIN, &[]);
    }
    if flags & F_CLIENT_RST != 0 {
        write(true, c_end.wrapping_add(1), s_end, RST, &[]);
    }
    w.into_inner()
}

const SYN: u8 = 1;
const FIN: u8 = 2;
const RST: u8 = 4;

/// What one side has received of the other's bytes, for cumulative acknowledgments.
struct Received {
    isn: u32,
    contiguous: u64,
    /// Out-of-order ranges (start -> end), as offsets from `isn`.
    ahead: std::collections::BTreeMap<u64, u64>,
}

impl Received {
    fn new(isn: u32) -> Self {
        Received {
            isn,
            contiguous: 0,
            ahead: Default::default(),
        }
    }

    fn add(&mut self, seq: u32, len: usize) {
        let start = u64::from(seq.wrapping_sub(self.isn));
        let end = start + len as u64;
        let e = self.ahead.entry(start).or_insert(end);
        *e = (*e).max(end);
        while let Some((&start, &end)) = self.ahead.first_key_value() {
            if start > self.contiguous {
                break;
            }
            self.contiguous = self.contiguous.max(end);
            self.ahead.pop_first();
        }
    }

    fn ack(&self) -> u32 {
        self.isn.wrapping_add(self.contiguous as u32)
    }
}

fn split_segments(bytes: &[u8], mss: usize, isn: u32, from_client: bool) -> Vec<Seg<'_>> {
    let mut seq = isn;
    bytes
        .chunks(mss)
        .map(|payload| {
            let seg = Seg {
                from_client,
                seq,
                payload,
            };
            seq = seq.wrapping_add(payload.len() as u32);
            seg
        })
        .collect()
}
