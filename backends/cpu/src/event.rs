//! The event-driven kernels: the spike product `x · wᵀ` and its weight
//! gradient `gradᵀ · x`, where `x` holds mostly zeros (spikes).
//!
//! Both work on [`SpikeRows`], the list of each row's nonzero inputs (with
//! their values), made by a scan that tests 16 values at a time. The lists
//! of a value that does not change during a run (a sequence region's
//! operand, such as the collected encoder spikes) are made once per run
//! and shared by the product and the weight gradient (see `exec.rs`).
//! The accumulation adds only the weight (or gradient) rows of the active
//! inputs, a block of up to 32 outputs at a time held in registers.
//!
//! The arithmetic is the interpreter's, in its order: each output starts
//! at `+0` and gets `w` (for an input of exactly `1`, as `1 · w` is `w`) or
//! `x · w` added, in ascending input order (product) or ascending row
//! order (weight gradient). Zero inputs are skipped except where they meet
//! a non-finite weight column or gradient row (`0 · inf` is NaN, as in the
//! dense formula). So the results are the interpreter's bits, and do not
//! depend on how the rows or inputs are split over threads.

use crate::pool;

/// Outputs per register block of the accumulation loops (8 SSE vectors).
const BLOCK: usize = 32;

/// Values tested at once by the scan.
const SCAN: usize = 16;

/// Rows per part of [`SpikeRows`] (a constant: the parts do not depend on
/// the number of threads).
const PART_ROWS: usize = 128;

/// Writes to the front of `buf` (at least `x.len()` long) the positions
/// `k` of the values `x[k]` that are not `±0` (NaN included), in ascending
/// order, and returns how many there are.
///
/// Blocks of 64 values are tested at once (the OR of their bits, the sign
/// shifted out); in a block with a nonzero value, each 16 values give a
/// bit mask whose set bits are the positions. (Measured in cache, on the
/// tutorial's encoder spikes and on random spikes at 4 %: 0.13–0.17 and
/// 0.26 ns a value, against 0.30 and 0.57 for a branch-free write of every
/// value of a nonzero block, 0.30 and 0.53 for writes of 4 positions at a
/// time from a table of nibbles, and 0.19 on the encoder's spikes for the
/// masks of every 16 values without the test of 64.)
pub(crate) fn active(x: &[f32], buf: &mut [u32]) -> usize {
    /// Appends the nonzero positions of `c` (at most 16 values from `at`).
    #[inline(always)]
    fn chunk(c: &[f32], at: u32, buf: &mut [u32], n: &mut usize) {
        let mut m = 0u32;
        for (k, &v) in c.iter().enumerate() {
            m |= u32::from((v.to_bits() << 1) != 0) << k;
        }
        while m != 0 {
            buf[*n] = at + m.trailing_zeros();
            *n += 1;
            m &= m - 1;
        }
    }
    let mut n = 0;
    let mut blocks = x.chunks_exact(4 * SCAN);
    let mut at = 0u32;
    for blk in &mut blocks {
        if (blk.iter().fold(0u32, |a, v| a | v.to_bits()) << 1) != 0 {
            for (q, c) in blk.chunks_exact(SCAN).enumerate() {
                chunk(c, at + (q * SCAN) as u32, buf, &mut n);
            }
        }
        at += 4 * SCAN as u32;
    }
    for (q, c) in blocks.remainder().chunks(SCAN).enumerate() {
        chunk(c, at + (q * SCAN) as u32, buf, &mut n);
    }
    n
}

/// The nonzero entries of a `rows × n_in` matrix, row by row: the lists
/// of each row, kept in parts (each made on one thread).
#[derive(Debug, Default)]
pub(crate) struct SpikeRows {
    rows: usize,
    n_in: usize,
    parts: Vec<SpikeRowsPart>,
    /// Per row: its part and the range of its entries there.
    at: Vec<(u32, u32, u32)>,
}

/// The lists of some rows: row `rows[q].0` has the inputs `idx[a..b]` with
/// the values `val[a..b]`, `(a, b) = (rows[q].1, rows[q].2)`.
#[derive(Debug, Default)]
pub(crate) struct SpikeRowsPart {
    rows: Vec<(u32, u32, u32)>,
    idx: Vec<u32>,
    val: Vec<f32>,
    /// Scratch of [`active`] (`n_in` long).
    buf: Vec<u32>,
}

impl SpikeRowsPart {
    /// Lists the nonzero values of `x` (one row of the matrix) as row `r`.
    pub(crate) fn push_row(&mut self, r: usize, x: &[f32]) {
        if self.buf.len() < x.len() {
            self.buf.resize(x.len(), 0);
        }
        let n = active(x, &mut self.buf);
        let from = self.idx.len() as u32;
        let found = &self.buf[..n];
        self.idx.extend_from_slice(found);
        self.val.extend(found.iter().map(|&k| x[k as usize]));
        self.rows.push((r as u32, from, self.idx.len() as u32));
    }

    /// Lists the ones of a row given as bits (`words[w]` bit `k`: input
    /// `16 w + k` is `1`, the others `0`) as row `r`.
    pub(crate) fn push_row_bits(&mut self, r: usize, words: &[u16]) {
        let from = self.idx.len() as u32;
        for (w, &word) in words.iter().enumerate() {
            let mut m = word;
            while m != 0 {
                self.idx.push(16 * w as u32 + m.trailing_zeros());
                m &= m - 1;
            }
        }
        self.val.resize(self.idx.len(), 1.0);
        self.rows.push((r as u32, from, self.idx.len() as u32));
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.idx.clear();
        self.val.clear();
    }
}

impl SpikeRows {
    /// Lists the nonzero inputs of every row of `x` (`rows × n_in`), in
    /// parts of [`PART_ROWS`] rows made on the thread pool.
    pub(crate) fn build(&mut self, x: &[f32], n_in: usize) {
        let rows = x.len().checked_div(n_in).unwrap_or(0);
        let n_parts = rows.div_ceil(PART_ROWS);
        let mut parts = self.take_parts(n_parts);
        {
            let numbered: Vec<(usize, &mut SpikeRowsPart)> = parts.iter_mut().enumerate().collect();
            // Parts go together in groups of [`pool::parts`]' split.
            let n_groups = pool::parts(n_parts, x.len() / pool::ELEMENTS_PER_NS);
            let per = n_parts.div_ceil(n_groups.max(1)).max(1);
            pool::for_each_item(chunk_vec(numbered, per), |_, group| {
                for (p, part) in group {
                    for r in p * PART_ROWS..((p + 1) * PART_ROWS).min(rows) {
                        part.push_row(r, &x[r * n_in..(r + 1) * n_in]);
                    }
                }
            });
        }
        self.finish(rows, n_in, parts);
    }

    /// `n` empty parts to fill (with [`SpikeRowsPart::push_row`]) and hand
    /// to [`SpikeRows::finish`]; they reuse the buffers of the last lists.
    pub(crate) fn take_parts(&mut self, n: usize) -> Vec<SpikeRowsPart> {
        let mut parts = std::mem::take(&mut self.parts);
        parts.resize_with(n, SpikeRowsPart::default);
        parts.iter_mut().for_each(SpikeRowsPart::clear);
        parts
    }

    /// Makes these the lists of a `rows × n_in` matrix from `parts`, which
    /// hold every row exactly once.
    pub(crate) fn finish(&mut self, rows: usize, n_in: usize, parts: Vec<SpikeRowsPart>) {
        self.rows = rows;
        self.n_in = n_in;
        self.at.clear();
        self.at.resize(rows, (u32::MAX, 0, 0));
        for (p, part) in parts.iter().enumerate() {
            for &(r, a, b) in &part.rows {
                self.at[r as usize] = (p as u32, a, b);
            }
        }
        debug_assert!(self.at.iter().all(|a| a.0 != u32::MAX), "every row is listed");
        self.parts = parts;
    }

    /// Whether these are the lists of a `rows × n_in` matrix.
    pub(crate) fn fits(&self, rows: usize, n_in: usize) -> bool {
        self.rows == rows && self.n_in == n_in
    }

    /// The active `(input, value)` pairs of row `r`.
    fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (p, a, b) = self.at[r];
        let part = &self.parts[p as usize];
        (&part.idx[a as usize..b as usize], &part.val[a as usize..b as usize])
    }

    /// How many entries there are.
    pub(crate) fn len(&self) -> usize {
        self.parts.iter().map(|p| p.idx.len()).sum()
    }
}

/// `items` in groups of `per` (the last may be shorter), in order.
fn chunk_vec<T>(items: Vec<T>, per: usize) -> Vec<Vec<T>> {
    let mut groups = Vec::with_capacity(items.len().div_ceil(per.max(1)));
    let mut cur = Vec::with_capacity(per);
    for item in items {
        cur.push(item);
        if cur.len() == per {
            groups.push(std::mem::replace(&mut cur, Vec::with_capacity(per)));
        }
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups
}

/// `acc[j] += x · w[j]` over `W` lanes, the interpreter's operation for
/// one active input; `acc[j] += w[j]` when `x` is exactly `1`.
#[inline(always)]
fn add_scaled<const W: usize>(acc: &mut [f32; W], x: f32, w: &[f32; W]) {
    if x == 1.0 {
        for (a, &v) in acc.iter_mut().zip(w) {
            *a += v;
        }
    } else {
        for (a, &v) in acc.iter_mut().zip(w) {
            *a += x * v;
        }
    }
}

/// A sequence of terms `(k, x)`: row `k` of a matrix, scaled by `x`,
/// visited by internal iteration (plain nested loops, so that the
/// accumulators of [`block_sum`] stay in registers).
trait Terms: Copy {
    fn each(self, f: impl FnMut(usize, f32));
}

/// The entries of one list: `(idx[e], val[e])`.
#[derive(Clone, Copy)]
struct Listed<'a> {
    idx: &'a [u32],
    val: &'a [f32],
}

impl Terms for Listed<'_> {
    #[inline(always)]
    fn each(self, mut f: impl FnMut(usize, f32)) {
        for (&k, &x) in self.idx.iter().zip(self.val) {
            f(k as usize, x);
        }
    }
}

/// The inputs of a row that are nonzero (`idx`, `val`: its list) or meet
/// a non-finite weight column (`always[k]`; a zero input there counts as
/// `0`: the sign of a zero input does not change a sum that starts at `+0`).
#[derive(Clone, Copy)]
struct MergedRow<'a> {
    idx: &'a [u32],
    val: &'a [f32],
    always: &'a [bool],
}

impl Terms for MergedRow<'_> {
    #[inline(always)]
    fn each(self, mut f: impl FnMut(usize, f32)) {
        let mut e = 0;
        for (k, &a) in self.always.iter().enumerate() {
            if e < self.idx.len() && self.idx[e] as usize == k {
                f(k, self.val[e]);
                e += 1;
            } else if a {
                f(k, 0.0);
            }
        }
    }
}

/// The inputs of a dense row `x` that are nonzero or meet a non-finite
/// weight column (`always[k]`).
#[derive(Clone, Copy)]
struct DenseRow<'a> {
    x: &'a [f32],
    always: &'a [bool],
}

impl Terms for DenseRow<'_> {
    #[inline(always)]
    fn each(self, mut f: impl FnMut(usize, f32)) {
        for (k, (&x, &a)) in self.x.iter().zip(self.always).enumerate() {
            if x != 0.0 || a {
                f(k, x);
            }
        }
    }
}

/// `out[o0..o0 + W]` = the sum, from `+0` in the order of `terms`, of `x
/// · rows[k][o0..o0 + W]` over `(k, x)` in `terms`; `rows` is row-major
/// with rows of `stride`.
#[inline(always)]
fn block_sum<const W: usize>(terms: impl Terms, rows: &[f32], stride: usize, o0: usize, out: &mut [f32]) {
    let mut acc = [0.0f32; W];
    terms.each(|k, x| {
        let w: &[f32; W] = rows[k * stride + o0..][..W].try_into().expect("W values");
        add_scaled(&mut acc, x, w);
    });
    out[o0..o0 + W].copy_from_slice(&acc);
}

/// `out[o]` = the sum, from `+0` in the order of `terms`, of `x ·
/// rows[k][o]` over `(k, x)` in `terms`, for every `o < out.len()` (`rows`
/// has rows of `stride >= out.len()`), in register blocks of outputs.
fn sum_rows_of(terms: impl Terms, rows: &[f32], stride: usize, out: &mut [f32]) {
    let n = out.len();
    let mut o0 = 0;
    // Blocks of 32 while more than 48 are left, then one of the rest (at
    // most 48 outputs: 12 SSE registers), so that the terms are visited
    // as few times as the registers allow.
    while n - o0 > 48 {
        block_sum::<BLOCK>(terms, rows, stride, o0, out);
        o0 += BLOCK;
    }
    macro_rules! last_block {
        ($($w:literal)*) => {
            match n - o0 {
                0 => {}
                $($w => block_sum::<$w>(terms, rows, stride, o0, out),)*
                _ => unreachable!("at most 48 outputs are left"),
            }
        };
    }
    last_block!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24
        25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48);
}

/// The event-driven product: row `r` of `out` (`rows × n_out`) is the sum,
/// in ascending input order from `+0`, of the rows of the transposed
/// weight `wt` (`n_in × n_out`) of the row's active inputs (`spikes`, the
/// lists of the input), each scaled by its input. `finite[k]`: column `k`
/// of the weight is finite; where one is not, zero inputs meet it as in
/// the dense formula. The interpreter's bits. Rows are split over threads.
pub(crate) fn matmul(spikes: &SpikeRows, wt: &[f32], finite: &[bool], n_in: usize, n_out: usize, out: &mut [f32]) {
    if n_out == 0 {
        return;
    }
    let rows = out.len() / n_out;
    debug_assert!(spikes.fits(rows, n_in));
    let all_finite = finite.iter().all(|&f| f);
    let not_finite: Vec<bool> = finite.iter().map(|&f| !f).collect();
    let ns = (spikes.len().saturating_mul(n_out) + rows * n_out) / pool::EVENT_ADDS_PER_NS;
    pool::for_rows(out, n_out, pool::parts(rows, ns), |first, chunk| {
        for (l, acc) in chunk.chunks_exact_mut(n_out).enumerate() {
            let r = first + l;
            let (idx, val) = spikes.row(r);
            if all_finite {
                sum_rows_of(Listed { idx, val }, wt, n_out, acc);
            } else {
                sum_rows_of(MergedRow { idx, val, always: &not_finite }, wt, n_out, acc);
            }
        }
    });
}

/// [`matmul`] on the weight `w` as it is (`n_out × n_in`), not
/// transposed: for a weight that changes at every step (a plastic weight,
/// state of the step loop), where transposing it each step would cost more
/// than the few spikes' sums. Each output is the same sum, in the same
/// order, as [`matmul`]'s (the interpreter's bits); the columns of the
/// active inputs are read with a stride. Returns `false` (and writes
/// nothing) when `w` holds a non-finite number: then zero inputs meet it
/// and the caller takes [`matmul`]'s path.
pub(crate) fn matmul_untransposed(
    spikes: &SpikeRows,
    w: &[f32],
    n_in: usize,
    n_out: usize,
    known_finite: bool,
    out: &mut [f32],
) -> bool {
    if n_out == 0 {
        return true;
    }
    if !known_finite && !all_finite(w) {
        return false;
    }
    let rows = out.len() / n_out;
    debug_assert!(spikes.fits(rows, n_in));
    // Input by input, each adding its weight column to every output: each
    // output's sum is `+0` plus the terms in the order of the list, as
    // the interpreter's, in one long loop per input rather than a short
    // one per output.
    for (r, acc) in out.chunks_exact_mut(n_out).enumerate() {
        acc.fill(0.0);
        let (idx, val) = spikes.row(r);
        for (&k, &x) in idx.iter().zip(val) {
            let col = w[k as usize..].iter().step_by(n_in);
            if x == 1.0 {
                for (a, &v) in acc.iter_mut().zip(col) {
                    *a += v;
                }
            } else {
                for (a, &v) in acc.iter_mut().zip(col) {
                    *a += x * v;
                }
            }
        }
    }
    true
}

/// Whether [`matmul_grad_weight_direct`] pays over [`matmul_grad_weight`]:
/// it writes `spikes · n_out` values with a stride where the other
/// clears, fills and transposes all `n_in · n_out`.
pub(crate) fn grad_weight_direct_pays(spikes: &SpikeRows, n_in: usize) -> bool {
    spikes.len().saturating_mul(8) <= n_in
}

/// [`matmul_grad_weight`] written straight into `out` (`n_out × n_in`):
/// `out` is cleared, then each row's gradient (times the input) is added
/// into the columns of its active inputs, rows in ascending order — the
/// same sums in the same order (the interpreter's bits), without the
/// transposed scratch. For few spikes (see [`grad_weight_direct_pays`]).
pub(crate) fn matmul_grad_weight_direct(grad: &[f32], spikes: &SpikeRows, n_in: usize, n_out: usize, out: &mut [f32]) {
    out.fill(0.0);
    let rows = grad.len().checked_div(n_out).unwrap_or(0);
    if rows == 0 || n_in == 0 {
        return;
    }
    debug_assert!(spikes.fits(rows, n_in));
    for r in 0..rows {
        let g = &grad[r * n_out..(r + 1) * n_out];
        let (idx, val) = spikes.row(r);
        let add = |out: &mut [f32], i: usize, v: f32| {
            for (o, &gv) in g.iter().enumerate() {
                let a = &mut out[o * n_in + i];
                if v == 1.0 {
                    *a += gv;
                } else {
                    *a += gv * v;
                }
            }
        };
        if all_finite(g) {
            for (&i, &v) in idx.iter().zip(val) {
                add(out, i as usize, v);
            }
        } else {
            // Every input, zeros included (`0 · inf` is NaN), as
            // [`matmul_grad_weight`] does.
            let mut e = 0;
            for i in 0..n_in {
                let v = if e < idx.len() && idx[e] as usize == i {
                    e += 1;
                    val[e - 1]
                } else {
                    0.0
                };
                add(out, i, v);
            }
        }
    }
}

/// Reusable buffers of [`matmul_grad_weight`].
#[derive(Debug, Default)]
pub(crate) struct GradScratch {
    dwt: Vec<f32>,
}

/// [`matmul`] on a dense `x` (`rows × n_in`), read row by row without
/// lists: the interpreter's loop (its bits) for the short sums of dense
/// products with few inputs.
pub(crate) fn matmul_dense_rows(x: &[f32], wt: &[f32], finite: &[bool], n_in: usize, n_out: usize, out: &mut [f32]) {
    if n_out == 0 {
        return;
    }
    let rows = out.len() / n_out;
    let not_finite: Vec<bool> = finite.iter().map(|&f| !f).collect();
    let ns = (x.len() + out.len()).saturating_mul(n_out) / pool::EVENT_ADDS_PER_NS;
    pool::for_rows(out, n_out, pool::parts(rows, ns), |first, chunk| {
        for (l, acc) in chunk.chunks_exact_mut(n_out).enumerate() {
            let r = first + l;
            sum_rows_of(DenseRow { x: &x[r * n_in..(r + 1) * n_in], always: &not_finite }, wt, n_out, acc);
        }
    });
}

/// The event-driven weight gradient of `matmul`: `out[o, i]` (`n_out ×
/// n_in`) is the sum over rows `r` in ascending order from `+0` of
/// `grad[r, o] · x[r, i]` (`grad` is `rows × n_out`, `x` is `rows ×
/// n_in`, given by its lists `spikes`), skipping the zero inputs of rows whose
/// gradient is finite (a non-finite gradient row meets all its inputs: `0
/// · inf` is NaN). The interpreter's bits.
///
/// Row by row, the row's gradient (times the input) is added into the rows
/// of the transposed result `dwt` (`n_in × n_out`) of its active inputs;
/// the inputs are split over threads, one part per thread (each part reads
/// all of `grad`), and `dwt` is transposed into `out` at the end.
///
/// (Measured against regrouping the lists by input first, for sums in
/// registers: the regrouping cost more than the stores it saves, 2.3–2.5
/// against 1.5–1.8 ms for the tutorial's `[8192, 784]` encoder spikes.)
pub(crate) fn matmul_grad_weight(
    grad: &[f32],
    spikes: &SpikeRows,
    n_in: usize,
    n_out: usize,
    scratch: &mut GradScratch,
    out: &mut [f32],
) {
    let rows = grad.len().checked_div(n_out).unwrap_or(0);
    if rows == 0 || n_in == 0 || n_out == 0 {
        out.fill(0.0);
        return;
    }
    debug_assert!(spikes.fits(rows, n_in));
    let dwt = &mut scratch.dwt;
    dwt.clear();
    dwt.resize(n_in * n_out, 0.0);
    let finite: Vec<bool> = (0..rows).map(|r| all_finite(&grad[r * n_out..(r + 1) * n_out])).collect();
    // Stores as well as adds: half the speed of the product.
    let ns = (spikes.len().saturating_mul(n_out) + n_in * n_out) * 2 / pool::EVENT_ADDS_PER_NS;
    // Every part reads all of `grad`: one part per thread.
    let parts = pool::parts(n_in, ns).min(pool::threads());
    pool::for_rows(dwt, n_out, parts, |first, chunk| {
        let last = first + chunk.len() / n_out;
        for r in 0..rows {
            let g = &grad[r * n_out..(r + 1) * n_out];
            if finite[r] {
                let (idx, val) = spikes.row(r);
                let lo = idx.partition_point(|&i| (i as usize) < first);
                let hi = lo + idx[lo..].partition_point(|&i| (i as usize) < last);
                for (&i, &v) in idx[lo..hi].iter().zip(&val[lo..hi]) {
                    add_row(&mut chunk[(i as usize - first) * n_out..][..n_out], g, v);
                }
            } else {
                // Every input, zeros included (as `0`: see `MergedRow`).
                let (idx, val) = spikes.row(r);
                let mut e = idx.partition_point(|&i| (i as usize) < first);
                for i in first..last {
                    let v = if e < idx.len() && idx[e] as usize == i {
                        e += 1;
                        val[e - 1]
                    } else {
                        0.0
                    };
                    add_row(&mut chunk[(i - first) * n_out..][..n_out], g, v);
                }
            }
        }
    });
    crate::kernels::transpose_matrix(dwt, n_in, n_out, out);
}

/// `acc[o] += g[o] · v` (`+= g[o]` for `v == 1`).
#[inline(always)]
fn add_row(acc: &mut [f32], g: &[f32], v: f32) {
    if v == 1.0 {
        for (a, &gv) in acc.iter_mut().zip(g) {
            *a += gv;
        }
    } else {
        for (a, &gv) in acc.iter_mut().zip(g) {
            *a += gv * v;
        }
    }
}

/// Whether every value is finite (vectorised: no early exit).
fn all_finite(x: &[f32]) -> bool {
    x.iter().fold(0u32, |a, v| a | u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_finds_every_nonzero_and_nan() {
        let mut x = vec![0.0f32; 53];
        for (k, v) in [(0, 1.0), (15, -0.5), (16, f32::NAN), (31, 2.0), (52, 1.0)] {
            x[k] = v;
        }
        x[20] = -0.0;
        let mut idx = vec![7; 53];
        let n = active(&x, &mut idx);
        assert_eq!(idx[..n], [0, 15, 16, 31, 52]);
        let mut s = SpikeRows::default();
        s.build(&x[..52], 13);
        assert!(s.fits(4, 13));
        assert_eq!(s.row(0), (&[0u32][..], &[1.0f32][..]));
        // Parts made by the caller, rows in any order.
        let mut parts = s.take_parts(2);
        parts[1].push_row(0, &x[..13]);
        parts[0].push_row(2, &x[26..39]);
        parts[0].push_row(1, &x[13..26]);
        parts[1].push_row(3, &x[39..52]);
        s.finish(4, 13, parts);
        // Rows given as bits.
        let mut parts = s.take_parts(1);
        parts[0].push_row_bits(1, &[0b1000_0000_0000_0001, 0]);
        parts[0].push_row_bits(0, &[0, 0b10]);
        s.finish(2, 32, parts);
        assert_eq!(s.row(0), (&[17u32][..], &[1.0f32][..]));
        assert_eq!(s.row(1).0, &[0, 15]);
        s.build(&x[..52], 13);
        assert_eq!(s.row(1).0, &[2, 3]);
        assert_eq!(s.row(2).0, &[5]);
        assert_eq!(s.row(3).0, &[] as &[u32]);
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn finite_rows_are_found() {
        assert!(all_finite(&[0.0, -1.0, f32::MAX, f32::MIN_POSITIVE]));
        assert!(!all_finite(&[0.0, f32::INFINITY]));
        assert!(!all_finite(&[f32::NAN, 0.0]));
        assert!(!all_finite(&[f32::NEG_INFINITY]));
    }

    /// Deterministic values: mostly zeros (and some `-0`), ones, a few
    /// other values; with `specials`, some NaN and infinities.
    fn sparse(n: usize, seed: u64, specials: bool) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                match s % 200 {
                    0..=5 => 1.0,
                    6 => -0.0,
                    7 => 0.5 + (s >> 40) as f32 / (1u64 << 24) as f32,
                    8 if specials => [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][(s >> 20) as usize % 3],
                    _ => 0.0,
                }
            })
            .collect()
    }

    fn dense(n: usize, seed: u64) -> Vec<f32> {
        (0..n).map(|i| ((i as u64 * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0).collect()
    }

    /// The same bits, except that any NaN matches any NaN (which NaN an
    /// operation on two NaNs gives is up to the compiler: LLVM may swap
    /// the operands of an addition).
    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())) && a.len() == b.len()
    }

    /// The interpreter's spike product: per row and output, inputs in
    /// order from `+0`, zero inputs skipped unless the weight is not finite.
    fn product_exact(x: &[f32], w: &[f32], n_in: usize, n_out: usize) -> Vec<f32> {
        let rows = x.len() / n_in;
        let mut out = vec![0.0f32; rows * n_out];
        for r in 0..rows {
            for o in 0..n_out {
                let mut acc = 0.0f32;
                for k in 0..n_in {
                    let (xv, wv) = (x[r * n_in + k], w[o * n_in + k]);
                    let col_finite = (0..n_out).all(|oo| w[oo * n_in + k].is_finite());
                    if xv == 0.0 && col_finite {
                        continue;
                    }
                    acc += if xv == 1.0 { wv } else { xv * wv };
                }
                out[r * n_out + o] = acc;
            }
        }
        out
    }

    #[test]
    fn event_kernels_give_the_interpreters_bits() {
        // Sizes over several parts and thread splits, every block width.
        for (rows, n_in, n_out) in [(300, 37, 100), (700, 100, 10), (5, 3, 1), (259, 64, 77)] {
            for specials in [false, true] {
                let x = sparse(rows * n_in, rows as u64, specials);
                let mut w = dense(n_out * n_in, 3);
                let mut g = dense(rows * n_out, 5);
                if specials {
                    let (nw, ng) = (w.len(), g.len());
                    w[(n_in + 2) % nw] = f32::INFINITY;
                    g[(n_out * (rows / 2)) % ng] = f32::NAN;
                }
                let mut lists = SpikeRows::default();
                lists.build(&x, n_in);
                let (mut wt, mut finite) = (Vec::new(), Vec::new());
                crate::kernels::transpose(&w, n_in, n_out, &mut wt, &mut finite);
                let mut out = vec![f32::NAN; rows * n_out];
                matmul(&lists, &wt, &finite, n_in, n_out, &mut out);
                let want = product_exact(&x, &w, n_in, n_out);
                assert!(same_bits(&out, &want), "product {rows}x{n_in}x{n_out} {specials}");
                let mut out = vec![f32::NAN; rows * n_out];
                matmul_dense_rows(&x, &wt, &finite, n_in, n_out, &mut out);
                assert!(same_bits(&out, &want), "dense rows {rows}x{n_in}x{n_out} {specials}");
                let mut dw = vec![f32::NAN; n_out * n_in];
                matmul_grad_weight(&g, &lists, n_in, n_out, &mut GradScratch::default(), &mut dw);
                let mut exact = vec![0.0; n_out * n_in];
                crate::kernels::matmul_grad_weight_exact(&g, &x, rows, n_in, n_out, &mut exact);
                assert!(same_bits(&dw, &exact), "grad weight {rows}x{n_in}x{n_out} {specials}");
            }
        }
    }

    /// Spikes (1.0, some 0.5) in a `rows × n` matrix at pseudo-random places.
    fn spikes_at(rows: usize, n: usize, seed: u32) -> Vec<f32> {
        (0..rows * n)
            .map(|k| {
                let h = (k as u32).wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(40_503)) >> 24;
                match h {
                    0..=5 => 1.0,
                    6 => 0.5,
                    _ => 0.0,
                }
            })
            .collect()
    }

    #[test]
    fn untransposed_product_and_direct_gradient_give_the_same_bits() {
        let (rows, n_in, n_out) = (5, 37, 23);
        let w: Vec<f32> = (0..n_out * n_in).map(|k| ((k * 7919) % 1000) as f32 * 1e-3 - 0.31).collect();
        let x = spikes_at(rows, n_in, 3);
        let mut s = SpikeRows::default();
        s.build(&x, n_in);
        assert!(s.len() > 0);
        // The product: as on the transposed weight.
        let (mut wt, mut finite) = (Vec::new(), Vec::new());
        crate::kernels::transpose(&w, n_in, n_out, &mut wt, &mut finite);
        let mut want = vec![0.0; rows * n_out];
        matmul(&s, &wt, &finite, n_in, n_out, &mut want);
        let mut got = vec![7.0; rows * n_out];
        assert!(matmul_untransposed(&s, &w, n_in, n_out, false, &mut got));
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // A non-finite weight: the transposed path's job.
        let mut bad = w.clone();
        bad[3] = f32::INFINITY;
        assert!(!matmul_untransposed(&s, &bad, n_in, n_out, false, &mut got));
        // The weight gradient, with a non-finite gradient row too.
        for poison in [false, true] {
            let mut g: Vec<f32> = (0..rows * n_out).map(|k| ((k * 104_729) % 997) as f32 * 1e-3 - 0.5).collect();
            if poison {
                g[2 * n_out + 4] = f32::NAN;
            }
            let mut want = vec![0.0; n_out * n_in];
            matmul_grad_weight(&g, &s, n_in, n_out, &mut GradScratch::default(), &mut want);
            let mut got = vec![7.0; n_out * n_in];
            matmul_grad_weight_direct(&g, &s, n_in, n_out, &mut got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "poisoned row: {poison}");
        }
        assert!(grad_weight_direct_pays(&s, 8 * s.len()) && !grad_weight_direct_pays(&s, 8 * s.len() - 1));
    }
}
