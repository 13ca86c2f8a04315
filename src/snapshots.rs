//! Weight snapshots during a run: `snnc run NET --record REC --record-every K`.
//!
//! A plastic weight (`plasticity: STDP(...)`, the state
//! `NAME.weight.plastic`) changes at every step, but a recording holds one
//! value per step of `[B, ...]` traces only: the weight itself (`[out, in]`
//! per step) would be `T` times its size. So the run is cut into chunks of
//! `K` steps (the last one shorter when `K` does not divide `T`), each chunk
//! starting from the state the previous one ended in (weight, traces and
//! neuron states, as [`crate::api::Executable::forward_with_state`] carries
//! them), and the plastic weights are copied out between chunks.
//!
//! A chunked run gives the bits of one run: the step loop depends on the
//! step index only through the Poisson encoders' random numbers
//! (`Op::Uniform`: `rng::uniform(seed, t, k)`), so the chunks are lowered
//! with those numbers as an input (`LowerOptions::poisson_uniform_input`)
//! that is filled here with the same numbers at the global step
//! `offset + t`. Per-step inputs `[T, B, ...]` are cut into their chunks;
//! a static input (an encoder's `[B, ...]`) goes to every chunk. Outputs
//! and traces are joined along time, so the [`RunOutput`] is the one run's.
//!
//! The recording gets, per plastic weight, `NAME.weight` of shape
//! `[n, ...the weight's shape]` (its value at step 0, before any update,
//! then after steps `K`, `2K`, ... and after the last step) and one
//! `weight_steps` (`[n]`, int64) with those step counts.

use std::collections::BTreeMap;

use snnc_frontend::{Encoder, LowerOptions};
use snnc_ir::StateInit;
use snnc_passes::Pipeline;
use snnc_runtime::{ElemType, Tensor, Weights};

use crate::driver::{self, Compiled, Error, RunOutput, Target};
use crate::memory;

/// The name of the recording's step counts of the snapshots.
pub const STEPS_KEY: &str = "weight_steps";

/// The plastic weights at a few steps of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshots {
    /// The steps after which each snapshot was taken (0: before the first).
    pub steps: Vec<usize>,
    /// Per plastic parameter (`fc.weight`), its values stacked:
    /// `[steps.len(), ...the parameter's shape]`.
    pub weights: BTreeMap<String, Tensor>,
}

impl Snapshots {
    /// The tensors a recording holds: every `NAME.weight` and [`STEPS_KEY`].
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        let mut res = self.weights.clone();
        let steps = self.steps.iter().map(|&s| s as f64).collect();
        res.insert(STEPS_KEY.into(), Tensor { shape: vec![self.steps.len()], dtype: ElemType::I64, data: steps });
        res
    }
}

/// The plastic weights of a module: `(state name, parameter name)`.
fn plastic(c: &Compiled) -> Vec<(String, String)> {
    c.module
        .states
        .iter()
        .filter_map(|(_, s)| match s.init {
            StateInit::Param(p) => Some((s.name.clone(), c.module.params[p].name.clone())),
            _ => None,
        })
        .collect()
}

/// Checks `--record-every K` against the network before anything runs.
pub fn check(c: &Compiled, target: Target, every: usize) -> Result<(), Error> {
    let steps = c.module.steps as usize;
    if every == 0 {
        return Err(Error::User(format!(
            "--record-every 0: snapshots are taken every K steps, K from 1 to the network's {steps} steps"
        )));
    }
    if every > steps {
        return Err(Error::User(format!(
            "--record-every {every} is more than the {steps} steps of `{}`; use at most {steps} (K = {steps} \
             records the weights before and after the run)",
            c.network.name
        )));
    }
    if plastic(c).is_empty() {
        return Err(Error::User(format!(
            "--record-every: network `{}` has no plastic weight (a layer with `plasticity: STDP(...)`) to snapshot; \
             its weights do not change during a run, so drop --record-every",
            c.network.name
        )));
    }
    if target == Target::Cuda {
        return Err(Error::User(
            "--record-every: the cuda backend does not carry state between chunks yet; use --target cpu".into(),
        ));
    }
    if let Some(o) = c.module.outputs.iter().find(|o| !c.module.nodes[o.value].ty.seq) {
        return Err(Error::User(format!(
            "--record-every: the output `{}` of `{}` is a value over the whole run (a readout), which a run cut into \
             chunks of {every} steps does not give; drop the readout or --record-every",
            o.name, c.network.name
        )));
    }
    Ok(())
}

/// The step counts after which snapshots are taken: 0, K, 2K, ..., and `steps`.
pub fn snapshot_steps(steps: usize, every: usize) -> Vec<usize> {
    let mut res: Vec<usize> = (0..steps).step_by(every.max(1)).collect();
    res.push(steps);
    res
}

/// A chunk's module: the network lowered with `steps` steps and the Poisson
/// encoder's random numbers as the input `uniform`, through `pipeline`.
fn chunk_module(c: &Compiled, steps: usize, pipeline: &Pipeline) -> Result<Compiled, Error> {
    let mut net = c.network.clone();
    net.steps = u32::try_from(steps).map_err(|_| Error::Internal(format!("a chunk of {steps} steps")))?;
    let opts = LowerOptions { float: c.module.float, poisson_uniform_input: true, ..Default::default() };
    let mut chunk = driver::compile(&net, &c.network.name, &opts)?;
    driver::optimize(&mut chunk, pipeline, &mut |_| {})?;
    Ok(chunk)
}

/// The seed of the network's Poisson encoder, if it has one.
fn poisson_seed(c: &Compiled) -> Option<u64> {
    match c.network.encoder {
        Some(Encoder::Poisson { seed, .. } | Encoder::SignedPoisson { seed, .. }) => Some(seed),
        _ => None,
    }
}

/// Steps `[from, from + len)` of a `[T, ...]` tensor.
fn time_slice(t: &Tensor, from: usize, len: usize) -> Tensor {
    let per_step = t.shape[1..].iter().product::<usize>();
    let mut shape = t.shape.clone();
    shape[0] = len;
    Tensor { shape, dtype: t.dtype, data: t.data[from * per_step..(from + len) * per_step].to_vec() }
}

/// Appends a chunk's `[len, ...]` tensor to the joined `[.., ...]` one.
fn append(joined: &mut BTreeMap<String, Tensor>, chunk: BTreeMap<String, Tensor>) {
    for (name, t) in chunk {
        match joined.get_mut(&name) {
            Some(j) => {
                j.shape[0] += t.shape[0];
                j.data.extend(t.data);
            }
            None => {
                joined.insert(name, t);
            }
        }
    }
}

/// Runs `c` (optimised by `pipeline`) on `target` in chunks of `every`
/// steps, recording, and snapshots the plastic weights between chunks.
/// Checks as [`check`] does first. The [`RunOutput`] is that of one run.
pub fn run(
    c: &Compiled,
    target: Target,
    pipeline: &Pipeline,
    weights: &Weights,
    inputs: &BTreeMap<String, Tensor>,
    every: usize,
) -> Result<(RunOutput, Snapshots), Error> {
    check(c, target, every)?;
    driver::check_run(&c.module, weights, inputs)?;
    let steps = c.module.steps as usize;
    let batch = driver::batch_of(&c.module, inputs);
    let dtype = driver::elem_type(c.module.float);
    let plastic = plastic(c);
    let at = snapshot_steps(steps, every);
    let mut snaps: BTreeMap<String, Vec<f64>> =
        plastic.iter().map(|(_, p)| (p.clone(), weights[p].data.clone())).collect();

    let full = chunk_module(c, every, pipeline)?;
    let rest = match steps % every {
        0 => None,
        r => Some(chunk_module(c, r, pipeline)?),
    };
    let exe = |m: &Compiled| -> Result<Option<snnc_cpu::Executable>, Error> {
        match target {
            Target::Cpu => Ok(Some(snnc_cpu::compile(&m.module, &m.info)?)),
            _ => Ok(None),
        }
    };
    let (full_exe, rest_exe) = (exe(&full)?, rest.as_ref().map(exe).transpose()?.flatten());
    let what = format!("running `{}` on {} in chunks of {every} steps", c.network.name, target.name());
    let buffers = match &full_exe {
        Some(e) => e.planned_buffers(true),
        None => memory::interp_buffers(&full.module, true),
    };
    let part = memory::Part { module: &full.module, batch: batch as u64, buffers, tensor_limit: None };
    memory::check(&memory::Need { what, parts: vec![part], extra: 0 })?;

    let seed = poisson_seed(c);
    let mut state: BTreeMap<String, Tensor> = BTreeMap::new();
    let (mut outputs, mut traces) = (BTreeMap::new(), BTreeMap::new());
    for w in at.windows(2) {
        let (from, len) = (w[0], w[1] - w[0]);
        let (m, e) =
            if len == every { (&full, full_exe.as_ref()) } else { (rest.as_ref().unwrap_or(&full), rest_exe.as_ref()) };
        let mut chunk_inputs = BTreeMap::new();
        for (_, input) in m.module.inputs.iter() {
            if input.name == "uniform" {
                let Some(seed) = seed else { continue };
                let Some(x) = inputs.get("x") else { continue };
                let per_step = x.data.len();
                let mut data = Vec::with_capacity(len * per_step);
                for t in from..from + len {
                    let t = u32::try_from(t).map_err(|_| Error::Internal("a step beyond 2^32".into()))?;
                    data.extend((0..per_step as u64).map(|k| snnc_ir::rng::uniform(seed, t, k)));
                }
                let mut shape = vec![len];
                shape.extend(&x.shape);
                chunk_inputs.insert(input.name.clone(), Tensor { shape, dtype, data });
                continue;
            }
            let Some(t) = inputs.get(&input.name) else { continue };
            let t = if input.ty.seq { time_slice(t, from, len) } else { t.clone() };
            chunk_inputs.insert(input.name.clone(), t);
        }
        let initial_state = std::mem::take(&mut state);
        let (out, tr, fin) = match e {
            Some(exe) => {
                let res = exe.run(
                    weights,
                    &chunk_inputs,
                    &snnc_cpu::RunOptions { record: true, initial_state, ..Default::default() },
                )?;
                (res.outputs, res.traces, res.final_state)
            }
            None => {
                let opts = snnc_interp::RunOptions { record: true, initial_state };
                let res = snnc_interp::run(&m.module, &m.info, weights, &chunk_inputs, &opts)
                    .map_err(|e| Error::User(e.to_string()))?;
                (res.outputs, res.traces, res.final_state)
            }
        };
        append(&mut outputs, out);
        append(&mut traces, tr);
        for (s, p) in &plastic {
            let w = fin.get(s).ok_or_else(|| Error::Internal(format!("no final state `{s}` after a chunk")))?;
            if let Some(v) = snaps.get_mut(p) {
                v.extend(&w.data);
            }
        }
        state = fin;
    }
    let weights_out = snaps
        .into_iter()
        .map(|(p, data)| {
            let mut shape = vec![at.len()];
            shape.extend(&weights[&p].shape);
            (p, Tensor { shape, dtype, data })
        })
        .collect();
    let res = RunOutput { outputs, traces, batch, final_state: state };
    Ok((res, Snapshots { steps: at, weights: weights_out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_steps_end_with_the_last_step() {
        assert_eq!(snapshot_steps(10, 5), [0, 5, 10]);
        assert_eq!(snapshot_steps(10, 4), [0, 4, 8, 10]);
        assert_eq!(snapshot_steps(10, 10), [0, 10]);
        assert_eq!(snapshot_steps(3, 1), [0, 1, 2, 3]);
    }
}
