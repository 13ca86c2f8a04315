//! A hand-built module with `concat` and `narrow` (the frontend does not
//! emit them yet): two neuron populations whose outputs are concatenated,
//! a third state fed by the concatenation that feeds back through a
//! `narrow` (so the concat stays in the step loop after `time-batch`), and
//! two products reading the concatenation and a slice of it.

use std::collections::BTreeMap;

use snnc_ir::{
    Builder, Dtype, Handle, MatMulKind, Module, Op, Param, ParamInit, Shape, StateInit, StateVar, Surrogate, Type,
    UnaryOp,
};
use snnc_runtime::{ElemType, Tensor, Weights};

/// The module: `spiking` thresholds the populations (spike concat), else
/// they are `tanh` of the membrane (smooth, for finite differences).
/// Without `recurrent` there is no third state: the concat and the narrow
/// feed only the products, and `time-batch` moves them out of the loop.
pub fn module(float: Dtype, spiking: bool, recurrent: bool, steps: u32) -> Module {
    let mut b = Builder::new(if spiking { "concat_spikes" } else { "concat_smooth" }, steps, 1e-3, float);
    let x = b.input("x", Type::seq(float, Shape::batched(&[3])));
    let param = |b: &mut Builder, name: &str, dims: &[u32]| {
        b.param(Param {
            name: name.into(),
            dtype: float,
            shape: Shape::fixed(dims),
            trainable: true,
            init: ParamInit::Zeros,
        })
    };
    let (w1, w2, w3, w4) = (
        param(&mut b, "a.weight", &[4, 3]),
        param(&mut b, "b.weight", &[2, 3]),
        param(&mut b, "out.weight", &[3, 6]),
        param(&mut b, "slice.weight", &[2, 4]),
    );
    let state = |b: &mut Builder, name: &str, n: u32| {
        b.state(name, Type::new(float, Shape::batched(&[n])), StateInit::Fill(0.0))
    };
    let (v1, v2) = (state(&mut b, "a.v", 4), state(&mut b, "b.v", 2));
    let v3 = if recurrent { state(&mut b, "mix.v", 6) } else { v1 };
    b.begin_seq();
    let xs = b.emit(Op::Input(x)).unwrap();
    let [w1, w2, w3, w4] = [w1, w2, w3, w4].map(|w| b.emit(Op::Param(w)).unwrap());
    b.begin_step();
    let xt = b.emit(Op::Step(xs)).unwrap();
    let v3r = recurrent.then(|| b.state_read(v3).unwrap());
    let fb = v3r.map(|v| b.narrow(v, 2, 4).unwrap());
    let population = |b: &mut Builder, v: Handle<StateVar>, w, decay: f64, feedback: Option<_>, name: &str| {
        let vr = b.state_read(v).unwrap();
        let k = b.constant(decay).unwrap();
        let kept = b.mul(k, vr).unwrap();
        let i = b.emit(Op::MatMul { input: xt, weight: w, kind: MatMulKind::Dense }).unwrap();
        let mut vn = b.add(kept, i).unwrap();
        if let Some(f) = feedback {
            let g = b.constant(0.25).unwrap();
            let f = b.mul(g, f).unwrap();
            vn = b.add(vn, f).unwrap();
        }
        b.state_write(v, vn).unwrap();
        let out = if spiking {
            let th = b.constant(0.3).unwrap();
            let over = b.sub(vn, th).unwrap();
            b.threshold(over, Surrogate::SuperSpike).unwrap()
        } else {
            b.unary(UnaryOp::Tanh, vn).unwrap()
        };
        b.name(out, name);
        out
    };
    let o1 = population(&mut b, v1, w1, 0.9, fb, "a.z");
    let o2 = population(&mut b, v2, w2, 0.8, None, "b.z");
    let c = b.concat(vec![o1, o2]).unwrap();
    b.name(c, "mix.in");
    if let Some(v3r) = v3r {
        let half = b.constant(0.5).unwrap();
        let kept = b.mul(half, v3r).unwrap();
        let v3n = b.add(kept, c).unwrap();
        b.state_write(v3, v3n).unwrap();
    }
    let y = b.emit(Op::MatMul { input: c, weight: w3, kind: MatMulKind::Dense }).unwrap();
    let part = b.narrow(c, 1, 4).unwrap();
    let y2 = b.emit(Op::MatMul { input: part, weight: w4, kind: MatMulKind::Dense }).unwrap();
    b.begin_seq();
    let ys = b.emit(Op::Collect(y)).unwrap();
    let y2s = b.emit(Op::Collect(y2)).unwrap();
    b.output("y", ys);
    b.output("y2", y2s);
    b.finish()
}

/// Deterministic weights in `[-1, 1)` (larger for the spiking module, so
/// that both populations spike).
pub fn weights(module: &Module, seed: u64) -> Weights {
    let elem = snnc_runtime::weights::elem_type(module.float);
    module
        .params
        .iter()
        .enumerate()
        .map(|(i, (_, p))| {
            let dims: Vec<usize> = p.shape.resolve(1);
            let n: usize = dims.iter().product();
            let data = (0..n).map(|k| 2.0 * snnc_ir::rng::uniform(seed + i as u64, 0, k as u64) - 1.0).collect();
            (p.name.clone(), Tensor::new(dims, elem, data).unwrap())
        })
        .collect()
}

/// The input `x` `[T, batch, 3]` in `[-1, 2)`.
pub fn inputs(module: &Module, batch: usize, seed: u64) -> BTreeMap<String, Tensor> {
    let elem = snnc_runtime::weights::elem_type(module.float);
    let n = module.steps as usize * batch * 3;
    let data = (0..n).map(|k| 3.0 * snnc_ir::rng::uniform(seed ^ 0xabc, 1, k as u64) - 1.0).collect();
    let t = Tensor::new(vec![module.steps as usize, batch, 3], elem, data).unwrap();
    BTreeMap::from([("x".to_string(), t)])
}

/// `ElemType` of a module's float (for seeds).
pub fn elem(module: &Module) -> ElemType {
    snnc_runtime::weights::elem_type(module.float)
}
