//! Helpers shared by the passes: use lists, region lookup, rewiring uses,
//! and the short descriptions of nodes that pass reports print.

use snnc_ir::{Handle, Module, Node, Op};

/// The index of the region holding each node (`None` for a node not placed;
/// a valid module places every node).
pub(crate) fn region_of(module: &Module) -> Vec<Option<usize>> {
    let mut res = vec![None; module.nodes.len()];
    for (r, region) in module.body.iter().enumerate() {
        for &h in &region.nodes {
            if let Some(slot) = res.get_mut(h.index()) {
                *slot = Some(r);
            }
        }
    }
    res
}

/// Rewrites every use of a node (operands and outputs) through `map`:
/// `map[i] = Some(h)` sends uses of node `i` to `h`. Replacements are
/// followed to the end of their chain, so `map` may send a node to one that
/// is replaced in turn.
pub(crate) fn replace_uses(module: &mut Module, map: &[Option<Handle<Node>>]) {
    let resolve = |mut h: Handle<Node>| {
        // A replacement always points to an earlier node, so this ends.
        while let Some(Some(next)) = map.get(h.index()) {
            if *next == h {
                break;
            }
            h = *next;
        }
        h
    };
    for (_, node) in module.nodes.iter_mut() {
        node.op.map_operands(resolve);
    }
    for out in &mut module.outputs {
        out.value = resolve(out.value);
    }
}

/// Removes from their regions the nodes for which `drop` holds. The nodes
/// stay in the arena until [`snnc_ir::compact`] drops them.
pub(crate) fn remove_nodes(module: &mut Module, drop: &[bool]) {
    for region in &mut module.body {
        region.nodes.retain(|h| !drop.get(h.index()).copied().unwrap_or(false));
    }
}

/// Removes empty regions from the body.
pub(crate) fn drop_empty_regions(module: &mut Module) {
    module.body.retain(|r| !r.nodes.is_empty());
}

/// The layer a node belongs to, for reports: the prefix of its name
/// (`fc1.out` gives `fc1`), or of its weight's name for an unnamed matrix
/// product or convolution (`@fc1.weight` gives `fc1`).
pub(crate) fn layer_of(module: &Module, h: Handle<Node>) -> Option<String> {
    let node = &module.nodes[h];
    if let Some(name) = &node.name {
        return Some(prefix(name).to_string());
    }
    weight_param(module, h).map(|p| prefix(&p).to_string())
}

/// The parameter behind the weight of a matrix product or convolution,
/// looked up through the ops that compute the weight (e.g. a recurrent
/// weight times its autapse mask).
pub(crate) fn weight_param(module: &Module, h: Handle<Node>) -> Option<String> {
    let weight = match module.nodes[h].op {
        Op::MatMul { weight, .. } | Op::Conv2d { weight, .. } => weight,
        _ => return None,
    };
    let mut work = vec![weight];
    while let Some(w) = work.pop() {
        match module.nodes[w].op {
            Op::Param(p) => return Some(module.params[p].name.clone()),
            ref op => work.extend(op.operands().into_iter().rev()),
        }
    }
    None
}

/// `lif1.v` gives `lif1`; a name without a dot is its own prefix.
pub(crate) fn prefix(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(p, _)| p)
}

/// A node for reports: its layer if known, else `%N`; a product with a
/// weight other than `NAME.weight` names it (`lif1 (@lif1.recurrent_weights)`).
pub(crate) fn describe(module: &Module, h: Handle<Node>) -> String {
    let layer = layer_of(module, h).unwrap_or_else(|| format!("%{}", h.index()));
    match weight_param(module, h) {
        Some(p) if !p.ends_with(".weight") => format!("{layer} (@{p})"),
        _ => layer,
    }
}

/// The full dims of a node's type without its last `keep` dims joined with
/// `·` (`T·B`), followed by the kept dims: `[T·B,16]` for `f32[T,B,16]`
/// with `keep = 1`.
pub(crate) fn rows_shape(module: &Module, h: Handle<Node>, keep: usize) -> String {
    let ty = &module.nodes[h].ty;
    let mut dims: Vec<String> = Vec::new();
    if ty.seq {
        dims.push("T".into());
    }
    dims.extend(ty.shape.0.iter().map(|d| d.to_string()));
    let split = dims.len().saturating_sub(keep);
    let (rows, rest) = dims.split_at(split);
    let mut parts = Vec::new();
    if !rows.is_empty() {
        parts.push(rows.join("·"));
    }
    parts.extend(rest.iter().cloned());
    format!("[{}]", parts.join(","))
}
