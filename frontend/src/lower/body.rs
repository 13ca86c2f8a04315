//! The body of the lowering: the preamble and the step loop with every
//! layer in the graph's run order (`crate::graph`), each reading its
//! merged inputs; a layer read with a one-step delay is a state written at
//! the end of the step (`docs/graphs.md`).

use snnc_ir::{Builder, Dtype, Handle, Node, Op, Shape, StateInit, Type};

use super::{LayerSummary, Lower, LowerOptions, Neurons, Res, Value, check_size, invalid};
use crate::error::{FrontendError, layer_at};
use crate::graph::{Graph, INPUT, Source};
use crate::schema::{BatchNormVariant, Encoder, Layer, Merge, Network};

/// The per-sample shape and dtype of each layer.
pub(super) type Types = Vec<Option<(Vec<u32>, Dtype)>>;

/// What [`lower_body`] built: the builder inside the step loop, after
/// every layer; the output layer's value; the summary; each layer's type.
pub(super) struct Body<'a> {
    pub(super) cx: Lower<'a>,
    pub(super) out: Value,
    pub(super) summary: Vec<LayerSummary>,
    pub(super) types: Types,
}

/// The types of the layers whose previous step is read. A layer may read
/// the previous step of a layer that runs after it (a cycle), whose shape
/// is not known yet when the reader is lowered; so the body is lowered
/// first without the delayed values not yet known (a *probe*, thrown away),
/// and again with the types it found, until they stop changing.
pub(super) fn delayed_types(
    net: &Network,
    file: &str,
    opts: &LowerOptions,
    graph: &Graph,
) -> Result<Types, FrontendError> {
    let wanted = graph.delayed();
    let mut known: Types = vec![None; net.layers.len()];
    if wanted.is_empty() {
        return Ok(known);
    }
    for _ in 0..=net.layers.len() + 1 {
        let body = lower_body(net, file, opts, graph, &known, true)?;
        let mut next: Types = vec![None; net.layers.len()];
        for &j in &wanted {
            next[j] = body.types[j].clone();
        }
        if next == known {
            break;
        }
        known = next;
    }
    if let Some(&j) = wanted.iter().find(|&&j| known[j].is_none()) {
        let layer = &net.layers[j];
        return Err(invalid(
            file,
            layer_at(j, layer),
            "the shape of this layer's output depends only on its own previous step (through recurrent_inputs), \
             so it cannot be inferred"
                .to_string(),
            Some("give the layer a same-step input too, or set the size of a layer on the cycle".into()),
        ));
    }
    Ok(known)
}

/// Lowers the preamble and every layer of the step loop, in the graph's
/// run order. `delayed` gives the types of the delayed layers. In a probe,
/// a layer whose inputs are not known, or whose lowering fails, is left out
/// (the final lowering reports the error).
pub(super) fn lower_body<'a>(
    net: &Network,
    file: &'a str,
    opts: &LowerOptions,
    graph: &Graph,
    delayed: &Types,
    probe: bool,
) -> Result<Body<'a>, FrontendError> {
    let mut summary = Vec::new();
    let mut cx = Lower {
        b: Builder::new(net.name.clone(), net.steps, net.dt, opts.float),
        file,
        dt: net.dt,
        training: opts.training,
        pre: 0,
        at: String::new(),
        neurons: Neurons::default(),
        bn_stats: Vec::new(),
        plastic: Vec::new(),
    };
    cx.b.begin_seq();
    cx.pre = cx.b.region_index().expect("just created");

    let (x_ty, static_input) = match net.encoder {
        Some(_) => (Type::new(opts.float, Shape::batched(&net.input)), true),
        None => (Type::seq(opts.float, Shape::batched(&net.input)), false),
    };
    let x_input = cx.b.input("x", x_ty);
    let x = cx.emit(Op::Input(x_input))?;
    let uniform = match (&net.encoder, opts.poisson_uniform_input) {
        (Some(Encoder::Poisson { .. } | Encoder::SignedPoisson { .. }), true) => {
            let u = cx.b.input("uniform", Type::seq(opts.float, Shape::batched(&net.input)));
            Some(cx.emit(Op::Input(u))?)
        }
        _ => None,
    };

    cx.b.begin_step();
    let mut input = Value { node: x, shape: net.input.clone(), producer: "the network input".into() };
    if static_input {
        // The encoder reads the static input directly at every step.
    } else {
        input.node = cx.emit(Op::Step(x))?;
    }
    if let Some(enc) = &net.encoder {
        input.node = cx.encoder(enc, input.node, &input.shape, uniform)?;
        if let Encoder::Population { out_features, .. } = enc {
            input.shape.push(*out_features);
            check_size(file, "encoder (Population)", "its output", &input.shape)?;
        }
        input.producer = "the encoder".into();
        summary.push(LayerSummary {
            name: "encoder".into(),
            kind: enc.kind(),
            shape: input.shape.clone(),
            inputs: vec![INPUT.into()],
        });
    }

    let n = net.layers.len();
    let names: Vec<String> = net.layers.iter().enumerate().map(|(i, l)| l.name(i)).collect();
    let mut values: Vec<Option<Value>> = (0..n).map(|_| None).collect();
    // The state and its read, per delayed layer, made by its first reader.
    let mut reads: Vec<Option<(snnc_ir::Handle<snnc_ir::StateVar>, Handle<Node>)>> = vec![None; n];
    for &i in &graph.order {
        let layer = &net.layers[i];
        let name = &names[i];
        let at = layer_at(i, layer);
        let mut ins = Vec::new();
        let mut shown = Vec::new();
        for &source in &graph.nodes[i].sources {
            let value = match source {
                Source::Input => {
                    shown.push(INPUT.to_string());
                    Some(input.clone())
                }
                Source::Layer(j) => {
                    shown.push(names[j].clone());
                    values[j].clone()
                }
                Source::Delayed(j) => {
                    shown.push(format!("{} (t-1)", names[j]));
                    match (&reads[j], &delayed[j]) {
                        (Some((_, read)), Some((shape, _))) => Some(Value {
                            node: *read,
                            shape: shape.clone(),
                            producer: format!("the previous step of layer `{}`", names[j]),
                        }),
                        (None, Some((shape, dtype))) => {
                            let state = cx.b.state(
                                format!("{}.delayed", names[j]),
                                Type::new(*dtype, Shape::batched(shape)),
                                StateInit::Fill(0.0),
                            );
                            let read = cx.emit(Op::StateRead(state))?;
                            reads[j] = Some((state, read));
                            Some(Value {
                                node: read,
                                shape: shape.clone(),
                                producer: format!("the previous step of layer `{}`", names[j]),
                            })
                        }
                        (_, None) => None,
                    }
                }
            };
            match value {
                Some(v) => ins.push(v),
                None if probe => {}
                None => {
                    return Err(invalid(file, "lowering", format!("internal error: {at}: an input is missing"), None));
                }
            }
        }
        if ins.is_empty() {
            continue; // a probe without any known input
        }
        let time_batched = cx.training && is_time_batched_bn(layer);
        let lowered = cx.merge(&at, ins, graph.nodes[i].merge).and_then(|cur| {
            let v = if time_batched {
                cx.time_batched_bn(layer, name, &at, cur, &mut values, &mut input)?
            } else {
                cx.layer(layer, name, &at, cur)?
            };
            check_size(file, &at, "its output", &v.shape)?;
            Ok(v)
        });
        let mut v = match lowered {
            Ok(v) => v,
            Err(_) if probe => continue,
            Err(e) => return Err(e),
        };
        v.producer = format!("layer `{name}` ({})", layer.kind());
        summary.push(LayerSummary { name: name.clone(), kind: layer.kind(), shape: v.shape.clone(), inputs: shown });
        values[i] = Some(v);
    }
    let types: Types = values.iter().map(|v| v.as_ref().map(|v| (v.shape.clone(), cx.b.ty(v.node).dtype))).collect();
    // The delayed layers' outputs become their states' next values.
    for (j, read) in reads.iter().enumerate() {
        let (Some((state, _)), Some(v)) = (read, &values[j]) else { continue };
        if types[j] != delayed[j] && !probe {
            return Err(invalid(
                file,
                layer_at(j, &net.layers[j]),
                format!(
                    "its output's shape depends on its own previous step (through recurrent_inputs): {:?} is read \
                     as the previous step, {:?} comes out",
                    delayed[j].as_ref().map(|t| &t.0),
                    types[j].as_ref().map(|t| &t.0)
                ),
                Some("give the layers on the cycle fixed sizes (e.g. a Linear's `out`)".into()),
            ));
        }
        if types[j] == delayed[j] {
            cx.write(*state, v.node, None)?;
        }
    }
    // STDP at the end of the step: the postsynaptic spikes are the output of
    // the one layer that reads the plastic Linear or Conv2d at the same step.
    for pl in std::mem::take(&mut cx.plastic) {
        let Some(i) = names.iter().position(|n| *n == pl.layer) else { continue };
        let readers: Vec<usize> = (0..n).filter(|&j| graph.nodes[j].sources.contains(&Source::Layer(i))).collect();
        let at = layer_at(i, &net.layers[i]);
        let post = match readers[..] {
            [j] => values[j].as_ref().map(|v| (j, v.node)),
            _ if probe => None,
            _ => {
                return Err(invalid(
                    file,
                    &at,
                    format!(
                        "a plastic layer needs exactly one layer reading it, whose spikes are the postsynaptic \
                         spikes of STDP; {} read it",
                        if readers.is_empty() {
                            "no layer does".to_string()
                        } else {
                            format!("{} layers", readers.len())
                        }
                    ),
                    Some("follow it by one spiking layer, e.g. LIF".into()),
                ));
            }
        };
        let Some((j, z_post)) = post else { continue };
        let post_ty = cx.b.ty(z_post).clone();
        let same_shape = values[j].as_ref().map(|v| &v.shape) == values[i].as_ref().map(|v| &v.shape);
        if post_ty.dtype != Dtype::Spike || !same_shape {
            if probe {
                continue;
            }
            return Err(invalid(
                file,
                &at,
                format!(
                    "a plastic layer's postsynaptic spikes come from the layer reading it, but layer `{}` ({}) \
                     gives {post_ty}, not spikes of the plastic layer's output shape",
                    names[j],
                    net.layers[j].kind()
                ),
                Some("follow it by a spiking layer (LIF, IAF, ...) that outputs its spikes".into()),
            ));
        }
        let step = super::stdp::stdp_step(
            &mut cx.b,
            &pl.layer,
            &pl.rule,
            net.dt,
            pl.connection,
            pl.w_state,
            pl.w,
            pl.z_pre,
            z_post,
        )
        .map_err(|e| invalid(file, &at, format!("internal error: {e}"), None))?;
        cx.b.name(step.t_pre_write, format!("{}.t_pre", pl.layer));
        cx.b.name(step.t_post_write, format!("{}.t_post", pl.layer));
    }
    let out = match n {
        0 => Some(input),
        _ => values[n - 1].take(),
    };
    let out = match out {
        Some(out) => out,
        // A probe that could not lower the output layer.
        None => Value { node: x, shape: Vec::new(), producer: String::new() },
    };
    Ok(Body { cx, out, summary, types })
}

impl Lower<'_> {
    /// Combines a layer's inputs (`ins`, in merge order) into the one value
    /// it reads. Spikes are summed as floats (0.0 and 1.0), as torch adds
    /// spike tensors.
    pub(super) fn merge(&mut self, at: &str, ins: Vec<Value>, merge: Merge) -> Res<Value> {
        if ins.len() == 1 {
            return Ok(ins.into_iter().next().expect("one input"));
        }
        let first = &ins[0];
        let producers = || ins.iter().map(|v| v.producer.as_str()).collect::<Vec<_>>().join(", ");
        match merge {
            Merge::Add => {
                if let Some(other) = ins.iter().find(|v| v.shape != first.shape) {
                    return Err(invalid(
                        self.file,
                        format!("{at}: merge"),
                        format!(
                            "add needs inputs of one shape, but {} gives {:?} and {} gives {:?}",
                            first.producer, first.shape, other.producer, other.shape
                        ),
                        Some("give the inputs the same shape, or use merge: concat to stack them".into()),
                    ));
                }
                let shape = first.shape.clone();
                let producer = format!("the sum of {}", producers());
                let mut acc = None;
                for v in ins {
                    let x = self.float_of(v.node)?;
                    acc = Some(match acc {
                        None => x,
                        Some(a) => self.add(a, x)?,
                    });
                }
                Ok(Value { node: acc.expect("two or more inputs"), shape, producer })
            }
            Merge::Concat => {
                let fits = |v: &Value| {
                    !v.shape.is_empty() && v.shape.len() == first.shape.len() && v.shape[1..] == first.shape[1..]
                };
                if let Some(other) = ins.iter().find(|v| !fits(v)) {
                    return Err(invalid(
                        self.file,
                        format!("{at}: merge"),
                        format!(
                            "concat stacks its inputs along the first (feature or channel) axis, so the other \
                             axes must agree, but {} gives {:?} and {} gives {:?}",
                            first.producer, first.shape, other.producer, other.shape
                        ),
                        Some("reshape the inputs (e.g. Flatten()) so they differ in the first axis only".into()),
                    ));
                }
                let total = ins.iter().map(|v| u64::from(v.shape[0])).sum::<u64>();
                let mut shape = first.shape.clone();
                shape[0] = u32::try_from(total).map_err(|_| {
                    invalid(
                        self.file,
                        format!("{at}: merge"),
                        format!("concat gives {total} features, more than 2^32 - 1"),
                        None,
                    )
                })?;
                let producer = format!("the concatenation of {}", producers());
                let spikes = ins.iter().all(|v| self.b.ty(v.node).dtype == Dtype::Spike);
                let mut args = Vec::with_capacity(ins.len());
                for v in ins {
                    args.push(if spikes { v.node } else { self.float_of(v.node)? });
                }
                let node = self.emit(Op::Concat { args })?;
                Ok(Value { node, shape, producer })
            }
        }
    }

    /// The value as the module's float (spikes become 0.0 and 1.0).
    pub(super) fn float_of(&mut self, node: Handle<Node>) -> Res<Handle<Node>> {
        let float = self.b.float();
        if self.b.ty(node).dtype == Dtype::Spike { self.emit(Op::Cast { arg: node, dtype: float }) } else { Ok(node) }
    }
}

/// Whether `layer` is a BatchNorm over all `T·B` samples (tdBN).
fn is_time_batched_bn(layer: &Layer) -> bool {
    matches!(
        layer,
        Layer::BatchNorm1d { variant: BatchNormVariant::TimeBatched, .. }
            | Layer::BatchNorm2d { variant: BatchNormVariant::TimeBatched, .. }
    )
}

impl Lower<'_> {
    /// A time-batched BatchNorm in training: its statistics need every
    /// step of its input, so the step loop ends here. Every value of the
    /// loop a later layer may read (each layer's output, the network
    /// input, the BatchNorm's own input) is collected; a sequence region
    /// normalises the whole `[T, B, ...]` input at once; and a new step loop
    /// steps through the result and the collected values.
    pub(super) fn time_batched_bn(
        &mut self,
        layer: &Layer,
        name: &str,
        at: &str,
        cur: Value,
        values: &mut [Option<Value>],
        input: &mut Value,
    ) -> Res<Value> {
        let (two_d, num_features, eps) = match layer {
            Layer::BatchNorm1d { num_features, eps, .. } => (false, *num_features, *eps),
            Layer::BatchNorm2d { num_features, eps, .. } => (true, *num_features, *eps),
            _ => unreachable!("checked by is_time_batched_bn"),
        };
        let bn = self.batch_norm_params(name, at, &cur.shape, &cur.producer, two_d, num_features, eps)?;
        let (m1, m2) = self.step_moments(cur.node)?;
        let loop_index = self.b.region_index().expect("inside the step loop");
        let in_loop = |cx: &Self, h: Handle<Node>| cx.b.module().body[loop_index].nodes.contains(&h);
        self.b.begin_seq();
        // The loop's values, collected for the next loop.
        let mut carried: Vec<(Handle<Node>, Handle<Node>)> = Vec::new();
        let live = values.iter().flatten().map(|v| v.node).chain([input.node, cur.node]).collect::<Vec<_>>();
        for h in live {
            if in_loop(self, h) && !carried.iter().any(|(old, _)| *old == h) {
                let all = self.emit(Op::Collect(h))?;
                carried.push((h, all));
            }
        }
        let (m1, m2) = (self.emit(Op::Collect(m1))?, self.emit(Op::Collect(m2))?);
        let (mu, var) = self.time_batched_stats(&bn, m1, m2)?;
        self.b.begin_step();
        let mut stepped: Vec<(Handle<Node>, Handle<Node>)> = Vec::with_capacity(carried.len());
        for &(old, all) in &carried {
            stepped.push((old, self.emit(Op::Step(all))?));
        }
        let x = stepped.iter().find(|(old, _)| *old == cur.node).map_or(cur.node, |&(_, new)| new);
        let remap = |v: &mut Value| {
            if let Some(&(_, new)) = stepped.iter().find(|(old, _)| *old == v.node) {
                v.node = new;
            }
        };
        values.iter_mut().flatten().for_each(remap);
        remap(input);
        let y = self.normalize(&bn, x, mu, var)?;
        Ok(Value { node: y, shape: cur.shape, producer: String::new() })
    }
}
