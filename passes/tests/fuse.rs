//! The fusion pass on the fixture nets (`tests/nets/*.ron`): what it
//! makes, and that the interpreter gives the same bits before and after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use snnc_frontend::{LowerOptions, load_network, lower};
use snnc_interp::{RunOptions, RunResult};
use snnc_ir::{BinaryOp, Dim, Dtype, FusedKernel, KernelInst, Module, Op, RegionKind, validate};
use snnc_passes::fuse::Fuse;
use snnc_passes::{Pass, PassReport};
use snnc_runtime::weights::elem_type;
use snnc_runtime::{Tensor, init_weights};

fn nets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nets")
}

/// Every fixture's name, sorted.
fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(nets_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "fixtures not found in {}", nets_dir().display());
    names
}

fn lowered(name: &str, float: Dtype) -> Module {
    let path = nets_dir().join(format!("{name}.ron"));
    let net = load_network(&path).unwrap_or_else(|e| panic!("{e}"));
    lower(&net, &path.display().to_string(), &LowerOptions { float, ..Default::default() }).unwrap()
}

/// The module after `fuse`, checked to be valid.
fn fused_with(pass: Fuse, module: &Module) -> (Module, PassReport) {
    let mut m = module.clone();
    let report = pass.run(&mut m).unwrap();
    if let Err(e) = validate(&m) {
        panic!("{e}\n{}", snnc_ir::print(&m));
    }
    (m, report)
}

fn fused(module: &Module) -> Module {
    fused_with(Fuse::default(), module).0
}

/// Inputs for every module input, batch 3: snnc's uniform numbers spread
/// over -0.5..2.5 (currents that make LIF neurons fire at various rates).
fn inputs(module: &Module) -> BTreeMap<String, Tensor> {
    let batch = 3;
    let mut res = BTreeMap::new();
    for (h, input) in module.inputs.iter() {
        let mut shape: Vec<usize> = input.ty.shape.resolve(batch);
        if input.ty.seq {
            shape.insert(0, module.steps as usize);
        }
        let n: usize = shape.iter().product();
        let data = (0..n).map(|k| -0.5 + 3.0 * snnc_ir::rng::uniform(11 + h.index() as u64, 0, k as u64)).collect();
        res.insert(input.name.clone(), Tensor::new(shape, elem_type(module.float), data).unwrap());
    }
    res
}

fn run(module: &Module) -> RunResult {
    let info = validate(module).unwrap();
    let weights = init_weights(module, 5);
    let opts = RunOptions { record: true, ..Default::default() };
    snnc_interp::run(module, &info, &weights, &inputs(module), &opts).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_same_bits(what: &str, a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: different names");
    for (name, ta) in a {
        let tb = &b[name];
        assert_eq!(ta.shape, tb.shape, "{what} `{name}`: shapes differ");
        for (i, (x, y)) in ta.data.iter().zip(&tb.data).enumerate() {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{what} `{name}`[{i}]: {x} before, {y} after"
            );
        }
    }
}

/// The kernels of a module, with the kind of region each is in.
fn kernels(module: &Module) -> Vec<(&FusedKernel, RegionKind)> {
    let mut res = Vec::new();
    for region in &module.body {
        for &h in &region.nodes {
            if let Op::Fused(k) = &module.nodes[h].op {
                res.push((&**k, region.kind.clone()));
            }
        }
    }
    res
}

#[test]
fn every_fixture_runs_to_the_same_bits_after_fusion_in_f32_and_f64() {
    for name in fixtures() {
        for float in [Dtype::F32, Dtype::F64] {
            let before = lowered(&name, float);
            let after = fused(&before);
            assert!(!kernels(&after).is_empty(), "{name}: nothing fused");
            let (a, b) = (run(&before), run(&after));
            let what = format!("{name} ({float})");
            assert_same_bits(&format!("{what} output"), &a.outputs, &b.outputs);
            assert_same_bits(&format!("{what} trace"), &a.traces, &b.traces);
            assert_same_bits(&format!("{what} final state"), &a.final_state, &b.final_state);
        }
    }
}

#[test]
fn the_fixtures_spike_so_the_equality_test_sees_resets() {
    // Guards the test above against inputs too weak to reach a threshold.
    for name in ["tutorial", "lif_recurrent", "lif_ff", "lsnn", "deep_ff", "convnet"] {
        let r = run(&lowered(name, Dtype::F32));
        let spikes: f64 =
            r.traces.iter().filter(|(n, _)| n.ends_with(".z")).map(|(_, t)| t.data.iter().sum::<f64>()).sum();
        assert!(spikes > 0.0, "{name}: no spike");
    }
}

/// The number of `mul`s of two constants in a body.
fn constant_products(k: &FusedKernel) -> usize {
    let is_const = |a: u32| matches!(k.body[a as usize], KernelInst::Const { .. });
    k.body
        .iter()
        .filter(|i| matches!(i, KernelInst::Binary { op: BinaryOp::Mul, lhs, rhs } if is_const(*lhs) && is_const(*rhs)))
        .count()
}

#[test]
fn the_tutorials_populations_each_become_one_kernel_with_folded_constants() {
    let m = fused(&lowered("tutorial", Dtype::F32));
    let ks = kernels(&m);
    let names: Vec<&str> = ks.iter().map(|(k, _)| k.name.as_str()).collect();
    assert_eq!(names, ["encoder", "lif1", "out"]);

    let (lif, region) = &ks[1];
    assert_eq!(*region, RegionKind::Step);
    assert_eq!(lif.body.iter().filter(|i| matches!(i, KernelInst::Threshold { .. })).count(), 1);
    assert_eq!(constant_products(lif), 0);
    // dt * tau_mem_inv and -dt * tau_syn_inv, each folded in f32.
    let consts: Vec<f64> = lif
        .body
        .iter()
        .filter_map(|i| if let KernelInst::Const { value, .. } = i { Some(*value) } else { None })
        .collect();
    assert!(consts.contains(&f64::from(0.001f32 * 100.0f32)), "{consts:?}");
    assert!(consts.contains(&f64::from(-0.001f32 * 200.0f32)), "{consts:?}");
    // By default the reset stays Norse's arithmetic (exact for a diverged,
    // infinite membrane too), and the detached spike is gone.
    assert!(!lif.body.iter().any(|i| matches!(i, KernelInst::Select { .. })));
    assert!(!lif.body.iter().any(|i| matches!(i, KernelInst::StopGradient(_))));
    // Assuming finite values, the reset is a select.
    let finite = fused_with(Fuse { assume_finite: true, ..Fuse::default() }, &lowered("tutorial", Dtype::F32)).0;
    let ks_finite = kernels(&finite);
    assert!(ks_finite[1].0.body.iter().any(|i| matches!(i, KernelInst::Select { .. })));
    // Inputs: the current, both matmuls and the membrane.
    assert_eq!(lif.inputs.len(), 4);
    assert_eq!(lif.outputs.len(), 3);

    let (li, _) = &ks[2];
    assert_eq!(constant_products(li), 0);
    assert!(!li.body.iter().any(|i| matches!(i, KernelInst::Threshold { .. })));

    // No elementwise op is left in the step loop: all of it is in kernels.
    let step = m.body.iter().find(|r| r.kind == RegionKind::Step).unwrap();
    let loose: Vec<String> =
        step.nodes.iter().filter(|&&h| m.nodes[h].op.is_elementwise()).map(|h| format!("%{}", h.index())).collect();
    assert!(loose.is_empty(), "elementwise ops left: {loose:?}");
    // The traces keep their names.
    for name in ["encoder.z", "lif1.z", "lif1.v", "lif1.i", "out.v", "out.i"] {
        assert!(m.node_by_name(name).is_some(), "`{name}` lost");
    }
}

#[test]
fn fusing_is_deterministic_and_a_second_run_changes_nothing() {
    for name in fixtures() {
        let m = lowered(&name, Dtype::F32);
        let once = snnc_ir::print(&fused(&m));
        assert_eq!(once, snnc_ir::print(&fused(&m)), "{name}: two runs differ");
        let twice = snnc_ir::print(&fused(&fused(&m)));
        assert_eq!(once, twice, "{name}: fusing again changed the module");
    }
}

#[test]
fn the_report_names_every_kernel_and_why_its_e_graph_stopped() {
    let (_, report) = fused_with(Fuse::default(), &lowered("tutorial", Dtype::F32));
    let kernel_notes: Vec<&String> = report.notes.iter().filter(|n| n.starts_with("kernel")).collect();
    assert_eq!(kernel_notes.len(), 3, "{:?}", report.notes);
    assert!(kernel_notes.iter().all(|n| n.contains("saturated")), "{:?}", report.notes);

    // One iteration is not enough to reach the reset for the LIF kernel.
    let (m, report) = fused_with(Fuse { iter_limit: 1, ..Fuse::default() }, &lowered("tutorial", Dtype::F32));
    assert!(report.notes.iter().any(|n| n.contains("iteration limit (1)")), "{:?}", report.notes);
    // Stopping early still gives a correct module.
    let before = lowered("tutorial", Dtype::F32);
    assert_same_bits("iter_limit 1", &run(&before).outputs, &run(&m).outputs);

    let (m, report) = fused_with(Fuse { node_limit: 5, ..Fuse::default() }, &lowered("tutorial", Dtype::F32));
    assert!(report.notes.iter().any(|n| n.contains("node limit")), "{:?}", report.notes);
    assert_same_bits("node_limit 5", &run(&before).outputs, &run(&m).outputs);
}

#[test]
fn kernels_in_step_loops_take_their_constants_from_the_preamble() {
    // Every fixture: no kernel multiplies two constants, and no kernel
    // holds a `const` of another dtype than the module's float or spike.
    for name in fixtures() {
        let m = fused(&lowered(&name, Dtype::F32));
        for (k, _) in kernels(&m) {
            assert_eq!(constant_products(k), 0, "{name}: kernel `{}`", k.name);
        }
    }
}

#[test]
fn kernel_shapes_cover_batch_and_static_inputs() {
    // The encoder kernel reads the static image [B,1,28,28] and its state.
    let m = fused(&lowered("tutorial", Dtype::F32));
    let (enc, _) = &kernels(&m)[0];
    let shapes: Vec<String> = enc.inputs.iter().map(|&h| m.nodes[h].ty.to_string()).collect();
    assert_eq!(shapes, ["f32[B,1,28,28]", "f32[B,1,28,28]"]);
    assert!(enc.inputs.iter().all(|&h| m.nodes[h].ty.shape.0[0] == Dim::Batch));
}

#[test]
fn each_lsnn_population_is_one_kernel_though_its_current_update_is_separate() {
    // The current's decay shares no elementwise value with the voltage's
    // update, only the state read: the groups join through that input.
    let m = fused(&lowered("lsnn", Dtype::F32));
    let names: Vec<&str> = kernels(&m).iter().map(|(k, _)| k.name.as_str()).collect();
    assert_eq!(names, ["lsnn", "rec"]);
}

/// The inputs of a hand-made module: its seq input `x` over `-0.5..2.5`.
fn run_small(m: &Module) -> RunResult {
    let info = validate(m).unwrap_or_else(|e| panic!("{e}\n{}", snnc_ir::print(m)));
    let weights = init_weights(m, 3);
    let opts = RunOptions { record: true, ..Default::default() };
    snnc_interp::run(m, &info, &weights, &inputs(m), &opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_group_is_split_where_a_value_leaves_it_and_comes_back() {
    use snnc_ir::{Builder, Shape, Type};
    let mut b = Builder::new("cycle", 4, 1e-3, Dtype::F32);
    let xi = b.input("x", Type::seq(Dtype::F32, Shape::batched(&[4])));
    b.begin_seq();
    let x = b.emit(Op::Input(xi)).unwrap();
    let two = b.constant(2.0).unwrap();
    let one = b.constant(1.0).unwrap();
    let three = b.constant(3.0).unwrap();
    b.begin_step();
    let xt = b.emit(Op::Step(x)).unwrap();
    let a1 = b.mul(xt, two).unwrap();
    let a2 = b.add(a1, one).unwrap();
    // a2 leaves through a reshape (not elementwise) and comes back in b1.
    let r = b.emit(Op::Reshape { arg: a2, shape: Shape::batched(&[4]) }).unwrap();
    let b1 = b.add(a2, r).unwrap();
    let b2 = b.mul(b1, three).unwrap();
    b.name(b2, "b2");
    b.begin_seq();
    let out = b.emit(Op::Collect(b2)).unwrap();
    b.output("y", out);
    let m = b.finish();

    let f = fused(&m);
    let ks = kernels(&f);
    assert_eq!(ks.len(), 2, "{}", snnc_ir::print(&f));
    assert!(ks.iter().all(|(k, _)| k.body.iter().filter(|i| matches!(i, KernelInst::Binary { .. })).count() == 2));
    assert_same_bits("cycle", &run_small(&m).outputs, &run_small(&f).outputs);
    assert_same_bits("cycle traces", &run_small(&m).traces, &run_small(&f).traces);
}

#[test]
fn a_sequence_region_group_becomes_a_kernel_over_whole_sequences() {
    use snnc_ir::{Builder, Param, ParamInit, Shape, Type};
    let mut b = Builder::new("seqk", 5, 1e-3, Dtype::F32);
    let xi = b.input("x", Type::seq(Dtype::F32, Shape::batched(&[3])));
    let bias = b.param(Param {
        name: "bias".into(),
        dtype: Dtype::F32,
        shape: Shape::fixed(&[3]),
        trainable: true,
        init: ParamInit::Uniform { bound: 1.0 },
    });
    b.begin_seq();
    let x = b.emit(Op::Input(xi)).unwrap();
    let bias = b.emit(Op::Param(bias)).unwrap();
    let two = b.constant(2.0).unwrap();
    let a = b.mul(x, two).unwrap();
    let c = b.add(a, bias).unwrap();
    let r = b.unary(snnc_ir::UnaryOp::Relu, c).unwrap();
    b.output("y", r);
    b.output("pre", c);
    let m = b.finish();

    let f = fused(&m);
    let ks = kernels(&f);
    assert_eq!(ks.len(), 1);
    assert_eq!(ks[0].1, RegionKind::Seq);
    let fused_node = f.nodes.iter().find(|(_, n)| matches!(n.op, Op::Fused(_))).unwrap().1;
    assert_eq!(fused_node.ty.to_string(), "f32[T,B,3]");
    // Both module outputs now read extracts.
    for o in &f.outputs {
        assert!(matches!(f.nodes[o.value].op, Op::Extract { .. }), "output `{}`", o.name);
    }
    assert_same_bits("seq kernel", &run_small(&m).outputs, &run_small(&f).outputs);
}

#[test]
fn the_fused_tutorial_prints_stably() {
    // The text form of the step loop is part of the pass's contract (dumps,
    // snapshots): it must not change from run to run or machine to machine.
    let finite = Fuse { assume_finite: true, ..Fuse::default() };
    let text = snnc_ir::print(&fused_with(finite, &lowered("tutorial", Dtype::F32)).0);
    let lif: String = text.lines().skip_while(|l| !l.contains("fused lif1")).take(22).collect::<Vec<_>>().join("\n");
    let expected = "    %40 = fused lif1(%37, %38, %39, %36) : f32[B,100] {
      k0 = in %37 : f32
      k1 = in %38 : f32
      k2 = add k0, k1 : f32
      k3 = in %39 : f32
      k4 = add k2, k3 : f32
      k5 = const -0.2 : f32
      k6 = mul k5, k4 : f32
      k7 = add k4, k6 : f32
      k8 = in %36 : f32
      k9 = const 0.1 : f32
      k10 = const 0.0 : f32
      k11 = sub k10, k8 : f32
      k12 = add k11, k4 : f32
      k13 = mul k9, k12 : f32
      k14 = add k8, k13 : f32
      k15 = const 0.5 : f32
      k16 = sub k14, k15 : f32
      k17 = threshold k16, superspike : spike
      k18 = select k17, k10, k14 : f32
      out k7, k17, k18
    }";
    assert_eq!(lif, expected);
}
