//! `dce`: dead-code elimination.
//!
//! **What it does.** Removes every node whose value nothing needs. A node
//! is needed when it is an output, a `state_write` (it sets the state for
//! the next step), a named node (its name is a recorded trace: `lif1.v`,
//! `fc1.out`, ...), or an operand of a needed node. Everything else goes,
//! including the `const` operands that `const-fold` left behind and the
//! `state_read`s nobody uses. Declarations stay: unused parameters and
//! states are still part of the module (a weights file still holds every
//! parameter), and a state keeps its write.
//!
//! With [`Dce::keep_names`] off (`dce=drop-names` in `--passes`), names do
//! not keep nodes alive: for runs that record nothing. A name on a node
//! that is needed anyway stays.
//!
//! Regions left empty are removed.
//!
//! **Needs.** A valid module.
//!
//! **Preserves.** Every output, every state update, and (by default) every
//! named value. The module is compacted at the end; the result is
//! deterministic.

use snnc_ir::{Module, Op};

use crate::util;
use crate::{Pass, PassError, PassReport};

/// The dead-code-elimination pass (`dce`).
#[derive(Clone, Copy, Debug)]
pub struct Dce {
    /// Named nodes are kept even when unused (default), so recordings keep
    /// every trace.
    pub keep_names: bool,
}

impl Default for Dce {
    fn default() -> Self {
        Dce { keep_names: true }
    }
}

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, module: &mut Module) -> Result<PassReport, PassError> {
        let n = module.nodes.len();
        let mut live = vec![false; n];
        let mut work = Vec::new();
        for out in &module.outputs {
            work.push(out.value);
        }
        for region in &module.body {
            for &h in &region.nodes {
                let node = &module.nodes[h];
                if matches!(node.op, Op::StateWrite { .. }) || (self.keep_names && node.name.is_some()) {
                    work.push(h);
                }
            }
        }
        while let Some(h) = work.pop() {
            if std::mem::replace(&mut live[h.index()], true) {
                continue;
            }
            work.extend(module.nodes[h].op.operands());
        }
        let placed: usize = module.body.iter().map(|r| r.nodes.len()).sum();
        let dead: Vec<bool> = live.iter().map(|l| !l).collect();
        util::remove_nodes(module, &dead);
        let kept: usize = module.body.iter().map(|r| r.nodes.len()).sum();
        util::drop_empty_regions(module);
        snnc_ir::compact(module);
        let mut report = PassReport::default();
        report.note(format!("removed {} unused node(s)", placed - kept));
        Ok(report)
    }
}
