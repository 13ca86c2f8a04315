//! Host tensors and their JSON form.
//!
//! The JSON form is the oracle's: `{"shape": [...], "dtype": "float32",
//! "data": [flat, row-major]}` with dtype `float32`, `float64` or `int64`,
//! and no other key. Reading it refuses a value its dtype cannot hold: a
//! `float32` beyond ±3.4028235e38 (it would round to infinity), an `int64`
//! that is not an integer of magnitude at most 2^53.

use serde::{Deserialize, Serialize};

/// The element type of a host tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ElemType {
    #[serde(rename = "float32")]
    F32,
    #[serde(rename = "float64")]
    F64,
    #[serde(rename = "int64")]
    I64,
}

impl ElemType {
    pub fn name(self) -> &'static str {
        match self {
            ElemType::F32 => "float32",
            ElemType::F64 => "float64",
            ElemType::I64 => "int64",
        }
    }
}

/// A dense row-major tensor on the host.
///
/// Values are stored as f64 whatever the element type: every f32 and every
/// int64 used here (|x| < 2^53) is exactly representable, so converting is
/// lossless. `dtype` says what the values are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub dtype: ElemType,
    pub data: Vec<f64>,
}

/// A value for messages: `1e300` rather than its 301 digits.
pub fn show_value(x: f64) -> String {
    if x.is_finite() && x != 0.0 && !(1e-5..1e16).contains(&x.abs()) { format!("{x:e}") } else { format!("{x}") }
}

/// The row-major multi-index of flat index `flat` in `shape` (for messages).
pub fn index_of(shape: &[usize], flat: usize) -> Vec<usize> {
    let mut rest = flat;
    let mut index = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            index[i] = rest % d;
            rest /= d;
        }
    }
    index
}

/// A tensor's data does not fit its shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tensor data has {len} elements but shape {shape:?} needs {}", match expected {
    Some(n) => n.to_string(),
    None => "more than this machine can address".to_string(),
})]
pub struct ShapeError {
    pub shape: Vec<usize>,
    pub len: usize,
    /// The elements the shape holds; `None` when their count overflows `usize`.
    pub expected: Option<usize>,
}

/// The number of elements of `shape`, or `None` when it overflows `usize`
/// (a shape read from a file can be anything).
pub fn elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

impl Tensor {
    /// Makes a tensor, checking that the data fits the shape. Values of an
    /// f32 tensor are rounded to f32.
    pub fn new(shape: Vec<usize>, dtype: ElemType, mut data: Vec<f64>) -> Result<Tensor, ShapeError> {
        let expected = elements(&shape);
        if expected != Some(data.len()) {
            return Err(ShapeError { shape, len: data.len(), expected });
        }
        if dtype == ElemType::F32 {
            for x in &mut data {
                *x = f64::from(*x as f32);
            }
        }
        Ok(Tensor { shape, dtype, data })
    }

    pub fn zeros(shape: Vec<usize>, dtype: ElemType) -> Tensor {
        let n = shape.iter().product();
        Tensor { shape, dtype, data: vec![0.0; n] }
    }

    pub fn from_f32(shape: Vec<usize>, data: &[f32]) -> Result<Tensor, ShapeError> {
        Tensor::new(shape, ElemType::F32, data.iter().map(|&x| f64::from(x)).collect())
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Checks that `data.len()` matches `shape` (for tensors read from files).
    pub fn check(&self) -> Result<(), ShapeError> {
        let expected = elements(&self.shape);
        if expected != Some(self.data.len()) {
            return Err(ShapeError { shape: self.shape.clone(), len: self.data.len(), expected });
        }
        Ok(())
    }

    /// The values as f32 (rounding f64 values).
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&x| x as f32).collect()
    }

    /// The same values with another element type (rounded to f32 for F32).
    pub fn cast(&self, dtype: ElemType) -> Tensor {
        let mut t = self.clone();
        t.dtype = dtype;
        if dtype == ElemType::F32 {
            for x in &mut t.data {
                *x = f64::from(*x as f32);
            }
        }
        t
    }

    /// Parses the JSON form, refusing unknown keys, data that does not fit
    /// the shape and values the dtype cannot hold (see the module doc).
    pub fn from_json(value: &serde_json::Value) -> Result<Tensor, String> {
        let t: Tensor = serde_json::from_value(value.clone()).map_err(|e| format!("not a tensor: {e}"))?;
        t.check().map_err(|e| e.to_string())?;
        t.check_range()?;
        Ok(t)
    }

    /// Checks that every value is one the dtype holds: a `float32` within
    /// ±f32::MAX after rounding, an `int64` an integer of magnitude at most
    /// 2^53. Names the first value that is not.
    fn check_range(&self) -> Result<(), String> {
        let bad = |i: usize, why: &str| {
            format!("data[{i}] (element {:?}) = {} {why}", index_of(&self.shape, i), show_value(self.data[i]))
        };
        match self.dtype {
            ElemType::F32 => match self.data.iter().position(|&x| x.is_finite() && (x as f32).is_infinite()) {
                Some(i) => Err(bad(
                    i,
                    "does not fit float32 (the largest float32 is 3.4028235e38, beyond it values round to \
                     infinity); use a smaller value, or \"dtype\": \"float64\" for an f64 run",
                )),
                None => Ok(()),
            },
            ElemType::I64 => {
                match self.data.iter().position(|&x| x.fract() != 0.0 || x.abs() > 9_007_199_254_740_992.0) {
                    Some(i) => Err(bad(i, "is not an int64 of magnitude at most 2^53; give whole numbers")),
                    None => Ok(()),
                }
            }
            ElemType::F64 => Ok(()),
        }
    }

    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a tensor always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Tensor, String> {
        Tensor::from_json(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn values_the_dtype_cannot_hold_are_refused() {
        let e = parse(r#"{"shape": [2, 2], "dtype": "float32", "data": [0, 1, 1e300, 2]}"#).unwrap_err();
        assert!(e.starts_with("data[2] (element [1, 0]) = 1e300 does not fit float32"), "{e}");
        // The largest float32 and values that round to it are fine; f64 holds 1e300.
        parse(r#"{"shape": [2], "dtype": "float32", "data": [3.4028235e38, -3.40282356e38]}"#).unwrap();
        parse(r#"{"shape": [1], "dtype": "float64", "data": [1e300]}"#).unwrap();
        let e = parse(r#"{"shape": [2], "dtype": "int64", "data": [3, 1.5]}"#).unwrap_err();
        assert_eq!(e, "data[1] (element [1]) = 1.5 is not an int64 of magnitude at most 2^53; give whole numbers");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse(r#"{"shape": [1], "dtype": "float32", "data": [1], "requires_grad": true}"#).unwrap_err();
        assert!(e.starts_with("not a tensor: unknown field `requires_grad`, expected one of"), "{e}");
    }

    #[test]
    fn index_of_is_row_major() {
        assert_eq!(index_of(&[2, 3, 4], 23), vec![1, 2, 3]);
        assert_eq!(index_of(&[], 0), Vec::<usize>::new());
    }
}
