//! The detail of every row (its text lines, and the frame's bytes for the hex pane), written
//! once while the capture is read and read back only for the row on screen.
//!
//! On a capture of a million frames the details are most of the bytes, so they live in an
//! unlinked temporary file rather than in memory: the viewer keeps an index (offsets and row
//! summaries), as Wireshark keeps frame offsets into its file. Where no temporary file can be
//! made, the same bytes are kept in memory.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::spill::Spill;

/// One line of a detail pane, and the bytes of the frame it describes, if it describes some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailLine {
    pub text: String,
    pub span: Option<Range<usize>>,
}

impl DetailLine {
    pub fn text(text: impl Into<String>) -> Self {
        DetailLine {
            text: text.into(),
            span: None,
        }
    }

    pub fn bytes(text: impl Into<String>, span: Range<usize>) -> Self {
        DetailLine {
            text: text.into(),
            span: Some(span),
        }
    }
}

/// What the detail and hex panes show for one frame or message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// The row's one-line summary: kept here rather than in the index, and read back for the
    /// rows on screen only.
    pub summary: String,
    pub lines: Vec<DetailLine>,
    /// The frame's bytes (header first), for the hex pane.
    pub raw: Option<Vec<u8>>,
    /// What the lines are made from, when the writer stored that instead of the lines
    /// ([`StoreWriter::put_deferred`]): the reader makes them.
    pub deferred: Option<Vec<u8>>,
}

/// Where a row's detail was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    at: u64,
    len: u32,
}

/// The writing end, owned by whoever dissects.
pub struct StoreWriter {
    sink: Sink,
    len: u64,
    /// A write failed part-way: offsets after it would be wrong, so nothing more is stored.
    broken: bool,
}

enum Sink {
    File(Spill),
    Memory(Arc<Mutex<Vec<u8>>>),
}

/// The reading end, owned by the viewer. Reads do not move a shared file offset, so the writer
/// may go on appending meanwhile.
#[derive(Clone, Debug)]
pub struct StoreReader {
    source: Source,
}

#[derive(Clone, Debug)]
enum Source {
    File(Arc<File>),
    Memory(Arc<Mutex<Vec<u8>>>),
}

/// A new, empty store: an unlinked file in the temporary directory where possible.
pub fn new() -> (StoreWriter, StoreReader) {
    match Spill::new("h2scope-tui") {
        Some(spill) => {
            let read = spill.reader();
            (
                StoreWriter {
                    sink: Sink::File(spill),
                    len: 0,
                    broken: false,
                },
                StoreReader {
                    source: Source::File(read),
                },
            )
        }
        None => in_memory(),
    }
}

/// A store kept in memory.
pub fn in_memory() -> (StoreWriter, StoreReader) {
    let bytes = Arc::new(Mutex::new(Vec::new()));
    (
        StoreWriter {
            sink: Sink::Memory(bytes.clone()),
            len: 0,
            broken: false,
        },
        StoreReader {
            source: Source::Memory(bytes),
        },
    )
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

const NONE: u32 = u32::MAX;
/// In place of a line count: the record holds what its lines are made from.
const DEFERRED: u32 = u32::MAX - 1;

/// Writes a detail in its stored form as it is made, line by line, into a buffer used again
/// for the next one: a million frames' details are built without a string per line.
#[derive(Debug, Default)]
pub struct DetailWriter {
    buf: Vec<u8>,
    lines: u32,
}

impl DetailWriter {
    pub fn new() -> Self {
        let mut w = DetailWriter::default();
        w.clear();
        w
    }

    /// Starts a new detail.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.lines = 0;
        put_u32(&mut self.buf, 0);
    }

    /// Adds a line, and the bytes of the frame it describes if any.
    pub fn line(&mut self, span: Option<Range<usize>>, text: std::fmt::Arguments<'_>) {
        use std::io::Write as _;
        let (start, end) = span.map_or((NONE, NONE), |s| (s.start as u32, s.end as u32));
        put_u32(&mut self.buf, start);
        put_u32(&mut self.buf, end);
        let at = self.buf.len();
        put_u32(&mut self.buf, 0);
        // Writing to a Vec cannot fail.
        let _ = self.buf.write_fmt(text);
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.lines += 1;
    }

    /// The lines written so far, as a reader gets them back; starts a new detail.
    pub fn take_lines(&mut self) -> Vec<DetailLine> {
        let mut record = Vec::with_capacity(self.buf.len() + 8);
        put_u32(&mut record, 0);
        record.extend_from_slice(self.finish(None));
        self.clear();
        decode(&record).lines
    }

    /// Ends the detail with the frame's bytes (if any) and returns its stored form.
    fn finish(&mut self, raw: Option<&[u8]>) -> &[u8] {
        match raw {
            Some(r) => {
                put_u32(&mut self.buf, r.len() as u32);
                self.buf.extend_from_slice(r);
            }
            None => put_u32(&mut self.buf, NONE),
        }
        self.buf[..4].copy_from_slice(&self.lines.to_le_bytes());
        &self.buf
    }
}

#[cfg(test)]
fn encode(d: &Detail) -> Vec<u8> {
    let mut w = DetailWriter::new();
    w.fill(d);
    let mut out = Vec::new();
    put_u32(&mut out, d.summary.len() as u32);
    out.extend_from_slice(d.summary.as_bytes());
    out.extend_from_slice(w.finish(d.raw.as_deref()));
    out
}

impl DetailWriter {
    fn fill(&mut self, d: &Detail) {
        for l in &d.lines {
            self.line(l.span.clone(), format_args!("{}", l.text));
        }
    }
}

/// Reads back what [`encode`] wrote; a damaged record gives what could be read.
fn decode(mut b: &[u8]) -> Detail {
    fn u32_of(b: &mut &[u8]) -> Option<u32> {
        let (head, rest) = b.split_first_chunk::<4>()?;
        *b = rest;
        Some(u32::from_le_bytes(*head))
    }
    fn bytes<'a>(b: &mut &'a [u8], n: u32) -> Option<&'a [u8]> {
        let (head, rest) = b.split_at_checked(n as usize)?;
        *b = rest;
        Some(head)
    }
    let mut d = Detail::default();
    let Some(summary) = u32_of(&mut b).and_then(|n| bytes(&mut b, n)) else {
        return d;
    };
    d.summary = String::from_utf8_lossy(summary).into_owned();
    let Some(n) = u32_of(&mut b) else { return d };
    let lines = if n == DEFERRED {
        let Some(parts) = u32_of(&mut b).and_then(|n| bytes(&mut b, n)) else {
            return d;
        };
        d.deferred = Some(parts.to_vec());
        0
    } else {
        n
    };
    for _ in 0..lines {
        let (Some(start), Some(end), Some(len)) = (u32_of(&mut b), u32_of(&mut b), u32_of(&mut b))
        else {
            return d;
        };
        let Some(text) = bytes(&mut b, len) else {
            return d;
        };
        d.lines.push(DetailLine {
            text: String::from_utf8_lossy(text).into_owned(),
            span: (start != NONE).then_some(start as usize..end as usize),
        });
    }
    d.raw = match u32_of(&mut b) {
        Some(NONE) | None => None,
        Some(n) => bytes(&mut b, n).map(<[u8]>::to_vec),
    };
    d
}

impl StoreWriter {
    /// Appends a detail; readers see it after the next [`flush`](Self::flush).
    pub fn put(&mut self, d: &Detail) -> io::Result<Stored> {
        let mut w = DetailWriter::new();
        w.fill(d);
        self.put_written(&mut w, &d.summary, d.raw.as_deref())
    }

    /// Appends the detail written in `w`, with its row's summary and the frame's bytes `raw`,
    /// and clears `w`.
    pub fn put_written(
        &mut self,
        w: &mut DetailWriter,
        summary: &str,
        raw: Option<&[u8]>,
    ) -> io::Result<Stored> {
        let head = (summary.len() as u32).to_le_bytes();
        let bytes = w.finish(raw);
        let stored = self.append(&[&head[..], summary.as_bytes(), bytes]);
        w.clear();
        stored
    }

    /// Appends a detail whose lines the reader makes from `parts` (see [`Detail::deferred`]),
    /// with its row's summary and the frame's bytes `raw`.
    pub fn put_deferred(
        &mut self,
        summary: &str,
        parts: &[u8],
        raw: Option<&[u8]>,
    ) -> io::Result<Stored> {
        let mut head = [0u8; 12];
        head[..4].copy_from_slice(&(summary.len() as u32).to_le_bytes());
        head[4..8].copy_from_slice(&DEFERRED.to_le_bytes());
        head[8..].copy_from_slice(&(parts.len() as u32).to_le_bytes());
        let raw_len = raw.map_or(NONE, |r| r.len() as u32).to_le_bytes();
        self.append(&[
            &head[..4],
            summary.as_bytes(),
            &head[4..],
            parts,
            &raw_len,
            raw.unwrap_or_default(),
        ])
    }

    /// Appends bytes of the caller's own form (a call's JSON Lines object), read back whole
    /// with [`StoreReader::bytes`].
    pub fn put_bytes(&mut self, bytes: &[u8]) -> io::Result<Stored> {
        self.append(&[bytes])
    }

    /// Appends one record made of `parts`; nothing more once a write has failed part-way.
    fn append(&mut self, parts: &[&[u8]]) -> io::Result<Stored> {
        if self.broken {
            return Err(io::Error::other("the detail store failed earlier"));
        }
        let written = match &mut self.sink {
            Sink::File(f) => f.append(parts).map(|_| ()),
            Sink::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                parts.iter().for_each(|p| m.extend_from_slice(p));
                Ok(())
            }
        };
        if let Err(e) = written {
            self.broken = true;
            return Err(e);
        }
        let stored = Stored {
            at: self.len,
            len: parts.iter().map(|p| p.len() as u32).sum(),
        };
        self.len += u64::from(stored.len);
        Ok(stored)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::File(f) => f.flush(),
            Sink::Memory(_) => Ok(()),
        }
    }

    /// Bytes stored so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl StoreReader {
    /// The detail stored at `s`; empty if it cannot be read.
    pub fn get(&self, s: Stored) -> Detail {
        let mut buf = vec![0; s.len as usize];
        if self.read(s.at, &mut buf) {
            decode(&buf)
        } else {
            Detail::default()
        }
    }

    /// The bytes [`StoreWriter::put_bytes`] stored at `s`; `None` if nothing was stored there
    /// or it cannot be read.
    pub fn bytes(&self, s: Stored) -> Option<Vec<u8>> {
        let mut buf = vec![0; s.len as usize];
        (s.len > 0 && self.read(s.at, &mut buf)).then_some(buf)
    }

    /// Only the summary of the row stored at `s`: it comes first, so a short read does.
    pub fn summary(&self, s: Stored) -> String {
        let mut buf = vec![0; (s.len as usize).min(256)];
        if !self.read(s.at, &mut buf) {
            return String::new();
        }
        let n = buf
            .first_chunk::<4>()
            .map_or(0, |h| u32::from_le_bytes(*h) as usize);
        if n + 4 <= buf.len() {
            String::from_utf8_lossy(&buf[4..4 + n]).into_owned()
        } else {
            self.get(s).summary
        }
    }

    fn read(&self, at: u64, buf: &mut [u8]) -> bool {
        match &self.source {
            Source::File(f) => crate::spill::read_at(f, at, buf),
            Source::Memory(m) => {
                let m = m.lock().unwrap_or_else(|e| e.into_inner());
                let range = usize::try_from(at)
                    .ok()
                    .and_then(|a| Some(a..a.checked_add(buf.len())?));
                match range.and_then(|r| m.get(r)) {
                    Some(b) => {
                        buf.copy_from_slice(b);
                        true
                    }
                    None => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> Detail {
        Detail {
            summary: format!("summary {i}"),
            lines: vec![
                DetailLine::bytes(format!("frame {i}"), 0..9),
                DetailLine::text("  headers:"),
                DetailLine::bytes("    :path: /a", 9..12 + i),
            ],
            raw: (i % 2 == 0).then(|| vec![i as u8; 9 + i]),
            deferred: None,
        }
    }

    #[test]
    fn details_come_back_as_written_from_file_and_memory() {
        for (mut w, r) in [new(), in_memory()] {
            let at: Vec<Stored> = (0..50).map(|i| w.put(&sample(i)).unwrap()).collect();
            w.flush().unwrap();
            for (i, s) in at.iter().enumerate().rev() {
                assert_eq!(r.get(*s), sample(i));
                assert_eq!(r.summary(*s), format!("summary {i}"));
            }
            // Appending after reads is fine: reads do not share an offset with the writer.
            let more = w.put(&sample(99)).unwrap();
            let json = w.put_bytes(br#"{"event":"call"}"#).unwrap();
            w.flush().unwrap();
            assert_eq!(r.get(more), sample(99));
            assert_eq!(r.get(at[3]), sample(3));
            assert_eq!(r.bytes(json).as_deref(), Some(&br#"{"event":"call"}"#[..]));
            assert_eq!(r.bytes(Stored::default()), None);
            // A detail whose lines the reader makes: its parts and bytes come back.
            let deferred = w.put_deferred("HEADERS", b"parts", Some(b"raw")).unwrap();
            let bare = w.put_deferred("", b"", None).unwrap();
            w.flush().unwrap();
            let d = r.get(deferred);
            assert_eq!(r.summary(deferred), "HEADERS");
            assert_eq!(
                (
                    d.summary.as_str(),
                    d.lines.len(),
                    d.deferred.as_deref(),
                    d.raw.as_deref()
                ),
                ("HEADERS", 0, Some(&b"parts"[..]), Some(&b"raw"[..]))
            );
            let d = r.get(bare);
            assert_eq!((d.deferred.as_deref(), d.raw), (Some(&b""[..]), None));
        }
    }

    #[test]
    fn damaged_records_decode_to_what_is_there() {
        let whole = encode(&sample(4));
        for cut in 0..whole.len() {
            let d = decode(&whole[..cut]);
            assert!(d.lines.len() <= 3 && d.summary.len() <= 10);
        }
        let past = Stored {
            at: 1 << 40,
            len: 8,
        };
        let (_, r) = in_memory();
        assert_eq!(r.get(past), Detail::default());
    }
}
