//! The real binary in a real terminal, the TUI and the progress line of long runs: tmux runs
//! `h2scope` in a pseudo-terminal, the test types keys and reads the screen back
//! (scripts/install-deps installs tmux).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_h2scope");

fn testdata() -> String {
    format!("{}/testdata/grpc-health.pcap", env!("CARGO_MANIFEST_DIR"))
}

/// One tmux server of our own (its own socket), with one window running a command.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        let found = Command::new("tmux").arg("-V").output().is_ok();
        if !found {
            assert!(
                std::env::var_os("H2SCOPE_REQUIRE_TMUX").is_none(),
                "tmux is required (scripts/install-deps installs Debian's package)"
            );
            eprintln!("tmux not installed: skipping (scripts/install-deps installs it)");
        }
        found
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .env_remove("TMUX")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap()
    }

    /// Starts `command` (a shell command line) in a `w`x`h` terminal in `dir`.
    fn start(name: &str, dir: &Path, command: &str, w: u16, h: u16) -> Tmux {
        let t = Tmux {
            socket: format!("h2scope-{name}-{}", std::process::id()),
        };
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
            "-c",
            dir.to_str().unwrap(),
            command,
        ]);
        assert!(out.status.success(), "{out:?}");
        t
    }

    /// The screen as text; with `escapes`, with its colour and style codes.
    fn screen(&self, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p"];
        if escapes {
            args.push("-e");
        }
        String::from_utf8_lossy(&self.tmux(&args).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let out = self.tmux(&["send-keys", k]);
            assert!(out.status.success(), "{k}: {out:?}");
            // One key at a time, as a person types: each is handled before the next.
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    /// Waits until the screen shows what `want` looks for; fails with the screen if it never
    /// does.
    fn wait_for(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen(false);
            if want(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "waited for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn alive(&self) -> bool {
        self.tmux(&["has-session"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("h2scope-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn browse_filter_inspect_export_and_quit_in_a_terminal() {
    if !Tmux::available() {
        return;
    }
    let dir = temp_dir("tui-term");
    let t = Tmux::start(
        "file",
        &dir,
        &format!("{BIN} tui {}; sleep 30", testdata()),
        140,
        42,
    );
    // The bar counts calls as the file loads, before the first call's detail is drawn: wait
    // for both (under load, the check once came between them).
    let s = t.wait_for("the calls", |s| {
        s.contains("27 calls") && s.contains("/grpc.health.v1.Health/Check")
    });
    assert!(s.contains("/grpc.health.v1.Health/Check"), "{s}");
    // Filter for the Watch call, into its frames: the hex pane points at the frame header.
    t.keys(&["/", "W", "a", "t", "c", "h", "Enter"]);
    let s = t.wait_for("the filter", |s| s.contains("1 calls match"));
    assert!(s.contains("/grpc.health.v1.Health/Watch"), "{s}");
    t.keys(&["Enter"]);
    let s = t.wait_for("the frames", |s| s.contains("bytes 0..9 of"));
    assert!(s.contains("HEADERS frame, stream 53"), "{s}");
    // Into the detail; the cursor's line is the pane's highlighted one and its bytes are named.
    t.keys(&["Enter", "Down", "Down"]);
    let s = t.wait_for("a header's bytes", |s| {
        s.contains(":method: POST") && s.contains(" bytes 9..10 of")
    });
    assert!(s.contains("0000  00 00"), "{s}");
    // Export the call as a HAProxy check: the file equals the CLI's output.
    t.keys(&["Escape", "Escape", "e"]);
    t.wait_for("the export", |s| s.contains("written to"));
    let written = std::fs::read_to_string(dir.join("h2scope-haproxy-0-53.cfg")).unwrap();
    let cli = Command::new(BIN)
        .args(["haproxy", &testdata(), "--call", "0:53"])
        .output()
        .unwrap();
    assert_eq!(written, String::from_utf8(cli.stdout).unwrap());
    // The help lists the keys; q gives the terminal back (the shell's `sleep` runs on, on the
    // normal screen).
    t.keys(&["?"]);
    t.wait_for("the help", |s| {
        s.contains("this help") && s.contains("follow")
    });
    t.keys(&["Escape", "q"]);
    let s = t.wait_for("the terminal back", |s| !s.contains("frames and messages"));
    assert!(!s.contains("27 calls"), "{s}");
    assert!(t.alive());
    std::fs::remove_dir_all(&dir).ok();
}

/// Problem calls are red unless NO_COLOR is set; then they stand out by weight only.
#[test]
fn colours_follow_no_color() {
    if !Tmux::available() {
        return;
    }
    let dir = temp_dir("tui-colour");
    for (env, red) in [("", true), ("NO_COLOR=1", false)] {
        let t = Tmux::start(
            if red { "colour" } else { "nocolour" },
            &dir,
            &format!("env {env} {BIN} tui {}", testdata()),
            140,
            42,
        );
        t.wait_for("the calls", |s| s.contains("5 NOT_FO"));
        let s = t.screen(true);
        let line = s
            .lines()
            .find(|l| l.contains("5 NOT_FO"))
            .unwrap_or_default();
        // A red foreground: SGR 31, or colour 1 of the 256.
        let is_red = ["[31m", ";31m", "38;5;1m"].iter().any(|c| line.contains(c));
        assert_eq!(is_red, red, "{line:?}");
        if !red {
            assert!(line.contains("[1m") || line.contains(";1m"), "{line:?}");
        }
        t.keys(&["q"]);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `tui -i lo`: calls show up while the capture runs, the newest selected (follow is on for
/// live), and `e` exports from what was recorded so far.
#[cfg(feature = "live")]
#[test]
fn live_interface_shows_calls_as_they_happen() {
    if !Tmux::available() {
        return;
    }
    if !common::can_capture_on_lo() {
        return;
    }
    let (rt, addr) = common::health_server();
    let dir = temp_dir("tui-live");
    let recording = dir.join("live.pcapng");
    let t = Tmux::start(
        "live",
        &dir,
        &format!(
            "{BIN} tui -i lo -f 'tcp port {}' -w {}; sleep 30",
            addr.port(),
            recording.display()
        ),
        140,
        42,
    );
    t.wait_for("the capture", |s| s.contains("live on lo"));
    let channel = rt.block_on(async {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    });
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    for n in 1..=3 {
        rt.block_on(client.check(tonic_health::pb::HealthCheckRequest::default()))
            .unwrap();
        // Each call appears while the connection is still open.
        t.wait_for("a call", |s| {
            let ok = s
                .lines()
                .filter(|l| l.contains("│#0 ") && l.contains("/grpc.health") && l.contains("0 OK"))
                .count();
            ok >= n && s.contains(&format!("{n} calls"))
        });
    }
    let s = t.screen(false);
    assert!(s.contains("0 OK") && s.contains("following"), "{s}");
    // The frames of a live call have their bytes too.
    t.keys(&["Enter"]);
    t.wait_for("the hex pane", |s| s.contains("bytes 0..9 of"));
    t.keys(&["Escape"]);
    // Follow keeps the newest call (stream 5) selected: `e` exports it from the recording.
    t.keys(&["e"]);
    t.wait_for("the export", |s| s.contains("written to"));
    let cfg = std::fs::read_to_string(dir.join("h2scope-haproxy-0-5.cfg")).unwrap();
    assert!(cfg.contains("tcp-check send-binary"), "{cfg}");
    t.keys(&["q"]);
    t.wait_for("the terminal back", |s| !s.contains("frames and messages"));
    drop(client);
    let read = Command::new(BIN)
        .args(["read", "-q", recording.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&read.stdout).contains("calls: 3"),
        "{read:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `testdata/grpc-health.pcap` over and over (each copy a second later), as a large file.
fn large_capture(dir: &Path, copies: i64) -> PathBuf {
    use h2scope::capture::CaptureReader;
    use h2scope::output::pcap::PcapWriter;
    let mut packets = Vec::new();
    let mut reader = CaptureReader::open(&testdata()).unwrap();
    reader
        .for_each_packet(|p| {
            packets.push((p.ts_ns, p.link, p.data.to_vec(), p.orig_len));
            true
        })
        .unwrap();
    let path = dir.join("large.pcap");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut w = PcapWriter::new(file, packets[0].1, 65_535).unwrap();
    for copy in 0..copies {
        for (ts, _, data, orig) in &packets {
            w.write_packet(ts + copy * 1_000_000_000, data, *orig)
                .unwrap();
        }
    }
    use std::io::Write;
    w.into_inner().flush().unwrap();
    path
}

/// A long `stats` run shows its progress on the terminal while the report goes to a file, and
/// clears it before it ends; the report is whole. Its input is a pipe, as with `<(…)`.
#[test]
fn progress_on_a_terminal_while_the_report_goes_to_a_file() {
    if !Tmux::available() {
        return;
    }
    let dir = temp_dir("progress");
    let capture = large_capture(&dir, 100);
    // The run is made long by a pause in its input, not by the machine's speed: the capture
    // comes through a pipe that stops for a second and a half after its first 300 kB, longer
    // than the half second before the first progress line.
    let fifo = dir.join("capture.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let log = dir.join("terminal.log");
    let t = Tmux::start(
        "progress",
        &dir,
        &format!(
            "sleep 1; {{ head -c 300000 {cap}; sleep 1.5; tail -c +300001 {cap}; }} > {fifo} & \
             {BIN} stats {fifo} > report.txt; echo stats-done; sleep 30",
            cap = capture.display(),
            fifo = fifo.display(),
        ),
        120,
        10,
    );
    // Everything written to the terminal, the progress lines that are later cleared too.
    let out = t.tmux(&["pipe-pane", "-o", &format!("cat >> {}", log.display())]);
    assert!(out.status.success(), "{out:?}");
    let s = t.wait_for("the end of the run", |s| s.contains("stats-done"));
    assert!(
        !s.contains("packets/s"),
        "progress left on the screen:\n{s}"
    );
    let written = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    // A pipe has no size: the line shows how far and how fast, without a share or an ETA
    // (`progress_line`'s unit test covers a regular file's line).
    assert!(
        written.contains(" MB, ") && written.contains(" MB/s, ") && written.contains("packets/s"),
        "no progress line in what the terminal got:\n{written}"
    );
    assert!(
        !written.contains("ETA") && !written.contains("0 / 0 MB"),
        "a pipe's progress claims a size:\n{written}"
    );
    let report = std::fs::read_to_string(dir.join("report.txt")).unwrap();
    assert!(report.contains("/grpc.health.v1.Health/Check"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
