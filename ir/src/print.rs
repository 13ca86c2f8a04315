//! The stable text form of a module (used by `snnc ir` and snapshots).
//!
//! ```text
//! %7 = add %3, %6 : f32[B,100]    ; lif1.v
//! ```

use std::fmt::{self, Write};

use crate::module::{Module, ParamInit, RegionKind, StateInit};
use crate::op::{MatMulKind, Op, Surrogate};

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

fn write_module(out: &mut String, m: &Module) -> fmt::Result {
    writeln!(out, "module {} {{", m.name)?;
    writeln!(out, "  steps {}, dt {}, float {}", m.steps, num(m.dt), m.float)?;
    for (_, i) in m.inputs.iter() {
        writeln!(out, "  input {} : {}", i.name, i.ty)?;
    }
    for (_, p) in m.params.iter() {
        let init = match p.init {
            ParamInit::Zeros => "zeros".to_string(),
            ParamInit::Fill(x) => format!("fill({})", num(x)),
            ParamInit::Uniform { bound } => format!("uniform({})", num(bound)),
            ParamInit::Normal { std } => format!("normal({})", num(std)),
            ParamInit::OffDiagonal => "off_diagonal".to_string(),
        };
        let kind = if p.trainable { "param" } else { "const_param" };
        writeln!(out, "  {kind} @{} : {}{} = {init}", p.name, p.dtype, p.shape)?;
    }
    for (_, s) in m.states.iter() {
        let StateInit::Fill(x) = s.init;
        writeln!(out, "  state ${} : {} = {}", s.name, s.ty, num(x))?;
    }
    for region in &m.body {
        let kw = match region.kind {
            RegionKind::Seq => "seq",
            RegionKind::Step => "step t in 0..T",
        };
        writeln!(out, "  {kw} {{")?;
        for &h in &region.nodes {
            let node = &m.nodes[h];
            let mut line = format!("    %{} = {}", h.index(), node.op.mnemonic());
            write_operands(&mut line, m, &node.op)?;
            write!(line, " : {}", node.ty)?;
            if let Some(name) = &node.name {
                let pad = 48usize.saturating_sub(line.len());
                write!(line, "{:pad$} ; {name}", "")?;
            }
            writeln!(out, "{line}")?;
        }
        writeln!(out, "  }}")?;
    }
    for o in &m.outputs {
        writeln!(out, "  output {} = %{}", o.name, o.value.index())?;
    }
    writeln!(out, "}}")
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
            parts.push(match surrogate {
                Surrogate::SuperSpike => "superspike".to_string(),
                Surrogate::Heaviside => "heaviside".to_string(),
                s => format!("{}(alpha={})", s.name(), num(s.alpha().unwrap_or(0.0))),
            });
        }
        Op::MatMul { kind, .. } => {
            parts.extend(ops);
            debug_assert!(matches!(kind, MatMulKind::Dense | MatMulKind::EventDriven));
        }
        Op::Conv2d { stride, padding, .. } => {
            parts.extend(ops);
            parts.push(format!("stride={stride:?}"));
            parts.push(format!("padding={padding:?}"));
        }
        Op::Pool2d { kernel, stride, .. } => {
            parts.extend(ops);
            parts.push(format!("kernel={kernel:?}"));
            parts.push(format!("stride={stride:?}"));
        }
        Op::Uniform { seed, .. } => parts.push(format!("seed={seed}")),
        _ => parts.extend(ops),
    }
    if !parts.is_empty() {
        write!(line, " {}", parts.join(", "))?;
    }
    Ok(())
}
