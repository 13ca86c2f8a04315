//! Competitive Hebbian learning through STDP: Song, Miller & Abbott (2000),
//! "Competitive Hebbian learning through spike-timing-dependent synaptic
//! plasticity", Nat. Neurosci. 3:919, run with snnc's Norse STDP.
//!
//! One LIF neuron (`tau_mem` 20 ms, `tau_syn` 5 ms, `v_th` 1) is driven by
//! `N` = 1000 Poisson afferents at 10 Hz through a `Linear(1000 -> 1)` whose
//! weight Norse's additive STDP updates at every 1 ms step: all-to-all trace
//! pairing (Song et al.'s model), time constants 20 ms, a spike raises its
//! trace by 1 (`a_pre` = `a_post` = 1 / (dt * tau_inv) = 20), `eta_plus` =
//! 0.02 * w_max, `eta_minus` = 1.05 * `eta_plus` (depression 5 % stronger,
//! the paper's `A- tau- / (A+ tau+)` = 1.05) and hard bounds [0, w_max].
//! Every weight starts at w_max / 2.
//!
//! The first 500 afferents are *correlated*: a common "mother" event train
//! at rate / c, each of its events copied into each of them with
//! probability c (c = 0.2: the pairwise correlation of their spike counts
//! per step), plus independent spikes so that each still fires at 10 Hz.
//! The other 500 fire independently at the same rate. STDP makes them
//! compete: the correlated group's weights go to w_max, the independent
//! group's towards 0, and the weights split into a bimodal distribution.
//!
//! Then the paper's rate normalisation: 1000 independent afferents at 10,
//! 20 or 40 Hz, every weight starting at w_max. The neuron fires at 43-191
//! Hz at first; STDP lowers the weights until the mean input drive (input
//! rate x mean weight) is nearly the same at every input rate, and the
//! output rate ends at 5-17 Hz (not independent of the input rate, but
//! compressed from a 4.4-fold to a 3.5-fold range).
//!
//! The input is made here with a fixed seed and fed to the compiled network
//! one second (1000 steps) at a time with `Executable::forward_with_state`,
//! which carries the plastic weight, its traces and the neuron's state from
//! one call to the next (the same numbers as one long run). The program
//! prints the weights of both groups at the start and the end and writes
//! `docs/stdp_competition.png` (each group's weight distribution over time,
//! drawn by `snnc::plot::evolution`).
//!
//! Run it with `cargo run --release --example stdp_competition` (800
//! simulated seconds in about 6 s; `tests/stdp_competition.rs` runs a short version of it).

use std::collections::BTreeMap;

use snnc::frontend::dsl::{Layer, Net};
use snnc::frontend::{Network, Stdp, StdpRule};
use snnc::runtime::{ElemType, Tensor};

/// Simulation step (s).
pub const DT: f64 = 1e-3;
/// Steps per `forward_with_state` call (one second).
pub const CHUNK: usize = 1000;

/// One experiment.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Afferents.
    pub n: usize,
    /// How many of them (the first ones) share the mother events.
    pub correlated: usize,
    /// Each afferent's firing rate (Hz).
    pub rate_hz: f64,
    /// The probability that a correlated afferent copies a mother event.
    pub c: f64,
    /// Simulated seconds (chunks of `CHUNK` steps).
    pub seconds: usize,
    /// The upper bound of the weights.
    pub w_max: f64,
    /// The initial weight, as a fraction of `w_max`.
    pub w_start: f64,
    /// `eta_plus` (the potentiation per pair of spikes at zero lag).
    pub eta_plus: f64,
    /// `eta_minus / eta_plus` (= `A- tau- / (A+ tau+)`, the time constants
    /// being equal).
    pub depression: f64,
    /// The seed of the input spikes.
    pub seed: u64,
}

impl Setup {
    /// The experiment of the paper's competition between a correlated and
    /// an independent group.
    pub fn competition(seconds: usize) -> Setup {
        Setup {
            n: 1000,
            correlated: 500,
            rate_hz: 10.0,
            c: 0.2,
            seconds,
            w_max: 0.03,
            w_start: 0.5,
            eta_plus: 0.02 * 0.03,
            depression: 1.05,
            seed: 2000,
        }
    }

    /// Song et al.'s rate normalisation: `n` independent afferents at
    /// `rate_hz`, every weight starting at `w_max`.
    pub fn uncorrelated(rate_hz: f64, seconds: usize) -> Setup {
        Setup { correlated: 0, rate_hz, w_start: 1.0, ..Setup::competition(seconds) }
    }

    /// The plasticity of the `Linear`: Norse's additive STDP with traces
    /// that rise by 1 per spike and decay with 20 ms.
    pub fn stdp(&self) -> Stdp {
        let tau_inv = 1.0 / 20e-3;
        Stdp {
            rule: StdpRule::Additive,
            mu: 0.0,
            hardbound: true,
            a_pre: 1.0 / (DT * tau_inv),
            a_post: 1.0 / (DT * tau_inv),
            tau_pre_inv: tau_inv,
            tau_post_inv: tau_inv,
            w_min: 0.0,
            w_max: self.w_max,
            eta_plus: self.eta_plus,
            eta_minus: self.depression * self.eta_plus,
        }
    }

    /// The network of one chunk: `n` input spike trains into one LIF
    /// neuron through the plastic `fc`.
    pub fn network(&self) -> Result<Network, snnc::frontend::FrontendError> {
        Net::new("stdp_competition", CHUNK as u32)
            .input([self.n as u32])
            .layer(Layer::linear(1).named("fc").no_bias().plasticity(self.stdp()))
            .layer(Layer::lif().named("post").tau_mem_inv(50.0).tau_syn_inv(200.0).v_th(1.0))
            .build()
    }
}

/// SplitMix64: the input's random numbers.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A uniform number in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `CHUNK` steps of input spikes `[CHUNK, 1, n]`.
pub fn input_chunk(s: &Setup, rng: &mut Rng) -> Tensor {
    let p = s.rate_hz * DT;
    let mut data = Vec::with_capacity(CHUNK * s.n);
    for _ in 0..CHUNK {
        let mother = s.correlated > 0 && rng.uniform() < p / s.c;
        for k in 0..s.n {
            let spike = if k < s.correlated {
                (mother && rng.uniform() < s.c) || rng.uniform() < p * (1.0 - s.c)
            } else {
                rng.uniform() < p
            };
            data.push(if spike { 1.0 } else { 0.0 });
        }
    }
    Tensor { shape: vec![CHUNK, 1, s.n], dtype: ElemType::F32, data }
}

/// What a run gives: the weights after every second and the neuron's rate
/// in every second.
#[derive(Clone, Debug)]
pub struct History {
    /// `weights[k]`: the `n` weights after `k` seconds (`weights[0]`: the
    /// initial ones).
    pub weights: Vec<Vec<f64>>,
    /// The output rate (Hz) in each second.
    pub rates: Vec<f64>,
}

/// Runs `s` on the CPU backend.
pub fn run(s: &Setup) -> Result<History, Box<dyn std::error::Error>> {
    let mut exe = snnc::compile(&s.network()?, snnc::Target::Cpu)?;
    let w0 = vec![s.w_start * s.w_max; s.n];
    exe.set_weights(BTreeMap::from([(
        "fc.weight".to_string(),
        Tensor { shape: vec![1, s.n], dtype: ElemType::F32, data: w0 },
    )]))?;
    let mut rng = Rng::new(s.seed);
    let mut h = History { weights: vec![exe.weights()["fc.weight"].data.clone()], rates: Vec::new() };
    for _ in 0..s.seconds {
        let x = input_chunk(s, &mut rng);
        let out = exe.forward_with_state(&BTreeMap::from([("x".to_string(), x)]))?;
        let spikes: f64 = out.tensors["output"].data.iter().sum();
        h.rates.push(spikes / (CHUNK as f64 * DT));
        h.weights.push(exe.state()["fc.weight.plastic"].data.clone());
    }
    Ok(h)
}

/// The mean of `w` as a fraction of `w_max`.
pub fn mean(w: &[f64], w_max: f64) -> f64 {
    w.iter().sum::<f64>() / w.len() as f64 / w_max
}

/// The fraction of `w` above `w_max / 2`.
pub fn above_half(w: &[f64], w_max: f64) -> f64 {
    w.iter().filter(|&&x| x > w_max / 2.0).count() as f64 / w.len() as f64
}

/// The fraction of `w` within 10 % of `w_max` of a bound (0 or `w_max`).
pub fn at_bounds(w: &[f64], w_max: f64) -> f64 {
    w.iter().filter(|&&x| x < 0.1 * w_max || x > 0.9 * w_max).count() as f64 / w.len() as f64
}

/// The mean of the rates of seconds `range`.
fn rate(h: &History, range: std::ops::Range<usize>) -> f64 {
    let r = &h.rates[range];
    r.iter().sum::<f64>() / r.len() as f64
}

/// The weight distributions of both groups over time, drawn by
/// `snnc::plot::evolution` (one panel per group).
fn figure(s: &Setup, h: &History, path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let group = |range: std::ops::Range<usize>| {
        let data: Vec<f64> = h.weights.iter().flat_map(|w| w[range.clone()].iter().copied()).collect();
        Tensor { shape: vec![h.weights.len(), 1, range.len()], dtype: ElemType::F32, data }
    };
    let c = s.correlated;
    let snaps = snnc::snapshots::Snapshots {
        steps: (0..h.weights.len()).map(|k| k * CHUNK).collect(),
        weights: BTreeMap::from([
            (format!("correlated afferents 0..{c} (c = {})", s.c), group(0..c)),
            (format!("independent afferents {c}..{}", s.n), group(c..s.n)),
        ]),
    };
    let (png, _) = snnc::plot::evolution::png(&snaps)?;
    std::fs::write(path, png)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let s = Setup::competition(200);
    let t0 = std::time::Instant::now();
    let h = run(&s)?;
    let (first, last) = (&h.weights[0], &h.weights[h.weights.len() - 1]);
    let c = s.correlated;
    println!(
        "Song, Miller & Abbott (2000): {} afferents at {} Hz ({c} correlated, c = {}), {} s, w_max {}, \
         eta_plus {}, eta_minus/eta_plus {} ({:.1} s)",
        s.n,
        s.rate_hz,
        s.c,
        s.seconds,
        s.w_max,
        s.eta_plus,
        s.depression,
        t0.elapsed().as_secs_f64()
    );
    println!("output rate: {:.1} Hz in the first 2 s, {:.1} Hz in the last 20 s", rate(&h, 0..2), {
        let n = h.rates.len();
        rate(&h, n - 20..n)
    });
    println!("group        mean weight / w_max (start -> end)   above w_max/2 (start -> end)");
    for (name, r) in [("correlated", 0..c), ("independent", c..s.n)] {
        println!(
            "{name:<12} {:.3} -> {:.3}                         {:.2} -> {:.2}",
            mean(&first[r.clone()], s.w_max),
            mean(&last[r.clone()], s.w_max),
            above_half(&first[r.clone()], s.w_max),
            above_half(&last[r], s.w_max)
        );
    }
    println!(
        "weights within 10 % of w_max of 0 or w_max: {:.2} -> {:.2} (bimodal)",
        at_bounds(first, s.w_max),
        at_bounds(last, s.w_max)
    );
    // Rate normalisation: independent afferents only, all weights at
    // w_max at the start, at three input rates.
    println!("independent afferents only, weights from w_max, {} s:", s.seconds);
    println!("input rate   output rate (first 2 s -> last 20 s)   mean weight / w_max   x input rate   at 0 or w_max");
    for r in [10.0, 20.0, 40.0] {
        let u = Setup::uncorrelated(r, s.seconds);
        let h = run(&u)?;
        let (n, last) = (h.rates.len(), &h.weights[h.weights.len() - 1]);
        println!(
            "{r:>5} Hz     {:>6.1} Hz -> {:>5.1} Hz                  {:.3}                 {:.2} Hz        {:.2}",
            rate(&h, 0..2),
            rate(&h, n - 20..n),
            mean(last, u.w_max),
            r * mean(last, u.w_max),
            at_bounds(last, u.w_max)
        );
    }
    let path = std::path::Path::new("docs/stdp_competition.png");
    figure(&s, &h, path)?;
    println!("wrote {}", path.display());
    Ok(())
}
