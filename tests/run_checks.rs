//! The checks of a run's weights, inputs and outputs (`snnc_runtime::check`,
//! `driver::check_run`, `snnc run --allow-nonfinite`): what is refused,
//! with which exit code, and that the message names the tensor, the element
//! and the fix.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use snnc::driver::{self, Target};
use snnc_frontend::LowerOptions;
use snnc_runtime::{ElemType, Tensor, Weights};
use support::{TempDir, snnc, stderr};

/// An LI layer on 2 inputs, 5 steps: its synaptic current sums the input
/// (`i <- 0.8 i + x`), so inputs of 3e38 overflow f32 at the second step.
const LI: &str = r#"(version: 1, name: "li_big", steps: 5, input: [2], layers: [LI(name: "li")])"#;

fn input_json(value: f64) -> String {
    let data = vec![value; 10];
    serde_json::json!({"shape": [5, 1, 2], "dtype": "float32", "data": data}).to_string()
}

#[test]
fn non_finite_outputs_exit_2_unless_allowed() {
    let dir = TempDir::new("nan-out");
    let net = dir.write("li.ron", LI);
    let input = dir.write("in.json", input_json(3e38));
    let rec = dir.0.join("rec.json");
    for target in ["interp", "cpu"] {
        let o = snnc(&["run", &net, "--target", target, "--input", &input, "--record", rec.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{target}: {err}");
        assert!(
            err.starts_with("error: output `output` holds inf at element [1, 0, 0] (data[2]) (and 7 more non-finite"),
            "{target}: {err}"
        );
        assert!(err.contains("the first recorded value to go non-finite is `li."), "{target}: {err}");
        assert!(err.contains("pass --allow-nonfinite"), "{target}: {err}");
        // The results are not lost: printed and recorded before the error.
        assert!(support::stdout(&o).contains("sample 0: [NaN, NaN]"), "{target}");
        assert!(std::fs::remove_file(&rec).is_ok(), "{target}: the recording was written");
        let o = snnc(&["run", &net, "--target", target, "--input", &input, "--allow-nonfinite"]);
        assert_eq!(o.status.code(), Some(0), "{target}: {}", stderr(&o));
    }
    // Large but finite outputs are fine.
    let input = dir.write("small.json", input_json(1e30));
    let o = snnc(&["run", &net, "--target", "interp", "--input", &input]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// The weights file of `tests/nets/lif_recurrent.ron` (`rec`: 4 inputs, 3
/// neurons) with `input_weights` of shape `shape` and `value` at its
/// element 1, in `dtype`; `extra` adds a key to its tensor object.
fn recurrent_weights(shape: [usize; 2], dtype: &str, value: &str, extra: &str) -> String {
    let mut data = vec!["0.1".to_string(); 12];
    data[1] = value.to_string();
    format!(
        r#"{{"rec.input_weights": {{"shape": {shape:?}, "dtype": "{dtype}", "data": [{}]{extra}}},
            "rec.recurrent_weights": {{"shape": [3, 3], "dtype": "float32", "data": [0,1,1,1,0,1,1,1,0]}}}}"#,
        data.join(",")
    )
}

fn run_with_weights(weights: &str) -> (Option<i32>, String) {
    let dir = TempDir::new("weights");
    let w = dir.write("w.json", weights);
    let o = snnc(&["run", "tests/nets/lif_recurrent.ron", "--target", "interp", "--weights", &w]);
    (o.status.code(), stderr(&o).replace(&w, "w.json"))
}

#[test]
fn weights_files_are_checked_value_by_value() {
    // The constant autapse mask may be left out.
    let (code, err) = run_with_weights(&recurrent_weights([3, 4], "float32", "0.2", ""));
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run_with_weights(&recurrent_weights([3, 4], "float32", "1e300", ""));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with(
            "error: w.json: weights file: weight `rec.input_weights`: data[1] (element [0, 1]) = 1e300 does not fit \
             float32"
        ),
        "{err}"
    );
    // A float64 weight beyond the f32 range overflows an f32 run.
    let (code, err) = run_with_weights(&recurrent_weights([3, 4], "float64", "1e300", ""));
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        "error: w.json: weight `rec.input_weights` holds 1e300 at element [0, 1] (data[1]), which overflows float32 \
         (largest 3.4028235e38) in this f32 run; weights must be finite (weights that became NaN or infinite in \
         training come from too high a learning rate)\n"
    );
    let (code, err) = run_with_weights(&recurrent_weights([3, 4], "float32", "0.2", r#", "requires_grad": true"#));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with(
            "error: w.json: weights file: weight `rec.input_weights`: not a tensor: unknown field `requires_grad`"
        ),
        "{err}"
    );
    let (code, err) = run_with_weights(&recurrent_weights([4, 3], "float32", "0.2", ""));
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        "error: w.json: weight `rec.input_weights` has shape [4, 3] but the module expects [3, 4]; transposed? \
         PyTorch stores Linear weights as [out, in] = [3, 4]: give the transpose\n"
    );
}

#[test]
fn a_missing_weight_does_not_list_the_autapse_mask_as_required() {
    let text = r#"{"rec.input_weights": {"shape": [3, 4], "dtype": "float32", "data": [0,0,0,0,0,0,0,0,0,0,0,0]}}"#;
    let (code, err) = run_with_weights(text);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        "error: w.json: missing weight `rec.recurrent_weights`; the module's weights are `rec.input_weights`, \
         `rec.recurrent_weights` (a weights file may leave out the constant `rec.autapse_mask`: it keeps its \
         initial value)\n"
    );
}

/// A Linear + LIF network (3 inputs, 4 steps) compiled for `target` with
/// its default pipeline.
fn compiled(target: Target) -> driver::Compiled {
    let dir = TempDir::new("ff");
    let text =
        r#"(version: 1, name: "ff", steps: 4, input: [3], layers: [Linear(name: "fc", out: 2), LIF(name: "lif")])"#;
    let net = driver::load(Path::new(&dir.write("ff.ron", text))).unwrap();
    let mut c = driver::compile(&net, "ff.ron", &LowerOptions::default()).unwrap();
    let opts = driver::pass_options(&c, None).unwrap();
    let pipeline = driver::pipeline(target, None, &opts).unwrap();
    driver::optimize(&mut c, &pipeline, &mut |_| {}).unwrap();
    c
}

#[test]
fn non_finite_weights_and_inputs_are_refused_on_every_target() {
    for target in [Target::Interp, Target::Cpu, Target::Cuda] {
        let c = compiled(target);
        if target == Target::Cuda {
            // The module the CUDA runner loads: the manifest binds the same names.
            let art = snnc_cuda::emit(&c.module, &c.info, &snnc_cuda::CudaOptions::default()).unwrap();
            assert!(art.manifest.inputs.iter().any(|b| b.name == "x"));
        }
        let x = Tensor::zeros(vec![4, 2, 3], ElemType::F32);
        let inputs = BTreeMap::from([("x".to_string(), x.clone())]);
        let mut weights: Weights = snnc_runtime::init_weights(&c.module, 0);
        weights.get_mut("fc.weight").unwrap().data[4] = f64::NAN;
        let e = driver::run(&c, target, &weights, &inputs, false).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{target:?}: {e}");
        let want = "weight `fc.weight` holds NaN at element [1, 1] (data[4]); weights must be finite";
        assert!(e.to_string().starts_with(want), "{target:?}: {e}");

        let weights = snnc_runtime::init_weights(&c.module, 0);
        let mut x = x;
        x.data[7] = f64::NEG_INFINITY;
        let inputs = BTreeMap::from([("x".to_string(), x)]);
        let e = driver::run(&c, target, &weights, &inputs, false).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{target:?}: {e}");
        assert_eq!(
            e.to_string(),
            "input `x` holds -inf at element [1, 0, 1] (data[7]); values must be finite",
            "{target:?}"
        );
    }
}

#[test]
fn cuda_size_errors_name_the_layer() {
    let dir = TempDir::new("cuda-size");
    // conv1's output, 160 x 4096 x 4096 per sample, needs more than 32-bit indices.
    let net = dir.write(
        "big.ron",
        r#"(version: 1, name: "big", steps: 2, input: [1, 4096, 4096],
            layers: [Conv2d(name: "conv1", out_channels: 160, kernel_size: 1), LIF(name: "lif1")])"#,
    );
    let out = dir.0.join("out");
    let o = snnc(&["compile", "--target", "cuda", &net, "--out-dir", out.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.starts_with("error: the cuda backend does not support %"), "{err}");
    assert!(err.contains(" (layer `conv1`): 5368709120 elements per sample"), "{err}");
}

/// Found by the fuzz harness (`src/bin/fuzz`): an input file of one bare
/// tensor names the input it fills, and a shape whose element count
/// overflows is an error, not a panic (debug) or a wrapped count (release).
#[test]
fn a_bare_input_tensor_is_named_and_its_shape_cannot_overflow() {
    let dir = TempDir::new("bare");
    let short = dir.write("short.json", r#"{"shape":[100,1,5],"dtype":"float32","data":[]}"#);
    let o = snnc(&["run", "examples/lif.ron", "--input", &short]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("input `x` (the file's one tensor): tensor data has 0 elements but shape [100, 1, 5] needs 500"),
        "{err}"
    );
    for shape in ["[1,1,18446744073709551615,28]", "[4294967296,4294967296]"] {
        let huge = dir.write("huge.json", format!(r#"{{"x":{{"shape":{shape},"dtype":"float32","data":[]}}}}"#));
        let o = snnc(&["run", "examples/lif.ron", "--input", &huge]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{shape}: {err}");
        assert!(err.contains("input `x`") && err.contains("more than this machine can address"), "{shape}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Found by the fuzz harness: `--plot` of a network with a Direct encoder
/// (which records no encoder spikes) was an internal error.
#[test]
fn a_direct_encoder_network_plots() {
    let dir = TempDir::new("direct-plot");
    let svg = dir.0.join("run.svg");
    let o = snnc(&["run", "tests/nets/direct_conv.ron", "--plot", svg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("lif1") && !text.contains("input encoding"),
        "the plot has lif1's panels and no encoder panel"
    );
}
