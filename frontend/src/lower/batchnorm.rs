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
//! statistics in time order. `[C]` values meet `[B, C, H, W]` through a
//! `channel_broadcast` to `[C, H, W]` (a `[C]` already broadcasts against
//! `[B, C]`).

use snnc_ir::{BinaryOp, Handle, Node, Op, ParamInit, Shape, UnaryOp};

use super::{Lower, Res, invalid};

/// The names of a BatchNorm layer's per-step statistics outputs (training
/// modules only): `(NAME.batch_mean, NAME.batch_var)`.
pub fn batch_stat_outputs(name: &str) -> (String, String) {
    (format!("{name}.batch_mean"), format!("{name}.batch_var"))
}

impl Lower<'_> {
    /// Lowers a BatchNorm layer on the per-sample `shape` (`[C]` for
    /// `BatchNorm1d`, `[C, H, W]` for `BatchNorm2d`).
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
        let h = self.float_of(x)?;
        let eps = self.c(eps)?;
        let bshape = Shape::fixed(shape);
        // `[C]` to what broadcasts against `[B, ...shape]`.
        let bc = |cx: &mut Self, v: Handle<Node>, pre: bool| -> Res<Handle<Node>> {
            if !two_d {
                return Ok(v);
            }
            let op = Op::ChannelBroadcast { arg: v, shape: bshape.clone(), mean: false };
            if pre { cx.emit_pre(op) } else { cx.emit(op) }
        };
        let y = if self.training {
            let mu = self.emit(Op::ChannelSum { arg: h, mean: true })?;
            let mu_b = bc(self, mu, false)?;
            let d = self.sub(h, mu_b)?;
            let sq = self.mul(d, d)?;
            let var = self.emit(Op::ChannelSum { arg: sq, mean: true })?;
            let (mean_name, var_name) = batch_stat_outputs(name);
            self.b.name(mu, mean_name.clone());
            self.b.name(var, var_name.clone());
            self.bn_stats.push((mean_name, mu));
            self.bn_stats.push((var_name, var));
            let ve = self.add(var, eps)?;
            let sd = self.emit(Op::Unary { op: UnaryOp::Sqrt, arg: ve })?;
            let sd = bc(self, sd, false)?;
            let n = self.bin(BinaryOp::Div, d, sd)?;
            let g = bc(self, gamma, true)?;
            let s = self.mul(n, g)?;
            let b = bc(self, beta, true)?;
            self.add(s, b)?
        } else {
            let ve = self.emit_pre(Op::Binary { op: BinaryOp::Add, lhs: rv, rhs: eps })?;
            let sd = self.emit_pre(Op::Unary { op: UnaryOp::Sqrt, arg: ve })?;
            let (rm, sd) = (bc(self, rm, true)?, bc(self, sd, true)?);
            let d = self.sub(h, rm)?;
            let n = self.bin(BinaryOp::Div, d, sd)?;
            let g = bc(self, gamma, true)?;
            let s = self.mul(n, g)?;
            let b = bc(self, beta, true)?;
            self.add(s, b)?
        };
        Ok(self.b.name(y, format!("{name}.out")))
    }
}
