//! Kernels of BatchNorm's channel ops: `channel_sum` (`channel_mean`)
//! reduces to a fixed `[C]` along the channel dim, `channel_broadcast`
//! (`channel_broadcast_mean`) repeats a `[C]` along every other dim (see
//! `Op::ChannelSum`, `Op::ChannelBroadcast` and `docs/batchnorm.md`).
//!
//! Both view their value as `[lead, C, inner]`: the channel dim is dim 1
//! after the batch dim (and after time for a `seq` operand), or dim 0 of a
//! fixed shape (`snnc_ir::typing::channel_axis`); `lead` may hold the batch
//! size, `inner` is fixed.
//!
//! | op | kernel |
//! |---|---|
//! | `channel_sum` / `channel_mean` | one thread per channel `c`: from `+0`, adds `x[l, c, i]` for `l = 0..lead`, and within each `l` for `i = 0..inner`, in order (the interpreter's loop, so its bits); the mean divides the sum once by `lead * inner` (rounded to f32, as the interpreter's `F::from_f64`) |
//! | `channel_sum_per_step` / `channel_mean_per_step` | one thread per step and channel `(t, c)`: the same loop over step `t`'s rows (`[T, lead, C, inner]`; of an operand without time, over all of it for every `t`), the mean dividing by one step's count |
//! | `channel_broadcast` / `_mean` | one thread per result element `[l, c, i]`: `a[c]`, divided by `lead * inner` for the mean; a `seq` result (`[T, lead, C, inner]`) reads `a[t, c]` of a `[T, C]` operand |
//!
//! The sum is sequential per channel, not a tree: a parallel reduction
//! would be faster for big batches but would not give the interpreter's
//! bits. BatchNorm's channels are few, its statistics cheap next to the
//! convolution or product before it.

use snnc_ir::{Dim, Handle, Node, Op};

use crate::CudaError;
use crate::manifest::Count;
use crate::ops::{HeavyKernel, Hk, fixed, for_range, zero_acc};
use crate::plan::{Mode, Plan, count_dims};
use crate::ptx::Kb;

/// The kernel of the channel op `h` (`channel_sum` or
/// `channel_broadcast`, in a region run in `mode`), named `prefix_*`.
pub(crate) fn write(plan: &Plan<'_>, h: Handle<Node>, mode: Mode, prefix: &str) -> Result<HeavyKernel, CudaError> {
    let m = plan.m;
    let node = &m.nodes[h];
    let what = format!("{} ({})", snnc_ir::layer::describe(m, h), node.op.mnemonic());
    let name = format!("{prefix}_{}", node.op.mnemonic());
    match node.op {
        Op::ChannelSum { arg, mean, per_step } => {
            let x = &m.nodes[arg].ty;
            let axis = channel_axis(&x.shape, &what)? + usize::from(x.seq);
            let dims = x.full_dims(m.steps);
            // Per step: time apart from the lead, one result row per step
            // (of a value without time, the same row at every step).
            let apart = per_step && x.seq;
            let steps = if per_step { u64::from(m.steps) } else { 1 };
            let dims = if apart { &dims[1..] } else { &dims[..] };
            let (lead, c, inner) = split(dims, axis - usize::from(apart), &what)?;
            let s = Sum { steps, lead, c, inner, mean };
            channel_sum(plan, h, mode, name, arg, s, per_step && !x.seq)
        }
        Op::ChannelBroadcast { arg, ref shape, mean } => {
            let axis = channel_axis(shape, &what)?;
            let (lead, c, inner) = split(&node.ty.shape.0, axis, &what)?;
            // A `seq` result repeats each step of a `[T, C]` operand.
            let steps = if node.ty.seq { u64::from(m.steps) } else { 1 };
            channel_broadcast(plan, h, mode, name, arg, Sum { steps, lead, c, inner, mean })
        }
        _ => Err(CudaError::Invalid(format!("{what} is not a channel op"))),
    }
}

/// The index of the channel dim of `shape` (validated IR has one).
fn channel_axis(shape: &snnc_ir::Shape, what: &str) -> Result<usize, CudaError> {
    snnc_ir::typing::channel_axis(shape).map(|(axis, _)| axis).map_err(|e| CudaError::Invalid(format!("{what}: {e}")))
}

/// `dims` as `[lead, C, inner]` around the channel dim `axis`.
fn split(dims: &[Dim], axis: usize, what: &str) -> Result<(Count, u64, u64), CudaError> {
    let c = fixed(*dims.get(axis).ok_or_else(|| CudaError::Invalid(format!("{what}: no channel dim")))?, what)?;
    let inner =
        dims[axis + 1..].iter().try_fold(1u64, |acc, &d| Ok::<_, CudaError>(acc.saturating_mul(fixed(d, what)?)))?;
    Ok((count_dims(&dims[..axis]), c, inner))
}

/// `v / (lead * inner)` as the interpreter divides: by the count rounded
/// to f32 (exact below 2^24), `div.rn`.
fn divide_by_count(k: &mut Kb, v: &str, n: Count) -> String {
    let nr = k.count(n);
    let nf = k.f();
    k.ins(format!("cvt.rn.f32.u32 {nf}, {nr}"));
    let q = k.f();
    k.ins(format!("div.rn.f32 {q}, {v}, {nf}"));
    q
}

/// The geometry of a channel op: `[steps, lead, c, inner]` (`steps` 1
/// unless per step), and whether it is a mean.
#[derive(Clone, Copy)]
struct Sum {
    steps: u64,
    lead: Count,
    c: u64,
    inner: u64,
    mean: bool,
}

fn channel_sum(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    arg: Handle<Node>,
    s: Sum,
    repeat: bool,
) -> Result<HeavyKernel, CudaError> {
    let Sum { steps, lead, c, inner, mean } = s;
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(arg)?;
    let y = hk.output(h)?;
    let threads = Count::fixed(steps.saturating_mul(c));
    let e = hk.thread(threads);
    let k = &mut hk.k;
    let nl = k.count(lead);
    // Thread `e` is channel `ch` of step `t`: its rows start at row
    // `t * lead * c + ch` (`e` itself when there is one step; `ch` when
    // every step sums the same value).
    let first = if steps == 1 {
        e.clone()
    } else if repeat {
        let ch = k.r();
        k.ins(format!("rem.u32 {ch}, {e}, {c}"));
        ch
    } else {
        let (t, ch, tl) = (k.r(), k.r(), k.r());
        k.ins(format!("div.u32 {t}, {e}, {c}"));
        k.ins(format!("rem.u32 {ch}, {e}, {c}"));
        k.ins(format!("mul.lo.u32 {tl}, {t}, {nl}"));
        k.mad(&tl, c, &ch)
    };
    let acc = zero_acc(k);
    // Row `l * c + first` of `inner` elements, rows in `l` order.
    for_range(k, "0", &nl, |k, l| {
        let row = k.mad(l, c, &first);
        if inner == 1 {
            let v = k.ld(&x, &row);
            k.ins(format!("add.rn.f32 {acc}, {acc}, {v}"));
            return Ok(());
        }
        let base = k.r();
        k.ins(format!("mul.lo.u32 {base}, {row}, {inner}"));
        for_range(k, "0", &inner.to_string(), |k, i| {
            let xi = k.r();
            k.ins(format!("add.u32 {xi}, {base}, {i}"));
            let v = k.ld(&x, &xi);
            k.ins(format!("add.rn.f32 {acc}, {acc}, {v}"));
            Ok(())
        })
    })?;
    let out = if mean { divide_by_count(k, &acc, lead.times(inner)) } else { acc };
    k.st(&y, &e, &out);
    let op = if mean { "channel_mean" } else { "channel_sum" };
    let what = if steps == 1 {
        format!("{op}: [{c}] of [{}, {c}, {inner}], in order per channel", lead.show())
    } else {
        format!(
            "{op}_per_step: [{steps}, {c}] of [{steps}, {}, {c}, {inner}], in order per step and channel",
            lead.show()
        )
    };
    Ok(hk.done(what, threads))
}

fn channel_broadcast(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    arg: Handle<Node>,
    s: Sum,
) -> Result<HeavyKernel, CudaError> {
    let Sum { steps, lead, c, inner, mean } = s;
    let mut hk = Hk::new(plan, mode, name);
    let a = hk.input(arg)?;
    let y = hk.output(h)?;
    let threads = lead.times(c.saturating_mul(inner)).times(steps);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    // e = ((t * lead + l) * c + ch) * inner + i reads a[t * c + ch].
    let row = if inner == 1 {
        e.clone()
    } else {
        let row = k.r();
        k.ins(format!("div.u32 {row}, {e}, {inner}"));
        row
    };
    let ch = k.r();
    k.ins(format!("rem.u32 {ch}, {row}, {c}"));
    let at = if steps == 1 {
        ch
    } else {
        let nl = k.count(lead);
        let (per, t) = (k.r(), k.r());
        k.ins(format!("mul.lo.u32 {per}, {nl}, {c}"));
        k.ins(format!("div.u32 {t}, {row}, {per}"));
        k.mad(&t, c, &ch)
    };
    let v = k.ld(&a, &at);
    let out = if mean { divide_by_count(k, &v, lead.times(inner)) } else { v };
    k.st(&y, &e, &out);
    let op = if mean { "channel_broadcast_mean" } else { "channel_broadcast" };
    let what = if steps == 1 {
        format!("{op}: [{c}] to [{}, {c}, {inner}]", lead.show())
    } else {
        format!("{op}: [{steps}, {c}] to [{steps}, {}, {c}, {inner}], per step", lead.show())
    };
    Ok(hk.done(what, threads))
}
