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

use std::collections::BTreeMap;
use std::sync::Mutex;

use snnc_ir::{
    Dtype, FusedKernel, Handle, KernelInst, MatMulKind, Module, ModuleInfo, Node, Op, RegionKind, StateInit,
};
use snnc_runtime::{ElemType, Tensor, Weights, check_weights};

use crate::jit::{InputLayout, JitError, JitKernel, KernelCompiler};
use crate::kernels::{self, ConvShape};
use crate::steploop::{self, LoopInput, StepLoop};
use crate::{CpuError, RunOptions, RunResult, check};

/// Where a node's value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// A module compiled for the CPU: run it with [`Executable::run`].
#[derive(Debug)]
pub struct Executable {
    module: Module,
    region_of: Vec<usize>,
    views: Vec<View>,
    kernels: Vec<Option<Kernel>>,
    /// Per region: the step loop as one whole-loop kernel, where it qualifies.
    step_loops: Vec<Option<StepLoop>>,
    /// Buffers planned for the batch size and recording flag of the last
    /// run, reused by the next run with the same ones.
    buffers: Mutex<Option<Buffers>>,
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
    Ok(Executable {
        module: module.clone(),
        region_of: info.region_of.clone(),
        views,
        kernels,
        step_loops,
        buffers: Mutex::new(None),
    })
}

/// Dense products with at most this many inputs per sum run the
/// interpreter's loop (the same bits) instead of the GEMM: such short sums
/// gain little from a GEMM, and its summation order would differ from the
/// interpreter's where terms cancel.
const EXACT_MAX_IN: usize = 64;

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
    /// columns (per event-driven weight gradient: its transposed result).
    transposed: Vec<(Vec<f32>, Vec<bool>)>,
    /// Whether the step loop being run is at its first iteration (`t = 0`,
    /// or `t = T-1` in a reverse loop).
    first_iteration: bool,
    /// With `SNNC_PROFILE` set: seconds spent per node (a whole-loop
    /// kernel's time goes to its `fused` node), printed after each run.
    profile: Option<Vec<f64>>,
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
        check_weights(module, weights).map_err(|e| CpuError::Input(e.to_string()))?;
        let batch = check::inputs(module, inputs)?;
        let batch = check::states(module, &opts.initial_state, batch)?;
        let mut guard = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        let reuse = guard.as_ref().is_some_and(|b| b.batch == batch && b.record == opts.record);
        if !reuse {
            *guard = None;
            *guard = Some(self.plan(batch, opts.record)?);
        }
        let bufs = guard.as_mut().expect("planned above");
        for (h, input) in module.inputs.iter() {
            fill_f32(&mut bufs.inputs[h.index()], &inputs[&input.name].data);
        }
        for (h, p) in module.params.iter() {
            fill_f32(&mut bufs.params[h.index()], &weights[&p.name].data);
        }
        for (h, s) in module.states.iter() {
            let buf = &mut bufs.states[h.index()];
            match opts.initial_state.get(&s.name) {
                Some(t) => fill_f32(buf, &t.data),
                None => match s.init {
                    StateInit::Fill(x) => buf.fill(x as f32),
                },
            }
        }
        let start = std::time::Instant::now();
        self.execute(bufs);
        let total = start.elapsed().as_secs_f64();
        let t1 = std::time::Instant::now();
        let res = self.results(bufs);
        if let Some(prof) = &mut bufs.profile {
            self.print_profile(prof, total, t1.elapsed().as_secs_f64());
            prof.fill(0.0);
        }
        Ok(res)
    }

    /// Prints the nodes that took the most time (`SNNC_PROFILE=1`).
    fn print_profile(&self, prof: &[f64], total: f64, results: f64) {
        let mut rows: Vec<(usize, f64)> = prof.iter().copied().enumerate().filter(|&(_, t)| t > 0.0).collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        eprintln!("snnc profile: {:.3} ms in the regions, {:.3} ms converting results", total * 1e3, results * 1e3);
        for (i, t) in rows.into_iter().take(16) {
            let node = &self.module.nodes[Handle::from_index(i)];
            let name = node.name.as_deref().unwrap_or("");
            eprintln!(
                "  {:>8.3} ms {:>5.1}%  %{i} {} {} {name}",
                t * 1e3,
                100.0 * t / total.max(1e-12),
                node.op.mnemonic(),
                node.ty
            );
        }
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
                return Err(CpuError::TooLarge(format!("the value of %{} ({})", h.index(), node.ty)));
            }
            b.numel.push(d.iter().product());
            b.dims.push(d);
        }
        for (_, s) in module.states.iter() {
            let d = s.ty.shape.resolve(batch);
            if !fits(&d) {
                return Err(CpuError::TooLarge(format!("state `{}`", s.name)));
            }
            b.state_numel.push(d.iter().product());
        }
        let n_nodes = module.nodes.len();
        b.keep = vec![false; n_nodes];
        for region in &module.body {
            for &h in &region.nodes {
                match module.nodes[h].op {
                    Op::Collect(x) => b.keep[x.index()] = true,
                    _ if record && region.is_step() && module.nodes[h].name.is_some() => b.keep[h.index()] = true,
                    _ => {}
                }
            }
        }
        b.own = (0..n_nodes)
            .map(|i| if self.views[i].src == Src::Own(i) { vec![0.0; b.numel[i]] } else { Vec::new() })
            .collect();
        b.hist = (0..n_nodes).map(|i| if b.keep[i] { vec![0.0; steps * b.numel[i]] } else { Vec::new() }).collect();
        b.states = b.state_numel.iter().map(|&n| vec![0.0; n]).collect();
        b.next_states = b.states.clone();
        b.kernel_outs = module
            .nodes
            .iter()
            .map(|(h, node)| match &node.op {
                Op::Fused(k) => vec![vec![0.0; b.numel[h.index()]]; k.outputs.len()],
                _ => Vec::new(),
            })
            .collect();
        b.inputs = module
            .inputs
            .iter()
            .map(|(_, i)| {
                let per_step: usize = i.ty.shape.resolve(batch).iter().product();
                vec![0.0; if i.ty.seq { steps * per_step } else { per_step }]
            })
            .collect();
        b.params = module.params.iter().map(|(_, p)| vec![0.0; p.shape.resolve(1).iter().product()]).collect();
        b.transposed = vec![(Vec::new(), Vec::new()); n_nodes];
        b.profile = std::env::var_os("SNNC_PROFILE").map(|_| vec![0.0; n_nodes]);
        Ok(b)
    }

    /// Runs the regions in order.
    fn execute(&self, b: &mut Buffers) {
        let module = &self.module;
        let steps = module.steps as usize;
        for (r, region) in module.body.iter().enumerate() {
            if let Some(lp) = &self.step_loops[r]
                && (!b.record || steploop::records_only_outputs(module, region, lp))
            {
                let t0 = b.profile.is_some().then(std::time::Instant::now);
                self.run_step_loop(b, lp);
                if let (Some(p), Some(t0)) = (&mut b.profile, t0) {
                    p[lp.fused.index()] += t0.elapsed().as_secs_f64();
                }
                continue;
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
                        if let Op::StateWrite { state, .. } = module.nodes[h].op {
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
            lp.kernels[usize::from(b.record)]
                .run(&ins, &mut st, &mut outs, n, steps)
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

    /// The value of operand `h` at step `t` (0 outside step loops).
    fn val<'a>(&self, b: &'a Buffers, h: Handle<Node>, t: usize) -> &'a [f32] {
        get(b, self.views[h.index()], b.numel[h.index()], t)
    }

    /// Computes node `h`; `t` is the step in a step loop.
    fn eval(&self, b: &mut Buffers, h: Handle<Node>, t: Option<usize>) {
        let module = &self.module;
        let i = h.index();
        let node = &module.nodes[h];
        let step = t.unwrap_or(0);
        match node.op {
            // Views of other buffers: nothing to compute.
            Op::Input(_)
            | Op::Param(_)
            | Op::StateRead(_)
            | Op::Step(_)
            | Op::Collect(_)
            | Op::Reshape { .. }
            | Op::StopGradient(_)
            | Op::Extract { .. } => return,
            Op::StateWrite { state, value } => {
                let s = state.index();
                let mut next = std::mem::take(&mut b.next_states[s]);
                next.copy_from_slice(self.val(b, value, step));
                b.next_states[s] = next;
                return;
            }
            Op::Fused(ref kernel) => {
                let mut outs = std::mem::take(&mut b.kernel_outs[i]);
                {
                    let ins: Vec<&[f32]> = kernel.inputs.iter().map(|&x| self.val(b, x, step)).collect();
                    let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
                    match &self.kernels[i] {
                        Some(Kernel::Jit(k)) => run_jit(k, &ins, &mut out_refs),
                        Some(Kernel::Fallback) | None => eval_kernel_fallback(kernel, &ins, &mut out_refs),
                    }
                }
                b.kernel_outs[i] = outs;
                return;
            }
            _ => {}
        }
        let mut out = std::mem::take(&mut b.own[i]);
        let dims = &b.dims[i];
        match node.op {
            Op::Const { value, .. } => out.fill(value as f32),
            Op::Unary { op, arg } => kernels::unary(op, self.val(b, arg, step), &mut out),
            Op::Binary { op, lhs, rhs } => {
                kernels::zip2(self.val(b, lhs, step), self.val(b, rhs, step), &mut out, kernels::binary_fn(op))
            }
            Op::Compare { op, lhs, rhs } => {
                kernels::zip2(self.val(b, lhs, step), self.val(b, rhs, step), &mut out, kernels::compare_fn(op))
            }
            Op::Select { cond, on_true, on_false } => kernels::select(
                self.val(b, cond, step),
                self.val(b, on_true, step),
                self.val(b, on_false, step),
                &mut out,
            ),
            Op::Threshold { arg, .. } => kernels::threshold(self.val(b, arg, step), &mut out),
            // Every cast is the identity in an f32 run: spikes are 0/1 floats.
            Op::Cast { arg, .. } => out.copy_from_slice(self.val(b, arg, step)),
            Op::MatMul { input, weight, kind } => {
                let wd = &b.dims[weight.index()];
                let (n_out, n_in) = (wd[0], wd[1]);
                let (mut wt, mut finite) = std::mem::take(&mut b.transposed[i]);
                let x = self.val(b, input, step);
                let w = self.val(b, weight, step);
                if kind == MatMulKind::Dense && n_in > EXACT_MAX_IN {
                    kernels::matmul_dense(x, w, n_in, n_out, &mut out);
                } else {
                    // The event-driven product, and short dense sums: the
                    // interpreter's loop over the transposed weight (the
                    // same bits). The transposed weight is made once per
                    // run when the weight is defined outside this step loop
                    // (or is a parameter), else at every step.
                    let outside = self.region_of[weight.index()] != self.region_of[i]
                        || matches!(module.nodes[weight].op, Op::Param(_) | Op::Input(_) | Op::Const { .. });
                    if t.is_none() || b.first_iteration || !outside {
                        kernels::transpose(w, n_in, n_out, &mut wt, &mut finite);
                    }
                    kernels::matmul_event(x, &wt, &finite, n_in, n_out, &mut out);
                }
                b.transposed[i] = (wt, finite);
            }
            Op::Conv2d { input, weight, bias, stride, padding } => {
                let (xd, wd) = (&b.dims[input.index()], &b.dims[weight.index()]);
                let r = xd.len();
                let s = ConvShape {
                    n: xd[..r - 3].iter().product(),
                    c: xd[r - 3],
                    h: xd[r - 2],
                    w: xd[r - 1],
                    o: wd[0],
                    kh: wd[2],
                    kw: wd[3],
                    oh: dims[dims.len() - 2],
                    ow: dims[dims.len() - 1],
                    stride: stride.map(|v| v as usize),
                    padding: padding.map(|v| v as usize),
                };
                let bias = bias.map(|x| self.val(b, x, step));
                kernels::conv2d(self.val(b, input, step), self.val(b, weight, step), bias, s, &mut out);
            }
            Op::Pool2d { input, kernel, stride, .. } => {
                let xd = &b.dims[input.index()];
                let r = xd.len();
                kernels::max_pool2d(
                    self.val(b, input, step),
                    [xd[r - 2], xd[r - 1]],
                    kernel.map(|v| v as usize),
                    stride.map(|v| v as usize),
                    [dims[dims.len() - 2], dims[dims.len() - 1]],
                    &mut out,
                );
            }
            Op::ReduceTime { op, arg } => {
                kernels::reduce_time(op, self.val(b, arg, step), module.steps as usize, &mut out)
            }
            Op::LogSoftmax { arg } => {
                kernels::log_softmax(self.val(b, arg, step), dims.last().copied().unwrap_or(1), &mut out)
            }
            Op::Transpose(x) => {
                let xd = &b.dims[x.index()];
                kernels::transpose_matrix(self.val(b, x, step), xd[0], xd[1], &mut out);
            }
            Op::MatMulGradWeight { grad, input, kind } => {
                let (n_out, n_in) = (dims[0], dims[1]);
                match kind {
                    MatMulKind::Dense => {
                        let (g, x) = (self.val(b, grad, step), self.val(b, input, step));
                        kernels::matmul_grad_weight_dense(g, x, n_in, n_out, &mut out)
                    }
                    MatMulKind::EventDriven => {
                        let (mut dwt, finite) = std::mem::take(&mut b.transposed[i]);
                        let (g, x) = (self.val(b, grad, step), self.val(b, input, step));
                        kernels::matmul_grad_weight_event(g, x, n_in, n_out, &mut dwt, &mut out);
                        b.transposed[i] = (dwt, finite);
                    }
                }
            }
            Op::SumTo { arg, .. } => kernels::sum_rows(self.val(b, arg, step), &mut out),
            Op::Conv2dGradInput { grad, weight, stride, padding, .. } => {
                let s = conv_shape(&b.dims[grad.index()], dims, &b.dims[weight.index()], stride, padding);
                kernels::conv2d_grad_input(self.val(b, grad, step), self.val(b, weight, step), s, &mut out);
            }
            Op::Conv2dGradWeight { grad, input, stride, padding, .. } => {
                let s = conv_shape(&b.dims[grad.index()], &b.dims[input.index()], dims, stride, padding);
                kernels::conv2d_grad_weight(self.val(b, grad, step), self.val(b, input, step), s, &mut out);
            }
            Op::Conv2dGradBias { grad } => {
                let gd = &b.dims[grad.index()];
                let r = gd.len();
                let n = gd[..r - 3].iter().product();
                kernels::conv2d_grad_bias(self.val(b, grad, step), n, gd[r - 2] * gd[r - 1], &mut out);
            }
            Op::Pool2dGrad { input, grad, kernel, stride, .. } => {
                let (xd, gd) = (&b.dims[input.index()], &b.dims[grad.index()]);
                let r = xd.len();
                kernels::max_pool2d_grad(
                    self.val(b, input, step),
                    self.val(b, grad, step),
                    [xd[r - 2], xd[r - 1]],
                    kernel.map(|v| v as usize),
                    stride.map(|v| v as usize),
                    [gd[r - 2], gd[r - 1]],
                    &mut out,
                );
            }
            Op::ReduceTimeGrad { op, arg, grad } => kernels::reduce_time_grad(
                op,
                self.val(b, arg, step),
                self.val(b, grad, step),
                module.steps as usize,
                &mut out,
            ),
            Op::LogSoftmaxGrad { out: y, grad } => kernels::log_softmax_grad(
                self.val(b, y, step),
                self.val(b, grad, step),
                dims.last().copied().unwrap_or(1),
                &mut out,
            ),
            Op::Uniform { seed, seq, .. } => {
                let rng = |t: usize, k: usize| snnc_ir::rng::uniform(seed, t as u32, k as u64) as f32;
                if seq {
                    let per_step = out.len() / (module.steps as usize).max(1);
                    for (k, o) in out.iter_mut().enumerate() {
                        *o = rng(k / per_step.max(1), k % per_step.max(1));
                    }
                } else {
                    for (k, o) in out.iter_mut().enumerate() {
                        *o = rng(step, k);
                    }
                }
            }
            Op::Input(_)
            | Op::Param(_)
            | Op::StateRead(_)
            | Op::StateWrite { .. }
            | Op::Step(_)
            | Op::Collect(_)
            | Op::Reshape { .. }
            | Op::StopGradient(_)
            | Op::Fused(_)
            | Op::Extract { .. } => unreachable!("handled above"),
        }
        b.own[i] = out;
    }

    /// Outputs, traces and final states as host tensors.
    fn results(&self, b: &Buffers) -> RunResult {
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
            .map(|(h, s)| {
                let dims = s.ty.shape.resolve(b.batch);
                (s.name.clone(), tensor(&dims, &b.states[h.index()]))
            })
            .collect();
        RunResult { outputs, traces, final_state }
    }
}

/// The geometry of a convolution from the dims of its gradient (`[.., O,
/// H', W']`), its input (`[.., C, H, W]`) and its weight (`[O, C, kh, kw]`).
fn conv_shape(gd: &[usize], xd: &[usize], wd: &[usize], stride: [u32; 2], padding: [u32; 2]) -> ConvShape {
    let (r, rx) = (gd.len(), xd.len());
    ConvShape {
        n: gd[..r - 3].iter().product(),
        c: xd[rx - 3],
        h: xd[rx - 2],
        w: xd[rx - 1],
        o: gd[r - 3],
        kh: wd[2],
        kw: wd[3],
        oh: gd[r - 2],
        ow: gd[r - 1],
        stride: stride.map(|v| v as usize),
        padding: padding.map(|v| v as usize),
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

/// Runs a JIT kernel, its elements split over threads when there are many.
/// The layouts were checked at compile time and the buffers have the
/// node's sizes, so `run` cannot fail on length checks.
fn run_jit(k: &JitKernel, ins: &[&[f32]], outs: &mut [&mut [f32]]) {
    let n = outs.first().map_or(0, |o| o.len());
    let n_threads = kernels::threads();
    let expect = "kernel buffers have the sizes the kernel was compiled for";
    if n_threads <= 1 || n < (1 << 15) {
        k.run(ins, outs).expect(expect);
        return;
    }
    let per = n.div_ceil(n_threads).div_ceil(64) * 64;
    let mut parts: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(per)).map(|_| Vec::new()).collect();
    for o in outs.iter_mut() {
        for (j, c) in o.chunks_mut(per).enumerate() {
            parts[j].push(c);
        }
    }
    std::thread::scope(|s| {
        for (j, mut part) in parts.into_iter().enumerate() {
            s.spawn(move || {
                let start = j * per;
                let len = part.first().map_or(0, |p| p.len());
                let part_ins: Vec<&[f32]> = k
                    .layouts()
                    .iter()
                    .zip(ins)
                    .map(|(l, x)| match l {
                        InputLayout::Full => &x[start..start + len],
                        InputLayout::Scalar => *x,
                    })
                    .collect();
                k.run(&part_ins, &mut part).expect(expect);
            });
        }
    });
}

/// Elements per chunk of [`eval_kernel_fallback`].
const CHUNK: usize = 256;

/// Evaluates a `fused` kernel in plain Rust, in f32: `inputs[i]` is input
/// `i`'s value (suffix-broadcast: element `e` reads `inputs[i][e % len]`),
/// `outs[k]` receives output `k` (all outputs have the same length, the
/// kernel's element count).
///
/// The body runs instruction by instruction over chunks of elements, each
/// instruction with the arithmetic of its IR op, so every element gets the
/// interpreter's operations in its order: the same bits. Chunks are split
/// over threads for big kernels.
pub fn eval_kernel_fallback(kernel: &FusedKernel, inputs: &[&[f32]], outs: &mut [&mut [f32]]) {
    let Some(n) = outs.first().map(|o| o.len()) else { return };
    let work = n.saturating_mul(kernel.body.len());
    if kernels::threads() <= 1 || work < (1 << 17) || n < 2 * CHUNK {
        eval_range(kernel, inputs, 0, n, outs);
        return;
    }
    // Split the element range over threads: each thread writes its own
    // disjoint part of every output.
    let n_threads = kernels::threads();
    let per = n.div_ceil(n_threads).div_ceil(CHUNK) * CHUNK;
    let mut parts: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(per)).map(|_| Vec::new()).collect();
    for o in outs.iter_mut() {
        for (j, c) in o.chunks_mut(per).enumerate() {
            parts[j].push(c);
        }
    }
    std::thread::scope(|s| {
        for (j, mut part) in parts.into_iter().enumerate() {
            s.spawn(move || {
                let start = j * per;
                let len = part.first().map_or(0, |p| p.len());
                eval_range(kernel, inputs, start, len, &mut part);
            });
        }
    });
}

/// Evaluates elements `start..start + len` of a kernel into `outs`
/// (each `len` long).
fn eval_range(kernel: &FusedKernel, inputs: &[&[f32]], start: usize, len: usize, outs: &mut [&mut [f32]]) {
    let mut regs = vec![0.0f32; kernel.body.len() * CHUNK];
    let mut base = 0;
    while base < len {
        let m = CHUNK.min(len - base);
        let e0 = start + base;
        for (j, inst) in kernel.body.iter().enumerate() {
            let (done, rest) = regs.split_at_mut(j * CHUNK);
            let r = &mut rest[..m];
            let reg = |a: u32| &done[a as usize * CHUNK..a as usize * CHUNK + m];
            match *inst {
                KernelInst::Input(x) => {
                    let src = inputs[x as usize];
                    if src.is_empty() {
                        r.fill(f32::NAN);
                    } else if src.len() >= e0 + m {
                        // Inside the first period of a broadcast input (or a
                        // full-length one), `(e0 + k) % len` is `e0 + k`.
                        r.copy_from_slice(&src[e0..e0 + m]);
                    } else {
                        for (k, v) in r.iter_mut().enumerate() {
                            *v = src[(e0 + k) % src.len()];
                        }
                    }
                }
                KernelInst::Const { value, .. } => r.fill(value as f32),
                KernelInst::Unary { op, arg } => {
                    let f = kernels::unary_fn(op);
                    for (v, &a) in r.iter_mut().zip(reg(arg)) {
                        *v = f(a);
                    }
                }
                KernelInst::Binary { op, lhs, rhs } => {
                    let f = kernels::binary_fn(op);
                    for ((v, &a), &c) in r.iter_mut().zip(reg(lhs)).zip(reg(rhs)) {
                        *v = f(a, c);
                    }
                }
                KernelInst::Compare { op, lhs, rhs } => {
                    let f = kernels::compare_fn(op);
                    for ((v, &a), &c) in r.iter_mut().zip(reg(lhs)).zip(reg(rhs)) {
                        *v = f(a, c);
                    }
                }
                KernelInst::Select { cond, on_true, on_false } => {
                    for (((v, &c), &a), &f) in r.iter_mut().zip(reg(cond)).zip(reg(on_true)).zip(reg(on_false)) {
                        *v = if c != 0.0 { a } else { f };
                    }
                }
                KernelInst::Threshold { arg, .. } => {
                    for (v, &a) in r.iter_mut().zip(reg(arg)) {
                        *v = if a > 0.0 { 1.0 } else { 0.0 };
                    }
                }
                // Casts are the identity in f32 (spikes are 0/1 floats).
                KernelInst::StopGradient(arg) | KernelInst::Cast { arg, .. } => r.copy_from_slice(reg(arg)),
            }
        }
        for (out, &o) in outs.iter_mut().zip(&kernel.outputs) {
            out[base..base + m].copy_from_slice(&regs[o as usize * CHUNK..o as usize * CHUNK + m]);
        }
        base += m;
    }
}
