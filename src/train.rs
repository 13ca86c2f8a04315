//! Training: a network compiled with its derived backward pass, and the
//! `snnc train` loop on Fashion-MNIST.
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
//! [`train`] runs epochs of seeded mini-batches with Adam (or SGD),
//! evaluates on the test split after each, writes `metrics.csv` and a
//! checkpoint per epoch (atomically), and resumes from the last one.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use snnc_frontend::{LowerOptions, Network, Readout};
use snnc_ir::{Op, Output, Region};
use snnc_runtime::{
    EpochMetrics, FashionMnist, Optimizer, OptimizerConfig, Split, Tensor, Weights, checkpoint, shuffle_order,
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

        let mut train_module = compiled.module.clone();
        let classes = add_log_probs(net, &mut train_module)?;
        let grad = snnc_passes::AutodiffOptions { seeds: vec![LOG_PROBS.into()], inputs: Vec::new() };
        let (train_info, report) = driver::differentiate(&mut train_module, target, None, &pass_opts, &grad)?;
        let seed_input =
            report.seeds.first().map(|(_, i)| i.clone()).ok_or_else(|| {
                Error::User(format!("network `{}`: no trainable parameter reaches the loss", net.name))
            })?;
        let stored_bytes_per_sample = report.stored_bytes_per_sample(train_module.steps);

        let mut eval_module = compiled.module.clone();
        add_log_probs(net, &mut eval_module)?;
        let pipeline = driver::pipeline(target, None, &pass_opts)?;
        let eval_info = driver::run_pipeline(&mut eval_module, &pipeline, &mut |_| {})?;

        let initial_weights = snnc_runtime::init_weights(&compiled.module, net.seed);
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
    /// gradient of the mean NLL loss for `labels`.
    pub fn step(&self, weights: &Weights, images: &Tensor, labels: &[u8]) -> Result<StepResult, Error> {
        let mut inputs = self.input(images)?;
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
        Ok(StepResult { log_probs, grads })
    }

    /// The log-probabilities of a batch (forward only).
    pub fn evaluate(&self, weights: &Weights, images: &Tensor) -> Result<Tensor, Error> {
        let inputs = self.input(images)?;
        let mut out = self.eval.run(weights, &inputs)?;
        out.remove(LOG_PROBS).ok_or_else(|| Error::Internal("the forward module lost its log_probs output".into()))
    }
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
    pub limit: Option<usize>,
    /// Evaluate on the first N test samples only.
    pub test_limit: Option<usize>,
    pub data: PathBuf,
    /// Print progress (a bar on a terminal, a line per tenth otherwise).
    pub progress: bool,
}

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Loads Fashion-MNIST; a missing data set is an environment error (exit 3)
/// with the install command.
pub fn load_data(dir: &Path) -> Result<FashionMnist, Error> {
    FashionMnist::load(dir).map_err(|e| match e {
        snnc_runtime::DataError::Missing { .. } => Error::Environment(format!(
            "{e}\n  install it with: sudo apt-get install dataset-fashion-mnist (files under {FASHION_MNIST_DIR})"
        )),
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

fn train_error(e: snnc_runtime::TrainError) -> Error {
    Error::User(e.to_string())
}

/// Trains `program` on `data` (see the module doc).
pub fn train(program: &TrainProgram, data: &FashionMnist, opts: &TrainOptions) -> Result<TrainSummary, Error> {
    if opts.batch == 0 {
        return Err(Error::User("--batch must be at least 1".into()));
    }
    if !(opts.lr_decay.is_finite() && opts.lr_decay > 0.0 && opts.lr_decay <= 1.0) {
        return Err(Error::User(format!(
            "--lr-decay must be in (0, 1] (the factor the learning rate is multiplied by after each epoch), not {}",
            opts.lr_decay
        )));
    }
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| Error::User(format!("cannot create the output folder {}: {e}", opts.out.display())))?;
    let config = serde_json::json!({
        "network": program.network.name,
        "target": program.target.name(),
        "batch": opts.batch,
        "optimizer": opts.optimizer,
        "seed": opts.seed,
        "limit": opts.limit,
        "lr_decay": opts.lr_decay,
    });
    let (mut weights, mut optimizer, mut metrics, start_epoch, resumed_from) = if opts.resume {
        let ck = checkpoint::load(&opts.out).map_err(|e| {
            Error::User(format!("--resume: {e} (run without --resume to start a new run in {})", opts.out.display()))
        })?;
        if ck.seed != opts.seed {
            return Err(Error::User(format!(
                "--resume: the checkpoint in {} was trained with --seed {}, not {}",
                opts.out.display(),
                ck.seed,
                opts.seed
            )));
        }
        let optimizer = Optimizer::from_state(ck.optimizer).map_err(train_error)?;
        (ck.weights, optimizer, ck.metrics, ck.epoch, Some(ck.epoch))
    } else {
        (program.initial_weights.clone(), Optimizer::new(opts.optimizer).map_err(train_error)?, Vec::new(), 0, None)
    };
    let train_split = &data.train;
    let n = train_split.len();
    let n_batches = n.div_ceil(opts.batch);
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
            let step = program.step(&weights, &images, &labels)?;
            let loss = snnc_runtime::nll_mean(&step.log_probs, &labels).map_err(train_error)?;
            if !loss.is_finite() {
                return Err(Error::User(format!(
                    "the loss became {loss} in epoch {epoch}, batch {}: lower --lr (this epoch's learning rate is {lr})",
                    i + 1,
                )));
            }
            optimizer.step(&mut weights, &step.grads).map_err(train_error)?;
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
            eprintln!(
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
        checkpoint::save(&opts.out, &ck).map_err(train_error)?;
        snnc_runtime::write_metrics_csv(&opts.out.join("metrics.csv"), &metrics).map_err(train_error)?;
    }
    Ok(TrainSummary { metrics, weights, out: opts.out.clone(), resumed_from })
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
    checkpoint::write_atomic(path, text.as_bytes()).map_err(train_error)
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
            eprintln!(
                "epoch {}/{}: {seen}/{} samples, loss {loss:.4}, {rate:.0} samples/s",
                self.epoch, self.epochs, self.total
            );
            self.next_line = seen + self.total.div_ceil(10);
        }
    }
}
