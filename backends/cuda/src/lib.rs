//! The snnc CUDA backend: PTX text for validated f32 IR, forward and
//! backward, with a manifest that says how to launch it.
//!
//! [`emit`] is pure and deterministic: it needs no GPU and no CUDA, and
//! the same module gives the same text on every machine. Its output is
//! checked by `ptxas` in `tests/ptx.rs` (install it with
//! `scripts/install-ptxas.sh`). [`probe`] and [`CudaExecutable`] load and
//! run the PTX through cudarc (dynamic loading: they build without CUDA
//! and report [`CudaError::NoDevice`] at run time when there is none).
//!
//! # Files
//!
//! | file | what |
//! |---|---|
//! | `plan.rs` | the plan: value roots (views need no memory), units (groups of elementwise nodes, heavy nodes), how each region runs, buffers |
//! | `ew.rs` | elementwise kernels: sequence groups, whole step loops as one kernel (time loop inside, states in registers), per-step groups |
//! | `ops.rs` | kernels of the other ops: matmul (tiled SGEMM), event-driven spike matmul, conv2d, pooling, time reductions, log_softmax and the backward ops |
//! | `layout.rs` | kernels of the layout ops `concat` (one copy kernel per operand) and `narrow`; dispatches every heavy node |
//! | `channel.rs` | BatchNorm's `channel_sum`/`channel_mean` (one thread per channel, or per step and channel for `_per_step`, summing in the interpreter's order) and `channel_broadcast`(`_mean`) (one thread per element) |
//! | `math.rs` | `max`/`min` with NaN rules, `exp`, `log`, `tanh`, the counter-based RNG |
//! | `ptx.rs` | the PTX text builder (registers, labels, prologue hoisting) |
//! | `emit.rs` | walks the regions, writes kernels and launches, assembles the module |
//! | `manifest.rs` | the manifest: buffers, kernels, launches (serde) |
//! | `runtime.rs` | cudarc: [`probe`], [`CudaExecutable`] (untested on a GPU) |
//!
//! Tests: `tests/emit.rs` (every net emits, deterministically, with a
//! consistent manifest), `tests/simulate.rs` (the PTX run by the simulator
//! in `tests/sim/` through the manifest's launches agrees with the
//! reference interpreter), and the root package's `tests/ptx.rs` (ptxas
//! assembles every net for sm_80 and sm_90; random networks, forward and
//! backward, agree on the simulator).
//!
//! # What runs how
//!
//! | IR | PTX |
//! |---|---|
//! | a step loop of elementwise nodes (`fused`, `extract`, state reads and writes, `step`, unfused elementwise ops, `uniform`) | **one kernel** ([`Schedule::LoopKernel`]): a thread per element of the population, `t = 0..T` (or `T-1` down to `0` for a reverse loop) inside, `unroll` copies of the body per iteration, states in registers, collected values written to row `t` |
//! | a step loop with a heavy node (a recurrent `matmul`/`spike_matmul`), or populations of unrelated sizes | **per-step launches** ([`Schedule::PerStep`]): per step, the units in order (e.g. the product of the previous spikes, then the fused neuron kernel), states updated in place by the last kernel that reads them, or copied at the end of the step |
//! | elementwise nodes of a sequence region | one grid-stride kernel per run of them; biases and scalars broadcast |
//! | `reshape`, `stop_gradient`, `cast`, `extract`, `state_write`, `collect`, `step` | no kernel: views of other buffers (a `step` is row `t`) |
//! | everything else | one kernel per node (see `ops.rs`, `layout.rs` and `channel.rs`), `spike_matmul` three, `concat` one per operand |
//!
//! # Numerics
//!
//! f32 only (an f64 module is [`CudaError::Unsupported`]). Every IR
//! arithmetic op is one IEEE instruction with explicit round-to-nearest
//! (`add.rn`, `mul.rn`, ...; never an FMA), in the IR's order, and sums run
//! in the interpreter's order (the dense matmul too), so results equal the
//! interpreter's bit for bit. The exceptions are `exp`, `log` and `tanh`:
//! computed in f64 and rounded once, they are correctly rounded (but for
//! rare cases), while the interpreter calls glibc, whose `expf`/`logf`
//! differ from that in about 0.2% of arguments and `tanhf` in about 8% (by
//! an ulp or two). Spikes are stored as f32 0.0/1.0.

mod channel;
mod conv;
mod emit;
mod ew;
mod layout;
pub mod manifest;
mod math;
mod ops;
mod plan;
mod ptx;
mod runtime;
mod stdp;

use snnc_ir::{Module, ModuleInfo};

pub use manifest::{
    Arg, Binding, Buffer, Count, GridDim, Kernel, KernelParam, Launch, Manifest, RegionPlan, Role, Schedule,
    StateBinding,
};
pub use runtime::{CudaExecutable, GpuStatus, HostRun, probe};

/// The GPU architecture the PTX targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Ampere (A100): `.target sm_80`, PTX ISA 7.0.
    #[default]
    Sm80,
    /// Hopper (H100): `.target sm_90`, PTX ISA 7.8.
    Sm90,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Sm80, Arch::Sm90];

    /// The `.target` (and `ptxas --gpu-name`): `sm_80`, `sm_90`.
    pub fn target(self) -> &'static str {
        match self {
            Arch::Sm80 => "sm_80",
            Arch::Sm90 => "sm_90",
        }
    }

    /// The PTX ISA `.version`: the oldest that has the target (7.0 for
    /// sm_80, 7.8 for sm_90), so that the oldest drivers can load it.
    pub fn ptx_version(self) -> &'static str {
        match self {
            Arch::Sm80 => "7.0",
            Arch::Sm90 => "7.8",
        }
    }
}

/// Options of [`emit`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CudaOptions {
    pub arch: Arch,
}

/// The PTX of a module and how to run it.
#[derive(Clone, Debug, PartialEq)]
pub struct CudaArtifact {
    /// One PTX module holding every kernel.
    pub ptx: String,
    pub manifest: Manifest,
}

/// Why the CUDA backend cannot emit, load or run a module.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// Valid IR this backend cannot handle.
    #[error("the cuda backend does not support {0}")]
    Unsupported(String),
    #[error("the module info does not belong to this module; pass the info `validate` returned for it")]
    InfoMismatch,
    /// Something a validated module cannot hold (a bug).
    #[error("internal error of the cuda backend: {0}")]
    Invalid(String),
    /// No usable GPU or driver: why.
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    /// The driver failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// The weights, inputs or initial states do not fit the module.
    #[error("{0}")]
    Input(String),
}

/// The PTX of a validated module and its manifest. `info` is the proof of
/// validation `snnc_ir::validate` returned for it.
///
/// Pure and deterministic; fails with [`CudaError::Unsupported`] for valid
/// IR this backend cannot handle (f64 modules, 32-bit index overflow),
/// never panics.
pub fn emit(module: &Module, info: &ModuleInfo, opts: &CudaOptions) -> Result<CudaArtifact, CudaError> {
    emit::emit(module, info, opts)
}
