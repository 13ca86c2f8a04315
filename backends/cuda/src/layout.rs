//! Kernels of the layout ops, which move elements without arithmetic:
//! `concat` and `narrow` along dim 1 of the shape (the dim after `B`, and
//! after `T, B` for a `seq` value).
//!
//! | op | kernel |
//! |---|---|
//! | `concat` | one kernel per operand: a thread per element of the operand copies it to its place in the result (row `r`, after the blocks of the operands before it) |
//! | `narrow` | a thread per element of the result copies it from its place in the operand |
//!
//! BatchNorm's `channel_sum` and `channel_broadcast` are in `channel.rs`,
//! every other heavy op in `ops.rs`; [`heavy`] dispatches.

use snnc_ir::{Dim, Handle, Node, Op};

use crate::CudaError;
use crate::channel;
use crate::manifest::Count;
use crate::ops::{self, HeavyKernel, Hk, divmod, fixed};
use crate::plan::{Mode, Plan, count_dims};

/// The kernels of heavy node `h` (in a region run in `mode`), named
/// `prefix_*`: the layout ops here, the channel ops in `channel.rs`, the
/// others in `ops.rs`.
pub(crate) fn heavy(plan: &Plan<'_>, h: Handle<Node>, mode: Mode, prefix: &str) -> Result<Vec<HeavyKernel>, CudaError> {
    let m = plan.m;
    let dims = |x: Handle<Node>| m.nodes[x].ty.full_dims(m.steps);
    let node = &m.nodes[h];
    // The axis: after the batch dim, and after time for a `seq` value.
    let axis = usize::from(node.ty.seq) + 1;
    let ctx = |what: &str| format!("{} ({what})", snnc_ir::layer::describe(m, h));
    match node.op {
        Op::Concat { ref args } => {
            let od = dims(h);
            let rows = count_dims(&od[..axis]);
            let out_block = block(&od[axis..], &ctx("concat"))?;
            let mut kernels = Vec::with_capacity(args.len());
            let mut offset = 0u64;
            for (i, &a) in args.iter().enumerate() {
                let blk = block(&dims(a)[axis..], &ctx("concat"))?;
                let name = format!("{prefix}_concat{i}");
                kernels.push(concat_part(plan, h, mode, name, a, rows, blk, out_block, offset)?);
                offset += blk;
            }
            Ok(kernels)
        }
        Op::Narrow { arg, start, len } => {
            let xd = dims(arg);
            let rows = count_dims(&xd[..axis]);
            let inner = block(&xd[axis + 1..], &ctx("narrow"))?;
            let in_block = block(&xd[axis..], &ctx("narrow"))?;
            let from = u64::from(start) * inner;
            let out_block = u64::from(len) * inner;
            Ok(vec![narrow(plan, h, mode, format!("{prefix}_narrow"), arg, rows, in_block, from, out_block)?])
        }
        Op::ChannelSum { .. } | Op::ChannelBroadcast { .. } => Ok(vec![channel::write(plan, h, mode, prefix)?]),
        _ => ops::write(plan, h, mode, prefix),
    }
}

/// The product of fixed dims.
fn block(dims: &[Dim], what: &str) -> Result<u64, CudaError> {
    dims.iter().try_fold(1u64, |acc, &d| Ok(acc.saturating_mul(fixed(d, what)?)))
}

/// Copies operand `a` (`rows` rows of `blk`) into the result (`rows` rows
/// of `out_block`) at `offset` within each row.
#[allow(clippy::too_many_arguments)]
fn concat_part(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    a: Handle<Node>,
    rows: Count,
    blk: u64,
    out_block: u64,
    offset: u64,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(a)?;
    let y = hk.output(h)?;
    let threads = rows.times(blk);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    // e = r * blk + c goes to r * out_block + offset + c.
    let (r, c) = divmod(k, &e, blk);
    let v = k.ld(&x, &e);
    let oc = k.r();
    k.ins(format!("add.u32 {oc}, {c}, {offset}"));
    let yi = k.mad(&r, out_block, &oc);
    k.st(&y, &yi, &v);
    let what = format!("concat: [{}, {blk}] into columns {offset}.. of [{}, {out_block}]", rows.show(), rows.show());
    Ok(hk.done(what, threads))
}

/// The result (`rows` rows of `out_block`) from the operand (`rows` rows
/// of `in_block`) at `from` within each row.
#[allow(clippy::too_many_arguments)]
fn narrow(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    arg: Handle<Node>,
    rows: Count,
    in_block: u64,
    from: u64,
    out_block: u64,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(arg)?;
    let y = hk.output(h)?;
    let threads = rows.times(out_block);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    // e = r * out_block + c comes from r * in_block + from + c.
    let (r, c) = divmod(k, &e, out_block);
    let ic = k.r();
    k.ins(format!("add.u32 {ic}, {c}, {from}"));
    let xi = k.mad(&r, in_block, &ic);
    let v = k.ld(&x, &xi);
    k.st(&y, &e, &v);
    let what = format!("narrow: columns {from}..{} of [{}, {in_block}]", from + out_block, rows.show());
    Ok(hk.done(what, threads))
}
