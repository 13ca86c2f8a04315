//! `time-batch`: the layer-major schedule.
//!
//! **What it does.** The frontend puts every layer in one step loop. This
//! pass moves the feed-forward work out of it: a layer whose input does not
//! depend on its own state (a `Linear`'s matrix product, a convolution, a
//! pooling, and the elementwise ops attached to them such as bias adds,
//! `Scale`, `ReLU`, `Flatten`) is computed once over all `T` steps in a
//! sequence region, `[T·B, in] × [in, out]` instead of `T` products of
//! `[B, in] × [in, out]`. Recurrent work stays step by step. The single step
//! loop becomes alternating regions: step loops (one per group of neuron
//! populations that are not separated by batched work; for a stack of
//! layers, one per population) and sequence regions holding the batched
//! work, connected by `collect` (per-step values stacked to `[T, ...]`) and
//! `step` (the slice of the current step).
//!
//! **How.** For each step loop:
//! 1. *Loop-invariant code motion:* nodes that compute the same value at
//!    every step (constants, parameters and pure ops of them; with a
//!    `Direct` encoder, the first layer's product of the static image) and
//!    that no `collect` reads (directly or through a `reshape` or
//!    `stop_gradient` view) move to the sequence region before the loop
//!    (the preamble). A named one is then recorded once (`[B, ...]`), not
//!    per step; its gradient is summed over the steps before it flows on
//!    (one convolution weight gradient instead of `T`). A collected
//!    `channel_sum` (a BatchNorm statistic of a loop-invariant value, such
//!    as the first convolution of a `Direct` encoder's image) moves too:
//!    its `collect` becomes `channel_sum_per_step` of the hoisted operand,
//!    the same statistic at every step.
//! 2. *Recurrences:* the dependency graph of the loop's nodes gets a back
//!    edge from each `state_write` to the reads of its state (and one from
//!    each read to the write, so that a state's reads and write stay in one
//!    loop). Nodes in a strongly connected component with a state stay per
//!    step: they depend on their own past.
//! 3. *What pays:* every other `matmul`, `conv2d` and pooling is
//!    batched, together with all its non-recurrent ancestors in the loop (an
//!    encoder without feedback, a `reshape`, the `step` of the input, which
//!    simply becomes the input sequence) and every non-recurrent node whose
//!    in-loop operands are all batched (bias adds, `Scale`, `ReLU`, the next
//!    layer's product). Other non-recurrent nodes stay per step: moving a
//!    lone elementwise op would cost a `collect` and a `step` and save
//!    nothing. A batched `channel_sum` (a per-step BatchNorm statistic of a
//!    batched value) becomes `channel_sum_per_step`, `[T, C]`, and the
//!    `channel_broadcast` of it repeats each step's row: the normalisation
//!    of every step is then whole-sequence elementwise work.
//! 4. *Schedule:* the components, in topological order, get stages
//!    `0, 1, 2, ...`: even stages are sequence regions, odd ones step loops.
//!    A component goes to the earliest stage of its kind after its operands
//!    (the same stage for operands of its kind). A non-recurrent per-step
//!    node is then sunk into the loop of its first consumer, so that a
//!    `step` of the input is read where it is used.
//! 5. *Emission:* each stage becomes a region (empty ones are left out),
//!    its nodes in their original order; an operand from another region
//!    arrives through `collect` (placed in the sequence region right after
//!    its loop, shared by all consumers) and `step` (placed in the consumer's
//!    loop). A batched node's type gains the time dimension (`f32[T,B,16]`);
//!    a batched `uniform` draws its sequence. A batched node the IR cannot
//!    type over whole sequences (e.g. a comparison of a sequence with a
//!    static batched value, which does not broadcast; a `channel_sum` of a
//!    loop-invariant value) stays per step, and the pass plans the loop
//!    again.
//! 6. Later `collect`s of a batched value become the value itself.
//!
//! Which layers were batched, and why others were not, is written to the
//! pass report; the decisions are visible in the IR as regions and `seq`
//! types.
//!
//! **Needs.** A valid module.
//!
//! **Preserves.** Every value, bit for bit: the interpreter sums a matrix
//! product's rows in the same order whether it runs one step or all `T`
//! at once, elementwise ops are per element either way, and
//! `uniform(seed, t, k)` is the same draw in a sequence as at step `t`,
//! and `channel_sum_per_step` sums each step in the order of one step.
//! Every name stays on the node that computes the value (a batched node
//! records its `[T, ...]` value, as the per-step one did); outputs,
//! states, parameters and the `unroll` attribute of each loop (copied to
//! the loops split from it). The module is compacted at the end; the result
//! is deterministic, and running the pass twice changes nothing more.

use std::collections::{HashMap, HashSet};

use snnc_ir::{Handle, Module, Node, Op, Region, RegionKind, Type};

use crate::util;
use crate::{Pass, PassError, PassReport};

/// The time-batching pass (`time-batch`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TimeBatch;

impl Pass for TimeBatch {
    fn name(&self) -> &'static str {
        "time-batch"
    }

    fn run(&self, module: &mut Module) -> Result<PassReport, PassError> {
        if module.body.iter().any(|r| r.reverse) {
            // A backward pass is already there: its loops were built for
            // the batched forward, so the module stays as it is.
            let mut report = PassReport::default();
            report.note("left the module unchanged: it has backward (reverse) loops; run time-batch before autodiff");
            return Ok(report);
        }
        let mut pinned: HashMap<Handle<Node>, String> = HashMap::new();
        loop {
            match Rebuild::run(module, &pinned) {
                Ok((mut new, report)) => {
                    snnc_ir::compact(&mut new);
                    *module = new;
                    return Ok(report);
                }
                Err(Failure::Retry(h, why)) if !pinned.contains_key(&h) => {
                    pinned.insert(h, why);
                }
                Err(Failure::Retry(h, why)) | Err(Failure::GiveUp(h, why)) => {
                    // Cannot happen on a valid module; leave it as it was.
                    let mut report = PassReport::default();
                    report.note(format!("left the module unchanged: %{} cannot be placed ({why})", h.index()));
                    return Ok(report);
                }
            }
        }
    }
}

/// Why a rebuild stopped.
enum Failure {
    /// A batched node does not type over whole sequences: keep it per step
    /// and plan again.
    Retry(Handle<Node>, String),
    /// A node could not be re-emitted at all.
    GiveUp(Handle<Node>, String),
}

/// Ops that read or change the time-stepped state, or depend on the step.
fn time_dependent(op: &Op) -> bool {
    matches!(op, Op::StateRead(_) | Op::StateWrite { .. } | Op::Step(_) | Op::Uniform { .. } | Op::Collect(_))
}

/// Ops that must stay in their loop as they are: state ops, and fused
/// kernels with their `extract`s (which must share a region).
fn stays(op: &Op) -> bool {
    matches!(op, Op::StateRead(_) | Op::StateWrite { .. } | Op::Fused(_) | Op::Extract { .. })
}

/// Ops that pay for being batched.
fn anchor(op: &Op) -> bool {
    matches!(op, Op::MatMul { .. } | Op::Conv2d { .. } | Op::Pool2d { .. })
}

/// The plan for one step loop, indexed by position in the loop.
struct Plan {
    hoist: Vec<bool>,
    batched: Vec<bool>,
    /// The stage of every node not hoisted (even: sequence, odd: step).
    stage: Vec<u32>,
    /// Anchors that stay per step because they are recurrent.
    recurrent_anchors: Vec<usize>,
}

fn plan_loop(
    module: &Module,
    nodes: &[Handle<Node>],
    pinned: &HashMap<Handle<Node>, String>,
    collected: &HashSet<Handle<Node>>,
) -> Plan {
    let len = nodes.len();
    let pos: HashMap<Handle<Node>, usize> = nodes.iter().enumerate().map(|(i, &h)| (h, i)).collect();
    let op = |p: usize| &module.nodes[nodes[p]].op;
    let in_loop = |p: usize| -> Vec<usize> { op(p).operands().iter().filter_map(|a| pos.get(a).copied()).collect() };

    // 1. Loop invariants.
    let mut hoist = vec![false; len];
    for p in 0..len {
        let node = &module.nodes[nodes[p]];
        // Named nodes too (a `Direct` encoder's first layer reads only the
        // static image): their recorded trace is then one value, not `T`.
        hoist[p] = !time_dependent(&node.op)
            && !stays(&node.op)
            && !pinned.contains_key(&nodes[p])
            && (!collected.contains(&nodes[p]) || matches!(node.op, Op::ChannelSum { per_step: false, .. }))
            && in_loop(p).iter().all(|&q| hoist[q]);
    }

    // 2. The dependency graph of the rest, with the state edges.
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); len];
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); len];
    for p in (0..len).filter(|&p| !hoist[p]) {
        for q in in_loop(p) {
            if !hoist[q] {
                succ[q].push(p);
                preds[p].push(q);
            }
        }
    }
    let mut reads: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut writes: HashMap<usize, usize> = HashMap::new();
    for p in 0..len {
        match *op(p) {
            Op::StateRead(s) => reads.entry(s.index()).or_default().push(p),
            Op::StateWrite { state, .. } => {
                writes.insert(state.index(), p);
            }
            _ => {}
        }
    }
    let mut state_states: Vec<_> = writes.iter().map(|(&s, &w)| (s, w)).collect();
    state_states.sort_unstable();
    for (s, w) in state_states {
        for &r in reads.get(&s).map(Vec::as_slice).unwrap_or(&[]) {
            succ[w].push(r);
            succ[r].push(w);
        }
    }
    let (comp, comps) = tarjan(&succ, &hoist);
    let comp_size: Vec<usize> = comps.iter().map(Vec::len).collect();

    // 3. What stays per step, and what is batched.
    let fixed: Vec<bool> = (0..len)
        .map(|p| {
            let node = &module.nodes[nodes[p]];
            !hoist[p]
                && (comp_size[comp[p]] > 1
                    || stays(&node.op)
                    // A per-step maximum: over the batch of one step,
                    // never over time.
                    || matches!(node.op, Op::MaxAll(_))
                    || pinned.contains_key(&nodes[p])
                    || (matches!(node.op, Op::Step(_)) && node.name.is_some()))
        })
        .collect();
    let mut batched = vec![false; len];
    let mut work: Vec<usize> = (0..len).filter(|&p| !hoist[p] && !fixed[p] && anchor(op(p))).collect();
    let recurrent_anchors: Vec<usize> = (0..len).filter(|&p| fixed[p] && anchor(op(p))).collect();
    for &p in &work {
        batched[p] = true;
    }
    while let Some(p) = work.pop() {
        for &q in &preds[p] {
            if !fixed[q] && !batched[q] {
                batched[q] = true;
                work.push(q);
            }
        }
    }
    for p in 0..len {
        if !hoist[p] && !fixed[p] && !batched[p] && !preds[p].is_empty() && preds[p].iter().all(|&q| batched[q]) {
            batched[p] = true;
        }
    }

    // 4. Stages: components in topological order (Tarjan lists them in
    // reverse), as early as their operands allow.
    let seq_comp: Vec<bool> = comps.iter().map(|c| c.iter().all(|&p| batched[p])).collect();
    let mut comp_stage = vec![0u32; comps.len()];
    for c in (0..comps.len()).rev() {
        let is_seq = seq_comp[c];
        let mut lo = 0u32;
        for &p in &comps[c] {
            for &q in &preds[p] {
                let cq = comp[q];
                if cq == c {
                    continue;
                }
                let s = comp_stage[cq];
                lo = lo.max(if seq_comp[cq] == is_seq { s } else { s + 1 });
            }
        }
        let parity = u32::from(!is_seq);
        comp_stage[c] = if lo % 2 == parity { lo } else { lo + 1 };
    }
    // Sink lone per-step nodes into the loop of their first consumer.
    for c in 0..comps.len() {
        let &[p] = comps[c].as_slice() else { continue };
        if seq_comp[c] || stays(op(p)) || succ[p].is_empty() {
            continue;
        }
        let target = succ[p]
            .iter()
            .map(|&u| {
                let cu = comp[u];
                if seq_comp[cu] { comp_stage[cu] - 1 } else { comp_stage[cu] }
            })
            .min()
            .expect("not empty");
        if target > comp_stage[c] {
            comp_stage[c] = target;
        }
    }
    let stage = (0..len).map(|p| if hoist[p] { 0 } else { comp_stage[comp[p]] }).collect();
    Plan { hoist, batched, stage, recurrent_anchors }
}

/// Tarjan's strongly connected components (iteratively), over the nodes
/// not `skip`ped. Returns each node's component and the components in the
/// order found: every component comes after those it reaches.
fn tarjan(succ: &[Vec<usize>], skip: &[bool]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let n = succ.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut comp = vec![usize::MAX; n];
    let mut comps: Vec<Vec<usize>> = Vec::new();
    let mut next = 0usize;
    for root in 0..n {
        if skip[root] || index[root] != usize::MAX {
            continue;
        }
        // (node, next successor to visit)
        let mut call: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut i)) = call.last_mut() {
            if *i < succ[v].len() {
                let w = succ[v][*i];
                *i += 1;
                if skip[w] {
                    continue;
                }
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(parent, _)) = call.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut members = Vec::new();
                loop {
                    let w = stack.pop().expect("v is on the stack");
                    on_stack[w] = false;
                    comp[w] = comps.len();
                    members.push(w);
                    if w == v {
                        break;
                    }
                }
                members.sort_unstable();
                comps.push(members);
            }
        }
    }
    for (p, c) in comp.iter_mut().enumerate() {
        if skip[p] {
            *c = 0;
        }
    }
    (comp, comps)
}

/// A new module being built from an old one.
struct Rebuild<'a> {
    old: &'a Module,
    new: Module,
    /// The new handle of every old node emitted so far.
    new_of: Vec<Option<Handle<Node>>>,
    /// Old step-loop nodes that became sequence values.
    batched: Vec<bool>,
    /// Old step-loop nodes hoisted out of their loop.
    hoisted: Vec<bool>,
    /// `collect` of an old per-step node, emitted once.
    collect_of: HashMap<Handle<Node>, Handle<Node>>,
    /// `step` of a new sequence value in a new region.
    step_of: HashMap<(Handle<Node>, usize), Handle<Node>>,
    /// Notes on the loops split so far.
    report: PassReport,
}

impl<'a> Rebuild<'a> {
    fn run(old: &'a Module, pinned: &HashMap<Handle<Node>, String>) -> Result<(Module, PassReport), Failure> {
        let mut new = Module::new(old.name.clone(), old.steps, old.dt, old.float);
        new.inputs = old.inputs.clone();
        new.params = old.params.clone();
        new.states = old.states.clone();
        let n = old.nodes.len();
        let mut rb = Rebuild {
            old,
            new,
            new_of: vec![None; n],
            batched: vec![false; n],
            hoisted: vec![false; n],
            collect_of: HashMap::new(),
            step_of: HashMap::new(),
            report: PassReport::default(),
        };
        let mut loops_in = 0;
        for region in &old.body {
            match region.kind {
                RegionKind::Seq => rb.copy_seq(&region.nodes)?,
                RegionKind::Step => {
                    loops_in += 1;
                    rb.split_loop(region, pinned)?;
                }
            }
        }
        for o in &old.outputs {
            let value = rb.new_of[o.value.index()].ok_or_else(|| Failure::GiveUp(o.value, "output".into()))?;
            rb.new.outputs.push(snnc_ir::Output { name: o.name.clone(), value });
        }
        rb.merge_seq_regions();
        let loops_out = rb.new.body.iter().filter(|r| r.kind == RegionKind::Step).count();
        let seqs_out = rb.new.body.iter().filter(|r| r.kind == RegionKind::Seq).count();
        let mut report = PassReport::default();
        report.note(format!(
            "{loops_in} step loop(s) became {loops_out} step loop(s) and {seqs_out} sequence region(s) in all"
        ));
        for (h, why) in sorted(pinned) {
            report.note(format!("{}: kept per step ({why})", util::describe(old, h)));
        }
        report.notes.extend(rb.report.notes);
        Ok((rb.new, report))
    }

    /// Appends a node to a region of the new module, typed by the IR's
    /// rules.
    fn emit(&mut self, region: usize, op: Op, name: Option<String>) -> Result<Handle<Node>, String> {
        let ty = snnc_ir::typing::result_type(&self.new, &op)?;
        let h = self.new.nodes.append(Node { op, ty, name });
        self.new.body[region].nodes.push(h);
        Ok(h)
    }

    fn push_region(&mut self, kind: RegionKind, unroll: u32) -> usize {
        let step = kind == RegionKind::Step;
        let mut r = Region::new(kind, Vec::new());
        if step {
            r.unroll = unroll;
        }
        self.new.body.push(r);
        self.new.body.len() - 1
    }

    /// Copies a sequence region; `collect`s of batched values become the
    /// values.
    fn copy_seq(&mut self, nodes: &[Handle<Node>]) -> Result<(), Failure> {
        let r = self.push_region(RegionKind::Seq, 1);
        for &h in nodes {
            let node = &self.old.nodes[h];
            if let Op::Collect(v) = node.op {
                if self.hoisted[v.index()]
                    && let Op::ChannelSum { arg, mean, per_step: false } = self.old.nodes[v].op
                {
                    // The history of a hoisted statistic: the statistic of
                    // its (loop-invariant) operand at every step.
                    let na = self.new_of[arg.index()].ok_or_else(|| Failure::GiveUp(h, "collect".into()))?;
                    let op = Op::ChannelSum { arg: na, mean, per_step: true };
                    let nh = self.emit(r, op, node.name.clone()).map_err(|e| Failure::GiveUp(h, e))?;
                    if self.new.nodes[nh].ty != node.ty {
                        let why = format!("type {} became {}", node.ty, self.new.nodes[nh].ty);
                        return Err(Failure::GiveUp(h, why));
                    }
                    self.new_of[h.index()] = Some(nh);
                    continue;
                }
                let nv = self.new_of[v.index()].ok_or_else(|| Failure::GiveUp(h, "collect".into()))?;
                if self.batched[v.index()] {
                    match &node.name {
                        None => {
                            self.new_of[h.index()] = Some(nv);
                            continue;
                        }
                        Some(name) if self.new.nodes[nv].name.is_none() => {
                            self.new.nodes[nv].name = Some(name.clone());
                            self.new_of[h.index()] = Some(nv);
                            continue;
                        }
                        Some(name) => {
                            // Both named: an identity reshape carries the
                            // second name.
                            let shape = self.new.nodes[nv].ty.shape.clone();
                            let op = Op::Reshape { arg: nv, shape };
                            let nh = self.emit(r, op, Some(name.clone())).map_err(|e| Failure::GiveUp(h, e))?;
                            self.new_of[h.index()] = Some(nh);
                            continue;
                        }
                    }
                }
                if node.name.is_none()
                    && let Some(&c) = self.collect_of.get(&v)
                {
                    self.new_of[h.index()] = Some(c);
                    continue;
                }
            }
            self.copy_node(r, h)?;
        }
        Ok(())
    }

    /// Emits an old node unchanged but for its operands.
    fn copy_node(&mut self, region: usize, h: Handle<Node>) -> Result<Handle<Node>, Failure> {
        let node = &self.old.nodes[h];
        let mut op = node.op.clone();
        let mut missing = None;
        op.map_operands(|a| match self.new_of[a.index()] {
            Some(na) => na,
            None => {
                missing = Some(a);
                a
            }
        });
        if let Some(a) = missing {
            return Err(Failure::GiveUp(h, format!("operand %{} was not emitted", a.index())));
        }
        let nh = self.emit(region, op, node.name.clone()).map_err(|e| Failure::GiveUp(h, e))?;
        if self.new.nodes[nh].ty != node.ty {
            return Err(Failure::GiveUp(h, format!("type {} became {}", node.ty, self.new.nodes[nh].ty)));
        }
        self.new_of[h.index()] = Some(nh);
        Ok(nh)
    }

    /// `step` of a new sequence value in a new step loop, made once.
    fn step(&mut self, region: usize, value: Handle<Node>) -> Result<Handle<Node>, String> {
        if let Some(&s) = self.step_of.get(&(value, region)) {
            return Ok(s);
        }
        let s = self.emit(region, Op::Step(value), None)?;
        self.step_of.insert((value, region), s);
        Ok(s)
    }

    fn split_loop(&mut self, region: &Region, pinned: &HashMap<Handle<Node>, String>) -> Result<(), Failure> {
        let old = self.old;
        let nodes = &region.nodes;
        // What a `collect` reads, and what that views (`reshape`,
        // `stop_gradient`): a collected history must be computed in the
        // loop (a backend keeps it as the loop's per-step rows).
        let mut collected: HashSet<Handle<Node>> = HashSet::new();
        for (_, n) in old.nodes.iter() {
            let Op::Collect(mut v) = n.op else { continue };
            while collected.insert(v) {
                match old.nodes[v].op {
                    Op::Reshape { arg, .. } | Op::StopGradient(arg) => v = arg,
                    _ => break,
                }
            }
        }
        let plan = plan_loop(old, nodes, pinned, &collected);
        let pos: HashMap<Handle<Node>, usize> = nodes.iter().enumerate().map(|(i, &h)| (h, i)).collect();

        // Invariants go to the sequence region before the loop.
        if plan.hoist.iter().any(|&x| x) {
            let r = match self.new.body.last() {
                Some(last) if last.kind == RegionKind::Seq => self.new.body.len() - 1,
                _ => self.push_region(RegionKind::Seq, 1),
            };
            let mut count = 0;
            for (p, &h) in nodes.iter().enumerate() {
                if plan.hoist[p] {
                    self.copy_node(r, h)?;
                    self.hoisted[h.index()] = true;
                    count += 1;
                }
            }
            self.report.note(format!("hoisted {count} loop-invariant node(s) out of the step loop"));
        }

        // Per-step nodes that a later stage reads.
        let mut needs_collect = vec![false; nodes.len()];
        for (p, &h) in nodes.iter().enumerate() {
            if plan.hoist[p] {
                continue;
            }
            for a in old.nodes[h].op.operands() {
                if let Some(&q) = pos.get(&a)
                    && !plan.hoist[q]
                    && !plan.batched[q]
                    && plan.stage[q] != plan.stage[p]
                {
                    needs_collect[q] = true;
                }
            }
        }

        let max_stage = (0..nodes.len()).filter(|&p| !plan.hoist[p]).map(|p| plan.stage[p]).max().unwrap_or(0);
        let mut batched_notes = Vec::new();
        for s in 0..=max_stage {
            let kind = if s.is_multiple_of(2) { RegionKind::Seq } else { RegionKind::Step };
            let members: Vec<usize> = (0..nodes.len()).filter(|&p| !plan.hoist[p] && plan.stage[p] == s).collect();
            let collects: Vec<usize> = if kind == RegionKind::Seq && s > 0 {
                (0..nodes.len()).filter(|&p| needs_collect[p] && plan.stage[p] == s - 1).collect()
            } else {
                Vec::new()
            };
            if members.is_empty() && collects.is_empty() {
                continue;
            }
            let r = self.push_region(kind, region.unroll);
            for q in collects {
                let h = nodes[q];
                let nv = self.new_of[h.index()].expect("emitted in the previous stage");
                let c = self.emit(r, Op::Collect(nv), None).map_err(|e| Failure::GiveUp(h, e))?;
                self.collect_of.insert(h, c);
            }
            for p in members {
                let h = nodes[p];
                let node = &old.nodes[h];
                let batched = plan.batched[p];
                if batched && let Op::Step(x) = node.op {
                    // The step of a sequence, batched, is the sequence.
                    self.new_of[h.index()] = self.new_of[x.index()];
                    self.batched[h.index()] = true;
                    continue;
                }
                let mut op = node.op.clone();
                let mut failed = None;
                let mut operands = Vec::new();
                for a in node.op.operands() {
                    let res = self.operand(a, &pos, &plan, s, r);
                    match res {
                        Ok(na) => operands.push(na),
                        Err(e) => {
                            failed = Some(e);
                            operands.push(a);
                        }
                    }
                }
                if let Some(e) = failed {
                    return Err(Failure::GiveUp(h, e));
                }
                let mut it = operands.into_iter();
                op.map_operands(|_| it.next().expect("one new operand per operand"));
                if batched && let Op::Uniform { seq, .. } = &mut op {
                    *seq = true;
                }
                // A step's channel statistic (BatchNorm), batched, is one
                // statistic per step of the sequence, never one over time.
                if batched && let Op::ChannelSum { per_step, .. } = &mut op {
                    *per_step = true;
                }
                let want: Type = if batched { node.ty.with_seq() } else { node.ty.clone() };
                match self.emit(r, op, node.name.clone()) {
                    Ok(nh) if self.new.nodes[nh].ty == want => {
                        self.new_of[h.index()] = Some(nh);
                        self.batched[h.index()] = batched;
                        if batched && anchor(&node.op) {
                            batched_notes.push(self.describe_batched(h, nh));
                        }
                    }
                    Ok(nh) => {
                        let got = self.new.nodes[nh].ty.clone();
                        let why = format!("over whole sequences it would have type {got}, not {want}");
                        return Err(if batched { Failure::Retry(h, why) } else { Failure::GiveUp(h, why) });
                    }
                    Err(e) if batched => {
                        return Err(Failure::Retry(h, format!("not defined over whole sequences: {e}")));
                    }
                    Err(e) => return Err(Failure::GiveUp(h, e)),
                }
            }
        }
        self.report.notes.extend(batched_notes);
        for p in plan.recurrent_anchors {
            let h = nodes[p];
            self.report.note(format!(
                "{}: stays per step ({} in a recurrence)",
                util::describe(old, h),
                old.nodes[h].op.mnemonic()
            ));
        }
        Ok(())
    }

    /// The new value for operand `a` of a node of stage `s`, region `r`.
    fn operand(
        &mut self,
        a: Handle<Node>,
        pos: &HashMap<Handle<Node>, usize>,
        plan: &Plan,
        s: u32,
        r: usize,
    ) -> Result<Handle<Node>, String> {
        let na = self.new_of[a.index()].ok_or_else(|| format!("operand %{} was not emitted", a.index()))?;
        let Some(&q) = pos.get(&a) else { return Ok(na) };
        let here_seq = s.is_multiple_of(2);
        if plan.hoist[q] {
            return Ok(na);
        }
        if plan.batched[q] {
            return if here_seq { Ok(na) } else { self.step(r, na) };
        }
        if plan.stage[q] == s {
            return Ok(na);
        }
        let c = *self.collect_of.get(&a).ok_or_else(|| format!("no collect of %{}", a.index()))?;
        if here_seq { Ok(c) } else { self.step(r, c) }
    }

    /// `fc1: batched over T (matmul [T·B,8]×[8,16])`.
    fn describe_batched(&self, old_h: Handle<Node>, h: Handle<Node>) -> String {
        let m = &self.new;
        let what = match m.nodes[h].op {
            Op::MatMul { input, weight, .. } => {
                let w = &m.nodes[weight].ty.shape.0;
                format!(
                    "{} {}×[{},{}]",
                    m.nodes[h].op.mnemonic(),
                    util::rows_shape(m, input, 1),
                    w.get(1).map_or("?".into(), |d| d.to_string()),
                    w.first().map_or("?".into(), |d| d.to_string())
                )
            }
            Op::Conv2d { input, weight, .. } => {
                format!("conv2d {}∗{}", util::rows_shape(m, input, 3), m.nodes[weight].ty.shape)
            }
            Op::Pool2d { input, kernel, .. } => {
                let op = m.nodes[h].op.mnemonic();
                format!("{op} {} kernel {}×{}", util::rows_shape(m, input, 3), kernel[0], kernel[1])
            }
            ref op => op.mnemonic().to_string(),
        };
        format!("{}: batched over T ({what})", util::describe(self.old, old_h))
    }

    /// Merges each sequence region into a sequence region right before it,
    /// except into the first region (the preamble stays apart).
    fn merge_seq_regions(&mut self) {
        let body = std::mem::take(&mut self.new.body);
        let mut merged: Vec<Region> = Vec::with_capacity(body.len());
        for region in body {
            if region.nodes.is_empty() {
                continue;
            }
            let into_last = merged.len() > 1
                && merged.last().is_some_and(|l| l.kind == RegionKind::Seq)
                && region.kind == RegionKind::Seq;
            match merged.last_mut() {
                Some(last) if into_last => last.nodes.extend(region.nodes),
                _ => merged.push(region),
            }
        }
        self.new.body = merged;
    }
}

fn sorted(pinned: &HashMap<Handle<Node>, String>) -> Vec<(Handle<Node>, String)> {
    let mut v: Vec<_> = pinned.iter().map(|(h, w)| (*h, w.clone())).collect();
    v.sort_by_key(|(h, _)| *h);
    v
}
