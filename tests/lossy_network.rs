//! Real packet loss between a real HTTP/2 client and server: three network namespaces (client,
//! router, server) joined by veth pairs, and a router that drops every 16th of the packets
//! carrying data, each way (nftables). h2scope captures next to the server (needs
//! the `live` feature, root for the namespaces, and nftables: CI has them, scripts/install-deps
//! installs the tools).
//!
//! Next to the server, the two directions show the two faces of loss. The client's bytes were
//! lost before the capture point: they arrive with holes, filled later by its retransmissions.
//! The server's were lost after it: each segment is seen twice, and never a hole. tshark's TCP
//! analysis of the same file must agree on both counts, per side, and the calls must come out
//! whole, every byte reassembled.

#![cfg(feature = "live")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_h2scope");
const SERVER: &str = "10.77.2.2";
const PORT: u16 = 8080;

/// Three namespaces, removed (with their interfaces) when dropped.
struct Lab {
    prefix: String,
}

impl Lab {
    fn ns(&self, which: &str) -> String {
        format!("{}{which}", self.prefix)
    }

    /// The server's end of its link, where the capture listens.
    fn server_link(&self) -> String {
        format!("{}e", self.prefix)
    }

    /// `cmd` run in namespace `which`.
    fn exec(&self, which: &str, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(which), cmd]);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for which in ["c", "r", "s"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(which)])
                .status();
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// client 10.77.1.2 — 10.77.1.1 router 10.77.2.1 — 10.77.2.2 server; the router drops every
/// `one_in`th forwarded packet longer than 100 bytes (the ones with data: the handshake and
/// bare ACKs pass), counted each way on its own. Not at random: with segmentation offload a
/// direction may carry only a few dozen such packets, and a random draw then drops none of
/// them often enough to fail a test about loss (one CI run in a few dozen).
fn build_lab(one_in: u32) -> Result<Lab, String> {
    let lab = Lab {
        prefix: format!("h2l{}", std::process::id() % 100_000),
    };
    let p = &lab.prefix;
    let ip = |args: &[&str]| run(Command::new("ip").args(args));
    for which in ["c", "r", "s"] {
        ip(&["netns", "add", &lab.ns(which)])?;
    }
    ip(&[
        "link",
        "add",
        &format!("{p}a"),
        "type",
        "veth",
        "peer",
        "name",
        &format!("{p}b"),
    ])?;
    ip(&[
        "link",
        "add",
        &format!("{p}d"),
        "type",
        "veth",
        "peer",
        "name",
        &format!("{p}e"),
    ])?;
    let ends = [
        ("a", "c", "10.77.1.2/24"),
        ("b", "r", "10.77.1.1/24"),
        ("d", "r", "10.77.2.1/24"),
        ("e", "s", "10.77.2.2/24"),
    ];
    for (link, which, addr) in ends {
        let (link, ns) = (format!("{p}{link}"), lab.ns(which));
        ip(&["link", "set", &link, "netns", &ns])?;
        ip(&["-n", &ns, "addr", "add", addr, "dev", &link])?;
        ip(&["-n", &ns, "link", "set", &link, "up"])?;
    }
    for which in ["c", "r", "s"] {
        ip(&["-n", &lab.ns(which), "link", "set", "lo", "up"])?;
    }
    ip(&[
        "-n",
        &lab.ns("c"),
        "route",
        "add",
        "default",
        "via",
        "10.77.1.1",
    ])?;
    ip(&[
        "-n",
        &lab.ns("s"),
        "route",
        "add",
        "default",
        "via",
        "10.77.2.1",
    ])?;
    // /proc/sys/net is the namespace's own (sysctl, from procps, may be missing).
    run(lab
        .exec("r", "sh")
        .args(["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]))?;
    let rules = format!(
        "table inet loss {{\n chain forward {{\n  type filter hook forward priority 0;\n  \
         ip saddr 10.77.1.2 ip length > 100 numgen inc mod {one_in} 0 drop\n  \
         ip saddr 10.77.2.2 ip length > 100 numgen inc mod {one_in} 0 drop\n }}\n}}\n"
    );
    let file = std::env::temp_dir().join(format!("h2scope-nft-{}", std::process::id()));
    std::fs::write(&file, rules).map_err(|e| e.to_string())?;
    let loaded = run(lab.exec("r", "nft").arg("-f").arg(&file));
    let _ = std::fs::remove_file(&file);
    loaded?;
    Ok(lab)
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something in the server's namespace listens on `PORT`.
fn wait_listening(lab: &Lab) {
    let start = Instant::now();
    loop {
        let out = lab
            .exec("s", "ss")
            .args(["-Htln", &format!("sport = :{PORT}")])
            .output()
            .unwrap();
        if !out.stdout.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nghttpd not listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The segments tshark flags in `file`, per sender port: with data sent again (or overtaken),
/// and after a hole ("previous segment not captured").
fn tshark_flags(file: &Path) -> Option<(Vec<u16>, Vec<u16>)> {
    let ports = |filter: &str| -> Option<Vec<u16>> {
        let out = common::tshark(file, &["-Y", filter, "-T", "fields", "-e", "tcp.srcport"])?;
        Some(out.lines().map(|l| l.trim().parse().unwrap()).collect())
    };
    let again = ports(
        "tcp.len > 0 && (tcp.analysis.retransmission || tcp.analysis.fast_retransmission \
         || tcp.analysis.spurious_retransmission || tcp.analysis.out_of_order)",
    )?;
    // Also on bare ACKs: h2scope looks at their sequence numbers too.
    let holes = ports("tcp.analysis.lost_segment")?;
    Some((again, holes))
}

fn count(ports: &[u16], port: u16) -> u64 {
    ports.iter().filter(|&&p| p == port).count() as u64
}

#[test]
fn loss_before_and_after_the_capture_point_agrees_with_tshark() {
    let can = Command::new("nft").arg("--version").output().is_ok()
        && Command::new("nghttpd").arg("--version").output().is_ok();
    if !common::needs(can, "H2SCOPE_REQUIRE_NETNS", "nftables and nghttp2") {
        return;
    }
    let lab = match build_lab(16) {
        Ok(lab) => lab,
        Err(e) => {
            assert!(
                std::env::var_os("H2SCOPE_REQUIRE_NETNS").is_none(),
                "network namespaces must work here (root, veth, nftables): {e}"
            );
            eprintln!("no network namespaces here, skipping: {e}");
            return;
        }
    };
    let dir: PathBuf = std::env::temp_dir().join(format!("h2scope-lossy-{}", std::process::id()));
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let sizes = [("one", 1_200_000), ("two", 900_000)];
    for (i, (name, len)) in sizes.iter().enumerate() {
        std::fs::write(www.join(name), common::noise(i as u32 + 3, *len)).unwrap();
    }
    let upload = dir.join("upload");
    std::fs::write(&upload, common::noise(11, 1_000_000)).unwrap();
    let file = dir.join("lossy.pcapng");

    let mut capture = lab
        .exec("s", BIN)
        .args(["capture", "-i", &lab.server_link(), "-q", "-w"])
        .arg(&file)
        .args(["-f", &format!("tcp port {PORT}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(capture.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("capturing on"), "{line}");
    let capture = Reaped(capture);

    let _server = Reaped(
        lab.exec("s", "nghttpd")
            .args(["--no-tls", "-d"])
            .arg(&www)
            .arg(PORT.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(&lab);
    // Each file asked for with the upload as the request's body: data both ways.
    let client = lab
        .exec("c", "nghttp")
        .args(["-n", "-d"])
        .arg(&upload)
        .args(sizes.map(|(name, _)| format!("http://{SERVER}:{PORT}/{name}")))
        .output()
        .unwrap();
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    // The connection's last packets reach the capture before it stops.
    std::thread::sleep(Duration::from_millis(300));
    let mut capture = capture;
    run(Command::new("kill").args(["-INT", &capture.0.id().to_string()])).unwrap();
    let status = capture.0.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(!rest.contains("dropped by the kernel"), "{rest}");

    let out = Command::new(BIN)
        .args(["read", "--format", "jsonl"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    // Every lost byte came again: nothing missing, nothing misread.
    assert_eq!(summary["gaps"], 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "call").collect();
    assert_eq!(calls.len(), sizes.len(), "{calls:#?}");
    for (name, len) in sizes {
        let call = calls
            .iter()
            .find(|c| c["path"] == format!("/{name}"))
            .unwrap_or_else(|| panic!("no call for /{name}: {calls:#?}"));
        assert_eq!(call["end"], "complete", "{call}");
        assert_eq!(call["status"], 200, "{call}");
        assert_eq!(call["request_bytes"], 1_000_000, "{call}");
        assert_eq!(call["response_bytes"], len, "{call}");
    }
    let conns: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "connection")
        .collect();
    assert_eq!(conns.len(), 1, "{conns:#?}");
    let conn = conns[0];
    let client: std::net::SocketAddr = conn["client"].as_str().unwrap().parse().unwrap();
    let tcp = &conn["tcp_analysis"];
    let side = |s: &str, k: &str| tcp[s][k].as_u64().unwrap();
    // Lost before the capture point: holes, then the bytes again.
    assert!(side("client", "holes") > 0, "{tcp}");
    assert!(
        side("client", "retransmitted_segments") >= side("client", "holes"),
        "{tcp}"
    );
    // Lost after it: seen twice, never missing.
    assert_eq!(side("server", "holes"), 0, "{tcp}");
    assert!(side("server", "retransmitted_segments") > 0, "{tcp}");

    if let Some((again, holes)) = tshark_flags(&file) {
        for (s, port) in [("client", client.port()), ("server", PORT)] {
            assert_eq!(
                (side(s, "retransmitted_segments"), side(s, "holes")),
                (count(&again, port), count(&holes, port)),
                "{s}'s segments sent again and holes against tshark's: {tcp}"
            );
        }
    }
    // The text's line under the connection's end tells both sides' trouble.
    let text = Command::new(BIN).arg("read").arg(&file).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    let tcp_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("TCP: client "))
        .unwrap_or_else(|| panic!("no TCP line: {text}"));
    let expected = format!(
        "client {} sent again, {} holes",
        side("client", "retransmitted_segments"),
        side("client", "holes")
    );
    assert!(tcp_line.contains(&expected), "{tcp_line}");
    assert!(
        tcp_line.contains(&format!(
            "; server {} sent again",
            side("server", "retransmitted_segments")
        )),
        "{tcp_line}"
    );
    // health says which side's bytes were lost where.
    let health = Command::new(BIN).arg("health").arg(&file).output().unwrap();
    let health = String::from_utf8(health.stdout).unwrap();
    let line = |who: &str| {
        health
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{who} TCP:")))
            .unwrap_or_else(|| panic!("no {who} TCP line: {health}"))
            .to_string()
    };
    assert!(
        line("client").contains("lost before the capture point"),
        "{health}"
    );
    assert!(
        line("server").contains("lost past the capture point"),
        "{health}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(lab);
}
