//! Golden conformance: every Norse oracle case of `../shared/golden` must
//! pass on the reference interpreter, in f32 and in f64.

use std::path::{Path, PathBuf};

use snnc::conformance::{self, CaseReport};

/// The oracle directory: the shared golden data next to the repository.
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden");

/// The oracle files whose name ends (`f64`) or does not end (`f32`, the
/// default dtype) with `_f64`, or `None` (and a visible note) when the
/// directory is not there.
fn cases(f64_cases: bool) -> Option<Vec<PathBuf>> {
    let dir = Path::new(GOLDEN);
    if !dir.is_dir() {
        eprintln!("skipping: the golden directory {} was not found", dir.display());
        return None;
    }
    let all = conformance::list_cases(dir).expect("the golden directory is readable");
    let is_f64 = |p: &PathBuf| p.file_stem().is_some_and(|s| s.to_string_lossy().ends_with("_f64"));
    Some(all.into_iter().filter(|p| is_f64(p) == f64_cases).collect())
}

fn check(f64_cases: bool) {
    let Some(paths) = cases(f64_cases) else { return };
    assert!(!paths.is_empty(), "no cases in {GOLDEN}");
    let cases: Vec<CaseReport> = paths.iter().map(|p| conformance::run_case(p)).collect();
    let report = conformance::Report { target: snnc::Target::Interp, cases };
    let text = report.render();
    println!("{text}");
    let failures = report.failures();
    assert!(failures.is_empty(), "{} golden failure(s):\n{}", failures.len(), failures.join("\n"));
    let counts = report.counts();
    assert!(counts.passed > 0, "nothing was compared");
}

#[test]
fn golden_f32() {
    check(false);
}

#[test]
fn golden_f64() {
    check(true);
}
