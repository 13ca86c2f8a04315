//! `unroll`: sets the unroll factor of the step loops.
//!
//! **What it does.** Unrolling is a schedule decision, not a rewrite of the
//! nodes: the pass sets [`snnc_ir::Region::unroll`] to `factor` on every
//! step loop, and a backend then emits `factor` copies of the loop body per
//! iteration of its time loop plus a remainder loop of `T mod factor`
//! steps. The text form shows it in the region header,
//! `step t in 0..T unroll 4 {`.
//!
//! The decision: a loop is unrolled when `T >= factor`, so that the
//! unrolled loop runs at least once; with fewer steps than the factor the
//! remainder loop would do all the work, and the loop is left at 1 (not
//! unrolled). A factor of 1 resets every loop to 1. Sequence regions have
//! no time loop and are never unrolled.
//!
//! **Needs.** A valid module.
//!
//! **Preserves.** Every node, value and name: the interpreter ignores the
//! attribute, and backends compute the same steps in the same order.

use snnc_ir::{Module, RegionKind};

use crate::util;
use crate::{Pass, PassError, PassReport};

/// The unroll pass (`unroll`, or `unroll=K` in `--passes`).
#[derive(Clone, Copy, Debug)]
pub struct Unroll {
    /// How many copies of a step loop's body one iteration runs (≥ 1).
    pub factor: u32,
}

impl Unroll {
    /// The factor of `unroll` without an argument.
    pub const DEFAULT_FACTOR: u32 = 4;
}

impl Default for Unroll {
    fn default() -> Self {
        Unroll { factor: Self::DEFAULT_FACTOR }
    }
}

impl Pass for Unroll {
    fn name(&self) -> &'static str {
        "unroll"
    }

    fn run(&self, module: &mut Module) -> Result<PassReport, PassError> {
        if self.factor == 0 {
            return Err(PassError::Unsupported {
                pass: "unroll",
                message: "the unroll factor must be at least 1".into(),
            });
        }
        let mut report = PassReport::default();
        let steps = module.steps;
        let mut loops = 0;
        for r in 0..module.body.len() {
            if module.body[r].kind != RegionKind::Step {
                continue;
            }
            loops += 1;
            let what = loop_label(module, r);
            let k = if steps >= self.factor { self.factor } else { 1 };
            module.body[r].unroll = k;
            if self.factor == 1 {
                continue;
            }
            if k > 1 {
                report.note(format!(
                    "{what}: unroll {k} ({} unrolled iteration(s) of {k} steps, {} remainder step(s))",
                    steps / k,
                    steps % k
                ));
            } else {
                report.note(format!("{what}: not unrolled (T = {steps} < {})", self.factor));
            }
        }
        if loops == 0 {
            report.note("no step loops");
        }
        Ok(report)
    }
}

/// `step loop 3 (lif1)`: the region index and the layers whose states it
/// updates.
pub(crate) fn loop_label(module: &Module, region: usize) -> String {
    let mut layers: Vec<String> = Vec::new();
    for &h in &module.body[region].nodes {
        if let snnc_ir::Op::StateWrite { state, .. } = module.nodes[h].op {
            let layer = util::prefix(&module.states[state].name).to_string();
            if !layers.contains(&layer) {
                layers.push(layer);
            }
        }
    }
    if layers.is_empty() {
        format!("step loop (region {region})")
    } else {
        format!("step loop (region {region}: {})", layers.join(", "))
    }
}
