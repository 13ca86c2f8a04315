//! NIR import against the producers' own numbers (`docs/nir.md`, "Tested
//! against the producers"): `tests/fixtures/nir_golden.json`, written once
//! by `scripts/nir_golden.py` with norse 1.1.0, snntorch 1.0.0, nir 1.0.8,
//! nirtorch 2.6 and torch, holds for real files of `tests/nir/` a seeded
//! spike input and what the producer's package computed from it, per step
//! (output and hidden spikes). snnc reads the same file with the matching
//! `--nir-from`, dt and steps and runs it on the interpreter and the CPU
//! backend in f32.
//!
//! Spikes must agree exactly. The producers compute in f32 too, but their
//! matrix products sum in another order (torch's BLAS against snnc's loop
//! on the interpreter and `gemm` on the CPU) and they fold the constants
//! differently (snnTorch's `beta = 1 - dt/tau` is rounded to f32 once,
//! snnc's `β·v` and `(r·dt/tau)·x` are products of f64 constants rounded to
//! f32): a membrane voltage may differ by a few ulps, so a spike could flip
//! where a voltage is within about 1e-5 of its threshold. None does for
//! these inputs; the real-valued outputs (the neurocuda MLP's last Affine)
//! are compared to 1e-5 relative, for the same reason, and the snnTorch
//! cases' membrane voltages to [`VOLTAGE_TOLERANCE`].
//!
//! The `snntorch-importer` cases are snnTorch's `import_nir` modules as
//! they are built (reset to zero, at once): snnc's `snntorch` convention
//! reproduces snnTorch's defaults (reset by subtraction, one step late),
//! which the braille models were trained with, so the importer's numbers
//! are checked only up to the first spike of any layer, included, before
//! the reset rules have acted, and later differences are asserted to exist
//! (the known quirk).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use snnc::driver::{self, Target};
use snnc::nir_import;
use snnc_frontend::LowerOptions;
use snnc_frontend::nir::{NirOptions, Producer};
use snnc_ir::Dtype;
use snnc_runtime::{ElemType, Tensor};

/// One case of the fixture.
struct Case {
    name: String,
    file: String,
    producer: String,
    convention: Producer,
    dt: f64,
    steps: u32,
    input: Tensor,
    output: Tensor,
    /// The producer's module name → its spikes `[T, B, n]`.
    hidden: BTreeMap<String, Vec<f64>>,
    /// The producer's module name → its membrane voltage after each step
    /// `[T, B, n]` (snnTorch's defaults only).
    hidden_v: BTreeMap<String, Vec<f64>>,
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/nir_golden.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let nums = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<f64>>();
    let shape = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect::<Vec<_>>();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            file: c["file"].as_str().unwrap().to_string(),
            producer: c["producer"].as_str().unwrap().to_string(),
            convention: Producer::from_name(c["convention"].as_str().unwrap()).unwrap(),
            dt: c["dt"].as_f64().unwrap(),
            steps: c["steps"].as_u64().unwrap() as u32,
            input: Tensor::new(shape(&c["input_shape"]), ElemType::F32, nums(&c["input"])).unwrap(),
            output: Tensor::new(shape(&c["output_shape"]), ElemType::F32, nums(&c["output"])).unwrap(),
            hidden: c["hidden"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), nums(v))).collect(),
            hidden_v: c
                .get("hidden_v")
                .and_then(Value::as_object)
                .map(|o| o.iter().map(|(k, v)| (k.clone(), nums(v))).collect())
                .unwrap_or_default(),
        })
        .collect()
}

/// snnc's layer for a producer's module name in each case.
fn layer(case: &str, module: &str) -> String {
    match (case, module) {
        (c, "1") if c.starts_with("lif_norse") => "output".into(),
        // Spyx nests the recurrence as graph `lif1` holding node `lif1`.
        (c, "lif1") if c.starts_with("spyx") => "lif1_lif1".into(),
        (_, "lif1") => "lif1_lif".into(),
        (_, m) => m.to_string(),
    }
}

/// Runs a case's file through snnc on `target`: the output and every trace.
fn run_snnc(c: &Case, target: Target) -> (Tensor, BTreeMap<String, Tensor>) {
    let path = format!("{}/tests/nir/{}", env!("CARGO_MANIFEST_DIR"), c.file);
    let path = Path::new(&path);
    let o = NirOptions { producer: c.convention, steps: Some(c.steps), dt: Some(c.dt) };
    let imported = nir_import::import(path, &o).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let mut comp = driver::compile(&imported.network, "t", &LowerOptions { float: Dtype::F32, ..Default::default() })
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let pipeline = driver::pipeline(target, None, &Default::default()).unwrap();
    driver::optimize(&mut comp, &pipeline, &mut |_| {}).unwrap();
    let weights = nir_import::module_weights(&comp.module, path, &imported.weights).unwrap();
    let inputs = BTreeMap::from([("x".to_string(), c.input.clone())]);
    let res = driver::run(&comp, target, &weights, &inputs, true).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    (res.outputs["output"].clone(), res.traces)
}

/// The steps `(t, b, i)` where two `[T, B, n]` spike trains differ.
fn spike_diffs(a: &[f64], b: &[f64], shape: &[usize]) -> Vec<(usize, usize, usize)> {
    let (bn, n) = (shape[1] * shape[2], shape[2]);
    (0..a.len()).filter(|&k| a[k] != b[k]).map(|k| (k / bn, (k % bn) / n, k % n)).collect()
}

/// The first step at which `spikes` (`[T, B, n]`) has a spike.
fn first_spike(spikes: &[f64], shape: &[usize]) -> usize {
    let bn = shape[1] * shape[2];
    spikes.iter().position(|&v| v != 0.0).map_or(shape[0], |k| k / bn)
}

fn check(c: &Case, target: Target) {
    let (out, traces) = run_snnc(c, target);
    assert_eq!(out.shape, c.output.shape, "{}: output shape", c.name);
    let spiking = c.output.data.iter().all(|&v| v == 0.0 || v == 1.0);
    let tag = format!("{} on {target:?}", c.name);
    if c.producer == "snntorch-importer" {
        // The known quirk: reset to zero (at once in `Synaptic`). Up to the
        // step of the first spike of any layer, included, no reset has
        // acted yet: there the rules agree.
        let trains: Vec<(&str, &Tensor, &[f64])> = std::iter::once(("output", &out, c.output.data.as_slice()))
            .chain(c.hidden.iter().map(|(m, want)| {
                let l = layer(&c.name, m);
                let got = if l == "output" { &out } else { &traces[&format!("{l}.z")] };
                (m.as_str(), got, want.as_slice())
            }))
            .collect();
        let first = trains.iter().map(|(_, got, want)| first_spike(want, &got.shape)).min().unwrap();
        assert!(first + 1 < c.steps as usize, "{tag}: the comparison window is the whole run");
        for (m, got, want) in &trains {
            let bn = got.shape[1] * got.shape[2];
            let until = (first + 1) * bn;
            assert_eq!(&got.data[..until], &want[..until], "{tag}: `{m}` before the first reset");
        }
        let later = spike_diffs(&out.data, &c.output.data, &out.shape).len();
        assert!(later > 0, "{tag}: the importer's reset should differ from snnTorch's defaults");
        return;
    }
    if spiking {
        let d = spike_diffs(&out.data, &c.output.data, &out.shape);
        assert!(d.is_empty(), "{tag}: output spikes differ at (t, b, i) {:?}", &d[..d.len().min(10)]);
    } else {
        for (k, (a, b)) in out.data.iter().zip(&c.output.data).enumerate() {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{tag}: output[{k}] {a} vs {b}");
        }
    }
    for (module, want) in &c.hidden {
        let l = layer(&c.name, module);
        let got = if l == "output" { &out } else { &traces[&format!("{l}.z")] };
        assert_eq!(got.data.len(), want.len(), "{tag}: {l}.z size, shape {:?}", got.shape);
        let d = spike_diffs(&got.data, want, &got.shape);
        assert!(d.is_empty(), "{tag}: {l}.z differs from {module} at (t, b, i) {:?}", &d[..d.len().min(10)]);
        assert!(want.iter().any(|&v| v != 0.0), "{tag}: {module} never spikes: a weak test");
    }
    for (module, want) in &c.hidden_v {
        let l = layer(&c.name, module);
        let got = &traces[&format!("{l}.v")];
        assert_eq!(got.data.len(), want.len(), "{tag}: {l}.v size, shape {:?}", got.shape);
        let worst = got.data.iter().zip(want).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0, f64::max);
        assert!(want.iter().filter(|&&v| v != 0.0).count() > want.len() / 2, "{tag}: {module}: a weak test");
        assert!(worst <= VOLTAGE_TOLERANCE, "{tag}: {l}.v differs from {module}'s membrane by {worst:e} (relative)");
    }
}

/// How far snnc's membrane voltages may be from snnTorch's, relative to
/// `1 + |v|`: both compute in f32, but the matrix products sum in another
/// order, snnc multiplies by `r·dt/tau_mem` (0.99999976 for the
/// `bias_zero` file's f32 `r`) where snnTorch's importer takes 1, and snnc
/// sums `gs·(x + W_rec·z)` where snnTorch sums `(α·syn + x) + W_rec·z`.
/// Measured: at most 6.1e-7 (the recurrent layers; the output layers agree
/// to the bit), on the interpreter and the CPU backend alike.
const VOLTAGE_TOLERANCE: f64 = 2e-6;

#[test]
fn the_fixture_covers_norse_snntorch_and_an_if_file() {
    let cs = cases();
    let has = |f: &str, p: &str| cs.iter().any(|c| c.file == f && c.producer == p);
    assert!(has("NIR_lif_norse.nir", "norse"));
    assert!(has("nirrs_neurocuda_mlp_mnist.nir", "norse"));
    assert!(has("NIR_braille_noDelay_noBias_subtract.nir", "snntorch-defaults"));
    assert!(has("NIR_braille_noDelay_bias_zero.nir", "snntorch-defaults"));
    assert!(has("spyx_braille_noDelay_noBias_subtract_subgraph.nir", "snntorch-defaults"));
    assert!(cs.iter().all(|c| c.output.data.iter().any(|&v| v != 0.0)), "every case has output");
}

/// The Norse cases (`NIR_lif_norse.nir`, the neurocuda MLP's IF/Affine).
fn norse_cases() -> Vec<Case> {
    cases().into_iter().filter(|c| c.producer == "norse").collect()
}

/// The snnTorch cases (the braille files).
fn snntorch_cases() -> Vec<Case> {
    cases().into_iter().filter(|c| c.producer != "norse").collect()
}

#[test]
fn snnc_agrees_with_norse_on_interp() {
    for c in norse_cases() {
        check(&c, Target::Interp);
    }
}

#[test]
fn snnc_agrees_with_norse_on_cpu() {
    for c in norse_cases() {
        check(&c, Target::Cpu);
    }
}

// snnTorch's own modules with its defaults (`Synaptic`/`RSynaptic`, reset by subtraction one
// step late, the recurrent weights applied within the step to the previous step's spikes).
#[test]
fn snnc_agrees_with_snntorch_on_interp() {
    for c in snntorch_cases() {
        check(&c, Target::Interp);
    }
}

#[test]
fn snnc_agrees_with_snntorch_on_cpu() {
    for c in snntorch_cases() {
        check(&c, Target::Cpu);
    }
}
