//! The convolution options and the pools against torch, op by op: the
//! inputs and outputs of the convolutions and pools of the Norse oracle's
//! graph case `graph_conv_options_f32` (its first steps, extracted into
//! `tests/data/conv_options_ops_f32.json`). The first convolution has a
//! (3, 5) kernel, padding (2, 4), dilation 2 and 2 groups; the pools read
//! the recorded `lif1.z` spikes (max, avg and sum with and without padding,
//! and `LPPool2d(1, 2)` lowered as the frontend lowers it); the second
//! convolution reads the recorded concatenation of the four pools with
//! a (3, 2) kernel, stride (2, 1) and padding (1, 0). The network around
//! them (the graph wiring) is not needed here.

use std::collections::BTreeMap;

use serde_json::Value;
use snnc_ir::{Builder, CompareOp, Dtype, Handle, MatMulKind, Module, Node, Op, Param, ParamInit, PoolOp, Shape, Type};
use snnc_runtime::{Tensor, Weights};

fn data() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/conv_options_ops_f32.json"))
        .expect("the extracted oracle data");
    serde_json::from_str(&text).expect("JSON")
}

fn tensor(v: &Value) -> Tensor {
    Tensor::from_json(v).unwrap_or_else(|e| panic!("{e}"))
}

fn dims(t: &Tensor) -> Vec<u32> {
    t.shape.iter().map(|&d| d as u32).collect()
}

/// Builds the ops of the case on the recorded inputs `x` (`[T, B, 2, 6,
/// 6]`), `z` (`lif1.z`, `[T, B, 4, 6, 6]`) and `cat` (`[T, B, 16, 3, 3]`).
fn module(d: &Value) -> Module {
    let e = &d["expected"];
    let (x, z, cat) = (tensor(&d["x"]), tensor(&e["lif1.z"]), tensor(&e["cat.out"]));
    let steps = x.shape[0] as u32;
    let mut b = Builder::new("conv_options_ops", steps, 1e-3, Dtype::F32);
    let seq = |t: &Tensor| Type::seq(Dtype::F32, Shape::batched(&dims(t)[2..]));
    let (xi, zi, ci) = (b.input("x", seq(&x)), b.input("z", seq(&z)), b.input("cat", seq(&cat)));
    let mut params = BTreeMap::new();
    for name in ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"] {
        let t = tensor(&d["weights"][name]);
        let p = Param {
            name: name.into(),
            dtype: Dtype::F32,
            shape: Shape::fixed(&dims(&t)),
            trainable: true,
            init: ParamInit::Zeros,
        };
        params.insert(name, b.param(p));
    }
    b.begin_seq();
    let x = b.emit(Op::Input(xi)).unwrap();
    let z = b.emit(Op::Input(zi)).unwrap();
    let cat = b.emit(Op::Input(ci)).unwrap();
    let p: BTreeMap<&str, Handle<Node>> = params.iter().map(|(k, h)| (*k, b.emit(Op::Param(*h)).unwrap())).collect();
    let conv1 = b
        .emit(Op::Conv2d {
            input: x,
            weight: p["conv1.weight"],
            bias: Some(p["conv1.bias"]),
            stride: [1, 1],
            padding: [2, 4],
            dilation: [2, 2],
            groups: 2,
            kind: MatMulKind::Dense,
        })
        .unwrap();
    let pool = |b: &mut Builder, op, k: u32, p: u32| {
        b.emit(Op::Pool2d { op, input: z, kernel: [k, k], stride: [2, 2], padding: [p, p] }).unwrap()
    };
    let mp = pool(&mut b, PoolOp::Max, 3, 1);
    let ap = pool(&mut b, PoolOp::Avg, 3, 1);
    let sp = pool(&mut b, PoolOp::Sum, 2, 0);
    // LPPool2d(1, 2) as the frontend lowers it.
    let a = pool(&mut b, PoolOp::Avg, 2, 0);
    let zero = b.constant(0.0).unwrap();
    let silent = b.emit(Op::Compare { op: CompareOp::Eq, lhs: a, rhs: zero }).unwrap();
    let held = b.emit(Op::StopGradient(a)).unwrap();
    let a = b.emit(Op::Select { cond: silent, on_true: held, on_false: a }).unwrap();
    let four = b.constant(4.0).unwrap();
    let lp = b.mul(a, four).unwrap();
    let conv2 = b
        .emit(Op::Conv2d {
            input: cat,
            weight: p["conv2.weight"],
            bias: Some(p["conv2.bias"]),
            stride: [2, 1],
            padding: [1, 0],
            dilation: [1, 1],
            groups: 1,
            kind: MatMulKind::Dense,
        })
        .unwrap();
    for (name, h) in [("conv1.out", conv1), ("mp.out", mp), ("ap.out", ap), ("sp.out", sp), ("lp.out", lp)] {
        b.output(name, h);
    }
    b.output("conv2.out", conv2);
    b.finish()
}

/// The oracle's rule: `|got - want| <= atol + rtol_to_max * max |want|`.
fn agree(name: &str, got: &[f64], want: &Tensor, tol: &Value) {
    let (atol, rtol) = (tol["atol"].as_f64().unwrap(), tol["rtol_to_max"].as_f64().unwrap());
    let max = want.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert_eq!(got.len(), want.data.len(), "{name}");
    for (k, (g, w)) in got.iter().zip(&want.data).enumerate() {
        assert!((g - w).abs() <= atol + rtol * max, "{name}[{k}]: snnc {g}, torch {w}");
    }
}

#[test]
fn conv_options_and_pools_match_torch_op_by_op() {
    let d = data();
    let m = module(&d);
    let info = snnc_ir::validate(&m).unwrap_or_else(|e| panic!("{e}"));
    let e = &d["expected"];
    let inputs: BTreeMap<String, Tensor> = [("x", &d["x"]), ("z", &e["lif1.z"]), ("cat", &e["cat.out"])]
        .into_iter()
        .map(|(n, v)| (n.to_string(), tensor(v)))
        .collect();
    let weights: Weights = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]
        .into_iter()
        .map(|n| (n.to_string(), tensor(&d["weights"][n])))
        .collect();
    let interp = snnc_interp::run(&m, &info, &weights, &inputs, &Default::default()).unwrap();
    let cpu = snnc_cpu::compile(&m, &info).unwrap().run(&weights, &inputs, &Default::default()).unwrap();
    for name in ["conv1.out", "mp.out", "ap.out", "sp.out", "lp.out", "conv2.out"] {
        let want = tensor(&e[name]);
        assert_eq!(interp.outputs[name].shape, want.shape, "{name}");
        agree(&format!("interp {name}"), &interp.outputs[name].data, &want, &d["tolerance"]);
        agree(&format!("cpu {name}"), &cpu.outputs[name].data, &want, &d["tolerance"]);
    }
    // Pools of spikes are exact: maxima, counts, counts / 9, counts · 4 / 4.
    for name in ["mp.out", "ap.out", "sp.out", "lp.out"] {
        assert_eq!(interp.outputs[name].data, tensor(&e[name]).data, "{name}");
    }
    // Norse's LPPool2d(1) forward equals the plain sum pool here.
    assert_eq!(interp.outputs["lp.out"].data, interp.outputs["sp.out"].data);
}
