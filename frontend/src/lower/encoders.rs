//! The value encoders that are not LIF neurons: Norse's
//! `SignedPoissonEncoder` and `PopulationEncoder` (`docs/norse-semantics.md`).

use snnc_ir::{BinaryOp, CompareOp, Handle, MatMulKind, Node, Op, ParamInit, Shape, UnaryOp};

use super::{Lower, Res};

impl Lower<'_> {
    /// `signed_poisson_encode`: `sign(x) * (u < dt*f_max*|x|)`, with
    /// `dt*f_max` a Python float product. A value in {-1, 0, 1} of the
    /// module's float (never a spike: -1 is not a spike value). Written
    /// `f = float(u < rate*|x|)`, `x > 0 ? f : -f`: equal to Norse's for
    /// every non-NaN `x` (a spike needs `|x| > u >= 0`, so `x != 0`; a
    /// negative `x` without a spike gives `-0.0` as torch does, `x = 0`
    /// gives `-0.0` for torch's `0.0`); no gradient reaches `x`, as in
    /// Norse (`sign` and the comparison have none).
    pub(super) fn signed_poisson(
        &mut self,
        f_max: f64,
        seed: u64,
        x: Handle<Node>,
        shape: &[u32],
        uniform: Option<Handle<Node>>,
    ) -> Res<Handle<Node>> {
        let rate = self.c(self.dt * f_max)?;
        let ax = self.emit(Op::Unary { op: UnaryOp::Abs, arg: x })?;
        let p = self.mul(rate, ax)?;
        let u = match uniform {
            Some(u) => self.emit(Op::Step(u))?,
            None => self.emit(Op::Uniform { seed, shape: Shape::batched(shape), seq: false })?,
        };
        let fire = self.emit(Op::Compare { op: CompareOp::Lt, lhs: u, rhs: p })?;
        let float = self.b.float();
        let f = self.emit(Op::Cast { arg: fire, dtype: float })?;
        let minus_f = self.emit(Op::Unary { op: UnaryOp::Neg, arg: f })?;
        let zero = self.c(0.0)?;
        let pos = self.emit(Op::Compare { op: CompareOp::Gt, lhs: x, rhs: zero })?;
        self.named(Op::Select { cond: pos, on_true: f, on_false: minus_f }, "encoder.z".into())
    }

    /// `population_encode` with the Gaussian kernel and the squared
    /// distance: `exp(-((x - c_k)^2 * s) / 2)` for the centres
    /// `c = linspace(0, s, K)`, `s = scale`, or `x.max()` over the whole
    /// batch (`max_all`) when `scale` is left out or 0. The result has the
    /// input's shape followed by `[K]`.
    ///
    /// `x` is repeated along the new last axis by a product with the
    /// constant `[K, 1]` matrix of ones `encoder.ones` (exact: `x * 1`);
    /// the centres are `encoder.grid * (s / (K - 1))` with `encoder.grid`
    /// the constant `[0, 1, ..., K-1]`, torch's `linspace` for the first
    /// half of the centres and within an ulp for the rest. The centres get
    /// no gradient (torch's `linspace` has none); `s` does, through the
    /// product (torch's `x.max()` backward). Both constants are
    /// non-trainable parameters.
    pub(super) fn population(
        &mut self,
        out_features: u32,
        scale: Option<f64>,
        x: Handle<Node>,
        shape: &[u32],
    ) -> Res<Handle<Node>> {
        let k = out_features;
        let s = match scale {
            Some(v) if v != 0.0 => self.c(v)?,
            _ => self.emit(Op::MaxAll(x))?,
        };
        let mut col = shape.to_vec();
        col.push(1);
        let xc = self.emit(Op::Reshape { arg: x, shape: Shape::batched(&col) })?;
        let ones = self.param("encoder.ones".into(), &[k, 1], false, ParamInit::Fill(1.0))?;
        let xk = self.emit(Op::MatMul { input: xc, weight: ones, kind: MatMulKind::Dense })?;
        let grid =
            self.param("encoder.grid".into(), &[k], false, ParamInit::Values((0..k).map(f64::from).collect()))?;
        let centres = if k == 1 {
            grid
        } else {
            let steps = self.c(f64::from(k - 1))?;
            let step = self.emit(Op::Binary { op: BinaryOp::Div, lhs: s, rhs: steps })?;
            let c = self.mul(grid, step)?;
            self.emit(Op::StopGradient(c))?
        };
        let d = self.sub(xk, centres)?;
        let d2 = self.mul(d, d)?;
        let ds = self.mul(d2, s)?;
        let neg = self.emit(Op::Unary { op: UnaryOp::Neg, arg: ds })?;
        let two = self.c(2.0)?;
        let e = self.emit(Op::Binary { op: BinaryOp::Div, lhs: neg, rhs: two })?;
        self.named(Op::Unary { op: UnaryOp::Exp, arg: e }, "encoder.z".into())
    }
}
