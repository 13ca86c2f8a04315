//! Typing rules of every op, in one place (see the docs on [`Op`]).
//!
//! [`result_type`] assumes operand handles are in range; the validator checks
//! that first.

use crate::module::Module;
use crate::op::{BinaryOp, MatMulKind, Op, ReduceOp, UnaryOp};
use crate::types::{Dim, Dtype, Shape, Type};

/// Computes the type an op produces, or explains why its operands don't fit.
pub fn result_type(module: &Module, op: &Op) -> Result<Type, String> {
    let ty = |h: crate::Handle<crate::Node>| &module.nodes[h].ty;
    match *op {
        Op::Input(h) => Ok(module.inputs[h].ty.clone()),
        Op::Param(h) => {
            let p = &module.params[h];
            Ok(Type::new(p.dtype, p.shape.clone()))
        }
        Op::Const { dtype, value } => {
            if dtype == Dtype::Spike && value != 0.0 && value != 1.0 {
                return Err(format!("a spike constant must be 0 or 1, not {value}"));
            }
            Ok(Type::scalar(dtype))
        }
        Op::StateRead(h) => Ok(module.states[h].ty.clone()),
        Op::StateWrite { state, value } => {
            let s = &module.states[state];
            if *ty(value) != s.ty {
                return Err(format!(
                    "state `{}` has type {} but the written value has type {}",
                    s.name,
                    s.ty,
                    ty(value)
                ));
            }
            Ok(s.ty.clone())
        }
        Op::Step(a) => {
            if !ty(a).seq {
                return Err(format!("`step` needs a sequence value, got {}", ty(a)));
            }
            Ok(ty(a).step())
        }
        Op::Collect(a) => {
            if ty(a).seq {
                return Err(format!("`collect` needs a per-step value, got {}", ty(a)));
            }
            Ok(ty(a).with_seq())
        }
        Op::Unary { op, arg } => {
            let t = ty(arg);
            let accepts_spike = matches!(op, UnaryOp::Relu | UnaryOp::Neg | UnaryOp::Abs);
            if t.dtype == Dtype::Spike {
                if !accepts_spike {
                    return Err(format!("`{}` needs a float operand, got {t}", op.name()));
                }
                return Ok(t.with_dtype(module.float));
            }
            Ok(t.clone())
        }
        Op::Binary { op, lhs, rhs } => {
            let (a, b) = (ty(lhs), ty(rhs));
            let dtype = match (a.dtype, b.dtype) {
                (Dtype::Spike, Dtype::Spike) if op.keeps_spikes() => Dtype::Spike,
                (Dtype::Spike, Dtype::Spike) => {
                    return Err(format!("`{}` of two spikes is not defined; cast one to float", op.name()));
                }
                (Dtype::Spike, f) | (f, Dtype::Spike) => f,
                (x, y) if x == y => x,
                (x, y) => return Err(format!("`{}` mixes {x} and {y}", op.name())),
            };
            let (seq, shape) = broadcast(module.steps, a, b)
                .ok_or_else(|| format!("`{}` cannot broadcast {a} with {b}", op.name()))?;
            Ok(Type { dtype, seq, shape })
        }
        Op::Compare { op, lhs, rhs } => {
            let (a, b) = (ty(lhs), ty(rhs));
            if a.dtype != b.dtype && !(a.dtype == Dtype::Spike || b.dtype == Dtype::Spike) {
                return Err(format!("`{}` mixes {} and {}", op.name(), a.dtype, b.dtype));
            }
            let (seq, shape) = broadcast(module.steps, a, b)
                .ok_or_else(|| format!("`{}` cannot broadcast {a} with {b}", op.name()))?;
            Ok(Type { dtype: Dtype::Spike, seq, shape })
        }
        Op::Select { cond, on_true, on_false } => {
            let (c, a, b) = (ty(cond), ty(on_true), ty(on_false));
            if c.dtype != Dtype::Spike {
                return Err(format!("`select` needs a spike condition, got {c}"));
            }
            let dtype = match (a.dtype, b.dtype) {
                (x, y) if x == y => x,
                (Dtype::Spike, f) | (f, Dtype::Spike) => f,
                (x, y) => return Err(format!("`select` mixes {x} and {y}")),
            };
            let (seq, shape) =
                broadcast(module.steps, a, b).ok_or_else(|| format!("`select` cannot broadcast {a} with {b}"))?;
            let res = Type { dtype, seq, shape };
            match broadcast(module.steps, &res, c) {
                Some((s, sh)) if s == res.seq && sh == res.shape => Ok(res),
                _ => Err(format!("`select` condition {c} does not broadcast to {res}")),
            }
        }
        Op::Threshold { arg, .. } => {
            let t = ty(arg);
            if !t.dtype.is_float() {
                return Err(format!("`threshold` needs a float operand, got {t}"));
            }
            Ok(t.with_dtype(Dtype::Spike))
        }
        Op::StopGradient(a) => Ok(ty(a).clone()),
        Op::Cast { arg, dtype } => {
            if dtype == Dtype::Spike && ty(arg).dtype != Dtype::Spike {
                return Err("cast to spike is not allowed; use `threshold` or a comparison".into());
            }
            Ok(ty(arg).with_dtype(dtype))
        }
        Op::MatMul { input, weight, kind } => {
            let (x, w) = (ty(input), ty(weight));
            if w.seq || w.shape.rank() != 2 || w.shape.has_batch() {
                return Err(format!("`matmul` weight must be a fixed [out, in] matrix, got {w}"));
            }
            if !w.dtype.is_float() {
                return Err(format!("`matmul` weight must be float, got {w}"));
            }
            if kind == MatMulKind::EventDriven && x.dtype != Dtype::Spike {
                return Err(format!("`spike_matmul` needs a spike input, got {x}"));
            }
            if x.dtype != Dtype::Spike && x.dtype != w.dtype {
                return Err(format!("`matmul` mixes {} and {}", x.dtype, w.dtype));
            }
            if x.shape.last() != Some(w.shape.0[1]) {
                return Err(format!(
                    "`matmul` input {x} does not match weight {w}: the input's last dimension must be {}",
                    w.shape.0[1]
                ));
            }
            let mut shape = x.shape.clone();
            *shape.0.last_mut().expect("rank checked above") = w.shape.0[0];
            Ok(Type { dtype: w.dtype, seq: x.seq, shape })
        }
        Op::Conv2d { input, weight, bias, stride, padding } => {
            let (x, w) = (ty(input), ty(weight));
            if x.shape.rank() != 4 {
                return Err(format!("`conv2d` input must be [B, C, H, W], got {x}"));
            }
            if w.seq || w.shape.rank() != 4 || w.shape.has_batch() {
                return Err(format!("`conv2d` weight must be a fixed [O, C, kh, kw] tensor, got {w}"));
            }
            if x.dtype != Dtype::Spike && x.dtype != w.dtype {
                return Err(format!("`conv2d` mixes {} and {}", x.dtype, w.dtype));
            }
            if x.shape.0[1] != w.shape.0[1] {
                return Err(format!("`conv2d` input {x} has other channels than weight {w}"));
            }
            if let Some(b) = bias {
                let b = ty(b);
                if b.seq || b.shape != Shape(vec![w.shape.0[0]]) || b.dtype != w.dtype {
                    return Err(format!("`conv2d` bias must be {}[{}], got {b}", w.dtype, w.shape.0[0]));
                }
            }
            if stride.contains(&0) {
                return Err("`conv2d` stride must be at least 1".into());
            }
            let mut out = vec![x.shape.0[0], w.shape.0[0]];
            for ax in 0..2 {
                let (Dim::Fixed(n), Dim::Fixed(k)) = (x.shape.0[2 + ax], w.shape.0[2 + ax]) else {
                    return Err(format!("`conv2d` spatial dims must be fixed, got {x}"));
                };
                let padded = n + 2 * padding[ax];
                if padded < k {
                    return Err(format!("`conv2d` kernel {k} is larger than the padded input {padded}"));
                }
                out.push(Dim::Fixed((padded - k) / stride[ax] + 1));
            }
            Ok(Type { dtype: w.dtype, seq: x.seq, shape: Shape(out) })
        }
        Op::Pool2d { input, kernel, stride, .. } => {
            let x = ty(input);
            let r = x.shape.rank();
            if r < 2 {
                return Err(format!("`max_pool2d` needs at least 2 dims, got {x}"));
            }
            if stride.contains(&0) || kernel.contains(&0) {
                return Err("`max_pool2d` kernel and stride must be at least 1".into());
            }
            let mut shape = x.shape.clone();
            for ax in 0..2 {
                let Dim::Fixed(n) = x.shape.0[r - 2 + ax] else {
                    return Err(format!("`max_pool2d` spatial dims must be fixed, got {x}"));
                };
                if n < kernel[ax] {
                    return Err(format!("`max_pool2d` kernel {} is larger than the input {n}", kernel[ax]));
                }
                shape.0[r - 2 + ax] = Dim::Fixed((n - kernel[ax]) / stride[ax] + 1);
            }
            Ok(Type { shape, ..x.clone() })
        }
        Op::Reshape { arg, ref shape } => {
            let x = ty(arg);
            if x.shape.has_batch() != shape.has_batch()
                || (shape.has_batch() && (shape.0[0] != Dim::Batch || x.shape.0[0] != Dim::Batch))
                || shape.0.iter().filter(|d| **d == Dim::Batch).count() > 1
            {
                return Err(format!("`reshape` must keep the batch dimension first: {x} to {shape}"));
            }
            if x.shape.fixed_elements() != shape.fixed_elements() {
                return Err(format!("`reshape` changes the element count: {x} to {shape}"));
            }
            Ok(Type { shape: shape.clone(), ..x.clone() })
        }
        Op::ReduceTime { op, arg } => {
            let x = ty(arg);
            if !x.seq {
                return Err(format!("`{}` needs a sequence value, got {x}", op.name()));
            }
            let dtype = match op {
                ReduceOp::Sum | ReduceOp::Mean if x.dtype == Dtype::Spike => module.float,
                _ => x.dtype,
            };
            Ok(Type { dtype, seq: false, shape: x.shape.clone() })
        }
        Op::LogSoftmax { arg } => {
            let x = ty(arg);
            if !x.dtype.is_float() || x.shape.rank() == 0 {
                return Err(format!("`log_softmax` needs a float tensor of rank 1 or more, got {x}"));
            }
            Ok(x.clone())
        }
        Op::Uniform { ref shape, seq, .. } => Ok(Type { dtype: module.float, seq, shape: shape.clone() }),
    }
}

/// Broadcasts two types' full shapes (time first): equal, or one is a
/// suffix of the other and holds no batch dimension. Returns the result's
/// `(seq, shape)`.
pub fn broadcast(steps: u32, a: &Type, b: &Type) -> Option<(bool, Shape)> {
    let (fa, fb) = (a.full_dims(steps), b.full_dims(steps));
    if fa == fb && a.seq == b.seq {
        return Some((a.seq, a.shape.clone()));
    }
    // The shorter operand is static (no time), holds no batch dimension,
    // and its dims are a suffix of the longer one's.
    let suffix = |fl: &[Dim], short: &Type, fs: &[Dim]| {
        !short.seq && !short.shape.has_batch() && fs.len() <= fl.len() && fl[fl.len() - fs.len()..] == *fs
    };
    if suffix(&fa, b, &fb) {
        return Some((a.seq, a.shape.clone()));
    }
    if suffix(&fb, a, &fa) {
        return Some((b.seq, b.shape.clone()));
    }
    None
}

/// The binary ops that are defined for a pair of dtypes (for documentation
/// and tests).
pub fn binary_defined(op: BinaryOp, a: Dtype, b: Dtype) -> bool {
    match (a, b) {
        (Dtype::Spike, Dtype::Spike) => op.keeps_spikes(),
        (Dtype::Spike, _) | (_, Dtype::Spike) => true,
        (x, y) => x == y,
    }
}
