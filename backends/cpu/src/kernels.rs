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

/// The number of threads big kernels use.
/// (Asked once per process: the query reads cgroup files, which is slow.)
pub(crate) fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(16))
}

/// Work (roughly, multiply-adds or element operations) below which a
/// kernel runs on the calling thread.
const PAR_WORK: usize = 1 << 16;

/// Runs `f(first_row, rows_chunk)` over `out`, split into contiguous chunks
/// of whole rows of `row_len` elements, on up to [`threads`] threads when
/// `work` is large enough. Each row is written by exactly one call.
pub(crate) fn par_rows(out: &mut [f32], row_len: usize, work: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len().checked_div(row_len).unwrap_or(0);
    let n_threads = threads().min(rows.max(1));
    if n_threads <= 1 || work < PAR_WORK || row_len == 0 {
        f(0, out);
        return;
    }
    let per = rows.div_ceil(n_threads);
    std::thread::scope(|s| {
        for (i, chunk) in out.chunks_mut(per * row_len).enumerate() {
            let f = &f;
            s.spawn(move || f(i * per, chunk));
        }
    });
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
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], rsb: usize, csb: usize, c: &mut [f32]) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    assert!(a.len() >= m * k && c.len() >= m * n);
    assert!(b.len() > (k - 1) * rsb + (n - 1) * csb);
    // SAFETY: the asserts above check that every index the GEMM reads
    // (`a[i*k + l]`, `b[l*rsb + j*csb]`) and writes (`c[i*n + j]`) for
    // `i < m`, `l < k`, `j < n` lies inside the slices; `c` is borrowed
    // mutably, so it does not overlap `a` or `b`. With beta = 0 `c` is
    // only written, never read.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            0.0,
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
    let work = out.len().saturating_mul(n_in);
    par_rows(out, n_out, work, |row, chunk| {
        let m = chunk.len() / n_out.max(1);
        sgemm(m, n_in, n_out, &x[row * n_in..], w, 1, n_in, chunk);
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

/// The event-driven product: for each row, the weight rows (of the
/// transposed weight `wt`, `n_in × n_out`) of the active inputs, scaled by
/// the input, are added in ascending input order from `+0`. Inputs equal
/// to zero are skipped unless their weight column is not finite (then
/// `0 * inf` makes NaN, as in the dense formula). These are the
/// interpreter's operations in its order: the same bits.
pub(crate) fn matmul_event(x: &[f32], wt: &[f32], finite: &[bool], n_in: usize, n_out: usize, out: &mut [f32]) {
    if n_out == 0 {
        return;
    }
    let work = x.len().saturating_mul(n_out) / 8;
    par_rows(out, n_out, work, |row, chunk| {
        for (r, acc) in chunk.chunks_exact_mut(n_out).enumerate() {
            acc.fill(0.0);
            let xr = &x[(row + r) * n_in..(row + r + 1) * n_in];
            for (k, &xk) in xr.iter().enumerate() {
                if xk == 0.0 && finite[k] {
                    continue;
                }
                let wr = &wt[k * n_out..(k + 1) * n_out];
                if xk == 1.0 {
                    // `1 * w` is `w` exactly (also for NaN and inf).
                    for (a, &wv) in acc.iter_mut().zip(wr) {
                        *a += wv;
                    }
                } else {
                    for (a, &wv) in acc.iter_mut().zip(wr) {
                        *a += xk * wv;
                    }
                }
            }
        }
    });
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

/// torch's `conv2d` by im2col and one GEMM per image: `col` holds the
/// image's patches (`c·kh·kw × oh·ow`, zero outside the image), then
/// `y[o] = w[o] · col + bias[o]`. Images are split over threads.
pub(crate) fn conv2d(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: ConvShape, out: &mut [f32]) {
    let plane = s.oh * s.ow;
    let ckk = s.c * s.kh * s.kw;
    let img_out = s.o * plane;
    debug_assert_eq!(out.len(), s.n * img_out);
    let work = out.len().saturating_mul(ckk);
    par_rows(out, img_out, work, |first, chunk| {
        let mut col = vec![0.0f32; ckk * plane];
        for (i, y) in chunk.chunks_exact_mut(img_out.max(1)).enumerate() {
            let n = first + i;
            for c in 0..s.c {
                let img = &x[(n * s.c + c) * s.h * s.w..(n * s.c + c + 1) * s.h * s.w];
                for a in 0..s.kh {
                    for b in 0..s.kw {
                        let row = &mut col[((c * s.kh + a) * s.kw + b) * plane..][..plane];
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
            sgemm(s.o, ckk, plane, w, &col, plane, 1, y);
            if let Some(bias) = bias {
                for (o, yo) in y.chunks_exact_mut(plane.max(1)).enumerate() {
                    for e in yo {
                        *e += bias[o];
                    }
                }
            }
        }
    });
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
    let work = out.len().saturating_mul(kh * kw);
    par_rows(out, oh * ow, work, |first, chunk| {
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
}
