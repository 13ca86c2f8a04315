//! `concat` and `narrow` through the pipeline on a hand-built module
//! (`common::concat_net`): every pass keeps the interpreter's bits, the
//! spike dtype survives to the products, the CPU backend agrees with the
//! interpreter forward and backward, and the gradients equal central
//! finite differences (f64). The PTX side is in `tests/ptx.rs`.

mod common;

use std::collections::BTreeMap;

use common::concat_net;
use snnc::driver::{self, Target};
use snnc_interp::RunOptions;
use snnc_ir::{Dtype, MatMulKind, Module, Op, RegionKind};
use snnc_passes::{AutodiffOptions, PassOptions};
use snnc_runtime::{Tensor, Weights};

const BATCH: usize = 3;

fn interp(m: &Module, w: &Weights, x: &BTreeMap<String, Tensor>) -> snnc_interp::RunResult {
    let info = snnc_ir::validate(m).unwrap_or_else(|e| panic!("{e}\n{}", snnc_ir::print(m)));
    snnc_interp::run(m, &info, w, x, &RunOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_same_bits(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape, want.shape, "{what}");
    for (k, (a, b)) in got.data.iter().zip(&want.data).enumerate() {
        assert!(a.to_bits() == b.to_bits(), "{what}[{k}]: {a} vs {b}");
    }
}

/// Seeds `grad.<output>` in `[-1, 1)`, with the shapes of a forward run.
fn seeds(fwd: &Module, outputs: &snnc_interp::RunResult) -> BTreeMap<String, Tensor> {
    let elem = concat_net::elem(fwd);
    fwd.outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let t = &outputs.outputs[&o.name];
            let data =
                (0..t.data.len()).map(|k| 2.0 * snnc_ir::rng::uniform(91 + i as u64, 0, k as u64) - 1.0).collect();
            (snnc_passes::autodiff::seed_input_name(&o.name), Tensor::new(t.shape.clone(), elem, data).unwrap())
        })
        .collect()
}

fn grad_options(fwd: &Module) -> AutodiffOptions {
    AutodiffOptions { seeds: fwd.outputs.iter().map(|o| o.name.clone()).collect(), inputs: vec!["x".into()] }
}

#[test]
fn printed_ir_snapshot() {
    let m = concat_net::module(Dtype::F32, true, true, 4);
    insta::assert_snapshot!(snnc_ir::print(&m));
}

#[test]
fn every_pass_keeps_the_bits_and_places_the_concat() {
    for (spiking, recurrent) in [(false, true), (true, true), (false, false), (true, false)] {
        let m = concat_net::module(Dtype::F32, spiking, recurrent, 6);
        let (w, x) = (concat_net::weights(&m, 3), concat_net::inputs(&m, BATCH, 3));
        let want = interp(&m, &w, &x);
        for target in [Target::Interp, Target::Cpu, Target::Cuda] {
            let mut opt = m.clone();
            let pipeline = driver::pipeline(target, None, &PassOptions::default()).unwrap();
            pipeline.run(&mut opt, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
            let got = interp(&opt, &w, &x);
            for o in &m.outputs {
                assert_same_bits(
                    &format!("{} {}", target.name(), o.name),
                    &got.outputs[&o.name],
                    &want.outputs[&o.name],
                );
            }
            // A concat that feeds its own state stays per step, in a step
            // loop; else it is batched over T with its products. It keeps
            // the spike dtype when its operands are spikes.
            let concats: Vec<_> = opt.nodes.iter().filter(|(_, n)| matches!(n.op, Op::Concat { .. })).collect();
            assert_eq!(concats.len(), 1, "{}", snnc_ir::print(&opt));
            let (h, node) = concats[0];
            let region = opt.body.iter().find(|r| r.nodes.contains(&h)).unwrap();
            let kind = if recurrent { RegionKind::Step } else { RegionKind::Seq };
            assert_eq!((region.kind.clone(), node.ty.seq), (kind, !recurrent), "{}", snnc_ir::print(&opt));
            assert_eq!(node.ty.dtype, if spiking { Dtype::Spike } else { Dtype::F32 });
        }
        // time-batch batches both products over T, reading the collected
        // concat (and its narrow); with spikes they stay spike products.
        let mut tb = m.clone();
        snnc_passes::parse_pipeline("time-batch,sparsify", &PassOptions::default())
            .unwrap()
            .run(&mut tb, &mut |_| {})
            .unwrap();
        let products: Vec<_> = tb.nodes.iter().filter(|(_, n)| matches!(n.op, Op::MatMul { .. })).collect();
        let batched = products.iter().filter(|(_, n)| n.ty.seq).count();
        assert_eq!(batched, 4, "{}", snnc_ir::print(&tb));
        let spike_inputs = products
            .iter()
            .filter(|(_, n)| matches!(n.op, Op::MatMul { input, .. } if tb.nodes[input].ty.dtype == Dtype::Spike))
            .count();
        assert_eq!(spike_inputs, if spiking { 2 } else { 0 }, "{}", snnc_ir::print(&tb));
        let event = products.iter().filter(|(_, n)| matches!(n.op, Op::MatMul { kind: MatMulKind::EventDriven, .. }));
        assert!(event.count() <= spike_inputs);
    }
}

/// Forward and backward on the CPU backend against the interpreter (the
/// same differentiated module, each backend's training pipeline).
#[test]
fn cpu_agrees_with_the_interpreter_forward_and_backward() {
    for (spiking, recurrent) in [(false, true), (true, true), (false, false), (true, false)] {
        let fwd = concat_net::module(Dtype::F32, spiking, recurrent, 8);
        let (w, x) = (concat_net::weights(&fwd, 5), concat_net::inputs(&fwd, BATCH, 5));
        let fwd_out = interp(&fwd, &w, &x);
        let mut inputs = x.clone();
        inputs.extend(seeds(&fwd, &fwd_out));
        let mut results = Vec::new();
        for target in [Target::Interp, Target::Cpu] {
            let mut m = fwd.clone();
            let (info, report) =
                driver::differentiate(&mut m, target, None, &PassOptions::default(), &grad_options(&fwd))
                    .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(report.gradients.len(), 5, "{report:?}");
            let res = match target {
                Target::Cpu => {
                    let exe = snnc_cpu::compile(&m, &info).unwrap_or_else(|e| panic!("{e}"));
                    exe.run(&w, &inputs, &Default::default()).unwrap_or_else(|e| panic!("{e}")).outputs
                }
                _ => snnc_interp::run(&m, &info, &w, &inputs, &RunOptions::default()).unwrap().outputs,
            };
            results.push(res);
        }
        let (want, got) = (&results[0], &results[1]);
        assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
        for (name, e) in want {
            let a = &got[name];
            assert_eq!(a.shape, e.shape, "{name}");
            let largest = e.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (k, (g, v)) in a.data.iter().zip(&e.data).enumerate() {
                assert!(
                    (g - v).abs() <= 1e-5 * largest.max(1.0),
                    "spiking {spiking}, recurrent {recurrent}: {name}[{k}]: cpu {g}, interpreter {v}"
                );
            }
            assert!(name.starts_with("grad.") || largest > 0.0, "{name} is all zeros");
        }
        // The gradients are not trivially zero.
        for name in ["grad.a.weight", "grad.b.weight", "grad.out.weight", "grad.slice.weight", "grad.x"] {
            assert!(
                want[name].data.iter().any(|v| *v != 0.0),
                "spiking {spiking}, recurrent {recurrent}: {name} is zero"
            );
        }
    }
}

/// The smooth module in f64: autodiff (on the lowering as it is, with the
/// concat and narrow in the step loop, and after time-batch) against
/// central finite differences of `sum(seed · outputs)`.
#[test]
fn gradients_through_concat_and_narrow_equal_finite_differences() {
    for recurrent in [true, false] {
        check_fd(recurrent);
    }
}

fn check_fd(recurrent: bool) {
    let fwd = concat_net::module(Dtype::F64, false, recurrent, 5);
    let (w, x) = (concat_net::weights(&fwd, 7), concat_net::inputs(&fwd, 2, 7));
    let out = interp(&fwd, &w, &x);
    let seed = seeds(&fwd, &out);
    let loss = |w: &Weights, x: &BTreeMap<String, Tensor>| -> f64 {
        let r = interp(&fwd, w, x);
        fwd.outputs
            .iter()
            .map(|o| {
                let s = &seed[&snnc_passes::autodiff::seed_input_name(&o.name)];
                r.outputs[&o.name].data.iter().zip(&s.data).map(|(a, b)| a * b).sum::<f64>()
            })
            .sum()
    };
    for pre in ["none", "time-batch"] {
        let mut bwd = fwd.clone();
        snnc_passes::parse_pipeline(pre, &PassOptions::default()).unwrap().run(&mut bwd, &mut |_| {}).unwrap();
        snnc_passes::differentiate(&mut bwd, &grad_options(&fwd)).unwrap_or_else(|e| panic!("{e}"));
        // Concat's adjoint is a narrow of the gradient; narrow's a concat
        // with zero blocks.
        let count = |f: fn(&Op) -> bool| bwd.nodes.iter().filter(|(_, n)| f(&n.op)).count();
        assert!(count(|op| matches!(op, Op::Narrow { .. })) >= 3, "{}", snnc_ir::print(&bwd));
        assert!(count(|op| matches!(op, Op::Concat { .. })) >= 2, "{}", snnc_ir::print(&bwd));
        let mut inputs = x.clone();
        inputs.extend(seed.clone());
        let r = interp(&bwd, &w, &inputs);
        let mut targets: Vec<(String, bool)> = fwd.params.iter().map(|(_, p)| (p.name.clone(), true)).collect();
        targets.push(("x".into(), false));
        for (name, is_param) in targets {
            let g = &r.outputs[&snnc_passes::autodiff::grad_output_name(&name)];
            let len = g.data.len();
            for k in (0..len).step_by(len.div_ceil(5)) {
                let eps = 1e-6;
                let eval = |delta: f64| {
                    let (mut w, mut x) = (w.clone(), x.clone());
                    let t = if is_param { w.get_mut(&name).unwrap() } else { x.get_mut(&name).unwrap() };
                    t.data[k] += delta;
                    loss(&w, &x)
                };
                let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
                let a = g.data[k];
                assert!(
                    (fd - a).abs() <= 1e-7 + 1e-6 * fd.abs().max(a.abs()),
                    "recurrent {recurrent}, {pre}: d loss / d {name}[{k}]: finite differences {fd}, autodiff {a}"
                );
            }
        }
    }
}
