//! The whole offline pipeline: packets in, events out.
//!
//! capture record → link/IP/TCP decode → flow table and reassembly → HTTP/2 connection state →
//! events to a [`Sink`]. One pass, bounded state.

use std::collections::BTreeMap;

use crate::capture::link::{self, Skip};
use crate::capture::Packet;
use crate::event::Sink;
use crate::grpc::schema::Schemas;
use crate::grpc::GrpcConfig;
use crate::http2::connection::{Connection, Ctx, Http2Config, Mode};
use crate::tcp::{
    CloseReason, Dir, FlowConfig, FlowHandler, FlowInfo, FlowTable, FlowTableStats, PacketMeta,
    StreamEvent,
};

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub flows: FlowConfig,
    pub http2: Http2Config,
    pub grpc: GrpcConfig,
}

/// Counts for the end-of-run summary that events alone do not carry.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub packets: u64,
    pub tcp_packets: u64,
    /// Packets that yielded no TCP segment, by reason.
    pub skipped_packets: BTreeMap<String, u64>,
    pub http2_connections: u64,
    /// HTTP/1.1 connections carrying gRPC-Web.
    pub http1_connections: u64,
    /// TCP connections that were not HTTP/2 (or not recognisable as such).
    pub other_connections: u64,
    pub other_bytes: u64,
    pub first_ts_ns: Option<i64>,
    pub last_ts_ns: i64,
    pub flows: FlowTableStats,
}

struct Handler<'a> {
    cfg: &'a Http2Config,
    grpc: &'a GrpcConfig,
    schemas: &'a mut Schemas,
    sink: &'a mut dyn Sink,
    stats: &'a mut Stats,
}

impl Handler<'_> {
    fn ctx<'b>(&'b mut self, info: &'b FlowInfo, meta: &'b PacketMeta) -> Ctx<'b> {
        Ctx {
            info,
            meta,
            sink: &mut *self.sink,
            cfg: self.cfg,
            grpc: self.grpc,
            schemas: &mut *self.schemas,
        }
    }
}

impl FlowHandler for Handler<'_> {
    type State = Connection;

    fn open(&mut self, info: &FlowInfo, _meta: &PacketMeta) -> Connection {
        Connection::new(info, self.cfg)
    }

    fn stream(
        &mut self,
        info: &FlowInfo,
        conn: &mut Connection,
        dir: Dir,
        event: StreamEvent<'_>,
        meta: &PacketMeta,
    ) {
        let mut ctx = self.ctx(info, meta);
        match event {
            StreamEvent::Data(bytes) => conn.data(dir, bytes, &mut ctx),
            StreamEvent::Gap(n) => conn.gap(dir, n, &mut ctx),
            StreamEvent::Fin | StreamEvent::Rst => {}
        }
    }

    fn close(
        &mut self,
        info: &FlowInfo,
        conn: &mut Connection,
        _reason: CloseReason,
        meta: &PacketMeta,
    ) {
        conn.close(&mut self.ctx(info, meta));
        match conn.mode() {
            Mode::Http2 | Mode::Upgrade => self.stats.http2_connections += 1,
            Mode::Http1 => self.stats.http1_connections += 1,
            Mode::Other | Mode::Detect => self.stats.other_connections += 1,
        }
        self.stats.other_bytes += conn.skipped_bytes();
    }
}

/// Streams packets through the pipeline into a sink.
pub struct Dissector {
    cfg: Config,
    flows: FlowTable<Connection>,
    schemas: Schemas,
    stats: Stats,
}

impl Dissector {
    /// With the bundled schemas only.
    pub fn new(cfg: Config) -> Self {
        Self::with_schemas(cfg, Schemas::bundled())
    }

    pub fn with_schemas(cfg: Config, schemas: Schemas) -> Self {
        Dissector {
            flows: FlowTable::new(cfg.flows),
            cfg,
            schemas,
            stats: Stats::default(),
        }
    }

    pub fn schemas(&self) -> &Schemas {
        &self.schemas
    }

    /// The schemas, including what reflection exchanges taught, for a second pass.
    pub fn into_schemas(self) -> Schemas {
        self.schemas
    }

    /// Dissects one packet; returns the number of the TCP connection it belongs to, if any.
    pub fn packet(&mut self, pkt: &Packet<'_>, sink: &mut dyn Sink) -> Option<u64> {
        self.stats.packets += 1;
        self.stats.first_ts_ns.get_or_insert(pkt.ts_ns);
        self.stats.last_ts_ns = pkt.ts_ns;
        let seg = match link::decode(pkt.link, pkt.data) {
            Ok(seg) => seg,
            Err(skip) => {
                self.count_skip(skip);
                return None;
            }
        };
        self.stats.tcp_packets += 1;
        let meta = PacketMeta {
            index: pkt.index,
            ts_ns: pkt.ts_ns,
        };
        let mut handler = Handler {
            cfg: &self.cfg.http2,
            grpc: &self.cfg.grpc,
            schemas: &mut self.schemas,
            sink,
            stats: &mut self.stats,
        };
        self.flows.segment(&seg, &meta, &mut handler)
    }

    fn count_skip(&mut self, skip: Skip) {
        *self
            .stats
            .skipped_packets
            .entry(skip.describe())
            .or_default() += 1;
    }

    /// End of input: open connections are flushed and their calls reported.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> Stats {
        let meta = PacketMeta {
            index: self.stats.packets,
            ts_ns: self.stats.last_ts_ns,
        };
        let mut handler = Handler {
            cfg: &self.cfg.http2,
            grpc: &self.cfg.grpc,
            schemas: &mut self.schemas,
            sink,
            stats: &mut self.stats,
        };
        self.flows.finish(&meta, &mut handler);
        self.stats.flows = self.flows.stats();
        self.stats.clone()
    }
}
