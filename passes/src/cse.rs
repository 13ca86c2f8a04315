//! `cse`: common-subexpression elimination.
//!
//! **What it does.** Two nodes with the same op, the same attributes and
//! the same operands compute the same value; the later one is removed and
//! its uses (and outputs) go to the earlier one. Constants are equal when
//! their dtype and their value's bits are equal (so `0.0` and `-0.0` stay
//! apart). The operands of `add` and `mul` are compared as an unordered
//! pair (IEEE addition and multiplication commute exactly); those of `max`
//! and `min` are not, because the interpreter's `max(-0, +0)` returns its
//! first operand.
//!
//! Where the earlier node may stand for the later one:
//! - in the same region;
//! - in an earlier sequence region, when the later node is in a sequence
//!   region, or is in a step loop and the value is static (a step loop sees
//!   sequence values only through `step`).
//!
//! Never merged: `state_read` and `state_write` (they are the state's
//! read and write points); `uniform` (its value depends on the step it runs
//! at) and `fused` (its `extract`s live in its region) only within their
//! own region. A named node is merged only into a node
//! of the same region kind (so its recorded trace keeps its shape) that is
//! unnamed, which then takes the name, or that has the same name.
//!
//! **Needs.** A valid module.
//!
//! **Preserves.** Every value, bit for bit; every name and output. The
//! module is compacted at the end; the result is deterministic (nodes are
//! visited in execution order, and the earliest equal node wins).

use std::collections::HashMap;

use snnc_ir::{BinaryOp, Handle, Module, Node, Op, RegionKind};

use crate::util;
use crate::{Pass, PassError, PassReport};

/// The common-subexpression-elimination pass (`cse`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&self, module: &mut Module) -> Result<PassReport, PassError> {
        let region_of = util::region_of(module);
        let n = module.nodes.len();
        let mut replace: Vec<Option<Handle<Node>>> = vec![None; n];
        let mut drop = vec![false; n];
        // Earlier nodes by key, in execution order.
        let mut seen: HashMap<String, Vec<Handle<Node>>> = HashMap::new();
        let (mut merged, mut merged_consts) = (0usize, 0usize);
        let order: Vec<_> = module.body.iter().flat_map(|r| r.nodes.iter().copied()).collect();
        for h in order {
            // Rewire operands of merged nodes first, so keys see the
            // surviving operands.
            let mut op = module.nodes[h].op.clone();
            op.map_operands(|a| replace[a.index()].unwrap_or(a));
            module.nodes[h].op = op;
            let node = &module.nodes[h];
            if matches!(node.op, Op::StateRead(_) | Op::StateWrite { .. }) {
                continue;
            }
            let key = key(node);
            let r = region_of[h.index()].expect("a valid module places every node");
            let candidates = seen.entry(key).or_default();
            let found = candidates.iter().copied().find(|&m| {
                let rm = region_of[m.index()].expect("placed");
                let a = &module.nodes[m];
                available(module, rm, r, m)
                    && (!same_region_only(&node.op) || rm == r)
                    && match &node.name {
                        None => true,
                        Some(name) => {
                            module.body[rm].kind == module.body[r].kind
                                && (rm == r || module.body[r].kind == RegionKind::Seq)
                                && a.name.as_ref().is_none_or(|x| x == name)
                        }
                    }
            });
            match found {
                Some(m) => {
                    if let Some(name) = module.nodes[h].name.clone() {
                        module.nodes[m].name = Some(name);
                    }
                    if matches!(module.nodes[h].op, Op::Const { .. }) {
                        merged_consts += 1;
                    }
                    replace[h.index()] = Some(m);
                    drop[h.index()] = true;
                    merged += 1;
                }
                None => candidates.push(h),
            }
        }
        util::replace_uses(module, &replace);
        util::remove_nodes(module, &drop);
        util::drop_empty_regions(module);
        snnc_ir::compact(module);
        let mut report = PassReport::default();
        report.note(format!("merged {merged} node(s) into equal earlier ones ({merged_consts} constant(s))"));
        Ok(report)
    }
}

/// Whether a node of region `from` is visible to a node of region `to`
/// (`from <= to`, `m` the earlier node).
fn available(module: &Module, from: usize, to: usize, m: Handle<Node>) -> bool {
    if from == to {
        return true;
    }
    if from > to || module.body[from].kind != RegionKind::Seq {
        return false;
    }
    match module.body[to].kind {
        RegionKind::Seq => true,
        RegionKind::Step => !module.nodes[m].ty.seq,
    }
}

/// Ops merged only within their own region: `uniform` (its value depends
/// on the step it runs at) and `fused` (its `extract`s must stay in its
/// region).
fn same_region_only(op: &Op) -> bool {
    matches!(op, Op::Uniform { .. } | Op::Fused(_))
}

/// What makes two nodes equal: the op with its attributes and operands
/// (constants by their bits), and the type.
fn key(node: &Node) -> String {
    match node.op {
        Op::Const { value, dtype } => format!("const {} {dtype}", value.to_bits()),
        Op::Binary { op: op @ (BinaryOp::Add | BinaryOp::Mul), lhs, rhs } => {
            let (a, b) = if lhs <= rhs { (lhs, rhs) } else { (rhs, lhs) };
            format!("{:?} {}", Op::Binary { op, lhs: a, rhs: b }, node.ty)
        }
        // The derived `Debug` form prints every attribute (floats in their
        // shortest exact form) and every operand handle.
        ref op => format!("{op:?} {}", node.ty),
    }
}
