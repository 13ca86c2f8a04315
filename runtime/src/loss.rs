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

use crate::real::Real;
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
}
