//! The Rust API: compile a network once, run it many times.
//!
//! [`compile`] lowers a [`Network`] (from a RON file or the DSL), runs the
//! target's default pass pipeline and prepares the backend; the
//! [`Executable`] it returns runs batches of host tensors with
//! [`Executable::forward`], checking every shape before any generated code
//! runs.
//!
//! # State
//!
//! A network's *state* is the value of every state variable of its module
//! (membrane voltages `NAME.v`, synaptic currents `NAME.i`, last spikes
//! `NAME.z`, adaptation `NAME.b`, the encoder's `encoder.v`, ...), one
//! tensor per variable of shape `[B, ...]`, named as in recordings; a
//! plastic weight (`plasticity: STDP(...)`) is the state
//! `NAME.weight.plastic` (`[out, in]`, no batch dimension, starting at the
//! weight `NAME.weight`) with its traces `NAME.t_pre`, `NAME.t_post`, so
//! a carried state carries what STDP has learnt. A run
//! of `T` steps starts from a state and ends in one (the *final state*).
//!
//! - [`Executable::forward`] always starts from the initial state (every
//!   variable at its `StateInit` value, usually 0), so calls are
//!   independent; it leaves the carried state alone.
//! - [`Executable::forward_with_state`] starts from the carried state and
//!   then carries its own final state: the final state of one call is the
//!   initial state of the next, so two calls of `T` steps compute what one
//!   run of `2T` steps would. The carried state starts empty (the initial
//!   state); [`Executable::reset_state`] empties it again,
//!   [`Executable::state`] shows it and [`Executable::set_state`] sets it.
//!   Its tensors have the batch size of the call that made them, so the
//!   next call must use the same batch size.
//!
//! # NumPy files
//!
//! Inputs can come from NumPy files and outputs go back to them:
//! [`Executable::read_inputs`] reads a `.npy` (the input `x`), an `.npz`
//! (one array per input, by name) or a JSON file, as `snnc run --input`
//! does, and [`save_npz`] writes tensors (e.g. [`Outputs::tensors`]) as an
//! `.npz` that `numpy.load` reads. The NumPy reader and writer themselves
//! are re-exported: [`read_npy`], [`read_npz`] (an [`NpyArray`] per array,
//! record arrays included), [`write_npy`], [`write_npz`].
//!
//! ```no_run
//! use snnc::{Target, api};
//!
//! let net = snnc::frontend::load_network(std::path::Path::new("net.ron"))?;
//! let mut exe = api::compile(&net, Target::Cpu)?;
//! let inputs = exe.read_inputs(std::path::Path::new("batch.npz"))?;
//! let out = exe.forward(&inputs)?;
//! api::save_npz(std::path::Path::new("out.npz"), &out.tensors)?;
//! // Any array, e.g. Tonic's events (a record array of x, y, t, p):
//! let events = api::read_npy(std::path::Path::new("events.npy"))?;
//! if let api::NpyValues::Record(fields) = &events.values {
//!     println!("{} events, fields {:?}", events.shape[0], fields.iter().map(|(n, _)| n).collect::<Vec<_>>());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use snnc_frontend::{LowerOptions, Network};
pub use snnc_runtime::npy::{NpyArray, NpyError, NpyValues, read_npy, read_npz, write_npy, write_npz};
use snnc_runtime::{Tensor, Weights};

use crate::driver::{self, Compiled, Error, Target};

/// What [`Executable::forward`] returns.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// The module outputs by name: `output` (`[T, B, ...]`, the last
    /// layer's value at every step) and, with a readout, `readout`.
    pub tensors: BTreeMap<String, Tensor>,
    /// Every state variable after the last step, by name.
    pub final_state: BTreeMap<String, Tensor>,
}

impl Outputs {
    /// The output of that name.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// For each sample of a `[B, classes]` output (e.g. `readout`), the
    /// index of its largest value (the first one on ties).
    pub fn classes(&self, name: &str) -> Option<Vec<usize>> {
        let t = self.tensors.get(name)?;
        let [batch, n] = t.shape[..] else { return None };
        Some(
            (0..batch)
                .map(|b| {
                    let row = &t.data[b * n..(b + 1) * n];
                    (0..n).fold(0, |best, i| if row[i] > row[best] { i } else { best })
                })
                .collect(),
        )
    }
}

/// The backend half of an [`Executable`].
#[derive(Debug)]
pub enum Backend {
    /// The reference interpreter (it needs no preparation).
    Interp,
    /// The CPU backend's executable.
    Cpu(Box<snnc_cpu::Executable>),
    /// The CUDA backend's PTX, loaded on the GPU (runs from the initial
    /// state; carried state is not supported yet).
    Cuda(Box<driver::CudaRunner>),
}

/// A network compiled for a target; see the module doc for what state it
/// carries between calls.
#[derive(Debug)]
pub struct Executable {
    compiled: Compiled,
    target: Target,
    backend: Backend,
    weights: Weights,
    state: BTreeMap<String, Tensor>,
}

/// Lowers `net`, runs the target's default pipeline and compiles the result
/// for `target`. The weights start at the network's default initialisation
/// from its `seed` (as PyTorch/Norse initialise them); see
/// [`Executable::set_weights`].
///
/// Errors: the network is invalid ([`Error::Diagnostic`]/[`Error::User`]),
/// the target is not available ([`Error::Environment`], e.g. `cuda`), or
/// the backend does not support the network ([`Error::User`], e.g. an
/// `f64` network on the cpu).
pub fn compile(net: &Network, target: Target) -> Result<Executable, Error> {
    compile_with(net, target, &LowerOptions::default())
}

/// [`compile`] with lowering options (e.g. `float: Dtype::F64` for the
/// interpreter).
pub fn compile_with(net: &Network, target: Target, opts: &LowerOptions) -> Result<Executable, Error> {
    target.ensure_available()?;
    let mut compiled = driver::compile(net, &net.name, opts)?;
    let pass_opts = driver::pass_options(&compiled, None)?;
    let pipeline = driver::pipeline(target, None, &pass_opts)?;
    driver::optimize(&mut compiled, &pipeline, &mut |_| {})?;
    let backend = match target {
        Target::Interp => Backend::Interp,
        Target::Cpu => Backend::Cpu(Box::new(snnc_cpu::compile(&compiled.module, &compiled.info)?)),
        Target::Cuda => Backend::Cuda(Box::new(driver::CudaRunner::new(&compiled.module, &compiled.info)?)),
    };
    let weights = driver::init_weights(&compiled.module, net.seed)?;
    Ok(Executable { compiled, target, backend, weights, state: BTreeMap::new() })
}

impl Executable {
    /// The target it runs on.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The backend's compiled form.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The network and its optimised module.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// The current weights, by parameter name.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// Replaces weights by name. Every given name must be a parameter of
    /// the network with its shape, and every value finite in the network's
    /// float type; parameters not given keep their value.
    pub fn set_weights(&mut self, weights: Weights) -> Result<(), Error> {
        let none = BTreeMap::new();
        snnc_runtime::check_finite(&self.compiled.module, &weights, &none, &none)
            .map_err(|e| Error::User(e.to_string()))?;
        let mut merged = self.weights.clone();
        let dtype = driver::elem_type(self.compiled.module.float);
        for (name, t) in weights {
            if !merged.contains_key(&name) {
                let valid: Vec<&str> = merged.keys().map(String::as_str).collect();
                return Err(Error::User(format!("unknown weight `{name}`; the weights are {}", valid.join(", "))));
            }
            merged.insert(name, t.cast(dtype));
        }
        snnc_runtime::check_weights(&self.compiled.module, &merged).map_err(|e| Error::User(e.to_string()))?;
        self.weights = merged;
        Ok(())
    }

    /// Reads a weights file as `snnc run --weights` does (safetensors by the
    /// extension `.safetensors`, e.g. a PyTorch `state_dict()` saved with
    /// `safetensors.torch.save_file`; else JSON), renaming its tensors
    /// first (`(OLD, NEW)` pairs as `--rename OLD=NEW`: `OLD.=NEW.` renames
    /// a prefix; [`driver::read_rename_map`] reads a `--rename-map` file),
    /// checks that it holds every parameter with its shape, and uses it.
    pub fn load_weights(&mut self, path: &Path, renames: &[(String, String)]) -> Result<(), Error> {
        let weights = driver::read_weights_file(&self.compiled.module, path, renames)?;
        self.set_weights(weights)
    }

    /// Reads this network's inputs from a file, by its extension, as
    /// `snnc run --input` does: `.npy` (the input `x`), `.npz` (one array
    /// per input, by name), else JSON ([`driver::read_input_file`]). Shapes
    /// and values are checked when the inputs run.
    pub fn read_inputs(&self, path: &Path) -> Result<BTreeMap<String, Tensor>, Error> {
        driver::read_input_file(&self.compiled.module, path)
    }

    /// Runs one batch from the initial state. `inputs` holds every module
    /// input by name (`x`: `[B, ...]` for a network with an encoder, else
    /// `[T, B, ...]`); shapes are checked before anything runs.
    pub fn forward(&mut self, inputs: &BTreeMap<String, Tensor>) -> Result<Outputs, Error> {
        self.run(inputs, &BTreeMap::new())
    }

    /// Runs one batch from the carried state, then carries its final state
    /// (see the module doc).
    pub fn forward_with_state(&mut self, inputs: &BTreeMap<String, Tensor>) -> Result<Outputs, Error> {
        let initial = std::mem::take(&mut self.state);
        let res = self.run(inputs, &initial);
        match &res {
            Ok(out) => self.state = out.final_state.clone(),
            Err(_) => self.state = initial,
        }
        res
    }

    /// The carried state: empty before the first
    /// [`Executable::forward_with_state`] and after a reset (the initial state).
    pub fn state(&self) -> &BTreeMap<String, Tensor> {
        &self.state
    }

    /// Sets the carried state (some or all variables, by name); the next
    /// [`Executable::forward_with_state`] checks it.
    pub fn set_state(&mut self, state: BTreeMap<String, Tensor>) {
        self.state = state;
    }

    /// Forgets the carried state: the next call starts from the initial state.
    pub fn reset_state(&mut self) {
        self.state.clear();
    }

    fn run(
        &mut self,
        inputs: &BTreeMap<String, Tensor>,
        initial_state: &BTreeMap<String, Tensor>,
    ) -> Result<Outputs, Error> {
        let module = &self.compiled.module;
        match &self.backend {
            Backend::Interp => {
                let opts = snnc_interp::RunOptions { record: false, initial_state: initial_state.clone() };
                let res = snnc_interp::run(module, &self.compiled.info, &self.weights, inputs, &opts)
                    .map_err(|e| Error::User(e.to_string()))?;
                Ok(Outputs { tensors: res.outputs, final_state: res.final_state })
            }
            Backend::Cpu(exe) => {
                let opts =
                    snnc_cpu::RunOptions { record: false, initial_state: initial_state.clone(), ..Default::default() };
                let res = exe.run(&self.weights, inputs, &opts)?;
                Ok(Outputs { tensors: res.outputs, final_state: res.final_state })
            }
            Backend::Cuda(exe) => {
                if !initial_state.is_empty() {
                    return Err(Error::User(
                        "the cuda backend runs from the initial state; carried state needs --target cpu".into(),
                    ));
                }
                Ok(Outputs { tensors: exe.run(&self.weights, inputs)?, final_state: BTreeMap::new() })
            }
        }
    }
}

/// Saves tensors by name (e.g. [`Outputs::tensors`] or
/// [`Outputs::final_state`]) as an `.npz` file at `path` (`float32` as
/// `<f4`, `float64` as `<f8`, `int64` as `<i8`), as `snnc run --record
/// FILE.npz` does.
pub fn save_npz(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<(), Error> {
    let arrays: Vec<(String, &Tensor)> = tensors.iter().map(|(k, t)| (k.clone(), t)).collect();
    Ok(write_npz(path, &arrays)?)
}
