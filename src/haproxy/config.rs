//! The HAProxy configuration section, ready to paste, with comments that say what each part is.

use std::fmt::Write as _;

use serde_json::json;

use super::{HealthCheck, Recorded};

#[derive(Debug, Clone)]
pub struct ConfigOptions {
    pub backend: String,
    pub server_name: String,
    /// `host:port` of the server line; the recorded server when not given.
    pub server_addr: Option<String>,
    pub inter_ms: u32,
    pub rise: u32,
    pub fall: u32,
    /// The capture the call came from, for the comment.
    pub source: String,
}

impl Default for ConfigOptions {
    fn default() -> Self {
        ConfigOptions {
            backend: "grpc_backend".into(),
            server_name: "grpc1".into(),
            server_addr: None,
            inter_ms: 2000,
            rise: 2,
            fall: 3,
            source: String::new(),
        }
    }
}

/// The `backend` section.
pub fn render(rec: &Recorded, hc: &HealthCheck, opts: &ConfigOptions) -> String {
    let c = &rec.call;
    let mut s = String::new();
    let path = c.path().unwrap_or_default();
    let _ = writeln!(
        s,
        "# gRPC health check made by h2scope from {} (connection {}, stream {}): {path}",
        if opts.source.is_empty() {
            "a capture"
        } else {
            &opts.source
        },
        c.conn,
        c.stream
    );
    let status = c
        .grpc_status()
        .map(|g| g.to_string())
        .unwrap_or_else(|| "none".into());
    let _ = writeln!(s, "# recorded answer: grpc-status {status}");
    let _ = writeln!(
        s,
        "# The request is rebuilt to stand alone on a new connection (stream 1, no HPACK state)."
    );
    let _ = writeln!(s, "backend {}", opts.backend);
    let _ = writeln!(s, "    mode tcp");
    let _ = writeln!(s, "    option tcp-check");
    let _ = writeln!(s, "    tcp-check connect");
    for part in &hc.parts {
        let _ = writeln!(s, "    # {}", part.comment);
        let _ = writeln!(s, "    tcp-check send-binary {}", hex::encode(&part.bytes));
    }
    match &hc.fast_fail {
        Some(ff) => {
            let _ = writeln!(
                s,
                "    # wait for the part of the answer a failing one shares (uppercase hex dump, byte-aligned)"
            );
            let _ = writeln!(s, "    tcp-check expect rbinary {}", ff.rbinary());
            let _ = writeln!(
                s,
                "    # then decide at once on what arrived: {}",
                hc.expect_comment
            );
            let _ = writeln!(
                s,
                "    tcp-check expect min-recv 0 binary {}",
                hex::encode(&hc.expect)
            );
        }
        None => {
            let _ = writeln!(s, "    # expect {}", hc.expect_comment);
            let _ = writeln!(s, "    tcp-check expect binary {}", hex::encode(&hc.expect));
        }
    }
    let addr = opts
        .server_addr
        .clone()
        .unwrap_or_else(|| c.server.to_string());
    let _ = writeln!(
        s,
        "    server {} {addr} check inter {} rise {} fall {}",
        opts.server_name, opts.inter_ms, opts.rise, opts.fall
    );
    s
}

/// The same as data, for scripts.
pub fn render_json(rec: &Recorded, hc: &HealthCheck, opts: &ConfigOptions) -> serde_json::Value {
    json!({
        "path": rec.call.path(),
        "conn": rec.call.conn,
        "stream": rec.call.stream,
        "send_hex": hex::encode(hc.send()),
        "send_parts": hc.parts.iter().map(|p| json!({"comment": p.comment, "hex": hex::encode(&p.bytes)})).collect::<Vec<_>>(),
        "expect_hex": hex::encode(&hc.expect),
        "fast_fail_rbinary": hc.fast_fail.as_ref().map(|f| f.rbinary()),
        "warnings": hc.warnings,
        "config": render(rec, hc, opts),
    })
}
