//! Step loops run as one JIT call: the time loop inside the kernel, the
//! states in registers (DESIGN.md, "a fused neuron kernel is a step loop a
//! backend runs with its state in registers").
//!
//! A step loop qualifies when it holds only state reads, `step`s,
//! invariant inputs/parameters/constants, one `fused` node, its `extract`s
//! and state writes of its outputs; every kernel input is then a state
//! (read at step 0, then the kernel output written to it), a per-step
//! sequence, a value the size of the kernel's shape that does not change
//! over time, or a scalar. Other step loops run node by node. A reverse
//! loop qualifies the same way: its kernel walks the time rows backwards.

use snnc_ir::{Handle, Module, Node, Op, Region};

use crate::CpuError;
use crate::jit::{JitError, JitStepKernel, KernelCompiler, StepInput};

/// Where a kernel input of a whole-loop kernel comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LoopInput {
    /// State `index`, updated in place.
    State(usize),
    /// The whole value of a node (a sequence, a static value or a scalar).
    Data(Handle<Node>),
}

/// A step loop compiled into whole-loop kernels.
#[derive(Debug)]
pub(crate) struct StepLoop {
    /// The `fused` node.
    pub fused: Handle<Node>,
    pub inputs: Vec<LoopInput>,
    /// Per kernel output: the nodes whose value is that output (the
    /// `fused` node for output 0, its `extract`s, state writes of them).
    pub output_nodes: Vec<Vec<Handle<Node>>>,
    /// Invariant nodes (inputs, parameters, constants) to evaluate first.
    pub invariants: Vec<Handle<Node>>,
    /// The kernel without and with recording of every named value.
    pub kernels: [JitStepKernel; 2],
}

/// What a qualifying step loop's whole-loop kernel is made of.
#[derive(Debug)]
pub(crate) struct Analysis {
    pub fused: Handle<Node>,
    pub inputs: Vec<LoopInput>,
    pub layouts: Vec<StepInput>,
    pub output_nodes: Vec<Vec<Handle<Node>>>,
    pub invariants: Vec<Handle<Node>>,
}

impl Analysis {
    /// Which outputs are written at every step: those collected later,
    /// and with `record` those with a named node.
    pub fn record_flags(&self, module: &Module, collected: &[bool], record: bool) -> Vec<bool> {
        self.output_nodes
            .iter()
            .map(|nodes| nodes.iter().any(|&h| collected[h.index()] || (record && module.nodes[h].name.is_some())))
            .collect()
    }
}

/// All nodes whose per-step values a later `collect` stacks.
pub(crate) fn collected(module: &Module) -> Vec<bool> {
    let mut res = vec![false; module.nodes.len()];
    for (_, node) in module.nodes.iter() {
        if let Op::Collect(x) = node.op {
            res[x.index()] = true;
        }
    }
    res
}

/// Tries to compile `region` (a step loop) as one whole-loop kernel.
/// `collected[i]`: node `i`'s per-step values are collected later.
/// `Ok(None)`: the loop does not qualify (it runs node by node).
pub(crate) fn plan(
    module: &Module,
    region: &Region,
    collected: &[bool],
    compiler: &mut KernelCompiler,
) -> Result<Option<StepLoop>, CpuError> {
    let Some(a) = analyze(module, region, collected) else { return Ok(None) };
    let Op::Fused(kernel) = &module.nodes[a.fused].op else { unreachable!("analyze returns a fused node") };
    let mut compile = |record: bool| match compiler.compile_steps_ordered(
        kernel,
        &a.layouts,
        &a.record_flags(module, collected, record),
        region.reverse,
    ) {
        Ok(k) => Ok(Some(k)),
        Err(JitError::Unsupported(_)) => Ok(None),
        Err(e) => Err(CpuError::Jit(format!("step loop of kernel `{}`: {e}", kernel.name))),
    };
    let (Some(plain), Some(recording)) = (compile(false)?, compile(true)?) else { return Ok(None) };
    Ok(Some(StepLoop {
        fused: a.fused,
        inputs: a.inputs,
        output_nodes: a.output_nodes,
        invariants: a.invariants,
        kernels: [plain, recording],
    }))
}

/// The whole-loop kernel of `region` (which [`plan`] made a [`StepLoop`]),
/// recording what it records when not recording everything, with the
/// outputs that have `bits[j]` written as bits (see
/// [`KernelCompiler::compile_steps_bits`]). `Ok(None)` where the JIT
/// cannot.
pub(crate) fn compile_bits(
    module: &Module,
    region: &Region,
    collected: &[bool],
    compiler: &mut KernelCompiler,
    bits: &[bool],
) -> Result<Option<JitStepKernel>, CpuError> {
    let Some(a) = analyze(module, region, collected) else { return Ok(None) };
    let Op::Fused(kernel) = &module.nodes[a.fused].op else { unreachable!("analyze returns a fused node") };
    let record = a.record_flags(module, collected, false);
    match compiler.compile_steps_bits(kernel, &a.layouts, &record, bits, region.reverse) {
        Ok(k) => Ok(Some(k)),
        Err(JitError::Unsupported(_)) => Ok(None),
        Err(e) => Err(CpuError::Jit(format!("step loop of kernel `{}`: {e}", kernel.name))),
    }
}

/// Whether `region` qualifies as a whole-loop kernel, and how.
pub(crate) fn analyze(module: &Module, region: &Region, collected: &[bool]) -> Option<Analysis> {
    if !region.is_step() {
        return None;
    }
    let in_region = |h: Handle<Node>| region.nodes.contains(&h);
    let mut fused = None;
    let mut invariants = Vec::new();
    for &h in &region.nodes {
        match module.nodes[h].op {
            Op::Fused(_) if fused.is_none() => fused = Some(h),
            Op::StateRead(_) | Op::Step(_) | Op::Extract { .. } | Op::StateWrite { .. } => {}
            Op::Input(_) | Op::Param(_) | Op::Const { .. } => invariants.push(h),
            _ => return None,
        }
    }
    let f = fused?;
    let Op::Fused(kernel) = &module.nodes[f].op else { unreachable!("matched above") };
    let n_out = kernel.outputs.len();
    // Which kernel output each node of the loop is.
    let output_of = |h: Handle<Node>| -> Option<usize> {
        match module.nodes[h].op {
            Op::Fused(_) if h == f => Some(0),
            Op::Extract { kernel, index } if kernel == f => Some(index as usize),
            _ => None,
        }
    };
    let mut output_nodes = vec![Vec::new(); n_out];
    let mut state_output = vec![None; module.states.len()];
    for &h in &region.nodes {
        if let Some(j) = output_of(h) {
            output_nodes[j].push(h);
        }
        if let Op::StateWrite { state, value } = module.nodes[h].op {
            let j = output_of(value)?;
            output_nodes[j].push(h);
            state_output[state.index()] = Some(j);
        }
    }
    // Only the kernel's outputs can be kept over time (a collected state
    // read, say, makes the loop run node by node).
    if region.nodes.iter().any(|&h| collected[h.index()] && !output_nodes.iter().any(|nodes| nodes.contains(&h))) {
        return None;
    }
    let kernel_ty = &module.nodes[f].ty;
    let mut inputs = Vec::new();
    let mut layouts = Vec::new();
    let mut seen_states = Vec::new();
    for &x in &kernel.inputs {
        let node = &module.nodes[x];
        let full = node.ty.shape == kernel_ty.shape;
        let scalar = !node.ty.seq && !node.ty.shape.has_batch() && node.ty.shape.fixed_elements() == 1;
        let (input, layout) = match node.op {
            Op::StateRead(s) if in_region(x) => {
                let j = state_output[s.index()]?;
                if seen_states.contains(&s.index()) || !full {
                    return None;
                }
                seen_states.push(s.index());
                (LoopInput::State(s.index()), StepInput::State { output: j as u32 })
            }
            Op::Step(y) if in_region(x) && full => (LoopInput::Data(y), StepInput::Seq),
            _ if in_region(x) && !invariants.contains(&x) => return None,
            _ if node.ty.seq => return None,
            _ if scalar => (LoopInput::Data(x), StepInput::Scalar),
            _ if full => (LoopInput::Data(x), StepInput::Static),
            _ => return None,
        };
        inputs.push(input);
        layouts.push(layout);
    }
    Some(Analysis { fused: f, inputs, layouts, output_nodes, invariants })
}

/// Whether the loop can run as one kernel under recording: no named node
/// of it other than the kernel's outputs (and state writes of them).
pub(crate) fn records_only_outputs(module: &Module, region: &Region, lp: &StepLoop) -> bool {
    region
        .nodes
        .iter()
        .all(|&h| module.nodes[h].name.is_none() || lp.output_nodes.iter().any(|nodes| nodes.contains(&h)))
}
