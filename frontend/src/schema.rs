//! The network description shared by the RON format and the Rust DSL.
//!
//! Field names and defaults follow Norse 1.1.0 (`docs/norse-semantics.md`):
//! parameters are inverse time constants in 1/s, `dt` is in seconds and
//! defaults to 0.001, and every neuron parameter defaults to Norse's value.
//!
//! A RON file looks like this (every field with a default may be left out):
//!
//! ```ron
//! (
//!     version: 1,
//!     name: "tutorial",
//!     steps: 32,
//!     input: [1, 28, 28],
//!     encoder: ConstantCurrent(),
//!     layers: [
//!         Flatten(),
//!         LIFRecurrent(name: "lif1", hidden: 100, p: (v_th: 0.5)),
//!         Linear(out: 10, bias: false),
//!         LI(),
//!     ],
//!     readout: MaxLogSoftmax,
//! )
//! ```
//!
//! The rules, as read by [`parse_network`](crate::parse::parse_network):
//!
//! * The description is one struct in parentheses; writing its name in
//!   front, `Network(...)`, is optional. `version` must be 1.
//! * A layer or encoder is its kind followed by its fields in parentheses,
//!   `Linear(out: 10)`; the parentheses are needed even without fields,
//!   `Flatten()`. Braces (`Linear { .. }`) are not RON.
//! * The input size of a layer is the field `in` (`Linear(in: 784, out: 10)`).
//! * Neuron parameters are a struct of the fields that differ from Norse's
//!   defaults: `p: (v_th: 0.5, method: tanh, alpha: 50)`. A float field
//!   other than `alpha` may be a list, one value per neuron of one sample
//!   (row-major over the layer's per-sample shape): `v_th: [0.5, 0.6, 0.7]`
//!   ([`ParamValue`]). `trainable: [tau_mem_inv, v_th]` names the fields
//!   training updates ([`NeuronParam`]): each becomes a trainable tensor
//!   `LAYER.FIELD`, 0-d for a number, the per-sample shape for a list; a
//!   list that is not trainable is a non-trainable tensor of that name (a
//!   weights file may set it); a number that is not trainable stays a
//!   constant of the IR.
//! * `Option` fields (`name`, `in`, `in_channels`, `encoder`, the stride of
//!   the pooling layers) take their value directly, `name: "lif1"`, or as
//!   `Some("lif1")`; `None` is the same as leaving the field out.
//! * Values without data are bare words, without quotes or parentheses:
//!   `readout: MaxLogSoftmax`, `method: heavi_erfc` (Norse's names, see
//!   [`Method`]), `reset_method: subtract`.
//! * Floats may be written as integers (`v_th: 1`) or with an exponent
//!   (`dt: 1e-3`); `NaN` and `inf` parse but are rejected by
//!   [`check_network`](crate::check::check_network). Sizes, `steps` and
//!   `version` are `u32`, `seed` is `u64`.
//! * The kernel size, stride, padding and dilation of `Conv2d` and the
//!   pooling layers are one integer for both axes, `kernel_size: 3`, or a
//!   pair `(height, width)`, `kernel_size: (3, 5)` ([`Pair`]).
//! * `//` and `/* */` comments and trailing commas are allowed.
//! * A file is UTF-8 text; a byte-order mark at its start is skipped.
//!
//! [`to_ron`](crate::parse::to_ron) writes every field, including the
//! defaults, in this syntax (but for `dilation`, `groups` and the pooling
//! `padding`, written only when not their defaults, and a [`Pair`] of two
//! equal values, written as one integer).

use serde::{Deserialize, Serialize};

mod pair;
mod params;
mod plasticity;
pub use pair::Pair;
pub use params::*;
pub use plasticity::{Stdp, StdpRule};

/// The current version of the RON format.
pub const FORMAT_VERSION: u32 = 1;

fn default_dt() -> f64 {
    0.001
}
fn default_true() -> bool {
    true
}
fn default_one() -> u32 {
    1
}
fn default_norm_type() -> f64 {
    1.0
}
fn is_one(v: &u32) -> bool {
    *v == 1
}
fn is_true(v: &bool) -> bool {
    *v
}
fn default_f_max() -> f64 {
    100.0
}
fn default_dropout() -> f64 {
    0.5
}

fn default_bn_eps() -> f64 {
    1e-5
}

fn default_bn_momentum() -> f64 {
    0.1
}

/// How a BatchNorm layer computes its statistics in training (`variant:`
/// in RON). Evaluation uses the running statistics either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BatchNormVariant {
    /// The same module called at every step (Norse's `Lift(BatchNorm2d)`):
    /// mean and biased variance of that step's input over the batch (and
    /// H, W); the running statistics are updated once per step.
    #[default]
    PerStep,
    /// tdBN: one mean and variance over all `T·B` samples of the sequence
    /// (not implemented yet: `check` refuses it).
    TimeBatched,
}

impl BatchNormVariant {
    /// Whether this is the default, [`BatchNormVariant::PerStep`].
    pub fn is_per_step(&self) -> bool {
        *self == BatchNormVariant::PerStep
    }
}

/// A whole network: input, optional encoder, layers applied at every step,
/// and a readout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The format version; must be 1.
    pub version: u32,
    pub name: String,
    /// The number of time steps `T`.
    pub steps: u32,
    /// The integration step in seconds (Norse's `dt`, default 0.001).
    #[serde(default = "default_dt")]
    pub dt: f64,
    /// The shape of one sample's input, without batch and time. Without an
    /// encoder the network takes a per-step input `[T, B, ...input]`; with
    /// one it takes a static `[B, ...input]` that the encoder turns into
    /// spikes.
    pub input: Vec<u32>,
    #[serde(default)]
    pub encoder: Option<Encoder>,
    pub layers: Vec<Layer>,
    #[serde(default)]
    pub readout: Readout,
    /// Seed of the default weight initialisation.
    #[serde(default)]
    pub seed: u64,
    /// What `snnc run` feeds the network when no input file is given.
    #[serde(default)]
    pub example_input: ExampleInput,
}

/// The built-in input `snnc run` uses when no input file is given. It is
/// deterministic: the same network gets the same input on every run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub enum ExampleInput {
    /// A pattern that fits the input: with an encoder, a bright ring per
    /// sample on a dark background, normalised like Fashion-MNIST pixels in
    /// the Norse tutorial; without one, a constant current per neuron spread
    /// over 0..1.5.
    #[default]
    Pattern,
    /// The same value everywhere (every neuron, every step, every sample).
    Constant(f64),
    /// A spike (1.0) into every input neuron at each of these steps
    /// (counted from 0), 0 at every other step. Needs a per-step input
    /// (no encoder).
    SpikesAt(Vec<u32>),
}

/// The surrogate gradient method, named as in Norse (`method=` of the
/// parameter tuples).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// SuperSpike: `1/(|x|+1)^2`; Norse 1.1.0 ignores alpha.
    #[default]
    Super,
    Tanh,
    Circ,
    Triangle,
    HeaviErfc,
    /// No gradient.
    Heaviside,
}

impl Method {
    pub const ALL: [Method; 6] =
        [Method::Super, Method::Tanh, Method::Circ, Method::Triangle, Method::HeaviErfc, Method::Heaviside];

    /// The name Norse uses.
    pub fn norse_name(self) -> &'static str {
        match self {
            Method::Super => "super",
            Method::Tanh => "tanh",
            Method::Circ => "circ",
            Method::Triangle => "triangle",
            Method::HeaviErfc => "heavi_erfc",
            Method::Heaviside => "heaviside",
        }
    }

    pub fn from_norse_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.norse_name() == name)
    }
}

/// Turns a static input into spikes over `steps` time steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Encoder {
    /// `ConstantCurrentLIFEncoder`: the input is a constant current into a
    /// LIF neuron without synaptic current, starting at v = 0.
    ConstantCurrent {
        #[serde(default)]
        p: LifParams,
    },
    /// `SpikeLatencyLIFEncoder`: as `ConstantCurrent`, but only each
    /// neuron's first spike is emitted.
    SpikeLatency {
        #[serde(default)]
        p: LifParams,
    },
    /// `PoissonEncoder`: spike with probability `dt * f_max * x` per step,
    /// drawn from snnc's counter-based generator keyed by `seed`.
    Poisson {
        #[serde(default = "default_f_max")]
        f_max: f64,
        #[serde(default)]
        seed: u64,
    },
    /// `SignedPoissonEncoder`: `sign(x)` with probability `dt * f_max * |x|`
    /// per step, else 0: values in {-1, 0, 1} (the module's float, not
    /// spikes), drawn from snnc's counter-based generator keyed by `seed`.
    SignedPoisson {
        #[serde(default = "default_f_max")]
        f_max: f64,
        #[serde(default)]
        seed: u64,
    },
    /// `PopulationEncoder(out_features, scale)`: each input value becomes
    /// `out_features` values `exp(-((x - c_k)^2 * s) / 2)` with centres
    /// `c = linspace(0, s, out_features)` and `s = scale`, or the largest
    /// value of the whole input batch when `scale` is left out (or 0).
    /// Values in (0, 1], not spikes; the encoded shape is the input shape
    /// followed by `[out_features]`, the same at every step.
    Population {
        out_features: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale: Option<f64>,
    },
    /// Direct encoding: the static input itself is the first layer's input
    /// at every step (what a Norse model sees when it is fed
    /// `x.unsqueeze(0).repeat(T, 1, ...)`); no spikes, no state. Written
    /// `Direct()`.
    Direct {},
}

impl Encoder {
    /// The kind's name as written in RON.
    pub fn kind(&self) -> &'static str {
        match self {
            Encoder::ConstantCurrent { .. } => "ConstantCurrent",
            Encoder::SpikeLatency { .. } => "SpikeLatency",
            Encoder::Poisson { .. } => "Poisson",
            Encoder::SignedPoisson { .. } => "SignedPoisson",
            Encoder::Population { .. } => "Population",
            Encoder::Direct {} => "Direct",
        }
    }
}

/// One layer (a node of the network's graph), applied at every time step.
///
/// `name` defaults to the lower-case kind followed by the layer's index
/// (`linear0`, `lif1`, ...); a given name is letters, digits, `_` and `-`
/// (the rules are in [`check`](crate::check)). Sizes marked `in`/`in_channels` are optional
/// and, when given, checked against the layer's input.
///
/// Every layer has three wiring fields (see [`Wiring`]); left out, a layer
/// reads the previous layer's output of the same step, so a plain list is a
/// chain:
///
/// * `inputs: ["a", "b"]`: the layers read at the same step (`"x"` is the
///   network input, after the encoder if there is one); they may be listed
///   anywhere in the file: layers run in an order where each runs after
///   its same-step inputs (the file's order where it allows);
/// * `recurrent_inputs: ["c"]`: layers whose output of the *previous* step
///   is read (zeros at t = 0, gradients flow through it): how a cycle is
///   written;
/// * `merge: add` (the default: the sum, left to right) or `merge: concat`
///   (along the feature or channel axis): how several inputs combine, the
///   same-step inputs first, then the recurrent ones.
///
/// The last layer in the list is the network's output; every other layer
/// must be read by some layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Layer {
    /// `torch.nn.Linear`: `y = x W^T + b`, weights `NAME.weight` `[out, in]`
    /// and `NAME.bias` `[out]`.
    Linear {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, rename = "in")]
        input: Option<u32>,
        out: u32,
        #[serde(default = "default_true")]
        bias: bool,
        /// The expected fraction of ones in the layer's input, when that
        /// input is a spike train, in [0, 1]: it guides the `sparsify`
        /// pass's choice of an event-driven matrix product. Default: the
        /// pass's default (0.1), or the density measured in a `--profile`.
        #[serde(default)]
        input_density: Option<f64>,
        /// A learning rule that changes the weight during the run
        /// (`plasticity: STDP(...)`, `docs/plasticity.md`): the weight is
        /// then state of the step loop (`NAME.weight.plastic`, starting at
        /// `NAME.weight`), the layer that reads this one gives the
        /// postsynaptic spikes, and `snnc train` refuses the network.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plasticity: Option<Stdp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `torch.nn.Conv2d` on `[C, H, W]`, weights `NAME.weight`
    /// `[out_channels, in_channels / groups, kh, kw]` and `NAME.bias`.
    /// `kernel_size`, `stride`, `padding` and `dilation` are an integer or
    /// a pair `(h, w)`; with `groups` g (dividing both channel counts),
    /// output channels `[j·O/g, (j+1)·O/g)` see only input channels
    /// `[j·C/g, (j+1)·C/g)`. Output size per axis:
    /// `(H + 2 padding - dilation (k - 1) - 1) / stride + 1`.
    Conv2d {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        in_channels: Option<u32>,
        out_channels: u32,
        kernel_size: Pair,
        #[serde(default = "Pair::one")]
        stride: Pair,
        #[serde(default)]
        padding: Pair,
        #[serde(default = "Pair::one", skip_serializing_if = "Pair::is_one")]
        dilation: Pair,
        #[serde(default = "default_one", skip_serializing_if = "is_one")]
        groups: u32,
        #[serde(default = "default_true")]
        bias: bool,
        /// As `Linear`'s: the expected fraction of ones in a spike input,
        /// which decides between a dense and an event-driven convolution.
        #[serde(default)]
        input_density: Option<f64>,
        /// STDP on the kernel (`plasticity: STDP(...)`, Norse's
        /// `stdp_step_conv2d`; one channel group): as on a `Linear`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plasticity: Option<Stdp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `max_pool2d(kernel_size, stride, padding)` over the last two dims;
    /// stride defaults to the kernel size; padding (at most half the
    /// kernel, as torch requires) is never the maximum.
    MaxPool2d {
        #[serde(default)]
        name: Option<String>,
        kernel_size: Pair,
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default, skip_serializing_if = "Pair::is_zero")]
        padding: Pair,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `avg_pool2d(kernel_size, stride, padding)` (torch's `AvgPool2d`,
    /// `count_include_pad=True`: each window's sum over `kh·kw`, zero
    /// padding counted); stride defaults to the kernel size; padding at
    /// most half the kernel. Only `count_include_pad: true` is supported.
    /// A spike input gives a float output.
    AvgPool2d {
        #[serde(default)]
        name: Option<String>,
        kernel_size: Pair,
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default, skip_serializing_if = "Pair::is_zero")]
        padding: Pair,
        #[serde(default = "default_true", skip_serializing_if = "is_true")]
        count_include_pad: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// NIR's `SumPool2d`: each window's sum (zero padding); stride defaults
    /// to the kernel size; padding at most half the kernel. A spike input
    /// gives a float output.
    SumPool2d {
        #[serde(default)]
        name: Option<String>,
        kernel_size: Pair,
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default, skip_serializing_if = "Pair::is_zero")]
        padding: Pair,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// torch's `LPPool2d(norm_type, kernel_size, stride)` with `norm_type`
    /// 1 (the only one supported), which Norse's `from_nir` makes of a NIR
    /// `SumPool2d`: forward the window's sum (as `avg_pool2d · kh·kw`), but
    /// its gradient is 0 for every element of a window whose sum is 0 (torch
    /// differentiates `sign(a)·relu(|a|)`). Stride defaults to the kernel
    /// size; no padding.
    LPPool2d {
        #[serde(default)]
        name: Option<String>,
        #[serde(default = "default_norm_type")]
        norm_type: f64,
        kernel_size: Pair,
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// Reshape each sample to one dimension.
    Flatten {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// Multiply by a constant.
    Scale {
        #[serde(default)]
        name: Option<String>,
        factor: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    ReLU {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LIFCell`: feed-forward LIF; the input is a current.
    LIF {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LifParams,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LIFRecurrentCell`: weights `NAME.input_weights` `[hidden, in]`,
    /// `NAME.recurrent_weights` `[hidden, hidden]`.
    LIFRecurrent {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, rename = "in")]
        input: Option<u32>,
        hidden: u32,
        #[serde(default)]
        p: LifParams,
        #[serde(default)]
        autapses: bool,
        /// The expected fraction of ones in the layer's input, when that
        /// input is a spike train, in [0, 1]: it guides the `sparsify`
        /// pass's choice of an event-driven matrix product. Default: the
        /// pass's default (0.1), or the density measured in a `--profile`.
        #[serde(default)]
        input_density: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LICell`: leaky integrator; the output is the voltage.
    LI {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LiParams,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LILinearCell`: a leaky integrator behind weights
    /// `NAME.input_weights` `[out, in]` (no bias).
    LILinear {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, rename = "in")]
        input: Option<u32>,
        out: u32,
        #[serde(default)]
        p: LiParams,
        /// The expected fraction of ones in the layer's input, when that
        /// input is a spike train, in [0, 1]: it guides the `sparsify`
        /// pass's choice of an event-driven matrix product. Default: the
        /// pass's default (0.1), or the density measured in a `--profile`.
        #[serde(default)]
        input_density: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LSNNCell`: LIF with an adaptive threshold.
    LSNN {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LsnnParams,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LSNNRecurrentCell`, weights as `LIFRecurrent`.
    LSNNRecurrent {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, rename = "in")]
        input: Option<u32>,
        hidden: u32,
        #[serde(default)]
        p: LsnnParams,
        #[serde(default)]
        autapses: bool,
        /// The expected fraction of ones in the layer's input, when that
        /// input is a spike train, in [0, 1]: it guides the `sparsify`
        /// pass's choice of an event-driven matrix product. Default: the
        /// pass's default (0.1), or the density measured in a `--profile`.
        #[serde(default)]
        input_density: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LIFBoxCell`: LIF without synaptic current.
    LIFBox {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LifBoxParams,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LIFAdExCell`: adaptive exponential LIF.
    LIFAdEx {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LifAdExParams,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// A neuron model written as equations (`docs/neuron-language.md`).
    /// With `hidden`, the layer is recurrent: its input goes through
    /// `NAME.input_weights` (`[hidden, in]`, as `x`) and its previous
    /// spikes through `NAME.recurrent_weights` (`[hidden, hidden]`, as
    /// `x_rec`; the diagonal zeroed unless `autapses`).
    Neuron {
        #[serde(default)]
        name: Option<String>,
        model: crate::neuron::NeuronModel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hidden: Option<u32>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        autapses: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `IAFCell`: integrate and fire, no leak.
    IAF {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: IafParams,
        /// Recurrent (Norse's `*RecurrentCell`): `hidden` neurons, the input
        /// through `NAME.input_weights`, the previous spikes through
        /// `NAME.recurrent_weights` (diagonal zeroed unless `autapses`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hidden: Option<u32>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        autapses: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `IzhikevichCell` of a Norse preset (`preset: tonic_spiking`) or of
    /// custom `a`, `b`, `c`, `d`, `v_rest`, `u_rest` (`p: (...)`, which also
    /// overrides a preset's values).
    Izhikevich {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preset: Option<crate::neuron::zoo::IzhikevichPreset>,
        #[serde(default)]
        p: crate::neuron::zoo::IzhikevichParams,
        /// Recurrent (Norse's `*RecurrentCell`): `hidden` neurons, the input
        /// through `NAME.input_weights`, the previous spikes through
        /// `NAME.recurrent_weights` (diagonal zeroed unless `autapses`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hidden: Option<u32>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        autapses: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LIFExCell`: exponential LIF.
    LIFEx {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LifExParams,
        /// Recurrent (Norse's `*RecurrentCell`): `hidden` neurons, the input
        /// through `NAME.input_weights`, the previous spikes through
        /// `NAME.recurrent_weights` (diagonal zeroed unless `autapses`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hidden: Option<u32>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        autapses: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LIFRefracCell`: LIF with a refractory period of `rho_reset` steps.
    LIFRefrac {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LifRefracParams,
        /// Recurrent (Norse's `*RecurrentCell`): `hidden` neurons, the input
        /// through `NAME.input_weights`, the previous spikes through
        /// `NAME.recurrent_weights` (diagonal zeroed unless `autapses`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hidden: Option<u32>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        autapses: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LIFAdExRefracCell`: adaptive exponential LIF with a refractory period.
    LIFAdExRefrac {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LifAdExRefracParams,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// Conductance-based LIF (`coba_lif_feed_forward_step`: the input's positive
    /// part is excitatory, its negative part inhibitory).
    ///
    /// With `hidden`, Norse's recurrent `CobaLIFCell`: input weights
    /// `NAME.input_weights` (`[hidden, in]`, `randn / sqrt(in)`) and recurrent
    /// weights `NAME.recurrent_weights` (`[hidden, hidden]`,
    /// `randn / sqrt(hidden)`, diagonal kept), each split by sign into the
    /// excitatory (`relu(W)`) and inhibitory (`relu(-W)`) conductance, and
    /// Norse 1.1.0's quirk: the input's conductance jump is overwritten, so
    /// only the recurrent spikes drive the cell. `use_input: true` adds the
    /// input's jump too (the evidently intended behaviour).
    CobaLIF {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: CobaLifParams,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hidden: Option<u32>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        use_input: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `LIBoxCell`: a leaky integrator without current (passes on `v`).
    LIBox {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LiBoxParams,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// Norse's `stp_step` (Tsodyks–Markram short-term plasticity): placed on
    /// a spike tensor, it scales each input spike by `u' * x` of its
    /// presynaptic neuron (per-neuron states `NAME.u`, from 0, and
    /// `NAME.x_d`, Norse's `x`, from 1). Its output is a float tensor, not
    /// spikes. Parameters are Python floats, not trainable.
    TsodyksMarkram {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: crate::neuron::zoo::TsodyksMarkramParams,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `torch.nn.Dropout(p)`: in training (`snnc train`) each value is
    /// zeroed with probability `p` and the rest scaled by `1 / (1 - p)`, a
    /// new mask per step, sample and value (as `Lift(Dropout)` in Norse); the
    /// identity everywhere else (`snnc run`, evaluation). The training mask
    /// is the module input `NAME.mask` (`[T, B, ...]`), drawn by the trainer
    /// from the run's seed.
    Dropout {
        #[serde(default)]
        name: Option<String>,
        #[serde(default = "default_dropout")]
        p: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `torch.nn.BatchNorm1d(num_features, eps, momentum)` on `[B, C]`
    /// (affine and tracking running statistics, always): in `snnc run` and
    /// evaluation `(h - NAME.running_mean) / sqrt(NAME.running_var + eps) *
    /// NAME.weight + NAME.bias`; in training the batch statistics (see
    /// `docs/batchnorm.md`). `num_features` is inferred when left out.
    BatchNorm1d {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        num_features: Option<u32>,
        #[serde(default = "default_bn_eps")]
        eps: f64,
        #[serde(default = "default_bn_momentum")]
        momentum: f64,
        #[serde(default, skip_serializing_if = "BatchNormVariant::is_per_step")]
        variant: BatchNormVariant,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// `torch.nn.BatchNorm2d`: as `BatchNorm1d`, on `[B, C, H, W]` per
    /// channel.
    BatchNorm2d {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        num_features: Option<u32>,
        #[serde(default = "default_bn_eps")]
        eps: f64,
        #[serde(default = "default_bn_momentum")]
        momentum: f64,
        #[serde(default, skip_serializing_if = "BatchNormVariant::is_per_step")]
        variant: BatchNormVariant,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
    /// The merged input itself: names a residual sum or a concatenation
    /// (`Identity(name: "res", inputs: ["lif2", "lif0"])`).
    Identity {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recurrent_inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Merge::is_add")]
        merge: Merge,
    },
}

/// The wiring fields `(inputs, recurrent_inputs, merge)` of a `&Layer` or
/// `&mut Layer` (every variant has them), borrowed as the layer is.
macro_rules! wiring_fields {
    ($layer:expr) => {
        match $layer {
            Layer::Linear { inputs, recurrent_inputs, merge, .. }
            | Layer::Conv2d { inputs, recurrent_inputs, merge, .. }
            | Layer::MaxPool2d { inputs, recurrent_inputs, merge, .. }
            | Layer::AvgPool2d { inputs, recurrent_inputs, merge, .. }
            | Layer::SumPool2d { inputs, recurrent_inputs, merge, .. }
            | Layer::LPPool2d { inputs, recurrent_inputs, merge, .. }
            | Layer::Flatten { inputs, recurrent_inputs, merge, .. }
            | Layer::Scale { inputs, recurrent_inputs, merge, .. }
            | Layer::ReLU { inputs, recurrent_inputs, merge, .. }
            | Layer::LIF { inputs, recurrent_inputs, merge, .. }
            | Layer::LIFRecurrent { inputs, recurrent_inputs, merge, .. }
            | Layer::LI { inputs, recurrent_inputs, merge, .. }
            | Layer::LILinear { inputs, recurrent_inputs, merge, .. }
            | Layer::LSNN { inputs, recurrent_inputs, merge, .. }
            | Layer::LSNNRecurrent { inputs, recurrent_inputs, merge, .. }
            | Layer::LIFBox { inputs, recurrent_inputs, merge, .. }
            | Layer::LIFAdEx { inputs, recurrent_inputs, merge, .. }
            | Layer::Neuron { inputs, recurrent_inputs, merge, .. }
            | Layer::IAF { inputs, recurrent_inputs, merge, .. }
            | Layer::Izhikevich { inputs, recurrent_inputs, merge, .. }
            | Layer::LIFEx { inputs, recurrent_inputs, merge, .. }
            | Layer::LIFRefrac { inputs, recurrent_inputs, merge, .. }
            | Layer::LIFAdExRefrac { inputs, recurrent_inputs, merge, .. }
            | Layer::CobaLIF { inputs, recurrent_inputs, merge, .. }
            | Layer::LIBox { inputs, recurrent_inputs, merge, .. }
            | Layer::TsodyksMarkram { inputs, recurrent_inputs, merge, .. }
            | Layer::Dropout { inputs, recurrent_inputs, merge, .. }
            | Layer::BatchNorm1d { inputs, recurrent_inputs, merge, .. }
            | Layer::BatchNorm2d { inputs, recurrent_inputs, merge, .. }
            | Layer::Identity { inputs, recurrent_inputs, merge, .. } => (inputs, recurrent_inputs, merge),
        }
    };
}

impl Layer {
    /// The kind's name as written in RON.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Linear { .. } => "Linear",
            Layer::Conv2d { .. } => "Conv2d",
            Layer::MaxPool2d { .. } => "MaxPool2d",
            Layer::AvgPool2d { .. } => "AvgPool2d",
            Layer::SumPool2d { .. } => "SumPool2d",
            Layer::LPPool2d { .. } => "LPPool2d",
            Layer::Flatten { .. } => "Flatten",
            Layer::Scale { .. } => "Scale",
            Layer::ReLU { .. } => "ReLU",
            Layer::LIF { .. } => "LIF",
            Layer::LIFRecurrent { .. } => "LIFRecurrent",
            Layer::LI { .. } => "LI",
            Layer::LILinear { .. } => "LILinear",
            Layer::LSNN { .. } => "LSNN",
            Layer::LSNNRecurrent { .. } => "LSNNRecurrent",
            Layer::LIFBox { .. } => "LIFBox",
            Layer::LIFAdEx { .. } => "LIFAdEx",
            Layer::Neuron { .. } => "Neuron",
            Layer::IAF { .. } => "IAF",
            Layer::Izhikevich { .. } => "Izhikevich",
            Layer::LIFEx { .. } => "LIFEx",
            Layer::LIFRefrac { .. } => "LIFRefrac",
            Layer::LIFAdExRefrac { .. } => "LIFAdExRefrac",
            Layer::CobaLIF { .. } => "CobaLIF",
            Layer::LIBox { .. } => "LIBox",
            Layer::TsodyksMarkram { .. } => "TsodyksMarkram",
            Layer::Dropout { .. } => "Dropout",
            Layer::BatchNorm1d { .. } => "BatchNorm1d",
            Layer::BatchNorm2d { .. } => "BatchNorm2d",
            Layer::Identity { .. } => "Identity",
        }
    }

    /// The name given in the description, if any.
    pub fn given_name(&self) -> Option<&str> {
        match self {
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
            | Layer::Identity { name, .. } => name.as_deref(),
        }
    }

    /// How the layer is wired into the graph: its inputs and their merge.
    pub fn wiring(&self) -> Wiring<'_> {
        let (inputs, recurrent_inputs, merge) = wiring_fields!(self);
        Wiring { inputs: inputs.as_deref(), recurrent_inputs, merge: *merge }
    }

    /// The wiring fields, for setting them (the Rust DSL).
    pub fn wiring_mut(&mut self) -> (&mut Option<Vec<String>>, &mut Vec<String>, &mut Merge) {
        wiring_fields!(self)
    }

    /// The layer's name: the given one, or the kind in lower case followed
    /// by the layer's index.
    pub fn name(&self, index: usize) -> String {
        match self.given_name() {
            Some(n) => n.to_string(),
            None => format!("{}{index}", self.kind().to_lowercase()),
        }
    }

    /// The expected spike density of the layer's input (`input_density`),
    /// for layers with input weights.
    pub fn input_density(&self) -> Option<f64> {
        match self {
            Layer::Linear { input_density, .. }
            | Layer::Conv2d { input_density, .. }
            | Layer::LIFRecurrent { input_density, .. }
            | Layer::LILinear { input_density, .. }
            | Layer::LSNNRecurrent { input_density, .. } => *input_density,
            _ => None,
        }
    }

    /// Whether the layer is a spiking or integrating neuron population.
    pub fn is_neuron(&self) -> bool {
        matches!(
            self,
            Layer::LIF { .. }
                | Layer::LIFRecurrent { .. }
                | Layer::LI { .. }
                | Layer::LILinear { .. }
                | Layer::LSNN { .. }
                | Layer::LSNNRecurrent { .. }
                | Layer::LIFBox { .. }
                | Layer::LIFAdEx { .. }
                | Layer::Neuron { .. }
                | Layer::IAF { .. }
                | Layer::Izhikevich { .. }
                | Layer::LIFEx { .. }
                | Layer::LIFRefrac { .. }
                | Layer::LIFAdExRefrac { .. }
                | Layer::CobaLIF { .. }
                | Layer::LIBox { .. }
                | Layer::TsodyksMarkram { .. }
        )
    }
}

/// How a layer with several inputs combines them (`merge:` in RON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// Their sum, left to right (every input the same shape; spikes count
    /// as 0.0 and 1.0, so two spike inputs sum to 0, 1 or 2).
    #[default]
    Add,
    /// `torch.cat(inputs, dim=1)` of the per-step `[B, F]` or
    /// `[B, C, H, W]` values: along the feature or channel axis.
    Concat,
}

impl Merge {
    /// Whether this is the default, [`Merge::Add`] (used to leave it out
    /// when writing RON).
    pub fn is_add(&self) -> bool {
        *self == Merge::Add
    }
}

/// A layer's place in the graph, as written in the description.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Wiring<'a> {
    /// The nodes read at the same step (`None`: the previous layer in the
    /// list, or the network input for the first layer; `Some([])`: none).
    pub inputs: Option<&'a [String]>,
    /// The nodes whose output of the *previous* step is read (zeros at
    /// t = 0): how a cycle is written.
    pub recurrent_inputs: &'a [String],
    pub merge: Merge,
}

/// What the network returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Readout {
    /// The last layer's output at every step, `[T, B, ...]`.
    #[default]
    Sequence,
    /// The Norse tutorial's decoder: `log_softmax(max over time, dim=1)`.
    MaxLogSoftmax,
    /// The maximum over time.
    Max,
    /// The output of the last step.
    LastStep,
    /// The mean over time.
    Mean,
    /// The number of spikes over time (sum), for spiking output layers.
    SpikeCount,
}
