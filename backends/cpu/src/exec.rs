//! The executor: runs a validated f32 module on the CPU.
//!
//! [`compile`] looks at the module once: it decides where every node's
//! value lives (its own buffer, or a view of another: `step` is slice `t`
//! of a sequence buffer, `reshape`/`stop_gradient`/`state_write` are their
//! operand, `state_read` is the state buffer, `collect` the per-step
//! history of its operand, `extract` an output of its `fused` node) and
//! prepares a kernel for every `fused` node. [`Executable::run`] checks the
//! weights, inputs and initial states, plans the buffers for the batch
//! size (once per batch size: later runs reuse them), and runs the regions
//! in order.
//!
//! In a step loop, `state_write` writes a next-state buffer and every
//! written state is swapped with its next-state buffer at the end of the
//! step, so a `state_read` keeps the value of the step's start however
//! late it is used.
//!
//! Step loops run in one of three ways: as one whole-loop JIT kernel
//! (`steploop.rs`; its elements split over threads, and a collected output
//! that only event-driven kernels read turned into spike lists as the loop
//! goes instead of being written, see `ListOutput`); split over the batch,
//! every part of the rows running all steps on its own (`exec/rowloop.rs`);
//! or node by node, each node over the whole batch.
//!
//! Event-driven kernels read their spike input through lists of its
//! nonzero entries (`event.rs`): made once per run for a value that does
//! not change during the run (and shared by the kernels that read it),
//! else at every call.

use std::collections::BTreeMap;
use std::sync::Mutex;

use snnc_ir::{
    Dtype, FusedKernel, Handle, KernelInst, MatMulKind, Module, ModuleInfo, Node, Op, RegionKind, StateInit,
};
use snnc_runtime::{ElemType, Tensor, Weights, check_weights};

use crate::jit::{ChunkOut, InputLayout, JitError, JitKernel, KernelCompiler};
use crate::kernels::{self, ConvShape, PoolShape};
use crate::steploop::{self, LoopInput, StepLoop};
use crate::{CpuError, RunOptions, RunResult, check};
use crate::{event, event_conv, stdp};

mod eval;
mod profile;
mod rowloop;
mod size;

pub use eval::eval_kernel_fallback;
pub use size::PlannedBuffer;
use size::zeros;

/// Where a node's value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Src {
    /// The node's own buffer.
    Own(usize),
    /// The per-step history (`T × value`) of a step-loop node.
    Hist(usize),
    /// The current value of a state.
    State(usize),
    /// Output `index` of a `fused` node.
    KernelOut(usize, usize),
    Input(usize),
    Param(usize),
}

/// The key of a spike list in [`Buffers::spikes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SpikeKey {
    /// The lists of a whole value that is fixed for the rest of a run.
    Value(Src),
    /// The lists an event-driven kernel made at its last call.
    Node(usize),
}

/// A node's value: all of `src`, or (`step`) its slice at the current step.
#[derive(Clone, Copy, Debug)]
struct View {
    src: Src,
    step: bool,
}

/// How a `fused` node is evaluated.
#[derive(Debug)]
enum Kernel {
    /// Native code from the Cranelift JIT.
    Jit(JitKernel),
    /// Native code for a kernel some of whose inputs are a fixed suffix of
    /// its output's shape (a per-neuron parameter `[n]` of a `[B, n]`
    /// value, a BatchNorm statistic broadcast to `[C, H, W]`), all of one
    /// size `row`: compiled with those inputs as full ones and run once per
    /// output row of `row` elements, the suffix inputs whole each time.
    JitRows(JitKernel, usize),
    /// [`eval_kernel_fallback`]: the body interpreted over chunks of
    /// elements, in f32 (inputs the JIT's layouts do not cover, such as a
    /// broadcast bias, or `CompileOptions::jit` off).
    Fallback,
}

/// Options of [`compile_with`].
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// Compile `fused` kernels with the Cranelift JIT (default); off, every
    /// kernel runs on [`eval_kernel_fallback`] (the same bits, slower).
    pub jit: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { jit: true }
    }
}

/// The JIT layouts of a `fused` node's inputs: `Full` for an input of the
/// kernel's own type (shape and time flag), `Scalar` for a single value;
/// `None` if an input is neither (a broadcast bias, say).
pub(crate) fn input_layouts(module: &Module, node: Handle<Node>) -> Option<Vec<InputLayout>> {
    let Op::Fused(kernel) = &module.nodes[node].op else { return None };
    let ty = &module.nodes[node].ty;
    kernel
        .inputs
        .iter()
        .map(|&x| {
            let xt = &module.nodes[x].ty;
            if xt.seq == ty.seq && xt.shape == ty.shape {
                Some(InputLayout::Full)
            } else if !xt.seq && !xt.shape.has_batch() && xt.shape.fixed_elements() == 1 {
                Some(InputLayout::Scalar)
            } else {
                None
            }
        })
        .collect()
}

/// For a kernel that [`input_layouts`] cannot lay out: when every input
/// it refuses is a fixed suffix of the output's shape (no time, no batch)
/// and all those have the same element count `row`, the layouts to compile
/// it with per output row (those inputs `Full`) and `row`.
fn suffix_layouts(module: &Module, node: Handle<Node>) -> Option<(Vec<InputLayout>, usize)> {
    let Op::Fused(kernel) = &module.nodes[node].op else { return None };
    let ty = &module.nodes[node].ty;
    let mut row = None;
    let layouts = kernel
        .inputs
        .iter()
        .map(|&x| {
            let xt = &module.nodes[x].ty;
            if xt.seq == ty.seq && xt.shape == ty.shape {
                return Some(InputLayout::Full);
            }
            if xt.seq || xt.shape.has_batch() {
                return None;
            }
            let n = usize::try_from(xt.shape.fixed_elements()).ok()?;
            if n == 1 {
                return Some(InputLayout::Scalar);
            }
            // A suffix of the output's dims.
            let (od, xd) = (&ty.shape.0, &xt.shape.0);
            if xd.len() > od.len() || od[od.len() - xd.len()..] != xd[..] || *row.get_or_insert(n) != n {
                return None;
            }
            Some(InputLayout::Full)
        })
        .collect::<Option<Vec<_>>>()?;
    Some((layouts, row?))
}

/// A module compiled for the CPU: run it with [`Executable::run`].
#[derive(Debug)]
pub struct Executable {
    module: Module,
    region_of: Vec<usize>,
    views: Vec<View>,
    kernels: Vec<Option<Kernel>>,
    /// Per region: the step loop as one whole-loop kernel, where it qualifies.
    step_loops: Vec<Option<StepLoop>>,
    /// Per region: the step loop split over the batch, where it qualifies
    /// (and is not a whole-loop kernel).
    row_loops: Vec<Option<rowloop::RowLoop>>,
    /// Per region: for a whole-loop kernel whose collected outputs only
    /// event-driven kernels read, how it makes their spike lists instead of
    /// histories (see [`list_outputs`]).
    loop_lists: Vec<Option<LoopLists>>,
    /// Buffers planned for the batch size and recording flag of the last
    /// run, reused by the next run with the same ones.
    buffers: Mutex<Option<Buffers>>,
    /// The parameters of the last [`Executable::load_weights`], in the
    /// module's order, for [`Executable::run_f32`].
    loaded: Mutex<Option<Vec<Vec<f32>>>>,
    /// Per state: updated in place by an `stdp_update` (see
    /// [`in_place_updates`]): its `state_write` copies nothing and it is
    /// not swapped at the end of a step.
    in_place: Vec<bool>,
    /// Per state: the `stdp_update` node that updates it in place.
    stdp_of_state: Vec<Option<usize>>,
}

/// A borrowed f32 host value: its full shape (time first for a sequence
/// value, as [`Tensor`]) and its row-major data.
#[derive(Clone, Copy, Debug)]
pub struct F32View<'a> {
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

/// The outputs of [`Executable::run_f32`], borrowed from the executable's
/// buffers (valid until `read` returns).
#[derive(Debug)]
pub struct F32Outputs<'a> {
    exe: &'a Executable,
    b: &'a Buffers,
}

impl F32Outputs<'_> {
    /// The output called `name` (see `Module::outputs`).
    pub fn get(&self, name: &str) -> Option<F32View<'_>> {
        let module = &self.exe.module;
        let o = module.outputs.iter().find(|o| o.name == name)?;
        let i = o.value.index();
        let last = module.steps.saturating_sub(1) as usize;
        Some(F32View { shape: &self.b.dims[i], data: get(self.b, self.exe.views[i], self.b.numel[i], last) })
    }

    /// The output names, in the module's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.exe.module.outputs.iter().map(|o| o.name.as_str())
    }
}

/// Compiles a validated module for the CPU. `info` is the proof of
/// validation [`snnc_ir::validate`] returned for it.
///
/// Fails with [`CpuError::Unsupported`] for valid IR this backend cannot
/// run: an `f64` module (the interpreter runs f64).
pub fn compile(module: &Module, info: &ModuleInfo) -> Result<Executable, CpuError> {
    compile_with(module, info, &CompileOptions::default())
}

/// [`compile`] with options.
pub fn compile_with(module: &Module, info: &ModuleInfo, opts: &CompileOptions) -> Result<Executable, CpuError> {
    if info.region_of.len() != module.nodes.len() || info.state_region.len() != module.states.len() {
        return Err(CpuError::InfoMismatch);
    }
    if module.float != Dtype::F32 {
        return Err(CpuError::Unsupported(format!(
            "{} modules: the cpu backend computes in f32; the interpreter runs f64",
            module.float
        )));
    }
    let mut jit = None;
    let in_place_nodes = stdp::in_place_updates(module, info);
    let mut in_place = vec![false; module.states.len()];
    let mut stdp_of_state = vec![None; module.states.len()];
    let mut views: Vec<View> = Vec::with_capacity(module.nodes.len());
    let mut kernels = Vec::with_capacity(module.nodes.len());
    for (h, node) in module.nodes.iter() {
        let i = h.index();
        let whole = |src| View { src, step: false };
        let view = match node.op {
            Op::Input(x) => whole(Src::Input(x.index())),
            Op::Param(p) => whole(Src::Param(p.index())),
            Op::StateRead(s) => whole(Src::State(s.index())),
            Op::StateWrite { value, .. } => views[value.index()],
            Op::Reshape { arg, .. } | Op::StopGradient(arg) => views[arg.index()],
            Op::Step(x) => {
                let v = views[x.index()];
                if v.step {
                    return Err(CpuError::Unsupported(format!("%{i}: `step` of a per-step value")));
                }
                View { src: v.src, step: true }
            }
            Op::Collect(x) => whole(Src::Hist(x.index())),
            Op::Fused(_) => whole(Src::KernelOut(i, 0)),
            Op::Extract { kernel, index } => whole(Src::KernelOut(kernel.index(), index as usize)),
            Op::StdpUpdate { .. } if let Some(&s) = in_place_nodes.get(&i) => {
                in_place[s] = true;
                stdp_of_state[s] = Some(i);
                whole(Src::State(s))
            }
            _ => whole(Src::Own(i)),
        };
        views.push(view);
        kernels.push(match &node.op {
            Op::Fused(kernel) => Some(match input_layouts(module, h) {
                Some(layouts) if opts.jit => {
                    if jit.is_none() {
                        jit = Some(KernelCompiler::new().map_err(|e| CpuError::Jit(e.to_string()))?);
                    }
                    let compiler = jit.as_mut().expect("created above");
                    match compiler.compile(kernel, &layouts) {
                        Ok(k) => Kernel::Jit(k),
                        Err(JitError::Unsupported(_)) => Kernel::Fallback,
                        Err(e) => return Err(CpuError::Jit(format!("kernel `{}` (%{i}): {e}", kernel.name))),
                    }
                }
                None if opts.jit => match suffix_layouts(module, h) {
                    Some((layouts, row)) => {
                        if jit.is_none() {
                            jit = Some(KernelCompiler::new().map_err(|e| CpuError::Jit(e.to_string()))?);
                        }
                        let compiler = jit.as_mut().expect("created above");
                        match compiler.compile(kernel, &layouts) {
                            Ok(k) => Kernel::JitRows(k, row),
                            Err(JitError::Unsupported(_)) => Kernel::Fallback,
                            Err(e) => {
                                return Err(CpuError::Jit(format!("kernel `{}` (%{i}): {e}", kernel.name)));
                            }
                        }
                    }
                    None => Kernel::Fallback,
                },
                _ => Kernel::Fallback,
            }),
            _ => None,
        });
    }
    let collected = steploop::collected(module);
    let mut step_loops = Vec::with_capacity(module.body.len());
    for region in &module.body {
        let mut lp = None;
        if region.is_step() && opts.jit {
            if jit.is_none() {
                jit = Some(KernelCompiler::new().map_err(|e| CpuError::Jit(e.to_string()))?);
            }
            let compiler = jit.as_mut().expect("created above");
            lp = steploop::plan(module, region, &collected, compiler)?;
        }
        step_loops.push(lp);
    }
    // Planned for whole-loop kernels too: a loop over many elements runs
    // better split over the batch (see `execute_region`).
    let row_loops =
        (0..module.body.len()).map(|r| rowloop::plan(module, r, &info.region_of, &views, &kernels)).collect();
    let mut loop_lists = Vec::with_capacity(module.body.len());
    for (r, lp) in step_loops.iter().enumerate() {
        let Some(outputs) = lp.as_ref().and_then(|lp| list_outputs(module, &info.region_of, &views, r, lp)) else {
            loop_lists.push(None);
            continue;
        };
        // Outputs that are spikes of a `threshold`, in rows of whole blocks
        // of 16, come out of the kernel as bits.
        let fused = step_loops[r].as_ref().expect("a step loop").fused;
        let Op::Fused(k) = &module.nodes[fused].op else { unreachable!("a whole-loop kernel's node is fused") };
        let mut bits = vec![false; k.outputs.len()];
        for l in &outputs {
            bits[l.output] = l.threshold && l.n_in % 16 == 0 && l.per_row % 16 == 0;
        }
        let kernel = match (bits.iter().any(|&b| b), jit.as_mut()) {
            (true, Some(compiler)) => steploop::compile_bits(module, &module.body[r], &collected, compiler, &bits)?,
            _ => None,
        };
        loop_lists.push(Some(LoopLists { outputs, kernel }));
    }
    Ok(Executable {
        module: module.clone(),
        region_of: info.region_of.clone(),
        views,
        kernels,
        step_loops,
        row_loops,
        loop_lists,
        buffers: Mutex::new(None),
        loaded: Mutex::new(None),
        in_place,
        stdp_of_state,
    })
}

/// How a whole-loop kernel makes the spike lists of its [`ListOutput`]s.
#[derive(Debug)]
struct LoopLists {
    /// One per recorded output, in order.
    outputs: Vec<ListOutput>,
    /// The kernel writing some of them as bits, if any (else the loop's
    /// plain kernel writes values).
    kernel: Option<crate::jit::JitStepKernel>,
}

/// A collected output of a whole-loop kernel that only event-driven
/// kernels read: the loop makes its spike lists as it goes (from each
/// chunk of steps, still in cache) and never writes its history.
#[derive(Clone, Copy, Debug)]
struct ListOutput {
    /// The kernel output.
    output: usize,
    /// Whether the output is a `threshold`'s (exactly 0 or 1).
    threshold: bool,
    /// The node whose history the readers view ([`Src::Hist`]).
    node: usize,
    /// The inputs per row of the readers' matrix: a step of the output is
    /// `batch * per_row / n_in` rows.
    n_in: usize,
    per_row: usize,
}

/// The [`ListOutput`]s of the whole-loop kernel `lp` of forward step loop
/// `r`, one per recorded output in order, or `None` unless every output
/// it records (when not recording everything) is one: a single node of
/// the output is collected, and every reader of its history (through
/// `collect`, `reshape`, `stop_gradient` views) is an event-driven
/// product or weight gradient of a sequence region taking it whole as its
/// input, all with
/// the same inputs per row, which divides a step's row. No module output
/// may be such a view. (Those kernels read the input only through its
/// lists, see `event.rs`.)
fn list_outputs(
    module: &Module,
    region_of: &[usize],
    views: &[View],
    r: usize,
    lp: &StepLoop,
) -> Option<Vec<ListOutput>> {
    if module.body[r].reverse {
        return None;
    }
    let collected = steploop::collected(module);
    let per_row = module.nodes[lp.fused].ty.shape.fixed_elements() as usize;
    let Op::Fused(kernel) = &module.nodes[lp.fused].op else { return None };
    let mut res = Vec::new();
    for (j, nodes) in lp.output_nodes.iter().enumerate() {
        let kept: Vec<usize> = nodes.iter().map(|h| h.index()).filter(|&i| collected[i]).collect();
        match kept[..] {
            [] => continue,
            [p] => {
                let hist = Src::Hist(p);
                if module.outputs.iter().any(|o| views[o.value.index()].src == hist) {
                    return None;
                }
                let mut n_in = None;
                for (h, node) in module.nodes.iter() {
                    let reads = node.op.operands().into_iter().any(|x| views[x.index()].src == hist);
                    if !reads {
                        continue;
                    }
                    let seq = !module.body[region_of[h.index()]].is_step();
                    let whole = |x: Handle<Node>| views[x.index()].src == hist && !views[x.index()].step;
                    let n = match node.op {
                        Op::Collect(_) | Op::Reshape { .. } | Op::StopGradient(_) if views[h.index()].src == hist => {
                            continue;
                        }
                        Op::MatMul { input, weight, kind: MatMulKind::EventDriven }
                            if seq && whole(input) && views[weight.index()].src != hist =>
                        {
                            match module.nodes[weight].ty.shape.0.get(1) {
                                Some(snnc_ir::Dim::Fixed(v)) => *v as usize,
                                _ => return None,
                            }
                        }
                        Op::MatMulGradWeight { grad, input, kind: MatMulKind::EventDriven }
                            if seq && whole(input) && views[grad.index()].src != hist =>
                        {
                            match module.nodes[h].ty.shape.0.get(1) {
                                Some(snnc_ir::Dim::Fixed(v)) => *v as usize,
                                _ => return None,
                            }
                        }
                        _ => return None,
                    };
                    if n == 0 || *n_in.get_or_insert(n) != n {
                        return None;
                    }
                }
                let n_in = n_in?;
                if !per_row.is_multiple_of(n_in) {
                    return None;
                }
                let threshold =
                    matches!(kernel.body.get(kernel.outputs[j] as usize), Some(snnc_ir::KernelInst::Threshold { .. }));
                res.push(ListOutput { output: j, threshold, node: p, n_in, per_row });
            }
            _ => return None,
        }
    }
    (!res.is_empty()).then_some(res)
}

/// Dense products with at most this many inputs per sum run the
/// interpreter's loop (the same bits) instead of the GEMM: such short sums
/// gain little from a GEMM, and its summation order would differ from the
/// interpreter's where terms cancel.
const EXACT_MAX_IN: usize = 64;

/// Elements per step from which a step loop that has a whole-loop kernel
/// runs split over the batch instead, where it can (see
/// `execute_region`).
const WHOLE_LOOP_MAX_ELEMENTS: usize = 1 << 16;

/// The most elements one buffer may hold.
const MAX_ELEMENTS: usize = (isize::MAX as usize) / 16;

/// Every buffer of a run, sized for one batch size.
#[derive(Debug, Default)]
struct Buffers {
    batch: usize,
    record: bool,
    /// Every node's full dims (time first for `seq` values).
    dims: Vec<Vec<usize>>,
    numel: Vec<usize>,
    state_numel: Vec<usize>,
    own: Vec<Vec<f32>>,
    hist: Vec<Vec<f32>>,
    keep: Vec<bool>,
    states: Vec<Vec<f32>>,
    next_states: Vec<Vec<f32>>,
    kernel_outs: Vec<Vec<Vec<f32>>>,
    inputs: Vec<Vec<f32>>,
    params: Vec<Vec<f32>>,
    /// Per event-driven product: the transposed weight and its finite
    /// columns.
    transposed: Vec<(Vec<f32>, Vec<bool>)>,
    /// Per event-driven weight gradient: its scratch buffers.
    grad_scratch: Vec<event::GradScratch>,
    /// Per `stdp_update`: what it keeps between steps.
    stdp: Vec<stdp::StdpScratch>,
    /// The spike lists of the inputs of event-driven kernels: per node, or
    /// (`SpikeKey::Value`) shared by every kernel of a run that reads the
    /// same sequence-region value (see [`Executable::spike_rows`]).
    spikes: BTreeMap<SpikeKey, (bool, event::SpikeRows)>,
    /// Whether the step loop being run is at its first iteration (`t = 0`,
    /// or `t = T-1` in a reverse loop).
    first_iteration: bool,
    /// With `SNNC_PROFILE` set: seconds spent per node (a whole-loop
    /// kernel's time goes to its `fused` node), printed after each run.
    profile: Option<Vec<f64>>,
    /// With `SNNC_PROFILE` set: seconds spent per region.
    region_profile: Option<Vec<f64>>,
    /// How each region ran last (for the profile).
    region_how: Vec<&'static str>,
}

impl Executable {
    /// The module this executable runs.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// How the `fused` node `node` is evaluated, for reports: `"jit"` or
    /// `"fallback"`; `None` for other nodes.
    pub fn kernel_kind(&self, node: Handle<Node>) -> Option<&'static str> {
        self.kernels.get(node.index())?.as_ref().map(|k| match k {
            Kernel::Jit(_) => "jit",
            Kernel::JitRows(..) => "jit (per row)",
            Kernel::Fallback => "fallback",
        })
    }

    /// How many step loops run as one whole-loop kernel (the time loop
    /// inside generated code, the states in registers).
    pub fn whole_loop_count(&self) -> usize {
        self.step_loops.iter().flatten().count()
    }

    /// Runs the module. Checks the weights (exactly the module's
    /// parameters with their shapes), the inputs (every input, no other
    /// name, each with its full shape, one batch size) and the initial
    /// states before anything runs, with the interpreter's rules.
    pub fn run(
        &self,
        weights: &Weights,
        inputs: &BTreeMap<String, Tensor>,
        opts: &RunOptions,
    ) -> Result<RunResult, CpuError> {
        let module = &self.module;
        let t_in = std::time::Instant::now();
        check_weights(module, weights).map_err(|e| CpuError::Input(e.to_string()))?;
        let batch = check::inputs(module, inputs)?;
        let batch = check::states(module, &opts.initial_state, batch)?;
        self.execute_with(
            batch,
            opts,
            t_in,
            |bufs| {
                for (h, input) in module.inputs.iter() {
                    fill_f32(&mut bufs.inputs[h.index()], &inputs[&input.name].data);
                }
                for (h, p) in module.params.iter() {
                    fill_f32(&mut bufs.params[h.index()], &weights[&p.name].data);
                }
            },
            |bufs| self.results(bufs, opts.skip_final_state),
        )
    }

    /// Checks the weights and keeps them, converted to f32, for
    /// [`Executable::run_f32`] (until the next call).
    pub fn load_weights(&self, weights: &Weights) -> Result<(), CpuError> {
        check_weights(&self.module, weights).map_err(|e| CpuError::Input(e.to_string()))?;
        let params = self.module.params.iter().map(|(_, p)| weights[&p.name].data.iter().map(|&x| x as f32).collect());
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = Some(params.collect());
        Ok(())
    }

    /// Runs the module on f32 inputs with the weights of the last
    /// [`Executable::load_weights`], from the states' initial values, and
    /// hands the outputs to `read` as borrowed f32 slices: nothing is
    /// converted to or from f64 host tensors, for callers that keep their
    /// data in f32 (the benchmarks, time-critical loops). Inputs are
    /// checked as in [`Executable::run`].
    pub fn run_f32<R>(
        &self,
        inputs: &BTreeMap<String, F32View<'_>>,
        read: impl FnOnce(&F32Outputs<'_>) -> R,
    ) -> Result<R, CpuError> {
        let module = &self.module;
        let t_in = std::time::Instant::now();
        for (name, v) in inputs {
            let n: Option<usize> = v.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if n != Some(v.data.len()) {
                return Err(CpuError::Input(format!(
                    "input `{name}` has shape {:?} but {} values",
                    v.shape,
                    v.data.len()
                )));
            }
        }
        let batch = check::input_shapes(module, &inputs.iter().map(|(k, v)| (k.clone(), v.shape)).collect())?;
        let batch = batch.unwrap_or(1);
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let Some(params) = loaded.as_ref() else {
            return Err(CpuError::Input("no weights loaded: call `load_weights` before `run_f32`".into()));
        };
        self.execute_with(
            batch,
            &RunOptions::default(),
            t_in,
            |bufs| {
                for (h, input) in module.inputs.iter() {
                    bufs.inputs[h.index()].copy_from_slice(inputs[&input.name].data);
                }
                for (buf, p) in bufs.params.iter_mut().zip(params) {
                    buf.copy_from_slice(p);
                }
            },
            |bufs| read(&F32Outputs { exe: self, b: bufs }),
        )
    }

    /// Plans (or reuses) the buffers for `batch`, lets `fill` set the
    /// inputs and parameters, sets the initial states, runs the regions and
    /// returns what `finish` makes of the buffers (timing it for the
    /// profile).
    fn execute_with<R>(
        &self,
        batch: usize,
        opts: &RunOptions,
        t_in: std::time::Instant,
        fill: impl FnOnce(&mut Buffers),
        finish: impl FnOnce(&Buffers) -> R,
    ) -> Result<R, CpuError> {
        let module = &self.module;
        let mut guard = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        let reuse = guard.as_ref().is_some_and(|b| b.batch == batch && b.record == opts.record);
        if !reuse {
            *guard = None;
            *guard = Some(self.plan(batch, opts.record)?);
        }
        let bufs = guard.as_mut().expect("planned above");
        fill(bufs);
        for (h, s) in module.states.iter() {
            let buf = &mut bufs.states[h.index()];
            // A plastic weight (`StateInit::Param`) starts at the weights
            // `fill` set.
            match opts.initial_state.get(&s.name) {
                Some(t) => fill_f32(buf, &t.data),
                None => match &s.init {
                    StateInit::Fill(x) => buf.fill(*x as f32),
                    StateInit::Values(v) => {
                        for (k, e) in buf.iter_mut().enumerate() {
                            *e = v[k % v.len()] as f32;
                        }
                    }
                    // A plastic weight starts at the weights given.
                    StateInit::Param(p) => buf.copy_from_slice(&bufs.params[p.index()]),
                },
            }
        }
        // Spike lists of the last run are stale.
        for (valid, _) in bufs.spikes.values_mut() {
            *valid = false;
        }
        let start = std::time::Instant::now();
        let prepare = (start - t_in).as_secs_f64();
        crate::pool::install(|| self.execute(bufs));
        let total = start.elapsed().as_secs_f64();
        let t1 = std::time::Instant::now();
        let res = finish(bufs);
        if let (Some(prof), Some(regions)) = (&mut bufs.profile, &mut bufs.region_profile) {
            let elapsed = t1.elapsed().as_secs_f64();
            self.print_profile(prof, regions, &bufs.region_how, &bufs.stdp, prepare, total, elapsed);
            prof.fill(0.0);
            regions.fill(0.0);
        }
        Ok(res)
    }

    /// Sizes every buffer for `batch`.
    fn plan(&self, batch: usize, record: bool) -> Result<Buffers, CpuError> {
        let module = &self.module;
        let steps = module.steps as usize;
        let fits = |dims: &[usize]| {
            dims.iter()
                .filter(|&&d| d != 0)
                .try_fold(steps.max(1), |acc, &d| acc.checked_mul(d))
                .is_some_and(|n| n <= MAX_ELEMENTS)
        };
        let mut b = Buffers { batch, record, ..Default::default() };
        for (h, node) in module.nodes.iter() {
            let mut d = Vec::with_capacity(node.ty.shape.rank() + 1);
            if node.ty.seq {
                d.push(steps);
            }
            d.extend(node.ty.shape.resolve(batch));
            if !fits(&d) {
                let what = snnc_ir::layer::describe_value(module, h);
                return Err(CpuError::TooLarge(format!("{what} at batch size {batch}")));
            }
            b.numel.push(d.iter().product());
            b.dims.push(d);
        }
        for (_, s) in module.states.iter() {
            let d = s.ty.shape.resolve(batch);
            if !fits(&d) {
                return Err(CpuError::TooLarge(format!("state `{}` at batch size {batch}", s.name)));
            }
            b.state_numel.push(d.iter().product());
        }
        let n_nodes = module.nodes.len();
        b.keep = self.module.kept_per_step(record);
        // Every large buffer is allocated fallibly (see `exec/size.rs`).
        let value = |i: usize| format!("the value of %{i} ({})", module.nodes[Handle::from_index(i)].ty);
        b.own = (0..n_nodes)
            .map(|i| if self.views[i].src == Src::Own(i) { zeros(b.numel[i], || value(i)) } else { Ok(Vec::new()) })
            .collect::<Result<_, _>>()?;
        b.hist = (0..n_nodes)
            .map(|i| if b.keep[i] { zeros(steps * b.numel[i], || value(i)) } else { Ok(Vec::new()) })
            .collect::<Result<_, _>>()?;
        let state = |(h, s): (Handle<snnc_ir::StateVar>, &snnc_ir::StateVar)| {
            zeros(b.state_numel[h.index()], || format!("state `{}`", s.name))
        };
        b.states = module.states.iter().map(state).collect::<Result<_, _>>()?;
        b.next_states = module.states.iter().map(state).collect::<Result<_, _>>()?;
        b.kernel_outs = module
            .nodes
            .iter()
            .map(|(h, node)| match &node.op {
                Op::Fused(k) => (0..k.outputs.len()).map(|_| zeros(b.numel[h.index()], || value(h.index()))).collect(),
                _ => Ok(Vec::new()),
            })
            .collect::<Result<_, _>>()?;
        b.inputs = module
            .inputs
            .iter()
            .map(|(_, i)| {
                let per_step: usize = i.ty.shape.resolve(batch).iter().product();
                zeros(if i.ty.seq { steps * per_step } else { per_step }, || format!("input `{}`", i.name))
            })
            .collect::<Result<_, _>>()?;
        b.params = module
            .params
            .iter()
            .map(|(_, p)| zeros(p.shape.resolve(1).iter().product(), || format!("parameter `{}`", p.name)))
            .collect::<Result<_, _>>()?;
        b.transposed = vec![(Vec::new(), Vec::new()); n_nodes];
        b.grad_scratch = (0..n_nodes).map(|_| event::GradScratch::default()).collect();
        b.stdp = (0..n_nodes).map(|_| stdp::StdpScratch::default()).collect();
        b.profile = std::env::var_os("SNNC_PROFILE").map(|_| vec![0.0; n_nodes]);
        b.region_profile = b.profile.as_ref().map(|_| vec![0.0; module.body.len()]);
        b.region_how = vec!["node by node"; module.body.len()];
        Ok(b)
    }

    /// Runs the regions in order.
    fn execute(&self, b: &mut Buffers) {
        let module = &self.module;
        let steps = module.steps as usize;
        for (r, region) in module.body.iter().enumerate() {
            let t_region = b.profile.is_some().then(std::time::Instant::now);
            self.execute_region(b, r, region, steps);
            if let (Some(t0), Some(times)) = (t_region, &mut b.region_profile) {
                times[r] += t0.elapsed().as_secs_f64();
            }
        }
    }

    /// Runs region `r`.
    fn execute_region(&self, b: &mut Buffers, r: usize, region: &snnc_ir::Region, steps: usize) {
        let module = &self.module;
        {
            // A whole-loop kernel walks all `T` steps of a block of
            // elements, reading rows `4n` bytes apart that the hardware
            // prefetchers do not follow; with many elements per step the
            // loop split over the batch (one call per step on a part's
            // rows, the same bits) streams instead.
            let wide = |lp: &StepLoop| b.numel[lp.fused.index()] >= WHOLE_LOOP_MAX_ELEMENTS;
            let by_rows = self.row_loops[r].is_some() && self.loop_lists[r].is_none() && !b.record;
            if let Some(lp) = &self.step_loops[r]
                && (!b.record || steploop::records_only_outputs(module, region, lp))
                && !(by_rows && wide(lp) && self.row_parts(b, self.row_loops[r].as_ref().expect("checked")) > 1)
            {
                b.region_how[r] = "whole-loop kernel";
                let t0 = b.profile.is_some().then(std::time::Instant::now);
                match &self.loop_lists[r] {
                    Some(lists) if !b.record => self.run_step_loop_lists(b, lp, lists),
                    _ => self.run_step_loop(b, lp),
                }
                if let (Some(p), Some(t0)) = (&mut b.profile, t0) {
                    p[lp.fused.index()] += t0.elapsed().as_secs_f64();
                }
                return;
            }
            if let Some(lp) = &self.row_loops[r] {
                let parts = self.row_parts(b, lp);
                if parts > 1 {
                    b.region_how[r] = "split over the batch";
                    self.run_row_loop(b, r, lp, parts);
                    return;
                }
            }
            match region.kind {
                RegionKind::Seq => {
                    for &h in &region.nodes {
                        let t0 = b.profile.is_some().then(std::time::Instant::now);
                        self.eval(b, h, None);
                        if let (Some(p), Some(t0)) = (&mut b.profile, t0) {
                            p[h.index()] += t0.elapsed().as_secs_f64();
                        }
                    }
                }
                RegionKind::Step => {
                    let mut written = Vec::new();
                    for &h in &region.nodes {
                        if let Op::StateWrite { state, .. } = module.nodes[h].op
                            && !self.in_place[state.index()]
                        {
                            written.push(state.index());
                        }
                    }
                    // A reverse loop runs t = T-1 down to 0; `t` stays the
                    // time index (of `step`, histories and `uniform`).
                    for iter in 0..steps {
                        let t = if region.reverse { steps - 1 - iter } else { iter };
                        b.first_iteration = iter == 0;
                        for &h in &region.nodes {
                            let i = h.index();
                            let invariant =
                                matches!(module.nodes[h].op, Op::Input(_) | Op::Param(_) | Op::Const { .. });
                            if iter == 0 || !invariant {
                                let t0 = b.profile.is_some().then(std::time::Instant::now);
                                self.eval(b, h, Some(t));
                                if let (Some(p), Some(t0)) = (&mut b.profile, t0) {
                                    p[i] += t0.elapsed().as_secs_f64();
                                }
                            }
                            if b.keep[i] {
                                let n = b.numel[i];
                                let mut hist = std::mem::take(&mut b.hist[i]);
                                hist[t * n..(t + 1) * n].copy_from_slice(get(b, self.views[i], n, t));
                                b.hist[i] = hist;
                            }
                        }
                        for &s in &written {
                            let (cur, next) = (&mut b.states, &mut b.next_states);
                            std::mem::swap(&mut cur[s], &mut next[s]);
                        }
                    }
                }
            }
        }
    }

    /// Runs a step loop as one whole-loop kernel call.
    fn run_step_loop(&self, b: &mut Buffers, lp: &StepLoop) {
        let steps = self.module.steps as usize;
        for &h in &lp.invariants {
            self.eval(b, h, Some(0));
        }
        let n = b.numel[lp.fused.index()];
        // Each recorded output is written into the history of its first kept node.
        let primary: Vec<Option<usize>> =
            lp.output_nodes.iter().map(|nodes| nodes.iter().map(|h| h.index()).find(|&i| b.keep[i])).collect();
        let mut states: Vec<(usize, Vec<f32>)> = lp
            .inputs
            .iter()
            .filter_map(|i| match *i {
                LoopInput::State(s) => Some((s, std::mem::take(&mut b.states[s]))),
                LoopInput::Data(_) => None,
            })
            .collect();
        let mut hists: Vec<(usize, Vec<f32>)> =
            primary.iter().flatten().map(|&i| (i, std::mem::take(&mut b.hist[i]))).collect();
        {
            let ins: Vec<&[f32]> = lp
                .inputs
                .iter()
                .filter_map(|i| match *i {
                    LoopInput::Data(x) => Some(self.val(b, x, 0)),
                    LoopInput::State(_) => None,
                })
                .collect();
            let mut st: Vec<&mut [f32]> = states.iter_mut().map(|(_, v)| v.as_mut_slice()).collect();
            let mut outs: Vec<&mut [f32]> = hists.iter_mut().map(|(_, v)| v.as_mut_slice()).collect();
            // Elements are independent: split them over threads (a few
            // operations per element, step and stream).
            let streams = lp.inputs.len() + outs.len();
            let ns = n.saturating_mul(steps).saturating_mul(streams) / crate::pool::ELEMENTS_PER_NS;
            let parts = crate::pool::parts(n / 16, ns);
            lp.kernels[usize::from(b.record)]
                .run_parts(&ins, &mut st, &mut outs, n, steps, parts)
                .expect("whole-loop kernel buffers have the sizes the kernel was compiled for");
        }
        for (s, v) in states {
            b.states[s] = v;
        }
        for (i, v) in hists {
            b.hist[i] = v;
        }
        // Other kept nodes of the same output get a copy.
        for (nodes, p) in lp.output_nodes.iter().zip(&primary) {
            let Some(p) = *p else { continue };
            for h in nodes {
                let i = h.index();
                if i != p && b.keep[i] {
                    let src = std::mem::take(&mut b.hist[p]);
                    b.hist[i].copy_from_slice(&src);
                    b.hist[p] = src;
                }
            }
        }
    }

    /// Runs a step loop as a whole-loop kernel whose recorded outputs are
    /// all [`ListOutput`]s: over parts of whole rows of the readers'
    /// matrices, each in chunks of steps whose outputs (in a buffer of the
    /// part's own, in cache) are turned into spike lists right away. The
    /// lists become the run's lists of the histories (which are not
    /// written), for the readers to find.
    fn run_step_loop_lists(&self, b: &mut Buffers, lp: &StepLoop, loop_lists: &LoopLists) {
        let lists = &loop_lists.outputs[..];
        let steps = self.module.steps as usize;
        for &h in &lp.invariants {
            self.eval(b, h, Some(0));
        }
        let n = b.numel[lp.fused.index()];
        if n == 0 || steps == 0 {
            // Nothing to list: the histories (empty) are the readers'.
            return self.run_step_loop(b, lp);
        }
        let rows_per_step = lists.iter().map(|l| n / l.n_in).collect::<Vec<_>>();
        // Parts of whole rows of every list (a multiple of each `n_in`):
        // whole batch rows, `per_row` elements each.
        let per_row = lists[0].per_row;
        let batch = n / per_row.max(1);
        let streams = lp.inputs.len() + lists.len();
        let ns = n.saturating_mul(steps).saturating_mul(streams) / crate::pool::ELEMENTS_PER_NS;
        // At least 4 parts per thread, so that a part's states and outputs
        // of a chunk of steps stay in its core's cache.
        let n_parts = crate::pool::parts(batch, ns).max((4 * crate::pool::threads()).min(batch)).max(1);
        let per = batch.div_ceil(n_parts);
        let count_max = per * per_row;
        // Steps per chunk: about 256 KiB of outputs per part (4 bytes an
        // element and step, or 1/8 written as bits).
        let kernel = loop_lists.kernel.as_ref().unwrap_or(&lp.kernels[0]);
        let eighths: usize = lists.iter().map(|l| if kernel.writes_bits(l.output) { 1 } else { 32 }).sum();
        let chunk = ((256 << 13) / (count_max * eighths).max(1)).clamp(1, steps.max(1));
        let mut spikes: Vec<(event::SpikeRows, Vec<event::SpikeRowsPart>)> = lists
            .iter()
            .map(|l| {
                let key = SpikeKey::Value(Src::Hist(l.node));
                let mut rows = b.spikes.remove(&key).map(|(_, s)| s).unwrap_or_default();
                let parts = rows.take_parts(batch.div_ceil(per));
                (rows, parts)
            })
            .collect();
        let mut states: Vec<(usize, Vec<f32>)> = lp
            .inputs
            .iter()
            .filter_map(|i| match *i {
                LoopInput::State(s) => Some((s, std::mem::take(&mut b.states[s]))),
                LoopInput::Data(_) => None,
            })
            .collect();
        {
            let ins: Vec<&[f32]> = lp
                .inputs
                .iter()
                .filter_map(|i| match *i {
                    LoopInput::Data(x) => Some(self.val(b, x, 0)),
                    LoopInput::State(_) => None,
                })
                .collect();
            let mut st: Vec<&mut [f32]> = states.iter_mut().map(|(_, v)| v.as_mut_slice()).collect();
            // Per part: its element range and its part of every list.
            let mut part_lists: Vec<Vec<event::SpikeRowsPart>> = (0..batch.div_ceil(per)).map(|_| Vec::new()).collect();
            for (_, parts) in &mut spikes {
                for (p, part) in parts.drain(..).enumerate() {
                    part_lists[p].push(part);
                }
            }
            // Per part: its elements, and its first element with its lists.
            type Part = ((usize, usize), (usize, Vec<event::SpikeRowsPart>));
            let parts: Vec<Part> = part_lists
                .into_iter()
                .enumerate()
                .map(|(p, l)| {
                    let b0 = p * per;
                    let b1 = (b0 + per).min(batch);
                    ((b0 * per_row, (b1 - b0) * per_row), (b0 * per_row, l))
                })
                .collect();
            let done = std::sync::Mutex::new(Vec::new());
            kernel
                .run_chunked(&ins, &mut st, n, steps, parts, chunk, |(start, part), t0, t1, outs| {
                    for ((l, list), out) in lists.iter().zip(part.iter_mut()).zip(outs) {
                        for t in t0..t1 {
                            let first = t * (n / l.n_in) + *start / l.n_in;
                            match *out {
                                ChunkOut::Values(v) => {
                                    let count = v.len() / (t1 - t0);
                                    let step = &v[(t - t0) * count..(t - t0 + 1) * count];
                                    for (q, x) in step.chunks_exact(l.n_in).enumerate() {
                                        list.push_row(first + q, x);
                                    }
                                }
                                ChunkOut::Bits(w) => {
                                    let count = w.len() / (t1 - t0);
                                    let step = &w[(t - t0) * count..(t - t0 + 1) * count];
                                    for (q, x) in step.chunks_exact(l.n_in / 16).enumerate() {
                                        list.push_row_bits(first + q, x);
                                    }
                                }
                            }
                        }
                    }
                    if t1 == steps {
                        done.lock().unwrap_or_else(|e| e.into_inner()).push((*start, std::mem::take(part)));
                    }
                })
                .expect("whole-loop kernel buffers have the sizes the kernel was compiled for");
            // Back in part order (the lists do not depend on it).
            let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
            done.sort_by_key(|(start, _)| *start);
            for (_, lists_of_part) in done {
                for ((_, parts), part) in spikes.iter_mut().zip(lists_of_part) {
                    parts.push(part);
                }
            }
        }
        for (s, v) in states {
            b.states[s] = v;
        }
        for ((l, (mut rows, parts)), &rps) in lists.iter().zip(spikes).zip(&rows_per_step) {
            rows.finish(steps * rps, l.n_in, parts);
            b.spikes.insert(SpikeKey::Value(Src::Hist(l.node)), (true, rows));
        }
    }

    /// The value of operand `h` at step `t` (0 outside step loops).
    fn val<'a>(&self, b: &'a Buffers, h: Handle<Node>, t: usize) -> &'a [f32] {
        get(b, self.views[h.index()], b.numel[h.index()], t)
    }

    /// The spike lists of operand `input` (`rows × n_in`) of the
    /// event-driven kernel `node` at step `t`, taken out of the cache (the
    /// caller puts them back under the returned key). A value read whole in
    /// a sequence region does not change for the rest of the run once
    /// computed, so its lists are made once per run and shared by every
    /// kernel reading it (the product and its weight gradient); others are
    /// made at every call into the node's own entry.
    fn spike_rows(
        &self,
        b: &mut Buffers,
        node: usize,
        input: Handle<Node>,
        t: Option<usize>,
        n_in: usize,
    ) -> (SpikeKey, event::SpikeRows) {
        let view = self.views[input.index()];
        let stable = t.is_none() && !view.step && !matches!(view.src, Src::State(_));
        let key = if stable { SpikeKey::Value(view.src) } else { SpikeKey::Node(node) };
        let (valid, mut spikes) = b.spikes.remove(&key).unwrap_or_default();
        let x = self.val(b, input, t.unwrap_or(0));
        let rows = x.len().checked_div(n_in).unwrap_or(0);
        if !(stable && valid && spikes.fits(rows, n_in)) {
            spikes.build(x, n_in);
        }
        (key, spikes)
    }

    /// Outputs, traces and final states as host tensors.
    fn results(&self, b: &Buffers, skip_final_state: bool) -> RunResult {
        let module = &self.module;
        // f32 values are exact in f64: no rounding pass is needed.
        let tensor = |dims: &[usize], data: &[f32]| Tensor {
            shape: dims.to_vec(),
            dtype: ElemType::F32,
            data: data.iter().map(|&x| f64::from(x)).collect(),
        };
        let value = |h: Handle<Node>| {
            let i = h.index();
            tensor(&b.dims[i], get(b, self.views[i], b.numel[i], module.steps.saturating_sub(1) as usize))
        };
        let outputs = module.outputs.iter().map(|o| (o.name.clone(), value(o.value))).collect();
        let mut traces = BTreeMap::new();
        if b.record {
            for (h, node) in module.nodes.iter() {
                let Some(name) = &node.name else { continue };
                let i = h.index();
                let t = if b.keep[i] {
                    let mut dims = vec![module.steps as usize];
                    dims.extend_from_slice(&b.dims[i]);
                    tensor(&dims, &b.hist[i])
                } else {
                    value(h)
                };
                traces.insert(name.clone(), t);
            }
        }
        let final_state = module
            .states
            .iter()
            .filter(|_| !skip_final_state)
            .map(|(h, s)| {
                let dims = s.ty.shape.resolve(b.batch);
                (s.name.clone(), tensor(&dims, &b.states[h.index()]))
            })
            .collect();
        RunResult { outputs, traces, final_state }
    }
}

/// Rounds host values into an f32 buffer of the same length.
fn fill_f32(buf: &mut [f32], data: &[f64]) {
    for (o, &x) in buf.iter_mut().zip(data) {
        *o = x as f32;
    }
}

/// The slice a view shows at step `t`; `len` is the viewing node's size.
fn get(b: &Buffers, v: View, len: usize, t: usize) -> &[f32] {
    let buf: &[f32] = match v.src {
        Src::Own(i) => &b.own[i],
        Src::Hist(i) => &b.hist[i],
        Src::State(s) => &b.states[s],
        Src::KernelOut(k, o) => &b.kernel_outs[k][o],
        Src::Input(i) => &b.inputs[i],
        Src::Param(p) => &b.params[p],
    };
    if v.step { &buf[t * len..(t + 1) * len] } else { buf }
}
