//! The kernel of `stdp_update` (Norse's STDP weight rule, `snnc_ir::stdp`):
//! one thread per weight entry sums `plus = Σ_r z_post[r, o] t_pre[r, i]`
//! and `minus = Σ_r t_post[r, o] z_pre[r, i]` over the rows in order from
//! `+0` (as `matmul_grad_weight`'s kernel: every product, a zero spike's
//! changing nothing but a non-finite trace's NaN), then applies the rule
//! with every operation rounded in the interpreter's order (`mul.rn`,
//! `sub.rn`, `add.rn`, never an FMA; `max`/`min` with its NaN rule). Dense:
//! the event-driven update is the CPU's (a GPU thread per entry costs
//! little next to the launch).

use snnc_ir::{Handle, Node, StdpKind, StdpRule};

use crate::CudaError;
use crate::manifest::Count;
use crate::math;
use crate::ops::{HeavyKernel, Hk, acc_mul, divmod, for_range, zero_acc};
use crate::plan::{Mode, Plan};
use crate::ptx::{Kb, ZERO, fimm};

/// The operands of one update: the weight `[o, i]`, then `z_post`,
/// `t_pre`, `t_post`, `z_pre`.
pub(crate) struct StdpNodes {
    pub weight: Handle<Node>,
    pub z_post: Handle<Node>,
    pub t_pre: Handle<Node>,
    pub t_post: Handle<Node>,
    pub z_pre: Handle<Node>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn stdp_update(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    x: &StdpNodes,
    rule: &StdpRule,
    rows: Count,
    o: u64,
    i: u64,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let w = hk.input(x.weight)?;
    let z_post = hk.input(x.z_post)?;
    let t_pre = hk.input(x.t_pre)?;
    let t_post = hk.input(x.t_post)?;
    let z_pre = hk.input(x.z_pre)?;
    let y = hk.output(h)?;
    let threads = Count::fixed(o * i);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    let (oo, ii) = divmod(k, &e, i);
    let nrows = k.count(rows);
    let (plus, minus) = (zero_acc(k), zero_acc(k));
    for_range(k, "0", &nrows, |k, r| {
        let oi = k.mad(r, o, &oo);
        let ix = k.mad(r, i, &ii);
        let (zp, tp) = (k.ld(&z_post, &oi), k.ld(&t_pre, &ix));
        acc_mul(k, &plus, &zp, &tp);
        let (tq, zq) = (k.ld(&t_post, &oi), k.ld(&z_pre, &ix));
        acc_mul(k, &minus, &tq, &zq);
        Ok(())
    })?;
    let wv = k.ld(&w, &e);
    let a_plus = amplitude(k, rule, &wv, true);
    let a_minus = amplitude(k, rule, &wv, false);
    let (dp, dm, dw, wn) = (k.f(), k.f(), k.f(), k.f());
    k.ins(format!("mul.rn.f32 {dp}, {a_plus}, {plus}"));
    k.ins(format!("mul.rn.f32 {dm}, {a_minus}, {minus}"));
    k.ins(format!("sub.rn.f32 {dw}, {dp}, {dm}"));
    k.ins(format!("add.rn.f32 {wn}, {wv}, {dw}"));
    let out = if rule.hardbound {
        let lo = math::max_nan(k, &wn, &fimm(rule.w_min as f32));
        math::min_nan(k, &lo, &fimm(rule.w_max as f32))
    } else {
        wn
    };
    k.st(&y, &e, &out);
    let what = format!("STDP update of a [{o}, {i}] weight ({}), summed over [{}] rows", rule.kind.name(), rows.show());
    Ok(hk.done(what, threads))
}

/// `A+(w)` (`plus`) or `A-(w)`, as `StdpRule::amplitude`.
fn amplitude(k: &mut Kb, rule: &StdpRule, w: &str, plus: bool) -> String {
    let eta = fimm((if plus { rule.eta_plus } else { rule.eta_minus }) as f32);
    let diff = |k: &mut Kb| {
        let d = k.f();
        if plus {
            k.ins(format!("sub.rn.f32 {d}, {}, {w}", fimm(rule.w_max as f32)));
        } else {
            k.ins(format!("sub.rn.f32 {d}, {w}, {}", fimm(rule.w_min as f32)));
        }
        d
    };
    let f = match rule.kind {
        StdpKind::Additive => None,
        StdpKind::MultiplicativePow if rule.mu == 0.0 => None,
        StdpKind::AdditiveStep => {
            let (d, p) = (diff(k), k.p());
            k.ins(format!("setp.gt.f32 {p}, {d}, {ZERO}"));
            Some(math::bool_to_f32(k, &p))
        }
        StdpKind::MultiplicativeRelu => {
            let d = diff(k);
            Some(math::max_nan(k, &d, ZERO))
        }
        StdpKind::MultiplicativePow if rule.mu == 1.0 => Some(diff(k)),
        StdpKind::MultiplicativePow if rule.mu == 2.0 => {
            let (d, sq) = (diff(k), k.f());
            k.ins(format!("mul.rn.f32 {sq}, {d}, {d}"));
            Some(sq)
        }
        StdpKind::MultiplicativePow => {
            let d = diff(k);
            let l = math::log(k, &d);
            let m = k.f();
            k.ins(format!("mul.rn.f32 {m}, {}, {l}", fimm(rule.mu as f32)));
            Some(math::exp(k, &m))
        }
    };
    match f {
        None => {
            let a = k.f();
            k.ins(format!("mov.f32 {a}, {eta}"));
            a
        }
        Some(f) => {
            let a = k.f();
            k.ins(format!("mul.rn.f32 {a}, {eta}, {f}"));
            a
        }
    }
}
