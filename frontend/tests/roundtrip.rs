//! The RON format and the DSL describe the same networks: RON text parses
//! to exactly what the DSL builds, and `to_ron` writes text that parses
//! back to the same network.

mod common;

use proptest::prelude::*;
use snnc_frontend::dsl::*;
use snnc_frontend::{FORMAT_VERSION, load_network, parse_network, to_ron};

fn parse(text: &str) -> Network {
    parse_network(text, "test.ron").unwrap_or_else(|e| panic!("{e}"))
}

/// The tutorial of DESIGN.md, benchmark A.
fn tutorial_dsl() -> Network {
    Net::new("tutorial", 32)
        .input([1, 28, 28])
        .encoder(Encoder::constant_current())
        .layer(Layer::flatten())
        .layer(Layer::lif_recurrent(100).named("lif1").v_th(0.5))
        .layer(Layer::linear(10).no_bias())
        .layer(Layer::li())
        .readout(Readout::MaxLogSoftmax)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn tutorial_dsl_builds_what_the_ron_text_parses_to() {
    assert_eq!(tutorial_dsl(), parse(common::TUTORIAL));
}

#[test]
fn convnet_dsl_builds_what_the_ron_text_parses_to() {
    let net = Net::new("convnet", 48)
        .input([1, 28, 28])
        .encoder(Encoder::constant_current())
        .layers([
            Layer::from(Layer::conv2d(20, 5).named("conv1")),
            Layer::lif().named("lif0").into(),
            Layer::max_pool2d(2).named("pool1").stride(2).into(),
            Layer::conv2d(50, 5).named("conv2").into(),
            Layer::scale(10.0).named("scale2"),
            Layer::lif().named("lif1").into(),
            Layer::max_pool2d(2).named("pool2").stride(2).into(),
            Layer::flatten().named("flatten"),
            Layer::linear(500).named("fc1").into(),
            Layer::lif().named("lif2").into(),
            Layer::relu().named("relu"),
            Layer::li_linear(10).named("out").into(),
        ])
        .readout(Readout::MaxLogSoftmax)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(net, parse(common::CONVNET));
}

#[test]
fn every_setter_of_the_dsl_matches_its_ron_field() {
    let net = Net::new("kitchen sink", 7)
        .dt(5e-4)
        .input([3, 12, 12])
        .encoder(Encoder::poisson().f_max(250.0).seed(9))
        .layer(Layer::conv2d(4, 3).named("c").in_channels(3).stride(2).padding(1).no_bias())
        .layer(Layer::max_pool2d(2).stride(1))
        .layer(
            Layer::lif_box()
                .tau_mem_inv(50.0)
                .v_leak(0.1)
                .v_th(0.9)
                .v_reset(-0.1)
                .method(Method::Circ)
                .alpha(3.0)
                .reset_method(ResetMethod::Subtract),
        )
        .layer(
            Layer::lif_adex()
                .adaptation_current(3.0)
                .adaptation_spike(0.5)
                .delta_T(0.25)
                .tau_ada_inv(4.0)
                .tau_syn_inv(150.0)
                .tau_mem_inv(90.0)
                .v_leak(0.2)
                .v_th(1.1)
                .v_reset(0.05)
                .method(Method::HeaviErfc)
                .alpha(7.0),
        )
        .layer(Layer::flatten().named("flat"))
        .layer(Layer::scale(-2.5))
        .layer(Layer::relu())
        .layer(Layer::linear(20).input_size(100))
        .layer(
            Layer::lif()
                .tau_syn_inv(100.0)
                .tau_mem_inv(50.0)
                .v_leak(0.1)
                .v_th(0.7)
                .v_reset(-0.2)
                .method(Method::Tanh)
                .alpha(20.0),
        )
        .layer(Layer::lif_recurrent(16).input_size(20).autapses(true).method(Method::Triangle).alpha(0.3))
        .layer(Layer::lsnn().tau_adapt_inv(0.01).beta(2.0).v_th(0.8))
        .layer(Layer::lsnn_recurrent(8).named("lsnn_r").input_size(16).autapses(true).params(LsnnParams {
            tau_syn_inv: 300.0.into(),
            tau_mem_inv: 150.0.into(),
            tau_adapt_inv: 0.5.into(),
            v_leak: (-0.1).into(),
            v_th: 1.2.into(),
            v_reset: 0.1.into(),
            beta: 0.5.into(),
            method: Method::Heaviside,
            alpha: 1.0,
            trainable: Vec::new(),
        }))
        .layer(Layer::li().named("li").tau_syn_inv(100.0).tau_mem_inv(20.0).v_leak(0.5))
        .layer(Layer::li_linear(2).input_size(8).tau_syn_inv(400.0).tau_mem_inv(80.0).v_leak(-0.5))
        .readout(Readout::SpikeCount)
        .seed(1234)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(net, parse(common::KITCHEN_SINK));
}

#[test]
fn encoder_setters_match_their_ron_fields() {
    let net = Net::new("e", 8)
        .input([3])
        .encoder(Encoder::spike_latency().v_th(0.5))
        .layer(Layer::linear(2).named("fc").bias(false))
        .layer(Layer::lif().params(LifParams { method: Method::Triangle, alpha: 0.3, ..LifParams::default() }))
        .readout(Readout::SpikeCount)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(net, parse(common::SMALL[1]));

    let net = Net::new("enc", 4)
        .input(vec![2, 2])
        .encoder(Encoder::constant_current().tau_mem_inv(50.0))
        .layers(Vec::<Layer>::new())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(net, parse(common::SMALL[2]));

    let lif = Encoder::from(Encoder::constant_current().v_leak(0.1).v_reset(-0.1));
    assert_eq!(
        lif,
        Encoder::ConstantCurrent {
            p: LifParams { v_leak: 0.1.into(), v_reset: (-0.1).into(), ..LifParams::default() }
        }
    );
}

#[test]
fn build_unchecked_keeps_invalid_values() {
    let net = Net::new("bad", 0).build_unchecked();
    assert_eq!(net.steps, 0);
    assert!(Net::new("bad", 0).build().is_err());
    assert_eq!(Network::from(Net::new("n", 3).input([2])), Net::new("n", 3).input([2]).build_unchecked());
}

#[test]
fn option_fields_may_be_written_with_or_without_some() {
    let explicit = common::TUTORIAL
        .replace("ConstantCurrent()", "Some(ConstantCurrent())")
        .replace("name: \"lif1\"", "name: Some(\"lif1\")");
    assert_eq!(parse(&explicit), parse(common::TUTORIAL));
    let none = common::TUTORIAL.replace("Flatten()", "Flatten(name: None)");
    assert_eq!(parse(&none), parse(common::TUTORIAL));
}

#[test]
fn the_struct_name_and_the_implicit_some_attribute_are_accepted() {
    let named = format!("Network{}", common::TUTORIAL.trim_start_matches(|c| c != '('));
    assert_eq!(parse(&named), parse(common::TUTORIAL));
    let attribute = format!("#![enable(implicit_some)]\n{}", common::TUTORIAL);
    assert_eq!(parse(&attribute), parse(common::TUTORIAL));
}

#[test]
fn the_example_in_the_schema_doc_parses_to_the_tutorial() {
    let source = include_str!("../src/schema.rs");
    let example: String = source
        .lines()
        .skip_while(|l| l.trim() != "//! ```ron")
        .skip(1)
        .take_while(|l| l.trim() != "//! ```")
        .map(|l| format!("{}\n", l.trim_start_matches("//!").strip_prefix(' ').unwrap_or("")))
        .collect();
    assert!(example.contains("LIFRecurrent"), "no ```ron block found in schema.rs");
    assert_eq!(parse(&example), tutorial_dsl());
}

#[test]
fn fixed_texts_round_trip_through_to_ron() {
    for text in common::seed_texts() {
        let net = parse(text);
        assert_eq!(parse(&to_ron(&net)), net, "{text}");
    }
}

#[test]
fn to_ron_writes_every_field_without_some() {
    let net = parse(common::SMALL[0]);
    insta::assert_snapshot!(to_ron(&net), @r#"
    (
        version: 1,
        name: "lif",
        steps: 100,
        dt: 0.001,
        input: [
            5,
        ],
        encoder: None,
        layers: [
            LIF(
                name: None,
                p: (
                    tau_syn_inv: 200.0,
                    tau_mem_inv: 100.0,
                    v_leak: 0.0,
                    v_th: 1.0,
                    v_reset: 0.0,
                    method: super,
                    alpha: 100.0,
                ),
            ),
        ],
        readout: Sequence,
        seed: 0,
        example_input: Pattern,
    )
    "#);
}

#[test]
fn load_network_reads_a_file() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("frontend-roundtrip-tutorial.ron");
    std::fs::write(&path, to_ron(&tutorial_dsl())).unwrap();
    assert_eq!(load_network(&path), Ok(tutorial_dsl()));
}

proptest! {
    #![proptest_config(common::proptest_config(256))]

    #[test]
    fn arbitrary_networks_round_trip_through_to_ron(mut net in common::arb_network()) {
        net.version = FORMAT_VERSION;
        let text = to_ron(&net);
        let back = parse_network(&text, "roundtrip.ron").map_err(|e| e.to_string());
        prop_assert_eq!(back, Ok(net), "{}", text);
    }
}

/// The convolution options and the pools: the DSL equals the RON text, a
/// pair of equal values is written as one integer, and `to_ron` reads back.
#[test]
fn conv_options_and_pools_in_the_dsl_match_their_ron() {
    let net = Net::new("opts", 3)
        .input([2, 10, 12])
        .layer(Layer::conv2d(4, (3, 5)).named("conv").stride((1, 2)).padding((2, 4)).dilation(2).groups(2))
        .layer(Layer::max_pool2d(3).named("mp").stride(2).padding(1))
        .layer(Layer::avg_pool2d((3, 2)).named("ap").stride(1).padding((1, 1)))
        .layer(Layer::sum_pool2d(2).named("sp").stride(1).padding(1))
        .layer(Layer::lp_pool2d(2).named("lp"))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = r#"(version: 1, name: "opts", steps: 3, input: [2, 10, 12],
        layers: [
            Conv2d(name: "conv", out_channels: 4, kernel_size: (3, 5), stride: (1, 2), padding: (2, 4),
                   dilation: 2, groups: 2),
            MaxPool2d(name: "mp", kernel_size: 3, stride: 2, padding: 1),
            AvgPool2d(name: "ap", kernel_size: (3, 2), stride: 1, padding: 1, count_include_pad: true),
            SumPool2d(name: "sp", kernel_size: [2, 2], stride: 1, padding: 1),
            LPPool2d(name: "lp", norm_type: 1, kernel_size: 2),
        ])"#;
    assert_eq!(net, parse(text));
    let written = to_ron(&net);
    assert!(written.contains("kernel_size: (3, 5)") || written.contains("kernel_size: (3,5)"), "{written}");
    assert!(written.contains("dilation: 2,"), "{written}");
    assert!(written.contains("padding: 1,"), "{written}");
    assert!(!written.contains("count_include_pad"), "defaults of new fields are left out: {written}");
    assert_eq!(parse(&written), net);
    // A file without the new fields writes as before: no dilation, groups or pool padding.
    let plain = to_ron(&parse(common::CONVNET));
    assert!(!plain.contains("dilation") && !plain.contains("groups"), "{plain}");
}
