//! Networks shared by the frontend's tests: fixed RON texts and a proptest
//! strategy for arbitrary (finite-valued) networks.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::strategy::Union;
use snnc_frontend::*;

/// The Norse tutorial network (benchmark A of DESIGN.md) in RON.
pub const TUTORIAL: &str = r#"// The Norse tutorial: constant-current encoder, recurrent LIF, linear
// readout into a leaky integrator, decoded by max over time + log_softmax.
(
    version: 1,
    name: "tutorial",
    steps: 32,
    input: [1, 28, 28],
    encoder: ConstantCurrent(),
    layers: [
        Flatten(),
        LIFRecurrent(name: "lif1", hidden: 100, p: (v_th: 0.5)),
        Linear(out: 10, bias: false),
        LI(),
    ],
    readout: MaxLogSoftmax,
)
"#;

/// The Norse ConvNet (benchmark C of DESIGN.md) in RON.
pub const CONVNET: &str = r#"(
    version: 1,
    name: "convnet",
    steps: 48,
    input: [1, 28, 28],
    encoder: ConstantCurrent(),
    layers: [
        Conv2d(name: "conv1", out_channels: 20, kernel_size: 5),
        LIF(name: "lif0"),
        MaxPool2d(name: "pool1", kernel_size: 2, stride: 2),
        Conv2d(name: "conv2", out_channels: 50, kernel_size: 5),
        Scale(name: "scale2", factor: 10.0),
        LIF(name: "lif1"),
        MaxPool2d(name: "pool2", kernel_size: 2, stride: 2),
        Flatten(name: "flatten"),
        Linear(name: "fc1", out: 500),
        LIF(name: "lif2"),
        ReLU(name: "relu"),
        LILinear(name: "out", out: 10),
    ],
    readout: MaxLogSoftmax,
)
"#;

/// Every layer kind and field with a value other than the default.
pub const KITCHEN_SINK: &str = r#"Network(
    version: 1,
    name: "kitchen sink",
    steps: 7,
    dt: 5e-4,
    input: [3, 12, 12],
    encoder: Some(Poisson(f_max: 250.0, seed: 9)),
    layers: [
        Conv2d(name: "c", in_channels: 3, out_channels: 4, kernel_size: 3, stride: 2, padding: 1, bias: false),
        MaxPool2d(kernel_size: 2, stride: 1),
        LIFBox(p: (tau_mem_inv: 50, v_leak: 0.1, v_th: 0.9, v_reset: -0.1, method: circ, alpha: 3,
                   reset_method: subtract)),
        LIFAdEx(p: (adaptation_current: 3, adaptation_spike: 0.5, delta_T: 0.25, tau_ada_inv: 4,
                    tau_syn_inv: 150, tau_mem_inv: 90, v_leak: 0.2, v_th: 1.1, v_reset: 0.05,
                    method: heavi_erfc, alpha: 7)),
        Flatten(name: "flat"),
        Scale(factor: -2.5),
        ReLU(),
        Linear(in: 100, out: 20),
        LIF(p: (tau_syn_inv: 100, tau_mem_inv: 50, v_leak: 0.1, v_th: 0.7, v_reset: -0.2, method: tanh,
                alpha: 20)),
        LIFRecurrent(in: 20, hidden: 16, autapses: true, p: (method: triangle, alpha: 0.3)),
        LSNN(p: (tau_adapt_inv: 0.01, beta: 2.0, v_th: 0.8)),
        LSNNRecurrent(name: Some("lsnn_r"), in: Some(16), hidden: 8, autapses: true,
                      p: (tau_syn_inv: 300, tau_mem_inv: 150, tau_adapt_inv: 0.5, v_leak: -0.1, v_th: 1.2,
                          v_reset: 0.1, beta: 0.5, method: heaviside, alpha: 1)),
        LI(name: "li", p: (tau_syn_inv: 100, tau_mem_inv: 20, v_leak: 0.5)),
        LILinear(in: 8, out: 2, p: (tau_syn_inv: 400, tau_mem_inv: 80, v_leak: -0.5)),
    ],
    readout: SpikeCount,
    seed: 1234,
)
"#;

/// Small texts in the other accepted styles: one line, comments, the
/// spike-latency encoder, no encoder.
pub const SMALL: &[&str] = &[
    "(version: 1, name: \"lif\", steps: 100, input: [5], layers: [LIF()])",
    "/* block */ (version: 1, name: \"e\", steps: 8, input: [3], encoder: SpikeLatency(p: (v_th: 0.5)), \
     layers: [Linear(name: \"fc\", out: 2, bias: false), LIF(p: (method: triangle, alpha: 0.3))], readout: SpikeCount)",
    "(version: 1, name: \"enc\", steps: 4, input: [2, 2], encoder: ConstantCurrent(p: (tau_mem_inv: 50)), layers: [])",
];

/// Every fixed text above.
pub fn seed_texts() -> Vec<&'static str> {
    let mut texts = vec![TUTORIAL, CONVNET, KITCHEN_SINK];
    texts.extend_from_slice(SMALL);
    texts
}

#[path = "../../../tests/common/proptest_config.rs"]
mod proptest_config;
/// The configuration of every property test (fixed seed, no persistence;
/// see `tests/common/proptest_config.rs` for exploring).
#[allow(unused_imports)] // Not every test crate has property tests.
pub use proptest_config::proptest_config;

/// Finite floats, biased towards the values RON files hold.
pub fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::sample::select(vec![0.0, 1.0, -65.0, 0.001, 0.5, 100.0, 200.0, 1.0 / 800.0, 1e-9]),
        -1e3..1e3f64,
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
    ]
}

pub fn arb_name() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof!["[a-z_][a-z0-9_]{0,8}", any::<String>()])
}

pub fn arb_size() -> impl Strategy<Value = u32> {
    prop_oneof![1..64u32, any::<u32>()]
}

pub fn arb_method() -> impl Strategy<Value = Method> {
    prop::sample::select(Method::ALL.to_vec())
}

/// A neuron parameter: mostly one number, sometimes a list (per neuron).
pub fn arb_pv() -> impl Strategy<Value = ParamValue> {
    prop_oneof![
        4 => arb_f64().prop_map(ParamValue::Scalar),
        1 => prop::collection::vec(arb_f64(), 0..4).prop_map(ParamValue::PerNeuron),
    ]
}

/// A `trainable` list (the RON round trip does not check the names).
fn trainable() -> Vec<NeuronParam> {
    vec![NeuronParam::v_th, NeuronParam::tau_mem_inv]
}

pub fn arb_lif() -> impl Strategy<Value = LifParams> {
    (arb_pv(), arb_pv(), arb_pv(), arb_pv(), arb_pv(), arb_method(), arb_f64()).prop_map(
        |(tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset, method, alpha)| LifParams {
            tau_syn_inv,
            tau_mem_inv,
            v_leak,
            v_th,
            v_reset,
            method,
            alpha,
            trainable: trainable(),
        },
    )
}

pub fn arb_li() -> impl Strategy<Value = LiParams> {
    (arb_pv(), arb_pv(), arb_pv()).prop_map(|(tau_syn_inv, tau_mem_inv, v_leak)| LiParams {
        tau_syn_inv,
        tau_mem_inv,
        v_leak,
        trainable: vec![NeuronParam::tau_mem_inv],
    })
}

pub fn arb_lsnn() -> impl Strategy<Value = LsnnParams> {
    (arb_pv(), arb_pv(), arb_pv(), arb_pv(), arb_pv(), arb_pv(), arb_pv(), arb_method(), arb_f64()).prop_map(
        |(tau_syn_inv, tau_mem_inv, tau_adapt_inv, v_leak, v_th, v_reset, beta, method, alpha)| LsnnParams {
            tau_syn_inv,
            tau_mem_inv,
            tau_adapt_inv,
            v_leak,
            v_th,
            v_reset,
            beta,
            method,
            alpha,
            trainable: trainable(),
        },
    )
}

pub fn arb_lif_box() -> impl Strategy<Value = LifBoxParams> {
    (arb_pv(), arb_pv(), arb_pv(), arb_pv(), arb_method(), arb_f64(), any::<bool>()).prop_map(
        |(tau_mem_inv, v_leak, v_th, v_reset, method, alpha, subtract)| LifBoxParams {
            tau_mem_inv,
            v_leak,
            v_th,
            v_reset,
            method,
            alpha,
            trainable: trainable(),
            reset_method: if subtract { ResetMethod::Subtract } else { ResetMethod::Value },
        },
    )
}

#[allow(non_snake_case)]
pub fn arb_lif_adex() -> impl Strategy<Value = LifAdExParams> {
    (
        (arb_pv(), arb_pv(), arb_pv(), arb_pv(), arb_pv()),
        (arb_pv(), arb_pv(), arb_pv(), arb_pv()),
        arb_method(),
        arb_f64(),
    )
        .prop_map(
            |(
                (adaptation_current, adaptation_spike, delta_T, tau_ada_inv, tau_syn_inv),
                (tau_mem_inv, v_leak, v_th, v_reset),
                method,
                alpha,
            )| LifAdExParams {
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
                trainable: trainable(),
            },
        )
}

/// A size pair: equal values (written as one integer) or two.
pub fn arb_pair() -> impl Strategy<Value = Pair> {
    prop_oneof![any::<u32>().prop_map(Pair::square), (any::<u32>(), any::<u32>()).prop_map(|(h, w)| Pair([h, w]))]
}

fn opt_pair() -> impl Strategy<Value = Option<Pair>> {
    proptest::option::of(arb_pair())
}

pub fn arb_layer() -> impl Strategy<Value = Layer> {
    let opt = || proptest::option::of(arb_size());
    let density = || proptest::option::of(arb_f64());
    Union::new(vec![
        (arb_name(), opt(), arb_size(), any::<bool>(), density())
            .prop_map(|(name, input, out, bias, input_density)| Layer::Linear {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                input,
                out,
                bias,
                input_density,
                plasticity: None,
            })
            .boxed(),
        (arb_name(), opt(), arb_size(), arb_pair(), arb_pair(), arb_pair(), arb_pair(), arb_size())
            .prop_flat_map(move |(name, in_channels, out_channels, kernel_size, stride, padding, dilation, groups)| {
                (any::<bool>(), density()).prop_map(move |(bias, input_density)| Layer::Conv2d {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name: name.clone(),
                    in_channels,
                    out_channels,
                    kernel_size,
                    stride,
                    padding,
                    dilation,
                    groups,
                    bias,
                    input_density,
                    plasticity: None,
                })
            })
            .boxed(),
        (arb_name(), arb_pair(), opt_pair(), arb_pair())
            .prop_map(|(name, kernel_size, stride, padding)| Layer::MaxPool2d {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                kernel_size,
                stride,
                padding,
            })
            .boxed(),
        (arb_name(), arb_pair(), opt_pair(), arb_pair(), any::<bool>())
            .prop_map(|(name, kernel_size, stride, padding, count_include_pad)| Layer::AvgPool2d {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                kernel_size,
                stride,
                padding,
                count_include_pad,
            })
            .boxed(),
        (arb_name(), arb_pair(), opt_pair(), arb_pair())
            .prop_map(|(name, kernel_size, stride, padding)| Layer::SumPool2d {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                kernel_size,
                stride,
                padding,
            })
            .boxed(),
        (arb_name(), arb_f64(), arb_pair(), opt_pair())
            .prop_map(|(name, norm_type, kernel_size, stride)| Layer::LPPool2d {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                norm_type,
                kernel_size,
                stride,
            })
            .boxed(),
        (arb_name(), opt(), arb_size(), arb_lif(), any::<bool>(), density())
            .prop_map(|(name, input, hidden, p, autapses, input_density)| Layer::LIFRecurrent {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                input,
                hidden,
                p,
                autapses,
                input_density,
            })
            .boxed(),
        (arb_name(), arb_li())
            .prop_map(|(name, p)| Layer::LI {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                p,
            })
            .boxed(),
        (arb_name(), opt(), arb_size(), arb_li(), density())
            .prop_map(|(name, input, out, p, input_density)| Layer::LILinear {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                input,
                out,
                p,
                input_density,
            })
            .boxed(),
        (arb_name(), arb_lsnn())
            .prop_map(|(name, p)| Layer::LSNN {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                p,
            })
            .boxed(),
        (arb_name(), opt(), arb_size(), arb_lsnn(), any::<bool>(), density())
            .prop_map(|(name, input, hidden, p, autapses, input_density)| Layer::LSNNRecurrent {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                input,
                hidden,
                p,
                autapses,
                input_density,
            })
            .boxed(),
        (arb_name(), arb_lif_box())
            .prop_map(|(name, p)| Layer::LIFBox {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                p,
            })
            .boxed(),
        (arb_name(), arb_lif_adex())
            .prop_map(|(name, p)| Layer::LIFAdEx {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name,
                p,
            })
            .boxed(),
    ])
}

pub fn arb_encoder() -> impl Strategy<Value = Encoder> {
    prop_oneof![
        arb_lif().prop_map(|p| Encoder::ConstantCurrent { p }),
        arb_lif().prop_map(|p| Encoder::SpikeLatency { p }),
        (arb_f64(), any::<u64>()).prop_map(|(f_max, seed)| Encoder::Poisson { f_max, seed }),
        Just(Encoder::Direct {}),
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

/// Any network whose floats are finite (so that `==` is meaningful); the
/// values need not pass `check_network`.
pub fn arb_network() -> impl Strategy<Value = Network> {
    (
        prop_oneof![9 => Just(FORMAT_VERSION), 1 => any::<u32>()],
        any::<String>(),
        any::<u32>(),
        arb_f64(),
        prop::collection::vec(any::<u32>(), 0..4),
        proptest::option::of(arb_encoder()),
        prop::collection::vec(arb_layer(), 0..6),
        arb_readout(),
        (any::<u64>(), arb_example_input()),
    )
        .prop_map(|(version, name, steps, dt, input, encoder, layers, readout, (seed, example_input))| Network {
            version,
            name,
            steps,
            dt,
            input,
            encoder,
            layers,
            readout,
            seed,
            example_input,
        })
}

/// Any example input with finite values.
pub fn arb_example_input() -> impl Strategy<Value = snnc_frontend::ExampleInput> {
    use snnc_frontend::ExampleInput;
    prop_oneof![
        Just(ExampleInput::Pattern),
        arb_f64().prop_map(ExampleInput::Constant),
        prop::collection::vec(any::<u32>(), 0..4).prop_map(ExampleInput::SpikesAt),
    ]
}
