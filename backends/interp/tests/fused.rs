//! `fused` and `extract`: the interpreter runs a kernel exactly as the
//! unfused ops; the validator reports every problem of a kernel; the
//! printer's form is stable.

mod common;

use common::*;
use snnc_interp::RunOptions;
use snnc_ir::{
    BinaryOp, Builder, CompareOp, Dtype, FusedKernel, Handle, KernelInst, Module, Node, Op, Param, ParamInit, Shape,
    StateInit, Surrogate, Type, UnaryOp, validate,
};
use snnc_runtime::Weights;

use KernelInst as K;

/// One LIF population with a bias, unfused or as one kernel. Per step:
/// `i' = i + x + bias` (bias `[3]`, broadcast), `v' = v + 0.1 ((0 - v) + i')`,
/// `z = H(v' - 1)`, `v'' = select(z, 0, v')`; outputs z, v'', i', the
/// constant 2.5 and the bias, broadcast to `[B, 3]`.
fn lif(float: Dtype, fused: bool) -> Module {
    let mut b = Builder::new("lif", 12, 1e-3, float);
    let xin = b.input("x", Type::seq(float, Shape::batched(&[3])));
    let bias = b.param(Param {
        name: "bias".into(),
        dtype: float,
        shape: Shape::fixed(&[3]),
        trainable: true,
        init: ParamInit::Zeros,
    });
    let per_step = Type::new(float, Shape::batched(&[3]));
    let sv = b.state("v", per_step.clone(), StateInit::Fill(0.0));
    let si = b.state("i", per_step, StateInit::Fill(0.0));
    b.begin_seq();
    let x = b.emit(Op::Input(xin)).unwrap();
    let bias = b.emit(Op::Param(bias)).unwrap();
    b.begin_step();
    let xt = b.emit(Op::Step(x)).unwrap();
    let v = b.state_read(sv).unwrap();
    let i = b.state_read(si).unwrap();
    let (z, v_new, i_new, c, bias_out) = if fused {
        let kernel = FusedKernel {
            name: "lif".into(),
            inputs: vec![i, xt, bias, v],
            body: vec![
                K::Input(0),                                                // k0 i
                K::Input(1),                                                // k1 x
                K::Input(2),                                                // k2 bias
                K::Binary { op: BinaryOp::Add, lhs: 0, rhs: 1 },            // k3
                K::Binary { op: BinaryOp::Add, lhs: 3, rhs: 2 },            // k4 i'
                K::Input(3),                                                // k5 v
                K::Const { value: 0.0, dtype: float },                      // k6
                K::Binary { op: BinaryOp::Sub, lhs: 6, rhs: 5 },            // k7
                K::Binary { op: BinaryOp::Add, lhs: 7, rhs: 4 },            // k8
                K::Const { value: 0.1, dtype: float },                      // k9
                K::Binary { op: BinaryOp::Mul, lhs: 9, rhs: 8 },            // k10
                K::Binary { op: BinaryOp::Add, lhs: 5, rhs: 10 },           // k11 v'
                K::Const { value: 1.0, dtype: float },                      // k12
                K::Binary { op: BinaryOp::Sub, lhs: 11, rhs: 12 },          // k13
                K::Threshold { arg: 13, surrogate: Surrogate::SuperSpike }, // k14 z
                K::Select { cond: 14, on_true: 6, on_false: 11 },           // k15 v''
                K::Const { value: 2.5, dtype: float },                      // k16
            ],
            outputs: vec![14, 15, 4, 16, 2],
        };
        let k = b.emit(Op::Fused(Box::new(kernel))).unwrap();
        let out: Vec<Handle<Node>> = (0..5).map(|index| b.emit(Op::Extract { kernel: k, index }).unwrap()).collect();
        (out[0], out[1], out[2], out[3], out[4])
    } else {
        let i1 = b.add(i, xt).unwrap();
        let i2 = b.add(i1, bias).unwrap();
        let zero = b.constant(0.0).unwrap();
        let leak = b.sub(zero, v).unwrap();
        let drive = b.add(leak, i2).unwrap();
        let a = b.constant(0.1).unwrap();
        let dv = b.mul(a, drive).unwrap();
        let v1 = b.add(v, dv).unwrap();
        let one = b.constant(1.0).unwrap();
        let over = b.sub(v1, one).unwrap();
        let z = b.threshold(over, Surrogate::SuperSpike).unwrap();
        let v2 = b.emit(Op::Select { cond: z, on_true: zero, on_false: v1 }).unwrap();
        // (The constant and the bias are outputs of the fused module only.)
        let c = b.constant(2.5).unwrap();
        (z, v2, i2, c, bias)
    };
    b.name(z, "z");
    b.name(v_new, "v");
    b.state_write(sv, v_new).unwrap();
    b.state_write(si, i_new).unwrap();
    b.begin_seq();
    for (name, h) in [("z", z), ("v", v_new), ("i", i_new)] {
        let s = b.emit(Op::Collect(h)).unwrap();
        b.output(name, s);
    }
    if fused {
        let cs = b.emit(Op::Collect(c)).unwrap();
        b.output("c", cs);
        let bs = b.emit(Op::Collect(bias_out)).unwrap();
        b.output("bias", bs);
    }
    b.finish()
}

fn inputs(float: Dtype, steps: usize, batch: usize) -> Vec<(&'static str, snnc_runtime::Tensor)> {
    let data: Vec<f64> = (0..steps * batch * 3).map(|k| 0.05 + 0.9 * ((k * 37 % 23) as f64 / 23.0)).collect();
    let t = t64(&[steps, batch, 3], data);
    vec![("x", if float == Dtype::F32 { t.cast(snnc_runtime::ElemType::F32) } else { t })]
}

#[test]
fn a_kernel_gives_the_bits_of_the_ops_it_replaces() {
    for float in [Dtype::F32, Dtype::F64] {
        let bias = weights(&[("bias", t64(&[3], vec![0.25, -0.5, 0.125]))]);
        let opts = RunOptions { record: true, ..Default::default() };
        let plain = run_with(&lif(float, false), &bias, &inputs(float, 12, 2), &opts).unwrap();
        let fused = run_with(&lif(float, true), &bias, &inputs(float, 12, 2), &opts).unwrap();
        assert!(plain.outputs["z"].data.iter().sum::<f64>() > 3.0, "the test should spike");
        for name in ["z", "v", "i"] {
            assert_bits(&fused.outputs[name].data, &plain.outputs[name].data);
        }
        for name in ["z", "v"] {
            assert_bits(&fused.traces[name].data, &plain.traces[name].data);
        }
        assert_bits(&fused.final_state["v"].data, &plain.final_state["v"].data);
        assert_bits(&fused.final_state["i"].data, &plain.final_state["i"].data);
        // A constant output and an input output broadcast to the kernel.
        assert_eq!(fused.outputs["c"].shape, vec![12, 2, 3]);
        assert!(fused.outputs["c"].data.iter().all(|&c| c == 2.5));
        assert_bits(&fused.outputs["bias"].data, &[0.25, -0.5, 0.125].repeat(24));
    }
}

#[test]
fn a_kernel_computes_exact_numbers() {
    // y = select(x > 0.5, x * 3, -x) and y2 = relu(x - 1) over 4 values.
    let mut b = Builder::new("k", 1, 1e-3, Dtype::F32);
    let xin = b.input("x", Type::new(Dtype::F32, Shape::batched(&[4])));
    b.begin_seq();
    let x = b.emit(Op::Input(xin)).unwrap();
    let kernel = FusedKernel {
        name: "k".into(),
        inputs: vec![x],
        body: vec![
            K::Input(0),
            K::Const { value: 0.5, dtype: Dtype::F32 },
            K::Compare { op: CompareOp::Gt, lhs: 0, rhs: 1 },
            K::Const { value: 3.0, dtype: Dtype::F32 },
            K::Binary { op: BinaryOp::Mul, lhs: 0, rhs: 3 },
            K::Unary { op: UnaryOp::Neg, arg: 0 },
            K::Select { cond: 2, on_true: 4, on_false: 5 },
            K::Const { value: 1.0, dtype: Dtype::F32 },
            K::Binary { op: BinaryOp::Sub, lhs: 0, rhs: 7 },
            K::Unary { op: UnaryOp::Relu, arg: 8 },
            K::Cast { arg: 2, dtype: Dtype::F32 },
        ],
        outputs: vec![6, 9, 10],
    };
    let k = b.emit(Op::Fused(Box::new(kernel))).unwrap();
    let y2 = b.emit(Op::Extract { kernel: k, index: 1 }).unwrap();
    let y3 = b.emit(Op::Extract { kernel: k, index: 2 }).unwrap();
    b.output("y", k);
    b.output("y2", y2);
    b.output("y3", y3);
    let m = b.finish();
    assert_eq!(m.nodes[k].ty.to_string(), "f32[B,4]");
    assert_eq!(m.nodes[y3].ty.to_string(), "f32[B,4]");
    let xs = [0.25f32, 0.5, 0.75, 2.0];
    let r = run(&m, &Weights::new(), &[("x", t32(&[1, 4], &xs))]);
    let want: Vec<f64> = xs.iter().map(|&x| f64::from(if x > 0.5 { x * 3.0 } else { -x })).collect();
    assert_bits(&r.outputs["y"].data, &want);
    let want2: Vec<f64> = xs.iter().map(|&x| f64::from((x - 1.0f32).max(0.0))).collect();
    assert_bits(&r.outputs["y2"].data, &want2);
    assert_bits(&r.outputs["y3"].data, &[0.0, 0.0, 1.0, 1.0]);
}

/// A module with one kernel over `x: f32[B,3]` for the validator tests.
fn with_kernel(kernel: impl FnOnce(Handle<Node>, Handle<Node>) -> FusedKernel) -> Module {
    let mut b = Builder::new("bad", 2, 1e-3, Dtype::F32);
    let xin = b.input("x", Type::new(Dtype::F32, Shape::batched(&[3])));
    b.begin_seq();
    let x = b.emit(Op::Input(xin)).unwrap();
    let p = b.emit(Op::Uniform { seed: 1, shape: Shape::fixed(&[5]), seq: false }).unwrap();
    let mut m = b.finish();
    let k = kernel(x, p);
    let h = m.nodes.append(Node {
        op: Op::Fused(Box::new(k)),
        ty: Type::new(Dtype::F32, Shape::batched(&[3])),
        name: None,
    });
    m.body[0].nodes.push(h);
    m
}

fn errors(m: &Module) -> String {
    match validate(m) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_validator_reports_every_problem_of_a_kernel() {
    let m = with_kernel(|x, _| FusedKernel {
        name: "bad".into(),
        inputs: vec![x],
        body: vec![
            K::Input(0),
            K::Input(4),
            K::Binary { op: BinaryOp::Add, lhs: 0, rhs: 5 },
            K::Const { value: 2.0, dtype: Dtype::Spike },
            K::Const { value: 1.0, dtype: Dtype::F64 },
            K::Const { value: f64::NAN, dtype: Dtype::F32 },
            K::Unary { op: UnaryOp::Exp, arg: 3 },
            K::Threshold { arg: 0, surrogate: Surrogate::Heaviside },
            K::Unary { op: UnaryOp::Exp, arg: 7 },
            K::Cast { arg: 0, dtype: Dtype::Spike },
        ],
        outputs: vec![0, 10],
    });
    assert_eq!(
        errors(&m),
        "the IR is invalid (8 error(s)):
  %2 (region 0): kernel `bad`: k1 (`in`): input 4 does not exist (the kernel has 1)
  %2 (region 0): kernel `bad`: k2: operand k5 is not an earlier instruction
  %2 (region 0): kernel `bad`: k3 (`const`): a spike constant must be 0 or 1, not 2
  %2 (region 0): kernel `bad`: k4 (`const`): constant of type f64 in a f32 module
  %2 (region 0): kernel `bad`: k5 (`const`): constant is NaN
  %2 (region 0): kernel `bad`: k8 (`exp`): `exp` needs a float operand
  %2 (region 0): kernel `bad`: k9 (`cast`): cast to spike is not allowed; use `threshold` or a comparison
  %2 (region 0): kernel `bad`: output k10 does not exist (the body has 10 instructions)
"
    );
}

#[test]
fn kernel_inputs_must_broadcast_and_a_kernel_needs_an_output() {
    let m = with_kernel(|x, p| FusedKernel {
        name: "k".into(),
        inputs: vec![x, p],
        body: vec![K::Input(0)],
        outputs: vec![],
    });
    assert_eq!(
        errors(&m),
        "the IR is invalid (2 error(s)):
  %2 (region 0): kernel `k`: kernel input %1 (f32[5]) does not broadcast with the other inputs (f32[B,3])
  %2 (region 0): kernel `k`: a kernel needs at least one output
"
    );
    // A recorded type other than output 0's.
    let mut m = with_kernel(|x, _| FusedKernel {
        name: "k".into(),
        inputs: vec![x],
        body: vec![K::Input(0), K::Threshold { arg: 0, surrogate: Surrogate::SuperSpike }],
        outputs: vec![1, 0],
    });
    assert_eq!(
        errors(&m),
        "the IR is invalid (1 error(s)):\n  %2 (region 0): recorded type f32[B,3] differs from the computed type spike[B,3]\n"
    );
    m.nodes[Handle::from_index(2)].ty = Type::new(Dtype::Spike, Shape::batched(&[3]));
    assert_eq!(errors(&m), "ok");
}

#[test]
fn extract_needs_a_fused_node_of_its_region_and_an_existing_output() {
    let mut m = with_kernel(|x, _| FusedKernel {
        name: "k".into(),
        inputs: vec![x],
        body: vec![K::Input(0)],
        outputs: vec![0],
    });
    let f32x3 = Type::new(Dtype::F32, Shape::batched(&[3]));
    let (x, k) = (Handle::from_index(0), Handle::from_index(2));
    let add = |m: &mut Module, region: usize, op: Op| {
        let h = m.nodes.append(Node { op, ty: f32x3.clone(), name: None });
        m.body[region].nodes.push(h);
        h
    };
    add(&mut m, 0, Op::Extract { kernel: k, index: 0 });
    add(&mut m, 0, Op::Extract { kernel: x, index: 0 });
    add(&mut m, 0, Op::Extract { kernel: k, index: 1 });
    m.body.push(snnc_ir::Region::seq(Vec::new()));
    add(&mut m, 1, Op::Extract { kernel: k, index: 0 });
    assert_eq!(
        errors(&m),
        "the IR is invalid (3 error(s)):
  %6 (region 1): `extract` must be in the region of its `fused` node %2
  %4 (region 0): `extract` needs a `fused` node, got `input`
  %5 (region 0): `extract` of output 1, but kernel `k` has 1 output(s)
"
    );
}

#[test]
fn a_kernel_prints_its_body_under_its_node() {
    let mut m = with_kernel(|x, _| FusedKernel {
        name: "lif1".into(),
        inputs: vec![x],
        body: vec![
            K::Input(0),
            K::Const { value: f64::from(0.1f32), dtype: Dtype::F32 },
            K::Binary { op: BinaryOp::Mul, lhs: 1, rhs: 0 },
            K::Threshold { arg: 2, surrogate: Surrogate::Tanh { alpha: 2.0 } },
        ],
        outputs: vec![2, 3],
    });
    let k = Handle::from_index(2);
    let e = m.nodes.append(Node {
        op: Op::Extract { kernel: k, index: 1 },
        ty: Type::new(Dtype::Spike, Shape::batched(&[3])),
        name: Some("lif1.z".into()),
    });
    m.body[0].nodes.push(e);
    assert_eq!(errors(&m), "ok");
    let text = snnc_ir::print(&m);
    let body: Vec<&str> = text.lines().skip_while(|l| !l.contains("fused")).take(8).collect();
    assert_eq!(
        body.join("\n"),
        "    %2 = fused lif1(%0) : f32[B,3] {
      k0 = in %0 : f32
      k1 = const 0.1 : f32
      k2 = mul k1, k0 : f32
      k3 = threshold k2, tanh(alpha=2.0) : spike
      out k2, k3
    }
    %3 = extract %2, 1 : spike[B,3]              ; lif1.z"
    );
}
