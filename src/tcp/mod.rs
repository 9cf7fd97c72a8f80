//! TCP connections: the flow table and per-direction reassembly.
//!
//! A connection is a 4-tuple from its first packet until it closes; a new SYN on a closed (or
//! differently numbered) tuple starts a new connection, numbered in order of first packet like
//! tshark's `tcp.stream`. Each connection carries an application value `T` (the HTTP/2 state),
//! which receives the reassembled byte stream of both directions through [`FlowHandler`].

pub mod assembler;

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::SocketAddr;

pub use assembler::{Assembler, AssemblerStats, Chunk};

use crate::capture::link::TcpSegment;

/// Direction within a connection: `Dir::Forward` goes from `endpoints[0]` to `endpoints[1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Forward = 0,
    Reverse = 1,
}

impl Dir {
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn other(self) -> Dir {
        match self {
            Dir::Forward => Dir::Reverse,
            Dir::Reverse => Dir::Forward,
        }
    }
}

/// What the capture says about the packet being processed, passed along with every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct PacketMeta {
    pub index: u64,
    pub ts_ns: i64,
}

/// A connection's identity.
#[derive(Debug, Clone, Copy)]
pub struct FlowInfo {
    pub conn: u64,
    /// `[initiator, responder]` as far as the capture shows: the SYN sender when the handshake
    /// was captured, otherwise the sender of the first packet.
    pub endpoints: [SocketAddr; 2],
    pub handshake_seen: bool,
    pub first_ts_ns: i64,
    /// The three-way handshake, once the capture has shown it whole.
    pub handshake: Option<Handshake>,
    /// What TCP showed of each direction (by [`Dir`]), complete when the connection closes.
    pub tcp: [TcpSide; 2],
}

/// What TCP itself showed of one direction of a connection, as Wireshark's expert information
/// flags it: segments sent again, and the receive window its sender closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpSide {
    /// Segments this side sent, the handshake's and bare ACKs included (Wireshark's
    /// Conversations count them so).
    pub packets: u64,
    /// Segments with bytes starting below the highest byte seen before them: sent again (or
    /// overtaken), as tshark flags retransmissions, fast and spurious ones, and out-of-order.
    pub retransmitted: u64,
    /// Segments that came ahead of a hole (the ones before them lost or reordered).
    pub out_of_order: u64,
    /// Segments that started past the highest byte seen (tshark's "previous segment not
    /// captured"): bytes lost on the way to the capture point, or overtaken. Retransmissions
    /// without holes were lost past it.
    pub holes: u64,
    /// Runs of segments advertising a zero receive window (Wireshark's ZeroWindow, counted
    /// once per run): this side's buffer was full and the other could not send until it
    /// opened the window again.
    pub zero_windows: u64,
    /// Time from the first segment of each run to the segment that opened the window (or the
    /// connection's end).
    pub zero_window_ns: i64,
}

/// When the capture saw a connection's handshake: its round trip (Wireshark's iRTT, SYN to the
/// ACK of the SYN-ACK) and the two parts of it on either side of the capture point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The initiator's SYN: the last before the SYN-ACK, the one it answers when the first was
    /// lost and sent again.
    pub syn_ts_ns: i64,
    /// The responder's SYN-ACK: the last before the initiator's ACK, likewise.
    pub syn_ack_ts_ns: i64,
    /// The initiator's first ACK after the SYN-ACK.
    pub ack_ts_ns: i64,
}

impl Handshake {
    /// SYN to SYN-ACK: from the capture point to the responder and back (next to nothing when
    /// the capture was taken next to the responder).
    pub fn responder_side_ns(&self) -> i64 {
        self.syn_ack_ts_ns.saturating_sub(self.syn_ts_ns).max(0)
    }

    /// SYN-ACK to ACK: from the capture point to the initiator and back.
    pub fn initiator_side_ns(&self) -> i64 {
        self.ack_ts_ns.saturating_sub(self.syn_ack_ts_ns).max(0)
    }

    /// The whole round trip, wherever the capture was taken.
    pub fn rtt_ns(&self) -> i64 {
        self.responder_side_ns()
            .saturating_add(self.initiator_side_ns())
    }
}

impl FlowInfo {
    pub fn src(&self, dir: Dir) -> SocketAddr {
        self.endpoints[dir.index()]
    }
    pub fn dst(&self, dir: Dir) -> SocketAddr {
        self.endpoints[dir.other().index()]
    }
    fn key(&self) -> FlowKey {
        FlowKey::of(self.endpoints[0], self.endpoints[1])
    }
}

/// Reassembled stream content of one direction.
#[derive(Debug)]
pub enum StreamEvent<'a> {
    Data(&'a [u8]),
    Gap(u64),
    Fin,
    Rst,
}

impl<'a> From<Chunk<'a>> for StreamEvent<'a> {
    fn from(c: Chunk<'a>) -> Self {
        match c {
            Chunk::Data(d) => StreamEvent::Data(d),
            Chunk::Gap(n) => StreamEvent::Gap(n),
            Chunk::Fin => StreamEvent::Fin,
        }
    }
}

/// Why a connection's state is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both FINs, or a RST.
    Closed,
    /// No packet for longer than the idle timeout (capture time).
    Idle,
    /// The flow table was full and this was among the least recently active.
    Evicted,
    /// A new connection reused the 4-tuple.
    Reused,
    EndOfInput,
}

pub trait FlowHandler {
    type State;
    /// A connection's state, made at its first segment with bytes, FIN or RST, or at its end
    /// (whichever comes first): before any other call about it.
    fn open(&mut self, info: &FlowInfo, meta: &PacketMeta) -> Self::State;
    fn stream(
        &mut self,
        info: &FlowInfo,
        state: &mut Self::State,
        dir: Dir,
        event: StreamEvent<'_>,
        meta: &PacketMeta,
    );
    fn close(
        &mut self,
        info: &FlowInfo,
        state: &mut Self::State,
        reason: CloseReason,
        meta: &PacketMeta,
    );
    /// Whether the connection holds something until a time has passed, for [`tick`](Self::tick)
    /// at the next sweep. Asked of every open connection at each sweep: it should be cheap.
    fn waiting(&self, _state: &Self::State) -> bool {
        false
    }
    /// Time has passed (a sweep at `meta`'s time): what the connection held until then may go.
    fn tick(&mut self, _info: &FlowInfo, _state: &mut Self::State, _meta: &PacketMeta) {}
    /// The connection has been quiet for a while ([`FlowConfig::quiet_ns`]): it may give back
    /// the room it keeps between packets for the next ones. Called once its quiet time is up,
    /// and at each sweep while it stays quiet; what it reads next must come out the same.
    fn compact(&mut self, _info: &FlowInfo, _state: &mut Self::State) {}
}

#[derive(Debug, Clone, Copy)]
pub struct FlowConfig {
    pub max_flows: usize,
    /// Out-of-order bytes buffered per direction before a hole is declared a gap.
    pub max_pending_per_dir: usize,
    pub idle_timeout_ns: i64,
    /// Idle connections are expired only by [`FlowTable::sweep`], when the caller says: a
    /// table that sees a share of the capture's flows (one of several threads) must sweep
    /// when the whole capture's packets say so, not its own.
    pub external_sweeps: bool,
    /// How long a connection goes without a packet before it is compacted
    /// ([`FlowHandler::compact`]). Long-lived channels spend most of their life waiting, and
    /// at a capture point that sees many of them, the room kept for their next frames was two
    /// fifths of what they held.
    pub quiet_ns: i64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 100_000,
            max_pending_per_dir: 2 << 20,
            idle_timeout_ns: 600 * 1_000_000_000,
            external_sweeps: false,
            quiet_ns: 1_000_000_000,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct FlowTableStats {
    pub connections: u64,
    pub segments: u64,
    pub retransmitted: u64,
    pub out_of_order: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub expired: u64,
    pub evicted: u64,
}

struct Flow<S> {
    info: FlowInfo,
    /// Each direction's first segment (sequence number, SYN) while `open` is not made, to start
    /// its reassembly where TCP did.
    first: [Option<(u32, bool)>; 2],
    isn: [Option<u32>; 2],
    last_ts_ns: i64,
    closed: bool,
    /// In the table's queue of connections to compact once quiet ([`FlowTable::compact_quiet`]).
    queued: bool,
    /// The handshake so far (SYN, SYN-ACK), until `info.handshake` is known.
    syn_ts_ns: [Option<i64>; 2],
    /// Since when each direction has advertised a zero window (see [`TcpSide`]).
    zero_since: [Option<i64>; 2],
    /// Made at the connection's first segment with bytes, FIN or RST (or at its end), so that a
    /// table full of connections that never carried any (a SYN scan) holds their TCP only;
    /// dropped when the connection closes, so that the entry kept for late ACKs and
    /// retransmissions costs next to nothing.
    open: Option<Box<Open<S>>>,
}

/// What a connection holds once it has carried bytes.
struct Open<S> {
    /// The two directions' reassembly.
    asm: [Assembler; 2],
    /// The handler's state.
    state: S,
}

impl<S> Open<S> {
    /// Gives back the room kept for the next packets ([`FlowHandler::compact`]).
    fn compact<H: FlowHandler<State = S>>(&mut self, info: &FlowInfo, handler: &mut H) {
        self.asm.iter_mut().for_each(Assembler::compact);
        handler.compact(info, &mut self.state);
    }
}

/// A connection in the queue of those to compact once quiet: its number tells it from a later
/// connection between the same endpoints.
#[derive(Debug, Clone, Copy)]
struct Queued {
    ts_ns: i64,
    conn: u64,
    key: FlowKey,
}

/// A connection's two endpoints, in a fixed order so that both directions make the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowKey(SocketAddr, SocketAddr);

impl std::hash::Hash for FlowKey {
    // One write per endpoint instead of SocketAddr's field-by-field hashing. Equal keys still
    // hash equally: IPv6 flow info and scope, which `Eq` also compares, are merely left out.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let v4 =
            |a: &std::net::SocketAddrV4| u64::from(a.ip().to_bits()) << 16 | u64::from(a.port());
        if let (SocketAddr::V4(a), SocketAddr::V4(b)) = (self.0, self.1) {
            // Both ends in one write: the common case, one step of the hasher.
            state.write_u128(u128::from(v4(&a)) << 64 | u128::from(v4(&b)));
            return;
        }
        for a in [self.0, self.1] {
            match a {
                SocketAddr::V4(a) => state.write_u64(v4(&a)),
                SocketAddr::V6(v6) => {
                    state.write_u128(v6.ip().to_bits());
                    state.write_u16(v6.port());
                }
            }
        }
    }
}

impl FlowKey {
    pub(crate) fn of(a: SocketAddr, b: SocketAddr) -> Self {
        if a <= b {
            FlowKey(a, b)
        } else {
            FlowKey(b, a)
        }
    }

    fn holds<S>(&self, flow: &Flow<S>) -> bool {
        let [a, b] = flow.info.endpoints;
        (a == self.0 && b == self.1) || (a == self.1 && b == self.0)
    }
}

impl<S> Flow<S> {
    fn key(&self) -> FlowKey {
        self.info.key()
    }
}

/// The open connections, found by the endpoints each one holds. A slot is a pointer: a map
/// keyed by [`FlowKey`] kept a second copy of both addresses in every slot (72 bytes instead
/// of 8), most of the memory of a table full of connections that never carried bytes.
struct Flows<S> {
    /// Boxed: a flow is a few hundred bytes (its HTTP/2 state more, boxed again), and a table
    /// of them inline is mostly empty slots that every probe lands among.
    table: hashbrown::HashTable<Box<Flow<S>>>,
    /// Seeded per process, so that a crafted capture cannot aim at known collisions.
    hasher: foldhash::fast::RandomState,
}

impl<S> Flows<S> {
    fn new() -> Self {
        Flows {
            table: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow<S>> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find_mut(hash, |f| key.holds(f))
            .map(|f| &mut **f)
    }

    fn remove(&mut self, key: &FlowKey) -> Option<Box<Flow<S>>> {
        let hash = self.hasher.hash_one(key);
        let entry = self.table.find_entry(hash, |f| key.holds(f)).ok()?;
        Some(entry.remove().0)
    }

    /// Adds a flow whose key is not in the table.
    fn insert(&mut self, flow: Box<Flow<S>>) -> &mut Flow<S> {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(flow.key());
        let entry = self
            .table
            .insert_unique(hash, flow, |f| hasher.hash_one(f.key()));
        entry.into_mut()
    }

    fn iter(&self) -> impl Iterator<Item = &Flow<S>> {
        self.table.iter().map(|f| &**f)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Flow<S>> {
        self.table.iter_mut().map(|f| &mut **f)
    }

    fn len(&self) -> usize {
        self.table.len()
    }
}

pub struct FlowTable<S> {
    cfg: FlowConfig,
    flows: Flows<S>,
    /// Connections with bytes, in the order they were queued, to compact once quiet.
    quiet: VecDeque<Queued>,
    next_conn: u64,
    last_sweep_ns: i64,
    stats: FlowTableStats,
}

impl<S> FlowTable<S> {
    pub fn new(cfg: FlowConfig) -> Self {
        FlowTable {
            cfg,
            flows: Flows::new(),
            quiet: VecDeque::new(),
            next_conn: 0,
            last_sweep_ns: i64::MIN,
            stats: FlowTableStats::default(),
        }
    }

    pub fn stats(&self) -> FlowTableStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.len() == 0
    }

    /// The handler's states of the connections that carried bytes, in no order.
    #[cfg(test)]
    pub(crate) fn states(&self) -> impl Iterator<Item = &S> {
        self.flows
            .iter()
            .filter_map(|f| f.open.as_ref().map(|o| &o.state))
    }

    /// Feeds one segment; returns the number of the connection it belongs to.
    pub fn segment<H: FlowHandler<State = S>>(
        &mut self,
        seg: &TcpSegment<'_>,
        meta: &PacketMeta,
        handler: &mut H,
    ) -> Option<u64> {
        self.stats.segments += 1;
        self.maybe_sweep(meta, handler);
        self.compact_quiet(meta.ts_ns, handler);
        let key = FlowKey::of(seg.src, seg.dst);
        // One lookup for a packet of a known connection, the common case.
        if let Some(flow) = self.flows.get_mut(&key) {
            if !starts_new(flow, seg) {
                return Some(Self::deliver(
                    flow,
                    &mut self.stats,
                    &mut self.quiet,
                    &self.cfg,
                    seg,
                    meta,
                    handler,
                ));
            }
        }
        if let Some(mut old) = self.flows.remove(&key) {
            self.retire(&mut old, CloseReason::Reused, meta, handler);
        }
        if self.flows.len() >= self.cfg.max_flows {
            self.evict_oldest(meta, handler);
        }
        // A SYN-ACK as first packet means its sender is the responder.
        let endpoints = if seg.syn && seg.ack_flag {
            [seg.dst, seg.src]
        } else {
            [seg.src, seg.dst]
        };
        let info = FlowInfo {
            conn: self.next_conn,
            endpoints,
            handshake_seen: seg.syn,
            first_ts_ns: meta.ts_ns,
            handshake: None,
            tcp: [TcpSide::default(); 2],
        };
        self.next_conn += 1;
        self.stats.connections += 1;
        let flow = self.flows.insert(Box::new(Flow {
            info,
            first: [None, None],
            isn: [None, None],
            last_ts_ns: meta.ts_ns,
            closed: false,
            queued: false,
            syn_ts_ns: [None, None],
            zero_since: [None, None],
            open: None,
        }));
        Some(Self::deliver(
            flow,
            &mut self.stats,
            &mut self.quiet,
            &self.cfg,
            seg,
            meta,
            handler,
        ))
    }

    /// Hands a segment of a known connection to its reassembly; returns the connection number.
    fn deliver<H: FlowHandler<State = S>>(
        flow: &mut Flow<S>,
        stats: &mut FlowTableStats,
        quiet: &mut VecDeque<Queued>,
        cfg: &FlowConfig,
        seg: &TcpSegment<'_>,
        meta: &PacketMeta,
        handler: &mut H,
    ) -> u64 {
        flow.last_ts_ns = meta.ts_ns;
        let conn = flow.info.conn;
        if flow.closed {
            return conn;
        }
        let dir = direction(&flow.info, seg.src);
        let d = dir.index();
        flow.info.tcp[d].packets += 1;
        if seg.syn && flow.isn[d].is_none() {
            flow.isn[d] = Some(seg.seq);
        }
        if flow.info.handshake_seen && flow.info.handshake.is_none() {
            time_handshake(flow, dir, seg, meta.ts_ns);
        }
        // A zero window on SYN, FIN or RST says nothing of the receiver's buffer.
        if !(seg.syn || seg.fin || seg.rst) {
            let since = &mut flow.zero_since[d];
            let side = &mut flow.info.tcp[d];
            match (seg.window, *since) {
                (0, None) => {
                    *since = Some(meta.ts_ns);
                    side.zero_windows += 1;
                }
                (0, Some(_)) => {}
                (_, Some(t)) => {
                    *since = None;
                    side.zero_window_ns = add_ns(side.zero_window_ns, t, meta.ts_ns);
                }
                (_, None) => {}
            }
        }
        let Flow {
            info,
            first,
            open,
            closed,
            queued,
            zero_since,
            ..
        } = flow;
        // Only bytes, a FIN or an RST make stream events (bytes buffered came with bytes).
        if open.is_none() && (!seg.payload.is_empty() || seg.fin || seg.rst) {
            *open = Some(Self::open(cfg, first, info, meta, handler));
        }
        if open.is_some() && !*queued {
            *queued = true;
            quiet.push_back(Queued {
                ts_ns: meta.ts_ns,
                conn: info.conn,
                key: info.key(),
            });
        }
        let Some(Open { asm, state }) = open.as_deref_mut() else {
            // No bytes yet (a handshake, bare ACKs): where each direction starts is all.
            first[d].get_or_insert((seg.seq, seg.syn));
            return conn;
        };
        let mut emit = |dir: Dir, chunk: Chunk<'_>| {
            handler.stream(info, state, dir, chunk.into(), meta);
        };
        // The ACK tells whether holes in the other direction were lost by the capture.
        if seg.ack_flag && asm[dir.other().index()].is_started() {
            asm[dir.other().index()].peer_acked(seg.ack, &mut |c| emit(dir.other(), c));
        }
        if seg.syn && asm[d].is_started() && seg.payload.is_empty() {
            // Retransmitted SYN or SYN-ACK: nothing to deliver.
        } else if !seg.payload.is_empty() || seg.syn || seg.fin || !asm[d].is_started() {
            asm[d].segment(seg.seq, seg.syn, seg.fin, seg.payload, &mut |c| {
                emit(dir, c)
            });
        } else if !seg.rst {
            asm[d].bare(seg.seq);
        }
        if seg.rst {
            // Whatever was buffered will never be completed.
            asm[d].flush(&mut |c| emit(dir, c));
            asm[dir.other().index()].flush(&mut |c| emit(dir.other(), c));
            emit_rst(handler, info, state, dir, meta);
            *closed = true;
        } else if asm[0].fin_delivered() && asm[1].fin_delivered() {
            *closed = true;
        }
        if *closed {
            Self::account(stats, asm);
            settle_tcp(info, zero_since, asm, meta.ts_ns);
            handler.close(info, state, CloseReason::Closed, meta);
            flow.open = None;
        }
        conn
    }

    /// A connection's reassembly, started where each direction's first segment started it,
    /// and the handler's state.
    fn open<H: FlowHandler<State = S>>(
        cfg: &FlowConfig,
        first: &[Option<(u32, bool)>; 2],
        info: &FlowInfo,
        meta: &PacketMeta,
        handler: &mut H,
    ) -> Box<Open<S>> {
        let max = cfg.max_pending_per_dir;
        let mut asm = [Assembler::new(max), Assembler::new(max)];
        for (a, f) in asm.iter_mut().zip(first) {
            if let Some((seq, syn)) = *f {
                a.segment(seq, syn, false, &[], &mut |_| {});
            }
        }
        Box::new(Open {
            asm,
            state: handler.open(info, meta),
        })
    }

    /// Ends every connection still open (end of input).
    pub fn finish<H: FlowHandler<State = S>>(&mut self, meta: &PacketMeta, handler: &mut H) {
        self.finish_some(usize::MAX, meta, handler);
    }

    /// Ends the `n` (at least one) lowest-numbered connections as [`finish`](Self::finish)
    /// ends them all, in connection order; true when none is left. Each call looks at the
    /// whole table: `n` is meant to be large enough for that not to matter.
    pub fn finish_some<H: FlowHandler<State = S>>(
        &mut self,
        n: usize,
        meta: &PacketMeta,
        handler: &mut H,
    ) -> bool {
        let n = n.max(1);
        let mut first: Vec<(u64, FlowKey)> =
            self.flows.iter().map(|f| (f.info.conn, f.key())).collect();
        if first.len() > n {
            first.select_nth_unstable_by_key(n, |&(conn, _)| conn);
            first.truncate(n);
        }
        self.remove_flows(first, CloseReason::EndOfInput, meta, handler);
        self.flows.len() == 0
    }

    fn retire<H: FlowHandler<State = S>>(
        &mut self,
        flow: &mut Flow<S>,
        reason: CloseReason,
        meta: &PacketMeta,
        handler: &mut H,
    ) {
        if flow.closed {
            return;
        }
        let Flow {
            info,
            first,
            open,
            zero_since,
            ..
        } = flow;
        // A connection that never carried bytes is opened to be closed.
        let Open { asm, state } =
            &mut **open.get_or_insert_with(|| Self::open(&self.cfg, first, info, meta, handler));
        for dir in [Dir::Forward, Dir::Reverse] {
            asm[dir.index()].flush(&mut |c| handler.stream(info, state, dir, c.into(), meta));
        }
        Self::account(&mut self.stats, asm);
        settle_tcp(info, zero_since, asm, meta.ts_ns);
        handler.close(info, state, reason, meta);
        flow.closed = true;
        flow.open = None;
    }

    fn account(stats: &mut FlowTableStats, asm: &[Assembler; 2]) {
        for a in asm {
            let s = a.stats();
            stats.retransmitted += s.retransmitted;
            stats.out_of_order += s.out_of_order;
            stats.gaps += s.gaps;
            stats.gap_bytes += s.gap_bytes;
        }
    }

    /// Compacts the connections whose quiet time ([`FlowConfig::quiet_ns`]) is up at `now`, as
    /// it comes rather than at the next sweep: sweeps come every ten seconds of capture time,
    /// and left the last seconds' connections whole (about 6 kB where a compacted one holds 3),
    /// which on a capture of many connections opened in turn was most of what stayed. A
    /// connection is queued at its first packet with bytes and at its first since it was
    /// compacted; one heard from since it was queued goes to the back, with the time it was
    /// last heard from. So each packet costs a look at the queue's front, and each entry is
    /// moved at most once per packet of its connection.
    fn compact_quiet<H: FlowHandler<State = S>>(&mut self, now: i64, handler: &mut H) {
        let cutoff = now.saturating_sub(self.cfg.quiet_ns);
        // Entries of connections that ended wait for their turn to be dropped: a flood of
        // short connections must not make the queue outgrow the table.
        let room = 2 * self.flows.len() + 64;
        while let Some(&Queued { ts_ns, conn, key }) = self.quiet.front() {
            let overfull = self.quiet.len() > room;
            if ts_ns > cutoff && !overfull {
                break;
            }
            self.quiet.pop_front();
            let Some(flow) = self.flows.get_mut(&key).filter(|f| f.info.conn == conn) else {
                continue;
            };
            if flow.last_ts_ns > cutoff && !overfull {
                self.quiet.push_back(Queued {
                    ts_ns: flow.last_ts_ns,
                    conn,
                    key,
                });
                continue;
            }
            // Queued again at its next packet (when the queue was too full for it, the sweeps
            // compact it meanwhile).
            flow.queued = false;
            if flow.last_ts_ns <= cutoff {
                if let Some(open) = flow.open.as_mut() {
                    open.compact(&flow.info, handler);
                }
            }
        }
    }

    /// Expires idle connections, at most once per ten seconds of capture time.
    fn maybe_sweep<H: FlowHandler<State = S>>(&mut self, meta: &PacketMeta, handler: &mut H) {
        if !self.cfg.external_sweeps && sweep_due(&mut self.last_sweep_ns, meta.ts_ns) {
            self.sweep(meta, handler);
        }
    }

    /// Expires the connections idle at `meta`'s time, and lets the others' held items go whose
    /// time has come ([`FlowHandler::tick`]), both in connection order: the output does not
    /// depend on the table's order, nor on how many threads share the connections.
    pub fn sweep<H: FlowHandler<State = S>>(&mut self, meta: &PacketMeta, handler: &mut H) {
        let cutoff = meta.ts_ns.saturating_sub(self.cfg.idle_timeout_ns);
        // A closed connection's entry only absorbs stragglers: a minute is plenty.
        let closed_cutoff = meta.ts_ns.saturating_sub(60 * 1_000_000_000);
        let quiet = meta.ts_ns.saturating_sub(self.cfg.quiet_ns);
        let mut due: Vec<(u64, FlowKey, bool)> = Vec::new();
        // One pass over the table: the idle and the waiting are noted, the quiet that stay are
        // compacted (the order of compaction does not matter, as it changes no output).
        for f in self.flows.iter_mut() {
            let idle = f.last_ts_ns < cutoff || (f.closed && f.last_ts_ns < closed_cutoff);
            let waiting = f.open.as_ref().is_some_and(|o| handler.waiting(&o.state));
            if idle || waiting {
                due.push((f.info.conn, f.key(), idle));
            }
            if let Some(open) = f.open.as_mut().filter(|_| !idle && f.last_ts_ns <= quiet) {
                open.compact(&f.info, handler);
            }
        }
        due.sort_unstable_by_key(|&(conn, _, _)| conn);
        for (_, key, idle) in due {
            if idle {
                self.remove_flow(&key, CloseReason::Idle, meta, handler);
            } else if let Some(flow) = self.flows.get_mut(&key) {
                if let Some(open) = flow.open.as_mut() {
                    handler.tick(&flow.info, &mut open.state, meta);
                }
            }
        }
    }

    /// Makes room by ending the least recently active tenth of the table in one pass, so that a
    /// flood of new tuples costs amortised O(1) per packet.
    fn evict_oldest<H: FlowHandler<State = S>>(&mut self, meta: &PacketMeta, handler: &mut H) {
        // The ages alone are gathered (16 bytes a connection), then the keys of the oldest
        // tenth: (time, number) pairs are distinct, so exactly that tenth is at or below the
        // n-th.
        let mut ages: Vec<(i64, u64)> = self
            .flows
            .iter()
            .map(|f| (f.last_ts_ns, f.info.conn))
            .collect();
        if ages.is_empty() {
            return;
        }
        let n = (ages.len() / 10).max(1);
        let (_, &mut limit, _) = ages.select_nth_unstable(n - 1);
        drop(ages);
        let victims = self
            .flows
            .iter()
            .filter(|f| (f.last_ts_ns, f.info.conn) <= limit)
            .map(|f| (f.info.conn, f.key()))
            .collect();
        self.remove_flows(victims, CloseReason::Evicted, meta, handler);
    }

    fn remove_flows<H: FlowHandler<State = S>>(
        &mut self,
        mut order: Vec<(u64, FlowKey)>,
        reason: CloseReason,
        meta: &PacketMeta,
        handler: &mut H,
    ) {
        // In connection order, so that output does not depend on the table's; the keys are
        // sorted (each with its connection's number), not the flows, which are large.
        order.sort_unstable_by_key(|&(conn, _)| conn);
        for (_, key) in order {
            self.remove_flow(&key, reason, meta, handler);
        }
    }

    fn remove_flow<H: FlowHandler<State = S>>(
        &mut self,
        key: &FlowKey,
        reason: CloseReason,
        meta: &PacketMeta,
        handler: &mut H,
    ) {
        let Some(mut flow) = self.flows.remove(key) else {
            return;
        };
        match reason {
            _ if flow.closed => {}
            CloseReason::Idle => self.stats.expired += 1,
            CloseReason::Evicted => self.stats.evicted += 1,
            _ => {}
        }
        self.retire(&mut flow, reason, meta, handler);
    }
}

/// Whether a TCP segment at `ts_ns` is the moment to sweep for idle connections: at most once
/// per ten seconds of capture time. Records the sweep in `last`.
pub fn sweep_due(last: &mut i64, ts_ns: i64) -> bool {
    const SWEEP_EVERY_NS: i64 = 10 * 1_000_000_000;
    if *last != i64::MIN && ts_ns.saturating_sub(*last) < SWEEP_EVERY_NS {
        return false;
    }
    *last = ts_ns;
    true
}

fn emit_rst<H: FlowHandler>(
    handler: &mut H,
    info: &FlowInfo,
    state: &mut H::State,
    dir: Dir,
    meta: &PacketMeta,
) {
    handler.stream(info, state, dir, StreamEvent::Rst, meta);
}

/// `total` plus the time from `from` to `to`, saturating, never less (a capture's times may go
/// back).
fn add_ns(total: i64, from: i64, to: i64) -> i64 {
    total.saturating_add(to.saturating_sub(from).max(0))
}

/// A connection's TCP figures as it closes: the reassembly's counts, and a zero window still
/// closed counted until now.
fn settle_tcp(
    info: &mut FlowInfo,
    zero_since: &mut [Option<i64>; 2],
    asm: &[Assembler; 2],
    now_ns: i64,
) {
    for (d, side) in info.tcp.iter_mut().enumerate() {
        let s = asm[d].stats();
        side.retransmitted = s.retransmitted;
        side.out_of_order = s.out_of_order;
        side.holes = s.holes;
        if let Some(t) = zero_since[d].take() {
            side.zero_window_ns = add_ns(side.zero_window_ns, t, now_ns);
        }
    }
}

/// Follows a connection's handshake until the initiator's ACK of the SYN-ACK completes it.
fn time_handshake<S>(flow: &mut Flow<S>, dir: Dir, seg: &TcpSegment<'_>, ts_ns: i64) {
    let [syn, syn_ack] = &mut flow.syn_ts_ns;
    match (dir, seg.syn, seg.ack_flag) {
        (Dir::Forward, true, false) if syn_ack.is_none() => *syn = Some(ts_ns),
        (Dir::Reverse, true, true) if syn.is_some() => *syn_ack = Some(ts_ns),
        (Dir::Forward, false, true) => {
            if let (Some(syn_ts_ns), Some(syn_ack_ts_ns)) = (*syn, *syn_ack) {
                flow.info.handshake = Some(Handshake {
                    syn_ts_ns,
                    syn_ack_ts_ns,
                    ack_ts_ns: ts_ns,
                });
            }
        }
        _ => {}
    }
}

/// A SYN that is not a retransmission of this connection's own starts a new one on the tuple.
fn starts_new<S>(flow: &Flow<S>, seg: &TcpSegment<'_>) -> bool {
    let dir = direction(&flow.info, seg.src);
    seg.syn
        && !seg.ack_flag
        && (flow.closed || flow.isn[dir.index()].is_some_and(|isn| isn != seg.seq))
}

fn direction(info: &FlowInfo, src: SocketAddr) -> Dir {
    if info.endpoints[0] == src {
        Dir::Forward
    } else {
        Dir::Reverse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log {
        opened: Vec<u64>,
        closed: Vec<(u64, CloseReason)>,
        bytes: Vec<(u64, Dir, Vec<u8>)>,
    }

    impl FlowHandler for Log {
        type State = ();
        fn open(&mut self, info: &FlowInfo, _: &PacketMeta) {
            self.opened.push(info.conn);
        }
        fn stream(
            &mut self,
            info: &FlowInfo,
            _: &mut (),
            dir: Dir,
            ev: StreamEvent<'_>,
            _: &PacketMeta,
        ) {
            if let StreamEvent::Data(d) = ev {
                self.bytes.push((info.conn, dir, d.to_vec()));
            }
        }
        fn close(&mut self, info: &FlowInfo, _: &mut (), reason: CloseReason, _: &PacketMeta) {
            self.closed.push((info.conn, reason));
        }
    }

    fn seg(
        sport: u16,
        dport: u16,
        seq: u32,
        syn: bool,
        fin: bool,
        payload: &[u8],
    ) -> TcpSegment<'_> {
        TcpSegment {
            src: SocketAddr::from(([10, 0, 0, 1], sport)),
            dst: SocketAddr::from(([10, 0, 0, 2], dport)),
            seq,
            ack: 0,
            syn,
            ack_flag: false,
            fin,
            rst: false,
            window: 1000,
            payload,
        }
    }

    fn at(index: u64, secs: i64) -> PacketMeta {
        PacketMeta {
            index,
            ts_ns: secs * 1_000_000_000,
        }
    }

    #[test]
    fn table_is_bounded_and_evicts_the_least_recent() {
        let cfg = FlowConfig {
            max_flows: 100,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg);
        let mut log = Log::default();
        for i in 0..1000u16 {
            t.segment(
                &seg(10_000 + i, 80, 1, false, false, b"x"),
                &at(i as u64 + 1, 0),
                &mut log,
            );
            assert!(t.len() <= 100);
        }
        assert_eq!(log.opened.len(), 1000);
        assert!(log.closed.iter().all(|(_, r)| *r == CloseReason::Evicted));
        assert!(t.stats().evicted >= 900);
        // The oldest went first.
        assert_eq!(log.closed[0].0, 0);
    }

    /// Each connection's info as it closed: what the flow table found out of it by then.
    #[derive(Default)]
    struct Closed(Vec<FlowInfo>);

    impl FlowHandler for Closed {
        type State = ();
        fn open(&mut self, _: &FlowInfo, _: &PacketMeta) {}
        fn stream(&mut self, _: &FlowInfo, _: &mut (), _: Dir, _: StreamEvent<'_>, _: &PacketMeta) {
        }
        fn close(&mut self, info: &FlowInfo, _: &mut (), _: CloseReason, _: &PacketMeta) {
            self.0.push(*info);
        }
    }

    fn with_ack(mut s: TcpSegment<'_>) -> TcpSegment<'_> {
        s.ack_flag = true;
        s
    }

    /// The segment the other way: from the responder, for one made from the initiator.
    fn back(mut s: TcpSegment<'_>) -> TcpSegment<'_> {
        std::mem::swap(&mut s.src, &mut s.dst);
        s
    }

    /// A milliseconds-timed packet.
    fn ms(index: u64, ms: i64) -> PacketMeta {
        PacketMeta {
            index,
            ts_ns: ms * 1_000_000,
        }
    }

    /// A handshake's times: the SYN the SYN-ACK answers (a retransmitted one), the SYN-ACK the
    /// ACK answers, the ACK; none for a connection whose SYN the capture missed.
    #[test]
    fn the_handshake_is_timed_from_the_syn_answered() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut h = Closed::default();
        for (segment, at) in [
            (seg(5000, 80, 1, true, false, b""), ms(1, 0)),
            (seg(5000, 80, 1, true, false, b""), ms(2, 1000)),
            (
                back(with_ack(seg(5000, 80, 9, true, false, b""))),
                ms(3, 1150),
            ),
            (with_ack(seg(5000, 80, 2, false, false, b"")), ms(4, 1152)),
            (with_ack(seg(5000, 80, 2, false, false, b"x")), ms(5, 1200)),
            // Joined after the SYN: the SYN-ACK alone times nothing.
            (
                back(with_ack(seg(6000, 81, 9, true, false, b""))),
                ms(6, 1300),
            ),
            (with_ack(seg(6000, 81, 2, false, false, b"")), ms(7, 1301)),
        ] {
            t.segment(&segment, &at, &mut h);
        }
        t.finish(&ms(8, 2000), &mut h);
        let hs = h.0[0].handshake.unwrap();
        assert_eq!((hs.syn_ts_ns, hs.ack_ts_ns), (1_000_000_000, 1_152_000_000));
        assert_eq!(hs.responder_side_ns(), 150_000_000);
        assert_eq!(hs.initiator_side_ns(), 2_000_000);
        assert_eq!(hs.rtt_ns(), 152_000_000);
        assert_eq!(h.0[1].handshake, None);
    }

    /// A receive window closed is counted once per run of zero windows, for the time until
    /// the window opened, or until the connection's end; a zero window on a FIN says nothing;
    /// a segment sent again counts for its sender.
    #[test]
    fn zero_windows_and_retransmissions_are_counted_per_direction() {
        let from_server = |seq, window, fin: bool| {
            let mut s = back(with_ack(seg(5000, 80, seq, false, fin, b"")));
            s.window = window;
            s
        };
        let mut t = FlowTable::new(FlowConfig::default());
        let mut f = Closed::default();
        t.segment(&seg(5000, 80, 1, false, false, b"ab"), &ms(1, 0), &mut f);
        t.segment(&seg(5000, 80, 1, false, false, b"ab"), &ms(2, 5), &mut f);
        t.segment(&from_server(1, 0, false), &ms(3, 10), &mut f);
        t.segment(&from_server(1, 0, false), &ms(4, 50), &mut f);
        t.segment(&from_server(1, 100, false), &ms(5, 110), &mut f);
        t.segment(&from_server(1, 0, false), &ms(6, 200), &mut f);
        t.segment(&from_server(1, 0, true), &ms(7, 230), &mut f);
        t.finish(&ms(8, 300), &mut f);
        let [client, server] = f.0[0].tcp;
        assert_eq!(client.retransmitted, 1);
        assert_eq!((client.zero_windows, client.zero_window_ns), (0, 0));
        assert_eq!(server.zero_windows, 2);
        // 10 → 110 ms, then 200 ms to the end at 300 ms.
        assert_eq!(server.zero_window_ns, 200_000_000);
    }

    /// Connections with an even number hold something until a sweep.
    #[derive(Default)]
    struct Waiter {
        ticked: Vec<u64>,
        closed: Vec<u64>,
    }

    impl FlowHandler for Waiter {
        type State = bool;
        fn open(&mut self, info: &FlowInfo, _: &PacketMeta) -> bool {
            info.conn % 2 == 0
        }
        fn stream(
            &mut self,
            _: &FlowInfo,
            _: &mut bool,
            _: Dir,
            _: StreamEvent<'_>,
            _: &PacketMeta,
        ) {
        }
        fn close(&mut self, info: &FlowInfo, _: &mut bool, _: CloseReason, _: &PacketMeta) {
            self.closed.push(info.conn);
        }
        fn waiting(&self, state: &bool) -> bool {
            *state
        }
        fn tick(&mut self, info: &FlowInfo, state: &mut bool, _: &PacketMeta) {
            self.ticked.push(info.conn);
            *state = false;
        }
    }

    /// A sweep ticks the connections that wait for one, in connection order, and ends the idle
    /// ones instead; one that no longer waits is not ticked again.
    #[test]
    fn sweeps_tick_the_waiting_connections_in_order() {
        let mut t = FlowTable::new(FlowConfig {
            idle_timeout_ns: 15 * 1_000_000_000,
            ..FlowConfig::default()
        });
        let mut w = Waiter::default();
        for (i, port) in [5u16, 1, 4, 2, 3].into_iter().enumerate() {
            t.segment(
                &seg(port, 80, 1, false, false, b"a"),
                &at(i as u64 + 1, 0),
                &mut w,
            );
        }
        // Connection 4 (port 3) stays active.
        t.segment(&seg(3, 80, 2, false, false, b"b"), &at(6, 8), &mut w);
        t.segment(&seg(9, 80, 1, false, false, b"c"), &at(7, 11), &mut w);
        assert_eq!(w.ticked, [0, 2, 4]);
        assert!(w.closed.is_empty());
        // The sweep at 22 s ends connections 0 to 3 as idle, and ticks none: 4 and 5 (port 9,
        // odd) do not wait.
        t.segment(&seg(3, 80, 3, false, false, b"d"), &at(8, 21), &mut w);
        t.segment(&seg(9, 80, 2, false, false, b"e"), &at(9, 22), &mut w);
        assert_eq!(w.ticked, [0, 2, 4]);
        assert_eq!(w.closed, [0, 1, 2, 3]);
    }

    /// A handler that notes the connections it is asked to compact.
    #[derive(Default)]
    struct Compacted(Vec<u64>);

    impl FlowHandler for Compacted {
        type State = u64;
        fn open(&mut self, info: &FlowInfo, _: &PacketMeta) -> u64 {
            info.conn
        }
        fn stream(
            &mut self,
            _: &FlowInfo,
            _: &mut u64,
            _: Dir,
            _: StreamEvent<'_>,
            _: &PacketMeta,
        ) {
        }
        fn close(&mut self, _: &FlowInfo, _: &mut u64, _: CloseReason, _: &PacketMeta) {}
        fn compact(&mut self, _: &FlowInfo, conn: &mut u64) {
            self.0.push(*conn);
        }
    }

    /// A connection is compacted at the first packet after its quiet time is up, and again at
    /// each sweep while it stays quiet; not before.
    #[test]
    fn sweeps_compact_the_quiet_connections() {
        let mut t = FlowTable::new(FlowConfig {
            quiet_ns: 5 * 1_000_000_000,
            ..FlowConfig::default()
        });
        let mut c = Compacted::default();
        t.segment(&seg(1, 80, 1, false, false, b"a"), &at(1, 0), &mut c);
        t.segment(&seg(2, 80, 1, false, false, b"b"), &at(2, 4), &mut c);
        assert!(c.0.is_empty());
        // At 8 s connection 0 has been quiet for 8 s, 1 for 4 s.
        t.segment(&seg(2, 80, 2, false, false, b"b"), &at(3, 8), &mut c);
        assert_eq!(c.0, [0]);
        // The sweep at 11 s (the first since 0 s) compacts 0 again; 1 has been quiet for 3 s.
        t.segment(&seg(3, 80, 1, false, false, b"c"), &at(4, 11), &mut c);
        assert_eq!(c.0, [0, 0]);
    }

    /// A connection heard from since it was queued waits for its own quiet time, and a
    /// compacted one is queued again by its next packet.
    #[test]
    fn quiet_time_counts_from_the_last_packet() {
        let mut t = FlowTable::new(FlowConfig {
            quiet_ns: 2 * 1_000_000_000,
            ..FlowConfig::default()
        });
        let mut c = Compacted::default();
        t.segment(&seg(1, 80, 1, false, false, b"a"), &at(1, 0), &mut c);
        t.segment(&seg(2, 80, 1, false, false, b"b"), &at(2, 1), &mut c);
        t.segment(&seg(3, 80, 1, false, false, b"c"), &at(3, 3), &mut c);
        assert_eq!(c.0, [0, 1]);
        // Connection 2 again before its time is up, and 1 again after its compaction.
        t.segment(&seg(3, 80, 2, false, false, b"d"), &at(4, 4), &mut c);
        t.segment(&seg(2, 80, 2, false, false, b"e"), &at(5, 4), &mut c);
        // At 5 s, 2's first packet is 2 s old, its last only 1 s.
        t.segment(&seg(1, 80, 2, false, false, b"f"), &at(6, 5), &mut c);
        assert_eq!(c.0, [0, 1]);
        // At 6 s, 1 and 2 have been quiet for 2 s.
        t.segment(&seg(4, 80, 1, false, false, b"g"), &at(7, 6), &mut c);
        assert_eq!(c.0, [0, 1, 1, 2]);
        // Queued: 0 (heard from at 5 s) and 3, once each.
        assert_eq!(t.quiet.len(), 2);
    }

    /// Connections evicted while queued leave their entries behind; a flood of them does not
    /// make the queue outgrow the table, and the survivors are still compacted in time.
    #[test]
    fn the_quiet_queue_stays_within_the_table() {
        let mut t = FlowTable::new(FlowConfig {
            max_flows: 10,
            quiet_ns: 1_000_000_000,
            ..FlowConfig::default()
        });
        let mut c = Compacted::default();
        for port in 1..=2000 {
            t.segment(
                &seg(port, 80, 1, false, false, b"a"),
                &at(port.into(), 0),
                &mut c,
            );
            assert!(t.quiet.len() <= 2 * t.len() + 64 + 1, "{}", t.quiet.len());
        }
        assert!(c.0.is_empty());
        t.segment(&seg(1, 81, 1, false, false, b"b"), &at(3000, 2), &mut c);
        c.0.sort_unstable();
        // The ten the table holds, the flood's last (compacted before one makes room for the
        // newcomer).
        assert_eq!(c.0, (1990..2000).collect::<Vec<u64>>());
    }

    #[test]
    fn idle_flows_expire_by_capture_time() {
        let mut t = FlowTable::new(FlowConfig {
            idle_timeout_ns: 60 * 1_000_000_000,
            ..FlowConfig::default()
        });
        let mut log = Log::default();
        t.segment(&seg(1, 80, 1, false, false, b"a"), &at(1, 0), &mut log);
        t.segment(&seg(2, 80, 1, false, false, b"b"), &at(2, 50), &mut log);
        t.segment(&seg(3, 80, 1, false, false, b"c"), &at(3, 100), &mut log);
        assert_eq!(log.closed, vec![(0, CloseReason::Idle)]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn new_syn_after_close_is_a_new_connection() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut log = Log::default();
        let c = |seq, syn, fin, p: &'static [u8]| seg(5000, 80, seq, syn, fin, p);
        let s = |seq, syn, fin| {
            let mut x = seg(80, 5000, seq, syn, fin, b"");
            std::mem::swap(&mut x.src, &mut x.dst);
            x.src = SocketAddr::from(([10, 0, 0, 2], 80));
            x.dst = SocketAddr::from(([10, 0, 0, 1], 5000));
            x
        };
        t.segment(&c(100, true, false, b""), &at(1, 0), &mut log);
        t.segment(&s(900, true, false), &at(2, 0), &mut log);
        t.segment(&c(101, false, true, b"hi"), &at(3, 0), &mut log);
        t.segment(&s(901, false, true), &at(4, 0), &mut log);
        assert_eq!(log.closed, vec![(0, CloseReason::Closed)]);
        // Same tuple, new SYN: connection 1.
        t.segment(&c(7000, true, false, b""), &at(5, 1), &mut log);
        t.segment(&c(7001, false, false, b"again"), &at(6, 1), &mut log);
        assert_eq!(log.opened, vec![0, 1]);
        assert_eq!(
            log.bytes,
            vec![
                (0, Dir::Forward, b"hi".to_vec()),
                (1, Dir::Forward, b"again".to_vec())
            ]
        );
    }
}
