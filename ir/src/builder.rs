//! A builder that appends typed nodes to the current region.

use crate::arena::Handle;
use crate::module::{Input, Module, Node, Output, Param, Region, RegionKind, StateInit, StateVar};
use crate::op::{BinaryOp, CompareOp, Op, Surrogate, UnaryOp};
use crate::types::{Dtype, Shape, Type};

/// The builder could not type an op: its operands don't fit together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub message: String,
}

/// Builds a [`Module`] node by node; every node is typed as it is added.
#[derive(Debug)]
pub struct Builder {
    module: Module,
}

impl Builder {
    pub fn new(name: impl Into<String>, steps: u32, dt: f64, float: Dtype) -> Self {
        Builder { module: Module::new(name, steps, dt, float) }
    }

    /// The module so far.
    pub fn module(&self) -> &Module {
        &self.module
    }

    pub fn float(&self) -> Dtype {
        self.module.float
    }

    pub fn input(&mut self, name: impl Into<String>, ty: Type) -> Handle<Input> {
        self.module.inputs.append(Input { name: name.into(), ty })
    }

    pub fn param(&mut self, param: Param) -> Handle<Param> {
        self.module.params.append(param)
    }

    pub fn state(&mut self, name: impl Into<String>, ty: Type, init: StateInit) -> Handle<StateVar> {
        self.module.states.append(StateVar { name: name.into(), ty, init })
    }

    /// Starts a new sequence region; following nodes go there.
    pub fn begin_seq(&mut self) {
        self.module.body.push(Region::seq(Vec::new()));
    }

    /// Starts a new step loop; following nodes go there.
    pub fn begin_step(&mut self) {
        self.module.body.push(Region::step(Vec::new()));
    }

    /// The kind of the current region, if any.
    pub fn region_kind(&self) -> Option<RegionKind> {
        self.module.body.last().map(|r| r.kind.clone())
    }

    /// Appends a node to the current region (a new sequence region if there
    /// is none yet).
    pub fn emit(&mut self, op: Op) -> Result<Handle<Node>, BuildError> {
        if self.module.body.is_empty() {
            self.begin_seq();
        }
        let ty = crate::typing::result_type(&self.module, &op).map_err(|message| BuildError { message })?;
        let h = self.module.nodes.append(Node { op, ty, name: None });
        self.module.body.last_mut().expect("a region exists").nodes.push(h);
        Ok(h)
    }

    /// Appends a node to an earlier region, given by its index in the body
    /// (e.g. a constant or a parameter into the preamble of a step loop).
    /// The node must not use values defined after that region.
    pub fn emit_in(&mut self, region: usize, op: Op) -> Result<Handle<Node>, BuildError> {
        if region >= self.module.body.len() {
            return Err(BuildError { message: format!("region {region} does not exist") });
        }
        let ty = crate::typing::result_type(&self.module, &op).map_err(|message| BuildError { message })?;
        let h = self.module.nodes.append(Node { op, ty, name: None });
        self.module.body[region].nodes.push(h);
        Ok(h)
    }

    /// The index of the current region.
    pub fn region_index(&self) -> Option<usize> {
        self.module.body.len().checked_sub(1)
    }

    /// Names a node (for recordings and the text form).
    pub fn name(&mut self, node: Handle<Node>, name: impl Into<String>) -> Handle<Node> {
        self.module.nodes[node].name = Some(name.into());
        node
    }

    pub fn ty(&self, node: Handle<Node>) -> &Type {
        &self.module.nodes[node].ty
    }

    pub fn output(&mut self, name: impl Into<String>, value: Handle<Node>) {
        self.module.outputs.push(Output { name: name.into(), value });
    }

    pub fn finish(self) -> Module {
        self.module
    }

    // Shorthands. Each one is `emit` of the matching op.

    pub fn constant(&mut self, value: f64) -> Result<Handle<Node>, BuildError> {
        let dtype = self.module.float;
        self.emit(Op::Const { value, dtype })
    }

    pub fn unary(&mut self, op: UnaryOp, arg: Handle<Node>) -> Result<Handle<Node>, BuildError> {
        self.emit(Op::Unary { op, arg })
    }

    pub fn binary(&mut self, op: BinaryOp, lhs: Handle<Node>, rhs: Handle<Node>) -> Result<Handle<Node>, BuildError> {
        self.emit(Op::Binary { op, lhs, rhs })
    }

    pub fn add(&mut self, lhs: Handle<Node>, rhs: Handle<Node>) -> Result<Handle<Node>, BuildError> {
        self.binary(BinaryOp::Add, lhs, rhs)
    }

    pub fn sub(&mut self, lhs: Handle<Node>, rhs: Handle<Node>) -> Result<Handle<Node>, BuildError> {
        self.binary(BinaryOp::Sub, lhs, rhs)
    }

    pub fn mul(&mut self, lhs: Handle<Node>, rhs: Handle<Node>) -> Result<Handle<Node>, BuildError> {
        self.binary(BinaryOp::Mul, lhs, rhs)
    }

    pub fn compare(&mut self, op: CompareOp, lhs: Handle<Node>, rhs: Handle<Node>) -> Result<Handle<Node>, BuildError> {
        self.emit(Op::Compare { op, lhs, rhs })
    }

    pub fn threshold(&mut self, arg: Handle<Node>, surrogate: Surrogate) -> Result<Handle<Node>, BuildError> {
        self.emit(Op::Threshold { arg, surrogate })
    }

    /// `concat` of `args` along dim 1 (see [`Op::Concat`]).
    pub fn concat(&mut self, args: Vec<Handle<Node>>) -> Result<Handle<Node>, BuildError> {
        self.emit(Op::Concat { args })
    }

    /// `channel_sum` (`mean` false) or `channel_mean`: `x` summed to its
    /// channel dim `[C]` (see [`Op::ChannelSum`]).
    pub fn channel_sum(&mut self, arg: Handle<Node>, mean: bool) -> Result<Handle<Node>, BuildError> {
        self.emit(Op::ChannelSum { arg, mean, per_step: false })
    }

    /// `channel_sum_per_step` (`mean` false) or `channel_mean_per_step`:
    /// each step of the sequence `x` summed to its channel dim, `[T, C]`
    /// (see [`Op::ChannelSum`]).
    pub fn channel_sum_per_step(&mut self, arg: Handle<Node>, mean: bool) -> Result<Handle<Node>, BuildError> {
        self.emit(Op::ChannelSum { arg, mean, per_step: true })
    }

    /// `channel_broadcast`: a `[C]` (fixed, or per step) repeated to `shape` (see
    /// [`Op::ChannelBroadcast`]).
    pub fn channel_broadcast(&mut self, arg: Handle<Node>, shape: Shape) -> Result<Handle<Node>, BuildError> {
        self.emit(Op::ChannelBroadcast { arg, shape, mean: false })
    }

    /// `narrow`: the slice `[start, start + len)` of dim 1 (see [`Op::Narrow`]).
    pub fn narrow(&mut self, arg: Handle<Node>, start: u32, len: u32) -> Result<Handle<Node>, BuildError> {
        self.emit(Op::Narrow { arg, start, len })
    }

    pub fn state_read(&mut self, state: Handle<StateVar>) -> Result<Handle<Node>, BuildError> {
        self.emit(Op::StateRead(state))
    }

    pub fn state_write(&mut self, state: Handle<StateVar>, value: Handle<Node>) -> Result<Handle<Node>, BuildError> {
        self.emit(Op::StateWrite { state, value })
    }
}
