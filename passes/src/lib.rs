//! IR-to-IR passes and the pass pipeline.
//!
//! Every pass is a file that opens with what it does, what it needs and
//! what it preserves. The [`Pipeline`] validates the module after every
//! pass (a pass that breaks an invariant is a bug, reported as such) and
//! can hand the module to an observer after each one (`snnc ir --after`).

use std::time::{Duration, Instant};

use snnc_ir::{Module, ModuleInfo, ValidationErrors};

/// What a pass reports about one run (printed by `--time-passes` and in
/// dumps): e.g. "folded 12 constants", or the e-graph's stop reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub notes: Vec<String>,
}

impl PassReport {
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }
}

/// A pass could not run on a module it was given (it never fails on a
/// module it does not need to change).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PassError {
    /// The pass needs something the module does not have.
    #[error("pass `{pass}`: {message}")]
    Unsupported { pass: &'static str, message: String },
    /// The pass produced invalid IR: a bug in the pass.
    #[error("pass `{pass}` produced invalid IR (a bug in snnc):\n{errors}")]
    Invalid { pass: &'static str, errors: ValidationErrors },
}

/// One IR-to-IR transformation.
pub trait Pass: std::fmt::Debug {
    /// The name used by `--passes` and `--after` (kebab-case, e.g. `const-fold`).
    fn name(&self) -> &'static str;
    /// Transforms the module in place. The module given is valid; the
    /// result must be valid too (the pipeline checks).
    fn run(&self, module: &mut Module) -> Result<PassReport, PassError>;
}

/// What the pipeline observer sees after each pass.
#[derive(Debug)]
pub struct AfterPass<'a> {
    pub pass: &'static str,
    pub module: &'a Module,
    pub elapsed: Duration,
    pub report: &'a PassReport,
}

/// An ordered list of passes.
#[derive(Debug, Default)]
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pass.
    pub fn with(mut self, pass: impl Pass + 'static) -> Self {
        self.passes.push(Box::new(pass));
        self
    }

    pub fn push(&mut self, pass: Box<dyn Pass>) {
        self.passes.push(pass);
    }

    /// The names of the passes, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Runs every pass in order, validating after each, and calls
    /// `observer` after each with the module as the pass left it.
    pub fn run(
        &self,
        module: &mut Module,
        observer: &mut dyn FnMut(AfterPass<'_>),
    ) -> Result<ModuleInfo, PassError> {
        let mut info = snnc_ir::validate(module).map_err(|errors| PassError::Invalid { pass: "input", errors })?;
        for pass in &self.passes {
            let started = Instant::now();
            let report = pass.run(module)?;
            let elapsed = started.elapsed();
            info = snnc_ir::validate(module).map_err(|errors| PassError::Invalid { pass: pass.name(), errors })?;
            observer(AfterPass { pass: pass.name(), module, elapsed, report: &report });
        }
        Ok(info)
    }
}
