//! [`Loss`] against torch and snnTorch: `tests/fixtures/losses.json`, written
//! by `scripts/loss_oracle.py` (torch 2.15 and snnTorch 1.0.0 on CPU).
//!
//! Bit for bit: every value and gradient of nll and mse-count, the
//! gradient of mse (torch's order of operations is reproduced; counts are
//! integers, so their squared errors are exact). Within a bound: ce-count
//! (torch's `log_softmax` and `exp` are vectorised with SLEEF, so the
//! log-probabilities are a few ulp apart: the value within 4 ulp, each
//! gradient within 4 ulp of `1 / B` or the largest magnitude in its row, as
//! the label's `p / B - 1 / B` cancels the high bits of `p / B`), and the value
//! of mse (torch sums in SIMD lanes; within 2 ulp).

use super::*;

struct Case {
    loss: Loss,
    dtype: ElemType,
    steps: usize,
    input: Tensor,
    targets: Targets,
    value: f64,
    grad: Tensor,
}

fn tensor(v: &serde_json::Value, dtype: ElemType) -> Tensor {
    let shape = serde_json::from_value(v["shape"].clone()).unwrap();
    let data = serde_json::from_value(v["data"].clone()).unwrap();
    Tensor::new(shape, dtype, data).unwrap()
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/losses.json");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let dtype = if c["dtype"] == "float32" { ElemType::F32 } else { ElemType::F64 };
            let loss = match c["loss"].as_str().unwrap() {
                "nll" => Loss::Nll,
                "ce-count" => Loss::CeCount,
                "mse-count" => Loss::MseCount {
                    correct_rate: c["correct_rate"].as_f64().unwrap(),
                    incorrect_rate: c["incorrect_rate"].as_f64().unwrap(),
                },
                _ => Loss::Mse,
            };
            let targets = match c.get("labels") {
                Some(l) => Targets::Classes(serde_json::from_value(l.clone()).unwrap()),
                None => {
                    let t = tensor(&c["targets"], ElemType::F32);
                    Targets::Values { per_sample: t.shape[1..].to_vec(), data: t.to_f32() }
                }
            };
            Case {
                loss,
                dtype,
                steps: c["steps"].as_u64().unwrap_or(1) as usize,
                input: tensor(&c["input"], dtype),
                targets,
                value: c["value"].as_f64().unwrap(),
                grad: tensor(&c["grad"], dtype),
            }
        })
        .collect()
}

/// Spikes `[T, B, C]` summed over time (exact: they are 0 or 1).
fn counts(spikes: &Tensor) -> Tensor {
    let (steps, rest) = (spikes.shape[0], spikes.len() / spikes.shape[0]);
    let data = (0..rest).map(|k| (0..steps).map(|t| spikes.data[t * rest + k]).sum()).collect();
    Tensor::new(spikes.shape[1..].to_vec(), spikes.dtype, data).unwrap()
}

fn ulp(dtype: ElemType) -> f64 {
    if dtype == ElemType::F32 { f64::from(f32::EPSILON) } else { f64::EPSILON }
}

#[test]
fn every_loss_matches_torch_and_snntorch() {
    let cases = cases();
    assert_eq!(cases.len(), 46);
    let mut seen = std::collections::BTreeSet::new();
    for c in &cases {
        let what = format!("{} {:?} {:?}", c.loss.name(), c.dtype, c.input.shape);
        seen.insert(c.loss.name());
        let eps = ulp(c.dtype);
        match c.loss {
            Loss::Nll => {
                assert_eq!(c.loss.value(&c.input, &c.targets, c.steps).unwrap(), c.value, "{what}");
                assert_eq!(c.loss.torch_grad(&c.input, &c.targets, c.steps).unwrap(), c.grad, "{what}");
            }
            Loss::CeCount => {
                let counts = counts(&c.input);
                let log_p = log_softmax(&counts).unwrap();
                let value = c.loss.value(&log_p, &c.targets, c.steps).unwrap();
                assert!((value - c.value).abs() <= 4.0 * eps * c.value.abs(), "{what}: {value} vs {}", c.value);
                let grad = c.loss.torch_grad(&counts, &c.targets, c.steps).unwrap();
                let classes = counts.shape[1];
                for (g, w) in grad.data.chunks(classes).zip(c.grad.data.chunks(classes)) {
                    let row = w.iter().fold(1.0 / counts.shape[0] as f64, |m, x| m.max(x.abs()));
                    for (a, b) in g.iter().zip(w) {
                        assert!((a - b).abs() <= 4.0 * eps * row, "{what}: {a} vs {b}");
                    }
                }
            }
            Loss::MseCount { .. } => {
                let counts = counts(&c.input);
                assert_eq!(c.loss.value(&counts, &c.targets, c.steps).unwrap(), c.value, "{what}");
                assert_eq!(c.loss.torch_grad(&counts, &c.targets, c.steps).unwrap(), c.grad, "{what}");
            }
            Loss::Mse => {
                let value = c.loss.value(&c.input, &c.targets, c.steps).unwrap();
                assert!((value - c.value).abs() <= 2.0 * eps * c.value.abs(), "{what}: {value} vs {}", c.value);
                assert_eq!(c.loss.torch_grad(&c.input, &c.targets, c.steps).unwrap(), c.grad, "{what}");
            }
        }
    }
    assert_eq!(seen.len(), 4);
}
