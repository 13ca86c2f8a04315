//! Running the `snnc` binary from the CLI tests.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
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

/// A fresh folder under the system's temporary folder, named after the test
/// binary, the process and `test`, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh folder named after `test`, the test binary and the process,
    /// and numbered: two tests running at once never share one, even when
    /// they pass the same name (a shared one made `w.json` vanish under a
    /// test while the other's folder was dropped).
    pub fn new(test: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("snnc-{}-{test}-{}-{n}", env!("CARGO_CRATE_NAME"), std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("can create a temporary folder");
        TempDir(dir)
    }

    /// The path of `name` in the folder, as an argument.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    /// Writes `bytes` to `name` in the folder; its path, as an argument.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        std::fs::write(self.0.join(name), bytes).expect("can write a temporary file");
        self.path(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
