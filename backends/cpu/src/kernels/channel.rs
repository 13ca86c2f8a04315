//! BatchNorm's channel ops as the interpreter's `channel_sum` (`_mean`,
//! `_per_step`) and `channel_broadcast` (`_mean`), the same bits.
//!
//! A sum visits its channel's elements in the interpreter's order (leading
//! index outer, then the positions after the channel dim, from `+0`): one
//! chain of adds per result element. Up to [`GROUP`] neighbouring
//! channels of one step are summed together, element by element, so that
//! their independent chains overlap in the core instead of waiting on one
//! add after another; the results are split over threads by such groups.

use super::par_rows;
use crate::pool::ELEMENTS_PER_NS;

/// Channels summed side by side.
const GROUP: usize = 8;

/// `channel_sum` / `channel_mean` and their `_per_step` forms: `x` is
/// `[steps, lead, c, inner]` and `out` `[steps, c]`; `out[t, k]` is the sum
/// over `l = 0..lead`, then `i = 0..inner`, of `x[t, l, k, i]`, divided by
/// `lead * inner` when `mean` (`steps` is 1 for a sum over everything,
/// time being part of `lead`).
pub(crate) fn channel_sum(x: &[f32], lead: usize, c: usize, inner: usize, mean: bool, out: &mut [f32]) {
    let n = (lead * inner) as f32;
    // About one element per ns: the adds of a chain wait on each other.
    par_rows(out, 1, x.len(), |first, chunk| {
        let mut j = 0;
        while j < chunk.len() {
            let (t, k0) = ((first + j) / c, (first + j) % c);
            let g = GROUP.min(c - k0).min(chunk.len() - j);
            let mut acc = [0.0f32; GROUP];
            for l in 0..lead {
                let base = ((t * lead + l) * c + k0) * inner;
                let rows = &x[base..base + g * inner];
                for i in 0..inner {
                    for (a, row) in acc.iter_mut().zip(rows.chunks_exact(inner.max(1))) {
                        *a += row[i];
                    }
                }
            }
            for (o, a) in chunk[j..j + g].iter_mut().zip(acc) {
                *o = if mean { a / n } else { a };
            }
            j += g;
        }
    });
}

/// `channel_broadcast` (`_mean`): `a` is `[steps, c]` (`steps` 1 for a
/// fixed `[C]`) and `out` `[steps, lead, c, inner]`; every element of row
/// `[t, l, k]` is `a[t, k]`, divided by `lead * inner` when `mean`.
pub(crate) fn channel_broadcast(a: &[f32], steps: usize, lead: usize, inner: usize, mean: bool, out: &mut [f32]) {
    let n = (lead * inner) as f32;
    let c = a.len().checked_div(steps).unwrap_or(0);
    par_rows(out, inner.max(1), out.len() / ELEMENTS_PER_NS, |first, chunk| {
        for (r, o) in chunk.chunks_exact_mut(inner.max(1)).enumerate() {
            let r = first + r;
            let (t, k) = (r / (lead * c).max(1), r % c.max(1));
            let v = a[t * c + k];
            o.fill(if mean { v / n } else { v });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interpreter's loop, one chain per result.
    fn reference(x: &[f32], steps: usize, lead: usize, c: usize, inner: usize, mean: bool) -> Vec<f32> {
        let mut out = vec![0.0f32; steps * c];
        for t in 0..steps {
            for l in 0..lead {
                for k in 0..c {
                    for i in 0..inner {
                        out[t * c + k] += x[((t * lead + l) * c + k) * inner + i];
                    }
                }
            }
        }
        if mean {
            out.iter_mut().for_each(|o| *o /= (lead * inner) as f32);
        }
        out
    }

    #[test]
    fn channel_sums_give_the_interpreters_bits() {
        // Values of very different sizes, so that the order of the adds
        // shows in the bits; 11 channels: a group of 8, then one of 3.
        for (steps, lead, c, inner) in [(3, 4, 11, 5), (1, 6, 11, 1), (2, 3, 1, 7), (4, 2, 9, 0)] {
            let x: Vec<f32> = (0..steps * lead * c * inner)
                .map(|j| ((j * 7919) % 1000) as f32 * if j % 3 == 0 { 1e-4 } else { 1.7 } - 300.0)
                .collect();
            for mean in [false, true] {
                let mut out = vec![f32::NAN; steps * c];
                channel_sum(&x, lead, c, inner, mean, &mut out);
                let want = reference(&x, steps, lead, c, inner, mean);
                let (got, want): (Vec<u32>, Vec<u32>) =
                    (out.iter().map(|v| v.to_bits()).collect(), want.iter().map(|v| v.to_bits()).collect());
                assert_eq!(got, want, "{steps}x{lead}x{c}x{inner}, mean {mean}");
            }
        }
    }

    #[test]
    fn channel_broadcast_repeats_each_steps_channel() {
        let a = [1.0f32, 2.0, 10.0, 20.0];
        let mut out = vec![0.0f32; 2 * 2 * 2 * 3];
        channel_broadcast(&a, 2, 2, 3, false, &mut out);
        let want: Vec<f32> =
            [1.0, 2.0, 1.0, 2.0, 10.0, 20.0, 10.0, 20.0].iter().flat_map(|&v| std::iter::repeat_n(v, 3)).collect();
        assert_eq!(out, want);
        let mut out = vec![0.0f32; 2 * 2];
        channel_broadcast(&a[..2], 1, 2, 1, true, &mut out);
        assert_eq!(out, [0.5, 1.0, 0.5, 1.0]);
    }
}
