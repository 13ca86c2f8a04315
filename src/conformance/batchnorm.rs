//! BatchNorm in graph cases: the oracle's `buffers` are the initial running
//! statistics (parameters of the lowered module), and its expected
//! `NAME.running_mean`, `NAME.running_var` and `NAME.num_batches_tracked`
//! are checked by applying the trainer's update rule
//! (`snnc_runtime::batchnorm::update_running_stats`, one rule in one place)
//! to the batch statistics the training module outputs.

use serde_json::Value;
use snnc_runtime::{ElemType, Tensor, Weights};

use super::run::{Values, lookup};
use super::{PResult, Plan, Source, as_bool, as_f64, as_obj, as_str, bad, get, tensor, unsupported};

/// How to compute a running statistic after the run.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RunningStat {
    pub layer: String,
    /// `running_mean`, `running_var` or `num_batches_tracked`.
    pub field: String,
    pub momentum: f64,
    /// The values each statistic is taken over (`B·H·W` or `B`).
    pub n: usize,
    /// The running statistics before the run.
    pub initial: Weights,
}

/// Reads the BatchNorm nodes of a graph case: their buffers become
/// weights, their running-statistic checks are rewired. Returns whether a
/// node is in training mode (the module is then lowered for training).
pub(super) fn plan_batch_norms(json: &Value, nodes: &[Value], plan: &mut Plan) -> PResult<bool> {
    let buffers = match json.get("buffers").filter(|b| !b.is_null()) {
        Some(b) => Some(as_obj(b, "buffers")?),
        None => None,
    };
    let mut training = false;
    for node in nodes {
        let ty = node.get("type").and_then(Value::as_str).unwrap_or("");
        if ty != "BatchNorm1d" && ty != "BatchNorm2d" {
            continue;
        }
        let name = as_str(get(node, "name")?, "nodes[].name")?.to_string();
        let what = format!("node `{name}`");
        if node.get("training").map(|t| as_bool(t, &format!("{what}.training"))).transpose()? == Some(true) {
            training = true;
        }
        for flag in ["affine", "track_running_stats"] {
            if node.get(flag).is_some_and(|v| v.as_bool() == Some(false)) {
                return unsupported(format!("{what}: {flag}: false"));
            }
        }
        let momentum = node.get("momentum").map(|m| as_f64(m, &format!("{what}.momentum"))).transpose()?;
        let momentum = momentum.unwrap_or(0.1);
        let mut initial = Weights::new();
        for field in ["running_mean", "running_var", "num_batches_tracked"] {
            let key = format!("{name}.{field}");
            let t = match buffers.and_then(|b| b.get(&key)) {
                Some(v) => tensor(v, &format!("buffers.{key}"))?,
                None if field == "num_batches_tracked" => {
                    Tensor { shape: Vec::new(), dtype: ElemType::F64, data: vec![0.0] }
                }
                None => return bad(format!("{what}: no `buffers.{key}`")),
            };
            plan.weights.insert(key, t.clone());
            initial.insert(format!("{name}.{field}"), t);
        }
        // B·H·W from the node's recorded output [T, B, C, ...].
        let out = get(get(json, "expected")?, &format!("{name}.out"))?;
        let shape = tensor(out, &format!("expected.{name}.out"))?.shape;
        if shape.len() < 3 {
            return bad(format!("expected.{name}.out has shape {shape:?}, not [T, B, C, ...]"));
        }
        let mut n = shape[1] * shape[3..].iter().product::<usize>();
        if node.get("variant").and_then(Value::as_str) == Some("time_batched") {
            n *= shape[0]; // one statistic over all T·B samples
        }
        for check in plan.checks.iter_mut() {
            let Some(field) = check.label.strip_prefix(&format!("{name}.")) else { continue };
            if matches!(field, "running_mean" | "running_var" | "num_batches_tracked") {
                check.source = Source::RunningStat(Box::new(RunningStat {
                    layer: name.clone(),
                    field: field.to_string(),
                    momentum,
                    n,
                    initial: initial.clone(),
                }));
            }
        }
    }
    Ok(training)
}

/// The running statistic after the run: the initial one updated with the
/// module's batch statistics (none in evaluation: unchanged).
pub(super) fn running_stat_of(spec: &RunningStat, values: &Values) -> Result<Tensor, String> {
    let mut weights = spec.initial.clone();
    let (mean, var) = snnc_frontend::batch_stat_outputs(&spec.layer);
    if let (Ok(m), Ok(v)) = (lookup(values, &mean, true), lookup(values, &var, true)) {
        snnc_runtime::batchnorm::update_running_stats(&mut weights, &spec.layer, spec.momentum, spec.n, m, v)?;
    }
    weights
        .remove(&format!("{}.{}", spec.layer, spec.field))
        .ok_or_else(|| format!("no running statistic `{}.{}`", spec.layer, spec.field))
}
