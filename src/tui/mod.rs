//! The terminal UI (`h2scope tui FILE`), with ratatui on crossterm: calls (or connections), the
//! frames and messages of the selection, and their detail; filter, export a HAProxy check, write a
//! connection's packets.
//!
//! Rows come from a background thread ([`feed`]) reading a file or a live interface, so the
//! screen is usable while a large capture is still being read; each row's detail and bytes sit
//! in a temporary [`store`] and are read back for the selected row only. The terminal is
//! restored on exit, on error and on panic.

pub mod app;
pub mod feed;
pub mod frame_record;
pub mod model;
pub mod store;
pub mod view;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ratatui::crossterm::event::{
    self, Event as TermEvent, KeyCode, KeyEventKind, MouseButton, MouseEventKind,
};

use crate::grpc::schema::Schemas;
use crate::haproxy::{self, config::ConfigOptions, ExportOptions, Selector};
use crate::output::pcapng::{CaptureFile, Format};
use crate::pipeline::{open_capture, Config, Dissector};
use app::{Action, App, Key};
use feed::Loader;
use model::Model;

/// Dissects a whole capture into the TUI's model on this thread.
pub fn load(
    path: &str,
    cfg: &Config,
    schemas: Schemas,
) -> Result<Model, crate::capture::CaptureError> {
    feed::load_all(path, cfg, schemas)
}

/// The section `h2scope haproxy FILE --call CONN:STREAM` prints, written to a file in `dir`.
pub fn export(app: &App, conn: u64, stream: u32, schemas: Schemas) -> Result<PathBuf, String> {
    let (source, dir) = (&app.source, &app.out_dir);
    let selector = Selector::Call { conn, stream };
    let rec = haproxy::find_call(source, &selector, schemas, app.tls_keys.clone())
        .map_err(|e| e.to_string())?;
    let tls = rec.recorded_tls();
    let opts = ExportOptions {
        tls: tls.is_some(),
        ..ExportOptions::default()
    };
    let hc = haproxy::build(&rec, &opts).map_err(|e| e.to_string())?;
    let copts = ConfigOptions {
        source: source.to_string(),
        tls,
        ..ConfigOptions::default()
    };
    let text = haproxy::config::render(&rec, &hc, &copts);
    let path = dir.join(format!("h2scope-haproxy-{conn}-{stream}.cfg"));
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Writes the packets of one connection to a pcapng file in `dir`, with its TLS secrets when
/// they are known.
pub fn write_connection(app: &App, conn: u64) -> Result<(PathBuf, u64), String> {
    let path = app.out_dir.join(format!("h2scope-conn-{conn}.pcapng"));
    let mut out = CaptureFile::create(&path, Format::Pcapng, None, 1, None)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cfg = Config::default();
    cfg.grpc.bodies = crate::grpc::Bodies::Skip;
    cfg.tls_keys = app.tls_keys.clone();
    let mut reader = open_capture(&app.source, &cfg).map_err(|e| e.to_string())?;
    let keys = cfg.tls_keys.clone();
    let mut d = Dissector::new(cfg);
    let mut written = 0;
    let mut failure = None;
    let mut discard = crate::pipeline::Discard::default();
    let _ = reader.for_each_packet(|p| {
        if d.packet(p, &mut discard) == Some(conn) {
            // Secrets to embed only once some are known (given, or met in the file).
            if let Some(keys) = keys.as_deref().filter(|k| !k.is_empty()) {
                if let Ok(seg) = crate::capture::link::decode(p.link, p.data) {
                    if let Err(e) = out.embed_tls_secrets(keys, seg.payload) {
                        failure = Some(e.to_string());
                    }
                }
            }
            match out.write_packet(p.link, p.ts_ns, p.data, p.orig_len) {
                Ok(()) => written += 1,
                Err(e) => failure = Some(e.to_string()),
            }
        }
        failure.is_none()
    });
    out.finish().map_err(|e| e.to_string())?;
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
            app.status = match export(app, *conn, *stream, schemas.clone()) {
                Ok(p) => format!(
                    "HAProxy check for {conn}:{stream} written to {}",
                    p.display()
                ),
                Err(e) => format!("export failed: {e}"),
            }
        }
        Action::WriteConnection { conn } => {
            app.status = match write_connection(app, *conn) {
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

/// Runs the TUI until the user quits, applying rows from `loader` as they arrive.
pub fn run(mut app: App, mut loader: Option<Loader>, schemas: Schemas) -> io::Result<()> {
    let theme = view::Theme::from_env();
    // ratatui::init installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::init();
    let _ =
        ratatui::crossterm::execute!(io::stdout(), ratatui::crossterm::event::EnableMouseCapture);
    let result = (|| -> io::Result<()> {
        let mut dirty = true;
        loop {
            if dirty {
                terminal.draw(|f| view::draw(f, &app, &theme))?;
                dirty = false;
            }
            // Wait for a key briefly while rows are still coming, else until one comes.
            let reading = loader.as_ref().is_some_and(|l| !l.finished());
            let wait = Duration::from_millis(if reading { 50 } else { 1000 });
            if event::poll(wait)? {
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
                dirty = true;
            }
            if let Some(l) = loader.as_mut() {
                dirty |= l.drain(&mut app, Duration::from_millis(30));
            }
        }
    })();
    let _ =
        ratatui::crossterm::execute!(io::stdout(), ratatui::crossterm::event::DisableMouseCapture);
    ratatui::restore();
    // Stops a live capture and removes its temporary file.
    drop(loader);
    result
}
