//! TLS secrets embedded in a capture file written while the traffic flows (`capture -w` with
//! `--tls-keylog`), so that the file decrypts on its own, as after `editcap --inject-secrets`.
//!
//! A program logs a connection's secrets only once its handshake is under way, after the
//! ClientHello has been captured; but a reader (h2scope, or tshark in one pass) must meet them
//! before the ServerHello, where it sets up decryption. So from a ClientHello on, packets are
//! held back from the file until the key log has the secrets of every ClientHello held, and
//! then written behind a Decryption Secrets Block. The wait is bounded in time and bytes: when
//! the secrets do not come, the packets are written as they are, with whatever secrets came.
//! Only the file waits; the dissection shown on screen does not.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::{link, OwnedPacket, Packet};
use crate::output::pcapng::CaptureFile;
use crate::tls::KeyLog;

/// How long packets wait for secrets after the first ClientHello held. Programs log them within
/// a round trip of the ServerHello.
pub const HOLD_TIME: Duration = Duration::from_secs(2);
/// Bytes of packets held at most; past this the wait ends.
pub const HOLD_BYTES: usize = 8 << 20;
/// The key log file is read again at most this often while secrets are awaited.
const RELOAD_EVERY: Duration = Duration::from_millis(10);

/// Writes packets to a [`CaptureFile`], holding them back while the secrets of the TLS
/// connections they start are awaited.
pub struct SecretsEmbedder {
    keys: Arc<KeyLog>,
    held: VecDeque<OwnedPacket>,
    held_bytes: usize,
    /// Client randoms of the ClientHellos among the held packets.
    awaited: Vec<[u8; 32]>,
    since: Option<Instant>,
    reloaded: Option<Instant>,
}

impl SecretsEmbedder {
    pub fn new(keys: Arc<KeyLog>) -> SecretsEmbedder {
        SecretsEmbedder {
            keys,
            held: VecDeque::new(),
            held_bytes: 0,
            awaited: Vec::new(),
            since: None,
            reloaded: None,
        }
    }

    /// Packets held back from the file now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Writes `pkt`, or holds it (and the packets after it) while secrets are awaited.
    pub fn packet(&mut self, file: &mut CaptureFile, pkt: &Packet<'_>) -> io::Result<()> {
        let hello = link::decode(pkt.link, pkt.data)
            .ok()
            .and_then(|seg| crate::tls::client_random(seg.payload));
        if let Some(random) = hello {
            if !self.awaited.contains(&random) {
                self.awaited.push(random);
            }
            self.since.get_or_insert_with(Instant::now);
        }
        if self.awaited.is_empty() {
            return file.write_packet(pkt.link, pkt.ts_ns, pkt.data, pkt.orig_len);
        }
        self.held_bytes += pkt.data.len();
        self.held.push_back(pkt.to_owned_packet());
        self.poll(file)
    }

    /// Writes the held packets once their secrets are in the key log, or once they have waited
    /// long enough. Call it between packets too: the secrets come while the link is quiet.
    pub fn poll(&mut self, file: &mut CaptureFile) -> io::Result<()> {
        if self.awaited.is_empty() {
            return Ok(());
        }
        let waited_out =
            self.since.is_some_and(|t| t.elapsed() >= HOLD_TIME) || self.held_bytes >= HOLD_BYTES;
        if !waited_out {
            if self.reloaded.is_some_and(|t| t.elapsed() < RELOAD_EVERY) {
                return Ok(());
            }
            self.reloaded = Some(Instant::now());
            let _ = self.keys.refresh();
            if !self.awaited.iter().all(|r| self.keys.complete_for(r)) {
                return Ok(());
            }
        }
        self.release(file)
    }

    /// Writes everything held, behind the secrets known for it: at the end of a capture.
    pub fn finish(&mut self, file: &mut CaptureFile) -> io::Result<()> {
        if !self.awaited.is_empty() {
            let _ = self.keys.refresh();
        }
        self.release(file)
    }

    fn release(&mut self, file: &mut CaptureFile) -> io::Result<()> {
        let lines: String = self
            .awaited
            .drain(..)
            .map(|r| self.keys.lines_for(&r))
            .collect();
        self.since = None;
        self.held_bytes = 0;
        if !lines.is_empty() {
            file.write_tls_secrets(lines.as_bytes())?;
        }
        while let Some(p) = self.held.pop_front() {
            file.write_packet(p.link, p.ts_ns, &p.data, p.orig_len)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureReader;
    use crate::output::pcapng::Format;
    use crate::pipeline::{Config, Dissector};
    use std::io::Write;

    fn testdata(name: &str) -> String {
        format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn as_packet(index: usize, p: &OwnedPacket) -> Packet<'_> {
        Packet {
            index: index as u64 + 1,
            ts_ns: p.ts_ns,
            link: p.link,
            data: &p.data,
            orig_len: p.orig_len,
        }
    }

    /// Packets of `path`, kept.
    fn packets(path: &str) -> Vec<OwnedPacket> {
        let mut r = CaptureReader::open(path).unwrap();
        let mut out = Vec::new();
        r.for_each_packet(|p| {
            out.push(p.to_owned_packet());
            true
        })
        .unwrap();
        out
    }

    /// Calls and the TLS figures of a file read with the secrets it carries (or `keys`).
    fn dissect(path: &str, keys: Option<&str>) -> (Vec<String>, u64, u64) {
        let cfg = Config {
            tls_keys: Some(Arc::new(KeyLog::from_text(keys.unwrap_or("")))),
            ..Config::default()
        };
        let mut reader = crate::pipeline::open_capture(path, &cfg).unwrap();
        let mut d = Dissector::new(cfg);
        let mut events = Vec::new();
        reader
            .for_each_packet(|p| {
                d.packet(p, &mut events);
                true
            })
            .unwrap();
        let stats = d.finish(&mut events);
        let calls = events
            .iter()
            .filter_map(|e| match e {
                crate::event::Event::Call(c) => {
                    Some(format!("{:?} {:?}", c.path(), c.grpc_status()))
                }
                _ => None,
            })
            .collect();
        (calls, stats.tls_connections, stats.tls_decrypted)
    }

    /// The shipped TLS capture replayed as if live: the key log file is empty at the
    /// ClientHello and gets the secrets only after the ServerHello has been captured. The file
    /// written decrypts on its own, to the calls the original gives with its key log.
    #[test]
    fn a_file_written_live_carries_the_secrets_logged_after_its_hello() {
        let dir = std::env::temp_dir().join(format!("h2scope-embed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log_path = dir.join("keys.log");
        std::fs::write(&log_path, "").unwrap();
        let secrets = std::fs::read_to_string(testdata("grpc-tls.keylog")).unwrap();
        let keys = Arc::new(KeyLog::open(&log_path).unwrap());
        let out = dir.join("out.pcapng");
        let mut file = CaptureFile::create(&out, Format::Pcapng, None, 1, None).unwrap();
        let mut embed = SecretsEmbedder::new(keys);

        let pkts = packets(&testdata("grpc-tls.pcap"));
        let mut logged = false;
        let mut held_most = 0;
        for (i, record) in pkts.iter().enumerate() {
            embed.packet(&mut file, &as_packet(i, record)).unwrap();
            held_most = held_most.max(embed.held());
            // The client logs its secrets once the server's first flight is in: a few packets
            // after its hello.
            if !logged && embed.held() >= 4 {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log_path)
                    .unwrap();
                f.write_all(secrets.as_bytes()).unwrap();
                logged = true;
                // Read at most every RELOAD_EVERY.
                std::thread::sleep(RELOAD_EVERY);
            }
        }
        embed.finish(&mut file).unwrap();
        file.flush().unwrap();
        assert!(logged && held_most >= 4, "packets were held: {held_most}");
        assert_eq!(embed.held(), 0);
        // Every packet is written, in order.
        let written = packets(out.to_str().unwrap());
        assert_eq!(written.len(), pkts.len());
        assert!(written.iter().zip(&pkts).all(|(a, b)| a.data == b.data));

        let with_log = dissect(&testdata("grpc-tls.pcap"), Some(&secrets));
        let on_its_own = dissect(out.to_str().unwrap(), None);
        assert!(
            !with_log.0.is_empty() && with_log.2 == with_log.1,
            "{with_log:?}"
        );
        assert_eq!(on_its_own, with_log);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Secrets that never come hold the file back for HOLD_TIME at most, and lose nothing.
    #[test]
    fn secrets_that_do_not_come_end_the_wait() {
        let dir = std::env::temp_dir().join(format!("h2scope-embed-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log_path = dir.join("keys.log");
        std::fs::write(&log_path, "").unwrap();
        let out = dir.join("out.pcapng");
        let mut file = CaptureFile::create(&out, Format::Pcapng, None, 1, None).unwrap();
        let mut embed = SecretsEmbedder::new(Arc::new(KeyLog::open(&log_path).unwrap()));
        let pkts = packets(&testdata("grpc-tls.pcap"));
        let feed =
            |embed: &mut SecretsEmbedder, file: &mut CaptureFile, range: std::ops::Range<usize>| {
                for i in range {
                    embed.packet(file, &as_packet(i, &pkts[i])).unwrap();
                }
            };
        feed(&mut embed, &mut file, 0..10);
        assert!(embed.held() > 0);
        std::thread::sleep(HOLD_TIME);
        embed.poll(&mut file).unwrap();
        assert_eq!(embed.held(), 0);
        feed(&mut embed, &mut file, 10..pkts.len());
        embed.finish(&mut file).unwrap();
        file.flush().unwrap();
        assert_eq!(packets(out.to_str().unwrap()).len(), pkts.len());
        std::fs::remove_dir_all(&dir).ok();
    }
}
