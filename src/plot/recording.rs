//! Recordings of one run and the figure that shows them.
//!
//! A recording is what `snnc run --record` writes: a JSON object of named
//! tensors (`NAME.z` spikes, `NAME.v` voltages, ... `[T, B, ...]`, the
//! outputs `output` and `readout`) plus the entry [`META_KEY`], which
//! describes the network ([`Meta`]) so that a recording can be drawn
//! without the network file, and checked against one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use snnc_frontend::{Encoder, Layer};
use snnc_runtime::Tensor;

use super::draw::{Body, Figure, Line, Note, PALETTE, Panel, RASTER, Stroke, THRESHOLD, num, padded_range};
use crate::driver::{Compiled, Error, RunOutput};

/// The key of the metadata entry in a recording.
pub const META_KEY: &str = "__meta__";

/// The most neurons a raster shows; larger layers show every k-th neuron.
pub const MAX_RASTER_NEURONS: usize = 512;

/// The most traces one voltage or readout panel shows.
pub const MAX_TRACES: usize = 20;

/// How many neurons a voltage panel shows when `--neurons` doesn't say.
const DEFAULT_TRACES: usize = 3;

/// What a recording was recorded from: the `__meta__` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub network: String,
    pub steps: u32,
    /// Seconds per step.
    pub dt: f64,
    pub encoder: Option<EncoderMeta>,
    pub layers: Vec<LayerMeta>,
    /// The readout, as written in RON (`MaxLogSoftmax`, `Sequence`, ...).
    pub readout: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderMeta {
    pub kind: String,
    /// The shape of one sample's spikes.
    pub shape: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub name: String,
    pub kind: String,
    /// The output shape of one sample.
    pub shape: Vec<u32>,
    pub role: Role,
    /// The firing threshold of spiking layers.
    #[serde(default)]
    pub v_th: Option<f64>,
    /// The threshold adapts (LSNN): the recording holds it as `NAME.b`.
    #[serde(default)]
    pub adaptive_threshold: bool,
}

/// What a layer's recording holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Spiking neurons: `NAME.z` and `NAME.v`.
    Spiking,
    /// Leaky integrators: `NAME.v`.
    Integrator,
    /// Not neurons (`Linear`, `Conv2d`, ...): `NAME.out`.
    Other,
}

impl LayerMeta {
    pub fn neurons(&self) -> usize {
        self.shape.iter().map(|&d| d as usize).product()
    }
}

impl Meta {
    /// The metadata of a compiled network.
    pub fn of(c: &Compiled) -> Meta {
        let net = &c.network;
        let mut summaries = c.layers.iter();
        // Every encoder has a summary; a Direct encoder records no spikes
        // (the first layer reads the input itself), so it has no panel.
        let encoder_shape = net.encoder.as_ref().map(|_| summaries.next());
        let encoder = net.encoder.as_ref().filter(|e| !matches!(e, Encoder::Direct {})).map(|e| EncoderMeta {
            kind: e.kind().to_string(),
            shape: encoder_shape.flatten().map_or_else(|| net.input.clone(), |s| s.shape.clone()),
        });
        let layers = net
            .layers
            .iter()
            .zip(summaries)
            .map(|(layer, s)| {
                let (role, v_th, adaptive_threshold) = match layer {
                    Layer::LIF { p, .. } | Layer::LIFRecurrent { p, .. } => (Role::Spiking, p.v_th.scalar(), false),
                    Layer::LSNN { p, .. } | Layer::LSNNRecurrent { p, .. } => (Role::Spiking, p.v_th.scalar(), true),
                    Layer::LIFBox { p, .. } => (Role::Spiking, p.v_th.scalar(), false),
                    Layer::LIFAdEx { p, .. } => (Role::Spiking, p.v_th.scalar(), false),
                    Layer::IAF { p, .. } => (Role::Spiking, p.v_th.scalar(), false),
                    Layer::LIFEx { p, .. } => (Role::Spiking, p.v_th.scalar(), false),
                    Layer::LIFRefrac { p, .. } => (Role::Spiking, p.v_th.scalar(), false),
                    Layer::LIFAdExRefrac { p, .. } => (Role::Spiking, p.v_th.scalar(), false),
                    Layer::CobaLIF { p, .. } => (Role::Spiking, p.v_thresh.scalar(), false),
                    Layer::Izhikevich { p, .. } => (Role::Spiking, Some(p.v_th.unwrap_or(30.0)), false),
                    Layer::Neuron { model, .. } if model.spike.is_some() => {
                        // A threshold line where the model names one `v_th`.
                        let v_th = model
                            .params
                            .get("v_th")
                            .and_then(|p| p.scalar())
                            .or_else(|| model.constants.get("v_th").copied());
                        (Role::Spiking, v_th, false)
                    }
                    Layer::Neuron { .. } | Layer::LIBox { .. } => (Role::Integrator, None, false),
                    Layer::LI { .. } | Layer::LILinear { .. } => (Role::Integrator, None, false),
                    _ => (Role::Other, None, false),
                };
                LayerMeta {
                    name: s.name.clone(),
                    kind: s.kind.to_string(),
                    shape: s.shape.clone(),
                    role,
                    v_th,
                    adaptive_threshold,
                }
            })
            .collect();
        Meta {
            network: net.name.clone(),
            steps: net.steps,
            dt: net.dt,
            encoder,
            layers,
            readout: format!("{:?}", net.readout),
        }
    }

    /// `` `tutorial` (32 steps of 1 ms; lif1 LIFRecurrent [100], ...) ``, for messages.
    fn describe(&self) -> String {
        let mut parts: Vec<String> = self.encoder.iter().map(|e| format!("encoder {}", e.kind)).collect();
        parts.extend(self.layers.iter().map(|l| format!("{} {} {:?}", l.name, l.kind, l.shape)));
        format!("`{}` ({} steps of {} ms; {})", self.network, self.steps, num(self.dt * 1e3), parts.join(", "))
    }

    /// The layer whose voltages are the network's output, shown in the
    /// readout panel: the last layer, when it is a leaky integrator.
    fn readout_layer(&self) -> Option<&LayerMeta> {
        self.layers.last().filter(|l| l.role == Role::Integrator)
    }

    /// The layers `--neurons` may name: those with voltages.
    fn voltage_layers(&self) -> impl Iterator<Item = &LayerMeta> {
        self.layers.iter().filter(|l| l.role != Role::Other)
    }
}

/// The `__meta__` entry `snnc run --record` writes for a network.
pub fn recording_metadata(c: &Compiled) -> serde_json::Value {
    serde_json::to_value(Meta::of(c)).expect("the metadata is plain data")
}

/// A recording: metadata, tensors, and the batch size they hold.
#[derive(Debug)]
pub struct Recording {
    pub meta: Meta,
    pub tensors: BTreeMap<String, Tensor>,
    pub batch: usize,
}

impl Recording {
    /// The recording of a run that just happened.
    pub fn from_run(c: &Compiled, res: &RunOutput) -> Result<Recording, Error> {
        let tensors: BTreeMap<String, Tensor> =
            res.traces.iter().chain(res.outputs.iter()).map(|(k, v)| (k.clone(), v.clone())).collect();
        let meta = Meta::of(c);
        let batch = check_tensors(&meta, &tensors, "the run").map_err(|e| match e {
            Error::User(m) => Error::Internal(m),
            e => e,
        })?;
        Ok(Recording { meta, tensors, batch })
    }

    /// Reads a recording file. With `net` (the network and its file), the
    /// recording must have been recorded from that network.
    pub fn read(path: &Path, net: Option<(&Compiled, &Path)>) -> Result<Recording, Error> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::User(format!("{file}: cannot read the recording: {e}")))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::User(format!("{file}:{}:{}: not valid JSON: {e}", e.line(), e.column())))?;
        let serde_json::Value::Object(obj) = value else {
            return Err(Error::User(format!(
                "{file}: not a recording; expected the JSON object of named tensors that `snnc run --record` writes"
            )));
        };
        let meta = match obj.get(META_KEY) {
            Some(m) => Some(Meta::deserialize(m).map_err(|e| {
                Error::User(format!("{file}: the `{META_KEY}` entry is not snnc's recording metadata: {e}"))
            })?),
            None => None,
        };
        let expected = net.map(|(c, net_path)| (Meta::of(c), net_path));
        let meta = match (meta, expected) {
            (Some(m), Some((e, net_path))) if m != e => {
                return Err(Error::User(format!(
                    "{file} is a recording of another network: of {}, not of {} from {}; record it again with `snnc run {} --record {file}`",
                    m.describe(),
                    e.describe(),
                    net_path.display(),
                    net_path.display()
                )));
            }
            (Some(m), _) => m,
            (None, Some((e, _))) => e,
            (None, None) => {
                return Err(Error::User(format!(
                    "{file}: the recording has no `{META_KEY}` entry to say which network it is of; \
                     pass the network with --net NET.ron, or record it again with this snnc"
                )));
            }
        };
        let mut tensors = BTreeMap::new();
        for (name, v) in obj.iter().filter(|(k, _)| *k != META_KEY) {
            let t = Tensor::from_json(v).map_err(|e| Error::User(format!("{file}: `{name}`: {e}")))?;
            tensors.insert(name.clone(), t);
        }
        let whose = match net {
            Some((_, p)) => format!("network {} from {}", meta.describe(), p.display()),
            None => format!("network {} (its `{META_KEY}`)", meta.describe()),
        };
        let batch = check_tensors(&meta, &tensors, &whose).map_err(|e| match e {
            Error::User(m) => Error::User(format!("{file}: {m}")),
            e => e,
        })?;
        Ok(Recording { meta, tensors, batch })
    }
}

/// Checks that every tensor the figure needs is there with the shape the
/// metadata implies, and returns the batch size.
fn check_tensors(meta: &Meta, tensors: &BTreeMap<String, Tensor>, whose: &str) -> Result<usize, Error> {
    let mut needed: Vec<(String, &[u32])> = Vec::new();
    if let Some(e) = &meta.encoder {
        needed.push(("encoder.z".into(), &e.shape));
    }
    for l in &meta.layers {
        match l.role {
            Role::Spiking => {
                needed.push((format!("{}.z", l.name), &l.shape));
                needed.push((format!("{}.v", l.name), &l.shape));
                if l.adaptive_threshold {
                    needed.push((format!("{}.b", l.name), &l.shape));
                }
            }
            Role::Integrator => needed.push((format!("{}.v", l.name), &l.shape)),
            Role::Other => {}
        }
    }
    if let Some(last) = meta.layers.last() {
        needed.push(("output".into(), &last.shape));
    }
    let steps = meta.steps as usize;
    let mut batch = None;
    for (name, shape) in &needed {
        let Some(t) = tensors.get(name) else {
            return Err(Error::User(format!(
                "no `{name}` in the recording, though {whose} records it; the recording is incomplete or of another network"
            )));
        };
        let b = *batch.get_or_insert_with(|| t.shape.get(1).copied().unwrap_or(0));
        let mut expected = vec![steps, b];
        expected.extend(shape.iter().map(|&d| d as usize));
        if t.shape != expected || b == 0 {
            return Err(Error::User(format!(
                "`{name}` has shape {:?}, but {whose} records {:?} ([steps, batch, ...]); the recording is of another network",
                t.shape, expected
            )));
        }
    }
    Ok(batch.unwrap_or(1))
}

/// The neurons `--neurons` chose: for every layer not named, `all`.
#[derive(Debug, Default)]
pub(crate) struct NeuronChoice {
    all: Option<Vec<usize>>,
    layers: BTreeMap<String, Vec<usize>>,
}

/// Parses `--neurons` values (`0,3,7` for every hidden neuron layer, or
/// `LAYER:0,3,7`) and checks them against the network.
pub(crate) fn choose_neurons(specs: &[String], meta: &Meta) -> Result<NeuronChoice, Error> {
    let mut all: Option<BTreeSet<usize>> = None;
    let mut layers: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let usage = "expected neuron indices like `0,3,7`, or a layer and indices like `lif1:0,3,7`";
    let readout = meta.readout_layer().map(|l| l.name.as_str());
    for spec in specs {
        let (layer, list) = match spec.rsplit_once(':') {
            Some((l, list)) => (Some(l.trim()), list),
            None => (None, spec.as_str()),
        };
        let mut indices = BTreeSet::new();
        for part in list.split(',') {
            let i = part.trim().parse::<usize>().map_err(|_| {
                Error::User(format!("--neurons {spec}: `{}` is not a neuron index; {usage}", part.trim()))
            })?;
            indices.insert(i);
        }
        let check = |l: &LayerMeta, what: &str| -> Result<(), Error> {
            let n = l.neurons();
            match indices.iter().find(|&&i| i >= n) {
                Some(i) => Err(Error::User(format!(
                    "--neurons {spec}: there is no neuron {i} in {what}layer `{}` ({}, {n} neurons: 0 to {})",
                    l.name,
                    l.kind,
                    n.saturating_sub(1)
                ))),
                None => Ok(()),
            }
        };
        match layer {
            Some(name) => {
                let Some(l) = meta.voltage_layers().find(|l| l.name == name) else {
                    let names: Vec<&str> = meta.voltage_layers().map(|l| l.name.as_str()).collect();
                    return Err(Error::User(format!(
                        "--neurons {spec}: network `{}` has no neuron layer `{name}`; its neuron layers: {}",
                        meta.network,
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    )));
                };
                check(l, "")?;
                layers.entry(name.to_string()).or_default().extend(&indices);
            }
            None => {
                let hidden: Vec<&LayerMeta> =
                    meta.voltage_layers().filter(|l| Some(l.name.as_str()) != readout).collect();
                if hidden.is_empty() {
                    return Err(Error::User(format!(
                        "--neurons {spec}: network `{}` has no hidden neuron layer; name the layer, e.g. --neurons {}:{list}",
                        meta.network,
                        readout.unwrap_or("LAYER")
                    )));
                }
                for l in hidden {
                    check(l, "")?;
                }
                all.get_or_insert_with(BTreeSet::new).extend(&indices);
            }
        }
    }
    let too_many = |n: usize| n > MAX_TRACES;
    if all.as_ref().is_some_and(|s| too_many(s.len())) || layers.values().any(|s| too_many(s.len())) {
        return Err(Error::User(format!("--neurons: at most {MAX_TRACES} neurons per panel")));
    }
    Ok(NeuronChoice {
        all: all.map(|s| s.into_iter().collect()),
        layers: layers.into_iter().map(|(k, s)| (k, s.into_iter().collect())).collect(),
    })
}

/// One sample's values of a `[T, B, ...]` tensor.
struct Sample<'a> {
    t: &'a Tensor,
    batch: usize,
    sample: usize,
    per_step: usize,
}

impl<'a> Sample<'a> {
    fn new(t: &'a Tensor, batch: usize, sample: usize) -> Sample<'a> {
        let per_step = t.shape.iter().skip(2).product();
        Sample { t, batch, sample, per_step }
    }

    fn steps(&self) -> usize {
        self.t.shape[0]
    }

    fn at(&self, step: usize, neuron: usize) -> f64 {
        self.t.data[(step * self.batch + self.sample) * self.per_step + neuron]
    }

    fn trace(&self, neuron: usize) -> Vec<(f64, f64)> {
        (0..self.steps()).map(|s| (s as f64, self.at(s, neuron))).collect()
    }

    /// Spikes per neuron.
    fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.per_step];
        for s in 0..self.steps() {
            for (n, c) in counts.iter_mut().enumerate() {
                if self.at(s, n) != 0.0 {
                    *c += 1;
                }
            }
        }
        counts
    }
}

/// `neuron 1234 (2, 3, 10)` for a multi-dimensional layer, `neuron 12` otherwise.
fn neuron_name(shape: &[u32], n: usize) -> String {
    if shape.len() <= 1 {
        return format!("neuron {n}");
    }
    let mut rest = n;
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        idx[i] = rest % d as usize;
        rest /= d as usize;
    }
    let idx: Vec<String> = idx.iter().map(|i| i.to_string()).collect();
    format!("neuron {n} ({})", idx.join(","))
}

/// `2nd`, `3rd`, `11th`, `23rd`.
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Builds the figure of one sample of a recording.
pub(crate) fn figure(rec: &Recording, choice: &NeuronChoice, sample: Option<usize>) -> Result<Figure, Error> {
    let meta = &rec.meta;
    let batch = rec.batch;
    let sample = sample.unwrap_or(0);
    if sample >= batch {
        return Err(Error::User(format!(
            "--sample {sample}: the recording holds {} (0 to {})",
            plural(batch, "sample", "samples"),
            batch - 1
        )));
    }
    let of_sample = if batch > 1 { format!(" of sample {sample}") } else { String::new() };
    let dt_ms = meta.dt * 1e3;
    let get = |name: &str| -> Sample<'_> { Sample::new(&rec.tensors[name], batch, sample) };
    let mut panels = Vec::new();
    if let Some(e) = &meta.encoder {
        let z = get("encoder.z");
        panels.push(raster(
            "input encoding".into(),
            format!("input encoding: encoder.z ({}){of_sample}", e.kind),
            &z,
            dt_ms,
        ));
    }
    let readout = meta.readout_layer().map(|l| l.name.clone());
    for (index, l) in meta.layers.iter().enumerate() {
        let is_last = index + 1 == meta.layers.len();
        match l.role {
            Role::Spiking => {
                let z = get(&format!("{}.z", l.name));
                panels.push(raster(
                    format!("{} spikes", l.name),
                    format!("{} ({}): spikes{of_sample}", l.name, l.kind),
                    &z,
                    dt_ms,
                ));
                let chosen = choice.layers.get(&l.name).or(choice.all.as_ref());
                panels.push(voltages(rec, l, chosen, sample, &of_sample));
            }
            Role::Integrator if readout.as_deref() == Some(l.name.as_str()) => {
                panels.push(readout_panel(rec, l, choice.layers.get(&l.name), sample, &of_sample));
            }
            Role::Integrator => {
                let chosen = choice.layers.get(&l.name).or(choice.all.as_ref());
                panels.push(voltages(rec, l, chosen, sample, &of_sample));
            }
            Role::Other if is_last => panels.push(readout_panel(rec, l, None, sample, &of_sample)),
            Role::Other => {}
        }
    }
    let total_ms = dt_ms * f64::from(meta.steps);
    let title = format!(
        "{}: {} × {} ms = {} ms{}",
        meta.network,
        plural(meta.steps as usize, "step", "steps"),
        num(dt_ms),
        num(total_ms),
        if batch > 1 { format!(", sample {sample} of {batch}") } else { String::new() }
    );
    Ok(Figure {
        title,
        x_desc: format!("time step (1 step = dt = {} ms)", num(dt_ms)),
        x_range: (-0.5, f64::from(meta.steps) - 0.5),
        top_axis: Some(("time (ms)".into(), dt_ms)),
        panels,
    })
}

fn raster(label: String, title: String, z: &Sample<'_>, dt_ms: f64) -> Panel {
    let n = z.per_step;
    let stride = n.div_ceil(MAX_RASTER_NEURONS).max(1);
    let counts = z.counts();
    let total: usize = counts.iter().sum();
    let active = counts.iter().filter(|&&c| c > 0).count();
    let mut marks = Vec::new();
    for s in 0..z.steps() {
        for k in (0..n).step_by(stride) {
            if z.at(s, k) != 0.0 {
                marks.push((s, k));
            }
        }
    }
    let seconds = z.steps() as f64 * dt_ms * 1e-3;
    let rate = if n > 0 && seconds > 0.0 { total as f64 / (n as f64 * seconds) } else { 0.0 };
    let mut notes = vec![
        Note::key(plural(total, "spike", "spikes"), RASTER, Stroke::Solid),
        Note::text(format!("{active} of {n} neurons spiked")),
        Note::text(format!("mean rate {} Hz", num((rate * 10.0).round() / 10.0))),
    ];
    let title = if stride > 1 {
        let shown = n.div_ceil(stride);
        notes.push(Note::text(format!("every {} neuron shown", ordinal(stride))));
        notes.push(Note::text(format!("({shown} of {n}, {} marks)", marks.len())));
        format!("{title}, every {} of {n} neurons", ordinal(stride))
    } else {
        format!("{title}, {n} neurons")
    };
    Panel { label, title, y_desc: "neuron".into(), body: Body::Raster { neurons: n, marks }, notes, height: 200 }
}

/// The default neurons of a voltage panel: the most active ones, then those
/// that came closest to spiking, in index order.
fn default_neurons(v: &Sample<'_>, z: Option<&Sample<'_>>) -> Vec<usize> {
    let counts = z.map_or_else(|| vec![0; v.per_step], |z| z.counts());
    let peak: Vec<f64> =
        (0..v.per_step).map(|n| (0..v.steps()).map(|s| v.at(s, n)).fold(f64::NEG_INFINITY, f64::max)).collect();
    let mut order: Vec<usize> = (0..v.per_step).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(peak[b].total_cmp(&peak[a])).then(a.cmp(&b)));
    order.truncate(DEFAULT_TRACES);
    order.sort_unstable();
    order
}

fn voltages(rec: &Recording, l: &LayerMeta, chosen: Option<&Vec<usize>>, sample: usize, of_sample: &str) -> Panel {
    let v = Sample::new(&rec.tensors[&format!("{}.v", l.name)], rec.batch, sample);
    let z_name = format!("{}.z", l.name);
    let z = (l.role == Role::Spiking).then(|| Sample::new(&rec.tensors[&z_name], rec.batch, sample));
    let b_name = format!("{}.b", l.name);
    let b = l.adaptive_threshold.then(|| Sample::new(&rec.tensors[&b_name], rec.batch, sample));
    let (neurons, by_default) = match chosen {
        Some(c) => (c.clone(), false),
        None => (default_neurons(&v, z.as_ref()), true),
    };
    let counts = z.as_ref().map(|z| z.counts());
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    for (j, &n) in neurons.iter().enumerate() {
        let color = PALETTE[j % PALETTE.len()];
        lines.push(Line { points: v.trace(n), color, stroke: Stroke::Solid });
        if let Some(b) = &b {
            lines.push(Line { points: b.trace(n), color, stroke: Stroke::Dashed });
        }
        let text = match &counts {
            Some(c) => format!("{}: {}", neuron_name(&l.shape, n), plural(c[n], "spike", "spikes")),
            None => neuron_name(&l.shape, n),
        };
        notes.push(Note::key(text, color, Stroke::Solid));
    }
    let steps = v.steps() as f64;
    match (l.v_th, l.adaptive_threshold) {
        (_, true) => notes.push(Note::key("threshold b (adaptive)", THRESHOLD, Stroke::Dashed)),
        (Some(th), false) => {
            lines.push(Line { points: vec![(-0.5, th), (steps - 0.5, th)], color: THRESHOLD, stroke: Stroke::Dashed });
            notes.push(Note::key(format!("threshold v_th = {}", num(th)), THRESHOLD, Stroke::Dashed));
        }
        (None, false) => {}
    }
    if by_default {
        notes.push(Note::text(if l.role == Role::Spiking { "(most active;" } else { "(largest;" }));
        notes.push(Note::text(" choose with --neurons)"));
    }
    let y_range = padded_range(lines.iter().flat_map(|line| line.points.iter().map(|p| p.1)).chain([0.0]));
    let which: Vec<String> = neurons.iter().map(|n| n.to_string()).collect();
    Panel {
        label: format!("{} voltage", l.name),
        title: format!(
            "{} ({}): membrane voltage v of {} {}{of_sample}",
            l.name,
            l.kind,
            if neurons.len() == 1 { "neuron" } else { "neurons" },
            which.join(", ")
        ),
        y_desc: "v".into(),
        body: Body::Lines { y_range, lines },
        notes,
        height: 170,
    }
}

/// The network's output over time: the last layer's voltages (or values,
/// when it isn't a neuron layer), one line per class.
fn readout_panel(rec: &Recording, l: &LayerMeta, chosen: Option<&Vec<usize>>, sample: usize, of_sample: &str) -> Panel {
    let out = Sample::new(&rec.tensors["output"], rec.batch, sample);
    let n = out.per_step;
    let classes: Vec<usize> = match chosen {
        Some(c) => c.clone(),
        None => (0..n.min(MAX_TRACES)).collect(),
    };
    // The class the readout picks, when it gives one score per class.
    let predicted = rec.tensors.get("readout").filter(|r| r.shape == [rec.batch, n] && n > 1).and_then(|r| {
        let row = &r.data[sample * n..(sample + 1) * n];
        row.iter().enumerate().fold(None::<(usize, f64)>, |best, (i, &v)| match best {
            Some((_, bv)) if bv >= v => best,
            _ => Some((i, v)),
        })
    });
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    let word = if n > 1 { "class" } else { "neuron" };
    for (j, &c) in classes.iter().enumerate() {
        let color = PALETTE[j % PALETTE.len()];
        lines.push(Line { points: out.trace(c), color, stroke: Stroke::Solid });
        let mark = if predicted.is_some_and(|(p, _)| p == c) { "  ← readout" } else { "" };
        notes.push(Note::key(format!("{word} {c}{mark}"), color, Stroke::Solid));
    }
    if classes.len() < n {
        notes.push(Note::text(format!("({} of {n} shown)", classes.len())));
    }
    let what = if l.role == Role::Integrator { "voltage" } else { "value" };
    let mut title = format!(
        "readout: {} ({}) {what} of {}{of_sample}",
        l.name,
        l.kind,
        if n > 1 { format!("{n} output classes") } else { "the output".into() }
    );
    if let Some((p, score)) = predicted {
        title.push_str(&format!("; {} picks class {p} ({})", rec.meta.readout, num(score)));
    }
    let y_range = padded_range(lines.iter().flat_map(|line| line.points.iter().map(|p| p.1)).chain([0.0]));
    Panel {
        label: "readout".into(),
        title,
        y_desc: if l.role == Role::Integrator { "v".into() } else { "value".into() },
        body: Body::Lines { y_range, lines },
        notes,
        height: 200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 111].iter().map(|&n| ordinal(n)).collect();
        assert_eq!(got, ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "111th"]);
    }

    #[test]
    fn neuron_names_show_the_multi_index() {
        assert_eq!(neuron_name(&[5], 3), "neuron 3");
        assert_eq!(neuron_name(&[20, 24, 24], 24 * 24 + 25), "neuron 601 (1,1,1)");
    }
}
