//! The converters between kernel bodies and the e-graph language, both
//! ways, and the constant folder against the interpreter.

use std::collections::BTreeMap;

use egg::{EGraph, Id, RecExpr};
use snnc_interp::RunOptions;
use snnc_ir::{BinaryOp, Builder, CompareOp, Dtype, KernelInst, Op, Shape, Surrogate, Type, UnaryOp, validate};
use snnc_passes::fuse::convert::{body_to_expr, expr_to_body, extract, inst_to_node, node_to_inst, op_to_inst};
use snnc_passes::fuse::fold::fold;
use snnc_passes::fuse::lang::{KernelAnalysis, StepLang};
use snnc_runtime::{ElemType, Tensor, Weights};

/// A body holding every kind of instruction (every unary, binary and
/// compare op, every surrogate, every cast, both kinds of constant).
fn every_instruction() -> (Vec<KernelInst>, Vec<u32>) {
    use KernelInst as K;
    let mut body = vec![
        K::Input(0),
        K::Input(1),
        K::Const { value: 0.5, dtype: Dtype::F32 },
        K::Const { value: -0.0, dtype: Dtype::F32 },
        K::Const { value: 1.0, dtype: Dtype::Spike },
    ];
    for op in UnaryOp::ALL {
        body.push(K::Unary { op, arg: 0 });
    }
    for op in BinaryOp::ALL {
        body.push(K::Binary { op, lhs: 0, rhs: 2 });
    }
    for op in [CompareOp::Gt, CompareOp::Ge, CompareOp::Lt, CompareOp::Le, CompareOp::Eq] {
        body.push(K::Compare { op, lhs: 1, rhs: 3 });
    }
    for surrogate in [
        Surrogate::SuperSpike,
        Surrogate::Tanh { alpha: 2.0 },
        Surrogate::Triangle { alpha: 0.3 },
        Surrogate::Circ { alpha: 0.5 },
        Surrogate::Erfc { alpha: 2.0 },
        Surrogate::Heaviside,
    ] {
        body.push(K::Threshold { arg: 0, surrogate });
    }
    let z = body.len() as u32 - 1;
    body.push(K::Select { cond: z, on_true: 2, on_false: 0 });
    body.push(K::StopGradient(z));
    body.push(K::Cast { arg: z, dtype: Dtype::F32 });
    body.push(K::Cast { arg: z, dtype: Dtype::Spike });
    body.push(K::Cast { arg: 0, dtype: Dtype::F64 });
    let outputs = (0..body.len() as u32).collect();
    (body, outputs)
}

#[test]
fn a_body_goes_to_an_expression_and_back_unchanged() {
    let (body, outputs) = every_instruction();
    let (expr, roots) = body_to_expr(&body, &outputs);
    assert_eq!(expr.as_ref().len(), body.len());
    let (back, back_outputs) = expr_to_body(&expr, &roots, Dtype::F32);
    assert_eq!(back, body);
    assert_eq!(back_outputs, outputs);
}

#[test]
fn the_expression_text_reads_back_as_the_same_expression() {
    let (body, outputs) = every_instruction();
    let (expr, _) = body_to_expr(&body, &outputs);
    // One term per root, printed and parsed again.
    for k in 0..expr.as_ref().len() {
        let node = &expr.as_ref()[k];
        let term: RecExpr<StepLang> = egg::Language::build_recexpr(node, |id| expr[id].clone());
        let text = term.to_string();
        let parsed: RecExpr<StepLang> = text.parse().unwrap_or_else(|e| panic!("`{text}`: {e}"));
        assert_eq!(parsed.to_string(), text);
    }
    let text = "(select (threshold:tanh:2.0 (- in0 0.5)) -0.2 (stop_gradient (cast_f32 in1)))";
    let parsed: RecExpr<StepLang> = text.parse().unwrap();
    assert_eq!(parsed.to_string(), text);
    assert_eq!("(* 1s 0s)".parse::<RecExpr<StepLang>>().unwrap().to_string(), "(* 1s 0s)");
    assert!("(* in0)".parse::<RecExpr<StepLang>>().is_err(), "arity is checked when parsing");
    assert!("(frobnicate in0)".parse::<RecExpr<StepLang>>().is_err());
    assert!("nan".parse::<RecExpr<StepLang>>().is_err(), "no NaN constant");
}

#[test]
fn instructions_and_nodes_map_one_to_one() {
    let (body, _) = every_instruction();
    for inst in &body {
        let node = inst_to_node(inst, |k| Id::from(k as usize));
        let back = node_to_inst(&node, Dtype::F32, |id| usize::from(id) as u32);
        assert_eq!(back, *inst, "{node}");
    }
}

#[test]
fn exactly_the_elementwise_ops_become_instructions() {
    let mut b = Builder::new("m", 2, 1e-3, Dtype::F32);
    let x = b.input("x", Type::new(Dtype::F32, Shape::batched(&[3])));
    b.begin_seq();
    let x = b.emit(Op::Input(x)).unwrap();
    let c = b.constant(2.0).unwrap();
    let s = b.threshold(x, Surrogate::SuperSpike).unwrap();
    let ops = [
        Op::Const { value: 2.0, dtype: Dtype::F32 },
        Op::Unary { op: UnaryOp::Exp, arg: x },
        Op::Binary { op: BinaryOp::Sub, lhs: x, rhs: c },
        Op::Compare { op: CompareOp::Le, lhs: x, rhs: c },
        Op::Select { cond: s, on_true: x, on_false: c },
        Op::Threshold { arg: x, surrogate: Surrogate::Heaviside },
        Op::StopGradient(x),
        Op::Cast { arg: s, dtype: Dtype::F32 },
    ];
    for op in &ops {
        assert!(op.is_elementwise());
        assert!(op_to_inst(op, |h| h.index() as u32).is_some(), "{op:?}");
    }
    for op in [Op::Input(snnc_ir::Handle::from_index(0)), Op::Collect(x), Op::Step(x), Op::LogSoftmax { arg: x }] {
        assert!(!op.is_elementwise());
        assert!(op_to_inst(&op, |h| h.index() as u32).is_none(), "{op:?}");
    }
    // Operands are renamed in order.
    let inst = op_to_inst(&Op::Select { cond: s, on_true: x, on_false: c }, |h| 100 + h.index() as u32).unwrap();
    assert_eq!(
        inst,
        KernelInst::Select {
            cond: 100 + s.index() as u32,
            on_true: 100 + x.index() as u32,
            on_false: 100 + c.index() as u32
        }
    );
}

#[test]
fn extraction_computes_a_value_shared_by_two_outputs_once() {
    // Two outputs both use `(+ in0 in1)`.
    let text = ["(* (+ in0 in1) 2.0)", "(- (+ in0 in1) 1.0)"];
    let mut egraph: EGraph<StepLang, KernelAnalysis> = EGraph::new(KernelAnalysis::default());
    let roots: Vec<Id> = text.iter().map(|t| egraph.add_expr(&t.parse().unwrap())).collect();
    egraph.rebuild();
    let (expr, roots) = extract(&egraph, &roots);
    let (body, outputs) = expr_to_body(&expr, &roots, Dtype::F32);
    let adds = body.iter().filter(|i| matches!(i, KernelInst::Binary { op: BinaryOp::Add, .. })).count();
    assert_eq!(adds, 1, "{body:?}");
    assert_eq!(outputs.len(), 2);
    // Children come first.
    for (k, inst) in body.iter().enumerate() {
        assert!(inst.args().iter().all(|&a| (a as usize) < k));
    }
}

#[test]
fn extraction_prefers_the_select_over_norses_reset() {
    let start: RecExpr<StepLang> =
        "(+ (* (- 1.0 (threshold:superspike in0)) in1) (* (threshold:superspike in0) 0.0))".parse().unwrap();
    let runner: egg::Runner<StepLang, KernelAnalysis, ()> =
        egg::Runner::new(KernelAnalysis::default()).with_expr(&start).run(&snnc_passes::fuse::rules::rules());
    let (expr, roots) = extract(&runner.egraph, &runner.roots);
    assert_eq!(expr.to_string(), "(select (threshold:superspike in0) 0.0 in1)");
    assert_eq!(roots.len(), 1);
}

/// Values that hit the corners of IEEE arithmetic.
const SPECIAL: [f64; 14] =
    [0.0, -0.0, 1.0, -1.0, 0.5, 1e-3, 100.0, -2.5, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 3.4e38, 1e-45, 0.1];

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Runs `inst` over every pair of special values in the interpreter (as a
/// one-op module with inputs `a` and `b`) and through `fold`, and compares.
fn check_fold(float: Dtype, inst: KernelInst) {
    let pairs: Vec<(f64, f64)> = SPECIAL.iter().flat_map(|&a| SPECIAL.iter().map(move |&b| (a, b))).collect();
    let n = pairs.len() as u32;
    let mut bld = Builder::new("fold", 1, 1e-3, float);
    let ia = bld.input("a", Type::new(float, Shape::fixed(&[n])));
    let ib = bld.input("b", Type::new(float, Shape::fixed(&[n])));
    bld.begin_seq();
    let a = bld.emit(Op::Input(ia)).unwrap();
    let b = bld.emit(Op::Input(ib)).unwrap();
    // Spike operands where the instruction needs one: a threshold of the
    // input (the fold gets the same 0/1).
    let za = bld.threshold(a, Surrogate::Heaviside).unwrap();
    let operand = |k: u32| [a, b, za][k as usize];
    let op = match inst {
        KernelInst::Unary { op, .. } => Op::Unary { op, arg: a },
        KernelInst::Binary { op, .. } => Op::Binary { op, lhs: a, rhs: b },
        KernelInst::Compare { op, .. } => Op::Compare { op, lhs: a, rhs: b },
        KernelInst::Select { .. } => Op::Select { cond: za, on_true: a, on_false: b },
        KernelInst::Threshold { surrogate, .. } => Op::Threshold { arg: a, surrogate },
        KernelInst::StopGradient(_) => Op::StopGradient(a),
        KernelInst::Cast { dtype, .. } => Op::Cast { arg: operand(0), dtype },
        KernelInst::Input(_) | KernelInst::Const { .. } => unreachable!(),
    };
    let y = bld.emit(op).unwrap();
    bld.output("y", y);
    let m = bld.finish();
    let info = validate(&m).unwrap();
    let elem = if float == Dtype::F64 { ElemType::F64 } else { ElemType::F32 };
    let round = |x: f64| if float == Dtype::F64 { x } else { f64::from(x as f32) };
    let ta = Tensor::new(vec![n as usize], elem, pairs.iter().map(|p| round(p.0)).collect()).unwrap();
    let tb = Tensor::new(vec![n as usize], elem, pairs.iter().map(|p| round(p.1)).collect()).unwrap();
    let inputs = BTreeMap::from([("a".to_string(), ta), ("b".to_string(), tb)]);
    let r = snnc_interp::run(&m, &info, &Weights::new(), &inputs, &RunOptions::default()).unwrap();
    let got = &r.outputs["y"].data;
    for (i, &(pa, pb)) in pairs.iter().enumerate() {
        let (pa, pb) = (round(pa), round(pb));
        let args: Vec<f64> = match inst {
            KernelInst::Select { .. } => vec![if pa > 0.0 { 1.0 } else { 0.0 }, pa, pb],
            _ => vec![pa, pb],
        };
        let folded = fold(float, &inst, &args[..inst.args().len()]).unwrap();
        assert!(same(folded, got[i]), "{float} {inst:?} on ({pa}, {pb}): fold {folded}, interpreter {}", got[i]);
    }
}

#[test]
fn folding_computes_what_the_interpreter_computes() {
    for float in [Dtype::F32, Dtype::F64] {
        for op in UnaryOp::ALL {
            check_fold(float, KernelInst::Unary { op, arg: 0 });
        }
        for op in BinaryOp::ALL {
            check_fold(float, KernelInst::Binary { op, lhs: 0, rhs: 1 });
        }
        for op in [CompareOp::Gt, CompareOp::Ge, CompareOp::Lt, CompareOp::Le, CompareOp::Eq] {
            check_fold(float, KernelInst::Compare { op, lhs: 0, rhs: 1 });
        }
        check_fold(float, KernelInst::Select { cond: 2, on_true: 0, on_false: 1 });
        check_fold(float, KernelInst::Threshold { arg: 0, surrogate: Surrogate::SuperSpike });
        check_fold(float, KernelInst::StopGradient(0));
        check_fold(float, KernelInst::Cast { arg: 0, dtype: Dtype::F32 });
        if float == Dtype::F64 {
            // (An f64 value cannot be an output of an f32 module.)
            check_fold(float, KernelInst::Cast { arg: 0, dtype: Dtype::F64 });
        }
    }
}
