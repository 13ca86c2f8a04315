//! A Rust DSL that builds the same [`Network`] as the RON format, in the
//! style of Norse's constructors.
//!
//! ```
//! use snnc_frontend::dsl::*;
//!
//! let net = Net::new("tutorial", 32)
//!     .input([1, 28, 28])
//!     .encoder(Encoder::constant_current())
//!     .layer(Layer::flatten())
//!     .layer(Layer::lif_recurrent(100).named("lif1").v_th(0.5))
//!     .layer(Layer::linear(10).no_bias())
//!     .layer(Layer::li())
//!     .readout(Readout::MaxLogSoftmax)
//!     .build()?;
//! assert_eq!(net.layers.len(), 4);
//! assert_eq!(net.layers[1].name(1), "lif1");
//! # Ok::<(), snnc_frontend::FrontendError>(())
//! ```
//!
//! Each `Layer::...` and `Encoder::...` constructor returns a builder that
//! has exactly the setters that apply to its kind, so a setter that would do
//! nothing does not compile:
//!
//! ```compile_fail,E0599
//! use snnc_frontend::dsl::*;
//! // LI has no threshold.
//! let li = Layer::li().v_th(0.5);
//! ```
//!
//! Setters on parameters (`.v_th`, `.tau_mem_inv`, ...) set the field of the
//! same name of the layer's `p` (units as in Norse: inverse time constants
//! in 1/s, voltages in arbitrary units); `.params(..)` replaces all of them.
//! Sizes are given to the constructor (`Layer::linear(out)`,
//! `Layer::lif_recurrent(hidden)`, `Layer::conv2d(out_channels,
//! kernel_size)`); the optional input size (`in` in RON) is checked against
//! the previous layer when lowering and is set with `.input_size(n)`
//! (`.in_channels(n)` for `Conv2d`).
//!
//! [`Net::build`] runs [`check_network`], so a value out of range is an
//! error that lists every problem; [`Net::build_unchecked`] skips it.

pub use crate::error::FrontendError;
pub use crate::schema::{
    BatchNormVariant, Encoder, ExampleInput, Layer, LiParams, LifAdExParams, LifBoxParams, LifParams, LsnnParams,
    Merge, Method, Network, Readout, ResetMethod,
};

mod neuron;

use crate::check::check_network;
use crate::schema::{FORMAT_VERSION, NeuronParam, Pair, ParamValue, Stdp};

/// Builds a [`Network`]: `Net::new(name, steps)`, then the input shape,
/// an optional encoder, the layers and the readout.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Net {
    net: Network,
}

impl Net {
    /// A network named `name` that runs `steps` time steps, with `dt` =
    /// 0.001, seed 0, no encoder, no layers and the `Sequence` readout.
    pub fn new(name: impl Into<String>, steps: u32) -> Self {
        Net {
            net: Network {
                version: FORMAT_VERSION,
                name: name.into(),
                steps,
                dt: 0.001,
                input: Vec::new(),
                encoder: None,
                layers: Vec::new(),
                readout: Readout::default(),
                seed: 0,
                example_input: ExampleInput::default(),
            },
        }
    }

    /// The shape of one sample, without batch and time, e.g. `[1, 28, 28]`.
    pub fn input(mut self, shape: impl IntoIterator<Item = u32>) -> Self {
        self.net.input = shape.into_iter().collect();
        self
    }

    /// The time step in seconds (Norse's `dt`, default 0.001).
    pub fn dt(mut self, dt: f64) -> Self {
        self.net.dt = dt;
        self
    }

    /// The seed of the default weight initialisation.
    pub fn seed(mut self, seed: u64) -> Self {
        self.net.seed = seed;
        self
    }

    /// Turns the static input into spikes; see [`Encoder::constant_current`],
    /// [`Encoder::spike_latency`] and [`Encoder::poisson`].
    pub fn encoder(mut self, encoder: impl Into<Encoder>) -> Self {
        self.net.encoder = Some(encoder.into());
        self
    }

    /// Appends a layer.
    pub fn layer(mut self, layer: impl Into<Layer>) -> Self {
        self.net.layers.push(layer.into());
        self
    }

    /// Appends layers.
    pub fn layers<L: Into<Layer>>(mut self, layers: impl IntoIterator<Item = L>) -> Self {
        self.net.layers.extend(layers.into_iter().map(Into::into));
        self
    }

    /// What `snnc run` feeds the network when no input file is given
    /// (default [`ExampleInput::Pattern`]).
    pub fn example_input(mut self, input: ExampleInput) -> Self {
        self.net.example_input = input;
        self
    }

    /// What the network returns (default [`Readout::Sequence`]).
    pub fn readout(mut self, readout: Readout) -> Self {
        self.net.readout = readout;
        self
    }

    /// The checked network. The error lists every problem; it names the
    /// network as its file.
    pub fn build(self) -> Result<Network, FrontendError> {
        check_network(&self.net, &format!("network `{}`", self.net.name))?;
        Ok(self.net)
    }

    /// The network as built, without checking its values.
    pub fn build_unchecked(self) -> Network {
        self.net
    }
}

impl From<Net> for Network {
    /// The network as built, without checking its values.
    fn from(net: Net) -> Network {
        net.net
    }
}

/// `.named(..)` for builders with a `name` field.
macro_rules! named {
    ($($ty:ident),*) => {$(
        impl $ty {
            /// The layer's name (default: the kind in lower case followed by
            /// the layer's index, e.g. `lif1`). Weights are named `NAME.weight`.
            pub fn named(mut self, name: impl Into<String>) -> Self {
                self.name = Some(name.into());
                self
            }
        }
    )*};
}

/// `.input_size(..)` for builders with weights.
macro_rules! input_size {
    ($($ty:ident),*) => {$(
        impl $ty {
            /// The number of input features (`in` in RON). Optional: it is
            /// inferred from the previous layer, and checked when given.
            pub fn input_size(mut self, n: u32) -> Self {
                self.input = Some(n);
                self
            }
        }
    )*};
}

/// `.input_density(..)` for builders with input weights.
macro_rules! input_density {
    ($($ty:ident),*) => {$(
        impl $ty {
            /// The expected fraction of ones in the layer's input when it is
            /// a spike train, in [0, 1] (`input_density` in RON): it guides
            /// the `sparsify` pass's choice of an event-driven product.
            pub fn input_density(mut self, density: f64) -> Self {
                self.input_density = Some(density);
                self
            }
        }
    )*};
}

/// `.autapses(..)` for recurrent builders.
macro_rules! autapses {
    ($($ty:ident),*) => {$(
        impl $ty {
            /// Whether a neuron's recurrent weight onto itself is kept
            /// (Norse's `autapses`, default false: the diagonal of
            /// `recurrent_weights` is zero).
            pub fn autapses(mut self, autapses: bool) -> Self {
                self.autapses = autapses;
                self
            }
        }
    )*};
}

/// `.params(..)` and one setter per listed field of `p`.
macro_rules! params {
    ($ty:ident, $params:ident; $($field:ident: $t:ty),* $(,)?) => {
        impl $ty {
            #[doc = concat!("Replaces all parameters (default: [`", stringify!($params), "::default()`], Norse's defaults).")]
            pub fn params(mut self, p: $params) -> Self {
                self.p = p;
                self
            }
            $(
                #[doc = concat!("Sets `p.", stringify!($field), "` (see [`", stringify!($params), "`]).")]
                #[allow(non_snake_case)]
                pub fn $field(mut self, value: impl Into<$t>) -> Self {
                    self.p.$field = value.into();
                    self
                }
            )*
            /// Sets `p.trainable`: the float parameters training updates,
            /// each a trainable tensor `NAME.FIELD` (`[]` for a scalar value,
            /// the layer's per-sample shape for a per-neuron list).
            pub fn trainable(mut self, fields: impl IntoIterator<Item = NeuronParam>) -> Self {
                self.p.trainable = fields.into_iter().collect();
                self
            }
        }
    };
}

/// `torch.nn.Linear`; made by [`Layer::linear`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Linear {
    name: Option<String>,
    input: Option<u32>,
    out: u32,
    bias: bool,
    input_density: Option<f64>,
    plasticity: Option<Stdp>,
}

/// `torch.nn.Conv2d`; made by [`Layer::conv2d`]. Sizes are an integer
/// (both axes) or a pair `(h, w)` ([`Pair`]).
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Conv2d {
    name: Option<String>,
    in_channels: Option<u32>,
    out_channels: u32,
    kernel_size: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: u32,
    bias: bool,
    input_density: Option<f64>,
    plasticity: Option<Stdp>,
}

/// A pooling layer: `max_pool2d`, `avg_pool2d` or `sum_pool2d`; made by
/// [`Layer::max_pool2d`], [`Layer::avg_pool2d`], [`Layer::sum_pool2d`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Pool2d {
    kind: PoolKind,
    name: Option<String>,
    kernel_size: Pair,
    stride: Option<Pair>,
    padding: Pair,
}

/// Which pooling a [`Pool2d`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PoolKind {
    Max,
    Avg,
    Sum,
}

/// torch's `LPPool2d` with norm 1 (no padding); made by
/// [`Layer::lp_pool2d`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct LpPool2d {
    name: Option<String>,
    kernel_size: Pair,
    stride: Option<Pair>,
}

impl LpPool2d {
    /// The stride (default: the kernel size): `2` or `(2, 1)`.
    pub fn stride(mut self, stride: impl Into<Pair>) -> Self {
        self.stride = Some(stride.into());
        self
    }
}

impl From<LpPool2d> for Layer {
    fn from(b: LpPool2d) -> Layer {
        Layer::LPPool2d {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: b.name,
            norm_type: 1.0,
            kernel_size: b.kernel_size,
            stride: b.stride,
        }
    }
}

/// The builder of `max_pool2d` (kept under its old name).
pub type MaxPool2d = Pool2d;

/// `LIFCell`; made by [`Layer::lif`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Lif {
    name: Option<String>,
    p: LifParams,
}

/// `LIFRecurrentCell`; made by [`Layer::lif_recurrent`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct LifRecurrent {
    name: Option<String>,
    input: Option<u32>,
    hidden: u32,
    p: LifParams,
    autapses: bool,
    input_density: Option<f64>,
}

/// `LICell`; made by [`Layer::li`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Li {
    name: Option<String>,
    p: LiParams,
}

/// `LILinearCell`; made by [`Layer::li_linear`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct LiLinear {
    name: Option<String>,
    input: Option<u32>,
    out: u32,
    p: LiParams,
    input_density: Option<f64>,
}

/// `LSNNCell`; made by [`Layer::lsnn`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Lsnn {
    name: Option<String>,
    p: LsnnParams,
}

/// `LSNNRecurrentCell`; made by [`Layer::lsnn_recurrent`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct LsnnRecurrent {
    name: Option<String>,
    input: Option<u32>,
    hidden: u32,
    p: LsnnParams,
    autapses: bool,
    input_density: Option<f64>,
}

/// `LIFBoxCell`; made by [`Layer::lif_box`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct LifBox {
    name: Option<String>,
    p: LifBoxParams,
}

/// `LIFAdExCell`; made by [`Layer::lif_adex`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct LifAdEx {
    name: Option<String>,
    p: LifAdExParams,
}

named!(Linear, Conv2d, Pool2d, LpPool2d, Lif, LifRecurrent, Li, LiLinear, Lsnn, LsnnRecurrent, LifBox, LifAdEx);
input_size!(Linear, LifRecurrent, LiLinear, LsnnRecurrent);
autapses!(LifRecurrent, LsnnRecurrent);
input_density!(Linear, Conv2d, LifRecurrent, LiLinear, LsnnRecurrent);

params!(Lif, LifParams;
    tau_syn_inv: ParamValue, tau_mem_inv: ParamValue, v_leak: ParamValue, v_th: ParamValue, v_reset: ParamValue, method: Method, alpha: f64);
params!(LifRecurrent, LifParams;
    tau_syn_inv: ParamValue, tau_mem_inv: ParamValue, v_leak: ParamValue, v_th: ParamValue, v_reset: ParamValue, method: Method, alpha: f64);
params!(Li, LiParams; tau_syn_inv: ParamValue, tau_mem_inv: ParamValue, v_leak: ParamValue);
params!(LiLinear, LiParams; tau_syn_inv: ParamValue, tau_mem_inv: ParamValue, v_leak: ParamValue);
params!(Lsnn, LsnnParams;
    tau_syn_inv: ParamValue, tau_mem_inv: ParamValue, tau_adapt_inv: ParamValue, v_leak: ParamValue, v_th: ParamValue, v_reset: ParamValue, beta: ParamValue,
    method: Method, alpha: f64);
params!(LsnnRecurrent, LsnnParams;
    tau_syn_inv: ParamValue, tau_mem_inv: ParamValue, tau_adapt_inv: ParamValue, v_leak: ParamValue, v_th: ParamValue, v_reset: ParamValue, beta: ParamValue,
    method: Method, alpha: f64);
params!(LifBox, LifBoxParams;
    tau_mem_inv: ParamValue, v_leak: ParamValue, v_th: ParamValue, v_reset: ParamValue, method: Method, alpha: f64, reset_method: ResetMethod);
params!(LifAdEx, LifAdExParams;
    adaptation_current: ParamValue, adaptation_spike: ParamValue, delta_T: ParamValue, tau_ada_inv: ParamValue, tau_syn_inv: ParamValue,
    tau_mem_inv: ParamValue, v_leak: ParamValue, v_th: ParamValue, v_reset: ParamValue, method: Method, alpha: f64);

impl Linear {
    /// Whether the layer has a bias (default true).
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// No bias, as `torch.nn.Linear(.., bias=False)`.
    pub fn no_bias(self) -> Self {
        self.bias(false)
    }

    /// A learning rule for the weight during the run (`plasticity:
    /// STDP(...)` in RON), e.g. `.plasticity(Stdp::rule(StdpRule::Additive))`.
    pub fn plasticity(mut self, rule: Stdp) -> Self {
        self.plasticity = Some(rule);
        self
    }
}

impl Conv2d {
    /// STDP on the kernel (`plasticity: STDP(...)` in RON; Norse's
    /// `stdp_step_conv2d`, one channel group).
    pub fn plasticity(mut self, rule: Stdp) -> Self {
        self.plasticity = Some(rule);
        self
    }

    /// The number of input channels. Optional: it is inferred from the
    /// previous layer, and checked when given.
    pub fn in_channels(mut self, n: u32) -> Self {
        self.in_channels = Some(n);
        self
    }

    /// The stride (default 1): `2` or `(2, 1)`.
    pub fn stride(mut self, stride: impl Into<Pair>) -> Self {
        self.stride = stride.into();
        self
    }

    /// Zero padding on each side (default 0): `1` or `(2, 4)`.
    pub fn padding(mut self, padding: impl Into<Pair>) -> Self {
        self.padding = padding.into();
        self
    }

    /// The spacing of the kernel taps (default 1): `2` or `(2, 1)`.
    pub fn dilation(mut self, dilation: impl Into<Pair>) -> Self {
        self.dilation = dilation.into();
        self
    }

    /// Channel groups (default 1): it must divide both channel counts; the
    /// weight is `[out_channels, in_channels / groups, kh, kw]`.
    pub fn groups(mut self, groups: u32) -> Self {
        self.groups = groups;
        self
    }

    /// Whether the layer has a bias (default true).
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// No bias, as `torch.nn.Conv2d(.., bias=False)`.
    pub fn no_bias(self) -> Self {
        self.bias(false)
    }
}

impl Pool2d {
    /// The stride (default: the kernel size): `2` or `(2, 1)`.
    pub fn stride(mut self, stride: impl Into<Pair>) -> Self {
        self.stride = Some(stride.into());
        self
    }

    /// Padding on each side (default 0, at most half the kernel): `1` or
    /// `(1, 0)`. Max pooling never takes it; the sums count it as 0.
    pub fn padding(mut self, padding: impl Into<Pair>) -> Self {
        self.padding = padding.into();
        self
    }
}

impl From<Linear> for Layer {
    fn from(b: Linear) -> Layer {
        Layer::Linear {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: b.name,
            input: b.input,
            out: b.out,
            bias: b.bias,
            input_density: b.input_density,
            plasticity: b.plasticity,
        }
    }
}

impl From<Conv2d> for Layer {
    fn from(b: Conv2d) -> Layer {
        Layer::Conv2d {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: b.name,
            in_channels: b.in_channels,
            out_channels: b.out_channels,
            kernel_size: b.kernel_size,
            stride: b.stride,
            padding: b.padding,
            dilation: b.dilation,
            groups: b.groups,
            bias: b.bias,
            input_density: b.input_density,
            plasticity: b.plasticity,
        }
    }
}

impl Pool2d {
    fn new(kind: PoolKind, kernel_size: Pair) -> Pool2d {
        Pool2d { kind, name: None, kernel_size, stride: None, padding: Pair::default() }
    }
}

impl From<Pool2d> for Layer {
    fn from(b: Pool2d) -> Layer {
        let Pool2d { kind, name, kernel_size, stride, padding } = b;
        match kind {
            PoolKind::Max => Layer::MaxPool2d {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                kernel_size,
                stride,
                padding,
            },
            PoolKind::Avg => Layer::AvgPool2d {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                kernel_size,
                stride,
                padding,
                count_include_pad: true,
            },
            PoolKind::Sum => Layer::SumPool2d {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                kernel_size,
                stride,
                padding,
            },
        }
    }
}

impl From<Lif> for Layer {
    fn from(b: Lif) -> Layer {
        Layer::LIF { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name: b.name, p: b.p }
    }
}

impl From<LifRecurrent> for Layer {
    fn from(b: LifRecurrent) -> Layer {
        Layer::LIFRecurrent {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: b.name,
            input: b.input,
            hidden: b.hidden,
            p: b.p,
            autapses: b.autapses,
            input_density: b.input_density,
        }
    }
}

impl From<Li> for Layer {
    fn from(b: Li) -> Layer {
        Layer::LI { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name: b.name, p: b.p }
    }
}

impl From<LiLinear> for Layer {
    fn from(b: LiLinear) -> Layer {
        Layer::LILinear {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: b.name,
            input: b.input,
            out: b.out,
            p: b.p,
            input_density: b.input_density,
        }
    }
}

impl From<Lsnn> for Layer {
    fn from(b: Lsnn) -> Layer {
        Layer::LSNN { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name: b.name, p: b.p }
    }
}

impl From<LsnnRecurrent> for Layer {
    fn from(b: LsnnRecurrent) -> Layer {
        Layer::LSNNRecurrent {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: b.name,
            input: b.input,
            hidden: b.hidden,
            p: b.p,
            autapses: b.autapses,
            input_density: b.input_density,
        }
    }
}

impl From<LifBox> for Layer {
    fn from(b: LifBox) -> Layer {
        Layer::LIFBox { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name: b.name, p: b.p }
    }
}

impl From<LifAdEx> for Layer {
    fn from(b: LifAdEx) -> Layer {
        Layer::LIFAdEx { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name: b.name, p: b.p }
    }
}

/// Layer constructors of the DSL. Layers without settings (`flatten`,
/// `relu`, `scale`) are plain [`Layer`] values; [`Layer::named`] names any
/// layer.
impl Layer {
    /// `torch.nn.Linear(in, out)` with a bias; see [`Linear`].
    pub fn linear(out: u32) -> Linear {
        Linear { name: None, input: None, out, bias: true, input_density: None, plasticity: None }
    }

    /// `torch.nn.Conv2d(in, out_channels, kernel_size)`, stride 1, no
    /// padding, dilation 1, one group, with a bias; `kernel_size` is `3` or
    /// `(3, 5)`; see [`Conv2d`].
    pub fn conv2d(out_channels: u32, kernel_size: impl Into<Pair>) -> Conv2d {
        Conv2d {
            name: None,
            in_channels: None,
            out_channels,
            kernel_size: kernel_size.into(),
            stride: Pair::one(),
            padding: Pair::default(),
            dilation: Pair::one(),
            groups: 1,
            bias: true,
            input_density: None,
            plasticity: None,
        }
    }

    /// `max_pool2d(kernel_size)` with the stride equal to the kernel size,
    /// no padding; see [`Pool2d`].
    pub fn max_pool2d(kernel_size: impl Into<Pair>) -> Pool2d {
        Pool2d::new(PoolKind::Max, kernel_size.into())
    }

    /// `avg_pool2d(kernel_size)` (`count_include_pad=True`) with the
    /// stride equal to the kernel size, no padding; see [`Pool2d`].
    pub fn avg_pool2d(kernel_size: impl Into<Pair>) -> Pool2d {
        Pool2d::new(PoolKind::Avg, kernel_size.into())
    }

    /// NIR's `SumPool2d(kernel_size)`: window sums, the stride equal to the
    /// kernel size, no padding; see [`Pool2d`].
    pub fn sum_pool2d(kernel_size: impl Into<Pair>) -> Pool2d {
        Pool2d::new(PoolKind::Sum, kernel_size.into())
    }

    /// torch's `LPPool2d(1, kernel_size)` (what Norse makes of a NIR
    /// `SumPool2d`): window sums whose gradient is 0 where a sum is 0; the
    /// stride equal to the kernel size. See [`Layer::LPPool2d`].
    pub fn lp_pool2d(kernel_size: impl Into<Pair>) -> LpPool2d {
        LpPool2d { name: None, kernel_size: kernel_size.into(), stride: None }
    }

    /// Reshapes each sample to one dimension.
    pub fn flatten() -> Layer {
        Layer::Flatten { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name: None }
    }

    /// Multiplies by a constant.
    pub fn scale(factor: f64) -> Layer {
        Layer::Scale { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name: None, factor }
    }

    /// `torch.nn.ReLU`.
    pub fn relu() -> Layer {
        Layer::ReLU { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name: None }
    }

    /// `LIFCell` with Norse's default parameters; see [`Lif`].
    pub fn lif() -> Lif {
        Lif { name: None, p: LifParams::default() }
    }

    /// `LIFRecurrentCell(in, hidden)` without autapses; see [`LifRecurrent`].
    pub fn lif_recurrent(hidden: u32) -> LifRecurrent {
        LifRecurrent { name: None, input: None, hidden, p: LifParams::default(), autapses: false, input_density: None }
    }

    /// `LICell`; see [`Li`].
    pub fn li() -> Li {
        Li { name: None, p: LiParams::default() }
    }

    /// `LILinearCell(in, out)`; see [`LiLinear`].
    pub fn li_linear(out: u32) -> LiLinear {
        LiLinear { name: None, input: None, out, p: LiParams::default(), input_density: None }
    }

    /// `LSNNCell`; see [`Lsnn`].
    pub fn lsnn() -> Lsnn {
        Lsnn { name: None, p: LsnnParams::default() }
    }

    /// `LSNNRecurrentCell(in, hidden)` without autapses; see [`LsnnRecurrent`].
    pub fn lsnn_recurrent(hidden: u32) -> LsnnRecurrent {
        LsnnRecurrent {
            name: None,
            input: None,
            hidden,
            p: LsnnParams::default(),
            autapses: false,
            input_density: None,
        }
    }

    /// `LIFBoxCell`; see [`LifBox`].
    pub fn lif_box() -> LifBox {
        LifBox { name: None, p: LifBoxParams::default() }
    }

    /// `LIFAdExCell`; see [`LifAdEx`].
    pub fn lif_adex() -> LifAdEx {
        LifAdEx { name: None, p: LifAdExParams::default() }
    }

    /// `Identity`: the merged input itself, to name a residual sum or a
    /// concatenation: `Layer::identity().named("res").inputs(["lif2", "lif0"])`.
    pub fn identity() -> Layer {
        Layer::Identity { name: None, inputs: None, recurrent_inputs: Vec::new(), merge: Merge::Add }
    }

    /// `Dropout(p)`: zeroes each value with probability `p` in training,
    /// the identity otherwise (see [`Layer::Dropout`]).
    pub fn dropout(p: f64) -> Layer {
        Layer::Dropout { name: None, p, inputs: None, recurrent_inputs: Vec::new(), merge: Merge::Add }
    }

    /// `BatchNorm1d` on `[B, C]` with torch's defaults (eps 1e-5, momentum
    /// 0.1, per-step statistics in training); `num_features` is inferred
    /// (see [`Layer::BatchNorm1d`]).
    pub fn batch_norm1d() -> Layer {
        Layer::BatchNorm1d {
            name: None,
            num_features: None,
            eps: 1e-5,
            momentum: 0.1,
            variant: BatchNormVariant::PerStep,
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Merge::Add,
        }
    }

    /// `BatchNorm2d` on `[B, C, H, W]` with torch's defaults (see
    /// [`Layer::BatchNorm2d`]).
    pub fn batch_norm2d() -> Layer {
        Layer::BatchNorm2d {
            name: None,
            num_features: None,
            eps: 1e-5,
            momentum: 0.1,
            variant: BatchNormVariant::PerStep,
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Merge::Add,
        }
    }

    /// The same layer with the given name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Layer {
        let slot = match &mut self {
            Layer::Linear { name, .. }
            | Layer::Conv2d { name, .. }
            | Layer::MaxPool2d { name, .. }
            | Layer::AvgPool2d { name, .. }
            | Layer::SumPool2d { name, .. }
            | Layer::LPPool2d { name, .. }
            | Layer::Flatten { name, .. }
            | Layer::Scale { name, .. }
            | Layer::ReLU { name, .. }
            | Layer::LIF { name, .. }
            | Layer::LIFRecurrent { name, .. }
            | Layer::LI { name, .. }
            | Layer::LILinear { name, .. }
            | Layer::LSNN { name, .. }
            | Layer::LSNNRecurrent { name, .. }
            | Layer::LIFBox { name, .. }
            | Layer::LIFAdEx { name, .. }
            | Layer::Neuron { name, .. }
            | Layer::IAF { name, .. }
            | Layer::Izhikevich { name, .. }
            | Layer::LIFEx { name, .. }
            | Layer::LIFRefrac { name, .. }
            | Layer::LIFAdExRefrac { name, .. }
            | Layer::CobaLIF { name, .. }
            | Layer::LIBox { name, .. }
            | Layer::TsodyksMarkram { name, .. }
            | Layer::Dropout { name, .. }
            | Layer::BatchNorm1d { name, .. }
            | Layer::BatchNorm2d { name, .. }
            | Layer::Identity { name, .. } => name,
        };
        *slot = Some(name.into());
        self
    }
}

/// Graph wiring, for every layer builder and [`Layer`] (`inputs`,
/// `recurrent_inputs` and `merge` in RON; see [`Layer`]). Each returns the
/// finished [`Layer`], so set the layer's own fields first:
/// `Layer::lif().v_th(0.5).named("b").inputs(["a", "x"])`.
pub trait Wire: Into<Layer> + Sized {
    /// The layers read at the same step (`"x"` is the network input);
    /// without this, a layer reads the previous one.
    fn inputs<S: Into<String>>(self, names: impl IntoIterator<Item = S>) -> Layer {
        let mut layer = self.into();
        *layer.wiring_mut().0 = Some(names.into_iter().map(Into::into).collect());
        layer
    }

    /// The layers whose previous-step output is read (zeros at t = 0).
    fn recurrent_inputs<S: Into<String>>(self, names: impl IntoIterator<Item = S>) -> Layer {
        let mut layer = self.into();
        *layer.wiring_mut().1 = names.into_iter().map(Into::into).collect();
        layer
    }

    /// How several inputs combine (default [`Merge::Add`]).
    fn merge(self, merge: Merge) -> Layer {
        let mut layer = self.into();
        *layer.wiring_mut().2 = merge;
        layer
    }
}

impl<T: Into<Layer>> Wire for T {}

/// Which LIF encoder a [`LifEncoder`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LifEncoderKind {
    ConstantCurrent,
    SpikeLatency,
}

/// `ConstantCurrentLIFEncoder` or `SpikeLatencyLIFEncoder`; made by
/// [`Encoder::constant_current`] and [`Encoder::spike_latency`].
///
/// The encoder's neuron has no synaptic current, so only the membrane
/// parameters have setters; `.params(..)` sets the whole [`LifParams`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct LifEncoder {
    kind: LifEncoderKind,
    p: LifParams,
}

params!(LifEncoder, LifParams; tau_mem_inv: ParamValue, v_leak: ParamValue, v_th: ParamValue, v_reset: ParamValue);

/// `PoissonEncoder` or `SignedPoissonEncoder`; made by [`Encoder::poisson`]
/// and [`Encoder::signed_poisson`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Poisson {
    f_max: f64,
    seed: u64,
    signed: bool,
}

/// `PopulationEncoder`; made by [`Encoder::population`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Population {
    out_features: u32,
    scale: Option<f64>,
}

impl Population {
    /// The kernels' scale (the last centre and the width factor); without
    /// it (or with 0) the largest value of the whole input batch.
    pub fn scale(mut self, scale: f64) -> Self {
        self.scale = Some(scale);
        self
    }
}

impl From<Population> for Encoder {
    fn from(b: Population) -> Encoder {
        Encoder::Population { out_features: b.out_features, scale: b.scale }
    }
}

impl Poisson {
    /// The maximum firing rate in Hz (default 100): a neuron spikes with
    /// probability `dt * f_max * x` (signed: `dt * f_max * |x|`) per step.
    pub fn f_max(mut self, f_max: f64) -> Self {
        self.f_max = f_max;
        self
    }

    /// The seed of the spike generator (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

impl From<LifEncoder> for Encoder {
    fn from(b: LifEncoder) -> Encoder {
        match b.kind {
            LifEncoderKind::ConstantCurrent => Encoder::ConstantCurrent { p: b.p },
            LifEncoderKind::SpikeLatency => Encoder::SpikeLatency { p: b.p },
        }
    }
}

impl From<Poisson> for Encoder {
    fn from(b: Poisson) -> Encoder {
        if b.signed {
            Encoder::SignedPoisson { f_max: b.f_max, seed: b.seed }
        } else {
            Encoder::Poisson { f_max: b.f_max, seed: b.seed }
        }
    }
}

/// Encoder constructors of the DSL.
impl Encoder {
    /// `ConstantCurrentLIFEncoder`: the input is a constant current into a
    /// LIF neuron; see [`LifEncoder`].
    pub fn constant_current() -> LifEncoder {
        LifEncoder { kind: LifEncoderKind::ConstantCurrent, p: LifParams::default() }
    }

    /// `SpikeLatencyLIFEncoder`: as `constant_current`, but only each
    /// neuron's first spike; see [`LifEncoder`].
    pub fn spike_latency() -> LifEncoder {
        LifEncoder { kind: LifEncoderKind::SpikeLatency, p: LifParams::default() }
    }

    /// `PoissonEncoder` with `f_max` = 100 Hz and seed 0; see [`Poisson`].
    pub fn poisson() -> Poisson {
        Poisson { f_max: 100.0, seed: 0, signed: false }
    }

    /// `SignedPoissonEncoder` with `f_max` = 100 Hz and seed 0: `sign(x)`
    /// with probability `dt * f_max * |x|` per step, else 0; see [`Poisson`].
    pub fn signed_poisson() -> Poisson {
        Poisson { f_max: 100.0, seed: 0, signed: true }
    }

    /// `PopulationEncoder(out_features)`: `out_features` Gaussian
    /// receptive fields per input value; see [`Population`].
    pub fn population(out_features: u32) -> Population {
        Population { out_features, scale: None }
    }

    /// Direct encoding: the static input is the first layer's input at
    /// every step.
    pub fn direct() -> Encoder {
        Encoder::Direct {}
    }
}
