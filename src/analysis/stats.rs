//! Per-method statistics: calls, grpc-status mix, latency percentiles, sizes, messages per call;
//! per connection and overall totals.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::event::{Event, Sink};
use crate::http2::call::{grpc_status_name, Call, CallEnd};

/// Latencies kept per method for exact percentiles; beyond, a reservoir sample stands in.
const MAX_SAMPLES: usize = 100_000;

#[derive(Debug, Clone, Default)]
pub struct MethodStats {
    pub calls: u64,
    /// `grpc-status` (name, or HTTP status for non-gRPC, or how the call ended) → count.
    pub outcomes: BTreeMap<String, u64>,
    latencies_ns: Vec<i64>,
    seen: u64,
    rng: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
    pub request_messages: u64,
    pub response_messages: u64,
}

impl MethodStats {
    fn add(&mut self, c: &Call) {
        self.calls += 1;
        let outcome = match (c.grpc_status(), c.status(), c.end) {
            (Some(g), _, _) => grpc_status_name(g)
                .map(String::from)
                .unwrap_or_else(|| g.to_string()),
            (None, _, CallEnd::Reset { .. }) => "RESET".into(),
            (None, _, CallEnd::Unfinished) => "UNFINISHED".into(),
            (None, Some(s), _) => format!("HTTP {s}"),
            (None, None, _) => "-".into(),
        };
        *self.outcomes.entry(outcome).or_default() += 1;
        self.request_bytes += c.request_bytes;
        self.response_bytes += c.response_bytes;
        self.max_request_bytes = self.max_request_bytes.max(c.request_bytes);
        self.max_response_bytes = self.max_response_bytes.max(c.response_bytes);
        self.request_messages += c.request_messages as u64;
        self.response_messages += c.response_messages as u64;
        if c.end == CallEnd::Unfinished {
            return;
        }
        // Reservoir sampling keeps the percentiles honest past the cap.
        self.seen += 1;
        if self.rng == 0 {
            self.rng = 0x9e37_79b9_7f4a_7c15;
        }
        let d = c.duration_ns();
        if self.latencies_ns.len() < MAX_SAMPLES {
            self.latencies_ns.push(d);
        } else {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let j = (self.rng % self.seen) as usize;
            if j < MAX_SAMPLES {
                self.latencies_ns[j] = d;
            }
        }
    }

    /// Latency percentile (0-100) in nanoseconds, over finished calls.
    pub fn percentile(&self, p: f64) -> Option<i64> {
        if self.latencies_ns.is_empty() {
            return None;
        }
        let mut v = self.latencies_ns.clone();
        v.sort_unstable();
        let rank = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
        Some(v[rank.min(v.len() - 1)])
    }

    fn json(&self) -> Value {
        let ms = |p: f64| self.percentile(p).map(|n| n as f64 / 1e6);
        json!({
            "calls": self.calls,
            "outcomes": self.outcomes,
            "latency_ms": {"p50": ms(50.0), "p90": ms(90.0), "p99": ms(99.0), "max": ms(100.0)},
            "request_bytes": {"total": self.request_bytes, "avg": avg(self.request_bytes, self.calls), "max": self.max_request_bytes},
            "response_bytes": {"total": self.response_bytes, "avg": avg(self.response_bytes, self.calls), "max": self.max_response_bytes},
            "messages_per_call": {"request": avg(self.request_messages, self.calls), "response": avg(self.response_messages, self.calls)},
        })
    }
}

fn avg(total: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        total as f64 / n as f64
    }
}

/// Collects call statistics by method and by connection.
#[derive(Debug, Default)]
pub struct CallStats {
    pub by_method: BTreeMap<String, MethodStats>,
    pub by_conn: BTreeMap<u64, MethodStats>,
    pub all: MethodStats,
}

impl Sink for CallStats {
    fn event(&mut self, event: Event) {
        if let Event::Call(c) = event {
            let method = c.path().unwrap_or_else(|| "(unknown path)".into());
            self.by_method.entry(method).or_default().add(&c);
            self.by_conn.entry(c.conn).or_default().add(&c);
            self.all.add(&c);
        }
    }
}

impl CallStats {
    pub fn to_json(&self) -> Value {
        json!({
            "event": "stats",
            "methods": self.by_method.iter().map(|(m, s)| (m.clone(), s.json())).collect::<serde_json::Map<_, _>>(),
            "connections": self.by_conn.iter().map(|(c, s)| (c.to_string(), s.json())).collect::<serde_json::Map<_, _>>(),
            "total": self.all.json(),
        })
    }

    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<48} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}  outcomes",
            "method", "calls", "p50 ms", "p90 ms", "p99 ms", "max ms", "req B avg", "resp B avg"
        );
        let row = |s: &mut String, name: &str, m: &MethodStats| {
            let p = |q: f64| {
                m.percentile(q)
                    .map(|n| format!("{:.3}", n as f64 / 1e6))
                    .unwrap_or_else(|| "-".into())
            };
            let outcomes: Vec<String> =
                m.outcomes.iter().map(|(k, v)| format!("{k}×{v}")).collect();
            let _ = writeln!(
                s,
                "{:<48} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10.1} {:>10.1}  {}",
                name,
                m.calls,
                p(50.0),
                p(90.0),
                p(99.0),
                p(100.0),
                avg(m.request_bytes, m.calls),
                avg(m.response_bytes, m.calls),
                outcomes.join(" ")
            );
        };
        for (name, m) in &self.by_method {
            row(&mut s, name, m);
        }
        row(&mut s, "(all)", &self.all);
        let _ = writeln!(s, "\nper connection:");
        for (c, m) in &self.by_conn {
            row(&mut s, &format!("#{c}"), m);
        }
        s
    }
}
