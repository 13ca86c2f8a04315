//! Node by node evaluation: what every op computes on the CPU, and the
//! plain-Rust evaluator of `fused` kernels.

use super::*;

impl Executable {
    /// Computes node `h`; `t` is the step in a step loop.
    pub(super) fn eval(&self, b: &mut Buffers, h: Handle<Node>, t: Option<usize>) {
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
            Op::StateWrite { state, .. } if self.in_place[state.index()] => return,
            Op::StdpUpdate { weight, z_post, t_pre, t_post, z_pre, ref rule } => {
                let (n_out, n_in) = (b.dims[i][0], b.dims[i][1]);
                let in_place = match self.views[i].src {
                    Src::State(s) => Some(s),
                    _ => None,
                };
                let mut scratch = std::mem::take(&mut b.stdp[i]);
                // Only an in-place update keeps knowing its weight from
                // step to step; a run starts anew.
                if in_place.is_none() || b.first_iteration {
                    scratch.new_run();
                }
                let mut w = match in_place {
                    Some(s) => std::mem::take(&mut b.states[s]),
                    None => {
                        let mut out = std::mem::take(&mut b.own[i]);
                        out.copy_from_slice(self.val(b, weight, step));
                        out
                    }
                };
                {
                    let x = stdp::StdpOperands {
                        z_post: self.val(b, z_post, step),
                        t_pre: self.val(b, t_pre, step),
                        t_post: self.val(b, t_post, step),
                        z_pre: self.val(b, z_pre, step),
                        n_out,
                        n_in,
                    };
                    stdp::update(rule, &mut w, &x, &mut scratch);
                }
                match in_place {
                    Some(s) => b.states[s] = w,
                    None => b.own[i] = w,
                }
                b.stdp[i] = scratch;
                return;
            }
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
                        Some(Kernel::JitRows(k, row)) => run_jit_rows(k, *row, &ins, &mut out_refs),
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
                kernels::binary(op, self.val(b, lhs, step), self.val(b, rhs, step), &mut out)
            }
            Op::Compare { op, lhs, rhs } => {
                kernels::compare(op, self.val(b, lhs, step), self.val(b, rhs, step), &mut out)
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
                // The transposed weight is made once per run when the
                // weight is defined outside this step loop (or is a
                // parameter), else at every step.
                let outside = self.region_of[weight.index()] != self.region_of[i]
                    || matches!(module.nodes[weight].op, Op::Param(_) | Op::Input(_) | Op::Const { .. });
                // A weight that changes at every step (a plastic one) meets
                // the spikes as it is, without the transpose.
                let mut direct = false;
                if t.is_some() && !outside && kind == MatMulKind::EventDriven {
                    let (key, spikes) = self.spike_rows(b, i, input, t, n_in);
                    // A plastic weight its STDP update keeps clean (every
                    // entry a fixed point of the rule, so finite) needs no
                    // scan for non-finite entries; a run's first step scans.
                    let finite = match self.views[weight.index()].src {
                        Src::State(s) => {
                            !b.first_iteration && self.stdp_of_state[s].is_some_and(|u| b.stdp[u].weight_is_clean())
                        }
                        _ => false,
                    };
                    let w = self.val(b, weight, step);
                    direct = event::matmul_untransposed(&spikes, w, n_in, n_out, finite, &mut out);
                    b.spikes.insert(key, (true, spikes));
                }
                if !direct {
                    let (mut wt, mut finite) = std::mem::take(&mut b.transposed[i]);
                    let w = self.val(b, weight, step);
                    if kind == MatMulKind::Dense && n_in > EXACT_MAX_IN {
                        kernels::matmul_dense(self.val(b, input, step), w, n_in, n_out, &mut out);
                    } else {
                        // The event-driven product, and short dense sums:
                        // the interpreter's loop over the transposed weight
                        // (the same bits).
                        if t.is_none() || b.first_iteration || !outside {
                            kernels::transpose(w, n_in, n_out, &mut wt, &mut finite);
                        }
                        if kind == MatMulKind::Dense {
                            let x = self.val(b, input, step);
                            event::matmul_dense_rows(x, &wt, &finite, n_in, n_out, &mut out);
                        } else {
                            let (key, spikes) = self.spike_rows(b, i, input, t, n_in);
                            event::matmul(&spikes, &wt, &finite, n_in, n_out, &mut out);
                            b.spikes.insert(key, (true, spikes));
                        }
                    }
                    b.transposed[i] = (wt, finite);
                }
            }
            Op::Conv2d { input, weight, bias, stride, padding, dilation, groups, kind } => {
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
                    dilation: dilation.map(|v| v as usize),
                    groups: groups as usize,
                };
                let bias = bias.map(|x| self.val(b, x, step));
                let (x, w) = (self.val(b, input, step), self.val(b, weight, step));
                // The event-driven kernel handles dilation 1 and one group
                // (what `sparsify` picks it for); the rest runs dense.
                match kind {
                    MatMulKind::EventDriven if event_conv::handles(&s) => {
                        event_conv::spike_conv2d(x, w, bias, s, &mut out)
                    }
                    _ => kernels::conv2d(x, w, bias, s, &mut out),
                }
            }
            Op::Pool2d { op, input, kernel, stride, padding } => {
                let s = pool_shape(&b.dims[input.index()], dims, [kernel, stride, padding]);
                kernels::pool2d(op, self.val(b, input, step), s, &mut out);
            }
            Op::ReduceTime { op, arg } => {
                kernels::reduce_time(op, self.val(b, arg, step), module.steps as usize, &mut out)
            }
            Op::MaxAll(arg) => out.fill(kernels::max_all(self.val(b, arg, step))),
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
                        let mut scratch = std::mem::take(&mut b.grad_scratch[i]);
                        let (key, spikes) = self.spike_rows(b, i, input, t, n_in);
                        let g = self.val(b, grad, step);
                        if event::grad_weight_direct_pays(&spikes, n_in) {
                            event::matmul_grad_weight_direct(g, &spikes, n_in, n_out, &mut out);
                        } else {
                            event::matmul_grad_weight(g, &spikes, n_in, n_out, &mut scratch, &mut out);
                        }
                        b.spikes.insert(key, (true, spikes));
                        b.grad_scratch[i] = scratch;
                    }
                }
            }
            Op::SumTo { arg, .. } => kernels::sum_rows(self.val(b, arg, step), &mut out),
            Op::Conv2dGradInput { grad, weight, stride, padding, dilation, groups, .. } => {
                let attrs = ([stride, padding, dilation], groups);
                let s = conv_shape(&b.dims[grad.index()], dims, &b.dims[weight.index()], attrs);
                kernels::conv2d_grad_input(self.val(b, grad, step), self.val(b, weight, step), s, &mut out);
            }
            Op::Conv2dGradWeight { grad, input, stride, padding, dilation, groups, kind, .. } => {
                let attrs = ([stride, padding, dilation], groups);
                let s = conv_shape(&b.dims[grad.index()], &b.dims[input.index()], dims, attrs);
                let (g, x) = (self.val(b, grad, step), self.val(b, input, step));
                match kind {
                    MatMulKind::EventDriven if event_conv::handles(&s) => {
                        event_conv::spike_conv2d_grad_weight(g, x, s, &mut out)
                    }
                    _ => kernels::conv2d_grad_weight(g, x, s, &mut out),
                }
            }
            Op::Conv2dGradBias { grad } => {
                let gd = &b.dims[grad.index()];
                let r = gd.len();
                let n = gd[..r - 3].iter().product();
                kernels::conv2d_grad_bias(self.val(b, grad, step), n, gd[r - 2] * gd[r - 1], &mut out);
            }
            Op::Pool2dGrad { op, input, grad, kernel, stride, padding } => {
                let s = pool_shape(&b.dims[input.index()], &b.dims[grad.index()], [kernel, stride, padding]);
                kernels::pool2d_grad(op, self.val(b, input, step), self.val(b, grad, step), s, &mut out);
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
            Op::Concat { ref args } => {
                // Row r (time and batch) of the result is row r of each
                // operand in order; the axis is the dim after them.
                let axis = usize::from(node.ty.seq) + 1;
                let rows: usize = dims[..axis].iter().product();
                let mut at = 0;
                for r in 0..rows {
                    for &a in args {
                        let blk: usize = b.dims[a.index()][axis..].iter().product();
                        out[at..at + blk].copy_from_slice(&self.val(b, a, step)[r * blk..(r + 1) * blk]);
                        at += blk;
                    }
                }
            }
            Op::ChannelSum { arg, mean, per_step } => {
                // `[steps, lead, c, inner]` around the channel dim (time
                // and batch lead, or time apart when `per_step`); sums in
                // the interpreter's order.
                let axis = channel_dim(&self.module.nodes[arg].ty);
                let xd = &b.dims[arg.index()];
                let seq = self.module.nodes[arg].ty.seq;
                let from = usize::from(per_step && seq);
                let (lead, c, inner) = (xd[from..axis].iter().product(), xd[axis], xd[axis + 1..].iter().product());
                if per_step && !seq {
                    // The same value at every step: its sum, repeated.
                    let n = c.min(out.len());
                    let (first, rest) = out.split_at_mut(n);
                    kernels::channel_sum(self.val(b, arg, step), lead, c, inner, mean, first);
                    rest.chunks_exact_mut(c.max(1)).for_each(|r| r.copy_from_slice(first));
                } else {
                    kernels::channel_sum(self.val(b, arg, step), lead, c, inner, mean, &mut out);
                }
            }
            Op::ChannelBroadcast { arg, mean, .. } => {
                // A `seq` result repeats each step of a `[T, C]` operand.
                let axis = channel_dim(&node.ty);
                let from = usize::from(node.ty.seq);
                let steps = if node.ty.seq { dims[0] } else { 1 };
                let (lead, inner) =
                    (dims[from..axis].iter().product::<usize>(), dims[axis + 1..].iter().product::<usize>());
                kernels::channel_broadcast(self.val(b, arg, step), steps, lead, inner, mean, &mut out);
            }
            Op::Narrow { arg, start, .. } => {
                let axis = usize::from(node.ty.seq) + 1;
                let xd = &b.dims[arg.index()];
                let inner: usize = xd[axis + 1..].iter().product();
                let (block, len) = (xd[axis] * inner, dims[axis] * inner);
                let x = self.val(b, arg, step);
                let from = start as usize * inner;
                for (r, o) in out.chunks_exact_mut(len.max(1)).enumerate() {
                    o.copy_from_slice(&x[r * block + from..r * block + from + len]);
                }
            }
            Op::Uniform { seed, seq, .. } => {
                let per_step = if seq { out.len() / (module.steps as usize).max(1) } else { out.len() };
                crate::uniform::fill(seed, step, seq, per_step, &mut out);
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
            | Op::StdpUpdate { .. }
            | Op::Extract { .. } => unreachable!("handled above"),
        }
        b.own[i] = out;
    }
}

/// The geometry of a pooling of an input of dims `xd` to dims `od`.
fn pool_shape(xd: &[usize], od: &[usize], [kernel, stride, padding]: [[u32; 2]; 3]) -> PoolShape {
    let (r, ro) = (xd.len(), od.len());
    PoolShape {
        size: [xd[r - 2], xd[r - 1]],
        kernel: kernel.map(|v| v as usize),
        stride: stride.map(|v| v as usize),
        padding: padding.map(|v| v as usize),
        out: [od[ro - 2], od[ro - 1]],
    }
}

/// The geometry of a convolution from the dims of its gradient (`[.., O,
/// H', W']`), its input (`[.., C, H, W]`) and its weight (`[O, C/g, kh,
/// kw]`), with its `[stride, padding, dilation]` and groups.
fn conv_shape(
    gd: &[usize],
    xd: &[usize],
    wd: &[usize],
    ([stride, padding, dilation], groups): ([[u32; 2]; 3], u32),
) -> ConvShape {
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
        dilation: dilation.map(|v| v as usize),
        groups: groups as usize,
    }
}

/// Runs a JIT kernel, its elements split over threads when there are many.
/// The layouts were checked at compile time and the buffers have the
/// node's sizes, so `run` cannot fail on length checks.
/// A [`Kernel::JitRows`] kernel: once per output row of `row` elements,
/// the full inputs and the outputs at that row, the suffix inputs (those of
/// `row` elements) whole; rows split over threads as [`run_jit`] splits.
fn run_jit_rows(k: &JitKernel, row: usize, ins: &[&[f32]], outs: &mut [&mut [f32]]) {
    let n = outs.first().map_or(0, |o| o.len());
    let expect = "kernel buffers have the sizes the kernel was compiled for";
    let rows = n / row.max(1);
    let ns = n.saturating_mul(ins.len() + outs.len()) / crate::pool::ELEMENTS_PER_NS;
    let parts = crate::pool::parts(rows, ns).max(1);
    let per = rows.div_ceil(parts).max(1) * row;
    let full = |x: &[f32]| x.len() == n && n != row;
    let mut split: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(per.max(1))).map(|_| Vec::new()).collect();
    for o in outs.iter_mut() {
        for (j, c) in o.chunks_mut(per.max(1)).enumerate() {
            split[j].push(c);
        }
    }
    crate::pool::for_each_item(split, |j, mut part| {
        let start = j * per;
        let len = part.first().map_or(0, |p| p.len());
        for r in (0..len).step_by(row.max(1)) {
            let row_ins: Vec<&[f32]> = k
                .layouts()
                .iter()
                .zip(ins)
                .map(|(l, x)| match l {
                    InputLayout::Full if full(x) => &x[start + r..start + r + row],
                    InputLayout::Full | InputLayout::Scalar => *x,
                })
                .collect();
            let mut row_outs: Vec<&mut [f32]> = part.iter_mut().map(|p| &mut p[r..r + row]).collect();
            k.run(&row_ins, &mut row_outs).expect(expect);
        }
    });
}

fn run_jit(k: &JitKernel, ins: &[&[f32]], outs: &mut [&mut [f32]]) {
    let n = outs.first().map_or(0, |o| o.len());
    let expect = "kernel buffers have the sizes the kernel was compiled for";
    let ns = n.saturating_mul(ins.len() + outs.len()) / crate::pool::ELEMENTS_PER_NS;
    let parts = crate::pool::parts(n / 64, ns);
    if parts <= 1 {
        k.run(ins, outs).expect(expect);
        return;
    }
    let per = n.div_ceil(parts).div_ceil(64) * 64;
    let mut split: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(per)).map(|_| Vec::new()).collect();
    for o in outs.iter_mut() {
        for (j, c) in o.chunks_mut(per).enumerate() {
            split[j].push(c);
        }
    }
    crate::pool::for_each_item(split, |j, mut part| {
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
    // An instruction takes about what an element of a stream does.
    let ns = n.saturating_mul(kernel.body.len()) / crate::pool::ELEMENTS_PER_NS;
    let parts = crate::pool::parts(n / CHUNK, ns);
    if parts <= 1 {
        eval_range(kernel, inputs, 0, n, outs);
        return;
    }
    // Split the element range: each part writes its own disjoint part of
    // every output.
    let per = n.div_ceil(parts).div_ceil(CHUNK) * CHUNK;
    let mut split: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(per)).map(|_| Vec::new()).collect();
    for o in outs.iter_mut() {
        for (j, c) in o.chunks_mut(per).enumerate() {
            split[j].push(c);
        }
    }
    crate::pool::for_each_item(split, |j, mut part| {
        let len = part.first().map_or(0, |p| p.len());
        eval_range(kernel, inputs, j * per, len, &mut part);
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

/// The index of the channel dim of `ChannelSum`/`ChannelBroadcast` in a
/// value's full dims (time first when `seq`).
fn channel_dim(ty: &snnc_ir::Type) -> usize {
    let (axis, _) = snnc_ir::typing::channel_axis(&ty.shape).unwrap_or((0, 0));
    axis + usize::from(ty.seq)
}
