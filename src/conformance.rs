//! The conformance runner: checks snnc against Norse oracle files.
//!
//! An oracle file (schema `snnc-norse-oracle/1`, see
//! `tests/golden/README.md`) describes one case: a Norse model or a small
//! network, its inputs, weights and initial state, and the values Norse
//! computed. [`run_case`] turns the case into a [`Network`] (or, for the
//! surrogate cases, a one-node module), lowers it through the frontend, runs
//! it on the reference interpreter with every named value recorded, and
//! compares each expected tensor with the matching trace or output:
//!
//! - floats pass iff `max|actual - expected| <= atol + rtol_to_max * max|expected|`,
//!   with `atol`/`rtol_to_max` from the file's `tolerance`;
//! - spikes (`z`, `*.z`, `z_before_latency_mask`) and `max_over_time_argmax_t`
//!   must match exactly.
//!
//! Each lowered module goes through the interpreter's default pipeline of
//! passes first ([`RunConfig::passes`] chooses others, `none` for the raw
//! lowering), so the golden files check the passes too.
//!
//! Gradients run the derived backward pass (the `autodiff` pass), seeded by
//! the case's loss (`weighted_sum`: its weights; the tutorial decoder's
//! NLL: `-onehot/B`) or, for a surrogate case, by `dy`; a gradient output
//! the pass does not make (no path, e.g. heaviside spikes) is compared as
//! zeros.
//!
//! How the oracle's names map to snnc's:
//!
//! | oracle | snnc |
//! |---|---|
//! | single-cell models: `z`, `v`, `i`, `b`, `a` | traces `cell.z`, `cell.v`, ... of a one-layer network whose layer is named `cell` |
//! | encoders: `z`, `v_encoder_internal`, `z_before_latency_mask` | traces `encoder.z`, `encoder.v`, `encoder.z_raw` |
//! | networks: `output` | output `output` |
//! | networks: `log_p_y` | output `readout` (readout `MaxLogSoftmax`) |
//! | networks: `max_over_time_argmax_t` | the first-index argmax over time of output `output`, computed here |
//! | networks: any other name | the trace of that name |
//! | threshold cases: `z` | output `z` of `threshold(x)` with `x` fed as a batch |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use snnc_frontend::{ExampleInput, Layer, LowerOptions, Method, Network, Pair, ParamValue, Readout};
use snnc_ir::{Builder, Dtype, Module, Op, Shape, Type};
use snnc_runtime::{ElemType, Tensor};

pub use crate::driver::Target;
use encoders::*;
use layers::*;
pub use run::argmax_over_time;
use run::*;

mod batchnorm;
mod encoders;
mod layers;
mod run;
mod stdp;
mod zoo;

/// The target's name on the command line.
pub fn target_name(target: Target) -> &'static str {
    match target {
        Target::Interp => "interp",
        Target::Cpu => "cpu",
        Target::Cuda => "cuda",
    }
}

/// The verdict on one compared tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Pass,
    /// Out of tolerance, missing, or of the wrong shape; the text says where.
    Fail(String),
    /// Not compared, and why.
    Skipped(String),
}

/// One compared (or skipped) tensor of a case.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorReport {
    /// The oracle's name (`z`, `lif1.v`, `gradients.fc1.weight`, ...).
    pub tensor: String,
    /// `max|actual - expected|`; `None` when nothing was compared.
    pub max_abs_err: Option<f64>,
    /// The largest error allowed (0 for exact comparisons).
    pub allowed: Option<f64>,
    pub status: Status,
}

/// What became of one case.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseOutcome {
    /// The case ran; one report per tensor.
    Ran(Vec<TensorReport>),
    /// The case could not run (lowering, validation or interpreter error):
    /// a failure.
    Error(String),
    /// The oracle file is unreadable or malformed.
    BadInput(String),
    /// The case needs something snnc or the chosen target does not have.
    Unsupported(String),
}

/// The result of one oracle file.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseReport {
    /// The case name (the file name without `.json`).
    pub name: String,
    pub path: PathBuf,
    /// `float32` or `float64`, when the file could be read.
    pub dtype: Option<String>,
    pub outcome: CaseOutcome,
}

impl CaseReport {
    /// Whether anything in the case failed (errors and bad input included).
    pub fn failed(&self) -> bool {
        match &self.outcome {
            CaseOutcome::Ran(tensors) => tensors.iter().any(|t| matches!(t.status, Status::Fail(_))),
            CaseOutcome::Error(_) | CaseOutcome::BadInput(_) => true,
            CaseOutcome::Unsupported(_) => false,
        }
    }

    /// One line per failure: `case: tensor: detail`.
    pub fn failures(&self) -> Vec<String> {
        match &self.outcome {
            CaseOutcome::Ran(tensors) => tensors
                .iter()
                .filter_map(|t| match &t.status {
                    Status::Fail(detail) => Some(format!("{}: {}: {detail}", self.name, t.tensor)),
                    _ => None,
                })
                .collect(),
            CaseOutcome::Error(e) => vec![format!("{}: {e}", self.name)],
            CaseOutcome::BadInput(e) => vec![format!("{}: bad oracle file: {e}", self.name)],
            CaseOutcome::Unsupported(_) => Vec::new(),
        }
    }
}

/// Tallies over a report. Tensors are counted one by one; a case that could
/// not run counts as one failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub unsupported: usize,
    /// Cases whose file is unreadable or malformed (also counted as failed).
    pub bad_input: usize,
}

/// The results of a run over many cases.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub target: Target,
    pub cases: Vec<CaseReport>,
}

/// The directory of oracle files cannot be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the oracle directory {}: {source}", path.display())]
pub struct DirError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The `*.json` files of `dir`, sorted by name.
pub fn list_cases(dir: &Path) -> Result<Vec<PathBuf>, DirError> {
    let err = |source| DirError { path: dir.to_path_buf(), source };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(paths)
}

/// How the runner compiles each case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunConfig {
    /// The passes run on each lowered module: `None` for the target's
    /// default pipeline, or a `--passes` list (`cse,dce`; `none` for the raw
    /// lowering).
    pub passes: Option<String>,
}

/// Runs every `*.json` oracle file of `dir`, in name order, through the
/// target's default pipeline.
pub fn run_dir(dir: &Path, target: Target) -> Result<Report, DirError> {
    run_dir_with(dir, target, &RunConfig::default())
}

/// [`run_dir`] with a choice of passes.
pub fn run_dir_with(dir: &Path, target: Target, config: &RunConfig) -> Result<Report, DirError> {
    Ok(run_paths_with(&list_cases(dir)?, target, config))
}

/// Runs the given oracle files, in the given order.
pub fn run_paths(paths: &[PathBuf], target: Target) -> Report {
    run_paths_with(paths, target, &RunConfig::default())
}

/// [`run_paths`] with a choice of passes.
pub fn run_paths_with(paths: &[PathBuf], target: Target, config: &RunConfig) -> Report {
    let cases = paths
        .iter()
        .map(|p| match target {
            Target::Cuda if let Some(why) = snnc_cuda::probe().problem() => CaseReport {
                name: case_name(p),
                path: p.clone(),
                dtype: None,
                outcome: CaseOutcome::Unsupported(format!("no usable GPU ({why})")),
            },
            _ => run_case_on(p, target, config),
        })
        .collect();
    Report { target, cases }
}

fn case_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Runs one oracle file on the reference interpreter, after the
/// interpreter's default pipeline.
pub fn run_case(path: &Path) -> CaseReport {
    run_case_with(path, &RunConfig::default())
}

/// [`run_case`] with a choice of passes.
pub fn run_case_with(path: &Path, config: &RunConfig) -> CaseReport {
    run_case_on(path, Target::Interp, config)
}

/// Runs one oracle file on a target (the interpreter or the cpu).
pub fn run_case_on(path: &Path, target: Target, config: &RunConfig) -> CaseReport {
    let name = case_name(path);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return CaseReport {
                name,
                path: path.to_path_buf(),
                dtype: None,
                outcome: CaseOutcome::BadInput(format!("cannot read {}: {e}", path.display())),
            };
        }
    };
    let (dtype, outcome) = match serde_json::from_str::<Value>(&text) {
        Ok(json) => run_json_on(&json, &path.display().to_string(), target, config),
        Err(e) => (None, CaseOutcome::BadInput(format!("{} is not JSON: {e}", path.display()))),
    };
    CaseReport { name, path: path.to_path_buf(), dtype, outcome }
}

/// Runs a parsed oracle case after the interpreter's default pipeline.
/// `file` names it in error messages.
pub fn run_json(json: &Value, file: &str) -> (Option<String>, CaseOutcome) {
    run_json_with(json, file, &RunConfig::default())
}

/// [`run_json`] with a choice of passes.
pub fn run_json_with(json: &Value, file: &str, config: &RunConfig) -> (Option<String>, CaseOutcome) {
    run_json_on(json, file, Target::Interp, config)
}

/// [`run_json_with`] on a target (the interpreter or the cpu). The cpu
/// computes in f32 only: an f64 case is unsupported there.
pub fn run_json_on(json: &Value, file: &str, target: Target, config: &RunConfig) -> (Option<String>, CaseOutcome) {
    let dtype = json.get("dtype").and_then(Value::as_str).map(str::to_string);
    let plan = match plan_case(json) {
        Ok(plan) => plan,
        Err(PlanError::Bad(e)) => return (dtype, CaseOutcome::BadInput(e)),
        Err(PlanError::Unsupported(e)) => return (dtype, CaseOutcome::Unsupported(e)),
    };
    if target != Target::Interp && plan.float == Dtype::F64 {
        return (dtype, CaseOutcome::Unsupported("f64 runs on the interpreter".into()));
    }
    let outcome = match execute(&plan, file, target, config) {
        Ok(run) => CaseOutcome::Ran(compare(&plan, &run)),
        Err(e) => CaseOutcome::Error(e),
    };
    (dtype, outcome)
}

impl Report {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for case in &self.cases {
            match &case.outcome {
                CaseOutcome::Ran(tensors) => {
                    for t in tensors {
                        match t.status {
                            Status::Pass => c.passed += 1,
                            Status::Fail(_) => c.failed += 1,
                            Status::Skipped(_) => c.skipped += 1,
                        }
                    }
                }
                CaseOutcome::Error(_) => c.failed += 1,
                CaseOutcome::BadInput(_) => {
                    c.failed += 1;
                    c.bad_input += 1;
                }
                CaseOutcome::Unsupported(_) => c.unsupported += 1,
            }
        }
        c
    }

    /// Every failure, one line each (`case: tensor: detail`).
    pub fn failures(&self) -> Vec<String> {
        self.cases.iter().flat_map(CaseReport::failures).collect()
    }

    /// The process exit code: 2 if an oracle file is unreadable or
    /// malformed, 3 if the target has no device (cuda without a GPU), 1 on any failure,
    /// 0 otherwise.
    pub fn exit_code(&self) -> i32 {
        let c = self.counts();
        if c.bad_input > 0 {
            2
        } else if self.target == Target::Cuda && snnc_cuda::probe().problem().is_some() {
            3
        } else if c.failed > 0 {
            1
        } else {
            0
        }
    }

    /// The table: one line per case and tensor (case, tensor, max abs error,
    /// allowed, result), then the summary line.
    pub fn render(&self) -> String {
        let mut rows: Vec<[String; 5]> = Vec::new();
        let dash = || "-".to_string();
        for case in &self.cases {
            match &case.outcome {
                CaseOutcome::Ran(tensors) => {
                    for t in tensors {
                        let result = match &t.status {
                            Status::Pass => "PASS".to_string(),
                            Status::Fail(detail) => format!("FAIL  {detail}"),
                            Status::Skipped(why) => format!("skipped: {why}"),
                        };
                        rows.push([
                            case.name.clone(),
                            t.tensor.clone(),
                            t.max_abs_err.map_or_else(dash, fmt_num),
                            t.allowed.map_or_else(dash, fmt_num),
                            result,
                        ]);
                    }
                }
                CaseOutcome::Error(e) => rows.push([case.name.clone(), dash(), dash(), dash(), format!("FAIL  {e}")]),
                CaseOutcome::BadInput(e) => {
                    rows.push([case.name.clone(), dash(), dash(), dash(), format!("FAIL  bad oracle file: {e}")])
                }
                CaseOutcome::Unsupported(why) => {
                    rows.push([case.name.clone(), dash(), dash(), dash(), format!("unsupported: {why}")])
                }
            }
        }
        let header = ["case", "tensor", "max abs err", "allowed", "result"].map(str::to_string);
        let mut widths = [0usize; 4];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&rows) {
            let _ = writeln!(
                out,
                "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
            );
        }
        let c = self.counts();
        let _ = write!(out, "{} passed, {} failed, {} skipped", c.passed, c.failed, c.skipped);
        if c.unsupported > 0 {
            let _ = write!(out, ", {} unsupported", c.unsupported);
        }
        out.push('\n');
        out
    }
}

fn fmt_num(x: f64) -> String {
    if x == 0.0 { "0".to_string() } else { format!("{x:.3e}") }
}

// ---------------------------------------------------------------------------
// From an oracle case to a plan: what to build, feed and compare.

#[derive(Debug)]
enum PlanError {
    /// The file does not follow the oracle schema.
    Bad(String),
    /// The case uses something snnc does not support.
    Unsupported(String),
}

type PResult<T> = Result<T, PlanError>;

fn bad<T>(msg: impl Into<String>) -> PResult<T> {
    Err(PlanError::Bad(msg.into()))
}

fn unsupported<T>(msg: impl Into<String>) -> PResult<T> {
    Err(PlanError::Unsupported(msg.into()))
}

/// What the case builds.
#[derive(Debug, Clone)]
enum Program {
    /// A network lowered by the frontend.
    Network { net: Box<Network>, opts: LowerOptions },
    /// `threshold(x)` with the given surrogate, built directly.
    Threshold { method: Method, alpha: f64 },
    /// Norse's `stdp_step_linear` or `stdp_step_conv2d` on given pre- and
    /// postsynaptic spikes (per-sample shapes `pre`, `post`, weight shape).
    Stdp {
        p: snnc_frontend::Stdp,
        dt: f64,
        steps: u32,
        connection: snnc_frontend::lower::stdp::Connection,
        pre: Vec<u32>,
        post: Vec<u32>,
        weight: Vec<u32>,
    },
}

/// How an expected tensor is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Within the file's tolerance.
    Float,
    /// Exactly.
    Exact,
}

/// Where the actual value of an expected tensor comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// The trace of that name, else the output of that name.
    Trace(String),
    /// The output of that name, else the trace of that name.
    Output(String),
    /// The first-index argmax over time (dim 0) of that output.
    ArgmaxOverTime(String),
    /// The scalar loss computed from the outputs.
    Loss(LossSpec),
    /// The gradient output `grad.NAME` of the backward pass; zeros if the
    /// autodiff pass found no path (e.g. heaviside spikes).
    Gradient(String),
    /// A BatchNorm running statistic after the run.
    RunningStat(Box<batchnorm::RunningStat>),
}

#[derive(Debug, Clone, PartialEq)]
enum LossSpec {
    /// `sum(output * weights)`.
    WeightedSum(Tensor),
    /// `mean_b(-readout[b, target_b])` (nll of log_p_y).
    Nll(Vec<usize>),
}

#[derive(Debug, Clone)]
struct Check {
    /// The oracle's name.
    label: String,
    source: Source,
    kind: Kind,
    expected: Tensor,
}

#[derive(Debug, Clone)]
struct Plan {
    program: Program,
    float: Dtype,
    atol: f64,
    rtol: f64,
    inputs: BTreeMap<String, Tensor>,
    /// Weights named as in the lowered module.
    weights: BTreeMap<String, Tensor>,
    initial_state: BTreeMap<String, Tensor>,
    checks: Vec<Check>,
    /// Tensors not compared, and why.
    skipped: Vec<(String, String)>,
    /// The gradient of the loss with respect to these outputs, which seeds
    /// the backward pass (empty: forward only).
    seeds: BTreeMap<String, Tensor>,
    /// The module inputs differentiated besides the parameters.
    grad_inputs: Vec<String>,
}

/// The module value behind an oracle gradient name: `input` is the
/// network input `x`, anything else a parameter of the same name.
fn gradient_target(key: &str) -> String {
    if key == "input" { "x".to_string() } else { key.to_string() }
}

fn get<'a>(obj: &'a Value, key: &str) -> PResult<&'a Value> {
    match obj.get(key) {
        Some(v) => Ok(v),
        None => bad(format!("missing field `{key}`")),
    }
}

fn as_obj<'a>(v: &'a Value, what: &str) -> PResult<&'a Map<String, Value>> {
    match v.as_object() {
        Some(m) => Ok(m),
        None => bad(format!("`{what}` must be an object")),
    }
}

fn as_str<'a>(v: &'a Value, what: &str) -> PResult<&'a str> {
    match v.as_str() {
        Some(s) => Ok(s),
        None => bad(format!("`{what}` must be a string")),
    }
}

fn as_f64(v: &Value, what: &str) -> PResult<f64> {
    match v.as_f64() {
        Some(x) => Ok(x),
        None => bad(format!("`{what}` must be a number")),
    }
}

/// A neuron parameter: a number, or a list of numbers (one per neuron).
fn as_pv(v: &Value, what: &str) -> PResult<ParamValue> {
    if v.is_object() {
        // A TENSOR: 0-d for one value per layer, [n] per neuron.
        let t = tensor(v, what)?;
        return Ok(if t.shape.is_empty() { ParamValue::Scalar(t.data[0]) } else { ParamValue::PerNeuron(t.data) });
    }
    if let Some(list) = v.as_array() {
        let values: Option<Vec<f64>> = list.iter().map(Value::as_f64).collect();
        return match values {
            Some(values) => Ok(ParamValue::PerNeuron(values)),
            None => bad(format!("`{what}` must be a number or a list of numbers")),
        };
    }
    as_f64(v, what).map(ParamValue::Scalar)
}

fn as_u32(v: &Value, what: &str) -> PResult<u32> {
    match v.as_u64().and_then(|x| u32::try_from(x).ok()) {
        Some(x) => Ok(x),
        None => bad(format!("`{what}` must be a non-negative integer")),
    }
}

fn as_bool(v: &Value, what: &str) -> PResult<bool> {
    match v.as_bool() {
        Some(x) => Ok(x),
        None => bad(format!("`{what}` must be true or false")),
    }
}

/// A kernel size, stride or padding: an integer or a list of equal integers.
/// A size per spatial axis: an integer, or a list of one or two.
fn as_pair(v: &Value, what: &str) -> PResult<Pair> {
    if let Some(list) = v.as_array() {
        let dims = list.iter().map(|d| as_u32(d, what)).collect::<PResult<Vec<_>>>()?;
        match dims[..] {
            [a] => Ok(Pair([a, a])),
            [h, w] => Ok(Pair([h, w])),
            _ => unsupported(format!("`{what}` = {v}: a size is one integer or two")),
        }
    } else {
        as_u32(v, what).map(Pair::square)
    }
}

fn tensor(v: &Value, what: &str) -> PResult<Tensor> {
    Tensor::from_json(v).map_err(|e| PlanError::Bad(format!("`{what}`: {e}")))
}

fn dims_u32(dims: &[usize], what: &str) -> PResult<Vec<u32>> {
    dims.iter()
        .map(|&d| u32::try_from(d).map_err(|_| PlanError::Bad(format!("`{what}`: dimension {d} is too large"))))
        .collect()
}

fn method(v: &Value, what: &str) -> PResult<Method> {
    let name = as_str(v, what)?;
    match Method::from_norse_name(name) {
        Some(m) => Ok(m),
        None => unsupported(format!("surrogate method `{name}` is not supported")),
    }
}

/// Keys of a `parameters` object that are not neuron parameters.
const NOT_PARAMS: [&str; 5] = ["dt", "autapses", "seq_length", "f_max", "seed"];

/// Whether an oracle name holds spikes (compared exactly).
fn is_spike_name(name: &str) -> bool {
    name == "z" || name.ends_with(".z") || name == "z_before_latency_mask"
}

fn kind_of(name: &str) -> Kind {
    if is_spike_name(name) || name == "max_over_time_argmax_t" { Kind::Exact } else { Kind::Float }
}

/// The layer name of single-cell models.
const CELL: &str = "cell";

fn plan_case(json: &Value) -> PResult<Plan> {
    let schema = as_str(get(json, "schema")?, "schema")?;
    if schema != "snnc-norse-oracle/1" {
        return bad(format!("unknown schema `{schema}` (expected `snnc-norse-oracle/1`)"));
    }
    let model = as_str(get(json, "model")?, "model")?;
    let (float, elem) = match as_str(get(json, "dtype")?, "dtype")? {
        "float32" => (Dtype::F32, ElemType::F32),
        "float64" => (Dtype::F64, ElemType::F64),
        other => return bad(format!("unknown dtype `{other}`")),
    };
    let (atol, rtol) = match json.get("tolerance") {
        Some(t) => {
            (as_f64(get(t, "atol")?, "tolerance.atol")?, as_f64(get(t, "rtol_to_max")?, "tolerance.rtol_to_max")?)
        }
        None if float == Dtype::F32 => (1e-5, 1e-4),
        None => (1e-12, 1e-10),
    };
    let mut plan = Plan {
        program: Program::Threshold { method: Method::Super, alpha: 0.0 },
        float,
        atol,
        rtol,
        inputs: BTreeMap::new(),
        weights: BTreeMap::new(),
        initial_state: BTreeMap::new(),
        checks: Vec::new(),
        skipped: Vec::new(),
        seeds: BTreeMap::new(),
        grad_inputs: Vec::new(),
    };
    let name = json.get("name").and_then(Value::as_str).unwrap_or(model).to_string();
    match model {
        "threshold" => plan_threshold(json, &mut plan)?,
        "ConstantCurrentLIFEncoder"
        | "SpikeLatencyLIFEncoder"
        | "PoissonEncoder"
        | "SignedPoissonEncoder"
        | "PopulationEncoder" => plan_encoder(json, model, &name, &mut plan)?,
        "network" => plan_network(json, &name, &mut plan)?,
        "graph" => plan_graph(json, &name, &mut plan)?,
        "LIF" | "LI" | "LILinearCell" | "LIFRecurrentCell" | "LSNN" | "LSNNRecurrent" | "LIFBoxCell"
        | "LIFAdExCell" => plan_cell(json, model, &name, &mut plan)?,
        m if zoo::CELL_MODELS.contains(&m) => plan_cell(json, model, &name, &mut plan)?,
        "stdp_step_linear" | "stdp_step_conv2d" => stdp::plan_stdp(json, model, &mut plan)?,
        other => return unsupported(format!("model `{other}` is not supported by the runner")),
    }
    // Inputs, weights and states in the case's float type.
    for t in plan.inputs.values_mut().chain(plan.weights.values_mut()).chain(plan.initial_state.values_mut()) {
        *t = t.cast(elem);
    }
    if let Some(grads) = json.get("gradients") {
        for (k, v) in as_obj(grads, "gradients")? {
            let label = format!("gradients.{k}");
            if plan.seeds.is_empty() {
                plan.skipped.push((label, "no loss the runner can seed the backward pass with".to_string()));
                continue;
            }
            let target = gradient_target(k);
            if k == "input" {
                plan.grad_inputs.push(target.clone());
            }
            plan.checks.push(Check {
                label: label.clone(),
                source: Source::Gradient(target),
                kind: Kind::Float,
                expected: tensor(v, &label)?,
            });
        }
    }
    for t in plan.seeds.values_mut() {
        *t = t.cast(elem);
    }
    Ok(plan)
}

fn plan_threshold(json: &Value, plan: &mut Plan) -> PResult<()> {
    let params = as_obj(get(json, "parameters")?, "parameters")?;
    let m = match params.get("method") {
        Some(v) => method(v, "parameters.method")?,
        None => Method::Super,
    };
    let alpha = match params.get("alpha") {
        Some(a) => as_f64(a, "parameters.alpha")?,
        None => 100.0,
    };
    plan.program = Program::Threshold { method: m, alpha };
    let inputs = get(json, "inputs")?;
    let x = tensor(get(inputs, "x")?, "inputs.x")?;
    if x.shape.len() != 1 {
        return bad(format!("`inputs.x` of a threshold case must be 1-d, got shape {:?}", x.shape));
    }
    plan.inputs.insert("x".into(), x);
    for (k, v) in as_obj(get(json, "expected")?, "expected")? {
        match k.as_str() {
            "dx" => {
                plan.seeds.insert("z".into(), tensor(get(inputs, "dy")?, "inputs.dy")?);
                plan.grad_inputs.push("x".into());
                plan.checks.push(Check {
                    label: k.clone(),
                    source: Source::Gradient("x".into()),
                    kind: Kind::Float,
                    expected: tensor(v, &format!("expected.{k}"))?,
                });
            }
            _ => plan.checks.push(Check {
                label: k.clone(),
                source: Source::Output(k.clone()),
                kind: kind_of(k),
                expected: tensor(v, &format!("expected.{k}"))?,
            }),
        }
    }
    Ok(())
}

/// The 2-d shape `[rows, cols]` of a weight.
fn matrix(t: &Tensor, what: &str) -> PResult<(u32, u32)> {
    match t.shape[..] {
        [rows, cols] => {
            let d = dims_u32(&[rows, cols], what)?;
            Ok((d[0], d[1]))
        }
        _ => bad(format!("`{what}` must be a matrix, got shape {:?}", t.shape)),
    }
}

fn plan_cell(json: &Value, model: &str, name: &str, plan: &mut Plan) -> PResult<()> {
    let params_v = get(json, "parameters")?;
    let params = as_obj(params_v, "parameters")?;
    let dt = match params.get("dt") {
        Some(v) => as_f64(v, "parameters.dt")?,
        None => 0.001,
    };
    let autapses = match params.get("autapses") {
        Some(v) => as_bool(v, "parameters.autapses")?,
        None => false,
    };
    let inputs = get(json, "inputs")?;
    // `stp_step` (Tsodyks–Markram) reads spikes `z`; its state `x` is the
    // layer's `x_d` (`x` is the input in the neuron language).
    let stp = model == "stp_step";
    let x = if stp { tensor(get(inputs, "z")?, "inputs.z")? } else { tensor(get(inputs, "x")?, "inputs.x")? };
    if x.shape.len() < 3 {
        return bad(format!("`inputs.x` must be [T, batch, ...], got shape {:?}", x.shape));
    }
    let steps = dims_u32(&x.shape[..1], "inputs.x")?[0];
    let input = dims_u32(&x.shape[2..], "inputs.x")?;
    let in_features = input.last().copied();
    plan.inputs.insert("x".into(), x);

    let weights = match json.get("weights") {
        Some(w) => as_obj(w, "weights")?.clone(),
        None => Map::new(),
    };
    let weight = |key: &str| -> PResult<Tensor> {
        match weights.get(key) {
            Some(v) => tensor(v, &format!("weights.{key}")),
            None => bad(format!("missing field `weights.{key}`")),
        }
    };
    let cell = Some(CELL.to_string());
    let layer = match model {
        "LIF" => Layer::LIF {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: cell,
            p: lif_params(params, model)?,
        },
        "LI" => Layer::LI {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: cell,
            p: li_params(params, model)?,
        },
        "LSNN" => Layer::LSNN {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: cell,
            p: lsnn_params(params, model)?,
        },
        "LIFBoxCell" => Layer::LIFBox {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: cell,
            p: lif_box_params(params, model)?,
        },
        "LIFAdExCell" => Layer::LIFAdEx {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: cell,
            p: lif_adex_params(params, model)?,
        },
        "LILinearCell" => {
            let w = weight("input_weights")?;
            let (out, _) = matrix(&w, "weights.input_weights")?;
            plan.weights.insert(format!("{CELL}.input_weights"), w);
            Layer::LILinear {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Default::default(),
                name: cell,
                input: in_features,
                out,
                p: li_params(params, model)?,
                input_density: None,
            }
        }
        "LIFRecurrentCell" | "LSNNRecurrent" => {
            let w_in = weight("input_weights")?;
            let (hidden, _) = matrix(&w_in, "weights.input_weights")?;
            // The weights as given to Norse, so that snnc's own autapse
            // masking is exercised.
            let w_rec = weight("recurrent_weights_given")?;
            plan.weights.insert(format!("{CELL}.input_weights"), w_in);
            plan.weights.insert(format!("{CELL}.recurrent_weights"), w_rec);
            if model == "LIFRecurrentCell" {
                Layer::LIFRecurrent {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name: cell,
                    input: in_features,
                    hidden,
                    p: lif_params(params, model)?,
                    autapses,
                    input_density: None,
                }
            } else {
                Layer::LSNNRecurrent {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name: cell,
                    input: in_features,
                    hidden,
                    p: lsnn_params(params, model)?,
                    autapses,
                    input_density: None,
                }
            }
        }
        other if other.contains("Recurrent") || other == "iaf_step" || other == "CobaLIFCell" => {
            let w_in = weight("input_weights")?;
            let (hidden, _) = matrix(&w_in, "weights.input_weights")?;
            plan.weights.insert(format!("{CELL}.input_weights"), w_in);
            // The weights as given (CobaLIFCell has no autapse masking).
            let w_rec = weight("recurrent_weights_given").or_else(|_| weight("recurrent_weights"))?;
            plan.weights.insert(format!("{CELL}.recurrent_weights"), w_rec);
            match zoo::recurrent_zoo_layer(other, params, cell, hidden, autapses)? {
                Some(layer) => layer,
                None => return unsupported(format!("model `{other}` is not supported by the runner")),
            }
        }
        other => match zoo::zoo_layer(other, params, cell)? {
            Some(layer) => layer,
            None => return unsupported(format!("model `{other}` is not supported by the runner")),
        },
    };
    let net = Network {
        version: snnc_frontend::FORMAT_VERSION,
        name: name.to_string(),
        steps,
        dt,
        input,
        encoder: None,
        layers: vec![layer],
        readout: Readout::Sequence,
        seed: 0,
        example_input: ExampleInput::Pattern,
    };
    set_lower(plan, net, false);

    let default_state = match json.get("initial_state_is_norse_default") {
        Some(v) => as_bool(v, "initial_state_is_norse_default")?,
        None => true,
    };
    if !default_state {
        for (k, v) in as_obj(get(json, "initial_state")?, "initial_state")? {
            let state = if stp && k == "x" { "x_d" } else { k.as_str() };
            plan.initial_state.insert(format!("{CELL}.{state}"), tensor(v, &format!("initial_state.{k}"))?);
        }
    }
    for (k, v) in as_obj(get(json, "expected")?, "expected")? {
        let source = match k.as_str() {
            "output" if stp => Source::Output("output".into()),
            "x" if stp => Source::Trace(format!("{CELL}.x_d")),
            _ => Source::Trace(format!("{CELL}.{k}")),
        };
        plan.checks.push(Check {
            label: k.clone(),
            source,
            kind: kind_of(k),
            expected: tensor(v, &format!("expected.{k}"))?,
        });
    }
    Ok(())
}

/// A `graph` case: a network whose nodes name their inputs, run step by
/// step. Its output must be its last node, as snnc's output is.
fn plan_graph(json: &Value, name: &str, plan: &mut Plan) -> PResult<()> {
    // "sequence" (node by node over all steps) gives the "step" result
    // except at a time-batched BatchNorm, which snnc lowers as such.
    let execution = json.get("execution").and_then(Value::as_str).unwrap_or("step");
    if execution != "step" && execution != "sequence" {
        return unsupported(format!("graph execution `{execution}` is not supported"));
    }
    let nodes = match get(json, "nodes")?.as_array() {
        Some(n) => n,
        None => return bad("`nodes` must be a list"),
    };
    let output = as_str(get(json, "output")?, "output")?;
    let last = nodes.last().and_then(|n| n.get("name")).and_then(Value::as_str);
    if last != Some(output) {
        return unsupported(format!("the output node `{output}` is not the last node"));
    }
    plan_network(json, name, plan)?;
    let mut training = batchnorm::plan_batch_norms(json, nodes, plan)?;
    // Dropout in training mode multiplies by the given mask: the input the
    // node names becomes the layer's mask input.
    for node in nodes {
        if node.get("type").and_then(Value::as_str) != Some("Dropout") {
            continue;
        }
        let layer = as_str(get(node, "name")?, "nodes[].name")?;
        let key = as_str(get(node, "mask_input")?, &format!("node `{layer}`.mask_input"))?;
        let mask = plan
            .inputs
            .remove(key)
            .map_or_else(|| tensor(get(get(json, "inputs")?, key)?, &format!("inputs.{key}")), Ok)?;
        plan.inputs.insert(snnc_frontend::dropout_mask_input(layer), mask);
        training = true;
    }
    if let Program::Network { opts, .. } = &mut plan.program {
        opts.training = training;
    }
    Ok(())
}

fn plan_network(json: &Value, name: &str, plan: &mut Plan) -> PResult<()> {
    let mut layers = Vec::new();
    let mut dts: Vec<(String, f64)> = Vec::new();
    let list = match json.get("layers").or_else(|| json.get("nodes")).and_then(Value::as_array) {
        Some(l) => l,
        None => return bad("`layers` (`nodes` in a graph) must be a list"),
    };
    for (index, l) in list.iter().enumerate() {
        let (layer, dt) = layer_from(as_obj(l, &format!("layers[{index}]"))?, index)?;
        if let Some(dt) = dt {
            dts.push((layer.name(index), dt));
        }
        layers.push(layer);
    }
    let inputs = get(json, "inputs")?;
    let x = tensor(get(inputs, "x")?, "inputs.x")?;
    let mut poisson = false;
    let (encoder, steps, input, x) = match json.get("encoder").filter(|e| !e.is_null()) {
        Some(enc) => {
            let obj = as_obj(enc, "encoder")?;
            let ty = as_str(get(enc, "type")?, "encoder.type")?;
            let mut params = layer_params(obj, "encoder")?.clone();
            // Encoder fields may sit beside `parameters` (seq_length, dt, f_max).
            for (k, v) in obj {
                if !matches!(k.as_str(), "type" | "parameters" | "p" | "name") {
                    params.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            let steps = as_u32(get(enc, "seq_length")?, "encoder.seq_length")?;
            if let Some(dt) = params.get("dt") {
                dts.push(("encoder".into(), as_f64(dt, "encoder.dt")?));
            }
            let encoder = encoder_from(ty, &params, "encoder")?;
            let (x, input) = encoder_input(x, "inputs.x")?;
            if draws_uniforms(&encoder) {
                poisson = true;
                poisson_uniforms(inputs, &x.shape, plan)?;
            }
            (Some(encoder), steps, input, x)
        }
        None => {
            if x.shape.len() < 3 {
                return bad(format!("`inputs.x` must be [T, batch, ...], got shape {:?}", x.shape));
            }
            let steps = dims_u32(&x.shape[..1], "inputs.x")?[0];
            let input = dims_u32(&x.shape[2..], "inputs.x")?;
            (None, steps, input, x)
        }
    };
    plan.inputs.insert("x".into(), x);
    let dt = match dts.split_first() {
        None => 0.001,
        Some(((_, first), rest)) => {
            if let Some((other, odt)) = rest.iter().find(|(_, d)| d != first) {
                return unsupported(format!(
                    "layers use different dt ({} has {first}, {other} has {odt}); snnc has one dt per network",
                    dts[0].0
                ));
            }
            *first
        }
    };
    let loss = json.get("loss").filter(|l| !l.is_null());
    let loss_type = loss.map(|l| as_str(get(l, "type")?, "loss.type")).transpose()?;
    let readout =
        if loss_type == Some("decode_max_log_softmax_nll") { Readout::MaxLogSoftmax } else { Readout::Sequence };
    let net = Network {
        version: snnc_frontend::FORMAT_VERSION,
        name: name.to_string(),
        steps,
        dt,
        input,
        encoder,
        layers,
        readout,
        seed: 0,
        example_input: ExampleInput::Pattern,
    };
    set_lower(plan, net, poisson);

    // Weights: the recurrent weights as given to Norse (so snnc's autapse
    // masking is exercised) in place of the effective ones.
    if let Some(w) = json.get("weights") {
        let w = as_obj(w, "weights")?;
        for (k, v) in w {
            if let Some(base) = k.strip_suffix(".recurrent_weights_given") {
                plan.weights.insert(format!("{base}.recurrent_weights"), tensor(v, &format!("weights.{k}"))?);
            } else if k.ends_with(".recurrent_weights") && w.contains_key(&format!("{k}_given")) {
                // The effective weights: snnc computes them.
            } else {
                plan.weights.insert(k.clone(), tensor(v, &format!("weights.{k}"))?);
            }
        }
    }

    for (k, v) in as_obj(get(json, "expected")?, "expected")? {
        let source = match k.as_str() {
            "output" => Source::Output("output".into()),
            "log_p_y" => Source::Output("readout".into()),
            "max_over_time_argmax_t" => Source::ArgmaxOverTime("output".into()),
            other => Source::Trace(other.to_string()),
        };
        plan.checks.push(Check {
            label: k.clone(),
            source,
            kind: kind_of(k),
            expected: tensor(v, &format!("expected.{k}"))?,
        });
    }

    // The loss value, recomputed from the outputs.
    if let (Some(loss), Some(ty)) = (loss, loss_type) {
        let value = match loss.get("value") {
            Some(v) => as_f64(v, "loss.value")?,
            None => return Ok(()),
        };
        let spec = match ty {
            "weighted_sum" => {
                let w = tensor(get(loss, "weights")?, "loss.weights")?;
                plan.seeds.insert("output".into(), w.clone());
                LossSpec::WeightedSum(w)
            }
            "decode_max_log_softmax_nll" => {
                let targets: Vec<usize> = match get(loss, "targets")?.as_array() {
                    Some(t) => {
                        t.iter().map(|v| as_u32(v, "loss.targets").map(|x| x as usize)).collect::<PResult<_>>()?
                    }
                    None => return bad("`loss.targets` must be a list"),
                };
                let classes = json
                    .get("expected")
                    .and_then(|e| e.get("log_p_y"))
                    .and_then(|t| t.get("shape"))
                    .and_then(|s| s.get(1))
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as usize;
                if classes > 0 {
                    plan.seeds.insert("readout".into(), nll_seed(&targets, classes));
                }
                LossSpec::Nll(targets)
            }
            other => {
                plan.skipped.push(("loss".into(), format!("loss type `{other}` is not known to the runner")));
                return Ok(());
            }
        };
        plan.checks.push(Check {
            label: "loss".into(),
            source: Source::Loss(spec),
            kind: Kind::Float,
            expected: Tensor { shape: Vec::new(), dtype: ElemType::F64, data: vec![value] },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
