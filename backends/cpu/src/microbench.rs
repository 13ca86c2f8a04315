//! Timings of single kernels (ignored tests; run with
//! `cargo test --release -p snnc-cpu --lib microbench -- --ignored --nocapture --test-threads 1`).

use crate::{event, kernels};

/// Deterministic pseudo-random numbers in [0, 1).
fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn spikes(n: usize, density: f32, seed: u64) -> Vec<f32> {
    rand(n, seed).into_iter().map(|u| if u < density { 1.0 } else { 0.0 }).collect()
}

/// The minimum of `runs` timings of `f` (wall clock), in ms: the least
/// disturbed by other processes.
fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let t0 = std::time::Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[0]
}

/// The tutorial's encoder spikes `[T = 32, B, 784]` on the first `B`
/// Fashion-MNIST test images (constant-current LIF, v_th 1, dt·tau 0.1),
/// or `None` where the data set is not installed.
fn encoder_spikes(batch: usize) -> Option<Vec<f32>> {
    let path = std::path::Path::new("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz");
    let (n, rows, cols, pixels) = snnc_runtime::idx::read_idx_images(path).ok()?;
    assert!(n >= batch && rows * cols == 784);
    let x: Vec<f32> =
        pixels[..batch * 784].iter().map(|&p| ((f64::from(p) / 255.0 - 0.2860) / 0.3530) as f32).collect();
    let mut v = vec![0.0f32; batch * 784];
    let mut z = Vec::with_capacity(32 * batch * 784);
    for _ in 0..32 {
        for (vi, &xi) in v.iter_mut().zip(&x) {
            let vn = *vi + 0.1 * (-*vi + xi);
            let s = if vn - 1.0 > 0.0 { 1.0 } else { 0.0 };
            z.push(s);
            *vi = vn - s * vn;
        }
    }
    Some(z)
}

#[test]
#[ignore]
fn microbench_active() {
    let enc = encoder_spikes(256);
    let rand5 = spikes(64 * 784, 0.04, 5);
    let mut buf = vec![0u32; 800];
    type Scan = fn(&[f32], &mut [u32]) -> usize;
    let variants: [(&str, Scan); 1] = [("active", event::active)];
    for (data, chunk, row) in [
        ("encoder", enc.as_ref().map(|x| &x[(10 * 256 + 64) * 784..(10 * 256 + 128) * 784]), 784),
        ("random 4 %", Some(&rand5[..]), 784),
        ("random 4 %", Some(&rand5[..]), 100),
    ] {
        let Some(chunk) = chunk else { continue };
        for (name, f) in variants {
            let mut total = 0;
            let t = time(200, || {
                total = 0;
                for r in chunk.chunks_exact(row) {
                    total += f(r, &mut buf);
                }
            });
            println!(
                "{data}, rows of {row}, {name}: {:.3} ns per value ({total} active)",
                t * 1e6 / chunk.len() as f64
            );
        }
    }
}

#[test]
#[ignore]
fn microbench_event_kernels() {
    let enc = encoder_spikes(256);
    let cases: [(&str, usize, usize, usize, f32); 5] = [
        ("encoder", 8192, 784, 100, 0.02),
        ("random", 8192, 784, 100, 0.02),
        ("step", 256, 100, 100, 0.05),
        ("readout", 8192, 100, 10, 0.05),
        ("recurrent grad", 8192, 100, 100, 0.05),
    ];
    for (what, rows, n_in, n_out, density) in cases {
        let x = match (&enc, what) {
            (Some(e), "encoder") => e.clone(),
            (None, "encoder") => continue,
            _ => spikes(rows * n_in, density, 1),
        };
        let density = x.iter().filter(|&&v| v != 0.0).count() as f64 / x.len() as f64;
        let w: Vec<f32> = rand(n_out * n_in, 2).into_iter().map(|v| v - 0.5).collect();
        let g: Vec<f32> = rand(rows * n_out, 3).into_iter().map(|v| v - 0.5).collect();
        let (mut wt, mut finite) = (Vec::new(), Vec::new());
        kernels::transpose(&w, n_in, n_out, &mut wt, &mut finite);
        let mut sp = event::SpikeRows::default();
        let scan = time(9, || sp.build(&x, n_in));
        let mut out = vec![0.0; rows * n_out];
        let prod = time(9, || event::matmul(&sp, &wt, &finite, n_in, n_out, &mut out));
        let mut dense = vec![0.0; rows * n_out];
        let dense_t = time(9, || kernels::matmul_dense(&x, &w, n_in, n_out, &mut dense));
        let mut dw = vec![0.0; n_out * n_in];
        let mut scratch = event::GradScratch::default();
        let grad = time(9, || event::matmul_grad_weight(&g, &sp, n_in, n_out, &mut scratch, &mut dw));
        let mut dw3 = vec![0.0; n_out * n_in];
        let gdense = time(9, || kernels::matmul_grad_weight_dense(&g, &x, n_in, n_out, &mut dw3));
        println!(
            "{what} [{rows}x{n_in}] -> {n_out}, density {density:.4}: scan {scan:.3} ms; \
             product {prod:.3} (dense {dense_t:.3}) ms; grad weight {grad:.3} (dense {gdense:.3}) ms"
        );
    }
}

/// The measurements behind `sparsify`'s cost constants: per row, the dense
/// GEMM against the event-driven kernel (spike lists made from the dense
/// input, then the sums), on one thread (`SNNC_THREADS=1`), for random
/// spikes of several densities.
#[test]
#[ignore]
fn microbench_calibrate() {
    let rows = 2048;
    for (n_in, n_out) in [(784, 100), (100, 100), (100, 10), (512, 512), (1024, 32)] {
        let w: Vec<f32> = rand(n_out * n_in, 2).into_iter().map(|v| v - 0.5).collect();
        let g: Vec<f32> = rand(rows * n_out, 3).into_iter().map(|v| v - 0.5).collect();
        let (mut wt, mut finite) = (Vec::new(), Vec::new());
        kernels::transpose(&w, n_in, n_out, &mut wt, &mut finite);
        let mut out = vec![0.0; rows * n_out];
        let mut dw = vec![0.0; n_out * n_in];
        let x0 = spikes(rows * n_in, 0.1, 1);
        let dense = time(5, || kernels::matmul_dense(&x0, &w, n_in, n_out, &mut out)) * 1e6 / rows as f64;
        let gdense = time(5, || kernels::matmul_grad_weight_dense(&g, &x0, n_in, n_out, &mut dw)) * 1e6 / rows as f64;
        let mut line =
            format!("{n_in:>5}x{n_out:<4} dense {dense:8.1} ns/row, grad {gdense:8.1}; event (product, grad):");
        for density in [0.0f32, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5] {
            let x = spikes(rows * n_in, density, 1);
            let mut sp = event::SpikeRows::default();
            let mut scratch = event::GradScratch::default();
            let ev = time(5, || {
                sp.build(&x, n_in);
                event::matmul(&sp, &wt, &finite, n_in, n_out, &mut out);
            }) * 1e6
                / rows as f64;
            let gev = time(5, || {
                sp.build(&x, n_in);
                event::matmul_grad_weight(&g, &sp, n_in, n_out, &mut scratch, &mut dw);
            }) * 1e6
                / rows as f64;
            line += &format!(" {density}: {ev:.1} {gev:.1};");
        }
        println!("{line}");
    }
}

/// Dense against event-driven convolutions (product and weight gradient)
/// at several input densities, in ns per image, for the geometries of the
/// example nets: the Norse ConvNet's two convolutions and
/// `convnet_direct`'s second. Calibrates `sparsify`'s `CONV_ADD`.
#[test]
#[ignore]
fn microbench_calibrate_conv() {
    use crate::event_conv;
    // (c, h, o, k): square inputs, stride 1, no padding.
    for (c, h, o, k) in [(1, 28, 20, 5), (20, 12, 50, 5), (32, 12, 64, 5)] {
        let n = 256;
        let oh = h - k + 1;
        let s = kernels::ConvShape {
            n,
            c,
            h,
            w: h,
            o,
            kh: k,
            kw: k,
            oh,
            ow: oh,
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        };
        let w: Vec<f32> = rand(o * c * k * k, 2).into_iter().map(|v| v - 0.5).collect();
        let g: Vec<f32> = rand(n * o * oh * oh, 3).into_iter().map(|v| v - 0.5).collect();
        let mut out = vec![0.0; n * o * oh * oh];
        let mut dw = vec![0.0; o * c * k * k];
        let x0 = spikes(n * c * h * h, 0.1, 1);
        let per = |ms: f64| ms * 1e6 / n as f64;
        let dense = per(time(3, || kernels::conv2d(&x0, &w, None, s, &mut out)));
        let gdense = per(time(3, || kernels::conv2d_grad_weight(&g, &x0, s, &mut dw)));
        let mut line = format!("{c}x{h}x{h} -> {o}, {k}x{k}: dense {dense:9.0} ns/image, grad {gdense:9.0}; event:");
        for density in [0.0f32, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3] {
            let x = spikes(n * c * h * h, density, 1);
            let ev = per(time(3, || event_conv::spike_conv2d(&x, &w, None, s, &mut out)));
            let gev = per(time(3, || event_conv::spike_conv2d_grad_weight(&g, &x, s, &mut dw)));
            line += &format!(" {density}: {ev:.0} {gev:.0};");
        }
        println!("{line}");
    }
}

/// The STDP update of the `stdp-784x400-b16` benchmark's shape (350
/// steps, 16 rows, Diehl & Cook's spike rates), and the cache-line floor
/// of its event-driven path: the same entries read and written with no
/// arithmetic.
#[test]
#[ignore]
fn microbench_stdp_update() {
    use crate::stdp;
    use snnc_ir::{StdpKind, StdpRule};
    let (rows, n_out, n_in, steps) = (16, 400, 784, 350);
    let rule = StdpRule {
        kind: StdpKind::Additive,
        eta_plus: 1e-3,
        eta_minus: 1e-3,
        w_min: 0.0,
        w_max: 1.0,
        mu: 0.0,
        hardbound: true,
    };
    let data: Vec<_> = (0..steps as u64)
        .map(|t| {
            (
                spikes(rows * n_out, 0.024, 4 * t + 1),
                rand(rows * n_in, 4 * t + 2),
                rand(rows * n_out, 4 * t + 3),
                spikes(rows * n_in, 0.0047, 4 * t + 4),
            )
        })
        .collect();
    let w0 = rand(n_out * n_in, 99);
    let ms = time(5, || {
        let mut w = w0.clone();
        let mut s = stdp::StdpScratch::default();
        s.new_run();
        for (z_post, t_pre, t_post, z_pre) in &data {
            let x = stdp::StdpOperands { z_post, t_pre, t_post, z_pre, n_out, n_in };
            stdp::update(&rule, &mut w, &x, &mut s);
        }
        std::hint::black_box(&w);
    });
    let prep = time(5, || {
        let mut s = stdp::StdpScratch::default();
        for (z_post, t_pre, t_post, z_pre) in &data {
            let x = stdp::StdpOperands { z_post, t_pre, t_post, z_pre, n_out, n_in };
            std::hint::black_box(stdp::prepare(&x, rows, &mut s));
        }
    });
    println!("prepare alone: {prep:.2} ms");
    // The floor: the rows with a postsynaptic spike whole, the others at
    // the columns with a presynaptic spike, each entry read and written.
    let floor = time(5, || {
        let mut w = w0.clone();
        for (z_post, _, _, z_pre) in &data {
            let hit: Vec<bool> = (0..n_out).map(|o| (0..rows).any(|r| z_post[r * n_out + o] != 0.0)).collect();
            let cols: Vec<usize> = (0..n_in).filter(|&i| (0..rows).any(|r| z_pre[r * n_in + i] != 0.0)).collect();
            for (o, row) in w.chunks_exact_mut(n_in).enumerate() {
                if hit[o] {
                    for e in row.iter_mut() {
                        *e = (*e * 0.999).min(1.0);
                    }
                } else {
                    for &i in &cols {
                        row[i] = (row[i] * 0.999).min(1.0);
                    }
                }
            }
        }
        std::hint::black_box(&w);
    });
    println!("stdp update 784x400 b16, {steps} steps: {ms:.2} ms; touching the same entries only: {floor:.2} ms");
}
