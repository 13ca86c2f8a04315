//! Host tensors and their JSON form.
//!
//! The JSON form is the oracle's: `{"shape": [...], "dtype": "float32",
//! "data": [flat, row-major]}` with dtype `float32`, `float64` or `int64`.

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
pub struct Tensor {
    pub shape: Vec<usize>,
    pub dtype: ElemType,
    pub data: Vec<f64>,
}

/// A tensor's data does not fit its shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tensor data has {len} elements but shape {shape:?} needs {expected}")]
pub struct ShapeError {
    pub shape: Vec<usize>,
    pub len: usize,
    pub expected: usize,
}

impl Tensor {
    /// Makes a tensor, checking that the data fits the shape. Values of an
    /// f32 tensor are rounded to f32.
    pub fn new(shape: Vec<usize>, dtype: ElemType, mut data: Vec<f64>) -> Result<Tensor, ShapeError> {
        let expected = shape.iter().product::<usize>();
        if expected != data.len() {
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
        let expected = self.shape.iter().product::<usize>();
        if expected != self.data.len() {
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

    /// Parses the JSON form.
    pub fn from_json(value: &serde_json::Value) -> Result<Tensor, String> {
        let t: Tensor = serde_json::from_value(value.clone()).map_err(|e| format!("not a tensor: {e}"))?;
        t.check().map_err(|e| e.to_string())?;
        Ok(t)
    }

    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a tensor always serialises")
    }
}
