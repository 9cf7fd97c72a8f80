//! What HAProxy's tcp-check does, done here: connect, send the bytes, read until the expected
//! bytes appear or time runs out. The answer is decoded, so a failing check explains itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

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

#[derive(Debug)]
pub struct CheckResult {
    pub outcome: Outcome,
    pub received: Vec<u8>,
    pub elapsed: Duration,
    pub server: SocketAddr,
    pub local: SocketAddr,
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
}

/// Received bytes kept at most: a check answer is small.
const MAX_RECEIVED: usize = 1 << 20;

pub fn run(
    addr: &str,
    send: &[u8],
    expect: &[u8],
    timeout: Duration,
) -> Result<CheckResult, CheckError> {
    let start = Instant::now();
    let server = addr
        .to_socket_addrs()
        .map_err(|_| CheckError::Resolve(addr.to_string()))?
        .next()
        .ok_or_else(|| CheckError::Resolve(addr.to_string()))?;
    let mut stream =
        TcpStream::connect_timeout(&server, timeout).map_err(|source| CheckError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let io = |source| CheckError::Io {
        addr: addr.to_string(),
        source,
    };
    let local = stream.local_addr().map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    stream.write_all(send).map_err(io)?;
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
        stream.set_read_timeout(Some(left)).map_err(io)?;
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
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Outcome::Closed,
            Err(e) => return Err(io(e)),
        }
    };
    Ok(CheckResult {
        outcome,
        received,
        elapsed: start.elapsed(),
        server,
        local,
    })
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
