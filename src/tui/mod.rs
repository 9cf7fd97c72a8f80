//! The terminal UI (`h2scope tui FILE`), with ratatui on crossterm: calls (or connections), the
//! frames and messages of the selection, and their detail; filter, export a HAProxy check, write a
//! connection's packets.
//!
//! The model is built from the event stream before the UI starts; the terminal is restored on
//! exit, on error and on panic.

pub mod app;
pub mod model;
pub mod view;

use std::io;
use std::path::{Path, PathBuf};

use ratatui::crossterm::event::{
    self, Event as TermEvent, KeyCode, KeyEventKind, MouseButton, MouseEventKind,
};

use crate::capture::CaptureReader;
use crate::grpc::schema::Schemas;
use crate::haproxy::{self, config::ConfigOptions, ExportOptions, Selector};
use crate::output::pcapng::{CaptureFile, Format};
use crate::pipeline::{harvest_schemas, Config, Dissector};
use app::{Action, App, Key};
use model::Model;

/// Dissects a capture into the TUI's model.
pub fn load(
    path: &str,
    cfg: &Config,
    schemas: Schemas,
) -> Result<Model, crate::capture::CaptureError> {
    load_with_progress(path, cfg, schemas, |_, _| {})
}

/// [`load`], calling `tick(record_len, packets_so_far)` after each packet so a caller can show
/// how far the (possibly long) load has got before the screen opens.
pub fn load_with_progress(
    path: &str,
    cfg: &Config,
    schemas: Schemas,
    mut tick: impl FnMut(usize, u64),
) -> Result<Model, crate::capture::CaptureError> {
    let schemas = harvest_schemas(path, schemas, cfg, u64::MAX);
    let mut reader = CaptureReader::open(path)?;
    let mut cfg = cfg.clone();
    cfg.http2.keep_frame_bytes = true;
    let mut d = Dissector::with_schemas(cfg, schemas);
    let mut model = Model::default();
    let mut seen = 0u64;
    let result = reader.for_each_packet(|p| {
        d.packet(p, &mut model);
        seen += 1;
        tick(p.data.len(), seen);
        true
    });
    d.finish(&mut model);
    model.packets = model.packets.max(reader.records());
    result.map(|_| model)
}

/// The section `h2scope haproxy FILE --call CONN:STREAM` prints, written to a file in `dir`.
pub fn export(
    source: &str,
    conn: u64,
    stream: u32,
    dir: &Path,
    schemas: Schemas,
) -> Result<PathBuf, String> {
    let rec = haproxy::find_call(source, &Selector::Call { conn, stream }, schemas)
        .map_err(|e| e.to_string())?;
    let hc = haproxy::build(&rec, &ExportOptions::default()).map_err(|e| e.to_string())?;
    let copts = ConfigOptions {
        source: source.to_string(),
        ..ConfigOptions::default()
    };
    let text = haproxy::config::render(&rec, &hc, &copts);
    let path = dir.join(format!("h2scope-haproxy-{conn}-{stream}.cfg"));
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Writes the packets of one connection to a pcapng file in `dir`.
pub fn write_connection(source: &str, conn: u64, dir: &Path) -> Result<(PathBuf, u64), String> {
    let path = dir.join(format!("h2scope-conn-{conn}.pcapng"));
    let mut out = CaptureFile::create(&path, Format::Pcapng, None, 1)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = CaptureReader::open(source).map_err(|e| e.to_string())?;
    let mut cfg = Config::default();
    cfg.grpc.decode_bodies = false;
    let mut d = Dissector::new(cfg);
    let mut written = 0;
    let mut failure = None;
    let _ = reader.for_each_packet(|p| {
        if d.packet(p, &mut crate::pipeline::Discard) == Some(conn) {
            match out.write_packet(p.link, p.ts_ns, p.data, p.orig_len) {
                Ok(()) => written += 1,
                Err(e) => failure = Some(e.to_string()),
            }
        }
        failure.is_none()
    });
    out.flush().map_err(|e| e.to_string())?;
    match failure {
        Some(f) => Err(f),
        None => Ok((path, written)),
    }
}

fn key_of(code: KeyCode) -> Option<Key> {
    Some(match code {
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab => Key::Tab,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

/// Carries out what a key asked for that touches files.
pub fn perform(app: &mut App, action: &Action, schemas: &Schemas) {
    match action {
        Action::Export { conn, stream } => {
            app.status = match export(&app.source, *conn, *stream, &app.out_dir, schemas.clone()) {
                Ok(p) => format!(
                    "HAProxy check for {conn}:{stream} written to {}",
                    p.display()
                ),
                Err(e) => format!("export failed: {e}"),
            }
        }
        Action::WriteConnection { conn } => {
            app.status = match write_connection(&app.source, *conn, &app.out_dir) {
                Ok((p, n)) => format!(
                    "{n} packets of connection {conn} written to {}",
                    p.display()
                ),
                Err(e) => format!("writing failed: {e}"),
            }
        }
        Action::None | Action::Quit => {}
    }
}

/// Runs the TUI on a capture loaded with [`load`] from `path` until the user quits.
pub fn run(model: Model, path: &str, schemas: Schemas) -> io::Result<()> {
    let mut app = App::new(model, path);
    let theme = view::Theme::from_env();
    // ratatui::init installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::init();
    let _ =
        ratatui::crossterm::execute!(io::stdout(), ratatui::crossterm::event::EnableMouseCapture);
    let result = (|| -> io::Result<()> {
        loop {
            terminal.draw(|f| view::draw(f, &app, &theme))?;
            let action = match event::read()? {
                TermEvent::Key(k) if k.kind == KeyEventKind::Press => match key_of(k.code) {
                    Some(key) => app.key(key),
                    None => Action::None,
                },
                TermEvent::Mouse(m) => match m.kind {
                    MouseEventKind::ScrollDown => app.key(Key::Down),
                    MouseEventKind::ScrollUp => app.key(Key::Up),
                    MouseEventKind::Down(MouseButton::Left) => {
                        let size = terminal.size()?;
                        let screen = ratatui::layout::Rect::new(0, 0, size.width, size.height);
                        if let Some((pane, row)) = view::click(&app, screen, m.column, m.row) {
                            app.click(pane, row);
                        }
                        Action::None
                    }
                    _ => Action::None,
                },
                _ => Action::None,
            };
            if action == Action::Quit {
                return Ok(());
            }
            perform(&mut app, &action, &schemas);
        }
    })();
    let _ =
        ratatui::crossterm::execute!(io::stdout(), ratatui::crossterm::event::DisableMouseCapture);
    ratatui::restore();
    result
}
