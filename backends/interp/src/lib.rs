//! The snnc reference interpreter: the living definition of every IR op.
//!
//! [`run`] executes a validated [`Module`] on host tensors. It is written
//! plainly, for reading: flat row-major buffers, one loop per op, and the
//! order of every floating-point operation spelled out, because the other
//! backends are tested against it.
//!
//! # Precision
//!
//! A run computes in the module's float type (`Module::float`): `f32` or
//! `f64`. Inputs, weights, constants and initial states are rounded to it on
//! entry, and every op is computed in it, so an `f32` run rounds after each
//! operation as PyTorch does (never a wider intermediate, never a fused
//! multiply-add). Spikes are 0 and 1 in that type. Outputs, traces and final
//! states are tensors of element type `float32` or `float64` accordingly,
//! spikes included.
//!
//! # Shapes and the batch
//!
//! The batch size `B` comes from the inputs: every `Dim::Batch` of every
//! input's type takes its size from the given tensor, and they must agree.
//! A module without batched inputs takes `B` from the batched initial
//! states in [`RunOptions::initial_state`], else `B = 1`. Every input's
//! full shape (`[T, ...]` for a `seq` input, `T = Module::steps`), the
//! weights and the initial states are checked before anything runs, by
//! [`snnc_runtime::check_run`], the rules every backend shares. A value's buffer holds its full shape: the
//! time dim first for `seq` values, then its shape with `B` resolved.
//!
//! # Execution
//!
//! The regions of the body run in order. A sequence region evaluates its
//! nodes once, in order. A step loop evaluates its nodes in order for
//! `t = 0..T`, or for `t = T-1` down to `0` when it is `reverse`: `t` is the
//! time index either way (`step` reads row `t`, the per-step values a
//! `collect` stacks are stored at row `t`, `uniform` draws with `t`), and a
//! state read gives what the previous iteration wrote. Each state starts at
//! its [`snnc_ir::StateInit`] value broadcast to its shape, or at the tensor
//! given in [`RunOptions::initial_state`] under its name.
//!
//! # The ops
//!
//! "Broadcast" means suffix broadcasting ([`snnc_ir::typing::broadcast`]):
//! an operand whose full dims are a suffix of the result's repeats over the
//! leading dims, so element `i` of the result reads element `i % len` of it.
//!
//! | op | value |
//! |---|---|
//! | `input` | the input tensor, rounded to the float type |
//! | `param` | the weight of that name, rounded to the float type |
//! | `const` | the scalar, rounded to the float type (broadcasts) |
//! | `state_read $s` | the state at the start of step `t` |
//! | `state_write $s, %v` | `%v`; the state holds it from step `t + 1` on |
//! | `step %x` | slice `t` of the sequence `%x` (`[T, ...]` to `[...]`) |
//! | `collect %v` | the values of `%v` at steps `0..T` of its step loop, stacked to `[T, ...]` |
//! | unary | `neg`, `abs`, `exp`, `log` (natural), `tanh`, `sqrt`, `relu = max(x, 0)` |
//! | binary | `a + b`, `a - b`, `a * b`, `a / b`, `max`, `min`, broadcast; `max`/`min` propagate NaN |
//! | compare | 1 where `a > b` (`>=`, `<`, `<=`, `==`) holds, else 0 (false with NaN), broadcast |
//! | `select c, a, b` | `c != 0 ? a : b` elementwise, all three broadcast |
//! | `threshold` | `1` where `x > 0` (strictly), else 0 (forward only: the surrogate is for autodiff) |
//! | `stop_gradient` | `x` |
//! | `cast` | spike to float: the same 0/1; to `f32`: rounded to f32; to `f64`: the same value |
//! | `matmul`, `spike_matmul` | `x @ w^T` summed over `k` in order from `+0`; both kinds give the same numbers |
//! | `conv2d` | torch's cross-correlation, NCHW, zero padding, dilation, groups (output channel `o` reads the input channels of its group), sum in `(c, kh, kw)` order from `+0`, then `+ bias` |
//! | `max_pool2d` | max over the in-image part of each window of the last two dims (padding is `-inf`), floor; NaN propagates |
//! | `avg_pool2d` | the window's sum in row-major order from `+0` (padding is 0), divided once by `kh * kw` (torch's `count_include_pad=True`) |
//! | `sum_pool2d` | the window's sum in row-major order from `+0` (padding is 0) |
//! | `reshape` | the same elements in row-major order |
//! | `concat %a, %b, ...` | along dim 1 of the shape (the dim after `B`; after `T, B` for `seq`): for every time and batch row, the operands' rows one after the other, in operand order |
//! | `narrow %x, start, len` | the elements `[start, start + len)` of that dim, for every time and batch row |
//! | `channel_sum`, `channel_mean` | `[C]`: per channel (dim 1 after `B`, dim 0 of a fixed value) the sum over the leading (time, batch) and trailing dims, leading index outer, in order from `+0`; `mean` divides by the count |
//! | `max_all` | `[]`: the maximum of every element (time, batch and all), in order from `-inf`; NaN if any element is NaN (Norse's `PopulationEncoder` scale) |
//! | `channel_sum_per_step`, `channel_mean_per_step` | `[T, C]`: row `t` is `channel_sum` / `channel_mean` of step `t` of the sequence alone (its batch and trailing dims, the same order and count); of a value without time, its `channel_sum` / `channel_mean` in every row |
//! | `channel_broadcast(_mean) %a, shape=S` | `a[c]` (divided by the number of copies for `_mean`) at every position of channel `c` of `S`; a `seq` `a` (`[T, C]`) gives a `seq` `S`, step `t` repeating `a[t, c]` (the count is one step's) |
//! | `reduce_time_*` | over the time dim: `sum` in step order from `+0`, `mean = sum / T`, `max`, `last = x[T-1]` |
//! | `log_softmax` | over the last dim: `(x - m) - ln(sum(exp(x - m)))` with `m = max(x)` |
//! | `fused` | its body, instruction by instruction, each as the op of the same name above, over the kernel's shape (inputs broadcast); the node's value is output 0 |
//! | `extract %k, i` | output `i` of the `fused` node `%k` |
//! | `uniform` | `rng::uniform(seed, t, k)`: `t` the step (the time index of a `seq` value; 0 for a static one), `k` the row-major index within the step, batch included |
//! | `transpose` | `y[j, i] = x[i, j]` |
//! | `matmul_grad_weight`, `spike_matmul_grad_weight` | `dw[o, i]`: the sum over every leading row `r` (time, batch, ...) in order from `+0` of `grad[r, o] * x[r, i]`; both kinds give the same numbers |
//! | `sum_to` | the sum over the leading rows down to the shape, in row order from `+0` |
//! | `conv2d_grad_input` | the transposed convolution: `dx[n,c,r,q]`, the sum in `(o, a, b)` order (`o` in `c`'s group) from `+0` of `grad[n,o,i,j] * w[o,c mod C/g,a,b]` where `r = i*sh + a*dh - ph`, `q = j*sw + b*dw - pw` |
//! | `conv2d_grad_weight` | `dw[o,ci,a,b]`, the sum in `(n, i, j)` order from `+0` of `grad[n,o,i,j] * x[n,c,i*sh+a*dh-ph,j*sw+b*dw-pw]` (`c` the `ci`-th channel of `o`'s group; 0 in the padding) |
//! | `conv2d_grad_bias` | `db[o]`, the sum in `(n, i, j)` order from `+0` of `grad[n,o,i,j]` |
//! | `max_pool2d_grad` | each window's gradient added to the element torch's CPU kernel picks (the first maximum of the in-image part; among NaNs the last), windows in row-major order |
//! | `avg_pool2d_grad` | each window's gradient divided once by `kh * kw`, added to each in-image element of the window, windows in row-major order |
//! | `sum_pool2d_grad` | each window's gradient added to each in-image element of the window, windows in row-major order |
//! | `reduce_time_*_grad` | `sum`: `grad` at every step; `mean`: `grad / T`; `last`: `grad` at `T-1`; `max`: `grad` at `torch.max`'s step (the first NaN, else the first maximum); `+0` elsewhere |
//! | `log_softmax_grad` | `grad - exp(out) * s` with `s` the sum of `grad` over the last dim in order from `+0` |
//!
//! The exact arithmetic of each is documented on its kernel in the
//! `kernels` module. Values may be NaN or infinite; the interpreter never
//! panics on a valid module, whatever the inputs, and reports bad inputs as
//! [`InterpError`]s.
//!
//! # Results
//!
//! [`RunResult::outputs`] holds the module outputs by name;
//! [`RunResult::final_state`] every state's value after the last step, by
//! state name; with [`RunOptions::record`], [`RunResult::traces`] holds
//! every named node: a node of a step loop as its per-step values stacked to
//! `[T, ...]`, a node of a sequence region as it is. If several nodes share
//! a name, the last one wins (as `Module::node_by_name`).

mod eval;
mod kernels;
mod real;

use std::collections::BTreeMap;

use snnc_ir::{Dtype, Module, ModuleInfo, Type};
use snnc_runtime::{CheckError, Tensor, Weights, check_run};

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Record every named node into [`RunResult::traces`].
    pub record: bool,
    /// Initial values of state variables, by state name, with the state's
    /// shape (`B` resolved); states not named here start at their
    /// [`snnc_ir::StateInit`].
    pub initial_state: BTreeMap<String, Tensor>,
}

/// What a run produces.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The module outputs, by name.
    pub outputs: BTreeMap<String, Tensor>,
    /// With [`RunOptions::record`]: every named node (step-loop nodes as
    /// `[T, ...]`). Empty otherwise.
    pub traces: BTreeMap<String, Tensor>,
    /// Every state's value after the last step, by state name.
    pub final_state: BTreeMap<String, Tensor>,
}

/// Why a module could not run on the given inputs.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// The weights, inputs or initial states do not fit the module
    /// ([`snnc_runtime::check_run`]).
    #[error(transparent)]
    Check(#[from] CheckError),
    /// `what` names the value, its layer and the batch size.
    #[error("{what} has too many elements to hold in memory; use a smaller batch, fewer steps or a smaller layer")]
    TooLarge { what: String },
    #[error("the module info does not belong to this module; pass the info `validate` returned for it")]
    InfoMismatch,
}

/// The resolved sizes of a run, computed and bounds-checked before it.
#[derive(Debug)]
pub(crate) struct Plan {
    pub steps: usize,
    /// Every node's full dims (time first for `seq` values), `B` resolved.
    pub dims: Vec<Vec<usize>>,
    pub state_dims: Vec<Vec<usize>>,
    /// Step-loop nodes whose value is kept at every step.
    pub keep_history: Vec<bool>,
}

/// The most elements one buffer may hold.
const MAX_ELEMENTS: usize = (isize::MAX as usize) / 16;

impl Plan {
    /// The number of elements of dims (checked not to overflow when the
    /// plan was made).
    pub fn numel(&self, dims: &[usize]) -> usize {
        dims.iter().product()
    }

    fn new(module: &Module, batch: usize, record: bool) -> Result<Plan, InterpError> {
        let steps = module.steps as usize;
        // Products of any subset of the dims must fit: check the product of
        // the nonzero ones (with T, for per-step values kept over time).
        let fits = |dims: &[usize]| {
            dims.iter()
                .filter(|&&d| d != 0)
                .try_fold(steps.max(1), |acc, &d| acc.checked_mul(d))
                .is_some_and(|n| n <= MAX_ELEMENTS)
        };
        let resolve = |ty: &Type, with_time: bool| -> Vec<usize> {
            let mut v = Vec::with_capacity(ty.shape.rank() + 1);
            if with_time {
                v.push(steps);
            }
            v.extend(ty.shape.resolve(batch));
            v
        };
        let mut dims = Vec::with_capacity(module.nodes.len());
        for (h, node) in module.nodes.iter() {
            let d = resolve(&node.ty, node.ty.seq);
            if !fits(&d) {
                let what = format!("{} at batch size {batch}", snnc_ir::layer::describe_value(module, h));
                return Err(InterpError::TooLarge { what });
            }
            dims.push(d);
        }
        let mut state_dims = Vec::with_capacity(module.states.len());
        for (_, s) in module.states.iter() {
            let d = resolve(&s.ty, false);
            if !fits(&d) {
                return Err(InterpError::TooLarge { what: format!("state `{}` at batch size {batch}", s.name) });
            }
            state_dims.push(d);
        }
        let keep_history = module.kept_per_step(record);
        Ok(Plan { steps, dims, state_dims, keep_history })
    }
}

/// Runs `module` on `inputs` with `weights`; see the crate doc for what
/// every op computes.
///
/// Checks everything before running: the weights (exactly the module's
/// parameters, with their shapes), the inputs (every module input, no other
/// name, each with its full shape, one batch size), the initial states
/// (known names, the state's shape). `info` is the proof of validation that
/// [`snnc_ir::validate`] returned for this module.
pub fn run(
    module: &Module,
    info: &ModuleInfo,
    weights: &Weights,
    inputs: &BTreeMap<String, Tensor>,
    opts: &RunOptions,
) -> Result<RunResult, InterpError> {
    if info.region_of.len() != module.nodes.len() || info.state_region.len() != module.states.len() {
        return Err(InterpError::InfoMismatch);
    }
    let batch = check_run(module, weights, inputs, &opts.initial_state)?;
    let plan = Plan::new(module, batch, opts.record)?;
    let result = match module.float {
        Dtype::F64 => eval::run::<f64>(module, &plan, weights, inputs, &opts.initial_state, opts.record),
        Dtype::F32 | Dtype::Spike => eval::run::<f32>(module, &plan, weights, inputs, &opts.initial_state, opts.record),
    };
    Ok(result)
}
