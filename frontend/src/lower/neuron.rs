//! Lowering a neuron-language [`Program`] (a `Neuron` layer or one of
//! Norse's zoo) to IR primitives, with Python's arithmetic: numbers, `dt`
//! and constants are Python floats, combined in f64 at compile time and
//! rounded to the module's float type where they meet a tensor; parameters
//! and states are tensors. Nothing is reassociated: every operator of the
//! equations is one IR node, in the order written.

use std::collections::BTreeMap;

use snnc_ir::{BinaryOp, CompareOp, Dtype, Handle, Node, Op, ParamInit, Surrogate, UnaryOp};

use super::{Lower, Res, Value, Weights, invalid, surrogate};
use crate::neuron::expr::{Assignment, BinOp, CmpOp, Expr, ExprKind};
use crate::neuron::{Func, InitValue, NeuronModel, Program, zoo};
use crate::schema::ParamValue;

/// A value during lowering.
#[derive(Clone, Copy, Debug)]
enum V {
    /// A Python float, not yet a tensor.
    Const(f64),
    /// `x_rec` of a feed-forward layer: nothing to add.
    Zero,
    /// A tensor of the preamble (parameters and what depends only on them).
    Pre(Handle<Node>),
    /// A tensor of the step.
    Step(Handle<Node>),
}

impl V {
    /// The value of a Python float (`x_rec` of a feed-forward layer is 0).
    fn constant(self) -> Option<f64> {
        match self {
            V::Const(x) => Some(x),
            V::Zero => Some(0.0),
            V::Pre(_) | V::Step(_) => None,
        }
    }
}

/// How the layer's input reaches the model.
enum Synapse {
    /// `x` is the input itself, `x_rec` nothing.
    FeedForward,
    /// `x` is the input through the input weights, `x_rec` the previous
    /// step's spikes through the recurrent weights.
    Recurrent(Weights),
    /// A recurrent conductance-based layer: the input and the previous
    /// spikes through the positive and negative parts of the weights
    /// ([`zoo::CONDUCTANCE_INPUTS`]).
    Conductance(Weights),
}

struct Env<'p> {
    prog: &'p Program,
    values: BTreeMap<String, V>,
    /// Reads of these names are detached (while lowering the reset).
    detached: &'p [String],
}

impl Lower<'_> {
    /// A layer of neurons of `model`: feed-forward on the input's shape, or
    /// recurrent with `hidden` neurons (input and recurrent weights, as
    /// Norse's recurrent cells).
    pub(super) fn neuron_layer(
        &mut self,
        name: &str,
        at: &str,
        cur: &Value,
        model: &NeuronModel,
        hidden: Option<u32>,
        autapses: bool,
    ) -> Res<Value> {
        let Some(hidden) = hidden else {
            let y = self.neuron_model(name, model, cur.node, &cur.shape, Synapse::FeedForward)?;
            return Ok(Value { node: y, shape: cur.shape.clone(), producer: String::new() });
        };
        let n_in = self.last_dim(at, cur, None, "in")?;
        let weights = self.recurrent_weights(name, n_in, hidden, autapses)?;
        let mut s = cur.shape.clone();
        *s.last_mut().expect("checked by last_dim") = hidden;
        let z = self.neuron_model(name, model, cur.node, &s, Synapse::Recurrent(weights))?;
        Ok(Value { node: z, shape: s, producer: String::new() })
    }

    /// Norse's recurrent `CobaLIFCell` with `hidden` neurons (see
    /// [`zoo::coba_lif_recurrent`]).
    pub(super) fn coba_layer(
        &mut self,
        name: &str,
        at: &str,
        cur: &Value,
        model: &NeuronModel,
        hidden: u32,
    ) -> Res<Value> {
        let n_in = self.last_dim(at, cur, None, "in")?;
        let std = 1.0 / f64::from(n_in).sqrt();
        let w_in = self.param(format!("{name}.input_weights"), &[hidden, n_in], true, ParamInit::Normal { std })?;
        let std = 1.0 / f64::from(hidden).sqrt();
        let w_rec =
            self.param(format!("{name}.recurrent_weights"), &[hidden, hidden], true, ParamInit::Normal { std })?;
        let mut s = cur.shape.clone();
        *s.last_mut().expect("checked by last_dim") = hidden;
        let z = self.neuron_model(name, model, cur.node, &s, Synapse::Conductance((w_in, w_rec)))?;
        Ok(Value { node: z, shape: s, producer: String::new() })
    }

    /// Checks `model` (already checked by `check_network`; a failure here
    /// names the layer anyway) and lowers it; returns the layer's output.
    fn neuron_model(
        &mut self,
        name: &str,
        model: &NeuronModel,
        x: Handle<Node>,
        shape: &[u32],
        synapse: Synapse,
    ) -> Res<Handle<Node>> {
        let inputs: &[&str] = match synapse {
            Synapse::Conductance(_) => &zoo::CONDUCTANCE_INPUTS,
            _ => &[],
        };
        let prog = Program::check_with(model, inputs).map_err(|errors| {
            let e = &errors[0];
            invalid(self.file, format!("{}: model.{}", self.at, e.at), e.message.clone(), e.help.clone())
        })?;
        self.program(name, &prog, x, shape, synapse)
    }

    fn program(
        &mut self,
        name: &str,
        prog: &Program,
        x: Handle<Node>,
        shape: &[u32],
        synapse: Synapse,
    ) -> Res<Handle<Node>> {
        let float = self.b.float();
        let params = prog.params.iter().map(|(n, v)| (n.as_str(), v));
        self.neurons_named(name, shape, "model.params.", params, prog.trainable.clone())?;
        let mut env = Env { prog, values: BTreeMap::new(), detached: &[] };
        let mut states = Vec::new();
        for (s, init) in &prog.states {
            let init = match init {
                InitValue::Number(v) => ParamValue::Scalar(*v),
                InitValue::PerNeuron(v) => {
                    self.per_neuron_init(s, v.len(), shape)?;
                    ParamValue::PerNeuron(v.clone())
                }
                InitValue::Name(p) => match prog.constants.get(p) {
                    Some(c) => ParamValue::Scalar(*c),
                    None => prog.params.iter().find(|(n, _)| n == p).map(|(_, v)| v.clone()).ok_or_else(|| {
                        invalid(self.file, format!("{}: model.state.{s}", self.at), format!("unknown `{p}`"), None)
                    })?,
                },
            };
            let handle = self.state_from(format!("{name}.{s}"), float, shape, &init)?;
            let read = self.emit(Op::StateRead(handle))?;
            env.values.insert(s.clone(), V::Step(read));
            states.push((s.clone(), handle, read));
        }
        let z_state = match synapse {
            Synapse::FeedForward => None,
            Synapse::Recurrent(_) | Synapse::Conductance(_) if prog.output != "z" || prog.spike.is_none() => {
                return Err(invalid(
                    self.file,
                    format!("{}: model.output", self.at),
                    "a recurrent layer feeds its spikes back, but this model has no spike output".into(),
                    Some("give the model a `spike` condition and leave `output` out (it is then `z`)".into()),
                ));
            }
            Synapse::Recurrent(_) | Synapse::Conductance(_) => {
                let dtype = if prog.outputs_binary_spikes() { Dtype::Spike } else { float };
                Some(self.state(format!("{name}.z"), dtype, shape, 0.0)?)
            }
        };
        let (x, x_rec) = match synapse {
            Synapse::FeedForward => (V::Step(x), V::Zero),
            Synapse::Recurrent((w_in, w_rec)) => {
                let z_prev = self.emit(Op::StateRead(z_state.expect("made above")))?;
                let a = self.emit(Op::MatMul { input: x, weight: w_in, kind: snnc_ir::MatMulKind::Dense })?;
                let r = self.emit(Op::MatMul { input: z_prev, weight: w_rec, kind: snnc_ir::MatMulKind::Dense })?;
                (V::Step(a), V::Step(r))
            }
            Synapse::Conductance((w_in, w_rec)) => {
                let z_prev = self.emit(Op::StateRead(z_state.expect("made above")))?;
                for (input, w, names) in [(x, w_in, ["x_exc", "x_inh"]), (z_prev, w_rec, ["x_rec_exc", "x_rec_inh"])] {
                    let exc = self.emit_pre(Op::Unary { op: UnaryOp::Relu, arg: w })?;
                    let neg = self.emit_pre(Op::Unary { op: UnaryOp::Neg, arg: w })?;
                    let inh = self.emit_pre(Op::Unary { op: UnaryOp::Relu, arg: neg })?;
                    for (weight, n) in [(exc, names[0]), (inh, names[1])] {
                        let y = self.emit(Op::MatMul { input, weight, kind: snnc_ir::MatMulKind::Dense })?;
                        env.values.insert(n.to_string(), V::Step(y));
                    }
                }
                (V::Step(x), V::Zero)
            }
        };
        env.values.insert("x".into(), x);
        env.values.insert("x_rec".into(), x_rec);
        env.values.insert("dt".into(), V::Const(self.dt));
        for (c, v) in &prog.constants {
            env.values.insert(c.clone(), V::Const(*v));
        }

        self.assignments(&mut env, &prog.update, "update")?;
        let mut spike = None;
        if let Some(e) = &prog.spike {
            let arg = self.eval(&mut env, e, "spike")?;
            let z = self.threshold_of(arg, surrogate(prog.method, prog.alpha))?;
            env.values.insert("z".into(), z);
            spike = Some(z);
        }
        if let Some(z) = spike {
            let z = if prog.detach.iter().any(|d| d == "z") { self.detach(z)? } else { z };
            env.detached = &prog.detach;
            for (i, a) in prog.reset.iter().enumerate() {
                let at = format!("reset[{i}]");
                let new = self.eval(&mut env, &a.value, &at)?;
                let old = env.values[&a.target];
                let one = V::Const(1.0);
                let keep = self.binary(BinaryOp::Sub, one, z, &at)?;
                let kept = self.binary(BinaryOp::Mul, keep, old, &at)?;
                let set = self.binary(BinaryOp::Mul, z, new, &at)?;
                let value = self.binary(BinaryOp::Add, kept, set, &at)?;
                env.values.insert(a.target.clone(), value);
            }
            env.detached = &[];
        }
        self.assignments(&mut env, &prog.after, "after")?;

        let mut outputs = BTreeMap::new();
        for (s, handle, read) in &states {
            let value = env.values[s];
            let V::Step(node) = value else {
                return Err(self.not_a_tensor(&format!("the final value of state `{s}`")));
            };
            if node == *read {
                outputs.insert(s.clone(), node);
                continue;
            }
            let w = self.write(*handle, node, Some(format!("{name}.{s}")))?;
            outputs.insert(s.clone(), w);
        }
        let out = match env.values.get(&prog.output) {
            _ if outputs.contains_key(&prog.output) => outputs[&prog.output],
            Some(V::Step(node)) => *node,
            _ => return Err(self.not_a_tensor(&format!("the output `{}`", prog.output))),
        };
        if prog.output == "z" && self.b.module().nodes[out].name.is_none() {
            self.b.name(out, format!("{name}.z"));
        }
        if let Some(zs) = z_state {
            self.write(zs, out, None)?;
        }
        Ok(out)
    }

    fn per_neuron_init(&self, state: &str, len: usize, shape: &[u32]) -> Res<()> {
        let count = super::elements(shape);
        if len as u64 == count {
            return Ok(());
        }
        Err(invalid(
            self.file,
            format!("{}: model.state.{state}", self.at),
            format!("has {len} initial values, but the layer has {count} neurons per sample (shape {shape:?})"),
            Some("give one value per neuron, or one number for the whole layer".into()),
        ))
    }

    fn not_a_tensor(&self, what: &str) -> crate::error::FrontendError {
        invalid(
            self.file,
            format!("{}: model", self.at),
            format!("{what} does not depend on the input, a state or a parameter"),
            Some(
                "a state or output must be a tensor of the neurons: derive it from a state, `x` or a parameter".into(),
            ),
        )
    }

    fn assignments(&mut self, env: &mut Env<'_>, list: &[Assignment], section: &str) -> Res<()> {
        for (i, a) in list.iter().enumerate() {
            let value = self.eval(env, &a.value, &format!("{section}[{i}]"))?;
            env.values.insert(a.target.clone(), value);
        }
        Ok(())
    }

    fn eval(&mut self, env: &mut Env<'_>, e: &Expr, at: &str) -> Res<V> {
        Ok(match &e.kind {
            ExprKind::Num(x) => V::Const(*x),
            ExprKind::Name(n) => {
                let v = match env.values.get(n) {
                    Some(v) => *v,
                    None => {
                        let value = env.prog.params.iter().find(|(p, _)| p == n).map(|(_, v)| v.clone());
                        let Some(value) = value else {
                            return Err(self.internal(at, &format!("unknown name `{n}`")));
                        };
                        let h = self.pv_named(n, &value)?;
                        env.values.insert(n.clone(), V::Pre(h));
                        V::Pre(h)
                    }
                };
                if env.detached.iter().any(|d| d == n) { self.detach(v)? } else { v }
            }
            ExprKind::Neg(a) => {
                let a = self.eval(env, a, at)?;
                self.unary(UnaryOp::Neg, a)?
            }
            ExprKind::Bin(op, a, b) => {
                let (a, b) = (self.eval(env, a, at)?, self.eval(env, b, at)?);
                let op = match op {
                    BinOp::Add => BinaryOp::Add,
                    BinOp::Sub => BinaryOp::Sub,
                    BinOp::Mul => BinaryOp::Mul,
                    BinOp::Div => BinaryOp::Div,
                };
                self.binary(op, a, b, at)?
            }
            ExprKind::Cmp(op, a, b) => {
                let (a, b) = (self.eval(env, a, at)?, self.eval(env, b, at)?);
                self.compare(*op, a, b)?
            }
            ExprKind::Call { name, args, .. } => {
                let f =
                    Func::from_name(name).ok_or_else(|| self.internal(at, &format!("unknown function `{name}`")))?;
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.eval(env, a, at)?);
                }
                self.call(f, &vals, env.prog, at)?
            }
        })
    }

    fn internal(&self, at: &str, what: &str) -> crate::error::FrontendError {
        invalid(self.file, format!("{}: model.{at}", self.at), format!("internal error: {what}"), None)
    }

    /// A tensor of `v` (a Python float becomes a constant of the module's
    /// float type) and whether it is loop-invariant.
    fn tensor(&mut self, v: V) -> Res<(Handle<Node>, bool)> {
        Ok(match v {
            V::Const(x) => (self.c(x)?, true),
            V::Zero => (self.c(0.0)?, true),
            V::Pre(h) => (h, true),
            V::Step(h) => (h, false),
        })
    }

    /// `h` as the module's float type: a spike (0 or 1) is cast, exactly;
    /// the language's values are all numbers.
    fn as_float(&mut self, h: Handle<Node>, pre: bool) -> Res<Handle<Node>> {
        if self.b.ty(h).dtype != Dtype::Spike {
            return Ok(h);
        }
        let op = Op::Cast { arg: h, dtype: self.b.float() };
        if pre { self.emit_pre(op) } else { self.emit(op) }
    }

    fn emit_v(&mut self, op: Op, pre: bool) -> Res<V> {
        Ok(if pre { V::Pre(self.emit_pre(op)?) } else { V::Step(self.emit(op)?) })
    }

    fn unary(&mut self, op: UnaryOp, a: V) -> Res<V> {
        if let Some(x) = a.constant() {
            return Ok(V::Const(match op {
                UnaryOp::Neg => -x,
                UnaryOp::Abs => x.abs(),
                UnaryOp::Exp => x.exp(),
                UnaryOp::Log => x.ln(),
                UnaryOp::Tanh => x.tanh(),
                UnaryOp::Sqrt => x.sqrt(),
                UnaryOp::Relu => x.max(0.0),
            }));
        }
        let (arg, pre) = self.tensor(a)?;
        let arg =
            if matches!(op, UnaryOp::Relu | UnaryOp::Neg | UnaryOp::Abs) { arg } else { self.as_float(arg, pre)? };
        self.emit_v(Op::Unary { op, arg }, pre)
    }

    fn binary(&mut self, op: BinaryOp, a: V, b: V, at: &str) -> Res<V> {
        if let (BinaryOp::Add, V::Zero, other) | (BinaryOp::Add | BinaryOp::Sub, other, V::Zero) = (op, a, b) {
            return Ok(other);
        }
        if let (Some(x), Some(y)) = (a.constant(), b.constant()) {
            if op == BinaryOp::Div && y == 0.0 {
                return Err(invalid(
                    self.file,
                    format!("{}: model.{at}", self.at),
                    "division by zero among constants".into(),
                    None,
                ));
            }
            return Ok(V::Const(match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                BinaryOp::Max => x.max(y),
                BinaryOp::Min => x.min(y),
            }));
        }
        let (lhs, pa) = self.tensor(a)?;
        let (rhs, pb) = self.tensor(b)?;
        // Two spikes make a spike only by `*`, `max` and `min`; otherwise
        // the sum (say) of two spikes is a number.
        let both_spikes = self.b.ty(lhs).dtype == Dtype::Spike && self.b.ty(rhs).dtype == Dtype::Spike;
        let lhs = if both_spikes && !op.keeps_spikes() { self.as_float(lhs, pa)? } else { lhs };
        self.emit_v(Op::Binary { op, lhs, rhs }, pa && pb)
    }

    fn compare(&mut self, op: CmpOp, a: V, b: V) -> Res<V> {
        if let (Some(x), Some(y)) = (a.constant(), b.constant()) {
            let r = match op {
                CmpOp::Lt => x < y,
                CmpOp::Le => x <= y,
                CmpOp::Gt => x > y,
                CmpOp::Ge => x >= y,
                CmpOp::Eq => x == y,
                CmpOp::Ne => x != y,
            };
            return Ok(V::Const(if r { 1.0 } else { 0.0 }));
        }
        let (lhs, pa) = self.tensor(a)?;
        let (rhs, pb) = self.tensor(b)?;
        let ir = match op {
            CmpOp::Lt => CompareOp::Lt,
            CmpOp::Le => CompareOp::Le,
            CmpOp::Gt => CompareOp::Gt,
            CmpOp::Ge => CompareOp::Ge,
            CmpOp::Eq | CmpOp::Ne => CompareOp::Eq,
        };
        let c = self.emit_v(Op::Compare { op: ir, lhs, rhs }, pa && pb)?;
        if op != CmpOp::Ne {
            return Ok(c);
        }
        self.binary(BinaryOp::Sub, V::Const(1.0), c, "")
    }

    fn threshold_of(&mut self, a: V, surrogate: Surrogate) -> Res<V> {
        if let Some(x) = a.constant() {
            return Ok(V::Const(if x > 0.0 { 1.0 } else { 0.0 }));
        }
        let (arg, pre) = self.tensor(a)?;
        let arg = self.as_float(arg, pre)?;
        self.emit_v(Op::Threshold { arg, surrogate }, pre)
    }

    fn detach(&mut self, v: V) -> Res<V> {
        match v {
            V::Const(_) | V::Zero => Ok(v),
            V::Pre(h) => self.emit_v(Op::StopGradient(h), true),
            V::Step(h) => self.emit_v(Op::StopGradient(h), false),
        }
    }

    fn call(&mut self, f: Func, args: &[V], prog: &Program, at: &str) -> Res<V> {
        match f {
            Func::Exp => self.unary(UnaryOp::Exp, args[0]),
            Func::Log => self.unary(UnaryOp::Log, args[0]),
            Func::Tanh => self.unary(UnaryOp::Tanh, args[0]),
            Func::Sqrt => self.unary(UnaryOp::Sqrt, args[0]),
            Func::Abs => self.unary(UnaryOp::Abs, args[0]),
            Func::Relu => self.unary(UnaryOp::Relu, args[0]),
            Func::Min => self.binary(BinaryOp::Min, args[0], args[1], at),
            Func::Max => self.binary(BinaryOp::Max, args[0], args[1], at),
            Func::Clamp => {
                let lo = self.binary(BinaryOp::Max, args[0], args[1], at)?;
                self.binary(BinaryOp::Min, lo, args[2], at)
            }
            Func::Heaviside => self.threshold_of(args[0], Surrogate::Heaviside),
            Func::Spike => self.threshold_of(args[0], surrogate(prog.method, prog.alpha)),
            Func::Detach => self.detach(args[0]),
        }
    }
}
