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

/// The most data bytes an IDX file may announce: 2^31 (Fashion-MNIST's
/// training images are 47 MB).
pub const MAX_IDX_BYTES: u64 = 1 << 31;

/// The dimensions and data of an IDX file of unsigned bytes (type `0x08`).
///
/// The file is read as a stream (decompressed on the fly when gzipped):
/// the header first, whose size must be at most [`MAX_IDX_BYTES`], then
/// exactly the bytes it announces. A file holding more (a gzip bomb) or
/// fewer is refused without reading past what the header promises.
pub fn read_idx_u8(path: &Path) -> Result<(Vec<usize>, Vec<u8>), IdxError> {
    let io = |source| IdxError::Io { path: path.display().to_string(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut magic = Vec::with_capacity(2);
    (&mut file).take(2).read_to_end(&mut magic).map_err(io)?;
    let raw = std::io::Cursor::new(magic.clone()).chain(std::io::BufReader::new(file));
    let gzip = magic == [0x1f, 0x8b];
    let mut reader: Box<dyn Read> = if gzip { Box::new(flate2::read::GzDecoder::new(raw)) } else { Box::new(raw) };
    let read_error = |e: std::io::Error| {
        if gzip { format_error(path, format!("bad gzip data: {e}")) } else { io(e) }
    };
    let mut head = Vec::with_capacity(4);
    (&mut reader).take(4).read_to_end(&mut head).map_err(read_error)?;
    if head.len() < 4 || head[0] != 0 || head[1] != 0 {
        return Err(format_error(path, "the file does not start with the IDX magic (two zero bytes)".into()));
    }
    if head[2] != 0x08 {
        return Err(format_error(
            path,
            format!("element type 0x{:02x}; only unsigned bytes (0x08) are supported", head[2]),
        ));
    }
    let ndim = usize::from(head[3]);
    let mut dims_bytes = Vec::with_capacity(4 * ndim);
    (&mut reader).take(4 * ndim as u64).read_to_end(&mut dims_bytes).map_err(read_error)?;
    if dims_bytes.len() < 4 * ndim {
        return Err(format_error(path, format!("the header of {ndim} dimensions is cut short")));
    }
    let dims: Vec<usize> =
        dims_bytes.chunks_exact(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).collect();
    let len = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).filter(|&n| n <= MAX_IDX_BYTES);
    let Some(len) = len else {
        return Err(format_error(
            path,
            format!("dimensions {dims:?} announce more than the {MAX_IDX_BYTES} bytes snnc reads from an IDX file"),
        ));
    };
    let mut data = Vec::new();
    data.try_reserve_exact(len as usize + 1).map_err(|_| {
        format_error(path, format!("dimensions {dims:?} need {len} bytes of data, more than this machine can allocate"))
    })?;
    reader.take(len + 1).read_to_end(&mut data).map_err(read_error)?;
    if data.len() as u64 != len {
        let holds = if data.len() as u64 > len { "more".to_string() } else { data.len().to_string() };
        return Err(format_error(
            path,
            format!("dimensions {dims:?} need {len} bytes of data, the file holds {holds}"),
        ));
    }
    Ok((dims, data))
}

fn format_error(path: &Path, why: String) -> IdxError {
    IdxError::Format { path: path.display().to_string(), why }
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

    #[test]
    fn refuses_gzip_bombs_and_absurd_headers() {
        let dir = TempDir::new("bomb");
        // A header announcing 4 bytes, then 64 MiB of zeros: refused after
        // decompressing 5 bytes of data.
        let mut bomb = idx(&[4], &[1, 2, 3, 4]);
        bomb.resize(bomb.len() + (64 << 20), 0);
        let e = read_idx_labels(&dir.file("bomb.gz", &gzip(&bomb))).unwrap_err().to_string();
        assert!(e.contains("need 4 bytes of data, the file holds more"), "{e}");

        let huge = idx(&[60000, 28, 28, 28, 28], &[]);
        let e = read_idx_u8(&dir.file("huge.gz", &gzip(&huge))).unwrap_err().to_string();
        assert!(e.contains("announce more than the 2147483648 bytes"), "{e}");
    }
}
