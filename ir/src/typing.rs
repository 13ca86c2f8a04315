//! Typing rules of every op, in one place (see the docs on [`Op`]).
//!
//! [`result_type`] assumes operand handles are in range; the validator checks
//! that first.

use crate::module::Module;
use crate::op::{BinaryOp, CompareOp, FusedKernel, KernelInst, MatMulKind, Op, PoolOp, ReduceOp, UnaryOp};
use crate::types::{Dim, Dtype, Shape, Type};

/// Computes the type an op produces, or explains why its operands don't fit.
pub fn result_type(module: &Module, op: &Op) -> Result<Type, String> {
    let ty = |h: crate::Handle<crate::Node>| &module.nodes[h].ty;
    match *op {
        Op::Input(h) => Ok(module.inputs[h].ty.clone()),
        Op::Param(h) => {
            let p = &module.params[h];
            Ok(Type::new(p.dtype, p.shape.clone()))
        }
        Op::Const { dtype, value } => {
            if dtype == Dtype::Spike && value != 0.0 && value != 1.0 {
                return Err(format!("a spike constant must be 0 or 1, not {value}"));
            }
            Ok(Type::scalar(dtype))
        }
        Op::StateRead(h) => Ok(module.states[h].ty.clone()),
        Op::StateWrite { state, value } => {
            let s = &module.states[state];
            if *ty(value) != s.ty {
                return Err(format!(
                    "state `{}` has type {} but the written value has type {}",
                    s.name,
                    s.ty,
                    ty(value)
                ));
            }
            Ok(s.ty.clone())
        }
        Op::Step(a) => {
            if !ty(a).seq {
                return Err(format!("`step` needs a sequence value, got {}", ty(a)));
            }
            Ok(ty(a).step())
        }
        Op::Collect(a) => {
            if ty(a).seq {
                return Err(format!("`collect` needs a per-step value, got {}", ty(a)));
            }
            Ok(ty(a).with_seq())
        }
        Op::Unary { op, arg } => {
            let t = ty(arg);
            Ok(t.with_dtype(unary_dtype(module.float, op, t.dtype).map_err(|m| format!("{m}, got {t}"))?))
        }
        Op::Binary { op, lhs, rhs } => {
            let (a, b) = (ty(lhs), ty(rhs));
            let dtype = binary_dtype(op, a.dtype, b.dtype)?;
            let (seq, shape) = broadcast(module.steps, a, b)
                .ok_or_else(|| format!("`{}` cannot broadcast {a} with {b}", op.name()))?;
            Ok(Type { dtype, seq, shape })
        }
        Op::Compare { op, lhs, rhs } => {
            let (a, b) = (ty(lhs), ty(rhs));
            let dtype = compare_dtype(op, a.dtype, b.dtype)?;
            let (seq, shape) = broadcast(module.steps, a, b)
                .ok_or_else(|| format!("`{}` cannot broadcast {a} with {b}", op.name()))?;
            Ok(Type { dtype, seq, shape })
        }
        Op::Select { cond, on_true, on_false } => {
            let (c, a, b) = (ty(cond), ty(on_true), ty(on_false));
            let dtype = select_dtype(c.dtype, a.dtype, b.dtype)
                .map_err(|m| if c.dtype == Dtype::Spike { m } else { format!("{m}, got {c}") })?;
            let (seq, shape) =
                broadcast(module.steps, a, b).ok_or_else(|| format!("`select` cannot broadcast {a} with {b}"))?;
            let res = Type { dtype, seq, shape };
            match broadcast(module.steps, &res, c) {
                Some((s, sh)) if s == res.seq && sh == res.shape => Ok(res),
                _ => Err(format!("`select` condition {c} does not broadcast to {res}")),
            }
        }
        Op::Threshold { arg, .. } => {
            let t = ty(arg);
            Ok(t.with_dtype(threshold_dtype(t.dtype).map_err(|m| format!("{m}, got {t}"))?))
        }
        Op::StopGradient(a) => Ok(ty(a).clone()),
        Op::Cast { arg, dtype } => Ok(ty(arg).with_dtype(cast_dtype(ty(arg).dtype, dtype)?)),
        Op::MatMul { input, weight, kind } => {
            let (x, w) = (ty(input), ty(weight));
            if w.seq || w.shape.rank() != 2 || w.shape.has_batch() {
                return Err(format!("`matmul` weight must be a fixed [out, in] matrix, got {w}"));
            }
            if !w.dtype.is_float() {
                return Err(format!("`matmul` weight must be float, got {w}"));
            }
            if kind == MatMulKind::EventDriven && x.dtype != Dtype::Spike {
                return Err(format!("`spike_matmul` needs a spike input, got {x}"));
            }
            if x.dtype != Dtype::Spike && x.dtype != w.dtype {
                return Err(format!("`matmul` mixes {} and {}", x.dtype, w.dtype));
            }
            if x.shape.last() != Some(w.shape.0[1]) {
                return Err(format!(
                    "`matmul` input {x} does not match weight {w}: the input's last dimension must be {}",
                    w.shape.0[1]
                ));
            }
            let mut shape = x.shape.clone();
            *shape.0.last_mut().expect("rank checked above") = w.shape.0[0];
            Ok(Type { dtype: w.dtype, seq: x.seq, shape })
        }
        Op::Conv2d { input, weight, bias, stride, padding, dilation, groups, kind } => {
            let (x, w) = (ty(input), ty(weight));
            if x.shape.rank() != 4 {
                return Err(format!("`conv2d` input must be [B, C, H, W], got {x}"));
            }
            if kind == MatMulKind::EventDriven && x.dtype != Dtype::Spike {
                return Err(format!("`spike_conv2d` needs a spike input, got {x}"));
            }
            if w.seq || w.shape.rank() != 4 || w.shape.has_batch() {
                return Err(format!("`conv2d` weight must be a fixed [O, C/groups, kh, kw] tensor, got {w}"));
            }
            if x.dtype != Dtype::Spike && x.dtype != w.dtype {
                return Err(format!("`conv2d` mixes {} and {}", x.dtype, w.dtype));
            }
            check_groups("conv2d", groups, x.shape.0[1], w.shape.0[0])?;
            if Some(x.shape.0[1]) != mul_dim(w.shape.0[1], groups) {
                return Err(if groups == 1 {
                    format!("`conv2d` input {x} has other channels than weight {w}")
                } else {
                    format!("`conv2d` input {x} has other channels than weight {w} with {groups} groups")
                });
            }
            if let Some(b) = bias {
                let b = ty(b);
                if b.seq || b.shape != Shape(vec![w.shape.0[0]]) || b.dtype != w.dtype {
                    return Err(format!("`conv2d` bias must be {}[{}], got {b}", w.dtype, w.shape.0[0]));
                }
            }
            if stride.contains(&0) {
                return Err("`conv2d` stride must be at least 1".into());
            }
            let mut out = vec![x.shape.0[0], w.shape.0[0]];
            for ax in 0..2 {
                let (Dim::Fixed(n), Dim::Fixed(k)) = (x.shape.0[2 + ax], w.shape.0[2 + ax]) else {
                    return Err(format!("`conv2d` spatial dims must be fixed, got {x}"));
                };
                let o =
                    conv_out_size(n, k, stride[ax], padding[ax], dilation[ax]).map_err(|m| format!("`conv2d` {m}"))?;
                out.push(Dim::Fixed(o));
            }
            Ok(Type { dtype: w.dtype, seq: x.seq, shape: Shape(out) })
        }
        Op::Pool2d { op, input, kernel, stride, padding } => {
            let x = ty(input);
            let name = pool_name(op);
            let r = x.shape.rank();
            if r < 2 {
                return Err(format!("`{name}` needs at least 2 dims, got {x}"));
            }
            if stride.contains(&0) || kernel.contains(&0) {
                return Err(format!("`{name}` kernel and stride must be at least 1"));
            }
            for ax in 0..2 {
                if padding[ax] > kernel[ax] / 2 {
                    return Err(format!(
                        "`{name}` padding {} is more than half the kernel {}",
                        padding[ax], kernel[ax]
                    ));
                }
            }
            let mut shape = x.shape.clone();
            for ax in 0..2 {
                let Dim::Fixed(n) = x.shape.0[r - 2 + ax] else {
                    return Err(format!("`{name}` spatial dims must be fixed, got {x}"));
                };
                let o =
                    conv_out_size(n, kernel[ax], stride[ax], padding[ax], 1).map_err(|m| format!("`{name}` {m}"))?;
                shape.0[r - 2 + ax] = Dim::Fixed(o);
            }
            let dtype = match op {
                PoolOp::Max => x.dtype,
                PoolOp::Avg | PoolOp::Sum if x.dtype == Dtype::Spike => module.float,
                PoolOp::Avg | PoolOp::Sum => x.dtype,
            };
            Ok(Type { shape, dtype, seq: x.seq })
        }
        Op::Reshape { arg, ref shape } => {
            let x = ty(arg);
            if x.shape.has_batch() != shape.has_batch()
                || (shape.has_batch() && (shape.0[0] != Dim::Batch || x.shape.0[0] != Dim::Batch))
                || shape.0.iter().filter(|d| **d == Dim::Batch).count() > 1
            {
                return Err(format!("`reshape` must keep the batch dimension first: {x} to {shape}"));
            }
            match (x.shape.checked_fixed_elements(), shape.checked_fixed_elements()) {
                (Some(a), Some(b)) if a == b => {}
                (Some(_), Some(_)) => return Err(format!("`reshape` changes the element count: {x} to {shape}")),
                _ => return Err(format!("`reshape` of {x} to {shape}: more than 2^64 - 1 elements per sample")),
            }
            Ok(Type { shape: shape.clone(), ..x.clone() })
        }
        Op::ReduceTime { op, arg } => {
            let x = ty(arg);
            if !x.seq {
                return Err(format!("`{}` needs a sequence value, got {x}", op.name()));
            }
            let dtype = match op {
                ReduceOp::Sum | ReduceOp::Mean if x.dtype == Dtype::Spike => module.float,
                _ => x.dtype,
            };
            Ok(Type { dtype, seq: false, shape: x.shape.clone() })
        }
        Op::MaxAll(arg) => {
            let x = ty(arg);
            if !x.dtype.is_float() {
                return Err(format!("`max_all` needs a float value, got {x}"));
            }
            Ok(Type::scalar(x.dtype))
        }
        Op::LogSoftmax { arg } => {
            let x = ty(arg);
            if !x.dtype.is_float() || x.shape.rank() == 0 {
                return Err(format!("`log_softmax` needs a float tensor of rank 1 or more, got {x}"));
            }
            Ok(x.clone())
        }
        Op::Uniform { ref shape, seq, .. } => Ok(Type { dtype: module.float, seq, shape: shape.clone() }),
        Op::Concat { ref args } => concat_type(module, args),
        Op::Narrow { arg, start, len } => {
            let x = ty(arg);
            let d = concat_axis(x).map_err(|m| format!("`narrow` {m}"))?;
            if len == 0 {
                return Err(format!("`narrow` of {x} needs a length of at least 1, got 0"));
            }
            if u64::from(start) + u64::from(len) > u64::from(d) {
                return Err(format!(
                    "`narrow` of {x}: the slice [{start}, {start} + {len}) is beyond dimension 1, which is {d}; \
                     start + len must be at most {d}"
                ));
            }
            let mut shape = x.shape.clone();
            shape.0[1] = Dim::Fixed(len);
            Ok(Type { shape, ..x.clone() })
        }
        Op::ChannelSum { arg, per_step, .. } => {
            let x = ty(arg);
            let name = op.mnemonic();
            let c = channel_axis(&x.shape).map(|(_, c)| c).map_err(|m| format!("`{name}` of {x}: {m}"))?;
            let dtype = if x.dtype == Dtype::Spike { module.float } else { x.dtype };
            let t = Type::new(dtype, Shape(vec![Dim::Fixed(c)]));
            Ok(if per_step { t.with_seq() } else { t })
        }
        Op::ChannelBroadcast { arg, ref shape, mean } => {
            let x = ty(arg);
            let name = if mean { "channel_broadcast_mean" } else { "channel_broadcast" };
            if x.shape.rank() != 1 || x.shape.has_batch() || !x.dtype.is_float() {
                return Err(format!("`{name}` needs a float [C] (fixed, or one per step), got {x}"));
            }
            let (_, c) = channel_axis(shape).map_err(|m| format!("`{name}` to {shape}: {m}"))?;
            if x.shape.0[0] != Dim::Fixed(c) {
                return Err(format!("`{name}` of {x} to {shape}: the channel dim of the shape must be the operand's"));
            }
            shape.checked_fixed_elements().ok_or_else(|| format!("`{name}` to {shape}: too many elements"))?;
            let t = Type::new(x.dtype, shape.clone());
            Ok(if x.seq { t.with_seq() } else { t })
        }
        Op::Transpose(a) => {
            let x = ty(a);
            if x.seq || x.shape.rank() != 2 || x.shape.has_batch() {
                return Err(format!("`transpose` needs a fixed [m, n] matrix, got {x}"));
            }
            Ok(Type { shape: Shape(vec![x.shape.0[1], x.shape.0[0]]), ..x.clone() })
        }
        Op::MatMulGradWeight { grad, input, kind } => {
            let (g, x) = (ty(grad), ty(input));
            if !g.dtype.is_float() {
                return Err(format!("`matmul_grad_weight` needs a float gradient, got {g}"));
            }
            if kind == MatMulKind::EventDriven && x.dtype != Dtype::Spike {
                return Err(format!("`spike_matmul_grad_weight` needs a spike input, got {x}"));
            }
            if x.dtype != Dtype::Spike && x.dtype != g.dtype {
                return Err(format!("`matmul_grad_weight` mixes {} and {}", g.dtype, x.dtype));
            }
            let r = g.shape.rank();
            if r == 0 || x.seq != g.seq || x.shape.rank() != r || x.shape.0[..r - 1] != g.shape.0[..r - 1] {
                return Err(format!("`matmul_grad_weight` needs equal leading dims, got {g} and {x}"));
            }
            let (o, i) = (g.shape.0[r - 1], x.shape.0[r - 1]);
            if o == Dim::Batch || i == Dim::Batch {
                return Err(format!("`matmul_grad_weight` needs fixed last dims, got {g} and {x}"));
            }
            Ok(Type::new(g.dtype, Shape(vec![o, i])))
        }
        Op::StdpUpdate { weight, z_post, t_pre, t_post, z_pre, ref rule } => {
            let w = ty(weight);
            if !w.dtype.is_float() || w.seq || w.shape.rank() != 2 || w.shape.has_batch() {
                return Err(format!("`stdp_update` needs a fixed float [out, in] weight, got {w}"));
            }
            let (o, i) = (w.shape.0[0], w.shape.0[1]);
            let lead = &ty(z_post).shape;
            let r = lead.rank();
            for (what, h, last) in
                [("z_post", z_post, o), ("t_pre", t_pre, i), ("t_post", t_post, o), ("z_pre", z_pre, i)]
            {
                let x = ty(h);
                let float_ok = if what.starts_with('z') {
                    x.dtype == Dtype::Spike || x.dtype == w.dtype
                } else {
                    x.dtype == w.dtype
                };
                if !float_ok {
                    return Err(format!("`stdp_update`'s {what} must be {} (a trace) or spikes, got {x}", w.dtype));
                }
                if x.seq
                    || r == 0
                    || x.shape.rank() != r
                    || x.shape.0[..r - 1] != lead.0[..r - 1]
                    || x.shape.0[r - 1] != last
                {
                    return Err(format!(
                        "`stdp_update`'s {what} must be [..., {last}] with the leading dims of z_post {lead}, not seq; got {x}"
                    ));
                }
            }
            let finite = [rule.eta_plus, rule.eta_minus, rule.w_min, rule.w_max, rule.mu].iter().all(|v| v.is_finite());
            if !finite {
                return Err("`stdp_update`'s constants must be finite".to_string());
            }
            Ok(w.clone())
        }
        Op::SumTo { arg, ref shape } => {
            let x = ty(arg);
            let full = x.full_dims(module.steps);
            if shape.rank() > full.len() || full[full.len() - shape.rank()..] != shape.0[..] {
                return Err(format!("`sum_to` cannot sum {x} to {shape}: the shape must end the operand's dims"));
            }
            let dtype = if x.dtype == Dtype::Spike { module.float } else { x.dtype };
            Ok(Type::new(dtype, shape.clone()))
        }
        Op::Conv2dGradInput { grad, weight, stride, padding, dilation, groups, input_size } => {
            let (g, w) = (ty(grad), ty(weight));
            if g.shape.rank() != 4 || !g.dtype.is_float() {
                return Err(format!("`conv2d_grad_input` gradient must be float [B, O, H', W'], got {g}"));
            }
            if w.seq || w.shape.rank() != 4 || w.shape.has_batch() || w.dtype != g.dtype {
                return Err(format!(
                    "`conv2d_grad_input` weight must be a fixed {} [O, C/groups, kh, kw], got {w}",
                    g.dtype
                ));
            }
            if g.shape.0[1] != w.shape.0[0] {
                return Err(format!("`conv2d_grad_input` gradient {g} has other channels than weight {w}"));
            }
            let c = mul_dim(w.shape.0[1], groups)
                .ok_or_else(|| format!("`conv2d_grad_input` weight {w} with {groups} groups has too many channels"))?;
            check_groups("conv2d_grad_input", groups, c, w.shape.0[0])?;
            let geom = ConvGeom { stride, padding, dilation };
            conv_check("conv2d_grad_input", &g.shape, &w.shape.0[2..], geom, input_size)?;
            let shape = Shape(vec![g.shape.0[0], c, Dim::Fixed(input_size[0]), Dim::Fixed(input_size[1])]);
            Ok(Type { dtype: g.dtype, seq: g.seq, shape })
        }
        Op::Conv2dGradWeight { grad, input, kernel, stride, padding, dilation, groups, kind } => {
            let (g, x) = (ty(grad), ty(input));
            if kind == MatMulKind::EventDriven && x.dtype != Dtype::Spike {
                return Err(format!("`spike_conv2d_grad_weight` needs a spike input, got {x}"));
            }
            if g.shape.rank() != 4 || !g.dtype.is_float() {
                return Err(format!("`conv2d_grad_weight` gradient must be float [B, O, H', W'], got {g}"));
            }
            if x.shape.rank() != 4 || x.seq != g.seq || x.shape.0[0] != g.shape.0[0] {
                return Err(format!("`conv2d_grad_weight` input must be [B, C, H, W] like {g}, got {x}"));
            }
            if x.dtype != Dtype::Spike && x.dtype != g.dtype {
                return Err(format!("`conv2d_grad_weight` mixes {} and {}", g.dtype, x.dtype));
            }
            let (Dim::Fixed(h), Dim::Fixed(w)) = (x.shape.0[2], x.shape.0[3]) else {
                return Err(format!("`conv2d_grad_weight` spatial dims must be fixed, got {x}"));
            };
            let k = [Dim::Fixed(kernel[0]), Dim::Fixed(kernel[1])];
            check_groups("conv2d_grad_weight", groups, x.shape.0[1], g.shape.0[1])?;
            conv_check("conv2d_grad_weight", &g.shape, &k, ConvGeom { stride, padding, dilation }, [h, w])?;
            let Dim::Fixed(c) = x.shape.0[1] else {
                return Err(format!("`conv2d_grad_weight` channels must be fixed, got {x}"));
            };
            Ok(Type::new(g.dtype, Shape(vec![g.shape.0[1], Dim::Fixed(c / groups), k[0], k[1]])))
        }
        Op::Conv2dGradBias { grad } => {
            let g = ty(grad);
            if g.shape.rank() != 4 || !g.dtype.is_float() {
                return Err(format!("`conv2d_grad_bias` gradient must be float [B, O, H', W'], got {g}"));
            }
            Ok(Type::new(g.dtype, Shape(vec![g.shape.0[1]])))
        }
        Op::Pool2dGrad { op, input, grad, kernel, stride, padding } => {
            let (x, g) = (ty(input), ty(grad));
            let pooled = result_type(module, &Op::Pool2d { op, input, kernel, stride, padding })?;
            if !g.dtype.is_float() || g.seq != pooled.seq || g.shape != pooled.shape {
                return Err(format!(
                    "`{}_grad` gradient must be float with the pooled shape {}, got {g}",
                    pool_name(op),
                    pooled.shape
                ));
            }
            Ok(x.with_dtype(g.dtype))
        }
        Op::ReduceTimeGrad { op, arg, grad } => {
            let (x, g) = (ty(arg), ty(grad));
            if !x.seq {
                return Err(format!("`{}` gradient needs a sequence operand, got {x}", op.name()));
            }
            if g.seq || g.shape != x.shape || !g.dtype.is_float() {
                return Err(format!("`{}` gradient must be float {}, got {g}", op.name(), x.shape));
            }
            Ok(x.with_dtype(g.dtype))
        }
        Op::LogSoftmaxGrad { out, grad } => {
            let (o, g) = (ty(out), ty(grad));
            if o != g || !o.dtype.is_float() || o.shape.rank() == 0 {
                return Err(format!("`log_softmax_grad` needs two equal float types, got {o} and {g}"));
            }
            Ok(o.clone())
        }
        Op::Fused(ref kernel) => {
            let (types, errors) = check_kernel(module, kernel);
            match (types, errors.first()) {
                (Some(types), None) => Ok(types.into_iter().next().expect("a checked kernel has an output")),
                (_, Some(e)) => Err(e.clone()),
                (None, None) => Err("invalid kernel".into()),
            }
        }
        Op::Extract { kernel, index } => {
            let Op::Fused(ref k) = module.nodes[kernel].op else {
                return Err(format!("`extract` needs a `fused` node, got `{}`", module.nodes[kernel].op.mnemonic()));
            };
            match check_kernel(module, k) {
                (Some(types), _) => types.get(index as usize).cloned().ok_or_else(|| {
                    format!("`extract` of output {index}, but kernel `{}` has {} output(s)", k.name, types.len())
                }),
                (None, errors) => Err(format!(
                    "`extract` of an invalid kernel: {}",
                    errors.first().map_or("invalid kernel", String::as_str)
                )),
            }
        }
    }
}

/// The size of the axis of `concat` and `narrow` (dim 1, right after the
/// batch dimension), or why `x` has none. The message reads after the op's
/// name.
pub fn concat_axis(x: &Type) -> Result<u32, String> {
    let dims = &x.shape.0;
    if dims.len() < 2 || dims[0] != Dim::Batch || dims[1..].contains(&Dim::Batch) {
        return Err(format!(
            "needs a value [B, d1, ...] with the batch dimension first and at least one dimension after it, got {x}"
        ));
    }
    match dims[1] {
        Dim::Fixed(n) => Ok(n),
        Dim::Batch => unreachable!("checked above: only dim 0 is the batch dimension"),
    }
}

/// The channel dim of `ChannelSum` / `ChannelBroadcast` (see
/// [`Op::ChannelSum`]): `(1, C)` for `[B, C, ...]`, `(0, C)` for a fixed
/// `[C, ...]`, or why the shape has none.
pub fn channel_axis(shape: &Shape) -> Result<(usize, u32), String> {
    let dims = &shape.0;
    let axis = usize::from(dims.first() == Some(&Dim::Batch));
    if dims.len() <= axis || dims[axis..].contains(&Dim::Batch) {
        return Err(
            "needs a shape [B, C, ...] with the batch dimension first and only there, or a fixed [C, ...]".into()
        );
    }
    match dims[axis] {
        Dim::Fixed(c) => Ok((axis, c)),
        Dim::Batch => unreachable!("checked above: no batch dimension from the axis on"),
    }
}

/// The typing rule of `concat` (see [`Op::Concat`]).
fn concat_type(module: &Module, args: &[crate::Handle<crate::Node>]) -> Result<Type, String> {
    let Some(&first) = args.first() else {
        return Err("`concat` needs at least one operand".into());
    };
    let a = &module.nodes[first].ty;
    let mut total = u64::from(concat_axis(a).map_err(|m| format!("`concat` operand 0 {m}"))?);
    for (i, &h) in args.iter().enumerate().skip(1) {
        let b = &module.nodes[h].ty;
        let d = concat_axis(b).map_err(|m| format!("`concat` operand {i} {m}"))?;
        if b.dtype != a.dtype {
            return Err(format!(
                "`concat` operand {i} is {b} but operand 0 is {a}: every operand needs the same dtype (cast one)"
            ));
        }
        if b.seq != a.seq {
            return Err(format!(
                "`concat` operand {i} is {b} but operand 0 is {a}: every operand needs the same time flag"
            ));
        }
        if b.shape.rank() != a.shape.rank() || b.shape.0[2..] != a.shape.0[2..] {
            return Err(format!(
                "`concat` operand {i} is {b} but operand 0 is {a}: every dimension but dimension 1 must be equal"
            ));
        }
        total += u64::from(d);
    }
    let total = u32::try_from(total).map_err(|_| {
        format!("`concat` of {} operands: dimension 1 would be {total}, more than 2^32 - 1", args.len())
    })?;
    let mut shape = a.shape.clone();
    shape.0[1] = Dim::Fixed(total);
    Ok(Type { shape, ..a.clone() })
}

/// A convolution's per-axis attributes.
#[derive(Clone, Copy)]
struct ConvGeom {
    stride: [u32; 2],
    padding: [u32; 2],
    dilation: [u32; 2],
}

/// Checks that a convolution with `kernel` and `geom` maps an input of
/// `input_size` to the spatial dims of `grad` (`[.., O, H', W']`).
fn conv_check(what: &str, grad: &Shape, kernel: &[Dim], geom: ConvGeom, input_size: [u32; 2]) -> Result<(), String> {
    let ConvGeom { stride, padding, dilation } = geom;
    if stride.contains(&0) {
        return Err(format!("`{what}` stride must be at least 1"));
    }
    for ax in 0..2 {
        let Dim::Fixed(k) = kernel[ax] else {
            return Err(format!("`{what}` kernel dims must be fixed"));
        };
        let o = conv_out_size(input_size[ax], k, stride[ax], padding[ax], dilation[ax])
            .map_err(|m| format!("`{what}` {m}"))?;
        if grad.0[2 + ax] != Dim::Fixed(o) {
            return Err(format!(
                "`{what}`: an input of {:?} with kernel {k}, stride {}, padding {} and dilation {} does not give {grad}",
                input_size, stride[ax], padding[ax], dilation[ax]
            ));
        }
    }
    Ok(())
}

/// Checks `groups`: at least 1, dividing the input channels `c` and the
/// output channels `o`.
fn check_groups(what: &str, groups: u32, c: Dim, o: Dim) -> Result<(), String> {
    if groups == 0 {
        return Err(format!("`{what}` groups must be at least 1"));
    }
    for (d, name) in [(c, "input"), (o, "output")] {
        match d {
            Dim::Fixed(n) if n % groups == 0 => {}
            Dim::Fixed(n) => {
                return Err(format!("`{what}` groups {groups} does not divide the {n} {name} channels"));
            }
            Dim::Batch => return Err(format!("`{what}` {name} channels must be fixed")),
        }
    }
    Ok(())
}

/// `d * groups`, when it is a fixed dimension that fits in 32 bits.
fn mul_dim(d: Dim, groups: u32) -> Option<Dim> {
    match d {
        Dim::Fixed(n) => n.checked_mul(groups).map(Dim::Fixed),
        Dim::Batch => None,
    }
}

/// The mnemonic of a pooling op.
fn pool_name(op: PoolOp) -> &'static str {
    match op {
        PoolOp::Max => "max_pool2d",
        PoolOp::Avg => "avg_pool2d",
        PoolOp::Sum => "sum_pool2d",
    }
}

/// Why [`conv_out_size`] has no answer. Its `Display` reads after the
/// op's name (``"`conv2d` padding 7 makes ..."``); [`field`](Self::field)
/// and [`detail`](Self::detail) let a frontend name its own field instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConvSizeError {
    /// A stride of 0.
    ZeroStride,
    /// A dilation of 0.
    ZeroDilation,
    /// A kernel of size 0.
    ZeroKernel,
    /// `n + 2 padding` does not fit in 32 bits.
    PaddingOverflow { n: u32, padding: u32, padded: u64 },
    /// The dilated kernel `dilation (k - 1) + 1` spans more than the padded
    /// input.
    KernelTooLarge { k: u32, dilation: u32, span: u64, padded: u64 },
}

impl ConvSizeError {
    /// The attribute at fault: `stride`, `dilation`, `padding` or `kernel`.
    pub fn field(&self) -> &'static str {
        match self {
            ConvSizeError::ZeroStride => "stride",
            ConvSizeError::ZeroDilation => "dilation",
            ConvSizeError::ZeroKernel | ConvSizeError::KernelTooLarge { .. } => "kernel",
            ConvSizeError::PaddingOverflow { .. } => "padding",
        }
    }

    /// The message without the attribute's name in front.
    pub fn detail(&self) -> String {
        match *self {
            ConvSizeError::ZeroStride | ConvSizeError::ZeroDilation | ConvSizeError::ZeroKernel => {
                "must be at least 1".into()
            }
            ConvSizeError::PaddingOverflow { n, padding, padded } => {
                format!("{padding} makes the padded input {padded} wide ({n} + 2 * {padding}), more than 2^32 - 1")
            }
            ConvSizeError::KernelTooLarge { k, dilation: 1, padded, .. } => {
                format!("{k} is larger than the padded input {padded}")
            }
            ConvSizeError::KernelTooLarge { k, dilation, span, padded } => {
                format!("{k} with dilation {dilation} spans {span}, more than the padded input {padded}")
            }
        }
    }
}

impl std::fmt::Display for ConvSizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field(), self.detail())
    }
}

/// The output size of a convolution along one axis,
/// `(n + 2 padding - dilation (k - 1) - 1) / stride + 1`, computed without
/// overflow (torch's formula; pooling uses `dilation` 1). The padded input
/// `n + 2 padding` must fit in 32 bits, as every dimension does; kernel,
/// stride and dilation must be at least 1. (The result is then at most
/// `n + 2 padding`, so it fits too.)
pub fn conv_out_size(n: u32, k: u32, stride: u32, padding: u32, dilation: u32) -> Result<u32, ConvSizeError> {
    if stride == 0 {
        return Err(ConvSizeError::ZeroStride);
    }
    if dilation == 0 {
        return Err(ConvSizeError::ZeroDilation);
    }
    if k == 0 {
        return Err(ConvSizeError::ZeroKernel);
    }
    let padded = u64::from(n) + 2 * u64::from(padding);
    if padded > u64::from(u32::MAX) {
        return Err(ConvSizeError::PaddingOverflow { n, padding, padded });
    }
    let span = u64::from(dilation) * (u64::from(k) - 1) + 1;
    if padded < span {
        return Err(ConvSizeError::KernelTooLarge { k, dilation, span, padded });
    }
    let out = (padded - span) / u64::from(stride) + 1;
    Ok(u32::try_from(out).expect("at most the padded input, which fits in 32 bits"))
}

/// The dtype rule of `Unary`: floats keep their dtype; `relu`, `neg` and
/// `abs` also take spikes and give the module's float.
pub fn unary_dtype(float: Dtype, op: UnaryOp, a: Dtype) -> Result<Dtype, String> {
    if a == Dtype::Spike {
        if matches!(op, UnaryOp::Relu | UnaryOp::Neg | UnaryOp::Abs) {
            return Ok(float);
        }
        return Err(format!("`{}` needs a float operand", op.name()));
    }
    Ok(a)
}

/// The dtype rule of `Binary`: equal floats; a spike with a float gives the
/// float; two spikes give a spike for `mul`/`max`/`min` only.
pub fn binary_dtype(op: BinaryOp, a: Dtype, b: Dtype) -> Result<Dtype, String> {
    match (a, b) {
        (Dtype::Spike, Dtype::Spike) if op.keeps_spikes() => Ok(Dtype::Spike),
        (Dtype::Spike, Dtype::Spike) => Err(format!("`{}` of two spikes is not defined; cast one to float", op.name())),
        (Dtype::Spike, f) | (f, Dtype::Spike) => Ok(f),
        (x, y) if x == y => Ok(x),
        (x, y) => Err(format!("`{}` mixes {x} and {y}", op.name())),
    }
}

/// The dtype rule of `Compare`: equal dtypes, or a spike with anything;
/// the result is a spike.
pub fn compare_dtype(op: CompareOp, a: Dtype, b: Dtype) -> Result<Dtype, String> {
    if a != b && !(a == Dtype::Spike || b == Dtype::Spike) {
        return Err(format!("`{}` mixes {a} and {b}", op.name()));
    }
    Ok(Dtype::Spike)
}

/// The dtype rule of `Select`: a spike condition; equal branch dtypes, or a
/// spike with a float gives the float.
pub fn select_dtype(cond: Dtype, a: Dtype, b: Dtype) -> Result<Dtype, String> {
    if cond != Dtype::Spike {
        return Err("`select` needs a spike condition".into());
    }
    match (a, b) {
        (x, y) if x == y => Ok(x),
        (Dtype::Spike, f) | (f, Dtype::Spike) => Ok(f),
        (x, y) => Err(format!("`select` mixes {x} and {y}")),
    }
}

/// The dtype rule of `Threshold`: a float gives a spike.
pub fn threshold_dtype(a: Dtype) -> Result<Dtype, String> {
    if !a.is_float() {
        return Err("`threshold` needs a float operand".into());
    }
    Ok(Dtype::Spike)
}

/// The dtype rule of `Cast`: anything to a float; only a spike to a spike.
pub fn cast_dtype(a: Dtype, to: Dtype) -> Result<Dtype, String> {
    if to == Dtype::Spike && a != Dtype::Spike {
        return Err("cast to spike is not allowed; use `threshold` or a comparison".into());
    }
    Ok(to)
}

/// The dtype of every instruction of a kernel body whose inputs have the
/// dtypes `inputs`, in a module whose float is `float`. Collects every
/// problem, each naming its instruction (`k3: ...`); the dtypes are returned
/// only if there is none.
pub fn kernel_dtypes(float: Dtype, inputs: &[Dtype], body: &[KernelInst]) -> (Option<Vec<Dtype>>, Vec<String>) {
    let mut errors = Vec::new();
    // A bad instruction gets `None`; instructions that use it are not
    // checked further (the first error explains them).
    let mut dtypes: Vec<Option<Dtype>> = Vec::with_capacity(body.len());
    for (k, inst) in body.iter().enumerate() {
        let mut bad_arg = false;
        let mut args = Vec::new();
        for a in inst.args() {
            match dtypes.get(a as usize) {
                Some(Some(d)) if (a as usize) < k => args.push(*d),
                Some(None) => bad_arg = true,
                _ => {
                    errors.push(format!("k{k}: operand k{a} is not an earlier instruction"));
                    bad_arg = true;
                }
            }
        }
        if bad_arg {
            dtypes.push(None);
            continue;
        }
        let res = match *inst {
            KernelInst::Input(i) => inputs
                .get(i as usize)
                .copied()
                .ok_or_else(|| format!("input {i} does not exist (the kernel has {})", inputs.len())),
            KernelInst::Const { value, dtype } => {
                if value.is_nan() {
                    Err("constant is NaN".into())
                } else if dtype == Dtype::Spike && value != 0.0 && value != 1.0 {
                    Err(format!("a spike constant must be 0 or 1, not {value}"))
                } else if dtype.is_float() && dtype != float {
                    Err(format!("constant of type {dtype} in a {float} module"))
                } else {
                    Ok(dtype)
                }
            }
            KernelInst::Unary { op, .. } => unary_dtype(float, op, args[0]),
            KernelInst::Binary { op, .. } => binary_dtype(op, args[0], args[1]),
            KernelInst::Compare { op, .. } => compare_dtype(op, args[0], args[1]),
            KernelInst::Select { .. } => select_dtype(args[0], args[1], args[2]),
            KernelInst::Threshold { .. } => threshold_dtype(args[0]),
            KernelInst::StopGradient(_) => Ok(args[0]),
            KernelInst::Cast { dtype, .. } => cast_dtype(args[0], dtype),
        };
        match res {
            Ok(d) => dtypes.push(Some(d)),
            Err(m) => {
                errors.push(format!("k{k} (`{}`): {m}", inst.mnemonic()));
                dtypes.push(None);
            }
        }
    }
    if errors.is_empty() {
        (Some(dtypes.into_iter().map(|d| d.expect("no errors")).collect()), errors)
    } else {
        (None, errors)
    }
}

/// The kernel shape of a `Fused` node's inputs: the broadcast of all their
/// types (scalar for a kernel without inputs), or why they don't fit.
pub fn kernel_shape(module: &Module, inputs: &[crate::Handle<crate::Node>]) -> Result<(bool, Shape), String> {
    let mut res = Type::scalar(module.float);
    for &h in inputs {
        let t = &module.nodes[h].ty;
        let (seq, shape) = broadcast(module.steps, &res, t).ok_or_else(|| {
            format!("kernel input %{} ({t}) does not broadcast with the other inputs ({res})", h.index())
        })?;
        res = Type { seq, shape, ..res };
    }
    Ok((res.seq, res.shape))
}

/// Checks a kernel: its inputs broadcast to one kernel shape, its body is
/// well typed and refers only to earlier instructions, its outputs exist.
/// Returns the type of every output (if there is no problem) and every
/// problem found. Assumes the input handles are in range.
pub fn check_kernel(module: &Module, kernel: &FusedKernel) -> (Option<Vec<Type>>, Vec<String>) {
    let mut errors = Vec::new();
    let shape = kernel_shape(module, &kernel.inputs).map_err(|e| errors.push(e)).ok();
    let input_dtypes: Vec<Dtype> = kernel.inputs.iter().map(|&h| module.nodes[h].ty.dtype).collect();
    let (dtypes, body_errors) = kernel_dtypes(module.float, &input_dtypes, &kernel.body);
    errors.extend(body_errors);
    if kernel.outputs.is_empty() {
        errors.push("a kernel needs at least one output".into());
    }
    for &o in &kernel.outputs {
        if o as usize >= kernel.body.len() {
            errors.push(format!("output k{o} does not exist (the body has {} instructions)", kernel.body.len()));
        }
    }
    if !errors.is_empty() {
        return (None, errors);
    }
    let ((seq, shape), dtypes) = (shape.expect("no errors"), dtypes.expect("no errors"));
    let types = kernel.outputs.iter().map(|&o| Type { dtype: dtypes[o as usize], seq, shape: shape.clone() }).collect();
    (Some(types), errors)
}

/// Broadcasts two types' full shapes (time first): equal, or one is a
/// suffix of the other and holds no batch dimension. Returns the result's
/// `(seq, shape)`.
pub fn broadcast(steps: u32, a: &Type, b: &Type) -> Option<(bool, Shape)> {
    let (fa, fb) = (a.full_dims(steps), b.full_dims(steps));
    if fa == fb && a.seq == b.seq {
        return Some((a.seq, a.shape.clone()));
    }
    // The shorter operand is static (no time), holds no batch dimension,
    // and its dims are a suffix of the longer one's.
    let suffix = |fl: &[Dim], short: &Type, fs: &[Dim]| {
        !short.seq && !short.shape.has_batch() && fs.len() <= fl.len() && fl[fl.len() - fs.len()..] == *fs
    };
    if suffix(&fa, b, &fb) {
        return Some((a.seq, a.shape.clone()));
    }
    if suffix(&fb, a, &fa) {
        return Some((b.seq, b.shape.clone()));
    }
    None
}

/// The binary ops that are defined for a pair of dtypes (for documentation
/// and tests).
pub fn binary_defined(op: BinaryOp, a: Dtype, b: Dtype) -> bool {
    match (a, b) {
        (Dtype::Spike, Dtype::Spike) => op.keeps_spikes(),
        (Dtype::Spike, _) | (_, Dtype::Spike) => true,
        (x, y) => x == y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Builder, Handle, Node, Param, ParamInit};

    #[test]
    fn conv_out_size_is_checked() {
        assert_eq!(conv_out_size(28, 5, 1, 0, 1), Ok(24));
        assert_eq!(conv_out_size(12, 3, 2, 1, 1), Ok(6));
        assert_eq!(conv_out_size(u32::MAX, 1, 1, 0, 1), Ok(u32::MAX));
        assert_eq!(conv_out_size(u32::MAX - 2, 1, 1, 1, 1), Ok(u32::MAX));
        // torch: floor((H + 2p - d(k-1) - 1)/s) + 1.
        assert_eq!(conv_out_size(10, 3, 1, 2, 2), Ok(10));
        assert_eq!(conv_out_size(9, 5, 2, 4, 3), Ok(3));
        assert_eq!(conv_out_size(u32::MAX, 2, 1, 0, u32::MAX - 1), Ok(1));
        // The largest span: no overflow in 64 bits.
        let e = conv_out_size(5, u32::MAX, 1, 0, u32::MAX).unwrap_err().to_string();
        assert!(e.contains("kernel 4294967295 with dilation 4294967295 spans 18446744060824649731"), "{e}");
        // A zero kernel, stride or dilation (only reachable through hand-made IR).
        assert!(conv_out_size(u32::MAX, 0, 1, 0, 1).unwrap_err().to_string().contains("kernel must be at least 1"));
        assert!(conv_out_size(7, 3, 1, 0, 0).unwrap_err().to_string().contains("dilation must be at least 1"));
        let e = conv_out_size(5, 3, 1, u32::MAX, 1).unwrap_err().to_string();
        assert!(e.contains("padding 4294967295 makes the padded input 8589934595 wide"), "{e}");
        assert!(e.contains("(5 + 2 * 4294967295), more than 2^32 - 1"), "{e}");
        assert!(conv_out_size(u32::MAX - 1, 1, 1, 1, 1).is_err());
        assert!(
            conv_out_size(2, 5, 1, 1, 1)
                .unwrap_err()
                .to_string()
                .contains("kernel 5 is larger than the padded input 4")
        );
        assert!(conv_out_size(2, 1, 0, 0, 1).is_err());
    }

    /// A module with a conv input `[B, 1, n, n]` and a weight `[1, 1, k, k]`
    /// in a sequence region, and the two handles.
    fn conv_module(n: u32, k: u32) -> (Builder, Handle<Node>, Handle<Node>) {
        let mut b = Builder::new("conv", 1, 1e-3, Dtype::F32);
        let x = b.input("x", Type::new(Dtype::F32, Shape::batched(&[1, n, n])));
        let w = b.param(Param {
            name: "w".into(),
            dtype: Dtype::F32,
            shape: Shape::fixed(&[1, 1, k, k]),
            trainable: true,
            init: ParamInit::Zeros,
        });
        b.begin_seq();
        let x = b.emit(Op::Input(x)).unwrap();
        let w = b.emit(Op::Param(w)).unwrap();
        (b, x, w)
    }

    #[test]
    fn an_overflowing_convolution_is_a_type_error() {
        let (mut b, x, w) = conv_module(5, 3);
        let conv = |padding, stride| Op::Conv2d {
            input: x,
            weight: w,
            bias: None,
            stride: [stride, stride],
            padding: [padding, padding],
            dilation: [1, 1],
            groups: 1,
            kind: MatMulKind::Dense,
        };
        let e = b.emit(conv(u32::MAX, 1)).unwrap_err().to_string();
        assert!(e.contains("`conv2d` padding 4294967295 makes the padded input 8589934595 wide"), "{e}");
        // The largest padding that fits.
        let ok = b.emit(conv((u32::MAX - 5) / 2, u32::MAX)).unwrap();
        assert_eq!(b.ty(ok).shape, Shape::batched(&[1, 1, 1]));
        let grad = b.emit(conv(1, 1)).unwrap();
        let e = b
            .emit(Op::Conv2dGradInput {
                grad,
                weight: w,
                stride: [1, 1],
                padding: [u32::MAX, 1],
                dilation: [1, 1],
                groups: 1,
                input_size: [5, 5],
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("`conv2d_grad_input` padding 4294967295"), "{e}");
        let e = b
            .emit(Op::Conv2dGradWeight {
                grad,
                input: x,
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, u32::MAX - 1],
                dilation: [1, 1],
                groups: 1,
                kind: MatMulKind::Dense,
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("`conv2d_grad_weight` padding 4294967294"), "{e}");
    }

    #[test]
    fn a_reshape_of_more_than_2_64_elements_is_a_type_error() {
        let mut b = Builder::new("reshape", 1, 1e-3, Dtype::F32);
        let huge = [u32::MAX, u32::MAX, u32::MAX];
        let x = b.input("x", Type::new(Dtype::F32, Shape::batched(&huge)));
        b.begin_seq();
        let x = b.emit(Op::Input(x)).unwrap();
        // Both counts saturate; they used to compare equal.
        let e = b.emit(Op::Reshape { arg: x, shape: Shape::batched(&[u32::MAX, u32::MAX, u32::MAX, 2]) });
        let e = e.unwrap_err().to_string();
        assert!(e.contains("more than 2^64 - 1 elements per sample"), "{e}");
    }
}
