//! Training: a network compiled with its derived backward pass, and the
//! `snnc train` loop on Fashion-MNIST, MNIST or a user's `.npz` file
//! (static samples, sequences fed step by step, or Tonic event frames; see
//! `docs/training-data.md`).
//!
//! [`TrainProgram`] compiles two executables from one network: the
//! training module (forward + backward from the `autodiff` pass, seeded by
//! the gradient of the loss) and the forward module for evaluation. The
//! loss ([`Loss`], `--loss`) decides the output both modules get
//! ([`add_loss_outputs`]): `nll` (the default) the negative log-likelihood
//! of the log-probabilities, the readout's own for `MaxLogSoftmax` (the
//! Norse tutorial's decoder), else `log_softmax` of the readout's scores
//! (cross-entropy on a max, mean, last-step or spike-count readout), as
//! output `log_probs`; snnTorch's `ce-count` the log-softmax of the last
//! layer's spike counts (output `log_probs`); snnTorch's `mse-count` the
//! spike counts (`spike_counts`); `mse` the readout (`prediction`). The
//! squared errors seed a surrogate output (`loss.surrogate`, see [`Loss`]).
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
    Dataset, EpochMetrics, InputKind, Loss, Optimizer, OptimizerConfig, Prediction, Split, Targets, Tensor, TrainError,
    Weights, shuffle_order,
};

use crate::driver::{self, Error, ModuleRunner as Runner, Target};

mod data;
pub use data::{DataSource, check_data_file, check_loss_for_data, layout, load, load_data};

/// The output holding the log-probabilities `nll` and `ce-count` read.
pub const LOG_PROBS: &str = "log_probs";
/// The output holding the last layer's spike counts `mse-count` reads.
pub const SPIKE_COUNTS: &str = "spike_counts";
/// The output holding the readout (as floats) `mse` reads.
pub const PREDICTION: &str = "prediction";
/// The training module's output a squared error seeds, and its inputs.
pub const SURROGATE: &str = "loss.surrogate";
pub const LOSS_TARGET: &str = "loss.target";
pub const LOSS_SCALE: &str = "loss.scale";

/// The module output `loss` reads.
pub fn prediction_output(loss: &Loss) -> &'static str {
    match loss.prediction() {
        Prediction::LogProbs | Prediction::CountLogProbs => LOG_PROBS,
        Prediction::Counts => SPIKE_COUNTS,
        Prediction::Readout => PREDICTION,
    }
}

/// What one training step returns.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// `[B, classes]`: the output the loss reads ([`prediction_output`]):
    /// log-probabilities, spike counts or the readout.
    pub prediction: Tensor,
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
    /// The loss it trains with.
    pub loss: Loss,
    /// The network's time steps `T`.
    pub steps: usize,
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
    /// The values per sample of the output the loss reads (the classes).
    pub classes: usize,
    /// The input's per-sample shape (per step and sample for sequences).
    pub input_shape: Vec<usize>,
    /// Whether the input is per step: batches `[b, T, ...]` are fed as
    /// `[T, b, ...]`.
    pub sequence: bool,
    /// The initial weights (the network's default initialisation).
    pub initial_weights: Weights,
    /// Milliseconds spent compiling both modules.
    pub compile_ms: f64,
}

/// Adds the output `loss` reads ([`prediction_output`]) and, for the
/// training module (`training`) of a squared error, the seeded surrogate
/// `p · stop_gradient(scale · (p − target))` with inputs [`LOSS_TARGET`] and
/// [`LOSS_SCALE`] (see [`Loss`]). Returns the values per sample of the
/// prediction (`[B, classes]`) and the output to seed.
pub fn add_loss_outputs(
    net: &Network,
    module: &mut snnc_ir::Module,
    loss: &Loss,
    training: bool,
) -> Result<(usize, &'static str), Error> {
    let (value, classes) = match loss.prediction() {
        Prediction::LogProbs => {
            let (readout, classes) = class_scores(net, module, "readout")?;
            let value = if net.readout == Readout::MaxLogSoftmax {
                readout
            } else {
                let arg = float(module, readout)?;
                push_seq_node(module, Op::LogSoftmax { arg })?
            };
            (value, classes)
        }
        Prediction::CountLogProbs => {
            let (counts, classes) = spike_counts(net, module, loss)?;
            (push_seq_node(module, Op::LogSoftmax { arg: counts })?, classes)
        }
        Prediction::Counts => spike_counts(net, module, loss)?,
        Prediction::Readout => {
            let (readout, classes) = class_scores(net, module, "readout")?;
            (float(module, readout)?, classes)
        }
    };
    let name = prediction_output(loss);
    module.outputs.push(Output { name: name.into(), value });
    if !(training && loss.is_squared_error()) {
        return Ok((classes, name));
    }
    let ty = module.nodes[value].ty.clone();
    let mut input = |name: &str| {
        let h = module.inputs.append(snnc_ir::Input { name: name.into(), ty: ty.clone() });
        push_seq_node(module, Op::Input(h))
    };
    let (target, scale) = (input(LOSS_TARGET)?, input(LOSS_SCALE)?);
    let bin = |op, lhs, rhs| Op::Binary { op, lhs, rhs };
    let diff = push_seq_node(module, bin(snnc_ir::BinaryOp::Sub, value, target))?;
    let grad = push_seq_node(module, bin(snnc_ir::BinaryOp::Mul, scale, diff))?;
    let stopped = push_seq_node(module, Op::StopGradient(grad))?;
    // The gradient of `value · stopped` w.r.t. `value` is `seed · stopped`.
    let surrogate = push_seq_node(module, bin(snnc_ir::BinaryOp::Mul, value, stopped))?;
    module.outputs.push(Output { name: SURROGATE.into(), value: surrogate });
    Ok((classes, SURROGATE))
}

/// The output `name` as class scores `[B, classes]`.
fn class_scores(
    net: &Network,
    module: &snnc_ir::Module,
    name: &str,
) -> Result<(snnc_ir::Handle<snnc_ir::Node>, usize), Error> {
    let readout = module.outputs.iter().find(|o| o.name == name).map(|o| o.value).ok_or_else(|| {
        Error::User(format!(
            "network `{}` has readout `Sequence`, which gives no class scores: use `readout: MaxLogSoftmax` \
             (the Norse tutorial's decoder), Max, Mean, LastStep or SpikeCount to train a classifier",
            net.name
        ))
    })?;
    let ty = &module.nodes[readout].ty;
    match ty.shape.0[..] {
        [snnc_ir::Dim::Batch, snnc_ir::Dim::Fixed(c)] if !ty.seq => Ok((readout, c as usize)),
        _ => Err(Error::User(format!(
            "network `{}`: the readout is {ty}, but training needs one score per class, [B, classes]",
            net.name
        ))),
    }
}

/// `value` as the module's float (spikes are cast, as torch computes with
/// float spikes).
fn float(
    module: &mut snnc_ir::Module,
    value: snnc_ir::Handle<snnc_ir::Node>,
) -> Result<snnc_ir::Handle<snnc_ir::Node>, Error> {
    if module.nodes[value].ty.dtype.is_float() {
        return Ok(value);
    }
    let dtype = module.float;
    push_seq_node(module, Op::Cast { arg: value, dtype })
}

/// The last layer's spikes summed over time, `[B, C]` (the `SpikeCount`
/// readout itself when the network has it); refused for a last layer that
/// does not spike.
fn spike_counts(
    net: &Network,
    module: &mut snnc_ir::Module,
    loss: &Loss,
) -> Result<(snnc_ir::Handle<snnc_ir::Node>, usize), Error> {
    let output = module
        .outputs
        .iter()
        .find(|o| o.name == "output")
        .map(|o| o.value)
        .ok_or_else(|| Error::Internal("the module has no `output`".into()))?;
    let ty = module.nodes[output].ty.clone();
    let last = net.layers.len().checked_sub(1).map(|i| net.layers[i].name(i)).unwrap_or_default();
    if ty.dtype != snnc_ir::Dtype::Spike {
        return Err(Error::User(format!(
            "network `{}`: --loss {} counts the spikes of the last layer, but the last layer `{}` gives {} \
             values, not spikes: end the network in a spiking layer (e.g. LIF), or use --loss nll or mse",
            net.name,
            loss.name(),
            snnc_frontend::error::shown_name(&last),
            ty.dtype
        )));
    }
    let classes = match ty.shape.0[..] {
        [snnc_ir::Dim::Batch, snnc_ir::Dim::Fixed(c)] if ty.seq => c as usize,
        _ => {
            return Err(Error::User(format!(
                "network `{}`: --loss {} needs one spiking neuron per class, [T, B, classes], but the last layer \
                 `{}` gives {ty}: add Flatten() and a spiking layer with one neuron per class",
                net.name,
                loss.name(),
                snnc_frontend::error::shown_name(&last)
            )));
        }
    };
    if net.readout == Readout::SpikeCount
        && let Some(o) = module.outputs.iter().find(|o| o.name == "readout")
    {
        return Ok((o.value, classes));
    }
    let counts = push_seq_node(module, Op::ReduceTime { op: snnc_ir::ReduceOp::Sum, arg: output })?;
    Ok((counts, classes))
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
    /// Compiles `net` for training with `loss` on `target` with static
    /// samples (an encoder network, as the image sets need).
    pub fn new(net: &Network, target: Target, loss: Loss) -> Result<TrainProgram, Error> {
        TrainProgram::for_data(net, target, InputKind::Static, loss)
    }

    /// Compiles `net` for training with `loss` on `target` with samples of
    /// `kind`: static samples need a network with an encoder, sequences one
    /// without whose `steps` are the sequences' length.
    pub fn for_data(net: &Network, target: Target, kind: InputKind, loss: Loss) -> Result<TrainProgram, Error> {
        target.ensure_available()?;
        loss.check().map_err(train_error)?;
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
        let dims = |i: &snnc_ir::Input| -> Vec<usize> {
            i.ty.shape
                .0
                .iter()
                .skip(1)
                .map(|d| match d {
                    snnc_ir::Dim::Fixed(v) => *v as usize,
                    snnc_ir::Dim::Batch => 1,
                })
                .collect()
        };
        let input_shape: Vec<usize> = match (&input, kind) {
            (Some(i), InputKind::Static) if !i.ty.seq && compiled.module.inputs.len() == 1 => dims(i),
            (Some(i), InputKind::Sequence { steps }) if i.ty.seq && compiled.module.inputs.len() == 1 => {
                if steps != net.steps as usize {
                    return Err(Error::User(format!(
                        "network `{}` runs {} steps, but the data are sequences of {steps} steps: set `steps:                          {steps}` in the network",
                        net.name, net.steps
                    )));
                }
                dims(i)
            }
            (Some(i), InputKind::Sequence { .. }) if !i.ty.seq => {
                return Err(Error::User(format!(
                    "network `{}` has an encoder, but the data are sequences (one input per step): remove the \
                     encoder so that the network reads them step by step",
                    net.name
                )));
            }
            _ => {
                return Err(Error::User(format!(
                    "network `{}` reads a per-step input; `snnc train` feeds it static samples (images), so the \
                     network needs an encoder (e.g. `encoder: ConstantCurrent()` with `input: [1, 28, 28]`), or \
                     --data FILE.npz with sequences [N, T, ...input]",
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
        let (classes, seeded) = add_loss_outputs(net, &mut train_module, &loss, true)?;
        let grad = snnc_passes::AutodiffOptions { seeds: vec![seeded.into()], inputs: Vec::new() };
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
        add_loss_outputs(net, &mut eval_module, &loss, false)?;
        let pipeline = driver::pipeline(target, None, &pass_opts)?;
        let eval_info = driver::run_pipeline(&mut eval_module, &pipeline, &mut |_| {})?;

        let initial_weights = driver::init_weights(&compiled.module, net.seed)?;
        let train = Runner::new(train_module, train_info, target)?;
        let eval = Runner::new(eval_module, eval_info, target)?;
        Ok(TrainProgram {
            network: net.clone(),
            target,
            loss,
            steps: net.steps as usize,
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
            sequence: matches!(kind, InputKind::Sequence { .. }),
            initial_weights,
            compile_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Reshapes a batch `[b, ...sample]` to the network's input: `[b,
    /// ...input]`, or `[T, b, ...input]` for sequences `[b, T, ...]`.
    fn input(&self, images: &Tensor) -> Result<BTreeMap<String, Tensor>, Error> {
        let b = images.shape.first().copied().unwrap_or(0);
        let steps = if self.sequence { self.network.steps as usize } else { 1 };
        let per: usize = self.input_shape.iter().product();
        if images.data.len() != b * steps * per {
            let wanted = if self.sequence {
                format!("{steps} steps of {:?}", self.input_shape)
            } else {
                format!("{:?}", self.input_shape)
            };
            return Err(Error::User(format!(
                "network `{}` takes inputs of shape {wanted}, which does not fit samples of shape {:?}",
                self.network.name,
                &images.shape[1..]
            )));
        }
        let x = if self.sequence {
            let mut shape = vec![steps, b];
            shape.extend(&self.input_shape);
            let mut data = Vec::with_capacity(images.data.len());
            for t in 0..steps {
                for s in 0..b {
                    let at = (s * steps + t) * per;
                    data.extend_from_slice(&images.data[at..at + per]);
                }
            }
            Tensor { shape, dtype: images.dtype, data }
        } else {
            let mut shape = vec![b];
            shape.extend(&self.input_shape);
            Tensor { shape, dtype: images.dtype, data: images.data.clone() }
        };
        Ok(BTreeMap::from([("x".to_string(), x)]))
    }

    /// Forward and backward of one batch: the output the loss reads and the
    /// gradient of the loss for `targets`. `key` draws the dropout masks
    /// (the same key gives the same masks).
    pub fn step(&self, weights: &Weights, images: &Tensor, targets: &Targets, key: u64) -> Result<StepResult, Error> {
        let mut inputs = self.input(images)?;
        let batch = targets.len();
        let steps = self.train.module().steps as usize;
        for (name, p, shape) in &self.dropouts {
            inputs.insert(name.clone(), dropout_mask(key ^ name_key(name), *p, steps, batch, shape));
        }
        let loss = self.loss.inputs(targets, self.classes, self.steps, snnc_runtime::ElemType::F32);
        let loss = loss.map_err(|e| Error::User(e.to_string()))?;
        inputs.insert(self.seed_input.clone(), loss.seed);
        if let Some((target, scale)) = loss.target {
            inputs.insert(LOSS_TARGET.into(), target);
            inputs.insert(LOSS_SCALE.into(), scale);
        }
        let mut out = self.train.run(weights, &inputs)?;
        let name = prediction_output(&self.loss);
        let prediction =
            out.remove(name).ok_or_else(|| Error::Internal(format!("the training module lost its {name} output")))?;
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
        Ok(StepResult { prediction, grads, batch_stats })
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

    /// The output the loss reads of a batch (forward only).
    pub fn evaluate(&self, weights: &Weights, images: &Tensor) -> Result<Tensor, Error> {
        let inputs = self.input(images)?;
        let mut out = self.eval.run(weights, &inputs)?;
        let name = prediction_output(&self.loss);
        out.remove(name).ok_or_else(|| Error::Internal(format!("the forward module lost its {name} output")))
    }

    /// The loss of a batch from the output it reads.
    pub fn loss_value(&self, prediction: &Tensor, targets: &Targets) -> Result<f64, Error> {
        self.loss.value(prediction, targets, self.steps).map_err(train_error)
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
    /// The data set (`--data`, `--data-dir`, `--test-split`, `--normalize`).
    pub data: DataSource,
    /// Print progress (a bar on a terminal, a line per tenth otherwise).
    pub progress: bool,
    /// The loss (`--loss`, with its rates).
    pub loss: Loss,
}

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const FASHION_MNIST_DIR: &str = snnc_runtime::dataset::DEFAULT_DIR;

/// The largest batch the test set is evaluated in.
pub const EVAL_BATCH: usize = 1000;

/// The mean loss and the number of correct predictions over a split (none
/// for `--loss mse`, which has no classes), in batches of `batch` samples.
pub fn evaluate_split(
    program: &TrainProgram,
    weights: &Weights,
    split: &Split,
    batch: usize,
) -> Result<(f64, Option<usize>), Error> {
    let mut loss = 0.0;
    let mut correct = Some(0);
    let order: Vec<usize> = (0..split.len()).collect();
    for chunk in order.chunks(batch.max(1)) {
        let (images, targets) = split.batch(chunk).map_err(|e| Error::User(e.to_string()))?;
        let prediction = program.evaluate(weights, &images)?;
        loss += program.loss_value(&prediction, &targets)? * chunk.len() as f64;
        let right = program.loss.correct(&prediction, &targets).map_err(train_error)?;
        correct = correct.zip(right).map(|(a, b)| a + b);
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

/// A mean batch loss above this stops training as diverged. For the NLL of
/// log-probabilities (and ce-count): ln(classes) (2.3 for ten) at chance,
/// and a mean above 1e4 means log-probabilities below -1e4 on average, which
/// no run that is still learning reaches (`--lr 1e30` gives 1e31); mse-count
/// is at most `T`; mse's scale is its targets'.
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
        self.loss.check().map_err(train_error)?;
        self.optimizer.validate().map_err(train_error)
    }
}

/// The configuration a checkpoint records: every setting that decides what
/// a run computes. A resumed run must have the same (see [`RunFolder`]);
/// only `--epochs` may change.
pub fn run_config(network: &str, opts: &TrainOptions) -> serde_json::Value {
    let mut config = serde_json::json!({
        "network": network,
        "target": opts.target.name(),
        "batch": opts.batch,
        "optimizer": opts.optimizer,
        "seed": opts.seed,
        "limit": opts.limit,
        "test_limit": opts.test_limit,
        "lr_decay": opts.lr_decay,
        "loss": opts.loss,
    });
    if let Some(obj) = config.as_object_mut() {
        obj.extend(opts.data.config());
    }
    config
}

/// Each difference between the configuration a checkpoint recorded and this
/// run's, as `--flag: CHECKPOINT in the checkpoint, THIS now`, in the order
/// of the keys. A setting the checkpoint does not record (an older snnc's)
/// is not compared, but for the loss, which was `nll` before `--loss`; with
/// another optimizer, only its kind and learning rate are, and with another
/// loss only its kind.
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
        "loss.type" => "--loss".to_string(),
        k if k.starts_with("loss.") => format!("--{}", k["loss.".len()..].replace('_', "-")),
        k if k.starts_with("optimizer.") => format!("the optimizer's `{}`", &k["optimizer.".len()..]),
        k => format!("--{}", k.replace('_', "-")),
    };
    let (mut recorded, current) = (flatten(recorded), flatten(current));
    // Checkpoints from before `--loss` were trained with nll.
    if !recorded.keys().any(|k| k.starts_with("loss.")) {
        recorded.insert("loss.type".into(), Value::String(Loss::Nll.name().into()));
    }
    let other_loss = recorded.get("loss.type") != current.get("loss.type");
    // Another optimizer has other settings: name the optimizer and the rate.
    let other_optimizer = recorded.get("optimizer.type") != current.get("optimizer.type");
    let mut diffs = Vec::new();
    for (key, was) in &recorded {
        let now = current.get(key).unwrap_or(&Value::Null);
        // The data file's size and hash are compared once it is read (`check_data_file`).
        let compared =
            !(other_optimizer && key.starts_with("optimizer.") && key != "optimizer.type" && key != "optimizer.lr")
                && !(other_loss && key.starts_with("loss.") && key != "loss.type")
                && !key.starts_with("data_file.");
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
pub fn train(program: &TrainProgram, data: &Dataset, opts: &TrainOptions) -> Result<TrainSummary, Error> {
    let folder = RunFolder::open(&program.network.name, opts)?;
    train_in(folder, program, data, opts)
}

/// Trains `program` on `data` into a folder prepared by [`RunFolder::open`]
/// with the same options; the folder is unlocked when this returns.
pub fn train_in(
    mut folder: RunFolder,
    program: &TrainProgram,
    data: &Dataset,
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
    if program.loss != opts.loss {
        return Err(Error::Internal(format!(
            "trained with --loss {} a program compiled for --loss {}",
            opts.loss.name(),
            program.loss.name()
        )));
    }
    check_loss_for_data(&opts.loss, data, program.classes, &program.network.name)?;
    let mut config = run_config(&program.network.name, opts);
    if let (Some(file), Some(obj)) = (&data.file, config.as_object_mut()) {
        obj.insert("data_file".into(), serde_json::json!(file));
    }
    let (mut weights, mut optimizer, mut metrics, start_epoch, resumed_from) = match folder.resume.take() {
        Some(ck) => {
            check_checkpoint_weights(&folder.dir, &ck, program)?;
            check_data_file(&ck.config, data, &folder.dir)?;
            let optimizer = Optimizer::from_state(ck.optimizer).map_err(train_error)?;
            (ck.weights, optimizer, ck.metrics, ck.epoch, Some(ck.epoch))
        }
        None => {
            (program.initial_weights.clone(), Optimizer::new(opts.optimizer).map_err(train_error)?, Vec::new(), 0, None)
        }
    };
    data.check_classes(program.classes, &program.network.name).map_err(Error::User)?;
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
            let (images, targets) = train_split.batch(chunk).map_err(|e| Error::User(e.to_string()))?;
            let step = program.step(&weights, &images, &targets, batch_key(opts.seed, epoch, i))?;
            let loss = program.loss_value(&step.prediction, &targets)?;
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
            // mse has no classes: NaN (metrics.csv keeps its columns).
            test_accuracy: correct.map_or(f64::NAN, |c| c as f64 / test.len().max(1) as f64),
            seconds,
        };
        if opts.progress {
            let accuracy = match correct {
                Some(_) => format!(", test accuracy {:.2}%", 100.0 * m.test_accuracy),
                None => String::new(),
            };
            let _ = writeln!(
                std::io::stderr(),
                "epoch {epoch}/{}: train loss {:.4}, test loss {:.4}{accuracy} ({:.1} s, {:.0} samples/s, lr {lr:.3e})",
                opts.epochs,
                m.train_loss,
                m.test_loss,
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
