//! `-T fields -e FIELD ...`: chosen fields of each event, one line per event, separated by a
//! tab, as tshark's `-T fields` prints packets. Fields are named as display filters name them
//! (the keys of the JSON Lines form, see [`FieldList`]).
//!
//! Unlike tshark, which prints a line for every packet, an event with none of the fields
//! prints no line: h2scope's events are of several kinds (frames, messages, calls...), and a
//! field such as `grpc_status` belongs to one of them.

use std::io::Write;

use super::filter::{FieldList, Val};
use crate::event::{Event, Sink, Wants};
use crate::parallel::{Handoff, Route, Shows};

/// Which of a field's values are printed (tshark's `-E occurrence=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurrence {
    All,
    First,
    Last,
    /// The Nth, from 1.
    Nth(usize),
}

/// How lines are written: tshark's `-E` options.
#[derive(Debug, Clone)]
pub struct FieldsOptions {
    /// A first line with the field names.
    pub header: bool,
    /// Between fields (a tab by default).
    pub separator: String,
    /// Around each field's text, and doubled inside it.
    pub quote: Option<char>,
    /// Between the values of one field (a comma by default).
    pub aggregator: String,
    pub occurrence: Occurrence,
}

impl Default for FieldsOptions {
    fn default() -> Self {
        FieldsOptions {
            header: false,
            separator: "\t".into(),
            quote: None,
            aggregator: ",".into(),
            occurrence: Occurrence::All,
        }
    }
}

impl FieldsOptions {
    /// Applies one `-E NAME=VALUE`, as tshark spells them: `header=y|n`, `separator=/t|/s|C`,
    /// `quote=d|s|n`, `aggregator=,|/s|C`, `occurrence=f|l|a|N`.
    pub fn set(&mut self, option: &str) -> Result<(), String> {
        let (name, value) = option
            .split_once('=')
            .ok_or_else(|| format!("{option:?}: expected NAME=VALUE, as separator=,"))?;
        // `/t` and `/s` as tshark takes them; otherwise the text itself.
        let text = |v: &str| match v {
            "/t" => "\t".to_string(),
            "/s" => " ".to_string(),
            v => v.to_string(),
        };
        match name {
            "header" => {
                self.header = match value {
                    "y" => true,
                    "n" => false,
                    _ => return Err(format!("header={value}: expected y or n")),
                }
            }
            "separator" => self.separator = text(value),
            "aggregator" => self.aggregator = text(value),
            "quote" => {
                self.quote = match value {
                    "d" => Some('"'),
                    "s" => Some('\''),
                    "n" => None,
                    _ => return Err(format!("quote={value}: expected d, s or n")),
                }
            }
            "occurrence" => {
                self.occurrence = match value {
                    "a" => Occurrence::All,
                    "f" => Occurrence::First,
                    "l" => Occurrence::Last,
                    n => match n.parse::<usize>() {
                        Ok(n) if n > 0 => Occurrence::Nth(n),
                        _ => return Err(format!("occurrence={value}: expected f, l, a or N")),
                    },
                }
            }
            _ => {
                return Err(format!(
                    "-E {name}: expected header, separator, quote, aggregator or occurrence"
                ))
            }
        }
        Ok(())
    }
}

/// A field's value as text: strings as they are (not quoted; control characters escaped, so that
/// a value cannot end its field or line), numbers and booleans as JSON writes them, objects and
/// lists as their JSON. Null is no value.
fn push_value(out: &mut Vec<u8>, v: Val<'_>) {
    match v {
        Val::Str(s) => out.extend_from_slice(crate::http2::call::printable(s).as_bytes()),
        Val::Uint(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Val::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Val::Null => {}
        Val::Json(v) => super::jsonl::write_value(out, v),
    }
}

/// A column's buffer larger than this is let go after its line.
const COLUMN_KEPT: usize = 1 << 16;

/// Appends the line of `event` to `buf`; false, with nothing appended, when the event has
/// none of the fields.
pub fn write_line(
    list: &FieldList,
    opts: &FieldsOptions,
    event: &Event,
    buf: &mut Vec<u8>,
) -> bool {
    thread_local! {
        /// Each field's text so far and how many values it had: kept from line to line.
        static COLUMNS: std::cell::RefCell<Vec<(Vec<u8>, usize)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    COLUMNS.with_borrow_mut(|columns| {
        columns.resize_with(list.names().len(), Default::default);
        for (text, count) in columns.iter_mut() {
            // A large value (a message's JSON) is not held on to for the lines after it.
            if text.capacity() > COLUMN_KEPT {
                *text = Vec::new();
            }
            text.clear();
            *count = 0;
        }
        list.each_value(event, |i, v| {
            if matches!(v, Val::Null) {
                return;
            }
            let (text, count) = &mut columns[i];
            *count += 1;
            match opts.occurrence {
                Occurrence::All => {
                    if *count > 1 {
                        text.extend_from_slice(opts.aggregator.as_bytes());
                    }
                    push_value(text, v);
                }
                Occurrence::First if *count == 1 => push_value(text, v),
                Occurrence::Last => {
                    text.clear();
                    push_value(text, v);
                }
                Occurrence::Nth(k) if *count == k => push_value(text, v),
                Occurrence::First | Occurrence::Nth(_) => {}
            }
        });
        if columns.iter().all(|(_, count)| *count == 0) {
            return false;
        }
        for (i, (text, _)) in columns.iter().enumerate() {
            if i > 0 {
                buf.extend_from_slice(opts.separator.as_bytes());
            }
            push_quoted(buf, text, opts.quote);
        }
        buf.push(b'\n');
        true
    })
}

fn push_quoted(buf: &mut Vec<u8>, text: &[u8], quote: Option<char>) {
    let Some(q) = quote else {
        buf.extend_from_slice(text);
        return;
    };
    let mut qb = [0; 4];
    let q = q.encode_utf8(&mut qb).as_bytes();
    buf.extend_from_slice(q);
    // A quote inside is doubled, as CSV readers expect.
    for part in text.split_inclusive(|&b| b == q[0]) {
        buf.extend_from_slice(part);
        if part.ends_with(q) {
            buf.extend_from_slice(q);
        }
    }
    buf.extend_from_slice(q);
}

/// The header line: the field names.
pub fn write_header(list: &FieldList, opts: &FieldsOptions, buf: &mut Vec<u8>) {
    for (i, name) in list.names().iter().enumerate() {
        if i > 0 {
            buf.extend_from_slice(opts.separator.as_bytes());
        }
        push_quoted(buf, name.as_bytes(), opts.quote);
    }
    buf.push(b'\n');
}

/// The sink of `-T fields`.
pub struct Fields<W: Write> {
    out: W,
    list: FieldList,
    opts: FieldsOptions,
    calls_only: bool,
    /// Whether some field belongs to frames, and to messages: asked for every event.
    has_frames: bool,
    has_messages: bool,
    header_due: bool,
    line: Vec<u8>,
    io_error: Option<std::io::Error>,
}

impl<W: Write> Fields<W> {
    pub fn new(out: W, list: FieldList, opts: FieldsOptions, calls_only: bool) -> Self {
        let header_due = opts.header;
        Fields {
            out,
            has_frames: list.may_have("frame"),
            has_messages: list.may_have("message"),
            list,
            opts,
            calls_only,
            header_due,
            line: Vec::new(),
            io_error: None,
        }
    }

    pub fn io_error(&mut self) -> Option<std::io::Error> {
        self.io_error.take()
    }

    pub fn flush(&mut self) {
        self.write_header();
        if let Err(e) = self.out.flush() {
            self.io_error.get_or_insert(e);
        }
    }

    /// The header comes first, even when no event follows.
    fn write_header(&mut self) {
        if std::mem::take(&mut self.header_due) {
            let mut buf = Vec::new();
            write_header(&self.list, &self.opts, &mut buf);
            self.write(&buf);
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.io_error.is_none() {
            if let Err(e) = self.out.write_all(bytes) {
                self.io_error = Some(e);
            }
        }
    }
}

impl<W: Write> Sink for Fields<W> {
    fn closed(&self) -> bool {
        self.io_error.is_some()
    }

    fn wants(&mut self) -> Wants<'_> {
        if self.calls_only {
            Wants::Calls(None)
        } else {
            // Frames or messages none of the fields belong to print nothing: not built.
            Wants::Everything.narrowed(self.has_frames, self.has_messages)
        }
    }

    fn event(&mut self, event: Event) {
        if self.calls_only && !matches!(event, Event::Call(_)) {
            return;
        }
        self.write_header();
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        if write_line(&self.list, &self.opts, &event, &mut line) {
            self.write(&line);
        }
        if line.capacity() <= COLUMN_KEPT {
            self.line = line;
        }
    }

    fn line(&mut self, text: &[u8]) {
        self.write_header();
        self.write(text);
    }
}

/// [`Route`] for `-T fields`: the workers write the lines, unless a field is `conn`, whose
/// number only the output thread knows (see [`crate::parallel`]).
pub struct FieldsRoute {
    list: FieldList,
    opts: FieldsOptions,
    calls_only: bool,
}

impl FieldsRoute {
    pub fn new(list: FieldList, opts: FieldsOptions, calls_only: bool) -> Self {
        FieldsRoute {
            list,
            opts,
            calls_only,
        }
    }
}

impl Route for FieldsRoute {
    fn route(&self, event: &Event, _: i64, buf: &mut Vec<u8>) -> Handoff {
        if self.calls_only && !matches!(event, Event::Call(_)) {
            Handoff::Drop
        } else if self.list.uses("conn") {
            Handoff::Event
        } else if write_line(&self.list, &self.opts, event, buf) {
            Handoff::Line(None)
        } else {
            Handoff::Drop
        }
    }

    fn shows(&self) -> Shows {
        let shows = if self.calls_only {
            Shows::Calls
        } else {
            Shows::Everything
        };
        shows.narrowed(self.list.may_have("frame"), self.list.may_have("message"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_as_tshark_spells_them() {
        let mut o = FieldsOptions::default();
        for opt in [
            "header=y",
            "separator=/s",
            "quote=s",
            "aggregator=;",
            "occurrence=2",
        ] {
            o.set(opt).unwrap();
        }
        assert!(o.header);
        assert_eq!((o.separator.as_str(), o.aggregator.as_str()), (" ", ";"));
        assert_eq!((o.quote, o.occurrence), (Some('\''), Occurrence::Nth(2)));
        o.set("separator=/t").unwrap();
        assert_eq!(o.separator, "\t");
        for bad in [
            "header",
            "header=yes",
            "occurrence=0",
            "quote=q",
            "colour=red",
        ] {
            assert!(o.set(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quotes_inside_a_field_are_doubled() {
        let mut buf = Vec::new();
        push_quoted(&mut buf, br#"say "hi""#, Some('"'));
        assert_eq!(buf, br#""say ""hi""""#);
        buf.clear();
        push_quoted(&mut buf, b"plain", None);
        assert_eq!(buf, b"plain");
    }
}
