//! The closed set of IR operations.
//!
//! Every variant documents its typing rule; [`crate::typing::result_type`]
//! implements them in one place for the builder and the validator. Adding an
//! op is a checklist driven by exhaustive `match`es: see `docs/adding-an-op.md`.

use crate::arena::Handle;
use crate::module::{Input, Node, Param, StateVar};
use crate::stdp::StdpRule;
use crate::types::{Dtype, Shape};

/// Elementwise functions of one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Tanh,
    Sqrt,
    /// `max(x, 0)`.
    Relu,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 7] =
        [UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Exp, UnaryOp::Log, UnaryOp::Tanh, UnaryOp::Sqrt, UnaryOp::Relu];

    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Relu => "relu",
        }
    }
}

/// Elementwise functions of two arguments, with suffix broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 6] =
        [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min];

    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
        }
    }

    pub fn is_commutative(self) -> bool {
        matches!(self, BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min)
    }

    /// Whether two spikes combine to a spike under this op (`and`, `or`).
    pub fn keeps_spikes(self) -> bool {
        matches!(self, BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min)
    }
}

/// Comparisons; the result is a spike (1 where true).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompareOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

impl CompareOp {
    pub fn name(self) -> &'static str {
        match self {
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Eq => "eq",
        }
    }
}

/// Reductions over the time dimension, used by readouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReduceOp {
    /// Sum over time (a spike count for spike inputs).
    Sum,
    /// Mean over time.
    Mean,
    /// Maximum over time; its gradient goes to the first maximal step, as
    /// `torch.max(x, 0)` does on the CPU.
    Max,
    /// The value at the last step.
    Last,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Last => "last",
        }
    }
}

/// How a matrix product is computed. Both kinds compute the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatMulKind {
    Dense,
    /// Accumulate the weight rows of the active (nonzero) inputs only.
    /// Requires a spike input.
    EventDriven,
}

/// A surrogate gradient, named by its formula and parameters.
///
/// The forward function is always the Heaviside step `H(x) = x > 0`
/// (strictly: `H(0) = 0`). `g(x)` is the function the backward pass uses in
/// place of `H'(x)`:
///
/// | variant | g(x) |
/// |---|---|
/// | `SuperSpike` | `1 / (|x| + 1)^2` (Norse 1.1.0's `super`, which ignores alpha) |
/// | `Tanh { alpha }` | `1 - tanh(alpha x)^2` |
/// | `Triangle { alpha }` | `alpha * max(1 - |x|, 0)` |
/// | `Circ { alpha }` | `alpha^3 / (alpha^2 + x^2)^1.5` |
/// | `Erfc { alpha }` | `2 exp(-(alpha x)^2) / sqrt(pi)` |
/// | `Heaviside` | no gradient: nothing flows through the spike |
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Surrogate {
    SuperSpike,
    Tanh { alpha: f64 },
    Triangle { alpha: f64 },
    Circ { alpha: f64 },
    Erfc { alpha: f64 },
    Heaviside,
}

impl Surrogate {
    /// The surrogate derivative `g(x)`, in f64.
    pub fn grad(self, x: f64) -> f64 {
        match self {
            Surrogate::SuperSpike => 1.0 / ((x.abs() + 1.0) * (x.abs() + 1.0)),
            Surrogate::Tanh { alpha } => {
                let t = (alpha * x).tanh();
                1.0 - t * t
            }
            Surrogate::Triangle { alpha } => alpha * (1.0 - x.abs()).max(0.0),
            Surrogate::Circ { alpha } => alpha.powi(3) / (alpha * alpha + x * x).powf(1.5),
            Surrogate::Erfc { alpha } => 2.0 * (-(alpha * x) * (alpha * x)).exp() / std::f64::consts::PI.sqrt(),
            Surrogate::Heaviside => 0.0,
        }
    }

    /// Whether any gradient flows through the spike.
    pub fn has_gradient(self) -> bool {
        !matches!(self, Surrogate::Heaviside)
    }

    pub fn alpha(self) -> Option<f64> {
        match self {
            Surrogate::SuperSpike | Surrogate::Heaviside => None,
            Surrogate::Tanh { alpha }
            | Surrogate::Triangle { alpha }
            | Surrogate::Circ { alpha }
            | Surrogate::Erfc { alpha } => Some(alpha),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Surrogate::SuperSpike => "superspike",
            Surrogate::Tanh { .. } => "tanh",
            Surrogate::Triangle { .. } => "triangle",
            Surrogate::Circ { .. } => "circ",
            Surrogate::Erfc { .. } => "erfc",
            Surrogate::Heaviside => "heaviside",
        }
    }
}

/// Pooling functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PoolOp {
    /// The window's maximum (padding is `-inf`, never selected); keeps the
    /// dtype.
    Max,
    /// torch's `avg_pool2d` with `count_include_pad=True`: the window's sum
    /// (zero padding) divided once by `kh * kw`. Float (spikes give the
    /// module's float).
    Avg,
    /// NIR's `SumPool2d`: the window's sum (zero padding). Float (spikes give
    /// the module's float).
    Sum,
}

impl PoolOp {
    /// The name in mnemonics: `max`, `avg`, `sum`.
    pub fn name(self) -> &'static str {
        match self {
            PoolOp::Max => "max",
            PoolOp::Avg => "avg",
            PoolOp::Sum => "sum",
        }
    }
}

/// One IR operation. Operands are [`Handle<Node>`]s that appear before use
/// (earlier in the same region, or in an earlier region).
///
/// "Float" below means the module's float dtype (`f32` or `f64`).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A module input. Type: the input's declared type (`seq` for a per-step
    /// sequence, not `seq` for a static input such as an image).
    Input(Handle<Input>),
    /// A parameter (weight). Type: the parameter's fixed shape, float.
    Param(Handle<Param>),
    /// A scalar constant. Type: `dtype[]` (rank 0), broadcasts to any shape.
    Const { value: f64, dtype: Dtype },
    /// The value of a state variable at the start of the current step.
    /// Step loops only; every read of a state precedes its write.
    /// Type: the state's type.
    StateRead(Handle<StateVar>),
    /// Sets a state variable for the next step. Step loops only; each state
    /// is written exactly once, in the loop that reads it. Type: the value's
    /// type, which must equal the state's type; the node passes the value on.
    StateWrite { state: Handle<StateVar>, value: Handle<Node> },
    /// The current step's slice of a sequence value defined in an earlier
    /// region. Step loops only. Type: the operand's type without `seq`.
    Step(Handle<Node>),
    /// Stacks a per-step value of an earlier step loop over all steps.
    /// Sequence regions only. Type: the operand's type with `seq`.
    Collect(Handle<Node>),
    /// Elementwise function. Type: the operand's; float only (`Relu` and
    /// `Neg`/`Abs` accept spikes and return float).
    Unary { op: UnaryOp, arg: Handle<Node> },
    /// Elementwise function with broadcasting: the operands' full shapes
    /// (time first) are equal, or one is a suffix of the other and holds no
    /// batch dimension (a scalar, a bias). Dtypes: equal floats; a spike
    /// with a float gives the float; two spikes give a spike for
    /// `Mul`/`Max`/`Min` only.
    Binary { op: BinaryOp, lhs: Handle<Node>, rhs: Handle<Node> },
    /// Elementwise comparison, broadcasting as `Binary`. Type: spike.
    Compare { op: CompareOp, lhs: Handle<Node>, rhs: Handle<Node> },
    /// `cond ? on_true : on_false` elementwise; `cond` is a spike
    /// broadcasting to the result. `on_true`/`on_false` broadcast as
    /// `Binary`. Type: the broadcast of the two branches.
    Select { cond: Handle<Node>, on_true: Handle<Node>, on_false: Handle<Node> },
    /// `H(arg) = arg > 0` with the surrogate gradient `surrogate`.
    /// Type: the operand's shape, spike.
    Threshold { arg: Handle<Node>, surrogate: Surrogate },
    /// Identity forward; no gradient flows through it. Type: the operand's.
    StopGradient(Handle<Node>),
    /// Converts the dtype (spike to float and back, f32 and f64).
    Cast { arg: Handle<Node>, dtype: Dtype },
    /// An elementwise kernel made by the fusion pass: a small SSA program
    /// over its inputs (see [`FusedKernel`] for its typing rule). Allowed in
    /// step loops and sequence regions. Type: the type of its output 0.
    Fused(Box<FusedKernel>),
    /// Output `index` of a `Fused` node of the same region. Type: that
    /// output's type.
    Extract { kernel: Handle<Node>, index: u32 },
    /// `input @ weight^T` (torch's `F.linear` without bias): `input` is
    /// `[..., in]`, `weight` is a `[out, in]` value without batch or time;
    /// the result is `[..., out]`, float. `EventDriven` needs a spike input.
    MatMul { input: Handle<Node>, weight: Handle<Node>, kind: MatMulKind },
    /// 2-d cross-correlation (torch's `Conv2d`): `input` `[..., B, C, H, W]`
    /// (rank 4 after time), `weight` `[O, C/groups, kh, kw]`, optional
    /// `bias` `[O]`. Result `[..., B, O, H', W']` with
    /// `H' = (H + 2 pad - dil (kh - 1) - 1) / stride + 1` per axis
    /// ([`conv_out_size`](crate::typing::conv_out_size)). With `groups` g
    /// (dividing C and O), output channels `[j O/g, (j+1) O/g)` see only
    /// input channels `[j C/g, (j+1) C/g)`. `EventDriven` (`spike_conv2d`)
    /// needs a spike input: each active input element adds its weights to
    /// the outputs it reaches. Printed attributes `dilation` and `groups`
    /// only when they are not `[1, 1]` and 1.
    Conv2d {
        input: Handle<Node>,
        weight: Handle<Node>,
        bias: Option<Handle<Node>>,
        stride: [u32; 2],
        padding: [u32; 2],
        dilation: [u32; 2],
        groups: u32,
        kind: MatMulKind,
    },
    /// 2-d pooling over the last two dims, floor mode, `padding` on both
    /// sides of each axis (at most `kernel / 2`, as torch requires).
    /// Result `[..., H', W']` with `H' = (H + 2 pad - k) / stride + 1`; `Max`
    /// keeps the dtype, `Avg`/`Sum` of spikes give the module's float (see
    /// [`PoolOp`]). `padding` is printed only when not `[0, 0]`.
    Pool2d { op: PoolOp, input: Handle<Node>, kernel: [u32; 2], stride: [u32; 2], padding: [u32; 2] },
    /// Row-major reshape of the per-sample dims. `shape` is the new shape
    /// without time; element counts must agree and a batch dimension, if
    /// any, stays the first dim.
    Reshape { arg: Handle<Node>, shape: Shape },
    /// Reduces a sequence value over time. Type: the operand without `seq`;
    /// `Sum`/`Mean` of spikes give float.
    ReduceTime { op: ReduceOp, arg: Handle<Node> },
    /// `log_softmax` over the last dimension. Type: the operand's, float.
    LogSoftmax { arg: Handle<Node> },
    /// Uniform random numbers in `[0, 1)` with the given shape, drawn from
    /// the counter-based generator `snnc_ir::rng` with the key `seed`: the
    /// value at step `t` (0 outside step loops, time index for `seq`) and
    /// flat index `k` is `rng::uniform(seed, t, k)`. Type: float, `shape`,
    /// `seq` when `seq`.
    Uniform { seed: u64, shape: Shape, seq: bool },
    /// Concatenation along the first per-sample dimension, the one right
    /// after the batch dimension (torch's `torch.cat(args, dim=1)` of
    /// `[B, F]` or `[B, C, H, W]` values; for a `seq` value `[T, B, ...]`
    /// the dim after `B`). Typing: at least one operand; all have the same
    /// dtype (float or spike, which the result keeps), the same time flag,
    /// a shape `[B, d1, ...]` of the same rank (at least 2) with the batch
    /// dimension first and only there, and equal dims except `d1`. The
    /// result's `d1` is the sum of the operands' (at most 2^32 - 1).
    /// Semantics: for each sample (and step), the operands' per-sample
    /// blocks one after the other, in operand order.
    Concat { args: Vec<Handle<Node>> },
    /// The slice `[start, start + len)` of the first per-sample dimension
    /// (the axis of `Concat`, whose inverse it is). Typing: `arg` is
    /// `[B, d1, ...]` (batch first, rank at least 2), `len >= 1` and
    /// `start + len <= d1`; the result is `arg`'s type with `d1 = len`
    /// (same dtype and time flag).
    Narrow { arg: Handle<Node>, start: u32, len: u32 },
    /// Sums `arg` over every dim except its *channel dim* down to a fixed
    /// `[C]` (BatchNorm's statistics): the channel dim is dim 1 of a
    /// batched value `[B, C, ...]` (the batch dim first and only there),
    /// dim 0 of a fixed `[C, ...]`; a `seq` value is summed over time too.
    /// With `mean`, the sum is divided by the number of summed elements
    /// (`T·B·H·W` for a `seq` `[B, C, H, W]`). Type: float (the module's
    /// for spikes), `[C]`, not `seq`.
    ///
    /// With `per_step` (printed `channel_sum_per_step` /
    /// `channel_mean_per_step`), every step is summed on its own: step `t`
    /// of the result is exactly the `ChannelSum` of step `t` of a `seq`
    /// `arg` (same order, from `+0`; the mean divides by one step's count,
    /// `B·H·W`), or of `arg` itself at every step when it is not `seq` (a
    /// value without time is the same at every step). Type: float, `[C]`,
    /// `seq` (`[T, C]`). `time-batch` makes it from an in-loop `ChannelSum`
    /// (BatchNorm's per-step statistics) whose operand it batches, or
    /// whose loop-invariant operand it hoists (for the collected history).
    ChannelSum { arg: Handle<Node>, mean: bool, per_step: bool },
    /// The inverse layout of `ChannelSum` (its adjoint): a float `[C]`
    /// repeated along every dim of `shape` except the channel dim (dim 1 if
    /// `shape` starts with the batch dim, else dim 0), which must be `C`.
    /// With `mean`, every value is divided by the number of positions it
    /// is repeated at in one step (the adjoint of a `mean` `ChannelSum`).
    /// A fixed `[C]` gives `shape`, not `seq`; a `seq` `[C]` (`[T, C]`, a
    /// `per_step` statistic) is repeated step by step to a `seq` `shape`
    /// (step `t` of the result repeats step `t` of `arg`, the adjoint of a
    /// `per_step` `ChannelSum`). Type: `arg`'s dtype, `shape`, `arg`'s time
    /// flag. A fixed result such as `[C, H, W]` broadcasts against
    /// `[B, C, H, W]` by `Binary`'s suffix rule.
    ChannelBroadcast { arg: Handle<Node>, shape: Shape, mean: bool },
    /// The maximum over every element of `arg`: all batch entries (and all
    /// steps of a `seq` value), as torch's `x.max()` without a dim (Norse's
    /// `PopulationEncoder` scale). NaN propagates (any NaN gives NaN); no
    /// element gives `-inf`. Typing: `arg` float; the result is a fixed
    /// scalar `[]` of `arg`'s dtype, not `seq`, which broadcasts to any
    /// shape. Gradient (as torch's): shared evenly among the elements equal
    /// to the maximum.
    MaxAll(Handle<Node>),

    /// One step of Norse's STDP weight update of a linear synapse
    /// (`stdp_step_linear` after its traces): `weight` is the fixed float
    /// `[out, in]` weight (the plastic weight's state read), `z_post` and
    /// `t_post` are `[..., out]`, `t_pre` and `z_pre` `[..., in]`, all with
    /// the same leading dims (the batch) and not `seq`; the spikes may be
    /// spikes or floats, the traces are floats of the weight's type. Value:
    /// entry `(o, i)` is `rule.update(w, plus, minus)` (`stdp.rs`) with
    /// `plus = Σ_r z_post[r, o] t_pre[r, i]` and `minus = Σ_r t_post[r, o]
    /// z_pre[r, i]`, each summed over the leading elements in order from
    /// `+0` (exactly `matmul_grad_weight`'s sums). Type: `weight`'s.
    /// Backends may skip the entries whose row had no postsynaptic and
    /// whose column no presynaptic spike (an event-driven update), as long
    /// as the bits are the same. No gradient: a plastic weight is trained
    /// by its rule.
    StdpUpdate {
        weight: Handle<Node>,
        z_post: Handle<Node>,
        t_pre: Handle<Node>,
        t_post: Handle<Node>,
        z_pre: Handle<Node>,
        rule: StdpRule,
    },

    // ---- Ops made by the autodiff pass (the backward of the ops above) ----
    /// Swaps the two dims of a fixed `[m, n]` matrix (no batch, no time).
    /// Type: `[n, m]`, same dtype. Used for `grad @ W` (`matmul(grad,
    /// transpose(W))`).
    Transpose(Handle<Node>),
    /// The weight gradient of `matmul`: `grad` is `[..., out]` (float),
    /// `input` is `[..., in]` with the same leading dims and time flag;
    /// the result is the fixed `[out, in]` matrix
    /// `sum over every leading element r of grad[r, o] * input[r, i]`
    /// (time, batch and any other leading dims summed). `EventDriven` needs
    /// a spike input and visits its active elements only. Type: float
    /// (grad's dtype), `[out, in]`, not `seq`.
    MatMulGradWeight { grad: Handle<Node>, input: Handle<Node>, kind: MatMulKind },
    /// Sums `arg` over its leading dims down to `shape`: the operand's full
    /// dims (time first) end with `shape`'s dims. Used for the gradient of
    /// a broadcast operand (a bias). Type: float (the module's for a spike
    /// operand), `shape`, not `seq`.
    SumTo { arg: Handle<Node>, shape: Shape },
    /// The input gradient of `conv2d` (a transposed convolution): `grad`
    /// `[..., B, O, H', W']`, `weight` `[O, C, kh, kw]`; the result is
    /// `[..., B, C, H, W]` with `input_size = [H, W]` (which must give `H'`
    /// as `conv2d` does with the same `stride`, `padding`, `dilation` and
    /// `groups`; `weight` `[O, C/groups, kh, kw]`). Type: float, grad's time
    /// flag.
    Conv2dGradInput {
        grad: Handle<Node>,
        weight: Handle<Node>,
        stride: [u32; 2],
        padding: [u32; 2],
        dilation: [u32; 2],
        groups: u32,
        input_size: [u32; 2],
    },
    /// The weight gradient of `conv2d`: `grad` `[..., B, O, H', W']` and the
    /// forward `input` `[..., B, C, H, W]` (same time flag) give the fixed
    /// `[O, C/groups, kh, kw]` tensor summed over time and batch (the
    /// attributes as `conv2d`'s). `EventDriven`
    /// (`spike_conv2d_grad_weight`) needs a spike input and visits its
    /// active elements only.
    Conv2dGradWeight {
        grad: Handle<Node>,
        input: Handle<Node>,
        kernel: [u32; 2],
        stride: [u32; 2],
        padding: [u32; 2],
        dilation: [u32; 2],
        groups: u32,
        kind: MatMulKind,
    },
    /// The bias gradient of `conv2d`: `grad` `[..., B, O, H', W']` summed to
    /// the fixed `[O]`.
    Conv2dGradBias { grad: Handle<Node> },
    /// The input gradient of `<op>_pool2d`: `grad` has the pooled shape of
    /// `input`. `Max`: each window's gradient goes to the first maximal
    /// element of the window in row-major order (as torch's CPU kernel);
    /// `Avg`: `grad / (kh kw)` to every element of the window; `Sum`: `grad`
    /// to every element of the window (padding receives nothing);
    /// overlapping windows add. Type: `input`'s shape and time flag, float.
    Pool2dGrad {
        op: PoolOp,
        input: Handle<Node>,
        grad: Handle<Node>,
        kernel: [u32; 2],
        stride: [u32; 2],
        padding: [u32; 2],
    },
    /// The gradient of `reduce_time_<op>`: `arg` is the forward operand
    /// (`seq`), `grad` the gradient of the reduction (`arg`'s type without
    /// `seq`, float). `sum`: grad at every step; `mean`: grad / T; `last`:
    /// grad at step T-1, 0 elsewhere; `max`: grad at the first maximal step
    /// of each element (as `torch.max`), 0 elsewhere. Type: `arg`'s type,
    /// float.
    ReduceTimeGrad { op: ReduceOp, arg: Handle<Node>, grad: Handle<Node> },
    /// The gradient of `log_softmax`: `out` is its forward result, `grad`
    /// the gradient of the result (same type); the value is
    /// `grad - exp(out) * sum(grad)` along the last dimension. Type: `out`'s.
    LogSoftmaxGrad { out: Handle<Node>, grad: Handle<Node> },
}

impl Op {
    /// The operands, in order.
    pub fn operands(&self) -> Vec<Handle<Node>> {
        match *self {
            Op::Concat { ref args } => args.clone(),
            Op::Narrow { arg, .. } | Op::ChannelSum { arg, .. } | Op::ChannelBroadcast { arg, .. } => vec![arg],
            Op::Input(_) | Op::Param(_) | Op::Const { .. } | Op::StateRead(_) | Op::Uniform { .. } => Vec::new(),
            Op::StateWrite { value, .. } => vec![value],
            Op::Step(a) | Op::Collect(a) | Op::StopGradient(a) | Op::MaxAll(a) => vec![a],
            Op::Unary { arg, .. }
            | Op::Threshold { arg, .. }
            | Op::Cast { arg, .. }
            | Op::Reshape { arg, .. }
            | Op::ReduceTime { arg, .. }
            | Op::LogSoftmax { arg } => vec![arg],
            Op::Binary { lhs, rhs, .. } | Op::Compare { lhs, rhs, .. } => vec![lhs, rhs],
            Op::Select { cond, on_true, on_false } => vec![cond, on_true, on_false],
            Op::MatMul { input, weight, .. } => vec![input, weight],
            Op::Conv2d { input, weight, bias, .. } => {
                let mut v = vec![input, weight];
                v.extend(bias);
                v
            }
            Op::Pool2d { input, .. } => vec![input],
            Op::Fused(ref k) => k.inputs.clone(),
            Op::Extract { kernel, .. } => vec![kernel],
            Op::Transpose(a) | Op::SumTo { arg: a, .. } | Op::Conv2dGradBias { grad: a } => vec![a],
            Op::MatMulGradWeight { grad, input, .. }
            | Op::Conv2dGradWeight { grad, input, .. }
            | Op::Pool2dGrad { input, grad, .. } => vec![grad, input],
            Op::Conv2dGradInput { grad, weight, .. } => vec![grad, weight],
            Op::ReduceTimeGrad { arg, grad, .. } => vec![arg, grad],
            Op::LogSoftmaxGrad { out, grad } => vec![out, grad],
            Op::StdpUpdate { weight, z_post, t_pre, t_post, z_pre, .. } => vec![weight, z_post, t_pre, t_post, z_pre],
        }
    }

    /// Rewrites every operand through `f` (used by passes that renumber).
    pub fn map_operands(&mut self, mut f: impl FnMut(Handle<Node>) -> Handle<Node>) {
        match self {
            Op::Input(_) | Op::Param(_) | Op::Const { .. } | Op::StateRead(_) | Op::Uniform { .. } => {}
            Op::Concat { args } => {
                for h in args {
                    *h = f(*h);
                }
            }
            Op::Narrow { arg, .. } | Op::ChannelSum { arg, .. } | Op::ChannelBroadcast { arg, .. } => *arg = f(*arg),
            Op::StateWrite { value, .. } => *value = f(*value),
            Op::Step(a) | Op::Collect(a) | Op::StopGradient(a) | Op::MaxAll(a) => *a = f(*a),
            Op::Unary { arg, .. }
            | Op::Threshold { arg, .. }
            | Op::Cast { arg, .. }
            | Op::Reshape { arg, .. }
            | Op::ReduceTime { arg, .. }
            | Op::LogSoftmax { arg } => *arg = f(*arg),
            Op::Binary { lhs, rhs, .. } | Op::Compare { lhs, rhs, .. } => {
                *lhs = f(*lhs);
                *rhs = f(*rhs);
            }
            Op::Select { cond, on_true, on_false } => {
                *cond = f(*cond);
                *on_true = f(*on_true);
                *on_false = f(*on_false);
            }
            Op::MatMul { input, weight, .. } => {
                *input = f(*input);
                *weight = f(*weight);
            }
            Op::Conv2d { input, weight, bias, .. } => {
                *input = f(*input);
                *weight = f(*weight);
                if let Some(b) = bias {
                    *b = f(*b);
                }
            }
            Op::Pool2d { input, .. } => *input = f(*input),
            Op::Fused(k) => {
                for h in &mut k.inputs {
                    *h = f(*h);
                }
            }
            Op::Extract { kernel, .. } => *kernel = f(*kernel),
            Op::Transpose(a) | Op::SumTo { arg: a, .. } | Op::Conv2dGradBias { grad: a } => *a = f(*a),
            Op::MatMulGradWeight { grad, input, .. }
            | Op::Conv2dGradWeight { grad, input, .. }
            | Op::Pool2dGrad { input, grad, .. } => {
                *grad = f(*grad);
                *input = f(*input);
            }
            Op::Conv2dGradInput { grad, weight, .. } => {
                *grad = f(*grad);
                *weight = f(*weight);
            }
            Op::ReduceTimeGrad { arg, grad, .. } => {
                *arg = f(*arg);
                *grad = f(*grad);
            }
            Op::LogSoftmaxGrad { out, grad } => {
                *out = f(*out);
                *grad = f(*grad);
            }
            Op::StdpUpdate { weight, z_post, t_pre, t_post, z_pre, .. } => {
                for h in [weight, z_post, t_pre, t_post, z_pre] {
                    *h = f(*h);
                }
            }
        }
    }

    /// The op's mnemonic in the text form.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Input(_) => "input",
            Op::Param(_) => "param",
            Op::Const { .. } => "const",
            Op::StateRead(_) => "state_read",
            Op::StateWrite { .. } => "state_write",
            Op::Step(_) => "step",
            Op::Collect(_) => "collect",
            Op::Unary { op, .. } => op.name(),
            Op::Binary { op, .. } => op.name(),
            Op::Compare { op, .. } => op.name(),
            Op::Select { .. } => "select",
            Op::Threshold { .. } => "threshold",
            Op::StopGradient(_) => "stop_gradient",
            Op::Cast { .. } => "cast",
            Op::MatMul { kind: MatMulKind::Dense, .. } => "matmul",
            Op::MatMul { kind: MatMulKind::EventDriven, .. } => "spike_matmul",
            Op::Conv2d { kind: MatMulKind::Dense, .. } => "conv2d",
            Op::Conv2d { kind: MatMulKind::EventDriven, .. } => "spike_conv2d",
            Op::Pool2d { op: PoolOp::Max, .. } => "max_pool2d",
            Op::Pool2d { op: PoolOp::Avg, .. } => "avg_pool2d",
            Op::Pool2d { op: PoolOp::Sum, .. } => "sum_pool2d",
            Op::Reshape { .. } => "reshape",
            Op::ReduceTime { op, .. } => match op {
                ReduceOp::Sum => "reduce_time_sum",
                ReduceOp::Mean => "reduce_time_mean",
                ReduceOp::Max => "reduce_time_max",
                ReduceOp::Last => "reduce_time_last",
            },
            Op::LogSoftmax { .. } => "log_softmax",
            Op::Uniform { .. } => "uniform",
            Op::Concat { .. } => "concat",
            Op::Narrow { .. } => "narrow",
            Op::ChannelSum { mean: false, per_step: false, .. } => "channel_sum",
            Op::ChannelSum { mean: true, per_step: false, .. } => "channel_mean",
            Op::ChannelSum { mean: false, per_step: true, .. } => "channel_sum_per_step",
            Op::ChannelSum { mean: true, per_step: true, .. } => "channel_mean_per_step",
            Op::ChannelBroadcast { mean: false, .. } => "channel_broadcast",
            Op::ChannelBroadcast { mean: true, .. } => "channel_broadcast_mean",
            Op::MaxAll(_) => "max_all",
            Op::StdpUpdate { .. } => "stdp_update",
            Op::Fused(_) => "fused",
            Op::Extract { .. } => "extract",
            Op::Transpose(_) => "transpose",
            Op::MatMulGradWeight { kind: MatMulKind::Dense, .. } => "matmul_grad_weight",
            Op::MatMulGradWeight { kind: MatMulKind::EventDriven, .. } => "spike_matmul_grad_weight",
            Op::SumTo { .. } => "sum_to",
            Op::Conv2dGradInput { .. } => "conv2d_grad_input",
            Op::Conv2dGradWeight { kind: MatMulKind::Dense, .. } => "conv2d_grad_weight",
            Op::Conv2dGradWeight { kind: MatMulKind::EventDriven, .. } => "spike_conv2d_grad_weight",
            Op::Conv2dGradBias { .. } => "conv2d_grad_bias",
            Op::Pool2dGrad { op: PoolOp::Max, .. } => "max_pool2d_grad",
            Op::Pool2dGrad { op: PoolOp::Avg, .. } => "avg_pool2d_grad",
            Op::Pool2dGrad { op: PoolOp::Sum, .. } => "sum_pool2d_grad",
            Op::ReduceTimeGrad { op, .. } => match op {
                ReduceOp::Sum => "reduce_time_sum_grad",
                ReduceOp::Mean => "reduce_time_mean_grad",
                ReduceOp::Max => "reduce_time_max_grad",
                ReduceOp::Last => "reduce_time_last_grad",
            },
            Op::LogSoftmaxGrad { .. } => "log_softmax_grad",
        }
    }

    /// Whether the op is an elementwise function of its operands that a
    /// `Fused` kernel can hold (see [`KernelInst`]).
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Const { .. }
                | Op::Unary { .. }
                | Op::Binary { .. }
                | Op::Compare { .. }
                | Op::Select { .. }
                | Op::Threshold { .. }
                | Op::StopGradient(_)
                | Op::Cast { .. }
        )
    }
}

/// The program of an `Op::Fused` node: an elementwise SSA program run once
/// per element of the kernel's shape.
///
/// Typing: the inputs' types broadcast (as `Binary` operands do: equal full
/// shapes, or static suffixes without a batch dimension such as scalars and
/// biases) to one *kernel shape* (time flag included); a kernel without
/// inputs has the scalar shape. Every instruction is a value of the kernel
/// shape, typed by the dtype rule of the IR op it mirrors; an instruction
/// refers only to earlier instructions (`arg < own index`) and to inputs by
/// their position. `outputs` is not empty and names instructions; output
/// `k` has the kernel shape and the dtype of its instruction. Constants
/// follow the rules of `Op::Const` (the module's float or a 0/1 spike, not
/// NaN).
///
/// Semantics: element `e` of output `k` is what the unfused ops would give
/// at element `e`, instruction by instruction in the module's float type,
/// input `i` read at element `e` after broadcasting.
#[derive(Clone, Debug, PartialEq)]
pub struct FusedKernel {
    /// A name for dumps and profiles, e.g. `lif1` (the layer it computes).
    pub name: String,
    /// The values the kernel reads, by position.
    pub inputs: Vec<Handle<Node>>,
    /// The instructions, in order.
    pub body: Vec<KernelInst>,
    /// The instructions the kernel writes, as indices into `body`.
    pub outputs: Vec<u32>,
}

/// One instruction of a [`FusedKernel`]. Operands are indices of earlier
/// instructions of the same body. Each mirrors the IR op of the same name
/// and has its dtype rule and its arithmetic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KernelInst {
    /// The kernel input at this position, broadcast to the kernel shape.
    Input(u32),
    /// A constant, as `Op::Const`.
    Const {
        value: f64,
        dtype: Dtype,
    },
    Unary {
        op: UnaryOp,
        arg: u32,
    },
    Binary {
        op: BinaryOp,
        lhs: u32,
        rhs: u32,
    },
    Compare {
        op: CompareOp,
        lhs: u32,
        rhs: u32,
    },
    Select {
        cond: u32,
        on_true: u32,
        on_false: u32,
    },
    Threshold {
        arg: u32,
        surrogate: Surrogate,
    },
    StopGradient(u32),
    Cast {
        arg: u32,
        dtype: Dtype,
    },
}

impl KernelInst {
    /// The instructions this one reads, in order.
    pub fn args(&self) -> Vec<u32> {
        match *self {
            KernelInst::Input(_) | KernelInst::Const { .. } => Vec::new(),
            KernelInst::Unary { arg, .. }
            | KernelInst::Threshold { arg, .. }
            | KernelInst::StopGradient(arg)
            | KernelInst::Cast { arg, .. } => vec![arg],
            KernelInst::Binary { lhs, rhs, .. } | KernelInst::Compare { lhs, rhs, .. } => vec![lhs, rhs],
            KernelInst::Select { cond, on_true, on_false } => vec![cond, on_true, on_false],
        }
    }

    /// The instruction's mnemonic in the text form (that of its IR op).
    pub fn mnemonic(&self) -> &'static str {
        match self {
            KernelInst::Input(_) => "in",
            KernelInst::Const { .. } => "const",
            KernelInst::Unary { op, .. } => op.name(),
            KernelInst::Binary { op, .. } => op.name(),
            KernelInst::Compare { op, .. } => op.name(),
            KernelInst::Select { .. } => "select",
            KernelInst::Threshold { .. } => "threshold",
            KernelInst::StopGradient(_) => "stop_gradient",
            KernelInst::Cast { .. } => "cast",
        }
    }
}
