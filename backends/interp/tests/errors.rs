//! Bad inputs, weights and states give errors, tested as rendered text.

mod common;

use common::*;
use snnc_interp::RunOptions;
use snnc_ir::{Builder, Dtype, Module, Op, Shape, StateInit, Type};
use snnc_runtime::{ElemType, Tensor, Weights};

/// Inputs `x: f32[T,B,4]`, `img: f32[B,2,3]`; a parameter `w: [3,4]`; a
/// state `s: [B,3]`; T = 2.
fn module() -> Module {
    let mut b = Builder::new("errs", 2, 1e-3, Dtype::F32);
    let xin = b.input("x", Type::seq(Dtype::F32, Shape::batched(&[4])));
    let iin = b.input("img", Type::new(Dtype::F32, Shape::batched(&[2, 3])));
    let pw = b.param(param("w", Dtype::F32, &[3, 4]));
    let s = b.state("s", Type::new(Dtype::F32, Shape::batched(&[3])), StateInit::Fill(0.0));
    b.begin_seq();
    let x = b.emit(Op::Input(xin)).unwrap();
    let _img = b.emit(Op::Input(iin)).unwrap();
    let w = b.emit(Op::Param(pw)).unwrap();
    b.begin_step();
    let xt = b.emit(Op::Step(x)).unwrap();
    let y = b.emit(Op::MatMul { input: xt, weight: w, kind: snnc_ir::MatMulKind::Dense }).unwrap();
    let r = b.state_read(s).unwrap();
    let v = b.add(r, y).unwrap();
    b.state_write(s, v).unwrap();
    b.begin_seq();
    let vs = b.emit(Op::Collect(v)).unwrap();
    b.output("v", vs);
    b.finish()
}

fn good_weights() -> Weights {
    weights(&[("w", Tensor::zeros(vec![3, 4], ElemType::F32))])
}

/// Runs the module and returns the rendered error.
fn error(weights: &Weights, inputs: &[(&str, Tensor)], opts: &RunOptions) -> String {
    match run_with(&module(), weights, inputs, opts) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape.to_vec(), ElemType::F32)
}

#[test]
fn good_inputs_run() {
    let r = run_with(
        &module(),
        &good_weights(),
        &[("x", zeros(&[2, 5, 4])), ("img", zeros(&[5, 2, 3]))],
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(r.outputs["v"].shape, vec![2, 5, 3]);
}

#[test]
fn missing_and_unknown_inputs() {
    let e = error(&good_weights(), &[("x", zeros(&[2, 5, 4]))], &RunOptions::default());
    assert_eq!(e, "missing input `img`; the module's inputs are `x`, `img`");
    let e = error(
        &good_weights(),
        &[("x", zeros(&[2, 5, 4])), ("img", zeros(&[5, 2, 3])), ("label", zeros(&[5]))],
        &RunOptions::default(),
    );
    assert_eq!(e, "unknown input(s) `label`; the module's inputs are `x`, `img`");
}

#[test]
fn wrong_input_shapes_name_the_time_and_batch_dims() {
    let w = good_weights();
    let o = RunOptions::default();
    let e = error(&w, &[("x", zeros(&[2, 5, 7])), ("img", zeros(&[5, 2, 3]))], &o);
    assert_eq!(e, "input `x` has shape [2, 5, 7] but the module expects [T=2, B, 4]");
    let e = error(&w, &[("x", zeros(&[5, 4])), ("img", zeros(&[5, 2, 3]))], &o);
    assert_eq!(e, "input `x` has shape [5, 4] but the module expects [T=2, B, 4]");
    let e = error(&w, &[("x", zeros(&[3, 5, 4])), ("img", zeros(&[5, 2, 3]))], &o);
    assert_eq!(e, "input `x` has shape [3, 5, 4] but the module expects [T=2, B, 4]");
    let e = error(&w, &[("x", zeros(&[2, 5, 4])), ("img", zeros(&[5, 3, 2]))], &o);
    assert_eq!(e, "input `img` has shape [5, 3, 2] but the module expects [B, 2, 3]");
}

#[test]
fn batch_sizes_must_agree_and_be_positive() {
    let w = good_weights();
    let o = RunOptions::default();
    let e = error(&w, &[("x", zeros(&[2, 5, 4])), ("img", zeros(&[4, 2, 3]))], &o);
    assert_eq!(
        e,
        "input `img` has batch size 4 but input `x` has batch size 5; all inputs must have the same batch size"
    );
    let e = error(&w, &[("x", zeros(&[2, 0, 4])), ("img", zeros(&[0, 2, 3]))], &o);
    assert_eq!(e, "input `x` (shape [2, 0, 4]) has batch size 0; the batch size must be at least 1");
}

#[test]
fn inconsistent_tensors_are_reported() {
    let mut x = zeros(&[2, 5, 4]);
    x.data.pop();
    let e = error(&good_weights(), &[("x", x), ("img", zeros(&[5, 2, 3]))], &RunOptions::default());
    assert_eq!(e, "input `x`: tensor data has 39 elements but shape [2, 5, 4] needs 40");
}

#[test]
fn weights_are_checked() {
    let inputs = [("x", zeros(&[2, 5, 4])), ("img", zeros(&[5, 2, 3]))];
    let o = RunOptions::default();
    let e = error(&Weights::new(), &inputs, &o);
    assert_eq!(e, "missing weight `w`; the module's weights are `w`");
    let e = error(&weights(&[("w", zeros(&[4, 3]))]), &inputs, &o);
    assert_eq!(
        e,
        "weight `w` has shape [4, 3] but the module expects [3, 4]; transposed? PyTorch stores Linear weights as \
         [out, in] = [3, 4]: give the transpose"
    );
    let e = error(&weights(&[("w", zeros(&[3, 4])), ("v", zeros(&[1]))]), &inputs, &o);
    assert_eq!(e, "unknown weight(s) `v`; the module's weights are `w`");
}

#[test]
fn initial_states_are_checked() {
    let inputs = [("x", zeros(&[2, 5, 4])), ("img", zeros(&[5, 2, 3]))];
    let mut o = RunOptions::default();
    o.initial_state.insert("t".into(), zeros(&[5, 3]));
    assert_eq!(error(&good_weights(), &inputs, &o), "unknown initial state `t`; the module's states are `s`");
    let mut o = RunOptions::default();
    o.initial_state.insert("s".into(), zeros(&[4, 3]));
    assert_eq!(
        error(&good_weights(), &inputs, &o),
        "initial state `s` has shape [4, 3] but the state has shape [B=5, 3]"
    );
    let mut o = RunOptions::default();
    o.initial_state.insert("s".into(), zeros(&[5, 3, 1]));
    assert_eq!(
        error(&good_weights(), &inputs, &o),
        "initial state `s` has shape [5, 3, 1] but the state has shape [B=5, 3]"
    );
    let mut o = RunOptions::default();
    o.initial_state.insert("s".into(), Tensor::from_f32(vec![5, 3], &[1.0; 15]).unwrap());
    let r = run_with(&module(), &good_weights(), &inputs, &o).unwrap();
    assert_eq!(r.final_state["s"].data, vec![1.0; 15]);
}

#[test]
fn info_of_another_module_is_refused() {
    let m = module();
    let other = Builder::new("empty", 1, 1e-3, Dtype::F32).finish();
    let info = snnc_ir::validate(&other).unwrap();
    let inputs = [("x".to_string(), zeros(&[2, 5, 4])), ("img".to_string(), zeros(&[5, 2, 3]))].into_iter().collect();
    let e = snnc_interp::run(&m, &info, &good_weights(), &inputs, &RunOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the module info does not belong to this module; pass the info `validate` returned for it"
    );
}

#[test]
fn huge_values_are_refused_not_allocated() {
    let huge = |layer: bool| {
        let mut b = Builder::new("huge", 1, 1e-3, Dtype::F32);
        let xin = b.input("x", Type::new(Dtype::F32, Shape::batched(&[1])));
        let _x = b.emit(Op::Input(xin)).unwrap();
        let shape = Shape::fixed(&[u32::MAX, u32::MAX, u32::MAX]);
        let mut u = b.emit(Op::Uniform { seed: 1, shape, seq: false }).unwrap();
        if layer {
            u = b.emit(Op::StopGradient(u)).unwrap();
            b.name(u, "noise.out");
        }
        b.output("u", u);
        let m = b.finish();
        run_with(&m, &Weights::new(), &[("x", zeros(&[1, 1]))], &RunOptions::default()).unwrap_err().to_string()
    };
    assert_eq!(
        huge(false),
        "the value of %1 (f32[4294967295,4294967295,4294967295]) at batch size 1 has too many elements to hold in \
         memory; use a smaller batch, fewer steps or a smaller layer"
    );
    // An unnamed value is named by its layer: that of its nearest named user.
    assert_eq!(
        huge(true),
        "the value of %1 (f32[4294967295,4294967295,4294967295]) of layer `noise` at batch size 1 has too many \
         elements to hold in memory; use a smaller batch, fewer steps or a smaller layer"
    );
}
