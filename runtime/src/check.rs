//! The one check of a run's weights, inputs and initial states against a
//! module, before anything runs. Every backend calls it, so a rule fixed
//! here is fixed everywhere.
//!
//! [`check_run`] checks what every run needs:
//!
//! - the weights ([`check_weights`]): every parameter present with its
//!   shape, no other name;
//! - the inputs: every module input, no other name, data that fits its
//!   shape, each with its full shape (`[T, ...]` for a `seq` input, `T =
//!   Module::steps`) and one batch size `B >= 1` over all of them;
//! - the initial states: known names, data that fits, the state's shape
//!   with the batch size of the inputs (or of the states when no input has
//!   a batch dim; else `B = 1`).
//!
//! Values are not checked there: backends compute with NaN and infinities
//! as IEEE arithmetic does. [`check_finite`] is the rule for runs a user
//! asked for (`snnc run`): every value finite in the module's float type,
//! so NaN, infinities and f64 values beyond the f32 range in an f32 run
//! are refused, naming the tensor and the element.

use std::collections::BTreeMap;

use snnc_ir::{Dim, Dtype, Module, Type};

use crate::tensor::{ShapeError, Tensor, index_of, show_value};
use crate::weights::{Weights, WeightsError, check_weights};

/// Why a run's weights, inputs or initial states do not fit its module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("missing input `{name}`; the module's inputs are {}", list(expected))]
    MissingInput { name: String, expected: Vec<String> },
    #[error("unknown input(s) {}; the module's inputs are {}", list(names), list(valid))]
    UnknownInput { names: Vec<String>, valid: Vec<String> },
    /// `expected` names the time dim `T=..` and the batch dim `B`.
    #[error("input `{name}` has shape {given:?} but the module expects {expected}")]
    InputShape { name: String, expected: String, given: Vec<usize> },
    #[error(
        "input `{name}` has batch size {batch} but input `{first}` has batch size {first_batch}; \
         all inputs must have the same batch size"
    )]
    BatchMismatch { name: String, batch: usize, first: String, first_batch: usize },
    #[error("{what} has batch size 0; the batch size must be at least 1")]
    BatchZero { what: String },
    #[error("unknown initial state `{name}`; the module's states are {}", list(valid))]
    UnknownState { name: String, valid: Vec<String> },
    #[error("initial state `{name}` has shape {given:?} but the state has shape {expected}")]
    StateShape { name: String, expected: String, given: Vec<usize> },
    /// A tensor whose data does not fit its own shape.
    #[error("{what}: {source}")]
    BadTensor { what: String, source: ShapeError },
    /// A value that is not finite in the module's float type. `what` is
    /// `weight `fc1.weight``, `input `x``, `initial state `lif1.v`` or
    /// `output `readout``;
    /// `index` the element, `flat` its row-major position, `count` how many
    /// of the tensor's values are not finite.
    #[error(
        "{what} holds {} at element {index:?} (data[{flat}]){}{}; {}",
        show_value(*value),
        overflow_note(*value, *float),
        more(*count),
        fix(what)
    )]
    NonFinite { what: String, value: f64, index: Vec<usize>, flat: usize, count: usize, float: Dtype },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn more(count: usize) -> String {
    if count > 1 { format!(" (and {} more non-finite values)", count - 1) } else { String::new() }
}

/// For a finite f64 value that an f32 run turns into infinity.
fn overflow_note(value: f64, float: Dtype) -> String {
    if value.is_finite() && float != Dtype::F64 {
        ", which overflows float32 (largest 3.4028235e38) in this f32 run".into()
    } else {
        String::new()
    }
}

fn fix(what: &str) -> &'static str {
    if what.starts_with("output") {
        "the run overflowed"
    } else if what.starts_with("weight") {
        "weights must be finite (weights that became NaN or infinite in training come from too high a learning rate)"
    } else {
        "values must be finite"
    }
}

/// Renders a type's full dims for messages: `[T=32, B, 784]`, or with the
/// batch size known, `[B=4, 100]`.
pub fn render_dims(ty: &Type, steps: u32, batch: Option<usize>) -> String {
    let mut parts = Vec::new();
    if ty.seq {
        parts.push(format!("T={steps}"));
    }
    for d in &ty.shape.0 {
        parts.push(match (d, batch) {
            (Dim::Batch, Some(b)) => format!("B={b}"),
            (Dim::Batch, None) => "B".into(),
            (Dim::Fixed(n), _) => n.to_string(),
        });
    }
    format!("[{}]", parts.join(", "))
}

/// Matches a given shape against a type's full dims; returns the sizes the
/// batch dims take, or `None` if the rank or a fixed dim differs.
fn match_dims(full: &[Dim], given: &[usize]) -> Option<Vec<usize>> {
    if full.len() != given.len() {
        return None;
    }
    let mut batches = Vec::new();
    for (d, &g) in full.iter().zip(given) {
        match d {
            Dim::Batch => batches.push(g),
            Dim::Fixed(n) if *n as usize == g => {}
            Dim::Fixed(_) => return None,
        }
    }
    Some(batches)
}

/// Checks the weights, the inputs and the initial states (see the module
/// doc) and returns the run's batch size.
pub fn check_run(
    module: &Module,
    weights: &Weights,
    inputs: &BTreeMap<String, Tensor>,
    initial_state: &BTreeMap<String, Tensor>,
) -> Result<usize, CheckError> {
    check_weights(module, weights)?;
    let batch = check_inputs(module, inputs)?;
    check_states(module, initial_state, batch)
}

/// Checks the inputs and returns the batch size they agree on, if any input
/// has a batch dim.
pub fn check_inputs(module: &Module, inputs: &BTreeMap<String, Tensor>) -> Result<Option<usize>, CheckError> {
    for (name, t) in inputs {
        if module.input_by_name(name).is_some() {
            t.check().map_err(|source| CheckError::BadTensor { what: format!("input `{name}`"), source })?;
        }
    }
    check_input_shapes(module, &inputs.iter().map(|(k, t)| (k.clone(), t.shape.as_slice())).collect())
}

/// [`check_inputs`] for values whose data is known to fit their shapes:
/// checks the names and shapes and returns the batch size.
pub fn check_input_shapes(module: &Module, inputs: &BTreeMap<String, &[usize]>) -> Result<Option<usize>, CheckError> {
    let names: Vec<String> = module.inputs.iter().map(|(_, i)| i.name.clone()).collect();
    for name in &names {
        if !inputs.contains_key(name) {
            return Err(CheckError::MissingInput { name: name.clone(), expected: names });
        }
    }
    let unknown: Vec<String> = inputs.keys().filter(|k| module.input_by_name(k).is_none()).cloned().collect();
    if !unknown.is_empty() {
        return Err(CheckError::UnknownInput { names: unknown, valid: names });
    }
    let mut batch: Option<(usize, &str)> = None;
    for (_, input) in module.inputs.iter() {
        let shape = inputs[&input.name];
        let Some(batches) = match_dims(&input.ty.full_dims(module.steps), shape) else {
            return Err(CheckError::InputShape {
                name: input.name.clone(),
                expected: render_dims(&input.ty, module.steps, None),
                given: shape.to_vec(),
            });
        };
        for b in batches {
            if b == 0 {
                return Err(CheckError::BatchZero { what: format!("input `{}` (shape {shape:?})", input.name) });
            }
            match batch {
                None => batch = Some((b, &input.name)),
                Some((first_batch, first)) if first_batch != b => {
                    return Err(CheckError::BatchMismatch {
                        name: input.name.clone(),
                        batch: b,
                        first: first.to_string(),
                        first_batch,
                    });
                }
                Some(_) => {}
            }
        }
    }
    Ok(batch.map(|(b, _)| b))
}

/// Checks initial states against the module, with the batch size from the
/// inputs if known (else from these states, else 1); returns the batch size.
pub fn check_states(
    module: &Module,
    initial: &BTreeMap<String, Tensor>,
    batch: Option<usize>,
) -> Result<usize, CheckError> {
    let names: Vec<String> = module.states.iter().map(|(_, s)| s.name.clone()).collect();
    let mut batch = batch;
    for (name, t) in initial {
        let Some((_, s)) = module.states.iter().find(|(_, s)| s.name == *name) else {
            return Err(CheckError::UnknownState { name: name.clone(), valid: names });
        };
        t.check().map_err(|source| CheckError::BadTensor { what: format!("initial state `{name}`"), source })?;
        let shape_error = |batch| CheckError::StateShape {
            name: name.clone(),
            expected: render_dims(&s.ty, module.steps, batch),
            given: t.shape.clone(),
        };
        let Some(batches) = match_dims(&s.ty.full_dims(module.steps), &t.shape) else {
            return Err(shape_error(batch));
        };
        for b in batches {
            match batch {
                Some(known) if known != b => return Err(shape_error(batch)),
                Some(_) => {}
                None if b == 0 => {
                    return Err(CheckError::BatchZero {
                        what: format!("initial state `{name}` (shape {:?})", t.shape),
                    });
                }
                None => batch = Some(b),
            }
        }
    }
    Ok(batch.unwrap_or(1))
}

/// Checks that every weight, input and initial state value is finite in
/// the module's float type (an f64 value beyond the f32 range is infinite
/// in an f32 run). Names the first value that is not, weights first, each
/// set by name.
pub fn check_finite(
    module: &Module,
    weights: &Weights,
    inputs: &BTreeMap<String, Tensor>,
    initial_state: &BTreeMap<String, Tensor>,
) -> Result<(), CheckError> {
    let sets = [("weight", weights), ("input", inputs), ("initial state", initial_state)];
    for (kind, set) in sets {
        for (name, t) in set {
            finite(&format!("{kind} `{name}`"), t, module.float)?;
        }
    }
    Ok(())
}

/// Checks that every value of `t` is finite in `float`; `what` names it.
pub fn finite(what: &str, t: &Tensor, float: Dtype) -> Result<(), CheckError> {
    let ok = |x: f64| if float == Dtype::F64 { x.is_finite() } else { (x as f32).is_finite() };
    let Some(flat) = t.data.iter().position(|&x| !ok(x)) else {
        return Ok(());
    };
    let count = t.data[flat..].iter().filter(|&&x| !ok(x)).count();
    Err(CheckError::NonFinite {
        what: what.to_string(),
        value: t.data[flat],
        index: index_of(&t.shape, flat),
        flat,
        count,
        float,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::ElemType;
    use snnc_ir::{Builder, Op, Param, ParamInit, Shape};

    /// An input `x: f32[B, 2]`, a parameter `w: [2, 3]`.
    fn module(float: Dtype) -> Module {
        let mut b = Builder::new("c", 2, 1e-3, float);
        let xin = b.input("x", Type::new(float, Shape::batched(&[2])));
        let shape = Shape::fixed(&[2, 3]);
        b.param(Param { name: "w".into(), dtype: float, shape, trainable: true, init: ParamInit::Zeros });
        b.begin_seq();
        let x = b.emit(Op::Input(xin)).unwrap();
        b.output("x", x);
        b.finish()
    }

    fn tensors(list: &[(&str, Tensor)]) -> BTreeMap<String, Tensor> {
        list.iter().map(|(k, t)| (k.to_string(), t.clone())).collect()
    }

    #[test]
    fn non_finite_values_are_named_by_tensor_and_element() {
        let m = module(Dtype::F32);
        let mut w = Tensor::zeros(vec![2, 3], ElemType::F32);
        w.data[4] = f64::NAN;
        w.data[5] = f64::INFINITY;
        let x = Tensor::zeros(vec![1, 2], ElemType::F32);
        let (ws, xs, none) = (tensors(&[("w", w)]), tensors(&[("x", x.clone())]), BTreeMap::new());
        assert_eq!(check_run(&m, &ws, &xs, &none), Ok(1));
        assert_eq!(
            check_finite(&m, &ws, &xs, &none).unwrap_err().to_string(),
            "weight `w` holds NaN at element [1, 1] (data[4]) (and 1 more non-finite values); weights must be \
             finite (weights that became NaN or infinite in training come from too high a learning rate)"
        );
        // 1e300 is finite in f64 but infinite in an f32 run.
        let mut big = x.clone();
        big.dtype = ElemType::F64;
        big.data[1] = 1e300;
        let ws = tensors(&[("w", Tensor::zeros(vec![2, 3], ElemType::F32))]);
        let xs = tensors(&[("x", big)]);
        assert_eq!(
            check_finite(&m, &ws, &xs, &none).unwrap_err().to_string(),
            "input `x` holds 1e300 at element [0, 1] (data[1]), which overflows float32 (largest 3.4028235e38) \
             in this f32 run; values must be finite"
        );
        assert_eq!(check_finite(&module(Dtype::F64), &ws, &xs, &none), Ok(()));
    }
}
