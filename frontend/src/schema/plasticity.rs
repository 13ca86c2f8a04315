//! Plasticity of a layer's weights: Norse's STDP (`norse.torch.functional.stdp`,
//! `STDPParameters`), written `plasticity: STDP(...)` on a `Linear`.

use serde::{Deserialize, Serialize};

/// Norse's `stdp_algorithm`: how the weight update scales with the weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StdpRule {
    /// `A+ = eta_plus`, `A- = eta_minus`.
    #[default]
    Additive,
    /// `A+ = eta_plus * H(w_max - w)`, `A- = eta_minus * H(w - w_min)`
    /// (`H(0) = 0`).
    AdditiveStep,
    /// `A+ = eta_plus * (w_max - w)^mu`, `A- = eta_minus * (w - w_min)^mu`.
    MultiplicativePow,
    /// `A+ = eta_plus * relu(w_max - w)`, `A- = eta_minus * relu(w - w_min)`.
    MultiplicativeRelu,
}

impl StdpRule {
    pub const ALL: [StdpRule; 4] =
        [StdpRule::Additive, StdpRule::AdditiveStep, StdpRule::MultiplicativePow, StdpRule::MultiplicativeRelu];

    /// Norse's name (`stdp_algorithm`).
    pub fn norse_name(self) -> &'static str {
        match self {
            StdpRule::Additive => "additive",
            StdpRule::AdditiveStep => "additive_step",
            StdpRule::MultiplicativePow => "multiplicative_pow",
            StdpRule::MultiplicativeRelu => "multiplicative_relu",
        }
    }

    pub fn from_norse_name(name: &str) -> Option<StdpRule> {
        StdpRule::ALL.into_iter().find(|r| r.norse_name() == name)
    }
}

/// `STDPParameters` of Norse 1.1.0, with its defaults; every field a
/// Python float (folded at compile time, rounded where it meets a tensor).
///
/// One step of a plastic `Linear` with weight `w` (`[out, in]`), input
/// spikes `z_pre` and the spikes `z_post` of the layer that reads it:
/// the traces first, `t_pre' = t_pre + (dt * tau_pre_inv) * (-t_pre +
/// a_pre * z_pre)` (likewise `t_post`), then `w' = w + (A+(w) * Σ_b
/// z_postᵀ t_pre' - A-(w) * Σ_b t_post'ᵀ z_pre)`, clamped to `[w_min,
/// w_max]` with `hardbound`. The product of step `t` uses `w` before the
/// step's update.
#[allow(non_snake_case)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "STDP", deny_unknown_fields, default)]
pub struct Stdp {
    /// Norse's `stdp_algorithm`.
    #[serde(alias = "stdp_algorithm")]
    pub rule: StdpRule,
    /// The exponent of `multiplicative_pow` (Norse uses 0 for the additive
    /// rules and 1 for `multiplicative_relu` whatever is given).
    pub mu: f64,
    /// Clamp the weights to `[w_min, w_max]` after every update.
    pub hardbound: bool,
    pub a_pre: f64,
    pub a_post: f64,
    pub tau_pre_inv: f64,
    pub tau_post_inv: f64,
    pub w_min: f64,
    pub w_max: f64,
    pub eta_plus: f64,
    pub eta_minus: f64,
}

impl Default for Stdp {
    fn default() -> Self {
        Stdp {
            rule: StdpRule::Additive,
            mu: 0.0,
            hardbound: true,
            a_pre: 1.0,
            a_post: 1.0,
            tau_pre_inv: 1.0 / 50e-3,
            tau_post_inv: 1.0 / 50e-3,
            w_min: 0.0,
            w_max: 1.0,
            eta_plus: 1e-3,
            eta_minus: 1e-3,
        }
    }
}

impl Stdp {
    /// Norse's defaults with rule `rule`.
    pub fn rule(rule: StdpRule) -> Stdp {
        Stdp { rule, ..Stdp::default() }
    }

    /// The exponent Norse uses (`mu_effective`): `mu` for
    /// `multiplicative_pow`, 1 for `multiplicative_relu`, else 0.
    pub fn mu_effective(&self) -> f64 {
        match self.rule {
            StdpRule::MultiplicativePow => self.mu,
            StdpRule::MultiplicativeRelu => 1.0,
            StdpRule::Additive | StdpRule::AdditiveStep => 0.0,
        }
    }
}
