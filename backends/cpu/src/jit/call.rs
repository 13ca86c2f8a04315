//! The boundary to generated code: the only `unsafe` of the JIT.
//!
//! [`Code`] owns the JIT module and frees its memory when the last kernel
//! and the compiler are gone; [`Entry`] holds a kernel's entry point and an
//! `Arc` of its `Code`, and calls it on buffers whose lengths the caller
//! (`JitKernel::run`) has checked.
#![allow(unsafe_code)]

use std::sync::{Arc, Mutex, MutexGuard};

use cranelift_jit::JITModule;

/// The generated function: `(ins, outs, n)`, reading `ins[k][0..n]` (or
/// `[0]` for scalar inputs) and writing `outs[k][0..n]`.
type KernelFn = unsafe extern "C" fn(*const *const f32, *const *mut f32, u64);

/// The JIT module, shared by the compiler and every kernel compiled in it.
pub(super) struct Code {
    /// `None` only while dropping.
    module: Mutex<Option<JITModule>>,
}

impl Code {
    pub(super) fn new(module: JITModule) -> Self {
        Code { module: Mutex::new(Some(module)) }
    }

    /// The module, for compiling more kernels into it.
    pub(super) fn module(&self) -> ModuleGuard<'_> {
        ModuleGuard(self.module.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(module) = self.module.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            // SAFETY: `Code` is dropped when the last `Arc` to it goes: the
            // compiler and every `Entry` (which holds an `Arc`) are gone, so
            // no pointer into the module's code can be called any more.
            unsafe { module.free_memory() };
        }
    }
}

/// A locked module.
pub(super) struct ModuleGuard<'a>(MutexGuard<'a, Option<JITModule>>);

impl std::ops::Deref for ModuleGuard<'_> {
    type Target = JITModule;
    fn deref(&self) -> &JITModule {
        self.0.as_ref().expect("the module lives until Code is dropped")
    }
}

impl std::ops::DerefMut for ModuleGuard<'_> {
    fn deref_mut(&mut self) -> &mut JITModule {
        self.0.as_mut().expect("the module lives until Code is dropped")
    }
}

/// A kernel's entry point and the module that holds its code.
#[derive(Clone)]
pub(super) struct Entry {
    f: KernelFn,
    _code: Arc<Code>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("f", &(self.f as *const u8)).finish_non_exhaustive()
    }
}

impl Entry {
    /// `ptr` must be `get_finalized_function` of a function built by
    /// `clif::build_function` in `code`'s module.
    pub(super) fn new(code: Arc<Code>, ptr: *const u8) -> Self {
        // SAFETY: `ptr` is the finalized (executable) code of a function with
        // the signature `(i64, i64, i64)` in the host calling convention,
        // which is `extern "C"` for `KernelFn`; `code` keeps it alive as long
        // as this `Entry`.
        let f = unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) };
        Entry { f, _code: code }
    }

    /// Runs the kernel on `n > 0` elements. The caller has checked that
    /// every `outs[k]` has `n` elements and every `ins[k]` has `n` (a `Full`
    /// input) or 1 (a `Scalar` input) as the kernel was compiled for, and
    /// that the counts match the kernel's.
    pub(super) fn call(&self, ins: &[&[f32]], outs: &mut [&mut [f32]], n: usize) {
        const STACK: usize = 16;
        let mut in_stack = [std::ptr::null::<f32>(); STACK];
        let mut out_stack = [std::ptr::null_mut::<f32>(); STACK];
        let (mut in_heap, mut out_heap) = (Vec::new(), Vec::new());
        let in_ptrs: &[*const f32] = if ins.len() <= STACK {
            for (p, x) in in_stack.iter_mut().zip(ins) {
                *p = x.as_ptr();
            }
            &in_stack[..ins.len()]
        } else {
            in_heap.extend(ins.iter().map(|x| x.as_ptr()));
            &in_heap
        };
        let out_ptrs: &[*mut f32] = if outs.len() <= STACK {
            for (p, x) in out_stack.iter_mut().zip(outs.iter_mut()) {
                *p = x.as_mut_ptr();
            }
            &out_stack[..outs.len()]
        } else {
            out_heap.extend(outs.iter_mut().map(|x| x.as_mut_ptr()));
            &out_heap
        };
        // SAFETY: the generated code reads `in_ptrs[k]` for the kernel's
        // inputs only, elements `0..n` of a `Full` input and element 0 of a
        // `Scalar` one, and writes elements `0..n` of each `out_ptrs[k]`;
        // the caller checked these lengths. The outputs are `&mut` slices,
        // so they alias neither each other nor an input. The code touches
        // no other memory, keeps no pointer after returning, and only calls
        // the safe Rust functions `snnc_expf`/`snnc_logf`/`snnc_tanhf`.
        unsafe { (self.f)(in_ptrs.as_ptr(), out_ptrs.as_ptr(), n as u64) };
    }
}

/// The generated step-loop function: `(ins, states, outs, n, steps)`.
type StepFn = unsafe extern "C" fn(*const *const f32, *const *mut f32, *const *mut f32, u64, u64);

/// A step-loop kernel's entry point and the module that holds its code.
#[derive(Clone)]
pub(super) struct StepEntry {
    f: StepFn,
    _code: Arc<Code>,
}

impl std::fmt::Debug for StepEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepEntry").field("f", &(self.f as *const u8)).finish_non_exhaustive()
    }
}

impl StepEntry {
    /// `ptr` must be `get_finalized_function` of a function built by
    /// `clif::build_step_function` in `code`'s module.
    pub(super) fn new(code: Arc<Code>, ptr: *const u8) -> Self {
        // SAFETY: as for `Entry::new`, with the signature
        // `(i64, i64, i64, i64, i64)`.
        let f = unsafe { std::mem::transmute::<*const u8, StepFn>(ptr) };
        StepEntry { f, _code: code }
    }

    /// Runs `steps` steps over `n` elements, `n * steps > 0`. The caller
    /// has checked every length against the kernel's step inputs:
    /// `ins[k]` (one per kernel input; null for state inputs) holds
    /// `steps * n` (`Seq`), `n` (`Static`) or 1 (`Scalar`) elements, each
    /// `states[s]` and `n`, each `outs[r]` `steps * n`.
    pub(super) fn call(
        &self,
        ins: &[*const f32],
        states: &mut [&mut [f32]],
        outs: &mut [&mut [f32]],
        n: usize,
        steps: usize,
    ) {
        let state_ptrs: Vec<*mut f32> = states.iter_mut().map(|x| x.as_mut_ptr()).collect();
        let out_ptrs: Vec<*mut f32> = outs.iter_mut().map(|x| x.as_mut_ptr()).collect();
        // SAFETY: the generated code reads, per element `e < n` and step
        // `t < steps`, `ins[k][t * n + e]` (Seq), `ins[k][e]` (Static) or
        // `ins[k][0]` (Scalar), and `states[s][e]`; it writes `states[s][e]`
        // and `outs[r][t * n + e]`; the caller checked those lengths and
        // `n * steps` does not overflow. States and outputs are distinct
        // `&mut` slices; the input pointers come from shared slices that
        // outlive the call. Nothing else is touched; only the safe Rust
        // libm wrappers are called.
        unsafe { (self.f)(ins.as_ptr(), state_ptrs.as_ptr(), out_ptrs.as_ptr(), n as u64, steps as u64) };
    }
}
