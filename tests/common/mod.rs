//! Shared helpers of the root package's tests: a random-network generator
//! for property tests, random inputs, and the comparison rule of
//! DESIGN.md ("Numerics") between a reference run of the interpreter and
//! any other run (an optimized module, another backend).
//!
//! Use it from a test file with `mod common;`.
//!
//! # The generator
//!
//! [`arb_case`] draws a [`Case`]: a network that passes
//! [`snnc_frontend::check_network`] and lowers, a batch size and a seed for
//! the weights and inputs. A network is an input shape (`[n]`, `[h, w]` or
//! `[1, h, w]`), an optional encoder, up to five drawn layers (and the
//! `Flatten` and `LI` a `MaxLogSoftmax` readout may need) and a readout. The
//! layers are drawn without looking at shapes ([`LayerSpec`]) and then
//! fitted to the shape that flows through them ([`build`]): a layer that
//! cannot apply (a `Conv2d` on a vector) is left out and sizes are clamped,
//! so that shrinking a failing case (dropping a layer, a smaller size)
//! always gives another valid network. Every per-sample value has at most
//! [`MAX_ELEMENTS`] elements, so a run is cheap.
//!
//! # The comparison
//!
//! [`Reference::run`] runs the interpreter on a module whose `Threshold`
//! operands it has named `<threshold>.margin` (the membrane minus the
//! threshold), so the recording holds them. [`compare`] then checks another
//! run against it:
//!
//! - floats agree within `|a - e| <= 1e-5 * max(1, |e|)`, element by element
//!   (relative to the element, with an absolute floor of 1e-5 for values
//!   below 1); NaN matches NaN and an infinity matches itself;
//! - spikes (every tensor whose IR value has the `spike` dtype: `*.z`,
//!   `encoder.z*`, a spiking `output`, a max/last readout of spikes) are
//!   equal, except that a spike may flip where the reference membrane is
//!   within [`SPIKE_MARGIN`] of threshold.
//!
//! A flip changes everything downstream of it in that sample, so the rule
//! is applied per batch element: the *first* flip (earliest step, then
//! earliest node in execution order) must sit on a near-threshold margin,
//! and then every value of that sample from that step on is excused; the
//! case as a whole is [`Verdict::Excused`]. Values of earlier steps must
//! still match. Where the other run does not record some spike trace of the
//! reference (a pass dropped its name), a flip there shows only downstream:
//! then a difference in a sample is also excused if one of those unrecorded
//! neurons of that sample was within [`SPIKE_MARGIN`] of threshold at or
//! before that step.

#![allow(dead_code)]

mod batchnorm;
pub mod concat_net;
mod coverage;
mod inputs;
mod wire;
mod zoo;
#[allow(unused_imports)] // Not every test crate uses them.
pub use coverage::coverage;
#[allow(unused_imports)]
pub use inputs::inputs;
#[allow(unused_imports)]
pub use wire::wire;
mod proptest_config;
/// The configuration of every property test (fixed seed, no persistence;
/// see `tests/common/proptest_config.rs` for exploring).
#[allow(unused_imports)] // Not every test crate has property tests.
pub use proptest_config::proptest_config;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use snnc_frontend::{
    Encoder, Layer, LiParams, LifAdExParams, LifBoxParams, LifParams, LowerOptions, LsnnParams, Method, Network,
    NeuronParam, NeuronParams, Pair, ParamValue, Readout, ResetMethod,
};
use snnc_interp::{RunOptions, RunResult};
use snnc_ir::{Dim, Dtype, Module, Op, RegionKind};
use snnc_runtime::{Tensor, Weights};

/// The most elements of one sample's value at any layer.
pub const MAX_ELEMENTS: u32 = 64;
/// Floats agree within `FLOAT_RTOL * max(1, |expected|)`.
pub const FLOAT_RTOL: f64 = 1e-5;
/// A spike may differ where the reference membrane is this close to threshold.
pub const SPIKE_MARGIN: f64 = 1e-4;

/// One random test case.
#[derive(Clone, Debug)]
pub struct Case {
    pub net: Network,
    pub batch: usize,
    /// Seeds the weights ([`weights`]) and the inputs ([`inputs`]).
    pub seed: u64,
}

impl Case {
    /// The lowered f32 module.
    pub fn module(&self) -> Module {
        lower(&self.net)
    }
}

/// Lowers a network to an f32 module; panics with the frontend's message
/// (a generated network that does not lower is a bug of the generator).
pub fn lower(net: &Network) -> Module {
    snnc_frontend::lower(net, "case.ron", &LowerOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{}", snnc_frontend::to_ron(net)))
}

/// The default weights of `module` for a case seed.
pub fn weights(module: &Module, seed: u64) -> Weights {
    snnc_runtime::init_weights(module, seed)
}

// ---------------------------------------------------------------------------
// The generator.

/// A layer drawn without knowing the shape it will get; [`build`] fits it.
#[derive(Clone, Debug)]
pub enum LayerSpec {
    Linear {
        out: u32,
        bias: bool,
    },
    Conv2d {
        out_channels: u32,
        kernel: [u32; 2],
        stride: [u32; 2],
        padding: [u32; 2],
        dilation: [u32; 2],
        groups: u32,
        bias: bool,
    },
    /// `kind`: 0 `MaxPool2d`, 1 `AvgPool2d`, 2 `SumPool2d`, 3 `LPPool2d`.
    Pool {
        kind: u8,
        kernel: [u32; 2],
        stride: Option<[u32; 2]>,
        padding: [u32; 2],
    },
    Flatten,
    Scale {
        factor: f64,
    },
    ReLU,
    Lif(LifParams),
    LifRecurrent {
        hidden: u32,
        p: LifParams,
        autapses: bool,
    },
    Li(LiParams),
    LiLinear {
        out: u32,
        p: LiParams,
    },
    Lsnn(LsnnParams),
    LsnnRecurrent {
        hidden: u32,
        p: LsnnParams,
        autapses: bool,
    },
    LifBox(LifBoxParams),
    LifAdEx(LifAdExParams),
    /// Norse's zoo and `Neuron` layers written as equations.
    Zoo(zoo::ZooSpec),
    /// `BatchNorm2d` (on `[C, H, W]`) or `BatchNorm1d` (on `[C]`).
    BatchNorm {
        two_d: bool,
        eps: f64,
        momentum: f64,
    },
}

/// The input shape of a network: a vector, a 2-d map, a one-channel image
/// or an image of a few channels.
fn arb_input() -> impl Strategy<Value = Vec<u32>> {
    prop_oneof![
        (1..=MAX_ELEMENTS).prop_map(|n| vec![n]),
        (1..=8u32, 1..=8u32).prop_map(|(h, w)| vec![h, w]),
        (1..=8u32, 1..=8u32).prop_map(|(h, w)| vec![1, h, w]),
        // Several channels, for convolutions with channel groups.
        (2..=4u32, 1..=6u32, 1..=6u32).prop_map(|(c, h, w)| vec![c, h, w]),
    ]
}

fn arb_method() -> impl Strategy<Value = Method> {
    prop::sample::select(Method::ALL.to_vec())
}

/// `alpha` in a range every surrogate accepts (> 0).
fn arb_alpha() -> impl Strategy<Value = f64> {
    prop_oneof![Just(100.0), 0.1f64..100.0]
}

/// `(v_reset, v_th)` with `v_th > v_reset`.
fn arb_reset_threshold() -> impl Strategy<Value = (f64, f64)> {
    (-0.5f64..0.5, 0.05f64..1.5).prop_map(|(v_reset, gap)| (v_reset, v_reset + gap))
}

/// Which float fields of a neuron layer are per neuron and which are
/// trainable (bit `k`: field `k` of `FIELDS`).
fn arb_variation() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![2 => Just((0, 0)), 1 => (any::<u32>(), Just(0)), 1 => (Just(0), any::<u32>()), 1 => (any::<u32>(), any::<u32>())]
}

/// Makes some fields per neuron (a two-value list `[x, x']`, spread over
/// the layer's neurons by [`spread`] once its shape is known) and some
/// trainable. `x'` keeps the drawn ranges' rules: inverse time constants
/// shrink (the step rule holds), `v_th` rises and `v_leak`, `v_reset` fall
/// (`v_th > v_reset` holds).
fn vary<P: NeuronParams + 'static>((mut p, (per_neuron, trainable)): (P, (u32, u32))) -> P {
    let mut train = Vec::new();
    for (k, &field) in P::FIELDS.iter().enumerate() {
        let value = p.get_mut(field).expect("a field of P");
        if per_neuron & (1 << k) != 0
            && let Some(x) = value.scalar()
        {
            let other = match field {
                NeuronParam::v_th => x + 0.1,
                NeuronParam::v_leak | NeuronParam::v_reset => x - 0.1,
                _ => x * 0.8,
            };
            *value = ParamValue::PerNeuron(vec![x, other]);
        }
        if trainable & (1 << k) != 0 {
            train.push(field);
        }
    }
    set_trainable(&mut p, train);
    p
}

/// Sets the `trainable` list of any parameter struct.
fn set_trainable<P: NeuronParams + 'static>(p: &mut P, fields: Vec<NeuronParam>) {
    let any: &mut dyn std::any::Any = p;
    if let Some(p) = any.downcast_mut::<LifParams>() {
        p.trainable = fields;
    } else if let Some(p) = any.downcast_mut::<LiParams>() {
        p.trainable = fields;
    } else if let Some(p) = any.downcast_mut::<LsnnParams>() {
        p.trainable = fields;
    } else if let Some(p) = any.downcast_mut::<LifBoxParams>() {
        p.trainable = fields;
    } else if let Some(p) = any.downcast_mut::<LifAdExParams>() {
        p.trainable = fields;
    }
}

/// Spreads every two-value per-neuron list of `p` over the `n` neurons of
/// its layer, evenly from the first value to the second.
fn spread<P: NeuronParams + Clone>(p: &P, n: u32) -> P {
    let mut p = p.clone();
    for &field in P::FIELDS {
        let value = p.get_mut(field).expect("a field of P");
        if let ParamValue::PerNeuron(v) = value
            && v.len() == 2
            && n != 2
        {
            let (a, b) = (v[0], v[1]);
            let d = f64::from(n.max(2) - 1);
            *v = (0..n).map(|k| a + (b - a) * f64::from(k) / d).collect();
        }
    }
    p
}

fn arb_lif() -> BoxedStrategy<LifParams> {
    let random = (50.0f64..400.0, 50.0f64..200.0, -0.5f64..0.5, arb_reset_threshold(), arb_method(), arb_alpha())
        .prop_map(|(tau_syn_inv, tau_mem_inv, v_leak, (v_reset, v_th), method, alpha)| LifParams {
            tau_syn_inv: tau_syn_inv.into(),
            tau_mem_inv: tau_mem_inv.into(),
            v_leak: v_leak.into(),
            v_th: v_th.into(),
            v_reset: v_reset.into(),
            method,
            alpha,
            trainable: Vec::new(),
        });
    let default = arb_method().prop_map(|method| LifParams { method, ..LifParams::default() });
    (prop_oneof![1 => default, 3 => random], arb_variation()).prop_map(vary).boxed()
}

fn arb_li() -> BoxedStrategy<LiParams> {
    let random =
        (50.0f64..400.0, 50.0f64..200.0, -0.5f64..0.5).prop_map(|(tau_syn_inv, tau_mem_inv, v_leak)| LiParams {
            tau_syn_inv: tau_syn_inv.into(),
            tau_mem_inv: tau_mem_inv.into(),
            v_leak: v_leak.into(),
            trainable: Vec::new(),
        });
    (prop_oneof![1 => Just(LiParams::default()), 3 => random], arb_variation()).prop_map(vary).boxed()
}

fn arb_lsnn() -> BoxedStrategy<LsnnParams> {
    let random = (
        50.0f64..400.0,
        50.0f64..200.0,
        0.1f64..20.0,
        -0.5f64..0.5,
        arb_reset_threshold(),
        0.0f64..3.0,
        arb_method(),
        arb_alpha(),
    )
        .prop_map(|(tau_syn_inv, tau_mem_inv, tau_adapt_inv, v_leak, (v_reset, v_th), beta, method, alpha)| {
            LsnnParams {
                tau_syn_inv: tau_syn_inv.into(),
                tau_mem_inv: tau_mem_inv.into(),
                tau_adapt_inv: tau_adapt_inv.into(),
                v_leak: v_leak.into(),
                v_th: v_th.into(),
                v_reset: v_reset.into(),
                beta: beta.into(),
                method,
                alpha,
                trainable: Vec::new(),
            }
        });
    let default = arb_method().prop_map(|method| LsnnParams { method, ..LsnnParams::default() });
    (prop_oneof![1 => default, 3 => random], arb_variation()).prop_map(vary).boxed()
}

fn arb_lif_box() -> BoxedStrategy<LifBoxParams> {
    let reset = prop_oneof![Just(ResetMethod::Value), Just(ResetMethod::Subtract)];
    (50.0f64..200.0, -0.5f64..0.5, arb_reset_threshold(), arb_method(), arb_alpha(), reset)
        .prop_map(|(tau_mem_inv, v_leak, (v_reset, v_th), method, alpha, reset_method)| LifBoxParams {
            tau_mem_inv: tau_mem_inv.into(),
            v_leak: v_leak.into(),
            v_th: v_th.into(),
            v_reset: v_reset.into(),
            method,
            alpha,
            reset_method,
            trainable: Vec::new(),
        })
        .prop_flat_map(|p| (Just(p), arb_variation()))
        .prop_map(vary)
        .boxed()
}

#[allow(non_snake_case)]
fn arb_lif_adex() -> BoxedStrategy<LifAdExParams> {
    let random = (
        (0.0f64..8.0, 0.0f64..0.1, 0.1f64..1.0, 0.5f64..10.0),
        (50.0f64..400.0, 50.0f64..200.0, -0.5f64..0.5, arb_reset_threshold(), arb_method(), arb_alpha()),
    )
        .prop_map(
            |(
                (adaptation_current, adaptation_spike, delta_T, tau_ada_inv),
                (tau_syn_inv, tau_mem_inv, v_leak, (v_reset, v_th), method, alpha),
            )| LifAdExParams {
                adaptation_current: adaptation_current.into(),
                adaptation_spike: adaptation_spike.into(),
                delta_T: delta_T.into(),
                tau_ada_inv: tau_ada_inv.into(),
                tau_syn_inv: tau_syn_inv.into(),
                tau_mem_inv: tau_mem_inv.into(),
                v_leak: v_leak.into(),
                v_th: v_th.into(),
                v_reset: v_reset.into(),
                method,
                alpha,
                trainable: Vec::new(),
            },
        );
    let default = arb_method().prop_map(|method| LifAdExParams { method, ..LifAdExParams::default() });
    (prop_oneof![1 => default, 3 => random], arb_variation()).prop_map(vary).boxed()
}

/// A pair of values from `r`, equal half of the time.
fn pair(r: std::ops::RangeInclusive<u32>) -> impl Strategy<Value = [u32; 2]> {
    prop_oneof![r.clone().prop_map(|v| [v, v]), (r.clone(), r).prop_map(|(h, w)| [h, w])]
}

/// A layer of any kind. Shape-changing kinds that need an image (`Conv2d`,
/// the pools) are drawn more often, since [`build`] drops them where the
/// shape does not fit.
pub fn arb_layer() -> impl Strategy<Value = LayerSpec> {
    let size = 1..=MAX_ELEMENTS;
    prop_oneof![
        3 => (size.clone(), any::<bool>()).prop_map(|(out, bias)| LayerSpec::Linear { out, bias }),
        4 => (1..=4u32, pair(1..=4u32), pair(1..=3u32), pair(0..=2u32), pair(1..=2u32), 1..=3u32, any::<bool>()).prop_map(
            |(out_channels, kernel, stride, padding, dilation, groups, bias)| LayerSpec::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias
            }
        ),
        4 => (0..4u8, pair(1..=3u32), prop::option::of(pair(1..=3u32)), pair(0..=1u32))
            .prop_map(|(kind, kernel, stride, padding)| LayerSpec::Pool { kind, kernel, stride, padding }),
        1 => Just(LayerSpec::Flatten),
        1 => (-2.0f64..2.0).prop_map(|factor| LayerSpec::Scale { factor }),
        1 => Just(LayerSpec::ReLU),
        2 => arb_lif().prop_map(LayerSpec::Lif),
        2 => (size.clone(), arb_lif(), any::<bool>())
            .prop_map(|(hidden, p, autapses)| LayerSpec::LifRecurrent { hidden, p, autapses }),
        2 => arb_li().prop_map(LayerSpec::Li),
        2 => (size.clone(), arb_li()).prop_map(|(out, p)| LayerSpec::LiLinear { out, p }),
        2 => arb_lsnn().prop_map(LayerSpec::Lsnn),
        2 => (size, arb_lsnn(), any::<bool>())
            .prop_map(|(hidden, p, autapses)| LayerSpec::LsnnRecurrent { hidden, p, autapses }),
        2 => arb_lif_box().prop_map(LayerSpec::LifBox),
        2 => arb_lif_adex().prop_map(LayerSpec::LifAdEx),
        4 => zoo::arb_zoo().prop_map(LayerSpec::Zoo),
        2 => (any::<bool>(), 1e-5f64..1e-2, 0.0f64..=1.0)
            .prop_map(|(two_d, eps, momentum)| LayerSpec::BatchNorm { two_d, eps, momentum }),
    ]
}

pub fn arb_encoder() -> impl Strategy<Value = Option<Encoder>> {
    prop_oneof![
        3 => Just(None),
        1 => arb_lif().prop_map(|p| Some(Encoder::ConstantCurrent { p })),
        1 => arb_lif().prop_map(|p| Some(Encoder::SpikeLatency { p })),
        1 => (prop_oneof![Just(100.0), 10.0f64..1000.0], any::<u64>())
            .prop_map(|(f_max, seed)| Some(Encoder::Poisson { f_max, seed })),
        1 => (prop_oneof![Just(100.0), 10.0f64..1000.0], any::<u64>())
            .prop_map(|(f_max, seed)| Some(Encoder::SignedPoisson { f_max, seed })),
        1 => Just(Some(Encoder::Direct {})),
    ]
}

pub fn arb_readout() -> impl Strategy<Value = Readout> {
    prop::sample::select(vec![
        Readout::Sequence,
        Readout::MaxLogSoftmax,
        Readout::Max,
        Readout::LastStep,
        Readout::Mean,
        Readout::SpikeCount,
    ])
}

/// `dt` in `(1e-4, 2e-3)`, often Norse's 1e-3.
fn arb_dt() -> impl Strategy<Value = f64> {
    prop_oneof![Just(1e-3), 1.01e-4f64..2e-3]
}

/// A random valid network with inputs: see the module doc.
pub fn arb_case() -> impl Strategy<Value = Case> {
    (
        arb_input(),
        arb_encoder(),
        prop::collection::vec(arb_layer(), 0..=5),
        arb_readout(),
        1..=50u32,
        arb_dt(),
        1..=4usize,
        any::<u64>(),
        prop::collection::vec(any::<u32>(), 0..=3),
    )
        .prop_map(|(input, encoder, layers, readout, steps, dt, batch, seed, picks)| {
            let mut net = build(input, encoder, &layers, readout, steps, dt, seed);
            wire(&mut net, &picks);
            Case { net, batch, seed }
        })
}

fn elements(shape: &[u32]) -> u32 {
    shape.iter().product()
}

/// The largest size of the last dimension that keeps `shape` (its last
/// dimension replaced) within [`MAX_ELEMENTS`].
fn clamp_last(shape: &[u32], want: u32) -> u32 {
    let rest = elements(&shape[..shape.len() - 1]).max(1);
    want.min(MAX_ELEMENTS / rest).max(1)
}

/// Fits one layer to the current shape: the layer, its output shape and
/// whether that output is a spike (`None`: the input's dtype is kept);
/// `None` where the layer cannot apply.
fn fit(spec: &LayerSpec, shape: &[u32]) -> Option<(Layer, Vec<u32>, Option<bool>)> {
    let last = |n: u32| {
        let mut s = shape.to_vec();
        *s.last_mut().expect("shapes have rank >= 1") = n;
        s
    };
    Some(match spec {
        LayerSpec::Linear { out, bias } => {
            let out = clamp_last(shape, *out);
            (
                Layer::Linear {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name: None,
                    input: None,
                    out,
                    bias: *bias,
                    input_density: None,
                    plasticity: None,
                },
                last(out),
                Some(false),
            )
        }
        LayerSpec::Conv2d { out_channels, kernel, stride, padding, dilation, groups, bias } => {
            let [c, h, w] = shape[..] else { return None };
            // Per axis, a dilated kernel that fits the padded input (the
            // dilation, then the kernel, shrunk until it does).
            let (mut k, mut d, mut out) = (*kernel, *dilation, [0; 2]);
            for (ax, n) in [h, w].into_iter().enumerate() {
                let padded = n + 2 * padding[ax];
                while d[ax] * (k[ax] - 1) + 1 > padded {
                    if d[ax] > 1 { d[ax] -= 1 } else { k[ax] -= 1 }
                }
                out[ax] = (padded - d[ax] * (k[ax] - 1) - 1) / stride[ax] + 1;
            }
            // Groups dividing the input channels, and output channels a multiple of them.
            let g = (1..=(*groups).min(c)).rev().find(|g| c % g == 0).unwrap_or(1);
            let out_channels = ((*out_channels).min(MAX_ELEMENTS / (out[0] * out[1])) / g * g).max(g);
            if out_channels * out[0] * out[1] > MAX_ELEMENTS {
                return None;
            }
            let layer = Layer::Conv2d {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: None,
                in_channels: None,
                out_channels,
                kernel_size: Pair(k),
                stride: Pair(*stride),
                padding: Pair(*padding),
                dilation: Pair(d),
                groups: g,
                bias: *bias,
                input_density: None,
                plasticity: None,
            };
            (layer, vec![out_channels, out[0], out[1]], Some(false))
        }
        LayerSpec::Pool { kind, kernel, stride, padding } => {
            let r = shape.len();
            if r < 2 {
                return None;
            }
            // A kernel within the input, a padding of at most half of it (none for LPPool2d).
            let k = [kernel[0].min(shape[r - 2]), kernel[1].min(shape[r - 1])];
            let p = if *kind == 3 { [0, 0] } else { [padding[0].min(k[0] / 2), padding[1].min(k[1] / 2)] };
            let s = stride.unwrap_or(k);
            let mut out = shape.to_vec();
            for ax in 0..2 {
                out[r - 2 + ax] = (shape[r - 2 + ax] + 2 * p[ax] - k[ax]) / s[ax] + 1;
            }
            let (name, kernel_size, stride, padding) = (None, Pair(k), stride.map(Pair), Pair(p));
            let layer = match kind {
                0 => Layer::MaxPool2d {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name,
                    kernel_size,
                    stride,
                    padding,
                },
                1 => Layer::AvgPool2d {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name,
                    kernel_size,
                    stride,
                    padding,
                    count_include_pad: true,
                },
                2 => Layer::SumPool2d {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name,
                    kernel_size,
                    stride,
                    padding,
                },
                _ => Layer::LPPool2d {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name,
                    norm_type: 1.0,
                    kernel_size,
                    stride,
                },
            };
            // Max keeps the dtype; the sums are float.
            (layer, out, if *kind == 0 { None } else { Some(false) })
        }
        LayerSpec::Flatten => (
            Layer::Flatten { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name: None },
            vec![elements(shape)],
            None,
        ),
        LayerSpec::Scale { factor } => (
            Layer::Scale {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: None,
                factor: *factor,
            },
            shape.to_vec(),
            Some(false),
        ),
        LayerSpec::ReLU => (
            Layer::ReLU { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name: None },
            shape.to_vec(),
            Some(false),
        ),
        LayerSpec::Lif(p) => (
            Layer::LIF {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: None,
                p: spread(p, elements(shape)),
            },
            shape.to_vec(),
            Some(true),
        ),
        LayerSpec::LifRecurrent { hidden, p, autapses } => {
            let hidden = clamp_last(shape, *hidden);
            let layer = Layer::LIFRecurrent {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: None,
                input: None,
                hidden,
                p: spread(p, elements(&last(hidden))),
                autapses: *autapses,
                input_density: None,
            };
            (layer, last(hidden), Some(true))
        }
        LayerSpec::Li(p) => (
            Layer::LI {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: None,
                p: spread(p, elements(shape)),
            },
            shape.to_vec(),
            Some(false),
        ),
        LayerSpec::LiLinear { out, p } => {
            let out = clamp_last(shape, *out);
            (
                Layer::LILinear {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name: None,
                    input: None,
                    out,
                    p: spread(p, elements(&last(out))),
                    input_density: None,
                },
                last(out),
                Some(false),
            )
        }
        LayerSpec::Lsnn(p) => (
            Layer::LSNN {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: None,
                p: spread(p, elements(shape)),
            },
            shape.to_vec(),
            Some(true),
        ),
        LayerSpec::LsnnRecurrent { hidden, p, autapses } => {
            let hidden = clamp_last(shape, *hidden);
            let layer = Layer::LSNNRecurrent {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: None,
                input: None,
                hidden,
                p: spread(p, elements(&last(hidden))),
                autapses: *autapses,
                input_density: None,
            };
            (layer, last(hidden), Some(true))
        }
        LayerSpec::LifBox(p) => (
            Layer::LIFBox {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: None,
                p: spread(p, elements(shape)),
            },
            shape.to_vec(),
            Some(true),
        ),
        LayerSpec::LifAdEx(p) => (
            Layer::LIFAdEx {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: None,
                p: spread(p, elements(shape)),
            },
            shape.to_vec(),
            Some(true),
        ),
        LayerSpec::BatchNorm { two_d, eps, momentum } => return batchnorm::fit(*two_d, *eps, *momentum, shape),
        LayerSpec::Zoo(spec) => return zoo::fit(spec, shape),
    })
}

/// Builds a valid network from drawn parts, fitting every layer to the
/// shape before it (see the module doc). A network without an encoder gets
/// at least one layer; a `MaxLogSoftmax` readout gets a `Flatten` where the
/// output is not a vector and an `LI` where it is a spike (log_softmax
/// needs floats).
pub fn build(
    input: Vec<u32>,
    encoder: Option<Encoder>,
    specs: &[LayerSpec],
    readout: Readout,
    steps: u32,
    dt: f64,
    seed: u64,
) -> Network {
    let mut shape = input.clone();
    // A current encoder has no synaptic current to train.
    let fit_encoder = |p: &LifParams| {
        let mut p = spread(p, elements(&input));
        p.trainable.retain(|&f| f != NeuronParam::tau_syn_inv);
        p
    };
    let encoder = encoder.map(|e| match e {
        Encoder::ConstantCurrent { p } => Encoder::ConstantCurrent { p: fit_encoder(&p) },
        Encoder::SpikeLatency { p } => Encoder::SpikeLatency { p: fit_encoder(&p) },
        e => e,
    });
    let direct = matches!(encoder, Some(Encoder::Direct {}));
    // The value encoders give floats (SignedPoisson: -1, 0, 1).
    let mut spike = matches!(
        encoder,
        Some(Encoder::ConstantCurrent { .. } | Encoder::SpikeLatency { .. } | Encoder::Poisson { .. })
    );
    let mut layers = Vec::new();
    for spec in specs {
        if let Some((layer, out, is_spike)) = fit(spec, &shape) {
            spike = is_spike.unwrap_or(spike);
            shape = out;
            layers.push(layer);
        }
    }
    // Without an encoder, or with a `Direct` one, a network needs a layer
    // that computes something.
    if (encoder.is_none() && layers.is_empty()) || (direct && layers.iter().all(|l| matches!(l, Layer::Flatten { .. })))
    {
        layers.push(Layer::LIF {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: None,
            p: LifParams::default(),
        });
        spike = true;
    }
    if readout == Readout::MaxLogSoftmax {
        if shape.len() != 1 {
            layers.push(Layer::Flatten {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: None,
            });
        }
        if spike {
            layers.push(Layer::LI {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: None,
                p: LiParams::default(),
            });
        }
    }
    Network {
        version: 1,
        name: "case".into(),
        steps,
        dt,
        input,
        encoder,
        layers,
        readout,
        seed,
        example_input: Default::default(),
    }
}

// ---------------------------------------------------------------------------
// Reference runs and the comparison.

/// The suffix of the trace name given to a threshold's operand.
pub const MARGIN_SUFFIX: &str = ".margin";

/// Names the operand of every `Threshold` node `<threshold>.margin`, where
/// the threshold is named and the operand is not, so that a recorded run
/// holds the membrane minus the threshold. Returns the names it gave, by
/// threshold name.
pub fn name_margins(module: &mut Module) -> BTreeMap<String, String> {
    let mut given = BTreeMap::new();
    let thresholds: Vec<_> = module
        .nodes
        .iter()
        .filter_map(|(_, n)| match (&n.op, &n.name) {
            (Op::Threshold { arg, .. }, Some(name)) => Some((*arg, name.clone())),
            _ => None,
        })
        .collect();
    for (arg, name) in thresholds {
        let node = &mut module.nodes[arg];
        if node.name.is_none() {
            let margin = format!("{name}{MARGIN_SUFFIX}");
            node.name = Some(margin.clone());
            given.insert(name, margin);
        }
    }
    given
}

/// Validates `module` and runs it on the interpreter, recording every
/// named node. Weights the module has no parameter for are left out (a
/// pass may remove a parameter it no longer reads).
pub fn run_interp(module: &Module, weights: &Weights, inputs: &BTreeMap<String, Tensor>) -> Result<RunResult, String> {
    let info = snnc_ir::validate(module).map_err(|e| format!("invalid module: {e}"))?;
    let weights: Weights = weights
        .iter()
        .filter(|(k, _)| module.param_by_name(k).is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let opts = RunOptions { record: true, ..RunOptions::default() };
    snnc_interp::run(module, &info, &weights, inputs, &opts).map_err(|e| format!("interpreter: {e}"))
}

/// How one recorded tensor of the reference is laid out.
#[derive(Clone, Debug)]
struct Layout {
    /// Its first dim is time.
    time: bool,
    /// The index of its batch dim, if any.
    batch: Option<usize>,
    /// Its IR value is a spike.
    spike: bool,
    /// The trace holding its threshold margin, element for element.
    margin: Option<String>,
    /// Execution order of its node, to find the first flip of a step.
    order: usize,
}

/// A reference run of the interpreter, with what [`compare`] needs to know
/// about each of its tensors.
#[derive(Debug)]
pub struct Reference {
    /// The module as run: the given one with its margins named.
    pub module: Module,
    pub result: RunResult,
    outputs: BTreeMap<String, Layout>,
    traces: BTreeMap<String, Layout>,
}

/// The outcome of a successful [`compare`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every value agrees.
    Equal,
    /// A spike flipped where the reference membrane was within
    /// [`SPIKE_MARGIN`] of threshold; what follows from it was not compared.
    Excused(String),
}

impl Reference {
    /// Runs `module` (a clone with its margins named, see [`name_margins`])
    /// on the interpreter, recording everything.
    pub fn run(module: &Module, weights: &Weights, inputs: &BTreeMap<String, Tensor>) -> Result<Reference, String> {
        let mut module = module.clone();
        let margins: BTreeSet<String> = name_margins(&mut module).into_values().collect();
        let result = run_interp(&module, weights, inputs)?;
        let mut in_step = vec![false; module.nodes.len()];
        for region in module.body.iter().filter(|r| r.kind == RegionKind::Step) {
            for &h in &region.nodes {
                in_step[h.index()] = true;
            }
        }
        let layout = |h: snnc_ir::Handle<snnc_ir::Node>| {
            let node = &module.nodes[h];
            let time = in_step[h.index()] || node.ty.seq;
            let batch = node.ty.shape.0.iter().position(|d| *d == Dim::Batch).map(|i| i + usize::from(time));
            let spike = node.ty.dtype == Dtype::Spike;
            // The threshold behind a spike, element for element.
            let mut src = h;
            let margin = loop {
                match &module.nodes[src].op {
                    Op::Threshold { arg, .. } => break module.nodes[*arg].name.clone(),
                    Op::Collect(a) | Op::StopGradient(a) => src = *a,
                    Op::Select { on_true, on_false, .. } => {
                        // The latency encoder: `select(seen, 0, z_raw)`.
                        let (t, f) = (&module.nodes[*on_true], &module.nodes[*on_false]);
                        src = if matches!(t.op, Op::Const { .. }) && f.ty.shape == node.ty.shape {
                            *on_false
                        } else if matches!(f.op, Op::Const { .. }) && t.ty.shape == node.ty.shape {
                            *on_true
                        } else {
                            break None;
                        };
                    }
                    _ => break None,
                }
            };
            let margin = if spike && time { margin.filter(|m| margins.contains(m)) } else { None };
            Layout { time, batch, spike, margin, order: h.index() }
        };
        let outputs = module.outputs.iter().map(|o| (o.name.clone(), layout(o.value))).collect();
        let traces = result
            .traces
            .keys()
            .filter_map(|name| module.node_by_name(name).map(|h| (name.clone(), layout(h))))
            .collect();
        Ok(Reference { module, result, outputs, traces })
    }
}

/// Where an element of a tensor sits: its step (if the tensor has time),
/// its batch element (if it has a batch) and the rest of its index.
#[derive(Clone, Copy, Debug)]
struct Place {
    t: Option<usize>,
    b: Option<usize>,
    /// The flat index within one step of one sample.
    n: usize,
}

fn place(layout: &Layout, shape: &[usize], flat: usize) -> Place {
    let mut rem = flat;
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        idx[i] = rem % d.max(1);
        rem /= d.max(1);
    }
    let t = layout.time.then(|| idx[0]);
    let b = layout.batch.map(|i| idx[i]);
    let mut n = 0;
    for (i, &d) in shape.iter().enumerate() {
        if (layout.time && i == 0) || layout.batch == Some(i) {
            continue;
        }
        n = n * d + idx[i];
    }
    Place { t, b, n }
}

fn render(p: Place) -> String {
    let mut parts = Vec::new();
    if let Some(t) = p.t {
        parts.push(format!("t={t}"));
    }
    if let Some(b) = p.b {
        parts.push(format!("b={b}"));
    }
    parts.push(format!("n={}", p.n));
    parts.join(", ")
}

/// Whether two floats agree by the rule of the module doc.
pub fn floats_agree(actual: f64, expected: f64) -> bool {
    if actual.is_nan() || expected.is_nan() {
        return actual.is_nan() && expected.is_nan();
    }
    if actual == expected {
        return true;
    }
    (actual - expected).abs() <= FLOAT_RTOL * expected.abs().max(1.0)
}

/// A flip of a spike: where and in which tensor.
#[derive(Clone, Debug)]
struct Flip {
    /// Step (`usize::MAX` for a value without time), then node order.
    key: (usize, usize),
    what: String,
    place: Place,
    margin: Option<String>,
    flat: usize,
    expected: f64,
    actual: f64,
}

/// Compares `actual` with the reference by the rule of the module doc:
/// every output of the reference must exist in `actual` with the same
/// shape, and every reference trace that `actual` also recorded (by name)
/// must agree. Returns why not, with the place of the first difference.
///
/// The reference side is a [`Reference`], not a bare `RunResult`, because
/// the rule needs to know which tensors are spikes and where their margins
/// are, which only the reference module tells.
pub fn compare(reference: &Reference, actual: &RunResult) -> Result<Verdict, String> {
    // A named value that `time-batch` hoisted out of its step loop (it
    // reads only static values, e.g. the first layer after a `Direct`
    // encoder) is recorded once: compare it with every step.
    let broadcast: BTreeMap<&String, Tensor> = reference
        .result
        .traces
        .iter()
        .filter_map(|(name, expected)| {
            let got = actual.traces.get(name)?;
            let per_step = expected.shape.len() == got.shape.len() + 1 && expected.shape[1..] == got.shape[..];
            per_step.then(|| {
                let steps = expected.shape[0];
                let data = (0..steps).flat_map(|_| got.data.iter().copied()).collect();
                (name, Tensor { shape: expected.shape.clone(), dtype: got.dtype, data })
            })
        })
        .collect();
    let mut pairs: Vec<(String, &Layout, &Tensor, &Tensor)> = Vec::new();
    for (name, expected) in &reference.result.outputs {
        let got = actual.outputs.get(name).ok_or_else(|| format!("output `{name}` is missing"))?;
        pairs.push((format!("output `{name}`"), &reference.outputs[name], expected, got));
    }
    for (name, expected) in &reference.result.traces {
        let got = broadcast.get(name).or_else(|| actual.traces.get(name));
        if let (Some(got), Some(layout)) = (got, reference.traces.get(name)) {
            pairs.push((format!("trace `{name}`"), layout, expected, got));
        }
    }
    for (what, _, expected, got) in &pairs {
        if expected.shape != got.shape {
            return Err(format!("{what} has shape {:?}, the reference has {:?}", got.shape, expected.shape));
        }
    }

    // 1. The first flip of each batch element.
    let mut first: BTreeMap<Option<usize>, Flip> = BTreeMap::new();
    for (what, layout, expected, got) in &pairs {
        if !layout.spike {
            continue;
        }
        for (flat, (&e, &a)) in expected.data.iter().zip(&got.data).enumerate() {
            if e == a {
                continue;
            }
            let p = place(layout, &expected.shape, flat);
            let key = (p.t.unwrap_or(usize::MAX), layout.order);
            let flip =
                Flip { key, what: what.clone(), place: p, margin: layout.margin.clone(), flat, expected: e, actual: a };
            match first.get(&p.b) {
                Some(f) if f.key <= key => {}
                _ => {
                    first.insert(p.b, flip);
                }
            }
        }
    }
    // Thresholds whose spikes the other run does not record: a flip there
    // shows only downstream, at a place that is not itself near threshold.
    let hidden: Vec<&str> = reference
        .traces
        .iter()
        .filter(|(name, layout)| layout.spike && !actual.traces.contains_key(*name))
        .filter_map(|(_, layout)| layout.margin.as_deref())
        .collect();
    let mut excused = Vec::new();
    // Per batch element: from which step on values are excused.
    let mut excused_from: BTreeMap<Option<usize>, usize> = BTreeMap::new();
    for (b, flip) in &first {
        let margin = flip.margin.as_ref().and_then(|m| reference.result.traces.get(m)).map(|m| m.data[flip.flat]);
        let at = render(flip.place);
        match margin {
            Some(m) if m.abs() <= SPIKE_MARGIN => {
                excused.push(format!("{} flips at [{at}] with margin {m:e}", flip.what));
                excused_from.insert(*b, flip.key.0);
            }
            _ => {
                if let Some(near) = near_threshold(reference, &hidden, *b, flip.key.0) {
                    excused.push(format!("{} flips at [{at}] after {near}", flip.what));
                    excused_from.insert(*b, flip.key.0);
                    continue;
                }
                let margin = margin.map_or("no margin recorded".to_string(), |m| format!("margin {m:e}"));
                return Err(format!(
                    "{} differs at [{at}]: expected {}, got {} ({margin}; the first spike that differs in this \
                     sample, not near threshold)",
                    flip.what, flip.expected, flip.actual
                ));
            }
        }
    }

    // 2. Every value before the first flip of its sample.
    for (what, layout, expected, got) in &pairs {
        for (flat, (&e, &a)) in expected.data.iter().zip(&got.data).enumerate() {
            let equal = if layout.spike { e == a } else { floats_agree(a, e) };
            if equal {
                continue;
            }
            let p = place(layout, &expected.shape, flat);
            let t = p.t.unwrap_or(usize::MAX);
            if excused_from.get(&p.b).is_some_and(|&t0| t >= t0) || excused_from.contains_key(&None) {
                continue;
            }
            // A difference whose cause the other run did not record:
            // excused if a hidden membrane of this sample was near threshold.
            if let Some(near) = near_threshold(reference, &hidden, p.b, t) {
                excused.push(format!("{what} differs at [{}] after {near}", render(p)));
                excused_from.insert(p.b, t);
                continue;
            }
            return Err(format!(
                "{what} differs at [{}]: expected {e}, got {a} (|diff| {:e}, tolerance {:e})",
                render(p),
                (a - e).abs(),
                FLOAT_RTOL * e.abs().max(1.0)
            ));
        }
    }
    if excused.is_empty() { Ok(Verdict::Equal) } else { Ok(Verdict::Excused(excused.join("; "))) }
}

/// The first of the margin traces `names` of the reference within
/// [`SPIKE_MARGIN`] in batch element `b` at a step `<= t`, described.
fn near_threshold(reference: &Reference, names: &[&str], b: Option<usize>, t: usize) -> Option<String> {
    for &name in names {
        let (Some(m), Some(h)) = (reference.result.traces.get(name), reference.module.node_by_name(name)) else {
            continue;
        };
        let node = &reference.module.nodes[h];
        let batch = node.ty.shape.0.iter().position(|d| *d == Dim::Batch).map(|i| i + 1);
        let layout = Layout { time: true, batch, spike: false, margin: None, order: 0 };
        for (flat, &x) in m.data.iter().enumerate() {
            if x.abs() > SPIKE_MARGIN {
                continue;
            }
            let p = place(&layout, &m.shape, flat);
            if p.t.is_some_and(|pt| pt <= t) && (b.is_none() || p.b == b) {
                return Some(format!("`{name}` = {x:e} at [{}] (a spike the other run does not record)", render(p)));
            }
        }
    }
    None
}

/// One case drawn from [`arb_case`] with `runner`'s generator (use
/// `TestRunner::deterministic()` for a fixed sequence).
pub fn sample(runner: &mut proptest::test_runner::TestRunner) -> Case {
    use proptest::strategy::ValueTree;
    arb_case().new_tree(runner).expect("the generator never rejects").current()
}

/// The fixture nets of `tests/nets/*.ron`, sorted by file name.
pub fn fixture_paths() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nets");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/nets exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    files.sort();
    files
}

/// The parsed fixture nets, in the order of [`fixture_paths`].
pub fn fixture_nets() -> Vec<Network> {
    fixture_paths().iter().map(|p| snnc_frontend::load_network(p).unwrap_or_else(|e| panic!("{e}"))).collect()
}
