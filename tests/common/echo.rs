//! The echo service of the gRPC real-peer tests, routed by hand (what tonic's code generator
//! would write): unary, server streaming (three replies), client streaming, bidi.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_stream::StreamExt;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http;
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;
use tower::service_fn;

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    #[prost(int32, tag = "3")]
    pub seq: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    #[prost(int32, tag = "3")]
    pub seq: i32,
}

pub fn reply(r: &EchoRequest, seq: i32) -> EchoReply {
    EchoReply {
        text: format!("echo {}", r.text),
        payload: r.payload.clone(),
        seq,
    }
}

/// The echo service, routed by hand (what tonic's code generator would write).
#[derive(Clone)]
pub struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.echo.Echo";
}

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFut<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Deflate)
                    .send_compressed(CompressionEncoding::Gzip);
            let resp = match req.uri().path() {
                "/test.echo.Echo/Unary" => {
                    let svc = service_fn(|r: Request<EchoRequest>| async move {
                        let m = r.into_inner();
                        Ok::<_, Status>(Response::new(reply(&m, m.seq)))
                    });
                    grpc.unary(svc, req).await
                }
                "/test.echo.Echo/ServerStream" => {
                    let svc = service_fn(|r: Request<EchoRequest>| async move {
                        let m = r.into_inner();
                        let items: Vec<Result<EchoReply, Status>> =
                            (0..3).map(|i| Ok(reply(&m, i))).collect();
                        Ok::<_, Status>(Response::new(tokio_stream::iter(items)))
                    });
                    grpc.server_streaming(svc, req).await
                }
                "/test.echo.Echo/ClientStream" => {
                    let svc = service_fn(|r: Request<Streaming<EchoRequest>>| async move {
                        let mut s = r.into_inner();
                        let mut texts = Vec::new();
                        while let Some(m) = s.message().await? {
                            texts.push(m.text);
                        }
                        Ok::<_, Status>(Response::new(EchoReply {
                            text: texts.join("+"),
                            payload: Vec::new(),
                            seq: texts.len() as i32,
                        }))
                    });
                    grpc.client_streaming(svc, req).await
                }
                "/test.echo.Echo/Bidi" => {
                    let svc = service_fn(|r: Request<Streaming<EchoRequest>>| async move {
                        let out = r.into_inner().map(|m| m.map(|m| reply(&m, m.seq)));
                        Ok::<_, Status>(Response::new(out))
                    });
                    grpc.streaming(svc, req).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(resp)
        })
    }
}
