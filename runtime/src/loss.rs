//! Host-side losses and metrics for training, computed as PyTorch computes
//! them on CPU.
//!
//! Values are computed in the tensor's precision: every operation on a
//! `float32` tensor rounds to f32, on a `float64` tensor to f64; results are
//! returned as f64 (exactly the f32 value for f32 inputs).
//!
//! - [`nll_mean`] is `F.nll_loss(log_probs, labels)` (mean over the batch),
//!   bit for bit: torch sums `-log_probs[b, label]` with a cascade of eight
//!   partial sums (`nll_loss_out_frame` in `aten/src/ATen/native/LossNLL.cpp`),
//!   and so does this function, then divides by the batch size.
//! - [`nll_seed`] is the gradient of that loss with respect to `log_probs`
//!   (the seed of backpropagation), bit for bit: `-(1 / B)` at each sample's
//!   label, 0 elsewhere.
//! - [`log_softmax`] follows torch's formula, `(x - max) - ln(Σ exp(x - max))`
//!   over the last dimension, summing left to right; torch's vectorised
//!   kernel sums in SIMD lanes and uses SLEEF's `exp`, so the two may differ
//!   by a few ulp.
//! - [`mse_mean`] squares differences in the tensors' precision, sums in f64
//!   and rounds the mean once (torch sums in lanes; again a few ulp apart).
//! - [`argmax`] and [`accuracy`] pick the first maximum, and a NaN counts as
//!   the maximum, as `torch.argmax` does.
//! - [`Loss`] is the loss `snnc train --loss` trains with (nll, snnTorch's
//!   ce-count and mse-count, mse): which module output it reads, its value,
//!   the seed of the backward pass and torch's gradient. Checked against
//!   torch 2.15 and snnTorch 1.0.0 on the cases of
//!   `tests/fixtures/losses.json` (`scripts/loss_oracle.py`; the bounds are
//!   in `loss/oracle_tests.rs`).

use serde::{Deserialize, Serialize};

use crate::real::Real;
use crate::targets::Targets;
use crate::tensor::{ElemType, Tensor};
use crate::train_error::TrainError;

/// The float precision to compute in for `t`, or an error naming `what`.
fn precision(t: &Tensor, what: &str) -> Result<ElemType, TrainError> {
    match t.dtype {
        ElemType::F32 | ElemType::F64 => Ok(t.dtype),
        ElemType::I64 => Err(TrainError::Dtype { what: what.into(), dtype: ElemType::I64.name() }),
    }
}

/// Checks that `t` is `[labels.len(), C]` with consistent data and every
/// label below `C`; returns `C`.
fn check_scores(t: &Tensor, labels: &[u8], what: &str) -> Result<usize, TrainError> {
    let batch = labels.len();
    let bad_shape =
        || TrainError::Shape { what: what.into(), expected: format!("[{batch}, classes]"), found: t.shape.clone() };
    let [rows, classes] = t.shape[..] else {
        return Err(bad_shape());
    };
    if rows != batch {
        return Err(bad_shape());
    }
    t.check().map_err(|source| TrainError::BadTensor { what: what.into(), source })?;
    check_labels(labels, classes)?;
    Ok(classes)
}

fn check_labels(labels: &[u8], classes: usize) -> Result<(), TrainError> {
    match labels.iter().position(|&y| usize::from(y) >= classes) {
        Some(index) => Err(TrainError::Label { index, label: labels[index], classes }),
        None => Ok(()),
    }
}

/// `F.nll_loss(log_probs, labels)` with the default mean reduction: the mean
/// over the batch of `-log_probs[b, labels[b]]`, bit-identical to torch on
/// CPU (see the module doc). `log_probs` is `[B, C]`, float32 or float64; an
/// empty batch gives NaN, as in torch.
pub fn nll_mean(log_probs: &Tensor, labels: &[u8]) -> Result<f64, TrainError> {
    let classes = check_scores(log_probs, labels, "log-probabilities")?;
    Ok(match precision(log_probs, "log-probabilities")? {
        ElemType::F32 => nll_mean_in::<f32>(&log_probs.data, labels, classes),
        _ => nll_mean_in::<f64>(&log_probs.data, labels, classes),
    })
}

/// torch's `nll_loss_out_frame` for 2-d input, no weights, mean reduction.
fn nll_mean_in<T: Real>(data: &[f64], labels: &[u8], classes: usize) -> f64 {
    const LEVELS: usize = 8;
    let batch = labels.len();
    if batch == 0 {
        return f64::NAN;
    }
    // Partial sum j collects 16^j samples (for batches below 2^40).
    let level_power = (ceil_log2(batch) / LEVELS as u32).max(4);
    let level_mask = (1usize << level_power) - 1;
    let mut sums = [T::ZERO; LEVELS];
    for (b, &label) in labels.iter().enumerate() {
        sums[0] = sums[0] - T::of(data[b * classes + usize::from(label)]);
        for j in 0..LEVELS - 1 {
            if b & (level_mask << (j as u32 * level_power)) != 0 {
                break;
            }
            sums[j + 1] = sums[j + 1] + sums[j];
            sums[j] = T::ZERO;
        }
    }
    let total = sums.iter().fold(T::ZERO, |acc, &s| acc + s);
    (total / T::of(batch as f64)).f64()
}

/// `c10`'s `CeilLog2`: 1 for `x <= 2`, else `ceil(log2(x))`.
fn ceil_log2(x: usize) -> u32 {
    if x <= 2 { 1 } else { usize::BITS - (x - 1).leading_zeros() }
}

/// The gradient of [`nll_mean`] with respect to the `[batch, classes]`
/// log-probabilities, as torch's `nll_loss_backward` computes it for
/// `loss.backward()`: `-(1 / batch)` rounded to `dtype` at each sample's
/// label, 0 elsewhere.
pub fn nll_seed(labels: &[u8], batch: usize, classes: usize, dtype: ElemType) -> Result<Tensor, TrainError> {
    if labels.len() != batch {
        return Err(TrainError::Shape {
            what: "labels".into(),
            expected: format!("[{batch}]"),
            found: vec![labels.len()],
        });
    }
    check_labels(labels, classes)?;
    let grad = match dtype {
        ElemType::F32 => f64::from(-(1.0f32 / batch as f32)),
        ElemType::F64 => -(1.0 / batch as f64),
        ElemType::I64 => return Err(TrainError::Dtype { what: "loss seed".into(), dtype: dtype.name() }),
    };
    let mut seed = Tensor::zeros(vec![batch, classes], dtype);
    for (b, &label) in labels.iter().enumerate() {
        seed.data[b * classes + usize::from(label)] = grad;
    }
    Ok(seed)
}

/// `log_softmax` over the last dimension of a float tensor of rank >= 1:
/// `(x - max) - ln(Σ exp(x - max))` in the tensor's precision, summed left to
/// right (torch's formula; see the module doc for how close).
pub fn log_softmax(x: &Tensor) -> Result<Tensor, TrainError> {
    let dtype = precision(x, "log_softmax input")?;
    let Some(&classes) = x.shape.last() else {
        return Err(TrainError::Shape {
            what: "log_softmax input".into(),
            expected: "rank 1 or more".into(),
            found: x.shape.clone(),
        });
    };
    x.check().map_err(|source| TrainError::BadTensor { what: "log_softmax input".into(), source })?;
    let mut out = x.clone();
    if classes > 0 {
        for row in out.data.chunks_mut(classes) {
            match dtype {
                ElemType::F32 => log_softmax_row::<f32>(row),
                _ => log_softmax_row::<f64>(row),
            }
        }
    }
    Ok(out)
}

fn log_softmax_row<T: Real>(row: &mut [f64]) {
    let max = row.iter().map(|&v| T::of(v)).fold(T::of(f64::NEG_INFINITY), |m, v| {
        if v.is_nan() || m.is_nan() {
            T::of(f64::NAN)
        } else if v > m {
            v
        } else {
            m
        }
    });
    let sum = row.iter().fold(T::ZERO, |acc, &v| acc + (T::of(v) - max).exp());
    let log_sum = sum.ln();
    for v in row.iter_mut() {
        *v = ((T::of(*v) - max) - log_sum).f64();
    }
}

/// Cross-entropy of class scores such as spike counts `[B, C]`: the value of
/// `nll_mean(log_softmax(counts), labels)`. An int64 tensor of counts is
/// taken as float64.
pub fn cross_entropy_counts(counts: &Tensor, labels: &[u8]) -> Result<f64, TrainError> {
    let counts = if counts.dtype == ElemType::I64 { counts.cast(ElemType::F64) } else { counts.clone() };
    check_scores(&counts, labels, "class scores")?;
    nll_mean(&log_softmax(&counts)?, labels)
}

/// `F.mse_loss(a, b)` with the mean reduction: the mean of `(a - b)²`, each
/// difference and square rounded to the computing precision (float64 if
/// either tensor is, else float32), summed in f64, the mean rounded once.
/// An empty pair gives NaN, as in torch.
pub fn mse_mean(a: &Tensor, b: &Tensor) -> Result<f64, TrainError> {
    let (pa, pb) = (precision(a, "mse input")?, precision(b, "mse target")?);
    if a.shape != b.shape {
        return Err(TrainError::Shape {
            what: "mse target".into(),
            expected: format!("{:?}", a.shape),
            found: b.shape.clone(),
        });
    }
    a.check().map_err(|source| TrainError::BadTensor { what: "mse input".into(), source })?;
    b.check().map_err(|source| TrainError::BadTensor { what: "mse target".into(), source })?;
    Ok(if pa == ElemType::F64 || pb == ElemType::F64 {
        mse_in::<f64>(&a.data, &b.data)
    } else {
        mse_in::<f32>(&a.data, &b.data)
    })
}

fn mse_in<T: Real>(a: &[f64], b: &[f64]) -> f64 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = T::of(x) - T::of(y);
            (d * d).f64()
        })
        .sum();
    T::of(sum / a.len() as f64).f64()
}

/// The index of the first largest value; a NaN counts as larger than every
/// number (so the first NaN wins), as in `torch.argmax`. `None` when empty.
pub fn argmax(values: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &v) in values.iter().enumerate() {
        match best {
            None => best = Some((i, v)),
            Some((_, b)) if b.is_nan() => break,
            Some((_, b)) if v.is_nan() || v > b => best = Some((i, v)),
            Some(_) => {}
        }
    }
    best.map(|(i, _)| i)
}

/// How many rows of `scores` (`[B, C]`, any element type) have their
/// [`argmax`] at the sample's label.
pub fn accuracy(scores: &Tensor, labels: &[u8]) -> Result<usize, TrainError> {
    let classes = check_scores(scores, labels, "class scores")?;
    if classes == 0 {
        return Ok(0);
    }
    Ok(scores.data.chunks(classes).zip(labels).filter(|(row, y)| argmax(row) == Some(usize::from(**y))).count())
}

/// The loss `snnc train --loss` trains with. One place says, for each,
/// which module output it reads ([`Loss::prediction`]), computes its value
/// ([`Loss::value`]), the inputs that seed the backward pass
/// ([`Loss::inputs`]), the number of correct predictions
/// ([`Loss::correct`]), and torch's gradient with respect to what torch
/// differentiates ([`Loss::torch_grad`], the reference the module's
/// gradient is checked against).
///
/// The forward and backward passes are one executable, so the seed must be
/// known before the forward runs: it may depend on the targets, never on the
/// prediction. The cross-entropy losses seed their log-probabilities with
/// [`nll_seed`] (the log-softmax backward is in the module). The squared
/// errors seed a surrogate output `p · stop_gradient(scale · (p − target))`
/// whose gradient with respect to the prediction `p` is
/// `seed · (scale · (p − target))`, torch's `mse_loss_backward` in torch's
/// order of operations (`scale = 2 / numel` rounded to the precision, `seed`
/// the gradient reaching the mean: 1, or `1 / T` for mse-count): the module
/// computes the target-dependent part, the host gives `target`, `scale` and
/// `seed` ([`LossInputs`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Loss {
    /// `F.nll_loss(log_probs, labels)`: the readout's own log-probabilities
    /// for `MaxLogSoftmax`, else `log_softmax` of the readout.
    #[default]
    Nll,
    /// snnTorch's `SF.ce_count_loss()`: the last layer's spikes summed over
    /// time, `[B, C]`, then `CrossEntropyLoss(counts, labels)` (mean).
    CeCount,
    /// snnTorch's `SF.mse_count_loss(correct_rate, incorrect_rate)`: the
    /// spike counts against `int(T · correct_rate)` at the label and
    /// `int(T · incorrect_rate)` elsewhere (truncated, as snnTorch's
    /// `int()`), `MSELoss` (mean over `B·C`) divided by `T`.
    MseCount { correct_rate: f64, incorrect_rate: f64 },
    /// `F.mse_loss(readout, targets)` (mean over `B·K`): regression on float
    /// targets.
    Mse,
}

/// The module output a [`Loss`] reads, `[B, C]` (or `[B, K]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// The log-probabilities of the readout (output `log_probs`).
    LogProbs,
    /// `log_softmax` of the last layer's spike counts (output `log_probs`).
    CountLogProbs,
    /// The last layer's spike counts, as floats (output `spike_counts`).
    Counts,
    /// The readout, as floats (output `prediction`).
    Readout,
}

/// What one batch feeds the training module for its loss.
#[derive(Clone, Debug, PartialEq)]
pub struct LossInputs {
    /// The gradient of the seeded output: of the log-probabilities, or of
    /// the surrogate of a squared error.
    pub seed: Tensor,
    /// For a squared error: the target `[B, C]` and the scale `2 / (B·C)`
    /// (every element the same, in the precision).
    pub target: Option<(Tensor, Tensor)>,
}

impl Loss {
    /// The name of the `--loss` value (`nll`, `ce-count`, `mse-count`, `mse`).
    pub fn name(&self) -> &'static str {
        match self {
            Loss::Nll => "nll",
            Loss::CeCount => "ce-count",
            Loss::MseCount { .. } => "mse-count",
            Loss::Mse => "mse",
        }
    }

    /// The module output the loss reads.
    pub fn prediction(&self) -> Prediction {
        match self {
            Loss::Nll => Prediction::LogProbs,
            Loss::CeCount => Prediction::CountLogProbs,
            Loss::MseCount { .. } => Prediction::Counts,
            Loss::Mse => Prediction::Readout,
        }
    }

    /// Whether the loss is a squared error seeded through a surrogate output
    /// (see the type's doc), which reads a target and a scale.
    pub fn is_squared_error(&self) -> bool {
        matches!(self, Loss::MseCount { .. } | Loss::Mse)
    }

    /// Whether the loss compares with class labels (else float targets).
    pub fn needs_classes(&self) -> bool {
        !matches!(self, Loss::Mse)
    }

    /// Checks the settings: rates in `[0, 1]`.
    pub fn check(&self) -> Result<(), TrainError> {
        if let Loss::MseCount { correct_rate, incorrect_rate } = *self {
            for (flag, r) in [("--correct-rate", correct_rate), ("--incorrect-rate", incorrect_rate)] {
                if !(0.0..=1.0).contains(&r) {
                    return Err(self.error(format!(
                        "{flag} must be in [0, 1] (the fraction of the steps that should spike), not {r}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn error(&self, why: String) -> TrainError {
        TrainError::Loss { loss: self.name(), why }
    }

    /// The class labels of `targets`, or an error saying this loss needs them.
    fn labels<'a>(&self, targets: &'a Targets) -> Result<&'a [u8], TrainError> {
        targets.classes().ok_or_else(|| {
            self.error("compares with class labels, but the data gives float targets: use --loss mse".into())
        })
    }

    /// The float targets `[B, K]` of `targets` in `dtype`, checked against a
    /// prediction of `k` values per sample.
    fn values(&self, targets: &Targets, k: usize, dtype: ElemType) -> Result<Tensor, TrainError> {
        match targets {
            Targets::Classes(_) => Err(self.error(
                "needs float targets, one per readout value (from `--data FILE.npz` with a float `y_train`); \
                 the image data sets give class labels: use --loss nll, ce-count or mse-count"
                    .into(),
            )),
            Targets::Values { per_sample, data } => {
                if per_sample[..] != [k] {
                    return Err(TrainError::Shape {
                        what: "mse targets of a sample".into(),
                        expected: format!("[{k}] (the readout's values per sample)"),
                        found: per_sample.clone(),
                    });
                }
                let data = data.iter().map(|&v| f64::from(v)).collect();
                Tensor::new(vec![targets.len(), k], dtype, data)
                    .map_err(|source| TrainError::BadTensor { what: "mse targets".into(), source })
            }
        }
    }

    /// The targets `[B, C]` a squared error compares `prediction`-shaped
    /// values with (mse-count: the counts wanted of `steps` steps).
    fn target_tensor(
        &self,
        targets: &Targets,
        classes: usize,
        steps: usize,
        dtype: ElemType,
    ) -> Result<Tensor, TrainError> {
        match *self {
            Loss::MseCount { correct_rate, incorrect_rate } => {
                let labels = self.labels(targets)?;
                check_labels(labels, classes)?;
                // snnTorch: on_target = int(num_steps * correct_rate).
                let (on, off) = ((steps as f64 * correct_rate).trunc(), (steps as f64 * incorrect_rate).trunc());
                let mut t = Tensor::new(vec![labels.len(), classes], dtype, vec![off; labels.len() * classes])
                    .map_err(|source| TrainError::BadTensor { what: "mse-count targets".into(), source })?;
                for (b, &y) in labels.iter().enumerate() {
                    t.data[b * classes + usize::from(y)] = on;
                }
                Ok(t)
            }
            _ => self.values(targets, classes, dtype),
        }
    }

    /// The gradient reaching the mean of a squared error: `1`, or `1 / T`
    /// for mse-count (snnTorch divides the loss by `T`), in `dtype`.
    fn mean_grad(&self, steps: usize, dtype: ElemType) -> f64 {
        let steps = if matches!(self, Loss::MseCount { .. }) { steps } else { 1 };
        match dtype {
            ElemType::F32 => f64::from(1.0f32 / steps as f32),
            _ => 1.0 / steps as f64,
        }
    }

    /// `2 / numel` in `dtype`, as `mse_loss_backward` (computed in double,
    /// then rounded).
    fn scale(numel: usize, dtype: ElemType) -> f64 {
        let s = 2.0 / numel as f64;
        if dtype == ElemType::F32 { f64::from(s as f32) } else { s }
    }

    /// What the training module reads for one batch of `targets`: the seed
    /// (in `dtype`, `[B, classes]`) and, for a squared error, the target and
    /// scale. `classes` is the prediction's values per sample, `steps` the
    /// network's `T`.
    pub fn inputs(
        &self,
        targets: &Targets,
        classes: usize,
        steps: usize,
        dtype: ElemType,
    ) -> Result<LossInputs, TrainError> {
        if dtype == ElemType::I64 {
            return Err(TrainError::Dtype { what: "loss seed".into(), dtype: dtype.name() });
        }
        let batch = targets.len();
        if !self.is_squared_error() {
            return Ok(LossInputs { seed: nll_seed(self.labels(targets)?, batch, classes, dtype)?, target: None });
        }
        let target = self.target_tensor(targets, classes, steps, dtype)?;
        let shape = vec![batch, classes];
        let seed = Tensor { shape: shape.clone(), dtype, data: vec![self.mean_grad(steps, dtype); batch * classes] };
        let scale = Tensor { shape, dtype, data: vec![Self::scale(batch * classes, dtype); batch * classes] };
        Ok(LossInputs { seed, target: Some((target, scale)) })
    }

    /// The loss of a batch from the module output it reads
    /// ([`Loss::prediction`]), in the output's precision: `nll_mean` of the
    /// log-probabilities (bit for bit torch's), or the mean squared error
    /// (mse-count: of the counts against their targets, divided by `steps`;
    /// exact for counts, which are integers).
    pub fn value(&self, prediction: &Tensor, targets: &Targets, steps: usize) -> Result<f64, TrainError> {
        match self {
            Loss::Nll | Loss::CeCount => nll_mean(prediction, self.labels(targets)?),
            Loss::MseCount { .. } | Loss::Mse => {
                let dtype = precision(prediction, "prediction")?;
                let classes = self.prediction_width(prediction, targets.len())?;
                let target = self.target_tensor(targets, classes, steps, dtype)?;
                let mse = mse_mean(prediction, &target)?;
                Ok(match (self, dtype) {
                    (Loss::Mse, _) => mse,
                    (_, ElemType::F32) => f64::from(mse as f32 / steps as f32),
                    _ => mse / steps as f64,
                })
            }
        }
    }

    /// The width `C` of a `[batch, C]` prediction.
    fn prediction_width(&self, prediction: &Tensor, batch: usize) -> Result<usize, TrainError> {
        match prediction.shape[..] {
            [b, c] if b == batch => Ok(c),
            _ => Err(TrainError::Shape {
                what: "prediction".into(),
                expected: format!("[{batch}, values]"),
                found: prediction.shape.clone(),
            }),
        }
    }

    /// How many samples the prediction classifies correctly (the class of
    /// the largest log-probability or count, the first on ties, as
    /// `torch.argmax`); `None` for mse, which has no classes.
    pub fn correct(&self, prediction: &Tensor, targets: &Targets) -> Result<Option<usize>, TrainError> {
        match self {
            Loss::Mse => Ok(None),
            _ => accuracy(prediction, self.labels(targets)?).map(Some),
        }
    }

    /// torch's gradient of the loss with respect to what torch
    /// differentiates, in its precision and order of operations: the
    /// log-probabilities (nll: [`nll_seed`]), the spike counts `[B, C]`
    /// (ce-count: `log_softmax` backward, `g - exp(log_p) · Σg` of the nll
    /// seed `g`; mse-count), or the readout (mse). The squared errors'
    /// formula is the one the training module evaluates.
    pub fn torch_grad(&self, input: &Tensor, targets: &Targets, steps: usize) -> Result<Tensor, TrainError> {
        let dtype = precision(input, "loss input")?;
        let classes = self.prediction_width(input, targets.len())?;
        input.check().map_err(|source| TrainError::BadTensor { what: "loss input".into(), source })?;
        let LossInputs { seed, target } = self.inputs(targets, classes, steps, dtype)?;
        let mut grad = seed.clone();
        match (self, target) {
            (Loss::Nll, _) => {}
            (Loss::CeCount, _) => {
                let log_p = log_softmax(input)?;
                for (g, lp) in grad.data.chunks_mut(classes).zip(log_p.data.chunks(classes)) {
                    match dtype {
                        ElemType::F32 => log_softmax_backward_row::<f32>(g, lp),
                        _ => log_softmax_backward_row::<f64>(g, lp),
                    }
                }
            }
            (_, Some((target, scale))) => {
                for (i, g) in grad.data.iter_mut().enumerate() {
                    *g = match dtype {
                        ElemType::F32 => squared_error_grad::<f32>(input.data[i], target.data[i], scale.data[i], *g),
                        _ => squared_error_grad::<f64>(input.data[i], target.data[i], scale.data[i], *g),
                    };
                }
            }
            (_, None) => return Err(self.error("internal error: a squared error without a target".into())),
        }
        Ok(grad)
    }
}

/// `_log_softmax_backward_data` on one row: `g - exp(out) · Σg`, the sum
/// left to right.
fn log_softmax_backward_row<T: Real>(g: &mut [f64], out: &[f64]) {
    let sum = g.iter().fold(T::ZERO, |acc, &v| acc + T::of(v));
    for (gi, &o) in g.iter_mut().zip(out) {
        *gi = (T::of(*gi) - T::of(o).exp() * sum).f64();
    }
}

/// `mse_loss_backward`'s `scale · (p − t) · g`, left to right.
fn squared_error_grad<T: Real>(p: f64, t: f64, scale: f64, g: f64) -> f64 {
    ((T::of(scale) * (T::of(p) - T::of(t))) * T::of(g)).f64()
}

#[cfg(test)]
mod oracle_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], dtype: ElemType, data: &[f64]) -> Tensor {
        Tensor::new(shape.to_vec(), dtype, data.to_vec()).unwrap()
    }

    /// `-(k * 0.013)` with `k = (7b + 13c) % 101`, rounded to `dtype` after
    /// each operation, and labels `3b % C`: the fixture fed to torch below.
    fn fixture(batch: usize, classes: usize, dtype: ElemType) -> (Tensor, Vec<u8>) {
        let data = (0..batch * classes)
            .map(|i| {
                let k = ((i / classes) * 7 + (i % classes) * 13) % 101;
                match dtype {
                    ElemType::F32 => f64::from(-(k as f32 * 0.013f32)),
                    _ => -(k as f64 * 0.013),
                }
            })
            .collect();
        let labels = (0..batch).map(|b| ((b * 3) % classes) as u8).collect();
        (Tensor::new(vec![batch, classes], dtype, data).unwrap(), labels)
    }

    #[test]
    fn nll_mean_by_hand() {
        let lp = t(&[2, 2], ElemType::F64, &[-0.5, -1.0, -2.0, -0.25]);
        assert_eq!(nll_mean(&lp, &[1, 0]).unwrap(), 1.5);
        let lp32 = lp.cast(ElemType::F32);
        assert_eq!(nll_mean(&lp32, &[0, 1]).unwrap(), 0.375);
        // (0.1 + 0.2) / 2 in f32 differs from f64.
        let lp = t(&[2, 1], ElemType::F32, &[-0.1, -0.2]);
        assert_eq!(nll_mean(&lp, &[0, 0]).unwrap(), f64::from((0.1f32 + 0.2f32) / 2.0));
        assert!(nll_mean(&Tensor::zeros(vec![0, 3], ElemType::F32), &[]).unwrap().is_nan());
    }

    #[test]
    fn nll_mean_matches_torch_bit_for_bit() {
        // F.nll_loss(x, labels) from torch 2.15 on CPU, x and labels from `fixture`.
        let cases = [
            (300, 10, ElemType::F32, 0.6266433000564575),
            (300, 10, ElemType::F64, 0.6266433333333333),
            (5, 3, ElemType::F32, 0.18200001120567322),
            (5, 3, ElemType::F64, 0.182),
            (1000, 7, ElemType::F32, 0.6602050065994263),
            (1000, 7, ElemType::F64, 0.6602049999999999),
        ];
        for (batch, classes, dtype, want) in cases {
            let (lp, labels) = fixture(batch, classes, dtype);
            assert_eq!(nll_mean(&lp, &labels).unwrap(), want, "{batch}x{classes} {dtype:?}");
        }
        // The cascade matters: summing left to right in f32 gives another value.
        let (lp, labels) = fixture(1000, 7, ElemType::F32);
        let naive = labels.iter().enumerate().fold(0.0f32, |s, (b, &y)| s - lp.data[b * 7 + usize::from(y)] as f32);
        assert_ne!(f64::from(naive / 1000.0), 0.6602050065994263);
    }

    #[test]
    fn nll_mean_of_the_golden_decoder() {
        // net_ff_decode_nll_f32: loss = nll_loss(log_p_y, [1, 3, 0]) as computed by torch.
        let log_p_y = [
            -1.26303231716156,
            -1.4418619871139526,
            -1.4334182739257812,
            -1.41788649559021,
            -1.0655018091201782,
            -1.5367567539215088,
            -1.508976936340332,
            -1.5176273584365845,
            -1.4082891941070557,
            -1.3962019681930542,
            -1.3690613508224487,
            -1.3721630573272705,
        ];
        let lp = t(&[3, 4], ElemType::F32, &log_p_y);
        assert_eq!(nll_mean(&lp, &[1, 3, 0]).unwrap(), 1.4559262990951538);
    }

    #[test]
    fn nll_seed_is_torchs_gradient() {
        let seed = nll_seed(&[2, 0], 2, 3, ElemType::F64).unwrap();
        assert_eq!((seed.shape.clone(), seed.data.clone()), (vec![2, 3], vec![0.0, 0.0, -0.5, -0.5, 0.0, 0.0]));
        // torch: log_probs.grad after F.nll_loss(log_probs, labels).backward().
        let seed = nll_seed(&[0; 300], 300, 10, ElemType::F32).unwrap();
        assert_eq!(seed.data[0], -0.0033333334140479565);
        assert_eq!(seed.dtype, ElemType::F32);
        let seed = nll_seed(&[1; 300], 300, 10, ElemType::F64).unwrap();
        assert_eq!(seed.data[1], -0.0033333333333333335);
        assert_eq!(nll_seed(&[0; 1000], 1000, 7, ElemType::F32).unwrap().data[0], -0.0010000000474974513);
    }

    #[test]
    fn log_softmax_and_cross_entropy_match_torch_closely() {
        let x = [1.0, 2.0, 3.0, 0.5, -1.0, 100.0, 0.0, 3.25];
        // torch.log_softmax(x, 1) from torch 2.15.
        let want32 = [
            -2.460773468017578,
            -1.4607734680175781,
            -0.4607734978199005,
            -2.960773468017578,
            -101.0,
            0.0,
            -100.0,
            -96.75,
        ];
        let want64 = [
            -2.460773489156851,
            -1.4607734891568511,
            -0.4607734891568512,
            -2.960773489156851,
            -101.0,
            0.0,
            -100.0,
            -96.75,
        ];
        for (dtype, want, ulp) in
            [(ElemType::F32, want32, f64::from(f32::EPSILON)), (ElemType::F64, want64, f64::EPSILON)]
        {
            let got = log_softmax(&t(&[2, 4], dtype, &x)).unwrap();
            assert_eq!((got.shape.clone(), got.dtype), (vec![2, 4], dtype));
            for (g, w) in got.data.iter().zip(want) {
                assert!((g - w).abs() <= 4.0 * ulp * w.abs().max(1.0), "{dtype:?}: {g} vs {w}");
            }
            let ce = cross_entropy_counts(&t(&[2, 4], dtype, &x), &[2, 1]).unwrap();
            let want_ce = if dtype == ElemType::F32 { 0.23038674890995026 } else { 0.2303867445784256 };
            assert!((ce - want_ce).abs() <= 4.0 * ulp, "{dtype:?}: {ce} vs {want_ce}");
        }
        // Spike counts as int64 are taken as float64.
        let counts = Tensor { shape: vec![1, 2], dtype: ElemType::I64, data: vec![3.0, 1.0] };
        let ce = cross_entropy_counts(&counts, &[0]).unwrap();
        assert!((ce - (1.0 + (-2.0f64).exp()).ln()).abs() < 1e-15);
        // Rank 1 and an empty last dimension.
        let v = log_softmax(&t(&[2], ElemType::F64, &[0.0, 0.0])).unwrap();
        assert_eq!(v.data, [-std::f64::consts::LN_2; 2]);
        assert!(log_softmax(&Tensor::zeros(vec![3, 0], ElemType::F32)).unwrap().is_empty());
    }

    #[test]
    fn log_softmax_of_the_golden_decoder() {
        // net_ff_decode_nll_f32: log_p_y = log_softmax(max over time of `output`).
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/net_ff_decode_nll_f32.json");
        let Ok(text) = std::fs::read_to_string(path) else {
            println!("skipped: {path} is missing");
            return;
        };
        let case: serde_json::Value = serde_json::from_str(&text).unwrap();
        let output = Tensor::from_json(&case["expected"]["output"]).unwrap();
        let want = Tensor::from_json(&case["expected"]["log_p_y"]).unwrap();
        let (steps, rest) = (output.shape[0], output.len() / output.shape[0]);
        let max: Vec<f64> = (0..rest)
            .map(|k| (0..steps).map(|s| output.data[s * rest + k]).fold(f64::NEG_INFINITY, f64::max))
            .collect();
        let got = log_softmax(&t(&want.shape, ElemType::F32, &max)).unwrap();
        for (g, w) in got.data.iter().zip(&want.data) {
            assert!((g - w).abs() <= 1e-6, "{g} vs {w}");
        }
        let targets: Vec<u8> = serde_json::from_value(case["loss"]["targets"].clone()).unwrap();
        let loss = nll_mean(&got, &targets).unwrap();
        assert!((loss - case["loss"]["value"].as_f64().unwrap()).abs() <= 1e-6);
    }

    #[test]
    fn mse_by_hand() {
        let a = t(&[3], ElemType::F32, &[1.0, 2.5, -3.0]);
        let b = t(&[3], ElemType::F32, &[0.5, 2.0, 1.0]);
        assert_eq!(mse_mean(&a, &b).unwrap(), 5.5); // (0.25 + 0.25 + 16) / 3
        let a = t(&[1], ElemType::F32, &[0.1]);
        let b = t(&[1], ElemType::F64, &[0.0]);
        assert_eq!(mse_mean(&a, &b).unwrap(), f64::from(0.1f32) * f64::from(0.1f32));
        let e = mse_mean(&a, &t(&[2], ElemType::F32, &[0.0, 0.0])).unwrap_err().to_string();
        assert_eq!(e, "mse target: expected shape [1], found [2]");
        assert!(
            mse_mean(&Tensor::zeros(vec![0], ElemType::F32), &Tensor::zeros(vec![0], ElemType::F32)).unwrap().is_nan()
        );
    }

    #[test]
    fn argmax_and_accuracy_take_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1)); // torch.argmax: 1
        assert_eq!(argmax(&[1.0, f64::NAN, 3.0, f64::NAN]), Some(1)); // torch.argmax: 1
        assert_eq!(argmax(&[f64::NEG_INFINITY, f64::NEG_INFINITY]), Some(0));
        assert_eq!(argmax(&[]), None);
        let scores = t(&[3, 3], ElemType::F32, &[0.0, 1.0, 1.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(accuracy(&scores, &[1, 0, 0]).unwrap(), 3);
        assert_eq!(accuracy(&scores, &[2, 1, 2]).unwrap(), 0);
        let counts = Tensor { shape: vec![1, 2], dtype: ElemType::I64, data: vec![1.0, 4.0] };
        assert_eq!(accuracy(&counts, &[1]).unwrap(), 1);
    }

    #[test]
    fn bad_input_is_an_error() {
        let lp = t(&[2, 3], ElemType::F32, &[0.0; 6]);
        let e = nll_mean(&lp, &[0]).unwrap_err().to_string();
        assert_eq!(e, "log-probabilities: expected shape [1, classes], found [2, 3]");
        let e = nll_mean(&lp, &[0, 3]).unwrap_err().to_string();
        assert_eq!(e, "label 3 of sample 1 is out of range for 3 classes");
        let e = nll_mean(&t(&[6], ElemType::F32, &[0.0; 6]), &[0]).unwrap_err().to_string();
        assert_eq!(e, "log-probabilities: expected shape [1, classes], found [6]");
        let ints = Tensor { shape: vec![1, 1], dtype: ElemType::I64, data: vec![0.0] };
        let e = nll_mean(&ints, &[0]).unwrap_err().to_string();
        assert_eq!(e, "log-probabilities: int64 tensors are not supported here; expected float32 or float64");
        let bad = Tensor { shape: vec![1, 2], dtype: ElemType::F32, data: vec![0.0] };
        assert_eq!(
            nll_mean(&bad, &[0]).unwrap_err().to_string(),
            "log-probabilities: tensor data has 1 elements but shape [1, 2] needs 2"
        );
        assert!(accuracy(&bad, &[0]).is_err());
        assert!(log_softmax(&bad).is_err());
        assert_eq!(
            nll_seed(&[0, 1], 3, 2, ElemType::F32).unwrap_err().to_string(),
            "labels: expected shape [3], found [2]"
        );
        assert!(nll_seed(&[5], 1, 2, ElemType::F32).is_err());
        assert!(nll_seed(&[0], 1, 2, ElemType::I64).is_err());
        let scalar = Tensor { shape: vec![], dtype: ElemType::F32, data: vec![1.0] };
        assert_eq!(
            log_softmax(&scalar).unwrap_err().to_string(),
            "log_softmax input: expected shape rank 1 or more, found []"
        );
    }
    #[test]
    fn each_loss_gradient_is_the_derivative_of_its_value() {
        // Central differences in f64 of `value` against `torch_grad`, at
        // non-integer "counts" (the formulas do not need integers).
        let counts = t(&[2, 3], ElemType::F64, &[1.5, 0.25, 3.0, 0.0, 2.0, 2.0]);
        let values = Targets::Values { per_sample: vec![3], data: vec![0.5, -1.0, 2.0, 0.0, 1.0, 4.0] };
        let classes = Targets::Classes(vec![2, 0]);
        let cases = [
            (Loss::CeCount, &classes, true),
            (Loss::MseCount { correct_rate: 0.75, incorrect_rate: 0.25 }, &classes, false),
            (Loss::Mse, &values, false),
        ];
        for (loss, targets, log_p) in cases {
            let value = |x: &Tensor| {
                let p = if log_p { log_softmax(x).unwrap() } else { x.clone() };
                loss.value(&p, targets, 5).unwrap()
            };
            let grad = loss.torch_grad(&counts, targets, 5).unwrap();
            for i in 0..counts.len() {
                let h = 1e-6;
                let (mut up, mut down) = (counts.clone(), counts.clone());
                up.data[i] += h;
                down.data[i] -= h;
                let fd = (value(&up) - value(&down)) / (2.0 * h);
                assert!((fd - grad.data[i]).abs() < 1e-8, "{}: element {i}: {fd} vs {}", loss.name(), grad.data[i]);
            }
        }
    }

    #[test]
    fn squared_errors_feed_their_targets_and_scale() {
        let loss = Loss::MseCount { correct_rate: 0.75, incorrect_rate: 0.25 };
        // T = 5: int(3.75) = 3 at the label, int(1.25) = 1 elsewhere.
        let inputs = loss.inputs(&Targets::Classes(vec![1, 0]), 3, 5, ElemType::F32).unwrap();
        let (target, scale) = inputs.target.unwrap();
        assert_eq!(target.data, [1.0, 3.0, 1.0, 3.0, 1.0, 1.0]);
        assert_eq!(scale.data, [f64::from(2.0f32 / 6.0); 6]);
        assert_eq!(inputs.seed.data, [f64::from(1.0f32 / 5.0); 6]);
        assert_eq!((inputs.seed.shape.clone(), inputs.seed.dtype), (vec![2, 3], ElemType::F32));
        // The value divides the mean squared error by T: counts 1, 3 against
        // targets 3, 1 and 1, 1, 1, 1: (4 + 4) / 6 / 5.
        let counts = t(&[2, 3], ElemType::F32, &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        let v = loss.value(&counts, &Targets::Classes(vec![1, 0]), 5).unwrap();
        assert_eq!(v, f64::from((8.0f32 / 6.0) / 5.0));
        let mse = Loss::Mse.inputs(&Targets::Values { per_sample: vec![1], data: vec![1.0, 2.0] }, 1, 9, ElemType::F32);
        let mse = mse.unwrap();
        assert_eq!((mse.seed.data.clone(), mse.target.unwrap().0.data), (vec![1.0, 1.0], vec![1.0, 2.0]));
        // The cross-entropies seed their log-probabilities with the nll seed.
        let ce = Loss::CeCount.inputs(&Targets::Classes(vec![1]), 2, 4, ElemType::F32).unwrap();
        assert_eq!((ce.seed.data, ce.target), (vec![0.0, -1.0], None));
    }

    #[test]
    fn count_accuracy_takes_the_first_most_spiking_class_and_mse_has_none() {
        let counts = t(&[3, 3], ElemType::F32, &[2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 1.0, 3.0, 3.0]);
        let labels = Targets::Classes(vec![0, 0, 2]);
        for loss in [Loss::CeCount, Loss::MseCount { correct_rate: 1.0, incorrect_rate: 0.0 }] {
            // Ties go to the first class (torch.argmax): 0, 0 (silent), 1.
            assert_eq!(loss.correct(&counts, &labels).unwrap(), Some(2));
        }
        let values = Targets::Values { per_sample: vec![3], data: vec![0.0; 9] };
        assert_eq!(Loss::Mse.correct(&counts, &values).unwrap(), None);
    }

    #[test]
    fn a_loss_given_the_wrong_targets_or_rates_says_what_fits() {
        let x = t(&[1, 2], ElemType::F32, &[0.0, 1.0]);
        let e = Loss::Mse.value(&x, &Targets::Classes(vec![1]), 4).unwrap_err().to_string();
        assert_eq!(
            e,
            "--loss mse: needs float targets, one per readout value (from `--data FILE.npz` with a float `y_train`); \
             the image data sets give class labels: use --loss nll, ce-count or mse-count"
        );
        let values = Targets::Values { per_sample: vec![2], data: vec![0.0, 1.0] };
        let e = Loss::CeCount.inputs(&values, 2, 4, ElemType::F32).unwrap_err().to_string();
        assert_eq!(e, "--loss ce-count: compares with class labels, but the data gives float targets: use --loss mse");
        let wide = Targets::Values { per_sample: vec![3], data: vec![0.0; 3] };
        let e = Loss::Mse.value(&x, &wide, 4).unwrap_err().to_string();
        assert_eq!(e, "mse targets of a sample: expected shape [2] (the readout's values per sample), found [3]");
        let e = Loss::MseCount { correct_rate: 1.5, incorrect_rate: 0.0 }.check().unwrap_err().to_string();
        assert_eq!(
            e,
            "--loss mse-count: --correct-rate must be in [0, 1] (the fraction of the steps that should spike), not 1.5"
        );
        assert!(Loss::MseCount { correct_rate: 1.0, incorrect_rate: f64::NAN }.check().is_err());
        assert!(Loss::MseCount { correct_rate: 0.0, incorrect_rate: 1.0 }.check().is_ok());
        assert!(
            Loss::MseCount { correct_rate: 1.0, incorrect_rate: 0.0 }
                .inputs(&Targets::Classes(vec![3]), 3, 4, ElemType::F32)
                .is_err()
        );
    }

    #[test]
    fn losses_are_recorded_by_name_and_settings() {
        let json = |l: Loss| serde_json::to_value(l).unwrap();
        assert_eq!(json(Loss::Nll), serde_json::json!({"type": "nll"}));
        assert_eq!(
            json(Loss::MseCount { correct_rate: 1.0, incorrect_rate: 0.0 }),
            serde_json::json!({"type": "mse-count", "correct_rate": 1.0, "incorrect_rate": 0.0})
        );
        for l in [Loss::Nll, Loss::CeCount, Loss::Mse, Loss::MseCount { correct_rate: 0.5, incorrect_rate: 0.25 }] {
            assert_eq!(serde_json::from_value::<Loss>(json(l)).unwrap(), l);
            assert_eq!(json(l)["type"], l.name());
        }
    }
}
