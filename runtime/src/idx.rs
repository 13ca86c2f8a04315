//! IDX files, the format of MNIST and Fashion-MNIST (`*-idx3-ubyte.gz`,
//! `*-idx1-ubyte.gz`), plain or gzip-compressed.
//!
//! An IDX file is a big-endian header — two zero bytes, a type code (`0x08`
//! for unsigned bytes), the number of dimensions — then one `u32` per
//! dimension, then the data, row-major. Images are `[n, rows, cols]` u8
//! pixels, labels `[n]` u8 classes. A file whose first two bytes are the
//! gzip magic (`1f 8b`) is decompressed first, whatever its name.

use std::io::Read;
use std::path::Path;

/// Why an IDX file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    #[error("{path}: cannot read: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not an IDX file: {why}")]
    Format { path: String, why: String },
}

/// Images of an IDX3 u8 file: `(n, rows, cols, pixels)` with `pixels`
/// holding `n·rows·cols` bytes, image by image, row-major.
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), IdxError> {
    let (dims, data) = read_idx_u8(path)?;
    match dims[..] {
        [n, rows, cols] => Ok((n, rows, cols, data)),
        _ => Err(format_error(path, format!("expected 3 dimensions (images), found {}", dims.len()))),
    }
}

/// Labels of an IDX1 u8 file, one byte per item.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, IdxError> {
    let (dims, data) = read_idx_u8(path)?;
    match dims[..] {
        [_] => Ok(data),
        _ => Err(format_error(path, format!("expected 1 dimension (labels), found {}", dims.len()))),
    }
}

/// The dimensions and data of an IDX file of unsigned bytes (type `0x08`).
pub fn read_idx_u8(path: &Path) -> Result<(Vec<usize>, Vec<u8>), IdxError> {
    let raw = std::fs::read(path).map_err(|source| IdxError::Io { path: path.display().to_string(), source })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| format_error(path, format!("bad gzip data: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx_u8(&bytes).map_err(|why| format_error(path, why))
}

fn format_error(path: &Path, why: String) -> IdxError {
    IdxError::Format { path: path.display().to_string(), why }
}

/// Parses decompressed IDX bytes of type u8.
fn parse_idx_u8(bytes: &[u8]) -> Result<(Vec<usize>, Vec<u8>), String> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("the file does not start with the IDX magic (two zero bytes)".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!("element type 0x{:02x}; only unsigned bytes (0x08) are supported", bytes[2]));
    }
    let ndim = usize::from(bytes[3]);
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format!("the header of {ndim} dimensions is cut short"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let len = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or("the dimensions overflow")?;
    let data = &bytes[header..];
    if data.len() != len {
        return Err(format!("dimensions {dims:?} need {len} bytes of data, the file holds {}", data.len()));
    }
    Ok((dims, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A folder of test files, removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("snnc-idx-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self, name: &str, bytes: &[u8]) -> std::path::PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_gzipped_images_and_labels() {
        let dir = TempDir::new("gz");
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8 * 10).collect();
        let images = dir.file("imgs-idx3-ubyte.gz", &gzip(&idx(&[2, 3, 4], &pixels)));
        let (n, rows, cols, data) = read_idx_images(&images).unwrap();
        assert_eq!((n, rows, cols), (2, 3, 4));
        assert_eq!(data, pixels);

        let labels = dir.file("labels-idx1-ubyte.gz", &gzip(&idx(&[3], &[7, 0, 9])));
        assert_eq!(read_idx_labels(&labels).unwrap(), vec![7, 0, 9]);
    }

    #[test]
    fn reads_uncompressed_files() {
        let dir = TempDir::new("plain");
        let path = dir.file("plain-idx1-ubyte", &idx(&[2], &[1, 2]));
        assert_eq!(read_idx_labels(&path).unwrap(), vec![1, 2]);
    }

    #[test]
    fn rejects_bad_files() {
        let dir = TempDir::new("bad");
        let short = dir.file("short.gz", &gzip(&idx(&[2, 2, 2], &[0; 7])));
        let e = read_idx_images(&short).unwrap_err().to_string();
        assert!(e.contains("need 8 bytes of data, the file holds 7"), "{e}");

        let labels_as_images = dir.file("labels.gz", &gzip(&idx(&[2], &[0, 1])));
        let e = read_idx_images(&labels_as_images).unwrap_err().to_string();
        assert!(e.contains("expected 3 dimensions"), "{e}");

        let mut wrong_type = idx(&[1], &[0]);
        wrong_type[2] = 0x0d;
        let e = read_idx_labels(&dir.file("float.idx", &wrong_type)).unwrap_err().to_string();
        assert!(e.contains("only unsigned bytes"), "{e}");

        let e = read_idx_labels(&dir.file("text.idx", b"hello")).unwrap_err().to_string();
        assert!(e.contains("IDX magic"), "{e}");

        let e = read_idx_labels(&dir.file("badgz.gz", &[0x1f, 0x8b, 1, 2, 3])).unwrap_err().to_string();
        assert!(e.contains("bad gzip data"), "{e}");

        let e = read_idx_labels(Path::new("/nonexistent/snnc/labels.gz")).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
