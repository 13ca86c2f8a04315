//! `Op::Uniform` on the CPU: the counter-based numbers of
//! [`snnc_ir::rng::uniform`], many at a time.
//!
//! Each number is a pure function of `(seed, t, k)`, so the output is split
//! over the pool in blocks and each block is computed by a loop compiled
//! for the widest vector instructions the CPU has (eight 64-bit multiplies
//! per instruction with AVX-512DQ): the same integer arithmetic, the same
//! bits, in any order and on any thread.

use snnc_ir::rng::mix64;

/// Fills `out` with the numbers of step `t` (`seq == false`: `out[k] =
/// uniform(seed, t, k)`), or of a whole sequence whose steps hold
/// `per_step` numbers each (`seq == true`: `out[k] = uniform(seed, k /
/// per_step, k % per_step)`).
pub(crate) fn fill(seed: u64, t: usize, seq: bool, per_step: usize, out: &mut [f32]) {
    let per_step = per_step.max(1);
    // About 0.5 ns a number on one thread with AVX-512 (measured: 4.4 M
    // numbers in 2.3 ms), 2 ns without wide vectors; the estimate is the
    // former, so a step's few thousand numbers are not split.
    crate::kernels::par_rows(out, BLOCK, out.len() / 2, |first_block, chunk| {
        let first = first_block * BLOCK;
        if !seq {
            fill_step(seed, t as u32, first as u64, chunk);
            return;
        }
        // A chunk may span steps: one run of each step's numbers at a time.
        let mut k = first;
        let mut rest = chunk;
        while !rest.is_empty() {
            let (step, within) = (k / per_step, k % per_step);
            let n = (per_step - within).min(rest.len());
            let (head, tail) = rest.split_at_mut(n);
            fill_step(seed, step as u32, within as u64, head);
            rest = tail;
            k += n;
        }
    });
}

/// Numbers per part of a split (whole blocks; the last part takes the tail).
const BLOCK: usize = 256;

/// `out[j] = uniform(seed, t, first + j)`.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn fill_step(seed: u64, t: u32, first: u64, out: &mut [f32]) {
    let high = u64::from(t) << 40;
    for (j, o) in out.iter_mut().enumerate() {
        let counter = high ^ (first + j as u64);
        let bits = mix64(seed ^ mix64(counter));
        // 24 bits, exactly representable: the f64 quotient of
        // `snnc_ir::rng::uniform` rounded to f32 is this f32 quotient.
        *o = (bits >> 40) as u32 as f32 * (1.0 / (1u32 << 24) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_is_the_irs() {
        for seq in [false, true] {
            let (per_step, steps) = (37, 5);
            let mut out = vec![0.0f32; if seq { per_step * steps } else { 3000 }];
            fill(0xDEAD_BEEF, 3, seq, per_step, &mut out);
            for (k, &v) in out.iter().enumerate() {
                let (t, kk) = if seq { (k / per_step, k % per_step) } else { (3, k) };
                let want = snnc_ir::rng::uniform(0xDEAD_BEEF, t as u32, kk as u64) as f32;
                assert_eq!(v.to_bits(), want.to_bits(), "seq {seq} k {k}");
            }
        }
    }
}
