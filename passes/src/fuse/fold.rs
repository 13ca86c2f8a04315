//! Constant folding: the value of an elementwise instruction whose operands
//! are constants, computed exactly as the reference interpreter computes it
//! (`snnc-interp`'s kernels): in the module's float type, one rounding per
//! operation, `max`/`min` propagating NaN and keeping the first operand on
//! ties, comparisons and `threshold` giving 0 or 1.
//!
//! Values travel as `f64` holding the exact value of the module's float
//! type (every `f32` is an `f64`). `passes/tests/fuse.rs` checks this file
//! against the interpreter on the special values (±0, ±inf, NaN, ...).

use std::ops::{Add, Div, Mul, Neg, Sub};

use snnc_ir::{BinaryOp, CompareOp, Dtype, KernelInst, UnaryOp};

/// The float types a module computes in.
trait Float:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NAN: Self;
    /// Rounds to nearest.
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn is_nan(self) -> bool;
    fn abs(self) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
}

macro_rules! float {
    ($t:ty) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAN: Self = <$t>::NAN;
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
        }
    };
}
float!(f32);
float!(f64);

/// PyTorch's `maximum`: NaN if either is NaN, else the larger, `a` on ties.
fn max_nan<F: Float>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::NAN
    } else if b > a {
        b
    } else {
        a
    }
}

/// `minimum`: NaN if either is NaN, else the smaller, `a` on ties.
fn min_nan<F: Float>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::NAN
    } else if b < a {
        b
    } else {
        a
    }
}

fn bool_to<F: Float>(b: bool) -> F {
    if b { F::ONE } else { F::ZERO }
}

fn eval<F: Float>(inst: &KernelInst, args: &[F]) -> Option<F> {
    let res = match *inst {
        KernelInst::Input(_) => return None,
        KernelInst::Const { value, .. } => F::from_f64(value),
        KernelInst::Unary { op, .. } => {
            let x = args[0];
            match op {
                UnaryOp::Neg => -x,
                UnaryOp::Abs => x.abs(),
                UnaryOp::Exp => x.exp(),
                UnaryOp::Log => x.ln(),
                UnaryOp::Tanh => x.tanh(),
                UnaryOp::Sqrt => x.sqrt(),
                UnaryOp::Relu => max_nan(x, F::ZERO),
            }
        }
        KernelInst::Binary { op, .. } => {
            let (a, b) = (args[0], args[1]);
            match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div => a / b,
                BinaryOp::Max => max_nan(a, b),
                BinaryOp::Min => min_nan(a, b),
            }
        }
        KernelInst::Compare { op, .. } => {
            let (a, b) = (args[0], args[1]);
            bool_to(match op {
                CompareOp::Gt => a > b,
                CompareOp::Ge => a >= b,
                CompareOp::Lt => a < b,
                CompareOp::Le => a <= b,
                CompareOp::Eq => a == b,
            })
        }
        KernelInst::Select { .. } => {
            if args[0] != F::ZERO {
                args[1]
            } else {
                args[2]
            }
        }
        KernelInst::Threshold { .. } => bool_to(args[0] > F::ZERO),
        KernelInst::StopGradient(_) => args[0],
        KernelInst::Cast { dtype, .. } => {
            if dtype == Dtype::F32 {
                F::from_f64(f64::from(args[0].to_f64() as f32))
            } else {
                args[0]
            }
        }
    };
    Some(res)
}

/// The value of `inst` applied to the constant operands `args` (one per
/// [`KernelInst::args`], each an exact value of the module's float type
/// `float`), as an exact value of that type; `None` for an input.
pub fn fold(float: Dtype, inst: &KernelInst, args: &[f64]) -> Option<f64> {
    match float {
        Dtype::F64 => eval::<f64>(inst, args),
        Dtype::F32 | Dtype::Spike => {
            let args: Vec<f32> = args.iter().map(|&a| a as f32).collect();
            eval::<f32>(inst, &args).map(f64::from)
        }
    }
}

/// A constant of the IR rounded to the module's float type, as the
/// interpreter reads it.
pub fn round(float: Dtype, value: f64) -> f64 {
    match float {
        Dtype::F64 => value,
        Dtype::F32 | Dtype::Spike => f64::from(value as f32),
    }
}
