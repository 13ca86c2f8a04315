//! Checks the values of a parsed description: every parameter in its valid
//! range, names unique. It collects every problem, not just the first, each
//! with its place and the valid range.
//!
//! Shapes are not inferred here; lowering checks that layers fit together.
//!
//! What is checked:
//!
//! * `version` is 1, `steps` ≥ 1, `dt` > 0 and finite;
//! * every float is finite (no `NaN`, `inf`);
//! * every inverse time constant `tau_*_inv` > 0, LIFAdEx `delta_T` > 0,
//!   Poisson `f_max` ≥ 0;
//! * `alpha` > 0 where the surrogate uses it: `tanh`, `circ`, `triangle`,
//!   `heavi_erfc`. `super` ignores alpha in Norse 1.1.0 (its gradient is
//!   `1/(|x|+1)^2`) and `heaviside` has no gradient, so there alpha need
//!   only be finite;
//! * `input_density`, where given, is in [0, 1];
//! * sizes ≥ 1: the input's dimensions, `in`, `out`, `hidden`,
//!   `in_channels`, `out_channels`, `kernel_size`, `stride`, `dilation`,
//!   `groups` (dividing the channel counts), a pooling's `padding` (at most
//!   half its kernel), `count_include_pad` (only `true`) and `norm_type`
//!   (only 1);
//! * at least one layer, unless there is an encoder (the network then
//!   returns the encoder's spikes); a `Direct` encoder needs a layer other
//!   than `Flatten` (else the output is the input itself);
//! * every `dt * tau_*_inv` is at most 2 (see [`STEP_LIMIT`]; above 1 is a
//!   warning);
//! * a neuron parameter given per neuron (`v_th: [0.5, 0.6]`) is checked
//!   element by element (`p.v_th[1]`), and holds at least one value; its
//!   length is checked by lowering, which knows the layer's shape;
//! * `trainable` lists names of the struct's float fields, each once;
//! * layer names (given or default, see [`Layer::name`]) are unique, are not
//!   `encoder`, `output` or `x`, which are reserved, and are 1 to
//!   [`MAX_NAME_BYTES`] bytes of letters, digits, `_` and `-` (no `.`:
//!   weights are named `NAME.weight`; names become file names, so no `/`,
//!   spaces or control characters).
//!
//! [`network_warnings`] lists what is allowed but likely a mistake.

use std::collections::BTreeMap;

mod neuron;

use crate::error::{FrontendError, Problem, layer_at, shown_name};
use crate::schema::{
    BatchNormVariant, Encoder, ExampleInput, FORMAT_VERSION, Layer, LiParams, LifAdExParams, LifBoxParams, LifParams,
    LsnnParams, Method, Network, NeuronParam, NeuronParams, ParamValue,
};

/// Names a layer may not have: they name the network's own tensors.
pub const RESERVED_NAMES: [&str; 3] = ["encoder", "output", crate::graph::INPUT];

/// Checks every value of `net`; `file` is used only in messages. Returns
/// all problems at once in [`FrontendError::Invalid`].
pub fn check_network(net: &Network, file: &str) -> Result<(), FrontendError> {
    let problems = network_problems(net);
    if problems.is_empty() { Ok(()) } else { Err(FrontendError::Invalid { file: file.to_string(), problems }) }
}

/// Every problem of `net`, in the order of the description.
pub fn network_problems(net: &Network) -> Vec<Problem> {
    check_all(net).problems
}

/// What `net` allows but is likely a mistake (a state that keeps nothing
/// from one step to the next, a Poisson rate that saturates), in the order
/// of the description. [`check_network`] does not fail on these; the CLI
/// prints them as warnings.
pub fn network_warnings(net: &Network) -> Vec<Problem> {
    check_all(net).warnings
}

fn check_all(net: &Network) -> Checker {
    let mut c = Checker { dt: net.dt, ..Checker::default() };
    if net.version != FORMAT_VERSION {
        c.push(
            Problem::new("version", format!("unsupported format version {}", net.version))
                .with_help(format!("supported versions: {FORMAT_VERSION}")),
        );
    }
    if net.steps == 0 {
        c.push(Problem::new("steps", "must be 1 or more, found 0").with_help("steps is the number of time steps T"));
    }
    if !net.dt.is_finite() {
        c.push(Problem::new("dt", format!("must be a finite number greater than 0, found {}", net.dt)));
    } else if net.dt <= 0.0 {
        c.push(
            Problem::new("dt", format!("must be greater than 0, found {}", net.dt))
                .with_help("dt is the time step in seconds; Norse's default is 0.001"),
        );
    }
    if net.input.is_empty() {
        c.push(
            Problem::new("input", "must have at least one dimension, found `[]`")
                .with_help("the shape of one sample without batch and time, e.g. `[784]` or `[1, 28, 28]`"),
        );
    }
    for (i, &dim) in net.input.iter().enumerate() {
        if dim == 0 {
            c.push(Problem::new(format!("input[{i}]"), "must be 1 or more, found 0"));
        }
    }
    if let Some(encoder) = &net.encoder {
        c.encoder(encoder);
        if matches!(encoder, Encoder::Direct {}) && net.layers.iter().all(|l| matches!(l, Layer::Flatten { .. })) {
            c.push(
                Problem::new(
                    "encoder (Direct)",
                    "a Direct encoder passes the image on unchanged, and no layer computes anything from it: \
                     the output would be the input at every step",
                )
                .with_help(
                    "add the layers that read the image, e.g. `Conv2d(out_channels: 16, kernel_size: 5)` and `LIF()`",
                ),
            );
        }
    }
    match &net.example_input {
        ExampleInput::Pattern => {}
        ExampleInput::Constant(x) => {
            if !x.is_finite() {
                c.push(Problem::new("example_input", format!("must be a finite number, found {x}")));
            }
        }
        ExampleInput::SpikesAt(steps) => {
            if net.encoder.is_some() {
                c.push(
                    Problem::new("example_input", "SpikesAt needs a per-step input, but this network has an encoder")
                        .with_help("use Pattern or Constant(value) for the encoder's static input"),
                );
            }
            if let Some(&t) = steps.iter().find(|&&t| t >= net.steps) {
                c.push(
                    Problem::new(
                        "example_input",
                        format!("spike at step {t}, but the network runs steps 0..{}", net.steps),
                    )
                    .with_help(format!("use steps from 0 to {}", net.steps.saturating_sub(1))),
                );
            }
        }
    }
    if net.layers.is_empty() && net.encoder.is_none() {
        c.push(
            Problem::new("layers", "a network without an encoder needs at least one layer")
                .with_help("add a layer, e.g. `LIF()`, or an encoder"),
        );
    }
    for (index, layer) in net.layers.iter().enumerate() {
        c.at = layer_at(index, layer);
        c.layer(layer);
    }
    c.names(&net.layers);
    if let Err(problems) = crate::graph::resolve(&net.layers) {
        c.problems.extend(problems);
    }
    time_batched_needs_no_delays(net, &mut c);
    c
}

/// A time-batched BatchNorm (tdBN) needs all steps of its input before its
/// first output, so training ends the step loop there and starts another:
/// no value can be carried to the next step across it, so a graph with
/// `recurrent_inputs` cannot have one.
fn time_batched_needs_no_delays(net: &Network, c: &mut Checker) {
    let Some(delayed) = net.layers.iter().enumerate().find(|(_, l)| !l.wiring().recurrent_inputs.is_empty()) else {
        return;
    };
    for (i, layer) in net.layers.iter().enumerate() {
        if let Layer::BatchNorm1d { variant: BatchNormVariant::TimeBatched, .. }
        | Layer::BatchNorm2d { variant: BatchNormVariant::TimeBatched, .. } = layer
        {
            c.push(
                Problem::new(
                    format!("{}: variant", layer_at(i, layer)),
                    format!(
                        "`time_batched` normalises over all steps at once, so it cannot be in a graph where {} reads \
                         a previous step (recurrent_inputs)",
                        layer_at(delayed.0, delayed.1)
                    ),
                )
                .with_help("use `variant: per_step`, or remove the recurrent_inputs"),
            );
        }
    }
}

#[derive(Default)]
struct Checker {
    /// The network's time step, for [`Checker::step`].
    dt: f64,
    /// The place of the thing being checked; fields are appended.
    at: String,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

const TAU_HELP: &str = "an inverse time constant in 1/s (1/tau); Norse's default is";

/// The states that `tau_syn_inv` and `tau_mem_inv` govern, for messages.
const SYN: &str = "the synaptic current `i`";
const MEM: &str = "the membrane potential `v`";

/// The largest `dt * tau_inv` a state update may have. Norse's updates are
/// forward Euler steps (`v + dt * tau_mem_inv * ((v_leak - v) + i)`,
/// `i - dt * tau_syn_inv * i`, likewise LSNN's threshold adaptation
/// `tau_adapt_inv` and LIFAdEx's adaptation current `tau_ada_inv`), each
/// moving its state the fraction `k = dt * tau_inv` of the way to its
/// target. With `k > 2` the state grows without bound to inf and NaN: that
/// is an error. Norse runs everything below, so the rest are warnings: with
/// `1 < k <= 2` a step overshoots and the state swings around its target
/// (the current changes sign every step), and at `k = 1` it keeps nothing
/// from the previous step. Norse's defaults give 0.1 and 0.2 at
/// `dt = 0.001`, and Norse's test cases and our examples stay at or below
/// 0.5 (no warning). A product within `STEP_SLACK` of a bound counts as the
/// bound, so `0.005 * 200` is 1 however it rounds.
pub const STEP_LIMIT: f64 = 2.0;
const STEP_SLACK: f64 = 1e-9;

/// The longest layer name, in bytes. Names become parts of file names
/// (`snnc compile --emit clif -o DIR` writes `STEM.NAME.clif`), which most
/// file systems limit to 255 bytes.
pub const MAX_NAME_BYTES: usize = 64;

impl Checker {
    fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    fn place(&self, field: &str) -> String {
        format!("{}: {field}", self.at)
    }

    /// A float that must only be finite.
    fn finite(&mut self, field: &str, value: f64) -> bool {
        if value.is_finite() {
            return true;
        }
        let problem = Problem::new(self.place(field), format!("must be a finite number, found {value}"));
        self.push(problem);
        false
    }

    /// A float that must be finite and greater than 0.
    fn positive(&mut self, field: &str, value: f64, help: Option<String>) {
        if !value.is_finite() {
            let problem =
                Problem::new(self.place(field), format!("must be a finite number greater than 0, found {value}"));
            self.push(problem);
        } else if value <= 0.0 {
            let mut problem = Problem::new(self.place(field), format!("must be greater than 0, found {value}"));
            problem.help = help;
            self.push(problem);
        }
    }

    fn tau(&mut self, field: &str, value: f64, default: f64) {
        self.positive(field, value, Some(format!("{TAU_HELP} {default}")));
    }

    /// An inverse time constant `field` whose state `what` moves by
    /// `dt * field` per step: at most [`STEP_LIMIT`].
    fn step(&mut self, field: &str, tau_inv: f64, what: &str) {
        let dt = self.dt;
        // Values out of range are reported by the range checks.
        if !(dt.is_finite() && dt > 0.0 && tau_inv.is_finite() && tau_inv > 0.0) {
            return;
        }
        let k = dt * tau_inv;
        if k < 1.0 - STEP_SLACK {
            return;
        }
        let name = field.trim_start_matches("p.");
        let product = format!("dt * {name} = {dt} * {tau_inv} = {k}");
        let (dt_bound, tau_bound) = (round_down(1.0 / tau_inv), round_down(1.0 / dt));
        let help = format!(
            "dt is in seconds: 1 ms is `dt: 0.001`; keep dt * {name} at most 1: dt at most {dt_bound} s, or {name} at \
             most {tau_bound}"
        );
        if k > STEP_LIMIT + STEP_SLACK {
            let message = format!(
                "{product}, more than {STEP_LIMIT}: each step moves {what} past its target by more than it was away, \
                 so it grows without bound to inf and NaN"
            );
            self.push(Problem::new(self.place(field), message).with_help(help));
        } else if k > 1.0 + STEP_SLACK {
            let message =
                format!("{product}, more than 1: each step moves {what} past its target, so it swings around it");
            self.warnings.push(Problem::new(self.place(field), message).with_help(help));
        } else {
            let help = format!(
                "dt is in seconds: 1 ms is `dt: 0.001`; with dt below {dt_bound} s, or {name} below {tau_bound}, part \
                 of it carries over"
            );
            let message = format!("{product}: {what} keeps nothing from one step to the next");
            self.warnings.push(Problem::new(self.place(field), message).with_help(help));
        }
    }

    /// A size that must be at least 1.
    fn size(&mut self, field: &str, value: u32) {
        if value == 0 {
            let problem = Problem::new(self.place(field), "must be 1 or more, found 0");
            self.push(problem);
        }
    }

    fn alpha(&mut self, field: &str, value: f64, method: Method) {
        match method {
            Method::Tanh | Method::Circ | Method::Triangle | Method::HeaviErfc => self.positive(
                field,
                value,
                Some(format!("the `{}` surrogate's width parameter; Norse's default is 100", method.norse_name())),
            ),
            // `super` ignores alpha in Norse 1.1.0 and `heaviside` has no
            // gradient, so any finite alpha will do.
            Method::Super | Method::Heaviside => {
                self.finite(field, value);
            }
        }
    }

    fn encoder(&mut self, encoder: &Encoder) {
        match encoder {
            Encoder::ConstantCurrent { p } => {
                self.at = "encoder (ConstantCurrent)".to_string();
                self.lif(p, false);
            }
            Encoder::SpikeLatency { p } => {
                self.at = "encoder (SpikeLatency)".to_string();
                self.lif(p, false);
            }
            Encoder::Poisson { f_max, seed: _ } | Encoder::SignedPoisson { f_max, seed: _ } => {
                self.at = format!("encoder ({})", encoder.kind());
                if self.finite("f_max", *f_max) && *f_max < 0.0 {
                    let problem = Problem::new(self.place("f_max"), format!("must be 0 or more, found {f_max}"))
                        .with_help("the maximum firing rate in Hz; Norse's default is 100");
                    self.push(problem);
                }
                let rate = self.dt * f_max;
                if self.dt.is_finite() && rate.is_finite() && rate > 1.0 + STEP_SLACK {
                    let message = format!(
                        "dt * f_max = {} * {f_max} = {rate}, more than 1: an input value x spikes with probability \
                         dt * f_max * x, so every value of {} or more spikes at every step",
                        self.dt,
                        1.0 / rate
                    );
                    let help = "dt is in seconds: 1 ms is `dt: 0.001`; f_max is in Hz";
                    self.warnings.push(Problem::new(self.place("f_max"), message).with_help(help));
                }
            }
            Encoder::Population { out_features, scale } => {
                self.at = "encoder (Population)".to_string();
                if *out_features == 0 {
                    let problem = Problem::new(self.place("out_features"), "must be 1 or more, found 0".to_string())
                        .with_help("the number of Gaussian receptive fields per input value, e.g. `out_features: 8`");
                    self.push(problem);
                }
                if let Some(scale) = *scale
                    && self.finite("scale", scale)
                    && scale < 0.0
                {
                    let problem = Problem::new(self.place("scale"), format!("must be 0 or more, found {scale}"))
                        .with_help(
                            "the centres run from 0 to `scale`; leave `scale` out (or 0) to use the largest input value",
                        );
                    self.push(problem);
                }
            }
            Encoder::Direct {} => {}
        }
    }

    fn layer(&mut self, layer: &Layer) {
        match layer {
            Layer::Linear {
                inputs: _,
                recurrent_inputs: _,
                merge: _,
                name: _,
                input,
                out,
                bias: _,
                input_density,
                plasticity,
            } => {
                self.opt_size("in", *input);
                self.size("out", *out);
                self.density("input_density", *input_density);
                if let Some(p) = plasticity {
                    self.stdp(p);
                }
            }
            Layer::Conv2d {
                inputs: _,
                recurrent_inputs: _,
                merge: _,
                name: _,
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding: _,
                dilation,
                groups,
                bias: _,
                input_density,
                plasticity,
            } => {
                self.density("input_density", *input_density);
                if let Some(p) = plasticity {
                    self.stdp(p);
                }
                self.opt_size("in_channels", *in_channels);
                self.size("out_channels", *out_channels);
                self.pair_size("kernel_size", *kernel_size);
                self.pair_size("stride", *stride);
                self.pair_size("dilation", *dilation);
                self.size("groups", *groups);
                self.groups(*groups, *in_channels, *out_channels);
            }
            Layer::MaxPool2d { inputs: _, recurrent_inputs: _, merge: _, name: _, kernel_size, stride, padding }
            | Layer::SumPool2d { inputs: _, recurrent_inputs: _, merge: _, name: _, kernel_size, stride, padding } => {
                self.pool(*kernel_size, *stride, *padding);
            }
            Layer::AvgPool2d {
                inputs: _,
                recurrent_inputs: _,
                merge: _,
                name: _,
                kernel_size,
                stride,
                padding,
                count_include_pad,
            } => {
                self.pool(*kernel_size, *stride, *padding);
                if !count_include_pad {
                    let problem = Problem::new(
                        self.place("count_include_pad"),
                        "only `true` is supported (the padding counts in each window's divisor, torch's default)",
                    )
                    .with_help("leave `count_include_pad` out, or give the input already padded and use no padding");
                    self.push(problem);
                }
            }
            Layer::LPPool2d { inputs: _, recurrent_inputs: _, merge: _, name: _, norm_type, kernel_size, stride } => {
                self.pool(*kernel_size, *stride, crate::schema::Pair::default());
                if *norm_type != 1.0 {
                    let problem = Problem::new(
                        self.place("norm_type"),
                        format!("only 1 is supported (the window's sum), found {norm_type}"),
                    )
                    .with_help("use `norm_type: 1`, or `SumPool2d` for a plain window sum");
                    self.push(problem);
                }
            }
            Layer::Flatten { inputs: _, recurrent_inputs: _, merge: _, name: _ }
            | Layer::ReLU { inputs: _, recurrent_inputs: _, merge: _, name: _ }
            | Layer::Identity { inputs: _, recurrent_inputs: _, merge: _, name: _ } => {}
            Layer::Dropout { inputs: _, recurrent_inputs: _, merge: _, name: _, p } => {
                if self.finite("p", *p) && !(0.0..1.0).contains(p) {
                    let at = self.place("p");
                    self.push(
                        Problem::new(at, format!("must be in [0, 1), found {p}"))
                            .with_help("p is the probability of zeroing a value; 1 would zero everything"),
                    );
                }
            }
            Layer::BatchNorm1d {
                inputs: _,
                recurrent_inputs: _,
                merge: _,
                name: _,
                num_features,
                eps,
                momentum,
                // Both variants; see `time_batched_needs_no_delays`.
                variant: _,
            }
            | Layer::BatchNorm2d {
                inputs: _,
                recurrent_inputs: _,
                merge: _,
                name: _,
                num_features,
                eps,
                momentum,
                variant: _,
            } => {
                self.opt_size("num_features", *num_features);
                if self.finite("eps", *eps) && *eps <= 0.0 {
                    let at = self.place("eps");
                    self.push(
                        Problem::new(at, format!("must be more than 0, found {eps}"))
                            .with_help("eps keeps the division finite when a variance is 0; torch's default is 1e-5"),
                    );
                }
                if self.finite("momentum", *momentum) && !(0.0..=1.0).contains(momentum) {
                    let at = self.place("momentum");
                    self.push(Problem::new(at, format!("must be in [0, 1], found {momentum}")).with_help(
                        "momentum is the weight of the new batch statistics in the running ones; torch's default is 0.1",
                    ));
                }
            }
            Layer::Scale { inputs: _, recurrent_inputs: _, merge: _, name: _, factor } => {
                self.finite("factor", *factor);
            }
            Layer::LIF { inputs: _, recurrent_inputs: _, merge: _, name: _, p } => self.lif(p, true),
            Layer::LIFRecurrent {
                inputs: _,
                recurrent_inputs: _,
                merge: _,
                name: _,
                input,
                hidden,
                p,
                autapses: _,
                input_density,
            } => {
                self.opt_size("in", *input);
                self.size("hidden", *hidden);
                self.lif(p, true);
                self.density("input_density", *input_density);
            }
            Layer::LI { inputs: _, recurrent_inputs: _, merge: _, name: _, p } => self.li(p),
            Layer::LILinear { inputs: _, recurrent_inputs: _, merge: _, name: _, input, out, p, input_density } => {
                self.opt_size("in", *input);
                self.size("out", *out);
                self.li(p);
                self.density("input_density", *input_density);
            }
            Layer::LSNN { inputs: _, recurrent_inputs: _, merge: _, name: _, p } => self.lsnn(p),
            Layer::LSNNRecurrent {
                inputs: _,
                recurrent_inputs: _,
                merge: _,
                name: _,
                input,
                hidden,
                p,
                autapses: _,
                input_density,
            } => {
                self.opt_size("in", *input);
                self.size("hidden", *hidden);
                self.lsnn(p);
                self.density("input_density", *input_density);
            }
            Layer::LIFBox { inputs: _, recurrent_inputs: _, merge: _, name: _, p } => self.lif_box(p),
            Layer::LIFAdEx { inputs: _, recurrent_inputs: _, merge: _, name: _, p } => self.lif_adex(p),
            Layer::Neuron { inputs: _, recurrent_inputs: _, merge: _, name: _, model, hidden, autapses: _ } => {
                self.neuron_model(model, *hidden)
            }
            Layer::IAF { inputs: _, recurrent_inputs: _, merge: _, name: _, p, hidden, autapses: _ } => {
                self.opt_size("hidden", *hidden);
                self.iaf(p)
            }
            Layer::Izhikevich { inputs: _, recurrent_inputs: _, merge: _, name: _, preset, p, hidden, autapses: _ } => {
                self.opt_size("hidden", *hidden);
                self.izhikevich(*preset, p)
            }
            Layer::LIFEx { inputs: _, recurrent_inputs: _, merge: _, name: _, p, hidden, autapses: _ } => {
                self.opt_size("hidden", *hidden);
                self.lif_ex(p)
            }
            Layer::LIFRefrac { inputs: _, recurrent_inputs: _, merge: _, name: _, p, hidden, autapses: _ } => {
                self.opt_size("hidden", *hidden);
                self.lif_refrac(p)
            }
            Layer::LIFAdExRefrac { inputs: _, recurrent_inputs: _, merge: _, name: _, p } => self.lif_adex_refrac(p),
            Layer::CobaLIF { inputs: _, recurrent_inputs: _, merge: _, name: _, p, hidden, use_input: _ } => {
                self.opt_size("hidden", *hidden);
                self.coba_lif(p)
            }
            Layer::LIBox { inputs: _, recurrent_inputs: _, merge: _, name: _, p } => self.li_box(p),
            Layer::TsodyksMarkram { inputs: _, recurrent_inputs: _, merge: _, name: _, p } => self.tsodyks_markram(p),
        }
    }

    /// `plasticity: STDP(...)`: finite numbers, positive trace rates that
    /// keep `dt * tau_*_inv` at most 2, `w_min <= w_max`, `mu >= 0`.
    fn stdp(&mut self, p: &crate::schema::Stdp) {
        let fields = [
            ("a_pre", p.a_pre),
            ("a_post", p.a_post),
            ("w_min", p.w_min),
            ("w_max", p.w_max),
            ("eta_plus", p.eta_plus),
            ("eta_minus", p.eta_minus),
        ];
        for (f, x) in fields {
            self.finite(&format!("plasticity.{f}"), x);
        }
        let help = "the inverse time constant of the STDP trace (1/s); Norse's default is 20";
        self.positive("plasticity.tau_pre_inv", p.tau_pre_inv, Some(help.into()));
        self.positive("plasticity.tau_post_inv", p.tau_post_inv, Some(help.into()));
        self.step("plasticity.tau_pre_inv", p.tau_pre_inv, "the presynaptic trace");
        self.step("plasticity.tau_post_inv", p.tau_post_inv, "the postsynaptic trace");
        if p.w_min.is_finite() && p.w_max.is_finite() && p.w_min > p.w_max {
            let problem = Problem::new(
                self.place("plasticity.w_min"),
                format!("must be at most w_max, found w_min {} > w_max {}", p.w_min, p.w_max),
            );
            self.push(problem);
        }
        if !(p.mu.is_finite() && p.mu >= 0.0) {
            let problem =
                Problem::new(self.place("plasticity.mu"), format!("must be a finite number >= 0, found {}", p.mu))
                    .with_help("the exponent of `multiplicative_pow`, e.g. 0.5 (Norse: 0 <= mu <= 1)");
            self.push(problem);
        }
    }

    /// An optional spike density: a fraction from 0 to 1.
    fn density(&mut self, field: &str, value: Option<f64>) {
        if let Some(value) = value
            && !(0.0..=1.0).contains(&value)
        {
            let problem = Problem::new(self.place(field), format!("must be a number from 0 to 1, found {value}"))
                .with_help("the expected fraction of input spikes per neuron and step, e.g. 0.1");
            self.push(problem);
        }
    }

    /// A kernel size, stride or dilation: 1 or more on both axes.
    fn pair_size(&mut self, field: &str, value: crate::schema::Pair) {
        if value.0.contains(&0) {
            let problem = Problem::new(self.place(field), format!("must be 1 or more, found {value}"));
            self.push(problem);
        }
    }

    /// A pooling's kernel, stride and padding: at least 1, and a padding of
    /// at most half the kernel on each axis (torch's rule; a window never
    /// lies in the padding alone).
    fn pool(&mut self, kernel: crate::schema::Pair, stride: Option<crate::schema::Pair>, padding: crate::schema::Pair) {
        self.pair_size("kernel_size", kernel);
        if let Some(stride) = stride {
            self.pair_size("stride", stride);
        }
        if (0..2).any(|ax| padding.0[ax] > kernel.0[ax] / 2) {
            let most = crate::schema::Pair(kernel.0.map(|k| k / 2));
            let problem = Problem::new(
                self.place("padding"),
                format!("must be at most half the kernel_size {kernel}, found {padding}"),
            )
            .with_help(format!("use a padding of at most {most}, or a larger kernel_size"));
            self.push(problem);
        }
    }

    /// `groups` divides both channel counts (the input's, when given;
    /// lowering checks it against the input's shape).
    fn groups(&mut self, groups: u32, in_channels: Option<u32>, out_channels: u32) {
        if groups == 0 {
            return;
        }
        for (field, n) in [("out_channels", Some(out_channels)), ("in_channels", in_channels)] {
            if let Some(n) = n.filter(|n| !n.is_multiple_of(groups)) {
                let problem = Problem::new(
                    self.place("groups"),
                    format!("{groups} does not divide {field} {n}: each group needs as many channels as the others"),
                )
                .with_help(format!("use a groups that divides {field} {n}, e.g. 1"));
                self.push(problem);
            }
        }
    }

    fn opt_size(&mut self, field: &str, value: Option<u32>) {
        if let Some(value) = value {
            self.size(field, value);
        }
    }

    // The parameter checks destructure their struct so that a new field
    // can't be forgotten.

    /// Runs `check` on every value of `v`, named `field` for a scalar and
    /// `field[k]` for element `k` of a per-neuron list. Reports at most one
    /// problem and one warning per field (a list of 1000 neurons with the
    /// same mistake is one message); an empty list is a problem.
    fn each(&mut self, field: &str, v: &ParamValue, check: impl Fn(&mut Self, &str, f64)) {
        if let ParamValue::PerNeuron(list) = v
            && list.is_empty()
        {
            let problem = Problem::new(self.place(field), "must hold at least one value, found `[]`")
                .with_help("give one number for the whole layer, or one per neuron");
            self.push(problem);
            return;
        }
        let mut warned = false;
        for (k, &x) in v.values().iter().enumerate() {
            let name = if v.is_per_neuron() { format!("{field}[{k}]") } else { field.to_string() };
            let (problems, warnings) = (self.problems.len(), self.warnings.len());
            check(self, &name, x);
            if self.warnings.len() > warnings {
                if warned {
                    self.warnings.truncate(warnings);
                }
                warned = true;
            }
            if self.problems.len() > problems {
                break;
            }
        }
    }

    fn each_finite(&mut self, field: &str, v: &ParamValue) {
        self.each(field, v, |c, f, x| {
            c.finite(f, x);
        });
    }

    fn each_tau(&mut self, field: &str, v: &ParamValue, default: f64) {
        self.each(field, v, |c, f, x| c.tau(f, x, default));
    }

    fn each_step(&mut self, field: &str, v: &ParamValue, what: &str) {
        self.each(field, v, |c, f, x| c.step(f, x, what));
    }

    /// The `trainable` list: names of this struct's float fields, each once.
    /// `unused`: fields the model does not use here (a current encoder has
    /// no synaptic current), which cannot be trained.
    fn trainable<P: NeuronParams>(&mut self, p: &P, unused: &[NeuronParam]) {
        let valid: Vec<&str> = P::FIELDS.iter().filter(|f| !unused.contains(f)).map(|f| f.name()).collect();
        for (k, &name) in p.trainable().iter().enumerate() {
            let field = format!("p.trainable[{k}]");
            if !valid.contains(&name.name()) {
                let problem = Problem::new(self.place(&field), format!("`{name}` is not a parameter of this model"))
                    .with_help(format!("trainable parameters here: {}", valid.join(", ")));
                self.push(problem);
            } else if p.trainable()[..k].contains(&name) {
                let problem = Problem::new(self.place(&field), format!("`{name}` is listed twice"))
                    .with_help("list each trainable parameter once");
                self.push(problem);
            }
        }
    }

    // The parameter checks destructure their struct so that a new field
    // can't be forgotten.

    /// LIF parameters; `syn`: whether the synaptic current is used (the
    /// current encoders have none).
    fn lif(&mut self, p: &LifParams, syn: bool) {
        let LifParams { tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset, method, alpha, trainable: _ } = p;
        self.each_tau("p.tau_syn_inv", tau_syn_inv, 200.0);
        self.each_tau("p.tau_mem_inv", tau_mem_inv, 100.0);
        if syn {
            self.each_step("p.tau_syn_inv", tau_syn_inv, SYN);
        }
        self.each_step("p.tau_mem_inv", tau_mem_inv, MEM);
        self.each_finite("p.v_leak", v_leak);
        self.each_finite("p.v_th", v_th);
        self.each_finite("p.v_reset", v_reset);
        self.alpha("p.alpha", *alpha, *method);
        let unused: &[NeuronParam] = if syn { &[] } else { &[NeuronParam::tau_syn_inv] };
        self.trainable(p, unused);
    }

    fn li(&mut self, p: &LiParams) {
        let LiParams { tau_syn_inv, tau_mem_inv, v_leak, trainable: _ } = p;
        self.each_tau("p.tau_syn_inv", tau_syn_inv, 200.0);
        self.each_tau("p.tau_mem_inv", tau_mem_inv, 100.0);
        self.each_step("p.tau_syn_inv", tau_syn_inv, SYN);
        self.each_step("p.tau_mem_inv", tau_mem_inv, MEM);
        self.each_finite("p.v_leak", v_leak);
        self.trainable(p, &[]);
    }

    fn lsnn(&mut self, p: &LsnnParams) {
        let LsnnParams {
            tau_syn_inv,
            tau_mem_inv,
            tau_adapt_inv,
            v_leak,
            v_th,
            v_reset,
            beta,
            method,
            alpha,
            trainable: _,
        } = p;
        self.each_tau("p.tau_syn_inv", tau_syn_inv, 200.0);
        self.each_tau("p.tau_mem_inv", tau_mem_inv, 100.0);
        self.each_tau("p.tau_adapt_inv", tau_adapt_inv, 0.00125);
        self.each_step("p.tau_syn_inv", tau_syn_inv, SYN);
        self.each_step("p.tau_mem_inv", tau_mem_inv, MEM);
        self.each_step("p.tau_adapt_inv", tau_adapt_inv, "the adaptive threshold `b`");
        self.each_finite("p.v_leak", v_leak);
        self.each_finite("p.v_th", v_th);
        self.each_finite("p.v_reset", v_reset);
        self.each_finite("p.beta", beta);
        self.alpha("p.alpha", *alpha, *method);
        self.trainable(p, &[]);
    }

    fn lif_box(&mut self, p: &LifBoxParams) {
        let LifBoxParams { tau_mem_inv, v_leak, v_th, v_reset, method, alpha, reset_method: _, trainable: _ } = p;
        self.each_tau("p.tau_mem_inv", tau_mem_inv, 100.0);
        self.each_step("p.tau_mem_inv", tau_mem_inv, MEM);
        self.each_finite("p.v_leak", v_leak);
        self.each_finite("p.v_th", v_th);
        self.each_finite("p.v_reset", v_reset);
        self.alpha("p.alpha", *alpha, *method);
        self.trainable(p, &[]);
    }

    #[allow(non_snake_case)]
    fn lif_adex(&mut self, p: &LifAdExParams) {
        let LifAdExParams {
            adaptation_current,
            adaptation_spike,
            delta_T,
            tau_ada_inv,
            tau_syn_inv,
            tau_mem_inv,
            v_leak,
            v_th,
            v_reset,
            method,
            alpha,
            trainable: _,
        } = p;
        self.each_finite("p.adaptation_current", adaptation_current);
        self.each_finite("p.adaptation_spike", adaptation_spike);
        self.each("p.delta_T", delta_T, |c, f, x| {
            c.positive(
                f,
                x,
                Some(
                    "the sharpness of the exponential term (`exp((v - v_th) / delta_T)`); Norse's default is 0.5"
                        .into(),
                ),
            )
        });
        self.each_tau("p.tau_ada_inv", tau_ada_inv, 2.0);
        self.each_tau("p.tau_syn_inv", tau_syn_inv, 200.0);
        self.each_tau("p.tau_mem_inv", tau_mem_inv, 100.0);
        self.each_step("p.tau_ada_inv", tau_ada_inv, "the adaptation current `a`");
        self.each_step("p.tau_syn_inv", tau_syn_inv, SYN);
        self.each_step("p.tau_mem_inv", tau_mem_inv, MEM);
        self.each_finite("p.v_leak", v_leak);
        self.each_finite("p.v_th", v_th);
        self.each_finite("p.v_reset", v_reset);
        self.alpha("p.alpha", *alpha, *method);
        self.trainable(p, &[]);
    }

    fn names(&mut self, layers: &[Layer]) {
        // The first layer to use each name.
        let mut first: BTreeMap<String, usize> = BTreeMap::new();
        for (index, layer) in layers.iter().enumerate() {
            let name = layer.name(index);
            let at = format!("{}: name", layer_at(index, layer));
            if name.is_empty() {
                self.push(
                    Problem::new(at.clone(), "must not be empty").with_help("leave `name` out to get a default name"),
                );
            } else if name.contains('.') {
                self.push(
                    Problem::new(at.clone(), format!("must not contain `.`, found `{}`", shown_name(&name)))
                        .with_help("weights are named `NAME.weight`; use letters, digits, `_` and `-`"),
                );
            } else if name.len() > MAX_NAME_BYTES {
                self.push(
                    Problem::new(
                        at.clone(),
                        format!("must be at most {MAX_NAME_BYTES} bytes long, found {}", name.len()),
                    )
                    .with_help("names become parts of file names (`snnc compile -o`); choose a shorter name"),
                );
            } else if let Some(c) = name.chars().find(|&c| !is_name_char(c)) {
                self.push(
                    Problem::new(
                        at.clone(),
                        format!("must not contain `{}`, found `{}`", c.escape_debug(), shown_name(&name)),
                    )
                    .with_help("names become parts of file names and tensor names; use letters, digits, `_` and `-`"),
                );
            }
            if RESERVED_NAMES.contains(&name.as_str()) {
                self.push(
                    Problem::new(at.clone(), format!("`{name}` is reserved"))
                        .with_help("`encoder`, `output` and `x` name the network's own tensors; choose another name"),
                );
            }
            match first.get(&name) {
                Some(&other) => {
                    let how = if layers[other].given_name().is_some() { "" } else { " (its default name)" };
                    self.push(
                        Problem::new(
                            at,
                            format!("`{}` is already the name of layers[{other}]{how}", shown_name(&name)),
                        )
                        .with_help("layer names must be unique"),
                    );
                }
                None => {
                    first.insert(name, index);
                }
            }
        }
    }
}

/// Whether a layer name may hold `c`: a letter or digit (any script), `_`
/// or `-`.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// A positive `x` rounded down to three significant digits, so that a
/// bound shown in a message still holds.
fn round_down(x: f64) -> String {
    let decimals = 2 - x.log10().floor() as i32;
    let scale = 10f64.powi(decimals);
    // The nudge keeps 0.005 from becoming 0.00499 by rounding error.
    let rounded = (x * scale * (1.0 + 1e-12)).floor() / scale;
    let text = format!("{rounded:.*}", decimals.max(0) as usize);
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
}
