//! One test per rewrite rule of the fusion pass, in the style of egg's
//! `test_fn!`: each starts from a term, runs every rule (`rules()`, so a
//! typo in any pattern fails here) and checks that the goal is in the
//! start's e-class. Conditions get tests that the rule does *not* fire.
//!
//! Terms: `in0`, `in1` are `f32` inputs, `(threshold:superspike x)` is a
//! spike, numbers are `f32` constants.

use egg::{Pattern, RecExpr, Runner, Searcher, test_fn};
use snnc_passes::fuse::lang::{KernelAnalysis, StepLang};
use snnc_passes::fuse::rules::rules;

// x * 1 = x.
test_fn! { mul_one_right, rules(), "(* in0 1.0)" => "in0" }
// 1 * x = x.
test_fn! { mul_one_left, rules(), "(* 1.0 in0)" => "in0" }
// x - (+0) = x.
test_fn! { sub_zero, rules(), "(- in0 0.0)" => "in0" }
// x + (-0) = x.
test_fn! { add_neg_zero, rules(), "(+ in0 -0.0)" => "in0" }
// z * (+0) = +0 for a spike z.
test_fn! { spike_mul_zero, rules(), "(* (threshold:superspike in0) 0.0)" => "0.0" }
// stop_gradient(x) = x forward.
test_fn! { drop_stop_gradient, rules(), "(stop_gradient in0)" => "in0" }
// Norse's recurrent LIF reset, with the detached spike and v_reset = -0.2.
test_fn! {
    reset_to_constant, rules(),
    "(+ (* (- 1.0 (stop_gradient (threshold:superspike (- in0 0.5)))) in0)
        (* (stop_gradient (threshold:superspike (- in0 0.5))) -0.2))"
    => "(select (threshold:superspike (- in0 0.5)) -0.2 in0)"
}
// The same with v_reset = 0, as the frontend emits it for Norse's default.
test_fn! {
    reset_to_constant_zero, rules(),
    "(+ (* (- 1.0 (threshold:superspike in0)) in1) (* (threshold:superspike in0) 0.0))"
    => "(select (threshold:superspike in0) 0.0 in1)"
}
// The constant-current encoder's reset v - z (v - 0), after `sub-zero`.
test_fn! {
    reset_to_zero, rules(),
    "(- in0 (* (threshold:superspike (- in0 1.0)) (- in0 0.0)))"
    => "(select (threshold:superspike (- in0 1.0)) 0.0 in0)"
}
// Not a rule, the analysis: dt * tau_mem_inv folds in f32 to the product
// the interpreter computes (0.001f32 * 100f32 = 0.1f32).
test_fn! { fold_constants_in_f32, rules(), "(* 0.0010000000474974513 100.0)" => "0.10000000149011612" }
test_fn! { fold_through_a_threshold, rules(), "(threshold:superspike (- 0.5 1.0))" => "0s" }

/// Runs every rule on `start` (an `f32` module) and says whether `goal`
/// is in its e-class.
fn reaches(start: &str, goal: &str) -> bool {
    let start: RecExpr<StepLang> = start.parse().unwrap();
    let goal: Pattern<StepLang> = goal.parse().unwrap();
    let runner: Runner<StepLang, KernelAnalysis, ()> =
        Runner::new(KernelAnalysis::default()).with_iter_limit(30).with_expr(&start).run(&rules());
    let root = runner.egraph.find(runner.roots[0]);
    goal.search_eclass(&runner.egraph, root).is_some()
}

#[test]
fn the_start_is_always_reached() {
    assert!(reaches("(* in0 in1)", "(* in0 in1)"));
}

#[test]
fn mul_one_keeps_a_spike_times_float_a_float() {
    // z * 1.0 is the float 0.0 or 1.0: replacing it by the spike would
    // change its dtype.
    assert!(!reaches("(* (threshold:superspike in0) 1.0)", "(threshold:superspike in0)"));
}

#[test]
fn x_plus_zero_is_not_x() {
    // -0 + +0 = +0, so `x + 0 => x` would flip the sign of a zero.
    assert!(!reaches("(+ in0 0.0)", "in0"));
}

#[test]
fn x_minus_negative_zero_is_not_x() {
    // x - (-0) = x + (+0), which is +0 for x = -0.
    assert!(!reaches("(- in0 -0.0)", "in0"));
}

#[test]
fn spike_mul_zero_needs_a_spike() {
    // x * 0 is NaN for an infinite float x.
    assert!(!reaches("(* in0 0.0)", "0.0"));
}

#[test]
fn reset_to_constant_needs_a_constant_other_than_negative_zero() {
    let z = "(threshold:superspike in0)";
    assert!(!reaches(&format!("(+ (* (- 1.0 {z}) in1) (* {z} -0.0))"), &format!("(select {z} -0.0 in1)")));
    assert!(!reaches(&format!("(+ (* (- 1.0 {z}) in1) (* {z} in0))"), &format!("(select {z} in0 in1)")));
    assert!(!reaches(&format!("(+ (* (- 1.0 {z}) in1) (* {z} inf))"), &format!("(select {z} inf in1)")));
}

#[test]
fn resets_need_a_spike() {
    // A float "z" is not 0 or 1.
    assert!(!reaches("(+ (* (- 1.0 in0) in1) (* in0 0.0))", "(select in0 0.0 in1)"));
    assert!(!reaches("(- in1 (* in0 in1))", "(select in0 0.0 in1)"));
}

#[test]
fn there_is_no_commutativity_or_reassociation() {
    assert!(!reaches("(+ in0 in1)", "(+ in1 in0)"));
    assert!(!reaches("(* (* in0 in1) 2.0)", "(* in0 (* in1 2.0))"));
    assert!(!reaches("(+ (* in0 in1) 2.0)", "(+ 2.0 (* in0 in1))"));
}

#[test]
fn every_rule_has_a_test_and_a_kebab_case_name() {
    let tested = [
        "mul-one-right",
        "mul-one-left",
        "sub-zero",
        "add-neg-zero",
        "spike-mul-zero",
        "drop-stop-gradient",
        "reset-to-constant",
        "reset-to-zero",
    ];
    let names: Vec<String> = rules().iter().map(|r| r.name.to_string()).collect();
    assert_eq!(names, tested, "add a test for every new rule above, and its name here");
    for n in &names {
        assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "`{n}` is not kebab-case");
    }
}
