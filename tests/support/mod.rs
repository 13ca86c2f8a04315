//! Running the `snnc` binary from the CLI tests.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `snnc ARGS` in the repository root and waits for it.
pub fn snnc(args: &[&str]) -> Output {
    exe(env!("CARGO_BIN_EXE_snnc"), args)
}

/// Runs the binary `bin` with `args` in the repository root.
pub fn exe(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("the binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
