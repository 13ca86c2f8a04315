//! The rewrite rules of the fusion pass.
//!
//! Every rule preserves values (the forward result, bit for bit, under the
//! conditions its comment states), never gradient structure: autodiff runs
//! on the unfused IR, and fused kernels are forward code. Rules are
//! directional and targeted at what the frontend emits; there is no
//! commutativity or associativity, and nothing that could change a
//! result's rounding (no reassociation, no contraction into fused
//! multiply-adds, no `x + 0 => x`, which turns `-0` into `+0`).
//!
//! Constant folding is not a rule: the e-graph analysis (`lang.rs`) folds
//! every class whose operands are constants, exactly as the interpreter
//! computes it, and adds the constant to the class.
//!
//! Spikes are 0 or 1 (`z ∈ {0, 1}` below), as every op that makes one
//! guarantees. Each rule has its own test in `passes/tests/fuse_rules.rs`.

use egg::{Id, Subst, Var, rewrite};
use snnc_ir::Dtype;

use super::lang::{KernelAnalysis, KernelGraph, StepLang};

/// A rewrite of the fusion pass's language.
pub type Rewrite = egg::Rewrite<StepLang, KernelAnalysis>;

/// Every rule of the fusion pass, in a fixed order.
#[rustfmt::skip]
pub fn rules() -> Vec<Rewrite> {
    vec![
        // x * 1 = x and 1 * x = x for every x (IEEE multiplication by one is exact).
        rewrite!("mul-one-right";      "(* ?x 1.0)"                      => "?x"                 if same_dtype("?x")),
        rewrite!("mul-one-left";       "(* 1.0 ?x)"                      => "?x"                 if same_dtype("?x")),
        // x - (+0) = x for every x, -0 included (-0 - +0 = -0).
        rewrite!("sub-zero";           "(- ?x 0.0)"                      => "?x"                 if same_dtype("?x")),
        // x + (-0) = x for every x, +0 included (+0 + -0 = +0).
        rewrite!("add-neg-zero";       "(+ ?x -0.0)"                     => "?x"                 if same_dtype("?x")),
        // z * (+0) = +0 for a spike z: 0 * 0 = 1 * 0 = +0.
        rewrite!("spike-mul-zero";     "(* ?z 0.0)"                      => "0.0"                if is_spike("?z")),
        // stop_gradient(x) = x: the identity forward (gradients are not ours).
        rewrite!("drop-stop-gradient"; "(stop_gradient ?x)"              => "?x"),
        // Norse's reset (1 - z) v + z c = select(z, c, v), for a spike z and
        // a finite constant c other than -0, for every finite v except -0
        // when c >= +0: z = 1 gives (+0 * v) + c = ±0 + c = c (c != 0, or
        // c = +0 and ±0 + +0 = +0); z = 0 gives v + (0 * c) = v + (±0) = v
        // (v + -0 = v always; v + +0 = v unless v = -0). A membrane is -0
        // only if it starts at -0 (x + y = -0 needs x = y = -0), and a
        // non-finite one has diverged already (Norse gives NaN there).
        rewrite!("reset-to-constant";  "(+ (* (- 1.0 ?z) ?v) (* ?z ?c))" => "(select ?z ?c ?v)"  if is_spike("?z") if reset_constant("?c") if same_dtype("?v")),
        // Reset by subtraction to zero, v - z v = select(z, 0, v), for a
        // spike z and every finite v except -0: z = 1 gives v - v = +0;
        // z = 0 gives v - (0 * v) = v - (±0) = v (v - +0 = v; v - -0 =
        // v + +0 = v unless v = -0). After `sub-zero` this is the
        // constant-current encoder's v - z (v - 0).
        rewrite!("reset-to-zero";      "(- ?v (* ?z ?v))"                => "(select ?z 0.0 ?v)" if is_spike("?z") if same_dtype("?v")),
    ]
}

/// The rules that are exact for every input, infinities and NaN included:
/// [`rules`] without the reset rules (which assume a finite membrane).
pub fn exact_rules() -> Vec<Rewrite> {
    rules().into_iter().filter(|r| !FINITE_ONLY.contains(&r.name.as_str())).collect()
}

/// The rules that are exact only for finite values.
pub const FINITE_ONLY: [&str; 2] = ["reset-to-constant", "reset-to-zero"];

/// The class of `var` has the dtype of the matched class (so replacing
/// one by the other keeps the value's type).
fn same_dtype(var: &str) -> impl Fn(&mut KernelGraph, Id, &Subst) -> bool + use<> {
    let var: Var = var.parse().expect("a pattern variable");
    move |egraph, root, subst| egraph[subst[var]].data.dtype == egraph[root].data.dtype
}

/// The class of `var` is a spike.
fn is_spike(var: &str) -> impl Fn(&mut KernelGraph, Id, &Subst) -> bool + use<> {
    let var: Var = var.parse().expect("a pattern variable");
    move |egraph, _, subst| egraph[subst[var]].data.dtype == Dtype::Spike
}

/// The class of `var` is a finite float constant other than -0.
fn reset_constant(var: &str) -> impl Fn(&mut KernelGraph, Id, &Subst) -> bool + use<> {
    let var: Var = var.parse().expect("a pattern variable");
    move |egraph, _, subst| {
        egraph[subst[var]].data.constant.is_some_and(|c| {
            let v = c.value();
            !c.is_spike() && v.is_finite() && v.to_bits() != (-0.0f64).to_bits()
        })
    }
}
