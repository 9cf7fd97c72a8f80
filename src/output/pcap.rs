//! Writing captures: classic pcap with nanosecond timestamps, readable by tcpdump, Wireshark and
//! h2scope itself.

use std::io::{self, Write};

use crate::capture::LinkType;

/// pcap magic for nanosecond-resolution timestamps.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W, link: LinkType, snaplen: u32) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_NANOS.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&link.0.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, snaplen })
    }

    /// Writes one packet; data beyond the snap length is cut, as a capture would.
    pub fn write_packet(&mut self, ts_ns: i64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let caplen = data.len().min(self.snaplen as usize);
        let secs = ts_ns.div_euclid(1_000_000_000) as u32;
        let nanos = ts_ns.rem_euclid(1_000_000_000) as u32;
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&nanos.to_le_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        h[12..].copy_from_slice(&orig_len.max(caplen as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&data[..caplen])
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureReader;

    #[test]
    fn written_file_reads_back() {
        let mut w = PcapWriter::new(Vec::new(), LinkType(101), 65535).unwrap();
        w.write_packet(1_700_000_000_123_456_789, &[0x45, 0, 0, 20], 4)
            .unwrap();
        w.write_packet(1_700_000_001_000_000_001, &[1, 2, 3], 3)
            .unwrap();
        let bytes = w.into_inner();
        let mut r = CaptureReader::from_read("mem", std::io::Cursor::new(bytes)).unwrap();
        let mut seen = Vec::new();
        r.for_each_packet(|p| {
            seen.push((p.index, p.ts_ns, p.link.0, p.data.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (1, 1_700_000_000_123_456_789, 101, vec![0x45, 0, 0, 20]),
                (2, 1_700_000_001_000_000_001, 101, vec![1, 2, 3]),
            ]
        );
    }
}
