//! `const-fold`: evaluates constant subexpressions at compile time.
//!
//! **What it does.** A node whose operands are all scalar `const` nodes
//! (after folding earlier nodes) becomes one `const` holding its value:
//! `mul (const 0.001), (const 100.0)` (Norse's `dt * tau_mem_inv`) becomes
//! `const 0.10000000149011612` in an f32 module. Folded ops: the
//! elementwise ones (`unary`, `binary`, `compare`, `select`, `threshold`,
//! `stop_gradient`, `cast`) of rank-0 operands. The value is computed
//! exactly as the reference interpreter computes it, in the module's float
//! type: in an f32 module every operand is rounded to f32 and every
//! intermediate is an f32, so the folded constant holds the bits the
//! interpreter would have computed at run time and results stay
//! bit-identical. A result that would be NaN is not folded (the IR does not
//! allow NaN constants). The node keeps its place, its type and its name;
//! operands that become unused are left for `dce`.
//!
//! **Needs.** A valid module.
//!
//! **Preserves.** Every value, bit for bit; names, outputs, regions and
//! types. The module is compacted at the end; the result is deterministic.

use num_traits::Float;
use snnc_ir::{BinaryOp, CompareOp, Dtype, Module, Op, UnaryOp};

use crate::{Pass, PassError, PassReport};

/// The constant-folding pass (`const-fold`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ConstFold;

impl Pass for ConstFold {
    fn name(&self) -> &'static str {
        "const-fold"
    }

    fn run(&self, module: &mut Module) -> Result<PassReport, PassError> {
        let mut folded = 0usize;
        let order: Vec<_> = module.body.iter().flat_map(|r| r.nodes.iter().copied()).collect();
        for h in order {
            let node = &module.nodes[h];
            let value = match module.float {
                Dtype::F64 => fold::<f64>(module, &node.op),
                _ => fold::<f32>(module, &node.op),
            };
            let Some(value) = value else { continue };
            if value.is_nan() || !node.ty.shape.is_scalar() || node.ty.seq {
                continue;
            }
            let dtype = node.ty.dtype;
            module.nodes[h].op = Op::Const { value, dtype };
            folded += 1;
        }
        snnc_ir::compact(module);
        let mut report = PassReport::default();
        report.note(format!("folded {folded} node(s) into constants"));
        Ok(report)
    }
}

/// The float arithmetic of the interpreter, in `F`.
trait Real: Float {
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// `max` as the interpreter's: NaN if either is NaN, else the larger, `a`
/// on ties.
fn max_nan<F: Real>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::nan()
    } else if b > a {
        b
    } else {
        a
    }
}

/// `min` as the interpreter's: NaN if either is NaN, else the smaller, `a`
/// on ties.
fn min_nan<F: Real>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::nan()
    } else if b < a {
        b
    } else {
        a
    }
}

fn bool_to<F: Real>(b: bool) -> F {
    if b { F::one() } else { F::zero() }
}

/// The value of a node whose operands are all constants, computed as the
/// interpreter computes it in `F`; `None` if the node is not foldable.
fn fold<F: Real>(module: &Module, op: &Op) -> Option<f64> {
    let c = |h: snnc_ir::Handle<snnc_ir::Node>| -> Option<F> {
        match module.nodes[h].op {
            Op::Const { value, .. } => Some(F::from_f64(value)),
            _ => None,
        }
    };
    let v: F = match *op {
        Op::Unary { op, arg } => {
            let x = c(arg)?;
            match op {
                UnaryOp::Neg => -x,
                UnaryOp::Abs => x.abs(),
                UnaryOp::Exp => x.exp(),
                UnaryOp::Log => x.ln(),
                UnaryOp::Tanh => x.tanh(),
                UnaryOp::Sqrt => x.sqrt(),
                UnaryOp::Relu => max_nan(x, F::zero()),
            }
        }
        Op::Binary { op, lhs, rhs } => {
            let (a, b) = (c(lhs)?, c(rhs)?);
            match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div => a / b,
                BinaryOp::Max => max_nan(a, b),
                BinaryOp::Min => min_nan(a, b),
            }
        }
        Op::Compare { op, lhs, rhs } => {
            let (a, b) = (c(lhs)?, c(rhs)?);
            bool_to(match op {
                CompareOp::Gt => a > b,
                CompareOp::Ge => a >= b,
                CompareOp::Lt => a < b,
                CompareOp::Le => a <= b,
                CompareOp::Eq => a == b,
            })
        }
        Op::Select { cond, on_true, on_false } => {
            let (k, a, b) = (c(cond)?, c(on_true)?, c(on_false)?);
            if k != F::zero() { a } else { b }
        }
        Op::Threshold { arg, .. } => bool_to(c(arg)? > F::zero()),
        Op::StopGradient(arg) => c(arg)?,
        Op::Cast { arg, dtype } => {
            let x = c(arg)?;
            if dtype == Dtype::F32 { F::from_f64(f64::from(x.to_f64() as f32)) } else { x }
        }
        Op::Input(_)
        | Op::Param(_)
        | Op::Const { .. }
        | Op::StateRead(_)
        | Op::StateWrite { .. }
        | Op::Step(_)
        | Op::Collect(_)
        | Op::Fused(_)
        | Op::Extract { .. }
        | Op::MatMul { .. }
        | Op::Conv2d { .. }
        | Op::Pool2d { .. }
        | Op::Reshape { .. }
        | Op::ReduceTime { .. }
        | Op::LogSoftmax { .. }
        | Op::Uniform { .. }
        | Op::Concat { .. }
        | Op::Narrow { .. }
        | Op::ChannelSum { .. }
        | Op::MaxAll(_)
        | Op::ChannelBroadcast { .. }
        | Op::Transpose(_)
        | Op::MatMulGradWeight { .. }
        | Op::SumTo { .. }
        | Op::Conv2dGradInput { .. }
        | Op::Conv2dGradWeight { .. }
        | Op::Conv2dGradBias { .. }
        | Op::Pool2dGrad { .. }
        | Op::ReduceTimeGrad { .. }
        | Op::LogSoftmaxGrad { .. }
        | Op::StdpUpdate { .. } => return None,
    };
    Some(v.to_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use snnc_ir::{Builder, Type};

    #[test]
    fn folds_in_f32_like_the_interpreter() {
        let mut b = Builder::new("m", 1, 0.001, Dtype::F32);
        let dt = b.constant(0.001).unwrap();
        let tau = b.constant(100.0).unwrap();
        let k = b.mul(dt, tau).unwrap();
        let x = b.input("x", Type::new(Dtype::F32, snnc_ir::Shape::batched(&[2])));
        let x = b.emit(Op::Input(x)).unwrap();
        let y = b.mul(k, x).unwrap();
        b.output("y", y);
        let mut m = b.finish();
        ConstFold.run(&mut m).unwrap();
        snnc_ir::validate(&m).unwrap();
        let consts: Vec<f64> = m
            .nodes
            .iter()
            .filter_map(|(_, n)| match n.op {
                Op::Const { value, .. } => Some(value),
                _ => None,
            })
            .collect();
        assert!(consts.contains(&f64::from(0.001f32 * 100.0f32)), "{consts:?}");
    }
}
