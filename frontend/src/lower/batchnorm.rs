//! `BatchNorm1d` / `BatchNorm2d` as IR primitives (`docs/batchnorm.md`).
//!
//! Evaluation (`LowerOptions::training` false): `(h - running_mean) /
//! sqrt(running_var + eps) * gamma + beta`, the running statistics being
//! the non-trainable parameters `NAME.running_mean` / `NAME.running_var`.
//! Training, per step: `mu = channel_mean(h)`, `d = h - mu`, `var =
//! channel_mean(d * d)` (biased), `y = d / sqrt(var + eps) * gamma + beta`,
//! gradients through `mu` and `var`; `mu` and `var` are named
//! `NAME.batch_mean` / `NAME.batch_var` and collected into the module
//! outputs of the same names (`[T, C]`), from which
//! `snnc_runtime::batchnorm::update_running_stats` updates the running
//! statistics in time order. `[C]` parameters meet `[B, C, H, W]` through
//! a `channel_broadcast` to `[C, H, W]` (a `[C]` already broadcasts against
//! `[B, C]`); a per-step statistic is broadcast to the whole `[B, C, H, W]`
//! (`[B, C]`), so that `time-batch` can lift the normalisation out of the
//! step loop (see [`Lower::per_sample`]).

use snnc_ir::{BinaryOp, Handle, Node, Op, ParamInit, ReduceOp, Shape, UnaryOp};

use super::{Lower, Res, invalid};

/// The names of a BatchNorm layer's per-step statistics outputs (training
/// modules only): `(NAME.batch_mean, NAME.batch_var)`.
pub fn batch_stat_outputs(name: &str) -> (String, String) {
    (format!("{name}.batch_mean"), format!("{name}.batch_var"))
}

/// A BatchNorm layer's parameters and shape, once checked.
pub(super) struct Bn {
    name: String,
    two_d: bool,
    shape: Shape,
    gamma: Handle<Node>,
    beta: Handle<Node>,
    rm: Handle<Node>,
    rv: Handle<Node>,
    eps: Handle<Node>,
}

impl Lower<'_> {
    /// Lowers a BatchNorm layer on the per-sample `shape` (`[C]` for
    /// `BatchNorm1d`, `[C, H, W]` for `BatchNorm2d`), per step.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_norm(
        &mut self,
        name: &str,
        at: &str,
        x: Handle<Node>,
        shape: &[u32],
        producer: &str,
        two_d: bool,
        num_features: Option<u32>,
        eps: f64,
    ) -> Res<Handle<Node>> {
        let bn = self.batch_norm_params(name, at, shape, producer, two_d, num_features, eps)?;
        let h = self.float_of(x)?;
        if !self.training {
            let ve = self.emit_pre(Op::Binary { op: BinaryOp::Add, lhs: bn.rv, rhs: bn.eps })?;
            let sd = self.emit_pre(Op::Unary { op: UnaryOp::Sqrt, arg: ve })?;
            let (rm, sd) = (self.channels(&bn, bn.rm, true)?, self.channels(&bn, sd, true)?);
            let d = self.sub(h, rm)?;
            let n = self.bin(BinaryOp::Div, d, sd)?;
            return self.scale_shift(&bn, n);
        }
        let mu = self.emit(Op::ChannelSum { arg: h, mean: true, per_step: false })?;
        let mu_b = self.per_sample(&bn, mu)?;
        let d = self.sub(h, mu_b)?;
        let sq = self.mul(d, d)?;
        let var = self.emit(Op::ChannelSum { arg: sq, mean: true, per_step: false })?;
        self.batch_stats(&bn, mu, var, true);
        let ve = self.add(var, bn.eps)?;
        let sd = self.emit(Op::Unary { op: UnaryOp::Sqrt, arg: ve })?;
        let sd = self.per_sample(&bn, sd)?;
        let n = self.bin(BinaryOp::Div, d, sd)?;
        self.scale_shift(&bn, n)
    }

    /// The statistics of a time-batched BatchNorm (tdBN) in training, over
    /// all `T·B` samples: the per-step means of `h` and `h·h` (in the step
    /// loop, where `h` is), averaged over the steps in the sequence region
    /// that follows; the biased variance is `E[h²] - E[h]²` (every step
    /// has the same count, so the mean of the step means is the mean).
    /// Returns the per-step sums to collect; [`Self::time_batched_stats`]
    /// finishes them.
    pub(super) fn step_moments(&mut self, x: Handle<Node>) -> Res<(Handle<Node>, Handle<Node>)> {
        let h = self.float_of(x)?;
        let m1 = self.emit(Op::ChannelSum { arg: h, mean: true, per_step: false })?;
        let hh = self.mul(h, h)?;
        let m2 = self.emit(Op::ChannelSum { arg: hh, mean: true, per_step: false })?;
        Ok((m1, m2))
    }

    /// In the sequence region after the first loop: the mean and biased
    /// variance over all steps from the collected step moments, made the
    /// layer's statistics outputs.
    pub(super) fn time_batched_stats(
        &mut self,
        bn: &Bn,
        m1: Handle<Node>,
        m2: Handle<Node>,
    ) -> Res<(Handle<Node>, Handle<Node>)> {
        let mu = self.emit(Op::ReduceTime { op: ReduceOp::Mean, arg: m1 })?;
        let ex2 = self.emit(Op::ReduceTime { op: ReduceOp::Mean, arg: m2 })?;
        let mu2 = self.mul(mu, mu)?;
        let var = self.sub(ex2, mu2)?;
        self.batch_stats(bn, mu, var, false);
        Ok((mu, var))
    }

    /// `(h - mu) / sqrt(var + eps) * gamma + beta` with whole-run `[C]`
    /// statistics (the second loop of a time-batched BatchNorm).
    pub(super) fn normalize(
        &mut self,
        bn: &Bn,
        x: Handle<Node>,
        mu: Handle<Node>,
        var: Handle<Node>,
    ) -> Res<Handle<Node>> {
        let h = self.float_of(x)?;
        let mu_b = self.channels(bn, mu, false)?;
        let d = self.sub(h, mu_b)?;
        let ve = self.add(var, bn.eps)?;
        let sd = self.emit(Op::Unary { op: UnaryOp::Sqrt, arg: ve })?;
        let sd = self.channels(bn, sd, false)?;
        let n = self.bin(BinaryOp::Div, d, sd)?;
        self.scale_shift(bn, n)
    }

    /// Checks the input shape and makes the layer's parameters.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_norm_params(
        &mut self,
        name: &str,
        at: &str,
        shape: &[u32],
        producer: &str,
        two_d: bool,
        num_features: Option<u32>,
        eps: f64,
    ) -> Res<Bn> {
        let (kind, rank, what) =
            if two_d { ("BatchNorm2d", 3, "[channels, height, width]") } else { ("BatchNorm1d", 1, "[features]") };
        if shape.len() != rank {
            let help = if two_d {
                "BatchNorm2d follows a Conv2d or pooling layer; use BatchNorm1d after Linear or Flatten"
            } else {
                "BatchNorm1d follows a Linear or Flatten layer; use BatchNorm2d after Conv2d"
            };
            return Err(invalid(
                self.file,
                at,
                format!("{kind} needs a {what} input, but {producer} gives shape {shape:?}"),
                Some(help.into()),
            ));
        }
        let c = shape[0];
        if let Some(n) = num_features.filter(|n| *n != c) {
            return Err(invalid(
                self.file,
                format!("{at}: num_features"),
                format!("is {n}, but {producer} gives shape {shape:?} with {c} features"),
                Some(format!("set num_features: {c} or leave it out")),
            ));
        }
        let gamma = self.param(format!("{name}.weight"), &[c], true, ParamInit::Fill(1.0))?;
        let beta = self.param(format!("{name}.bias"), &[c], true, ParamInit::Zeros)?;
        let rm = self.param(format!("{name}.running_mean"), &[c], false, ParamInit::Zeros)?;
        let rv = self.param(format!("{name}.running_var"), &[c], false, ParamInit::Fill(1.0))?;
        // A 0-d parameter, so that torch's state_dict maps 1:1.
        self.param(format!("{name}.num_batches_tracked"), &[], false, ParamInit::Zeros)?;
        let eps = self.c(eps)?;
        Ok(Bn { name: name.to_string(), two_d, shape: Shape::fixed(shape), gamma, beta, rm, rv, eps })
    }

    /// `[C]` as what broadcasts against `[B, ...shape]` (in the preamble
    /// when `pre`).
    fn channels(&mut self, bn: &Bn, v: Handle<Node>, pre: bool) -> Res<Handle<Node>> {
        if !bn.two_d {
            return Ok(v);
        }
        let op = Op::ChannelBroadcast { arg: v, shape: bn.shape.clone(), mean: false };
        if pre { self.emit_pre(op) } else { self.emit(op) }
    }

    /// A per-step statistic `[C]` repeated to the whole batch `[B, ...shape]`
    /// (1d and 2d alike). Unlike a `[C, H, W]` that broadcasts by the
    /// suffix rule, the result has the type of the layer's input in the
    /// loop and over whole sequences alike: when `time-batch` lifts the
    /// statistics (`channel_mean_per_step`), this becomes a per-step
    /// broadcast `[T, C]` to `[T, B, ...shape]` and the normalisation a
    /// whole-sequence elementwise op.
    fn per_sample(&mut self, bn: &Bn, v: Handle<Node>) -> Res<Handle<Node>> {
        let mut dims = vec![snnc_ir::Dim::Batch];
        dims.extend(bn.shape.0.iter().copied());
        self.emit(Op::ChannelBroadcast { arg: v, shape: Shape(dims), mean: false })
    }

    /// `n * gamma + beta`, named `NAME.out`.
    fn scale_shift(&mut self, bn: &Bn, n: Handle<Node>) -> Res<Handle<Node>> {
        let g = self.channels(bn, bn.gamma, true)?;
        let s = self.mul(n, g)?;
        let b = self.channels(bn, bn.beta, true)?;
        let y = self.add(s, b)?;
        Ok(self.b.name(y, format!("{}.out", bn.name)))
    }

    /// Names the batch statistics and makes them outputs after the loop:
    /// collected over the steps when `per_step`, as they are otherwise.
    fn batch_stats(&mut self, bn: &Bn, mu: Handle<Node>, var: Handle<Node>, per_step: bool) {
        let (mean_name, var_name) = batch_stat_outputs(&bn.name);
        self.b.name(mu, mean_name.clone());
        self.b.name(var, var_name.clone());
        self.bn_stats.push((mean_name, mu, per_step));
        self.bn_stats.push((var_name, var, per_step));
    }
}
