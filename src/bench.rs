//! `snnc bench`: the benchmarks of `docs/DESIGN.md`, timed the way
//! `scripts/norse/norse_cpu.py` times Norse, so the two can be compared.
//!
//! | name | network | T | batch | input |
//! |---|---|---|---|---|
//! | `tutorial` | `examples/tutorial.ron` (encoder + LIFRecurrent 784→100 + Linear 100→10 + LI + decode) | 32 | 256 | Fashion-MNIST test images |
//! | `lif-layer-512`, `lif-layer-4096` | Linear(n→n, bias) → LIF, output spikes | 500 | 16 | randn currents `[T, B, n]` |
//! | `izh-layer-512`, `izh-layer-4096` | Linear(n→n, bias) → Izhikevich(tonic_spiking), output spikes | 500 | 16 | randn currents `[T, B, n]` × 30 ([`IZH_INPUT_SCALE`]) |
//! | `convnet` | `examples/convnet.ron` (encoder + the Norse ConvNet + decode) | 48 | 32 | Fashion-MNIST test images |
//! | `stdp-784x400-b1`, `stdp-784x400-b16` | Poisson(f_max 20 Hz) → Linear(784→400, no bias, `plasticity: STDP()`, Norse's defaults) → LIF(v_th 0.2), forward with plasticity ([`stdp`]) | 350 | 1, 16 | Fashion-MNIST test images in [0, 1] |
//!
//! Each config is compiled once (lowering + passes + backend compile, the
//! "compile" time), run `warmup` times untimed, then `runs` times with the
//! wall clock around `forward` only (or a training step: forward, backward
//! and Adam on the host); the median is reported. On the CPU backend a run
//! is `Executable::run_f32`: inputs prepared once in f32, weights loaded
//! once (and again after each optimizer step, inside the timing), outputs
//! read in place as f32 — as Norse's tensors are; other targets go through
//! host tensors.
//!
//! How the figures are counted (as `scripts/norse/results-cpu.md` counts
//! Norse's):
//!
//! - neuron-updates/s = neurons · T · batch / time, where the neurons are
//!   the network's LIF/LI/Izhikevich neurons, not the encoder's: `tutorial` 110
//!   (100 LIF + 10 LI), `lif-layer-n` and `izh-layer-n` n, `convnet` 15 230;
//! - GFLOP/s = 2 · dense MACs · T · batch / time, every synapse counted at
//!   every step whether its input spiked or not (PyTorch computes them
//!   densely): `tutorial` 784·100 + 100·100 + 100·10, `lif-layer-n` n²,
//!   `izh-layer-n` n², `convnet` 2 293 000 per step and sample, `stdp-*`
//!   3 · 784·400 (the product and STDP's two outer products; the
//!   elementwise weight update is not counted);
//! - fraction of peak = GFLOP/s / the machine's sgemm peak, measured once
//!   per run (see [`machine`]);
//! - fraction of bandwidth = the config's compulsory memory traffic / time
//!   / the machine's measured DRAM bandwidth. The traffic is estimated from
//!   the lowered IR ([`traffic_bytes`]): every parameter read once per
//!   forward, the inputs read once, and every layer's output (the encoder's
//!   spikes included, reshapes excluded) written once and read once per
//!   step and sample, 4 bytes per value. State that a fused kernel keeps in
//!   registers moves no bytes per step and is not counted. It is a lower
//!   bound: a backend that spills more moves more.
//! - input density (`tutorial`, `convnet`, `stdp-*`): the fraction of ones
//!   among the encoder's spikes on this batch, computed with the encoder's
//!   equations (for the Poisson encoder, its expected value);
//!   the `sparsify` pass is given it (as `snnc run --profile` would), so an
//!   event-driven product is chosen where it pays on this data.

pub mod gemm;
pub mod kernels;
mod load;
pub mod machine;
pub mod stdp;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use snnc_frontend::dsl::{Encoder, Layer, Net, Network};
use snnc_frontend::neuron::zoo::IzhikevichPreset;
use snnc_frontend::{LayerSummary, LowerOptions};
use snnc_ir::{Dim, Module};
use snnc_runtime::{ElemType, Tensor, Weights};

use crate::driver::{self, Compiled, Error, Target};

pub use machine::Machine;

/// Where Debian's `dataset-fashion-mnist` puts the data set.
pub const DEFAULT_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// The test images inside the data folder.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
/// The seed tutorial's pixel normalisation (after dividing by 255).
pub const FMNIST_MEAN: f64 = 0.2860;
pub const FMNIST_STD: f64 = 0.3530;

/// Timing attempts per config when other processes disturb the timing.
const ATTEMPTS: usize = 3;
/// CPU use of other processes (in cores) below which timing counts as
/// undisturbed (norse_cpu.py's threshold).
const QUIET_CORES: f64 = 0.15;

/// The config names, in the order they run.
pub const NAMES: [&str; 8] = [
    "tutorial",
    "lif-layer-512",
    "lif-layer-4096",
    "convnet",
    "izh-layer-512",
    "izh-layer-4096",
    "stdp-784x400-b1",
    "stdp-784x400-b16",
];

/// The factor on the standard normal input of `izh-layer-n` (on both
/// sides: `norse_cpu.py`'s `bench_B` scales its input the same way).
/// PyTorch's `Linear` weights are uniform in ±1/√n, so a current's standard
/// deviation is 30/√3 ≈ 17 — Izhikevich's currents are O(10) (tonic
/// spiking is shown at 10) — and the tonic-spiking neurons fire at about
/// 0.44 % of their steps (LIF in `lif-layer-n`: 0.49 %), nearly all of
/// them at least once. With the unscaled input no Izhikevich neuron spikes.
pub const IZH_INPUT_SCALE: f64 = 30.0;

/// Norse's best medians of the `izh-layer-n` configs (forward; fwd+bwd)
/// on this machine kind, in seconds (BENCHMARKS.md, "Izhikevich neurons in
/// config B").
const NORSE_IZH_512_S: f64 = 93.0e-3;
const NORSE_IZH_4096_S: f64 = 1.7977;
const NORSE_IZH_512_TRAIN_S: f64 = 614.0e-3;
const NORSE_IZH_4096_TRAIN_S: f64 = 14.0;

/// `snnc bench`: time the benchmark networks forward.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The configs to run (default: all): tutorial, lif-layer-512, lif-layer-4096, convnet,
    /// izh-layer-512, izh-layer-4096, stdp-784x400-b1, stdp-784x400-b16.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Where to run them.
    #[arg(long, value_enum, default_value = "cpu")]
    pub target: Target,
    /// Print one JSON object per config and line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Timed runs per config; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// For tests: batch 2, 1 timed run, no warm-up, and small machine
    /// measurements. The times mean nothing.
    #[arg(long)]
    pub quick: bool,
    /// The machine's float32 GEMM peak in GFLOP/s, instead of measuring it
    /// (e.g. to profile the configs alone, or to compare runs on one scale).
    #[arg(long, value_name = "GFLOPS")]
    pub peak_gflops: Option<f64>,
    /// The machine's memory bandwidth in GB/s, instead of measuring it.
    #[arg(long, value_name = "GBS")]
    pub bandwidth_gbs: Option<f64>,
    /// The folder holding the Fashion-MNIST IDX files (`t10k-images-idx3-ubyte.gz`).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// What to time: the forward pass, a training step (forward + backward + Adam), or both.
    #[arg(long, value_enum, default_value = "both")]
    pub mode: Mode,
}

/// What feeds a config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputKind {
    /// The first `batch` Fashion-MNIST test images, normalised as the
    /// seed tutorial does, into the network's encoder.
    FashionMnist,
    /// Standard normal currents `[T, B, n]`, seeded, times `scale`.
    Randn { seed: u64, scale: f64 },
    /// The first `batch` Fashion-MNIST test images as pixels / 255 in
    /// [0, 1] (a rate encoder's intensities).
    FashionMnistUnit,
}

/// One benchmark configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: &'static str,
    pub network: Network,
    pub batch: usize,
    /// Neurons counted for neuron-updates/s (the encoder's are not).
    pub neurons: u64,
    /// Dense multiply-adds per step and sample.
    pub synapses_per_step: u64,
    pub input: InputKind,
    /// Norse 1.1.0's best forward median on this machine kind
    /// (`scripts/norse/results-cpu.md`), in seconds: the goal.
    pub norse_best_s: f64,
    /// The matching config key of `norse_cpu.py`.
    pub norse_key: &'static str,
    /// Norse's best forward+backward (training step) median, in seconds.
    pub norse_train_s: f64,
    /// Its key in `norse_cpu.py`.
    pub norse_train_key: &'static str,
    /// Whether a training step exists: a plastic network is trained by
    /// its rule only, so its configs time the forward alone.
    pub trainable: bool,
}

/// What a benchmark times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The forward pass.
    Fwd,
    /// A training step: forward, the derived backward pass, and an Adam
    /// step on the host.
    Fwdbwd,
    /// Both, one after the other.
    Both,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Fwd => "fwd",
            Mode::Fwdbwd => "fwdbwd",
            Mode::Both => "both",
        }
    }
}

fn parse_example(name: &str, text: &str) -> Network {
    snnc_frontend::parse_network(text, &format!("examples/{name}.ron")).expect("the examples parse")
}

/// `Linear(n→n, bias)` then LIF, T = 500, output spikes.
pub fn lif_layer(n: u32) -> Network {
    Net::new(format!("lif-layer-{n}"), 500)
        .input([n])
        .layer(Layer::linear(n).named("fc"))
        .layer(Layer::lif().named("lif"))
        .build()
        .expect("the lif-layer network is valid")
}

/// `Linear(n→n, bias)` then Izhikevich (`tonic_spiking`), T = 500, output spikes.
pub fn izh_layer(n: u32) -> Network {
    Net::new(format!("izh-layer-{n}"), 500)
        .input([n])
        .layer(Layer::linear(n).named("fc"))
        .layer(Layer::izhikevich(IzhikevichPreset::TonicSpiking).named("izh"))
        .build()
        .expect("the izh-layer network is valid")
}

/// The config called `name`, if there is one.
pub fn config(name: &str) -> Option<Config> {
    let c = match name {
        "tutorial" => Config {
            name: "tutorial",
            network: parse_example("tutorial", include_str!("../examples/tutorial.ron")),
            batch: 256,
            neurons: 100 + 10,
            synapses_per_step: 784 * 100 + 100 * 100 + 100 * 10,
            input: InputKind::FashionMnist,
            norse_best_s: 22.6e-3,
            norse_key: "A_norse_forward_full(encoder+net)",
            norse_train_s: 42.3e-3,
            norse_train_key: "A_norse_train_step(fwd+bwd+Adam, full)",
            trainable: true,
        },
        "lif-layer-512" | "lif-layer-4096" => {
            let n: u32 = if name == "lif-layer-512" { 512 } else { 4096 };
            Config {
                name: if n == 512 { "lif-layer-512" } else { "lif-layer-4096" },
                network: lif_layer(n),
                batch: 16,
                neurons: u64::from(n),
                synapses_per_step: u64::from(n) * u64::from(n),
                input: InputKind::Randn { seed: 1, scale: 1.0 },
                norse_best_s: if n == 512 { 54.2e-3 } else { 1.4594 },
                norse_key: if n == 512 { "B_norse_LIF_n512_forward" } else { "B_norse_LIF_n4096_forward" },
                norse_train_s: if n == 512 { 314.5e-3 } else { 9.4078 },
                norse_train_key: if n == 512 { "B_norse_LIF_n512_fwd+bwd" } else { "B_norse_LIF_n4096_fwd+bwd" },
                trainable: true,
            }
        }
        "izh-layer-512" | "izh-layer-4096" => {
            let n: u32 = if name == "izh-layer-512" { 512 } else { 4096 };
            Config {
                name: if n == 512 { "izh-layer-512" } else { "izh-layer-4096" },
                network: izh_layer(n),
                batch: 16,
                neurons: u64::from(n),
                synapses_per_step: u64::from(n) * u64::from(n),
                input: InputKind::Randn { seed: 1, scale: IZH_INPUT_SCALE },
                norse_best_s: if n == 512 { NORSE_IZH_512_S } else { NORSE_IZH_4096_S },
                norse_key: if n == 512 {
                    "B_norse_Izhikevich_n512_forward"
                } else {
                    "B_norse_Izhikevich_n4096_forward"
                },
                norse_train_s: if n == 512 { NORSE_IZH_512_TRAIN_S } else { NORSE_IZH_4096_TRAIN_S },
                norse_train_key: if n == 512 {
                    "B_norse_Izhikevich_n512_fwd+bwd"
                } else {
                    "B_norse_Izhikevich_n4096_fwd+bwd"
                },
                trainable: true,
            }
        }
        "convnet" => Config {
            name: "convnet",
            network: parse_example("convnet", include_str!("../examples/convnet.ron")),
            batch: 32,
            neurons: 20 * 24 * 24 + 50 * 8 * 8 + 500 + 10,
            synapses_per_step: 20 * 24 * 24 * 25 + 50 * 8 * 8 * 20 * 25 + 800 * 500 + 500 * 10,
            input: InputKind::FashionMnist,
            norse_best_s: 149.6e-3,
            norse_key: "C_norse_convnet_forward(encoder+net)",
            norse_train_s: 348.3e-3,
            norse_train_key: "C_norse_convnet_fwd+bwd(encoder+net)",
            trainable: true,
        },
        "stdp-784x400-b1" => stdp::config(1),
        "stdp-784x400-b16" => stdp::config(16),
        _ => return None,
    };
    Some(c)
}

/// The result of one config.
#[derive(Clone, Debug)]
pub struct BenchResult {
    pub name: String,
    pub target: Target,
    /// `Fwd` or `Fwdbwd`.
    pub mode: Mode,
    pub steps: u32,
    pub batch: usize,
    pub compile_ms: f64,
    /// Every timed run, in seconds.
    pub times_s: Vec<f64>,
    pub median_s: f64,
    pub min_s: f64,
    pub neuron_updates_per_s: f64,
    pub gflops: f64,
    pub peak_fraction: f64,
    /// Compulsory memory traffic of one forward ([`traffic_bytes`]).
    pub bytes: u64,
    pub bandwidth_fraction: f64,
    /// Fraction of ones among the encoder's spikes, for image inputs.
    pub input_density: Option<f64>,
    pub norse_best_s: f64,
    /// The CPU time other processes took during the timed runs, in cores
    /// (Linux; `None` elsewhere).
    pub foreign_cores: Option<f64>,
    /// The fused kernels of the compiled module's step loops and their
    /// bytes per neuron-step ([`kernels::step_kernels`]).
    pub kernels: Vec<kernels::KernelTraffic>,
}

impl BenchResult {
    /// The JSON line of `--json`: the fields other tools compare on
    /// (`name`, `target`, `mode`, `median_s`, `neuron_updates_per_s`,
    /// `gflops`), then extras.
    pub fn to_json(&self, machine: &Machine, quick: bool) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "target": self.target.name(),
            "mode": self.mode.name(),
            "median_s": self.median_s,
            "neuron_updates_per_s": self.neuron_updates_per_s,
            "gflops": self.gflops,
            "min_s": self.min_s,
            "runs_s": self.times_s,
            "steps": self.steps,
            "batch": self.batch,
            "compile_ms": self.compile_ms,
            "peak_fraction": self.peak_fraction,
            "bandwidth_fraction": self.bandwidth_fraction,
            "bytes_estimate": self.bytes,
            "input_density": self.input_density,
            "machine_peak_gflops": machine.peak_gflops,
            "machine_bandwidth_gbs": machine.bandwidth_gbs,
            "norse_best_s": self.norse_best_s,
            "foreign_load_cores": self.foreign_cores,
            "step_kernels": self.kernels.iter().map(|k| serde_json::json!({
                "name": k.name,
                "reverse": k.reverse,
                "ops": k.ops,
                "seq_reads": k.seq_reads,
                "seq_writes": k.seq_writes,
                "states": k.states,
                "bytes_per_neuron_step": k.bytes(),
            })).collect::<Vec<_>>(),
            "quick": quick,
        })
    }
}

/// A network compiled for a target, ready to run forward. This is the one
/// place that knows how a target compiles and runs a network. It does what
/// [`crate::api::compile`] does, and also hands `sparsify` the spike
/// densities measured on the benchmark's data.
struct Runner {
    /// The optimised module (its parameters give the default weights).
    module: Module,
    weights: Weights,
    backend: driver::ModuleRunner,
    /// For a training step: the seed inputs, the gradient outputs by
    /// parameter, and the optimizer.
    train: Option<TrainStep>,
    /// The CPU backend's inputs (seeds included) in f32, made once by
    /// [`Runner::prepare`]: a CPU run takes f32 inputs and hands out f32
    /// outputs without host-tensor conversions, as Norse's tensors are
    /// used where they are.
    f32_inputs: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

struct TrainStep {
    seeds: BTreeMap<String, Tensor>,
    grads: Vec<(String, String)>,
    optimizer: snnc_runtime::Optimizer,
}

impl Runner {
    /// Lowers, optimises and compiles `net` for `target` (what the compile
    /// time covers), with the measured spike densities for `sparsify`.
    fn compile(net: &Network, target: Target, densities: &BTreeMap<String, f64>) -> Result<Runner, Error> {
        target.ensure_available()?;
        let mut compiled = driver::compile(net, &format!("bench `{}`", net.name), &LowerOptions::default())?;
        let mut opts = driver::pass_options(&compiled, None)?;
        opts.densities.extend(densities.iter().map(|(k, v)| (k.clone(), *v)));
        let pipeline = driver::pipeline(target, None, &opts)?;
        driver::optimize(&mut compiled, &pipeline, &mut |_| {})?;
        Self::with_backend(compiled, target, None)
    }

    /// Lowers `net` with its derived backward pass, seeded by the loss of
    /// the benchmark: the NLL of the readout's log-probabilities (labels
    /// `b mod classes`) for a classifier, the sum of the output spikes
    /// otherwise; compiles it for `target` with an Adam optimizer.
    fn compile_train(
        net: &Network,
        target: Target,
        densities: &BTreeMap<String, f64>,
        batch: usize,
    ) -> Result<Runner, Error> {
        target.ensure_available()?;
        let mut compiled = driver::compile(net, &format!("bench `{}`", net.name), &LowerOptions::default())?;
        let mut opts = driver::pass_options(&compiled, None)?;
        opts.densities.extend(densities.iter().map(|(k, v)| (k.clone(), *v)));
        let seed_output =
            if compiled.module.outputs.iter().any(|o| o.name == "readout") { "readout" } else { "output" };
        let grad = snnc_passes::AutodiffOptions { seeds: vec![seed_output.into()], inputs: Vec::new() };
        let (info, report) = driver::differentiate(&mut compiled.module, target, None, &opts, &grad)?;
        compiled.info = info;
        let mut seeds = BTreeMap::new();
        for (output, input) in &report.seeds {
            let value = compiled.module.outputs.iter().find(|o| &o.name == output).map(|o| o.value);
            let ty = &compiled.module.nodes[value.ok_or_else(|| Error::Internal("seeded output lost".into()))?].ty;
            let mut shape = ty.shape.resolve(batch);
            if ty.seq {
                shape.insert(0, compiled.module.steps as usize);
            }
            let seed = if output == "readout" {
                let classes = shape.last().copied().unwrap_or(1);
                let labels: Vec<u8> = (0..batch).map(|b| (b % classes) as u8).collect();
                snnc_runtime::nll_seed(&labels, batch, classes, snnc_runtime::ElemType::F32)
                    .map_err(|e| Error::Internal(e.to_string()))?
            } else {
                let n = shape.iter().product();
                Tensor { shape, dtype: snnc_runtime::ElemType::F32, data: vec![1.0; n] }
            };
            seeds.insert(input.clone(), seed);
        }
        let optimizer = snnc_runtime::Optimizer::adam(snnc_runtime::Adam { lr: 2e-3, ..Default::default() })
            .map_err(|e| Error::Internal(e.to_string()))?;
        let train = TrainStep { seeds, grads: report.gradients, optimizer };
        Self::with_backend(compiled, target, Some(train))
    }

    fn with_backend(compiled: Compiled, target: Target, train: Option<TrainStep>) -> Result<Runner, Error> {
        let module = compiled.module.clone();
        let backend = driver::ModuleRunner::new(compiled.module, compiled.info, target)?;
        Ok(Runner { module, weights: Weights::new(), backend, train, f32_inputs: BTreeMap::new() })
    }

    /// Untimed set-up before the runs: the CPU backend's f32 inputs and
    /// weights.
    fn prepare(&mut self, inputs: &BTreeMap<String, Tensor>) -> Result<(), Error> {
        let driver::ModuleRunner::Cpu(exe) = &self.backend else { return Ok(()) };
        let seeds = self.train.iter().flat_map(|t| t.seeds.iter());
        self.f32_inputs = inputs
            .iter()
            .chain(seeds)
            .map(|(k, t)| (k.clone(), (t.shape.clone(), t.data.iter().map(|&x| x as f32).collect())))
            .collect();
        exe.load_weights(&self.weights)?;
        Ok(())
    }

    /// One forward pass, or one training step (forward, backward and the
    /// optimizer step) for a training runner. On the CPU backend the
    /// outputs stay f32 (each is touched, as a caller would); the
    /// gradients become host tensors for the optimizer, whose new weights
    /// are loaded for the next run.
    fn step(&mut self, inputs: &BTreeMap<String, Tensor>) -> Result<(), Error> {
        if let driver::ModuleRunner::Cpu(exe) = &self.backend {
            let views: BTreeMap<String, snnc_cpu::F32View<'_>> = self
                .f32_inputs
                .iter()
                .map(|(k, (shape, data))| (k.clone(), snnc_cpu::F32View { shape, data }))
                .collect();
            let names = self.train.as_ref().map(|t| t.grads.clone()).unwrap_or_default();
            let grads = exe.run_f32(&views, |out| {
                for name in out.names() {
                    std::hint::black_box(out.get(name).and_then(|v| v.data.first().copied()));
                }
                let mut grads = BTreeMap::new();
                for (param, output) in &names {
                    if let Some(g) = out.get(output) {
                        let data = g.data.iter().map(|&x| f64::from(x)).collect();
                        grads.insert(param.clone(), Tensor { shape: g.shape.to_vec(), dtype: ElemType::F32, data });
                    }
                }
                grads
            })?;
            if let Some(train) = &mut self.train {
                train.optimizer.step(&mut self.weights, &grads).map_err(|e| Error::Internal(e.to_string()))?;
                exe.load_weights(&self.weights)?;
            }
            return Ok(());
        }
        let Some(train) = &self.train else {
            std::hint::black_box(self.forward(inputs)?);
            return Ok(());
        };
        let mut all = inputs.clone();
        all.extend(train.seeds.iter().map(|(k, v)| (k.clone(), v.clone())));
        let names = train.grads.clone();
        let mut out = self.forward(&all)?;
        let mut grads = BTreeMap::new();
        for (param, output) in &names {
            if let Some(g) = out.remove(output) {
                grads.insert(param.clone(), g);
            }
        }
        let train = self.train.as_mut().expect("checked above");
        train.optimizer.step(&mut self.weights, &grads).map_err(|e| Error::Internal(e.to_string()))?;
        std::hint::black_box(out);
        Ok(())
    }

    /// Default weights, as PyTorch/Norse initialise them (not timed).
    fn init_weights(&mut self, seed: u64) {
        self.weights = snnc_runtime::init_weights(&self.module, seed);
    }

    /// One forward pass from the initial state; the module's outputs.
    fn forward(&mut self, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>, Error> {
        self.backend.run(&self.weights, inputs)
    }
}

/// The compulsory memory traffic of one forward pass in bytes, at 4 bytes
/// a value: every parameter once, every input once, and every layer's
/// output written and read once per step and sample (reshapes move
/// nothing). `layers` are the lowering's summaries (the encoder first).
pub fn traffic_bytes(module: &Module, layers: &[LayerSummary], batch: usize) -> u64 {
    let params: u64 = module.params.iter().map(|(_, p)| p.shape.fixed_elements()).sum();
    let inputs: u64 = module
        .inputs
        .iter()
        .map(|(_, i)| {
            let steps = if i.ty.seq { u64::from(module.steps) } else { 1 };
            i.ty.shape.fixed_elements() * steps * batch as u64
        })
        .sum();
    let per_step: u64 = layers
        .iter()
        .filter(|l| l.kind != "Flatten")
        .map(|l| l.shape.iter().map(|&d| u64::from(d)).product::<u64>())
        .sum();
    let activations = 2 * per_step * u64::from(module.steps) * batch as u64;
    4 * (params + inputs + activations)
}

/// The first `batch` Fashion-MNIST test images as `[batch, 1, 28, 28]`,
/// pixels / 255 normalised with the tutorial's mean and std.
pub fn fashion_mnist_batch(dir: &Path, batch: usize) -> Result<Tensor, Error> {
    let path = dir.join(TEST_IMAGES);
    if !path.is_file() {
        return Err(Error::Environment(format!(
            "{}: the Fashion-MNIST test images are missing; install the data set with \
             `apt-get install dataset-fashion-mnist` (or give --data DIR, a folder holding {TEST_IMAGES})",
            path.display()
        )));
    }
    let (n, rows, cols, pixels) =
        snnc_runtime::idx::read_idx_images(&path).map_err(|e| Error::Environment(e.to_string()))?;
    if (rows, cols) != (28, 28) || n < batch {
        return Err(Error::Environment(format!(
            "{}: expected at least {batch} images of 28x28, found {n} of {rows}x{cols}",
            path.display()
        )));
    }
    let data = pixels[..batch * 28 * 28].iter().map(|&p| (f64::from(p) / 255.0 - FMNIST_MEAN) / FMNIST_STD).collect();
    Ok(Tensor::new(vec![batch, 1, 28, 28], ElemType::F32, data).expect("the shape fits the data"))
}

/// Standard normal values `[T, batch, ...shape]` from a seeded stream, as f32.
pub fn randn(shape: Vec<usize>, seed: u64) -> Tensor {
    let mut rng = snnc_ir::rng::Stream::new(seed);
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.next_normal()).collect();
    Tensor::new(shape, ElemType::F32, data).expect("the shape fits the data")
}

/// The fraction of ones among the spikes of `net`'s constant-current
/// encoder on `images` over the network's steps (Norse's
/// `lif_current_encoder`, in f32), or `None` without such an encoder.
pub fn encoder_density(net: &Network, images: &Tensor) -> Option<f64> {
    let Some(Encoder::ConstantCurrent { p }) = &net.encoder else { return None };
    // Per-neuron parameters: no estimate (the density is a hint).
    let k = (net.dt * p.tau_mem_inv.scalar()?) as f32;
    let (v_leak, v_th, v_reset) = (p.v_leak.scalar()? as f32, p.v_th.scalar()? as f32, p.v_reset.scalar()? as f32);
    let mut spikes = 0u64;
    for &x in &images.data {
        let x = x as f32;
        let mut v = 0.0f32;
        for _ in 0..net.steps {
            v += k * ((v_leak - v) + x);
            if v > v_th {
                spikes += 1;
                v = v_reset;
            }
        }
    }
    let total = images.data.len() as u64 * u64::from(net.steps);
    (total > 0).then(|| spikes as f64 / total as f64)
}

/// The inputs of a config, and the encoder's spike density for images.
fn make_inputs(
    config: &Config,
    module: &Module,
    batch: usize,
    data: &Path,
) -> Result<(BTreeMap<String, Tensor>, Option<f64>), Error> {
    let mut inputs = BTreeMap::new();
    let mut density = None;
    for (_, input) in module.inputs.iter() {
        let t = match config.input {
            InputKind::FashionMnist => {
                let images = fashion_mnist_batch(data, batch)?;
                density = encoder_density(&config.network, &images);
                images
            }
            InputKind::FashionMnistUnit => {
                let t = stdp::unit_images(data, batch)?;
                density = stdp::poisson_density(&config.network, &t);
                t
            }
            InputKind::Randn { seed, scale } => {
                let mut shape: Vec<usize> = input
                    .ty
                    .shape
                    .0
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => *n as usize,
                        Dim::Batch => batch,
                    })
                    .collect();
                if input.ty.seq {
                    shape.insert(0, module.steps as usize);
                }
                let mut t = randn(shape, seed);
                if scale != 1.0 {
                    t.data.iter_mut().for_each(|x| *x = f64::from((*x * scale) as f32));
                }
                t
            }
        };
        inputs.insert(input.name.clone(), t);
    }
    Ok((inputs, density))
}

/// Runs one config: compile, warm up, time.
pub fn run_config(
    config: &Config,
    args: &BenchArgs,
    mode: Mode,
    machine: &Machine,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchResult, Error> {
    let batch = if args.quick { 2 } else { config.batch };
    let (runs, warmup) = if args.quick { (1, 0) } else { (args.runs.max(1), args.warmup) };
    // The inputs first: the measured density guides `sparsify`.
    let lowered = driver::compile(&config.network, config.name, &LowerOptions::default())?;
    let (inputs, density) = make_inputs(config, &lowered.module, batch, &args.data)?;
    let bytes = traffic_bytes(&lowered.module, &lowered.layers, batch);
    let densities: BTreeMap<String, f64> = density.map(|d| ("encoder.z".to_string(), d)).into_iter().collect();

    progress(&format!("{}: compiling ({}) for {}", config.name, mode.name(), args.target.name()));
    let t0 = Instant::now();
    let mut runner = if mode == Mode::Fwdbwd {
        Runner::compile_train(&config.network, args.target, &densities, batch)?
    } else {
        Runner::compile(&config.network, args.target, &densities)?
    };
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
    let step_kernels = kernels::step_kernels(&runner.module);
    runner.init_weights(config.network.seed);
    runner.prepare(&inputs)?;

    progress(&format!("{}: {warmup} warm-up + {runs} timed runs, batch {batch}", config.name));
    for _ in 0..warmup {
        runner.step(&inputs)?;
    }
    // As norse_cpu.py does: measure the CPU time other processes take
    // while timing, and re-time a disturbed config (keeping the least
    // disturbed attempt).
    let attempts = if args.quick { 1 } else { ATTEMPTS };
    let mut best: Option<(Vec<f64>, Option<f64>)> = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            runner.step(&inputs)?;
        }
        let load0 = load::snapshot();
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t0 = Instant::now();
            runner.step(&inputs)?;
            times.push(t0.elapsed().as_secs_f64());
        }
        let foreign = load::foreign_cores(load0, load::snapshot());
        let better = match (&best, foreign) {
            (None, _) => true,
            (Some((_, Some(b))), Some(f)) => f < *b,
            _ => false,
        };
        if better {
            best = Some((times, foreign));
        }
        match foreign {
            Some(f) if f > QUIET_CORES && attempt + 1 < attempts => {
                progress(&format!("{}: other processes took {f:.2} cores while timing; timing again", config.name))
            }
            _ => break,
        }
    }
    let (times_s, foreign_cores) = best.expect("at least one attempt");
    let median_s = median(&times_s);
    let min_s = times_s.iter().copied().fold(f64::INFINITY, f64::min);
    let steps = config.network.steps;
    let work = u64::from(steps) as f64 * batch as f64;
    // A training step does three products per synapse: forward, input
    // gradient and weight gradient (the usual 3× of the forward).
    let passes = if mode == Mode::Fwdbwd { 3.0 } else { 1.0 };
    let gflops = passes * 2.0 * config.synapses_per_step as f64 * work / median_s / 1e9;
    // A training step moves at least the forward's traffic twice (the
    // backward reads what the forward wrote) plus the gradients.
    let bytes = if mode == Mode::Fwdbwd { 2 * bytes } else { bytes };
    Ok(BenchResult {
        name: config.name.to_string(),
        target: args.target,
        mode,
        steps,
        batch,
        compile_ms,
        median_s,
        min_s,
        neuron_updates_per_s: config.neurons as f64 * work / median_s,
        gflops,
        peak_fraction: gflops / machine.peak_gflops,
        bytes,
        bandwidth_fraction: bytes as f64 / median_s / 1e9 / machine.bandwidth_gbs,
        input_density: density,
        norse_best_s: if mode == Mode::Fwdbwd { config.norse_train_s } else { config.norse_best_s },
        foreign_cores,
        times_s,
        kernels: step_kernels,
    })
}

/// The median (the mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// The configs named (all for none); an unknown name is the user's error.
pub fn select(names: &[String]) -> Result<Vec<Config>, Error> {
    if names.is_empty() {
        return Ok(NAMES.iter().map(|n| config(n).expect("NAMES are configs")).collect());
    }
    names
        .iter()
        .map(|n| {
            config(n)
                .ok_or_else(|| Error::User(format!("unknown benchmark `{n}`; the benchmarks are {}", NAMES.join(", "))))
        })
        .collect()
}

/// The machine's limits: measured, or as given on the command line.
fn machine_for(args: &BenchArgs, progress: &mut dyn FnMut(&str)) -> Result<Machine, Error> {
    for (flag, v) in [("--peak-gflops", args.peak_gflops), ("--bandwidth-gbs", args.bandwidth_gbs)] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            return Err(Error::User(format!("{flag} must be a positive number, not {v}")));
        }
    }
    let mut m = match (args.peak_gflops, args.bandwidth_gbs) {
        (Some(peak_gflops), Some(bandwidth_gbs)) => {
            Machine { peak_gflops, peak_how: String::new(), bandwidth_gbs, bandwidth_how: String::new() }
        }
        _ => {
            progress("measuring the machine's peak FLOP/s and memory bandwidth");
            machine::measure(args.quick)
        }
    };
    if let Some(p) = args.peak_gflops {
        (m.peak_gflops, m.peak_how) = (p, "given by --peak-gflops".into());
    }
    if let Some(b) = args.bandwidth_gbs {
        (m.bandwidth_gbs, m.bandwidth_how) = (b, "given by --bandwidth-gbs".into());
    }
    Ok(m)
}

/// `snnc bench`.
pub fn bench_command(out: &mut impl Write, args: &BenchArgs) -> Result<(), Error> {
    let configs = select(&args.names)?;
    if args.runs == 0 {
        return Err(Error::User("--runs must be at least 1".into()));
    }
    args.target.ensure_available()?;
    // Fail early, before the machine measurements, when the data is missing.
    if configs.iter().any(|c| matches!(c.input, InputKind::FashionMnist | InputKind::FashionMnistUnit)) {
        fashion_mnist_batch(&args.data, 1)?;
    }
    let mut err = std::io::stderr();
    let mut progress = |msg: &str| {
        let _ = writeln!(err, "bench: {msg}");
    };
    let machine = machine_for(args, &mut progress)?;
    if !args.json {
        let (runs, warmup) = if args.quick { (1, 0) } else { (args.runs, args.warmup) };
        let _ = writeln!(
            out,
            "snnc bench: target {}, {}, {warmup} warm-up + median of {runs} run(s){}",
            args.target.name(),
            match args.mode {
                Mode::Fwd => "forward",
                Mode::Fwdbwd => "training step (forward + backward + Adam)",
                Mode::Both => "forward, and training step (forward + backward + Adam)",
            },
            if args.quick { " (--quick: batch 2, times mean nothing)" } else { "" }
        );
        let _ = writeln!(out, "peak:      {:.1} GFLOP/s ({})", machine.peak_gflops, machine.peak_how);
        let _ = writeln!(out, "bandwidth: {:.1} GB/s ({})", machine.bandwidth_gbs, machine.bandwidth_how);
        let _ = writeln!(
            out,
            "{:<23} {:>4} {:>5} {:>10} {:>11} {:>10} {:>12} {:>8} {:>6} {:>6} {:>8} {:>10} {:>7} {:>5}",
            "name",
            "T",
            "batch",
            "compile ms",
            "median ms",
            "min ms",
            "neuron-upd/s",
            "GFLOP/s",
            "%peak",
            "%bw",
            "in dens.",
            "Norse ms",
            "speedup",
            "load"
        );
    }
    let modes: &[Mode] = match args.mode {
        Mode::Both => &[Mode::Fwd, Mode::Fwdbwd],
        Mode::Fwd => &[Mode::Fwd],
        Mode::Fwdbwd => &[Mode::Fwdbwd],
    };
    for (config, &mode) in configs.iter().flat_map(|c| modes.iter().map(move |m| (c, m))) {
        if mode == Mode::Fwdbwd && !config.trainable {
            progress(&format!(
                "{}: no training step (a plastic network learns by its rule); forward only",
                config.name
            ));
            continue;
        }
        let r = run_config(config, args, mode, &machine, &mut progress)?;
        if args.json {
            let _ = writeln!(out, "{}", r.to_json(&machine, args.quick));
        } else {
            let _ = writeln!(
                out,
                "{:<23} {:>4} {:>5} {:>10.1} {:>11.3} {:>10.3} {:>12.3e} {:>8.2} {:>6.1} {:>6.1} {:>8} {:>10.1} {:>7} {:>5}",
                if mode == Mode::Fwdbwd { format!("{} fwd+bwd", r.name) } else { r.name.clone() },
                r.steps,
                r.batch,
                r.compile_ms,
                r.median_s * 1e3,
                r.min_s * 1e3,
                r.neuron_updates_per_s,
                r.gflops,
                100.0 * r.peak_fraction,
                100.0 * r.bandwidth_fraction,
                r.input_density.map_or("-".to_string(), |d| format!("{d:.3}")),
                r.norse_best_s * 1e3,
                if args.quick { "-".to_string() } else { format!("{:.2}x", r.norse_best_s / r.median_s) },
                r.foreign_cores.map_or("-".to_string(), |f| format!("{f:.2}"))
            );
            if !r.kernels.is_empty() {
                let list: Vec<String> = r
                    .kernels
                    .iter()
                    .map(|k| {
                        format!(
                            "{}{} ({} ops, {} B/neuron-step)",
                            k.name,
                            if k.reverse { " reverse" } else { "" },
                            k.ops,
                            k.bytes()
                        )
                    })
                    .collect();
                let _ = writeln!(out, "  step-loop kernels: {}", list.join(", "));
            }
        }
        let _ = out.flush();
    }
    if !args.json {
        let _ = writeln!(
            out,
            "Norse ms: Norse 1.1.0's best median on this machine kind (scripts/norse/results-cpu.md; fwd+bwd: \
             its training step, with Adam for `tutorial`); GFLOP/s of fwd+bwd count 3x the forward's products; \
             speedup = Norse / snnc; %bw counts compulsory traffic only (see `snnc::bench`); \
             load = other processes' CPU use while timing, in cores."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_a_config_that_lowers() {
        for name in NAMES {
            let c = config(name).unwrap();
            assert_eq!(c.name, name);
            let lowered = driver::compile(&c.network, name, &LowerOptions::default()).unwrap();
            assert_eq!(lowered.module.inputs.len(), 1, "{name}");
        }
        assert!(config("nope").is_none());
        assert!(select(&["nope".into()]).is_err());
        assert_eq!(select(&[]).unwrap().len(), NAMES.len());
    }

    #[test]
    fn counts_match_the_lowered_modules() {
        // The counts of results-cpu.md against the IR: trainable weights
        // of the products, and the neurons' state sizes.
        let c = config("lif-layer-512").unwrap();
        let lowered = driver::compile(&c.network, c.name, &LowerOptions::default()).unwrap();
        assert_eq!(lowered.module.parameter_count(), 512 * 512 + 512);
        let c = config("tutorial").unwrap();
        let lowered = driver::compile(&c.network, c.name, &LowerOptions::default()).unwrap();
        assert_eq!(lowered.module.parameter_count(), 784 * 100 + 100 * 100 + 100 * 10);
    }

    #[test]
    fn traffic_counts_parameters_inputs_and_activations() {
        let c = config("lif-layer-512").unwrap();
        let lowered = driver::compile(&c.network, c.name, &LowerOptions::default()).unwrap();
        let b = traffic_bytes(&lowered.module, &lowered.layers, 16);
        let n = 512u64;
        let want = 4 * (n * n + n + 500 * 16 * n + 2 * 2 * n * 500 * 16);
        assert_eq!(b, want);
    }

    #[test]
    fn randn_is_seeded_and_standard() {
        let a = randn(vec![4000], 1);
        assert_eq!(a, randn(vec![4000], 1));
        let mean = a.data.iter().sum::<f64>() / 4000.0;
        let var = a.data.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4000.0;
        assert!(mean.abs() < 0.1 && (var - 1.0).abs() < 0.1, "mean {mean} var {var}");
    }

    #[test]
    fn encoder_density_counts_spikes() {
        let net = config("tutorial").unwrap().network;
        // No current: no spike. A large current: a spike at most steps.
        let zero = Tensor::zeros(vec![1, 1, 2, 2], ElemType::F32);
        assert_eq!(encoder_density(&net, &zero), Some(0.0));
        let big = Tensor::new(vec![1, 1, 1, 1], ElemType::F32, vec![1000.0]).unwrap();
        assert!(encoder_density(&net, &big).unwrap() > 0.9);
        assert_eq!(encoder_density(&lif_layer(4), &big), None);
    }

    #[test]
    fn izhikevich_fuses_like_lif_forward_and_backward() {
        // One kernel per step loop: the forward's, and in the training
        // module the forward's and the backward's, each moving what LIF's
        // moves per neuron and step (the Izhikevich one computes more).
        let count = |m: &Module| m.nodes.iter().filter(|(_, n)| matches!(n.op, snnc_ir::Op::Fused(_))).count();
        let mut per_model = Vec::new();
        for name in ["lif-layer-512", "izh-layer-512"] {
            let c = config(name).unwrap();
            let fwd = Runner::compile(&c.network, Target::Cpu, &BTreeMap::new()).unwrap();
            let train = Runner::compile_train(&c.network, Target::Cpu, &BTreeMap::new(), 2).unwrap();
            assert_eq!((count(&fwd.module), count(&train.module)), (1, 2), "{name}");
            let (f, t) = (kernels::step_kernels(&fwd.module), kernels::step_kernels(&train.module));
            let bytes = |ks: &[kernels::KernelTraffic]| ks.iter().map(|k| (k.reverse, k.bytes())).collect::<Vec<_>>();
            // Forward: the current in, the spike out. Training: the
            // forward also writes both states' histories; the backward
            // reads them, the current and the spikes' gradient, and writes
            // the current's gradient.
            assert_eq!(bytes(&f), [(false, 8)], "{name}");
            assert_eq!(bytes(&t), [(false, 16), (true, 20)], "{name}");
            assert!(f.iter().chain(&t).all(|k| k.states == 2), "{name}: {f:?} {t:?}");
            per_model.push(f[0].ops);
        }
        assert!(per_model[1] > per_model[0], "Izhikevich's kernel computes more: {per_model:?}");
    }

    #[test]
    fn izh_input_is_scaled_randn() {
        let c = config("izh-layer-512").unwrap();
        let lowered = driver::compile(&c.network, c.name, &LowerOptions::default()).unwrap();
        let (inputs, density) = make_inputs(&c, &lowered.module, 2, Path::new("/nonexistent")).unwrap();
        assert_eq!(density, None);
        let x = inputs.values().next().unwrap();
        assert_eq!(x.shape, [500, 2, 512]);
        let plain = randn(vec![500, 2, 512], 1);
        for (a, b) in x.data.iter().zip(&plain.data) {
            assert_eq!(*a, f64::from((b * IZH_INPUT_SCALE) as f32));
        }
        assert_eq!(lowered.module.parameter_count(), 512 * 512 + 512);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn missing_data_is_an_environment_error() {
        let e = fashion_mnist_batch(Path::new("/nonexistent/snnc-data"), 1).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("apt-get install dataset-fashion-mnist"), "{e}");
    }
}
