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
            assert!((got - want).abs() <= 1e-6 * scale.max(1.0), "{rows}x{n_in}x{n_out} [{m}, {o}]: {got} vs {want}");
        }
    }
}

#[test]
fn conv_agrees_with_the_direct_formula() {
    let shapes = [
        ConvShape {
            n: 2,
            c: 2,
            h: 5,
            w: 4,
            o: 3,
            kh: 3,
            kw: 2,
            oh: 3,
            ow: 2,
            stride: [2, 2],
            padding: [1, 0],
            dilation: [1, 1],
            groups: 1,
        },
        ConvShape {
            n: 3,
            c: 2,
            h: 5,
            w: 4,
            o: 3,
            kh: 3,
            kw: 3,
            oh: 5,
            ow: 4,
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
        },
        ConvShape {
            n: 1,
            c: 1,
            h: 6,
            w: 7,
            o: 2,
            kh: 2,
            kw: 3,
            oh: 5,
            ow: 5,
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        },
        ConvShape {
            n: 1,
            c: 1,
            h: 3,
            w: 2,
            o: 1,
            kh: 1,
            kw: 1,
            oh: 7,
            ow: 8,
            stride: [1, 1],
            padding: [2, 3],
            dilation: [1, 1],
            groups: 1,
        },
        ConvShape {
            n: 1,
            c: 1,
            h: 1,
            w: 1,
            o: 1,
            kh: 1,
            kw: 1,
            oh: 9,
            ow: 9,
            stride: [1, 1],
            padding: [4, 4],
            dilation: [1, 1],
            groups: 1,
        },
        // Dilation and channel groups (output size (h + 2p - d(k-1) - 1)/s + 1).
        ConvShape {
            n: 2,
            c: 4,
            h: 9,
            w: 11,
            o: 2,
            kh: 3,
            kw: 5,
            oh: 9,
            ow: 8,
            stride: [1, 2],
            padding: [2, 4],
            dilation: [2, 1],
            groups: 2,
        },
        ConvShape {
            n: 1,
            c: 3,
            h: 10,
            w: 8,
            o: 3,
            kh: 2,
            kw: 3,
            oh: 3,
            ow: 6,
            stride: [3, 1],
            padding: [0, 1],
            dilation: [3, 2],
            groups: 3,
        },
    ];
    for s in shapes {
        check_conv(s);
    }
}

fn check_conv(s: ConvShape) {
    let x: Vec<f32> = (0..s.n * s.c * s.h * s.w).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
    let cg = s.c / s.groups;
    let w: Vec<f32> = (0..s.o * cg * s.kh * s.kw).map(|i| ((i * 3) % 4) as f32 * 0.25).collect();
    let bias = [0.5f32, -1.0, 2.0][..s.o].to_vec();
    let mut out = vec![0.0; s.n * s.o * s.oh * s.ow];
    conv2d(&x, &w, Some(&bias), s, &mut out);
    for n in 0..s.n {
        for o in 0..s.o {
            for i in 0..s.oh {
                for j in 0..s.ow {
                    let mut acc = 0.0f32;
                    for ci in 0..cg {
                        let c = o / (s.o / s.groups) * cg + ci;
                        for a in 0..s.kh {
                            for b in 0..s.kw {
                                let r = (i * s.stride[0] + a * s.dilation[0]) as isize - s.padding[0] as isize;
                                let q = (j * s.stride[1] + b * s.dilation[1]) as isize - s.padding[1] as isize;
                                if r >= 0 && (r as usize) < s.h && q >= 0 && (q as usize) < s.w {
                                    acc += x[((n * s.c + c) * s.h + r as usize) * s.w + q as usize]
                                        * w[((o * cg + ci) * s.kh + a) * s.kw + b];
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
    // 70 images: three chunks of the weight gradient's GEMM; strided and
    // not (the contiguous patch rows), padded and not.
    let strided = ConvShape {
        n: 70,
        c: 3,
        h: 12,
        w: 11,
        o: 8,
        kh: 3,
        kw: 3,
        oh: 6,
        ow: 6,
        stride: [2, 2],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 1,
    };
    let unit = ConvShape { stride: [1, 1], oh: 12, ow: 11, ..strided };
    let valid = ConvShape { padding: [0, 0], oh: 10, ow: 9, ..unit };
    for s in [strided, unit, valid] {
        conv_gradients_agree(s);
    }
}

fn conv_gradients_agree(s: ConvShape) {
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
