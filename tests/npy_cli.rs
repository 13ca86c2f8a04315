//! NumPy files on the command line: `snnc run --input x.npy|x.npz` runs as
//! the same input in JSON does (bit for bit), `--record out.npz` holds what
//! the JSON recording holds, `--profile` reads either, and bad files,
//! wrong shapes, object and record arrays are the user's errors (exit 2)
//! naming the file and the fix. The NumPy-written input is
//! `tests/fixtures/npy/lif_input.npy` (scripts/make_npy_fixtures.py).

use std::collections::BTreeMap;
use std::path::Path;

use snnc_runtime::npy::{read_npz, write_npy, write_npz};
use snnc_runtime::{ElemType, Tensor};

mod support;
use support::{TempDir, snnc, stderr, stdout};

const LIF: &str = "examples/lif.ron";
const NUMPY_INPUT: &str = "tests/fixtures/npy/lif_input.npy";

/// The input NumPy wrote: [100, 1, 5] currents 0, 0.5, 1, 1.5, 2.
fn lif_input() -> Tensor {
    let row = [0.0, 0.5, 1.0, 1.5, 2.0];
    Tensor::new(vec![100, 1, 5], ElemType::F32, (0..100).flat_map(|_| row).collect()).unwrap()
}

/// `snnc run NET --target TARGET ARGS`, which must succeed; its output
/// without the timing (the first line) and the input line (which names the file).
fn run_ok(net: &str, target: &str, args: &[&str]) -> String {
    let mut all = vec!["run", net, "--target", target];
    all.extend_from_slice(args);
    let o = snnc(&all);
    assert!(o.status.success(), "{all:?}: {}", stderr(&o));
    stdout(&o)
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("input: ") && !l.starts_with("recorded "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_err(net: &str, args: &[&str]) -> String {
    let mut all = vec!["run", net, "--target", "interp"];
    all.extend_from_slice(args);
    let o = snnc(&all);
    assert_eq!(o.status.code(), Some(2), "{all:?}: {}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A JSON recording's tensors, by name (the metadata left out).
fn json_recording(path: &str) -> BTreeMap<String, Tensor> {
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    value
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != snnc::plot::META_KEY)
        .map(|(k, v)| (k.clone(), Tensor::from_json(v).unwrap()))
        .collect()
}

fn npz_recording(path: &str) -> BTreeMap<String, Tensor> {
    read_npz(Path::new(path)).unwrap().into_iter().map(|(k, a)| (k.clone(), a.to_tensor(&k).unwrap())).collect()
}

#[test]
fn npy_and_npz_inputs_run_as_json_does() {
    let dir = TempDir::new("inputs");
    let x = lif_input();
    let json = dir.write("x.json", x.to_json().to_string());
    let npz = dir.path("x.npz");
    write_npz(Path::new(&npz), &[("x".into(), &x)]).unwrap();
    // A single array under another name is the network's one input.
    let other = dir.path("other.npz");
    write_npz(Path::new(&other), &[("currents".into(), &x)]).unwrap();
    for target in ["interp", "cpu"] {
        let rec_json = dir.path(&format!("{target}.json"));
        let expected = run_ok(LIF, target, &["--input", &json, "--record", &rec_json]);
        assert!(expected.contains("lif"), "{expected}");
        let recording = json_recording(&rec_json);
        for input in [NUMPY_INPUT, &npz, &other] {
            let rec_npz = dir.path(&format!("{target}.npz"));
            assert_eq!(run_ok(LIF, target, &["--input", input, "--record", &rec_npz]), expected, "{input}");
            // Bit for bit: every trace and output, with its dtype and shape.
            assert_eq!(npz_recording(&rec_npz), recording, "{target} {input}");
        }
        assert!(recording.contains_key("output") && recording.contains_key("lif.v"), "{:?}", recording.keys());
    }
}

#[test]
fn an_encoder_network_takes_a_batch_of_samples() {
    let dir = TempDir::new("encoder");
    // poisson.ron: input [2] per sample, through a Poisson encoder.
    let x = Tensor::from_f32(vec![3, 2], &[0.0, 1.0, 0.25, 0.75, 0.5, 0.5]).unwrap();
    let json = dir.write("x.json", x.to_json().to_string());
    let npy = dir.path("x.npy");
    write_npy(Path::new(&npy), &x).unwrap();
    let expected = run_ok("tests/nets/poisson.ron", "interp", &["--input", &json]);
    assert_eq!(run_ok("tests/nets/poisson.ron", "interp", &["--input", &npy]), expected);
    // The per-step form is refused, naming the file and the shape expected.
    let err = run_err("tests/nets/poisson.ron", &["--input", NUMPY_INPUT]);
    assert!(
        err.contains(&format!("{NUMPY_INPUT}: input `x` has shape [100, 1, 5] but the module expects [B, 2]")),
        "{err}"
    );
    assert!(err.contains("save the array in that shape"), "{err}");
}

#[test]
fn f64_inputs_run_in_f64() {
    let dir = TempDir::new("f64");
    let x = lif_input().cast(ElemType::F64);
    let json = dir.write("x.json", x.to_json().to_string());
    let npy = dir.path("x.npy");
    write_npy(Path::new(&npy), &x).unwrap();
    let expected = run_ok(LIF, "interp", &["--f64", "--input", &json]);
    assert_eq!(run_ok(LIF, "interp", &["--f64", "--input", &npy]), expected);
}

#[test]
fn bad_inputs_are_the_users_errors() {
    let dir = TempDir::new("bad");
    let x = lif_input();
    let wrong = dir.path("wrong.npy");
    write_npy(Path::new(&wrong), &Tensor::zeros(vec![100, 1, 4], ElemType::F32)).unwrap();
    let err = run_err(LIF, &["--input", &wrong]);
    assert!(err.contains("wrong.npy: input `x` has shape [100, 1, 4] but the module expects [T=100, B, 5]"), "{err}");

    let mut nan = x.clone();
    nan.data[7] = f64::NAN;
    let nan_path = dir.path("nan.npy");
    write_npy(Path::new(&nan_path), &nan).unwrap();
    let err = run_err(LIF, &["--input", &nan_path]);
    assert!(err.contains("input `x` holds NaN at element [1, 0, 2] (data[7]); values must be finite"), "{err}");

    let err = run_err(LIF, &["--input", "tests/fixtures/npy/object.npy"]);
    assert!(err.contains("tests/fixtures/npy/object.npy: the array holds Python objects"), "{err}");
    assert!(err.contains("pickled objects are not read; save numeric arrays"), "{err}");

    let err = run_err(LIF, &["--input", "tests/fixtures/npy/events.npy"]);
    assert!(err.contains("events.npy: input `x`: a record array with the fields x, y, t, p is not a tensor"), "{err}");

    let bytes = std::fs::read(NUMPY_INPUT).unwrap();
    let cut = dir.write("cut.npy", &bytes[..bytes.len() - 4]);
    let err = run_err(LIF, &["--input", &cut]);
    assert!(err.contains("cut.npy: shape [100, 1, 5] of dtype '<f4' needs 2000 bytes of data"), "{err}");

    let text = dir.write("text.npy", "{\"shape\": [1]}");
    assert!(run_err(LIF, &["--input", &text]).contains("text.npy: not a NumPy .npy file"));
    let npy_as_npz = dir.write("a.npz", &bytes);
    assert!(run_err(LIF, &["--input", &npy_as_npz]).contains("a.npz: a NumPy .npy file, not an .npz"));
    assert!(run_err(LIF, &["--input", "/nonexistent/x.npy"]).contains("/nonexistent/x.npy: cannot read"));

    // Two arrays, neither an input: the keys expected are named.
    let two = dir.path("two.npz");
    write_npz(Path::new(&two), &[("a".into(), &x), ("b".into(), &x)]).unwrap();
    let err = run_err(LIF, &["--input", &two]);
    assert!(
        err.contains("two.npz: the array 'a' is no input of the network; save one array per input of the network (`x`): numpy.savez(FILE, x=...)"),
        "{err}"
    );
    let int = dir.path("int.npz");
    let big = Tensor::new(vec![100, 1, 5], ElemType::I64, vec![16_777_217.0; 500]).unwrap();
    write_npz(Path::new(&int), &[("x".into(), &big)]).unwrap();
    let err = run_err(LIF, &["--input", &int]);
    assert!(
        err.contains("int.npz: input `x`: element [0, 0, 0] = 16777217 of the '<i8' array is not exact in float32"),
        "{err}"
    );
}

#[test]
fn npz_recordings_feed_profiles_but_not_plots() {
    let dir = TempDir::new("rec");
    let (json, npz) = (dir.path("r.json"), dir.path("r.npz"));
    run_ok(LIF, "interp", &["--input", NUMPY_INPUT, "--record", &json]);
    run_ok(LIF, "interp", &["--input", NUMPY_INPUT, "--record", &npz]);
    let from_json = snnc::driver::read_profile(Path::new(&json)).unwrap();
    let from_npz = snnc::driver::read_profile(Path::new(&npz)).unwrap();
    assert_eq!(from_json, from_npz);
    assert!(from_json.contains_key("lif.z"), "{from_json:?}");

    let o = snnc(&["plot", &npz, "-o", &dir.path("f.svg")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("r.npz: an .npz recording holds the arrays only, not the network's metadata a plot needs; record with `snnc run --record FILE.json`"),
        "{}",
        stderr(&o)
    );
}
