//! Calls: one HTTP/2 stream seen as a request and its response.

use std::net::SocketAddr;

use super::hpack::{HeaderField, HeaderList};

/// What a header block from the server is to its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerBlock {
    /// A 1xx response, before the final one and not it.
    Informational,
    /// The final response headers.
    Headers,
    Trailers,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    /// Both sides sent END_STREAM.
    Complete,
    /// RST_STREAM, by the client (`by_client`) or the server.
    Reset { by_client: bool, error_code: u32 },
    /// The connection closed, expired or the capture ended first.
    Unfinished,
    /// Not processed: a client stream above the `last_stream_id` of a GOAWAY from the server
    /// (RFC 9113 §6.8), which a client may retry on another connection. It crossed the GOAWAY
    /// on the wire, or was opened after it.
    Refused { last_stream_id: u32 },
}

#[derive(Debug, Clone)]
pub struct Call {
    pub conn: u64,
    pub stream: u32,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub request_headers: Option<HeaderList>,
    /// Final (non-1xx) response headers.
    pub response_headers: Option<HeaderList>,
    pub request_trailers: Option<HeaderList>,
    pub response_trailers: Option<HeaderList>,
    pub start_ts_ns: i64,
    /// When the call ended, or, for an unfinished call, its last frame.
    pub end_ts_ns: i64,
    /// When the client's END_STREAM came: the request sent whole.
    pub request_end_ts_ns: Option<i64>,
    /// When the final response headers came (a trailers-only answer's included).
    pub response_start_ts_ns: Option<i64>,
    pub start_packet: u64,
    pub end_packet: u64,
    /// DATA payload bytes (without padding) each way.
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub request_ended: bool,
    pub response_ended: bool,
    pub end: CallEnd,
    /// The server, its response complete, reset the stream with NO_ERROR before the request
    /// ended: it asked the client to stop sending (RFC 9113 §8.1). The call is complete.
    pub request_stopped: bool,
    /// Opened by the server with PUSH_PROMISE.
    pub pushed: bool,
    /// The request arrived as HTTP/1.1 with `Upgrade: h2c` and became stream 1.
    pub upgraded: bool,
    /// The content-type said gRPC.
    pub grpc: bool,
    /// Carried by TLS (and decrypted): `:scheme` does not say, a client may send `http` over a
    /// TLS connection it made itself.
    pub tls: bool,
    pub request_messages: u32,
    pub response_messages: u32,
    /// `grpc-status-details-bin` decoded as `google.rpc.Status`.
    pub grpc_status_details: Option<serde_json::Value>,
    /// Problems with this call, in words.
    pub notes: Vec<String>,
}

impl Call {
    pub fn new(
        conn: u64,
        stream: u32,
        client: SocketAddr,
        server: SocketAddr,
        ts_ns: i64,
        packet: u64,
    ) -> Self {
        Call {
            conn,
            stream,
            client,
            server,
            request_headers: None,
            response_headers: None,
            request_trailers: None,
            response_trailers: None,
            start_ts_ns: ts_ns,
            end_ts_ns: ts_ns,
            request_end_ts_ns: None,
            response_start_ts_ns: None,
            start_packet: packet,
            end_packet: packet,
            request_bytes: 0,
            response_bytes: 0,
            request_ended: false,
            response_ended: false,
            end: CallEnd::Unfinished,
            request_stopped: false,
            pushed: false,
            upgraded: false,
            grpc: false,
            tls: false,
            request_messages: 0,
            response_messages: 0,
            grpc_status_details: None,
            notes: Vec::new(),
        }
    }

    /// Takes a header block the server sent at `ts_ns`: the final response headers if none
    /// came yet, else the trailers; a 1xx response is neither, and is not kept.
    pub fn server_block(&mut self, list: HeaderList, ts_ns: i64) -> ServerBlock {
        let informational = list
            .iter()
            .find(|h| h.name[..] == b":status"[..])
            .is_some_and(|h| h.value.first() == Some(&b'1'));
        if informational {
            ServerBlock::Informational
        } else if self.response_headers.is_none() {
            self.response_headers = Some(list);
            self.response_start_ts_ns = Some(ts_ns);
            ServerBlock::Headers
        } else {
            self.response_trailers = Some(list);
            ServerBlock::Trailers
        }
    }

    fn find<'a>(list: &'a Option<HeaderList>, name: &str) -> Option<&'a [u8]> {
        list.as_ref()?
            .iter()
            .find(|h| h.name == name.as_bytes())
            .map(|h| &h.value[..])
    }

    /// Client and server were mistaken for each other (a connection joined mid-way, before its
    /// first decodable header block): exchange everything that belongs to a side.
    pub fn swap_sides(&mut self) {
        std::mem::swap(&mut self.client, &mut self.server);
        std::mem::swap(&mut self.request_headers, &mut self.response_headers);
        std::mem::swap(&mut self.request_trailers, &mut self.response_trailers);
        std::mem::swap(&mut self.request_bytes, &mut self.response_bytes);
        std::mem::swap(&mut self.request_ended, &mut self.response_ended);
        std::mem::swap(&mut self.request_messages, &mut self.response_messages);
        // What was timed was the other side's: unknown now.
        self.request_end_ts_ns = None;
        self.response_start_ts_ns = None;
    }

    /// From the call's start to its response headers: the server's time to answer, with a
    /// round trip or part of one depending on where the capture was taken.
    pub fn time_to_response_ns(&self) -> Option<i64> {
        self.response_start_ts_ns
            .map(|t| t.saturating_sub(self.start_ts_ns).max(0))
    }

    pub fn request_header(&self, name: &str) -> Option<&[u8]> {
        Self::find(&self.request_headers, name)
    }

    pub fn response_header(&self, name: &str) -> Option<&[u8]> {
        Self::find(&self.response_headers, name)
    }

    pub fn method(&self) -> Option<String> {
        self.request_header(":method").map(lossless)
    }

    pub fn path(&self) -> Option<String> {
        self.request_header(":path").map(lossless)
    }

    pub fn authority(&self) -> Option<String> {
        self.request_header(":authority").map(lossless)
    }

    /// Something of the server's answer has come: headers, trailers or body.
    pub fn answered(&self) -> bool {
        self.response_headers.is_some()
            || self.response_trailers.is_some()
            || self.response_bytes > 0
            || self.response_ended
    }

    pub fn status(&self) -> Option<u16> {
        std::str::from_utf8(self.response_header(":status")?)
            .ok()?
            .parse()
            .ok()
    }

    /// `grpc-status` from the trailers, or from the headers of a trailers-only response.
    pub fn grpc_field(&self, name: &str) -> Option<&[u8]> {
        Self::find(&self.response_trailers, name).or_else(|| self.response_header(name))
    }

    pub fn grpc_status(&self) -> Option<u32> {
        std::str::from_utf8(self.grpc_field("grpc-status")?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn grpc_message(&self) -> Option<String> {
        self.grpc_field("grpc-message").map(percent_decode)
    }

    pub fn duration_ns(&self) -> i64 {
        self.end_ts_ns.saturating_sub(self.start_ts_ns)
    }

    /// The time the client gave the call (`grpc-timeout`), in nanoseconds; none when it set
    /// none or wrote it wrong.
    pub fn deadline_ns(&self) -> Option<i64> {
        let v = std::str::from_utf8(self.request_header("grpc-timeout")?).ok()?;
        grpc_timeout_ns(v).map(|ns| i64::try_from(ns).unwrap_or(i64::MAX))
    }

    /// Whether the client reset the call once its deadline had run out, without a status: a
    /// client gives up at its deadline by resetting the stream, often before any
    /// DEADLINE_EXCEEDED from the server is on the wire. Clients write the time left rounded up
    /// (C-core: to two digits), hence the 5%.
    pub fn reset_at_deadline(&self) -> bool {
        matches!(
            self.end,
            CallEnd::Reset {
                by_client: true,
                ..
            }
        ) && self.grpc_status().is_none()
            && self
                .deadline_ns()
                .is_some_and(|d| self.duration_ns() >= d - d / 20)
    }
}

/// `grpc-timeout` in nanoseconds: at most 8 digits and a unit (H M S m u n), as the gRPC over
/// HTTP/2 spec writes it. Up to 10^8 hours, so more than 64 bits of nanoseconds.
pub fn grpc_timeout_ns(v: &str) -> Option<u128> {
    let v = v.trim();
    let digits = v.get(..v.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u128 = digits.parse().ok()?;
    Some(match v.as_bytes()[v.len() - 1] {
        b'H' => n * 3_600_000_000_000,
        b'M' => n * 60_000_000_000,
        b'S' => n * 1_000_000_000,
        b'm' => n * 1_000_000,
        b'u' => n * 1_000,
        b'n' => n,
        _ => return None,
    })
}

fn unknown_index(h: &HeaderField) -> u32 {
    use super::hpack::Representation as R;
    match h.repr {
        R::Indexed { index } | R::Unknown { index } => index,
        R::IncrementalIndexing { name_index, .. }
        | R::WithoutIndexing { name_index, .. }
        | R::NeverIndexed { name_index, .. } => name_index.unwrap_or(0),
    }
}

/// A header's name for display; a name from an HPACK entry the capture never saw is shown as
/// `<unknown dynamic #N>`, never guessed.
pub fn header_name(h: &HeaderField) -> String {
    if h.name_unknown {
        format!("<unknown dynamic #{}>", unknown_index(h))
    } else {
        lossless(&h.name)
    }
}

/// A header's value for display, with unknowns marked as for [`header_name`].
pub fn header_value(h: &HeaderField) -> String {
    if h.value_unknown {
        format!("<unknown dynamic #{}>", unknown_index(h))
    } else {
        lossless(&h.value)
    }
}

/// [`lossless`] for writers: shown without building a string first.
pub struct Lossless<'a>(pub &'a [u8]);

impl std::fmt::Display for Lossless<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// A header's name, or its value, as [`header_name`] and [`header_value`] show them.
pub struct HeaderText<'a> {
    pub field: &'a HeaderField,
    pub value: bool,
}

impl std::fmt::Display for HeaderText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.field;
        let (unknown, bytes) = if self.value {
            (h.value_unknown, &h.value)
        } else {
            (h.name_unknown, &h.name)
        };
        if unknown {
            write!(f, "<unknown dynamic #{}>", unknown_index(h))
        } else {
            Lossless(bytes).fmt(f)
        }
    }
}

/// [`lossless`], borrowing the bytes when they are UTF-8 (nearly always), so that looking
/// text up or copying it once costs no string of its own.
pub fn lossless_str(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.into(),
        Err(_) => lossless(bytes).into(),
    }
}

/// Bytes as text: UTF-8 as is, other bytes escaped as `\xNN`, so nothing is ever dropped.
pub fn lossless(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Text from a capture made safe to print on a terminal: control characters, which a capture
/// could use to move the cursor, retitle the window or hide what follows, are written as Rust
/// escapes them (`\n`, `\0`, `\u{1b}`), as the call line's `grpc-message` already is. JSON
/// escapes them itself; the text outputs pass names, values and paths through this.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    // Control characters are C0, DEL and C1 (U+0080 to U+009F, which UTF-8 starts with 0xc2):
    // a test of every byte, which the compiler vectorises, passes nearly all text as it is.
    let suspect = text.bytes().fold(false, |seen, b| {
        seen | (b < 0x20) | (b == 0x7f) | (b == 0xc2)
    });
    if !suspect || !text.contains(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// [`printable`] of a string owned already: the same string when nothing needs escaping.
pub fn printable_owned(text: String) -> String {
    match printable(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

/// gRPC's `grpc-message` is percent-encoded (gRPC over HTTP/2 spec); malformed escapes stay as
/// they are.
pub fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            let hex = std::str::from_utf8(&v[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    lossless(&out)
}

/// gRPC status code names (google.rpc.Code).
pub fn grpc_status_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode(b"%E2%9C%93"), "\u{2713}");
        assert_eq!(percent_decode(b"%ff"), "\\xff");
    }

    #[test]
    fn printable_escapes_what_a_terminal_would_obey() {
        assert!(matches!(
            printable("/pkg.Svc/Method é"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(printable("a\nb\r\t\0"), "a\\nb\\r\\t\\0");
        // ESC starts terminal sequences; DEL and the C1 controls (CSI is U+009B) are controls too.
        assert_eq!(printable("\u{1b}]0;owned\u{7}"), "\\u{1b}]0;owned\\u{7}");
        assert_eq!(printable("x\u{7f}\u{9b}y"), "x\\u{7f}\\u{9b}y");
        assert_eq!(printable_owned(lossless(b"v\x00\xff")), "v\\0\\xff");
    }

    #[test]
    fn lossless_escapes_invalid_utf8() {
        assert_eq!(lossless(b"ok\xff\xfeend"), "ok\\xff\\xfeend");
        assert_eq!(Lossless(b"ok\xff\xfeend").to_string(), "ok\\xff\\xfeend");
    }
}
