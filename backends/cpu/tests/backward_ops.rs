//! The backward-pass ops (made by autodiff) and reverse step loops on the
//! CPU backend, against the reference interpreter: floats within 1e-5
//! relative (`|a - e| <= 1e-5 * max(1, |e|)`), and the same bits where the
//! CPU kernel sums in the interpreter's order. Batch sizes 1 and 3.

use std::collections::BTreeMap;

use snnc_ir::{
    BinaryOp, Builder, Dtype, FusedKernel, Handle, KernelInst, MatMulKind, Module, Node, Op, Param, ParamInit, PoolOp,
    ReduceOp, Shape, StateInit, Type, validate,
};
use snnc_runtime::{ElemType, Tensor, Weights};

const F32: Dtype = Dtype::F32;
const SPIKE: Dtype = Dtype::Spike;
const BATCHES: [usize; 2] = [1, 3];

/// A deterministic generator of test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// Uniform in [-1, 1).
    fn float(&mut self) -> f64 {
        (self.next() % (1 << 24)) as f64 / (1 << 23) as f64 - 1.0
    }

    /// 1 with probability `p`.
    fn spike(&mut self, p: f64) -> f64 {
        if ((self.next() % 1000) as f64) < p * 1000.0 { 1.0 } else { 0.0 }
    }
}

/// Random data of the full shape of `ty` (`T` resolved to `steps`, `B` to
/// `batch`): spikes with density 0.3 (so max-pool windows tie), else
/// floats in [-1, 1).
fn data(rng: &mut Rng, ty: &Type, steps: usize, batch: usize) -> Tensor {
    let mut shape = Vec::new();
    if ty.seq {
        shape.push(steps);
    }
    shape.extend(ty.shape.resolve(batch));
    let n = shape.iter().product();
    let values: Vec<f64> =
        (0..n).map(|_| if ty.dtype == SPIKE { rng.spike(0.3) } else { f64::from(rng.float() as f32) }).collect();
    Tensor::new(shape, ElemType::F32, values).unwrap()
}

fn param(name: &str, dims: &[u32]) -> Param {
    Param { name: name.into(), dtype: F32, shape: Shape::fixed(dims), trainable: true, init: ParamInit::Zeros }
}

/// Whether `got` agrees with `want`: within 1e-5 relative, or bitwise.
fn agree(what: &str, got: &Tensor, want: &Tensor, exact: bool) {
    assert_eq!(got.shape, want.shape, "{what}: shapes differ");
    for (i, (&g, &w)) in got.data.iter().zip(&want.data).enumerate() {
        let ok = if exact {
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan())
        } else {
            (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= 1e-5 * w.abs().max(1.0)
        };
        assert!(ok, "{what}[{i}]: cpu {g}, interpreter {w}");
    }
}

/// Runs `m` on the interpreter and the CPU backend (twice, recording or
/// not) with random inputs and weights, and compares outputs, final states
/// and traces. `exact`: every value must have the interpreter's bits.
fn check(m: &Module, batch: usize, seed: u64, exact: bool) -> snnc_cpu::Executable {
    let info = validate(m).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(seed);
    let steps = m.steps as usize;
    let inputs: BTreeMap<String, Tensor> =
        m.inputs.iter().map(|(_, i)| (i.name.clone(), data(&mut rng, &i.ty, steps, batch))).collect();
    let weights: Weights = m
        .params
        .iter()
        .map(|(_, p)| (p.name.clone(), data(&mut rng, &Type::new(F32, p.shape.clone()), 1, 1)))
        .collect();
    let exe = snnc_cpu::compile(m, &info).unwrap_or_else(|e| panic!("{e}"));
    for record in [false, true] {
        let want =
            snnc_interp::run(m, &info, &weights, &inputs, &snnc_interp::RunOptions { record, ..Default::default() })
                .unwrap();
        let opts = snnc_cpu::RunOptions { record, ..Default::default() };
        let got = exe.run(&weights, &inputs, &opts).unwrap();
        let again = exe.run(&weights, &inputs, &opts).unwrap();
        for (name, t) in &want.outputs {
            agree(&format!("output {name} (batch {batch})"), &got.outputs[name], t, exact);
            agree(&format!("rerun of output {name}"), &again.outputs[name], &got.outputs[name], true);
        }
        for (name, t) in &want.final_state {
            agree(&format!("state {name} (batch {batch})"), &got.final_state[name], t, exact);
        }
        assert_eq!(got.traces.keys().collect::<Vec<_>>(), want.traces.keys().collect::<Vec<_>>());
        for (name, t) in &want.traces {
            agree(&format!("trace {name} (batch {batch})"), &got.traces[name], t, exact);
        }
    }
    exe
}

/// A module of one sequence region over the given inputs; `body` returns
/// the outputs.
fn seq_module(
    steps: u32,
    inputs: &[(&str, Type)],
    params: &[(&str, &[u32])],
    body: impl FnOnce(&mut Builder, &[Handle<Node>], &[Handle<Node>]) -> Vec<Handle<Node>>,
) -> Module {
    let mut b = Builder::new("backward", steps, 1e-3, F32);
    let ih: Vec<_> = inputs.iter().map(|(n, t)| b.input(*n, t.clone())).collect();
    let ph: Vec<_> = params.iter().map(|(n, d)| b.param(param(n, d))).collect();
    b.begin_seq();
    let ins: Vec<_> = ih.into_iter().map(|h| b.emit(Op::Input(h)).unwrap()).collect();
    let ps: Vec<_> = ph.into_iter().map(|h| b.emit(Op::Param(h)).unwrap()).collect();
    let outs = body(&mut b, &ins, &ps);
    for (k, o) in outs.into_iter().enumerate() {
        b.name(o, format!("y{k}"));
        b.output(format!("y{k}"), o);
    }
    b.finish()
}

fn seq(dtype: Dtype, dims: &[u32]) -> Type {
    Type::seq(dtype, Shape::batched(dims))
}

#[test]
fn transpose_and_the_input_gradient_of_matmul() {
    for batch in BATCHES {
        let m = seq_module(5, &[("g", seq(F32, &[4]))], &[("w", &[4, 70])], |b, i, p| {
            let wt = b.emit(Op::Transpose(p[0])).unwrap();
            let gx = b.emit(Op::MatMul { input: i[0], weight: wt, kind: MatMulKind::Dense }).unwrap();
            vec![wt, gx]
        });
        check(&m, batch, 1, false);
    }
}

#[test]
fn matmul_grad_weight_dense_and_event_driven() {
    // 5 steps: at most 15 rows (the interpreter's loop); 40 steps: 40 or
    // 120 rows (the GEMM, and threads over the rows of the result).
    for steps in [5, 40] {
        for batch in BATCHES {
            let inputs = [("g", seq(F32, &[9])), ("x", seq(F32, &[70])), ("s", seq(SPIKE, &[70]))];
            let m = seq_module(steps, &inputs, &[], |b, i, _| {
                let dense = b.emit(Op::MatMulGradWeight { grad: i[0], input: i[1], kind: MatMulKind::Dense }).unwrap();
                let dense_spikes =
                    b.emit(Op::MatMulGradWeight { grad: i[0], input: i[2], kind: MatMulKind::Dense }).unwrap();
                vec![dense, dense_spikes]
            });
            check(&m, batch, u64::from(steps), steps == 5);
            // The event-driven product sums in the interpreter's order.
            let m = seq_module(steps, &inputs, &[], |b, i, _| {
                vec![b.emit(Op::MatMulGradWeight { grad: i[0], input: i[2], kind: MatMulKind::EventDriven }).unwrap()]
            });
            check(&m, batch, u64::from(steps) + 7, true);
        }
    }
}

#[test]
fn event_driven_grad_weight_with_a_non_finite_gradient_has_the_interpreters_bits() {
    let (steps, batch, n_in, n_out) = (6usize, 2usize, 300usize, 5usize);
    let m = seq_module(
        steps as u32,
        &[("g", seq(F32, &[n_out as u32])), ("s", seq(SPIKE, &[n_in as u32]))],
        &[],
        |b, i, _| {
            vec![b.emit(Op::MatMulGradWeight { grad: i[0], input: i[1], kind: MatMulKind::EventDriven }).unwrap()]
        },
    );
    let info = validate(&m).unwrap();
    let mut rng = Rng(3);
    let mut g = data(&mut rng, &m.inputs.iter().next().unwrap().1.ty, steps, batch);
    g.data[7] = f64::INFINITY;
    g.data[13] = f64::NAN;
    let s = data(&mut rng, &seq(SPIKE, &[n_in as u32]), steps, batch);
    let inputs: BTreeMap<String, Tensor> = [("g".to_string(), g), ("s".to_string(), s)].into();
    let want = snnc_interp::run(&m, &info, &Weights::new(), &inputs, &Default::default()).unwrap();
    let got = snnc_cpu::compile(&m, &info).unwrap().run(&Weights::new(), &inputs, &Default::default()).unwrap();
    assert!(want.outputs["y0"].data.iter().any(|v| v.is_nan()));
    agree("dw", &got.outputs["y0"], &want.outputs["y0"], true);
}

#[test]
fn sum_to_over_time_and_batch() {
    for batch in BATCHES {
        let inputs = [("x", seq(F32, &[3, 5])), ("s", seq(SPIKE, &[5]))];
        let m = seq_module(7, &inputs, &[], |b, i, _| {
            vec![
                b.emit(Op::SumTo { arg: i[0], shape: Shape::fixed(&[5]) }).unwrap(),
                b.emit(Op::SumTo { arg: i[0], shape: Shape::fixed(&[3, 5]) }).unwrap(),
                b.emit(Op::SumTo { arg: i[0], shape: Shape::batched(&[3, 5]) }).unwrap(),
                b.emit(Op::SumTo { arg: i[1], shape: Shape::fixed(&[5]) }).unwrap(),
            ]
        });
        check(&m, batch, 11, true);
    }
}

/// A convolution's stride, padding, dilation and groups.
#[derive(Clone, Copy)]
struct Attrs {
    stride: [u32; 2],
    padding: [u32; 2],
    dilation: [u32; 2],
    groups: u32,
}

/// Stride and padding, dilation 1, one group.
fn sp(stride: [u32; 2], padding: [u32; 2]) -> Attrs {
    Attrs { stride, padding, dilation: [1, 1], groups: 1 }
}

/// conv2d forward and its three gradients, over `steps` steps.
fn conv_module(steps: u32, c: u32, hw: [u32; 2], o: u32, k: [u32; 2], a: Attrs) -> Module {
    let Attrs { stride, padding, dilation, groups } = a;
    let out = |ax: usize| (hw[ax] + 2 * padding[ax] - dilation[ax] * (k[ax] - 1) - 1) / stride[ax] + 1;
    let inputs = [
        ("x", seq(F32, &[c, hw[0], hw[1]])),
        ("g", seq(F32, &[o, out(0), out(1)])),
        ("s", seq(SPIKE, &[c, hw[0], hw[1]])),
    ];
    seq_module(steps, &inputs, &[("w", &[o, c / groups, k[0], k[1]])], |b, i, p| {
        let (x, g, s, w) = (i[0], i[1], i[2], p[0]);
        let (dense, event) = (MatMulKind::Dense, MatMulKind::EventDriven);
        let conv = |input, kind| Op::Conv2d { input, weight: w, bias: None, stride, padding, dilation, groups, kind };
        let gw =
            |input, kind| Op::Conv2dGradWeight { grad: g, input, kernel: k, stride, padding, dilation, groups, kind };
        let y = b.emit(conv(x, dense)).unwrap();
        let ys = b.emit(conv(s, event)).unwrap();
        let gi = Op::Conv2dGradInput { grad: g, weight: w, stride, padding, dilation, groups, input_size: hw };
        let dx = b.emit(gi).unwrap();
        let dw = b.emit(gw(x, dense)).unwrap();
        let dws = b.emit(gw(s, dense)).unwrap();
        let dwe = b.emit(gw(s, event)).unwrap();
        let db = b.emit(Op::Conv2dGradBias { grad: g }).unwrap();
        vec![y, ys, dx, dw, dws, dwe, db]
    })
}

#[test]
fn conv2d_grads_stride_2_padding_1() {
    for batch in BATCHES {
        // 12 steps: 12 or 36 images (more than one chunk of the weight
        // gradient's GEMM).
        check(&conv_module(12, 2, [7, 6], 3, [3, 3], sp([2, 2], [1, 1])), batch, 21, false);
        check(&conv_module(2, 1, [6, 5], 2, [3, 2], sp([2, 1], [0, 1])), batch, 22, false);
        check(&conv_module(3, 3, [5, 5], 4, [1, 1], sp([1, 1], [0, 0])), batch, 23, false);
    }
}

#[test]
fn conv2d_grads_with_dilation_and_groups() {
    for batch in BATCHES {
        let a = Attrs { stride: [1, 2], padding: [2, 4], dilation: [2, 1], groups: 2 };
        check(&conv_module(3, 4, [9, 11], 6, [3, 5], a), batch, 25, false);
        let a = Attrs { stride: [2, 1], padding: [0, 1], dilation: [3, 2], groups: 3 };
        check(&conv_module(2, 3, [10, 8], 3, [2, 3], a), batch, 26, false);
        // Depthwise, one image per step (the event-driven kernel's shape runs dense).
        let a = Attrs { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 4 };
        check(&conv_module(2, 4, [6, 6], 8, [3, 3], a), batch, 27, false);
    }
}

/// The event-driven convolution and its weight gradient over a spike input:
/// `spike_conv2d` and `spike_conv2d_grad_weight` (bias included).
fn spike_conv_module(
    steps: u32,
    c: u32,
    hw: [u32; 2],
    o: u32,
    k: [u32; 2],
    stride: [u32; 2],
    padding: [u32; 2],
) -> Module {
    let out = |ax: usize| (hw[ax] + 2 * padding[ax] - k[ax]) / stride[ax] + 1;
    let inputs = [("g", seq(F32, &[o, out(0), out(1)])), ("s", seq(SPIKE, &[c, hw[0], hw[1]]))];
    seq_module(steps, &inputs, &[("w", &[o, c, k[0], k[1]]), ("bias", &[o])], |b, i, p| {
        let (g, s, w, bias) = (i[0], i[1], p[0], p[1]);
        let event = MatMulKind::EventDriven;
        let (dilation, groups) = ([1, 1], 1);
        let y = Op::Conv2d { input: s, weight: w, bias: Some(bias), stride, padding, dilation, groups, kind: event };
        let y = b.emit(y).unwrap();
        let dw = Op::Conv2dGradWeight { grad: g, input: s, kernel: k, stride, padding, dilation, groups, kind: event };
        let dw = b.emit(dw).unwrap();
        vec![y, dw]
    })
}

#[test]
fn spike_conv2d_has_the_interpreters_bits() {
    for batch in BATCHES {
        check(&spike_conv_module(12, 2, [7, 6], 3, [3, 3], [2, 2], [1, 1]), batch, 31, true);
        check(&spike_conv_module(2, 1, [6, 5], 2, [3, 2], [2, 1], [0, 1]), batch, 32, true);
        check(&spike_conv_module(3, 3, [5, 5], 4, [1, 1], [1, 1], [0, 0]), batch, 33, true);
        check(&spike_conv_module(5, 4, [12, 12], 17, [5, 5], [1, 1], [2, 2]), batch, 34, true);
    }
}

#[test]
fn conv2d_grad_bias_has_the_interpreters_bits() {
    for batch in BATCHES {
        let m = seq_module(4, &[("g", seq(F32, &[3, 5, 4]))], &[], |b, i, _| {
            vec![b.emit(Op::Conv2dGradBias { grad: i[0] }).unwrap()]
        });
        check(&m, batch, 24, true);
    }
}

#[test]
fn max_pool2d_grad_with_ties_and_overlapping_windows() {
    for batch in BATCHES {
        let cases =
            [([3, 3], [2, 2], [0, 0]), ([2, 2], [2, 2], [0, 0]), ([2, 3], [1, 2], [0, 0]), ([3, 4], [2, 1], [1, 2])];
        for (kernel, stride, padding) in cases {
            let out = |ax: usize| (7 + 2 * padding[ax] - kernel[ax]) / stride[ax] + 1;
            let inputs =
                [("s", seq(SPIKE, &[2, 7, 7])), ("x", seq(F32, &[2, 7, 7])), ("g", seq(F32, &[2, out(0), out(1)]))];
            let m = seq_module(3, &inputs, &[], |b, i, _| {
                let mut outs = Vec::new();
                for op in [PoolOp::Max, PoolOp::Avg, PoolOp::Sum] {
                    for input in [i[0], i[1]] {
                        outs.push(b.emit(Op::Pool2d { op, input, kernel, stride, padding }).unwrap());
                        let gx = Op::Pool2dGrad { op, input, grad: i[2], kernel, stride, padding };
                        outs.push(b.emit(gx).unwrap());
                    }
                }
                outs
            });
            check(&m, batch, 31, true);
        }
    }
}

#[test]
fn reduce_time_grad_of_every_reduction() {
    for batch in BATCHES {
        let inputs = [("s", seq(SPIKE, &[6])), ("x", seq(F32, &[6])), ("g", Type::new(F32, Shape::batched(&[6])))];
        let m = seq_module(5, &inputs, &[], |b, i, _| {
            let mut outs = Vec::new();
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Last] {
                for arg in [i[0], i[1]] {
                    outs.push(b.emit(Op::ReduceTimeGrad { op, arg, grad: i[2] }).unwrap());
                }
            }
            outs
        });
        check(&m, batch, 41, true);
    }
}

#[test]
fn log_softmax_grad() {
    for batch in BATCHES {
        let m = seq_module(4, &[("x", seq(F32, &[10])), ("g", seq(F32, &[10]))], &[], |b, i, _| {
            let ls = b.emit(Op::LogSoftmax { arg: i[0] }).unwrap();
            vec![b.emit(Op::LogSoftmaxGrad { out: ls, grad: i[1] }).unwrap()]
        });
        check(&m, batch, 51, true);
    }
}

/// A reverse step loop holding the backward ops: a dense product with a
/// parameter (the transposed weight is made at the first iteration, t =
/// T-1), per-step weight gradients accumulated in states, a convolution's
/// input gradient, a log-softmax gradient and a uniform draw, all collected.
fn reverse_loop(steps: u32, reverse: bool) -> Module {
    let mut b = Builder::new("bwd", steps, 1e-3, F32);
    let gi = b.input("g", seq(F32, &[4]));
    let si = b.input("s", seq(SPIKE, &[12]));
    let ci = b.input("cg", seq(F32, &[2, 3, 3]));
    let wp = b.param(param("w", &[4, 12]));
    let kp = b.param(param("k", &[2, 1, 3, 3]));
    let dw_state = b.state("dw", Type::new(F32, Shape::fixed(&[4, 12])), StateInit::Fill(0.0));
    let dwe_state = b.state("dwe", Type::new(F32, Shape::fixed(&[4, 12])), StateInit::Fill(0.0));
    let carry = b.state("carry", Type::new(F32, Shape::batched(&[12])), StateInit::Fill(0.25));
    b.begin_seq();
    let (g, s, cg) = (b.emit(Op::Input(gi)).unwrap(), b.emit(Op::Input(si)).unwrap(), b.emit(Op::Input(ci)).unwrap());
    let w = b.emit(Op::Param(wp)).unwrap();
    let k = b.emit(Op::Param(kp)).unwrap();
    let wt = b.emit(Op::Transpose(w)).unwrap();
    b.begin_step();
    let (gt, st, cgt) = (b.emit(Op::Step(g)).unwrap(), b.emit(Op::Step(s)).unwrap(), b.emit(Op::Step(cg)).unwrap());
    // grad @ W, plus the carried gradient of the next step.
    let gx = b.emit(Op::MatMul { input: gt, weight: wt, kind: MatMulKind::Dense }).unwrap();
    let c = b.state_read(carry).unwrap();
    let half = b.constant(0.5).unwrap();
    let decayed = b.binary(BinaryOp::Mul, c, half).unwrap();
    let total = b.add(gx, decayed).unwrap();
    b.name(total, "total");
    b.state_write(carry, total).unwrap();
    let dw = b.state_read(dw_state).unwrap();
    let step_dw = b.emit(Op::MatMulGradWeight { grad: gt, input: st, kind: MatMulKind::Dense }).unwrap();
    let dw2 = b.add(dw, step_dw).unwrap();
    b.state_write(dw_state, dw2).unwrap();
    let dwe = b.state_read(dwe_state).unwrap();
    let step_dwe = b.emit(Op::MatMulGradWeight { grad: gt, input: st, kind: MatMulKind::EventDriven }).unwrap();
    let dwe2 = b.add(dwe, step_dwe).unwrap();
    b.state_write(dwe_state, dwe2).unwrap();
    let dx = b
        .emit(Op::Conv2dGradInput {
            grad: cgt,
            weight: k,
            stride: [2, 2],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
            input_size: [5, 6],
        })
        .unwrap();
    let ls = b.emit(Op::LogSoftmax { arg: gt }).unwrap();
    let lg = b.emit(Op::LogSoftmaxGrad { out: ls, grad: gt }).unwrap();
    b.name(lg, "lg");
    let u = b.emit(Op::Uniform { seed: 3, shape: Shape::batched(&[2]), seq: false }).unwrap();
    b.begin_seq();
    for (name, v) in [("total", total), ("dx", dx), ("lg", lg), ("u", u), ("st", st)] {
        let col = b.emit(Op::Collect(v)).unwrap();
        b.output(format!("{name}_seq"), col);
    }
    let mut m = b.finish();
    m.body[1].reverse = reverse;
    m
}

#[test]
fn reverse_step_loop_with_backward_ops() {
    for batch in BATCHES {
        for reverse in [false, true] {
            check(&reverse_loop(6, reverse), batch, 61, false);
        }
    }
}

/// `acc' = 0.9 acc + x_t` as one `fused` kernel: a loop that runs as one
/// whole-loop kernel (of 16-, 4- and 1-element blocks: 5 elements per
/// sample).
fn fused_accumulator(steps: u32, reverse: bool) -> Module {
    let mut b = Builder::new("acc", steps, 1e-3, F32);
    let xi = b.input("x", seq(F32, &[5]));
    let s = b.state("acc", Type::new(F32, Shape::batched(&[5])), StateInit::Fill(0.5));
    b.begin_seq();
    let x = b.emit(Op::Input(xi)).unwrap();
    b.begin_step();
    let xt = b.emit(Op::Step(x)).unwrap();
    let a = b.state_read(s).unwrap();
    let kernel = FusedKernel {
        name: "acc".into(),
        inputs: vec![a, xt],
        body: vec![
            KernelInst::Input(0),
            KernelInst::Input(1),
            KernelInst::Const { value: 0.9, dtype: F32 },
            KernelInst::Binary { op: BinaryOp::Mul, lhs: 0, rhs: 2 },
            KernelInst::Binary { op: BinaryOp::Add, lhs: 3, rhs: 1 },
        ],
        outputs: vec![4],
    };
    let f = b.emit(Op::Fused(Box::new(kernel))).unwrap();
    b.name(f, "acc");
    b.state_write(s, f).unwrap();
    b.begin_seq();
    let col = b.emit(Op::Collect(f)).unwrap();
    b.output("acc", col);
    let mut m = b.finish();
    m.body[1].reverse = reverse;
    m
}

#[test]
fn reverse_fused_loop_agrees_with_the_interpreter() {
    for batch in BATCHES {
        for reverse in [false, true] {
            let m = fused_accumulator(9, reverse);
            let exe = check(&m, batch, 71, true);
            // Both directions run as one whole-loop kernel.
            assert_eq!(exe.whole_loop_count(), 1);
        }
    }
}

#[test]
fn reverse_whole_loop_kernel_is_the_forward_one_on_reversed_time() {
    use snnc_cpu::jit::{KernelCompiler, StepInput};
    let m = fused_accumulator(1, false);
    let kernel =
        m.nodes.iter().find_map(|(_, n)| if let Op::Fused(k) = &n.op { Some((**k).clone()) } else { None }).unwrap();
    let inputs = [StepInput::State { output: 0 }, StepInput::Seq];
    let mut jit = KernelCompiler::new().unwrap();
    let fwd = jit.compile_steps_ordered(&kernel, &inputs, &[true], false).unwrap();
    let rev = jit.compile_steps_ordered(&kernel, &inputs, &[true], true).unwrap();
    let text = snnc_cpu::jit::step_kernel_clif_ordered(&kernel, &inputs, &[true], true).unwrap();
    assert!(text.contains("isub"), "{text}");
    // 37 elements: every block size; 11 steps.
    let (n, steps) = (37usize, 11usize);
    let mut rng = Rng(5);
    let x: Vec<f32> = (0..n * steps).map(|_| rng.float() as f32).collect();
    let x_rev: Vec<f32> = (0..steps).rev().flat_map(|t| x[t * n..(t + 1) * n].to_vec()).collect();
    let init: Vec<f32> = (0..n).map(|_| rng.float() as f32).collect();
    let (mut s_fwd, mut s_rev) = (init.clone(), init);
    let (mut o_fwd, mut o_rev) = (vec![0.0f32; n * steps], vec![0.0f32; n * steps]);
    fwd.run(&[&x_rev], &mut [&mut s_fwd], &mut [&mut o_fwd], n, steps).unwrap();
    rev.run(&[&x], &mut [&mut s_rev], &mut [&mut o_rev], n, steps).unwrap();
    assert_eq!(
        s_fwd.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        s_rev.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    for t in 0..steps {
        let a = &o_rev[t * n..(t + 1) * n];
        let b = &o_fwd[(steps - 1 - t) * n..(steps - t) * n];
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
