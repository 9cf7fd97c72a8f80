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
