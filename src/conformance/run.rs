//! Running a planned case on a backend and comparing its values with the
//! oracle's.

use super::*;

/// `d nll_mean / d log_p`: `-1/B` at each sample's target, 0 elsewhere.
pub(super) fn nll_seed(targets: &[usize], classes: usize) -> Tensor {
    let b = targets.len();
    let mut data = vec![0.0; b * classes];
    for (i, &t) in targets.iter().enumerate() {
        if t < classes {
            data[i * classes + t] = -1.0 / b as f64;
        }
    }
    Tensor { shape: vec![b, classes], dtype: ElemType::F64, data }
}

// ---------------------------------------------------------------------------
// Building and running.

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub(super) struct Values {
    outputs: BTreeMap<String, Tensor>,
    traces: BTreeMap<String, Tensor>,
}

/// `threshold(x)` over a static batch `x: [B]`, output `z`.
pub(super) fn threshold_module(float: Dtype, method: Method, alpha: f64) -> Result<Module, String> {
    let mut b = Builder::new("threshold", 1, 0.001, float);
    let input = b.input("x", Type::new(float, Shape::batched(&[])));
    b.begin_seq();
    let x = b.emit(Op::Input(input)).map_err(|e| e.to_string())?;
    let z = b.threshold(x, snnc_frontend::surrogate(method, alpha)).map_err(|e| e.to_string())?;
    b.name(z, "z");
    b.output("z", z);
    Ok(b.finish())
}

pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

pub(super) fn execute(plan: &Plan, file: &str, target: Target, config: &RunConfig) -> Result<Values, String> {
    let mut module = match &plan.program {
        Program::Network { net, opts } => {
            snnc_frontend::lower(net, file, opts).map_err(|e| format!("lowering failed: {e}"))?
        }
        Program::Threshold { method, alpha } => threshold_module(plan.float, *method, *alpha)?,
        Program::Stdp { p, dt, steps, connection, pre, post, weight } => {
            super::stdp::stdp_module(plan.float, p, *dt, *steps, *connection, pre, post, weight)?
        }
    };
    snnc_ir::validate(&module).map_err(|e| format!("the lowered module is invalid: {e}"))?;
    let mut inputs = plan.inputs.clone();
    let info = if plan.seeds.is_empty() {
        let pipeline = crate::driver::pipeline(target, config.passes.as_deref(), &Default::default())
            .map_err(|e| e.to_string())?;
        crate::driver::run_pipeline(&mut module, &pipeline, &mut |_| {}).map_err(|e| e.to_string())?
    } else {
        let grad = snnc_passes::AutodiffOptions {
            seeds: plan.seeds.keys().cloned().collect(),
            inputs: plan.grad_inputs.clone(),
        };
        let (info, report) =
            crate::driver::differentiate(&mut module, target, config.passes.as_deref(), &Default::default(), &grad)
                .map_err(|e| e.to_string())?;
        for (output, input) in &report.seeds {
            inputs.insert(input.clone(), plan.seeds[output].clone());
        }
        info
    };
    let mut weights = snnc_runtime::init_weights(&module, 0);
    for (name, w) in &plan.weights {
        match weights.get(name) {
            None => {
                let known = weights.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(format!(
                    "the oracle gives weight `{name}`, which the lowered module lacks (it has: {known})"
                ));
            }
            Some(default) if default.shape != w.shape => {
                return Err(format!(
                    "weight `{name}`: the oracle's shape is {:?}, the lowered module's is {:?}",
                    w.shape, default.shape
                ));
            }
            Some(_) => {}
        }
        weights.insert(name.clone(), w.clone());
    }
    for name in plan.initial_state.keys() {
        if !module.states.iter().any(|(_, st)| &st.name == name) {
            let known = module.states.iter().map(|(_, st)| st.name.clone()).collect::<Vec<_>>().join(", ");
            return Err(format!(
                "the oracle gives initial state `{name}`, which the lowered module lacks (it has: {known})"
            ));
        }
    }
    if target == Target::Cuda {
        if !plan.initial_state.is_empty() {
            return Err("the cuda backend runs from the initial state; this case sets one".into());
        }
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::driver::CudaRunner::new(&module, &info).and_then(|exe| exe.run(&weights, &inputs))
        }));
        return match run {
            Ok(Ok(outputs)) => Ok(Values { outputs, traces: BTreeMap::new() }),
            Ok(Err(e)) => Err(format!("the cuda backend failed: {e}")),
            Err(payload) => Err(format!("the cuda backend panicked: {}", panic_message(payload.as_ref()))),
        };
    }
    if target == Target::Cpu {
        let opts =
            snnc_cpu::RunOptions { record: true, initial_state: plan.initial_state.clone(), ..Default::default() };
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            snnc_cpu::compile(&module, &info).and_then(|exe| exe.run(&weights, &inputs, &opts))
        }));
        return match run {
            Ok(Ok(res)) => Ok(Values { outputs: res.outputs, traces: res.traces }),
            Ok(Err(e)) => Err(format!("the cpu backend failed: {e}")),
            Err(payload) => Err(format!("the cpu backend panicked: {}", panic_message(payload.as_ref()))),
        };
    }
    let opts = snnc_interp::RunOptions { record: true, initial_state: plan.initial_state.clone() };
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        snnc_interp::run(&module, &info, &weights, &inputs, &opts)
    }));
    match run {
        Ok(Ok(res)) => Ok(Values { outputs: res.outputs, traces: res.traces }),
        Ok(Err(e)) => Err(format!("the interpreter failed: {e}")),
        Err(payload) => Err(format!("the interpreter panicked: {}", panic_message(payload.as_ref()))),
    }
}

// ---------------------------------------------------------------------------
// Comparing.

pub(super) fn compare(plan: &Plan, values: &Values) -> Vec<TensorReport> {
    let mut reports = Vec::new();
    for check in &plan.checks {
        let actual = match &check.source {
            // No gradient output: autodiff found no path, the gradient is 0.
            Source::Gradient(name) if !values.outputs.contains_key(&snnc_passes::autodiff::grad_output_name(name)) => {
                let n = check.expected.data.len();
                Ok(Tensor { shape: check.expected.shape.clone(), dtype: check.expected.dtype, data: vec![0.0; n] })
            }
            // The cuda backend records no traces: only outputs compare.
            Source::Trace(name) if values.traces.is_empty() && !values.outputs.contains_key(name) => {
                reports.push(TensorReport {
                    tensor: check.label.clone(),
                    max_abs_err: None,
                    allowed: None,
                    status: Status::Skipped("no traces on this target".into()),
                });
                continue;
            }
            source => actual_of(source, values),
        };
        reports.push(match actual {
            Ok(actual) => compare_tensor(&check.label, &actual, &check.expected, check.kind, plan.atol, plan.rtol),
            Err(e) => {
                TensorReport { tensor: check.label.clone(), max_abs_err: None, allowed: None, status: Status::Fail(e) }
            }
        });
    }
    for (label, why) in &plan.skipped {
        reports.push(TensorReport {
            tensor: label.clone(),
            max_abs_err: None,
            allowed: None,
            status: Status::Skipped(why.clone()),
        });
    }
    reports
}

pub(super) fn lookup<'a>(values: &'a Values, name: &str, output_first: bool) -> Result<&'a Tensor, String> {
    let (first, second) =
        if output_first { (&values.outputs, &values.traces) } else { (&values.traces, &values.outputs) };
    first.get(name).or_else(|| second.get(name)).ok_or_else(|| {
        let mut known: Vec<&str> = values.outputs.keys().chain(values.traces.keys()).map(String::as_str).collect();
        known.sort_unstable();
        known.dedup();
        format!("missing: no trace or output `{name}` (have: {})", known.join(", "))
    })
}

pub(super) fn actual_of(source: &Source, values: &Values) -> Result<Tensor, String> {
    match source {
        Source::Trace(name) => lookup(values, name, false).cloned(),
        Source::Output(name) => lookup(values, name, true).cloned(),
        Source::ArgmaxOverTime(name) => argmax_over_time(lookup(values, name, true)?),
        Source::Loss(spec) => loss_of(spec, values),
        Source::Gradient(name) => {
            let out = snnc_passes::autodiff::grad_output_name(name);
            values.outputs.get(&out).cloned().ok_or_else(|| format!("missing: no gradient output `{out}`"))
        }
        Source::RunningStat(spec) => super::batchnorm::running_stat_of(spec, values),
    }
}

/// The first index of the maximum over dim 0 (`torch.max(x, 0)` on the CPU).
pub fn argmax_over_time(t: &Tensor) -> Result<Tensor, String> {
    let Some((&steps, rest)) = t.shape.split_first() else {
        return Err(format!("cannot take the argmax over time of a scalar (shape {:?})", t.shape));
    };
    let n: usize = rest.iter().product();
    let mut best = vec![f64::NEG_INFINITY; n];
    let mut arg = vec![0.0; n];
    for step in 0..steps {
        for k in 0..n {
            let x = t.data[step * n + k];
            if x > best[k] || (step == 0 && x.is_nan()) {
                best[k] = x;
                arg[k] = step as f64;
            }
        }
    }
    Ok(Tensor { shape: rest.to_vec(), dtype: ElemType::I64, data: arg })
}

pub(super) fn loss_of(spec: &LossSpec, values: &Values) -> Result<Tensor, String> {
    let value = match spec {
        LossSpec::WeightedSum(w) => {
            let out = lookup(values, "output", true)?;
            if out.len() != w.len() {
                return Err(format!("output has shape {:?} but the loss weights {:?}", out.shape, w.shape));
            }
            out.data.iter().zip(&w.data).map(|(a, b)| a * b).sum()
        }
        LossSpec::Nll(targets) => {
            let lp = lookup(values, "readout", true)?;
            let [batch, classes] = lp.shape[..] else {
                return Err(format!("readout must be [batch, classes], got {:?}", lp.shape));
            };
            if targets.len() != batch || targets.iter().any(|&t| t >= classes) {
                return Err(format!("targets {targets:?} do not fit readout shape {:?}", lp.shape));
            }
            -targets.iter().enumerate().map(|(b, &t)| lp.data[b * classes + t]).sum::<f64>() / batch as f64
        }
    };
    Ok(Tensor { shape: Vec::new(), dtype: ElemType::F64, data: vec![value] })
}

/// The shape without its size-1 dimensions.
pub(super) fn squeezed(shape: &[usize]) -> Vec<usize> {
    shape.iter().copied().filter(|&d| d != 1).collect()
}

/// The multi-index of flat index `k` in `shape`.
pub(super) fn unravel(mut k: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = k % d;
            k /= d;
        }
    }
    idx
}

pub(super) fn fmt_index(idx: &[usize]) -> String {
    let parts: Vec<String> = idx.iter().map(usize::to_string).collect();
    format!("[{}]", parts.join(","))
}

/// Compares one tensor: within `atol + rtol * max|expected|` for
/// [`Kind::Float`], exactly for [`Kind::Exact`]. NaN never matches a number.
pub(super) fn compare_tensor(
    label: &str,
    actual: &Tensor,
    expected: &Tensor,
    kind: Kind,
    atol: f64,
    rtol: f64,
) -> TensorReport {
    let fail = |detail: String| TensorReport {
        tensor: label.to_string(),
        max_abs_err: None,
        allowed: None,
        status: Status::Fail(detail),
    };
    if actual.shape != expected.shape
        && (actual.len() != expected.len() || squeezed(&actual.shape) != squeezed(&expected.shape))
    {
        return fail(format!("shape mismatch: expected {:?}, actual {:?}", expected.shape, actual.shape));
    }
    let allowed = match kind {
        Kind::Exact => 0.0,
        Kind::Float => {
            let max_expected = expected.data.iter().fold(0.0f64, |m, x| if x.abs() > m { x.abs() } else { m });
            atol + rtol * max_expected
        }
    };
    let err_at = |a: f64, e: f64| -> f64 {
        if (a.is_nan() && e.is_nan()) || a == e {
            0.0
        } else {
            let d = (a - e).abs();
            if d.is_nan() { f64::INFINITY } else { d }
        }
    };
    let mut max_err = 0.0f64;
    let mut first_bad: Option<usize> = None;
    let mut n_bad = 0usize;
    for (k, (&a, &e)) in actual.data.iter().zip(&expected.data).enumerate() {
        let err = err_at(a, e);
        max_err = max_err.max(err);
        if err > allowed {
            n_bad += 1;
            first_bad.get_or_insert(k);
        }
    }
    let status = match first_bad {
        None => Status::Pass,
        Some(k) => Status::Fail(format!(
            "{n_bad} of {} differ; first at {}: expected {}, actual {}",
            expected.len(),
            fmt_index(&unravel(k, &expected.shape)),
            expected.data[k],
            actual.data[k]
        )),
    };
    TensorReport { tensor: label.to_string(), max_abs_err: Some(max_err), allowed: Some(allowed), status }
}
