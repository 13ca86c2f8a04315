//! The pass options of the `snnc` binary (`ir --after/--passes/--time-passes`,
//! `run --passes/--profile`, the RON `input_density`) and of `conformance
//! --passes`, tested as rendered text. Temporary files go under `target/`.

use std::path::{Path, PathBuf};

mod support;
use support::{exe, snnc, stderr, stdout};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_passes").join(name);
    std::fs::create_dir_all(&dir).expect("can create a scratch folder");
    dir
}

const DEFAULT: [&str; 9] = ["const-fold", "cse", "dce", "time-batch", "sparsify", "fuse", "unroll", "cse", "dce"];

/// The text without the header lines of `--after` (their times vary).
fn without_headers(text: &str) -> String {
    text.lines().filter(|l| !l.starts_with("// after ")).collect::<Vec<_>>().join("\n")
}

#[test]
fn ir_after_all_prints_the_module_after_every_pass_with_headers() {
    let o = snnc(&["ir", "examples/tutorial.ron", "--after", "all"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let headers: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("// after "))
        .map(|l| l.split_once(" (").expect("a time in parentheses").0)
        .collect();
    assert_eq!(headers, DEFAULT);
    assert!(text.starts_with("// after const-fold ("), "{text}");
    assert_eq!(text.matches("module tutorial {").count(), DEFAULT.len());
    assert!(text.contains("//   lif1 (@lif1.input_weights): batched over T (matmul [T·B,784]×[784,100])\n"), "{text}");
    assert!(text.contains("//   folded 5 node(s) into constants\n"), "{text}");
    let again = stdout(&snnc(&["ir", "examples/tutorial.ron", "--after", "all"]));
    assert_eq!(without_headers(&text), without_headers(&again), "the dumps are deterministic");
}

#[test]
fn ir_after_one_pass_prints_that_module() {
    let o = snnc(&["ir", "examples/tutorial.ron", "--after", "time-batch"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("// after time-batch ("), "{text}");
    assert_eq!(text.matches("module tutorial {").count(), 1);
    assert!(text.contains(" = matmul %"), "{text}");
    assert!(text.contains(": f32[T,B,100]\n"), "{text}");
    assert_eq!(text.matches("  step t in 0..T {").count(), 3, "encoder, lif1 and out each in a loop:\n{text}");
    assert!(!text.contains("fused"), "fuse runs later");
    // A pass that runs twice is printed twice.
    let twice = stdout(&snnc(&["ir", "examples/tutorial.ron", "--after", "cse"]));
    assert_eq!(twice.matches("// after cse (").count(), 2, "{twice}");
}

#[test]
fn ir_passes_runs_the_given_list() {
    let o = snnc(&["ir", "tests/nets/deep_ff.ron", "--passes", "cse,dce"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("module deep_ff {\n"), "{text}");
    assert_eq!(text.matches("= const 0.001 : f32[]").count(), 1, "duplicates merged:\n{text}");
    assert_eq!(text.matches("  step t in 0..T {").count(), 1, "no time batching:\n{text}");
    let again = stdout(&snnc(&["ir", "tests/nets/deep_ff.ron", "--passes", "cse,dce"]));
    assert_eq!(text, again);
    // Arguments and `none`.
    let unrolled = stdout(&snnc(&["ir", "tests/nets/deep_ff.ron", "--passes", "time-batch,unroll=2"]));
    assert_eq!(unrolled.matches("  step t in 0..T unroll 2 {").count(), 4, "{unrolled}");
    let none = stdout(&snnc(&["ir", "tests/nets/deep_ff.ron", "--passes", "none"]));
    assert_eq!(none, stdout(&snnc(&["ir", "tests/nets/deep_ff.ron"])));
}

#[test]
fn unknown_pass_names_are_user_errors_naming_the_passes() {
    for args in [
        &["ir", "examples/lif.ron", "--passes", "cse,bogus"][..],
        &["ir", "examples/lif.ron", "--after", "bogus"],
        &["run", "examples/lif.ron", "--passes", "bogus"],
    ] {
        let o = snnc(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("unknown pass `bogus`"), "{err}");
        assert!(
            err.contains("const-fold")
                && err.contains("time-batch")
                && err.contains("sparsify")
                && err.contains("unroll"),
            "{err}"
        );
        assert!(stdout(&o).is_empty());
    }
    let o = snnc(&["ir", "examples/lif.ron", "--passes", "cse", "--after", "unroll"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), "error: --after: the pipeline has no `unroll` pass; it runs cse\n");
    let o = snnc(&["ir", "examples/lif.ron", "--passes", "unroll=0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("pass `unroll`: bad argument `0`"), "{}", stderr(&o));
}

#[test]
fn time_passes_prints_each_pass_to_stderr() {
    let o = snnc(&["ir", "tests/nets/deep_ff.ron", "--time-passes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.starts_with("pass times:\n"), "{err}");
    let names: Vec<&str> = err.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    let mut want = DEFAULT.to_vec();
    want.push("total");
    assert_eq!(names, want);
    assert!(err.lines().skip(1).all(|l| l.ends_with(" ms")), "{err}");
    // stdout holds the module after the whole pipeline.
    let text = stdout(&o);
    assert!(text.starts_with("module deep_ff {"), "{text}");
    assert!(text.contains("unroll 4 {"), "{text}");
}

#[test]
fn run_after_the_pipeline_records_the_same_bits_as_the_raw_lowering() {
    let dir = scratch("run_same");
    for net in ["examples/tutorial.ron", "tests/nets/deep_ff.ron", "tests/nets/lsnn.ron", "tests/nets/conv.ron"] {
        let rec = |passes: &str, file: &str| {
            let path = dir.join(file).display().to_string();
            // The interpreter: its results are the same bits before and after every pass.
            let o = snnc(&["run", net, "--target", "interp", "--batch", "2", "--passes", passes, "--record", &path]);
            assert_eq!(o.status.code(), Some(0), "{net}: {}", stderr(&o));
            (stdout(&o), std::fs::read(&path).expect("recording written"))
        };
        let raw = rec("none", "raw.json");
        let opt = rec("const-fold,cse,dce,time-batch,sparsify,fuse,unroll,cse,dce", "opt.json");
        assert!(raw.0.contains("passes: none\n"), "{}", raw.0);
        assert!(opt.0.contains("passes: const-fold, cse, dce, time-batch, sparsify, fuse, unroll, cse, dce\n"));
        assert!(raw.1 == opt.1, "{net}: the recordings differ");
    }
    // Without --passes, `run` runs the default pipeline.
    let o = snnc(&["run", "examples/lif.ron"]);
    assert!(stdout(&o).contains(&format!("passes: {}\n", DEFAULT.join(", "))), "{}", stdout(&o));
}

/// The note `sparsify` writes about the convolution `layer`.
fn conv_note(text: &str, layer: &str) -> String {
    let start = format!("//   {layer}: ");
    text.lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no sparsify note for {layer}:\n{text}"))
        .to_string()
}

/// The note `sparsify` writes about the product of `weight`.
fn sparsify_note(text: &str, weight: &str) -> String {
    let key = format!("(@{weight}): ");
    text.lines()
        .find(|l| l.starts_with("//   ") && l.contains(&key) && l.contains("density"))
        .unwrap_or_else(|| panic!("no sparsify note for {weight}:\n{text}"))
        .to_string()
}

#[test]
fn input_density_in_the_network_file_guides_sparsify() {
    let dir = scratch("density");
    let text = std::fs::read_to_string("examples/tutorial.ron").unwrap();
    let dense = text.replace("hidden: 100,", "hidden: 100, input_density: 0.9,");
    assert_ne!(dense, text);
    let path = dir.join("dense.ron");
    std::fs::write(&path, &dense).unwrap();
    let default = stdout(&snnc(&["ir", "examples/tutorial.ron", "--after", "sparsify"]));
    assert_eq!(
        sparsify_note(&default, "lif1.input_weights"),
        "//   lif1 (@lif1.input_weights): event-driven (density 0.1 default of flatten.out; per row: dense 78400, event-driven 33712; changed)"
    );
    let o = snnc(&["ir", &path.display().to_string(), "--after", "sparsify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        sparsify_note(&stdout(&o), "lif1.input_weights"),
        "//   lif1 (@lif1.input_weights): dense (density 0.9 of flatten.out; per row: dense 78400, event-driven 284592)"
    );
    // Out of range: a user error at the field.
    std::fs::write(&path, text.replace("hidden: 100,", "hidden: 100, input_density: 1.5,")).unwrap();
    let o = snnc(&["check", &path.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("input_density: must be a number from 0 to 1, found 1.5"), "{}", stderr(&o));
}

#[test]
fn input_density_of_a_convolution_picks_its_kernel() {
    let dir = scratch("conv-density");
    let text = std::fs::read_to_string("examples/convnet_direct.ron").unwrap();
    let o = snnc(&["ir", "examples/convnet_direct.ron", "--after", "sparsify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // At the default density an event-driven convolution (a vector of the
    // output channels per active input and tap) beats the GEMM.
    let note = conv_note(&stdout(&o), "conv2");
    assert!(
        note.starts_with(
            "//   conv2: event-driven (density 0.1 default of pool1.out; per image: dense 3276800, event-driven 19840"
        ),
        "{note}"
    );
    // A dense input (the hint) makes it dense.
    let dense = text.replace("kernel_size: 5),\n        Scale", "kernel_size: 5, input_density: 0.5),\n        Scale");
    assert_ne!(dense, text);
    let path = dir.join("dense.ron");
    std::fs::write(&path, &dense).unwrap();
    let o = snnc(&["ir", &path.display().to_string(), "--after", "sparsify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let note = conv_note(&stdout(&o), "conv2");
    assert!(note.starts_with("//   conv2: dense (density 0.5 of pool1.out"), "{note}");
}

#[test]
fn a_profile_gives_measured_densities() {
    let dir = scratch("profile");
    let rec = dir.join("rec.json").display().to_string();
    let o = snnc(&["run", "examples/tutorial.ron", "--batch", "2", "--record", &rec]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rec).unwrap()).unwrap();
    let data = json["flatten.out"]["data"].as_array().unwrap();
    let mean = data.iter().map(|v| v.as_f64().unwrap()).sum::<f64>() / data.len() as f64;
    let o = snnc(&["ir", "examples/tutorial.ron", "--profile", &rec, "--after", "sparsify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let note = sparsify_note(&stdout(&o), "lif1.input_weights");
    assert!(note.contains(&format!("(density {mean} of flatten.out;")), "{note}");
    // A profile that is not a recording.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "[1, 2]").unwrap();
    let o = snnc(&["ir", "examples/tutorial.ron", "--profile", &bad.display().to_string(), "--after", "sparsify"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("a profile is a recording"), "{}", stderr(&o));
}

#[test]
fn conformance_accepts_a_pass_list() {
    let conformance = env!("CARGO_BIN_EXE_conformance");
    for passes in ["none", "time-batch,sparsify"] {
        let o = exe(conformance, &["tests/golden", "--passes", passes]);
        assert_eq!(o.status.code(), Some(0), "{passes}: {}", stdout(&o));
        assert!(stdout(&o).contains(" passed, 0 failed"), "{}", stdout(&o));
    }
    let o = exe(conformance, &["tests/golden", "--passes", "bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown pass `bogus`"), "{}", stderr(&o));
}
