//! Lowering: a [`Network`] description becomes an IR [`snnc_ir::Module`] of
//! primitives. Every neuron model's equations live here, written in the order
//! of operations of Norse 1.1.0 (`docs/norse-semantics.md`), so that the
//! interpreter reproduces Norse and the autodiff pass derives Norse's
//! gradients (including where Norse detaches).
//!
//! The module has three regions:
//! 1. a sequence region with the inputs, the parameters and the constants
//!    (the "preamble");
//! 2. one step loop with every layer, applied at every step to that step's
//!    input;
//! 3. a sequence region that collects the last layer's per-step output
//!    (`output`) and computes the readout (`readout`).
//!
//! Constants are emitted unfolded (`dt` and `tau_mem_inv` are multiplied in
//! the IR, as Norse multiplies them at run time); folding is a pass.
//!
//! Names: the input is `x` (per step `[T, B, ...input]`, or static
//! `[B, ...input]` with an encoder); a layer `NAME` records `NAME.z`,
//! `NAME.v`, `NAME.i`, `NAME.b`, `NAME.a` (neurons) or `NAME.out` (other
//! layers); the encoder records `encoder.z`, `encoder.v` and, for the latency
//! encoder, `encoder.z_raw`.

use std::collections::BTreeMap;

use snnc_ir::{
    BinaryOp, Builder, CompareOp, Dtype, Handle, MatMulKind, Node, Op, Param, ParamInit, PoolOp, ReduceOp, Shape,
    StateInit, Surrogate, Type, UnaryOp,
};

use snnc_ir::typing::{ConvSizeError, conv_out_size};
mod batchnorm;
mod body;
mod encoders;
mod neuron;
pub mod stdp;
pub use batchnorm::batch_stat_outputs;
use body::{Body, delayed_types, lower_body};

use crate::error::{FrontendError, Problem};
use crate::graph::resolve;
use crate::neuron::zoo;
use crate::schema::{
    Encoder, Layer, LiParams, LifAdExParams, LifBoxParams, LifParams, LsnnParams, Method, Network, NeuronParam,
    NeuronParams, ParamValue, Readout, ResetMethod,
};

/// Options of [`lower`].
#[derive(Clone, Debug, PartialEq)]
pub struct LowerOptions {
    /// The float type of the module: `F32` (default, every backend) or `F64`
    /// (the interpreter).
    pub float: Dtype,
    /// Take the Poisson encoder's uniform draws from an input `uniform`
    /// (`[T, B, ...input]`) instead of snnc's generator. Used to replay
    /// torch's random numbers from the golden files.
    pub poisson_uniform_input: bool,
    /// Lower for training: a `Dropout` layer multiplies by its mask, the
    /// input `NAME.mask` (`[T, B, ...]`, 0 or `1/(1-p)`); otherwise it is
    /// the identity.
    pub training: bool,
}

/// The name of a `Dropout` layer's mask input in a training module.
pub fn dropout_mask_input(layer: &str) -> String {
    format!("{layer}.mask")
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions { float: Dtype::F32, poisson_uniform_input: false, training: false }
    }
}

/// The IR surrogate for a Norse `method` and `alpha`.
///
/// Norse 1.1.0's `super` ignores alpha; `heaviside` has no gradient.
pub fn surrogate(method: Method, alpha: f64) -> Surrogate {
    match method {
        Method::Super => Surrogate::SuperSpike,
        Method::Tanh => Surrogate::Tanh { alpha },
        Method::Circ => Surrogate::Circ { alpha },
        Method::Triangle => Surrogate::Triangle { alpha },
        Method::HeaviErfc => Surrogate::Erfc { alpha },
        Method::Heaviside => Surrogate::Heaviside,
    }
}

/// One layer as lowered: its name, kind, per-sample output shape and
/// inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSummary {
    pub name: String,
    pub kind: &'static str,
    /// The output shape of one sample (no batch, no time).
    pub shape: Vec<u32>,
    /// What it reads, in merge order: `x` (the network input), layer names,
    /// and `NAME (t-1)` for a previous step.
    pub inputs: Vec<String>,
}

/// Checks a network and lowers it to an IR module.
pub fn lower(net: &Network, file: &str, opts: &LowerOptions) -> Result<snnc_ir::Module, FrontendError> {
    lower_with_summary(net, file, opts).map(|(m, _)| m)
}

/// [`lower`], also returning each layer's output shape and inputs, in the
/// order the layers run (the encoder first, when there is one).
pub fn lower_with_summary(
    net: &Network,
    file: &str,
    opts: &LowerOptions,
) -> Result<(snnc_ir::Module, Vec<LayerSummary>), FrontendError> {
    crate::check::check_network(net, file)?;
    if !opts.float.is_float() {
        return Err(invalid(
            file,
            "options",
            format!("the module float type must be f32 or f64, not {}", opts.float),
            None,
        ));
    }
    check_size(file, "input", "the network input", &net.input)?;
    let graph = resolve(&net.layers).map_err(|problems| FrontendError::Invalid { file: file.to_string(), problems })?;
    let delayed = delayed_types(net, file, opts, &graph)?;
    let Body { mut cx, out: cur, summary, .. } = lower_body(net, file, opts, &graph, &delayed, false)?;

    cx.b.begin_seq();
    let out = cx.emit(Op::Collect(cur.node))?;
    cx.b.output("output", out);
    for (name, stat, per_step) in std::mem::take(&mut cx.bn_stats) {
        let all = if per_step { cx.emit(Op::Collect(stat))? } else { stat };
        cx.b.output(name, all);
    }
    let readout = match net.readout {
        Readout::Sequence => None,
        Readout::MaxLogSoftmax => {
            if cur.shape.len() != 1 {
                return Err(invalid(
                    file,
                    "readout",
                    format!(
                        "MaxLogSoftmax needs one class dimension, but {} gives a sample shape {:?}",
                        cur.producer, cur.shape
                    ),
                    Some("add Flatten() and a Linear layer with one output per class before the readout".into()),
                ));
            }
            let mut m = cx.emit(Op::ReduceTime { op: ReduceOp::Max, arg: out })?;
            if cx.b.ty(m).dtype == Dtype::Spike {
                // torch computes log_softmax of float spikes.
                m = cx.emit(Op::Cast { arg: m, dtype: opts.float })?;
            }
            Some(cx.emit(Op::LogSoftmax { arg: m })?)
        }
        Readout::Max => Some(cx.emit(Op::ReduceTime { op: ReduceOp::Max, arg: out })?),
        Readout::LastStep => Some(cx.emit(Op::ReduceTime { op: ReduceOp::Last, arg: out })?),
        Readout::Mean => Some(cx.emit(Op::ReduceTime { op: ReduceOp::Mean, arg: out })?),
        Readout::SpikeCount => Some(cx.emit(Op::ReduceTime { op: ReduceOp::Sum, arg: out })?),
    };
    if let Some(r) = readout {
        cx.b.output("readout", r);
    }
    let mut module = cx.b.finish();
    snnc_ir::compact(&mut module);
    if let Err(errors) = snnc_ir::validate(&module) {
        // A bug in this file, not in the user's network.
        return Err(invalid(file, "lowering", format!("internal error: lowering produced invalid IR: {errors}"), None));
    }
    Ok((module, summary))
}

/// The number of elements of a per-sample shape.
fn elements(shape: &[u32]) -> u64 {
    shape.iter().fold(1u64, |acc, &d| acc.saturating_mul(u64::from(d)))
}

/// Per-sample values are indexed with 32 bits: more than 2^32 - 1 elements
/// per sample is an error.
fn check_size(file: &str, at: &str, what: &str, shape: &[u32]) -> Result<(), FrontendError> {
    if elements(shape) > u64::from(u32::MAX) {
        return Err(invalid(
            file,
            at,
            format!("{what} has shape {shape:?}: more than 2^32 - 1 values per sample"),
            Some("use smaller layers".into()),
        ));
    }
    Ok(())
}

fn invalid(file: &str, at: impl Into<String>, message: String, help: Option<String>) -> FrontendError {
    FrontendError::Invalid { file: file.to_string(), problems: vec![Problem { at: at.into(), message, help }] }
}

/// The current value flowing through the layers.
#[derive(Clone)]
struct Value {
    node: Handle<Node>,
    /// Per-sample shape (no batch, no time).
    shape: Vec<u32>,
    /// Who produced it, for error messages.
    producer: String,
}

struct Lower<'a> {
    b: Builder,
    file: &'a str,
    dt: f64,
    /// Lowering for training (see [`LowerOptions::training`]).
    training: bool,
    /// The index of the preamble region.
    pre: usize,
    /// The place of the layer being lowered, for messages.
    at: String,
    /// The neuron population being lowered (see [`Lower::neurons`]).
    neurons: Neurons,
    /// The BatchNorm statistics of a training module, made outputs of
    /// their names after the loop: per-step ones collected (`[T, C]`), a
    /// time-batched layer's as they are (`[C]`).
    bn_stats: Vec<(String, Handle<Node>, bool)>,
    /// The plastic `Linear` layers lowered so far, whose updates are
    /// emitted at the end of the step (`lower/body.rs`).
    plastic: Vec<Plastic>,
}

/// A `Linear` or `Conv2d` with `plasticity`: what its STDP step needs.
struct Plastic {
    layer: String,
    rule: crate::schema::Stdp,
    connection: stdp::Connection,
    w_state: snnc_ir::Handle<snnc_ir::StateVar>,
    w: Handle<Node>,
    z_pre: Handle<Node>,
}

/// The neuron population being lowered: what its parameter tensors are
/// called and shaped, and which of them exist already.
#[derive(Default)]
struct Neurons {
    /// The layer's name (`encoder` for the encoder): parameters are
    /// `LAYER.FIELD`.
    layer: String,
    /// The per-sample shape of the population.
    shape: Vec<u32>,
    /// The fields that are trainable.
    trainable: Vec<String>,
    /// The parameter node of each field lowered to a parameter so far.
    params: BTreeMap<String, Handle<Node>>,
}

type Res<T> = Result<T, FrontendError>;

/// A recurrent layer's input and (masked) recurrent weights.
type Weights = (Handle<Node>, Handle<Node>);

impl Lower<'_> {
    /// Emits into the current region; a type error here is a lowering bug.
    fn emit(&mut self, op: Op) -> Res<Handle<Node>> {
        self.b.emit(op).map_err(|e| invalid(self.file, "lowering", format!("internal error: {e}"), None))
    }

    /// Emits into the preamble.
    fn emit_pre(&mut self, op: Op) -> Res<Handle<Node>> {
        self.b.emit_in(self.pre, op).map_err(|e| invalid(self.file, "lowering", format!("internal error: {e}"), None))
    }

    fn named(&mut self, op: Op, name: String) -> Res<Handle<Node>> {
        let h = self.emit(op)?;
        Ok(self.b.name(h, name))
    }

    fn c(&mut self, value: f64) -> Res<Handle<Node>> {
        let dtype = self.b.float();
        self.emit_pre(Op::Const { value, dtype })
    }

    /// Starts lowering the neuron population `layer` of per-sample shape
    /// `shape` with parameters `p`: checks that every per-neuron list has
    /// one value per neuron.
    fn neurons<P: NeuronParams>(&mut self, layer: &str, p: &P, shape: &[u32]) -> Res<()> {
        let fields = P::FIELDS.iter().filter_map(|&f| Some((f.name(), p.get(f)?)));
        let trainable = p.trainable().iter().map(|f| f.name().to_string()).collect();
        self.neurons_named(layer, shape, "p.", fields, trainable)
    }

    /// [`Lower::neurons`] for parameters given by name.
    fn neurons_named<'p>(
        &mut self,
        layer: &str,
        shape: &[u32],
        prefix: &str,
        fields: impl Iterator<Item = (&'p str, &'p ParamValue)>,
        trainable: Vec<String>,
    ) -> Res<()> {
        let count = elements(shape);
        for (field, value) in fields {
            let ParamValue::PerNeuron(list) = value else { continue };
            if list.len() as u64 != count {
                return Err(invalid(
                    self.file,
                    format!("{}: {prefix}{field}", self.at),
                    format!(
                        "has {} values, but the layer has {count} neurons per sample (shape {shape:?})",
                        list.len()
                    ),
                    Some(format!(
                        "give one value per neuron ({count}, in row-major order of {shape:?}), or one number for the \
                         whole layer"
                    )),
                ));
            }
        }
        self.neurons = Neurons { layer: layer.to_string(), shape: shape.to_vec(), trainable, params: BTreeMap::new() };
        Ok(())
    }

    /// A neuron parameter's value: a constant for a scalar that is not
    /// trainable (as Norse's Python float), otherwise the parameter
    /// `LAYER.FIELD` (shape `[]` for a trainable scalar, the population's
    /// per-sample shape for a per-neuron list), made once per layer.
    fn pv(&mut self, field: NeuronParam, value: &ParamValue) -> Res<Handle<Node>> {
        self.pv_named(field.name(), value)
    }

    /// [`Lower::pv`] for a parameter given by name.
    fn pv_named(&mut self, field: &str, value: &ParamValue) -> Res<Handle<Node>> {
        let trainable = self.neurons.trainable.iter().any(|t| t == field);
        let (shape, init) = match value {
            ParamValue::Scalar(x) if !trainable => return self.c(*x),
            ParamValue::Scalar(x) => (Vec::new(), ParamInit::Fill(*x)),
            ParamValue::PerNeuron(v) => (self.neurons.shape.clone(), ParamInit::Values(v.clone())),
        };
        if let Some(&h) = self.neurons.params.get(field) {
            return Ok(h);
        }
        let name = format!("{}.{field}", self.neurons.layer);
        let h = self.param(name, &shape, trainable, init)?;
        self.neurons.params.insert(field.to_string(), h);
        Ok(h)
    }

    /// `dt * tau_inv`, multiplied in the module's float type as Norse does.
    fn dt_times(&mut self, field: NeuronParam, tau_inv: &ParamValue) -> Res<Handle<Node>> {
        let dt = self.c(self.dt)?;
        let tau = self.pv(field, tau_inv)?;
        self.emit_pre(Op::Binary { op: BinaryOp::Mul, lhs: dt, rhs: tau })
    }

    /// `(-dt) * tau_inv`.
    fn neg_dt_times(&mut self, field: NeuronParam, tau_inv: &ParamValue) -> Res<Handle<Node>> {
        let dt = self.c(-self.dt)?;
        let tau = self.pv(field, tau_inv)?;
        self.emit_pre(Op::Binary { op: BinaryOp::Mul, lhs: dt, rhs: tau })
    }

    fn bin(&mut self, op: BinaryOp, lhs: Handle<Node>, rhs: Handle<Node>) -> Res<Handle<Node>> {
        self.emit(Op::Binary { op, lhs, rhs })
    }

    fn add(&mut self, lhs: Handle<Node>, rhs: Handle<Node>) -> Res<Handle<Node>> {
        self.bin(BinaryOp::Add, lhs, rhs)
    }
    fn sub(&mut self, lhs: Handle<Node>, rhs: Handle<Node>) -> Res<Handle<Node>> {
        self.bin(BinaryOp::Sub, lhs, rhs)
    }
    fn mul(&mut self, lhs: Handle<Node>, rhs: Handle<Node>) -> Res<Handle<Node>> {
        self.bin(BinaryOp::Mul, lhs, rhs)
    }

    fn param(&mut self, name: String, shape: &[u32], trainable: bool, init: ParamInit) -> Res<Handle<Node>> {
        let dtype = self.b.float();
        let p = self.b.param(Param { name, dtype, shape: Shape::fixed(shape), trainable, init });
        self.emit_pre(Op::Param(p))
    }

    fn state(
        &mut self,
        name: String,
        dtype: Dtype,
        shape: &[u32],
        init: f64,
    ) -> Res<snnc_ir::Handle<snnc_ir::StateVar>> {
        self.state_from(name, dtype, shape, &ParamValue::Scalar(init))
    }

    /// A state starting at a neuron parameter's value (Norse's `v = v_leak`,
    /// detached): one value for a scalar, each neuron's own for a list. A
    /// trainable scalar starts at its value in the description.
    fn state_from(
        &mut self,
        name: String,
        dtype: Dtype,
        shape: &[u32],
        init: &ParamValue,
    ) -> Res<snnc_ir::Handle<snnc_ir::StateVar>> {
        let init = match init {
            ParamValue::Scalar(x) => StateInit::Fill(*x),
            ParamValue::PerNeuron(v) => StateInit::Values(v.clone()),
        };
        Ok(self.b.state(name, Type::new(dtype, Shape::batched(shape)), init))
    }

    /// `(1 - z) * v + z * v_reset`, Norse's reset to value.
    fn reset(&mut self, z: Handle<Node>, v: Handle<Node>, v_reset: &ParamValue) -> Res<Handle<Node>> {
        let one = self.c(1.0)?;
        let keep = self.sub(one, z)?;
        let kept = self.mul(keep, v)?;
        let vr = self.pv(NeuronParam::v_reset, v_reset)?;
        let reset = self.mul(z, vr)?;
        self.add(kept, reset)
    }

    /// `v + dt*tau_mem_inv*((v_leak - v) + i)`.
    fn integrate(
        &mut self,
        v: Handle<Node>,
        i: Handle<Node>,
        tau_mem_inv: &ParamValue,
        v_leak: &ParamValue,
    ) -> Res<Handle<Node>> {
        let k = self.dt_times(NeuronParam::tau_mem_inv, tau_mem_inv)?;
        let vl = self.pv(NeuronParam::v_leak, v_leak)?;
        let d = self.sub(vl, v)?;
        let d = self.add(d, i)?;
        let dv = self.mul(k, d)?;
        self.add(v, dv)
    }

    /// `i + (-dt*tau_syn_inv)*i`.
    fn decay(&mut self, i: Handle<Node>, tau_syn_inv: &ParamValue) -> Res<Handle<Node>> {
        let k = self.neg_dt_times(NeuronParam::tau_syn_inv, tau_syn_inv)?;
        let di = self.mul(k, i)?;
        self.add(i, di)
    }

    fn threshold(&mut self, arg: Handle<Node>, method: Method, alpha: f64, name: String) -> Res<Handle<Node>> {
        self.named(Op::Threshold { arg, surrogate: surrogate(method, alpha) }, name)
    }

    fn write(
        &mut self,
        state: snnc_ir::Handle<snnc_ir::StateVar>,
        value: Handle<Node>,
        name: Option<String>,
    ) -> Res<Handle<Node>> {
        let h = self.emit(Op::StateWrite { state, value })?;
        if let Some(n) = name {
            self.b.name(h, n);
        }
        Ok(h)
    }

    fn encoder(
        &mut self,
        enc: &Encoder,
        x: Handle<Node>,
        shape: &[u32],
        uniform: Option<Handle<Node>>,
    ) -> Res<Handle<Node>> {
        let float = self.b.float();
        self.at = format!("encoder ({})", enc.kind());
        match enc {
            Encoder::ConstantCurrent { p } => {
                let (z, _) = self.current_encoder(p, x, shape, "encoder.z")?;
                Ok(z)
            }
            Encoder::SpikeLatency { p } => {
                let (z, _) = self.current_encoder(p, x, shape, "encoder.z_raw")?;
                // out = where(mask > 0, 0, z); mask += z
                let mask_s = self.state("encoder.mask".into(), float, shape, 0.0)?;
                let mask = self.emit(Op::StateRead(mask_s))?;
                let zero = self.c(0.0)?;
                let seen = self.emit(Op::Compare { op: CompareOp::Gt, lhs: mask, rhs: zero })?;
                let no_spike = self.emit_pre(Op::Const { value: 0.0, dtype: Dtype::Spike })?;
                let out = self.named(Op::Select { cond: seen, on_true: no_spike, on_false: z }, "encoder.z".into())?;
                let mask_new = self.add(mask, z)?;
                self.write(mask_s, mask_new, None)?;
                Ok(out)
            }
            Encoder::Poisson { f_max, seed } => {
                // z = uniform < dt*f_max*x, with dt*f_max a Python float product.
                let rate = self.c(self.dt * f_max)?;
                let p = self.mul(rate, x)?;
                let u = match uniform {
                    Some(u) => self.emit(Op::Step(u))?,
                    None => self.emit(Op::Uniform { seed: *seed, shape: Shape::batched(shape), seq: false })?,
                };
                self.named(Op::Compare { op: CompareOp::Lt, lhs: u, rhs: p }, "encoder.z".into())
            }
            Encoder::SignedPoisson { f_max, seed } => self.signed_poisson(*f_max, *seed, x, shape, uniform),
            Encoder::Population { out_features, scale } => self.population(*out_features, *scale, x, shape),
            // The first layer reads the static input at every step.
            Encoder::Direct {} => Ok(x),
        }
    }

    /// Norse's `lif_current_encoder`: v starts at 0, the input current enters
    /// v directly, `v = v - z * (v - v_reset)`.
    fn current_encoder(
        &mut self,
        p: &LifParams,
        x: Handle<Node>,
        shape: &[u32],
        z_name: &str,
    ) -> Res<(Handle<Node>, Handle<Node>)> {
        let float = self.b.float();
        self.neurons("encoder", p, shape)?;
        let v_s = self.state("encoder.v".into(), float, shape, 0.0)?;
        let v = self.emit(Op::StateRead(v_s))?;
        let v = self.integrate(v, x, &p.tau_mem_inv, &p.v_leak)?;
        let vth = self.pv(NeuronParam::v_th, &p.v_th)?;
        let over = self.sub(v, vth)?;
        let z = self.threshold(over, p.method, p.alpha, z_name.into())?;
        let vr = self.pv(NeuronParam::v_reset, &p.v_reset)?;
        let d = self.sub(v, vr)?;
        let zd = self.mul(z, d)?;
        let v_new = self.sub(v, zd)?;
        let v_new = self.write(v_s, v_new, Some("encoder.v".into()))?;
        Ok((z, v_new))
    }

    fn layer(&mut self, layer: &Layer, name: &str, at: &str, cur: Value) -> Res<Value> {
        let shape = cur.shape.clone();
        let x = cur.node;
        self.at = at.to_string();
        let same = |node| Value { node, shape: shape.clone(), producer: String::new() };
        match layer {
            Layer::Linear { input, out, bias, plasticity, .. } => {
                let n_in = self.last_dim(at, &cur, *input, "in")?;
                let bound = 1.0 / f64::from(n_in).sqrt();
                let mut w = self.param(format!("{name}.weight"), &[*out, n_in], true, ParamInit::Uniform { bound })?;
                if let Some(rule) = plasticity {
                    // The weight is state of the step loop, starting at the
                    // parameter's value; the product reads this step's.
                    if shape.len() != 1 {
                        return Err(invalid(
                            self.file,
                            at,
                            format!(
                                "a plastic Linear needs a [features] input (Norse's stdp_step_linear), but {} gives \
                                 shape {:?}",
                                cur.producer, shape
                            ),
                            Some("put a Flatten layer before it".into()),
                        ));
                    }
                    let Op::Param(p) = self.b.module().nodes[w].op else { unreachable!("made by param") };
                    let ty = self.b.module().nodes[w].ty.clone();
                    let w_state =
                        self.b.state(stdp::plastic_state_name(&format!("{name}.weight")), ty, StateInit::Param(p));
                    w = self.emit(Op::StateRead(w_state))?;
                    self.plastic.push(Plastic {
                        layer: name.to_string(),
                        rule: rule.clone(),
                        connection: stdp::Connection::Linear,
                        w_state,
                        w,
                        z_pre: x,
                    });
                }
                let mut y = self.emit(Op::MatMul { input: x, weight: w, kind: MatMulKind::Dense })?;
                if *bias {
                    let b = self.param(format!("{name}.bias"), &[*out], true, ParamInit::Uniform { bound })?;
                    y = self.add(y, b)?;
                }
                self.b.name(y, format!("{name}.out"));
                let mut s = shape.clone();
                *s.last_mut().expect("checked by last_dim") = *out;
                Ok(Value { node: y, shape: s, producer: String::new() })
            }
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                groups,
                bias,
                plasticity,
                ..
            } => {
                if shape.len() != 3 {
                    return Err(invalid(
                        self.file,
                        at,
                        format!(
                            "Conv2d needs a [channels, height, width] input, but {} gives shape {:?}",
                            cur.producer, shape
                        ),
                        Some("give the network input as [channels, height, width], e.g. input: [1, 28, 28]".into()),
                    ));
                }
                if let Some(c) = in_channels.filter(|c| *c != shape[0]) {
                    return Err(invalid(
                        self.file,
                        at,
                        format!(
                            "in_channels is {c}, but {} gives shape {:?} with {} channels",
                            cur.producer, shape, shape[0]
                        ),
                        Some(format!("set in_channels: {} or leave it out", shape[0])),
                    ));
                }
                let g = *groups;
                if g == 0 || !shape[0].is_multiple_of(g) {
                    // `check` refuses groups 0 and groups not dividing a given in_channels.
                    return Err(invalid(
                        self.file,
                        format!("{at}: groups"),
                        format!("{g} does not divide the {} input channels {} gives", shape[0], cur.producer),
                        Some("use a groups that divides both channel counts, e.g. 1".into()),
                    ));
                }
                let (k, s, p, d) = (kernel_size.0, stride.0, padding.0, dilation.0);
                let out = self.conv_out(at, &cur, [shape[1], shape[2]], [k, s, p, d])?;
                // In f64: `in_channels / groups * kh * kw` may not fit in 32 bits (torch's bound).
                let fan_in = f64::from(shape[0] / g) * f64::from(k[0]) * f64::from(k[1]);
                let bound = 1.0 / fan_in.sqrt();
                let mut w = self.param(
                    format!("{name}.weight"),
                    &[*out_channels, shape[0] / g, k[0], k[1]],
                    true,
                    ParamInit::Uniform { bound },
                )?;
                if let Some(rule) = plasticity {
                    // Norse's `stdp_step_conv2d` has one channel group.
                    if g != 1 {
                        return Err(invalid(
                            self.file,
                            format!("{at}: plasticity"),
                            format!("STDP on a convolution needs groups 1 (Norse's stdp_step_conv2d), found {g}"),
                            Some("set groups: 1, or remove plasticity".into()),
                        ));
                    }
                    let Op::Param(pw) = self.b.module().nodes[w].op else { unreachable!("made by param") };
                    let ty = self.b.module().nodes[w].ty.clone();
                    let w_state =
                        self.b.state(stdp::plastic_state_name(&format!("{name}.weight")), ty, StateInit::Param(pw));
                    w = self.emit(Op::StateRead(w_state))?;
                    let connection = stdp::Connection::Conv2d { kernel: k, stride: s, padding: p, dilation: d };
                    self.plastic.push(Plastic {
                        layer: name.to_string(),
                        rule: rule.clone(),
                        connection,
                        w_state,
                        w,
                        z_pre: x,
                    });
                }
                let b = if *bias {
                    Some(self.param(format!("{name}.bias"), &[*out_channels], true, ParamInit::Uniform { bound })?)
                } else {
                    None
                };
                let y = self.named(
                    Op::Conv2d {
                        input: x,
                        weight: w,
                        bias: b,
                        stride: s,
                        padding: p,
                        dilation: d,
                        groups: g,
                        kind: MatMulKind::Dense,
                    },
                    format!("{name}.out"),
                )?;
                Ok(Value { node: y, shape: vec![*out_channels, out[0], out[1]], producer: String::new() })
            }
            Layer::MaxPool2d { kernel_size, stride, padding, .. }
            | Layer::AvgPool2d { kernel_size, stride, padding, .. }
            | Layer::SumPool2d { kernel_size, stride, padding, .. } => {
                let op = match layer {
                    Layer::MaxPool2d { .. } => PoolOp::Max,
                    Layer::AvgPool2d { .. } => PoolOp::Avg,
                    _ => PoolOp::Sum,
                };
                let (k, s) = (kernel_size.0, stride.unwrap_or(*kernel_size).0);
                let out = self.pool_shape(layer, at, &cur, [k, s, padding.0])?;
                let pool = Op::Pool2d { op, input: x, kernel: k, stride: s, padding: padding.0 };
                let y = self.named(pool, format!("{name}.out"))?;
                Ok(Value { node: y, shape: out, producer: String::new() })
            }
            Layer::LPPool2d { kernel_size, stride, .. } => {
                // torch's lp_pool2d with norm_type 1: `sign(a) relu(|a|) kh kw` with
                // `a = avg_pool2d(x)`: the value `a kh kw`, whose derivative is 0
                // where `a` is 0 (`sign` and `relu` have derivative 0 there) and
                // `kh kw` elsewhere.
                let (k, s) = (kernel_size.0, stride.unwrap_or(*kernel_size).0);
                let out = self.pool_shape(layer, at, &cur, [k, s, [0, 0]])?;
                let a = self.emit(Op::Pool2d { op: PoolOp::Avg, input: x, kernel: k, stride: s, padding: [0, 0] })?;
                let zero = self.c(0.0)?;
                let silent = self.emit(Op::Compare { op: CompareOp::Eq, lhs: a, rhs: zero })?;
                let held = self.emit(Op::StopGradient(a))?;
                let a = self.emit(Op::Select { cond: silent, on_true: held, on_false: a })?;
                let count = self.c(f64::from(k[0]) * f64::from(k[1]))?;
                let y = self.mul(a, count)?;
                self.b.name(y, format!("{name}.out"));
                Ok(Value { node: y, shape: out, producer: String::new() })
            }
            Layer::Flatten { .. } => {
                // The size check after every layer keeps this within u32.
                let n = u32::try_from(elements(&shape)).unwrap_or(u32::MAX);
                let y = self.named(Op::Reshape { arg: x, shape: Shape::batched(&[n]) }, format!("{name}.out"))?;
                Ok(Value { node: y, shape: vec![n], producer: String::new() })
            }
            Layer::Scale { factor, .. } => {
                let f = self.c(*factor)?;
                let y = self.mul(f, x)?;
                self.b.name(y, format!("{name}.out"));
                Ok(same(y))
            }
            Layer::ReLU { .. } => {
                let y = self.named(Op::Unary { op: UnaryOp::Relu, arg: x }, format!("{name}.out"))?;
                Ok(same(y))
            }
            Layer::LIF { p, .. } => {
                let z = self.lif(name, p, x, &shape, None)?;
                Ok(same(z))
            }
            Layer::LIFRecurrent { input, hidden, p, autapses, .. } => {
                let n_in = self.last_dim(at, &cur, *input, "in")?;
                let (w_in, w_rec) = self.recurrent_weights(name, n_in, *hidden, *autapses)?;
                let mut s = shape.clone();
                *s.last_mut().expect("checked by last_dim") = *hidden;
                let z = self.lif(name, p, x, &s, Some((w_in, w_rec)))?;
                Ok(Value { node: z, shape: s, producer: String::new() })
            }
            Layer::LI { p, .. } => {
                let v = self.li(name, p, x, &shape)?;
                Ok(same(v))
            }
            Layer::LILinear { input, out, p, .. } => {
                let n_in = self.last_dim(at, &cur, *input, "in")?;
                let std = 1.0 / f64::from(n_in).sqrt();
                let w = self.param(format!("{name}.input_weights"), &[*out, n_in], true, ParamInit::Normal { std })?;
                let y = self.emit(Op::MatMul { input: x, weight: w, kind: MatMulKind::Dense })?;
                let mut s = shape.clone();
                *s.last_mut().expect("checked by last_dim") = *out;
                let v = self.li(name, p, y, &s)?;
                Ok(Value { node: v, shape: s, producer: String::new() })
            }
            Layer::LSNN { p, .. } => {
                let z = self.lsnn(name, p, x, &shape, None)?;
                Ok(same(z))
            }
            Layer::LSNNRecurrent { input, hidden, p, autapses, .. } => {
                let n_in = self.last_dim(at, &cur, *input, "in")?;
                let (w_in, w_rec) = self.recurrent_weights(name, n_in, *hidden, *autapses)?;
                let mut s = shape.clone();
                *s.last_mut().expect("checked by last_dim") = *hidden;
                let z = self.lsnn(name, p, x, &s, Some((w_in, w_rec)))?;
                Ok(Value { node: z, shape: s, producer: String::new() })
            }
            Layer::LIFBox { p, .. } => {
                let z = self.lif_box(name, p, x, &shape)?;
                Ok(same(z))
            }
            Layer::LIFAdEx { p, .. } => {
                let z = self.lif_adex(name, p, x, &shape)?;
                Ok(same(z))
            }
            Layer::Neuron { model, hidden, autapses, .. } => {
                self.neuron_layer(name, at, &cur, model, *hidden, *autapses)
            }
            Layer::Izhikevich { preset, p, hidden, autapses, .. } => {
                let single = self.b.float() == Dtype::F32;
                let model = zoo::izhikevich(*preset, p, single).map_err(|missing| {
                    invalid(self.file, at, format!("a custom Izhikevich neuron needs {}", missing.join(", ")), None)
                })?;
                self.neuron_layer(name, at, &cur, &model, *hidden, *autapses)
            }
            Layer::IAF { hidden, autapses, .. }
            | Layer::LIFEx { hidden, autapses, .. }
            | Layer::LIFRefrac { hidden, autapses, .. } => {
                let model = zoo::model_of(layer).expect("a zoo layer");
                self.neuron_layer(name, at, &cur, &model, *hidden, *autapses)
            }
            Layer::CobaLIF { hidden: Some(hidden), .. } => {
                let model = zoo::model_of(layer).expect("a zoo layer");
                self.coba_layer(name, at, &cur, &model, *hidden)
            }
            Layer::LIFAdExRefrac { .. }
            | Layer::CobaLIF { .. }
            | Layer::LIBox { .. }
            | Layer::TsodyksMarkram { .. } => {
                let model = zoo::model_of(layer).expect("a zoo layer");
                self.neuron_layer(name, at, &cur, &model, None, false)
            }
            Layer::Dropout { .. } if !self.training => Ok(same(x)),
            Layer::Dropout { .. } => {
                let float = self.b.float();
                let input = self.b.input(dropout_mask_input(name), Type::seq(float, Shape::batched(&shape)));
                let mask = self.emit_pre(Op::Input(input))?;
                let mask = self.emit(Op::Step(mask))?;
                let y = self.mul(x, mask)?;
                self.b.name(y, format!("{name}.out"));
                Ok(same(y))
            }
            Layer::BatchNorm1d { num_features, eps, .. } | Layer::BatchNorm2d { num_features, eps, .. } => {
                let two_d = matches!(layer, Layer::BatchNorm2d { .. });
                let y = self.batch_norm(name, at, x, &shape, &cur.producer, two_d, *num_features, *eps)?;
                Ok(same(y))
            }
            Layer::Identity { .. } => {
                // A merge made a new value: name it; a single input keeps
                // its own name (it is recorded under that).
                if self.b.module().nodes[x].name.is_none() {
                    self.b.name(x, format!("{name}.out"));
                }
                Ok(same(x))
            }
        }
    }

    /// The input size of a layer that reads the last dimension, checked
    /// against the size given in the description.
    /// The output size `[oh, ow]` of a convolution or pooling of the
    /// spatial dims `hw` with `[kernel, stride, padding, dilation]`, by the
    /// IR's rule (`snnc_ir::typing::conv_out_size`); its error names the
    /// layer's field.
    fn conv_out(&self, at: &str, cur: &Value, hw: [u32; 2], [k, s, p, d]: [[u32; 2]; 4]) -> Res<[u32; 2]> {
        let mut out = [0; 2];
        // The wider axis first: its error's help (the largest padding that
        // fits) holds for both.
        let order = if hw[1] > hw[0] { [1, 0] } else { [0, 1] };
        for ax in order {
            out[ax] = conv_out_size(hw[ax], k[ax], s[ax], p[ax], d[ax]).map_err(|e| {
                let field = if e.field() == "kernel" { "kernel_size" } else { e.field() };
                let axis = if k[0] == k[1] && s[0] == s[1] && p[0] == p[1] && d[0] == d[1] {
                    String::new()
                } else {
                    format!(" (the {} axis)", ["height", "width"][ax])
                };
                let (message, help) = match e {
                    ConvSizeError::PaddingOverflow { n, .. } => {
                        (e.detail(), Some(format!("use a padding of at most {}", (u32::MAX - n) / 2)))
                    }
                    _ => (
                        format!("{}{axis}: {} gives shape {:?}", e.detail(), cur.producer, cur.shape),
                        Some(if d == [1, 1] {
                            "use a smaller kernel_size, or more padding".into()
                        } else {
                            "use a smaller kernel_size or dilation, or more padding".into()
                        }),
                    ),
                };
                invalid(self.file, format!("{at}: {field}"), message, help)
            })?;
        }
        Ok(out)
    }

    /// The output shape of a pooling layer: `[.., oh, ow]` from `[kernel,
    /// stride, padding]`, after checking that the input has two dims to
    /// pool.
    fn pool_shape(&self, layer: &Layer, at: &str, cur: &Value, [k, s, p]: [[u32; 2]; 3]) -> Res<Vec<u32>> {
        let shape = &cur.shape;
        let r = shape.len();
        if r < 2 {
            return Err(invalid(
                self.file,
                at,
                format!(
                    "{} needs an input of at least 2 dims, but {} gives shape {shape:?}",
                    layer.kind(),
                    cur.producer
                ),
                Some("pool before `Flatten`, on [channels, height, width] values".into()),
            ));
        }
        let out = self.conv_out(at, cur, [shape[r - 2], shape[r - 1]], [k, s, p, [1, 1]])?;
        let mut shape = shape.clone();
        shape[r - 2..].copy_from_slice(&out);
        Ok(shape)
    }

    fn last_dim(&self, at: &str, cur: &Value, given: Option<u32>, field: &str) -> Res<u32> {
        let Some(&n) = cur.shape.last() else {
            return Err(invalid(
                self.file,
                at,
                format!("{} gives a scalar per sample; this layer needs a vector", cur.producer),
                None,
            ));
        };
        if let Some(g) = given.filter(|g| *g != n) {
            return Err(invalid(
                self.file,
                at,
                format!("`{field}` is {g}, but {} gives shape {:?} (last dimension {n})", cur.producer, cur.shape),
                Some(format!("set {field}: {n}, or leave it out to take it from the previous layer")),
            ));
        }
        Ok(n)
    }

    /// Input and (masked) recurrent weights, initialised as Norse does:
    /// `randn * sqrt(2 / hidden)`.
    fn recurrent_weights(
        &mut self,
        name: &str,
        n_in: u32,
        hidden: u32,
        autapses: bool,
    ) -> Res<(Handle<Node>, Handle<Node>)> {
        let std = (2.0 / f64::from(hidden)).sqrt();
        let w_in = self.param(format!("{name}.input_weights"), &[hidden, n_in], true, ParamInit::Normal { std })?;
        let w_rec =
            self.param(format!("{name}.recurrent_weights"), &[hidden, hidden], true, ParamInit::Normal { std })?;
        if autapses {
            return Ok((w_in, w_rec));
        }
        // Norse zeroes the diagonal in place and masks its gradient; a
        // constant mask gives both.
        let mask = self.param(format!("{name}.autapse_mask"), &[hidden, hidden], false, ParamInit::OffDiagonal)?;
        let w_rec = self.emit_pre(Op::Binary { op: BinaryOp::Mul, lhs: w_rec, rhs: mask })?;
        Ok((w_in, w_rec))
    }

    /// LIF (feed-forward `lif_feed_forward_step`, or recurrent `lif_step`
    /// when `weights` is given). Returns the spikes.
    fn lif(
        &mut self,
        name: &str,
        p: &LifParams,
        x: Handle<Node>,
        shape: &[u32],
        weights: Option<(Handle<Node>, Handle<Node>)>,
    ) -> Res<Handle<Node>> {
        let float = self.b.float();
        self.neurons(name, p, shape)?;
        let z_state = match weights {
            Some(_) => Some(self.state(format!("{name}.z"), Dtype::Spike, shape, 0.0)?),
            None => None,
        };
        let v_s = self.state_from(format!("{name}.v"), float, shape, &p.v_leak)?;
        let i_s = self.state(format!("{name}.i"), float, shape, 0.0)?;
        let z_prev = match z_state {
            Some(s) => Some(self.emit(Op::StateRead(s))?),
            None => None,
        };
        let v = self.emit(Op::StateRead(v_s))?;
        let i = self.emit(Op::StateRead(i_s))?;
        // 1. i_jump = i + x                     (feed-forward)
        //    i_jump = i + x W_in^T + z_prev W_rec^T  (recurrent)
        let i_jump = self.add_input(i, x, weights.zip(z_prev))?;
        // 2. v_dec = v + dt*tau_mem_inv*((v_leak - v) + i_jump)
        let v_dec = self.integrate(v, i_jump, &p.tau_mem_inv, &p.v_leak)?;
        // 3. i_new = i_jump + (-dt*tau_syn_inv)*i_jump
        let i_new = self.decay(i_jump, &p.tau_syn_inv)?;
        // 4. z = H(v_dec - v_th)
        let vth = self.pv(NeuronParam::v_th, &p.v_th)?;
        let over = self.sub(v_dec, vth)?;
        let z = self.threshold(over, p.method, p.alpha, format!("{name}.z"))?;
        // 5. v_new = (1 - z) v_dec + z v_reset; the recurrent cell detaches z.
        let z_reset = if z_state.is_some() { self.emit(Op::StopGradient(z))? } else { z };
        let v_new = self.reset(z_reset, v_dec, &p.v_reset)?;
        if let Some(s) = z_state {
            self.write(s, z, None)?;
        }
        self.write(v_s, v_new, Some(format!("{name}.v")))?;
        self.write(i_s, i_new, Some(format!("{name}.i")))?;
        Ok(z)
    }

    /// The input current added to `i`, in Norse's order: `i + x` for a
    /// feed-forward cell, `(i + x W_in^T) + z_prev W_rec^T` for a recurrent
    /// one (`recurrent` = the weights and the previous spikes).
    fn add_input(
        &mut self,
        i: Handle<Node>,
        x: Handle<Node>,
        recurrent: Option<(Weights, Handle<Node>)>,
    ) -> Res<Handle<Node>> {
        let Some(((w_in, w_rec), z_prev)) = recurrent else {
            return self.add(i, x);
        };
        let a = self.emit(Op::MatMul { input: x, weight: w_in, kind: MatMulKind::Dense })?;
        let r = self.emit(Op::MatMul { input: z_prev, weight: w_rec, kind: MatMulKind::Dense })?;
        let s = self.add(i, a)?;
        self.add(s, r)
    }

    /// `li_feed_forward_step`: returns the new voltage.
    fn li(&mut self, name: &str, p: &LiParams, x: Handle<Node>, shape: &[u32]) -> Res<Handle<Node>> {
        let float = self.b.float();
        self.neurons(name, p, shape)?;
        let v_s = self.state_from(format!("{name}.v"), float, shape, &p.v_leak)?;
        let i_s = self.state(format!("{name}.i"), float, shape, 0.0)?;
        let v = self.emit(Op::StateRead(v_s))?;
        let i = self.emit(Op::StateRead(i_s))?;
        let i_jump = self.add(i, x)?;
        let v_new = self.integrate(v, i_jump, &p.tau_mem_inv, &p.v_leak)?;
        let i_new = self.decay(i_jump, &p.tau_syn_inv)?;
        let v_new = self.write(v_s, v_new, Some(format!("{name}.v")))?;
        self.write(i_s, i_new, Some(format!("{name}.i")))?;
        Ok(v_new)
    }

    /// `lsnn_feed_forward_step`, or `lsnn_step` with weights. The input
    /// enters the current after the voltage update (one step of delay) and
    /// `b` is the adaptive threshold itself.
    fn lsnn(
        &mut self,
        name: &str,
        p: &LsnnParams,
        x: Handle<Node>,
        shape: &[u32],
        weights: Option<(Handle<Node>, Handle<Node>)>,
    ) -> Res<Handle<Node>> {
        let float = self.b.float();
        self.neurons(name, p, shape)?;
        let z_state = match weights {
            Some(_) => Some(self.state(format!("{name}.z"), Dtype::Spike, shape, 0.0)?),
            None => None,
        };
        let v_s = self.state_from(format!("{name}.v"), float, shape, &p.v_leak)?;
        let i_s = self.state(format!("{name}.i"), float, shape, 0.0)?;
        let b_s = self.state_from(format!("{name}.b"), float, shape, &p.v_th)?;
        let z_prev = match z_state {
            Some(s) => Some(self.emit(Op::StateRead(s))?),
            None => None,
        };
        let v = self.emit(Op::StateRead(v_s))?;
        let i = self.emit(Op::StateRead(i_s))?;
        let b = self.emit(Op::StateRead(b_s))?;
        // 1. v_dec = v + dt*tau_mem_inv*((v_leak - v) + i)   (old current)
        let v_dec = self.integrate(v, i, &p.tau_mem_inv, &p.v_leak)?;
        // 2. i_dec = i + (-dt*tau_syn_inv)*i
        let i_dec = self.decay(i, &p.tau_syn_inv)?;
        // 3. b_dec = b + dt*tau_adapt_inv*(v_th - b)
        let ka = self.dt_times(NeuronParam::tau_adapt_inv, &p.tau_adapt_inv)?;
        let vth = self.pv(NeuronParam::v_th, &p.v_th)?;
        let db = self.sub(vth, b)?;
        let db = self.mul(ka, db)?;
        let b_dec = self.add(b, db)?;
        // 4. z = H(v_dec - b_dec)
        let over = self.sub(v_dec, b_dec)?;
        let z = self.threshold(over, p.method, p.alpha, format!("{name}.z"))?;
        // 5. reset, 6. b_new = b_dec + z*beta (z detached in the recurrent cell)
        let zd = if z_state.is_some() { self.emit(Op::StopGradient(z))? } else { z };
        let v_new = self.reset(zd, v_dec, &p.v_reset)?;
        let beta = self.pv(NeuronParam::beta, &p.beta)?;
        let jump = self.mul(zd, beta)?;
        let b_new = self.add(b_dec, jump)?;
        // 7. i_new = i_dec + x  (+ x W_in^T + z_prev W_rec^T)
        let i_new = self.add_input(i_dec, x, weights.zip(z_prev))?;
        if let Some(s) = z_state {
            self.write(s, z, None)?;
        }
        self.write(v_s, v_new, Some(format!("{name}.v")))?;
        self.write(i_s, i_new, Some(format!("{name}.i")))?;
        self.write(b_s, b_new, Some(format!("{name}.b")))?;
        Ok(z)
    }

    /// `LIFBoxCell`: no synaptic current.
    fn lif_box(&mut self, name: &str, p: &LifBoxParams, x: Handle<Node>, shape: &[u32]) -> Res<Handle<Node>> {
        let float = self.b.float();
        self.neurons(name, p, shape)?;
        let v_s = self.state_from(format!("{name}.v"), float, shape, &p.v_leak)?;
        let v = self.emit(Op::StateRead(v_s))?;
        // v_dec = v + dt*tau_mem_inv*((x + v_leak) - v)
        let k = self.dt_times(NeuronParam::tau_mem_inv, &p.tau_mem_inv)?;
        let vl = self.pv(NeuronParam::v_leak, &p.v_leak)?;
        let d = self.add(x, vl)?;
        let d = self.sub(d, v)?;
        let dv = self.mul(k, d)?;
        let v_dec = self.add(v, dv)?;
        let vth = self.pv(NeuronParam::v_th, &p.v_th)?;
        let over = self.sub(v_dec, vth)?;
        let z = self.threshold(over, p.method, p.alpha, format!("{name}.z"))?;
        let v_new = match p.reset_method {
            ResetMethod::Value => self.reset(z, v_dec, &p.v_reset)?,
            ResetMethod::Subtract => {
                // (1 - z) v + z (v - v_th)
                let one = self.c(1.0)?;
                let keep = self.sub(one, z)?;
                let kept = self.mul(keep, v_dec)?;
                let vth = self.pv(NeuronParam::v_th, &p.v_th)?;
                let sub = self.sub(v_dec, vth)?;
                let r = self.mul(z, sub)?;
                self.add(kept, r)?
            }
        };
        self.write(v_s, v_new, Some(format!("{name}.v")))?;
        Ok(z)
    }

    /// `LIFAdExCell`: exponential LIF with an adaptation current `a`.
    fn lif_adex(&mut self, name: &str, p: &LifAdExParams, x: Handle<Node>, shape: &[u32]) -> Res<Handle<Node>> {
        let float = self.b.float();
        self.neurons(name, p, shape)?;
        let v_s = self.state_from(format!("{name}.v"), float, shape, &p.v_leak)?;
        let i_s = self.state(format!("{name}.i"), float, shape, 0.0)?;
        let a_s = self.state(format!("{name}.a"), float, shape, 0.0)?;
        let v = self.emit(Op::StateRead(v_s))?;
        let i = self.emit(Op::StateRead(i_s))?;
        let a = self.emit(Op::StateRead(a_s))?;
        // i_jump = i + x
        let i_jump = self.add(i, x)?;
        // dv = dt*tau_mem_inv*((v_leak - v) + delta_T*exp((v - v_th)/delta_T) + i_jump - a)
        let k = self.dt_times(NeuronParam::tau_mem_inv, &p.tau_mem_inv)?;
        let vl = self.pv(NeuronParam::v_leak, &p.v_leak)?;
        let d = self.sub(vl, v)?;
        let vth = self.pv(NeuronParam::v_th, &p.v_th)?;
        let delta = self.pv(NeuronParam::delta_T, &p.delta_T)?;
        let e = self.sub(v, vth)?;
        let e = self.bin(BinaryOp::Div, e, delta)?;
        let e = self.emit(Op::Unary { op: UnaryOp::Exp, arg: e })?;
        let e = self.mul(delta, e)?;
        let d = self.add(d, e)?;
        let d = self.add(d, i_jump)?;
        let d = self.sub(d, a)?;
        let dv = self.mul(k, d)?;
        let v_dec = self.add(v, dv)?;
        // i_new = i_jump + (-dt*tau_syn_inv)*i_jump
        let i_new = self.decay(i_jump, &p.tau_syn_inv)?;
        // a_dec = a + dt*tau_ada_inv*(adaptation_current*(v - v_leak) - a)   (old v)
        let ka = self.dt_times(NeuronParam::tau_ada_inv, &p.tau_ada_inv)?;
        let ac = self.pv(NeuronParam::adaptation_current, &p.adaptation_current)?;
        let vl = self.pv(NeuronParam::v_leak, &p.v_leak)?;
        let dva = self.sub(v, vl)?;
        let da = self.mul(ac, dva)?;
        let da = self.sub(da, a)?;
        let da = self.mul(ka, da)?;
        let a_dec = self.add(a, da)?;
        // z = H(v_dec - v_th); v_new = (1-z) v_dec + z v_reset; a_new = a_dec + z*adaptation_spike
        let over = self.sub(v_dec, vth)?;
        let z = self.threshold(over, p.method, p.alpha, format!("{name}.z"))?;
        let v_new = self.reset(z, v_dec, &p.v_reset)?;
        let asp = self.pv(NeuronParam::adaptation_spike, &p.adaptation_spike)?;
        let jump = self.mul(z, asp)?;
        let a_new = self.add(a_dec, jump)?;
        self.write(v_s, v_new, Some(format!("{name}.v")))?;
        self.write(i_s, i_new, Some(format!("{name}.i")))?;
        self.write(a_s, a_new, Some(format!("{name}.a")))?;
        Ok(z)
    }
}
