//! The HAProxy configuration section, ready to paste, with comments that say what each part is.

use std::fmt::Write as _;

use serde_json::json;

use super::check::TlsOptions;
use super::{HealthCheck, Recorded};
use crate::http2::call::printable;

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
    /// Check over TLS (`tcp-check connect ssl alpn h2`).
    pub tls: Option<TlsOptions>,
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
            tls: None,
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
        "# gRPC health check made by h2scope from {} (connection {}, stream {}): {}",
        if opts.source.is_empty() {
            "a capture"
        } else {
            &opts.source
        },
        c.conn,
        c.stream,
        printable(&path)
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
    match &opts.tls {
        None => {
            let _ = writeln!(s, "    tcp-check connect");
        }
        Some(tls) => {
            let _ = writeln!(
                s,
                "    # over TLS{}: the same HTTP/2 bytes inside; gRPC servers want ALPN h2",
                match &rec.tls {
                    Some(info) => format!(", as recorded ({info})"),
                    None => String::new(),
                }
            );
            let _ = write!(s, "    tcp-check connect ssl alpn h2");
            if let Some(sni) = &tls.sni {
                let _ = write!(s, " sni {}", word(sni));
            }
            let _ = writeln!(s);
        }
    }
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
    let verify = match opts.tls.as_ref().map(|t| &t.ca_file) {
        None => String::new(),
        Some(None) => {
            let _ = writeln!(
                s,
                "    # verify none: the server's certificate is not checked (h2scope haproxy --ca-file checks it)"
            );
            " verify none".into()
        }
        Some(Some(ca)) => format!(
            " verify required ca-file {}",
            word(&ca.display().to_string())
        ),
    };
    let _ = writeln!(
        s,
        "    server {} {addr} check{verify} inter {} rise {} fall {}",
        opts.server_name, opts.inter_ms, opts.rise, opts.fall
    );
    s
}

/// One word of HAProxy's configuration: as it is when nothing in it is special, else quoted
/// (single quotes expand nothing; double quotes would expand `$NAME`).
fn word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@,=%~".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else if !s.contains('\'') {
        format!("'{s}'")
    } else {
        let mut out = String::from("\"");
        for c in s.chars() {
            if matches!(c, '"' | '\\' | '$') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }
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
        "tls": opts.tls.as_ref().map(|t| json!({
            "sni": t.sni,
            "ca_file": t.ca_file.as_ref().map(|p| p.display().to_string()),
            "alpn": "h2",
        })),
        "config": render(rec, hc, opts),
    })
}

#[cfg(test)]
mod tests {
    use super::word;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(word("/etc/ssl/ca.pem"), "/etc/ssl/ca.pem");
        assert_eq!(word("api.example.com"), "api.example.com");
        assert_eq!(word("/my certs/ca.pem"), "'/my certs/ca.pem'");
        assert_eq!(word("/a/$HOME#x"), "'/a/$HOME#x'");
        assert_eq!(word("/it's/$x"), "\"/it's/\\$x\"");
        assert_eq!(word(""), "''");
    }
}
