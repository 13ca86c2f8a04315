//! The size the tutorial network runs at: a 784→100 recurrent LIF layer,
//! T = 32, batch 256, in f32. Checks that it runs at that size and spikes
//! (speed is measured in benchmarks, not here).

mod common;

use common::*;
use snnc_ir::{Builder, Dtype, MatMulKind, Op, ParamInit, Shape, StateInit, Surrogate, Type};
use snnc_runtime::{Tensor, init_weights};

#[test]
fn recurrent_784_to_100_at_tutorial_size() {
    let (steps, batch, n_in, n) = (32usize, 256usize, 784u32, 100u32);
    let f = Dtype::F32;
    let mut b = Builder::new("rec", steps as u32, 1e-3, f);
    let xin = b.input("x", Type::seq(f, Shape::batched(&[n_in])));
    let mut w_in = param("in.weight", f, &[n, n_in]);
    w_in.init = ParamInit::Uniform { bound: 0.05 };
    let pin = b.param(w_in);
    let mut w_rec = param("rec.weight", f, &[n, n]);
    w_rec.init = ParamInit::Uniform { bound: 0.1 };
    let prec = b.param(w_rec);
    let st = Type::new(f, Shape::batched(&[n]));
    let sv = b.state("v", st.clone(), StateInit::Fill(0.0));
    let sz = b.state("z", st, StateInit::Fill(0.0));
    b.begin_seq();
    let x = b.emit(Op::Input(xin)).unwrap();
    let wi = b.emit(Op::Param(pin)).unwrap();
    let wr = b.emit(Op::Param(prec)).unwrap();
    b.begin_step();
    let xt = b.emit(Op::Step(x)).unwrap();
    let v = b.state_read(sv).unwrap();
    let z = b.state_read(sz).unwrap();
    let a = b.emit(Op::MatMul { input: xt, weight: wi, kind: MatMulKind::Dense }).unwrap();
    let r = b.emit(Op::MatMul { input: z, weight: wr, kind: MatMulKind::Dense }).unwrap();
    let cur = b.add(a, r).unwrap();
    let k = b.constant(0.9).unwrap();
    let vd = b.mul(k, v).unwrap();
    let vn = b.add(vd, cur).unwrap();
    let th = b.constant(0.5).unwrap();
    let over = b.sub(vn, th).unwrap();
    let zs = b.threshold(over, Surrogate::SuperSpike).unwrap();
    let zf = b.emit(Op::Cast { arg: zs, dtype: f }).unwrap();
    let one = b.constant(1.0).unwrap();
    let keep = b.sub(one, zf).unwrap();
    let vr = b.mul(keep, vn).unwrap();
    b.state_write(sv, vr).unwrap();
    b.state_write(sz, zf).unwrap();
    b.begin_seq();
    let out = b.emit(Op::Collect(zs)).unwrap();
    b.output("z", out);
    let m = b.finish();

    let w = init_weights(&m, 1);
    let xs: Vec<f64> = (0..steps * batch * n_in as usize).map(|i| if i % 5 == 0 { 1.0 } else { 0.0 }).collect();
    let x = Tensor::new(vec![steps, batch, n_in as usize], snnc_runtime::ElemType::F32, xs).unwrap();
    let r = run(&m, &w, &[("x", x)]);
    let spikes: f64 = r.outputs["z"].data.iter().sum();
    assert!(spikes > 0.0 && spikes < (steps * batch * n as usize) as f64);
}
