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
//!   `in_channels`, `out_channels`, `kernel_size`, `stride`;
//! * at least one layer, unless there is an encoder (the network then
//!   returns the encoder's spikes); a `Direct` encoder needs a layer other
//!   than `Flatten` (else the output is the input itself);
//! * layer names (given or default, see [`Layer::name`]) are unique, are not
//!   empty, contain no `.` (weights are named `NAME.weight`), and are not
//!   `encoder` or `output`, which are reserved.

use std::collections::BTreeMap;

use crate::error::{FrontendError, Problem, layer_at};
use crate::schema::{
    Encoder, ExampleInput, FORMAT_VERSION, Layer, LiParams, LifAdExParams, LifBoxParams, LifParams, LsnnParams, Method,
    Network,
};

/// Names a layer may not have: they name the network's own tensors.
pub const RESERVED_NAMES: [&str; 2] = ["encoder", "output"];

/// Checks every value of `net`; `file` is used only in messages. Returns
/// all problems at once in [`FrontendError::Invalid`].
pub fn check_network(net: &Network, file: &str) -> Result<(), FrontendError> {
    let problems = network_problems(net);
    if problems.is_empty() { Ok(()) } else { Err(FrontendError::Invalid { file: file.to_string(), problems }) }
}

/// Every problem of `net`, in the order of the description.
pub fn network_problems(net: &Network) -> Vec<Problem> {
    let mut c = Checker::default();
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
    c.problems
}

#[derive(Default)]
struct Checker {
    /// The place of the thing being checked; fields are appended.
    at: String,
    problems: Vec<Problem>,
}

const TAU_HELP: &str = "an inverse time constant in 1/s (1/tau); Norse's default is";

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
                self.lif(p);
            }
            Encoder::SpikeLatency { p } => {
                self.at = "encoder (SpikeLatency)".to_string();
                self.lif(p);
            }
            Encoder::Poisson { f_max, seed: _ } => {
                self.at = "encoder (Poisson)".to_string();
                if self.finite("f_max", *f_max) && *f_max < 0.0 {
                    let problem = Problem::new(self.place("f_max"), format!("must be 0 or more, found {f_max}"))
                        .with_help("the maximum firing rate in Hz; Norse's default is 100");
                    self.push(problem);
                }
            }
            Encoder::Direct {} => {}
        }
    }

    fn layer(&mut self, layer: &Layer) {
        match layer {
            Layer::Linear { name: _, input, out, bias: _, input_density } => {
                self.opt_size("in", *input);
                self.size("out", *out);
                self.density("input_density", *input_density);
            }
            Layer::Conv2d {
                name: _,
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding: _,
                bias: _,
                input_density,
            } => {
                self.density("input_density", *input_density);
                self.opt_size("in_channels", *in_channels);
                self.size("out_channels", *out_channels);
                self.size("kernel_size", *kernel_size);
                self.size("stride", *stride);
            }
            Layer::MaxPool2d { name: _, kernel_size, stride } => {
                self.size("kernel_size", *kernel_size);
                self.opt_size("stride", *stride);
            }
            Layer::Flatten { name: _ } | Layer::ReLU { name: _ } => {}
            Layer::Scale { name: _, factor } => {
                self.finite("factor", *factor);
            }
            Layer::LIF { name: _, p } => self.lif(p),
            Layer::LIFRecurrent { name: _, input, hidden, p, autapses: _, input_density } => {
                self.opt_size("in", *input);
                self.size("hidden", *hidden);
                self.lif(p);
                self.density("input_density", *input_density);
            }
            Layer::LI { name: _, p } => self.li(p),
            Layer::LILinear { name: _, input, out, p, input_density } => {
                self.opt_size("in", *input);
                self.size("out", *out);
                self.li(p);
                self.density("input_density", *input_density);
            }
            Layer::LSNN { name: _, p } => self.lsnn(p),
            Layer::LSNNRecurrent { name: _, input, hidden, p, autapses: _, input_density } => {
                self.opt_size("in", *input);
                self.size("hidden", *hidden);
                self.lsnn(p);
                self.density("input_density", *input_density);
            }
            Layer::LIFBox { name: _, p } => self.lif_box(p),
            Layer::LIFAdEx { name: _, p } => self.lif_adex(p),
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

    fn opt_size(&mut self, field: &str, value: Option<u32>) {
        if let Some(value) = value {
            self.size(field, value);
        }
    }

    // The parameter checks destructure their struct so that a new field
    // can't be forgotten.

    fn lif(&mut self, p: &LifParams) {
        let LifParams { tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset, method, alpha } = *p;
        self.tau("p.tau_syn_inv", tau_syn_inv, 200.0);
        self.tau("p.tau_mem_inv", tau_mem_inv, 100.0);
        self.finite("p.v_leak", v_leak);
        self.finite("p.v_th", v_th);
        self.finite("p.v_reset", v_reset);
        self.alpha("p.alpha", alpha, method);
    }

    fn li(&mut self, p: &LiParams) {
        let LiParams { tau_syn_inv, tau_mem_inv, v_leak } = *p;
        self.tau("p.tau_syn_inv", tau_syn_inv, 200.0);
        self.tau("p.tau_mem_inv", tau_mem_inv, 100.0);
        self.finite("p.v_leak", v_leak);
    }

    fn lsnn(&mut self, p: &LsnnParams) {
        let LsnnParams { tau_syn_inv, tau_mem_inv, tau_adapt_inv, v_leak, v_th, v_reset, beta, method, alpha } = *p;
        self.tau("p.tau_syn_inv", tau_syn_inv, 200.0);
        self.tau("p.tau_mem_inv", tau_mem_inv, 100.0);
        self.tau("p.tau_adapt_inv", tau_adapt_inv, 0.00125);
        self.finite("p.v_leak", v_leak);
        self.finite("p.v_th", v_th);
        self.finite("p.v_reset", v_reset);
        self.finite("p.beta", beta);
        self.alpha("p.alpha", alpha, method);
    }

    fn lif_box(&mut self, p: &LifBoxParams) {
        let LifBoxParams { tau_mem_inv, v_leak, v_th, v_reset, method, alpha, reset_method: _ } = *p;
        self.tau("p.tau_mem_inv", tau_mem_inv, 100.0);
        self.finite("p.v_leak", v_leak);
        self.finite("p.v_th", v_th);
        self.finite("p.v_reset", v_reset);
        self.alpha("p.alpha", alpha, method);
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
        } = *p;
        self.finite("p.adaptation_current", adaptation_current);
        self.finite("p.adaptation_spike", adaptation_spike);
        self.positive(
            "p.delta_T",
            delta_T,
            Some("the sharpness of the exponential term (`exp((v - v_th) / delta_T)`); Norse's default is 0.5".into()),
        );
        self.tau("p.tau_ada_inv", tau_ada_inv, 2.0);
        self.tau("p.tau_syn_inv", tau_syn_inv, 200.0);
        self.tau("p.tau_mem_inv", tau_mem_inv, 100.0);
        self.finite("p.v_leak", v_leak);
        self.finite("p.v_th", v_th);
        self.finite("p.v_reset", v_reset);
        self.alpha("p.alpha", alpha, method);
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
                    Problem::new(at.clone(), format!("must not contain `.`, found `{name}`"))
                        .with_help("weights are named `NAME.weight`; use letters, digits and `_`"),
                );
            }
            if RESERVED_NAMES.contains(&name.as_str()) {
                self.push(
                    Problem::new(at.clone(), format!("`{name}` is reserved"))
                        .with_help("`encoder` and `output` name the network's own tensors; choose another name"),
                );
            }
            match first.get(&name) {
                Some(&other) => {
                    let how = if layers[other].given_name().is_some() { "" } else { " (its default name)" };
                    self.push(
                        Problem::new(at, format!("`{name}` is already the name of layers[{other}]{how}"))
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
