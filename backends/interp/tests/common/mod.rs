//! Helpers shared by the interpreter tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use snnc_interp::{InterpError, RunOptions, RunResult};
use snnc_ir::{Module, Param, ParamInit, Shape, validate};
use snnc_runtime::{ElemType, Tensor, Weights};

/// Validates `module` (panicking with the errors if it is invalid) and runs it.
pub fn run_with(
    module: &Module,
    weights: &Weights,
    inputs: &[(&str, Tensor)],
    opts: &RunOptions,
) -> Result<RunResult, InterpError> {
    let info = validate(module).unwrap_or_else(|e| panic!("{e}"));
    let inputs: BTreeMap<String, Tensor> = inputs.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
    snnc_interp::run(module, &info, weights, &inputs, opts)
}

/// Runs without options and panics on an error.
pub fn run(module: &Module, weights: &Weights, inputs: &[(&str, Tensor)]) -> RunResult {
    run_with(module, weights, inputs, &RunOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

pub fn t64(shape: &[usize], data: Vec<f64>) -> Tensor {
    Tensor::new(shape.to_vec(), ElemType::F64, data).unwrap()
}

pub fn t32(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_f32(shape.to_vec(), data).unwrap()
}

/// `n` distinct, irregular values.
pub fn ramp(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * 37 % 101) as f64 - 50.0) / 17.0).collect()
}

pub fn weights(list: &[(&str, Tensor)]) -> Weights {
    list.iter().map(|(n, t)| (n.to_string(), t.clone())).collect()
}

pub fn param(name: &str, dtype: snnc_ir::Dtype, dims: &[u32]) -> Param {
    Param { name: name.into(), dtype, shape: Shape::fixed(dims), trainable: true, init: ParamInit::Zeros }
}

/// Asserts bitwise equality of f64 slices (NaN equal to NaN).
pub fn assert_bits(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "element {i}: got {g}, want {w}");
    }
}
