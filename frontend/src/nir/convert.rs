//! A [`NirGraph`] as a snnc [`Network`] and its weights.
//!
//! * Nested graphs are flattened: node `w_rec` of graph `lif1` is `lif1.w_rec`,
//!   and a snnc layer name is the dotted path with every character snnc
//!   does not allow in a layer name (`.` included: it separates a layer
//!   from its field in `lif1_w_rec.weight`) replaced by `_`.
//! * Input and Output nodes of nested graphs pass their values through.
//!   The top-level Input is the network input `x`, the top-level Output the
//!   network output (the last layer of the list).
//! * Cycles: a depth-first walk from the Input, following each node's
//!   edges in the file's order; an edge back to a node still on the walk's
//!   path is a `recurrent_inputs` entry (the value of the previous step).
//!   Several inputs of one node are summed (`merge: add`), as NIR does.
//! * Weights are named after the layer: `NAME.weight` and `NAME.bias`
//!   (PyTorch's layouts, which NIR shares), neuron parameters are in the
//!   network itself.

use std::collections::{BTreeMap, BTreeSet};

use super::neurons::{model, neuron, neuron_layer, pv};
use super::{Array, MetaValue, NirError, NirFile, NirGraph, NirNode, NodeKind, snnc_meta};
use crate::neuron::{InitValue, NeuronModel};
use crate::schema::{ExampleInput, Layer, Merge, Network, Pair, ParamValue, Readout};

/// Whose discretisation a NIR file's continuous-time neurons are read with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Producer {
    /// NIR's equations, forward Euler at `dt` (`x += dt · dx/dt`).
    #[default]
    Spec,
    /// Norse 1.1.0's cells (LIF from LIFBox, CubaLIF from LIF, LI from
    /// LIBox, IF from IAF), `tau = dt / tau_inv` or `1 / tau_inv`.
    Norse,
    /// snnTorch 1.0.0's β-discrete Leaky / Synaptic, reset by subtraction
    /// applied one step late, at `dt = 1e-4`.
    Snntorch,
}

impl Producer {
    pub fn name(self) -> &'static str {
        match self {
            Producer::Spec => "spec",
            Producer::Norse => "norse",
            Producer::Snntorch => "snntorch",
        }
    }

    pub fn from_name(s: &str) -> Option<Producer> {
        [Producer::Spec, Producer::Norse, Producer::Snntorch].into_iter().find(|p| p.name() == s)
    }
}

/// The conventions of an import.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NirOptions {
    /// The step in seconds; default: the file's metadata `dt`, else 1e-3
    /// (1e-4 for snnTorch).
    pub dt: Option<f64>,
    pub producer: Producer,
    /// The number of steps of the network (default 100).
    pub steps: Option<u32>,
}

/// The options resolved against the file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolved {
    pub dt: f64,
    pub producer: Producer,
}

/// One weight tensor of an imported network.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// An imported network: the network, its weights by name, and every
/// assumption the import made (for the user to read).
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    pub network: Network,
    pub weights: BTreeMap<String, WeightTensor>,
    pub assumptions: Vec<String>,
}

/// The state of one conversion.
pub(crate) struct Ctx<'a> {
    pub opts: Resolved,
    pub assumptions: &'a mut Vec<String>,
    /// Whether the IF/I convention was said already.
    pub if_noted: bool,
    /// Whether the file is snnc's own (`producer: "snnc"`, read under
    /// `spec`): its metadata is honoured ([`super::snnc_meta`]).
    pub snnc: bool,
}

impl Ctx<'_> {
    pub fn assume(&mut self, s: String) {
        if !self.assumptions.contains(&s) {
            self.assumptions.push(s);
        }
    }
}

/// A node of the flattened graph.
struct Flat {
    path: String,
    node: NirNode,
    /// Input/Output of a nested graph: passes its value through.
    pass: bool,
}

/// The longest `Delay`, in steps.
pub const MAX_DELAY_STEPS: u32 = 1000;

/// The names snnc reserves (`x` the input, `encoder`, `output`).
const RESERVED: [&str; 3] = ["x", "encoder", "output"];

/// The file's step: metadata `dt` of the top graph, if any.
fn metadata_dt(g: &NirGraph) -> Option<f64> {
    match g.metadata.get("dt") {
        Some(MetaValue::Number(a)) if a.len() == 1 => Some(a.data[0]),
        Some(MetaValue::Text(t)) => t.trim().parse().ok(),
        _ => None,
    }
}

/// Converts a NIR file to a network named `name`.
pub fn convert(file: &NirFile, name: &str, opts: &NirOptions) -> Result<Converted, NirError> {
    let mut assumptions = Vec::new();
    let dt = match (opts.dt, metadata_dt(&file.graph)) {
        (Some(dt), _) => dt,
        (None, Some(dt)) => {
            assumptions.push(format!("dt = {dt} s, from the file's metadata"));
            dt
        }
        (None, None) => {
            let dt = if opts.producer == Producer::Snntorch { 1e-4 } else { 1e-3 };
            assumptions.push(format!(
                "dt = {dt} s (the file does not say; {}), pass --nir-dt SECONDS to change it",
                if opts.producer == Producer::Snntorch { "snnTorch's exports assume 1e-4" } else { "snnc's default" }
            ));
            dt
        }
    };
    if !(dt.is_finite() && dt > 0.0) {
        return Err(NirError::new("", None, format!("dt must be a positive number of seconds, found {dt}")));
    }
    let snnc = opts.producer == Producer::Spec && snnc_meta::is_snnc(&file.graph.metadata);
    let mut cx =
        Ctx { opts: Resolved { dt, producer: opts.producer }, assumptions: &mut assumptions, if_noted: false, snnc };
    if snnc {
        cx.assume(
            "written by snnc (metadata `producer`): read with the conventions its metadata records (docs/nir.md, \
             \"Export\"); pass --nir-from norse or snntorch to ignore them"
                .into(),
        );
    } else {
        cx.assume(format!("neurons read with the `{}` convention (--nir-from)", opts.producer.name()));
    }
    let (network, weights) = build(&mut cx, &file.graph, name, dt, opts.steps)?;
    Ok(Converted { network, weights, assumptions })
}

fn child(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

/// Resolves an edge end `name` in a graph: a node of the graph, a dotted
/// path into a nested graph, or (leniently) the one node whose name starts
/// with it.
fn resolve_end(cx: &mut Ctx<'_>, g: &NirGraph, prefix: &str, name: &str) -> Result<String, NirError> {
    if g.node(name).is_some() {
        return Ok(child(prefix, name));
    }
    if let Some((head, rest)) = name.split_once('.')
        && let Some(sub) = g.node(head).and_then(|n| n.graph.as_ref())
        && sub.node(rest).is_some()
    {
        return Ok(child(prefix, name));
    }
    let near: Vec<&str> =
        g.nodes.iter().map(|(n, _)| n.as_str()).filter(|n| n.starts_with(name) || name.starts_with(*n)).collect();
    if let [one] = near.as_slice() {
        cx.assume(format!(
            "graph `{}`: an edge names `{name}`, which is no node; read as `{one}`, the only node whose name is like it",
            if prefix.is_empty() { "(top)" } else { prefix }
        ));
        return Ok(child(prefix, one));
    }
    let names: Vec<&str> = g.nodes.iter().map(|(n, _)| n.as_str()).collect();
    Err(NirError::new(
        prefix,
        Some("edges"),
        format!("an edge names `{name}`, which is no node of the graph (its nodes: {})", names.join(", ")),
    ))
}

fn flatten(
    cx: &mut Ctx<'_>,
    g: &NirGraph,
    prefix: &str,
    nodes: &mut Vec<Flat>,
    edges: &mut Vec<(String, String)>,
    graphs: &mut BTreeMap<String, (Vec<String>, Vec<String>)>,
) -> Result<(), NirError> {
    for (name, node) in &g.nodes {
        let path = child(prefix, name);
        if let Some(sub) = &node.graph {
            flatten(cx, sub, &path, nodes, edges, graphs)?;
            let ends = |k: NodeKind| -> Vec<String> {
                sub.nodes.iter().filter(|(_, n)| n.kind == k).map(|(n, _)| child(&path, n)).collect()
            };
            graphs.insert(path.clone(), (ends(NodeKind::Input), ends(NodeKind::Output)));
        } else {
            let pass = !prefix.is_empty() && matches!(node.kind, NodeKind::Input | NodeKind::Output);
            nodes.push(Flat { path, node: node.clone(), pass });
        }
    }
    for (a, b) in &g.edges {
        let a = resolve_end(cx, g, prefix, a)?;
        let b = resolve_end(cx, g, prefix, b)?;
        edges.push((a, b));
    }
    Ok(())
}

fn build(
    cx: &mut Ctx<'_>,
    g: &NirGraph,
    name: &str,
    dt: f64,
    steps: Option<u32>,
) -> Result<(Network, BTreeMap<String, WeightTensor>), NirError> {
    let mut nodes = Vec::new();
    let mut raw_edges = Vec::new();
    let mut graphs = BTreeMap::new();
    flatten(cx, g, "", &mut nodes, &mut raw_edges, &mut graphs)?;
    // An edge to or from a nested graph is one to its Input(s) / from its Output(s).
    let mut edges: Vec<(String, String)> = Vec::new();
    for (a, b) in raw_edges {
        let froms = match graphs.get(&a) {
            Some((_, outs)) if !outs.is_empty() => outs.clone(),
            Some(_) => return Err(NirError::new(&a, None, "an edge leaves this graph, which has no Output node")),
            None => vec![a],
        };
        let tos = match graphs.get(&b) {
            Some((ins, _)) if !ins.is_empty() => ins.clone(),
            Some(_) => return Err(NirError::new(&b, None, "an edge enters this graph, which has no Input node")),
            None => vec![b],
        };
        for f in &froms {
            for t in &tos {
                edges.push((f.clone(), t.clone()));
            }
        }
    }
    // Pass-through nodes: connect their sources to their targets.
    let pass: BTreeSet<String> = nodes.iter().filter(|n| n.pass).map(|n| n.path.clone()).collect();
    for _ in 0..=pass.len() {
        let Some(i) = edges.iter().position(|(a, b)| pass.contains(a) || pass.contains(b)) else { break };
        let p = if pass.contains(&edges[i].0) { edges[i].0.clone() } else { edges[i].1.clone() };
        let ins: Vec<String> = edges.iter().filter(|(_, b)| *b == p).map(|(a, _)| a.clone()).collect();
        let outs: Vec<String> = edges.iter().filter(|(a, _)| *a == p).map(|(_, b)| b.clone()).collect();
        edges.retain(|(a, b)| *a != p && *b != p);
        for a in &ins {
            for b in &outs {
                edges.push((a.clone(), b.clone()));
            }
        }
    }
    let nodes: Vec<Flat> = nodes.into_iter().filter(|n| !n.pass).collect();
    let index: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.path.as_str(), i)).collect();
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut pred: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (a, b) in &edges {
        let (Some(&i), Some(&j)) = (index.get(a.as_str()), index.get(b.as_str())) else {
            return Err(NirError::new("", Some("edges"), format!("the edge `{a}` -> `{b}` joins no nodes")));
        };
        if !succ[i].contains(&j) {
            succ[i].push(j);
            pred[j].push(i);
        }
    }
    let inputs: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].node.kind == NodeKind::Input).collect();
    let outputs: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].node.kind == NodeKind::Output).collect();
    let input = the_one(&nodes, &inputs, "Input", "input")?;
    let output = the_one(&nodes, &outputs, "Output", "output")?;
    // Depth-first from the input: back edges are recurrent.
    let mut state = vec![0u8; nodes.len()]; // 0 new, 1 on the path, 2 done
    let mut recurrent: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut stack: Vec<(usize, usize)> = vec![(input, 0)];
    state[input] = 1;
    while let Some(&mut (n, ref mut k)) = stack.last_mut() {
        if *k < succ[n].len() {
            let m = succ[n][*k];
            *k += 1;
            match state[m] {
                0 => {
                    state[m] = 1;
                    stack.push((m, 0));
                }
                1 => {
                    recurrent.insert((n, m));
                }
                _ => {}
            }
        } else {
            state[n] = 2;
            stack.pop();
        }
    }
    if cx.opts.producer == Producer::Snntorch {
        // snnTorch's recurrent neurons (`RSynaptic`, `RLeaky`) keep the
        // previous step's spikes and apply the recurrent weights to them
        // within the step: `recurrent(spk[t-1])`, bias included, zeros
        // spikes at t = 0 (so the bias acts from the first step). The delay
        // is on the edge into the weights, not on their output.
        let moved: Vec<(usize, usize)> = recurrent
            .iter()
            .copied()
            .filter(|&(w, n)| {
                matches!(nodes[w].node.kind, NodeKind::Affine | NodeKind::Linear)
                    && is_neuron(nodes[n].node.kind)
                    && pred[w] == [n]
                    && succ[w] == [n]
            })
            .collect();
        for (w, n) in moved {
            recurrent.remove(&(w, n));
            recurrent.insert((n, w));
            cx.assume(format!(
                "`{}` -> `{}` -> `{}` is read as snnTorch's recurrent neuron: `{}` applies its weights (and bias) to \
                 the previous step's output of `{}` (zeros at t = 0)",
                nodes[n].path, nodes[w].path, nodes[n].path, nodes[w].path, nodes[n].path
            ));
        }
    }
    if cx.snnc {
        // snnc's files say which edges are delayed.
        recurrent.clear();
        for (j, n) in nodes.iter().enumerate() {
            for src in snnc_meta::list(&n.node.metadata, "recurrent_inputs") {
                if let Some(&i) = index.get(src.as_str())
                    && pred[j].contains(&i)
                {
                    recurrent.insert((i, j));
                }
            }
        }
    }
    // Nodes that reach the output.
    let mut useful = vec![false; nodes.len()];
    let mut todo = vec![output];
    while let Some(n) = todo.pop() {
        if !useful[n] {
            useful[n] = true;
            todo.extend(pred[n].iter().copied());
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        if i == input || i == output {
            continue;
        }
        if state[i] == 0 {
            return Err(NirError::new(&n.path, None, "no path from the Input reaches this node; snnc cannot feed it"));
        }
        if !useful[i] {
            cx.assume(format!("`{}` leads to no Output: left out", n.path));
        }
    }
    // Layer names.
    let mut names: BTreeMap<usize, String> = BTreeMap::new();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    let mut renamed = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if i == input || i == output || !useful[i] {
            continue;
        }
        let mut s: String =
            n.path.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
        if s.is_empty() || RESERVED.contains(&s.as_str()) {
            s = format!("{s}_node");
        }
        if s.len() > crate::check::MAX_NAME_BYTES {
            s.truncate(crate::check::MAX_NAME_BYTES);
        }
        if let Some(other) = taken.get(&s) {
            return Err(NirError::new(
                &n.path,
                None,
                format!("its snnc layer name `{s}` is also that of `{other}`; rename one of the nodes"),
            ));
        }
        if s != n.path {
            renamed.push(format!("`{}` is layer `{s}`", n.path));
        }
        taken.insert(s.clone(), n.path.clone());
        names.insert(i, s);
    }
    if !renamed.is_empty() {
        cx.assume(format!(
            "layer names allow only letters, digits, `_` and `-`: {}",
            renamed.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    // The network input's shape, from the Input node and its first reader.
    let in_shape = input_shape(cx, &nodes[input], succ[input].first().map(|&j| &nodes[j]))?;
    // Layers, in the file's order, the output's source last.
    let out_src = match pred[output].as_slice() {
        [one] if *one != input => Some(*one),
        [one] if *one == input => {
            return Err(NirError::new(
                &nodes[output].path,
                None,
                "the Output reads the Input directly: nothing to run",
            ));
        }
        [] => return Err(NirError::new(&nodes[output].path, None, "nothing reaches the Output node")),
        _ => None,
    };
    let wire = |i: usize| -> (Vec<String>, Vec<String>) {
        let mut same = Vec::new();
        let mut rec = Vec::new();
        for &p in &pred[i] {
            let n = if p == input { "x".to_string() } else { names[&p].clone() };
            if recurrent.contains(&(p, i)) { rec.push(n) } else { same.push(n) }
        }
        (same, rec)
    };
    let mut layers = Vec::new();
    let mut weights = BTreeMap::new();
    let mut last = None;
    for (i, n) in nodes.iter().enumerate() {
        if !names.contains_key(&i) {
            continue;
        }
        let lname = names[&i].clone();
        let mut layer = if cx.snnc {
            let norse = snnc_meta::text(&n.node.metadata, "discretisation").as_deref() == Some("norse");
            cx.opts.producer = if norse { Producer::Norse } else { Producer::Spec };
            let mut layer = node_layer(cx, &lname, &n.path, &n.node, &mut weights);
            cx.opts.producer = Producer::Spec;
            if let Ok(l) = &mut layer {
                snnc_meta::patch(l, &n.node, &mut weights);
            }
            layer?
        } else {
            node_layer(cx, &lname, &n.path, &n.node, &mut weights)?
        };
        let (same, rec) = wire(i);
        if same.iter().chain(&rec).any(|s| s == "x") && rec.contains(&"x".to_string()) {
            return Err(NirError::new(&n.path, None, "reads the Input through a cycle"));
        }
        let (inputs, recurrent_inputs, merge) = layer.wiring_mut();
        *inputs = Some(same);
        *recurrent_inputs = rec;
        *merge = Merge::Add;
        if Some(i) == out_src {
            last = Some(layer);
        } else {
            layers.push(layer);
        }
    }
    match last {
        Some(l) => layers.push(l),
        None => {
            // Several sources of the Output: their sum.
            let (same, rec) = wire(output);
            let mut s = "output_sum".to_string();
            while taken.contains_key(&s) {
                s.push('_');
            }
            cx.assume(format!("the Output reads {} nodes: their sum is layer `{s}`", same.len() + rec.len()));
            layers.push(Layer::Identity {
                name: Some(s),
                inputs: Some(same),
                recurrent_inputs: rec,
                merge: Merge::Add,
            });
        }
    }
    if cx.snnc {
        // snnc's LIFRecurrent / LILinear, written as several nodes, are one layer again.
        let layer_of = |p: &str| index.get(p).and_then(|j| names.get(j)).cloned();
        for (i, n) in nodes.iter().enumerate() {
            if let Some(c) = names.get(&i).and_then(|l| snnc_meta::cell(&n.node, l, &layer_of))
                && !snnc_meta::fuse_cell(&mut layers, &mut weights, &c)
            {
                cx.assume(format!(
                    "`{}` says it is snnc's {} cell, but its nodes are not wired as one: read as separate layers",
                    n.path,
                    if c.w_rec.is_some() { "LIFRecurrent" } else { "LILinear" }
                ));
            }
        }
    }
    let meta = &g.metadata;
    let snnc_steps = snnc_meta::number(meta, "steps").filter(|s| cx.snnc && s.fract() == 0.0 && *s >= 1.0 && *s <= 1e9);
    let steps = steps.or(snnc_steps.map(|s| s as u32)).unwrap_or_else(|| {
        cx.assume("100 steps (NIR does not say; pass --nir-steps N)".into());
        100
    });
    let network = Network {
        version: crate::schema::FORMAT_VERSION,
        name: name.to_string(),
        steps,
        dt,
        input: in_shape,
        encoder: None,
        layers,
        readout: if cx.snnc {
            snnc_meta::text(meta, "readout").and_then(|r| snnc_meta::readout_from_name(&r)).unwrap_or_default()
        } else {
            Readout::Sequence
        },
        seed: if cx.snnc { snnc_meta::text(meta, "seed").and_then(|s| s.parse().ok()).unwrap_or(0) } else { 0 },
        example_input: ExampleInput::Pattern,
    };
    Ok((network, weights))
}

/// The per-sample input shape: the Input's `shape`, without a leading batch
/// dimension where its reader shows there is one.
fn input_shape(cx: &mut Ctx<'_>, input: &Flat, reader: Option<&Flat>) -> Result<Vec<u32>, NirError> {
    let a = &input.node.params["shape"];
    let mut dims = Vec::with_capacity(a.len());
    for &d in &a.data {
        if !(d.fract() == 0.0 && d >= 1.0 && d <= f64::from(u32::MAX)) {
            return Err(NirError::new(
                &input.path,
                Some("shape"),
                format!("a dimension must be a positive integer, found {d}"),
            ));
        }
        dims.push(d as u32);
    }
    if dims.is_empty() {
        return Err(NirError::new(
            &input.path,
            Some("shape"),
            "an empty shape: the input needs at least one dimension",
        ));
    }
    let rank = reader.and_then(|r| match r.node.kind {
        NodeKind::Affine | NodeKind::Linear => Some(1),
        NodeKind::Conv2d | NodeKind::SumPool2d | NodeKind::AvgPool2d => Some(3),
        NodeKind::Conv1d => Some(2),
        k if is_neuron(k) => r.node.params.values().map(|p| p.shape.len()).max().filter(|&r| r > 0),
        _ => None,
    });
    let conv1d = reader.is_some_and(|r| r.node.kind == NodeKind::Conv1d);
    if let Some(rank) = rank
        && dims.len() > rank
    {
        let dropped: Vec<u32> = dims.drain(..dims.len() - rank).collect();
        if dropped.iter().any(|&d| d != 1) {
            return Err(NirError::new(
                &input.path,
                Some("shape"),
                format!("the shape {:?} has {} dimensions, its reader takes {rank}", a.data, rank + dropped.len()),
            ));
        }
        cx.assume(format!("the Input shape {:?} has a batch dimension: one sample is {dims:?}", a.data));
    }
    // A Conv1d reads [C, L] as the [C, 1, L] of its Conv2d.
    if conv1d && dims.len() == 2 {
        dims.insert(1, 1);
    }
    Ok(dims)
}

fn is_neuron(k: NodeKind) -> bool {
    matches!(k, NodeKind::I | NodeKind::IF | NodeKind::LI | NodeKind::LIF | NodeKind::CubaLI | NodeKind::CubaLIF)
}

/// An integer parameter: a 0-d or 1-element array, or a pair.
fn pair(node: &NirNode, path: &str, field: &str, min: u32) -> Result<Pair, NirError> {
    let Some(a) = node.params.get(field) else {
        let found = node.strings.get(field).map_or("nothing".to_string(), |s| format!("the string `{s}`"));
        return Err(NirError::new(path, Some(field), format!("expected one or two integers, found {found}")));
    };
    let vals: Vec<f64> = match a.len() {
        1 => vec![a.data[0]; 2],
        2 => a.data.clone(),
        n => return Err(NirError::new(path, Some(field), format!("expected one or two integers, found {n} values"))),
    };
    let mut out = [0u32; 2];
    for (o, v) in out.iter_mut().zip(vals) {
        if !(v.fract() == 0.0 && v >= f64::from(min) && v <= 65535.0) {
            return Err(NirError::new(path, Some(field), format!("expected an integer of at least {min}, found {v}")));
        }
        *o = v as u32;
    }
    Ok(Pair(out))
}

fn matrix(node: &NirNode, path: &str) -> Result<(usize, usize), NirError> {
    let w = &node.params["weight"];
    match w.shape.as_slice() {
        [o, i] if *o > 0 && *i > 0 => Ok((*o, *i)),
        s => Err(NirError::new(path, Some("weight"), format!("expected a matrix [out, in], found the shape {s:?}"))),
    }
}

fn finite(a: &Array, path: &str, field: &str) -> Result<(), NirError> {
    match a.data.iter().find(|x| !x.is_finite()) {
        Some(bad) => Err(NirError::new(path, Some(field), format!("must be finite, found {bad}"))),
        None => Ok(()),
    }
}

fn weight(weights: &mut BTreeMap<String, WeightTensor>, name: String, a: &Array, shape: Vec<usize>) {
    weights.insert(name, WeightTensor { shape, data: a.data.clone() });
}

/// The stateless one-line model `y = e` (output `y`).
fn expression(params: Vec<(&str, ParamValue)>, e: &str) -> NeuronModel {
    let update = format!("y = {e}");
    model(params, &[("y", InitValue::Number(0.0))], &[&update], None, &[], Some("y"))
}

pub(crate) fn node_layer(
    cx: &mut Ctx<'_>,
    name: &str,
    path: &str,
    node: &NirNode,
    weights: &mut BTreeMap<String, WeightTensor>,
) -> Result<Layer, NirError> {
    for (f, a) in &node.params {
        finite(a, path, f)?;
    }
    let nm = Some(name.to_string());
    let bare = |layer: Layer| Ok(layer);
    match node.kind {
        NodeKind::Affine | NodeKind::Linear => {
            let (o, i) = matrix(node, path)?;
            weight(weights, format!("{name}.weight"), &node.params["weight"], vec![o, i]);
            let bias = node.kind == NodeKind::Affine;
            if bias {
                let b = &node.params["bias"];
                if b.len() != o && b.len() != 1 {
                    return Err(NirError::new(path, Some("bias"), format!("expected {o} values, found {}", b.len())));
                }
                let data = if b.len() == 1 { vec![b.data[0]; o] } else { b.data.clone() };
                weights.insert(format!("{name}.bias"), WeightTensor { shape: vec![o], data });
            }
            bare(Layer::Linear {
                name: nm,
                input: Some(i as u32),
                out: o as u32,
                bias,
                input_density: None,
                plasticity: None,
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Merge::Add,
            })
        }
        NodeKind::Conv2d => {
            let w = &node.params["weight"];
            let [o, ig, kh, kw] = match w.shape.as_slice() {
                [o, ig, kh, kw] if [*o, *ig, *kh, *kw].iter().all(|&d| d > 0) => [*o, *ig, *kh, *kw],
                s => {
                    return Err(NirError::new(
                        path,
                        Some("weight"),
                        format!("expected [out_channels, in_channels / groups, kh, kw], found the shape {s:?}"),
                    ));
                }
            };
            let stride = pair(node, path, "stride", 1)?;
            let dilation = pair(node, path, "dilation", 1)?;
            let groups = pair(node, path, "groups", 1)?.h();
            if !o.is_multiple_of(groups as usize) {
                return Err(NirError::new(
                    path,
                    Some("groups"),
                    format!("{groups} does not divide {o} output channels"),
                ));
            }
            let padding = match node.strings.get("padding").map(String::as_str) {
                Some("valid") => Pair([0, 0]),
                Some("same") => {
                    if !stride.is_one() {
                        return Err(NirError::new(path, Some("padding"), "`same` padding needs stride 1"));
                    }
                    let half = |k: usize, d: u32| -> Result<u32, NirError> {
                        let span = d as usize * (k - 1);
                        if !span.is_multiple_of(2) {
                            return Err(NirError::new(
                                path,
                                Some("padding"),
                                "`same` padding of an even kernel pads one side more; snnc pads both sides equally",
                            ));
                        }
                        Ok((span / 2) as u32)
                    };
                    Pair([half(kh, dilation.h())?, half(kw, dilation.w())?])
                }
                Some(other) => {
                    return Err(NirError::new(
                        path,
                        Some("padding"),
                        format!("`{other}`: expected `same`, `valid` or integers"),
                    ));
                }
                None => pair(node, path, "padding", 0)?,
            };
            weight(weights, format!("{name}.weight"), w, vec![o, ig, kh, kw]);
            let bias = match node.params.get("bias") {
                Some(b) if b.len() == o => {
                    weight(weights, format!("{name}.bias"), b, vec![o]);
                    true
                }
                Some(b) if b.len() == 1 => {
                    weights.insert(format!("{name}.bias"), WeightTensor { shape: vec![o], data: vec![b.data[0]; o] });
                    true
                }
                Some(b) => {
                    return Err(NirError::new(path, Some("bias"), format!("expected {o} values, found {}", b.len())));
                }
                None => false,
            };
            bare(Layer::Conv2d {
                name: nm,
                in_channels: Some((ig * groups as usize) as u32),
                out_channels: o as u32,
                kernel_size: Pair([kh as u32, kw as u32]),
                stride,
                padding,
                dilation,
                groups,
                bias,
                input_density: None,
                plasticity: None,
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Merge::Add,
            })
        }
        NodeKind::SumPool2d | NodeKind::AvgPool2d => {
            let kernel_size = pair(node, path, "kernel_size", 1)?;
            let stride = if node.params.contains_key("stride") { Some(pair(node, path, "stride", 1)?) } else { None };
            let padding = pair(node, path, "padding", 0)?;
            bare(if node.kind == NodeKind::SumPool2d {
                Layer::SumPool2d {
                    name: nm,
                    kernel_size,
                    stride,
                    padding,
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Merge::Add,
                }
            } else {
                Layer::AvgPool2d {
                    name: nm,
                    kernel_size,
                    stride,
                    padding,
                    count_include_pad: true,
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Merge::Add,
                }
            })
        }
        NodeKind::Flatten => {
            let start = node.params["start_dim"].data.first().copied().unwrap_or(1.0);
            let end = node.params["end_dim"].data.first().copied().unwrap_or(-1.0);
            let rank = node.params.get("input_type").map(|a| a.len());
            let last = rank.map_or(-1.0, |r| r as f64 - 1.0);
            if !(start == 0.0 || start == 1.0) || !(end == -1.0 || end == last) {
                return Err(NirError::new(
                    path,
                    Some("start_dim"),
                    format!(
                        "Flatten from dim {start} to {end}: snnc flattens a whole sample (start_dim 0, end_dim -1 \
                         over the sample's dims)"
                    ),
                ));
            }
            if start == 1.0 && rank.is_none_or(|r| r > 1) {
                cx.assume(format!(
                    "`{path}`: Flatten(start_dim=1) read as torch's, whose dim 0 is the batch: the whole sample is flattened"
                ));
            }
            bare(Layer::Flatten { name: nm, inputs: None, recurrent_inputs: Vec::new(), merge: Merge::Add })
        }
        NodeKind::Scale => {
            let s = &node.params["scale"];
            match pv(s) {
                ParamValue::Scalar(f) => bare(Layer::Scale {
                    name: nm,
                    factor: f,
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Merge::Add,
                }),
                p => bare(neuron(name, expression(vec![("s", p)], "s * x"))),
            }
        }
        NodeKind::Threshold => {
            let t = pv(&node.params["threshold"]);
            bare(neuron(name, expression(vec![("theta", t)], "spike(x - theta)")))
        }
        NodeKind::Delay => {
            let d = &node.params["delay"];
            let first = d.data.first().copied().unwrap_or(0.0);
            if !d.all(first) {
                return Err(NirError::new(
                    path,
                    Some("delay"),
                    "per-neuron delays that differ are not supported yet (snnc delays a whole layer by whole steps)",
                ));
            }
            let steps = first / cx.opts.dt;
            let k = steps.round();
            if !(0.0..=f64::from(MAX_DELAY_STEPS)).contains(&k) {
                return Err(NirError::new(
                    path,
                    Some("delay"),
                    format!(
                        "{first} s is {steps} steps of {} s: snnc delays by 0 to {MAX_DELAY_STEPS} steps",
                        cx.opts.dt
                    ),
                ));
            }
            if (steps - k).abs() > 1e-6 * steps.abs().max(1.0) {
                cx.assume(format!("`{path}`: a delay of {first} s is {steps} steps: rounded to {k}"));
            }
            let k = k as usize;
            if k == 0 {
                return bare(Layer::Identity {
                    name: nm,
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Merge::Add,
                });
            }
            // A shift register: y = s_k, s_j = s_(j-1), s_1 = x.
            let mut update = vec![format!("y = s{k}")];
            update.extend((2..=k).rev().map(|j| format!("s{j} = s{}", j - 1)));
            update.push("s1 = x".into());
            let names: Vec<String> = (1..=k).map(|j| format!("s{j}")).collect();
            let state: Vec<(&str, InitValue)> = names.iter().map(|n| (n.as_str(), InitValue::Number(0.0))).collect();
            let update: Vec<&str> = update.iter().map(String::as_str).collect();
            let shift = model(Vec::new(), &state, &update, None, &[], Some("y"));
            bare(neuron(name, shift))
        }
        NodeKind::Conv1d => {
            cx.assume(format!(
                "`{path}`: Conv1d is a Conv2d over [C, 1, L] (kernel height 1): its values are [C, 1, L]"
            ));
            let as_2d = conv1d_as_conv2d(node, path)?;
            node_layer(cx, name, path, &as_2d, weights)
        }
        k if is_neuron(k) => neuron_layer(cx, name, path, node),
        k => Err(NirError::new(path, None, format!("a {} node cannot be a layer here", k.name()))),
    }
}

/// A `Conv1d` (`weight` `[O, C/groups, K]`, integer or `"same"`/`"valid"`
/// padding, stride, dilation) as the `Conv2d` over `[C, 1, L]` that
/// computes the same sums in the same order: kernel `(1, K)`, stride `(1,
/// s)`, padding `(0, p)`, dilation `(1, d)`.
fn conv1d_as_conv2d(node: &NirNode, path: &str) -> Result<NirNode, NirError> {
    let mut n = node.clone();
    n.kind = NodeKind::Conv2d;
    let w = &node.params["weight"];
    let [o, ig, k] = match w.shape.as_slice() {
        [o, ig, k] if [*o, *ig, *k].iter().all(|&d| d > 0) => [*o, *ig, *k],
        s => {
            return Err(NirError::new(
                path,
                Some("weight"),
                format!("expected [out_channels, in_channels / groups, kernel], found the shape {s:?}"),
            ));
        }
    };
    n.params.insert("weight".into(), Array { shape: vec![o, ig, 1, k], data: w.data.clone(), stored: w.stored });
    for (field, height) in [("stride", 1.0), ("dilation", 1.0), ("padding", 0.0)] {
        if let Some(a) = node.params.get(field) {
            if a.len() != 1 {
                return Err(NirError::new(
                    path,
                    Some(field),
                    format!("expected one integer, found {} values", a.len()),
                ));
            }
            n.params.insert(field.into(), Array { shape: vec![2], data: vec![height, a.data[0]], stored: a.stored });
        }
    }
    Ok(n)
}

/// The one node of `found` (the graph's `kind` nodes), or an error
/// naming them: snnc networks have one `what`.
fn the_one(nodes: &[Flat], found: &[usize], kind: &str, what: &str) -> Result<usize, NirError> {
    match found {
        [one] => Ok(*one),
        [] => Err(NirError::new("", None, format!("the graph has no {kind} node"))),
        _ => {
            let names: Vec<&str> = found.iter().map(|&i| nodes[i].path.as_str()).collect();
            Err(NirError::new(
                "",
                None,
                format!(
                    "the graph has {} {kind} nodes ({}); snnc networks have one {what}",
                    names.len(),
                    names.join(", ")
                ),
            ))
        }
    }
}
