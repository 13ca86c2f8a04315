//! Bad inputs, weights and states give the interpreter's errors (both call
//! `snnc_runtime::check`), and a value too large to hold names its layer.

use std::collections::BTreeMap;

use snnc_ir::{Builder, Dtype, MatMulKind, Module, Op, Param, ParamInit, Shape, StateInit, Type, validate};
use snnc_runtime::{ElemType, Tensor, Weights};

/// Inputs `x: f32[T,B,4]`, `img: f32[B,2,3]`; a parameter `w: [3,4]`; a
/// state `s: [B,3]`; T = 2.
fn module() -> Module {
    let mut b = Builder::new("errs", 2, 1e-3, Dtype::F32);
    let xin = b.input("x", Type::seq(Dtype::F32, Shape::batched(&[4])));
    let iin = b.input("img", Type::new(Dtype::F32, Shape::batched(&[2, 3])));
    let shape = Shape::fixed(&[3, 4]);
    let pw = b.param(Param { name: "w".into(), dtype: Dtype::F32, shape, trainable: true, init: ParamInit::Zeros });
    let s = b.state("s", Type::new(Dtype::F32, Shape::batched(&[3])), StateInit::Fill(0.0));
    b.begin_seq();
    let x = b.emit(Op::Input(xin)).unwrap();
    let _img = b.emit(Op::Input(iin)).unwrap();
    let w = b.emit(Op::Param(pw)).unwrap();
    b.begin_step();
    let xt = b.emit(Op::Step(x)).unwrap();
    let y = b.emit(Op::MatMul { input: xt, weight: w, kind: MatMulKind::Dense }).unwrap();
    let r = b.state_read(s).unwrap();
    let v = b.add(r, y).unwrap();
    b.state_write(s, v).unwrap();
    b.begin_seq();
    let vs = b.emit(Op::Collect(v)).unwrap();
    b.output("v", vs);
    b.finish()
}

fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape.to_vec(), ElemType::F32)
}

fn tensors(list: &[(&str, Tensor)]) -> BTreeMap<String, Tensor> {
    list.iter().map(|(k, t)| (k.to_string(), t.clone())).collect()
}

/// The errors of the cpu backend and of the interpreter on one run.
fn errors(m: &Module, weights: &Weights, inputs: &[(&str, Tensor)], state: &[(&str, Tensor)]) -> (String, String) {
    let info = validate(m).unwrap();
    let inputs = tensors(inputs);
    let cpu_opts = snnc_cpu::RunOptions { record: false, initial_state: tensors(state), ..Default::default() };
    let exe = snnc_cpu::compile(m, &info).unwrap();
    let cpu = exe.run(weights, &inputs, &cpu_opts).map(|_| ()).unwrap_err().to_string();
    let opts = snnc_interp::RunOptions { record: false, initial_state: tensors(state) };
    let interp = snnc_interp::run(m, &info, weights, &inputs, &opts).map(|_| ()).unwrap_err().to_string();
    (cpu, interp)
}

type Named = (&'static str, Tensor);

#[test]
fn the_backends_refuse_the_same_runs_with_the_same_words() {
    let m = module();
    let good = tensors(&[("w", zeros(&[3, 4]))]);
    let (x, img) = (zeros(&[2, 5, 4]), zeros(&[5, 2, 3]));
    let cases: Vec<(Weights, Vec<Named>, Vec<Named>, &str)> = vec![
        (good.clone(), vec![("x", x.clone())], vec![], "missing input `img`; the module's inputs are `x`, `img`"),
        (
            good.clone(),
            vec![("x", x.clone()), ("img", zeros(&[4, 2, 3]))],
            vec![],
            "input `img` has batch size 4 but input `x` has batch size 5; all inputs must have the same batch size",
        ),
        (
            tensors(&[("w", zeros(&[4, 3]))]),
            vec![("x", x.clone()), ("img", img.clone())],
            vec![],
            "weight `w` has shape [4, 3] but the module expects [3, 4]; transposed? PyTorch stores Linear weights \
             as [out, in] = [3, 4]: give the transpose",
        ),
        (
            good.clone(),
            vec![("x", x.clone()), ("img", img.clone())],
            vec![("s", zeros(&[4, 3]))],
            "initial state `s` has shape [4, 3] but the state has shape [B=5, 3]",
        ),
    ];
    for (weights, inputs, state, want) in cases {
        let (cpu, interp) = errors(&m, &weights, &inputs, &state);
        assert_eq!(cpu, want);
        assert_eq!(interp, want);
    }
}

#[test]
fn a_value_too_large_names_its_layer() {
    let mut b = Builder::new("huge", 1, 1e-3, Dtype::F32);
    let xin = b.input("x", Type::new(Dtype::F32, Shape::batched(&[1])));
    let _x = b.emit(Op::Input(xin)).unwrap();
    let shape = Shape::fixed(&[u32::MAX, u32::MAX, u32::MAX]);
    let u = b.emit(Op::Uniform { seed: 1, shape, seq: false }).unwrap();
    let s = b.emit(Op::StopGradient(u)).unwrap();
    b.name(s, "noise.out");
    b.output("s", s);
    let m = b.finish();
    let (cpu, interp) = errors(&m, &Weights::new(), &[("x", zeros(&[1, 1]))], &[]);
    let want = "the value of %1 (f32[4294967295,4294967295,4294967295]) of layer `noise` at batch size 1 has too many \
                elements to hold in memory; use a smaller batch, fewer steps or a smaller layer";
    assert_eq!(cpu, want);
    assert_eq!(interp, want);
}
