//! Training: a network compiled with its derived backward pass, and the
//! `snnc train` loop on Fashion-MNIST or MNIST.
//!
//! [`TrainProgram`] compiles two executables from one network: the
//! training module (forward + backward from the `autodiff` pass, seeded by
//! the gradient of the loss with respect to the log-probabilities) and the
//! forward module for evaluation. The loss is the negative log-likelihood
//! of the log-probabilities: the readout's own for `MaxLogSoftmax` (the
//! Norse tutorial's decoder), else `log_softmax` of the readout's scores
//! (cross-entropy on a max, mean, last-step or spike-count readout), added
//! to the module as output `log_probs`.
//!
//! [`train`] prepares the output folder ([`RunFolder`]: writable, locked,
//! not holding a run the flags do not mention, a resumed run's settings
//! equal to the checkpoint's), runs epochs of seeded mini-batches with Adam
//! (or SGD), stops at the first diverging batch ([`EXPLODING_LOSS`]),
//! evaluates on the test split after each epoch, writes `metrics.csv` and a
//! checkpoint per epoch (atomically), and resumes from the last one.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use snnc_frontend::{LowerOptions, Network, Readout};
use snnc_ir::{Op, Output, Region};
use snnc_runtime::checkpoint::{self, Checkpoint};
use snnc_runtime::save::is_users_fault;
use snnc_runtime::{
    EpochMetrics, ImageData, ImageSet, Optimizer, OptimizerConfig, Split, Tensor, TrainError, Weights, shuffle_order,
};

use crate::driver::{self, Error, ModuleRunner as Runner, Target};

/// The output holding the log-probabilities the loss reads.
pub const LOG_PROBS: &str = "log_probs";

/// What one training step returns.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// `[B, classes]` log-probabilities.
    pub log_probs: Tensor,
    /// The gradient of every trainable parameter that has one, by name.
    pub grads: BTreeMap<String, Tensor>,
    /// Each BatchNorm layer's per-step batch statistics `(mean, biased
    /// variance)`, `[T, C]`, for [`TrainProgram::update_running_stats`].
    pub batch_stats: BTreeMap<String, (Tensor, Tensor)>,
}

/// A network compiled for training and evaluation.
#[derive(Debug)]
pub struct TrainProgram {
    pub network: Network,
    pub target: Target,
    train: Runner,
    eval: Runner,
    /// The input that seeds the backward pass.
    seed_input: String,
    /// `(parameter, gradient output)` pairs.
    grads: Vec<(String, String)>,
    /// Trainable parameters without a gradient (no path to the loss).
    pub no_gradient: Vec<String>,
    /// The dropout masks the training module reads: input name, `p` and
    /// the per-step shape after the batch.
    dropouts: Vec<(String, f64, Vec<usize>)>,
    /// The BatchNorm layers: name, momentum, and the values per channel of
    /// one sample (`H·W`, or 1 for `BatchNorm1d`).
    batch_norms: Vec<(String, f64, usize)>,
    /// Bytes per sample the backward pass stores (see `GradReport`).
    pub stored_bytes_per_sample: u64,
    /// The classes of the readout.
    pub classes: usize,
    /// The input's per-sample shape.
    pub input_shape: Vec<usize>,
    /// The initial weights (the network's default initialisation).
    pub initial_weights: Weights,
    /// Milliseconds spent compiling both modules.
    pub compile_ms: f64,
}

/// Adds the `log_probs` output: the readout itself for `MaxLogSoftmax`,
/// else `log_softmax` of it. Checks the readout gives `[B, classes]`.
fn add_log_probs(net: &Network, module: &mut snnc_ir::Module) -> Result<usize, Error> {
    let readout = module.outputs.iter().find(|o| o.name == "readout").map(|o| o.value).ok_or_else(|| {
        Error::User(format!(
            "network `{}` has readout `Sequence`, which gives no class scores: use `readout: MaxLogSoftmax` \
             (the Norse tutorial's decoder), Max, Mean, LastStep or SpikeCount to train a classifier",
            net.name
        ))
    })?;
    let ty = module.nodes[readout].ty.clone();
    let classes = match ty.shape.0[..] {
        [snnc_ir::Dim::Batch, snnc_ir::Dim::Fixed(c)] if !ty.seq => c as usize,
        _ => {
            return Err(Error::User(format!(
                "network `{}`: the readout is {ty}, but training needs one score per class, [B, classes]",
                net.name
            )));
        }
    };
    let value = if net.readout == Readout::MaxLogSoftmax {
        readout
    } else {
        let arg = if ty.dtype.is_float() {
            readout
        } else {
            let cast = Op::Cast { arg: readout, dtype: module.float };
            push_seq_node(module, cast)?
        };
        push_seq_node(module, Op::LogSoftmax { arg })?
    };
    module.outputs.push(Output { name: LOG_PROBS.into(), value });
    Ok(classes)
}

fn push_seq_node(module: &mut snnc_ir::Module, op: Op) -> Result<snnc_ir::Handle<snnc_ir::Node>, Error> {
    let ty = snnc_ir::typing::result_type(module, &op).map_err(Error::Internal)?;
    let h = module.nodes.append(snnc_ir::Node { op, ty, name: None });
    match module.body.last_mut() {
        Some(r) if !r.is_step() => r.nodes.push(h),
        _ => module.body.push(Region::seq(vec![h])),
    }
    Ok(h)
}

impl TrainProgram {
    /// Compiles `net` for training on `target`.
    pub fn new(net: &Network, target: Target) -> Result<TrainProgram, Error> {
        target.ensure_available()?;
        // A plastic weight is learnt by its local rule during every run;
        // gradient descent on it too would fight the rule.
        if let Some((i, layer)) = net.layers.iter().enumerate().find(|(_, l)| {
            matches!(
                l,
                snnc_frontend::Layer::Linear { plasticity: Some(_), .. }
                    | snnc_frontend::Layer::Conv2d { plasticity: Some(_), .. }
            )
        }) {
            return Err(Error::User(format!(
                "layer `{}` ({}) has `plasticity`: its weight `{}.weight` is learnt by its STDP rule while the \
                 network runs, not by gradient descent; `snnc train` does not train plastic networks (run it with \
                 `snnc run`, or remove `plasticity` to train the weight)",
                layer.name(i),
                layer.kind(),
                layer.name(i)
            )));
        }
        let start = Instant::now();
        let compiled = driver::compile(net, &net.name, &LowerOptions::default())?;
        let input = compiled.module.inputs.iter().next().map(|(_, i)| i.clone());
        let input_shape: Vec<usize> = match &input {
            Some(i) if !i.ty.seq && compiled.module.inputs.len() == 1 => {
                i.ty.shape
                    .0
                    .iter()
                    .skip(1)
                    .map(|d| match d {
                        snnc_ir::Dim::Fixed(v) => *v as usize,
                        snnc_ir::Dim::Batch => 1,
                    })
                    .collect()
            }
            _ => {
                return Err(Error::User(format!(
                    "network `{}` reads a per-step input; `snnc train` feeds images, so the network needs an \
                     encoder (e.g. `encoder: ConstantCurrent()` with `input: [1, 28, 28]`)",
                    net.name
                )));
            }
        };
        let pass_opts = driver::pass_options(&compiled, None)?;

        // Dropout is the identity except in the training module, where it
        // reads a mask per layer.
        let dropouts: Vec<(String, f64)> = net
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l {
                snnc_frontend::Layer::Dropout { p, .. } => Some((snnc_frontend::dropout_mask_input(&l.name(i)), *p)),
                _ => None,
            })
            .collect();
        // BatchNorm layers use batch statistics in training and report them.
        let batch_norms: Vec<(String, f64, usize)> = net
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l {
                snnc_frontend::Layer::BatchNorm1d { momentum, variant, .. }
                | snnc_frontend::Layer::BatchNorm2d { momentum, variant, .. } => {
                    let name = l.name(i);
                    let shape = compiled.layers.iter().find(|s| s.name == name)?.shape.clone();
                    let mut per_channel = shape.iter().skip(1).map(|&d| d as usize).product::<usize>();
                    // tdBN takes one statistic over all steps of the batch.
                    if *variant == snnc_frontend::BatchNormVariant::TimeBatched {
                        per_channel *= net.steps as usize;
                    }
                    Some((name, *momentum, per_channel))
                }
                _ => None,
            })
            .collect();
        let mut train_module = if dropouts.is_empty() && batch_norms.is_empty() {
            compiled.module.clone()
        } else {
            driver::compile(net, &net.name, &LowerOptions { training: true, ..LowerOptions::default() })?.module
        };
        let dropouts = dropouts
            .into_iter()
            .map(|(name, p)| {
                let shape = train_module
                    .inputs
                    .iter()
                    .find(|(_, i)| i.name == name)
                    .map(|(_, i)| {
                        i.ty.shape
                            .0
                            .iter()
                            .skip(1)
                            .filter_map(|d| match d {
                                snnc_ir::Dim::Fixed(v) => Some(*v as usize),
                                snnc_ir::Dim::Batch => None,
                            })
                            .collect()
                    })
                    .ok_or_else(|| Error::Internal(format!("the training module has no input `{name}`")))?;
                Ok((name, p, shape))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let classes = add_log_probs(net, &mut train_module)?;
        let grad = snnc_passes::AutodiffOptions { seeds: vec![LOG_PROBS.into()], inputs: Vec::new() };
        let (train_info, report) = driver::differentiate(&mut train_module, target, None, &pass_opts, &grad)?;
        let seed_input = report.seeds.first().map(|(_, i)| i.clone()).ok_or_else(|| {
            Error::User(format!(
                "network `{}`: no trainable parameter reaches the loss; training needs a layer with weights \
                     (Linear, Conv2d, LILinear or a recurrent layer) between the input and the readout",
                snnc_frontend::error::shown_name(&net.name)
            ))
        })?;
        let stored_bytes_per_sample = report.stored_bytes_per_sample(train_module.steps);

        let mut eval_module = compiled.module.clone();
        add_log_probs(net, &mut eval_module)?;
        let pipeline = driver::pipeline(target, None, &pass_opts)?;
        let eval_info = driver::run_pipeline(&mut eval_module, &pipeline, &mut |_| {})?;

        let initial_weights = driver::init_weights(&compiled.module, net.seed)?;
        let train = Runner::new(train_module, train_info, target)?;
        let eval = Runner::new(eval_module, eval_info, target)?;
        Ok(TrainProgram {
            network: net.clone(),
            target,
            train,
            eval,
            seed_input,
            grads: report.gradients,
            no_gradient: report.no_gradient,
            dropouts,
            batch_norms,
            stored_bytes_per_sample,
            classes,
            input_shape,
            initial_weights,
            compile_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Reshapes a batch of images `[b, 1, 28, 28]` to the network's input.
    fn input(&self, images: &Tensor) -> Result<BTreeMap<String, Tensor>, Error> {
        let b = images.shape.first().copied().unwrap_or(0);
        let per: usize = self.input_shape.iter().product();
        if images.data.len() != b * per {
            return Err(Error::User(format!(
                "network `{}` takes inputs of shape {:?}, which does not fit images of shape {:?}",
                self.network.name,
                self.input_shape,
                &images.shape[1..]
            )));
        }
        let mut shape = vec![b];
        shape.extend(&self.input_shape);
        let x = Tensor { shape, dtype: images.dtype, data: images.data.clone() };
        Ok(BTreeMap::from([("x".to_string(), x)]))
    }

    /// Forward and backward of one batch: the log-probabilities and the
    /// gradient of the mean NLL loss for `labels`. `key` draws the dropout
    /// masks (the same key gives the same masks).
    pub fn step(&self, weights: &Weights, images: &Tensor, labels: &[u8], key: u64) -> Result<StepResult, Error> {
        let mut inputs = self.input(images)?;
        let batch = labels.len();
        let steps = self.train.module().steps as usize;
        for (name, p, shape) in &self.dropouts {
            inputs.insert(name.clone(), dropout_mask(key ^ name_key(name), *p, steps, batch, shape));
        }
        let seed = snnc_runtime::nll_seed(labels, labels.len(), self.classes, snnc_runtime::ElemType::F32)
            .map_err(|e| Error::User(e.to_string()))?;
        inputs.insert(self.seed_input.clone(), seed);
        let mut out = self.train.run(weights, &inputs)?;
        let log_probs = out
            .remove(LOG_PROBS)
            .ok_or_else(|| Error::Internal("the training module lost its log_probs output".into()))?;
        let mut grads = BTreeMap::new();
        for (param, output) in &self.grads {
            if let Some(g) = out.remove(output) {
                grads.insert(param.clone(), g);
            }
        }
        let mut batch_stats = BTreeMap::new();
        for (name, _, _) in &self.batch_norms {
            let (mean, var) = snnc_frontend::batch_stat_outputs(name);
            match (out.remove(&mean), out.remove(&var)) {
                (Some(m), Some(v)) => {
                    batch_stats.insert(name.clone(), (m, v));
                }
                _ => return Err(Error::Internal(format!("the training module lost `{mean}` or `{var}`"))),
            }
        }
        Ok(StepResult { log_probs, grads, batch_stats })
    }

    /// Applies a step's BatchNorm batch statistics to the running
    /// statistics in `weights`, as torch does in the forward pass of a
    /// training step (one update per time step, in time order, with the
    /// unbiased variance); `batch` is the step's batch size.
    pub fn update_running_stats(&self, weights: &mut Weights, step: &StepResult, batch: usize) -> Result<(), Error> {
        for (name, momentum, per_channel) in &self.batch_norms {
            let Some((mean, var)) = step.batch_stats.get(name) else { continue };
            snnc_runtime::batchnorm::update_running_stats(weights, name, *momentum, batch * per_channel, mean, var)
                .map_err(Error::Internal)?;
        }
        Ok(())
    }

    /// The log-probabilities of a batch (forward only).
    pub fn evaluate(&self, weights: &Weights, images: &Tensor) -> Result<Tensor, Error> {
        let inputs = self.input(images)?;
        let mut out = self.eval.run(weights, &inputs)?;
        out.remove(LOG_PROBS).ok_or_else(|| Error::Internal("the forward module lost its log_probs output".into()))
    }
}

/// A dropout mask `[steps, batch, ...shape]`: each value is 0 with
/// probability `p` and `1 / (1 - p)` (in f32, as torch scales) otherwise,
/// drawn from the counter-based generator keyed by `key`.
pub fn dropout_mask(key: u64, p: f64, steps: usize, batch: usize, shape: &[usize]) -> Tensor {
    let per_step = batch * shape.iter().product::<usize>();
    let scale = f64::from((1.0 / (1.0 - p)) as f32);
    let mut data = Vec::with_capacity(steps * per_step);
    for t in 0..steps {
        for k in 0..per_step {
            let u = snnc_ir::rng::uniform(key, t as u32, k as u64);
            data.push(if u < p { 0.0 } else { scale });
        }
    }
    let mut full = vec![steps, batch];
    full.extend(shape);
    Tensor { shape: full, dtype: snnc_runtime::ElemType::F32, data }
}

/// A key per mask name (FNV-1a), so two dropout layers draw apart.
fn name_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The key of the dropout masks of batch `batch` of `epoch`: the same run
/// seed, epoch and batch give the same masks, so a resumed run draws what
/// the uninterrupted one drew.
fn batch_key(seed: u64, epoch: u32, batch: usize) -> u64 {
    let mut r = snnc_ir::rng::Stream::new(seed ^ (u64::from(epoch) << 40) ^ batch as u64);
    r.next_u64()
}

/// Settings of a training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub epochs: u32,
    pub batch: usize,
    pub optimizer: OptimizerConfig,
    /// The learning rate of epoch e is `lr * lr_decay^(e-1)` (1 = constant).
    pub lr_decay: f64,
    pub seed: u64,
    pub target: Target,
    pub out: PathBuf,
    pub resume: bool,
    /// Start a new run in `out` even if it holds one (overwriting it).
    pub force: bool,
    pub limit: Option<usize>,
    /// Evaluate on the first N test samples only.
    pub test_limit: Option<usize>,
    /// The folder of the data set's files.
    pub data: PathBuf,
    /// The data set (`--data`).
    pub data_set: ImageSet,
    /// Print progress (a bar on a terminal, a line per tenth otherwise).
    pub progress: bool,
}

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const FASHION_MNIST_DIR: &str = snnc_runtime::dataset::DEFAULT_DIR;

/// Loads an image data set; a missing data set is an environment error
/// (exit 3) with the way to get it.
pub fn load_data(set: ImageSet, dir: &Path) -> Result<ImageData, Error> {
    // `DataError::Missing` carries the install hint itself.
    ImageData::load(set, dir).map_err(|e| match e {
        snnc_runtime::DataError::Missing { .. } => Error::Environment(e.to_string()),
        other => Error::User(other.to_string()),
    })
}

/// The largest batch the test set is evaluated in.
pub const EVAL_BATCH: usize = 1000;

/// The mean NLL and the number of correct predictions over a split, in
/// batches of `batch` samples.
pub fn evaluate_split(
    program: &TrainProgram,
    weights: &Weights,
    split: &Split,
    batch: usize,
) -> Result<(f64, usize), Error> {
    let mut loss = 0.0;
    let mut correct = 0;
    let order: Vec<usize> = (0..split.len()).collect();
    for chunk in order.chunks(batch.max(1)) {
        let (images, labels) = split.batch(chunk).map_err(|e| Error::User(e.to_string()))?;
        let lp = program.evaluate(weights, &images)?;
        loss += snnc_runtime::nll_mean(&lp, &labels).map_err(|e| Error::User(e.to_string()))? * chunk.len() as f64;
        correct += snnc_runtime::accuracy(&lp, &labels).map_err(|e| Error::User(e.to_string()))?;
    }
    Ok((loss / split.len().max(1) as f64, correct))
}

/// What a finished run leaves.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub metrics: Vec<EpochMetrics>,
    pub weights: Weights,
    pub out: PathBuf,
    pub resumed_from: Option<u32>,
}

/// The driver's error for a training runtime error: the machine's (exit 3)
/// where a folder cannot be written or the disk is full, else the user's.
fn train_error(e: TrainError) -> Error {
    if e.is_environment() { Error::Environment(e.to_string()) } else { Error::User(e.to_string()) }
}

/// A mean batch loss above this stops training as diverged. The loss is the
/// mean NLL of log-probabilities: ln(classes) (2.3 for ten) at chance, and
/// a mean above 1e4 means log-probabilities below -1e4 on average, which no
/// run that is still learning reaches (`--lr 1e30` gives 1e31).
pub const EXPLODING_LOSS: f64 = 1e4;

impl TrainOptions {
    /// Checks the settings that clap cannot: ranges and combinations.
    pub fn check(&self) -> Result<(), Error> {
        let at_least_one = [
            ("--epochs", Some(self.epochs as usize)),
            ("--batch", Some(self.batch)),
            ("--limit", self.limit),
            ("--test-limit", self.test_limit),
        ];
        for (flag, value) in at_least_one {
            if value == Some(0) {
                return Err(Error::User(format!("{flag} must be at least 1")));
            }
        }
        if !(self.lr_decay.is_finite() && self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return Err(Error::User(format!(
                "--lr-decay must be in (0, 1] (the factor the learning rate is multiplied by after each epoch), not {}",
                self.lr_decay
            )));
        }
        if self.resume && self.force {
            return Err(Error::User(
                "--resume continues the run in the output folder and --force starts a new one over it: give one".into(),
            ));
        }
        // The optimizer's own check names its fields; the flags come first.
        let mut flags = vec![("--lr", self.optimizer.lr())];
        if let OptimizerConfig::Sgd(sgd) = &self.optimizer {
            flags.push(("--momentum", sgd.momentum));
        }
        for (flag, x) in flags {
            if !(x.is_finite() && x >= 0.0) {
                return Err(Error::User(format!("{flag} must be a finite number >= 0, not {x}")));
            }
        }
        self.optimizer.validate().map_err(train_error)
    }
}

/// The configuration a checkpoint records: every setting that decides what
/// a run computes. A resumed run must have the same (see [`RunFolder`]);
/// only `--epochs` may change.
pub fn run_config(network: &str, opts: &TrainOptions) -> serde_json::Value {
    serde_json::json!({
        "network": network,
        "data": opts.data_set.key(),
        "target": opts.target.name(),
        "batch": opts.batch,
        "optimizer": opts.optimizer,
        "seed": opts.seed,
        "limit": opts.limit,
        "test_limit": opts.test_limit,
        "lr_decay": opts.lr_decay,
    })
}

/// Each difference between the configuration a checkpoint recorded and this
/// run's, as `--flag: CHECKPOINT in the checkpoint, THIS now`, in the order
/// of the keys. A setting the checkpoint does not record (an older snnc's)
/// is not compared; with another optimizer, only its kind and learning rate
/// are.
pub fn config_differences(recorded: &serde_json::Value, current: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let show = |v: &Value| match v {
        Value::Null => "none".to_string(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let flag = |key: &str| match key {
        "network" => "the network".to_string(),
        "optimizer.type" => "--optimizer".to_string(),
        "optimizer.lr" => "--lr".to_string(),
        "optimizer.momentum" => "--momentum".to_string(),
        k if k.starts_with("optimizer.") => format!("the optimizer's `{}`", &k["optimizer.".len()..]),
        k => format!("--{}", k.replace('_', "-")),
    };
    let (recorded, current) = (flatten(recorded), flatten(current));
    // Another optimizer has other settings: name the optimizer and the rate.
    let other_optimizer = recorded.get("optimizer.type") != current.get("optimizer.type");
    let mut diffs = Vec::new();
    for (key, was) in &recorded {
        let now = current.get(key).unwrap_or(&Value::Null);
        let compared =
            !(other_optimizer && key.starts_with("optimizer.") && key != "optimizer.type" && key != "optimizer.lr");
        if compared && was != now {
            diffs.push(format!("{}: {} in the checkpoint, {} now", flag(key), show(was), show(now)));
        }
    }
    diffs
}

/// The leaves of a JSON object by dotted key (`optimizer.lr`).
fn flatten(v: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match v.as_object() {
            Some(obj) => {
                for (k, v) in obj {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            None => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

/// The output folder of a training run, made ready before anything is
/// computed: created and known to be writable, locked against a second
/// training (released when dropped), cleared of the temporary files of
/// killed runs, and checked against the flags. A folder that holds a
/// checkpoint is refused unless `--resume` (then its configuration must
/// match this run's, but for `--epochs`) or `--force` (start over) says
/// what to do with it.
#[derive(Debug)]
pub struct RunFolder {
    dir: PathBuf,
    /// The checkpoint to continue from (with `--resume`).
    resume: Option<Checkpoint>,
    _lock: checkpoint::RunLock,
}

impl RunFolder {
    /// Prepares `opts.out` for training network `network` (its name).
    pub fn open(network: &str, opts: &TrainOptions) -> Result<RunFolder, Error> {
        opts.check()?;
        let dir = opts.out.clone();
        let shown = dir.display();
        std::fs::create_dir_all(&dir).map_err(|e| {
            let msg = format!("--out {shown}: cannot create the output folder: {e}");
            if is_users_fault(&e) { Error::User(msg) } else { Error::Environment(msg) }
        })?;
        // Creating the lock file is also the check that the folder is writable.
        let lock = checkpoint::RunLock::acquire(&dir).map_err(|e| match e {
            TrainError::Locked { .. } => Error::User(format!("--out {e}")),
            e if e.is_environment() => {
                Error::Environment(format!("--out {shown}: cannot write in this folder ({e}); choose another --out"))
            }
            e => train_error(e),
        })?;
        let run_files = [
            checkpoint::CHECKPOINT_FILE,
            checkpoint::WEIGHTS_FILE,
            checkpoint::SAFETENSORS_FILE,
            "metrics.csv",
            "batches.csv",
        ];
        snnc_runtime::save::remove_stale_temporaries(&dir, &run_files);
        let has_run = dir.join(checkpoint::CHECKPOINT_FILE).exists();
        let resume = if opts.resume {
            let ck = checkpoint::load(&dir).map_err(|e| {
                let msg = format!("--resume: {e} (run without --resume to start a new run in {shown})");
                if e.is_environment() { Error::Environment(msg) } else { Error::User(msg) }
            })?;
            let diffs = config_differences(&ck.config, &run_config(network, opts));
            if !diffs.is_empty() {
                return Err(Error::User(format!(
                    "--resume: the checkpoint in {shown} was trained with other settings:\n  {}\n  resume with the \
                     checkpoint's settings (only --epochs may change), or start a new run with --force or another --out",
                    diffs.join("\n  ")
                )));
            }
            Some(ck)
        } else if has_run && !opts.force {
            return Err(Error::User(format!(
                "--out {shown} holds a training run ({}): add --resume to continue it, --force to start a new run \
                 over it, or choose another --out",
                dir.join(checkpoint::CHECKPOINT_FILE).display()
            )));
        } else {
            None
        };
        Ok(RunFolder { dir, resume, _lock: lock })
    }
}

/// Checks that a checkpoint's weights are the weights of `program`'s network
/// (names and shapes).
fn check_checkpoint_weights(dir: &Path, ck: &Checkpoint, program: &TrainProgram) -> Result<(), Error> {
    let initial = &program.initial_weights;
    let mut problems = Vec::new();
    for (name, t) in initial {
        match ck.weights.get(name) {
            None => problems.push(format!("no weight `{name}`")),
            Some(c) if c.shape != t.shape => {
                problems.push(format!("`{name}` has shape {:?}, the network's is {:?}", c.shape, t.shape))
            }
            Some(_) => {}
        }
    }
    problems.extend(ck.weights.keys().filter(|k| !initial.contains_key(*k)).map(|k| format!("unknown weight `{k}`")));
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::User(format!(
        "--resume: the checkpoint {} is not of network `{}`: {}; train it into another --out, or start over with --force",
        dir.join(checkpoint::CHECKPOINT_FILE).display(),
        program.network.name,
        problems.join("; ")
    )))
}

/// Trains `program` on `data` (see the module doc), preparing `opts.out`
/// first ([`RunFolder`]).
pub fn train(program: &TrainProgram, data: &ImageData, opts: &TrainOptions) -> Result<TrainSummary, Error> {
    let folder = RunFolder::open(&program.network.name, opts)?;
    train_in(folder, program, data, opts)
}

/// Trains `program` on `data` into a folder prepared by [`RunFolder::open`]
/// with the same options; the folder is unlocked when this returns.
pub fn train_in(
    mut folder: RunFolder,
    program: &TrainProgram,
    data: &ImageData,
    opts: &TrainOptions,
) -> Result<TrainSummary, Error> {
    opts.check()?;
    if folder.dir != opts.out {
        return Err(Error::Internal(format!(
            "trained into {} with a folder prepared for {}",
            opts.out.display(),
            folder.dir.display()
        )));
    }
    let config = run_config(&program.network.name, opts);
    let (mut weights, mut optimizer, mut metrics, start_epoch, resumed_from) = match folder.resume.take() {
        Some(ck) => {
            check_checkpoint_weights(&folder.dir, &ck, program)?;
            let optimizer = Optimizer::from_state(ck.optimizer).map_err(train_error)?;
            (ck.weights, optimizer, ck.metrics, ck.epoch, Some(ck.epoch))
        }
        None => {
            (program.initial_weights.clone(), Optimizer::new(opts.optimizer).map_err(train_error)?, Vec::new(), 0, None)
        }
    };
    let train_split = &data.train;
    let n = train_split.len();
    let n_batches = n.div_ceil(opts.batch);
    let (batch, eval_batch) = (opts.batch.min(n).max(1), opts.batch.min(EVAL_BATCH).min(data.test.len()).max(1));
    let what = format!("training `{}` on {}", program.network.name, program.target.name());
    crate::memory::check_runs(&what, &[(&program.train, batch), (&program.eval, eval_batch)])?;
    for epoch in start_epoch + 1..=opts.epochs {
        let lr = epoch_lr(opts, epoch);
        optimizer.set_lr(lr).map_err(train_error)?;
        let start = Instant::now();
        let order = shuffle_order(n, opts.seed, u64::from(epoch));
        let mut loss_sum = 0.0;
        let mut seen = 0usize;
        let mut progress = Progress::new(opts.progress, epoch, opts.epochs, n);
        let mut batch_rows = String::new();
        for (i, chunk) in order.chunks(opts.batch).enumerate() {
            let (images, labels) = train_split.batch(chunk).map_err(|e| Error::User(e.to_string()))?;
            let step = program.step(&weights, &images, &labels, batch_key(opts.seed, epoch, i))?;
            let loss = snnc_runtime::nll_mean(&step.log_probs, &labels).map_err(train_error)?;
            if !(loss.is_finite() && loss <= EXPLODING_LOSS) {
                progress.abandon();
                let why = if loss.is_finite() { format!(", above {EXPLODING_LOSS:e}") } else { String::new() };
                let at = format!("the mean loss of batch {} of {n_batches} is {}{why}", i + 1, number(loss));
                return Err(diverged(&at, epoch, lr, &opts.out));
            }
            optimizer.step(&mut weights, &step.grads).map_err(train_error)?;
            program.update_running_stats(&mut weights, &step, chunk.len())?;
            loss_sum += loss * chunk.len() as f64;
            batch_rows.push_str(&format!("{epoch},{i},{loss}\n"));
            seen += chunk.len();
            progress.update(seen, loss_sum / seen as f64, start.elapsed().as_secs_f64(), i + 1 == n_batches);
        }
        let seconds = start.elapsed().as_secs_f64();
        let mut test = data.test.clone();
        if let Some(n) = opts.test_limit {
            test.truncate(n);
        }
        // In batches of the training's size, at most EVAL_BATCH: the forward
        // keeps buffers for the batch it ran last, and the user chose this
        // size to fit memory (the ConvNet's forward needs ~9 MB per image;
        // batches of 1000 held 8.6 GB).
        let (test_loss, correct) = evaluate_split(program, &weights, &test, opts.batch.min(EVAL_BATCH))?;
        let m = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            test_loss,
            test_accuracy: correct as f64 / test.len().max(1) as f64,
            seconds,
        };
        if opts.progress {
            let _ = writeln!(
                std::io::stderr(),
                "epoch {epoch}/{}: train loss {:.4}, test loss {:.4}, test accuracy {:.2}% ({:.1} s, {:.0} samples/s, lr {lr:.3e})",
                opts.epochs,
                m.train_loss,
                m.test_loss,
                100.0 * m.test_accuracy,
                seconds,
                seen as f64 / seconds.max(1e-9)
            );
        }
        metrics.push(m);
        let ck = checkpoint::Checkpoint {
            epoch,
            seed: opts.seed,
            weights: weights.clone(),
            optimizer: optimizer.state().clone(),
            metrics: metrics.clone(),
            config: config.clone(),
        };
        write_batches(&opts.out.join("batches.csv"), epoch, &batch_rows)?;
        checkpoint::save(&opts.out, &ck).map_err(|e| match e {
            TrainError::NonFinite { .. } => diverged(&format!("after its last batch, {e}"), epoch, lr, &opts.out),
            e => train_error(e),
        })?;
        snnc_runtime::write_metrics_csv(&opts.out.join("metrics.csv"), &metrics).map_err(train_error)?;
    }
    Ok(TrainSummary { metrics, weights, out: opts.out.clone(), resumed_from })
}

/// The error of a run that diverged in `epoch` (`at` says where and how):
/// it suggests a lower learning rate and says which checkpoint is kept.
fn diverged(at: &str, epoch: u32, lr: f64, dir: &Path) -> Error {
    let kept = match epoch - 1 {
        0 => "nothing of this run was saved".to_string(),
        e => format!("the checkpoint after epoch {e} in {} is kept", dir.display()),
    };
    Error::User(format!(
        "training diverged in epoch {epoch}: {at}; lower --lr (this epoch's learning rate is {}); {kept}",
        number(lr)
    ))
}

/// A number in Rust's shortest exact form, in scientific notation from a
/// million on (`0.002`, `1e30`).
pub fn number(x: f64) -> String {
    if x.is_finite() && x.abs() >= 1e6 { format!("{x:e}") } else { format!("{x}") }
}

/// The learning rate of `epoch` (1-based): `lr * lr_decay^(epoch-1)`,
/// the factor multiplied in once per epoch as `ExponentialLR.step()` does,
/// so a resumed run uses the same rates as an uninterrupted one.
pub fn epoch_lr(opts: &TrainOptions, epoch: u32) -> f64 {
    let mut lr = opts.optimizer.lr();
    for _ in 1..epoch {
        lr *= opts.lr_decay;
    }
    lr
}

/// Rewrites `batches.csv` (`epoch,batch,train_loss`) atomically: the rows
/// of earlier epochs already there (a resumed run keeps them), then `rows`.
fn write_batches(path: &Path, epoch: u32, rows: &str) -> Result<(), Error> {
    let mut text = String::from("epoch,batch,train_loss\n");
    if let Ok(old) = std::fs::read_to_string(path) {
        for line in old.lines().skip(1) {
            let e = line.split(',').next().and_then(|e| e.parse::<u32>().ok());
            if e.is_some_and(|e| e < epoch) {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text.push_str(rows);
    snnc_runtime::write_file(path, text.as_bytes()).map_err(|e| train_error(e.into()))
}

/// A progress line on stderr: a bar redrawn in place on a terminal, a line
/// every tenth of the epoch otherwise.
struct Progress {
    on: bool,
    tty: bool,
    epoch: u32,
    epochs: u32,
    total: usize,
    next_line: usize,
}

impl Progress {
    fn new(on: bool, epoch: u32, epochs: u32, total: usize) -> Progress {
        Progress { on, tty: std::io::stderr().is_terminal(), epoch, epochs, total, next_line: total / 10 }
    }

    /// Ends a bar left unfinished, so that an error starts on its own line.
    fn abandon(&self) {
        if self.on && self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }

    fn update(&mut self, seen: usize, loss: f64, secs: f64, last: bool) {
        if !self.on {
            return;
        }
        let rate = seen as f64 / secs.max(1e-9);
        let frac = seen as f64 / self.total.max(1) as f64;
        if self.tty {
            let width = 30;
            let filled = ((frac * width as f64) as usize).min(width);
            let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\repoch {}/{} [{bar}] {seen}/{} loss {loss:.4} {rate:.0} samples/s",
                self.epoch, self.epochs, self.total
            );
            if last {
                let _ = writeln!(err);
            }
            let _ = err.flush();
        } else if seen >= self.next_line || last {
            let _ = writeln!(
                std::io::stderr(),
                "epoch {}/{}: {seen}/{} samples, loss {loss:.4}, {rate:.0} samples/s",
                self.epoch,
                self.epochs,
                self.total
            );
            self.next_line = seen + self.total.div_ceil(10);
        }
    }
}
