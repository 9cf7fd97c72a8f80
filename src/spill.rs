//! Unlinked temporary files, for what must be kept until the end of a run but not in memory:
//! the TUI's row details, the figures of connections that ended in `stats`.
//!
//! The file is removed from its directory as soon as it is made, so nothing is left behind
//! however the program ends. Reads go by offset (`pread`) and do not disturb the writer.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

/// A new unlinked file in the temporary directory, or `None` where that cannot be done.
pub fn temp_file(prefix: &str) -> Option<File> {
    if !cfg!(unix) {
        // Elsewhere an open file cannot be unlinked; callers keep things in memory instead.
        return None;
    }
    let dir = std::env::temp_dir();
    for attempt in 0..16u32 {
        let path = dir.join(format!(
            "{prefix}-{}-{attempt}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        if let Ok(f) = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            let _ = std::fs::remove_file(&path);
            return Some(f);
        }
    }
    None
}

/// Reads `buf.len()` bytes at `at`; false if they are not all there.
pub fn read_at(file: &File, at: u64, buf: &mut [u8]) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, at).is_ok()
    }
    #[cfg(not(unix))]
    {
        let _ = (file, at, buf);
        false
    }
}

/// An append-only temporary file with reads by offset.
pub struct Spill {
    writer: BufWriter<File>,
    reader: Arc<File>,
    len: u64,
}

impl Spill {
    pub fn new(prefix: &str) -> Option<Spill> {
        let file = temp_file(prefix)?;
        let reader = Arc::new(file.try_clone().ok()?);
        Some(Spill {
            writer: BufWriter::with_capacity(1 << 16, file),
            reader,
            len: 0,
        })
    }

    /// Appends `parts`, one after the other; returns where they start.
    pub fn append(&mut self, parts: &[&[u8]]) -> io::Result<u64> {
        let at = self.len;
        for p in parts {
            self.writer.write_all(p)?;
            self.len += p.len() as u64;
        }
        Ok(at)
    }

    /// Makes what was appended readable.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    /// A handle that reads what was appended and flushed.
    pub fn reader(&self) -> Arc<File> {
        self.reader.clone()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn appended_bytes_read_back_by_offset() {
        let mut s = Spill::new("h2scope-test").unwrap();
        let a = s.append(&[b"hello", b" "]).unwrap();
        let b = s.append(&[b"world"]).unwrap();
        s.flush().unwrap();
        let r = s.reader();
        let mut buf = [0u8; 5];
        assert!(read_at(&r, b, &mut buf));
        assert_eq!(&buf, b"world");
        assert!(read_at(&r, a, &mut buf));
        assert_eq!(&buf, b"hello");
        assert!(!read_at(&r, s.len(), &mut buf));
    }
}
