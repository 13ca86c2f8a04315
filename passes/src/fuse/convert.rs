//! Conversions between the IR and the e-graph language, exhaustive both
//! ways: an elementwise IR op becomes a [`KernelInst`], a kernel body
//! becomes a [`RecExpr`] (one node per instruction), and an extracted
//! e-graph becomes a body again.

use egg::{Extractor, Id, Language, RecExpr};
use snnc_ir::{BinaryOp, CompareOp, Dtype, Handle, KernelInst, Node, Op, UnaryOp};

use super::cost::KernelCost;
use super::lang::{InputRef, KernelGraph, Number, StepLang, Thresh};

/// The kernel instruction of an elementwise IR op, with its operands
/// renamed by `arg`; `None` for an op that is not elementwise.
pub fn op_to_inst(op: &Op, mut arg: impl FnMut(Handle<Node>) -> u32) -> Option<KernelInst> {
    let inst = match *op {
        Op::Const { value, dtype } => KernelInst::Const { value, dtype },
        Op::Unary { op, arg: a } => KernelInst::Unary { op, arg: arg(a) },
        Op::Binary { op, lhs, rhs } => KernelInst::Binary { op, lhs: arg(lhs), rhs: arg(rhs) },
        Op::Compare { op, lhs, rhs } => KernelInst::Compare { op, lhs: arg(lhs), rhs: arg(rhs) },
        Op::Select { cond, on_true, on_false } => {
            KernelInst::Select { cond: arg(cond), on_true: arg(on_true), on_false: arg(on_false) }
        }
        Op::Threshold { arg: a, surrogate } => KernelInst::Threshold { arg: arg(a), surrogate },
        Op::StopGradient(a) => KernelInst::StopGradient(arg(a)),
        Op::Cast { arg: a, dtype } => KernelInst::Cast { arg: arg(a), dtype },
        Op::Input(_)
        | Op::Param(_)
        | Op::StateRead(_)
        | Op::StateWrite { .. }
        | Op::Step(_)
        | Op::Collect(_)
        | Op::MatMul { .. }
        | Op::Conv2d { .. }
        | Op::Pool2d { .. }
        | Op::Reshape { .. }
        | Op::ReduceTime { .. }
        | Op::LogSoftmax { .. }
        | Op::Uniform { .. }
        | Op::Concat { .. }
        | Op::Narrow { .. }
        | Op::ChannelSum { .. }
        | Op::MaxAll(_)
        | Op::ChannelBroadcast { .. }
        | Op::Fused(_)
        | Op::Extract { .. }
        | Op::Transpose(_)
        | Op::MatMulGradWeight { .. }
        | Op::SumTo { .. }
        | Op::Conv2dGradInput { .. }
        | Op::Conv2dGradWeight { .. }
        | Op::Conv2dGradBias { .. }
        | Op::Pool2dGrad { .. }
        | Op::ReduceTimeGrad { .. }
        | Op::LogSoftmaxGrad { .. }
        | Op::StdpUpdate { .. } => return None,
    };
    Some(inst)
}

/// The language node of an instruction; `arg(k)` is the node of
/// instruction `k`. A constant's value is taken as it is (round it to the
/// module's float type first).
pub fn inst_to_node(inst: &KernelInst, mut arg: impl FnMut(u32) -> Id) -> StepLang {
    match *inst {
        KernelInst::Input(i) => StepLang::Input(InputRef(i)),
        KernelInst::Const { value, dtype: Dtype::Spike } => StepLang::Num(Number::spike(value != 0.0)),
        KernelInst::Const { value, dtype: Dtype::F32 | Dtype::F64 } => StepLang::Num(Number::float(value)),
        KernelInst::Unary { op, arg: a } => {
            let a = [arg(a)];
            match op {
                UnaryOp::Neg => StepLang::Neg(a),
                UnaryOp::Abs => StepLang::Abs(a),
                UnaryOp::Exp => StepLang::Exp(a),
                UnaryOp::Log => StepLang::Log(a),
                UnaryOp::Tanh => StepLang::Tanh(a),
                UnaryOp::Sqrt => StepLang::Sqrt(a),
                UnaryOp::Relu => StepLang::Relu(a),
            }
        }
        KernelInst::Binary { op, lhs, rhs } => {
            let ab = [arg(lhs), arg(rhs)];
            match op {
                BinaryOp::Add => StepLang::Add(ab),
                BinaryOp::Sub => StepLang::Sub(ab),
                BinaryOp::Mul => StepLang::Mul(ab),
                BinaryOp::Div => StepLang::Div(ab),
                BinaryOp::Max => StepLang::Max(ab),
                BinaryOp::Min => StepLang::Min(ab),
            }
        }
        KernelInst::Compare { op, lhs, rhs } => {
            let ab = [arg(lhs), arg(rhs)];
            match op {
                CompareOp::Gt => StepLang::Gt(ab),
                CompareOp::Ge => StepLang::Ge(ab),
                CompareOp::Lt => StepLang::Lt(ab),
                CompareOp::Le => StepLang::Le(ab),
                CompareOp::Eq => StepLang::Eq(ab),
            }
        }
        KernelInst::Select { cond, on_true, on_false } => StepLang::Select([arg(cond), arg(on_true), arg(on_false)]),
        KernelInst::Threshold { arg: a, surrogate } => StepLang::Threshold(Thresh(surrogate), [arg(a)]),
        KernelInst::StopGradient(a) => StepLang::StopGradient([arg(a)]),
        KernelInst::Cast { arg: a, dtype: Dtype::F32 } => StepLang::CastF32([arg(a)]),
        KernelInst::Cast { arg: a, dtype: Dtype::F64 } => StepLang::CastF64([arg(a)]),
        KernelInst::Cast { arg: a, dtype: Dtype::Spike } => StepLang::CastSpike([arg(a)]),
    }
}

/// The instruction of a language node; `arg(id)` is the instruction index
/// of child `id`. A float constant gets `float`, the module's float type.
pub fn node_to_inst(node: &StepLang, float: Dtype, mut arg: impl FnMut(Id) -> u32) -> KernelInst {
    let mut un = |op: UnaryOp, [a]: [Id; 1]| KernelInst::Unary { op, arg: arg(a) };
    match *node {
        StepLang::Neg(a) => un(UnaryOp::Neg, a),
        StepLang::Abs(a) => un(UnaryOp::Abs, a),
        StepLang::Exp(a) => un(UnaryOp::Exp, a),
        StepLang::Log(a) => un(UnaryOp::Log, a),
        StepLang::Tanh(a) => un(UnaryOp::Tanh, a),
        StepLang::Sqrt(a) => un(UnaryOp::Sqrt, a),
        StepLang::Relu(a) => un(UnaryOp::Relu, a),
        StepLang::Add(ab) => binary(BinaryOp::Add, ab, arg),
        StepLang::Sub(ab) => binary(BinaryOp::Sub, ab, arg),
        StepLang::Mul(ab) => binary(BinaryOp::Mul, ab, arg),
        StepLang::Div(ab) => binary(BinaryOp::Div, ab, arg),
        StepLang::Max(ab) => binary(BinaryOp::Max, ab, arg),
        StepLang::Min(ab) => binary(BinaryOp::Min, ab, arg),
        StepLang::Gt(ab) => compare(CompareOp::Gt, ab, arg),
        StepLang::Ge(ab) => compare(CompareOp::Ge, ab, arg),
        StepLang::Lt(ab) => compare(CompareOp::Lt, ab, arg),
        StepLang::Le(ab) => compare(CompareOp::Le, ab, arg),
        StepLang::Eq(ab) => compare(CompareOp::Eq, ab, arg),
        StepLang::Select([c, t, f]) => KernelInst::Select { cond: arg(c), on_true: arg(t), on_false: arg(f) },
        StepLang::StopGradient([a]) => KernelInst::StopGradient(arg(a)),
        StepLang::CastF32([a]) => KernelInst::Cast { arg: arg(a), dtype: Dtype::F32 },
        StepLang::CastF64([a]) => KernelInst::Cast { arg: arg(a), dtype: Dtype::F64 },
        StepLang::CastSpike([a]) => KernelInst::Cast { arg: arg(a), dtype: Dtype::Spike },
        StepLang::Threshold(Thresh(surrogate), [a]) => KernelInst::Threshold { arg: arg(a), surrogate },
        StepLang::Input(InputRef(i)) => KernelInst::Input(i),
        StepLang::Num(n) if n.is_spike() => KernelInst::Const { value: n.value(), dtype: Dtype::Spike },
        StepLang::Num(n) => KernelInst::Const { value: n.value(), dtype: float },
    }
}

fn binary(op: BinaryOp, [a, b]: [Id; 2], mut arg: impl FnMut(Id) -> u32) -> KernelInst {
    let lhs = arg(a);
    KernelInst::Binary { op, lhs, rhs: arg(b) }
}

fn compare(op: CompareOp, [a, b]: [Id; 2], mut arg: impl FnMut(Id) -> u32) -> KernelInst {
    let lhs = arg(a);
    KernelInst::Compare { op, lhs, rhs: arg(b) }
}

/// A kernel body as one expression holding every instruction (node `k` is
/// instruction `k`), and the nodes of its outputs. The body must refer only
/// to earlier instructions.
pub fn body_to_expr(body: &[KernelInst], outputs: &[u32]) -> (RecExpr<StepLang>, Vec<Id>) {
    let mut expr = RecExpr::default();
    for inst in body {
        expr.add(inst_to_node(inst, |k| Id::from(k as usize)));
    }
    (expr, outputs.iter().map(|&o| Id::from(o as usize)).collect())
}

/// The body of an expression and its roots: the nodes the roots reach, in
/// the expression's order, and the outputs as indices into that body.
pub fn expr_to_body(expr: &RecExpr<StepLang>, roots: &[Id], float: Dtype) -> (Vec<KernelInst>, Vec<u32>) {
    let nodes = expr.as_ref();
    let mut live = vec![false; nodes.len()];
    let mut stack: Vec<usize> = roots.iter().map(|&r| usize::from(r)).collect();
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut live[i], true) {
            stack.extend(nodes[i].children().iter().map(|&c| usize::from(c)));
        }
    }
    let mut index = vec![u32::MAX; nodes.len()];
    let mut body = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if live[i] {
            index[i] = body.len() as u32;
            body.push(node_to_inst(node, float, |c| index[usize::from(c)]));
        }
    }
    (body, roots.iter().map(|&r| index[usize::from(r)]).collect())
}

/// The cheapest term of every root class as one expression in which every
/// e-class appears once (values shared between outputs are computed once),
/// children first, in the order a depth-first walk from the roots (in
/// order) first meets them. Returns the expression and its roots.
pub fn extract(egraph: &KernelGraph, roots: &[Id]) -> (RecExpr<StepLang>, Vec<Id>) {
    let extractor = Extractor::new(egraph, KernelCost::new(egraph.analysis.float));
    let mut expr = RecExpr::default();
    let mut memo: std::collections::BTreeMap<Id, Id> = std::collections::BTreeMap::new();
    let mut res = Vec::with_capacity(roots.len());
    for &root in roots {
        res.push(add_best(&extractor, egraph, egraph.find(root), &mut expr, &mut memo));
    }
    (expr, res)
}

fn add_best(
    extractor: &Extractor<'_, KernelCost, StepLang, super::lang::KernelAnalysis>,
    egraph: &KernelGraph,
    class: Id,
    expr: &mut RecExpr<StepLang>,
    memo: &mut std::collections::BTreeMap<Id, Id>,
) -> Id {
    if let Some(&id) = memo.get(&class) {
        return id;
    }
    // The extractor's choice is acyclic (every class's cost is finite and
    // strictly above its children's), so the recursion ends; its depth is
    // that of the kernel's expression, a few dozen at most.
    let node = extractor.find_best_node(class).clone();
    let node = node.map_children(|c| add_best(extractor, egraph, egraph.find(c), expr, memo));
    let id = expr.add(node);
    memo.insert(class, id);
    id
}
