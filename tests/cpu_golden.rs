//! Golden conformance on the CPU backend: every f32 Norse oracle case of
//! `tests/golden` runs on the cpu (after the cpu's default pipeline) and
//! every tensor passes, the gradients of the derived backward pass
//! included; f64 cases are reported as unsupported
//! (the interpreter runs f64) without failing.

use std::path::Path;

use snnc::Target;
use snnc::conformance::{self, CaseOutcome};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

#[test]
fn golden_cases_pass_on_the_cpu() {
    let report = conformance::run_dir(Path::new(GOLDEN), Target::Cpu).expect("the golden directory is readable");
    println!("{}", report.render());
    let failures = report.failures();
    assert!(failures.is_empty(), "{} golden failure(s) on the cpu:\n{}", failures.len(), failures.join("\n"));
    let mut f32_ran = 0;
    for case in &report.cases {
        let is_f64 = case.name.ends_with("_f64");
        match &case.outcome {
            CaseOutcome::Ran(_) if !is_f64 => f32_ran += 1,
            CaseOutcome::Unsupported(why) if is_f64 => {
                assert_eq!(why, "f64 runs on the interpreter", "{}", case.name)
            }
            other => panic!("{}: unexpected outcome on the cpu: {other:?}", case.name),
        }
    }
    assert!(f32_ran >= 30, "only {f32_ran} f32 cases ran");
    assert_eq!(report.counts().skipped, 0, "some tensors were skipped");
    assert_eq!(report.exit_code(), 0);
}
