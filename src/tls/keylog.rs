//! TLS key log files: the NSS format that `SSLKEYLOGFILE` writes (browsers, curl, Go, rustls,
//! Java agents) and Wireshark's `RSA Session-ID:… Master-Key:…` lines.
//!
//! A key log is read again when a connection asks for a key it does not have yet: programs
//! append to the file as they connect, so a live capture meets connections whose keys were
//! written after the file was first read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a line gives a secret for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// TLS 1.2 master secret, by client random (`CLIENT_RANDOM`).
    ClientRandom,
    /// TLS 1.2 master secret, by session ID (`RSA Session-ID:`).
    SessionId,
    ClientHandshake,
    ServerHandshake,
    ClientTraffic0,
    ServerTraffic0,
}

impl Label {
    fn parse(s: &str) -> Option<Label> {
        Some(match s {
            "CLIENT_RANDOM" => Label::ClientRandom,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => Label::ClientHandshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => Label::ServerHandshake,
            "CLIENT_TRAFFIC_SECRET_0" => Label::ClientTraffic0,
            "SERVER_TRAFFIC_SECRET_0" => Label::ServerTraffic0,
            _ => return None,
        })
    }
}

/// Secrets are at most a SHA-384 output (48 bytes); anything longer is not a key.
const MAX_SECRET: usize = 64;
/// A key log larger than this is not read further (a million connections' worth).
const MAX_FILE: u64 = 512 << 20;
/// Secrets kept at most (a quarter of a million TLS 1.3 connections); a capture may carry
/// secrets too, and memory must not grow with it without end.
const MAX_SECRETS: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KeyLogError {
    #[error("cannot read TLS key log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no TLS secrets (expected lines such as `CLIENT_RANDOM <hex> <hex>`, as SSLKEYLOGFILE writes)")]
    Empty { path: String },
}

#[derive(Default)]
struct Secrets {
    map: HashMap<(Label, Vec<u8>), Vec<u8>>,
    /// A line cut short at the end of what was read, finished by the next read.
    partial: String,
}

impl Secrets {
    /// Text read from the file: its last line may still be being written.
    fn add_from_file(&mut self, text: &str) {
        let mut all = std::mem::take(&mut self.partial);
        all.push_str(text);
        let complete = all.rfind('\n').map_or(0, |i| i + 1);
        self.add_lines(&all[..complete]);
        self.partial = all[complete..].to_string();
    }

    /// Text that is whole (not from the file, whose unfinished line it must not join).
    fn add_lines(&mut self, text: &str) {
        for line in text.lines() {
            self.add_line(line);
        }
    }

    fn add_line(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        if let Some(rest) = line.strip_prefix("RSA Session-ID:") {
            let mut parts = rest.split_whitespace();
            let (Some(id), Some(key)) = (parts.next(), parts.next()) else {
                return;
            };
            if let (Ok(id), Some(Ok(key))) = (
                hex::decode(id),
                key.strip_prefix("Master-Key:").map(hex::decode),
            ) {
                self.insert(Label::SessionId, id, key);
            }
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(label), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let Some(label) = Label::parse(label) else {
            return;
        };
        if let (Ok(id), Ok(secret)) = (hex::decode(id), hex::decode(secret)) {
            self.insert(label, id, secret);
        }
    }

    fn insert(&mut self, label: Label, id: Vec<u8>, secret: Vec<u8>) {
        if id.len() <= 32
            && !secret.is_empty()
            && secret.len() <= MAX_SECRET
            && self.map.len() < MAX_SECRETS
        {
            self.map.insert((label, id), secret);
        }
    }
}

/// A TLS 1.3 application traffic secret from a key log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSecret {
    pub client_random: Vec<u8>,
    /// `CLIENT_TRAFFIC_SECRET_0` (else the server's).
    pub client: bool,
    pub secret: Vec<u8>,
    /// The suite it is used with, once known (a key log does not say).
    pub suite: Option<super::cipher::Suite>,
}

struct Source {
    path: PathBuf,
    /// Bytes of the file read so far.
    offset: u64,
}

/// The secrets of a key log, shared by every connection (and thread) of a run.
pub struct KeyLog {
    inner: Mutex<(Secrets, Option<Source>)>,
}

impl std::fmt::Debug for KeyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        write!(f, "KeyLog({} secrets)", self.len())
    }
}

impl KeyLog {
    /// Reads a key log file; fails when it cannot be read, or holds text but no secret (not a
    /// key log). An empty file is fine: programs append to it as they connect.
    pub fn open(path: &Path) -> Result<KeyLog, KeyLogError> {
        let log = KeyLog {
            inner: Mutex::new((
                Secrets::default(),
                Some(Source {
                    path: path.to_path_buf(),
                    offset: 0,
                }),
            )),
        };
        log.refresh().map_err(|source| KeyLogError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let read = log.lock().1.as_ref().map_or(0, |s| s.offset);
        if log.is_empty() && read > 0 {
            return Err(KeyLogError::Empty {
                path: path.display().to_string(),
            });
        }
        Ok(log)
    }

    /// Secrets given as text (tests, and secrets embedded in a capture).
    pub fn from_text(text: &str) -> KeyLog {
        let mut secrets = Secrets::default();
        secrets.add_lines(text);
        KeyLog {
            inner: Mutex::new((secrets, None)),
        }
    }

    /// Adds secrets given as text, such as a pcapng Decryption Secrets Block.
    pub fn add_text(&self, text: &str) {
        self.lock().0.add_lines(text);
    }

    /// Adds every secret of another key log: several files' key logs used as one.
    pub fn absorb(&self, other: &KeyLog) {
        let theirs = other.lock().0.map.clone();
        let mut mine = self.lock();
        for (k, v) in theirs {
            if mine.0.map.len() >= MAX_SECRETS && !mine.0.map.contains_key(&k) {
                break;
            }
            mine.0.map.insert(k, v);
        }
    }

    /// Read from a file, which may still grow (programs append as they connect).
    pub fn may_grow(&self) -> bool {
        self.lock().1.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().0.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.lock().0.map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Secrets, Option<Source>)> {
        // A thread that panicked while holding the lock left whole entries behind.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what was appended to the file since the last read.
    pub(crate) fn refresh(&self) -> std::io::Result<()> {
        let mut inner = self.lock();
        let (secrets, source) = &mut *inner;
        let Some(source) = source else {
            return Ok(());
        };
        let mut f = File::open(&source.path)?;
        let len = f.metadata()?.len();
        if len < source.offset {
            // Truncated and rewritten: start over.
            source.offset = 0;
            secrets.partial.clear();
        }
        if len == source.offset || source.offset >= MAX_FILE {
            return Ok(());
        }
        f.seek(SeekFrom::Start(source.offset))?;
        let mut buf = Vec::new();
        f.take(MAX_FILE - source.offset).read_to_end(&mut buf)?;
        source.offset += buf.len() as u64;
        secrets.add_from_file(&String::from_utf8_lossy(&buf));
        Ok(())
    }

    /// Every secret known for a client random, as key log lines (to embed in a capture).
    pub fn lines_for(&self, client_random: &[u8]) -> String {
        const LABELS: [(Label, &str); 5] = [
            (Label::ClientRandom, "CLIENT_RANDOM"),
            (Label::ClientHandshake, "CLIENT_HANDSHAKE_TRAFFIC_SECRET"),
            (Label::ServerHandshake, "SERVER_HANDSHAKE_TRAFFIC_SECRET"),
            (Label::ClientTraffic0, "CLIENT_TRAFFIC_SECRET_0"),
            (Label::ServerTraffic0, "SERVER_TRAFFIC_SECRET_0"),
        ];
        let inner = self.lock();
        let random = hex::encode(client_random);
        LABELS
            .iter()
            .filter_map(|(label, name)| {
                let secret = inner.0.map.get(&(*label, client_random.to_vec()))?;
                Some(format!("{name} {random} {}\n", hex::encode(secret)))
            })
            .collect()
    }

    /// Whether every secret a connection needs is known for this client random: TLS 1.2's
    /// master secret, or TLS 1.3's four traffic secrets.
    pub fn complete_for(&self, client_random: &[u8]) -> bool {
        let inner = self.lock();
        let has = |label| inner.0.map.contains_key(&(label, client_random.to_vec()));
        has(Label::ClientRandom)
            || [
                Label::ClientHandshake,
                Label::ServerHandshake,
                Label::ClientTraffic0,
                Label::ServerTraffic0,
            ]
            .into_iter()
            .all(has)
    }

    /// Every TLS 1.3 application traffic secret (`CLIENT_TRAFFIC_SECRET_0`,
    /// `SERVER_TRAFFIC_SECRET_0`) with its client random and whether it is the client's: the
    /// candidates for a connection whose handshake the capture lacks. Reads the file again
    /// first.
    pub fn traffic_secrets(&self) -> Vec<TrafficSecret> {
        let _ = self.refresh();
        let inner = self.lock();
        let mut out: Vec<TrafficSecret> = inner
            .0
            .map
            .iter()
            .filter_map(|((label, id), secret)| {
                let client = match label {
                    Label::ClientTraffic0 => true,
                    Label::ServerTraffic0 => false,
                    _ => return None,
                };
                Some(TrafficSecret {
                    client_random: id.clone(),
                    client,
                    secret: secret.clone(),
                    suite: None,
                })
            })
            .collect();
        // A stable order: the same capture and key log try the same secrets first.
        out.sort_by(|a, b| (&a.client_random, a.client).cmp(&(&b.client_random, b.client)));
        out
    }

    /// The secret for `label` and `id`, reading the file again if it is not known yet.
    pub fn get(&self, label: Label, id: &[u8]) -> Option<Vec<u8>> {
        let key = (label, id.to_vec());
        if let Some(s) = self.lock().0.map.get(&key) {
            return Some(s.clone());
        }
        // A file that went away keeps the secrets read before.
        let _ = self.refresh();
        self.lock().0.map.get(&key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nss_and_session_id_lines_and_skips_the_rest() {
        let log = KeyLog::from_text(
            "# comment\n\
             CLIENT_RANDOM 0102 0a0b\n\
             RSA Session-ID:aabb Master-Key:ccdd\n\
             SERVER_TRAFFIC_SECRET_0 0102 eeff\n\
             EXPORTER_SECRET 0102 1234\n\
             CLIENT_RANDOM zz 00\n\
             CLIENT_RANDOM 0102\n",
        );
        assert_eq!(log.len(), 3);
        assert_eq!(log.get(Label::ClientRandom, &[1, 2]), Some(vec![10, 11]));
        assert_eq!(
            log.get(Label::SessionId, &[0xaa, 0xbb]),
            Some(vec![0xcc, 0xdd])
        );
        assert_eq!(
            log.get(Label::ServerTraffic0, &[1, 2]),
            Some(vec![0xee, 0xff])
        );
        assert_eq!(log.get(Label::ClientTraffic0, &[1, 2]), None);
    }

    #[test]
    fn a_file_is_read_again_for_keys_written_after_it_was_opened() {
        let dir = std::env::temp_dir().join(format!("h2scope-keylog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.log");
        std::fs::write(&path, "CLIENT_RANDOM 01 aa\nCLIENT_RANDOM 02 b").unwrap();
        let log = KeyLog::open(&path).unwrap();
        assert_eq!(log.get(Label::ClientRandom, &[1]), Some(vec![0xaa]));
        // The second line was cut short; the writer finishes it later.
        assert_eq!(log.get(Label::ClientRandom, &[2]), None);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        // Secrets embedded in a capture arrive meanwhile: whole lines, apart from the file's.
        log.add_text("CLIENT_RANDOM 03 cc");
        assert_eq!(log.get(Label::ClientRandom, &[3]), Some(vec![0xcc]));
        std::io::Write::write_all(&mut f, b"b\n").unwrap();
        assert_eq!(log.get(Label::ClientRandom, &[2]), Some(vec![0xbb]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_without_secrets_is_an_error_that_says_what_is_expected() {
        let dir = std::env::temp_dir().join(format!("h2scope-keylog-e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.log");
        std::fs::write(&path, "nothing here\n").unwrap();
        let e = KeyLog::open(&path).err().unwrap().to_string();
        assert!(e.contains("CLIENT_RANDOM"), "{e}");
        assert!(KeyLog::open(&dir.join("missing.log")).is_err());
        // Empty: a key log nothing wrote to yet.
        std::fs::write(&path, "").unwrap();
        assert!(KeyLog::open(&path).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
