//! The CUDA backend on a real GPU: the golden conformance cases (outputs
//! and every gradient) on `--target cuda`, and random networks where CUDA
//! must compute what the interpreter computes (outputs; traces are not
//! recorded on the GPU). Without a usable GPU every test passes after
//! printing `tests/cuda_gpu.rs: TEST SKIPPED: no usable GPU (why)` straight
//! to stderr, where the test harness does not capture it: CI has none (the
//! PTX is still assembled by ptxas in `tests/ptx.rs` and checked on a PTX
//! simulator in `backends/cuda`). The random cases are fixed
//! (`common::proptest_config`).

mod common;

use std::io::Write;
use std::path::Path;

use common::{Reference, Verdict};
use proptest::test_runner::{TestCaseError, TestRunner};
use snnc_passes::PipelineKind;

/// Whether there is a usable GPU; if not, says that the running test is
/// skipped where a reader of `cargo test`'s output sees it (`eprintln!` of
/// a passing test is captured and never shown).
fn gpu() -> bool {
    match snnc_cuda::probe().problem() {
        None => true,
        Some(why) => {
            let test = std::thread::current().name().unwrap_or("a test").to_string();
            let _ = writeln!(std::io::stderr().lock(), "{}: {test} SKIPPED: no usable GPU ({why})", file!());
            false
        }
    }
}

#[test]
fn golden_cases_pass_on_the_gpu() {
    if !gpu() {
        return;
    }
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"));
    let report = snnc::conformance::run_dir(dir, snnc::Target::Cuda).expect("the golden directory is readable");
    println!("{}", report.render());
    let failures = report.failures();
    assert!(failures.is_empty(), "{} golden failure(s) on cuda:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn cuda_agrees_with_the_interpreter_on_random_networks() {
    if !gpu() {
        return;
    }
    let mut runner = TestRunner::new(common::proptest_config(64));
    let result = runner.run(&common::arb_case(), |case| {
        let module = case.module();
        let weights = common::weights(&module, case.seed);
        let inputs = common::inputs(&module, case.batch, case.seed);
        let reference = Reference::run(&module, &weights, &inputs).map_err(TestCaseError::fail)?;
        let mut optimized = reference.module.clone();
        snnc_passes::default_pipeline(PipelineKind::Cuda)
            .run(&mut optimized, &mut |_| {})
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let info = snnc_ir::validate(&optimized).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let exe = snnc::driver::CudaRunner::new(&optimized, &info).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let outputs = exe.run(&weights, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Outputs only: compare against the reference without its traces.
        let mut reference = reference;
        reference.result.traces.clear();
        reference.result.final_state.clear();
        let actual = snnc_interp::RunResult { outputs, traces: Default::default(), final_state: Default::default() };
        match common::compare(&reference, &actual).map_err(TestCaseError::fail)? {
            Verdict::Equal => Ok(()),
            Verdict::Excused(why) => Err(TestCaseError::reject(why)),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
