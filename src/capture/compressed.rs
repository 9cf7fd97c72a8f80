//! Compressed capture files: gzip (`tcpdump -w - | gzip`, `.pcapng.gz`), zstd and LZ4 frames,
//! the three Wireshark reads. They are recognised by their magic numbers rather than by name, as
//! Wireshark does, and decompressed as a stream, so that a multi-GB capture never sits in memory.
//!
//! A compressed stream that is cut or damaged ends the capture where the damage starts, as a
//! pcap cut mid-record does: what came before is dissected, and the reader says why it stopped.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// The largest zstd window accepted. `zstd -19` uses 8 MiB, `--long` 128 MiB; the window is
/// the decoder's memory, so a frame asking for more is refused rather than allocated.
pub const MAX_ZSTD_WINDOW: u64 = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    Lz4,
}

impl Compression {
    /// The compression a file starting with `prefix` (at least 4 bytes) uses, if any.
    pub fn detect(prefix: &[u8]) -> Option<Compression> {
        match prefix {
            [0x1f, 0x8b, ..] => Some(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Compression::Zstd),
            [0x04, 0x22, 0x4d, 0x18, ..] => Some(Compression::Lz4),
            _ => None,
        }
    }

    /// The compression a file name asks for by its extension (`.gz`, `.zst`, `.lz4`), as
    /// Wireshark chooses it for a file it writes.
    pub fn for_extension(path: &std::path::Path) -> Option<Compression> {
        let ext = path.extension()?.to_str()?;
        [Compression::Gzip, Compression::Zstd, Compression::Lz4]
            .into_iter()
            .find(|c| c.extension() == ext)
    }

    /// The file name extension of this compression, without its dot.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "gz",
            Compression::Zstd => "zst",
            Compression::Lz4 => "lz4",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        }
    }

    /// A reader of the decompressed bytes. Damage ends the stream (reads return 0) and is
    /// told in `damage`, so that the packets before it still reach the dissection.
    /// `position` counts the compressed bytes the decompressor has taken.
    pub(crate) fn decompress<R: Read + Send + 'static>(
        self,
        source: R,
        damage: Arc<OnceLock<String>>,
        position: Position,
    ) -> Box<dyn Read + Send> {
        let source = Counted {
            inner: BufReader::with_capacity(64 << 10, source),
            position,
        };
        let inner: Box<dyn Read + Send> = match self {
            // Multi-member: `cat a.gz b.gz` and `gzip -c >> f` are one stream, as gunzip reads them.
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(source)),
            Compression::Zstd => Box::new(ZstdFrames::new(source)),
            Compression::Lz4 => {
                Box::new(Lz4Frames(Some(lz4_flex::frame::FrameDecoder::new(source))))
            }
        };
        Box::new(StopAtDamage {
            inner,
            compression: self,
            damage,
        })
    }
}

/// Counts the bytes taken from the file itself, before any decompression: the position that
/// progress reports measure against the file's size. For a compressed file, exactly the bytes
/// the decompressor has used; for another, what the reader has read (a buffer ahead).
#[derive(Clone, Debug, Default)]
pub struct Position(Arc<AtomicU64>);

impl Position {
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A source that counts what is taken from it. Buffered, it counts what is consumed, so that
/// its read-ahead does not count.
pub(super) struct Counted<R> {
    pub(super) inner: R,
    pub(super) position: Position,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<B: BufRead> BufRead for Counted<B> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.position.0.fetch_add(n as u64, Ordering::Relaxed);
    }
}

struct StopAtDamage {
    inner: Box<dyn Read + Send>,
    compression: Compression,
    damage: Arc<OnceLock<String>>,
}

impl Read for StopAtDamage {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.damage.get().is_some() {
            return Ok(0);
        }
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let what = match e.kind() {
                        io::ErrorKind::UnexpectedEof => "is cut short".to_string(),
                        _ => format!("is damaged ({e})"),
                    };
                    let _ = self
                        .damage
                        .set(format!("the {} stream {what}", self.compression.name()));
                    return Ok(0);
                }
                Ok(n) => return Ok(n),
            }
        }
    }
}

/// Every frame of a zstd stream, skippable frames skipped: `ruzstd`'s own streaming decoder
/// stops after the first frame, and `pzstd` or concatenated files have several.
struct ZstdFrames<R> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(source: R) -> Self {
        let mut decoder = FrameDecoder::new();
        decoder.set_max_window_size(MAX_ZSTD_WINDOW);
        ZstdFrames {
            source,
            decoder,
            in_frame: false,
        }
    }

    /// The decoder's errors do not tell a cut stream from a damaged one; the source does.
    fn error(&mut self, e: FrameDecoderError) -> io::Error {
        match self.source.fill_buf() {
            Ok([]) => io::ErrorKind::UnexpectedEof.into(),
            _ => io::Error::other(e),
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                // The stream may end between frames, and only there.
                if self.source.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.decoder.reset(&mut self.source) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        let want = u64::from(length);
                        let skipped =
                            io::copy(&mut (&mut self.source).take(want), &mut io::sink())?;
                        if skipped < want {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    Err(e) => return Err(self.error(e)),
                }
                continue;
            }
            if self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                if let Err(e) = self
                    .decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                {
                    return Err(self.error(e));
                }
                continue;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() {
                self.in_frame = false;
            }
        }
    }
}

/// Every frame of an LZ4 stream. `lz4_flex`'s decoder returns 0 (end of stream, to a reader)
/// at the end of each frame; and reused for a next frame of a smaller block size, it trips
/// over its own buffer (a debug assertion), so each frame gets a decoder of its own. A block
/// is at most 4 MiB: the decoder's memory.
struct Lz4Frames<R: Read>(Option<lz4_flex::frame::FrameDecoder<R>>);

impl<R: BufRead> Read for Lz4Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(frame) = self.0.as_mut() else {
                return Ok(0);
            };
            let n = frame.read(buf)?;
            // Each frame is at least its header long, so this ends with the source.
            if n > 0 || frame.get_mut().fill_buf()?.is_empty() {
                return Ok(n);
            }
            self.0 = self
                .0
                .take()
                .map(|f| lz4_flex::frame::FrameDecoder::new(f.into_inner()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn pack(c: Compression, data: &[u8]) -> Vec<u8> {
        match c {
            Compression::Gzip => gzip(data),
            Compression::Zstd => zstd(data),
            Compression::Lz4 => lz4(data),
        }
    }

    const ALL: [Compression; 3] = [Compression::Gzip, Compression::Zstd, Compression::Lz4];

    fn read_all(c: Compression, bytes: Vec<u8>) -> (Vec<u8>, Option<String>) {
        let damage = Arc::new(OnceLock::new());
        let mut out = Vec::new();
        c.decompress(io::Cursor::new(bytes), damage.clone(), Position::default())
            .read_to_end(&mut out)
            .unwrap();
        (out, damage.get().cloned())
    }

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn detects_by_magic_only() {
        assert_eq!(Compression::detect(&gzip(b"x")), Some(Compression::Gzip));
        assert_eq!(Compression::detect(&zstd(b"x")), Some(Compression::Zstd));
        assert_eq!(Compression::detect(&lz4(b"x")), Some(Compression::Lz4));
        assert_eq!(Compression::detect(&[0xd4, 0xc3, 0xb2, 0xa1]), None);
        assert_eq!(Compression::detect(&[0x1f]), None);
    }

    #[test]
    fn concatenated_members_and_frames_are_one_stream() {
        let (a, b) = (sample(), b"second part".to_vec());
        let whole = [a.clone(), b.clone()].concat();
        let gz = [gzip(&a), gzip(&b)].concat();
        assert_eq!(read_all(Compression::Gzip, gz), (whole.clone(), None));
        // A skippable frame (magic 0x184D2A50, 3 bytes of content) between two frames.
        let skippable = [0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9];
        let zs = [zstd(&a), skippable.to_vec(), zstd(&b)].concat();
        assert_eq!(read_all(Compression::Zstd, zs), (whole.clone(), None));
        let lz = [lz4(&a), lz4(&b)].concat();
        assert_eq!(read_all(Compression::Lz4, lz), (whole, None));
    }

    #[test]
    fn a_cut_stream_keeps_what_came_before_and_says_why_it_stopped() {
        let data = sample();
        for c in ALL {
            let packed = pack(c, &data);
            let (out, damage) = read_all(c, packed[..packed.len() * 2 / 3].to_vec());
            assert!(out.len() < data.len() && data.starts_with(&out), "{c:?}");
            let damage = damage.expect("a cut stream is reported");
            assert!(
                damage.starts_with(&format!("the {} stream", c.name())),
                "{damage}"
            );
        }
    }

    #[test]
    fn garbage_after_the_magic_is_damage_not_a_panic() {
        for c in ALL {
            let mut bytes = pack(c, b"")[..4].to_vec();
            bytes.extend((0..5000u32).map(|i| (i * 7919 % 256) as u8));
            let (_, damage) = read_all(c, bytes);
            assert!(damage.is_some(), "{c:?}");
        }
    }

    #[test]
    fn a_window_larger_than_allowed_is_refused() {
        // Frame header: magic, descriptor 0 (window descriptor follows), window exponent 31
        // (2 GiB) in the descriptor byte's top five bits.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 31 << 3, 0, 0, 0];
        let (out, damage) = read_all(Compression::Zstd, frame.to_vec());
        assert!(out.is_empty());
        assert!(damage.unwrap().contains("damaged"));
    }
}
