//! The STDP weight update (`Op::StdpUpdate`) on the CPU, in place on the
//! plastic weight, event-driven where it pays.
//!
//! Entry `(o, i)` becomes `rule.update(w, plus, minus)` with `plus = Σ_r
//! z_post[r, o] t_pre[r, i]` and `minus = Σ_r t_post[r, o] z_pre[r, i]`
//! (`snnc_ir::stdp`), each summed over the rows `r` in order from `+0`, as
//! the interpreter sums them: the same bits in every path below.
//!
//! - A trace or spike that is not finite (an `inf * 0` must give the
//!   interpreter's NaN): the interpreter's sums, every entry updated.
//! - Otherwise a sum visits only the rows whose spike is nonzero: a skipped
//!   term is `±0`, and adding `±0` to a sum that started at `+0` changes
//!   nothing (such a sum is never `-0`). `plus` is summed a row of the
//!   weight at a time, `minus` for the spiking columns only (`C`), a row of
//!   `t_post` at a time.
//! - **Event-driven**: an entry whose row had no postsynaptic spike and
//!   whose column no presynaptic spike has `plus = minus = +0`, so the rule
//!   leaves it as it is — if it is a *fixed point* of the rule
//!   (`StdpRule::is_fixed_point`: within the bounds, finite amplitudes, not
//!   `-0`). The kernel knows every entry is one (`clean`) after a step that
//!   updated them all and checked them, and keeps knowing it by checking
//!   the entries it touches; it starts every run unknowing, so the first
//!   step of a run updates every entry (weights from a file may lie outside
//!   the bounds). Then it skips the rows without a postsynaptic spike when
//!   no presynaptic neuron spiked, and updates only the spiking columns of
//!   such a row when they are few (at most one in [`SPARSE_COLUMNS`]);
//!   whole rows run as vector code.
//!
//! The rule's kind and bounds are made constants of the loop
//! (`with_rule!`), so the loops vectorise, and the loops are compiled for
//! AVX-512 and AVX2 besides the baseline (`multiversion`, picked at run
//! time; each version does the same IEEE operations per entry).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use snnc_ir::{Module, ModuleInfo, Op, StdpKind, StdpRule};

/// A row without a postsynaptic spike updates only its spiking columns
/// (scalar code) when they are at most one in this many, else the whole
/// row (vector code, ~8 entries per scalar one's time).
const SPARSE_COLUMNS: usize = 8;

/// The least estimated time (ns) of an update that is split over threads.
const SPLIT_NS: usize = 1_000_000;

/// One STDP update's operands: `[rows, n_out]` and `[rows, n_in]` values.
pub(crate) struct StdpOperands<'a> {
    pub z_post: &'a [f32],
    pub t_pre: &'a [f32],
    pub t_post: &'a [f32],
    pub z_pre: &'a [f32],
    pub n_out: usize,
    pub n_in: usize,
}

/// What an update node keeps between steps.
#[derive(Debug, Default)]
pub(crate) struct StdpScratch {
    /// Every entry of the weight is a fixed point of the rule.
    clean: bool,
    plus: Vec<f32>,
    minus: Vec<f32>,
    /// Per postsynaptic neuron `o`, its spikes `(row, value)` in row
    /// order: `post_spikes[post_start[o]..post_start[o + 1]]`.
    post_start: Vec<usize>,
    post_spikes: Vec<(usize, f32)>,
    /// The presynaptic columns with a spike (`C`, ascending), the position
    /// of each column in it (`usize::MAX` for none), and the spikes `(row,
    /// column, value)` in row order.
    pre_cols: Vec<usize>,
    col_pos: Vec<usize>,
    pre_spikes: Vec<(usize, usize, f32)>,
    /// `minus` of the spiking columns, `[|C|, n_out]` and `[n_out, |C|]`.
    minus_cols: Vec<f32>,
    minus_t: Vec<f32>,
    /// Entries updated and entries in all, over the run (for the profile).
    pub touched: u64,
    pub total: u64,
}

impl StdpScratch {
    /// Whether every entry of the weight is a fixed point of the rule (so
    /// finite) after the last update.
    pub(crate) fn weight_is_clean(&self) -> bool {
        self.clean
    }

    /// Forgets that the weight is clean: the next step updates every entry.
    pub(crate) fn new_run(&mut self) {
        self.clean = false;
        self.touched = 0;
        self.total = 0;
    }
}

/// Runs `$body` with `$upd` bound to `rule.update` as a closure in which
/// the rule's kind and hard bound are constants: one instance of the body
/// per kind and bound, whose loops the compiler can vectorise. The
/// arithmetic is `StdpRule::update`'s, not a copy.
macro_rules! with_rule {
    ($rule:expr, |$upd:ident| $body:expr) => {{
        let rule: &StdpRule = $rule;
        macro_rules! arm {
            ($kind:expr, $hard:expr) => {{
                // The kind and bound are literals of the closure's body, so
                // they are constants wherever the body is compiled.
                let base = *rule;
                let $upd = move |w: f32, p: f32, m: f32| -> f32 {
                    StdpRule { kind: $kind, hardbound: $hard, ..base }.update(w, p, m)
                };
                $body
            }};
        }
        match (rule.kind, rule.hardbound) {
            (StdpKind::Additive, true) => arm!(StdpKind::Additive, true),
            (StdpKind::Additive, false) => arm!(StdpKind::Additive, false),
            (StdpKind::AdditiveStep, true) => arm!(StdpKind::AdditiveStep, true),
            (StdpKind::AdditiveStep, false) => arm!(StdpKind::AdditiveStep, false),
            (StdpKind::MultiplicativeRelu, true) => arm!(StdpKind::MultiplicativeRelu, true),
            (StdpKind::MultiplicativeRelu, false) => arm!(StdpKind::MultiplicativeRelu, false),
            (StdpKind::MultiplicativePow, true) => arm!(StdpKind::MultiplicativePow, true),
            (StdpKind::MultiplicativePow, false) => arm!(StdpKind::MultiplicativePow, false),
        }
    }};
}

/// Updates `w` (`[n_out, n_in]`) in place.
pub(crate) fn update(rule: &StdpRule, w: &mut [f32], x: &StdpOperands<'_>, s: &mut StdpScratch) {
    let rows = x.z_post.len().checked_div(x.n_out).unwrap_or(0);
    s.total += (x.n_out * x.n_in) as u64;
    if !prepare(x, rows, s) {
        exact(rule, w, x, rows, s);
        return;
    }
    with_rule!(rule, |upd| rows_update(upd, w, x, s));
}

/// Lists the step's spikes and sums `minus` of the spiking columns into
/// `s`; false (and nothing listed) when an operand is not finite.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
pub(crate) fn prepare<'a>(x: &StdpOperands<'a>, rows: usize, s: &mut StdpScratch) -> bool {
    let (n_out, n_in) = (x.n_out, x.n_in);
    let finite = [x.z_post, x.t_pre, x.t_post, x.z_pre].iter().all(|v| v.iter().fold(true, |a, e| a & e.is_finite()));
    if !finite {
        return false;
    }
    // The postsynaptic spikes of each neuron, rows in order (a stable
    // counting sort of the spikes found row by row).
    s.pre_spikes.clear();
    for r in 0..rows {
        nonzeros(&x.z_post[r * n_out..(r + 1) * n_out], |o, z| s.pre_spikes.push((r, o, z)));
    }
    s.post_start.clear();
    s.post_start.resize(n_out + 1, 0);
    for &(_, o, _) in &s.pre_spikes {
        s.post_start[o + 1] += 1;
    }
    for o in 0..n_out {
        s.post_start[o + 1] += s.post_start[o];
    }
    s.post_spikes.clear();
    s.post_spikes.resize(s.pre_spikes.len(), (0, 0.0));
    let mut next = s.post_start.clone();
    for &(r, o, z) in &s.pre_spikes {
        s.post_spikes[next[o]] = (r, z);
        next[o] += 1;
    }
    s.col_pos.clear();
    s.col_pos.resize(n_in, usize::MAX);
    s.pre_spikes.clear();
    for r in 0..rows {
        nonzeros(&x.z_pre[r * n_in..(r + 1) * n_in], |i, z| {
            s.col_pos[i] = 0;
            s.pre_spikes.push((r, i, z));
        });
    }
    s.pre_cols.clear();
    for (i, pos) in s.col_pos.iter_mut().enumerate() {
        if *pos == 0 {
            *pos = s.pre_cols.len();
            s.pre_cols.push(i);
        }
    }
    // minus of the spiking columns, `[|C|, n_out]`: Σ_r t_post[r, o] *
    // z_pre[r, i], rows in order.
    s.minus_cols.clear();
    s.minus_cols.resize(s.pre_cols.len() * n_out, 0.0);
    for &(r, i, z) in &s.pre_spikes {
        let c = s.col_pos[i];
        for (m, &t) in s.minus_cols[c * n_out..(c + 1) * n_out].iter_mut().zip(&x.t_post[r * n_out..(r + 1) * n_out]) {
            *m += t * z;
        }
    }
    // ... and the same, `[n_out, |C|]`, for the rows that update their
    // spiking columns only (tile by tile, so both sides stay in cache).
    let nc = s.pre_cols.len();
    s.minus_t.clear();
    s.minus_t.resize(n_out * nc, 0.0);
    for c0 in (0..nc).step_by(LANES) {
        for o0 in (0..n_out).step_by(LANES) {
            for c in c0..(c0 + LANES).min(nc) {
                for o in o0..(o0 + LANES).min(n_out) {
                    s.minus_t[o * nc + c] = s.minus_cols[c * n_out + o];
                }
            }
        }
    }
    true
}

fn rows_update<U: Fn(f32, f32, f32) -> f32 + Sync>(upd: U, w: &mut [f32], x: &StdpOperands<'_>, s: &mut StdpScratch) {
    let (n_out, n_in) = (x.n_out, x.n_in);
    let skip = s.clean;
    let plan = Plan {
        skip,
        sparse: skip && s.pre_cols.len() * SPARSE_COLUMNS <= n_in,
        post_start: &s.post_start,
        post_spikes: &s.post_spikes,
        pre_cols: &s.pre_cols,
        minus_cols: &s.minus_cols,
        minus_t: &s.minus_t,
    };
    // The entries the step will update (about 1 ns each, measured on the
    // 784 → 400 benchmark: the weight's cache lines, not the arithmetic,
    // bound it). A step of ~100 µs ran no faster split over the project
    // machine's two threads (the wake-ups cost what the split saves), so
    // only updates of a millisecond or more are split.
    let hit = (0..n_out).filter(|&o| plan.post_start[o] < plan.post_start[o + 1]).count();
    let dense_rows = if plan.sparse { hit } else { n_out };
    let work_ns = dense_rows * n_in + (n_out - dense_rows) * plan.pre_cols.len();
    let parts = if work_ns < SPLIT_NS { 1 } else { crate::pool::parts(n_out, work_ns) };
    let clean = AtomicBool::new(true);
    let touched = AtomicUsize::new(0);
    let n_rows = n_out.min(w.len().checked_div(n_in).unwrap_or(0));
    crate::pool::for_rows(&mut w[..n_rows * n_in], n_in.max(1), parts, |first, chunk| {
        let (c, t) = update_rows(&upd, chunk, first, x, &plan);
        if !c {
            clean.store(false, Ordering::Relaxed);
        }
        touched.fetch_add(t, Ordering::Relaxed);
    });
    s.clean = clean.into_inner();
    s.touched += touched.into_inner() as u64;
}

/// What every part of a step's update reads.
struct Plan<'a> {
    /// Every entry was a fixed point before this step.
    skip: bool,
    /// A row without a postsynaptic spike updates its spiking columns only.
    sparse: bool,
    /// `post_spikes[post_start[o]..post_start[o + 1]]`: neuron `o`'s
    /// spikes `(row, value)`, rows in order.
    post_start: &'a [usize],
    post_spikes: &'a [(usize, f32)],
    pre_cols: &'a [usize],
    /// `minus` of the spiking columns, `[|C|, n_out]`.
    minus_cols: &'a [f32],
    minus_t: &'a [f32],
}

/// Updates the weight rows `first..` in `w`; returns whether every entry
/// it wrote is a fixed point, and how many it wrote. Compiled for the
/// vector instructions of the CPU it runs on (the same IEEE operations in
/// every version: the same bits).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn update_rows<U: Fn(f32, f32, f32) -> f32>(
    upd: &U,
    w: &mut [f32],
    first: usize,
    x: &StdpOperands<'_>,
    plan: &Plan<'_>,
) -> (bool, usize) {
    let (n_out, n_in) = (x.n_out, x.n_in);
    let nc = plan.pre_cols.len();
    let fixed = |v: f32| {
        let z = upd(v, 0.0, 0.0);
        z == v && z.is_sign_negative() == v.is_sign_negative()
    };
    // `minus` of one row, dense: zero but at the spiking columns while a
    // row is updated.
    let mut minus = vec![0.0f32; n_in];
    let mut gathered = vec![0.0f32; nc];
    let mut clean = true;
    let mut touched = 0;
    for (k, wrow) in w.chunks_exact_mut(n_in.max(1)).enumerate() {
        let o = first + k;
        let spikes = &plan.post_spikes[plan.post_start[o]..plan.post_start[o + 1]];
        if spikes.is_empty() && plan.skip && nc == 0 {
            continue;
        }
        if spikes.is_empty() && plan.sparse {
            // The spiking columns only: gathered, updated as a vector,
            // written back.
            for (g, &i) in gathered.iter_mut().zip(plan.pre_cols) {
                *g = wrow[i];
            }
            let mut ok = true;
            for (g, &m) in gathered.iter_mut().zip(&plan.minus_t[o * nc..(o + 1) * nc]) {
                *g = upd(*g, 0.0, m);
                ok &= fixed(*g);
            }
            for (&g, &i) in gathered.iter().zip(plan.pre_cols) {
                wrow[i] = g;
            }
            clean &= ok;
            touched += nc;
            continue;
        }
        for (c, &i) in plan.pre_cols.iter().enumerate() {
            minus[i] = plan.minus_cols[c * n_out + o];
        }
        clean &= dense_row(upd, &fixed, wrow, spikes, x.t_pre, &minus);
        for &i in plan.pre_cols {
            minus[i] = 0.0;
        }
        touched += n_in;
    }
    (clean, touched)
}

/// Calls `f(index, value)` for the nonzero entries of `z` in order,
/// skipping all-zero blocks as a vector test.
#[inline(always)]
fn nonzeros(z: &[f32], mut f: impl FnMut(usize, f32)) {
    for (b, block) in z.chunks(LANES).enumerate() {
        if block.iter().fold(false, |any, &v| any | (v != 0.0)) {
            for (k, &v) in block.iter().enumerate() {
                if v != 0.0 {
                    f(b * LANES + k, v);
                }
            }
        }
    }
}

/// Entries per block of [`dense_row`]: one AVX-512 vector.
const LANES: usize = 16;

/// One whole row: `plus` summed over the row's postsynaptic spikes block
/// by block and used at once; returns whether every entry is a fixed point.
#[inline(always)]
fn dense_row<U: Fn(f32, f32, f32) -> f32, X: Fn(f32) -> bool>(
    upd: &U,
    fixed: &X,
    wrow: &mut [f32],
    spikes: &[(usize, f32)],
    t_pre: &[f32],
    minus: &[f32],
) -> bool {
    let n_in = wrow.len();
    let full = n_in / LANES * LANES;
    let mut ok = true;
    for (b, (wb, mb)) in wrow[..full].chunks_exact_mut(LANES).zip(minus[..full].chunks_exact(LANES)).enumerate() {
        let j = b * LANES;
        let mut p = [0.0f32; LANES];
        for &(r, z) in spikes {
            let t = &t_pre[r * n_in + j..r * n_in + j + LANES];
            for (p, &t) in p.iter_mut().zip(t) {
                *p += z * t;
            }
        }
        let mut block_ok = [true; LANES];
        for (((e, &p), &m), k) in wb.iter_mut().zip(&p).zip(mb).zip(block_ok.iter_mut()) {
            *e = upd(*e, p, m);
            *k = fixed(*e);
        }
        ok &= block_ok.iter().all(|&k| k);
    }
    for i in full..n_in {
        let mut p = 0.0f32;
        for &(r, z) in spikes {
            p += z * t_pre[r * n_in + i];
        }
        wrow[i] = upd(wrow[i], p, minus[i]);
        ok &= fixed(wrow[i]);
    }
    ok
}

/// The interpreter's sums over every term (a non-finite operand).
fn exact(rule: &StdpRule, w: &mut [f32], x: &StdpOperands<'_>, rows: usize, s: &mut StdpScratch) {
    let (n_out, n_in) = (x.n_out, x.n_in);
    let mut plus = std::mem::take(&mut s.plus);
    let mut minus = std::mem::take(&mut s.minus);
    plus.resize(n_out * n_in, 0.0);
    minus.resize(n_out * n_in, 0.0);
    crate::kernels::matmul_grad_weight_exact(x.z_post, x.t_pre, rows, n_in, n_out, &mut plus);
    crate::kernels::matmul_grad_weight_exact(x.t_post, x.z_pre, rows, n_in, n_out, &mut minus);
    for ((e, &p), &m) in w.iter_mut().zip(&plus).zip(&minus) {
        *e = rule.update(*e, p, m);
    }
    s.clean = false;
    s.touched += (n_out * n_in) as u64;
    s.plus = plus;
    s.minus = minus;
}

/// The `stdp_update` nodes that may update their weight state in place,
/// by node index, with the state's index: the weight operand is a read of
/// a state whose write is the update itself, in the same step loop, and
/// every other reader of that state runs before the update (so the state
/// buffer can hold the new value from the update on, which is what every
/// later reader wants).
pub(crate) fn in_place_updates(module: &Module, info: &ModuleInfo) -> BTreeMap<usize, usize> {
    let mut found = BTreeMap::new();
    for (region_index, region) in module.body.iter().enumerate() {
        if !region.is_step() {
            continue;
        }
        let position: BTreeMap<usize, usize> = region.nodes.iter().enumerate().map(|(k, h)| (h.index(), k)).collect();
        for &u in &region.nodes {
            let Op::StdpUpdate { weight, .. } = module.nodes[u].op else { continue };
            let Op::StateRead(state) = module.nodes[weight].op else { continue };
            let written_by_u = region
                .nodes
                .iter()
                .any(|&h| matches!(module.nodes[h].op, Op::StateWrite { state: s, value } if s == state && value == u));
            if !written_by_u || info.state_region.get(state.index()) != Some(&region_index) {
                continue;
            }
            let at = position[&u.index()];
            let reads_before = module.nodes.iter().all(|(h, node)| {
                !matches!(node.op, Op::StateRead(s) if s == state)
                    || module.nodes.iter().all(|(user, un)| {
                        user == u
                            || !un.op.operands().contains(&h)
                            || position.get(&user.index()).is_some_and(|&k| k < at)
                    })
            });
            if reads_before {
                found.insert(u.index(), state.index());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use snnc_ir::StdpKind;

    /// The interpreter's definition: both sums over every row, every entry.
    fn reference(rule: &StdpRule, w: &[f32], x: &StdpOperands<'_>) -> Vec<f32> {
        let rows = x.z_post.len() / x.n_out;
        let mut plus = vec![0.0; x.n_out * x.n_in];
        let mut minus = plus.clone();
        crate::kernels::matmul_grad_weight_exact(x.z_post, x.t_pre, rows, x.n_in, x.n_out, &mut plus);
        crate::kernels::matmul_grad_weight_exact(x.t_post, x.z_pre, rows, x.n_in, x.n_out, &mut minus);
        w.iter().zip(&plus).zip(&minus).map(|((&w, &p), &m)| rule.update(w, p, m)).collect()
    }

    /// A tiny deterministic generator (SplitMix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    #[test]
    fn every_path_gives_the_interpreters_bits_over_many_steps() {
        let kinds = [
            (StdpKind::Additive, 0.0),
            (StdpKind::AdditiveStep, 0.0),
            (StdpKind::MultiplicativeRelu, 0.0),
            (StdpKind::MultiplicativePow, 0.7),
        ];
        for (k, &(kind, mu)) in kinds.iter().enumerate() {
            for hardbound in [true, false] {
                let rule = StdpRule { kind, eta_plus: 0.05, eta_minus: 0.04, w_min: 0.0, w_max: 1.0, mu, hardbound };
                let mut rng = Rng(k as u64 * 2 + hardbound as u64);
                let (rows, n_out, n_in) = (3, 7, 64);
                // Start partly out of bounds: the first (dense) step clamps
                // (a fractional power of a weight below the bounds is NaN,
                // for good: that rule starts within them).
                let (scale, shift) = if kind == StdpKind::MultiplicativePow { (1.0, 0.0) } else { (1.4, -0.2) };
                let mut w: Vec<f32> = (0..n_out * n_in).map(|_| rng.next() * scale + shift).collect();
                let mut expect = w.clone();
                let mut s = StdpScratch::default();
                s.new_run();
                let mut events = 0;
                for step in 0..40 {
                    let p = if step % 5 == 0 { 0.5 } else { 0.01 };
                    let mut spikes = |n: usize| (0..n).map(|_| f32::from(rng.next() < p)).collect::<Vec<f32>>();
                    let (z_post, z_pre) = (spikes(rows * n_out), spikes(rows * n_in));
                    let t_pre: Vec<f32> = (0..rows * n_in).map(|_| rng.next()).collect();
                    let t_post: Vec<f32> = (0..rows * n_out).map(|_| rng.next()).collect();
                    let x =
                        StdpOperands { z_post: &z_post, t_pre: &t_pre, t_post: &t_post, z_pre: &z_pre, n_out, n_in };
                    expect = reference(&rule, &expect, &x);
                    let before = s.touched;
                    update(&rule, &mut w, &x, &mut s);
                    events += usize::from(s.touched - before < (n_out * n_in) as u64);
                    let same =
                        w.iter().zip(&expect).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                    assert!(same, "{kind:?} hardbound {hardbound} step {step}: {w:?} vs {expect:?}");
                }
                assert!(events > 10, "{kind:?} hardbound {hardbound}: the event-driven path ran {events} times");
            }
        }
    }

    #[test]
    fn a_non_finite_trace_gives_the_interpreters_nan() {
        let rule = StdpRule {
            kind: StdpKind::Additive,
            eta_plus: 0.1,
            eta_minus: 0.1,
            w_min: 0.0,
            w_max: 1.0,
            mu: 0.0,
            hardbound: false,
        };
        let (z_post, t_pre) = (vec![0.0, 1.0], vec![f32::INFINITY, 1.0]);
        let (t_post, z_pre) = (vec![0.5, 0.5], vec![1.0, 0.0]);
        let x = StdpOperands { z_post: &z_post, t_pre: &t_pre, t_post: &t_post, z_pre: &z_pre, n_out: 2, n_in: 2 };
        let w0 = vec![0.5f32; 4];
        let expect = reference(&rule, &w0, &x);
        let mut w = w0.clone();
        let mut s = StdpScratch::default();
        update(&rule, &mut w, &x, &mut s);
        assert!(expect[0].is_nan(), "0 * inf in the sum");
        let same = w.iter().zip(&expect).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
        assert!(same, "{w:?} vs {expect:?}");
    }
}
