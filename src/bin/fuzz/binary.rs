//! Binary tensor files: NumPy inputs (`.npy`, `.npz`), safetensors weights
//! and `.npz` training sets, made valid (from the same seeds as the JSON
//! files, and from the repository's data-set fixtures) and then mutated:
//! bytes changed anywhere, or the `.npy` header's shape or dtype replaced.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use snnc_runtime::Tensor;

use crate::mutate::{mutate_bytes, replace_number};
use crate::rng::Rng;

/// The tensors of a seed JSON object (`{name: tensor}`); `None` when one
/// does not parse.
pub fn tensors(v: &Value) -> Option<BTreeMap<String, Tensor>> {
    let Value::Object(m) = v else { return None };
    m.iter().map(|(k, t)| Some((k.clone(), serde_json::from_value::<Tensor>(t.clone()).ok()?))).collect()
}

/// Numbers that make a shape absurd.
const DIMS: &[&str] = &["0", "-1", "4294967296", "18446744073709551615", "99999999999", "1.5", "True", "None"];

/// Dtype descriptions the reader must refuse or convert.
const DESCRS: &[&str] = &["|O", "<c8", ">f4", "<f2", "|b1", "<u8", "|V8", "<i8", "|S3", "<M8[s]", "f4", "<f16", ""];

/// Mutates an `.npy` file: its header (a shape number, the dtype, the
/// order, the header length) or its bytes. Returns the operators applied.
pub fn mutate_npy(rng: &mut Rng, bytes: &mut Vec<u8>) -> Vec<&'static str> {
    let mut ops = Vec::new();
    for _ in 0..rng.range(1, 3) {
        let header_end = bytes.iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| i + 1);
        match rng.below(5) {
            0 => {
                let mut header = bytes[..header_end].to_vec();
                let shape_at = find(&header, b"'shape'").unwrap_or(0);
                let mut tail = header.split_off(shape_at);
                replace_number(rng, &mut tail, DIMS);
                header.extend(tail);
                bytes.splice(..header_end, header);
                ops.push("npy-shape");
            }
            1 => {
                if let Some(at) = find(&bytes[..header_end], b"'descr': '") {
                    let start = at + 10;
                    let end = bytes[start..header_end].iter().position(|&b| b == b'\'').map_or(start, |i| start + i);
                    bytes.splice(start..end, rng.pick(DESCRS).bytes());
                }
                ops.push("npy-descr");
            }
            2 => {
                if let Some(at) = find(&bytes[..header_end], b"False") {
                    bytes.splice(at..at + 5, b"True".iter().copied());
                }
                ops.push("npy-fortran");
            }
            3 if bytes.len() > 9 => {
                // The header length (bytes 8..10, little endian).
                let v = [0u16, 1, 9, 0x7fff, 0xffff][rng.below(5)];
                bytes[8..10].copy_from_slice(&v.to_le_bytes());
                ops.push("npy-header-length");
            }
            _ => ops.push(mutate_bytes(rng, bytes)),
        }
    }
    ops
}

/// Mutates any binary file (a zip, a safetensors file) byte by byte.
pub fn mutate_any(rng: &mut Rng, bytes: &mut Vec<u8>) -> Vec<&'static str> {
    (0..rng.range(1, 4)).map(|_| mutate_bytes(rng, bytes)).collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The data-set fixtures `snnc train --data` reads, with the network and
/// flags each needs: `(network, data file, extra flags)`.
pub const DATA_SETS: &[(&str, &str, &[&str])] = &[
    ("static.ron", "static_u8.npz", &["--test-split", "0.25"]),
    ("sequence.ron", "sequences.npz", &[]),
    ("events.ron", "events.npz", &[]),
    ("regression.ron", "regression.npz", &["--loss", "mse"]),
];

/// The folder of the data-set fixtures.
pub fn data_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data"))
}

/// The real NIR files of the repository (`tests/nir/*.nir`), sorted; the
/// folder is read once.
pub fn nir_files() -> &'static [std::path::PathBuf] {
    static FILES: std::sync::OnceLock<Vec<std::path::PathBuf>> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nir"));
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "nir"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    })
}
