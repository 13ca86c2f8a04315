//! NumPy arrays: `.npy` files and `.npz` archives of them, read and written.
//!
//! - [`read_npy`] reads one `.npy` file (format versions 1.0, 2.0 and 3.0):
//!   bool, int8..int64, uint8..uint64, float16/32/64, little- or big-endian,
//!   C or Fortran order (Fortran order is transposed into C order), and
//!   flat structured (record) arrays of those such as Tonic's events
//!   (`[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")]`).
//!   Object arrays (`|O`, pickled), strings, complex numbers, datetimes and
//!   nested records are refused with a message naming the dtype.
//! - [`read_npz`] reads an `.npz` (a zip of `NAME.npy` members, stored as
//!   `numpy.savez` writes them or deflated as `numpy.savez_compressed`
//!   does) into a map from `NAME` to array.
//! - [`write_npy`] and [`write_npz`] write tensors (`float32` as `<f4`,
//!   `float64` as `<f8`, `int64` as `<i8`), through [`crate::save::write_file`].
//! - [`NpyArray::to_tensor`] turns an array into a [`Tensor`].
//!
//! A file is untrusted: nothing is allocated from its header beyond what
//! the file's own size justifies. A `.npy` file's shape must need exactly
//! the bytes that follow its header; an `.npz` member's announced size is
//! bounded by [`MAX_NPZ_MEMBER_BYTES`] and by what its compressed size can
//! expand to, and its data is read as a stream up to the size its header
//! needs and no further (a zip bomb stops there). No input panics.
//!
//! Crates: the `.npy` header (a Python dict literal) is parsed here, in
//! `header.rs`; zip archives are read and written with the `zip` crate
//! (MIT; default features off, only `deflate-flate2`, so it adds five small
//! crates and reuses the `flate2` the IDX reader already has). `npyz` was
//! not taken: its `npz` feature pulls `zip` 0.6 with every default
//! compression feature (bzip2 and zstd through C libraries, AES) and its
//! header parser pulls `py_literal` with `pest`; it reads records only into
//! types known at compile time and leaves Fortran-order arrays as stored,
//! and its reader sizes vectors from the header's shape.

mod decode;
mod header;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use crate::save::{SaveError, write_file};
use crate::tensor::{ElemType, Tensor, elements, index_of, show_value};

/// A NumPy array as read from a file, its values in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    /// NumPy's dtype descr, e.g. `"<f4"`, `"|u1"`, `">i8"`; for a record
    /// array its list of fields, e.g. `"[('x', '<i8'), ('t', '<f8')]"`.
    pub descr: String,
    pub values: NpyValues,
}

/// The values of an [`NpyArray`], by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyValues {
    /// float16/float32/float64, widened to f64; `bits` = 16, 32 or 64.
    Float { bits: u8, data: Vec<f64> },
    /// uint8, kept as bytes (images).
    U8(Vec<u8>),
    /// every other integer type and bool (bool as 0/1); a uint64 above
    /// i64::MAX is an error.
    Int(Vec<i64>),
    /// a structured (record) array such as Tonic's events: one column per
    /// field, in the file's field order, each widened to f64 (integers
    /// exactly up to 2^53, else an error).
    Record(Vec<(String, Vec<f64>)>),
}

/// Why a NumPy file could not be read or written, or an array not turned
/// into a tensor. Each message names the file (and the array in an
/// `.npz`) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file cannot be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io { path: String, source: std::io::Error },
    /// The file is not a NumPy file snnc reads; `why` says what is wrong.
    #[error("{path}: {why}")]
    Format { path: String, why: String },
    /// An array that is no tensor (`what` names it).
    #[error("{what}: {why}")]
    Convert { what: String, why: String },
    /// An `.npz` lacks an array asked for.
    #[error("{path}: no array '{key}' (the file holds {}); {hint}", list_keys(have))]
    MissingKey { path: String, key: String, have: Vec<String>, hint: String },
    /// Writing the file failed.
    #[error(transparent)]
    Save(#[from] SaveError),
}

fn list_keys(keys: &[String]) -> String {
    if keys.is_empty() {
        return "no array".into();
    }
    keys.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
}

impl NpyError {
    /// Whether the user's file or path is at fault (a bad or missing file)
    /// rather than the machine (an I/O failure).
    pub fn is_users(&self) -> bool {
        match self {
            NpyError::Io { source, .. } => {
                crate::save::is_users_fault(source) || source.kind() == std::io::ErrorKind::PermissionDenied
            }
            NpyError::Save(e) => e.is_users(),
            NpyError::Format { .. } | NpyError::Convert { .. } | NpyError::MissingKey { .. } => true,
        }
    }
}

/// The largest uncompressed member of an `.npz` that is read: 2^32 bytes.
pub const MAX_NPZ_MEMBER_BYTES: u64 = 1 << 32;

/// The largest `.npy` header read (NumPy's own headers are a few hundred
/// bytes; a record of many fields a few thousand).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// The most a deflated stream expands: 1032 to 1.
const MAX_DEFLATE_RATIO: u64 = 1032;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

fn format_error(path: &str, why: impl Into<String>) -> NpyError {
    NpyError::Format { path: path.to_string(), why: why.into() }
}

/// Reads one array from `reader`, which holds at most `available` bytes:
/// its header, then exactly the data bytes the header's shape needs (a
/// byte more is an error).
/// `at` names it in messages; `io` turns a read error into an [`NpyError`].
fn parse_npy(
    reader: &mut dyn Read,
    available: u64,
    at: &str,
    io: &dyn Fn(std::io::Error) -> NpyError,
) -> Result<NpyArray, NpyError> {
    let mut prefix = Vec::with_capacity(12);
    reader.take(8).read_to_end(&mut prefix).map_err(io)?;
    if prefix.len() < 8 || &prefix[..6] != MAGIC {
        let zip = prefix.starts_with(b"PK\x03\x04") || prefix.starts_with(b"PK\x05\x06");
        return Err(format_error(
            at,
            if zip {
                "not a NumPy .npy file but a zip archive; an .npz is read by its extension: name it .npz".into()
            } else {
                format!(
                    "not a NumPy .npy file (it does not start with \\x93NUMPY){}; save arrays with numpy.save",
                    if prefix.len() < 8 { ", it is too short" } else { "" }
                )
            },
        ));
    }
    let (major, minor) = (prefix[6], prefix[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => {
            return Err(format_error(
                at,
                format!(
                    "the header says NumPy format version {major}.{minor}, which is not supported (snnc reads 1.0, 2.0 and 3.0); save \
                     the array with numpy.save"
                ),
            ));
        }
    };
    reader.take(len_bytes).read_to_end(&mut prefix).map_err(io)?;
    if prefix.len() < 8 + len_bytes as usize {
        return Err(format_error(at, "the file is cut short inside its header"));
    }
    let header_len = if major == 1 {
        u64::from(u16::from_le_bytes([prefix[8], prefix[9]]))
    } else {
        u64::from(u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]))
    };
    let before_data = prefix.len() as u64 + header_len;
    if header_len > MAX_HEADER_BYTES || before_data > available {
        return Err(format_error(
            at,
            format!(
                "the header announces {header_len} bytes, more than the file holds{}",
                if header_len > MAX_HEADER_BYTES { " or snnc reads (1 MiB)" } else { "" }
            ),
        ));
    }
    let mut text = Vec::with_capacity(header_len as usize);
    reader.take(header_len).read_to_end(&mut text).map_err(io)?;
    if (text.len() as u64) < header_len {
        return Err(format_error(at, "the file is cut short inside its header"));
    }
    // Versions 1 and 2 are Latin-1, version 3 UTF-8.
    let text: String = if major == 3 {
        String::from_utf8(text).map_err(|_| format_error(at, "the header is not valid UTF-8"))?
    } else {
        text.iter().map(|&b| char::from(b)).collect()
    };
    let h = header::parse_header(&text).map_err(|why| format_error(at, why))?;
    let itemsize = h.dtype.itemsize() as u64;
    let room = available - before_data;
    let bytes = elements(&h.shape).and_then(|n| (n as u64).checked_mul(itemsize));
    let Some(bytes) = bytes.filter(|&b| b <= room) else {
        let needs = match bytes {
            Some(b) => format!("{b} bytes of data"),
            None => "more bytes than can be counted".into(),
        };
        return Err(format_error(
            at,
            format!(
                "shape {:?} of dtype '{}' needs {needs}, the file holds only {room} after the header (truncated, \
                 or a corrupt header)",
                h.shape, h.descr
            ),
        ));
    };
    let mut data = Vec::new();
    data.try_reserve_exact(bytes as usize + 1).map_err(|_| {
        format_error(at, format!("shape {:?} needs {bytes} bytes, more than this machine can allocate", h.shape))
    })?;
    reader.take(bytes + 1).read_to_end(&mut data).map_err(io)?;
    if data.len() as u64 != bytes {
        let holds = if data.len() as u64 > bytes {
            "more: bytes follow the data (corrupt, or a header that does not match it)".to_string()
        } else {
            format!("{} (truncated)", data.len())
        };
        return Err(format_error(
            at,
            format!(
                "shape {:?} of dtype '{}' needs {bytes} bytes of data, the file holds {holds}; save it again with \
                 numpy.save",
                h.shape, h.descr
            ),
        ));
    }
    let values = decode::decode(&h.dtype, &h.shape, h.fortran, &data).map_err(|why| format_error(at, why))?;
    let values = if h.fortran { decode::values_to_c(values, &h.shape) } else { values };
    Ok(NpyArray { shape: h.shape, descr: h.descr, values })
}

/// Reads an `.npy` file (see the module doc for what it holds).
pub fn read_npy(path: &Path) -> Result<NpyArray, NpyError> {
    let at = path.display().to_string();
    let io = |source| NpyError::Io { path: at.clone(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut reader = std::io::BufReader::new(file);
    parse_npy(&mut reader, len, &at, &io)
}

/// Reads an `.npz` file: its arrays by name (the member's name without
/// `.npy`). A member that is not an `.npy` file, two members of one name,
/// or a compression other than stored or deflated is an error.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, NpyArray>, NpyError> {
    let at = path.display().to_string();
    let io = |source| NpyError::Io { path: at.clone(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut magic = Vec::with_capacity(6);
    (&mut file).take(6).read_to_end(&mut magic).map_err(io)?;
    if !(magic.starts_with(b"PK\x03\x04") || magic.starts_with(b"PK\x05\x06")) {
        let why = if magic.as_slice() == MAGIC {
            "a NumPy .npy file, not an .npz (a zip of arrays); name it .npy".to_string()
        } else {
            "not an .npz file (a zip archive of .npy arrays, as numpy.savez writes)".to_string()
        };
        return Err(format_error(&at, why));
    }
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| format_error(&at, format!("not a valid .npz (zip) file: {e}")))?;
    let mut arrays = BTreeMap::new();
    for i in 0..archive.len() {
        let mut member = archive.by_index(i).map_err(|e| {
            format_error(
                &at,
                format!(
                    "member {i} cannot be read: {e}; snnc reads members stored or deflated (numpy.savez, \
                     numpy.savez_compressed)"
                ),
            )
        })?;
        if member.is_dir() {
            continue;
        }
        let name = String::from_utf8_lossy(member.name_raw()).into_owned();
        let Some(key) = name.strip_suffix(".npy") else {
            return Err(format_error(
                &at,
                format!(
                    "member '{name}' is not an .npy array: this zip is not an .npz (which holds only NAME.npy \
                     members); write it with numpy.savez"
                ),
            ));
        };
        let member_at = format!("{at} (array '{key}')");
        let stored = member.compression() == zip::CompressionMethod::Stored;
        let justified =
            if stored { file_len } else { file_len.saturating_mul(MAX_DEFLATE_RATIO) }.min(MAX_NPZ_MEMBER_BYTES);
        if member.size() > justified {
            return Err(format_error(
                &member_at,
                format!(
                    "the member announces {} bytes, more than its file can hold or snnc reads ({} bytes)",
                    member.size(),
                    justified
                ),
            ));
        }
        let available = member.size();
        let bad_data = |e: std::io::Error| format_error(&member_at, format!("bad compressed data: {e}"));
        let array = parse_npy(&mut member, available, &member_at, &bad_data)?;
        if arrays.insert(key.to_string(), array).is_some() {
            return Err(format_error(
                &at,
                format!("two members hold the array '{key}'; an .npz names each array once"),
            ));
        }
    }
    Ok(arrays)
}

/// Takes the array `key` out of arrays read from the `.npz` at `path`;
/// its absence is [`NpyError::MissingKey`] with `hint` as the fix.
pub fn take_array(
    arrays: &mut BTreeMap<String, NpyArray>,
    path: &Path,
    key: &str,
    hint: &str,
) -> Result<NpyArray, NpyError> {
    arrays.remove(key).ok_or_else(|| NpyError::MissingKey {
        path: path.display().to_string(),
        key: key.to_string(),
        have: arrays.keys().cloned().collect(),
        hint: hint.to_string(),
    })
}

/// The bytes of an `.npy` file holding `descr`-typed `data` of `shape`
/// (C order; version 1.0, or 2.0 when the header needs it). The header is
/// padded with spaces so that the data starts at a multiple of 64 bytes,
/// as NumPy does.
fn npy_file(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let text = header::header_text(descr, shape);
    // magic (6) + version (2) + length (2 or 4) + text + '\n', padded to 64.
    let v1 = 10 + text.len() < 65536;
    let fixed = if v1 { 10 } else { 12 };
    let total = (fixed + text.len() + 1).div_ceil(64) * 64;
    let header_len = total - fixed;
    let mut out = Vec::with_capacity(total + data.len());
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(text.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out.extend_from_slice(data);
    out
}

/// The bytes of an `.npy` file holding `tensor`: `float32` as `<f4`,
/// `float64` as `<f8`, `int64` as `<i8`.
pub fn npy_bytes(tensor: &Tensor) -> Vec<u8> {
    let (descr, data): (&str, Vec<u8>) = match tensor.dtype {
        ElemType::F32 => ("<f4", tensor.data.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect()),
        ElemType::F64 => ("<f8", tensor.data.iter().flat_map(|&x| x.to_le_bytes()).collect()),
        ElemType::I64 => ("<i8", tensor.data.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect()),
    };
    npy_file(descr, &tensor.shape, &data)
}

/// Writes `tensor` as an `.npy` file at `path`.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), NpyError> {
    Ok(write_file(path, &npy_bytes(tensor))?)
}

/// The bytes of an `.npz` file (members stored, as `numpy.savez` writes
/// them) holding `arrays` in order; `at` names the file in messages.
pub fn npz_bytes(at: &str, arrays: &[(String, &Tensor)]) -> Result<Vec<u8>, NpyError> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let zip_error = |e: zip::result::ZipError| format_error(at, format!("cannot write the zip archive: {e}"));
    for (i, (name, tensor)) in arrays.iter().enumerate() {
        if name.is_empty() || arrays[..i].iter().any(|(n, _)| n == name) {
            return Err(format_error(
                at,
                format!("the array name '{name}' is empty or given twice; an .npz names each array once"),
            ));
        }
        let bytes = npy_bytes(tensor);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(bytes.len() as u64 >= u64::from(u32::MAX));
        zip.start_file(format!("{name}.npy"), options).map_err(zip_error)?;
        zip.write_all(&bytes).map_err(|e| format_error(at, format!("cannot write the zip archive: {e}")))?;
    }
    Ok(zip.finish().map_err(zip_error)?.into_inner())
}

/// Writes `arrays` as an `.npz` file at `path` (see [`npz_bytes`]), through
/// [`write_file`].
pub fn write_npz(path: &Path, arrays: &[(String, &Tensor)]) -> Result<(), NpyError> {
    let bytes = npz_bytes(&path.display().to_string(), arrays)?;
    Ok(write_file(path, &bytes)?)
}

/// 2^24: integers up to it are exact in float32.
const F32_EXACT: i64 = 1 << 24;

impl NpyArray {
    /// The array as a tensor: float32 → `F32`, float64 → `F64`, float16 →
    /// `F32` (exactly), integers, bool and uint8 → `F32` when every value
    /// is exact in float32 (|v| ≤ 2^24), else an error; a record array is
    /// an error naming its fields. `what` names the array in messages.
    pub fn to_tensor(&self, what: &str) -> Result<Tensor, NpyError> {
        let fail = |why: String| NpyError::Convert { what: what.to_string(), why };
        let (dtype, data) = match &self.values {
            NpyValues::Float { bits: 64, data } => (ElemType::F64, data.clone()),
            NpyValues::Float { data, .. } => (ElemType::F32, data.clone()),
            NpyValues::U8(v) => (ElemType::F32, v.iter().map(|&b| f64::from(b)).collect()),
            NpyValues::Int(v) => {
                if let Some(i) = v.iter().position(|x| x.unsigned_abs() > F32_EXACT as u64) {
                    return Err(fail(format!(
                        "element {:?} = {} of the '{}' array is not exact in float32 (integers up to 2^24 are); \
                         scale it or convert it with arr.astype(numpy.float32) if rounding is fine",
                        index_of(&self.shape, i),
                        show_value(v[i] as f64),
                        self.descr
                    )));
                }
                (ElemType::F32, v.iter().map(|&x| x as f64).collect())
            }
            NpyValues::Record(columns) => {
                let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
                return Err(fail(format!(
                    "a record array with the fields {} is not a tensor; save a numeric array, for example \
                     numpy.stack([a['{}'], ...], -1).astype(numpy.float32)",
                    names.join(", "),
                    names.first().copied().unwrap_or("x")
                )));
            }
        };
        Tensor::new(self.shape.clone(), dtype, data).map_err(|e| fail(e.to_string()))
    }
}
