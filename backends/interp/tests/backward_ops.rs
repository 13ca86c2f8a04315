//! The ops of the backward pass (made by autodiff) and reverse step loops,
//! checked against hand-computed values and naive formulas.

mod common;

use common::*;
use snnc_interp::RunOptions;
use snnc_ir::{
    Builder, Dtype, Handle, MatMulKind, Module, Node, Op, PoolOp, ReduceOp, Shape, StateInit, Type, validate,
};
use snnc_runtime::{Tensor, Weights};

const F32: Dtype = Dtype::F32;
const F64: Dtype = Dtype::F64;

/// A module of one sequence region: the inputs `(name, type)`, then `body`
/// builds the output `y` from the input nodes.
fn seq_module(
    steps: u32,
    float: Dtype,
    inputs: &[(&str, Type)],
    body: impl FnOnce(&mut Builder, &[Handle<Node>]) -> Handle<Node>,
) -> Module {
    let mut b = Builder::new("backward", steps, 1e-3, float);
    let hs: Vec<_> = inputs.iter().map(|(n, t)| b.input(*n, t.clone())).collect();
    b.begin_seq();
    let nodes: Vec<_> = hs.into_iter().map(|h| b.emit(Op::Input(h)).unwrap()).collect();
    let y = body(&mut b, &nodes);
    b.output("y", y);
    b.finish()
}

fn out(m: &Module, inputs: &[(&str, Tensor)]) -> Tensor {
    run(m, &Weights::new(), inputs).outputs["y"].clone()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * w.abs().max(1.0), "element {i}: got {g}, want {w}");
    }
}

fn f(dims: &[u32]) -> Shape {
    Shape::fixed(dims)
}

fn bt(dims: &[u32]) -> Shape {
    Shape::batched(dims)
}

#[test]
fn transpose_swaps_the_dims() {
    let mut b = Builder::new("t", 1, 1e-3, F64);
    let p = b.param(param("w", F64, &[2, 3]));
    b.begin_seq();
    let w = b.emit(Op::Param(p)).unwrap();
    let y = b.emit(Op::Transpose(w)).unwrap();
    assert_eq!(b.ty(y).shape, f(&[3, 2]));
    b.output("y", y);
    let m = b.finish();
    let ws = weights(&[("w", t64(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))]);
    let r = run(&m, &ws, &[]);
    assert_eq!(r.outputs["y"].shape, vec![3, 2]);
    assert_bits(&r.outputs["y"].data, &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
}

/// `sum over t, b of grad[t, b, o] * x[t, b, i]`, in that order, in f64.
fn naive_grad_weight(grad: &[f64], x: &[f64], rows: usize, n_in: usize, n_out: usize) -> Vec<f64> {
    let mut dw = vec![0.0; n_out * n_in];
    for o in 0..n_out {
        for i in 0..n_in {
            let mut acc = 0.0;
            for r in 0..rows {
                acc += grad[r * n_out + o] * x[r * n_in + i];
            }
            dw[o * n_in + i] = acc;
        }
    }
    dw
}

fn grad_weight_module(steps: u32, float: Dtype, x_dtype: Dtype, kind: MatMulKind, n_in: u32, n_out: u32) -> Module {
    let inputs = [("g", Type::seq(float, bt(&[n_out]))), ("x", Type::seq(x_dtype, bt(&[n_in])))];
    seq_module(steps, float, &inputs, |b, n| b.emit(Op::MatMulGradWeight { grad: n[0], input: n[1], kind }).unwrap())
}

#[test]
fn matmul_grad_weight_is_the_sum_over_time_and_batch() {
    let (steps, batch, n_in, n_out) = (4usize, 3usize, 5usize, 2usize);
    let rows = steps * batch;
    let g = ramp(rows * n_out);
    // Spikes: an irregular pattern with some inactive rows and columns.
    let x: Vec<f64> = (0..rows * n_in).map(|k| f64::from(u8::from((k * 7 + k / 3) % 5 < 2))).collect();
    let want = naive_grad_weight(&g, &x, rows, n_in, n_out);
    for (x_dtype, kind) in
        [(F64, MatMulKind::Dense), (Dtype::Spike, MatMulKind::Dense), (Dtype::Spike, MatMulKind::EventDriven)]
    {
        let m = grad_weight_module(steps as u32, F64, x_dtype, kind, n_in as u32, n_out as u32);
        let y = out(&m, &[("g", t64(&[steps, batch, n_out], g.clone())), ("x", t64(&[steps, batch, n_in], x.clone()))]);
        assert_eq!(y.shape, vec![n_out, n_in]);
        // The naive loop sums in the same order: the same bits.
        assert_bits(&y.data, &want);
    }
    // Dense float inputs too.
    let xf = ramp(rows * n_in + 3)[3..].to_vec();
    let m = grad_weight_module(steps as u32, F64, F64, MatMulKind::Dense, n_in as u32, n_out as u32);
    let y = out(&m, &[("g", t64(&[steps, batch, n_out], g.clone())), ("x", t64(&[steps, batch, n_in], xf.clone()))]);
    assert_bits(&y.data, &naive_grad_weight(&g, &xf, rows, n_in, n_out));
}

#[test]
fn matmul_grad_weight_kinds_agree_bitwise_in_f32_with_non_finite_gradients() {
    let (steps, batch, n_in, n_out) = (3usize, 2usize, 4usize, 3usize);
    let rows = steps * batch;
    let mut g: Vec<f32> = ramp(rows * n_out).iter().map(|&v| v as f32 * 0.37).collect();
    g[4] = f32::INFINITY; // row 1: meets its inactive inputs as NaN
    let x: Vec<f32> = (0..rows * n_in).map(|k| if (k * 5) % 3 == 0 { 1.0 } else { 0.0 }).collect();
    let mut results = Vec::new();
    for kind in [MatMulKind::Dense, MatMulKind::EventDriven] {
        let m = grad_weight_module(steps as u32, F32, Dtype::Spike, kind, n_in as u32, n_out as u32);
        let y = out(&m, &[("g", t32(&[steps, batch, n_out], &g)), ("x", t32(&[steps, batch, n_in], &x))]);
        results.push(y.data);
    }
    assert_bits(&results[0], &results[1]);
    // The dense f32 formula, summed in row order (NaN where inf meets 0).
    let mut want = vec![0.0f32; n_out * n_in];
    for r in 0..rows {
        for o in 0..n_out {
            for i in 0..n_in {
                want[o * n_in + i] += g[r * n_out + o] * x[r * n_in + i];
            }
        }
    }
    assert!(want.iter().any(|v| v.is_nan()));
    assert_bits(&results[0], &want.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
}

#[test]
fn sum_to_sums_the_leading_dims() {
    let (steps, batch, n) = (3usize, 2usize, 4usize);
    let x = ramp(steps * batch * n);
    let ty = Type::seq(F64, bt(&[n as u32]));
    // To [n]: over time and batch.
    let m = seq_module(steps as u32, F64, &[("x", ty.clone())], |b, h| {
        b.emit(Op::SumTo { arg: h[0], shape: f(&[n as u32]) }).unwrap()
    });
    let y = out(&m, &[("x", t64(&[steps, batch, n], x.clone()))]);
    assert_eq!(y.shape, vec![n]);
    let want: Vec<f64> = (0..n).map(|k| (0..steps * batch).fold(0.0, |acc, r| acc + x[r * n + k])).collect();
    assert_bits(&y.data, &want);
    // To [B, n]: over time only.
    let m = seq_module(steps as u32, F64, &[("x", ty)], |b, h| {
        b.emit(Op::SumTo { arg: h[0], shape: bt(&[n as u32]) }).unwrap()
    });
    let y = out(&m, &[("x", t64(&[steps, batch, n], x.clone()))]);
    assert_eq!(y.shape, vec![batch, n]);
    let want: Vec<f64> = (0..batch * n).map(|k| (0..steps).fold(0.0, |acc, t| acc + x[t * batch * n + k])).collect();
    assert_bits(&y.data, &want);
    // A spike operand gives the module's float.
    let m = seq_module(steps as u32, F32, &[("x", Type::seq(Dtype::Spike, bt(&[n as u32])))], |b, h| {
        b.emit(Op::SumTo { arg: h[0], shape: f(&[n as u32]) }).unwrap()
    });
    let s: Vec<f32> = (0..steps * batch * n).map(|k| if k % 3 == 0 { 1.0 } else { 0.0 }).collect();
    let y = out(&m, &[("x", t32(&[steps, batch, n], &s))]);
    let want: Vec<f64> = (0..n).map(|k| (0..steps * batch).map(|r| f64::from(s[r * n + k])).sum()).collect();
    assert_bits(&y.data, &want);
}

/// The geometry of the conv tests.
#[derive(Clone, Copy)]
struct Geo {
    steps: usize,
    batch: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    stride: [u32; 2],
    padding: [u32; 2],
}

impl Geo {
    fn out_hw(&self) -> (usize, usize) {
        let oh = (self.h + 2 * self.padding[0] as usize - self.kh) / self.stride[0] as usize + 1;
        let ow = (self.w + 2 * self.padding[1] as usize - self.kw) / self.stride[1] as usize + 1;
        (oh, ow)
    }

    /// The input position read by output `(i, j)` at kernel offset `(a, b)`.
    fn pos(&self, i: usize, j: usize, a: usize, b: usize) -> Option<(usize, usize)> {
        let r = (i * self.stride[0] as usize + a) as isize - self.padding[0] as isize;
        let q = (j * self.stride[1] as usize + b) as isize - self.padding[1] as isize;
        (r >= 0 && (r as usize) < self.h && q >= 0 && (q as usize) < self.w).then_some((r as usize, q as usize))
    }
}

/// Runs conv2d forward and all three gradients on `x`, `w`, `g` (f64).
fn conv_grads(geo: Geo, x: &[f64], w: &[f64], g: &[f64]) -> [Vec<f64>; 4] {
    let Geo { steps, batch, c, h, w: wd, o, kh, kw, stride, padding } = geo;
    let (oh, ow) = geo.out_hw();
    let mut b = Builder::new("conv", steps as u32, 1e-3, F64);
    let xi = b.input("x", Type::seq(F64, bt(&[c as u32, h as u32, wd as u32])));
    let gi = b.input("g", Type::seq(F64, bt(&[o as u32, oh as u32, ow as u32])));
    let wp = b.param(param("w", F64, &[o as u32, c as u32, kh as u32, kw as u32]));
    b.begin_seq();
    let (xn, gn, wn) = (b.emit(Op::Input(xi)).unwrap(), b.emit(Op::Input(gi)).unwrap(), b.emit(Op::Param(wp)).unwrap());
    let y = b
        .emit(Op::Conv2d {
            input: xn,
            weight: wn,
            bias: None,
            stride,
            padding,
            dilation: [1, 1],
            groups: 1,
            kind: MatMulKind::Dense,
        })
        .unwrap();
    let input_size = [h as u32, wd as u32];
    let dx = b
        .emit(Op::Conv2dGradInput { grad: gn, weight: wn, stride, padding, dilation: [1, 1], groups: 1, input_size })
        .unwrap();
    let kernel = [kh as u32, kw as u32];
    let dw = b
        .emit(Op::Conv2dGradWeight {
            grad: gn,
            input: xn,
            kernel,
            stride,
            padding,
            dilation: [1, 1],
            groups: 1,
            kind: MatMulKind::Dense,
        })
        .unwrap();
    let db = b.emit(Op::Conv2dGradBias { grad: gn }).unwrap();
    for (name, v) in [("y", y), ("dx", dx), ("dw", dw), ("db", db)] {
        b.output(name, v);
    }
    let m = b.finish();
    let ws = weights(&[("w", t64(&[o, c, kh, kw], w.to_vec()))]);
    let r = run(
        &m,
        &ws,
        &[("x", t64(&[steps, batch, c, h, wd], x.to_vec())), ("g", t64(&[steps, batch, o, oh, ow], g.to_vec()))],
    );
    assert_eq!(r.outputs["dx"].shape, vec![steps, batch, c, h, wd]);
    assert_eq!(r.outputs["dw"].shape, vec![o, c, kh, kw]);
    assert_eq!(r.outputs["db"].shape, vec![o]);
    ["y", "dx", "dw", "db"].map(|n| r.outputs[n].data.clone())
}

#[test]
fn conv2d_grads_match_the_naive_formulas_and_finite_differences() {
    // Stride 2 and padding 1 over time and batch; then uneven strides and
    // paddings, where the last input row is read by no window.
    for geo in [
        Geo { steps: 2, batch: 3, c: 2, h: 5, w: 6, o: 3, kh: 3, kw: 3, stride: [2, 2], padding: [1, 1] },
        Geo { steps: 1, batch: 2, c: 1, h: 6, w: 3, o: 2, kh: 3, kw: 2, stride: [2, 1], padding: [0, 1] },
    ] {
        let Geo { steps, batch, c, h, w: wd, o, kh, kw, .. } = geo;
        let (oh, ow) = geo.out_hw();
        let n = steps * batch;
        let x = ramp(n * c * h * wd);
        let w: Vec<f64> = ramp(o * c * kh * kw + 5)[5..].to_vec();
        let g: Vec<f64> = ramp(n * o * oh * ow + 11)[11..].iter().map(|v| v * 0.5).collect();
        let [y, dx, dw, db] = conv_grads(geo, &x, &w, &g);

        // Naive formulas, accumulated in f64.
        let mut want_dx = vec![0.0; n * c * h * wd];
        let mut want_dw = vec![0.0; o * c * kh * kw];
        let mut want_db = vec![0.0; o];
        for img in 0..n {
            for oc in 0..o {
                for i in 0..oh {
                    for j in 0..ow {
                        let gv = g[((img * o + oc) * oh + i) * ow + j];
                        want_db[oc] += gv;
                        for ch in 0..c {
                            for a in 0..kh {
                                for bb in 0..kw {
                                    let Some((r, q)) = geo.pos(i, j, a, bb) else { continue };
                                    let xk = ((img * c + ch) * h + r) * wd + q;
                                    let wk = ((oc * c + ch) * kh + a) * kw + bb;
                                    want_dx[xk] += gv * w[wk];
                                    want_dw[wk] += gv * x[xk];
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_close(&dx, &want_dx, 1e-12);
        assert_close(&dw, &want_dw, 1e-12);
        assert_close(&db, &want_db, 1e-12);
        if geo.h == 6 {
            // Windows at stride 2 cover rows 0..=4: row 5 gets no gradient.
            for img in 0..n * c {
                assert!((0..wd).all(|q| dx[(img * h + 5) * wd + q] == 0.0));
            }
        }
        // Finite differences of L = <conv2d(x, w), g> (linear in x and w,
        // so central differences are exact up to rounding).
        let loss = |x: &[f64], w: &[f64]| -> f64 {
            let [y, ..] = conv_grads(geo, x, w, &g);
            y.iter().zip(&g).map(|(a, b)| a * b).sum()
        };
        assert!((loss(&x, &w) - y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()).abs() < 1e-9);
        let eps = 1e-3;
        for k in (0..x.len()).step_by(7) {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[k] += eps;
            xm[k] -= eps;
            let fd = (loss(&xp, &w) - loss(&xm, &w)) / (2.0 * eps);
            assert!((fd - dx[k]).abs() < 1e-7, "dx[{k}]: {fd} vs {}", dx[k]);
        }
        for k in 0..w.len() {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[k] += eps;
            wm[k] -= eps;
            let fd = (loss(&x, &wp) - loss(&x, &wm)) / (2.0 * eps);
            assert!((fd - dw[k]).abs() < 1e-7, "dw[{k}]: {fd} vs {}", dw[k]);
        }
    }
}

fn pool_grad_module(dims: [u32; 2], kernel: [u32; 2], stride: [u32; 2], out_hw: [u32; 2]) -> Module {
    let inputs =
        [("x", Type::new(F64, bt(&[1, dims[0], dims[1]]))), ("g", Type::new(F64, bt(&[1, out_hw[0], out_hw[1]])))];
    seq_module(1, F64, &inputs, |b, n| {
        b.emit(Op::Pool2dGrad { op: PoolOp::Max, input: n[0], grad: n[1], kernel, stride, padding: [0, 0] }).unwrap()
    })
}

#[test]
fn max_pool2d_grad_gives_each_window_to_its_first_maximum_and_overlaps_add() {
    // 3x3 input, 2x2 windows at stride 1 (they overlap).
    #[rustfmt::skip]
    let x = vec![
        1.0, 1.0, 0.0,
        1.0, 1.0, 2.0,
        0.0, 3.0, 3.0,
    ];
    let g = vec![10.0, 20.0, 30.0, 40.0];
    let m = pool_grad_module([3, 3], [2, 2], [1, 1], [2, 2]);
    let y = out(&m, &[("x", t64(&[1, 1, 3, 3], x)), ("g", t64(&[1, 1, 2, 2], g))]);
    // Window (0,0) is all ones: its first element (0,0). Window (0,1):
    // max 2 at (1,2). Window (1,0): max 3 at (2,1). Window (1,1): tie of
    // 3s at (2,1) and (2,2): the first, (2,1), which also got window (1,0).
    #[rustfmt::skip]
    let want = [
        10.0, 0.0, 0.0,
        0.0, 0.0, 20.0,
        0.0, 70.0, 0.0,
    ];
    assert_eq!(y.shape, vec![1, 1, 3, 3]);
    assert_bits(&y.data, &want);

    // Non-overlapping 2x2 windows at stride 2 on a 4x5 input (the last
    // column is in no window), with a NaN: torch takes the NaN.
    #[rustfmt::skip]
    let x = vec![
        5.0, 5.0, 1.0, 2.0, 9.0,
        5.0, 4.0, f64::NAN, 2.0, 9.0,
        -1.0, -1.0, 0.0, 7.0, 9.0,
        -2.0, -1.0, 7.0, 6.0, 9.0,
    ];
    let m = pool_grad_module([4, 5], [2, 2], [2, 2], [2, 2]);
    let y = out(&m, &[("x", t64(&[1, 1, 4, 5], x)), ("g", t64(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]))]);
    #[rustfmt::skip]
    let want = [
        1.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 2.0, 0.0, 0.0,
        3.0, 0.0, 0.0, 4.0, 0.0,
        0.0, 0.0, 0.0, 0.0, 0.0,
    ];
    assert_bits(&y.data, &want);
}

#[test]
fn max_pool2d_grad_has_the_time_flag_and_leading_dims() {
    let (steps, batch) = (2usize, 3usize);
    let inputs = [("x", Type::seq(F64, bt(&[2, 4, 4]))), ("g", Type::seq(F64, bt(&[2, 2, 2])))];
    let m = seq_module(steps as u32, F64, &inputs, |b, n| {
        b.emit(Op::Pool2dGrad {
            op: PoolOp::Max,
            input: n[0],
            grad: n[1],
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        })
        .unwrap()
    });
    let lead = steps * batch * 2;
    let x = ramp(lead * 16);
    let g = ramp(lead * 4 + 1)[1..].to_vec();
    let y =
        out(&m, &[("x", t64(&[steps, batch, 2, 4, 4], x.clone())), ("g", t64(&[steps, batch, 2, 2, 2], g.clone()))]);
    assert_eq!(y.shape, vec![steps, batch, 2, 4, 4]);
    let mut want = vec![0.0; lead * 16];
    for l in 0..lead {
        for i in 0..2 {
            for j in 0..2 {
                let mut best = None;
                for a in 0..2 {
                    for bb in 0..2 {
                        let k = l * 16 + (2 * i + a) * 4 + 2 * j + bb;
                        if best.is_none_or(|bk: usize| x[k] > x[bk]) {
                            best = Some(k);
                        }
                    }
                }
                want[best.unwrap()] += g[l * 4 + i * 2 + j];
            }
        }
    }
    assert_bits(&y.data, &want);
}

fn reduce_grad(op: ReduceOp, steps: usize, x: Vec<f64>, g: Vec<f64>) -> Tensor {
    let inputs = [("x", Type::seq(F64, bt(&[2]))), ("g", Type::new(F64, bt(&[2])))];
    let m = seq_module(steps as u32, F64, &inputs, |b, n| {
        b.emit(Op::ReduceTimeGrad { op, arg: n[0], grad: n[1] }).unwrap()
    });
    out(&m, &[("x", t64(&[steps, 1, 2], x)), ("g", t64(&[1, 2], g))])
}

#[test]
fn reduce_time_grad_of_every_reduction() {
    // x[t, 0, k]: element 0 is [5, 5, 1] (a tie at t = 0 and 1: the first
    // wins), element 1 is [1, 3, 3] (max first at t = 1).
    let x = vec![5.0, 1.0, 5.0, 3.0, 1.0, 3.0];
    let g = vec![2.0, -6.0];
    let sum = reduce_grad(ReduceOp::Sum, 3, x.clone(), g.clone());
    assert_eq!(sum.shape, vec![3, 1, 2]);
    assert_bits(&sum.data, &[2.0, -6.0, 2.0, -6.0, 2.0, -6.0]);
    let mean = reduce_grad(ReduceOp::Mean, 3, x.clone(), g.clone());
    assert_bits(&mean.data, &[2.0 / 3.0, -2.0, 2.0 / 3.0, -2.0, 2.0 / 3.0, -2.0]);
    let last = reduce_grad(ReduceOp::Last, 3, x.clone(), g.clone());
    assert_bits(&last.data, &[0.0, 0.0, 0.0, 0.0, 2.0, -6.0]);
    let max = reduce_grad(ReduceOp::Max, 3, x, g.clone());
    assert_bits(&max.data, &[2.0, 0.0, 0.0, -6.0, 0.0, 0.0]);
    // NaN: torch.max returns the first NaN step.
    let x = vec![1.0, 7.0, f64::NAN, 7.0, f64::NAN, 8.0];
    let max = reduce_grad(ReduceOp::Max, 3, x, g);
    assert_bits(&max.data, &[0.0, 0.0, 2.0, 0.0, 0.0, -6.0]);
}

#[test]
fn log_softmax_grad_is_grad_minus_softmax_times_the_sum() {
    let (batch, n) = (3usize, 5usize);
    let inputs = [("x", Type::new(F64, bt(&[n as u32]))), ("g", Type::new(F64, bt(&[n as u32])))];
    let m = seq_module(1, F64, &inputs, |b, h| {
        let ls = b.emit(Op::LogSoftmax { arg: h[0] }).unwrap();
        b.name(ls, "ls");
        b.emit(Op::LogSoftmaxGrad { out: ls, grad: h[1] }).unwrap()
    });
    let x = ramp(batch * n);
    let g = ramp(batch * n + 2)[2..].to_vec();
    let r = run_with(
        &m,
        &Weights::new(),
        &[("x", t64(&[batch, n], x.clone())), ("g", t64(&[batch, n], g.clone()))],
        &RunOptions { record: true, ..Default::default() },
    )
    .unwrap();
    let ls = &r.traces["ls"].data;
    let y = &r.outputs["y"].data;
    for row in 0..batch {
        let gr = &g[row * n..(row + 1) * n];
        let s = gr.iter().fold(0.0, |s, v| s + v);
        let want: Vec<f64> = (0..n).map(|i| gr[i] - ls[row * n + i].exp() * s).collect();
        assert_bits(&y[row * n..(row + 1) * n], &want);
        // The gradient of a log-softmax sums to 0 over the row.
        assert!(y[row * n..(row + 1) * n].iter().sum::<f64>().abs() < 1e-12);
        // Finite differences of L = <log_softmax(x), g>.
        let loss = |xr: &[f64]| -> f64 {
            let mx = xr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = xr.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
            xr.iter().zip(gr).map(|(v, gv)| ((v - mx) - lse) * gv).sum()
        };
        let xr = &x[row * n..(row + 1) * n];
        for i in 0..n {
            let (mut xp, mut xm) = (xr.to_vec(), xr.to_vec());
            xp[i] += 1e-5;
            xm[i] -= 1e-5;
            let fd = (loss(&xp) - loss(&xm)) / 2e-5;
            assert!((fd - y[row * n + i]).abs() < 1e-8, "{fd} vs {}", y[row * n + i]);
        }
    }
}

/// `acc' = acc + x_t` in a step loop, reversed or not; collects `acc'`,
/// the step value and a uniform draw.
fn accumulator(steps: u32, float: Dtype, reverse: bool) -> Module {
    let mut b = Builder::new("acc", steps, 1e-3, float);
    let xin = b.input("x", Type::seq(float, bt(&[2])));
    let s = b.state("acc", Type::new(float, bt(&[2])), StateInit::Fill(0.5));
    b.begin_seq();
    let x = b.emit(Op::Input(xin)).unwrap();
    b.begin_step();
    let xt = b.emit(Op::Step(x)).unwrap();
    b.name(xt, "xt");
    let a = b.state_read(s).unwrap();
    b.name(a, "before");
    let a2 = b.add(a, xt).unwrap();
    b.name(a2, "after");
    b.state_write(s, a2).unwrap();
    let u = b.emit(Op::Uniform { seed: 7, shape: f(&[3]), seq: false }).unwrap();
    b.begin_seq();
    let acc = b.emit(Op::Collect(a2)).unwrap();
    b.output("acc", acc);
    let xs = b.emit(Op::Collect(xt)).unwrap();
    b.output("xs", xs);
    let us = b.emit(Op::Collect(u)).unwrap();
    b.output("u", us);
    let mut m = b.finish();
    m.body[1].reverse = reverse;
    m
}

#[test]
fn reverse_step_loop_runs_backwards_and_stores_rows_at_t() {
    let steps = 4usize;
    let x: Vec<f64> = (0..steps * 2).map(|k| (k + 1) as f64).collect();
    let fwd = accumulator(steps as u32, F64, false);
    let rev = accumulator(steps as u32, F64, true);
    assert!(snnc_ir::print(&rev).contains("reverse"));
    validate(&rev).unwrap();
    let opts = RunOptions { record: true, ..Default::default() };
    let rf = run_with(&fwd, &Weights::new(), &[("x", t64(&[steps, 1, 2], x.clone()))], &opts).unwrap();
    let rr = run_with(&rev, &Weights::new(), &[("x", t64(&[steps, 1, 2], x.clone()))], &opts).unwrap();
    // Forward: prefix sums; reverse: suffix sums, each at its row t.
    let mut pre = Vec::new();
    let mut suf = vec![0.0; steps * 2];
    for k in 0..2 {
        let mut acc = 0.5;
        for t in 0..steps {
            acc += x[t * 2 + k];
            pre.push((t, k, acc));
        }
        let mut acc = 0.5;
        for t in (0..steps).rev() {
            acc += x[t * 2 + k];
            suf[t * 2 + k] = acc;
        }
    }
    let mut want_pre = vec![0.0; steps * 2];
    for (t, k, v) in pre {
        want_pre[t * 2 + k] = v;
    }
    assert_bits(&rf.outputs["acc"].data, &want_pre);
    assert_bits(&rr.outputs["acc"].data, &suf);
    assert_eq!(rr.outputs["acc"].shape, vec![steps, 1, 2]);
    // `step` reads row t and `collect` stores row t: the input comes back.
    assert_bits(&rr.outputs["xs"].data, &x);
    assert_bits(&rr.traces["xt"].data, &x);
    // Uniform uses t, so both directions draw the same numbers per row.
    assert_bits(&rr.outputs["u"].data, &rf.outputs["u"].data);
    // The state read at t = T-1 is the initial value; at t it is the
    // value written at t + 1.
    let before = &rr.traces["before"].data;
    assert_bits(&before[(steps - 1) * 2..], &[0.5, 0.5]);
    for t in 0..steps - 1 {
        assert_bits(&before[t * 2..t * 2 + 2], &suf[(t + 1) * 2..(t + 2) * 2]);
    }
    assert_bits(&rr.traces["after"].data, &suf);
    // The final state is what the last iteration (t = 0) wrote.
    assert_bits(&rr.final_state["acc"].data, &suf[..2]);
}

#[test]
fn backward_ops_run_inside_a_reverse_step_loop() {
    // Per step: dW += matmul_grad_weight(g_t, x_t) through a state, and the
    // log-softmax gradient of a per-step value, collected.
    let (steps, batch, n_in, n_out) = (3usize, 2usize, 3usize, 2usize);
    let mut b = Builder::new("bwd", steps as u32, 1e-3, F64);
    let gi = b.input("g", Type::seq(F64, bt(&[n_out as u32])));
    let xi = b.input("x", Type::seq(Dtype::Spike, bt(&[n_in as u32])));
    let s = b.state("dw", Type::new(F64, f(&[n_out as u32, n_in as u32])), StateInit::Fill(0.0));
    b.begin_seq();
    let (g, x) = (b.emit(Op::Input(gi)).unwrap(), b.emit(Op::Input(xi)).unwrap());
    b.begin_step();
    let (gt, xt) = (b.emit(Op::Step(g)).unwrap(), b.emit(Op::Step(x)).unwrap());
    let dw = b.state_read(s).unwrap();
    let step_dw = b.emit(Op::MatMulGradWeight { grad: gt, input: xt, kind: MatMulKind::EventDriven }).unwrap();
    let dw2 = b.add(dw, step_dw).unwrap();
    b.state_write(s, dw2).unwrap();
    let ls = b.emit(Op::LogSoftmax { arg: gt }).unwrap();
    let lg = b.emit(Op::LogSoftmaxGrad { out: ls, grad: gt }).unwrap();
    b.begin_seq();
    let lgs = b.emit(Op::Collect(lg)).unwrap();
    b.output("lg", lgs);
    let mut m = b.finish();
    m.body[1].reverse = true;
    let gv = ramp(steps * batch * n_out);
    let xv: Vec<f64> = (0..steps * batch * n_in).map(|k| f64::from(u8::from(k % 3 != 1))).collect();
    let r = run(
        &m,
        &Weights::new(),
        &[("g", t64(&[steps, batch, n_out], gv.clone())), ("x", t64(&[steps, batch, n_in], xv.clone()))],
    );
    // dW summed in reverse step order (t = 2, 1, 0), each step's own sum
    // over the batch from +0.
    let mut want = vec![0.0; n_out * n_in];
    for t in (0..steps).rev() {
        let rows = &naive_grad_weight(&gv[t * batch * n_out..], &xv[t * batch * n_in..], batch, n_in, n_out);
        for (w, d) in want.iter_mut().zip(rows) {
            *w += d;
        }
    }
    assert_bits(&r.final_state["dw"].data, &want);
    // Row t of the collected log-softmax gradient is that of g[t].
    for t in 0..steps {
        for bi in 0..batch {
            let row = &gv[(t * batch + bi) * n_out..(t * batch + bi + 1) * n_out];
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = row.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
            let s: f64 = row.iter().sum();
            for (i, v) in row.iter().enumerate() {
                let want = v - ((v - mx) - lse).exp() * s;
                let got = r.outputs["lg"].data[(t * batch + bi) * n_out + i];
                assert!((got - want).abs() < 1e-12);
            }
        }
    }
}
