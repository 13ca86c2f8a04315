//! The `snnc` binary on the CPU backend: `run` (cpu by default), `compile
//! --emit ir|clif [-o DIR]`, the f64 errors, PTX for cuda without a GPU, and determinism.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use support::{snnc, stderr, stdout};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cpu_cli").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("can create a scratch folder");
    dir
}

/// The readout rows `snnc run` prints.
fn sample_lines(text: &str) -> Vec<String> {
    text.lines().filter(|l| l.trim_start().starts_with("sample ")).map(str::to_string).collect()
}

#[test]
fn run_defaults_to_the_cpu_and_agrees_with_the_interpreter() {
    let cpu = snnc(&["run", "examples/tutorial.ron", "--batch", "3"]);
    assert!(cpu.status.success(), "{}", stderr(&cpu));
    let text = stdout(&cpu);
    assert!(text.contains("batch 3, cpu (f32)"), "{text}");
    let interp = snnc(&["run", "examples/tutorial.ron", "--batch", "3", "--target", "interp"]);
    assert!(interp.status.success(), "{}", stderr(&interp));
    assert!(stdout(&interp).contains("interp (f32)"));
    // Printed with 4 decimals, the readouts (and classes) agree.
    assert_eq!(sample_lines(&text), sample_lines(&stdout(&interp)));
    assert_eq!(sample_lines(&text).len(), 3);
}

#[test]
fn run_on_the_cpu_in_f64_is_the_users_error() {
    let o = snnc(&["run", "examples/lif.ron", "--target", "cpu", "--f64"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("--f64 is only supported by --target interp"), "{err}");
    assert!(err.contains("the cpu backend computes in f32"), "{err}");
    let o = snnc(&["run", "examples/lif.ron", "--f64"]);
    assert_eq!(o.status.code(), Some(2), "the default target is the cpu: {}", stderr(&o));
    let o = snnc(&["run", "examples/lif.ron", "--target", "interp", "--f64"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn cpu_runs_are_deterministic() {
    let dir = scratch("determinism");
    let mut recordings = Vec::new();
    for i in 0..2 {
        let rec = dir.join(format!("rec{i}.json"));
        let o = snnc(&["run", "examples/convnet.ron", "--batch", "3", "--record", rec.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        recordings.push(std::fs::read(&rec).expect("the recording was written"));
    }
    assert!(recordings[0] == recordings[1], "two cpu runs of the same input recorded different values");
}

/// The same bits on 1, 2 and 3 threads: a dense GEMM (`Linear` 300→300
/// over 12·40 rows, split by the GEMM crate), event-driven products and
/// convolutions, and loops split over the batch.
#[test]
fn cpu_runs_give_the_same_bits_on_any_thread_count() {
    let dir = scratch("threads");
    let net = dir.join("dense.ron");
    std::fs::write(
        &net,
        "(version: 1, name: \"dense\", steps: 12, input: [300], \
         layers: [Linear(name: \"fc\", out: 300), LIF(name: \"lif\"), Linear(name: \"out\", out: 300)])",
    )
    .expect("can write the net");
    for (net, batch) in [(net.to_str().unwrap(), "40"), ("examples/convnet.ron", "5")] {
        let mut recordings = Vec::new();
        for threads in ["1", "2", "3"] {
            let rec = dir.join(format!("rec{threads}.json"));
            let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
                .args(["run", net, "--batch", batch, "--record", rec.to_str().unwrap()])
                .env("SNNC_THREADS", threads)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .expect("the snnc binary runs");
            assert!(o.status.success(), "{}", stderr(&o));
            recordings.push(std::fs::read(&rec).expect("the recording was written"));
        }
        assert!(recordings[0] == recordings[1], "{net}: 1 and 2 threads recorded different values");
        assert!(recordings[0] == recordings[2], "{net}: 1 and 3 threads recorded different values");
    }
}

#[test]
fn compile_emits_the_clif_of_every_kernel() {
    let o = snnc(&["compile", "examples/tutorial.ron", "--target", "cpu", "--emit", "clif"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for kernel in ["encoder", "lif1", "out"] {
        assert!(text.contains(&format!("; kernel {kernel} (%")), "no CLIF for `{kernel}`:\n{text}");
    }
    assert!(text.contains("function %"), "{text}");
    // The encoder's step loop runs as one function with the time loop inside.
    assert!(text.contains("; kernel encoder (%7, the whole step loop)"), "{text}");
    assert!(text.contains("; kernel lif1 (%19, one step)"), "{text}");
    assert_eq!(text, stdout(&snnc(&["compile", "examples/tutorial.ron", "--emit", "clif"])), "not deterministic");
}

#[test]
fn compile_writes_files_with_dash_o() {
    let dir = scratch("out");
    let o = snnc(&["compile", "examples/tutorial.ron", "--emit", "clif", "-o", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let clif = std::fs::read_to_string(dir.join("tutorial.lif1.clif")).expect("the lif1 kernel was written");
    assert!(clif.contains("function %"), "{clif}");
    let o = snnc(&["compile", "examples/tutorial.ron", "--emit", "ir", "-o", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ir = std::fs::read_to_string(dir.join("tutorial.ir")).expect("the IR was written");
    assert!(ir.contains("fused lif1("), "{ir}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn compile_emits_the_optimised_ir_by_default() {
    let o = snnc(&["compile", "examples/tutorial.ron"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("module tutorial {"), "{text}");
    assert!(text.contains("spike_matmul"), "{text}");
}

#[test]
fn compile_for_cuda_needs_no_gpu() {
    let o = snnc(&["compile", "examples/tutorial.ron", "--target", "cuda"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(".entry"));
}
