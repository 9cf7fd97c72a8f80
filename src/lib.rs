//! h2scope: look inside HTTP/2 and gRPC traffic in packet captures.
//!
//! The pipeline, one module per stage, data flowing one way:
//! [`capture`] (pcap/pcapng records, link layers) → [`tcp`] (flows, reassembly) → [`tls`] (decryption with logged secrets) →
//! [`http2`] (frames, HPACK, connection state, calls) → [`grpc`] (messages, compression,
//! schemas, protobuf decoding) → [`event`]s → [`output`] sinks.
//! [`pipeline::Dissector`] ties the stages together.

pub mod analysis;
pub mod capture;
pub mod event;
pub mod grpc;
pub mod haproxy;
pub mod http1;
pub mod http2;
pub mod output;
pub mod parallel;
pub mod pipeline;
pub mod spill;
pub mod tcp;
pub mod tls;
pub mod tui;
