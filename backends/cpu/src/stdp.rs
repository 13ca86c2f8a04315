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
//! (`with_rule!`), so the whole-row loops vectorise.

use std::collections::BTreeMap;

use snnc_ir::{Module, ModuleInfo, Op, StdpKind, StdpRule};

/// A row without a postsynaptic spike updates only its spiking columns
/// (scalar code) when they are at most one in this many, else the whole
/// row (vector code, ~8 entries per scalar one's time).
const SPARSE_COLUMNS: usize = 8;

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
    /// Per postsynaptic neuron: whether it spiked in any row.
    post_hit: Vec<bool>,
    /// The presynaptic columns with a spike (`C`, ascending), the position
    /// of each column in it (`usize::MAX` for none), and the spikes `(row,
    /// column, value)` in row order.
    pre_cols: Vec<usize>,
    col_pos: Vec<usize>,
    pre_spikes: Vec<(usize, usize, f32)>,
    /// `minus` of the spiking columns, `[|C|, n_out]`.
    minus_cols: Vec<f32>,
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
                let r = StdpRule { kind: $kind, hardbound: $hard, ..*rule };
                let $upd = move |w: f32, p: f32, m: f32| -> f32 { r.update(w, p, m) };
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
    let (n_out, n_in) = (x.n_out, x.n_in);
    let rows = x.z_post.len().checked_div(n_out).unwrap_or(0);
    s.total += (n_out * n_in) as u64;
    let finite = [x.z_post, x.t_pre, x.t_post, x.z_pre].iter().all(|v| v.iter().all(|e| e.is_finite()));
    if !finite {
        exact(rule, w, x, rows, s);
        return;
    }
    s.post_hit.clear();
    s.post_hit.resize(n_out, false);
    for r in 0..rows {
        for (hit, &z) in s.post_hit.iter_mut().zip(&x.z_post[r * n_out..(r + 1) * n_out]) {
            *hit |= z != 0.0;
        }
    }
    s.col_pos.clear();
    s.col_pos.resize(n_in, usize::MAX);
    s.pre_spikes.clear();
    for r in 0..rows {
        for (i, &z) in x.z_pre[r * n_in..(r + 1) * n_in].iter().enumerate() {
            if z != 0.0 {
                s.col_pos[i] = 0;
                s.pre_spikes.push((r, i, z));
            }
        }
    }
    s.pre_cols.clear();
    for (i, pos) in s.col_pos.iter_mut().enumerate() {
        if *pos == 0 {
            *pos = s.pre_cols.len();
            s.pre_cols.push(i);
        }
    }
    // minus of the spiking columns: Σ_r t_post[r, ..] * z_pre[r, i], rows in order.
    s.minus_cols.clear();
    s.minus_cols.resize(s.pre_cols.len() * n_out, 0.0);
    for &(r, i, z) in &s.pre_spikes {
        let c = s.col_pos[i];
        for (m, &t) in s.minus_cols[c * n_out..(c + 1) * n_out].iter_mut().zip(&x.t_post[r * n_out..(r + 1) * n_out]) {
            *m += t * z;
        }
    }
    with_rule!(rule, |upd| rows_update(upd, w, x, rows, s));
}

fn rows_update<U: Fn(f32, f32, f32) -> f32>(
    upd: U,
    w: &mut [f32],
    x: &StdpOperands<'_>,
    rows: usize,
    s: &mut StdpScratch,
) {
    let (n_out, n_in) = (x.n_out, x.n_in);
    let fixed = |v: f32| {
        let z = upd(v, 0.0, 0.0);
        z == v && z.is_sign_negative() == v.is_sign_negative()
    };
    let mut plus = std::mem::take(&mut s.plus);
    let mut minus = std::mem::take(&mut s.minus);
    plus.resize(n_in, 0.0);
    minus.resize(n_in, 0.0);
    let skip = s.clean;
    let sparse = skip && s.pre_cols.len() * SPARSE_COLUMNS <= n_in;
    let mut clean = true;
    let mut touched = 0;
    for (o, wrow) in w.chunks_exact_mut(n_in.max(1)).enumerate().take(n_out) {
        let hit = s.post_hit[o];
        if !hit && skip && s.pre_cols.is_empty() {
            continue;
        }
        if !hit && sparse {
            for (c, &i) in s.pre_cols.iter().enumerate() {
                let e = &mut wrow[i];
                *e = upd(*e, 0.0, s.minus_cols[c * n_out + o]);
                clean &= fixed(*e);
            }
            touched += s.pre_cols.len();
            continue;
        }
        plus.fill(0.0);
        if hit {
            for r in 0..rows {
                let z = x.z_post[r * n_out + o];
                if z != 0.0 {
                    for (e, &t) in plus.iter_mut().zip(&x.t_pre[r * n_in..(r + 1) * n_in]) {
                        *e += z * t;
                    }
                }
            }
        }
        minus.fill(0.0);
        for (c, &i) in s.pre_cols.iter().enumerate() {
            minus[i] = s.minus_cols[c * n_out + o];
        }
        let mut row_clean = true;
        for ((e, &p), &m) in wrow.iter_mut().zip(&plus).zip(&minus) {
            *e = upd(*e, p, m);
            row_clean &= fixed(*e);
        }
        clean &= row_clean;
        touched += n_in;
    }
    s.clean = clean;
    s.touched += touched as u64;
    s.plus = plus;
    s.minus = minus;
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
