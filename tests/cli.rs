//! The `snnc` binary: commands, summaries, exit codes and error messages,
//! tested as rendered text. Temporary files go under `target/`.

use std::path::{Path, PathBuf};

mod support;
use support::{snnc, stderr, stdout};

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
        eprintln!("skipped: this machine has a GPU");
        return;
    }
    let o = snnc(&["run", "examples/lif.ron", "--target", "cuda"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("no usable GPU"), "{}", stderr(&o));
}
