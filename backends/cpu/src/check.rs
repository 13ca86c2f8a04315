//! Checks of a run's inputs and initial states, before anything runs: the
//! rules every backend shares ([`snnc_runtime::check`]), as [`CpuError`]s.

use std::collections::BTreeMap;

use snnc_ir::Module;
use snnc_runtime::{CheckError, Tensor, check};

use crate::CpuError;

fn input(e: CheckError) -> CpuError {
    CpuError::Input(e.to_string())
}

/// Checks the inputs and returns the batch size they agree on, if any
/// input has a batch dim.
pub(crate) fn inputs(module: &Module, inputs: &BTreeMap<String, Tensor>) -> Result<Option<usize>, CpuError> {
    check::check_inputs(module, inputs).map_err(input)
}

/// [`inputs`] for values whose data is known to fit their shapes.
pub(crate) fn input_shapes(module: &Module, inputs: &BTreeMap<String, &[usize]>) -> Result<Option<usize>, CpuError> {
    check::check_input_shapes(module, inputs).map_err(input)
}

/// Checks initial states; returns the batch size.
pub(crate) fn states(
    module: &Module,
    initial: &BTreeMap<String, Tensor>,
    batch: Option<usize>,
) -> Result<usize, CpuError> {
    check::check_states(module, initial, batch).map_err(input)
}
