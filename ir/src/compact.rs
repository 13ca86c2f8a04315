//! Renumbering: after compaction, node handles follow execution order
//! (region by region), so the text form reads top to bottom and snapshots
//! don't churn when a pass appends nodes to an earlier region.

use crate::arena::{Arena, Handle};
use crate::module::{Module, Node};

/// Renumbers the nodes of `module` in execution order. Nodes not placed in
/// any region are dropped. Operands, regions and outputs are remapped.
pub fn compact(module: &mut Module) {
    let order: Vec<Handle<Node>> = module.body.iter().flat_map(|r| r.nodes.iter().copied()).collect();
    let mut new_index = vec![None; module.nodes.len()];
    for (i, h) in order.iter().enumerate() {
        if let Some(slot) = new_index.get_mut(h.index()) {
            *slot = Some(Handle::<Node>::from_index(i));
        }
    }
    let remap = |h: Handle<Node>| new_index.get(h.index()).copied().flatten().unwrap_or(h);
    let mut nodes = Arena::new();
    for &h in &order {
        let mut node = module.nodes[h].clone();
        node.op.map_operands(remap);
        nodes.append(node);
    }
    for region in &mut module.body {
        for h in &mut region.nodes {
            *h = remap(*h);
        }
    }
    for out in &mut module.outputs {
        out.value = remap(out.value);
    }
    module.nodes = nodes;
}
