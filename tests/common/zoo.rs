//! The generator's neuron-language layers: Norse's zoo (`IAF`,
//! `Izhikevich` of every preset, `LIFEx`, `LIFRefrac`, `LIFAdExRefrac`,
//! `CobaLIF`, `LIBox`, `TsodyksMarkram`, with random, per-neuron and trainable parameters)
//! and `Neuron` layers written as equations that use every function of the
//! language, `detach`, `after` and comparisons, feed-forward or recurrent.

use proptest::prelude::*;
use snnc_frontend::neuron::NeuronModel;
use snnc_frontend::neuron::zoo::{IzhikevichParams, IzhikevichPreset, TsodyksMarkramParams};
use snnc_frontend::{
    CobaLifParams, IafParams, Layer, LiBoxParams, LifAdExRefracParams, LifExParams, LifRefracParams, Merge, Method,
};

use super::{arb_alpha, arb_method, arb_reset_threshold, arb_variation, elements, spread, vary};

/// A zoo or neuron-language layer drawn without its shape.
#[derive(Clone, Debug)]
pub enum ZooSpec {
    Iaf(IafParams),
    Izhikevich(IzhikevichPreset, Method),
    LifEx(LifExParams),
    LifRefrac(LifRefracParams),
    LifAdExRefrac(LifAdExRefracParams),
    CobaLif(CobaLifParams),
    LiBox(LiBoxParams),
    /// Tsodyks–Markram short-term plasticity (no spike: a float output).
    TsodyksMarkram(TsodyksMarkramParams),
    /// A model written as equations, recurrent with `Some(hidden)`.
    Custom(NeuronModel, Option<u32>),
    /// `IAF`, `Izhikevich`, `LIFEx`, `LIFRefrac` or `CobaLIF` made recurrent with
    /// `hidden` neurons.
    Recurrent(Box<ZooSpec>, u32),
}

#[allow(non_snake_case)]
pub fn arb_zoo() -> BoxedStrategy<ZooSpec> {
    let iaf = (arb_reset_threshold(), arb_method(), arb_alpha(), arb_variation()).prop_map(
        |((v_reset, v_th), method, alpha, var)| {
            ZooSpec::Iaf(vary((
                IafParams { v_th: v_th.into(), v_reset: v_reset.into(), method, alpha, trainable: Vec::new() },
                var,
            )))
        },
    );
    let izh = (prop::sample::select(IzhikevichPreset::ALL.to_vec()), arb_method())
        .prop_map(|(p, m)| ZooSpec::Izhikevich(p, m));
    let lif_ex = (
        (0.1f64..1.0, 50.0f64..400.0, 50.0f64..200.0, -0.5f64..0.5),
        arb_reset_threshold(),
        arb_method(),
        arb_variation(),
    )
        .prop_map(|((delta_T, tau_syn_inv, tau_mem_inv, v_leak), (v_reset, v_th), method, var)| {
            let p = LifExParams {
                delta_T: delta_T.into(),
                tau_syn_inv: tau_syn_inv.into(),
                tau_mem_inv: tau_mem_inv.into(),
                v_leak: v_leak.into(),
                v_th: v_th.into(),
                v_reset: v_reset.into(),
                method,
                alpha: 100.0,
                trainable: Vec::new(),
            };
            ZooSpec::LifEx(vary((p, var)))
        });
    let refrac = ((50.0f64..400.0, 50.0f64..200.0, 0.0f64..6.0), arb_reset_threshold(), arb_method(), arb_variation())
        .prop_map(|((tau_syn_inv, tau_mem_inv, rho_reset), (v_reset, v_th), method, var)| {
            let p = LifRefracParams {
                tau_syn_inv: tau_syn_inv.into(),
                tau_mem_inv: tau_mem_inv.into(),
                v_reset: v_reset.into(),
                v_th: v_th.into(),
                rho_reset: rho_reset.round().into(),
                method,
                ..LifRefracParams::default()
            };
            ZooSpec::LifRefrac(vary((p, var)))
        });
    let adex = ((0.0f64..8.0, 0.0f64..0.1, 0.1f64..1.0, 0.5f64..10.0), arb_method(), arb_variation()).prop_map(
        |((adaptation_current, adaptation_spike, delta_T, tau_ada_inv), method, var)| {
            let p = LifAdExRefracParams {
                adaptation_current: adaptation_current.into(),
                adaptation_spike: adaptation_spike.into(),
                delta_T: delta_T.into(),
                tau_ada_inv: tau_ada_inv.into(),
                v_th: 0.5.into(),
                rho_reset: 2.0.into(),
                method,
                ..LifAdExRefracParams::default()
            };
            ZooSpec::LifAdExRefrac(vary((p, var)))
        },
    );
    let coba =
        ((0.1f64..0.5, 1.0f64..10.0), arb_method(), arb_variation()).prop_map(|((tau, c_m_inv), method, var)| {
            let p = CobaLifParams {
                tau_syn_exc_inv: tau.into(),
                tau_syn_inh_inv: (tau * 0.7).into(),
                c_m_inv: c_m_inv.into(),
                method,
                ..CobaLifParams::default()
            };
            ZooSpec::CobaLif(vary((p, var)))
        });
    let li_box = ((50.0f64..200.0, -0.5f64..0.5), arb_variation()).prop_map(|((tau_mem_inv, v_leak), var)| {
        ZooSpec::LiBox(vary((
            LiBoxParams { tau_mem_inv: tau_mem_inv.into(), v_leak: v_leak.into(), trainable: Vec::new() },
            var,
        )))
    });
    let stp = (0.05f64..0.9, 1.0f64..60.0, 0.5f64..30.0).prop_map(|(U, tau_f_inv, tau_d_inv)| {
        ZooSpec::TsodyksMarkram(TsodyksMarkramParams { U, tau_f_inv, tau_d_inv })
    });
    let custom =
        (0..2usize, 20.0f64..200.0, 0.2f64..1.0, arb_method(), arb_alpha(), prop::option::of(1..=6u32), any::<bool>())
            .prop_map(|(which, tau, v_th, method, alpha, hidden, trainable)| {
                ZooSpec::Custom(custom_model(which, tau, v_th, method, alpha, trainable), hidden)
            });
    let (iaf, izh, lif_ex, refrac, coba) = (iaf.boxed(), izh.boxed(), lif_ex.boxed(), refrac.boxed(), coba.boxed());
    let random = (arb_random_model(), prop::option::of(1..=4u32)).prop_map(|(m, hidden)| ZooSpec::Custom(m, hidden));
    let recurrent = (prop_oneof![iaf.clone(), izh.clone(), lif_ex.clone(), refrac.clone(), coba.clone()], 1..=6u32)
        .prop_map(|(spec, hidden)| ZooSpec::Recurrent(Box::new(spec), hidden));
    prop_oneof![
        1 => iaf,
        1 => izh,
        1 => lif_ex,
        1 => refrac,
        1 => adex,
        1 => coba,
        1 => li_box,
        1 => stp,
        2 => custom,
        3 => random,
        2 => recurrent
    ]
    .boxed()
}

/// An expression of the grammar over `leaves`, kept bounded: the
/// functions that could overflow see bounded arguments.
fn arb_expr(leaves: Vec<String>) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        3 => prop::sample::select(leaves),
        1 => (-2.0f64..2.0).prop_map(|c| format!("{c:.3}")),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone(), prop::sample::select(vec!["+", "-", "*"]))
                .prop_map(|(a, b, op)| format!("({a} {op} {b})")),
            (inner.clone(), inner.clone(), prop::sample::select(vec!["min", "max"]))
                .prop_map(|(a, b, f)| format!("{f}({a}, {b})")),
            (inner.clone(), prop::sample::select(vec!["tanh", "relu", "abs", "-", "detach"]))
                .prop_map(|(a, f)| format!("{f}({a})")),
            inner.clone().prop_map(|a| format!("exp(min({a}, 1))")),
            inner.clone().prop_map(|a| format!("log(1 + relu({a}))")),
            inner.clone().prop_map(|a| format!("sqrt(relu({a}) + 1)")),
            inner.clone().prop_map(|a| format!("({a} / (1 + abs({a})))")),
            inner.clone().prop_map(|a| format!("clamp({a}, -2, 2)")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a} > {b})")),
        ]
    })
    .boxed()
}

/// A model drawn from the grammar: 1 to 3 states, each relaxing towards a
/// random bounded expression of the input, the states and the parameters;
/// a spike of the first state with a random surrogate, sometimes detached
/// in the reset.
fn arb_random_model() -> BoxedStrategy<NeuronModel> {
    (1..=3usize, 20.0f64..200.0, 0.2f64..1.0, arb_method(), arb_alpha(), any::<bool>())
        .prop_flat_map(|(n, tau, th, method, alpha, detach)| {
            let mut leaves: Vec<String> = (0..n).map(|k| format!("s{k}")).collect();
            leaves.extend(["x", "x_rec", "th", "c"].map(String::from));
            let exprs = prop::collection::vec(arb_expr(leaves), n);
            (Just((n, tau, th, method, alpha, detach)), exprs)
        })
        .prop_map(|((n, tau, th, method, alpha, detach), exprs)| {
            let mut m =
                NeuronModel::new().param("tau", tau).param("th", th).constant("c", 0.5).surrogate(method, alpha);
            for k in 0..n {
                m = m.state(format!("s{k}"), 0.0);
            }
            let update: Vec<String> = exprs
                .iter()
                .enumerate()
                .map(|(k, e)| format!("s{k} = s{k} + (dt * tau) * (clamp({e}, -5, 5) - s{k})"))
                .collect();
            m = m.update(update).spike("s0 - th").reset(["s0 = 0"]);
            if detach { m.detach(["z"]) } else { m }
        })
        .boxed()
}

/// Two models that between them use every function, a comparison, a
/// constant, `detach` (of the reset's spike and in an expression), `after`
/// and a trainable parameter.
fn custom_model(which: usize, tau: f64, v_th: f64, method: Method, alpha: f64, trainable: bool) -> NeuronModel {
    let m = NeuronModel::new().param("tau", tau).param("v_th", v_th).surrogate(method, alpha);
    let m = if trainable { m.trainable(["tau", "v_th"]) } else { m };
    match which {
        0 => m
            .constant("g", 0.5)
            .state("v", 0.0)
            .state("w", 0.0)
            .update([
                "k = dt * tau",
                "v = v + k * ((tanh(x + x_rec) - v) + g * (w * w))",
                "w = w + (dt * 20) * (v - w)",
            ])
            .spike("v - v_th")
            .reset(["v = 0", "w = w + 0.1"])
            .after(["w = clamp(w, -1, 1)"]),
        _ => m
            .state("v", "v_th")
            .state("a", 0.0)
            .update([
                "e = exp(min(v, 1))",
                "v = v + (dt * tau) * ((((x + x_rec) - v) + 0.1 * e) - a)",
                "a = a + (dt * 5) * (abs(v) - a)",
            ])
            .spike("v - v_th")
            .reset(["v = v_th - 1"])
            .detach(["z"])
            .after([
                "a = a + 0.05 * detach(z) + 0.01 * sqrt(relu(v) + 1) * heaviside(v - 0.2) + 0.001 * log(1 + relu(v)) \
                 + 0.001 * max(v, 0) + 0.01 * (v > 0.3) + 0.01 * (v != a)",
                "z = z * (1 - spike(a - 2))",
            ]),
    }
}

/// The layer of `spec` on `shape`: (layer, its output shape, whether the
/// output is spikes).
pub fn fit(spec: &ZooSpec, shape: &[u32]) -> Option<(Layer, Vec<u32>, Option<bool>)> {
    if let ZooSpec::Recurrent(inner, n) = spec {
        // Recurrent layers read a vector.
        if shape.len() != 1 {
            return None;
        }
        let (mut layer, _, spiking) = fit(inner, &[*n])?;
        if let Layer::IAF { hidden, autapses, .. }
        | Layer::Izhikevich { hidden, autapses, .. }
        | Layer::LIFEx { hidden, autapses, .. }
        | Layer::LIFRefrac { hidden, autapses, .. } = &mut layer
        {
            *hidden = Some(*n);
            *autapses = *n % 2 == 0;
        }
        if let Layer::CobaLIF { hidden, use_input, .. } = &mut layer {
            *hidden = Some(*n);
            *use_input = *n % 2 == 1;
        }
        return Some((layer, vec![*n], spiking));
    }
    let n = elements(shape);
    let (hidden, autapses) = (None, false);
    let (inputs, recurrent_inputs, merge) = (None, Vec::new(), Merge::Add);
    let same = |layer: Layer, spiking: bool| Some((layer, shape.to_vec(), Some(spiking)));
    match spec {
        ZooSpec::Iaf(p) => {
            same(Layer::IAF { name: None, p: spread(p, n), hidden, autapses, inputs, recurrent_inputs, merge }, true)
        }
        ZooSpec::Izhikevich(preset, method) => {
            let p = IzhikevichParams { method: Some(*method), ..IzhikevichParams::default() };
            let preset = Some(*preset);
            same(Layer::Izhikevich { name: None, preset, p, hidden, autapses, inputs, recurrent_inputs, merge }, true)
        }
        ZooSpec::LifEx(p) => {
            same(Layer::LIFEx { name: None, p: spread(p, n), hidden, autapses, inputs, recurrent_inputs, merge }, true)
        }
        ZooSpec::LifRefrac(p) => {
            let p = spread(p, n);
            same(Layer::LIFRefrac { name: None, p, hidden, autapses, inputs, recurrent_inputs, merge }, false)
        }
        ZooSpec::LifAdExRefrac(p) => {
            same(Layer::LIFAdExRefrac { name: None, p: spread(p, n), inputs, recurrent_inputs, merge }, false)
        }
        ZooSpec::CobaLif(p) => {
            let p = spread(p, n);
            same(Layer::CobaLIF { name: None, p, hidden, use_input: false, inputs, recurrent_inputs, merge }, true)
        }
        ZooSpec::LiBox(p) => same(Layer::LIBox { name: None, p: spread(p, n), inputs, recurrent_inputs, merge }, false),
        ZooSpec::TsodyksMarkram(p) => {
            same(Layer::TsodyksMarkram { name: None, p: p.clone(), inputs, recurrent_inputs, merge }, false)
        }
        ZooSpec::Custom(model, None) => same(
            Layer::Neuron {
                name: None,
                model: model.clone(),
                hidden: None,
                autapses: false,
                inputs,
                recurrent_inputs,
                merge,
            },
            binary_spikes(model),
        ),
        ZooSpec::Custom(model, Some(hidden)) => {
            // Recurrent layers read a vector.
            if shape.len() != 1 {
                return None;
            }
            let layer = Layer::Neuron {
                name: None,
                model: model.clone(),
                hidden: Some(*hidden),
                autapses: *hidden % 2 == 0,
                inputs,
                recurrent_inputs,
                merge,
            };
            Some((layer, vec![*hidden], Some(binary_spikes(model))))
        }
        ZooSpec::Recurrent(..) => unreachable!("handled above"),
    }
}

/// Whether the model's output is its spike itself (not rescaled in `after`).
fn binary_spikes(model: &NeuronModel) -> bool {
    !model.after.iter().any(|a| a.trim_start().starts_with("z "))
}
