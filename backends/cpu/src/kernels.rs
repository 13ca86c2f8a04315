//! The plain-Rust kernels of the CPU backend, in f32, on flat row-major
//! buffers: elementwise ops that were not fused, the dense product through
//! the GEMM crate (`matrixmultiply`), the event-driven spike product, the
//! convolution (im2col + GEMM), pooling, time reductions and `log_softmax`.
//!
//! Where the operation order is the interpreter's (every kernel here except
//! the GEMM-based ones), the results are the interpreter's bits. Work is
//! split over threads by whole rows or elements only, so every element is
//! computed by the same operations in the same order whatever the number
//! of threads: results are deterministic.

use snnc_ir::{BinaryOp, CompareOp, ReduceOp, UnaryOp};

use crate::pool::{ELEMENTS_PER_NS, GEMM_MACS_PER_NS};

/// Runs `f(first_row, rows_chunk)` over `out`, split into contiguous chunks
/// of whole rows of `row_len` elements, on the pool when the kernel takes
/// long enough (about `ns` nanoseconds on one thread, see
/// [`crate::pool::parts`]). Each row is written by exactly one call.
pub(crate) fn par_rows(out: &mut [f32], row_len: usize, ns: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len().checked_div(row_len).unwrap_or(0);
    crate::pool::for_rows(out, row_len, crate::pool::parts(rows, ns), f);
}

/// [`par_rows`] for the rows of one GEMM's result: fewer, bigger parts
/// (see [`crate::pool::gemm_parts`]).
fn gemm_rows(out: &mut [f32], row_len: usize, ns: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len().checked_div(row_len).unwrap_or(0);
    crate::pool::for_rows(out, row_len, crate::pool::gemm_parts(rows, ns), f);
}

/// `max` as the interpreter's `max_nan`: NaN if either is NaN, `a` on ties.
pub(crate) fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if b > a {
        b
    } else {
        a
    }
}

/// `min` as the interpreter's `min_nan`.
pub(crate) fn min_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if b < a {
        b
    } else {
        a
    }
}

fn bool_to(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

pub(crate) fn unary_fn(op: UnaryOp) -> fn(f32) -> f32 {
    match op {
        UnaryOp::Neg => |x: f32| -x,
        UnaryOp::Abs => f32::abs,
        UnaryOp::Exp => f32::exp,
        UnaryOp::Log => f32::ln,
        UnaryOp::Tanh => f32::tanh,
        UnaryOp::Sqrt => f32::sqrt,
        UnaryOp::Relu => |x: f32| max_nan(x, 0.0),
    }
}

pub(crate) fn binary_fn(op: BinaryOp) -> fn(f32, f32) -> f32 {
    match op {
        BinaryOp::Add => |x, y| x + y,
        BinaryOp::Sub => |x, y| x - y,
        BinaryOp::Mul => |x, y| x * y,
        BinaryOp::Div => |x, y| x / y,
        BinaryOp::Max => max_nan,
        BinaryOp::Min => min_nan,
    }
}

pub(crate) fn compare_fn(op: CompareOp) -> fn(f32, f32) -> f32 {
    match op {
        CompareOp::Gt => |x, y| bool_to(x > y),
        CompareOp::Ge => |x, y| bool_to(x >= y),
        CompareOp::Lt => |x, y| bool_to(x < y),
        CompareOp::Le => |x, y| bool_to(x <= y),
        CompareOp::Eq => |x, y| bool_to(x == y),
    }
}

pub(crate) fn unary(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    let f = unary_fn(op);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
}

/// `f` elementwise over two operands suffix-broadcast to `out.len()`:
/// element `i` reads `a[i % a.len()]` and `b[i % b.len()]`.
pub(crate) fn zip2(a: &[f32], b: &[f32], out: &mut [f32], f: fn(f32, f32) -> f32) {
    let n = out.len();
    if a.len() == n && b.len() == n {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = f(x, y);
        }
    } else if a.is_empty() || b.is_empty() {
        out.fill(f32::NAN);
    } else {
        for (i, o) in out.iter_mut().enumerate() {
            *o = f(a[i % a.len()], b[i % b.len()]);
        }
    }
}

/// `cond != 0 ? a : b`, all three suffix-broadcast to `out.len()`.
pub(crate) fn select(cond: &[f32], a: &[f32], b: &[f32], out: &mut [f32]) {
    if cond.is_empty() || a.is_empty() || b.is_empty() {
        out.fill(f32::NAN);
        return;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = if cond[i % cond.len()] != 0.0 { a[i % a.len()] } else { b[i % b.len()] };
    }
}

pub(crate) fn threshold(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = bool_to(v > 0.0);
    }
}

/// One GEMM call on the calling thread: `c[m×n] = a[m×k] · b` where `b`
/// is `k×n` with row stride `rsb` and column stride `csb`.
#[allow(clippy::too_many_arguments)]
fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], rsb: usize, csb: usize, c: &mut [f32]) {
    sgemm_strided(m, k, n, (a, k, 1), (b, rsb, csb), c, false);
}

/// One GEMM call on the calling thread: `c[m×n] (+)= a · b` where `a` is
/// `m×k` and `b` is `k×n`, each given as (data, row stride, column
/// stride); `c` is row-major `m×n`. With `accumulate`, the product is
/// added to `c` (beta = 1), else `c` is overwritten.
#[allow(unsafe_code)]
fn sgemm_strided(
    m: usize,
    k: usize,
    n: usize,
    (a, rsa, csa): (&[f32], usize, usize),
    (b, rsb, csb): (&[f32], usize, usize),
    c: &mut [f32],
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    assert!(a.len() > (m - 1) * rsa + (k - 1) * csa && c.len() >= m * n);
    assert!(b.len() > (k - 1) * rsb + (n - 1) * csb);
    // SAFETY: the asserts above check that every index the GEMM reads
    // (`a[i*rsa + l*csa]`, `b[l*rsb + j*csb]`) and reads or writes
    // (`c[i*n + j]`) for `i < m`, `l < k`, `j < n` lies inside the slices;
    // `c` is borrowed mutably, so it does not overlap `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            if accumulate { 1.0 } else { 0.0 },
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `x @ w^T` through the GEMM crate: `x` is `rows × n_in`, `w` is
/// `n_out × n_in`, `out` is `rows × n_out`. Split over threads by rows.
/// The summation order is the GEMM's (not the interpreter's), so results
/// agree with the interpreter within rounding only.
pub(crate) fn matmul_dense(x: &[f32], w: &[f32], n_in: usize, n_out: usize, out: &mut [f32]) {
    let ns = out.len().saturating_mul(n_in) / GEMM_MACS_PER_NS;
    gemm_rows(out, n_out, ns, |row, chunk| {
        let m = chunk.len() / n_out.max(1);
        sgemm(m, n_in, n_out, &x[row * n_in..], w, 1, n_in, chunk);
    });
}

/// [`matmul_dense`] with the weight given transposed (`wt`, `n_in ×
/// n_out`, see [`transpose`]): the GEMM packs its rows without gathering
/// (worth it where one weight serves many calls, as in a step loop). The
/// GEMM packs either layout into the same panels: the same bits.
pub(crate) fn matmul_dense_t(x: &[f32], wt: &[f32], n_in: usize, n_out: usize, out: &mut [f32]) {
    let ns = out.len().saturating_mul(n_in) / GEMM_MACS_PER_NS;
    gemm_rows(out, n_out, ns, |row, chunk| {
        let m = chunk.len() / n_out.max(1);
        sgemm(m, n_in, n_out, &x[row * n_in..], wt, n_out, 1, chunk);
    });
}

/// Transposes `w` (`n_out × n_in`) to `wt` (`n_in × n_out`) and marks in
/// `finite` the columns of `w` that hold only finite numbers.
pub(crate) fn transpose(w: &[f32], n_in: usize, n_out: usize, wt: &mut Vec<f32>, finite: &mut Vec<bool>) {
    wt.clear();
    wt.resize(n_in * n_out, 0.0);
    finite.clear();
    finite.resize(n_in, true);
    for o in 0..n_out {
        for k in 0..n_in {
            let v = w[o * n_in + k];
            wt[k * n_out + o] = v;
            finite[k] &= v.is_finite();
        }
    }
}

/// The geometry of a 2-d convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvShape {
    /// Images: the product of all input dims before the last three.
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

/// Columns of the GEMM of [`conv2d`]: the images of one GEMM fill about
/// this many (a narrow GEMM, one image of a small plane, runs far below the
/// machine's peak).
const CONV_COLUMNS: usize = 512;

/// torch's `conv2d` by im2col and one GEMM per group of images: `col`
/// holds the group's patches side by side (`c·kh·kw × g·oh·ow`, zero
/// outside the images), then `y[o] = w[o] · col + bias[o]`, copied to each
/// image's output. Images are split over threads. (Every output element is
/// the same sum over `c·kh·kw` in the GEMM whatever the group: the same
/// bits as one GEMM per image.)
pub(crate) fn conv2d(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: ConvShape, out: &mut [f32]) {
    let plane = s.oh * s.ow;
    let ckk = s.c * s.kh * s.kw;
    let img_out = s.o * plane;
    debug_assert_eq!(out.len(), s.n * img_out);
    let group = CONV_COLUMNS.div_ceil(plane.max(1)).clamp(1, s.n.max(1));
    let ns = out.len().saturating_mul(ckk) / GEMM_MACS_PER_NS;
    let n_parts = crate::pool::parts(s.n.div_ceil(group), ns);
    // Parts of whole groups.
    let per = s.n.div_ceil(group).div_ceil(n_parts.max(1)) * group;
    crate::pool::for_rows(out, img_out * per, s.n.div_ceil(per.max(1)), |p, chunk| {
        let first = p * per;
        let mut col = vec![0.0f32; ckk * plane * group];
        let mut y = vec![0.0f32; s.o * plane * group];
        for (gi, ys) in chunk.chunks_mut((img_out * group).max(1)).enumerate() {
            let n0 = first + gi * group;
            let g = ys.len() / img_out.max(1);
            let width = g * plane;
            for k in 0..g {
                im2col(x, n0 + k, s, &mut col[..ckk * width], width, k * plane);
            }
            sgemm(s.o, ckk, width, w, &col[..ckk * width], width, 1, &mut y[..s.o * width]);
            for (k, yk) in ys.chunks_exact_mut(img_out.max(1)).enumerate() {
                for (o, yo) in yk.chunks_exact_mut(plane.max(1)).enumerate() {
                    yo.copy_from_slice(&y[o * width + k * plane..][..plane]);
                    if let Some(bias) = bias {
                        for e in yo {
                            *e += bias[o];
                        }
                    }
                }
            }
        }
    });
}

/// The patches of image `n` (`c·kh·kw` rows of `oh·ow`, zero outside the
/// image) into `col` at column `at` of rows of `stride`.
fn im2col(x: &[f32], n: usize, s: ConvShape, col: &mut [f32], stride: usize, at: usize) {
    let plane = s.oh * s.ow;
    for c in 0..s.c {
        let img = &x[(n * s.c + c) * s.h * s.w..(n * s.c + c + 1) * s.h * s.w];
        for a in 0..s.kh {
            for b in 0..s.kw {
                let row = &mut col[((c * s.kh + a) * s.kw + b) * stride + at..][..plane];
                for oi in 0..s.oh {
                    let r = (oi * s.stride[0] + a).checked_sub(s.padding[0]).filter(|&r| r < s.h);
                    let out_row = &mut row[oi * s.ow..(oi + 1) * s.ow];
                    let Some(r) = r else {
                        out_row.fill(0.0);
                        continue;
                    };
                    if s.stride[1] == 1 {
                        // Columns `oj` with `0 <= oj + b - pw < w` read a
                        // contiguous run of the image row; the rest is 0.
                        let lo = s.padding[1].saturating_sub(b).min(s.ow);
                        let hi = (s.w + s.padding[1]).saturating_sub(b).clamp(lo, s.ow);
                        out_row[..lo].fill(0.0);
                        out_row[hi..].fill(0.0);
                        if hi > lo {
                            let start = r * s.w + lo + b - s.padding[1];
                            out_row[lo..hi].copy_from_slice(&img[start..start + (hi - lo)]);
                        }
                        continue;
                    }
                    for (oj, e) in out_row.iter_mut().enumerate() {
                        let q = (oj * s.stride[1] + b).checked_sub(s.padding[1]).filter(|&q| q < s.w);
                        *e = match q {
                            Some(q) => img[r * s.w + q],
                            None => 0.0,
                        };
                    }
                }
            }
        }
    }
}

/// Max pooling as the interpreter's `max_pool2d` (the same bits).
pub(crate) fn max_pool2d(
    x: &[f32],
    [h, w]: [usize; 2],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [oh, ow]: [usize; 2],
    out: &mut [f32],
) {
    let ns = out.len().saturating_mul(kh * kw) / ELEMENTS_PER_NS;
    par_rows(out, oh * ow, ns, |first, chunk| {
        for (l, y) in chunk.chunks_exact_mut((oh * ow).max(1)).enumerate() {
            let img = &x[(first + l) * h * w..(first + l + 1) * h * w];
            for i in 0..oh {
                for j in 0..ow {
                    let mut m = img[i * sh * w + j * sw];
                    for a in 0..kh {
                        for b in 0..kw {
                            m = max_nan(m, img[(i * sh + a) * w + j * sw + b]);
                        }
                    }
                    y[i * ow + j] = m;
                }
            }
        }
    });
}

/// Reduces `x` (`steps × n`) over time as the interpreter does (the same
/// bits): `sum` in step order from `+0`, `mean = sum / T`, `max` from
/// `x[0]`, `last`.
pub(crate) fn reduce_time(op: ReduceOp, x: &[f32], steps: usize, out: &mut [f32]) {
    let n = out.len();
    let at = |t: usize| &x[t * n..(t + 1) * n];
    match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            out.fill(0.0);
            for t in 0..steps {
                for (o, &v) in out.iter_mut().zip(at(t)) {
                    *o += v;
                }
            }
            if op == ReduceOp::Mean {
                let tf = steps as f32;
                for o in out.iter_mut() {
                    *o /= tf;
                }
            }
        }
        ReduceOp::Max => {
            out.copy_from_slice(at(0));
            for t in 1..steps {
                for (o, &v) in out.iter_mut().zip(at(t)) {
                    *o = max_nan(*o, v);
                }
            }
        }
        ReduceOp::Last => out.copy_from_slice(at(steps - 1)),
    }
}

/// `log_softmax` over rows of `len` as torch computes it:
/// `(x - m) - ln(sum(exp(x - m)))` with `m = max(x)` (the same bits as the
/// interpreter).
pub(crate) fn log_softmax(x: &[f32], len: usize, out: &mut [f32]) {
    if len == 0 {
        return;
    }
    for (row, y) in x.chunks_exact(len).zip(out.chunks_exact_mut(len)) {
        let m = row.iter().skip(1).fold(row[0], |m, &v| max_nan(m, v));
        let s = row.iter().fold(0.0f32, |s, &v| s + (v - m).exp());
        let ls = s.ln();
        for (o, &v) in y.iter_mut().zip(row) {
            *o = (v - m) - ls;
        }
    }
}

/// Swaps the dims of an `m × n` matrix: `y[j, i] = x[i, j]`.
pub(crate) fn transpose_matrix(x: &[f32], m: usize, n: usize, out: &mut [f32]) {
    for (e, o) in out.iter_mut().enumerate() {
        *o = x[(e % m) * n + e / m];
    }
}

/// Reductions over at most this many terms run the interpreter's loop (its
/// bits) instead of a GEMM.
const EXACT_MAX_TERMS: usize = 64;

/// The weight gradient of `matmul`, `dw = grad^T · x` (`grad` is `rows ×
/// n_out`, `x` is `rows × n_in`, `dw` is `n_out × n_in`): one GEMM over all
/// rows, the rows of `dw` split over threads (each sum whole on one
/// thread). With few rows, the interpreter's loop (its bits).
pub(crate) fn matmul_grad_weight_dense(grad: &[f32], x: &[f32], n_in: usize, n_out: usize, out: &mut [f32]) {
    let rows = grad.len().checked_div(n_out).unwrap_or(0);
    if rows <= EXACT_MAX_TERMS {
        matmul_grad_weight_exact(grad, x, rows, n_in, n_out, out);
        return;
    }
    let ns = out.len().saturating_mul(rows) / GEMM_MACS_PER_NS;
    gemm_rows(out, n_in, ns, |first, chunk| {
        let m = chunk.len() / n_in.max(1);
        sgemm_strided(m, rows, n_in, (&grad[first..], 1, n_out), (x, n_in, 1), chunk, false);
    });
}

/// The interpreter's `matmul_grad_weight` loop: rows in order from `+0`,
/// zero inputs skipped where the gradient row is finite.
pub(crate) fn matmul_grad_weight_exact(
    grad: &[f32],
    x: &[f32],
    rows: usize,
    n_in: usize,
    n_out: usize,
    out: &mut [f32],
) {
    out.fill(0.0);
    for r in 0..rows {
        let g = &grad[r * n_out..(r + 1) * n_out];
        let finite = g.iter().all(|v| v.is_finite());
        for (i, &xv) in x[r * n_in..(r + 1) * n_in].iter().enumerate() {
            if xv == 0.0 && finite {
                continue;
            }
            for (o, &gv) in g.iter().enumerate() {
                out[o * n_in + i] += gv * xv;
            }
        }
    }
}

/// Sums `x` (`lead × n`) over its leading rows, in row order from `+0` (the
/// interpreter's bits); the columns are split over threads.
pub(crate) fn sum_rows(x: &[f32], out: &mut [f32]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    out.fill(0.0);
    for row in x.chunks_exact(n) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// The input gradient of `conv2d`: per image, `col = w^T · grad` (one GEMM,
/// `c·kh·kw × oh·ow`), then col2im adds every column entry into the input
/// position it was read from (padding dropped), in `(c, a, b, i, j)` order.
/// Images are split over threads.
pub(crate) fn conv2d_grad_input(grad: &[f32], w: &[f32], s: ConvShape, out: &mut [f32]) {
    let plane = s.oh * s.ow;
    let ckk = s.c * s.kh * s.kw;
    let img_in = s.c * s.h * s.w;
    let ns = out.len().saturating_mul(s.o * s.kh * s.kw) / GEMM_MACS_PER_NS;
    par_rows(out, img_in, ns, |first, chunk| {
        let mut col = vec![0.0f32; ckk * plane];
        for (i, dx) in chunk.chunks_exact_mut(img_in.max(1)).enumerate() {
            let n = first + i;
            let g = &grad[n * s.o * plane..(n + 1) * s.o * plane];
            // w viewed as `ckk × o`: element (l, o) is w[o * ckk + l].
            sgemm_strided(ckk, s.o, plane, (w, 1, ckk), (g, plane, 1), &mut col, false);
            dx.fill(0.0);
            for c in 0..s.c {
                let ch = &mut dx[c * s.h * s.w..(c + 1) * s.h * s.w];
                for a in 0..s.kh {
                    for b in 0..s.kw {
                        let row = &col[((c * s.kh + a) * s.kw + b) * plane..][..plane];
                        for oi in 0..s.oh {
                            let Some(r) = (oi * s.stride[0] + a).checked_sub(s.padding[0]).filter(|&r| r < s.h) else {
                                continue;
                            };
                            for oj in 0..s.ow {
                                if let Some(q) = (oj * s.stride[1] + b).checked_sub(s.padding[1]).filter(|&q| q < s.w) {
                                    ch[r * s.w + q] += row[oi * s.ow + oj];
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Images per GEMM of [`conv2d_grad_weight`] (a constant, so the sums do
/// not depend on the number of threads).
const GRAD_WEIGHT_CHUNK: usize = 32;

/// The weight gradient of `conv2d`: `dw (o × c·kh·kw) = sum over images of
/// grad_n (o × oh·ow) · col_n^T`, over chunks of [`GRAD_WEIGHT_CHUNK`]
/// images in order: the chunk's im2col columns side by side (`c·kh·kw ×
/// m·oh·ow`, rows split over threads) and its gradients likewise (`o ×
/// m·oh·ow`), then one GEMM adding into `dw`, its rows split over threads
/// (each sum whole on one thread).
pub(crate) fn conv2d_grad_weight(grad: &[f32], x: &[f32], s: ConvShape, out: &mut [f32]) {
    let plane = s.oh * s.ow;
    let ckk = s.c * s.kh * s.kw;
    let img_in = s.c * s.h * s.w;
    out.fill(0.0);
    if plane == 0 || ckk == 0 || s.o == 0 {
        return;
    }
    let chunk = GRAD_WEIGHT_CHUNK.min(s.n.max(1));
    let mut cols = vec![0.0f32; ckk * chunk * plane];
    let mut gs = vec![0.0f32; s.o * chunk * plane];
    let mut n0 = 0;
    while n0 < s.n {
        let m = chunk.min(s.n - n0);
        let k = m * plane;
        let cols = &mut cols[..ckk * k];
        par_rows(cols, k, ckk * k / ELEMENTS_PER_NS, |first, part| {
            for (li, row) in part.chunks_exact_mut(k).enumerate() {
                let l = first + li;
                let (c, a, b) = (l / (s.kh * s.kw), l / s.kw % s.kh, l % s.kw);
                for i in 0..m {
                    let ch = &x[(n0 + i) * img_in + c * s.h * s.w..][..s.h * s.w];
                    let dst = &mut row[i * plane..(i + 1) * plane];
                    for oi in 0..s.oh {
                        let out_row = &mut dst[oi * s.ow..(oi + 1) * s.ow];
                        let Some(r) = (oi * s.stride[0] + a).checked_sub(s.padding[0]).filter(|&r| r < s.h) else {
                            out_row.fill(0.0);
                            continue;
                        };
                        for (oj, e) in out_row.iter_mut().enumerate() {
                            let q = (oj * s.stride[1] + b).checked_sub(s.padding[1]).filter(|&q| q < s.w);
                            *e = match q {
                                Some(q) => ch[r * s.w + q],
                                None => 0.0,
                            };
                        }
                    }
                }
            }
        });
        for o in 0..s.o {
            for i in 0..m {
                let src = &grad[((n0 + i) * s.o + o) * plane..][..plane];
                gs[o * k + i * plane..o * k + (i + 1) * plane].copy_from_slice(src);
            }
        }
        let (gs, cols) = (&gs[..s.o * k], &*cols);
        let ns = out.len().saturating_mul(k) / GEMM_MACS_PER_NS;
        gemm_rows(out, ckk, ns, |first, part| {
            let rows = part.len() / ckk;
            // cols^T: element (p, l) is cols[l * k + p].
            sgemm_strided(rows, k, ckk, (&gs[first * k..], k, 1), (cols, 1, k), part, true);
        });
        n0 += m;
    }
}

/// The bias gradient of `conv2d`: per channel, the sum over images and
/// positions in order from `+0` (the interpreter's bits).
pub(crate) fn conv2d_grad_bias(grad: &[f32], n: usize, plane: usize, out: &mut [f32]) {
    let o = out.len();
    out.fill(0.0);
    for img in 0..n {
        for (ch, acc) in out.iter_mut().enumerate() {
            for &v in &grad[(img * o + ch) * plane..(img * o + ch + 1) * plane] {
                *acc += v;
            }
        }
    }
}

/// The input gradient of max pooling as the interpreter's (its bits): per
/// window in row-major order, the gradient goes to the element torch's CPU
/// kernel picks (greater than the maximum so far from `-inf`, or NaN);
/// overlapping windows add. Slices are split over threads.
pub(crate) fn max_pool2d_grad(
    x: &[f32],
    grad: &[f32],
    [h, w]: [usize; 2],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [oh, ow]: [usize; 2],
    out: &mut [f32],
) {
    let ns = grad.len().saturating_mul(kh * kw) / ELEMENTS_PER_NS;
    par_rows(out, h * w, ns, |first, chunk| {
        for (l, acc) in chunk.chunks_exact_mut((h * w).max(1)).enumerate() {
            let img = &x[(first + l) * h * w..(first + l + 1) * h * w];
            let g = &grad[(first + l) * oh * ow..(first + l + 1) * oh * ow];
            acc.fill(0.0);
            for i in 0..oh {
                for j in 0..ow {
                    let (mut m, mut at) = (f32::NEG_INFINITY, i * sh * w + j * sw);
                    for a in 0..kh {
                        for b in 0..kw {
                            let k = (i * sh + a) * w + j * sw + b;
                            let v = img[k];
                            if v > m || v.is_nan() {
                                m = v;
                                at = k;
                            }
                        }
                    }
                    acc[at] += g[i * ow + j];
                }
            }
        }
    });
}

/// The gradient of a time reduction as the interpreter's (its bits): `x`
/// is the forward operand (`steps × n`), `grad` the reduction's gradient.
pub(crate) fn reduce_time_grad(op: ReduceOp, x: &[f32], grad: &[f32], steps: usize, out: &mut [f32]) {
    let n = grad.len();
    match op {
        ReduceOp::Sum => {
            for row in out.chunks_exact_mut(n.max(1)) {
                row.copy_from_slice(grad);
            }
        }
        ReduceOp::Mean => {
            let tf = steps as f32;
            for row in out.chunks_exact_mut(n.max(1)) {
                for (o, &g) in row.iter_mut().zip(grad) {
                    *o = g / tf;
                }
            }
        }
        ReduceOp::Last => {
            out.fill(0.0);
            if steps > 0 {
                out[(steps - 1) * n..].copy_from_slice(grad);
            }
        }
        ReduceOp::Max => {
            out.fill(0.0);
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

/// The gradient of `log_softmax` over rows of `len` as the interpreter's
/// (its bits): `grad - exp(y) * sum(grad)`, the sum in order from `+0`.
pub(crate) fn log_softmax_grad(y: &[f32], grad: &[f32], len: usize, out: &mut [f32]) {
    if len == 0 {
        return;
    }
    for ((yr, gr), o) in y.chunks_exact(len).zip(grad.chunks_exact(len)).zip(out.chunks_exact_mut(len)) {
        let s = gr.iter().fold(0.0f32, |s, &v| s + v);
        for ((e, &yv), &gv) in o.iter_mut().zip(yr).zip(gr) {
            *e = gv - yv.exp() * s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_matmul_agrees_with_the_plain_loop() {
        for (rows, n_in, n_out) in [(37, 19, 11), (301, 300, 33), (5, 1000, 130)] {
            check_dense(rows, n_in, n_out);
        }
    }

    /// Within rounding of the sum of the terms' magnitudes (the GEMM sums
    /// in its own order).
    fn check_dense(rows: usize, n_in: usize, n_out: usize) {
        let x: Vec<f32> = (0..rows * n_in).map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.5).collect();
        let w: Vec<f32> = (0..n_out * n_in).map(|i| ((i * 13) % 7) as f32 / 7.0 - 0.5).collect();
        let mut out = vec![f32::NAN; rows * n_out];
        matmul_dense(&x, &w, n_in, n_out, &mut out);
        for m in 0..rows {
            for o in 0..n_out {
                let want: f64 = (0..n_in).map(|k| f64::from(x[m * n_in + k]) * f64::from(w[o * n_in + k])).sum();
                let scale: f64 = (0..n_in).map(|k| f64::from(x[m * n_in + k] * w[o * n_in + k]).abs()).sum();
                let got = f64::from(out[m * n_out + o]);
                assert!(
                    (got - want).abs() <= 1e-6 * scale.max(1.0),
                    "{rows}x{n_in}x{n_out} [{m}, {o}]: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn conv_agrees_with_the_direct_formula() {
        let shapes = [
            ConvShape { n: 2, c: 2, h: 5, w: 4, o: 3, kh: 3, kw: 2, oh: 3, ow: 2, stride: [2, 2], padding: [1, 0] },
            ConvShape { n: 3, c: 2, h: 5, w: 4, o: 3, kh: 3, kw: 3, oh: 5, ow: 4, stride: [1, 1], padding: [1, 1] },
            ConvShape { n: 1, c: 1, h: 6, w: 7, o: 2, kh: 2, kw: 3, oh: 5, ow: 5, stride: [1, 1], padding: [0, 0] },
            ConvShape { n: 1, c: 1, h: 3, w: 2, o: 1, kh: 1, kw: 1, oh: 7, ow: 8, stride: [1, 1], padding: [2, 3] },
            ConvShape { n: 1, c: 1, h: 1, w: 1, o: 1, kh: 1, kw: 1, oh: 9, ow: 9, stride: [1, 1], padding: [4, 4] },
        ];
        for s in shapes {
            check_conv(s);
        }
    }

    fn check_conv(s: ConvShape) {
        let x: Vec<f32> = (0..s.n * s.c * s.h * s.w).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let w: Vec<f32> = (0..s.o * s.c * s.kh * s.kw).map(|i| ((i * 3) % 4) as f32 * 0.25).collect();
        let bias = [0.5f32, -1.0, 2.0][..s.o].to_vec();
        let mut out = vec![0.0; s.n * s.o * s.oh * s.ow];
        conv2d(&x, &w, Some(&bias), s, &mut out);
        for n in 0..s.n {
            for o in 0..s.o {
                for i in 0..s.oh {
                    for j in 0..s.ow {
                        let mut acc = 0.0f32;
                        for c in 0..s.c {
                            for a in 0..s.kh {
                                for b in 0..s.kw {
                                    let r = (i * s.stride[0] + a) as isize - s.padding[0] as isize;
                                    let q = (j * s.stride[1] + b) as isize - s.padding[1] as isize;
                                    if r >= 0 && (r as usize) < s.h && q >= 0 && (q as usize) < s.w {
                                        acc += x[((n * s.c + c) * s.h + r as usize) * s.w + q as usize]
                                            * w[((o * s.c + c) * s.kh + a) * s.kw + b];
                                    }
                                }
                            }
                        }
                        acc += bias[o];
                        let got = out[((n * s.o + o) * s.oh + i) * s.ow + j];
                        assert!((got - acc).abs() <= 1e-5, "{n} {o} {i} {j}: {got} vs {acc}");
                    }
                }
            }
        }
    }
    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5 - 1.0).collect()
    }

    fn spikes(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| if (i * 31 + seed) % 7 < 2 { 1.0 } else { 0.0 }).collect()
    }

    /// `got` within 1e-5 of `want` relative to the sum of the terms'
    /// magnitudes `scale`.
    fn assert_close(what: &str, got: &[f32], want: &[f64], scale: &[f64]) {
        for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
            assert!((f64::from(g) - w).abs() <= 1e-5 * s.max(1.0), "{what}[{i}]: {g} vs {w}");
        }
    }

    #[test]
    fn big_weight_gradients_of_matmul_agree_with_the_sums_on_threads() {
        let (rows, n_in, n_out) = (500, 300, 40);
        let g = values(rows * n_out, 1);
        for x in [values(rows * n_in, 2), spikes(rows * n_in, 3)] {
            let (mut want, mut scale) = (vec![0.0f64; n_out * n_in], vec![0.0f64; n_out * n_in]);
            for r in 0..rows {
                for o in 0..n_out {
                    for i in 0..n_in {
                        let p = f64::from(g[r * n_out + o]) * f64::from(x[r * n_in + i]);
                        want[o * n_in + i] += p;
                        scale[o * n_in + i] += p.abs();
                    }
                }
            }
            let mut dense = vec![f32::NAN; n_out * n_in];
            matmul_grad_weight_dense(&g, &x, n_in, n_out, &mut dense);
            assert_close("dense", &dense, &want, &scale);
            let mut again = vec![0.0; n_out * n_in];
            matmul_grad_weight_dense(&g, &x, n_in, n_out, &mut again);
            assert!(dense.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        // Event-driven: the exact loop's bits.
        let x = spikes(rows * n_in, 4);
        let mut event = vec![f32::NAN; n_out * n_in];
        let mut lists = crate::event::SpikeRows::default();
        lists.build(&x, n_in);
        let mut scratch = Default::default();
        crate::event::matmul_grad_weight(&g, &lists, n_in, n_out, &mut scratch, &mut event);
        let mut exact = vec![0.0; n_out * n_in];
        matmul_grad_weight_exact(&g, &x, rows, n_in, n_out, &mut exact);
        assert!(event.iter().zip(&exact).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn big_conv_gradients_agree_with_the_direct_formulas_on_threads() {
        // 70 images: three chunks of the weight gradient's GEMM.
        let s =
            ConvShape { n: 70, c: 3, h: 12, w: 11, o: 8, kh: 3, kw: 3, oh: 6, ow: 6, stride: [2, 2], padding: [1, 1] };
        let x = values(s.n * s.c * s.h * s.w, 5);
        let w = values(s.o * s.c * s.kh * s.kw, 6);
        let g = values(s.n * s.o * s.oh * s.ow, 7);
        let mut dx = vec![f32::NAN; x.len()];
        conv2d_grad_input(&g, &w, s, &mut dx);
        let mut dw = vec![f32::NAN; w.len()];
        conv2d_grad_weight(&g, &x, s, &mut dw);
        let (mut want_dx, mut scale_dx) = (vec![0.0f64; x.len()], vec![0.0f64; x.len()]);
        let (mut want_dw, mut scale_dw) = (vec![0.0f64; w.len()], vec![0.0f64; w.len()]);
        for n in 0..s.n {
            for o in 0..s.o {
                for i in 0..s.oh {
                    for j in 0..s.ow {
                        let gv = f64::from(g[((n * s.o + o) * s.oh + i) * s.ow + j]);
                        for c in 0..s.c {
                            for a in 0..s.kh {
                                for b in 0..s.kw {
                                    let r = (i * s.stride[0] + a) as isize - s.padding[0] as isize;
                                    let q = (j * s.stride[1] + b) as isize - s.padding[1] as isize;
                                    if r < 0 || r as usize >= s.h || q < 0 || q as usize >= s.w {
                                        continue;
                                    }
                                    let xk = ((n * s.c + c) * s.h + r as usize) * s.w + q as usize;
                                    let wk = ((o * s.c + c) * s.kh + a) * s.kw + b;
                                    want_dx[xk] += gv * f64::from(w[wk]);
                                    scale_dx[xk] += (gv * f64::from(w[wk])).abs();
                                    want_dw[wk] += gv * f64::from(x[xk]);
                                    scale_dw[wk] += (gv * f64::from(x[xk])).abs();
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_close("dx", &dx, &want_dx, &scale_dx);
        assert_close("dw", &dw, &want_dw, &scale_dw);
        let mut again = vec![0.0; w.len()];
        conv2d_grad_weight(&g, &x, s, &mut again);
        assert!(dw.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
