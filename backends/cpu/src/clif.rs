//! Cranelift IR (CLIF) for fused elementwise kernels.
//!
//! `build_function` turns a [`FusedKernel`] into one CLIF function
//!
//! ```text
//! fn(ins: *const *const f32, outs: *const *mut f32, n: u64)
//! ```
//!
//! that computes every element `0..n` of every output. It is pure: the same
//! kernel and layouts give the same function, whose text
//! [`kernel_clif`] returns (for `snnc compile --emit clif`); the JIT in
//! [`crate::jit`] compiles exactly this function.
//!
//! # Shape of the code
//!
//! - The entry block loads the input and output pointers, the
//!   [`InputLayout::Scalar`] inputs and the constants (splat to `f32x4`),
//!   and computes every instruction that depends on nothing else (a
//!   *uniform* value): all of that is hoisted out of the loop.
//! - A loop over `n & !3` elements, four lanes at a time (`f32x4`: Cranelift
//!   vectors are 128-bit only), loads the [`InputLayout::Full`] inputs,
//!   computes the remaining instructions and stores the outputs.
//! - A scalar tail over the last `n % 4` elements runs the same vector
//!   instructions with one live lane (lane 0 loaded with `scalar_to_vector`,
//!   stored with `extractlane`), so both loops share one lowering of each op.
//! - Only instructions that reach an output are emitted.
//!
//! # Numerics: the interpreter's bits
//!
//! Each [`KernelInst`] is lowered to the operation the interpreter
//! (`snnc-interp`'s `kernels.rs`) performs in `f32`, in the same order:
//!
//! | inst | CLIF |
//! |---|---|
//! | `add`/`sub`/`mul`/`div`/`sqrt` | `fadd`/`fsub`/`fmul`/`fdiv`/`sqrt`, IEEE round-to-nearest; never `fma` |
//! | `neg`/`abs` | `fneg`/`fabs` (sign-bit operations, NaNs included) |
//! | `max(a, b)` | `b > a ? b : a`, then the canonical NaN where `a` or `b` is NaN: `bitselect` on `fcmp gt` and `fcmp uno` masks (`torch.maximum`; `a` wins ties, so `max(-0, +0) = -0`) |
//! | `min(a, b)` | the same with `b < a` |
//! | `relu(x)` | `max(x, 0)` as above |
//! | `exp`/`log`/`tanh` | per lane, a call of `snnc_expf`/`snnc_logf`/`snnc_tanhf`, which are Rust's `f32::exp`/`ln`/`tanh` |
//! | `gt`/`ge`/`lt`/`le`/`eq` | ordered `fcmp` mask (false on NaN), `band` with `1.0` |
//! | `threshold(x)` | `fcmp gt x, 0`, `band` with `1.0` |
//! | `select(c, a, b)` | `bitselect` on the mask `fcmp ne c, 0` (true for NaN, as Rust's `!=`) |
//! | `stop_gradient`, `cast` to `f32`/`spike` | identity (spikes are `0.0`/`1.0` in `f32`) |
//!
//! Nothing branches on data. Only `f32` kernels are supported: a kernel with
//! an `f64` constant or cast is [`JitError::Unsupported`] (`f64` modules are
//! the interpreter's).

use std::collections::BTreeMap;

use cranelift::codegen::ir::{
    AbiParam, Block, BlockArg, Endianness, ExtFuncData, ExternalName, FuncRef, Function, InstBuilder, MemFlagsData,
    Signature, UserExternalName, UserFuncName, Value, condcodes::FloatCC, condcodes::IntCC, types,
};
use cranelift::codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift::frontend::{FunctionBuilder, FunctionBuilderContext};
use snnc_ir::{BinaryOp, CompareOp, Dtype, FusedKernel, KernelInst, UnaryOp};

use crate::jit::{InputLayout, JitError, StepInput};

/// The functions generated code calls for the ops Cranelift has no
/// instruction for, in the order of their user external name index
/// (namespace 0): the JIT declares them first, so their module function ids
/// are these indices.
pub(crate) const LIBM: [(UnaryOp, &str); 3] =
    [(UnaryOp::Exp, "snnc_expf"), (UnaryOp::Log, "snnc_logf"), (UnaryOp::Tanh, "snnc_tanhf")];

/// `e^x` as the interpreter computes it in `f32` (Rust's `f32::exp`).
pub extern "C" fn snnc_expf(x: f32) -> f32 {
    x.exp()
}

/// `ln x` as the interpreter computes it in `f32` (Rust's `f32::ln`).
pub extern "C" fn snnc_logf(x: f32) -> f32 {
    x.ln()
}

/// `tanh x` as the interpreter computes it in `f32` (Rust's `f32::tanh`).
pub extern "C" fn snnc_tanhf(x: f32) -> f32 {
    x.tanh()
}

/// The CLIF text of `kernel`'s function for the given input layouts, as the
/// JIT compiles it for the host (whose calling convention it names, e.g.
/// `system_v`). Deterministic: the same on every call and run.
pub fn kernel_clif(kernel: &FusedKernel, inputs: &[InputLayout]) -> Result<String, JitError> {
    let func = build_function(kernel, inputs, crate::jit::host_isa()?.frontend_config())?;
    Ok(func.display().to_string())
}

/// The signature of every kernel function: `(ins, outs, n)`.
pub(crate) fn kernel_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I64));
    sig
}

/// The signature of the `LIBM` functions: `f32 -> f32`.
pub(crate) fn libm_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.push(AbiParam::new(types::F32));
    sig.returns.push(AbiParam::new(types::F32));
    sig
}

/// Checks that `kernel` is well formed and `f32`, and that `inputs` gives one
/// layout per kernel input.
pub(crate) fn check_kernel(kernel: &FusedKernel, inputs: &[InputLayout]) -> Result<(), JitError> {
    let name = &kernel.name;
    if inputs.len() != kernel.inputs.len() {
        return Err(JitError::Shape(format!(
            "kernel {name}: {} input layouts for {} inputs",
            inputs.len(),
            kernel.inputs.len()
        )));
    }
    for (i, inst) in kernel.body.iter().enumerate() {
        if let Some(&a) = inst.args().iter().find(|&&a| a as usize >= i) {
            return Err(JitError::Codegen(format!("kernel {name}: instruction {i} reads %{a}, not an earlier one")));
        }
        match *inst {
            KernelInst::Input(k) if k as usize >= inputs.len() => {
                return Err(JitError::Codegen(format!("kernel {name}: instruction {i} reads missing input {k}")));
            }
            KernelInst::Const { dtype: Dtype::F64, .. } | KernelInst::Cast { dtype: Dtype::F64, .. } => {
                return Err(JitError::Unsupported(format!(
                    "kernel {name}: f64 (the CPU backend runs f32 only; use the interpreter)"
                )));
            }
            _ => {}
        }
    }
    if let Some(&o) = kernel.outputs.iter().find(|&&o| o as usize >= kernel.body.len()) {
        return Err(JitError::Codegen(format!("kernel {name}: output names missing instruction {o}")));
    }
    Ok(())
}

/// The function for `kernel`, named `%<kernel name>`; see the module docs.
pub(crate) fn build_function(
    kernel: &FusedKernel,
    inputs: &[InputLayout],
    target: TargetFrontendConfig,
) -> Result<Function, JitError> {
    if target.pointer_bits() != 64 {
        return Err(JitError::Unsupported("the CPU backend needs 64-bit pointers".into()));
    }
    let call_conv = target.default_call_conv;
    check_kernel(kernel, inputs)?;
    let body = &kernel.body;

    // Liveness: what reaches an output.
    let mut live = vec![false; body.len()];
    for &o in &kernel.outputs {
        live[o as usize] = true;
    }
    for i in (0..body.len()).rev() {
        if live[i] {
            for a in body[i].args() {
                live[a as usize] = true;
            }
        }
    }
    // Uniformity: the same value at every element.
    let mut uniform = vec![false; body.len()];
    for (i, inst) in body.iter().enumerate() {
        uniform[i] = match *inst {
            KernelInst::Input(k) => inputs[k as usize] == InputLayout::Scalar,
            KernelInst::Const { .. } => true,
            _ => inst.args().iter().all(|&a| uniform[a as usize]),
        };
    }

    let mut func = Function::with_name_signature(UserFuncName::testcase(&kernel.name), kernel_signature(call_conv));
    let mut libm: [Option<FuncRef>; 3] = [None; 3];
    for (idx, (op, _)) in LIBM.iter().enumerate() {
        let used =
            body.iter().zip(&live).any(|(inst, &l)| l && matches!(*inst, KernelInst::Unary { op: o, .. } if o == *op));
        if used {
            let signature = func.import_signature(libm_signature(call_conv));
            let name = func.declare_imported_user_function(UserExternalName { namespace: 0, index: idx as u32 });
            libm[idx] = Some(func.import_function(ExtFuncData {
                name: ExternalName::user(name),
                signature,
                colocated: false,
                patchable: false,
            }));
        }
    }

    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let entry = b.create_block();
    let vloop = b.create_block();
    let tail_check = b.create_block();
    let tail = b.create_block();
    let exit = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.append_block_param(vloop, types::I64);
    b.append_block_param(tail_check, types::I64);
    b.append_block_param(tail, types::I64);

    // Entry: pointers, hoisted values.
    b.switch_to_block(entry);
    b.seal_block(entry);
    let (ins_ptr, outs_ptr, n) = {
        let p = b.block_params(entry);
        (p[0], p[1], p[2])
    };
    let ptr_flags = MemFlagsData::trusted().with_readonly();
    let mut full_base: Vec<Option<Value>> = vec![None; inputs.len()];
    let mut vals: Vec<Option<Value>> = vec![None; body.len()];
    let used_inputs: Vec<bool> = (0..inputs.len())
        .map(|k| body.iter().zip(&live).any(|(inst, &l)| l && *inst == KernelInst::Input(k as u32)))
        .collect();
    for (k, layout) in inputs.iter().enumerate() {
        if !used_inputs[k] {
            continue;
        }
        let p = b.ins().load(types::I64, ptr_flags, ins_ptr, (8 * k) as i32);
        if *layout == InputLayout::Full {
            full_base[k] = Some(p);
        }
    }
    let out_base: Vec<Value> =
        (0..kernel.outputs.len()).map(|k| b.ins().load(types::I64, ptr_flags, outs_ptr, (8 * k) as i32)).collect();
    let consts = Consts::new(&mut b, body, &live);
    {
        let mut g = Gen { b: &mut b, libm, consts: &consts, lanes: 1 };
        for (i, inst) in body.iter().enumerate() {
            if !(live[i] && uniform[i]) {
                continue;
            }
            let v = match *inst {
                KernelInst::Input(k) => {
                    let p = g.b.ins().load(types::I64, ptr_flags, ins_ptr, (8 * k) as i32);
                    let x = g.b.ins().load(types::F32, data_flags(), p, 0);
                    g.b.ins().splat(types::F32X4, x)
                }
                _ => g.inst(inst, &vals),
            };
            vals[i] = Some(v);
        }
    }
    let nvec = b.ins().band_imm_s(n, -4);
    let zero = b.ins().iconst(types::I64, 0);
    let has_vec = b.ins().icmp_imm_s(IntCC::NotEqual, nvec, 0);
    b.ins().brif(has_vec, vloop, &[zero.into()], tail_check, &[zero.into()]);

    // The vector loop.
    b.switch_to_block(vloop);
    let i = b.block_params(vloop)[0];
    let ctx = Body { kernel, body, live: &live, uniform: &uniform, full_base: &full_base, out_base: &out_base };
    ctx.emit(&mut b, libm, &consts, &vals, i, 4);
    let next = b.ins().iadd_imm_s(i, 4);
    let more = b.ins().icmp(IntCC::UnsignedLessThan, next, nvec);
    b.ins().brif(more, vloop, &[next.into()], tail_check, &[next.into()]);
    b.seal_block(vloop);

    // The scalar tail.
    b.switch_to_block(tail_check);
    let j = b.block_params(tail_check)[0];
    let more = b.ins().icmp(IntCC::UnsignedLessThan, j, n);
    b.ins().brif(more, tail, &[j.into()], exit, &[]);
    b.seal_block(tail_check);

    b.switch_to_block(tail);
    let j = b.block_params(tail)[0];
    ctx.emit(&mut b, libm, &consts, &vals, j, 1);
    let next = b.ins().iadd_imm_s(j, 1);
    let more = b.ins().icmp(IntCC::UnsignedLessThan, next, n);
    b.ins().brif(more, tail, &[next.into()], exit, &[]);
    b.seal_block(tail);

    b.switch_to_block(exit);
    b.seal_block(exit);
    b.ins().return_(&[]);
    b.finalize(target);
    Ok(func)
}

/// Flags of the f32 data accesses: in bounds (checked before the call),
/// not necessarily 16-byte aligned.
fn data_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// The loop-invariant constant vectors: the kernel's constants and what
/// the lowered ops need (`0`, `1`, NaN), each made once in the entry block
/// (in order of first use), keyed by their bits.
struct Consts {
    splats: BTreeMap<u32, Value>,
}

impl Consts {
    fn new(b: &mut FunctionBuilder<'_>, body: &[KernelInst], live: &[bool]) -> Self {
        let mut order: Vec<f32> = Vec::new();
        for (inst, &l) in body.iter().zip(live) {
            if !l {
                continue;
            }
            match *inst {
                KernelInst::Const { value, .. } => order.push(value as f32),
                KernelInst::Unary { op: UnaryOp::Relu, .. } => order.extend([0.0, f32::NAN]),
                KernelInst::Binary { op: BinaryOp::Max | BinaryOp::Min, .. } => order.push(f32::NAN),
                KernelInst::Compare { .. } => order.push(1.0),
                KernelInst::Threshold { .. } => order.extend([0.0, 1.0]),
                KernelInst::Select { .. } => order.push(0.0),
                _ => {}
            }
        }
        let mut splats = BTreeMap::new();
        for x in order {
            splats.entry(x.to_bits()).or_insert_with(|| {
                let s = b.ins().f32const(x);
                b.ins().splat(types::F32X4, s)
            });
        }
        Consts { splats }
    }

    /// The splat of `x`, made by [`Consts::new`].
    fn get(&self, x: f32) -> Value {
        *self.splats.get(&x.to_bits()).expect("constants are made before use")
    }
}

/// What the loop bodies need to know about the kernel.
struct Body<'a> {
    kernel: &'a FusedKernel,
    body: &'a [KernelInst],
    live: &'a [bool],
    uniform: &'a [bool],
    full_base: &'a [Option<Value>],
    out_base: &'a [Value],
}

impl Body<'_> {
    /// One loop body at element index `idx` with 4 lanes (vector loop) or 1
    /// (tail): loads, the non-uniform instructions, stores.
    fn emit(
        &self,
        b: &mut FunctionBuilder<'_>,
        libm: [Option<FuncRef>; 3],
        consts: &Consts,
        hoisted: &[Option<Value>],
        idx: Value,
        lanes: u8,
    ) {
        let off = b.ins().ishl_imm_u(idx, 2);
        let mut vals = hoisted.to_vec();
        let mut g = Gen { b, libm, consts, lanes };
        for (i, inst) in self.body.iter().enumerate() {
            if !self.live[i] || self.uniform[i] {
                continue;
            }
            let v = match *inst {
                KernelInst::Input(k) => {
                    let base = self.full_base[k as usize].expect("a non-uniform input is Full and loaded");
                    let addr = g.b.ins().iadd(base, off);
                    if lanes == 4 {
                        g.b.ins().load(types::F32X4, data_flags(), addr, 0)
                    } else {
                        let x = g.b.ins().load(types::F32, data_flags(), addr, 0);
                        g.b.ins().scalar_to_vector(types::F32X4, x)
                    }
                }
                _ => g.inst(inst, &vals),
            };
            vals[i] = Some(v);
        }
        for (k, &o) in self.kernel.outputs.iter().enumerate() {
            let v = vals[o as usize].expect("outputs are live");
            let addr = g.b.ins().iadd(self.out_base[k], off);
            if lanes == 4 {
                g.b.ins().store(data_flags(), v, addr, 0);
            } else {
                let x = g.b.ins().extractlane(v, 0);
                g.b.ins().store(data_flags(), x, addr, 0);
            }
        }
    }
}

/// Lowers instructions on `f32x4` values.
struct Gen<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    libm: [Option<FuncRef>; 3],
    consts: &'a Consts,
    /// Live lanes: 4, or 1 (tail and hoisted values: only lane 0 matters,
    /// or all lanes are equal).
    lanes: u8,
}

impl Gen<'_, '_> {
    fn inst(&mut self, inst: &KernelInst, vals: &[Option<Value>]) -> Value {
        let v = |a: u32| vals[a as usize].expect("operands are emitted before use");
        match *inst {
            KernelInst::Input(_) => unreachable!("inputs are loaded by the caller"),
            KernelInst::Const { value, .. } => self.consts.get(value as f32),
            KernelInst::Unary { op, arg } => self.unary(op, v(arg)),
            KernelInst::Binary { op, lhs, rhs } => self.binary(op, v(lhs), v(rhs)),
            KernelInst::Compare { op, lhs, rhs } => {
                let cc = match op {
                    CompareOp::Gt => FloatCC::GreaterThan,
                    CompareOp::Ge => FloatCC::GreaterThanOrEqual,
                    CompareOp::Lt => FloatCC::LessThan,
                    CompareOp::Le => FloatCC::LessThanOrEqual,
                    CompareOp::Eq => FloatCC::Equal,
                };
                let m = self.mask(cc, v(lhs), v(rhs));
                self.b.ins().band(m, self.consts.get(1.0))
            }
            KernelInst::Select { cond, on_true, on_false } => {
                let m = self.mask(FloatCC::NotEqual, v(cond), self.consts.get(0.0));
                self.b.ins().bitselect(m, v(on_true), v(on_false))
            }
            KernelInst::Threshold { arg, .. } => {
                let m = self.mask(FloatCC::GreaterThan, v(arg), self.consts.get(0.0));
                self.b.ins().band(m, self.consts.get(1.0))
            }
            KernelInst::StopGradient(arg) | KernelInst::Cast { arg, .. } => v(arg),
        }
    }

    /// The lanes where `a cc b` as an all-ones/all-zeros `f32x4`.
    fn mask(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        let m = self.b.ins().fcmp(cc, a, b);
        self.b.ins().bitcast(types::F32X4, MemFlagsData::new().with_endianness(Endianness::Little), m)
    }

    /// `max_nan`/`min_nan` of the interpreter: `cc` is `>` for max, `<`
    /// for min; `b cc a ? b : a`, NaN when either is NaN.
    fn max_min(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        let pick_b = self.mask(cc, b, a);
        let r = self.b.ins().bitselect(pick_b, b, a);
        let nan = self.mask(FloatCC::Unordered, a, b);
        self.b.ins().bitselect(nan, self.consts.get(f32::NAN), r)
    }

    fn unary(&mut self, op: UnaryOp, x: Value) -> Value {
        match op {
            UnaryOp::Neg => self.b.ins().fneg(x),
            UnaryOp::Abs => self.b.ins().fabs(x),
            UnaryOp::Sqrt => self.b.ins().sqrt(x),
            UnaryOp::Relu => self.max_min(FloatCC::GreaterThan, x, self.consts.get(0.0)),
            UnaryOp::Exp | UnaryOp::Log | UnaryOp::Tanh => {
                let idx = LIBM.iter().position(|(o, _)| *o == op).expect("a libm op");
                let f = self.libm[idx].expect("libm functions are imported when used");
                if self.lanes == 1 {
                    let s = self.b.ins().extractlane(x, 0);
                    let r = self.call1(f, s);
                    self.b.ins().splat(types::F32X4, r)
                } else {
                    let mut acc = x;
                    for lane in 0..4u8 {
                        let s = self.b.ins().extractlane(x, lane);
                        let r = self.call1(f, s);
                        acc = self.b.ins().insertlane(acc, r, lane);
                    }
                    acc
                }
            }
        }
    }

    fn call1(&mut self, f: FuncRef, x: Value) -> Value {
        let call = self.b.ins().call(f, &[x]);
        self.b.inst_results(call)[0]
    }

    fn binary(&mut self, op: BinaryOp, a: Value, b: Value) -> Value {
        match op {
            BinaryOp::Add => self.b.ins().fadd(a, b),
            BinaryOp::Sub => self.b.ins().fsub(a, b),
            BinaryOp::Mul => self.b.ins().fmul(a, b),
            BinaryOp::Div => self.b.ins().fdiv(a, b),
            BinaryOp::Max => self.max_min(FloatCC::GreaterThan, a, b),
            BinaryOp::Min => self.max_min(FloatCC::LessThan, a, b),
        }
    }
}

// ---------------------------------------------------------------------------
// Step loops: the time loop inside the kernel, the state in registers.

/// The signature of step-loop functions: `(ins, states, outs, n, steps,
/// row, out_row)`.
pub(crate) fn step_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..7 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig
}

/// Checks a step-loop kernel: the kernel itself, one [`StepInput`] per
/// input, state outputs that exist, one `record` flag per output.
pub(crate) fn check_steps(kernel: &FusedKernel, inputs: &[StepInput], record: &[bool]) -> Result<(), JitError> {
    let layouts: Vec<InputLayout> =
        inputs.iter().map(|i| if *i == StepInput::Scalar { InputLayout::Scalar } else { InputLayout::Full }).collect();
    check_kernel(kernel, &layouts)?;
    let name = &kernel.name;
    if record.len() != kernel.outputs.len() {
        return Err(JitError::Shape(format!(
            "kernel {name}: {} record flags for {} outputs",
            record.len(),
            kernel.outputs.len()
        )));
    }
    if let Some(StepInput::State { output }) =
        inputs.iter().find(|i| matches!(i, StepInput::State { output } if *output as usize >= kernel.outputs.len()))
    {
        return Err(JitError::Shape(format!("kernel {name}: a state is updated by missing output {output}")));
    }
    Ok(())
}

/// The step-loop function of `kernel`:
///
/// ```text
/// fn(ins: *const *const f32, states: *const *mut f32, outs: *const *mut f32,
///    n: u64, steps: u64, row: u64, out_row: u64)
/// ```
///
/// `ins[k]` is input `k`'s buffer (unused for a state input), `states[s]`
/// the buffer of the `s`-th [`StepInput::State`] input, `outs[r]` the
/// buffer of the `r`-th recorded output. For each block of 16 elements
/// (four `f32x4`: one cache line per stream and step), then of 4, then of
/// 1, of the elements `e < n`, it loads the block's states, runs `steps >=
/// 1` steps with the states in registers (step `t` reads `Seq` inputs at
/// `t * row + e` and writes recorded outputs at `t * out_row + e`; a state
/// reads its output of the previous step) and stores the states once at
/// the end. With `row > n` the buffers are a part of wider ones (rows of
/// `row` elements; the caller passes pointers to the part's first
/// element): the elements of a step can be split over threads; `out_row`
/// lets the outputs go to a buffer of the part's own. Per element and step it computes
/// exactly what [`build_function`]'s code computes.
///
/// Measured (see `tests/jit.rs`, `bench_tutorial_lif1_step_loop`): with the
/// `[T][n]` layout of sequences this is *slower* than one call per step
/// (1.9 against 1.3 ns per neuron-step at 1M x 10, 2.3 against 0.9 at
/// 64K x 100): a block walks `T` rows `4n` bytes apart, which the hardware
/// prefetchers do not follow. It pays off only with a time-major layout per
/// element, or blocks large enough to stream (which per-step calls on
/// sub-slices already give).
///
/// With `reverse`, the steps run from `t = steps - 1` down to `0` (a
/// reverse step loop): step `t` still reads and writes row `t`, and a state
/// starts from its buffer at `t = steps - 1`.
pub(crate) fn build_step_function(
    kernel: &FusedKernel,
    inputs: &[StepInput],
    record: &[bool],
    reverse: bool,
    target: TargetFrontendConfig,
) -> Result<Function, JitError> {
    build_step_function_bits(kernel, inputs, record, &vec![false; record.len()], reverse, target)
}

/// [`build_step_function`] where the recorded outputs with `bits[j]` (each
/// the result of a `threshold`: exactly `0` or `1`) are written as bits:
/// per block of 16 elements and step, a `u16` whose bit `k` is set where
/// element `k` is `1`, at byte `(t * out_row + e) / 8` of the output
/// buffer (`e`: the block's first element). Only blocks of 16 write them:
/// `n` and `out_row` must be multiples of 16.
pub(crate) fn build_step_function_bits(
    kernel: &FusedKernel,
    inputs: &[StepInput],
    record: &[bool],
    bits: &[bool],
    reverse: bool,
    target: TargetFrontendConfig,
) -> Result<Function, JitError> {
    check_steps(kernel, inputs, record)?;
    if bits.len() != record.len() {
        return Err(JitError::Shape(format!(
            "kernel {}: {} bit flags for {} outputs",
            kernel.name,
            bits.len(),
            record.len()
        )));
    }
    for (j, &b) in bits.iter().enumerate() {
        let threshold = matches!(kernel.body.get(kernel.outputs[j] as usize), Some(KernelInst::Threshold { .. }));
        if b && !(record[j] && threshold) {
            return Err(JitError::Shape(format!(
                "kernel {}: output {j} written as bits must be recorded and a threshold",
                kernel.name
            )));
        }
    }
    if target.pointer_bits() != 64 {
        return Err(JitError::Unsupported("the CPU backend needs 64-bit pointers".into()));
    }
    let call_conv = target.default_call_conv;
    let body = &kernel.body;
    let live = vec![true; body.len()];
    let mut uniform = vec![false; body.len()];
    for (i, inst) in body.iter().enumerate() {
        uniform[i] = match *inst {
            KernelInst::Input(k) => inputs[k as usize] == StepInput::Scalar,
            KernelInst::Const { .. } => true,
            _ => inst.args().iter().all(|&a| uniform[a as usize]),
        };
    }
    let mut func = Function::with_name_signature(UserFuncName::testcase(&kernel.name), step_signature(call_conv));
    let mut libm: [Option<FuncRef>; 3] = [None; 3];
    for (idx, (op, _)) in LIBM.iter().enumerate() {
        if body.iter().any(|inst| matches!(*inst, KernelInst::Unary { op: o, .. } if o == *op)) {
            let signature = func.import_signature(libm_signature(call_conv));
            let name = func.declare_imported_user_function(UserExternalName { namespace: 0, index: idx as u32 });
            libm[idx] = Some(func.import_function(ExtFuncData {
                name: ExternalName::user(name),
                signature,
                colocated: false,
                patchable: false,
            }));
        }
    }
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let (ins_ptr, states_ptr, outs_ptr, n, steps, row, out_row) = {
        let p = b.block_params(entry);
        (p[0], p[1], p[2], p[3], p[4], p[5], p[6])
    };
    let ptr_flags = MemFlagsData::trusted().with_readonly();
    // Per input: its buffer (Seq, Static: `ins[k]`; State: `states[s]`).
    let mut base: Vec<Option<Value>> = vec![None; inputs.len()];
    let mut state_inputs = Vec::new();
    for (k, input) in inputs.iter().enumerate() {
        match input {
            StepInput::Seq | StepInput::Static => {
                base[k] = Some(b.ins().load(types::I64, ptr_flags, ins_ptr, (8 * k) as i32));
            }
            StepInput::State { output } => {
                let s = state_inputs.len();
                base[k] = Some(b.ins().load(types::I64, ptr_flags, states_ptr, (8 * s) as i32));
                state_inputs.push((k, *output));
            }
            StepInput::Scalar => {}
        }
    }
    let mut out_base: Vec<Option<Value>> = vec![None; kernel.outputs.len()];
    let mut r = 0usize;
    for (j, &rec) in record.iter().enumerate() {
        if rec {
            out_base[j] = Some(b.ins().load(types::I64, ptr_flags, outs_ptr, (8 * r) as i32));
            r += 1;
        }
    }
    let consts = Consts::new(&mut b, body, &live);
    let mut hoisted: Vec<Option<Value>> = vec![None; body.len()];
    {
        let mut g = Gen { b: &mut b, libm, consts: &consts, lanes: 1 };
        for (i, inst) in body.iter().enumerate() {
            if uniform[i] {
                let v = match *inst {
                    KernelInst::Input(k) => {
                        let p = g.b.ins().load(types::I64, ptr_flags, ins_ptr, (8 * k) as i32);
                        let x = g.b.ins().load(types::F32, data_flags(), p, 0);
                        g.b.ins().splat(types::F32X4, x)
                    }
                    _ => g.inst(inst, &hoisted),
                };
                hoisted[i] = Some(v);
            }
        }
    }
    let stride = b.ins().ishl_imm_u(row, 2);
    let out_stride = b.ins().ishl_imm_u(out_row, 2);
    // Reverse: the byte offsets of the last step's row of the inputs and of
    // the outputs, where the time loop starts (`steps >= 1`).
    let last = reverse.then(|| {
        let before_last = b.ins().iadd_imm_s(steps, -1);
        (b.ins().imul(before_last, stride), b.ins().imul(before_last, out_stride))
    });
    // Three phases: 16 elements (four f32x4: a cache line per stream and
    // step) per time loop, then 4, then 1. (Blocks of 32 elements, for more
    // independent chains per step, measured no faster on the tutorial's
    // encoder, and spill registers.)
    let n16 = b.ins().band_imm_s(n, -16);
    let n4 = b.ins().band_imm_s(n, -4);
    let checks: Vec<Block> = (0..3).map(|_| b.create_block()).collect();
    let exit = b.create_block();
    for &c in &checks {
        b.append_block_param(c, types::I64);
    }
    let zero = b.ins().iconst(types::I64, 0);
    b.ins().jump(checks[0], &[zero.into()]);

    let s = StepBody {
        kernel,
        inputs,
        uniform: &uniform,
        base: &base,
        out_base: &out_base,
        bits,
        state_inputs: &state_inputs,
        stride,
        out_stride,
        steps,
        last,
    };
    s.emit_phase(&mut b, libm, &consts, &hoisted, checks[0], 4, 4, n16, Some(checks[1]), exit);
    s.emit_phase(&mut b, libm, &consts, &hoisted, checks[1], 4, 1, n4, Some(checks[2]), exit);
    s.emit_phase(&mut b, libm, &consts, &hoisted, checks[2], 1, 1, n, None, exit);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(target);
    Ok(func)
}

struct StepBody<'a> {
    kernel: &'a FusedKernel,
    inputs: &'a [StepInput],
    uniform: &'a [bool],
    base: &'a [Option<Value>],
    out_base: &'a [Option<Value>],
    /// Per output: written as bits (see [`build_step_function_bits`]).
    bits: &'a [bool],
    /// (kernel input, output that updates it), in state order.
    state_inputs: &'a [(usize, u32)],
    stride: Value,
    out_stride: Value,
    steps: Value,
    /// Reverse loops: the byte offsets of row `steps - 1` of the inputs and
    /// of the outputs, where they start.
    last: Option<(Value, Value)>,
}

fn load_lanes(b: &mut FunctionBuilder<'_>, addr: Value, offset: i32, lanes: u8) -> Value {
    if lanes == 4 {
        b.ins().load(types::F32X4, data_flags(), addr, offset)
    } else {
        let x = b.ins().load(types::F32, data_flags(), addr, offset);
        b.ins().scalar_to_vector(types::F32X4, x)
    }
}

fn store_lanes(b: &mut FunctionBuilder<'_>, v: Value, addr: Value, offset: i32, lanes: u8) {
    if lanes == 4 {
        b.ins().store(data_flags(), v, addr, offset);
    } else {
        let x = b.ins().extractlane(v, 0);
        b.ins().store(data_flags(), x, addr, offset);
    }
}

impl StepBody<'_> {
    /// One phase: `check(i)` enters the loop over blocks of `lanes *
    /// unroll` elements while `i < limit`, else goes on to `next(i)` (or
    /// `exit`). A block loads its states, runs the time loop with them in
    /// registers, and stores them.
    #[allow(clippy::too_many_arguments)]
    fn emit_phase(
        &self,
        b: &mut FunctionBuilder<'_>,
        libm: [Option<FuncRef>; 3],
        consts: &Consts,
        hoisted: &[Option<Value>],
        check: Block,
        lanes: u8,
        unroll: usize,
        limit: Value,
        next: Option<Block>,
        exit: Block,
    ) {
        let outer = b.create_block();
        let tloop = b.create_block();
        let done = b.create_block();
        b.append_block_param(outer, types::I64);
        b.append_block_param(tloop, types::I64); // the iteration
        b.append_block_param(tloop, types::I64); // byte offset of its step's row
        b.append_block_param(tloop, types::I64); // the same in the outputs
        for _ in 0..self.state_inputs.len() * unroll {
            b.append_block_param(tloop, types::F32X4);
            b.append_block_param(done, types::F32X4);
        }
        let leave = |b: &mut FunctionBuilder<'_>, more: Value, again: Block, i: Value| match next {
            Some(nx) => b.ins().brif(more, again, &[i.into()], nx, &[i.into()]),
            None => b.ins().brif(more, again, &[i.into()], exit, &[]),
        };

        b.switch_to_block(check);
        let i = b.block_params(check)[0];
        let more = b.ins().icmp(IntCC::UnsignedLessThan, i, limit);
        leave(b, more, outer, i);

        // Byte offset of vector `u` of a block.
        let vec_off = |u: usize| (16 * u) as i32;
        b.switch_to_block(outer);
        let i = b.block_params(outer)[0];
        let off = b.ins().ishl_imm_u(i, 2);
        let mut args: Vec<BlockArg> = Vec::new();
        let t0 = b.ins().iconst(types::I64, 0);
        args.push(t0.into());
        let (so0, oo0) = match self.last {
            Some((last, out_last)) => (b.ins().iadd(off, last), b.ins().iadd(off, out_last)),
            None => (off, off),
        };
        args.push(so0.into());
        args.push(oo0.into());
        for u in 0..unroll {
            for &(k, _) in self.state_inputs {
                let addr = b.ins().iadd(self.base[k].expect("state buffer"), off);
                args.push(load_lanes(b, addr, vec_off(u), lanes).into());
            }
        }
        b.ins().jump(tloop, &args);

        b.switch_to_block(tloop);
        let params = b.block_params(tloop).to_vec();
        let (t, so, oo, states) = (params[0], params[1], params[2], &params[3..]);
        let ns = self.state_inputs.len();
        let mut new_states: Vec<BlockArg> = Vec::new();
        let mut g = Gen { b, libm, consts, lanes };
        let mut bit_words: Vec<Vec<Value>> = vec![Vec::new(); self.kernel.outputs.len()];
        for u in 0..unroll {
            let mut vals = hoisted.to_vec();
            for (idx, inst) in self.kernel.body.iter().enumerate() {
                if self.uniform[idx] {
                    continue;
                }
                let v = match *inst {
                    KernelInst::Input(k) => match self.inputs[k as usize] {
                        StepInput::Seq => {
                            let addr = g.b.ins().iadd(self.base[k as usize].expect("seq buffer"), so);
                            load_lanes(g.b, addr, vec_off(u), lanes)
                        }
                        StepInput::Static => {
                            let addr = g.b.ins().iadd(self.base[k as usize].expect("static buffer"), off);
                            load_lanes(g.b, addr, vec_off(u), lanes)
                        }
                        StepInput::State { .. } => {
                            let s = self.state_inputs.iter().position(|&(kk, _)| kk == k as usize).expect("a state");
                            states[u * ns + s]
                        }
                        StepInput::Scalar => unreachable!("scalar inputs are uniform"),
                    },
                    _ => g.inst(inst, &vals),
                };
                vals[idx] = Some(v);
            }
            for (j, &o) in self.kernel.outputs.iter().enumerate() {
                if let Some(ob) = self.out_base[j] {
                    let v = vals[o as usize].expect("outputs are computed");
                    if self.bits[j] {
                        if lanes == 4 && unroll.is_multiple_of(4) {
                            // Lanes that are 1 (the value is 0 or 1); word
                            // `u / 4` holds vectors `u - u % 4..`.
                            let m = g.mask(FloatCC::NotEqual, v, g.consts.get(0.0));
                            let nib = g.b.ins().vhigh_bits(types::I32, m);
                            let words = &mut bit_words[j];
                            if u % 4 == 0 {
                                words.push(nib);
                            } else {
                                let shifted = g.b.ins().ishl_imm_u(nib, (4 * (u % 4)) as i64);
                                let w = words.last_mut().expect("pushed at u % 4 == 0");
                                *w = g.b.ins().bor(*w, shifted);
                            }
                        }
                    } else {
                        let addr = g.b.ins().iadd(ob, oo);
                        store_lanes(g.b, v, addr, vec_off(u), lanes);
                    }
                }
            }
            new_states.extend(
                self.state_inputs.iter().map(|&(_, out)| {
                    BlockArg::from(vals[self.kernel.outputs[out as usize] as usize].expect("computed"))
                }),
            );
        }
        let b = g.b;
        // The block's bits: a word per 16 elements from byte `oo / 32`
        // (`oo` is 4 bytes an element).
        for (j, words) in bit_words.iter().enumerate() {
            if let (false, Some(ob)) = (words.is_empty(), self.out_base[j]) {
                let at = b.ins().ushr_imm_u(oo, 5);
                let addr = b.ins().iadd(ob, at);
                for (q, &w) in words.iter().enumerate() {
                    let half = b.ins().ireduce(types::I16, w);
                    b.ins().store(data_flags(), half, addr, (2 * q) as i32);
                }
            }
        }
        let t1 = b.ins().iadd_imm_s(t, 1);
        // `t` counts iterations; the row offset walks backwards in a
        // reverse loop (after the last iteration it is not used).
        let (so1, oo1) = if self.last.is_some() {
            (b.ins().isub(so, self.stride), b.ins().isub(oo, self.out_stride))
        } else {
            (b.ins().iadd(so, self.stride), b.ins().iadd(oo, self.out_stride))
        };
        let more = b.ins().icmp(IntCC::UnsignedLessThan, t1, self.steps);
        let mut targs: Vec<BlockArg> = vec![t1.into(), so1.into(), oo1.into()];
        targs.extend(new_states.iter().copied());
        b.ins().brif(more, tloop, &targs, done, &new_states);

        b.switch_to_block(done);
        let finals = b.block_params(done).to_vec();
        for u in 0..unroll {
            for (s, &(k, _)) in self.state_inputs.iter().enumerate() {
                let addr = b.ins().iadd(self.base[k].expect("state buffer"), off);
                store_lanes(b, finals[u * ns + s], addr, vec_off(u), lanes);
            }
        }
        let i1 = b.ins().iadd_imm_s(i, (usize::from(lanes) * unroll) as i64);
        let more = b.ins().icmp(IntCC::UnsignedLessThan, i1, limit);
        leave(b, more, outer, i1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prints the host machine code of the tutorial's `lif1` kernel:
    /// `cargo test -p snnc-cpu --lib -- --ignored --nocapture disasm`.
    #[test]
    #[ignore = "prints machine code"]
    fn disasm_tutorial_lif1() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tutorial.ron");
        let net = snnc_frontend::load_network(&path).unwrap();
        let mut module = snnc_frontend::lower(&net, "tutorial.ron", &Default::default()).unwrap();
        snnc_passes::default_pipeline(snnc_passes::PipelineKind::Cpu).run(&mut module, &mut |_| {}).unwrap();
        let kernel = module
            .nodes
            .iter()
            .find_map(|(_, n)| match &n.op {
                snnc_ir::Op::Fused(k) if k.name == "lif1" => Some((**k).clone()),
                _ => None,
            })
            .unwrap();
        let isa = crate::jit::host_isa().unwrap();
        let layouts = vec![InputLayout::Full; kernel.inputs.len()];
        let func = build_function(&kernel, &layouts, isa.frontend_config()).unwrap();
        let mut ctx = cranelift::codegen::Context::for_function(func);
        ctx.set_disasm(true);
        let code = ctx.compile(&*isa, &mut Default::default()).unwrap();
        println!("{}", code.vcode.clone().unwrap_or_default());
    }
}
