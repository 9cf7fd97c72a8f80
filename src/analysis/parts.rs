//! `health` and `stats` as [`Part`]s: one per thread when a capture's connections are split
//! across threads ([`crate::parallel::dissect_parts`]), or one alone.
//!
//! A connection's events all reach one part, so its health report is made whole on that
//! thread, and its call statistics too. What a part cannot know is the connection's number in
//! the whole capture, which the merge puts in the lines the part writes: so a health report
//! is a line, and so is each connection's figures of call statistics as the connection ends
//! ([`StatsPart`], read back by [`StatsLines`]), while the rest of the statistics, which are
//! not by connection, are merged at the end ([`CallStats::absorb`]). A display filter on
//! `conn` needs the part to run alone.

use std::sync::mpsc::{channel, Receiver};

use crate::analysis::health::{self, ConnectionHealth, Health};
use crate::analysis::stats::CallStats;
use crate::event::{Event, Sink, Wants};
use crate::output::filter::{Filter, Filtered};
use crate::parallel::{ConnSlot, Lines, Part};

/// How a health report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Jsonl,
}

/// Connection health, whose reports become lines as connections end.
pub struct HealthPart<'f, F: FnMut(ConnectionHealth)> {
    health: Health<F>,
    reports: Receiver<ConnectionHealth>,
    /// Only the reports whose JSON form matches are written.
    filter: Option<&'f Filter>,
    format: ReportFormat,
}

/// A [`HealthPart`] writing `format`, of the reports `filter` matches (whose JSON form, that
/// is, without looking at `conn` unless the part runs alone).
pub fn health_part(
    filter: Option<&Filter>,
    format: ReportFormat,
) -> HealthPart<'_, impl FnMut(ConnectionHealth) + Send> {
    // The analysis hands reports to a callback, in the middle of an event: they wait here
    // until the part is asked for its lines.
    let (tx, reports) = channel();
    HealthPart {
        health: Health::new(move |r| {
            let _ = tx.send(r);
        }),
        reports,
        filter,
        format,
    }
}

impl<F: FnMut(ConnectionHealth)> Sink for HealthPart<'_, F> {
    fn event(&mut self, event: Event) {
        self.health.event(event);
    }

    fn quiet(&mut self, conn: u64) {
        self.health.quiet(conn);
    }

    fn wants(&mut self) -> Wants<'_> {
        self.health.wants()
    }
}

impl<F: FnMut(ConnectionHealth) + Send> Part for HealthPart<'_, F> {
    fn lines(&mut self, out: &mut Lines<'_>) {
        while let Ok(report) = self.reports.try_recv() {
            // The JSON form is built only when the filter or the output needs it.
            let json = (self.filter.is_some() || self.format == ReportFormat::Jsonl)
                .then(|| health::to_json(&report));
            if let (Some(f), Some(json)) = (self.filter, &json) {
                if !f.matches_json(json) {
                    continue;
                }
            }
            out.push(Some(report.conn), |buf| {
                let at = match &json {
                    Some(json) if self.format == ReportFormat::Jsonl => {
                        health::write_json_unnumbered(json, buf)?
                    }
                    _ => {
                        let (text, slot) = health::to_text_unnumbered(&report);
                        let at = buf.len() + slot;
                        buf.extend_from_slice(text.as_bytes());
                        at
                    }
                };
                Some(ConnSlot { at, width: 0 })
            });
        }
    }

    fn end(&mut self) {
        self.health.finish();
    }
}

/// Call statistics of the calls `filter` matches. Each connection's figures leave as a line
/// when it ends, for [`StatsLines`] to keep under the capture's number of the connection; the
/// part keeps the figures by method and by interval, for [`CallStats::absorb`] at the end.
pub struct StatsPart<'f> {
    pub stats: CallStats,
    filter: Option<&'f Filter>,
    /// Connections that ended since the last lines: their figures, encoded.
    ended: Vec<(u64, Vec<u8>)>,
}

impl<'f> StatsPart<'f> {
    /// `interval_ns`: also by interval of time (see [`CallStats::with_intervals`]).
    pub fn new(filter: Option<&'f Filter>, interval_ns: Option<i64>) -> Self {
        StatsPart {
            stats: CallStats::with_intervals(interval_ns),
            filter,
            ended: Vec::new(),
        }
    }
}

impl Sink for StatsPart<'_> {
    fn event(&mut self, event: Event) {
        if let Event::ConnectionEnd(e) = &event {
            let mut record = Vec::new();
            if self.stats.take_ended_record(e.conn, &mut record) {
                self.ended.push((e.conn, record));
            }
        }
        match self.filter {
            Some(f) => Filtered::new(f, &mut self.stats).event(event),
            None => self.stats.event(event),
        }
    }

    fn wants(&mut self) -> Wants<'_> {
        self.stats.wants()
    }

    fn quiet(&mut self, conn: u64) {
        self.stats.quiet(conn);
    }
}

impl Part for StatsPart<'_> {
    fn lines(&mut self, out: &mut Lines<'_>) {
        // The connection's number, a tab, the record in hex: a line, whatever its bytes.
        for (conn, record) in self.ended.drain(..) {
            out.push(Some(conn), |buf| {
                let at = buf.len();
                buf.push(b'\t');
                buf.extend_from_slice(hex::encode(&record).as_bytes());
                buf.push(b'\n');
                Some(ConnSlot { at, width: 0 })
            });
        }
    }
}

/// The lines of [`StatsPart`]s, with the capture's connection numbers: each connection's
/// figures, kept in `stats` (its temporary file, as a part alone keeps them).
pub struct StatsLines {
    pub stats: CallStats,
    /// A line not yet whole.
    partial: Vec<u8>,
}

impl StatsLines {
    pub fn new(stats: CallStats) -> Self {
        StatsLines {
            stats,
            partial: Vec::new(),
        }
    }

    fn record(&mut self, line: &[u8]) {
        let parsed = line.iter().position(|&b| b == b'\t').and_then(|tab| {
            let conn = std::str::from_utf8(&line[..tab]).ok()?.parse().ok()?;
            Some((conn, hex::decode(&line[tab + 1..]).ok()?))
        });
        // The parts' own lines: one that does not read back is a bug, not input.
        let kept = parsed.is_some_and(|(conn, record)| self.stats.keep_ended_record(conn, &record));
        debug_assert!(kept, "a statistics line that does not read back");
    }
}

impl Sink for StatsLines {
    fn event(&mut self, _: Event) {}

    fn line(&mut self, mut text: &[u8]) {
        while let Some(end) = text.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.record(&text[..end]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&text[..end]);
                self.record(&line);
            }
            text = &text[end + 1..];
        }
        self.partial.extend_from_slice(text);
    }
}

/// Whether parts with this filter must run alone: it looks at connection numbers, which only
/// the merge of the threads knows.
pub fn filter_needs_one_thread(filter: Option<&Filter>) -> bool {
    filter.is_some_and(|f| f.uses("conn"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::stats::tests::{call, ended};

    /// A part's connections leave as lines when they end, under its numbers, which the merge
    /// would change; read back in pieces of any size, they are the report's rows, as when the
    /// same events go to one `CallStats`.
    #[test]
    fn ended_connections_go_out_as_lines_and_read_back() {
        let events = || {
            let mut v = Vec::new();
            for conn in 0..40u64 {
                for i in 0..=conn % 5 {
                    let status = if i == 3 { "14" } else { "0" };
                    let c = call(conn, 2 * i as u32 + 1, (conn + i) as i64, status);
                    v.push(Event::Call(Box::new(c)));
                }
                v.push(ended(conn));
            }
            v
        };
        let mut whole = CallStats::default();
        for e in events() {
            whole.event(e);
        }
        for piece in [1, 7, 4096] {
            let mut part = StatsPart::new(None, None);
            let mut text = Vec::new();
            for e in events() {
                part.event(e);
                part.lines(&mut Lines::to(&mut text));
            }
            assert!(part.stats.by_conn.is_empty());
            assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 40);
            let mut merged = StatsLines::new(CallStats::default());
            for chunk in text.chunks(piece) {
                merged.line(chunk);
            }
            let mut stats = merged.stats;
            stats.absorb(part.stats);
            assert_eq!(stats.to_json(), whole.to_json(), "pieces of {piece}");
        }
    }
}
