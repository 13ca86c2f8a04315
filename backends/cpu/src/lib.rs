//! The snnc CPU backend: validated f32 IR run natively.
//!
//! [`compile`] turns a validated module into an [`Executable`];
//! [`Executable::run`] runs it on host tensors, as often as wanted, with
//! the interpreter's contract (`snnc-interp`): the same checks of weights,
//! inputs and initial states before anything runs, the same
//! [`RunOptions`] and the same [`RunResult`].
//!
//! # How each op runs
//!
//! | op | how |
//! |---|---|
//! | a step loop of one `fused` kernel (state reads, `step`s, the kernel, its `extract`s, state writes) | one whole-loop JIT kernel: the time loop inside generated code, the states in registers, per-step outputs written only where collected or recorded; the elements split over threads. A collected output that only event-driven kernels read is not written: the loop runs in chunks of steps and turns each chunk's output (in cache) into spike lists |
//! | another step loop whose every node works row by row on the batch (products with a weight fixed during the loop, `fused` JIT kernels, elementwise ops, states) | split over the batch: each part of the rows runs all steps on its own (`exec/rowloop.rs`), one synchronisation per loop instead of one per node and step; a state written with a value of the loop's own takes that value's buffer instead of a copy |
//! | `fused`, `extract` | a kernel per `fused` node (Cranelift JIT in `jit`, run once per output row when inputs are a fixed suffix of the output's shape; the plain-Rust [`exec::eval_kernel_fallback`] for other broadcast inputs), element by element: the interpreter's bits |
//! | `matmul` (dense) | one GEMM (`gemm` crate) over all rows, `[T·B, in] × [out, in]ᵀ`, rows split over threads; with at most 64 inputs, the interpreter's loop (its bits) |
//! | `spike_matmul` | ours (`event.rs`): the active inputs of each row listed once (a value read by several kernels, such as the encoder's spikes, is listed once per run), then per row the rows of the transposed weight of its active inputs added in ascending input order, in registers: the interpreter's bits |
//! | `conv2d` | im2col (dilated taps) and one GEMM per image and channel group, images split over threads |
//! | `max_pool2d`, `avg_pool2d`, `sum_pool2d` (`kernels/pooling.rs`), `reduce_time_*`, `log_softmax`, `uniform`, unfused elementwise ops | plain Rust loops in the interpreter's order: its bits |
//! | `concat`, `narrow` | copies into the node's own buffer, row by row (each time and batch row: the operands' blocks in order, or the slice): the interpreter's bits. A step loop holding one runs node by node |
//! | `channel_sum`, `channel_mean` (`_per_step`), `channel_broadcast(_mean)` | `kernels/channel.rs`: each sum in the interpreter's order, 8 channels' chains side by side, channel groups split over threads; a broadcast by rows (BatchNorm statistics; after `time-batch` over whole sequences, one `[C]` per step) |
//! | `max_all` | node by node in the interpreter's order (the population encoder's scale; `time-batch` keeps it per step) |
//! | `step`, `reshape`, `stop_gradient`, `collect`, `state_read`, `state_write` | views of other buffers, no copy (a `state_write` copies into the next-state buffer) |
//! | `transpose`, `sum_to`, `conv2d_grad_bias`, `{max,avg,sum}_pool2d_grad`, `reduce_time_*_grad`, `log_softmax_grad` | plain Rust loops in the interpreter's order: its bits |
//! | `matmul_grad_weight` | one GEMM `gradᵀ · x` over all `T·B` rows, the rows of the result split over threads; with at most 64 rows, the interpreter's loop (its bits) |
//! | `spike_matmul_grad_weight` | ours (`event.rs`, from the same lists): per row, the gradient row added to the (transposed) result row of each active input, rows in order, the inputs split over threads: the interpreter's bits |
//! | `conv2d_grad_input` | per image one GEMM `wᵀ · grad` per channel group and col2im, images split over threads |
//! | `conv2d_grad_weight` | im2col of 32 images at a time and one GEMM per chunk and channel group adding into the result, its rows split over threads |
//! | `spike_conv2d`, `spike_conv2d_grad_weight` | ours (`event_conv.rs`) for dilation 1 and one group; any other runs the dense kernel |
//!
//! A `reverse` step loop runs `t = T-1` down to `0` on either path (node by
//! node, or as a whole-loop kernel whose time loop walks the rows
//! backwards); `t` stays the time index of `step`, `collect` and `uniform`.
//!
//! # Numerics
//!
//! Everything is f32; an `f64` module is [`CpuError::Unsupported`] (the
//! interpreter runs f64). GEMM-based ops sum in the GEMM's order, so they
//! agree with the interpreter within rounding (1e-5 relative), everything
//! else bit for bit. Work is split over threads by whole rows or elements,
//! never by a reduction, so a run gives the same bits on every call and
//! for every number of threads (`SNNC_THREADS` sets it).
//!
//! # Threads
//!
//! One persistent pool (`pool.rs`, `rayon`), its threads started once; a
//! run executes inside it. Kernels split when they take long enough to pay
//! for it (estimated from their size), into more parts than threads.
//!
//! # Buffers
//!
//! The buffers of a run are planned for its batch size and kept in the
//! executable: the next run with the same batch size reuses them.

mod check;
pub mod clif;
pub mod emit;
mod event;
mod event_conv;
pub mod exec;
pub mod jit;
mod kernels;
#[cfg(test)]
mod microbench;
mod pool;
mod stdp;
mod steploop;
mod uniform;

use std::collections::BTreeMap;

use snnc_runtime::Tensor;

pub use emit::{KernelText, emit_clif};
pub use exec::{CompileOptions, Executable, F32Outputs, F32View, PlannedBuffer, compile, compile_with};

/// Options of one run (as the interpreter's).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Record every named node into [`RunResult::traces`].
    pub record: bool,
    /// Initial values of state variables, by state name, with the state's
    /// shape (`B` resolved); states not named here start at their
    /// [`snnc_ir::StateInit`].
    pub initial_state: BTreeMap<String, Tensor>,
    /// Leave [`RunResult::final_state`] empty: for a caller that reads the
    /// outputs only (converting every state to an f64 tensor costs time at
    /// every run, ~10 ms a training step of `examples/sew_resnet.ron`).
    pub skip_final_state: bool,
}

/// What a run produces (as the interpreter's).
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The module outputs, by name.
    pub outputs: BTreeMap<String, Tensor>,
    /// With [`RunOptions::record`]: every named node (step-loop nodes as
    /// `[T, ...]`). Empty otherwise.
    pub traces: BTreeMap<String, Tensor>,
    /// Every state's value after the last step, by state name (empty with
    /// [`RunOptions::skip_final_state`]).
    pub final_state: BTreeMap<String, Tensor>,
}

/// Why the CPU backend cannot compile or run a module.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// Valid IR this backend cannot handle.
    #[error("the cpu backend does not support {0}")]
    Unsupported(String),
    /// The weights, inputs or initial states do not fit the module.
    #[error("{0}")]
    Input(String),
    /// A value, named with its layer and the batch size, too large to
    /// hold.
    #[error("{0} has too many elements to hold in memory; use a smaller batch, fewer steps or a smaller layer")]
    TooLarge(String),
    /// An allocation failed: this machine lacks the memory.
    #[error("out of memory: cannot allocate {0}")]
    OutOfMemory(String),
    #[error("the module info does not belong to this module; pass the info `validate` returned for it")]
    InfoMismatch,
    /// The JIT failed on a kernel (a bug).
    #[error("jit: {0}")]
    Jit(String),
}
