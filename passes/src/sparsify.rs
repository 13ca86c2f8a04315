//! `sparsify`: chooses event-driven matrix products for spike inputs.
//!
//! **What it does.** A `matmul` (or `conv2d`, or the weight gradient of
//! either) whose input has dtype `spike` may be
//! computed event-driven (`spike_matmul`, [`MatMulKind::EventDriven`]): for
//! each row, scan the inputs and add the weight row of every active one.
//! Its cost follows the spike count, the dense product's the layer size.
//! The pass picks the kind of every spike-input `matmul` by a cost model,
//! per row of the input (the `B` or `T·B` rows cancel out):
//!
//! ```text
//! dense        = MADD · in · out                       multiply-adds of the GEMM
//! event-driven = SCAN · in  +  ADD · density · in · out   scan every input, add the active rows
//! choose event-driven  iff  MARGIN · event-driven <= dense
//! ```
//!
//! with `MADD = 1`, `ADD = 4`, `SCAN = 3` and `MARGIN = 1.25`, measured on
//! the CPU backend (`backends/cpu/src/microbench.rs`,
//! `microbench_calibrate`: one thread of the project machine, an AMD Zen 5
//! with AVX-512; 2048 rows of random spikes; ns per row, product / weight
//! gradient):
//!
//! ```text
//! in x out    dense (GEMM)    event-driven at density 0 / 0.01 / 0.05 / 0.1 / 0.2 / 0.3
//! 784 x 100   2927 / 1966     54/127  323/442  908/1163  1416/1841  2265/3056  3244/4016
//! 100 x 100    288 /  247     33/46    48/67    86/140    151/194    237/328    332/484
//! 100 x 10      73 /   47     30/31    39/42    65/67     98/90      148/156    222/214
//! 512 x 512   5773 / 5635     77/321  376/760  1514/2122  2626/3582  5722/6130  8419/8809
//! 1024 x 32   1586 /  977     62/87   373/432  898/1025   1175/1423  1642/2139  2089/2874
//! ```
//!
//! A GEMM multiply-add (AVX-512, about 0.025–0.037 ns) is the unit; an
//! added weight element of the event-driven sums costs about 0.11 ns (`ADD
//! = 4`: plain SSE2 vector adds, a quarter of the width, no fused
//! multiply-add) and scanning an input 0.08–0.1 ns (`SCAN = 3`: testing 64
//! values at once, then bit masks). Where the two meet depends on the use:
//! products break even at densities of 0.2–0.26 for 100 or more outputs,
//! weight gradients (whose sums are read-modify-writes) at 0.1–0.18, a
//! training step's pair of them at 0.18–0.19, and all at a few percent
//! for 10 outputs (a GEMM's narrow tiles and each row's fixed costs, which
//! the model leaves out). `MARGIN = 1.25` puts the choice at the pair's
//! break-even: event-driven when `density <= (1/MARGIN - SCAN/out) / ADD`,
//! e.g. up to 0.19–0.2 for 100 to 784 outputs, 0.18 for 32, 0.125 for 10,
//! and for 4 outputs only a (nearly) silent input. (The CUDA backend has
//! not been measured.)
//!
//! A convolution (`spike_conv2d`) and its weight gradient are costed per
//! image the same way: dense `MADD · O·OH·OW·C·kh·kw`, event-driven `SCAN ·
//! C·H·W + CONV_ADD · density · C·pairs·O + O·OH·OW` where `pairs` counts
//! the kernel taps inside the image over the output plane (each active
//! input adds, for every tap that reaches an output, one vector of the `O`
//! output channels — the weight, or the image's gradient, held
//! channels-last; the last term writes the plane back). An added element
//! costs 4.4–8.9 times a multiply-add of the im2col GEMM, so `CONV_ADD = 6`.
//! Measured on this project's 2-vCPU VM (`backends/cpu/src/microbench.rs`,
//! `microbench_calibrate_conv`, 256 images of random spikes, µs per image,
//! 2026-12-08), product / weight gradient:
//!
//! ```text
//! C×H×W -> O, k     dense     event-driven at density 0.01 / 0.02 / 0.05 / 0.1 / 0.2 / 0.3
//! 1×28×28 -> 20, 5   9 / 22    4/4   5/5   6/7   8/10   13/17  16/25
//! 20×12×12 -> 50, 5  31 / 46   4/4   5/7   9/15  15/25  32/69  43/72
//! 32×12×12 -> 64, 5  50 / 84   5/7   9/15  17/22 28/41  45/74  64/107
//! ```
//!
//! so both break even at densities of about 0.15–0.2; with `MARGIN` the
//! model makes them event-driven up to about 0.13 (e.g. 20×12×12 → 50×8×8),
//! which includes the default density (0.1). (Before the channel vectors,
//! 2026-11, the forward's adds were scattered scalars, `CONV_ADD` was 25
//! and convolutions broke even at 0.03–0.05.) `examples/convnet.ron` states
//! its inputs' measured densities with `input_density` (the encoder's
//! spikes 1.9 %, the pooled first-layer spikes 0.05 %, measured in Norse).
//!
//! The event-driven convolution kernels (the CPU backend's
//! `event_conv.rs`) handle dilation 1 and one channel group only, so a
//! convolution or weight gradient with another `dilation` or `groups` is
//! never made event-driven: the pass leaves its kind as it is (dense, as
//! lowered), and the CPU executor runs a hand-written `spike_conv2d` with
//! those attributes by its dense kernel (the same values).
//!
//! The expected density of an input (the fraction of ones) is, in order:
//! 1. [`Sparsify::per_value`] under the name of the input value, e.g.
//!    `lif1.z` or `encoder.z`, or of a value it passes on unchanged: the
//!    names along `reshape` (`flatten.out` of `encoder.z`), `step`,
//!    `collect` and `stop_gradient` are tried nearest first, and a
//!    `state_read` goes by its state's name (the recurrent input `lif1.z`
//!    of a recurrent layer). The driver fills this
//!    map from the network file (`input_density` of a layer, under the name
//!    of the layer's input) and from a recording (`--profile`: each spike
//!    trace's mean);
//! 2. for a `concat` without such a name (found at the end of that
//!    chain), the mean of its operands' densities weighted by their sizes,
//!    when at least one operand has one (the others count with the
//!    default); a `narrow` takes its operand's;
//! 3. [`Sparsify::default_density`], [`DEFAULT_DENSITY`] = 0.1 unless set
//!    (about a 10 % firing probability per step, typical of trained SNNs).
//!
//! Both kinds compute the same numbers in every backend (the interpreter
//! runs one kernel for both), so the pass is exact. It also turns an
//! event-driven product back into a dense one when the model prefers that.
//!
//! **Needs.** A valid module. Runs best after `time-batch`, which it does
//! not depend on.
//!
//! **Preserves.** Every value, bit for bit; nodes, names, regions and types
//! (only the `kind` of spike-input matrix products changes).

use std::collections::BTreeMap;

use snnc_ir::{Dim, Dtype, Handle, MatMulKind, Module, Node, Op};

use crate::util;
use crate::{Pass, PassError, PassReport};

/// The density assumed for a spike input without a per-value entry.
pub const DEFAULT_DENSITY: f64 = 0.1;

/// Cost of one multiply-add of the dense product.
pub const MADD: f64 = 1.0;
/// Cost of adding one weight element of an active input's row (see the
/// module docs for the measurements).
pub const ADD: f64 = 4.0;
/// Cost of adding one weight (or gradient) element in an event-driven
/// convolution or its weight gradient: a vector of the output channels
/// per active input and tap (see the module docs).
pub const CONV_ADD: f64 = 6.0;
/// Cost of scanning one input for the active ones.
pub const SCAN: f64 = 3.0;
/// The factor by which event-driven must beat dense.
pub const MARGIN: f64 = 1.25;

/// The sparsify pass (`sparsify`, or `sparsify=DENSITY` in `--passes` to
/// set the default density).
#[derive(Clone, Debug, PartialEq)]
pub struct Sparsify {
    /// The density of a spike input with no entry in `per_value`.
    pub default_density: f64,
    /// Expected densities by the name of the input value (`lif1.z`,
    /// `encoder.z`, ...).
    pub per_value: BTreeMap<String, f64>,
}

impl Default for Sparsify {
    fn default() -> Self {
        Sparsify { default_density: DEFAULT_DENSITY, per_value: BTreeMap::new() }
    }
}

/// The per-row costs of the two kinds for `in` inputs, `out` outputs and a
/// density.
pub fn costs(n_in: u64, n_out: u64, density: f64) -> (f64, f64) {
    let (i, o) = (n_in as f64, n_out as f64);
    (MADD * i * o, SCAN * i + ADD * density * i * o)
}

/// Whether the cost model picks event-driven.
pub fn prefers_event_driven(n_in: u64, n_out: u64, density: f64) -> bool {
    let (dense, event) = costs(n_in, n_out, density);
    MARGIN * event <= dense
}

/// The name under which a value's density is looked up: its own name, or
/// that of the value it passes on (through `reshape`, `step`, `collect`,
/// `stop_gradient`), or the state's name for a `state_read`. `None` if no
/// name is found.
pub fn density_key(module: &Module, h: Handle<Node>) -> Option<String> {
    density_keys(module, h).into_iter().next()
}

/// Every name a value's density may be found under, nearest first: the
/// names along the chain of value-preserving ops that [`density_key`]
/// follows (`flatten.out`, then the `encoder.z` it reshapes).
pub fn density_keys(module: &Module, mut h: Handle<Node>) -> Vec<String> {
    let mut res = Vec::new();
    loop {
        let node = &module.nodes[h];
        if let Some(name) = &node.name {
            res.push(name.clone());
        }
        h = match node.op {
            Op::Reshape { arg, .. } | Op::Step(arg) | Op::Collect(arg) | Op::StopGradient(arg) => arg,
            Op::StateRead(s) => {
                res.push(module.states[s].name.clone());
                return res;
            }
            _ => return res,
        };
    }
}

/// The work of a candidate node, per image or row.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// A product with a fixed `[n_out, n_in]` weight, per row.
    Product { n_in: u64, n_out: u64 },
    /// A convolution (or its weight gradient), per image.
    Conv(ConvWork),
}

/// The sizes of a convolution that its costs depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvWork {
    /// Input channels, height and width.
    pub c: u64,
    pub h: u64,
    pub w: u64,
    /// Output channels and output plane size.
    pub o: u64,
    pub oh: u64,
    pub ow: u64,
    /// Kernel, stride, padding.
    pub kernel: [u64; 2],
    pub stride: [u64; 2],
    pub padding: [u64; 2],
}

impl ConvWork {
    /// The kernel taps that land inside the input, summed over the output
    /// plane: the (input, output) pairs of one channel.
    pub fn pairs(&self) -> u64 {
        let axis = |n: u64, out: u64, k: u64, s: u64, p: u64| -> u64 {
            (0..out).map(|i| (0..k).filter(|&a| (i * s + a).checked_sub(p).is_some_and(|r| r < n)).count() as u64).sum()
        };
        axis(self.h, self.oh, self.kernel[0], self.stride[0], self.padding[0])
            * axis(self.w, self.ow, self.kernel[1], self.stride[1], self.padding[1])
    }
}

/// The per-image costs of a dense and an event-driven convolution (or
/// weight gradient): the dense one multiplies every kernel tap,
/// `MADD · O·OH·OW·C·kh·kw`; the event-driven one scans the input
/// (`SCAN · C·H·W`), adds the `O` weights of every active input for each
/// output it reaches (`CONV_ADD · density · C·pairs·O`) and writes the result
/// plane back in the output layout (`O·OH·OW`).
pub fn conv_costs(c: &ConvWork, density: f64) -> (f64, f64) {
    let f = |v: u64| v as f64;
    let dense = MADD * f(c.o * c.oh * c.ow * c.c * c.kernel[0] * c.kernel[1]);
    let event = SCAN * f(c.c * c.h * c.w) + CONV_ADD * density * f(c.c * c.pairs() * c.o) + f(c.o * c.oh * c.ow);
    (dense, event)
}

/// A node whose kind sparsify chooses: its spike-candidate input, current
/// kind and sizes (`None` when a size is not fixed).
fn candidate(module: &Module, h: Handle<Node>) -> Option<(Handle<Node>, MatMulKind, Option<Work>)> {
    let fixed = |d: Option<&Dim>| match d {
        Some(Dim::Fixed(v)) => Some(u64::from(*v)),
        _ => None,
    };
    let product = |w: Handle<Node>| {
        let w = &module.nodes[w].ty.shape.0;
        Some(Work::Product { n_out: fixed(w.first())?, n_in: fixed(w.get(1))? })
    };
    let conv = |x: Handle<Node>, y: Handle<Node>, kernel: [u32; 2], stride: [u32; 2], padding: [u32; 2]| {
        let (xs, ys) = (&module.nodes[x].ty.shape.0, &module.nodes[y].ty.shape.0);
        let (rx, ry) = (xs.len(), ys.len());
        if rx < 3 || ry < 3 {
            return None;
        }
        Some(Work::Conv(ConvWork {
            c: fixed(xs.get(rx - 3))?,
            h: fixed(xs.get(rx - 2))?,
            w: fixed(xs.get(rx - 1))?,
            o: fixed(ys.get(ry - 3))?,
            oh: fixed(ys.get(ry - 2))?,
            ow: fixed(ys.get(ry - 1))?,
            kernel: kernel.map(u64::from),
            stride: stride.map(u64::from),
            padding: padding.map(u64::from),
        }))
    };
    match module.nodes[h].op {
        Op::MatMul { input, weight, kind } => Some((input, kind, product(weight))),
        Op::MatMulGradWeight { input, kind, .. } => Some((input, kind, product(h))),
        // The event-driven convolutions (CPU `event_conv.rs`, CUDA) handle
        // dilation 1 and one group only: others stay as they are (dense).
        Op::Conv2d { input, kind, dilation, groups, .. }
        | Op::Conv2dGradWeight { input, kind, dilation, groups, .. }
            if dilation != [1, 1] || groups != 1 =>
        {
            Some((input, kind, None))
        }
        Op::Conv2d { input, weight, stride, padding, kind, .. } => {
            let k = &module.nodes[weight].ty.shape.0;
            let kernel = match (fixed(k.get(2)), fixed(k.get(3))) {
                (Some(a), Some(b)) => [a as u32, b as u32],
                _ => return Some((input, kind, None)),
            };
            Some((input, kind, conv(input, h, kernel, stride, padding)))
        }
        Op::Conv2dGradWeight { grad, input, kernel, stride, padding, kind, .. } => {
            Some((input, kind, conv(input, grad, kernel, stride, padding)))
        }
        _ => None,
    }
}

impl Sparsify {
    /// The density of a spike value, and where it comes from.
    fn density(&self, module: &Module, input: Handle<Node>) -> (f64, String) {
        let keys = density_keys(module, input);
        match keys.iter().find_map(|k| self.per_value.get(k).map(|d| (k, *d))) {
            Some((k, d)) => (d, format!("of {k}")),
            None if let Some(d) = self.layout_density(module, input) => d,
            None => {
                let of = keys.first().map(|k| format!(" of {k}")).unwrap_or_default();
                (self.default_density, format!("default{of}"))
            }
        }
    }
}

impl Sparsify {
    /// The density of a `concat` (the mean of its operands' densities,
    /// weighted by their sizes) or a `narrow` (its operand's), found at
    /// the end of the chain of value-preserving ops from `h`, when some
    /// operand has a density of its own. `None` otherwise.
    fn layout_density(&self, module: &Module, mut h: Handle<Node>) -> Option<(f64, String)> {
        loop {
            h = match module.nodes[h].op {
                Op::Reshape { arg, .. } | Op::Step(arg) | Op::Collect(arg) | Op::StopGradient(arg) => arg,
                _ => break,
            };
        }
        match module.nodes[h].op {
            Op::Concat { ref args } => {
                let (mut sum, mut total, mut known) = (0.0, 0.0, Vec::new());
                for &a in args {
                    let n = module.nodes[a].ty.shape.fixed_elements() as f64;
                    let (d, from) = self.density(module, a);
                    if !from.starts_with("default") {
                        known.push(from.trim_start_matches("of ").to_string());
                    }
                    sum += d * n;
                    total += n;
                }
                (!known.is_empty() && total > 0.0)
                    .then(|| (sum / total, format!("of the concat of {}", known.join(", "))))
            }
            Op::Narrow { arg, .. } => {
                let (d, from) = self.density(module, arg);
                (!from.starts_with("default")).then(|| (d, format!("{from} (narrowed)")))
            }
            _ => None,
        }
    }
}

impl Pass for Sparsify {
    fn name(&self) -> &'static str {
        "sparsify"
    }

    fn run(&self, module: &mut Module) -> Result<PassReport, PassError> {
        let bad = |d: f64| !(0.0..=1.0).contains(&d);
        if bad(self.default_density) {
            return Err(PassError::Unsupported {
                pass: "sparsify",
                message: format!("the default density must be in [0, 1], got {}", self.default_density),
            });
        }
        if let Some((k, d)) = self.per_value.iter().find(|(_, d)| bad(**d)) {
            return Err(PassError::Unsupported {
                pass: "sparsify",
                message: format!("the density of `{k}` must be in [0, 1], got {d}"),
            });
        }
        let mut report = PassReport::default();
        let order: Vec<_> = module.body.iter().flat_map(|r| r.nodes.iter().copied()).collect();
        let mut seen = 0;
        for h in order {
            // A product `input @ W^T`, or the weight gradient `grad^T @ input`
            // of one: the same visits of the input's active elements; the
            // same for a convolution and its weight gradient.
            let Some((input, kind, shape)) = candidate(module, h) else {
                continue;
            };
            if module.nodes[input].ty.dtype != Dtype::Spike {
                continue;
            }
            seen += 1;
            let Some(shape) = shape else {
                continue;
            };
            let (density, source) = self.density(module, input);
            let ((dense, ev), per) = match shape {
                Work::Product { n_in, n_out } => (costs(n_in, n_out, density), "row"),
                Work::Conv(c) => (conv_costs(&c, density), "image"),
            };
            let event = MARGIN * ev <= dense;
            let new_kind = if event { MatMulKind::EventDriven } else { MatMulKind::Dense };
            if let Op::MatMul { kind: k, .. }
            | Op::MatMulGradWeight { kind: k, .. }
            | Op::Conv2d { kind: k, .. }
            | Op::Conv2dGradWeight { kind: k, .. } = &mut module.nodes[h].op
            {
                *k = new_kind;
            }
            report.note(format!(
                "{}: {} (density {density} {source}; per {per}: dense {dense}, event-driven {ev}{})",
                util::describe(module, h),
                if event { "event-driven" } else { "dense" },
                if kind != new_kind { "; changed" } else { "" },
            ));
        }
        if seen == 0 {
            report.note("no matrix product or convolution with a spike input");
        }
        snnc_ir::compact(module);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_model_prefers_dense_for_dense_inputs() {
        assert!(prefers_event_driven(784, 100, 0.1));
        assert!(prefers_event_driven(784, 100, 0.19));
        assert!(!prefers_event_driven(784, 100, 0.21));
        assert!(!prefers_event_driven(784, 100, 0.9));
        assert!(prefers_event_driven(100, 100, 0.19));
        assert!(!prefers_event_driven(100, 100, 0.2));
        assert!(!prefers_event_driven(16, 4, 0.1));
        assert!(prefers_event_driven(16, 4, 0.0));
        assert!(prefers_event_driven(100, 10, 0.1));
        assert!(!prefers_event_driven(100, 10, 0.15));
        assert!(prefers_event_driven(512, 512, 0.19));
        assert!(!prefers_event_driven(512, 512, 0.25));
    }

    #[test]
    fn convolutions_of_sparse_spikes_are_event_driven() {
        // The Norse ConvNet's conv2: 20 x 12 x 12 spikes -> 50 x 8 x 8.
        let c = ConvWork { c: 20, h: 12, w: 12, o: 50, oh: 8, ow: 8, kernel: [5, 5], stride: [1, 1], padding: [0, 0] };
        assert_eq!(c.pairs(), 8 * 8 * 25);
        let event = |d: f64| {
            let (dense, ev) = conv_costs(&c, d);
            MARGIN * ev <= dense
        };
        // Measured break-even: about 0.13–0.2 (module docs), for the
        // convolution and its weight gradient alike.
        assert!(event(0.0005) && event(0.05) && event(0.1));
        assert!(!event(0.2) && !event(1.0));
        // Padding: taps outside the image are not visited.
        let p = ConvWork { c: 1, h: 3, w: 3, o: 1, oh: 3, ow: 3, kernel: [3, 3], stride: [1, 1], padding: [1, 1] };
        assert_eq!(p.pairs(), 7 * 7);
        let s = ConvWork { padding: [0, 0], stride: [2, 2], h: 5, w: 5, oh: 2, ow: 2, ..p };
        assert_eq!(s.pairs(), 2 * 3 * 2 * 3);
    }
}
