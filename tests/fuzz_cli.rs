//! The fuzz harness in CI: a fixed seed and a bounded number of mutants,
//! mostly `check`, against the contract of the CLI (docs/fuzzing.md).

mod support;

/// A count of the `counts:` line of the harness's summary.
fn count(summary: &str, class: &str) -> u64 {
    let line = summary.lines().find_map(|l| l.strip_prefix("counts: ")).expect("the summary has a `counts:` line");
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(class)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no count of `{class}` in `{line}`"))
}

#[test]
fn seeded_mutants_never_crash_or_hang() {
    let out = std::env::temp_dir().join(format!("snnc-fuzz-cli-{}", std::process::id()));
    let o = support::exe(
        env!("CARGO_BIN_EXE_fuzz"),
        &[
            "--snnc",
            env!("CARGO_BIN_EXE_snnc"),
            "--seed",
            "1",
            "--cases",
            "500",
            "--jobs",
            "2",
            "--deep",
            "0.05",
            "--max-cost",
            "1e6",
            "--timeout",
            "120",
            "--out",
            out.to_str().expect("a UTF-8 temp folder"),
        ],
    );
    let summary = support::stdout(&o);
    let _ = std::fs::remove_dir_all(&out);
    let report = format!("{summary}\n{}", support::stderr(&o));
    assert!(summary.contains("500 mutants"), "{report}");
    for class in ["panic", "abort", "signal", "hang"] {
        assert_eq!(count(&summary, class), 0, "{class}: {report}");
    }
}

#[test]
fn structural_nir_mutants_are_refused_with_the_node_or_field() {
    let out = std::env::temp_dir().join(format!("snnc-fuzz-nir-{}", std::process::id()));
    let o = support::exe(
        env!("CARGO_BIN_EXE_fuzz"),
        &[
            "--snnc",
            env!("CARGO_BIN_EXE_snnc"),
            "--kinds",
            "nir",
            "--seed",
            "5",
            "--cases",
            "300",
            "--jobs",
            "2",
            "--timeout",
            "120",
            "--out",
            out.to_str().expect("a UTF-8 temp folder"),
        ],
    );
    let summary = support::stdout(&o);
    let _ = std::fs::remove_dir_all(&out);
    let report = format!("{summary}\n{}", support::stderr(&o));
    assert!(summary.contains("300 mutants"), "{report}");
    assert!(summary.contains("nir 300"), "{report}");
    // Every refusal names the node or the field; nothing crashes, hangs or reports a bug.
    for class in ["panic", "abort", "signal", "hang", "unlocated", "internal"] {
        assert_eq!(count(&summary, class), 0, "{class}: {report}");
    }
    assert!(count(&summary, "user") >= 150, "most structural mutants are refused: {report}");
}
