//! Elementwise kernels: a group of elementwise nodes (`fused` kernels,
//! unfused elementwise ops, `uniform`) computed in registers, one thread
//! per element.
//!
//! Broadcasting is an index map: every value of a group has an element
//! count that divides the group's thread count `M`, and thread `e`
//! computes every value at index `e % size` (suffix broadcasting of
//! row-major buffers is exactly that), reading each operand at
//! `e % size(operand)`. A value smaller than `M` is computed by several
//! threads and stored by the threads `e < size` only.
//!
//! Three shapes of kernel ([`Mode`]):
//!
//! - **sequence group** (`Mode::Seq`): a grid-stride loop over the `M`
//!   elements of whole `[T, B, ...]` values;
//! - **loop kernel** (`Mode::Whole`): one thread per element of a step
//!   loop's population; the states are loaded into registers, the time
//!   loop (`t = 0..T`, or down from `T-1` for a reverse loop, with the
//!   loop's `unroll` copies of the body per iteration and the remainder
//!   after) runs inside the kernel, `step` values are read from row `t`,
//!   collected values are written to row `t` of their collect buffers, and
//!   the final states are stored at the end;
//! - **per-step group** (`Mode::PerStep`): one step of a step loop; rows
//!   of `[T, ...]` buffers are addressed by the runtime (`Arg::Buffer`
//!   with `step_row`), the step `t` is a parameter.
//!
//! # Numerics
//!
//! Every IR op is one IEEE operation in f32 with an explicit rounding mode
//! (`add.rn`, `sub.rn`, `mul.rn`, `div.rn`, `sqrt.rn`), never contracted
//! into an FMA, in the order of the IR, so results are the interpreter's
//! bits, except for `exp`, `log` and `tanh` (correctly rounded, which
//! glibc is not always; see `math.rs`).
//! Comparisons are ordered (false on NaN), `threshold` is `x > 0`,
//! `select` tests `c != 0` unordered (true on NaN, as Rust's `!=`),
//! `max`/`min`/`relu` give the canonical NaN where an operand is NaN.

use std::collections::{BTreeMap, BTreeSet};

use snnc_ir::{BinaryOp, CompareOp, Dtype, Handle, KernelInst, Node, Op, UnaryOp};

use crate::CudaError;
use crate::manifest::{Arg, Count};
use crate::math;
use crate::plan::{Mode, Plan, Source, Val};
use crate::ptx::{Kb, ParamTy, ZERO};

/// Where a group writes a value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dest {
    pub buf: usize,
    /// The runtime offsets the address to row `t` (per-step groups).
    pub host_row: bool,
    /// The kernel writes row `t` of a buffer whose rows have this size
    /// (loop kernels).
    pub t_row: Option<Count>,
    /// The element count of the value.
    pub size: Count,
}

/// One elementwise kernel to write.
#[derive(Clone, Debug)]
pub(crate) struct EwSpec {
    pub name: String,
    pub mode: Mode,
    /// The number of threads `M`.
    pub size: Count,
    /// The elementwise nodes, in order.
    pub members: Vec<Handle<Node>>,
    /// Values to write (per element; per step in a loop kernel).
    pub stores: Vec<(Val, Dest)>,
    /// Loop kernels: every state of the loop (its index and the value it
    /// gets for the next step).
    pub states: Vec<(usize, Val)>,
    pub reverse: bool,
    pub unroll: u32,
    /// Sources that replace the plan's (a copy reading a snapshot instead
    /// of the state buffer).
    pub overrides: BTreeMap<Val, Source>,
}

/// A written kernel: its text and the argument of each parameter.
#[derive(Debug)]
pub(crate) struct Written {
    pub name: String,
    pub text: String,
    pub params: Vec<(String, ParamTy)>,
    pub args: Vec<Arg>,
}

struct Gen<'p, 'a> {
    plan: &'p Plan<'a>,
    k: Kb,
    mode: Mode,
    size: Count,
    /// The element index of this thread.
    e: String,
    /// The current step (loop kernels, per-step groups).
    t: Option<String>,
    members: BTreeSet<Handle<Node>>,
    /// Registers of values computed (or loaded) in the current body.
    regs: BTreeMap<Val, String>,
    /// Values loaded in the prologue (loop-invariant).
    hoisted: BTreeMap<Val, String>,
    /// `e % size` per size.
    idx: BTreeMap<Count, String>,
    /// `e < size` per size.
    guard: BTreeMap<Count, String>,
    /// Pointer registers per (buffer, host_row), and the kernel parameter
    /// of each.
    ptrs: BTreeMap<(usize, bool), String>,
    args: Vec<Arg>,
    state_regs: BTreeMap<usize, String>,
    overrides: BTreeMap<Val, Source>,
    /// `t * row + idx` of the current body, by (row, idx).
    rows: BTreeMap<(Count, String), String>,
}

/// Writes the kernel of `spec`.
pub(crate) fn write(plan: &Plan<'_>, spec: &EwSpec) -> Result<Written, CudaError> {
    let mut g = Gen {
        plan,
        k: Kb::new(spec.name.clone()),
        mode: spec.mode,
        size: spec.size,
        e: String::new(),
        t: None,
        members: spec.members.iter().copied().collect(),
        regs: BTreeMap::new(),
        hoisted: BTreeMap::new(),
        idx: BTreeMap::new(),
        guard: BTreeMap::new(),
        ptrs: BTreeMap::new(),
        args: vec![Arg::Batch],
        state_regs: BTreeMap::new(),
        overrides: spec.overrides.clone(),
        rows: BTreeMap::new(),
    };
    let uses_t = spec.members.iter().any(|&h| matches!(plan.m.nodes[h].op, Op::Uniform { .. }));
    g.k.hoisting(true);
    match spec.mode {
        Mode::Seq => {
            let m = g.k.count(spec.size);
            let e0 = g.k.global_x();
            let stride = g.k.stride_x();
            g.k.hoisting(false);
            let e = g.k.r();
            g.k.ins(format!("mov.u32 {e}, {e0}"));
            g.e = e.clone();
            let head = g.k.label("elem");
            g.k.put(&head);
            g.k.exit_if_ge(&e, &m);
            g.body(spec)?;
            g.k.ins(format!("add.u32 {e}, {e}, {stride}"));
            g.k.ins(format!("bra.uni {head}"));
        }
        Mode::PerStep => {
            let m = g.k.count(spec.size);
            g.e = g.k.global_x();
            g.k.exit_if_ge(&g.e.clone(), &m);
            if uses_t {
                g.k.param("t", ParamTy::U32);
                g.args.push(Arg::Step);
                g.t = Some(g.k.u32_param("t"));
            }
            g.k.hoisting(false);
            g.body(spec)?;
        }
        Mode::Whole => {
            let m = g.k.count(spec.size);
            g.e = g.k.global_x();
            g.k.exit_if_ge(&g.e.clone(), &m);
            for &(s, _) in &spec.states {
                let sz = crate::plan::count_of(plan.m.steps, &plan.m.states[snnc_ir::Handle::from_index(s)].ty);
                let base = g.ptr(plan.state_buf[s], false);
                let i = g.index(sz);
                let r = g.k.ld(&base, &i);
                g.state_regs.insert(s, r);
            }
            g.k.hoisting(false);
            let steps = plan.m.steps;
            let unroll = spec.unroll.clamp(1, steps.max(1));
            let (n_main, rem) = (steps / unroll, steps % unroll);
            let t = g.k.r();
            g.k.ins(format!("mov.u32 {t}, {}", if spec.reverse { steps - 1 } else { 0 }));
            g.t = Some(t.clone());
            let step_t = |k: &mut Kb| {
                if spec.reverse {
                    k.ins(format!("sub.u32 {t}, {t}, 1"));
                } else {
                    k.ins(format!("add.u32 {t}, {t}, 1"));
                }
            };
            if n_main > 0 {
                let it = g.k.r();
                g.k.ins(format!("mov.u32 {it}, 0"));
                let head = g.k.label("step");
                g.k.put(&head);
                for _ in 0..unroll {
                    g.body(spec)?;
                    step_t(&mut g.k);
                }
                let p = g.k.p();
                g.k.ins(format!("add.u32 {it}, {it}, 1"));
                g.k.ins(format!("setp.lt.u32 {p}, {it}, {n_main}"));
                g.k.ins(format!("@{p} bra {head}"));
            }
            for _ in 0..rem {
                g.body(spec)?;
                step_t(&mut g.k);
            }
            for &(s, _) in &spec.states {
                let sz = crate::plan::count_of(plan.m.steps, &plan.m.states[snnc_ir::Handle::from_index(s)].ty);
                let base = g.ptr(plan.state_buf[s], false);
                let r = g.state_regs[&s].clone();
                let e = g.e.clone();
                g.store(&base, &e, &r, sz);
            }
        }
    }
    let params = g.k.params().to_vec();
    Ok(Written { name: spec.name.clone(), text: g.k.finish(), params, args: g.args })
}

impl Gen<'_, '_> {
    /// The pointer register of a buffer (a kernel parameter, loaded in the
    /// prologue).
    fn ptr(&mut self, buf: usize, host_row: bool) -> String {
        if let Some(r) = self.ptrs.get(&(buf, host_row)) {
            return r.clone();
        }
        let name = format!("p{}", self.ptrs.len());
        self.k.param(&name, ParamTy::Ptr);
        self.args.push(Arg::Buffer { buffer: buf, step_row: host_row });
        let was = self.k.hoisting(true);
        let r = self.k.ptr(&name);
        self.k.hoisting(was);
        self.ptrs.insert((buf, host_row), r.clone());
        r
    }

    /// `e % size` (or `e` when `size` is the thread count).
    fn index(&mut self, size: Count) -> String {
        if size == self.size {
            return self.e.clone();
        }
        if let Some(r) = self.idx.get(&size) {
            return r.clone();
        }
        let was = self.k.hoisting(self.mode != Mode::Seq);
        let n = self.k.count(size);
        let r = self.k.r();
        self.k.ins(format!("rem.u32 {r}, {}, {n}", self.e));
        self.k.hoisting(was);
        self.idx.insert(size, r.clone());
        r
    }

    /// `t * row + idx`: element `idx` of row `t` (computed once per body).
    fn row_index(&mut self, row: Count, idx: &str) -> String {
        if let Some(r) = self.rows.get(&(row, idx.to_string())) {
            return r.clone();
        }
        let n = self.k.count(row);
        let t = self.t.clone().expect("loop kernels have a step");
        let r = self.k.mad(&t, &n, idx);
        self.rows.insert((row, idx.to_string()), r.clone());
        r
    }

    /// Stores `v` at element `idx` of `base` for the threads `e < size`.
    fn store(&mut self, base: &str, idx: &str, v: &str, size: Count) {
        let a = self.k.addr(base, idx);
        if size == self.size {
            self.k.ins(format!("st.global.f32 [{a}], {v}"));
            return;
        }
        let p = match self.guard.get(&size) {
            Some(p) => p.clone(),
            None => {
                let hoist = self.mode != Mode::Seq;
                let was = self.k.hoisting(hoist);
                let n = self.k.count(size);
                let p = self.k.p();
                self.k.ins(format!("setp.lt.u32 {p}, {}, {n}", self.e));
                self.k.hoisting(was);
                if hoist {
                    self.guard.insert(size, p.clone());
                }
                p
            }
        };
        self.k.ins(format!("@{p} st.global.f32 [{a}], {v}"));
    }

    /// The register holding value `v` at this thread's index.
    fn value(&mut self, v: Val) -> Result<String, CudaError> {
        if let Some(r) = self.regs.get(&v).or_else(|| self.hoisted.get(&v)) {
            return Ok(r.clone());
        }
        if self.members.contains(&v.node) {
            return Err(CudaError::Invalid(format!("%{} is read before it is computed", v.node.index())));
        }
        let size = self.plan.size(v);
        let source = match self.overrides.get(&v) {
            Some(s) => *s,
            None => self.plan.source(v, self.mode)?,
        };
        match source {
            Source::Imm(x) => Ok(self.k.fconst(x)),
            Source::State(s) => Ok(self.state_regs[&s].clone()),
            Source::Buf { buf, host_row, t_row } => {
                let base = self.ptr(buf, host_row);
                match t_row {
                    Some(row) => {
                        let i = self.index(size);
                        let ti = self.row_index(row, &i);
                        let r = self.k.ld(&base, &ti);
                        self.regs.insert(v, r.clone());
                        Ok(r)
                    }
                    None if self.mode == Mode::Whole => {
                        let i = self.index(size);
                        let was = self.k.hoisting(true);
                        let r = self.k.ld(&base, &i);
                        self.k.hoisting(was);
                        self.hoisted.insert(v, r.clone());
                        Ok(r)
                    }
                    None => {
                        let i = self.index(size);
                        let r = self.k.ld(&base, &i);
                        self.regs.insert(v, r.clone());
                        Ok(r)
                    }
                }
            }
        }
    }

    /// One body: every member, then the stores (and, in a loop kernel,
    /// the state updates).
    fn body(&mut self, spec: &EwSpec) -> Result<(), CudaError> {
        self.regs.clear();
        self.rows.clear();
        if self.mode == Mode::Seq {
            self.idx.clear();
        }
        for &h in &spec.members {
            self.member(h)?;
        }
        for &(v, d) in &spec.stores {
            let r = self.value(v)?;
            let base = self.ptr(d.buf, d.host_row);
            let i = match d.t_row {
                Some(row) => self.row_index(row, &self.e.clone()),
                None => self.e.clone(),
            };
            self.store(&base, &i, &r, d.size);
        }
        if !spec.states.is_empty() {
            let mut next = Vec::new();
            for &(s, v) in &spec.states {
                let r = self.value(v)?;
                let tmp = self.k.f();
                self.k.ins(format!("mov.f32 {tmp}, {r}"));
                next.push((s, tmp));
            }
            for (s, tmp) in next {
                let reg = self.state_regs[&s].clone();
                self.k.ins(format!("mov.f32 {reg}, {tmp}"));
            }
        }
        Ok(())
    }

    fn operand(&mut self, h: Handle<Node>) -> Result<String, CudaError> {
        self.value(self.plan.root_of(h))
    }

    /// Computes an elementwise node into registers.
    fn member(&mut self, h: Handle<Node>) -> Result<(), CudaError> {
        let plan = self.plan;
        let node = &plan.m.nodes[h];
        let what = match &node.op {
            Op::Fused(k) => format!("fused {}", k.name),
            op => op.mnemonic().to_string(),
        };
        self.k.comment(format!("%{} = {what}", h.index()));
        let r = match &node.op {
            Op::Fused(kernel) => {
                let mut live = vec![false; kernel.body.len()];
                for &o in &kernel.outputs {
                    live[o as usize] = true;
                }
                for i in (0..kernel.body.len()).rev() {
                    if live[i] {
                        for a in kernel.body[i].args() {
                            live[a as usize] = true;
                        }
                    }
                }
                let mut regs: Vec<String> = Vec::with_capacity(kernel.body.len());
                for (i, inst) in kernel.body.iter().enumerate() {
                    if !live[i] {
                        regs.push(String::new());
                        continue;
                    }
                    let a = |j: u32| regs[j as usize].clone();
                    let r = match *inst {
                        KernelInst::Input(j) => {
                            let x = *kernel.inputs.get(j as usize).ok_or_else(|| {
                                CudaError::Invalid(format!("kernel `{}` reads missing input {j}", kernel.name))
                            })?;
                            self.operand(x)?
                        }
                        KernelInst::Const { value, dtype } => {
                            if dtype == Dtype::F64 {
                                return Err(CudaError::Unsupported(format!(
                                    "kernel `{}`: an f64 constant",
                                    kernel.name
                                )));
                            }
                            self.k.fconst(value as f32)
                        }
                        KernelInst::Unary { op, arg } => unary(&mut self.k, op, &a(arg)),
                        KernelInst::Binary { op, lhs, rhs } => binary(&mut self.k, op, &a(lhs), &a(rhs)),
                        KernelInst::Compare { op, lhs, rhs } => compare(&mut self.k, op, &a(lhs), &a(rhs)),
                        KernelInst::Select { cond, on_true, on_false } => {
                            select(&mut self.k, &a(cond), &a(on_true), &a(on_false))
                        }
                        KernelInst::Threshold { arg, .. } => threshold(&mut self.k, &a(arg)),
                        KernelInst::StopGradient(arg) => a(arg),
                        KernelInst::Cast { arg, dtype } => {
                            if dtype == Dtype::F64 {
                                return Err(CudaError::Unsupported(format!("kernel `{}`: a cast to f64", kernel.name)));
                            }
                            a(arg)
                        }
                    };
                    regs.push(r);
                }
                for (j, &o) in kernel.outputs.iter().enumerate() {
                    self.regs.insert(Val { node: h, out: j as u32 }, regs[o as usize].clone());
                }
                return Ok(());
            }
            Op::Unary { op, arg } => {
                let x = self.operand(*arg)?;
                unary(&mut self.k, *op, &x)
            }
            Op::Binary { op, lhs, rhs } => {
                let (a, b) = (self.operand(*lhs)?, self.operand(*rhs)?);
                binary(&mut self.k, *op, &a, &b)
            }
            Op::Compare { op, lhs, rhs } => {
                let (a, b) = (self.operand(*lhs)?, self.operand(*rhs)?);
                compare(&mut self.k, *op, &a, &b)
            }
            Op::Select { cond, on_true, on_false } => {
                let (c, a, b) = (self.operand(*cond)?, self.operand(*on_true)?, self.operand(*on_false)?);
                select(&mut self.k, &c, &a, &b)
            }
            Op::Threshold { arg, .. } => {
                let x = self.operand(*arg)?;
                threshold(&mut self.k, &x)
            }
            Op::Uniform { seed, seq, shape } => {
                let size = self.plan.size(Val::of(h));
                let i = self.index(size);
                let (t, k) = match (self.mode, *seq) {
                    (Mode::Seq, true) => {
                        let per = crate::plan::count_dims(&shape.0);
                        let n = self.k.count(per);
                        let (t, k) = (self.k.r(), self.k.r());
                        self.k.ins(format!("div.u32 {t}, {i}, {n}"));
                        self.k.ins(format!("rem.u32 {k}, {i}, {n}"));
                        (t, k)
                    }
                    (Mode::Seq, false) => {
                        let t = self.k.r();
                        self.k.ins(format!("mov.u32 {t}, 0"));
                        (t, i)
                    }
                    _ => (self.t.clone().expect("step loops have a step"), i),
                };
                math::uniform(&mut self.k, *seed, &t, &k)
            }
            op => {
                return Err(CudaError::Invalid(format!("`{}` is not elementwise", op.mnemonic())));
            }
        };
        self.regs.insert(Val::of(h), r);
        Ok(())
    }
}

fn unary(k: &mut Kb, op: UnaryOp, x: &str) -> String {
    match op {
        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sqrt => {
            let d = k.f();
            let ins = match op {
                UnaryOp::Neg => "neg.f32",
                UnaryOp::Abs => "abs.f32",
                _ => "sqrt.rn.f32",
            };
            k.ins(format!("{ins} {d}, {x}"));
            d
        }
        UnaryOp::Exp => math::exp(k, x),
        UnaryOp::Log => math::log(k, x),
        UnaryOp::Tanh => math::tanh(k, x),
        UnaryOp::Relu => {
            let z = k.fconst(0.0);
            math::max_nan(k, x, &z)
        }
    }
}

fn binary(k: &mut Kb, op: BinaryOp, a: &str, b: &str) -> String {
    let ins = match op {
        BinaryOp::Add => "add.rn.f32",
        BinaryOp::Sub => "sub.rn.f32",
        BinaryOp::Mul => "mul.rn.f32",
        BinaryOp::Div => "div.rn.f32",
        BinaryOp::Max => return math::max_nan(k, a, b),
        BinaryOp::Min => return math::min_nan(k, a, b),
    };
    let d = k.f();
    k.ins(format!("{ins} {d}, {a}, {b}"));
    d
}

fn compare(k: &mut Kb, op: CompareOp, a: &str, b: &str) -> String {
    let cmp = match op {
        CompareOp::Gt => "gt",
        CompareOp::Ge => "ge",
        CompareOp::Lt => "lt",
        CompareOp::Le => "le",
        CompareOp::Eq => "eq",
    };
    let p = k.p();
    k.ins(format!("setp.{cmp}.f32 {p}, {a}, {b}"));
    math::bool_to_f32(k, &p)
}

fn select(k: &mut Kb, c: &str, a: &str, b: &str) -> String {
    let (p, d) = (k.p(), k.f());
    k.ins(format!("setp.neu.f32 {p}, {c}, {ZERO}"));
    k.ins(format!("selp.f32 {d}, {a}, {b}, {p}"));
    d
}

fn threshold(k: &mut Kb, x: &str) -> String {
    let p = k.p();
    k.ins(format!("setp.gt.f32 {p}, {x}, {ZERO}"));
    math::bool_to_f32(k, &p)
}
