//! The `snnc` command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use snnc::driver::{self, Compiled, Error, Target};
use snnc_frontend::LowerOptions;
use snnc_ir::Dtype;
use snnc_runtime::OptimizerConfig;
use snnc_runtime::Tensor;

/// snnc: a compiler for spiking neural networks with Norse's semantics.
#[derive(Parser, Debug)]
#[command(name = "snnc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    nir: NirArgs,
}

/// How a `.nir` network file is read (docs/nir.md); ignored for RON files.
#[derive(clap::Args, Debug)]
struct NirArgs {
    /// NIR files: the time step in seconds [default: the file's metadata `dt`, else 0.001 (0.0001
    /// with --nir-from snntorch)].
    #[arg(long, global = true, value_name = "SECONDS")]
    nir_dt: Option<f64>,
    /// NIR files: whose discretisation the neurons are read with: `spec` (NIR's equations, forward
    /// Euler), `norse` (Norse 1.1.0's cells) or `snntorch` (snnTorch 1.0.0's Leaky/Synaptic).
    #[arg(long, global = true, value_enum, default_value = "spec")]
    nir_from: NirFrom,
    /// NIR files: the number of time steps of the network [default: 100].
    #[arg(long, global = true, value_name = "N")]
    nir_steps: Option<u32>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum NirFrom {
    Spec,
    Norse,
    Snntorch,
}

/// The NIR import conventions of this invocation (set once in `main`).
static NIR_OPTIONS: std::sync::OnceLock<snnc_frontend::nir::NirOptions> = std::sync::OnceLock::new();
/// The weights of the `.nir` network file loaded last, used where no
/// `--weights` file is given.
static NIR_WEIGHTS: std::sync::Mutex<Option<snnc::nir_import::Imported>> = std::sync::Mutex::new(None);

#[derive(Subcommand, Debug)]
enum Command {
    /// Parse and validate a network; print its layers, shapes, parameters and state size.
    Check {
        /// The network description (RON).
        net: PathBuf,
    },
    /// Print the network's IR: as lowered, or after passes.
    ///
    /// Without --after, --passes or --time-passes this prints the lowered IR. With --passes (or
    /// --time-passes) it prints the IR after the whole pipeline; with --after PASS, after each run of
    /// that pass; with --after all, after every pass, each under a header line
    /// `// after PASS (TIME)` followed by the pass's notes.
    Ir {
        /// The network description (RON).
        net: PathBuf,
        /// Lower in f64 instead of f32.
        #[arg(long)]
        f64: bool,
        /// Print the IR after this pass of the pipeline, or after every pass (`all`).
        #[arg(long, value_name = "PASS|all")]
        after: Option<String>,
        /// The passes to run, comma-separated, e.g. `cse,dce` or `time-batch,unroll=8`;
        /// `none` for none. Default: the target's default pipeline.
        #[arg(long, value_name = "a,b,c")]
        passes: Option<String>,
        /// Print the time each pass takes to stderr.
        #[arg(long)]
        time_passes: bool,
        /// A recording of `snnc run --record` (.json or .npz): each spike trace's measured density
        /// guides `sparsify`.
        #[arg(long, value_name = "REC.json")]
        profile: Option<PathBuf>,
        /// Whose default pipeline to run.
        #[arg(long, value_enum, default_value = "interp")]
        target: Target,
    },
    /// Compile a network for a target: print (or write to -o DIR) the optimised IR, the
    /// CLIF of every fused kernel (cpu), or the PTX module and its launch manifest (cuda; no GPU
    /// needed).
    Compile {
        /// The network description (RON).
        net: PathBuf,
        /// The target to compile for.
        #[arg(long, value_enum, default_value = "cpu")]
        target: Target,
        /// What to emit: the optimised IR (`ir`), the Cranelift IR of every fused kernel (`clif`,
        /// cpu), or the PTX module (`ptx`, cuda). Default: `ptx` for cuda, `ir` otherwise.
        #[arg(long, value_enum)]
        emit: Option<Emit>,
        /// The GPU architecture of the PTX (`sm80`: Ampere, PTX ISA 7.0; `sm90`: Hopper, ISA 7.8).
        #[arg(long, value_enum, default_value = "sm80")]
        arch: ArchArg,
        /// Write the artifacts into this folder (created if missing) instead of stdout:
        /// `NET.ir`, one `NET.KERNEL.clif` per kernel, or `NET.ptx` and `NET.manifest.json`.
        #[arg(short = 'o', long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Include the backward pass derived by `autodiff` (seeded by every output's gradient,
        /// inputs `grad.OUTPUT`; outputs `grad.PARAM`).
        #[arg(long)]
        backward: bool,
    },
    /// Train a classifier on Fashion-MNIST, MNIST or your own data (--data FILE.npz: static
    /// samples, sequences or Tonic event recordings) with surrogate gradients (BPTT), as the Norse tutorial
    /// does: NLL of the log-probabilities (or --loss), Adam, seeded mini-batches; test accuracy after
    /// each epoch, `metrics.csv` and a checkpoint per epoch in the output folder.
    Train {
        /// The network description (RON): with an encoder for static samples (images), without
        /// one for sequences and event frames; a readout with one score per class (the count
        /// losses: a spiking last layer).
        net: PathBuf,
        /// The data set: `fashion-mnist` (normalised as the Norse Fashion-MNIST tutorial: mean
        /// 0.2860, std 0.3530), `mnist` (as the Norse MNIST tutorial: 0.1307, 0.3081), or a NumPy
        /// file `FILE.npz` holding x_train, y_train, x_test, y_test (or x, y with --test-split).
        /// x is float16/32/64 (used as float32) or uint8 (x/255, see --normalize); y is integer
        /// class labels [N]. A network with an encoder takes x [N, ...input] (static samples); one
        /// without takes sequences [N, T, ...input], T its steps. Event recordings as Tonic gives
        /// them (sensor_size [W, H, P] and one structured array x_train_0, x_train_1, ... per
        /// sample) are binned into T frames [P, H, W] as tonic.transforms.ToFrame(sensor_size,
        /// n_time_bins=T) does. The layouts: docs/training-data.md.
        #[arg(long, value_name = "NAME|FILE.npz", default_value = "fashion-mnist")]
        data: String,
        /// For a file of one set (x, y): the fraction F of its samples kept for testing, the LAST
        /// ceil(F*N) samples (not shuffled; shuffle the file first if its order matters). Refused
        /// for a file that holds both splits.
        #[arg(long, value_name = "F")]
        test_split: Option<f64>,
        /// For uint8 x in a file: use (x/255 - MEAN)/STD in float32, as torchvision's ToTensor()
        /// then Normalize((MEAN,), (STD,)) (default: x/255). Float x is used as it is.
        #[arg(long, value_name = "MEAN,STD", value_parser = parse_normalize)]
        normalize: Option<snnc_runtime::Normalize>,
        /// For the image sets: folder of the data set's four IDX files (`train-images-idx3-ubyte[.gz]`, ...), or of
        /// torchvision's download (its `MNIST/raw` or `FashionMNIST/raw` is searched). Default:
        /// Debian's /usr/share/datasets/fashion-mnist for Fashion-MNIST, the current folder for
        /// MNIST.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Number of epochs (in all, counting resumed ones).
        #[arg(long, default_value_t = 1)]
        epochs: u32,
        /// Mini-batch size.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Learning rate.
        #[arg(long, default_value_t = 0.002)]
        lr: f64,
        /// Multiply the learning rate by this factor after every epoch
        /// (PyTorch's `ExponentialLR` stepped once per epoch): epoch e
        /// trains with lr * lr_decay^(e-1).
        #[arg(long, value_name = "GAMMA", default_value_t = 1.0)]
        lr_decay: f64,
        /// The optimizer (PyTorch's defaults otherwise).
        #[arg(long, value_enum, default_value = "adam")]
        optimizer: OptimizerKind,
        /// SGD momentum.
        #[arg(long, default_value_t = 0.0)]
        momentum: f64,
        /// The loss: `nll` of the log-probabilities (the readout's own for MaxLogSoftmax, else
        /// log_softmax of the readout); snnTorch's `ce-count` (cross-entropy of the last layer's
        /// spike counts) or `mse-count` (squared error of the spike counts against
        /// int(T * --correct-rate) at the label and int(T * --incorrect-rate) elsewhere, divided by
        /// T); `mse` (squared error of the readout [B, K] against float targets y [N, K] of
        /// --data FILE.npz; the image data sets have none). The count losses need a spiking last layer; their accuracy is the
        /// class with the most spikes.
        #[arg(long, value_enum, default_value = "nll")]
        loss: LossKind,
        /// mse-count: the fraction of the T steps the label's neuron should spike [default: 1].
        #[arg(long, value_name = "RATE")]
        correct_rate: Option<f64>,
        /// mse-count: the fraction of the T steps the other neurons should spike [default: 0].
        #[arg(long, value_name = "RATE")]
        incorrect_rate: Option<f64>,
        /// Seed of the shuffling (the initial weights come from the network's `seed`).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to run it.
        #[arg(long, value_enum, default_value = "cpu")]
        target: Target,
        /// Output folder: metrics.csv, checkpoint.json, weights.json and weights.safetensors (both load
        /// with `snnc run --weights`).
        /// A folder that holds a run is refused unless --resume or --force says what to do with it;
        /// one training at a time writes to a folder.
        #[arg(long, value_name = "DIR", default_value = "train-out")]
        out: PathBuf,
        /// Continue from the checkpoint in --out. Every other setting must be the checkpoint's
        /// (network, --target, --batch, --optimizer, --lr, --momentum, --lr-decay, --seed, --limit,
        /// --test-limit, --loss and its rates); only --epochs may change, to train longer.
        #[arg(long)]
        resume: bool,
        /// Start a new run in --out even if it holds one, overwriting its checkpoint and metrics.
        #[arg(long, conflicts_with = "resume")]
        force: bool,
        /// Use only the first N training samples.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Evaluate on the first N test samples only.
        #[arg(long, value_name = "N")]
        test_limit: Option<usize>,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
    },
    /// Run a network on an input and print a summary of its output.
    Run {
        /// The network description (RON).
        net: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Print the weights a network expects (name, shape, dtype, trainable): the names and
    /// PyTorch layouts a `--weights` file must use.
    Weights {
        /// The network description (RON).
        net: PathBuf,
        /// Print a JSON object `{NAME: {"shape": [...], "dtype": "float32", "trainable": bool}}`.
        #[arg(long)]
        json: bool,
    },
    /// Import a NIR file (`.nir`, as written by Norse, snnTorch, Sinabs, Rockpool, Spyx, ...): write
    /// the equivalent RON network to -o NET.ron and its weights to NET.safetensors next to it
    /// (`snnc run NET.ron --weights NET.safetensors` runs it). The assumptions made are printed
    /// on stderr; see --nir-dt, --nir-from and docs/nir.md.
    Import {
        /// The NIR file.
        net: PathBuf,
        /// The RON network to write.
        #[arg(short, long, value_name = "NET.ron")]
        out: PathBuf,
    },
    /// Export a network (RON, or a .nir file) and its weights as a NIR file (HDF5, NIR 1.0.8's
    /// layout, readable by `nir.read`): the layers NIR can express, with snnc's step, reset and
    /// surrogate in the metadata, so that `snnc run NET.nir` runs the same network. A layer NIR
    /// has no node for (encoders, BatchNorm, MaxPool2d, LSNN, ...) is refused; see docs/nir.md.
    Export {
        /// The network (RON or .nir).
        net: PathBuf,
        /// The weights (safetensors, .pt state dict, JSON); default: a .nir input's own, else the
        /// network's seeded initialisation.
        #[arg(long, value_name = "W")]
        weights: Option<PathBuf>,
        /// The NIR file to write.
        #[arg(short, long, value_name = "NET.nir")]
        out: PathBuf,
    },
    /// Draw a recording (`run --record`) or training metrics (`train`) as SVG or PNG.
    Plot(snnc::plot::PlotArgs),
    /// Time the benchmark networks forward (median, neuron-updates/s, GFLOP/s, fraction of peak).
    Bench(snnc::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let producer = match cli.nir.nir_from {
        NirFrom::Spec => snnc_frontend::nir::Producer::Spec,
        NirFrom::Norse => snnc_frontend::nir::Producer::Norse,
        NirFrom::Snntorch => snnc_frontend::nir::Producer::Snntorch,
    };
    let _ = NIR_OPTIONS.set(snnc_frontend::nir::NirOptions { dt: cli.nir.nir_dt, producer, steps: cli.nir.nir_steps });
    let mut out = Stdout::new();
    let res = match cli.command {
        Command::Check { net } => check(&mut out, &net),
        Command::Ir { net, f64, after, passes, time_passes, profile, target } => {
            ir(&mut out, &net, IrArgs { f64, after, passes, time_passes, profile, target })
        }
        Command::Run { net, args } => run(&mut out, &net, args),
        Command::Compile { net, target, emit, arch, out_dir, backward } => {
            let emit = emit.unwrap_or(if target == Target::Cuda { Emit::Ptx } else { Emit::Ir });
            compile(&mut out, &net, target, emit, arch, out_dir.as_deref(), backward)
        }
        Command::Train {
            net,
            data,
            test_split,
            normalize,
            data_dir,
            epochs,
            batch,
            lr,
            lr_decay,
            optimizer,
            momentum,
            loss,
            correct_rate,
            incorrect_rate,
            seed,
            target,
            out: out_dir,
            resume,
            force,
            limit,
            test_limit,
            quiet,
        } => {
            let optimizer = match optimizer {
                OptimizerKind::Adam => OptimizerConfig::Adam(snnc_runtime::Adam { lr, ..Default::default() }),
                OptimizerKind::Sgd => OptimizerConfig::Sgd(snnc_runtime::Sgd { lr, momentum, ..Default::default() }),
            };
            let loss = match (loss, correct_rate, incorrect_rate) {
                (LossKind::MseCount, c, i) => Ok(snnc_runtime::Loss::MseCount {
                    correct_rate: c.unwrap_or(1.0),
                    incorrect_rate: i.unwrap_or(0.0),
                }),
                (other, None, None) => Ok(other.loss()),
                (other, _, _) => Err(Error::User(format!(
                    "--correct-rate and --incorrect-rate are the targets of --loss mse-count; --loss {} has none",
                    other.loss().name()
                ))),
            };
            let options = snnc_runtime::dataset::NpzOptions { test_split, normalize };
            let data = snnc::train::DataSource::parse(&data, data_dir, options);
            loss.and_then(|loss| Ok((loss, data?))).and_then(|(loss, data)| {
                let opts = snnc::train::TrainOptions {
                    epochs,
                    batch,
                    optimizer,
                    lr_decay,
                    seed,
                    target,
                    out: out_dir,
                    resume,
                    force,
                    limit,
                    test_limit,
                    data,
                    progress: !quiet,
                    loss,
                };
                train(&mut out, &net, &opts)
            })
        }
        Command::Weights { net, json } => weights(&mut out, &net, json),
        Command::Import { net, out: to } => import(&mut out, &net, &to),
        Command::Export { net, weights, out: to } => export(&mut out, &net, weights.as_deref(), &to),
        Command::Plot(args) => snnc::plot::plot_command(&mut out, &args),
        Command::Bench(args) => snnc::bench::bench_command(&mut out, &args),
    };
    let _ = out.flush();
    // An error of the command says more than one of standard output.
    let res = res.and_then(|()| match out.error.take() {
        Some(e) => Err(Error::Environment(format!("cannot write to standard output: {e}"))),
        None => Ok(()),
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code() as u8;
            // A failing stderr cannot be reported anywhere; the code still is.
            let mut err = std::io::stderr().lock();
            let _ = match e {
                Error::Diagnostic(text) => writeln!(err, "{text}"),
                e => writeln!(err, "error: {e}"),
            };
            ExitCode::from(code)
        }
    }
}

/// Standard output for the commands: it keeps the first write error instead
/// of returning it (commands print with `say!`, which ignores errors), and
/// `main` reports it as exit 3 once the command is done. A closed pipe
/// (`snnc ir net.ron | head`) is no error: the rest of the output is dropped
/// quietly.
struct Stdout {
    inner: std::io::StdoutLock<'static>,
    /// The first write error other than a closed pipe.
    error: Option<std::io::Error>,
    /// The reader has gone away.
    closed: bool,
}

impl Stdout {
    fn new() -> Stdout {
        Stdout { inner: std::io::stdout().lock(), error: None, closed: false }
    }

    /// Whether writes still go anywhere.
    fn open(&self) -> bool {
        !self.closed && self.error.is_none()
    }

    fn failed(&mut self, e: std::io::Error) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            self.closed = true;
        } else if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.open() {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed(e);
                Ok(buf.len())
            }
            written => written,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.open()
            && let Err(e) = self.inner.flush()
        {
            self.failed(e);
        }
        Ok(())
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn load(path: &Path, float: Dtype) -> Result<Compiled, Error> {
    let net = load_network(path)?;
    driver::compile(&net, &display(path), &LowerOptions { float, ..Default::default() })
}

/// Reads a network file and prints its warnings (what the check allows but
/// is likely a mistake) on stderr.
fn load_network(path: &Path) -> Result<snnc_frontend::Network, Error> {
    let net = if snnc::nir_import::is_nir(path) {
        let imported = import_nir(path)?;
        let net = imported.network.clone();
        *NIR_WEIGHTS.lock().unwrap_or_else(|e| e.into_inner()) = Some(imported);
        net
    } else {
        driver::load(path)?
    };
    let mut err = std::io::stderr().lock();
    for warning in snnc_frontend::check::network_warnings(&net) {
        let _ = writeln!(err, "{}: warning: {warning}", display(path));
    }
    Ok(net)
}

/// Writes a line to the command's output; a write error is kept by
/// [`Stdout`] and reported when the command ends.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Reads a `.nir` file with this invocation's conventions and prints the
/// assumptions made on stderr.
fn import_nir(path: &Path) -> Result<snnc::nir_import::Imported, Error> {
    let opts = NIR_OPTIONS.get().cloned().unwrap_or_default();
    let imported = snnc::nir_import::import(path, &opts)?;
    let mut err = std::io::stderr().lock();
    for a in &imported.assumptions {
        let _ = writeln!(err, "{}: assumed: {a}", display(path));
    }
    Ok(imported)
}

/// The weights of the `.nir` file loaded last, for `module` (None for a
/// RON network).
fn nir_file_weights(module: &snnc_ir::Module, path: &Path) -> Result<Option<snnc_runtime::Weights>, Error> {
    let guard = NIR_WEIGHTS.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some(imported) if snnc::nir_import::is_nir(path) => {
            Ok(Some(snnc::nir_import::module_weights(module, path, &imported.weights)?))
        }
        _ => Ok(None),
    }
}

/// `snnc import`.
fn import(out: &mut impl Write, path: &Path, to: &Path) -> Result<(), Error> {
    if !snnc::nir_import::is_nir(path) {
        return Err(Error::User(format!("{}: `snnc import` reads a NIR file (.nir)", display(path))));
    }
    let imported = import_nir(path)?;
    // The network must lower: the same check as `snnc check`.
    let c = driver::compile(&imported.network, &display(path), &LowerOptions::default())?;
    snnc::nir_import::module_weights(&c.module, path, &imported.weights)?;
    let wpath = snnc::nir_import::write_import(&imported, to)?;
    say!(
        out,
        "wrote {} ({} layers) and {} ({} tensors); run it with: snnc run {} --weights {}",
        display(to),
        imported.network.layers.len(),
        display(&wpath),
        imported.weights.len(),
        display(to),
        display(&wpath)
    );
    Ok(())
}

/// `snnc export`.
fn export(out: &mut impl Write, path: &Path, weights: Option<&Path>, to: &Path) -> Result<(), Error> {
    let c = load(path, Dtype::F64)?;
    let w = match weights {
        Some(w) => driver::read_weights_file(&c.module, w, &[])?,
        None => match nir_file_weights(&c.module, path)? {
            Some(w) => w,
            None => driver::init_weights(&c.module, c.network.seed)?,
        },
    };
    snnc::nir_export::write_export(&c.network, &w, path, to)?;
    say!(out, "wrote {} ({} layers); read it back with: snnc run {}", display(to), c.network.layers.len(), display(to));
    Ok(())
}

fn shape_str(shape: &[u32]) -> String {
    format!("[{}]", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

fn check(out: &mut impl Write, path: &Path) -> Result<(), Error> {
    let c = load(path, Dtype::F32)?;
    let net = &c.network;
    let m = &c.module;
    say!(out, "{}: ok", display(path));
    say!(
        out,
        "network `{}`: T = {} steps, dt = {} ms ({} ms in all), input {} per sample{}",
        net.name,
        net.steps,
        net.dt * 1e3,
        net.dt * 1e3 * f64::from(net.steps),
        shape_str(&net.input),
        if net.encoder.is_some() { " (static, encoded to spikes)" } else { " per step" }
    );
    // A graph shows each layer's inputs, in the order the layers run.
    let graph = snnc_frontend::graph::resolve(&net.layers).is_ok_and(|g| !g.is_chain());
    let inputs_head = if graph { "  inputs" } else { "" };
    say!(
        out,
        "{:<16} {:<16} {:<16} {:>12} {:>12}{inputs_head}",
        "layer",
        "kind",
        "output shape",
        "parameters",
        "state/sample"
    );
    let values = driver::layer_values(m);
    for l in &c.layers {
        let v = values.get(l.name.as_str()).copied().unwrap_or_default();
        let inputs = if graph { format!("  {}", l.inputs.join(", ")) } else { String::new() };
        say!(
            out,
            "{:<16} {:<16} {:<16} {:>12} {:>12}{inputs}",
            l.name,
            l.kind,
            shape_str(&l.shape),
            v.trainable,
            v.state
        );
    }
    say!(out, "readout: {:?}", net.readout);
    say!(
        out,
        "total: {} trainable parameters, {} state values per sample, {} IR nodes",
        m.parameter_count(),
        m.state_size_per_sample(),
        m.nodes.len()
    );
    Ok(())
}

struct IrArgs {
    f64: bool,
    after: Option<String>,
    passes: Option<String>,
    time_passes: bool,
    profile: Option<PathBuf>,
    target: Target,
}

fn millis(d: std::time::Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn ir(out: &mut impl Write, path: &Path, args: IrArgs) -> Result<(), Error> {
    let mut c = load(path, if args.f64 { Dtype::F64 } else { Dtype::F32 })?;
    if args.after.is_none() && args.passes.is_none() && !args.time_passes {
        let _ = write!(out, "{}", snnc_ir::print(&c.module));
        return Ok(());
    }
    let opts = driver::pass_options(&c, args.profile.as_deref())?;
    let pipeline = driver::pipeline(args.target, args.passes.as_deref(), &opts)?;
    let names = pipeline.names();
    if let Some(after) = args.after.as_deref().filter(|a| *a != "all") {
        if !snnc_passes::pass_names().contains(&after) {
            let valid = snnc_passes::pass_names().join(", ");
            return Err(Error::User(format!("--after: unknown pass `{after}`; the passes are {valid}, or `all`")));
        }
        if !names.contains(&after) {
            return Err(Error::User(format!(
                "--after: the pipeline has no `{after}` pass; it runs {}",
                if names.is_empty() { "no passes".to_string() } else { names.join(", ") }
            )));
        }
    }
    let mut dumps = String::new();
    let mut times = Vec::new();
    driver::optimize(&mut c, &pipeline, &mut |step| {
        times.push((step.pass, step.elapsed));
        let wanted = match args.after.as_deref() {
            Some("all") => true,
            Some(name) => name == step.pass,
            None => false,
        };
        if wanted {
            if !dumps.is_empty() {
                dumps.push('\n');
            }
            dumps.push_str(&format!("// after {} ({})\n", step.pass, millis(step.elapsed)));
            for note in &step.report.notes {
                dumps.push_str(&format!("//   {note}\n"));
            }
            dumps.push_str(&snnc_ir::print(step.module));
        }
    })?;
    if args.after.is_some() && !pipeline.is_empty() {
        let _ = write!(out, "{dumps}");
    } else {
        let _ = write!(out, "{}", snnc_ir::print(&c.module));
    }
    if args.time_passes {
        print_times(&times);
    }
    Ok(())
}

/// `--time-passes`: each pass's time, then the total, on stderr.
fn print_times(times: &[(&'static str, std::time::Duration)]) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "pass times:");
    for (pass, elapsed) in times {
        let _ = writeln!(err, "  {pass:<12} {:>12}", millis(*elapsed));
    }
    let total: std::time::Duration = times.iter().map(|(_, d)| *d).sum();
    let _ = writeln!(err, "  {:<12} {:>12}", "total", millis(total));
}

/// What `snnc compile` emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Emit {
    /// The optimised IR, in its text form.
    Ir,
    /// The Cranelift IR (CLIF) of every fused kernel.
    Clif,
    /// The PTX module (with `-o`: and its launch manifest).
    Ptx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ArchArg {
    Sm80,
    Sm90,
}

fn compile(
    out: &mut impl Write,
    path: &Path,
    target: Target,
    emit: Emit,
    arch: ArchArg,
    dir: Option<&Path>,
    backward: bool,
) -> Result<(), Error> {
    // Emitting PTX needs no GPU: only running it does.
    if target != Target::Cuda {
        target.ensure_available()?;
    }
    if target == Target::Interp {
        return Err(Error::User("--target interp: the interpreter runs IR as it is; compile for --target cpu".into()));
    }
    match (emit, target) {
        (Emit::Clif, Target::Cuda) => {
            return Err(Error::User(
                "--emit clif is the cpu backend's; use --emit ptx (or ir) with --target cuda".into(),
            ));
        }
        (Emit::Ptx, t) if t != Target::Cuda => {
            return Err(Error::User("--emit ptx needs --target cuda".into()));
        }
        _ => {}
    }
    let mut c = load(path, Dtype::F32)?;
    let opts = driver::pass_options(&c, None)?;
    if backward {
        let grad = snnc_passes::AutodiffOptions::default();
        let (info, _) = driver::differentiate(&mut c.module, target, None, &opts, &grad)?;
        c.info = info;
    } else {
        let pipeline = driver::pipeline(target, None, &opts)?;
        driver::optimize(&mut c, &pipeline, &mut |_| {})?;
    }
    let mut stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "net".into());
    // Files are named `STEM.KERNEL.clif`, a kernel by its layer (at most
    // 64 bytes, see `snnc_frontend::check::MAX_NAME_BYTES`): a stem of at
    // most 100 bytes keeps every name within the 255 bytes file systems allow.
    let mut end = stem.len().min(100);
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    stem.truncate(end);
    let files: Vec<(String, String)> = match emit {
        Emit::Ir => vec![(format!("{stem}.ir"), snnc_ir::print(&c.module))],
        Emit::Ptx => {
            let arch = match arch {
                ArchArg::Sm80 => snnc_cuda::Arch::Sm80,
                ArchArg::Sm90 => snnc_cuda::Arch::Sm90,
            };
            let art =
                snnc_cuda::emit(&c.module, &c.info, &snnc_cuda::CudaOptions { arch }).map_err(driver::cuda_error)?;
            let mut files = vec![(format!("{stem}.ptx"), art.ptx)];
            if dir.is_some() {
                let json = serde_json::to_string_pretty(&art.manifest)
                    .map_err(|e| Error::Internal(format!("the manifest does not serialise: {e}")))?;
                files.push((format!("{stem}.manifest.json"), json + "\n"));
            }
            files
        }
        Emit::Clif => snnc_cpu::emit_clif(&c.module, &c.info)?
            .into_iter()
            .map(|k| {
                let what = if k.whole_loop { ", the whole step loop" } else { ", one step" };
                (format!("{stem}.{}.clif", k.name), format!("; kernel {} ({}{what})\n{}", k.name, k.node, k.clif))
            })
            .collect(),
    };
    match dir {
        None => {
            for (i, (_, text)) in files.iter().enumerate() {
                if i > 0 {
                    say!(out, "");
                }
                let _ = write!(out, "{text}");
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::User(format!("{}: cannot create the folder: {e}", dir.display())))?;
            for (name, text) in &files {
                snnc_runtime::write_file(&dir.join(name), text.as_bytes())?;
            }
            say!(out, "wrote {} file(s) to {}", files.len(), dir.display());
        }
    }
    Ok(())
}

/// `--normalize MEAN,STD`.
fn parse_normalize(text: &str) -> Result<snnc_runtime::Normalize, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let numbers: Vec<Option<f32>> = parts.iter().map(|p| p.parse::<f32>().ok()).collect();
    match numbers[..] {
        [Some(mean), Some(std)] if mean.is_finite() && std.is_finite() && std != 0.0 => {
            Ok(snnc_runtime::Normalize { mean, std })
        }
        _ => Err(format!("`{text}` is not MEAN,STD: two finite numbers, STD not 0 (e.g. 0.5,0.25)")),
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LossKind {
    /// NLL of the log-probabilities.
    Nll,
    /// snnTorch's ce_count_loss.
    CeCount,
    /// snnTorch's mse_count_loss.
    MseCount,
    /// Squared error against float targets.
    Mse,
}

impl LossKind {
    /// The loss (mse-count with snnTorch's default rates).
    fn loss(self) -> snnc_runtime::Loss {
        match self {
            LossKind::Nll => snnc_runtime::Loss::Nll,
            LossKind::CeCount => snnc_runtime::Loss::CeCount,
            LossKind::MseCount => snnc_runtime::Loss::MseCount { correct_rate: 1.0, incorrect_rate: 0.0 },
            LossKind::Mse => snnc_runtime::Loss::Mse,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum OptimizerKind {
    Adam,
    Sgd,
}

fn train(out: &mut impl Write, path: &Path, opts: &snnc::train::TrainOptions) -> Result<(), Error> {
    let net = load_network(path)?;
    // The output folder first: a folder that cannot be written, or holds a
    // run the flags do not mention, is refused before anything is computed.
    let folder = snnc::train::RunFolder::open(&net.name, opts)?;
    let mut data = snnc::train::load(&opts.data, Some(&net))?;
    if let Some(n) = opts.limit {
        data = data.limit(n);
    }
    let tests = opts.test_limit.map_or(data.test.len(), |n| n.min(data.test.len()));
    // A network that cannot be trained is the file's problem: name it.
    let mut program =
        snnc::train::TrainProgram::for_data(&net, opts.target, data.kind, opts.loss).map_err(|e| match e {
            Error::User(m) if m.starts_with("network `") => Error::User(format!("{}: {m}", display(path))),
            e => e,
        })?;
    // A NIR file is trained from its own weights (fine-tuning what the
    // producer trained), as `snnc run` runs them.
    if snnc::nir_import::is_nir(path) {
        let c = driver::compile(&net, &display(path), &LowerOptions::default())?;
        if let Some(file) = nir_file_weights(&c.module, path)? {
            for (name, t) in file {
                if let Some(slot) = program.initial_weights.get_mut(&name) {
                    *slot = t.cast(slot.dtype);
                }
            }
            say!(out, "training starts from the weights of {}", display(path));
        }
    }
    say!(
        out,
        "training `{}` on {} {} {} ({} test) on {}: {} epoch(s), batch {}, {} lr {}, loss {}",
        net.name,
        data.train.len(),
        data.name,
        if data.file.is_some() { "samples" } else { "images" },
        tests,
        opts.target.name(),
        opts.epochs,
        opts.batch,
        opts.optimizer.name(),
        snnc::train::number(opts.optimizer.lr()),
        opts.loss.name()
    );
    say!(
        out,
        "compiled forward + backward in {:.0} ms; the backward pass stores {} bytes per sample",
        program.compile_ms,
        program.stored_bytes_per_sample
    );
    if !program.no_gradient.is_empty() {
        say!(out, "note: no gradient reaches {} (they stay as initialised)", program.no_gradient.join(", "));
    }
    let _ = out.flush();
    let summary = snnc::train::train_in(folder, &program, &data, opts)?;
    if let Some(e) = summary.resumed_from {
        say!(out, "resumed after epoch {e}");
    }
    say!(out, "epoch,train_loss,test_loss,test_accuracy,seconds");
    for m in &summary.metrics {
        say!(out, "{},{:.5},{:.5},{:.4},{:.1}", m.epoch, m.train_loss, m.test_loss, m.test_accuracy, m.seconds);
    }
    say!(
        out,
        "wrote {}/metrics.csv, checkpoint.json, weights.json and weights.safetensors (use: snnc run {} --weights \
         {}/weights.safetensors)",
        summary.out.display(),
        path.display(),
        summary.out.display()
    );
    Ok(())
}

/// `snnc weights`: one line per parameter of the lowered network (before
/// passes, which keep parameters), `NAME  SHAPE  DTYPE  trainable|constant`,
/// constants marked optional; or, with `--json`, one object.
fn weights(out: &mut impl Write, path: &Path, json: bool) -> Result<(), Error> {
    let c = load(path, Dtype::F32)?;
    let params: Vec<_> = c.module.params.iter().map(|(_, p)| p).collect();
    if params.is_empty() && !json {
        say!(out, "(the network has no weights)");
        return Ok(());
    }
    if json {
        let obj: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|p| {
                let v = serde_json::json!({"shape": p.shape.resolve(1), "dtype": "float32", "trainable": p.trainable});
                (p.name.clone(), v)
            })
            .collect();
        say!(out, "{}", serde_json::Value::Object(obj));
        return Ok(());
    }
    let width = params.iter().map(|p| p.name.len()).max().unwrap_or(0).max(4);
    say!(out, "{:<width$}  {:<16}  {:<8}  kind", "name", "shape", "dtype");
    for p in &params {
        let shape = format!("{:?}", p.shape.resolve(1));
        let kind = if p.trainable { "trainable" } else { "constant (optional: keeps its initial value)" };
        say!(out, "{:<width$}  {shape:<16}  {:<8}  {kind}", p.name, "float32");
    }
    say!(
        out,
        "# layouts are PyTorch's (a Linear weight is [out, in]); F32, F64, F16 and BF16 safetensors are accepted, \
         and --rename OLD=NEW maps other names"
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Where to run it.
    #[arg(long, value_enum, default_value = "cpu")]
    target: Target,
    /// Weights: a safetensors file (`*.safetensors`, e.g. a PyTorch `state_dict()` saved with
    /// `safetensors.torch.save_file`; F32, F64, F16 or BF16) or JSON
    /// (`{"NAME": {"shape": [...], "dtype": "float32", "data": [...]}}`); names and shapes as
    /// `snnc weights NET` prints them. Default: initialised from the network's seed as
    /// PyTorch/Norse do.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Rename a tensor of the --weights file before it is checked: `OLD=NEW` (repeatable);
    /// `fc.=fc1.` (both ending in `.`) renames every name starting with `fc.`.
    #[arg(long, value_name = "OLD=NEW", value_parser = snnc_runtime::parse_rename, requires = "weights")]
    rename: Vec<(String, String)>,
    /// A file of renames, one `OLD=NEW` per line (`#` comments), applied before --rename.
    #[arg(long, value_name = "FILE", requires = "weights")]
    rename_map: Option<PathBuf>,
    /// Write the weights after the run to FILE (`*.safetensors`, else JSON), loadable with
    /// --weights: a plastic weight (`plasticity: STDP(...)`) as the run left it, every other
    /// weight as given. A later run with `--weights FILE` continues from them.
    #[arg(long, value_name = "FILE")]
    save_weights: Option<PathBuf>,
    /// Input file, by extension: `.npy` (NumPy: the input `x`), `.npz` (NumPy arrays named
    /// after the inputs), else JSON (one tensor for the input `x`, or an object of named
    /// tensors); default: a built-in deterministic example input.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Write every output and recorded trace (spikes, voltages, currents) to this file:
    /// `.npz` (NumPy, one array per tensor), else JSON (what `snnc plot` reads).
    #[arg(long)]
    record: Option<PathBuf>,
    /// With --record: also record every plastic weight (`plasticity: STDP(...)`) every K steps, as
    /// `NAME.weight` `[snapshots, ...weight shape]` (at step 0, K, 2K, ... and the last step) with
    /// their steps in `weight_steps`; `snnc plot REC -o FIG.png --evolution` draws them.
    #[arg(long, value_name = "K", requires = "record")]
    record_every: Option<usize>,
    /// Batch size of the built-in example input.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seed of the default weights (overrides the network's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Compute in f64 (the interpreter only: use with --target interp).
    #[arg(long)]
    f64: bool,
    /// The passes to run before running, comma-separated, or `none` for the raw lowering;
    /// default: the target's default pipeline.
    #[arg(long, value_name = "a,b,c")]
    passes: Option<String>,
    /// A recording of `snnc run --record` (.json or .npz): each spike trace's measured density
    /// guides `sparsify`.
    #[arg(long, value_name = "REC.json")]
    profile: Option<PathBuf>,
    /// Exit 0 even when an output holds NaN or infinity (by default such a run prints its
    /// results, writes --record, then names the first non-finite value on stderr and exits 2).
    #[arg(long)]
    allow_nonfinite: bool,
    #[command(flatten)]
    plot: snnc::plot::RunPlotArgs,
}

fn run(out: &mut impl Write, path: &Path, args: RunArgs) -> Result<(), Error> {
    if args.f64 && args.target != Target::Interp {
        return Err(Error::User(format!(
            "--f64 is only supported by --target interp; the {} backend computes in f32 (add --target interp to run in f64)",
            args.target.name()
        )));
    }
    args.target.ensure_available()?;
    if args.batch == 0 {
        return Err(Error::User("--batch must be at least 1".into()));
    }
    let mut c = load(path, if args.f64 { Dtype::F64 } else { Dtype::F32 })?;
    args.plot.check(&c)?;
    let opts = driver::pass_options(&c, args.profile.as_deref())?;
    let pipeline = driver::pipeline(args.target, args.passes.as_deref(), &opts)?;
    driver::optimize(&mut c, &pipeline, &mut |_| {})?;
    let weights = match &args.weights {
        Some(w) => {
            let mut renames = match &args.rename_map {
                Some(map) => driver::read_rename_map(map)?,
                None => Vec::new(),
            };
            renames.extend(args.rename.iter().cloned());
            driver::read_weights_file(&c.module, w, &renames)?
        }
        None => match nir_file_weights(&c.module, path)? {
            Some(w) => w,
            None => driver::init_weights(&c.module, args.seed.unwrap_or(c.network.seed))?,
        },
    };
    let (inputs, source) = match &args.input {
        Some(p) => (driver::read_input_file(&c.module, p)?, display(p)),
        None => (
            driver::example_inputs(&c.module, &c.network.example_input, args.batch)?,
            format!("built-in example input ({:?}), batch {}", c.network.example_input, args.batch),
        ),
    };
    if args.save_weights.is_some() && args.target == Target::Cuda && driver::has_plastic_weights(&c.module) {
        return Err(Error::User(
            "--save-weights: the cuda runner does not return plastic weights yet; use --target cpu".into(),
        ));
    }
    if let Some(every) = args.record_every {
        snnc::snapshots::check(&c, args.target, every)?;
    }
    let started = std::time::Instant::now();
    let (res, snapshots) = match args.record_every {
        Some(every) => {
            let (res, snaps) = snnc::snapshots::run(&c, args.target, &pipeline, &weights, &inputs, every)?;
            (res, Some(snaps))
        }
        None => (driver::run(&c, args.target, &weights, &inputs, true)?, None),
    };
    let elapsed = started.elapsed();
    summarize(out, &c, &res, &source, elapsed, args.f64, args.target);
    let names = pipeline.names();
    say!(out, "passes: {}", if names.is_empty() { "none".to_string() } else { names.join(", ") });
    if let Some(rec) = &args.record {
        let extra = snapshots.as_ref().map(snnc::snapshots::Snapshots::tensors).unwrap_or_default();
        let n = driver::write_recording(&c, &res, &extra, rec)?;
        say!(out, "recorded {n} tensors to {}", rec.display());
        if let Some(s) = &snapshots {
            let names: Vec<&str> = s.weights.keys().map(String::as_str).collect();
            say!(out, "with {} snapshots of {} (steps {:?})", s.steps.len(), names.join(", "), s.steps);
        }
    }
    if let Some(path) = &args.save_weights {
        let after = driver::weights_after_run(&c.module, &weights, &res.final_state);
        let bytes = if driver::is_safetensors(path) {
            snnc_runtime::write_weights_safetensors(&after).map_err(Error::Internal)?
        } else {
            snnc_runtime::write_weights_json(&after).into_bytes()
        };
        snnc_runtime::write_file(path, &bytes)?;
        say!(out, "saved {} weights to {}", after.len(), path.display());
    }
    if let Some(msg) = snnc::plot::plot_run(&c, &res, &args.plot)? {
        say!(out, "{msg}");
    }
    if !args.allow_nonfinite {
        check_outputs_finite(&c, &res)?;
    }
    Ok(())
}

/// Refuses (exit 2) a run whose outputs hold NaN or infinity, once its
/// results are printed and saved: names the output, the element, and the
/// first recorded value (in execution order) that was not finite, where the
/// overflow began.
fn check_outputs_finite(c: &Compiled, res: &driver::RunOutput) -> Result<(), Error> {
    let float = c.module.float;
    let Some(bad) = res
        .outputs
        .iter()
        .find_map(|(name, t)| snnc_runtime::check::finite(&format!("output `{name}`"), t, float).err())
    else {
        return Ok(());
    };
    let first = c.module.body.iter().flat_map(|r| &r.nodes).find_map(|&h| {
        let name = c.module.nodes[h].name.as_ref()?;
        let t = res.traces.get(name)?;
        snnc_runtime::check::finite(&format!("`{name}`"), t, float).err()?;
        Some(name.clone())
    });
    let from = first.map(|n| format!(" (the first recorded value to go non-finite is `{n}`)")).unwrap_or_default();
    Err(Error::User(format!(
        "{bad}{from}: scale down the inputs or weights, or pass --allow-nonfinite to accept non-finite outputs"
    )))
}

fn summarize(
    out: &mut impl Write,
    c: &Compiled,
    res: &driver::RunOutput,
    source: &str,
    elapsed: std::time::Duration,
    f64: bool,
    target: Target,
) {
    let net = &c.network;
    say!(
        out,
        "{}: T = {} steps of {} ms, batch {}, {} ({}), {:.1} ms",
        net.name,
        net.steps,
        net.dt * 1e3,
        res.batch,
        target.name(),
        if f64 { "f64" } else { "f32" },
        elapsed.as_secs_f64() * 1e3
    );
    say!(out, "input: {source}");
    say!(out, "{:<16} {:<16} {:<16} {:>10} {:>14}", "layer", "kind", "shape", "spikes", "rate (Hz)");
    for l in &c.layers {
        let (spikes, rate) = match res.traces.get(&format!("{}.z", l.name)) {
            Some(z) => {
                let count: f64 = z.data.iter().sum();
                let neuron_seconds = z.data.len() as f64 * net.dt;
                (format!("{count}"), format!("{:.1}", count / neuron_seconds))
            }
            None => ("-".into(), "-".into()),
        };
        say!(out, "{:<16} {:<16} {:<16} {:>10} {:>14}", l.name, l.kind, shape_str(&l.shape), spikes, rate);
    }
    if let Some(r) = res.outputs.get("readout") {
        say!(out, "readout ({:?}), shape {:?}:", net.readout, r.shape);
        print_rows(out, r, true);
    } else if let Some(o) = res.outputs.get("output") {
        say!(out, "output, shape {:?} (last step shown):", o.shape);
        let t = o.shape[0];
        let per_step = o.len() / t.max(1);
        let last = Tensor { shape: o.shape[1..].to_vec(), dtype: o.dtype, data: o.data[(t - 1) * per_step..].to_vec() };
        print_rows(out, &last, false);
    }
}

/// Prints a `[B, ...]` tensor one sample per line (at most 8 samples and 10
/// values each), with the arg-max for class scores.
fn print_rows(out: &mut impl Write, t: &Tensor, classes: bool) {
    let batch = t.shape.first().copied().unwrap_or(1).max(1);
    let per = t.len() / batch;
    for b in 0..batch.min(8) {
        let row = &t.data[b * per..(b + 1) * per];
        let shown: Vec<String> = row.iter().take(10).map(|v| format!("{v:.4}")).collect();
        let more = if per > 10 { format!(", ... ({per} values)") } else { String::new() };
        let argmax = row
            .iter()
            .enumerate()
            .fold(None::<(usize, f64)>, |best, (i, &v)| match best {
                Some((_, bv)) if bv >= v => best,
                _ => Some((i, v)),
            })
            .map(|(i, _)| i);
        let arg = match argmax {
            Some(i) if classes && t.shape.len() == 2 => format!("  -> class {i}"),
            _ => String::new(),
        };
        say!(out, "  sample {b}: [{}{more}]{arg}", shown.join(", "));
    }
    if batch > 8 {
        say!(out, "  ... ({batch} samples)");
    }
}
