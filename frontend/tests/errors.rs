//! Error messages of the frontend, tested as rendered text (as naga's
//! `wgsl_errors.rs` does): syntax errors with `file:line:col`, the line
//! and a caret; invalid values with their place and the valid range.
//!
//! The expected texts are insta inline snapshots. When a message changes on
//! purpose, `INSTA_UPDATE=always cargo test` writes the new texts to a
//! `.pending-snap` file (`cargo insta review` applies them); without
//! cargo-insta, copy the new text from the failure's diff.

mod common;

use snnc_frontend::dsl::*;
use snnc_frontend::{FrontendError, Problem, check_network, load_network, parse_network};

/// The tutorial network with `from` replaced by `to` (which must occur).
fn tutorial_with(from: &str, to: &str) -> String {
    assert!(common::TUTORIAL.contains(from), "`{from}` is not in the tutorial");
    common::TUTORIAL.replacen(from, to, 1)
}

/// The rendered error of a text that must not parse.
fn parse_error(text: &str) -> String {
    match parse_network(text, "net.ron") {
        Ok(net) => panic!("parsed, expected an error: {net:?}"),
        Err(err) => err.to_string(),
    }
}

/// The rendered error of a text that parses but must not pass the check.
fn check_error(text: &str) -> String {
    let net = parse_network(text, "net.ron").unwrap_or_else(|e| panic!("{e}"));
    match check_network(&net, "net.ron") {
        Ok(()) => panic!("passed the check, expected an error"),
        Err(err) => err.to_string(),
    }
}

/// A text that must parse and pass the check.
fn check_ok(text: &str) {
    let net = parse_network(text, "net.ron").unwrap_or_else(|e| panic!("{e}"));
    check_network(&net, "net.ron").unwrap_or_else(|e| panic!("{e}"));
}

// Malformed RON.

#[test]
fn missing_closing_paren_of_a_layer() {
    let text = tutorial_with("p: (v_th: 0.5)),", "p: (v_th: 0.5),");
    insta::assert_snapshot!(parse_error(&text), @r#"
    net.ron:12:9: error: unknown field `Linear` in `LIFRecurrent`
       |
    12 |         Linear(out: 10, bias: false),
       |         ^^^^^^
       = help: `Linear` is a layer kind: a `)` closing the previous layer may be missing before it
    "#);
}

#[test]
fn missing_closing_paren_of_the_network() {
    let text = common::TUTORIAL.trim_end().trim_end_matches(')');
    insta::assert_snapshot!(parse_error(text), @r#"
    net.ron:15:28: error: unexpected end of the text
       |
    15 |     readout: MaxLogSoftmax,
       |                            ^
       = help: a closing `)` or `]` may be missing
    "#);
}

#[test]
fn missing_closing_bracket_of_the_layers() {
    let text = tutorial_with("    ],\n", "");
    insta::assert_snapshot!(parse_error(&text), @r#"
    net.ron:14:5: error: unknown layer kind `readout`
       |
    14 |     readout: MaxLogSoftmax,
       |     ^^^^^^^
       = help: `readout` is a field of the network: a `]` closing `layers` may be missing before it
    "#);
}

#[test]
fn missing_comma() {
    let text = tutorial_with("steps: 32,", "steps: 32");
    insta::assert_snapshot!(parse_error(&text), @r#"
    net.ron:6:14: error: expected comma
      |
    6 |     steps: 32
      |              ^
      = help: a `,` may be missing at the end of this line
    "#);
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(parse_error(&tutorial_with("steps: 32", "steps: \"32\"")), @r#"
    net.ron:6:12: error: expected integer, found `"32"`
      |
    6 |     steps: "32",
      |            ^^^^
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("steps: 32", "steps: 3.5")), @r#"
    net.ron:6:12: error: expected a whole number, found `3.5`
      |
    6 |     steps: 3.5,
      |            ^^^
      = help: sizes, `steps`, `version` and `seed` are integers
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("bias: false", "bias: 0")), @r#"
    net.ron:12:31: error: expected boolean, found `0`
       |
    12 |         Linear(out: 10, bias: 0),
       |                               ^
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("p: (v_th: 0.5)", "p: 0.5")), @r#"
    net.ron:11:52: error: expected opening `(` for struct `LifParams`, found `0.5`
       |
    11 |         LIFRecurrent(name: "lif1", hidden: 100, p: 0.5),
       |                                                    ^^^
    "#);
}

#[test]
fn integer_out_of_range() {
    insta::assert_snapshot!(parse_error(&tutorial_with("[1, 28, 28]", "[1, -28, 28]")), @r#"
    net.ron:7:16: error: integer out of range
      |
    7 |     input: [1, -28, 28],
      |                ^^^
      = help: sizes, `steps` and `version` are whole numbers from 0 to 4294967295, `seed` from 0 to 2^64-1
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("steps: 32", "steps: 99999999999")), @r#"
    net.ron:6:12: error: integer out of range
      |
    6 |     steps: 99999999999,
      |            ^^^^^^^^^^^
      = help: sizes, `steps` and `version` are whole numbers from 0 to 4294967295, `seed` from 0 to 2^64-1
    "#);
}

#[test]
fn unknown_field() {
    insta::assert_snapshot!(parse_error(&tutorial_with("bias: false", "biass: false")), @r#"
    net.ron:12:25: error: unknown field `biass` in `Linear`
       |
    12 |         Linear(out: 10, biass: false),
       |                         ^^^^^
       = help: did you mean `bias`? The fields are `name`, `in`, `out`, `bias`, `input_density`, `plasticity`, `inputs`, `recurrent_inputs`, `merge`
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("v_th: 0.5", "threshold: 0.5")), @r#"
    net.ron:11:53: error: unknown field `threshold` in `LifParams`
       |
    11 |         LIFRecurrent(name: "lif1", hidden: 100, p: (threshold: 0.5)),
       |                                                     ^^^^^^^^^
       = help: the fields are `tau_syn_inv`, `tau_mem_inv`, `v_leak`, `v_th`, `v_reset`, `method`, `alpha`, `trainable`
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("steps: 32", "step: 32")), @r#"
    net.ron:6:5: error: unknown field `step` in `Network`
      |
    6 |     step: 32,
      |     ^^^^
      = help: did you mean `steps`? The fields are `version`, `name`, `steps`, `dt`, `input`, `encoder`, `layers`, `readout`, `seed`, `example_input`
    "#);
}

#[test]
fn unknown_layer_kind() {
    insta::assert_snapshot!(parse_error(&tutorial_with("Linear(", "Lenear(")), @r#"
    net.ron:12:9: error: unknown layer kind `Lenear`
       |
    12 |         Lenear(out: 10, bias: false),
       |         ^^^^^^
       = help: did you mean `Linear`? The layer kinds are `Linear`, `Conv2d`, `MaxPool2d`, `AvgPool2d`, `SumPool2d`, `LPPool2d`, `Flatten`, `Scale`, `ReLU`, `LIF`, `LIFRecurrent`, `LI`, `LILinear`, `LSNN`, `LSNNRecurrent`, `LIFBox`, `LIFAdEx`, `Neuron`, `IAF`, `Izhikevich`, `LIFEx`, `LIFRefrac`, `LIFAdExRefrac`, `CobaLIF`, `LIBox`, `TsodyksMarkram`, `Dropout`, `BatchNorm1d`, `BatchNorm2d`, `Identity`
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("LI()", "Softmax()")), @r#"
    net.ron:13:9: error: unknown layer kind `Softmax`
       |
    13 |         Softmax(),
       |         ^^^^^^^
       = help: the layer kinds are `Linear`, `Conv2d`, `MaxPool2d`, `AvgPool2d`, `SumPool2d`, `LPPool2d`, `Flatten`, `Scale`, `ReLU`, `LIF`, `LIFRecurrent`, `LI`, `LILinear`, `LSNN`, `LSNNRecurrent`, `LIFBox`, `LIFAdEx`, `Neuron`, `IAF`, `Izhikevich`, `LIFEx`, `LIFRefrac`, `LIFAdExRefrac`, `CobaLIF`, `LIBox`, `TsodyksMarkram`, `Dropout`, `BatchNorm1d`, `BatchNorm2d`, `Identity`
    "#);
}

#[test]
fn unknown_method() {
    insta::assert_snapshot!(parse_error(&tutorial_with("v_th: 0.5", "v_th: 0.5, method: superspike")), @r#"
    net.ron:11:72: error: unknown surrogate method `superspike`
       |
    11 |         LIFRecurrent(name: "lif1", hidden: 100, p: (v_th: 0.5, method: superspike)),
       |                                                                        ^^^^^^^^^^
       = help: the methods (Norse's names) are `super`, `tanh`, `circ`, `triangle`, `heavi_erfc`, `heaviside`
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("v_th: 0.5", "v_th: 0.5, method: \"super\"")), @r#"
    net.ron:11:72: error: expected identifier, found `"super"`
       |
    11 |         LIFRecurrent(name: "lif1", hidden: 100, p: (v_th: 0.5, method: "super")),
       |                                                                        ^^^^^^^
       = help: kinds, methods and readouts are written without quotes, e.g. `method: tanh`
    "#);
}

#[test]
fn unknown_encoder_and_readout() {
    insta::assert_snapshot!(parse_error(&tutorial_with("ConstantCurrent()", "ConstantCurrentLIF()")), @r#"
    net.ron:8:14: error: unknown encoder `ConstantCurrentLIF`
      |
    8 |     encoder: ConstantCurrentLIF(),
      |              ^^^^^^^^^^^^^^^^^^
      = help: did you mean `ConstantCurrent`? The encoders are `ConstantCurrent`, `SpikeLatency`, `Poisson`, `SignedPoisson`, `Population`, `Direct`
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("MaxLogSoftmax", "Softmax")), @r#"
    net.ron:15:14: error: unknown readout `Softmax`
       |
    15 |     readout: Softmax,
       |              ^^^^^^^
       = help: the readouts are `Sequence`, `MaxLogSoftmax`, `Max`, `LastStep`, `Mean`, `SpikeCount`
    "#);
}

#[test]
fn missing_required_field() {
    insta::assert_snapshot!(parse_error(&tutorial_with("Linear(out: 10, ", "Linear(")), @r#"
    net.ron:12:27: error: missing field `out` in `Linear`
       |
    12 |         Linear(bias: false),
       |                           ^
       = help: add `out: ...`
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("    steps: 32,\n", "")), @r#"
    net.ron:15:1: error: missing field `steps` in `Network`
       |
    15 | )
       | ^
       = help: add `steps: ...`
    "#);
}

#[test]
fn duplicate_field() {
    insta::assert_snapshot!(parse_error(&tutorial_with("bias: false", "bias: false, bias: true")), @r#"
    net.ron:12:38: error: field `bias` given twice in `Linear`
       |
    12 |         Linear(out: 10, bias: false, bias: true),
       |                                      ^^^^
       = help: remove one of them
    "#);
}

#[test]
fn bad_version() {
    insta::assert_snapshot!(parse_error(&tutorial_with("version: 1", "version: 2")), @r#"
    net.ron:4:14: error: unsupported format version 2
      |
    4 |     version: 2,
      |              ^
      = help: supported versions: 1
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("    version: 1,\n", "")), @r#"
    net.ron:15:1: error: missing field `version` in `Network`
       |
    15 | )
       | ^
       = help: add `version: 1`
    "#);
}

#[test]
fn a_bad_version_is_reported_before_other_errors() {
    let text = tutorial_with("version: 1", "version: 7").replace("Linear(", "Conv3d(");
    insta::assert_snapshot!(parse_error(&text), @r#"
    net.ron:4:14: error: unsupported format version 7
      |
    4 |     version: 7,
      |              ^
      = help: supported versions: 1
    "#);
}

#[test]
fn rust_and_python_habits() {
    // Unit form of a layer kind.
    insta::assert_snapshot!(parse_error(&tutorial_with("Flatten()", "Flatten")), @r#"
    net.ron:10:16: error: expected opening `(`, found `,`
       |
    10 |         Flatten,
       |                ^
       = help: every layer kind and encoder takes parentheses, even without fields: `Flatten()`
    "#);
    // Rust struct syntax.
    insta::assert_snapshot!(parse_error(&tutorial_with("Linear(out: 10, bias: false)", "Linear { out: 10 }")), @r#"
    net.ron:12:16: error: expected opening `(`, found `{`
       |
    12 |         Linear { out: 10 },
       |                ^
       = help: fields are written in parentheses: `Linear(out: 10)`, not braces
    "#);
    // Parentheses after a readout.
    insta::assert_snapshot!(parse_error(&tutorial_with("MaxLogSoftmax", "MaxLogSoftmax()")), @r#"
    net.ron:15:27: error: expected comma, found `(`
       |
    15 |     readout: MaxLogSoftmax(),
       |                           ^
       = help: values such as `MaxLogSoftmax` or `true` take no parentheses
    "#);
    // A quoted layer kind.
    insta::assert_snapshot!(parse_error(&tutorial_with("LI()", "\"LI\"")), @r#"
    net.ron:13:9: error: expected identifier, found `"LI"`
       |
    13 |         "LI",
       |         ^^^^
       = help: kinds, methods and readouts are written without quotes, e.g. `method: tanh`
    "#);
}

#[test]
fn empty_and_trailing_text() {
    insta::assert_snapshot!(parse_error(""), @r#"
    net.ron:1:1: error: expected opening `(` for struct `Network`, found the end of the text
      |
    1 |
      | ^
    "#);
    insta::assert_snapshot!(parse_error(&format!("{}x", common::TUTORIAL)), @r#"
    net.ron:17:1: error: unexpected text after the end of the network
       |
    17 | x
       | ^
       = help: the description is one `(...)`; a `)` may be misplaced
    "#);
    insta::assert_snapshot!(parse_error(&tutorial_with("(\n", "Net(\n")), @r#"
    net.ron:3:1: error: expected `Network` but found `Net`
      |
    3 | Net(
      | ^^^
      = help: write `Network(...)` or leave the name out: `(...)`
    "#);
}

#[test]
fn carets_stay_aligned_after_tabs() {
    let text = "(\n\tversion: 1,\n\tname: 3,\n)";
    assert_eq!(parse_error(text), "net.ron:3:8: error: expected string, found `3`\n  |\n3 | \tname: 3,\n  | \t      ^");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("(version: 1, name: \"x\", steps: 1, input: [], layers: [], junk: {}", "[".repeat(100_000));
    insta::assert_snapshot!(parse_error(&deep), @r#"
    net.ron:1:58: error: unknown field `junk` in `Network`
      |
    1 | ...n: 1, name: "x", steps: 1, input: [], layers: [], junk: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[...
      |                                                      ^^^^
      = help: the fields are `version`, `name`, `steps`, `dt`, `input`, `encoder`, `layers`, `readout`, `seed`, `example_input`
    "#);
    let deep = format!("(version: 1, name: \"x\", steps: 1, input: {}", "[".repeat(100_000));
    insta::assert_snapshot!(parse_error(&deep), @r#"
    net.ron:1:43: error: expected integer, found `[`
      |
    1 | (version: 1, name: "x", steps: 1, input: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[...
      |                                           ^
    "#);
}

#[test]
fn long_lines_are_cut_around_the_error() {
    let text = format!("(version: 1, name: \"{}\", steps: 1.5, input: [1], layers: [LIF()], seed: 7)", "x".repeat(500));
    insta::assert_snapshot!(parse_error(&text), @r#"
    net.ron:1:531: error: expected a whole number, found `1.5`
      |
    1 | ...xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", steps: 1.5, input: [1], layers: [LIF()], seed: 7)
      |                                                              ^^^
      = help: sizes, `steps`, `version` and `seed` are integers
    "#);
}

#[test]
fn missing_file() {
    let err = load_network(std::path::Path::new("tests/no-such-net.ron")).unwrap_err();
    assert!(matches!(err, FrontendError::Io { .. }));
    let text = err.to_string();
    assert!(text.starts_with("tests/no-such-net.ron: error: cannot read the network description: "), "{text}");
}

/// A fresh folder under the system's temporary folder, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("snnc-frontend-errors-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Loads a file holding `bytes`; errors are rendered with the name `net.ron`.
    fn load(&self, bytes: &[u8]) -> Result<snnc_frontend::Network, String> {
        let path = self.0.join("net.ron");
        std::fs::write(&path, bytes).unwrap();
        load_network(&path).map_err(|e| e.to_string().replace(&path.display().to_string(), "net.ron"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_utf8_byte_order_mark_is_skipped() {
    let dir = Scratch::new("bom");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(common::TUTORIAL.as_bytes());
    let net = dir.load(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(net.name, "tutorial");
}

#[test]
fn invalid_utf8_names_the_byte_offset() {
    let dir = Scratch::new("utf8");
    // A Latin-1 `ä` (0xE4) in a comment on line 2.
    let text = b"(version: 1, name: \"x\", steps: 4, input: [2],\n  // Schicht \xE4\n  layers: [LIF()])";
    insta::assert_snapshot!(dir.load(text).unwrap_err(), @r#"
    net.ron:2:14: error: not valid UTF-8: byte 0xE4 at byte offset 59
      |
    2 |   // Schicht �
      |              ^
      = help: snnc reads UTF-8 text; save the file as UTF-8
    "#);
    // After a byte-order mark, the offset still counts the file's bytes.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(b"(\xFF");
    insta::assert_snapshot!(dir.load(&bom).unwrap_err(), @r#"
    net.ron:1:2: error: not valid UTF-8: byte 0xFF at byte offset 4
      |
    1 | (�
      |  ^
      = help: snnc reads UTF-8 text; save the file as UTF-8
    "#);
    // A file cut inside a character.
    insta::assert_snapshot!(dir.load(b"(name: \"\xC3").unwrap_err(), @r#"
    net.ron:1:9: error: not valid UTF-8: the file ends inside a character at byte offset 8
      |
    1 | (name: "�
      |         ^
      = help: snnc reads UTF-8 text; save the file as UTF-8
    "#);
    // UTF-16, as some Windows editors save.
    insta::assert_snapshot!(dir.load(b"\xFF\xFE(\0v\0").unwrap_err(), @r#"
    net.ron:1:1: error: not UTF-8 but UTF-16 (the file starts with a UTF-16 byte-order mark)
      |
    1 |
      | ^
      = help: snnc reads UTF-8 text; save the file as UTF-8
    "#);
}

// Impossible values.

#[test]
fn dt_must_be_positive() {
    insta::assert_snapshot!(check_error(&tutorial_with("steps: 32,", "steps: 32, dt: 0,")), @r#"
    net.ron: error: dt: must be greater than 0, found 0
      = help: dt is the time step in seconds; Norse's default is 0.001
    "#);
    insta::assert_snapshot!(check_error(&tutorial_with("steps: 32,", "steps: 32, dt: -1e-3,")), @r#"
    net.ron: error: dt: must be greater than 0, found -0.001
      = help: dt is the time step in seconds; Norse's default is 0.001
    "#);
    insta::assert_snapshot!(check_error(&tutorial_with("steps: 32,", "steps: 32, dt: inf,")), @r#"net.ron: error: dt: must be a finite number greater than 0, found inf"#);
}

#[test]
fn dt_in_milliseconds_is_an_error_naming_the_product() {
    // `dt: 1.0` meant 1 ms: every update overshoots, and the run gives NaN.
    insta::assert_snapshot!(check_error(&tutorial_with("steps: 32,", "steps: 32, dt: 1.0,")), @r#"
    net.ron: error: encoder (ConstantCurrent): p.tau_mem_inv: dt * tau_mem_inv = 1 * 100 = 100, more than 2: each step moves the membrane potential `v` past its target by more than it was away, so it grows without bound to inf and NaN
      = help: dt is in seconds: 1 ms is `dt: 0.001`; keep dt * tau_mem_inv at most 1: dt at most 0.01 s, or tau_mem_inv at most 1
    net.ron: error: layers[1] `lif1` (LIFRecurrent): p.tau_syn_inv: dt * tau_syn_inv = 1 * 200 = 200, more than 2: each step moves the synaptic current `i` past its target by more than it was away, so it grows without bound to inf and NaN
      = help: dt is in seconds: 1 ms is `dt: 0.001`; keep dt * tau_syn_inv at most 1: dt at most 0.005 s, or tau_syn_inv at most 1
    net.ron: error: layers[1] `lif1` (LIFRecurrent): p.tau_mem_inv: dt * tau_mem_inv = 1 * 100 = 100, more than 2: each step moves the membrane potential `v` past its target by more than it was away, so it grows without bound to inf and NaN
      = help: dt is in seconds: 1 ms is `dt: 0.001`; keep dt * tau_mem_inv at most 1: dt at most 0.01 s, or tau_mem_inv at most 1
    net.ron: error: layers[3] `li3` (LI): p.tau_syn_inv: dt * tau_syn_inv = 1 * 200 = 200, more than 2: each step moves the synaptic current `i` past its target by more than it was away, so it grows without bound to inf and NaN
      = help: dt is in seconds: 1 ms is `dt: 0.001`; keep dt * tau_syn_inv at most 1: dt at most 0.005 s, or tau_syn_inv at most 1
    net.ron: error: layers[3] `li3` (LI): p.tau_mem_inv: dt * tau_mem_inv = 1 * 100 = 100, more than 2: each step moves the membrane potential `v` past its target by more than it was away, so it grows without bound to inf and NaN
      = help: dt is in seconds: 1 ms is `dt: 0.001`; keep dt * tau_mem_inv at most 1: dt at most 0.01 s, or tau_mem_inv at most 1
    "#);
}

#[test]
fn every_time_constant_is_checked_against_dt() {
    use snnc_frontend::check::network_warnings;
    // dt = 10 ms: each product named below is more than 1 (above 2 an
    // error, else a warning); the others are 0.5. The current encoders have
    // no synaptic current.
    let text = "(version: 1, name: \"steps\", steps: 4, dt: 0.01, input: [2],
        encoder: ConstantCurrent(p: (tau_syn_inv: 1000, tau_mem_inv: 50)),
        layers: [
            LI(p: (tau_syn_inv: 50, tau_mem_inv: 150)),
            LSNN(p: (tau_syn_inv: 50, tau_mem_inv: 50, tau_adapt_inv: 300)),
            LIFBox(p: (tau_mem_inv: 101)),
            LIFAdEx(p: (tau_syn_inv: 50, tau_mem_inv: 50, tau_ada_inv: 200)),
            LIF(p: (tau_syn_inv: 50, tau_mem_inv: 50)),
        ])";
    insta::assert_snapshot!(check_error(text), @r#"
    net.ron: error: layers[1] `lsnn1` (LSNN): p.tau_adapt_inv: dt * tau_adapt_inv = 0.01 * 300 = 3, more than 2: each step moves the adaptive threshold `b` past its target by more than it was away, so it grows without bound to inf and NaN
      = help: dt is in seconds: 1 ms is `dt: 0.001`; keep dt * tau_adapt_inv at most 1: dt at most 0.00333 s, or tau_adapt_inv at most 100
    "#);
    // Between 1 and 2 Norse's state stays bounded: warnings.
    let fixed = text.replace("tau_adapt_inv: 300", "tau_adapt_inv: 50");
    check_ok(&fixed);
    let net = parse_network(&fixed, "net.ron").unwrap();
    let warnings: Vec<String> = network_warnings(&net).iter().map(Problem::to_string).collect();
    insta::assert_snapshot!(warnings.join("\n"), @r#"
    layers[0] `li0` (LI): p.tau_mem_inv: dt * tau_mem_inv = 0.01 * 150 = 1.5, more than 1: each step moves the membrane potential `v` past its target, so it swings around it
      = help: dt is in seconds: 1 ms is `dt: 0.001`; keep dt * tau_mem_inv at most 1: dt at most 0.00666 s, or tau_mem_inv at most 100
    layers[2] `lifbox2` (LIFBox): p.tau_mem_inv: dt * tau_mem_inv = 0.01 * 101 = 1.01, more than 1: each step moves the membrane potential `v` past its target, so it swings around it
      = help: dt is in seconds: 1 ms is `dt: 0.001`; keep dt * tau_mem_inv at most 1: dt at most 0.0099 s, or tau_mem_inv at most 100
    layers[3] `lifadex3` (LIFAdEx): p.tau_ada_inv: dt * tau_ada_inv = 0.01 * 200 = 2, more than 1: each step moves the adaptation current `a` past its target, so it swings around it
      = help: dt is in seconds: 1 ms is `dt: 0.001`; keep dt * tau_ada_inv at most 1: dt at most 0.005 s, or tau_ada_inv at most 100
    "#);
}

#[test]
fn a_step_that_keeps_nothing_is_a_warning() {
    use snnc_frontend::check::network_warnings;
    // dt = 5 ms zeroes the default synaptic current (tau_syn_inv 200) at
    // every step: allowed, as Norse runs it, but said.
    let text = tutorial_with("steps: 32,", "steps: 32, dt: 0.005,");
    check_ok(&text);
    let net = parse_network(&text, "net.ron").unwrap();
    let warnings: Vec<String> = network_warnings(&net).iter().map(Problem::to_string).collect();
    insta::assert_snapshot!(warnings.join("\n"), @r#"
    layers[1] `lif1` (LIFRecurrent): p.tau_syn_inv: dt * tau_syn_inv = 0.005 * 200 = 1: the synaptic current `i` keeps nothing from one step to the next
      = help: dt is in seconds: 1 ms is `dt: 0.001`; with dt below 0.005 s, or tau_syn_inv below 200, part of it carries over
    layers[3] `li3` (LI): p.tau_syn_inv: dt * tau_syn_inv = 0.005 * 200 = 1: the synaptic current `i` keeps nothing from one step to the next
      = help: dt is in seconds: 1 ms is `dt: 0.001`; with dt below 0.005 s, or tau_syn_inv below 200, part of it carries over
    "#);
    // A Poisson rate that saturates the spike probability.
    let poisson = "(version: 1, name: \"p\", steps: 4, input: [2], encoder: Poisson(f_max: 2000), layers: [LIF()])";
    check_ok(poisson);
    let net = parse_network(poisson, "net.ron").unwrap();
    let warnings: Vec<String> = network_warnings(&net).iter().map(Problem::to_string).collect();
    insta::assert_snapshot!(warnings.join("\n"), @r#"
    encoder (Poisson): f_max: dt * f_max = 0.001 * 2000 = 2, more than 1: an input value x spikes with probability dt * f_max * x, so every value of 0.5 or more spikes at every step
      = help: dt is in seconds: 1 ms is `dt: 0.001`; f_max is in Hz
    "#);
}

#[test]
fn the_examples_and_test_nets_pass_without_warnings() {
    use snnc_frontend::check::{network_problems, network_warnings};
    let mut files = Vec::new();
    for dir in ["../examples", "../tests/nets"] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "ron") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 10, "{files:?}");
    for path in files {
        let net = load_network(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(network_problems(&net), vec![], "{}", path.display());
        assert_eq!(network_warnings(&net), vec![], "{}", path.display());
    }
}

#[test]
fn tau_inv_must_be_positive() {
    insta::assert_snapshot!(check_error(&tutorial_with("v_th: 0.5", "v_th: 0.5, tau_mem_inv: 0")), @r#"
    net.ron: error: layers[1] `lif1` (LIFRecurrent): p.tau_mem_inv: must be greater than 0, found 0
      = help: an inverse time constant in 1/s (1/tau); Norse's default is 100
    "#);
    insta::assert_snapshot!(check_error(&tutorial_with("LI()", "LI(p: (tau_syn_inv: -200))")), @r#"
    net.ron: error: layers[3] `li3` (LI): p.tau_syn_inv: must be greater than 0, found -200
      = help: an inverse time constant in 1/s (1/tau); Norse's default is 200
    "#);
    insta::assert_snapshot!(check_error(&tutorial_with("LI()", "LSNN(p: (tau_adapt_inv: 0))")), @r#"
    net.ron: error: layers[3] `lsnn3` (LSNN): p.tau_adapt_inv: must be greater than 0, found 0
      = help: an inverse time constant in 1/s (1/tau); Norse's default is 0.00125
    "#);
    insta::assert_snapshot!(check_error(&tutorial_with("LI()", "LIFAdEx(p: (tau_ada_inv: -2))")), @r#"
    net.ron: error: layers[3] `lifadex3` (LIFAdEx): p.tau_ada_inv: must be greater than 0, found -2
      = help: an inverse time constant in 1/s (1/tau); Norse's default is 2
    "#);
}

#[test]
fn steps_must_be_positive() {
    insta::assert_snapshot!(check_error(&tutorial_with("steps: 32", "steps: 0")), @r#"
    net.ron: error: steps: must be 1 or more, found 0
      = help: steps is the number of time steps T
    "#);
}

#[test]
fn nan_and_infinity_are_rejected() {
    insta::assert_snapshot!(check_error(&tutorial_with("v_th: 0.5", "v_th: NaN")), @r#"net.ron: error: layers[1] `lif1` (LIFRecurrent): p.v_th: must be a finite number, found NaN"#);
    insta::assert_snapshot!(check_error(&tutorial_with("LI()", "Scale(factor: -inf)")), @r#"net.ron: error: layers[3] `scale3` (Scale): factor: must be a finite number, found -inf"#);
    insta::assert_snapshot!(check_error(&tutorial_with("v_th: 0.5", "tau_syn_inv: NaN")), @r#"net.ron: error: layers[1] `lif1` (LIFRecurrent): p.tau_syn_inv: must be a finite number greater than 0, found NaN"#);
}

#[test]
fn alpha_must_be_positive_where_the_surrogate_uses_it() {
    insta::assert_snapshot!(check_error(&tutorial_with("v_th: 0.5", "method: tanh, alpha: 0")), @r#"
    net.ron: error: layers[1] `lif1` (LIFRecurrent): p.alpha: must be greater than 0, found 0
      = help: the `tanh` surrogate's width parameter; Norse's default is 100
    "#);
    insta::assert_snapshot!(check_error(&tutorial_with("LI()", "LIFBox(p: (method: triangle, alpha: -1))")), @r#"
    net.ron: error: layers[3] `lifbox3` (LIFBox): p.alpha: must be greater than 0, found -1
      = help: the `triangle` surrogate's width parameter; Norse's default is 100
    "#);
    // SuperSpike ignores alpha in Norse 1.1.0; heaviside has no gradient.
    check_ok(&tutorial_with("v_th: 0.5", "method: super, alpha: 0"));
    check_ok(&tutorial_with("v_th: 0.5", "method: heaviside, alpha: -3"));
    insta::assert_snapshot!(check_error(&tutorial_with("v_th: 0.5", "method: super, alpha: NaN")), @r#"net.ron: error: layers[1] `lif1` (LIFRecurrent): p.alpha: must be a finite number, found NaN"#);
}

#[test]
fn sizes_must_be_positive() {
    let text = "(version: 1, name: \"s\", steps: 1, input: [1, 0, 28], layers: [
        Conv2d(in_channels: 0, out_channels: 0, kernel_size: 0, stride: 0),
        MaxPool2d(kernel_size: 0, stride: 0),
        Linear(in: 0, out: 0),
        LIFRecurrent(hidden: 0),
        LILinear(out: 0),
        LSNNRecurrent(in: 0, hidden: 0),
    ])";
    insta::assert_snapshot!(check_error(text), @r#"
    net.ron: error: input[1]: must be 1 or more, found 0
    net.ron: error: layers[0] `conv2d0` (Conv2d): in_channels: must be 1 or more, found 0
    net.ron: error: layers[0] `conv2d0` (Conv2d): out_channels: must be 1 or more, found 0
    net.ron: error: layers[0] `conv2d0` (Conv2d): kernel_size: must be 1 or more, found 0
    net.ron: error: layers[0] `conv2d0` (Conv2d): stride: must be 1 or more, found 0
    net.ron: error: layers[1] `maxpool2d1` (MaxPool2d): kernel_size: must be 1 or more, found 0
    net.ron: error: layers[1] `maxpool2d1` (MaxPool2d): stride: must be 1 or more, found 0
    net.ron: error: layers[2] `linear2` (Linear): in: must be 1 or more, found 0
    net.ron: error: layers[2] `linear2` (Linear): out: must be 1 or more, found 0
    net.ron: error: layers[3] `lifrecurrent3` (LIFRecurrent): hidden: must be 1 or more, found 0
    net.ron: error: layers[4] `lilinear4` (LILinear): out: must be 1 or more, found 0
    net.ron: error: layers[5] `lsnnrecurrent5` (LSNNRecurrent): in: must be 1 or more, found 0
    net.ron: error: layers[5] `lsnnrecurrent5` (LSNNRecurrent): hidden: must be 1 or more, found 0
    "#);
    insta::assert_snapshot!(check_error(&tutorial_with("[1, 28, 28]", "[]")), @r#"
    net.ron: error: input: must have at least one dimension, found `[]`
      = help: the shape of one sample without batch and time, e.g. `[784]` or `[1, 28, 28]`
    "#);
}

#[test]
fn encoder_parameters() {
    insta::assert_snapshot!(check_error(&tutorial_with("ConstantCurrent()", "Poisson(f_max: -1)")), @r#"
    net.ron: error: encoder (Poisson): f_max: must be 0 or more, found -1
      = help: the maximum firing rate in Hz; Norse's default is 100
    "#);
    insta::assert_snapshot!(check_error(&tutorial_with("ConstantCurrent()", "SpikeLatency(p: (tau_mem_inv: 0))")), @r#"
    net.ron: error: encoder (SpikeLatency): p.tau_mem_inv: must be greater than 0, found 0
      = help: an inverse time constant in 1/s (1/tau); Norse's default is 100
    "#);
    check_ok(&tutorial_with("ConstantCurrent()", "Poisson(f_max: 0)"));
}

#[test]
fn value_encoder_parameters() {
    use snnc_frontend::check::network_warnings;
    // The DSL builds the same encoders.
    assert_eq!(Encoder::from(Encoder::population(5)), Encoder::Population { out_features: 5, scale: None });
    assert_eq!(
        Encoder::from(Encoder::population(6).scale(2.0)),
        Encoder::Population { out_features: 6, scale: Some(2.0) }
    );
    assert_eq!(Encoder::from(Encoder::signed_poisson()), Encoder::SignedPoisson { f_max: 100.0, seed: 0 });
    assert_eq!(
        Encoder::from(Encoder::signed_poisson().f_max(300.0).seed(9)),
        Encoder::SignedPoisson { f_max: 300.0, seed: 9 }
    );
    insta::assert_snapshot!(check_error(&tutorial_with("ConstantCurrent()", "SignedPoisson(f_max: -1)")), @r#"
    net.ron: error: encoder (SignedPoisson): f_max: must be 0 or more, found -1
      = help: the maximum firing rate in Hz; Norse's default is 100
    "#);
    insta::assert_snapshot!(check_error(&tutorial_with("ConstantCurrent()", "Population(out_features: 0)")), @r#"
    net.ron: error: encoder (Population): out_features: must be 1 or more, found 0
      = help: the number of Gaussian receptive fields per input value, e.g. `out_features: 8`
    "#);
    insta::assert_snapshot!(
        check_error(&tutorial_with("ConstantCurrent()", "Population(out_features: 4, scale: -2.0)")), @r#"
    net.ron: error: encoder (Population): scale: must be 0 or more, found -2
      = help: the centres run from 0 to `scale`; leave `scale` out (or 0) to use the largest input value
    "#);
    insta::assert_snapshot!(
        check_error(&tutorial_with("ConstantCurrent()", "Population(out_features: 4, scale: NaN)")),
        @"net.ron: error: encoder (Population): scale: must be a finite number, found NaN"
    );
    insta::assert_snapshot!(parse_error(&tutorial_with("ConstantCurrent()", "Population()")), @r#"
    net.ron:8:25: error: missing field `out_features` in `Population`
      |
    8 |     encoder: Population(),
      |                         ^
      = help: add `out_features: ...`
    "#);
    check_ok(&tutorial_with("ConstantCurrent()", "SignedPoisson()"));
    check_ok(&tutorial_with("ConstantCurrent()", "SignedPoisson(f_max: 300, seed: 4)"));
    check_ok(&tutorial_with("ConstantCurrent()", "Population(out_features: 8)"));
    check_ok(&tutorial_with("ConstantCurrent()", "Population(out_features: 8, scale: 0)"));
    check_ok(&tutorial_with("ConstantCurrent()", "Population(out_features: 8, scale: 2.5)"));
    // A saturating signed rate warns as Poisson's does.
    let signed =
        "(version: 1, name: \"p\", steps: 4, input: [2], encoder: SignedPoisson(f_max: 2000), layers: [LIF()])";
    let net = parse_network(signed, "net.ron").unwrap();
    let warnings: Vec<String> = network_warnings(&net).iter().map(Problem::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("encoder (SignedPoisson): f_max: dt * f_max = 0.001 * 2000 = 2"), "{warnings:?}");
}

#[test]
fn lif_adex_delta_t_must_be_positive() {
    insta::assert_snapshot!(check_error(&tutorial_with("LI()", "LIFAdEx(p: (delta_T: 0))")), @r#"
    net.ron: error: layers[3] `lifadex3` (LIFAdEx): p.delta_T: must be greater than 0, found 0
      = help: the sharpness of the exponential term (`exp((v - v_th) / delta_T)`); Norse's default is 0.5
    "#);
}

#[test]
fn a_network_needs_a_layer_or_an_encoder() {
    let text = "(version: 1, name: \"empty\", steps: 4, input: [2], layers: [])";
    insta::assert_snapshot!(check_error(text), @r#"
    net.ron: error: layers: a network without an encoder needs at least one layer
      = help: add a layer, e.g. `LIF()`, or an encoder
    "#);
    check_ok("(version: 1, name: \"enc\", steps: 4, input: [2], encoder: Poisson(), layers: [])");
}

#[test]
fn layer_names_must_be_unique_and_not_reserved() {
    let text = "(version: 1, name: \"names\", steps: 4, input: [2], layers: [
        LIF(),
        LIF(name: \"lif0\"),
        LI(name: \"encoder\"),
        LI(name: \"output\"),
        ReLU(name: \"\"),
        ReLU(name: \"a.b\"),
    ])";
    insta::assert_snapshot!(check_error(text), @r#"
    net.ron: error: layers[1] `lif0` (LIF): name: `lif0` is already the name of layers[0] (its default name)
      = help: layer names must be unique
    net.ron: error: layers[2] `encoder` (LI): name: `encoder` is reserved
      = help: `encoder`, `output` and `x` name the network's own tensors; choose another name
    net.ron: error: layers[3] `output` (LI): name: `output` is reserved
      = help: `encoder`, `output` and `x` name the network's own tensors; choose another name
    net.ron: error: layers[4] `` (ReLU): name: must not be empty
      = help: leave `name` out to get a default name
    net.ron: error: layers[5] `a.b` (ReLU): name: must not contain `.`, found `a.b`
      = help: weights are named `NAME.weight`; use letters, digits, `_` and `-`
    "#);
}

#[test]
fn layer_names_must_be_safe_file_names() {
    let long = "n".repeat(65);
    let text = format!(
        "(version: 1, name: \"names\", steps: 4, input: [2], layers: [
        ReLU(name: \"a/b\"),
        ReLU(name: \"nul\\u{{0}}\"),
        ReLU(name: \"two\\nlines\"),
        ReLU(name: \"with space\"),
        ReLU(name: \"{long}\"),
    ])"
    );
    insta::assert_snapshot!(check_error(&text), @r#"
    net.ron: error: layers[0] `a/b` (ReLU): name: must not contain `/`, found `a/b`
      = help: names become parts of file names and tensor names; use letters, digits, `_` and `-`
    net.ron: error: layers[1] `nul\0` (ReLU): name: must not contain `\0`, found `nul\0`
      = help: names become parts of file names and tensor names; use letters, digits, `_` and `-`
    net.ron: error: layers[2] `two\nlines` (ReLU): name: must not contain `\n`, found `two\nlines`
      = help: names become parts of file names and tensor names; use letters, digits, `_` and `-`
    net.ron: error: layers[3] `with space` (ReLU): name: must not contain ` `, found `with space`
      = help: names become parts of file names and tensor names; use letters, digits, `_` and `-`
    net.ron: error: layers[4] `nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...` (ReLU): name: must be at most 64 bytes long, found 65
      = help: names become parts of file names (`snnc compile -o`); choose a shorter name
    "#);
    // What names use today, letters of any script and `-` are fine.
    check_ok(&format!(
        "(version: 1, name: \"names\", steps: 4, input: [2], layers: [
        ReLU(name: \"fc_out\"), ReLU(name: \"conv-1\"), ReLU(name: \"Schichtä\"), ReLU(name: \"{}\"),
    ])",
        "n".repeat(64)
    ));
}

#[test]
fn several_problems_are_reported_at_once() {
    let text = "(version: 1, name: \"bad\", steps: 0, dt: 0, input: [4], layers: [
        Linear(out: 0),
        LIF(name: \"l\", p: (tau_mem_inv: -100, v_th: NaN)),
        LIF(name: \"l\"),
    ])";
    insta::assert_snapshot!(check_error(text), @r#"
    net.ron: error: steps: must be 1 or more, found 0
      = help: steps is the number of time steps T
    net.ron: error: dt: must be greater than 0, found 0
      = help: dt is the time step in seconds; Norse's default is 0.001
    net.ron: error: layers[0] `linear0` (Linear): out: must be 1 or more, found 0
    net.ron: error: layers[1] `l` (LIF): p.tau_mem_inv: must be greater than 0, found -100
      = help: an inverse time constant in 1/s (1/tau); Norse's default is 100
    net.ron: error: layers[1] `l` (LIF): p.v_th: must be a finite number, found NaN
    net.ron: error: layers[2] `l` (LIF): name: `l` is already the name of layers[1]
      = help: layer names must be unique
    "#);
}

#[test]
fn the_dsl_reports_the_same_problems() {
    let err = Net::new("dsl", 0)
        .dt(-0.001)
        .input([3])
        .layer(Layer::lif().tau_mem_inv(0.0))
        .layer(Layer::li_linear(2).named("output"))
        .build()
        .unwrap_err();
    insta::assert_snapshot!(err, @r#"
    network `dsl`: error: steps: must be 1 or more, found 0
      = help: steps is the number of time steps T
    network `dsl`: error: dt: must be greater than 0, found -0.001
      = help: dt is the time step in seconds; Norse's default is 0.001
    network `dsl`: error: layers[0] `lif0` (LIF): p.tau_mem_inv: must be greater than 0, found 0
      = help: an inverse time constant in 1/s (1/tau); Norse's default is 100
    network `dsl`: error: layers[1] `output` (LILinear): name: `output` is reserved
      = help: `encoder`, `output` and `x` name the network's own tensors; choose another name
    "#);
}

#[test]
fn the_version_is_checked_for_networks_built_in_rust() {
    let mut net = Net::new("v", 1).input([1]).layer(Layer::relu()).build_unchecked();
    net.version = 3;
    insta::assert_snapshot!(check_network(&net, "rust").unwrap_err(), @r#"
    rust: error: version: unsupported format version 3
      = help: supported versions: 1
    "#);
}

// The error type as other code builds it.

#[test]
fn invalid_errors_render_one_line_per_problem_with_help() {
    let err = FrontendError::Invalid {
        file: "net.ron".into(),
        problems: vec![
            Problem {
                at: "layers[2] `linear2` (Linear): in".into(),
                message: "is 784 but the input has 100 features".into(),
                help: Some("leave `in` out to infer it".into()),
            },
            Problem::new("", "something without a place"),
        ],
    };
    insta::assert_snapshot!(err, @r#"
    net.ron: error: layers[2] `linear2` (Linear): in: is 784 but the input has 100 features
      = help: leave `in` out to infer it
    net.ron: error: something without a place
    "#);
    let empty = FrontendError::Invalid { file: "net.ron".into(), problems: vec![] };
    insta::assert_snapshot!(empty, @r#"net.ron: error: invalid network description"#);
}

#[test]
fn errors_end_without_a_newline() {
    let errors = [
        parse_error(&tutorial_with("Linear(", "Lenear(")),
        check_error(&tutorial_with("steps: 32", "steps: 0")),
        parse_error(""),
    ];
    for err in errors {
        assert!(!err.ends_with('\n'), "{err:?}");
    }
}

#[test]
fn a_direct_encoder_needs_a_layer_that_computes() {
    let direct = r#"(version: 1, name: "d", steps: 4, input: [1, 28, 28], encoder: Direct(), layers: [Flatten()])"#;
    insta::assert_snapshot!(check_error(direct), @r#"
    net.ron: error: encoder (Direct): a Direct encoder passes the image on unchanged, and no layer computes anything from it: the output would be the input at every step
      = help: add the layers that read the image, e.g. `Conv2d(out_channels: 16, kernel_size: 5)` and `LIF()`
    "#);
    // With a layer that reads the image it is a valid network.
    let net = parse_network(&direct.replace("Flatten()", "Flatten(), LIF()"), "net.ron").unwrap();
    check_network(&net, "net.ron").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn conv_options_and_pools_are_checked() {
    let text = "(version: 1, name: \"s\", steps: 1, input: [4, 8, 8], layers: [
        Conv2d(in_channels: 4, out_channels: 6, kernel_size: (3, 0), dilation: (1, 0), groups: 4),
        MaxPool2d(kernel_size: (3, 2), padding: (2, 1)),
        AvgPool2d(kernel_size: 2, padding: (0, 2), count_include_pad: false),
        SumPool2d(kernel_size: 4, stride: (1, 0), padding: 2),
        LPPool2d(norm_type: 2, kernel_size: 2),
    ])";
    insta::assert_snapshot!(check_error(text), @r"
    net.ron: error: layers[0] `conv2d0` (Conv2d): kernel_size: must be 1 or more, found (3, 0)
    net.ron: error: layers[0] `conv2d0` (Conv2d): dilation: must be 1 or more, found (1, 0)
    net.ron: error: layers[0] `conv2d0` (Conv2d): groups: 4 does not divide out_channels 6: each group needs as many channels as the others
      = help: use a groups that divides out_channels 6, e.g. 1
    net.ron: error: layers[1] `maxpool2d1` (MaxPool2d): padding: must be at most half the kernel_size (3, 2), found (2, 1)
      = help: use a padding of at most 1, or a larger kernel_size
    net.ron: error: layers[2] `avgpool2d2` (AvgPool2d): padding: must be at most half the kernel_size 2, found (0, 2)
      = help: use a padding of at most 1, or a larger kernel_size
    net.ron: error: layers[2] `avgpool2d2` (AvgPool2d): count_include_pad: only `true` is supported (the padding counts in each window's divisor, torch's default)
      = help: leave `count_include_pad` out, or give the input already padded and use no padding
    net.ron: error: layers[3] `sumpool2d3` (SumPool2d): stride: must be 1 or more, found (1, 0)
    net.ron: error: layers[4] `lppool2d4` (LPPool2d): norm_type: only 1 is supported (the window's sum), found 2
      = help: use `norm_type: 1`, or `SumPool2d` for a plain window sum
    ");
}

#[test]
fn a_size_is_an_integer_or_a_pair() {
    insta::assert_snapshot!(parse_error(&tutorial_with("Flatten()", "MaxPool2d(kernel_size: (2, 2, 2)), Flatten()")), @r"
    net.ron:10:40: error: a pair has two values (height, width), found more; expected a size: an integer such as 3, or a pair (height, width) such as (3, 5)
       |
    10 |         MaxPool2d(kernel_size: (2, 2, 2)), Flatten(),
       |                                        ^
    ");
    insta::assert_snapshot!(parse_error(&tutorial_with("Flatten()", "MaxPool2d(kernel_size: 2.5), Flatten()")), @r"
    net.ron:10:32: error: expected a size: an integer such as 3, or a pair (height, width) such as (3, 5) but found the floating point number `2.5` instead
       |
    10 |         MaxPool2d(kernel_size: 2.5), Flatten(),
       |                                ^^^
    ");
}

/// Lowering names the layer and the field of a size that does not fit the
/// input, and a group count that does not divide the input's channels.
#[test]
fn conv_options_that_do_not_fit_the_input_name_the_field() {
    let lower = |layers: &str| {
        let text = format!("(version: 1, name: \"s\", steps: 1, input: [3, 6, 7], layers: [{layers}])");
        let net = parse_network(&text, "net.ron").unwrap_or_else(|e| panic!("{e}"));
        check_network(&net, "net.ron").unwrap_or_else(|e| panic!("{e}"));
        snnc_frontend::lower(&net, "net.ron", &Default::default()).unwrap_err().to_string()
    };
    insta::assert_snapshot!(lower("Conv2d(name: \"c\", out_channels: 2, kernel_size: 3, dilation: (1, 4))"), @r"
    net.ron: error: layers[0] `c` (Conv2d): kernel_size: 3 with dilation 4 spans 9, more than the padded input 7 (the width axis): the network input gives shape [3, 6, 7]
      = help: use a smaller kernel_size or dilation, or more padding
    ");
    insta::assert_snapshot!(lower("Conv2d(name: \"c\", out_channels: 2, kernel_size: 3, groups: 2)"), @r"
    net.ron: error: layers[0] `c` (Conv2d): groups: 2 does not divide the 3 input channels the network input gives
      = help: use a groups that divides both channel counts, e.g. 1
    ");
    insta::assert_snapshot!(lower("AvgPool2d(name: \"p\", kernel_size: (7, 2))"), @r"
    net.ron: error: layers[0] `p` (AvgPool2d): kernel_size: 7 is larger than the padded input 6 (the height axis): the network input gives shape [3, 6, 7]
      = help: use a smaller kernel_size, or more padding
    ");
}
