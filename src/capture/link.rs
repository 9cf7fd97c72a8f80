//! Link, IP and TCP decoding of one captured packet, down to a TCP segment.
//!
//! etherparse does the IP and TCP work (lax parsing, so snaplen-cut packets still yield what they
//! hold); the link layers it does not know (SLL2, BSD loopback, raw IP) are peeled off here, and
//! so are the tunnels Wireshark opens by default: VXLAN, Geneve, GRE (with ERSPAN), IP in IP
//! and MPLS. A tunnelled segment is the inner one, under the inner addresses.

use std::net::{IpAddr, SocketAddr};

use etherparse::{
    EtherType, IpNumber, LaxNetSlice, LaxSlicedPacket, TcpHeaderSlice, TransportSlice, UdpSlice,
};

use super::defrag::{Defragmenter, Fragment, FragmentKey, Reassembly};
use super::LinkType;

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;
/// DLT_RAW as some BSDs number it in pcap files.
const LINKTYPE_RAW_BSD_12: u32 = 12;
const LINKTYPE_RAW_BSD_14: u32 = 14;

/// A TCP segment as seen on the wire.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
    /// The receive window its sender advertised, unscaled (zero is zero at any scale).
    pub window: u16,
    /// The bytes captured; fewer than the segment carried when the snap length cut it.
    pub payload: &'a [u8],
}

/// Why a packet yields no TCP segment. Counted, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    UnsupportedLinkType(u32),
    /// Link layer too short or not carrying IP.
    NotIp,
    /// IP, but not TCP (UDP, SCTP, ICMP, ...).
    NotTcp,
    /// An IPv4 or IPv6 fragment not reassembled: decoded without a [`Defragmenter`], too big,
    /// or (IPv6) behind extension headers other than the fragment header.
    IpFragment,
    /// An IP fragment held until its datagram is whole; the packet that completes it carries
    /// the segment.
    IpFragmentHeld,
    /// IP or TCP header cut short or malformed.
    Malformed,
}

impl Skip {
    pub fn describe(&self) -> String {
        match self {
            Skip::UnsupportedLinkType(t) => format!("unsupported link type {t}"),
            Skip::NotIp => "not IP".into(),
            Skip::NotTcp => "not TCP".into(),
            Skip::IpFragment => "IP fragment (not reassembled)".into(),
            Skip::IpFragmentHeld => "IP fragment (reassembled into a later packet)".into(),
            Skip::Malformed => "malformed IP/TCP header".into(),
        }
    }
}

/// Decodes a link-layer frame down to TCP.
pub fn decode(link: LinkType, data: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    if link.0 == LINKTYPE_ETHERNET {
        if let Some(seg) = ethernet_ipv4_tcp(data) {
            return Ok(seg);
        }
    }
    decode_lax(link, data)
}

/// The common case read from the header slices directly: a complete, unfragmented TCP segment
/// in IPv4 in Ethernet II. etherparse's whole-packet lax parse, which also copes with VLANs,
/// IPv6 extension headers and packets cut by the snap length, cost about as much as the rest of
/// a packet's dissection. Anything else returns `None` and takes that path.
fn ethernet_ipv4_tcp(data: &[u8]) -> Option<TcpSegment<'_>> {
    if data.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = &data[14..];
    let v4 = etherparse::Ipv4HeaderSlice::from_slice(ip).ok()?;
    if v4.protocol() != etherparse::IpNumber::TCP || v4.is_fragmenting_payload() {
        return None;
    }
    // Ethernet pads short frames: the IP length says where the segment ends.
    let segment = ip.get(v4.slice().len()..usize::from(v4.total_len()))?;
    let tcp = TcpHeaderSlice::from_slice(segment).ok()?;
    let (src, dst) = (v4.source_addr().into(), v4.destination_addr().into());
    Some(tcp_segment(src, dst, &tcp, &segment[tcp.slice().len()..]))
}

fn tcp_segment<'a>(
    src: IpAddr,
    dst: IpAddr,
    tcp: &TcpHeaderSlice<'_>,
    payload: &'a [u8],
) -> TcpSegment<'a> {
    TcpSegment {
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        syn: tcp.syn(),
        ack_flag: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        window: tcp.window_size(),
        payload,
    }
}

/// Tunnels opened one inside another, at most: a bound on the work a crafted packet can ask.
const MAX_TUNNELS: usize = 4;

/// [`decode`], with IP fragments reassembled by `defrag`: a fragment is held (and skipped)
/// until its datagram is whole, and the packet that completes it decodes to the datagram's
/// segment. Only fragments take this path's extra work.
pub fn decode_reassembling<'a>(
    link: LinkType,
    data: &'a [u8],
    defrag: &'a mut Defragmenter,
    ts_ns: i64,
) -> Result<TcpSegment<'a>, Skip> {
    match decode(link, data) {
        Err(Skip::IpFragment) => reassemble(link, data, defrag, ts_ns),
        other => other,
    }
}

/// A packet [`decode`] found to be an IP fragment, taken in by `defrag`: the segment of the
/// datagram it completes, or why it gives none yet.
pub fn reassemble<'a>(
    link: LinkType,
    data: &'a [u8],
    defrag: &'a mut Defragmenter,
    ts_ns: i64,
) -> Result<TcpSegment<'a>, Skip> {
    sliced_segment(link_packet(link, data)?, MAX_TUNNELS, Some((defrag, ts_ns)))
}

/// Any link layer this module knows, through etherparse's lax parsing.
fn decode_lax(link: LinkType, data: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    sliced_segment(link_packet(link, data)?, MAX_TUNNELS, None)
}

/// The packet under the link layer, sliced by etherparse.
fn link_packet(link: LinkType, data: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    Ok(match link.0 {
        LINKTYPE_ETHERNET => LaxSlicedPacket::from_ethernet(data).map_err(|_| Skip::NotIp)?,
        LINKTYPE_LINUX_SLL => {
            // 16-byte header; the protocol (an EtherType for IP) is its last two bytes.
            let proto = be16(data, 14).ok_or(Skip::NotIp)?;
            ether_packet(EtherType(proto), &data[16..])
        }
        LINKTYPE_LINUX_SLL2 => {
            // 20-byte header that starts with the protocol. etherparse does not parse SLL2.
            let proto = be16(data, 0).ok_or(Skip::NotIp)?;
            let payload = data.get(20..).ok_or(Skip::NotIp)?;
            ether_packet(EtherType(proto), payload)
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            // A 4-byte address family in the capturing host's byte order (NULL) or network order
            // (LOOP), with values that differ between systems. The IP version nibble is reliable.
            let payload = data.get(4..).ok_or(Skip::NotIp)?;
            LaxSlicedPacket::from_ip(payload).map_err(|_| Skip::NotIp)?
        }
        LINKTYPE_RAW | LINKTYPE_RAW_BSD_12 | LINKTYPE_RAW_BSD_14 | LINKTYPE_IPV4
        | LINKTYPE_IPV6 => LaxSlicedPacket::from_ip(data).map_err(|_| Skip::NotIp)?,
        other => return Err(Skip::UnsupportedLinkType(other)),
    })
}

/// The TCP segment of a sliced packet, or of the packet its tunnel carries (`tunnels` more may
/// be opened); with a defragmenter (and the packet's time), of the datagram a fragment
/// completes.
fn sliced_segment<'a>(
    sliced: LaxSlicedPacket<'a>,
    tunnels: usize,
    defrag: Option<(&'a mut Defragmenter, i64)>,
) -> Result<TcpSegment<'a>, Skip> {
    fn inner(packet: Option<LaxSlicedPacket<'_>>, tunnels: usize) -> Option<LaxSlicedPacket<'_>> {
        packet.filter(|_| tunnels > 0)
    }
    if sliced.net.is_none() {
        // IP under MPLS labels, which etherparse does not read.
        let ether = match (sliced.link_exts.last(), &sliced.link) {
            (Some(ext), _) => ext.payload().map(|p| (p.ether_type, p.payload)),
            (None, Some(link)) => link.ether_payload().map(|p| (p.ether_type, p.payload)),
            (None, None) => None,
        };
        if let Some(p) = inner(ether.and_then(|(t, payload)| mpls(t, payload)), tunnels) {
            return sliced_segment(p, tunnels - 1, defrag);
        }
    }
    let (src_ip, dst_ip, fragmented) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                v4.payload().fragmented,
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                v6.payload().fragmented,
            )
        }
        Some(LaxNetSlice::Arp(_)) | None => return Err(Skip::NotIp),
    };
    if fragmented {
        let (Some((defrag, ts_ns)), Some(fragment)) = (defrag, fragment(&sliced)) else {
            return Err(Skip::IpFragment);
        };
        return match defrag.add(fragment, ts_ns) {
            Reassembly::Held => Err(Skip::IpFragmentHeld),
            Reassembly::Dropped => Err(Skip::IpFragment),
            // Fragments inside the datagram are not reassembled again.
            Reassembly::Done(ip) => {
                let whole = LaxSlicedPacket::from_ip(ip).map_err(|_| Skip::Malformed)?;
                sliced_segment(whole, tunnels, None)
            }
        };
    }
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            // The slice's header was checked when the packet was sliced.
            let header =
                TcpHeaderSlice::from_slice(tcp.header_slice()).map_err(|_| Skip::Malformed)?;
            Ok(tcp_segment(src_ip, dst_ip, &header, tcp.payload()))
        }
        Some(TransportSlice::Udp(udp)) => match inner(udp_tunnel(udp), tunnels) {
            Some(p) => sliced_segment(p, tunnels - 1, defrag),
            None => Err(Skip::NotTcp),
        },
        Some(_) => Err(Skip::NotTcp),
        None => {
            let payload = match &sliced.net {
                Some(LaxNetSlice::Ipv4(v4)) => v4.payload(),
                Some(LaxNetSlice::Ipv6(v6)) => v6.payload(),
                _ => return Err(Skip::NotIp),
            };
            if payload.ip_number == IpNumber::TCP {
                return Err(Skip::Malformed);
            }
            match inner(ip_tunnel(payload.ip_number, payload.payload), tunnels) {
                Some(p) => sliced_segment(p, tunnels - 1, defrag),
                None => Err(Skip::NotTcp),
            }
        }
    }
}

/// The fragment a fragmented IP packet is: IPv4, or IPv6 whose only extension header is the
/// fragment header (the common case; others are left alone).
fn fragment<'b>(sliced: &'b LaxSlicedPacket<'_>) -> Option<Fragment<'b>> {
    match sliced.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            let header = h.slice();
            Some(Fragment {
                key: FragmentKey {
                    src: IpAddr::V4(h.source_addr()),
                    dst: IpAddr::V4(h.destination_addr()),
                    id: u32::from(h.identification()),
                    protocol: h.protocol().0,
                },
                header,
                offset: usize::from(h.fragments_offset().value()) * 8,
                more: h.more_fragments(),
                data: v4.payload().payload,
            })
        }
        LaxNetSlice::Ipv6(v6) => {
            const FRAGMENT_HEADER: u8 = 44;
            let exts = v6.extensions().slice();
            let h = v6.header();
            if h.next_header().0 != FRAGMENT_HEADER || exts.len() != 8 {
                return None;
            }
            let field = u16::from_be_bytes([exts[2], exts[3]]);
            Some(Fragment {
                key: FragmentKey {
                    src: IpAddr::V6(h.source_addr()),
                    dst: IpAddr::V6(h.destination_addr()),
                    id: u32::from_be_bytes([exts[4], exts[5], exts[6], exts[7]]),
                    protocol: exts[0],
                },
                header: h.slice(),
                offset: usize::from(field >> 3) * 8,
                more: field & 1 == 1,
                data: v6.payload().payload,
            })
        }
        LaxNetSlice::Arp(_) => None,
    }
}

const ETHER_TRANSPARENT_BRIDGING: u16 = 0x6558;
const ETHER_MPLS: u16 = 0x8847;
const ETHER_MPLS_MULTICAST: u16 = 0x8848;
const ETHER_ERSPAN_2: u16 = 0x88be;
const ETHER_ERSPAN_3: u16 = 0x22eb;
/// UDP ports of VXLAN (IANA's, and the Linux kernel's default that Flannel and Cilium use)
/// and of Geneve.
const VXLAN_PORTS: [u16; 2] = [4789, 8472];
const GENEVE_PORT: u16 = 6081;

/// What an EtherType's payload holds, IP under MPLS labels included.
fn ether_packet(ether_type: EtherType, payload: &[u8]) -> LaxSlicedPacket<'_> {
    mpls(ether_type, payload)
        .unwrap_or_else(|| LaxSlicedPacket::from_ether_type(ether_type, payload))
}

/// The IP packet under an MPLS label stack, told apart by its version nibble as Wireshark
/// guesses it (the labels do not say what they carry).
fn mpls(ether_type: EtherType, payload: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    if ether_type.0 != ETHER_MPLS && ether_type.0 != ETHER_MPLS_MULTICAST {
        return None;
    }
    below_labels(payload)
}

fn below_labels(payload: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    // Each label is 4 bytes; the bottom of the stack has bit 0 of its third byte set.
    let mut at = 0;
    loop {
        let bottom = payload.get(at + 2)? & 1 == 1;
        at += 4;
        if bottom {
            break;
        }
    }
    let ip = payload.get(at..)?;
    match ip.first()? >> 4 {
        4 => Some(LaxSlicedPacket::from_ether_type(EtherType::IPV4, ip)),
        6 => Some(LaxSlicedPacket::from_ether_type(EtherType::IPV6, ip)),
        _ => None,
    }
}

/// The packet a UDP datagram carries in VXLAN or Geneve, by its destination port as Wireshark
/// decodes them.
fn udp_tunnel<'a>(udp: &UdpSlice<'a>) -> Option<LaxSlicedPacket<'a>> {
    let p = udp.payload();
    match udp.destination_port() {
        port if VXLAN_PORTS.contains(&port) => {
            // Flags (the I bit says the network identifier is valid), 3 reserved bytes, the
            // identifier and a reserved byte; Ethernet follows.
            if p.first()? & 0x08 == 0 {
                return None;
            }
            LaxSlicedPacket::from_ethernet(p.get(8..)?).ok()
        }
        GENEVE_PORT => {
            // Version (0) and options length in 4-byte words, flags, the protocol carried,
            // the identifier; then the options.
            let first = *p.first()?;
            if first >> 6 != 0 {
                return None;
            }
            let inner = p.get(8 + usize::from(first & 0x3f) * 4..)?;
            ether_or_bridged(be16(p, 2)?, inner)
        }
        _ => None,
    }
}

/// Ethernet for Transparent Ethernet Bridging, else what the EtherType names.
fn ether_or_bridged(proto: u16, inner: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    if proto == ETHER_TRANSPARENT_BRIDGING {
        LaxSlicedPacket::from_ethernet(inner).ok()
    } else {
        Some(ether_packet(EtherType(proto), inner))
    }
}

/// The packet an IP payload carries in a tunnel: GRE, IP in IP, or MPLS in IP.
fn ip_tunnel(ip_number: IpNumber, payload: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    match ip_number {
        IpNumber::GRE => gre(payload),
        IpNumber::IPV4 => Some(LaxSlicedPacket::from_ether_type(EtherType::IPV4, payload)),
        IpNumber::IPV6 => Some(LaxSlicedPacket::from_ether_type(EtherType::IPV6, payload)),
        IpNumber::MPLS_IN_IP => below_labels(payload),
        _ => None,
    }
}

/// GRE version 0 (RFC 2784 with RFC 2890's key and sequence number); version 1, PPTP's, carries
/// PPP and is left alone.
fn gre(p: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    let flags = be16(p, 0)?;
    let proto = be16(p, 2)?;
    if flags & 0x0007 != 0 {
        return None;
    }
    let has = |bit: u16| if flags & bit != 0 { 4 } else { 0 };
    let (checksum, key, sequence) = (has(0x8000), has(0x2000), has(0x1000));
    let inner = p.get(4 + checksum + key + sequence..)?;
    match proto {
        // ERSPAN type II has an 8-byte header when GRE numbers its packets (type I has none
        // and does not); type III has 12 bytes, and 8 more when its O bit is set.
        ETHER_ERSPAN_2 if sequence == 0 => LaxSlicedPacket::from_ethernet(inner).ok(),
        ETHER_ERSPAN_2 => LaxSlicedPacket::from_ethernet(inner.get(8..)?).ok(),
        ETHER_ERSPAN_3 => {
            let platform = if inner.get(11)? & 1 == 1 { 8 } else { 0 };
            LaxSlicedPacket::from_ethernet(inner.get(12 + platform..)?).ok()
        }
        proto => ether_or_bridged(proto, inner),
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    /// The fast path, where it answers, says what the lax parse says.
    fn agree(link: LinkType, data: &[u8]) -> bool {
        let fast = (link.0 == LINKTYPE_ETHERNET)
            .then(|| ethernet_ipv4_tcp(data))
            .flatten();
        let lax = format!("{:?}", decode_lax(link, data));
        fast.is_none_or(|f| format!("{:?}", Ok::<_, Skip>(f)) == lax)
            && format!("{:?}", decode(link, data)) == lax
    }

    /// Every packet of the shipped and the public captures, real traffic from several stacks.
    #[test]
    fn fast_path_agrees_with_lax_parse_on_real_captures() {
        let mut files: Vec<_> = ["testdata", "../shared/captures/public"]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
            .collect();
        files.sort();
        let mut fast = 0;
        for path in &files {
            let mut reader = crate::capture::CaptureReader::open(path.to_str().unwrap()).unwrap();
            let _ = reader.for_each_packet(|p| {
                assert!(
                    agree(p.link, p.data),
                    "{} packet {}",
                    path.display(),
                    p.index
                );
                fast += usize::from(
                    p.link.0 == LINKTYPE_ETHERNET && ethernet_ipv4_tcp(p.data).is_some(),
                );
                true
            });
        }
        assert!(fast > 500, "only {fast} packets took the fast path");
    }

    fn ethernet_tcp(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 50051, 1000, 65535)
            .ack(7)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    proptest! {
        /// Damaged headers, cut frames and trailing padding: both paths still agree.
        #[test]
        fn fast_path_agrees_with_lax_parse_on_damaged_frames(
            payload in proptest::collection::vec(any::<u8>(), 0..40),
            flips in proptest::collection::vec((0usize..80, any::<u8>()), 0..4),
            cut in 0usize..100,
            pad in 0usize..20,
        ) {
            let mut frame = ethernet_tcp(&payload);
            for (at, v) in flips {
                if let Some(b) = frame.get_mut(at) {
                    *b = v;
                }
            }
            frame.extend(std::iter::repeat_n(0, pad));
            frame.truncate(frame.len().saturating_sub(cut % 30));
            prop_assert!(agree(LinkType(LINKTYPE_ETHERNET), &frame));
        }
    }

    fn tcp_over_ipv4(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 50051, 1000, 65535)
            .ack(7)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    #[test]
    fn sll2_header_is_skipped() {
        let ip = tcp_over_ipv4(b"hello");
        let mut frame = vec![0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6];
        frame.extend_from_slice(&[0; 8]);
        frame.extend_from_slice(&ip);
        let seg = decode(LinkType(LINKTYPE_LINUX_SLL2), &frame).unwrap();
        assert_eq!(seg.src.to_string(), "10.0.0.1:40000");
        assert_eq!(seg.dst.port(), 50051);
        assert_eq!(seg.payload, b"hello");
        assert_eq!(seg.seq, 1000);
    }

    #[test]
    fn bsd_null_either_byte_order() {
        let ip = tcp_over_ipv4(b"x");
        for family in [[2, 0, 0, 0], [0, 0, 0, 2]] {
            let mut frame = family.to_vec();
            frame.extend_from_slice(&ip);
            assert!(decode(LinkType(LINKTYPE_NULL), &frame).is_ok());
            assert!(decode(LinkType(LINKTYPE_LOOP), &frame).is_ok());
        }
    }

    #[test]
    fn qinq_ethernet() {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .double_vlan(
                etherparse::VlanId::try_new(10).unwrap(),
                etherparse::VlanId::try_new(20).unwrap(),
            )
            .ipv6([1; 16], [2; 16], 64)
            .tcp(1, 2, 3, 4)
            .write(&mut out, b"data")
            .unwrap();
        let seg = decode(LinkType(LINKTYPE_ETHERNET), &out).unwrap();
        assert_eq!(seg.payload, b"data");
        assert!(seg.src.is_ipv6());
    }

    #[test]
    fn snaplen_cut_keeps_captured_bytes() {
        let ip = tcp_over_ipv4(&[7u8; 100]);
        let cut = &ip[..ip.len() - 60];
        let seg = decode(LinkType(LINKTYPE_RAW), cut).unwrap();
        assert_eq!(seg.payload.len(), 40);
    }

    #[test]
    fn garbage_is_skipped_not_panicking() {
        for len in 0..64 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            for lt in [0, 1, 101, 108, 113, 228, 229, 276, 9999] {
                let _ = decode(LinkType(lt), &data);
            }
        }
    }

    /// IP in IP, `layers` deep, around a TCP segment.
    fn nested_ipip(layers: usize) -> Vec<u8> {
        let mut ip = tcp_over_ipv4(b"inner");
        for _ in 0..layers {
            let mut out = Vec::new();
            PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
                .write(&mut out, IpNumber::IPV4, &ip)
                .unwrap();
            ip = out;
        }
        ip
    }

    /// Tunnels are opened to a bounded depth: a crafted packet of many layers costs no more.
    #[test]
    fn tunnels_nest_only_so_deep() {
        for layers in 0..=MAX_TUNNELS {
            let packet = nested_ipip(layers);
            let seg = decode(LinkType(LINKTYPE_RAW), &packet).unwrap();
            assert_eq!(seg.payload, b"inner");
            assert_eq!(seg.src.to_string(), "10.0.0.1:40000");
        }
        let deep = nested_ipip(MAX_TUNNELS + 1);
        assert_eq!(
            decode(LinkType(LINKTYPE_RAW), &deep).unwrap_err(),
            Skip::NotTcp
        );
    }

    /// GRE version 1 (PPTP's) carries PPP, not what its protocol field names; reserved bits
    /// make it so too.
    #[test]
    fn gre_version_1_is_not_opened() {
        let ip = tcp_over_ipv4(b"x");
        for (flags, opened) in [
            ([0x00, 0x00], true),
            ([0x00, 0x01], false),
            ([0x30, 0x01], false),
        ] {
            let mut gre_packet = [&flags[..], &[0x08, 0x00]].concat();
            if flags[0] & 0x10 != 0 {
                gre_packet.extend_from_slice(&[0; 4]);
            }
            gre_packet.extend_from_slice(&ip);
            let mut out = Vec::new();
            PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
                .write(&mut out, IpNumber::GRE, &gre_packet)
                .unwrap();
            assert_eq!(
                decode(LinkType(LINKTYPE_RAW), &out).is_ok(),
                opened,
                "{flags:?}"
            );
        }
    }

    proptest! {
        /// Damaged or cut tunnel headers (VXLAN, Geneve, GRE, MPLS) are skipped, never a panic.
        #[test]
        fn damaged_tunnels_do_not_panic(
            kind in 0usize..4,
            flips in proptest::collection::vec((0usize..120, any::<u8>()), 0..6),
            cut in 0usize..140,
        ) {
            let ethernet = ethernet_tcp(b"payload");
            let ip = &ethernet[14..];
            let mut out = Vec::new();
            let b = PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64);
            match kind {
                0 => b.udp(1, 4789).write(&mut out, &[&[8, 0, 0, 0, 0, 0, 1, 0][..], &ethernet].concat()),
                1 => b.udp(1, 6081).write(&mut out, &[&[1, 0, 0x65, 0x58, 0, 0, 1, 0, 0, 0, 0, 0][..], &ethernet].concat()),
                2 => b.write(&mut out, IpNumber::GRE, &[&[0xb0, 0, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], ip].concat()),
                _ => b.write(&mut out, IpNumber::MPLS_IN_IP, &[&[0, 0, 0, 0, 0, 0, 1, 0][..], ip].concat()),
            }
            .unwrap();
            prop_assert!(decode(LinkType(LINKTYPE_ETHERNET), &out).is_ok());
            for (at, byte) in flips {
                if let Some(b) = out.get_mut(at) {
                    *b ^= byte;
                }
            }
            out.truncate(cut);
            let _ = decode(LinkType(LINKTYPE_ETHERNET), &out);
        }
    }
}
