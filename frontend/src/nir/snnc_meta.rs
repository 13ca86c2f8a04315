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
//! | `snnc_layer` | `"Identity"`: a `Scale` of 1 that is snnc's `Identity` (a named sum); `"LIFRecurrent"` / `"LILinear"`: the neuron of that cell ([`Cell`]) |
//! | `snnc_input_weights`, `snnc_recurrent_weights` | the Linear nodes of a cell |
//! | `autapses` | `1`: a `LIFRecurrent` whose recurrent weights keep their diagonal |
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

/// One of snnc's cells as its file writes it: `LIFRecurrent` as
/// `NAME_w_in` (Linear) → `NAME` (CubaLIF) → `NAME_w_rec` (Linear) → `NAME`
/// (delayed), `LILinear` as `NAME_w_in` → `NAME` (CubaLI). The neuron node's
/// metadata `snnc_layer` says which, `snnc_input_weights` and
/// `snnc_recurrent_weights` name the Linear nodes, `autapses` (0 or 1)
/// whether the recurrent weights keep their diagonal.
pub(crate) struct Cell {
    /// The neuron's layer (the cell's name).
    pub layer: String,
    /// The layer of the input weights.
    pub w_in: String,
    /// The layer of the recurrent weights (`LIFRecurrent`).
    pub w_rec: Option<String>,
    pub autapses: bool,
}

/// The cell a neuron node says it belongs to; `layer_of` gives the layer
/// name of a node path.
pub(crate) fn cell(node: &NirNode, layer: &str, layer_of: &dyn Fn(&str) -> Option<String>) -> Option<Cell> {
    let m = &node.metadata;
    let w_in = layer_of(&text(m, "snnc_input_weights")?)?;
    let w_rec = match text(m, "snnc_layer")?.as_str() {
        "LIFRecurrent" => Some(layer_of(&text(m, "snnc_recurrent_weights")?)?),
        "LILinear" => None,
        _ => return None,
    };
    let autapses = number(m, "autapses") == Some(1.0);
    Some(Cell { layer: layer.to_string(), w_in, w_rec, autapses })
}

/// How many times `layer` reads `name` (same step or delayed).
fn reads(layer: &Layer, name: &str) -> usize {
    let w = layer.wiring();
    w.inputs.unwrap_or_default().iter().chain(w.recurrent_inputs).filter(|s| *s == name).count()
}

/// A Linear layer without bias or plasticity named `name`: its index, its
/// `out` and its weight.
fn plain_linear(layers: &[Layer], weights: &BTreeMap<String, WeightTensor>, name: &str) -> Option<(usize, u32)> {
    let k = layers.iter().position(|l| l.given_name() == Some(name))?;
    match &layers[k] {
        Layer::Linear { out, bias: false, plasticity: None, .. } if weights.contains_key(&format!("{name}.weight")) => {
            Some((k, *out))
        }
        _ => None,
    }
}

/// Rebuilds one of snnc's cells from its nodes' layers, so that a network
/// read back is the one that was exported (the same layer, the same IR,
/// the same bits, gradients included: the fused cell detaches the spikes
/// of its reset and masks the recurrent diagonal, a chain of layers would
/// not). Leaves the layers as they are, and returns false, unless they are
/// exactly the cell's: the neuron reads only the input weights (and,
/// delayed, only the recurrent weights), the recurrent weights read only
/// the neuron, and no other layer reads either Linear.
pub(crate) fn fuse_cell(layers: &mut Vec<Layer>, weights: &mut BTreeMap<String, WeightTensor>, c: &Cell) -> bool {
    let Some(at) = layers.iter().position(|l| l.given_name() == Some(c.layer.as_str())) else { return false };
    let Some((a, _)) = plain_linear(layers, weights, &c.w_in) else { return false };
    let rec = match &c.w_rec {
        Some(r) => match plain_linear(layers, weights, r) {
            Some(x) => Some((r.clone(), x)),
            None => return false,
        },
        None => None,
    };
    let w = layers[at].wiring();
    let want_rec: Vec<String> = rec.iter().map(|(r, _)| r.clone()).collect();
    if w.inputs != Some(std::slice::from_ref(&c.w_in)) || w.recurrent_inputs != want_rec.as_slice() {
        return false;
    }
    if let Some((r, (b, _))) = &rec {
        let wr = layers[*b].wiring();
        if wr.inputs != Some(std::slice::from_ref(&c.layer)) || !wr.recurrent_inputs.is_empty() {
            return false;
        }
        if layers.iter().enumerate().any(|(k, l)| k != at && reads(l, r) > 0) {
            return false;
        }
    }
    if layers.iter().enumerate().any(|(k, l)| k != at && reads(l, &c.w_in) > 0) {
        return false;
    }
    let lin = layers[a].clone();
    let lw = lin.wiring();
    let (inputs, recurrent_inputs, merge) = (lw.inputs.map(<[String]>::to_vec), lw.recurrent_inputs.to_vec(), lw.merge);
    let Layer::Linear { out, input_density, .. } = lin else { return false };
    let fused = match (&layers[at], &rec) {
        (Layer::LIF { name, p, .. }, Some((r, (_, hidden)))) => {
            let wr = &weights[&format!("{r}.weight")];
            let h = *hidden as usize;
            if *hidden != out || wr.shape != [h, h] {
                return false;
            }
            // A diagonal the file holds is used, whatever the metadata says.
            let autapses = c.autapses || (0..h).any(|k| wr.data[k * h + k] != 0.0);
            Layer::LIFRecurrent {
                name: name.clone(),
                input: None,
                hidden: *hidden,
                p: p.clone(),
                autapses,
                input_density,
                inputs,
                recurrent_inputs,
                merge,
            }
        }
        (Layer::LI { name, p, .. }, None) => Layer::LILinear {
            name: name.clone(),
            input: None,
            out,
            p: p.clone(),
            input_density,
            inputs,
            recurrent_inputs,
            merge,
        },
        _ => return false,
    };
    let rename = |weights: &mut BTreeMap<String, WeightTensor>, from: &str, to: &str| {
        if let Some(t) = weights.remove(&format!("{from}.weight")) {
            weights.insert(format!("{}.{to}", c.layer), t);
        }
    };
    rename(weights, &c.w_in, "input_weights");
    if let Some((r, _)) = &rec {
        rename(weights, r, "recurrent_weights");
    }
    layers[at] = fused;
    let gone: Vec<&str> = std::iter::once(c.w_in.as_str()).chain(rec.iter().map(|(r, _)| r.as_str())).collect();
    layers.retain(|l| l.given_name().is_none_or(|n| !gone.contains(&n)));
    true
}
