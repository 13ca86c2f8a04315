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
//!   defaults: `p: (v_th: 0.5, method: tanh, alpha: 50)`.
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
pub use pair::Pair;

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

/// `LIFParameters` (also used by the LIF encoders).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifParams {
    pub tau_syn_inv: f64,
    pub tau_mem_inv: f64,
    pub v_leak: f64,
    pub v_th: f64,
    pub v_reset: f64,
    pub method: Method,
    pub alpha: f64,
}

impl Default for LifParams {
    fn default() -> Self {
        LifParams {
            tau_syn_inv: 200.0,
            tau_mem_inv: 100.0,
            v_leak: 0.0,
            v_th: 1.0,
            v_reset: 0.0,
            method: Method::Super,
            alpha: 100.0,
        }
    }
}

/// `LIParameters`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiParams {
    pub tau_syn_inv: f64,
    pub tau_mem_inv: f64,
    pub v_leak: f64,
}

impl Default for LiParams {
    fn default() -> Self {
        LiParams { tau_syn_inv: 200.0, tau_mem_inv: 100.0, v_leak: 0.0 }
    }
}

/// `LSNNParameters`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LsnnParams {
    pub tau_syn_inv: f64,
    pub tau_mem_inv: f64,
    pub tau_adapt_inv: f64,
    pub v_leak: f64,
    pub v_th: f64,
    pub v_reset: f64,
    pub beta: f64,
    pub method: Method,
    pub alpha: f64,
}

impl Default for LsnnParams {
    fn default() -> Self {
        LsnnParams {
            tau_syn_inv: 200.0,
            tau_mem_inv: 100.0,
            tau_adapt_inv: 1.0 / 800.0,
            v_leak: 0.0,
            v_th: 1.0,
            v_reset: 0.0,
            beta: 1.8,
            method: Method::Super,
            alpha: 100.0,
        }
    }
}

/// How `LIFBox` resets after a spike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResetMethod {
    /// `v = v_reset` (Norse's `reset_value`, the default).
    #[default]
    Value,
    /// `v = v - v_th` (Norse's `reset_subtract`).
    Subtract,
}

/// `LIFBoxParameters`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifBoxParams {
    pub tau_mem_inv: f64,
    pub v_leak: f64,
    pub v_th: f64,
    pub v_reset: f64,
    pub method: Method,
    pub alpha: f64,
    pub reset_method: ResetMethod,
}

impl Default for LifBoxParams {
    fn default() -> Self {
        LifBoxParams {
            tau_mem_inv: 100.0,
            v_leak: 0.0,
            v_th: 1.0,
            v_reset: 0.0,
            method: Method::Super,
            alpha: 100.0,
            reset_method: ResetMethod::Value,
        }
    }
}

/// `LIFAdExParameters`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(non_snake_case)]
pub struct LifAdExParams {
    pub adaptation_current: f64,
    pub adaptation_spike: f64,
    pub delta_T: f64,
    pub tau_ada_inv: f64,
    pub tau_syn_inv: f64,
    pub tau_mem_inv: f64,
    pub v_leak: f64,
    pub v_th: f64,
    pub v_reset: f64,
    pub method: Method,
    pub alpha: f64,
}

impl Default for LifAdExParams {
    fn default() -> Self {
        LifAdExParams {
            adaptation_current: 4.0,
            adaptation_spike: 0.02,
            delta_T: 0.5,
            tau_ada_inv: 2.0,
            tau_syn_inv: 200.0,
            tau_mem_inv: 100.0,
            v_leak: 0.0,
            v_th: 1.0,
            v_reset: 0.0,
            method: Method::Super,
            alpha: 100.0,
        }
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
            Encoder::Direct {} => "Direct",
        }
    }
}

/// One layer, applied at every time step to the previous layer's output.
///
/// `name` defaults to the lower-case kind followed by the layer's index
/// (`linear0`, `lif1`, ...); a given name is letters, digits, `_` and `-`
/// (the rules are in [`check`](crate::check)). Sizes marked `in`/`in_channels` are optional
/// and, when given, checked against the previous layer's output.
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
    },
    /// Reshape each sample to one dimension.
    Flatten {
        #[serde(default)]
        name: Option<String>,
    },
    /// Multiply by a constant.
    Scale {
        #[serde(default)]
        name: Option<String>,
        factor: f64,
    },
    ReLU {
        #[serde(default)]
        name: Option<String>,
    },
    /// `LIFCell`: feed-forward LIF; the input is a current.
    LIF {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LifParams,
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
    },
    /// `LICell`: leaky integrator; the output is the voltage.
    LI {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LiParams,
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
    },
    /// `LSNNCell`: LIF with an adaptive threshold.
    LSNN {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LsnnParams,
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
    },
    /// `LIFBoxCell`: LIF without synaptic current.
    LIFBox {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LifBoxParams,
    },
    /// `LIFAdExCell`: adaptive exponential LIF.
    LIFAdEx {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: LifAdExParams,
    },
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
            | Layer::Flatten { name }
            | Layer::Scale { name, .. }
            | Layer::ReLU { name }
            | Layer::LIF { name, .. }
            | Layer::LIFRecurrent { name, .. }
            | Layer::LI { name, .. }
            | Layer::LILinear { name, .. }
            | Layer::LSNN { name, .. }
            | Layer::LSNNRecurrent { name, .. }
            | Layer::LIFBox { name, .. }
            | Layer::LIFAdEx { name, .. } => name.as_deref(),
        }
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
        )
    }
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
