//! Writing pcapng (one section, an interface per link type met, nanosecond timestamps), classic
//! pcap, and ring-buffer rotation across files for long captures.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use crate::capture::compressed::Compression;
use crate::output::compress::Encoder;
use std::path::{Path, PathBuf};

use super::pcap::PcapWriter;
use crate::capture::LinkType;

const SNAPLEN: u32 = 262_144;

/// pcapng with one interface description per link type.
pub struct PcapngWriter<W: Write> {
    out: W,
    interfaces: Vec<LinkType>,
    written: u64,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

impl<W: Write> PcapngWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut shb = Vec::with_capacity(28);
        shb.extend_from_slice(&0x0A0D_0D0Au32.to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        out.write_all(&shb)?;
        Ok(PcapngWriter {
            out,
            interfaces: Vec::new(),
            written: 28,
        })
    }

    fn interface(&mut self, link: LinkType) -> io::Result<u32> {
        if let Some(i) = self.interfaces.iter().position(|l| *l == link) {
            return Ok(i as u32);
        }
        // IDB with if_tsresol = 9 (nanoseconds).
        let mut idb = Vec::with_capacity(32);
        idb.extend_from_slice(&1u32.to_le_bytes());
        idb.extend_from_slice(&32u32.to_le_bytes());
        idb.extend_from_slice(&(link.0 as u16).to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&SNAPLEN.to_le_bytes());
        idb.extend_from_slice(&9u16.to_le_bytes());
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&[9, 0, 0, 0]);
        idb.extend_from_slice(&[0, 0, 0, 0]);
        idb.extend_from_slice(&32u32.to_le_bytes());
        self.out.write_all(&idb)?;
        self.written += 32;
        self.interfaces.push(link);
        Ok(self.interfaces.len() as u32 - 1)
    }

    pub fn write_packet(
        &mut self,
        link: LinkType,
        ts_ns: i64,
        data: &[u8],
        orig_len: u32,
    ) -> io::Result<()> {
        let iface = self.interface(link)?;
        let data = &data[..data.len().min(SNAPLEN as usize)];
        let pad = pad4(data.len());
        let len = (32 + data.len() + pad) as u32;
        let ts = ts_ns.max(0) as u64;
        let mut h = Vec::with_capacity(28);
        h.extend_from_slice(&6u32.to_le_bytes());
        h.extend_from_slice(&len.to_le_bytes());
        h.extend_from_slice(&iface.to_le_bytes());
        h.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        h.extend_from_slice(&(ts as u32).to_le_bytes());
        h.extend_from_slice(&(data.len() as u32).to_le_bytes());
        h.extend_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)?;
        self.out.write_all(&[0u8; 3][..pad])?;
        self.out.write_all(&len.to_le_bytes())?;
        self.written += len as u64;
        Ok(())
    }

    /// A Decryption Secrets Block with a TLS key log (what `editcap --inject-secrets` writes),
    /// so that readers decrypt the packets after it without being given the key log.
    pub fn write_tls_secrets(&mut self, key_log: &[u8]) -> io::Result<()> {
        const DSB: u32 = 0x0000_000A;
        const TLS_KEY_LOG: u32 = 0x544c_534b;
        let pad = pad4(key_log.len());
        let len = u32::try_from(20 + key_log.len() + pad)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "key log too large"))?;
        let mut h = Vec::with_capacity(16);
        h.extend_from_slice(&DSB.to_le_bytes());
        h.extend_from_slice(&len.to_le_bytes());
        h.extend_from_slice(&TLS_KEY_LOG.to_le_bytes());
        h.extend_from_slice(&(key_log.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(key_log)?;
        self.out.write_all(&[0u8; 3][..pad])?;
        self.out.write_all(&len.to_le_bytes())?;
        self.written += len as u64;
        Ok(())
    }

    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Which file format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcapng,
    /// Classic pcap: one link type per file (the first packet's).
    Pcap,
}

/// A file, or standard output for `-w -` (to pipe to a compressor, as `tcpdump -w -` does),
/// through a compressor or not.
type Out = BufWriter<Encoder>;

enum AnyWriter {
    Ng(PcapngWriter<Out>),
    Classic(PcapWriter<Out>, LinkType, u64),
}

impl AnyWriter {
    /// Flushes, and ends the compressed stream: the file is whole.
    fn finish(self) -> io::Result<()> {
        let out = match self {
            AnyWriter::Ng(w) => w.into_inner(),
            AnyWriter::Classic(w, _, _) => w.into_inner(),
        };
        out.into_inner().map_err(|e| e.into_error())?.finish()
    }
}

/// Writes packets to a file, or to a ring of files that rotate at a size.
pub struct CaptureFile {
    base: PathBuf,
    format: Format,
    /// Rotate when a file reaches this many bytes (`None`: one file).
    ring_size: Option<u64>,
    ring_files: usize,
    compression: Option<Compression>,
    current: Option<AnyWriter>,
    files: Vec<PathBuf>,
    sequence: u32,
}

impl CaptureFile {
    /// `-` for `path` writes to standard output, which cannot rotate. Each file is compressed
    /// as `compression` says (a ring's too; sizes are counted before compression).
    pub fn create(
        path: &Path,
        format: Format,
        ring_size: Option<u64>,
        ring_files: usize,
        compression: Option<Compression>,
    ) -> io::Result<Self> {
        if path == Path::new("-") && ring_size.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "standard output cannot rotate; give a file name with --ring-size",
            ));
        }
        let mut f = CaptureFile {
            base: path.to_path_buf(),
            format,
            ring_size,
            ring_files: ring_files.max(1),
            compression,
            current: None,
            files: Vec::new(),
            sequence: 0,
        };
        if format == Format::Pcapng {
            f.open_next(None)?;
        }
        Ok(f)
    }

    /// The files written so far, oldest first (with a ring, only those kept).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn next_path(&mut self) -> PathBuf {
        if self.ring_size.is_none() {
            return self.base.clone();
        }
        self.sequence += 1;
        // The number goes before the extension, and before both of `x.pcapng.gz`.
        let name = self
            .base
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "capture".into());
        let compressed = Compression::for_extension(&self.base).is_some();
        let mut dots = name.match_indices('.').map(|(i, _)| i).rev();
        let split = match (dots.next(), dots.next()) {
            (Some(_), Some(i)) if compressed && i > 0 => i,
            (Some(i), _) if i > 0 => i,
            _ => name.len(),
        };
        let (stem, ext) = name.split_at(split);
        self.base
            .with_file_name(format!("{stem}_{:05}{ext}", self.sequence))
    }

    fn open_next(&mut self, link: Option<LinkType>) -> io::Result<()> {
        if let Some(w) = self.current.take() {
            w.finish()?;
        }
        let path = self.next_path();
        let target: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(io::stdout())
        } else {
            Box::new(File::create(&path)?)
        };
        let file = BufWriter::with_capacity(64 << 10, Encoder::new(target, self.compression));
        self.current = Some(match (self.format, link) {
            (Format::Pcapng, _) => AnyWriter::Ng(PcapngWriter::new(file)?),
            (Format::Pcap, Some(l)) => {
                AnyWriter::Classic(PcapWriter::new(file, l, SNAPLEN)?, l, 24)
            }
            (Format::Pcap, None) => return Ok(()),
        });
        self.files.push(path);
        while self.files.len() > self.ring_files {
            let old = self.files.remove(0);
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    pub fn write_packet(
        &mut self,
        link: LinkType,
        ts_ns: i64,
        data: &[u8],
        orig_len: u32,
    ) -> io::Result<()> {
        let size = match &self.current {
            Some(AnyWriter::Ng(w)) => w.bytes_written(),
            Some(AnyWriter::Classic(_, _, n)) => *n,
            None => 0,
        };
        let full = self.ring_size.is_some_and(|max| size >= max);
        if self.current.is_none() || full {
            self.open_next(Some(link))?;
        }
        match self.current.as_mut() {
            Some(AnyWriter::Ng(w)) => w.write_packet(link, ts_ns, data, orig_len),
            Some(AnyWriter::Classic(w, l, n)) => {
                if *l != link {
                    // Classic pcap holds one link type; other packets are left out.
                    return Ok(());
                }
                *n += 16 + data.len() as u64;
                w.write_packet(ts_ns, data, orig_len)
            }
            None => Ok(()),
        }
    }

    /// Embeds TLS secrets before the packets that follow (pcapng; a classic pcap file cannot
    /// hold them and is left as it is).
    pub fn write_tls_secrets(&mut self, key_log: &[u8]) -> io::Result<()> {
        if self.current.is_none() && self.format == Format::Pcapng {
            self.open_next(None)?;
        }
        match self.current.as_mut() {
            Some(AnyWriter::Ng(w)) => w.write_tls_secrets(key_log),
            _ => Ok(()),
        }
    }

    /// Before a packet whose TCP payload starts a TLS ClientHello: the connection's secrets,
    /// when the key log has them, so that the file written decrypts on its own (as `editcap
    /// --inject-secrets`).
    pub fn embed_tls_secrets(
        &mut self,
        keys: &crate::tls::KeyLog,
        tcp_payload: &[u8],
    ) -> io::Result<()> {
        let Some(random) = crate::tls::client_random(tcp_payload) else {
            return Ok(());
        };
        let lines = keys.lines_for(&random);
        if lines.is_empty() {
            return Ok(());
        }
        self.write_tls_secrets(lines.as_bytes())
    }

    /// Flushes what is written so far to the file (a compressed one, as far as its format
    /// allows: see [`Encoder`]'s `flush`).
    pub fn flush(&mut self) -> io::Result<()> {
        match self.current.as_mut() {
            Some(AnyWriter::Ng(w)) => w.flush(),
            Some(AnyWriter::Classic(w, _, _)) => w.flush(),
            None => Ok(()),
        }
    }

    /// Ends the file: flushed, and a compressed one's stream ended. Packets written after it
    /// would start the file again.
    pub fn finish(&mut self) -> io::Result<()> {
        match self.current.take() {
            Some(w) => w.finish(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureReader;

    fn read_back(path: &Path) -> Vec<(u64, i64, u32, Vec<u8>)> {
        let mut r = CaptureReader::open(path.to_str().unwrap()).unwrap();
        let mut out = Vec::new();
        r.for_each_packet(|p| {
            out.push((p.index, p.ts_ns, p.link.0, p.data.to_vec()));
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn pcapng_with_two_link_types_reads_back() {
        let dir = std::env::temp_dir().join(format!("h2scope-ng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pcapng");
        let mut f = CaptureFile::create(&path, Format::Pcapng, None, 1, None).unwrap();
        f.write_packet(LinkType(1), 1_700_000_000_123_456_789, &[1, 2, 3], 3)
            .unwrap();
        f.write_packet(LinkType(276), 1_700_000_001_000_000_001, &[4; 21], 21)
            .unwrap();
        f.flush().unwrap();
        let got = read_back(&path);
        assert_eq!(got[0], (1, 1_700_000_000_123_456_789, 1, vec![1, 2, 3]));
        assert_eq!(got[1], (2, 1_700_000_001_000_000_001, 276, vec![4; 21]));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn ring_rotates_and_keeps_the_last_files() {
        let dir = std::env::temp_dir().join(format!("h2scope-ring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ring.pcapng");
        let mut f = CaptureFile::create(&path, Format::Pcapng, Some(1000), 3, None).unwrap();
        for i in 0..100 {
            f.write_packet(LinkType(1), i, &[i as u8; 100], 100)
                .unwrap();
        }
        f.flush().unwrap();
        let files = f.files().to_vec();
        assert_eq!(files.len(), 3);
        let on_disk = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(on_disk, 3);
        // The newest file holds the last packet.
        let last = read_back(files.last().unwrap());
        assert_eq!(last.last().unwrap().3, vec![99u8; 100]);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A compressed ring: each file is a whole compressed stream named with its number before
    /// both extensions, and the files read back to every packet kept, in order.
    #[test]
    fn compressed_ring_files_are_whole_and_named_as_wireshark_names_them() {
        for (c, ext) in [
            (Compression::Gzip, "gz"),
            (Compression::Zstd, "zst"),
            (Compression::Lz4, "lz4"),
        ] {
            let dir =
                std::env::temp_dir().join(format!("h2scope-cring-{}-{ext}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("ring.pcapng.{ext}"));
            let mut f = CaptureFile::create(&path, Format::Pcapng, Some(2000), 3, Some(c)).unwrap();
            for i in 0..100 {
                f.write_packet(LinkType(1), i, &[i as u8; 100], 100)
                    .unwrap();
            }
            f.finish().unwrap();
            let files = f.files().to_vec();
            assert_eq!(files.len(), 3);
            let names: Vec<String> = files
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            assert!(
                names
                    .iter()
                    .all(|n| n.starts_with("ring_") && n.ends_with(&format!(".pcapng.{ext}"))),
                "{names:?}"
            );
            let mut all = Vec::new();
            for file in &files {
                let bytes = std::fs::read(file).unwrap();
                assert_eq!(
                    crate::capture::compressed::Compression::detect(&bytes),
                    Some(c)
                );
                all.extend(read_back(file).into_iter().map(|p| p.3[0]));
            }
            let first = all[0];
            assert_eq!(all, (first..100).collect::<Vec<u8>>(), "{ext}");
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}
