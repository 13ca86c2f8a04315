//! STDP (`norse.torch.functional.stdp.stdp_step_linear` and
//! `stdp_step_conv2d`) as IR primitives: the traces and the weight update
//! of one step, at the end of the step loop. One function, [`stdp_step`],
//! shared by a plastic `Linear` or `Conv2d` and the conformance runner
//! (whose oracle files give `z_pre` and `z_post` as inputs), so the golden
//! files test the code networks run.
//!
//! Python's arithmetic as in Norse: `dt * tau_*_inv` is folded in f64 and
//! rounded once; the other parameters are constants of the module's float
//! type. A Linear's weight update is one `stdp_update` op (the rule in
//! `snnc_ir::stdp`; the CPU runs it in place and event-driven). A
//! convolution's is written in primitives: the outer products summed over
//! the batch are `conv2d_grad_weight` (`Σ_b Σ_l grad[b, o, l] *
//! unfold(input)[b, (c, kh, kw), l]`, Norse's unfold-based sum),
//! event-driven where `sparsify` finds spikes worth it, then the same rule
//! elementwise.

use snnc_ir::{BinaryOp, BuildError, Builder, CompareOp, Dtype, Handle, Node, Op, StateInit, StateVar, UnaryOp};

use crate::schema::{Stdp, StdpRule};

/// The nodes of one STDP step that callers name or collect.
#[derive(Clone, Copy, Debug)]
pub struct StdpStep {
    /// The presynaptic trace state (`[B, in]`) and its write.
    pub t_pre: Handle<StateVar>,
    pub t_pre_write: Handle<Node>,
    /// The postsynaptic trace state (`[B, out]`) and its write.
    pub t_post: Handle<StateVar>,
    pub t_post_write: Handle<Node>,
    /// The new weight (after the clamp) and its state write.
    pub w_new: Handle<Node>,
    pub w_write: Handle<Node>,
}

/// How the weight connects `z_pre` to `z_post`: which outer product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// `[B, in] -> [B, out]` through `[out, in]`.
    Linear,
    /// `[B, C, H, W] -> [B, O, H', W']` through `[O, C, kh, kw]` (one group).
    Conv2d { kernel: [u32; 2], stride: [u32; 2], padding: [u32; 2], dilation: [u32; 2] },
}

/// The name of the state holding a plastic weight `param`.
pub fn plastic_state_name(param: &str) -> String {
    format!("{param}.plastic")
}

/// Emits, in the current step loop, one STDP step of `layer`: `w` is the
/// read of the weight state `w_state`, `z_pre` the layer's input, `z_post`
/// the spikes of the layer reading it (`[B, in]`, `[B, out]` and `[out,
/// in]` for a Linear). Makes the trace states `LAYER.t_pre` and
/// `LAYER.t_post` (starting at 0) and writes all three states.
#[allow(clippy::too_many_arguments)]
pub fn stdp_step(
    b: &mut Builder,
    layer: &str,
    p: &Stdp,
    dt: f64,
    connection: Connection,
    w_state: Handle<StateVar>,
    w: Handle<Node>,
    z_pre: Handle<Node>,
    z_post: Handle<Node>,
) -> Result<StdpStep, BuildError> {
    let float = b.float();
    let trace_state = |b: &mut Builder, name: &str, of: Handle<Node>| {
        let ty = snnc_ir::Type::new(float, b.ty(of).shape.clone());
        b.state(format!("{layer}.{name}"), ty, StateInit::Fill(0.0))
    };
    let t_pre = trace_state(b, "t_pre", z_pre);
    let t_post = trace_state(b, "t_post", z_post);

    // Norse's `STDPState.decay`: `t + (dt * tau_inv) * (-t + a * z)`.
    let decay = |b: &mut Builder, state: Handle<StateVar>, z: Handle<Node>, tau_inv: f64, a: f64| {
        let t = b.state_read(state)?;
        let neg = b.unary(UnaryOp::Neg, t)?;
        let a = b.constant(a)?;
        let az = b.mul(a, z)?;
        let s = b.add(neg, az)?;
        let k = b.constant(dt * tau_inv)?;
        let d = b.mul(k, s)?;
        let t_new = b.add(t, d)?;
        let write = b.state_write(state, t_new)?;
        Ok::<_, BuildError>((t_new, write))
    };
    let (t_pre_new, t_pre_write) = decay(b, t_pre, z_pre, p.tau_pre_inv, p.a_pre)?;
    let (t_post_new, t_post_write) = decay(b, t_post, z_post, p.tau_post_inv, p.a_post)?;

    if connection == Connection::Linear {
        // One op (`snnc_ir::stdp`): the same arithmetic as the primitives
        // below, which backends may run event-driven.
        let kind = match p.rule {
            StdpRule::Additive => snnc_ir::StdpKind::Additive,
            StdpRule::AdditiveStep => snnc_ir::StdpKind::AdditiveStep,
            StdpRule::MultiplicativePow => snnc_ir::StdpKind::MultiplicativePow,
            StdpRule::MultiplicativeRelu => snnc_ir::StdpKind::MultiplicativeRelu,
        };
        let w_new = b.emit(Op::StdpUpdate {
            weight: w,
            z_post,
            t_pre: t_pre_new,
            t_post: t_post_new,
            z_pre,
            rule: snnc_ir::StdpRule {
                kind,
                eta_plus: p.eta_plus,
                eta_minus: p.eta_minus,
                w_min: p.w_min,
                w_max: p.w_max,
                mu: p.mu,
                hardbound: p.hardbound,
            },
        })?;
        let w_write = b.state_write(w_state, w_new)?;
        return Ok(StdpStep { t_pre, t_pre_write, t_post, t_post_write, w_new, w_write });
    }

    // A convolution: Σ_b z_post[b, i] t_pre'[b, j] and Σ_b t_post'[b, i]
    // z_pre[b, j], then the rule (as `snnc_ir::StdpRule::update`).
    let z_post_f =
        if b.ty(z_post).dtype == Dtype::Spike { b.emit(Op::Cast { arg: z_post, dtype: float })? } else { z_post };
    let kind = snnc_ir::MatMulKind::Dense;
    let outer = |grad, input| match connection {
        Connection::Linear => Op::MatMulGradWeight { grad, input, kind },
        Connection::Conv2d { kernel, stride, padding, dilation } => {
            Op::Conv2dGradWeight { grad, input, kernel, stride, padding, dilation, groups: 1, kind }
        }
    };
    let plus = b.emit(outer(z_post_f, t_pre_new))?;
    let minus = b.emit(outer(t_post_new, z_pre))?;

    let a_plus = amplitude(b, p, w, true)?;
    let a_minus = amplitude(b, p, w, false)?;
    let dw_plus = b.mul(a_plus, plus)?;
    let dw_minus = b.mul(a_minus, minus)?;
    let dw = b.sub(dw_plus, dw_minus)?;
    let mut w_new = b.add(w, dw)?;
    if p.hardbound {
        // torch.clamp(w, w_min, w_max) = min(max(w, w_min), w_max).
        let lo = b.constant(p.w_min)?;
        let hi = b.constant(p.w_max)?;
        w_new = b.binary(BinaryOp::Max, w_new, lo)?;
        w_new = b.binary(BinaryOp::Min, w_new, hi)?;
    }
    let w_write = b.state_write(w_state, w_new)?;
    Ok(StdpStep { t_pre, t_pre_write, t_post, t_post_write, w_new, w_write })
}

/// `A+(w)` (`plus`) or `A-(w)` of the rule, on the weight before the
/// update: `eta * f(d)` with `d = w_max - w` (`A+`) or `w - w_min` (`A-`).
fn amplitude(b: &mut Builder, p: &Stdp, w: Handle<Node>, plus: bool) -> Result<Handle<Node>, BuildError> {
    let eta = b.constant(if plus { p.eta_plus } else { p.eta_minus })?;
    let diff = |b: &mut Builder| {
        if plus {
            let hi = b.constant(p.w_max)?;
            b.sub(hi, w)
        } else {
            let lo = b.constant(p.w_min)?;
            b.sub(w, lo)
        }
    };
    let f = match p.rule {
        StdpRule::Additive => return Ok(eta),
        // Norse's heaviside: `d > 0` (H(0) = 0).
        StdpRule::AdditiveStep => {
            let d = diff(b)?;
            let zero = b.constant(0.0)?;
            b.compare(CompareOp::Gt, d, zero)?
        }
        StdpRule::MultiplicativeRelu => {
            let d = diff(b)?;
            b.unary(UnaryOp::Relu, d)?
        }
        // torch.pow(d, mu): exactly 1 for mu = 0, d for mu = 1, d * d for
        // mu = 2; otherwise exp(mu * log(d)) (NaN for a negative d, as a
        // fractional power in torch; within a few ulps of torch's pow).
        StdpRule::MultiplicativePow if p.mu == 0.0 => return Ok(eta),
        StdpRule::MultiplicativePow if p.mu == 1.0 => diff(b)?,
        StdpRule::MultiplicativePow if p.mu == 2.0 => {
            let d = diff(b)?;
            b.mul(d, d)?
        }
        StdpRule::MultiplicativePow => {
            let d = diff(b)?;
            let log = b.unary(UnaryOp::Log, d)?;
            let mu = b.constant(p.mu)?;
            let e = b.mul(mu, log)?;
            b.unary(UnaryOp::Exp, e)?
        }
    };
    b.mul(eta, f)
}
