//! IR-to-IR passes and the pass pipeline.
//!
//! Every pass is a file that opens with what it does, what it needs and
//! what it preserves. The [`Pipeline`] validates the module after every
//! pass (a pass that breaks an invariant is a bug, reported as such) and
//! can hand the module to an observer after each one (`snnc ir --after`).
//!
//! | name | pass | what it does |
//! |---|---|---|
//! | `const-fold` | [`ConstFold`] | constant subexpressions become one constant, computed as the interpreter would |
//! | `cse` | [`Cse`] | equal nodes are computed once |
//! | `dce` | [`Dce`] | unused unnamed nodes go |
//! | `time-batch` | [`TimeBatch`] | feed-forward layers run over all `T` steps at once; recurrences stay in step loops |
//! | `sparsify` | [`Sparsify`] | spike-input matrix products become event-driven where the cost model says so |
//! | `fuse` | [`fuse::Fuse`] | connected elementwise ops become one `fused` kernel (e-graph rewriting) |
//! | `unroll` | [`Unroll`] | step loops get an unroll factor (a schedule attribute) |
//! | `autodiff` | [`Autodiff`] | appends the backward pass (BPTT): `grad.<output>` inputs, `grad.<param>` outputs |
//!
//! [`by_name`] makes a pass from its name, [`parse_pipeline`] a pipeline
//! from a `--passes` list (with arguments such as `unroll=8`), and
//! [`default_pipeline`] the pipeline a backend gets. A backend states what
//! it needs as a [`PipelineKind`] (data, so backends never depend on this
//! crate); the driver turns it into a pipeline.

pub mod autodiff;
pub mod fuse;

pub mod const_fold;
pub mod cse;
pub mod dce;
pub mod sparsify;
pub mod time_batch;
pub mod unroll;
mod util;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use snnc_ir::{Module, ModuleInfo, ValidationErrors};

pub use autodiff::{Autodiff, AutodiffOptions, GradReport, differentiate};
pub use const_fold::ConstFold;
pub use cse::Cse;
pub use dce::Dce;
pub use sparsify::Sparsify;
pub use time_batch::TimeBatch;
pub use unroll::Unroll;

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

    /// The number of passes.
    pub fn len(&self) -> usize {
        self.passes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.passes.is_empty()
    }

    /// Runs every pass in order, validating after each, without observing.
    pub fn run_all(&self, module: &mut Module) -> Result<ModuleInfo, PassError> {
        self.run(module, &mut |_| {})
    }

    /// Runs every pass in order, validating after each, and calls
    /// `observer` after each with the module as the pass left it.
    pub fn run(&self, module: &mut Module, observer: &mut dyn FnMut(AfterPass<'_>)) -> Result<ModuleInfo, PassError> {
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

/// What a backend needs the IR to look like, stated as data: the driver
/// builds the pipeline from it ([`default_pipeline`]), so no backend
/// depends on the passes.
///
/// Today every kind gets the same pipeline: the interpreter runs the IR the
/// compiled backends get (it ignores the `unroll` attribute), which is what
/// lets the golden conformance runs check every pass. The kinds are kept
/// apart so that a backend can later ask for less (e.g. no `unroll` where
/// it unrolls itself) or for other cost-model constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PipelineKind {
    /// The reference interpreter.
    Interp,
    /// The CPU backend (Cranelift).
    Cpu,
    /// The CUDA backend (PTX).
    Cuda,
}

/// Options that configure the passes of a pipeline, filled in by the
/// driver from the network file, a profile and the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct PassOptions {
    /// Expected spike densities by value name (`lif1.z`, `encoder.z`), for
    /// `sparsify` ([`Sparsify::per_value`]).
    pub densities: BTreeMap<String, f64>,
    /// The density of spike values not in `densities`
    /// ([`Sparsify::default_density`]).
    pub default_density: f64,
    /// Whether `dce` keeps unused named nodes (their recorded traces).
    /// Turn off only for runs that record nothing.
    pub keep_names: bool,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions { densities: BTreeMap::new(), default_density: sparsify::DEFAULT_DENSITY, keep_names: true }
    }
}

/// The registered pass names, in the order of the default pipeline.
const NAMES: &[&str] = &["const-fold", "cse", "dce", "time-batch", "sparsify", "fuse", "unroll"];

/// The optimising passes, in the order of the default pipeline: each one
/// keeps what the module computes. [`by_name`] also knows `autodiff`, which
/// adds the backward pass (inputs and outputs) instead.
pub fn pass_names() -> Vec<&'static str> {
    NAMES.to_vec()
}

/// A pass by name, with its default options (`None` for an unknown name).
pub fn by_name(name: &str) -> Option<Box<dyn Pass>> {
    pass_from_spec(name, &PassOptions::default()).ok()
}

/// A `--passes` entry that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassSpecError {
    #[error("unknown pass `{name}`; the passes are {}", list(valid))]
    Unknown { name: String, valid: Vec<&'static str> },
    #[error("pass `{pass}`: bad argument `{arg}`: {expected}")]
    BadArgument { pass: &'static str, arg: String, expected: &'static str },
    #[error("empty pass list: name passes separated by commas (the passes are {}), or `none`", list(valid))]
    Empty { valid: Vec<&'static str> },
}

fn list(names: &[&'static str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// A pass from one `--passes` entry: a name, optionally with an argument:
/// `unroll=8` (the factor, at least 1), `sparsify=0.05` (the default
/// density, in [0, 1]), `dce=drop-names` or `dce=keep-names`. The other
/// options come from `opts`.
pub fn pass_from_spec(spec: &str, opts: &PassOptions) -> Result<Box<dyn Pass>, PassSpecError> {
    let (name, arg) = match spec.split_once('=') {
        Some((n, a)) => (n.trim(), Some(a.trim())),
        None => (spec.trim(), None),
    };
    let no_arg = |pass: &'static str| match arg {
        None => Ok(()),
        Some(a) => {
            Err(PassSpecError::BadArgument { pass, arg: a.to_string(), expected: "this pass takes no argument" })
        }
    };
    Ok(match name {
        "const-fold" => {
            no_arg("const-fold")?;
            Box::new(ConstFold)
        }
        "cse" => {
            no_arg("cse")?;
            Box::new(Cse)
        }
        "dce" => {
            let keep_names = match arg {
                None => opts.keep_names,
                Some("keep-names") => true,
                Some("drop-names") => false,
                Some(a) => {
                    return Err(PassSpecError::BadArgument {
                        pass: "dce",
                        arg: a.to_string(),
                        expected: "expected `keep-names` or `drop-names`",
                    });
                }
            };
            Box::new(Dce { keep_names })
        }
        "time-batch" => {
            no_arg("time-batch")?;
            Box::new(TimeBatch)
        }
        "sparsify" => {
            let default_density = match arg {
                None => opts.default_density,
                Some(a) => match a.parse::<f64>() {
                    Ok(d) if (0.0..=1.0).contains(&d) => d,
                    _ => {
                        return Err(PassSpecError::BadArgument {
                            pass: "sparsify",
                            arg: a.to_string(),
                            expected: "expected a default spike density in [0, 1], e.g. `sparsify=0.05`",
                        });
                    }
                },
            };
            Box::new(Sparsify { default_density, per_value: opts.densities.clone() })
        }
        "fuse" => {
            no_arg("fuse")?;
            Box::new(fuse::Fuse::default())
        }
        "unroll" => {
            let factor = match arg {
                None => Unroll::DEFAULT_FACTOR,
                Some(a) => match a.parse::<u32>() {
                    Ok(k) if k >= 1 => k,
                    _ => {
                        return Err(PassSpecError::BadArgument {
                            pass: "unroll",
                            arg: a.to_string(),
                            expected: "expected an unroll factor of 1 or more, e.g. `unroll=8`",
                        });
                    }
                },
            };
            Box::new(Unroll { factor })
        }
        "autodiff" => {
            no_arg("autodiff")?;
            Box::new(Autodiff::default())
        }
        _ => {
            let mut valid = pass_names();
            valid.push("autodiff");
            return Err(PassSpecError::Unknown { name: name.to_string(), valid });
        }
    })
}

/// A pipeline from a comma-separated `--passes` list (`cse,dce`,
/// `time-batch,unroll=8`); `none` is the empty pipeline.
pub fn parse_pipeline(list: &str, opts: &PassOptions) -> Result<Pipeline, PassSpecError> {
    if list.trim() == "none" {
        return Ok(Pipeline::new());
    }
    let mut res = Pipeline::new();
    for spec in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        res.push(pass_from_spec(spec, opts)?);
    }
    if res.is_empty() {
        return Err(PassSpecError::Empty { valid: pass_names() });
    }
    Ok(res)
}

/// The names of the default pipeline of a backend kind, in order.
///
/// `const-fold` first, so that `cse` sees equal constants (every layer's
/// `dt * tau` products); `cse` then merges the duplicates across layers and
/// `dce` removes what folding left behind, so `time-batch` plans a clean
/// loop. `sparsify` follows `time-batch` (it reads the products as they
/// will run; the kind it sets survives either order). `fuse` then packs the
/// elementwise remainder of each loop, which `time-batch` has cut down to
/// the neuron updates, into one kernel per population, and `unroll` sets
/// the schedule of the final loops. A last `cse` and `dce` remove the
/// duplicates and dead nodes the structural passes left (a constant folded
/// into a kernel, a value only a kernel used).
pub fn default_pass_names(kind: PipelineKind) -> Vec<&'static str> {
    match kind {
        PipelineKind::Interp | PipelineKind::Cpu | PipelineKind::Cuda => {
            vec!["const-fold", "cse", "dce", "time-batch", "sparsify", "fuse", "unroll", "cse", "dce"]
        }
    }
}

/// The passes of a training (forward + backward) build, split around
/// `autodiff`: the ones before it (which prepare the forward, unfused IR
/// it differentiates) and the ones after it (which optimise both passes).
pub fn training_pass_names(kind: PipelineKind) -> (Vec<&'static str>, Vec<&'static str>) {
    match kind {
        PipelineKind::Interp | PipelineKind::Cpu | PipelineKind::Cuda => {
            (vec!["const-fold", "cse", "dce", "time-batch"], vec!["sparsify", "fuse", "unroll", "cse", "dce"])
        }
    }
}

/// The default pipeline of a backend kind, with default options.
pub fn default_pipeline(kind: PipelineKind) -> Pipeline {
    default_pipeline_with(kind, &PassOptions::default())
}

/// The default pipeline of a backend kind, with the given options.
pub fn default_pipeline_with(kind: PipelineKind, opts: &PassOptions) -> Pipeline {
    let mut res = Pipeline::new();
    for name in default_pass_names(kind) {
        res.push(pass_from_spec(name, opts).expect("the default pipeline names registered passes"));
    }
    res
}
