//! Golden conformance: every Norse oracle case of `tests/golden` (produced
//! by the real Norse 1.1.0; format: `tests/golden/README.md`) must
//! pass on the reference interpreter, in f32 and in f64: the traces, and
//! every gradient (BPTT through the derived backward pass, seeded by the
//! case's loss; the surrogate cases' `dx`).

use std::path::{Path, PathBuf};

use snnc::conformance::{self, CaseReport};

/// The oracle directory, vendored in the repository.
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

/// The oracle files whose name ends (`f64`) or does not end (`f32`, the
/// default dtype) with `_f64`.
fn cases(f64_cases: bool) -> Vec<PathBuf> {
    let all = conformance::list_cases(Path::new(GOLDEN)).expect("the vendored golden directory is readable");
    let is_f64 = |p: &PathBuf| p.file_stem().is_some_and(|s| s.to_string_lossy().ends_with("_f64"));
    all.into_iter().filter(|p| is_f64(p) == f64_cases).collect()
}

fn check(f64_cases: bool) {
    let paths = cases(f64_cases);
    assert!(paths.len() >= 30, "expected the golden cases in {GOLDEN}, found {}", paths.len());
    let cases: Vec<CaseReport> = paths.iter().map(|p| conformance::run_case(p)).collect();
    let report = conformance::Report { target: snnc::Target::Interp, cases };
    let text = report.render();
    println!("{text}");
    let failures = report.failures();
    assert!(failures.is_empty(), "{} golden failure(s):\n{}", failures.len(), failures.join("\n"));
    let counts = report.counts();
    assert!(counts.passed > 0, "nothing was compared");
    // Every tensor is compared, the gradients of BPTT included.
    assert_eq!(counts.skipped, 0, "some tensors were skipped:\n{text}");
    assert!(text.contains("gradients.") && text.contains(" dx "), "no gradient was compared:\n{text}");
}

#[test]
fn golden_f32() {
    check(false);
}

#[test]
fn golden_f64() {
    check(true);
}
