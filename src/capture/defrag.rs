//! IP fragment reassembly, as Wireshark does it by default: a datagram's fragments are held until
//! they cover it, then the whole datagram is decoded as if it had come in one packet (the last
//! one's). TCP stacks avoid fragmentation, but a tunnel (VXLAN, GRE) that adds its headers to a
//! full-size packet on a link of the same MTU has its outer packets fragmented by the host.
//!
//! Memory is bounded: datagrams up to 64 KiB, at most [`MAX_PENDING`] of them and
//! [`MAX_BYTES`] in all held, the oldest let go first; fragments older than [`TIMEOUT_NS`] of
//! capture time are let go too. Overlapping fragments: the later bytes win.

use std::collections::HashMap;
use std::net::IpAddr;

/// What identifies a datagram's fragments: its addresses, identification and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub protocol: u8,
}

/// One fragment, as [`crate::capture::link`] finds it.
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    pub key: FragmentKey,
    /// The IPv4 header, or IPv6's fixed header, the reassembled datagram starts with.
    pub header: &'a [u8],
    /// Where the data goes in the datagram's payload, in bytes.
    pub offset: usize,
    /// More fragments follow this one.
    pub more: bool,
    pub data: &'a [u8],
}

/// What became of a fragment.
#[derive(Debug)]
pub enum Reassembly<'a> {
    /// Held until the rest comes.
    Held,
    /// Not held: the datagram would be over 64 KiB, or its header is not one this reassembles.
    Dropped,
    /// The datagram is whole: its IP packet, as if it had come in one piece.
    Done(&'a [u8]),
}

/// The largest IP payload: the 16-bit length fields.
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams being reassembled at once.
pub const MAX_PENDING: usize = 1024;
/// Bytes held in all.
pub const MAX_BYTES: usize = 16 << 20;
/// Fragments of a datagram are let go after this much capture time (as Linux does after 30 s).
pub const TIMEOUT_NS: i64 = 30_000_000_000;

#[derive(Debug)]
struct Datagram {
    /// The header of the fragment at offset 0, once it came.
    header: Option<Vec<u8>>,
    data: Vec<u8>,
    /// Byte ranges of `data` received, sorted and merged.
    have: Vec<(usize, usize)>,
    /// The payload's length, once the last fragment came.
    total: Option<usize>,
    first_ts: i64,
}

impl Datagram {
    fn whole(&self) -> bool {
        self.header.is_some() && self.total.is_some_and(|t| self.have == [(0, t)])
    }
}

type Fast = foldhash::fast::RandomState;

/// Datagrams being reassembled (see the module's documentation).
#[derive(Debug, Default)]
pub struct Defragmenter {
    pending: HashMap<FragmentKey, Datagram, Fast>,
    bytes: usize,
    /// The last datagram reassembled.
    done: Vec<u8>,
    /// Capture time of the next check for fragments timed out.
    next_sweep: i64,
    /// The datagram of the last fragment taken in.
    last: Option<FragmentKey>,
}

impl Defragmenter {
    /// Datagrams held now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The datagram the last fragment taken in belongs to.
    pub fn last_key(&self) -> Option<FragmentKey> {
        self.last
    }

    /// Takes in a fragment seen at `ts_ns`.
    pub fn add(&mut self, f: Fragment<'_>, ts_ns: i64) -> Reassembly<'_> {
        self.last = Some(f.key);
        let end = f.offset.saturating_add(f.data.len());
        if end > MAX_DATAGRAM || f.header.len() < 20 {
            self.remove(&f.key);
            return Reassembly::Dropped;
        }
        self.sweep(ts_ns);
        if !self.pending.contains_key(&f.key) {
            while self.pending.len() >= MAX_PENDING
                || (self.bytes + end > MAX_BYTES && !self.pending.is_empty())
            {
                self.drop_oldest();
            }
        }
        let before;
        let d = {
            let d = self.pending.entry(f.key).or_insert_with(|| Datagram {
                header: None,
                data: Vec::new(),
                have: Vec::new(),
                total: None,
                first_ts: ts_ns,
            });
            before = d.data.len();
            if d.data.len() < end {
                d.data.resize(end, 0);
            }
            d.data[f.offset..end].copy_from_slice(f.data);
            add_range(&mut d.have, f.offset, end);
            if f.offset == 0 {
                d.header = Some(f.header.to_vec());
            }
            if !f.more {
                d.total = Some(end);
            }
            d
        };
        self.bytes += d.data.len() - before;
        // Bytes past the last fragment's end: the fragments do not agree on the datagram.
        if d.total
            .is_some_and(|t| d.have.last().is_some_and(|&(_, e)| e > t))
        {
            self.remove(&f.key);
            return Reassembly::Dropped;
        }
        if !d.whole() {
            return Reassembly::Held;
        }
        let Some(d) = self.remove(&f.key) else {
            return Reassembly::Dropped;
        };
        let (Some(mut header), Some(total)) = (d.header, d.total) else {
            return Reassembly::Dropped;
        };
        let len = total as u16;
        if header[0] >> 4 == 4 {
            // Total length; no more fragments, offset 0 (the checksum is not checked).
            let ihl = header.len() as u16;
            header[2..4].copy_from_slice(&(ihl + len).to_be_bytes());
            header[6..8].copy_from_slice(&[0, 0]);
        } else {
            // IPv6: the payload's length, and the protocol the fragment header named.
            header[4..6].copy_from_slice(&len.to_be_bytes());
            header[6] = f.key.protocol;
        }
        self.done.clear();
        self.done.extend_from_slice(&header);
        self.done.extend_from_slice(&d.data[..total]);
        Reassembly::Done(&self.done)
    }

    fn remove(&mut self, key: &FragmentKey) -> Option<Datagram> {
        let d = self.pending.remove(key)?;
        self.bytes -= d.data.len();
        Some(d)
    }

    fn drop_oldest(&mut self) {
        let oldest = self
            .pending
            .iter()
            .min_by_key(|(_, d)| d.first_ts)
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            self.remove(&k);
        }
    }

    /// Lets go of datagrams whose first fragment is older than the timeout, once a second of
    /// capture time.
    fn sweep(&mut self, ts_ns: i64) {
        if ts_ns < self.next_sweep {
            return;
        }
        self.next_sweep = ts_ns.saturating_add(1_000_000_000);
        let old: Vec<FragmentKey> = self
            .pending
            .iter()
            .filter(|(_, d)| ts_ns.saturating_sub(d.first_ts) > TIMEOUT_NS)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            self.remove(&k);
        }
    }
}

/// Adds `start..end` to sorted, merged ranges.
fn add_range(have: &mut Vec<(usize, usize)>, start: usize, end: usize) {
    if start >= end {
        return;
    }
    let (mut start, mut end) = (start, end);
    have.retain(|&(s, e)| {
        let touches = s <= end && start <= e;
        if touches {
            start = start.min(s);
            end = end.max(e);
        }
        !touches
    });
    let at = have.partition_point(|&(s, _)| s < start);
    have.insert(at, (start, end));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragmentKey {
        FragmentKey {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            id,
            protocol: 6,
        }
    }

    fn header() -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 7, 0x20, 0, 64, 6, 0, 0];
        h.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        h
    }

    fn frag<'a>(h: &'a [u8], id: u32, offset: usize, more: bool, data: &'a [u8]) -> Fragment<'a> {
        Fragment {
            key: key(id),
            header: h,
            offset,
            more,
            data,
        }
    }

    #[test]
    fn fragments_in_any_order_make_the_datagram() {
        let h = header();
        let payload: Vec<u8> = (0..100u8).collect();
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
            let mut d = Defragmenter::default();
            let parts = [(0, true), (40, true), (80, false)];
            let mut done = None;
            for (n, &i) in order.iter().enumerate() {
                let (at, more) = parts[i];
                let end = (at + 40).min(100);
                match d.add(frag(&h, 1, at, more, &payload[at..end]), 0) {
                    Reassembly::Done(p) => {
                        assert_eq!(n, 2);
                        done = Some(p.to_vec());
                    }
                    Reassembly::Held => assert!(n < 2),
                    Reassembly::Dropped => panic!("dropped"),
                }
            }
            let p = done.unwrap();
            assert_eq!(&p[20..], &payload[..]);
            assert_eq!(u16::from_be_bytes([p[2], p[3]]), 120);
            assert_eq!(&p[6..8], &[0, 0]);
            assert_eq!(d.pending(), 0);
            assert_eq!(d.bytes, 0);
        }
    }

    /// Bounds: oversized datagrams are refused, and a flood of first fragments that never
    /// complete holds at most the limit.
    #[test]
    fn memory_stays_bounded() {
        let h = header();
        let mut d = Defragmenter::default();
        let big = vec![0u8; 1000];
        assert!(matches!(
            d.add(frag(&h, 1, 65_000, true, &big), 0),
            Reassembly::Dropped
        ));
        for id in 0..5000 {
            let r = d.add(frag(&h, id, 0, true, &big[..600]), i64::from(id));
            assert!(matches!(r, Reassembly::Held));
        }
        assert_eq!(d.pending(), MAX_PENDING);
        assert!(d.bytes <= MAX_BYTES);
        // The oldest went first: the newest are still there.
        assert!(d.pending.contains_key(&key(4999)));
        assert!(!d.pending.contains_key(&key(0)));
        // Time passes: they are let go.
        d.add(frag(&h, 9999, 0, true, &big[..8]), TIMEOUT_NS + 10_000);
        assert_eq!(d.pending(), 1);
    }

    #[test]
    fn data_past_the_last_fragment_drops_the_datagram() {
        let h = header();
        let mut d = Defragmenter::default();
        assert!(matches!(
            d.add(frag(&h, 1, 80, true, &[1; 40]), 0),
            Reassembly::Held
        ));
        assert!(matches!(
            d.add(frag(&h, 1, 0, false, &[1; 40]), 0),
            Reassembly::Dropped
        ));
        assert_eq!(d.pending(), 0);
        assert_eq!(d.bytes, 0);
    }

    #[test]
    fn ranges_merge() {
        let mut have = Vec::new();
        for (s, e) in [(10, 20), (30, 40), (0, 5), (5, 10), (20, 30), (35, 50)] {
            add_range(&mut have, s, e);
        }
        assert_eq!(have, [(0, 50)]);
        add_range(&mut have, 60, 70);
        add_range(&mut have, 55, 58);
        assert_eq!(have, [(0, 50), (55, 58), (60, 70)]);
    }

    proptest::proptest! {
        /// A datagram cut anyhow, its pieces sent in any order and some twice, comes out whole
        /// once, with the bytes it held given back; stray fragments never break the count.
        #[test]
        fn any_cut_and_order_reassembles(
            len in 1usize..400,
            cuts in proptest::collection::vec(1usize..50, 1..12),
            order in proptest::collection::vec(proptest::prelude::any::<u16>(), 12),
            stray in proptest::collection::vec((0usize..70_000, 0usize..200, proptest::prelude::any::<bool>()), 0..8),
        ) {
            let h = header();
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            // Pieces of multiples of 8 bytes, as fragment offsets are.
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= len {
                    break;
                }
                let end = (at + c * 8).min(len);
                pieces.push((at, end));
                at = end;
            }
            let mut sent: Vec<(usize, usize)> = pieces.clone();
            sent.push(pieces[0]);
            let mut keyed: Vec<(u16, (usize, usize))> =
                sent.into_iter().enumerate().map(|(i, p)| (order[i % order.len()], p)).collect();
            keyed.sort_by_key(|(k, _)| *k);
            let mut d = Defragmenter::default();
            for (off, n, more) in stray {
                let data = vec![1u8; n];
                let _ = d.add(frag(&h, 2, off & !7, more, &data), 0);
                let held: usize = d.pending.values().map(|g| g.data.len()).sum();
                proptest::prop_assert_eq!(held, d.bytes);
            }
            let mut done = 0;
            for (_, (s, e)) in keyed {
                let more = e < len;
                if let Reassembly::Done(p) = d.add(frag(&h, 1, s, more, &payload[s..e]), 0) {
                    proptest::prop_assert_eq!(&p[20..], &payload[..]);
                    done += 1;
                }
            }
            proptest::prop_assert!(done >= 1);
            let held: usize = d.pending.values().map(|g| g.data.len()).sum();
            proptest::prop_assert_eq!(held, d.bytes);
        }
    }
}
