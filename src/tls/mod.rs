//! TLS decryption with logged secrets: the records of each direction of a TCP connection in,
//! the application data they protect out, for the HTTP/2 stage as if it had been sent in clear.
//!
//! Like Wireshark with `tls.keylog_file`: the handshake is read in clear (TLS 1.2) or decrypted
//! with the handshake secrets (TLS 1.3) to learn where the keys change; nothing is verified
//! beyond each record's authentication tag, which is what tells a right key from a wrong one.

pub mod cipher;
pub mod hello;
mod joined;
pub mod keylog;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::tcp::Dir;
use cipher::{Decryptor, Suite};
pub use joined::looks_joined;
use keylog::Label;
pub use keylog::{KeyLog, KeyLogError};

const CHANGE_CIPHER_SPEC: u8 = 20;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const HEARTBEAT: u8 = 24;

const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const ENCRYPTED_EXTENSIONS: u8 = 8;
const FINISHED: u8 = 20;
const KEY_UPDATE: u8 = 24;

/// Largest record body: 2^14 bytes of plaintext plus what protection may add (RFC 5246 §6.2.3).
const MAX_RECORD: usize = (1 << 14) + 2048;
/// Largest hello kept to be read; hellos with post-quantum key shares are a few kB.
const MAX_HELLO: usize = 1 << 16;
/// Record bytes held while a key log being written lacks the connection's secrets.
const MAX_WAITING: usize = 256 << 10;
/// After a gap, how far the next record is looked for: a few records' worth.
const RESYNC_WINDOW: usize = 4 * (5 + MAX_RECORD);
/// Sequence numbers tried for the first record after a gap. Each try decrypts that record once.
const RESYNC_TRIES: u64 = 4096;

/// Whether a direction's first bytes are a TLS handshake record holding a ClientHello.
pub fn starts_client_hello(b: &[u8]) -> bool {
    matches!(b, [HANDSHAKE, 3, 0..=4, _, _, CLIENT_HELLO, ..])
}

/// Whether `b`, fewer bytes than [`starts_client_hello`] looks at, may be the start of one.
pub fn may_start_client_hello(b: &[u8]) -> bool {
    matches!(
        b,
        [HANDSHAKE]
            | [HANDSHAKE, 3]
            | [HANDSHAKE, 3, 0..=4]
            | [HANDSHAKE, 3, 0..=4, _]
            | [HANDSHAKE, 3, 0..=4, _, _]
    )
}

/// The client random of the ClientHello that `b` starts with, when the hello's start is there.
pub fn client_random(b: &[u8]) -> Option<[u8; 32]> {
    if !starts_client_hello(b) {
        return None;
    }
    // Record header, handshake header, legacy version: the random follows.
    b.get(11..43)?.try_into().ok()
}

/// What a connection's TLS was, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// "TLS 1.3" and the like, once the ServerHello was seen.
    pub version: Option<&'static str>,
    /// The chosen cipher suite's number.
    pub suite: Option<u16>,
    /// Its IANA name when h2scope decrypts it.
    pub suite_name: Option<&'static str>,
    pub sni: Option<String>,
    /// The protocol the server chose (`h2`).
    pub alpn: Option<String>,
    /// Some application data was decrypted.
    pub decrypted: bool,
    /// The capture joined the connection after its handshake.
    pub joined: bool,
}

impl std::fmt::Display for TlsInfo {
    /// "TLS 1.3 TLS_AES_128_GCM_SHA256, ALPN h2, SNI example.com", and whether it was decrypted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.version.unwrap_or(if self.joined {
            "TLS (joined mid-way, no handshake seen)"
        } else {
            "TLS (no ServerHello seen)"
        }))?;
        match (self.suite_name, self.suite) {
            (Some(name), _) => write!(f, " {name}")?,
            (None, Some(id)) => write!(f, " suite 0x{id:04x}")?,
            (None, None) => {}
        }
        if let Some(a) = &self.alpn {
            write!(f, ", ALPN {a}")?;
        }
        if let Some(s) = &self.sni {
            write!(f, ", SNI {s}")?;
        }
        if self.joined && self.version.is_some() {
            f.write_str(", joined mid-way")?;
        }
        if !self.decrypted {
            f.write_str(", not decrypted")?;
        }
        Ok(())
    }
}

impl TlsInfo {
    /// The `tls` object of JSON Lines events.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "version": self.version,
            "cipher_suite": self.suite_name,
            "cipher_suite_id": self.suite,
            "sni": self.sni,
            "alpn": self.alpn,
            "decrypted": self.decrypted,
            "joined_mid_way": self.joined,
        })
    }
}

/// What [`Session::feed`] hands on, with the direction it belongs to: records held for their
/// keys may be handed on while the other direction's bytes are fed.
#[derive(Debug, PartialEq, Eq)]
pub enum Output<'a> {
    /// Decrypted application data, in order.
    Plain(&'a [u8]),
    /// Application data missing: a gap in the capture, after which decryption found its way
    /// again. The count is exact unless the lost TLS 1.3 records were padded.
    Gap(u64),
    /// Why (part of) the connection is not decrypted; said once per cause.
    Problem(String),
}

/// Handshake messages of one direction, joined across records. Only the bodies the keys depend
/// on are kept; the rest (certificates, tickets) are counted past.
#[derive(Default)]
struct Handshakes {
    head: [u8; 4],
    have: usize,
    kind: u8,
    remaining: usize,
    keep: bool,
    body: Vec<u8>,
}

impl Handshakes {
    fn push(&mut self, mut data: &[u8], mut message: impl FnMut(u8, &[u8])) {
        while !data.is_empty() {
            if self.have < 4 {
                let n = (4 - self.have).min(data.len());
                self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
                self.have += n;
                data = &data[n..];
                if self.have < 4 {
                    return;
                }
                self.kind = self.head[0];
                self.remaining =
                    u32::from_be_bytes([0, self.head[1], self.head[2], self.head[3]]) as usize;
                self.keep = matches!(
                    self.kind,
                    CLIENT_HELLO | SERVER_HELLO | ENCRYPTED_EXTENSIONS | KEY_UPDATE
                ) && self.remaining <= MAX_HELLO;
                self.body.clear();
            } else {
                let n = self.remaining.min(data.len());
                if self.keep {
                    self.body.extend_from_slice(&data[..n]);
                }
                self.remaining -= n;
                data = &data[n..];
            }
            if self.have == 4 && self.remaining == 0 {
                self.have = 0;
                message(self.kind, &self.body);
            }
        }
    }
}

#[derive(Default)]
struct Side {
    /// A record not complete yet: header and body so far.
    buf: Vec<u8>,
    handshakes: Handshakes,
    /// Protection of the records now.
    current: Option<Decryptor>,
    /// Protection after the next ChangeCipherSpec (TLS 1.2) or Finished (TLS 1.3).
    next: Option<Decryptor>,
    /// TLS 1.3: the application traffic secret of `next` or `current`, for KeyUpdate.
    secret: Option<Vec<u8>>,
    /// Records from here on are protected (after ChangeCipherSpec, or after the ServerHello in
    /// TLS 1.3), with or without a key for them.
    protected: bool,
    /// The key changes after the record at hand.
    switch: bool,
    /// Decryption of this direction ended.
    stopped: bool,
    /// The records are protected with application keys (not the TLS 1.3 handshake's).
    application: bool,
    /// After a gap: looking for the next record.
    resync: Option<Resync>,
    /// Records decrypted.
    opened: u64,
}

/// The state of a direction after a gap.
#[derive(Default)]
struct Resync {
    /// Record bytes lost: the gap and the part of a record before it.
    lost: u64,
    /// Bytes since the gap, searched for a record that decrypts.
    held: Vec<u8>,
    /// Where in `held` a record may still start.
    next_at: usize,
}

/// Records held until the key log has the connection's secrets. Their bytes count against the
/// dissection's [`Budget`] until they go, however they go.
struct Waiting {
    records: Vec<(Dir, Vec<u8>)>,
    /// The records' bytes.
    bytes: usize,
    /// What they cost against the limits: their bytes and [`RECORD_COST`] each.
    cost: usize,
    budget: Budget,
}

/// What a held record costs besides its bytes: five-byte records must not hold ten times the
/// limit.
const RECORD_COST: usize = 48;

impl Drop for Waiting {
    fn drop(&mut self) {
        self.budget.release_held(self.cost);
    }
}

/// Tries (one block of keystream each) a dissection may spend on the searches for the keys of
/// all its connections joined mid-way: about three seconds.
const MAX_SEARCH: u64 = 1 << 25;
/// Record bytes all the connections of a dissection may hold while their secrets are not
/// logged yet ([`MAX_WAITING`] each).
const MAX_HELD: usize = 64 << 20;

/// What the TLS connections of one dissection may spend together, so that no number of
/// connections makes it search or hold without end: tries searching for the keys of
/// connections joined mid-way, and bytes of records waiting for their secrets.
#[derive(Debug, Clone)]
pub struct Budget {
    search: Arc<AtomicU64>,
    held: Arc<AtomicUsize>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::with(MAX_SEARCH, MAX_HELD)
    }
}

impl Budget {
    fn with(search: u64, held: usize) -> Budget {
        Budget {
            search: Arc::new(AtomicU64::new(search)),
            held: Arc::new(AtomicUsize::new(held)),
        }
    }

    /// Takes up to `want` tries; returns how many were granted.
    fn take_search(&self, want: u64) -> u64 {
        let mut granted = 0;
        let _ = self
            .search
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                granted = want.min(left);
                Some(left - granted)
            });
        granted
    }

    /// Gives back tries a search did not use.
    fn give_back_search(&self, unused: u64) {
        self.search.fetch_add(unused, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn search_left(&self) -> u64 {
        self.search.load(Ordering::Relaxed)
    }

    /// Takes `bytes` of records to hold, if that many are left.
    fn hold(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }

    fn release_held(&self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// One TLS connection, both directions.
pub struct Session {
    keys: Option<Arc<KeyLog>>,
    client: Dir,
    client_random: Option<[u8; 32]>,
    server_random: [u8; 32],
    /// The ServerHello's session ID (TLS 1.2 key logs may be keyed by it).
    session_id: Vec<u8>,
    /// Records waiting for the connection's secrets to reach the key log.
    waiting: Option<Waiting>,
    /// It chose TLS 1.3 (a HelloRetryRequest says so too).
    tls13: bool,
    suite: Option<Suite>,
    info: TlsInfo,
    sides: [Side; 2],
    /// Bytes of records not decrypted (no key, or after a failure).
    undecrypted: u64,
    plain: Vec<u8>,
    /// Joined mid-way: looking for the secrets among the key log's.
    hunt: Option<Box<joined::Hunt>>,
    /// What this connection shares with the others of its dissection.
    budget: Budget,
}

impl Session {
    /// A connection whose `client` direction started with a ClientHello. Without keys it is
    /// only read for what it shows in clear.
    pub fn new(client: Dir, keys: Option<Arc<KeyLog>>, budget: Budget) -> Session {
        Session {
            keys,
            client,
            client_random: None,
            server_random: [0; 32],
            session_id: Vec::new(),
            waiting: None,
            tls13: false,
            suite: None,
            info: TlsInfo::default(),
            sides: Default::default(),
            undecrypted: 0,
            plain: Vec::new(),
            hunt: None,
            budget,
        }
    }

    pub fn info(&self) -> &TlsInfo {
        &self.info
    }

    /// Bytes of records that were not decrypted.
    pub fn undecrypted_bytes(&self) -> u64 {
        self.undecrypted
    }

    /// Counts bytes as not decrypted that were taken for something else before the
    /// connection was recognised as TLS.
    pub fn add_undecrypted(&mut self, bytes: u64) {
        self.undecrypted += bytes;
    }

    /// A direction of a connection joined mid-way, still without its key.
    fn hunting(&self, d: usize) -> bool {
        self.hunt.is_some() && self.sides[d].current.is_none() && !self.sides[d].stopped
    }

    /// Bytes of one direction, in order.
    pub fn feed(&mut self, dir: Dir, mut bytes: &[u8], out: &mut dyn FnMut(Dir, Output<'_>)) {
        let d = dir.index();
        while !bytes.is_empty() {
            if self.sides[d].stopped {
                self.undecrypted += bytes.len() as u64;
                return;
            }
            if self.hunting(d) {
                self.hunt(dir, bytes, out);
                return;
            }
            if self.sides[d].resync.is_some() {
                self.resync(dir, bytes, out);
                return;
            }
            let side = &mut self.sides[d];
            // A whole record in the input is read where it lies.
            if side.buf.is_empty() {
                if let Some(len) = record_len(bytes) {
                    if bytes.len() >= 5 + len {
                        let (rec, rest) = bytes.split_at(5 + len);
                        bytes = rest;
                        self.record(dir, rec, out);
                        continue;
                    }
                }
            }
            let want = if side.buf.len() < 5 {
                5 - side.buf.len()
            } else {
                match record_len(&side.buf) {
                    Some(len) => 5 + len - side.buf.len(),
                    None => 0,
                }
            };
            let n = want.min(bytes.len());
            side.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if side.buf.len() < 5 {
                return;
            }
            let Some(len) = record_len(&side.buf) else {
                let head = hex::encode(&side.buf[..5]);
                side.buf = Vec::new();
                self.stop(
                    dir,
                    format!("not a TLS record (header {head}); decryption of this direction stops"),
                    out,
                );
                continue;
            };
            if side.buf.len() == 5 + len {
                let rec = std::mem::take(&mut side.buf);
                self.record(dir, &rec, out);
                let side = &mut self.sides[d];
                if side.buf.is_empty() {
                    side.buf = rec;
                    side.buf.clear();
                }
            }
        }
    }

    /// A gap in one direction. Once application data flows, the next record that decrypts
    /// is looked for after it (record boundaries and the sequence number are lost with the
    /// bytes); during the handshake, that direction stops.
    pub fn gap(&mut self, dir: Dir, bytes: u64, out: &mut dyn FnMut(Dir, Output<'_>)) {
        self.undecrypted += bytes;
        if self.hunting(dir.index()) {
            self.hunt_gap(dir);
            return;
        }
        let side = &mut self.sides[dir.index()];
        if side.stopped {
            return;
        }
        if side.application && side.current.is_some() {
            let resync = side.resync.get_or_insert_with(Resync::default);
            resync.lost += bytes + side.buf.len() as u64 + resync.held.len() as u64;
            resync.held.clear();
            resync.next_at = 0;
            side.buf.clear();
            return;
        }
        side.buf = Vec::new();
        self.stop(
            dir,
            format!("{bytes} bytes missing from the capture during the TLS handshake; this direction is not decrypted from here on"),
            out,
        );
    }

    /// Bytes after a gap: the first complete record that decrypts under a sequence number a
    /// little past the expected one ends the search.
    fn resync(&mut self, dir: Dir, bytes: &[u8], out: &mut dyn FnMut(Dir, Output<'_>)) {
        let d = dir.index();
        let side = &mut self.sides[d];
        let (Some(resync), Some(dec)) = (side.resync.as_mut(), side.current.as_mut()) else {
            return;
        };
        resync.held.extend_from_slice(bytes);
        let held = &resync.held;
        let mut found = None;
        let mut at = resync.next_at;
        while at + 5 <= held.len() {
            let len = match record_len(&held[at..]) {
                Some(len) if held[at] == APPLICATION_DATA => len,
                _ => {
                    at += 1;
                    continue;
                }
            };
            let Some(rec) = held.get(at..at + 5 + len) else {
                // A header that may be the one: wait for the rest of its record.
                break;
            };
            let header: [u8; 5] = [rec[0], rec[1], rec[2], rec[3], rec[4]];
            let lost_bytes = resync.lost + at as u64;
            // At most one record per smallest record's worth of lost bytes.
            let most = (lost_bytes / dec.overhead() as u64 + 1).min(RESYNC_TRIES);
            let expected = dec.seq();
            for skipped in 0..=most {
                dec.set_seq(expected + skipped);
                if dec.open(&header, &rec[5..], &mut self.plain).is_some() {
                    dec.set_seq(expected + skipped);
                    found = Some((at, lost_bytes, skipped));
                    break;
                }
            }
            if found.is_some() {
                break;
            }
            dec.set_seq(expected);
            at += 1;
        }
        resync.next_at = at;
        let Some((at, lost_bytes, skipped)) = found else {
            if resync.held.len() > RESYNC_WINDOW {
                let lost = resync.lost + resync.held.len() as u64;
                self.undecrypted += resync.held.len() as u64;
                side.resync = None;
                let what = self.side_name(dir);
                self.stop(
                    dir,
                    format!("no {what} TLS record decrypts in the {lost} bytes after a gap; this direction is not decrypted from here on"),
                    out,
                );
            }
            return;
        };
        // Ciphertext lost, less what each skipped record added to its content.
        let plain_lost = lost_bytes.saturating_sub(skipped * dec.overhead() as u64);
        let rest = side.resync.take().map(|r| r.held).unwrap_or_default();
        self.undecrypted += at as u64;
        out(dir, Output::Gap(plain_lost));
        self.feed(dir, &rest[at..], out);
    }

    fn stop(&mut self, dir: Dir, why: String, out: &mut dyn FnMut(Dir, Output<'_>)) {
        let side = &mut self.sides[dir.index()];
        side.stopped = true;
        side.current = None;
        side.next = None;
        side.resync = None;
        // Without a key log nothing was to be decrypted: nothing to say.
        if self.has_keys() {
            out(dir, Output::Problem(why));
        }
    }

    fn side_name(&self, dir: Dir) -> &'static str {
        if dir == self.client {
            "client"
        } else {
            "server"
        }
    }

    fn record(&mut self, dir: Dir, rec: &[u8], out: &mut dyn FnMut(Dir, Output<'_>)) {
        if self.waiting.is_some() && self.wait_for_keys(dir, rec, out) {
            return;
        }
        let d = dir.index();
        let header: [u8; 5] = [rec[0], rec[1], rec[2], rec[3], rec[4]];
        let body = &rec[5..];
        if header[0] == CHANGE_CIPHER_SPEC {
            // In TLS 1.3 it is only there for middleboxes (RFC 8446 Appendix D.4), and may come
            // before the ServerHello (after a HelloRetryRequest, or with early data).
            let server_hello_seen = self.info.version.is_some();
            if server_hello_seen && !self.tls13 {
                let side = &mut self.sides[d];
                side.current = side.next.take();
                side.protected = true;
                side.application = true;
            }
            return;
        }
        let mut plain = std::mem::take(&mut self.plain);
        let side = &mut self.sides[d];
        let (kind, content): (u8, &[u8]) = if let Some(dec) = side.current.as_mut() {
            match dec.open(&header, body, &mut plain) {
                Some(kind) => {
                    side.opened += 1;
                    (kind, &plain)
                }
                None => {
                    self.undecrypted += rec.len() as u64;
                    let n = side.opened + 1;
                    let what = self.side_name(dir);
                    self.stop(
                        dir,
                        format!("{what} TLS record {n} does not decrypt with the logged secret; decryption of this direction stops"),
                        out,
                    );
                    self.plain = plain;
                    return;
                }
            }
        } else if side.protected {
            self.undecrypted += rec.len() as u64;
            self.plain = plain;
            return;
        } else {
            (header[0], body)
        };
        match kind {
            HANDSHAKE => {
                let mut hs = std::mem::take(&mut self.sides[d].handshakes);
                hs.push(content, |kind, body| self.handshake(dir, kind, body, out));
                self.sides[d].handshakes = hs;
            }
            APPLICATION_DATA if self.sides[d].current.is_some() => {
                self.info.decrypted = true;
                out(dir, Output::Plain(content));
            }
            APPLICATION_DATA => self.undecrypted += content.len() as u64,
            // Alerts and heartbeats: nothing to hand on.
            _ => {}
        }
        let side = &mut self.sides[d];
        if side.switch {
            side.switch = false;
            side.current = side.next.take();
            side.application = true;
        }
        self.plain = plain;
    }

    fn handshake(&mut self, dir: Dir, kind: u8, body: &[u8], out: &mut dyn FnMut(Dir, Output<'_>)) {
        let tls13 = self.tls13;
        match kind {
            CLIENT_HELLO if dir == self.client => match hello::client_hello(body) {
                Some(h) => {
                    self.client_random = Some(h.random);
                    self.info.sni = h.sni;
                }
                None => out(dir, Output::Problem("ClientHello could not be read".into())),
            },
            SERVER_HELLO if dir != self.client => match hello::server_hello(body) {
                Some(h) => self.server_hello(h, out),
                None => out(dir, Output::Problem("ServerHello could not be read".into())),
            },
            ENCRYPTED_EXTENSIONS if dir != self.client => {
                if let Some(alpn) = hello::encrypted_extensions_alpn(body) {
                    self.info.alpn = Some(alpn);
                }
            }
            FINISHED if tls13 => self.sides[dir.index()].switch = true,
            KEY_UPDATE if tls13 => {
                let (Some(suite), side) = (self.suite, &mut self.sides[dir.index()]) else {
                    return;
                };
                let next = side.secret.as_ref().and_then(|s| {
                    cipher::expand_label(suite.hash, s, "traffic upd", suite.hash.output_len())
                });
                side.next = next.as_ref().and_then(|s| Decryptor::tls13(&suite, s));
                side.secret = next;
                side.switch = true;
            }
            _ => {}
        }
    }

    fn server_hello(&mut self, h: hello::ServerHello, out: &mut dyn FnMut(Dir, Output<'_>)) {
        self.info.version = Some(hello::version_name(h.version));
        self.info.suite = Some(h.suite);
        self.tls13 = h.version == 0x0304;
        if h.retry {
            // A second ClientHello and ServerHello follow.
            return;
        }
        self.info.alpn = h.alpn;
        let Some(suite) = Suite::by_id(h.suite) else {
            out(self.client.other(), Output::Problem(format!(
                "cipher suite 0x{:04x} is not decrypted by h2scope (AEAD suites of TLS 1.2 and 1.3 only)",
                h.suite
            )));
            self.stop_both();
            return;
        };
        self.info.suite_name = Some(suite.name);
        self.suite = Some(suite);
        if suite.tls13 {
            self.sides[0].protected = true;
            self.sides[1].protected = true;
            if h.version != 0x0304 {
                out(
                    self.client.other(),
                    Output::Problem(format!(
                        "TLS 1.3 cipher suite with version 0x{:04x}",
                        h.version
                    )),
                );
                self.stop_both();
                return;
            }
        }
        self.server_random = h.random;
        self.session_id = h.session_id;
        let Some(keys) = self.keys.clone() else {
            return;
        };
        if !self.install_keys() {
            // Only a file can still receive them; records are not held for nothing.
            if keys.may_grow() {
                self.waiting = Some(Waiting {
                    records: Vec::new(),
                    bytes: 0,
                    cost: 0,
                    budget: self.budget.clone(),
                });
            } else {
                self.no_secrets(out);
            }
        }
    }

    /// Derives the record protection from the key log, if it has the connection's secrets.
    /// Before the ChangeCipherSpec (TLS 1.2) or at once (TLS 1.3, where the next records are
    /// the handshake's).
    fn install_keys(&mut self) -> bool {
        let (Some(keys), Some(cr), Some(suite)) =
            (self.keys.clone(), self.client_random, self.suite)
        else {
            return false;
        };
        let server = self.client.other();
        if suite.tls13 {
            let get = |l| keys.get(l, &cr);
            let secrets = (
                get(Label::ClientHandshake),
                get(Label::ServerHandshake),
                get(Label::ClientTraffic0),
                get(Label::ServerTraffic0),
            );
            let (Some(ch), Some(sh), Some(ca), Some(sa)) = secrets else {
                return false;
            };
            for (dir, hs, app) in [(self.client, ch, ca), (server, sh, sa)] {
                let side = &mut self.sides[dir.index()];
                side.current = Decryptor::tls13(&suite, &hs);
                side.next = Decryptor::tls13(&suite, &app);
                side.secret = Some(app);
            }
        } else {
            let by_session = || {
                (!self.session_id.is_empty())
                    .then(|| keys.get(Label::SessionId, &self.session_id))
                    .flatten()
            };
            let Some(master) = keys.get(Label::ClientRandom, &cr).or_else(by_session) else {
                return false;
            };
            let Some((c, s)) = Decryptor::tls12_pair(&suite, &master, &cr, &self.server_random)
            else {
                return false;
            };
            for (dir, dec) in [(self.client, c), (server, s)] {
                let side = &mut self.sides[dir.index()];
                // After its ChangeCipherSpec a direction's records are protected already.
                if side.protected {
                    side.current = Some(dec);
                    side.application = true;
                } else {
                    side.next = Some(dec);
                }
            }
        }
        true
    }

    /// No secrets yet, in a key log file being written as the capture runs: records that need
    /// them wait (up to [`MAX_WAITING`] bytes per connection), and the file is read again as
    /// each comes. Returns whether `rec` waits.
    fn wait_for_keys(
        &mut self,
        dir: Dir,
        rec: &[u8],
        out: &mut dyn FnMut(Dir, Output<'_>),
    ) -> bool {
        let Some(waiting) = self.waiting.as_mut() else {
            return false;
        };
        let needs_key = self.sides[dir.index()].protected
            && self.sides[dir.index()].current.is_none()
            && rec[0] != CHANGE_CIPHER_SPEC;
        let cost = rec.len() + RECORD_COST;
        if needs_key && waiting.cost + cost <= MAX_WAITING && waiting.budget.hold(cost) {
            waiting.bytes += rec.len();
            waiting.cost += cost;
            waiting.records.push((dir, rec.to_vec()));
        } else if needs_key {
            // Too long without secrets (or too much held by all connections): they are not
            // coming in time.
            let held = self.waiting.take().map_or(0, |w| w.bytes);
            self.undecrypted += (held + rec.len()) as u64;
            self.no_secrets(out);
            return true;
        }
        if !self.install_keys() {
            return needs_key;
        }
        if let Some(waiting) = self.waiting.take() {
            for (d, r) in &waiting.records {
                self.record(*d, r, out);
            }
        }
        needs_key
    }

    /// Says that the key log lacks this connection's secrets (when a key log with secrets was
    /// given), and stops decrypting it.
    fn no_secrets(&mut self, out: &mut dyn FnMut(Dir, Output<'_>)) {
        if self.has_keys() {
            let random = self.client_random.map(hex::encode).unwrap_or_default();
            out(
                self.client,
                Output::Problem(if self.tls13 {
                    format!("no TLS 1.3 traffic secrets in the key log for client random {random}")
                } else {
                    format!(
                    "no master secret in the key log for client random {random} or session ID {}",
                    hex::encode(&self.session_id)
                )
                }),
            );
        }
        self.stop_both();
    }

    /// End of the connection: secrets still missing are reported.
    pub fn finish(&mut self, out: &mut dyn FnMut(Dir, Output<'_>)) {
        self.drop_hunt();
        if let Some(waiting) = self.waiting.take() {
            self.undecrypted += waiting.bytes as u64;
            self.no_secrets(out);
        }
    }

    /// A key log with secrets in it was given (an empty one waits for secrets a capture file
    /// may carry).
    fn has_keys(&self) -> bool {
        self.keys.as_ref().is_some_and(|k| !k.is_empty())
    }

    fn stop_both(&mut self) {
        for side in &mut self.sides {
            side.stopped = true;
            side.current = None;
            side.next = None;
        }
    }
}

/// The body length of the record whose header starts `b`, if it is a TLS record header.
fn record_len(b: &[u8]) -> Option<usize> {
    let [kind, major, _, hi, lo, ..] = *b else {
        return None;
    };
    let len = u16::from_be_bytes([hi, lo]) as usize;
    ((CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&kind) && major == 3 && len <= MAX_RECORD)
        .then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records held for their secrets take from the dissection's budget, and give back when
    /// they go, however they go.
    #[test]
    fn held_records_are_bounded_across_connections() {
        let budget = Budget::with(0, 100);
        let waiting = |cost| Waiting {
            records: Vec::new(),
            bytes: 0,
            cost,
            budget: budget.clone(),
        };
        assert!(budget.hold(60));
        let first = waiting(60);
        assert!(!budget.hold(50), "over the budget");
        assert!(budget.hold(40));
        let second = waiting(40);
        drop(first);
        assert!(budget.hold(60) && !budget.hold(1));
        drop(second);
        drop(waiting(60));
        assert!(budget.hold(100));
    }

    #[test]
    fn handshake_messages_are_joined_across_records_and_big_ones_passed_over() {
        let mut hs = Handshakes::default();
        let mut seen = Vec::new();
        let mut msgs = vec![CLIENT_HELLO, 0, 0, 3, 1, 2, 3];
        msgs.extend([11, 0, 0, 5, 9, 9, 9, 9, 9]); // a certificate, not kept
        msgs.extend([FINISHED, 0, 0, 0]);
        for chunk in msgs.chunks(2) {
            hs.push(chunk, |k, b| seen.push((k, b.to_vec())));
        }
        assert_eq!(
            seen,
            vec![
                (CLIENT_HELLO, vec![1, 2, 3]),
                (11, vec![]),
                (FINISHED, vec![])
            ]
        );
    }

    #[test]
    fn garbage_stops_a_direction_once_without_panicking() {
        let keys = Arc::new(KeyLog::from_text("CLIENT_RANDOM 01 02\n"));
        for (keys, said) in [(Some(keys), 1), (None, 0)] {
            let mut s = Session::new(Dir::Forward, keys, Budget::default());
            let mut problems = 0;
            let mut out = |_: Dir, o: Output<'_>| {
                if let Output::Problem(_) = o {
                    problems += 1
                }
            };
            s.feed(Dir::Forward, b"GET / HTTP/1.1\r\n\r\n", &mut out);
            s.feed(Dir::Forward, &[0x16; 100], &mut out);
            // Said once with a key log; without one there was nothing to decrypt.
            assert_eq!(problems, said);
            assert!(s.undecrypted_bytes() > 0);
        }
    }

    #[test]
    fn records_split_anywhere_are_read_alike() {
        // ClientHello with the client random, in one record, fed in pieces of every size.
        let mut body = vec![3, 3];
        body.extend([5u8; 32]);
        body.extend([0, 0, 2, 0x13, 1, 1, 0, 0, 0]);
        let mut rec = vec![HANDSHAKE, 3, 1];
        rec.extend(((body.len() + 4) as u16).to_be_bytes());
        rec.extend([CLIENT_HELLO, 0, 0, body.len() as u8]);
        rec.extend(&body);
        assert!(starts_client_hello(&rec));
        for step in 1..rec.len() {
            let mut s = Session::new(Dir::Forward, None, Budget::default());
            for chunk in rec.chunks(step) {
                s.feed(Dir::Forward, chunk, &mut |_, _| {});
            }
            assert_eq!(s.client_random, Some([5; 32]), "step {step}");
        }
    }
}
