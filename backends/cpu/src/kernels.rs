//! The plain-Rust kernels of the CPU backend, in f32, on flat row-major
//! buffers: elementwise ops that were not fused, the dense product through
//! the GEMM crates (`gemm`, `matrixmultiply`), the event-driven spike product, the
//! convolution (im2col + GEMM), pooling, time reductions and `log_softmax`.
//!
//! Where the operation order is the interpreter's (every kernel here except
//! the GEMM-based ones), the results are the interpreter's bits. Work is
//! split over threads by whole rows or elements only, so every element is
//! computed by the same operations in the same order whatever the number
//! of threads: results are deterministic.

use snnc_ir::{BinaryOp, CompareOp, ReduceOp, UnaryOp};

use crate::pool::{ELEMENTS_PER_NS, GEMM_MACS_PER_NS};

mod channel;
mod pooling;
pub(crate) use channel::{channel_broadcast, channel_sum};
pub(crate) use pooling::{PoolShape, pool2d, pool2d_grad};
#[cfg(test)]
use pooling::{max_pool2d, max_pool2d_grad};

/// Runs `f(first_row, rows_chunk)` over `out`, split into contiguous chunks
/// of whole rows of `row_len` elements, on the pool when the kernel takes
/// long enough (about `ns` nanoseconds on one thread, see
/// [`crate::pool::parts`]). Each row is written by exactly one call.
pub(crate) fn par_rows(out: &mut [f32], row_len: usize, ns: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len().checked_div(row_len).unwrap_or(0);
    crate::pool::for_rows(out, row_len, crate::pool::parts(rows, ns), f);
}

/// Which GEMM implementation [`sgemm_strided`] calls.
#[derive(Clone, Copy, Debug)]
enum Gemm {
    /// `matrixmultiply`, on the calling thread.
    Serial,
    /// The `gemm` crate with this parallelism.
    Crate(gemm::Parallelism),
}

/// The engine of one GEMM over all the rows of its output, through the
/// `gemm` crate, which splits it over the pool's threads itself when it
/// takes about `ns` nanoseconds or more on one thread. Its threads share the
/// packed matrices and split the output blocks only, never a sum, so the
/// bits do not depend on the thread count (checked for 1–8 threads on many
/// shapes when the crate was chosen). The other GEMMs (the convolutions',
/// already split over threads by groups of images) run on one thread
/// through `matrixmultiply`, faster there: measured on this machine, one
/// thread of `matrixmultiply` does 94–186 GFLOP/s on these shapes (k = 50
/// to 4096), one of `gemm` 62–100; split over the two threads of this VM,
/// `gemm` does 169–202 against 132–178 for `matrixmultiply` in halves.
fn whole_gemm(ns: usize) -> Gemm {
    let threads = crate::pool::threads();
    let split = threads > 1 && crate::pool::parts(2, ns) > 1;
    Gemm::Crate(if split { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None })
}

/// `max` as the interpreter's `max_nan`: NaN if either is NaN, `a` on ties.
pub(crate) fn max_nan(a: f32, b: f32) -> f32 {
    snnc_ir::stdp::max_nan(a, b)
}

/// `min` as the interpreter's `min_nan`.
pub(crate) fn min_nan(a: f32, b: f32) -> f32 {
    snnc_ir::stdp::min_nan(a, b)
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

/// Elements per block of a split elementwise kernel: parts are whole
/// blocks (cache lines), the last part also takes the tail.
const BLOCK: usize = 64;

/// Runs `f(first_element, chunk)` over `out` split into parts of whole
/// [`BLOCK`]s, on the pool when `out.len()` elements of `streams` input and
/// output streams take long enough (see [`par_rows`]). Every element is
/// computed by the same operations wherever it runs.
fn par_elements(out: &mut [f32], streams: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let ns = out.len().saturating_mul(streams) / ELEMENTS_PER_NS;
    par_rows(out, BLOCK, ns, |first, chunk| f(first * BLOCK, chunk));
}

/// `f` over `x` into `out` (the first `min` of both lengths), one
/// monomorphised loop for LLVM to vectorise; an element costs as much as
/// `streams` of [`par_elements`] (2 for a cheap `f`: one stream in, one
/// out).
#[inline(always)]
fn map1(x: &[f32], out: &mut [f32], streams: usize, f: impl Fn(f32) -> f32 + Sync) {
    let n = out.len().min(x.len());
    let (x, out) = (&x[..n], &mut out[..n]);
    par_elements(out, streams, |first, chunk| {
        let x = &x[first..first + chunk.len()];
        for (o, &v) in chunk.iter_mut().zip(x) {
            *o = f(v);
        }
    });
}

/// `unary_fn(op)` elementwise over `x` into `out` (the first `min` of both
/// lengths): the same bits, with the op matched once and the loop split
/// over threads.
pub(crate) fn unary(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    // `exp`, `ln` and `tanh` are calls to libm: a few ns per element.
    const LIBM: usize = 4 * ELEMENTS_PER_NS;
    match op {
        UnaryOp::Neg => map1(x, out, 2, |x: f32| -x),
        UnaryOp::Abs => map1(x, out, 2, f32::abs),
        UnaryOp::Exp => map1(x, out, LIBM, f32::exp),
        UnaryOp::Log => map1(x, out, LIBM, f32::ln),
        UnaryOp::Tanh => map1(x, out, LIBM, f32::tanh),
        UnaryOp::Sqrt => map1(x, out, 2, f32::sqrt),
        UnaryOp::Relu => map1(x, out, 2, |x: f32| max_nan(x, 0.0)),
    }
}

/// One operand of a run of a suffix-broadcast elementwise kernel: a value
/// for every element (an operand of one element), or a slice at least as
/// long as the run.
#[derive(Clone, Copy)]
enum Operand<'a> {
    Scalar(f32),
    Run(&'a [f32]),
}

/// An operand inside the loop of a run: element `i` of the run.
trait Lane: Copy {
    fn at(self, i: usize) -> f32;
}

impl Lane for f32 {
    #[inline(always)]
    fn at(self, _: usize) -> f32 {
        self
    }
}

impl Lane for &[f32] {
    #[inline(always)]
    fn at(self, i: usize) -> f32 {
        self[i]
    }
}

/// Calls `f(starts, run)` over elements `first..first + out.len()` of a
/// kernel whose `K` operands (of the nonzero lengths `lens`) are
/// suffix-broadcast to the output (element `i` reads element `i % len`):
/// `out` is cut into runs in which every operand longer than one element
/// is read contiguously from `starts[k]`.
#[inline(always)]
fn for_runs<const K: usize>(
    lens: [usize; K],
    first: usize,
    out: &mut [f32],
    mut f: impl FnMut([usize; K], &mut [f32]),
) {
    let mut at = lens.map(|len| first % len);
    let mut rest = out;
    while !rest.is_empty() {
        let mut len = rest.len();
        for k in 0..K {
            if lens[k] > 1 {
                len = len.min(lens[k] - at[k]);
            }
        }
        let (run, tail) = std::mem::take(&mut rest).split_at_mut(len);
        f(at, run);
        for k in 0..K {
            at[k] += len;
            if at[k] >= lens[k] {
                at[k] = 0;
            }
        }
        rest = tail;
    }
}

/// The operand of a run from `x` (nonempty): its one element, or its
/// elements from `start`.
#[inline(always)]
fn operand(x: &[f32], start: usize) -> Operand<'_> {
    if x.len() == 1 { Operand::Scalar(x[0]) } else { Operand::Run(&x[start..]) }
}

#[inline(always)]
fn zip_run<A: Lane, B: Lane>(a: A, b: B, out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = f(a.at(i), b.at(i));
    }
}

/// [`zip2`] with `f` known at compile time (one loop per op and per kind
/// of operand), split over threads: the same bits. (Except which NaN an
/// add, subtraction, product or quotient of two NaNs gives: that is up to
/// the order LLVM puts the operands in, in any compiled loop; `max_nan`
/// and `min_nan` give the canonical NaN as before.)
#[inline(always)]
fn zip_with(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync + Copy) {
    if a.is_empty() || b.is_empty() {
        // As `zip2`: with an empty operand and a nonempty `out`.
        out.fill(f32::NAN);
        return;
    }
    par_elements(out, 3, |first, chunk| {
        for_runs([a.len(), b.len()], first, chunk, |[ia, ib], run| {
            let n = run.len();
            match (operand(a, ia), operand(b, ib)) {
                (Operand::Run(a), Operand::Run(b)) => zip_run(&a[..n], &b[..n], run, f),
                (Operand::Run(a), Operand::Scalar(b)) => zip_run(&a[..n], b, run, f),
                (Operand::Scalar(a), Operand::Run(b)) => zip_run(a, &b[..n], run, f),
                (Operand::Scalar(a), Operand::Scalar(b)) => run.fill(f(a, b)),
            }
        });
    });
}

/// `binary_fn(op)` elementwise as [`zip2`] (the same bits, broadcasting
/// and NaN fill included), the op matched once and the loop split over
/// threads.
pub(crate) fn binary(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    match op {
        BinaryOp::Add => zip_with(a, b, out, |x, y| x + y),
        BinaryOp::Sub => zip_with(a, b, out, |x, y| x - y),
        BinaryOp::Mul => zip_with(a, b, out, |x, y| x * y),
        BinaryOp::Div => zip_with(a, b, out, |x, y| x / y),
        BinaryOp::Max => zip_with(a, b, out, max_nan),
        BinaryOp::Min => zip_with(a, b, out, min_nan),
    }
}

/// `compare_fn(op)` elementwise as [`zip2`] (the same bits), the op matched
/// once and the loop split over threads.
pub(crate) fn compare(op: CompareOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    match op {
        CompareOp::Gt => zip_with(a, b, out, |x, y| bool_to(x > y)),
        CompareOp::Ge => zip_with(a, b, out, |x, y| bool_to(x >= y)),
        CompareOp::Lt => zip_with(a, b, out, |x, y| bool_to(x < y)),
        CompareOp::Le => zip_with(a, b, out, |x, y| bool_to(x <= y)),
        CompareOp::Eq => zip_with(a, b, out, |x, y| bool_to(x == y)),
    }
}

/// `f` elementwise over two operands suffix-broadcast to `out.len()`:
/// element `i` reads `a[i % a.len()]` and `b[i % b.len()]`. (A call per
/// element: [`binary`] and [`compare`] are the fast forms; this one is
/// their reference in the tests.)
#[cfg(test)]
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

#[inline(always)]
fn select_run<C: Lane, A: Lane, B: Lane>(cond: C, a: A, b: B, out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        // Both read first: a select LLVM can vectorise, not a branch.
        let (c, x, y) = (cond.at(i), a.at(i), b.at(i));
        *o = if c != 0.0 { x } else { y };
    }
}

/// `cond != 0 ? a : b`, all three suffix-broadcast to `out.len()` (NaN
/// everywhere if one is empty); split over threads.
pub(crate) fn select(cond: &[f32], a: &[f32], b: &[f32], out: &mut [f32]) {
    if cond.is_empty() || a.is_empty() || b.is_empty() {
        out.fill(f32::NAN);
        return;
    }
    use Operand::{Run as R, Scalar as S};
    par_elements(out, 4, |first, chunk| {
        for_runs([cond.len(), a.len(), b.len()], first, chunk, |[ic, ia, ib], run| {
            let n = run.len();
            match (operand(cond, ic), operand(a, ia), operand(b, ib)) {
                (R(c), R(a), R(b)) => select_run(&c[..n], &a[..n], &b[..n], run),
                (R(c), R(a), S(b)) => select_run(&c[..n], &a[..n], b, run),
                (R(c), S(a), R(b)) => select_run(&c[..n], a, &b[..n], run),
                (R(c), S(a), S(b)) => select_run(&c[..n], a, b, run),
                (S(c), R(a), R(b)) => select_run(c, &a[..n], &b[..n], run),
                (S(c), R(a), S(b)) => select_run(c, &a[..n], b, run),
                (S(c), S(a), R(b)) => select_run(c, a, &b[..n], run),
                (S(c), S(a), S(b)) => select_run(c, a, b, run),
            }
        });
    });
}

/// `x > 0` as `1.0`/`0.0` into `out` (the first `min` of both lengths);
/// split over threads.
pub(crate) fn threshold(x: &[f32], out: &mut [f32]) {
    map1(x, out, 2, |v| bool_to(v > 0.0));
}

/// One GEMM call on the calling thread: `c[m×n] = a[m×k] · b` where `b`
/// is `k×n` with row stride `rsb` and column stride `csb`.
#[allow(clippy::too_many_arguments)]
fn sgemm(engine: Gemm, m: usize, k: usize, n: usize, a: &[f32], b: &[f32], rsb: usize, csb: usize, c: &mut [f32]) {
    sgemm_strided(engine, m, k, n, (a, k, 1), (b, rsb, csb), c, false);
}

/// One GEMM call on the calling thread: `c[m×n] (+)= a · b` where `a` is
/// `m×k` and `b` is `k×n`, each given as (data, row stride, column
/// stride); `c` is row-major `m×n`. With `accumulate`, the product is
/// added to `c` (beta = 1), else `c` is overwritten.
#[allow(unsafe_code, clippy::too_many_arguments)]
fn sgemm_strided(
    engine: Gemm,
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
        match engine {
            Gemm::Crate(parallelism) => gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                accumulate,
                a.as_ptr(),
                csa as isize,
                rsa as isize,
                b.as_ptr(),
                csb as isize,
                rsb as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                parallelism,
            ),
            Gemm::Serial => matrixmultiply::sgemm(
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
            ),
        }
    }
}

/// `x @ w^T` through the GEMM crate: `x` is `rows × n_in`, `w` is
/// `n_out × n_in`, `out` is `rows × n_out`. Split over threads by rows.
/// The summation order is the GEMM's (not the interpreter's), so results
/// agree with the interpreter within rounding only.
pub(crate) fn matmul_dense(x: &[f32], w: &[f32], n_in: usize, n_out: usize, out: &mut [f32]) {
    let ns = out.len().saturating_mul(n_in) / GEMM_MACS_PER_NS;
    let m = out.len() / n_out.max(1);
    sgemm(whole_gemm(ns), m, n_in, n_out, x, w, 1, n_in, out);
}

/// [`matmul_dense`] with the weight given transposed (`wt`, `n_in ×
/// n_out`, see [`transpose`]): the GEMM packs its rows without gathering
/// (worth it where one weight serves many calls, as in a step loop). The
/// GEMM packs either layout into the same panels: the same bits.
pub(crate) fn matmul_dense_t(x: &[f32], wt: &[f32], n_in: usize, n_out: usize, out: &mut [f32]) {
    let ns = out.len().saturating_mul(n_in) / GEMM_MACS_PER_NS;
    let m = out.len() / n_out.max(1);
    sgemm(whole_gemm(ns), m, n_in, n_out, x, wt, n_out, 1, out);
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
    pub dilation: [usize; 2],
    /// Output channel `o` reads the `c / groups` input channels of its group
    /// `o / (o_total / groups)`; the weight is `[o, c / groups, kh, kw]`.
    pub groups: usize,
}

impl ConvShape {
    /// Rows of a group's im2col block: `c / groups · kh · kw`.
    pub(crate) fn ckk_g(&self) -> usize {
        self.c / self.groups * self.kh * self.kw
    }

    /// Output channels per group.
    pub(crate) fn og(&self) -> usize {
        self.o / self.groups
    }
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
/// bits as one GEMM per image.) With channel groups, each group is a GEMM
/// of its `o / groups` weight rows and its `c / groups · kh · kw` rows of
/// `col` (a group's channels are contiguous, so are its rows).
pub(crate) fn conv2d(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: ConvShape, out: &mut [f32]) {
    let plane = s.oh * s.ow;
    let ckk = s.c * s.kh * s.kw;
    let img_out = s.o * plane;
    debug_assert_eq!(out.len(), s.n * img_out);
    let group = CONV_COLUMNS.div_ceil(plane.max(1)).clamp(1, s.n.max(1));
    let ns = out.len().saturating_mul(s.ckk_g()) / GEMM_MACS_PER_NS;
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
            let (kg, og) = (s.ckk_g(), s.og());
            for j in 0..s.groups {
                let (wj, yj) = (&w[j * og * kg..][..og * kg], &mut y[j * og * width..][..og * width]);
                sgemm(Gemm::Serial, og, kg, width, wj, &col[j * kg * width..][..kg * width], width, 1, yj);
            }
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
                patch_row(img, s, a * s.dilation[0], b * s.dilation[1], row);
            }
        }
    }
}

/// One im2col row of one image channel `img` (`h·w`): for every output
/// position, the input at offset `(a, b)` from the window's corner (a
/// kernel tap times the dilation), 0 outside the image.
fn patch_row(img: &[f32], s: ConvShape, a: usize, b: usize, row: &mut [f32]) {
    for oi in 0..s.oh {
        let r = (oi * s.stride[0] + a).checked_sub(s.padding[0]).filter(|&r| r < s.h);
        let out_row = &mut row[oi * s.ow..(oi + 1) * s.ow];
        let Some(r) = r else {
            out_row.fill(0.0);
            continue;
        };
        if s.stride[1] == 1 {
            // Columns `oj` with `0 <= oj + b - pw < w` read a contiguous run
            // of the image row; the rest is 0.
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
    let m = out.len() / n_in.max(1);
    sgemm_strided(whole_gemm(ns), m, rows, n_in, (grad, 1, n_out), (x, n_in, 1), out, false);
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
/// `max_all`: the maximum of every element, as the interpreter's
/// (NaN if any is NaN, `-inf` for none).
pub(crate) fn max_all(x: &[f32]) -> f32 {
    x.iter().fold(f32::NEG_INFINITY, |m, &v| max_nan(m, v))
}

pub(crate) fn sum_rows(x: &[f32], out: &mut [f32]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    // One output (the gradient of a scalar parameter, e.g. a learnable
    // `tau_mem_inv`, summed over every neuron, step and sample): the same
    // adds in the same order, with the sum in a register rather than in
    // memory (each add waits for the last, ~3× faster than through `out`).
    if n == 1 {
        out[0] = x.iter().fold(0.0f32, |acc, &v| acc + v);
        return;
    }
    out.fill(0.0);
    for row in x.chunks_exact(n) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// The outputs `j0..j1` (along one axis of `out` outputs) whose input
/// position `j·stride + tap - pad` lies in `0..n`.
fn inside(out: usize, tap: usize, stride: usize, pad: usize, n: usize) -> (usize, usize) {
    // j·stride + tap >= pad  and  j·stride + tap - pad < n.
    let j0 = pad.saturating_sub(tap).div_ceil(stride);
    let j1 = (n + pad).saturating_sub(tap).div_ceil(stride).min(out);
    (j0.min(j1), j1)
}

/// The input gradient of `conv2d`: per group of images, `col = w^T ·
/// grad` (one GEMM, `c·kh·kw × g·oh·ow`, the group's gradients side by
/// side as in [`conv2d`]: a GEMM per image of a small plane is narrow and
/// slow), then per image col2im adds every column entry into the input
/// position it was read from (padding dropped), in `(c, a, b, i, j)`
/// order. Groups of images are split over threads. (Every column entry is
/// the same sum over `o` whatever the group: the same bits as one GEMM per
/// image.)
pub(crate) fn conv2d_grad_input(grad: &[f32], w: &[f32], s: ConvShape, out: &mut [f32]) {
    let plane = s.oh * s.ow;
    let ckk = s.c * s.kh * s.kw;
    let img_in = s.c * s.h * s.w;
    let img_g = s.o * plane;
    let group = CONV_COLUMNS.div_ceil(plane.max(1)).clamp(1, s.n.max(1));
    let ns = out.len().saturating_mul(s.o * s.kh * s.kw) / GEMM_MACS_PER_NS;
    let n_parts = crate::pool::parts(s.n.div_ceil(group), ns);
    // Parts of whole groups.
    let per = s.n.div_ceil(group).div_ceil(n_parts.max(1)) * group;
    crate::pool::for_rows(out, img_in * per, s.n.div_ceil(per.max(1)), |p, chunk| {
        let first = p * per;
        let mut gs = vec![0.0f32; img_g * group];
        let mut col = vec![0.0f32; ckk * plane * group];
        for (gi, dxs) in chunk.chunks_mut((img_in * group).max(1)).enumerate() {
            let n0 = first + gi * group;
            let g = dxs.len() / img_in.max(1);
            let width = g * plane;
            // The group's gradients as `o × (g·plane)`.
            for k in 0..g {
                let gk = &grad[(n0 + k) * img_g..][..img_g];
                for (o, src) in gk.chunks_exact(plane.max(1)).enumerate() {
                    gs[o * width + k * plane..][..plane].copy_from_slice(src);
                }
            }
            // Per channel group j, w_j viewed as `kg × og`: element (l, o) is
            // w[(j·og + o)·kg + l]; its rows of `col` are j·kg.. .
            let (kg, og) = (s.ckk_g(), s.og());
            for j in 0..s.groups {
                sgemm_strided(
                    Gemm::Serial,
                    kg,
                    og,
                    width,
                    (&w[j * og * kg..][..og * kg], 1, kg),
                    (&gs[j * og * width..][..og * width], width, 1),
                    &mut col[j * kg * width..][..kg * width],
                    false,
                );
            }
            for (k, dx) in dxs.chunks_exact_mut(img_in.max(1)).enumerate() {
                dx.fill(0.0);
                for c in 0..s.c {
                    let ch = &mut dx[c * s.h * s.w..(c + 1) * s.h * s.w];
                    for a in 0..s.kh {
                        for b in 0..s.kw {
                            let row = &col[((c * s.kh + a) * s.kw + b) * width + k * plane..][..plane];
                            let (a, b) = (a * s.dilation[0], b * s.dilation[1]);
                            // The outputs `oj` whose input column `q = oj·sw + b - pw` is inside.
                            let (j0, j1) = inside(s.ow, b, s.stride[1], s.padding[1], s.w);
                            for oi in 0..s.oh {
                                let Some(r) = (oi * s.stride[0] + a).checked_sub(s.padding[0]).filter(|&r| r < s.h)
                                else {
                                    continue;
                                };
                                if j0 >= j1 {
                                    continue;
                                }
                                let src = &row[oi * s.ow + j0..oi * s.ow + j1];
                                let q0 = j0 * s.stride[1] + b - s.padding[1];
                                if s.stride[1] == 1 {
                                    for (d, &v) in ch[r * s.w + q0..][..j1 - j0].iter_mut().zip(src) {
                                        *d += v;
                                    }
                                } else {
                                    for (j, &v) in src.iter().enumerate() {
                                        ch[r * s.w + q0 + j * s.stride[1]] += v;
                                    }
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
                    let (a, b) = (a * s.dilation[0], b * s.dilation[1]);
                    patch_row(ch, s, a, b, &mut row[i * plane..(i + 1) * plane]);
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
        // cols^T: element (p, l) is cols[l * k + p]; per channel group j,
        // the rows j·og.. of `gs` and `dw` and the rows j·kg.. of `cols`.
        let (kg, og) = (s.ckk_g(), s.og());
        for j in 0..s.groups {
            let (gj, cj) = (&gs[j * og * k..][..og * k], &cols[j * kg * k..][..kg * k]);
            let oj = &mut out[j * og * kg..][..og * kg];
            sgemm_strided(whole_gemm(ns), og, k, kg, (gj, k, 1), (cj, 1, k), oj, true);
        }
        n0 += m;
    }
}

/// The bias gradient of `conv2d`: per channel, the sum over images and
/// positions in order from `+0` (the interpreter's bits). Each channel's
/// sum is one chain of adds in that order; the loop runs the chains of up
/// to 8 channels side by side (one chain alone waits on every add), image
/// by image. Channels are split over threads in parts of 8 where a part's
/// planes of an image are long enough to stream from memory (with short
/// ones, a part reading a little of every image waits on memory).
pub(crate) fn conv2d_grad_bias(grad: &[f32], n: usize, plane: usize, out: &mut [f32]) {
    const PART: usize = 8;
    let o = out.len();
    let ns = n.saturating_mul(o).saturating_mul(plane) / ELEMENTS_PER_NS;
    let parts = if PART * plane >= 4096 { crate::pool::parts(o / PART, ns) } else { 1 };
    crate::pool::for_rows(out, PART, parts, |first, out| {
        let (first, c) = (PART * first, out.len());
        // The sums of the part, on its own (not in cache lines that
        // another part writes too).
        let mut sums = vec![0.0f32; c];
        for img in 0..n {
            let block = &grad[(img * o + first) * plane..(img * o + first + c) * plane];
            let mut g = 0;
            while g < c {
                let (acc, planes) = (&mut sums[g..], &block[g * plane..]);
                g += match c - g {
                    8.. => add_planes::<8>(acc, planes, plane),
                    4.. => add_planes::<4>(acc, planes, plane),
                    3 => add_planes::<3>(acc, planes, plane),
                    2 => add_planes::<2>(acc, planes, plane),
                    _ => add_planes::<1>(acc, planes, plane),
                };
            }
        }
        out.copy_from_slice(&sums);
    });
}

/// Adds the `G` planes of `plane` elements at the start of `planes` into
/// `acc[..G]`, each in order; returns `G`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // One position of every plane a step.
fn add_planes<const G: usize>(acc: &mut [f32], planes: &[f32], plane: usize) -> usize {
    let mut a: [f32; G] = std::array::from_fn(|g| acc[g]);
    let rows: [&[f32]; G] = std::array::from_fn(|g| &planes[g * plane..(g + 1) * plane]);
    for p in 0..plane {
        for g in 0..G {
            a[g] += rows[g][p];
        }
    }
    acc[..G].copy_from_slice(&a);
    G
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
mod tests;

#[cfg(test)]
mod fast_tests;
