//! The whole offline pipeline: packets in, events out.
//!
//! capture record → link/IP/TCP decode → flow table and reassembly → HTTP/2 connection state →
//! events to a [`Sink`]. One pass, bounded state.

use std::collections::BTreeMap;

use crate::capture::defrag::{Defragmenter, FragmentKey};
use crate::capture::link::{self, Skip, TcpSegment};
use crate::capture::Packet;
use crate::event::{
    ClosedFirst, ConnectionEnd, EndKind, ErrorKind, Event, HandshakeRtt, Sink, Tally, Wants,
};
use crate::grpc::schema::Schemas;
use crate::grpc::GrpcConfig;
use crate::http2::connection::{Connection, Ctx, Http2Config, Mode, QuietConnection};
use crate::tcp::{
    CloseReason, Dir, FlowConfig, FlowHandler, FlowInfo, FlowTable, FlowTableStats, PacketMeta,
    StreamEvent,
};
use crate::tls::{self, KeyLog};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub flows: FlowConfig,
    pub http2: Http2Config,
    pub grpc: GrpcConfig,
    /// Secrets for TLS connections (`--tls-keylog`); without them TLS is only recognised.
    pub tls_keys: Option<Arc<KeyLog>>,
}

/// Counts for the end-of-run summary that events alone do not carry.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub packets: u64,
    pub tcp_packets: u64,
    /// Packets that yielded no TCP segment, by reason.
    pub skipped_packets: BTreeMap<String, u64>,
    pub http2_connections: u64,
    /// HTTP/1.1 connections carrying gRPC-Web.
    pub http1_connections: u64,
    /// TCP connections that were not HTTP/2 (or not recognisable as such).
    pub other_connections: u64,
    pub other_bytes: u64,
    /// TCP connections that started with a TLS ClientHello.
    pub tls_connections: u64,
    /// Of those, the ones with application data decrypted.
    pub tls_decrypted: u64,
    pub first_ts_ns: Option<i64>,
    pub last_ts_ns: i64,
    pub flows: FlowTableStats,
}

impl Stats {
    /// Adds another dissector's counts (the workers of one capture).
    pub fn merge(&mut self, o: Stats) {
        self.packets += o.packets;
        self.tcp_packets += o.tcp_packets;
        for (k, v) in o.skipped_packets {
            *self.skipped_packets.entry(k).or_default() += v;
        }
        self.http2_connections += o.http2_connections;
        self.http1_connections += o.http1_connections;
        self.other_connections += o.other_connections;
        self.other_bytes += o.other_bytes;
        self.tls_connections += o.tls_connections;
        self.tls_decrypted += o.tls_decrypted;
        self.first_ts_ns = match (self.first_ts_ns, o.first_ts_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ts_ns = self.last_ts_ns.max(o.last_ts_ns);
        let (f, g) = (&mut self.flows, o.flows);
        f.connections += g.connections;
        f.segments += g.segments;
        f.retransmitted += g.retransmitted;
        f.out_of_order += g.out_of_order;
        f.gaps += g.gaps;
        f.gap_bytes += g.gap_bytes;
        f.expired += g.expired;
        f.evicted += g.evicted;
    }
}

/// A connection's HTTP/2 state: whole while packets come, in its quiet form once they have
/// stopped for a while (100,000 long-lived channels open at once took 367 MB kept whole, 230 MB
/// with it).
enum H2 {
    Live(Box<Connection>),
    Quiet(Box<QuietConnection>),
}

impl H2 {
    fn new(conn: Connection) -> Self {
        H2::Live(Box::new(conn))
    }

    /// The connection, made whole again if it was quiet.
    #[inline]
    fn live(&mut self) -> &mut Connection {
        if let H2::Quiet(_) = self {
            self.thaw();
        }
        match self {
            H2::Live(conn) => conn,
            H2::Quiet(_) => unreachable!("thawed above"),
        }
    }

    // At most once per quiet second of a connection: kept out of every packet's path.
    #[cold]
    #[inline(never)]
    fn thaw(&mut self) {
        if let H2::Quiet(quiet) = self {
            *self = H2::new(quiet.thaw());
        }
    }

    /// Gives back the room kept for the next packets, and takes the quiet form when nothing is
    /// half read.
    fn compact(&mut self) {
        if let H2::Live(conn) = self {
            conn.compact();
            if let Some(quiet) = conn.freeze() {
                *self = H2::Quiet(Box::new(quiet));
            }
        }
    }

    fn holds_calls(&self) -> bool {
        match self {
            H2::Live(conn) => conn.holds_calls(),
            // Held calls keep a connection whole.
            H2::Quiet(_) => false,
        }
    }
}

/// Per-connection state: the HTTP/2 side and what TCP told about the connection's life.
pub struct ConnState {
    h2: H2,
    /// TLS under the HTTP/2, when the connection started with a ClientHello.
    tls: Option<Box<tls::Session>>,
    /// The connection's first bytes while too few to tell whether they start a ClientHello.
    hello: Option<(Dir, Vec<u8>)>,
    fin: [bool; 2],
    rst: Option<Dir>,
    /// The first FIN or RST: its direction and time.
    first_close: Option<(Dir, i64)>,
    bytes: [u64; 2],
    last_ts_ns: i64,
}

struct Handler<'a> {
    cfg: &'a Http2Config,
    keys: Option<&'a Arc<KeyLog>>,
    budget: &'a tls::Budget,
    grpc: &'a GrpcConfig,
    schemas: &'a mut Schemas,
    sink: &'a mut dyn Sink,
    stats: &'a mut Stats,
    closed: Option<&'a mut Vec<u64>>,
}

impl Handler<'_> {
    fn ctx<'b>(&'b mut self, info: &'b FlowInfo, meta: &'b PacketMeta) -> Ctx<'b> {
        Ctx {
            info,
            meta,
            sink: &mut *self.sink,
            cfg: self.cfg,
            grpc: self.grpc,
            schemas: &mut *self.schemas,
        }
    }
}

impl FlowHandler for Handler<'_> {
    type State = ConnState;

    fn open(&mut self, info: &FlowInfo, _meta: &PacketMeta) -> ConnState {
        ConnState {
            h2: H2::new(Connection::new(info, self.cfg)),
            tls: None,
            hello: None,
            fin: [false; 2],
            rst: None,
            first_close: None,
            bytes: [0; 2],
            last_ts_ns: info.first_ts_ns,
        }
    }

    fn stream(
        &mut self,
        info: &FlowInfo,
        state: &mut ConnState,
        dir: Dir,
        event: StreamEvent<'_>,
        meta: &PacketMeta,
    ) {
        state.last_ts_ns = meta.ts_ns;
        // The connection's first bytes, when fewer than a ClientHello is told by, wait for more
        // (a hello whose record header came in a segment of its own).
        let mut held = None;
        if let Some((first, prefix)) = state.hello.take() {
            match event {
                StreamEvent::Data(bytes) if first == dir => {
                    held = Some([prefix.as_slice(), bytes].concat());
                }
                _ => {
                    // Not a hello after all: the HTTP/2 stage gets them as they came.
                    let mut ctx = self.ctx(info, meta);
                    state.h2.live().data(first, &prefix, &mut ctx);
                }
            }
        }
        if let StreamEvent::Data(arrived) = event {
            state.bytes[dir.index()] += arrived.len() as u64;
            let bytes = held.as_deref().unwrap_or(arrived);
            let at_start = state.bytes[dir.index()] == bytes.len() as u64
                && state.bytes[dir.other().index()] == 0;
            if at_start && state.tls.is_none() && tls::may_start_client_hello(bytes) {
                state.hello = Some((dir, bytes.to_vec()));
                return;
            }
            if at_start && tls::starts_client_hello(bytes) {
                let budget = self.budget.clone();
                state.tls = Some(Box::new(tls::Session::new(dir, self.keys.cloned(), budget)));
                state.h2.live().set_tls();
            } else if state.tls.is_none()
                && !info.handshake_seen
                && state.h2.live().mode() == Mode::Detect
                && state.bytes[dir.index()] < JOIN_LOOKAHEAD
                && tls::looks_joined(bytes)
            {
                // TLS joined after its handshake. What the HTTP/2 stage held while it looked
                // for frames was records: it starts afresh on what is decrypted.
                let mut session =
                    tls::Session::joined(dir, self.keys.cloned(), self.budget.clone());
                session.add_undecrypted(state.bytes[0] + state.bytes[1] - bytes.len() as u64);
                state.tls = Some(Box::new(session));
                state.h2 = H2::new(Connection::new(info, self.cfg));
                state.h2.live().set_tls();
            }
            let mut ctx = self.ctx(info, meta);
            match state.tls.as_mut() {
                Some(session) => {
                    let h2 = state.h2.live();
                    session.feed(dir, bytes, &mut |d, out| tls_output(h2, d, out, &mut ctx));
                }
                None => state.h2.live().data(dir, bytes, &mut ctx),
            }
            return;
        }
        let mut ctx = self.ctx(info, meta);
        match event {
            // Fed above.
            StreamEvent::Data(_) => {}
            StreamEvent::Gap(n) => match state.tls.as_mut() {
                Some(session) => {
                    let h2 = state.h2.live();
                    session.gap(dir, n, &mut |d, out| tls_output(h2, d, out, &mut ctx));
                }
                None => state.h2.live().gap(dir, n, &mut ctx),
            },
            StreamEvent::Fin => {
                state.fin[dir.index()] = true;
                state.first_close.get_or_insert((dir, meta.ts_ns));
            }
            StreamEvent::Rst => {
                state.rst = Some(dir);
                state.first_close.get_or_insert((dir, meta.ts_ns));
            }
        }
    }

    fn waiting(&self, state: &ConnState) -> bool {
        state.h2.holds_calls()
    }

    fn tick(&mut self, info: &FlowInfo, state: &mut ConnState, meta: &PacketMeta) {
        state
            .h2
            .live()
            .release_held(meta.ts_ns, &mut self.ctx(info, meta));
    }

    fn compact(&mut self, info: &FlowInfo, state: &mut ConnState) {
        state.h2.compact();
        self.sink.quiet(info.conn);
    }

    fn close(
        &mut self,
        info: &FlowInfo,
        state: &mut ConnState,
        reason: CloseReason,
        meta: &PacketMeta,
    ) {
        if let Some(closed) = self.closed.as_mut() {
            closed.push(info.conn);
        }
        if let Some((first, prefix)) = state.hello.take() {
            state
                .h2
                .live()
                .data(first, &prefix, &mut self.ctx(info, meta));
        }
        if let Some(session) = state.tls.as_mut() {
            let h2 = state.h2.live();
            let mut ctx = self.ctx(info, meta);
            session.finish(&mut |d, out| tls_output(h2, d, out, &mut ctx));
        }
        let conn = state.h2.live();
        conn.close(&mut self.ctx(info, meta));
        if matches!(conn.mode(), Mode::Http2 | Mode::Upgrade | Mode::Http1) {
            let client = conn.client_dir();
            let by_client = |d: Dir| d == client;
            let end = match (state.rst, state.fin, reason) {
                (Some(d), _, _) => EndKind::Rst {
                    by_client: by_client(d),
                },
                (None, [true, true], _) => EndKind::Fin,
                (None, [a, b], _) if a != b => EndKind::HalfClosed {
                    by_client: by_client(if a { Dir::Forward } else { Dir::Reverse }),
                },
                (None, _, CloseReason::Idle) => EndKind::Idle,
                (None, _, CloseReason::Evicted) => EndKind::Evicted,
                (None, _, CloseReason::Reused) => EndKind::Reused,
                _ => EndKind::CaptureEnd,
            };
            self.sink
                .event(Event::ConnectionEnd(Box::new(ConnectionEnd {
                    conn: info.conn,
                    client: info.src(client),
                    server: info.dst(client),
                    protocol: if conn.mode() == Mode::Http1 {
                        "http1"
                    } else {
                        "http2"
                    },
                    first_ts_ns: info.first_ts_ns,
                    last_ts_ns: state.last_ts_ns.max(info.first_ts_ns),
                    bytes: [
                        state.bytes[client.index()],
                        state.bytes[client.other().index()],
                    ],
                    // All of the connection's segments, not only those with bytes.
                    packets: info.tcp[0].packets + info.tcp[1].packets,
                    end,
                    mid: conn.joined_mid_way(),
                    tls: state.tls.as_ref().map(|s| s.info().clone()),
                    closed_first: state.first_close.map(|(d, ts_ns)| ClosedFirst {
                        by_client: by_client(d),
                        ts_ns,
                    }),
                    tcp: [info.tcp[client.index()], info.tcp[client.other().index()]],
                    // The handshake's initiator is the client but for an odd connection.
                    handshake: info.handshake.map(|h| {
                        let (server_ns, client_ns) = if client == Dir::Forward {
                            (h.responder_side_ns(), h.initiator_side_ns())
                        } else {
                            (h.initiator_side_ns(), h.responder_side_ns())
                        };
                        HandshakeRtt {
                            server_ns,
                            client_ns,
                        }
                    }),
                })));
        }
        let conn = state.h2.live();
        if let Some(session) = &state.tls {
            self.stats.tls_connections += 1;
            self.stats.tls_decrypted += u64::from(session.info().decrypted);
            // Bytes not dissected: all of a connection left encrypted, as before there was
            // decryption; of one decrypted, the records that were not.
            self.stats.other_bytes += if session.info().decrypted {
                session.undecrypted_bytes()
            } else {
                state.bytes[0] + state.bytes[1]
            };
        }
        match conn.mode() {
            Mode::Http2 | Mode::Upgrade => self.stats.http2_connections += 1,
            Mode::Http1 => self.stats.http1_connections += 1,
            Mode::Other | Mode::Detect => self.stats.other_connections += 1,
        }
        self.stats.other_bytes += conn.skipped_bytes();
    }
}

/// How far into a connection joined mid-way TLS records are looked for (per direction), while
/// the HTTP/2 stage has not recognised it.
const JOIN_LOOKAHEAD: u64 = 64 << 10;

/// Hands what TLS decryption gave to the HTTP/2 stage.
fn tls_output(h2: &mut Connection, dir: Dir, out: tls::Output<'_>, ctx: &mut Ctx<'_>) {
    match out {
        tls::Output::Plain(bytes) => h2.data(dir, bytes, ctx),
        tls::Output::Gap(bytes) => h2.gap(dir, bytes, ctx),
        tls::Output::Problem(why) => ctx.error(dir, None, ErrorKind::Tls, why),
    }
}

/// Streams packets through the pipeline into a sink.
pub struct Dissector {
    cfg: Config,
    flows: FlowTable<ConnState>,
    schemas: Schemas,
    stats: Stats,
    /// Number of the last packet seen, where the capture ends.
    last_index: u64,
    /// When [`Self::quiet`] last swept.
    last_quiet_ns: i64,
    /// What this dissection's TLS connections may still spend searching for keys, and hold
    /// while waiting for secrets.
    tls_budget: tls::Budget,
    /// IP datagrams being reassembled, from the first fragment on.
    defrag: Option<Box<Defragmenter>>,
    /// The last packet: the datagram it was a fragment of, and its segment's ports.
    last_fragment: Option<FragmentKey>,
    last_ports: Option<(u16, u16)>,
    /// The connections closed since [`Self::take_closed`], when asked to keep them.
    closed: Option<Vec<u64>>,
}

impl Dissector {
    /// With the bundled schemas only.
    pub fn new(cfg: Config) -> Self {
        Self::with_schemas(cfg, Schemas::bundled())
    }

    pub fn with_schemas(cfg: Config, schemas: Schemas) -> Self {
        Dissector {
            flows: FlowTable::new(cfg.flows),
            cfg,
            schemas,
            stats: Stats::default(),
            last_index: 0,
            last_quiet_ns: i64::MIN,
            tls_budget: tls::Budget::default(),
            defrag: None,
            last_fragment: None,
            last_ports: None,
            closed: None,
        }
    }

    /// Keeps the numbers of the connections that close (ended, expired, evicted or replaced)
    /// for [`Self::take_closed`]: whoever maps connection numbers can forget theirs.
    pub fn track_closed(&mut self) {
        self.closed.get_or_insert_with(Vec::new);
    }

    /// The connections closed since the last call, in the order they closed (none unless
    /// [`Self::track_closed`]). Their events have all been handed out.
    pub fn take_closed(&mut self) -> impl Iterator<Item = u64> + '_ {
        self.closed.iter_mut().flat_map(|c| c.drain(..))
    }

    pub fn schemas(&self) -> &Schemas {
        &self.schemas
    }

    /// The schemas, including what reflection exchanges taught, for a second pass.
    pub fn into_schemas(self) -> Schemas {
        self.schemas
    }

    /// Dissects one packet; returns the number of the TCP connection it belongs to, if any.
    pub fn packet(&mut self, pkt: &Packet<'_>, sink: &mut dyn Sink) -> Option<u64> {
        self.last_fragment = None;
        self.last_ports = None;
        match link::decode(pkt.link, pkt.data) {
            Ok(seg) => self.segment(pkt.index, pkt.ts_ns, &seg, sink),
            Err(Skip::IpFragment) => {
                // Taken out while the segment it may complete borrows it.
                let mut defrag = self.defrag.take().unwrap_or_default();
                let conn = match link::reassemble(pkt.link, pkt.data, &mut defrag, pkt.ts_ns) {
                    Ok(seg) => self.segment(pkt.index, pkt.ts_ns, &seg, sink),
                    Err(skip) => {
                        self.skipped(pkt.index, pkt.ts_ns, skip);
                        None
                    }
                };
                self.last_fragment = defrag.last_key();
                self.defrag = Some(defrag);
                conn
            }
            Err(skip) => {
                self.skipped(pkt.index, pkt.ts_ns, skip);
                None
            }
        }
    }

    /// The IP datagram the last packet was a fragment of: held (no connection yet) or
    /// completed by it (its connection's).
    pub fn last_fragment(&self) -> Option<FragmentKey> {
        self.last_fragment
    }

    /// The ports of the last packet's TCP segment (a reassembled datagram's, for the fragment
    /// that completed it).
    pub fn last_ports(&self) -> Option<(u16, u16)> {
        self.last_ports
    }

    /// A packet that carries no TCP segment, for why (decoded by the thread that shards
    /// packets across workers).
    pub fn skipped(&mut self, index: u64, ts_ns: i64, skip: Skip) {
        self.note_packet(index, ts_ns);
        self.count_skip(skip);
    }

    /// [`Self::packet`] for a packet already decoded down to TCP (by the thread that shards
    /// packets across workers, see [`crate::parallel`]).
    pub fn segment(
        &mut self,
        index: u64,
        ts_ns: i64,
        seg: &TcpSegment<'_>,
        sink: &mut dyn Sink,
    ) -> Option<u64> {
        self.note_packet(index, ts_ns);
        self.stats.tcp_packets += 1;
        self.last_ports = Some((seg.src.port(), seg.dst.port()));
        let meta = PacketMeta { index, ts_ns };
        let (flows, mut handler) = self.stages(sink);
        flows.segment(seg, &meta, &mut handler)
    }

    fn note_packet(&mut self, index: u64, ts_ns: i64) {
        self.stats.packets += 1;
        self.last_index = index;
        self.stats.first_ts_ns.get_or_insert(ts_ns);
        self.stats.last_ts_ns = ts_ns;
    }

    /// Expires the connections idle at this packet's time (see
    /// [`FlowConfig::external_sweeps`](crate::tcp::FlowConfig::external_sweeps)).
    pub fn sweep(&mut self, index: u64, ts_ns: i64, sink: &mut dyn Sink) {
        let meta = PacketMeta { index, ts_ns };
        let (flows, mut handler) = self.stages(sink);
        flows.sweep(&meta, &mut handler);
    }

    /// A live capture's wire is quiet at `now_ns` (its clock: the time of day): at most once a
    /// second, a sweep lets go of what waits for time to pass (calls held for an answer that may
    /// cross their reset) and expires idle connections, as a packet at that time would.
    pub fn quiet(&mut self, now_ns: i64, sink: &mut dyn Sink) {
        if self.last_quiet_ns != i64::MIN
            && now_ns.saturating_sub(self.last_quiet_ns) < 1_000_000_000
        {
            return;
        }
        self.last_quiet_ns = now_ns;
        self.sweep(self.last_index, now_ns, sink);
    }

    /// The flow table, and the stages after TCP that it hands reassembled bytes to.
    fn stages<'a>(
        &'a mut self,
        sink: &'a mut dyn Sink,
    ) -> (&'a mut FlowTable<ConnState>, Handler<'a>) {
        let Dissector {
            cfg,
            flows,
            schemas,
            stats,
            tls_budget,
            closed,
            ..
        } = self;
        let handler = Handler {
            cfg: &cfg.http2,
            keys: cfg.tls_keys.as_ref(),
            budget: tls_budget,
            grpc: &cfg.grpc,
            schemas,
            sink,
            stats,
            closed: closed.as_mut(),
        };
        (flows, handler)
    }

    fn count_skip(&mut self, skip: Skip) {
        *self
            .stats
            .skipped_packets
            .entry(skip.describe())
            .or_default() += 1;
    }

    /// End of input: open connections are flushed and their calls reported.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> Stats {
        // The last packet's own number: records that were not packets leave gaps in the count.
        self.finish_at(self.last_index, self.stats.last_ts_ns, sink)
    }

    /// [`finish`](Self::finish) for a dissector that saw a share of the capture: what ends
    /// now ends at the capture's last packet, `index` at `ts_ns`, not at this one's last.
    pub fn finish_at(&mut self, index: u64, ts_ns: i64, sink: &mut dyn Sink) -> Stats {
        let meta = PacketMeta { index, ts_ns };
        let (flows, mut handler) = self.stages(sink);
        flows.finish(&meta, &mut handler);
        self.stats.flows = self.flows.stats();
        self.stats.clone()
    }

    /// Ends at most `n` of the connections still open, the lowest-numbered, as
    /// [`finish_at`](Self::finish_at) ends them all; true when none is left. A worker hands
    /// the end of the input on in such pieces, so that its events need not be held at once.
    pub fn finish_some_at(
        &mut self,
        index: u64,
        ts_ns: i64,
        n: usize,
        sink: &mut dyn Sink,
    ) -> bool {
        let meta = PacketMeta { index, ts_ns };
        let (flows, mut handler) = self.stages(sink);
        flows.finish_some(n, &meta, &mut handler)
    }
}

/// Opens a capture for dissection with `cfg`: TLS secrets embedded in it (pcapng Decryption
/// Secrets Blocks) join `cfg`'s key log as they are met.
pub fn open_capture(
    path: &str,
    cfg: &Config,
) -> Result<crate::capture::CaptureReader, crate::capture::CaptureError> {
    let mut reader = crate::capture::CaptureReader::open(path)?;
    if let Some(keys) = &cfg.tls_keys {
        let keys = keys.clone();
        reader.on_tls_secrets(Box::new(move |text| {
            keys.add_text(&String::from_utf8_lossy(text))
        }));
    }
    Ok(reader)
}

/// Reads a capture once, looking only at server-reflection responses, and returns the schemas
/// with what they taught, so that a second pass decodes every call with them. Reading errors are
/// left for the main pass to report.
pub fn harvest_schemas(path: &str, schemas: Schemas, cfg: &Config, limit: u64) -> Schemas {
    harvest_schemas_with(path, schemas, cfg, limit, u64::MAX, |_, _| true)
}

/// [`harvest_schemas`] over the packets in the first `max_bytes` of the file (counted as the
/// records' lengths with their headers), calling `tick(bytes, packets)` with those counts so far
/// after each packet; the pass ends early when it returns false.
pub fn harvest_schemas_with(
    path: &str,
    schemas: Schemas,
    cfg: &Config,
    limit: u64,
    max_bytes: u64,
    mut tick: impl FnMut(u64, u64) -> bool,
) -> Schemas {
    // Standard input or a pipe can be read only once.
    if !crate::capture::rereadable(path) || !worth_a_pass(path, cfg, limit, max_bytes) {
        return schemas;
    }
    let Ok(mut reader) = open_capture(path, cfg) else {
        return schemas;
    };
    let mut cfg = cfg.clone();
    cfg.grpc.bodies = crate::grpc::Bodies::Skip;
    let mut dissector = Dissector::with_schemas(cfg, schemas);
    let mut discard = Discard::default();
    let (mut seen, mut bytes) = (0u64, 0u64);
    let _ = reader.for_each_packet(|pkt| {
        dissector.packet(pkt, &mut discard);
        seen += 1;
        bytes += pkt.data.len() as u64 + 16;
        seen < limit && bytes <= max_bytes && tick(bytes, seen)
    });
    dissector.finish(&mut discard);
    dissector.into_schemas()
}

/// Whether a schema pass of at most `limit` packets and `max_bytes` bytes should run. A pass cut
/// short by a packet count (`-c`) costs less than searching the whole file would, so it runs.
pub(crate) fn worth_a_pass(path: &str, cfg: &Config, limit: u64, max_bytes: u64) -> bool {
    limit != u64::MAX || may_hold_reflection(path, cfg, max_bytes)
}

/// Whether a pass gathering schemas from server reflection could learn anything from the first
/// `max_bytes` of the capture at `path`. Answered by a search of the file's bytes for the start
/// of the reflection methods' paths (see [`reflection_path_starts`]), so that a capture without
/// them is not dissected twice: only the first request on a connection spells a path out (later
/// ones name it by its HPACK table index), and it spells it in one of two ways.
///
/// Encrypted traffic hides its paths from the search, so a capture that can be decrypted (a key
/// log given, or TLS secrets inside the pcapng) always gets the full pass; so does a file that
/// cannot be searched, whose reading error the main pass reports. A path split across two TCP
/// segments escapes the search: the calls before the reflection exchange are then decoded as a
/// single pass decodes them.
///
/// [`reflection_path_starts`]: crate::grpc::message::reflection_path_starts
pub fn may_hold_reflection(path: &str, cfg: &Config, max_bytes: u64) -> bool {
    if cfg.tls_keys.as_ref().is_some_and(|keys| !keys.is_empty()) {
        return true;
    }
    let [plain, coded] = crate::grpc::message::reflection_path_starts();
    // Lines of a key log, as a pcapng Decryption Secrets Block holds them (TLS 1.2 and 1.3).
    let secrets: [&[u8]; 2] = [b"CLIENT_RANDOM ", b"TRAFFIC_SECRET_0 "];
    crate::capture::scan::holds_any(path, &[&plain, &coded], &secrets, max_bytes).unwrap_or(true)
}

/// A sink that drops everything. Its counts let the dissection skip building events.
#[derive(Default)]
pub struct Discard(Tally);

impl Sink for Discard {
    fn event(&mut self, _: Event) {}

    fn wants(&mut self) -> Wants<'_> {
        Wants::Counts(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::KeyLog;

    fn no_keys() -> Config {
        Config {
            tls_keys: Some(Arc::new(KeyLog::from_text(""))),
            ..Config::default()
        }
    }

    /// Compacted after every packet, connections take their quiet form when nothing is half read,
    /// and stay whole while a frame is.
    /// `tests/robustness.rs` checks that the events are the same as without.
    #[test]
    fn quiet_connections_take_their_quiet_form_between_frames() {
        for (file, mostly_quiet) in [
            ("testdata/grpc-health.pcap", true),
            ("testdata/grpc-bulk.pcap", false),
        ] {
            let mut cfg = Config::default();
            cfg.flows.external_sweeps = true;
            cfg.flows.quiet_ns = 0;
            let mut d = Dissector::new(cfg);
            let mut events = Vec::new();
            let (mut quiet, mut live) = (0, 0);
            let mut reader = crate::capture::CaptureReader::open(file).unwrap();
            reader
                .for_each_packet(|p| {
                    d.packet(p, &mut events);
                    d.sweep(p.index, p.ts_ns, &mut events);
                    for state in d.flows.states() {
                        match state.h2 {
                            H2::Quiet(_) => quiet += 1,
                            H2::Live(_) => live += 1,
                        }
                    }
                    true
                })
                .unwrap();
            // Health checks end at packet boundaries but for the preface's exchange; 16 kB
            // frames in segments of 1.5 kB mostly do not.
            assert!(quiet > 0, "{file}: never quiet");
            assert_eq!(
                quiet > 10 * live,
                mostly_quiet,
                "{file}: {quiet} quiet, {live} whole"
            );
        }
    }

    #[test]
    fn only_captures_that_may_hold_reflection_get_the_schema_pass() {
        // Health checks only: nothing to learn, so no second reading.
        assert!(!may_hold_reflection(
            "testdata/grpc-health.pcap",
            &no_keys(),
            u64::MAX
        ));
        assert!(!may_hold_reflection(
            "testdata/grpc-bulk.pcap",
            &no_keys(),
            u64::MAX
        ));
        // Encrypted, and decryptable with the key log given: its paths cannot be searched.
        let keys = std::fs::read_to_string("testdata/grpc-tls.keylog").unwrap();
        let with_keys = Config {
            tls_keys: Some(Arc::new(KeyLog::from_text(&keys))),
            ..Config::default()
        };
        assert!(may_hold_reflection(
            "testdata/grpc-tls.pcap",
            &with_keys,
            u64::MAX
        ));
        assert!(!may_hold_reflection(
            "testdata/grpc-tls.pcap",
            &no_keys(),
            u64::MAX
        ));
        // TLS secrets inside the pcapng (a Decryption Secrets Block) decrypt it all the same.
        let dsb = "../shared/captures/public/http2-16-ssl.pcapng";
        if std::path::Path::new(dsb).exists() {
            assert!(may_hold_reflection(dsb, &no_keys(), u64::MAX));
        }
        // A file that cannot be searched is left to the pass, which reports it.
        assert!(may_hold_reflection("testdata/missing.pcap", &no_keys(), 1));
    }

    #[test]
    fn the_coded_path_start_is_a_prefix_of_both_reflection_paths_coded() {
        let [plain, coded] = crate::grpc::message::reflection_path_starts();
        for path in [
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(path.as_bytes().starts_with(&plain));
            let mut whole = Vec::new();
            crate::http2::hpack::huffman::encode(path.as_bytes(), &mut whole);
            assert!(whole.starts_with(&coded), "{path}");
        }
        // Long enough not to turn up by chance in other traffic.
        assert!(coded.len() >= 12, "{coded:?}");
    }
}
