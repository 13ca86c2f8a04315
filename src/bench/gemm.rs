//! The float32 matrix product used to measure the machine's GEMM peak: the
//! crate the CPU backend computes dense products with (`gemm`),
//! its rows split over the cores with scoped threads.

/// The GEMM crate measured.
pub const CRATE: &str = "gemm";

/// The number of threads the product is split over: the machine's cores.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `c = a · b` for row-major `a` `[m, k]`, `b` `[k, n]`, `c` `[m, n]`,
/// the rows of `c` split over [`threads`] threads.
///
/// # Panics
/// If a slice is shorter than its shape needs.
pub fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "sgemm: a slice is too short");
    let parts = threads().min(m.max(1));
    let rows = m.div_ceil(parts).max(1);
    std::thread::scope(|s| {
        for (i, c_rows) in c[..m * n].chunks_mut(rows * n).enumerate() {
            let r = c_rows.len() / n.max(1);
            let a_rows = &a[i * rows * k..(i * rows + r) * k];
            s.spawn(move || sgemm_block(r, k, n, a_rows, b, c_rows));
        }
    });
}

#[allow(unsafe_code)]
fn sgemm_block(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // SAFETY: the pointers come from slices that hold at least m·k, k·n
    // and m·n elements (checked above), laid out row-major with the given
    // strides; `c` is borrowed mutably, so nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_naive_product() {
        let (m, k, n) = (37, 19, 23);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let mut c = vec![0.0; m * n];
        sgemm(m, k, n, &a, &b, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-3, "c[{i},{j}] = {} != {want}", c[i * n + j]);
            }
        }
    }

    /// The GEMM of `lif-layer-4096` alone (`[T·B, n] × [n, n]`, T·B =
    /// 8000, n = 4096): the floor of that config's forward time. Run with
    /// `cargo test --release -p snnc --lib gemm_floor -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a test (takes seconds)"]
    fn gemm_floor_of_lif_layer_4096() {
        let (m, k, n) = (8000, 4096, 4096);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 11) as f32 * 0.01).collect();
        let mut c = vec![0.0f32; m * n];
        let mut best = f64::INFINITY;
        for _ in 0..4 {
            let t0 = std::time::Instant::now();
            sgemm(m, k, n, &a, &b, &mut c);
            best = best.min(t0.elapsed().as_secs_f64());
        }
        let gflops = 2.0 * (m * k * n) as f64 / best / 1e9;
        println!("sgemm [{m},{k}]x[{k},{n}] on {} threads: best {:.0} ms, {gflops:.1} GFLOP/s", threads(), best * 1e3);
    }
}
