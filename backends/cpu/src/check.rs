//! Checks of a run's inputs and initial states, before anything runs.
//!
//! The rules are the interpreter's (`snnc-interp`'s crate doc, "Shapes and
//! the batch"), so both backends accept and reject the same runs.

use std::collections::BTreeMap;

use snnc_ir::{Dim, Module, Type};
use snnc_runtime::Tensor;

use crate::CpuError;

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// Renders a type's full dims for messages: `[T=32, B, 784]`.
fn render_dims(ty: &Type, steps: u32, batch: Option<usize>) -> String {
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

/// Matches a given shape against full dims; returns the sizes the batch
/// dims take, or `None` if the rank or a fixed dim differs.
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

/// Checks the inputs (every module input, no other name, each with its full
/// shape, one batch size) and returns the batch size they agree on, if any
/// input has a batch dim.
pub(crate) fn inputs(module: &Module, inputs: &BTreeMap<String, Tensor>) -> Result<Option<usize>, CpuError> {
    for (name, t) in inputs {
        if module.input_by_name(name).is_some() {
            t.check().map_err(|e| CpuError::Input(format!("input `{name}`: {e}")))?;
        }
    }
    input_shapes(module, &inputs.iter().map(|(k, t)| (k.clone(), t.shape.as_slice())).collect())
}

/// [`inputs`] for values whose data is known to fit their shapes: checks
/// the names and shapes and returns the batch size.
pub(crate) fn input_shapes(module: &Module, inputs: &BTreeMap<String, &[usize]>) -> Result<Option<usize>, CpuError> {
    let names: Vec<String> = module.inputs.iter().map(|(_, i)| i.name.clone()).collect();
    for name in &names {
        if !inputs.contains_key(name) {
            return Err(CpuError::Input(format!("missing input `{name}`; the module's inputs are {}", list(&names))));
        }
    }
    let unknown: Vec<String> = inputs.keys().filter(|k| module.input_by_name(k).is_none()).cloned().collect();
    if !unknown.is_empty() {
        return Err(CpuError::Input(format!(
            "unknown input(s) {}; the module's inputs are {}",
            list(&unknown),
            list(&names)
        )));
    }
    let mut batch: Option<(usize, &str)> = None;
    for (_, input) in module.inputs.iter() {
        let shape = inputs[&input.name];
        let Some(batches) = match_dims(&input.ty.full_dims(module.steps), shape) else {
            return Err(CpuError::Input(format!(
                "input `{}` has shape {shape:?} but the module expects {}",
                input.name,
                render_dims(&input.ty, module.steps, None)
            )));
        };
        for b in batches {
            if b == 0 {
                return Err(CpuError::Input(format!(
                    "input `{}` (shape {shape:?}) has batch size 0; the batch size must be at least 1",
                    input.name
                )));
            }
            match batch {
                None => batch = Some((b, &input.name)),
                Some((first_batch, first)) if first_batch != b => {
                    return Err(CpuError::Input(format!(
                        "input `{}` has batch size {b} but input `{first}` has batch size {first_batch}; \
                         all inputs must have the same batch size",
                        input.name
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(batch.map(|(b, _)| b))
}

/// Checks initial states against the module with the batch size from the
/// inputs if known (else from these states, else 1); returns the batch size.
pub(crate) fn states(
    module: &Module,
    initial: &BTreeMap<String, Tensor>,
    batch: Option<usize>,
) -> Result<usize, CpuError> {
    let names: Vec<String> = module.states.iter().map(|(_, s)| s.name.clone()).collect();
    let mut batch = batch;
    for (name, t) in initial {
        let Some((_, s)) = module.states.iter().find(|(_, s)| s.name == *name) else {
            return Err(CpuError::Input(format!(
                "unknown initial state `{name}`; the module's states are {}",
                list(&names)
            )));
        };
        t.check().map_err(|e| CpuError::Input(format!("initial state `{name}`: {e}")))?;
        let shape_error = |batch| {
            CpuError::Input(format!(
                "initial state `{name}` has shape {:?} but the state has shape {}",
                t.shape,
                render_dims(&s.ty, module.steps, batch)
            ))
        };
        let Some(batches) = match_dims(&s.ty.full_dims(module.steps), &t.shape) else {
            return Err(shape_error(batch));
        };
        for b in batches {
            match batch {
                Some(known) if known != b => return Err(shape_error(batch)),
                Some(_) => {}
                None if b == 0 => {
                    return Err(CpuError::Input(format!(
                        "initial state `{name}` (shape {:?}) has batch size 0; the batch size must be at least 1",
                        t.shape
                    )));
                }
                None => batch = Some(b),
            }
        }
    }
    Ok(batch.unwrap_or(1))
}
