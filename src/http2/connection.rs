//! HTTP/2 state of one TCP connection: detection, frame boundaries, header blocks, HPACK per
//! direction, settings, and the calls (streams) it carries.
//!
//! Input is the reassembled byte stream of each direction; output is [`Event`]s. DATA payloads
//! are never buffered whole (a frame may be 16 MiB); other frames are buffered up to a limit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::call::{Call, CallEnd, ServerBlock};
use super::frame::{
    self, flags, parse_payload, setting, FrameHeader, FrameType, Payload, FRAME_HEADER_LEN, PREFACE,
};
use super::hpack::{Decoder, HeaderField, HeaderList, QuietDecoder};
use super::resync::{self, Sync};
use crate::event::{
    ErrorEvent, ErrorKind, Event, FrameDetail, FrameEvent, GapEvent, MessageEvent, Origin, Sink,
    Wants,
};
use crate::grpc::deframe::RawMessage;
use crate::grpc::message::{self as grpc_message, Outcome};
use crate::grpc::schema::Schemas;
use crate::grpc::{self, GrpcConfig, GrpcStream, Side};
use crate::tcp::{Dir, FlowInfo, PacketMeta};

#[derive(Debug, Clone)]
pub struct Http2Config {
    /// Ports on which TCP is HTTP/2 without a preface or upgrade (like `-d tcp.port==N,http2`).
    pub forced_ports: Vec<u16>,
    /// Largest non-DATA frame payload kept for decoding.
    pub max_buffered_frame: usize,
    /// Largest header block (HEADERS + CONTINUATIONs) joined for decoding.
    pub max_header_block: usize,
    /// Largest decoded header list (HPACK bomb guard).
    pub max_header_list: usize,
    /// Open streams kept per connection.
    pub max_open_streams: usize,
    /// Keep each frame's bytes in its event (header and payload, up to [`MAX_RAW`]), for
    /// viewers that show them.
    pub keep_frame_bytes: bool,
    /// Paths to assume for gRPC streams whose request headers the capture lacks.
    pub assumed_paths: Vec<AssumedPath>,
}

/// `--assume-path`: what a stream without known `:path` is taken to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumedPath {
    pub target: AssumeTarget,
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssumeTarget {
    /// One stream of one connection.
    Stream { conn: u64, stream: u32 },
    /// Every stream to this server port.
    Port(u16),
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            forced_ports: Vec::new(),
            max_buffered_frame: 1 << 20,
            max_header_block: 1 << 20,
            max_header_list: 1 << 20,
            max_open_streams: 10_000,
            assumed_paths: Vec::new(),
            keep_frame_bytes: false,
        }
    }
}

/// Bytes of a frame kept for display with `keep_frame_bytes`.
pub const MAX_RAW: usize = 64 * 1024;

/// How much is looked at before deciding a connection is not HTTP/2.
const DETECT_LIMIT: usize = 64 * 1024;

/// Context of the packet being processed.
pub struct Ctx<'a> {
    pub info: &'a FlowInfo,
    pub meta: &'a PacketMeta,
    pub sink: &'a mut dyn Sink,
    pub cfg: &'a Http2Config,
    pub grpc: &'a GrpcConfig,
    pub schemas: &'a mut Schemas,
}

impl Ctx<'_> {
    fn origin(&self, dir: Dir) -> Origin {
        Origin {
            packet: self.meta.index,
            ts_ns: self.meta.ts_ns,
            conn: self.info.conn,
            src: self.info.src(dir),
            dst: self.info.dst(dir),
        }
    }

    pub fn error(&mut self, dir: Dir, stream: Option<u32>, kind: ErrorKind, message: String) {
        let origin = Some(self.origin(dir));
        self.sink.event(Event::Error(ErrorEvent {
            origin,
            stream,
            kind,
            message,
        }));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not yet known whether this is HTTP/2.
    Detect,
    /// An HTTP/1.1 request asked for `Upgrade: h2c`; waiting for the `101`.
    Upgrade,
    Http2,
    /// HTTP/1.1 carrying gRPC-Web.
    Http1,
    /// Not HTTP/2: ignored.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the frames: the client preface is expected (`required`) or merely allowed.
    Preface {
        matched: usize,
        required: bool,
    },
    /// The server's HTTP/1.1 `101` response precedes its frames.
    UpgradeResponse,
    Frames,
    /// Looking for frame boundaries (connection joined mid-way, or after a gap); bytes are held.
    Resync,
}

/// What decoding a frame found besides its detail: the parts of a [`FrameEvent`] that
/// decoding fills in, made into one only when the sink looks at frames.
struct FrameParts {
    headers: Option<HeaderList>,
    table_size_updates: Vec<u32>,
    notes: Vec<String>,
}

struct Current {
    header: FrameHeader,
    got: u32,
    /// Payload kept for decoding; for DATA only the pad-length byte.
    buf: Vec<u8>,
    buffered: bool,
    missing: u64,
    /// The frame as sent (header, then payload up to [`MAX_RAW`]), when asked for.
    raw: Option<Vec<u8>>,
}

/// Calls that ended during a frame, handed on after it. Boxed: they leave as `Event::Call`,
/// which holds a box, and the call map keeps them boxed so that its nodes move pointers, not
/// calls.
#[allow(clippy::vec_box)]
type FinishedCalls = Vec<Box<Call>>;

struct PendingBlock {
    stream: u32,
    kind: FrameType,
    end_stream: bool,
    promised: u32,
    fragment: Vec<u8>,
    overflow: bool,
}

struct Direction {
    /// Bytes held while the connection is being identified.
    held: Vec<u8>,
    /// The packet that last added to `held`: where its frames are shown once they are read.
    held_at: PacketMeta,
    phase: Phase,
    hdr: [u8; FRAME_HEADER_LEN],
    hdr_len: usize,
    cur: Option<Current>,
    hpack: Decoder,
    /// False once a header block could not be decoded: the dynamic table is then unknown.
    hpack_ok: bool,
    block: Option<PendingBlock>,
    /// SETTINGS_MAX_FRAME_SIZE the receiver of this direction announced.
    max_frame_size: u32,
    /// HEADER_TABLE_SIZE values this direction sent, waiting for the peer's ACK.
    unacked_table_sizes: VecDeque<Option<u32>>,
    frames: u64,
    /// The HPACK table holds entries from before the capture (or a gap) that are unknown.
    unknown_past: bool,
    /// Bytes passed over while looking for frame boundaries.
    skipped: u64,
}

fn decoder(unknown_past: bool, max_header_list: usize) -> Decoder {
    let mut hpack = if unknown_past {
        Decoder::with_unknown_past()
    } else {
        Decoder::new()
    };
    hpack.set_max_header_list_size(max_header_list);
    hpack
}

impl Direction {
    fn new(max_header_list: usize) -> Self {
        let hpack = decoder(false, max_header_list);
        Direction {
            held: Vec::new(),
            held_at: PacketMeta::default(),
            phase: Phase::Frames,
            hdr: [0; FRAME_HEADER_LEN],
            hdr_len: 0,
            cur: None,
            hpack,
            hpack_ok: true,
            block: None,
            max_frame_size: frame::DEFAULT_MAX_FRAME_SIZE,
            unacked_table_sizes: VecDeque::new(),
            frames: 0,
            unknown_past: false,
            skipped: 0,
        }
    }

    /// From here on the frames of this direction must be found again, with HPACK state unknown.
    fn lose_sync(&mut self, max_header_list: usize) {
        self.phase = Phase::Resync;
        self.hpack = decoder(true, max_header_list);
        self.hpack_ok = true;
        self.unknown_past = true;
        self.block = None;
        self.cur = None;
        self.hdr_len = 0;
        self.held = Vec::new();
    }
}

/// What a [`Direction`] keeps while its connection is quiet: nothing is half read then (no frame,
/// header block or bytes held), and its decoder keeps no cache.
struct QuietDirection {
    held_at: PacketMeta,
    phase: Phase,
    hpack: QuietDecoder,
    hpack_ok: bool,
    max_frame_size: u32,
    unacked_table_sizes: VecDeque<Option<u32>>,
    frames: u64,
    unknown_past: bool,
    skipped: u64,
}

impl Direction {
    /// Nothing half read: what [`QuietDirection`] leaves out is empty.
    fn between_frames(&self) -> bool {
        self.held.is_empty() && self.hdr_len == 0 && self.cur.is_none() && self.block.is_none()
    }

    /// Once [`between_frames`](Self::between_frames); the decoder's table moves out.
    fn freeze(&mut self) -> QuietDirection {
        let Direction {
            held: _,
            held_at,
            phase,
            // Written whole before it is read again, as `hdr_len` is 0.
            hdr: _,
            hdr_len: _,
            cur: _,
            hpack,
            hpack_ok,
            block: _,
            max_frame_size,
            unacked_table_sizes,
            frames,
            unknown_past,
            skipped,
        } = self;
        QuietDirection {
            held_at: *held_at,
            phase: *phase,
            hpack: hpack.freeze(),
            hpack_ok: *hpack_ok,
            max_frame_size: *max_frame_size,
            unacked_table_sizes: std::mem::take(unacked_table_sizes),
            frames: *frames,
            unknown_past: *unknown_past,
            skipped: *skipped,
        }
    }
}

impl QuietDirection {
    fn thaw(&mut self) -> Direction {
        let QuietDirection {
            held_at,
            phase,
            hpack,
            hpack_ok,
            max_frame_size,
            unacked_table_sizes,
            frames,
            unknown_past,
            skipped,
        } = self;
        Direction {
            held: Vec::new(),
            held_at: *held_at,
            phase: *phase,
            hdr: [0; FRAME_HEADER_LEN],
            hdr_len: 0,
            cur: None,
            hpack: hpack.thaw(),
            hpack_ok: *hpack_ok,
            block: None,
            max_frame_size: *max_frame_size,
            unacked_table_sizes: std::mem::take(unacked_table_sizes),
            frames: *frames,
            unknown_past: *unknown_past,
            skipped: *skipped,
        }
    }
}

/// HTTP/1.1 parsing of both directions; requests are numbered 1, 2, 3, ... as "streams".
struct Http1State {
    parsers: [crate::http1::Parser; 2],
    next_stream: u32,
    /// Requests waiting for their response, oldest first (pipelining).
    waiting: VecDeque<u32>,
    /// The message each direction is in.
    current: [Option<u32>; 2],
}

enum Http1Item {
    Head(crate::http1::Head),
    Body(Vec<u8>),
    End,
}

/// Per-connection HTTP/2 state.
pub struct Connection {
    mode: Mode,
    /// The direction the client sends in (meaningful once `mode` is `Http2` or `Upgrade`).
    client: Dir,
    dirs: [Direction; 2],
    calls: OpenCalls,
    /// Message events of the DATA frame being read, emitted after its frame event, and the
    /// bytes of their messages. Boxed as `Event::Message` holds them: an emptied vector keeps
    /// its room between frames, and room for whole events was a kilobyte and a half on every
    /// open connection.
    #[allow(clippy::vec_box)]
    pending_messages: Vec<Box<MessageEvent>>,
    pending_message_bytes: u64,
    /// Kept between frames for their allocations: the messages a DATA frame completes, and the
    /// calls a frame finishes.
    raw_scratch: Vec<RawMessage<'static>>,
    finished_scratch: FinishedCalls,
    /// The last `:path` made into a string.
    last_path: Option<Arc<str>>,
    /// Highest stream id opened by each side, to recognise frames on closed streams.
    highest_stream: [u32; 2],
    /// The last streams reset while their call was open, and by which direction: what the other
    /// side sent before the reset reached it may still come (RFC 9113 §5.4.2).
    resets: std::collections::VecDeque<(u32, Dir)>,
    /// Calls the client reset before the server's answer ended, oldest first, held a while for
    /// what the server sent before the reset reached it: it crosses the reset on the wire (RFC
    /// 9113 §5.4.2) and is the call's, its status (a DEADLINE_EXCEEDED most often) and the
    /// messages of a stream the client cancelled. Calls refused by the server's GOAWAY as they
    /// opened wait here too once their request has ended, for an answer no server should send.
    held: VecDeque<OpenCall>,
    /// The lowest `last_stream_id` of the server's GOAWAYs: the client's streams above it are
    /// refused (see [`CallEnd::Refused`]).
    server_goaway_last: Option<u32>,
    upgrade_request: Option<Vec<HeaderField>>,
    /// HTTP/1.1 state, for gRPC-Web over HTTP/1.1.
    http1: Option<Box<Http1State>>,
    /// When and where the upgrade request was seen (the upgraded call starts there).
    upgrade_at: (i64, u64),
    /// `mode == Upgrade` is an HTTP/1.1 CONNECT waiting for the proxy's answer.
    tunnel: bool,
    /// The capture joined this connection after it started (no handshake seen).
    mid: bool,
    /// Its bytes come decrypted from TLS: its calls say so.
    tls: bool,
    /// For `mid`: a header block has shown which side is the client (the guess by ports holds
    /// until then).
    client_confirmed: bool,
    skipped_bytes: u64,
}

/// What a [`Connection`] keeps while it is quiet, between packets: its directions' quiet forms,
/// and none of the room kept for the frames being read (a live connection is about 1.1 kB
/// before what it holds; this, about half). Made once the connection has gone quiet, when
/// nothing is half read; made whole again at its next packet.
pub struct QuietConnection {
    mode: Mode,
    client: Dir,
    dirs: [QuietDirection; 2],
    calls: OpenCalls,
    last_path: Option<Arc<str>>,
    highest_stream: [u32; 2],
    resets: VecDeque<(u32, Dir)>,
    server_goaway_last: Option<u32>,
    upgrade_request: Option<Vec<HeaderField>>,
    http1: Option<Box<Http1State>>,
    upgrade_at: (i64, u64),
    tunnel: bool,
    mid: bool,
    tls: bool,
    client_confirmed: bool,
    skipped_bytes: u64,
}

/// A call with its gRPC state, once its headers (or DATA) say it is gRPC: open, or held after
/// the client's reset (see `Connection::held`) for the messages still coming. Both boxed:
/// entries move inside the map's nodes as streams come and go, and each is a few hundred bytes.
struct OpenCall {
    call: Box<Call>,
    grpc: Option<Box<GrpcStream>>,
}

/// The open calls by stream. One entry holds a call and its gRPC state, so a stream's DATA
/// finds both with one lookup, and no gRPC state outlives its call.
#[derive(Default)]
struct OpenCalls(BTreeMap<u32, OpenCall>);

impl OpenCalls {
    fn get(&self, stream: &u32) -> Option<&Call> {
        self.0.get(stream).map(|o| &*o.call)
    }

    fn get_mut(&mut self, stream: &u32) -> Option<&mut Call> {
        self.0.get_mut(stream).map(|o| &mut *o.call)
    }

    fn grpc_mut(&mut self, stream: &u32) -> Option<&mut GrpcStream> {
        self.0.get_mut(stream)?.grpc.as_deref_mut()
    }

    fn is_grpc(&self, stream: &u32) -> bool {
        self.0.get(stream).is_some_and(|o| o.grpc.is_some())
    }

    fn contains_key(&self, stream: &u32) -> bool {
        self.0.contains_key(stream)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn streams(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.keys().copied()
    }

    /// Calls from `from` up, by stream.
    fn from(&self, from: u32) -> impl Iterator<Item = (u32, &Call)> + '_ {
        self.0.range(from..).map(|(&s, o)| (s, &*o.call))
    }

    /// A new call, not (yet) known to be gRPC: it replaces whatever the stream held.
    fn insert(&mut self, call: Box<Call>) {
        self.0.insert(call.stream, OpenCall { call, grpc: None });
    }

    fn open_mut(&mut self, stream: &u32) -> Option<&mut OpenCall> {
        self.0.get_mut(stream)
    }

    fn remove(&mut self, stream: &u32) -> Option<OpenCall> {
        self.0.remove(stream)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut OpenCall> + '_ {
        self.0.values_mut()
    }
}

/// An emptied vector's allocation, for messages borrowing other bytes: collecting into a vector
/// of the same layout reuses the buffer (std collects in place), so DATA frames do not each
/// allocate one. A buffer grown large once (many tiny messages in one piece) is let go.
fn recycle<'b>(mut v: Vec<RawMessage<'_>>) -> Vec<RawMessage<'b>> {
    if v.capacity() > SCRATCH_KEPT {
        return Vec::new();
    }
    v.clear();
    v.into_iter().map(|_| unreachable!("emptied")).collect()
}

/// Entries a connection's scratch vectors keep room for between frames.
const SCRATCH_KEPT: usize = 64;

fn is_client_stream(id: u32) -> bool {
    id % 2 == 1
}

impl Connection {
    pub fn new(info: &FlowInfo, cfg: &Http2Config) -> Self {
        let mut c = Connection {
            mode: Mode::Detect,
            client: Dir::Forward,
            dirs: [
                Direction::new(cfg.max_header_list),
                Direction::new(cfg.max_header_list),
            ],
            calls: OpenCalls::default(),
            pending_messages: Vec::new(),
            pending_message_bytes: 0,
            raw_scratch: Vec::new(),
            finished_scratch: Vec::new(),
            last_path: None,
            highest_stream: [0, 0],
            resets: std::collections::VecDeque::new(),
            held: VecDeque::new(),
            server_goaway_last: None,
            upgrade_request: None,
            http1: None,
            upgrade_at: (0, 0),
            tunnel: false,
            mid: !info.handshake_seen,
            tls: false,
            client_confirmed: false,
            skipped_bytes: 0,
        };
        let forced = |d: Dir| cfg.forced_ports.contains(&info.dst(d).port());
        let client = if forced(Dir::Forward) {
            Some(Dir::Forward)
        } else if forced(Dir::Reverse) {
            Some(Dir::Reverse)
        } else {
            None
        };
        if let Some(client) = client {
            c.mode = Mode::Http2;
            c.client = client;
            c.dirs[client.index()].phase = Phase::Preface {
                matched: 0,
                required: false,
            };
        }
        c
    }

    /// What this connection carries is decrypted TLS.
    pub fn set_tls(&mut self) {
        self.tls = true;
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The direction the client sends in (a guess by ports for connections joined mid-way).
    pub fn client_dir(&self) -> Dir {
        self.client
    }

    pub fn joined_mid_way(&self) -> bool {
        self.mid
    }

    pub fn is_http2(&self) -> bool {
        matches!(self.mode, Mode::Http2 | Mode::Upgrade)
    }

    pub fn skipped_bytes(&self) -> u64 {
        self.skipped_bytes
    }

    pub fn frames(&self) -> u64 {
        self.dirs[0].frames + self.dirs[1].frames
    }

    pub fn data(&mut self, dir: Dir, bytes: &[u8], ctx: &mut Ctx<'_>) {
        self.release_held(ctx.meta.ts_ns, ctx);
        match self.mode {
            Mode::Http2 => self.feed(dir, bytes, ctx),
            Mode::Http1 => self.http1_data(dir, bytes, ctx),
            Mode::Other => self.skipped_bytes += bytes.len() as u64,
            Mode::Detect | Mode::Upgrade => self.detect(dir, bytes, ctx),
        }
    }

    pub fn gap(&mut self, dir: Dir, bytes: u64, ctx: &mut Ctx<'_>) {
        self.release_held(ctx.meta.ts_ns, ctx);
        match self.mode {
            Mode::Other => {
                self.skipped_bytes += bytes;
                return;
            }
            Mode::Detect | Mode::Upgrade => {
                // Without the start of the conversation there is nothing to recognise.
                self.mode = Mode::Other;
                self.skipped_bytes += bytes;
                return;
            }
            Mode::Http1 => {
                ctx.sink.event(Event::Gap(GapEvent {
                    origin: ctx.origin(dir),
                    bytes,
                }));
                ctx.error(
                    dir,
                    None,
                    ErrorKind::Desync,
                    format!(
                        "{bytes} bytes missing from the capture; HTTP/1.1 message boundaries lost"
                    ),
                );
                self.mode = Mode::Other;
                return;
            }
            Mode::Http2 => {}
        }
        ctx.sink.event(Event::Gap(GapEvent {
            origin: ctx.origin(dir),
            bytes,
        }));
        let ds = &mut self.dirs[dir.index()];
        if ds.phase == Phase::Resync {
            // Still looking for frames: the hole only makes the held bytes useless.
            ds.skipped += ds.held.len() as u64;
            ds.held = Vec::new();
            return;
        }
        let in_frame = ds
            .cur
            .as_ref()
            .map(|c| (c.header.length - c.got) as u64 >= bytes)
            .unwrap_or(false);
        if in_frame && ds.hdr_len == 0 {
            // The hole lies inside the current frame's payload: its length is known, so the frame
            // boundaries survive; only this frame's content is incomplete.
            if let Some(cur) = ds.cur.as_mut() {
                cur.got += bytes as u32;
                cur.missing += bytes;
                cur.buffered = false;
                if cur.header.kind != FrameType::Data {
                    cur.buf = Vec::new();
                }
                if matches!(
                    cur.header.kind,
                    FrameType::Headers | FrameType::PushPromise | FrameType::Continuation
                ) {
                    ds.hpack_ok = false;
                }
                let (kind, stream) = (cur.header.kind, cur.header.stream);
                let complete = cur.got == cur.header.length;
                if kind == FrameType::Data {
                    self.stream_gap(dir, stream, bytes, ctx);
                }
                if complete {
                    self.finish_frame(dir, None, ctx);
                }
            }
        } else {
            ds.lose_sync(ctx.cfg.max_header_list);
            ctx.error(
                dir,
                None,
                ErrorKind::Desync,
                format!("{bytes} bytes missing from the capture; looking for the next frame boundary, HPACK state unknown until it refills"),
            );
        }
    }

    /// End of the TCP connection (or of the capture): open calls are reported as unfinished.
    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        for dir in [Dir::Forward, Dir::Reverse] {
            let ds = &mut self.dirs[dir.index()];
            if let Some(cur) = &ds.cur {
                if self.mode == Mode::Http2 && ds.phase == Phase::Frames {
                    let msg = format!(
                        "connection ended inside a {} frame ({} of {} payload bytes seen)",
                        cur.header.kind, cur.got, cur.header.length
                    );
                    ctx.error(dir, Some(cur.header.stream), ErrorKind::Protocol, msg);
                }
            }
        }
        // Bytes still held while looking for frames: now that no more will come, a lone frame
        // that fills them is believed.
        if self.mode == Mode::Detect && self.mid {
            for dir in [Dir::Forward, Dir::Reverse] {
                if self.mode == Mode::Detect && !self.dirs[dir.index()].held.is_empty() {
                    self.try_mid_start(dir, true, ctx);
                }
            }
        }
        if self.mode == Mode::Http2 {
            for dir in [Dir::Forward, Dir::Reverse] {
                if self.dirs[dir.index()].phase == Phase::Resync {
                    self.resync(dir, &[], true, ctx);
                }
            }
            self.emit_pending_messages(ctx);
        }
        if matches!(self.mode, Mode::Detect | Mode::Upgrade) {
            for d in &mut self.dirs {
                self.skipped_bytes += d.held.len() as u64;
                d.held = Vec::new();
            }
        }
        self.release_held(i64::MAX, ctx);
        let streams: Vec<u32> = self.calls.streams().collect();
        for stream in streams {
            if let Some(call) = self.take_call(stream, ctx) {
                ctx.sink.event(Event::Call(call));
            }
        }
    }

    // ----- detection -----

    fn detect(&mut self, dir: Dir, bytes: &[u8], ctx: &mut Ctx<'_>) {
        let ds = &mut self.dirs[dir.index()];
        if ds.held.len() + bytes.len() > DETECT_LIMIT {
            self.mode = Mode::Other;
            self.skipped_bytes += (ds.held.len() + bytes.len()) as u64;
            self.dirs[0].held = Vec::new();
            self.dirs[1].held = Vec::new();
            return;
        }
        // Only the new bytes (and the 3 before them) can complete an HTTP/1.1 head.
        let scan_from = ds.held.len().saturating_sub(3);
        ds.held.extend_from_slice(bytes);
        ds.held_at = *ctx.meta;
        if self.mode == Mode::Upgrade {
            if dir != self.client {
                self.try_upgrade_response(scan_from, ctx);
            }
            return;
        }
        let held = &ds.held;
        let n = held.len().min(PREFACE.len());
        if held[..n] == PREFACE[..n] {
            if held.len() >= PREFACE.len() {
                self.start_http2(dir, ctx);
            }
            return;
        }
        if looks_like_http1_request(held) {
            let Some(end) = find(&held[scan_from..], b"\r\n\r\n").map(|i| i + scan_from) else {
                return;
            };
            if held.starts_with(b"CONNECT ") {
                // A tunnel: whatever follows the proxy's 2xx is a new conversation, maybe HTTP/2.
                self.mode = Mode::Upgrade;
                self.tunnel = true;
                self.client = dir;
                ds.held = held[end + 4..].to_vec();
                self.try_upgrade_response(0, ctx);
                return;
            }
            match parse_upgrade_request(&held[..end + 4]) {
                Some(request) => {
                    self.mode = Mode::Upgrade;
                    self.client = dir;
                    self.upgrade_request = Some(request);
                    self.upgrade_at = (ctx.meta.ts_ns, ctx.meta.index);
                    let rest = held[end + 4..].to_vec();
                    ds.held = rest;
                    ds.phase = Phase::Preface {
                        matched: 0,
                        required: true,
                    };
                    self.dirs[dir.other().index()].phase = Phase::UpgradeResponse;
                    self.try_upgrade_response(0, ctx);
                }
                None => {
                    let head = crate::http1::parse_head(&held[..end + 4]);
                    let grpc_web = head
                        .as_ref()
                        .and_then(|h| h.field("content-type"))
                        .and_then(grpc::classify)
                        .is_some_and(|(f, _)| f != grpc::Flavor::Grpc);
                    if grpc_web {
                        self.start_http1(dir, ctx);
                    } else {
                        self.give_up();
                    }
                }
            }
            return;
        }
        // A server that speaks first sends SETTINGS: once a whole, well-formed SETTINGS frame
        // is there, that is HTTP/2 from the server's side; until then wait. Not in a connection
        // joined mid-way: there, the client's SETTINGS after a preface the capture missed comes
        // first as well, and which side is the client is guessed as for any frames found.
        match settings_prefix(held) {
            SettingsPrefix::Complete if self.mid => self.try_mid_start(dir, false, ctx),
            SettingsPrefix::Complete => {
                self.start_http2(dir.other(), ctx);
            }
            // Held (to DETECT_LIMIT at most) until the other side shows what it speaks.
            SettingsPrefix::Partial | SettingsPrefix::Unsure => {}
            SettingsPrefix::No => {
                // The other side may still be in the middle of sending its preface; the bytes
                // here then belong to the server, whatever they are.
                let other = &self.dirs[dir.other().index()].held;
                let n = other.len().min(PREFACE.len());
                let other_preface = !other.is_empty() && other[..n] == PREFACE[..n];
                if other_preface {
                    return;
                }
                if self.mid {
                    self.try_mid_start(dir, false, ctx);
                } else {
                    self.give_up();
                }
            }
        }
    }

    /// A connection joined mid-way: look for frames in what this direction sent.
    fn try_mid_start(&mut self, dir: Dir, at_end: bool, ctx: &mut Ctx<'_>) {
        let held = &self.dirs[dir.index()].held;
        if resync::looks_like_tls(held) {
            self.give_up();
            return;
        }
        match resync::find_frames(held, at_end) {
            Sync::At(offset) => self.start_mid(dir, offset, ctx),
            Sync::NeedMore if !at_end => {}
            Sync::NeedMore | Sync::Nothing => self.give_up(),
        }
    }

    fn start_mid(&mut self, dir: Dir, offset: usize, ctx: &mut Ctx<'_>) {
        self.mode = Mode::Http2;
        // Which side is the client is not in the bytes yet: the side on the higher (ephemeral)
        // port is taken for the client, the first packet's destination on a tie.
        let [a, b] = ctx.info.endpoints;
        self.client = if a.port() < b.port() {
            Dir::Reverse
        } else {
            Dir::Forward
        };
        ctx.error(
            dir,
            None,
            ErrorKind::Resync,
            "connection joined mid-way: frames found without a preface; HPACK entries from before the capture are unknown".into(),
        );
        for d in [Dir::Forward, Dir::Reverse] {
            let held = std::mem::take(&mut self.dirs[d.index()].held);
            self.dirs[d.index()].lose_sync(ctx.cfg.max_header_list);
            if d == dir {
                self.dirs[d.index()].phase = Phase::Frames;
                self.dirs[d.index()].skipped += offset as u64;
                self.feed(d, &held[offset..], ctx);
            } else if !held.is_empty() {
                self.feed(d, &held, ctx);
            }
        }
    }

    /// Bytes of a direction that lost its frame boundaries: held until frames are found again.
    fn resync(&mut self, dir: Dir, input: &[u8], at_end: bool, ctx: &mut Ctx<'_>) {
        let ds = &mut self.dirs[dir.index()];
        ds.held.extend_from_slice(input);
        match resync::find_frames(&ds.held, at_end) {
            Sync::At(offset) => {
                let held = std::mem::take(&mut ds.held);
                ds.phase = Phase::Frames;
                if offset > 0 {
                    ds.skipped += offset as u64;
                    ctx.error(
                        dir,
                        None,
                        ErrorKind::Resync,
                        format!("{offset} bytes passed over to find the next frame boundary"),
                    );
                }
                self.feed(dir, &held[offset..], ctx);
            }
            Sync::NeedMore => {}
            Sync::Nothing => {
                // Keep the tail: a frame header may straddle what comes next.
                let keep = ds.held.len().min(FRAME_HEADER_LEN * 4);
                let drop = ds.held.len() - keep;
                ds.skipped += drop as u64;
                ds.held.drain(..drop);
            }
        }
        let ds = &mut self.dirs[dir.index()];
        if ds.held.len() > 2 * resync::MAX_SCAN {
            ds.skipped += ds.held.len() as u64;
            ds.held = Vec::new();
        }
    }

    fn give_up(&mut self) {
        self.mode = Mode::Other;
        for d in &mut self.dirs {
            self.skipped_bytes += d.held.len() as u64;
            d.held = Vec::new();
        }
    }

    fn start_http2(&mut self, client: Dir, ctx: &mut Ctx<'_>) {
        self.mode = Mode::Http2;
        self.client = client;
        let c = client.index();
        self.dirs[c].phase = Phase::Preface {
            matched: 0,
            required: true,
        };
        self.dirs[1 - c].phase = Phase::Frames;
        for dir in [client.other(), client] {
            let held = std::mem::take(&mut self.dirs[dir.index()].held);
            if held.is_empty() {
                continue;
            }
            // A server's first SETTINGS held until the client's preface confirmed the
            // connection is shown with the packet that carried it, not the preface's.
            let at = self.dirs[dir.index()].held_at;
            let mut then = Ctx {
                meta: &at,
                info: ctx.info,
                sink: &mut *ctx.sink,
                cfg: ctx.cfg,
                grpc: ctx.grpc,
                schemas: &mut *ctx.schemas,
            };
            self.feed(dir, &held, &mut then);
        }
    }

    /// The server's answer to an upgrade or CONNECT, once its head is complete; `scan_from` is
    /// where a new terminator can start.
    fn try_upgrade_response(&mut self, scan_from: usize, ctx: &mut Ctx<'_>) {
        let server = self.client.other();
        let held = &self.dirs[server.index()].held;
        let from = scan_from.min(held.len());
        let Some(end) = find(&held[from..], b"\r\n\r\n").map(|i| i + from) else {
            return;
        };
        if self.tunnel {
            let established = held.starts_with(b"HTTP/1.1 2") || held.starts_with(b"HTTP/1.0 2");
            if !established {
                self.give_up();
                return;
            }
            // Start over inside the tunnel with what each side sent after the HTTP/1.1 heads.
            self.tunnel = false;
            self.mode = Mode::Detect;
            let server_rest = held[end + 4..].to_vec();
            let client_rest = std::mem::take(&mut self.dirs[self.client.index()].held);
            self.dirs[server.index()].held = Vec::new();
            let client = self.client;
            for (dir, bytes) in [(client, client_rest), (server, server_rest)] {
                if !bytes.is_empty() && matches!(self.mode, Mode::Detect | Mode::Upgrade) {
                    self.detect(dir, &bytes, ctx);
                } else if !bytes.is_empty() {
                    self.data(dir, &bytes, ctx);
                }
            }
            return;
        }
        let switching = held.starts_with(b"HTTP/1.1 101") || held.starts_with(b"HTTP/1.0 101");
        if !switching {
            self.give_up();
            return;
        }
        let rest = held[end + 4..].to_vec();
        self.dirs[server.index()].held = Vec::new();
        self.dirs[server.index()].phase = Phase::Frames;
        self.mode = Mode::Http2;
        // The upgraded request is stream 1, half-closed by the client (RFC 7540 §3.2).
        let mut call = Call::new(
            ctx.info.conn,
            1,
            ctx.info.src(self.client),
            ctx.info.dst(self.client),
            self.upgrade_at.0,
            self.upgrade_at.1,
        );
        call.request_headers = self.upgrade_request.take().map(std::sync::Arc::from);
        call.request_ended = true;
        call.request_end_ts_ns = Some(call.start_ts_ns);
        call.upgraded = true;
        self.insert_call(call, ctx);
        let client_held = std::mem::take(&mut self.dirs[self.client.index()].held);
        if !rest.is_empty() {
            self.feed(server, &rest, ctx);
        }
        if !client_held.is_empty() {
            self.feed(self.client, &client_held, ctx);
        }
    }

    // ----- HTTP/1.1 (gRPC-Web) -----

    fn start_http1(&mut self, client: Dir, ctx: &mut Ctx<'_>) {
        self.mode = Mode::Http1;
        self.client = client;
        let mut parsers = [
            crate::http1::Parser::new(false),
            crate::http1::Parser::new(false),
        ];
        parsers[client.other().index()] = crate::http1::Parser::new(true);
        self.http1 = Some(Box::new(Http1State {
            parsers,
            next_stream: 1,
            waiting: VecDeque::new(),
            current: [None, None],
        }));
        for dir in [client, client.other()] {
            let held = std::mem::take(&mut self.dirs[dir.index()].held);
            if !held.is_empty() {
                self.http1_data(dir, &held, ctx);
            }
        }
    }

    fn http1_data(&mut self, dir: Dir, bytes: &[u8], ctx: &mut Ctx<'_>) {
        let Some(h1) = self.http1.as_mut() else {
            return;
        };
        let mut items = Vec::new();
        let result = h1.parsers[dir.index()].push(bytes, &mut |item| {
            items.push(match item {
                crate::http1::Item::Head(h) => Http1Item::Head(h),
                crate::http1::Item::Body(b) => Http1Item::Body(b.to_vec()),
                crate::http1::Item::End => Http1Item::End,
            })
        });
        let mut finished = Vec::new();
        for item in items {
            self.http1_item(dir, item, &mut finished, ctx);
        }
        self.emit_pending_messages(ctx);
        for call in finished {
            ctx.sink.event(Event::Call(call));
        }
        if let Err(e) = result {
            ctx.error(
                dir,
                None,
                ErrorKind::Protocol,
                format!("{e}; rest of the connection not decoded"),
            );
            self.mode = Mode::Other;
        }
    }

    fn http1_item(
        &mut self,
        dir: Dir,
        item: Http1Item,
        finished: &mut FinishedCalls,
        ctx: &mut Ctx<'_>,
    ) {
        let from_client = dir == self.client;
        let Some(h1) = self.http1.as_mut() else {
            return;
        };
        match item {
            Http1Item::Head(head) => {
                use crate::http1::StartLine;
                let mut list = Vec::new();
                let stream = match &head.start {
                    StartLine::Request { method, target } => {
                        let stream = h1.next_stream;
                        h1.next_stream += 1;
                        // As many as the calls kept open: the oldest were reported unfinished.
                        if h1.waiting.len() >= ctx.cfg.max_open_streams {
                            h1.waiting.pop_front();
                        }
                        h1.waiting.push_back(stream);
                        list.push(field(b":method".to_vec(), method.as_bytes().to_vec()));
                        list.push(field(b":path".to_vec(), target.as_bytes().to_vec()));
                        list.push(field(b":scheme".to_vec(), b"http".to_vec()));
                        if let Some(host) = head.field("host") {
                            list.push(field(b":authority".to_vec(), host.to_vec()));
                        }
                        stream
                    }
                    StartLine::Response { status } => {
                        if *status < 200 {
                            // 100 Continue and friends come before the real answer.
                            h1.current[dir.index()] = None;
                            return;
                        }
                        list.push(field(b":status".to_vec(), status.to_string().into_bytes()));
                        match h1.waiting.front() {
                            Some(&s) => s,
                            None => return,
                        }
                    }
                };
                h1.current[dir.index()] = Some(stream);
                list.extend(
                    head.fields
                        .into_iter()
                        .filter(|(n, _)| n != b"host")
                        .map(|(n, v)| field(n, v)),
                );
                let list: HeaderList = list.into();
                if from_client {
                    let mut call = self.new_call(stream, ctx);
                    call.request_headers = Some(list);
                    self.insert_call(call, ctx);
                    self.update_grpc(stream, Side::Request, ctx);
                } else if let Some(call) = self.calls.get_mut(&stream) {
                    call.response_headers = Some(list);
                    call.response_start_ts_ns = Some(ctx.meta.ts_ns);
                    self.update_grpc(stream, Side::Response, ctx);
                }
            }
            Http1Item::Body(bytes) => {
                let Some(stream) = h1.current[dir.index()] else {
                    return;
                };
                if let Some(call) = self.calls.get_mut(&stream) {
                    if from_client {
                        call.request_bytes += bytes.len() as u64;
                    } else {
                        call.response_bytes += bytes.len() as u64;
                    }
                }
                self.stream_data(dir, stream, &bytes, false, ctx);
            }
            Http1Item::End => {
                let Some(stream) = h1.current[dir.index()].take() else {
                    return;
                };
                if !from_client {
                    h1.waiting.pop_front();
                }
                if let Some(call) = self.calls.get_mut(&stream) {
                    call.end_ts_ns = ctx.meta.ts_ns;
                    call.end_packet = ctx.meta.index;
                    if from_client {
                        call.request_ended = true;
                        call.request_end_ts_ns.get_or_insert(ctx.meta.ts_ns);
                    } else {
                        call.response_ended = true;
                    }
                }
                self.maybe_finish(stream, ctx, finished);
            }
        }
    }

    // ----- frames -----

    fn feed(&mut self, dir: Dir, mut input: &[u8], ctx: &mut Ctx<'_>) {
        let d = dir.index();
        while !input.is_empty() {
            let ds = &mut self.dirs[d];
            match ds.phase {
                Phase::Resync => {
                    self.resync(dir, input, false, ctx);
                    return;
                }
                Phase::UpgradeResponse => {
                    // Bytes before the 101 was complete are held by `detect`.
                    ds.held.extend_from_slice(input);
                    return;
                }
                Phase::Preface { matched, required } => {
                    let want = &PREFACE[matched..];
                    let n = want.len().min(input.len());
                    if input[..n] == want[..n] {
                        input = &input[n..];
                        ds.phase = if matched + n == PREFACE.len() {
                            Phase::Frames
                        } else {
                            Phase::Preface {
                                matched: matched + n,
                                required,
                            }
                        };
                    } else {
                        ds.phase = Phase::Frames;
                        if required || matched > 0 {
                            ctx.error(
                                dir,
                                None,
                                ErrorKind::Protocol,
                                "client connection preface missing or malformed".into(),
                            );
                        }
                    }
                    continue;
                }
                Phase::Frames => {}
            }
            match ds.cur.as_mut() {
                None => {
                    if let (0, Some((hdr, rest))) =
                        (ds.hdr_len, input.split_first_chunk::<FRAME_HEADER_LEN>())
                    {
                        // The usual case, a whole header: a fixed-size copy, not a memcpy call.
                        ds.hdr = *hdr;
                        ds.hdr_len = FRAME_HEADER_LEN;
                        input = rest;
                    } else {
                        let take = (FRAME_HEADER_LEN - ds.hdr_len).min(input.len());
                        ds.hdr[ds.hdr_len..ds.hdr_len + take].copy_from_slice(&input[..take]);
                        ds.hdr_len += take;
                        input = &input[take..];
                    }
                    if ds.hdr_len == FRAME_HEADER_LEN {
                        ds.hdr_len = 0;
                        let header = FrameHeader::parse(&ds.hdr);
                        let buffered = header.kind != FrameType::Data
                            && header.length as usize <= ctx.cfg.max_buffered_frame;
                        ds.cur = Some(Current {
                            header,
                            got: 0,
                            buf: Vec::new(),
                            buffered,
                            missing: 0,
                            raw: ctx.cfg.keep_frame_bytes.then(|| ds.hdr.to_vec()),
                        });
                        if header.length == 0 {
                            self.finish_frame(dir, None, ctx);
                        }
                    }
                }
                Some(cur) => {
                    let remaining = (cur.header.length - cur.got) as usize;
                    let take = remaining.min(input.len());
                    let chunk = &input[..take];
                    if let Some(raw) = cur.raw.as_mut() {
                        let room = (MAX_RAW + FRAME_HEADER_LEN).saturating_sub(raw.len());
                        raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                    // DATA content (without padding) in this chunk, as a range of the chunk.
                    let mut content = None;
                    // A payload wholly in this chunk is parsed where it lies, not copied.
                    let whole = cur.buffered && cur.got == 0 && take == remaining;
                    if cur.buffered {
                        if !whole {
                            cur.buf.extend_from_slice(chunk);
                        }
                    } else if cur.header.kind == FrameType::Data {
                        let padded = cur.header.has(flags::PADDED);
                        if padded && cur.got == 0 && cur.missing == 0 {
                            cur.buf.push(chunk[0]);
                        }
                        let start = u32::from(padded);
                        let end = match (padded, cur.buf.first()) {
                            (true, Some(&pad)) => cur.header.length.saturating_sub(pad as u32),
                            (true, None) => start,
                            (false, _) => cur.header.length,
                        };
                        let lo = cur.got.max(start);
                        let hi = (cur.got + take as u32).min(end);
                        if lo < hi {
                            content = Some((
                                (lo - cur.got) as usize,
                                (hi - cur.got) as usize,
                                lo == start,
                            ));
                        }
                    }
                    let stream = cur.header.stream;
                    cur.got += take as u32;
                    let complete = cur.got == cur.header.length;
                    input = &input[take..];
                    if let Some((a, b, frame_start)) = content {
                        self.stream_data(dir, stream, &chunk[a..b], frame_start, ctx);
                    }
                    if complete {
                        self.finish_frame(dir, whole.then_some(chunk), ctx);
                    }
                }
            }
        }
    }

    /// DATA content of a stream, in order: cut into gRPC messages if the stream is gRPC.
    fn stream_data(
        &mut self,
        dir: Dir,
        stream: u32,
        bytes: &[u8],
        frame_start: bool,
        ctx: &mut Ctx<'_>,
    ) {
        if frame_start && self.grpc_state(stream, dir).is_none() {
            self.sniff_grpc(stream, bytes, ctx);
        }
        let side = self.side(dir);
        let Some(g) = self.grpc_state(stream, dir) else {
            return;
        };
        // Looked up before the first message: whether its body is kept depends on it.
        let path = match &g.path {
            Some(known) => known.clone(),
            None => self.stream_path(stream, dir, ctx),
        };
        let mut raws = recycle(std::mem::take(&mut self.raw_scratch));
        let Some(g) = self.grpc_state(stream, dir) else {
            return;
        };
        g.data(side, bytes, &mut raws);
        self.messages(dir, stream, side, path, &mut raws, ctx);
        self.raw_scratch = recycle(raws);
    }

    /// Bytes of a stream's DATA missing from the capture.
    fn stream_gap(&mut self, dir: Dir, stream: u32, n: u64, ctx: &mut Ctx<'_>) {
        let side = self.side(dir);
        let Some(g) = self.grpc_state(stream, dir) else {
            return;
        };
        let mut raws = Vec::new();
        let kept = g.gap(side, n, &mut raws);
        let path = self.stream_path(stream, dir, ctx);
        self.messages(dir, stream, side, path, &mut raws, ctx);
        if !kept {
            ctx.error(
                dir,
                Some(stream),
                ErrorKind::Desync,
                format!("{n} bytes missing between gRPC messages; rest of this stream's {} messages not decoded", side.as_str()),
            );
        }
    }

    /// A stream whose headers the capture lacks (or could not decode) may still be gRPC: a DATA
    /// frame that starts with a gRPC message prefix makes it one.
    fn sniff_grpc(&mut self, stream: u32, bytes: &[u8], ctx: &mut Ctx<'_>) {
        if stream == 0 || !(self.mid || self.dirs.iter().any(|d| d.unknown_past)) {
            return;
        }
        let [flag, a, b, c, d, ..] = *bytes else {
            return;
        };
        if flag > 1 || u32::from_be_bytes([a, b, c, d]) > 16 << 20 {
            return;
        }
        if let Some(call) = self.calls.get(&stream) {
            // A content-type that is known and not gRPC settles it.
            let ct = call
                .request_header("content-type")
                .or_else(|| call.response_header("content-type"));
            if ct.is_some() {
                return;
            }
        } else {
            let mut call = self.new_call(stream, ctx);
            call.notes
                .push("request headers not in the capture; recognised as gRPC by its DATA".into());
            self.insert_call(call, ctx);
        }
        if let Some(open) = self.calls.open_mut(&stream) {
            open.grpc = Some(Box::new(GrpcStream::new(
                grpc::Flavor::Grpc,
                false,
                ctx.grpc.max_message_size,
            )));
        }
    }

    /// The call's `:path`, or what `--assume-path` says for it.
    fn effective_path(&mut self, stream: u32, ctx: &Ctx<'_>) -> Option<Arc<str>> {
        if let Some(p) = self
            .calls
            .get(&stream)
            .and_then(|c| c.request_header(":path"))
        {
            // Calls on a connection mostly share their path: one string for all of them. Bytes
            // equal to the string's are UTF-8, so they would make that very string.
            if let Some(path) = self.last_path.as_ref().filter(|l| l.as_bytes() == p) {
                return Some(path.clone());
            }
            // `Call::path`, without a string in between.
            let path: Arc<str> = Arc::from(super::call::lossless_str(p));
            self.last_path = Some(path.clone());
            return Some(path);
        }
        let server_port = ctx.info.dst(self.client).port();
        ctx.cfg
            .assumed_paths
            .iter()
            .find(|a| match a.target {
                AssumeTarget::Stream { conn, stream: s } => conn == ctx.info.conn && s == stream,
                AssumeTarget::Port(p) => p == server_port,
            })
            .map(|a| Arc::from(a.path.as_str()))
    }

    /// [`Self::effective_path`], looked up once per gRPC stream.
    fn stream_path(&mut self, stream: u32, dir: Dir, ctx: &Ctx<'_>) -> Option<Arc<str>> {
        if let Some(Some(known)) = self.grpc_state(stream, dir).map(|g| &g.path) {
            return known.clone();
        }
        let path = self.effective_path(stream, ctx);
        if let Some(g) = self.grpc_state(stream, dir) {
            g.keep_bodies(ctx.grpc.reads_bodies(g.flavor, path.as_deref()));
            g.path = Some(path.clone());
        }
        path
    }

    /// The gRPC state `dir`'s bytes on `stream` go to: its open call's, or, for the server's, a
    /// held call's (see `held`).
    fn grpc_state(&mut self, stream: u32, dir: Dir) -> Option<&mut GrpcStream> {
        // Split borrows: one lookup in the map where a method call would need two.
        let Self {
            calls,
            held,
            client,
            ..
        } = self;
        match calls.grpc_mut(&stream) {
            Some(g) => Some(g),
            None if dir == *client => None,
            None => held_in(held, stream).and_then(|h| h.grpc.as_deref_mut()),
        }
    }

    fn side(&self, dir: Dir) -> Side {
        if dir == self.client {
            Side::Request
        } else {
            Side::Response
        }
    }

    fn messages(
        &mut self,
        dir: Dir,
        stream: u32,
        side: Side,
        path: Option<Arc<str>>,
        raws: &mut Vec<RawMessage<'_>>,
        ctx: &mut Ctx<'_>,
    ) {
        for raw in raws.drain(..) {
            let Some(g) = self.grpc_state(stream, dir) else {
                return;
            };
            // Nothing reads it and no event is made of it: a count is all it is.
            if !ctx.grpc.reads_bodies(g.flavor, path.as_deref()) && counted(ctx.sink.wants()) {
                g.counts[side as usize] += 1;
                continue;
            }
            match grpc_message::decode(&raw, g, side, path.as_deref(), ctx.schemas, ctx.grpc) {
                Outcome::WebTrailers(list) => {
                    if let Some(call) = self.calls.get_mut(&stream) {
                        let list = list.into_iter().map(|(n, v)| field(n, v)).collect();
                        if side == Side::Response {
                            call.response_trailers.get_or_insert(list);
                        } else {
                            call.request_trailers.get_or_insert(list);
                        }
                    }
                }
                Outcome::Message(decoded) => {
                    let index = g.counts[side as usize];
                    g.counts[side as usize] += 1;
                    if counted(ctx.sink.wants()) {
                        continue;
                    }
                    self.pending_message_bytes += u64::from(decoded.length);
                    self.pending_messages.push(Box::new(MessageEvent {
                        origin: ctx.origin(dir),
                        stream,
                        path: path.clone(),
                        side,
                        index,
                        decoded,
                    }));
                    // A frame of up to 16 MiB may hold millions of empty messages, or several
                    // of the largest: past a bound they go out now, before their frame.
                    if self.pending_messages.len() >= MAX_HELD_MESSAGES
                        || self.pending_message_bytes >= MAX_HELD_MESSAGE_BYTES
                    {
                        self.emit_pending_messages(ctx);
                    }
                }
            }
        }
    }

    fn emit_pending_messages(&mut self, ctx: &mut Ctx<'_>) {
        self.pending_message_bytes = 0;
        for message in self.pending_messages.drain(..) {
            ctx.sink.event(Event::Message(message));
        }
    }

    /// Sets up gRPC decoding once a call's headers on one side say it is gRPC.
    fn update_grpc(&mut self, stream: u32, side: Side, ctx: &Ctx<'_>) {
        let Some(OpenCall { call, grpc }) = self.calls.open_mut(&stream) else {
            return;
        };
        let headers = match side {
            Side::Request => &call.request_headers,
            Side::Response => &call.response_headers,
        };
        let Some(list) = headers else {
            return;
        };
        let get = |n: &str| {
            list.iter()
                .find(|h| h.name == n.as_bytes())
                .map(|h| &h.value[..])
        };
        let encoding = get("grpc-encoding").map(super::call::lossless);
        let g = match grpc {
            Some(g) => g,
            None => {
                let Some((flavor, json)) = get("content-type").and_then(grpc::classify) else {
                    return;
                };
                grpc.insert(Box::new(GrpcStream::new(
                    flavor,
                    json,
                    ctx.grpc.max_message_size,
                )))
            }
        };
        if encoding.is_some() {
            g.encoding[side as usize] = encoding;
        }
    }

    /// Removes a call and its gRPC state; message counts, unfinished messages and decoded
    /// status details go into the call.
    fn take_call(&mut self, stream: u32, ctx: &mut Ctx<'_>) -> Option<Box<Call>> {
        let OpenCall { call, grpc } = self.calls.remove(&stream)?;
        Some(settle(call, grpc, ctx))
    }

    /// A frame is complete. `whole` is its payload when it arrived in one piece and was not
    /// copied into the frame's buffer.
    fn finish_frame(&mut self, dir: Dir, whole: Option<&[u8]>, ctx: &mut Ctx<'_>) {
        let d = dir.index();
        let Some(cur) = self.dirs[d].cur.take() else {
            return;
        };
        let payload = whole.unwrap_or(&cur.buf);
        self.dirs[d].frames += 1;
        let h = cur.header;
        let mut notes = Vec::new();

        if let Some(block) = &self.dirs[d].block {
            if h.kind != FrameType::Continuation || h.stream != block.stream {
                notes.push(format!(
                    "header block of stream {} not finished: CONTINUATION expected (PROTOCOL_ERROR)",
                    block.stream
                ));
                self.dirs[d].block = None;
                self.dirs[d].hpack_ok = false;
            }
        }
        if h.length > self.dirs[d].max_frame_size {
            notes.push(format!(
                "{} bytes exceed SETTINGS_MAX_FRAME_SIZE {} (FRAME_SIZE_ERROR)",
                h.length, self.dirs[d].max_frame_size
            ));
        }
        match h.kind {
            FrameType::Data
            | FrameType::Headers
            | FrameType::Priority
            | FrameType::RstStream
            | FrameType::PushPromise
            | FrameType::Continuation
                if h.stream == 0 =>
            {
                notes.push(format!("{} on stream 0 (PROTOCOL_ERROR)", h.kind))
            }
            FrameType::Settings | FrameType::Ping | FrameType::GoAway if h.stream != 0 => notes
                .push(format!(
                    "{} on stream {} (PROTOCOL_ERROR)",
                    h.kind, h.stream
                )),
            _ => {}
        }

        let from_client = dir == self.client;
        let mut parts = FrameParts {
            headers: None,
            table_size_updates: Vec::new(),
            notes,
        };
        let mut finished_calls = std::mem::take(&mut self.finished_scratch);

        let detail = if h.kind == FrameType::Data {
            self.data_frame(dir, &cur, &mut parts.notes, &mut finished_calls, ctx)
        } else if !cur.buffered {
            parts.notes.push(if cur.missing > 0 {
                format!("{} payload bytes missing from the capture", cur.missing)
            } else {
                format!(
                    "payload of {} bytes not decoded (limit {})",
                    h.length, ctx.cfg.max_buffered_frame
                )
            });
            if matches!(
                h.kind,
                FrameType::Headers | FrameType::PushPromise | FrameType::Continuation
            ) {
                self.dirs[d].hpack_ok = false;
                self.dirs[d].block = None;
            }
            FrameDetail::Skipped
        } else {
            match parse_payload(&h, payload) {
                Err(e) => {
                    if matches!(
                        h.kind,
                        FrameType::Headers | FrameType::PushPromise | FrameType::Continuation
                    ) {
                        self.dirs[d].hpack_ok = false;
                        self.dirs[d].block = None;
                    }
                    parts.notes.push(format!("malformed: {e}"));
                    FrameDetail::Malformed(e)
                }
                Ok(payload) => {
                    self.control_frame(dir, &h, payload, &mut parts, &mut finished_calls, ctx)
                }
            }
        };
        match ctx.sink.wants() {
            Wants::Everything | Wants::AllButMessages(_) => {
                let event = FrameEvent {
                    origin: ctx.origin(dir),
                    from_client,
                    header: h,
                    detail,
                    headers: parts.headers,
                    table_size_updates: parts.table_size_updates,
                    notes: parts.notes,
                    raw: cur.raw,
                };
                ctx.sink.event(Event::Frame(event))
            }
            Wants::Calls(tally) => {
                if let Some(tally) = tally {
                    tally.frame_of(h.kind, !parts.notes.is_empty());
                }
            }
            Wants::Counts(tally) => {
                // A summary: its messages were counted as they came.
                tally.frame_of(h.kind, !parts.notes.is_empty());
                tally.calls += finished_calls.len() as u64;
                finished_calls.clear();
                if finished_calls.capacity() <= SCRATCH_KEPT {
                    self.finished_scratch = finished_calls;
                }
                return;
            }
        }
        self.emit_pending_messages(ctx);
        for call in finished_calls.drain(..) {
            ctx.sink.event(Event::Call(call));
        }
        if finished_calls.capacity() <= SCRATCH_KEPT {
            self.finished_scratch = finished_calls;
        }
    }

    fn data_frame(
        &mut self,
        dir: Dir,
        cur: &Current,
        notes: &mut Vec<String>,
        finished: &mut FinishedCalls,
        ctx: &mut Ctx<'_>,
    ) -> FrameDetail {
        let h = cur.header;
        let pad_len = if h.has(flags::PADDED) {
            cur.buf.first().copied()
        } else {
            None
        };
        let overhead = pad_len.map(|p| p as u32 + 1).unwrap_or(0);
        let data_len = h.length.saturating_sub(overhead);
        if overhead > h.length {
            notes.push("padding longer than the frame (PROTOCOL_ERROR)".into());
        }
        if cur.missing > 0 {
            notes.push(format!(
                "{} payload bytes missing from the capture",
                cur.missing
            ));
        }
        let from_client = dir == self.client;
        let closed =
            h.stream != 0 && self.is_closed_stream(h.stream) && !self.in_flight(h.stream, dir);
        match self.calls.get_mut(&h.stream) {
            Some(call) => {
                call.end_ts_ns = ctx.meta.ts_ns;
                call.end_packet = ctx.meta.index;
                if from_client {
                    call.request_bytes += data_len as u64;
                } else {
                    answered_anyway(call);
                    call.response_bytes += data_len as u64;
                }
                if h.has(flags::END_STREAM) {
                    if from_client {
                        call.request_ended = true;
                        call.request_end_ts_ns.get_or_insert(ctx.meta.ts_ns);
                    } else {
                        call.response_ended = true;
                    }
                }
                self.maybe_finish(h.stream, ctx, finished);
            }
            None if closed => {
                notes.push(format!(
                    "DATA on closed stream {} (STREAM_CLOSED)",
                    h.stream
                ));
            }
            None if !from_client => {
                let end_stream = h.has(flags::END_STREAM);
                self.crossed_data(h.stream, data_len, end_stream, finished, ctx);
            }
            None => {}
        }
        FrameDetail::Data {
            data_len,
            pad_len,
            missing: cur.missing,
        }
    }

    /// In a connection joined mid-way, a decoded `:method` shows the client and `:status` the
    /// server. If the guess by ports was wrong, the sides of everything so far are swapped.
    fn confirm_client(&mut self, dir: Dir, headers: Option<&[HeaderField]>) {
        let Some(list) = headers else {
            return;
        };
        let has = |n: &[u8]| list.iter().any(|h| !h.name_unknown && h.name == n);
        let client = if has(b":method") {
            dir
        } else if has(b":status") {
            dir.other()
        } else {
            return;
        };
        self.client_confirmed = true;
        if client == self.client {
            return;
        }
        self.client = client;
        self.highest_stream.swap(0, 1);
        for open in self.calls.values_mut().chain(&mut self.held) {
            open.call.swap_sides();
            if let Some(g) = open.grpc.as_mut() {
                g.swap_sides();
            }
        }
    }

    /// Whether a frame from `dir` on `stream` crossed the other side's RST_STREAM: sent before
    /// it arrived, which RFC 9113 §5.4.2 expects, so neither a protocol error nor a new call.
    /// A call held after the client's reset counts, however many resets came since.
    fn in_flight(&self, stream: u32, dir: Dir) -> bool {
        self.resets.iter().any(|&(s, by)| s == stream && by != dir)
            || (dir != self.client && self.held.iter().any(|h| h.call.stream == stream))
    }

    /// Notes, for [`in_flight`](Self::in_flight), that `by` reset `stream`.
    fn note_reset(&mut self, stream: u32, by: Dir) {
        if self.resets.len() == MAX_RESETS_KEPT {
            self.resets.pop_front();
        }
        self.resets.push_back((stream, by));
    }

    fn is_closed_stream(&self, stream: u32) -> bool {
        let side = if is_client_stream(stream) {
            self.client
        } else {
            self.client.other()
        };
        stream <= self.highest_stream[side.index()] && !self.calls.contains_key(&stream)
    }

    fn control_frame(
        &mut self,
        dir: Dir,
        h: &FrameHeader,
        payload: Payload<'_>,
        parts: &mut FrameParts,
        finished: &mut FinishedCalls,
        ctx: &mut Ctx<'_>,
    ) -> FrameDetail {
        let d = dir.index();
        match payload {
            Payload::Data { .. } => FrameDetail::Unknown,
            Payload::Headers {
                priority,
                fragment,
                pad_len,
            } => {
                self.begin_block(dir, h, 0, fragment, parts, finished, ctx);
                FrameDetail::Headers { priority, pad_len }
            }
            Payload::PushPromise {
                promised_stream,
                fragment,
                pad_len,
            } => {
                self.begin_block(dir, h, promised_stream, fragment, parts, finished, ctx);
                FrameDetail::PushPromise {
                    promised_stream,
                    pad_len,
                }
            }
            Payload::Continuation { fragment } => {
                match self.dirs[d].block.as_mut() {
                    Some(block) => {
                        if block.fragment.len() + fragment.len() > ctx.cfg.max_header_block {
                            block.overflow = true;
                        } else {
                            block.fragment.extend_from_slice(fragment);
                        }
                        if h.has(flags::END_HEADERS) {
                            self.end_block(dir, None, parts, finished, ctx);
                        }
                    }
                    None => parts
                        .notes
                        .push("CONTINUATION without a preceding HEADERS (PROTOCOL_ERROR)".into()),
                }
                FrameDetail::Continuation
            }
            Payload::Priority(p) => FrameDetail::Priority(p),
            Payload::RstStream { error_code } => {
                let by_client = dir == self.client;
                // The client gave up a stream the server never took: still refused.
                let refused = self
                    .calls
                    .get(&h.stream)
                    .map(|c| c.end)
                    .filter(|e| by_client && matches!(e, CallEnd::Refused { .. }));
                if let Some(end) = refused {
                    self.end_call(h.stream, end, finished, ctx);
                    self.note_reset(h.stream, dir);
                } else if let Some(call) = self.calls.get_mut(&h.stream) {
                    // A server that has answered whole may stop the rest of the request this
                    // way (RFC 9113 §8.1): the call did not fail.
                    call.request_stopped = !by_client
                        && error_code == 0 // NO_ERROR
                        && call.response_ended
                        && !call.request_ended;
                    call.end = if call.request_stopped {
                        CallEnd::Complete
                    } else {
                        CallEnd::Reset {
                            by_client,
                            error_code,
                        }
                    };
                    call.end_ts_ns = ctx.meta.ts_ns;
                    call.end_packet = ctx.meta.index;
                    let answer_may_cross = by_client && !call.response_ended;
                    self.note_reset(h.stream, dir);
                    if answer_may_cross {
                        self.hold(h.stream, ctx);
                    } else if let Some(call) = self.take_call(h.stream, ctx) {
                        finished.push(call);
                    }
                } else if !by_client {
                    // The server's own reset of a call the client reset: its answer is over.
                    if let Some(call) = self.unhold(h.stream, ctx) {
                        finished.push(call);
                    }
                }
                FrameDetail::RstStream { error_code }
            }
            Payload::Settings { ack, settings } => {
                if ack {
                    // Our peer acknowledged the oldest SETTINGS the other side sent: its header
                    // table limit now bounds the encoder of this direction.
                    let other = &mut self.dirs[1 - d];
                    if let Some(Some(size)) = other.unacked_table_sizes.pop_front() {
                        self.dirs[d].hpack.set_max_table_size_limit(size);
                    }
                } else {
                    let mut table_size = None;
                    for s in &settings {
                        match s.id {
                            setting::HEADER_TABLE_SIZE => table_size = Some(s.value),
                            setting::MAX_FRAME_SIZE => {
                                if (16_384..=16_777_215).contains(&s.value) {
                                    self.dirs[1 - d].max_frame_size = s.value;
                                } else {
                                    parts.notes.push(format!(
                                        "invalid SETTINGS_MAX_FRAME_SIZE {} (PROTOCOL_ERROR)",
                                        s.value
                                    ));
                                }
                            }
                            _ => {}
                        }
                    }
                    if self.dirs[d].unacked_table_sizes.len() < 64 {
                        self.dirs[d].unacked_table_sizes.push_back(table_size);
                    }
                }
                FrameDetail::Settings { ack, settings }
            }
            Payload::Ping { ack, opaque } => FrameDetail::Ping { ack, opaque },
            Payload::GoAway {
                last_stream_id,
                error_code,
                debug_data,
            } => {
                // Joined mid-way, the sides may still be a guess by ports: a client's GOAWAY
                // (naming the server's streams) taken for the server's would refuse its calls.
                let sides_known = !self.mid || self.client_confirmed;
                if dir != self.client && sides_known {
                    self.refuse_above(last_stream_id, finished, ctx);
                }
                FrameDetail::GoAway {
                    last_stream_id,
                    error_code,
                    debug_data: debug_data.to_vec(),
                }
            }
            Payload::WindowUpdate { increment } => {
                if increment == 0 {
                    parts
                        .notes
                        .push("WINDOW_UPDATE increment 0 (PROTOCOL_ERROR)".into());
                }
                FrameDetail::WindowUpdate { increment }
            }
            Payload::Unknown => FrameDetail::Unknown,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn begin_block(
        &mut self,
        dir: Dir,
        h: &FrameHeader,
        promised: u32,
        fragment: &[u8],
        parts: &mut FrameParts,
        finished: &mut FinishedCalls,
        ctx: &mut Ctx<'_>,
    ) {
        let d = dir.index();
        let overflow = fragment.len() > ctx.cfg.max_header_block;
        let complete = h.has(flags::END_HEADERS);
        self.dirs[d].block = Some(PendingBlock {
            stream: h.stream,
            kind: h.kind,
            end_stream: h.kind == FrameType::Headers && h.has(flags::END_STREAM),
            promised,
            // A block in one frame is decoded from the frame; only CONTINUATIONs need a copy.
            fragment: if overflow || complete {
                Vec::new()
            } else {
                fragment.to_vec()
            },
            overflow,
        });
        if complete {
            self.end_block(dir, Some(fragment), parts, finished, ctx);
        }
    }

    /// A header block is complete: decode it and apply it to its call.
    /// `whole` is the block when it came in one frame; otherwise the pending block holds it.
    fn end_block(
        &mut self,
        dir: Dir,
        whole: Option<&[u8]>,
        parts: &mut FrameParts,
        finished: &mut FinishedCalls,
        ctx: &mut Ctx<'_>,
    ) {
        let d = dir.index();
        let Some(block) = self.dirs[d].block.take() else {
            return;
        };
        let ds = &mut self.dirs[d];
        let mut headers = None;
        if block.overflow {
            ds.hpack_ok = false;
            let msg = format!(
                "header block larger than {} bytes not decoded; later headers in this direction unknown",
                ctx.cfg.max_header_block
            );
            parts.notes.push(msg.clone());
            ctx.error(dir, Some(block.stream), ErrorKind::Limit, msg);
        } else if !ds.hpack_ok {
            parts
                .notes
                .push("headers not decoded: HPACK state lost earlier in this direction".into());
        } else {
            let fragment = whole.unwrap_or(&block.fragment);
            match ds.hpack.decode_shared(fragment) {
                Ok(list) => {
                    parts.table_size_updates = ds.hpack.last_size_updates().to_vec();
                    headers = Some(list);
                    if ds.unknown_past && !ds.hpack.past_unknown() {
                        ds.unknown_past = false;
                        parts.notes.push(
                            "HPACK table fully known from here on: later headers in this direction are complete"
                                .into(),
                        );
                    }
                }
                Err(e) => {
                    ds.hpack_ok = false;
                    let msg = format!("HPACK: {e}; later headers in this direction unknown");
                    parts.notes.push(msg.clone());
                    ctx.error(dir, Some(block.stream), ErrorKind::Hpack, msg);
                }
            }
        }
        parts.headers = headers.clone();
        if self.mid && !self.client_confirmed {
            self.confirm_client(dir, headers.as_deref());
        }
        let from_client = dir == self.client;
        if block.kind == FrameType::PushPromise {
            if block.promised != 0 && !from_client {
                let mut call = self.new_call(block.promised, ctx);
                call.pushed = true;
                call.request_headers = headers;
                call.request_ended = true;
                call.request_end_ts_ns = Some(call.start_ts_ns);
                self.insert_call(call, ctx);
            }
            return;
        }
        let stream = block.stream;
        if stream == 0 {
            return;
        }
        if !self.calls.contains_key(&stream) {
            let closed = self.is_closed_stream(stream);
            // The answer (often a trailers-only status) to a call the client reset, or a
            // request's trailers crossing the server's reset: the call is over, not a new one.
            if closed && self.in_flight(stream, dir) {
                if !from_client {
                    self.crossed(stream, headers, block.end_stream, finished, ctx);
                }
                return;
            }
            if closed && from_client {
                parts
                    .notes
                    .push(format!("HEADERS on closed stream {stream} (STREAM_CLOSED)"));
            }
            if from_client && !is_client_stream(stream) {
                parts.notes.push(format!(
                    "client opened even-numbered stream {stream} (PROTOCOL_ERROR)"
                ));
            }
            let mut call = self.new_call(stream, ctx);
            if let Some(last) = self.server_goaway_last {
                if from_client && is_client_stream(stream) && stream > last {
                    // Opened after the server's GOAWAY (crossing it, or a client that did not
                    // heed it): the server ignores it.
                    call.end = CallEnd::Refused {
                        last_stream_id: last,
                    };
                }
            }
            self.insert_call(call, ctx);
        }
        let Some(call) = self.calls.get_mut(&stream) else {
            return;
        };
        call.end_ts_ns = ctx.meta.ts_ns;
        call.end_packet = ctx.meta.index;
        // Without decoded headers we still know where the block belongs.
        let list = headers.unwrap_or_default();
        if from_client {
            if call.request_headers.is_none() {
                call.request_headers = Some(list);
                self.update_grpc(stream, Side::Request, ctx);
            } else {
                call.request_trailers = Some(list);
            }
            if block.end_stream {
                if let Some(call) = self.calls.get_mut(&stream) {
                    call.request_ended = true;
                    call.request_end_ts_ns.get_or_insert(ctx.meta.ts_ns);
                }
            }
        } else {
            answered_anyway(call);
            if call.server_block(list, ctx.meta.ts_ns) == ServerBlock::Headers {
                self.update_grpc(stream, Side::Response, ctx);
            }
            if block.end_stream {
                if let Some(call) = self.calls.get_mut(&stream) {
                    call.response_ended = true;
                }
            }
        }
        self.maybe_finish(stream, ctx, finished);
    }

    /// A call on `stream` that starts with the packet at hand.
    fn new_call(&self, stream: u32, ctx: &Ctx<'_>) -> Call {
        let mut call = Call::new(
            ctx.info.conn,
            stream,
            ctx.info.src(self.client),
            ctx.info.dst(self.client),
            ctx.meta.ts_ns,
            ctx.meta.index,
        );
        call.tls = self.tls;
        call
    }

    /// Opens a call, and records its stream as the highest its opener (odd: the client, even: the
    /// server) has used, which is what tells a closed stream from one never opened.
    fn insert_call(&mut self, call: Call, ctx: &mut Ctx<'_>) {
        let opener = if is_client_stream(call.stream) {
            self.client
        } else {
            self.client.other()
        };
        let highest = &mut self.highest_stream[opener.index()];
        *highest = (*highest).max(call.stream);
        if self.calls.len() >= ctx.cfg.max_open_streams {
            let oldest = self.calls.streams().next();
            if let Some(oldest) = oldest {
                if let Some(old) = self.take_call(oldest, ctx) {
                    ctx.error(
                        self.client,
                        Some(oldest),
                        ErrorKind::Limit,
                        format!(
                            "more than {} open streams; stream {oldest} reported unfinished",
                            ctx.cfg.max_open_streams
                        ),
                    );
                    ctx.sink.event(Event::Call(old));
                }
            }
        }
        self.calls.insert(Box::new(call));
    }

    fn maybe_finish(&mut self, stream: u32, ctx: &mut Ctx<'_>, finished: &mut FinishedCalls) {
        let Some(c) = self.calls.get(&stream) else {
            return;
        };
        if c.request_ended && !c.response_ended && matches!(c.end, CallEnd::Refused { .. }) {
            // Opened after the server's GOAWAY: no answer should come, but a server that
            // ignores its own GOAWAY would answer soon.
            self.hold(stream, ctx);
            return;
        }
        if c.request_ended && c.response_ended {
            let end = match c.end {
                CallEnd::Unfinished => CallEnd::Complete,
                end => end,
            };
            self.end_call(stream, end, finished, ctx);
        }
    }

    /// Takes the call on `stream` out, ended so at the packet at hand.
    fn end_call(
        &mut self,
        stream: u32,
        end: CallEnd,
        finished: &mut FinishedCalls,
        ctx: &mut Ctx<'_>,
    ) {
        if let Some(mut call) = self.take_call(stream, ctx) {
            call.end = end;
            call.end_ts_ns = ctx.meta.ts_ns;
            call.end_packet = ctx.meta.index;
            finished.push(call);
        }
    }

    /// A GOAWAY from the server names `last` the last of the client's streams it processed or
    /// may process: the calls above it that it has not answered are refused, and over, as the
    /// client gives them up when the GOAWAY reaches it. Those opened later are refused as they
    /// open (see `end_block`).
    fn refuse_above(&mut self, last: u32, finished: &mut FinishedCalls, ctx: &mut Ctx<'_>) {
        let last = self.server_goaway_last.map_or(last, |l| l.min(last));
        self.server_goaway_last = Some(last);
        let refused: Vec<u32> = self
            .calls
            .from(last.saturating_add(1))
            .filter(|&(s, c)| is_client_stream(s) && !c.answered())
            .map(|(s, _)| s)
            .collect();
        for stream in refused {
            let end = CallEnd::Refused {
                last_stream_id: last,
            };
            self.end_call(stream, end, finished, ctx);
        }
    }

    /// Holds the call on `stream`, which the client reset while its answer was unfinished, or
    /// whose request ended on a stream the server refused (see `held`), with its gRPC state.
    fn hold(&mut self, stream: u32, ctx: &mut Ctx<'_>) {
        // The path its messages are decoded for, while the call can still tell it.
        if self.calls.is_grpc(&stream) {
            self.stream_path(stream, self.client, ctx);
        }
        let Some(open) = self.calls.remove(&stream) else {
            return;
        };
        if self.held.len() >= MAX_HELD_CALLS {
            let oldest = self.held.front().map(|h| h.call.stream);
            if let Some(call) = oldest.and_then(|s| self.unhold(s, ctx)) {
                ctx.sink.event(Event::Call(call));
            }
        }
        self.held.push_back(open);
    }

    /// The held call on `stream` (the oldest, should the client have reused the id).
    fn held_mut(&mut self, stream: u32) -> Option<&mut OpenCall> {
        held_in(&mut self.held, stream)
    }

    /// Lets go of the held call on `stream`, settled with what crossed the reset.
    fn unhold(&mut self, stream: u32, ctx: &mut Ctx<'_>) -> Option<Box<Call>> {
        let i = self.held.iter().position(|h| h.call.stream == stream)?;
        let OpenCall { call, grpc } = self.held.remove(i)?;
        Some(settle(call, grpc, ctx))
    }

    /// A header block from the server on a stream the client had reset: if its call is held,
    /// the block is the call's answer, and a block that ends the stream lets it go.
    fn crossed(
        &mut self,
        stream: u32,
        headers: Option<HeaderList>,
        end_stream: bool,
        finished: &mut FinishedCalls,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(held) = self.held_mut(stream) else {
            return;
        };
        let list = headers.unwrap_or_default();
        answered_anyway(&mut held.call);
        if held.call.server_block(list, ctx.meta.ts_ns) != ServerBlock::Informational {
            self.answer_ended(stream, end_stream, finished, ctx);
        }
    }

    /// DATA from the server on a stream the client had reset: its bytes are the held call's,
    /// and its END_STREAM lets the call go.
    fn crossed_data(
        &mut self,
        stream: u32,
        data_len: u32,
        end_stream: bool,
        finished: &mut FinishedCalls,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(held) = self.held_mut(stream) else {
            return;
        };
        answered_anyway(&mut held.call);
        held.call.response_bytes += u64::from(data_len);
        self.answer_ended(stream, end_stream, finished, ctx);
    }

    /// After a frame of a held call's answer: one that ended the stream lets the call go.
    fn answer_ended(
        &mut self,
        stream: u32,
        end_stream: bool,
        finished: &mut FinishedCalls,
        ctx: &mut Ctx<'_>,
    ) {
        if !end_stream {
            return;
        }
        if let Some(mut call) = self.unhold(stream, ctx) {
            call.response_ended = true;
            // A call held as refused and answered all the same.
            if call.end == CallEnd::Unfinished {
                call.end = CallEnd::Complete;
            }
            finished.push(call);
        }
    }

    /// Lets go of the held calls reset [`HOLD_AFTER_RESET_NS`] or longer before `now_ns`: an
    /// answer that crossed the reset would have come by then. At each of the connection's
    /// packets, and where time passes without one (a sweep, a live capture's quiet wire).
    pub fn release_held(&mut self, now_ns: i64, ctx: &mut Ctx<'_>) {
        while let Some(h) = self.held.front() {
            if now_ns.saturating_sub(h.call.end_ts_ns) < HOLD_AFTER_RESET_NS {
                break;
            }
            let stream = h.call.stream;
            if let Some(call) = self.unhold(stream, ctx) {
                ctx.sink.event(Event::Call(call));
            }
        }
    }

    /// Whether calls are held for answers crossing their reset (see `held`).
    pub fn holds_calls(&self) -> bool {
        !self.held.is_empty()
    }

    /// The connection has gone quiet: gives back the room kept for the next frames and calls
    /// (an emptied map keeps a node, a vector its buffer) and the decoders' caches. Nothing it
    /// will read depends on them.
    pub fn compact(&mut self) {
        if self.calls.len() == 0 {
            self.calls = OpenCalls::default();
        }
        fn free<T>(v: &mut Vec<T>) {
            if v.is_empty() {
                *v = Vec::new();
            }
        }
        free(&mut self.pending_messages);
        free(&mut self.raw_scratch);
        free(&mut self.finished_scratch);
        self.resets.shrink_to_fit();
        self.held.shrink_to_fit();
        for d in &mut self.dirs {
            free(&mut d.held);
            d.unacked_table_sizes.shrink_to_fit();
            d.hpack.compact();
        }
    }
}

impl Connection {
    /// The connection's quiet form, when nothing is half read (no frame, header block or bytes
    /// held, no messages waiting for their frame's event), no call waits for time to pass, and
    /// its HPACK tables are within their default size; its parts move out, leaving this one
    /// empty. `None`, and the connection left as it was, otherwise.
    pub fn freeze(&mut self) -> Option<QuietConnection> {
        let Connection {
            mode,
            client,
            dirs,
            calls,
            pending_messages,
            pending_message_bytes,
            raw_scratch,
            finished_scratch,
            last_path,
            highest_stream,
            resets,
            held,
            server_goaway_last,
            upgrade_request,
            http1,
            upgrade_at,
            tunnel,
            mid,
            tls,
            client_confirmed,
            skipped_bytes,
        } = self;
        // Calls held for an answer crossing their reset wait for the next sweep, which would
        // make the connection whole again to let them go.
        let quiet = dirs
            .iter()
            .all(|d| d.between_frames() && d.hpack.freezes_cheaply())
            && held.is_empty()
            && pending_messages.is_empty()
            && *pending_message_bytes == 0
            && raw_scratch.is_empty()
            && finished_scratch.is_empty();
        if !quiet {
            return None;
        }
        let [d0, d1] = dirs;
        Some(QuietConnection {
            mode: *mode,
            client: *client,
            dirs: [d0.freeze(), d1.freeze()],
            calls: std::mem::take(calls),
            last_path: last_path.take(),
            highest_stream: *highest_stream,
            resets: std::mem::take(resets),
            server_goaway_last: *server_goaway_last,
            upgrade_request: upgrade_request.take(),
            http1: http1.take(),
            upgrade_at: *upgrade_at,
            tunnel: *tunnel,
            mid: *mid,
            tls: *tls,
            client_confirmed: *client_confirmed,
            skipped_bytes: *skipped_bytes,
        })
    }
}

impl QuietConnection {
    /// The connection again, as it was when frozen; the parts move out, leaving this empty.
    pub fn thaw(&mut self) -> Connection {
        let QuietConnection {
            mode,
            client,
            dirs: [d0, d1],
            calls,
            last_path,
            highest_stream,
            resets,
            server_goaway_last,
            upgrade_request,
            http1,
            upgrade_at,
            tunnel,
            mid,
            tls,
            client_confirmed,
            skipped_bytes,
        } = self;
        Connection {
            mode: *mode,
            client: *client,
            dirs: [d0.thaw(), d1.thaw()],
            calls: std::mem::take(calls),
            pending_messages: Vec::new(),
            pending_message_bytes: 0,
            raw_scratch: Vec::new(),
            finished_scratch: Vec::new(),
            last_path: last_path.take(),
            highest_stream: *highest_stream,
            resets: std::mem::take(resets),
            held: VecDeque::new(),
            server_goaway_last: *server_goaway_last,
            upgrade_request: upgrade_request.take(),
            http1: http1.take(),
            upgrade_at: *upgrade_at,
            tunnel: *tunnel,
            mid: *mid,
            tls: *tls,
            client_confirmed: *client_confirmed,
            skipped_bytes: *skipped_bytes,
        }
    }
}

/// A call refused by a GOAWAY that the server answers all the same was not refused: it goes
/// on as any call, with a note.
fn answered_anyway(call: &mut Call) {
    if let CallEnd::Refused { last_stream_id } = call.end {
        call.end = CallEnd::Unfinished;
        call.notes.push(format!(
            "answered, though above the last stream {last_stream_id} of the server's GOAWAY"
        ));
    }
}

/// How long a call the client reset is held for an answer crossing the reset: longer than the
/// round trips of the networks captures come from, short enough that a live view shows the
/// call soon after it ended.
const HOLD_AFTER_RESET_NS: i64 = 1_000_000_000;

/// Calls a connection holds at once for answers crossing a reset; past that, the oldest goes.
const MAX_HELD_CALLS: usize = MAX_RESETS_KEPT;

/// Whether a message is only counted, as these wants take no message events: counted in the
/// tally, if there is one.
fn counted(wants: Wants<'_>) -> bool {
    match wants {
        Wants::Everything => false,
        Wants::Calls(None) | Wants::AllButMessages(None) => true,
        Wants::Calls(Some(tally)) | Wants::AllButMessages(Some(tally)) | Wants::Counts(tally) => {
            tally.messages += 1;
            true
        }
    }
}

/// The held call on `stream` (the oldest, should the client have reused the id).
fn held_in(held: &mut VecDeque<OpenCall>, stream: u32) -> Option<&mut OpenCall> {
    held.iter_mut().find(|h| h.call.stream == stream)
}

/// A call leaving the connection: its gRPC state's message counts and unfinished messages, and
/// its decoded status details, go into it.
fn settle(mut call: Box<Call>, grpc: Option<Box<GrpcStream>>, ctx: &Ctx<'_>) -> Box<Call> {
    if let Some(g) = grpc {
        call.grpc = true;
        call.request_messages = g.counts[0];
        call.response_messages = g.counts[1];
        for side in [Side::Request, Side::Response] {
            if let Some((have, want)) = g.pending(side) {
                call.notes.push(format!(
                    "{} message cut short: {have} of {want} bytes",
                    side.as_str()
                ));
            }
        }
    }
    if let Some(v) = call.grpc_field("grpc-status-details-bin") {
        call.grpc_status_details = grpc_message::decode_status_details(v, ctx.schemas);
    }
    call
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn looks_like_http1_request(b: &[u8]) -> bool {
    let method_len = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    (1..=16).contains(&method_len) && b.get(method_len) == Some(&b' ')
}

enum SettingsPrefix {
    /// A complete SETTINGS frame (not an ACK) on stream 0 with known setting ids.
    Complete,
    /// Too short to tell, and consistent with one so far.
    Partial,
    /// A complete SETTINGS frame with a setting this does not know: HTTP/2 lets a peer send
    /// any, so it may well be, but the client's preface has to say so.
    Unsure,
    No,
}

/// Message events a DATA frame holds back until its own frame event, and the bytes of their
/// messages: past either, they are emitted before it.
const MAX_HELD_MESSAGES: usize = 1024;
const MAX_HELD_MESSAGE_BYTES: u64 = 16 << 20;

/// How many resets [`Connection::in_flight`] remembers: frames in flight cross a reset within a
/// round trip, while a few more streams may be reset.
const MAX_RESETS_KEPT: usize = 16;

/// Whether `b` starts with a server's initial SETTINGS frame.
fn settings_prefix(b: &[u8]) -> SettingsPrefix {
    let template = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
    if b.len() < FRAME_HEADER_LEN {
        // Length bytes can be anything small; type, flags and stream id are fixed.
        let fixed_ok = b
            .iter()
            .enumerate()
            .all(|(i, &x)| i == 1 || i == 2 || x == template[i]);
        return if fixed_ok {
            SettingsPrefix::Partial
        } else {
            SettingsPrefix::No
        };
    }
    let mut hdr = [0u8; FRAME_HEADER_LEN];
    hdr.copy_from_slice(&b[..FRAME_HEADER_LEN]);
    let h = FrameHeader::parse(&hdr);
    let plausible = h.kind == FrameType::Settings
        && h.stream == 0
        && h.flags == 0
        && h.length % 6 == 0
        && h.length <= 6 * 16;
    if !plausible {
        return SettingsPrefix::No;
    }
    let end = FRAME_HEADER_LEN + h.length as usize;
    let Some(body) = b.get(FRAME_HEADER_LEN..end) else {
        return SettingsPrefix::Partial;
    };
    // The standard range, and gRPC C-core's own settings, which its servers send first thing.
    let known_ids = body.chunks_exact(6).all(|c| {
        let id = u16::from_be_bytes([c[0], c[1]]);
        (1..=0x10).contains(&id) || setting::name(id).is_some()
    });
    if known_ids {
        SettingsPrefix::Complete
    } else {
        SettingsPrefix::Unsure
    }
}

/// Parses an HTTP/1.1 request head; returns its headers as HTTP/2 would carry them when it asks
/// for `Upgrade: h2c`.
fn parse_upgrade_request(head: &[u8]) -> Option<Vec<HeaderField>> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?;
    let target = request_line.next()?;
    let mut upgrade = false;
    let mut authority = None;
    let mut rest = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match name.as_str() {
            "upgrade" => {
                upgrade |= value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("h2c"))
            }
            "host" => authority = Some(value.to_string()),
            // Hop-by-hop and upgrade machinery do not exist in HTTP/2.
            "connection" | "http2-settings" | "keep-alive" | "transfer-encoding" => {}
            _ => rest.push(field(name.into_bytes(), value.as_bytes().to_vec())),
        }
    }
    if !upgrade {
        return None;
    }
    let mut out = vec![
        field(b":method".to_vec(), method.as_bytes().to_vec()),
        field(b":path".to_vec(), target.as_bytes().to_vec()),
        field(b":scheme".to_vec(), b"http".to_vec()),
    ];
    if let Some(a) = authority {
        out.push(field(b":authority".to_vec(), a.into_bytes()));
    }
    out.extend(rest);
    Some(out)
}

/// A header that did not come through HPACK (the HTTP/1.1 upgrade request).
fn field(name: Vec<u8>, value: Vec<u8>) -> HeaderField {
    HeaderField {
        name: name.into(),
        value: value.into(),
        repr: super::hpack::Representation::WithoutIndexing {
            name_index: None,
            huffman_name: false,
            huffman_value: false,
        },
        name_unknown: false,
        value_unknown: false,
    }
}
