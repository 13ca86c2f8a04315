//! Emission of the CPU backend's artifacts as text, for `snnc compile`.

use snnc_ir::{Module, ModuleInfo, Op};

use crate::CpuError;

/// One fused kernel's CLIF text.
#[derive(Debug, Clone)]
pub struct KernelText {
    /// The kernel's name (`lif1`, `encoder`), unique within the module:
    /// a second kernel of the same name gets `.2`, and so on.
    pub name: String,
    /// The IR node it comes from, e.g. `%19`.
    pub node: String,
    /// Whether the kernel runs its whole step loop (the time loop inside
    /// the function, the states in registers) rather than one step per call.
    pub whole_loop: bool,
    pub clif: String,
}

/// The CLIF of every `fused` node of a validated f32 module, in node order.
pub fn emit_clif(module: &Module, info: &ModuleInfo) -> Result<Vec<KernelText>, CpuError> {
    if info.region_of.len() != module.nodes.len() {
        return Err(CpuError::InfoMismatch);
    }
    if module.float != snnc_ir::Dtype::F32 {
        return Err(CpuError::Unsupported(format!("{} modules: the cpu backend computes in f32", module.float)));
    }
    // Kernels whose step loop runs as one whole-loop kernel: that function's CLIF.
    let collected = crate::steploop::collected(module);
    let whole: Vec<(crate::steploop::Analysis, bool)> = module
        .body
        .iter()
        .filter_map(|r| crate::steploop::analyze(module, r, &collected).map(|a| (a, r.reverse)))
        .collect();
    let mut res = Vec::new();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for (h, node) in module.nodes.iter() {
        let Op::Fused(kernel) = &node.op else { continue };
        let count = seen.entry(kernel.name.clone()).or_default();
        *count += 1;
        let name = if *count == 1 { kernel.name.clone() } else { format!("{}.{count}", kernel.name) };
        let (clif, whole_loop) = match whole.iter().find(|(a, _)| a.fused == h) {
            Some((a, reverse)) => {
                let record = a.record_flags(module, &collected, false);
                match crate::jit::step_kernel_clif_ordered(kernel, &a.layouts, &record, *reverse) {
                    Ok(text) => (text, true),
                    Err(crate::jit::JitError::Unsupported(_)) => (kernel_clif(module, h, kernel)?, false),
                    Err(e) => return Err(CpuError::Jit(format!("step loop of kernel `{}`: {e}", kernel.name))),
                }
            }
            None => (kernel_clif(module, h, kernel)?, false),
        };
        res.push(KernelText { name, node: format!("%{}", h.index()), whole_loop, clif });
    }
    Ok(res)
}

/// The CLIF text of one kernel, or a comment saying why it has none (its
/// inputs' layouts are not the JIT's: it runs on the fallback evaluator).
fn kernel_clif(
    module: &Module,
    node: snnc_ir::Handle<snnc_ir::Node>,
    kernel: &snnc_ir::FusedKernel,
) -> Result<String, CpuError> {
    let Some(layouts) = crate::exec::input_layouts(module, node) else {
        return Ok(format!(
            "; kernel `{}` has a broadcast input: it runs on the fallback evaluator, without CLIF\n",
            kernel.name
        ));
    };
    match crate::clif::kernel_clif(kernel, &layouts) {
        Ok(text) => Ok(text),
        Err(crate::jit::JitError::Unsupported(why)) => {
            Ok(format!("; kernel `{}` runs on the fallback evaluator: {why}\n", kernel.name))
        }
        Err(e) => Err(CpuError::Jit(format!("kernel `{}`: {e}", kernel.name))),
    }
}
