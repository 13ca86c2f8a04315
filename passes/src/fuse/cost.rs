//! The extraction cost of a kernel term: bytes moved plus operations, per
//! element.
//!
//! A fused kernel reads each input and writes each output once per element,
//! and keeps everything else in registers, so within a kernel:
//!
//! - an input costs the bytes of one element of the module's float type (4
//!   for `f32`, 8 for `f64`; the reference stores spikes in that type too);
//! - a constant costs nothing (it lives in a register or an immediate);
//! - an operation costs its weight: 1 for the cheap ones (add, sub, mul,
//!   max, min, neg, abs, relu, comparisons, select, threshold, casts,
//!   stop_gradient), 4 for `div` and `sqrt`, 8 for `exp`, `log` and `tanh`
//!   (rough throughput ratios on CPUs and GPUs).
//!
//! egg's extractor sums the costs of a tree, so an input used twice counts
//! twice; that only makes terms that read fewer values cheaper, which is the
//! direction we want. Costs are integers compared as `(total, ops)`, so ties
//! are exact, and the extractor breaks them by the e-class's node order,
//! which is deterministic: extraction never depends on the machine.

use egg::{CostFunction, Id, Language};
use snnc_ir::Dtype;

use super::lang::StepLang;

/// The cost of a term: bytes read from inputs and operations, per element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cost {
    /// `bytes + ops`, the quantity minimised (first, for the ordering).
    pub total: u64,
    pub ops: u64,
    pub bytes: u64,
}

impl Cost {
    fn plus(self, other: Cost) -> Cost {
        Cost {
            total: self.total.saturating_add(other.total),
            ops: self.ops.saturating_add(other.ops),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// The cost function of [`Cost`], for a module of float type `float`.
#[derive(Clone, Copy, Debug)]
pub struct KernelCost {
    elem_bytes: u64,
}

impl KernelCost {
    pub fn new(float: Dtype) -> Self {
        KernelCost { elem_bytes: if float == Dtype::F64 { 8 } else { 4 } }
    }

    /// The weight of one operator (0 for leaves).
    pub fn op_weight(node: &StepLang) -> u64 {
        match node {
            StepLang::Input(_) | StepLang::Num(_) => 0,
            StepLang::Div(_) | StepLang::Sqrt(_) => 4,
            StepLang::Exp(_) | StepLang::Log(_) | StepLang::Tanh(_) => 8,
            StepLang::Neg(_)
            | StepLang::Abs(_)
            | StepLang::Relu(_)
            | StepLang::Add(_)
            | StepLang::Sub(_)
            | StepLang::Mul(_)
            | StepLang::Max(_)
            | StepLang::Min(_)
            | StepLang::Gt(_)
            | StepLang::Ge(_)
            | StepLang::Lt(_)
            | StepLang::Le(_)
            | StepLang::Eq(_)
            | StepLang::Select(_)
            | StepLang::StopGradient(_)
            | StepLang::CastF32(_)
            | StepLang::CastF64(_)
            | StepLang::CastSpike(_)
            | StepLang::Threshold(..) => 1,
        }
    }
}

impl CostFunction<StepLang> for KernelCost {
    type Cost = Cost;

    fn cost<C>(&mut self, enode: &StepLang, mut costs: C) -> Cost
    where
        C: FnMut(Id) -> Cost,
    {
        let ops = Self::op_weight(enode);
        let bytes = if matches!(enode, StepLang::Input(_)) { self.elem_bytes } else { 0 };
        let own = Cost { total: ops + bytes, ops, bytes };
        enode.fold(own, |acc, child| acc.plus(costs(child)))
    }
}
