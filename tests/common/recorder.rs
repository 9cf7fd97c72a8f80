//! A recording TCP proxy: real peers talk through it, and every byte they exchange is written to a
//! capture file as the packets a sniffer between them would have seen (handshake, data segments cut
//! at an MSS, ACKs, FIN), on a chosen link type. This is how the tests make captures of real gRPC
//! traffic without root rights or tcpdump.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use etherparse::PacketBuilder;
use h2scope::capture::LinkType;
use h2scope::output::pcap::PcapWriter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Linux cooked v2, as `tcpdump -i any` writes.
    Sll2,
    /// Linux cooked v1.
    Sll,
    /// BSD loopback.
    Null,
}

impl Link {
    fn linktype(self) -> LinkType {
        LinkType(match self {
            Link::Ethernet => 1,
            Link::Sll2 => 276,
            Link::Sll => 113,
            Link::Null => 0,
        })
    }
}

struct Conn {
    endpoints: [SocketAddr; 2],
    /// Next sequence number of each side.
    next_seq: [u32; 2],
}

struct State {
    packets: Vec<(i64, Vec<u8>)>,
    link: Link,
    mss: usize,
    isn_base: u32,
    conns: u32,
    /// Latency of the proxy's link to the far side, each way (see
    /// [`Recorder::with_server_latency`]).
    latency: std::time::Duration,
    /// The far side is the client: the capture is taken next to the server (see
    /// [`Recorder::with_client_latency`]).
    near_server: bool,
}

#[derive(Clone)]
pub struct Recorder {
    state: Arc<Mutex<State>>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

const SYN: u8 = 1;
const FIN: u8 = 2;
const PSH: u8 = 4;

impl Recorder {
    /// `isn_base` sets the initial sequence numbers, so that a test can make them wrap at 2^32.
    pub fn new(link: Link, mss: usize, isn_base: u32) -> Self {
        Recorder {
            state: Arc::new(Mutex::new(State {
                packets: Vec::new(),
                link,
                mss,
                isn_base,
                conns: 0,
                latency: std::time::Duration::ZERO,
                near_server: false,
            })),
        }
    }

    /// Puts `latency` on the proxy's link to the server, each way, as if the capture were taken
    /// next to the client of a distant server: the client's bytes reach the server `latency`
    /// after they were recorded, and the server's are recorded `latency` after they left it.
    /// What each side sends then meets the other's in flight, as on a real network.
    pub fn with_server_latency(self, latency: std::time::Duration) -> Self {
        self.with_latency(latency, false)
    }

    /// Puts `latency` between the client and the capture, each way, as if the capture were
    /// taken next to the server of a distant client: the client's bytes are recorded `latency`
    /// after they left it, as they reach the server, and the server's reach the client
    /// `latency` after they were recorded.
    pub fn with_client_latency(self, latency: std::time::Duration) -> Self {
        self.with_latency(latency, true)
    }

    fn with_latency(self, latency: std::time::Duration, near_server: bool) -> Self {
        {
            let mut st = self.state.lock().unwrap();
            st.latency = latency;
            st.near_server = near_server;
        }
        self
    }

    /// Listens on `listen` and forwards every connection to `upstream`, recording it. Returns the
    /// address clients should dial.
    pub async fn proxy(&self, listen: SocketAddr, upstream: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rec = self.clone();
        tokio::spawn(async move {
            while let Ok((client, peer)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                rec.spawn_conn(client, peer, server, upstream);
            }
        });
        addr
    }

    fn spawn_conn(&self, client: TcpStream, peer: SocketAddr, server: TcpStream, up: SocketAddr) {
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let conn = {
            let mut st = self.state.lock().unwrap();
            st.conns += 1;
            let isn_c = st.isn_base.wrapping_add(st.conns * 1000);
            let isn_s = st.isn_base.wrapping_add(st.conns * 1000 + 500);
            let conn = Arc::new(Mutex::new(Conn {
                endpoints: [peer, up],
                next_seq: [isn_c, isn_s],
            }));
            // With latency, the handshake took a round trip over the long path, which ended as
            // the connection reached the proxy: its SYN (and, next to the server, the SYN-ACK)
            // went by that long before, as the capture point saw them.
            let rtt = 2 * st.latency.as_nanos() as i64;
            let near_server = st.near_server;
            drop(st);
            let now = now_ns();
            self.record_at(now - rtt, &conn, 0, SYN, &[]);
            self.record_at(
                if near_server { now - rtt } else { now },
                &conn,
                1,
                SYN,
                &[],
            );
            self.record_at(now, &conn, 0, 0, &[]);
            conn
        };
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        tokio::spawn(self.clone().pump(cr, sw, conn.clone(), 0));
        tokio::spawn(self.clone().pump(sr, cw, conn, 1));
    }

    async fn pump(
        self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        conn: Arc<Mutex<Conn>>,
        dir: usize,
    ) {
        let (latency, near_server) = {
            let st = self.state.lock().unwrap();
            (st.latency, st.near_server)
        };
        if !latency.is_zero() {
            // Bytes are recorded as they pass the capture point: before the delay line going
            // away from it, after the delay line coming towards it.
            let recorded_before = (dir == 0) != near_server;
            return self
                .delayed_pump(from, to, conn, dir, latency, recorded_before)
                .await;
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    self.record_bytes(&conn, dir, None);
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            };
            // Recorded before it is forwarded, so an answer can never precede its question.
            self.record_bytes(&conn, dir, Some(&buf[..n]));
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    /// [`pump`](Self::pump) over a link with `latency`: bytes (and the FIN, as `None`) go
    /// through a delay line in order, recorded before it or after it.
    async fn delayed_pump(
        self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        conn: Arc<Mutex<Conn>>,
        dir: usize,
        latency: std::time::Duration,
        recorded_before: bool,
    ) {
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Option<Vec<u8>>)>();
        let rec = self.clone();
        let recording = conn.clone();
        tokio::spawn(async move {
            while let Some((due, bytes)) = rx.recv().await {
                tokio::time::sleep_until(due).await;
                if !recorded_before {
                    rec.record_bytes(&recording, dir, bytes.as_deref());
                }
                let Some(bytes) = bytes else {
                    let _ = to.shutdown().await;
                    return;
                };
                if to.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let bytes = match from.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buf[..n].to_vec()),
            };
            if recorded_before {
                self.record_bytes(&conn, dir, bytes.as_deref());
            }
            let end = bytes.is_none();
            if tx
                .send((tokio::time::Instant::now() + latency, bytes))
                .is_err()
                || end
            {
                return;
            }
        }
    }

    /// Records bytes as segments of at most an MSS, or a FIN for `None`.
    fn record_bytes(&self, conn: &Arc<Mutex<Conn>>, dir: usize, bytes: Option<&[u8]>) {
        let Some(bytes) = bytes else {
            return self.record(conn, dir, FIN, &[]);
        };
        let mss = self.state.lock().unwrap().mss;
        for chunk in bytes.chunks(mss) {
            self.record(conn, dir, PSH, chunk);
        }
    }

    fn record(&self, conn: &Arc<Mutex<Conn>>, dir: usize, flags: u8, payload: &[u8]) {
        self.record_at(now_ns(), conn, dir, flags, payload);
    }

    fn record_at(
        &self,
        ts_ns: i64,
        conn: &Arc<Mutex<Conn>>,
        dir: usize,
        flags: u8,
        payload: &[u8],
    ) {
        let mut c = conn.lock().unwrap();
        let src = c.endpoints[dir];
        let dst = c.endpoints[1 - dir];
        let seq = c.next_seq[dir];
        let ack = c.next_seq[1 - dir];
        let mut consumed = payload.len() as u32;
        if flags & (SYN | FIN) != 0 {
            consumed += 1;
        }
        c.next_seq[dir] = seq.wrapping_add(consumed);
        let mut st = self.state.lock().unwrap();
        let frame = build_frame(st.link, src, dst, seq, ack, flags, dir, payload);
        st.packets.push((ts_ns, frame));
    }

    pub fn packet_count(&self) -> usize {
        self.state.lock().unwrap().packets.len()
    }

    pub fn to_pcap(&self) -> Vec<u8> {
        let st = self.state.lock().unwrap();
        let mut w = PcapWriter::new(Vec::new(), st.link.linktype(), 262_144).unwrap();
        for (ts, p) in &st.packets {
            w.write_packet(*ts, p, p.len() as u32).unwrap();
        }
        w.into_inner()
    }

    /// A gRPC channel to `upstream` through a new recording proxy on IPv4 loopback.
    pub async fn channel(&self, upstream: SocketAddr) -> tonic::transport::Channel {
        self.channel_with(upstream, |e| e).await
    }

    /// [`channel`](Self::channel), its endpoint configured by `configure` (keepalive, windows).
    pub async fn channel_with(
        &self,
        upstream: SocketAddr,
        configure: impl FnOnce(tonic::transport::Endpoint) -> tonic::transport::Endpoint,
    ) -> tonic::transport::Channel {
        let proxy = self
            .proxy(SocketAddr::from(([127, 0, 0, 1], 0)), upstream)
            .await;
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{proxy}")).unwrap();
        configure(endpoint).connect().await.unwrap()
    }

    /// Runs `traffic`, which talks through this recorder's proxies, on a runtime of its own
    /// (two threads, as a server and client would have), and returns what was recorded.
    pub fn run(&self, traffic: impl std::future::Future<Output = ()>) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(traffic);
        rt.shutdown_timeout(std::time::Duration::from_secs(1));
        self.to_pcap()
    }

    pub fn write_pcap(&self, path: &std::path::Path) {
        std::fs::write(path, self.to_pcap()).unwrap();
    }
}

#[allow(clippy::too_many_arguments)]
fn build_frame(
    link: Link,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    dir: usize,
    payload: &[u8],
) -> Vec<u8> {
    let builder = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families"),
    };
    let is_synack = flags & SYN != 0 && dir == 1;
    let mut tcp = builder.tcp(src.port(), dst.port(), seq, 65535);
    if flags & SYN != 0 {
        tcp = tcp.syn();
    }
    if flags & SYN == 0 || is_synack {
        tcp = tcp.ack(ack);
    }
    if flags & PSH != 0 {
        tcp = tcp.psh();
    }
    if flags & FIN != 0 {
        tcp = tcp.fin();
    }
    let mut ip = Vec::new();
    tcp.write(&mut ip, payload).unwrap();
    let v6 = src.is_ipv6();
    let ethertype: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    let mut out = Vec::with_capacity(ip.len() + 20);
    match link {
        Link::Ethernet => {
            out.extend_from_slice(&[0, 0, 0, 0, 0, (1 + dir) as u8]);
            out.extend_from_slice(&[0, 0, 0, 0, 0, (2 - dir) as u8]);
            out.extend_from_slice(&ethertype);
        }
        Link::Sll2 => {
            out.extend_from_slice(&ethertype);
            out.extend_from_slice(&[0, 0]); // reserved
            out.extend_from_slice(&1u32.to_be_bytes()); // interface index
            out.extend_from_slice(&772u16.to_be_bytes()); // ARPHRD_LOOPBACK
            out.push(if dir == 0 { 4 } else { 0 }); // outgoing / to us
            out.push(6);
            out.extend_from_slice(&[0; 8]);
        }
        Link::Sll => {
            out.extend_from_slice(&(if dir == 0 { 4u16 } else { 0 }).to_be_bytes());
            out.extend_from_slice(&772u16.to_be_bytes());
            out.extend_from_slice(&6u16.to_be_bytes());
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&ethertype);
        }
        Link::Null => {
            let family: u32 = if v6 { 30 } else { 2 };
            out.extend_from_slice(&family.to_le_bytes());
        }
    }
    out.extend_from_slice(&ip);
    out
}
