//! The `snnc` binary: commands, summaries, exit codes and error messages,
//! tested as rendered text. Temporary files go under `target/`.

use std::path::{Path, PathBuf};

mod support;
use support::{TempDir, snnc, stderr, stdout};

/// A scratch folder under target/ for this test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli").join(name);
    std::fs::create_dir_all(&dir).expect("can create a scratch folder");
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("can write a scratch file");
    p.display().to_string()
}

#[test]
fn check_prints_layers_and_totals() {
    let o = snnc(&["check", "examples/tutorial.ron"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("examples/tutorial.ron: ok"), "{text}");
    assert!(text.contains("lif1             LIFRecurrent     [100]                   88400          300"), "{text}");
    assert!(text.contains("total: 89400 trainable parameters"), "{text}");
}

#[test]
fn ir_prints_the_module() {
    let o = snnc(&["ir", "examples/lif.ron"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("module lif {\n  steps 100, dt 0.001, float f32\n"), "{text}");
    assert!(text.contains("threshold"), "{text}");
    let again = stdout(&snnc(&["ir", "examples/lif.ron"]));
    assert_eq!(text, again, "the IR text is deterministic");
}

#[test]
fn run_tutorial_prints_a_readout_and_records() {
    let dir = scratch("run_tutorial");
    let rec = dir.join("rec.json");
    let rec_s = rec.display().to_string();
    let o = snnc(&["run", "examples/tutorial.ron", "--batch", "2", "--record", &rec_s]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("readout (MaxLogSoftmax), shape [2, 10]:"), "{text}");
    assert!(text.contains("  sample 1: ["), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rec).expect("recording written")).expect("valid JSON");
    assert_eq!(json["lif1.z"]["shape"], serde_json::json!([32, 2, 100]));
    assert_eq!(json["encoder.z"]["shape"], serde_json::json!([32, 2, 1, 28, 28]));
    assert_eq!(json["readout"]["shape"], serde_json::json!([2, 10]));
    // Same input and seed: the same recording, bit for bit.
    let rec2 = dir.join("rec2.json");
    let o2 = snnc(&["run", "examples/tutorial.ron", "--batch", "2", "--record", &rec2.display().to_string()]);
    assert_eq!(o2.status.code(), Some(0));
    assert_eq!(std::fs::read(&rec).unwrap(), std::fs::read(&rec2).unwrap());
}

#[test]
fn run_accepts_an_input_file_and_rejects_a_wrong_shape() {
    let dir = scratch("run_input");
    let good = serde_json::json!({"shape": [100, 1, 5], "dtype": "float32", "data": vec![1.5; 500]});
    let good = write(&dir, "good.json", &good.to_string());
    let o = snnc(&["run", "examples/lif.ron", "--input", &good]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("lif              LIF"), "{}", stdout(&o));

    let bad = serde_json::json!({"shape": [100, 1, 4], "dtype": "float32", "data": vec![1.5; 400]});
    let bad = write(&dir, "bad.json", &bad.to_string());
    let o = snnc(&["run", "examples/lif.ron", "--input", &bad]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("x"), "{err}");
}

#[test]
fn missing_file_is_a_user_error() {
    let o = snnc(&["check", "no/such/net.ron"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no/such/net.ron"), "{}", stderr(&o));
}

#[test]
fn malformed_ron_names_the_place() {
    let dir = scratch("malformed");
    let p = write(&dir, "bad.ron", "(version: 1, name: \"x\", steps: 3, input: [2], layers: [LIF(p: (v_th: 1.0)]\n");
    let o = snnc(&["check", &p]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("bad.ron:1:"), "{err}");
}

#[test]
fn impossible_parameters_are_rejected_with_the_range() {
    let dir = scratch("params");
    let p = write(
        &dir,
        "bad.ron",
        "(version: 1, name: \"x\", steps: 0, dt: -0.001, input: [2], layers: [LIF(p: (tau_mem_inv: 0.0))])\n",
    );
    let o = snnc(&["check", &p]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("steps"), "{err}");
    assert!(err.contains("dt"), "{err}");
    assert!(err.contains("tau_mem_inv"), "{err}");
}

#[test]
fn shape_mismatch_names_both_layers_and_shapes() {
    let dir = scratch("shapes");
    let p = write(
        &dir,
        "bad.ron",
        "(version: 1, name: \"x\", steps: 3, input: [8], layers: [Linear(name: \"fc1\", out: 16), LIF(name: \"lif1\"), Linear(name: \"fc2\", in: 10, out: 4)])\n",
    );
    let o = snnc(&["check", &p]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("`fc2` (Linear)"), "{err}");
    assert!(err.contains("`lif1` (LIF)"), "{err}");
    assert!(err.contains("[16]"), "{err}");
    assert!(err.contains("10"), "{err}");
}

#[test]
fn cuda_without_a_gpu_is_an_environment_error() {
    if snnc_cuda::probe().problem().is_none() {
        // Straight to stderr: `eprintln!` of a passing test is captured.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr().lock(),
            b"tests/cli.rs: cuda_without_a_gpu_is_an_environment_error SKIPPED: this machine has a GPU\n",
        );
        return;
    }
    let o = snnc(&["run", "examples/lif.ron", "--target", "cuda"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("no usable GPU"), "{}", stderr(&o));
}

#[test]
fn dt_in_milliseconds_is_a_user_error_not_nan() {
    let tmp = TempDir::new("dt-ms");
    let tutorial = std::fs::read_to_string("examples/tutorial.ron").unwrap();
    assert!(tutorial.contains("dt: 0.001,"));
    let net = tmp.write("ms.ron", tutorial.replace("dt: 0.001,", "dt: 1.0,").as_bytes());
    for command in ["check", "run"] {
        let o = snnc(&[command, &net]);
        assert_eq!(o.status.code(), Some(2), "{command}: {}{}", stdout(&o), stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("p.tau_mem_inv: dt * tau_mem_inv = 1 * 100 = 100, more than 2"), "{err}");
        assert!(err.contains("dt is in seconds: 1 ms is `dt: 0.001`"), "{err}");
    }
}

#[test]
fn warnings_go_to_stderr_and_the_check_passes() {
    let tmp = TempDir::new("dt-coarse");
    let tutorial = std::fs::read_to_string("examples/tutorial.ron").unwrap();
    let net = tmp.write("coarse.ron", tutorial.replace("dt: 0.001,", "dt: 0.005,").as_bytes());
    let o = snnc(&["check", &net]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{net}: warning: layers[1] `lif1` (LIFRecurrent): p.tau_syn_inv: dt * tau_syn_inv = 0.005 * 200 = 1: \
             the synaptic current `i` keeps nothing from one step to the next"
        )),
        "{err}"
    );
    assert!(!stdout(&o).contains("warning"), "warnings belong on stderr");
}

#[test]
fn layer_names_that_cannot_be_file_names_fail_the_check() {
    let tmp = TempDir::new("names");
    let net = tmp.write(
        "names.ron",
        b"(version: 1, name: \"n\", steps: 2, input: [2], layers: [LIF(name: \"a/b\"), LIF(name: \"x\\u{0}\")])",
    );
    let o = snnc(&["check", &net]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("layers[0] `a/b` (LIF): name: must not contain `/`"), "{err}");
    assert!(err.contains("layers[1] `x\\0` (LIF): name: must not contain `\\0`"), "{err}");
}

#[test]
fn emit_clif_writes_the_files_of_the_longest_names() {
    // The longest layer name the check accepts, in a file with a long name:
    // every file name stays within 255 bytes.
    let tmp = TempDir::new("clif-names");
    let layer = "n".repeat(snnc_frontend::check::MAX_NAME_BYTES);
    let text = format!("(version: 1, name: \"n\", steps: 2, input: [2], layers: [LIF(name: \"{layer}\")])");
    let net = tmp.write(&format!("{}.ron", "f".repeat(240)), text.as_bytes());
    let out = tmp.0.join("out");
    let o = snnc(&["compile", &net, "--emit", "clif", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.is_empty());
    for name in &names {
        assert!(name.len() <= 255 && name.ends_with(".clif"), "{name}");
    }
    assert!(names.iter().any(|n| n.contains(&layer)), "{names:?}");
}

#[test]
fn non_utf8_files_name_the_byte_offset() {
    let tmp = TempDir::new("utf8");
    let bom = tmp.write(
        "bom.ron",
        [b"\xEF\xBB\xBF".as_slice(), b"(version: 1, name: \"b\", steps: 2, input: [2], layers: [LIF()])"].concat(),
    );
    let o = snnc(&["check", &bom]);
    assert_eq!(o.status.code(), Some(0), "a byte-order mark is accepted: {}", stderr(&o));
    let latin1 = tmp.write("latin1.ron", b"(version: 1, name: \"\xE4\", steps: 2, input: [2], layers: [LIF()])");
    let o = snnc(&["check", &latin1]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!("{latin1}:1:21: error: not valid UTF-8: byte 0xE4 at byte offset 20")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_parameter_limit_names_the_largest_layers() {
    let tmp = TempDir::new("params");
    let net = tmp.write(
        "huge.ron",
        b"(version: 1, name: \"huge\", steps: 1, input: [50000], layers: [Linear(name: \"fc\", out: 50000), LIF()])",
    );
    let o = snnc(&["check", &net]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("has 2500050000 parameter values, more than the 2147483648"), "{err}");
    assert!(err.contains("(the most: `fc` 2500050000)"), "{err}");
}

#[test]
fn check_handles_many_layers() {
    // 16,000 layers: the per-layer table is one pass over the parameters
    // and states (it was a scan of all of them per layer).
    let tmp = TempDir::new("many-layers");
    let layers: Vec<&str> = (0..16_000).map(|i| if i % 2 == 0 { "Linear(out: 4)" } else { "LIF()" }).collect();
    let text = format!("(version: 1, name: \"many\", steps: 2, input: [4], layers: [{}])", layers.join(", "));
    let net = tmp.write("many.ron", text.as_bytes());
    let o = snnc(&["check", &net]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("linear15998      Linear           [4]                        20            0"), "{text}");
    assert!(text.contains("lif15999         LIF              [4]                         0            8"), "{text}");
    assert!(text.contains("total: 160000 trainable parameters, 64000 state values per sample"), "{text}");
}

#[test]
fn layer_values_group_parameters_and_states_by_layer() {
    let net = snnc_frontend::load_network(Path::new("examples/tutorial.ron")).unwrap();
    let c = snnc::driver::compile(&net, "tutorial.ron", &Default::default()).unwrap();
    let values = snnc::driver::layer_values(&c.module);
    let v = |name: &str| values.get(name).copied().unwrap_or_default();
    // LIFRecurrent 784 -> 100: input and recurrent weights (and the fixed
    // mask without autapses); states v, i, z.
    assert_eq!((v("lif1").params, v("lif1").trainable, v("lif1").state), (98_400, 88_400, 300));
    assert_eq!((v("fc_out").trainable, v("fc_out").state), (1_000, 0));
    assert_eq!((v("encoder").params, v("encoder").state), (0, 784));
    let total: u64 = values.values().map(|v| v.trainable).sum();
    assert_eq!(total, c.module.parameter_count());
}
