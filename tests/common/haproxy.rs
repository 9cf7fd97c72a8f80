//! A real HAProxy for the tests (Debian's `haproxy`, installed by `scripts/install-deps`): started
//! on a config of exported backends, asked over its stats socket how each server stands.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_h2scope");

pub fn h2scope(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// `h2scope haproxy` on `capture`: the backend section it writes, checking every 300 ms.
pub fn export(
    dir: &Path,
    capture: &Path,
    backend: &str,
    server: SocketAddr,
    extra: &[&str],
) -> String {
    let out = dir.join(format!("{backend}.cfg"));
    let server = server.to_string();
    let mut args = vec![
        "haproxy",
        capture.to_str().unwrap(),
        "--backend",
        backend,
        "--server-name",
        "s1",
        "--server",
        &server,
        "--inter",
        "300",
        "--rise",
        "2",
        "--fall",
        "2",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = h2scope(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(out).unwrap()
}

pub struct Haproxy {
    child: Child,
    socket: PathBuf,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    pub fn start(dir: &Path, sections: &[String]) -> Haproxy {
        let socket = dir.join("stats.sock");
        let cfg = format!(
            "global\n    stats socket {} mode 600 level admin\n\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n    timeout check 2s\n\n{}",
            socket.display(),
            sections.join("\n")
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, &cfg).unwrap();
        let check = Command::new("haproxy")
            .args(["-c", "-f", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy rejects the config:\n{cfg}\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("haproxy")
            .args(["-db", "-f", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "haproxy did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Haproxy { child, socket }
    }

    /// `backend -> (status, last check duration in ms)` from `show stat`.
    pub fn servers(&self) -> Vec<(String, String, i64)> {
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(&self.socket) else {
            return Vec::new();
        };
        s.write_all(b"show stat\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let mut lines = out.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let (px, sv, status, dur) = (
            col("pxname"),
            col("svname"),
            col("status"),
            col("check_duration"),
        );
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > dur && f[sv] == "s1")
            .map(|f| {
                (
                    f[px].to_string(),
                    f[status].to_string(),
                    f[dur].parse().unwrap_or(-1),
                )
            })
            .collect()
    }

    pub fn status(&self, backend: &str) -> String {
        self.servers()
            .into_iter()
            .find(|(b, _, _)| b == backend)
            .map(|(_, s, _)| s)
            .unwrap_or_default()
    }

    /// Waits until every backend listed has the status; returns how long it took.
    pub fn wait_for(&self, backends: &[&str], want: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if backends.iter().all(|b| self.status(b).starts_with(want)) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "waiting for {want}: {:?}",
                self.servers()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether haproxy is here; under `H2SCOPE_REQUIRE_HAPROXY` (CI) it must be.
pub fn haproxy_available() -> bool {
    let found = Command::new("haproxy").arg("-v").output().is_ok();
    super::needs(found, "H2SCOPE_REQUIRE_HAPROXY", "haproxy")
}
