//! `sparsify`: chooses event-driven matrix products for spike inputs.
//!
//! **What it does.** A `matmul` whose input has dtype `spike` may be
//! computed event-driven (`spike_matmul`, [`MatMulKind::EventDriven`]): for
//! each row, scan the inputs and add the weight row of every active one.
//! Its cost follows the spike count, the dense product's the layer size.
//! The pass picks the kind of every spike-input `matmul` by a cost model,
//! per row of the input (the `B` or `T·B` rows cancel out):
//!
//! ```text
//! dense        = MADD · in · out                       multiply-adds of the GEMM
//! event-driven = SCAN · in  +  ADD · density · in · out   scan every input, add the active rows
//! choose event-driven  iff  MARGIN · event-driven <= dense
//! ```
//!
//! with `MADD = 1`, `ADD = 4`, `SCAN = 3` and `MARGIN = 1.25`, measured on
//! the CPU backend (`backends/cpu/src/microbench.rs`,
//! `microbench_calibrate`: one thread of the project machine, an AMD Zen 5
//! with AVX-512; 2048 rows of random spikes; ns per row, product / weight
//! gradient):
//!
//! ```text
//! in x out    dense (GEMM)    event-driven at density 0 / 0.01 / 0.05 / 0.1 / 0.2 / 0.3
//! 784 x 100   2927 / 1966     54/127  323/442  908/1163  1416/1841  2265/3056  3244/4016
//! 100 x 100    288 /  247     33/46    48/67    86/140    151/194    237/328    332/484
//! 100 x 10      73 /   47     30/31    39/42    65/67     98/90      148/156    222/214
//! 512 x 512   5773 / 5635     77/321  376/760  1514/2122  2626/3582  5722/6130  8419/8809
//! 1024 x 32   1586 /  977     62/87   373/432  898/1025   1175/1423  1642/2139  2089/2874
//! ```
//!
//! A GEMM multiply-add (AVX-512, about 0.025–0.037 ns) is the unit; an
//! added weight element of the event-driven sums costs about 0.11 ns (`ADD
//! = 4`: plain SSE2 vector adds, a quarter of the width, no fused
//! multiply-add) and scanning an input 0.08–0.1 ns (`SCAN = 3`: testing 64
//! values at once, then bit masks). Where the two meet depends on the use:
//! products break even at densities of 0.2–0.26 for 100 or more outputs,
//! weight gradients (whose sums are read-modify-writes) at 0.1–0.18, a
//! training step's pair of them at 0.18–0.19, and all at a few percent
//! for 10 outputs (a GEMM's narrow tiles and each row's fixed costs, which
//! the model leaves out). `MARGIN = 1.25` puts the choice at the pair's
//! break-even: event-driven when `density <= (1/MARGIN - SCAN/out) / ADD`,
//! e.g. up to 0.19–0.2 for 100 to 784 outputs, 0.18 for 32, 0.125 for 10,
//! and for 4 outputs only a (nearly) silent input. (The CUDA backend has
//! not been measured.)
//!
//! The expected density of an input (the fraction of ones) is, in order:
//! 1. [`Sparsify::per_value`] under the name of the input value, e.g.
//!    `lif1.z` or `encoder.z`, or of a value it passes on unchanged: the
//!    names along `reshape` (`flatten.out` of `encoder.z`), `step`,
//!    `collect` and `stop_gradient` are tried nearest first, and a
//!    `state_read` goes by its state's name (the recurrent input `lif1.z`
//!    of a recurrent layer). The driver fills this
//!    map from the network file (`input_density` of a layer, under the name
//!    of the layer's input) and from a recording (`--profile`: each spike
//!    trace's mean);
//! 2. [`Sparsify::default_density`], [`DEFAULT_DENSITY`] = 0.1 unless set
//!    (about a 10 % firing probability per step, typical of trained SNNs).
//!
//! Both kinds compute the same numbers in every backend (the interpreter
//! runs one kernel for both), so the pass is exact. It also turns an
//! event-driven product back into a dense one when the model prefers that.
//!
//! **Needs.** A valid module. Runs best after `time-batch`, which it does
//! not depend on.
//!
//! **Preserves.** Every value, bit for bit; nodes, names, regions and types
//! (only the `kind` of spike-input matrix products changes).

use std::collections::BTreeMap;

use snnc_ir::{Dim, Dtype, Handle, MatMulKind, Module, Node, Op};

use crate::util;
use crate::{Pass, PassError, PassReport};

/// The density assumed for a spike input without a per-value entry.
pub const DEFAULT_DENSITY: f64 = 0.1;

/// Cost of one multiply-add of the dense product.
pub const MADD: f64 = 1.0;
/// Cost of adding one weight element of an active input's row (see the
/// module docs for the measurements).
pub const ADD: f64 = 4.0;
/// Cost of scanning one input for the active ones.
pub const SCAN: f64 = 3.0;
/// The factor by which event-driven must beat dense.
pub const MARGIN: f64 = 1.25;

/// The sparsify pass (`sparsify`, or `sparsify=DENSITY` in `--passes` to
/// set the default density).
#[derive(Clone, Debug, PartialEq)]
pub struct Sparsify {
    /// The density of a spike input with no entry in `per_value`.
    pub default_density: f64,
    /// Expected densities by the name of the input value (`lif1.z`,
    /// `encoder.z`, ...).
    pub per_value: BTreeMap<String, f64>,
}

impl Default for Sparsify {
    fn default() -> Self {
        Sparsify { default_density: DEFAULT_DENSITY, per_value: BTreeMap::new() }
    }
}

/// The per-row costs of the two kinds for `in` inputs, `out` outputs and a
/// density.
pub fn costs(n_in: u64, n_out: u64, density: f64) -> (f64, f64) {
    let (i, o) = (n_in as f64, n_out as f64);
    (MADD * i * o, SCAN * i + ADD * density * i * o)
}

/// Whether the cost model picks event-driven.
pub fn prefers_event_driven(n_in: u64, n_out: u64, density: f64) -> bool {
    let (dense, event) = costs(n_in, n_out, density);
    MARGIN * event <= dense
}

/// The name under which a value's density is looked up: its own name, or
/// that of the value it passes on (through `reshape`, `step`, `collect`,
/// `stop_gradient`), or the state's name for a `state_read`. `None` if no
/// name is found.
pub fn density_key(module: &Module, h: Handle<Node>) -> Option<String> {
    density_keys(module, h).into_iter().next()
}

/// Every name a value's density may be found under, nearest first: the
/// names along the chain of value-preserving ops that [`density_key`]
/// follows (`flatten.out`, then the `encoder.z` it reshapes).
pub fn density_keys(module: &Module, mut h: Handle<Node>) -> Vec<String> {
    let mut res = Vec::new();
    loop {
        let node = &module.nodes[h];
        if let Some(name) = &node.name {
            res.push(name.clone());
        }
        h = match node.op {
            Op::Reshape { arg, .. } | Op::Step(arg) | Op::Collect(arg) | Op::StopGradient(arg) => arg,
            Op::StateRead(s) => {
                res.push(module.states[s].name.clone());
                return res;
            }
            _ => return res,
        };
    }
}

impl Sparsify {
    /// The density of a spike value, and where it comes from.
    fn density(&self, module: &Module, input: Handle<Node>) -> (f64, String) {
        let keys = density_keys(module, input);
        match keys.iter().find_map(|k| self.per_value.get(k).map(|d| (k, *d))) {
            Some((k, d)) => (d, format!("of {k}")),
            None => {
                let of = keys.first().map(|k| format!(" of {k}")).unwrap_or_default();
                (self.default_density, format!("default{of}"))
            }
        }
    }
}

impl Pass for Sparsify {
    fn name(&self) -> &'static str {
        "sparsify"
    }

    fn run(&self, module: &mut Module) -> Result<PassReport, PassError> {
        let bad = |d: f64| !(0.0..=1.0).contains(&d);
        if bad(self.default_density) {
            return Err(PassError::Unsupported {
                pass: "sparsify",
                message: format!("the default density must be in [0, 1], got {}", self.default_density),
            });
        }
        if let Some((k, d)) = self.per_value.iter().find(|(_, d)| bad(**d)) {
            return Err(PassError::Unsupported {
                pass: "sparsify",
                message: format!("the density of `{k}` must be in [0, 1], got {d}"),
            });
        }
        let mut report = PassReport::default();
        let order: Vec<_> = module.body.iter().flat_map(|r| r.nodes.iter().copied()).collect();
        let mut seen = 0;
        for h in order {
            // A product `input @ W^T`, or the weight gradient `grad^T @ input`
            // of one: the same visits of the input's active elements.
            let (input, shape_of, kind) = match module.nodes[h].op {
                Op::MatMul { input, weight, kind } => (input, weight, kind),
                Op::MatMulGradWeight { input, kind, .. } => (input, h, kind),
                _ => continue,
            };
            if module.nodes[input].ty.dtype != Dtype::Spike {
                continue;
            }
            seen += 1;
            let w = &module.nodes[shape_of].ty.shape.0;
            let (Some(Dim::Fixed(n_out)), Some(Dim::Fixed(n_in))) = (w.first().copied(), w.get(1).copied()) else {
                continue;
            };
            let (density, source) = self.density(module, input);
            let event = prefers_event_driven(u64::from(n_in), u64::from(n_out), density);
            let new_kind = if event { MatMulKind::EventDriven } else { MatMulKind::Dense };
            if let Op::MatMul { kind: k, .. } | Op::MatMulGradWeight { kind: k, .. } = &mut module.nodes[h].op {
                *k = new_kind;
            }
            let (dense, ev) = costs(u64::from(n_in), u64::from(n_out), density);
            report.note(format!(
                "{}: {} (density {density} {source}; per row: dense {dense}, event-driven {ev}{})",
                util::describe(module, h),
                if event { "event-driven" } else { "dense" },
                if kind != new_kind { "; changed" } else { "" },
            ));
        }
        if seen == 0 {
            report.note("no matrix product with a spike input");
        }
        snnc_ir::compact(module);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_model_prefers_dense_for_dense_inputs() {
        assert!(prefers_event_driven(784, 100, 0.1));
        assert!(prefers_event_driven(784, 100, 0.19));
        assert!(!prefers_event_driven(784, 100, 0.21));
        assert!(!prefers_event_driven(784, 100, 0.9));
        assert!(prefers_event_driven(100, 100, 0.19));
        assert!(!prefers_event_driven(100, 100, 0.2));
        assert!(!prefers_event_driven(16, 4, 0.1));
        assert!(prefers_event_driven(16, 4, 0.0));
        assert!(prefers_event_driven(100, 10, 0.1));
        assert!(!prefers_event_driven(100, 10, 0.15));
        assert!(prefers_event_driven(512, 512, 0.19));
        assert!(!prefers_event_driven(512, 512, 0.25));
    }
}
