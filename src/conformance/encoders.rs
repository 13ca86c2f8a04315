//! The encoder cases of the oracle files (`ConstantCurrentLIFEncoder`,
//! `SpikeLatencyLIFEncoder`, `PoissonEncoder`, `SignedPoissonEncoder`,
//! `PopulationEncoder`) and the encoder of a `network` case, as snnc
//! encoders.

use serde_json::{Map, Value};
use snnc_frontend::{Encoder, ExampleInput, LowerOptions, Network, Readout};
use snnc_runtime::Tensor;

use super::layers::lif_params;
use super::{
    Check, Kind, PResult, Plan, Program, Source, as_f64, as_obj, as_u32, bad, dims_u32, get, kind_of, tensor,
    unsupported,
};

/// Splits a static encoder input `[B, ...]` into batch and sample shape; a
/// 1-d input is one sample.
pub(super) fn encoder_input(t: Tensor, what: &str) -> PResult<(Tensor, Vec<u32>)> {
    match t.shape.len() {
        0 => bad(format!("`{what}` must have at least one dimension")),
        1 => {
            let input = dims_u32(&t.shape, what)?;
            let shape = vec![1, t.shape[0]];
            Ok((Tensor { shape, ..t }, input))
        }
        _ => {
            let input = dims_u32(&t.shape[1..], what)?;
            Ok((t, input))
        }
    }
}

/// `f_max` (default 100) and `seed` (default 0) of a Poisson encoder.
fn rate_and_seed(params: &Map<String, Value>, what: &str) -> PResult<(f64, u64)> {
    let f_max = match params.get("f_max") {
        Some(v) => as_f64(v, &format!("{what}.f_max"))?,
        None => 100.0,
    };
    Ok((f_max, params.get("seed").and_then(Value::as_u64).unwrap_or(0)))
}

/// The encoder of a case.
pub(super) fn encoder_from(model: &str, params: &Map<String, Value>, what: &str) -> PResult<Encoder> {
    Ok(match model {
        "ConstantCurrentLIFEncoder" => Encoder::ConstantCurrent { p: lif_params(params, model)? },
        "SpikeLatencyLIFEncoder" => Encoder::SpikeLatency { p: lif_params(params, model)? },
        "PoissonEncoder" => {
            let (f_max, seed) = rate_and_seed(params, what)?;
            Encoder::Poisson { f_max, seed }
        }
        "SignedPoissonEncoder" => {
            let (f_max, seed) = rate_and_seed(params, what)?;
            Encoder::SignedPoisson { f_max, seed }
        }
        "PopulationEncoder" => {
            let out_features = as_u32(get_in(params, "out_features", what)?, &format!("{what}.out_features"))?;
            // `scale: null` is Norse's default (the input's maximum).
            let scale = match params.get("scale") {
                None | Some(Value::Null) => None,
                Some(v) => Some(as_f64(v, &format!("{what}.scale"))?),
            };
            Encoder::Population { out_features, scale }
        }
        other => return unsupported(format!("encoder `{other}` is not supported")),
    })
}

fn get_in<'a>(params: &'a Map<String, Value>, key: &str, what: &str) -> PResult<&'a Value> {
    match params.get(key) {
        Some(v) => Ok(v),
        None => bad(format!("`{what}.{key}` is missing")),
    }
}

/// Whether the encoder draws uniforms (replayed from the case's
/// `inputs.uniform_random`).
pub(super) fn draws_uniforms(encoder: &Encoder) -> bool {
    matches!(encoder, Encoder::Poisson { .. } | Encoder::SignedPoisson { .. })
}

/// Adds the Poisson uniforms (`inputs.uniform_random`) as input `uniform`,
/// reshaped to `[T, B, ...]` when the input was 1-d.
pub(super) fn poisson_uniforms(inputs: &Value, x_shape: &[usize], plan: &mut Plan) -> PResult<()> {
    let u = tensor(get(inputs, "uniform_random")?, "inputs.uniform_random")?;
    let mut shape = vec![*u.shape.first().unwrap_or(&0)];
    shape.extend_from_slice(x_shape);
    if shape.iter().product::<usize>() != u.len() {
        return bad(format!("`inputs.uniform_random` has shape {:?}, which does not fit [T, {x_shape:?}]", u.shape));
    }
    plan.inputs.insert("uniform".into(), Tensor { shape, ..u });
    Ok(())
}

pub(super) fn set_lower(plan: &mut Plan, net: Network, poisson: bool) {
    let opts = LowerOptions { float: plan.float, poisson_uniform_input: poisson, training: false };
    plan.program = Program::Network { net: Box::new(net), opts };
}

/// An encoder case: the encoder alone, its output `encoder.z` checked per
/// step. A `PopulationEncoder` case has no `seq_length` (Norse's result is
/// one tensor, the same at every snnc step): it runs one step, and its
/// `expected.output` is compared with that step.
pub(super) fn plan_encoder(json: &Value, model: &str, name: &str, plan: &mut Plan) -> PResult<()> {
    let params_v = get(json, "parameters")?;
    let params = as_obj(params_v, "parameters")?;
    let population = model == "PopulationEncoder";
    let steps = if population { 1 } else { as_u32(get(params_v, "seq_length")?, "parameters.seq_length")? };
    let dt = match params.get("dt") {
        Some(v) => as_f64(v, "parameters.dt")?,
        None => 0.001,
    };
    let encoder = encoder_from(model, params, "parameters")?;
    let inputs = get(json, "inputs")?;
    let x_key = match model {
        "PoissonEncoder" | "SignedPoissonEncoder" | "PopulationEncoder" => "x",
        _ => "current",
    };
    let (x, input) = encoder_input(tensor(get(inputs, x_key)?, &format!("inputs.{x_key}"))?, x_key)?;
    let poisson = draws_uniforms(&encoder);
    if poisson {
        poisson_uniforms(inputs, &x.shape, plan)?;
    }
    plan.inputs.insert("x".into(), x);
    let net = Network {
        version: snnc_frontend::FORMAT_VERSION,
        name: name.to_string(),
        steps,
        dt,
        input,
        encoder: Some(encoder),
        layers: Vec::new(),
        readout: Readout::Sequence,
        seed: 0,
        example_input: ExampleInput::Pattern,
    };
    set_lower(plan, net, poisson);
    for (k, v) in as_obj(get(json, "expected")?, "expected")? {
        let (trace, kind) = match k.as_str() {
            "z" => ("encoder.z", kind_of(k)),
            // The population code: values, not spikes.
            "output" if population => ("encoder.z", Kind::Float),
            "v_encoder_internal" => ("encoder.v", kind_of(k)),
            "z_before_latency_mask" => ("encoder.z_raw", kind_of(k)),
            other => (other, kind_of(k)),
        };
        plan.checks.push(Check {
            label: k.clone(),
            source: Source::Trace(trace.to_string()),
            kind,
            expected: tensor(v, &format!("expected.{k}"))?,
        });
    }
    Ok(())
}
