//! Lowering edge cases that must be user-visible results, not internal
//! errors.

use snnc_frontend::{LowerOptions, lower, parse_network};

fn lowered(text: &str) -> Result<snnc_ir::Module, String> {
    let net = parse_network(text, "t.ron").map_err(|e| e.to_string())?;
    lower(&net, "t.ron", &LowerOptions::default()).map_err(|e| e.to_string())
}

#[test]
fn max_log_softmax_of_spikes_is_computed_on_floats() {
    let m = lowered(r#"(version: 1, name: "mls", steps: 4, input: [3], layers: [LIF()], readout: MaxLogSoftmax)"#)
        .expect("lowers");
    snnc_ir::validate(&m).expect("valid");
    let readout = m.outputs.iter().find(|o| o.name == "readout").expect("a readout");
    assert_eq!(m.nodes[readout.value].ty.to_string(), "f32[B,3]");
}

#[test]
fn max_log_softmax_needs_one_class_dimension() {
    let err =
        lowered(r#"(version: 1, name: "img", steps: 2, input: [1, 4, 4], layers: [LIF()], readout: MaxLogSoftmax)"#)
            .unwrap_err();
    assert!(err.contains("MaxLogSoftmax needs one class dimension"), "{err}");
    assert!(err.contains("[1, 4, 4]"), "{err}");
}

#[test]
fn a_huge_layer_is_an_error_not_an_overflow() {
    let err =
        lowered(r#"(version: 1, name: "big", steps: 1, input: [65536, 65536, 2], layers: [Flatten()])"#).unwrap_err();
    assert!(err.contains("more than 2^32 - 1 values per sample"), "{err}");
}
