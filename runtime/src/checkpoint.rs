//! Training checkpoints and metrics files.
//!
//! A checkpoint folder holds:
//!
//! - `checkpoint.json`: everything needed to resume bit-identically (the
//!   epochs completed, the seed, the weights, the optimizer state, the
//!   metrics so far and the run's configuration), as one JSON object with
//!   `"format": "snnc-checkpoint/1"`;
//! - `weights.json`: the same weights in the weights-file format of
//!   [`crate::weights`], for `snnc run --weights`;
//! - `weights.safetensors`: the same weights again as a safetensors file
//!   ([`crate::safetensors_io`]), which PyTorch loads
//!   (`safetensors.torch.load_file`) and `snnc run --weights` reads too.
//!
//! Every file is written by [`crate::save::write_file`]: into a temporary
//! file in the same folder, flushed to disk, then renamed over the old one
//! (and the folder synced), so a crash leaves either the old file or the
//! new one. `save` writes `weights.json`, then `weights.safetensors`, and
//! `checkpoint.json` last, so `checkpoint.json` never refers to a state
//! newer than the weights files.
//!
//! Tensor values are written as JSON numbers that read back exactly (f32
//! values are written as the f64 they convert to). JSON has no NaN or
//! infinity: a tensor holding one is refused with [`TrainError::NonFinite`];
//! a non-finite metric is written as the string `"NaN"`, `"inf"` or `"-inf"`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::optim::{Optimizer, OptimizerState};
use crate::safetensors_io::write_weights_safetensors;
use crate::save::write_file;
use crate::tensor::Tensor;
use crate::train_error::TrainError;
use crate::weights::{Weights, write_weights_json};

/// The file name of the checkpoint in its folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// The file name of the weights file in a checkpoint folder.
pub const WEIGHTS_FILE: &str = "weights.json";
/// The file name of the safetensors weights file in a checkpoint folder.
pub const SAFETENSORS_FILE: &str = "weights.safetensors";
/// The value of the `format` field.
pub const FORMAT: &str = "snnc-checkpoint/1";

/// The metrics of one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochMetrics {
    /// The epoch's number, from 1.
    pub epoch: u32,
    /// The mean training loss over the epoch's batches.
    #[serde(with = "lenient_f64")]
    pub train_loss: f64,
    /// The loss on the test split.
    #[serde(with = "lenient_f64")]
    pub test_loss: f64,
    /// The fraction of test samples classified correctly, in `[0, 1]`.
    #[serde(with = "lenient_f64")]
    pub test_accuracy: f64,
    /// Wall-clock seconds the epoch took.
    #[serde(with = "lenient_f64")]
    pub seconds: f64,
}

/// Everything a training run needs to resume.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Epochs completed.
    pub epoch: u32,
    /// The run's seed (initial weights, shuffling).
    pub seed: u64,
    /// The weights after `epoch` epochs, by parameter name.
    pub weights: Weights,
    /// The optimizer's state after `epoch` epochs.
    pub optimizer: OptimizerState,
    /// One entry per epoch completed.
    pub metrics: Vec<EpochMetrics>,
    /// The run's configuration, free-form (network, batch size, ...).
    pub config: serde_json::Value,
}

/// The file form of a [`Checkpoint`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    format: String,
    epoch: u32,
    seed: u64,
    config: serde_json::Value,
    metrics: Vec<EpochMetrics>,
    optimizer: OptimizerState,
    weights: BTreeMap<String, Tensor>,
}

/// Writes `dir/weights.json`, `dir/weights.safetensors`, then
/// `dir/checkpoint.json`, each atomically
/// (see the module doc), creating `dir` if needed.
pub fn save(dir: &Path, checkpoint: &Checkpoint) -> Result<(), TrainError> {
    let checkpoint_path = dir.join(CHECKPOINT_FILE);
    let weights_path = dir.join(WEIGHTS_FILE);
    check_finite(&weights_path, checkpoint.weights.iter().map(|(k, t)| (k.clone(), t)))?;
    let buffers = checkpoint.optimizer.params.iter().flat_map(|(name, ps)| {
        [
            ("momentum_buffer", &ps.momentum_buffer),
            ("exp_avg", &ps.exp_avg),
            ("exp_avg_sq", &ps.exp_avg_sq),
            ("max_exp_avg_sq", &ps.max_exp_avg_sq),
        ]
        .into_iter()
        .filter_map(move |(b, t)| t.as_ref().map(|t| (format!("{name} ({b})"), t)))
    });
    check_finite(&checkpoint_path, buffers)?;
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
        path: dir.to_path_buf(),
        action: "create the folder",
        source,
    })?;

    let safetensors_path = dir.join(SAFETENSORS_FILE);
    let safetensors = write_weights_safetensors(&checkpoint.weights).map_err(|why| TrainError::Corrupt {
        path: safetensors_path.clone(),
        why: format!("cannot serialise: {why}"),
    })?;
    write_file(&weights_path, write_weights_json(&checkpoint.weights).as_bytes())?;
    write_file(&safetensors_path, &safetensors)?;
    let file = CheckpointFile {
        format: FORMAT.into(),
        epoch: checkpoint.epoch,
        seed: checkpoint.seed,
        config: checkpoint.config.clone(),
        metrics: checkpoint.metrics.clone(),
        optimizer: checkpoint.optimizer.clone(),
        weights: checkpoint.weights.clone(),
    };
    let text = serde_json::to_string(&file)
        .map_err(|e| TrainError::Corrupt { path: checkpoint_path.clone(), why: format!("cannot serialise: {e}") })?;
    Ok(write_file(&checkpoint_path, text.as_bytes())?)
}

fn check_finite<'a>(path: &Path, tensors: impl Iterator<Item = (String, &'a Tensor)>) -> Result<(), TrainError> {
    for (name, t) in tensors {
        if let Some(index) = t.data.iter().position(|x| !x.is_finite()) {
            return Err(TrainError::NonFinite { path: path.to_path_buf(), tensor: name, index, value: t.data[index] });
        }
    }
    Ok(())
}

/// The largest checkpoint read: 16 GiB. Parsed, JSON takes several times
/// its text, so a larger checkpoint would not fit in this machine's memory
/// anyway; the limit keeps a wrong file from being read until memory runs
/// out.
pub const MAX_CHECKPOINT_BYTES: u64 = 16 << 30;

/// Reads `dir/checkpoint.json`, checking everything a resumed run relies on:
/// the format, every tensor's data against its shape, and the optimizer
/// state against its optimizer. f32 tensors come back bit-identical.
pub fn load(dir: &Path) -> Result<Checkpoint, TrainError> {
    let path = dir.join(CHECKPOINT_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(TrainError::NoCheckpoint { path }),
        Err(source) => return Err(TrainError::Io { path, action: "read the checkpoint", source }),
    };
    let corrupt = |why: String| TrainError::Corrupt { path: path.clone(), why };
    // A checkpoint is a regular file snnc wrote; anything else (a device, a
    // pipe) or anything larger than any network's could be is refused
    // before it is read into memory.
    match file.metadata() {
        Ok(m) if !m.is_file() => return Err(corrupt("not a regular file".into())),
        Ok(m) if m.len() > MAX_CHECKPOINT_BYTES => {
            return Err(corrupt(format!(
                "{} bytes, more than the {MAX_CHECKPOINT_BYTES} a checkpoint may have",
                m.len()
            )));
        }
        _ => {}
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_CHECKPOINT_BYTES), &mut bytes)
        .map_err(|source| TrainError::Io { path: path.clone(), action: "read the checkpoint", source })?;
    let text = String::from_utf8(bytes)
        .map_err(|e| corrupt(format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(FORMAT) => {}
        Some(other) => return Err(corrupt(format!("format `{other}`; this snnc reads `{FORMAT}`"))),
        None => return Err(corrupt(format!("no `format` field; a checkpoint has \"format\": \"{FORMAT}\""))),
    }
    let file: CheckpointFile = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    let mut weights = Weights::new();
    for (name, t) in file.weights {
        t.check().map_err(|e| corrupt(format!("weight `{name}`: {e}")))?;
        let t = t.cast(t.dtype);
        weights.insert(name, t);
    }
    for (name, ps) in &file.optimizer.params {
        for t in [&ps.momentum_buffer, &ps.exp_avg, &ps.exp_avg_sq, &ps.max_exp_avg_sq].into_iter().flatten() {
            t.check().map_err(|e| corrupt(format!("optimizer state of `{name}`: {e}")))?;
        }
    }
    let optimizer = Optimizer::from_state(file.optimizer).map_err(|e| corrupt(e.to_string()))?.into_state();
    Ok(Checkpoint {
        epoch: file.epoch,
        seed: file.seed,
        weights,
        optimizer,
        metrics: file.metrics,
        config: file.config,
    })
}

/// Writes `epoch,train_loss,test_loss,test_accuracy,seconds` and one line per
/// epoch (accuracy as a fraction; numbers in Rust's shortest exact form),
/// atomically ([`write_file`]).
pub fn write_metrics_csv(path: &Path, metrics: &[EpochMetrics]) -> Result<(), TrainError> {
    let mut text = String::from("epoch,train_loss,test_loss,test_accuracy,seconds\n");
    for m in metrics {
        text.push_str(&format!("{},{},{},{},{}\n", m.epoch, m.train_loss, m.test_loss, m.test_accuracy, m.seconds));
    }
    Ok(write_file(path, text.as_bytes())?)
}

/// The lock file of a run folder (see [`RunLock`]).
pub const LOCK_FILE: &str = ".snnc-train.lock";

/// The lock of a run folder: one training at a time writes to it. An
/// advisory lock (`flock`) on `dir/.snnc-train.lock`, which holds the
/// holder's PID for the message of whoever is refused. The operating system
/// releases it when its process ends, however it ends, so a killed run
/// leaves no stale lock; dropping it removes the file.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    // Held open: closing it releases the lock (after `drop` removed the file).
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock of `dir` (which must exist), or fails with
    /// [`TrainError::Locked`] naming the process that holds it. Creating the
    /// lock file is also the check that `dir` can be written.
    pub fn acquire(dir: &Path) -> Result<RunLock, TrainError> {
        let path = dir.join(LOCK_FILE);
        let io = |action| {
            let path = path.clone();
            move |source| TrainError::Io { path, action, source }
        };
        // A holder removes the file before it unlocks, so the file locked may
        // no longer be the one at `path`; then try again on the new one.
        for _ in 0..16 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io("create the lock file"))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = std::io::Read::read_to_string(&mut file, &mut text);
                    return Err(TrainError::Locked { dir: dir.to_path_buf(), pid: text.trim().parse().ok() });
                }
                Err(std::fs::TryLockError::Error(source)) => return Err(io("lock the lock file")(source)),
            }
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0).map_err(io("write the lock file"))?;
            write!(file, "{}", std::process::id()).map_err(io("write the lock file"))?;
            return Ok(RunLock { path, _file: file });
        }
        Err(TrainError::Locked { dir: dir.to_path_buf(), pid: None })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked; the file closes (unlocks) after this.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the open `file` is the file at `path`.
#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::File, path: &Path) -> bool {
    path.exists()
}

/// f64 fields that may be non-finite: numbers, or `"NaN"`, `"inf"`, `"-inf"`.
mod lenient_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_finite() { s.serialize_f64(*x) } else { s.serialize_str(&x.to_string()) }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Number(x) => Ok(x),
            Repr::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                _ => Err(serde::de::Error::custom(format!(
                    "expected a number, \"NaN\", \"inf\" or \"-inf\", found \"{t}\""
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{Adam, Optimizer};
    use crate::tensor::ElemType;
    use crate::weights::read_weights_json;

    /// A folder for one test, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("snnc-checkpoint-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn files(&self) -> Vec<String> {
            let mut names: Vec<String> =
                std::fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Values whose decimal forms are awkward: f32 values that are not short
    /// decimals, subnormals, extremes, negative zero.
    fn awkward_f32() -> Vec<f64> {
        [0.1f32, -1.0 / 3.0, f32::MIN_POSITIVE, 1e-45, f32::MAX, -0.0, 16_777_217.0, std::f32::consts::PI]
            .iter()
            .map(|&x| f64::from(x))
            .collect()
    }

    fn sample() -> Checkpoint {
        let mut weights = Weights::new();
        weights.insert("fc1.weight".into(), Tensor::new(vec![2, 4], ElemType::F32, awkward_f32()).unwrap());
        let f64s = vec![0.1 + 0.2, 1e-300, f64::MIN_POSITIVE / 8.0, std::f64::consts::E, -0.0, 1.0 / 3.0];
        weights.insert("lif.v_th".into(), Tensor::new(vec![3, 2], ElemType::F64, f64s).unwrap());
        let mut opt = Optimizer::adam(Adam { amsgrad: true, ..Adam::default() }).unwrap();
        let mut params = weights.clone();
        let grads: Weights = weights
            .iter()
            .map(|(k, t)| {
                let data = t.data.iter().map(|x| x.clamp(-10.0, 10.0) - 0.5).collect();
                (k.clone(), Tensor::new(t.shape.clone(), t.dtype, data).unwrap())
            })
            .collect();
        opt.step(&mut params, &grads).unwrap();
        opt.step(&mut params, &grads).unwrap();
        let metrics = vec![
            EpochMetrics { epoch: 1, train_loss: 2.3125, test_loss: 1.9, test_accuracy: 0.4321, seconds: 12.5 },
            EpochMetrics { epoch: 2, train_loss: f64::NAN, test_loss: f64::INFINITY, test_accuracy: 0.1, seconds: 0.0 },
        ];
        let config = serde_json::json!({"net": "tutorial.ron", "batch": 256, "lr": 2e-3});
        Checkpoint { epoch: 2, seed: u64::MAX - 1, weights: params, optimizer: opt.into_state(), metrics, config }
    }

    /// Bit-level equality of two tensors.
    fn same_bits(a: &Tensor, b: &Tensor) -> bool {
        a.shape == b.shape
            && a.dtype == b.dtype
            && a.data.len() == b.data.len()
            && a.data.iter().zip(&b.data).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn round_trip_is_bit_identical() {
        let dir = TempDir::new("round-trip");
        let c = sample();
        save(&dir.0, &c).unwrap();
        let back = load(&dir.0).unwrap();
        assert_eq!((back.epoch, back.seed, &back.config), (c.epoch, c.seed, &c.config));
        assert_eq!(back.weights.keys().collect::<Vec<_>>(), c.weights.keys().collect::<Vec<_>>());
        for (k, t) in &c.weights {
            assert!(same_bits(t, &back.weights[k]), "{k}: {:?} vs {:?}", t.data, back.weights[k].data);
        }
        assert_eq!(back.optimizer.config, c.optimizer.config);
        for (k, ps) in &c.optimizer.params {
            let b = &back.optimizer.params[k];
            assert_eq!(b.step, ps.step);
            for (x, y) in
                [(&ps.exp_avg, &b.exp_avg), (&ps.exp_avg_sq, &b.exp_avg_sq), (&ps.max_exp_avg_sq, &b.max_exp_avg_sq)]
            {
                assert!(same_bits(x.as_ref().unwrap(), y.as_ref().unwrap()), "{k}");
            }
        }
        assert_eq!(back.metrics[0], c.metrics[0]);
        let m = back.metrics[1];
        assert!(m.train_loss.is_nan() && m.test_loss == f64::INFINITY && m.test_accuracy == 0.1);
        // Saving what was loaded writes the same bytes.
        let first = std::fs::read(dir.0.join(CHECKPOINT_FILE)).unwrap();
        save(&dir.0, &back).unwrap();
        assert_eq!(std::fs::read(dir.0.join(CHECKPOINT_FILE)).unwrap(), first);
    }

    #[test]
    fn the_weights_file_loads_as_weights() {
        let dir = TempDir::new("weights");
        let c = sample();
        save(&dir.0, &c).unwrap();
        let text = std::fs::read_to_string(dir.0.join(WEIGHTS_FILE)).unwrap();
        let w = read_weights_json(&text).unwrap();
        for (k, t) in &c.weights {
            assert!(same_bits(t, &w[k]), "{k}");
        }
        let bytes = std::fs::read(dir.0.join(SAFETENSORS_FILE)).unwrap();
        let w = crate::read_weights_safetensors(&bytes).unwrap();
        assert_eq!(w.keys().collect::<Vec<_>>(), c.weights.keys().collect::<Vec<_>>());
        for (k, t) in &c.weights {
            assert!(same_bits(t, &w[k]), "{k}");
        }
    }

    #[test]
    fn saving_leaves_no_temporary_files() {
        let dir = TempDir::new("atomic");
        let c = sample();
        save(&dir.0, &c).unwrap();
        save(&dir.0, &c).unwrap();
        write_metrics_csv(&dir.0.join("metrics.csv"), &c.metrics).unwrap();
        assert_eq!(dir.files(), ["checkpoint.json", "metrics.csv", "weights.json", "weights.safetensors"]);
        // A folder that does not exist yet is created.
        let nested = dir.0.join("a/b");
        save(&nested, &c).unwrap();
        assert!(nested.join(CHECKPOINT_FILE).is_file());
        // A failed write leaves no temporary file and keeps what was there.
        let target = dir.0.join("blocked");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), "keep").unwrap();
        let e = write_metrics_csv(&target, &c.metrics).unwrap_err().to_string();
        assert!(e.contains("blocked: is a folder"), "{e}");
        assert_eq!(std::fs::read_to_string(target.join("x")).unwrap(), "keep");
        assert_eq!(
            dir.files(),
            ["a", "blocked", "checkpoint.json", "metrics.csv", "weights.json", "weights.safetensors"]
        );
    }

    #[test]
    fn non_finite_tensors_are_refused_before_writing() {
        let dir = TempDir::new("non-finite");
        let mut c = sample();
        c.weights.get_mut("lif.v_th").unwrap().data[4] = f64::NAN;
        let e = save(&dir.0, &c).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "weights.json: cannot save tensor `lif.v_th`: it holds NaN at flat index 4, which JSON cannot store"
            ),
            "{e}"
        );
        let mut c = sample();
        let ps = c.optimizer.params.get_mut("fc1.weight").unwrap();
        ps.exp_avg_sq.as_mut().unwrap().data[1] = f64::INFINITY;
        let e = save(&dir.0, &c).unwrap_err().to_string();
        assert!(e.ends_with("checkpoint.json: cannot save tensor `fc1.weight (exp_avg_sq)`: it holds inf at flat index 1, which JSON cannot store"), "{e}");
        assert!(dir.files().is_empty());
    }

    #[test]
    fn missing_and_corrupt_checkpoints_are_reported() {
        let dir = TempDir::new("corrupt");
        let path = dir.0.join(CHECKPOINT_FILE).display().to_string();
        let e = load(&dir.0).unwrap_err();
        assert!(matches!(e, TrainError::NoCheckpoint { .. }));
        assert_eq!(
            e.to_string(),
            format!("no checkpoint at {path}: there is nothing to resume; train once without resuming to create it")
        );

        save(&dir.0, &sample()).unwrap();
        let good = std::fs::read_to_string(dir.0.join(CHECKPOINT_FILE)).unwrap();
        let cases = [
            (good[..good.len() / 2].to_string(), "not JSON: EOF while parsing"),
            ("{}".to_string(), "no `format` field"),
            (
                good.replace(FORMAT, "snnc-checkpoint/9"),
                "format `snnc-checkpoint/9`; this snnc reads `snnc-checkpoint/1`",
            ),
            (good.replace("\"epoch\":2,", ""), "missing field `epoch`"),
            (good.replace("\"shape\":[2,4]", "\"shape\":[2,5]"), "weight `fc1.weight`: tensor data has 8 elements"),
            (good.replacen("\"shape\":[3,2]", "\"shape\":[7]", 1), "optimizer state of `lif.v_th`: tensor data has 6"),
            (good.replace("\"amsgrad\":true", "\"amsgrad\":false"), "max_exp_avg_sq does not belong to Adam"),
        ];
        for (text, want) in cases {
            std::fs::write(dir.0.join(CHECKPOINT_FILE), &text).unwrap();
            let e = load(&dir.0).unwrap_err();
            assert!(matches!(e, TrainError::Corrupt { .. }), "{e:?}");
            let e = e.to_string();
            assert!(e.starts_with(&format!("{path}: corrupt checkpoint: ")), "{e}");
            assert!(e.contains(want), "{e} does not contain {want}");
        }
        // Not text, and not a file: corrupt (the user's to fix), not an
        // error of the machine.
        std::fs::write(dir.0.join(CHECKPOINT_FILE), b"{\"format\": \"\xff\"}").unwrap();
        let e = load(&dir.0).unwrap_err();
        assert!(matches!(e, TrainError::Corrupt { .. }) && e.to_string().ends_with("not UTF-8 text (byte 12)"), "{e}");
        std::fs::remove_file(dir.0.join(CHECKPOINT_FILE)).unwrap();
        std::fs::create_dir(dir.0.join(CHECKPOINT_FILE)).unwrap();
        let e = load(&dir.0).unwrap_err();
        assert!(matches!(e, TrainError::Corrupt { .. }) && e.to_string().ends_with("not a regular file"), "{e}");
    }

    #[test]
    fn metrics_csv() {
        let dir = TempDir::new("csv");
        let path = dir.0.join("metrics.csv");
        write_metrics_csv(&path, &sample().metrics).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "epoch,train_loss,test_loss,test_accuracy,seconds\n1,2.3125,1.9,0.4321,12.5\n2,NaN,inf,0.1,0\n"
        );
        write_metrics_csv(&path, &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "epoch,train_loss,test_loss,test_accuracy,seconds\n");
        let e = write_metrics_csv(&dir.0.join("no/such/dir/m.csv"), &[]).unwrap_err();
        assert!(!e.is_environment(), "{e}");
        assert!(e.to_string().contains("no/such/dir does not exist"), "{e}");
    }

    #[test]
    fn one_run_at_a_time_holds_a_folder() {
        let dir = TempDir::new("lock");
        let lock = RunLock::acquire(&dir.0).unwrap();
        let pid = std::process::id();
        assert_eq!(std::fs::read_to_string(dir.0.join(LOCK_FILE)).unwrap(), pid.to_string());
        let e = RunLock::acquire(&dir.0).unwrap_err();
        assert!(matches!(e, TrainError::Locked { pid: Some(p), .. } if p == pid), "{e:?}");
        assert!(e.to_string().contains(&format!("another training (process {pid}) is writing to this folder")), "{e}");
        drop(lock);
        assert!(dir.files().is_empty());
        let again = RunLock::acquire(&dir.0).unwrap();
        drop(again);
        // A folder that does not exist cannot be locked.
        let e = RunLock::acquire(&dir.0.join("missing")).unwrap_err();
        assert!(e.to_string().contains("cannot create the lock file"), "{e}");
    }
}
