//! `autodiff`: derives the backward pass (reverse-mode, BPTT) of a module as
//! more IR in the same module.
//!
//! **Does.** Given seeds (module outputs whose gradient the caller provides
//! as inputs named `grad.<output>`) and the values to differentiate with
//! respect to (trainable parameters, optionally inputs), appends backward
//! regions after the forward ones and one output `grad.<name>` per
//! parameter or input that receives a gradient:
//!
//! * a forward sequence region gets a backward sequence region that runs its
//!   nodes' adjoint rules in reverse order;
//! * a forward step loop gets a *reverse* step loop (`t = T-1..0`) whose
//!   states are the adjoints of the forward states (`grad.lif1.v`, ...,
//!   starting at 0), preceded by a sequence region that stores the forward
//!   values the backward loop needs and followed by one that gathers what
//!   the loop contributes to values outside it: per-step gradients are
//!   `collect`ed and summed over time (`sum_to`), and the weight gradient of
//!   a matrix product with a loop-invariant weight is one
//!   `matmul_grad_weight` over all `T·B` rows.
//!
//! Gradient formulas are PyTorch's (the order of operations of its autograd
//! formulas), `Threshold` uses the derivative of its surrogate (built from
//! primitive ops, so every backend gets it), `StopGradient`, comparisons
//! and select conditions pass nothing, `reduce_time_max` routes to the
//! first maximal step (`torch.max`). The autapse mask of recurrent weights
//! is a forward `mul` with a constant mask, so its gradient is masked too.
//!
//! **Stores and recomputes.** Inside a step loop the backward loop
//! *recomputes* every elementwise value from stored ones (cheap, and fused
//! with the backward kernel later), and the layout ops `reshape`, `concat`
//! and `narrow` from their operands (storing a concat would store its
//! operands twice), and *stores* the rest: the states at the
//! start of each step (`state_read`, spikes stored as spikes) and the
//! results of non-elementwise ops (matrix products, convolutions, pooling).
//! [`GradReport::stored`] lists what is stored.
//!
//! **Needs.** A valid module that is not fused yet (`fused` kernels drop
//! `stop_gradient`): run it after `time-batch` and before `sparsify` and
//! `fuse`. Backward ops in the input (second derivatives) are not
//! supported.
//!
//! **Preserves.** The forward regions and outputs, unchanged and first; the
//! backward regions follow. A parameter or input with no path to any seed
//! gets no output (its gradient is zero).

mod rules;

use std::collections::BTreeMap;

use snnc_ir::{
    Dtype, Handle, Input, Module, Node, Op, Output, Param, Region, StateInit, StateVar, Type, typing::result_type,
};

use crate::{Pass, PassError, PassReport};

/// What to differentiate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutodiffOptions {
    /// The outputs whose gradient is given; each gets an input
    /// `grad.<output>` of the output's shape (float). Empty: every output.
    pub seeds: Vec<String>,
    /// The inputs to differentiate with respect to (by name), besides the
    /// trainable parameters.
    pub inputs: Vec<String>,
}

/// What the pass did, for reports and the training driver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GradReport {
    /// `(output name, input name)` of each seed: the gradient of output
    /// `output` is read from input `input`.
    pub seeds: Vec<(String, String)>,
    /// `(parameter or input name, output name)` for every gradient output.
    pub gradients: Vec<(String, String)>,
    /// Trainable parameters that get no gradient (no path to a seed).
    pub no_gradient: Vec<String>,
    /// Forward values stored for the backward step loops: `(description,
    /// dtype, elements per sample per step)`.
    pub stored: Vec<(String, Dtype, u64)>,
}

impl GradReport {
    /// Bytes per sample of the stored forward values over `steps` steps,
    /// counting 4 or 8 bytes per float and 1 per spike (a backend may pack
    /// spikes tighter).
    pub fn stored_bytes_per_sample(&self, steps: u32) -> u64 {
        self.stored
            .iter()
            .map(|(_, d, n)| {
                let b = match d {
                    Dtype::F64 => 8,
                    Dtype::F32 => 4,
                    Dtype::Spike => 1,
                };
                b * n * u64::from(steps)
            })
            .sum()
    }
}

/// The name of the input that seeds the gradient of output `name`.
pub fn seed_input_name(output: &str) -> String {
    format!("grad.{output}")
}

/// The name of the output holding the gradient of parameter or input `name`.
pub fn grad_output_name(name: &str) -> String {
    format!("grad.{name}")
}

/// Differentiates `module` in place (see the module docs).
pub fn differentiate(module: &mut Module, options: &AutodiffOptions) -> Result<GradReport, PassError> {
    let unsupported = |message: String| PassError::Unsupported { pass: "autodiff", message };
    // A plastic weight (STDP) changes by its local rule inside the run; a
    // gradient through it would have to differentiate the rule too.
    if let Some((_, s)) = module.states.iter().find(|(_, s)| matches!(s.init, StateInit::Param(_))) {
        let StateInit::Param(p) = s.init else { unreachable!("matched above") };
        return Err(unsupported(format!(
            "parameter `{}` is plastic (state `{}`, updated by its learning rule every step): gradients through a \
             plastic weight are not supported; train the network without `plasticity`, or run it with `snnc run`",
            module.params[p].name, s.name
        )));
    }
    for (h, node) in module.nodes.iter() {
        match node.op {
            Op::Fused(_) | Op::Extract { .. } => {
                return Err(unsupported(format!(
                    "%{} is a `fused` kernel: differentiate before the `fuse` pass (fusion drops `stop_gradient`)",
                    h.index()
                )));
            }
            ref op if rules::is_backward_op(op) => {
                return Err(unsupported(format!(
                    "%{} is already a gradient op (`{}`): second derivatives are not supported",
                    h.index(),
                    op.mnemonic()
                )));
            }
            _ => {}
        }
    }
    let seeds: Vec<String> = if options.seeds.is_empty() {
        module.outputs.iter().map(|o| o.name.clone()).collect()
    } else {
        options.seeds.clone()
    };
    for s in &seeds {
        if !module.outputs.iter().any(|o| &o.name == s) {
            let names: Vec<&str> = module.outputs.iter().map(|o| o.name.as_str()).collect();
            return Err(unsupported(format!("no output `{s}` to seed (outputs: {})", names.join(", "))));
        }
    }
    let mut wrt_inputs = Vec::new();
    for name in &options.inputs {
        match module.input_by_name(name) {
            Some(h) => wrt_inputs.push(h),
            None => {
                let names: Vec<&str> = module.inputs.iter().map(|(_, i)| i.name.as_str()).collect();
                return Err(unsupported(format!("no input `{name}` to differentiate (inputs: {})", names.join(", "))));
            }
        }
    }
    let mut ad = Ad::new(module, &seeds, &wrt_inputs);
    ad.run().map_err(|e| unsupported(e.0))?;
    Ok(ad.report)
}

/// The pass form: seeds every output, differentiates every trainable
/// parameter (`snnc ir --passes ...,autodiff,...`, `snnc compile --backward`).
#[derive(Clone, Debug, Default)]
pub struct Autodiff {
    pub options: AutodiffOptions,
}

impl Pass for Autodiff {
    fn name(&self) -> &'static str {
        "autodiff"
    }

    fn run(&self, module: &mut Module) -> Result<PassReport, PassError> {
        let r = differentiate(module, &self.options)?;
        let mut report = PassReport::default();
        report.note(format!(
            "{} gradient(s): {}",
            r.gradients.len(),
            r.gradients.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", ")
        ));
        if !r.no_gradient.is_empty() {
            report.note(format!("no gradient (no path to a seed): {}", r.no_gradient.join(", ")));
        }
        report.note(format!(
            "stored for the backward loops: {} bytes per sample",
            r.stored_bytes_per_sample(module.steps)
        ));
        Ok(report)
    }
}

/// An error inside the pass, turned into `PassError::Unsupported`.
#[derive(Debug)]
pub(crate) struct AdError(pub String);

impl From<snnc_ir::BuildError> for AdError {
    fn from(e: snnc_ir::BuildError) -> Self {
        AdError(format!("a gradient op did not type-check (a bug in snnc): {}", e.message))
    }
}

type H = Handle<Node>;

/// The state of one differentiation.
pub(crate) struct Ad<'m> {
    pub(crate) m: &'m mut Module,
    /// The number of forward nodes (handles below this are forward nodes).
    n_fwd: usize,
    /// The number of forward regions.
    n_fwd_regions: usize,
    /// Forward region of each forward node.
    region_of: Vec<usize>,
    /// Whether the adjoint of each forward node is needed.
    needed: Vec<bool>,
    /// Contributions to the adjoint of each forward node (handles of
    /// backward nodes; sequence-typed ones from outside a step loop).
    contribs: Vec<Vec<H>>,
    /// The region backward nodes go to now.
    cur: usize,
    /// While differentiating a step loop: its context.
    lp: Option<LoopCtx>,
    /// Existing `collect` of a forward step-loop value, reused for storage.
    collected: BTreeMap<usize, H>,
    /// Memoised transposes of forward weights.
    transposed: BTreeMap<usize, H>,
    seeds: Vec<String>,
    wrt_inputs: Vec<Handle<Input>>,
    pub(crate) report: GradReport,
}

/// The regions and memo tables of the step loop being differentiated.
pub(crate) struct LoopCtx {
    /// The forward loop's region index.
    fwd: usize,
    /// Sequence region before the backward loop: stored forward values.
    store: usize,
    /// Forward node → its value inside the backward loop.
    recomputed: BTreeMap<usize, H>,
    /// Contributions to values outside the loop (or leaves): `(forward
    /// target, per-step gradient)`, gathered in `after`.
    deferred: Vec<(H, H)>,
    /// Weight gradients of matrix products with a loop-invariant weight:
    /// `(weight, per-step output gradient, forward input)`.
    deferred_matmul: Vec<(H, H, H)>,
}

impl<'m> Ad<'m> {
    fn new(m: &'m mut Module, seeds: &[String], wrt_inputs: &[Handle<Input>]) -> Self {
        let n_fwd = m.nodes.len();
        let mut region_of = vec![0; n_fwd];
        for (r, region) in m.body.iter().enumerate() {
            for &h in &region.nodes {
                region_of[h.index()] = r;
            }
        }
        let mut collected = BTreeMap::new();
        for (h, node) in m.nodes.iter() {
            if let Op::Collect(v) = node.op {
                collected.entry(v.index()).or_insert(h);
            }
        }
        let n_fwd_regions = m.body.len();
        Ad {
            m,
            n_fwd,
            n_fwd_regions,
            region_of,
            needed: Vec::new(),
            contribs: vec![Vec::new(); n_fwd],
            cur: 0,
            lp: None,
            collected,
            transposed: BTreeMap::new(),
            seeds: seeds.to_vec(),
            wrt_inputs: wrt_inputs.to_vec(),
            report: GradReport::default(),
        }
    }

    // ---- emission ----

    /// Appends a node to the current backward region.
    pub(crate) fn emit(&mut self, op: Op) -> Result<H, AdError> {
        self.emit_in(self.cur, op)
    }

    pub(crate) fn emit_in(&mut self, region: usize, op: Op) -> Result<H, AdError> {
        let ty = result_type(self.m, &op).map_err(|message| snnc_ir::BuildError { message })?;
        let h = self.m.nodes.append(Node { op, ty, name: None });
        self.m.body[region].nodes.push(h);
        Ok(h)
    }

    pub(crate) fn ty(&self, h: H) -> &Type {
        &self.m.nodes[h].ty
    }

    pub(crate) fn float(&self) -> Dtype {
        self.m.float
    }

    pub(crate) fn constant(&mut self, value: f64) -> Result<H, AdError> {
        let dtype = self.m.float;
        self.emit(Op::Const { value, dtype })
    }

    fn in_loop(&self) -> bool {
        self.lp.is_some()
    }

    // ---- analysis ----

    /// Which forward nodes need an adjoint: those that depend on a value
    /// differentiated against (`active`) and influence a seed (`useful`),
    /// both through differentiable edges and through states.
    fn analyse(&mut self) {
        let n = self.n_fwd;
        let nodes: Vec<Op> = (0..n).map(|i| self.m.nodes[Handle::from_index(i)].op.clone()).collect();
        // The node writing each state (per state handle).
        let mut writer: BTreeMap<usize, usize> = BTreeMap::new();
        let mut readers: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, op) in nodes.iter().enumerate() {
            match *op {
                Op::StateWrite { state, .. } => {
                    writer.insert(state.index(), i);
                }
                Op::StateRead(s) => readers.entry(s.index()).or_default().push(i),
                _ => {}
            }
        }
        let wrt = |op: &Op| match *op {
            Op::Param(p) => self.m.params[p].trainable,
            Op::Input(i) => self.wrt_inputs.contains(&i),
            _ => false,
        };
        let mut active: Vec<bool> = nodes.iter().map(wrt).collect();
        loop {
            let mut changed = false;
            for i in 0..n {
                if active[i] {
                    continue;
                }
                let op = &nodes[i];
                let a = op.operands().iter().enumerate().any(|(k, &o)| active[o.index()] && rules::diff_edge(op, k))
                    || matches!(*op, Op::StateRead(s) if writer.get(&s.index()).is_some_and(|&w| active[w]));
                if a {
                    active[i] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut useful = vec![false; n];
        for o in &self.m.outputs {
            if self.seeds.contains(&o.name) {
                useful[o.value.index()] = true;
            }
        }
        loop {
            let mut changed = false;
            for i in (0..n).rev() {
                if !useful[i] {
                    let via_state = matches!(nodes[i], Op::StateWrite { state, .. }
                        if readers.get(&state.index()).is_some_and(|rs| rs.iter().any(|&r| useful[r])));
                    if !via_state {
                        continue;
                    }
                    useful[i] = true;
                    changed = true;
                }
                for (k, o) in nodes[i].operands().into_iter().enumerate() {
                    if !useful[o.index()] && rules::diff_edge(&nodes[i], k) {
                        useful[o.index()] = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        self.needed = (0..n).map(|i| active[i] && useful[i]).collect();
    }

    pub(crate) fn is_needed(&self, h: H) -> bool {
        h.index() < self.n_fwd && self.needed[h.index()]
    }

    // ---- forward values seen from the backward regions ----

    /// The forward value `h` as an operand usable in the current backward
    /// region.
    pub(crate) fn fv(&mut self, h: H) -> Result<H, AdError> {
        let r = self.region_of[h.index()];
        if !self.m.body[r].is_step() {
            return Ok(h);
        }
        match &self.lp {
            Some(lp) if lp.fwd == r => self.recompute(h),
            _ => self.stored_seq(h),
        }
    }

    /// A sequence holding every step of the forward step-loop value `h`.
    fn stored_seq(&mut self, h: H) -> Result<H, AdError> {
        let store = self.lp.as_ref().map(|lp| lp.store).ok_or_else(|| {
            AdError(format!("forward value %{} of a step loop is needed outside its backward loop", h.index()))
        })?;
        self.stored_seq_at(store, h)
    }

    /// As [`Self::stored_seq`], collecting into region `store` if needed.
    fn stored_seq_at(&mut self, store: usize, h: H) -> Result<H, AdError> {
        if let Some(&c) = self.collected.get(&h.index()) {
            return Ok(c);
        }
        let c = self.emit_in(store, Op::Collect(h))?;
        self.collected.insert(h.index(), c);
        let ty = self.ty(h).clone();
        let what = match &self.m.nodes[h].name {
            Some(n) => n.clone(),
            None => match self.m.nodes[h].op {
                Op::StateRead(s) => format!("${}", self.m.states[s].name),
                ref op => format!("%{} ({})", h.index(), op.mnemonic()),
            },
        };
        self.report.stored.push((what, ty.dtype, ty.shape.fixed_elements()));
        Ok(c)
    }

    /// The value of forward node `h` (of the loop being differentiated)
    /// inside the backward loop: recomputed if elementwise, else stored.
    fn recompute(&mut self, h: H) -> Result<H, AdError> {
        let lp_fwd = self.lp.as_ref().expect("in a loop").fwd;
        if self.region_of[h.index()] != lp_fwd {
            return Ok(h);
        }
        if let Some(&v) = self.lp.as_ref().expect("in a loop").recomputed.get(&h.index()) {
            return Ok(v);
        }
        let op = self.m.nodes[h].op.clone();
        let v = match op {
            Op::StateWrite { value, .. } => self.recompute(value)?,
            Op::Input(_) | Op::Param(_) | Op::Const { .. } | Op::Uniform { .. } | Op::Step(_) => self.emit(op)?,
            // Layout ops are recomputed from their operands too: storing
            // a `concat` would store its operands' values a second time.
            ref op
                if op.is_elementwise() || matches!(op, Op::Reshape { .. } | Op::Concat { .. } | Op::Narrow { .. }) =>
            {
                let mut op = op.clone();
                let mut err = None;
                let operands = op.operands();
                let mut mapped = Vec::with_capacity(operands.len());
                for o in operands {
                    match self.recompute(o) {
                        Ok(v) => mapped.push(v),
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = err {
                    return Err(e);
                }
                let mut it = mapped.into_iter();
                op.map_operands(|_| it.next().expect("one value per operand"));
                self.emit(op)?
            }
            _ => {
                let c = self.stored_seq(h)?;
                self.emit(Op::Step(c))?
            }
        };
        self.lp.as_mut().expect("in a loop").recomputed.insert(h.index(), v);
        Ok(v)
    }

    /// A memoised transpose of the forward weight `w` (defined outside the
    /// current loop, or in the current sequence region).
    pub(crate) fn transpose(&mut self, w: H) -> Result<H, AdError> {
        if let Some(&t) = self.transposed.get(&w.index()) {
            return Ok(t);
        }
        let wf = self.fv(w)?;
        let region = match &self.lp {
            Some(lp) if self.region_of[w.index()] != lp.fwd => lp.store,
            _ => self.cur,
        };
        let t = self.emit_in(region, Op::Transpose(wf))?;
        if region != self.cur {
            self.transposed.insert(w.index(), t);
        }
        Ok(t)
    }

    // ---- adjoints ----

    /// Adds `g` (a backward value of the current region, typed like the
    /// result of the consumer) to the adjoint of forward node `target`.
    /// Broadcast operands get the gradient summed to their shape; inside a
    /// step loop, contributions to values outside the loop are gathered
    /// after it.
    pub(crate) fn contribute(&mut self, target: H, g: H) -> Result<(), AdError> {
        if !self.is_needed(target) {
            return Ok(());
        }
        let leaf = matches!(self.m.nodes[target].op, Op::Param(_) | Op::Input(_));
        if let Some(lp) = &mut self.lp
            && (self.region_of[target.index()] != lp.fwd || leaf)
        {
            lp.deferred.push((target, g));
            return Ok(());
        }
        let (tt, gt) = (self.ty(target).clone(), self.ty(g).clone());
        // A step-loop value gets the whole sequence from a `collect`.
        let from_collect = self.m.body[self.region_of[target.index()]].is_step() && gt.seq && !self.in_loop();
        let g = if tt.shape == gt.shape && (tt.seq == gt.seq || from_collect) {
            g
        } else {
            self.emit(Op::SumTo { arg: g, shape: tt.shape.clone() })?
        };
        self.contribs[target.index()].push(g);
        Ok(())
    }

    /// Records the weight gradient of a per-step `matmul` whose weight is
    /// outside the loop, computed after the loop over all steps at once.
    pub(crate) fn defer_matmul_weight(&mut self, weight: H, gy: H, input: H) -> bool {
        let Some(lp) = &mut self.lp else { return false };
        if self.region_of[weight.index()] == lp.fwd || self.region_of[input.index()] != lp.fwd {
            return false;
        }
        lp.deferred_matmul.push((weight, gy, input));
        true
    }

    /// The adjoint of forward node `h` in the current region: the sum of
    /// its contributions, or `None` if nothing reached it.
    fn adjoint(&mut self, h: H) -> Result<Option<H>, AdError> {
        let cs = std::mem::take(&mut self.contribs[h.index()]);
        let mut acc: Option<H> = None;
        for c in cs {
            let c = if self.in_loop() && self.ty(c).seq { self.emit(Op::Step(c))? } else { c };
            acc = Some(match acc {
                None => c,
                Some(a) => self.emit(Op::Binary { op: snnc_ir::BinaryOp::Add, lhs: a, rhs: c })?,
            });
        }
        Ok(acc)
    }

    // ---- driver ----

    fn run(&mut self) -> Result<(), AdError> {
        self.analyse();
        // Seeds: one input per seeded output, in a first backward region.
        self.m.body.push(Region::seq(Vec::new()));
        self.cur = self.m.body.len() - 1;
        let outputs = self.m.outputs.clone();
        for o in &outputs {
            if !self.seeds.contains(&o.name) || !self.is_needed(o.value) {
                continue;
            }
            let ty = self.ty(o.value).with_dtype(self.float());
            let name = seed_input_name(&o.name);
            let input = self.m.inputs.append(Input { name: name.clone(), ty });
            let h = self.emit(Op::Input(input))?;
            self.contribs[o.value.index()].push(h);
            self.report.seeds.push((o.name.clone(), name));
        }
        for r in (0..self.n_fwd_regions).rev() {
            let nodes = self.m.body[r].nodes.clone();
            if !nodes.iter().any(|&h| self.is_needed(h)) {
                continue;
            }
            if self.m.body[r].is_step() {
                self.loop_backward(r, &nodes)?;
            } else {
                self.m.body.push(Region::seq(Vec::new()));
                self.cur = self.m.body.len() - 1;
                for &h in nodes.iter().rev() {
                    self.node_backward(h)?;
                }
            }
        }
        self.finish()?;
        self.m.body.retain(|r| !r.nodes.is_empty());
        snnc_ir::compact(self.m);
        Ok(())
    }

    /// Applies the adjoint rule of one forward node (not a state read).
    fn node_backward(&mut self, h: H) -> Result<(), AdError> {
        if !self.is_needed(h) || matches!(self.m.nodes[h].op, Op::Param(_) | Op::Input(_)) {
            return Ok(());
        }
        let Some(g) = self.adjoint(h)? else { return Ok(()) };
        rules::backward(self, h, g)
    }

    /// The backward of step loop `r`.
    fn loop_backward(&mut self, r: usize, nodes: &[H]) -> Result<(), AdError> {
        let store = self.m.body.len();
        self.m.body.push(Region::seq(Vec::new()));
        let bwd = self.m.body.len();
        self.m.body.push(Region::step_reverse(Vec::new()));
        let after = self.m.body.len();
        self.m.body.push(Region::seq(Vec::new()));
        self.cur = bwd;
        self.lp = Some(LoopCtx {
            fwd: r,
            store,
            recomputed: BTreeMap::new(),
            deferred: Vec::new(),
            deferred_matmul: Vec::new(),
        });

        // Adjoint states: one per state whose read needs an adjoint. The
        // value read is the gradient flowing into the state's write.
        let mut adj_states: Vec<(Handle<StateVar>, Vec<H>)> = Vec::new();
        for &h in nodes {
            if let Op::StateRead(s) = self.m.nodes[h].op
                && self.is_needed(h)
                && !adj_states.iter().any(|(x, _)| *x == s)
            {
                adj_states.push((s, Vec::new()));
            }
        }
        let mut adj_handles = Vec::new();
        for (s, _) in &adj_states {
            let sv = &self.m.states[*s];
            let name = format!("grad.{}", sv.name);
            let ty = Type::new(self.float(), sv.ty.shape.clone());
            let a = self.m.states.append(StateVar { name, ty, init: StateInit::Fill(0.0) });
            let read = self.emit(Op::StateRead(a))?;
            adj_handles.push(a);
            // The forward write of `s` in this loop gets the adjoint.
            if let Some(&w) =
                nodes.iter().find(|&&w| matches!(self.m.nodes[w].op, Op::StateWrite { state, .. } if state == *s))
                && self.is_needed(w)
            {
                self.contribs[w.index()].push(read);
            }
        }

        for &h in nodes.iter().rev() {
            if let Op::StateRead(s) = self.m.nodes[h].op {
                if self.is_needed(h)
                    && let Some(g) = self.adjoint(h)?
                {
                    let slot = adj_states.iter_mut().find(|(x, _)| *x == s).expect("registered above");
                    slot.1.push(g);
                }
                continue;
            }
            self.node_backward(h)?;
        }
        for ((_, gs), a) in adj_states.into_iter().zip(adj_handles) {
            let mut acc: Option<H> = None;
            for g in gs {
                acc = Some(match acc {
                    None => g,
                    Some(x) => self.emit(Op::Binary { op: snnc_ir::BinaryOp::Add, lhs: x, rhs: g })?,
                });
            }
            let value = match acc {
                Some(v) => v,
                None => {
                    // Nothing flowed into the state this step (only possible
                    // through a zero-gradient path): write zeros.
                    let read = self.m.body[bwd]
                        .nodes
                        .iter()
                        .copied()
                        .find(|&x| matches!(self.m.nodes[x].op, Op::StateRead(s) if s == a))
                        .expect("read at the top of the loop");
                    let zero = self.constant(0.0)?;
                    self.emit(Op::Binary { op: snnc_ir::BinaryOp::Mul, lhs: read, rhs: zero })?
                }
            };
            self.emit(Op::StateWrite { state: a, value })?;
        }

        // After the loop: gather contributions to values outside it.
        let lp = self.lp.take().expect("set above");
        self.cur = after;
        for (w, gy, x) in lp.deferred_matmul {
            let gys = self.emit(Op::Collect(gy))?;
            let xs = self.stored_seq_at(store, x)?;
            let gw = self.emit(Op::MatMulGradWeight { grad: gys, input: xs, kind: snnc_ir::MatMulKind::Dense })?;
            self.contribute(w, gw)?;
        }
        for (target, g) in lp.deferred {
            let c = self.emit(Op::Collect(g))?;
            let tt = self.ty(target).clone();
            let c = if tt.seq { c } else { self.emit(Op::SumTo { arg: c, shape: tt.shape.clone() })? };
            self.contribs[target.index()].push(c);
        }
        Ok(())
    }

    /// The gradient outputs: per parameter (and input), the sum over all
    /// its nodes' adjoints.
    fn finish(&mut self) -> Result<(), AdError> {
        self.m.body.push(Region::seq(Vec::new()));
        self.cur = self.m.body.len() - 1;
        let mut leaves: Vec<(String, bool, Vec<H>)> = Vec::new();
        let params: Vec<(Handle<Param>, Param)> = self.m.params.iter().map(|(h, p)| (h, p.clone())).collect();
        for (ph, p) in &params {
            if !p.trainable {
                continue;
            }
            let nodes: Vec<H> = (0..self.n_fwd)
                .map(Handle::from_index)
                .filter(|&h| matches!(self.m.nodes[h].op, Op::Param(x) if x == *ph))
                .collect();
            leaves.push((p.name.clone(), true, nodes));
        }
        for &ih in &self.wrt_inputs.clone() {
            let nodes: Vec<H> = (0..self.n_fwd)
                .map(Handle::from_index)
                .filter(|&h| matches!(self.m.nodes[h].op, Op::Input(x) if x == ih))
                .collect();
            leaves.push((self.m.inputs[ih].name.clone(), false, nodes));
        }
        for (name, is_param, nodes) in leaves {
            let mut acc: Option<H> = None;
            for h in nodes {
                if let Some(g) = self.adjoint(h)? {
                    acc = Some(match acc {
                        None => g,
                        Some(a) => self.emit(Op::Binary { op: snnc_ir::BinaryOp::Add, lhs: a, rhs: g })?,
                    });
                }
            }
            match acc {
                Some(g) => {
                    let out = grad_output_name(&name);
                    self.m.nodes[g].name.get_or_insert_with(|| out.clone());
                    // An output must be a value of a sequence region.
                    let g = if self.m.body.iter().any(|r| r.is_step() && r.nodes.contains(&g)) {
                        return Err(AdError(format!("the gradient of `{name}` ended in a step loop (a bug in snnc)")));
                    } else {
                        g
                    };
                    self.m.outputs.push(Output { name: out.clone(), value: g });
                    self.report.gradients.push((name, out));
                }
                None if is_param => self.report.no_gradient.push(name),
                None => {}
            }
        }
        Ok(())
    }
}
