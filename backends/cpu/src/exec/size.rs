//! The bytes a run needs, before anything is allocated: every buffer that
//! [`Executable::plan`] makes, the host tensors of the results, and the
//! working memory of the largest convolution, as sizes per sample (a
//! buffer with a batch dim) or fixed. The caller decides whether a batch
//! size fits (`snnc::memory`); [`Executable::plan`] then allocates
//! fallibly, so an estimate that is off still fails cleanly.

use snnc_ir::{Dim, Handle, Node, Op, Shape};

use super::{Executable, Src};
use crate::CpuError;

/// One buffer of a run (see [`Executable::planned_buffers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedBuffer {
    /// The node whose value (or per-step history) it holds, if any.
    pub node: Option<Handle<Node>>,
    /// Whether `bytes` is per sample (the buffer scales with the batch size).
    pub batched: bool,
    /// Bytes, per sample when `batched`.
    pub bytes: u128,
    /// Bytes per element (4 for f32 buffers, 8 for host f64 tensors).
    pub elem_bytes: u8,
}

impl PlannedBuffer {
    /// The bytes for `batch` samples (saturating).
    pub fn bytes_at(&self, batch: u64) -> u128 {
        if self.batched { self.bytes.saturating_mul(u128::from(batch)) } else { self.bytes }
    }
}

/// Elements of `shape` times `times`: `(has a batch dim, elements per
/// sample or in all)`, saturating.
fn count(shape: &Shape, times: u128) -> (bool, u128) {
    let batched = shape.0.contains(&Dim::Batch);
    let n = shape.0.iter().fold(times, |acc, d| match d {
        Dim::Fixed(n) => acc.saturating_mul(u128::from(*n)),
        Dim::Batch => acc,
    });
    (batched, n)
}

/// `[.., a, b, c]`: the last three fixed dims (1 where missing).
fn last3(shape: &Shape) -> [u128; 3] {
    let mut res = [1u128; 3];
    for (r, d) in res.iter_mut().rev().zip(shape.0.iter().rev()) {
        if let Dim::Fixed(n) = d {
            *r = u128::from(*n);
        }
    }
    res
}

/// Columns of one im2col GEMM (as in `kernels::conv2d`).
const CONV_COLUMNS: u128 = 512;
/// Images per im2col chunk of `conv2d_grad_weight`.
const GRAD_WEIGHT_CHUNK: u128 = 32;

impl Executable {
    /// Every buffer a run holds, sized per sample or fixed: each node's own
    /// buffer, per-step histories (of `collect`ed values, and of every named
    /// step-loop node when `record`), kernel outputs, states (current and
    /// next), inputs, parameters, transposed product weights, the f64 host
    /// tensors of the results, and the scratch of the largest convolution
    /// (an upper bound: kernels run one at a time). Computes sizes only.
    pub fn planned_buffers(&self, record: bool) -> Vec<PlannedBuffer> {
        let module = &self.module;
        let steps = u128::from(module.steps);
        let keep = self.module.kept_per_step(record);
        let mut res = Vec::new();
        let mut push = |node: Option<Handle<Node>>, (batched, n): (bool, u128), times: u128, elem_bytes: u8| {
            let bytes = n.saturating_mul(times).saturating_mul(u128::from(elem_bytes));
            res.push(PlannedBuffer { node, batched, bytes, elem_bytes });
        };
        let mut scratch = 0u128;
        for (h, node) in module.nodes.iter() {
            let i = h.index();
            let full = count(&node.ty.shape, if node.ty.seq { steps } else { 1 });
            if self.views[i].src == Src::Own(i) {
                push(Some(h), full, 1, 4);
            }
            if keep[i] {
                push(Some(h), full, steps, 4);
            }
            match &node.op {
                Op::Fused(k) => push(Some(h), full, k.outputs.len() as u128, 4),
                Op::MatMul { weight, .. } => push(Some(h), count(&module.nodes[*weight].ty.shape, 1), 1, 4),
                _ => {}
            }
            scratch = scratch.max(self.conv_scratch(node));
        }
        for (_, s) in module.states.iter() {
            push(None, count(&s.ty.shape, 1), 2, 4);
        }
        for (_, input) in module.inputs.iter() {
            push(None, count(&input.ty.shape, if input.ty.seq { steps } else { 1 }), 1, 4);
        }
        for (_, p) in module.params.iter() {
            push(None, (false, count(&p.shape, 1).1), 1, 4);
        }
        // The results, as f64 host tensors.
        for o in &module.outputs {
            let ty = &module.nodes[o.value].ty;
            push(Some(o.value), count(&ty.shape, if ty.seq { steps } else { 1 }), 1, 8);
        }
        if record {
            for (h, node) in module.nodes.iter().filter(|(_, n)| n.name.is_some()) {
                let times = if keep[h.index()] || node.ty.seq { steps } else { 1 };
                push(Some(h), count(&node.ty.shape, times), 1, 8);
            }
        }
        for (_, s) in module.states.iter() {
            push(None, count(&s.ty.shape, 1), 1, 8);
        }
        push(None, (false, scratch), 1, 1);
        res
    }

    /// The bytes of the buffers this executable holds now (from its last
    /// run), with that run's batch size and recording flag.
    pub fn held_buffers(&self) -> Option<(usize, bool, u128)> {
        let guard = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        let b = guard.as_ref()?;
        let bytes = self.planned_buffers(b.record).iter().map(|p| p.bytes_at(b.batch as u64)).sum();
        Some((b.batch, b.record, bytes))
    }

    /// The working memory of a convolution kernel (im2col columns and GEMM
    /// results per thread), in bytes; 0 for other nodes.
    fn conv_scratch(&self, node: &Node) -> u128 {
        let nodes = &self.module.nodes;
        let threads = crate::pool::threads() as u128;
        // `[O, C/groups, kh, kw]`: the im2col rows of all groups, C·kh·kw.
        let volume =
            |shape: &Shape, groups: u32| last3(shape).iter().fold(u128::from(groups), |a, &d| a.saturating_mul(d));
        let (out, ckk, per_thread) = match node.op {
            Op::Conv2d { weight, groups, .. } => (&node.ty.shape, volume(&nodes[weight].ty.shape, groups), true),
            Op::Conv2dGradInput { grad, weight, groups, .. } => {
                (&nodes[grad].ty.shape, volume(&nodes[weight].ty.shape, groups), true)
            }
            Op::Conv2dGradWeight { grad, groups, .. } => (&nodes[grad].ty.shape, volume(&node.ty.shape, groups), false),
            _ => return 0,
        };
        let [o, oh, ow] = last3(out);
        let plane = oh.saturating_mul(ow);
        let columns = (ckk.saturating_add(o)).saturating_mul(plane);
        let bytes = if per_thread {
            columns.saturating_mul(CONV_COLUMNS.div_ceil(plane.max(1))).saturating_mul(threads)
        } else {
            columns.saturating_mul(GRAD_WEIGHT_CHUNK)
        };
        bytes.saturating_mul(4)
    }
}

/// A zero-filled buffer of `n` elements, or [`CpuError::OutOfMemory`]
/// naming `what` when the allocation fails.
pub(super) fn zeros<T: Clone + Default>(n: usize, what: impl FnOnce() -> String) -> Result<Vec<T>, CpuError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        CpuError::OutOfMemory(format!("{} ({n} elements of {} bytes)", what(), std::mem::size_of::<T>()))
    })?;
    v.resize(n, T::default());
    Ok(v)
}
