//! Neuron fusion: every connected group of elementwise ops becomes one
//! `fused` kernel.
//!
//! **What it does.** In every region, it finds the maximal groups of
//! elementwise nodes (`const`, unary, binary, compare, `select`,
//! `threshold`, `stop_gradient`, `cast`) connected through operand edges
//! between nodes of the same type shape, so that a neuron population's
//! whole update (decay, input, threshold, reset, adaptation) is one group.
//! Each group of two or more ops becomes one [`Op::Fused`] node:
//!
//! - values made outside the group (state reads, steps, matmuls,
//!   convolutions, parameters, inputs, other kernels) are its inputs;
//! - constants, and elementwise expressions of constants anywhere in the
//!   module (`dt * tau_mem_inv` in the preamble), are folded into one
//!   constant each, computed in the module's float type exactly as the
//!   interpreter computes them;
//! - every value used outside the group (by a state write, a matmul, a
//!   `collect`, another kernel, a module output) or carrying a name (the
//!   traces `lif1.z`, `lif1.v`) becomes an output, read by an
//!   [`Op::Extract`] node that takes over the name.
//!
//! The group's code goes through an e-graph ([egg]) in the language of
//! `lang.rs`, rewritten by the rules of `rules.rs` (`x * 1 => x`, Norse's
//! reset `(1 - z) v + z c => select(z, c, v)`, ...), and comes back as the
//! cheapest equivalent program by the cost model of `cost.rs` (bytes moved
//! plus operations). The runner is bounded by iterations and e-nodes
//! ([`Fuse::iter_limit`], [`Fuse::node_limit`]), never by time, so the
//! result does not depend on the machine; the report says why each
//! e-graph stopped. A group is split where fusing it whole would make a
//! cycle among the kernels (a value leaving the group and coming back
//! through a non-fusible op, or through another kernel), and the region is reordered (stable topological order, each
//! kernel where its first op was) so that every operand comes before use.
//! The module is compacted afterwards.
//!
//! **What it needs.** A valid module. Groups may already contain `fused`
//! nodes from an earlier run; those are inputs like any non-elementwise op.
//!
//! **What it preserves.** Every value the module computes, bit for bit in
//! the interpreter (`f32` or `f64`): the default rules are value-exact for
//! every input, infinities and NaN included, and constant folding rounds as
//! the interpreter does. With [`Fuse::assume_finite`] the reset rules of
//! `rules.rs` also apply (`(1 - z) v + z c => select(z, c, v)`); they are
//! exact only for a finite membrane that is not `-0` (Norse gives NaN for a
//! diverged, infinite membrane, `select` the reset value), so they are off
//! by default. It does **not** preserve gradient structure:
//! `stop_gradient` disappears, so differentiate the unfused module (DESIGN.md:
//! forward IR, then autodiff, then the passes on both) and fuse its
//! result. Names of traces, states, outputs and parameters are kept; the
//! unfused constants of the preamble stay for `dce` to remove.

pub mod convert;
pub mod cost;
pub mod fold;
pub mod lang;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use egg::{Id, Language, Runner, StopReason};
use snnc_ir::{Dtype, FusedKernel, Handle, KernelInst, Module, Node, Op};

use crate::{Pass, PassError, PassReport};
use convert::{body_to_expr, expr_to_body, extract, op_to_inst};
use lang::{KernelAnalysis, KernelGraph};

/// The neuron fusion pass (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fuse {
    /// The most e-graph iterations per kernel.
    pub iter_limit: usize,
    /// The most e-nodes per kernel's e-graph.
    pub node_limit: usize,
    /// Also apply the rules that are exact only for finite values (the
    /// reset rules; see `rules.rs`). Off by default: a diverged membrane
    /// must give Norse's NaN.
    pub assume_finite: bool,
}

impl Default for Fuse {
    fn default() -> Self {
        Fuse { iter_limit: 30, node_limit: 10_000, assume_finite: false }
    }
}

impl Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn run(&self, module: &mut Module) -> Result<PassReport, PassError> {
        Ok(self.fuse(module))
    }
}

/// A constant value known at compile time: the value (exact in the module's
/// float type) and its dtype (the module's float or spike).
type Constant = (f64, Dtype);

impl Fuse {
    fn fuse(&self, module: &mut Module) -> PassReport {
        let mut report = PassReport::default();
        let mut constants = constant_values(module);
        let mut users = users(module);
        let mut kernels = 0usize;
        let mut ops_before = 0usize;
        let mut ops_after = 0usize;
        for r in 0..module.body.len() {
            let groups = find_groups(module, r, &constants);
            let mut placed = Vec::new();
            for members in groups {
                let Some(made) = self.make_kernel(module, &members, &constants, &users, kernels) else {
                    continue;
                };
                // The new nodes are not constants, and only later kernels
                // (which see them as inputs) use them.
                constants.resize(module.nodes.len(), None);
                users.resize(module.nodes.len(), Vec::new());
                kernels += 1;
                ops_before += members.len();
                ops_after += made.ops;
                report.note(made.note);
                placed.push(Placed { members, fused: made.fused, extracts: made.extracts });
            }
            if !placed.is_empty() {
                reorder_region(module, r, &placed);
            }
        }
        if kernels > 0 {
            snnc_ir::compact(module);
        }
        report.note(format!("{kernels} kernel(s) from {ops_before} elementwise ops; {ops_after} ops in the kernels"));
        report
    }

    /// Builds the kernel of one group, rewires the group's users to its
    /// outputs, and returns the new nodes (not yet placed in a region).
    /// Returns `None` (and changes nothing) if the kernel would not type as
    /// the group did, which would be a bug in this pass.
    fn make_kernel(
        &self,
        module: &mut Module,
        members: &[Handle<Node>],
        constants: &[Option<Constant>],
        users: &[Vec<Handle<Node>>],
        serial: usize,
    ) -> Option<MadeKernel> {
        let float = module.float;
        let in_group: BTreeSet<Handle<Node>> = members.iter().copied().collect();

        // The group as a kernel body: inputs, then constants, then members.
        let mut inputs: Vec<Handle<Node>> = Vec::new();
        let mut consts: Vec<Constant> = Vec::new();
        for &m in members {
            for a in module.nodes[m].op.operands() {
                if in_group.contains(&a) {
                    continue;
                }
                match constants[a.index()] {
                    Some(c) if !consts.iter().any(|d| same_constant(*d, c)) => consts.push(c),
                    Some(_) => {}
                    None if !inputs.contains(&a) => inputs.push(a),
                    None => {}
                }
            }
        }
        let mut body: Vec<KernelInst> = (0..inputs.len() as u32).map(KernelInst::Input).collect();
        body.extend(consts.iter().map(|&(value, dtype)| KernelInst::Const { value, dtype }));
        let mut index: BTreeMap<Handle<Node>, u32> = BTreeMap::new();
        for &m in members {
            let inst = op_to_inst(&module.nodes[m].op, |a| {
                if let Some(&k) = index.get(&a) {
                    k
                } else if let Some(c) = constants[a.index()] {
                    (inputs.len() + consts.iter().position(|d| same_constant(*d, c)).expect("collected")) as u32
                } else {
                    inputs.iter().position(|&h| h == a).expect("collected") as u32
                }
            })
            .expect("members are elementwise");
            index.insert(m, body.len() as u32);
            body.push(inst);
        }

        // Outputs: members used outside the group, module outputs, names.
        let module_outputs: BTreeSet<Handle<Node>> = module.outputs.iter().map(|o| o.value).collect();
        let outs: Vec<Handle<Node>> = members
            .iter()
            .copied()
            .filter(|&m| {
                module.nodes[m].name.is_some()
                    || module_outputs.contains(&m)
                    || users[m.index()].iter().any(|u| !in_group.contains(u))
            })
            .collect();
        if outs.is_empty() {
            return None;
        }
        let out_index: Vec<u32> = outs.iter().map(|m| index[m]).collect();

        // Rewrite and extract.
        let input_dtypes: Vec<Dtype> = inputs.iter().map(|&h| module.nodes[h].ty.dtype).collect();
        let (expr, roots) = body_to_expr(&body, &out_index);
        let mut egraph = KernelGraph::new(KernelAnalysis::new(float, input_dtypes.clone()));
        let ids: Vec<Id> = expr.as_ref().iter().fold(Vec::new(), |mut ids, node| {
            let node = node.clone().map_children(|c| ids[usize::from(c)]);
            ids.push(egraph.add(node));
            ids
        });
        let roots: Vec<Id> = roots.iter().map(|&r| ids[usize::from(r)]).collect();
        egraph.rebuild();
        let runner: Runner<_, _, ()> = Runner::new(KernelAnalysis::new(float, input_dtypes))
            .with_egraph(egraph)
            .with_iter_limit(self.iter_limit)
            .with_node_limit(self.node_limit)
            .with_time_limit(Duration::MAX)
            .run(&if self.assume_finite { rules::rules() } else { rules::exact_rules() });
        let (best, best_roots) = extract(&runner.egraph, &roots);
        let (new_body, new_outputs) = expr_to_body(&best, &best_roots, float);
        // Inputs no longer read (a rule proved them unneeded) are dropped.
        let (new_inputs, new_body) = drop_unused_inputs(&inputs, new_body);

        let name = kernel_name(module, members, &inputs, &outs, users, serial);
        let kernel = FusedKernel { name: name.clone(), inputs: new_inputs, body: new_body, outputs: new_outputs };
        let (Some(types), _) = snnc_ir::typing::check_kernel(module, &kernel) else {
            return None;
        };
        if types.iter().zip(&outs).any(|(t, &m)| *t != module.nodes[m].ty) {
            return None;
        }
        let ops = kernel.body.iter().filter(|i| !matches!(i, KernelInst::Input(_) | KernelInst::Const { .. })).count();
        let note = format!(
            "kernel `{name}`: {} ops -> {ops} ops, {} input(s), {} output(s); e-graph {} after {} iteration(s), {} e-nodes",
            members.len(),
            kernel.inputs.len(),
            kernel.outputs.len(),
            stop_reason(runner.stop_reason.as_ref()),
            runner.iterations.len(),
            runner.egraph.total_size(),
        );

        let fused = module.nodes.append(Node { op: Op::Fused(Box::new(kernel)), ty: types[0].clone(), name: None });
        let mut extracts = Vec::with_capacity(outs.len());
        let mut rename = BTreeMap::new();
        for (k, (&m, ty)) in outs.iter().zip(types).enumerate() {
            let name = module.nodes[m].name.take();
            let e = module.nodes.append(Node { op: Op::Extract { kernel: fused, index: k as u32 }, ty, name });
            extracts.push(e);
            rename.insert(m, e);
        }
        for h in module.nodes.handles() {
            if h == fused || in_group.contains(&h) {
                continue;
            }
            module.nodes[h].op.map_operands(|a| rename.get(&a).copied().unwrap_or(a));
        }
        for o in &mut module.outputs {
            o.value = rename.get(&o.value).copied().unwrap_or(o.value);
        }
        Some(MadeKernel { fused, extracts, ops, note })
    }
}

/// A kernel made from a group: its nodes, its op count and a report line.
struct MadeKernel {
    fused: Handle<Node>,
    extracts: Vec<Handle<Node>>,
    ops: usize,
    note: String,
}

/// A kernel that replaces a group of a region.
struct Placed {
    /// The group, in region order.
    members: Vec<Handle<Node>>,
    fused: Handle<Node>,
    extracts: Vec<Handle<Node>>,
}

fn same_constant(a: Constant, b: Constant) -> bool {
    a.0.to_bits() == b.0.to_bits() && a.1 == b.1
}

fn stop_reason(reason: Option<&StopReason>) -> String {
    match reason {
        Some(StopReason::Saturated) => "saturated".into(),
        Some(StopReason::IterationLimit(n)) => format!("hit the iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("hit the node limit ({n} e-nodes)"),
        Some(StopReason::TimeLimit(s)) => format!("hit the time limit ({s} s)"),
        Some(StopReason::Other(why)) => format!("stopped: {why}"),
        None => "did not run".into(),
    }
}

/// The compile-time value of every node that is a constant or an
/// elementwise expression of constants, computed as the interpreter would.
/// Values whose dtype is neither the module's float nor spike, and NaN
/// values (which no constant may hold), are left unknown.
pub fn constant_values(module: &Module) -> Vec<Option<Constant>> {
    let mut res: Vec<Option<Constant>> = vec![None; module.nodes.len()];
    for region in &module.body {
        for &h in &region.nodes {
            let node = &module.nodes[h];
            if !node.op.is_elementwise() {
                continue;
            }
            let args: Option<Vec<f64>> = node.op.operands().iter().map(|a| res[a.index()].map(|c| c.0)).collect();
            let Some(args) = args else { continue };
            let mut k = 0;
            let inst = op_to_inst(&node.op, |_| {
                k += 1;
                k - 1
            })
            .expect("elementwise");
            let dtype = node.ty.dtype;
            if dtype != module.float && dtype != Dtype::Spike {
                continue;
            }
            if let Some(v) = fold::fold(module.float, &inst, &args).filter(|v| !v.is_nan()) {
                res[h.index()] = Some((v, dtype));
            }
        }
    }
    res
}

/// The users of every node (each user once, in handle order).
fn users(module: &Module) -> Vec<Vec<Handle<Node>>> {
    let mut res = vec![Vec::new(); module.nodes.len()];
    for (h, node) in module.nodes.iter() {
        for a in node.op.operands() {
            if res[a.index()].last() != Some(&h) {
                res[a.index()].push(h);
            }
        }
    }
    res
}

/// The groups of region `r` worth fusing (two or more members), each in
/// region order, ordered by their first member.
///
/// Members are the region's elementwise nodes that are not compile-time
/// constants. Two members' groups join when one member is an operand of
/// the other and both have the same full shape; then two groups of the same
/// shape join when they read the same value of that shape (so it is read
/// once). A join happens only if the union stays convex (no path leaves it
/// and comes back through a non-member). Candidates are tried in region
/// order, so the result is deterministic.
fn find_groups(module: &Module, r: usize, constants: &[Option<Constant>]) -> Vec<Vec<Handle<Node>>> {
    let nodes = &module.body[r].nodes;
    let pos: BTreeMap<Handle<Node>, usize> = nodes.iter().enumerate().map(|(i, &h)| (h, i)).collect();
    let is_member: Vec<bool> =
        nodes.iter().map(|&h| module.nodes[h].op.is_elementwise() && constants[h.index()].is_none()).collect();
    // Union-find over positions; `sets[root]` lists a group's positions.
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    let mut sets: Vec<Vec<usize>> = (0..nodes.len()).map(|i| vec![i]).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let full = |h: Handle<Node>| {
        let t = &module.nodes[h].ty;
        (t.seq, &t.shape)
    };
    // The region's operand edges, by position.
    let operand_pos: Vec<Vec<usize>> = nodes
        .iter()
        .map(|&h| module.nodes[h].op.operands().iter().filter_map(|a| pos.get(a).copied()).collect())
        .collect();
    for (b, &hb) in nodes.iter().enumerate() {
        if !is_member[b] {
            continue;
        }
        for ha in module.nodes[hb].op.operands() {
            let Some(&a) = pos.get(&ha) else { continue };
            if !is_member[a] || full(ha) != full(hb) {
                continue;
            }
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            if ra == rb {
                continue;
            }
            if !stays_acyclic(&operand_pos, &is_member, &mut parent, ra, rb) {
                continue;
            }
            let mut union: Vec<usize> = sets[ra].iter().chain(&sets[rb]).copied().collect();
            union.sort_unstable();
            parent[rb] = ra;
            sets[rb].clear();
            sets[ra] = union;
        }
    }
    // Then groups of the same shape that read the same full-size value
    // (a population's current, read by its voltage update and by its own
    // decay), so that the value is read once.
    let mut reader: BTreeMap<Handle<Node>, usize> = BTreeMap::new();
    for (b, &hb) in nodes.iter().enumerate() {
        if !is_member[b] {
            continue;
        }
        for ha in module.nodes[hb].op.operands() {
            let member = pos.get(&ha).is_some_and(|&a| is_member[a]);
            if member || constants[ha.index()].is_some() || full(ha) != full(hb) {
                continue;
            }
            let Some(&first) = reader.get(&ha) else {
                reader.insert(ha, b);
                continue;
            };
            let (ra, rb) = (find(&mut parent, first), find(&mut parent, b));
            if ra == rb || full(nodes[ra]) != full(hb) {
                continue;
            }
            if !stays_acyclic(&operand_pos, &is_member, &mut parent, ra, rb) {
                continue;
            }
            let mut union: Vec<usize> = sets[ra].iter().chain(&sets[rb]).copied().collect();
            union.sort_unstable();
            parent[rb] = ra;
            sets[rb].clear();
            sets[ra] = union;
        }
    }
    let mut groups: Vec<Vec<Handle<Node>>> = (0..nodes.len())
        .filter(|&i| find(&mut parent, i) == i && is_member[i] && sets[i].len() >= 2)
        .map(|i| sets[i].iter().map(|&p| nodes[p]).collect())
        .collect();
    groups.sort_by_key(|g| pos[&g[0]]);
    groups
}

/// Whether merging the groups with roots `ra` and `rb` keeps the graph of
/// kernels acyclic. A kernel runs as one node, so it needs all its inputs
/// before any of its outputs exist: the test is on the quotient graph
/// (each group one node), not on single ops. (A set can be convex on its
/// own and still close a cycle through another group: a value leaving it
/// reaches one op of a group whose other op feeds it back.) `parent` is
/// the union-find forest of the groups so far (`find` compresses paths).
fn stays_acyclic(operand_pos: &[Vec<usize>], is_member: &[bool], parent: &mut [usize], ra: usize, rb: usize) -> bool {
    let n = operand_pos.len();
    let mut unit: Vec<usize> = (0..n)
        .map(|p| {
            if !is_member[p] {
                return p;
            }
            let mut i = p;
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        })
        .collect();
    for u in &mut unit {
        if *u == rb {
            *u = ra;
        }
    }
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (p, ops) in operand_pos.iter().enumerate() {
        for &q in ops {
            if unit[q] != unit[p] {
                succ[unit[q]].push(unit[p]);
            }
        }
    }
    // A path from the merged unit back to itself through another unit.
    let mut seen = vec![false; n];
    let mut stack: Vec<usize> = succ[ra].clone();
    while let Some(u) = stack.pop() {
        if u == ra {
            return false;
        }
        if !std::mem::replace(&mut seen[u], true) {
            stack.extend(succ[u].iter().copied());
        }
    }
    true
}

/// Drops the kernel inputs the body no longer reads and renumbers the rest.
fn drop_unused_inputs(inputs: &[Handle<Node>], body: Vec<KernelInst>) -> (Vec<Handle<Node>>, Vec<KernelInst>) {
    let used: BTreeSet<u32> =
        body.iter().filter_map(|i| if let KernelInst::Input(k) = i { Some(*k) } else { None }).collect();
    let renumber: BTreeMap<u32, u32> = used.iter().enumerate().map(|(new, &old)| (old, new as u32)).collect();
    let new_inputs = used.iter().map(|&k| inputs[k as usize]).collect();
    let body = body
        .into_iter()
        .map(|i| match i {
            KernelInst::Input(k) => KernelInst::Input(renumber[&k]),
            other => other,
        })
        .collect();
    (new_inputs, body)
}

/// The kernel's name: the layer prefix (the text before the first `.`)
/// shared by the states the group reads (through its inputs) and writes
/// (through its outputs), which name the neuron population (`lif1` from
/// `$lif1.v` and `$lif1.i`); for a group without states, the prefix shared
/// by its members' names (`fc1` from `fc1.out`); else `k<serial>`.
fn kernel_name(
    module: &Module,
    members: &[Handle<Node>],
    inputs: &[Handle<Node>],
    outs: &[Handle<Node>],
    users: &[Vec<Handle<Node>>],
    serial: usize,
) -> String {
    let mut states: Vec<&str> = Vec::new();
    for &h in inputs {
        if let Op::StateRead(s) = module.nodes[h].op {
            states.push(&module.states[s].name);
        }
    }
    for &m in outs {
        for &u in &users[m.index()] {
            if let Op::StateWrite { state, .. } = module.nodes[u].op {
                states.push(&module.states[state].name);
            }
        }
    }
    let names: Vec<&str> = if states.is_empty() {
        members.iter().filter_map(|&m| module.nodes[m].name.as_deref()).collect()
    } else {
        states
    };
    let prefixes: BTreeSet<&str> = names.iter().map(|n| n.split('.').next().unwrap_or(n)).collect();
    match (prefixes.len(), prefixes.first()) {
        (1, Some(p)) if !p.is_empty() => p.to_string(),
        _ => format!("k{serial}"),
    }
}

/// Puts the kernels of region `r` in place of their groups: the members
/// leave the region, and the region is put in a stable topological order in
/// which each kernel sits where its group's first member was, followed by
/// its extracts (a node never moves before an earlier node it doesn't
/// depend on being ready; state reads keep preceding their writes, as they
/// have no operands and come first in the old order).
fn reorder_region(module: &mut Module, r: usize, placed: &[Placed]) {
    let old = std::mem::take(&mut module.body[r].nodes);
    let pos: BTreeMap<Handle<Node>, usize> = old.iter().enumerate().map(|(i, &h)| (h, i)).collect();
    let removed: BTreeSet<Handle<Node>> = placed.iter().flat_map(|p| p.members.iter().copied()).collect();
    // Priority: (old position, 0) for kept nodes; a kernel takes its first
    // member's position, its extracts follow it.
    let mut key: BTreeMap<Handle<Node>, (usize, usize)> = BTreeMap::new();
    for &h in &old {
        if !removed.contains(&h) {
            key.insert(h, (pos[&h], 0));
        }
    }
    for kernel in placed {
        let p = pos[&kernel.members[0]];
        key.insert(kernel.fused, (p, 1));
        for (k, &e) in kernel.extracts.iter().enumerate() {
            key.insert(e, (p, 2 + k));
        }
    }
    // Kahn's algorithm, always taking the ready node with the least key.
    let mut waiting: BTreeMap<Handle<Node>, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<Handle<Node>, Vec<Handle<Node>>> = BTreeMap::new();
    let mut ready: BTreeSet<((usize, usize), Handle<Node>)> = BTreeSet::new();
    for (&h, &k) in &key {
        let deps: BTreeSet<Handle<Node>> =
            module.nodes[h].op.operands().into_iter().filter(|a| key.contains_key(a)).collect();
        for &d in &deps {
            dependents.entry(d).or_default().push(h);
        }
        if deps.is_empty() {
            ready.insert((k, h));
        } else {
            waiting.insert(h, deps.len());
        }
    }
    let mut order = Vec::with_capacity(key.len());
    while let Some((_, h)) = ready.pop_first() {
        order.push(h);
        for &d in dependents.get(&h).map_or(&[][..], Vec::as_slice) {
            let n = waiting.get_mut(&d).expect("a dependent waits");
            *n -= 1;
            if *n == 0 {
                waiting.remove(&d);
                ready.insert((key[&d], d));
            }
        }
    }
    // Groups are convex, so there is no cycle; were there one (a bug), the
    // nodes left are appended so that the validator reports it.
    debug_assert!(waiting.is_empty(), "fusion made a cycle in region {r}");
    let mut left: Vec<(&(usize, usize), &Handle<Node>)> =
        key.iter().filter(|(h, _)| waiting.contains_key(h)).map(|(h, k)| (k, h)).collect();
    left.sort();
    order.extend(left.into_iter().map(|(_, &h)| h));
    module.body[r].nodes = order;
}
