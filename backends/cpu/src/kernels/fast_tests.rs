//! The fast elementwise, pooling and bias-gradient kernels against the
//! plain loops they replace (the loops as they were), bit for bit. Run
//! with `SNNC_THREADS=1`, `2` and `3` to check every thread count.

use super::*;

/// Awkward values: signed zeros, infinities, NaNs of both signs and
/// other payloads (a signalling one too), subnormals, extremes, ties.
const SPECIAL: [u32; 20] = [
    0x0000_0000, // +0
    0x8000_0000, // -0
    0x3f80_0000, // 1
    0xbf80_0000, // -1
    0x7f80_0000, // inf
    0xff80_0000, // -inf
    0x7fc0_0000, // NaN
    0xffc0_0000, // -NaN (x86's default NaN)
    0x7fc0_1234, // NaN with a payload
    0x7f80_0001, // signalling NaN
    0x0000_0001, // the least subnormal
    0x8000_0003, // a negative subnormal
    0x7f7f_ffff, // f32::MAX
    0xff7f_ffff, // f32::MIN
    0x0080_0000, // f32::MIN_POSITIVE
    0x3fc0_0000, // 1.5
    0xc020_0000, // -2.5
    0x4040_0000, // 3
    0x3f80_0000, // 1 again (ties)
    0x4f00_0000, // 2^31
];

/// `n` values: the special ones and pseudo-random ones of mixed
/// magnitude, in an order set by `seed`.
fn mixed(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let r = (state >> 11) as u32;
            match r % 4 {
                0 => f32::from_bits(SPECIAL[(r / 4) as usize % SPECIAL.len()]),
                1 => ((r >> 8) % 7) as f32 - 3.0,
                _ => ((r >> 8) as f32 / (1u32 << 21) as f32 - 1.0) * 10f32.powi((r % 9) as i32 - 4),
            }
        })
        .collect()
}

fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g.to_bits() != w.to_bits()) {
        panic!("{what}[{i}]: {:#010x} vs {:#010x}", got[i].to_bits(), want[i].to_bits());
    }
}

/// [`assert_bits`] but for the payloads of NaNs: which NaN an add,
/// subtraction, product or quotient of two NaNs gives depends on the
/// order LLVM puts the operands in (Rust does not specify it; the
/// project's tests count any NaN as the same there).
fn assert_same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let same = |g: &f32, w: &f32| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
    if let Some(i) = got.iter().zip(want).position(|(g, w)| !same(g, w)) {
        panic!("{what}[{i}]: {:#010x} vs {:#010x}", got[i].to_bits(), want[i].to_bits());
    }
}

/// The check for `op`: NaN payloads are exact for `max` and `min`
/// (always the canonical NaN).
fn check_binary(op: BinaryOp) -> fn(&str, &[f32], &[f32]) {
    if matches!(op, BinaryOp::Max | BinaryOp::Min) { assert_bits } else { assert_same }
}

// The kernels as they were.

fn old_unary(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    let f = unary_fn(op);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
}

fn old_select(cond: &[f32], a: &[f32], b: &[f32], out: &mut [f32]) {
    if cond.is_empty() || a.is_empty() || b.is_empty() {
        out.fill(f32::NAN);
        return;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = if cond[i % cond.len()] != 0.0 { a[i % a.len()] } else { b[i % b.len()] };
    }
}

fn old_threshold(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = bool_to(v > 0.0);
    }
}

fn old_max_pool2d(
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

fn old_conv2d_grad_bias(grad: &[f32], n: usize, plane: usize, out: &mut [f32]) {
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

#[allow(clippy::too_many_arguments)]
fn old_max_pool2d_grad(
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

const BINARY: [BinaryOp; 6] =
    [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min];
const COMPARE: [CompareOp; 5] = [CompareOp::Gt, CompareOp::Ge, CompareOp::Lt, CompareOp::Le, CompareOp::Eq];
const UNARY: [UnaryOp; 7] =
    [UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Exp, UnaryOp::Log, UnaryOp::Tanh, UnaryOp::Sqrt, UnaryOp::Relu];

/// Every pair of special values, at the same index in both operands.
fn special_pairs() -> (Vec<f32>, Vec<f32>) {
    let s: Vec<f32> = SPECIAL.iter().map(|&b| f32::from_bits(b)).collect();
    let a = s.iter().flat_map(|&x| s.iter().map(move |_| x)).collect();
    let b = s.iter().flat_map(|_| s.iter().copied()).collect();
    (a, b)
}

/// Output lengths and operand lengths for each: equal, scalar,
/// dividing, not dividing, longer, empty.
fn shapes() -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    for n in [0, 1, 5, 63, 64, 65, 130, 1000, 100_003, 300_000] {
        for (la, lb) in [(n, n), (n, 1), (1, n), (1, 1), (n, 7), (10, n), (3, 64), (n + 5, n), (0, n), (n, 0)] {
            v.push((n, la, lb));
        }
    }
    v.push((2 * 3 * 100_000, 3 * 100_000, 100_000));
    v
}

#[test]
fn binary_and_compare_are_zip2_bit_for_bit() {
    let (a, b) = special_pairs();
    for op in BINARY {
        let (mut got, mut want) = (vec![0.5; a.len()], vec![0.5; a.len()]);
        binary(op, &a, &b, &mut got);
        zip2(&a, &b, &mut want, binary_fn(op));
        check_binary(op)(&format!("{op:?} specials"), &got, &want);
    }
    for op in COMPARE {
        let (mut got, mut want) = (vec![0.5; a.len()], vec![0.5; a.len()]);
        compare(op, &a, &b, &mut got);
        zip2(&a, &b, &mut want, compare_fn(op));
        assert_bits(&format!("{op:?} specials"), &got, &want);
    }
    for (k, (n, la, lb)) in shapes().into_iter().enumerate() {
        let (a, b) = (mixed(la, 2 * k as u64), mixed(lb, 2 * k as u64 + 1));
        for op in BINARY {
            let (mut got, mut want) = (vec![0.5; n], vec![0.5; n]);
            binary(op, &a, &b, &mut got);
            zip2(&a, &b, &mut want, binary_fn(op));
            check_binary(op)(&format!("{op:?} {n} {la} {lb}"), &got, &want);
        }
        for op in COMPARE {
            let (mut got, mut want) = (vec![0.5; n], vec![0.5; n]);
            compare(op, &a, &b, &mut got);
            zip2(&a, &b, &mut want, compare_fn(op));
            assert_bits(&format!("{op:?} {n} {la} {lb}"), &got, &want);
        }
    }
}

#[test]
fn unary_and_threshold_are_the_plain_loops_bit_for_bit() {
    let specials: Vec<f32> = SPECIAL.iter().map(|&b| f32::from_bits(b)).collect();
    let inputs = [specials, mixed(1, 1), mixed(65, 2), mixed(1000, 3), mixed(300_001, 4)];
    for x in &inputs {
        // Also an `out` longer and one shorter than `x`: the rest stays.
        for n in [x.len(), x.len() + 3, x.len() / 2] {
            for op in UNARY {
                let (mut got, mut want) = (vec![0.5; n], vec![0.5; n]);
                unary(op, x, &mut got);
                old_unary(op, x, &mut want);
                assert_bits(&format!("{op:?} {} -> {n}", x.len()), &got, &want);
            }
            let (mut got, mut want) = (vec![0.5; n], vec![0.5; n]);
            threshold(x, &mut got);
            old_threshold(x, &mut want);
            assert_bits(&format!("threshold {} -> {n}", x.len()), &got, &want);
        }
    }
}

#[test]
fn select_is_the_plain_loop_bit_for_bit() {
    let specials: Vec<f32> = SPECIAL.iter().map(|&b| f32::from_bits(b)).collect();
    let (a, b) = special_pairs();
    let cond: Vec<f32> = specials.iter().cycle().take(a.len()).copied().collect();
    let (mut got, mut want) = (vec![0.5; a.len()], vec![0.5; a.len()]);
    select(&cond, &a, &b, &mut got);
    old_select(&cond, &a, &b, &mut want);
    assert_bits("select specials", &got, &want);
    for (k, n) in [0usize, 1, 5, 64, 65, 1000, 100_003].into_iter().enumerate() {
        let lens = [n, 1, 7, 10, n + 3, 0];
        for lc in lens {
            for la in lens {
                for lb in lens {
                    let seed = (k * 1000 + lc % 17 * 100 + la % 17 * 10 + lb % 17) as u64;
                    // Conditions: mostly 0/1, some specials (NaN: true).
                    let cond: Vec<f32> =
                        mixed(lc, seed).into_iter().map(|v| if v.abs() < 0.5 { 0.0 } else { v }).collect();
                    let (a, b) = (mixed(la, seed + 1), mixed(lb, seed + 2));
                    let (mut got, mut want) = (vec![0.5; n], vec![0.5; n]);
                    select(&cond, &a, &b, &mut got);
                    old_select(&cond, &a, &b, &mut want);
                    assert_bits(&format!("select {n} {lc} {la} {lb}"), &got, &want);
                }
            }
        }
    }
}

/// Pooling shapes: `(images, [h, w], kernel, stride)`; the 2×2/2 ones
/// with even and odd sizes, and others for the general loop.
type Pool = (usize, [usize; 2], [usize; 2], [usize; 2]);
const POOLS: [Pool; 11] = [
    (3, [4, 4], [2, 2], [2, 2]),
    (5, [5, 7], [2, 2], [2, 2]),
    (2, [2, 2], [2, 2], [2, 2]),
    (7, [3, 2], [2, 2], [2, 2]),
    (1536, [24, 24], [2, 2], [2, 2]),
    (300, [9, 8], [2, 2], [2, 2]),
    (4, [6, 6], [3, 3], [2, 2]),
    (4, [6, 7], [2, 2], [1, 1]),
    (4, [6, 7], [3, 2], [3, 2]),
    (4, [5, 5], [1, 1], [1, 1]),
    (200, [9, 9], [3, 3], [3, 3]),
];

/// Pooling inputs: many ties (small integers), signed zeros and NaNs.
fn pool_input(n: usize, seed: u64) -> Vec<f32> {
    mixed(n, seed).into_iter().map(|v| if v.is_finite() && v.abs() > 2.0 { v.round() } else { v }).collect()
}

#[test]
fn pooling_is_the_plain_loop_bit_for_bit() {
    for (k, (n, [h, w], [kh, kw], [sh, sw])) in POOLS.into_iter().enumerate() {
        let [oh, ow] = [(h - kh) / sh + 1, (w - kw) / sw + 1];
        let x = pool_input(n * h * w, k as u64);
        let (mut got, mut want) = (vec![0.5; n * oh * ow], vec![0.5; n * oh * ow]);
        max_pool2d(&x, [h, w], [kh, kw], [sh, sw], [oh, ow], &mut got);
        old_max_pool2d(&x, [h, w], [kh, kw], [sh, sw], [oh, ow], &mut want);
        assert_bits(&format!("max_pool2d {k}"), &got, &want);
        let g = mixed(n * oh * ow, 100 + k as u64);
        let (mut got, mut want) = (vec![0.5; n * h * w], vec![0.5; n * h * w]);
        max_pool2d_grad(&x, &g, [h, w], [kh, kw], [sh, sw], [oh, ow], &mut got);
        old_max_pool2d_grad(&x, &g, [h, w], [kh, kw], [sh, sw], [oh, ow], &mut want);
        assert_bits(&format!("max_pool2d_grad {k}"), &got, &want);
    }
    // Every window of four special values.
    let s: Vec<f32> = SPECIAL.iter().map(|&b| f32::from_bits(b)).collect();
    let mut x = Vec::new();
    for &a in &s {
        for &b in &s {
            for &c in &s[..6] {
                for &d in &s[4..10] {
                    x.extend([a, b, c, d]);
                }
            }
        }
    }
    let n = x.len() / 4;
    let g = mixed(n, 7);
    let (mut got, mut want) = (vec![0.5; n], vec![0.5; n]);
    max_pool2d(&x, [2, 2], [2, 2], [2, 2], [1, 1], &mut got);
    old_max_pool2d(&x, [2, 2], [2, 2], [2, 2], [1, 1], &mut want);
    assert_bits("max_pool2d specials", &got, &want);
    let (mut got, mut want) = (vec![0.5; 4 * n], vec![0.5; 4 * n]);
    max_pool2d_grad(&x, &g, [2, 2], [2, 2], [2, 2], [1, 1], &mut got);
    old_max_pool2d_grad(&x, &g, [2, 2], [2, 2], [2, 2], [1, 1], &mut want);
    assert_bits("max_pool2d_grad specials", &got, &want);
}

#[test]
fn bias_gradient_is_the_plain_sum_bit_for_bit() {
    for (k, (n, o, plane)) in
        [(1, 1, 1), (3, 5, 7), (2, 8, 9), (4, 9, 16), (3, 21, 5), (64, 20, 576), (100, 50, 64), (2, 3, 0)]
            .into_iter()
            .enumerate()
    {
        // Mixed magnitudes: any other order of the adds shows.
        let g: Vec<f32> = mixed(n * o * plane, k as u64)
            .into_iter()
            .enumerate()
            .map(|(i, v)| if i % 97 == 0 || v.is_finite() { v } else { 0.25 })
            .collect();
        let (mut got, mut want) = (vec![0.5; o], vec![0.5; o]);
        conv2d_grad_bias(&g, n, plane, &mut got);
        old_conv2d_grad_bias(&g, n, plane, &mut want);
        assert_same(&format!("conv2d_grad_bias {n} {o} {plane}"), &got, &want);
    }
    // Finite values of mixed magnitudes only: sums that any other order
    // of the adds changes, no NaN or infinity to hide them.
    for (k, (n, o, plane)) in [(40, 20, 100), (64, 20, 576), (3, 13, 33), (200, 50, 64)].into_iter().enumerate() {
        let g: Vec<f32> = mixed(n * o * plane, 50 + k as u64)
            .into_iter()
            .map(|v| if v.is_finite() && v.abs() < 1e6 { v } else { 1e-3 })
            .collect();
        let (mut got, mut want) = (vec![0.5; o], vec![0.5; o]);
        conv2d_grad_bias(&g, n, plane, &mut got);
        old_conv2d_grad_bias(&g, n, plane, &mut want);
        assert_bits(&format!("conv2d_grad_bias finite {n} {o} {plane}"), &got, &want);
        assert!(got.iter().all(|v| v.is_finite()));
        // The order matters: the sum in another order differs somewhere.
        let reversed: Vec<f32> = (0..o)
            .map(|c| (0..n).rev().flat_map(|i| g[(i * o + c) * plane..(i * o + c + 1) * plane].iter().rev()).sum())
            .collect();
        assert!(reversed.iter().zip(&want).any(|(r, w)| r != w), "{n} {o} {plane}: order-insensitive data");
    }
}

/// The least of `reps` timings of `f`, in ms.
fn time_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

/// Old and new times of the ConvNet benchmark's shapes (T·B = 1536):
/// `cargo test --release -p snnc-cpu time_fast_kernels -- --ignored --nocapture`.
#[test]
#[ignore]
fn time_fast_kernels() {
    crate::pool::install(|| {
        let reps = 10;
        // Plain values (subnormals would slow the old and new alike).
        let plain = |n: usize, seed: usize| -> Vec<f32> {
            (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0).collect()
        };
        let big = plain(1536 * 20 * 24 * 24, 1);
        let a = plain(1536 * 50 * 8 * 8, 2);
        let b = plain(a.len(), 3);
        let mut out = vec![0.0; big.len()];
        let report = |what: &str, old: f64, new: f64| println!("{what:40} old {old:7.2} ms  new {new:7.2} ms");

        let o = &mut out[..a.len()];
        let old = time_ms(reps, || zip2(&a, &b, o, binary_fn(BinaryOp::Mul)));
        let new = time_ms(reps, || binary(BinaryOp::Mul, &a, &b, o));
        report("mul [1536,50,8,8]", old, new);
        let old = time_ms(reps, || zip2(&a, &b[..1], o, binary_fn(BinaryOp::Mul)));
        let new = time_ms(reps, || binary(BinaryOp::Mul, &a, &b[..1], o));
        report("mul [1536,50,8,8] by a scalar", old, new);
        let old = time_ms(reps, || zip2(&a, &b[..3200], o, binary_fn(BinaryOp::Add)));
        let new = time_ms(reps, || binary(BinaryOp::Add, &a, &b[..3200], o));
        report("add [1536,50,8,8] + [50,8,8]", old, new);
        let old = time_ms(reps, || zip2(&a, &b, o, compare_fn(CompareOp::Gt)));
        let new = time_ms(reps, || compare(CompareOp::Gt, &a, &b, o));
        report("gt [1536,50,8,8]", old, new);
        let old = time_ms(reps, || old_select(&b, &a, &[0.0], o));
        let new = time_ms(reps, || select(&b, &a, &[0.0], o));
        report("select [1536,50,8,8] (a, 0)", old, new);
        let old = time_ms(reps, || old_threshold(&a, o));
        let new = time_ms(reps, || threshold(&a, o));
        report("threshold [1536,50,8,8]", old, new);
        let r = &mut out[..1536 * 500];
        let old = time_ms(reps, || old_unary(UnaryOp::Relu, &a[..1536 * 500], r));
        let new = time_ms(reps, || unary(UnaryOp::Relu, &a[..1536 * 500], r));
        report("relu [1536,500]", old, new);

        let p = &mut out[..1536 * 20 * 12 * 12];
        let old = time_ms(reps, || old_max_pool2d(&big, [24, 24], [2, 2], [2, 2], [12, 12], p));
        let new = time_ms(reps, || max_pool2d(&big, [24, 24], [2, 2], [2, 2], [12, 12], p));
        report("max_pool2d [1536,20,24,24]", old, new);
        let p = &mut out[..1536 * 50 * 4 * 4];
        let old = time_ms(reps, || old_max_pool2d(&a, [8, 8], [2, 2], [2, 2], [4, 4], p));
        let new = time_ms(reps, || max_pool2d(&a, [8, 8], [2, 2], [2, 2], [4, 4], p));
        report("max_pool2d [1536,50,8,8]", old, new);
        let g = &b[..1536 * 20 * 12 * 12];
        let old = time_ms(reps, || old_max_pool2d_grad(&big, g, [24, 24], [2, 2], [2, 2], [12, 12], &mut out));
        let new = time_ms(reps, || max_pool2d_grad(&big, g, [24, 24], [2, 2], [2, 2], [12, 12], &mut out));
        report("max_pool2d_grad [1536,20,24,24]", old, new);
        let mut bias = [0.0; 20];
        let old = time_ms(reps, || old_conv2d_grad_bias(&big, 1536, 576, &mut bias));
        let new = time_ms(reps, || conv2d_grad_bias(&big, 1536, 576, &mut bias));
        report("conv2d_grad_bias [1536,20,24,24]", old, new);
        let mut bias = [0.0; 50];
        let old = time_ms(reps, || old_conv2d_grad_bias(&a, 1536, 64, &mut bias));
        let new = time_ms(reps, || conv2d_grad_bias(&a, 1536, 64, &mut bias));
        report("conv2d_grad_bias [1536,50,8,8]", old, new);
    });
}
