//! Compressed capture files, as Wireshark writes them: gzip, zstd or LZ4, which
//! [`crate::capture`] reads back.

use std::io::{self, Write};

use crate::capture::compressed::Compression;

/// Bytes of capture compressed into one zstd frame: the memory the encoder holds. Frames one
/// after another are one stream to every zstd reader.
const ZSTD_CHUNK: usize = 1 << 20;

/// Where a capture's bytes go: straight to the file, or through a compressor first.
pub enum Encoder {
    Plain(Box<dyn Write + Send>),
    // Boxed: the encoders' state is large beside a pointer.
    Gzip(Box<flate2::write::GzEncoder<Box<dyn Write + Send>>>),
    Lz4(Box<lz4_flex::frame::FrameEncoder<Box<dyn Write + Send>>>),
    Zstd {
        out: Box<dyn Write + Send>,
        pending: Vec<u8>,
    },
}

impl Encoder {
    pub fn new(out: Box<dyn Write + Send>, compression: Option<Compression>) -> Encoder {
        let Some(compression) = compression else {
            return Encoder::Plain(out);
        };
        match compression {
            // Level 1: a capture compresses well at any level, and writing must keep up
            // with the traffic.
            Compression::Gzip => Encoder::Gzip(Box::new(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::fast(),
            ))),
            Compression::Lz4 => Encoder::Lz4(Box::new(lz4_flex::frame::FrameEncoder::new(out))),
            Compression::Zstd => Encoder::Zstd {
                out,
                pending: Vec::new(),
            },
        }
    }

    /// Ends the compressed stream (its trailer, its last frame), so that the file is whole.
    pub fn finish(self) -> io::Result<()> {
        match self {
            Encoder::Plain(mut out) => out.flush(),
            Encoder::Gzip(gz) => gz.finish()?.flush(),
            Encoder::Lz4(lz4) => lz4.finish().map_err(io::Error::other)?.flush(),
            Encoder::Zstd { mut out, pending } => {
                zstd_frame(&mut out, &pending)?;
                out.flush()
            }
        }
    }
}

fn zstd_frame(out: &mut dyn Write, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let frame =
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest);
    out.write_all(&frame)
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(out) => out.write(buf),
            Encoder::Gzip(gz) => gz.write(buf),
            Encoder::Lz4(lz4) => lz4.write(buf),
            Encoder::Zstd { out, pending } => {
                pending.extend_from_slice(buf);
                if pending.len() >= ZSTD_CHUNK {
                    zstd_frame(out, pending)?;
                    pending.clear();
                }
                Ok(buf.len())
            }
        }
    }

    /// What is written so far reaches the file, as far as the format allows: gzip and LZ4
    /// flush their blocks; zstd keeps its chunk (a frame per flush would undo the
    /// compression), until [`finish`](Encoder::finish).
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(out) => out.flush(),
            Encoder::Gzip(gz) => gz.flush(),
            Encoder::Lz4(lz4) => lz4.flush(),
            Encoder::Zstd { out, .. } => out.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink whose bytes stay readable after the encoder is gone.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Each compression reads back (by the capture reader's decompressors) to what went in,
    /// across several zstd frames too.
    #[test]
    fn every_compression_reads_back() {
        use std::io::Read;
        let data: Vec<u8> = (0..3 * ZSTD_CHUNK + 12345)
            .map(|i| (i / 7 % 251) as u8)
            .collect();
        for c in [
            None,
            Some(Compression::Gzip),
            Some(Compression::Zstd),
            Some(Compression::Lz4),
        ] {
            let sink = Shared::default();
            let mut e = Encoder::new(Box::new(sink.clone()), c);
            for piece in data.chunks(100_000) {
                e.write_all(piece).unwrap();
            }
            e.finish().unwrap();
            let written = sink.0.lock().unwrap().clone();
            let Some(c) = c else {
                assert!(written == data);
                continue;
            };
            assert!(written.len() < data.len() / 4, "{c:?}: {}", written.len());
            let damage = Arc::new(std::sync::OnceLock::new());
            let mut back = Vec::new();
            c.decompress(
                io::Cursor::new(written),
                damage.clone(),
                crate::capture::compressed::Position::default(),
            )
            .read_to_end(&mut back)
            .unwrap();
            assert_eq!(damage.get(), None, "{c:?}");
            assert!(back == data, "{c:?}: {} bytes back", back.len());
        }
    }

    #[test]
    fn extensions_choose() {
        let of = |p: &str| Compression::for_extension(std::path::Path::new(p));
        assert_eq!(of("a.pcapng.gz"), Some(Compression::Gzip));
        assert_eq!(of("a.pcap.zst"), Some(Compression::Zstd));
        assert_eq!(of("a.lz4"), Some(Compression::Lz4));
        assert_eq!(of("a.pcapng"), None);
        assert_eq!(of("-"), None);
    }
}
