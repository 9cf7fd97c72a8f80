//! Reassembly of one direction of a TCP connection into an in-order byte stream.
//!
//! Sequence numbers are unwrapped into 64-bit stream offsets relative to the last delivered byte,
//! so wrap-around at 2^32 needs no special case. Out-of-order data waits in a bounded buffer; when
//! the bound is reached, or the peer acknowledges bytes we never saw (the capture lost them), the
//! hole becomes an explicit gap and delivery continues after it.

use std::collections::BTreeMap;

/// What a buffered segment costs besides its bytes (its map entry and allocation): one-byte
/// segments must not hold forty times the limit.
const SEGMENT_COST: usize = 64;

/// What the assembler hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes are missing from the capture.
    Gap(u64),
    /// The sender closed its side (FIN reached in order).
    Fin,
}

/// Statistics of one direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerStats {
    pub delivered: u64,
    /// Segments with bytes that start below the highest byte seen before them: sent again, or
    /// overtaken (tshark's retransmission, fast retransmission, spurious retransmission and
    /// out-of-order flags together).
    pub retransmitted: u64,
    /// Segments that came ahead of a hole, while bytes before them were still missing.
    pub out_of_order: u64,
    /// Segments that started past the highest byte seen: bytes before them had not come (lost
    /// before the capture point, or reordered), as tshark's "previous segment not captured".
    pub holes: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
}

#[derive(Debug)]
pub struct Assembler {
    /// Stream offset of the next byte to deliver, `None` before the first segment.
    next: Option<u64>,
    /// Stream offset just past the highest byte seen, in order or not.
    highest: Option<u64>,
    pending: BTreeMap<u64, Vec<u8>>,
    /// What `pending` holds, each segment counted with [`SEGMENT_COST`].
    pending_bytes: usize,
    max_pending: usize,
    fin_at: Option<u64>,
    fin_delivered: bool,
    stats: AssemblerStats,
}

/// Offsets start here so that sequence numbers a little before the first one seen (a late
/// retransmission) unwrap without underflow.
const ORIGIN: u64 = 1 << 40;

impl Assembler {
    /// Gives back the node an emptied map of out-of-order segments keeps.
    pub fn compact(&mut self) {
        if self.pending.is_empty() {
            self.pending = BTreeMap::new();
        }
    }

    pub fn new(max_pending: usize) -> Self {
        Assembler {
            next: None,
            highest: None,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            max_pending,
            fin_at: None,
            fin_delivered: false,
            stats: AssemblerStats::default(),
        }
    }

    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    pub fn is_started(&self) -> bool {
        self.next.is_some()
    }

    pub fn fin_delivered(&self) -> bool {
        self.fin_delivered
    }

    /// The 64-bit offset nearest to `next` whose low 32 bits are `seq`.
    fn unwrap(&self, seq: u32) -> u64 {
        let next = self.next.unwrap_or(ORIGIN + seq as u64);
        let delta = seq.wrapping_sub(next as u32) as i32 as i64;
        (next as i64 + delta) as u64
    }

    /// Feeds one segment. `seq` is the segment's sequence number (of the SYN when `syn`).
    // Called from one place per flow table; left out of line, it cost the summary 1%.
    #[inline]
    pub fn segment(
        &mut self,
        seq: u32,
        syn: bool,
        fin: bool,
        payload: &[u8],
        out: &mut impl FnMut(Chunk<'_>),
    ) {
        let data_seq = if syn { seq.wrapping_add(1) } else { seq };
        if self.next.is_none() {
            // First segment of this direction: the stream starts here (after the SYN, or wherever
            // a connection first seen mid-way happens to be).
            self.next = Some(ORIGIN + data_seq as u64);
        }
        let start = self.unwrap(data_seq);
        let end = start + payload.len() as u64;
        if fin && self.fin_at.is_none() {
            self.fin_at = Some(end);
        }
        let next = self.next.unwrap_or(start);
        let highest = self.highest.unwrap_or(start);
        // A keep-alive (one byte, one before the highest) is not data sent again.
        if !payload.is_empty() && start < highest && !(payload.len() == 1 && start + 1 == highest) {
            self.stats.retransmitted += 1;
        }
        if start > highest {
            self.stats.holes += 1;
        }
        // A FIN takes a sequence number: the ACKs after it are one past its data.
        self.highest = Some(highest.max(end + u64::from(fin)));
        if start > next {
            self.stats.out_of_order += 1;
            self.insert(start, payload);
            while self.pending_bytes > self.max_pending {
                self.skip_to_first_pending(out);
                self.drain(out);
            }
        } else if end > next {
            let skip = (next - start) as usize;
            self.deliver(&payload[skip..], out);
            self.drain(out);
        }
        self.check_fin(out);
    }

    /// A segment without data or flags that take a sequence number (a bare ACK): past the
    /// highest byte seen, it shows a hole as a segment with data would.
    pub fn bare(&mut self, seq: u32) {
        let start = self.unwrap(seq);
        if self.highest.is_some_and(|h| start > h) {
            self.stats.holes += 1;
            self.highest = Some(start);
        }
    }

    /// The peer acknowledged up to `ack`: anything before that which we have not seen was lost
    /// by the capture, not by the network, so waiting for it is pointless.
    pub fn peer_acked(&mut self, ack: u32, out: &mut impl FnMut(Chunk<'_>)) {
        let (Some(next), Some((&first, _))) = (self.next, self.pending.iter().next()) else {
            return;
        };
        let acked = self.unwrap(ack);
        if acked <= next {
            return;
        }
        let upto = acked.min(first);
        self.gap(upto - next, out);
        self.drain(out);
        self.check_fin(out);
    }

    /// End of input or expiry: whatever is buffered is delivered with gaps for the holes.
    pub fn flush(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        while !self.pending.is_empty() {
            self.skip_to_first_pending(out);
            self.drain(out);
        }
        self.check_fin(out);
    }

    fn deliver(&mut self, data: &[u8], out: &mut impl FnMut(Chunk<'_>)) {
        if data.is_empty() {
            return;
        }
        if let Some(next) = self.next.as_mut() {
            *next += data.len() as u64;
        }
        self.stats.delivered += data.len() as u64;
        out(Chunk::Data(data));
    }

    fn gap(&mut self, len: u64, out: &mut impl FnMut(Chunk<'_>)) {
        if len == 0 {
            return;
        }
        if let Some(next) = self.next.as_mut() {
            *next += len;
        }
        self.stats.gaps += 1;
        self.stats.gap_bytes += len;
        out(Chunk::Gap(len));
    }

    fn skip_to_first_pending(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        if let (Some(next), Some((&first, _))) = (self.next, self.pending.iter().next()) {
            if first > next {
                self.gap(first - next, out);
            }
        }
    }

    /// Delivers buffered segments that have become contiguous.
    fn drain(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        while let Some(next) = self.next {
            let Some(entry) = self.pending.first_entry() else {
                break;
            };
            let start = *entry.key();
            if start > next {
                break;
            }
            let data = entry.remove();
            self.pending_bytes -= data.len() + SEGMENT_COST;
            let end = start + data.len() as u64;
            if end > next {
                let skip = (next - start) as usize;
                self.deliver(&data[skip..], out);
            }
        }
    }

    fn check_fin(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        if !self.fin_delivered && self.fin_at.is_some() && self.fin_at == self.next {
            self.fin_delivered = true;
            out(Chunk::Fin);
        }
    }

    /// Buffers `data` at `start`, keeping bytes already buffered where segments overlap (the
    /// first copy wins, as most stacks do).
    fn insert(&mut self, mut start: u64, mut data: &[u8]) {
        if let Some((&ps, pv)) = self.pending.range(..=start).next_back() {
            let pe = ps + pv.len() as u64;
            if pe > start {
                let cut = ((pe - start) as usize).min(data.len());
                data = &data[cut..];
                start += cut as u64;
            }
        }
        while !data.is_empty() {
            let next_existing = self
                .pending
                .range(start..)
                .next()
                .map(|(&k, v)| (k, v.len()));
            match next_existing {
                Some((ns, nlen)) if ns < start + data.len() as u64 => {
                    let before = (ns - start) as usize;
                    if before > 0 {
                        self.put(start, &data[..before]);
                    }
                    let skip = (before + nlen).min(data.len());
                    data = &data[skip..];
                    start += skip as u64;
                }
                _ => {
                    self.put(start, data);
                    break;
                }
            }
        }
    }

    fn put(&mut self, start: u64, data: &[u8]) {
        self.pending_bytes += data.len() + SEGMENT_COST;
        self.pending.insert(start, data.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::{any, prop_assert, prop_assert_eq};
    use proptest::sample::Index;

    #[derive(Debug, PartialEq, Eq)]
    enum Out {
        Data(Vec<u8>),
        Gap(u64),
        Fin,
    }

    struct Harness {
        a: Assembler,
        out: Vec<Out>,
    }

    impl Harness {
        fn new(max: usize) -> Self {
            Harness {
                a: Assembler::new(max),
                out: Vec::new(),
            }
        }
        fn seg(&mut self, seq: u32, syn: bool, fin: bool, data: &[u8]) {
            let out = &mut self.out;
            self.a.segment(seq, syn, fin, data, &mut |c| push(out, c));
        }
        fn ack(&mut self, ack: u32) {
            let out = &mut self.out;
            self.a.peer_acked(ack, &mut |c| push(out, c));
        }
        fn flush(&mut self) {
            let out = &mut self.out;
            self.a.flush(&mut |c| push(out, c));
        }
        fn bytes(&self) -> Vec<u8> {
            self.out
                .iter()
                .flat_map(|o| match o {
                    Out::Data(d) => d.clone(),
                    _ => vec![],
                })
                .collect()
        }
    }

    fn push(out: &mut Vec<Out>, c: Chunk<'_>) {
        match c {
            Chunk::Data(d) => out.push(Out::Data(d.to_vec())),
            Chunk::Gap(n) => out.push(Out::Gap(n)),
            Chunk::Fin => out.push(Out::Fin),
        }
    }

    #[test]
    fn in_order_after_syn() {
        let mut h = Harness::new(1 << 20);
        h.seg(100, true, false, b"");
        h.seg(101, false, false, b"abc");
        h.seg(104, false, true, b"def");
        assert_eq!(
            h.out,
            vec![
                Out::Data(b"abc".to_vec()),
                Out::Data(b"def".to_vec()),
                Out::Fin
            ]
        );
    }

    #[test]
    fn out_of_order_and_retransmission() {
        let mut h = Harness::new(1 << 20);
        h.seg(0, false, false, b"ab");
        h.seg(6, false, false, b"gh");
        h.seg(4, false, false, b"ef");
        h.seg(0, false, false, b"ab"); // retransmission
        h.seg(1, false, false, b"bcd"); // overlap with new bytes
        assert_eq!(h.bytes(), b"abcdefgh");
        assert_eq!(h.a.pending_bytes(), 0);
        // As tshark counts them: "gh" opened a hole (previous segment not captured), "ef" came
        // below it (out-of-order) and ahead of the bytes still missing, "ab" and "bcd" again.
        let s = h.a.stats();
        assert_eq!((s.retransmitted, s.out_of_order, s.holes), (3, 2, 1));
    }

    #[test]
    fn a_bare_ack_past_the_highest_byte_shows_a_hole_once() {
        let mut h = Harness::new(1 << 20);
        h.seg(0, false, false, b"ab");
        // "cd" lost before the capture point; the sender's ACK after it tells.
        h.a.bare(4);
        h.a.bare(4);
        h.seg(4, false, false, b"ef");
        h.seg(2, false, false, b"cd");
        assert_eq!(h.bytes(), b"abcdef");
        let s = h.a.stats();
        assert_eq!((s.retransmitted, s.out_of_order, s.holes), (1, 1, 1));
    }

    #[test]
    fn a_keep_alive_is_not_sent_again() {
        let mut h = Harness::new(1 << 20);
        h.seg(0, false, false, b"abc");
        // One byte below the next, as TCP keep-alives probe.
        h.seg(2, false, false, b"c");
        let s = h.a.stats();
        assert_eq!((s.retransmitted, s.out_of_order, s.holes), (0, 0, 0));
        h.seg(1, false, false, b"bc");
        assert_eq!(h.a.stats().retransmitted, 1);
    }

    #[test]
    fn overlapping_out_of_order_segments() {
        let mut h = Harness::new(1 << 20);
        h.seg(0, false, false, b"a");
        h.seg(5, false, false, b"fg");
        h.seg(3, false, false, b"defgh");
        h.seg(2, false, false, b"cdefghij");
        h.seg(1, false, false, b"b");
        assert_eq!(h.bytes(), b"abcdefghij");
    }

    #[test]
    fn sequence_wraps_around() {
        let mut h = Harness::new(1 << 20);
        h.seg(u32::MAX - 2, true, false, b"");
        h.seg(u32::MAX - 1, false, false, b"ab");
        h.seg(1, false, false, b"de");
        h.seg(0, false, false, b"c");
        assert_eq!(h.bytes(), b"abcde");
    }

    #[test]
    fn ack_past_hole_makes_gap() {
        let mut h = Harness::new(1 << 20);
        h.seg(0, false, false, b"ab");
        h.seg(10, false, false, b"kl");
        h.ack(12);
        assert_eq!(
            h.out,
            vec![
                Out::Data(b"ab".to_vec()),
                Out::Gap(8),
                Out::Data(b"kl".to_vec())
            ]
        );
    }

    #[test]
    fn buffer_limit_forces_gap() {
        let mut h = Harness::new(SEGMENT_COST + 4);
        h.seg(0, false, false, b"a");
        h.seg(5, false, false, b"fgh");
        assert!(h.out.len() == 1);
        h.seg(8, false, false, b"ij");
        assert_eq!(h.out[1], Out::Gap(4));
        assert_eq!(h.bytes(), b"afghij");
        assert_eq!(h.a.pending_bytes(), 0);
    }

    /// One-byte segments, each after a hole: what they cost counts, not only their bytes.
    #[test]
    fn tiny_segments_count_what_they_cost() {
        let mut h = Harness::new(10 * SEGMENT_COST);
        h.seg(0, false, false, b"a");
        for i in 0..1000u32 {
            h.seg(2 + 2 * i, false, false, b"x");
            assert!(h.a.pending_bytes() <= 10 * SEGMENT_COST + 10);
        }
        h.flush();
        assert_eq!(h.bytes().len(), 1001);
        assert_eq!(h.a.pending_bytes(), 0);
    }

    #[test]
    fn flush_delivers_with_gaps_and_fin() {
        let mut h = Harness::new(1 << 20);
        h.seg(0, false, false, b"a");
        h.seg(3, false, true, b"d");
        h.flush();
        assert_eq!(
            h.out,
            vec![
                Out::Data(b"a".to_vec()),
                Out::Gap(2),
                Out::Data(b"d".to_vec()),
                Out::Fin
            ]
        );
    }

    /// A stream's bytes: position-dependent, so that misplaced bytes show.
    fn stream(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    /// (offset, length) pieces of a stream of `len` bytes in arrival order: the stream cut at
    /// `cuts`, in an order drawn from `order`, and `copies` (where, from, to) re-cut anywhere.
    fn sends(
        len: usize,
        cuts: &[Index],
        order: &[Index],
        copies: &[(Index, Index, Index)],
    ) -> Vec<(usize, usize)> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(len)).collect();
        points.extend([0, len]);
        points.sort_unstable();
        points.dedup();
        let mut pieces: Vec<(usize, usize)> =
            points.windows(2).map(|w| (w[0], w[1] - w[0])).collect();
        // A permutation drawn from `order`: each index picks among the pieces left.
        let mut sent = Vec::new();
        for o in order {
            if pieces.is_empty() {
                break;
            }
            sent.push(pieces.remove(o.index(pieces.len())));
        }
        sent.extend(pieces);
        for (at, a, b) in copies {
            let (a, b) = (a.index(len), b.index(len));
            let (start, end) = (a.min(b), a.max(b) + 1);
            sent.insert(at.index(sent.len() + 1), (start, end - start));
        }
        sent
    }

    proptest::proptest! {
        /// Pieces of a stream in any order, some sent again re-cut, after the SYN: the stream
        /// comes out whole and nothing stays buffered; the counts are those of tshark's rules,
        /// restated on the byte offsets (sent again: starting below the highest byte seen, but
        /// for a one-byte keep-alive; hole: starting past it; out of order: past the bytes
        /// delivered so far).
        #[test]
        fn any_order_and_copies_give_the_stream_and_tsharks_counts(
            len in 1usize..3000,
            isn in any::<u32>(),
            cuts in vec(any::<Index>(), 0..24),
            order in vec(any::<Index>(), 0..24),
            copies in vec(any::<(Index, Index, Index)>(), 0..8),
        ) {
            let data = stream(len);
            let mut h = Harness::new(1 << 20);
            h.seg(isn, true, false, b"");
            let (mut highest, mut covered) = (0usize, vec![false; len]);
            let mut expected = AssemblerStats::default();
            for (start, n) in sends(len, &cuts, &order, &copies) {
                let delivered = covered.iter().position(|c| !c).unwrap_or(len);
                let keep_alive = n == 1 && start + 1 == highest;
                expected.retransmitted += u64::from(start < highest && !keep_alive);
                expected.holes += u64::from(start > highest);
                expected.out_of_order += u64::from(start > delivered);
                highest = highest.max(start + n);
                covered[start..start + n].iter_mut().for_each(|c| *c = true);
                let seq = isn.wrapping_add(1).wrapping_add(start as u32);
                h.seg(seq, false, false, &data[start..start + n]);
            }
            prop_assert_eq!(h.bytes(), data);
            prop_assert!(!h.out.iter().any(|o| matches!(o, Out::Gap(_))));
            prop_assert_eq!(h.a.pending_bytes(), 0);
            let s = h.a.stats();
            prop_assert_eq!(
                (s.retransmitted, s.holes, s.out_of_order),
                (expected.retransmitted, expected.holes, expected.out_of_order)
            );
        }

        /// Some pieces never come and the buffer is small: what is buffered stays under its
        /// bound after every segment, and after the flush every byte of the stream up to the
        /// highest one seen is accounted for, delivered (the stream's own byte at its place)
        /// or in a gap.
        #[test]
        fn lost_pieces_under_a_small_buffer_become_gaps(
            len in 1usize..3000,
            isn in any::<u32>(),
            cuts in vec(any::<Index>(), 0..24),
            order in vec(any::<Index>(), 0..24),
            lost in vec(any::<bool>(), 24),
        ) {
            let data = stream(len);
            let max = 4 * SEGMENT_COST;
            let mut h = Harness::new(max);
            h.seg(isn, true, false, b"");
            let mut highest = 0;
            for (i, (start, n)) in sends(len, &cuts, &order, &[]).into_iter().enumerate() {
                if lost[i % lost.len()] {
                    continue;
                }
                highest = highest.max(start + n);
                let seq = isn.wrapping_add(1).wrapping_add(start as u32);
                h.seg(seq, false, false, &data[start..start + n]);
                prop_assert!(h.a.pending_bytes() <= max);
            }
            h.flush();
            let mut at = 0usize;
            for o in &h.out {
                match o {
                    Out::Data(d) => {
                        prop_assert_eq!(&d[..], &data[at..at + d.len()]);
                        at += d.len();
                    }
                    Out::Gap(n) => at += *n as usize,
                    Out::Fin => {}
                }
            }
            prop_assert_eq!(at, highest);
            prop_assert_eq!(h.a.pending_bytes(), 0);
        }
    }
}
