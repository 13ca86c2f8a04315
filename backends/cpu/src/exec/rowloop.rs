//! Step loops split over the batch: every thread runs the whole loop on
//! its own rows.
//!
//! A step loop that is not one whole-loop kernel runs node by node, each
//! node over the whole batch; splitting each node over threads costs a
//! synchronisation per node and step (`T × nodes`, some µs each), more
//! than a `[256, 100]` node computes. But where every node of the loop
//! works row by row on the batch (the batch is the leading dim of every
//! value, products read a weight fixed during the loop, elementwise ops
//! combine values of the same shape), rows never meet: each part of the
//! batch can run all `T` steps on its own, one synchronisation per loop.
//!
//! Every row gets the operations the node-by-node run gives it (the
//! kernels compute each row alone, in the same order), so the results are
//! the same bits. Buffers are shared, not copied: a part works on its rows
//! of each node's buffer, of the states and of the histories (one stripe
//! per step).

use super::*;

/// The plan of a step loop that runs split over the batch.
#[derive(Debug)]
pub(super) struct RowLoop {
    /// Inputs, parameters and constants of the loop, evaluated before it.
    invariants: Vec<Handle<Node>>,
    /// The other nodes, in order.
    nodes: Vec<Handle<Node>>,
    /// The states the loop reads or writes, and those it writes by copying
    /// the value into the next-state buffer (swapped with the state's at
    /// the end of each step).
    states: Vec<usize>,
    written: Vec<usize>,
    /// States written with a value of the loop's own (a product's or a
    /// kernel's output, written whole at every step, no other state's):
    /// at the end of each step the state's buffer and the value's swap
    /// places, instead of a copy.
    moved: Vec<(usize, Slot)>,
    /// Nodes of the loop with a buffer of their own, and `fused` nodes.
    own: Vec<usize>,
    fused: Vec<usize>,
    /// Products (all computed from their transposed weight).
    transposed: Vec<usize>,
    /// Estimated time of one step per batch row, in ns.
    ns_per_row: usize,
}

/// A buffer of a loop node's value: its own, or a `fused` node's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Own(usize),
    Kout(usize, usize),
}

/// Whether `ty` is a per-step value whose leading dim is the batch (and no
/// other dim is).
fn batch_major(ty: &snnc_ir::Type) -> bool {
    let d = &ty.shape.0;
    !ty.seq && d.first() == Some(&snnc_ir::Dim::Batch) && d.iter().filter(|&&x| x == snnc_ir::Dim::Batch).count() == 1
}

/// The plan for region `r` (a step loop), or `None` if some node does not
/// work row by row.
pub(super) fn plan(
    module: &Module,
    r: usize,
    region_of: &[usize],
    views: &[View],
    kernels: &[Option<Kernel>],
) -> Option<RowLoop> {
    let region = &module.body[r];
    if !region.is_step() {
        return None;
    }
    let mut lp = RowLoop {
        invariants: Vec::new(),
        nodes: Vec::new(),
        states: Vec::new(),
        written: Vec::new(),
        moved: Vec::new(),
        own: Vec::new(),
        fused: Vec::new(),
        transposed: Vec::new(),
        ns_per_row: 0,
    };
    let ty = |h: Handle<Node>| &module.nodes[h].ty;
    let per_row = |h: Handle<Node>| ty(h).shape.fixed_elements() as usize;
    let mut elements = 0usize;
    let mut macs = 0usize;
    for &h in &region.nodes {
        let i = h.index();
        let node = &module.nodes[h];
        match node.op {
            Op::Input(_) | Op::Param(_) | Op::Const { .. } => {
                lp.invariants.push(h);
                continue;
            }
            Op::StateRead(s) => {
                if !batch_major(&module.states[s].ty) {
                    return None;
                }
                lp.states.push(s.index());
            }
            Op::StateWrite { state, .. } => {
                if !batch_major(&module.states[state].ty) {
                    return None;
                }
                lp.states.push(state.index());
                elements += per_row(h);
            }
            Op::Step(_) | Op::Reshape { .. } | Op::StopGradient(_) | Op::Extract { .. } => {}
            Op::Fused(ref k) => {
                // A kernel compiled per row of a fixed suffix of its shape
                // (a BatchNorm statistic, a per-neuron parameter) runs
                // once per such row of the part's samples.
                match kernels[i] {
                    Some(Kernel::Jit(_)) => {}
                    Some(Kernel::JitRows(_, row)) if row > 0 && per_row(h) % row == 0 => {}
                    _ => return None,
                }
                lp.fused.push(i);
                elements += per_row(h) * (k.inputs.len() + k.outputs.len());
            }
            Op::MatMul { input, weight, .. } => {
                let invariant = region_of[weight.index()] != r
                    || matches!(module.nodes[weight].op, Op::Param(_) | Op::Input(_) | Op::Const { .. });
                if !invariant || !batch_major(ty(input)) {
                    return None;
                }
                let n_in = per_row(input);
                macs += per_row(h) * n_in;
                lp.transposed.push(i);
            }
            Op::Unary { arg: a, .. }
            | Op::Threshold { arg: a, .. }
            | Op::Cast { arg: a, .. }
            | Op::Binary { lhs: a, rhs: _, .. }
            | Op::Compare { lhs: a, rhs: _, .. }
            | Op::Select { cond: a, .. } => {
                let same = node.op.operands().into_iter().all(|x| ty(x).shape == node.ty.shape && !ty(x).seq);
                if !same || !batch_major(ty(a)) {
                    return None;
                }
                elements += per_row(h) * (node.op.operands().len() + 1);
            }
            _ => return None,
        }
        if !batch_major(&node.ty) {
            return None;
        }
        if views[i].src == Src::Own(i) {
            lp.own.push(i);
        }
        lp.nodes.push(h);
    }
    lp.states.sort_unstable();
    lp.states.dedup();
    // State writes that can move their value instead of copying it.
    let slot_of = |v: Handle<Node>| match views[v.index()].src {
        Src::Own(j) if lp.own.contains(&j) => Some(Slot::Own(j)),
        Src::KernelOut(k, o) if lp.fused.contains(&k) => Some(Slot::Kout(k, o)),
        _ => None,
    };
    let writes: Vec<(usize, Option<Slot>)> = region
        .nodes
        .iter()
        .filter_map(|&h| match module.nodes[h].op {
            Op::StateWrite { state, value } => Some((state.index(), slot_of(value))),
            _ => None,
        })
        .collect();
    lp.written.clear();
    for &(s, slot) in &writes {
        match slot {
            Some(slot) if writes.iter().filter(|w| w.1 == Some(slot)).count() == 1 => lp.moved.push((s, slot)),
            _ => lp.written.push(s),
        }
    }
    lp.ns_per_row = elements / crate::pool::ELEMENTS_PER_NS + macs / crate::pool::GEMM_MACS_PER_NS;
    Some(lp)
}

/// One part's rows `b0..b1` of the loop's buffers.
struct Part<'a> {
    b0: usize,
    b1: usize,
    /// By node: its rows of the node's own buffer (loop nodes).
    own: Vec<Option<&'a mut [f32]>>,
    /// By node: its rows of each output of a `fused` node.
    kout: Vec<Vec<&'a mut [f32]>>,
    /// By state: its rows of the current and the next-state buffer.
    cur: Vec<Option<&'a mut [f32]>>,
    next: Vec<Option<&'a mut [f32]>>,
    /// By state: where its rows of the state buffer are (a moved state's
    /// buffer changes places with its value's, see [`RowLoop::moved`]).
    home: Vec<usize>,
    /// By node: its rows of each step of the node's history.
    hist: Vec<Vec<&'a mut [f32]>>,
    /// By node: the spike lists of an event-driven product's input.
    spikes: Vec<event::SpikeRows>,
    /// With profiling: seconds per node.
    prof: Option<Vec<f64>>,
}

/// Splits `buf` (`batch` rows) into the parts' rows (`bounds`).
fn split_rows<'a>(buf: &'a mut [f32], batch: usize, bounds: &[(usize, usize)]) -> Vec<&'a mut [f32]> {
    let row = buf.len() / batch.max(1);
    let mut rest = buf;
    let mut res = Vec::with_capacity(bounds.len());
    for &(b0, b1) in bounds {
        let (mine, tail) = std::mem::take(&mut rest).split_at_mut((b1 - b0) * row);
        res.push(mine);
        rest = tail;
    }
    res
}

impl Executable {
    /// How many parts of the batch region `r`'s loop runs in (1: node by
    /// node over the whole batch).
    pub(super) fn row_parts(&self, b: &Buffers, lp: &RowLoop) -> usize {
        let steps = self.module.steps as usize;
        let ns = lp.ns_per_row.saturating_mul(b.batch).saturating_mul(steps);
        crate::pool::parts(b.batch, ns)
    }

    /// Runs step loop `r` split over the batch in `n_parts` parts.
    pub(super) fn run_row_loop(&self, b: &mut Buffers, r: usize, lp: &RowLoop, n_parts: usize) {
        let module = &self.module;
        let region = &module.body[r];
        let steps = module.steps as usize;
        let batch = b.batch;
        for &h in &lp.invariants {
            self.eval(b, h, Some(0));
        }
        for &i in &lp.transposed {
            let Op::MatMul { weight, .. } = module.nodes[Handle::from_index(i)].op else { continue };
            let wd = &b.dims[weight.index()];
            let (n_out, n_in) = (wd[0], wd[1]);
            let (mut wt, mut finite) = std::mem::take(&mut b.transposed[i]);
            kernels::transpose(self.val(b, weight, 0), n_in, n_out, &mut wt, &mut finite);
            b.transposed[i] = (wt, finite);
        }
        let per = batch.div_ceil(n_parts);
        let bounds: Vec<(usize, usize)> = (0..batch).step_by(per).map(|b0| (b0, (b0 + per).min(batch))).collect();
        // Take the loop's buffers out, to lend their rows to the parts.
        let mut own: Vec<(usize, Vec<f32>)> = lp.own.iter().map(|&i| (i, std::mem::take(&mut b.own[i]))).collect();
        let mut kout: Vec<(usize, Vec<Vec<f32>>)> =
            lp.fused.iter().map(|&i| (i, std::mem::take(&mut b.kernel_outs[i]))).collect();
        let mut states: Vec<(usize, Vec<f32>, Vec<f32>)> = lp
            .states
            .iter()
            .map(|&s| (s, std::mem::take(&mut b.states[s]), std::mem::take(&mut b.next_states[s])))
            .collect();
        let kept: Vec<usize> = lp.nodes.iter().map(|h| h.index()).filter(|&i| b.keep[i]).collect();
        let mut hist: Vec<(usize, Vec<f32>)> = kept.iter().map(|&i| (i, std::mem::take(&mut b.hist[i]))).collect();
        let n_nodes = module.nodes.len();
        let n_states = module.states.len();
        let profile = b.profile.is_some();
        let start = std::time::Instant::now();
        {
            let mut parts: Vec<Part<'_>> = bounds
                .iter()
                .map(|&(b0, b1)| Part {
                    b0,
                    b1,
                    own: (0..n_nodes).map(|_| None).collect(),
                    kout: (0..n_nodes).map(|_| Vec::new()).collect(),
                    cur: (0..n_states).map(|_| None).collect(),
                    next: (0..n_states).map(|_| None).collect(),
                    home: vec![0; n_states],
                    hist: (0..n_nodes).map(|_| Vec::new()).collect(),
                    spikes: (0..n_nodes).map(|_| event::SpikeRows::default()).collect(),
                    prof: profile.then(|| vec![0.0; n_nodes]),
                })
                .collect();
            for (i, buf) in &mut own {
                for (p, rows) in split_rows(buf, batch, &bounds).into_iter().enumerate() {
                    parts[p].own[*i] = Some(rows);
                }
            }
            for (i, outs) in &mut kout {
                for out in outs.iter_mut() {
                    for (p, rows) in split_rows(out, batch, &bounds).into_iter().enumerate() {
                        parts[p].kout[*i].push(rows);
                    }
                }
            }
            for (s, cur, next) in &mut states {
                for (p, rows) in split_rows(cur, batch, &bounds).into_iter().enumerate() {
                    parts[p].home[*s] = rows.as_ptr() as usize;
                    parts[p].cur[*s] = Some(rows);
                }
                for (p, rows) in split_rows(next, batch, &bounds).into_iter().enumerate() {
                    parts[p].next[*s] = Some(rows);
                }
            }
            for (i, h) in &mut hist {
                let n = b.numel[*i];
                for step in h.chunks_exact_mut(n.max(1)) {
                    for (p, rows) in split_rows(step, batch, &bounds).into_iter().enumerate() {
                        parts[p].hist[*i].push(rows);
                    }
                }
            }
            let shared: &Buffers = b;
            let items: Vec<&mut Part<'_>> = parts.iter_mut().collect();
            crate::pool::for_each_item(items, |_, part| {
                crate::pool::serial(|| self.run_part(shared, region, lp, part, steps));
            });
            if let (Some(prof), Some(p0)) = (&mut b.profile, &parts[0].prof) {
                // The loop's time, shared out as the first part's.
                let scale = start.elapsed().as_secs_f64() / p0.iter().sum::<f64>().max(1e-12);
                for (t, &d) in prof.iter_mut().zip(p0) {
                    *t += d * scale;
                }
            }
        }
        for (i, buf) in own {
            b.own[i] = buf;
        }
        for (i, outs) in kout {
            b.kernel_outs[i] = outs;
        }
        for (s, mut cur, mut next) in states {
            // Each part swapped its rows' buffers once per step.
            if steps % 2 == 1 && lp.written.contains(&s) {
                std::mem::swap(&mut cur, &mut next);
            }
            b.states[s] = cur;
            b.next_states[s] = next;
        }
        for (i, h) in hist {
            b.hist[i] = h;
        }
    }

    /// Runs every step of the loop on one part's rows.
    fn run_part(&self, b: &Buffers, region: &snnc_ir::Region, lp: &RowLoop, part: &mut Part<'_>, steps: usize) {
        for iter in 0..steps {
            let t = if region.reverse { steps - 1 - iter } else { iter };
            for &h in &lp.nodes {
                let t0 = part.prof.is_some().then(std::time::Instant::now);
                self.eval_part(b, lp, part, h, t);
                if let (Some(p), Some(t0)) = (&mut part.prof, t0) {
                    p[h.index()] += t0.elapsed().as_secs_f64();
                }
                let i = h.index();
                if !part.hist[i].is_empty() {
                    let mut dst = std::mem::take(&mut part.hist[i]);
                    dst[t].copy_from_slice(self.part_val(b, part, h, t, true));
                    part.hist[i] = dst;
                }
            }
            for &s in &lp.written {
                std::mem::swap(&mut part.cur[s], &mut part.next[s]);
            }
            for &(s, slot) in &lp.moved {
                let cur = part.cur[s].as_mut().expect("the part's state rows");
                match slot {
                    Slot::Own(j) => std::mem::swap(cur, part.own[j].as_mut().expect("the part's rows")),
                    Slot::Kout(k, o) => std::mem::swap(cur, &mut part.kout[k][o]),
                }
            }
        }
        // A moved state's rows of the state buffer are its own or its
        // value's (they change places): the final value goes there.
        for &(s, slot) in &lp.moved {
            let cur = part.cur[s].as_deref().expect("the part's state rows");
            if cur.as_ptr() as usize != part.home[s] {
                let value = match slot {
                    Slot::Own(j) => part.own[j].as_deref_mut().expect("the part's rows"),
                    Slot::Kout(k, o) => &mut *part.kout[k][o],
                };
                debug_assert_eq!(value.as_ptr() as usize, part.home[s]);
                value.copy_from_slice(cur);
            }
        }
    }

    /// Operand `x` at step `t` for a part: its rows (`rows`) or, for a
    /// value without a batch dim (a weight, a scalar), all of it.
    fn part_val<'c>(&self, b: &'c Buffers, part: &'c Part<'_>, x: Handle<Node>, t: usize, rows: bool) -> &'c [f32] {
        let v = self.views[x.index()];
        let local: Option<&'c [f32]> = match v.src {
            Src::Own(j) => part.own[j].as_deref(),
            Src::KernelOut(k, o) => part.kout[k].get(o).map(|s| &**s),
            Src::State(s) => part.cur[s].as_deref(),
            _ => None,
        };
        if let Some(local) = local {
            return local;
        }
        let all = get(b, v, b.numel[x.index()], t);
        if rows {
            let row = all.len() / b.batch.max(1);
            &all[part.b0 * row..part.b1 * row]
        } else {
            all
        }
    }

    /// Computes node `h` at step `t` on a part's rows.
    fn eval_part(&self, b: &Buffers, lp: &RowLoop, part: &mut Part<'_>, h: Handle<Node>, t: usize) {
        let module = &self.module;
        let i = h.index();
        let node = &module.nodes[h];
        match node.op {
            Op::StateWrite { state, value } => {
                let s = state.index();
                if lp.moved.iter().any(|&(m, _)| m == s) {
                    // Moved at the end of the step.
                    return;
                }
                let next = part.next[s].take().expect("the part's next-state rows");
                next.copy_from_slice(self.part_val(b, part, value, t, true));
                part.next[s] = Some(next);
                return;
            }
            Op::Fused(ref kernel) => {
                let expect = "kernel buffers have the sizes the kernel was compiled for";
                let mut outs = std::mem::take(&mut part.kout[i]);
                match &self.kernels[i] {
                    Some(Kernel::Jit(k)) => {
                        let ins: Vec<&[f32]> = kernel
                            .inputs
                            .iter()
                            .zip(k.layouts())
                            .map(|(&x, l)| self.part_val(b, part, x, t, *l == InputLayout::Full))
                            .collect();
                        let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut **o).collect();
                        k.run(&ins, &mut refs).expect(expect);
                    }
                    Some(Kernel::JitRows(k, row)) => {
                        // The part's rows of the inputs with a batch, the
                        // suffix inputs (and scalars) whole, row by row.
                        let row = *row;
                        let ins: Vec<(&[f32], bool)> = kernel
                            .inputs
                            .iter()
                            .map(|&x| {
                                let batched = module.nodes[x].ty.shape.has_batch();
                                (self.part_val(b, part, x, t, batched), batched)
                            })
                            .collect();
                        let len = outs.first().map_or(0, |o| o.len());
                        for r in (0..len).step_by(row) {
                            let row_ins: Vec<&[f32]> =
                                ins.iter().map(|&(x, batched)| if batched { &x[r..r + row] } else { x }).collect();
                            let mut row_outs: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[r..r + row]).collect();
                            k.run(&row_ins, &mut row_outs).expect(expect);
                        }
                    }
                    _ => unreachable!("planned for jit kernels"),
                }
                part.kout[i] = outs;
                return;
            }
            _ => {}
        }
        let Some(out) = part.own[i].take() else { return };
        match node.op {
            Op::MatMul { input, weight, kind } => {
                let wd = &b.dims[weight.index()];
                let (n_out, n_in) = (wd[0], wd[1]);
                let (wt, finite) = &b.transposed[i];
                let mut spikes = std::mem::take(&mut part.spikes[i]);
                let x = self.part_val(b, part, input, t, true);
                if kind == MatMulKind::Dense && n_in > EXACT_MAX_IN {
                    kernels::matmul_dense_t(x, wt, n_in, n_out, out);
                } else if kind == MatMulKind::Dense {
                    event::matmul_dense_rows(x, wt, finite, n_in, n_out, out);
                } else {
                    spikes.build(x, n_in);
                    event::matmul(&spikes, wt, finite, n_in, n_out, out);
                }
                part.spikes[i] = spikes;
            }
            Op::Unary { op, arg } => kernels::unary(op, self.part_val(b, part, arg, t, true), out),
            Op::Binary { op, lhs, rhs } => {
                kernels::binary(op, self.part_val(b, part, lhs, t, true), self.part_val(b, part, rhs, t, true), out)
            }
            Op::Compare { op, lhs, rhs } => {
                kernels::compare(op, self.part_val(b, part, lhs, t, true), self.part_val(b, part, rhs, t, true), out)
            }
            Op::Select { cond, on_true, on_false } => kernels::select(
                self.part_val(b, part, cond, t, true),
                self.part_val(b, part, on_true, t, true),
                self.part_val(b, part, on_false, t, true),
                out,
            ),
            Op::Threshold { arg, .. } => kernels::threshold(self.part_val(b, part, arg, t, true), out),
            Op::Cast { arg, .. } => out.copy_from_slice(self.part_val(b, part, arg, t, true)),
            _ => unreachable!("planned ops only"),
        }
        part.own[i] = Some(out);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use snnc_passes::{PassOptions, PipelineKind};
    use snnc_runtime::{ElemType, Tensor};

    use crate::RunOptions;

    /// The tutorial, with its backward pass when `train`, after the CPU
    /// pipeline (the encoder's spikes at 2 %: event-driven products).
    pub(crate) fn tutorial(train: bool) -> snnc_ir::Module {
        network("examples/tutorial.ron", train)
    }

    /// The network of `file` (relative to the repository), lowered as
    /// [`tutorial`] lowers the tutorial.
    pub(crate) fn network(file: &str, train: bool) -> snnc_ir::Module {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(file);
        let net = snnc_frontend::load_network(&path).unwrap();
        let mut module = snnc_frontend::lower(&net, file, &Default::default()).unwrap();
        let mut opts = PassOptions::default();
        opts.densities.insert("encoder.z".into(), 0.02);
        let run = |module: &mut snnc_ir::Module, names: &[&str]| {
            snnc_passes::parse_pipeline(&names.join(","), &opts).unwrap().run(module, &mut |_| {}).unwrap();
        };
        if train {
            let (pre, post) = snnc_passes::training_pass_names(PipelineKind::Cpu);
            run(&mut module, &pre);
            // The readout, or the network's first output.
            let seed = module.outputs.iter().find(|o| o.name == "readout").unwrap_or(&module.outputs[0]).name.clone();
            let grad = snnc_passes::AutodiffOptions { seeds: vec![seed], inputs: Vec::new() };
            snnc_passes::differentiate(&mut module, &grad).unwrap();
            run(&mut module, &post);
        } else {
            run(&mut module, &snnc_passes::default_pass_names(PipelineKind::Cpu));
        }
        module
    }

    /// Deterministic values in about [-1, 2).
    pub(super) fn values(n: usize, seed: u64) -> Vec<f64> {
        (0..n as u64).map(|i| ((i * 7919 + seed * 104_729) % 3001) as f64 / 1000.0 - 1.0).collect()
    }

    #[test]
    fn loops_split_over_the_batch_and_lists_made_in_loops_give_the_bits_of_the_node_by_node_run() {
        for (train, steps) in [(false, 32), (true, 32), (true, 7)] {
            let mut module = tutorial(train);
            // An odd number of steps too: the states' buffers change places.
            module.steps = steps;
            let info = snnc_ir::validate(&module).unwrap();
            let split = crate::compile(&module, &info).unwrap();
            assert!(
                split.loop_lists.iter().flatten().any(|l| l.kernel.is_some()),
                "the encoder makes spike lists from bits"
            );
            split_and_whole_give_the_same_bits(&module, split, 96, train, steps);
        }
    }

    /// Per-neuron parameters (`v_th`, `v_leak` of `[4]`) make the neuron
    /// kernels run once per sample's row (`Kernel::JitRows`); such loops
    /// split over the batch as well, with the same bits.
    #[test]
    fn loops_of_per_neuron_kernels_split_over_the_batch_give_the_bits_of_the_node_by_node_run() {
        for train in [false, true] {
            let module = network("tests/nets/plif.ron", train);
            let info = snnc_ir::validate(&module).unwrap();
            let split = crate::compile(&module, &info).unwrap();
            let per_row = split.row_loops.iter().flatten().any(|lp| {
                lp.fused.iter().any(|&i| matches!(split.kernels[i], Some(super::super::Kernel::JitRows(..))))
            });
            assert!(per_row, "train {train}: a loop of per-row kernels runs split over the batch");
            split_and_whole_give_the_same_bits(&module, split, 2048, train, module.steps);
        }
    }

    /// Runs `split` and the same module node by node on `batch` samples
    /// and compares every output, final state and trace bit for bit.
    fn split_and_whole_give_the_same_bits(
        module: &snnc_ir::Module,
        split: crate::Executable,
        batch: usize,
        train: bool,
        steps: u32,
    ) {
        {
            let info = snnc_ir::validate(module).unwrap();
            let mut whole = crate::compile(module, &info).unwrap();
            assert!(split.row_loops.iter().any(Option::is_some), "a loop runs split over the batch");
            // Node by node, with the encoder's history written and scanned.
            whole.row_loops.iter_mut().for_each(|l| *l = None);
            whole.loop_lists.iter_mut().for_each(|l| *l = None);
            let weights = snnc_runtime::init_weights(module, 7);
            let mut inputs = BTreeMap::new();
            for (_, input) in module.inputs.iter() {
                let mut shape = input.ty.shape.resolve(batch);
                if input.ty.seq {
                    shape.insert(0, module.steps as usize);
                }
                let n = shape.iter().product();
                let data =
                    values(n, inputs.len() as u64 + 1).into_iter().map(|v| if train { v * 0.01 } else { v }).collect();
                inputs.insert(input.name.clone(), Tensor { shape, dtype: ElemType::F32, data });
            }
            for record in [false, true] {
                let opts = RunOptions { record, ..Default::default() };
                let a = split.run(&weights, &inputs, &opts).unwrap();
                let b = whole.run(&weights, &inputs, &opts).unwrap();
                let bits = |t: &Tensor| t.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                for (what, x, y) in [("output", &a.outputs, &b.outputs), ("state", &a.final_state, &b.final_state)]
                    .into_iter()
                    .chain(record.then_some(("trace", &a.traces, &b.traces)))
                {
                    assert_eq!(x.len(), y.len());
                    for (name, t) in x {
                        assert!(
                            bits(t) == bits(&y[name]),
                            "{what} `{name}` (train {train}, {steps} steps, record {record})"
                        );
                    }
                }
            }
        }
    }
}

/// Timings of the tutorial's step (ignored; `cargo test --release -p
/// snnc-cpu --lib microbench_tutorial -- --ignored --nocapture`).
#[cfg(test)]
mod bench {
    use std::collections::BTreeMap;

    use snnc_runtime::{ElemType, Tensor};

    #[test]
    #[ignore]
    fn microbench_tutorial() {
        let batch = 256;
        for train in [false, true] {
            let module = super::tests::tutorial(train);
            let info = snnc_ir::validate(&module).unwrap();
            let split = crate::compile(&module, &info).unwrap();
            let mut whole = crate::compile(&module, &info).unwrap();
            whole.row_loops.iter_mut().for_each(|l| *l = None);
            let weights = snnc_runtime::init_weights(&module, 7);
            let mut inputs = BTreeMap::new();
            for (_, input) in module.inputs.iter() {
                let mut shape = input.ty.shape.resolve(batch);
                if input.ty.seq {
                    shape.insert(0, module.steps as usize);
                }
                let n = shape.iter().product();
                let scale = if input.name == "x" { 1.0 } else { 0.01 };
                let data = super::tests::values(n, inputs.len() as u64 + 1).into_iter().map(|v| v * scale).collect();
                inputs.insert(input.name.clone(), Tensor { shape, dtype: ElemType::F32, data });
            }
            let opts = crate::RunOptions::default();
            // User + system time of the process, in ms (clock ticks of 10 ms).
            let cpu = || {
                let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
                let f: Vec<f64> = stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .map(|x| x.parse().unwrap_or(0.0))
                    .collect();
                (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) * 10.0
            };
            for (what, exe) in [("split", &split), ("node by node", &whole), ("split", &split)] {
                exe.run(&weights, &inputs, &opts).unwrap();
                let c0 = cpu();
                let runs = 40;
                let mut t: Vec<f64> = (0..runs)
                    .map(|_| {
                        let t0 = std::time::Instant::now();
                        exe.run(&weights, &inputs, &opts).unwrap();
                        t0.elapsed().as_secs_f64() * 1e3
                    })
                    .collect();
                let c = (cpu() - c0) / runs as f64;
                t.sort_by(f64::total_cmp);
                println!(
                    "train {train}, {what}: min {:.3} ms, median {:.3} ms, cpu {c:.2} ms a run",
                    t[0],
                    t[runs / 2]
                );
            }
        }
    }
}

/// The tutorial's encoder loop alone (ignored; `cargo test --release -p
/// snnc-cpu --lib microbench_encoder -- --ignored --nocapture`).
#[cfg(test)]
mod bench_encoder {
    #[test]
    #[ignore]
    fn microbench_encoder() {
        let module = super::tests::tutorial(false);
        let info = snnc_ir::validate(&module).unwrap();
        let exe = crate::compile(&module, &info).unwrap();
        let (r, lp) = exe.step_loops.iter().enumerate().find_map(|(r, l)| l.as_ref().map(|l| (r, l))).unwrap();
        let lists = exe.loop_lists[r].as_ref().unwrap();
        let bits = lists.kernel.as_ref().unwrap();
        let plain = &lp.kernels[0];
        let (batch, steps) = (256, 32);
        let n = batch * 784;
        let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 3001) as f32 / 1000.0 - 1.0).collect();
        let mut v = vec![0.0f32; n];
        let mut out = vec![0.0f32; n * steps];
        let time = |f: &mut dyn FnMut()| {
            let mut t: Vec<f64> = (0..15)
                .map(|_| {
                    let t0 = std::time::Instant::now();
                    f();
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            t.sort_by(f64::total_cmp);
            t[0]
        };
        for (parts, chunk) in [(1, 2), (1, 32), (2, 2), (2, 32), (8, 32)] {
            let t_plain = time(&mut || {
                plain.run_parts(&[&x], &mut [&mut v], &mut [&mut out], n, steps, parts).unwrap();
            });
            let p = n / parts;
            let t_bits = time(&mut || {
                let ranges: Vec<((usize, usize), ())> = (0..parts).map(|k| ((k * p, p), ())).collect();
                bits.run_chunked(&[&x], &mut [&mut v], n, steps, ranges, chunk, |_, _, _, _| {}).unwrap();
            });
            println!(
                "{parts} parts: whole-loop kernel writing values {t_plain:.3} ms, in chunks of {chunk} writing bits {t_bits:.3} ms \
                 ({:.3} ns an element-step, one thread)",
                t_bits * 1e6 / (n * steps) as f64 * parts.min(crate::pool::threads()) as f64
            );
        }
    }
}
