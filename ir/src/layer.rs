//! Which layer an IR value belongs to, for error messages.
//!
//! The frontend names a layer's values `NAME.field` (`conv1.out`,
//! `lif1.z`), its states `NAME.v` and its parameters `NAME.weight`; the
//! backward pass prefixes `grad.`. Many intermediate nodes are unnamed. A
//! node's layer is the `NAME` of the nearest label, looked for first along
//! its users (an unnamed product feeds its layer's named `NAME.out`), then
//! along its operands. A label is a node's name, or the name of the state,
//! parameter or input it reads or writes; names without a dot (`x`,
//! `output`, `readout`) are no layer's.

use std::collections::VecDeque;

use crate::arena::Handle;
use crate::module::{Module, Node};
use crate::op::Op;

/// The label of a node: its name, else the state, parameter or input it
/// reads or writes.
fn label(module: &Module, h: Handle<Node>) -> Option<&str> {
    let node = &module.nodes[h];
    if let Some(name) = &node.name {
        return Some(name);
    }
    match node.op {
        Op::StateRead(s) | Op::StateWrite { state: s, .. } => Some(&module.states[s].name),
        Op::Param(p) => Some(&module.params[p].name),
        Op::Input(i) => Some(&module.inputs[i].name),
        _ => None,
    }
}

/// The layer a label names: `NAME` of `NAME.field` (after any `grad.`
/// prefixes), or `None` for a name without a dot.
fn layer_of_label(label: &str) -> Option<&str> {
    let mut rest = label.trim_start_matches(['$', '@']);
    while let Some(r) = rest.strip_prefix("grad.") {
        rest = r;
    }
    rest.split_once('.').map(|(layer, _)| layer).filter(|l| !l.is_empty())
}

/// The name of the layer that node `h` belongs to (see the module doc), or
/// `None` when no label near it names a layer.
pub fn layer_of(module: &Module, h: Handle<Node>) -> Option<String> {
    if h.index() >= module.nodes.len() {
        return None;
    }
    let mut users: Vec<Vec<Handle<Node>>> = vec![Vec::new(); module.nodes.len()];
    for (u, node) in module.nodes.iter() {
        for x in node.op.operands() {
            if x.index() < users.len() {
                users[x.index()].push(u);
            }
        }
    }
    let operands = |x: Handle<Node>| module.nodes[x].op.operands();
    let forward = |x: Handle<Node>| users[x.index()].clone();
    search(module, h, forward).or_else(|| search(module, h, operands))
}

/// A node for messages: `%15 (layer `conv1`)`; `%0 (`x`)` for a node
/// labelled with a name of no layer (an input, `output`); else the layer
/// found as [`layer_of`] finds it, or plain `%7`.
pub fn describe(module: &Module, h: Handle<Node>) -> String {
    if h.index() >= module.nodes.len() {
        return format!("%{}", h.index());
    }
    if let Some(name) = label(module, h)
        && layer_of_label(name).is_none()
    {
        return format!("%{} (`{name}`)", h.index());
    }
    match layer_of(module, h) {
        Some(layer) => format!("%{} (layer `{layer}`)", h.index()),
        None => format!("%{}", h.index()),
    }
}

/// Breadth-first from `h` along `next`: the first label naming a layer.
fn search(module: &Module, h: Handle<Node>, next: impl Fn(Handle<Node>) -> Vec<Handle<Node>>) -> Option<String> {
    let mut seen = vec![false; module.nodes.len()];
    let mut queue = VecDeque::from([h]);
    seen[h.index()] = true;
    while let Some(x) = queue.pop_front() {
        if let Some(layer) = label(module, x).and_then(layer_of_label) {
            return Some(layer.to_string());
        }
        for y in next(x) {
            if y.index() < seen.len() && !seen[y.index()] {
                seen[y.index()] = true;
                queue.push_back(y);
            }
        }
    }
    None
}

/// A node's value for messages: `the value of %15 (spike[T,B,1,28,28]) of
/// layer `conv1``, `the value of %0 `x` (f32[B,784])`, or `the value of %7
/// (f32[])` when no layer is found.
pub fn describe_value(module: &Module, h: Handle<Node>) -> String {
    let Some(node) = module.nodes.try_get(h) else {
        return format!("the value of %{}", h.index());
    };
    if let Some(name) = label(module, h)
        && layer_of_label(name).is_none()
    {
        return format!("the value of %{} `{name}` ({})", h.index(), node.ty);
    }
    match layer_of(module, h) {
        Some(layer) => format!("the value of %{} ({}) of layer `{layer}`", h.index(), node.ty),
        None => format!("the value of %{} ({})", h.index(), node.ty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Builder, Dtype, MatMulKind, Param, ParamInit, Shape, StateInit, Type};

    #[test]
    fn layers_come_from_names_users_and_operands() {
        let mut b = Builder::new("l", 2, 1e-3, Dtype::F32);
        let xin = b.input("x", Type::new(Dtype::F32, Shape::batched(&[4])));
        let shape = Shape::fixed(&[3, 4]);
        let pw = b.param(Param {
            name: "fc1.weight".into(),
            dtype: Dtype::F32,
            shape,
            trainable: true,
            init: ParamInit::Zeros,
        });
        let s = b.state("lif1.v", Type::new(Dtype::F32, Shape::batched(&[3])), StateInit::Fill(0.0));
        b.begin_seq();
        let x = b.emit(Op::Input(xin)).unwrap();
        let w = b.emit(Op::Param(pw)).unwrap();
        let y = b.emit(Op::MatMul { input: x, weight: w, kind: MatMulKind::Dense }).unwrap();
        let c = b.constant(2.0).unwrap();
        let out = b.mul(c, y).unwrap();
        b.name(out, "fc1.out");
        b.begin_step();
        let r = b.state_read(s).unwrap();
        let v = b.add(r, out).unwrap();
        b.state_write(s, v).unwrap();
        b.begin_seq();
        let o = b.emit(Op::Collect(v)).unwrap();
        b.name(o, "output");
        b.output("output", o);
        let m = b.finish();
        assert_eq!(layer_of(&m, y).as_deref(), Some("fc1"));
        assert_eq!(layer_of(&m, c).as_deref(), Some("fc1"));
        assert_eq!(layer_of(&m, v).as_deref(), Some("lif1"));
        assert_eq!(describe(&m, y), "%2 (layer `fc1`)");
        // `output` and `x` name no layer.
        assert_eq!(describe(&m, o), format!("%{} (`output`)", o.index()));
        assert_eq!(describe(&m, x), "%0 (`x`)");
        assert_eq!(describe_value(&m, y), "the value of %2 (f32[B,3]) of layer `fc1`");
        assert_eq!(describe_value(&m, x), "the value of %0 `x` (f32[B,4])");
        assert_eq!(layer_of(&m, o).as_deref(), Some("lif1"));
        assert_eq!(layer_of_label("grad.lif1.v"), Some("lif1"));
        assert_eq!(layer_of_label("x"), None);
    }
}
