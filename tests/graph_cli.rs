//! Graph networks from the command line: `snnc check` prints each layer's
//! inputs, and every graph mistake is a check error (exit 2) that names the
//! layers and the fix.

mod support;

use support::{TempDir, snnc, stderr, stdout};

fn net(layers: &str) -> String {
    format!("(version: 1, name: \"g\", steps: 5, input: [6], layers: [{layers}])")
}

/// `snnc check` on the layers; returns (exit code, stdout, stderr).
fn check(test: &str, layers: &str) -> (i32, String, String) {
    let dir = TempDir::new(test);
    let path = dir.write("net.ron", net(layers));
    let o = snnc(&["check", &path]);
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

#[test]
fn check_prints_the_graph() {
    let (code, out, err) = check(
        "graph_prints",
        r#"Linear(name: "fc_in", out: 7),
           Linear(name: "fb", out: 7, inputs: [], recurrent_inputs: ["lifb"]),
           LIF(name: "lifa", inputs: ["fc_in", "fb"]),
           Linear(name: "fc_ab", out: 5),
           LIF(name: "lifb"),
           Identity(name: "res", inputs: ["lifb", "fc_ab"]),
           LI(name: "li")"#,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("inputs"), "{out}");
    let row = |name: &str| out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}:\n{out}"));
    assert!(row("fb ").ends_with("lifb (t-1)"), "{out}");
    assert!(row("lifa ").ends_with("fc_in, fb"), "{out}");
    assert!(row("res ").ends_with("lifb, fc_ab"), "{out}");
    assert!(row("res ").contains("[5]"), "{out}");
}

#[test]
fn a_chain_prints_no_inputs_column() {
    let (code, out, err) = check("chain_prints", r#"Linear(out: 4), LIF()"#);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("inputs"), "{out}");
}

#[test]
fn a_cycle_without_delay_is_an_error_naming_the_layers() {
    let (code, _, err) = check(
        "graph_cycle",
        r#"Linear(name: "a", out: 6, inputs: ["x", "c"]), LIF(name: "b"), Linear(name: "c", out: 6), LI(name: "d", inputs: ["b"])"#,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`a` -> `b` -> `c` -> `a`"), "{err}");
    assert!(err.contains("recurrent_inputs"), "{err}");
}

#[test]
fn an_add_of_mismatched_shapes_is_an_error_naming_both() {
    let (code, _, err) = check(
        "graph_add_shapes",
        r#"Linear(name: "a", out: 4), LIF(name: "b"), Identity(name: "s", inputs: ["b", "x"])"#,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`s` (Identity): merge"), "{err}");
    assert!(err.contains("[4]") && err.contains("[6]"), "{err}");
    assert!(err.contains("merge: concat"), "{err}");
}

#[test]
fn unknown_and_unused_layers_are_errors() {
    let (code, _, err) = check("graph_unknown", r#"Linear(name: "a", out: 4, inputs: ["nope"]), LIF(name: "b")"#);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no layer is named `nope`"), "{err}");
    assert!(err.contains("`a`, `b`") || err.contains("`x`, `a`, `b`"), "{err}");

    let (code, _, err) = check("graph_unused", r#"Linear(name: "a", out: 4), LIF(name: "b", inputs: ["x"])"#);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("layers[0] `a` (Linear)") && err.contains("no layer reads"), "{err}");
}

#[test]
fn a_delayed_input_needs_a_layer() {
    let (code, _, err) = check("graph_delay_x", r#"Linear(out: 4, recurrent_inputs: ["x"]), LIF()"#);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be delayed"), "{err}");
}

#[test]
fn a_graph_runs_the_same_on_the_interpreter_and_the_cpu() {
    let dir = TempDir::new("graph_runs");
    let path = dir.write(
        "net.ron",
        net(r#"Linear(name: "fc0", out: 8), LIF(name: "lif0"), Linear(name: "fc1", out: 8), LIF(name: "lif1"),
               Identity(name: "res", inputs: ["lif1", "lif0"]),
               Linear(name: "fc2", out: 8, recurrent_inputs: ["lif2"]), LIF(name: "lif2"),
               Linear(name: "fc3", out: 3), LI(name: "li")"#),
    );
    let mut outs = Vec::new();
    for target in ["interp", "cpu"] {
        let out = dir.path(&format!("{target}.json"));
        let o = snnc(&["run", &path, "--target", target, "--batch", "3", "--record", &out]);
        assert!(o.status.success(), "{}", stderr(&o));
        outs.push(std::fs::read_to_string(&out).expect("recording written"));
    }
    let value = |text: &str| -> serde_json::Value { serde_json::from_str(text).expect("json") };
    let (a, b) = (value(&outs[0]), value(&outs[1]));
    for key in ["output", "res.out", "lif2.z", "lif0.z"] {
        let x = &a[key];
        assert!(!x.is_null(), "{key} not recorded: {}", outs[0].chars().take(300).collect::<String>());
        let flat = |v: &serde_json::Value| -> Vec<f64> {
            v["data"].as_array().expect("data").iter().map(|x| x.as_f64().expect("number")).collect()
        };
        let (fa, fb) = (flat(x), flat(&b[key]));
        assert_eq!(fa.len(), fb.len(), "{key}");
        for (p, q) in fa.iter().zip(&fb) {
            assert!((p - q).abs() <= 1e-5 * p.abs().max(1.0), "{key}: interp {p} vs cpu {q}");
        }
    }
}

#[test]
fn dropout_is_the_identity_in_a_run_and_p_must_be_below_one() {
    let (code, _, err) = check("dropout_p", r#"Linear(out: 4), Dropout(p: 1.0), LIF()"#);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("(Dropout): p: must be in [0, 1), found 1"), "{err}");

    let dir = TempDir::new("dropout_run");
    let with = dir.write("with.ron", net(r#"Linear(name: "fc", out: 4), Dropout(p: 0.5), LIF(name: "lif")"#));
    let without = dir.write("without.ron", net(r#"Linear(name: "fc", out: 4), LIF(name: "lif")"#));
    let run = |path: &str| {
        let out = format!("{path}.json");
        let o = snnc(&["run", path, "--batch", "2", "--record", &out]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        v["lif.v"].clone()
    };
    assert_eq!(run(&with), run(&without));
}

/// Regression (found by the pass-equivalence generator): the encoder's
/// spikes added to a late layer. Each fusion group was convex, but the
/// encoder's kernel (taking the late add) and the LSNN kernel (taking the
/// encoder's spikes through a product) made a cycle of kernels.
#[test]
fn a_skip_from_the_encoder_fuses_without_a_cycle_of_kernels() {
    let dir = TempDir::new("fuse_cycle");
    let path = dir.write(
        "net.ron",
        r#"(version: 1, name: "skip", steps: 2, input: [1, 6], encoder: ConstantCurrent(),
            layers: [LSNNRecurrent(hidden: 1), LILinear(out: 6), MaxPool2d(kernel_size: 1, inputs: ["lilinear1", "x"])],
            readout: Max)"#,
    );
    let o = snnc(&["ir", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = snnc(&["run", &path, "--batch", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_time_batched_batchnorm_cannot_be_in_a_graph_with_delays() {
    let (code, _, err) = check(
        "tdbn_delay",
        r#"Linear(name: "a", out: 6, recurrent_inputs: ["c"]), BatchNorm1d(name: "bn", variant: time_batched),
           LIF(name: "c")"#,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`bn` (BatchNorm1d): variant"), "{err}");
    assert!(err.contains("variant: per_step"), "{err}");
}
