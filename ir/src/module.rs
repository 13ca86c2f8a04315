//! The module: everything a compiled network is.

use crate::arena::{Arena, Handle};
use crate::op::Op;
use crate::types::{Dtype, Shape, Type};

/// A module input, provided by the caller on every run.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: String,
    /// `seq` for a per-step input `[T, B, ...]`, otherwise a static `[B, ...]`.
    pub ty: Type,
}

/// How a parameter is initialised when no weights are given.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamInit {
    Zeros,
    /// Every element equal to the value.
    Fill(f64),
    /// Uniform in `[-bound, bound)` (PyTorch's default for Linear/Conv).
    Uniform {
        bound: f64,
    },
    /// Normal with mean 0 and the given standard deviation.
    Normal {
        std: f64,
    },
    /// 1 everywhere except 0 on the diagonal of a square matrix (the mask
    /// that removes autapses from recurrent weights).
    OffDiagonal,
    /// The given values, row-major, one per element (per-neuron neuron
    /// parameters such as `lif1.v_th`).
    Values(Vec<f64>),
}

/// A parameter: a weight tensor with a fixed shape (no batch, no time).
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Name in the weights file, e.g. `fc1.weight`.
    pub name: String,
    pub dtype: Dtype,
    pub shape: Shape,
    /// Whether training updates it (masks and constants are not trainable).
    pub trainable: bool,
    pub init: ParamInit,
}

/// The initial value of a state variable, broadcast to its shape.
#[derive(Clone, Debug, PartialEq)]
pub enum StateInit {
    Fill(f64),
    /// One value per element of a sample (the state's shape without its
    /// leading batch dimension, row-major), the same for every sample: a
    /// per-neuron `v_leak` is the initial `v` of each neuron. Element `k` of
    /// the state (flat, row-major) starts at `values[k % values.len()]`; the
    /// validator checks the count and that the batch dimension, if any, is
    /// the first.
    Values(Vec<f64>),
    /// The value of a parameter (the weights given to the run): a plastic
    /// weight, which the step loop reads and rewrites every step (STDP).
    /// The state has the parameter's type (no batch dimension); its value
    /// after the last step is the run's final state under the state's name.
    Param(Handle<Param>),
}

/// A state variable carried from step to step inside one step loop.
#[derive(Clone, Debug, PartialEq)]
pub struct StateVar {
    /// Name of its trace, e.g. `lif1.v`.
    pub name: String,
    /// A per-step type (never `seq`), usually `[B, ...]`.
    pub ty: Type,
    pub init: StateInit,
}

/// One SSA value.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    /// The result type, as computed by [`crate::typing::result_type`]; the
    /// validator checks that it agrees.
    pub ty: Type,
    /// An optional name: the frontend names each layer's values
    /// (`lif1.z`, `lif1.v`, `fc1.out`, `output`), and recordings use it.
    pub name: Option<String>,
}

/// What kind of region a piece of the body is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Runs once over whole sequences (`[T, B, ...]`) and static values.
    Seq,
    /// Runs its nodes once per time step, `t = 0..T`, in order.
    Step,
}

/// A contiguous part of the body, executed in order.
///
/// Build one with [`Region::new`], [`Region::seq`] or [`Region::step`], so
/// that schedule attributes added later keep their neutral defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub kind: RegionKind,
    /// The nodes, in execution order (increasing handles).
    pub nodes: Vec<Handle<Node>>,
    /// A schedule attribute of a step loop, set by the `unroll` pass: a
    /// backend emits `unroll` copies of the body per iteration of its time
    /// loop, plus a remainder loop of `T mod unroll` steps. It never
    /// changes what the module computes, so the interpreter ignores it.
    /// `1` (the default) means not unrolled; the validator requires at
    /// least 1, and exactly 1 for a sequence region. Printed in the region
    /// header: `step t in 0..T unroll 4 {`.
    pub unroll: u32,
    /// Whether a step loop runs backwards in time, `t = T-1` down to `0`
    /// (the autodiff pass makes such loops for the backward pass). `t` is
    /// still the time index: `step x` reads row `t` of `x`, `collect`
    /// stores row `t`, and `state_read` gives the value the previous
    /// iteration (step `t + 1`) wrote, or the initial value at `t = T-1`.
    /// Printed as `step t in 0..T reverse {`. Always `false` for a sequence
    /// region.
    pub reverse: bool,
}

impl Region {
    /// An empty-attribute region of the given kind (`unroll` 1).
    pub fn new(kind: RegionKind, nodes: Vec<Handle<Node>>) -> Self {
        Region { kind, nodes, unroll: 1, reverse: false }
    }

    /// A sequence region holding `nodes`.
    pub fn seq(nodes: Vec<Handle<Node>>) -> Self {
        Region::new(RegionKind::Seq, nodes)
    }

    /// A step loop holding `nodes`, not unrolled.
    pub fn step(nodes: Vec<Handle<Node>>) -> Self {
        Region::new(RegionKind::Step, nodes)
    }

    /// A step loop running backwards in time, not unrolled.
    pub fn step_reverse(nodes: Vec<Handle<Node>>) -> Self {
        Region { reverse: true, ..Region::step(nodes) }
    }

    pub fn is_step(&self) -> bool {
        self.kind == RegionKind::Step
    }
}

/// A named module output, a value of a sequence region.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub value: Handle<Node>,
}

/// A network lowered to IR.
///
/// Execution: the regions of `body` run in order. A step region runs its
/// nodes for `t = 0..steps`; at `t = 0` each state holds its initial value,
/// `StateRead` gives the state at the start of step `t` and `StateWrite`
/// sets it for step `t + 1`. A sequence region runs once. Every node is in
/// exactly one region.
#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub name: String,
    /// The number of time steps `T`.
    pub steps: u32,
    /// The integration step in seconds (Norse's `dt`).
    pub dt: f64,
    /// The float dtype of the module's arithmetic (`f32` or `f64`).
    pub float: Dtype,
    pub inputs: Arena<Input>,
    pub params: Arena<Param>,
    pub states: Arena<StateVar>,
    pub nodes: Arena<Node>,
    pub body: Vec<Region>,
    pub outputs: Vec<Output>,
}

impl Module {
    /// Which nodes need their value of every step, not only the current
    /// one: the operands of `collect`, and (when `record`ing traces) every
    /// named node of a step loop. Backends size these `T` times over.
    pub fn kept_per_step(&self, record: bool) -> Vec<bool> {
        let mut keep = vec![false; self.nodes.len()];
        for region in &self.body {
            for &h in &region.nodes {
                match self.nodes[h].op {
                    Op::Collect(x) => keep[x.index()] = true,
                    _ if record && region.is_step() && self.nodes[h].name.is_some() => keep[h.index()] = true,
                    _ => {}
                }
            }
        }
        keep
    }

    pub fn new(name: impl Into<String>, steps: u32, dt: f64, float: Dtype) -> Self {
        Module {
            name: name.into(),
            steps,
            dt,
            float,
            inputs: Arena::new(),
            params: Arena::new(),
            states: Arena::new(),
            nodes: Arena::new(),
            body: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Finds an input by name.
    pub fn input_by_name(&self, name: &str) -> Option<Handle<Input>> {
        self.inputs.iter().find(|(_, i)| i.name == name).map(|(h, _)| h)
    }

    /// Finds a parameter by name.
    pub fn param_by_name(&self, name: &str) -> Option<Handle<Param>> {
        self.params.iter().find(|(_, p)| p.name == name).map(|(h, _)| h)
    }

    /// Finds a named node (the last one with that name).
    pub fn node_by_name(&self, name: &str) -> Option<Handle<Node>> {
        self.nodes.iter().filter(|(_, n)| n.name.as_deref() == Some(name)).map(|(h, _)| h).last()
    }

    /// The number of scalar parameters (weights) in the module, saturating
    /// at `u64::MAX`.
    pub fn parameter_count(&self) -> u64 {
        self.params
            .iter()
            .filter(|(_, p)| p.trainable)
            .fold(0u64, |acc, (_, p)| acc.saturating_add(p.shape.fixed_elements()))
    }

    /// The number of state scalars per sample, saturating at `u64::MAX`.
    pub fn state_size_per_sample(&self) -> u64 {
        self.states.iter().fold(0u64, |acc, (_, s)| acc.saturating_add(s.ty.shape.fixed_elements()))
    }
}
