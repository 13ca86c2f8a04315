//! Per-neuron and trainable neuron parameters on the interpreter: the
//! numbers of Norse's equations element by element, and the gradients of
//! trainable parameters (0-d and per neuron) against finite differences
//! and against the surrogate formula.

use std::collections::BTreeMap;

use snnc_frontend::{LowerOptions, Network};
use snnc_interp::RunOptions;
use snnc_ir::{Dtype, Module};
use snnc_passes::AutodiffOptions;
use snnc_runtime::{ElemType, Tensor, Weights};

const T: usize = 6;
const B: usize = 2;
const N: usize = 3;
const DT: f64 = 0.001;

fn lower64(text: &str) -> Module {
    let net: Network = snnc_frontend::parse_network(text, "net.ron").unwrap_or_else(|e| panic!("{e}"));
    snnc_frontend::lower(&net, "net.ron", &LowerOptions { float: Dtype::F64, ..LowerOptions::default() })
        .unwrap_or_else(|e| panic!("{e}"))
}

fn net(steps: usize, layer: &str) -> String {
    format!("(version: 1, name: \"n\", steps: {steps}, input: [{N}], layers: [{layer}])")
}

/// A per-step input `[steps, B, N]`: currents that make some neurons fire.
fn input(steps: usize) -> Vec<f64> {
    (0..steps * B * N).map(|k| 0.5 + ((k * 7919) % 23) as f64 / 4.0).collect()
}

fn run(module: &Module, weights: &Weights, extra: &[(&str, Vec<usize>, Vec<f64>)]) -> snnc_interp::RunResult {
    let info = snnc_ir::validate(module).unwrap_or_else(|e| panic!("{e}"));
    let mut inputs = BTreeMap::new();
    for (name, shape, data) in extra {
        inputs.insert(name.to_string(), Tensor::new(shape.clone(), ElemType::F64, data.clone()).unwrap());
    }
    let opts = RunOptions { record: true, ..RunOptions::default() };
    snnc_interp::run(module, &info, weights, &inputs, &opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn per_neuron_lif_matches_norse_equations_bit_for_bit() {
    let tau_syn = [200.0, 150.0, 100.0];
    let tau_mem = [100.0, 120.0, 80.0];
    let v_leak = [0.0, 0.1, -0.1];
    let v_th = [0.5, 0.6, 0.3];
    let v_reset = [0.0, -0.1, 0.05];
    let m = lower64(&net(
        T,
        "LIF(name: \"lif1\", p: (tau_syn_inv: [200, 150, 100], tau_mem_inv: [100, 120, 80], v_leak: [0, 0.1, -0.1], \
         v_th: [0.5, 0.6, 0.3], v_reset: [0, -0.1, 0.05], method: heaviside))",
    ));
    let x = input(T);
    let w = snnc_runtime::init_weights(&m, 0);
    let r = run(&m, &w, &[("x", vec![T, B, N], x.clone())]);
    let (zs, vs, is) = (&r.outputs["output"], &r.traces["lif1.v"], &r.traces["lif1.i"]);
    let mut spikes = 0;
    for b in 0..B {
        for j in 0..N {
            // Norse's default state: v = v_leak, i = 0.
            let (mut v, mut i) = (v_leak[j], 0.0f64);
            for t in 0..T {
                let i_jump = i + x[(t * B + b) * N + j];
                let v_dec = v + (DT * tau_mem[j]) * ((v_leak[j] - v) + i_jump);
                let i_new = i_jump + ((-DT) * tau_syn[j]) * i_jump;
                let z = if v_dec - v_th[j] > 0.0 { 1.0 } else { 0.0 };
                v = (1.0 - z) * v_dec + z * v_reset[j];
                i = i_new;
                let k = (t * B + b) * N + j;
                spikes += z as usize;
                assert_eq!(zs.data[k], z, "z at t={t} b={b} j={j}");
                assert_eq!(vs.data[k].to_bits(), v.to_bits(), "v at t={t} b={b} j={j}");
                assert_eq!(is.data[k].to_bits(), i.to_bits(), "i at t={t} b={b} j={j}");
            }
        }
    }
    assert!(spikes > 3 && spikes < T * B * N, "{spikes} spikes: the case should exercise both branches");
}

/// `sum(seed * output)` and the gradients of the differentiated module.
fn loss_and_grads(
    fwd: &Module,
    weights: &Weights,
    x: &[f64],
    steps: usize,
    seed: &[f64],
) -> (f64, BTreeMap<String, Tensor>) {
    let mut m = fwd.clone();
    let report = snnc_passes::differentiate(&mut m, &AutodiffOptions { seeds: vec!["output".into()], inputs: vec![] })
        .unwrap_or_else(|e| panic!("{e}"));
    let seed_input = report.seeds[0].1.clone();
    let r = run(
        &m,
        weights,
        &[("x", vec![steps, B, N], x.to_vec()), (seed_input.as_str(), vec![steps, B, N], seed.to_vec())],
    );
    let loss = r.outputs["output"].data.iter().zip(seed).map(|(o, s)| o * s).sum();
    let grads = report.gradients.iter().map(|(p, out)| (p.clone(), r.outputs[out].clone())).collect();
    (loss, grads)
}

fn forward_loss(fwd: &Module, weights: &Weights, x: &[f64], steps: usize, seed: &[f64]) -> f64 {
    let r = run(fwd, weights, &[("x", vec![steps, B, N], x.to_vec())]);
    r.outputs["output"].data.iter().zip(seed).map(|(o, s)| o * s).sum()
}

fn seed(steps: usize) -> Vec<f64> {
    (0..steps * B * N).map(|k| ((k * 37) % 11) as f64 / 5.0 - 1.0).collect()
}

#[test]
fn gradients_of_trainable_tau_and_leak_match_finite_differences() {
    // LI: smooth (no threshold), so central differences are exact to
    // rounding; LIF and LSNN share its `integrate` and `decay`. tau_mem_inv is one learned value (0-d), tau_syn_inv and
    // v_leak per neuron.
    let m = lower64(&net(
        T,
        "LI(name: \"li\", p: (tau_mem_inv: 100, tau_syn_inv: [200, 150, 100], v_leak: [0, 0.1, -0.1], \
         trainable: [tau_mem_inv, tau_syn_inv, v_leak]))",
    ));
    let shapes: Vec<(String, Vec<usize>)> =
        m.params.iter().map(|(_, p)| (p.name.clone(), p.shape.resolve(1))).collect();
    assert_eq!(
        shapes,
        // In the order lowering first uses them: `integrate`, then `decay`.
        [("li.tau_mem_inv".to_string(), vec![]), ("li.v_leak".into(), vec![N]), ("li.tau_syn_inv".into(), vec![N])]
    );
    let w = snnc_runtime::init_weights(&m, 0);
    let (x, s) = (input(T), seed(T));
    let (_, grads) = loss_and_grads(&m, &w, &x, T, &s);
    let mut checked = 0;
    for (name, g) in &grads {
        for k in 0..g.data.len() {
            let p0 = w[name].data[k];
            let h = 1e-5 * p0.abs().max(1.0);
            let mut wp = w.clone();
            wp.get_mut(name).unwrap().data[k] = p0 + h;
            let mut wm = w.clone();
            wm.get_mut(name).unwrap().data[k] = p0 - h;
            let fd = (forward_loss(&m, &wp, &x, T, &s) - forward_loss(&m, &wm, &x, T, &s)) / (2.0 * h);
            let err = (g.data[k] - fd).abs();
            assert!(err <= 1e-6 * fd.abs().max(1e-3), "{name}[{k}]: autodiff {} vs finite differences {fd}", g.data[k]);
            assert!(g.data[k] != 0.0, "{name}[{k}] has no gradient");
            checked += 1;
        }
    }
    assert_eq!(checked, 1 + N + N);
}

#[test]
fn threshold_gradient_is_minus_the_surrogate_at_the_margin() {
    // One step: z = H(v_dec - v_th) with v_dec = v_leak + (dt*tau_mem_inv)*((v_leak - v_leak) + x),
    // so d sum(seed * z) / d v_th = -sum seed * g(v_dec - v_th), with
    // SuperSpike's g(u) = 1 / (|u| + 1)^2.
    for (layer, per_neuron) in [
        ("LIF(name: \"lif1\", p: (v_th: 0.8, v_leak: [0, 0.1, -0.1], trainable: [v_th]))", false),
        ("LIF(name: \"lif1\", p: (v_th: [0.8, 0.9, 1.5], v_leak: [0, 0.1, -0.1], trainable: [v_th]))", true),
    ] {
        let m = lower64(&net(1, layer));
        let w = snnc_runtime::init_weights(&m, 0);
        let (x, s) = (input(1), seed(1));
        let (_, grads) = loss_and_grads(&m, &w, &x, 1, &s);
        let g = &grads["lif1.v_th"];
        let v_leak = [0.0, 0.1, -0.1];
        let v_th = |j: usize| w["lif1.v_th"].data[if per_neuron { j } else { 0 }];
        let mut want = vec![0.0; if per_neuron { N } else { 1 }];
        for b in 0..B {
            for j in 0..N {
                let v = v_leak[j];
                let v_dec = v + (DT * 100.0) * ((v_leak[j] - v) + x[b * N + j]);
                let u: f64 = v_dec - v_th(j);
                let gu = 1.0 / ((u.abs() + 1.0) * (u.abs() + 1.0));
                want[if per_neuron { j } else { 0 }] -= s[b * N + j] * gu;
            }
        }
        for (k, (&got, &want)) in g.data.iter().zip(&want).enumerate() {
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "v_th[{k}]: {got} vs {want}");
        }
    }
}

/// The gradients of trainable parameters of two models written in the
/// neuron language (smooth, so that central differences are exact to
/// rounding): every function of the language on the way, per-neuron and
/// 0-d parameters, several states.
#[test]
fn gradients_of_neuron_language_models_match_finite_differences() {
    let models = [
        // A leaky integrator with a bounded, state-dependent drive.
        r#"Neuron(name: "m", model: (
            params: {"tau": 80, "g": [0.5, 0.3, 0.2], "w0": 0.1},
            constants: {"c": 0.25},
            state: {"v": 0.1, "w": "w0"},
            update: [
                "d = tanh(x) - v",
                "v = v + (dt * tau) * (d + g * exp(-abs(v)) * sqrt(relu(w) + 1))",
                "w = w + (dt * 50) * ((clamp(v, -10, 10) - w) * c + w0)",
            ],
            output: "v",
            trainable: ["tau", "g", "w0"],
        ))"#,
        // Two coupled states with division, log, min and max.
        r#"Neuron(name: "m", model: (
            params: {"tau": [100, 120, 90], "tau_a": 20, "k": 0.7},
            state: {"v": 0, "a": 0.5},
            update: [
                "a_new = a + (dt * tau_a) * (v * v - a)",
                "v = v + (dt * tau) * (x / (1 + a) - log(1 + v * v) * k + min(v, 5) * 0.1 - max(a, -5) * 0.05)",
                "a = a_new",
            ],
            output: "v",
            trainable: ["tau", "tau_a", "k"],
        ))"#,
    ];
    for layer in models {
        let m = lower64(&net(T, layer));
        let w = snnc_runtime::init_weights(&m, 0);
        let (x, s) = (input(T), seed(T));
        let (_, grads) = loss_and_grads(&m, &w, &x, T, &s);
        assert_eq!(grads.len(), 3, "{layer}");
        for (name, g) in &grads {
            for k in 0..g.data.len() {
                let p0 = w[name].data[k];
                let h = 1e-5 * p0.abs().max(1.0);
                let mut wp = w.clone();
                wp.get_mut(name).unwrap().data[k] = p0 + h;
                let mut wm = w.clone();
                wm.get_mut(name).unwrap().data[k] = p0 - h;
                let fd = (forward_loss(&m, &wp, &x, T, &s) - forward_loss(&m, &wm, &x, T, &s)) / (2.0 * h);
                let err = (g.data[k] - fd).abs();
                assert!(
                    err <= 1e-6 * fd.abs().max(1e-3),
                    "{name}[{k}]: autodiff {} vs finite differences {fd}",
                    g.data[k]
                );
                assert!(g.data[k] != 0.0, "{name}[{k}] has no gradient");
            }
        }
    }
}
