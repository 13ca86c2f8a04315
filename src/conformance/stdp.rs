//! The STDP oracle cases (`model: stdp_step_linear`, `stdp_step_conv2d`):
//! the module that runs `snnc_frontend::lower::stdp::stdp_step` (the code
//! a plastic `Linear` or `Conv2d` lowers through) on the file's `z_pre`
//! and `z_post`.

use serde_json::Value;
use snnc_frontend::lower::stdp::{Connection, plastic_state_name, stdp_step};
use snnc_frontend::{Stdp, StdpRule};
use snnc_ir::{Builder, CompareOp, Dtype, Module, Op, Param, ParamInit, Shape, StateInit, Type};

use super::{
    CELL, Check, Kind, PResult, Plan, Program, Source, as_bool, as_f64, as_obj, as_str, as_u32, bad, dims_u32, get,
    tensor, unsupported,
};

/// `STDPParameters` from the file's `parameters`, and the convolution's
/// stride, padding and dilation when `convolutional`.
fn params(obj: &serde_json::Map<String, Value>) -> PResult<(Stdp, f64, Option<[u32; 3]>)> {
    let mut p = Stdp::default();
    let mut dt = 0.001;
    let mut conv = [1, 0, 1];
    let mut convolutional = false;
    for (k, v) in obj {
        let x = || as_f64(v, &format!("parameters.{k}"));
        match k.as_str() {
            "a_pre" => p.a_pre = x()?,
            "a_post" => p.a_post = x()?,
            "tau_pre_inv" => p.tau_pre_inv = x()?,
            "tau_post_inv" => p.tau_post_inv = x()?,
            "w_min" => p.w_min = x()?,
            "w_max" => p.w_max = x()?,
            "eta_plus" => p.eta_plus = x()?,
            "eta_minus" => p.eta_minus = x()?,
            "mu" => p.mu = x()?,
            "dt" => dt = x()?,
            "hardbound" => p.hardbound = as_bool(v, "parameters.hardbound")?,
            "stdp_algorithm" => {
                let name = as_str(v, "parameters.stdp_algorithm")?;
                p.rule = StdpRule::from_norse_name(name)
                    .ok_or_else(|| super::PlanError::Bad(format!("unknown stdp_algorithm `{name}`")))?;
            }
            "convolutional" => convolutional = as_bool(v, "parameters.convolutional")?,
            "stride" => conv[0] = as_u32(v, "parameters.stride")?,
            "padding" => conv[1] = as_u32(v, "parameters.padding")?,
            "dilation" => conv[2] = as_u32(v, "parameters.dilation")?,
            // What the file records of Norse's choice.
            "mu_effective" => {}
            other => return unsupported(format!("STDP parameter `{other}` is not supported")),
        }
    }
    Ok((p, dt, convolutional.then_some(conv)))
}

pub(super) fn plan_stdp(json: &Value, model: &str, plan: &mut Plan) -> PResult<()> {
    let (p, dt, conv) = params(as_obj(get(json, "parameters")?, "parameters")?)?;
    let inputs = get(json, "inputs")?;
    let z_pre = tensor(get(inputs, "z_pre")?, "inputs.z_pre")?;
    let z_post = tensor(get(inputs, "z_post")?, "inputs.z_post")?;
    let w0 = tensor(get(get(json, "weights")?, "w0")?, "weights.w0")?;
    let rank = match (model, conv) {
        ("stdp_step_linear", None) => 3,
        ("stdp_step_conv2d", Some(_)) => 5,
        _ => return bad(format!("model `{model}` with `convolutional: {}`", conv.is_some())),
    };
    if z_pre.shape.len() != rank || z_post.shape.len() != rank || w0.shape.len() != rank - 1 {
        return bad(format!("`{model}`: z_pre and z_post must have rank {rank}, w0 rank {}", rank - 1));
    }
    if z_pre.shape[..2] != z_post.shape[..2] {
        return bad("`inputs.z_pre` and `inputs.z_post` have different step or batch counts");
    }
    let steps = dims_u32(&z_pre.shape[..1], "inputs.z_pre")?[0];
    let pre = dims_u32(&z_pre.shape[2..], "inputs.z_pre")?;
    let post = dims_u32(&z_post.shape[2..], "inputs.z_post")?;
    let weight = dims_u32(&w0.shape, "weights.w0")?;
    let connection = match conv {
        None => Connection::Linear,
        Some([s, p, d]) => {
            Connection::Conv2d { kernel: [weight[2], weight[3]], stride: [s, s], padding: [p, p], dilation: [d, d] }
        }
    };
    plan.program = Program::Stdp { p, dt, steps, connection, pre, post, weight };
    plan.inputs.insert("z_pre".into(), z_pre);
    plan.inputs.insert("z_post".into(), z_post);
    plan.weights.insert(format!("{CELL}.weight"), w0);
    for (k, v) in as_obj(get(json, "initial_state")?, "initial_state")? {
        plan.initial_state.insert(format!("{CELL}.{k}"), tensor(v, &format!("initial_state.{k}"))?);
    }
    for (k, v) in as_obj(get(json, "expected")?, "expected")? {
        let source = match k.as_str() {
            "w" => Source::Output("w".into()),
            _ => Source::Trace(format!("{CELL}.{k}")),
        };
        plan.checks.push(Check {
            label: k.clone(),
            source,
            kind: Kind::Float,
            expected: tensor(v, &format!("expected.{k}"))?,
        });
    }
    Ok(())
}

/// `z_pre` and `z_post` (floats 0/1, made spikes) through one STDP step
/// per time step; the weight after each step is the output `w`.
#[allow(clippy::too_many_arguments)]
pub(super) fn stdp_module(
    float: Dtype,
    p: &Stdp,
    dt: f64,
    steps: u32,
    connection: Connection,
    pre: &[u32],
    post: &[u32],
    weight: &[u32],
) -> Result<Module, String> {
    let e = |e: snnc_ir::BuildError| e.to_string();
    let mut b = Builder::new("stdp", steps, dt, float);
    let zi = b.input("z_pre", Type::seq(float, Shape::batched(pre)));
    let zo = b.input("z_post", Type::seq(float, Shape::batched(post)));
    let shape = Shape::fixed(weight);
    let w0 = b.param(Param {
        name: format!("{CELL}.weight"),
        dtype: float,
        shape: shape.clone(),
        trainable: false,
        init: ParamInit::Zeros,
    });
    let w_state = b.state(plastic_state_name(&format!("{CELL}.weight")), Type::new(float, shape), StateInit::Param(w0));
    b.begin_seq();
    let zi = b.emit(Op::Input(zi)).map_err(e)?;
    let zo = b.emit(Op::Input(zo)).map_err(e)?;
    b.begin_step();
    // The 0/1 floats as spikes: `z > 0.5`.
    let half = b.constant(0.5).map_err(e)?;
    let zi = b.emit(Op::Step(zi)).map_err(e)?;
    let zi = b.compare(CompareOp::Gt, zi, half).map_err(e)?;
    let zo = b.emit(Op::Step(zo)).map_err(e)?;
    let zo = b.compare(CompareOp::Gt, zo, half).map_err(e)?;
    let w = b.state_read(w_state).map_err(e)?;
    let step = stdp_step(&mut b, CELL, p, dt, connection, w_state, w, zi, zo).map_err(e)?;
    b.name(step.t_pre_write, format!("{CELL}.t_pre"));
    b.name(step.t_post_write, format!("{CELL}.t_post"));
    b.begin_seq();
    let w_all = b.emit(Op::Collect(step.w_new)).map_err(e)?;
    b.output("w", w_all);
    Ok(b.finish())
}
