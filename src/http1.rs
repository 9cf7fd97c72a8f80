//! Just enough HTTP/1.1 for gRPC-Web over HTTP/1.1: message heads, and bodies delimited by
//! Content-Length or chunked transfer coding, parsed as a stream per direction.

/// Largest head (start line and header fields) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line accepted (size, extensions).
const MAX_CHUNK_LINE: usize = 1024;

/// A parsed message head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Request: method, target. Response: status code.
    pub start: StartLine,
    /// Field names lowercased; values trimmed.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, target: String },
    Response { status: u16 },
}

impl Head {
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
}

/// What the parser found, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    Head(Head),
    Body(&'a [u8]),
    /// The message (head and body) is complete.
    End,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Http1Error {
    #[error("malformed HTTP/1.1 message head")]
    BadHead,
    #[error("HTTP/1.1 head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("malformed chunked body")]
    BadChunk,
}

#[derive(Debug)]
enum State {
    Head(Vec<u8>),
    Length(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    /// The CRLF after chunk data; how many of its bytes were seen.
    ChunkEnd(u8),
    /// Trailer section after the last chunk, up to the empty line.
    ChunkTrailer(Vec<u8>),
    /// A response without length: the body runs to the end of the connection.
    UntilClose,
    Failed,
}

#[derive(Debug)]
pub struct Parser {
    state: State,
    /// Responses: a body-less answer (to HEAD, 1xx, 204, 304) is not known from the head alone;
    /// gRPC-Web never uses them, so only status codes are considered.
    is_response: bool,
}

impl Parser {
    pub fn new(is_response: bool) -> Self {
        Parser {
            state: State::Head(Vec::new()),
            is_response,
        }
    }

    /// Feeds bytes; calls `f` for every item found. Stops at the first error.
    pub fn push<'a>(
        &mut self,
        mut input: &'a [u8],
        f: &mut dyn FnMut(Item<'_>),
    ) -> Result<(), Http1Error> {
        while !input.is_empty() {
            match &mut self.state {
                State::Failed => return Err(Http1Error::BadHead),
                State::Head(buf) => {
                    let scan_from = buf.len().saturating_sub(3);
                    buf.extend_from_slice(input);
                    let Some(end) = buf[scan_from..]
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|i| i + scan_from + 4)
                    else {
                        if buf.len() > MAX_HEAD {
                            self.state = State::Failed;
                            return Err(Http1Error::HeadTooLarge);
                        }
                        return Ok(());
                    };
                    // What followed the head in this input is fed again below.
                    let consumed_here = end - (buf.len() - input.len());
                    let head = match parse_head(&buf[..end]) {
                        Some(h) => h,
                        None => {
                            self.state = State::Failed;
                            return Err(Http1Error::BadHead);
                        }
                    };
                    input = &input[consumed_here..];
                    self.state = self.body_state(&head);
                    f(Item::Head(head));
                    if matches!(self.state, State::Length(0)) {
                        self.state = State::Head(Vec::new());
                        f(Item::End);
                    }
                }
                State::Length(left) => {
                    let n = (*left).min(input.len() as u64) as usize;
                    *left -= n as u64;
                    let done = *left == 0;
                    f(Item::Body(&input[..n]));
                    input = &input[n..];
                    if done {
                        self.state = State::Head(Vec::new());
                        f(Item::End);
                    }
                }
                State::UntilClose => {
                    f(Item::Body(input));
                    return Ok(());
                }
                State::ChunkSize(line) => {
                    let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                        line.extend_from_slice(input);
                        if line.len() > MAX_CHUNK_LINE {
                            self.state = State::Failed;
                            return Err(Http1Error::BadChunk);
                        }
                        return Ok(());
                    };
                    line.extend_from_slice(&input[..nl]);
                    input = &input[nl + 1..];
                    let text = std::str::from_utf8(line).unwrap_or("");
                    let size_text = text.split(';').next().unwrap_or("").trim();
                    let Ok(size) = u64::from_str_radix(size_text, 16) else {
                        self.state = State::Failed;
                        return Err(Http1Error::BadChunk);
                    };
                    self.state = if size == 0 {
                        State::ChunkTrailer(Vec::new())
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(left) => {
                    let n = (*left).min(input.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::ChunkEnd(0);
                    }
                    f(Item::Body(&input[..n]));
                    input = &input[n..];
                }
                State::ChunkEnd(seen) => {
                    let expect = b"\r\n"[*seen as usize];
                    if input[0] != expect {
                        self.state = State::Failed;
                        return Err(Http1Error::BadChunk);
                    }
                    input = &input[1..];
                    if *seen == 1 {
                        self.state = State::ChunkSize(Vec::new());
                    } else {
                        *seen = 1;
                    }
                }
                State::ChunkTrailer(buf) => {
                    let scan_from = buf.len().saturating_sub(3);
                    buf.extend_from_slice(input);
                    // The trailer section ends with an empty line: CRLF right away, or CRLFCRLF.
                    let end = if buf.starts_with(b"\r\n") {
                        Some(2)
                    } else {
                        buf[scan_from..]
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map(|i| i + scan_from + 4)
                    };
                    let Some(end) = end else {
                        if buf.len() > MAX_HEAD {
                            self.state = State::Failed;
                            return Err(Http1Error::BadChunk);
                        }
                        return Ok(());
                    };
                    let consumed_here = end - (buf.len() - input.len());
                    input = &input[consumed_here..];
                    self.state = State::Head(Vec::new());
                    f(Item::End);
                }
            }
        }
        Ok(())
    }

    fn body_state(&self, head: &Head) -> State {
        let chunked = head
            .field("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().windows(7).any(|w| w == b"chunked"));
        if chunked {
            return State::ChunkSize(Vec::new());
        }
        if let Some(len) = head
            .field("content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return State::Length(len);
        }
        match head.start {
            StartLine::Response { status } if !(status < 200 || status == 204 || status == 304) => {
                if self.is_response {
                    State::UntilClose
                } else {
                    State::Length(0)
                }
            }
            _ => State::Length(0),
        }
    }
}

/// Parses a complete head (ending with CRLFCRLF).
pub fn parse_head(head: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let first = lines.next()?;
    let mut parts = first.splitn(3, ' ');
    let a = parts.next()?;
    let b = parts.next()?;
    let start = if a.starts_with("HTTP/1.") {
        StartLine::Response {
            status: b.parse().ok()?,
        }
    } else {
        let version = parts.next()?;
        if !version.starts_with("HTTP/1.") || a.is_empty() {
            return None;
        }
        StartLine::Request {
            method: a.to_string(),
            target: b.to_string(),
        }
    };
    let mut fields = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':')?;
        fields.push((
            name.trim().to_ascii_lowercase().into_bytes(),
            value.trim().as_bytes().to_vec(),
        ));
    }
    Some(Head { start, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(p: &mut Parser, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        p.push(input, &mut |i| {
            out.push(match i {
                Item::Head(h) => format!("head {:?}", h.start),
                Item::Body(b) => format!("body {}", String::from_utf8_lossy(b)),
                Item::End => "end".into(),
            })
        })
        .unwrap();
        out
    }

    #[test]
    fn chunked_and_length_bodies_in_any_split() {
        let msg = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nxyGET /c HTTP/1.1\r\n\r\n";
        for split in 1..msg.len() {
            let mut p = Parser::new(false);
            let mut items = Vec::new();
            for chunk in msg.chunks(split) {
                items.extend(collect(&mut p, chunk));
            }
            let body: String = items
                .iter()
                .filter_map(|s| s.strip_prefix("body "))
                .collect();
            assert_eq!(body, "abcdexy", "split {split}");
            assert_eq!(items.iter().filter(|s| *s == "end").count(), 3);
            assert_eq!(items.iter().filter(|s| s.starts_with("head")).count(), 3);
        }
    }

    #[test]
    fn response_without_length_runs_to_close() {
        let mut p = Parser::new(true);
        let items = collect(&mut p, b"HTTP/1.1 200 OK\r\n\r\nhello");
        assert_eq!(items, ["head Response { status: 200 }", "body hello"]);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut p = Parser::new(false);
        assert!(p.push(b"\x00\x01 nonsense\r\n\r\n", &mut |_| {}).is_err());
        let mut p = Parser::new(false);
        assert!(p
            .push(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                &mut |_| {}
            )
            .is_err());
    }
}
