//! Renumbering: after compaction, node handles follow execution order
//! (region by region), so the text form reads top to bottom and snapshots
//! don't churn when a pass appends nodes to an earlier region.

use crate::arena::{Arena, Handle};
use crate::module::{Module, Node};

/// Renumbers the nodes of `module` in execution order. Nodes not placed in
/// any region are dropped. Operands (a `fused` node's inputs and an
/// `extract`'s kernel included), regions and outputs are remapped.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::Region;
    use crate::op::{FusedKernel, KernelInst, Op};
    use crate::types::{Dtype, Shape, Type};

    #[test]
    fn kernel_inputs_and_extracts_are_renumbered() {
        // Nodes appended out of order: the kernel (%3) and its extract (%2)
        // sit between %0 and %1 in the region.
        let mut m = Module::new("m", 1, 1e-3, Dtype::F32);
        let ty = Type::new(Dtype::F32, Shape::fixed(&[2]));
        let node = |op| Node { op, ty: ty.clone(), name: None };
        let a = m.nodes.append(node(Op::Const { value: 1.0, dtype: Dtype::F32 }));
        let user = m.nodes.append(node(Op::StopGradient(Handle::from_index(2))));
        let kernel =
            FusedKernel { name: "k".into(), inputs: vec![a], body: vec![KernelInst::Input(0)], outputs: vec![0] };
        let e = m.nodes.append(node(Op::Extract { kernel: Handle::from_index(3), index: 0 }));
        let k = m.nodes.append(node(Op::Fused(Box::new(kernel))));
        m.body.push(Region::seq(vec![a, k, e, user]));
        compact(&mut m);
        let ops: Vec<Vec<usize>> =
            m.nodes.iter().map(|(_, n)| n.op.operands().iter().map(|h| h.index()).collect()).collect();
        assert_eq!(ops, [vec![], vec![0], vec![1], vec![2]]);
        assert!(matches!(m.nodes[Handle::from_index(1)].op, Op::Fused(_)));
    }
}
