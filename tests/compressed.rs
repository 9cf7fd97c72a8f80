//! Compressed captures, as `gzip`, `zstd` and `lz4` write them (Wireshark reads all three):
//! read like the plain file, from a path or a pipe; a cut stream keeps what came before it.
//! The tools come from `scripts/install-deps`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_h2scope");

fn testdata(name: &str) -> String {
    format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The compressors, with the flags that make them write to standard output.
const TOOLS: [(&str, &[&str]); 3] = [
    ("gzip", &["-c"]),
    ("zstd", &["-q", "-c"]),
    ("lz4", &["-q", "-c"]),
];

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("h2scope-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// `file` compressed by `tool` into `dir`.
fn compress(tool: &str, flags: &[&str], file: &str, dir: &Path) -> PathBuf {
    let out = Command::new(tool)
        .args(flags)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/install-deps installs it)"));
    assert!(out.status.success(), "{tool} {file}");
    let name = Path::new(file).file_name().unwrap().to_str().unwrap();
    let path = dir.join(format!("{name}.{tool}"));
    std::fs::write(&path, out.stdout).unwrap();
    path
}

fn h2scope(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// `h2scope ARGS` with `bytes` on its standard input, `chunk` bytes at a time (as a pipe from
/// tcpdump delivers them). Written from a thread: the output is read meanwhile, or both pipes
/// would fill.
fn h2scope_fed(args: &[&str], bytes: Vec<u8>, chunk: usize) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for piece in bytes.chunks(chunk) {
            stdin.write_all(piece).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn compressed_captures_read_as_the_plain_ones() {
    let dir = Dir::new("compressed");
    let keylog = testdata("grpc-tls.keylog");
    let captures = [
        (testdata("grpc-health.pcap"), vec![]),
        (testdata("grpc-bulk.pcap"), vec![]),
        (
            testdata("grpc-tls.pcap"),
            vec!["--tls-keylog", keylog.as_str()],
        ),
        (
            common::public_capture("client-grpc-web-proto-http2-send-two-unary.pcapng"),
            vec![],
        ),
    ];
    for (file, extra) in &captures {
        let read = |path: &str| {
            let mut args = vec!["read", "--format", "jsonl", "--no-summary"];
            args.extend(extra);
            args.push(path);
            stdout(&h2scope(&args))
        };
        let plain = read(file);
        assert!(plain.lines().count() > 10, "{file}");
        for (tool, flags) in TOOLS {
            let packed = compress(tool, flags, file, &dir.0);
            let packed = packed.to_str().unwrap();
            assert_eq!(read(packed), plain, "{tool} {file}");

            // From a pipe, a few bytes at a time, as `tcpdump -w - | gzip` would come.
            let mut args = vec!["read", "--format", "jsonl", "--no-summary"];
            args.extend(extra);
            args.push("-");
            let piped = h2scope_fed(&args, std::fs::read(packed).unwrap(), 7);
            assert_eq!(stdout(&piped), plain, "{tool} {file} through stdin");
        }
    }

    // tshark reads the same files: the packet count agrees.
    let packed = compress("gzip", &["-c"], &testdata("grpc-health.pcap"), &dir.0);
    let tshark = Command::new("tshark")
        .args(["-r", packed.to_str().unwrap()])
        .output()
        .expect("tshark (scripts/install-deps installs it)");
    let lines = String::from_utf8_lossy(&tshark.stdout).lines().count();
    let summary = stdout(&h2scope(&["read", "-q", packed.to_str().unwrap()]));
    assert!(
        summary.contains(&format!("packets: {lines} ")),
        "tshark saw {lines} packets: {summary}"
    );
}

#[test]
fn a_cut_stream_shows_what_came_before_it_and_says_so() {
    let dir = Dir::new("compressed-cut");
    // The decompressors hand bytes on once they leave the window that later data may copy
    // from, so what a cut keeps is the stream up to a window before it: 32 KiB for gzip, 512
    // KiB for `zstd -1` (2 MiB by default, which these copies of one connection fit in).
    let file = dir.0.join("bulk8.pcap");
    let made = Command::new("python3")
        .arg(format!(
            "{}/scripts/replicate-capture",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args([&testdata("grpc-bulk.pcap"), file.to_str().unwrap(), "8"])
        .status()
        .unwrap();
    assert!(made.success());
    let file = file.to_str().unwrap();
    let frames_of = |path: &str| -> Vec<String> {
        let out = h2scope(&["read", "--format", "jsonl", "--no-summary", path]);
        stdout(&out)
            .lines()
            .filter(|l| l.starts_with(r#"{"event":"frame""#))
            .map(str::to_string)
            .collect()
    };
    let whole = frames_of(file);
    // lz4's default 4 MiB blocks come whole or not at all.
    for (tool, flags) in [("gzip", &["-c"][..]), ("zstd", &["-1", "-q", "-c"])] {
        let packed = std::fs::read(compress(tool, flags, file, &dir.0)).unwrap();
        let cut = dir.0.join(format!("cut.{tool}"));
        std::fs::write(&cut, &packed[..packed.len() * 2 / 3]).unwrap();
        let cut = cut.to_str().unwrap();

        let frames = frames_of(cut);
        assert!(
            frames.len() > whole.len() / 4 && frames.len() < whole.len(),
            "{tool}: {} of {} frames",
            frames.len(),
            whole.len()
        );
        assert_eq!(frames[..], whole[..frames.len()], "{tool}");

        let summary = stdout(&h2scope(&["read", "-q", cut]));
        assert!(
            summary.contains(&format!("the {tool} stream is cut short, after record")),
            "{tool}: {summary}"
        );
    }
}

#[test]
fn compressed_files_that_hold_no_capture_say_so() {
    let dir = Dir::new("compressed-errors");
    let notes = dir.0.join("notes.txt");
    std::fs::write(&notes, "hello, this is not a capture file\n").unwrap();
    let notes = notes.to_str().unwrap();
    for (tool, flags) in TOOLS {
        let packed = compress(tool, flags, notes, &dir.0);
        let out = h2scope(&["read", packed.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{tool}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "{tool}-compressed, but what it holds is not a pcap or pcapng file"
            )),
            "{tool}: {err}"
        );
    }
    // A gzip header and then garbage: damage before the capture starts.
    let bad = dir.0.join("bad.gz");
    std::fs::write(&bad, b"\x1f\x8b\x08\x00garbage garbage garbage").unwrap();
    let out = h2scope(&["read", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the gzip stream is damaged") && err.contains("nothing to read"),
        "{err}"
    );
}

/// The files of a ring (`capture -w ring.pcapng --ring-size …`) are pcapng sections, so one
/// after another they are one capture: `cat ring_*.pcapng | h2scope read -` follows the
/// connections across files, gzipped or not, as the whole recording does.
#[test]
fn ring_files_one_after_another_read_as_the_whole_capture() {
    use h2scope::capture::CaptureReader;
    use h2scope::output::pcapng::{CaptureFile, Format};
    let dir = Dir::new("ring");
    let file = testdata("grpc-tls.pcap");
    let keylog = testdata("grpc-tls.keylog");
    let mut ring = CaptureFile::create(
        &dir.0.join("ring.pcapng"),
        Format::Pcapng,
        Some(64 << 10),
        100,
        None,
    )
    .unwrap();
    let mut reader = CaptureReader::open(&file).unwrap();
    reader
        .for_each_packet(|p| {
            ring.write_packet(p.link, p.ts_ns, p.data, p.orig_len)
                .unwrap();
            true
        })
        .unwrap();
    ring.flush().unwrap();
    let parts = ring.files().to_vec();
    assert!(parts.len() > 5, "{parts:?}");

    let args = [
        "read",
        "--format",
        "jsonl",
        "--no-summary",
        "--tls-keylog",
        &keylog,
    ];
    let read = |input: Option<Vec<u8>>| match input {
        None => stdout(&h2scope(&[&args[..], &[file.as_str()]].concat())),
        Some(bytes) => stdout(&h2scope_fed(&[&args[..], &["-"]].concat(), bytes, 1 << 16)),
    };
    let whole = read(None);
    assert!(whole.contains("/test.echo.Echo/Unary"));
    let cat: Vec<u8> = parts
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(read(Some(cat)), whole);
    // Each part gzipped on its own: the members follow one another too.
    let cat_gz: Vec<u8> = parts
        .iter()
        .flat_map(|p| {
            let out = Command::new("gzip").arg("-c").arg(p).output().unwrap();
            out.stdout
        })
        .collect();
    assert_eq!(read(Some(cat_gz)), whole);
}

/// `-w` writes gzip, zstd or LZ4 by the file's extension, or as `--compress` says: the real
/// tools decompress each file to exactly the bytes of the plain one, h2scope reads it back the
/// same, and tshark reads the gzip one.
#[test]
fn w_writes_compressed_files() {
    let dir = Dir::new("write-compressed");
    let source = testdata("grpc-tls.pcap");
    let keylog = testdata("grpc-tls.keylog");
    let write = |name: &str, extra: &[&str]| -> PathBuf {
        let path = dir.0.join(name);
        let out = h2scope(
            &[
                &[
                    "read",
                    "--tls-keylog",
                    &keylog,
                    "-w",
                    path.to_str().unwrap(),
                ][..],
                extra,
                &[&source[..]],
            ]
            .concat(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    };
    let plain = std::fs::read(write("plain.pcapng", &[])).unwrap();
    let plain_dissected = stdout(&h2scope(&[
        "read",
        "--format",
        "jsonl",
        "--no-summary",
        dir.0.join("plain.pcapng").to_str().unwrap(),
    ]));
    assert!(
        plain_dissected.contains("\"event\":\"call\""),
        "the secrets went in: it decrypts"
    );
    for (tool, ext, forced) in [
        ("gzip", "gz", "gzip"),
        ("zstd", "zst", "zstd"),
        ("lz4", "lz4", "lz4"),
    ] {
        for (name, extra) in [
            (format!("by-extension.pcapng.{ext}"), vec![]),
            (format!("forced-{ext}.pcapng"), vec!["--compress", forced]),
        ] {
            let path = write(&name, &extra);
            let packed = std::fs::read(&path).unwrap();
            // TLS records hardly compress: the magic number says what the file is.
            let magic: &[u8] = match ext {
                "gz" => &[0x1f, 0x8b],
                "zst" => &[0x28, 0xb5, 0x2f, 0xfd],
                _ => &[0x04, 0x22, 0x4d, 0x18],
            };
            assert!(packed.starts_with(magic), "{name}");
            let unpacked = Command::new(tool)
                .args(["-d", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                unpacked.status.success(),
                "{tool}: {}",
                String::from_utf8_lossy(&unpacked.stderr)
            );
            assert!(
                unpacked.stdout == plain,
                "{name}: {tool} -d gives other bytes"
            );
            let back = stdout(&h2scope(&[
                "read",
                "--format",
                "jsonl",
                "--no-summary",
                path.to_str().unwrap(),
            ]));
            assert_eq!(back, plain_dissected, "{name}");
        }
    }
    // --compress none keeps a .gz name uncompressed.
    let kept = std::fs::read(write("not.pcapng.gz", &["--compress", "none"])).unwrap();
    assert!(kept == plain);
    let gz = dir.0.join("by-extension.pcapng.gz");
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&gz)
        .output()
        .expect("tshark (scripts/install-deps installs it)");
    let lines = String::from_utf8_lossy(&tshark.stdout).lines().count();
    let summary = stdout(&h2scope(&["read", "-q", gz.to_str().unwrap()]));
    assert!(
        lines > 10 && summary.contains(&format!("packets: {lines} ")),
        "tshark saw {lines}: {summary}"
    );
    // The TUI reads its live file back, so it refuses to compress it.
    let out = h2scope(&[
        "tui",
        "-i",
        "lo",
        "-w",
        dir.0.join("live.pcapng.zst").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("uncompressed"));
}
