//! BatchNorm1d / BatchNorm2d (docs/batchnorm.md): the interpreter against a
//! direct f64 reference (evaluation and per-step training, with the batch
//! statistics outputs), the CPU backend against the interpreter forward
//! and backward, gradients against central finite differences, and the
//! running-statistics update.

use std::collections::BTreeMap;

use snnc::driver::{self, Target};
use snnc_frontend::{LowerOptions, Network, parse_network};
use snnc_interp::RunOptions;
use snnc_ir::{Dtype, Module};
use snnc_passes::{AutodiffOptions, PassOptions};
use snnc_runtime::{Tensor, Weights};

const T: usize = 3;
const B: usize = 4;

fn net(two_d: bool) -> Network {
    let src = if two_d {
        "(version: 1, name: \"bn\", steps: 3, input: [2, 3, 2], \
          layers: [BatchNorm2d(name: \"bn\", eps: 1e-3, momentum: 0.2)])"
    } else {
        "(version: 1, name: \"bn\", steps: 3, input: [5], layers: [BatchNorm1d(name: \"bn\", num_features: 5)])"
    };
    parse_network(src, "bn.ron").unwrap_or_else(|e| panic!("{e}"))
}

fn lower(net: &Network, float: Dtype, training: bool) -> Module {
    let opts = LowerOptions { float, training, ..LowerOptions::default() };
    snnc_frontend::lower(net, "bn.ron", &opts).unwrap_or_else(|e| panic!("{e}"))
}

fn run(m: &Module, w: &Weights, x: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    let info = snnc_ir::validate(m).unwrap_or_else(|e| panic!("{e}\n{}", snnc_ir::print(m)));
    snnc_interp::run(m, &info, w, x, &RunOptions::default()).unwrap_or_else(|e| panic!("{e}")).outputs
}

/// Weights in [-1, 1); running variances in [0.5, 1.5).
fn weights(m: &Module, seed: u64) -> Weights {
    let elem = snnc_runtime::weights::elem_type(m.float);
    m.params
        .iter()
        .enumerate()
        .map(|(i, (_, p))| {
            let dims: Vec<usize> = p.shape.resolve(1);
            let n: usize = dims.iter().product();
            let data = (0..n)
                .map(|k| {
                    let u = snnc_ir::rng::uniform(seed + i as u64, 0, k as u64);
                    if p.name.ends_with("running_var") { 0.5 + u } else { 2.0 * u - 1.0 }
                })
                .collect();
            (p.name.clone(), Tensor::new(dims, elem, data).unwrap())
        })
        .collect()
}

fn input(m: &Module, shape: &[u32], seed: u64) -> BTreeMap<String, Tensor> {
    let elem = snnc_runtime::weights::elem_type(m.float);
    let mut dims = vec![T, B];
    dims.extend(shape.iter().map(|&d| d as usize));
    let n: usize = dims.iter().product();
    let data = (0..n).map(|k| 3.0 * snnc_ir::rng::uniform(seed, 1, k as u64) - 1.0).collect();
    BTreeMap::from([("x".to_string(), Tensor::new(dims, elem, data).unwrap())])
}

/// The reference: `[T, B, C, S]` (S = H·W, 1 for BatchNorm1d).
struct Reference {
    out: Vec<f64>,
    mean: Vec<f64>,
    var: Vec<f64>,
}

fn reference(x: &[f64], c: usize, s: usize, w: &Weights, eps: f64, training: bool) -> Reference {
    let (g, b) = (&w["bn.weight"].data, &w["bn.bias"].data);
    let (rm, rv) = (&w["bn.running_mean"].data, &w["bn.running_var"].data);
    let mut r = Reference { out: vec![0.0; x.len()], mean: Vec::new(), var: Vec::new() };
    let at = |t: usize, b: usize, k: usize, i: usize| ((t * B + b) * c + k) * s + i;
    for t in 0..T {
        for k in 0..c {
            let n = (B * s) as f64;
            let vals: Vec<f64> =
                (0..B).flat_map(|b| (0..s).map(move |i| (b, i))).map(|(b, i)| x[at(t, b, k, i)]).collect();
            let mu = vals.iter().sum::<f64>() / n;
            let var = vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / n;
            r.mean.push(mu);
            r.var.push(var);
            let (m, v) = if training { (mu, var) } else { (rm[k], rv[k]) };
            for bi in 0..B {
                for i in 0..s {
                    let j = at(t, bi, k, i);
                    r.out[j] = (x[j] - m) / (v + eps).sqrt() * g[k] + b[k];
                }
            }
        }
    }
    r
}

#[test]
fn interpreter_equals_the_f64_reference() {
    for two_d in [false, true] {
        let net = net(two_d);
        let (shape, c, s, eps): (&[u32], usize, usize, f64) =
            if two_d { (&[2, 3, 2], 2, 6, 1e-3) } else { (&[5], 5, 1, 1e-5) };
        for training in [false, true] {
            let m = lower(&net, Dtype::F64, training);
            let (w, x) = (weights(&m, 3), input(&m, shape, 4));
            let out = run(&m, &w, &x);
            let want = reference(&x["x"].data, c, s, &w, eps, training);
            let got = &out["output"];
            for (k, (a, e)) in got.data.iter().zip(&want.out).enumerate() {
                assert!((a - e).abs() <= 1e-12, "2d {two_d}, training {training}: output[{k}] {a} vs {e}");
            }
            if training {
                for (name, e) in [("bn.batch_mean", &want.mean), ("bn.batch_var", &want.var)] {
                    let t = &out[name];
                    assert_eq!(t.shape, vec![T, c], "{name}");
                    for (k, (a, e)) in t.data.iter().zip(e).enumerate() {
                        assert!((a - e).abs() <= 1e-12, "2d {two_d}: {name}[{k}] {a} vs {e}");
                    }
                }
            } else {
                assert!(!out.contains_key("bn.batch_mean"), "evaluation has no batch statistics");
            }
        }
    }
}

#[test]
fn parameters_are_named_as_torch_state_dicts() {
    let m = lower(&net(true), Dtype::F32, false);
    let names: Vec<(String, Vec<usize>, bool)> =
        m.params.iter().map(|(_, p)| (p.name.clone(), p.shape.resolve(1), p.trainable)).collect();
    assert_eq!(
        names,
        vec![
            ("bn.weight".into(), vec![2], true),
            ("bn.bias".into(), vec![2], true),
            ("bn.running_mean".into(), vec![2], false),
            ("bn.running_var".into(), vec![2], false),
            ("bn.num_batches_tracked".into(), vec![], false),
        ]
    );
}

fn grad_options(fwd: &Module) -> AutodiffOptions {
    AutodiffOptions { seeds: fwd.outputs.iter().map(|o| o.name.clone()).collect(), inputs: vec!["x".into()] }
}

/// Seeds `grad.<output>` in `[-1, 1)`.
fn seeds(fwd: &Module, outputs: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    let elem = snnc_runtime::weights::elem_type(fwd.float);
    fwd.outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let t = &outputs[&o.name];
            let data =
                (0..t.data.len()).map(|k| 2.0 * snnc_ir::rng::uniform(91 + i as u64, 0, k as u64) - 1.0).collect();
            (snnc_passes::autodiff::seed_input_name(&o.name), Tensor::new(t.shape.clone(), elem, data).unwrap())
        })
        .collect()
}

#[test]
fn cpu_agrees_with_the_interpreter_forward_and_backward() {
    for two_d in [false, true] {
        let shape: &[u32] = if two_d { &[2, 3, 2] } else { &[5] };
        for training in [false, true] {
            let fwd = lower(&net(two_d), Dtype::F32, training);
            let (w, x) = (weights(&fwd, 5), input(&fwd, shape, 6));
            let mut inputs = x.clone();
            inputs.extend(seeds(&fwd, &run(&fwd, &w, &x)));
            let mut results = Vec::new();
            for target in [Target::Interp, Target::Cpu] {
                let mut m = fwd.clone();
                let (info, _) =
                    driver::differentiate(&mut m, target, None, &PassOptions::default(), &grad_options(&fwd))
                        .unwrap_or_else(|e| panic!("{e}"));
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
            for name in ["grad.bn.weight", "grad.bn.bias", "grad.x", "output"] {
                assert!(want[name].data.iter().any(|v| *v != 0.0), "{name} is all zeros");
            }
            for (name, e) in want {
                let a = &got[name];
                assert_eq!(a.shape, e.shape, "{name}");
                let largest = e.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                for (k, (g, v)) in a.data.iter().zip(&e.data).enumerate() {
                    assert!(
                        (g - v).abs() <= 1e-5 * largest.max(1.0),
                        "2d {two_d}, training {training}: {name}[{k}]: cpu {g}, interpreter {v}"
                    );
                }
            }
        }
    }
}

/// Autodiff (as lowered, and after time-batch) against central finite
/// differences of `sum(seed · outputs)`, f64, gradients through the batch
/// mean and variance in training.
#[test]
fn gradients_equal_finite_differences() {
    for two_d in [false, true] {
        let shape: &[u32] = if two_d { &[2, 3, 2] } else { &[5] };
        for training in [false, true] {
            let fwd = lower(&net(two_d), Dtype::F64, training);
            let (w, x) = (weights(&fwd, 7), input(&fwd, shape, 8));
            let seed = seeds(&fwd, &run(&fwd, &w, &x));
            let loss = |w: &Weights, x: &BTreeMap<String, Tensor>| -> f64 {
                let r = run(&fwd, w, x);
                fwd.outputs
                    .iter()
                    .map(|o| {
                        let s = &seed[&snnc_passes::autodiff::seed_input_name(&o.name)];
                        r[&o.name].data.iter().zip(&s.data).map(|(a, b)| a * b).sum::<f64>()
                    })
                    .sum()
            };
            for pre in ["none", "time-batch"] {
                let mut bwd = fwd.clone();
                snnc_passes::parse_pipeline(pre, &PassOptions::default()).unwrap().run(&mut bwd, &mut |_| {}).unwrap();
                snnc_passes::differentiate(&mut bwd, &grad_options(&fwd)).unwrap_or_else(|e| panic!("{e}"));
                let mut inputs = x.clone();
                inputs.extend(seed.clone());
                let r = run(&bwd, &w, &inputs);
                for (name, is_param) in [("bn.weight", true), ("bn.bias", true), ("x", false)] {
                    let g = &r[&snnc_passes::autodiff::grad_output_name(name)];
                    let len = g.data.len();
                    for k in (0..len).step_by(len.div_ceil(7)) {
                        let eps = 1e-6;
                        let eval = |delta: f64| {
                            let (mut w, mut x) = (w.clone(), x.clone());
                            let t = if is_param { w.get_mut(name).unwrap() } else { x.get_mut(name).unwrap() };
                            t.data[k] += delta;
                            loss(&w, &x)
                        };
                        let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
                        let a = g.data[k];
                        assert!(
                            (fd - a).abs() <= 1e-7 + 1e-6 * fd.abs().max(a.abs()),
                            "2d {two_d}, training {training}, {pre}: d loss / d {name}[{k}]: fd {fd}, autodiff {a}"
                        );
                    }
                }
            }
        }
    }
}

/// A training run's batch statistics through the runtime's update: T
/// updates in time order, unbiased with n = B·H·W, as torch.
#[test]
fn running_statistics_follow_torch_update_rule() {
    let net = net(true);
    let m = lower(&net, Dtype::F64, true);
    let (mut w, x) = (weights(&m, 9), input(&m, &[2, 3, 2], 10));
    let want = reference(&x["x"].data, 2, 6, &w, 1e-3, true);
    let (mut rm, mut rv) = (w["bn.running_mean"].data.clone(), w["bn.running_var"].data.clone());
    let nbt = w["bn.num_batches_tracked"].data[0];
    let out = run(&m, &w, &x);
    let n = B * 6;
    snnc_runtime::batchnorm::update_running_stats(&mut w, "bn", 0.2, n, &out["bn.batch_mean"], &out["bn.batch_var"])
        .unwrap();
    for t in 0..T {
        for k in 0..2 {
            rm[k] = 0.8 * rm[k] + 0.2 * want.mean[t * 2 + k];
            rv[k] = 0.8 * rv[k] + 0.2 * want.var[t * 2 + k] * n as f64 / (n as f64 - 1.0);
        }
    }
    for (name, e) in [("bn.running_mean", &rm), ("bn.running_var", &rv)] {
        for (k, (a, e)) in w[name].data.iter().zip(e).enumerate() {
            assert!((a - e).abs() <= 1e-12, "{name}[{k}]: {a} vs {e}");
        }
    }
    assert_eq!(w["bn.num_batches_tracked"].data, vec![nbt + T as f64]);
}

#[test]
fn check_names_the_layer_field_and_fix() {
    let cases = [
        ("BatchNorm1d(name: \"bn\", eps: 0.0)", "eps", "must be more than 0"),
        ("BatchNorm1d(name: \"bn\", momentum: 1.5)", "momentum", "must be in [0, 1]"),
        ("BatchNorm1d(name: \"bn\", num_features: 4)", "num_features", "set num_features: 5"),
        ("BatchNorm2d(name: \"bn\")", "bn", "BatchNorm2d needs a [channels, height, width] input"),
    ];
    for (layer, at, msg) in cases {
        let src = format!("(version: 1, name: \"n\", steps: 2, input: [5], layers: [{layer}])");
        let e = parse_network(&src, "n.ron")
            .and_then(|net| snnc_frontend::lower(&net, "n.ron", &LowerOptions::default()))
            .expect_err(layer)
            .to_string();
        assert!(e.contains(at) && e.contains(msg), "{layer}: {e}");
    }
}
