//! Kernels of the heavy ops: one kernel per node (three for
//! `spike_matmul`), specialised for its shapes (only the batch size is a
//! parameter).
//!
//! | op | kernel |
//! |---|---|
//! | `matmul` | tiled SGEMM, 16×16 tiles in shared memory, one output per thread, summing `k = 0..K` in order from `+0` (the interpreter's bits) |
//! | `spike_matmul` | `prep`: the weight transposed to `[K, N]` and a flag per input column holding a non-finite weight; `compact`: one warp per row lists the active inputs (nonzero, or a flagged column) in ascending order with `vote.ballot`; `gather`: one thread per (row, output) adds the weights of the listed inputs in order (the interpreter's bits) |
//! | `reduce_time_*` | one thread per element: a loop over time |
//! | `log_softmax` | one thread per row: max, sum of `exp`, `ln` |
//! | `transpose` | one thread per element |
//! | `matmul_grad_weight` | one thread per weight: the sum over rows in order (both kinds: zero inputs' products change nothing) |
//! | `sum_to` | one thread per result element: the sum over the leading index in order |
//! | `max_all` | one thread folds every element in order from `-inf` with the interpreter's NaN-propagating `max` |
//! | `reduce_time_*_grad` | one thread per element: a loop over time (`max`: the first maximal step, NaN first) |
//! | `log_softmax_grad` | one thread per row: `grad - exp(out) * sum(grad)` |
//! | `stdp_update` | one thread per weight: both sums over rows in order, then the rule (`stdp.rs`) |
//!
//! Convolutions and pooling, forward and backward, are in `conv.rs`.
//!
//! Sums start from `+0` and add each rounded product (`mul.rn`, `add.rn`),
//! never an FMA; where the reference interpreter defines the op, the order
//! is its order.

use snnc_ir::{Dim, Handle, MatMulKind, Node, Op, ReduceOp};

use crate::CudaError;
use crate::conv::{self, ConvAttrs, ConvDims, Pool};
use crate::ew::Written;
use crate::manifest::{Arg, Count, GridDim};
use crate::math;
use crate::plan::{Mode, Plan, Val, count_dims};
use crate::ptx::{Kb, ParamTy, ZERO, fimm};

/// A heavy kernel with its launch geometry.
#[derive(Debug)]
pub(crate) struct HeavyKernel {
    pub written: Written,
    pub what: String,
    pub formula: String,
    pub block: [u32; 3],
    pub grid: [GridDim; 3],
}

const BLOCK: u32 = 256;

fn unsupported(what: impl Into<String>) -> CudaError {
    CudaError::Unsupported(what.into())
}

/// The fixed value of a dim.
pub(crate) fn fixed(d: Dim, what: &str) -> Result<u64, CudaError> {
    match d {
        Dim::Fixed(n) => Ok(u64::from(n)),
        Dim::Batch => Err(unsupported(format!("{what}: a batch dimension where a fixed one is needed"))),
    }
}

/// A kernel being written: its builder and the argument of each
/// parameter.
pub(crate) struct Hk<'p, 'a> {
    plan: &'p Plan<'a>,
    mode: Mode,
    pub(crate) k: Kb,
    args: Vec<Arg>,
}

impl<'p, 'a> Hk<'p, 'a> {
    pub(crate) fn new(plan: &'p Plan<'a>, mode: Mode, name: String) -> Self {
        Hk { plan, mode, k: Kb::new(name), args: vec![Arg::Batch] }
    }

    /// A buffer parameter and its pointer register.
    pub(crate) fn buffer(&mut self, buf: usize, step_row: bool) -> String {
        let name = format!("p{}", self.args.len() - 1);
        self.k.param(&name, ParamTy::Ptr);
        self.args.push(Arg::Buffer { buffer: buf, step_row });
        self.k.ptr(&name)
    }

    /// The pointer of the operand `h` (through its root).
    pub(crate) fn input(&mut self, h: Handle<Node>) -> Result<String, CudaError> {
        let (buf, row) = self.plan.heavy_source(self.plan.root_of(h), self.mode)?;
        Ok(self.buffer(buf, row))
    }

    /// The pointer of node `h`'s own buffer.
    pub(crate) fn output(&mut self, h: Handle<Node>) -> Result<String, CudaError> {
        let loc = self
            .plan
            .loc
            .get(&Val::of(h))
            .ok_or_else(|| CudaError::Invalid(format!("%{} has no buffer", h.index())))?;
        let (buf, row) = (loc.buf, loc.row);
        Ok(self.buffer(buf, row))
    }

    /// One thread per element of `threads`: the element index (threads
    /// beyond exit).
    pub(crate) fn thread(&mut self, threads: Count) -> String {
        let e = self.k.global_x();
        let n = self.k.count(threads);
        self.k.exit_if_ge(&e, &n);
        e
    }

    pub(crate) fn done(self, what: String, threads: Count) -> HeavyKernel {
        let mut k = self.done_with(
            what,
            [BLOCK, 1, 1],
            [GridDim { threads, per_block: BLOCK }, GridDim::one(), GridDim::one()],
        );
        k.formula = format!("threads = {} ({})", threads.show(), k.formula);
        k
    }

    pub(crate) fn done_with(self, what: String, block: [u32; 3], grid: [GridDim; 3]) -> HeavyKernel {
        let params = self.k.params().to_vec();
        let name = self.k.name.clone();
        let formula = geometry(block, grid);
        HeavyKernel {
            written: Written { name, text: self.k.finish(), params, args: self.args },
            what,
            formula,
            block,
            grid,
        }
    }
}

/// The launch geometry as a formula.
pub(crate) fn geometry(block: [u32; 3], grid: [GridDim; 3]) -> String {
    let dims: Vec<String> = grid
        .iter()
        .zip(block)
        .filter(|(g, b)| !(*b == 1 && g.threads == Count::fixed(1)))
        .map(|(g, b)| format!("ceil({}/{})", g.threads.show(), g.per_block.max(b)))
        .collect();
    format!(
        "block {}x{}x{}, grid {}",
        block[0],
        block[1],
        block[2],
        if dims.is_empty() { "1".into() } else { dims.join(" x ") }
    )
}

/// `q = x / d`, `r = x % d` for a u32 register and a constant.
pub(crate) fn divmod(k: &mut Kb, x: &str, d: u64) -> (String, String) {
    let (q, r) = (k.r(), k.r());
    k.ins(format!("div.u32 {q}, {x}, {d}"));
    k.ins(format!("rem.u32 {r}, {x}, {d}"));
    (q, r)
}

/// A counted loop `i = from..to` (u32 registers or immediates) around
/// `body`.
pub(crate) fn for_range(
    k: &mut Kb,
    from: &str,
    to: &str,
    body: impl FnOnce(&mut Kb, &str) -> Result<(), CudaError>,
) -> Result<(), CudaError> {
    let (i, p) = (k.r(), k.p());
    let (head, end) = (k.label("loop"), k.label("end"));
    k.ins(format!("mov.u32 {i}, {from}"));
    k.put(&head);
    k.ins(format!("setp.ge.u32 {p}, {i}, {to}"));
    k.ins(format!("@{p} bra {end}"));
    body(k, &i)?;
    k.ins(format!("add.u32 {i}, {i}, 1"));
    k.ins(format!("bra.uni {head}"));
    k.put(&end);
    Ok(())
}

/// `acc = acc + a * b`, rounded twice (no FMA).
pub(crate) fn acc_mul(k: &mut Kb, acc: &str, a: &str, b: &str) {
    let p = k.f();
    k.ins(format!("mul.rn.f32 {p}, {a}, {b}"));
    k.ins(format!("add.rn.f32 {acc}, {acc}, {p}"));
}

/// A zero f32 accumulator.
pub(crate) fn zero_acc(k: &mut Kb) -> String {
    let acc = k.f();
    k.ins(format!("mov.f32 {acc}, {ZERO}"));
    acc
}

/// The kernels of heavy node `h` (in a region run in `mode`), named
/// `prefix_*`.
pub(crate) fn write(plan: &Plan<'_>, h: Handle<Node>, mode: Mode, prefix: &str) -> Result<Vec<HeavyKernel>, CudaError> {
    let m = plan.m;
    let node = &m.nodes[h];
    let dims = |x: Handle<Node>| m.nodes[x].ty.full_dims(m.steps);
    let name = |what: &str| format!("{prefix}_{what}");
    // The node with its layer, for messages (one search per heavy node).
    let place = snnc_ir::layer::describe(m, h);
    let ctx = |what: &str| format!("{place} ({what})");
    Ok(match node.op {
        Op::MatMul { input, weight, kind } => {
            let xd = dims(input);
            let wd = dims(weight);
            let (n, kk) = (fixed(wd[0], &ctx("matmul"))?, fixed(wd[1], &ctx("matmul"))?);
            let rows = count_dims(&xd[..xd.len() - 1]);
            match kind {
                MatMulKind::Dense => vec![matmul(plan, h, mode, name("matmul"), input, weight, rows, kk, n)?],
                MatMulKind::EventDriven => spike_matmul(plan, h, mode, prefix, input, weight, rows, kk, n)?,
            }
        }
        Op::Conv2d { input, weight, bias, stride, padding, dilation, groups, .. } => {
            let xd = dims(input);
            let wd = dims(weight);
            let r = xd.len();
            let od = dims(h);
            let attrs = ConvAttrs { stride, padding, dilation, groups };
            let c = ConvDims::new(&xd[..r - 3], &xd[r - 3..], &wd, &od[od.len() - 2..], attrs, &ctx("conv2d"))?;
            vec![conv::conv2d(plan, h, mode, name("conv2d"), input, weight, bias, c)?]
        }
        Op::Pool2d { op, input, kernel, stride, padding } => {
            let p = Pool::new(op, &dims(input), &dims(h), [kernel, stride, padding], &ctx("pool"))?;
            vec![conv::pool2d(plan, h, mode, name(node.op.mnemonic()), input, p)?]
        }
        Op::ReduceTime { op, arg } => vec![reduce_time(plan, h, mode, name(node.op.mnemonic()), op, arg)?],
        Op::LogSoftmax { arg } => vec![log_softmax(plan, h, mode, name("log_softmax"), arg)?],
        Op::MaxAll(arg) => vec![max_all(plan, h, mode, name("max_all"), arg, count_dims(&dims(arg)))?],
        Op::Transpose(a) => {
            let ad = dims(a);
            vec![transpose(
                plan,
                h,
                mode,
                name("transpose"),
                a,
                fixed(ad[0], &ctx("transpose"))?,
                fixed(ad[1], &ctx("transpose"))?,
            )?]
        }
        Op::MatMulGradWeight { grad, input, .. } => {
            let gd = dims(grad);
            let xd = dims(input);
            let o = fixed(gd[gd.len() - 1], &ctx("matmul_grad_weight"))?;
            let i = fixed(xd[xd.len() - 1], &ctx("matmul_grad_weight"))?;
            let rows = count_dims(&gd[..gd.len() - 1]);
            vec![matmul_grad_weight(plan, h, mode, name(node.op.mnemonic()), grad, input, rows, o, i)?]
        }
        Op::SumTo { arg, ref shape } => {
            let total = count_dims(&dims(arg));
            let len = count_dims(&shape.0);
            if !len.divides(total) {
                return Err(unsupported(ctx("sum_to to a shape that does not divide the operand")));
            }
            vec![sum_to(plan, h, mode, name("sum_to"), arg, total.quotient(len), len)?]
        }
        Op::Conv2dGradInput { grad, weight, stride, padding, dilation, groups, input_size } => {
            let gd = dims(grad);
            let wd = dims(weight);
            let r = gd.len();
            let c = fixed(wd[1], &ctx("conv2d_grad_input"))? * u64::from(groups);
            let c = Dim::Fixed(
                u32::try_from(c).map_err(|_| unsupported(ctx("conv2d_grad_input with more than 2^32 - 1 channels")))?,
            );
            let c = ConvDims::new(
                &gd[..r - 3],
                &[c, Dim::Fixed(input_size[0]), Dim::Fixed(input_size[1])],
                &wd,
                &gd[r - 2..],
                ConvAttrs { stride, padding, dilation, groups },
                &ctx("conv2d_grad_input"),
            )?;
            vec![conv::conv2d_grad_input(plan, h, mode, name("conv2d_grad_input"), grad, weight, c)?]
        }
        Op::Conv2dGradWeight { grad, input, kernel, stride, padding, dilation, groups, .. } => {
            let gd = dims(grad);
            let xd = dims(input);
            let r = xd.len();
            let wd = [gd[r - 3], xd[r - 3], Dim::Fixed(kernel[0]), Dim::Fixed(kernel[1])];
            let c = ConvDims::new(
                &xd[..r - 3],
                &xd[r - 3..],
                &wd,
                &gd[r - 2..],
                ConvAttrs { stride, padding, dilation, groups },
                &ctx("conv2d_grad_weight"),
            )?;
            vec![conv::conv2d_grad_weight(plan, h, mode, name("conv2d_grad_weight"), grad, input, c)?]
        }
        Op::Conv2dGradBias { grad } => {
            let gd = dims(grad);
            let r = gd.len();
            let o = fixed(gd[r - 3], &ctx("conv2d_grad_bias"))?;
            let plane = fixed(gd[r - 2], &ctx("conv2d_grad_bias"))? * fixed(gd[r - 1], &ctx("conv2d_grad_bias"))?;
            let images = count_dims(&gd[..r - 3]);
            vec![conv::conv2d_grad_bias(plan, h, mode, name("conv2d_grad_bias"), grad, images, o, plane)?]
        }
        Op::Pool2dGrad { op, input, grad, kernel, stride, padding } => {
            let p = Pool::new(op, &dims(input), &dims(grad), [kernel, stride, padding], &ctx("pool grad"))?;
            vec![conv::pool2d_grad(plan, h, mode, name(node.op.mnemonic()), input, grad, p)?]
        }
        Op::ReduceTimeGrad { op, arg, grad } => {
            vec![reduce_time_grad(plan, h, mode, name(node.op.mnemonic()), op, arg, grad)?]
        }
        Op::LogSoftmaxGrad { out, grad } => vec![log_softmax_grad(plan, h, mode, name("log_softmax_grad"), out, grad)?],
        Op::StdpUpdate { weight, z_post, t_pre, t_post, z_pre, ref rule } => {
            let wd = dims(weight);
            let o = fixed(wd[0], &ctx("stdp_update"))?;
            let i = fixed(wd[1], &ctx("stdp_update"))?;
            let zd = dims(z_post);
            let rows = count_dims(&zd[..zd.len() - 1]);
            let x = crate::stdp::StdpNodes { weight, z_post, t_pre, t_post, z_pre };
            vec![crate::stdp::stdp_update(plan, h, mode, name("stdp_update"), &x, rule, rows, o, i)?]
        }
        ref op => return Err(CudaError::Invalid(format!("`{}` is not a heavy op", op.mnemonic()))),
    })
}

/// Dense `y = x @ w^T`: `x` `[rows, K]`, `w` `[N, K]`.
#[allow(clippy::too_many_arguments)]
fn matmul(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    input: Handle<Node>,
    weight: Handle<Node>,
    rows: Count,
    kk: u64,
    n: u64,
) -> Result<HeavyKernel, CudaError> {
    const TILE: u64 = 16;
    const PITCH: u64 = TILE + 1;
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(input)?;
    let w = hk.input(weight)?;
    let y = hk.output(h)?;
    let k = &mut hk.k;
    let sa = k.shared("sA", (TILE * PITCH) as u32);
    let sb = k.shared("sB", (TILE * PITCH) as u32);
    let (tx, ty, bx, by) = (k.r(), k.r(), k.r(), k.r());
    k.ins(format!("mov.u32 {tx}, %tid.x"));
    k.ins(format!("mov.u32 {ty}, %tid.y"));
    k.ins(format!("mov.u32 {bx}, %ctaid.x"));
    k.ins(format!("mov.u32 {by}, %ctaid.y"));
    // Rows of x along grid x, outputs along grid y.
    let row = k.mad(&bx, TILE, &ty);
    let col = k.mad(&by, TILE, &tx);
    let wrow = k.mad(&by, TILE, &ty);
    let nrows = k.count(rows);
    let (prow, pw) = (k.p(), k.p());
    k.ins(format!("setp.lt.u32 {prow}, {row}, {nrows}"));
    k.ins(format!("setp.lt.u32 {pw}, {wrow}, {n}"));
    let (a_base, b_base) = (k.r(), k.r());
    k.ins(format!("mov.u32 {a_base}, {sa}"));
    k.ins(format!("mov.u32 {b_base}, {sb}"));
    let slot = k.mad(&ty, PITCH, &tx);
    let (a_st, b_st, a_rd, b_rd) = (k.r(), k.r(), k.r(), k.r());
    k.ins(format!("mad.lo.u32 {a_st}, {slot}, 4, {a_base}"));
    k.ins(format!("mad.lo.u32 {b_st}, {slot}, 4, {b_base}"));
    k.ins(format!("mad.lo.u32 {a_rd}, {ty}, {}, {a_base}", PITCH * 4));
    k.ins(format!("mad.lo.u32 {b_rd}, {tx}, {}, {b_base}", PITCH * 4));
    let xrow = k.r();
    k.ins(format!("mul.lo.u32 {xrow}, {row}, {kk}"));
    let wrow_off = k.r();
    k.ins(format!("mul.lo.u32 {wrow_off}, {wrow}, {kk}"));
    let acc = zero_acc(k);
    let tiles = kk.div_ceil(TILE);
    for_range(k, "0", &tiles.to_string(), |k, kt| {
        let kx = k.mad(kt, TILE, &tx);
        let (pk, pa, pb) = (k.p(), k.p(), k.p());
        k.ins(format!("setp.lt.u32 {pk}, {kx}, {kk}"));
        k.ins(format!("and.pred {pa}, {prow}, {pk}"));
        k.ins(format!("and.pred {pb}, {pw}, {pk}"));
        let (va, vb) = (k.f(), k.f());
        let ia = k.r();
        k.ins(format!("add.u32 {ia}, {xrow}, {kx}"));
        let aa = k.addr(&x, &ia);
        k.ins(format!("mov.f32 {va}, {ZERO}"));
        k.ins(format!("@{pa} ld.global.f32 {va}, [{aa}]"));
        let ib = k.r();
        k.ins(format!("add.u32 {ib}, {wrow_off}, {kx}"));
        let ab = k.addr(&w, &ib);
        k.ins(format!("mov.f32 {vb}, {ZERO}"));
        k.ins(format!("@{pb} ld.global.f32 {vb}, [{ab}]"));
        k.ins(format!("st.shared.f32 [{a_st}], {va}"));
        k.ins(format!("st.shared.f32 [{b_st}], {vb}"));
        k.ins("bar.sync 0");
        for j in 0..TILE {
            let (a, b) = (k.f(), k.f());
            k.ins(format!("ld.shared.f32 {a}, [{a_rd}+{}]", j * 4));
            k.ins(format!("ld.shared.f32 {b}, [{b_rd}+{}]", j * 4));
            acc_mul(k, &acc, &a, &b);
        }
        k.ins("bar.sync 0");
        Ok(())
    })?;
    let (pc, ps) = (k.p(), k.p());
    k.ins(format!("setp.lt.u32 {pc}, {col}, {n}"));
    k.ins(format!("and.pred {ps}, {prow}, {pc}"));
    let iy = k.mad(&row, n, &col);
    let ay = k.addr(&y, &iy);
    k.ins(format!("@{ps} st.global.f32 [{ay}], {acc}"));
    let what = format!("matmul [{}, {kk}] x [{n}, {kk}]^T (tiled, {TILE}x{TILE})", rows.show());
    let grid = [
        GridDim { threads: rows, per_block: TILE as u32 },
        GridDim { threads: Count::fixed(n), per_block: TILE as u32 },
        GridDim::one(),
    ];
    Ok(hk.done_with(what, [TILE as u32, TILE as u32, 1], grid))
}

/// The three kernels of the event-driven product.
#[allow(clippy::too_many_arguments)]
fn spike_matmul(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    prefix: &str,
    input: Handle<Node>,
    weight: Handle<Node>,
    rows: Count,
    kk: u64,
    n: u64,
) -> Result<Vec<HeavyKernel>, CudaError> {
    let [wt_buf, flag_buf, idx_buf, cnt_buf] = plan.scratch[&h];
    let mut res = Vec::new();

    // prep: wt[k, o] = w[o, k]; flags[k] = column k holds a non-finite weight.
    let mut hk = Hk::new(plan, mode, format!("{prefix}_spike_prep"));
    let w = hk.input(weight)?;
    let wt = hk.buffer(wt_buf, false);
    let flags = hk.buffer(flag_buf, false);
    let kx = hk.thread(Count::fixed(kk));
    let k = &mut hk.k;
    let nf = k.r();
    k.ins(format!("mov.u32 {nf}, 0"));
    for_range(k, "0", &n.to_string(), |k, o| {
        let i = k.mad(o, kk, &kx);
        let v = k.ld(&w, &i);
        let j = k.mad(&kx, n, o);
        k.st(&wt, &j, &v);
        let (a, fin, q) = (k.f(), k.p(), k.r());
        k.ins(format!("abs.f32 {a}, {v}"));
        k.ins(format!("setp.lt.f32 {fin}, {a}, 0f7F800000"));
        k.ins(format!("selp.u32 {q}, 0, 1, {fin}"));
        k.ins(format!("or.b32 {nf}, {nf}, {q}"));
        Ok(())
    })?;
    k.st_u32(&flags, &kx, &nf);
    res.push(hk.done(format!("spike_matmul: transpose [{n}, {kk}] and flag non-finite columns"), Count::fixed(kk)));

    // compact: one warp per row lists its active inputs in order.
    let mut hk = Hk::new(plan, mode, format!("{prefix}_spike_compact"));
    let x = hk.input(input)?;
    let flags = hk.buffer(flag_buf, false);
    let idx = hk.buffer(idx_buf, false);
    let cnt = hk.buffer(cnt_buf, false);
    let k = &mut hk.k;
    let g = k.global_x();
    let (warp, lane) = (k.r(), k.r());
    k.ins(format!("shr.u32 {warp}, {g}, 5"));
    k.ins(format!("and.b32 {lane}, {g}, 31"));
    let nrows = k.count(rows);
    k.exit_if_ge(&warp, &nrows);
    let base = k.r();
    k.ins(format!("mul.lo.u32 {base}, {warp}, {kk}"));
    let (count, mask) = (k.r(), k.r());
    k.ins(format!("mov.u32 {count}, 0"));
    k.ins(format!("mov.u32 {mask}, %lanemask_lt"));
    let chunks = kk.div_ceil(32);
    for_range(k, "0", &chunks.to_string(), |k, c| {
        let col = k.mad(c, 32, &lane);
        let (inb, pa, pf, act) = (k.p(), k.p(), k.p(), k.p());
        k.ins(format!("setp.lt.u32 {inb}, {col}, {kk}"));
        let xi = k.r();
        k.ins(format!("add.u32 {xi}, {base}, {col}"));
        let ax = k.addr(&x, &xi);
        let af = k.addr(&flags, &col);
        let (v, f) = (k.f(), k.r());
        k.ins(format!("mov.f32 {v}, {ZERO}"));
        k.ins(format!("mov.u32 {f}, 0"));
        k.ins(format!("@{inb} ld.global.f32 {v}, [{ax}]"));
        k.ins(format!("@{inb} ld.global.u32 {f}, [{af}]"));
        k.ins(format!("setp.ne.f32 {pa}, {v}, {ZERO}"));
        k.ins(format!("setp.ne.u32 {pf}, {f}, 0"));
        k.ins(format!("or.pred {act}, {pa}, {pf}"));
        k.ins(format!("and.pred {act}, {act}, {inb}"));
        let (bal, below, before, total) = (k.r(), k.r(), k.r(), k.r());
        k.ins(format!("vote.sync.ballot.b32 {bal}, {act}, 0xffffffff"));
        k.ins(format!("and.b32 {below}, {bal}, {mask}"));
        k.ins(format!("popc.b32 {before}, {below}"));
        let pos = k.r();
        k.ins(format!("add.u32 {pos}, {count}, {before}"));
        let ii = k.r();
        k.ins(format!("add.u32 {ii}, {base}, {pos}"));
        let ai = k.addr(&idx, &ii);
        k.ins(format!("@{act} st.global.u32 [{ai}], {col}"));
        k.ins(format!("popc.b32 {total}, {bal}"));
        k.ins(format!("add.u32 {count}, {count}, {total}"));
        Ok(())
    })?;
    let p0 = k.p();
    k.ins(format!("setp.eq.u32 {p0}, {lane}, 0"));
    let ac = k.addr(&cnt, &warp);
    k.ins(format!("@{p0} st.global.u32 [{ac}], {count}"));
    res.push(hk.done(
        format!("spike_matmul: list the active inputs of [{}, {kk}] (a warp per row)", rows.show()),
        rows.times(32),
    ));

    // gather: y[row, o] = sum over listed k of x[row, k] * wt[k, o].
    let mut hk = Hk::new(plan, mode, format!("{prefix}_spike_gather"));
    let x = hk.input(input)?;
    let wt = hk.buffer(wt_buf, false);
    let idx = hk.buffer(idx_buf, false);
    let cnt = hk.buffer(cnt_buf, false);
    let y = hk.output(h)?;
    let threads = rows.times(n);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    let (row, o) = divmod(k, &e, n);
    let c = k.ld_u32(&cnt, &row);
    let base = k.r();
    k.ins(format!("mul.lo.u32 {base}, {row}, {kk}"));
    let acc = zero_acc(k);
    for_range(k, "0", &c, |k, j| {
        let ij = k.r();
        k.ins(format!("add.u32 {ij}, {base}, {j}"));
        let col = k.ld_u32(&idx, &ij);
        let xi = k.r();
        k.ins(format!("add.u32 {xi}, {base}, {col}"));
        let xv = k.ld(&x, &xi);
        let wi = k.mad(&col, n, &o);
        let wv = k.ld(&wt, &wi);
        acc_mul(k, &acc, &xv, &wv);
        Ok(())
    })?;
    k.st(&y, &e, &acc);
    res.push(hk.done(format!("spike_matmul: [{}, {kk}] x [{n}, {kk}]^T over the active inputs", rows.show()), threads));
    Ok(res)
}

fn reduce_time(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    op: ReduceOp,
    arg: Handle<Node>,
) -> Result<HeavyKernel, CudaError> {
    let steps = plan.m.steps;
    let n = count_dims(&plan.m.nodes[arg].ty.shape.0);
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(arg)?;
    let y = hk.output(h)?;
    let e = hk.thread(n);
    let k = &mut hk.k;
    let nr = k.count(n);
    let res = match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            let acc = zero_acc(k);
            for_range(k, "0", &steps.to_string(), |k, t| {
                let i = k.mad(t, &nr, &e);
                let v = k.ld(&x, &i);
                k.ins(format!("add.rn.f32 {acc}, {acc}, {v}"));
                Ok(())
            })?;
            if op == ReduceOp::Mean {
                k.ins(format!("div.rn.f32 {acc}, {acc}, {}", fimm(steps as f32)));
            }
            acc
        }
        ReduceOp::Max => {
            let first = k.ld(&x, &e);
            let m = k.f();
            k.ins(format!("mov.f32 {m}, {first}"));
            for_range(k, "1", &steps.to_string(), |k, t| {
                let i = k.mad(t, &nr, &e);
                let v = k.ld(&x, &i);
                let r = math::max_nan(k, &m, &v);
                k.ins(format!("mov.f32 {m}, {r}"));
                Ok(())
            })?;
            m
        }
        ReduceOp::Last => {
            let tl = k.r();
            k.ins(format!("mov.u32 {tl}, {}", steps - 1));
            let i = k.mad(&tl, &nr, &e);
            k.ld(&x, &i)
        }
    };
    k.st(&y, &e, &res);
    Ok(hk.done(format!("{} over {steps} steps of [{}]", op.name(), n.show()), n))
}

/// Rows of length `len` of a value (the last dim).
fn rows_of(plan: &Plan<'_>, x: Handle<Node>) -> Result<(Count, u64), CudaError> {
    let d = plan.m.nodes[x].ty.full_dims(plan.m.steps);
    let len = fixed(*d.last().ok_or_else(|| unsupported("a rank-0 row op"))?, "rows")?;
    Ok((count_dims(&d[..d.len() - 1]), len))
}

fn log_softmax(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    arg: Handle<Node>,
) -> Result<HeavyKernel, CudaError> {
    let (rows, len) = rows_of(plan, arg)?;
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(arg)?;
    let y = hk.output(h)?;
    let row = hk.thread(rows);
    let k = &mut hk.k;
    let base = k.r();
    k.ins(format!("mul.lo.u32 {base}, {row}, {len}"));
    let first = k.ld(&x, &base);
    let m = k.f();
    k.ins(format!("mov.f32 {m}, {first}"));
    for_range(k, "1", &len.to_string(), |k, i| {
        let xi = k.r();
        k.ins(format!("add.u32 {xi}, {base}, {i}"));
        let v = k.ld(&x, &xi);
        let r = math::max_nan(k, &m, &v);
        k.ins(format!("mov.f32 {m}, {r}"));
        Ok(())
    })?;
    let s = zero_acc(k);
    for_range(k, "0", &len.to_string(), |k, i| {
        let xi = k.r();
        k.ins(format!("add.u32 {xi}, {base}, {i}"));
        let v = k.ld(&x, &xi);
        let d = k.f();
        k.ins(format!("sub.rn.f32 {d}, {v}, {m}"));
        let ex = math::exp(k, &d);
        k.ins(format!("add.rn.f32 {s}, {s}, {ex}"));
        Ok(())
    })?;
    let ls = math::log(k, &s);
    for_range(k, "0", &len.to_string(), |k, i| {
        let xi = k.r();
        k.ins(format!("add.u32 {xi}, {base}, {i}"));
        let v = k.ld(&x, &xi);
        let (d, r) = (k.f(), k.f());
        k.ins(format!("sub.rn.f32 {d}, {v}, {m}"));
        k.ins(format!("sub.rn.f32 {r}, {d}, {ls}"));
        k.st(&y, &xi, &r);
        Ok(())
    })?;
    Ok(hk.done(format!("log_softmax over rows of {len} ([{}] rows, a thread per row)", rows.show()), rows))
}

#[allow(clippy::too_many_arguments)]
fn transpose(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    a: Handle<Node>,
    rows: u64,
    cols: u64,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(a)?;
    let y = hk.output(h)?;
    let threads = Count::fixed(rows * cols);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    // y[j, i] = x[i, j]: e = j * rows + i.
    let (j, i) = divmod(k, &e, rows);
    let xi = k.mad(&i, cols, &j);
    let v = k.ld(&x, &xi);
    k.st(&y, &e, &v);
    Ok(hk.done(format!("transpose [{rows}, {cols}]"), threads))
}

#[allow(clippy::too_many_arguments)]
fn matmul_grad_weight(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    grad: Handle<Node>,
    input: Handle<Node>,
    rows: Count,
    o: u64,
    i: u64,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let g = hk.input(grad)?;
    let x = hk.input(input)?;
    let y = hk.output(h)?;
    let threads = Count::fixed(o * i);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    let (oo, ii) = divmod(k, &e, i);
    let nrows = k.count(rows);
    let acc = zero_acc(k);
    for_range(k, "0", &nrows, |k, r| {
        let gi = k.mad(r, o, &oo);
        let xi = k.mad(r, i, &ii);
        let gv = k.ld(&g, &gi);
        let xv = k.ld(&x, &xi);
        // Both kinds: every product (a zero input's product changes
        // nothing but a non-finite gradient's NaN, as in the dense sum).
        acc_mul(k, &acc, &gv, &xv);
        Ok(())
    })?;
    k.st(&y, &e, &acc);
    Ok(hk.done(format!("weight gradient [{o}, {i}] summed over [{}] rows", rows.show()), threads))
}

fn sum_to(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    arg: Handle<Node>,
    lead: Count,
    len: Count,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(arg)?;
    let y = hk.output(h)?;
    let e = hk.thread(len);
    let k = &mut hk.k;
    let (nl, nlen) = (k.count(lead), k.count(len));
    let acc = zero_acc(k);
    for_range(k, "0", &nl, |k, l| {
        let xi = k.mad(l, &nlen, &e);
        let v = k.ld(&x, &xi);
        k.ins(format!("add.rn.f32 {acc}, {acc}, {v}"));
        Ok(())
    })?;
    k.st(&y, &e, &acc);
    Ok(hk.done(format!("sum_to [{}] over [{}] leading elements", len.show(), lead.show()), len))
}

/// `max_all`: one thread folds every element in order with the
/// interpreter's NaN-propagating `max`, from `-inf`.
fn max_all(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    arg: Handle<Node>,
    total: Count,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(arg)?;
    let y = hk.output(h)?;
    let one = Count::fixed(1);
    let e = hk.thread(one);
    let k = &mut hk.k;
    let n = k.count(total);
    let acc = k.f();
    k.ins(format!("mov.f32 {acc}, 0fFF800000"));
    for_range(k, "0", &n, |k, i| {
        let v = k.ld(&x, i);
        let r = math::max_nan(k, &acc, &v);
        k.ins(format!("mov.f32 {acc}, {r}"));
        Ok(())
    })?;
    k.st(&y, &e, &acc);
    Ok(hk.done(format!("max_all over [{}] elements", total.show()), one))
}

fn reduce_time_grad(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    op: ReduceOp,
    arg: Handle<Node>,
    grad: Handle<Node>,
) -> Result<HeavyKernel, CudaError> {
    let steps = plan.m.steps;
    let n = count_dims(&plan.m.nodes[arg].ty.shape.0);
    let mut hk = Hk::new(plan, mode, name);
    let x = if op == ReduceOp::Max { Some(hk.input(arg)?) } else { None };
    let g = hk.input(grad)?;
    let y = hk.output(h)?;
    let e = hk.thread(n);
    let k = &mut hk.k;
    let nr = k.count(n);
    let gv = k.ld(&g, &e);
    let zero = k.fconst(0.0);
    // The value of step t is `value`, or `gv` at the chosen step `at`.
    let (value, at): (String, Option<String>) = match op {
        ReduceOp::Sum => (gv.clone(), None),
        ReduceOp::Mean => {
            let q = k.f();
            k.ins(format!("div.rn.f32 {q}, {gv}, {}", fimm(steps as f32)));
            (q, None)
        }
        ReduceOp::Last => {
            let at = k.r();
            k.ins(format!("mov.u32 {at}, {}", steps - 1));
            (zero.clone(), Some(at))
        }
        ReduceOp::Max => {
            let x = x.expect("loaded above");
            let first = k.ld(&x, &e);
            let (m, am) = (k.f(), k.r());
            k.ins(format!("mov.f32 {m}, {first}"));
            k.ins(format!("mov.u32 {am}, 0"));
            for_range(k, "1", &steps.to_string(), |k, t| {
                let i = k.mad(t, &nr, &e);
                let v = k.ld(&x, &i);
                let (gt, vnan, mnan, take) = (k.p(), k.p(), k.p(), k.p());
                k.ins(format!("setp.gt.f32 {gt}, {v}, {m}"));
                k.ins(format!("setp.nan.f32 {vnan}, {v}, {v}"));
                k.ins(format!("or.pred {take}, {gt}, {vnan}"));
                k.ins(format!("setp.nan.f32 {mnan}, {m}, {m}"));
                k.ins(format!("not.pred {mnan}, {mnan}"));
                k.ins(format!("and.pred {take}, {take}, {mnan}"));
                k.ins(format!("@{take} mov.f32 {m}, {v}"));
                k.ins(format!("@{take} mov.u32 {am}, {t}"));
                Ok(())
            })?;
            (zero.clone(), Some(am))
        }
    };
    for_range(k, "0", &steps.to_string(), |k, t| {
        let i = k.mad(t, &nr, &e);
        let v = match &at {
            None => value.clone(),
            Some(at) => {
                let (p, v) = (k.p(), k.f());
                k.ins(format!("setp.eq.u32 {p}, {t}, {at}"));
                k.ins(format!("selp.f32 {v}, {gv}, {value}, {p}"));
                v
            }
        };
        k.st(&y, &i, &v);
        Ok(())
    })?;
    Ok(hk.done(format!("{} gradient over {steps} steps of [{}]", op.name(), n.show()), n))
}

fn log_softmax_grad(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    out: Handle<Node>,
    grad: Handle<Node>,
) -> Result<HeavyKernel, CudaError> {
    let (rows, len) = rows_of(plan, out)?;
    let mut hk = Hk::new(plan, mode, name);
    let o = hk.input(out)?;
    let g = hk.input(grad)?;
    let y = hk.output(h)?;
    let row = hk.thread(rows);
    let k = &mut hk.k;
    let base = k.r();
    k.ins(format!("mul.lo.u32 {base}, {row}, {len}"));
    let s = zero_acc(k);
    for_range(k, "0", &len.to_string(), |k, i| {
        let xi = k.r();
        k.ins(format!("add.u32 {xi}, {base}, {i}"));
        let v = k.ld(&g, &xi);
        k.ins(format!("add.rn.f32 {s}, {s}, {v}"));
        Ok(())
    })?;
    for_range(k, "0", &len.to_string(), |k, i| {
        let xi = k.r();
        k.ins(format!("add.u32 {xi}, {base}, {i}"));
        let ov = k.ld(&o, &xi);
        let gv = k.ld(&g, &xi);
        let ex = math::exp(k, &ov);
        let (p, r) = (k.f(), k.f());
        k.ins(format!("mul.rn.f32 {p}, {ex}, {s}"));
        k.ins(format!("sub.rn.f32 {r}, {gv}, {p}"));
        k.st(&y, &xi, &r);
        Ok(())
    })?;
    Ok(hk.done(format!("log_softmax gradient over rows of {len} ([{}] rows)", rows.show()), rows))
}
