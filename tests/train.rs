//! Training on Fashion-MNIST (a few thousand samples, CPU backend): the loss
//! falls, accuracy ends well above chance, runs are bit-identical, and a run
//! resumed from its checkpoint ends where an uninterrupted one does.
//!
//! Needs Debian's `dataset-fashion-mnist` (scripts/test.sh installs it);
//! without it the tests print why and pass, except under CI.

use std::path::{Path, PathBuf};

use snnc::driver::Target;
use snnc::train::{TrainOptions, TrainProgram};
use snnc_runtime::{Adam, Dataset, ImageSet, Loss, OptimizerConfig};

fn data() -> Option<Dataset> {
    match snnc::train::load_data(ImageSet::FashionMnist, Path::new(snnc::train::FASHION_MNIST_DIR)) {
        Ok(d) => Some(d.limit(2048)),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: Fashion-MNIST is not installed ({e})");
            None
        }
        Err(e) => panic!("CI must install dataset-fashion-mnist: {e}"),
    }
}

fn program() -> TrainProgram {
    let net = snnc::driver::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/tutorial.ron"))
        .expect("example loads");
    TrainProgram::new(&net, Target::Cpu, Loss::Nll).expect("compiles for training")
}

fn options(out: PathBuf, epochs: u32, resume: bool) -> TrainOptions {
    TrainOptions {
        epochs,
        batch: 128,
        optimizer: OptimizerConfig::Adam(Adam { lr: 0.002, ..Default::default() }),
        // Halved after every epoch: resuming must pick up the schedule too.
        lr_decay: 0.5,
        seed: 7,
        target: Target::Cpu,
        out,
        resume,
        force: false,
        limit: None,
        test_limit: Some(1000),
        data: snnc::train::DataSource::Images {
            set: ImageSet::FashionMnist,
            dir: PathBuf::from(snnc::train::FASHION_MNIST_DIR),
        },
        progress: false,
        loss: Loss::Nll,
    }
}

/// A run folder for test `name`, in cargo's folder for the test binaries'
/// temporary files (inside `target/`, cleared by the next run of the same
/// test): not in the system's temporary folder, where every run used to
/// leave 7 MB per folder behind.
fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("snnc-train-test-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn bits(w: &snnc_runtime::Weights) -> Vec<(String, Vec<u64>)> {
    w.iter().map(|(k, t)| (k.clone(), t.data.iter().map(|x| x.to_bits()).collect())).collect()
}

#[test]
fn training_learns_and_is_deterministic() {
    let Some(data) = data() else { return };
    let program = program();
    let a = snnc::train::train(&program, &data, &options(tmp("a"), 2, false)).expect("trains");
    let (first, last) = (&a.metrics[0], &a.metrics[1]);
    assert!(last.train_loss < first.train_loss, "loss did not fall: {:?}", a.metrics);
    assert!(last.test_loss < 2.0, "test loss {} after two epochs", last.test_loss);
    assert!(last.test_accuracy > 0.45, "test accuracy {} (chance is 0.1)", last.test_accuracy);
    let csv = std::fs::read_to_string(a.out.join("metrics.csv")).expect("metrics.csv");
    assert!(csv.starts_with("epoch,train_loss,test_loss,test_accuracy,seconds\n"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // The weights file loads as `snnc run --weights` reads it.
    let text = std::fs::read_to_string(a.out.join("weights.json")).expect("weights.json");
    let w = snnc_runtime::read_weights_json(&text).expect("weights.json reads");
    assert_eq!(bits(&w), bits(&a.weights));

    let b = snnc::train::train(&program, &data, &options(tmp("b"), 2, false)).expect("trains");
    assert_eq!(bits(&a.weights), bits(&b.weights), "the same seed gave other weights");
}

#[test]
fn resuming_after_an_epoch_gives_the_uninterrupted_weights() {
    let Some(data) = data() else { return };
    let program = program();
    let whole = snnc::train::train(&program, &data, &options(tmp("whole"), 2, false)).expect("trains");
    let dir = tmp("resumed");
    snnc::train::train(&program, &data, &options(dir.clone(), 1, false)).expect("first epoch");
    let resumed = snnc::train::train(&program, &data, &options(dir.clone(), 2, true)).expect("resumes");
    assert_eq!(resumed.resumed_from, Some(1));
    assert_eq!(resumed.metrics.len(), 2);
    assert_eq!(bits(&whole.weights), bits(&resumed.weights), "resuming changed the result");
    // A resume with nothing to resume from is a clear error.
    let err = snnc::train::train(&program, &data, &options(tmp("none"), 1, true)).expect_err("no checkpoint");
    assert_eq!(err.exit_code(), 2, "{err}");
}

#[test]
fn the_learning_rate_decays_per_epoch_and_bad_factors_are_refused() {
    let opts = options(tmp("unused"), 3, false);
    let rates: Vec<f64> = (1..=3).map(|e| snnc::train::epoch_lr(&opts, e)).collect();
    assert_eq!(rates, [0.002, 0.001, 0.0005]);
    let Some(data) = data() else { return };
    let program = program();
    for bad in [0.0, -0.5, 1.5, f64::NAN] {
        let opts = TrainOptions { lr_decay: bad, ..options(tmp("bad-decay"), 1, false) };
        let err = snnc::train::train(&program, &data, &opts).expect_err("bad --lr-decay");
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains("--lr-decay"), "{err}");
    }
}

#[test]
fn a_folder_is_trained_into_by_one_run_at_a_time() {
    let dir = tmp("locked");
    let opts = options(dir.clone(), 1, false);
    let held = snnc::train::RunFolder::open("tutorial", &opts).expect("opens");
    let err = snnc::train::RunFolder::open("tutorial", &opts).expect_err("locked");
    assert_eq!(err.exit_code(), 2, "{err}");
    let want = format!("another training (process {}) is writing to this folder", std::process::id());
    assert!(err.to_string().contains(&want), "{err}");
    drop(held);
    drop(snnc::train::RunFolder::open("tutorial", &opts).expect("unlocked when dropped"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_resume_must_have_the_recorded_settings_but_epochs() {
    use snnc::train::{config_differences, run_config};
    let a = options(tmp("unused"), 1, false);
    let same = TrainOptions { epochs: 9, progress: true, ..a.clone() };
    assert!(config_differences(&run_config("tutorial", &a), &run_config("tutorial", &same)).is_empty());
    let b = TrainOptions {
        batch: 64,
        optimizer: OptimizerConfig::Adam(Adam { lr: 0.01, eps: 1e-6, ..Default::default() }),
        seed: 8,
        limit: Some(100),
        ..a.clone()
    };
    assert_eq!(
        config_differences(&run_config("tutorial", &a), &run_config("convnet", &b)),
        [
            "--batch: 128 in the checkpoint, 64 now",
            "--limit: none in the checkpoint, 100 now",
            "the network: tutorial in the checkpoint, convnet now",
            "the optimizer's `eps`: 1e-8 in the checkpoint, 1e-6 now",
            "--lr: 0.002 in the checkpoint, 0.01 now",
            "--seed: 7 in the checkpoint, 8 now",
        ]
    );
    let sgd = TrainOptions {
        optimizer: OptimizerConfig::Sgd(snnc_runtime::Sgd { lr: 0.002, ..Default::default() }),
        ..a.clone()
    };
    assert_eq!(
        config_differences(&run_config("tutorial", &a), &run_config("tutorial", &sgd)),
        ["--optimizer: adam in the checkpoint, sgd now"]
    );
    // A setting an older checkpoint did not record is not compared.
    let mut old = run_config("tutorial", &a);
    old.as_object_mut().unwrap().remove("test_limit");
    let c = TrainOptions { test_limit: None, ..a.clone() };
    assert!(config_differences(&old, &run_config("tutorial", &c)).is_empty());
    // The loss and its rates are recorded; a checkpoint from before --loss
    // was trained with nll.
    let ce = TrainOptions { loss: Loss::CeCount, ..a.clone() };
    let want = ["--loss: nll in the checkpoint, ce-count now"];
    assert_eq!(config_differences(&run_config("tutorial", &a), &run_config("tutorial", &ce)), want);
    old.as_object_mut().unwrap().remove("loss");
    assert_eq!(config_differences(&old, &run_config("tutorial", &ce)), want);
    assert!(config_differences(&old, &run_config("tutorial", &a)).is_empty());
    let counts = |correct_rate, incorrect_rate| TrainOptions {
        loss: Loss::MseCount { correct_rate, incorrect_rate },
        ..a.clone()
    };
    assert_eq!(
        config_differences(&run_config("tutorial", &counts(1.0, 0.0)), &run_config("tutorial", &counts(0.8, 0.0))),
        ["--correct-rate: 1.0 in the checkpoint, 0.8 now"]
    );
    assert_eq!(
        config_differences(&run_config("tutorial", &counts(1.0, 0.2)), &run_config("tutorial", &ce)),
        ["--loss: mse-count in the checkpoint, ce-count now"]
    );
}

/// A network with `Dropout`: training draws a new mask per batch from the
/// run's seed (so a resumed run still matches an uninterrupted one), and
/// evaluation runs without it.
#[test]
fn dropout_trains_deterministically_and_resumes() {
    let Some(data) = data() else { return };
    let data = data.limit(512);
    let text = r#"(version: 1, name: "drop", steps: 16, input: [1, 28, 28], encoder: ConstantCurrent(),
        layers: [Flatten(), LIFRecurrent(name: "lif1", hidden: 32, p: (v_th: 0.5)), Dropout(name: "drop", p: 0.3),
                 Linear(name: "out", out: 10, bias: false), LI()], readout: MaxLogSoftmax)"#;
    let net = snnc_frontend::parse_network(text, "drop.ron").expect("parses");
    let program = TrainProgram::new(&net, Target::Cpu, Loss::Nll).expect("compiles for training");
    let whole = snnc::train::train(&program, &data, &options(tmp("drop-whole"), 2, false)).expect("trains");
    assert!(whole.metrics.iter().all(|m| m.train_loss.is_finite()), "{:?}", whole.metrics);
    let dir = tmp("drop-resumed");
    snnc::train::train(&program, &data, &options(dir.clone(), 1, false)).expect("first epoch");
    let resumed = snnc::train::train(&program, &data, &options(dir, 2, true)).expect("resumes");
    assert_eq!(bits(&whole.weights), bits(&resumed.weights), "resuming changed the dropout run");
}

#[test]
fn dropout_masks_are_zero_or_the_scale_at_rate_p() {
    let m = snnc::train::dropout_mask(42, 0.3, 4, 8, &[100]);
    assert_eq!(m.shape, vec![4, 8, 100]);
    let scale = f64::from((1.0f64 / 0.7) as f32);
    assert!(m.data.iter().all(|&x| x == 0.0 || x == scale));
    let dropped = m.data.iter().filter(|&&x| x == 0.0).count() as f64 / m.data.len() as f64;
    assert!((dropped - 0.3).abs() < 0.03, "dropped {dropped}");
    assert_eq!(m.data, snnc::train::dropout_mask(42, 0.3, 4, 8, &[100]).data);
    assert_ne!(m.data, snnc::train::dropout_mask(43, 0.3, 4, 8, &[100]).data);
    // Every step draws its own mask.
    assert_ne!(m.data[..800], m.data[800..1600]);
}

/// A network with BatchNorm (per step, and time-batched): training updates the running statistics
/// (kept in the weights, so checkpoints and weights files hold them), and a
/// run resumed from its checkpoint ends bit-identical to an uninterrupted
/// one, running statistics included.
#[test]
fn batchnorm_running_statistics_are_trained_saved_and_resumed() {
    let Some(data) = data() else { return };
    let data = data.limit(512);
    let text = r#"(version: 1, name: "bn", steps: 8, input: [1, 28, 28], encoder: ConstantCurrent(),
        layers: [Conv2d(name: "conv", out_channels: 4, kernel_size: 5, stride: 2, padding: 1, bias: false),
                 BatchNorm2d(name: "bn2"), LIF(name: "lif0", p: (v_th: 0.5)), Flatten(),
                 Linear(name: "fc", out: 32, bias: false), BatchNorm1d(name: "bn1", variant: time_batched),
                 LIF(name: "lif1"),
                 Linear(name: "out", out: 10, bias: false), LI()], readout: MaxLogSoftmax)"#;
    let net = snnc_frontend::parse_network(text, "bn.ron").expect("parses");
    let program = TrainProgram::new(&net, Target::Cpu, Loss::Nll).expect("compiles for training");
    let whole = snnc::train::train(&program, &data, &options(tmp("bn-whole"), 2, false)).expect("trains");
    assert!(whole.metrics.iter().all(|m| m.train_loss.is_finite()), "{:?}", whole.metrics);
    for name in ["bn1", "bn2"] {
        let rm = &whole.weights[&format!("{name}.running_mean")];
        assert!(rm.data.iter().any(|&x| x != 0.0), "{name}.running_mean was not updated: {:?}", rm.data);
        let rv = &whole.weights[&format!("{name}.running_var")];
        assert!(rv.data.iter().any(|&x| x != 1.0), "{name}.running_var was not updated");
        // 512 samples in batches of 128, 2 epochs: per step 4 * 8 * 2 updates,
        // time-batched (tdBN, bn1) one per batch, 4 * 2.
        let updates = if name == "bn1" { 8.0 } else { 64.0 };
        assert_eq!(whole.weights[&format!("{name}.num_batches_tracked")].data, vec![updates]);
    }
    let dir = tmp("bn-resumed");
    snnc::train::train(&program, &data, &options(dir.clone(), 1, false)).expect("first epoch");
    let resumed = snnc::train::train(&program, &data, &options(dir, 2, true)).expect("resumes");
    assert_eq!(bits(&whole.weights), bits(&resumed.weights), "resuming changed the BatchNorm run");
}
