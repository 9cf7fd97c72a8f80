//! Cipher suites with AEAD record protection, their key schedules (the TLS 1.2 PRF of
//! RFC 5246 §5 and §6.3, HKDF-Expand-Label of RFC 8446 §7.1) and record decryption.
//!
//! Only AEAD suites are here: HTTP/2 forbids the others (RFC 9113 §9.2.2, Appendix A).

use aes::cipher::{BlockEncrypt, KeyInit};
use hkdf::SimpleHkdf;
use hmac::{Mac, SimpleHmac};
use sha2::{Sha256, Sha384};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl Algorithm {
    fn key_len(self) -> usize {
        match self {
            Algorithm::Aes128Gcm => 16,
            Algorithm::Aes256Gcm | Algorithm::ChaCha20Poly1305 => 32,
        }
    }

    /// TLS 1.2 `fixed_iv_length`: GCM sends 8 bytes of each nonce in the record (RFC 5288),
    /// ChaCha20-Poly1305 derives all 12 (RFC 7905).
    fn tls12_iv_len(self) -> usize {
        match self {
            Algorithm::Aes128Gcm | Algorithm::Aes256Gcm => 4,
            Algorithm::ChaCha20Poly1305 => 12,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    pub id: u16,
    pub name: &'static str,
    pub algorithm: Algorithm,
    pub hash: Hash,
    pub tls13: bool,
}

#[rustfmt::skip]
static SUITES: &[(u16, &str, Algorithm, Hash, bool)] = &[
    (0x1301, "TLS_AES_128_GCM_SHA256", Algorithm::Aes128Gcm, Hash::Sha256, true),
    (0x1302, "TLS_AES_256_GCM_SHA384", Algorithm::Aes256Gcm, Hash::Sha384, true),
    (0x1303, "TLS_CHACHA20_POLY1305_SHA256", Algorithm::ChaCha20Poly1305, Hash::Sha256, true),
    (0x009c, "TLS_RSA_WITH_AES_128_GCM_SHA256", Algorithm::Aes128Gcm, Hash::Sha256, false),
    (0x009d, "TLS_RSA_WITH_AES_256_GCM_SHA384", Algorithm::Aes256Gcm, Hash::Sha384, false),
    (0x009e, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", Algorithm::Aes128Gcm, Hash::Sha256, false),
    (0x009f, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", Algorithm::Aes256Gcm, Hash::Sha384, false),
    (0xc02b, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", Algorithm::Aes128Gcm, Hash::Sha256, false),
    (0xc02c, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", Algorithm::Aes256Gcm, Hash::Sha384, false),
    (0xc02f, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", Algorithm::Aes128Gcm, Hash::Sha256, false),
    (0xc030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", Algorithm::Aes256Gcm, Hash::Sha384, false),
    (0xcca8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", Algorithm::ChaCha20Poly1305, Hash::Sha256, false),
    (0xcca9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", Algorithm::ChaCha20Poly1305, Hash::Sha256, false),
    (0xccaa, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", Algorithm::ChaCha20Poly1305, Hash::Sha256, false),
];

impl Suite {
    /// A suite this module decrypts, by its IANA number.
    pub fn by_id(id: u16) -> Option<Suite> {
        SUITES
            .iter()
            .find(|s| s.0 == id)
            .map(|&(id, name, algorithm, hash, tls13)| Suite {
                id,
                name,
                algorithm,
                hash,
                tls13,
            })
    }
}

fn hmac_hash(hash: Hash, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match hash {
        Hash::Sha256 => run::<SimpleHmac<Sha256>>(key, parts),
        Hash::Sha384 => run::<SimpleHmac<Sha384>>(key, parts),
    }
}

/// The TLS 1.2 PRF: P_hash(secret, label + seed) cut to `len` bytes (RFC 5246 §5).
pub fn prf12(hash: Hash, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.output_len());
    let mut a = hmac_hash(hash, secret, &[label, seed]);
    while out.len() < len {
        out.extend(hmac_hash(hash, secret, &[&a, label, seed]));
        a = hmac_hash(hash, secret, &[&a]);
    }
    out.truncate(len);
    out
}

/// HKDF-Expand-Label(secret, label, "", len) (RFC 8446 §7.1). `None` when the secret is
/// shorter than the hash, which a key log line can be.
pub fn expand_label(hash: Hash, secret: &[u8], label: &str, len: usize) -> Option<Vec<u8>> {
    let full = format!("tls13 {label}");
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    let mut out = vec![0; len];
    match hash {
        Hash::Sha256 => SimpleHkdf::<Sha256>::from_prk(secret)
            .ok()?
            .expand(&info, &mut out)
            .ok()?,
        Hash::Sha384 => SimpleHkdf::<Sha384>::from_prk(secret)
            .ok()?
            .expand(&info, &mut out)
            .ok()?,
    }
    Some(out)
}

/// A record key of ring's: its AES-GCM (AES-NI, CLMUL and AVX) opens records three times as
/// fast as RustCrypto's, whose GHASH was most of a TLS capture's time; ring is here anyway,
/// under the TLS client of `check --ssl`. Boxed: a key schedule is about 550 bytes, and a
/// connection's TLS state holds up to four decryptors, mostly none.
fn aead_key(
    algorithm: &'static ring::aead::Algorithm,
    key: &[u8],
) -> Option<Box<ring::aead::LessSafeKey>> {
    let key = ring::aead::UnboundKey::new(algorithm, key).ok()?;
    Some(Box::new(ring::aead::LessSafeKey::new(key)))
}

/// One ChaCha20 block (RFC 8439 §2.3), for one byte of keystream, as in trying sequence
/// numbers: ring opens whole records but has no call for one block, and the `chacha20` crate
/// (the tests' reference) computes blocks four or eight at a time, most of the cost when one
/// byte is wanted.
fn chacha20_block(key: &[u8; 32], counter: u32, nonce: &[u8; 12]) -> [u8; 64] {
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut init = [0u32; 16];
    init[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
    for i in 0..8 {
        init[4 + i] = word(&key[4 * i..]);
    }
    init[12] = counter;
    for i in 0..3 {
        init[13 + i] = word(&nonce[4 * i..]);
    }
    let mut x = init;
    for _ in 0..10 {
        quarter_round(&mut x, 0, 4, 8, 12);
        quarter_round(&mut x, 1, 5, 9, 13);
        quarter_round(&mut x, 2, 6, 10, 14);
        quarter_round(&mut x, 3, 7, 11, 15);
        quarter_round(&mut x, 0, 5, 10, 15);
        quarter_round(&mut x, 1, 6, 11, 12);
        quarter_round(&mut x, 2, 7, 8, 13);
        quarter_round(&mut x, 3, 4, 9, 14);
    }
    let mut out = [0u8; 64];
    for i in 0..16 {
        out[4 * i..4 * i + 4].copy_from_slice(&x[i].wrapping_add(init[i]).to_le_bytes());
    }
    out
}

#[inline(always)]
fn quarter_round(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

/// The cipher under an AEAD, for one byte of keystream (see [`Decryptor::peek_last`]).
enum Keystream {
    Aes128(Box<aes::Aes128>),
    Aes256(Box<aes::Aes256>),
    ChaCha([u8; 32]),
}

/// The record protection of one direction under one key.
pub struct Decryptor {
    aead: Box<ring::aead::LessSafeKey>,
    keystream: Keystream,
    iv: [u8; 12],
    tls13: bool,
    /// TLS 1.2 GCM: the record starts with the nonce's last 8 bytes.
    explicit_nonce: bool,
    seq: u64,
}

const TAG: usize = 16;

impl Decryptor {
    fn new(algorithm: Algorithm, key: &[u8], iv: &[u8], tls13: bool) -> Option<Decryptor> {
        let (aead, keystream) = match algorithm {
            Algorithm::Aes128Gcm => (
                aead_key(&ring::aead::AES_128_GCM, key)?,
                Keystream::Aes128(Box::new(aes::Aes128::new_from_slice(key).ok()?)),
            ),
            Algorithm::Aes256Gcm => (
                aead_key(&ring::aead::AES_256_GCM, key)?,
                Keystream::Aes256(Box::new(aes::Aes256::new_from_slice(key).ok()?)),
            ),
            Algorithm::ChaCha20Poly1305 => (
                aead_key(&ring::aead::CHACHA20_POLY1305, key)?,
                Keystream::ChaCha(key.try_into().ok()?),
            ),
        };
        let mut full = [0; 12];
        full.get_mut(..iv.len())?.copy_from_slice(iv);
        Some(Decryptor {
            aead,
            keystream,
            iv: full,
            tls13,
            explicit_nonce: !tls13 && iv.len() == 4,
            seq: 0,
        })
    }

    /// A TLS 1.3 direction's protection under a traffic secret.
    pub fn tls13(suite: &Suite, secret: &[u8]) -> Option<Decryptor> {
        let key = expand_label(suite.hash, secret, "key", suite.algorithm.key_len())?;
        let iv = expand_label(suite.hash, secret, "iv", 12)?;
        Decryptor::new(suite.algorithm, &key, &iv, true)
    }

    /// The TLS 1.2 client and server protections under a master secret.
    pub fn tls12_pair(
        suite: &Suite,
        master: &[u8],
        client_random: &[u8; 32],
        server_random: &[u8; 32],
    ) -> Option<(Decryptor, Decryptor)> {
        let (k, i) = (suite.algorithm.key_len(), suite.algorithm.tls12_iv_len());
        let seed = [&server_random[..], &client_random[..]].concat();
        let block = prf12(suite.hash, master, b"key expansion", &seed, 2 * (k + i));
        let (ck, rest) = block.split_at(k);
        let (sk, rest) = rest.split_at(k);
        let (ci, si) = rest.split_at(i);
        Some((
            Decryptor::new(suite.algorithm, ck, ci, false)?,
            Decryptor::new(suite.algorithm, sk, si, false)?,
        ))
    }

    /// The sequence number of the next record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Sets it, to try a record after a gap under other numbers.
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Bytes a record adds to its content: header, explicit nonce, tag, and in TLS 1.3 the
    /// content type (padding aside).
    pub fn overhead(&self) -> usize {
        5 + TAG + if self.explicit_nonce { 8 } else { 0 } + usize::from(self.tls13)
    }

    /// TLS 1.3: the nonce of record `seq` (the IV with the number mixed in).
    fn nonce13(&self, seq: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    /// TLS 1.3: the last plaintext byte of a record's body if it were record `seq`, read
    /// without authenticating anything. Under the right key and number it is the content type
    /// (unless the record is padded), so it rules out nearly all wrong numbers for the price of
    /// one block of keystream.
    pub fn peek_last(&self, seq: u64, body: &[u8]) -> Option<u8> {
        let at = body.len().checked_sub(TAG + 1)?;
        let nonce = self.nonce13(seq);
        let key_byte = match &self.keystream {
            Keystream::Aes128(_) | Keystream::Aes256(_) => {
                // GCM counts its blocks from 2 (1 masks the tag).
                let mut block = [0u8; 16];
                block[..12].copy_from_slice(&nonce);
                block[12..].copy_from_slice(&(2 + (at / 16) as u32).to_be_bytes());
                let b = aes::Block::from_mut_slice(&mut block);
                match &self.keystream {
                    Keystream::Aes128(c) => c.encrypt_block(b),
                    Keystream::Aes256(c) => c.encrypt_block(b),
                    Keystream::ChaCha(_) => {}
                }
                block[at % 16]
            }
            Keystream::ChaCha(key) => {
                // Block 0 makes the Poly1305 key; the payload starts at block 1.
                chacha20_block(key, 1 + (at / 64) as u32, &nonce)[at % 64]
            }
        };
        Some(body[at] ^ key_byte)
    }

    /// Decrypts one record's body into `out`; returns the content type of what it held.
    /// `header` is the record's 5-byte header. The sequence number advances only on success:
    /// a record that does not decrypt is not this key's.
    pub fn open(&mut self, header: &[u8; 5], body: &[u8], out: &mut Vec<u8>) -> Option<u8> {
        let mut nonce = self.iv;
        let ciphertext = if self.explicit_nonce {
            nonce[4..].copy_from_slice(body.get(..8)?);
            &body[8..]
        } else {
            nonce = self.nonce13(self.seq);
            body
        };
        let plain_len = ciphertext.len().checked_sub(TAG)?;
        let mut aad = [0u8; 13];
        let aad: &[u8] = if self.tls13 {
            &header[..]
        } else {
            aad[..8].copy_from_slice(&self.seq.to_be_bytes());
            aad[8..11].copy_from_slice(&header[..3]);
            aad[11..].copy_from_slice(&(plain_len as u16).to_be_bytes());
            &aad
        };
        out.clear();
        out.extend_from_slice(ciphertext);
        let nonce = ring::aead::Nonce::assume_unique_for_key(nonce);
        let aad = ring::aead::Aad::from(aad);
        let plain = self.aead.open_in_place(nonce, aad, out).ok()?.len();
        out.truncate(plain);
        self.seq += 1;
        if !self.tls13 {
            return Some(header[0]);
        }
        // TLSInnerPlaintext: content, then its type, then zero padding.
        let end = out.iter().rposition(|&b| b != 0)?;
        let kind = out[end];
        out.truncate(end);
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Records are sealed by RustCrypto's AEADs and opened by ring's: two implementations agree.
    use aes_gcm::aead::AeadInPlace;
    use aes_gcm::{Aes128Gcm, Aes256Gcm};
    use chacha20poly1305::ChaCha20Poly1305;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    /// RFC 8448 §3 (simple 1-RTT handshake): the server's handshake traffic secret and the
    /// write key and IV derived from it.
    #[test]
    fn expand_label_matches_rfc_8448() {
        let secret = unhex(
            "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
        );
        assert_eq!(
            expand_label(Hash::Sha256, &secret, "key", 16).unwrap(),
            unhex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
        );
        assert_eq!(
            expand_label(Hash::Sha256, &secret, "iv", 12).unwrap(),
            unhex("5d 31 3e b2 67 12 76 ee 13 00 0b 30")
        );
    }

    /// The TLS 1.2 PRF with SHA-256, against the widely used test vector posted to the IETF
    /// TLS list (secret, seed and label below, first 100 bytes).
    #[test]
    fn prf12_sha256_test_vector() {
        let secret = unhex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35");
        let seed = unhex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c");
        let out = prf12(Hash::Sha256, &secret, b"test label", &seed, 100);
        assert_eq!(
            out,
            unhex(
                "e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a
                 6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b ab
                 4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01
                 87 34 7b 66"
            )
        );
    }

    #[test]
    fn a_tls13_record_sealed_here_opens_and_drops_its_padding() {
        let suite = Suite::by_id(0x1301).unwrap();
        let secret = [7u8; 32];
        let key = expand_label(suite.hash, &secret, "key", 16).unwrap();
        let iv = expand_label(suite.hash, &secret, "iv", 12).unwrap();
        let sealer = Aes128Gcm::new_from_slice(&key).unwrap();
        let mut opener = Decryptor::tls13(&suite, &secret).unwrap();
        for seq in 0u64..3 {
            let mut nonce = [0u8; 12];
            nonce.copy_from_slice(&iv);
            for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                *n ^= s;
            }
            let mut body = b"hello".to_vec();
            body.push(23);
            body.extend([0, 0]);
            let len = (body.len() + TAG) as u16;
            let header = [23, 3, 3, (len >> 8) as u8, len as u8];
            sealer
                .encrypt_in_place(aes_gcm::Nonce::from_slice(&nonce), &header, &mut body)
                .unwrap();
            let mut out = Vec::new();
            // The content type shows through one block of keystream under the right number.
            assert_eq!(opener.peek_last(seq, &body), Some(0));
            assert_ne!(opener.peek_last(seq + 1, &body), Some(0));
            assert_eq!(opener.open(&header, &body, &mut out), Some(23));
            assert_eq!(out, b"hello");
            // Tampered: refused, and the sequence number stays.
            body[0] ^= 1;
            if seq == 2 {
                assert_eq!(opener.open(&header, &body, &mut out), None);
            }
        }
    }

    /// For every TLS 1.3 suite: the byte `peek_last` reads under the record's own number is
    /// its content type, as opening it says, at every length around the block boundaries.
    #[test]
    fn peek_last_reads_the_content_type_in_every_suite() {
        for id in [0x1301, 0x1302, 0x1303] {
            let suite = Suite::by_id(id).unwrap();
            let secret = vec![9u8; suite.hash.output_len()];
            let key = expand_label(suite.hash, &secret, "key", suite.algorithm.key_len()).unwrap();
            let iv = expand_label(suite.hash, &secret, "iv", 12).unwrap();
            let mut opener = Decryptor::tls13(&suite, &secret).unwrap();
            for (seq, len) in (0u64..).zip([0usize, 14, 15, 16, 63, 64, 65, 200, 1000]) {
                let mut nonce = [0u8; 12];
                nonce.copy_from_slice(&iv);
                for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                    *n ^= s;
                }
                let mut body = vec![b'x'; len];
                body.push(23);
                let header = [23, 3, 3, 0, 0];
                let n = aes_gcm::Nonce::from_slice(&nonce);
                match suite.algorithm {
                    Algorithm::Aes128Gcm => Aes128Gcm::new_from_slice(&key)
                        .unwrap()
                        .encrypt_in_place(n, &header, &mut body),
                    Algorithm::Aes256Gcm => Aes256Gcm::new_from_slice(&key)
                        .unwrap()
                        .encrypt_in_place(n, &header, &mut body),
                    Algorithm::ChaCha20Poly1305 => ChaCha20Poly1305::new_from_slice(&key)
                        .unwrap()
                        .encrypt_in_place(n, &header, &mut body),
                }
                .unwrap();
                assert_eq!(opener.peek_last(seq, &body), Some(23), "{id:x} {len}");
                let mut out = Vec::new();
                assert_eq!(opener.open(&header, &body, &mut out), Some(23));
                assert_eq!(out.len(), len);
            }
        }
    }

    /// The single block agrees with RFC 8439 §2.3.2's test vector and with the `chacha20`
    /// crate at other counters.
    #[test]
    fn chacha20_block_matches_rfc_8439_and_the_crate() {
        use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let nonce = [0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0];
        assert_eq!(
            chacha20_block(&key, 1, &nonce)[..16],
            unhex("10 f1 e7 e4 d1 3b 59 15 50 0f dd 1f a3 20 71 c4")
        );
        for counter in [0u32, 1, 2, 7, 1000] {
            let mut c = chacha20::ChaCha20::new(&key.into(), &nonce.into());
            c.seek(64 * counter as u64);
            let mut block = [0u8; 64];
            c.apply_keystream(&mut block);
            assert_eq!(chacha20_block(&key, counter, &nonce), block, "{counter}");
        }
    }
}
