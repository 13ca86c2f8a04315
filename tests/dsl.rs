//! The Rust DSL example builds exactly the network of `examples/tutorial.ron`.

#[allow(dead_code)]
#[path = "../examples/tutorial_dsl.rs"]
mod tutorial_dsl;

#[test]
fn the_dsl_tutorial_is_the_ron_tutorial() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tutorial.ron");
    let from_ron = snnc_frontend::load_network(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tutorial_dsl::tutorial(), from_ron);
}

/// The graph fields in the DSL (`Wire`) build the same network as the RON
/// fixture `tests/nets/graph_residual.ron`.
#[test]
fn the_dsl_builds_graphs() {
    use snnc_frontend::dsl::*;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nets/graph_residual.ron");
    let from_ron = snnc_frontend::load_network(&path).unwrap_or_else(|e| panic!("{e}"));
    let net = Net::new("graph_residual", 4)
        .input([6])
        .layer(Layer::linear(8).named("fc0"))
        .layer(Layer::lif().named("lif0"))
        .layer(Layer::linear(8).named("fc1"))
        .layer(Layer::lif().named("lif1"))
        .layer(Layer::identity().named("res").inputs(["lif1", "lif0"]))
        .layer(Layer::linear(8).named("fc2").recurrent_inputs(["lif2"]))
        .layer(Layer::lif().named("lif2"))
        .layer(Layer::linear(3).named("fc3"))
        .layer(Layer::li().named("li"))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(net, from_ron);
    // A mistake in the wiring is a check error from `build`.
    let err = Net::new("g", 4)
        .input([6])
        .layer(Layer::linear(8).named("a").inputs(["nope"]))
        .build()
        .expect_err("unknown input");
    assert!(err.to_string().contains("no layer is named `nope`"), "{err}");
}
