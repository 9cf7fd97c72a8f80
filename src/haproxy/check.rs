//! What HAProxy's tcp-check does, done here: connect (in clear or over TLS), send the bytes,
//! read until the expected bytes appear or time runs out. The answer is decoded, so a failing
//! check explains itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::event::Event;
use crate::grpc::schema::Schemas;
use crate::grpc::GrpcConfig;
use crate::http2::connection::{Connection, Ctx, Http2Config};
use crate::tcp::{Dir, FlowInfo, PacketMeta};

#[derive(Debug)]
pub enum Outcome {
    Matched,
    /// The server closed the connection without the expected bytes.
    Closed,
    TimedOut,
}

/// A check over TLS, as `tcp-check connect ssl alpn h2` makes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// The server name sent; none sends no SNI (HAProxy's default).
    pub sni: Option<String>,
    /// Certificates to verify the server's with (`verify required ca-file`); none accepts any
    /// certificate (`verify none`), while still checking the handshake's signatures.
    pub ca_file: Option<PathBuf>,
}

/// What the TLS handshake of a check agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub version: String,
    pub cipher_suite: String,
    pub alpn: Option<String>,
}

impl std::fmt::Display for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.version, self.cipher_suite)?;
        match &self.alpn {
            Some(a) => write!(f, ", ALPN {a}"),
            None => f.write_str(", no ALPN"),
        }
    }
}

#[derive(Debug)]
pub struct CheckResult {
    pub outcome: Outcome,
    pub received: Vec<u8>,
    pub elapsed: Duration,
    pub server: SocketAddr,
    pub local: SocketAddr,
    /// Set when the check ran over TLS.
    pub tls: Option<Negotiated>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}: cannot resolve the address")]
    Resolve(String),
    #[error("{addr}: cannot connect: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: TLS handshake failed: {reason}")]
    Handshake { addr: String, reason: String },
    #[error("{path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("{0:?} is not a server name TLS can send")]
    Sni(String),
    #[error("TLS client: {0}")]
    TlsSetup(String),
}

/// Received bytes kept at most: a check answer is small.
const MAX_RECEIVED: usize = 1 << 20;

/// Either side of the check's connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

pub fn run(
    addr: &str,
    send: &[u8],
    expect: &[u8],
    timeout: Duration,
    tls: Option<&TlsOptions>,
) -> Result<CheckResult, CheckError> {
    let start = Instant::now();
    // Settled before connecting: a wrong --ca-file or --sni is the user's to fix, not the
    // server's failure.
    let client = tls.map(client_config).transpose()?;
    let server = addr
        .to_socket_addrs()
        .map_err(|_| CheckError::Resolve(addr.to_string()))?
        .next()
        .ok_or_else(|| CheckError::Resolve(addr.to_string()))?;
    let tcp =
        TcpStream::connect_timeout(&server, timeout).map_err(|source| CheckError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let io = |source| CheckError::Io {
        addr: addr.to_string(),
        source,
    };
    let local = tcp.local_addr().map_err(io)?;
    tcp.set_nodelay(true).map_err(io)?;
    let (mut stream, negotiated) = match client {
        None => (Stream::Plain(tcp), None),
        Some((config, name)) => {
            let (s, n) = handshake(config, name, tcp, timeout.saturating_sub(start.elapsed()))
                .map_err(|reason| CheckError::Handshake {
                    addr: addr.to_string(),
                    reason,
                })?;
            (Stream::Tls(Box::new(s)), Some(n))
        }
    };
    stream
        .write_all(send)
        .and_then(|()| stream.flush())
        .map_err(io)?;
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let outcome = loop {
        if !expect.is_empty() && contains(&received, expect) {
            break Outcome::Matched;
        }
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() || received.len() >= MAX_RECEIVED {
            break Outcome::TimedOut;
        }
        stream.tcp().set_read_timeout(Some(left)).map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => {
                break if contains(&received, expect) {
                    Outcome::Matched
                } else {
                    Outcome::Closed
                }
            }
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break Outcome::TimedOut
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A server that hangs up without close_notify ends the check like a TCP close.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                break Outcome::Closed
            }
            Err(e) => return Err(io(e)),
        }
    };
    Ok(CheckResult {
        outcome,
        received,
        elapsed: start.elapsed(),
        server,
        local,
        tls: negotiated,
    })
}

/// The client side of `tcp-check connect ssl alpn h2`, and the name to send. Secrets go to
/// `SSLKEYLOGFILE` when it is set, so a recorded check can be decrypted.
fn client_config(
    tls: &TlsOptions,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), CheckError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = match &tls.ca_file {
        None => None,
        Some(path) => {
            let shown = path.display().to_string();
            let ca_err = |reason: String| CheckError::CaFile {
                path: shown.clone(),
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_err(e.to_string()))? {
                roots
                    .add(cert.map_err(|e| ca_err(e.to_string()))?)
                    .map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ca_err("holds no PEM certificate".into()));
            }
            let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| ca_err(e.to_string()))?;
            Some(v)
        }
    };
    let verifier = Arc::new(Verifier {
        webpki,
        check_name: tls.sni.is_some(),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CheckError::TlsSetup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.key_log = Arc::new(rustls::KeyLogFile::new());
    // An IP address as the name sends no SNI, as HAProxy does without `sni`.
    let name = match &tls.sni {
        Some(sni) => ServerName::try_from(sni.clone()).map_err(|_| CheckError::Sni(sni.clone()))?,
        None => ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()),
    };
    Ok((Arc::new(config), name))
}

fn handshake(
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    mut tcp: TcpStream,
    timeout: Duration,
) -> Result<
    (
        rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
        Negotiated,
    ),
    String,
> {
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        match conn.complete_io(&mut tcp) {
            Ok((0, 0)) => return Err("the server closed the connection".into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("no answer before the timeout".into())
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    // Named as h2scope names the TLS it decrypts (IANA names), not as rustls does.
    let negotiated = Negotiated {
        version: conn
            .protocol_version()
            .map(|v| crate::tls::hello::version_name(u16::from(v)))
            .unwrap_or("TLS")
            .to_string(),
        cipher_suite: conn
            .negotiated_cipher_suite()
            .map(|s| {
                let id = u16::from(s.suite());
                crate::tls::cipher::Suite::by_id(id)
                    .map(|k| k.name.to_string())
                    .unwrap_or_else(|| format!("suite 0x{id:04x}"))
            })
            .unwrap_or_default(),
        alpn: conn
            .alpn_protocol()
            .map(|a| String::from_utf8_lossy(a).into_owned()),
    };
    Ok((rustls::StreamOwned::new(conn, tcp), negotiated))
}

/// HAProxy's server verification: `verify none` accepts any certificate, `ca-file` checks the
/// chain, and the name only when an SNI is sent. Handshake signatures are always checked.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Decodes a check exchange (what was sent, what came back) into events: frames, messages, the
/// call with its grpc-status.
pub fn explain(result: &CheckResult, sent: &[u8], schemas: &mut Schemas) -> Vec<Event> {
    let info = FlowInfo {
        conn: 0,
        endpoints: [result.local, result.server],
        handshake_seen: true,
        handshake: None,
        tcp: Default::default(),
        first_ts_ns: 0,
    };
    let cfg = Http2Config {
        forced_ports: vec![result.server.port()],
        ..Http2Config::default()
    };
    let grpc = GrpcConfig::default();
    let mut events = Vec::new();
    let mut conn = Connection::new(&info, &cfg);
    let meta = PacketMeta { index: 1, ts_ns: 0 };
    {
        let mut ctx = Ctx {
            info: &info,
            meta: &meta,
            sink: &mut events,
            cfg: &cfg,
            grpc: &grpc,
            schemas,
        };
        conn.data(Dir::Forward, sent, &mut ctx);
        let meta2 = PacketMeta {
            index: 2,
            ts_ns: result.elapsed.as_nanos() as i64,
        };
        let mut ctx = Ctx {
            meta: &meta2,
            ..ctx
        };
        conn.data(Dir::Reverse, &result.received, &mut ctx);
        conn.close(&mut ctx);
    }
    events
}
