//! The parts of ClientHello and ServerHello (RFC 8446 §4.1.2–4.1.3, RFC 5246 §7.4.1) that
//! choose the keys: randoms, session ID, cipher suite, version, and ALPN and SNI for display.

/// `ServerHello.random` of a HelloRetryRequest (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub random: [u8; 32],
    pub sni: Option<String>,
    pub alpn: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    pub suite: u16,
    /// 0x0303 for TLS 1.2, 0x0304 for TLS 1.3 (from supported_versions).
    pub version: u16,
    pub alpn: Option<String>,
    pub retry: bool,
}

/// A cursor over a handshake message; every read checks its bounds.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn random(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }
    /// Extensions as (type, body); a list cut short ends early.
    fn extensions(&mut self) -> Vec<(u16, &'a [u8])> {
        let mut list = Vec::new();
        let Some(all) = self.vec16() else {
            return list;
        };
        let mut r = Reader(all);
        while let (Some(t), Some(body)) = (r.u16(), r.vec16()) {
            list.push((t, body));
        }
        list
    }
}

fn protocol_names(body: &[u8]) -> Vec<String> {
    let mut r = Reader(body);
    let mut names = Vec::new();
    if let Some(list) = r.vec16() {
        let mut r = Reader(list);
        while let Some(name) = r.vec8() {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    names
}

fn server_name(body: &[u8]) -> Option<String> {
    let mut r = Reader(Reader(body).vec16()?);
    while let Some(kind) = r.u8() {
        let name = r.vec16()?;
        if kind == 0 {
            return Some(String::from_utf8_lossy(name).into_owned());
        }
    }
    None
}

/// The body of a ClientHello (after the 4-byte handshake header).
pub fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    r.u16()?;
    let random = r.random()?;
    r.vec8()?; // session ID
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let mut hello = ClientHello {
        random,
        sni: None,
        alpn: Vec::new(),
    };
    for (t, body) in r.extensions() {
        match t {
            EXT_SERVER_NAME => hello.sni = server_name(body),
            EXT_ALPN => hello.alpn = protocol_names(body),
            _ => {}
        }
    }
    Some(hello)
}

/// The body of a ServerHello.
pub fn server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    let random = r.random()?;
    let session_id = r.vec8()?.to_vec();
    let suite = r.u16()?;
    r.u8()?; // compression method
    let mut hello = ServerHello {
        random,
        session_id,
        suite,
        version: legacy_version,
        alpn: None,
        retry: random == HRR_RANDOM,
    };
    for (t, body) in r.extensions() {
        match t {
            EXT_SUPPORTED_VERSIONS if body.len() == 2 => {
                hello.version = u16::from_be_bytes([body[0], body[1]]);
            }
            EXT_ALPN => hello.alpn = protocol_names(body).into_iter().next(),
            _ => {}
        }
    }
    Some(hello)
}

/// The protocol chosen in a TLS 1.3 EncryptedExtensions body (RFC 8446 §4.3.1), where ALPN
/// moved from the ServerHello.
pub fn encrypted_extensions_alpn(body: &[u8]) -> Option<String> {
    Reader(body)
        .extensions()
        .into_iter()
        .find(|&(t, _)| t == EXT_ALPN)
        .and_then(|(_, b)| protocol_names(b).into_iter().next())
}

/// "TLS 1.2" and the like, for display.
pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0300 => "SSL 3.0",
        0x0301 => "TLS 1.0",
        0x0302 => "TLS 1.1",
        0x0303 => "TLS 1.2",
        0x0304 => "TLS 1.3",
        _ => "TLS (unknown version)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(t: u16, body: &[u8]) -> Vec<u8> {
        let mut v = t.to_be_bytes().to_vec();
        v.extend((body.len() as u16).to_be_bytes());
        v.extend(body);
        v
    }

    #[test]
    fn client_hello_gives_random_sni_and_alpn() {
        let mut b = vec![3, 3];
        b.extend([9u8; 32]);
        b.extend([0, 0, 2, 0x13, 1, 1, 0]);
        let mut exts = ext(
            0,
            &[
                0, 14, 0, 0, 11, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm',
            ][..],
        );
        exts.extend(ext(16, &[0, 3, 2, b'h', b'2']));
        b.extend((exts.len() as u16).to_be_bytes());
        b.extend(exts);
        let h = client_hello(&b).unwrap();
        assert_eq!(h.random, [9; 32]);
        assert_eq!(h.sni.as_deref(), Some("example.com"));
        assert_eq!(h.alpn, vec!["h2".to_string()]);
        // Cut anywhere: never a panic, and the fixed part is needed.
        for n in 0..b.len() {
            let _ = client_hello(&b[..n]);
        }
        assert!(client_hello(&b[..20]).is_none());
    }

    #[test]
    fn server_hello_reads_version_from_supported_versions_and_spots_a_retry() {
        let mut b = vec![3, 3];
        b.extend(HRR_RANDOM);
        b.extend([0, 0x13, 0x01, 0]);
        let exts = ext(43, &[3, 4]);
        b.extend((exts.len() as u16).to_be_bytes());
        b.extend(exts);
        let h = server_hello(&b).unwrap();
        assert_eq!((h.version, h.suite, h.retry), (0x0304, 0x1301, true));
    }
}
