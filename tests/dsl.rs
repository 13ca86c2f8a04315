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
