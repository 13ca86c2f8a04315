//! The event-driven STDP update: random plastic networks (every rule, hard
//! bounds on and off, random shapes, batch sizes, step counts and spike
//! densities) give the same bits on the CPU — which updates the plastic
//! weight in place and visits only the rows of the posts and the columns
//! of the pres that spiked where that pays — as on the interpreter, which
//! updates every entry (`Op::StdpUpdate`, `snnc_ir::stdp`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use snnc::Target;
use snnc_runtime::{ElemType, Tensor};

#[path = "common/proptest_config.rs"]
mod proptest_config;

#[derive(Clone, Debug)]
struct Case {
    rule: &'static str,
    mu: f64,
    hardbound: bool,
    n_in: usize,
    n_out: usize,
    batch: usize,
    steps: usize,
    /// The fraction of driven inputs per step (their presynaptic neuron spikes).
    density: f64,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![
            Just(("additive", 0.0)),
            Just(("additive_step", 0.0)),
            Just(("multiplicative_relu", 0.0)),
            Just(("multiplicative_pow", 0.5)),
            Just(("multiplicative_pow", 1.0)),
            Just(("multiplicative_pow", 2.0)),
        ],
        any::<bool>(),
        (2usize..40, 1usize..24, 1usize..4, 2usize..25),
        prop_oneof![Just(0.02), Just(0.1), Just(0.5)],
        any::<u64>(),
    )
        .prop_map(|((rule, mu), hardbound, (n_in, n_out, batch, steps), density, seed)| Case {
            rule,
            mu,
            hardbound,
            n_in,
            n_out,
            batch,
            steps,
            density,
            seed,
        })
}

fn network(c: &Case) -> String {
    format!(
        "(version: 1, name: \"stdp_event\", steps: {}, input: [{}], seed: {},
          layers: [
            LIF(name: \"pre\", p: (v_th: 0.3)),
            Linear(name: \"fc\", out: {}, bias: false,
                   plasticity: STDP(rule: {}, mu: {:?}, hardbound: {}, eta_plus: 0.05, eta_minus: 0.04)),
            LIF(name: \"post\", p: (v_th: 0.1)),
          ])",
        c.steps, c.n_in, c.seed, c.n_out, c.rule, c.mu, c.hardbound
    )
}

/// `[steps, batch, n_in]` currents: a driven input (strong enough to make
/// its presynaptic neuron spike within a few steps) with probability
/// `density`, else 0.
fn input(c: &Case) -> BTreeMap<String, Tensor> {
    let mut state = c.seed | 1;
    let data = (0..c.steps * c.batch * c.n_in)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            if u < c.density { 20.0 } else { 0.0 }
        })
        .collect();
    BTreeMap::from([("x".to_string(), Tensor::new(vec![c.steps, c.batch, c.n_in], ElemType::F32, data).unwrap())])
}

/// The same names, shapes and bits (any NaN equal to any NaN: a
/// `multiplicative_pow` rule with a fractional `mu` makes NaN of a weight
/// outside its bounds, in both backends).
fn same_bits(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, ta), (kb, tb))| {
            ka == kb
                && ta.shape == tb.shape
                && ta.data.iter().zip(&tb.data).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
        })
}

proptest! {
    #![proptest_config(proptest_config::proptest_config(24))]

    #[test]
    fn the_cpus_event_driven_update_gives_the_interpreters_bits(c in case()) {
        let net = snnc_frontend::parse_network(&network(&c), "stdp_event").unwrap();
        let x = input(&c);
        let cpu = snnc::compile(&net, Target::Cpu).unwrap().forward(&x).unwrap();
        let reference = snnc::compile(&net, Target::Interp).unwrap().forward(&x).unwrap();
        prop_assert!(same_bits(&cpu.final_state, &reference.final_state), "{:?}\n{:?}\n{:?}", c, cpu.final_state, reference.final_state);
        prop_assert!(same_bits(&cpu.tensors, &reference.tensors), "{:?}", c);
    }
}
