//! `snnc train` and `snnc compile --backward` from the command line: what a
//! short run writes, and the errors (missing data set or an output folder
//! that cannot be written: exit 3; a network that cannot be trained, a bad
//! flag, a folder that holds another run or is locked, a resume with other
//! settings, a diverging run: exit 2).

use std::io::Write;
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
    let out = scratch("no-data");
    let o =
        snnc(&["train", "examples/tutorial.ron", "--data-dir", "/nonexistent/fmnist", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(text(&o).matches("apt-get install dataset-fashion-mnist").count(), 1, "{}", text(&o));
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
    // weights.safetensors holds the same weights: the same run, bar the timing.
    let st = out.join("weights.safetensors");
    let o2 = snnc(&["run", "examples/tutorial.ron", "--weights", st.to_str().unwrap()]);
    assert_eq!(o2.status.code(), Some(0), "{}", text(&o2));
    let body =
        |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&o), body(&o2));
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

/// A short training run into `out` with `extra` flags (by default 64
/// images, batches of 32, 64 test images; no progress).
fn short_run(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "examples/tutorial.ron", "--quiet", "--out", out.to_str().unwrap()];
    for (flag, value) in [("--limit", "64"), ("--batch", "32"), ("--test-limit", "64")] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend(extra);
    snnc(&args)
}

#[test]
fn an_output_folder_that_cannot_be_written_is_refused_before_training() {
    // Nothing can create files in sysfs, not even root.
    if !Path::new("/sys/kernel").is_dir() || std::fs::write("/sys/snnc-probe", "x").is_ok() {
        let _ = writeln!(std::io::stderr().lock(), "skipped: no read-only /sys to train into");
        return;
    }
    let o = snnc(&["train", "examples/tutorial.ron", "--out", "/sys"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("--out /sys: cannot write in this folder"), "{}", text(&o));
    assert!(o.stdout.is_empty(), "it started: {}", text(&o));
}

#[test]
fn a_locked_folder_is_refused_naming_the_holder() {
    let out = scratch("locked");
    std::fs::create_dir_all(&out).unwrap();
    let lock = snnc_runtime::checkpoint::RunLock::acquire(&out).unwrap();
    let o = short_run(&out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let want = format!("another training (process {}) is writing to this folder", std::process::id());
    assert!(text(&o).contains(&want), "{}", text(&o));
    assert!(o.stdout.is_empty(), "it started: {}", text(&o));
    drop(lock);
}

#[test]
fn a_folder_holding_a_run_needs_resume_or_force_and_resume_needs_the_same_settings() {
    if !have_data() {
        return;
    }
    let out = scratch("rerun");
    let o = short_run(&out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The header counts the test images evaluated.
    assert!(text(&o).contains("on 64 Fashion-MNIST images (64 test)"), "{}", text(&o));
    let ck = out.join("checkpoint.json");
    let first = std::fs::read(&ck).unwrap();

    let o = short_run(&out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let want = format!("--out {} holds a training run", out.display());
    assert!(text(&o).contains(&want) && text(&o).contains("--resume") && text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(std::fs::read(&ck).unwrap(), first, "the refused run changed the checkpoint");

    let o = short_run(&out, &["--resume", "--epochs", "2", "--batch", "16", "--lr", "0.01", "--limit", "48"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    for diff in [
        "--batch: 32 in the checkpoint, 16 now",
        "--lr: 0.002 in the checkpoint, 0.01 now",
        "--limit: 64 in the checkpoint, 48 now",
        "only --epochs may change",
    ] {
        assert!(text(&o).contains(diff), "{diff} missing: {}", text(&o));
    }
    let o = short_run(&out, &["--resume", "--optimizer", "sgd"]);
    assert!(text(&o).contains("--optimizer: adam in the checkpoint, sgd now"), "{}", text(&o));
    assert_eq!(std::fs::read(&ck).unwrap(), first, "a refused resume changed the checkpoint");

    let o = short_run(&out, &["--resume", "--epochs", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("resumed after epoch 1"), "{}", text(&o));
    let o = short_run(&out, &["--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "--force started a new run: {csv}");
    let o = short_run(&out, &["--force", "--resume"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn stale_temporary_files_of_killed_runs_are_removed() {
    if !have_data() {
        return;
    }
    let out = scratch("stale");
    std::fs::create_dir_all(&out).unwrap();
    // PIDs above the kernel's maximum (4194304) never live.
    let stale = out.join(".checkpoint.json.tmp-4999999-0");
    std::fs::write(&stale, "half a checkpoint").unwrap();
    let o = short_run(&out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!stale.exists(), "the stale temporary file is still there");
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    assert_eq!(names, ["batches.csv", "checkpoint.json", "metrics.csv", "weights.json", "weights.safetensors"]);
}

#[test]
fn a_diverging_run_stops_at_the_first_exploding_batch_and_keeps_the_checkpoint() {
    if !have_data() {
        return;
    }
    let out = scratch("diverge");
    let o = short_run(&out, &["--lr", "1e30"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("training diverged in epoch 1: the mean loss of batch 2 of 2 is "), "{t}");
    assert!(t.contains("lower --lr (this epoch's learning rate is 1e30); nothing of this run was saved"), "{t}");
    assert!(!out.join("checkpoint.json").exists());
    // Over a good run, the good checkpoint stays.
    let o = short_run(&out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let good = std::fs::read(out.join("checkpoint.json")).unwrap();
    let o = short_run(&out, &["--force", "--lr", "1e30"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(std::fs::read(out.join("checkpoint.json")).unwrap(), good);
}

#[test]
fn bad_limits_and_a_checkpoint_of_another_network_are_refused() {
    let out = scratch("limits");
    let o = short_run(&out, &["--test-limit", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--test-limit must be at least 1"), "{}", text(&o));
    // Found by the fuzz harness: the message names the flag.
    for (args, want) in [
        (&["--lr", "NaN"][..], "--lr must be a finite number >= 0, not NaN"),
        (&["--lr", "inf"][..], "--lr must be a finite number >= 0, not inf"),
        (&["--optimizer", "sgd", "--momentum", "NaN"][..], "--momentum must be a finite number >= 0, not NaN"),
    ] {
        let o = short_run(&out, args);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }
    if !have_data() {
        return;
    }
    let o = short_run(&out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The same name with a smaller hidden layer.
    let other = out.with_extension("ron");
    let net = std::fs::read_to_string("examples/tutorial.ron").unwrap().replace("hidden: 100", "hidden: 50");
    std::fs::write(&other, net).unwrap();
    let o = snnc(&[
        "train",
        other.to_str().unwrap(),
        "--limit",
        "64",
        "--batch",
        "32",
        "--test-limit",
        "64",
        "--quiet",
        "--resume",
        "--out",
        out.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&other);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let want =
        format!("--resume: the checkpoint {} is not of network `tutorial`", out.join("checkpoint.json").display());
    assert!(text(&o).contains(&want), "{}", text(&o));
    assert!(text(&o).contains("`lif1.input_weights` has shape [100, 784], the network's is [50, 784]"), "{}", text(&o));
}

/// Writes a tiny MNIST as torchvision downloads it (`ROOT/MNIST/raw`,
/// plain IDX files): 64 training and 16 test images, image `i` all `i`,
/// label `i % 10`.
fn fake_mnist(root: &Path) {
    let raw = root.join("MNIST/raw");
    std::fs::create_dir_all(&raw).unwrap();
    let idx = |dims: &[u32], data: &[u8]| {
        let mut b = vec![0, 0, 0x08, dims.len() as u8];
        dims.iter().for_each(|d| b.extend_from_slice(&d.to_be_bytes()));
        b.extend_from_slice(data);
        b
    };
    for (prefix, n) in [("train", 64u8), ("t10k", 16)] {
        let pixels: Vec<u8> = (0..n).flat_map(|i| std::iter::repeat_n(i * 3, 784)).collect();
        let labels: Vec<u8> = (0..n).map(|i| i % 10).collect();
        std::fs::write(raw.join(format!("{prefix}-images-idx3-ubyte")), idx(&[u32::from(n), 28, 28], &pixels)).unwrap();
        std::fs::write(raw.join(format!("{prefix}-labels-idx1-ubyte")), idx(&[u32::from(n)], &labels)).unwrap();
    }
}

#[test]
fn mnist_trains_from_a_torchvision_folder_and_a_resume_keeps_the_data_set() {
    let root = scratch("mnist-data");
    fake_mnist(&root);
    let out = scratch("mnist-run");
    let data = root.to_str().unwrap();
    let o = short_run(&out, &["--data", "mnist", "--data-dir", data]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("on 64 MNIST images (16 test)"), "{}", text(&o));
    // The data set is part of the run's configuration.
    let o = short_run(&out, &["--resume", "--epochs", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--data: mnist in the checkpoint, fashion-mnist now"), "{}", text(&o));
    // Without the files: where to get MNIST, exit 3.
    let o = short_run(&scratch("mnist-none"), &["--data", "mnist", "--data-dir", "/nonexistent/mnist"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("MNIST file not found; download MNIST"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&root);
}

/// Found by the fuzz harness: a network without weights names its file,
/// shows an odd network name escaped, and says what training needs.
#[test]
fn a_network_without_weights_names_its_file_and_the_fix() {
    let dir = scratch("no-weights");
    std::fs::create_dir_all(&dir).unwrap();
    let net = dir.join("net.ron");
    let ron = "(version: 1, name: \"a\\u{0}b\", steps: 5, input: [2], encoder: Poisson(f_max: 200.0, seed: 7), \
                layers: [LI(name: \"li\")], readout: Mean)";
    std::fs::write(&net, ron).unwrap();
    let out = dir.join("out");
    fake_mnist(&dir);
    let data = dir.to_str().unwrap();
    let o =
        snnc(&["train", net.to_str().unwrap(), "--out", out.to_str().unwrap(), "--data", "mnist", "--data-dir", data]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let want = format!("{}: network `a\\0b`: no trainable parameter reaches the loss; training needs", net.display());
    assert!(text(&o).contains(&want), "{}", text(&o));
}

/// A trainable neuron parameter is trained like a weight: `snnc train`
/// saves `lif1.tau_mem_inv` (0-d) and the per-neuron `lif1.v_th` in the
/// weights, the trainable one changed, and `snnc weights` lists both.
#[test]
fn a_trainable_tau_mem_inv_is_updated_and_saved() {
    let root = scratch("plif-data");
    fake_mnist(&root);
    let out = scratch("plif-run");
    std::fs::create_dir_all(&root).unwrap();
    let net = root.join("plif.ron");
    let v_th: Vec<String> = (0..10).map(|k| format!("{}", 0.1 + 0.01 * f64::from(k))).collect();
    std::fs::write(
        &net,
        format!(
            "(version: 1, name: \"plif\", steps: 4, input: [1, 28, 28], encoder: ConstantCurrent(),
              layers: [Flatten(), Linear(name: \"fc\", out: 10),
                       LIF(name: \"lif1\", p: (v_th: [{}], trainable: [tau_mem_inv])), LI(name: \"out\")],
              readout: MaxLogSoftmax)",
            v_th.join(", ")
        ),
    )
    .unwrap();
    let o = snnc(&["weights", net.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("lif1.tau_mem_inv") && text(&o).contains("lif1.v_th"), "{}", text(&o));
    let args = [
        "train",
        net.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--data",
        "mnist",
        "--data-dir",
        root.to_str().unwrap(),
        "--limit",
        "64",
        "--batch",
        "32",
        "--test-limit",
        "16",
        "--lr",
        "0.01",
    ];
    let o = snnc(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let weights: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("weights.json")).unwrap()).unwrap();
    let tau = &weights["lif1.tau_mem_inv"];
    assert_eq!(tau["shape"], serde_json::json!([]), "{tau}");
    let value = tau["data"][0].as_f64().unwrap();
    assert!(value.is_finite() && value != 100.0, "lif1.tau_mem_inv = {value}: not trained");
    // The per-neuron threshold is a parameter too, but not trained.
    let v_th: Vec<f64> = weights["lif1.v_th"]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let want: Vec<f64> = (0..10).map(|k| f64::from((0.1 + 0.01 * f64::from(k)) as f32)).collect();
    assert_eq!(v_th, want);
    let _ = std::fs::remove_dir_all(&root);
}

/// `--loss`: each loss trains a spiking network for an epoch on a tiny
/// MNIST and writes its metrics (the count losses' accuracy is the class
/// with the most spikes); `mse` is refused without float targets, the rates
/// belong to mse-count, and a resume with another loss is refused.
#[test]
fn each_loss_trains_for_an_epoch_and_mse_needs_float_targets() {
    let dir = scratch("losses");
    fake_mnist(&dir);
    let net = dir.join("spiking.ron");
    let ron = "(version: 1, name: \"spiking\", steps: 8, input: [1, 28, 28], encoder: ConstantCurrent(), \
               layers: [Flatten(), Linear(name: \"fc\", out: 10), LIF(name: \"out\", p: (v_th: 0.3))], \
               readout: Max)";
    std::fs::write(&net, ron).unwrap();
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec!["train", net.to_str().unwrap(), "--quiet", "--data", "mnist"];
        args.extend(["--data-dir", dir.to_str().unwrap(), "--batch", "16", "--out", out.to_str().unwrap()]);
        args.extend(extra);
        snnc(&args)
    };
    let losses: [&[&str]; 4] = [
        &[],
        &["--loss", "ce-count"],
        &["--loss", "mse-count"],
        &["--loss", "mse-count", "--correct-rate", "0.75", "--incorrect-rate", "0.25"],
    ];
    for (i, flags) in losses.iter().enumerate() {
        let out = dir.join(format!("run{i}"));
        let o = run(&out, flags);
        assert_eq!(o.status.code(), Some(0), "{flags:?}: {}", text(&o));
        let name = flags.get(1).unwrap_or(&"nll");
        assert!(text(&o).contains(&format!("adam lr 0.002, loss {name}\n")), "{}", text(&o));
        let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        let row: Vec<f64> = csv.lines().nth(1).unwrap().split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(row[0], 1.0, "{csv}");
        assert!(row[1].is_finite() && row[1] >= 0.0 && row[2].is_finite() && row[2] >= 0.0, "{flags:?}: {csv}");
        // 16 test images: the accuracy is a multiple of 1/16.
        assert!((0.0..=1.0).contains(&row[3]) && (row[3] * 16.0).fract() == 0.0, "{flags:?}: {csv}");
        let config = std::fs::read_to_string(out.join("checkpoint.json")).unwrap();
        assert!(config.contains(&format!("\"type\":\"{name}\"")), "{flags:?}: loss not recorded");
    }
    // mse-count with snnTorch's default rates: the labelled neuron should
    // spike at all 8 steps, the others never, so at initialisation the
    // loss is at most (8² / 10) / 8 = 0.8 per sample and class.
    let csv = std::fs::read_to_string(dir.join("run2/metrics.csv")).unwrap();
    let train_loss: f64 = csv.lines().nth(1).unwrap().split(',').nth(1).unwrap().parse().unwrap();
    assert!(train_loss <= 0.8 + 1e-6 || train_loss.is_nan(), "{csv}");
    // A resume with another loss, or other rates, is refused.
    let o = run(&dir.join("run2"), &["--loss", "ce-count", "--resume", "--epochs", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--loss: mse-count in the checkpoint, ce-count now"), "{}", text(&o));
    let o = run(&dir.join("run2"), &["--loss", "mse-count", "--correct-rate", "0.5", "--resume", "--epochs", "2"]);
    assert!(text(&o).contains("--correct-rate: 1.0 in the checkpoint, 0.5 now"), "{}", text(&o));
    // mse needs float targets; the rates are mse-count's; a bad rate and a
    // last layer that does not spike are refused with the fix.
    let o = run(&dir.join("mse"), &["--loss", "mse"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--loss mse: needs float targets, one per readout value (from `--data FILE.npz`"));
    let o = run(&dir.join("rates"), &["--loss", "ce-count", "--correct-rate", "0.5"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--correct-rate and --incorrect-rate are the targets of --loss mse-count"));
    let o = run(&dir.join("bad-rate"), &["--loss", "mse-count", "--incorrect-rate=-1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--incorrect-rate must be in [0, 1]"), "{}", text(&o));
    let o = snnc(&[
        "train",
        "examples/tutorial.ron",
        "--loss",
        "ce-count",
        "--data",
        "mnist",
        "--data-dir",
        dir.to_str().unwrap(),
        "--out",
        dir.join("li").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("examples/tutorial.ron: network `tutorial`: --loss ce-count counts the spikes"));
    let _ = std::fs::remove_dir_all(&dir);
}
