//! Tunnelled traffic, as captured on a Kubernetes node (VXLAN, Geneve, IP in IP), from a
//! mirror port (GRE, ERSPAN) or in a provider's core (MPLS): a real capture wrapped in each
//! tunnel dissects as the capture itself, and tshark, which opens these tunnels too, finds the
//! same HTTP/2 frames in the wrapped file (so the wrapping is what those tunnels look like).

use std::process::Command;

use etherparse::{IpNumber, PacketBuilder};
use h2scope::capture::{CaptureReader, LinkType};
use h2scope::output::pcap::PcapWriter;

const BIN: &str = env!("CARGO_BIN_EXE_h2scope");
const MAC: ([u8; 6], [u8; 6]) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
const OUTER: ([u8; 4], [u8; 4]) = ([192, 0, 2, 1], [192, 0, 2, 2]);

fn testdata(name: &str) -> String {
    format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Outer Ethernet and IPv4 around `payload` of IP protocol `proto`.
fn over_ipv4(proto: IpNumber, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC.0, MAC.1)
        .ipv4(OUTER.0, OUTER.1, 64)
        .write(&mut out, proto, payload)
        .unwrap();
    out
}

/// Outer Ethernet, IPv4 and UDP to `port`.
fn over_udp(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC.0, MAC.1)
        .ipv4(OUTER.0, OUTER.1, 64)
        .udp(49152, port)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn vxlan(inner_ethernet: &[u8]) -> Vec<u8> {
    let mut p = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    p.extend_from_slice(inner_ethernet);
    p
}

fn mpls_labels(inner_ip: &[u8]) -> Vec<u8> {
    // Label 100, then label 200 at the bottom of the stack; TTL 64.
    let mut p = vec![0x00, 0x06, 0x40, 0x40, 0x00, 0x0c, 0x81, 0x40];
    p.extend_from_slice(inner_ip);
    p
}

/// One packet of the original capture (Ethernet) as the tunnel `kind` carries it.
fn wrap(kind: &str, ethernet: &[u8]) -> Vec<u8> {
    let ip = &ethernet[14..];
    let cat = |head: &[u8], rest: &[u8]| [head, rest].concat();
    match kind {
        "vxlan" => over_udp(4789, &vxlan(ethernet)),
        "vxlan-8472" => over_udp(8472, &vxlan(ethernet)),
        "vxlan-over-ipv6" => {
            let mut out = Vec::new();
            PacketBuilder::ethernet2(MAC.0, MAC.1)
                .ipv6(
                    [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    {
                        let mut a = [0u8; 16];
                        a[..4].copy_from_slice(&[0x20, 1, 0xd, 0xb8]);
                        a[15] = 2;
                        a
                    },
                    64,
                )
                .udp(49152, 4789)
                .write(&mut out, &vxlan(ethernet))
                .unwrap();
            out
        }
        // Two 4-byte words of options (one option with 4 bytes of data), then Ethernet.
        "geneve" => over_udp(
            6081,
            &cat(
                &[
                    2, 0, 0x65, 0x58, 0, 0, 42, 0, 0x01, 0x02, 0x80, 1, 0xde, 0xad, 0xbe, 0xef,
                ],
                ethernet,
            ),
        ),
        // With a key, carrying IPv4.
        "gre" => over_ipv4(IpNumber::GRE, &cat(&[0x20, 0, 0x08, 0, 0, 0, 0, 7], ip)),
        "gre-ethernet" => over_ipv4(IpNumber::GRE, &cat(&[0, 0, 0x65, 0x58], ethernet)),
        "gre-mpls" => over_ipv4(IpNumber::GRE, &cat(&[0, 0, 0x88, 0x47], &mpls_labels(ip))),
        // ERSPAN type II: GRE with a sequence number, the 8-byte ERSPAN header, Ethernet.
        "erspan" => over_ipv4(
            IpNumber::GRE,
            &cat(
                &[0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0],
                ethernet,
            ),
        ),
        "ipip" => over_ipv4(IpNumber::IPV4, ip),
        "mpls" => {
            let mut out = [&MAC.1[..], &MAC.0[..], &[0x88, 0x47]].concat();
            out.extend_from_slice(&mpls_labels(ip));
            out
        }
        other => panic!("{other}"),
    }
}

fn wrapped_capture(kind: &str, path: &str) -> Vec<u8> {
    let mut reader = CaptureReader::open(path).unwrap();
    let mut w = PcapWriter::new(Vec::new(), LinkType(1), 65535).unwrap();
    reader
        .for_each_packet(|p| {
            assert_eq!(p.link, LinkType(1));
            let data = wrap(kind, p.data);
            w.write_packet(p.ts_ns, &data, data.len() as u32).unwrap();
            true
        })
        .unwrap();
    w.into_inner()
}

fn h2scope(args: &[&str], file: &str) -> String {
    let out = Command::new(BIN).args(args).arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// tshark's HTTP/2 frame types, in order, with the server port decoded as HTTP/2.
fn tshark_types(file: &str, port: u16) -> Vec<String> {
    let out = Command::new("tshark")
        .args(["-r", file, "-d", &format!("tcp.port=={port},http2")])
        // The Linux kernel's VXLAN port, which tshark does not open by itself.
        .args(["-d", "udp.port==8472,vxlan"])
        .args(["-T", "fields", "-e", "http2.type"])
        .output()
        .expect("tshark (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn tunnelled_captures_dissect_as_the_capture_itself() {
    let original = testdata("grpc-health.pcap");
    let events = h2scope(&["read", "--format", "jsonl", "--no-summary"], &original);
    let calls = h2scope(
        &["read", "--format", "jsonl", "--calls", "--no-summary"],
        &original,
    );
    let first: serde_json::Value = serde_json::from_str(calls.lines().next().unwrap()).unwrap();
    let server: std::net::SocketAddr = first["server"].as_str().unwrap().parse().unwrap();
    let reference = tshark_types(&original, server.port());
    assert!(reference.len() > 50, "{reference:?}");
    let dir = std::env::temp_dir().join(format!("h2scope-tunnels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for kind in [
        "vxlan",
        "vxlan-8472",
        "vxlan-over-ipv6",
        "geneve",
        "gre",
        "gre-ethernet",
        "gre-mpls",
        "erspan",
        "ipip",
        "mpls",
    ] {
        let path = dir.join(format!("{kind}.pcap"));
        std::fs::write(&path, wrapped_capture(kind, &original)).unwrap();
        let file = path.to_str().unwrap();
        assert_eq!(
            tshark_types(file, server.port()),
            reference,
            "{kind}: tshark does not see the same frames"
        );
        assert_eq!(
            h2scope(&["read", "--format", "jsonl", "--no-summary"], file),
            events,
            "{kind}"
        );
        let summary = h2scope(&["read", "-q", "--format", "jsonl"], file);
        let s: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
        assert_eq!(s["tcp_packets"], s["packets"], "{kind}: {s}");
        assert_eq!(s["skipped_packets"], serde_json::json!({}), "{kind}: {s}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv4 packet `ip` (a 20-byte header) in fragments of at most `size` payload bytes, in
/// order or last first.
fn fragment_ipv4(ip: &[u8], size: usize, id: u16, reverse: bool) -> Vec<Vec<u8>> {
    let payload = &ip[20..usize::from(u16::from_be_bytes([ip[2], ip[3]]))];
    if payload.len() <= size {
        return vec![ip.to_vec()];
    }
    let mut out: Vec<Vec<u8>> = payload
        .chunks(size)
        .enumerate()
        .map(|(i, piece)| {
            let offset = i * size;
            let more = offset + piece.len() < payload.len();
            let mut h = ip[..20].to_vec();
            h[2..4].copy_from_slice(&(20 + piece.len() as u16).to_be_bytes());
            h[4..6].copy_from_slice(&id.to_be_bytes());
            let field = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
            h[6..8].copy_from_slice(&field.to_be_bytes());
            h[10..12].copy_from_slice(&[0, 0]);
            let sum = ipv4_checksum(&h);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            [h, piece.to_vec()].concat()
        })
        .collect();
    if reverse {
        out.reverse();
    }
    out
}

/// The IPv6 packet `ip` (a 40-byte header, no extensions) in fragments.
fn fragment_ipv6(ip: &[u8], size: usize, id: u32) -> Vec<Vec<u8>> {
    let payload = &ip[40..];
    payload
        .chunks(size)
        .enumerate()
        .map(|(i, piece)| {
            let offset = i * size;
            let more = offset + piece.len() < payload.len();
            let mut h = ip[..40].to_vec();
            h[4..6].copy_from_slice(&(8 + piece.len() as u16).to_be_bytes());
            h[6] = 44;
            let field = (offset as u16) | u16::from(more);
            let mut frag = vec![ip[6], 0];
            frag.extend_from_slice(&field.to_be_bytes());
            frag.extend_from_slice(&id.to_be_bytes());
            [h, frag, piece.to_vec()].concat()
        })
        .collect()
}

/// Packets fragmented on the way: the capture itself with its IP packets in 48-byte pieces
/// (every other packet's pieces last first), and in VXLAN whose outer IPv4 or IPv6 packets were
/// fragmented (as a host does when the tunnel's headers take a full-size packet over its MTU).
/// The frames and calls are the capture's, and tshark, which reassembles IP too, sees the same
/// frames.
#[test]
fn fragmented_packets_are_reassembled() {
    let original = testdata("grpc-health.pcap");
    let fields = [
        "-T", "fields", "-e", "type", "-e", "stream", "-e", "length", "-e", "flags",
    ];
    let frames = h2scope(&[&["read"][..], &fields].concat(), &original);
    let call_fields = [
        "--calls",
        "-T",
        "fields",
        "-e",
        "path",
        "-e",
        "grpc_status",
        "-e",
        "request_bytes",
    ];
    let calls = h2scope(&[&["read"][..], &call_fields].concat(), &original);
    assert!(frames.lines().count() > 100 && calls.lines().count() == 27);
    let first = h2scope(
        &[
            "read", "--calls", "-T", "fields", "-e", "server", "-c", "20",
        ],
        &original,
    );
    let port: u16 = first
        .lines()
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let reference = tshark_types(&original, port);
    let dir = std::env::temp_dir().join(format!("h2scope-fragments-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for kind in ["ipv4", "vxlan-ipv4", "vxlan-ipv6"] {
        let mut reader = CaptureReader::open(&original).unwrap();
        let mut w = PcapWriter::new(Vec::new(), LinkType(1), 65535).unwrap();
        let mut n = 0u32;
        let mut written = 0;
        reader
            .for_each_packet(|p| {
                n += 1;
                let pieces: Vec<Vec<u8>> = match kind {
                    "ipv4" => fragment_ipv4(&p.data[14..], 48, n as u16, n % 2 == 0)
                        .into_iter()
                        .map(|ip| [&p.data[..14], &ip].concat())
                        .collect(),
                    "vxlan-ipv4" => {
                        let outer = wrap("vxlan", p.data);
                        fragment_ipv4(&outer[14..], 64, n as u16, false)
                            .into_iter()
                            .map(|ip| [&outer[..14], &ip].concat())
                            .collect()
                    }
                    _ => {
                        let outer = wrap("vxlan-over-ipv6", p.data);
                        fragment_ipv6(&outer[14..], 64, n)
                            .into_iter()
                            .map(|ip| [&outer[..14], &ip].concat())
                            .collect()
                    }
                };
                for piece in pieces {
                    w.write_packet(p.ts_ns, &piece, piece.len() as u32).unwrap();
                    written += 1;
                }
                true
            })
            .unwrap();
        assert!(written > n + 50, "{kind}: {written} packets from {n}");
        let path = dir.join(format!("{kind}.pcap"));
        std::fs::write(&path, w.into_inner()).unwrap();
        let file = path.to_str().unwrap();
        assert_eq!(tshark_types(file, port), reference, "{kind}: tshark");
        assert_eq!(
            h2scope(&[&["read"][..], &fields].concat(), file),
            frames,
            "{kind}"
        );
        assert_eq!(
            h2scope(&[&["read"][..], &call_fields].concat(), file),
            calls,
            "{kind}"
        );
        // Every fragment but a datagram's last is held, none dropped; the same on threads.
        let summary = h2scope(&["read", "-q", "--format", "jsonl"], file);
        let s: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
        let held = s["skipped_packets"]["IP fragment (reassembled into a later packet)"]
            .as_u64()
            .unwrap();
        assert_eq!(held + u64::from(n), u64::from(written), "{kind}: {s}");
        assert_eq!(s["tcp_packets"], n, "{kind}: {s}");
        // Cut out by connection or by port, the file keeps every fragment, the earlier ones
        // held until the datagram's last showed whose it is.
        let port_text = port.to_string();
        for (n_sel, selection) in [["--conn", "0"], ["--port", &port_text]].iter().enumerate() {
            let cut = dir.join(format!("{kind}-cut-{n_sel}.pcapng"));
            let out = Command::new(BIN)
                .args(["read", "-w", cut.to_str().unwrap()])
                .args(selection)
                .arg(file)
                .output()
                .unwrap();
            assert!(out.status.success());
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(
                said.contains(&format!("wrote {written} packets")),
                "{kind} {selection:?}: {said}"
            );
            let cut = cut.to_str().unwrap();
            assert_eq!(
                h2scope(&[&["read"][..], &fields].concat(), cut),
                frames,
                "{kind} {selection:?}"
            );
            assert_eq!(
                tshark_types(cut, port),
                reference,
                "{kind} {selection:?}: tshark"
            );
        }
        let threads = h2scope(&["read", "--threads", "2", "-q", "--format", "jsonl"], file);
        let t: serde_json::Value = serde_json::from_str(threads.trim()).unwrap();
        assert_eq!(t["skipped_packets"], s["skipped_packets"], "{kind}");
        assert_eq!(t["calls"], s["calls"], "{kind}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
