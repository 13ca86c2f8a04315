//! `concat` and `narrow` in the passes: `sparsify` sees the spikes and the
//! densities of a concat's operands, fusion leaves them alone but fuses
//! around them, `cse` merges equal ones only, and every pass keeps the
//! interpreter's bits (traces and final states included).

mod common;

use std::collections::BTreeMap;

use snnc_ir::{
    Builder, Dtype, Handle, MatMulKind, Module, Node, Op, Param, ParamInit, Shape, StateInit, Surrogate, Type,
};
use snnc_passes::Pass;
use snnc_passes::sparsify::Sparsify;

/// Two spiking populations `a` (`[B, 64]`) and `b` (`[B, 32]`) whose
/// spikes are concatenated (twice, equally, and once in the other order)
/// and read by a `[128, 96]` product, and a narrow of the concat by a
/// `[128, 32]` one.
fn module() -> Module {
    let mut b = Builder::new("concat", 4, 1e-3, Dtype::F32);
    let x = b.input("x", Type::seq(Dtype::F32, Shape::batched(&[96])));
    let w = b.param(Param {
        name: "fc.weight".into(),
        dtype: Dtype::F32,
        shape: Shape::fixed(&[128, 96]),
        trainable: true,
        init: ParamInit::Zeros,
    });
    let w2 = b.param(Param {
        name: "slice.weight".into(),
        dtype: Dtype::F32,
        shape: Shape::fixed(&[128, 32]),
        trainable: true,
        init: ParamInit::Zeros,
    });
    let va = b.state("a.v", Type::new(Dtype::F32, Shape::batched(&[64])), StateInit::Fill(0.0));
    let vb = b.state("b.v", Type::new(Dtype::F32, Shape::batched(&[32])), StateInit::Fill(0.0));
    b.begin_seq();
    let xs = b.emit(Op::Input(x)).unwrap();
    let wi = b.emit(Op::Param(w)).unwrap();
    let w2i = b.emit(Op::Param(w2)).unwrap();
    b.begin_step();
    let xt = b.emit(Op::Step(xs)).unwrap();
    let xa = b.narrow(xt, 0, 64).unwrap();
    let xb = b.narrow(xt, 64, 32).unwrap();
    let pop = |b: &mut Builder, v, x: Handle<Node>, name: &str| {
        let r = b.state_read(v).unwrap();
        let k = b.constant(0.5).unwrap();
        let kept = b.mul(k, r).unwrap();
        let vn = b.add(kept, x).unwrap();
        let th = b.constant(1.0).unwrap();
        let over = b.sub(vn, th).unwrap();
        let z = b.threshold(over, Surrogate::SuperSpike).unwrap();
        b.name(z, format!("{name}.z"));
        let zs = b.emit(Op::StopGradient(z)).unwrap();
        let one = b.constant(1.0).unwrap();
        let keep = b.sub(one, zs).unwrap();
        let reset = b.mul(keep, vn).unwrap();
        b.state_write(v, reset).unwrap();
        z
    };
    let za = pop(&mut b, va, xa, "a");
    let zb = pop(&mut b, vb, xb, "b");
    let c = b.concat(vec![za, zb]).unwrap();
    let c_again = b.concat(vec![za, zb]).unwrap();
    let swapped = b.concat(vec![zb, za]).unwrap();
    let y = b.emit(Op::MatMul { input: c, weight: wi, kind: MatMulKind::Dense }).unwrap();
    let y_again = b.emit(Op::MatMul { input: c_again, weight: wi, kind: MatMulKind::Dense }).unwrap();
    let part = b.narrow(swapped, 0, 32).unwrap();
    let y2 = b.emit(Op::MatMul { input: part, weight: w2i, kind: MatMulKind::Dense }).unwrap();
    let sum = b.add(y, y_again).unwrap();
    b.name(sum, "out.sum");
    b.begin_seq();
    let s = b.emit(Op::Collect(sum)).unwrap();
    let s2 = b.emit(Op::Collect(y2)).unwrap();
    b.output("y", s);
    b.output("y2", s2);
    b.finish()
}

fn kinds(m: &Module) -> Vec<MatMulKind> {
    m.nodes
        .iter()
        .filter_map(|(_, n)| match n.op {
            Op::MatMul { kind, .. } => Some(kind),
            _ => None,
        })
        .collect()
}

fn sparsify(m: &mut Module, densities: &[(&str, f64)]) -> String {
    let per_value: BTreeMap<String, f64> = densities.iter().map(|(k, d)| (k.to_string(), *d)).collect();
    let report = Sparsify { default_density: 0.5, per_value }.run(m).unwrap();
    snnc_ir::validate(m).unwrap();
    format!("{report:?}")
}

#[test]
fn sparsify_takes_a_concats_density_from_its_operands() {
    // Sparse operands: both products read spikes of density 0.01.
    let mut m = module();
    let report = sparsify(&mut m, &[("a.z", 0.01), ("b.z", 0.01)]);
    assert_eq!(kinds(&m), vec![MatMulKind::EventDriven; 3], "{report}");
    assert!(report.contains("of the concat of a.z, b.z"), "{report}");
    // Dense operands (and the default 0.5 of an unknown one): dense.
    let mut m = module();
    sparsify(&mut m, &[("a.z", 0.6)]);
    assert_eq!(kinds(&m), vec![MatMulKind::Dense; 3]);
    // The narrow reads only `b.z`'s part of the swapped concat: the weighted
    // mean over the whole concat decides (0.01 · 64 + 0.9 · 32) / 96 = 0.31
    // for it, dense; the other products too.
    let mut m = module();
    sparsify(&mut m, &[("a.z", 0.01), ("b.z", 0.9)]);
    assert_eq!(kinds(&m), vec![MatMulKind::Dense; 3]);
    // The concat's own name wins.
    let mut m = module();
    let c = m.nodes.iter().find(|(_, n)| matches!(n.op, Op::Concat { .. })).unwrap().0;
    m.nodes[c].name = Some("mix".into());
    sparsify(&mut m, &[("a.z", 0.9), ("b.z", 0.9), ("mix", 0.01)]);
    assert_eq!(kinds(&m), vec![MatMulKind::EventDriven, MatMulKind::Dense, MatMulKind::Dense]);
}

#[test]
fn cse_merges_equal_concats_only_and_every_pass_keeps_the_bits() {
    let m = module();
    let want = common::run(&m);
    let mut cse = m.clone();
    common::apply(&mut cse, "cse");
    let concats = cse.nodes.iter().filter(|(_, n)| matches!(n.op, Op::Concat { .. })).count();
    assert_eq!(concats, 2, "{}", snnc_ir::print(&cse));
    let mut all = m.clone();
    for p in ["const-fold", "cse", "dce", "time-batch", "sparsify", "fuse", "unroll", "cse", "dce"] {
        common::apply(&mut all, p);
        common::assert_same(&format!("after {p}"), &want, &common::run(&all));
    }
    // Fusion made kernels of the neurons and left the layout ops alone.
    let count = |f: fn(&Op) -> bool| all.nodes.iter().filter(|(_, n)| f(&n.op)).count();
    assert!(count(|op| matches!(op, Op::Fused(_))) >= 1, "{}", snnc_ir::print(&all));
    assert_eq!(count(|op| matches!(op, Op::Concat { .. })), 2, "{}", snnc_ir::print(&all));
    assert_eq!(count(|op| matches!(op, Op::Narrow { .. })), 3, "{}", snnc_ir::print(&all));
    assert!(all.body.iter().any(|r| r.unroll > 1), "{}", snnc_ir::print(&all));
}
