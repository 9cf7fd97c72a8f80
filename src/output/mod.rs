//! Sinks that present events: human text, JSON Lines, and the end-of-run summary.

pub mod clock;
pub mod compress;
pub mod embed;
pub mod fields;
pub mod filter;
pub mod grpcurl;
pub mod hexdump;
pub mod jsonl;
pub mod keys;
pub mod pcap;
pub mod pcapng;
pub mod text;

use std::fmt;
use std::net::SocketAddr;

pub use crate::event::Tally;
use crate::event::{Event, Sink, Wants};
use crate::pipeline::Stats;

/// A socket address as `Display` shows it, written in one piece. Every frame line shows two
/// addresses, and `Display` goes through the formatting machinery once per octet: a measurable
/// share of writing a line.
pub struct Addr<'a>(pub &'a SocketAddr);

thread_local! {
    /// The last two IPv4 addresses written, with their text, and which of them came last.
    static LAST_V4: std::cell::RefCell<([(std::net::SocketAddrV4, String); 2], usize)> = {
        let none = std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);
        std::cell::RefCell::new(([(none, none.to_string()), (none, none.to_string())], 0))
    };
}

impl Addr<'_> {
    /// An IPv4 address and port as text, in a buffer: "255.255.255.255:65535" is the longest.
    /// Digits are put one by one: copying itoa's output cost a library call per number.
    fn v4_text(v4: &std::net::SocketAddrV4) -> ([u8; 21], usize) {
        let mut buf = [0u8; 21];
        let mut len = 0;
        for (i, octet) in v4.ip().octets().into_iter().enumerate() {
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            // Three bytes are copied whatever the octet's width: the next write overwrites
            // what is past its digits.
            let (digits, width) = OCTETS[usize::from(octet)];
            buf[len..len + 3].copy_from_slice(&digits);
            len += usize::from(width);
        }
        buf[len] = b':';
        len = put_decimal(&mut buf, len + 1, v4.port());
        (buf, len)
    }

    /// Hands `f` the text of [`Self::v4_text`], kept for the last two addresses: lines come in
    /// runs of one connection, whose two addresses alternate, and making the text costs more
    /// than copying it (its UTF-8 check alone, for a `String`).
    fn with_v4_text<R>(v4: &std::net::SocketAddrV4, f: impl FnOnce(&str) -> R) -> R {
        LAST_V4.with_borrow_mut(|(slots, last)| {
            let at = match slots.iter().position(|(a, _)| a == v4) {
                Some(at) => at,
                None => {
                    // The older slot's string takes the new text.
                    let at = 1 - *last;
                    let (buf, len) = Self::v4_text(v4);
                    let (addr, text) = &mut slots[at];
                    *addr = *v4;
                    text.clear();
                    // Digits, dots and a colon.
                    text.push_str(std::str::from_utf8(&buf[..len]).unwrap_or_default());
                    at
                }
            };
            *last = at;
            f(&slots[at].1)
        })
    }

    /// Appends the address as `Display` shows it, without the formatting machinery.
    pub fn push_to(&self, out: &mut String) {
        match self.0 {
            SocketAddr::V4(v4) => Self::with_v4_text(v4, |text| out.push_str(text)),
            v6 => {
                use std::fmt::Write;
                let _ = write!(out, "{v6}");
            }
        }
    }

    /// [`Self::push_to`] for a byte buffer.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self.0 {
            SocketAddr::V4(v4) => {
                Self::with_v4_text(v4, |text| out.extend_from_slice(text.as_bytes()))
            }
            v6 => {
                use std::io::Write;
                let _ = write!(out, "{v6}");
            }
        }
    }
}

impl fmt::Display for Addr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SocketAddr::V4(v4) = self.0 else {
            return self.0.fmt(f);
        };
        let (buf, len) = Self::v4_text(v4);
        // ASCII digits, dots and a colon; `pad` honours width and alignment as `Display` does.
        f.pad(std::str::from_utf8(&buf[..len]).unwrap_or_default())
    }
}

/// Each octet's decimal digits (left-aligned) and their count, made at compile time.
const OCTETS: [([u8; 3], u8); 256] = {
    let mut table = [([0u8; 3], 0u8); 256];
    let mut n = 0;
    while n < 256 {
        let (h, t, o) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        table[n] = if n >= 100 {
            ([b'0' + h, b'0' + t, b'0' + o], 3)
        } else if n >= 10 {
            ([b'0' + t, b'0' + o, 0], 2)
        } else {
            ([b'0' + o, 0, 0], 1)
        };
        n += 1;
    }
    table
};

/// Writes `n` in decimal at `at` (the caller leaves room for five digits); returns the end.
fn put_decimal(buf: &mut [u8; 21], at: usize, n: u16) -> usize {
    let width = match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    };
    let mut n = n;
    for slot in buf[at..at + width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    at + width
}

/// Counts events, then hands them on, unless the inner sink shows none of them (`-q`).
pub struct Counting<S> {
    pub tally: Tally,
    pub inner: S,
    pass_on: bool,
}

impl<S: Sink> Counting<S> {
    pub fn new(inner: S) -> Self {
        Counting {
            tally: Tally::default(),
            inner,
            pass_on: true,
        }
    }

    /// Counts only: `inner` would drop every event, so none is built for it.
    pub fn counts_only(inner: S) -> Self {
        Counting {
            pass_on: false,
            ..Counting::new(inner)
        }
    }
}

impl<S: Sink> Sink for Counting<S> {
    fn event(&mut self, event: Event) {
        self.tally.count(&event);
        if self.pass_on {
            self.inner.event(event);
        }
    }

    fn wants(&mut self) -> Wants<'_> {
        if !self.pass_on {
            return Wants::Counts(&mut self.tally);
        }
        match self.inner.wants() {
            Wants::Everything => Wants::Everything,
            // What is not built is counted here all the same.
            Wants::Calls(_) => Wants::Calls(Some(&mut self.tally)),
            Wants::AllButMessages(_) => Wants::AllButMessages(Some(&mut self.tally)),
            Wants::Counts(_) => Wants::Counts(&mut self.tally),
        }
    }

    // Lines come from threads that counted their events themselves.
    fn line(&mut self, line: &[u8]) {
        self.inner.line(line);
    }

    fn closed(&self) -> bool {
        self.inner.closed()
    }

    fn time_base(&mut self, first_ts_ns: i64) {
        self.inner.time_base(first_ts_ns);
    }
}

/// Everything the end-of-run summary shows.
#[derive(Debug, Clone)]
pub struct Summary {
    pub file: String,
    pub stats: Stats,
    pub tally: Tally,
    /// Non-fatal capture-file problems, in words.
    pub warnings: Vec<String>,
    /// libpcap's counters, for a live capture.
    pub live: Option<crate::capture::live::LiveStats>,
}

#[cfg(test)]
mod tests {
    use super::Addr;

    #[test]
    fn every_octet_and_port_width_reads_as_display_writes_it() {
        for n in 0..=255u8 {
            let port = [0, 9, 10, 99, 100, 999, 1000, 9999, 10000, 65535][usize::from(n) % 10];
            let a = std::net::SocketAddr::from(([n, 255 - n, n / 2, n % 7], port));
            assert_eq!(Addr(&a).to_string(), a.to_string());
        }
    }

    #[test]
    fn addr_shows_what_display_shows_with_width_and_alignment() {
        for a in [
            "127.0.0.1:50051",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "1.22.103.9:10",
            "100.9.0.99:9999",
            "[::1]:443",
        ] {
            let a: std::net::SocketAddr = a.parse().unwrap();
            assert_eq!(Addr(&a).to_string(), a.to_string());
            let mut written = Vec::new();
            Addr(&a).write_to(&mut written);
            assert_eq!(written, a.to_string().as_bytes());
            assert_eq!(format!("{:>24}|", Addr(&a)), format!("{:>24}|", a));
            assert_eq!(format!("{:<24}|", Addr(&a)), format!("{:<24}|", a));
        }
    }

    /// Addresses written again come from the last two written: alternating, repeated, and
    /// pushed out by a third, each is still itself.
    #[test]
    fn addresses_written_again_are_the_same() {
        let addrs: Vec<std::net::SocketAddr> = ["10.0.0.1:443", "10.0.0.2:5555", "0.0.0.0:0"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        for i in [0, 1, 0, 1, 1, 2, 0, 2, 2, 1, 0] {
            let mut written = Vec::new();
            Addr(&addrs[i]).write_to(&mut written);
            assert_eq!(written, addrs[i].to_string().as_bytes(), "{i}");
        }
    }
}
