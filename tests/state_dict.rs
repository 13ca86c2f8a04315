//! A network trained in Norse runs in snnc with Norse's numbers: the seed
//! MNIST tutorial's network (32 hidden neurons) trained by
//! `scripts/norse/state_dict_fixture.py` in Norse 1.1.0, its `state_dict()`
//! saved with `safetensors.torch.save_file`, run by `snnc run --weights
//! model.safetensors --rename-map rename.txt --input images.npy` on 16 MNIST
//! digits (the fixture's README says where they come from). The outputs are
//! Norse's within float32 rounding and every class is the same.

mod support;

use serde_json::Value;
use support::{TempDir, snnc, stderr};

const DIR: &str = "tests/fixtures/state_dict";

fn tensor(v: &Value, name: &str) -> (Vec<usize>, Vec<f64>) {
    let t = &v[name];
    let shape = t["shape"].as_array().unwrap_or_else(|| panic!("`{name}` has a shape")).iter();
    let data = t["data"].as_array().unwrap_or_else(|| panic!("`{name}` has data")).iter();
    (shape.map(|d| d.as_u64().unwrap() as usize).collect(), data.map(|x| x.as_f64().unwrap()).collect())
}

fn max_abs_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The index of each row's first maximum.
fn classes(data: &[f64], per_row: usize) -> Vec<usize> {
    data.chunks(per_row)
        .map(|row| row.iter().enumerate().fold(0, |best, (i, &x)| if x > row[best] { i } else { best }))
        .collect()
}

#[test]
fn a_norse_state_dict_runs_with_norses_outputs() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/expected.json")).unwrap()).unwrap();
    let dir = TempDir::new("state-dict");
    let record = dir.path("rec.json");
    for target in ["cpu", "interp"] {
        let o = snnc(&[
            "run",
            &format!("{DIR}/tutorial_small.ron"),
            "--target",
            target,
            "--weights",
            &format!("{DIR}/model.safetensors"),
            "--rename-map",
            &format!("{DIR}/rename.txt"),
            "--input",
            &format!("{DIR}/images.npy"),
            "--record",
            &record,
        ]);
        assert_eq!(o.status.code(), Some(0), "{target}: {}", stderr(&o));
        let got: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();

        // The decoder's log-probabilities, [16, 10], and the LI voltages of
        // every step, [32, 16, 10]: Norse's within f32 rounding (the input
        // products sum 784 terms in another order).
        let (want_shape, want) = tensor(&expected, "log_probs");
        let (shape, readout) = tensor(&got, "readout");
        assert_eq!(shape, want_shape, "{target}");
        let d = max_abs_difference(&readout, &want);
        assert!(d <= 1e-5, "{target}: log-probabilities differ from Norse's by {d}");
        let (want_shape, want) = tensor(&expected, "voltages");
        let (shape, voltages) = tensor(&got, "output");
        assert_eq!(shape, want_shape, "{target}");
        let d = max_abs_difference(&voltages, &want);
        assert!(d <= 1e-5, "{target}: voltages differ from Norse's by {d}");

        let want_classes: Vec<usize> =
            expected["predictions"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap() as usize).collect();
        assert_eq!(classes(&readout, 10), want_classes, "{target}: the classes are Norse's");
    }
}

#[test]
fn the_state_dict_without_its_renames_names_the_missing_weights() {
    let o = snnc(&[
        "run",
        &format!("{DIR}/tutorial_small.ron"),
        "--weights",
        &format!("{DIR}/model.safetensors"),
        "--input",
        &format!("{DIR}/images.npy"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("lif1.input_weights") && err.contains("--rename"), "{err}");
}
