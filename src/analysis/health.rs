//! Connection health: keepalive PINGs and their round trips, GOAWAYs, resets, idle periods and
//! flow-control windows of every connection, reported when the connection ends.
//!
//! It is a [`Sink`]: it follows frame, call and connection events, keeps per-connection state only
//! while the connection lives, and hands each finished report to a callback.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::analysis::counts::{self, Counts};
use crate::analysis::kept::PerConn;
use crate::event::{ConnectionEnd, EndKind, Event, FrameDetail, FrameEvent, Sink};
use crate::http2::call::lossless;
use crate::http2::frame::{error_code_label, setting};
use crate::output::jsonl::{end_by, ts};

/// Every frame looks up its connection, and many their stream: SipHash was a fifth of the
/// analysis. Iteration order never reaches the report (it is sorted where it shows).
type Fast = foldhash::fast::RandomState;

/// Load-balancer idle timeouts a silent connection may hit: (seconds, who uses it).
pub const IDLE_TIMEOUTS: &[(u64, &str)] = &[
    (60, "AWS ELB/ALB default idle timeout (60 s)"),
    (350, "AWS NLB idle timeout (350 s)"),
    (600, "GCP load balancer idle timeout (10 min)"),
];

const DEFAULT_WINDOW: i64 = 65_535;
/// PINGs awaiting their ACK kept per side, so a flood cannot grow the state.
const MAX_PENDING_PINGS: usize = 64;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SideHealth {
    pub pings: u64,
    pub ping_acks_received: u64,
    /// Round trips from each PING to its ACK.
    pub rtts: Spread,
    pub unacked_pings: u64,
    /// Intervals between consecutive PINGs of this side.
    pub ping_intervals: Spread,
    /// RST_STREAMs by error code, sorted by it; past [`MAX_RESET_CODES`] codes, the rest under
    /// "other".
    pub resets: Counts,
    /// The first GOAWAYs and the latest, [`MAX_GOAWAYS`] in all.
    pub goaways: Vec<GoAwayInfo>,
    /// GOAWAYs sent between those kept.
    pub goaways_not_kept: u64,
    /// Connection-level send window as this side sees it, and its extremes.
    window: i64,
    pub max_window: i64,
    /// Time spent with the connection send window at or below zero while having sent DATA.
    pub blocked_ns: i64,
    blocked_since: Option<i64>,
    /// Time from WINDOW_UPDATEs that reopened the exhausted connection window to this side's
    /// next DATA, and from those that reopened a stream's to its next DATA on the stream,
    /// unless HEADERS came first. Near the receiver this is the update's way to the sender and
    /// the DATA's way back (a round trip, while the time blocked is next to nothing); near the
    /// sender, next to nothing. With the time blocked, it is the sender's wait wherever the
    /// capture was taken, when the sender had more to send.
    pub refill_ns: i64,
    refill_since: Option<i64>,
    pub stream_refill_ns: i64,
    pub data_bytes: u64,
    /// Stream-level send windows of this side: the initial size its peer announced, the
    /// largest a stream reached, and the time streams spent blocked on a zero stream window.
    stream_initial: i64,
    streams: HashMap<u32, StreamWindow, Fast>,
    /// This side's SETTINGS its peer has not acknowledged yet, oldest first: what they say
    /// takes effect for the peer at its ACK, which follows in its bytes everything it sent
    /// before it had them.
    unacked_settings: VecDeque<PendingSettings>,
    pub max_stream_window: i64,
    pub stream_blocked_ns: i64,
    /// PINGs sent since this side last sent HEADERS or DATA (a flood has no traffic between),
    /// and when that run began.
    pings_without_data: u64,
    run_start_ns: i64,
    pub max_pings_without_data: u64,
    /// A run of PINGs without data, at least `PING_FLOOD` long and faster than one a second.
    pub ping_flood: bool,
    last_ping_ts: Option<i64>,
    pending: VecDeque<([u8; 8], i64)>,
    /// This side ended the connection (FIN or RST) while a PING of its own went unanswered:
    /// how long after the first such PING. A keepalive timeout at work, typically.
    pub closed_after_unacked_ping_ns: Option<i64>,
}

/// Count, least, greatest and sum of durations: what the report shows of round trips and
/// intervals, kept in constant space however long a connection PINGs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spread {
    pub count: u64,
    pub min_ns: i64,
    pub max_ns: i64,
    /// The sum, exact whatever a hostile capture's durations add up to: an `i128` kept as its
    /// two halves, since an `i128` field would align every connection's report to 16 bytes.
    sum_ns: [u64; 2],
}

impl Spread {
    pub fn add(&mut self, ns: i64) {
        if self.count == 0 || ns < self.min_ns {
            self.min_ns = ns;
        }
        if self.count == 0 || ns > self.max_ns {
            self.max_ns = ns;
        }
        self.count += 1;
        let sum = self.sum() + i128::from(ns);
        self.sum_ns = [sum as u64, (sum >> 64) as u64];
    }

    fn sum(&self) -> i128 {
        (i128::from(self.sum_ns[1] as i64) << 64) | i128::from(self.sum_ns[0])
    }

    pub fn avg_ns(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum() as f64 / self.count as f64)
    }

    /// `{"count", "min_ms", "avg_ms", "max_ms"}`, or null when empty.
    fn to_json(self) -> Value {
        match self.avg_ns() {
            None => Value::Null,
            Some(avg) => {
                json!({"count": self.count, "min_ms": ms(self.min_ns), "avg_ms": avg / 1e6, "max_ms": ms(self.max_ns)})
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoAwayInfo {
    pub ts_ns: i64,
    pub last_stream_id: u32,
    /// The error code's name (or number): most are names, which need no allocation.
    pub error: Cow<'static, str>,
    pub debug: String,
    /// Client streams above last-stream-id: refused, safe to retry.
    pub refused_streams: Vec<u32>,
    /// Streams at or below last-stream-id still open when it came.
    pub running_streams: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionHealth {
    pub conn: u64,
    /// The connection's ends: as its end says, or, until it ends (in a snapshot, or a report at
    /// [`Health::finish`] of a connection whose end never came), as its frames say so far.
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    /// `[client, server]` once known (by the first frame's direction until calls say otherwise).
    pub sides: [SideHealth; 2],
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
    pub longest_idle_ns: i64,
    pub longest_idle_at_ns: i64,
    pub calls: u64,
    pub frames: u64,
    /// `RST_STREAM REFUSED_STREAM` answers (stream limit reached, or a GOAWAY).
    pub refused_by_limit: u64,
    /// What the server's SETTINGS said, last.
    pub max_concurrent_streams: Option<u32>,
    /// The limit the client had: the server's, from the client's SETTINGS ACK on. Streams the
    /// client opened before it had the server's SETTINGS do not count against it (a client
    /// may open several before the server's first SETTINGS reaches it).
    stream_limit: Option<u32>,
    /// The most client streams open at once.
    pub peak_open_streams: u64,
    /// Time the client had as many streams open as the server's `MAX_CONCURRENT_STREAMS`
    /// allows, once it had that limit: a new call had to wait for one to end (or was refused).
    pub at_stream_limit_ns: i64,
    at_stream_limit_since: Option<i64>,
    /// Streams the client opened while it had as many open as the limit it had: beyond what
    /// RFC 9113 §5.1.2 allows.
    pub streams_opened_over_limit: u64,
    /// Boxed: set only as the report goes out, and inline it would be a third of the state of
    /// every connection still open. Never packed: a connection with its end is reported.
    #[serde(skip)]
    pub end: Option<Box<ConnectionEnd>>,
    open_streams: HashSet<u32, Fast>,
    last_frame_ts: Option<i64>,
}

impl ConnectionHealth {
    fn stream_closed(&mut self, stream: u32) {
        self.open_streams.remove(&stream);
        if self.open_streams.is_empty() {
            self.open_streams = HashSet::default();
        }
    }

    fn new(conn: u64, ts: i64) -> Self {
        ConnectionHealth {
            conn,
            client: None,
            server: None,
            sides: [side(), side()],
            first_ts_ns: ts,
            last_ts_ns: ts,
            longest_idle_ns: 0,
            longest_idle_at_ns: ts,
            calls: 0,
            frames: 0,
            refused_by_limit: 0,
            max_concurrent_streams: None,
            stream_limit: None,
            peak_open_streams: 0,
            at_stream_limit_ns: 0,
            at_stream_limit_since: None,
            streams_opened_over_limit: 0,
            end: None,
            open_streams: HashSet::default(),
            last_frame_ts: None,
        }
    }

    /// 0 for the client's side, 1 for the server's, as the dissector says of the frame. A
    /// connection joined mid-way may learn late which side is the client: what was counted
    /// under the guess changes sides with it.
    fn side_of(&mut self, src: SocketAddr, dst: SocketAddr, from_client: bool) -> usize {
        let (client, server) = if from_client { (src, dst) } else { (dst, src) };
        match (self.client, self.server) {
            (Some(c), Some(s)) if (c, s) == (client, server) => {}
            (Some(c), Some(s)) if (c, s) == (server, client) => {
                self.sides.swap(0, 1);
                (self.client, self.server) = (Some(client), Some(server));
            }
            _ => (self.client, self.server) = (Some(client), Some(server)),
        }
        usize::from(!from_client)
    }

    /// Follows the open streams against the server's limit, after either changed at `ts`.
    fn streams_changed(&mut self, ts: i64) {
        let open = self.open_streams.len() as u64;
        self.peak_open_streams = self.peak_open_streams.max(open);
        let at_limit = self.stream_limit.is_some_and(|m| open >= u64::from(m));
        match (at_limit, self.at_stream_limit_since) {
            (true, None) => self.at_stream_limit_since = Some(ts),
            (false, Some(since)) => {
                add_span(&mut self.at_stream_limit_ns, since, ts);
                self.at_stream_limit_since = None;
            }
            _ => {}
        }
    }

    /// Load-balancer idle timeouts the longest silence reached, when no PING broke it.
    pub fn idle_warnings(&self) -> Vec<&'static str> {
        IDLE_TIMEOUTS
            .iter()
            .filter(|(secs, _)| self.longest_idle_ns >= *secs as i64 * 1_000_000_000)
            .map(|(_, what)| *what)
            .collect()
    }
}

fn side() -> SideHealth {
    SideHealth {
        window: DEFAULT_WINDOW,
        max_window: DEFAULT_WINDOW,
        stream_initial: DEFAULT_WINDOW,
        max_stream_window: DEFAULT_WINDOW,
        ..SideHealth::default()
    }
}

/// Lets go of an emptied queue's room: a connection between PINGs or SETTINGS would hold it
/// for nothing, and most connections open are between them.
fn free_if_empty<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() {
        *queue = VecDeque::new();
    }
}

/// Adds the time from `from` to `to` to `total`: nothing when time went backwards (a capture
/// out of order), and at most `i64::MAX` in all, whatever a hostile capture's times add up to.
fn add_span(total: &mut i64, from: i64, to: i64) {
    *total = total.saturating_add(to.saturating_sub(from).max(0));
}

/// Open streams whose windows are followed, per side.
const MAX_STREAM_WINDOWS: usize = 10_000;
/// Client streams followed as open, for GOAWAYs and the stream limit.
const MAX_OPEN_STREAMS: usize = 10_000;
/// A side's SETTINGS followed while its peer has not acknowledged them (a peer that never
/// does would otherwise grow the queue with each).
const MAX_UNACKED_SETTINGS: usize = 64;
/// What a side's report keeps of what a hostile capture could repeat without end: error codes
/// of resets (any 32-bit value), GOAWAYs, and the debug data of each.
pub const MAX_RESET_CODES: usize = 32;
pub const MAX_GOAWAYS: usize = 16;
const MAX_GOAWAY_DEBUG: usize = 1024;

/// gRPC servers answer PINGs without data in between, more often than every 5 minutes, with a
/// `too_many_pings` GOAWAY (by default); this many in a row, faster than one a second, is called
/// a flood whatever the server did.
const PING_FLOOD: u64 = 10;

/// What a SETTINGS frame says that the analysis follows, until the peer acknowledges it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct PendingSettings {
    max_concurrent_streams: Option<u32>,
    initial_window_size: Option<u32>,
}

/// A stream's send window, and since when it has been exhausted, or reopened and waiting for
/// the stream's next DATA (see `SideHealth::refill_ns`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct StreamWindow {
    window: i64,
    blocked_since: Option<i64>,
    refill_since: Option<i64>,
}

impl SideHealth {
    /// RST_STREAMs this side sent with `code` (a name such as `CANCEL`, or `other`).
    pub fn resets_with(&self, code: &str) -> u64 {
        counts::get(&self.resets, code)
    }

    fn stream_window(&mut self, stream: u32) -> &mut StreamWindow {
        if self.streams.len() >= MAX_STREAM_WINDOWS && !self.streams.contains_key(&stream) {
            self.streams.clear();
        }
        let initial = self.stream_initial;
        self.streams.entry(stream).or_insert(StreamWindow {
            window: initial,
            blocked_since: None,
            refill_since: None,
        })
    }

    /// The stream's DATA is over (END_STREAM, on DATA or on trailers, or a reset): the time it
    /// spent blocked ends here, and its window is no longer followed.
    fn end_stream(&mut self, stream: u32, ts: i64) {
        if let Some(since) = self.streams.remove(&stream).and_then(|w| w.blocked_since) {
            add_span(&mut self.stream_blocked_ns, since, ts);
        }
        if self.streams.is_empty() {
            // A map keeps its room when emptied: a connection between calls would hold it.
            self.streams = HashMap::default();
        }
    }

    fn unblock_stream(&mut self, stream: u32, ts: i64) {
        if let Some(w) = self.streams.get_mut(&stream) {
            if w.window > 0 {
                if let Some(t) = w.blocked_since.take() {
                    add_span(&mut self.stream_blocked_ns, t, ts);
                    w.refill_since = Some(ts);
                }
            }
        }
    }
}

/// Follows events, reports each connection's health when it ends (or at [`Health::finish`]).
pub struct Health<F: FnMut(ConnectionHealth)> {
    conns: PerConn<ConnectionHealth>,
    report: F,
}

impl<F: FnMut(ConnectionHealth)> Health<F> {
    pub fn new(report: F) -> Self {
        Health {
            conns: PerConn::default(),
            report,
        }
    }

    /// Connection `conn` has gone quiet ([`Sink::quiet`]): its figures are packed until its
    /// next frame, call or end.
    pub fn quiet(&mut self, conn: u64) {
        self.conns.quiet(conn);
    }

    /// Follows one frame; the same as passing it as an event, without giving it away.
    pub fn frame(&mut self, f: &FrameEvent) {
        let o = &f.origin;
        let h = self
            .conns
            .whole(o.conn, || ConnectionHealth::new(o.conn, o.ts_ns));
        h.frames += 1;
        if let Some(prev) = h.last_frame_ts {
            let idle = o.ts_ns.saturating_sub(prev);
            if idle > h.longest_idle_ns {
                h.longest_idle_ns = idle;
                h.longest_idle_at_ns = prev;
            }
        }
        h.last_frame_ts = Some(o.ts_ns);
        h.last_ts_ns = h.last_ts_ns.max(o.ts_ns);
        let me = h.side_of(o.src, o.dst, f.from_client);
        let peer = 1 - me;
        let stream = f.header.stream;
        match &f.detail {
            FrameDetail::Ping { ack: false, opaque } => {
                let s = &mut h.sides[me];
                s.pings += 1;
                if s.pings_without_data == 0 {
                    s.run_start_ns = o.ts_ns;
                }
                s.pings_without_data += 1;
                s.max_pings_without_data = s.max_pings_without_data.max(s.pings_without_data);
                let run = s.pings_without_data as i64;
                if run >= PING_FLOOD as i64
                    && o.ts_ns.saturating_sub(s.run_start_ns) < (run - 1) * 1_000_000_000
                {
                    s.ping_flood = true;
                }
                if let Some(prev) = s.last_ping_ts {
                    s.ping_intervals.add(o.ts_ns.saturating_sub(prev));
                }
                s.last_ping_ts = Some(o.ts_ns);
                if s.pending.len() >= MAX_PENDING_PINGS {
                    s.pending.pop_front();
                    s.unacked_pings += 1;
                }
                s.pending.push_back((*opaque, o.ts_ns));
            }
            FrameDetail::Ping { ack: true, opaque } => {
                // The ACK answers a PING of the other side.
                let s = &mut h.sides[peer];
                s.ping_acks_received += 1;
                if let Some(i) = s.pending.iter().position(|(op, _)| op == opaque) {
                    if let Some((_, sent)) = s.pending.remove(i) {
                        s.rtts.add(o.ts_ns.saturating_sub(sent));
                    }
                    free_if_empty(&mut s.pending);
                }
            }
            FrameDetail::GoAway {
                last_stream_id,
                error_code,
                debug_data,
            } => {
                let mut refused = Vec::new();
                let mut running = Vec::new();
                // A GOAWAY governs the streams the other side opened: the server's, the client's
                // calls; the client's, streams the server pushes, which are not followed here.
                if me == 1 {
                    for &s in &h.open_streams {
                        if s > *last_stream_id {
                            refused.push(s);
                        } else {
                            running.push(s);
                        }
                    }
                }
                refused.sort_unstable();
                running.sort_unstable();
                let debug = match debug_data.get(..MAX_GOAWAY_DEBUG) {
                    Some(head) if debug_data.len() > MAX_GOAWAY_DEBUG => {
                        format!("{}… ({} bytes)", lossless(head), debug_data.len())
                    }
                    _ => lossless(debug_data),
                };
                let goaways = &mut h.sides[me].goaways;
                if goaways.len() >= MAX_GOAWAYS {
                    goaways.pop();
                    h.sides[me].goaways_not_kept += 1;
                }
                // Most connections see one GOAWAY a side, if any: room for four (what a first
                // push makes) would be most of a connection's report.
                goaways.reserve_exact(1);
                h.sides[me].goaways.push(GoAwayInfo {
                    ts_ns: o.ts_ns,
                    last_stream_id: *last_stream_id,
                    error: error_code_label(*error_code),
                    debug,
                    refused_streams: refused,
                    running_streams: running,
                });
            }
            FrameDetail::RstStream { error_code } => {
                let code = error_code_label(*error_code);
                let resets = &mut h.sides[me].resets;
                counts::add(resets, &code, 1, MAX_RESET_CODES, "other");
                if *error_code == 0x7 {
                    h.refused_by_limit += 1;
                }
                h.stream_closed(stream);
                for s in &mut h.sides {
                    s.end_stream(stream, o.ts_ns);
                }
            }
            FrameDetail::Settings { ack: true, .. } => {
                // This side has its peer's oldest unacknowledged SETTINGS, from here on.
                let unacked = &mut h.sides[peer].unacked_settings;
                let oldest = unacked.pop_front();
                free_if_empty(unacked);
                if let Some(pending) = oldest {
                    if let Some(limit) = pending.max_concurrent_streams.filter(|_| me == 0) {
                        h.stream_limit = Some(limit);
                    }
                    // The peer's receive window for streams: this side's stream send windows
                    // start there, and open ones move by the difference (RFC 9113 §6.9.2). The
                    // connection window stays at 65535 whatever it says.
                    if let Some(size) = pending.initial_window_size {
                        let s = &mut h.sides[me];
                        let delta = i64::from(size) - s.stream_initial;
                        s.stream_initial = i64::from(size);
                        s.max_stream_window = s.max_stream_window.max(i64::from(size));
                        for w in s.streams.values_mut() {
                            w.window += delta;
                        }
                    }
                }
            }
            FrameDetail::Settings {
                ack: false,
                settings,
            } => {
                let last = |id: u16| settings.iter().rev().find(|s| s.id == id).map(|s| s.value);
                let pending = PendingSettings {
                    max_concurrent_streams: last(setting::MAX_CONCURRENT_STREAMS),
                    initial_window_size: last(setting::INITIAL_WINDOW_SIZE),
                };
                if me == 1 {
                    if let Some(limit) = pending.max_concurrent_streams {
                        h.max_concurrent_streams = Some(limit);
                    }
                }
                let s = &mut h.sides[me];
                if s.unacked_settings.len() < MAX_UNACKED_SETTINGS {
                    s.unacked_settings.push_back(pending);
                }
            }
            FrameDetail::WindowUpdate { increment } if stream != 0 => {
                let s = &mut h.sides[peer];
                let w = s.stream_window(stream);
                w.window += *increment as i64;
                let now = w.window;
                s.max_stream_window = s.max_stream_window.max(now);
                s.unblock_stream(stream, o.ts_ns);
            }
            FrameDetail::WindowUpdate { increment } => {
                // The peer may now send more on the connection.
                let s = &mut h.sides[peer];
                s.window += *increment as i64;
                s.max_window = s.max_window.max(s.window);
                if s.window > 0 {
                    if let Some(since) = s.blocked_since.take() {
                        add_span(&mut s.blocked_ns, since, o.ts_ns);
                        s.refill_since = Some(o.ts_ns);
                    }
                }
            }
            FrameDetail::Data { .. } => {
                let s = &mut h.sides[me];
                s.pings_without_data = 0;
                s.data_bytes += f.header.length as u64;
                if let Some(since) = s.refill_since.take() {
                    add_span(&mut s.refill_ns, since, o.ts_ns);
                }
                s.window -= f.header.length as i64;
                if s.window <= 0 && s.blocked_since.is_none() {
                    s.blocked_since = Some(o.ts_ns);
                }
                let w = s.stream_window(stream);
                let refilled = w.refill_since.take();
                w.window -= f.header.length as i64;
                if w.window <= 0 && w.blocked_since.is_none() {
                    w.blocked_since = Some(o.ts_ns);
                }
                if let Some(since) = refilled {
                    add_span(&mut s.stream_refill_ns, since, o.ts_ns);
                }
                if f.header.has(crate::http2::frame::flags::END_STREAM) {
                    s.end_stream(stream, o.ts_ns);
                }
                if f.header.has(crate::http2::frame::flags::END_STREAM) && me == 1 {
                    h.stream_closed(stream);
                }
            }
            FrameDetail::Headers { .. } => {
                let s = &mut h.sides[me];
                s.pings_without_data = 0;
                // A sender that goes on with headers (a new answer, or trailers) was not waiting
                // for window to send DATA: the next DATA may be long after, for other reasons.
                s.refill_since = None;
                if f.header.has(crate::http2::frame::flags::END_STREAM) {
                    s.end_stream(stream, o.ts_ns);
                } else if let Some(w) = s.streams.get_mut(&stream) {
                    w.refill_since = None;
                }
                // A client's block on a stream not open: a new stream.
                if me == 0 && stream % 2 == 1 && !h.open_streams.contains(&stream) {
                    // Above the last stream of a GOAWAY the server had sent (it crossed the
                    // GOAWAY, the capture being near the server), it is refused, not open.
                    let refused_by = h.sides[1]
                        .goaways
                        .last_mut()
                        .filter(|g| stream > g.last_stream_id);
                    if let Some(g) = refused_by {
                        // Streams open in increasing order: one not above the list's last was
                        // listed (or is another block of a listed stream).
                        if g.refused_streams.len() < MAX_OPEN_STREAMS
                            && g.refused_streams.last().is_none_or(|&l| l < stream)
                        {
                            g.refused_streams.push(stream);
                        }
                    }
                    // A flood of streams never ended stops being followed here (the
                    // dissector's calls say what became of them).
                    else if h.open_streams.len() < MAX_OPEN_STREAMS {
                        let open = h.open_streams.len() as u64;
                        if h.stream_limit.is_some_and(|m| open >= u64::from(m)) {
                            h.streams_opened_over_limit += 1;
                        }
                        h.open_streams.insert(stream);
                    }
                }
                if f.header.has(crate::http2::frame::flags::END_STREAM) && me == 1 {
                    h.stream_closed(stream);
                }
            }
            _ => {}
        }
        h.streams_changed(o.ts_ns);
    }

    /// A call ended on its connection.
    pub fn call(&mut self, c: &crate::http2::call::Call) {
        let h = self
            .conns
            .whole(c.conn, || ConnectionHealth::new(c.conn, c.start_ts_ns));
        h.calls += 1;
        h.stream_closed(c.stream);
        h.streams_changed(c.end_ts_ns.max(h.last_ts_ns));
    }

    fn end(&mut self, end: Box<ConnectionEnd>) {
        let mut h = self
            .conns
            .remove(end.conn)
            .unwrap_or_else(|| ConnectionHealth::new(end.conn, end.first_ts_ns));
        h.first_ts_ns = h.first_ts_ns.min(end.first_ts_ns);
        h.last_ts_ns = h.last_ts_ns.max(end.last_ts_ns);
        // The frames' sides may have been a guess to the end (a connection joined mid-way whose
        // header blocks never told); the connection's end says which side is the client.
        if h.client.is_some_and(|client| client != end.client) {
            h.sides.swap(0, 1);
        }
        h.client = Some(end.client);
        h.server = Some(end.server);
        // The side that closed first (its FIN or RST), and when; the other may have followed.
        let closer = match (end.closed_first, &end.end) {
            (Some(f), _) => Some((usize::from(!f.by_client), f.ts_ns)),
            (None, EndKind::Rst { by_client } | EndKind::HalfClosed { by_client }) => {
                Some((usize::from(!by_client), end.last_ts_ns))
            }
            _ => None,
        };
        if let Some((c, at)) = closer {
            let s = &mut h.sides[c];
            s.closed_after_unacked_ping_ns = s
                .pending
                .front()
                .filter(|&&(_, sent)| sent <= at)
                .map(|&(_, sent)| at.saturating_sub(sent));
        }
        // Windows announced but not acknowledged by the end: what the announcing side allowed,
        // for the largest window the other side was given.
        for me in 0..2 {
            let announced = h.sides[1 - me]
                .unacked_settings
                .drain(..)
                .filter_map(|p| p.initial_window_size)
                .max();
            if let Some(size) = announced {
                let s = &mut h.sides[me];
                s.max_stream_window = s.max_stream_window.max(i64::from(size));
            }
        }
        for s in &mut h.sides {
            s.unacked_pings += s.pending.len() as u64;
            s.pending.clear();
            for (_, w) in s.streams.drain() {
                if let Some(t) = w.blocked_since {
                    add_span(&mut s.stream_blocked_ns, t, end.last_ts_ns);
                }
            }
            if let Some(since) = s.blocked_since.take() {
                add_span(&mut s.blocked_ns, since, end.last_ts_ns);
            }
        }
        if let Some(since) = h.at_stream_limit_since.take() {
            add_span(&mut h.at_stream_limit_ns, since, end.last_ts_ns);
        }
        h.end = Some(end);
        (self.report)(h);
    }

    /// The report of a connection still open, as it stands: what came so far (PINGs awaiting
    /// their ACK are not counted as unanswered yet).
    pub fn snapshot(&self, conn: u64) -> Option<ConnectionHealth> {
        let mut h = self.conns.get(conn)?.into_owned();
        if let Some(since) = h.at_stream_limit_since {
            add_span(&mut h.at_stream_limit_ns, since, h.last_ts_ns);
        }
        Some(h)
    }

    /// Reports connections that never ended (for the caller to flush at end of input).
    pub fn finish(&mut self) {
        let mut left: Vec<u64> = self.conns.conns().collect();
        left.sort_unstable();
        for c in left {
            if let Some(h) = self.conns.remove(c) {
                (self.report)(h);
            }
        }
    }
}

impl<F: FnMut(ConnectionHealth)> Sink for Health<F> {
    fn wants(&mut self) -> crate::event::Wants<'_> {
        // Pings, resets, windows and calls; never a message.
        crate::event::Wants::AllButMessages(None)
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Frame(f) => self.frame(&f),
            Event::Call(c) => self.call(&c),
            Event::ConnectionEnd(e) => self.end(e),
            _ => {}
        }
    }

    fn quiet(&mut self, conn: u64) {
        Health::quiet(self, conn);
    }
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

fn side_json(s: &SideHealth) -> Value {
    json!({
        "pings": s.pings,
        "ping_rtt": s.rtts.to_json(),
        "ping_interval": s.ping_intervals.to_json(),
        "unacked_pings": s.unacked_pings,
        "resets": counts::to_json(&s.resets),
        "goaways": s.goaways.iter().map(|g| json!({
            "ts": ts(g.ts_ns),
            "last_stream_id": g.last_stream_id,
            "error": g.error,
            "debug": g.debug,
            "refused_streams": g.refused_streams,
            "running_streams": g.running_streams,
        })).collect::<Vec<_>>(),
        "goaways_not_kept": s.goaways_not_kept,
        "data_bytes": s.data_bytes,
        "max_connection_window": s.max_window,
        "blocked_on_window_ms": ms(s.blocked_ns),
        "max_stream_window": s.max_stream_window,
        "blocked_on_stream_windows_ms": ms(s.stream_blocked_ns),
        "waited_after_window_update_ms": ms(s.refill_ns),
        "waited_after_stream_window_updates_ms": ms(s.stream_refill_ns),
        "max_pings_without_data": s.max_pings_without_data,
        "closed_after_unacked_ping_s": s.closed_after_unacked_ping_ns.map(|n| n as f64 / 1e9),
    })
}

/// JSON of one report (`"event": "connection_health"`).
pub fn to_json(h: &ConnectionHealth) -> Value {
    let too_many_pings = h
        .sides
        .iter()
        .flat_map(|s| &s.goaways)
        .any(|g| g.debug.contains("too_many_pings"))
        || h.sides.iter().any(|s| s.ping_flood);
    let mut v = json!({
        "event": "connection_health",
        "conn": h.conn,
        "client": h.client.map(|a| a.to_string()),
        "server": h.server.map(|a| a.to_string()),
        "start_ts": ts(h.first_ts_ns),
        "end_ts": ts(h.last_ts_ns),
        "lifetime": ts(h.last_ts_ns.saturating_sub(h.first_ts_ns)),
        "calls": h.calls,
        "frames": h.frames,
        "client_side": side_json(&h.sides[0]),
        "server_side": side_json(&h.sides[1]),
        "ping_flood": too_many_pings,
        "longest_idle_s": h.longest_idle_ns as f64 / 1e9,
        "idle_warnings": h.idle_warnings(),
        "refused_streams": h.refused_by_limit,
        "max_concurrent_streams": h.max_concurrent_streams,
        "peak_open_streams": h.peak_open_streams,
        "streams_opened_over_limit": h.streams_opened_over_limit,
        "at_stream_limit_s": h.at_stream_limit_ns as f64 / 1e9,
        "end": h.end.as_ref().map(|e| e.end.as_str()).unwrap_or("capture-end"),
        "end_by": h.end.as_ref().map(|e| end_by(&e.end)).unwrap_or(Value::Null),
        "bytes_to_server": h.end.as_ref().map(|e| e.bytes[0]),
        "bytes_to_client": h.end.as_ref().map(|e| e.bytes[1]),
        "tls": h.end.as_ref().and_then(|e| e.tls.as_ref()).map(|t| t.to_json()),
    });
    if let Value::Object(m) = &mut v {
        crate::output::jsonl::handshake_fields(
            m,
            h.end.as_ref().and_then(|e| e.handshake.as_ref()),
        );
        // Each side's own segments, beside what it sent in HTTP/2.
        if let Some(end) = &h.end {
            for (key, tcp) in [("client_side", &end.tcp[0]), ("server_side", &end.tcp[1])] {
                if let (Some(Value::Object(side)), Value::Object(t)) =
                    (m.get_mut(key), crate::output::jsonl::tcp_json(tcp))
                {
                    side.extend(t);
                }
            }
        }
    }
    v
}

/// A few readable lines for one report.
pub fn to_text(h: &ConnectionHealth) -> String {
    text(h, true, false).0
}

/// [`to_text`] of a [`Health::snapshot`]: the connection is still open.
pub fn to_text_open(h: &ConnectionHealth) -> String {
    text(h, true, true).0
}

/// [`to_text`] without the connection's number, and where it goes: a thread that analyses
/// some of a capture's connections does not know their numbers in the whole capture.
pub fn to_text_unnumbered(h: &ConnectionHealth) -> (String, usize) {
    text(h, false, false)
}

/// [`to_json`]'s line (with its newline) appended to `out` without the connection's number,
/// and where the number goes, as [`to_text_unnumbered`].
pub fn write_json_unnumbered(report: &Value, out: &mut Vec<u8>) -> Option<usize> {
    let Value::Object(map) = report else {
        let _ = serde_json::to_writer(&mut *out, report);
        out.push(b'\n');
        return None;
    };
    let mut slot = None;
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        if k == "conn" {
            slot = Some(out.len());
        } else {
            let _ = serde_json::to_writer(&mut *out, v);
        }
    }
    out.extend_from_slice(b"}\n");
    slot
}

/// What a `too_many_pings` GOAWAY from `sender` means and what `other`, whose PINGs `pinger`
/// holds, should change: the usual cause is a client keepalive set shorter than the server's
/// ping policy allows.
fn too_many_pings_hint(s: &mut String, sender: &str, other: &str, pinger: &SideHealth) {
    use std::fmt::Write;
    let _ = write!(
        s,
        "    the {other}'s PINGs ({} in a row without data",
        pinger.max_pings_without_data
    );
    if let Some(avg) = pinger.ping_intervals.avg_ns() {
        let _ = write!(s, ", every {:.1} ms", avg / 1e6);
    }
    let _ = writeln!(
        s,
        ") broke the {sender}'s keepalive policy: gRPC servers accept one PING without data per 5 minutes by default, none while no call is open unless keepalive_permit_without_calls; make the {other}'s keepalive time longer or the {sender}'s policy looser"
    );
}

/// A line on what TCP showed of `name`'s segments, if anything went wrong with them.
fn tcp_text(s: &mut String, name: &str, other: &str, t: &crate::tcp::TcpSide) {
    use std::fmt::Write;
    let mut parts = Vec::new();
    if t.retransmitted > 0 {
        parts.push(if t.holes == 0 {
            // Every byte reached the capture point before it came again.
            format!(
                "{} segments sent again (no hole before them: lost past the capture point, or sent needlessly)",
                t.retransmitted
            )
        } else {
            format!("{} segments sent again", t.retransmitted)
        });
    }
    if t.out_of_order > 0 {
        parts.push(format!("{} out of order", t.out_of_order));
    }
    if t.holes > 0 {
        parts.push(format!(
            "{} hole{} (bytes missing when later ones came: lost before the capture point, or overtaken)",
            t.holes,
            if t.holes == 1 { "" } else { "s" }
        ));
    }
    if t.zero_windows > 0 {
        parts.push(format!(
            "its receive window closed (zero) {} time{} for {:.3} ms in all: the {other} could not send, the {name} did not read fast enough",
            t.zero_windows,
            if t.zero_windows == 1 { "" } else { "s" },
            ms(t.zero_window_ns)
        ));
    }
    if !parts.is_empty() {
        let _ = writeln!(s, "  {name} TCP: {}", parts.join("; "));
    }
}

fn text(h: &ConnectionHealth, numbered: bool, open: bool) -> (String, usize) {
    use std::fmt::Write;
    let mut s = String::from("connection #");
    let slot = s.len();
    if numbered {
        let _ = write!(s, "{}", h.conn);
    }
    let who = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "?".into());
    let end = match (&h.end, open) {
        (_, true) => "still open (the report so far)".to_string(),
        (Some(e), _) => format!("ended: {}", e.end.as_str()),
        (None, _) => "ended: capture-end".to_string(),
    };
    let _ = writeln!(
        s,
        " {} → {}: {:.3}s, {} calls, {} frames, {end}",
        who(h.client),
        who(h.server),
        h.last_ts_ns.saturating_sub(h.first_ts_ns) as f64 / 1e9,
        h.calls,
        h.frames
    );
    if let Some(t) = h.end.as_ref().and_then(|e| e.tls.as_ref()) {
        let _ = writeln!(s, "  over {t}");
    }
    if let Some(rtt) = h.end.as_ref().and_then(|e| e.handshake) {
        let _ = write!(
            s,
            "  TCP handshake RTT {:.3} ms: {:.3} ms between the capture and the server, {:.3} ms to the client",
            ms(rtt.total_ns()),
            ms(rtt.server_ns),
            ms(rtt.client_ns)
        );
        if let Some(point) = rtt.capture_point() {
            let _ = write!(s, " (captured {})", point.as_str());
        }
        s.push('\n');
    }
    const NAMES: [&str; 2] = ["client", "server"];
    let point = h
        .end
        .as_ref()
        .and_then(|e| e.handshake)
        .and_then(|r| r.capture_point());
    if let Some(end) = &h.end {
        for (i, (name, t)) in NAMES.into_iter().zip(&end.tcp).enumerate() {
            tcp_text(&mut s, name, NAMES[1 - i], t);
        }
    }
    for (i, (name, side)) in NAMES.into_iter().zip(&h.sides).enumerate() {
        if side.pings > 0 {
            let rtt = side.rtts;
            let _ = write!(s, "  {name} PINGs: {}", side.pings);
            if let Some(avg) = rtt.avg_ns() {
                let _ = write!(
                    s,
                    ", RTT min/avg/max {:.3}/{:.3}/{:.3} ms",
                    ms(rtt.min_ns),
                    avg / 1e6,
                    ms(rtt.max_ns)
                );
            }
            if let Some(avg) = side.ping_intervals.avg_ns() {
                let _ = write!(s, ", every {:.1} ms", avg / 1e6);
            }
            if side.unacked_pings > 0 {
                let _ = write!(
                    s,
                    ", {} never acknowledged (dead peer?)",
                    side.unacked_pings
                );
            }
            if let Some(after) = side.closed_after_unacked_ping_ns {
                let _ = write!(
                    s,
                    "; it closed the connection {:.3} s after the first (a keepalive timeout)",
                    after as f64 / 1e9
                );
            }
            s.push('\n');
        }
        for g in &side.goaways {
            let _ = write!(
                s,
                "  {name} sent GOAWAY {} last-stream {} {:?}",
                g.error, g.last_stream_id, g.debug
            );
            // The client's calls under the server's GOAWAY; a client's governs pushes only.
            if i == 1 {
                let _ = write!(
                    s,
                    ": refused (safe to retry) {:?}, still running {:?}",
                    g.refused_streams, g.running_streams
                );
            }
            s.push('\n');
            if g.debug.contains("too_many_pings") {
                too_many_pings_hint(&mut s, name, NAMES[1 - i], &h.sides[1 - i]);
            }
        }
        if side.goaways_not_kept > 0 {
            let _ = writeln!(
                s,
                "  {name} sent {} more GOAWAYs before the last (not listed)",
                side.goaways_not_kept
            );
        }
        if !side.resets.is_empty() {
            let parts: Vec<String> = side
                .resets
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect();
            let _ = writeln!(s, "  {name} RST_STREAM: {}", parts.join(" "));
        }
        if side.blocked_ns > 0 || side.stream_blocked_ns > 0 {
            let _ = write!(
                s,
                "  {name} blocked on flow control: {:.3} ms on the connection window (largest {}), {:.3} ms on stream windows (largest {})",
                ms(side.blocked_ns),
                side.max_window,
                ms(side.stream_blocked_ns),
                side.max_stream_window
            );
            if side.refill_ns > 0 || side.stream_refill_ns > 0 {
                let _ = write!(
                    s,
                    "; its DATA resumed {:.3} ms and {:.3} ms in all after the WINDOW_UPDATEs that reopened them",
                    ms(side.refill_ns),
                    ms(side.stream_refill_ns)
                );
            }
            // Which of the two is the sender's wait depends on where the capture was taken.
            let other = NAMES[1 - i];
            match point {
                Some(p) if p.next_to(i == 0) => {
                    let _ = write!(
                        s,
                        " (captured next to the {name}: the time blocked is its wait)"
                    );
                }
                Some(p) if p.next_to(i == 1) => {
                    let _ = write!(s, " (captured next to the {other}, its receiver: the time after the updates, their way to the {name} and back, is its wait)");
                }
                _ if side.refill_ns > 0 || side.stream_refill_ns > 0 => {
                    s.push_str(" (the updates' way to it and back, where the capture is near the receiver)");
                }
                _ => {}
            }
            s.push('\n');
        }
        if side.ping_flood {
            let _ = writeln!(
                s,
                "  {name} sent {} PINGs in a row without data, more than one a second: a PING flood (gRPC servers answer with GOAWAY too_many_pings)",
                side.max_pings_without_data
            );
        }
    }
    let over = h
        .max_concurrent_streams
        .is_some_and(|m| h.peak_open_streams > u64::from(m));
    if h.at_stream_limit_ns > 0 || h.refused_by_limit > 0 || over {
        let _ = write!(s, "  streams: up to {} open at once", h.peak_open_streams);
        if let Some(m) = h.max_concurrent_streams {
            let _ = write!(s, ", the server allows {m}");
        }
        if over && h.streams_opened_over_limit == 0 {
            s.push_str(" (the rest opened before the client had the server's SETTINGS)");
        }
        if h.streams_opened_over_limit > 0 {
            let _ = write!(
                s,
                "; the client opened {} over that limit (RFC 9113 §5.1.2)",
                h.streams_opened_over_limit
            );
        }
        if h.at_stream_limit_ns > 0 {
            let _ = write!(
                s,
                "; at that limit for {:.3} s in all, when a new call had to wait for a stream",
                h.at_stream_limit_ns as f64 / 1e9
            );
        }
        if h.refused_by_limit > 0 {
            let _ = write!(s, "; {} refused (REFUSED_STREAM)", h.refused_by_limit);
        }
        s.push('\n');
    }
    if h.longest_idle_ns > 0 {
        let _ = write!(
            s,
            "  longest silence {:.3}s",
            h.longest_idle_ns as f64 / 1e9
        );
        for w in h.idle_warnings() {
            let _ = write!(s, "; longer than the {w}");
        }
        s.push('\n');
    }
    (s, slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;
    use crate::http2::frame::{FrameHeader, FrameType, Setting};

    const CLIENT: &str = "10.0.0.1:40000";
    const SERVER: &str = "10.0.0.2:50051";

    fn frame(
        from_client: bool,
        ms: i64,
        stream: u32,
        kind: FrameType,
        len: u32,
        detail: FrameDetail,
    ) -> Event {
        let (src, dst) = if from_client {
            (CLIENT, SERVER)
        } else {
            (SERVER, CLIENT)
        };
        Event::Frame(FrameEvent {
            from_client,
            origin: Origin {
                packet: 1,
                ts_ns: ms * 1_000_000,
                conn: 0,
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
            },
            header: FrameHeader {
                length: len,
                kind,
                flags: 0,
                stream,
            },
            detail,
            headers: None,
            table_size_updates: Vec::new(),
            notes: Vec::new(),
            raw: None,
        })
    }

    fn run(events: Vec<Event>) -> ConnectionHealth {
        let mut out = Vec::new();
        let mut h = Health::new(|r| out.push(r));
        for e in events {
            h.event(e);
        }
        // As the pipeline reports it: which side is the client is known here.
        h.event(Event::ConnectionEnd(Box::new(ConnectionEnd {
            conn: 0,
            client: CLIENT.parse().unwrap(),
            server: SERVER.parse().unwrap(),
            protocol: "http2",
            first_ts_ns: 0,
            last_ts_ns: 400_000_000_000,
            bytes: [0, 0],
            packets: 0,
            end: crate::event::EndKind::Fin,
            mid: false,
            tls: None,
            closed_first: None,
            handshake: None,
            tcp: Default::default(),
        })));
        drop(h);
        out.pop().unwrap()
    }

    fn data(from_client: bool, ms: i64, stream: u32, len: u32) -> Event {
        frame(
            from_client,
            ms,
            stream,
            FrameType::Data,
            len,
            FrameDetail::Data {
                data_len: len,
                pad_len: None,
                missing: 0,
            },
        )
    }

    fn update(from_client: bool, ms: i64, stream: u32, inc: u32) -> Event {
        frame(
            from_client,
            ms,
            stream,
            FrameType::WindowUpdate,
            4,
            FrameDetail::WindowUpdate { increment: inc },
        )
    }

    fn headers(from_client: bool, ms: i64, stream: u32, flags: u8) -> Event {
        let mut e = frame(
            from_client,
            ms,
            stream,
            FrameType::Headers,
            10,
            FrameDetail::Headers {
                priority: None,
                pad_len: None,
            },
        );
        if let Event::Frame(f) = &mut e {
            f.header.flags = flags;
        }
        e
    }

    fn goaway(from_client: bool, ms: i64, last_stream_id: u32, debug_data: Vec<u8>) -> Event {
        let detail = FrameDetail::GoAway {
            last_stream_id,
            error_code: 0,
            debug_data,
        };
        frame(from_client, ms, 0, FrameType::GoAway, 8, detail)
    }

    fn settings_ack(from_client: bool, ms: i64) -> Event {
        let detail = FrameDetail::Settings {
            ack: true,
            settings: Vec::new(),
        };
        frame(from_client, ms, 0, FrameType::Settings, 6, detail)
    }

    fn settings(from_client: bool, id: u16, value: u32) -> Event {
        let detail = FrameDetail::Settings {
            ack: false,
            settings: vec![Setting { id, value }],
        };
        frame(from_client, 0, 0, FrameType::Settings, 6, detail)
    }

    /// Streams still running or refused under a GOAWAY are those the dissector says the
    /// client opened, whichever end has the higher port (here the server's, 50051).
    #[test]
    fn goaway_sorts_the_clients_streams_by_the_dissectors_sides() {
        // The client's own GOAWAY (as Node's sends closing) governs pushed streams, not its
        // calls: none are refused or running under it.
        let h = run(vec![
            headers(true, 0, 1, 0),
            headers(true, 0, 3, 0),
            goaway(false, 5, 1, Vec::new()),
            goaway(true, 6, 0, Vec::new()),
        ]);
        let g = &h.sides[1].goaways[0];
        assert_eq!(g.running_streams, [1]);
        assert_eq!(g.refused_streams, [3]);
        let mine = &h.sides[0].goaways[0];
        assert!(mine.refused_streams.is_empty() && mine.running_streams.is_empty());
        let text = to_text(&h);
        assert!(
            text.contains("client sent GOAWAY NO_ERROR last-stream 0 \"\"\n"),
            "{text}"
        );
    }

    #[test]
    fn stream_window_stall_is_timed() {
        // The client allows 1000 bytes per stream; the server sends them, waits 300 ms for the
        // client's WINDOW_UPDATE on the stream, then goes on.
        let h = run(vec![
            settings(true, setting::INITIAL_WINDOW_SIZE, 1000),
            settings_ack(false, 1),
            data(false, 10, 1, 1000),
            update(true, 310, 1, 1000),
            data(false, 320, 1, 500),
        ]);
        let server = &h.sides[1];
        assert_eq!(server.stream_blocked_ns, 300_000_000);
        // Its next DATA came 10 ms after the update.
        assert_eq!(server.stream_refill_ns, 10_000_000);
        assert_eq!(server.refill_ns, 0);
        assert_eq!(
            server.blocked_ns, 0,
            "the connection window was never exhausted"
        );
    }

    /// A stream stops being blocked when its sender is done with it: at trailers that end it,
    /// or at a reset. It does not count on to the connection's end (400 s here), and its window
    /// is no longer followed.
    #[test]
    fn a_stream_ended_by_trailers_or_reset_stops_being_blocked() {
        let reset = |from_client, ms, stream| {
            let detail = FrameDetail::RstStream { error_code: 8 };
            frame(from_client, ms, stream, FrameType::RstStream, 4, detail)
        };
        let h = run(vec![
            settings(true, setting::INITIAL_WINDOW_SIZE, 1000),
            settings_ack(false, 1),
            data(false, 10, 1, 1000),
            headers(false, 30, 1, crate::http2::frame::flags::END_STREAM),
            data(false, 40, 3, 1000),
            reset(true, 100, 3),
        ]);
        let server = &h.sides[1];
        assert_eq!(server.stream_blocked_ns, 20_000_000 + 60_000_000);
        assert!(server.streams.is_empty());
    }

    /// A window the peer's SETTINGS set counts from this side's ACK: DATA sent before it (a
    /// client that did not wait for the server's SETTINGS, seen near the server) went out
    /// under the window it had then.
    #[test]
    fn initial_window_size_counts_from_the_ack() {
        let early = run(vec![
            settings(false, setting::INITIAL_WINDOW_SIZE, 1000),
            data(true, 5, 1, 1000),
            settings_ack(true, 10),
            update(false, 50, 1, 1000),
        ]);
        assert_eq!(early.sides[0].stream_blocked_ns, 0);
        let late = run(vec![
            settings(false, setting::INITIAL_WINDOW_SIZE, 1000),
            settings_ack(true, 1),
            data(true, 5, 1, 1000),
            update(false, 50, 1, 1000),
        ]);
        assert_eq!(late.sides[0].stream_blocked_ns, 45_000_000);
        assert_eq!(late.sides[0].max_stream_window, 65_535);
    }

    /// Seen near the receiver: the server's DATA uses up the connection window, the client's
    /// WINDOW_UPDATE follows at once, and the server's next DATA comes a round trip (200 ms)
    /// later. Blocked next to nothing, DATA resumed 200 ms after the update. A sender that goes
    /// on with HEADERS after an update was not waiting on it: its DATA much later is not
    /// counted.
    #[test]
    fn data_resuming_after_a_window_update_is_timed() {
        let h = run(vec![
            data(false, 10, 1, 65_535),
            update(true, 11, 0, 65_535),
            update(true, 11, 1, 65_535),
            data(false, 211, 1, 1000),
            data(false, 300, 1, 64_535),
            update(true, 301, 0, 65_535),
            headers(false, 302, 3, 0),
            data(false, 5000, 3, 10),
        ]);
        let server = &h.sides[1];
        assert_eq!(server.blocked_ns, 2_000_000);
        assert_eq!(server.refill_ns, 200_000_000);
        assert_eq!(server.stream_refill_ns, 200_000_000);
        let text = to_text(&h);
        assert!(
            text.contains(
                "its DATA resumed 200.000 ms and 200.000 ms in all after the WINDOW_UPDATEs"
            ),
            "{text}"
        );
        assert_eq!(
            to_json(&h)["server_side"]["waited_after_window_update_ms"],
            200.0
        );
    }

    /// A server allowing two streams: the client opens two, a third only after one ended.
    /// Time at the limit runs while two are open, and stops once one ends.
    #[test]
    fn time_at_the_servers_stream_limit_is_counted() {
        use crate::http2::frame::flags::END_STREAM;
        let h = run(vec![
            settings(false, setting::MAX_CONCURRENT_STREAMS, 2),
            settings_ack(true, 1),
            headers(true, 5, 1, 0),
            headers(true, 10, 3, 0),
            headers(false, 100, 1, END_STREAM),
            headers(true, 101, 5, 0),
            headers(false, 150, 3, END_STREAM),
            headers(false, 300, 5, END_STREAM),
        ]);
        assert_eq!(h.peak_open_streams, 2);
        assert_eq!(h.max_concurrent_streams, Some(2));
        assert_eq!(h.at_stream_limit_ns, 139_000_000);
        let text = to_text(&h);
        assert!(
            text.contains("up to 2 open at once, the server allows 2; at that limit for 0.139 s"),
            "{text}"
        );
        assert_eq!(to_json(&h)["at_stream_limit_s"], 0.139);
    }

    /// A client that opens streams before the server's SETTINGS reach it (a distant server)
    /// goes over the limit they bring without breaking it: the limit counts from the client's
    /// ACK, and the report says why there were more. Once the client has it, a stream opened
    /// at the limit is counted as over it.
    #[test]
    fn the_stream_limit_counts_from_the_clients_settings_ack() {
        use crate::http2::frame::flags::END_STREAM;
        let h = run(vec![
            headers(true, 0, 1, 0),
            headers(true, 0, 3, 0),
            headers(true, 0, 5, 0),
            settings(false, setting::MAX_CONCURRENT_STREAMS, 2),
            settings_ack(true, 150),
            headers(false, 500, 1, END_STREAM),
            headers(false, 500, 3, END_STREAM),
            headers(false, 500, 5, END_STREAM),
        ]);
        assert_eq!(h.peak_open_streams, 3);
        assert_eq!(h.streams_opened_over_limit, 0);
        // Three open (two would be the limit) from the ACK until two ended.
        assert_eq!(h.at_stream_limit_ns, 350_000_000);
        let text = to_text(&h);
        assert!(
            text.contains("up to 3 open at once, the server allows 2 (the rest opened before the client had the server's SETTINGS); at that limit for 0.350 s"),
            "{text}"
        );

        let h = run(vec![
            settings(false, setting::MAX_CONCURRENT_STREAMS, 1),
            settings_ack(true, 1),
            headers(true, 5, 1, 0),
            headers(true, 6, 3, 0),
        ]);
        assert_eq!(h.streams_opened_over_limit, 1);
        assert_eq!(to_json(&h)["streams_opened_over_limit"], 1);
        assert!(
            to_text(&h).contains("the client opened 1 over that limit (RFC 9113 §5.1.2)"),
            "{}",
            to_text(&h)
        );
    }

    /// A hostile capture repeating resets with every error code and GOAWAYs with long debug
    /// data: the report keeps a bounded part, the latest GOAWAY included, and says so.
    #[test]
    fn endless_resets_and_goaways_are_kept_bounded() {
        let mut events = Vec::new();
        for i in 0..1000u32 {
            events.push(frame(
                true,
                i64::from(i),
                1 + 2 * i,
                FrameType::RstStream,
                4,
                FrameDetail::RstStream { error_code: i },
            ));
            events.push(goaway(false, i64::from(i), i, vec![b'x'; 5000]));
        }
        let h = run(events);
        let client = &h.sides[0];
        assert_eq!(client.resets.len(), MAX_RESET_CODES + 1);
        assert_eq!(client.resets.iter().map(|(_, n)| n).sum::<u64>(), 1000);
        assert!(client.resets.is_sorted());
        let server = &h.sides[1];
        assert_eq!(server.goaways.len(), MAX_GOAWAYS);
        assert_eq!(server.goaways_not_kept, 1000 - MAX_GOAWAYS as u64);
        assert_eq!(server.goaways.last().unwrap().last_stream_id, 999);
        assert!(server.goaways[0].debug.ends_with("… (5000 bytes)"));
        assert!(server.goaways[0].debug.len() < 1100);
        assert!(to_text(&h).contains("server sent 984 more GOAWAYs before the last"));
    }

    #[test]
    fn ping_floods_and_keepalive_are_told_apart() {
        let ping = |ms, op: u8| {
            frame(
                true,
                ms,
                0,
                FrameType::Ping,
                8,
                FrameDetail::Ping {
                    ack: false,
                    opaque: [op; 8],
                },
            )
        };
        let flood = run((0..12).map(|i| ping(i * 100, i as u8)).collect());
        assert!(flood.sides[0].ping_flood);
        assert_eq!(flood.sides[0].unacked_pings, 12);
        // The same count every 30 s is keepalive, not a flood.
        let keepalive = run((0..12).map(|i| ping(i * 30_000, i as u8)).collect());
        assert!(!keepalive.sides[0].ping_flood);
        // Data between PINGs resets the run.
        let mut busy = Vec::new();
        for i in 0..12 {
            busy.push(ping(i * 100, i as u8));
            busy.push(data(true, i * 100 + 50, 1, 10));
        }
        assert!(!run(busy).sides[0].ping_flood);
    }

    /// The sum behind the average is exact where an `i64` would overflow, and below zero.
    #[test]
    fn a_spread_sums_past_what_an_i64_holds() {
        let mut s = Spread::default();
        for _ in 0..4 {
            s.add(i64::MAX);
        }
        assert_eq!(s.sum(), 4 * i128::from(i64::MAX));
        assert_eq!(s.avg_ns(), Some(i64::MAX as f64));
        let mut s = Spread::default();
        for ns in [-5, i64::MIN, 3] {
            s.add(ns);
        }
        assert_eq!(s.sum(), i128::from(i64::MIN) - 2);
        assert_eq!((s.count, s.min_ns, s.max_ns), (3, i64::MIN, 3));
    }

    /// What a connection between PINGs and SETTINGS keeps: nothing of the queues that waited
    /// for their ACKs.
    #[test]
    fn answered_pings_and_settings_leave_no_room_behind() {
        let mut out = Vec::new();
        let mut h = Health::new(|r| out.push(r));
        let opaque = [7; 8];
        let ping = |ms, ack| {
            let detail = FrameDetail::Ping { ack, opaque };
            frame(!ack, ms, 0, FrameType::Ping, 8, detail)
        };
        for e in [
            settings(true, setting::INITIAL_WINDOW_SIZE, 1 << 20),
            settings_ack(false, 1),
            ping(2, false),
            ping(3, true),
        ] {
            h.event(e);
        }
        let kept = h.conns.get(0).unwrap();
        let [client, server] = &kept.sides;
        assert_eq!(
            (
                client.pending.capacity(),
                client.unacked_settings.capacity()
            ),
            (0, 0)
        );
        // The queues did their work: the round trip, and the server's stream windows.
        assert_eq!((client.pings, client.rtts.count), (1, 1));
        assert_eq!(server.max_stream_window, 1 << 20);
    }
}
