//! What this machine can do at best, measured once per `snnc bench` run:
//! the float32 GEMM peak (a large sgemm through the GEMM crate the CPU
//! backend uses) and the DRAM bandwidth (STREAM-style copy and triad loops
//! over arrays far larger than the last-level cache).

use std::hint::black_box;
use std::time::Instant;

/// The machine's measured limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Best float32 GEMM rate, in GFLOP/s (2 FLOP per multiply-add).
    pub peak_gflops: f64,
    /// How the peak was measured.
    pub peak_how: String,
    /// Best DRAM bandwidth, in GB/s (10^9 bytes per second).
    pub bandwidth_gbs: f64,
    /// How the bandwidth was measured.
    pub bandwidth_how: String,
}

/// Measures the machine. `quick` uses small sizes (a few milliseconds, for
/// tests; the numbers then are cache figures, not the machine's limits).
pub fn measure(quick: bool) -> Machine {
    let (n, gemm_reps) = if quick { (256, 1) } else { (2048, 3) };
    let peak_gflops = peak_sgemm(n, gemm_reps);
    let (mib, bw_reps) = if quick { (8, 1) } else { (256, 5) };
    let (copy, triad) = bandwidth(mib << 20, bw_reps);
    Machine {
        peak_gflops,
        peak_how: format!(
            "sgemm {n}x{n}x{n} through `{}` on {} thread(s), best of {gemm_reps}",
            crate::bench::gemm::CRATE,
            crate::bench::gemm::threads()
        ),
        bandwidth_gbs: copy.max(triad),
        bandwidth_how: format!(
            "best of copy {copy:.1} GB/s and triad {triad:.1} GB/s over {mib} MiB arrays, best of {bw_reps}, STREAM counting"
        ),
    }
}

/// Best GFLOP/s of an `n×n×n` float32 matrix product over `reps` runs
/// (after one untimed run).
pub fn peak_sgemm(n: usize, reps: usize) -> f64 {
    let a: Vec<f32> = (0..n * n).map(|i| ((i * 7) % 13) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i * 5) % 11) as f32 * 0.01).collect();
    let mut c = vec![0.0f32; n * n];
    crate::bench::gemm::sgemm(n, n, n, &a, &b, &mut c);
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        crate::bench::gemm::sgemm(n, n, n, black_box(&a), black_box(&b), &mut c);
        best = best.min(t0.elapsed().as_secs_f64());
        black_box(&c);
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}

/// Best copy and triad bandwidth in GB/s over arrays of `bytes` bytes each,
/// counted as STREAM does (copy: read + write of one array, 2 arrays of
/// traffic; triad `a = b + s·c`: 3 arrays), over `reps` timed runs after
/// one untimed run (which also faults the pages in).
pub fn bandwidth(bytes: usize, reps: usize) -> (f64, f64) {
    let n = bytes / std::mem::size_of::<f64>();
    let b: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let c: Vec<f64> = (0..n).map(|i| (n - i) as f64).collect();
    let mut a = vec![0.0f64; n];
    let mut best_copy = f64::INFINITY;
    let mut best_triad = f64::INFINITY;
    for rep in 0..=reps.max(1) {
        let t0 = Instant::now();
        a.copy_from_slice(black_box(&b));
        let copy = t0.elapsed().as_secs_f64();
        black_box(&a);
        let s = black_box(3.0f64);
        let t0 = Instant::now();
        for ((a, b), c) in a.iter_mut().zip(&b).zip(&c) {
            *a = b + s * c;
        }
        let triad = t0.elapsed().as_secs_f64();
        black_box(&a);
        if rep > 0 {
            best_copy = best_copy.min(copy);
            best_triad = best_triad.min(triad);
        }
    }
    let bytes = (n * std::mem::size_of::<f64>()) as f64;
    (2.0 * bytes / best_copy / 1e9, 3.0 * bytes / best_triad / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_something_positive() {
        let m = measure(true);
        assert!(m.peak_gflops > 0.0 && m.peak_gflops.is_finite(), "{m:?}");
        assert!(m.bandwidth_gbs > 0.0 && m.bandwidth_gbs.is_finite(), "{m:?}");
    }
}
