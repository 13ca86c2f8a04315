//! The neuron language: a model written as equations runs with the bits of
//! the built-in neuron it spells out, the Rust DSL writes the same network
//! as the RON file, and every mistake in an equation is a `check` error
//! pointing at its place (exit 2). Norse's numbers for the zoo are checked
//! by the golden tests (`tests/golden.rs`, `tests/cpu_golden.rs`).

mod support;

use std::path::Path;

use snnc_frontend::neuron::NeuronModel;
use snnc_frontend::neuron::zoo::IzhikevichPreset;
use snnc_frontend::{Layer, Method, Network};
use support::{TempDir, snnc, stderr, stdout};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/custom_neuron.ron");

fn example() -> Network {
    snnc_frontend::load_network(Path::new(EXAMPLE)).unwrap_or_else(|e| panic!("{e}"))
}

/// `snnc run NET --target TARGET --record` and the recording.
fn record(dir: &TempDir, net: &str, target: &str) -> serde_json::Map<String, serde_json::Value> {
    let out = dir.path(&format!("{target}.json"));
    let o = snnc(&["run", net, "--target", target, "--batch", "2", "--record", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rec: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("the recording")).expect("JSON");
    rec.remove("__meta__");
    rec
}

#[test]
fn the_izhikevich_written_as_equations_gives_the_bits_of_the_built_in_one() {
    let dir = TempDir::new("izh_bits");
    let mut builtin = example();
    builtin.layers[1] = Layer::izhikevich(IzhikevichPreset::TonicSpiking).named("izh");
    let builtin_path = dir.write("builtin.ron", snnc_frontend::to_ron(&builtin));
    for target in ["interp", "cpu"] {
        let a = record(&dir, EXAMPLE, target);
        let b = record(&dir, &builtin_path, target);
        assert_eq!(a.keys().collect::<Vec<_>>(), ["gain.out", "izh.u", "izh.v", "izh.z", "output"]);
        assert_eq!(a, b, "{target}: the equations and the built-in neuron differ");
        let spikes: f64 = a["izh.z"]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).sum();
        assert!(spikes >= 4.0, "{target}: the example should spike, got {spikes} spikes");
    }
}

#[test]
fn the_dsl_writes_the_example_file() {
    let model = NeuronModel::new()
        .constant("a", 0.02)
        .constant("b", 0.2)
        .constant("c", -65.0)
        .constant("d", 6.0)
        .constant("sq", 0.04)
        .constant("mn", 5.0)
        .constant("bias", 140.0)
        .constant("v_th", 30.0)
        .constant("tau_inv", 250.0)
        .state("v", -70.0)
        .state("u", -14.0)
        .update([
            "k = tau_inv * dt",
            "v_new = v + k * ((((sq * (v * v) + mn * v) + bias) - u) + x)",
            "u = u + (k * a) * (b * v - u)",
            "v = v_new",
        ])
        .spike("v - v_th")
        .surrogate(Method::Super, 100.0)
        .reset(["v = c", "u = u + d"]);
    let net = example();
    assert_eq!(net.layers[1], Layer::neuron(model).named("izh"));
    // And the file's RON form reads back as the same network.
    let again = snnc_frontend::parse_network(&snnc_frontend::to_ron(&net), "again.ron").unwrap();
    assert_eq!(again, net);
}

/// `snnc check` on a network of one `Neuron` layer with `model`.
fn check(test: &str, model: &str) -> (i32, String) {
    let dir = TempDir::new(test);
    let net =
        format!("(version: 1, name: \"n\", steps: 3, input: [2], layers: [Neuron(name: \"n\", model: ({model}))])");
    let path = dir.write("net.ron", net);
    let o = snnc(&["check", &path]);
    (o.status.code().unwrap_or(-1), stderr(&o))
}

#[test]
fn mistakes_in_equations_are_located_inside_them() {
    let (code, err) =
        check("unknown_name", r#"state: {"v": 0}, update: ["k = 2 * dt", "v = v + k * vv"], spike: "v - 1""#);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("layers[0] `n` (Neuron): model.update[1]: column 13: unknown name `vv`\n    v = v + k * vv\n                ^^"),
        "{err}"
    );
    assert!(err.contains("the names here are"), "{err}");

    let (code, err) = check("twice", r#"state: {"v": 0}, update: ["v = v + x", "v = v * 2"], spike: "v - 1""#);
    assert_eq!(code, 2);
    assert!(err.contains("model.update[1]: column 1: `v` is written twice in `update` (first in update[0])"), "{err}");

    let (code, err) =
        check("reset_unknown", r#"state: {"v": 0}, update: ["v = v + x"], spike: "v - 1", reset: ["w = 0"]"#);
    assert_eq!(code, 2);
    assert!(err.contains("model.reset[0]: column 1: a reset of an unknown state `w`: the states are `v`"), "{err}");

    let (code, err) = check("arity", r#"state: {"v": 0}, update: ["v = max(v)"], spike: "v - 1""#);
    assert_eq!(code, 2);
    assert!(err.contains("type error: `max` takes 2 arguments, found 1"), "{err}");

    let (code, err) = check("syntax", r#"state: {"v": 0}, update: ["v = v ** 2"], spike: "v - 1""#);
    assert_eq!(code, 2);
    assert!(err.contains("there is no power operator") && err.contains("v * v"), "{err}");

    let (code, err) =
        check("trainable", r#"constants: {"c": 1}, state: {"v": 0}, update: ["v = v + c * x"], trainable: ["c"]"#);
    assert_eq!(code, 2);
    assert!(err.contains("`c` is a constant (a Python float); move it to `params` to train it"), "{err}");

    let (code, err) =
        check("unread", r#"params: {"v0": 1}, state: {"v": "v0"}, update: ["v = v + x"], trainable: ["v0"]"#);
    assert_eq!(code, 2);
    assert!(err.contains("model.trainable: `v0` is trainable, but no equation reads it"), "{err}");
}

#[test]
fn a_custom_izhikevich_without_its_values_names_them() {
    let dir = TempDir::new("izh_missing");
    let path = dir.write(
        "net.ron",
        "(version: 1, name: \"n\", steps: 3, input: [2], layers: [Izhikevich(p: (a: 0.02, b: 0.2))])",
    );
    let o = snnc(&["check", &path]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("a custom Izhikevich neuron needs `c`, `d`, `v_rest`, `u_rest`"), "{err}");
    assert!(err.contains("tonic_spiking"), "{err}");
}

#[test]
fn every_izhikevich_preset_runs_on_the_cpu() {
    let dir = TempDir::new("izh_presets");
    for preset in IzhikevichPreset::ALL {
        let net = format!(
            "(version: 1, name: \"n\", steps: 50, input: [3], example_input: Constant(10), layers: [Izhikevich(preset: {})])",
            preset.name()
        );
        let path = dir.write("net.ron", net);
        let o = snnc(&["run", &path]);
        assert!(o.status.success(), "{}: {}", preset.name(), stderr(&o));
        assert!(stdout(&o).contains("output, shape [50, 1, 3]"), "{}", stdout(&o));
    }
}

#[test]
fn a_recurrent_neuron_layer_trains_its_weights_and_parameters() {
    let dir = TempDir::new("recurrent_neuron");
    let net = r#"(version: 1, name: "r", steps: 10, input: [4], layers: [
        Neuron(name: "rec", hidden: 5, model: (
            params: {"tau": 100, "v_th": 0.3}, trainable: ["tau", "v_th"],
            state: {"v": 0},
            update: ["v = v + (dt * tau) * (((x + x_rec) - v) * 10)"],
            spike: "v - v_th", reset: ["v = 0"], detach: ["z"])),
        LI(name: "out"),
    ])"#;
    let path = dir.write("net.ron", net);
    let o = snnc(&["weights", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names = stdout(&o);
    for name in ["rec.input_weights", "rec.recurrent_weights", "rec.tau", "rec.v_th"] {
        assert!(names.contains(name), "{name} missing:\n{names}");
    }
    let o = snnc(&["compile", &path, "--target", "cpu", "--backward", "-o", &dir.path("out")]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Every oracle case of Norse's zoo runs (none is "unsupported", which the
/// golden tests would let pass) and agrees with Norse on the interpreter.
#[test]
fn every_zoo_oracle_case_runs_and_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let prefixes = [
        "iaf_",
        "izhikevich_",
        "lif_ex_",
        "lif_refrac_",
        "lif_adex_refrac_",
        "coba_lif_",
        "li_box_",
        "tsodyks_markram_",
        "net_iaf",
        "net_lif_ex",
        "net_lif_refrac",
        "net_izhikevich",
    ];
    let mut ran = 0;
    for path in snnc::conformance::list_cases(&dir).expect("the golden folder") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let report = snnc::conformance::run_case(&path);
        assert!(matches!(report.outcome, snnc::conformance::CaseOutcome::Ran(_)), "{name}: {:?}", report.failures());
        assert!(!report.failed(), "{name}: {:?}", report.failures());
        ran += 1;
    }
    // f32 and f64 of: IAF 2 + 1 recurrent, Izhikevich 4 + 1, LIFEx 2 + 1,
    // LIFRefrac 2 + 1, LIFAdExRefrac 2, CobaLIF 1 + 2 recurrent, LIBox 2, TsodyksMarkram 2, and
    // 4 networks.
    assert_eq!(ran, 54, "zoo oracle cases found");
}

/// The Tsodyks–Markram synapse (`tests/nets/tsodyks_markram.ron`) passes
/// on floats, not spikes: `sparsify` keeps the Linear after it dense even
/// with a density hint of 1 %, which makes the same Linear on the
/// encoder's spikes event-driven; the CPU gives the interpreter's bits.
#[test]
fn tsodyks_markram_outputs_floats_that_stay_dense() {
    use snnc::driver;
    use snnc_ir::{Dtype, MatMulKind, Op};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nets/tsodyks_markram.ron");
    let net = snnc_frontend::load_network(&path).unwrap_or_else(|e| panic!("{e}"));
    let kinds = |net: &Network| {
        let mut c = driver::compile(net, "net.ron", &Default::default()).unwrap();
        let opts = driver::pass_options(&c, None).unwrap();
        let pipeline = driver::pipeline(snnc::Target::Cpu, None, &opts).unwrap();
        driver::optimize(&mut c, &pipeline, &mut |_| {}).unwrap();
        let m = &c.module;
        let products: Vec<(MatMulKind, Dtype)> = m
            .nodes
            .iter()
            .filter_map(|(_, n)| match n.op {
                Op::MatMul { input, kind, .. } => Some((kind, m.nodes[input].ty.dtype)),
                _ => None,
            })
            .collect();
        products
    };
    assert_eq!(kinds(&net), [(MatMulKind::Dense, Dtype::F32)]);
    let mut plain = net.clone();
    plain.layers.remove(0);
    assert_eq!(kinds(&plain), [(MatMulKind::EventDriven, Dtype::Spike)]);

    let dir = TempDir::new("stp_bits");
    let file = path.to_string_lossy().to_string();
    let a = record(&dir, &file, "interp");
    let b = record(&dir, &file, "cpu");
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        ["encoder.z", "fc.out", "lif.i", "lif.v", "lif.z", "output", "stp.u", "stp.x_d"]
    );
    assert_eq!(a, b, "the cpu and the interpreter differ");
    let u: Vec<f64> = a["stp.u"]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!(u.iter().any(|&u| u > 0.0), "no input spike reached the synapse: {u:?}");
}
