//! NIR's neuron nodes as snnc layers, per producer convention
//! (`docs/nir.md`): a built-in layer where its discretisation is exactly
//! the convention's, else the equations in the neuron language.

use super::convert::{Ctx, Producer};
use super::{Array, NirError, NirNode, NodeKind};
use crate::neuron::{InitValue, NeuronModel, OrderedMap};
use crate::schema::{IafParams, Layer, LiBoxParams, LiParams, LifBoxParams, LifParams, Merge, ParamValue, ResetMethod};

/// A parameter value: a number when every element is the same (NIR's 0-d
/// parameters broadcast), else one value per neuron.
pub(crate) fn pv(a: &Array) -> ParamValue {
    match a.data.first() {
        Some(&first) if a.all(first) => ParamValue::Scalar(first),
        _ => ParamValue::PerNeuron(a.data.clone()),
    }
}

fn map_pv(a: &Array, f: impl Fn(f64) -> f64) -> ParamValue {
    let data: Vec<f64> = a.data.iter().map(|&x| f(x)).collect();
    pv(&Array::new(vec![data.len()], data))
}

/// `f(a_i, b_i)` elementwise, a 0-d operand broadcast.
fn zip_pv(a: &Array, b: &Array, f: impl Fn(f64, f64) -> f64) -> ParamValue {
    let n = a.len().max(b.len());
    let at = |x: &Array, i: usize| if x.len() == 1 { x.data[0] } else { x.data[i] };
    let data: Vec<f64> = (0..n).map(|i| f(at(a, i), at(b, i))).collect();
    pv(&Array::new(vec![n], data))
}

fn is_one(a: &Array) -> bool {
    a.all(1.0)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A feed-forward `Neuron` layer of `model`, named `name`.
pub(super) fn neuron(name: &str, model: NeuronModel) -> Layer {
    Layer::Neuron {
        name: Some(name.to_string()),
        model,
        hidden: None,
        autapses: false,
        inputs: None,
        recurrent_inputs: Vec::new(),
        merge: Merge::Add,
    }
}

pub(crate) fn model(
    params: Vec<(&str, ParamValue)>,
    state: &[(&str, InitValue)],
    update: &[&str],
    spike: Option<&str>,
    reset: &[&str],
    output: Option<&str>,
) -> NeuronModel {
    NeuronModel {
        params: OrderedMap(params.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
        constants: OrderedMap::default(),
        state: OrderedMap(state.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()),
        update: strings(update),
        spike: spike.map(str::to_string),
        method: Default::default(),
        alpha: 100.0,
        reset: strings(reset),
        after: Vec::new(),
        detach: Vec::new(),
        output: output.map(str::to_string),
        trainable: Vec::new(),
    }
}

/// Checks that a time constant is positive and finite.
fn taus(node: &NirNode, path: &str, field: &str) -> Result<Array, NirError> {
    let a = node.params[field].clone();
    if let Some(bad) = a.data.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
        return Err(NirError::new(
            path,
            Some(field),
            format!("a time constant must be positive and finite, found {bad}"),
        ));
    }
    Ok(a)
}

/// Says so when NIR's equations, read literally with forward Euler at
/// the step `dt`, move a state by more than twice the way to its target
/// per step (`dt / tau > 2`): such a state grows to inf and NaN in a few
/// steps. It is what a producer's file read with the wrong step looks
/// like (snnTorch writes `tau = dt / (1 - beta)` at `dt = 1e-4`).
fn diverging_taus(cx: &mut Ctx<'_>, path: &str, node: &NirNode) {
    let dt = cx.opts.dt;
    for field in ["tau", "tau_mem", "tau_syn"] {
        let Some(a) = node.params.get(field) else { continue };
        let min = a.data.iter().copied().fold(f64::INFINITY, f64::min);
        if min > 0.0 && dt / min > 2.0 {
            cx.assume(format!(
                "`{path}`: dt / {field} = {:.3e} is above 2: read literally (forward Euler at dt = {dt:e} s) this state \
                 diverges to inf and NaN within a few steps. The file's time constants are far below the step: \
                 snnTorch writes at dt = 1e-4 (--nir-from snntorch), Norse 1.1.0 writes tau = dt / tau_inv \
                 (--nir-from norse); or pass the producer's step with --nir-dt",
                dt / min
            ));
            return;
        }
    }
}

/// `1 / tau` as Norse wrote it: `tau = s / tau_inv`, `s` the step (Norse
/// 1.1.0) when every tau is below the step, else 1 (older Norse).
fn norse_inv(cx: &mut Ctx<'_>, path: &str, field: &str, tau: &Array) -> ParamValue {
    let dt = cx.opts.dt;
    if !cx.snnc && tau.data.iter().all(|&t| t < dt) {
        let t = tau.data[0];
        cx.assume(format!(
            "`{path}`: {field} = {t:e} s is {} of a step: this looks like Norse 1.1.0's export (tau = dt / tau_inv), \
             read as tau_inv = dt / tau = {:e} 1/s; pass --nir-from spec to read it literally",
            fraction(t / dt),
            dt / t
        ));
        map_pv(tau, |t| dt / t)
    } else {
        map_pv(tau, |t| 1.0 / t)
    }
}

fn fraction(x: f64) -> String {
    if x > 0.0 && x < 1.0 && (1.0 / x - (1.0 / x).round()).abs() < 1e-6 {
        format!("1/{}", (1.0 / x).round())
    } else {
        format!("{x}")
    }
}

/// The layer for a neuron node `node` (named `name`, at `path` in the
/// file).
/// Checks that every parameter holds one value (broadcast) or one per
/// neuron, the same number for all.
fn check_lengths(node: &NirNode, path: &str) -> Result<(), NirError> {
    let n = node.params.values().map(Array::len).max().unwrap_or(1);
    for (field, a) in &node.params {
        if a.is_empty() {
            return Err(NirError::new(path, Some(field), "empty: a neuron parameter has one value or one per neuron"));
        }
        if a.len() != 1 && a.len() != n {
            return Err(NirError::new(
                path,
                Some(field),
                format!(
                    "{} values (shape {:?}) where another parameter has {n}: a neuron parameter has one value or one per neuron",
                    a.len(),
                    a.shape
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn neuron_layer(cx: &mut Ctx<'_>, name: &str, path: &str, node: &NirNode) -> Result<Layer, NirError> {
    check_lengths(node, path)?;
    let p = |f: &str| node.params[f].clone();
    let kind = node.kind;
    let producer = cx.opts.producer;
    if producer == Producer::Spec && !cx.snnc {
        diverging_taus(cx, path, node);
    }
    match (kind, producer) {
        (NodeKind::LIF, Producer::Spec | Producer::Norse) => {
            let tau = taus(node, path, "tau")?;
            let tau_mem_inv =
                if producer == Producer::Norse { norse_inv(cx, path, "tau", &tau) } else { map_pv(&tau, |t| 1.0 / t) };
            let (r, v_leak, v_th, v_reset) = (p("r"), p("v_leak"), p("v_threshold"), p("v_reset"));
            if is_one(&r) {
                return Ok(Layer::LIFBox {
                    name: Some(name.into()),
                    p: LifBoxParams {
                        tau_mem_inv,
                        v_leak: pv(&v_leak),
                        v_th: pv(&v_th),
                        v_reset: pv(&v_reset),
                        reset_method: ResetMethod::Value,
                        ..Default::default()
                    },
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Merge::Add,
                });
            }
            if producer == Producer::Norse {
                cx.assume(format!("`{path}`: r is not 1; Norse ignores r, snnc multiplies the input by it"));
            }
            Ok(neuron(
                name,
                model(
                    vec![
                        ("tau_mem_inv", tau_mem_inv),
                        ("r", pv(&r)),
                        ("v_leak", pv(&v_leak)),
                        ("v_th", pv(&v_th)),
                        ("v_reset", pv(&v_reset)),
                    ],
                    &[("v", "v_leak".into())],
                    &["v = v + (dt * tau_mem_inv) * (((r * x) + v_leak) - v)"],
                    Some("v - v_th"),
                    &["v = v_reset"],
                    None,
                ),
            ))
        }
        (NodeKind::LI, Producer::Spec | Producer::Norse) => {
            let tau = taus(node, path, "tau")?;
            let tau_mem_inv =
                if producer == Producer::Norse { norse_inv(cx, path, "tau", &tau) } else { map_pv(&tau, |t| 1.0 / t) };
            let (r, v_leak) = (p("r"), p("v_leak"));
            if is_one(&r) {
                return Ok(Layer::LIBox {
                    name: Some(name.into()),
                    p: LiBoxParams { tau_mem_inv, v_leak: pv(&v_leak), trainable: Vec::new() },
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Merge::Add,
                });
            }
            Ok(neuron(
                name,
                model(
                    vec![("tau_mem_inv", tau_mem_inv), ("r", pv(&r)), ("v_leak", pv(&v_leak))],
                    &[("v", "v_leak".into())],
                    &["v = v + (dt * tau_mem_inv) * ((v_leak - v) + r * x)"],
                    None,
                    &[],
                    Some("v"),
                ),
            ))
        }
        (NodeKind::CubaLIF | NodeKind::CubaLI, Producer::Spec | Producer::Norse) => {
            let spikes = kind == NodeKind::CubaLIF;
            let (ts, tm) = (taus(node, path, "tau_syn")?, taus(node, path, "tau_mem")?);
            let (r, v_leak, w_in) = (p("r"), p("v_leak"), p("w_in"));
            if producer == Producer::Norse {
                let tau_syn_inv = norse_inv(cx, path, "tau_syn", &ts);
                let tau_mem_inv = norse_inv(cx, path, "tau_mem", &tm);
                if is_one(&r) && is_one(&w_in) {
                    return Ok(if spikes {
                        Layer::LIF {
                            name: Some(name.into()),
                            p: LifParams {
                                tau_syn_inv,
                                tau_mem_inv,
                                v_leak: pv(&v_leak),
                                v_th: pv(&p("v_threshold")),
                                v_reset: pv(&p("v_reset")),
                                ..Default::default()
                            },
                            inputs: None,
                            recurrent_inputs: Vec::new(),
                            merge: Merge::Add,
                        }
                    } else {
                        Layer::LI {
                            name: Some(name.into()),
                            p: LiParams { tau_syn_inv, tau_mem_inv, v_leak: pv(&v_leak), ..Default::default() },
                            inputs: None,
                            recurrent_inputs: Vec::new(),
                            merge: Merge::Add,
                        }
                    });
                }
                cx.assume(format!("`{path}`: r or w_in is not 1; snnc scales Norse's LIF current by them"));
                let mut params = vec![
                    ("tau_syn_inv", tau_syn_inv),
                    ("tau_mem_inv", tau_mem_inv),
                    ("r", pv(&r)),
                    ("w_in", pv(&w_in)),
                    ("v_leak", pv(&v_leak)),
                ];
                let update = [
                    "v = v + (dt * tau_mem_inv) * ((v_leak - v) + r * i)",
                    "i = (i + ((-dt) * tau_syn_inv) * i) + w_in * x",
                ];
                return Ok(cuba(name, spikes, &mut params, node, &update));
            }
            let mut params = vec![
                ("tau_syn_inv", map_pv(&ts, |t| 1.0 / t)),
                ("tau_mem_inv", map_pv(&tm, |t| 1.0 / t)),
                ("r", pv(&r)),
                ("w_in", pv(&w_in)),
                ("v_leak", pv(&v_leak)),
            ];
            let update =
                ["v = v + (dt * tau_mem_inv) * ((v_leak - v) + r * i)", "i = i + (dt * tau_syn_inv) * (w_in * x - i)"];
            Ok(cuba(name, spikes, &mut params, node, &update))
        }
        (NodeKind::IF | NodeKind::I, _) => {
            let spikes = kind == NodeKind::IF;
            let r = p("r");
            let builtin = spikes && producer == Producer::Norse && is_one(&r);
            if builtin {
                return Ok(Layer::IAF {
                    name: Some(name.into()),
                    p: IafParams { v_th: pv(&p("v_threshold")), v_reset: pv(&p("v_reset")), ..Default::default() },
                    hidden: None,
                    autapses: false,
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Merge::Add,
                });
            }
            let update: &[&str] = match producer {
                Producer::Spec => {
                    if !cx.if_noted {
                        cx.if_noted = true;
                        cx.assume(format!(
                            "`{path}`: {} read literally as dv/dt = R I: v grows by dt·R·I = {:e}·R·I per step; \
                             Sinabs, snnTorch, Spyx and Norse's IAF add R·I per step: pass --nir-from norse for that",
                            kind.name(),
                            cx.opts.dt
                        ));
                    }
                    &["v = v + (dt * r) * x"]
                }
                Producer::Norse => &["v = v + r * x"],
                Producer::Snntorch if spikes => &["v = (v + r * x) - heaviside(v - v_th) * v_th"],
                Producer::Snntorch => &["v = v + r * x"],
            };
            Ok(if spikes {
                let reset: &[&str] = if producer == Producer::Snntorch { &[] } else { &["v = v_reset"] };
                let init: InitValue = if producer == Producer::Snntorch { 0.0.into() } else { "v_reset".into() };
                neuron(
                    name,
                    model(
                        vec![("r", pv(&r)), ("v_th", pv(&p("v_threshold"))), ("v_reset", pv(&p("v_reset")))],
                        &[("v", init)],
                        update,
                        Some("v - v_th"),
                        reset,
                        None,
                    ),
                )
            } else {
                neuron(name, model(vec![("r", pv(&r))], &[("v", 0.0.into())], update, None, &[], Some("v")))
            })
        }
        (NodeKind::LIF | NodeKind::LI, Producer::Snntorch) => {
            let spikes = kind == NodeKind::LIF;
            let dt = cx.opts.dt;
            let tau = taus(node, path, "tau")?;
            let (r, v_leak) = (p("r"), p("v_leak"));
            let beta = map_pv(&tau, |t| 1.0 - dt / t);
            let gain = zip_pv(&r, &tau, |r, t| r * dt / t);
            let mut params = vec![("beta", beta), ("g", gain)];
            let leak = !v_leak.all(0.0);
            if leak {
                params.push(("vl", zip_pv(&v_leak, &tau, |v, t| v * dt / t)));
            }
            let integrate = if leak { "(beta * v + vl) + g * x" } else { "beta * v + g * x" };
            Ok(if spikes {
                params.push(("v_th", pv(&p("v_threshold"))));
                let update = format!("v = ({integrate}) - heaviside(v - v_th) * v_th");
                neuron(name, model(params, &[("v", 0.0.into())], &[&update], Some("v - v_th"), &[], None))
            } else {
                let update = format!("v = {integrate}");
                neuron(name, model(params, &[("v", 0.0.into())], &[&update], None, &[], Some("v")))
            })
        }
        (NodeKind::CubaLIF | NodeKind::CubaLI, Producer::Snntorch) => {
            let spikes = kind == NodeKind::CubaLIF;
            let dt = cx.opts.dt;
            let (ts, tm) = (taus(node, path, "tau_syn")?, taus(node, path, "tau_mem")?);
            let (r, v_leak, w_in) = (p("r"), p("v_leak"), p("w_in"));
            let mut params = vec![
                ("alpha", map_pv(&ts, |t| 1.0 - dt / t)),
                ("beta", map_pv(&tm, |t| 1.0 - dt / t)),
                ("gs", zip_pv(&w_in, &ts, |w, t| w * dt / t)),
                ("gm", zip_pv(&r, &tm, |r, t| r * dt / t)),
            ];
            let leak = !v_leak.all(0.0);
            if leak {
                params.push(("vl", zip_pv(&v_leak, &tm, |v, t| v * dt / t)));
            }
            let integrate = if leak { "(beta * v + vl) + gm * i" } else { "beta * v + gm * i" };
            let state = [("i", 0.0.into()), ("v", 0.0.into())];
            Ok(if spikes {
                params.push(("v_th", pv(&p("v_threshold"))));
                let update = format!("v = ({integrate}) - heaviside(v - v_th) * v_th");
                neuron(name, model(params, &state, &["i = alpha * i + gs * x", &update], Some("v - v_th"), &[], None))
            } else {
                let update = format!("v = {integrate}");
                neuron(name, model(params, &state, &["i = alpha * i + gs * x", &update], None, &[], Some("v")))
            })
        }
        _ => Err(NirError::new(path, None, format!("{} is not a neuron", kind.name()))),
    }
}

fn cuba(name: &str, spikes: bool, params: &mut Vec<(&str, ParamValue)>, node: &NirNode, update: &[&str]) -> Layer {
    let state = [("v", InitValue::from("v_leak")), ("i", 0.0.into())];
    if spikes {
        params.push(("v_th", pv(&node.params["v_threshold"])));
        params.push(("v_reset", pv(&node.params["v_reset"])));
        neuron(name, model(std::mem::take(params), &state, update, Some("v - v_th"), &["v = v_reset"], None))
    } else {
        neuron(name, model(std::mem::take(params), &state, update, None, &[], Some("v")))
    }
}
