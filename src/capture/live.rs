//! Live capture from an interface through libpcap (the `pcap` crate), behind the `live` cargo
//! feature so that the default build needs no system library.

use super::{LinkType, Packet};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    #[error("{}", not_built_message())]
    NotBuilt,
    #[error("{iface}: permission denied: capturing needs root, or the capabilities CAP_NET_RAW and CAP_NET_ADMIN (sudo setcap cap_net_raw,cap_net_admin=eip $(command -v h2scope))")]
    Permission { iface: String },
    #[error("{iface}: no such interface (list them with: h2scope capture -D)")]
    NoSuchInterface { iface: String },
    #[error("capture filter {filter:?}: {message}")]
    BadFilter { filter: String, message: String },
    #[error("{iface}: {message}")]
    Other { iface: String, message: String },
}

/// What a binary built without the `live` feature says when asked to capture.
pub fn not_built_message() -> &'static str {
    "this h2scope was built without live capture: rebuild with `cargo build --release --features live` \
     (needs libpcap; on Debian: apt install libpcap0.8-dev). Reading capture files works without it."
}

/// Turns libpcap's messages into errors that say what to do.
pub fn classify(iface: &str, message: &str) -> LiveError {
    let m = message.to_ascii_lowercase();
    if m.contains("permission") || m.contains("not permitted") {
        LiveError::Permission {
            iface: iface.to_string(),
        }
    } else if m.contains("no such device") || m.contains("doesn't exist") || m.contains("no such") {
        LiveError::NoSuchInterface {
            iface: iface.to_string(),
        }
    } else {
        LiveError::Other {
            iface: iface.to_string(),
            message: message.to_string(),
        }
    }
}

/// Counters from libpcap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStats {
    pub received: u64,
    /// Dropped by the kernel because h2scope did not read fast enough.
    pub dropped: u64,
    /// Dropped by the interface or its driver.
    pub if_dropped: u64,
}

#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub description: Option<String>,
}

#[cfg(feature = "live")]
mod imp {
    use super::*;

    fn error(iface: &str, e: pcap::Error) -> LiveError {
        classify(iface, &e.to_string())
    }

    pub fn list_interfaces() -> Result<Vec<Interface>, LiveError> {
        let devices = pcap::Device::list().map_err(|e| error("interfaces", e))?;
        Ok(devices
            .into_iter()
            .map(|d| Interface {
                name: d.name,
                description: d.desc,
            })
            .collect())
    }

    pub struct LiveCapture {
        cap: pcap::Capture<pcap::Active>,
        iface: String,
        link: LinkType,
        index: u64,
    }

    impl LiveCapture {
        /// `buffer_kib`: the kernel's capture buffer, as tcpdump's `-B` gives it.
        pub fn open(
            iface: &str,
            filter: Option<&str>,
            snaplen: u32,
            buffer_kib: u32,
        ) -> Result<Self, LiveError> {
            let cap = pcap::Capture::from_device(iface)
                .map_err(|e| error(iface, e))?
                .promisc(true)
                .snaplen(snaplen.min(i32::MAX as u32) as i32)
                .buffer_size(buffer_kib.saturating_mul(1024).min(i32::MAX as u32) as i32)
                // Packets are handed over as they arrive, and the read returns at least every
                // 100 ms so that Ctrl-C and --duration are noticed.
                .immediate_mode(true)
                .open()
                .map_err(|e| error(iface, e))?;
            // Non-blocking, with our own poll(2): in immediate mode Linux libpcap ignores the read
            // timeout, and Ctrl-C and --duration must be noticed while the wire is quiet.
            let mut cap = cap.setnonblock().map_err(|e| error(iface, e))?;
            // On `any`, ask for Linux cooked v2 as tcpdump does: it names the interface of each
            // packet. Older libpcaps without it keep cooked v1.
            if iface == "any" {
                let sll2 = pcap::Linktype(crate::capture::link::LINKTYPE_LINUX_SLL2 as i32);
                if cap.list_datalinks().is_ok_and(|l| l.contains(&sll2)) {
                    let _ = cap.set_datalink(sll2);
                }
            }
            if let Some(f) = filter {
                cap.filter(f, true).map_err(|e| LiveError::BadFilter {
                    filter: f.to_string(),
                    message: e.to_string(),
                })?;
            }
            let link = LinkType(cap.get_datalink().0 as u32);
            Ok(LiveCapture {
                cap,
                iface: iface.to_string(),
                link,
                index: 0,
            })
        }

        pub fn link(&self) -> LinkType {
            self.link
        }

        /// The next packet, or `None` when nothing arrived within 100 ms.
        pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, LiveError> {
            if !self.ready() {
                return Ok(None);
            }
            match self.cap.next_packet() {
                Ok(p) => {
                    self.index += 1;
                    let ts = p.header.ts;
                    // time_t and suseconds_t are narrower than i64 on some platforms.
                    #[allow(clippy::unnecessary_cast)]
                    let ts_ns = ts.tv_sec as i64 * 1_000_000_000 + ts.tv_usec as i64 * 1000;
                    Ok(Some(Packet {
                        index: self.index,
                        ts_ns,
                        link: self.link,
                        data: p.data,
                        orig_len: p.header.len,
                    }))
                }
                Err(pcap::Error::TimeoutExpired) => Ok(None),
                Err(e) => Err(error(&self.iface, e)),
            }
        }

        /// Waits up to 100 ms for the capture descriptor to become readable.
        fn ready(&self) -> bool {
            use std::os::fd::AsRawFd;
            let mut fds = libc::pollfd {
                fd: self.cap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, living for the duration of the call.
            let n = unsafe { libc::poll(&mut fds, 1, 100) };
            n != 0
        }

        pub fn stats(&mut self) -> LiveStats {
            match self.cap.stats() {
                Ok(s) => LiveStats {
                    received: s.received as u64,
                    dropped: s.dropped as u64,
                    if_dropped: s.if_dropped as u64,
                },
                Err(_) => LiveStats::default(),
            }
        }
    }
}

#[cfg(not(feature = "live"))]
mod imp {
    use super::*;

    pub fn list_interfaces() -> Result<Vec<Interface>, LiveError> {
        Err(LiveError::NotBuilt)
    }

    /// Stand-in for builds without libpcap: opening always says how to get live capture.
    pub struct LiveCapture {
        never: std::convert::Infallible,
    }

    impl LiveCapture {
        pub fn open(_: &str, _: Option<&str>, _: u32, _: u32) -> Result<Self, LiveError> {
            Err(LiveError::NotBuilt)
        }
        pub fn link(&self) -> LinkType {
            match self.never {}
        }
        pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, LiveError> {
            match self.never {}
        }
        pub fn stats(&mut self) -> LiveStats {
            match self.never {}
        }
    }
}

pub use imp::{list_interfaces, LiveCapture};

/// The kernel's capture buffer unless `-B` says otherwise: 32 MiB. libpcap hands packets over
/// at once (immediate mode) from a ring of slots as large as the interface's largest packet;
/// its default of 2 MiB is 32 slots on loopback (64 KiB), which one burst of a bulk transfer
/// overflows (a test saw 160 packets dropped of a 150 kB answer).
pub const DEFAULT_BUFFER_KIB: u32 = 32 * 1024;

/// The time of day in nanoseconds since 1970: a live capture's clock, as its packets' times.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_do() {
        assert!(not_built_message().contains("--features live"));
        assert!(not_built_message().contains("libpcap0.8-dev"));
        let e = classify(
            "eth9",
            "eth9: No such device exists (SIOCGIFHWADDR: No such device)",
        );
        assert_eq!(
            e,
            LiveError::NoSuchInterface {
                iface: "eth9".into()
            }
        );
        assert!(e.to_string().contains("h2scope capture -D"));
        let e = classify("lo", "lo: You don't have permission to capture on that device (socket: Operation not permitted)");
        assert!(matches!(e, LiveError::Permission { .. }));
        assert!(e.to_string().contains("CAP_NET_RAW"));
        assert!(LiveError::NotBuilt.to_string().contains("--features live"));
    }
}
