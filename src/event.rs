//! Typed events the dissection hands to sinks (text, JSON Lines, statistics, ...).
//!
//! Events own their data so that a sink may keep them; they are produced in capture order.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::grpc::message::Decoded;
use crate::grpc::Side;
use crate::http2::call::Call;
use crate::http2::frame::{FrameError, FrameHeader, PriorityInfo, Setting};
use crate::http2::hpack::HeaderList;

#[derive(Debug, Clone)]
pub enum Event {
    Frame(FrameEvent),
    // Boxed: these are large, and events are moved through every sink.
    Message(Box<MessageEvent>),
    Call(Box<Call>),
    Gap(GapEvent),
    Error(ErrorEvent),
    /// An HTTP/2 (or gRPC-Web HTTP/1.1) connection ended, after its last call. Boxed: rare,
    /// and the largest (an event's size is its largest kind's, moved with every frame).
    ConnectionEnd(Box<ConnectionEnd>),
}

impl Event {
    /// The connection the event belongs to (none for an error of the capture as a whole).
    pub fn conn(&self) -> Option<u64> {
        match self {
            Event::Frame(f) => Some(f.origin.conn),
            Event::Message(m) => Some(m.origin.conn),
            Event::Call(c) => Some(c.conn),
            Event::Gap(g) => Some(g.origin.conn),
            Event::Error(e) => e.origin.map(|o| o.conn),
            Event::ConnectionEnd(e) => Some(e.conn),
        }
    }

    /// The same, to renumber.
    pub fn conn_mut(&mut self) -> Option<&mut u64> {
        match self {
            Event::Frame(f) => Some(&mut f.origin.conn),
            Event::Message(m) => Some(&mut m.origin.conn),
            Event::Call(c) => Some(&mut c.conn),
            Event::Gap(g) => Some(&mut g.origin.conn),
            Event::Error(e) => e.origin.as_mut().map(|o| &mut o.conn),
            Event::ConnectionEnd(e) => Some(&mut e.conn),
        }
    }
}

/// How a connection ended, as the capture shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndKind {
    /// FIN from both sides.
    Fin,
    /// FIN from one side only, then the capture or the flow's life ended.
    HalfClosed {
        by_client: bool,
    },
    Rst {
        by_client: bool,
    },
    /// No packet for longer than the idle timeout (capture time).
    Idle,
    /// The flow table was full.
    Evicted,
    /// A new connection reused the tuple.
    Reused,
    /// The capture ended with the connection open.
    CaptureEnd,
}

impl EndKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndKind::Fin => "fin",
            EndKind::HalfClosed { .. } => "half-closed",
            EndKind::Rst { .. } => "rst",
            EndKind::Idle => "idle",
            EndKind::Evicted => "evicted",
            EndKind::Reused => "reused",
            EndKind::CaptureEnd => "capture-end",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConnectionEnd {
    pub conn: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// `"http2"` or `"http1"` (gRPC-Web).
    pub protocol: &'static str,
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
    /// Reassembled bytes client→server and server→client.
    pub bytes: [u64; 2],
    /// TCP segments of the connection, both ways, as Wireshark's Conversations count them.
    pub packets: u64,
    pub end: EndKind,
    /// The connection was joined mid-way by the capture.
    pub mid: bool,
    /// The TLS the connection was carried in.
    pub tls: Option<crate::tls::TlsInfo>,
    /// The first FIN or RST the capture shows: who closed first, the active close even when
    /// both sides did (`EndKind::Fin`).
    pub closed_first: Option<ClosedFirst>,
    /// The TCP handshake's round trip, when the capture showed it whole.
    pub handshake: Option<HandshakeRtt>,
    /// What TCP showed of what the client sent, and of what the server sent (a side's zero
    /// windows are its own receive window, closed on the other).
    pub tcp: [crate::tcp::TcpSide; 2],
}

/// A connection's round trip as its TCP handshake measured it (Wireshark's iRTT), in its two
/// parts on either side of the capture point: where the capture was taken on the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeRtt {
    /// From the capture point to the server and back (SYN to SYN-ACK, for a client that
    /// opened the connection).
    pub server_ns: i64,
    /// From the capture point to the client and back (SYN-ACK to ACK).
    pub client_ns: i64,
}

impl HandshakeRtt {
    pub fn total_ns(&self) -> i64 {
        self.server_ns.saturating_add(self.client_ns)
    }

    /// Where the capture was taken, when the round trip is long enough to tell (a millisecond
    /// or more): next to one side when the part on its side is a tenth of the whole or less.
    pub fn capture_point(&self) -> Option<CapturePoint> {
        let total = self.total_ns();
        if total < 1_000_000 {
            None
        } else if self.client_ns.saturating_mul(10) <= total {
            Some(CapturePoint::NextToClient)
        } else if self.server_ns.saturating_mul(10) <= total {
            Some(CapturePoint::NextToServer)
        } else {
            Some(CapturePoint::Between)
        }
    }
}

/// Where on the path between client and server a capture was taken (see
/// [`HandshakeRtt::capture_point`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapturePoint {
    NextToClient,
    NextToServer,
    Between,
}

impl CapturePoint {
    pub fn as_str(self) -> &'static str {
        match self {
            CapturePoint::NextToClient => "next to the client",
            CapturePoint::NextToServer => "next to the server",
            CapturePoint::Between => "between them",
        }
    }

    /// Next to the client (`true`) or to the server.
    pub fn next_to(self, client: bool) -> bool {
        self == if client {
            CapturePoint::NextToClient
        } else {
            CapturePoint::NextToServer
        }
    }
}

/// Which side sent a connection's first FIN or RST, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedFirst {
    pub by_client: bool,
    pub ts_ns: i64,
}

/// Where in the capture something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// 1-based capture record that completed it.
    pub packet: u64,
    pub ts_ns: i64,
    pub conn: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct FrameEvent {
    pub origin: Origin,
    /// Sent by the connection's client, as the dissector knows it: by the preface, or, in a
    /// connection joined mid-way, by ports until a header block says otherwise.
    pub from_client: bool,
    pub header: FrameHeader,
    pub detail: FrameDetail,
    /// The decoded header list, on the frame that completes a header block.
    pub headers: Option<HeaderList>,
    /// HPACK dynamic table size updates at the start of the completed block.
    pub table_size_updates: Vec<u32>,
    /// Protocol violations and decoding problems of this frame, in words.
    pub notes: Vec<String>,
    /// The frame's bytes (header, then at most 64 KiB of payload; missing bytes left out), when
    /// `Http2Config::keep_frame_bytes` asks for them.
    pub raw: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameDetail {
    Data {
        /// Payload bytes without padding.
        data_len: u32,
        pad_len: Option<u8>,
        /// Bytes of this frame the capture did not have.
        missing: u64,
    },
    Headers {
        priority: Option<PriorityInfo>,
        pad_len: Option<u8>,
    },
    Priority(PriorityInfo),
    RstStream {
        error_code: u32,
    },
    Settings {
        ack: bool,
        settings: Vec<Setting>,
    },
    PushPromise {
        promised_stream: u32,
        pad_len: Option<u8>,
    },
    Ping {
        ack: bool,
        opaque: [u8; 8],
    },
    GoAway {
        last_stream_id: u32,
        error_code: u32,
        debug_data: Vec<u8>,
    },
    WindowUpdate {
        increment: u32,
    },
    Continuation,
    Unknown,
    /// The payload contradicts its framing; shown, not decoded.
    Malformed(FrameError),
    /// The payload was too large to buffer or partly missing from the capture.
    Skipped,
}

/// A gRPC message, emitted after the frame that completed it.
#[derive(Debug, Clone)]
pub struct MessageEvent {
    pub origin: Origin,
    pub stream: u32,
    /// Shared by all messages of the call.
    pub path: Option<std::sync::Arc<str>>,
    pub side: Side,
    /// Position among this call's messages in this direction, from 0.
    pub index: u32,
    pub decoded: Decoded,
}

#[cfg(test)]
impl MessageEvent {
    /// For unit tests: message `index` of `side` on `stream` of connection `conn`, from
    /// 10.0.0.1:5000 to 10.0.0.2:50051 in packet 1, without a path, decoded as nothing.
    pub(crate) fn at(conn: u64, stream: u32, side: Side, index: u32) -> Self {
        MessageEvent {
            origin: Origin {
                packet: 1,
                ts_ns: 0,
                conn,
                src: "10.0.0.1:5000".parse().expect("an address"),
                dst: "10.0.0.2:50051".parse().expect("an address"),
            },
            stream,
            path: None,
            side,
            index,
            decoded: Decoded::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GapEvent {
    pub origin: Origin,
    /// Bytes missing from the capture in this direction.
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The capture file could not be read further.
    Capture,
    /// HPACK decoding failed; that direction's headers are unknown from here on.
    Hpack,
    /// The frame stream lost its boundaries (after a gap).
    Desync,
    /// Frame boundaries were found again, or found in a connection joined mid-way.
    Resync,
    /// A protocol rule was broken; decoding goes on.
    Protocol,
    /// A limit was reached (buffer, table, header list).
    Limit,
    /// A TLS connection, or part of it, could not be decrypted.
    Tls,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Capture => "capture",
            ErrorKind::Hpack => "hpack",
            ErrorKind::Desync => "desync",
            ErrorKind::Resync => "resync",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Limit => "limit",
            ErrorKind::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ErrorEvent {
    pub origin: Option<Origin>,
    pub stream: Option<u32>,
    pub kind: ErrorKind,
    pub message: String,
}

/// Counts of what went by, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub frames: u64,
    /// Frames by type code (counted per frame, so kept as an array, not a map).
    pub frames_by_code: [u64; 256],
    pub calls: u64,
    pub messages: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub errors: u64,
    pub frames_with_notes: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            frames: 0,
            frames_by_code: [0; 256],
            calls: 0,
            messages: 0,
            gaps: 0,
            gap_bytes: 0,
            errors: 0,
            frames_with_notes: 0,
        }
    }
}

impl Tally {
    /// Frames by type name, for the summary (unknown types together as UNKNOWN).
    pub fn frames_by_type(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (code, &n) in self.frames_by_code.iter().enumerate() {
            if n > 0 {
                let name = crate::http2::frame::FrameType::from_code(code as u8).name();
                *m.entry(name.to_string()).or_default() += n;
            }
        }
        m
    }

    pub fn frame(&mut self, f: &FrameEvent) {
        self.frame_of(f.header.kind, !f.notes.is_empty());
    }

    /// Counts a frame of `kind`, with protocol notes or without.
    pub fn frame_of(&mut self, kind: crate::http2::frame::FrameType, noted: bool) {
        self.frames += 1;
        self.frames_by_code[kind.code() as usize] += 1;
        if noted {
            self.frames_with_notes += 1;
        }
    }

    /// Adds another tally (the workers of one capture).
    pub fn merge(&mut self, o: &Tally) {
        self.frames += o.frames;
        for (a, b) in self.frames_by_code.iter_mut().zip(o.frames_by_code.iter()) {
            *a += b;
        }
        self.calls += o.calls;
        self.messages += o.messages;
        self.gaps += o.gaps;
        self.gap_bytes += o.gap_bytes;
        self.errors += o.errors;
        self.frames_with_notes += o.frames_with_notes;
    }

    pub fn count(&mut self, event: &Event) {
        match event {
            Event::Frame(f) => self.frame(f),
            Event::Call(_) => self.calls += 1,
            Event::Message(_) => self.messages += 1,
            Event::Gap(g) => {
                self.gaps += 1;
                self.gap_bytes += g.bytes;
            }
            Event::Error(_) => self.errors += 1,
            Event::ConnectionEnd(_) => {}
        }
    }
}

/// Receives events in capture order.
pub trait Sink {
    fn event(&mut self, event: Event);

    /// A line of output a worker thread formatted for this sink, in its place among the events
    /// (see [`crate::parallel::Handoff::Line`]). Only outputs that have their lines formatted
    /// that way receive any.
    fn line(&mut self, _line: &[u8]) {}

    /// The time of the capture's first packet, given by [`crate::parallel::dissect`] to a sink
    /// that is not shown packets itself (text output counts times from it).
    fn time_base(&mut self, _first_ts_ns: i64) {}

    /// Which events the sink looks at: the dissection does not build frame and message events
    /// for a sink that ignores them. Asked for every frame, so it should be cheap.
    fn wants(&mut self) -> Wants<'_> {
        Wants::Everything
    }

    /// Connection `conn` has been quiet for a while ([`crate::tcp::FlowConfig::quiet_ns`]): a
    /// sink that keeps figures per connection may pack them until the connection's next event.
    /// Said again at each sweep while it stays quiet. Nothing a sink writes may depend on it.
    fn quiet(&mut self, _conn: u64) {}

    /// Whether the sink's output has gone away (a reader that closed the pipe, a full disk):
    /// reading stops there, as tshark stops at SIGPIPE, rather than dissecting the rest of
    /// the capture for nobody.
    fn closed(&self) -> bool {
        false
    }
}

/// What a [`Sink`] looks at.
pub enum Wants<'a> {
    Everything,
    /// Calls, gaps, errors and connection ends, not frames or messages (`--calls`, call
    /// statistics). Frames and messages are counted into the tally, if one is given.
    Calls(Option<&'a mut Tally>),
    /// Everything but messages (connection health): message events are not built, and are
    /// counted into the tally, if one is given.
    AllButMessages(Option<&'a mut Tally>),
    /// Counts only (a summary): frame and message events are not built, and they and finished
    /// calls are counted into the tally instead of sent. Whatever else comes (gaps, errors,
    /// calls ended otherwise, connection ends) is still sent to [`Sink::event`], to be counted
    /// there.
    Counts(&'a mut Tally),
}

impl<'a> Wants<'a> {
    /// These wants, less the frames or messages nothing will look at (a display filter or a
    /// list of fields none of them can match).
    pub fn narrowed(self, frames: bool, messages: bool) -> Wants<'a> {
        match self {
            Wants::Everything if !frames && !messages => Wants::Calls(None),
            Wants::Everything if !messages => Wants::AllButMessages(None),
            Wants::AllButMessages(tally) if !frames => Wants::Calls(tally),
            wants => wants,
        }
    }
}

impl Sink for Vec<Event> {
    fn event(&mut self, event: Event) {
        self.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event is moved at the size of its largest kind, a frame's too: the rare kinds
    /// that grow (a connection's end, a call, a message) stay in boxes, and frames set the size.
    #[test]
    fn an_event_is_no_larger_than_a_frame() {
        assert!(
            std::mem::size_of::<Event>() <= std::mem::size_of::<FrameEvent>() + 8,
            "Event {} bytes, FrameEvent {}",
            std::mem::size_of::<Event>(),
            std::mem::size_of::<FrameEvent>()
        );
    }
}
