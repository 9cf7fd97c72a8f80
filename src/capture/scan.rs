//! A look through a capture's bytes for byte strings, without parsing a record: enough to tell
//! that a pass looking for something in the traffic cannot find it, at the speed of a read.
//!
//! The bytes searched are the file's (decompressed when it is compressed), so a string split
//! across two TCP segments, or encrypted, is not seen: callers use a miss only to skip work that
//! has a fallback.

use std::fs::File;
use std::io::{self, Read};

use memchr::memmem::Finder;

const CHUNK: usize = 1 << 20;

/// Whether any of `needles` occurs in the first `max_bytes` bytes of the capture at `path`
/// (decompressed), or any of `pcapng_needles` when it is a pcapng file: strings only a pcapng
/// block can hold, which a classic pcap file is not searched for (each string is a pass over
/// the bytes). An empty needle list finds nothing.
pub fn holds_any(
    path: &str,
    needles: &[&[u8]],
    pcapng_needles: &[&[u8]],
    max_bytes: u64,
) -> io::Result<bool> {
    let (plain, _) =
        super::plain_bytes(File::open(path)?, &Default::default(), &Default::default())?;
    let mut plain = plain.take(max_bytes);
    let mut magic = Vec::with_capacity(4);
    super::read_up_to(&mut plain, &mut magic, 4)?;
    let mut all = needles.to_vec();
    if magic == super::PCAPNG_MAGIC {
        all.extend_from_slice(pcapng_needles);
    }
    holds_any_in(io::Cursor::new(magic).chain(plain), &all)
}

/// [`holds_any`] over any reader.
pub fn holds_any_in(mut reader: impl Read, needles: &[&[u8]]) -> io::Result<bool> {
    let finders: Vec<Finder<'_>> = needles
        .iter()
        .filter(|n| !n.is_empty())
        .map(Finder::new)
        .collect();
    let Some(keep) = finders.iter().map(|f| f.needle().len() - 1).max() else {
        return Ok(false);
    };
    // Each chunk is searched with the tail of the one before it, for a needle across the seam.
    // The buffer is zeroed once: `read_to_end` into spare capacity zeroed each chunk again,
    // about 1% of a JSON Lines output's instructions.
    let mut buf = vec![0; keep + CHUNK];
    let mut len = 0;
    loop {
        let start = len;
        while len < buf.len() {
            match reader.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if len == start {
            return Ok(false);
        }
        if finders.iter().any(|f| f.find(&buf[..len]).is_some()) {
            return Ok(true);
        }
        let tail = keep.min(len);
        buf.copy_within(len - tail..len, 0);
        len = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out a few bytes at a time, as pipes and decoders do.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_needle_across_every_seam_is_found() {
        let needle = b"/grpc.reflection.";
        for at in [
            0,
            1,
            CHUNK - 9,
            CHUNK - 1,
            CHUNK,
            2 * CHUNK + 3 - needle.len(),
        ] {
            let mut data = vec![b'x'; 2 * CHUNK + 3];
            data[at..at + needle.len()].copy_from_slice(needle);
            assert!(
                holds_any_in(&data[..], &[b"zz", needle]).unwrap(),
                "at {at}"
            );
            assert!(
                holds_any_in(Trickle(&data, 7777), &[needle]).unwrap(),
                "at {at}"
            );
            // One byte short of the needle is not it.
            data[at + needle.len() - 1] = b'x';
            assert!(!holds_any_in(&data[..], &[needle]).unwrap(), "at {at}");
        }
    }

    #[test]
    fn nothing_is_found_in_nothing_or_with_nothing() {
        assert!(!holds_any_in(&b""[..], &[b"a"]).unwrap());
        assert!(!holds_any_in(&b"abc"[..], &[]).unwrap());
        assert!(!holds_any_in(&b"abc"[..], &[b""]).unwrap());
    }

    #[test]
    fn a_compressed_file_is_searched_inside_and_only_so_far() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("h2scope-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut data = vec![0u8; 3 * CHUNK];
        data[2 * CHUNK..2 * CHUNK + 6].copy_from_slice(b"needle");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let path = dir.join("x.gz");
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let path = path.to_str().unwrap();
        assert!(holds_any(path, &[b"needle"], &[], u64::MAX).unwrap());
        assert!(!holds_any(path, &[b"needle"], &[], 2 * CHUNK as u64).unwrap());
        assert!(holds_any(path, &[b"needle"], &[], 2 * CHUNK as u64 + 6).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pcapng_needles_are_looked_for_in_pcapng_files_only() {
        let dir = std::env::temp_dir().join(format!("h2scope-scan-ng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (magic, pcapng) in [
            ([0x0a, 0x0d, 0x0d, 0x0a], true),
            ([0xd4, 0xc3, 0xb2, 0xa1], false),
            ([0xa1, 0xb2, 0xc3, 0xd4], false),
        ] {
            let mut data = magic.to_vec();
            data.extend_from_slice(&[0; 60]);
            data.extend_from_slice(b"CLIENT_RANDOM 00");
            let path = dir.join("x");
            std::fs::write(&path, &data).unwrap();
            let path = path.to_str().unwrap();
            let found = holds_any(path, &[b"absent"], &[b"CLIENT_RANDOM "], u64::MAX).unwrap();
            assert_eq!(found, pcapng, "{magic:02x?}");
            // The other needles are looked for in both.
            assert!(holds_any(path, &[b"CLIENT_RANDOM "], &[], u64::MAX).unwrap());
            // The magic number itself can be a needle.
            assert!(holds_any(path, &[&magic[..]], &[], u64::MAX).unwrap());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
