//! Norse's STDP weight rule (`norse.torch.functional.stdp`), the attribute
//! of `Op::StdpUpdate`, and its scalar arithmetic: the one place that says
//! how a weight entry is updated, so the interpreter, the CPU backend's
//! dense and event-driven kernels and the tests compute the same bits.
//!
//! For one weight entry `w` with the outer-product sums `plus` (`Σ_r
//! z_post[r, o] t_pre[r, i]`) and `minus` (`Σ_r t_post[r, o] z_pre[r, i]`):
//!
//! ```text
//! w' = w + (A+(w) * plus - A-(w) * minus)          then, with hardbound,
//! w' = min(max(w', w_min), w_max)                  (torch.clamp)
//! A+(w) = eta_plus * f(w_max - w),  A-(w) = eta_minus * f(w - w_min)
//! ```
//!
//! with `f` of the rule: `additive` 1 (and `A = eta`, no product),
//! `additive_step` `d > 0` (Norse's heaviside, `H(0) = 0`),
//! `multiplicative_relu` `relu(d)`, `multiplicative_pow` `d^mu` (exactly
//! `eta` for `mu = 0`, `eta * d` for 1, `eta * (d * d)` for 2, else
//! `eta * exp(mu * log(d))`). Every constant is rounded to the float type
//! once and every operation rounds, in exactly this order: the order of
//! the primitives Norse's Python runs.
//!
//! An entry whose `plus` and `minus` are both zero keeps its value when it
//! is within the bounds (or there are none) and its amplitudes are finite:
//! what the event-driven kernel relies on ([`StdpRule::is_fixed_point`]).

use std::ops::{Add, Mul, Neg, Sub};

/// The rule's weight dependence `f(d)` (Norse's `STDPParameters.stdp_algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StdpKind {
    Additive,
    AdditiveStep,
    MultiplicativePow,
    MultiplicativeRelu,
}

impl StdpKind {
    pub fn name(self) -> &'static str {
        match self {
            StdpKind::Additive => "additive",
            StdpKind::AdditiveStep => "additive_step",
            StdpKind::MultiplicativePow => "multiplicative_pow",
            StdpKind::MultiplicativeRelu => "multiplicative_relu",
        }
    }
}

/// The constants of an STDP weight update (the traces are operands).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StdpRule {
    pub kind: StdpKind,
    pub eta_plus: f64,
    pub eta_minus: f64,
    pub w_min: f64,
    pub w_max: f64,
    /// The exponent of `multiplicative_pow` (ignored by the other kinds).
    pub mu: f64,
    /// Clamp the new weight to `[w_min, w_max]`.
    pub hardbound: bool,
}

/// The float arithmetic the rule needs (`f32` and `f64`), with NaN-aware
/// `max`/`min` as the IR's `max`/`min` ops define them.
pub trait RuleFloat:
    Copy + PartialOrd + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Neg<Output = Self>
{
    fn of(x: f64) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn is_nan(self) -> bool;
    fn is_finite(self) -> bool;
    fn is_sign_negative(self) -> bool;
}

impl RuleFloat for f32 {
    fn of(x: f64) -> f32 {
        x as f32
    }
    fn exp(self) -> f32 {
        f32::exp(self)
    }
    fn ln(self) -> f32 {
        f32::ln(self)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    fn is_sign_negative(self) -> bool {
        f32::is_sign_negative(self)
    }
}

impl RuleFloat for f64 {
    fn of(x: f64) -> f64 {
        x
    }
    fn exp(self) -> f64 {
        f64::exp(self)
    }
    fn ln(self) -> f64 {
        f64::ln(self)
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    fn is_sign_negative(self) -> bool {
        f64::is_sign_negative(self)
    }
}

/// `max(a, b)` of the IR: NaN if either is NaN, else the larger, `a` on ties.
#[inline(always)]
pub fn max_nan<F: RuleFloat>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::of(f64::NAN)
    } else if b > a {
        b
    } else {
        a
    }
}

/// `min(a, b)` of the IR: NaN if either is NaN, else the smaller, `a` on ties.
#[inline(always)]
pub fn min_nan<F: RuleFloat>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::of(f64::NAN)
    } else if b < a {
        b
    } else {
        a
    }
}

impl StdpRule {
    /// `A+(w)` (`plus`) or `A-(w)`.
    #[inline(always)]
    pub fn amplitude<F: RuleFloat>(&self, w: F, plus: bool) -> F {
        let eta = F::of(if plus { self.eta_plus } else { self.eta_minus });
        let d = || if plus { F::of(self.w_max) - w } else { w - F::of(self.w_min) };
        let zero = F::of(0.0);
        let f = match self.kind {
            StdpKind::Additive => return eta,
            StdpKind::AdditiveStep => {
                if d() > zero {
                    F::of(1.0)
                } else {
                    zero
                }
            }
            StdpKind::MultiplicativeRelu => max_nan(d(), zero),
            StdpKind::MultiplicativePow if self.mu == 0.0 => return eta,
            StdpKind::MultiplicativePow if self.mu == 1.0 => d(),
            StdpKind::MultiplicativePow if self.mu == 2.0 => {
                let d = d();
                d * d
            }
            StdpKind::MultiplicativePow => (F::of(self.mu) * d().ln()).exp(),
        };
        eta * f
    }

    /// The new value of one weight entry from its outer-product sums.
    #[inline(always)]
    pub fn update<F: RuleFloat>(&self, w: F, plus: F, minus: F) -> F {
        let dw = self.amplitude(w, true) * plus - self.amplitude(w, false) * minus;
        let w_new = w + dw;
        if self.hardbound { min_nan(max_nan(w_new, F::of(self.w_min)), F::of(self.w_max)) } else { w_new }
    }

    /// Whether `w` is finite and `update(w, 0, 0)` is `w` itself, bit for
    /// bit: the entries an event-driven update may leave alone (and, all
    /// of them so, a weight a product may read without scanning it for
    /// non-finite entries). True for a finite `w` within the bounds (if
    /// any) whose amplitudes are finite, unless `w` is `-0` (`-0 + +0` is
    /// `+0`).
    #[inline(always)]
    pub fn is_fixed_point<F: RuleFloat>(&self, w: F) -> bool {
        let zero = F::of(0.0);
        let new = self.update(w, zero, zero);
        w.is_finite() && new == w && new.is_sign_negative() == w.is_sign_negative()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: StdpKind, mu: f64, hardbound: bool) -> StdpRule {
        StdpRule { kind, eta_plus: 1e-3, eta_minus: 1e-3, w_min: 0.0, w_max: 1.0, mu, hardbound }
    }

    #[test]
    fn the_rule_is_norses_order_of_operations() {
        let r = rule(StdpKind::MultiplicativePow, 0.5, true);
        let w = 0.3f32;
        let a_plus = 1e-3f32 * (0.5f32 * (1.0f32 - w).ln()).exp();
        let a_minus = 1e-3f32 * (0.5f32 * (w - 0.0f32).ln()).exp();
        let expect = (w + (a_plus * 2.0 - a_minus * 0.25)).clamp(0.0, 1.0);
        assert_eq!(r.update(w, 2.0f32, 0.25).to_bits(), expect.to_bits());
        let r = rule(StdpKind::AdditiveStep, 0.0, false);
        assert_eq!(r.amplitude(1.0f64, true), 0.0, "H(0) = 0");
        assert_eq!(r.amplitude(0.5f64, true), 1e-3);
    }

    #[test]
    fn entries_without_spikes_keep_their_bits_only_within_bounds() {
        let r = rule(StdpKind::MultiplicativeRelu, 0.0, true);
        assert!(r.is_fixed_point(0.5f32));
        assert!(r.is_fixed_point(0.0f32));
        assert!(!r.is_fixed_point(-0.0f32), "-0 + 0 is +0");
        assert!(!r.is_fixed_point(1.5f32), "the clamp moves it");
        assert!(!r.is_fixed_point(f32::NAN));
        let free = rule(StdpKind::Additive, 0.0, false);
        assert!(!free.is_fixed_point(f32::INFINITY), "inf + 0 is inf, but not finite");
        let pow = rule(StdpKind::MultiplicativePow, 0.5, false);
        assert!(!pow.is_fixed_point(1.5f64), "a fractional power of a negative d is NaN");
        assert!(pow.is_fixed_point(0.5f64));
    }
}
