//! Weights files in the `safetensors` format (Hugging Face's; what
//! `safetensors.torch.save_file(model.state_dict(), ...)` writes).
//!
//! - [`read_weights_safetensors`] reads one: `F32` and `F64` tensors as they
//!   are, `F16` and `BF16` converted exactly to f32, `I64` (a BatchNorm's
//!   `num_batches_tracked`) to f32 when exact; any other dtype (`BOOL`,
//!   `F8_*`, ...) is refused, naming the tensor and its dtype. The
//!   result is checked as a JSON weights file is ([`crate::check_weights`],
//!   [`crate::check_finite`]) by the caller.
//! - [`write_weights_safetensors`] writes weights as `F32` (`F64` for an f64
//!   tensor), little-endian, in PyTorch's layouts (a Linear weight is
//!   `[out, in]`, as snnc's own parameters are).
//! - [`rename_weights`] applies `OLD=NEW` renames to a file's names before
//!   they are checked, so a `state_dict()` whose names differ from the
//!   network's layer names loads.
//!
//! A malformed file is an error, never a panic: the `safetensors` crate
//! checks the header and the offsets, and element counts are computed with
//! checked arithmetic.

use safetensors::{Dtype as StDtype, SafeTensors, tensor::TensorView};

use crate::tensor::{ElemType, Tensor};
use crate::weights::Weights;

/// Reads a safetensors file's bytes into weights: `F32`, `F16` and `BF16`
/// tensors become `float32` tensors, `F64` ones `float64`. Errors name the
/// tensor and say what is wrong.
pub fn read_weights_safetensors(bytes: &[u8]) -> Result<Weights, String> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| format!("not a valid safetensors file: {e}"))?;
    let mut weights = Weights::new();
    for (name, view) in file.iter() {
        let shape = view.shape().to_vec();
        let n = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor `{name}`: shape {shape:?} has too many elements"))?;
        let data = view.data();
        let (elem, values): (ElemType, Vec<f64>) = match view.dtype() {
            StDtype::F32 => {
                (ElemType::F32, data.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes(le(b)))).collect())
            }
            StDtype::F64 => (ElemType::F64, data.chunks_exact(8).map(|b| f64::from_le_bytes(le(b))).collect()),
            StDtype::F16 => (
                ElemType::F32,
                data.chunks_exact(2).map(|b| f64::from(half::f16::from_le_bytes(le(b)).to_f32())).collect(),
            ),
            StDtype::BF16 => (
                ElemType::F32,
                data.chunks_exact(2).map(|b| f64::from(half::bf16::from_le_bytes(le(b)).to_f32())).collect(),
            ),
            // A BatchNorm's `num_batches_tracked` (int64 in a torch
            // state_dict): a count, exact in f32 up to 2^24.
            StDtype::I64 => {
                let counts: Vec<i64> = data.chunks_exact(8).map(|b| i64::from_le_bytes(le(b))).collect();
                if let Some(&c) = counts.iter().find(|&&c| c.unsigned_abs() > 1 << 24) {
                    return Err(format!(
                        "tensor `{name}` holds the integer {c}, which a float32 weight cannot hold exactly"
                    ));
                }
                (ElemType::F32, counts.into_iter().map(|c| c as f64).collect())
            }
            other => {
                return Err(format!(
                    "tensor `{name}` has dtype {other}, and weights are floats: save it as F32 (or F16, BF16, F64), \
                     e.g. `tensor.float()` in PyTorch"
                ));
            }
        };
        if values.len() != n {
            return Err(format!("tensor `{name}`: {} values for shape {shape:?}, which needs {n}", values.len()));
        }
        let t = Tensor::new(shape, elem, values).map_err(|e| format!("tensor `{name}`: {e}"))?;
        weights.insert(name.to_string(), t);
    }
    Ok(weights)
}

/// An array of a chunk's bytes (the chunks come from `chunks_exact(N)`).
fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(b);
    a
}

/// Writes weights as a safetensors file: each tensor as `F64` if it is a
/// `float64` tensor, else `F32` (values rounded to f32), little-endian and
/// row-major. Reading it back with [`read_weights_safetensors`] gives the
/// same bits.
pub fn write_weights_safetensors(weights: &Weights) -> Result<Vec<u8>, String> {
    let bytes: Vec<(&String, StDtype, &Tensor, Vec<u8>)> = weights
        .iter()
        .map(|(name, t)| match t.dtype {
            ElemType::F64 => (name, StDtype::F64, t, t.data.iter().flat_map(|x| x.to_le_bytes()).collect()),
            ElemType::F32 | ElemType::I64 => {
                (name, StDtype::F32, t, t.data.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect())
            }
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (name, dtype, t, data) in &bytes {
        let view = TensorView::new(*dtype, t.shape.clone(), data).map_err(|e| format!("tensor `{name}`: {e}"))?;
        views.push((name.as_str(), view));
    }
    safetensors::serialize(views, None).map_err(|e| format!("cannot write a safetensors file: {e}"))
}

/// Applies renames `(OLD, NEW)` to the names of `weights`, in order. An
/// `OLD` ending in `.` renames a prefix: `fc.=fc1.` makes `fc.weight`
/// `fc1.weight` and `fc.bias` `fc1.bias`. An `OLD` that names nothing in
/// the file, or a rename onto a name the file already holds, is an error.
pub fn rename_weights(weights: &mut Weights, renames: &[(String, String)]) -> Result<(), String> {
    for (old, new) in renames {
        let names: Vec<String> = if old.ends_with('.') {
            weights.keys().filter(|k| k.starts_with(old.as_str())).cloned().collect()
        } else {
            weights.keys().filter(|k| *k == old).cloned().collect()
        };
        if names.is_empty() {
            let what = if old.ends_with('.') { "no tensor name starts with" } else { "no tensor is named" };
            let have = weights.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
            return Err(format!("--rename {old}={new}: {what} `{old}`; the file holds {have}"));
        }
        let mut moved = Vec::with_capacity(names.len());
        for name in names {
            let t = weights.remove(&name).expect("the name was listed from the map");
            let to = if old.ends_with('.') { format!("{new}{}", &name[old.len()..]) } else { new.clone() };
            moved.push((to, t));
        }
        for (to, t) in moved {
            if weights.contains_key(&to) {
                return Err(format!("--rename {old}={new}: the file already holds a tensor `{to}`"));
            }
            weights.insert(to, t);
        }
    }
    Ok(())
}

/// Parses a `--rename` argument `OLD=NEW`.
pub fn parse_rename(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=').map(|(old, new)| (old.trim(), new.trim())) {
        Some((old, new)) if !old.is_empty() && !new.is_empty() && old.ends_with('.') == new.ends_with('.') => {
            Ok((old.to_string(), new.to_string()))
        }
        _ => Err(format!(
            "`{arg}` is not OLD=NEW (a tensor name in the file, then the network's name for it; \
             a prefix form ends both in `.`: fc.=fc1.)"
        )),
    }
}

/// Parses a rename map file: one `OLD=NEW` per line (as `--rename` takes
/// it); blank lines and lines starting with `#` are skipped. Errors name
/// the line.
pub fn parse_rename_map(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut renames = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        renames.push(parse_rename(line).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(renames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights() -> Weights {
        let mut w = Weights::new();
        let a =
            Tensor::new(vec![2, 3], ElemType::F32, [0.1f32, -2.5, 1e-30, 3.4e38, -0.0, 7.0].map(f64::from).to_vec());
        w.insert("fc1.weight".into(), a.unwrap());
        w.insert("fc1.bias".into(), Tensor::new(vec![2], ElemType::F32, vec![0.5, -0.25]).unwrap());
        w.insert("s".into(), Tensor::new(vec![], ElemType::F64, vec![0.1]).unwrap());
        w
    }

    /// A safetensors file of one tensor `t` with this dtype and raw data.
    fn one(dtype: StDtype, shape: Vec<usize>, data: &[u8]) -> Vec<u8> {
        safetensors::serialize([("t", TensorView::new(dtype, shape, data).unwrap())], None).unwrap()
    }

    #[test]
    fn round_trip_is_bit_identical() {
        let w = weights();
        let bytes = write_weights_safetensors(&w).unwrap();
        let back = read_weights_safetensors(&bytes).unwrap();
        assert_eq!(back.keys().collect::<Vec<_>>(), w.keys().collect::<Vec<_>>());
        for (k, t) in &w {
            assert_eq!((&back[k].shape, back[k].dtype), (&t.shape, t.dtype), "{k}");
            let bits = |t: &Tensor| t.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&back[k]), bits(t), "{k}");
        }
        // The header says F32 and F64, with PyTorch's shapes.
        let file = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(file.tensor("fc1.weight").unwrap().dtype(), StDtype::F32);
        assert_eq!(file.tensor("fc1.weight").unwrap().shape(), [2, 3]);
        assert_eq!(file.tensor("s").unwrap().dtype(), StDtype::F64);
    }

    #[test]
    fn f16_and_bf16_are_converted_exactly() {
        // f16: 1.0, -2.0, 0.5, 65504 (max), 2^-24 (smallest subnormal), -0.
        let f16: Vec<u8> =
            [0x3c00u16, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000].iter().flat_map(|b| b.to_le_bytes()).collect();
        let w = read_weights_safetensors(&one(StDtype::F16, vec![2, 3], &f16)).unwrap();
        assert_eq!(w["t"].dtype, ElemType::F32);
        assert_eq!(w["t"].shape, [2, 3]);
        assert_eq!(w["t"].data, [1.0, -2.0, 0.5, 65504.0, 2f64.powi(-24), -0.0]);
        assert!(w["t"].data[5].is_sign_negative());
        // bf16 is the top half of an f32: 1.0, -3.0, 0.1 rounded (0x3dcd), 3.3895314e38.
        let bf16: Vec<u8> = [0x3f80u16, 0xc040, 0x3dcd, 0x7f7f].iter().flat_map(|b| b.to_le_bytes()).collect();
        let w = read_weights_safetensors(&one(StDtype::BF16, vec![4], &bf16)).unwrap();
        let want = [0x3f80_0000u32, 0xc040_0000, 0x3dcd_0000, 0x7f7f_0000].map(|b| f64::from(f32::from_bits(b)));
        assert_eq!(w["t"].data, want);
        // F64 stays f64.
        let w = read_weights_safetensors(&one(StDtype::F64, vec![1], &0.1f64.to_le_bytes())).unwrap();
        assert_eq!((w["t"].dtype, w["t"].data[0]), (ElemType::F64, 0.1));
    }

    #[test]
    fn other_dtypes_are_refused_by_name() {
        // An int64 count (BatchNorm's num_batches_tracked) reads as f32 when exact.
        let w = read_weights_safetensors(&one(StDtype::I64, vec![], &7i64.to_le_bytes())).unwrap();
        assert_eq!((w["t"].dtype, w["t"].data.clone()), (ElemType::F32, vec![7.0]));
        let e = read_weights_safetensors(&one(StDtype::I64, vec![1], &(1i64 << 40).to_le_bytes())).unwrap_err();
        assert!(e.starts_with("tensor `t` holds the integer 1099511627776"), "{e}");
        let e = read_weights_safetensors(&one(StDtype::I32, vec![1], &7i32.to_le_bytes())).unwrap_err();
        assert!(e.starts_with("tensor `t` has dtype I32, and weights are floats"), "{e}");
        let e = read_weights_safetensors(&one(StDtype::BOOL, vec![2], &[0, 1])).unwrap_err();
        assert!(e.starts_with("tensor `t` has dtype BOOL"), "{e}");
    }

    #[test]
    fn malformed_files_are_errors() {
        let good = write_weights_safetensors(&weights()).unwrap();
        for end in [0, 3, 8, 20, good.len() - 1] {
            let e = read_weights_safetensors(&good[..end]).unwrap_err();
            assert!(e.starts_with("not a valid safetensors file: "), "{end}: {e}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(read_weights_safetensors(&long).is_err());
        // A header length beyond the file, and garbage.
        assert!(read_weights_safetensors(&u64::MAX.to_le_bytes()).is_err());
        assert!(read_weights_safetensors(b"{\"a\": 1}").is_err());
        // A header whose offsets do not fit the shape.
        let header = br#"{"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}"#;
        let mut bad = (header.len() as u64).to_le_bytes().to_vec();
        bad.extend_from_slice(header);
        bad.extend_from_slice(&[0; 4]);
        assert!(read_weights_safetensors(&bad).is_err());
    }

    #[test]
    fn renames() {
        let mut w = weights();
        rename_weights(&mut w, &[("fc1.".into(), "layer.".into()), ("s".into(), "scale".into())]).unwrap();
        assert_eq!(w.keys().collect::<Vec<_>>(), ["layer.bias", "layer.weight", "scale"]);
        let e = rename_weights(&mut w, &[("nope".into(), "x".into())]).unwrap_err();
        assert_eq!(
            e,
            "--rename nope=x: no tensor is named `nope`; the file holds `layer.bias`, `layer.weight`, `scale`"
        );
        let e = rename_weights(&mut w, &[("fc.".into(), "x.".into())]).unwrap_err();
        assert!(e.starts_with("--rename fc.=x.: no tensor name starts with `fc.`"), "{e}");
        let e = rename_weights(&mut w, &[("scale".into(), "layer.bias".into())]).unwrap_err();
        assert_eq!(e, "--rename scale=layer.bias: the file already holds a tensor `layer.bias`");
        assert_eq!(parse_rename("a.b=c.d").unwrap(), ("a.b".into(), "c.d".into()));
        assert!(parse_rename("ab").is_err());
        assert!(parse_rename("=b").is_err());
        assert!(parse_rename("fc.=fc1").is_err());
        let map = parse_rename_map("# torch names\n\n0.=fc1.\n  2.weight  \n").unwrap_err();
        assert!(map.starts_with("line 4: `2.weight` is not OLD=NEW"), "{map}");
        let map = parse_rename_map("# torch names\n\n0.=fc1.\n 2.weight = fc2.weight \n").unwrap();
        assert_eq!(map, [("0.".into(), "fc1.".into()), ("2.weight".into(), "fc2.weight".into())]);
    }
}
