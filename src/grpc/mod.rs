//! gRPC over HTTP/2: recognising gRPC streams, cutting messages out of DATA, decompressing them
//! and decoding them with protobuf schemas (or without).

pub mod compression;
pub mod deframe;
pub mod memo;
pub mod message;
pub mod schema;
pub mod wire;

use deframe::{Deframer, RawMessage};

/// Limits and options of the gRPC stage.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// Messages larger than this are reported with their length, not kept (gRPC's default
    /// receive limit is 4 MiB).
    pub max_message_size: usize,
    /// Decompressed size allowed per message.
    pub max_decompressed_size: usize,
    /// How much of the message bodies is decoded.
    pub bodies: Bodies,
    /// Keep each message's (decompressed) bytes in its event, for exporters that replay them.
    pub keep_bytes: bool,
    /// With `keep_bytes`, also note where the field of each top-level key of a message's JSON
    /// lies in those bytes ([`message::Decoded::key_spans`], for the TUI's hex pane).
    pub key_spans: bool,
}

/// How much of the message bodies is decoded: what the output shows decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    /// Not decoded, not even decompressed (unless `keep_bytes`); only server-reflection
    /// responses are decoded, for the schemas they carry: the harvesting first pass,
    /// summary-only runs, calls only, statistics.
    Skip,
    /// Decoded with their schema, so that their type and problems are known, but neither
    /// written as JSON nor read without a schema: `-T fields -e type`.
    Check,
    /// Decoded and shown: JSON, or the field tree of a message without a schema.
    Show,
}

impl GrpcConfig {
    /// Whether anything reads what the messages of a call with this path carry: decoding or
    /// keeping them, or a server-reflection call's schemas.
    pub fn reads_contents(&self, path: Option<&str>) -> bool {
        self.bodies != Bodies::Skip || self.keep_bytes || message::is_reflection(path)
    }

    /// Whether anything reads the message bodies of a stream of this flavor and path: its
    /// contents, or gRPC-Web's trailer frames.
    pub fn reads_bodies(&self, flavor: Flavor, path: Option<&str>) -> bool {
        self.reads_contents(path) || flavor != Flavor::Grpc
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            max_message_size: 4 << 20,
            max_decompressed_size: 4 << 20,
            bodies: Bodies::Show,
            keep_bytes: false,
            key_spans: false,
        }
    }
}

/// The kinds of gRPC a `content-type` announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `application/grpc`, `+proto` or another codec.
    Grpc,
    /// gRPC-Web (`application/grpc-web`, `+proto`): trailers travel in DATA, flagged 0x80.
    Web,
    /// gRPC-Web text: the gRPC-Web stream, base64-encoded.
    WebText,
}

/// `(flavor, bodies are JSON)` for a gRPC content-type, `None` for anything else.
pub fn classify(content_type: &[u8]) -> Option<(Flavor, bool)> {
    // What nearly every call carries, decided before splitting and comparing without case.
    if content_type == b"application/grpc" {
        return Some((Flavor::Grpc, false));
    }
    let ct = std::str::from_utf8(content_type).ok()?;
    let ct = ct.split(';').next()?.trim();
    let (base, codec) = match ct.split_once('+') {
        Some((b, c)) => (b, Some(c)),
        None => (ct, None),
    };
    // Media types are case-insensitive; compared in place, as every call's headers pass here.
    let flavor = [
        ("application/grpc", Flavor::Grpc),
        ("application/grpc-web", Flavor::Web),
        ("application/grpc-web-text", Flavor::WebText),
    ]
    .into_iter()
    .find(|(name, _)| base.eq_ignore_ascii_case(name))?
    .1;
    Some((
        flavor,
        codec.is_some_and(|c| c.eq_ignore_ascii_case("json")),
    ))
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request = 0,
    Response = 1,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Request => "request",
            Side::Response => "response",
        }
    }
}

/// gRPC state of one HTTP/2 stream.
#[derive(Debug)]
pub struct GrpcStream {
    pub flavor: Flavor,
    pub json: bool,
    /// `grpc-encoding` of each side.
    pub encoding: [Option<String>; 2],
    deframers: [Deframer; 2],
    /// Messages seen each way.
    pub counts: [u32; 2],
    /// The path messages are labelled with, once looked up (the outer `None`: not yet).
    pub path: Option<Option<std::sync::Arc<str>>>,
}

impl GrpcStream {
    pub fn new(flavor: Flavor, json: bool, max_message: usize) -> Self {
        let text = flavor == Flavor::WebText;
        GrpcStream {
            flavor,
            json,
            encoding: [None, None],
            deframers: [
                Deframer::new(max_message, text),
                Deframer::new(max_message, text),
            ],
            counts: [0, 0],
            path: None,
        }
    }

    /// See [`Deframer::keep_bodies`].
    pub fn keep_bodies(&mut self, keep: bool) {
        for d in &mut self.deframers {
            d.keep_bodies(keep);
        }
    }

    pub fn data<'a>(&mut self, side: Side, bytes: &'a [u8], out: &mut Vec<RawMessage<'a>>) {
        self.deframers[side as usize].push(bytes, out);
    }

    /// Returns whether message framing survived the gap.
    pub fn gap(&mut self, side: Side, n: u64, out: &mut Vec<RawMessage<'_>>) -> bool {
        self.deframers[side as usize].gap(n, out)
    }

    /// A message begun and not finished on this side: `(bytes seen, bytes expected)`.
    pub fn pending(&self, side: Side) -> Option<(u32, u32)> {
        self.deframers[side as usize].pending()
    }

    /// The sides were mistaken for each other (see `Call::swap_sides`).
    pub fn swap_sides(&mut self) {
        self.encoding.swap(0, 1);
        self.deframers.swap(0, 1);
        self.counts.swap(0, 1);
        self.path = None;
    }

    pub fn framing_lost(&self, side: Side) -> bool {
        self.deframers[side as usize].is_lost()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(classify(b"application/grpc"), Some((Flavor::Grpc, false)));
        assert_eq!(
            classify(b"application/grpc+proto"),
            Some((Flavor::Grpc, false))
        );
        assert_eq!(
            classify(b"application/grpc+json"),
            Some((Flavor::Grpc, true))
        );
        assert_eq!(
            classify(b"Application/GRPC; charset=utf-8"),
            Some((Flavor::Grpc, false))
        );
        assert_eq!(
            classify(b"application/grpc-web"),
            Some((Flavor::Web, false))
        );
        assert_eq!(
            classify(b"application/grpc-web+proto"),
            Some((Flavor::Web, false))
        );
        assert_eq!(
            classify(b"application/grpc-web-text"),
            Some((Flavor::WebText, false))
        );
        assert_eq!(
            classify(b"application/grpc-web-text+proto"),
            Some((Flavor::WebText, false))
        );
        assert_eq!(classify(b"application/json"), None);
        assert_eq!(classify(b"application/grpcx"), None);
        assert_eq!(classify(b"\xff"), None);
    }
}
