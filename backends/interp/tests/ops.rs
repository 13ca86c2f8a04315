//! Exact numbers of every op, checked against direct Rust computations.

mod common;

use common::*;
use snnc_interp::RunOptions;
use snnc_ir::{
    BinaryOp, Builder, CompareOp, Dtype, MatMulKind, Op, PoolOp, ReduceOp, Shape, StateInit, Surrogate, Type, UnaryOp,
};
use snnc_runtime::{ElemType, Weights};

const F32: Dtype = Dtype::F32;
const F64: Dtype = Dtype::F64;

/// One LIF neuron per sample, as Norse's `lif_feed_forward_step`:
/// `v' = v + a((v_leak - v) + i)`, `i' = i + b i`, `z = H(v' - v_th)`,
/// `v'' = (1 - z) v' + z v_reset`, `i'' = i' + x`.
fn lif_module(steps: u32, float: Dtype) -> snnc_ir::Module {
    let mut b = Builder::new("lif", steps, 1e-3, float);
    let per_step = Type::new(float, Shape::batched(&[1]));
    let xin = b.input("x", Type::seq(float, Shape::batched(&[1])));
    let sv = b.state("lif.v", per_step.clone(), StateInit::Fill(0.0));
    let si = b.state("lif.i", per_step, StateInit::Fill(0.0));
    b.begin_seq();
    let x = b.emit(Op::Input(xin)).unwrap();
    b.begin_step();
    let xt = b.emit(Op::Step(x)).unwrap();
    let v = b.state_read(sv).unwrap();
    let i = b.state_read(si).unwrap();
    let a = b.constant(0.1).unwrap();
    let v_leak = b.constant(0.0).unwrap();
    let leak = b.sub(v_leak, v).unwrap();
    let drive = b.add(leak, i).unwrap();
    let dv = b.mul(a, drive).unwrap();
    let v_dec = b.add(v, dv).unwrap();
    let bneg = b.constant(-0.2).unwrap();
    let di = b.mul(bneg, i).unwrap();
    let i_dec = b.add(i, di).unwrap();
    let v_th = b.constant(1.0).unwrap();
    let over = b.sub(v_dec, v_th).unwrap();
    let z = b.threshold(over, Surrogate::SuperSpike).unwrap();
    b.name(z, "lif.z");
    let zd = b.emit(Op::StopGradient(z)).unwrap();
    let one = b.constant(1.0).unwrap();
    let keep = b.sub(one, zd).unwrap();
    let kept = b.mul(keep, v_dec).unwrap();
    let v_reset = b.constant(0.0).unwrap();
    let reset = b.mul(zd, v_reset).unwrap();
    let v_new = b.add(kept, reset).unwrap();
    b.name(v_new, "lif.v");
    let i_new = b.add(i_dec, xt).unwrap();
    b.state_write(sv, v_new).unwrap();
    b.state_write(si, i_new).unwrap();
    b.begin_seq();
    let zs = b.emit(Op::Collect(z)).unwrap();
    b.output("z", zs);
    let vs = b.emit(Op::Collect(v_new)).unwrap();
    b.name(vs, "v_seq");
    b.output("v", vs);
    b.finish()
}

#[test]
fn lif_neuron_matches_a_hand_written_f32_loop_bitwise() {
    let (steps, batch) = (50usize, 3usize);
    let m = lif_module(steps as u32, F32);
    let x: Vec<f32> = (0..steps * batch).map(|k| 0.7 + 0.31 * (k % 7) as f32 - 0.05 * (k % batch) as f32).collect();
    let opts = RunOptions { record: true, ..Default::default() };
    let r = run_with(&m, &Weights::new(), &[("x", t32(&[steps, batch, 1], &x))], &opts).unwrap();

    let (mut zs, mut vs) = (Vec::new(), Vec::new());
    let (mut v, mut i) = ([0.0f32; 3], [0.0f32; 3]);
    for t in 0..steps {
        for n in 0..batch {
            let v_dec = v[n] + 0.1f32 * ((0.0f32 - v[n]) + i[n]);
            let i_dec = i[n] + -0.2f32 * i[n];
            let z = if v_dec - 1.0f32 > 0.0 { 1.0f32 } else { 0.0 };
            v[n] = (1.0f32 - z) * v_dec + z * 0.0f32;
            i[n] = i_dec + x[t * batch + n];
            zs.push(f64::from(z));
            vs.push(f64::from(v[n]));
        }
    }
    assert!(zs.iter().sum::<f64>() > 5.0, "the test should spike");
    let out = &r.outputs["z"];
    assert_eq!((out.shape.clone(), out.dtype), (vec![steps, batch, 1], ElemType::F32));
    assert_bits(&out.data, &zs);
    assert_bits(&r.outputs["v"].data, &vs);
    assert_bits(&r.final_state["lif.v"].data, &v.map(f64::from));
    assert_bits(&r.final_state["lif.i"].data, &i.map(f64::from));
    // Traces: step-loop nodes stacked over time, sequence nodes as they are.
    assert_eq!(r.traces.keys().collect::<Vec<_>>(), ["lif.v", "lif.z", "v_seq"]);
    assert_eq!(r.traces["lif.z"].shape, vec![steps, batch, 1]);
    assert_bits(&r.traces["lif.z"].data, &zs);
    assert_bits(&r.traces["lif.v"].data, &vs);
    assert_eq!(r.traces["v_seq"].shape, vec![steps, batch, 1]);
}

#[test]
fn without_record_there_are_no_traces() {
    let m = lif_module(4, F32);
    let r = run(&m, &Weights::new(), &[("x", t32(&[4, 2, 1], &[1.0; 8]))]);
    assert!(r.traces.is_empty());
    assert_eq!(r.final_state["lif.v"].shape, vec![2, 1]);
}

#[test]
fn initial_state_overrides_the_init() {
    let m = lif_module(1, F64);
    let mut opts = RunOptions::default();
    opts.initial_state.insert("lif.v".into(), t64(&[2, 1], vec![0.5, 2.0]));
    opts.initial_state.insert("lif.i".into(), t64(&[2, 1], vec![1.0, 0.0]));
    let r = run_with(&m, &Weights::new(), &[("x", t64(&[1, 2, 1], vec![0.25, 0.0]))], &opts).unwrap();
    // v' = v + 0.1 ((0 - v) + i); sample 1: 2.0 - 0.2 = 1.8 spikes and resets.
    let v0 = 0.5 + 0.1 * ((0.0 - 0.5) + 1.0);
    assert_bits(&r.outputs["z"].data, &[0.0, 1.0]);
    assert_bits(&r.final_state["lif.v"].data, &[v0, 0.0]);
    assert_bits(&r.final_state["lif.i"].data, &[1.0 + -0.2 * 1.0 + 0.25, 0.0]);
}

#[test]
fn state_writes_become_visible_at_the_next_step() {
    // s counts steps: read s, write s + 1, and output the value read.
    let mut b = Builder::new("count", 5, 1e-3, F64);
    let s = b.state("s", Type::new(F64, Shape::batched(&[2])), StateInit::Fill(10.0));
    let xin = b.input("x", Type::new(F64, Shape::batched(&[2])));
    b.begin_seq();
    let _x = b.emit(Op::Input(xin)).unwrap();
    b.begin_step();
    let r = b.state_read(s).unwrap();
    let one = b.constant(1.0).unwrap();
    let next = b.add(r, one).unwrap();
    let w = b.state_write(s, next).unwrap();
    b.begin_seq();
    let reads = b.emit(Op::Collect(r)).unwrap();
    let writes = b.emit(Op::Collect(w)).unwrap();
    b.output("reads", reads);
    b.output("writes", writes);
    let m = b.finish();
    let r = run(&m, &Weights::new(), &[("x", t64(&[1, 2], vec![0.0, 0.0]))]);
    assert_eq!(r.outputs["reads"].data, [10., 10., 11., 11., 12., 12., 13., 13., 14., 14.]);
    assert_eq!(r.outputs["writes"].data, [11., 11., 12., 12., 13., 13., 14., 14., 15., 15.]);
    assert_eq!(r.final_state["s"].data, [15., 15.]);
}

#[test]
fn f32_runs_round_after_every_op_and_f64_runs_do_not() {
    for float in [F32, F64] {
        let mut b = Builder::new("round", 1, 1e-3, float);
        let xin = b.input("x", Type::new(float, Shape::batched(&[1])));
        let x = b.emit(Op::Input(xin)).unwrap();
        let big = b.constant(1e8).unwrap();
        let s = b.add(x, big).unwrap();
        let d = b.sub(s, big).unwrap();
        b.output("d", d);
        let m = b.finish();
        let r = run(&m, &Weights::new(), &[("x", t64(&[1, 1], vec![3.0]))]);
        let want = if float == F32 { f64::from((3.0f32 + 1e8f32) - 1e8f32) } else { 3.0 };
        assert_eq!(r.outputs["d"].data, [want]);
        assert_eq!(r.outputs["d"].dtype, if float == F32 { ElemType::F32 } else { ElemType::F64 });
    }
    assert_ne!(f64::from((3.0f32 + 1e8f32) - 1e8f32), 3.0);
}

#[test]
fn inputs_are_rounded_to_the_module_float_and_casts_round_to_f32() {
    let mut b = Builder::new("cast", 1, 1e-3, F64);
    let xin = b.input("x", Type::new(F64, Shape::batched(&[2])));
    let x = b.emit(Op::Input(xin)).unwrap();
    let c = b.emit(Op::Cast { arg: x, dtype: F32 }).unwrap();
    let back = b.emit(Op::Cast { arg: c, dtype: F64 }).unwrap();
    b.output("x", x);
    b.output("c", back);
    let m = b.finish();
    let r = run(&m, &Weights::new(), &[("x", t64(&[1, 2], vec![0.1, 1.0 / 3.0]))]);
    assert_eq!(r.outputs["x"].data, [0.1, 1.0 / 3.0]);
    assert_eq!(r.outputs["c"].data, [f64::from(0.1f32), f64::from(1.0f32 / 3.0)]);

    let m32 = {
        let mut b = Builder::new("in32", 1, 1e-3, F32);
        let xin = b.input("x", Type::new(F32, Shape::batched(&[1])));
        let x = b.emit(Op::Input(xin)).unwrap();
        b.output("x", x);
        b.finish()
    };
    let r = run(&m32, &Weights::new(), &[("x", t64(&[1, 1], vec![0.1]))]);
    assert_eq!(r.outputs["x"].data, [f64::from(0.1f32)]);
}

#[test]
fn binary_compare_and_select_broadcast_by_suffix() {
    let (steps, batch) = (2usize, 2usize);
    let mut b = Builder::new("bcast", steps as u32, 1e-3, F64);
    let xin = b.input("x", Type::seq(F64, Shape::batched(&[2, 3])));
    let sin = b.input("s", Type::new(F64, Shape::batched(&[2, 3])));
    let p3 = b.param(param("p3", F64, &[3]));
    let p23 = b.param(param("p23", F64, &[2, 3]));
    b.begin_seq();
    let x = b.emit(Op::Input(xin)).unwrap();
    let s = b.emit(Op::Input(sin)).unwrap();
    let w3 = b.emit(Op::Param(p3)).unwrap();
    let w23 = b.emit(Op::Param(p23)).unwrap();
    let c = b.constant(0.5).unwrap();
    let xw = b.mul(x, w3).unwrap();
    let y = b.binary(BinaryOp::Sub, xw, c).unwrap();
    let y2 = b.binary(BinaryOp::Div, w23, x).unwrap();
    let y3 = b.binary(BinaryOp::Max, s, w3).unwrap();
    let gt = b.compare(CompareOp::Gt, x, w23).unwrap();
    let sel = b.emit(Op::Select { cond: gt, on_true: x, on_false: c }).unwrap();
    let cmp_scalar = b.compare(CompareOp::Le, c, s).unwrap();
    b.begin_step();
    let xt = b.emit(Op::Step(x)).unwrap();
    let diff = b.sub(xt, s).unwrap();
    b.begin_seq();
    let diffs = b.emit(Op::Collect(diff)).unwrap();
    for (name, h) in [("y", y), ("y2", y2), ("y3", y3), ("gt", gt), ("sel", sel), ("le", cmp_scalar), ("diff", diffs)] {
        b.output(name, h);
    }
    let m = b.finish();

    let xs = ramp(steps * batch * 6);
    let ss: Vec<f64> = ramp(batch * 6 + 3)[3..].to_vec();
    let p3v = vec![0.5, -1.25, 2.0];
    let p23v = vec![0.1, -0.2, 0.3, 1.5, -2.5, 0.0];
    let w = weights(&[("p3", t64(&[3], p3v.clone())), ("p23", t64(&[2, 3], p23v.clone()))]);
    let r = run(&m, &w, &[("x", t64(&[steps, batch, 2, 3], xs.clone())), ("s", t64(&[batch, 2, 3], ss.clone()))]);

    let n = xs.len();
    let want_y: Vec<f64> = (0..n).map(|i| xs[i] * p3v[i % 3] - 0.5).collect();
    let want_y2: Vec<f64> = (0..n).map(|i| p23v[i % 6] / xs[i]).collect();
    let want_y3: Vec<f64> = (0..ss.len()).map(|i| ss[i].max(p3v[i % 3])).collect();
    let want_gt: Vec<f64> = (0..n).map(|i| f64::from(u8::from(xs[i] > p23v[i % 6]))).collect();
    let want_sel: Vec<f64> = (0..n).map(|i| if xs[i] > p23v[i % 6] { xs[i] } else { 0.5 }).collect();
    let want_le: Vec<f64> = ss.iter().map(|&v| f64::from(u8::from(0.5 <= v))).collect();
    let want_diff: Vec<f64> = (0..n).map(|i| xs[i] - ss[i % ss.len()]).collect();
    assert_bits(&r.outputs["y"].data, &want_y);
    assert_bits(&r.outputs["y2"].data, &want_y2);
    assert_bits(&r.outputs["y3"].data, &want_y3);
    assert_bits(&r.outputs["gt"].data, &want_gt);
    assert_bits(&r.outputs["sel"].data, &want_sel);
    assert_bits(&r.outputs["le"].data, &want_le);
    assert_bits(&r.outputs["diff"].data, &want_diff);
    assert_eq!(r.outputs["y"].shape, vec![steps, batch, 2, 3]);
    assert_eq!(r.outputs["y3"].shape, vec![batch, 2, 3]);
    assert_eq!(r.outputs["le"].shape, vec![batch, 2, 3]);
    assert_eq!(r.outputs["gt"].dtype, ElemType::F64);
}

#[test]
fn unary_ops_and_nan_handling() {
    let mut b = Builder::new("unary", 1, 1e-3, F64);
    let xin = b.input("x", Type::new(F64, Shape::batched(&[6])));
    let x = b.emit(Op::Input(xin)).unwrap();
    for op in UnaryOp::ALL {
        let y = b.unary(op, x).unwrap();
        b.output(op.name(), y);
    }
    let c = b.constant(1.0).unwrap();
    let mx = b.binary(BinaryOp::Max, x, c).unwrap();
    let mn = b.binary(BinaryOp::Min, x, c).unwrap();
    let th = b.threshold(x, Surrogate::Heaviside).unwrap();
    let eq = b.compare(CompareOp::Eq, x, x).unwrap();
    for (name, h) in [("max", mx), ("min", mn), ("threshold", th), ("eq", eq)] {
        b.output(name, h);
    }
    let m = b.finish();
    let xs = vec![-2.0, -0.0, 0.0, 0.5, f64::NAN, f64::INFINITY];
    let r = run(&m, &Weights::new(), &[("x", t64(&[1, 6], xs.clone()))]);
    let f = |name: &str, g: fn(f64) -> f64| {
        let want: Vec<f64> = xs.iter().map(|&v| g(v)).collect();
        assert_bits(&r.outputs[name].data, &want);
    };
    f("neg", |v| -v);
    f("abs", f64::abs);
    f("exp", f64::exp);
    f("log", f64::ln);
    f("tanh", f64::tanh);
    f("sqrt", f64::sqrt);
    assert_bits(&r.outputs["relu"].data, &[0.0, -0.0, 0.0, 0.5, f64::NAN, f64::INFINITY]);
    assert_bits(&r.outputs["max"].data, &[1.0, 1.0, 1.0, 1.0, f64::NAN, f64::INFINITY]);
    assert_bits(&r.outputs["min"].data, &[-2.0, -0.0, 0.0, 0.5, f64::NAN, 1.0]);
    assert_bits(&r.outputs["threshold"].data, &[0.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
    assert_bits(&r.outputs["eq"].data, &[1.0, 1.0, 1.0, 1.0, 0.0, 1.0]);
}

#[test]
fn matmul_sums_in_order_and_event_driven_gives_the_same_numbers() {
    let (steps, batch, n_in, n_out) = (3usize, 2usize, 5usize, 4usize);
    let mut b = Builder::new("mm", steps as u32, 1e-3, F32);
    let xin = b.input("x", Type::seq(F32, Shape::batched(&[n_in as u32])));
    let pw = b.param(param("w", F32, &[n_out as u32, n_in as u32]));
    b.begin_seq();
    let x = b.emit(Op::Input(xin)).unwrap();
    let w = b.emit(Op::Param(pw)).unwrap();
    let dense = b.emit(Op::MatMul { input: x, weight: w, kind: MatMulKind::Dense }).unwrap();
    let z = b.threshold(x, Surrogate::SuperSpike).unwrap();
    let zf = b.emit(Op::Cast { arg: z, dtype: F32 }).unwrap();
    let zd = b.emit(Op::MatMul { input: zf, weight: w, kind: MatMulKind::Dense }).unwrap();
    let ze = b.emit(Op::MatMul { input: z, weight: w, kind: MatMulKind::EventDriven }).unwrap();
    // The same matmul per step inside a step loop.
    b.begin_step();
    let xt = b.emit(Op::Step(x)).unwrap();
    let wt = b.emit(Op::Param(pw)).unwrap();
    let yt = b.emit(Op::MatMul { input: xt, weight: wt, kind: MatMulKind::Dense }).unwrap();
    b.begin_seq();
    let ys = b.emit(Op::Collect(yt)).unwrap();
    for (name, h) in [("dense", dense), ("spike_dense", zd), ("spike_event", ze), ("stepped", ys)] {
        b.output(name, h);
    }
    let m = b.finish();

    let xs: Vec<f32> = ramp(steps * batch * n_in).iter().map(|&v| v as f32).collect();
    let mut ws: Vec<f32> = ramp(n_out * n_in + 7)[7..].iter().map(|&v| (v * 0.3) as f32).collect();
    let w = weights(&[("w", t32(&[n_out, n_in], &ws))]);
    let r = run(&m, &w, &[("x", t32(&[steps, batch, n_in], &xs))]);
    let reference = |x: &[f32], ws: &[f32]| -> Vec<f64> {
        let mut out = Vec::new();
        for row in x.chunks(n_in) {
            for o in 0..n_out {
                let mut acc = 0.0f32;
                for k in 0..n_in {
                    acc += row[k] * ws[o * n_in + k];
                }
                out.push(f64::from(acc));
            }
        }
        out
    };
    let want = reference(&xs, &ws);
    assert_eq!(r.outputs["dense"].shape, vec![steps, batch, n_out]);
    assert_bits(&r.outputs["dense"].data, &want);
    assert_bits(&r.outputs["stepped"].data, &want);
    let spikes: Vec<f32> = xs.iter().map(|&v| if v > 0.0 { 1.0 } else { 0.0 }).collect();
    assert_bits(&r.outputs["spike_dense"].data, &reference(&spikes, &ws));
    assert_bits(&r.outputs["spike_event"].data, &r.outputs["spike_dense"].data);

    // An infinite weight meets zero inputs too: 0 * inf = NaN, for both kinds.
    ws[2] = f32::INFINITY;
    let w = weights(&[("w", t32(&[n_out, n_in], &ws))]);
    let r = run(&m, &w, &[("x", t32(&[steps, batch, n_in], &xs))]);
    assert_bits(&r.outputs["spike_event"].data, &reference(&spikes, &ws));
    assert_bits(&r.outputs["spike_dense"].data, &reference(&spikes, &ws));
    assert!(r.outputs["spike_event"].data.iter().any(|v| v.is_nan()));
}

/// Naive NCHW cross-correlation in f64 with the interpreter's order.
#[allow(clippy::too_many_arguments)]
fn conv_reference(
    x: &[f64],
    [n, c, h, w]: [usize; 4],
    wt: &[f64],
    [o, kh, kw]: [usize; 3],
    bias: &[f64],
    stride: [usize; 2],
    pad: [usize; 2],
) -> Vec<f64> {
    let oh = (h + 2 * pad[0] - kh) / stride[0] + 1;
    let ow = (w + 2 * pad[1] - kw) / stride[1] + 1;
    let mut out = Vec::new();
    for ni in 0..n {
        for oi in 0..o {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0.0;
                    for ci in 0..c {
                        for a in 0..kh {
                            for bb in 0..kw {
                                let r = (i * stride[0] + a) as isize - pad[0] as isize;
                                let q = (j * stride[1] + bb) as isize - pad[1] as isize;
                                let xv = if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < w {
                                    x[((ni * c + ci) * h + r as usize) * w + q as usize]
                                } else {
                                    0.0
                                };
                                acc += xv * wt[((oi * c + ci) * kh + a) * kw + bb];
                            }
                        }
                    }
                    out.push(acc + bias[oi]);
                }
            }
        }
    }
    out
}

#[test]
fn conv2d_matches_a_naive_reference() {
    let (steps, batch) = (2usize, 2usize);
    let (c, h, w, o, kh, kw) = (2usize, 5usize, 4usize, 3usize, 3usize, 2usize);
    let mut b = Builder::new("conv", steps as u32, 1e-3, F64);
    let xin = b.input("x", Type::new(F64, Shape::batched(&[c as u32, h as u32, w as u32])));
    let sin = b.input("xs", Type::seq(F64, Shape::batched(&[c as u32, h as u32, w as u32])));
    let pw = b.param(param("w", F64, &[o as u32, c as u32, kh as u32, kw as u32]));
    let pb = b.param(param("b", F64, &[o as u32]));
    b.begin_seq();
    let x = b.emit(Op::Input(xin)).unwrap();
    let xs = b.emit(Op::Input(sin)).unwrap();
    let wt = b.emit(Op::Param(pw)).unwrap();
    let bias = b.emit(Op::Param(pb)).unwrap();
    let y = b
        .emit(Op::Conv2d {
            input: x,
            weight: wt,
            bias: Some(bias),
            stride: [2, 1],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
            kind: MatMulKind::Dense,
        })
        .unwrap();
    let yn = b
        .emit(Op::Conv2d {
            input: x,
            weight: wt,
            bias: None,
            stride: [1, 3],
            padding: [0, 2],
            dilation: [1, 1],
            groups: 1,
            kind: MatMulKind::Dense,
        })
        .unwrap();
    let ys = b
        .emit(Op::Conv2d {
            input: xs,
            weight: wt,
            bias: Some(bias),
            stride: [2, 1],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
            kind: MatMulKind::Dense,
        })
        .unwrap();
    b.output("y", y);
    b.output("y_nobias", yn);
    b.output("y_seq", ys);
    let m = b.finish();

    let xv = ramp(batch * c * h * w);
    let xsv = ramp(steps * batch * c * h * w + 5)[5..].to_vec();
    let wv: Vec<f64> = ramp(o * c * kh * kw + 11)[11..].to_vec();
    let bv = vec![0.25, -1.5, 3.0];
    let wts = weights(&[("w", t64(&[o, c, kh, kw], wv.clone())), ("b", t64(&[o], bv.clone()))]);
    let r =
        run(&m, &wts, &[("x", t64(&[batch, c, h, w], xv.clone())), ("xs", t64(&[steps, batch, c, h, w], xsv.clone()))]);

    let want = conv_reference(&xv, [batch, c, h, w], &wv, [o, kh, kw], &bv, [2, 1], [1, 1]);
    assert_eq!(r.outputs["y"].shape, vec![batch, o, 3, 5]);
    assert_bits(&r.outputs["y"].data, &want);
    let want = conv_reference(&xv, [batch, c, h, w], &wv, [o, kh, kw], &[0.0; 3], [1, 3], [0, 2]);
    assert_eq!(r.outputs["y_nobias"].shape, vec![batch, o, 3, 3]);
    assert_bits(&r.outputs["y_nobias"].data, &want);
    // A sequence is convolved step by step.
    let want = conv_reference(&xsv, [steps * batch, c, h, w], &wv, [o, kh, kw], &bv, [2, 1], [1, 1]);
    assert_eq!(r.outputs["y_seq"].shape, vec![steps, batch, o, 3, 5]);
    assert_bits(&r.outputs["y_seq"].data, &want);
}

#[test]
fn max_pool_takes_window_maxima_and_propagates_nan() {
    let mut b = Builder::new("pool", 1, 1e-3, F32);
    let xin = b.input("x", Type::new(F32, Shape::batched(&[1, 4, 5])));
    let x = b.emit(Op::Input(xin)).unwrap();
    let p = b.emit(Op::Pool2d { op: PoolOp::Max, input: x, kernel: [2, 2], stride: [2, 2], padding: [0, 0] }).unwrap();
    let q = b.emit(Op::Pool2d { op: PoolOp::Max, input: x, kernel: [3, 2], stride: [1, 2], padding: [0, 0] }).unwrap();
    b.output("p", p);
    b.output("q", q);
    let m = b.finish();
    #[rustfmt::skip]
    let xs = [
        1.0, 2.0, -3.0, 4.0, 9.0,
        5.0, 0.5, -1.0, -2.0, 9.0,
        -7.0, -8.0, f32::NAN, 0.0, 9.0,
        -6.0, -9.0, 1.5, 2.5, 9.0,
    ];
    let r = run(&m, &Weights::new(), &[("x", t32(&[1, 1, 4, 5], &xs))]);
    assert_eq!(r.outputs["p"].shape, vec![1, 1, 2, 2]);
    assert_bits(&r.outputs["p"].data, &[5.0, 4.0, -6.0, f64::NAN]);
    assert_eq!(r.outputs["q"].shape, vec![1, 1, 2, 2]);
    assert_bits(&r.outputs["q"].data, &[5.0, f64::NAN, 5.0, f64::NAN]);
}

#[test]
fn reshape_keeps_row_major_order() {
    let mut b = Builder::new("reshape", 2, 1e-3, F64);
    let xin = b.input("x", Type::seq(F64, Shape::batched(&[2, 3])));
    let x = b.emit(Op::Input(xin)).unwrap();
    let y = b.emit(Op::Reshape { arg: x, shape: Shape::batched(&[3, 2]) }).unwrap();
    let z = b.emit(Op::Reshape { arg: y, shape: Shape::batched(&[6]) }).unwrap();
    b.output("y", y);
    b.output("z", z);
    let m = b.finish();
    let xs = ramp(24);
    let r = run(&m, &Weights::new(), &[("x", t64(&[2, 2, 2, 3], xs.clone()))]);
    assert_eq!((r.outputs["y"].shape.clone(), r.outputs["z"].shape.clone()), (vec![2, 2, 3, 2], vec![2, 2, 6]));
    assert_bits(&r.outputs["z"].data, &xs);
}

#[test]
fn reductions_over_time() {
    let (steps, batch) = (3usize, 2usize);
    let mut b = Builder::new("reduce", steps as u32, 1e-3, F64);
    let xin = b.input("x", Type::seq(F64, Shape::batched(&[2])));
    let x = b.emit(Op::Input(xin)).unwrap();
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Last] {
        let y = b.emit(Op::ReduceTime { op, arg: x }).unwrap();
        b.output(op.name(), y);
    }
    let z = b.threshold(x, Surrogate::SuperSpike).unwrap();
    let count = b.emit(Op::ReduceTime { op: ReduceOp::Sum, arg: z }).unwrap();
    let zmax = b.emit(Op::ReduceTime { op: ReduceOp::Max, arg: z }).unwrap();
    b.output("count", count);
    b.output("zmax", zmax);
    let m = b.finish();
    #[rustfmt::skip]
    let xs = vec![
        0.1, -1.0, 5.0, 2.0,    // t = 0: [b0: 0.1, -1.0], [b1: 5.0, 2.0]
        0.2, -3.0, f64::NAN, 2.0,
        0.3, -2.0, 1.0, 7.0,
    ];
    let r = run(&m, &Weights::new(), &[("x", t64(&[steps, batch, 2], xs))]);
    let sum0 = ((0.0 + 0.1) + 0.2) + 0.3;
    assert_eq!(r.outputs["sum"].shape, vec![batch, 2]);
    assert_bits(&r.outputs["sum"].data, &[sum0, -6.0, f64::NAN, 11.0]);
    assert_bits(&r.outputs["mean"].data, &[sum0 / 3.0, -2.0, f64::NAN, 11.0 / 3.0]);
    assert_bits(&r.outputs["max"].data, &[0.3, -1.0, f64::NAN, 7.0]);
    assert_bits(&r.outputs["last"].data, &[0.3, -2.0, 1.0, 7.0]);
    assert_bits(&r.outputs["count"].data, &[3.0, 0.0, 2.0, 3.0]);
    assert_bits(&r.outputs["zmax"].data, &[1.0, 0.0, 1.0, 1.0]);
}

#[test]
fn max_all_reduces_every_element_and_propagates_nan() {
    let mut b = Builder::new("max_all", 2, 1e-3, F64);
    let xin = b.input("x", Type::new(F64, Shape::batched(&[3])));
    let x = b.emit(Op::Input(xin)).unwrap();
    let m = b.emit(Op::MaxAll(x)).unwrap();
    b.output("m", m);
    let sin = b.input("s", Type::seq(F64, Shape::batched(&[2])));
    let s = b.emit(Op::Input(sin)).unwrap();
    let ms = b.emit(Op::MaxAll(s)).unwrap();
    b.output("ms", ms);
    let m_mod = b.finish();
    // Over the batch (the maximum is in the second sample) and over time.
    let s_in = t64(&[2, 2, 2], vec![1.0, -4.0, 0.5, 2.0, 7.5, -1.0, 3.0, 0.0]);
    let r = run(
        &m_mod,
        &Weights::new(),
        &[("x", t64(&[2, 3], vec![0.5, -2.0, 1.0, 3.25, -7.0, 0.0])), ("s", s_in.clone())],
    );
    assert_eq!(r.outputs["m"].shape, Vec::<usize>::new());
    assert_bits(&r.outputs["m"].data, &[3.25]);
    assert_bits(&r.outputs["ms"].data, &[7.5]);
    let r =
        run(&m_mod, &Weights::new(), &[("x", t64(&[2, 3], vec![0.5, f64::NAN, 1.0, 3.25, -7.0, 0.0])), ("s", s_in)]);
    assert_bits(&r.outputs["m"].data, &[f64::NAN]);
}

#[test]
fn log_softmax_as_torch_computes_it() {
    let mut b = Builder::new("lsm", 1, 1e-3, F32);
    let xin = b.input("x", Type::new(F32, Shape::batched(&[3])));
    let x = b.emit(Op::Input(xin)).unwrap();
    let y = b.emit(Op::LogSoftmax { arg: x }).unwrap();
    b.output("y", y);
    let m = b.finish();
    let xs = [1.0f32, 2.0, 3.0, 1000.0, 1001.0, -5.0, 0.0, f32::NEG_INFINITY, 0.0];
    let r = run(&m, &Weights::new(), &[("x", t32(&[3, 3], &xs))]);
    let mut want = Vec::new();
    for row in xs.chunks(3) {
        let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let s = row.iter().fold(0.0f32, |s, &v| s + (v - mx).exp());
        want.extend(row.iter().map(|&v| f64::from((v - mx) - s.ln())));
    }
    assert_bits(&r.outputs["y"].data, &want);
    assert!(r.outputs["y"].data.iter().all(|v| !v.is_nan()));
    let probs: f64 = r.outputs["y"].data[3..6].iter().map(|v| v.exp()).sum();
    assert!((probs - 1.0).abs() < 1e-6);
}

#[test]
fn uniform_follows_the_counter_based_generator() {
    let (steps, batch) = (3usize, 2usize);
    let mut b = Builder::new("uniform", steps as u32, 1e-3, F32);
    let xin = b.input("x", Type::new(F32, Shape::batched(&[1])));
    b.begin_seq();
    let _x = b.emit(Op::Input(xin)).unwrap();
    let u_static = b.emit(Op::Uniform { seed: 7, shape: Shape::batched(&[2]), seq: false }).unwrap();
    let u_seq = b.emit(Op::Uniform { seed: 8, shape: Shape::batched(&[2]), seq: true }).unwrap();
    b.begin_step();
    let u_step = b.emit(Op::Uniform { seed: 9, shape: Shape::batched(&[2]), seq: false }).unwrap();
    b.name(u_step, "u_step");
    b.begin_seq();
    let u_steps = b.emit(Op::Collect(u_step)).unwrap();
    b.output("static", u_static);
    b.output("seq", u_seq);
    b.output("steps", u_steps);
    let m = b.finish();
    let opts = RunOptions { record: true, ..Default::default() };
    let r = run_with(&m, &Weights::new(), &[("x", t32(&[batch, 1], &[0.0, 0.0]))], &opts).unwrap();
    let u = |seed, t: usize, k: usize| snnc_ir::rng::uniform(seed, t as u32, k as u64);
    let n = batch * 2;
    assert_eq!(r.outputs["static"].shape, vec![batch, 2]);
    assert_bits(&r.outputs["static"].data, &(0..n).map(|k| u(7, 0, k)).collect::<Vec<_>>());
    let per_step = |seed| (0..steps).flat_map(|t| (0..n).map(move |k| u(seed, t, k))).collect::<Vec<_>>();
    assert_eq!(r.outputs["seq"].shape, vec![steps, batch, 2]);
    assert_bits(&r.outputs["seq"].data, &per_step(8));
    assert_bits(&r.outputs["steps"].data, &per_step(9));
    assert_bits(&r.traces["u_step"].data, &per_step(9));
    // Deterministic: the same numbers on every run.
    let again = run_with(&m, &Weights::new(), &[("x", t32(&[batch, 1], &[0.0, 0.0]))], &opts).unwrap();
    assert_eq!(again.outputs, r.outputs);
}

#[test]
fn module_without_batched_inputs_runs_with_batch_one_or_the_states_batch() {
    let mut b = Builder::new("nob", 2, 1e-3, F64);
    let s = b.state("s", Type::new(F64, Shape::batched(&[1])), StateInit::Fill(1.0));
    b.begin_step();
    let r = b.state_read(s).unwrap();
    let two = b.constant(2.0).unwrap();
    let d = b.mul(r, two).unwrap();
    b.state_write(s, d).unwrap();
    let m = b.finish();
    let out = run(&m, &Weights::new(), &[]);
    assert_eq!(out.final_state["s"].shape, vec![1, 1]);
    assert_eq!(out.final_state["s"].data, [4.0]);
    let mut opts = RunOptions::default();
    opts.initial_state.insert("s".into(), t64(&[3, 1], vec![1.0, 2.0, 3.0]));
    let out = run_with(&m, &Weights::new(), &[], &opts).unwrap();
    assert_eq!(out.final_state["s"].data, [4.0, 8.0, 12.0]);
}

/// Row `r` of `[rows, cols]` values `xs`.
fn row(xs: &[f64], cols: usize, r: usize) -> &[f64] {
    &xs[r * cols..(r + 1) * cols]
}

#[test]
fn concat_of_two_and_narrow_in_b_f() {
    let batch = 3usize;
    let mut b = Builder::new("concat", 1, 1e-3, F64);
    let ain = b.input("a", Type::new(F64, Shape::batched(&[2])));
    let bin = b.input("b", Type::new(F64, Shape::batched(&[3])));
    let a = b.emit(Op::Input(ain)).unwrap();
    let c = b.emit(Op::Input(bin)).unwrap();
    let y = b.concat(vec![a, c]).unwrap();
    assert_eq!(b.module().nodes[y].ty, Type::new(F64, Shape::batched(&[5])));
    let n = b.narrow(y, 1, 3).unwrap();
    let back = b.narrow(y, 2, 3).unwrap();
    b.output("y", y);
    b.output("n", n);
    b.output("back", back);
    let m = b.finish();
    let (xa, xb) = (ramp(6), ramp(15)[6..15].to_vec());
    let r = run(&m, &Weights::new(), &[("a", t64(&[batch, 2], xa.clone())), ("b", t64(&[batch, 3], xb.clone()))]);
    assert_eq!(r.outputs["y"].shape, vec![batch, 5]);
    let mut want = Vec::new();
    for s in 0..batch {
        want.extend_from_slice(row(&xa, 2, s));
        want.extend_from_slice(row(&xb, 3, s));
    }
    assert_bits(&r.outputs["y"].data, &want);
    let narrowed: Vec<f64> = (0..batch).flat_map(|s| want[s * 5 + 1..s * 5 + 4].to_vec()).collect();
    assert_eq!(r.outputs["n"].shape, vec![batch, 3]);
    assert_bits(&r.outputs["n"].data, &narrowed);
    // Narrowing the second operand's columns gives it back.
    assert_bits(&r.outputs["back"].data, &xb);
}

#[test]
fn concat_of_three_in_b_c_h_w_and_narrow_of_channels() {
    // [B, 1, 2, 2] ++ [B, 2, 2, 2] ++ [B, 1, 2, 2] = [B, 4, 2, 2], as
    // torch.cat(dim=1).
    let batch = 2usize;
    let mut b = Builder::new("concat4", 1, 1e-3, F32);
    let shapes = [1u32, 2, 1];
    let mut args = Vec::new();
    for (k, c) in shapes.iter().enumerate() {
        let x = b.input(format!("x{k}"), Type::new(F32, Shape::batched(&[*c, 2, 2])));
        args.push(b.emit(Op::Input(x)).unwrap());
    }
    let y = b.concat(args).unwrap();
    let mid = b.narrow(y, 1, 2).unwrap();
    b.output("y", y);
    b.output("mid", mid);
    let m = b.finish();
    let data: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(k, c)| (0..batch * *c as usize * 4).map(|i| (100 * k + i) as f32).collect())
        .collect();
    let inputs: Vec<(String, snnc_runtime::Tensor)> =
        shapes.iter().enumerate().map(|(k, c)| (format!("x{k}"), t32(&[batch, *c as usize, 2, 2], &data[k]))).collect();
    let inputs: Vec<(&str, snnc_runtime::Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let r = run(&m, &Weights::new(), &inputs);
    assert_eq!(r.outputs["y"].shape, vec![batch, 4, 2, 2]);
    #[rustfmt::skip]
    let want = [
        0.0, 1.0, 2.0, 3.0,   100.0, 101.0, 102.0, 103.0,   104.0, 105.0, 106.0, 107.0,   200.0, 201.0, 202.0, 203.0,
        4.0, 5.0, 6.0, 7.0,   108.0, 109.0, 110.0, 111.0,   112.0, 113.0, 114.0, 115.0,   204.0, 205.0, 206.0, 207.0,
    ];
    assert_bits(&r.outputs["y"].data, &want);
    assert_eq!(r.outputs["mid"].shape, vec![batch, 2, 2, 2]);
    let mid: Vec<f64> = data[1].iter().map(|&v| f64::from(v)).collect();
    assert_bits(&r.outputs["mid"].data, &mid);
}

#[test]
fn concat_of_spikes_gives_spikes_per_step_and_over_sequences() {
    // Two thresholded sequences concatenated, once per step inside a step
    // loop (then collected) and once over the whole sequence: the same
    // spikes, rows [T, B, 2 + 1].
    let (steps, batch) = (2usize, 2usize);
    let mut b = Builder::new("spikes", steps as u32, 1e-3, F32);
    let ain = b.input("a", Type::seq(F32, Shape::batched(&[2])));
    let bin = b.input("b", Type::seq(F32, Shape::batched(&[1])));
    b.begin_seq();
    let a = b.emit(Op::Input(ain)).unwrap();
    let c = b.emit(Op::Input(bin)).unwrap();
    let za = b.threshold(a, Surrogate::SuperSpike).unwrap();
    let zb = b.threshold(c, Surrogate::SuperSpike).unwrap();
    let whole = b.concat(vec![za, zb]).unwrap();
    assert_eq!(b.module().nodes[whole].ty, Type::seq(Dtype::Spike, Shape::batched(&[3])));
    b.begin_step();
    let at = b.emit(Op::Step(za)).unwrap();
    let bt = b.emit(Op::Step(zb)).unwrap();
    let per_step = b.concat(vec![bt, at]).unwrap();
    assert_eq!(b.module().nodes[per_step].ty, Type::new(Dtype::Spike, Shape::batched(&[3])));
    let last = b.narrow(per_step, 2, 1).unwrap();
    b.begin_seq();
    let collected = b.emit(Op::Collect(per_step)).unwrap();
    let last = b.emit(Op::Collect(last)).unwrap();
    b.output("whole", whole);
    b.output("per_step", collected);
    b.output("last", last);
    let m = b.finish();
    let xa = [0.5f32, -1.0, 0.0, 2.0, -0.5, 3.0, 1.0, 1.0];
    let xb = [-2.0f32, 0.25, 4.0, -4.0];
    let r = run(&m, &Weights::new(), &[("a", t32(&[steps, batch, 2], &xa)), ("b", t32(&[steps, batch, 1], &xb))]);
    assert_eq!(r.outputs["whole"].shape, vec![steps, batch, 3]);
    assert_bits(&r.outputs["whole"].data, &[1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
    assert_eq!(r.outputs["per_step"].shape, vec![steps, batch, 3]);
    assert_bits(&r.outputs["per_step"].data, &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0]);
    assert_eq!(r.outputs["last"].shape, vec![steps, batch, 1]);
    assert_bits(&r.outputs["last"].data, &[0.0, 1.0, 1.0, 1.0]);
}

#[test]
fn narrow_of_a_sequence_slices_dim_one_of_every_step() {
    let (steps, batch) = (3usize, 2usize);
    let mut b = Builder::new("narrow", steps as u32, 1e-3, F64);
    let xin = b.input("x", Type::seq(F64, Shape::batched(&[4, 2])));
    let x = b.emit(Op::Input(xin)).unwrap();
    let y = b.narrow(x, 3, 1).unwrap();
    let all = b.narrow(x, 0, 4).unwrap();
    b.output("y", y);
    b.output("all", all);
    let m = b.finish();
    let xs = ramp(steps * batch * 8);
    let r = run(&m, &Weights::new(), &[("x", t64(&[steps, batch, 4, 2], xs.clone()))]);
    assert_eq!(r.outputs["y"].shape, vec![steps, batch, 1, 2]);
    let want: Vec<f64> = (0..steps * batch).flat_map(|rr| xs[rr * 8 + 6..rr * 8 + 8].to_vec()).collect();
    assert_bits(&r.outputs["y"].data, &want);
    assert_bits(&r.outputs["all"].data, &xs);
}
