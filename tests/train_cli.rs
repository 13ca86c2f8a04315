//! `snnc train` and `snnc compile --backward` from the command line: what a
//! short run writes, and the errors (missing data set: exit 3; a network
//! that cannot be trained or a bad flag: exit 2).

use std::path::{Path, PathBuf};
use std::process::Output;

mod support;
use support::snnc;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("train_cli").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn have_data() -> bool {
    let ok = Path::new(snnc::train::FASHION_MNIST_DIR).join("t10k-labels-idx1-ubyte.gz").is_file();
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI must install dataset-fashion-mnist (scripts/test.sh does)");
        eprintln!("skipped: Fashion-MNIST is not installed (sudo apt-get install dataset-fashion-mnist)");
    }
    ok
}

#[test]
fn a_missing_data_set_is_an_environment_error_with_the_install_command() {
    let o = snnc(&["train", "examples/tutorial.ron", "--data-dir", "/nonexistent/fmnist"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("apt-get install dataset-fashion-mnist"), "{}", text(&o));
}

#[test]
fn a_network_without_an_encoder_or_class_scores_cannot_be_trained() {
    if !have_data() {
        return;
    }
    let o = snnc(&["train", "examples/lif.ron", "--limit", "10"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("encoder"), "{}", text(&o));
    let out = scratch("bad-flags");
    let o = snnc(&["train", "examples/tutorial.ron", "--epochs", "0", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = snnc(&["train", "examples/tutorial.ron", "--resume", "--limit", "10", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--resume"), "{}", text(&o));
}

#[test]
fn a_short_run_writes_metrics_a_checkpoint_and_weights_that_snnc_run_loads() {
    if !have_data() {
        return;
    }
    let out = scratch("short");
    let dir = out.to_str().unwrap();
    let o = snnc(&[
        "train",
        "examples/tutorial.ron",
        "--limit",
        "512",
        "--test-limit",
        "500",
        "--batch",
        "64",
        "--out",
        dir,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("samples/s") && t.contains("test accuracy"), "{t}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics.csv");
    assert!(csv.starts_with("epoch,train_loss,test_loss,test_accuracy,seconds\n1,"), "{csv}");
    assert!(out.join("checkpoint.json").is_file());
    let weights = out.join("weights.json");
    let o = snnc(&["run", "examples/tutorial.ron", "--weights", weights.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn compile_backward_prints_the_reverse_loops_and_gradient_outputs() {
    let o = snnc(&["compile", "examples/tutorial.ron", "--backward"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("step t in 0..T unroll 4 reverse {"), "{t}");
    for g in ["grad.lif1.input_weights", "grad.lif1.recurrent_weights", "grad.fc_out.weight"] {
        assert!(t.contains(&format!("output {g} = %")), "{g} missing:\n{t}");
    }
    assert!(t.contains("spike_matmul_grad_weight"), "{t}");
}
