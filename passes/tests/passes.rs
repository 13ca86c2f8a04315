//! The passes on hand-written modules and on the fixture nets: the
//! structure each pass should produce, and the interpreter's results before
//! and after each pass, which must agree bit for bit.

mod common;

use std::collections::BTreeMap;

use common::{apply, assert_same, fixture, loop_states, run};
use snnc_ir::{
    BinaryOp, Builder, Dtype, MatMulKind, Module, Op, Param, ParamInit, RegionKind, Shape, StateInit, Type, UnaryOp,
};
use snnc_passes::{Pass, PassOptions, PipelineKind, Sparsify};

// ---------------------------------------------------------------------------
// Values: every pass, alone and in the default pipeline, on every fixture.

#[test]
fn every_pass_alone_keeps_every_value_bit_for_bit() {
    for path in common::fixture_paths() {
        let module = common::lower_file(&path, Dtype::F32);
        // The big nets with one sample, after the pass that changes them
        // most (and after the whole pipeline below).
        let batch = if common::heavy(&path) { 1 } else { 2 };
        let reference = common::run_batch(&module, batch);
        for name in snnc_passes::pass_names() {
            if common::heavy(&path) && name != "time-batch" {
                continue;
            }
            let mut m = module.clone();
            apply(&mut m, name);
            assert_same(&format!("{} after {name}", path.display()), &reference, &common::run_batch(&m, batch));
        }
    }
}

#[test]
fn the_default_pipeline_keeps_every_value_bit_for_bit_after_each_pass() {
    for float in [Dtype::F32, Dtype::F64] {
        for path in common::fixture_paths() {
            // The big example nets: in f32, with one sample, at the end.
            let big = common::heavy(&path);
            if float == Dtype::F64 && big {
                continue;
            }
            let batch = if big { 1 } else { 2 };
            let mut module = common::lower_file(&path, float);
            let reference = common::run_batch(&module, batch);
            let pipeline = snnc_passes::default_pipeline(PipelineKind::Interp);
            let mut seen = 0;
            pipeline
                .run(&mut module, &mut |after| {
                    seen += 1;
                    if big && seen < pipeline.len() {
                        return;
                    }
                    let what = format!("{} ({float}) after {}", path.display(), after.pass);
                    assert_same(&what, &reference, &common::run_batch(after.module, batch));
                })
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(seen, pipeline.len());
        }
    }
}

#[test]
fn the_ir_text_after_the_pipeline_is_deterministic() {
    for path in common::fixture_paths() {
        let text = || {
            let mut m = common::lower_file(&path, Dtype::F32);
            snnc_passes::default_pipeline(PipelineKind::Cpu).run_all(&mut m).unwrap();
            snnc_ir::print(&m)
        };
        assert_eq!(text(), text(), "{}", path.display());
    }
}

// ---------------------------------------------------------------------------
// time-batch

/// The matrix products of a module: (region kind, whether the result is a
/// sequence, weight parameter name, kind).
fn matmuls(m: &Module) -> Vec<(RegionKind, bool, String, MatMulKind)> {
    let mut res = Vec::new();
    for region in &m.body {
        for &h in &region.nodes {
            if let Op::MatMul { weight, kind, .. } = m.nodes[h].op {
                let mut w = weight;
                // The masked recurrent weight is `mul @w, @mask`.
                while let Op::Binary { lhs, .. } = m.nodes[w].op {
                    w = lhs;
                }
                let Op::Param(p) = m.nodes[w].op else { panic!("weight is not a parameter") };
                res.push((region.kind.clone(), m.nodes[h].ty.seq, m.params[p].name.clone(), kind));
            }
        }
    }
    res
}

fn time_batched(name: &str) -> (Module, snnc_passes::PassReport) {
    let mut m = fixture(name);
    let report = apply(&mut m, "time-batch");
    (m, report)
}

#[test]
fn deep_ff_batches_its_four_linear_layers_and_splits_one_loop_per_population() {
    let (m, report) = time_batched("deep_ff");
    let mm = matmuls(&m);
    assert_eq!(mm.len(), 4);
    for (kind, seq, _, _) in &mm {
        assert_eq!((kind, *seq), (&RegionKind::Seq, true), "{mm:?}");
    }
    assert_eq!(
        loop_states(&m),
        [["lif1.v", "lif1.i"], ["lif2.v", "lif2.i"], ["lif3.v", "lif3.i"], ["out.v", "out.i"]],
        "{}",
        snnc_ir::print(&m)
    );
    // Preamble, then alternating: seq fc1, step lif1, seq fc2, ..., step out, seq readout.
    let kinds: Vec<RegionKind> = m.body.iter().map(|r| r.kind.clone()).collect();
    use RegionKind::{Seq, Step};
    assert_eq!(kinds, [Seq, Seq, Step, Seq, Step, Seq, Step, Seq, Step, Seq]);
    let fc1 = m.node_by_name("fc1.out").unwrap();
    assert_eq!(m.nodes[fc1].ty.to_string(), "f32[T,B,16]");
    assert!(report.notes.iter().any(|n| n == "fc4: batched over T (matmul [T·B,16]×[16,4])"), "{:?}", report.notes);
}

#[test]
fn the_tutorial_keeps_its_recurrent_product_in_the_loop() {
    let (m, report) = time_batched("tutorial");
    assert_eq!(loop_states(&m), [vec!["encoder.v"], vec!["lif1.z", "lif1.v", "lif1.i"], vec!["out.v", "out.i"]]);
    let mm = matmuls(&m);
    let by_name: BTreeMap<_, _> = mm.iter().map(|(k, s, w, _)| (w.as_str(), (k.clone(), *s))).collect();
    assert_eq!(by_name["lif1.input_weights"], (RegionKind::Seq, true));
    assert_eq!(by_name["lif1.recurrent_weights"], (RegionKind::Step, false));
    assert_eq!(by_name["fc_out.weight"], (RegionKind::Seq, true));
    // The flatten of the encoder's spikes moved with the product it feeds.
    let flatten = m.node_by_name("flatten.out").unwrap();
    assert!(m.nodes[flatten].ty.seq);
    assert!(report.notes.iter().any(|n| n.contains("@lif1.recurrent_weights): stays per step")), "{:?}", report.notes);
}

#[test]
fn convnet_batches_convolutions_pools_and_products() {
    let (m, _) = time_batched("examples/convnet");
    let mut batched = Vec::new();
    for region in m.body.iter().filter(|r| r.kind == RegionKind::Seq) {
        for &h in &region.nodes {
            if matches!(m.nodes[h].op, Op::Conv2d { .. } | Op::Pool2d { .. } | Op::MatMul { .. }) {
                assert!(m.nodes[h].ty.seq);
                batched.push(m.nodes[h].op.mnemonic());
            }
        }
    }
    assert_eq!(batched, ["conv2d", "max_pool2d", "conv2d", "max_pool2d", "matmul", "matmul"]);
    assert_eq!(loop_states(&m).len(), 5, "encoder, lif0, lif1, lif2, out");
    assert!(m.nodes[m.node_by_name("scale2.out").unwrap()].ty.seq, "the Scale after conv2 is batched with it");
    assert!(m.nodes[m.node_by_name("relu.out").unwrap()].ty.seq, "the ReLU before the readout product too");
}

#[test]
fn lsnn_batches_the_input_product_of_the_recurrent_layer() {
    let (m, _) = time_batched("lsnn");
    assert_eq!(loop_states(&m), [vec!["lsnn.v", "lsnn.i", "lsnn.b"], vec!["rec.z", "rec.v", "rec.i", "rec.b"]]);
    let mm = matmuls(&m);
    assert!(mm.contains(&(RegionKind::Seq, true, "rec.input_weights".into(), MatMulKind::Dense)), "{mm:?}");
}

#[test]
fn a_net_without_feed_forward_products_keeps_its_loop() {
    for name in ["examples/lif", "examples/li", "lif_ff"] {
        let before = fixture(name);
        let (m, _) = time_batched(name);
        assert_eq!(snnc_ir::print(&m), snnc_ir::print(&before), "{name}");
    }
    // The Poisson encoder's `dt * f_max * x` is the same at every step: it
    // moves to the preamble; the rest stays in its loop.
    let (m, report) = time_batched("poisson");
    assert_eq!(common::regions(&m), [(RegionKind::Seq, 10), (RegionKind::Step, 13), (RegionKind::Seq, 2)]);
    assert!(report.notes.contains(&"hoisted 1 loop-invariant node(s) out of the step loop".to_string()));
}

#[test]
fn time_batch_is_idempotent() {
    for path in common::fixture_paths() {
        let mut m = common::lower_file(&path, Dtype::F32);
        apply(&mut m, "time-batch");
        let once = snnc_ir::print(&m);
        apply(&mut m, "time-batch");
        assert_eq!(snnc_ir::print(&m), once, "{}", path.display());
    }
}

fn param(b: &mut Builder, name: &str, shape: &[u32]) -> snnc_ir::Handle<snnc_ir::Node> {
    let p = b.param(Param {
        name: name.into(),
        dtype: Dtype::F32,
        shape: Shape::fixed(shape),
        trainable: true,
        init: ParamInit::Uniform { bound: 0.5 },
    });
    b.emit(Op::Param(p)).unwrap()
}

/// A Poisson-style encoder (`uniform < x` with a static batched `x`) feeding
/// a product and an integrator; the weight is computed inside the loop.
fn poisson_like() -> Module {
    let f = Dtype::F32;
    let mut b = Builder::new("poisson_like", 5, 0.001, f);
    let x_in = b.input("x", Type::new(f, Shape::batched(&[3])));
    let s = b.state("acc.v", Type::new(f, Shape::batched(&[2])), StateInit::Fill(0.0));
    b.begin_seq();
    let x = b.emit(Op::Input(x_in)).unwrap();
    let w = param(&mut b, "fc.weight", &[2, 3]);
    b.begin_step();
    let half = b.constant(0.5).unwrap();
    let w2 = b.mul(w, half).unwrap();
    let u = b.emit(Op::Uniform { seed: 9, shape: Shape::batched(&[3]), seq: false }).unwrap();
    let z = b.compare(snnc_ir::CompareOp::Lt, u, x).unwrap();
    b.name(z, "enc.z");
    let y = b.emit(Op::MatMul { input: z, weight: w2, kind: MatMulKind::Dense }).unwrap();
    b.name(y, "fc.out");
    let v = b.state_read(s).unwrap();
    let v2 = b.add(v, y).unwrap();
    let wv = b.state_write(s, v2).unwrap();
    b.name(wv, "acc.v");
    b.begin_seq();
    let out = b.emit(Op::Collect(wv)).unwrap();
    b.output("output", out);
    b.finish()
}

#[test]
fn a_node_that_does_not_type_over_sequences_stays_per_step() {
    let module = poisson_like();
    snnc_ir::validate(&module).unwrap();
    let reference = run(&module);
    let mut m = module.clone();
    let report = apply(&mut m, "time-batch");
    assert_same("poisson_like", &reference, &run(&m));
    // The comparison of a sequence with the static batched `x` does not
    // broadcast: it stays in a loop and its spikes are collected.
    let z = m.node_by_name("enc.z").unwrap();
    assert!(!m.nodes[z].ty.seq);
    let fc = m.node_by_name("fc.out").unwrap();
    assert!(m.nodes[fc].ty.seq, "{}", snnc_ir::print(&m));
    assert!(report.notes.iter().any(|n| n.starts_with("enc: kept per step")), "{:?}", report.notes);
    assert!(report.notes.iter().any(|n| n.starts_with("hoisted 2 loop-invariant")), "{:?}", report.notes);
    // The weight, computed once, is in the preamble.
    let weight = match m.nodes[fc].op {
        Op::MatMul { weight, .. } => weight,
        _ => unreachable!(),
    };
    assert_eq!(common::regions(&m)[0].0, RegionKind::Seq);
    assert!(m.body[0].nodes.contains(&weight), "{}", snnc_ir::print(&m));
}

#[test]
fn a_named_step_and_a_batched_uniform_keep_their_values() {
    // `step x` named, and an unnamed uniform feeding a product directly.
    let f = Dtype::F32;
    let mut b = Builder::new("named_step", 4, 0.001, f);
    let x_in = b.input("x", Type::seq(f, Shape::batched(&[3])));
    b.begin_seq();
    let x = b.emit(Op::Input(x_in)).unwrap();
    let w = param(&mut b, "fc.weight", &[2, 3]);
    b.begin_step();
    let xs = b.emit(Op::Step(x)).unwrap();
    b.name(xs, "x.t");
    let u = b.emit(Op::Uniform { seed: 4, shape: Shape::batched(&[3]), seq: false }).unwrap();
    let xu = b.add(xs, u).unwrap();
    let y = b.emit(Op::MatMul { input: xu, weight: w, kind: MatMulKind::Dense }).unwrap();
    let r = b.emit(Op::Unary { op: UnaryOp::Relu, arg: y }).unwrap();
    b.name(r, "fc.out");
    b.begin_seq();
    let out = b.emit(Op::Collect(r)).unwrap();
    b.output("output", out);
    let module = b.finish();
    let reference = run(&module);
    let mut m = module.clone();
    apply(&mut m, "time-batch");
    assert_same("named_step", &reference, &run(&m));
    assert!(m.nodes[m.node_by_name("fc.out").unwrap()].ty.seq);
    assert!(!m.nodes[m.node_by_name("x.t").unwrap()].ty.seq, "a named step stays a step");
    assert!(m.nodes.iter().any(|(_, n)| matches!(n.op, Op::Uniform { seq: true, .. })), "{}", snnc_ir::print(&m));
    // The output is the batched value itself.
    assert_eq!(m.outputs[0].value, m.node_by_name("fc.out").unwrap());
}

// ---------------------------------------------------------------------------
// sparsify

fn sparsified(name: &str, per_value: &[(&str, f64)]) -> Module {
    let mut m = fixture(name);
    apply(&mut m, "time-batch");
    let pass =
        Sparsify { per_value: per_value.iter().map(|(k, d)| (k.to_string(), *d)).collect(), ..Default::default() };
    pass.run(&mut m).unwrap();
    snnc_ir::validate(&m).unwrap();
    m
}

fn kind_of(m: &Module, weight: &str) -> MatMulKind {
    matmuls(m).into_iter().find(|x| x.2 == weight).unwrap_or_else(|| panic!("no product of {weight}")).3
}

#[test]
fn sparsify_makes_the_encoder_fed_product_event_driven_at_the_default_density() {
    let m = sparsified("tutorial", &[]);
    assert_eq!(kind_of(&m, "lif1.input_weights"), MatMulKind::EventDriven);
    assert_eq!(kind_of(&m, "lif1.recurrent_weights"), MatMulKind::EventDriven);
    assert_eq!(kind_of(&m, "fc_out.weight"), MatMulKind::EventDriven);
    assert!(snnc_ir::print(&m).contains("spike_matmul"));
}

#[test]
fn sparsify_keeps_a_dense_product_for_a_dense_input() {
    // By the name of the input (`flatten.out`), or of the value it reshapes.
    for key in ["flatten.out", "encoder.z"] {
        let m = sparsified("tutorial", &[(key, 0.9)]);
        assert_eq!(kind_of(&m, "lif1.input_weights"), MatMulKind::Dense, "{key}");
        assert_eq!(kind_of(&m, "fc_out.weight"), MatMulKind::EventDriven, "{key}");
    }
    // A recurrent input goes by its state's name.
    let m = sparsified("tutorial", &[("lif1.z", 0.9)]);
    assert_eq!(kind_of(&m, "lif1.recurrent_weights"), MatMulKind::Dense);
    assert_eq!(kind_of(&m, "fc_out.weight"), MatMulKind::Dense);
}

#[test]
fn sparsify_follows_the_cost_model_for_small_layers_and_ignores_float_inputs() {
    let m = sparsified("deep_ff", &[]);
    assert_eq!(kind_of(&m, "fc1.weight"), MatMulKind::Dense, "a float input");
    assert_eq!(kind_of(&m, "fc2.weight"), MatMulKind::EventDriven);
    assert_eq!(kind_of(&m, "fc4.weight"), MatMulKind::Dense, "4 outputs: the scan costs more than it saves");
    let zero = sparsified("deep_ff", &[("lif3.z", 0.0)]);
    assert_eq!(kind_of(&zero, "fc4.weight"), MatMulKind::EventDriven, "a silent input");
}

#[test]
fn sparsify_rejects_densities_outside_0_1() {
    let mut m = fixture("deep_ff");
    let pass = Sparsify { default_density: 1.5, ..Default::default() };
    assert!(pass.run(&mut m).unwrap_err().to_string().contains("[0, 1]"));
}

// ---------------------------------------------------------------------------
// const-fold, cse, dce

fn count(m: &Module, f: impl Fn(&Op) -> bool) -> usize {
    m.nodes.iter().filter(|(_, n)| f(&n.op)).count()
}

fn is_const(m: &Module, h: snnc_ir::Handle<snnc_ir::Node>) -> bool {
    matches!(m.nodes[h].op, Op::Const { .. })
}

#[test]
fn const_fold_leaves_no_op_of_constants_and_rounds_in_f32() {
    let mut m = fixture("deep_ff");
    let before = count(&m, |op| matches!(op, Op::Binary { op: BinaryOp::Mul, .. }));
    apply(&mut m, "const-fold");
    let left = m
        .nodes
        .iter()
        .filter(|(_, n)| matches!(n.op, Op::Binary { lhs, rhs, .. } if is_const(&m, lhs) && is_const(&m, rhs)))
        .count();
    assert_eq!(left, 0, "{}", snnc_ir::print(&m));
    assert!(count(&m, |op| matches!(op, Op::Binary { op: BinaryOp::Mul, .. })) < before);
    let dt_tau = f64::from(0.001f32 * 100.0f32);
    assert!(count(&m, |op| matches!(op, Op::Const { value, .. } if *value == dt_tau)) > 0);
    let mut m64 = common::lower_file(&common::path("deep_ff"), Dtype::F64);
    apply(&mut m64, "const-fold");
    assert!(count(&m64, |op| matches!(op, Op::Const { value, .. } if *value == 0.001 * 100.0)) > 0);
}

#[test]
fn const_fold_does_not_make_nan_constants() {
    let mut b = Builder::new("nan", 1, 0.001, Dtype::F32);
    let c = b.constant(-1.0).unwrap();
    let l = b.emit(Op::Unary { op: UnaryOp::Log, arg: c }).unwrap();
    let e = b.emit(Op::Unary { op: UnaryOp::Exp, arg: c }).unwrap();
    b.output("l", l);
    b.output("e", e);
    let mut m = b.finish();
    apply(&mut m, "const-fold");
    assert!(matches!(m.nodes[m.outputs[0].value].op, Op::Unary { op: UnaryOp::Log, .. }));
    let Op::Const { value, .. } = m.nodes[m.outputs[1].value].op else { panic!("exp(-1) is folded") };
    assert_eq!(value, f64::from((-1.0f32).exp()));
}

#[test]
fn cse_merges_duplicate_constants() {
    let mut m = fixture("deep_ff");
    let consts = |m: &Module| {
        let mut v: Vec<(u64, Dtype)> = m
            .nodes
            .iter()
            .filter_map(|(_, n)| match n.op {
                Op::Const { value, dtype } => Some((value.to_bits(), dtype)),
                _ => None,
            })
            .collect();
        let all = v.len();
        v.sort_unstable();
        v.dedup();
        (all, v.len())
    };
    let (all, distinct) = consts(&m);
    assert!(all > distinct);
    apply(&mut m, "cse");
    assert_eq!(consts(&m), (distinct, distinct));
}

#[test]
fn cse_merges_equal_nodes_but_not_states_or_unordered_max() {
    let f = Dtype::F32;
    let mut b = Builder::new("cse", 3, 0.001, f);
    let x_in = b.input("x", Type::seq(f, Shape::batched(&[2])));
    let s = b.state("s", Type::new(f, Shape::batched(&[2])), StateInit::Fill(0.0));
    b.begin_seq();
    let x = b.emit(Op::Input(x_in)).unwrap();
    b.begin_step();
    let xs = b.emit(Op::Step(x)).unwrap();
    let r1 = b.state_read(s).unwrap();
    let r2 = b.state_read(s).unwrap();
    let a1 = b.add(xs, r1).unwrap();
    let a2 = b.add(r1, xs).unwrap();
    b.name(a2, "a2");
    let m1 = b.binary(BinaryOp::Max, xs, r2).unwrap();
    let m2 = b.binary(BinaryOp::Max, r2, xs).unwrap();
    let t = b.add(a1, a2).unwrap();
    let t = b.add(t, m1).unwrap();
    let t = b.add(t, m2).unwrap();
    b.state_write(s, t).unwrap();
    b.begin_seq();
    let out = b.emit(Op::Collect(t)).unwrap();
    b.output("output", out);
    let module = b.finish();
    let reference = run(&module);
    let mut m = module.clone();
    let report = apply(&mut m, "cse");
    assert_same("cse", &reference, &run(&m));
    assert_eq!(count(&m, |op| matches!(op, Op::StateRead(_))), 2, "state reads are never merged");
    assert_eq!(count(&m, |op| matches!(op, Op::Binary { op: BinaryOp::Max, .. })), 2, "max does not commute");
    assert_eq!(count(&m, |op| matches!(op, Op::Binary { op: BinaryOp::Add, .. })), 4, "add commutes");
    // The surviving add took the name of the merged one.
    assert!(m.node_by_name("a2").is_some());
    assert_eq!(report.notes, ["merged 1 node(s) into equal earlier ones (0 constant(s))"]);
}

#[test]
fn dce_removes_unused_unnamed_nodes_and_keeps_named_ones() {
    let f = Dtype::F32;
    let mut b = Builder::new("dce", 2, 0.001, f);
    let x_in = b.input("x", Type::seq(f, Shape::batched(&[2])));
    let s = b.state("s", Type::new(f, Shape::batched(&[2])), StateInit::Fill(0.0));
    b.begin_seq();
    let x = b.emit(Op::Input(x_in)).unwrap();
    b.begin_step();
    let xs = b.emit(Op::Step(x)).unwrap();
    let unused = b.emit(Op::Unary { op: UnaryOp::Exp, arg: xs }).unwrap();
    let named = b.emit(Op::Unary { op: UnaryOp::Tanh, arg: xs }).unwrap();
    b.name(named, "kept");
    let r = b.state_read(s).unwrap();
    let v = b.add(r, xs).unwrap();
    b.state_write(s, v).unwrap();
    let _ = unused;
    let module = b.finish();
    let mut m = module.clone();
    let report = apply(&mut m, "dce");
    assert_eq!(report.notes, ["removed 1 unused node(s)"]);
    assert_eq!(count(&m, |op| matches!(op, Op::Unary { op: UnaryOp::Exp, .. })), 0);
    assert!(m.node_by_name("kept").is_some());
    assert_eq!(count(&m, |op| matches!(op, Op::StateWrite { .. })), 1);
    // Dropping names: the named node goes too, the state update stays.
    let mut m = module.clone();
    let pass = snnc_passes::pass_from_spec("dce=drop-names", &PassOptions::default()).unwrap();
    pass.run(&mut m).unwrap();
    snnc_ir::validate(&m).unwrap();
    assert!(m.node_by_name("kept").is_none());
    assert_eq!(count(&m, |op| matches!(op, Op::StateWrite { .. })), 1);
}

// ---------------------------------------------------------------------------
// unroll

#[test]
fn unroll_sets_the_factor_of_loops_with_enough_steps() {
    let mut m = fixture("deep_ff"); // T = 6
    apply(&mut m, "time-batch");
    let report = apply(&mut m, "unroll");
    let steps: Vec<u32> = m.body.iter().filter(|r| r.kind == RegionKind::Step).map(|r| r.unroll).collect();
    assert_eq!(steps, [4, 4, 4, 4]);
    assert!(m.body.iter().filter(|r| r.kind == RegionKind::Seq).all(|r| r.unroll == 1));
    assert!(snnc_ir::print(&m).contains("  step t in 0..T unroll 4 {\n"));
    assert!(report.notes[0].ends_with("unroll 4 (1 unrolled iteration(s) of 4 steps, 2 remainder step(s))"));
    let pass = snnc_passes::pass_from_spec("unroll=8", &PassOptions::default()).unwrap();
    pass.run(&mut m).unwrap();
    assert!(m.body.iter().all(|r| r.unroll == 1), "T = 6 < 8: not unrolled");
    assert!(snnc_ir::print(&m).contains("  step t in 0..T {\n"));
}

#[test]
fn the_validator_checks_the_unroll_attribute() {
    let mut m = fixture("lif_ff");
    let step = m.body.iter().position(|r| r.kind == RegionKind::Step).unwrap();
    m.body[step].unroll = 0;
    assert!(snnc_ir::validate(&m).unwrap_err().to_string().contains("unroll must be at least 1"));
    m.body[step].unroll = 2;
    snnc_ir::validate(&m).unwrap();
    m.body[0].unroll = 2;
    assert!(snnc_ir::validate(&m).unwrap_err().to_string().contains("a sequence region cannot be unrolled"));
}

// ---------------------------------------------------------------------------
// The registry.

#[test]
fn the_registry_knows_every_pass_and_parses_lists() {
    let names = snnc_passes::pass_names();
    assert_eq!(names, ["const-fold", "cse", "dce", "time-batch", "sparsify", "fuse", "unroll"]);
    for name in &names {
        assert_eq!(snnc_passes::by_name(name).unwrap().name(), *name);
    }
    assert!(snnc_passes::by_name("nope").is_none());
    let opts = PassOptions::default();
    let p = snnc_passes::parse_pipeline("cse, unroll=8,dce", &opts).unwrap();
    assert_eq!(p.names(), ["cse", "unroll", "dce"]);
    assert!(snnc_passes::parse_pipeline("none", &opts).unwrap().is_empty());
    let err = |s: &str| snnc_passes::parse_pipeline(s, &opts).err().unwrap().to_string();
    assert_eq!(
        err("cse,nope"),
        "unknown pass `nope`; the passes are `const-fold`, `cse`, `dce`, `time-batch`, `sparsify`, `fuse`, `unroll`, \
         `autodiff`"
    );
    assert!(err("unroll=0").contains("expected an unroll factor of 1 or more"));
    assert!(err("sparsify=2").contains("in [0, 1]"));
    assert!(err("cse=1").contains("takes no argument"));
    assert!(err(",").starts_with("empty pass list"));
    assert_eq!(
        snnc_passes::default_pipeline(PipelineKind::Cuda).names(),
        ["const-fold", "cse", "dce", "time-batch", "sparsify", "fuse", "unroll", "cse", "dce"]
    );
}

/// A product whose weight is a plastic state (`tests/nets/stdp.ron`) reads
/// a loop-carried value, so `time-batch` keeps it per step in the loop
/// that writes the weight; the Linear before it (the `pre` LIF's input)
/// has no product to lift.
#[test]
fn time_batch_keeps_a_plastic_product_in_its_loop() {
    let (m, report) = time_batched("stdp");
    let plastic: Vec<(RegionKind, bool)> = m
        .body
        .iter()
        .flat_map(|r| r.nodes.iter().map(move |&h| (r, h)))
        .filter_map(|(r, h)| match m.nodes[h].op {
            Op::MatMul { weight, .. } => match m.nodes[weight].op {
                Op::StateRead(s) if m.states[s].name == "fc.weight.plastic" => {
                    Some((r.kind.clone(), m.nodes[h].ty.seq))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(plastic, [(RegionKind::Step, false)], "{}", snnc_ir::print(&m));
    // The weight's write stays, in the loop that reads it.
    let writes = m
        .nodes
        .iter()
        .filter(|(_, n)| matches!(n.op, Op::StateWrite { state, .. } if m.states[state].name == "fc.weight.plastic"))
        .count();
    assert_eq!(writes, 1);
    let _ = report;
}
