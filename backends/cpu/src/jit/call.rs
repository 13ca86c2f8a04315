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

/// The generated step-loop function: `(ins, states, outs, n, steps, row,
/// out_row)`.
type StepFn = unsafe extern "C" fn(*const *const f32, *const *mut f32, *const *mut f32, u64, u64, u64, u64);

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
        // `(i64, i64, i64, i64, i64, i64, i64)`.
        let f = unsafe { std::mem::transmute::<*const u8, StepFn>(ptr) };
        StepEntry { f, _code: code }
    }

    /// Runs `steps` steps over `n` elements, `n * steps > 0`, as one call
    /// per part of the elements: `parts` are disjoint `(start, count)`
    /// ranges covering `0..n`, run on the thread pool. The caller has
    /// checked every length against the kernel's step inputs: `ins[k]` (one
    /// per kernel input; null for state inputs) holds `steps * n` (`Seq`),
    /// `n` (`Static`) or 1 (`Scalar`) elements, as `per_element[k]` says
    /// (true for `Seq` and `Static`), each `states[s]` `n`, each `outs[r]`
    /// `steps * n`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn call(
        &self,
        ins: &[*const f32],
        per_element: &[bool],
        states: &mut [&mut [f32]],
        outs: &mut [&mut [f32]],
        n: usize,
        steps: usize,
        parts: &[(usize, usize)],
    ) {
        debug_assert!(parts.iter().all(|&(start, count)| start + count <= n));
        // Addresses, so that the parts can be sent to other threads.
        let in_addr: Vec<usize> = ins.iter().map(|&p| p as usize).collect();
        let state_addr: Vec<usize> = states.iter_mut().map(|x| x.as_mut_ptr() as usize).collect();
        let out_addr: Vec<usize> = outs.iter_mut().map(|x| x.as_mut_ptr() as usize).collect();
        let f = self.f;
        crate::pool::for_each_item(parts.to_vec(), |_, (start, count)| {
            let at = |a: usize| (a as *mut f32).wrapping_add(start);
            let in_ptrs: Vec<*const f32> = in_addr
                .iter()
                .zip(per_element)
                .map(|(&a, &per)| if per { at(a).cast_const() } else { a as *const f32 })
                .collect();
            let state_ptrs: Vec<*mut f32> = state_addr.iter().map(|&a| at(a)).collect();
            let out_ptrs: Vec<*mut f32> = out_addr.iter().map(|&a| at(a)).collect();
            // SAFETY: the generated code reads, per element `e < count` and
            // step `t < steps`, `ins[k][start + t * n + e]` (Seq),
            // `ins[k][start + e]` (Static) or `ins[k][0]` (Scalar), and
            // `states[s][start + e]`; it writes `states[s][start + e]` and
            // `outs[r][start + t * n + e]`. With `start + count <= n` these
            // lie inside the buffers, whose lengths the caller checked (and
            // `n * steps` does not overflow). The parts are disjoint, so no
            // element is written by two calls, or read by one and written
            // by another (states and outputs are distinct `&mut` slices,
            // borrowed until every part is done; the inputs come from shared
            // slices that outlive the call). Nothing else is touched; only
            // the safe Rust libm wrappers are called.
            unsafe {
                f(
                    in_ptrs.as_ptr(),
                    state_ptrs.as_ptr(),
                    out_ptrs.as_ptr(),
                    count as u64,
                    steps as u64,
                    n as u64,
                    n as u64,
                )
            };
        });
    }

    /// Runs a forward loop over parts of the elements, each part on the
    /// thread pool in chunks of `chunk` steps, its recorded outputs going to
    /// buffers of its own (`[chunk][count]` values each, or `[chunk][count /
    /// 16]` words where `bits[r]`): after each chunk of steps `t0..t1`,
    /// `visit(&mut state, t0, t1, outs)` gets them (`(t1 - t0) * count`
    /// values or `(t1 - t0) * count / 16` words each). `parts` are disjoint
    /// `(start, count)` ranges of `0..n`, each with a state of the
    /// caller's. The caller has checked the lengths as for
    /// [`StepEntry::call`], and that with outputs as bits `n` and each
    /// part's start and count are multiples of 16; `layout[k]` says whether
    /// input `k` has a value per element, and whether per step (`Seq`);
    /// `bits` has one flag per recorded output.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn call_chunked<P: Send>(
        &self,
        ins: &[*const f32],
        layout: &[(bool, bool)],
        states: &mut [&mut [f32]],
        bits: &[bool],
        n: usize,
        steps: usize,
        parts: Vec<((usize, usize), P)>,
        chunk: usize,
        visit: impl Fn(&mut P, usize, usize, &[super::ChunkOut<'_>]) + Sync,
    ) {
        debug_assert!(parts.iter().all(|&((start, count), _)| start + count <= n));
        let chunk = chunk.max(1);
        let in_addr: Vec<usize> = ins.iter().map(|&p| p as usize).collect();
        let state_addr: Vec<usize> = states.iter_mut().map(|x| x.as_mut_ptr() as usize).collect();
        let f = self.f;
        crate::pool::for_each_item(parts, |_, ((start, count), mut state)| {
            // Values, or bits (in `u16` words, as the generated code writes).
            let mut bufs: Vec<Vec<f32>> =
                bits.iter().map(|&b| if b { Vec::new() } else { vec![0.0; chunk * count] }).collect();
            let mut words: Vec<Vec<u16>> =
                bits.iter().map(|&b| if b { vec![0; chunk * count / 16] } else { Vec::new() }).collect();
            let state_ptrs: Vec<*mut f32> = state_addr.iter().map(|&a| (a as *mut f32).wrapping_add(start)).collect();
            let mut t0 = 0;
            while t0 < steps {
                let c = chunk.min(steps - t0);
                let in_ptrs: Vec<*const f32> = in_addr
                    .iter()
                    .zip(layout)
                    .map(|(&a, &(per_element, seq))| {
                        let at = if seq {
                            start + t0 * n
                        } else if per_element {
                            start
                        } else {
                            0
                        };
                        (a as *const f32).wrapping_add(at)
                    })
                    .collect();
                let out_ptrs: Vec<*mut f32> = bufs
                    .iter_mut()
                    .zip(words.iter_mut())
                    .zip(bits)
                    .map(|((v, w), &b)| if b { w.as_mut_ptr().cast::<f32>() } else { v.as_mut_ptr() })
                    .collect();
                // SAFETY: the generated code reads, per element `e < count`
                // and step `t < c`, `ins[k][start + (t0 + t) * n + e]` (Seq),
                // `ins[k][start + e]` (Static) or `ins[k][0]` (Scalar), and
                // `states[s][start + e]`; it writes `states[s][start + e]`
                // and `bufs[r][t * count + e]` (values), or the `u16`
                // `words[r][(t * count + e) / 16]` for the blocks of 16
                // elements `e` (bits; `count` and `e` are multiples of 16, so
                // these are whole, 2-byte aligned words). With `start +
                // count <= n` and `t0 + c <= steps` these lie inside the
                // buffers (the caller checked the lengths; `bufs` hold `chunk
                // * count` values, `words` `chunk * count / 16` words). The
                // parts are disjoint, so no state element is touched by two
                // threads; `bufs` and `words` are this part's own; the
                // inputs come from shared slices that outlive the call.
                // Nothing else is touched; only the safe Rust libm wrappers
                // are called.
                unsafe {
                    f(
                        in_ptrs.as_ptr(),
                        state_ptrs.as_ptr(),
                        out_ptrs.as_ptr(),
                        count as u64,
                        c as u64,
                        n as u64,
                        count as u64,
                    )
                };
                let outs: Vec<super::ChunkOut<'_>> = bufs
                    .iter()
                    .zip(&words)
                    .zip(bits)
                    .map(|((v, w), &b)| {
                        if b {
                            super::ChunkOut::Bits(&w[..c * count / 16])
                        } else {
                            super::ChunkOut::Values(&v[..c * count])
                        }
                    })
                    .collect();
                visit(&mut state, t0, t0 + c, &outs);
                t0 += c;
            }
        });
    }
}
