//! Link, IP and TCP decoding of one captured packet, down to a TCP segment.
//!
//! etherparse does the IP and TCP work (lax parsing, so snaplen-cut packets still yield what they
//! hold); the link layers it does not know (SLL2, BSD loopback, raw IP) are peeled off here.

use std::net::{IpAddr, SocketAddr};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TcpHeaderSlice, TransportSlice};

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
    /// An IPv4 or IPv6 fragment. Reassembly of IP fragments is not implemented: TCP stacks avoid
    /// fragmentation (PMTU discovery), so such traffic is reported rather than decoded.
    IpFragment,
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
        payload,
    }
}

/// Any link layer this module knows, through etherparse's lax parsing.
fn decode_lax(link: LinkType, data: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    let sliced = match link.0 {
        LINKTYPE_ETHERNET => LaxSlicedPacket::from_ethernet(data).map_err(|_| Skip::NotIp)?,
        LINKTYPE_LINUX_SLL => {
            // 16-byte header; the protocol (an EtherType for IP) is its last two bytes.
            let proto = be16(data, 14).ok_or(Skip::NotIp)?;
            LaxSlicedPacket::from_ether_type(EtherType(proto), &data[16..])
        }
        LINKTYPE_LINUX_SLL2 => {
            // 20-byte header that starts with the protocol. etherparse does not parse SLL2.
            let proto = be16(data, 0).ok_or(Skip::NotIp)?;
            let payload = data.get(20..).ok_or(Skip::NotIp)?;
            LaxSlicedPacket::from_ether_type(EtherType(proto), payload)
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
    };
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
        return Err(Skip::IpFragment);
    }
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            // The slice's header was checked when the packet was sliced.
            let header =
                TcpHeaderSlice::from_slice(tcp.header_slice()).map_err(|_| Skip::Malformed)?;
            Ok(tcp_segment(src_ip, dst_ip, &header, tcp.payload()))
        }
        Some(_) => Err(Skip::NotTcp),
        None => {
            let ip_number = match &sliced.net {
                Some(LaxNetSlice::Ipv4(v4)) => v4.payload().ip_number,
                Some(LaxNetSlice::Ipv6(v6)) => v6.payload().ip_number,
                _ => return Err(Skip::NotIp),
            };
            if ip_number == etherparse::IpNumber::TCP {
                Err(Skip::Malformed)
            } else {
                Err(Skip::NotTcp)
            }
        }
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
}
