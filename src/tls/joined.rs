//! TLS connections the capture joined mid-way, after their handshake: long-lived gRPC channels
//! outlive the capture's start. Without the hellos nothing says which secrets are the
//! connection's, but TLS 1.3 needs nothing else: its application traffic secrets give the keys
//! directly. So every `CLIENT_TRAFFIC_SECRET_0` and `SERVER_TRAFFIC_SECRET_0` of the key log is
//! tried on the first whole record of each direction, under each sequence number in turn, until
//! one opens it. A sequence number costs one block of keystream (the record's last byte must be
//! a content type) before a whole decryption is tried.
//!
//! TLS 1.2 derives its keys from both hellos' randoms: a connection joined mid-way cannot be
//! decrypted, as in Wireshark. A key change (KeyUpdate) before the capture started means the
//! logged secret no longer applies either.

use std::sync::Arc;

use super::cipher::{expand_label, Decryptor, Suite};
use super::keylog::{KeyLog, TrafficSecret};
use super::{record_len, Budget, Output, Session, APPLICATION_DATA, RESYNC_WINDOW};
use crate::tcp::Dir;

/// Sequence numbers tried at most per secret: a direction joined after a million records is
/// not searched further.
const MAX_SEQ: u64 = 1 << 20;
/// Key updates followed from each logged secret.
const MAX_UPDATES: usize = 3;
/// Keystream blocks tried at most per search (at most two per direction): with many secrets in
/// the key log, each is searched less deep. A few tenths of a second; little under the fuzzer,
/// which would otherwise spend its time there.
const BUDGET: u64 = if cfg!(fuzzing) { 1 << 12 } else { 1 << 21 };
/// Tries each search makes even when the dissection's [`Budget`] is spent: enough for a
/// connection joined early.
const FLOOR: u64 = 1 << 12;

/// Keys tried at most per search: a key log of many TLS 1.3 connections is searched in part
/// (about 250 of them with two suites each; fewer sequence numbers each as they grow).
const MAX_CANDIDATES: usize = 2048;

/// A key that opened a record: its secret (with its suite), and the record's sequence number.
struct Found {
    secret: TrafficSecret,
    dec: Decryptor,
    seq: u64,
}

/// The search for a joined connection's secrets.
#[derive(Default)]
pub(super) struct Hunt {
    /// Bytes of each direction held until a whole record shows where records start.
    held: [Vec<u8>; 2],
    /// The client random of the secret that opened one direction: the other tries its pair.
    found: Option<Vec<u8>>,
}

/// A record whose boundaries are certain enough to spend the search on: an application data
/// header, its whole body, then another record header or the end of what arrived.
fn next_record(held: &[u8]) -> Option<(usize, usize)> {
    let mut at = 0;
    while at + 5 <= held.len() {
        if held[at] == APPLICATION_DATA {
            if let Some(len) = record_len(&held[at..]) {
                let end = at + 5 + len;
                if end == held.len()
                    || (end + 5 <= held.len() && record_len(&held[end..]).is_some())
                {
                    return Some((at, end));
                }
            }
        }
        at += 1;
    }
    None
}

/// Whether a connection whose start the capture lacks is carrying TLS records: its bytes begin
/// with a record header (the end of a handshake, or application data), or hold two
/// application data records in a row.
pub fn looks_joined(bytes: &[u8]) -> bool {
    let starts = record_len(bytes).is_some() && matches!(bytes[1..3], [3, 1..=3]);
    starts || next_record(bytes).is_some()
}

/// The TLS 1.3 suites a secret of this length may belong to.
fn suites_for(secret: &[u8]) -> impl Iterator<Item = Suite> {
    let ids: &[u16] = match secret.len() {
        32 => &[0x1301, 0x1303],
        48 => &[0x1302],
        _ => &[],
    };
    ids.iter().filter_map(|&id| Suite::by_id(id))
}

impl Session {
    /// A connection whose handshake the capture lacks, first seen in direction `first`. Its
    /// client is known once a secret opens a record.
    pub fn joined(first: Dir, keys: Option<Arc<KeyLog>>, budget: Budget) -> Session {
        let mut s = Session::new(first, keys, budget);
        s.info.joined = true;
        if s.has_keys() {
            s.hunt = Some(Box::default());
        } else {
            s.stop_both();
        }
        s
    }

    /// Bytes of a direction still looking for its key.
    pub(super) fn hunt(&mut self, dir: Dir, bytes: &[u8], out: &mut dyn FnMut(Dir, Output<'_>)) {
        if let Some(hunt) = self.hunt.as_mut() {
            hunt.held[dir.index()].extend_from_slice(bytes);
            self.hunt_step(dir, out);
        }
    }

    /// Searches once a whole record is held.
    fn hunt_step(&mut self, dir: Dir, out: &mut dyn FnMut(Dir, Output<'_>)) {
        let d = dir.index();
        let Some(hunt) = self.hunt.as_mut() else {
            return;
        };
        let Some((at, end)) = next_record(&hunt.held[d]) else {
            if hunt.held[d].len() > RESYNC_WINDOW {
                self.undecrypted += hunt.held[d].len() as u64;
                hunt.held[d] = Vec::new();
                self.give_up(
                    dir,
                    "no TLS record found where one was expected".into(),
                    out,
                );
            }
            return;
        };
        // The whole records from there, back to back. The search is made on the smallest
        // with a record on each side (a wrong number that passes the content-type test costs
        // a whole decryption), and one of those must pass the test too under its number.
        let held = &hunt.held[d];
        let mut chain = vec![(at, end)];
        while let Some(&(_, from)) = chain.last() {
            match record_len(&held[from..]) {
                Some(len) if from + 5 + len <= held.len() => chain.push((from, from + 5 + len)),
                _ => break,
            }
        }
        let held = std::mem::take(&mut hunt.held[d]);
        self.undecrypted += at as u64;
        if chain
            .iter()
            .all(|&(a, b)| b - a >= 13 && held[a + 5..a + 9] == [0; 4])
        {
            // Bodies that start with a small counter: TLS 1.2's explicit GCM nonces.
            self.undecrypted += (held.len() - at) as u64;
            let why = "TLS 1.2 connection joined mid-way (its records carry GCM nonces): it cannot be decrypted without its handshake, whose randoms its keys are made of".into();
            self.give_up(dir, why, out);
            return;
        }
        let interior = 1..chain.len().saturating_sub(1);
        let probe = if interior.is_empty() {
            0..chain.len()
        } else {
            interior
        }
        .min_by_key(|&i| chain[i].1 - chain[i].0)
        .unwrap_or(0);
        // Either neighbour: a key change (KeyUpdate) may lie between the probe and one of them.
        let neighbours: Vec<(&[u8], i64)> = [(probe.checked_sub(1), -1), (Some(probe + 1), 1)]
            .into_iter()
            .filter_map(|(i, off)| chain.get(i?).map(|&(a, b)| (&held[a..b], off)))
            .collect();
        let (a, b) = chain[probe];
        // With a single neighbour, a key change between them fails the right number: then the
        // search is made again without it, at the price of more whole decryptions.
        // The keys are derived once for both searches.
        let mut candidates = self.candidates(dir);
        let found = match self.search(dir, &mut candidates, &held[a..b], &neighbours) {
            Err(_) if neighbours.len() == 1 => self.search(dir, &mut candidates, &held[a..b], &[]),
            other => other,
        };
        let Found {
            secret,
            mut dec,
            seq,
        } = match found {
            Ok(found) => found,
            Err(why) => {
                self.undecrypted += (held.len() - at) as u64;
                self.give_up(dir, why, out);
                return;
            }
        };
        let Some(suite) = secret.suite else {
            return;
        };
        // The direction is set up as if its handshake had been read, and its records go the
        // usual way (a KeyUpdate among them is followed). They start at the first record of
        // the chain if it opens under its number; the key may have changed after it, so else
        // at the one searched with.
        if secret.client {
            self.client = dir;
        } else {
            self.client = dir.other();
        }
        self.tls13 = true;
        self.suite = Some(suite);
        self.info.version = Some("TLS 1.3");
        self.info.suite = Some(suite.id);
        self.info.suite_name = Some(suite.name);
        let mut start = (a, seq);
        if let Some(first) = seq.checked_sub(probe as u64).filter(|_| probe > 0) {
            let (a0, b0) = chain[0];
            let header: [u8; 5] = held[a0..a0 + 5].try_into().unwrap_or_default();
            dec.set_seq(first);
            if dec
                .open(&header, &held[a0 + 5..b0], &mut Vec::new())
                .is_some()
            {
                start = (a0, first);
            }
        }
        let (from, seq) = start;
        dec.set_seq(seq);
        self.undecrypted += (from - at) as u64;
        let side = &mut self.sides[d];
        side.current = Some(dec);
        side.secret = Some(secret.secret);
        side.protected = true;
        side.application = true;
        let other = &self.sides[dir.other().index()];
        let other_waits = other.current.is_none() && !other.stopped;
        if let Some(hunt) = self.hunt.as_mut() {
            hunt.found = Some(secret.client_random);
        }
        if !other_waits {
            self.hunt = None;
        }
        self.feed(dir, &held[from..], out);
        // The other direction's held bytes may hold its records already.
        if other_waits {
            self.hunt_step(dir.other(), out);
        }
    }

    /// A gap while looking: what was held no longer ends where a record does.
    pub(super) fn hunt_gap(&mut self, dir: Dir) {
        if let Some(hunt) = self.hunt.as_mut() {
            self.undecrypted += hunt.held[dir.index()].len() as u64;
            hunt.held[dir.index()].clear();
        }
    }

    /// The end of the connection (or of the search): what is still held is not decrypted.
    pub(super) fn drop_hunt(&mut self) {
        if let Some(hunt) = self.hunt.take() {
            self.undecrypted += (hunt.held[0].len() + hunt.held[1].len()) as u64;
        }
    }

    /// The key that opens `rec`, or why none does. Numbers are tried in growing ranges across
    /// all candidates, so a connection joined early is found early whatever their number.
    fn search(
        &mut self,
        dir: Dir,
        candidates: &mut Vec<(TrafficSecret, Decryptor)>,
        rec: &[u8],
        neighbours: &[(&[u8], i64)],
    ) -> Result<Found, String> {
        let paired = self.hunt.as_ref().is_some_and(|h| h.found.is_some());
        let side = if self.client == dir {
            "client"
        } else {
            "server"
        };
        if candidates.is_empty() {
            return Err(if paired {
                format!("TLS connection joined mid-way: the key log lacks the {side} secret paired with the one that decrypts the other direction")
            } else {
                "TLS connection joined mid-way: without its handshake only TLS 1.3 traffic secrets (CLIENT_TRAFFIC_SECRET_0, SERVER_TRAFFIC_SECRET_0) can decrypt it, and the key log has none".into()
            });
        }
        let header: [u8; 5] = rec[..5].try_into().unwrap_or_default();
        let body = &rec[5..];
        let n = candidates.len() as u64;
        // The dissection's budget, once spent, still leaves each search a shallow look.
        let budget = self.budget.clone();
        let granted = budget.take_search(BUDGET);
        let shallow = granted < BUDGET;
        let deepest = (granted.max(FLOOR) / n).min(MAX_SEQ);
        let mut tried = 0u64;
        let give_back = |tried: u64| budget.give_back_search(granted.saturating_sub(tried));
        let mut plain = Vec::new();
        let mut from = 0u64;
        let mut to = deepest.min(256);
        while from < to {
            for i in 0..candidates.len() {
                let dec = &mut candidates[i].1;
                tried += to - from;
                for seq in from..to {
                    // The last byte of an unpadded record's plaintext is its content type:
                    // application data, or a handshake message (a ticket, a KeyUpdate), or
                    // an alert. Padding, which would end it in zeros, is rare enough to miss.
                    let passes = |rec: &[u8], seq: u64| {
                        matches!(dec.peek_last(seq, &rec[5..]), Some(21..=23))
                    };
                    let neighbour_passes = neighbours.is_empty()
                        || neighbours.iter().any(|&(r, off)| {
                            seq.checked_add_signed(off).is_some_and(|s| passes(r, s))
                        });
                    if !passes(rec, seq) || !neighbour_passes {
                        continue;
                    }
                    dec.set_seq(seq);
                    if dec.open(&header, body, &mut plain).is_some() {
                        dec.set_seq(seq);
                        give_back(tried);
                        let (secret, dec) = candidates.swap_remove(i);
                        return Ok(Found { secret, dec, seq });
                    }
                }
            }
            from = to;
            to = (to * 8).min(deepest);
        }
        give_back(tried);
        let depth = if shallow {
            format!(
                "{deepest} records (the budget for such searches is spent, so it looked less deep)"
            )
        } else {
            format!("{deepest} records")
        };
        Err(if paired {
            format!("TLS connection joined mid-way: the {side} direction does not decrypt with the secret paired with the one that decrypts the other (within its first {depth})")
        } else {
            let secrets: std::collections::HashSet<_> = candidates
                .iter()
                .map(|(t, _)| (&t.client_random, t.client))
                .collect();
            format!(
                "TLS connection joined mid-way: none of the key log's {} TLS 1.3 traffic secrets decrypts it within its first {depth} (a TLS 1.2 connection cannot be decrypted without its handshake)",
                secrets.len()
            )
        })
    }

    /// The keys to try on a direction: every TLS 1.3 traffic secret of the key log (or, once
    /// the other direction opened, the one paired with its secret), in each suite its length
    /// allows, and the KeyUpdates made of it.
    fn candidates(&self, dir: Dir) -> Vec<(TrafficSecret, Decryptor)> {
        let Some(keys) = &self.keys else {
            return Vec::new();
        };
        let found = self.hunt.as_ref().and_then(|h| h.found.as_ref());
        let mut secrets = keys.traffic_secrets();
        if let Some(random) = found {
            let client = self.client == dir;
            secrets.retain(|t| t.client_random == *random && t.client == client);
        }
        let mut out = Vec::new();
        for t in secrets {
            let suites: Vec<Suite> = match (found, self.suite) {
                (Some(_), Some(s)) => vec![s],
                _ => suites_for(&t.secret).collect(),
            };
            for suite in suites {
                // The logged secret, and those KeyUpdates made of it since (RFC 8446 §7.2):
                // a peer asked to update answers with its own update, so long connections
                // that updated once have often done so both ways.
                let mut secret = t.secret.clone();
                for _ in 0..=MAX_UPDATES {
                    if out.len() >= MAX_CANDIDATES {
                        return out;
                    }
                    if let Some(dec) = Decryptor::tls13(&suite, &secret) {
                        let t = TrafficSecret {
                            secret: secret.clone(),
                            suite: Some(suite),
                            ..t.clone()
                        };
                        out.push((t, dec));
                    }
                    let hash = suite.hash;
                    match expand_label(hash, &secret, "traffic upd", hash.output_len()) {
                        Some(next) => secret = next,
                        None => break,
                    }
                }
            }
        }
        out
    }

    /// This direction will not be decrypted; nor will the other if it has no key either (its
    /// secrets would have been the pair of this one's).
    fn give_up(&mut self, dir: Dir, why: String, out: &mut dyn FnMut(Dir, Output<'_>)) {
        let other = dir.other().index();
        let other_open = self.sides[other].current.is_some();
        self.stop(dir, why, out);
        if !other_open {
            self.drop_hunt();
            self.stop_both();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::cipher::expand_label;
    use aes_gcm::aead::{AeadInPlace, KeyInit};

    const RANDOM: [u8; 32] = [5; 32];

    fn secret(client: bool) -> Vec<u8> {
        vec![if client { 0x11 } else { 0x22 }; 32]
    }

    fn key_log() -> Arc<KeyLog> {
        let r = hex::encode(RANDOM);
        Arc::new(KeyLog::from_text(&format!(
            "CLIENT_TRAFFIC_SECRET_0 {r} {}\nSERVER_TRAFFIC_SECRET_0 {r} {}\n",
            hex::encode(secret(true)),
            hex::encode(secret(false))
        )))
    }

    /// Application data records `from..to` of a direction, as its TLS 1.3 AES-128-GCM
    /// protection under the logged secret makes them, back to back.
    fn records(client: bool, from: u64, to: u64) -> Vec<u8> {
        let suite = Suite::by_id(0x1301).unwrap();
        let s = secret(client);
        let key = expand_label(suite.hash, &s, "key", 16).unwrap();
        let iv = expand_label(suite.hash, &s, "iv", 12).unwrap();
        let aead = aes_gcm::Aes128Gcm::new_from_slice(&key).unwrap();
        let mut out = Vec::new();
        for seq in from..to {
            let mut nonce = [0u8; 12];
            nonce.copy_from_slice(&iv);
            for (n, b) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                *n ^= b;
            }
            let mut body =
                format!("{} record {seq}", if client { "client" } else { "server" }).into_bytes();
            body.push(APPLICATION_DATA);
            let len = (body.len() + 16) as u16;
            let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
            aead.encrypt_in_place(aes_gcm::Nonce::from_slice(&nonce), &header, &mut body)
                .unwrap();
            out.extend(header);
            out.extend(body);
        }
        out
    }

    fn run(session: &mut Session, dir: Dir, bytes: &[u8]) -> (Vec<String>, Vec<String>) {
        let (mut plain, mut problems) = (Vec::new(), Vec::new());
        session.feed(dir, bytes, &mut |_, out| match out {
            Output::Plain(p) => plain.push(String::from_utf8_lossy(p).into_owned()),
            Output::Problem(why) => problems.push(why),
            Output::Gap(_) => {}
        });
        (plain, problems)
    }

    /// Records 1000 on of each side, the server's seen first: the server's secret is found by
    /// trial, the client's as its pair, and both directions read from the first whole record.
    #[test]
    fn both_directions_are_found_after_records_missed() {
        let mut s = Session::joined(Dir::Forward, Some(key_log()), Budget::default());
        let (plain, problems) = run(&mut s, Dir::Forward, &records(false, 1000, 1004));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            plain.first().map(String::as_str),
            Some("server record 1000")
        );
        assert_eq!(plain.len(), 4);
        let (plain, problems) = run(&mut s, Dir::Reverse, &records(true, 1000, 1003));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            plain,
            [
                "client record 1000",
                "client record 1001",
                "client record 1002"
            ]
        );
        assert_eq!(s.client, Dir::Reverse);
        assert!(s.info().decrypted && s.info().joined);
        assert_eq!(s.info().suite_name, Some("TLS_AES_128_GCM_SHA256"));
    }

    /// A spent budget still looks a little way: an early connection is found, a later one is
    /// not, and the error says the search was cut short. What a search does not use goes back.
    #[test]
    fn a_spent_budget_leaves_a_shallow_search() {
        let spent = Budget::with(0, super::super::MAX_HELD);
        let mut early = Session::joined(Dir::Forward, Some(key_log()), spent.clone());
        let (plain, _) = run(&mut early, Dir::Forward, &records(true, 10, 12));
        assert_eq!(plain.len(), 2);
        let mut late = Session::joined(Dir::Forward, Some(key_log()), spent.clone());
        let (plain, problems) = run(&mut late, Dir::Forward, &records(true, 5000, 5002));
        assert!(plain.is_empty());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("budget"), "{problems:?}");

        let budget = Budget::default();
        let mut found = Session::joined(Dir::Forward, Some(key_log()), budget.clone());
        run(&mut found, Dir::Forward, &records(true, 3, 6));
        let spent = super::super::MAX_SEARCH - budget.search_left();
        assert!(spent < 10_000, "spent {spent}");
    }

    /// Without secrets, or with secrets that are not the connection's: no plaintext, and one
    /// problem only when a key log with secrets was given.
    #[test]
    fn foreign_or_missing_secrets_say_so_once() {
        let mut none = Session::joined(Dir::Forward, None, Budget::default());
        assert_eq!(
            run(&mut none, Dir::Forward, &records(true, 0, 3)),
            (vec![], vec![])
        );
        let other = Arc::new(KeyLog::from_text(&format!(
            "CLIENT_TRAFFIC_SECRET_0 {} {}\n",
            hex::encode([9u8; 32]),
            hex::encode([0x33u8; 32])
        )));
        // A small budget: a whole search in a debug build takes seconds.
        let small = Budget::with(1 << 14, super::super::MAX_HELD);
        let mut s = Session::joined(Dir::Forward, Some(other), small);
        let (plain, problems) = run(&mut s, Dir::Forward, &records(true, 0, 3));
        assert!(plain.is_empty());
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (plain, problems) = run(&mut s, Dir::Reverse, &records(false, 0, 3));
        assert!(plain.is_empty() && problems.is_empty(), "{problems:?}");
    }
}
