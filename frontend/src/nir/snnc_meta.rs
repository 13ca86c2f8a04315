//! The metadata snnc writes into its own NIR files (`snnc export`) and
//! honours when it reads one back (a top-level graph whose metadata says
//! `producer: "snnc"`, read under the default `--nir-from spec`).
//!
//! NIR leaves out what makes a network exact: the discretisation of each
//! neuron, its reset, its surrogate gradient, which edges close a cycle,
//! the time constants to the last bit (snnc holds `1/tau`, NIR `tau`),
//! the readout. snnc writes them as metadata (free-form in NIR, ignored by
//! other readers) so that `snnc export` then reading the file back gives
//! the same network:
//!
//! | key (node metadata) | meaning |
//! |---|---|
//! | `discretisation` | `"norse"` (Norse 1.1.0's cells: CubaLIF is `LIF`, IF is `IAF`) or `"spec"` (NIR's equations, forward Euler) |
//! | `tau_mem_inv`, `tau_syn_inv` | snnc's exact inverse time constants (used where `1/tau` agrees with them to 1e-9) |
//! | `reset` | `"to_v_reset"` or `"subtract"` (a LIF read as `LIFBox`) |
//! | `surrogate_method`, `surrogate_alpha` | the surrogate gradient (Norse's names) |
//! | `trainable` | the neuron parameters training updates, comma separated |
//! | `recurrent_inputs` | the nodes whose edge into this one is a one-step delay, comma separated |
//! | `bias` | `"none"`: a Conv2d without bias (NIR's Conv2d always has one; snnc writes zeros) |
//! | `count_include_pad` | `0`: an AvgPool2d that leaves the padding out of the average |
//! | `snnc_layer` | `"Identity"`: a `Scale` of 1 that is snnc's `Identity` (a named sum) |
//!
//! At the top level: `producer` (`"snnc"`), `dt`, `steps`, `readout`,
//! `seed`, and summaries for other readers (`discretisation`, `reset`,
//! `surrogate`).

use std::collections::BTreeMap;

use super::convert::WeightTensor;
use super::{Array, MetaValue, NirNode};
use crate::neuron::NeuronModel;
use crate::schema::{Layer, Merge, Method, NeuronParam, NeuronParams, ParamValue, Readout, ResetMethod};

pub(crate) fn text(m: &BTreeMap<String, MetaValue>, k: &str) -> Option<String> {
    match m.get(k) {
        Some(MetaValue::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

pub(crate) fn number(m: &BTreeMap<String, MetaValue>, k: &str) -> Option<f64> {
    match m.get(k) {
        Some(MetaValue::Number(a)) if a.len() == 1 => Some(a.data[0]),
        Some(MetaValue::Text(t)) => t.trim().parse().ok(),
        _ => None,
    }
}

/// Whether a graph was written by snnc.
pub(crate) fn is_snnc(m: &BTreeMap<String, MetaValue>) -> bool {
    text(m, "producer").is_some_and(|p| p == "snnc")
}

/// A comma-separated list.
pub(crate) fn list(m: &BTreeMap<String, MetaValue>, k: &str) -> Vec<String> {
    text(m, k)
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// A readout by its RON name.
pub(crate) fn readout_from_name(s: &str) -> Option<Readout> {
    [Readout::Sequence, Readout::MaxLogSoftmax, Readout::Max, Readout::LastStep, Readout::Mean, Readout::SpikeCount]
        .into_iter()
        .find(|r| readout_name(*r) == s)
}

pub(crate) fn readout_name(r: Readout) -> &'static str {
    match r {
        Readout::Sequence => "Sequence",
        Readout::MaxLogSoftmax => "MaxLogSoftmax",
        Readout::Max => "Max",
        Readout::LastStep => "LastStep",
        Readout::Mean => "Mean",
        Readout::SpikeCount => "SpikeCount",
    }
}

/// The exact inverse `inv` where it agrees with `1 / tau` to 1e-9 (the
/// file's tau was not edited since snnc wrote it).
fn exact_inverse(node: &NirNode, tau_field: &str, inv_key: &str) -> Option<ParamValue> {
    let Some(MetaValue::Number(inv)) = node.metadata.get(inv_key) else { return None };
    let tau = node.params.get(tau_field)?;
    if inv.len() != tau.len() {
        return None;
    }
    let agree = tau.data.iter().zip(&inv.data).all(|(&t, &i)| (1.0 / t - i).abs() <= 1e-9 * i.abs());
    agree.then(|| super::neurons::pv(inv))
}

fn set_params<P: NeuronParams>(p: &mut P, node: &NirNode, inv: &[(NeuronParam, &str)]) {
    for (field, tau) in inv {
        if let (Some(v), Some(slot)) = (exact_inverse(node, tau, field.name()), p.get_mut(*field)) {
            *slot = v;
        }
    }
}

fn trainable<P: NeuronParams>(node: &NirNode) -> Vec<NeuronParam> {
    list(&node.metadata, "trainable").iter().filter_map(|n| P::FIELDS.iter().copied().find(|f| f.name() == n)).collect()
}

fn surrogate(node: &NirNode, method: &mut Method, alpha: &mut f64) {
    if let Some(m) = text(&node.metadata, "surrogate_method").and_then(|m| Method::from_norse_name(&m)) {
        *method = m;
    }
    if let Some(a) = number(&node.metadata, "surrogate_alpha") {
        *alpha = a;
    }
}

fn model_patch(model: &mut NeuronModel, node: &NirNode) {
    for (key, tau) in [("tau_mem_inv", "tau"), ("tau_mem_inv", "tau_mem"), ("tau_syn_inv", "tau_syn")] {
        if let Some(v) = exact_inverse(node, tau, key)
            && let Some(slot) = model.params.0.iter_mut().find(|(k, _)| k == key)
        {
            slot.1 = v;
        }
    }
    surrogate(node, &mut model.method, &mut model.alpha);
    let t = list(&node.metadata, "trainable");
    if !t.is_empty() {
        model.trainable = t;
    }
}

/// The trainable neuron parameters of a layer as weights `LAYER.FIELD`
/// (their values live in the weights file, not in the network).
fn trained_weights(layer: &Layer, node: &NirNode, weights: &mut BTreeMap<String, WeightTensor>) {
    let Some(name) = layer.given_name() else { return };
    let mut put = |field: &str, v: &ParamValue| {
        let shape = match v {
            ParamValue::Scalar(_) => Vec::new(),
            ParamValue::PerNeuron(list) => node
                .params
                .values()
                .find(|a| a.len() == list.len())
                .map_or_else(|| vec![list.len()], |a| a.shape.clone()),
        };
        weights.insert(format!("{name}.{field}"), WeightTensor { shape, data: v.values().to_vec() });
    };
    fn each<P: NeuronParams>(p: &P, put: &mut dyn FnMut(&str, &ParamValue)) {
        for f in p.trainable() {
            if let Some(v) = p.get(*f) {
                put(f.name(), v);
            }
        }
    }
    match layer {
        Layer::LIFBox { p, .. } => each(p, &mut put),
        Layer::LIBox { p, .. } => each(p, &mut put),
        Layer::LIF { p, .. } => each(p, &mut put),
        Layer::LI { p, .. } => each(p, &mut put),
        Layer::IAF { p, .. } => each(p, &mut put),
        Layer::Neuron { model, .. } => {
            for f in &model.trainable {
                if let Some(v) = model.params.get(f) {
                    put(f, v);
                }
            }
        }
        _ => {}
    }
}

/// Applies a node's snnc metadata to the layer read from it.
pub(crate) fn patch(layer: &mut Layer, node: &NirNode, weights: &mut BTreeMap<String, WeightTensor>) {
    patch_layer(layer, node, weights);
    trained_weights(layer, node, weights);
}

fn patch_layer(layer: &mut Layer, node: &NirNode, weights: &mut BTreeMap<String, WeightTensor>) {
    use NeuronParam::{tau_mem_inv, tau_syn_inv};
    let m = &node.metadata;
    match layer {
        Layer::LIFBox { p, .. } => {
            set_params(p, node, &[(tau_mem_inv, "tau")]);
            surrogate(node, &mut p.method, &mut p.alpha);
            if text(m, "reset").as_deref() == Some("subtract") {
                p.reset_method = ResetMethod::Subtract;
            }
            p.trainable = trainable::<crate::schema::LifBoxParams>(node);
        }
        Layer::LIBox { p, .. } => {
            set_params(p, node, &[(tau_mem_inv, "tau")]);
            p.trainable = trainable::<crate::schema::LiBoxParams>(node);
        }
        Layer::LIF { p, .. } => {
            set_params(p, node, &[(tau_mem_inv, "tau_mem"), (tau_syn_inv, "tau_syn")]);
            surrogate(node, &mut p.method, &mut p.alpha);
            p.trainable = trainable::<crate::schema::LifParams>(node);
        }
        Layer::LI { p, .. } => {
            set_params(p, node, &[(tau_mem_inv, "tau_mem"), (tau_syn_inv, "tau_syn")]);
            p.trainable = trainable::<crate::schema::LiParams>(node);
        }
        Layer::IAF { p, .. } => {
            surrogate(node, &mut p.method, &mut p.alpha);
            p.trainable = trainable::<crate::schema::IafParams>(node);
        }
        Layer::Neuron { model, .. } => model_patch(model, node),
        Layer::Conv2d { name: Some(name), bias, .. } if text(m, "bias").as_deref() == Some("none") => {
            *bias = false;
            weights.remove(&format!("{name}.bias"));
        }
        Layer::AvgPool2d { count_include_pad, .. } if number(m, "count_include_pad") == Some(0.0) => {
            *count_include_pad = false;
        }
        Layer::Scale { name, factor, inputs, recurrent_inputs, .. }
            if *factor == 1.0 && text(m, "snnc_layer").as_deref() == Some("Identity") =>
        {
            *layer = Layer::Identity {
                name: name.take(),
                inputs: inputs.take(),
                recurrent_inputs: std::mem::take(recurrent_inputs),
                merge: Merge::Add,
            };
        }
        _ => {}
    }
}

/// A metadata number array.
pub(crate) fn meta_array(shape: Vec<usize>, data: Vec<f64>) -> MetaValue {
    MetaValue::Number(Array::new(shape, data))
}
