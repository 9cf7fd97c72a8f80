//! Message decompression for `grpc-encoding`: gzip, deflate (zlib format, as gRPC sends it),
//! zstd (pure-Rust `ruzstd`), snappy (`snap`), identity. Output is capped: a compressed bomb is
//! reported, never expanded past the cap.

use std::io::Read;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    #[error("encoding {0:?} is not supported; message shown compressed")]
    Unsupported(String),
    #[error("decompresses to more than {limit} bytes (compression bomb?); not expanded")]
    TooLarge { limit: usize },
    #[error("corrupt {encoding} data: {message}")]
    Corrupt { encoding: String, message: String },
}

/// The zstd window a frame may ask for; larger windows are refused rather than allocated.
const MAX_ZSTD_WINDOW: u64 = 8 << 20;

/// Decompresses `data` sent with `grpc-encoding: encoding`, producing at most `limit` bytes.
pub fn decompress(encoding: &str, data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let enc = encoding.trim().to_ascii_lowercase();
    match enc.as_str() {
        "identity" => {
            if data.len() > limit {
                return Err(DecompressError::TooLarge { limit });
            }
            Ok(data.to_vec())
        }
        "gzip" | "x-gzip" => read_capped(flate2::read::GzDecoder::new(data), limit, &enc),
        "deflate" => {
            // gRPC's "deflate" is zlib-wrapped; some peers send raw deflate, so fall back to it.
            match read_capped(flate2::read::ZlibDecoder::new(data), limit, &enc) {
                Err(DecompressError::Corrupt { .. }) => {
                    read_capped(flate2::read::DeflateDecoder::new(data), limit, &enc)
                }
                other => other,
            }
        }
        "zstd" => {
            let dec =
                ruzstd::decoding::StreamingDecoder::new_with_max_window_size(data, MAX_ZSTD_WINDOW)
                    .map_err(|e| DecompressError::Corrupt {
                        encoding: enc.clone(),
                        message: e.to_string(),
                    })?;
            read_capped(dec, limit, &enc)
        }
        // grpc-java's and grpc-go's snappy codecs use the framing format.
        "snappy" => read_capped(snap::read::FrameDecoder::new(data), limit, &enc),
        _ => Err(DecompressError::Unsupported(encoding.to_string())),
    }
}

/// Reads at most `limit` bytes; one more means the output is too large.
fn read_capped<R: Read>(r: R, limit: usize, encoding: &str) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Corrupt {
            encoding: encoding.to_string(),
            message: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_encoding_roundtrips() {
        let msg = b"hello hello hello grpc".repeat(10);
        assert_eq!(decompress("gzip", &gzip(&msg), 1 << 20).unwrap(), msg);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&msg).unwrap();
        assert_eq!(
            decompress("deflate", &z.finish().unwrap(), 1 << 20).unwrap(),
            msg
        );
        let zs = ruzstd::encoding::compress_to_vec(
            &msg[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(decompress("zstd", &zs, 1 << 20).unwrap(), msg);
        let mut s = snap::write::FrameEncoder::new(Vec::new());
        s.write_all(&msg).unwrap();
        assert_eq!(
            decompress("snappy", &s.into_inner().unwrap(), 1 << 20).unwrap(),
            msg
        );
        assert_eq!(decompress("identity", &msg, 1 << 20).unwrap(), msg);
    }

    #[test]
    fn bombs_are_refused() {
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 20_000);
        assert!(matches!(
            decompress("gzip", &bomb, 1 << 20),
            Err(DecompressError::TooLarge { limit }) if limit == 1 << 20
        ));
        let zs = ruzstd::encoding::compress_to_vec(
            &vec![0u8; 10 << 20][..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert!(matches!(
            decompress("zstd", &zs, 1 << 20),
            Err(DecompressError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_and_corrupt() {
        assert!(matches!(
            decompress("lz4", b"x", 10),
            Err(DecompressError::Unsupported(_))
        ));
        assert!(matches!(
            decompress("gzip", b"not gzip", 10),
            Err(DecompressError::Corrupt { .. })
        ));
        assert!(decompress("zstd", b"\x28\xb5\x2f\xfd garbage", 10).is_err());
        assert!(decompress("snappy", b"garbage", 10).is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn junk_never_panics_nor_exceeds_the_cap(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for enc in ["gzip", "deflate", "zstd", "snappy", "identity"] {
                if let Ok(out) = decompress(enc, &bytes, 1024) {
                    prop_assert!(out.len() <= 1024);
                }
            }
        }
    }
}
