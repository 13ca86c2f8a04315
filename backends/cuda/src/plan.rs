//! The plan of a module: which launches compute which nodes, and where
//! every value lives on the device.
//!
//! # Values and their roots
//!
//! Many nodes compute nothing: `reshape`, `stop_gradient`, `cast` (spikes
//! are f32 0/1, so a cast is the identity), `state_write` (its value) and
//! `extract` (an output of its `fused` node) are *views*. Every node has a
//! *root* [`Val`]: the node (and kernel output) that really holds its
//! value. Roots are *leaves* (`input`, `param`, `const`, `state_read`,
//! `step`, `collect`), *elementwise* (`fused` and the unfused elementwise
//! ops, `uniform`) or *heavy* (everything else: products, convolutions,
//! pooling, reductions, the backward ops).
//!
//! # Units
//!
//! A region is cut into *units*, in node order: each heavy node is one
//! unit (one kernel, or three for `spike_matmul`), and consecutive
//! elementwise nodes whose element counts divide each other form one
//! *group* (one elementwise kernel, see `ew.rs`). A step loop without heavy
//! nodes whose elementwise nodes, states and collected values fit one
//! group is run by one *loop kernel* ([`Mode::Whole`]): the time loop
//! inside, states in registers. Other step loops run step by step
//! ([`Mode::PerStep`]): their units are launched once per step.
//!
//! # Storage
//!
//! A root needs a buffer when another unit, region or the module's outputs
//! read it. Sequence regions store `[T, B, ...]` values; per-step loops
//! store a per-step value in a `[B, ...]` buffer reused at every step, or,
//! when a later `collect` reads it, straight into row `t` of the collect
//! buffer. A loop kernel writes its collected values into row `t` of their
//! collect buffers itself.
//!
//! States of a per-step loop live in their state buffers. The group that
//! computes a state's next value writes it in place when no later launch
//! of the step reads the state (and the state has the group's size);
//! otherwise the value is stored and copied into the state buffer at the
//! end of the step. A collected `state_read` (or one whose value becomes
//! another state) is first copied ("snapshot") at the start of the step:
//! by the step's first group (no state is written in place before it,
//! only groups do that) or by a copy kernel of its own.

use std::collections::{BTreeMap, BTreeSet};

use snnc_ir::layer::describe;
use snnc_ir::{Dim, Dtype, Handle, Module, Node, Op, RegionKind, Type};

use crate::CudaError;
use crate::manifest::{Buffer, Count, Role};

/// A value: output `out` of node `node` (`out` is 0 except for `fused`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Val {
    pub node: Handle<Node>,
    pub out: u32,
}

impl Val {
    pub(crate) fn of(node: Handle<Node>) -> Self {
        Val { node, out: 0 }
    }
}

/// What a node is, for planning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Has a value without computing: inputs, parameters, constants, state
    /// reads, `step` rows, `collect` buffers.
    Leaf,
    /// Another node's value (see the module docs).
    View,
    /// Elementwise: runs inside a group kernel.
    Elementwise,
    /// Everything else: its own kernel(s).
    Heavy,
}

fn class(op: &Op) -> Class {
    match op {
        Op::Input(_) | Op::Param(_) | Op::Const { .. } | Op::StateRead(_) | Op::Step(_) | Op::Collect(_) => Class::Leaf,
        Op::Reshape { .. } | Op::StopGradient(_) | Op::Cast { .. } | Op::Extract { .. } | Op::StateWrite { .. } => {
            Class::View
        }
        Op::Unary { .. }
        | Op::Binary { .. }
        | Op::Compare { .. }
        | Op::Select { .. }
        | Op::Threshold { .. }
        | Op::Fused(_)
        | Op::Uniform { .. } => Class::Elementwise,
        _ => Class::Heavy,
    }
}

/// How a region runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A sequence region: every unit once.
    Seq,
    /// A step loop as one kernel with the time loop inside.
    Whole,
    /// A step loop whose units are launched at every step.
    PerStep,
}

/// A launch unit of a region.
#[derive(Clone, Debug)]
pub(crate) enum Unit {
    /// Elementwise nodes run by one kernel of `size` threads.
    Group { members: Vec<Handle<Node>>, size: Count },
    /// One heavy node.
    Heavy(Handle<Node>),
}

/// Where a stored value lives: buffer `buf`, or its row `t` when `row`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub buf: usize,
    pub row: bool,
}

/// Where a kernel reads a value from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Source {
    /// A constant.
    Imm(f32),
    /// The register of a state (loop kernels).
    State(usize),
    /// Element `idx` of buffer `buf`: of the row of step `t` when `host_row`
    /// (the runtime offsets the address) or when `t_row` is the row size
    /// (the kernel indexes by its own `t`).
    Buf { buf: usize, host_row: bool, t_row: Option<Count> },
}

/// The state traffic of a per-step loop.
#[derive(Clone, Debug, Default)]
pub(crate) struct StepStates {
    /// Copies at the start of every step: a value into a location
    /// (collected leaves, snapshots of state reads).
    pub start: Vec<(Val, Loc)>,
    /// Per group unit (index into `Plan::units`): states it writes in
    /// place, with their value.
    pub in_place: BTreeMap<usize, Vec<(usize, Val)>>,
    /// Copies at the end of every step: state, value.
    pub end: Vec<(usize, Val)>,
}

/// The plan of a module (see the module docs).
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub m: &'a Module,
    /// The region of every node (from `ModuleInfo`).
    pub region_of: Vec<usize>,
    pub root: Vec<Val>,
    pub class: Vec<Class>,
    /// The types of every output of each `fused` node.
    pub out_types: BTreeMap<Handle<Node>, Vec<Type>>,
    pub modes: Vec<Mode>,
    pub units: Vec<Unit>,
    /// Per region: its units (indices into `units`), in order.
    pub region_units: Vec<Vec<usize>>,
    /// The unit of every elementwise or heavy node.
    pub unit_of: Vec<Option<usize>>,
    pub buffers: Vec<Buffer>,
    pub input_buf: Vec<usize>,
    pub param_buf: Vec<usize>,
    pub state_buf: Vec<usize>,
    /// Stored values: computed roots read elsewhere, snapshots.
    pub loc: BTreeMap<Val, Loc>,
    /// The collect buffer of every collected step-loop root.
    pub collect_buf: BTreeMap<Val, usize>,
    /// Per per-step region: its state traffic.
    pub step_states: BTreeMap<usize, StepStates>,
    /// The scratch buffers of every `spike_matmul`: the transposed weight,
    /// the non-finite-column flags, the active-input lists and their
    /// lengths.
    pub scratch: BTreeMap<Handle<Node>, [usize; 4]>,
}

fn unsupported(what: impl Into<String>) -> CudaError {
    CudaError::Unsupported(what.into())
}

/// The element count of a type's full dims (time included).
pub(crate) fn count_of(steps: u32, ty: &Type) -> Count {
    let mut c = Count { batch: false, fixed: 1 };
    for d in ty.full_dims(steps) {
        match d {
            Dim::Batch => c.batch = true,
            Dim::Fixed(n) => c.fixed = c.fixed.saturating_mul(u64::from(n)),
        }
    }
    c
}

/// The element count of dims.
pub(crate) fn count_dims(dims: &[Dim]) -> Count {
    let mut c = Count { batch: false, fixed: 1 };
    for d in dims {
        match d {
            Dim::Batch => c.batch = true,
            Dim::Fixed(n) => c.fixed = c.fixed.saturating_mul(u64::from(*n)),
        }
    }
    c
}

/// The larger of two counts when one divides the other.
fn merge(a: Count, b: Count) -> Option<Count> {
    if b.divides(a) {
        Some(a)
    } else if a.divides(b) {
        Some(b)
    } else {
        None
    }
}

fn dim_strings(dims: &[Dim]) -> Vec<String> {
    dims.iter().map(|d| d.to_string()).collect()
}

impl<'a> Plan<'a> {
    pub(crate) fn new(m: &'a Module, region_of: &[usize]) -> Result<Self, CudaError> {
        let n = m.nodes.len();
        let mut plan = Plan {
            m,
            region_of: region_of.to_vec(),
            root: Vec::with_capacity(n),
            class: Vec::with_capacity(n),
            out_types: BTreeMap::new(),
            modes: Vec::new(),
            units: Vec::new(),
            region_units: Vec::new(),
            unit_of: vec![None; n],
            buffers: Vec::new(),
            input_buf: Vec::new(),
            param_buf: Vec::new(),
            state_buf: Vec::new(),
            loc: BTreeMap::new(),
            collect_buf: BTreeMap::new(),
            step_states: BTreeMap::new(),
            scratch: BTreeMap::new(),
        };
        plan.roots()?;
        plan.partition()?;
        plan.storage()?;
        Ok(plan)
    }

    /// The type of a value.
    pub(crate) fn ty(&self, v: Val) -> &Type {
        if v.out == 0 { &self.m.nodes[v.node].ty } else { &self.out_types[&v.node][v.out as usize] }
    }

    /// The element count of a value (time included).
    pub(crate) fn size(&self, v: Val) -> Count {
        count_of(self.m.steps, self.ty(v))
    }

    /// The root of a node.
    pub(crate) fn root_of(&self, h: Handle<Node>) -> Val {
        self.root[h.index()]
    }

    fn class_of(&self, v: Val) -> Class {
        self.class[v.node.index()]
    }

    /// Whether a value is computed by a kernel (not a leaf).
    pub(crate) fn computed(&self, v: Val) -> bool {
        matches!(self.class_of(v), Class::Elementwise | Class::Heavy)
    }

    /// The region of a node.
    pub(crate) fn region(&self, h: Handle<Node>) -> usize {
        self.region_of[h.index()]
    }

    // ---- roots ----

    fn roots(&mut self) -> Result<(), CudaError> {
        let m = self.m;
        for (h, node) in m.nodes.iter() {
            let c = class(&node.op);
            self.class.push(c);
            let root = match node.op {
                Op::Reshape { arg, .. } | Op::StopGradient(arg) | Op::StateWrite { value: arg, .. } => {
                    self.root[arg.index()]
                }
                Op::Cast { arg, dtype } => {
                    if dtype == Dtype::F64 {
                        return Err(unsupported(format!(
                            "{}: a cast to f64 (the CUDA backend runs f32)",
                            describe(m, h)
                        )));
                    }
                    self.root[arg.index()]
                }
                Op::Extract { kernel, index } => Val { node: kernel, out: index },
                _ => Val::of(h),
            };
            self.root.push(root);
            if let Op::Fused(kernel) = &node.op {
                let (types, errors) = snnc_ir::typing::check_kernel(m, kernel);
                let types = types
                    .ok_or_else(|| CudaError::Invalid(format!("kernel `{}`: {}", kernel.name, errors.join("; "))))?;
                self.out_types.insert(h, types);
            }
            let size = count_of(m.steps, &node.ty);
            if size.fixed == 0 {
                return Err(unsupported(format!("{}: an empty value ({})", describe(m, h), node.ty)));
            }
            if size.fixed > u64::from(u32::MAX) / 2 {
                return Err(unsupported(format!(
                    "{}: {} elements per sample (32-bit indices need fewer than 2^31)",
                    describe(m, h),
                    size.fixed
                )));
            }
        }
        Ok(())
    }
}

impl Plan<'_> {
    // ---- units ----

    fn partition(&mut self) -> Result<(), CudaError> {
        let m = self.m;
        let collected = self.collected_roots();
        for (ri, region) in m.body.iter().enumerate() {
            let mut units = Vec::new();
            let mode = if region.kind == RegionKind::Seq {
                Mode::Seq
            } else if let Some(size) = self.whole_loop_size(ri, &collected) {
                let members: Vec<_> =
                    region.nodes.iter().copied().filter(|h| self.class[h.index()] == Class::Elementwise).collect();
                if let Some(size) = size {
                    for &h in &members {
                        self.unit_of[h.index()] = Some(self.units.len());
                    }
                    units.push(self.units.len());
                    self.units.push(Unit::Group { members, size });
                }
                self.modes.push(Mode::Whole);
                self.region_units.push(units);
                continue;
            } else {
                Mode::PerStep
            };
            let mut open: Option<usize> = None;
            for &h in &region.nodes {
                match self.class[h.index()] {
                    Class::Elementwise => {
                        let size = count_of(m.steps, &m.nodes[h].ty);
                        if let Some(u) = open
                            && let Unit::Group { members, size: gs } = &mut self.units[u]
                            && let Some(ns) = merge(*gs, size)
                        {
                            members.push(h);
                            *gs = ns;
                            self.unit_of[h.index()] = Some(u);
                            continue;
                        }
                        let u = self.units.len();
                        self.units.push(Unit::Group { members: vec![h], size });
                        self.unit_of[h.index()] = Some(u);
                        units.push(u);
                        open = Some(u);
                    }
                    Class::Heavy => {
                        let u = self.units.len();
                        self.units.push(Unit::Heavy(h));
                        self.unit_of[h.index()] = Some(u);
                        units.push(u);
                        open = None;
                    }
                    Class::Leaf | Class::View => {}
                }
            }
            self.modes.push(mode);
            self.region_units.push(units);
        }
        Ok(())
    }

    /// The roots some `collect` reads.
    fn collected_roots(&self) -> BTreeSet<Val> {
        self.m
            .nodes
            .iter()
            .filter_map(|(_, n)| if let Op::Collect(x) = n.op { Some(self.root[x.index()]) } else { None })
            .collect()
    }

    /// `Some(size)` when step loop `ri` can run as one loop kernel (`size`
    /// its thread count, `None` for a loop with nothing to compute).
    fn whole_loop_size(&self, ri: usize, collected: &BTreeSet<Val>) -> Option<Option<Count>> {
        let m = self.m;
        let region = &m.body[ri];
        let mut size: Option<Count> = None;
        let mut add = |c: Count| -> bool {
            size = match size {
                None => Some(c),
                Some(s) => merge(s, c),
            };
            size.is_some()
        };
        for &h in &region.nodes {
            let node = &m.nodes[h];
            match self.class[h.index()] {
                Class::Heavy => return None,
                Class::Elementwise => {
                    if !add(count_of(m.steps, &node.ty)) {
                        return None;
                    }
                }
                Class::View | Class::Leaf => {}
            }
            if let Op::StateWrite { state, .. } = node.op
                && !add(count_of(m.steps, &m.states[state].ty))
            {
                return None;
            }
        }
        for v in collected {
            if self.region(v.node) == ri && !add(self.size(*v)) {
                return None;
            }
        }
        Some(size)
    }
}

impl Plan<'_> {
    // ---- storage ----

    fn add_buffer(&mut self, name: String, role: Role, node: Option<Handle<Node>>, dtype: &str, dims: &[Dim]) -> usize {
        let c = count_dims(dims);
        let id = self.buffers.len();
        self.buffers.push(Buffer {
            id,
            name,
            role,
            nodes: node.map(|h| h.index() as u32).into_iter().collect(),
            dtype: dtype.to_string(),
            storage: if dtype == "u32" { "u32".into() } else { "f32".into() },
            dims: dim_strings(dims),
            batched: c.batch,
            bytes_per_sample: c.fixed.saturating_mul(4),
        });
        id
    }

    /// A display name for a value's buffer.
    fn val_name(&self, v: Val) -> String {
        let node = &self.m.nodes[v.node];
        let base = node.name.clone().unwrap_or_else(|| format!("%{}", v.node.index()));
        if v.out == 0 { base } else { format!("{base}#{}", v.out) }
    }

    /// The operands of an elementwise or heavy node (a `fused` node's
    /// inputs).
    pub(crate) fn operands(&self, h: Handle<Node>) -> Vec<Handle<Node>> {
        self.m.nodes[h].op.operands()
    }

    fn storage(&mut self) -> Result<(), CudaError> {
        let m = self.m;
        for (_, i) in m.inputs.iter() {
            let b = self.add_buffer(i.name.clone(), Role::Input, None, i.ty.dtype.name(), &i.ty.full_dims(m.steps));
            self.input_buf.push(b);
        }
        for (_, p) in m.params.iter() {
            let b = self.add_buffer(p.name.clone(), Role::Param, None, p.dtype.name(), &p.shape.0);
            self.param_buf.push(b);
        }
        for (_, s) in m.states.iter() {
            let b = self.add_buffer(s.name.clone(), Role::State, None, s.ty.dtype.name(), &s.ty.full_dims(m.steps));
            self.state_buf.push(b);
        }

        // Which computed roots other units read.
        let collected = self.collected_roots();
        let mut need: BTreeSet<Val> = BTreeSet::new();
        for (h, node) in m.nodes.iter() {
            match (self.class[h.index()], &node.op) {
                (_, Op::Step(x)) => {
                    need.insert(self.root[x.index()]);
                }
                // A step loop writing a state from a value computed before
                // the loop (a delayed layer of loop-invariant input) reads
                // it from its buffer.
                (_, Op::StateWrite { value, .. }) => {
                    let r = self.root[value.index()];
                    if self.computed(r) && self.region(r.node) != self.region(h) {
                        need.insert(r);
                    }
                }
                (Class::Elementwise | Class::Heavy, _) => {
                    let u = self.unit_of[h.index()];
                    for a in self.operands(h) {
                        let r = self.root[a.index()];
                        if self.computed(r) && self.unit_of[r.node.index()] != u {
                            need.insert(r);
                        }
                    }
                }
                _ => {}
            }
        }
        for o in &m.outputs {
            let r = self.root[o.value.index()];
            if matches!(m.nodes[r.node].op, Op::Const { .. }) {
                return Err(unsupported(format!("output `{}` is a constant", o.name)));
            }
            need.insert(r);
        }

        // The states of per-step loops.
        let mut snaps: BTreeSet<Val> = BTreeSet::new();
        for (ri, region) in m.body.iter().enumerate() {
            if self.modes[ri] != Mode::PerStep {
                continue;
            }
            let units = self.region_units[ri].clone();
            let mut readers: BTreeMap<usize, usize> = BTreeMap::new();
            for (pos, &u) in units.iter().enumerate() {
                let nodes = match &self.units[u] {
                    Unit::Group { members, .. } => members.clone(),
                    Unit::Heavy(h) => vec![*h],
                };
                for h in nodes {
                    for a in self.operands(h) {
                        if let Op::StateRead(s) = m.nodes[self.root[a.index()].node].op {
                            let e = readers.entry(s.index()).or_insert(pos);
                            *e = (*e).max(pos);
                        }
                    }
                }
            }
            let mut st = StepStates::default();
            for &h in &region.nodes {
                let Op::StateWrite { state, value } = m.nodes[h].op else { continue };
                let s = state.index();
                let rv = self.root[value.index()];
                let writer =
                    if self.computed(rv) && self.region(rv.node) == ri { self.unit_of[rv.node.index()] } else { None };
                let state_size = count_of(m.steps, &m.states[state].ty);
                let in_place = writer.and_then(|u| {
                    let pos = units.iter().position(|&x| x == u)?;
                    let ok = matches!(&self.units[u], Unit::Group { size, .. } if *size == state_size)
                        && readers.get(&s).is_none_or(|&r| r <= pos);
                    ok.then_some(u)
                });
                match in_place {
                    Some(u) => st.in_place.entry(u).or_default().push((s, rv)),
                    None => {
                        st.end.push((s, rv));
                        if self.computed(rv) {
                            need.insert(rv);
                        } else if matches!(m.nodes[rv.node].op, Op::StateRead(_)) {
                            snaps.insert(rv);
                        }
                    }
                }
            }
            self.step_states.insert(ri, st);
        }

        // Buffers of computed values, collect buffers, snapshots.
        for (ri, region) in m.body.iter().enumerate() {
            let mode = self.modes[ri];
            for &h in &region.nodes {
                let outs = self.out_types.get(&h).map_or(1, Vec::len) as u32;
                for out in 0..outs {
                    let v = Val { node: h, out };
                    let computed = self.computed(v);
                    let heavy = self.class[h.index()] == Class::Heavy;
                    let ty = self.ty(v).clone();
                    let dtype = ty.dtype.name();
                    match mode {
                        Mode::Seq => {
                            if computed && (heavy || need.contains(&v)) {
                                let b = self.add_buffer(
                                    self.val_name(v),
                                    Role::Value,
                                    Some(h),
                                    dtype,
                                    &ty.full_dims(m.steps),
                                );
                                self.loc.insert(v, Loc { buf: b, row: false });
                            }
                        }
                        Mode::Whole => {
                            if collected.contains(&v) {
                                self.collect_buffer(v);
                            }
                        }
                        Mode::PerStep => {
                            let is_read = matches!(m.nodes[h].op, Op::StateRead(_));
                            if collected.contains(&v) {
                                let cb = self.collect_buffer(v);
                                let loc = Loc { buf: cb, row: true };
                                if computed || is_read {
                                    self.loc.insert(v, loc);
                                }
                                if !computed {
                                    self.step_states.get_mut(&ri).expect("made above").start.push((v, loc));
                                }
                            } else if (computed && (heavy || need.contains(&v))) || snaps.contains(&v) {
                                let b = self.add_buffer(self.val_name(v), Role::StepValue, Some(h), dtype, &ty.shape.0);
                                let loc = Loc { buf: b, row: false };
                                self.loc.insert(v, loc);
                                if !computed {
                                    self.step_states.get_mut(&ri).expect("made above").start.push((v, loc));
                                }
                            }
                        }
                    }
                }
                if let Op::MatMul { input, weight, kind: snnc_ir::MatMulKind::EventDriven } = m.nodes[h].op {
                    self.spike_scratch(h, input, weight);
                }
            }
        }
        for (h, node) in m.nodes.iter() {
            if let Op::Collect(x) = node.op
                && !self.collect_buf.contains_key(&self.root[x.index()])
            {
                return Err(unsupported(format!(
                    "{}: `collect` of a value computed outside the step loop",
                    describe(m, h)
                )));
            }
        }

        // Every node that views a buffer.
        for (h, node) in m.nodes.iter() {
            let b = match node.op {
                Op::Input(i) => Some(self.input_buf[i.index()]),
                Op::Param(p) => Some(self.param_buf[p.index()]),
                Op::Collect(x) => self.collect_buf.get(&self.root[x.index()]).copied(),
                _ => self.loc.get(&self.root[h.index()]).map(|l| l.buf),
            };
            if let Some(b) = b {
                let nodes = &mut self.buffers[b].nodes;
                if !nodes.contains(&(h.index() as u32)) {
                    nodes.push(h.index() as u32);
                }
            }
        }
        Ok(())
    }

    /// The collect buffer of a step-loop value (made on first use).
    fn collect_buffer(&mut self, v: Val) -> usize {
        if let Some(&b) = self.collect_buf.get(&v) {
            return b;
        }
        let ty = self.ty(v).clone();
        let mut dims = vec![Dim::Fixed(self.m.steps)];
        dims.extend(ty.shape.0.iter().copied());
        let b = self.add_buffer(
            format!("collect {}", self.val_name(v)),
            Role::Collect,
            Some(v.node),
            ty.dtype.name(),
            &dims,
        );
        self.collect_buf.insert(v, b);
        b
    }

    fn spike_scratch(&mut self, h: Handle<Node>, input: Handle<Node>, weight: Handle<Node>) {
        let m = self.m;
        let w = &m.nodes[weight].ty.shape.0;
        let (n, k) = (w[0], w[1]);
        let x = m.nodes[input].ty.full_dims(m.steps);
        let rows = &x[..x.len() - 1];
        let name = self.val_name(Val::of(h));
        let wt = self.add_buffer(format!("{name} transposed weight"), Role::Scratch, Some(h), "f32", &[k, n]);
        let flags = self.add_buffer(format!("{name} non-finite columns"), Role::Scratch, Some(h), "u32", &[k]);
        let mut idx_dims = rows.to_vec();
        idx_dims.push(k);
        let idx = self.add_buffer(format!("{name} active inputs"), Role::Scratch, Some(h), "u32", &idx_dims);
        let cnt = self.add_buffer(format!("{name} active counts"), Role::Scratch, Some(h), "u32", rows);
        self.scratch.insert(h, [wt, flags, idx, cnt]);
    }

    // ---- sources ----

    /// Where a kernel of a region in `mode` reads value `v` from (`v` is
    /// not computed by that kernel).
    pub(crate) fn source(&self, v: Val, mode: Mode) -> Result<Source, CudaError> {
        let m = self.m;
        let buf = |buf| Source::Buf { buf, host_row: false, t_row: None };
        Ok(match m.nodes[v.node].op {
            Op::Const { value, .. } => Source::Imm(value as f32),
            Op::Input(i) => buf(self.input_buf[i.index()]),
            Op::Param(p) => buf(self.param_buf[p.index()]),
            Op::StateRead(s) => match mode {
                Mode::Whole => Source::State(s.index()),
                _ => buf(self.state_buf[s.index()]),
            },
            Op::Collect(x) => buf(self.collect_buf[&self.root[x.index()]]),
            Op::Step(x) => {
                let r = self.root[x.index()];
                let b = match self.source(r, Mode::Seq)? {
                    Source::Buf { buf, host_row: false, t_row: None } => buf,
                    _ => {
                        return Err(unsupported(format!(
                            "{}: `step` of a value without a buffer",
                            describe(m, v.node)
                        )));
                    }
                };
                match mode {
                    Mode::Whole => {
                        let row = count_of(m.steps, &m.nodes[v.node].ty);
                        Source::Buf { buf: b, host_row: false, t_row: Some(row) }
                    }
                    _ => Source::Buf { buf: b, host_row: true, t_row: None },
                }
            }
            _ => {
                let loc = self.loc.get(&v).ok_or_else(|| {
                    CudaError::Invalid(format!("%{} (output {}) is read but has no buffer", v.node.index(), v.out))
                })?;
                Source::Buf { buf: loc.buf, host_row: loc.row, t_row: None }
            }
        })
    }

    /// The buffer a heavy kernel reads `v` from: `(buffer, step_row)`.
    pub(crate) fn heavy_source(&self, v: Val, mode: Mode) -> Result<(usize, bool), CudaError> {
        match self.source(v, mode)? {
            Source::Buf { buf, host_row, t_row: None } => Ok((buf, host_row)),
            _ => Err(unsupported(format!(
                "{}: a constant or register value as the operand of a `{}`",
                describe(self.m, v.node),
                self.m.nodes[v.node].op.mnemonic()
            ))),
        }
    }
}
