//! The configuration of every property test of snnc, one rule for all test
//! crates: each includes this file (`tests/common/mod.rs`,
//! `frontend/tests/common/mod.rs`, `backends/interp/tests/prop.rs`,
//! `backends/cpu/tests/jit.rs`, with `#[path]` from outside the root
//! package).
//!
//! By default a property test runs a fixed set of cases: the seed [`SEED`]
//! and the test's own case count, so every run, CI's included, tries the
//! same cases and a failure is a failure of the code, not of the draw.
//! Nothing is written: failure persistence is off, so a failing run leaves
//! the source tree clean. Past failures are named regression tests in the
//! test files, which run every time.
//!
//! Environment variables:
//!
//! - `PROPTEST_CASES=N`: run `N` cases instead of the test's count;
//! - `SNNC_PROPTEST_EXPLORE=1`: free exploration, a new random seed each
//!   run, printed on stderr (not captured by the test harness) so that the
//!   run can be replayed;
//! - `PROPTEST_RNG_SEED=N`: run with seed `N` (replays an explored run).
//!
//! A failure found by exploring is shrunk and printed with its minimal
//! case: add that case to the test file's regression test and commit it.

use proptest::test_runner::{Config, RngSeed};

/// The seed of the default, fixed cases.
pub const SEED: u64 = 0x5eed_2024_0014;

/// The variable that turns on free exploration.
pub const EXPLORE: &str = "SNNC_PROPTEST_EXPLORE";

/// `cases` cases (or `PROPTEST_CASES`) drawn from the fixed seed, or from a
/// random one when exploring; no failure persistence.
pub fn proptest_config(cases: u32) -> Config {
    let env_u64 = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
    let explore = std::env::var(EXPLORE).is_ok_and(|v| !v.is_empty() && v != "0");
    let seed = match env_u64("PROPTEST_RNG_SEED") {
        Some(seed) => seed,
        None if explore => {
            use std::hash::{BuildHasher, Hasher};
            let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "proptest: exploring with seed {seed} (replay: {EXPLORE}=1 PROPTEST_RNG_SEED={seed})"
            );
            seed
        }
        None => SEED,
    };
    Config {
        cases: env_u64("PROPTEST_CASES").and_then(|n| u32::try_from(n).ok()).unwrap_or(cases),
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}
