//! The TUI on a million frames: how long a key takes, drawing included (the issue asks for under
//! ~100 ms), and how fast rows are built. `cargo bench --bench tui`.
//!
//! The capture is testdata/grpc-health.pcap replicated into 6000 connections in memory: about
//! 1.0 million frames, 160 thousand calls.

use std::cell::RefCell;

use divan::counter::BytesCount;
use divan::{black_box, Bencher};
use h2scope::capture::{CaptureReader, LinkType, Packet};
use h2scope::grpc::schema::Schemas;
use h2scope::pipeline::{Config, Dissector};
use h2scope::tui::app::{App, Key};
use h2scope::tui::model::{Builder, Model};
use h2scope::tui::{store, view};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn main() {
    divan::main();
}

/// The recorded capture replicated into `copies` connections (each its own client port).
fn packets(copies: u16) -> Vec<(i64, Vec<u8>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/grpc-health.pcap");
    let mut r = CaptureReader::open(path).unwrap();
    let mut base = Vec::new();
    r.for_each_packet(|p| {
        base.push((p.ts_ns, p.data.to_vec()));
        true
    })
    .unwrap();
    let mut out = Vec::new();
    for k in 0..copies {
        for (ts, data) in &base {
            let mut d = data.clone();
            let sport = u16::from_be_bytes([d[34], d[35]]);
            let at = if sport == 34793 { 36 } else { 34 };
            d[at..at + 2].copy_from_slice(&(1024 + k).to_be_bytes());
            out.push((ts + k as i64 * 1_000_000, d));
        }
    }
    out
}

/// Rows of `pkts`, as the TUI's reading thread builds them (details go to the store).
fn build(pkts: &[(i64, Vec<u8>)]) -> Model {
    let mut cfg = Config::default();
    cfg.http2.keep_frame_bytes = true;
    let (writer, reader) = store::new();
    let mut builder = Builder::new(writer);
    let mut model = Model::new(reader);
    let mut d = Dissector::new(cfg);
    for (i, (ts, data)) in pkts.iter().enumerate() {
        let p = Packet {
            index: i as u64 + 1,
            ts_ns: *ts,
            link: LinkType(1),
            data,
            orig_len: data.len() as u32,
        };
        d.packet(&p, &mut builder);
        if builder.pending() >= 4096 {
            builder.take().into_iter().for_each(|u| model.apply(u));
        }
    }
    d.finish(&mut builder);
    builder.take().into_iter().for_each(|u| model.apply(u));
    model
}

thread_local! {
    static APP: RefCell<Option<App>> = const { RefCell::new(None) };
}

/// Runs `f` on the app of a million frames, built once.
fn with_app<R>(f: impl FnOnce(&mut App) -> R) -> R {
    APP.with(|cell| {
        let mut slot = cell.borrow_mut();
        let app = slot.get_or_insert_with(|| {
            let started = std::time::Instant::now();
            let model = build(&packets(6000));
            eprintln!(
                "\nbuilt {} frames and messages, {} calls, {} connections in {:.1} s",
                model.items.len(),
                model.calls.len(),
                model.conns.len(),
                started.elapsed().as_secs_f64()
            );
            App::new(model, "replicated")
        });
        f(app)
    })
}

/// A key, then the redraw a terminal would do after it.
fn key_and_draw(app: &mut App, keys: &[Key], term: &mut Terminal<TestBackend>) {
    for &k in keys {
        app.key(k);
    }
    let theme = view::Theme { color: true };
    term.draw(|f| view::draw(f, app, &theme)).unwrap();
}

fn term() -> Terminal<TestBackend> {
    Terminal::new(TestBackend::new(160, 45)).unwrap()
}

#[divan::bench(sample_count = 30)]
fn key_down_in_calls(bencher: Bencher) {
    let mut t = term();
    with_app(|app| {
        app.set_filter("");
        bencher.bench_local(|| key_and_draw(app, &[Key::Down], &mut t));
    })
}

#[divan::bench(sample_count = 30)]
fn key_end_then_home(bencher: Bencher) {
    let mut t = term();
    with_app(|app| {
        app.set_filter("");
        bencher.bench_local(|| {
            key_and_draw(app, &[Key::Char('G')], &mut t);
            key_and_draw(app, &[Key::Char('g')], &mut t);
        });
    })
}

/// Typing a filter and applying it: the whole call list is scanned once.
#[divan::bench(sample_count = 10)]
fn filter_by_path(bencher: Bencher) {
    let mut t = term();
    with_app(|app| {
        bencher.bench_local(|| {
            let mut keys = vec![Key::Char('/')];
            keys.extend("Watch".chars().map(Key::Char));
            keys.push(Key::Enter);
            key_and_draw(app, &keys, &mut t);
            black_box(app.visible().len());
            app.set_filter("");
        });
    })
}

/// A filter on a field rows do not keep: every call's JSON Lines object is read back from the
/// store, and the fields named parsed.
#[divan::bench(sample_count = 5)]
fn filter_by_header(bencher: Bencher) {
    let mut t = term();
    with_app(|app| {
        bencher.bench_local(|| {
            let mut keys = vec![Key::Char('/')];
            keys.extend("trailers.grpc-status != 0".chars().map(Key::Char));
            keys.push(Key::Enter);
            key_and_draw(app, &keys, &mut t);
            black_box(app.visible().len());
            app.set_filter("");
        });
    })
}

/// Into a call's frames and their detail and hex, read back from the store.
#[divan::bench(sample_count = 30)]
fn drill_into_frames_and_detail(bencher: Bencher) {
    let mut t = term();
    with_app(|app| {
        app.set_filter("");
        app.key(Key::Char('G'));
        bencher.bench_local(|| {
            key_and_draw(app, &[Key::Enter, Key::Down, Key::Enter, Key::Down], &mut t);
            key_and_draw(app, &[Key::Esc, Key::Esc], &mut t);
        });
    })
}

#[divan::bench(sample_count = 30)]
fn connections_view(bencher: Bencher) {
    let mut t = term();
    with_app(|app| {
        bencher.bench_local(|| {
            key_and_draw(app, &[Key::Char('c'), Key::Char('G')], &mut t);
            key_and_draw(app, &[Key::Char('c')], &mut t);
        });
    })
}

/// Loading a capture file as the TUI does, the dissection on a thread of its own beside the
/// one building rows (`h2scope::tui::load`; its schema pass over the file included).
#[divan::bench(sample_count = 5)]
fn load_file(bencher: Bencher) {
    use h2scope::output::pcap::PcapWriter;
    let pkts = packets(200);
    let path = std::env::temp_dir().join(format!("h2scope-bench-tui-{}.pcap", std::process::id()));
    let mut w = PcapWriter::new(Vec::new(), LinkType(1), 262_144).unwrap();
    for (ts, data) in &pkts {
        w.write_packet(*ts, data, data.len() as u32).unwrap();
    }
    let file = w.into_inner();
    std::fs::write(&path, &file).unwrap();
    let p = path.to_str().unwrap();
    bencher
        .counter(BytesCount::new(file.len()))
        .bench_local(|| {
            let model = h2scope::tui::load(p, &Config::default(), Schemas::bundled()).unwrap();
            black_box(model.items.len())
        });
    std::fs::remove_file(&path).ok();
}

/// How fast the reading thread builds rows (dissection included), in capture bytes.
#[divan::bench(sample_count = 5)]
fn build_rows(bencher: Bencher) {
    let pkts = packets(200);
    let bytes: usize = pkts.iter().map(|p| p.1.len() + 16).sum();
    bencher
        .counter(BytesCount::new(bytes))
        .bench_local(|| black_box(build(&pkts).items.len()));
}
