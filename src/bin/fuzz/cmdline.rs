//! Command-line mutants: a subcommand of `snnc` with flags whose values
//! range from right to absurd, on a valid network and the tensor files of
//! the case folder. Paths stay relative: everything lands in that folder.

use crate::rng::Rng;

/// Files that may be named as inputs (some exist in the case folder, some
/// do not, one is a folder).
const INPUTS: &[&str] =
    &["net.ron", "w.json", "in.json", "rec.json", "metrics.csv", "missing.json", ".", "", "empty-dir", "net.ron/x"];
/// Places to write to.
const OUTPUTS: &[&str] = &["out", ".", "net.ron", "out/deep/er", "", "a b", "rec.json", "empty-dir", "net.ron/x"];
const FIGURES: &[&str] = &["fig.svg", "fig.png", "fig.pdf", "fig", ".svg", "out/fig.svg", "net.ron", "", "empty-dir"];
const TARGETS: &[&str] = &["cpu", "interp", "cuda", "nonsense", "", "CPU"];
const COUNTS: &[&str] =
    &["0", "1", "2", "3", "4294967296", "18446744073709551615", "18446744073709551616", "-1", "abc", "1000000000", ""];
const SEEDS: &[&str] = &["0", "1", "-1", "18446744073709551615", "18446744073709551616", "x"];
const FLOATS: &[&str] = &["0.002", "0", "-1", "NaN", "inf", "-inf", "1e300", "x", "1e-320", ""];
const PASSES: &[&str] = &[
    "none",
    "",
    "cse,dce",
    "cse,,dce",
    ",",
    "unroll=0",
    "unroll=1",
    "unroll=4294967296",
    "unroll=-1",
    "unroll=",
    "unroll=x",
    "fuse,fuse,fuse",
    "nonsense",
    "autodiff",
    "time-batch,unroll=8",
    "sparsify",
    "cse=3",
    "const-fold,cse,dce,time-batch,sparsify,fuse,unroll,cse,dce",
    "dce,dce,dce,dce,dce,dce,dce,dce",
    "time-batch,time-batch",
];
const AFTER: &[&str] = &["all", "cse", "fuse", "unroll", "nonsense", "", "autodiff"];
const NEURONS: &[&str] = &["0,1", "lif:0", "nosuch:1", "-1", "99999999", "", ":", "a:b:c", "0,,1", "lif:"];
const SIZES: &[&str] = &["1200x900", "0x0", "100000x100000", "x", "1x1", "65536x65536", "10x", "-1x5"];
const EMITS: &[&str] = &["ir", "clif", "ptx", "x", ""];
const ARCHS: &[&str] = &["sm80", "sm90", "sm70", "x", ""];
const OPTIMIZERS: &[&str] = &["adam", "sgd", "x"];
const BENCHES: &[&str] = &["nosuch", "TUTORIAL", "tutorial,", "lif-layer"];
/// Tokens that do not belong anywhere.
const GARBAGE: &[&str] = &["--", "-", "--nope", "-x", "ñ", "--target=cpu", "--batch=", "@", "-h", "--version", "help"];

/// A flag and where its value comes from (`None`: a switch).
type Flag = (&'static str, Option<&'static [&'static str]>);

fn flags(sub: &str) -> &'static [Flag] {
    match sub {
        "ir" => &[
            ("--f64", None),
            ("--after", Some(AFTER)),
            ("--passes", Some(PASSES)),
            ("--time-passes", None),
            ("--profile", Some(INPUTS)),
            ("--target", Some(TARGETS)),
        ],
        "run" => &[
            ("--target", Some(TARGETS)),
            ("--weights", Some(INPUTS)),
            ("--input", Some(INPUTS)),
            ("--record", Some(OUTPUTS)),
            ("--batch", Some(COUNTS)),
            ("--seed", Some(SEEDS)),
            ("--f64", None),
            ("--passes", Some(PASSES)),
            ("--profile", Some(INPUTS)),
            ("--plot", Some(FIGURES)),
            ("--neurons", Some(NEURONS)),
            ("--sample", Some(COUNTS)),
            ("--size", Some(SIZES)),
        ],
        "compile" => &[
            ("--target", Some(TARGETS)),
            ("--emit", Some(EMITS)),
            ("--arch", Some(ARCHS)),
            ("-o", Some(OUTPUTS)),
            ("--backward", None),
        ],
        "plot" => &[
            ("-o", Some(FIGURES)),
            ("--net", Some(INPUTS)),
            ("--batches", Some(INPUTS)),
            ("--neurons", Some(NEURONS)),
            ("--sample", Some(COUNTS)),
            ("--size", Some(SIZES)),
        ],
        "train" => &[
            ("--epochs", Some(COUNTS)),
            ("--batch", Some(COUNTS)),
            ("--lr", Some(FLOATS)),
            ("--lr-decay", Some(FLOATS)),
            ("--optimizer", Some(OPTIMIZERS)),
            ("--momentum", Some(FLOATS)),
            ("--seed", Some(SEEDS)),
            ("--target", Some(TARGETS)),
            ("--out", Some(OUTPUTS)),
            ("--resume", None),
            ("--limit", Some(COUNTS)),
            ("--test-limit", Some(COUNTS)),
            ("--quiet", None),
            ("--data-dir", Some(INPUTS)),
        ],
        "bench" => {
            &[("--target", Some(TARGETS)), ("--json", None), ("--runs", Some(COUNTS)), ("--warmup", Some(COUNTS))]
        }
        _ => &[],
    }
}

/// The subcommands, with a nonsense one and none at all.
const SUBCOMMANDS: &[&str] = &["check", "ir", "run", "run", "compile", "compile", "plot", "train", "bench", "frob", ""];

/// Makes a command line. With `train_data` (Fashion-MNIST is installed),
/// training is bounded to a few steps: `--limit`/`--test-limit` at most 64
/// and at most 2 epochs, so that a long run is not mistaken for a hang.
pub fn command_line(rng: &mut Rng, train_data: bool) -> Vec<String> {
    let sub = *rng.pick(SUBCOMMANDS);
    let mut args: Vec<String> = Vec::new();
    if !sub.is_empty() {
        args.push(sub.into());
    }
    match sub {
        "plot" => args
            .push((if rng.chance(0.8) { *rng.pick(&["rec.json", "metrics.csv"]) } else { *rng.pick(INPUTS) }).into()),
        "bench" => args.push((*rng.pick(BENCHES)).into()),
        "frob" | "" => {}
        _ => args.push((if rng.chance(0.9) { "net.ron" } else { *rng.pick(INPUTS) }).into()),
    }
    for &(flag, values) in flags(sub) {
        if !rng.chance(0.3) {
            continue;
        }
        args.push(flag.into());
        if let Some(values) = values {
            let mut v = *rng.pick(values);
            if sub == "train" && train_data && matches!(flag, "--epochs" | "--limit" | "--test-limit") {
                v = *rng.pick(&["0", "1", "2", "-1", "x"]);
            }
            args.push(v.into());
        }
    }
    if sub == "train" && train_data {
        for flag in ["--limit", "--test-limit"] {
            if !args.iter().any(|a| a == flag) {
                args.extend([flag.into(), "64".into()]);
            }
        }
        if !args.iter().any(|a| a == "--epochs") {
            args.extend(["--epochs".into(), "1".into()]);
        }
    }
    if sub == "plot" && !args.iter().any(|a| a == "-o") && rng.chance(0.9) {
        args.extend(["-o".into(), "fig.svg".into()]);
    }
    if rng.chance(0.1) {
        let at = rng.below(args.len() + 1);
        let g = if rng.chance(0.1) { format!("-{}", "a".repeat(10_000)) } else { rng.pick(GARBAGE).to_string() };
        args.insert(at, g);
    }
    if rng.chance(0.05) && args.len() > 1 {
        let i = rng.range(1, args.len() - 1);
        let dup = args[i..].iter().take(2).cloned().collect::<Vec<_>>();
        args.extend(dup);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_bounded_training() {
        for case in 0..300 {
            let a = command_line(&mut Rng::for_case(3, case), true);
            assert_eq!(a, command_line(&mut Rng::for_case(3, case), true));
            if a.first().map(String::as_str) == Some("train") && !a.iter().any(|x| x == "--data-dir") {
                let big = |f: &str| a.windows(2).any(|w| w[0] == f && w[1].parse::<u64>().is_ok_and(|n| n > 64));
                assert!(!big("--epochs") && !big("--limit") && !big("--test-limit"), "{a:?}");
            }
        }
    }
}
