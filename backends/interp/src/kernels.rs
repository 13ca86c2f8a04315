//! The arithmetic of every op, on flat row-major buffers.
//!
//! Each kernel clears `out` and fills it; none allocates per element. The
//! order of every floating-point operation is part of the definition and is
//! written out in the doc comments (an `f32` run rounds after each one).

use snnc_ir::{BinaryOp, CompareOp, Dtype, FusedKernel, KernelInst, PoolOp, ReduceOp, UnaryOp};

use crate::real::Real;

/// `max(a, b)` as PyTorch's `maximum`: NaN if either is NaN; otherwise the
/// larger, and `a` when they compare equal (so the first of equal values
/// wins, which only shows for `-0` and `+0`).
pub(crate) fn max_nan<F: Real>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::nan()
    } else if b > a {
        b
    } else {
        a
    }
}

/// `min(a, b)`: NaN if either is NaN; otherwise the smaller, `a` on ties.
pub(crate) fn min_nan<F: Real>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::nan()
    } else if b < a {
        b
    } else {
        a
    }
}

fn bool_to<F: Real>(b: bool) -> F {
    if b { F::one() } else { F::zero() }
}

/// Applies `f` elementwise to two operands broadcast to `n` elements.
///
/// Suffix broadcasting on row-major buffers: an operand whose dims are a
/// suffix of the result's repeats with period `len`, so element `i` of the
/// result reads element `i % len` of it (equal shapes read `i`, scalars 0).
fn zip2<F: Real>(a: &[F], b: &[F], n: usize, out: &mut Vec<F>, f: impl Fn(F, F) -> F) {
    out.clear();
    if a.len() == n && b.len() == n {
        out.extend(a.iter().zip(b).map(|(&x, &y)| f(x, y)));
    } else if a.is_empty() || b.is_empty() {
        // Only an empty result broadcasts from an empty operand.
        out.resize(n, F::nan());
    } else {
        out.extend((0..n).map(|i| f(a[i % a.len()], b[i % b.len()])));
    }
}

/// Elementwise functions of one argument (spikes are 0/1 in the float type):
///
/// | op | value |
/// |---|---|
/// | `neg` | `-x` |
/// | `abs` | `|x|` |
/// | `exp` | `e^x` |
/// | `log` | natural logarithm `ln x` (NaN below 0, `-inf` at 0) |
/// | `tanh` | `tanh x` |
/// | `sqrt` | `√x` (NaN below 0) |
/// | `relu` | `max(x, 0)` as [`max_nan`]: NaN stays NaN, `-0` stays `-0` |
///
/// `exp`, `ln`, `tanh` and `sqrt` are the Rust standard library's functions
/// of the run's float type.
pub(crate) fn unary<F: Real>(op: UnaryOp, x: &[F], out: &mut Vec<F>) {
    out.clear();
    let f: fn(F) -> F = match op {
        UnaryOp::Neg => |x: F| -x,
        UnaryOp::Abs => |x: F| x.abs(),
        UnaryOp::Exp => |x: F| x.exp(),
        UnaryOp::Log => |x: F| x.ln(),
        UnaryOp::Tanh => |x: F| x.tanh(),
        UnaryOp::Sqrt => |x: F| x.sqrt(),
        UnaryOp::Relu => |x: F| max_nan(x, F::zero()),
    };
    out.extend(x.iter().map(|&v| f(v)));
}

/// Elementwise `lhs op rhs` with suffix broadcasting: `add` `a + b`, `sub`
/// `a - b`, `mul` `a * b`, `div` `a / b` (IEEE: `x/0` is ±inf or NaN),
/// `max`/`min` as [`max_nan`]/[`min_nan`]. Two spikes (`mul`, `max`, `min`)
/// give 0/1 again: `and`, `or`, `and`.
pub(crate) fn binary<F: Real>(op: BinaryOp, a: &[F], b: &[F], n: usize, out: &mut Vec<F>) {
    match op {
        BinaryOp::Add => zip2(a, b, n, out, |x, y| x + y),
        BinaryOp::Sub => zip2(a, b, n, out, |x, y| x - y),
        BinaryOp::Mul => zip2(a, b, n, out, |x, y| x * y),
        BinaryOp::Div => zip2(a, b, n, out, |x, y| x / y),
        BinaryOp::Max => zip2(a, b, n, out, max_nan),
        BinaryOp::Min => zip2(a, b, n, out, min_nan),
    }
}

/// Elementwise comparison with suffix broadcasting: 1 where `lhs op rhs`
/// holds, else 0. IEEE comparisons: anything compared with NaN is false.
pub(crate) fn compare<F: Real>(op: CompareOp, a: &[F], b: &[F], n: usize, out: &mut Vec<F>) {
    match op {
        CompareOp::Gt => zip2(a, b, n, out, |x, y| bool_to(x > y)),
        CompareOp::Ge => zip2(a, b, n, out, |x, y| bool_to(x >= y)),
        CompareOp::Lt => zip2(a, b, n, out, |x, y| bool_to(x < y)),
        CompareOp::Le => zip2(a, b, n, out, |x, y| bool_to(x <= y)),
        CompareOp::Eq => zip2(a, b, n, out, |x, y| bool_to(x == y)),
    }
}

/// `cond != 0 ? on_true : on_false` elementwise, all three operands suffix
/// broadcast to the `n` elements of the result.
pub(crate) fn select<F: Real>(cond: &[F], a: &[F], b: &[F], n: usize, out: &mut Vec<F>) {
    out.clear();
    if cond.is_empty() || a.is_empty() || b.is_empty() {
        out.resize(n, F::nan());
        return;
    }
    out.extend((0..n).map(|i| if cond[i % cond.len()] != F::zero() { a[i % a.len()] } else { b[i % b.len()] }));
}

/// The Heaviside step: 1 where `x > 0` (strictly), else 0 (also for NaN).
pub(crate) fn threshold<F: Real>(x: &[F], out: &mut Vec<F>) {
    out.clear();
    out.extend(x.iter().map(|&v| bool_to::<F>(v > F::zero())));
}

/// Converts the dtype: to `f32`, each value rounded to `f32` (a no-op in an
/// `f32` run); to `f64` or `spike`, the same values.
pub(crate) fn cast<F: Real>(dtype: Dtype, x: &[F], out: &mut Vec<F>) {
    out.clear();
    if dtype == Dtype::F32 {
        out.extend(x.iter().map(|&v| F::from_f64(f64::from(v.to_f64() as f32))));
    } else {
        out.extend_from_slice(x);
    }
}

/// A `fused` kernel over `n` elements: `inputs[i]` is input `i`'s value,
/// which repeats to `n` elements (suffix broadcasting); `outs` receives one
/// buffer of `n` elements per kernel output.
///
/// The body runs one instruction at a time over all elements, each with the
/// kernel of its IR op (`unary`, `binary`, ...): element `e` of every
/// instruction is computed by exactly the operations, in the same order and
/// precision, as the unfused ops would compute element `e`, so a fused
/// module gives the same bits as the module it came from. A constant, or a
/// value that depends only on inputs smaller than the kernel, is kept at
/// its own length and broadcast where it meets the full shape (and when it
/// is written out).
pub(crate) fn fused<F: Real>(kernel: &FusedKernel, inputs: &[&[F]], n: usize, outs: &mut Vec<Vec<F>>) {
    let mut regs: Vec<Vec<F>> = Vec::with_capacity(kernel.body.len());
    for inst in &kernel.body {
        let mut r = Vec::new();
        let reg = |a: u32| regs[a as usize].as_slice();
        // Binary results broadcast to the full kernel shape unless both
        // operands are shorter (then to the longer of the two, a suffix).
        let len2 = |a: &[F], b: &[F]| if a.len() == b.len() { a.len() } else { n };
        match *inst {
            KernelInst::Input(i) => r.extend_from_slice(inputs[i as usize]),
            KernelInst::Const { value, .. } => r.push(F::from_f64(value)),
            KernelInst::Unary { op, arg } => unary(op, reg(arg), &mut r),
            KernelInst::Binary { op, lhs, rhs } => {
                let (a, b) = (reg(lhs), reg(rhs));
                binary(op, a, b, len2(a, b), &mut r)
            }
            KernelInst::Compare { op, lhs, rhs } => {
                let (a, b) = (reg(lhs), reg(rhs));
                compare(op, a, b, len2(a, b), &mut r)
            }
            KernelInst::Select { cond, on_true, on_false } => {
                let (c, a, b) = (reg(cond), reg(on_true), reg(on_false));
                let len = if c.len() == a.len() && a.len() == b.len() { a.len() } else { n };
                select(c, a, b, len, &mut r)
            }
            KernelInst::Threshold { arg, .. } => threshold(reg(arg), &mut r),
            KernelInst::StopGradient(arg) => r.extend_from_slice(reg(arg)),
            KernelInst::Cast { arg, dtype } => cast(dtype, reg(arg), &mut r),
        }
        regs.push(r);
    }
    outs.resize_with(kernel.outputs.len(), Vec::new);
    for (buf, &o) in outs.iter_mut().zip(&kernel.outputs) {
        let r = &regs[o as usize];
        buf.clear();
        if r.len() == n {
            buf.extend_from_slice(r);
        } else if r.is_empty() {
            buf.resize(n, F::nan());
        } else {
            buf.extend((0..n).map(|e| r[e % r.len()]));
        }
    }
}

/// `x @ w^T`: `x` is `rows × n_in`, `w` is `n_out × n_in` (torch's Linear
/// layout), the result `rows × n_out`.
///
/// Every result element is `((0 + x[0] w[o,0]) + x[1] w[o,1]) + ...`, summed
/// over `k = 0..n_in` in order, starting from `+0`, each product rounded
/// then added (no fused multiply-add). Terms with `x[k] == 0` are skipped
/// when column `k` of `w` is finite: they would add an exact ±0, which
/// changes no sum that starts from `+0`, so the numbers are those of the
/// dense loop (a non-finite weight still meets its zero input: `0 * inf` is
/// NaN). `scratch` holds the transposed weight.
pub(crate) fn matmul<F: Real>(
    x: &[F],
    w: &[F],
    rows: usize,
    n_in: usize,
    n_out: usize,
    out: &mut Vec<F>,
    scratch: &mut Vec<F>,
) {
    out.clear();
    out.resize(rows * n_out, F::zero());
    // wt[k * n_out + o] = w[o * n_in + k]; finite[k]: column k is finite.
    scratch.clear();
    scratch.resize(n_in * n_out, F::zero());
    let mut finite = vec![true; n_in];
    for o in 0..n_out {
        for k in 0..n_in {
            let v = w[o * n_in + k];
            scratch[k * n_out + o] = v;
            finite[k] &= v.is_finite();
        }
    }
    for m in 0..rows {
        let acc = &mut out[m * n_out..(m + 1) * n_out];
        let xr = &x[m * n_in..(m + 1) * n_in];
        for (k, &xk) in xr.iter().enumerate() {
            if xk == F::zero() && finite[k] {
                continue;
            }
            let wr = &scratch[k * n_out..(k + 1) * n_out];
            for (a, &wv) in acc.iter_mut().zip(wr) {
                *a = *a + xk * wv;
            }
        }
    }
}

/// The geometry of a 2-d convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvShape {
    /// Images: the product of all input dims before the last three.
    pub n: usize,
    /// Input channels (all groups).
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Output channels (all groups).
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvShape {
    /// Input channels per group.
    fn cg(&self) -> usize {
        self.c / self.groups
    }

    /// Output channels per group.
    fn og(&self) -> usize {
        self.o / self.groups
    }

    /// The input row (axis 0) or column (axis 1) that output position `i`
    /// reads through kernel tap `a`, `None` in the padding.
    fn at(&self, ax: usize, i: usize, a: usize) -> Option<usize> {
        let limit = if ax == 0 { self.h } else { self.w };
        (i * self.stride[ax] + a * self.dilation[ax]).checked_sub(self.padding[ax]).filter(|&r| r < limit)
    }
}

/// torch's `conv2d` (cross-correlation), NCHW, with zero padding, dilation
/// and groups (`cg = C / groups` input channels per group, output channel
/// `o` in group `g = o / (O / groups)`):
///
/// `y[n,o,i,j] = (sum over ci < cg, a, b in row-major order of
/// x[n, g cg + ci, i*sh + a*dh - ph, j*sw + b*dw - pw] * w[o, ci, a, b]) + bias[o]`
///
/// where `x` outside the image is 0 (its products are computed too, so a
/// non-finite weight makes NaN there, as in the dense formula). The sum
/// starts from `+0` and adds each rounded product in order; the bias, if
/// any, is added last.
pub(crate) fn conv2d<F: Real>(x: &[F], w: &[F], bias: Option<&[F]>, s: ConvShape, out: &mut Vec<F>) {
    out.clear();
    out.resize(s.n * s.o * s.oh * s.ow, F::zero());
    let (plane, cg, og) = (s.oh * s.ow, s.cg(), s.og());
    for n in 0..s.n {
        for o in 0..s.o {
            let acc = &mut out[(n * s.o + o) * plane..(n * s.o + o + 1) * plane];
            // Loop over the kernel outside and the output plane inside: each
            // output element still receives its terms in (c, a, b) order.
            for ci in 0..cg {
                let c = (o / og) * cg + ci;
                let img = &x[(n * s.c + c) * s.h * s.w..(n * s.c + c + 1) * s.h * s.w];
                for a in 0..s.kh {
                    for b in 0..s.kw {
                        let wv = w[((o * cg + ci) * s.kh + a) * s.kw + b];
                        for i in 0..s.oh {
                            let row = s.at(0, i, a);
                            for j in 0..s.ow {
                                let xv = match (row, s.at(1, j, b)) {
                                    (Some(r), Some(q)) => img[r * s.w + q],
                                    _ => F::zero(),
                                };
                                let e = &mut acc[i * s.ow + j];
                                *e = *e + xv * wv;
                            }
                        }
                    }
                }
            }
            if let Some(bias) = bias {
                for e in acc.iter_mut() {
                    *e = *e + bias[o];
                }
            }
        }
    }
}

/// The geometry of a 2-d pooling: `lead` slices of `h × w`, windows
/// `kernel`, `stride`, `padding` per axis, output `oh × ow`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolShape {
    pub lead: usize,
    pub size: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub out: [usize; 2],
}

impl PoolShape {
    /// The in-image part of window `(i, j)`: rows `r0..r1`, columns `q0..q1`
    /// (never empty: the padding is at most half the kernel).
    fn window(&self, i: usize, j: usize) -> [std::ops::Range<usize>; 2] {
        [(i, 0), (j, 1)].map(|(i, ax)| {
            let start = i * self.stride[ax];
            let lo = start.saturating_sub(self.padding[ax]);
            let hi = (start + self.kernel[ax]).saturating_sub(self.padding[ax]).min(self.size[ax]);
            lo..hi
        })
    }
}

/// Pooling over the last two dims, floor mode, with padding:
///
/// | op | `y[.., i, j]` |
/// |---|---|
/// | `max` | the [`max_nan`] fold, in row-major order from the window's first in-image element, of its in-image elements (the padding is `-inf`, never taken); NaN propagates |
/// | `sum` | the sum of the window's in-image elements in row-major order from `+0` (the padding is 0) |
/// | `avg` | that sum divided once by `kh * kw` (torch's `count_include_pad=True`) |
pub(crate) fn pool2d<F: Real>(op: PoolOp, x: &[F], s: PoolShape, out: &mut Vec<F>) {
    out.clear();
    let [h, w] = s.size;
    let count = F::from_f64((s.kernel[0] * s.kernel[1]) as f64);
    for l in 0..s.lead {
        let img = &x[l * h * w..(l + 1) * h * w];
        for i in 0..s.out[0] {
            for j in 0..s.out[1] {
                let [rows, cols] = s.window(i, j);
                let v = match op {
                    PoolOp::Max => {
                        let mut m = img[rows.start * w + cols.start];
                        for r in rows {
                            for q in cols.clone() {
                                m = max_nan(m, img[r * w + q]);
                            }
                        }
                        m
                    }
                    PoolOp::Sum | PoolOp::Avg => {
                        let mut acc = F::zero();
                        for r in rows {
                            for q in cols.clone() {
                                acc = acc + img[r * w + q];
                            }
                        }
                        if op == PoolOp::Avg { acc / count } else { acc }
                    }
                };
                out.push(v);
            }
        }
    }
}

/// Reduces `x`, `steps × n` row-major, over its first (time) dim:
///
/// | op | value |
/// |---|---|
/// | `sum` | `((0 + x[0]) + x[1]) + ... + x[T-1]`, in step order |
/// | `mean` | `sum / T` (T converted to the float type, one division) |
/// | `max` | [`max_nan`] fold from `x[0]` in step order (NaN propagates) |
/// | `last` | `x[T-1]` |
pub(crate) fn reduce_time<F: Real>(op: ReduceOp, x: &[F], steps: usize, n: usize, out: &mut Vec<F>) {
    out.clear();
    let at = |t: usize| &x[t * n..(t + 1) * n];
    match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            out.resize(n, F::zero());
            for t in 0..steps {
                for (o, &v) in out.iter_mut().zip(at(t)) {
                    *o = *o + v;
                }
            }
            if op == ReduceOp::Mean {
                let tf = F::from_f64(steps as f64);
                for o in out.iter_mut() {
                    *o = *o / tf;
                }
            }
        }
        ReduceOp::Max => {
            out.extend_from_slice(at(0));
            for t in 1..steps {
                for (o, &v) in out.iter_mut().zip(at(t)) {
                    *o = max_nan(*o, v);
                }
            }
        }
        ReduceOp::Last => out.extend_from_slice(at(steps - 1)),
    }
}

/// `log_softmax` over rows of length `len`, as torch computes it on the
/// CPU: `m = max(x)` ([`max_nan`] fold from `x[0]`), `s = ((0 + exp(x[0] -
/// m)) + exp(x[1] - m)) + ...`, `y[i] = (x[i] - m) - ln(s)`.
pub(crate) fn log_softmax<F: Real>(x: &[F], len: usize, out: &mut Vec<F>) {
    out.clear();
    if len == 0 {
        return;
    }
    for row in x.chunks_exact(len) {
        let m = row.iter().skip(1).fold(row[0], |m, &v| max_nan(m, v));
        let s = row.iter().fold(F::zero(), |s, &v| s + (v - m).exp());
        let ls = s.ln();
        out.extend(row.iter().map(|&v| (v - m) - ls));
    }
}

/// Swaps the dims of an `m × n` matrix: `y[j, i] = x[i, j]`.
pub(crate) fn transpose<F: Real>(x: &[F], m: usize, n: usize, out: &mut Vec<F>) {
    out.clear();
    out.extend((0..n * m).map(|e| x[(e % m) * n + e / m]));
}

/// The weight gradient of `matmul`: `grad` is `rows × n_out`, `x` is
/// `rows × n_in`, the result `n_out × n_in` with
///
/// `dw[o, i] = ((0 + grad[0, o] x[0, i]) + grad[1, o] x[1, i]) + ...`,
///
/// summed over the rows in order from `+0`, each product rounded then
/// added. A term with `x[r, i] == 0` is skipped when row `r` of `grad` is
/// finite: it would add an exact ±0, which changes no sum that starts from
/// `+0`, so both kinds give the numbers of the dense loop (a non-finite
/// gradient still meets its zero input: `0 * inf` is NaN).
pub(crate) fn matmul_grad_weight<F: Real>(
    grad: &[F],
    x: &[F],
    rows: usize,
    n_in: usize,
    n_out: usize,
    out: &mut Vec<F>,
) {
    out.clear();
    out.resize(n_out * n_in, F::zero());
    for r in 0..rows {
        let g = &grad[r * n_out..(r + 1) * n_out];
        let xr = &x[r * n_in..(r + 1) * n_in];
        let finite = g.iter().all(|v| v.is_finite());
        for (i, &xv) in xr.iter().enumerate() {
            if xv == F::zero() && finite {
                continue;
            }
            for (o, &gv) in g.iter().enumerate() {
                let e = &mut out[o * n_in + i];
                *e = *e + gv * xv;
            }
        }
    }
}

/// Sums `x` (`lead × n` row-major) over its leading rows:
/// `y[k] = ((0 + x[0, k]) + x[1, k]) + ...`, in row order from `+0`.
/// `max_all`: the maximum of every element (NaN if any is NaN, `-inf` for
/// none), in order.
pub(crate) fn max_all<F: Real>(x: &[F]) -> F {
    x.iter().fold(F::neg_infinity(), |m, &v| max_nan(m, v))
}

pub(crate) fn sum_rows<F: Real>(x: &[F], n: usize, out: &mut Vec<F>) {
    out.clear();
    out.resize(n, F::zero());
    if n == 0 {
        return;
    }
    for row in x.chunks_exact(n) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o = *o + v;
        }
    }
}

/// The input gradient of [`conv2d`] (a transposed convolution): `grad` is
/// `[n, o, oh, ow]`, `w` is `[o, c/groups, kh, kw]`, the result
/// `[n, c, h, w]` with (for `c = g cg + ci`)
///
/// `dx[n, c, r, q] = sum of grad[n, o, i, j] * w[o, ci, a, b]`
///
/// over the `(o, a, b)` of group `g` (row-major order) and the one `(i, j)`
/// each gives with `i*sh + a*dh - ph = r`, `j*sw + b*dw - pw = q`. The sum
/// starts from `+0` and adds each rounded product in that order; positions
/// in the padding receive nothing.
pub(crate) fn conv2d_grad_input<F: Real>(grad: &[F], w: &[F], s: ConvShape, out: &mut Vec<F>) {
    out.clear();
    out.resize(s.n * s.c * s.h * s.w, F::zero());
    let (plane, oplane, cg, og) = (s.h * s.w, s.oh * s.ow, s.cg(), s.og());
    for n in 0..s.n {
        for c in 0..s.c {
            let acc = &mut out[(n * s.c + c) * plane..(n * s.c + c + 1) * plane];
            let (g0, ci) = (c / cg, c % cg);
            for o in g0 * og..(g0 + 1) * og {
                let g = &grad[(n * s.o + o) * oplane..(n * s.o + o + 1) * oplane];
                for a in 0..s.kh {
                    for b in 0..s.kw {
                        let wv = w[((o * cg + ci) * s.kh + a) * s.kw + b];
                        for i in 0..s.oh {
                            let Some(r) = s.at(0, i, a) else { continue };
                            for j in 0..s.ow {
                                let Some(q) = s.at(1, j, b) else { continue };
                                let e = &mut acc[r * s.w + q];
                                *e = *e + g[i * s.ow + j] * wv;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The weight gradient of [`conv2d`]: `grad` is `[n, o, oh, ow]`, `x` the
/// forward input `[n, c, h, w]`, the result `[o, c/groups, kh, kw]` with
/// (`g` the group of `o`)
///
/// `dw[o, ci, a, b] = sum over (n, i, j) in row-major order of
/// grad[n, o, i, j] * x[n, g cg + ci, i*sh + a*dh - ph, j*sw + b*dw - pw]`
///
/// where `x` outside the image is 0 (its products are computed too, as in
/// the forward). The sum starts from `+0` and adds each rounded product.
pub(crate) fn conv2d_grad_weight<F: Real>(grad: &[F], x: &[F], s: ConvShape, out: &mut Vec<F>) {
    out.clear();
    let (cg, og) = (s.cg(), s.og());
    out.resize(s.o * cg * s.kh * s.kw, F::zero());
    let (plane, oplane) = (s.h * s.w, s.oh * s.ow);
    for o in 0..s.o {
        for ci in 0..cg {
            let c = (o / og) * cg + ci;
            for a in 0..s.kh {
                for b in 0..s.kw {
                    let mut acc = F::zero();
                    for n in 0..s.n {
                        let g = &grad[(n * s.o + o) * oplane..(n * s.o + o + 1) * oplane];
                        let img = &x[(n * s.c + c) * plane..(n * s.c + c + 1) * plane];
                        for i in 0..s.oh {
                            let row = s.at(0, i, a);
                            for j in 0..s.ow {
                                let xv = match (row, s.at(1, j, b)) {
                                    (Some(r), Some(q)) => img[r * s.w + q],
                                    _ => F::zero(),
                                };
                                acc = acc + g[i * s.ow + j] * xv;
                            }
                        }
                    }
                    out[((o * cg + ci) * s.kh + a) * s.kw + b] = acc;
                }
            }
        }
    }
}

/// The bias gradient of [`conv2d`]: `grad` is `[n, o, oh, ow]`, the result
/// `[o]` with `db[o]` the sum over `(n, i, j)` in row-major order of
/// `grad[n, o, i, j]`, from `+0`.
pub(crate) fn conv2d_grad_bias<F: Real>(grad: &[F], n: usize, o: usize, plane: usize, out: &mut Vec<F>) {
    out.clear();
    out.resize(o, F::zero());
    for img in 0..n {
        for (ch, acc) in out.iter_mut().enumerate() {
            for &v in &grad[(img * o + ch) * plane..(img * o + ch + 1) * plane] {
                *acc = *acc + v;
            }
        }
    }
}

/// The input gradient of [`pool2d`]: `x` is the forward input, `grad` the
/// gradient of the pooled result. Windows in row-major order add to the
/// result, which starts from `+0`:
///
/// | op | what a window adds |
/// |---|---|
/// | `max` | its gradient to the element torch's CPU kernel picks: starting from `-inf` and the window's first in-image element, an element is taken when it is greater than the maximum so far or NaN (so the first maximum wins, and among NaNs the last) |
/// | `sum` | its gradient to each in-image element |
/// | `avg` | its gradient divided once by `kh * kw` to each in-image element |
pub(crate) fn pool2d_grad<F: Real>(op: PoolOp, x: &[F], grad: &[F], s: PoolShape, out: &mut Vec<F>) {
    out.clear();
    let [h, w] = s.size;
    let [oh, ow] = s.out;
    out.resize(s.lead * h * w, F::zero());
    let count = F::from_f64((s.kernel[0] * s.kernel[1]) as f64);
    for l in 0..s.lead {
        let img = &x[l * h * w..(l + 1) * h * w];
        let g = &grad[l * oh * ow..(l + 1) * oh * ow];
        let acc = &mut out[l * h * w..(l + 1) * h * w];
        for i in 0..oh {
            for j in 0..ow {
                let [rows, cols] = s.window(i, j);
                let gv = g[i * ow + j];
                match op {
                    PoolOp::Max => {
                        let (mut m, mut at) = (F::neg_infinity(), rows.start * w + cols.start);
                        for r in rows {
                            for q in cols.clone() {
                                let v = img[r * w + q];
                                if v > m || v.is_nan() {
                                    m = v;
                                    at = r * w + q;
                                }
                            }
                        }
                        acc[at] = acc[at] + gv;
                    }
                    PoolOp::Sum | PoolOp::Avg => {
                        let d = if op == PoolOp::Avg { gv / count } else { gv };
                        for r in rows {
                            for q in cols.clone() {
                                acc[r * w + q] = acc[r * w + q] + d;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The gradient of [`reduce_time`]: `x` is the forward operand (`steps × n`),
/// `grad` the gradient of the reduction (`n`); the result is `steps × n`:
///
/// | op | value at step `t` |
/// |---|---|
/// | `sum` | `grad` |
/// | `mean` | `grad / T` (T converted to the float type, one division) |
/// | `max` | `grad` at the step `torch.max` returns, `+0` elsewhere: the first NaN step if any, else the first maximal step |
/// | `last` | `grad` at `T-1`, `+0` elsewhere |
pub(crate) fn reduce_time_grad<F: Real>(op: ReduceOp, x: &[F], grad: &[F], steps: usize, n: usize, out: &mut Vec<F>) {
    out.clear();
    match op {
        ReduceOp::Sum => {
            for _ in 0..steps {
                out.extend_from_slice(grad);
            }
        }
        ReduceOp::Mean => {
            let tf = F::from_f64(steps as f64);
            for _ in 0..steps {
                out.extend(grad.iter().map(|&g| g / tf));
            }
        }
        ReduceOp::Last => {
            out.resize(steps * n, F::zero());
            if steps > 0 {
                out[(steps - 1) * n..].copy_from_slice(grad);
            }
        }
        ReduceOp::Max => {
            out.resize(steps * n, F::zero());
            if steps == 0 {
                return;
            }
            for k in 0..n {
                let (mut m, mut at) = (x[k], 0);
                if !m.is_nan() {
                    for t in 1..steps {
                        let v = x[t * n + k];
                        if v > m || v.is_nan() {
                            m = v;
                            at = t;
                            if v.is_nan() {
                                break;
                            }
                        }
                    }
                }
                out[at * n + k] = grad[k];
            }
        }
    }
}

/// The gradient of [`log_softmax`] over rows of length `len`: `out` is its
/// forward result, `grad` the gradient of it; with `s = ((0 + grad[0]) +
/// grad[1]) + ...` per row, `dx[i] = grad[i] - exp(out[i]) * s`.
pub(crate) fn log_softmax_grad<F: Real>(y: &[F], grad: &[F], len: usize, out: &mut Vec<F>) {
    out.clear();
    if len == 0 {
        return;
    }
    for (yr, gr) in y.chunks_exact(len).zip(grad.chunks_exact(len)) {
        let s = gr.iter().fold(F::zero(), |s, &v| s + v);
        out.extend(yr.iter().zip(gr).map(|(&yv, &gv)| gv - yv.exp() * s));
    }
}

/// `concat`: `rows` rows (the time and batch dims); row `r` of the result
/// is row `r` of each operand in operand order, operand `i`'s row being
/// `blocks[i]` elements long (its axis dim times the dims after it).
pub(crate) fn concat<F: Real>(args: &[&[F]], blocks: &[usize], rows: usize, out: &mut Vec<F>) {
    for r in 0..rows {
        for (x, &blk) in args.iter().zip(blocks) {
            out.extend_from_slice(&x[r * blk..(r + 1) * blk]);
        }
    }
}

/// `narrow`: `rows` rows of `block` elements each; row `r` of the result is
/// the `len` elements of row `r` starting at `start`.
pub(crate) fn narrow<F: Real>(x: &[F], rows: usize, block: usize, start: usize, len: usize, out: &mut Vec<F>) {
    for r in 0..rows {
        out.extend_from_slice(&x[r * block + start..r * block + start + len]);
    }
}

/// `channel_sum` / `channel_mean`: `x` is `[lead, c, inner]`; `out[k]` is
/// the sum over `lead` and `inner` of `x[l, k, i]` (in that order), divided
/// by `lead * inner` when `mean`.
pub(crate) fn channel_sum<F: Real>(x: &[F], lead: usize, c: usize, inner: usize, mean: bool, out: &mut Vec<F>) {
    out.clear();
    out.resize(c, F::zero());
    channel_sum_into(x, lead, c, inner, mean, out);
}

/// `channel_sum_per_step` / `channel_mean_per_step`: `x` is
/// `[steps, lead, c, inner]`; row `t` of the `[steps, c]` result is
/// [`channel_sum`] of step `t` (the same bits as that step summed alone).
pub(crate) fn channel_sum_per_step<F: Real>(
    x: &[F],
    steps: usize,
    lead: usize,
    c: usize,
    inner: usize,
    mean: bool,
    out: &mut Vec<F>,
) {
    out.clear();
    out.resize(steps * c, F::zero());
    let per = lead * c * inner;
    for (t, o) in out.chunks_exact_mut(c.max(1)).enumerate().take(steps) {
        channel_sum_into(&x[t * per..(t + 1) * per], lead, c, inner, mean, o);
    }
}

/// The sum of [`channel_sum`] into `out` (`c` zeros).
fn channel_sum_into<F: Real>(x: &[F], lead: usize, c: usize, inner: usize, mean: bool, out: &mut [F]) {
    for l in 0..lead {
        for (k, o) in out.iter_mut().enumerate() {
            let row = &x[(l * c + k) * inner..(l * c + k + 1) * inner];
            for &v in row {
                *o = *o + v;
            }
        }
    }
    if mean {
        let n = F::from_f64((lead * inner) as f64);
        for o in out.iter_mut() {
            *o = *o / n;
        }
    }
}

/// `channel_broadcast` (`_mean`): `a` is `[steps, c]` (`steps` 1 for a
/// fixed `[C]`); `a[t, k]` (divided by `lead * inner` when `mean`) at every
/// `[t, l, k, i]` of a `[steps, lead, c, inner]` result.
pub(crate) fn channel_broadcast<F: Real>(
    a: &[F],
    steps: usize,
    lead: usize,
    inner: usize,
    mean: bool,
    out: &mut Vec<F>,
) {
    out.clear();
    let n = F::from_f64((lead * inner) as f64);
    let c = a.len().checked_div(steps).unwrap_or(0);
    for t in 0..steps {
        for _ in 0..lead {
            for &v in &a[t * c..(t + 1) * c] {
                let v = if mean { v / n } else { v };
                out.extend(std::iter::repeat_n(v, inner));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_and_min_propagate_nan_and_keep_the_first_on_ties() {
        assert!(max_nan(f32::NAN, 1.0).is_nan() && max_nan(1.0, f32::NAN).is_nan());
        assert!(min_nan(f64::NAN, 1.0).is_nan() && min_nan(1.0, f64::NAN).is_nan());
        assert_eq!(max_nan(1.0f32, 2.0), 2.0);
        assert_eq!(min_nan(1.0f32, 2.0), 1.0);
        assert!(max_nan(-0.0f64, 0.0).is_sign_negative());
        assert!(max_nan(0.0f64, -0.0).is_sign_positive());
    }

    #[test]
    fn matmul_skipping_zeros_matches_the_dense_loop() {
        // Includes a zero input meeting an infinite weight (NaN) and -0 inputs.
        let x = [0.0f32, 1.5, -0.0, 2.0, 0.0, 0.0, 3.0, -1.0];
        let w = [0.1f32, 0.2, f32::INFINITY, 0.4, -0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2];
        let (rows, n_in, n_out) = (2, 4, 3);
        let mut out = Vec::new();
        matmul(&x, &w, rows, n_in, n_out, &mut out, &mut Vec::new());
        for m in 0..rows {
            for o in 0..n_out {
                let mut acc = 0.0f32;
                for k in 0..n_in {
                    acc += x[m * n_in + k] * w[o * n_in + k];
                }
                let got = out[m * n_out + o];
                assert!(got.to_bits() == acc.to_bits() || (got.is_nan() && acc.is_nan()), "{m} {o}");
            }
        }
        assert!(out[0].is_nan());
    }
}
