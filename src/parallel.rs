//! One capture on several cores: its TCP flows are sharded across worker threads by a hash of
//! the connection's addresses, each worker runs its own [`Dissector`], and the events are merged
//! back into the order a single dissector would have produced them.
//!
//! Every packet goes to exactly one worker, so events are tagged with the index of the packet
//! that produced them and merged by that tag. A worker's tags only grow, and the reader tells
//! every worker how far it has read, even a worker that got nothing, so the merge can hand on
//! events as soon as no earlier one can still come. Connection numbers are a worker's own; the
//! merge renumbers them in order of each connection's first packet, which is how one dissector
//! numbers them. At the end, the connections still open are ended in connection order, as one
//! dissector does.
//!
//! Worker 0 runs on the reader's thread and dissects its packets as they are read, so that N
//! workers make N threads; it takes a smaller share of the connections, as the reader has its
//! own work (see [`Shards`]). The others run on threads of their own: the reader decodes each
//! packet down to TCP once, and such a worker gets only the segment's headers and payload.
//! What travels back is chosen by a [`Route`]: nothing (a summary, which the workers count),
//! the events themselves, or the output's text for them, which the workers format (formatting
//! is most of a full output's work) without the connection number; the merge writes the
//! capture's number into the slot the route left for it.
//!
//! Idle connections are expired when the whole capture's packets say so: the reader decides
//! when to sweep, as one flow table would, and every worker sweeps at that packet; the merge
//! puts the connections ended by a sweep in connection order, before that packet's own events.
//!
//! What can differ from one dissector: the flow table limit (100 000 connections at once) is
//! shared out among the workers as the connections are, so that memory is bounded as on one
//! thread, and evictions come at other moments when the connections open at once hash
//! unevenly; and with `--single-pass`, a schema learnt from reflection on one connection
//! decodes later calls only on connections of the same worker.

use std::collections::{BTreeMap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::capture::defrag::Defragmenter;
use crate::capture::link::{self, Skip, TcpSegment};
use crate::capture::{CaptureError, CaptureReader, Packet};
use crate::event::{ErrorEvent, ErrorKind, Event, Sink, Wants};
use crate::grpc::schema::Schemas;
use crate::output::Tally;
use crate::pipeline::{Config, Dissector, Stats};
use crate::tcp::FlowKey;

/// The reader hands every worker its batch after this many packets, or sooner when the packets
/// read reach [`BATCH_BYTES`].
const BATCH: usize = 512;
/// [`BATCH`] when the workers send nothing back but counts (a summary, `stats`, `health`):
/// fewer wake-ups for work that is little per packet (the summary of small packets on two
/// workers took 0.31 s with 512 packets, 0.27 s with 2048). Outputs keep the smaller batch,
/// as the text of a batch's lines is ten times its packets.
const BATCH_QUIET: usize = 2048;
/// Bytes of packets read (headers and all, so at least the payloads copied into the batches)
/// at which the batches are handed out: full-size segments reach this long before
/// [`BATCH_QUIET`], and a batch's buffer stays small enough to be reused (see [`SPARE_MAX`]).
const BATCH_BYTES: usize = 512 << 10;

/// Packets for one worker, their bytes in one buffer, and the sweeps between them. A worker
/// hands its emptied batches back (see [`Spares`]).
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    entries: Vec<Entry>,
    /// Every packet up to this index has been handed out; the time of that packet.
    read_to: u64,
    read_ts: i64,
    /// The capture's first packet's time, which text output shows times from.
    first_ts: i64,
}

impl Batch {
    /// Emptied for reuse, unless a large packet made it big.
    fn emptied(mut self) -> Option<Batch> {
        if self.data.capacity() > SPARE_MAX {
            return None;
        }
        self.data.clear();
        self.entries.clear();
        Some(self)
    }
}

/// The merge hands its lines on when it has gathered this many bytes (or an event comes, or
/// it has handed on all it can for now).
const OUT_FLUSH: usize = 1 << 17;

/// A batch's buffer is kept for reuse up to this size (512 small packets take about 60 kB).
const SPARE_MAX: usize = 1 << 20;

/// Connections a worker ends at a time at the end of the input, each piece handed to the merge
/// as it is made: 100,000 connections still open at the end made events and lines by the
/// hundred megabytes, held until the last worker's last. Fuzzing ends them two at a time, so
/// that the few connections of a fuzzed capture come in several pieces.
const END_PIECE: usize = if cfg!(fuzzing) { 2 } else { 1024 };

/// A worker's ends of its channels.
struct WorkerLinks {
    batches: Receiver<Batch>,
    replies: SyncSender<Reply>,
    /// Emptied batches, back to the reader.
    spare_batches: SyncSender<Batch>,
    /// Text buffers the merge has written out, back from it.
    spare_texts: Receiver<Vec<u8>>,
}

/// Emptied batches on their way back from the workers to the reader. Without them every batch
/// grew its two vectors from nothing, copying them as they doubled, and was freed on another
/// thread: 3% of a summary's instructions on two workers.
struct Spares {
    tx: SyncSender<Batch>,
    rx: Receiver<Batch>,
}

impl Spares {
    fn new(workers: usize) -> Self {
        // Each worker holds at most its queue's batches and the one it works on.
        let (tx, rx) = sync_channel(workers * 6);
        Spares { tx, rx }
    }

    fn take(&self) -> Batch {
        self.rx.try_recv().unwrap_or_default()
    }
}

enum Entry {
    /// A TCP segment as the reader decoded it (index, time, headers, with an empty payload);
    /// its payload is `data[start..end]`. Only the payload is copied, and the link layers are
    /// read once.
    Segment(u64, i64, TcpSegment<'static>, usize, usize),
    /// Expire idle connections before the packet of this index, at this time.
    Sweep(u64, i64),
}

/// Where an item goes in the output: the packet it came from, and before that packet's own
/// events, what a sweep at that packet ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Tag {
    index: u64,
    /// 0: ended by the sweep; 1: the packet's own.
    phase: u8,
}

/// What a worker does with an event (see [`dissect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// Nothing: the output does not show it (the worker has counted it).
    Drop,
    /// Sent as it is; the merge renumbers its connection and hands it to the sink.
    Event,
    /// Appended by the worker to the buffer it was given, as the output's text for it (its
    /// lines, each with its newline) without its connection number: the merge writes the
    /// capture's number at the slot, and hands the text to [`Sink::line`]. Formatting is most
    /// of the work of a full output, and this way the workers share it.
    Line(Option<ConnSlot>),
}

/// Where a formatted event's connection number goes: an offset in the buffer the route was
/// given, and a width the number is padded to with spaces after it (`{:<width}`; 0 for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSlot {
    pub at: usize,
    pub width: u8,
}

/// Decides, on a worker, what becomes of each event, and may format it onto the buffer.
/// `first_ts_ns` is the time of the capture's first packet, which text output counts from.
pub trait Route: Sync {
    fn route(&self, event: &Event, first_ts_ns: i64, buf: &mut Vec<u8>) -> Handoff;

    /// Which events the route may pass on: workers count the others without building them.
    fn shows(&self) -> Shows {
        Shows::Everything
    }
}

/// What a [`Route`] may pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shows {
    Everything,
    /// Calls only (`--calls`): frames and messages are dropped.
    Calls,
    /// Nothing (a summary).
    Nothing,
}

impl Shows {
    /// What a route shows, less the frames or messages nothing will look at, as
    /// [`crate::event::Wants::narrowed`] does for a sink.
    pub fn narrowed(self, frames: bool, messages: bool) -> Shows {
        match self {
            Shows::Everything if !frames && !messages => Shows::Calls,
            shows => shows,
        }
    }
}

/// The route of a summary: every event is counted and dropped.
pub struct DropAll;

impl Route for DropAll {
    fn route(&self, _: &Event, _: i64, _: &mut Vec<u8>) -> Handoff {
        Handoff::Drop
    }

    fn shows(&self) -> Shows {
        Shows::Nothing
    }
}

/// A route that needs no time base: a closure or a function.
impl<F: Fn(&Event, &mut Vec<u8>) -> Handoff + Sync> Route for F {
    fn route(&self, event: &Event, _: i64, buf: &mut Vec<u8>) -> Handoff {
        self(event, buf)
    }
}

/// A worker's own sink, for an analysis of whole connections (`stats`, `health`): every worker
/// gets one, which sees all of that worker's events (instead of the route). It may write lines
/// as it goes (a report when a connection ends), which reach the sink in capture order as routed
/// lines do, and it comes back when the input ends, for the caller to merge the parts. What it
/// keeps of a connection past its end must go out as a line, which gets the capture's number
/// of the connection: the part's own numbers are its worker's.
pub trait Part: Sink + Send {
    /// Writes the lines made since the last call (called after every event, and after
    /// [`end`](Self::end)).
    fn lines(&mut self, _out: &mut Lines<'_>) {}

    /// The input has ended, and so has every connection, with its events.
    fn end(&mut self) {}
}

/// Where a [`Part`] writes its lines: to the merge, from a worker, or straight to an output
/// when the part runs alone and its connection numbers are the capture's already.
pub struct Lines<'a>(LinesTo<'a>);

enum LinesTo<'a> {
    Merge {
        text: &'a mut Vec<u8>,
        items: &'a mut Vec<Routed>,
        sent: u64,
    },
    Out(&'a mut Vec<u8>),
}

impl<'a> Lines<'a> {
    /// Lines appended to `out`, numbers put in, for a part run without [`dissect_parts`].
    pub fn to(out: &'a mut Vec<u8>) -> Lines<'a> {
        Lines(LinesTo::Out(out))
    }

    /// Appends one item of text (its lines, each with its newline) about connection `conn`:
    /// `write` appends it to the buffer without the number, and says where the number goes,
    /// as a [`Route`] does.
    pub fn push(
        &mut self,
        conn: Option<u64>,
        write: impl FnOnce(&mut Vec<u8>) -> Option<ConnSlot>,
    ) {
        match &mut self.0 {
            LinesTo::Merge { text, items, sent } => {
                let start = text.len();
                let slot = write(text);
                items.push(Routed::line(*sent, start..text.len(), slot, conn));
            }
            LinesTo::Out(out) => {
                if let (Some(slot), Some(conn)) = (write(out), conn) {
                    let mut digits = itoa::Buffer::new();
                    let digits = digits.format(conn).as_bytes();
                    let pad = usize::from(slot.width).saturating_sub(digits.len());
                    let put = digits.iter().copied().chain(std::iter::repeat_n(b' ', pad));
                    out.splice(slot.at..slot.at, put);
                }
            }
        }
    }
}

/// No part: what [`dissect`] runs with.
pub enum NoPart {}

impl Sink for NoPart {
    fn event(&mut self, _: Event) {
        match *self {}
    }
}

impl Part for NoPart {}

/// An event as a worker hands it on. Routes make lines of nearly every event; the few events
/// passed on as they are go in a box, so that items, which are moved into the reply and again
/// into the merge's queue, stay small.
enum Routed {
    Event(Box<Event>),
    /// A formatted event: where it lies in the worker's text (offsets from the start of all
    /// the text the worker sends, which comes in one buffer per batch), and where its
    /// connection number goes.
    Line(Range<u64>, Option<LineConn>),
}

/// Where a formatted line's connection number goes, and which connection it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineConn {
    /// Offset in the worker's text, as the line's range.
    at: u64,
    /// Padded to this many columns, as [`ConnSlot::width`].
    width: u8,
    /// The connection: the worker's number, the capture's once merged.
    conn: u64,
}

impl Routed {
    /// The line at `range` of the text buffer whose bytes come after the `sent` ones, about
    /// connection `conn` (the worker's number), whose number goes at `slot`.
    fn line(sent: u64, range: Range<usize>, slot: Option<ConnSlot>, conn: Option<u64>) -> Routed {
        let abs = |i: usize| sent + i as u64;
        let conn = slot.zip(conn).map(|(slot, conn)| LineConn {
            at: abs(slot.at),
            width: slot.width,
            conn,
        });
        Routed::Line(abs(range.start)..abs(range.end), conn)
    }

    /// The worker's number of the connection this is about.
    fn conn(&self) -> Option<u64> {
        match self {
            Routed::Event(e) => e.conn(),
            Routed::Line(_, c) => c.map(|c| c.conn),
        }
    }
}

/// What a worker hands back.
// As for `Routed`: the rare NewConn is not worth a box per item.
#[allow(clippy::large_enum_variant)]
enum Output {
    /// A connection (the worker's own number) began at this packet.
    NewConn(u64),
    Item(Routed),
    /// A connection (the worker's own number) closed, after its last item.
    EndConn(u64),
}

struct Reply {
    worker: usize,
    items: Vec<(Tag, Output)>,
    /// The lines of this batch, one after the other.
    text: Vec<u8>,
    /// Every event for packets up to this index has been sent.
    done_to: u64,
    /// Events of the connections still open at the end of the input, which a piece of them
    /// ended (see [`Worker::end_piece`]).
    tail: Vec<Routed>,
    /// The worker's last end-of-input events, counts and what it learnt from reflection, last.
    finish: Option<Finish>,
}

type Finish = (Vec<Routed>, Stats, Tally, Schemas);

/// Counts every event of a worker, and routes them (or hands them to the worker's part), for
/// the packet being dissected.
struct Collect<'r, P> {
    items: Vec<Routed>,
    tally: Tally,
    route: &'r dyn Route,
    first_ts: i64,
    /// Lines formatted since the last reply.
    text: Vec<u8>,
    /// Bytes of text sent in earlier replies.
    sent: u64,
    part: Option<P>,
}

impl<P: Part> Collect<'_, P> {
    /// The text so far, to send; later offsets continue after it. Lines go on in `spare`, a
    /// buffer the merge has written out, when there is one.
    fn take_text(&mut self, spare: Option<Vec<u8>>) -> Vec<u8> {
        self.sent += self.text.len() as u64;
        std::mem::replace(&mut self.text, spare.unwrap_or_default())
    }
}

impl<P: Part> Sink for Collect<'_, P> {
    fn quiet(&mut self, conn: u64) {
        if let Some(part) = self.part.as_mut() {
            part.quiet(conn);
        }
    }

    fn event(&mut self, event: Event) {
        self.tally.count(&event);
        if let Some(part) = self.part.as_mut() {
            part.event(event);
            part.lines(&mut Lines(LinesTo::Merge {
                text: &mut self.text,
                items: &mut self.items,
                sent: self.sent,
            }));
            return;
        }
        let start = self.text.len();
        let handoff = self.route.route(&event, self.first_ts, &mut self.text);
        if let Handoff::Line(slot) = handoff {
            let range = start..self.text.len();
            let line = Routed::line(self.sent, range, slot, event.conn());
            self.items.push(line);
            return;
        }
        // Nothing else may leave text behind.
        self.text.truncate(start);
        if handoff == Handoff::Event {
            self.items.push(Routed::Event(Box::new(event)));
        }
    }

    fn wants(&mut self) -> Wants<'_> {
        if let Some(part) = self.part.as_mut() {
            // What the part does not look at is still counted.
            return match part.wants() {
                Wants::Calls(None) => Wants::Calls(Some(&mut self.tally)),
                Wants::AllButMessages(None) => Wants::AllButMessages(Some(&mut self.tally)),
                wants => wants,
            };
        }
        match self.route.shows() {
            Shows::Everything => Wants::Everything,
            Shows::Calls => Wants::Calls(Some(&mut self.tally)),
            Shows::Nothing => Wants::Counts(&mut self.tally),
        }
    }
}

/// One share of the connections, dissected: on a thread of its own, fed batches by the reader
/// (see [`worker`]), or on the reader's thread, fed each packet as it is read (worker 0: see
/// [`Shards`]).
struct Worker<'r, P> {
    id: usize,
    d: Dissector,
    collect: Collect<'r, P>,
    /// The worker's next connection number: a number not seen before is a new flow.
    next_conn: u64,
    /// What the packets since the last reply produced.
    items: Vec<(Tag, Output)>,
    /// The last reply's items: the next one starts with room for as many.
    room: usize,
    /// The last packet handed to this worker's share of the capture (or read past it).
    last: (u64, i64),
}

impl<'r, P: Part> Worker<'r, P> {
    fn new(
        id: usize,
        mut cfg: Config,
        schemas: Schemas,
        route: &'r dyn Route,
        part: Option<P>,
    ) -> Self {
        cfg.flows.external_sweeps = true;
        let mut d = Dissector::with_schemas(cfg, schemas);
        d.track_closed();
        Worker {
            id,
            d,
            collect: Collect {
                items: Vec::new(),
                tally: Tally::default(),
                route,
                first_ts: 0,
                text: Vec::new(),
                sent: 0,
                part,
            },
            next_conn: 0,
            items: Vec::new(),
            room: 0,
            last: (0, 0),
        }
    }

    /// Expires idle connections before the packet of this index.
    fn sweep(&mut self, index: u64, ts_ns: i64) {
        self.d.sweep(index, ts_ns, &mut self.collect);
        self.take_outputs(Tag { index, phase: 0 });
    }

    /// The events collected since the last take, then the connections that closed, as `tag`'s.
    fn take_outputs(&mut self, tag: Tag) {
        let items = &mut self.items;
        items.extend(self.collect.items.drain(..).map(|e| (tag, Output::Item(e))));
        items.extend(self.d.take_closed().map(|n| (tag, Output::EndConn(n))));
    }

    fn segment(&mut self, index: u64, ts_ns: i64, seg: &TcpSegment<'_>) {
        let conn = self.d.segment(index, ts_ns, seg, &mut self.collect);
        self.packet_done(index, conn);
    }

    fn skipped(&mut self, index: u64, ts_ns: i64, skip: Skip) {
        self.d.skipped(index, ts_ns, skip);
        self.packet_done(index, None);
    }

    /// Tags what the packet of this index produced, on connection `conn`.
    fn packet_done(&mut self, index: u64, conn: Option<u64>) {
        let tag = Tag { index, phase: 1 };
        // Flow numbers are handed out in order: a number not seen before is a new flow,
        // announced before its first events.
        if let Some(c) = conn.filter(|&c| c >= self.next_conn) {
            for n in self.next_conn..=c {
                self.items.push((tag, Output::NewConn(n)));
            }
            self.next_conn = c + 1;
        }
        self.take_outputs(tag);
    }

    /// What the packets since the last reply produced, the reader having read up to packet
    /// `read_to` (at `read_ts`). Lines go on in `spare`, a buffer the merge has written out,
    /// when there is one.
    fn reply(&mut self, read_to: u64, read_ts: i64, spare: Option<Vec<u8>>) -> Reply {
        self.last = (read_to, read_ts);
        let items = std::mem::replace(&mut self.items, Vec::with_capacity(self.room));
        self.room = items.len().min(4 * BATCH);
        Reply {
            worker: self.id,
            items,
            text: self.collect.take_text(spare),
            done_to: read_to,
            tail: Vec::new(),
            finish: None,
        }
    }

    /// At the end of the input, after the last reply: ends the next [`END_PIECE`] connections
    /// still open, in connection order, and hands their events on; true once none is left.
    fn end_piece(&mut self) -> (Reply, bool) {
        let (index, ts) = self.last;
        let done = self
            .d
            .finish_some_at(index, ts, END_PIECE, &mut self.collect);
        let reply = Reply {
            worker: self.id,
            items: Vec::new(),
            text: self.collect.take_text(None),
            done_to: u64::MAX,
            tail: std::mem::take(&mut self.collect.items),
            finish: None,
        };
        (reply, done)
    }

    /// The end of the input: the connections still open end, and the last reply carries their
    /// events, the counts and what the worker learnt; the part comes back.
    fn finish(mut self) -> (Reply, Option<P>) {
        let (index, ts) = self.last;
        let stats = self.d.finish_at(index, ts, &mut self.collect);
        let c = &mut self.collect;
        if let Some(part) = c.part.as_mut() {
            part.end();
            part.lines(&mut Lines(LinesTo::Merge {
                text: &mut c.text,
                items: &mut c.items,
                sent: c.sent,
            }));
        }
        let text = c.take_text(None);
        let finish = (
            std::mem::take(&mut c.items),
            stats,
            std::mem::take(&mut c.tally),
            self.d.into_schemas(),
        );
        let reply = Reply {
            worker: self.id,
            items: Vec::new(),
            text,
            done_to: u64::MAX,
            tail: Vec::new(),
            finish: Some(finish),
        };
        (reply, self.collect.part)
    }
}

/// A worker on a thread of its own: dissects the batches the reader sends until there are no
/// more, and replies to each.
fn worker<P: Part>(mut w: Worker<'_, P>, links: WorkerLinks) -> Option<P> {
    let WorkerLinks {
        batches: rx,
        replies: tx,
        spare_batches: spares,
        spare_texts,
    } = links;
    for batch in rx {
        w.collect.first_ts = batch.first_ts;
        for entry in &batch.entries {
            match *entry {
                Entry::Sweep(index, ts_ns) => w.sweep(index, ts_ns),
                Entry::Segment(index, ts_ns, head, start, end) => {
                    let seg = TcpSegment {
                        payload: &batch.data[start..end],
                        ..head
                    };
                    w.segment(index, ts_ns, &seg);
                }
            }
        }
        let reply = w.reply(batch.read_to, batch.read_ts, spare_texts.try_recv().ok());
        if let Some(spare) = batch.emptied() {
            // A full pool: the reader has enough; this one is freed.
            let _ = spares.try_send(spare);
        }
        tx.send(reply).ok()?;
    }
    loop {
        let (reply, done) = w.end_piece();
        tx.send(reply).ok()?;
        if done {
            break;
        }
    }
    let (reply, part) = w.finish();
    tx.send(reply).ok()?;
    part
}

/// The reader's own work (reading, link layers, handing segments out, merging the lines) as a
/// share of what the workers do together. Measured on the small-packet benchmark capture: about
/// a sixth for a summary, a fifth for JSON Lines.
const READER_LOAD: f64 = 0.2;

/// Which worker a connection's segments go to, both directions to the same one.
///
/// Worker 0 runs on the reading thread, so that `--threads N` keeps N cores busy and no more
/// (a reader beside two workers, three threads on two cores, ran JSON Lines of the benchmark
/// capture in 514 ms; the reader as a worker with its share, 464 ms). It takes the share that
/// leaves the reader as busy as the others once its own work is added, and none when the
/// reader's own work is a thread's.
#[derive(Debug, Clone, Copy)]
struct Shards {
    workers: usize,
    /// A connection whose mixed hash is below this goes to worker 0.
    first_below: u64,
}

impl Shards {
    fn new(workers: usize) -> Self {
        let n = workers.max(1) as f64;
        let first = ((1.0 - (n - 1.0) * READER_LOAD) / n).clamp(0.0, 1.0);
        Shards {
            workers: workers.max(1),
            // u64::MAX for one worker, which takes every connection (`of` sees to it, as
            // no hash is below u64::MAX).
            first_below: (first * u64::MAX as f64) as u64,
        }
    }

    /// The share of connections worker `w` gets.
    fn share(&self, w: usize) -> f64 {
        let first = self.first_below as f64 / u64::MAX as f64;
        match w {
            0 => first,
            _ => (1.0 - first) / (self.workers - 1) as f64,
        }
    }

    /// Worker `w`'s part of a limit of `total`: the parts add up to it, or to one each when
    /// there are more workers.
    fn part_of(&self, w: usize, total: usize) -> usize {
        // One each, and the rest by share.
        let rest = total.saturating_sub(self.workers);
        let upto = |w: usize| {
            let share: f64 = (0..w).map(|v| self.share(v)).sum();
            (rest as f64 * share).round() as usize
        };
        1 + upto(w + 1).saturating_sub(upto(w))
    }

    fn of(&self, src: SocketAddr, dst: SocketAddr) -> usize {
        // Not a hash table: a skewed split only costs speed, so a fixed, cheap hash will do;
        // the flow table's packed key hashes in one write where `SocketAddr` takes a dozen.
        let h = spread(foldhash::fast::FixedState::with_seed(0).hash_one(FlowKey::of(src, dst)));
        if self.workers == 1 || h < self.first_below {
            0
        } else {
            1 + (h % (self.workers as u64 - 1)) as usize
        }
    }
}

/// Mixes every bit of a hash into its low ones (MurmurHash3's finaliser). The flow table's
/// hash of a client's successive ports kept long runs of the same low bits, and the workers
/// run only a bounded way apart: a run of 30 connections on one worker left the other idle
/// (TLS, two threads, 66 -> 88 ms).
fn spread(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// One worker's connection numbers → the capture's. A worker numbers its connections 0, 1, 2…
/// as they begin, so the recent ones are a run; those that ended long ago are forgotten, and
/// the few still open behind the run move aside: a capture of a hundred million connections
/// (a SYN scan) keeps the open ones and the last few thousand, not all.
struct Numbers {
    /// The worker's number of `recent`'s first entry.
    base: u64,
    /// The capture's numbers from `base` on, [`ENDED`] set on those of ended connections: no
    /// item comes after its connection's end, but a number is kept a while all the same, as
    /// a wrong one would go unnoticed.
    recent: VecDeque<u64>,
    /// Connections still open, older than `recent`.
    older: BTreeMap<u64, u64>,
}

/// Set on a capture's number in [`Numbers::recent`] once its connection ended (numbers never
/// come near it).
const ENDED: u64 = 1 << 63;

/// How many connection numbers [`Numbers`] keeps in its run, ended or not.
const RECENT_NUMBERS: usize = 4096;

impl Numbers {
    fn new() -> Self {
        Numbers {
            base: 0,
            recent: VecDeque::new(),
            older: BTreeMap::new(),
        }
    }

    /// How many connections the worker has announced.
    fn len(&self) -> u64 {
        self.base + self.recent.len() as u64
    }

    fn push(&mut self, global: u64) {
        self.recent.push_back(global);
        while self.recent.len() > RECENT_NUMBERS {
            let Some(first) = self.recent.pop_front() else {
                break;
            };
            if first & ENDED == 0 {
                self.older.insert(self.base, first);
            }
            self.base += 1;
        }
    }

    fn get(&self, conn: u64) -> Option<u64> {
        match conn.checked_sub(self.base) {
            Some(i) => self.recent.get(i as usize).map(|g| g & !ENDED),
            None => self.older.get(&conn).copied(),
        }
    }

    /// Connection `conn` ended: it has no more items to come.
    fn end(&mut self, conn: u64) {
        match conn.checked_sub(self.base) {
            Some(i) => {
                if let Some(g) = self.recent.get_mut(i as usize) {
                    *g |= ENDED;
                }
            }
            None => {
                self.older.remove(&conn);
            }
        }
    }
}

/// Puts events back in capture order and renumbers connections.
struct Merge<'a> {
    queues: Vec<VecDeque<(Tag, Output)>>,
    done_to: Vec<u64>,
    /// Per worker: its connection numbers → the global ones.
    numbers: Vec<Numbers>,
    next: u64,
    sink: &'a mut dyn Sink,
    /// Per worker: the text buffers not yet written out, and the offset the first starts at.
    texts: Vec<(VecDeque<Vec<u8>>, u64)>,
    /// Lines on their way to the sink, their connection numbers put in: handed on together,
    /// a large write passes by the writer's own buffer, so each byte is copied once here.
    out: Vec<u8>,
    /// Per worker: where its written-out text buffers go back to it.
    spare_texts: Vec<SyncSender<Vec<u8>>>,
    /// Per worker: the events of the connections it ended at the end of the input, by the
    /// capture's number of their connection (see [`Merge::drain_tail`]), and whether its last
    /// came.
    tails: Vec<VecDeque<Routed>>,
    tails_done: Vec<bool>,
    /// End-of-input events without a connection (or without a number for it), written after
    /// all the others, in worker order.
    leftovers: Vec<(usize, Leftover)>,
    /// What reading ended with, written after every packet's events, before the end of input's
    /// (where one dissector's run puts it).
    end_error: Option<Leftover>,
}

/// An event kept for the end: its text copied out, as the buffer it was in goes once the
/// lines around it are written.
enum Leftover {
    Event(Box<Event>),
    /// The text, and where a connection number goes in it, how wide, and which.
    Line(Vec<u8>, Option<(usize, u8, u64)>),
}

impl<'a> Merge<'a> {
    fn new(workers: usize, sink: &'a mut dyn Sink) -> Self {
        Merge {
            queues: (0..workers).map(|_| VecDeque::new()).collect(),
            done_to: vec![0; workers],
            numbers: (0..workers).map(|_| Numbers::new()).collect(),
            next: 0,
            sink,
            texts: vec![(VecDeque::new(), 0); workers],
            out: Vec::new(),
            spare_texts: Vec::new(),
            tails: (0..workers).map(|_| VecDeque::new()).collect(),
            tails_done: vec![false; workers],
            leftovers: Vec::new(),
            end_error: None,
        }
    }

    fn global(&self, worker: usize, conn: u64) -> Option<u64> {
        self.numbers[worker].get(conn)
    }

    /// Hands an item on to the sink with the capture's connection number.
    fn emit(&mut self, worker: usize, item: Routed) {
        match item {
            Routed::Event(mut e) => {
                self.renumber(worker, &mut e);
                self.write_event(*e);
            }
            Routed::Line(range, conn) => {
                let conn = self.line_conn(worker, &range, conn);
                let (buffers, base) = &self.texts[worker];
                let Some(text) = line_text(buffers, *base, &range) else {
                    return;
                };
                put_line(&mut self.out, text, conn);
                self.flush_if_full();
            }
        }
    }

    /// Gives a worker's event the capture's number of its connection.
    fn renumber(&self, worker: usize, e: &mut Event) {
        if let Some(c) = e.conn_mut() {
            if let Some(g) = self.global(worker, *c) {
                *c = g;
            }
        }
    }

    /// Where a worker's line (the text of `range`) takes its connection's number: the offset
    /// in the line, the width, and the capture's number.
    fn line_conn(
        &self,
        worker: usize,
        range: &Range<u64>,
        conn: Option<LineConn>,
    ) -> Option<(usize, u8, u64)> {
        conn.map(|c| {
            let at = (c.at - range.start) as usize;
            (at, c.width, self.global(worker, c.conn).unwrap_or(c.conn))
        })
    }

    /// An end-of-input item to write after all the others: a line's text copied out of the
    /// worker's buffers, with the capture's number of its connection; none if its text is gone.
    fn leftover(&self, worker: usize, item: Routed) -> Option<Leftover> {
        match item {
            Routed::Event(mut e) => {
                self.renumber(worker, &mut e);
                Some(Leftover::Event(e))
            }
            Routed::Line(range, conn) => {
                let (buffers, base) = &self.texts[worker];
                let text = line_text(buffers, *base, &range)?;
                Some(Leftover::Line(
                    text.to_vec(),
                    self.line_conn(worker, &range, conn),
                ))
            }
        }
    }

    fn write_leftover(&mut self, left: Leftover) {
        match left {
            Leftover::Event(e) => self.write_event(*e),
            Leftover::Line(text, conn) => {
                put_line(&mut self.out, &text, conn);
                self.flush_if_full();
            }
        }
    }

    /// Hands an event on, after the lines before it.
    fn write_event(&mut self, e: Event) {
        self.flush_lines();
        self.sink.event(e);
    }

    fn flush_if_full(&mut self) {
        if self.out.len() >= OUT_FLUSH {
            self.flush_lines();
        }
    }

    /// Hands the lines gathered so far to the sink.
    fn flush_lines(&mut self) {
        if !self.out.is_empty() {
            self.sink.line(&self.out);
            self.out.clear();
        }
    }

    /// Where the head of a worker's queue goes: its tag, then, among what one sweep ended in
    /// several workers, the (global) connection order.
    fn head_key(&self, w: usize) -> Option<(Tag, u64)> {
        let (tag, item) = self.queues[w].front()?;
        let conn = match item {
            Output::Item(i) if tag.phase == 0 => {
                i.conn().and_then(|c| self.global(w, c)).unwrap_or(u64::MAX)
            }
            _ => 0,
        };
        Some((*tag, conn))
    }

    /// Takes in a worker's reply and hands on what can go; returns the worker's counts and
    /// what it learnt, with its last reply.
    fn accept(&mut self, r: Reply) -> Option<(Stats, Tally, Schemas)> {
        let w = r.worker;
        self.queues[w].extend(r.items);
        // Buffers are dropped once their last line is written: an empty one (no lines, as for
        // a summary) would never be.
        if !r.text.is_empty() {
            self.texts[w].0.push_back(r.text);
        }
        self.done_to[w] = self.done_to[w].max(r.done_to);
        self.drain();
        let mut tail = r.tail;
        let end = r.finish.map(|(items, stats, tally, schemas)| {
            tail.extend(items);
            self.tails_done[w] = true;
            (stats, tally, schemas)
        });
        self.tails[w].extend(tail);
        self.drain_tail(false);
        end
    }

    /// The capture's number of the connection of worker `w`'s next end-of-input event. Those
    /// without one go with the leftovers meanwhile. Asked once every worker's packets' events
    /// are written, when every connection's number is known.
    fn tail_head(&mut self, w: usize) -> Option<u64> {
        loop {
            let item = self.tails[w].front()?;
            if let Some(conn) = item.conn().and_then(|c| self.global(w, c)) {
                return Some(conn);
            }
            let item = self.tails[w].pop_front()?;
            if let Some(left) = self.leftover(w, item) {
                self.leftovers.push((w, left));
            }
        }
    }

    /// Hands on the end of input's events, once every worker has sent all its packets': the
    /// reading error first, if any, then the connections' events in the capture's connection
    /// order, as far as every worker's have come (`all_in`: all that will come have), and
    /// last, once all have, those without a connection.
    fn drain_tail(&mut self, all_in: bool) {
        if !all_in && self.done_to.iter().any(|&d| d != u64::MAX) {
            return;
        }
        if let Some(error) = self.end_error.take() {
            self.write_leftover(error);
        }
        loop {
            let mut first: Option<(u64, usize)> = None;
            for w in 0..self.tails.len() {
                match self.tail_head(w) {
                    Some(conn) if first.is_none_or(|(c, _)| conn < c) => first = Some((conn, w)),
                    Some(_) => {}
                    // Its next may come before any other's.
                    None if !all_in && !self.tails_done[w] => return,
                    None => {}
                }
            }
            let Some((conn, w)) = first else {
                break;
            };
            if let Some(item) = self.tails[w].pop_front() {
                self.take(w, Output::Item(item));
            }
            // A worker ends its connections in order, as one dissector would.
            debug_assert!(self.tails[w]
                .front()
                .and_then(|next| self.global(w, next.conn()?))
                .is_none_or(|next| next >= conn));
        }
        let mut leftovers = std::mem::take(&mut self.leftovers);
        leftovers.sort_by_key(|&(w, _)| w);
        for (_, left) in leftovers {
            self.write_leftover(left);
        }
        self.flush_lines();
    }

    /// Whether worker `w` has end-of-input events waiting for another worker's.
    fn tail_waits_on_others(&self, w: usize) -> bool {
        !self.tails[w].is_empty()
            && (0..self.tails.len())
                .any(|o| o != w && self.tails[o].is_empty() && !self.tails_done[o])
    }

    /// Hands on every event no worker can still precede.
    fn drain(&mut self) {
        let safe = self.done_to.iter().copied().min().unwrap_or(0);
        loop {
            // The queue whose head comes first, and the first head among the others: the
            // chosen queue's items go until one would come after that head. Only the items of
            // one sweep can tie on the tag across workers; those are told apart by their
            // connection, and then by worker.
            let mut best: Option<(Tag, u64, usize)> = None;
            let mut next: Option<(Tag, u64, usize)> = None;
            for w in 0..self.queues.len() {
                let Some((tag, conn)) = self.head_key(w) else {
                    continue;
                };
                let key = (tag, conn, w);
                if best.is_none_or(|b| key < b) {
                    next = best;
                    best = Some(key);
                } else if next.is_none_or(|n| key < n) {
                    next = Some(key);
                }
            }
            let Some((tag, _, w)) = best else {
                break;
            };
            if tag.index > safe {
                break;
            }
            while let Some((tag, conn)) = self.head_key(w) {
                if tag.index > safe || next.is_some_and(|n| (tag, conn, w) > n) {
                    break;
                }
                let Some((_, item)) = self.queues[w].pop_front() else {
                    break;
                };
                self.take(w, item);
            }
        }
        self.flush_lines();
    }

    /// Hands on the item at the head of worker `w`'s queue.
    fn take(&mut self, w: usize, item: Output) {
        match item {
            Output::NewConn(n) => {
                let list = &mut self.numbers[w];
                if list.len() == n {
                    list.push(self.next);
                    self.next += 1;
                }
            }
            Output::EndConn(n) => self.numbers[w].end(n),
            Output::Item(i) => {
                let done = match &i {
                    Routed::Line(range, _) => Some(range.end),
                    Routed::Event(_) => None,
                };
                self.emit(w, i);
                // The merge takes a worker's lines in order: buffers before this line are
                // written out.
                if let Some(end) = done {
                    let (buffers, base) = &mut self.texts[w];
                    while buffers
                        .front()
                        .is_some_and(|b| *base + (b.len() as u64) <= end)
                    {
                        let Some(mut b) = buffers.pop_front() else {
                            break;
                        };
                        *base += b.len() as u64;
                        if b.capacity() <= SPARE_MAX {
                            b.clear();
                            if let Some(back) = self.spare_texts.get(w) {
                                // A worker with spares enough: this one is freed.
                                let _ = back.try_send(b);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A line's text among a worker's buffers, the first of which starts at `base` in the
/// worker's text. Lines never straddle two batches' buffers.
fn line_text<'b>(
    buffers: &'b VecDeque<Vec<u8>>,
    base: u64,
    range: &Range<u64>,
) -> Option<&'b [u8]> {
    let mut base = base;
    buffers.iter().find_map(|b| {
        let found = (range.end <= base + b.len() as u64)
            .then(|| &b[(range.start - base) as usize..(range.end - base) as usize]);
        base += b.len() as u64;
        found
    })
}

/// Appends a line's text to `out`, with its connection's number, `width` wide, at `at`.
fn put_line(out: &mut Vec<u8>, text: &[u8], conn: Option<(usize, u8, u64)>) {
    match conn {
        None => out.extend_from_slice(text),
        Some((at, width, conn)) => {
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(conn).as_bytes();
            let pad = usize::from(width).saturating_sub(digits.len());
            out.extend_from_slice(&text[..at]);
            out.extend_from_slice(digits);
            out.resize(out.len() + pad, b' ');
            out.extend_from_slice(&text[at..]);
        }
    }
}

/// What [`dissect`] found besides the events.
pub struct Outcome {
    /// How reading ended. An error is also in the events, as one dissector's run reports it.
    pub result: Result<(), CaptureError>,
    pub stats: Stats,
    /// Every event counted, also those left out.
    pub tally: Tally,
    /// The schemas given, with what every worker learnt from reflection.
    pub schemas: Schemas,
}

/// Dissects `reader` on `workers` threads into `sink`, reading at most `limit` packets and
/// calling `on_packet` for each packet read (progress, a time base). `route` tells the workers
/// which events travel to `sink`, as events or as lines they format (a summary needs none of
/// them: the workers count).
#[allow(clippy::too_many_arguments)]
pub fn dissect(
    reader: &mut CaptureReader,
    cfg: &Config,
    schemas: &Schemas,
    workers: usize,
    limit: u64,
    route: &dyn Route,
    sink: &mut dyn Sink,
    on_packet: impl FnMut(&Packet<'_>),
) -> Outcome {
    let work = Work::<NoPart> { route, part: None };
    run(reader, cfg, schemas, workers, limit, work, sink, on_packet).0
}

/// [`dissect`] with a [`Part`] made by `part` on every worker, which sees the worker's events;
/// only the lines the parts write reach `sink`. The parts come back in worker order.
#[allow(clippy::too_many_arguments)]
pub fn dissect_parts<P: Part>(
    reader: &mut CaptureReader,
    cfg: &Config,
    schemas: &Schemas,
    workers: usize,
    limit: u64,
    part: &(dyn Fn() -> P + Sync),
    sink: &mut dyn Sink,
    on_packet: impl FnMut(&Packet<'_>),
) -> (Outcome, Vec<P>) {
    let work = Work {
        route: &DropAll,
        part: Some(part),
    };
    run(reader, cfg, schemas, workers, limit, work, sink, on_packet)
}

/// What the workers do with their events: route them, or hand them to a part of their own.
struct Work<'a, P> {
    route: &'a dyn Route,
    part: Option<&'a (dyn Fn() -> P + Sync)>,
}

#[allow(clippy::too_many_arguments)]
fn run<P: Part>(
    reader: &mut CaptureReader,
    cfg: &Config,
    schemas: &Schemas,
    workers: usize,
    limit: u64,
    work: Work<'_, P>,
    sink: &mut dyn Sink,
    mut on_packet: impl FnMut(&Packet<'_>),
) -> (Outcome, Vec<P>) {
    let route = work.route;
    let workers = workers.max(1);
    let batch_packets = if route.shows() == Shows::Nothing {
        BATCH_QUIET
    } else {
        BATCH
    };
    let (reply_tx, reply_rx) = sync_channel::<Reply>(workers * 4);
    let mut merge = Merge::new(workers, sink);
    let mut ends: Vec<Option<(Stats, Tally, Schemas)>> = (0..workers).map(|_| None).collect();
    let mut tally = Tally::default();
    let mut result = Ok(());
    let (mut first_ts, mut last_ts) = (None, 0i64);
    let spares = Spares::new(workers);
    let mut parts = Vec::new();
    let shards = Shards::new(workers);
    // The table's limit is the capture's, shared out as the connections are: memory as on one
    // thread.
    let cfg_of = |w: usize| {
        let mut cfg = cfg.clone();
        cfg.flows.max_flows = shards.part_of(w, cfg.flows.max_flows);
        cfg
    };
    // Worker 0, on this thread: what it is given it dissects at once, from the packet read.
    let mut inline = Worker::new(0, cfg_of(0), schemas.clone(), route, work.part.map(|m| m()));
    let (texts_tx, inline_texts) = sync_channel::<Vec<u8>>(4);
    merge.spare_texts.push(texts_tx);
    std::thread::scope(|scope| {
        // Owned here, so that a panic on this thread (which now dissects too) drops it on its
        // way out: the workers' replies then fail instead of waiting for room, and the scope's
        // join returns.
        let reply_rx = reply_rx;
        let mut inputs = vec![None];
        let mut handles = Vec::new();
        for id in 1..workers {
            let (tx, rx) = sync_channel::<Batch>(4);
            let (texts_tx, texts_rx) = sync_channel::<Vec<u8>>(4);
            let links = WorkerLinks {
                batches: rx,
                replies: reply_tx.clone(),
                spare_batches: spares.tx.clone(),
                spare_texts: texts_rx,
            };
            let w = Worker::new(
                id,
                cfg_of(id),
                schemas.clone(),
                route,
                work.part.map(|m| m()),
            );
            handles.push(scope.spawn(move || worker(w, links)));
            inputs.push(Some(tx));
            merge.spare_texts.push(texts_tx);
        }
        drop(reply_tx);
        // One per worker on a thread; worker 0's stays empty.
        let mut batches: Vec<Batch> = (0..workers).map(|_| Batch::default()).collect();
        let mut pending = 0usize;
        let mut pending_bytes = 0usize;
        let mut seen = 0u64;
        let accept = |r: Reply, merge: &mut Merge<'_>, ends: &mut Vec<_>| {
            let w = r.worker;
            if let Some(f) = merge.accept(r) {
                ends[w] = Some(f);
            }
        };
        let mut send_all = |batches: &mut Vec<Batch>,
                            inline: &mut Worker<'_, P>,
                            read: (u64, i64, i64),
                            merge: &mut Merge<'_>| {
            for (w, b) in batches.iter_mut().enumerate().skip(1) {
                let mut b = std::mem::replace(b, spares.take());
                (b.read_to, b.read_ts, b.first_ts) = read;
                if let Some(tx) = &inputs[w] {
                    // A full worker: take in what the workers have done meanwhile.
                    let mut b = Some(b);
                    while let Some(batch) = b.take() {
                        match tx.try_send(batch) {
                            Ok(()) => {}
                            Err(std::sync::mpsc::TrySendError::Full(batch)) => {
                                b = Some(batch);
                                if let Ok(r) = reply_rx.recv() {
                                    accept(r, merge, &mut ends);
                                }
                            }
                            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {}
                        }
                    }
                }
            }
            let reply = inline.reply(read.0, read.1, inline_texts.try_recv().ok());
            accept(reply, merge, &mut ends);
            while let Ok(r) = reply_rx.try_recv() {
                accept(r, merge, &mut ends);
            }
        };
        let mut last_index = 0u64;
        let mut last_sweep = i64::MIN;
        // Fragments are reassembled here, where every packet passes, as one dissector would.
        let mut defrag = Defragmenter::default();
        result = reader.for_each_packet(|p| {
            on_packet(p);
            if first_ts.is_none() {
                merge.sink.time_base(p.ts_ns);
                inline.collect.first_ts = p.ts_ns;
            }
            first_ts.get_or_insert(p.ts_ns);
            last_ts = p.ts_ns;
            match link::decode_reassembling(p.link, p.data, &mut defrag, p.ts_ns) {
                Ok(seg) => {
                    // One flow table would sweep here: so does every worker.
                    if crate::tcp::sweep_due(&mut last_sweep, p.ts_ns) {
                        inline.sweep(p.index, p.ts_ns);
                        for b in batches.iter_mut().skip(1) {
                            b.entries.push(Entry::Sweep(p.index, p.ts_ns));
                        }
                    }
                    match shards.of(seg.src, seg.dst) {
                        0 => inline.segment(p.index, p.ts_ns, &seg),
                        w => {
                            let b = &mut batches[w];
                            let start = b.data.len();
                            b.data.extend_from_slice(seg.payload);
                            let entry = Entry::Segment(
                                p.index,
                                p.ts_ns,
                                TcpSegment {
                                    payload: &[],
                                    ..seg
                                },
                                start,
                                b.data.len(),
                            );
                            b.entries.push(entry);
                        }
                    }
                }
                // The first worker counts what is not TCP.
                Err(skip) => inline.skipped(p.index, p.ts_ns, skip),
            }
            last_index = p.index;
            pending += 1;
            pending_bytes += p.data.len();
            if pending >= batch_packets || pending_bytes >= BATCH_BYTES {
                pending = 0;
                pending_bytes = 0;
                let first = first_ts.unwrap_or(p.ts_ns);
                send_all(
                    &mut batches,
                    &mut inline,
                    (p.index, p.ts_ns, first),
                    &mut merge,
                );
            }
            seen += 1;
            // Asked once a batch: the merge writes only when the workers hand lines back.
            seen < limit && (pending != 0 || !merge.sink.closed())
        });
        // A reading error comes where one dissector's run puts it: after the packets' events,
        // before the connections still open are ended.
        if let Err(e) = &result {
            let event = Event::Error(ErrorEvent {
                origin: None,
                stream: None,
                kind: ErrorKind::Capture,
                message: e.to_string(),
            });
            tally.count(&event);
            let mut line = Vec::new();
            merge.end_error = match route.route(&event, first_ts.unwrap_or(0), &mut line) {
                Handoff::Drop => None,
                Handoff::Event => Some(Leftover::Event(Box::new(event))),
                Handoff::Line(_) => Some(Leftover::Line(line, None)),
            };
        }
        let first = first_ts.unwrap_or(last_ts);
        send_all(
            &mut batches,
            &mut inline,
            (last_index, last_ts, first),
            &mut merge,
        );
        // End of input: the workers end their connections still open, a piece at a time, and
        // their last events come in.
        for tx in inputs.iter_mut() {
            tx.take();
        }
        loop {
            let (reply, done) = inline.end_piece();
            accept(reply, &mut merge, &mut ends);
            // No further ahead of the others than a piece: the merge holds what it cannot
            // write yet.
            while merge.tail_waits_on_others(0) {
                match reply_rx.recv() {
                    Ok(r) => accept(r, &mut merge, &mut ends),
                    Err(_) => break,
                }
            }
            while let Ok(r) = reply_rx.try_recv() {
                accept(r, &mut merge, &mut ends);
            }
            if done {
                break;
            }
        }
        let (reply, part) = inline.finish();
        accept(reply, &mut merge, &mut ends);
        while let Ok(r) = reply_rx.recv() {
            accept(r, &mut merge, &mut ends);
        }
        // A worker that panicked has no part to give; its events stopped with it.
        parts = std::iter::once(part)
            .chain(handles.into_iter().map(|h| h.join().ok().flatten()))
            .collect();
    });
    // A worker that panicked sent no last reply: what came is written all the same.
    merge.drain();
    merge.drain_tail(true);
    let mut stats = Stats::default();
    let mut learnt = schemas.clone();
    for (s, t, sc) in ends.into_iter().flatten() {
        stats.merge(s);
        tally.merge(&t);
        learnt.absorb(&sc);
    }
    // The capture's first and last packets, not the workers' earliest and latest.
    stats.first_ts_ns = first_ts;
    stats.last_ts_ns = last_ts;
    let finished = parts.into_iter().flatten().collect();
    let outcome = Outcome {
        result,
        stats,
        tally,
        schemas: learnt,
    };
    (outcome, finished)
}

/// [`harvest_schemas`](crate::pipeline::harvest_schemas) on `workers` threads: the first pass
/// over a file, for schemas served by reflection, sharded like [`dissect`].
/// `on_packet` sees each packet read, as [`dissect`]'s does (for a progress line).
pub fn harvest(
    path: &str,
    schemas: Schemas,
    cfg: &Config,
    limit: u64,
    workers: usize,
    on_packet: impl FnMut(&Packet<'_>),
) -> Schemas {
    if !crate::pipeline::worth_a_pass(path, cfg, limit, u64::MAX) {
        return schemas;
    }
    let Ok(mut reader) = crate::pipeline::open_capture(path, cfg) else {
        return schemas;
    };
    let mut cfg = cfg.clone();
    cfg.grpc.bodies = crate::grpc::Bodies::Skip;
    let mut discard = crate::pipeline::Discard::default();
    dissect(
        &mut reader,
        &cfg,
        &schemas,
        workers,
        limit,
        &DropAll,
        &mut discard,
        on_packet,
    )
    .schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ended connections are forgotten once far behind, open ones never, so a worker's
    /// numbers hold the open connections and the last few thousand.
    #[test]
    fn numbers_forget_ended_connections_only() {
        let mut n = Numbers::new();
        // Connection 0 stays open throughout; every other one ends as the next begins.
        n.push(100);
        for conn in 1..100_000u64 {
            n.push(100 + 2 * conn);
            if conn > 1 {
                n.end(conn - 1);
            }
        }
        assert_eq!(n.len(), 100_000);
        assert_eq!(n.get(0), Some(100));
        assert_eq!(n.get(99_999), Some(100 + 2 * 99_999));
        // Ended a moment ago: still known.
        assert_eq!(n.get(99_998), Some(100 + 2 * 99_998));
        assert!(n.recent.len() <= RECENT_NUMBERS);
        assert_eq!(n.older.len(), 1);
        n.end(0);
        assert!(n.older.is_empty());
    }

    /// A client's successive connections, ports one or two apart, are spread over the
    /// workers as at random, each worker getting its share: never a long run on one of them,
    /// which leaves the others idle.
    #[test]
    fn successive_ports_spread_over_workers() {
        // The addresses of testdata's TLS capture replicated (`scripts/replicate-capture`),
        // where the flow table's hash alone made runs of 30 connections, and others.
        for (client_ip, server) in [
            ([127, 0, 0, 1], "127.0.0.1:44775"),
            ([10, 9, 8, 7], "10.1.2.3:443"),
        ] {
            let server: SocketAddr = server.parse().unwrap();
            for step in [1u16, 2] {
                for workers in [2usize, 3, 4] {
                    let shards = Shards::new(workers);
                    let picked: Vec<usize> = (0..4000u16)
                        .map(|i| {
                            let client = SocketAddr::from((client_ip, 1024 + i * step));
                            shards.of(client, server)
                        })
                        .collect();
                    let client = SocketAddr::from((client_ip, 1024));
                    assert_eq!(shards.of(server, client), picked[0], "both directions");
                    for w in 0..workers {
                        let got = picked.iter().filter(|&&s| s == w).count() as f64;
                        let share = shards.share(w) * 4000.0;
                        assert!(
                            (got - share).abs() < share / 10.0,
                            "worker {w} of {workers}: {got}, its share {share}"
                        );
                    }
                    // Two workers, the reader's with 40%: in every 32 successive connections,
                    // a few for each (at random, 13 and rarely under 4; the runs were of 30).
                    if workers == 2 {
                        for win in picked.windows(32) {
                            let ones = win.iter().sum::<usize>();
                            assert!((3..=29).contains(&ones), "step {step}: {ones} of 32");
                        }
                    }
                }
            }
        }
    }

    /// The reader's own worker takes less as there are more workers, none past five, and the
    /// shares add up.
    #[test]
    fn the_readers_share_shrinks_with_workers() {
        assert_eq!(Shards::new(1).share(0), 1.0);
        let two = Shards::new(2);
        assert!((two.share(0) - 0.4).abs() < 1e-9, "{}", two.share(0));
        let mut last = 1.0;
        for workers in 2..=8 {
            let shards = Shards::new(workers);
            let first = shards.share(0);
            assert!(first < last || first == 0.0, "{workers}: {first}");
            assert!(first > 0.0 || workers >= 6, "{workers}");
            last = first;
            let sum: f64 = (0..workers).map(|w| shards.share(w)).sum();
            assert!((sum - 1.0).abs() < 1e-9, "{workers}: {sum}");
            assert!((1..workers).all(|w| shards.share(w) >= first));
        }
    }

    /// The flow table's limit is shared out as the connections are, adding up to it.
    #[test]
    fn the_limit_is_shared_out_as_the_connections() {
        let two = Shards::new(2);
        assert_eq!(
            [two.part_of(0, 100_000), two.part_of(1, 100_000)],
            [40_000, 60_000]
        );
        assert_eq!([two.part_of(0, 2), two.part_of(1, 2)], [1, 1]);
        for workers in 1..=8 {
            let shards = Shards::new(workers);
            for total in [workers, 7, 100, 100_000] {
                let parts: Vec<usize> = (0..workers).map(|w| shards.part_of(w, total)).collect();
                assert!(parts.iter().all(|&p| p >= 1));
                let sum: usize = parts.iter().sum();
                assert_eq!(sum, total.max(workers), "{workers}: {parts:?}");
            }
        }
    }

    #[derive(Default)]
    struct Lines(Vec<String>);

    impl Sink for Lines {
        fn event(&mut self, _: Event) {}
        fn line(&mut self, line: &[u8]) {
            self.0.push(String::from_utf8_lossy(line).into_owned());
        }
    }

    /// A merge of two workers' replies into `sink`, handing written-out buffers to
    /// `spare_texts`.
    fn two_workers(sink: &mut Lines, spare_texts: Vec<SyncSender<Vec<u8>>>) -> Merge<'_> {
        Merge {
            spare_texts,
            ..Merge::new(2, sink)
        }
    }

    fn reply(worker: usize, items: Vec<(Tag, Output)>, text: &str, done_to: u64) -> Reply {
        Reply {
            worker,
            items,
            text: text.as_bytes().to_vec(),
            done_to,
            tail: Vec::new(),
            finish: None,
        }
    }

    fn line(index: u64, range: Range<u64>, conn: Option<(u64, u8, u64)>) -> (Tag, Output) {
        let tag = Tag { index, phase: 1 };
        let conn = conn.map(|(at, width, conn)| LineConn { at, width, conn });
        (tag, Output::Item(Routed::Line(range, conn)))
    }

    /// Lines get the capture's connection numbers, come out in packet order across workers,
    /// and their buffers are let go once written; replies without lines keep nothing.
    #[test]
    fn merge_numbers_lines_and_lets_their_buffers_go() {
        let mut sink = Lines::default();
        let (back0, spares0) = sync_channel(4);
        let (back1, spares1) = sync_channel(4);
        let mut merge = two_workers(&mut sink, vec![back0, back1]);
        let new = |index, n| (Tag { index, phase: 1 }, Output::NewConn(n));
        // Worker 1's connection starts first (packet 1), worker 0's at packet 2.
        merge.accept(reply(
            0,
            vec![new(2, 0), line(2, 0..9, Some((8, 0, 0)))],
            "{\"conn\":}",
            2,
        ));
        merge.accept(reply(
            1,
            vec![new(1, 0), line(1, 0..9, Some((8, 3, 0)))],
            "{\"conn\":}",
            2,
        ));
        merge.accept(reply(0, vec![line(3, 9..13, None)], "{\"x\"", 3));
        for _ in 0..100 {
            merge.accept(reply(0, Vec::new(), "", 3));
            merge.accept(reply(1, Vec::new(), "", 3));
        }
        assert!(merge.texts.iter().all(|(buffers, _)| buffers.is_empty()));
        assert_eq!(merge.texts[0].1, 13);
        assert_eq!(sink.0.concat(), "{\"conn\":0  }{\"conn\":1}{\"x\"");
        // Written out, each buffer went back to its worker, emptied.
        let returned = |rx: &Receiver<Vec<u8>>| {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|b: Vec<u8>| (b.len(), b.capacity() > 0))
                .collect::<Vec<_>>()
        };
        assert_eq!(returned(&spares0), [(0, true), (0, true)]);
        assert_eq!(returned(&spares1), [(0, true)]);
    }

    /// What one sweep ended in several workers goes in connection order, before the packet's
    /// own lines; runs of one worker's lines stop where another worker's line comes first.
    #[test]
    fn merge_orders_sweeps_by_connection_and_interleaves_workers() {
        let mut sink = Lines::default();
        let mut merge = two_workers(&mut sink, Vec::new());
        let new = |index, n| (Tag { index, phase: 1 }, Output::NewConn(n));
        let swept = |index, at: u64, conn| {
            let tag = Tag { index, phase: 0 };
            let conn = LineConn { at, width: 0, conn };
            (tag, Output::Item(Routed::Line(at..at + 1, Some(conn))))
        };
        // Worker 0 opens the capture's connections 0 and 2, worker 1 connection 1; a sweep at
        // packet 5 ends all three, then packets 5 to 8 alternate between the workers.
        let w0 = vec![
            new(1, 0),
            new(3, 1),
            swept(5, 0, 0),
            swept(5, 1, 1),
            line(6, 2..3, None),
            line(7, 3..4, None),
        ];
        let w1 = vec![
            new(2, 0),
            swept(5, 0, 0),
            line(5, 1..2, None),
            line(8, 2..3, None),
        ];
        merge.accept(reply(0, w0, "acdf", 8));
        merge.accept(reply(1, w1, "beg", 8));
        assert_eq!(sink.0.concat(), "0a1b2cedfg");
    }

    /// A part run alone gets its numbers put in at once, padded as asked.
    #[test]
    fn lines_to_an_output_put_the_number_in() {
        let mut out = b"before\n".to_vec();
        let mut lines = super::Lines::to(&mut out);
        lines.push(Some(42), |buf| {
            buf.extend_from_slice(b"conn #");
            let at = buf.len();
            buf.extend_from_slice(b"| end\n");
            Some(ConnSlot { at, width: 4 })
        });
        lines.push(None, |buf| {
            buf.extend_from_slice(b"no number\n");
            None
        });
        assert_eq!(out, b"before\nconn #42  | end\nno number\n");
    }
}
