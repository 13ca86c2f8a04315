//! The worker threads of the CPU backend: one persistent `rayon` pool.
//!
//! Starting threads per kernel call costs 60–150 µs on the project
//! machine (a VM), more than a step's `[256, 100]` product takes; the pool
//! starts its threads once, and a run executes inside it
//! ([`Executable::run`](crate::Executable::run) calls [`install`]) so that
//! splitting a kernel is a few µs of work stealing.
//!
//! Work is split into parts of whole rows (or elements) whose bounds do not
//! depend on which thread runs them, and every part is computed the same
//! way wherever it runs: results are the same bits on every run and for
//! every number of threads. There are more parts than threads where the
//! work allows, so that a thread that another process holds up does not
//! hold up the whole kernel.

use std::sync::OnceLock;

/// The number of threads kernels use: `SNNC_THREADS` if set (to time or
/// test a thread count), else the available parallelism, at most 16.
/// (Asked once per process: the query reads cgroup files, which is slow.)
pub(crate) fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        let env = std::env::var("SNNC_THREADS").ok().and_then(|v| v.parse::<usize>().ok()).filter(|&n| n > 0);
        env.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).min(16)
    })
}

/// The pool, made on first use; `None` with one thread (or if the threads
/// cannot be started: everything then runs on the calling thread).
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        if threads() <= 1 {
            return None;
        }
        rayon::ThreadPoolBuilder::new().num_threads(threads()).thread_name(|i| format!("snnc-cpu-{i}")).build().ok()
    })
    .as_ref()
}

/// Runs `f` on a thread of the pool (on the calling thread if there is no
/// pool or it is one of the pool's), so that the splits inside it are
/// cheap.
pub(crate) fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(p) if p.current_thread_index().is_none() => p.install(f),
        _ => f(),
    }
}

/// Estimated time (ns, on one thread) below which a kernel runs on the
/// calling thread: a split costs 5–15 µs of waking and stealing on the
/// project machine.
const SPLIT_NS: usize = 25_000;

/// The least estimated time worth a part of its own.
const PART_NS: usize = 10_000;

/// Rough single-thread speeds on the project machine (AMD Zen 5, SSE2
/// Rust code, the `gemm` crate's AVX-512 GEMM), per ns, for the estimates
/// given to [`parts`]: multiply-adds of a GEMM...
pub(crate) const GEMM_MACS_PER_NS: usize = 40;
/// ... vector adds of an event-driven product (per output element added)...
pub(crate) const EVENT_ADDS_PER_NS: usize = 10;
/// ... elements of a fused elementwise kernel (per input or output
/// stream), or of a plain loop.
pub(crate) const ELEMENTS_PER_NS: usize = 4;

/// How many parts to split `items` (rows, elements) into when the whole
/// takes about `ns` nanoseconds on one thread: 1 below [`SPLIT_NS`], else
/// up to four per thread of at least [`PART_NS`] each (more parts than
/// threads, so that a thread held up by another process does not hold up
/// the kernel).
pub(crate) fn parts(items: usize, ns: usize) -> usize {
    let t = threads();
    if t <= 1 || ns < SPLIT_NS || items < 2 || SERIAL.get() {
        return 1;
    }
    (4 * t).min(ns / PART_NS).min(items).max(1)
}

thread_local! {
    /// Set while [`serial`] runs: kernels do not split.
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every kernel it calls on the calling thread (for work
/// that is already one of several parts running in parallel).
pub(crate) fn serial<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL.replace(true);
    let r = f();
    SERIAL.set(before);
    r
}

/// Runs `f(first_row, rows)` over `out` split into parts of whole rows of
/// `row_len` elements: `parts` parts of (almost) equal size, on the pool.
/// Each row is in exactly one part.
pub(crate) fn for_rows(out: &mut [f32], row_len: usize, parts: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len().checked_div(row_len).unwrap_or(0);
    if parts <= 1 || rows <= 1 || pool().is_none() {
        f(0, out);
        return;
    }
    let per = rows.div_ceil(parts.min(rows));
    install(|| {
        use rayon::prelude::*;
        out.par_chunks_mut(per * row_len).enumerate().for_each(|(i, chunk)| f(i * per, chunk));
    });
}

/// Runs `f(i, item)` for every item on the pool (on the calling thread for
/// one item).
pub(crate) fn for_each_item<T: Send>(items: Vec<T>, f: impl Fn(usize, T) + Sync) {
    if items.len() <= 1 || pool().is_none() {
        for (i, item) in items.into_iter().enumerate() {
            f(i, item);
        }
        return;
    }
    install(|| {
        use rayon::prelude::*;
        items.into_par_iter().enumerate().for_each(|(i, item)| f(i, item));
    });
}
