//! Event-driven convolutions over spike inputs: `spike_conv2d` and
//! `spike_conv2d_grad_weight`.
//!
//! A spike input is mostly zeros (the Norse ConvNet's first convolution
//! reads the encoder's spikes, 2 % active; its second the pooled spikes of
//! the first LIF layer, 0.05 %), so instead of multiplying every kernel tap
//! these kernels visit the nonzero inputs only:
//!
//! - the forward adds, for each active input `x[c, iy, ix]`, the terms
//!   `x · w[o, c, a, b]` to every output `y[o, oy, ox]` it reaches
//!   (`iy = oy·s + a - p`), then adds the bias;
//! - the weight gradient adds, for each active input and each tap `(a, b)`
//!   that connects it to an output, `x · grad[.., oy, ox]` to `dw[.., c,
//!   a, b]` as one vector over the output channels (the image's gradient
//!   transposed to channels-last first; channels split over threads, at
//!   most one part per thread).
//!
//! **Same bits as the interpreter.** Every output element receives its
//! nonzero terms in the interpreter's order: for an output of the forward
//! the inputs are visited in `(c, iy, ix)` order, which for a fixed output
//! is the interpreter's `(c, a, b)` order; for a weight gradient in `(n,
//! oy, ox)` order. A skipped term is `0 · w = ±0`, and adding `±0` to a
//! sum that starts at `+0` never changes it, so skipping is exact — when
//! the other factor is finite. With a non-finite weight (forward) or
//! gradient (weight gradient) the kernels defer to the dense ones, whose
//! `0 · inf = NaN` terms they would otherwise miss.

use crate::kernels::{self, ConvShape};
use crate::pool::{self, ELEMENTS_PER_NS, EVENT_ADDS_PER_NS};

/// The nonzero inputs of a batch of images: for image `n`,
/// `items[start[n]..start[n + 1]]` holds `(c·H·W + iy·W + ix, value)` in
/// that (row-major) order.
#[derive(Default)]
struct Active {
    start: Vec<usize>,
    items: Vec<(u32, f32)>,
}

impl Active {
    /// Lists the nonzero elements of each of the `n` images of `x`
    /// (`per_image` elements each), split over threads by images.
    fn build(x: &[f32], n: usize, per_image: usize) -> Active {
        let n_parts = pool::parts(n, x.len() / ELEMENTS_PER_NS);
        let per = n.div_ceil(n_parts.max(1)).max(1);
        let chunks: Vec<(usize, std::sync::Mutex<Active>)> =
            (0..n.div_ceil(per)).map(|p| (p, std::sync::Mutex::default())).collect();
        pool::for_each_item(chunks.iter().collect(), |_, (p, slot)| {
            let mut part = Active::default();
            for img in p * per..((p + 1) * per).min(n) {
                part.start.push(part.items.len());
                let xs = &x[img * per_image..(img + 1) * per_image];
                for (c, chunk) in xs.chunks(SCAN).enumerate() {
                    if chunk.iter().fold(false, |any, &v| any | (v != 0.0)) {
                        for (k, &v) in chunk.iter().enumerate() {
                            if v != 0.0 {
                                part.items.push(((c * SCAN + k) as u32, v));
                            }
                        }
                    }
                }
            }
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = part;
        });
        let mut all = Active { start: Vec::with_capacity(n + 1), items: Vec::new() };
        for (_, slot) in chunks {
            let part = slot.into_inner().unwrap_or_else(|e| e.into_inner());
            let base = all.items.len();
            all.start.extend(part.start.iter().map(|&s| s + base));
            all.items.extend(part.items);
        }
        all.start.push(all.items.len());
        all
    }

    fn image(&self, n: usize) -> &[(u32, f32)] {
        &self.items[self.start[n]..self.start[n + 1]]
    }
}

/// Values tested at once for a nonzero (or a non-finite) one: a loop the
/// compiler vectorises, then a closer look only where needed.
const SCAN: usize = 64;

/// Whether every value is finite (tested [`SCAN`] at a time).
fn all_finite(x: &[f32]) -> bool {
    x.chunks(SCAN).all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()))
}

/// The output positions along one axis that input position `i` reaches
/// through kernel tap `a`: `o` with `o·stride + a - pad = i`, if in range.
#[inline]
fn reach(i: usize, a: usize, stride: usize, pad: usize, out: usize) -> Option<usize> {
    let num = (i + pad).checked_sub(a)?;
    (num % stride == 0 && num / stride < out).then_some(num / stride)
}

/// The taps `(a, o)` of one axis through which input position `i` reaches
/// an output: `(tap, output)` pairs in tap order (at most `k`).
#[inline]
fn taps(i: usize, k: usize, stride: usize, pad: usize, out: usize, buf: &mut [(usize, usize); MAX_TAPS]) -> usize {
    let mut n = 0;
    for a in 0..k {
        if let Some(o) = reach(i, a, stride, pad, out) {
            buf[n] = (a, o);
            n += 1;
        }
    }
    n
}

/// The widest kernel the event-driven kernels take (wider ones run dense).
pub(crate) const MAX_TAPS: usize = 32;

/// Whether the event-driven kernels compute this convolution: dilation 1
/// and one channel group only (`sparsify` picks them for no other; the
/// executor runs any other `spike_conv2d` dense, the same values).
pub(crate) fn handles(s: &ConvShape) -> bool {
    s.dilation == [1, 1] && s.groups == 1
}

/// `conv2d` of a spike input, event-driven (see the module docs); falls
/// back to the dense kernel when a weight is not finite or the kernel is
/// wider than [`MAX_TAPS`].
///
/// Each image's output plane is computed in place: zeroed, then every
/// active input adds `x · w[o, c, a, b]` to `y[o, oy, ox]` for each output
/// channel and tap that reaches an output, then the bias is added.
pub(crate) fn spike_conv2d(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: ConvShape, out: &mut [f32]) {
    if s.kh > MAX_TAPS || s.kw > MAX_TAPS || !all_finite(w) {
        return kernels::conv2d(x, w, bias, s, out);
    }
    let plane = s.oh * s.ow;
    let img_out = s.o * plane;
    let img_in = s.c * s.h * s.w;
    let taps_per_o = s.c * s.kh * s.kw;
    debug_assert_eq!(out.len(), s.n * img_out);
    // The scan and the output, plus the adds of a tenth of the inputs.
    let ns = (s.n * (img_in + img_out)) / ELEMENTS_PER_NS + s.n * img_in / 10 * s.kh * s.kw * s.o / EVENT_ADDS_PER_NS;
    // The weight as `[c, a, b, o]`: each tap's output channels one vector.
    let mut wt = vec![0.0f32; w.len()];
    for (o, wo) in w.chunks_exact(taps_per_o.max(1)).enumerate() {
        for (l, &v) in wo.iter().enumerate() {
            wt[l * s.o + o] = v;
        }
    }
    kernels::par_rows(out, img_out, ns, |first, chunk| {
        let mut acc = vec![0.0f32; img_out];
        for (l, y) in chunk.chunks_exact_mut(img_out.max(1)).enumerate() {
            let xs = &x[(first + l) * img_in..][..img_in];
            conv_image(xs, &wt, bias, s, &mut acc, y);
        }
    });
}

/// One image of [`spike_conv2d`]: every active input adds, for each tap
/// that reaches an output, `x · w[.., c, a, b]` to the `o`-vector of
/// `y[.., oy, ox]` held as `[oy·ow + ox, o]` in `acc` (each output still
/// gets its terms in `(c, iy, ix)` order), then `y` (`[o, oy, ox]`) is
/// that plus the bias. Compiled for the widest vectors the CPU has (the
/// same IEEE operations in each version).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn conv_image(xs: &[f32], wt: &[f32], bias: Option<&[f32]>, s: ConvShape, acc: &mut [f32], y: &mut [f32]) {
    let plane = s.oh * s.ow;
    let (mut ty, mut tx) = ([(0, 0); MAX_TAPS], [(0, 0); MAX_TAPS]);
    acc.fill(0.0);
    for (ci, chunk) in xs.chunks(SCAN).enumerate() {
        if !chunk.iter().fold(false, |any, &v| any | (v != 0.0)) {
            continue;
        }
        for (j, &v) in chunk.iter().enumerate() {
            if v == 0.0 {
                continue;
            }
            let k = ci * SCAN + j;
            let (c, iy, ix) = (k / (s.h * s.w), k / s.w % s.h, k % s.w);
            let ny = taps(iy, s.kh, s.stride[0], s.padding[0], s.oh, &mut ty);
            let nx = taps(ix, s.kw, s.stride[1], s.padding[1], s.ow, &mut tx);
            for &(a, oy) in &ty[..ny] {
                for &(b, ox) in &tx[..nx] {
                    let src = &wt[((c * s.kh + a) * s.kw + b) * s.o..][..s.o];
                    let dst = &mut acc[(oy * s.ow + ox) * s.o..][..s.o];
                    for (d, &wv) in dst.iter_mut().zip(src) {
                        *d += v * wv;
                    }
                }
            }
        }
    }
    for (o, yo) in y.chunks_exact_mut(plane.max(1)).enumerate() {
        for (p, e) in yo.iter_mut().enumerate() {
            *e = acc[p * s.o + o];
        }
        if let Some(bias) = bias {
            for e in yo {
                *e += bias[o];
            }
        }
    }
}

/// `conv2d_grad_weight` of a spike input, event-driven (see the module
/// docs); falls back to the dense kernel when a gradient is not finite or
/// the kernel is wider than [`MAX_TAPS`].
///
/// Output channels are split over threads; each part goes through the
/// images in order and, for every active input, adds `grad[o, oy, ox] · x`
/// to `dw[o, c, a, b]` for its channels `o` and the taps that connect them
/// (reading the part's slice of each image's gradient in address order).
pub(crate) fn spike_conv2d_grad_weight(grad: &[f32], x: &[f32], s: ConvShape, out: &mut [f32]) {
    if s.kh > MAX_TAPS || s.kw > MAX_TAPS {
        return kernels::conv2d_grad_weight(grad, x, s, out);
    }
    let img_in = s.c * s.h * s.w;
    let active = Active::build(x, s.n, img_in);
    let per_o = s.c * s.kh * s.kw;
    debug_assert_eq!(out.len(), s.o * per_o);
    let finite = std::sync::atomic::AtomicBool::new(true);
    // Reading the gradient (checked finite) and the adds.
    let ns = grad.len() / ELEMENTS_PER_NS + active.items.len() * s.kh * s.kw * s.o / ELEMENTS_PER_NS;
    // At most one part per thread: a part transposes and scans every
    // image, and its channels are the width of its vectors.
    let parts = pool::parts(s.o, ns).min(pool::threads());
    pool::for_rows(out, per_o, parts, |first, dw| {
        if !grad_weight_part(grad, &active, s, first, dw) {
            finite.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    });
    if !finite.into_inner() {
        kernels::conv2d_grad_weight(grad, x, s, out);
    }
}

/// The output channels `first..` of [`spike_conv2d_grad_weight`] (`dw`,
/// whole rows of `c·kh·kw`): image by image, the part's gradient planes
/// are transposed to `[oy·ow + ox, o]`, and every active input adds, for
/// each tap, `x · grad[.., oy, ox]` to the `o`-vector of `dw[.., c, a, b]`
/// held as `[c·kh·kw, o]` — each entry still gets its terms in `(n, oy,
/// ox)` order, the `o` of the part now one vector. Returns whether every
/// gradient it read was finite. Compiled for the widest vectors the CPU
/// has (the same IEEE operations in each version).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn grad_weight_part(grad: &[f32], active: &Active, s: ConvShape, first: usize, dw: &mut [f32]) -> bool {
    let plane = s.oh * s.ow;
    let per_o = s.c * s.kh * s.kw;
    let n_o = dw.len() / per_o.max(1);
    let (mut ty, mut tx) = ([(0, 0); MAX_TAPS], [(0, 0); MAX_TAPS]);
    let mut gt = vec![0.0f32; plane * n_o];
    let mut acc = vec![0.0f32; per_o * n_o];
    let mut ok = true;
    for n in 0..s.n {
        let items = active.image(n);
        if items.is_empty() {
            // Nothing to add; the gradient is still checked.
            ok &= all_finite(&grad[(n * s.o + first) * plane..][..n_o * plane]);
            continue;
        }
        let g = &grad[(n * s.o + first) * plane..][..n_o * plane];
        ok &= all_finite(g);
        for (o, go) in g.chunks_exact(plane.max(1)).enumerate() {
            for (p, &v) in go.iter().enumerate() {
                gt[p * n_o + o] = v;
            }
        }
        for &(k, v) in items {
            let k = k as usize;
            let (c, iy, ix) = (k / (s.h * s.w), k / s.w % s.h, k % s.w);
            let ny = taps(iy, s.kh, s.stride[0], s.padding[0], s.oh, &mut ty);
            let nx = taps(ix, s.kw, s.stride[1], s.padding[1], s.ow, &mut tx);
            for &(a, oy) in &ty[..ny] {
                for &(b, ox) in &tx[..nx] {
                    let src = &gt[(oy * s.ow + ox) * n_o..][..n_o];
                    let dst = &mut acc[((c * s.kh + a) * s.kw + b) * n_o..][..n_o];
                    for (d, &g) in dst.iter_mut().zip(src) {
                        *d += g * v;
                    }
                }
            }
        }
    }
    for (o, row) in dw.chunks_exact_mut(per_o.max(1)).enumerate() {
        for (l, e) in row.iter_mut().enumerate() {
            *e = acc[l * n_o + o];
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n: usize) -> ConvShape {
        ConvShape {
            n,
            c: 2,
            h: 6,
            w: 5,
            o: 3,
            kh: 3,
            kw: 2,
            oh: 3,
            ow: 3,
            stride: [2, 2],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
        }
    }

    /// Spikes (every third element) and small weights.
    fn data(s: ConvShape) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = (0..s.n * s.c * s.h * s.w).map(|i| if i % 3 == 0 { 1.0 } else { 0.0 }).collect();
        let w = (0..s.o * s.c * s.kh * s.kw).map(|i| (i as f32 * 0.37).sin()).collect();
        let g = (0..s.n * s.o * s.oh * s.ow).map(|i| (i as f32 * 0.11).cos()).collect();
        (x, w, g)
    }

    #[test]
    fn a_non_finite_weight_gives_the_dense_kernels_nans() {
        let s = shape(4);
        let (x, mut w, _) = data(s);
        w[5] = f32::INFINITY;
        let mut want = vec![0.0; s.n * s.o * s.oh * s.ow];
        kernels::conv2d(&x, &w, None, s, &mut want);
        let mut got = vec![1.0; want.len()];
        spike_conv2d(&x, &w, None, s, &mut got);
        assert!(want.iter().any(|v| v.is_nan()));
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_non_finite_gradient_gives_the_dense_kernels_nans() {
        let s = shape(4);
        let (x, _, mut g) = data(s);
        g[7] = f32::NAN;
        let mut want = vec![0.0; s.o * s.c * s.kh * s.kw];
        kernels::conv2d_grad_weight(&g, &x, s, &mut want);
        let mut got = vec![1.0; want.len()];
        spike_conv2d_grad_weight(&g, &x, s, &mut got);
        assert!(want.iter().any(|v| v.is_nan()));
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    fn the_active_lists_follow_the_images() {
        let x = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0];
        let a = Active::build(&x, 3, 3);
        assert_eq!(a.image(0), &[(1, 1.0)]);
        assert_eq!(a.image(1), &[]);
        assert_eq!(a.image(2), &[(0, 1.0), (1, 1.0)]);
    }
}
