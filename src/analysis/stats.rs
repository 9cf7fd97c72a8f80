//! Per-method statistics: calls, grpc-status mix, latency percentiles, sizes, messages per call;
//! per connection and overall totals.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::analysis::counts::{self, Counts};
use crate::analysis::kept::PerConn;
use crate::analysis::latency::Latencies;
use crate::event::{Event, Sink};
use crate::http2::call::{grpc_status_name, lossless_str, printable, Call, CallEnd};
use crate::spill::Spill;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MethodStats {
    pub calls: u64,
    /// `grpc-status` (name, or HTTP status for non-gRPC, or how the call ended) → count, sorted
    /// by name.
    pub outcomes: Counts,
    /// Finished calls' durations.
    latencies: Durations,
    /// From each call's start to its response headers, for the calls that had them.
    to_response: Durations,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
    pub request_messages: u64,
    pub response_messages: u64,
}

impl MethodStats {
    /// How a call ended, as the report counts it: the `grpc-status` name, or the HTTP status
    /// for non-gRPC, or how the call ended. Worked out once per call, for its three rows.
    fn outcome(c: &Call) -> Cow<'static, str> {
        match (c.grpc_status(), c.status(), c.end) {
            (Some(g), _, _) => grpc_status_name(g)
                .map(Cow::Borrowed)
                .unwrap_or_else(|| g.to_string().into()),
            _ if c.reset_at_deadline() => "RESET_AT_DEADLINE".into(),
            (None, _, CallEnd::Reset { .. }) => "RESET".into(),
            (None, _, CallEnd::Unfinished) => "UNFINISHED".into(),
            (None, _, CallEnd::Refused { .. }) => "REFUSED".into(),
            (None, Some(s), _) => format!("HTTP {s}").into(),
            (None, None, _) => "-".into(),
        }
    }

    // A `Cow` and not a `&str`: a status name is `'static`, and a new row keeps it for free.
    #[allow(clippy::ptr_arg)]
    fn add(&mut self, c: &Call, outcome: &Cow<'static, str>) {
        self.calls += 1;
        self.count_outcome(outcome, 1);
        self.request_bytes += c.request_bytes;
        self.response_bytes += c.response_bytes;
        self.max_request_bytes = self.max_request_bytes.max(c.request_bytes);
        self.max_response_bytes = self.max_response_bytes.max(c.response_bytes);
        self.request_messages += c.request_messages as u64;
        self.response_messages += c.response_messages as u64;
        if let Some(t) = c.time_to_response_ns() {
            self.to_response.push(t);
        }
        // A call never processed has no latency of the server's.
        if matches!(c.end, CallEnd::Unfinished | CallEnd::Refused { .. }) {
            return;
        }
        self.latencies.push(c.duration_ns());
    }

    /// `n` more calls that ended so; past [`MAX_OUTCOMES`] kinds, as [`OTHER_OUTCOMES`] (a
    /// grpc-status is any number, an HTTP status any text).
    #[allow(clippy::ptr_arg)]
    fn count_outcome(&mut self, outcome: &Cow<'static, str>, n: u64) {
        counts::add(&mut self.outcomes, outcome, n, MAX_OUTCOMES, OTHER_OUTCOMES);
    }

    /// Takes in the figures of another part of the capture (another thread's connections), as
    /// if its calls had come here.
    pub fn merge(&mut self, mut other: MethodStats) {
        self.calls += other.calls;
        for (name, n) in std::mem::take(&mut other.outcomes) {
            self.count_outcome(&name, n);
        }
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
        self.max_request_bytes = self.max_request_bytes.max(other.max_request_bytes);
        self.max_response_bytes = self.max_response_bytes.max(other.max_response_bytes);
        self.request_messages += other.request_messages;
        self.response_messages += other.response_messages;
        self.latencies.merge(std::mem::take(&mut other.latencies));
        self.to_response.merge(other.to_response);
    }

    /// The sealed figures in a compact form, for [`decode`](Self::decode).
    fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.calls,
            self.request_bytes,
            self.response_bytes,
            self.max_request_bytes,
            self.max_response_bytes,
            self.request_messages,
            self.response_messages,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        self.latencies.encode(out);
        self.to_response.encode(out);
        out.extend_from_slice(&(self.outcomes.len() as u32).to_le_bytes());
        for (name, n) in &self.outcomes {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn decode(mut b: &[u8]) -> Option<MethodStats> {
        let mut u = || take::<8>(&mut b).map(u64::from_le_bytes);
        let mut m = MethodStats {
            calls: u()?,
            request_bytes: u()?,
            response_bytes: u()?,
            max_request_bytes: u()?,
            max_response_bytes: u()?,
            request_messages: u()?,
            response_messages: u()?,
            ..MethodStats::default()
        };
        m.latencies = Durations::decode(&mut b)?;
        m.to_response = Durations::decode(&mut b)?;
        let n = u32::from_le_bytes(take::<4>(&mut b)?);
        for _ in 0..n {
            let len = u32::from_le_bytes(take::<4>(&mut b)?) as usize;
            let (name, rest) = b.split_at_checked(len)?;
            b = rest;
            let name = String::from_utf8_lossy(name).into_owned();
            let count = u64::from_le_bytes(take::<8>(&mut b)?);
            m.outcomes.push((name.into(), count));
        }
        Some(m)
    }

    /// Works out the percentiles and frees the samples: no more calls are coming.
    pub fn seal(&mut self) {
        self.latencies.seal();
        self.to_response.seal();
    }

    /// Latency percentile (0-100) in nanoseconds, over finished calls. Once sealed, only
    /// p50, p90, p99 and the maximum are known.
    pub fn percentile(&self, p: f64) -> Option<i64> {
        self.latencies.percentile(p)
    }

    /// Percentile (0-100) of the time from a call's start to its response headers.
    pub fn time_to_response_percentile(&self, p: f64) -> Option<i64> {
        self.to_response.percentile(p)
    }

    fn limit_exact(&mut self, n: usize) {
        self.latencies.samples.limit_exact(n);
        self.to_response.samples.limit_exact(n);
    }

    fn json(&self) -> Value {
        let ms = |p: f64| self.percentile(p).map(|n| n as f64 / 1e6);
        let ttr = |p: f64| self.time_to_response_percentile(p).map(|n| n as f64 / 1e6);
        json!({
            "calls": self.calls,
            "outcomes": counts::to_json(&self.outcomes),
            "latency_ms": {"p50": ms(50.0), "p90": ms(90.0), "p99": ms(99.0), "max": ms(100.0)},
            "time_to_response_ms": {"p50": ttr(50.0), "p90": ttr(90.0), "p99": ttr(99.0), "max": ttr(100.0)},
            "request_bytes": {"total": self.request_bytes, "avg": avg(self.request_bytes, self.calls), "max": self.max_request_bytes},
            "response_bytes": {"total": self.response_bytes, "avg": avg(self.response_bytes, self.calls), "max": self.max_response_bytes},
            "messages_per_call": {"request": avg(self.request_messages, self.calls), "response": avg(self.response_messages, self.calls)},
        })
    }
}

/// Durations of calls and their percentiles: the samples while more can come, then, once a
/// connection has ended, p50, p90, p99 and max alone, so that the samples can go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Durations {
    samples: Latencies,
    sealed: Option<[i64; 4]>,
}

impl Durations {
    fn push(&mut self, ns: i64) {
        self.unseal();
        self.samples.push(ns);
    }

    /// A sample after sealing (not expected): start again from the sealed figures.
    fn unseal(&mut self) {
        if let Some(sealed) = self.sealed.take() {
            self.samples = Latencies::Exact(sealed.to_vec());
        }
    }

    fn merge(&mut self, mut other: Durations) {
        self.unseal();
        other.unseal();
        self.samples.merge(other.samples);
    }

    fn percentiles(&self) -> [i64; 4] {
        [50.0, 90.0, 99.0, 100.0].map(|p| self.percentile(p).unwrap_or(0))
    }

    fn seal(&mut self) {
        if self.sealed.is_some() || self.samples.is_empty() {
            return;
        }
        self.sealed = Some(self.percentiles());
        self.samples = Latencies::default();
    }

    fn percentile(&self, p: f64) -> Option<i64> {
        if let Some(s) = &self.sealed {
            return Some(match p {
                p if p <= 50.0 => s[0],
                p if p <= 90.0 => s[1],
                p if p <= 99.0 => s[2],
                _ => s[3],
            });
        }
        self.samples.percentile(p)
    }

    /// Sealed, for [`decode`](Self::decode): a flag, then the four figures.
    fn encode(&self, out: &mut Vec<u8>) {
        let sealed = self
            .sealed
            .or_else(|| (!self.samples.is_empty()).then(|| self.percentiles()));
        out.push(u8::from(sealed.is_some()));
        for v in sealed.unwrap_or_default() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn decode(b: &mut &[u8]) -> Option<Durations> {
        let has = take::<1>(b)?[0] == 1;
        let mut sealed = [0i64; 4];
        for v in &mut sealed {
            *v = i64::from_le_bytes(take::<8>(b)?);
        }
        Some(Durations {
            samples: Latencies::default(),
            sealed: has.then_some(sealed),
        })
    }
}

fn take<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = b.split_first_chunk::<N>()?;
    *b = rest;
    Some(*head)
}

/// An interval's start as its rows name it, `2026-11-22 08:46:00.000` (UTC).
fn interval_label(start_ns: i64) -> String {
    let mut label = String::new();
    crate::output::clock::push_absolute_millis(
        &mut label,
        crate::output::clock::TimeFormat::UtcDate,
        start_ns,
    );
    label
}

/// An interval's figures as JSON: those of a method, with when the interval starts (seconds
/// since 1970, and in RFC 3339) and how long it is.
fn interval_json(start_ns: i64, width_ns: i64, m: &MethodStats) -> Value {
    let mut v = m.json();
    v["start"] = json!(start_ns as f64 / 1e9);
    v["start_utc"] = json!(format!("{}Z", interval_label(start_ns).replace(' ', "T")));
    v["seconds"] = json!(width_ns as f64 / 1e9);
    v
}

fn avg(total: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        total as f64 / n as f64
    }
}

/// Calls by the interval of time in which they ended (`stats --interval`), as a metrics system
/// counts a call when it completes. Intervals start on multiples of their width since 1970
/// (UTC), so that they line up with dashboards and logs rather than with the capture's start.
#[derive(Debug, Clone)]
pub struct Intervals {
    width_ns: i64,
    /// By the interval's start, in nanoseconds since 1970.
    by_start: BTreeMap<i64, MethodStats>,
    /// Intervals starting before this have been trimmed (see [`Intervals::add`]).
    trimmed_below: i64,
    /// Calls that ended in intervals past the first [`MAX_INTERVALS`] that had calls.
    pub left_out: u64,
}

/// Intervals with calls that are counted: a day in intervals of a second. A narrower width on
/// a long capture (or timestamps scattered by damage) would keep a row per interval in memory.
pub const MAX_INTERVALS: usize = 100_000;

/// Latencies an interval keeps one by one; more are counted in buckets (within 0.05%), so that
/// a long capture in short intervals keeps little per interval, not every latency. Few: with
/// threads, each keeps its share of every interval until the merge (at 1,000, two threads held
/// 40 MB more than one on a 1 GB capture in 1 s intervals).
const EXACT_PER_INTERVAL: usize = 64;

/// Latencies an open connection keeps one by one; more are counted in buckets (within 0.05%).
/// A long-lived channel carries calls without end, and at 8 bytes for each of its calls'
/// latencies and 8 for their times to respond, a thousand such connections open at the end of
/// a capture held their every call until the report.
const EXACT_PER_CONNECTION: usize = 1000;

impl Intervals {
    /// Intervals `width_ns` wide (at least 1).
    pub fn new(width_ns: i64) -> Self {
        Intervals {
            width_ns: width_ns.max(1),
            by_start: BTreeMap::new(),
            trimmed_below: i64::MIN,
            left_out: 0,
        }
    }

    pub fn width_ns(&self) -> i64 {
        self.width_ns
    }

    #[allow(clippy::ptr_arg)]
    fn add(&mut self, c: &Call, outcome: &Cow<'static, str>) {
        // Saturating: a timestamp from a damaged capture can lie near the ends of the range.
        let start = c
            .end_ts_ns
            .div_euclid(self.width_ns)
            .saturating_mul(self.width_ns);
        let full = self.by_start.len() >= MAX_INTERVALS;
        match self.by_start.get_mut(&start) {
            Some(m) => m.add(c, outcome),
            None if full => {
                self.left_out += 1;
                return;
            }
            None => {
                let mut m = MethodStats::default();
                m.add(c, outcome);
                self.by_start.insert(start, m);
            }
        }
        // Calls come as they end, so the intervals before the one before this are done with,
        // but for a straggler: their latencies go into buckets once there are many.
        let done = start.saturating_sub(self.width_ns);
        if done > self.trimmed_below {
            for m in self
                .by_start
                .range_mut(self.trimmed_below..done)
                .map(|(_, m)| m)
            {
                m.limit_exact(EXACT_PER_INTERVAL);
            }
            self.trimmed_below = done;
        }
    }

    fn merge(&mut self, other: Intervals) {
        self.left_out += other.left_out;
        for (start, m) in other.by_start {
            let full = self.by_start.len() >= MAX_INTERVALS;
            match self.by_start.get_mut(&start) {
                Some(mine) => mine.merge(m),
                None if full => self.left_out += m.calls,
                None => {
                    self.by_start.insert(start, m);
                }
            }
        }
    }

    /// Every interval that had calls, in time order, their latencies as every split of the
    /// capture gives them.
    pub fn finished(&mut self) -> impl Iterator<Item = (i64, &MethodStats)> {
        self.by_start
            .values_mut()
            .for_each(|m| m.limit_exact(EXACT_PER_INTERVAL));
        self.by_start.iter().map(|(&start, m)| (start, m))
    }
}

/// Where a connection's figures are.
enum ConnEntry {
    Open,
    /// In a temporary file (which of them): offset and length.
    Ended(usize, u64, u32),
}

/// Collects call statistics by method and by connection.
#[derive(Debug, Default)]
pub struct CallStats {
    pub by_method: BTreeMap<String, MethodStats>,
    /// Connections still open, packed while quiet; those that ended are in `ended`.
    pub by_conn: PerConn<MethodStats>,
    pub all: MethodStats,
    /// One file per part of the capture merged in (see [`absorb`](Self::absorb)); the last
    /// one is written to.
    ended: Vec<Ended>,
    /// All calls again by when they ended, when asked for.
    pub intervals: Option<Intervals>,
}

/// The figures of connections that ended, written to a temporary file: a capture of a million
/// connections must not hold a million rows in memory until the report is printed.
struct Ended {
    spill: Spill,
    /// (connection, offset, length) of each record.
    index: Vec<(u64, u64, u32)>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ended")
            .field("connections", &self.index.len())
            .finish()
    }
}

impl Sink for CallStats {
    fn wants(&mut self) -> crate::event::Wants<'_> {
        crate::event::Wants::Calls(None)
    }

    fn quiet(&mut self, conn: u64) {
        self.by_conn.quiet(conn);
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Call(c) => {
                let outcome = MethodStats::outcome(&c);
                // The path as `Call::path` gives it, without a new string for a method
                // already seen.
                let method = c
                    .request_header(":path")
                    .map_or(Cow::Borrowed("(unknown path)"), lossless_str);
                if let Some(m) = self.by_method.get_mut(method.as_ref()) {
                    m.add(&c, &outcome);
                } else {
                    let mut m = MethodStats::default();
                    m.add(&c, &outcome);
                    self.add_method(method.into_owned(), m);
                }
                let conn = self.by_conn.whole(c.conn, MethodStats::default);
                conn.add(&c, &outcome);
                conn.limit_exact(EXACT_PER_CONNECTION);
                self.all.add(&c, &outcome);
                if let Some(intervals) = &mut self.intervals {
                    intervals.add(&c, &outcome);
                }
            }
            // Its calls are all in: keep the connection's figures, not its samples, so that
            // memory does not grow with the number of connections' calls.
            Event::ConnectionEnd(e) => {
                if let Some(s) = self.take_ended(e.conn) {
                    self.keep_ended(e.conn, s);
                }
            }
            _ => {}
        }
    }
}

/// Kinds of outcome a row counts one by one; the rest are counted together.
pub const MAX_OUTCOMES: usize = 32;
pub const OTHER_OUTCOMES: &str = "OTHER";

/// Paths counted one by one: HTTP/2 traffic that is not gRPC may put ids in its paths (REST,
/// or a scanner), and a row per path would grow without end. Calls of paths first seen past
/// this many count under [`OTHER_PATHS`].
pub const MAX_METHODS: usize = 10_000;
pub const OTHER_PATHS: &str = "(other paths)";

impl CallStats {
    /// A method not counted yet, or its calls under [`OTHER_PATHS`] once there are
    /// [`MAX_METHODS`].
    fn add_method(&mut self, method: String, m: MethodStats) {
        if self.by_method.len() < MAX_METHODS {
            self.by_method.insert(method, m);
        } else if let Some(other) = self.by_method.get_mut(OTHER_PATHS) {
            other.merge(m);
        } else {
            self.by_method.insert(OTHER_PATHS.to_string(), m);
        }
    }

    /// Statistics that also count calls by interval of time, `width_ns` wide.
    pub fn with_intervals(width_ns: Option<i64>) -> Self {
        CallStats {
            intervals: width_ns.map(Intervals::new),
            ..CallStats::default()
        }
    }

    /// The figures of connection `conn`, which has ended (sealed: its samples dropped), if
    /// it had calls.
    fn take_ended(&mut self, conn: u64) -> Option<MethodStats> {
        let mut s = self.by_conn.remove(conn)?;
        s.seal();
        Some(s)
    }

    /// Keeps the figures of connection `conn`, which has ended: in the temporary file, or in
    /// memory if it fails.
    fn keep_ended(&mut self, conn: u64, s: MethodStats) {
        if self.ended.is_empty() {
            self.ended
                .extend(Spill::new("h2scope-stats").map(|spill| Ended {
                    spill,
                    index: Vec::new(),
                    scratch: Vec::new(),
                }));
        }
        let Some(ended) = self.ended.last_mut() else {
            self.by_conn.insert(conn, s);
            return;
        };
        ended.scratch.clear();
        s.encode(&mut ended.scratch);
        match ended.spill.append(&[&ended.scratch]) {
            Ok(at) => ended.index.push((conn, at, ended.scratch.len() as u32)),
            Err(_) => {
                self.by_conn.insert(conn, s);
            }
        }
    }

    /// Keeps the figures of connection `conn`, which has ended, as
    /// [`take_ended_record`](Self::take_ended_record) wrote them; false if they do not read
    /// back.
    pub fn keep_ended_record(&mut self, conn: u64, record: &[u8]) -> bool {
        match MethodStats::decode(record) {
            Some(s) => {
                self.keep_ended(conn, s);
                true
            }
            None => false,
        }
    }

    /// Takes the figures of connection `conn`, which has ended, as a record appended to `out`,
    /// for a part of the capture to hand them on under the capture's number of the connection
    /// ([`keep_ended_record`](Self::keep_ended_record)); false if it had no calls.
    pub fn take_ended_record(&mut self, conn: u64, out: &mut Vec<u8>) -> bool {
        let Some(s) = self.take_ended(conn) else {
            return false;
        };
        s.encode(out);
        true
    }

    /// Takes in the statistics of another part of the capture whose connections are all
    /// different (another thread's). Its connections keep their numbers: a part whose numbers
    /// are not the capture's hands each connection's figures on as it ends instead
    /// ([`take_ended_record`](Self::take_ended_record)).
    pub fn absorb(&mut self, other: CallStats) {
        for (method, m) in other.by_method {
            match self.by_method.get_mut(&method) {
                Some(mine) => mine.merge(m),
                None => self.add_method(method, m),
            }
        }
        self.all.merge(other.all);
        match (&mut self.intervals, other.intervals) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
        self.by_conn.absorb(other.by_conn);
        self.ended.extend(other.ended);
    }

    /// Every connection's figures, in connection order: the open ones from memory, the ended
    /// ones read back one at a time.
    fn connections(&mut self) -> Vec<(u64, ConnEntry)> {
        let mut all: Vec<(u64, ConnEntry)> =
            self.by_conn.conns().map(|c| (c, ConnEntry::Open)).collect();
        for (file, ended) in self.ended.iter_mut().enumerate() {
            let _ = ended.spill.flush();
            all.extend(
                ended
                    .index
                    .iter()
                    .map(|&(c, at, len)| (c, ConnEntry::Ended(file, at, len))),
            );
        }
        all.sort_unstable_by_key(|(c, _)| *c);
        all
    }

    fn conn_stats(&self, conn: u64, entry: &ConnEntry) -> Option<MethodStats> {
        match entry {
            ConnEntry::Open => Some(self.by_conn.get(conn)?.into_owned()),
            ConnEntry::Ended(file, at, len) => {
                let ended = self.ended.get(*file)?;
                let mut buf = vec![0; *len as usize];
                crate::spill::read_at(&ended.spill.reader(), *at, &mut buf)
                    .then(|| MethodStats::decode(&buf))
                    .flatten()
            }
        }
    }

    /// The whole report as one JSON value (small captures, tests); [`write_json`] streams it.
    ///
    /// [`write_json`]: Self::write_json
    pub fn to_json(&mut self) -> Value {
        let conns: serde_json::Map<String, Value> = self
            .connections()
            .iter()
            .filter_map(|(c, e)| Some((c.to_string(), self.conn_stats(*c, e)?.json())))
            .collect();
        let mut report = json!({
            "event": "stats",
            "methods": self.by_method.iter().map(|(m, s)| (m.clone(), s.json())).collect::<serde_json::Map<_, _>>(),
            "connections": conns,
            "total": self.all.json(),
        });
        if let Some(intervals) = &mut self.intervals {
            let width = intervals.width_ns();
            report["intervals"] = intervals
                .finished()
                .map(|(start, m)| interval_json(start, width, m))
                .collect();
            report["intervals_calls_left_out"] = intervals.left_out.into();
        }
        report
    }

    /// Writes [`to_json`](Self::to_json)'s line, one entry at a time: with a hundred thousand
    /// connections the whole value would be most of the memory used.
    pub fn write_json(&mut self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        fn entries<S: std::borrow::Borrow<MethodStats>>(
            w: &mut impl std::io::Write,
            items: impl Iterator<Item = (String, S)>,
        ) -> std::io::Result<()> {
            w.write_all(b"{")?;
            for (i, (k, s)) in items.enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut *w, &k)?;
                w.write_all(b":")?;
                serde_json::to_writer(&mut *w, &s.borrow().json())?;
            }
            w.write_all(b"}")
        }
        let conns = self.connections();
        w.write_all(br#"{"event":"stats","methods":"#)?;
        entries(w, self.by_method.iter().map(|(m, s)| (m.clone(), s)))?;
        w.write_all(br#","connections":"#)?;
        entries(
            w,
            conns
                .iter()
                .filter_map(|(c, e)| Some((c.to_string(), self.conn_stats(*c, e)?))),
        )?;
        w.write_all(br#","total":"#)?;
        serde_json::to_writer(&mut *w, &self.all.json())?;
        if let Some(intervals) = &mut self.intervals {
            let width = intervals.width_ns();
            w.write_all(br#","intervals":["#)?;
            for (i, (start, m)) in intervals.finished().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut *w, &interval_json(start, width, m))?;
            }
            write!(w, r#"],"intervals_calls_left_out":{}"#, intervals.left_out)?;
        }
        w.write_all(b"}\n")
    }

    pub fn to_text(&mut self) -> String {
        let mut out = Vec::new();
        let _ = self.write_text(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The text table, written row by row.
    pub fn write_text(&mut self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        writeln!(
            w,
            "{:<48} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}  outcomes",
            "method", "calls", "p50 ms", "p90 ms", "p99 ms", "max ms", "req B avg", "resp B avg"
        )?;
        let row = |w: &mut dyn std::io::Write, name: &str, m: &MethodStats| {
            let p = |q: f64| {
                m.percentile(q)
                    .map(|n| format!("{:.3}", n as f64 / 1e6))
                    .unwrap_or_else(|| "-".into())
            };
            let outcomes: Vec<String> =
                m.outcomes.iter().map(|(k, v)| format!("{k}×{v}")).collect();
            writeln!(
                w,
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
            )
        };
        for (name, m) in &self.by_method {
            row(w, &printable(name), m)?;
        }
        row(w, "(all)", &self.all)?;
        if let Some(intervals) = &mut self.intervals {
            let width = intervals.width_ns() as f64 / 1e9;
            writeln!(
                w,
                "\nper {width} s interval, calls by when they ended (UTC):"
            )?;
            for (start, m) in intervals.finished() {
                row(w, &interval_label(start), m)?;
            }
            if intervals.left_out > 0 {
                writeln!(
                    w,
                    "({} calls that ended past the first {MAX_INTERVALS} intervals with calls are left out: give a wider --interval)",
                    intervals.left_out
                )?;
            }
        }
        writeln!(w, "\nper connection:")?;
        for (c, e) in self.connections() {
            if let Some(m) = self.conn_stats(c, &e) {
                row(w, &format!("#{c}"), &m)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{ConnectionEnd, EndKind};

    /// A gRPC call on `conn` that ended `ms` after the capture's start with this grpc-status.
    pub(crate) fn call(conn: u64, stream: u32, ms: i64, grpc: &str) -> Call {
        let a = "10.0.0.1:5000".parse().unwrap();
        let b = "10.0.0.2:50051".parse().unwrap();
        let mut c = Call::new(conn, stream, a, b, 0, 1);
        c.end_ts_ns = ms * 1_000_000;
        c.end = CallEnd::Complete;
        c.response_trailers = Some(vec![field("grpc-status", grpc)].into());
        c
    }

    /// The end of connection `conn`, closed by FINs.
    pub(crate) fn ended(conn: u64) -> Event {
        Event::ConnectionEnd(Box::new(ConnectionEnd {
            conn,
            client: "10.0.0.1:5000".parse().unwrap(),
            server: "10.0.0.2:50051".parse().unwrap(),
            protocol: "http2",
            first_ts_ns: 0,
            last_ts_ns: 1,
            bytes: [0, 0],
            packets: 1,
            end: EndKind::Fin,
            mid: false,
            tls: None,
            closed_first: None,
            handshake: None,
            tcp: Default::default(),
        }))
    }

    fn field(name: &str, value: &str) -> crate::http2::hpack::HeaderField {
        crate::http2::hpack::HeaderField {
            name: name.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
            repr: crate::http2::hpack::Representation::Indexed { index: 0 },
            name_unknown: false,
            value_unknown: false,
        }
    }

    /// A connection with more calls than it keeps one by one counts their latencies in buckets,
    /// and its percentiles stay within 0.05% of the exact ones (the maximum exact).
    #[test]
    fn a_busy_connection_counts_its_latencies_in_buckets() {
        let mut s = CallStats::default();
        let calls = 5 * EXACT_PER_CONNECTION as i64;
        for ms in 1..=calls {
            s.event(Event::Call(Box::new(call(7, 2 * ms as u32 + 1, ms, "0"))));
        }
        let conn = s.by_conn.get(7).unwrap();
        assert!(matches!(conn.latencies.samples, Latencies::Buckets { .. }));
        // The whole capture's figures keep every latency up to their own limit.
        assert!(matches!(s.all.latencies.samples, Latencies::Exact(_)));
        for p in [50.0, 90.0, 99.0] {
            let exact = s.all.percentile(p).unwrap() as f64;
            let bucketed = conn.percentile(p).unwrap() as f64;
            assert!(
                (bucketed - exact).abs() / exact <= 0.0005,
                "p{p}: {bucketed} {exact}"
            );
        }
        assert_eq!(conn.percentile(100.0), s.all.percentile(100.0));
    }

    /// A connection's figures survive its end, when its samples are dropped.
    #[test]
    fn sealed_connections_keep_their_figures() {
        let mut s = CallStats::default();
        for (i, ms) in (1..=100).enumerate() {
            let grpc = if i % 10 == 0 { "14" } else { "0" };
            let mut c = call(7, 2 * i as u32 + 1, ms, grpc);
            // The answer began halfway through the call.
            c.response_start_ts_ns = Some(ms * 500_000);
            s.event(Event::Call(Box::new(c)));
        }
        let before = s.by_conn.get(7).unwrap().json();
        s.event(ended(7));
        // Written out to the temporary file, and read back the same.
        assert!(s.by_conn.is_empty());
        assert_eq!(s.to_json()["connections"]["7"], before);
        assert!(s.to_text().contains("#7 "));
        assert_eq!(before["latency_ms"]["p90"], 90.0);
        assert_eq!(before["time_to_response_ms"]["p90"], 45.0);
        assert_eq!(s.to_json()["total"]["time_to_response_ms"]["max"], 50.0);
        assert_eq!(before["outcomes"]["UNAVAILABLE"], 10);
        assert_eq!(before["outcomes"]["OK"], 90);
        // The methods keep their samples.
        assert!(!s.all.latencies.samples.is_empty());
        // The streamed line is the same JSON as the value.
        let mut line = Vec::new();
        s.write_json(&mut line).unwrap();
        let back: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, s.to_json());
        assert!(line.ends_with(b"}\n"));
    }

    /// A call its client reset once its deadline had run out is counted as such; one reset
    /// early, by the server, or with no deadline, is a plain RESET.
    #[test]
    fn a_reset_at_the_deadline_is_told_from_other_resets() {
        let reset = |ms: i64, timeout: Option<&str>, by_client: bool| {
            let mut c = call(1, 1, ms, "0");
            c.response_trailers = None;
            c.end = CallEnd::Reset {
                by_client,
                error_code: 8,
            };
            let mut headers = vec![field(":path", "/a.B/C")];
            headers.extend(timeout.map(|t| field("grpc-timeout", t)));
            c.request_headers = Some(headers.into());
            MethodStats::outcome(&c)
        };
        assert_eq!(reset(300, Some("300m"), true), "RESET_AT_DEADLINE");
        // C-core writes 10 s left as 10100m.
        assert_eq!(reset(10_000, Some("10100m"), true), "RESET_AT_DEADLINE");
        assert_eq!(reset(200, Some("300m"), true), "RESET");
        assert_eq!(reset(300, Some("300m"), false), "RESET");
        assert_eq!(reset(300, None, true), "RESET");
    }

    fn with_path(mut c: Call, path: &str) -> Call {
        c.request_headers = Some(vec![field(":path", path)].into());
        c
    }

    /// Paths with ids in them (REST, a scanner) make a row each up to [`MAX_METHODS`], then
    /// share one: the table stays bounded, every call is still counted.
    #[test]
    fn paths_past_the_limit_share_a_row() {
        let mut s = CallStats::default();
        for i in 0..MAX_METHODS as u32 + 5 {
            let c = with_path(call(1, 2 * i + 1, 1, "0"), &format!("/users/{i}"));
            s.event(Event::Call(Box::new(c)));
        }
        assert_eq!(s.by_method.len(), MAX_METHODS + 1);
        assert_eq!(s.by_method[OTHER_PATHS].calls, 5);
        assert_eq!(s.all.calls, MAX_METHODS as u64 + 5);
        // Calls of a path already counted stay on its row.
        let c = with_path(call(1, 1, 1, "0"), "/users/3");
        s.event(Event::Call(Box::new(c)));
        assert_eq!(s.by_method["/users/3"].calls, 2);
    }

    /// A grpc-status is any number: past a few dozen kinds, a row counts the rest together.
    #[test]
    fn outcomes_past_the_limit_are_counted_together() {
        let mut s = CallStats::default();
        for i in 0..100u32 {
            let status = (1000 + i).to_string();
            s.event(Event::Call(Box::new(call(1, 2 * i + 1, 1, &status))));
        }
        assert_eq!(s.all.outcomes.len(), MAX_OUTCOMES + 1);
        let other = s.all.outcomes.iter().find(|(k, _)| k == OTHER_OUTCOMES);
        assert_eq!(other.map(|o| o.1), Some(100 - MAX_OUTCOMES as u64));
    }

    /// Intervals too narrow for the capture stop at a number of rows, and the report says how
    /// many calls it left out.
    #[test]
    fn intervals_past_the_limit_are_left_out_and_counted() {
        let mut s = CallStats::with_intervals(Some(1_000_000));
        for i in 0..MAX_INTERVALS as u32 + 7 {
            s.event(Event::Call(Box::new(call(1, 2 * i + 1, i64::from(i), "0"))));
        }
        let report = s.to_json();
        assert_eq!(report["intervals"].as_array().unwrap().len(), MAX_INTERVALS);
        assert_eq!(report["intervals_calls_left_out"], 7);
        assert!(s
            .to_text()
            .contains("7 calls that ended past the first 100000 intervals"));
    }

    fn stats_of(conn: u64, calls: impl IntoIterator<Item = (i64, &'static str)>) -> CallStats {
        let mut s = CallStats::default();
        for (i, (ms, grpc)) in calls.into_iter().enumerate() {
            s.event(Event::Call(Box::new(call(
                conn,
                2 * i as u32 + 1,
                ms,
                grpc,
            ))));
        }
        s
    }

    /// Two threads' statistics merged are one thread's: counts, outcomes, exact percentiles
    /// while every sample is kept, and connections under the capture's numbers.
    #[test]
    fn absorbed_statistics_are_those_of_one_pass() {
        let a = (1..=60).map(|ms| (ms, if ms % 7 == 0 { "14" } else { "0" }));
        let b = (61..=100).map(|ms| (ms, "0"));
        let mut one = stats_of(3, a.clone());
        one.absorb(stats_of(3, b.clone()));
        let mut whole = stats_of(3, a.clone().chain(b.clone()));
        assert_eq!(one.all.json(), whole.all.json());
        assert_eq!(one.all.json()["latency_ms"]["p90"], 90.0);
        assert_eq!(one.all.json()["outcomes"]["UNAVAILABLE"], 8);
        // Different connections: the other's connection 0, the capture's 5, handed on as it
        // ended.
        let mut merged = stats_of(3, a);
        let mut other = stats_of(0, b);
        let mut record = Vec::new();
        assert!(other.take_ended_record(0, &mut record));
        assert!(!other.take_ended_record(0, &mut Vec::new()));
        merged.absorb(other);
        assert!(merged.keep_ended_record(5, &record));
        assert!(!merged.keep_ended_record(6, &record[..record.len() / 2]));
        let j = merged.to_json();
        assert_eq!(j["connections"]["3"]["calls"], 60);
        assert_eq!(j["connections"]["5"]["calls"], 40);
        assert_eq!(j["total"], whole.to_json()["total"]);
    }

    /// Calls by when they ended: intervals on multiples of their width, before 1970 too; a
    /// straggler (a call reported late) still counts where it ended; and a split of the
    /// capture (threads) gives the same figures, whether an interval's latencies stay one by
    /// one or go to buckets.
    #[test]
    fn intervals_count_calls_by_when_they_ended() {
        let width = 10_000_000; // 10 ms
                                // (start ms, end ms, grpc-status), in the order calls end, but for one straggler.
        let mut calls: Vec<(i64, i64, &str)> = vec![(-15, -5, "0"), (0, 3, "0"), (1, 9, "14")];
        calls.extend((0..3000).map(|i| (20, 20 + i % 7, "0")));
        calls.push((2, 5, "0")); // ends in the first interval, reported after later ones
        calls.extend((0..1500).map(|i| (40, 41 + i % 5, "4")));
        let make = |conn: u64, (start, end, grpc): (i64, i64, &'static str)| {
            let mut c = call(conn, 1, end, grpc);
            c.start_ts_ns = start * 1_000_000;
            Event::Call(Box::new(c))
        };
        let mut whole = CallStats::with_intervals(Some(width));
        for &c in &calls {
            whole.event(make(1, c));
        }
        let report = whole.to_json();
        let rows = report["intervals"].as_array().unwrap();
        let starts: Vec<f64> = rows.iter().map(|r| r["start"].as_f64().unwrap()).collect();
        assert_eq!(starts, [-0.01, 0.0, 0.02, 0.04]);
        let counts: Vec<u64> = rows.iter().map(|r| r["calls"].as_u64().unwrap()).collect();
        assert_eq!(counts, [1, 3, 3000, 1500]);
        assert_eq!(rows[1]["outcomes"], json!({"OK": 2, "UNAVAILABLE": 1}));
        assert_eq!(rows[1]["latency_ms"]["max"], json!(8.0));
        assert_eq!(rows[0]["start_utc"], "1969-12-31T23:59:59.990Z");
        assert_eq!(rows[3]["seconds"], json!(0.01));
        // 3000 calls in one interval: counted in buckets, whose maximum stays exact.
        assert_eq!(rows[2]["latency_ms"]["max"], json!(6.0));
        assert_eq!(rows[2]["latency_ms"]["p50"].as_f64().unwrap().round(), 3.0);
        // Split in two parts by alternate calls, merged: the same report.
        let mut parts = [
            CallStats::with_intervals(Some(width)),
            CallStats::with_intervals(Some(width)),
        ];
        for (i, &c) in calls.iter().enumerate() {
            parts[i % 2].event(make(1, c));
        }
        let [a, b] = parts;
        let mut merged = CallStats::with_intervals(Some(width));
        merged.absorb(a);
        merged.absorb(b);
        assert_eq!(merged.to_json()["intervals"], report["intervals"]);
        assert!(whole.to_text().contains("per 0.01 s interval"));
        assert!(whole.to_text().contains("\n1970-01-01 00:00:00.020 "));
        // Without --interval, no such section.
        assert!(CallStats::default().to_json().get("intervals").is_none());
        // Times at the ends of the range (a damaged capture): rows, not an overflow.
        let mut edges = CallStats::with_intervals(Some(width));
        for end in [i64::MIN + 1, i64::MAX] {
            let mut c = call(1, 1, 0, "0");
            (c.start_ts_ns, c.end_ts_ns) = (end, end);
            edges.event(Event::Call(Box::new(c)));
        }
        assert_eq!(edges.to_json()["intervals"].as_array().unwrap().len(), 2);
        assert!(edges.to_text().contains("per 0.01 s interval"));
    }
}
