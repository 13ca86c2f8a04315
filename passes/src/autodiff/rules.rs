//! The adjoint rule of every differentiable op, in PyTorch's order of
//! operations, and which operand edges carry a gradient.
//!
//! `concat`'s adjoint gives operand `i` the `narrow` of the gradient at
//! its offset; `narrow`'s is the `concat` of zero blocks (see
//! `zero_block`) around the gradient.

use snnc_ir::{BinaryOp, CompareOp, Handle, MatMulKind, Node, Op, Shape, Surrogate, UnaryOp};

use super::{Ad, AdError};

type H = Handle<Node>;

/// Whether an op is one the autodiff pass emits (a gradient op).
pub(crate) fn is_backward_op(op: &Op) -> bool {
    matches!(
        op,
        Op::Transpose(_)
            | Op::MatMulGradWeight { .. }
            | Op::SumTo { .. }
            | Op::Conv2dGradInput { .. }
            | Op::Conv2dGradWeight { .. }
            | Op::Conv2dGradBias { .. }
            | Op::Pool2dGrad { .. }
            | Op::ReduceTimeGrad { .. }
            | Op::LogSoftmaxGrad { .. }
    )
}

/// Whether a gradient flows from `op`'s result into its operand `k`.
pub(crate) fn diff_edge(op: &Op, k: usize) -> bool {
    match *op {
        Op::Compare { .. } | Op::StopGradient(_) | Op::Uniform { .. } => false,
        Op::Select { .. } => k > 0,
        Op::Threshold { surrogate, .. } => surrogate.has_gradient(),
        Op::Fused(_) | Op::Extract { .. } => false,
        // A plastic weight is trained by its rule, not by gradients.
        Op::StdpUpdate { .. } => false,
        ref op if is_backward_op(op) => false,
        _ => true,
    }
}

/// Emits the adjoint rule of forward node `h` whose result's gradient is
/// `g`, contributing to its operands.
pub(crate) fn backward(ad: &mut Ad<'_>, h: H, g: H) -> Result<(), AdError> {
    let op = ad.m.nodes[h].op.clone();
    match op {
        Op::Input(_) | Op::Param(_) | Op::Const { .. } | Op::StateRead(_) | Op::Uniform { .. } => Ok(()),
        Op::Compare { .. } | Op::StopGradient(_) => Ok(()),
        Op::StateWrite { value, .. } => ad.contribute(value, g),
        Op::Step(x) => ad.contribute(x, g),
        Op::Collect(v) => ad.contribute(v, g),
        Op::Cast { arg, .. } => ad.contribute(arg, g),
        Op::Reshape { arg, .. } => {
            let shape = ad.ty(arg).shape.clone();
            let gx = if ad.ty(g).shape == shape { g } else { ad.emit(Op::Reshape { arg: g, shape })? };
            ad.contribute(arg, gx)
        }
        Op::Unary { op, arg } => unary(ad, h, op, arg, g),
        Op::Binary { op, lhs, rhs } => binary(ad, op, lhs, rhs, g),
        Op::Select { cond, on_true, on_false } => {
            let c = ad.fv(cond)?;
            let zero = ad.constant(0.0)?;
            if ad.is_needed(on_true) {
                let gt = ad.emit(Op::Select { cond: c, on_true: g, on_false: zero })?;
                ad.contribute(on_true, gt)?;
            }
            if ad.is_needed(on_false) {
                let gf = ad.emit(Op::Select { cond: c, on_true: zero, on_false: g })?;
                ad.contribute(on_false, gf)?;
            }
            Ok(())
        }
        Op::Threshold { arg, surrogate } => {
            if !surrogate.has_gradient() {
                return Ok(());
            }
            let x = ad.fv(arg)?;
            let gx = surrogate_grad(ad, surrogate, x, g)?;
            ad.contribute(arg, gx)
        }
        Op::MatMul { input, weight, .. } => {
            if ad.is_needed(input) {
                let wt = ad.transpose(weight)?;
                let gx = ad.emit(Op::MatMul { input: g, weight: wt, kind: MatMulKind::Dense })?;
                ad.contribute(input, gx)?;
            }
            if ad.is_needed(weight) && !ad.defer_matmul_weight(weight, g, input) {
                let x = ad.fv(input)?;
                let gw = ad.emit(Op::MatMulGradWeight { grad: g, input: x, kind: MatMulKind::Dense })?;
                ad.contribute(weight, gw)?;
            }
            Ok(())
        }
        Op::Conv2d { input, weight, bias, stride, padding, dilation, groups, .. } => {
            if ad.is_needed(input) {
                let w = ad.fv(weight)?;
                let xs = &ad.ty(input).shape.0;
                let n = xs.len();
                let size = |d: snnc_ir::Dim| match d {
                    snnc_ir::Dim::Fixed(v) => Ok(v),
                    snnc_ir::Dim::Batch => Err(AdError("conv2d with a batch spatial dim".into())),
                };
                let input_size = [size(xs[n - 2])?, size(xs[n - 1])?];
                let gx =
                    ad.emit(Op::Conv2dGradInput { grad: g, weight: w, stride, padding, dilation, groups, input_size })?;
                ad.contribute(input, gx)?;
            }
            if ad.is_needed(weight) {
                let x = ad.fv(input)?;
                let ws = &ad.ty(weight).shape.0;
                let k = |d: snnc_ir::Dim| match d {
                    snnc_ir::Dim::Fixed(v) => v,
                    snnc_ir::Dim::Batch => 0,
                };
                let kernel = [k(ws[2]), k(ws[3])];
                let gw = ad.emit(Op::Conv2dGradWeight {
                    grad: g,
                    input: x,
                    kernel,
                    stride,
                    padding,
                    dilation,
                    groups,
                    kind: MatMulKind::Dense,
                })?;
                ad.contribute(weight, gw)?;
            }
            if let Some(b) = bias
                && ad.is_needed(b)
            {
                let gb = ad.emit(Op::Conv2dGradBias { grad: g })?;
                ad.contribute(b, gb)?;
            }
            Ok(())
        }
        Op::Pool2d { op, input, kernel, stride, padding } => {
            // `max` needs the forward input (which element won); `avg` and
            // `sum` only its shape, but the op takes it the same way.
            let x = ad.fv(input)?;
            let gx = ad.emit(Op::Pool2dGrad { op, input: x, grad: g, kernel, stride, padding })?;
            ad.contribute(input, gx)
        }
        Op::ReduceTime { op, arg } => {
            let x = ad.fv(arg)?;
            let gx = ad.emit(Op::ReduceTimeGrad { op, arg: x, grad: g })?;
            ad.contribute(arg, gx)
        }
        Op::LogSoftmax { arg } => {
            let out = ad.fv(h)?;
            let gx = ad.emit(Op::LogSoftmaxGrad { out, grad: g })?;
            ad.contribute(arg, gx)
        }
        Op::Concat { args } => {
            // Each operand's gradient is its slice of the gradient.
            let mut start = 0u32;
            for arg in args {
                let len = concat_size(ad, arg)?;
                if ad.is_needed(arg) {
                    let gx = ad.emit(Op::Narrow { arg: g, start, len })?;
                    ad.contribute(arg, gx)?;
                }
                start += len;
            }
            Ok(())
        }
        Op::Narrow { arg, start, len } => {
            // The gradient, with zero blocks before and after the slice.
            let size = concat_size(ad, arg)?;
            let mut parts = Vec::new();
            if start > 0 {
                parts.push(zero_block(ad, arg, 0, start)?);
            }
            parts.push(g);
            if start + len < size {
                parts.push(zero_block(ad, arg, start + len, size - start - len)?);
            }
            let gx = if parts.len() == 1 { g } else { ad.emit(Op::Concat { args: parts })? };
            ad.contribute(arg, gx)
        }
        Op::ChannelSum { arg, mean, per_step } => {
            // Every summed element gets the gradient of its channel (of
            // its step, `per_step`: the gradient is `[T, C]` then, and its
            // broadcast a sequence).
            let x = ad.ty(arg).clone();
            if x.seq && !per_step {
                return Err(AdError(format!("`{}` of a sequence cannot be differentiated", op.mnemonic())));
            }
            let gx = ad.emit(Op::ChannelBroadcast { arg: g, shape: x.shape, mean })?;
            ad.contribute(arg, gx)
        }
        Op::ChannelBroadcast { arg, mean, .. } => {
            // Each channel gets the sum of its copies' gradients (per step
            // for a per-step `[T, C]` operand).
            let per_step = ad.ty(arg).seq;
            let gx = ad.emit(Op::ChannelSum { arg: g, mean, per_step })?;
            ad.contribute(arg, gx)
        }
        Op::MaxAll(arg) => {
            // torch's `max()` backward: the gradient shared evenly among
            // the elements equal to the maximum.
            let (x, m) = (ad.fv(arg)?, ad.fv(h)?);
            let hit = ad.emit(Op::Compare { op: CompareOp::Eq, lhs: x, rhs: m })?;
            let count = ad.emit(Op::SumTo { arg: hit, shape: Shape::scalar() })?;
            let share = bin(ad, BinaryOp::Div, g, count)?;
            let dtype = ad.float();
            let hit = ad.emit(Op::Cast { arg: hit, dtype })?;
            let gx = bin(ad, BinaryOp::Mul, hit, share)?;
            ad.contribute(arg, gx)
        }
        Op::Fused(_) | Op::Extract { .. } => Err(AdError("`fused` kernels cannot be differentiated".into())),
        ref op => Err(AdError(format!("`{}` cannot be differentiated", op.mnemonic()))),
    }
}

/// The size of the axis of `concat` and `narrow` (dim 1) of forward value `h`.
fn concat_size(ad: &Ad<'_>, h: H) -> Result<u32, AdError> {
    snnc_ir::typing::concat_axis(ad.ty(h)).map_err(|m| AdError(format!("`concat` operand %{} {m}", h.index())))
}

/// Zeros of the module's float with the type of `narrow(x, start, len)`
/// (`x` a forward value): `cast(gt(narrow(x, start, len), +inf))`, false for
/// every value, NaN and infinities included.
fn zero_block(ad: &mut Ad<'_>, x: H, start: u32, len: u32) -> Result<H, AdError> {
    let x = ad.fv(x)?;
    let part = ad.emit(Op::Narrow { arg: x, start, len })?;
    let inf = ad.constant(f64::INFINITY)?;
    let never = ad.emit(Op::Compare { op: CompareOp::Gt, lhs: part, rhs: inf })?;
    let dtype = ad.float();
    ad.emit(Op::Cast { arg: never, dtype })
}

fn bin(ad: &mut Ad<'_>, op: BinaryOp, lhs: H, rhs: H) -> Result<H, AdError> {
    ad.emit(Op::Binary { op, lhs, rhs })
}

fn unary(ad: &mut Ad<'_>, h: H, op: UnaryOp, arg: H, g: H) -> Result<(), AdError> {
    let gx = match op {
        UnaryOp::Neg => ad.emit(Op::Unary { op: UnaryOp::Neg, arg: g })?,
        UnaryOp::Abs => {
            // torch: grad * sgn(x) (0 at 0).
            // sgn(x) = (x > 0) - (x < 0), of x's shape (the comparisons
            // are spikes; the first is cast so that their difference is a
            // number).
            let x = ad.fv(arg)?;
            let zero = ad.constant(0.0)?;
            let pos = ad.emit(Op::Compare { op: CompareOp::Gt, lhs: x, rhs: zero })?;
            let neg = ad.emit(Op::Compare { op: CompareOp::Lt, lhs: x, rhs: zero })?;
            let dtype = ad.float();
            let pos = ad.emit(Op::Cast { arg: pos, dtype })?;
            let s = bin(ad, BinaryOp::Sub, pos, neg)?;
            bin(ad, BinaryOp::Mul, g, s)?
        }
        UnaryOp::Exp => {
            // torch: grad * result.
            let y = ad.fv(h)?;
            bin(ad, BinaryOp::Mul, g, y)?
        }
        UnaryOp::Log => {
            let x = ad.fv(arg)?;
            bin(ad, BinaryOp::Div, g, x)?
        }
        UnaryOp::Tanh => {
            // torch tanh_backward: grad * (1 - y*y).
            let y = ad.fv(h)?;
            let one = ad.constant(1.0)?;
            let yy = bin(ad, BinaryOp::Mul, y, y)?;
            let d = bin(ad, BinaryOp::Sub, one, yy)?;
            bin(ad, BinaryOp::Mul, g, d)?
        }
        UnaryOp::Sqrt => {
            // torch: grad / (2 * result).
            let y = ad.fv(h)?;
            let two = ad.constant(2.0)?;
            let d = bin(ad, BinaryOp::Mul, two, y)?;
            bin(ad, BinaryOp::Div, g, d)?
        }
        UnaryOp::Relu => {
            // torch threshold_backward: grad where result > 0, else 0.
            let y = ad.fv(h)?;
            let zero = ad.constant(0.0)?;
            let pos = ad.emit(Op::Compare { op: CompareOp::Gt, lhs: y, rhs: zero })?;
            ad.emit(Op::Select { cond: pos, on_true: g, on_false: zero })?
        }
    };
    ad.contribute(arg, gx)
}

fn binary(ad: &mut Ad<'_>, op: BinaryOp, lhs: H, rhs: H, g: H) -> Result<(), AdError> {
    let (nl, nr) = (ad.is_needed(lhs), ad.is_needed(rhs));
    match op {
        BinaryOp::Add => {
            if nl {
                ad.contribute(lhs, g)?;
            }
            if nr {
                ad.contribute(rhs, g)?;
            }
        }
        BinaryOp::Sub => {
            if nl {
                ad.contribute(lhs, g)?;
            }
            if nr {
                let n = ad.emit(Op::Unary { op: UnaryOp::Neg, arg: g })?;
                ad.contribute(rhs, n)?;
            }
        }
        BinaryOp::Mul => {
            // torch: grad * other.
            if nl {
                let b = ad.fv(rhs)?;
                let gl = bin(ad, BinaryOp::Mul, g, b)?;
                ad.contribute(lhs, gl)?;
            }
            if nr {
                let a = ad.fv(lhs)?;
                let gr = bin(ad, BinaryOp::Mul, g, a)?;
                ad.contribute(rhs, gr)?;
            }
        }
        BinaryOp::Div => {
            let b = ad.fv(rhs)?;
            if nl {
                let gl = bin(ad, BinaryOp::Div, g, b)?;
                ad.contribute(lhs, gl)?;
            }
            if nr {
                // torch: -grad * ((self / other) / other).
                let a = ad.fv(lhs)?;
                let q = bin(ad, BinaryOp::Div, a, b)?;
                let q = bin(ad, BinaryOp::Div, q, b)?;
                let ng = ad.emit(Op::Unary { op: UnaryOp::Neg, arg: g })?;
                let gr = bin(ad, BinaryOp::Mul, ng, q)?;
                ad.contribute(rhs, gr)?;
            }
        }
        BinaryOp::Max | BinaryOp::Min => {
            // torch.maximum/minimum: the winner gets the gradient, ties
            // split it in half.
            let (a, b) = (ad.fv(lhs)?, ad.fv(rhs)?);
            let win = if op == BinaryOp::Max { CompareOp::Gt } else { CompareOp::Lt };
            let zero = ad.constant(0.0)?;
            let half = ad.constant(0.5)?;
            let gh = bin(ad, BinaryOp::Mul, g, half)?;
            let tie = ad.emit(Op::Compare { op: CompareOp::Eq, lhs: a, rhs: b })?;
            let tied = ad.emit(Op::Select { cond: tie, on_true: gh, on_false: zero })?;
            if nl {
                let w = ad.emit(Op::Compare { op: win, lhs: a, rhs: b })?;
                let gl = ad.emit(Op::Select { cond: w, on_true: g, on_false: tied })?;
                ad.contribute(lhs, gl)?;
            }
            if nr {
                let w = ad.emit(Op::Compare { op: win, lhs: b, rhs: a })?;
                let gr = ad.emit(Op::Select { cond: w, on_true: g, on_false: tied })?;
                ad.contribute(rhs, gr)?;
            }
        }
    }
    Ok(())
}

/// `dy * g(x)` for a surrogate, in the order of Norse 1.1.0's autograd
/// functions (see `docs/norse-semantics.md` §7 and
/// [`Surrogate`]'s table).
fn surrogate_grad(ad: &mut Ad<'_>, s: Surrogate, x: H, dy: H) -> Result<H, AdError> {
    match s {
        Surrogate::Heaviside => Err(AdError("heaviside has no gradient".into())),
        Surrogate::SuperSpike => {
            // grad / (|x| + 1)^2
            let a = ad.emit(Op::Unary { op: UnaryOp::Abs, arg: x })?;
            let one = ad.constant(1.0)?;
            let d = bin(ad, BinaryOp::Add, a, one)?;
            let d2 = bin(ad, BinaryOp::Mul, d, d)?;
            bin(ad, BinaryOp::Div, dy, d2)
        }
        Surrogate::Tanh { alpha } => {
            // grad * (1 - tanh(alpha x)^2)
            let al = ad.constant(alpha)?;
            let ax = bin(ad, BinaryOp::Mul, al, x)?;
            let t = ad.emit(Op::Unary { op: UnaryOp::Tanh, arg: ax })?;
            let tt = bin(ad, BinaryOp::Mul, t, t)?;
            let one = ad.constant(1.0)?;
            let d = bin(ad, BinaryOp::Sub, one, tt)?;
            bin(ad, BinaryOp::Mul, dy, d)
        }
        Surrogate::Triangle { alpha } => {
            // grad * alpha * relu(1 - |x|)
            let a = ad.emit(Op::Unary { op: UnaryOp::Abs, arg: x })?;
            let one = ad.constant(1.0)?;
            let d = bin(ad, BinaryOp::Sub, one, a)?;
            let r = ad.emit(Op::Unary { op: UnaryOp::Relu, arg: d })?;
            let al = ad.constant(alpha)?;
            let gd = bin(ad, BinaryOp::Mul, dy, al)?;
            bin(ad, BinaryOp::Mul, gd, r)
        }
        Surrogate::Circ { alpha } => {
            // grad * alpha^3 / (alpha^2 + x^2)^1.5, the power as s * sqrt(s).
            let a2 = ad.constant(alpha * alpha)?;
            let xx = bin(ad, BinaryOp::Mul, x, x)?;
            let s2 = bin(ad, BinaryOp::Add, a2, xx)?;
            let r = ad.emit(Op::Unary { op: UnaryOp::Sqrt, arg: s2 })?;
            let p = bin(ad, BinaryOp::Mul, s2, r)?;
            let a3 = ad.constant(alpha * alpha * alpha)?;
            let f = bin(ad, BinaryOp::Div, a3, p)?;
            bin(ad, BinaryOp::Mul, dy, f)
        }
        Surrogate::Erfc { alpha } => {
            // grad * 2 exp(-(alpha x)^2) / sqrt(pi)
            let al = ad.constant(alpha)?;
            let ax = bin(ad, BinaryOp::Mul, al, x)?;
            let sq = bin(ad, BinaryOp::Mul, ax, ax)?;
            let n = ad.emit(Op::Unary { op: UnaryOp::Neg, arg: sq })?;
            let e = ad.emit(Op::Unary { op: UnaryOp::Exp, arg: n })?;
            let two = ad.constant(2.0)?;
            let e2 = bin(ad, BinaryOp::Mul, two, e)?;
            let sp = ad.constant(std::f64::consts::PI.sqrt())?;
            let f = bin(ad, BinaryOp::Div, e2, sp)?;
            bin(ad, BinaryOp::Mul, dy, f)
        }
    }
}
