//! A snnc [`Network`] and its weights as a NIR graph (`snnc export`).
//!
//! One node per layer, named after the layer; `Input` (`input`) is the
//! network input (one sample's shape, no batch dimension), `Output`
//! (`output`) reads the last layer. Every edge of the network is an edge of
//! the graph (several into one node are NIR's sum); a `recurrent_inputs`
//! edge closes a cycle. A recurrent cell is NIR's: `NAME_w_in` (Linear),
//! the neuron `NAME`, and `NAME_w_rec` (Linear) from the neuron back into
//! it.
//!
//! Every neuron node is checked by reading it back (the reader's own
//! conversion, [`super::convert`], with the metadata snnc writes,
//! [`super::snnc_meta`]): a layer whose node does not read back as the same
//! layer is refused, so a written file always reads back as the network it
//! came from. `docs/nir.md` ("Export") has the mapping and what is refused.

use std::collections::{BTreeMap, BTreeSet};

use super::convert::{Ctx, Producer, Resolved, WeightTensor, node_layer};
use super::snnc_meta::{self, meta_array, readout_name};
use super::{Array, MetaValue, NirFile, NirGraph, NirNode, NodeKind, StoredType};
use crate::graph::Source;
use crate::neuron::InitValue;
use crate::schema::{Layer, Merge, Method, Network, NeuronParam, NeuronParams, Pair, ParamValue, ResetMethod};

/// A layer NIR cannot express, or a network that cannot be written: the
/// layer (or `network`, `encoder`, a weight name) and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct ExportError {
    pub place: String,
    pub message: String,
}

fn refuse(place: impl Into<String>, message: impl Into<String>) -> ExportError {
    ExportError { place: place.into(), message: message.into() }
}

fn at(name: &str, layer: &Layer) -> String {
    format!("layer `{name}` ({})", layer.kind())
}

fn int_array(v: &[i64]) -> Array {
    Array { shape: vec![v.len()], data: v.iter().map(|&x| x as f64).collect(), stored: StoredType::Int }
}

fn int_scalar(v: i64) -> Array {
    Array { shape: Vec::new(), data: vec![v as f64], stored: StoredType::Int }
}

fn pair_array(p: Pair) -> Array {
    int_array(&[i64::from(p.h()), i64::from(p.w())])
}

fn usizes(s: &[u32]) -> Vec<usize> {
    s.iter().map(|&d| d as usize).collect()
}

/// A parameter as an array of the layer's per-sample shape.
fn full(v: &ParamValue, shape: &[u32], place: &str, field: &str) -> Result<Array, ExportError> {
    let n: usize = shape.iter().map(|&d| d as usize).product();
    let data = match v {
        ParamValue::Scalar(x) => vec![*x; n],
        ParamValue::PerNeuron(list) if list.len() == n => list.clone(),
        ParamValue::PerNeuron(list) => {
            return Err(refuse(place, format!("{field} has {} values, the layer {n} neurons", list.len())));
        }
    };
    Ok(Array::new(usizes(shape), data))
}

/// `tau` with `1 / tau == inv` exactly where a float near `1 / inv` has
/// it: the one a NIR file most likely held when snnc read `inv` from one
/// (an f32 value first, then the shortest decimal, then the nearest);
/// else the nearest `1 / inv`.
pub(crate) fn tau_of(inv: f64) -> f64 {
    let t = 1.0 / inv;
    if !(t.is_finite() && t > 0.0) {
        return t;
    }
    let bits = t.to_bits();
    let mut best: Option<((bool, usize, u64), f64)> = None;
    for k in 0..=8u64 {
        for c in [bits.wrapping_add(k), bits.wrapping_sub(k)] {
            let c = f64::from_bits(c);
            if 1.0 / c == inv {
                // Smaller is better: not an f32, decimal length, distance.
                let key = (f64::from(c as f32) != c, format!("{c:e}").len(), k);
                if best.as_ref().is_none_or(|(b, _)| key < *b) {
                    best = Some((key, c));
                }
            }
        }
    }
    best.map_or(t, |(_, c)| c)
}

/// The tau array of an inverse time constant, and its exact inverse as
/// metadata.
fn tau_field(
    node: &mut NirNode,
    field: &str,
    inv: &ParamValue,
    meta: &str,
    shape: &[u32],
    place: &str,
) -> Result<(), ExportError> {
    let a = full(inv, shape, place, meta)?;
    let taus: Vec<f64> = a.data.iter().map(|&x| tau_of(x)).collect();
    node.params.insert(field.into(), Array::new(a.shape.clone(), taus));
    node.metadata.insert(meta.into(), MetaValue::Number(a));
    Ok(())
}

fn surrogate_meta(node: &mut NirNode, method: Method, alpha: f64) {
    node.metadata.insert("surrogate_method".into(), MetaValue::Text(method.norse_name().into()));
    node.metadata.insert("surrogate_alpha".into(), meta_array(Vec::new(), vec![alpha]));
}

fn trainable_meta(node: &mut NirNode, names: &[String]) {
    if !names.is_empty() {
        node.metadata.insert("trainable".into(), MetaValue::Text(names.join(",")));
    }
}

fn param_names(t: &[NeuronParam]) -> Vec<String> {
    t.iter().map(|p| p.name().to_string()).collect()
}

fn new_node(kind: NodeKind) -> NirNode {
    NirNode { kind, params: BTreeMap::new(), strings: BTreeMap::new(), graph: None, metadata: BTreeMap::new() }
}

fn discretisation(node: &mut NirNode, d: &str) {
    node.metadata.insert("discretisation".into(), MetaValue::Text(d.into()));
}

/// The network's layers as NIR nodes.
struct Builder<'a> {
    net: &'a Network,
    weights: &'a BTreeMap<String, WeightTensor>,
    nodes: Vec<(String, NirNode)>,
    /// The nodes written so far (names must not meet).
    taken: BTreeSet<String>,
    /// Which kinds of neuron were written, for the summary metadata.
    disc: BTreeSet<String>,
    resets: BTreeSet<String>,
    surrogates: BTreeSet<String>,
}

impl Builder<'_> {
    fn add(&mut self, place: &str, name: String, node: NirNode) -> Result<(), ExportError> {
        if !self.taken.insert(name.clone()) {
            return Err(refuse(place, format!("its NIR node `{name}` is also another layer's node; rename the layer")));
        }
        self.nodes.push((name, node));
        Ok(())
    }

    fn weight(&self, place: &str, name: &str, shape: &[usize]) -> Result<Array, ExportError> {
        let w = self.weights.get(name).ok_or_else(|| {
            refuse(place, format!("the weight `{name}` is missing (pass the weights file with --weights)"))
        })?;
        if w.shape != shape {
            return Err(refuse(place, format!("the weight `{name}` has the shape {:?}, expected {shape:?}", w.shape)));
        }
        Ok(Array::new(w.shape.clone(), w.data.clone()))
    }

    /// Checks that `node` reads back (the reader's conversion with snnc's
    /// metadata) as `expected`.
    fn verify(&self, place: &str, name: &str, node: &NirNode, expected: &Layer) -> Result<(), ExportError> {
        let mut assumptions = Vec::new();
        let norse = snnc_meta::text(&node.metadata, "discretisation").as_deref() == Some("norse");
        let producer = if norse { Producer::Norse } else { Producer::Spec };
        let mut cx = Ctx {
            opts: Resolved { dt: self.net.dt, producer },
            assumptions: &mut assumptions,
            if_noted: true,
            snnc: true,
        };
        let mut scratch = BTreeMap::new();
        let back = node_layer(&mut cx, name, name, node, &mut scratch).ok().map(|mut l| {
            snnc_meta::patch(&mut l, node, &mut scratch);
            l
        });
        if back.map(normalized) == Some(normalized(expected.clone())) {
            Ok(())
        } else {
            Err(refuse(
                place,
                "NIR has no node that is exactly this layer (its equations, reset or parameters differ from every NIR neuron's as snnc reads them)",
            ))
        }
    }

    /// A neuron layer (feed-forward) as one node; `None` when it is no NIR
    /// neuron.
    fn neuron(&mut self, place: &str, name: &str, layer: &Layer, shape: &[u32]) -> Result<NirNode, ExportError> {
        let trained = self.trained(name, layer);
        let layer = &trained;
        let s = shape;
        let node = match layer {
            Layer::LIFBox { p, .. } => {
                let mut n = new_node(NodeKind::LIF);
                tau_field(&mut n, "tau", &p.tau_mem_inv, "tau_mem_inv", s, place)?;
                n.params.insert("r".into(), full(&1.0.into(), s, place, "r")?);
                n.params.insert("v_leak".into(), full(&p.v_leak, s, place, "v_leak")?);
                n.params.insert("v_threshold".into(), full(&p.v_th, s, place, "v_th")?);
                n.params.insert("v_reset".into(), full(&p.v_reset, s, place, "v_reset")?);
                discretisation(&mut n, "spec");
                let reset = if p.reset_method == ResetMethod::Subtract { "subtract" } else { "to_v_reset" };
                n.metadata.insert("reset".into(), MetaValue::Text(reset.into()));
                surrogate_meta(&mut n, p.method, p.alpha);
                trainable_meta(&mut n, &param_names(p.trainable()));
                n
            }
            Layer::LIBox { p, .. } => {
                let mut n = new_node(NodeKind::LI);
                tau_field(&mut n, "tau", &p.tau_mem_inv, "tau_mem_inv", s, place)?;
                n.params.insert("r".into(), full(&1.0.into(), s, place, "r")?);
                n.params.insert("v_leak".into(), full(&p.v_leak, s, place, "v_leak")?);
                discretisation(&mut n, "spec");
                trainable_meta(&mut n, &param_names(p.trainable()));
                n
            }
            Layer::LIF { p, .. } | Layer::LIFRecurrent { p, .. } => {
                let mut n = new_node(NodeKind::CubaLIF);
                tau_field(&mut n, "tau_mem", &p.tau_mem_inv, "tau_mem_inv", s, place)?;
                tau_field(&mut n, "tau_syn", &p.tau_syn_inv, "tau_syn_inv", s, place)?;
                for (f, v) in [("r", &1.0.into()), ("w_in", &1.0.into()), ("v_leak", &p.v_leak)] {
                    n.params.insert(f.into(), full(v, s, place, f)?);
                }
                n.params.insert("v_threshold".into(), full(&p.v_th, s, place, "v_th")?);
                n.params.insert("v_reset".into(), full(&p.v_reset, s, place, "v_reset")?);
                discretisation(&mut n, "norse");
                n.metadata.insert("reset".into(), MetaValue::Text("to_v_reset".into()));
                surrogate_meta(&mut n, p.method, p.alpha);
                trainable_meta(&mut n, &param_names(p.trainable()));
                n
            }
            Layer::LI { p, .. } | Layer::LILinear { p, .. } => {
                let mut n = new_node(NodeKind::CubaLI);
                tau_field(&mut n, "tau_mem", &p.tau_mem_inv, "tau_mem_inv", s, place)?;
                tau_field(&mut n, "tau_syn", &p.tau_syn_inv, "tau_syn_inv", s, place)?;
                for (f, v) in [("r", &1.0.into()), ("w_in", &1.0.into()), ("v_leak", &p.v_leak)] {
                    n.params.insert(f.into(), full(v, s, place, f)?);
                }
                discretisation(&mut n, "norse");
                trainable_meta(&mut n, &param_names(p.trainable()));
                n
            }
            Layer::IAF { p, .. } => {
                let mut n = new_node(NodeKind::IF);
                n.params.insert("r".into(), full(&1.0.into(), s, place, "r")?);
                n.params.insert("v_threshold".into(), full(&p.v_th, s, place, "v_th")?);
                n.params.insert("v_reset".into(), full(&p.v_reset, s, place, "v_reset")?);
                discretisation(&mut n, "norse");
                n.metadata.insert("reset".into(), MetaValue::Text("to_v_reset".into()));
                surrogate_meta(&mut n, p.method, p.alpha);
                trainable_meta(&mut n, &param_names(p.trainable()));
                n
            }
            Layer::Neuron { model, .. } => return self.model_node(place, name, layer, model, shape),
            _ => unreachable!("neuron() is called for neuron layers"),
        };
        let expected = match layer {
            Layer::LIFRecurrent { name, p, .. } => Layer::LIF {
                name: name.clone(),
                p: p.clone(),
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Merge::Add,
            },
            Layer::LILinear { name, p, .. } => Layer::LI {
                name: name.clone(),
                p: p.clone(),
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Merge::Add,
            },
            l => l.clone(),
        };
        self.verify(place, name, &node, &expected)?;
        Ok(node)
    }

    /// The layer with its trainable neuron parameters' values from the
    /// weights (`LAYER.FIELD`), where the weights hold them.
    fn trained(&self, name: &str, layer: &Layer) -> Layer {
        let w = self.weights;
        let value = |f: &str| -> Option<ParamValue> {
            let t = w.get(&format!("{name}.{f}"))?;
            Some(if t.shape.is_empty() { ParamValue::Scalar(t.data[0]) } else { ParamValue::PerNeuron(t.data.clone()) })
        };
        fn set<P: NeuronParams>(p: &mut P, value: &dyn Fn(&str) -> Option<ParamValue>) {
            for f in p.trainable().to_vec() {
                if let (Some(v), Some(slot)) = (value(f.name()), p.get_mut(f)) {
                    *slot = v;
                }
            }
        }
        let mut l = layer.clone();
        match &mut l {
            Layer::LIFBox { p, .. } => set(p, &value),
            Layer::LIBox { p, .. } => set(p, &value),
            Layer::LIF { p, .. } | Layer::LIFRecurrent { p, .. } => set(p, &value),
            Layer::LI { p, .. } | Layer::LILinear { p, .. } => set(p, &value),
            Layer::IAF { p, .. } => set(p, &value),
            Layer::Neuron { model, .. } => {
                for f in model.trainable.clone() {
                    if let (Some(v), Some(slot)) = (value(&f), model.params.0.iter_mut().find(|(k, _)| *k == f)) {
                        slot.1 = v;
                    }
                }
            }
            _ => {}
        }
        l
    }

    /// A neuron-language layer: the first NIR node whose reading back is
    /// exactly this model.
    fn model_node(
        &mut self,
        place: &str,
        name: &str,
        layer: &Layer,
        model: &crate::neuron::NeuronModel,
        s: &[u32],
    ) -> Result<NirNode, ExportError> {
        let params: BTreeMap<&str, &ParamValue> = model.params.0.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let keys: BTreeSet<&str> = params.keys().copied().collect();
        let has = |want: &[&str]| keys == want.iter().copied().collect::<BTreeSet<&str>>();
        let mut candidates: Vec<(NodeKind, &str)> = Vec::new();
        if has(&["tau_mem_inv", "r", "v_leak", "v_th", "v_reset"]) {
            candidates.push((NodeKind::LIF, "spec"));
        }
        if has(&["tau_mem_inv", "r", "v_leak"]) {
            candidates.push((NodeKind::LI, "spec"));
        }
        if has(&["tau_syn_inv", "tau_mem_inv", "r", "w_in", "v_leak", "v_th", "v_reset"]) {
            candidates.extend([(NodeKind::CubaLIF, "spec"), (NodeKind::CubaLIF, "norse")]);
        }
        if has(&["tau_syn_inv", "tau_mem_inv", "r", "w_in", "v_leak"]) {
            candidates.extend([(NodeKind::CubaLI, "spec"), (NodeKind::CubaLI, "norse")]);
        }
        if has(&["r", "v_th", "v_reset"]) {
            candidates.extend([(NodeKind::IF, "spec"), (NodeKind::IF, "norse")]);
        }
        if has(&["r"]) {
            candidates.extend([(NodeKind::I, "spec"), (NodeKind::I, "norse")]);
        }
        if has(&["s"]) {
            candidates.push((NodeKind::Scale, "spec"));
        }
        if has(&["theta"]) {
            candidates.push((NodeKind::Threshold, "spec"));
        }
        let delay = model.state.0.len();
        if keys.is_empty()
            && delay >= 1
            && model
                .state
                .0
                .iter()
                .enumerate()
                .all(|(j, (k, v))| *k == format!("s{}", j + 1) && *v == InitValue::Number(0.0))
        {
            candidates.push((NodeKind::Delay, "spec"));
        }
        for (kind, disc) in candidates {
            let mut n = new_node(kind);
            let mut ok = true;
            let mut put = |n: &mut NirNode, field: &str, key: &str| -> Result<(), ExportError> {
                match params.get(key) {
                    Some(v) => {
                        n.params.insert(field.into(), full(v, s, place, key)?);
                    }
                    None => ok = false,
                }
                Ok(())
            };
            match kind {
                NodeKind::LIF | NodeKind::LI => {
                    tau_field(&mut n, "tau", params["tau_mem_inv"], "tau_mem_inv", s, place)?;
                    put(&mut n, "r", "r")?;
                    put(&mut n, "v_leak", "v_leak")?;
                    if kind == NodeKind::LIF {
                        put(&mut n, "v_threshold", "v_th")?;
                        put(&mut n, "v_reset", "v_reset")?;
                    }
                }
                NodeKind::CubaLIF | NodeKind::CubaLI => {
                    tau_field(&mut n, "tau_mem", params["tau_mem_inv"], "tau_mem_inv", s, place)?;
                    tau_field(&mut n, "tau_syn", params["tau_syn_inv"], "tau_syn_inv", s, place)?;
                    put(&mut n, "r", "r")?;
                    put(&mut n, "w_in", "w_in")?;
                    put(&mut n, "v_leak", "v_leak")?;
                    if kind == NodeKind::CubaLIF {
                        put(&mut n, "v_threshold", "v_th")?;
                        put(&mut n, "v_reset", "v_reset")?;
                    }
                }
                NodeKind::IF | NodeKind::I => {
                    put(&mut n, "r", "r")?;
                    if kind == NodeKind::IF {
                        put(&mut n, "v_threshold", "v_th")?;
                        put(&mut n, "v_reset", "v_reset")?;
                    }
                }
                NodeKind::Scale => put(&mut n, "scale", "s")?,
                NodeKind::Threshold => put(&mut n, "threshold", "theta")?,
                NodeKind::Delay => {
                    let d = delay as f64 * self.net.dt;
                    n.params.insert("delay".into(), full(&d.into(), s, place, "delay")?);
                }
                _ => ok = false,
            }
            if !ok {
                continue;
            }
            discretisation(&mut n, disc);
            if model.spike.is_some() {
                surrogate_meta(&mut n, model.method, model.alpha);
            }
            trainable_meta(&mut n, &model.trainable);
            if self.verify(place, name, &n, layer).is_ok() {
                return Ok(n);
            }
        }
        Err(refuse(
            place,
            "this neuron-language model is none of NIR's neurons (LIF, LI, CubaLIF, CubaLI, IF, I, Threshold, Scale, \
             Delay) exactly as snnc reads them (docs/nir.md lists their equations); NIR cannot hold it",
        ))
    }
}

/// A layer without its name's absence and wiring, to compare a layer with
/// what its node reads back as.
fn normalized(mut l: Layer) -> Layer {
    let (inputs, rec, merge) = l.wiring_mut();
    *inputs = None;
    rec.clear();
    *merge = Merge::Add;
    l
}

/// Why a layer has no NIR node, if it has none.
fn no_node(layer: &Layer) -> Option<String> {
    let why = match layer {
        Layer::MaxPool2d { .. } => "NIR has no max pooling (only SumPool2d and AvgPool2d)",
        Layer::LPPool2d { .. } => "NIR has no power-average pooling",
        Layer::ReLU { .. } => "NIR has no ReLU (a rectifier is no NIR primitive)",
        Layer::Dropout { .. } => "NIR has no dropout (export the network for inference without it)",
        Layer::BatchNorm1d { .. } | Layer::BatchNorm2d { .. } => {
            "NIR has no batch normalisation (fold it into the weights of the layer before it)"
        }
        Layer::LSNN { .. } | Layer::LSNNRecurrent { .. } => "NIR has no adaptive-threshold neuron (LSNN)",
        Layer::LIFAdEx { .. } | Layer::LIFAdExRefrac { .. } => "NIR has no adaptive exponential neuron (AdEx)",
        Layer::LIFEx { .. } => "NIR has no exponential LIF",
        Layer::LIFRefrac { .. } => "NIR has no refractory period",
        Layer::Izhikevich { .. } => "NIR has no Izhikevich neuron",
        Layer::CobaLIF { .. } => "NIR has no conductance-based neuron",
        Layer::TsodyksMarkram { .. } => "NIR has no short-term plasticity (Tsodyks-Markram)",
        Layer::IAF { hidden: Some(_), .. } | Layer::Neuron { hidden: Some(_), .. } => {
            "a recurrent cell of this kind is not exported yet (only LIFRecurrent is)"
        }
        Layer::Linear { plasticity: Some(_), .. } | Layer::Conv2d { plasticity: Some(_), .. } => {
            "NIR has no plasticity (STDP): export the network without `plasticity:`"
        }
        _ => return None,
    };
    Some(why.to_string())
}

fn conv_out(h: u32, k: u32, s: u32, p: u32, d: u32) -> Option<u32> {
    let span = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let padded = h.checked_add(2 * p)?;
    padded.checked_sub(span).map(|x| x / s + 1)
}

/// The output shape of `layer` on an input of `input`'s shape.
fn out_shape(place: &str, layer: &Layer, input: &[u32]) -> Result<Vec<u32>, ExportError> {
    let bad = || refuse(place, format!("does not fit its input of shape {input:?}"));
    Ok(match layer {
        Layer::Linear { out, .. } | Layer::LILinear { out, .. } => {
            if input.len() != 1 {
                return Err(refuse(
                    place,
                    format!("reads a [{input:?}] input; NIR's Affine takes a vector (Flatten first)"),
                ));
            }
            vec![*out]
        }
        Layer::LIFRecurrent { hidden, .. } => {
            if input.len() != 1 {
                return Err(bad());
            }
            vec![*hidden]
        }
        Layer::Conv2d { out_channels, kernel_size, stride, padding, dilation, .. } => {
            let [_, h, w] = input else { return Err(bad()) };
            let oh = conv_out(*h, kernel_size.h(), stride.h(), padding.h(), dilation.h()).ok_or_else(bad)?;
            let ow = conv_out(*w, kernel_size.w(), stride.w(), padding.w(), dilation.w()).ok_or_else(bad)?;
            vec![*out_channels, oh, ow]
        }
        Layer::SumPool2d { kernel_size, stride, padding, .. }
        | Layer::AvgPool2d { kernel_size, stride, padding, .. } => {
            let [c, h, w] = input else { return Err(bad()) };
            let s = stride.unwrap_or(*kernel_size);
            let oh = conv_out(*h, kernel_size.h(), s.h(), padding.h(), 1).ok_or_else(bad)?;
            let ow = conv_out(*w, kernel_size.w(), s.w(), padding.w(), 1).ok_or_else(bad)?;
            vec![*c, oh, ow]
        }
        Layer::Flatten { .. } => vec![input.iter().product()],
        _ => input.to_vec(),
    })
}

/// The network and its weights as a NIR file (the graph and its metadata).
pub fn export(net: &Network, weights: &BTreeMap<String, WeightTensor>) -> Result<NirFile, ExportError> {
    if let Some(enc) = &net.encoder {
        return Err(refuse(
            format!("encoder ({})", enc.kind()),
            format!(
                "the {} encoder has no NIR node (NIR graphs start at the values the first layer reads); export the \
                 network after the encoder: the same layers without `encoder:`, with `input:` the encoded shape",
                enc.kind()
            ),
        ));
    }
    let graph = crate::graph::resolve(&net.layers)
        .map_err(|p| refuse("network", p.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ")))?;
    let names: Vec<String> = net.layers.iter().enumerate().map(|(i, l)| l.name(i)).collect();
    for (i, l) in net.layers.iter().enumerate() {
        let place = at(&names[i], l);
        if let Some(why) = no_node(l) {
            return Err(refuse(place, format!("has no NIR node: {why}")));
        }
        if l.wiring().merge == Merge::Concat {
            return Err(refuse(
                place,
                "merges its inputs by concatenation; NIR sums the edges into a node and has no concatenation",
            ));
        }
    }
    // Shapes (a fixpoint: a layer may read a later one's previous step).
    let n = net.layers.len();
    let mut shapes: Vec<Option<Vec<u32>>> = vec![None; n];
    for _ in 0..=n {
        for &i in &graph.order {
            if shapes[i].is_some() {
                continue;
            }
            let input = graph.nodes[i].sources.iter().find_map(|s| match s {
                Source::Input => Some(net.input.clone()),
                Source::Layer(j) | Source::Delayed(j) => shapes[*j].clone(),
            });
            if let Some(input) = input {
                shapes[i] = Some(out_shape(&at(&names[i], &net.layers[i]), &net.layers[i], &input)?);
            }
        }
    }
    let in_shape_of = |i: usize| -> Vec<u32> {
        graph.nodes[i]
            .sources
            .iter()
            .find_map(|s| match s {
                Source::Input => Some(net.input.clone()),
                Source::Layer(j) | Source::Delayed(j) => shapes[*j].clone(),
            })
            .unwrap_or_default()
    };
    let mut b = Builder {
        net,
        weights,
        nodes: Vec::new(),
        taken: BTreeSet::new(),
        disc: BTreeSet::new(),
        resets: BTreeSet::new(),
        surrogates: BTreeSet::new(),
    };
    let io_name = |base: &str| -> String {
        let mut s = base.to_string();
        while names.contains(&s) {
            s.push_str("_node");
        }
        s
    };
    let (input_name, output_name) = (io_name("input"), io_name("output"));
    let mut input = new_node(NodeKind::Input);
    input.params.insert("shape".into(), int_array(&net.input.iter().map(|&d| i64::from(d)).collect::<Vec<_>>()));
    b.add("input", input_name.clone(), input)?;
    // Per layer: the node its inputs enter and the node its output leaves.
    let mut entry = vec![String::new(); n];
    let mut exit = vec![String::new(); n];
    let mut internal: Vec<Vec<(String, String)>> = vec![Vec::new(); n];
    for (i, layer) in net.layers.iter().enumerate() {
        let name = names[i].clone();
        let place = at(&name, layer);
        let input = in_shape_of(i);
        let Some(shape) = shapes[i].clone() else {
            return Err(refuse(place, "no input reaches it"));
        };
        entry[i] = name.clone();
        exit[i] = name.clone();
        let node = match layer {
            Layer::Linear { bias, out, .. } => {
                let fan_in = input.iter().product::<u32>() as usize;
                let mut nd = new_node(if *bias { NodeKind::Affine } else { NodeKind::Linear });
                nd.params
                    .insert("weight".into(), b.weight(&place, &format!("{name}.weight"), &[*out as usize, fan_in])?);
                if *bias {
                    nd.params.insert("bias".into(), b.weight(&place, &format!("{name}.bias"), &[*out as usize])?);
                }
                nd
            }
            Layer::Conv2d {
                in_channels: _,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                groups,
                bias,
                ..
            } => {
                let cin = input.first().copied().unwrap_or(1);
                let wshape = [
                    *out_channels as usize,
                    (cin / (*groups).max(1)) as usize,
                    kernel_size.h() as usize,
                    kernel_size.w() as usize,
                ];
                let mut nd = new_node(NodeKind::Conv2d);
                nd.params.insert("weight".into(), b.weight(&place, &format!("{name}.weight"), &wshape)?);
                let bias_arr = if *bias {
                    b.weight(&place, &format!("{name}.bias"), &[*out_channels as usize])?
                } else {
                    nd.metadata.insert("bias".into(), MetaValue::Text("none".into()));
                    Array::new(vec![*out_channels as usize], vec![0.0; *out_channels as usize])
                };
                nd.params.insert("bias".into(), bias_arr);
                nd.params.insert("stride".into(), pair_array(*stride));
                nd.params.insert("padding".into(), pair_array(*padding));
                nd.params.insert("dilation".into(), pair_array(*dilation));
                nd.params.insert("groups".into(), int_scalar(i64::from(*groups)));
                if let [_, h, w] = input.as_slice() {
                    nd.params.insert("input_shape".into(), int_array(&[i64::from(*h), i64::from(*w)]));
                }
                nd
            }
            Layer::SumPool2d { kernel_size, stride, padding, .. }
            | Layer::AvgPool2d { kernel_size, stride, padding, .. } => {
                let kind =
                    if matches!(layer, Layer::SumPool2d { .. }) { NodeKind::SumPool2d } else { NodeKind::AvgPool2d };
                let mut nd = new_node(kind);
                nd.params.insert("kernel_size".into(), pair_array(*kernel_size));
                nd.params.insert("stride".into(), pair_array(stride.unwrap_or(*kernel_size)));
                nd.params.insert("padding".into(), pair_array(*padding));
                if let Layer::AvgPool2d { count_include_pad: false, .. } = layer {
                    nd.metadata.insert("count_include_pad".into(), meta_array(Vec::new(), vec![0.0]));
                }
                nd
            }
            Layer::Flatten { .. } => {
                let mut nd = new_node(NodeKind::Flatten);
                nd.params.insert("start_dim".into(), int_scalar(0));
                nd.params.insert("end_dim".into(), int_scalar(-1));
                nd.params
                    .insert("input_type".into(), int_array(&input.iter().map(|&d| i64::from(d)).collect::<Vec<_>>()));
                nd
            }
            Layer::Scale { factor, .. } => {
                let mut nd = new_node(NodeKind::Scale);
                nd.params.insert("scale".into(), full(&(*factor).into(), &shape, &place, "factor")?);
                nd
            }
            Layer::Identity { .. } => {
                let mut nd = new_node(NodeKind::Scale);
                nd.params.insert("scale".into(), full(&1.0.into(), &shape, &place, "factor")?);
                nd.metadata.insert("snnc_layer".into(), MetaValue::Text("Identity".into()));
                nd
            }
            Layer::LIFRecurrent { hidden, autapses, .. } => {
                let h = *hidden as usize;
                let fan_in = input.iter().product::<u32>() as usize;
                let (w_in, w_rec) = (format!("{name}_w_in"), format!("{name}_w_rec"));
                let mut lin = new_node(NodeKind::Linear);
                lin.params.insert("weight".into(), b.weight(&place, &format!("{name}.input_weights"), &[h, fan_in])?);
                b.add(&place, w_in.clone(), lin)?;
                let mut rec = b.weight(&place, &format!("{name}.recurrent_weights"), &[h, h])?;
                if !autapses {
                    for k in 0..h {
                        rec.data[k * h + k] = 0.0;
                    }
                }
                let mut lrec = new_node(NodeKind::Linear);
                lrec.params.insert("weight".into(), rec);
                b.add(&place, w_rec.clone(), lrec)?;
                let mut nd = b.neuron(&place, &name, layer, &shape)?;
                nd.metadata.insert("recurrent_inputs".into(), MetaValue::Text(w_rec.clone()));
                // The three nodes are one cell: snnc reads them back as it.
                nd.metadata.insert("snnc_layer".into(), MetaValue::Text("LIFRecurrent".into()));
                nd.metadata.insert("snnc_input_weights".into(), MetaValue::Text(w_in.clone()));
                nd.metadata.insert("snnc_recurrent_weights".into(), MetaValue::Text(w_rec.clone()));
                nd.metadata.insert("autapses".into(), meta_array(Vec::new(), vec![f64::from(u8::from(*autapses))]));
                internal[i].push((w_in.clone(), name.clone()));
                internal[i].push((w_rec.clone(), name.clone()));
                internal[i].push((name.clone(), w_rec.clone()));
                entry[i] = w_in;
                nd
            }
            Layer::LILinear { out, .. } => {
                let fan_in = input.iter().product::<u32>() as usize;
                let w_in = format!("{name}_w_in");
                let mut lin = new_node(NodeKind::Linear);
                lin.params.insert(
                    "weight".into(),
                    b.weight(&place, &format!("{name}.input_weights"), &[*out as usize, fan_in])?,
                );
                b.add(&place, w_in.clone(), lin)?;
                internal[i].push((w_in.clone(), name.clone()));
                let mut nd = b.neuron(&place, &name, layer, &shape)?;
                nd.metadata.insert("snnc_layer".into(), MetaValue::Text("LILinear".into()));
                nd.metadata.insert("snnc_input_weights".into(), MetaValue::Text(w_in.clone()));
                entry[i] = w_in;
                nd
            }
            l if l.is_neuron() => b.neuron(&place, &name, layer, &shape)?,
            l => return Err(refuse(place, format!("has no NIR node ({} is not exported)", l.kind()))),
        };
        if let Some(MetaValue::Text(d)) = node.metadata.get("discretisation") {
            b.disc.insert(format!("{} as {}", node.kind.name(), d));
        }
        if let Some(MetaValue::Text(r)) = node.metadata.get("reset") {
            b.resets.insert(r.clone());
        }
        if let Some(MetaValue::Text(m)) = node.metadata.get("surrogate_method") {
            let a = snnc_meta::number(&node.metadata, "surrogate_alpha").unwrap_or(100.0);
            b.surrogates.insert(format!("{m} alpha {a}"));
        }
        b.add(&place, name, node)?;
    }
    // Edges, grouped by the node they enter, in the order of its inputs
    // (same-step ones first, as snnc sums them).
    let mut edges = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let mut delayed = Vec::new();
        for s in &node.sources {
            let from = match s {
                Source::Input => input_name.clone(),
                Source::Layer(j) => exit[*j].clone(),
                Source::Delayed(j) => {
                    delayed.push(exit[*j].clone());
                    exit[*j].clone()
                }
            };
            edges.push((from, entry[i].clone()));
        }
        // The cell's own edges after its inputs: w_in -> cell, cell -> w_rec, w_rec -> cell.
        edges.extend(internal[i].iter().cloned());
        if !delayed.is_empty() {
            let entry_node =
                b.nodes.iter_mut().find(|(nm, _)| *nm == entry[i]).map(|(_, nd)| nd).expect("written above");
            let mut list = snnc_meta::list(&entry_node.metadata, "recurrent_inputs");
            list.extend(delayed);
            entry_node.metadata.insert("recurrent_inputs".into(), MetaValue::Text(list.join(",")));
        }
    }
    let last = n.checked_sub(1).ok_or_else(|| refuse("network", "has no layers"))?;
    let out_shape = shapes[last].clone().unwrap_or_default();
    let mut output = new_node(NodeKind::Output);
    output.params.insert("shape".into(), int_array(&out_shape.iter().map(|&d| i64::from(d)).collect::<Vec<_>>()));
    b.add("output", output_name.clone(), output)?;
    edges.push((exit[last].clone(), output_name));
    let mut meta = BTreeMap::new();
    let t = |s: &str| MetaValue::Text(s.to_string());
    meta.insert("producer".into(), t("snnc"));
    meta.insert("dt".into(), meta_array(Vec::new(), vec![net.dt]));
    meta.insert("steps".into(), meta_array(Vec::new(), vec![f64::from(net.steps)]));
    meta.insert("readout".into(), t(readout_name(net.readout)));
    meta.insert("seed".into(), t(&net.seed.to_string()));
    meta.insert("name".into(), t(&net.name));
    let join = |s: &BTreeSet<String>, none: &str| {
        if s.is_empty() { none.to_string() } else { s.iter().cloned().collect::<Vec<_>>().join("; ") }
    };
    meta.insert(
        "discretisation".into(),
        t(&format!(
            "forward Euler at dt; {} (\"norse\": Norse 1.1.0's cells, CubaLIF/CubaLI as LIFCell/LICell whose input \
             jumps into the current after the voltage update, IF as IAFCell adding r*x per step; \"spec\": NIR's \
             equations, x += dt * dx/dt); per node in its metadata",
            join(&b.disc, "no neurons")
        )),
    );
    meta.insert("reset".into(), t(&join(&b.resets, "none")));
    meta.insert("surrogate".into(), t(&join(&b.surrogates, "none")));
    let file = NirFile {
        version: Some(super::write::NIR_VERSION.to_string()),
        graph: NirGraph { nodes: b.nodes, edges, metadata: meta },
    };
    Ok(file)
}
