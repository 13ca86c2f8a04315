//! The stable text form of a module (used by `snnc ir` and snapshots).
//!
//! ```text
//! %7 = add %3, %6 : f32[B,100]    ; lif1.v
//! ```
//!
//! A `fused` node prints its body on the lines after it, one instruction a
//! line (`k3 = add k1, k2 : f32`, typed by dtype: every instruction has the
//! kernel's shape), then the instructions it writes (`out k9, k12`).

use std::fmt::{self, Write};

use crate::module::{Module, ParamInit, RegionKind, StateInit};
use crate::op::{FusedKernel, KernelInst, MatMulKind, Op, Surrogate};
use crate::types::Dtype;

/// Prints a module. The output depends only on the module.
pub fn print(module: &Module) -> String {
    let mut out = String::new();
    write_module(&mut out, module).expect("writing to a String cannot fail");
    out
}

fn num(x: f64) -> String {
    // `{:?}` is the shortest text that reads back as the same f64.
    format!("{x:?}")
}

/// `[a, b, c]`, each number as [`num`] writes it.
fn list(values: &[f64]) -> String {
    let items: Vec<String> = values.iter().map(|&x| num(x)).collect();
    format!("[{}]", items.join(", "))
}

fn write_module(out: &mut String, m: &Module) -> fmt::Result {
    writeln!(out, "module {} {{", m.name)?;
    writeln!(out, "  steps {}, dt {}, float {}", m.steps, num(m.dt), m.float)?;
    for (_, i) in m.inputs.iter() {
        writeln!(out, "  input {} : {}", i.name, i.ty)?;
    }
    for (_, p) in m.params.iter() {
        let init = match &p.init {
            ParamInit::Zeros => "zeros".to_string(),
            ParamInit::Fill(x) => format!("fill({})", num(*x)),
            ParamInit::Uniform { bound } => format!("uniform({})", num(*bound)),
            ParamInit::Normal { std } => format!("normal({})", num(*std)),
            ParamInit::OffDiagonal => "off_diagonal".to_string(),
            ParamInit::Values(v) => format!("values({})", list(v)),
        };
        let kind = if p.trainable { "param" } else { "const_param" };
        writeln!(out, "  {kind} @{} : {}{} = {init}", p.name, p.dtype, p.shape)?;
    }
    for (_, s) in m.states.iter() {
        let init = match &s.init {
            StateInit::Fill(x) => num(*x),
            StateInit::Values(v) => list(v),
            StateInit::Param(p) => format!("@{}", m.params[*p].name),
        };
        writeln!(out, "  state ${} : {} = {init}", s.name, s.ty)?;
    }
    for region in &m.body {
        let mut kw = match region.kind {
            RegionKind::Seq => "seq".to_string(),
            RegionKind::Step if region.unroll > 1 => format!("step t in 0..T unroll {}", region.unroll),
            RegionKind::Step => "step t in 0..T".to_string(),
        };
        if region.reverse {
            kw.push_str(" reverse");
        }
        writeln!(out, "  {kw} {{")?;
        for &h in &region.nodes {
            let node = &m.nodes[h];
            let mut line = format!("    %{} = {}", h.index(), node.op.mnemonic());
            write_operands(&mut line, m, &node.op)?;
            write!(line, " : {}", node.ty)?;
            if let Op::Fused(_) = node.op {
                line.push_str(" {");
            }
            if let Some(name) = &node.name {
                let pad = 48usize.saturating_sub(line.len());
                write!(line, "{:pad$} ; {name}", "")?;
            }
            writeln!(out, "{line}")?;
            if let Op::Fused(kernel) = &node.op {
                write_kernel_body(out, m, kernel)?;
            }
        }
        writeln!(out, "  }}")?;
    }
    for o in &m.outputs {
        writeln!(out, "  output {} = %{}", o.name, o.value.index())?;
    }
    writeln!(out, "}}")
}

fn surrogate(s: Surrogate) -> String {
    match s {
        Surrogate::SuperSpike => "superspike".to_string(),
        Surrogate::Heaviside => "heaviside".to_string(),
        s => format!("{}(alpha={})", s.name(), num(s.alpha().unwrap_or(0.0))),
    }
}

/// A kernel constant: an `f32` constant that is exactly an `f32` prints as
/// the shortest text that reads back as that `f32` (`0.1`, not
/// `0.10000000149011612`); anything else as an `f64`.
fn kernel_num(value: f64, dtype: Dtype) -> String {
    let single = value as f32;
    if dtype == Dtype::F32 && f64::from(single).to_bits() == value.to_bits() {
        format!("{single:?}")
    } else {
        num(value)
    }
}

/// The body of a `fused` node, one instruction a line, then its outputs:
///
/// ```text
///       k0 = in %43 : f32
///       k1 = const 0.1 : f32
///       k2 = mul k1, k0 : f32
///       out k2
///     }
/// ```
fn write_kernel_body(out: &mut String, m: &Module, kernel: &FusedKernel) -> fmt::Result {
    let input_dtypes: Vec<Dtype> =
        kernel.inputs.iter().map(|&h| m.nodes.try_get(h).map_or(m.float, |n| n.ty.dtype)).collect();
    let (dtypes, _) = crate::typing::kernel_dtypes(m.float, &input_dtypes, &kernel.body);
    for (k, inst) in kernel.body.iter().enumerate() {
        let mut line = format!("      k{k} = {}", inst.mnemonic());
        let args: Vec<String> = inst.args().iter().map(|a| format!("k{a}")).collect();
        match *inst {
            KernelInst::Input(i) => match kernel.inputs.get(i as usize) {
                Some(h) => write!(line, " %{}", h.index())?,
                None => write!(line, " ?{i}")?,
            },
            KernelInst::Const { value, dtype } => write!(line, " {}", kernel_num(value, dtype))?,
            KernelInst::Threshold { surrogate: s, .. } => write!(line, " {}, {}", args.join(", "), surrogate(s))?,
            _ => write!(line, " {}", args.join(", "))?,
        }
        match dtypes.as_ref().and_then(|d| d.get(k)) {
            Some(d) => write!(line, " : {d}")?,
            None => line.push_str(" : ?"),
        }
        writeln!(out, "{line}")?;
    }
    let outs: Vec<String> = kernel.outputs.iter().map(|o| format!("k{o}")).collect();
    writeln!(out, "      out {}", outs.join(", "))?;
    writeln!(out, "    }}")
}

/// A convolution's `dilation` and `groups`, printed only when they are not
/// the defaults `[1, 1]` and 1 (so IR without them prints as before).
fn conv_extras(parts: &mut Vec<String>, dilation: [u32; 2], groups: u32) {
    if dilation != [1, 1] {
        parts.push(format!("dilation={dilation:?}"));
    }
    if groups != 1 {
        parts.push(format!("groups={groups}"));
    }
}

fn write_operands(line: &mut String, m: &Module, op: &Op) -> fmt::Result {
    let ops: Vec<String> = op.operands().iter().map(|h| format!("%{}", h.index())).collect();
    let mut parts = Vec::new();
    match op {
        Op::Input(h) => parts.push(m.inputs.try_get(*h).map_or("?".into(), |i| i.name.clone())),
        Op::Param(h) => parts.push(format!("@{}", m.params.try_get(*h).map_or("?", |p| &p.name))),
        Op::Const { value, .. } => parts.push(num(*value)),
        Op::StateRead(s) => parts.push(format!("${}", m.states.try_get(*s).map_or("?", |s| &s.name))),
        Op::StateWrite { state, .. } => {
            parts.push(format!("${}", m.states.try_get(*state).map_or("?", |s| &s.name)));
            parts.extend(ops);
        }
        Op::Threshold { surrogate, .. } => {
            parts.extend(ops);
            parts.push(self::surrogate(*surrogate));
        }
        Op::MatMul { kind, .. } => {
            parts.extend(ops);
            debug_assert!(matches!(kind, MatMulKind::Dense | MatMulKind::EventDriven));
        }
        Op::Conv2d { stride, padding, dilation, groups, .. } => {
            parts.extend(ops);
            parts.push(format!("stride={stride:?}"));
            parts.push(format!("padding={padding:?}"));
            conv_extras(&mut parts, *dilation, *groups);
        }
        Op::Pool2d { kernel, stride, padding, .. } => {
            parts.extend(ops);
            parts.push(format!("kernel={kernel:?}"));
            parts.push(format!("stride={stride:?}"));
            if *padding != [0, 0] {
                parts.push(format!("padding={padding:?}"));
            }
        }
        Op::Uniform { seed, .. } => parts.push(format!("seed={seed}")),
        Op::SumTo { shape, .. } | Op::ChannelBroadcast { shape, .. } => {
            parts.extend(ops);
            parts.push(format!("shape={shape}"));
        }
        Op::Conv2dGradInput { stride, padding, dilation, groups, input_size, .. } => {
            parts.extend(ops);
            parts.push(format!("stride={stride:?}"));
            parts.push(format!("padding={padding:?}"));
            conv_extras(&mut parts, *dilation, *groups);
            parts.push(format!("input_size={input_size:?}"));
        }
        Op::Conv2dGradWeight { kernel, stride, padding, dilation, groups, .. } => {
            parts.extend(ops);
            parts.push(format!("kernel={kernel:?}"));
            parts.push(format!("stride={stride:?}"));
            parts.push(format!("padding={padding:?}"));
            conv_extras(&mut parts, *dilation, *groups);
        }
        Op::Pool2dGrad { kernel, stride, padding, .. } => {
            parts.extend(ops);
            parts.push(format!("kernel={kernel:?}"));
            parts.push(format!("stride={stride:?}"));
            if *padding != [0, 0] {
                parts.push(format!("padding={padding:?}"));
            }
        }
        Op::StdpUpdate { rule, .. } => {
            parts.extend(ops);
            parts.push(rule.kind.name().to_string());
            parts.push(format!("eta=({}, {})", num(rule.eta_plus), num(rule.eta_minus)));
            parts.push(format!("bounds=({}, {})", num(rule.w_min), num(rule.w_max)));
            if rule.kind == crate::stdp::StdpKind::MultiplicativePow {
                parts.push(format!("mu={}", num(rule.mu)));
            }
            if rule.hardbound {
                parts.push("hardbound".to_string());
            }
        }
        Op::Fused(kernel) => {
            // `fused lif1(%3, %5)`: the kernel's name, then its inputs.
            write!(line, " {}({})", kernel.name, ops.join(", "))?;
            return Ok(());
        }
        Op::Narrow { start, len, .. } => {
            // `narrow %9, 4, 5`: the slice [4, 9) of dim 1.
            parts.extend(ops);
            parts.push(start.to_string());
            parts.push(len.to_string());
        }
        Op::Extract { index, .. } => {
            parts.extend(ops);
            parts.push(index.to_string());
        }
        _ => parts.extend(ops),
    }
    if !parts.is_empty() {
        write!(line, " {}", parts.join(", "))?;
    }
    Ok(())
}
