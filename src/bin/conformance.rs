//! `conformance [DIR] [--target interp|cpu|cuda]`: runs every Norse oracle file
//! (`*.json`) of DIR (default `tests/golden`) and prints a pass/fail table per
//! case and tensor.
//!
//! Exit codes: 0 everything passed; 1 a tensor or case failed; 2 the
//! directory or an oracle file cannot be read; 3 the target's backend does
//! not exist in this build.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use snnc::conformance;
use snnc::driver::Target;

/// Checks snnc against Norse oracle files (schema `snnc-norse-oracle/1`).
#[derive(Parser, Debug)]
#[command(name = "conformance", version, about, long_about = None)]
struct Cli {
    /// The directory of oracle files (`*.json`); the default is the repository's own
    /// (run from the repository root).
    #[arg(default_value = "tests/golden")]
    dir: PathBuf,
    /// Where to run the cases.
    #[arg(long, value_enum, default_value = "interp")]
    target: Target,
    /// The passes run on each lowered module, comma-separated (e.g. `cse,dce`), or `none`;
    /// default: the target's default pipeline.
    #[arg(long)]
    passes: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(list) = &cli.passes
        && let Err(e) = snnc_passes::parse_pipeline(list, &Default::default())
    {
        eprintln!("error: --passes: {e}");
        return ExitCode::from(2);
    }
    let config = conformance::RunConfig { passes: cli.passes.clone() };
    let report = match conformance::run_dir_with(&cli.dir, cli.target, &config) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if report.cases.is_empty() {
        eprintln!("error: no oracle files (*.json) in {}", cli.dir.display());
        return ExitCode::from(2);
    }
    print!("{}", report.render());
    let code = report.exit_code();
    match code {
        2 => eprintln!("error: some oracle files cannot be read or are malformed (see the FAIL lines above)"),
        3 => eprintln!(
            "error: no usable GPU for --target {} (see the lines above); use --target cpu or --target interp",
            conformance::target_name(cli.target)
        ),
        _ => {}
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
