//! What each fused step-loop kernel moves per neuron and step: the
//! "bytes per neuron-step" of a neuron model, read off the optimised IR.
//!
//! A kernel of a step loop reads its per-step sequence inputs (`step`
//! operands: the input current, recorded state histories, incoming
//! gradients) and writes the values of the loop kept for every step
//! (operands of `collect`: spikes, the histories the backward reads, the
//! current's gradient). Every value is 4 bytes (the CPU backend keeps
//! spikes as f32). States carried from step to step are not counted: a
//! whole-loop kernel keeps them in registers (`snnc_cpu`'s `steploop`);
//! a loop that runs split over the batch reads and writes them once per
//! step, from cache (`states` says how many).

use snnc_ir::{Module, Op};

/// One fused kernel of a step loop and its per-neuron, per-step traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelTraffic {
    /// The kernel's name (the layer, or `grad` for a derived one).
    pub name: String,
    /// Whether its loop runs backwards in time (the backward pass).
    pub reverse: bool,
    /// Per-step sequence values read (`step` operands of the kernel).
    pub seq_reads: u64,
    /// Values of the loop written at every step (operands of `collect`).
    pub seq_writes: u64,
    /// States the kernel carries from step to step.
    pub states: u64,
    /// Instructions in the kernel's body.
    pub ops: usize,
}

impl KernelTraffic {
    /// Bytes read and written per neuron and step (4 bytes a value).
    pub fn bytes(&self) -> u64 {
        4 * (self.seq_reads + self.seq_writes)
    }
}

/// Every fused kernel of `module`'s step loops, in execution order.
pub fn step_kernels(module: &Module) -> Vec<KernelTraffic> {
    let mut collected = vec![false; module.nodes.len()];
    for (_, node) in module.nodes.iter() {
        if let Op::Collect(x) = node.op {
            collected[x.index()] = true;
        }
    }
    let mut out = Vec::new();
    for region in module.body.iter().filter(|r| r.is_step()) {
        let writes = region.nodes.iter().filter(|h| collected[h.index()]).count() as u64;
        let states = region.nodes.iter().filter(|&&h| matches!(module.nodes[h].op, Op::StateRead(_))).count() as u64;
        for &h in &region.nodes {
            let Op::Fused(kernel) = &module.nodes[h].op else { continue };
            let reads = kernel.inputs.iter().filter(|&&x| matches!(module.nodes[x].op, Op::Step(_))).count() as u64;
            out.push(KernelTraffic {
                name: kernel.name.clone(),
                reverse: region.reverse,
                seq_reads: reads,
                seq_writes: writes,
                states,
                ops: kernel.body.len(),
            });
        }
    }
    out
}
