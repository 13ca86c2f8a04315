//! The manifest of an emitted module: what a runtime needs to run its PTX.
//!
//! It lists every device buffer (with its size as a formula of the batch
//! size `B`), every kernel entry with its parameter layout, and for every
//! region of the module the launches that run it, in order, each with its
//! geometry and the argument of each parameter. It is plain data
//! (serde): [`Manifest::to_json`] gives the JSON form.
//!
//! # How to run a module from its manifest
//!
//! 1. Allocate every buffer: `bytes = B * bytes_per_sample` when `batched`,
//!    else `bytes_per_sample`. Upload inputs and parameters; fill every
//!    state buffer with its initial value ([`StateBinding::init`]) or the
//!    caller's initial state.
//! 2. For every region plan in order: a [`Schedule::Once`] or
//!    [`Schedule::LoopKernel`] region runs its `body` once (a loop kernel
//!    runs the time loop itself); a [`Schedule::PerStep`] region runs its
//!    `prologue` once, then its `body` once per step `t` (`0..T`, or
//!    `T-1` down to `0` when `reverse`).
//! 3. A launch passes, per kernel parameter, its [`Arg`]: the batch size,
//!    the step `t`, or a buffer's device address (plus `t` times the
//!    buffer's row size when `step_row`: the row of step `t` of a
//!    `[T, ...]` buffer). The grid is `ceil(threads / per_block)` per
//!    dimension ([`GridDim`]); a `grid_stride` kernel is correct for any
//!    grid size.
//! 4. Outputs and final states are then in their buffers.
//!
//! Spikes are stored as `f32` 0.0/1.0 everywhere; element indices are
//! 32-bit, so every buffer must hold fewer than 2^32 elements.

use serde::{Deserialize, Serialize};

/// An element (or byte, or thread) count: `B * fixed` when `batch`, else
/// `fixed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Count {
    pub batch: bool,
    pub fixed: u64,
}

impl Count {
    pub fn fixed(fixed: u64) -> Self {
        Count { batch: false, fixed }
    }

    /// The count for batch size `b` (saturating).
    pub fn resolve(self, b: u64) -> u64 {
        if self.batch { self.fixed.saturating_mul(b) } else { self.fixed }
    }

    /// Whether `self` divides `other` for every batch size.
    pub fn divides(self, other: Count) -> bool {
        (!self.batch || other.batch) && self.fixed != 0 && other.fixed.is_multiple_of(self.fixed)
    }

    /// `self / d`, where `d` divides `self`.
    pub fn quotient(self, d: Count) -> Count {
        Count { batch: self.batch && !d.batch, fixed: self.fixed / d.fixed.max(1) }
    }

    /// `self * other` (one of them without batch).
    pub fn times(self, other: u64) -> Count {
        Count { batch: self.batch, fixed: self.fixed.saturating_mul(other) }
    }

    /// `B*100` or `100`.
    pub fn show(self) -> String {
        if self.batch { format!("B*{}", self.fixed) } else { self.fixed.to_string() }
    }
}

/// Everything needed to run the PTX of one module (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The module's name.
    pub module: String,
    /// `sm_80` or `sm_90`: the `.target` of the PTX.
    pub arch: String,
    /// The PTX ISA `.version`.
    pub ptx_version: String,
    /// The number of time steps `T`.
    pub steps: u32,
    /// How spikes are stored: `"f32"` (0.0 or 1.0).
    pub spike_storage: String,
    /// The width of element indices in the kernels (32): every buffer must
    /// hold fewer than `2^index_bits` elements.
    pub index_bits: u32,
    /// How dense products are computed: `"ptx_sgemm"` (our tiled kernel,
    /// which sums in the interpreter's order), not cuBLAS.
    pub dense_matmul: String,
    pub buffers: Vec<Buffer>,
    /// Every kernel entry of the PTX with its parameters, in order of first
    /// launch.
    pub kernels: Vec<Kernel>,
    /// One plan per region of the module, in order.
    pub regions: Vec<RegionPlan>,
    pub inputs: Vec<Binding>,
    pub params: Vec<Binding>,
    pub states: Vec<StateBinding>,
    pub outputs: Vec<Binding>,
}

impl Manifest {
    /// The JSON form (pretty-printed).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest is plain data")
    }

    /// Every launch of a forward run in order, with the step it runs at
    /// (`None` outside per-step regions).
    pub fn launch_order(&self) -> Vec<(Option<u32>, &Launch)> {
        let mut res = Vec::new();
        for r in &self.regions {
            res.extend(r.prologue.iter().map(|l| (None, l)));
            match r.schedule {
                Schedule::Once | Schedule::LoopKernel => res.extend(r.body.iter().map(|l| (None, l))),
                Schedule::PerStep => {
                    for i in 0..self.steps {
                        let t = if r.reverse { self.steps - 1 - i } else { i };
                        res.extend(r.body.iter().map(|l| (Some(t), l)));
                    }
                }
            }
        }
        res
    }
}

/// A named value and the buffer that holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub name: String,
    pub buffer: usize,
}

/// A state variable: its buffer holds the initial value before the run
/// and the final value after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateBinding {
    pub name: String,
    pub buffer: usize,
    /// The initial value of every element (unless the caller gives one).
    pub init: f64,
    /// When present, the initial values of one sample instead of `init`
    /// (element `k` of the buffer starts at `init_values[k % len]`): a
    /// per-neuron `v_leak`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_values: Option<Vec<f64>>,
    /// When present, the state starts as a copy of this parameter buffer
    /// (a plastic weight, `StateInit::Param`); the caller copies it after
    /// uploading the parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_param: Option<usize>,
}

impl StateBinding {
    /// The initial contents of the state's buffer of `n` elements.
    pub fn initial(&self, n: usize) -> Vec<f32> {
        match &self.init_values {
            Some(v) if !v.is_empty() => (0..n).map(|k| v[k % v.len()] as f32).collect(),
            _ => vec![self.init as f32; n],
        }
    }
}

/// What a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A module input (uploaded before the run).
    Input,
    /// A parameter (uploaded before the run).
    Param,
    /// A state variable (filled with its initial value before the run).
    State,
    /// A value computed by a sequence region.
    Value,
    /// A per-step value of a step loop run by per-step launches (no `T`).
    StepValue,
    /// The per-step values of a step-loop value, stacked over `T` (what a
    /// `collect` reads).
    Collect,
    /// Working memory of a kernel (the event-driven product's transposed
    /// weight and active-input lists).
    Scratch,
}

/// One device buffer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Buffer {
    pub id: usize,
    pub name: String,
    pub role: Role,
    /// The IR nodes whose value this buffer holds (the first computes it;
    /// the others are views: `reshape`, `extract`, `collect`, ...).
    pub nodes: Vec<u32>,
    /// The IR dtype (`f32`, `spike`) or `u32` for index scratch.
    pub dtype: String,
    /// The element type in memory: `f32` or `u32` (4 bytes either way).
    pub storage: String,
    /// The dims, outermost first: numbers, `B`, and the steps `T` as a
    /// number.
    pub dims: Vec<String>,
    /// Whether the size scales with the batch size.
    pub batched: bool,
    /// Bytes per batch element when `batched`, else the total bytes.
    pub bytes_per_sample: u64,
}

/// A kernel entry and its parameters, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    pub name: String,
    pub params: Vec<KernelParam>,
}

/// One `.param` of a kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelParam {
    pub name: String,
    /// `u64` (a device pointer) or `u32`.
    pub ty: String,
}

/// One dimension of a grid: `ceil(threads / per_block)` blocks, where
/// `threads` is `B * fixed` or `fixed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridDim {
    pub threads: Count,
    pub per_block: u32,
}

impl GridDim {
    pub fn one() -> Self {
        GridDim { threads: Count::fixed(1), per_block: 1 }
    }

    /// The number of blocks for batch size `b`.
    pub fn blocks(self, b: u64) -> u64 {
        self.threads.resolve(b).div_ceil(u64::from(self.per_block.max(1))).max(1)
    }
}

/// What is passed for one kernel parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Arg {
    /// The batch size `B` (u32).
    Batch,
    /// The current step `t` (u32; per-step regions only).
    Step,
    /// The device address of a buffer; with `step_row`, plus `t` rows
    /// (a row is the buffer's size divided by `T`).
    Buffer { buffer: usize, step_row: bool },
}

/// One kernel launch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The kernel entry.
    pub kernel: String,
    /// The IR nodes it computes.
    pub nodes: Vec<u32>,
    /// What it does, in words.
    pub what: String,
    /// The launch geometry as a formula, e.g. `threads = B*100 (block
    /// 256)`.
    pub formula: String,
    pub block: [u32; 3],
    pub grid: [GridDim; 3],
    /// The kernel loops over its elements: any grid (x) is correct.
    pub grid_stride: bool,
    /// Dynamic shared memory (the kernels use static shared memory only: 0).
    pub shared_bytes: u32,
    /// One argument per kernel parameter, in order.
    pub args: Vec<Arg>,
}

/// How a region runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// A sequence region: the body once.
    Once,
    /// A step loop run by one kernel with the time loop inside: the body
    /// (one launch) once.
    LoopKernel,
    /// A step loop run step by step: the prologue once, then the body per
    /// step.
    PerStep,
}

/// How one region of the module runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionPlan {
    /// The region's index in the module body.
    pub region: usize,
    pub schedule: Schedule,
    /// A step loop that runs `t = T-1` down to `0`.
    pub reverse: bool,
    pub prologue: Vec<Launch>,
    pub body: Vec<Launch>,
}
