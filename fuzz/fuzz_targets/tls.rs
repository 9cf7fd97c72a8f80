//! TLS decryption under attack: a connection that starts with a real ClientHello and ServerHello
//! (version and suite picked by the input), then records built from the input, some sealed with
//! the very keys the key log gives, so that what lies behind the authentication tag (handshake
//! messages, Finished, KeyUpdate, padding, content types) is reached as well as the framing.
//!
//! Input layout:
//!   byte 0   suite: index into `SUITES` (low 4 bits, modulo its length); bit 7: the capture
//!            joined the connection mid-way (no hellos; the session looks for its keys among
//!            the key log's traffic secrets), with bits 4..6 times 37 application records of
//!            each direction sent before it started
//!   byte 1   chunking: records are fed to the session in pieces of 1 + (low 7 bits % 64)
//!            bytes, or whole when 0; high bit: the key log starts empty and its secrets
//!            arrive with the first operation of kind 4 (a key log written as the capture runs)
//!   rest     operations, each `op len content[len]`:
//!            op & 0x80     direction (set: server to client)
//!            op & 0x70     kind: 0 raw bytes, 1 clear record of type `content[0]`,
//!                          2 sealed record under key `op & 0x03` (0 handshake, 1..3 the
//!                          application secret after 0..2 key updates) with inner type
//!                          `content[0]`, 3 gap of `len` bytes, 4 the secrets reach the key
//!                          log, else nothing
//!
//! Checked: no panic, and every piece of plaintext handed on is the content of a record
//! sealed as application data in that direction, in order.

#![no_main]

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use h2scope::tcp::Dir;
use h2scope::tls::cipher::{expand_label, prf12, Algorithm, Suite};
use h2scope::tls::{KeyLog, Output, Session};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const SUITES: &[u16] = &[0x1301, 0x1302, 0x1303, 0xc02f, 0xc030, 0xcca8, 0x009c];
const CLIENT_RANDOM: [u8; 32] = [0x11; 32];
const SERVER_RANDOM: [u8; 32] = [0x22; 32];
const MASTER: [u8; 48] = [0x33; 48];

fn secret(label: u8, dir: usize, hash_len: usize) -> Vec<u8> {
    vec![label * 2 + dir as u8 + 1; hash_len]
}

fn key_log(suite: &Suite) -> String {
    let cr = hex::encode(CLIENT_RANDOM);
    if !suite.tls13 {
        return format!("CLIENT_RANDOM {cr} {}\n", hex::encode(MASTER));
    }
    let n = suite.hash.output_len();
    [
        ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", secret(0, 0, n)),
        ("SERVER_HANDSHAKE_TRAFFIC_SECRET", secret(0, 1, n)),
        ("CLIENT_TRAFFIC_SECRET_0", secret(1, 0, n)),
        ("SERVER_TRAFFIC_SECRET_0", secret(1, 1, n)),
    ]
    .iter()
    .map(|(l, s)| format!("{l} {cr} {}\n", hex::encode(s)))
    .collect()
}

fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![kind, 3, 3];
    r.extend((body.len() as u16).to_be_bytes());
    r.extend(body);
    r
}

fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, (body.len() >> 8) as u8, body.len() as u8];
    m.extend(body);
    m
}

fn hellos(suite: &Suite) -> (Vec<u8>, Vec<u8>) {
    let mut ch = vec![3, 3];
    ch.extend(CLIENT_RANDOM);
    ch.extend([0, 0, 2]);
    ch.extend(suite.id.to_be_bytes());
    ch.extend([1, 0, 0, 0]);
    let mut sh = vec![3, 3];
    sh.extend(SERVER_RANDOM);
    sh.push(0);
    sh.extend(suite.id.to_be_bytes());
    sh.push(0);
    if suite.tls13 {
        sh.extend([0, 6, 0, 43, 0, 2, 3, 4]);
    } else {
        sh.extend([0, 0]);
    }
    (
        record(22, &handshake(1, &ch)),
        record(22, &handshake(2, &sh)),
    )
}

/// Seals like the peer would: per (direction, key) a sequence number.
struct Sealer {
    suite: Suite,
    /// [dir][key]: (key, iv, seq)
    keys: [[(Vec<u8>, Vec<u8>, u64); 4]; 2],
}

impl Sealer {
    fn new(suite: Suite) -> Sealer {
        let klen = match suite.algorithm {
            Algorithm::Aes128Gcm => 16,
            _ => 32,
        };
        let mut keys: [[(Vec<u8>, Vec<u8>, u64); 4]; 2] = Default::default();
        if suite.tls13 {
            let n = suite.hash.output_len();
            for (dir, slots) in keys.iter_mut().enumerate() {
                let mut app = secret(1, dir, n);
                slots[0] = derive13(&suite, &secret(0, dir, n), klen);
                for slot in slots.iter_mut().skip(1) {
                    *slot = derive13(&suite, &app, klen);
                    app = expand_label(suite.hash, &app, "traffic upd", n).unwrap();
                }
            }
        } else {
            let ivlen = if suite.algorithm == Algorithm::ChaCha20Poly1305 {
                12
            } else {
                4
            };
            let seed = [&SERVER_RANDOM[..], &CLIENT_RANDOM[..]].concat();
            let block = prf12(
                suite.hash,
                &MASTER,
                b"key expansion",
                &seed,
                2 * (klen + ivlen),
            );
            let (ck, rest) = block.split_at(klen);
            let (sk, rest) = rest.split_at(klen);
            let (ci, si) = rest.split_at(ivlen);
            for slot in 0..4 {
                keys[0][slot] = (ck.to_vec(), ci.to_vec(), 0);
                keys[1][slot] = (sk.to_vec(), si.to_vec(), 0);
            }
        }
        Sealer { suite, keys }
    }

    fn seal(&mut self, dir: usize, slot: usize, inner: u8, content: &[u8]) -> Vec<u8> {
        let (key, iv, seq) = &mut self.keys[dir][slot];
        let tls13 = self.suite.tls13;
        let explicit = !tls13 && iv.len() == 4;
        let mut nonce = [0u8; 12];
        let mut body = content.to_vec();
        let outer = if tls13 {
            body.push(inner);
            23
        } else {
            inner
        };
        if explicit {
            nonce[..4].copy_from_slice(iv);
            nonce[4..].copy_from_slice(&seq.to_be_bytes());
        } else {
            nonce.copy_from_slice(iv);
            for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                *n ^= s;
            }
        }
        let total = body.len() + 16 + if explicit { 8 } else { 0 };
        let header = [outer, 3, 3, (total >> 8) as u8, total as u8];
        let aad: Vec<u8> = if tls13 {
            header.to_vec()
        } else {
            let mut a = seq.to_be_bytes().to_vec();
            a.extend(&header[..3]);
            a.extend((content.len() as u16).to_be_bytes());
            a
        };
        let n = aes_gcm::Nonce::from_slice(&nonce);
        let _ = match self.suite.algorithm {
            Algorithm::Aes128Gcm => Aes128Gcm::new_from_slice(key)
                .unwrap()
                .encrypt_in_place(n, &aad, &mut body),
            Algorithm::Aes256Gcm => Aes256Gcm::new_from_slice(key)
                .unwrap()
                .encrypt_in_place(n, &aad, &mut body),
            Algorithm::ChaCha20Poly1305 => ChaCha20Poly1305::new_from_slice(key)
                .unwrap()
                .encrypt_in_place(n, &aad, &mut body),
        };
        *seq += 1;
        let mut rec = header.to_vec();
        if explicit {
            rec.extend(&nonce[4..]);
        }
        rec.extend(body);
        rec
    }
}

fn derive13(suite: &Suite, secret: &[u8], klen: usize) -> (Vec<u8>, Vec<u8>, u64) {
    (
        expand_label(suite.hash, secret, "key", klen).unwrap(),
        expand_label(suite.hash, secret, "iv", 12).unwrap(),
        0,
    )
}

fuzz_target!(|data: &[u8]| {
    let [s, chunking, ref ops @ ..] = *data else {
        return;
    };
    let late = chunking & 0x80 != 0;
    let chunking = chunking & 0x7f;
    let joined = s & 0x80 != 0;
    let suite = Suite::by_id(SUITES[(s & 0x0f) as usize % SUITES.len()]).unwrap();
    let secrets = key_log(&suite);
    // Late secrets come through a file, as from a program writing SSLKEYLOGFILE: only a key
    // log that may grow makes records wait.
    let file = std::env::temp_dir().join(format!("h2scope-fuzz-keys-{}", std::process::id()));
    let keys = if late {
        std::fs::write(&file, "").unwrap();
        Arc::new(KeyLog::open(&file).unwrap())
    } else {
        Arc::new(KeyLog::from_text(&secrets))
    };
    let mut session = if joined {
        Session::joined(Dir::Forward, Some(keys.clone()), Default::default())
    } else {
        Session::new(Dir::Forward, Some(keys.clone()), Default::default())
    };
    let mut sealer = Sealer::new(suite);
    if joined {
        // Records the capture missed: the sequence numbers the session has to find.
        let missed = u64::from((s >> 4) & 7) * 37;
        for dir in &mut sealer.keys {
            for slot in dir.iter_mut().skip(1) {
                slot.2 = missed;
            }
        }
    }
    // Application data sealed per direction, and how far the plaintext handed on got.
    let mut sealed: [Vec<Vec<u8>>; 2] = Default::default();
    let mut next: [usize; 2] = [0, 0];
    let feed = |session: &mut Session,
                dir: usize,
                bytes: &[u8],
                sealed: &[Vec<Vec<u8>>; 2],
                next: &mut [usize; 2]| {
        let d = if dir == 0 { Dir::Forward } else { Dir::Reverse };
        let step = if chunking == 0 {
            bytes.len().max(1)
        } else {
            1 + chunking as usize % 64
        };
        for piece in bytes.chunks(step) {
            session.feed(d, piece, &mut |to, out| {
                // Records held for their keys come out when they arrive, whichever side is fed.
                let dir = usize::from(to == Dir::Reverse);
                if let Output::Plain(p) = out {
                    // Authenticated: it must be one of the records sealed as data, in order.
                    let at = sealed[dir][next[dir]..]
                        .iter()
                        .position(|s| s == p)
                        .expect("plaintext that was never sealed as application data");
                    next[dir] += at + 1;
                }
            });
        }
    };
    let (ch, sh) = hellos(&suite);
    if !joined {
        feed(&mut session, 0, &ch, &sealed, &mut next);
        feed(&mut session, 1, &sh, &sealed, &mut next);
    }
    if !suite.tls13 && !joined {
        feed(&mut session, 0, &record(20, &[1]), &sealed, &mut next);
        feed(&mut session, 1, &record(20, &[1]), &sealed, &mut next);
    }
    let mut rest = ops;
    while let [op, len, ref tail @ ..] = *rest {
        let len = (len as usize).min(tail.len());
        let (content, after) = tail.split_at(len);
        rest = after;
        let dir = usize::from(op & 0x80 != 0);
        match (op >> 4) & 7 {
            0 => feed(&mut session, dir, content, &sealed, &mut next),
            1 => {
                let kind = content.first().copied().unwrap_or(22);
                let r = record(kind, content.get(1..).unwrap_or(&[]));
                feed(&mut session, dir, &r, &sealed, &mut next);
            }
            2 => {
                // In TLS 1.3 a zero type would make the content's last non-zero byte the type:
                // padding of a record that says nothing, not what this oracle follows.
                let inner = match content.first().copied().unwrap_or(23) {
                    0 if suite.tls13 => 21,
                    t => t,
                };
                let body = content.get(1..).unwrap_or(&[]);
                let r = sealer.seal(dir, (op & 3) as usize, inner, body);
                if inner == 23 {
                    sealed[dir].push(body.to_vec());
                }
                feed(&mut session, dir, &r, &sealed, &mut next);
            }
            3 => {
                let d = if dir == 0 { Dir::Forward } else { Dir::Reverse };
                session.gap(d, len as u64, &mut |_, _| {});
            }
            4 if late => {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&file)
                    .unwrap();
                f.write_all(secrets.as_bytes()).unwrap();
            }
            _ => {}
        }
    }
    session.finish(&mut |_, _| {});
    let _ = session.info();
});
