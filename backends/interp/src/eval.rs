//! The evaluator: runs the regions of a checked module in one float type.

use std::collections::BTreeMap;

use snnc_ir::{Handle, Module, Node, Op, RegionKind, StateInit};
use snnc_runtime::Tensor;

use crate::kernels::{self, ConvShape, PoolShape};
use crate::real::Real;
use crate::{Plan, RunResult};

/// Everything a run holds, in the float type `F`.
struct Evaluator<'a, F> {
    module: &'a Module,
    plan: &'a Plan,
    /// The current value of every node (its per-step value inside a step
    /// loop), flat and row-major with the dims of `plan.dims`.
    values: Vec<Vec<F>>,
    /// For nodes of step loops whose every step is kept (operands of
    /// `collect`, and recorded nodes): `T × value`, row-major.
    history: Vec<Option<Vec<F>>>,
    /// The current value of every state variable.
    states: Vec<Vec<F>>,
    /// Module inputs and parameters, converted to `F`.
    inputs: Vec<Vec<F>>,
    params: Vec<Vec<F>>,
    /// Scratch space for kernels (the transposed matmul weight).
    scratch: Vec<F>,
    /// Every output of each `fused` node (empty for other nodes).
    kernel_outputs: Vec<Vec<Vec<F>>>,
}

fn convert<F: Real>(t: &Tensor) -> Vec<F> {
    t.data.iter().map(|&x| F::from_f64(x)).collect()
}

fn to_tensor<F: Real>(dims: &[usize], data: &[F]) -> Tensor {
    Tensor { shape: dims.to_vec(), dtype: F::ELEM, data: data.iter().map(|&x| x.to_f64()).collect() }
}

/// Runs a module whose inputs, weights and initial states were checked
/// against `plan` (so every buffer below has the size of its dims).
pub(crate) fn run<F: Real>(
    module: &Module,
    plan: &Plan,
    weights: &BTreeMap<String, Tensor>,
    inputs: &BTreeMap<String, Tensor>,
    initial_state: &BTreeMap<String, Tensor>,
    record: bool,
) -> RunResult {
    let states = module
        .states
        .iter()
        .map(|(h, s)| match initial_state.get(&s.name) {
            Some(t) => convert(t),
            None => {
                let n = plan.numel(&plan.state_dims[h.index()]);
                match &s.init {
                    StateInit::Fill(x) => vec![F::from_f64(*x); n],
                    StateInit::Values(v) => (0..n).map(|k| F::from_f64(v[k % v.len()])).collect(),
                    StateInit::Param(p) => convert(&weights[&module.params[*p].name]),
                }
            }
        })
        .collect();
    let mut ev = Evaluator {
        module,
        plan,
        values: vec![Vec::new(); module.nodes.len()],
        history: plan
            .keep_history
            .iter()
            .zip(&plan.dims)
            .map(|(&keep, dims)| keep.then(|| vec![F::zero(); plan.steps * plan.numel(dims)]))
            .collect(),
        states,
        inputs: module.inputs.iter().map(|(_, i)| convert(&inputs[&i.name])).collect(),
        params: module.params.iter().map(|(_, p)| convert(&weights[&p.name])).collect(),
        scratch: Vec::new(),
        kernel_outputs: vec![Vec::new(); module.nodes.len()],
    };

    for region in &module.body {
        match region.kind {
            RegionKind::Seq => {
                for &h in &region.nodes {
                    ev.eval(h, None);
                }
            }
            RegionKind::Step => {
                // A reverse loop runs t = T-1 down to 0; `t` stays the time
                // index, so histories are stored at row t either way.
                let order: Box<dyn Iterator<Item = usize>> =
                    if region.reverse { Box::new((0..plan.steps).rev()) } else { Box::new(0..plan.steps) };
                for (iter, t) in order.enumerate() {
                    for &h in &region.nodes {
                        // Inputs, parameters and constants do not change
                        // from step to step: computed at the first
                        // iteration, kept after.
                        let invariant = matches!(module.nodes[h].op, Op::Input(_) | Op::Param(_) | Op::Const { .. });
                        if iter == 0 || !invariant {
                            ev.eval(h, Some(t));
                        }
                        if let Some(hist) = &mut ev.history[h.index()] {
                            let v = &ev.values[h.index()];
                            let n = hist.len() / plan.steps;
                            if v.len() == n {
                                hist[t * n..(t + 1) * n].copy_from_slice(v);
                            }
                        }
                    }
                }
            }
        }
    }

    let outputs = module
        .outputs
        .iter()
        .map(|o| (o.name.clone(), to_tensor(&plan.dims[o.value.index()], &ev.values[o.value.index()])))
        .collect();
    let mut traces = BTreeMap::new();
    if record {
        for (h, node) in module.nodes.iter() {
            let Some(name) = &node.name else { continue };
            let i = h.index();
            let t = match &ev.history[i] {
                Some(hist) => {
                    let mut dims = vec![plan.steps];
                    dims.extend_from_slice(&plan.dims[i]);
                    to_tensor(&dims, hist)
                }
                None => to_tensor(&plan.dims[i], &ev.values[i]),
            };
            traces.insert(name.clone(), t);
        }
    }
    let final_state = module
        .states
        .iter()
        .map(|(h, s)| (s.name.clone(), to_tensor(&plan.state_dims[h.index()], &ev.states[h.index()])))
        .collect();
    RunResult { outputs, traces, final_state }
}

impl<F: Real> Evaluator<'_, F> {
    /// The geometry of a convolution from its gradient `grad` (`[.., O, H',
    /// W']`), its input dims `xd` (`[.., C, H, W]`) and weight dims `wd`
    /// (`[O, C, kh, kw]`).
    fn conv_shape(
        &self,
        grad: Handle<Node>,
        xd: &[usize],
        wd: &[usize],
        [stride, padding, dilation]: [[u32; 2]; 3],
        groups: u32,
    ) -> ConvShape {
        let gd = self.dims(grad);
        let (r, rx) = (gd.len(), xd.len());
        ConvShape {
            n: self.plan.numel(&gd[..r - 3]),
            c: xd[rx - 3],
            h: xd[rx - 2],
            w: xd[rx - 1],
            o: gd[r - 3],
            kh: wd[2],
            kw: wd[3],
            oh: gd[r - 2],
            ow: gd[r - 1],
            stride: stride.map(|v| v as usize),
            padding: padding.map(|v| v as usize),
            dilation: dilation.map(|v| v as usize),
            groups: groups as usize,
        }
    }

    /// The geometry of a pooling of `input` whose result has dims `out`.
    fn pool_shape(&self, input: Handle<Node>, out: &[usize], [kernel, stride, padding]: [[u32; 2]; 3]) -> PoolShape {
        let xd = self.dims(input);
        let r = xd.len();
        PoolShape {
            lead: self.plan.numel(&xd[..r - 2]),
            size: [xd[r - 2], xd[r - 1]],
            kernel: kernel.map(|v| v as usize),
            stride: stride.map(|v| v as usize),
            padding: padding.map(|v| v as usize),
            out: [out[out.len() - 2], out[out.len() - 1]],
        }
    }

    /// The value of an operand.
    fn val(&self, h: Handle<Node>) -> &[F] {
        &self.values[h.index()]
    }

    fn dims(&self, h: Handle<Node>) -> &[usize] {
        &self.plan.dims[h.index()]
    }

    /// Computes node `h`; `t` is the step inside a step loop, `None` in a
    /// sequence region.
    fn eval(&mut self, h: Handle<Node>, t: Option<usize>) {
        let (module, plan) = (self.module, self.plan);
        let node = &module.nodes[h];
        let mut out = std::mem::take(&mut self.values[h.index()]);
        out.clear();
        let dims = &plan.dims[h.index()];
        let n = plan.numel(dims);
        match node.op {
            Op::Input(i) => out.extend_from_slice(&self.inputs[i.index()]),
            Op::Param(p) => out.extend_from_slice(&self.params[p.index()]),
            Op::Const { value, .. } => out.push(F::from_f64(value)),
            Op::StateRead(s) => out.extend_from_slice(&self.states[s.index()]),
            Op::StateWrite { state, value } => {
                // Every read of the state precedes this write in the loop, so
                // storing now makes the value visible from step t + 1 on.
                out.extend_from_slice(&self.values[value.index()]);
                let st = &mut self.states[state.index()];
                st.clear();
                st.extend_from_slice(&out);
            }
            Op::Step(x) => {
                let t = t.unwrap_or(0);
                out.extend_from_slice(&self.val(x)[t * n..(t + 1) * n]);
            }
            Op::Collect(x) => {
                if let Some(hist) = &self.history[x.index()] {
                    out.extend_from_slice(hist);
                }
            }
            Op::Unary { op, arg } => kernels::unary(op, self.val(arg), &mut out),
            Op::Binary { op, lhs, rhs } => kernels::binary(op, self.val(lhs), self.val(rhs), n, &mut out),
            Op::Compare { op, lhs, rhs } => kernels::compare(op, self.val(lhs), self.val(rhs), n, &mut out),
            Op::Select { cond, on_true, on_false } => {
                kernels::select(self.val(cond), self.val(on_true), self.val(on_false), n, &mut out)
            }
            Op::Threshold { arg, .. } => kernels::threshold(self.val(arg), &mut out),
            Op::StopGradient(x) => out.extend_from_slice(self.val(x)),
            Op::Cast { arg, dtype } => kernels::cast(dtype, self.val(arg), &mut out),
            Op::MatMul { input, weight, .. } => {
                let wd = &plan.dims[weight.index()];
                let (n_out, n_in) = (wd[0], wd[1]);
                let xd = &plan.dims[input.index()];
                let rows = plan.numel(&xd[..xd.len() - 1]);
                kernels::matmul(
                    &self.values[input.index()],
                    &self.values[weight.index()],
                    rows,
                    n_in,
                    n_out,
                    &mut out,
                    &mut self.scratch,
                );
            }
            Op::Conv2d { input, weight, bias, stride, padding, dilation, groups, .. } => {
                let (xd, wd) = (self.dims(input), self.dims(weight));
                let r = xd.len();
                let s = ConvShape {
                    n: self.plan.numel(&xd[..r - 3]),
                    c: xd[r - 3],
                    h: xd[r - 2],
                    w: xd[r - 1],
                    o: wd[0],
                    kh: wd[2],
                    kw: wd[3],
                    oh: dims[dims.len() - 2],
                    ow: dims[dims.len() - 1],
                    stride: stride.map(|v| v as usize),
                    padding: padding.map(|v| v as usize),
                    dilation: dilation.map(|v| v as usize),
                    groups: groups as usize,
                };
                let bias = bias.map(|b| self.val(b));
                kernels::conv2d(self.val(input), self.val(weight), bias, s, &mut out);
            }
            Op::Pool2d { op, input, kernel, stride, padding } => {
                let s = self.pool_shape(input, dims, [kernel, stride, padding]);
                kernels::pool2d(op, self.val(input), s, &mut out);
            }
            Op::Reshape { arg, .. } => out.extend_from_slice(self.val(arg)),
            Op::Concat { ref args } => {
                // The axis is the dim after the batch (and time) dims.
                let axis = usize::from(node.ty.seq) + 1;
                let rows = self.plan.numel(&dims[..axis]);
                let blocks: Vec<usize> = args.iter().map(|&a| self.plan.numel(&self.dims(a)[axis..])).collect();
                let vals: Vec<&[F]> = args.iter().map(|&a| self.val(a)).collect();
                kernels::concat(&vals, &blocks, rows, &mut out);
            }
            Op::Narrow { arg, start, len } => {
                let axis = usize::from(node.ty.seq) + 1;
                let xd = self.dims(arg);
                let inner = self.plan.numel(&xd[axis + 1..]);
                let rows = self.plan.numel(&xd[..axis]);
                let block = self.plan.numel(&xd[axis..]);
                kernels::narrow(self.val(arg), rows, block, start as usize * inner, len as usize * inner, &mut out);
            }
            Op::ChannelSum { arg, mean, per_step } => {
                let xd = self.dims(arg);
                let (axis, c) = snnc_ir::typing::channel_axis(&self.module.nodes[arg].ty.shape).unwrap_or((0, 0));
                let seq = usize::from(self.module.nodes[arg].ty.seq);
                let axis = axis + seq;
                let inner = self.plan.numel(&xd[axis + 1..]);
                if per_step && seq == 1 {
                    let lead = self.plan.numel(&xd[seq..axis]);
                    kernels::channel_sum_per_step(self.val(arg), xd[0], lead, c as usize, inner, mean, &mut out);
                } else if per_step {
                    // The same value at every step: its sum, repeated.
                    let lead = self.plan.numel(&xd[..axis]);
                    kernels::channel_sum(self.val(arg), lead, c as usize, inner, mean, &mut out);
                    let row = out.clone();
                    for _ in 1..self.plan.steps {
                        out.extend_from_slice(&row);
                    }
                } else {
                    let lead = self.plan.numel(&xd[..axis]);
                    kernels::channel_sum(self.val(arg), lead, c as usize, inner, mean, &mut out);
                }
            }
            Op::ChannelBroadcast { arg, ref shape, mean } => {
                // A `seq` result repeats each step of a `[T, C]` operand.
                let (axis, _) = snnc_ir::typing::channel_axis(shape).unwrap_or((0, 0));
                let seq = usize::from(node.ty.seq);
                let axis = axis + seq;
                let (lead, inner) = (self.plan.numel(&dims[seq..axis]), self.plan.numel(&dims[axis + 1..]));
                let steps = if seq == 1 { dims[0] } else { 1 };
                kernels::channel_broadcast(self.val(arg), steps, lead, inner, mean, &mut out);
            }
            Op::ReduceTime { op, arg } => kernels::reduce_time(op, self.val(arg), self.plan.steps, n, &mut out),
            Op::MaxAll(arg) => {
                out.clear();
                out.push(kernels::max_all(self.val(arg)));
            }
            Op::LogSoftmax { arg } => kernels::log_softmax(self.val(arg), dims.last().copied().unwrap_or(1), &mut out),
            Op::Fused(ref kernel) => {
                let mut outs = std::mem::take(&mut self.kernel_outputs[h.index()]);
                let inputs: Vec<&[F]> = kernel.inputs.iter().map(|&x| self.val(x)).collect();
                kernels::fused(kernel, &inputs, n, &mut outs);
                out.extend_from_slice(&outs[0]);
                self.kernel_outputs[h.index()] = outs;
            }
            Op::Extract { kernel, index } => {
                out.extend_from_slice(&self.kernel_outputs[kernel.index()][index as usize]);
            }
            Op::Transpose(x) => {
                let xd = self.dims(x);
                kernels::transpose(self.val(x), xd[0], xd[1], &mut out);
            }
            Op::StdpUpdate { weight, z_post, t_pre, t_post, z_pre, ref rule } => {
                let (n_out, n_in) = (dims[0], dims[1]);
                let rows = self.val(z_post).len().checked_div(n_out).unwrap_or(0);
                let (mut plus, mut minus) = (Vec::new(), Vec::new());
                kernels::matmul_grad_weight(self.val(z_post), self.val(t_pre), rows, n_in, n_out, &mut plus);
                kernels::matmul_grad_weight(self.val(t_post), self.val(z_pre), rows, n_in, n_out, &mut minus);
                let w = self.val(weight);
                out.extend((0..n_out * n_in).map(|k| F::stdp_update(rule, w[k], plus[k], minus[k])));
            }
            Op::MatMulGradWeight { grad, input, .. } => {
                let (n_out, n_in) = (dims[0], dims[1]);
                let rows = self.val(grad).len().checked_div(n_out).unwrap_or(0);
                kernels::matmul_grad_weight(self.val(grad), self.val(input), rows, n_in, n_out, &mut out);
            }
            Op::SumTo { arg, .. } => kernels::sum_rows(self.val(arg), n, &mut out),
            Op::Conv2dGradInput { grad, weight, stride, padding, dilation, groups, .. } => {
                let s = self.conv_shape(grad, dims, self.dims(weight), [stride, padding, dilation], groups);
                kernels::conv2d_grad_input(self.val(grad), self.val(weight), s, &mut out);
            }
            Op::Conv2dGradWeight { grad, input, stride, padding, dilation, groups, .. } => {
                let s = self.conv_shape(grad, self.dims(input), dims, [stride, padding, dilation], groups);
                kernels::conv2d_grad_weight(self.val(grad), self.val(input), s, &mut out);
            }
            Op::Conv2dGradBias { grad } => {
                let gd = self.dims(grad);
                let r = gd.len();
                let lead = self.plan.numel(&gd[..r - 3]);
                kernels::conv2d_grad_bias(self.val(grad), lead, gd[r - 3], gd[r - 2] * gd[r - 1], &mut out);
            }
            Op::Pool2dGrad { op, input, grad, kernel, stride, padding } => {
                let s = self.pool_shape(input, self.dims(grad), [kernel, stride, padding]);
                kernels::pool2d_grad(op, self.val(input), self.val(grad), s, &mut out);
            }
            Op::ReduceTimeGrad { op, arg, grad } => {
                let per_step = self.val(grad).len();
                kernels::reduce_time_grad(op, self.val(arg), self.val(grad), self.plan.steps, per_step, &mut out);
            }
            Op::LogSoftmaxGrad { out: y, grad } => {
                let len = dims.last().copied().unwrap_or(1);
                kernels::log_softmax_grad(self.val(y), self.val(grad), len, &mut out);
            }
            Op::Uniform { seed, seq, .. } => {
                let rng = |t: usize, k: usize| F::from_f64(snnc_ir::rng::uniform(seed, t as u32, k as u64));
                if seq {
                    let per_step = n / self.plan.steps;
                    for step in 0..self.plan.steps {
                        out.extend((0..per_step).map(|k| rng(step, k)));
                    }
                } else {
                    let step = t.unwrap_or(0);
                    out.extend((0..n).map(|k| rng(step, k)));
                }
            }
        }
        self.values[h.index()] = out;
    }
}
