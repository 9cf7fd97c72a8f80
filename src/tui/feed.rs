//! Where the TUI's rows come from: a capture file read on a background thread, or a live
//! interface. Updates arrive in batches over a bounded channel, so the screen is usable from
//! the first batch on, and a reader far ahead of the screen waits instead of piling up memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::live::LiveCapture;
use crate::capture::{CaptureError, CaptureReader, CaptureWarning};
use crate::event::{Event, Sink};
use crate::grpc::schema::Schemas;
use crate::output::pcapng::{CaptureFile, Format};
use crate::pipeline::{harvest_schemas, harvest_schemas_with, Config, Dissector};

use super::app::App;
use super::model::{Builder, Update};
use super::store::{self, StoreReader, StoreWriter};

/// What the reading thread sends.
pub enum Feed {
    Updates(Vec<Update>),
    /// What the source is doing, for the summary bar ("loading 40%", "live, 3 dropped").
    Status(String),
    /// The source ended: with an error, or not; and what in it could not be read without
    /// stopping the reading (a capture cut short, as Wireshark says of one).
    Done {
        error: Option<String>,
        warnings: Vec<String>,
    },
}

/// Sends updates in batches: a few thousand rows, or what came within 50 ms (live traffic
/// shows up at once).
struct Batcher {
    tx: SyncSender<Feed>,
    builder: Builder,
    last: Instant,
}

impl Batcher {
    fn new(tx: SyncSender<Feed>, store: StoreWriter) -> Self {
        Batcher {
            tx,
            builder: Builder::new(store),
            last: Instant::now(),
        }
    }

    /// Sends what is pending if it is time; false once the screen has gone away.
    fn maybe_send(&mut self, status: impl FnOnce() -> String) -> bool {
        if self.builder.pending() < 4096 && self.last.elapsed() < Duration::from_millis(50) {
            return true;
        }
        self.send(status())
    }

    fn send(&mut self, status: String) -> bool {
        self.last = Instant::now();
        let updates = self.builder.take();
        (updates.is_empty() || self.tx.send(Feed::Updates(updates)).is_ok())
            && self.tx.send(Feed::Status(status)).is_ok()
    }
}

fn percent(done: u64, total: u64) -> String {
    match done.saturating_mul(100).checked_div(total) {
        Some(p) => format!(" {}%", p.min(100)),
        None => String::new(),
    }
}

/// How much of a file the schema pass reads before the rows start: reflection is asked for
/// early in a session, and on a large file a whole extra pass would keep the screen empty for
/// as long as the rows take.
pub const HARVEST_BYTES: u64 = 64 << 20;

/// The reading side of the TUI, on its own thread; dropping it stops the thread.
pub struct Loader {
    rx: Receiver<Feed>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    finished: bool,
    /// A capture file made for a live session (so `e` and `w` can read it back), deleted at
    /// the end unless the user asked for it with `-w`.
    temp_file: Option<std::path::PathBuf>,
}

impl Loader {
    fn running(
        rx: Receiver<Feed>,
        stop: Arc<AtomicBool>,
        thread: JoinHandle<()>,
        temp_file: Option<std::path::PathBuf>,
    ) -> Self {
        Loader {
            rx,
            stop,
            thread: Some(thread),
            finished: false,
            temp_file,
        }
    }

    /// Reads `path` in the background: first a pass over the first [`HARVEST_BYTES`] for
    /// schemas served by reflection (so calls before the reflection exchange decode too), then
    /// the dissection, which goes on learning from reflection as it reads. The file is opened here, so that a missing or
    /// unreadable capture is reported before the screen opens.
    pub fn file(
        path: &str,
        cfg: &Config,
        schemas: Schemas,
    ) -> Result<(Loader, StoreReader), CaptureError> {
        let reader = crate::pipeline::open_capture(path, cfg)?;
        let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let (writer, store) = store::new();
        let (tx, rx) = sync_channel(8);
        let stop = Arc::new(AtomicBool::new(false));
        let (path, cfg, halt) = (path.to_string(), cfg.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut batch = Batcher::new(tx.clone(), writer);
            let mut last = Instant::now();
            let harvest_total = total.min(HARVEST_BYTES);
            let schemas =
                harvest_schemas_with(&path, schemas, &cfg, u64::MAX, HARVEST_BYTES, |done, _| {
                    if last.elapsed() > Duration::from_millis(100) {
                        last = Instant::now();
                        let msg = format!("reading schemas{}", percent(done, harvest_total));
                        if tx.send(Feed::Status(msg)).is_err() {
                            return false;
                        }
                    }
                    !halt.load(Ordering::Relaxed)
                });
            let (result, warnings) = dissect(reader, &cfg, schemas, &mut batch, &halt, total);
            let _ = batch.send(String::new());
            let _ = tx.send(Feed::Done {
                error: result.err(),
                warnings,
            });
        });
        Ok((Loader::running(rx, stop, thread, None), store))
    }

    /// Captures on `iface` in the background, writing every packet to `record` (a temporary
    /// file when `None`) so that exports and `w` can read them back, as Wireshark keeps a live
    /// capture in a temporary file.
    pub fn live(
        iface: &str,
        filter: Option<&str>,
        cfg: &Config,
        schemas: Schemas,
        record: Option<&str>,
    ) -> Result<(Loader, StoreReader, String), String> {
        let mut cap = LiveCapture::open(
            iface,
            filter,
            262_144,
            crate::capture::live::DEFAULT_BUFFER_KIB,
        )
        .map_err(|e| e.to_string())?;
        let (path, temp) = match record {
            Some(p) => (std::path::PathBuf::from(p), false),
            None => (
                std::env::temp_dir().join(format!("h2scope-live-{}.pcapng", std::process::id())),
                true,
            ),
        };
        // Uncompressed: the viewer reads its packets back from the file as it goes.
        let mut out = CaptureFile::create(&path, Format::Pcapng, None, 1, None)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let (writer, store) = store::new();
        let (tx, rx) = sync_channel(8);
        let stop = Arc::new(AtomicBool::new(false));
        let (mut cfg, halt, iface) = (cfg.clone(), stop.clone(), iface.to_string());
        // The hex pane shows the frames' bytes, and the messages'.
        cfg.http2.keep_frame_bytes = true;
        cfg.grpc.keep_bytes = true;
        cfg.grpc.key_spans = true;
        let thread = std::thread::spawn(move || {
            let mut batch = Batcher::new(tx.clone(), writer);
            // Live connections stay open: their health shows as it goes.
            batch.builder.refresh_open_health(Duration::from_secs(1));
            let mut d = Dissector::with_schemas(cfg, schemas);
            let mut seen = 0u64;
            let mut failure = None;
            while !halt.load(Ordering::Relaxed) {
                match cap.next_packet() {
                    Ok(Some(p)) => {
                        seen += 1;
                        if let Err(e) = out.write_packet(p.link, p.ts_ns, p.data, p.orig_len) {
                            failure = Some(format!("writing the capture file: {e}"));
                            break;
                        }
                        d.packet(&p, &mut batch.builder);
                    }
                    Ok(None) => d.quiet(crate::capture::live::now_ns(), &mut batch.builder),
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
                let due = batch.builder.pending() >= 4096
                    || batch.last.elapsed() >= Duration::from_millis(50);
                if due {
                    // What the screen shows must be in the file before an export reads it.
                    let _ = out.flush();
                    let stats = cap.stats();
                    let status = format!(
                        "live on {iface}, {seen} packets, {} dropped",
                        stats.dropped + stats.if_dropped
                    );
                    if !batch.send(status) {
                        break;
                    }
                }
            }
            d.finish(&mut batch.builder);
            let _ = out.finish();
            let _ = batch.send(format!("capture on {iface} stopped, {seen} packets"));
            let _ = tx.send(Feed::Done {
                error: failure,
                warnings: Vec::new(),
            });
        });
        let temp_file = temp.then(|| path.clone());
        Ok((
            Loader::running(rx, stop, thread, temp_file),
            store,
            path.to_string_lossy().into_owned(),
        ))
    }

    /// Applies what has arrived, for at most `budget`, so that keys are never kept waiting by
    /// a fast reader. Returns whether anything changed.
    pub fn drain(&mut self, app: &mut App, budget: Duration) -> bool {
        let start = Instant::now();
        let mut changed = false;
        while !self.finished && start.elapsed() < budget {
            match self.rx.try_recv() {
                Ok(Feed::Updates(u)) => app.apply(u),
                Ok(Feed::Status(s)) => app.feed = s,
                Ok(Feed::Done { error, warnings }) => {
                    self.finished = true;
                    if let Some(e) = error {
                        app.status = format!("reading stopped: {e}");
                    } else if !warnings.is_empty() {
                        app.status = format!("warning: {}", warnings.join("; "));
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.finished = true,
            }
            changed = true;
        }
        changed
    }

    /// The source has ended and everything it sent is applied.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Asks the thread to stop (a live capture ends; a file stops being read).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop();
        // Unblock a sender waiting on a full channel, then wait for the thread.
        while self.rx.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = t.join();
        }
        if let Some(p) = &self.temp_file {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The dissection pass over a file, in batches; returns how reading ended and the file's
/// warnings.
fn dissect(
    reader: CaptureReader,
    cfg: &Config,
    schemas: Schemas,
    batch: &mut Batcher,
    halt: &AtomicBool,
    total: u64,
) -> (Result<(), String>, Vec<String>) {
    let read = dissect_beside(reader, cfg, schemas, halt, |handed| {
        for e in &handed.events {
            batch.builder.add(e);
        }
        let (seen, bytes) = (handed.packets, handed.bytes);
        batch.maybe_send(|| format!("loading{}, {seen} packets", percent(bytes, total)))
    });
    let warnings = read.warnings.iter().map(ToString::to_string).collect();
    (read.result.map_err(|e| e.to_string()), warnings)
}

/// How [`dissect_beside`]'s reading ended.
struct Read {
    result: Result<(), CaptureError>,
    records: u64,
    warnings: Vec<CaptureWarning>,
}

/// The events of a run of packets, handed from the thread that dissects to the one that
/// builds rows.
struct Handed {
    events: Vec<Event>,
    /// Packets and bytes read so far, for the status line.
    packets: u64,
    bytes: u64,
}

/// Collects events until a batch is worth handing over: a few hundred events, or a few hundred
/// kB of frame bytes (which frames carry for the hex pane), whichever comes first, so that
/// the events in flight stay small.
#[derive(Default)]
struct Collect {
    events: Vec<Event>,
    raw_bytes: usize,
}

impl Collect {
    const EVENTS: usize = 512;
    const RAW_BYTES: usize = 256 << 10;

    fn full(&self) -> bool {
        self.events.len() >= Self::EVENTS || self.raw_bytes >= Self::RAW_BYTES
    }

    /// The batch so far; the next one starts in `spent` (a batch handed back), if any.
    fn take(&mut self, packets: u64, bytes: u64, spent: Option<Vec<Event>>) -> Handed {
        self.raw_bytes = 0;
        let next = match spent {
            Some(mut v) => {
                // Its events are freed here, where they were made.
                v.clear();
                v
            }
            None => Vec::with_capacity(self.events.len()),
        };
        Handed {
            events: std::mem::replace(&mut self.events, next),
            packets,
            bytes,
        }
    }
}

impl Sink for Collect {
    fn event(&mut self, event: Event) {
        if let Event::Frame(f) = &event {
            self.raw_bytes += f.raw.as_ref().map_or(0, Vec::len);
        }
        self.events.push(event);
    }
}

/// Reads and dissects a file on a thread of its own and hands its events, in batches, to
/// `build` on this thread: building rows (formatting each detail, storing it) is most of the
/// work, and the dissection goes on beside it. `build` returns false to stop; so does `halt`.
/// Returns how reading ended, with the number of records read and the file's warnings.
///
/// Each batch goes back to the reading thread once built, to be freed there: freeing on one
/// thread what another allocated made building half as slow again.
fn dissect_beside(
    mut reader: CaptureReader,
    cfg: &Config,
    schemas: Schemas,
    halt: &AtomicBool,
    mut build: impl FnMut(&Handed) -> bool,
) -> Read {
    let mut cfg = cfg.clone();
    // The hex pane shows the frames' bytes, and the messages'.
    cfg.http2.keep_frame_bytes = true;
    cfg.grpc.keep_bytes = true;
    cfg.grpc.key_spans = true;
    // Two batches in flight: enough to keep both threads busy.
    let (tx, rx) = sync_channel::<Handed>(2);
    let (spent_tx, spent_rx) = sync_channel::<Vec<Event>>(4);
    std::thread::scope(|scope| {
        let reading = scope.spawn(move || {
            let mut d = Dissector::with_schemas(cfg, schemas);
            let mut collect = Collect::default();
            let (mut packets, mut bytes) = (0u64, 0u64);
            let mut gone = false;
            let result = reader.for_each_packet(|p| {
                d.packet(p, &mut collect);
                packets += 1;
                bytes += p.data.len() as u64 + 16;
                if collect.full() {
                    let spent = spent_rx.try_recv().ok();
                    gone = tx.send(collect.take(packets, bytes, spent)).is_err();
                }
                !gone && !halt.load(Ordering::Relaxed)
            });
            if !gone {
                d.finish(&mut collect);
                let _ = tx.send(collect.take(packets, bytes, None));
            }
            // What is still coming back is freed as the channel goes.
            drop(spent_rx);
            Read {
                result,
                records: reader.records(),
                warnings: reader.warnings().to_vec(),
            }
        });
        // Leaving the loop early drops the channel, which stops the reading thread.
        for handed in rx {
            let go = build(&handed);
            // A reading thread that has finished takes no more: the batch is freed here.
            let _ = spent_tx.try_send(handed.events);
            if !go {
                break;
            }
        }
        reading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Reads a whole capture into rows before returning (tests, and callers that want it all
/// first), dissecting beside the building as the viewer does.
pub fn load_all(
    path: &str,
    cfg: &Config,
    schemas: Schemas,
) -> Result<super::model::Model, CaptureError> {
    let schemas = harvest_schemas(path, schemas, cfg, u64::MAX);
    let reader = crate::pipeline::open_capture(path, cfg)?;
    let (writer, store) = store::new();
    let mut builder = Builder::new(writer);
    let mut model = super::model::Model::new(store);
    let read = dissect_beside(reader, cfg, schemas, &AtomicBool::new(false), |handed| {
        for e in &handed.events {
            builder.add(e);
        }
        if builder.pending() >= 4096 {
            builder.take().into_iter().for_each(|u| model.apply(u));
        }
        true
    });
    builder.take().into_iter().for_each(|u| model.apply(u));
    model.packets = model.packets.max(read.records);
    read.result.map(|_| model)
}
