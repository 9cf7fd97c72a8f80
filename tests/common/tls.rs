//! gRPC over TLS between real peers: a tonic client whose connections go through rustls (its
//! secrets logged as SSLKEYLOGFILE would), and a rustls server in front of a tonic server.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::echo::{Echo, EchoReply, EchoRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::codegen::http;
use tonic::Request;
use tonic_prost::ProstCodec;

/// The client's secrets, written as SSLKEYLOGFILE would have them: kept, and appended to a file
/// line by line when there is one.
#[derive(Debug, Default)]
pub struct Secrets {
    lines: Mutex<String>,
    file: Option<PathBuf>,
}

impl Secrets {
    pub fn to_file(path: PathBuf) -> Secrets {
        Secrets {
            lines: Mutex::default(),
            file: Some(path),
        }
    }

    pub fn text(&self) -> String {
        self.lines.lock().unwrap().clone()
    }
}

impl rustls::KeyLog for Secrets {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = format!(
            "{label} {} {}\n",
            hex::encode(client_random),
            hex::encode(secret)
        );
        self.lines.lock().unwrap().push_str(&line);
        if let Some(path) = &self.file {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            f.write_all(line.as_bytes()).unwrap();
        }
    }
}

pub struct Tls {
    pub version: &'static SupportedProtocolVersion,
    pub suite: SupportedCipherSuite,
    /// The server takes only P-256 while the client's first key share is X25519, so the server
    /// answers with a HelloRetryRequest.
    pub retry: bool,
}

/// The cipher suite of ring's provider with this number.
pub fn suite(id: CipherSuite) -> SupportedCipherSuite {
    rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .copied()
        .find(|s| s.suite() == id)
        .unwrap()
}

fn provider(suite: SupportedCipherSuite, p256_only: bool) -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![suite];
    if p256_only {
        p.kx_groups = vec![rustls::crypto::ring::kx_group::SECP256R1];
    }
    Arc::new(p)
}

/// Forwards a TLS connection's plaintext to `plain`; after the first answer the server rolls
/// its keys when `key_update`.
async fn pipe(
    mut tls: tokio_rustls::server::TlsStream<TcpStream>,
    mut plain: TcpStream,
    key_update: bool,
) {
    let (mut a, mut b) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    let mut rolled = !key_update;
    loop {
        tokio::select! {
            r = tls.read(&mut a) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => if plain.write_all(&a[..n]).await.is_err() { break },
            },
            r = plain.read(&mut b) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tls.write_all(&b[..n]).await.is_err() || tls.flush().await.is_err() {
                        break;
                    }
                    if !rolled {
                        rolled = true;
                        tls.get_mut().1.refresh_traffic_keys().unwrap();
                        let _ = tls.flush().await;
                    }
                }
            },
        }
    }
    let _ = tls.shutdown().await;
}

/// A TLS server in front of the plain-text gRPC server at `upstream`. Like grpc-go since 1.67,
/// it refuses clients that do not negotiate ALPN when `cfg` offers protocols.
pub async fn terminate(
    cfg: rustls::ServerConfig,
    upstream: SocketAddr,
    key_update: bool,
) -> SocketAddr {
    let alpn_required = !cfg.alpn_protocols.is_empty();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if alpn_required && tls.get_ref().1.alpn_protocol().is_none() {
                    return;
                }
                let Ok(plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = plain.set_nodelay(true);
                pipe(tls, plain, key_update).await;
            });
        }
    });
    addr
}

/// Client and server configurations for `tls`, with a self-signed certificate for
/// "localhost"; the client logs its secrets to `secrets`.
pub fn configs(tls: &Tls, secrets: Arc<Secrets>) -> (rustls::ServerConfig, rustls::ClientConfig) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = CertificateDer::from(key.cert.der().to_vec());
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key_pair.serialize_der()));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider(tls.suite, tls.retry))
        .with_protocol_versions(&[tls.version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], private)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider(tls.suite, false))
        .with_protocol_versions(&[tls.version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    client.key_log = secrets;
    (server, client)
}

/// A server that answers only handshakes naming "localhost" (SNI), as a virtual-hosting front
/// does, with a fresh self-signed certificate (TLS 1.2 and 1.3, ring's suites); a client that
/// trusts it and logs its secrets to `secrets`; and the certificate in PEM.
pub fn localhost_only(
    secrets: Arc<Secrets>,
) -> (rustls::ServerConfig, rustls::ClientConfig, String) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pem = key.cert.pem();
    let cert = CertificateDer::from(key.cert.der().to_vec());
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key_pair.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_supported_type(&private).unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![cert.clone()], signer));
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(OnlyName(certified)));
    server.alpn_protocols = vec![b"h2".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    client.key_log = secrets;
    (server, client, pem)
}

#[derive(Debug)]
struct OnlyName(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OnlyName {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        (hello.server_name() == Some("localhost")).then(|| self.0.clone())
    }
}

/// The echo and health services behind a TLS server made with `server`; in TLS 1.3 the server
/// rolls its keys after its first answer. Returns the TLS server's address.
pub async fn serve(server: rustls::ServerConfig, tls13: bool) -> SocketAddr {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>>()
        .await;
    let upstream = super::serve(
        tonic::transport::Server::builder()
            .add_service(Echo)
            .add_service(health),
    )
    .await;
    terminate(server, upstream, tls13).await
}

/// A gRPC channel over TLS made with `client`, through `addr`.
pub async fn channel(client: rustls::ClientConfig, addr: SocketAddr) -> tonic::transport::Channel {
    channel_with(Arc::new(client), addr, Arc::default()).await
}

/// [`channel`] with a configuration shared with other channels (its session cache resumes
/// their sessions); the kind of each handshake made is pushed to `kinds`.
pub async fn channel_with(
    client: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    kinds: Arc<Mutex<Vec<rustls::HandshakeKind>>>,
) -> tonic::transport::Channel {
    let connector = tokio_rustls::TlsConnector::from(client);
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let (connector, kinds) = (connector.clone(), kinds.clone());
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let name = ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await?;
                kinds
                    .lock()
                    .unwrap()
                    .extend(tls.get_ref().1.handshake_kind());
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .unwrap()
}

/// Three health checks, then an echo call carrying `payload` bytes each way (300 kB makes many
/// TLS records).
pub async fn traffic(channel: tonic::transport::Channel, payload: usize) {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for _ in 0..3 {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap();
        assert_eq!(r.into_inner().status, 1);
    }
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let request = EchoRequest {
        text: "big".into(),
        payload: super::noise(7, payload),
        seq: 1,
    };
    let r = grpc
        .unary(
            Request::new(request),
            http::uri::PathAndQuery::from_static("/test.echo.Echo/Unary"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.into_inner().payload.len(), payload);
}
