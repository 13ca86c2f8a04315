//! Pooling as the interpreter's `{max,avg,sum}_pool2d` and their
//! gradients (the same bits): plain loops in its order. Max pooling
//! without padding has loops of its own (and 2×2 windows of stride 2 a
//! branch-free one); the rest is one general loop over the in-image part
//! of each window.

use snnc_ir::PoolOp;

use super::{max_nan, par_rows};
use crate::pool::ELEMENTS_PER_NS;

/// The geometry of a pooling: planes of `size`, windows `kernel`,
/// `stride`, `padding` per axis, output planes `out`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolShape {
    pub size: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub out: [usize; 2],
}

impl PoolShape {
    /// The in-image part of window `(i, j)`: rows and columns (never
    /// empty: the padding is at most half the kernel).
    fn window(&self, i: usize, j: usize) -> [std::ops::Range<usize>; 2] {
        [(i, 0), (j, 1)].map(|(i, ax)| {
            let start = i * self.stride[ax];
            let lo = start.saturating_sub(self.padding[ax]);
            let hi = (start + self.kernel[ax]).saturating_sub(self.padding[ax]).min(self.size[ax]);
            lo..hi
        })
    }
}

/// Pooling of every plane of `x` into `out`, as the interpreter's
/// `pool2d`: `max` the `max_nan` fold from the window's first in-image
/// element, `sum` the sum of its in-image elements from `+0` in row-major
/// order, `avg` that sum divided once by `kh·kw`. Planes are split over
/// threads.
pub(crate) fn pool2d(op: PoolOp, x: &[f32], s: PoolShape, out: &mut [f32]) {
    if op == PoolOp::Max && s.padding == [0, 0] {
        return max_pool2d(x, s.size, s.kernel, s.stride, s.out, out);
    }
    let ([h, w], [oh, ow]) = (s.size, s.out);
    let ns = out.len().saturating_mul(s.kernel[0] * s.kernel[1]) / ELEMENTS_PER_NS;
    let count = (s.kernel[0] * s.kernel[1]) as f32;
    par_rows(out, oh * ow, ns, |first, chunk| {
        for (l, y) in chunk.chunks_exact_mut((oh * ow).max(1)).enumerate() {
            let img = &x[(first + l) * h * w..(first + l + 1) * h * w];
            for i in 0..oh {
                for j in 0..ow {
                    let [rows, cols] = s.window(i, j);
                    y[i * ow + j] = if op == PoolOp::Max {
                        let mut m = img[rows.start * w + cols.start];
                        for r in rows {
                            for &v in &img[r * w + cols.start..r * w + cols.end] {
                                m = max_nan(m, v);
                            }
                        }
                        m
                    } else {
                        let mut acc = 0.0f32;
                        for r in rows {
                            for &v in &img[r * w + cols.start..r * w + cols.end] {
                                acc += v;
                            }
                        }
                        if op == PoolOp::Avg { acc / count } else { acc }
                    };
                }
            }
        }
    });
}

/// The input gradient of [`pool2d`] as the interpreter's (its bits): per
/// window in row-major order, `max` adds its gradient to the element
/// torch's CPU kernel picks, `sum` to each in-image element, `avg` its
/// gradient divided once by `kh·kw` to each; the result starts from `+0`.
pub(crate) fn pool2d_grad(op: PoolOp, x: &[f32], grad: &[f32], s: PoolShape, out: &mut [f32]) {
    if op == PoolOp::Max && s.padding == [0, 0] {
        return max_pool2d_grad(x, grad, s.size, s.kernel, s.stride, s.out, out);
    }
    let ([h, w], [oh, ow]) = (s.size, s.out);
    let ns = grad.len().saturating_mul(s.kernel[0] * s.kernel[1]) / ELEMENTS_PER_NS;
    let count = (s.kernel[0] * s.kernel[1]) as f32;
    par_rows(out, h * w, ns, |first, chunk| {
        for (l, acc) in chunk.chunks_exact_mut((h * w).max(1)).enumerate() {
            let img = &x[(first + l) * h * w..(first + l + 1) * h * w];
            let g = &grad[(first + l) * oh * ow..(first + l + 1) * oh * ow];
            acc.fill(0.0);
            for i in 0..oh {
                for j in 0..ow {
                    let [rows, cols] = s.window(i, j);
                    let gv = g[i * ow + j];
                    if op == PoolOp::Max {
                        let (mut m, mut at) = (f32::NEG_INFINITY, rows.start * w + cols.start);
                        for r in rows {
                            for q in cols.clone() {
                                let v = img[r * w + q];
                                if v > m || v.is_nan() {
                                    m = v;
                                    at = r * w + q;
                                }
                            }
                        }
                        acc[at] += gv;
                    } else {
                        let d = if op == PoolOp::Avg { gv / count } else { gv };
                        for r in rows {
                            for e in &mut acc[r * w + cols.start..r * w + cols.end] {
                                *e += d;
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Max pooling as the interpreter's `max_pool2d` (the same bits): per
/// window, `max_nan` from its first element over its elements in row-major
/// order. Images are split over threads; 2×2 windows of stride 2 have a
/// loop of their own.
pub(super) fn max_pool2d(
    x: &[f32],
    [h, w]: [usize; 2],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [oh, ow]: [usize; 2],
    out: &mut [f32],
) {
    let ns = out.len().saturating_mul(kh * kw) / ELEMENTS_PER_NS;
    if is_pool_2x2([h, w], [kh, kw], [sh, sw], [oh, ow]) {
        par_rows(out, oh * ow, ns, |first, chunk| {
            for (l, y) in chunk.chunks_exact_mut(oh * ow).enumerate() {
                let img = &x[(first + l) * h * w..(first + l + 1) * h * w];
                for (i, yr) in y.chunks_exact_mut(ow).enumerate() {
                    let r0 = &img[2 * i * w..2 * i * w + 2 * ow];
                    let r1 = &img[(2 * i + 1) * w..(2 * i + 1) * w + 2 * ow];
                    let (r0, r1) = (r0.as_chunks::<2>().0, r1.as_chunks::<2>().0);
                    for ((o, &[a, b]), &[c, d]) in yr.iter_mut().zip(r0).zip(r1) {
                        *o = max4_nan([a, b, c, d]);
                    }
                }
            }
        });
        return;
    }
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

/// `max_nan(max_nan(max_nan(max_nan(v[0], v[0]), v[1]), v[2]), v[3])`
/// without branches (for LLVM to vectorise): the canonical NaN if one is
/// NaN (a NaN stays through `max_nan`), else the same chain of `b > a`.
#[inline(always)]
fn max4_nan(v: [f32; 4]) -> f32 {
    let nan = v[0].is_nan() | v[1].is_nan() | v[2].is_nan() | v[3].is_nan();
    let m = if v[1] > v[0] { v[1] } else { v[0] };
    let m = if v[2] > m { v[2] } else { m };
    let m = if v[3] > m { v[3] } else { m };
    if nan { f32::NAN } else { m }
}

/// Whether a pooling is 2×2 windows of stride 2 that lie inside the
/// `h × w` image (the common case, with loops of its own).
fn is_pool_2x2([h, w]: [usize; 2], kernel: [usize; 2], stride: [usize; 2], [oh, ow]: [usize; 2]) -> bool {
    kernel == [2, 2] && stride == [2, 2] && oh > 0 && ow > 0 && 2 * oh <= h && 2 * ow <= w
}

/// The input gradient of max pooling as the interpreter's (its bits): per
/// window in row-major order, the gradient goes to the element torch's CPU
/// kernel picks (greater than the maximum so far from `-inf`, or NaN);
/// overlapping windows add (to `+0`). Images are split over threads; 2×2
/// windows of stride 2 have a loop of their own.
pub(super) fn max_pool2d_grad(
    x: &[f32],
    grad: &[f32],
    [h, w]: [usize; 2],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [oh, ow]: [usize; 2],
    out: &mut [f32],
) {
    let ns = grad.len().saturating_mul(kh * kw) / ELEMENTS_PER_NS;
    if is_pool_2x2([h, w], [kh, kw], [sh, sw], [oh, ow]) {
        par_rows(out, h * w, ns, |first, chunk| {
            for (l, acc) in chunk.chunks_exact_mut(h * w).enumerate() {
                let img = &x[(first + l) * h * w..(first + l + 1) * h * w];
                let g = &grad[(first + l) * oh * ow..(first + l + 1) * oh * ow];
                // The rows and columns no window covers.
                acc[2 * oh * w..].fill(0.0);
                for (i, gr) in g.chunks_exact(ow).enumerate() {
                    let (a0, a1) = acc[2 * i * w..(2 * i + 2) * w].split_at_mut(w);
                    a0[2 * ow..].fill(0.0);
                    a1[2 * ow..].fill(0.0);
                    let r0 = &img[2 * i * w..2 * i * w + 2 * ow];
                    let r1 = &img[(2 * i + 1) * w..(2 * i + 1) * w + 2 * ow];
                    let (r0, r1) = (r0.as_chunks::<2>().0, r1.as_chunks::<2>().0);
                    let (a0, a1) = (a0[..2 * ow].as_chunks_mut::<2>().0, a1[..2 * ow].as_chunks_mut::<2>().0);
                    for ((((&[p, q], &[r, t]), o0), o1), &gv) in r0.iter().zip(r1).zip(a0).zip(a1).zip(gr) {
                        // The general loop's choice without branches (for LLVM
                        // to vectorise): from `-inf`, `p` is taken (`m = p`);
                        // then each later one if greater than the maximum so
                        // far, or NaN; the last one taken gets the gradient.
                        let take_q = (q > p) | q.is_nan();
                        let m = if take_q { q } else { p };
                        let take_r = (r > m) | r.is_nan();
                        let m = if take_r { r } else { m };
                        let take_t = (t > m) | t.is_nan();
                        let [at_p, at_q, at_r] =
                            [!take_q & !take_r & !take_t, take_q & !take_r & !take_t, take_r & !take_t];
                        // `+0 + g` where the gradient goes (as the interpreter's
                        // sum into a zeroed plane: `-0` becomes `+0`).
                        let add = 0.0 + gv;
                        *o0 = [if at_p { add } else { 0.0 }, if at_q { add } else { 0.0 }];
                        *o1 = [if at_r { add } else { 0.0 }, if take_t { add } else { 0.0 }];
                    }
                }
            }
        });
        return;
    }
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
