//! The terminal UI, rendered with ratatui's TestBackend from a known capture, and driven by keys
//! on its state.

mod common;

use std::path::PathBuf;

use h2scope::grpc::schema::Schemas;
use h2scope::output::grpcurl::GrpcurlOptions;
use h2scope::pipeline::Config;
use h2scope::tui::app::{Action, App, Key, Pane, View};
use h2scope::tui::{load, perform, view};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn testdata() -> String {
    format!("{}/testdata/grpc-health.pcap", env!("CARGO_MANIFEST_DIR"))
}

fn app() -> App {
    let model = load(&testdata(), &Config::default(), Schemas::bundled()).unwrap();
    App::new(model, "grpc-health.pcap")
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    let theme = view::Theme { color: false };
    t.draw(|f| view::draw(f, app, &theme)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        for x in 0..w {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn calls_frames_and_detail_render() {
    let mut app = app();
    let s = screen(&app, 160, 40);
    assert!(s.contains("27 calls"), "{s}");
    assert!(s.contains("/grpc.health.v1.Health/Check"), "{s}");
    assert!(s.contains("5 NOT_FOUND"), "{s}");
    // The selected call's outline and request headers are in the detail pane.
    assert!(
        s.contains("POST /grpc.health.v1.Health/Check on 127.0.0.1:39215"),
        "{s}"
    );
    assert!(s.contains("HTTP 200, grpc-status 0 OK"), "{s}");
    assert!(
        s.contains("request 1 message (5 B), response 1 message (7 B)"),
        "{s}"
    );
    assert!(s.contains(":path: /grpc.health.v1.Health/Check"), "{s}");
    // Into the frames: the first is the request HEADERS, shown in hex too (length 0x49 = 73,
    // type 1, flags 4, stream 1).
    app.key(Key::Enter);
    assert_eq!(app.focus, Pane::Items);
    let s = screen(&app, 160, 40);
    assert!(s.contains("0000  00 00 49 01 04 00 00 00  01"), "{s}");
    // Then a message's decoded JSON.
    // HEADERS, DATA, request message, DATA, HEADERS, DATA, then the response message.
    for _ in 0..6 {
        app.key(Key::Down);
    }
    let s = screen(&app, 160, 40);
    assert!(s.contains("MESSAGE"), "{s}");
    assert!(s.contains("grpc.health.v1.HealthCheckResponse"), "{s}");
    assert!(s.contains("\"status\": \"SERVING\""), "{s}");
    // Its bytes in the hex pane: field 1, varint 1 (SERVING).
    assert!(app.on_message());
    assert_eq!(app.hex(), h2scope::output::hexdump::hex_dump(&[0x08, 0x01]));
    assert!(s.contains("bytes of the message"), "{s}");
    // It fits a classic 80x24 terminal.
    let small = screen(&app, 80, 24);
    assert!(small.contains("calls"));
    assert!(small.contains("detail"));
}

/// A gRPC call's detail ends with the grpcurl command that makes it again: the lines
/// `read -T grpcurl` writes for the same call (after the comment naming it), its answer too.
#[test]
fn call_details_show_the_grpcurl_command() {
    let commands = same_commands_as_read(&app(), &[]);
    assert!(commands
        .iter()
        .all(|c| c.starts_with("grpcurl -plaintext ")));
    // No schema was given: grpcurl asks the server's reflection service.
    assert!(
        commands.iter().all(|c| !c.contains("-proto")),
        "{commands:?}"
    );
}

/// With `--proto`, the TUI's commands carry the same `-import-path`/`-proto` flags as
/// `read -T grpcurl --proto`'s, for a server without reflection.
#[test]
fn call_details_give_the_schema_flags_of_read() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (proto, include) = (
        format!("{root}/proto/grpc/health/v1/health.proto"),
        format!("{root}/proto"),
    );
    let mut app = app();
    let (_, flags) =
        GrpcurlOptions::load(&[PathBuf::from(&proto)], &[PathBuf::from(&include)], &[]).unwrap();
    app.model.grpcurl = flags;
    let commands = same_commands_as_read(&app, &["--proto", &proto, "-I", &include]);
    // Named from the include path, as grpcurl (like protoc) names it.
    let (import, proto) = (
        format!(" -import-path {include} "),
        " -proto grpc/health/v1/health.proto ",
    );
    for c in &commands {
        assert!(c.contains(&import) && c.contains(proto), "{c}");
    }
}

/// Each call's command in its detail, checked against `read -T grpcurl ARGS` on the same
/// capture; the last line of each (the command itself) is returned.
fn same_commands_as_read(app: &App, args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_h2scope"))
        .args(["read", "-T", "grpcurl"])
        .args(args)
        .arg(testdata())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = String::from_utf8(out.stdout).unwrap();
    let mut commands = Vec::new();
    for (i, row) in app.model.calls.iter().enumerate() {
        let lines: Vec<String> = app
            .model
            .call_detail(i)
            .lines
            .into_iter()
            .map(|l| l.text)
            .collect();
        let at = lines
            .iter()
            .position(|l| l == "made again with grpcurl:")
            .unwrap_or_else(|| panic!("{lines:?}"));
        let command: Vec<&str> = lines[at + 1..].iter().map(|l| &l[2..]).collect();
        assert!(command.last().unwrap().starts_with("grpcurl "), "{lines:?}");
        let answered = command.iter().any(|l| l.starts_with("#   answered"));
        assert_eq!(answered, row.messages.1 > 0, "{lines:?}");
        let head = format!("# call {}:{} ", row.conn, row.stream);
        let block: Vec<&str> = script
            .lines()
            .skip_while(|l| !l.starts_with(&head))
            .skip(1)
            .take(command.len())
            .collect();
        assert_eq!(command, block, "call {i}");
        commands.push(command.last().unwrap().to_string());
    }
    assert_eq!(commands.len(), 27);
    commands
}

#[test]
fn keys_filter_drill_down_and_views() {
    let mut app = app();
    assert_eq!(app.visible().len(), 27);
    app.key(Key::Char('/'));
    for c in "Watch".chars() {
        app.key(Key::Char(c));
    }
    app.key(Key::Enter);
    assert_eq!(app.visible().len(), 1);
    assert!(screen(&app, 160, 40).contains("Health/Watch"));
    // Problem calls only: the NOT_FOUND check and the cancelled Watch.
    app.key(Key::Char('/'));
    for c in "status!=0".chars() {
        app.key(Key::Char(c));
    }
    app.key(Key::Enter);
    assert_eq!(app.visible().len(), 2);
    app.key(Key::Char('n'));
    assert_eq!(app.call, 1);
    app.key(Key::Char('n'));
    assert_eq!(app.call, 0);
    // G, g, and the connections view.
    app.set_filter("");
    app.key(Key::Char('G'));
    assert_eq!(app.call, 26);
    app.key(Key::Char('g'));
    assert_eq!(app.call, 0);
    app.key(Key::Char('c'));
    assert_eq!(app.view, View::Connections);
    let s = screen(&app, 160, 40);
    assert!(s.contains("connections") && s.contains("fin"), "{s}");
    // Both sides sent a GOAWAY, and nobody a PING (as `h2scope health` reports).
    assert!(s.contains("pings") && s.contains("goaway"), "{s}");
    assert_eq!(
        (app.model.conns[0].pings, app.model.conns[0].goaways),
        (0, 2)
    );
    // The connection's own frames (SETTINGS, GOAWAY ...) are listed under it, and its health
    // report is the detail.
    assert!(s.contains("SETTINGS") && s.contains("GOAWAY"), "{s}");
    assert!(s.contains("server sent GOAWAY NO_ERROR"), "{s}");
    assert!(s.contains("client RST_STREAM: CANCEL"), "{s}");
    app.key(Key::Char('?'));
    assert!(screen(&app, 100, 30).contains("filter: as read -Y"));
    app.key(Key::Char('x'));
    assert!(!app.help);
    assert_eq!(app.key(Key::Char('q')), Action::Quit);
}

/// `e` writes the same section `h2scope haproxy FILE --call CONN:STREAM` prints; `w` writes the
/// connection's packets.
#[test]
fn export_and_write_from_the_ui() {
    let mut app = app();
    let dir = std::env::temp_dir().join(format!("h2scope-tui-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    app.out_dir = dir.clone();
    app.source = testdata();
    for _ in 0..3 {
        app.key(Key::Down);
    }
    let action = app.key(Key::Char('e'));
    assert_eq!(action, Action::Export { conn: 0, stream: 7 });
    perform(&mut app, &action, &Schemas::bundled());
    let written = std::fs::read_to_string(dir.join("h2scope-haproxy-0-7.cfg")).unwrap();
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_h2scope"))
        .args(["haproxy", &testdata(), "--call", "0:7"])
        .output()
        .unwrap();
    assert_eq!(written, String::from_utf8(cli.stdout).unwrap());
    assert!(app.status.contains("written"));

    let action = app.key(Key::Char('w'));
    assert_eq!(action, Action::WriteConnection { conn: 0 });
    perform(&mut app, &action, &Schemas::bundled());
    let back = std::process::Command::new(env!("CARGO_BIN_EXE_h2scope"))
        .args([
            "read",
            "-q",
            dir.join("h2scope-conn-0.pcapng").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&back.stdout).contains("calls: 27"));
    std::fs::remove_dir_all(&dir).ok();
}

/// The same from a TLS capture opened with its key log: the export checks over TLS, as the CLI's
/// does, and the connection written carries its secrets, so it decrypts without the key log.
#[test]
fn export_and_write_tls_from_the_ui() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let capture = format!("{dir}/testdata/grpc-tls.pcap");
    let keylog = format!("{dir}/testdata/grpc-tls.keylog");
    let keys =
        std::sync::Arc::new(h2scope::tls::KeyLog::open(std::path::Path::new(&keylog)).unwrap());
    let cfg = Config {
        tls_keys: Some(keys.clone()),
        ..Config::default()
    };
    let model = load(&capture, &cfg, Schemas::bundled()).unwrap();
    assert_eq!(model.calls.len(), 4);
    let mut app = App::new(model, &capture);
    app.tls_keys = Some(keys);
    let out = std::env::temp_dir().join(format!("h2scope-tui-tls-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    app.out_dir = out.clone();

    let action = app.key(Key::Char('e'));
    assert_eq!(action, Action::Export { conn: 0, stream: 1 });
    perform(&mut app, &action, &Schemas::bundled());
    let written = std::fs::read_to_string(out.join("h2scope-haproxy-0-1.cfg"))
        .unwrap_or_else(|e| panic!("{e}: {}", app.status));
    assert!(written.contains("tcp-check connect ssl alpn h2 sni localhost\n"));
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_h2scope"))
        .args([
            "haproxy",
            &capture,
            "--call",
            "0:1",
            "--tls-keylog",
            &keylog,
        ])
        .output()
        .unwrap();
    assert_eq!(written, String::from_utf8(cli.stdout).unwrap());

    let action = app.key(Key::Char('w'));
    perform(&mut app, &action, &Schemas::bundled());
    let back = std::process::Command::new(env!("CARGO_BIN_EXE_h2scope"))
        .args([
            "read",
            "-q",
            out.join("h2scope-conn-0.pcapng").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&back.stdout);
    assert!(
        text.contains("TLS connections: 1 (1 decrypted)") && text.contains("calls: 4"),
        "{text}"
    );
    std::fs::remove_dir_all(&out).ok();
}

/// The lines drawn with the selection style (reversed), as text.
fn highlighted(app: &App, w: u16, h: u16) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    let theme = view::Theme { color: false };
    t.draw(|f| view::draw(f, app, &theme)).unwrap();
    let buf = t.backend().buffer().clone();
    (0..h)
        .filter_map(|y| {
            let line: String = (0..w)
                .filter(|&x| {
                    buf[(x, y)]
                        .modifier
                        .contains(ratatui::style::Modifier::REVERSED)
                })
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect();
            (!line.trim().is_empty() && y > 0).then_some(line)
        })
        .collect()
}

/// Only the rows that fit are built on each redraw; walking the whole list on a short screen
/// must still show the selected call and the selected frame highlighted, at every position.
#[test]
fn scrolling_keeps_the_selection_on_screen() {
    let mut app = app();
    let n = app.visible().len();
    for pos in 0..n {
        let c = &app.model.calls[app.visible()[pos]];
        let want = format!("{}", c.stream);
        let rows = highlighted(&app, 120, 20);
        assert_eq!(rows.len(), 1, "position {pos}: {rows:?}");
        assert!(
            rows[0].split_whitespace().nth(1) == Some(want.as_str()),
            "position {pos}: {rows:?} should show stream {want}"
        );
        app.key(Key::Down);
    }
    // And back up: the list scrolls only when the selection leaves the screen.
    for _ in 0..n {
        app.key(Key::Up);
        let c = &app.model.calls[app.visible()[app.call]];
        let rows = highlighted(&app, 120, 20);
        assert_eq!(rows.len(), 1, "position {}: {rows:?}", app.call);
        assert_eq!(
            rows[0].split_whitespace().nth(1),
            Some(c.stream.to_string().as_str()),
            "position {}",
            app.call
        );
    }
    assert_eq!(app.call, 0);
    // The connections view lists the connection's own frames; walk the longest list to the end
    // (longer than the pane on a 100x16 screen, so it scrolls).
    app.key(Key::Char('c'));
    let longest = (0..app.model.conns.len())
        .max_by_key(|&i| app.model.conns[i].items.len())
        .unwrap();
    app.key(Key::Char('g'));
    for _ in 0..longest {
        app.key(Key::Down);
    }
    app.key(Key::Enter);
    assert_eq!(app.focus, Pane::Items);
    let items = app.items().len();
    assert!(items >= 8, "{items} frames in the longest connection");
    for pos in 0..items {
        let packet = app.selected_item().unwrap().packet();
        // Narrow and short: the frames pane, under the list, has room for five rows.
        let rows = highlighted(&app, 100, 16);
        assert!(
            rows.iter()
                .any(|r| r.split_whitespace().next() == Some(packet.to_string().as_str())),
            "item {pos}: {rows:?} should show packet {packet}"
        );
        app.key(Key::Down);
    }
}

/// Is the cell at (`x`, `y`) drawn with the selection style?
fn reversed_at(app: &App, w: u16, h: u16, x: u16, y: u16) -> bool {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    let theme = view::Theme { color: false };
    t.draw(|f| view::draw(f, app, &theme)).unwrap();
    t.backend().buffer()[(x, y)]
        .modifier
        .contains(ratatui::style::Modifier::REVERSED)
}

/// A left click selects the row drawn under the pointer, in the list (scrolled or not, wide or
/// narrow layout) and in the frames pane; a click on the detail focuses it.
#[test]
fn clicks_select_the_row_under_the_pointer() {
    let mut app = app();
    for (w, h) in [(160, 40), (100, 16)] {
        let screen = ratatui::layout::Rect::new(0, 0, w, h);
        let mut hits = 0;
        for y in 0..h {
            // Start from a scrolled list each time: the click must land on the drawn row.
            app.click(Pane::List, Some(20));
            // Borders, the header, and the panes below the list on a narrow screen are not rows
            // of the list.
            if let Some((Pane::List, Some(row))) = view::click(&app, screen, 3, y) {
                app.click(Pane::List, Some(row));
                assert_eq!(app.call, row);
                assert!(reversed_at(&app, w, h, 3, y), "{w}x{h}: row {row} at y={y}");
                hits += 1;
            }
        }
        assert!(hits >= h as usize / 5, "{w}x{h}: {hits} rows clickable");
    }
    // Frames pane on the narrow layout: bottom left, under the list.
    let screen = ratatui::layout::Rect::new(0, 0, 100, 16);
    app.click(Pane::List, Some(0));
    let mut hit = false;
    for y in 0..16 {
        if let Some((Pane::Items, Some(row))) = view::click(&app, screen, 3, y) {
            app.click(Pane::Items, Some(row));
            assert_eq!(app.focus, Pane::Items);
            assert_eq!(app.item, row);
            assert!(reversed_at(&app, 100, 16, 3, y), "frame row {row} at y={y}");
            hit = true;
        }
    }
    assert!(hit, "no frame row was clickable");
    assert_eq!(
        view::click(&app, screen, 80, 12).map(|c| c.0),
        Some(Pane::Detail)
    );
}

/// The reversed (highlighted) cells of the hex pane, as text: the pane is the one whose title
/// starts with " bytes".
fn highlighted_hex(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    let theme = view::Theme { color: false };
    t.draw(|f| view::draw(f, app, &theme)).unwrap();
    let buf = t.backend().buffer().clone();
    let rows: Vec<String> = (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect())
        .collect();
    let top = rows
        .iter()
        .position(|r| r.contains("┌ bytes"))
        .expect("a hex pane");
    let left = rows[top].find("┌ bytes").unwrap();
    let left = rows[top][..left].chars().count() as u16;
    let mut out = String::new();
    for y in top as u16 + 1..h {
        for x in left..w {
            let c = &buf[(x, y)];
            if c.modifier.contains(ratatui::style::Modifier::REVERSED) {
                out.push_str(c.symbol());
            }
        }
    }
    out
}

/// The hex pane highlights the bytes of the detail line under the cursor: the frame header
/// first, then a header field's own HPACK bytes, then one SETTINGS entry.
#[test]
fn hex_pane_highlights_the_bytes_of_the_cursor_line() {
    let mut app = app();
    app.key(Key::Enter);
    // The frame header: 9 bytes (00 00 49 01 04 00 00 00 01) and their 9 text characters.
    let lit = highlighted_hex(&app, 160, 40);
    assert!(lit.starts_with("000049010400000001"), "{lit:?}");
    // Into the detail: line 0 is the frame header, 1 "headers:", 2 is :method POST, indexed
    // static entry 3, one byte 0x83.
    app.key(Key::Enter);
    app.key(Key::Down);
    app.key(Key::Down);
    assert_eq!(
        app.detail()[app.detail_line].trim(),
        ":method: POST    [indexed #3]"
    );
    let lit = highlighted_hex(&app, 160, 40);
    assert_eq!(lit, "83.", "{lit:?}");
    assert!(screen(&app, 160, 40).contains("bytes 9..10 of 82"));
    // :authority is a literal with an indexed name: its bytes start with 0x41 and run for its
    // length (1 + 1 + 11 Huffman-coded bytes).
    app.key(Key::Down);
    app.key(Key::Down);
    let lit = highlighted_hex(&app, 160, 40);
    assert!(lit.starts_with("418b089d5c"), "{lit:?}");
    assert!(screen(&app, 160, 40).contains("bytes 11..24 of 82"));
    // The connections view: the server's SETTINGS, cursor on its first entry (6 bytes).
    app.key(Key::Esc);
    app.key(Key::Esc);
    app.key(Key::Char('c'));
    app.key(Key::Enter);
    let settings = (0..app.items().len())
        .find(|&k| {
            app.item = k;
            app.detail()[0].starts_with("SETTINGS frame") && app.detail().len() > 1
        })
        .expect("a SETTINGS frame with entries");
    app.item = settings;
    app.key(Key::Enter);
    app.key(Key::Down);
    let line = app.detail()[1].clone();
    assert!(line.contains(" = "), "{line}");
    let lit = highlighted_hex(&app, 160, 40);
    // Six bytes in hex and six text characters.
    assert_eq!(lit.len(), 18, "{lit:?} for {line}");
}

/// Rows arrive in batches while the screen is in use: calls appear at their first frame (open,
/// then completed), a filter keeps up with calls that end with an error, and follow keeps the
/// newest call selected. The end state equals a whole load.
#[test]
fn rows_arrive_while_the_screen_is_in_use() {
    use h2scope::capture::CaptureReader;
    use h2scope::pipeline::Dissector;
    use h2scope::tui::model::{Builder, Model};
    use h2scope::tui::store;

    let whole = app();
    let (writer, reader) = store::new();
    let mut builder = Builder::new(writer);
    let mut live = App::new(Model::new(reader), "live");
    live.set_filter("status!=0");
    let mut following = App::new(Model::default(), "live");
    following.follow = true;
    let mut cfg = Config::default();
    cfg.http2.keep_frame_bytes = true;
    let mut d = Dissector::with_schemas(cfg, Schemas::bundled());
    let mut r = CaptureReader::open(&testdata()).unwrap();
    let mut saw_open = false;
    r.for_each_packet(|p| {
        d.packet(p, &mut builder);
        let batch = builder.take();
        following.apply(batch.clone());
        live.apply(batch);
        saw_open |= following.model.calls.iter().any(|c| c.open);
        // Follow: the newest call is the selected one.
        assert_eq!(following.call, following.visible().len().saturating_sub(1));
        true
    })
    .unwrap();
    d.finish(&mut builder);
    live.apply(builder.take());
    assert!(saw_open, "no call was ever shown in progress");
    // The filter ends up with the same problem calls as on a whole load.
    let mut whole_problems = whole;
    whole_problems.set_filter("status!=0");
    let key = |a: &App| -> Vec<(u64, u32)> {
        a.visible()
            .iter()
            .map(|&i| (a.model.calls[i].conn, a.model.calls[i].stream))
            .collect()
    };
    assert_eq!(key(&live), key(&whole_problems));
    assert_eq!(live.visible().len(), 2);
    assert!(live.model.calls.iter().all(|c| !c.open));
    assert_eq!(live.model.calls.len(), 27);
    assert_eq!(live.model.items.len(), whole_problems.model.items.len());
}

/// Live, an open connection's detail is its health report so far, refreshed as frames come;
/// once it ends, the final report.
#[test]
fn open_connections_show_their_health_so_far_when_live() {
    use h2scope::capture::CaptureReader;
    use h2scope::pipeline::Dissector;
    use h2scope::tui::model::{Builder, Model};
    use h2scope::tui::store;

    let detail = |m: &Model| -> String {
        m.conn_detail(0)
            .lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (writer, reader) = store::new();
    let mut builder = Builder::new(writer);
    builder.refresh_open_health(std::time::Duration::ZERO);
    let mut model = Model::new(reader);
    let mut d = Dissector::with_schemas(Config::default(), Schemas::bundled());
    let mut r = CaptureReader::open(&testdata()).unwrap();
    let mut so_far = Vec::new();
    r.for_each_packet(|p| {
        d.packet(p, &mut builder);
        builder.take().into_iter().for_each(|u| model.apply(u));
        if !model.conns.is_empty() {
            so_far.push(detail(&model));
        }
        true
    })
    .unwrap();
    d.finish(&mut builder);
    builder.take().into_iter().for_each(|u| model.apply(u));
    // The report grew while the connection was open: its frame count went up.
    let open: Vec<&String> = so_far.iter().filter(|t| t.contains("still open")).collect();
    assert!(open.len() > 50, "{so_far:?}");
    assert!(open[0] != open[open.len() - 1]);
    // The Watch the client cancelled last waits for an answer that may cross its reset, which
    // does not come: it is held until the connection ends.
    let newest = open[open.len() - 1];
    assert!(
        newest.contains("26 calls") && newest.contains(" → 127.0.0.1:"),
        "{newest}"
    );
    // Ended: the final report.
    let last = detail(&model);
    assert!(
        last.contains("ended: fin") && last.contains("27 calls") && !last.contains("still open"),
        "{last}"
    );
}

/// A TLS capture with its key log: the calls are there, and the connections view says which TLS
/// carried them (the health report in the detail pane too).
#[test]
fn tls_connections_show_their_version() {
    let dir = format!("{}/testdata", env!("CARGO_MANIFEST_DIR"));
    let keys = h2scope::tls::KeyLog::open(std::path::Path::new(&format!("{dir}/grpc-tls.keylog")))
        .unwrap();
    let cfg = Config {
        tls_keys: Some(std::sync::Arc::new(keys)),
        ..Config::default()
    };
    let model = load(&format!("{dir}/grpc-tls.pcap"), &cfg, Schemas::bundled()).unwrap();
    let mut app = App::new(model, "grpc-tls.pcap");
    let s = screen(&app, 160, 40);
    assert!(s.contains("4 calls"), "{s}");
    app.key(Key::Char('c'));
    assert_eq!(app.model.conns[0].tls, "1.3");
    let s = screen(&app, 160, 40);
    assert!(s.contains("tls") && s.contains("1.3"), "{s}");
    assert!(s.contains("over TLS 1.3 TLS_AES_128_GCM_SHA256"), "{s}");
}

/// `/` takes a display filter on the fields of `read`'s call events, those the row keeps and
/// those read back from the store (headers, trailers, authority, bytes...), and shows the calls
/// `read --calls -Y` shows with the same filter; path words and the short forms still work, and
/// a filter on a field calls lack says so.
#[test]
fn the_call_list_takes_display_filters() {
    let mut app = app();
    let shown = |app: &App| -> Vec<(u64, u64)> {
        app.visible()
            .iter()
            .map(|&i| (app.model.calls[i].conn, app.model.calls[i].stream as u64))
            .collect()
    };
    for filter in [
        "grpc_status != 0",
        "path contains Watch or stream == 1",
        "event == call and response_messages >= 1 and duration < 0.01",
        "method == POST and not (conn == 0 and stream > 5)",
        "status == 200 and grpc_status == 0",
        "trailers.grpc-status == 0",
        "response_bytes > 10 and authority contains 127",
        "end == reset or grpc_message",
        "request_headers.te == trailers and end != complete and stream > 1",
        "request_headers[\"user-agent\"] ~ \"^tonic/\" and duration > 0.001",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_h2scope"))
            .args([
                "read",
                "--calls",
                "--format",
                "jsonl",
                "--no-summary",
                "-Y",
                filter,
            ])
            .arg(testdata())
            .output()
            .unwrap();
        let want: Vec<(u64, u64)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["conn"].as_u64().unwrap(), v["stream"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(app.set_filter(filter), None, "{filter}");
        let mut got = shown(&app);
        got.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert!(!want.is_empty() && want.len() < 27, "{filter}: {want:?}");
        assert_eq!(got, want_sorted, "{filter}");
    }
    // Path words, and the short forms, as before.
    assert_eq!(app.set_filter("Watch"), None);
    assert_eq!(app.visible().len(), 1);
    assert_eq!(app.set_filter("status!=0"), None);
    assert_eq!(app.visible().len(), 2);
    assert_eq!(app.set_filter("problem"), None);
    assert_eq!(app.visible().len(), 2);
    // The row's own fields and stored ones together.
    assert_eq!(
        app.set_filter("problem and request_headers.user-agent contains tonic"),
        None
    );
    assert_eq!(app.visible().len(), 2);
    // A field calls do not have: taken as words, and the status line says why.
    app.key(Key::Char('/'));
    for c in "request_header.user-agent contains tonic".chars() {
        app.key(Key::Char(c));
    }
    app.key(Key::Enter);
    assert_eq!(app.visible().len(), 0);
    assert!(
        app.status.contains("no field \"request_header\""),
        "{}",
        app.status
    );
}

/// `t` cycles the time columns through tshark's forms that fit a column: seconds since the
/// first packet, local time of day, UTC time of day, seconds since 1970, and back.
#[test]
fn t_cycles_the_time_columns() {
    let mut app = app();
    // The first call starts at 08:46:01.061503 UTC, its first frame (packet 9) at .061503 too.
    let relative = screen(&app, 160, 40);
    assert!(relative.contains("0.001"), "{relative}");
    app.key(Key::Char('t'));
    assert!(app.status.contains("local time of day"), "{}", app.status);
    app.key(Key::Char('t'));
    assert!(app.status.contains("UTC"), "{}", app.status);
    // Calls to the millisecond, frames to the microsecond (on a screen wide enough for both).
    let utc = screen(&app, 220, 40);
    assert!(utc.contains("08:46:01.061 "), "{utc}");
    assert!(utc.contains("08:46:01.061503"), "{utc}");
    app.key(Key::Char('t'));
    let epoch = screen(&app, 220, 40);
    assert!(epoch.contains("1795337161.061503"), "{epoch}");
    app.key(Key::Char('t'));
    assert!(
        app.status.contains("since the first packet"),
        "{}",
        app.status
    );
    assert!(!screen(&app, 160, 40).contains("1795337161"));
    // It still fits a classic terminal in the widest form.
    app.key(Key::Char('t'));
    app.key(Key::Char('t'));
    let small = screen(&app, 80, 24);
    assert!(small.contains("08:46:01"), "{small}");
}

/// A filter on stored call fields over a long list is scanned in two halves at once: the
/// calls it shows are the same, in order, as on a short list (here the capture's 27 calls
/// replicated on 400 client ports: 10,800 calls).
#[test]
fn a_long_list_is_filtered_on_stored_fields_in_order() {
    use h2scope::capture::{CaptureReader, LinkType, Packet};
    use h2scope::pipeline::Dissector;
    use h2scope::tui::model::{Builder, Model};
    use h2scope::tui::store;

    let mut base = Vec::new();
    let mut r = CaptureReader::open(&testdata()).unwrap();
    r.for_each_packet(|p| {
        base.push((p.ts_ns, p.data.to_vec()));
        true
    })
    .unwrap();
    let (writer, reader) = store::new();
    let mut builder = Builder::new(writer);
    let mut model = Model::new(reader);
    let mut d = Dissector::new(Config::default());
    let copies = 400u16;
    let mut index = 0;
    for k in 0..copies {
        for (ts, data) in &base {
            let mut data = data.clone();
            let sport = u16::from_be_bytes([data[34], data[35]]);
            let at = if sport == 34793 { 36 } else { 34 };
            data[at..at + 2].copy_from_slice(&(1024 + k).to_be_bytes());
            index += 1;
            let p = Packet {
                index,
                // A second apart: each copy's connection (70 ms) ends before the next starts.
                ts_ns: ts + i64::from(k) * 1_000_000_000,
                link: LinkType(1),
                data: &data,
                orig_len: data.len() as u32,
            };
            d.packet(&p, &mut builder);
        }
    }
    d.finish(&mut builder);
    builder.take().into_iter().for_each(|u| model.apply(u));
    let mut app = App::new(model, "replicated");
    assert_eq!(app.model.calls.len(), 27 * copies as usize);
    let mut short = App::new(
        load(&testdata(), &Config::default(), Schemas::bundled()).unwrap(),
        "",
    );
    for filter in [
        "response_headers.grpc-status == 5",
        "end == reset or request_headers.te != trailers",
        "request_bytes > 0 and stream > 10",
    ] {
        assert_eq!(app.set_filter(filter), None, "{filter}");
        assert_eq!(short.set_filter(filter), None, "{filter}");
        let per_copy = short.visible().len();
        assert!(per_copy > 0, "{filter}");
        assert_eq!(app.visible().len(), per_copy * copies as usize, "{filter}");
        assert!(app.visible().windows(2).all(|w| w[0] < w[1]), "{filter}");
        // The same streams in every copy.
        let streams = |a: &App, from: usize, n: usize| -> Vec<u32> {
            a.visible()[from..from + n]
                .iter()
                .map(|&i| a.model.calls[i].stream)
                .collect()
        };
        let want = streams(&short, 0, per_copy);
        for copy in [0, copies as usize / 2, copies as usize - 1] {
            assert_eq!(streams(&app, copy * per_copy, per_copy), want, "{filter}");
        }
    }
}

/// A capture cut short mid-record: the viewer's reading threads show every call read before
/// the cut, and the status line says where the file ends, as Wireshark warns of a capture
/// "cut short in the middle of a packet".
#[test]
fn a_cut_capture_loads_up_to_the_cut_and_says_so() {
    use h2scope::tui::feed::Loader;
    let whole = std::fs::read(testdata()).unwrap();
    let dir = std::env::temp_dir().join(format!("h2scope-tui-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &whole[..whole.len() * 2 / 3]).unwrap();
    let (mut loader, store) = Loader::file(
        cut.to_str().unwrap(),
        &Config::default(),
        Schemas::bundled(),
    )
    .unwrap();
    let mut app = App::new(h2scope::tui::model::Model::new(store), "cut.pcap");
    let start = std::time::Instant::now();
    while !loader.finished() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never finished"
        );
        loader.drain(&mut app, std::time::Duration::from_millis(50));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        app.status
            .contains("warning: the file ends inside the record after record"),
        "{}",
        app.status
    );
    let calls = app.model.calls.len();
    assert!((10..27).contains(&calls), "{calls} calls");
    // The calls read are whole: their details come back from the store.
    assert!(app
        .model
        .call_detail(0)
        .lines
        .iter()
        .any(|l| l.text.contains(":path")));
    drop(loader);
    std::fs::remove_dir_all(&dir).ok();
}

/// A call whose row was made before its path was known (a PRIORITY frame opened it) is
/// checked again against the filter when the path comes, while the call is still in
/// progress, as a live view needs.
#[test]
fn a_path_that_comes_later_is_filtered_as_it_comes() {
    use h2scope::capture::CaptureReader;
    use h2scope::pipeline::Dissector;
    use h2scope::tui::model::{Builder, Model};
    use h2scope::tui::store;

    let frame = common::frame;
    let mut client = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    client.extend(frame(4, 0, 0, &[]));
    // HEADERS: POST, http, :path /svc/Watch, content-type application/grpc.
    let mut block = vec![0x83, 0x86, 0x44, 10];
    block.extend_from_slice(b"/svc/Watch");
    block.extend_from_slice(&[0x5f, 16]);
    block.extend_from_slice(b"application/grpc");
    let segments = vec![
        (true, client),
        (false, frame(4, 0, 0, &[])),
        // PRIORITY for stream 1 before its HEADERS: allowed for an idle stream.
        (true, frame(2, 0, 1, &[0, 0, 0, 0, 15])),
        (true, frame(1, 0x04, 1, &block)),
    ];
    let bytes = common::segments_capture(&segments);
    let dir = std::env::temp_dir().join(format!("h2scope-tui-later-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("later.pcap");
    std::fs::write(&path, bytes).unwrap();
    let mut packets = Vec::new();
    CaptureReader::open(path.to_str().unwrap())
        .unwrap()
        .for_each_packet(|p| {
            packets.push(p.to_owned_packet());
            true
        })
        .unwrap();
    assert_eq!(packets.len(), 6);

    let (writer, reader) = store::new();
    let mut builder = Builder::new(writer);
    let mut app = App::new(Model::new(reader), "later.pcap");
    let mut d = Dissector::new(Config::default());
    let mut feed = |app: &mut App, range: std::ops::Range<usize>| {
        for (i, p) in packets[range.clone()].iter().enumerate() {
            let p = h2scope::capture::Packet {
                index: (range.start + i + 1) as u64,
                ts_ns: p.ts_ns,
                link: p.link,
                data: &p.data,
                orig_len: p.orig_len,
            };
            d.packet(&p, &mut builder);
        }
        app.apply(builder.take());
    };
    // Up to the PRIORITY frame: stream 1 has a row, without a path.
    feed(&mut app, 0..5);
    assert_eq!(app.model.calls.len(), 1);
    assert_eq!(app.model.calls[0].path, "-");
    assert_eq!(app.set_filter("path contains Watch"), None);
    assert!(app.visible().is_empty());
    // The HEADERS: the call is still open, and now shown.
    feed(&mut app, 5..6);
    assert!(app.model.calls[0].open);
    assert_eq!(app.model.calls[0].path, "/svc/Watch");
    assert_eq!(app.visible(), &[0]);
    std::fs::remove_dir_all(&dir).ok();
}

/// A message read without a schema lists its fields as `-V` does, and the hex pane points at
/// each field's own bytes: the tag of the field the line names, and the top-level fields one
/// after the other from the message's first byte to its last.
#[test]
fn hex_pane_points_at_the_fields_of_a_message_without_schema() {
    let file = format!("{}/testdata/grpc-bulk.pcap", env!("CARGO_MANIFEST_DIR"));
    let model = load(&file, &Config::default(), Schemas::bundled()).unwrap();
    let mut app = App::new(model, "grpc-bulk.pcap");
    app.key(Key::Enter);
    while !app.on_message() {
        assert_eq!(app.key(Key::Down), Action::None);
        assert!(
            app.item + 1 < app.items().len(),
            "no message among the frames"
        );
    }
    let detail = app.current();
    let raw = detail.raw.clone().expect("a message has its bytes");
    let first = (detail.lines.iter())
        .position(|l| l.text == "  schema-less fields:")
        .expect("read without a schema")
        + 1;
    let mut next = 0;
    for (k, line) in detail.lines.iter().enumerate().skip(first) {
        let text = line.text.trim_start();
        let indent = line.text.len() - text.len();
        let Some((number, _)) = text.split_once(" (") else {
            continue; // a closing brace
        };
        let number: u64 = number.parse().unwrap();
        let span = line.span.clone().expect("a field line has its bytes");
        // The tag, a varint, names the line's field.
        let (mut tag, mut shift) = (0u64, 0);
        for &b in &raw[span.start..] {
            tag |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        assert_eq!(tag >> 3, number, "{}", line.text);
        if indent == 2 {
            assert_eq!(span.start, next, "{}", line.text);
            next = span.end;
        }
        // The cursor on the line lights its bytes, and the pane's title says which.
        app.focus = Pane::Detail;
        app.detail_line = k;
        let title = format!("bytes {}..{} of {}", span.start, span.end, raw.len());
        assert!(screen(&app, 160, 40).contains(&title), "{title}");
    }
    assert_eq!(next, raw.len(), "the top-level fields cover the message");
}

/// A message decoded with its schema: the line of each of its own keys points at that field's
/// bytes (the health check's `status` is field 1, varint: both bytes of `08 01`).
#[test]
fn hex_pane_points_at_the_fields_of_a_decoded_message() {
    let mut app = app();
    app.key(Key::Enter);
    while !(app.on_message() && app.detail().iter().any(|l| l.contains("\"status\""))) {
        app.key(Key::Down);
        assert!(app.item + 1 < app.items().len(), "no response message");
    }
    let detail = app.current();
    assert_eq!(detail.raw.as_deref(), Some(&[0x08, 0x01][..]));
    let k = (detail.lines.iter())
        .position(|l| l.text == "    \"status\": \"SERVING\"")
        .expect("the response's JSON");
    assert_eq!(detail.lines[k].span, Some(0..2));
    // The braces around it point at nothing.
    assert_eq!(detail.lines[k - 1].span, None);
    app.focus = Pane::Detail;
    app.detail_line = k;
    assert!(screen(&app, 160, 40).contains("bytes 0..2 of 2"));
    assert_eq!(highlighted_hex(&app, 160, 40), "0801..");
}
