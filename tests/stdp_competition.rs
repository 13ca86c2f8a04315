//! The example `examples/stdp_competition.rs` (Song, Miller & Abbott 2000:
//! correlated afferents win the competition that STDP sets up), run for 10
//! simulated seconds instead of 200: the correlated group's weights have
//! gone most of the way to `w_max` while the independent group's have not
//! risen, so the two groups have separated. The input is made with a fixed
//! seed and the CPU backend is deterministic, so the numbers are the same
//! on every run; the bounds leave room for the last bits of the float
//! arithmetic (the margins are what the runs show, see docs/plasticity.md).

#[allow(dead_code)]
#[path = "../examples/stdp_competition.rs"]
mod example;

use example::{Setup, above_half, mean, run};

#[test]
fn correlated_afferents_win_the_competition() {
    let s = Setup::competition(10);
    let h = run(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.weights.len(), 11);
    let (first, last) = (&h.weights[0], &h.weights[10]);
    let c = s.correlated;
    for w in [&first[..c], &first[c..]] {
        assert!((mean(w, s.w_max) - 0.5).abs() < 1e-6, "w_max / 2 in f32");
        assert_eq!(above_half(w, s.w_max), 0.0);
    }
    let (cor, ind) = (mean(&last[..c], s.w_max), mean(&last[c..], s.w_max));
    println!("after 10 s: correlated {cor:.3}, independent {ind:.3}, rates {:?}", h.rates);
    assert!(cor > 0.9, "the correlated group's mean weight is {cor} w_max");
    assert!(ind < 0.5, "the independent group's mean weight is {ind} w_max");
    assert!(cor - ind > 0.4, "correlated {cor}, independent {ind}");
    assert!(above_half(&last[..c], s.w_max) > 0.95);
    assert!(above_half(&last[c..], s.w_max) < 0.5);
    // Fluctuation-driven at the start (the paper's regime: ~10-40 Hz).
    assert!((10.0..=40.0).contains(&h.rates[0]), "{:?}", h.rates);
    // Every weight stays within the hard bounds.
    assert!(last.iter().all(|&w| (0.0..=s.w_max as f32 as f64).contains(&w)));
}
