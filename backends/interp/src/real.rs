//! The float type an evaluation runs in: `f32` or `f64`, the module's float.

use snnc_runtime::ElemType;

/// A float type the interpreter computes in. Every op is computed with this
/// type's arithmetic, so an `f32` run rounds after every operation.
pub(crate) trait Real: num_traits::Float + std::fmt::Debug + Default + 'static {
    /// The host element type of tensors holding these values.
    const ELEM: ElemType;
    /// Converts, rounding to nearest.
    fn from_f64(x: f64) -> Self;
    /// Converts exactly.
    fn to_f64(self) -> f64;
    /// One entry of an STDP weight update in this type (`snnc_ir::stdp`).
    fn stdp_update(rule: &snnc_ir::StdpRule, w: Self, plus: Self, minus: Self) -> Self;
}

impl Real for f32 {
    fn stdp_update(rule: &snnc_ir::StdpRule, w: f32, plus: f32, minus: f32) -> f32 {
        rule.update(w, plus, minus)
    }
    const ELEM: ElemType = ElemType::F32;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    fn stdp_update(rule: &snnc_ir::StdpRule, w: f64, plus: f64, minus: f64) -> f64 {
        rule.update(w, plus, minus)
    }
    const ELEM: ElemType = ElemType::F64;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
}
