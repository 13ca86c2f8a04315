//! The Cranelift JIT for fused elementwise kernels.
//!
//! A [`KernelCompiler`] owns one `cranelift_jit::JITModule` for the host
//! ISA and compiles [`FusedKernel`]s into it (the CLIF of [`crate::clif`]);
//! each [`JitKernel`] keeps the module's code alive, so kernels outlive the
//! compiler and can be cloned and run from any thread.
//!
//! ```text
//! let mut jit = KernelCompiler::new()?;
//! let k = jit.compile(&kernel, &[InputLayout::Full, InputLayout::Scalar])?;
//! k.run(&[&v, &[0.5]], &mut [&mut v_next, &mut z])?;
//! ```
//!
//! Every element of every output gets the interpreter's `f32` bits (see
//! [`crate::clif`] for how each instruction is lowered).
//!
//! [`KernelCompiler::compile_steps`] compiles a kernel as a whole step loop
//! (the time loop inside the generated code, the states in registers). It
//! gives the same bits as one call per step, but is slower with `[T][n]`
//! sequences (see `clif::build_step_function`); prefer one call per step.

mod call;

use std::sync::Arc;

use cranelift::codegen::Context;
use cranelift::codegen::ir::Function;
use cranelift::codegen::isa::{self, OwnedTargetIsa};
use cranelift::codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
use snnc_ir::FusedKernel;

pub use crate::clif::kernel_clif;
use crate::clif::{self, LIBM};

/// How one kernel input is laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputLayout {
    /// `n` contiguous `f32`, one per element.
    Full,
    /// One `f32` broadcast to every element (constants, scalar parameters).
    Scalar,
}

/// How one input of a step-loop kernel ([`KernelCompiler::compile_steps`])
/// is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepInput {
    /// A per-step sequence: `steps * n` contiguous `f32`, step `t` at
    /// `t * n..(t + 1) * n`.
    Seq,
    /// `n` contiguous `f32`, the same at every step.
    Static,
    /// One `f32` for every element and step.
    Scalar,
    /// A state variable: read from its buffer (`n` `f32`) at step 0; at
    /// step `t + 1` it is kernel output `output` of step `t`; after the last
    /// step the buffer holds that output of the last step.
    State { output: u32 },
}

/// Why a kernel could not be compiled or run.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// The kernel uses something this backend does not run (`f64`).
    #[error("unsupported by the CPU JIT: {0}")]
    Unsupported(String),
    /// Cranelift failed, or the kernel is malformed.
    #[error("code generation failed: {0}")]
    Codegen(String),
    /// Buffers of the wrong number or length were passed.
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// The host ISA, as the JIT compiles for it: `cranelift_native` detection
/// (AVX and friends where present), `opt_level=speed`, absolute addresses.
pub(crate) fn host_isa() -> Result<OwnedTargetIsa, JitError> {
    let mut flags = settings::builder();
    let set = |flags: &mut settings::Builder, k: &str, v: &str| {
        flags.set(k, v).map_err(|e| JitError::Codegen(format!("cranelift setting {k}={v}: {e}")))
    };
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(&mut flags, "is_pic", "false")?;
    let builder: isa::Builder =
        cranelift_native::builder().map_err(|e| JitError::Unsupported(format!("host machine: {e}")))?;
    builder.finish(settings::Flags::new(flags)).map_err(|e| JitError::Codegen(format!("host ISA: {e}")))
}

/// Compiles fused kernels into one JIT module; see the module docs.
pub struct KernelCompiler {
    code: Arc<call::Code>,
    ctx: Context,
    count: u32,
}

impl std::fmt::Debug for KernelCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelCompiler").field("kernels", &self.count).finish_non_exhaustive()
    }
}

impl KernelCompiler {
    /// A compiler for the host machine.
    pub fn new() -> Result<Self, JitError> {
        let isa = host_isa()?;
        let call_conv = isa.default_call_conv();
        let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        builder.symbol(LIBM[0].1, clif::snnc_expf as *const u8);
        builder.symbol(LIBM[1].1, clif::snnc_logf as *const u8);
        builder.symbol(LIBM[2].1, clif::snnc_tanhf as *const u8);
        let mut module = JITModule::new(builder);
        // The libm functions get ids 0, 1, 2: the user external names that
        // `clif::build_function` refers to them by.
        for (idx, (_, name)) in LIBM.iter().enumerate() {
            let id = module
                .declare_function(name, Linkage::Import, &clif::libm_signature(call_conv))
                .map_err(|e| JitError::Codegen(format!("declaring {name}: {e}")))?;
            if id.as_u32() as usize != idx {
                return Err(JitError::Codegen(format!("{name} got function id {id}, expected {idx}")));
            }
        }
        let ctx = module.make_context();
        Ok(KernelCompiler { code: Arc::new(call::Code::new(module)), ctx, count: 0 })
    }

    /// Compiles `kernel` with `inputs[k]` the layout of its input `k`.
    pub fn compile(&mut self, kernel: &FusedKernel, inputs: &[InputLayout]) -> Result<JitKernel, JitError> {
        let code = Arc::clone(&self.code);
        let mut guard = code.module();
        let module: &mut JITModule = &mut guard;
        let func = clif::build_function(kernel, inputs, module.isa().frontend_config())?;
        let ptr = self.define(module, func, &kernel.name)?;
        drop(guard);
        Ok(JitKernel {
            name: Arc::from(kernel.name.as_str()),
            layouts: Arc::from(inputs),
            n_outputs: kernel.outputs.len(),
            entry: call::Entry::new(code, ptr),
        })
    }
}

impl KernelCompiler {
    /// Compiles `kernel` as a whole step loop (see [`StepInput`]): the time
    /// loop runs inside the generated code, per block of 16, 4, then 1 elements, with
    /// the states in registers. `record[j]` says whether output `j` is
    /// written out at every step (a `steps * n` buffer); the states are
    /// written once, after the last step.
    pub fn compile_steps(
        &mut self,
        kernel: &FusedKernel,
        inputs: &[StepInput],
        record: &[bool],
    ) -> Result<JitStepKernel, JitError> {
        self.compile_steps_ordered(kernel, inputs, record, false)
    }

    /// [`KernelCompiler::compile_steps`], with `reverse` for a reverse step
    /// loop: the steps run from `t = steps - 1` down to `0`, step `t` still
    /// reading the rows `t` of its sequences and writing the rows `t` of
    /// its recorded outputs; a state starts from its buffer at
    /// `t = steps - 1` and ends with the output of step 0.
    pub fn compile_steps_ordered(
        &mut self,
        kernel: &FusedKernel,
        inputs: &[StepInput],
        record: &[bool],
        reverse: bool,
    ) -> Result<JitStepKernel, JitError> {
        self.compile_steps_bits(kernel, inputs, record, &vec![false; record.len()], reverse)
    }

    /// [`KernelCompiler::compile_steps_ordered`] with the recorded outputs
    /// that have `bits[j]` (each a `threshold`, so `0` or `1`) written as
    /// bits (see `clif::build_step_function_bits`); such a kernel runs
    /// with [`JitStepKernel::run_chunked`] only.
    pub fn compile_steps_bits(
        &mut self,
        kernel: &FusedKernel,
        inputs: &[StepInput],
        record: &[bool],
        bits: &[bool],
        reverse: bool,
    ) -> Result<JitStepKernel, JitError> {
        let code = Arc::clone(&self.code);
        let mut guard = code.module();
        let module: &mut JITModule = &mut guard;
        let target = module.isa().frontend_config();
        let func = clif::build_step_function_bits(kernel, inputs, record, bits, reverse, target)?;
        let ptr = self.define(module, func, &kernel.name)?;
        drop(guard);
        Ok(JitStepKernel {
            name: Arc::from(kernel.name.as_str()),
            inputs: Arc::from(inputs),
            record: Arc::from(record),
            bits: Arc::from(bits),
            reverse,
            entry: call::StepEntry::new(code, ptr),
        })
    }

    /// Defines `func` in `module` and returns its finalized code.
    fn define(&mut self, module: &mut JITModule, func: Function, name: &str) -> Result<*const u8, JitError> {
        // A unique symbol per kernel; the name is only for profilers.
        let symbol = format!("snnc_kernel_{}_{name}", self.count);
        let id = module
            .declare_function(&symbol, Linkage::Local, &func.signature)
            .map_err(|e| JitError::Codegen(format!("declaring {symbol}: {e}")))?;
        self.ctx.clear();
        self.ctx.func = func;
        module.define_function(id, &mut self.ctx).map_err(|e| JitError::Codegen(format!("kernel {name}: {e:?}")))?;
        module.clear_context(&mut self.ctx);
        module.finalize_definitions().map_err(|e| JitError::Codegen(format!("kernel {name}: {e}")))?;
        self.count += 1;
        Ok(module.get_finalized_function(id))
    }
}

/// The CLIF text of [`KernelCompiler::compile_steps`]'s function.
pub fn step_kernel_clif(kernel: &FusedKernel, inputs: &[StepInput], record: &[bool]) -> Result<String, JitError> {
    step_kernel_clif_ordered(kernel, inputs, record, false)
}

/// The CLIF text of [`KernelCompiler::compile_steps_ordered`]'s function.
pub fn step_kernel_clif_ordered(
    kernel: &FusedKernel,
    inputs: &[StepInput],
    record: &[bool],
    reverse: bool,
) -> Result<String, JitError> {
    Ok(clif::build_step_function(kernel, inputs, record, reverse, host_isa()?.frontend_config())?.display().to_string())
}

/// A compiled step loop. Cheap to clone; `Send` and `Sync`.
#[derive(Clone, Debug)]
pub struct JitStepKernel {
    name: Arc<str>,
    inputs: Arc<[StepInput]>,
    record: Arc<[bool]>,
    bits: Arc<[bool]>,
    reverse: bool,
    entry: call::StepEntry,
}

/// The outputs of a chunk of steps of [`JitStepKernel::run_chunked`], per
/// recorded output: values, or bits (`u16` words: bit `k` of word `w` is
/// element `16 w + k` of the chunk's step-major `[steps][count]` block).
#[derive(Clone, Copy, Debug)]
pub enum ChunkOut<'a> {
    Values(&'a [f32]),
    Bits(&'a [u16]),
}

impl JitStepKernel {
    /// Runs `steps` steps over `n` elements. `ins` has one buffer per
    /// non-state input, in order (`Seq`: `steps * n`, `Static`: `n`,
    /// `Scalar`: 1); `states` one per state input, in order (`n` each,
    /// updated in place); `outs` one per recorded output (`steps * n`).
    /// Checked before the generated code runs; `steps == 0` or `n == 0`
    /// changes nothing.
    pub fn run(
        &self,
        ins: &[&[f32]],
        states: &mut [&mut [f32]],
        outs: &mut [&mut [f32]],
        n: usize,
        steps: usize,
    ) -> Result<(), JitError> {
        self.run_parts(ins, states, outs, n, steps, 1)
    }

    /// [`JitStepKernel::run`] with the elements split into `parts` parts
    /// (of multiples of 16 elements) run on the thread pool: every element
    /// gets the same operations, so the results are the same bits.
    pub fn run_parts(
        &self,
        ins: &[&[f32]],
        states: &mut [&mut [f32]],
        outs: &mut [&mut [f32]],
        n: usize,
        steps: usize,
        parts: usize,
    ) -> Result<(), JitError> {
        if self.bits.iter().any(|&b| b) {
            return Err(JitError::Shape(format!("kernel {}: outputs written as bits need run_chunked", self.name)));
        }
        let lens: Vec<usize> = outs.iter().map(|o| o.len()).collect();
        let Some(per_input) = self.check(ins, states, lens.into_iter(), n, steps)? else {
            return Ok(());
        };
        let per_element: Vec<bool> =
            self.inputs.iter().map(|i| matches!(i, StepInput::Seq | StepInput::Static)).collect();
        let per = n.div_ceil(parts.max(1)).div_ceil(16) * 16;
        let ranges: Vec<(usize, usize)> = (0..n).step_by(per).map(|s| (s, per.min(n - s))).collect();
        self.entry.call(&per_input, &per_element, states, outs, n, steps, &ranges);
        Ok(())
    }

    /// [`JitStepKernel::run`] for a forward loop, over `parts` (disjoint
    /// `(start, count)` ranges of the elements, each with a state of the
    /// caller's) on the thread pool, each part in chunks of `chunk` steps
    /// whose recorded outputs go to buffers of the part's own instead of
    /// `steps * n` buffers: after each chunk of steps `t0..t1`, `visit(&mut
    /// state, t0, t1, outs)` gets them (`outs[r]`: `(t1 - t0) * count`
    /// values, step-major; outputs written as bits, see [`ChunkOut`]). Every
    /// element gets the same operations as with [`JitStepKernel::run`].
    /// With outputs written as bits, `n` and every part's start and count
    /// must be multiples of 16.
    #[allow(clippy::too_many_arguments)]
    pub fn run_chunked<P: Send>(
        &self,
        ins: &[&[f32]],
        states: &mut [&mut [f32]],
        n: usize,
        steps: usize,
        parts: Vec<((usize, usize), P)>,
        chunk: usize,
        visit: impl Fn(&mut P, usize, usize, &[ChunkOut<'_>]) + Sync,
    ) -> Result<(), JitError> {
        let name = &self.name;
        if self.reverse {
            return Err(JitError::Shape(format!("kernel {name}: a reverse loop does not run in chunks")));
        }
        if parts.iter().any(|&((start, count), _)| start.checked_add(count).is_none_or(|end| end > n)) {
            return Err(JitError::Shape(format!("kernel {name}: a part is not inside the {n} elements")));
        }
        let any_bits = self.bits.iter().any(|&b| b);
        let whole = |x: usize| x.is_multiple_of(16);
        if any_bits && (!whole(n) || parts.iter().any(|&((start, count), _)| !whole(start) || !whole(count))) {
            return Err(JitError::Shape(format!("kernel {name}: bits need multiples of 16 elements")));
        }
        let n_rec = self.record.iter().filter(|&&r| r).count();
        let total = n.saturating_mul(steps);
        let Some(per_input) = self.check(ins, states, std::iter::repeat_n(total, n_rec), n, steps)? else {
            return Ok(());
        };
        let layout: Vec<(bool, bool)> = self
            .inputs
            .iter()
            .map(|i| (matches!(i, StepInput::Seq | StepInput::Static), *i == StepInput::Seq))
            .collect();
        let bits: Vec<bool> = self.record.iter().zip(self.bits.iter()).filter(|(r, _)| **r).map(|(_, b)| *b).collect();
        self.entry.call_chunked(&per_input, &layout, states, &bits, n, steps, parts, chunk, visit);
        Ok(())
    }

    /// Whether kernel output `j` is written as bits.
    pub fn writes_bits(&self, j: usize) -> bool {
        self.bits.get(j).copied().unwrap_or(false)
    }

    /// Checks the buffers of a run (`outs`: the lengths of the recorded
    /// outputs' buffers) and returns the input pointers (null for states),
    /// or `None` if there is nothing to compute.
    fn check(
        &self,
        ins: &[&[f32]],
        states: &[&mut [f32]],
        outs: impl ExactSizeIterator<Item = usize>,
        n: usize,
        steps: usize,
    ) -> Result<Option<Vec<*const f32>>, JitError> {
        let name = &self.name;
        let shape = |what: String| Err(JitError::Shape(format!("kernel {name}: {what}")));
        let n_states = self.inputs.iter().filter(|i| matches!(i, StepInput::State { .. })).count();
        let n_rec = self.record.iter().filter(|&&r| r).count();
        let n_outs = outs.len();
        if ins.len() != self.inputs.len() - n_states || states.len() != n_states || n_outs != n_rec {
            return shape(format!(
                "{} inputs, {} states, {n_outs} outputs given; {}, {n_states}, {n_rec} expected",
                ins.len(),
                states.len(),
                self.inputs.len() - n_states
            ));
        }
        let Some(total) = n.checked_mul(steps) else {
            return shape(format!("{steps} steps of {n} elements overflow"));
        };
        let mut given = ins.iter();
        let mut per_input: Vec<*const f32> = Vec::with_capacity(self.inputs.len());
        for (k, input) in self.inputs.iter().enumerate() {
            let want = match input {
                StepInput::State { .. } => {
                    per_input.push(std::ptr::null());
                    continue;
                }
                StepInput::Seq => total,
                StepInput::Static => n,
                StepInput::Scalar => 1,
            };
            let x = given.next().expect("counted above");
            if x.len() != want {
                return shape(format!("input {k} ({input:?}) has {} elements, {want} expected", x.len()));
            }
            per_input.push(x.as_ptr());
        }
        if let Some((s, x)) = states.iter().enumerate().find(|(_, x)| x.len() != n) {
            return shape(format!("state {s} has {} elements, {n} expected", x.len()));
        }
        if let Some((r, len)) = outs.enumerate().find(|&(_, len)| len != total) {
            return shape(format!("recorded output {r} has {len} elements, {total} expected"));
        }
        if total == 0 {
            return Ok(None);
        }
        Ok(Some(per_input))
    }
}

/// A compiled kernel. Cheap to clone; `Send` and `Sync`.
#[derive(Clone, Debug)]
pub struct JitKernel {
    name: Arc<str>,
    layouts: Arc<[InputLayout]>,
    n_outputs: usize,
    entry: call::Entry,
}

impl JitKernel {
    /// The kernel's name (as in the IR).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn n_inputs(&self) -> usize {
        self.layouts.len()
    }

    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// The input layouts it was compiled for.
    pub fn layouts(&self) -> &[InputLayout] {
        &self.layouts
    }

    /// Computes every element of every output: `n = outs[k].len()` for all
    /// `k`; `ins[k].len()` is `n` for a `Full` input, 1 for a `Scalar` one.
    /// The counts and lengths are checked before the generated code runs.
    pub fn run(&self, ins: &[&[f32]], outs: &mut [&mut [f32]]) -> Result<(), JitError> {
        let name = &self.name;
        if ins.len() != self.layouts.len() || outs.len() != self.n_outputs {
            return Err(JitError::Shape(format!(
                "kernel {name}: {} inputs and {} outputs given, {} and {} expected",
                ins.len(),
                outs.len(),
                self.layouts.len(),
                self.n_outputs
            )));
        }
        let Some(n) = outs.first().map(|o| o.len()) else {
            return Ok(());
        };
        if let Some((k, o)) = outs.iter().enumerate().find(|(_, o)| o.len() != n) {
            return Err(JitError::Shape(format!("kernel {name}: output {k} has {} elements, output 0 {n}", o.len())));
        }
        for (k, (x, layout)) in ins.iter().zip(self.layouts.iter()).enumerate() {
            let want = match layout {
                InputLayout::Full => n,
                InputLayout::Scalar => 1,
            };
            if x.len() != want {
                return Err(JitError::Shape(format!(
                    "kernel {name}: input {k} ({layout:?}) has {} elements, {want} expected",
                    x.len()
                )));
            }
        }
        if n == 0 {
            return Ok(());
        }
        self.entry.call(ins, outs, n);
        Ok(())
    }
}
