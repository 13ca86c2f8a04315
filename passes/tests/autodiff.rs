//! The autodiff pass: every fixture differentiates to valid IR that the
//! later passes keep valid, and gradients equal central finite differences
//! (f64, interpreter) on networks whose gradient paths are smooth.

mod common;

use std::collections::BTreeMap;

use snnc_interp::RunOptions;
use snnc_ir::{Dtype, Module};
use snnc_passes::{AutodiffOptions, GradReport, differentiate};
use snnc_runtime::{Tensor, Weights};

const PRE: [&str; 4] = ["const-fold", "cse", "dce", "time-batch"];
const POST: [&str; 5] = ["sparsify", "fuse", "unroll", "cse", "dce"];

fn prepared(net: &snnc_frontend::Network, float: Dtype) -> Module {
    let mut m = common::lower_net(net, float);
    for p in PRE {
        common::apply(&mut m, p);
    }
    m
}

fn with_grads(forward: &Module, inputs: &[&str]) -> (Module, GradReport) {
    let mut m = forward.clone();
    let opts = AutodiffOptions { seeds: Vec::new(), inputs: inputs.iter().map(|s| s.to_string()).collect() };
    let report = differentiate(&mut m, &opts).unwrap_or_else(|e| panic!("{e}"));
    snnc_ir::validate(&m).unwrap_or_else(|e| panic!("autodiff made invalid IR: {e}\n{}", snnc_ir::print(&m)));
    (m, report)
}

#[test]
fn every_fixture_differentiates_and_stays_valid_through_the_later_passes() {
    for path in common::fixture_paths() {
        let net = snnc_frontend::load_network(&path).unwrap_or_else(|e| panic!("{e}"));
        let fwd = prepared(&net, Dtype::F32);
        if fwd.states.iter().any(|(_, s)| matches!(s.init, snnc_ir::StateInit::Param(_))) {
            // A plastic weight (STDP) is refused, with the reason.
            let err = differentiate(&mut fwd.clone(), &AutodiffOptions::default()).map(|_| ()).expect_err("refused");
            assert!(err.to_string().contains("is plastic"), "{}: {err}", path.display());
            continue;
        }
        let (mut m, report) = with_grads(&fwd, &[]);
        assert!(
            !report.gradients.is_empty() || fwd.parameter_count() == 0,
            "{}: no gradient at all ({report:?})",
            path.display()
        );
        for p in POST {
            common::apply(&mut m, p);
        }
        // Deterministic: the same IR text twice.
        let (mut again, _) = with_grads(&fwd, &[]);
        for p in POST {
            common::apply(&mut again, p);
        }
        assert_eq!(snnc_ir::print(&m), snnc_ir::print(&again), "{}", path.display());
    }
}

/// A deterministic value in `[-1, 1)` for seeds.
fn seed_value(k: usize, salt: u64) -> f64 {
    2.0 * snnc_ir::rng::uniform(777 + salt, 0, k as u64) - 1.0
}

/// `loss = sum(seed · output)` over every output of the forward module.
fn loss(forward: &Module, weights: &Weights, inputs: &BTreeMap<String, Tensor>) -> f64 {
    let info = snnc_ir::validate(forward).expect("valid");
    let r = snnc_interp::run(forward, &info, weights, inputs, &RunOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut total = 0.0;
    for (i, o) in forward.outputs.iter().enumerate() {
        let t = &r.outputs[&o.name];
        total += t.data.iter().enumerate().map(|(k, x)| x * seed_value(k, i as u64)).sum::<f64>();
    }
    total
}

/// Checks every gradient of `net` (f64) against central differences at a
/// few entries of each parameter (and input `x` when `wrt_input`).
fn check_fd(src: &str, wrt_input: bool) {
    let net = snnc_frontend::parse_network(src, "fd.ron").unwrap_or_else(|e| panic!("{e}"));
    let fwd = prepared(&net, Dtype::F64);
    let wrt: Vec<&str> = if wrt_input { vec!["x"] } else { vec![] };
    let (bwd, report) = with_grads(&fwd, &wrt);
    if std::env::var("SNNC_DEBUG_AD").is_ok() {
        eprintln!("{}", snnc_ir::print(&bwd));
    }
    let batch = 2;
    let weights = snnc_runtime::init_weights(&fwd, 5);
    let inputs = common::inputs(&fwd, batch);
    let mut all_inputs = inputs.clone();
    let info = snnc_ir::validate(&bwd).expect("valid");
    for (i, o) in fwd.outputs.iter().enumerate() {
        let shape = {
            let info_f = snnc_ir::validate(&fwd).expect("valid");
            let r = snnc_interp::run(&fwd, &info_f, &weights, &inputs, &RunOptions::default()).expect("runs");
            r.outputs[&o.name].shape.clone()
        };
        let n: usize = shape.iter().product();
        let data = (0..n).map(|k| seed_value(k, i as u64)).collect();
        all_inputs.insert(
            snnc_passes::autodiff::seed_input_name(&o.name),
            Tensor::new(shape, snnc_runtime::ElemType::F64, data).expect("shape"),
        );
    }
    let r = snnc_interp::run(&bwd, &info, &weights, &all_inputs, &RunOptions::default()).expect("runs");
    let mut checked = 0;
    let names: Vec<String> = fwd.params.iter().filter(|(_, p)| p.trainable).map(|(_, p)| p.name.clone()).collect();
    let mut targets: Vec<(String, bool)> = names.into_iter().map(|n| (n, true)).collect();
    if wrt_input {
        targets.push(("x".to_string(), false));
    }
    for (name, is_param) in targets {
        let grad = r.outputs.get(&snnc_passes::autodiff::grad_output_name(&name));
        let len = if is_param { weights[&name].data.len() } else { inputs[&name].data.len() };
        for j in 0..4usize.min(len) {
            let k = (j * 7919 + 13) % len;
            let eps = 1e-6;
            let eval = |delta: f64| {
                let (mut w, mut x) = (weights.clone(), inputs.clone());
                let t = if is_param { w.get_mut(&name).expect("weight") } else { x.get_mut(&name).expect("input") };
                t.data[k] += delta;
                loss(&fwd, &w, &x)
            };
            let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
            let g = grad.map_or(0.0, |t| t.data[k]);
            assert!(
                (fd - g).abs() <= 1e-6 + 1e-5 * fd.abs().max(g.abs()),
                "{}: d loss / d {name}[{k}]: finite differences {fd}, autodiff {g} ({report:?})",
                net.name
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn smooth_readout_paths_match_finite_differences() {
    // Linear → LI, max readout: every path is smooth.
    check_fd(
        r#"(version: 1, name: "li_max", steps: 7, input: [5],
            layers: [Linear(name: "fc1", out: 4), LI(name: "out")], readout: Max)"#,
        true,
    );
    // Log-softmax of the max, and a mean readout.
    check_fd(
        r#"(version: 1, name: "li_logsoftmax", steps: 6, input: [5],
            layers: [Linear(name: "fc1", out: 3, bias: true), LI(name: "out")], readout: MaxLogSoftmax)"#,
        true,
    );
    check_fd(
        r#"(version: 1, name: "li_mean", steps: 5, input: [4],
            layers: [Linear(name: "fc1", out: 3), ReLU(name: "r"), Scale(name: "s", factor: 2.0),
                     LILinear(name: "out", out: 2)], readout: Mean)"#,
        true,
    );
}

#[test]
fn population_encoder_with_a_scale_matches_finite_differences() {
    check_fd(
        r#"(version: 1, name: "pop_scale", steps: 3, input: [2], encoder: Population(out_features: 3, scale: 1.5),
            layers: [Flatten(), Linear(name: "fc1", out: 3), LI(name: "out")], readout: Mean)"#,
        true,
    );
}

/// `max_all` backward as torch's `x.max()`: the gradient is shared evenly
/// among the elements equal to the maximum (here two tied elements of
/// different samples), 0 elsewhere. (Without a scale, the population
/// encoder's centres move with the maximum, but torch's `linspace` passes
/// no gradient, so finite differences are not the reference there.)
#[test]
fn max_all_shares_its_gradient_among_the_tied_maxima() {
    use snnc_ir::{Builder, Op, Shape, Type};
    let mut b = Builder::new("max_all", 1, 1e-3, Dtype::F64);
    let xin = b.input("x", Type::new(Dtype::F64, Shape::batched(&[3])));
    let x = b.emit(Op::Input(xin)).unwrap();
    let m = b.emit(Op::MaxAll(x)).unwrap();
    b.output("y", m);
    let fwd = b.finish();
    let (bwd, _) = with_grads(&fwd, &["x"]);
    let info = snnc_ir::validate(&bwd).expect("valid");
    let mut inputs = BTreeMap::new();
    let xs = vec![0.5, 2.0, -1.0, 2.0, 1.0, 0.25];
    inputs.insert("x".to_string(), Tensor::new(vec![2, 3], snnc_runtime::ElemType::F64, xs).unwrap());
    let seed = snnc_passes::autodiff::seed_input_name("y");
    inputs.insert(seed, Tensor::new(vec![], snnc_runtime::ElemType::F64, vec![3.0]).unwrap());
    let r = snnc_interp::run(&bwd, &info, &Weights::new(), &inputs, &RunOptions::default()).expect("runs");
    assert_eq!(r.outputs["y"].data, vec![2.0]);
    let g = &r.outputs[&snnc_passes::autodiff::grad_output_name("x")];
    assert_eq!(g.shape, vec![2, 3]);
    assert_eq!(g.data, vec![0.0, 1.5, 0.0, 1.5, 0.0, 0.0]);
}

#[test]
fn spiking_layers_with_heaviside_match_finite_differences() {
    // No gradient flows through heaviside spikes, so autodiff computes the
    // true derivative: the membrane recursion and the readout.
    check_fd(
        r#"(version: 1, name: "lif_heaviside", steps: 8, input: [6],
            layers: [Linear(name: "fc1", out: 5), LIF(name: "lif1", p: (method: heaviside)),
                     Linear(name: "fc2", out: 3), LI(name: "out")], readout: LastStep)"#,
        true,
    );
}

#[test]
fn convolutions_and_pooling_match_finite_differences() {
    check_fd(
        r#"(version: 1, name: "conv_smooth", steps: 3, input: [2, 7, 7],
            layers: [Conv2d(name: "c1", out_channels: 3, kernel_size: 3, stride: 2, padding: 1, bias: true),
                     MaxPool2d(name: "p1", kernel_size: 2, stride: 1), Flatten(name: "f"),
                     Linear(name: "fc", out: 2), LI(name: "out")], readout: SpikeCount)"#,
        true,
    );
}

#[test]
fn convolution_options_and_padded_pools_match_finite_differences() {
    // Dilation, channel groups, a rectangular kernel and per-axis stride and
    // padding; then max, average and sum pooling with padding. (An `LPPool2d`
    // of smooth values is the sum pool's value with its gradient where no
    // window sum is 0.)
    check_fd(
        r#"(version: 1, name: "conv_options", steps: 2, input: [2, 9, 8],
            layers: [Conv2d(name: "c1", out_channels: 4, kernel_size: (3, 2), stride: (1, 2), padding: (2, 1),
                            dilation: (2, 1), groups: 2),
                     MaxPool2d(name: "p1", kernel_size: 3, stride: 2, padding: 1),
                     AvgPool2d(name: "p2", kernel_size: (2, 3), stride: 1, padding: (1, 1)),
                     SumPool2d(name: "p3", kernel_size: 2, padding: 1),
                     LPPool2d(name: "p4", norm_type: 1, kernel_size: (1, 2), stride: 1),
                     Flatten(name: "f"), Linear(name: "fc", out: 2), LI(name: "out")], readout: SpikeCount)"#,
        true,
    );
}

/// torch's `LPPool2d(1, k)` backward: `(sign(a) relu(|a|)) kh kw` with
/// `a = avg_pool2d(h)` has derivative 0 wherever a window's sum is 0, and
/// `kh kw · 1/(kh kw) = 1` for every element of any other window.
#[test]
fn lp_pool_passes_no_gradient_through_a_window_whose_sum_is_zero() {
    let net = snnc_frontend::parse_network(
        r#"(version: 1, name: "lp", steps: 1, input: [1, 2, 4],
            layers: [LPPool2d(name: "p", kernel_size: 2)], readout: Sequence)"#,
        "lp.ron",
    )
    .unwrap();
    let fwd = prepared(&net, Dtype::F64);
    let (bwd, _) = with_grads(&fwd, &["x"]);
    // Window 0 sums to 0 (1 - 1 + 2 - 2), window 1 to 4.
    let x = vec![1.0, -1.0, 1.0, 1.0, 2.0, -2.0, 1.0, 1.0];
    let mut inputs = BTreeMap::new();
    inputs.insert("x".to_string(), Tensor::new(vec![1, 1, 1, 2, 4], snnc_runtime::ElemType::F64, x).unwrap());
    let out = &fwd.outputs[0].name;
    inputs.insert(
        snnc_passes::autodiff::seed_input_name(out),
        Tensor::new(vec![1, 1, 1, 1, 2], snnc_runtime::ElemType::F64, vec![3.0, 5.0]).unwrap(),
    );
    let info = snnc_ir::validate(&bwd).expect("valid");
    let r = snnc_interp::run(&bwd, &info, &Weights::new(), &inputs, &RunOptions::default()).unwrap();
    assert_eq!(r.outputs[out].data, vec![0.0, 4.0]);
    let gx = &r.outputs[&snnc_passes::autodiff::grad_output_name("x")];
    assert_eq!(gx.data, vec![0.0, 0.0, 5.0, 5.0, 0.0, 0.0, 5.0, 5.0]);
}
