//! The driver: loads a network, lowers and validates it, runs it on a
//! target, and prepares inputs. The CLI and the conformance runner use it.

use std::collections::BTreeMap;
use std::path::Path;

use snnc_frontend::{ExampleInput, FrontendError, LayerSummary, LowerOptions, Network};
use snnc_ir::{Dim, Dtype, Module, ModuleInfo, Op};
use snnc_passes::{AfterPass, PassError, PassOptions, Pipeline, PipelineKind};
use snnc_runtime::npy::{self, NpyError};
use snnc_runtime::{ElemType, Tensor, Weights};

use crate::memory;

/// What went wrong, sorted by whose fault it is (this decides the exit code).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input is wrong: a file, its syntax, a shape, a parameter.
    #[error("{0}")]
    User(String),
    /// The user's input is wrong, and the message is a rendered diagnostic
    /// that already carries its `error:` labels and locations.
    #[error("{0}")]
    Diagnostic(String),
    /// The environment lacks something: a backend, a GPU, a data set.
    #[error("{0}")]
    Environment(String),
    /// A bug in snnc.
    #[error("internal error (a bug in snnc, please report it): {0}")]
    Internal(String),
}

impl Error {
    /// The process exit code of DESIGN.md: 2 user input, 3 environment, 1 bug.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::User(_) | Error::Diagnostic(_) => 2,
            Error::Environment(_) => 3,
            Error::Internal(_) => 1,
        }
    }
}

impl From<FrontendError> for Error {
    fn from(e: FrontendError) -> Self {
        Error::Diagnostic(e.to_string())
    }
}

impl From<snnc_runtime::SaveError> for Error {
    fn from(e: snnc_runtime::SaveError) -> Self {
        if e.is_users() { Error::User(e.to_string()) } else { Error::Environment(e.to_string()) }
    }
}

/// Where a network runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The reference interpreter (f32 or f64).
    Interp,
    /// Native code: fused kernels compiled by Cranelift, GEMM, threads (f32).
    Cpu,
    /// CUDA PTX through cudarc on an NVIDIA GPU (f32; needs the CUDA driver).
    Cuda,
}

impl Target {
    /// Fails for a target that cannot run here (cuda without a usable GPU).
    pub fn ensure_available(self) -> Result<(), Error> {
        match self {
            Target::Interp | Target::Cpu => Ok(()),
            Target::Cuda => match snnc_cuda::probe().problem() {
                Some(why) => Err(Error::Environment(format!(
                    "--target cuda: no usable GPU ({why}); use --target cpu (`snnc compile --target cuda` writes \
                     the PTX without a GPU)"
                ))),
                None => Ok(()),
            },
        }
    }

    /// The target's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Interp => "interp",
            Target::Cpu => "cpu",
            Target::Cuda => "cuda",
        }
    }
}

impl From<snnc_cpu::CpuError> for Error {
    fn from(e: snnc_cpu::CpuError) -> Self {
        use snnc_cpu::CpuError;
        match e {
            CpuError::Unsupported(_) => Error::User(format!("{e}; use --target interp (the reference interpreter)")),
            CpuError::Input(_) | CpuError::TooLarge(_) => Error::User(e.to_string()),
            CpuError::OutOfMemory(_) => Error::Environment(format!("{e}; use a smaller --batch")),
            CpuError::InfoMismatch | CpuError::Jit(_) => Error::Internal(e.to_string()),
        }
    }
}

impl Target {
    /// What the target's backend needs from the passes, as data.
    pub fn pipeline_kind(self) -> PipelineKind {
        match self {
            Target::Interp => PipelineKind::Interp,
            Target::Cpu => PipelineKind::Cpu,
            Target::Cuda => PipelineKind::Cuda,
        }
    }
}

/// The most values a host tensor set (all weights, or one input) may hold:
/// 2^31, i.e. 16 GiB as f64.
pub const MAX_HOST_VALUES: u64 = 1 << 31;

/// A network lowered to validated IR.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub network: Network,
    pub module: Module,
    pub info: ModuleInfo,
    pub layers: Vec<LayerSummary>,
}

/// Reads and parses a network file: RON, or NIR by the extension `.nir`
/// (read with the default conventions; [`crate::nir_import::import`] takes
/// others and gives the file's weights).
pub fn load(path: &Path) -> Result<Network, Error> {
    if crate::nir_import::is_nir(path) {
        return Ok(crate::nir_import::import(path, &Default::default())?.network);
    }
    Ok(snnc_frontend::load_network(path)?)
}

/// Lowers and validates a network.
pub fn compile(net: &Network, file: &str, opts: &LowerOptions) -> Result<Compiled, Error> {
    let (module, layers) = snnc_frontend::lower_with_summary(net, file, opts)?;
    let info = snnc_ir::validate(&module).map_err(|e| Error::Internal(e.to_string()))?;
    let values = module.params.iter().fold(0u64, |acc, (_, p)| acc.saturating_add(p.shape.fixed_elements()));
    if values > MAX_HOST_VALUES {
        let mut largest: Vec<(&str, u64)> =
            layer_values(&module).into_iter().filter(|(_, v)| v.params > 0).map(|(l, v)| (l, v.params)).collect();
        largest.sort_by_key(|&(l, n)| (std::cmp::Reverse(n), l));
        let shown: Vec<String> = largest.iter().take(3).map(|(l, n)| format!("`{l}` {n}")).collect();
        return Err(Error::User(format!(
            "{file}: network `{}` has {values} parameter values, more than the {MAX_HOST_VALUES} snnc can hold on the host (the most: {}); use smaller layers",
            net.name,
            shown.join(", ")
        )));
    }
    Ok(Compiled { network: net.clone(), module, info, layers })
}

/// The network's initial weights (`snnc_runtime::init_weights`), after
/// checking that they fit in memory: the f64 host values and a backend's
/// f32 copy, 12 bytes a value.
pub fn init_weights(module: &Module, seed: u64) -> Result<Weights, Error> {
    let values = module.params.iter().fold(0u128, |acc, (_, p)| acc.saturating_add(p.shape.fixed_elements().into()));
    crate::memory::check(&crate::memory::Need::bytes("initialising the weights", values.saturating_mul(12)))?;
    Ok(snnc_runtime::init_weights(module, seed))
}

/// The values a layer of a lowered module holds; see [`layer_values`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerValues {
    /// Parameter values, trainable or not.
    pub params: u64,
    /// Trainable parameter values.
    pub trainable: u64,
    /// State values per sample.
    pub state: u64,
}

/// The parameter and state values of each layer, by layer name: the part
/// of a parameter's or state's name before its first `.` (`lif1.weight`,
/// `lif1.v`; the encoder's are `encoder.*`). One pass over the parameters
/// and states, so summaries of many layers take linear time.
pub fn layer_values(module: &Module) -> BTreeMap<&str, LayerValues> {
    fn layer_of(name: &str) -> &str {
        name.split_once('.').map_or(name, |(layer, _)| layer)
    }
    let mut res: BTreeMap<&str, LayerValues> = BTreeMap::new();
    for (_, p) in module.params.iter() {
        let n = p.shape.fixed_elements();
        let v = res.entry(layer_of(&p.name)).or_default();
        v.params = v.params.saturating_add(n);
        if p.trainable {
            v.trainable = v.trainable.saturating_add(n);
        }
    }
    for (_, s) in module.states.iter() {
        let v = res.entry(layer_of(&s.name)).or_default();
        v.state = v.state.saturating_add(s.ty.shape.fixed_elements());
    }
    res
}

/// The pipeline to run for a target: its default pipeline, or the
/// comma-separated `--passes` list (`none` for no passes). An unknown pass
/// name is the user's error, listing the valid names.
pub fn pipeline(target: Target, passes: Option<&str>, opts: &PassOptions) -> Result<Pipeline, Error> {
    match passes {
        None => Ok(snnc_passes::default_pipeline_with(target.pipeline_kind(), opts)),
        Some(list) => snnc_passes::parse_pipeline(list, opts).map_err(|e| Error::User(format!("--passes: {e}"))),
    }
}

/// The pass options of a compiled network: the `input_density` of its
/// layers (under the name of each layer's input value, see
/// [`layer_densities`]) over the densities measured in a profile.
pub fn pass_options(compiled: &Compiled, profile: Option<&Path>) -> Result<PassOptions, Error> {
    let mut opts = PassOptions::default();
    if let Some(path) = profile {
        opts.densities = read_profile(path)?;
    }
    opts.densities.extend(layer_densities(&compiled.network, &compiled.module));
    Ok(opts)
}

/// The `input_density` of each layer that has one, keyed by the name of
/// the value its input weights read (`encoder.z`, `lif1.z`, `flatten.out`):
/// the input of the matrix product whose weight is `NAME.weight` or
/// `NAME.input_weights`, named as `sparsify` looks names up.
pub fn layer_densities(net: &Network, module: &Module) -> BTreeMap<String, f64> {
    let mut res = BTreeMap::new();
    for (index, layer) in net.layers.iter().enumerate() {
        let Some(density) = layer.input_density() else { continue };
        let name = layer.name(index);
        let weights = [format!("{name}.weight"), format!("{name}.input_weights")];
        for (_, node) in module.nodes.iter() {
            let (Op::MatMul { input, weight, .. } | Op::Conv2d { input, weight, .. }) = node.op else { continue };
            let Op::Param(p) = module.nodes[weight].op else { continue };
            if weights.contains(&module.params[p].name)
                && let Some(key) = snnc_passes::sparsify::density_key(module, input)
            {
                res.insert(key, density);
            }
        }
    }
    res
}

/// Reads a recording made by `snnc run --record` (JSON, or `.npz` by its
/// extension) and returns the mean of every spike trace (a tensor of zeros and ones), by name: the measured
/// densities for `sparsify`.
pub fn read_profile(path: &Path) -> Result<BTreeMap<String, f64>, Error> {
    let spike_density = |data: &[f64]| {
        (!data.is_empty() && data.iter().all(|&x| x == 0.0 || x == 1.0))
            .then(|| data.iter().sum::<f64>() / data.len() as f64)
    };
    if has_extension(path, "npz") {
        let mut res = BTreeMap::new();
        for (name, array) in snnc_runtime::read_npz(path)? {
            let data: Vec<f64> = match array.values {
                npy::NpyValues::Float { data, .. } => data,
                npy::NpyValues::U8(v) => v.into_iter().map(f64::from).collect(),
                npy::NpyValues::Int(v) => v.into_iter().map(|x| x as f64).collect(),
                npy::NpyValues::Record(_) => continue,
            };
            if let Some(d) = spike_density(&data) {
                res.insert(name, d);
            }
        }
        return Ok(res);
    }
    let text = memory::read_json_file(path, "the profile", memory::MAX_JSON_BYTES)?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::User(format!("{}:{}:{}: not valid JSON: {e}", path.display(), e.line(), e.column())))?;
    let Some(obj) = value.as_object() else {
        return Err(Error::User(format!(
            "{}: a profile is a recording of `snnc run --record`: an object of named tensors",
            path.display()
        )));
    };
    let mut res = BTreeMap::new();
    for (name, v) in obj {
        // Entries that are not tensors (e.g. metadata) are not traces.
        if v.get("shape").is_none() {
            continue;
        }
        let t = Tensor::from_json(v).map_err(|e| Error::User(format!("{}: `{name}`: {e}", path.display())))?;
        if let Some(d) = spike_density(&t.data) {
            res.insert(name.clone(), d);
        }
    }
    Ok(res)
}

/// Runs a pipeline on a compiled network's module (validated after every
/// pass), calling `observer` after each pass.
pub fn optimize(
    compiled: &mut Compiled,
    pipeline: &Pipeline,
    observer: &mut dyn FnMut(AfterPass<'_>),
) -> Result<(), Error> {
    compiled.info = run_pipeline(&mut compiled.module, pipeline, observer)?;
    Ok(())
}

/// Runs a pipeline on a module; a pass error becomes a user error (the
/// module needs something the pass cannot give) or a bug (invalid IR).
pub fn run_pipeline(
    module: &mut Module,
    pipeline: &Pipeline,
    observer: &mut dyn FnMut(AfterPass<'_>),
) -> Result<ModuleInfo, Error> {
    pipeline.run(module, observer).map_err(|e| match e {
        PassError::Unsupported { .. } => Error::User(e.to_string()),
        PassError::Invalid { .. } => Error::Internal(e.to_string()),
    })
}

/// Builds the forward + backward module (see `snnc_passes::autodiff`): the
/// passes before `autodiff`, the differentiation with `grad` options, then
/// the passes after it. `passes` (a `--passes` list) replaces the passes
/// before `autodiff`, and then none run after it.
pub fn differentiate(
    module: &mut Module,
    target: Target,
    passes: Option<&str>,
    opts: &PassOptions,
    grad: &snnc_passes::AutodiffOptions,
) -> Result<(ModuleInfo, snnc_passes::GradReport), Error> {
    let (pre, post) = snnc_passes::training_pass_names(target.pipeline_kind());
    let pre_list = passes.map_or_else(|| pre.join(","), str::to_string);
    let before = pipeline(target, Some(&pre_list), opts)?;
    run_pipeline(module, &before, &mut |_| {})?;
    let report = snnc_passes::differentiate(module, grad).map_err(|e| Error::User(e.to_string()))?;
    let after = if passes.is_some() { "none".to_string() } else { post.join(",") };
    let after = pipeline(target, Some(&after), opts)?;
    let info = run_pipeline(module, &after, &mut |_| {})?;
    Ok((info, report))
}

/// The element type of a module's float dtype.
pub fn elem_type(float: Dtype) -> ElemType {
    match float {
        Dtype::F64 => ElemType::F64,
        _ => ElemType::F32,
    }
}

/// A deterministic example input for every module input, with batch size
/// `batch`, as the network's `example_input` asks. It depends only on the
/// shapes, the batch index and `example`. For `ExampleInput::Pattern`:
///
/// - a static input (an encoder's "image") holds, per sample, a bright
///   ring on a dark background, normalised as the Fashion-MNIST tutorial
///   normalises pixels (`(p - 0.2860) / 0.3530`, so values span about
///   -0.81..2.02); a ring of another radius for every sample;
/// - a per-step input holds a constant current per neuron, spread over
///   `0..1.5` so that LIF neurons fire at different rates or not at all;
/// - the Poisson encoder's `uniform` input holds snnc's uniform numbers.
pub fn example_inputs(
    module: &Module,
    example: &ExampleInput,
    batch: usize,
) -> Result<BTreeMap<String, Tensor>, Error> {
    let dtype = elem_type(module.float);
    let mut res = BTreeMap::new();
    // The host tensors below, checked before they are made.
    let buffers = module
        .nodes
        .iter()
        .filter_map(|(h, node)| match node.op {
            Op::Input(i) => {
                let ty = &module.inputs[i].ty;
                let steps = if ty.seq { u128::from(module.steps) } else { 1 };
                let bytes = u128::from(ty.shape.fixed_elements()).saturating_mul(steps).saturating_mul(8);
                let batched = ty.shape.0.contains(&Dim::Batch);
                Some(snnc_cpu::PlannedBuffer { node: Some(h), batched, bytes, elem_bytes: 8 })
            }
            _ => None,
        })
        .collect();
    let part = memory::Part { module, batch: batch as u64, buffers, tensor_limit: None };
    memory::check(&memory::Need { what: "the example input".into(), parts: vec![part], extra: 0 })?;
    for (_, input) in module.inputs.iter() {
        let sample: Vec<usize> = input
            .ty
            .shape
            .0
            .iter()
            .filter_map(|d| match d {
                Dim::Fixed(n) => Some(*n as usize),
                Dim::Batch => None,
            })
            .collect();
        let per_sample: usize = sample.iter().product();
        let steps = if input.ty.seq { module.steps as usize } else { 1 };
        let mut data = Vec::with_capacity(per_sample * batch * steps);
        for t in 0..steps {
            for b in 0..batch {
                for k in 0..per_sample {
                    let v = if input.name == "uniform" {
                        snnc_ir::rng::uniform(b as u64, t as u32, k as u64)
                    } else if let ExampleInput::Constant(x) = example {
                        *x
                    } else if let ExampleInput::SpikesAt(at) = example {
                        if at.contains(&(t as u32)) { 1.0 } else { 0.0 }
                    } else if input.ty.seq {
                        // Neuron k of sample b: currents spread over 0..1.5.
                        let n = per_sample.max(2) as f64 - 1.0;
                        1.5 * ((k as f64 / n) + 0.37 * b as f64).fract()
                    } else {
                        let p = ring_pixel(&sample, k, b);
                        (p - 0.2860) / 0.3530
                    };
                    data.push(v);
                }
            }
        }
        let mut shape = input.ty.shape.resolve(batch);
        if input.ty.seq {
            shape.insert(0, steps);
        }
        let t = Tensor::new(shape, dtype, data).expect("the shape was computed from the data");
        res.insert(input.name.clone(), t);
    }
    Ok(res)
}

/// Pixel `k` (row-major over `sample`, the last two dims being the image)
/// of a ring whose radius depends on the sample index `b`, in `[0, 1]`.
fn ring_pixel(sample: &[usize], k: usize, b: usize) -> f64 {
    let (h, w) = match sample.len() {
        0 => (1, 1),
        1 => (1, sample[0]),
        n => (sample[n - 2], sample[n - 1]),
    };
    let (y, x) = ((k / w) % h, k % w);
    let cy = (h as f64 - 1.0) / 2.0;
    let cx = (w as f64 - 1.0) / 2.0;
    let r = ((y as f64 - cy).powi(2) + (x as f64 - cx).powi(2)).sqrt();
    let radius = (0.25 + 0.08 * (b % 4) as f64) * (h.max(w) as f64);
    let width = 0.08 * h.max(w) as f64 + 0.5;
    (1.0 - ((r - radius) / width).powi(2)).clamp(0.0, 1.0)
}

/// Reads inputs from a JSON file: either one tensor (for the input `x`) or
/// an object of named tensors.
pub fn read_inputs(path: &Path) -> Result<BTreeMap<String, Tensor>, Error> {
    read_json_inputs(path)
}

impl From<NpyError> for Error {
    fn from(e: NpyError) -> Self {
        if e.is_users() { Error::User(e.to_string()) } else { Error::Environment(e.to_string()) }
    }
}

/// Whether `path` ends in `.EXT` (any case).
pub fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Reads the inputs of a run of `module` from a file, by its extension:
///
/// - `.npy`: one NumPy array, the input `x` (as a JSON file of one tensor);
/// - `.npz`: NumPy arrays named after the module's inputs; an `.npz` of one
///   array whose name is not an input is the input of a module of one input;
/// - anything else: JSON ([`read_inputs`]).
///
/// Arrays become tensors as [`npy::NpyArray::to_tensor`] says (float32 and
/// float16 as `float32`, float64 as `float64`, integers, bool and uint8 as
/// `float32` when exact). The names, shapes and values are checked by the
/// run as for JSON inputs. Every error names the file (and the array).
pub fn read_input_file(module: &Module, path: &Path) -> Result<BTreeMap<String, Tensor>, Error> {
    let shown = path.display();
    let mut res = BTreeMap::new();
    if has_extension(path, "npy") {
        let array = snnc_runtime::read_npy(path)?;
        res.insert("x".to_string(), array.to_tensor(&format!("{shown}: input `x`"))?);
        return check_input_file(module, path, res);
    }
    if !has_extension(path, "npz") {
        return read_json_inputs(path);
    }
    let mut arrays = snnc_runtime::read_npz(path)?;
    let names: Vec<String> = module.inputs.iter().map(|(_, i)| i.name.clone()).collect();
    if let ([only], [input]) = (&arrays.keys().cloned().collect::<Vec<_>>()[..], &names[..])
        && only != input
        && let Some(array) = arrays.remove(only)
    {
        arrays.insert(input.clone(), array);
    }
    let listed = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    let example = names.iter().map(|n| format!("{n}=...")).collect::<Vec<_>>().join(", ");
    let hint = format!("save one array per input of the network ({listed}): numpy.savez(FILE, {example})");
    if let Some(extra) = arrays.keys().find(|k| !names.contains(k)) {
        return Err(Error::User(format!("{shown}: the array '{extra}' is no input of the network; {hint}")));
    }
    for name in &names {
        let array = npy::take_array(&mut arrays, path, name, &hint)?;
        res.insert(name.clone(), array.to_tensor(&format!("{shown}: input `{name}`"))?);
    }
    check_input_file(module, path, res)
}

/// Checks the shapes of inputs read from a NumPy file, naming the file (the
/// run checks them again, with the weights).
fn check_input_file(
    module: &Module,
    path: &Path,
    inputs: BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>, Error> {
    let shapes = inputs.iter().map(|(k, t)| (k.clone(), t.shape.as_slice())).collect();
    snnc_runtime::check::check_input_shapes(module, &shapes)
        .map_err(|e| Error::User(format!("{}: {e}; save the array in that shape (numpy.reshape)", path.display())))?;
    Ok(inputs)
}

/// Saves the recording of a run (every trace, then every output, by name;
/// an output replaces a trace of its name) at `path`: `.npz` by its
/// extension (one array per tensor, no metadata), else JSON (with the
/// network's metadata under [`crate::plot::META_KEY`], what `snnc plot`
/// reads). `extra` tensors (e.g. weight snapshots, `crate::snapshots`) are
/// written with them. Returns the number of tensors written.
pub fn write_recording(
    c: &Compiled,
    res: &RunOutput,
    extra: &BTreeMap<String, Tensor>,
    path: &Path,
) -> Result<usize, Error> {
    let mut tensors: BTreeMap<&String, &Tensor> = BTreeMap::new();
    for (name, t) in res.traces.iter().chain(res.outputs.iter()).chain(extra) {
        tensors.insert(name, t);
    }
    if has_extension(path, "npz") {
        let arrays: Vec<(String, &Tensor)> = tensors.iter().map(|(k, t)| ((*k).clone(), *t)).collect();
        snnc_runtime::write_npz(path, &arrays)?;
        return Ok(arrays.len());
    }
    let mut obj = serde_json::Map::new();
    obj.insert(crate::plot::META_KEY.into(), crate::plot::recording_metadata(c));
    for (name, t) in &tensors {
        obj.insert((*name).clone(), t.to_json());
    }
    let text = serde_json::to_string(&serde_json::Value::Object(obj))
        .map_err(|e| Error::Internal(format!("cannot serialise the recording: {e}")))?;
    snnc_runtime::write_file(path, text.as_bytes())?;
    Ok(tensors.len())
}

/// Reads a JSON input file: one tensor for the input `x`, or an object of
/// named tensors.
fn read_json_inputs(path: &Path) -> Result<BTreeMap<String, Tensor>, Error> {
    let text = memory::read_json_file(path, "the input file", memory::MAX_JSON_BYTES)?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::User(format!("{}:{}:{}: not valid JSON: {e}", path.display(), e.line(), e.column())))?;
    let mut res = BTreeMap::new();
    if value.get("shape").is_some() {
        let t = Tensor::from_json(&value)
            .map_err(|e| Error::User(format!("{}: input `x` (the file's one tensor): {e}", path.display())))?;
        res.insert("x".to_string(), t);
        return Ok(res);
    }
    let Some(obj) = value.as_object() else {
        return Err(Error::User(format!(
            "{}: expected a tensor {{\"shape\": [...], \"dtype\": \"float32\", \"data\": [...]}} or an object of named tensors",
            path.display()
        )));
    };
    for (name, v) in obj {
        let t = Tensor::from_json(v).map_err(|e| Error::User(format!("{}: input `{name}`: {e}", path.display())))?;
        res.insert(name.clone(), t);
    }
    Ok(res)
}

/// Whether a weights file is a safetensors file (by its extension,
/// `.safetensors`); any other is JSON.
pub fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// The largest rename map file read (`snnc run --rename-map`): 1 MiB.
pub const MAX_RENAME_MAP_BYTES: u64 = 1 << 20;

/// Reads a rename map file ([`snnc_runtime::parse_rename_map`]), with the
/// bounded reader; errors name the file and the line.
pub fn read_rename_map(path: &Path) -> Result<Vec<(String, String)>, Error> {
    let fail = |why: String| Error::User(format!("{}: {why}", path.display()));
    let bytes = memory::read_binary_file(path, "the rename map", MAX_RENAME_MAP_BYTES)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| fail(format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))?;
    snnc_runtime::parse_rename_map(&text).map_err(fail)
}

/// Reads a weights file for `module`: safetensors by extension
/// ([`is_safetensors`]), else JSON, both read with the limit
/// [`memory::weights_file_limit`]. `renames` (`OLD=NEW`, see
/// [`snnc_runtime::rename_weights`]) apply to the file's names first. Then
/// the constant masks the file leaves out are filled in, and the weights
/// are checked (names, shapes, finite values in the module's float type)
/// and converted to that type. Every error is the user's (exit 2) and
/// names the file.
pub fn read_weights_file(module: &Module, path: &Path, renames: &[(String, String)]) -> Result<Weights, Error> {
    let in_file = |e: String| Error::User(format!("{}: {e}", path.display()));
    let limit = memory::weights_file_limit(module);
    let mut weights = if is_safetensors(path) {
        let bytes = memory::read_binary_file(path, "the weights file", limit)?;
        snnc_runtime::read_weights_safetensors(&bytes).map_err(in_file)?
    } else {
        let text = memory::read_json_file(path, "the weights file", limit)?;
        snnc_runtime::read_weights_json(&text).map_err(in_file)?
    };
    snnc_runtime::rename_weights(&mut weights, renames).map_err(in_file)?;
    // Constant masks are not part of a weights file; fill them in.
    snnc_runtime::complete_weights(module, &mut weights);
    let check = |e: snnc_runtime::CheckError| in_file(e.to_string());
    snnc_runtime::check_weights(module, &weights).map_err(|e| check(e.into()))?;
    // Before rounding: a float64 1e300 overflows an f32 run.
    let none = BTreeMap::new();
    snnc_runtime::check_finite(module, &weights, &none, &none).map_err(check)?;
    let dtype = elem_type(module.float);
    weights.values_mut().for_each(|t| *t = t.cast(dtype));
    Ok(weights)
}

/// A validated module made ready to run on one target: the one place that
/// knows how each backend runs a module from its initial state (training,
/// evaluation and benchmarks use it).
#[derive(Debug)]
pub enum ModuleRunner {
    Interp(Box<(Module, ModuleInfo)>),
    Cpu(Box<snnc_cpu::Executable>),
    Cuda(Box<CudaRunner>),
}

impl ModuleRunner {
    /// Compiles `module` for `target` (the interpreter needs nothing).
    pub fn new(module: Module, info: ModuleInfo, target: Target) -> Result<ModuleRunner, Error> {
        Ok(match target {
            Target::Interp => ModuleRunner::Interp(Box::new((module, info))),
            Target::Cpu => ModuleRunner::Cpu(Box::new(snnc_cpu::compile(&module, &info)?)),
            Target::Cuda => ModuleRunner::Cuda(Box::new(CudaRunner::new(&module, &info)?)),
        })
    }

    /// The module it runs.
    pub fn module(&self) -> &Module {
        match self {
            ModuleRunner::Interp(m) => &m.0,
            ModuleRunner::Cpu(exe) => exe.module(),
            ModuleRunner::Cuda(exe) => &exe.module,
        }
    }

    /// What a run with `batch` samples holds: the part of a
    /// [`memory::Need`]. Device buffers (cuda) are not host memory: they
    /// are listed for the absurdity limits only (see [`memory::check_against`]).
    pub fn memory_part(&self, batch: usize) -> memory::Part<'_> {
        let buffers = match self {
            ModuleRunner::Interp(m) => memory::interp_buffers(&m.0, false),
            ModuleRunner::Cpu(exe) => exe.planned_buffers(false),
            ModuleRunner::Cuda(exe) => memory::cuda_buffers(&exe.module, exe.exe.manifest()),
        };
        let tensor_limit = matches!(self, ModuleRunner::Cuda(_)).then_some(memory::MAX_TENSOR_VALUES);
        memory::Part { module: self.module(), batch: batch as u64, buffers, tensor_limit }
    }

    /// Refuses a run with `batch` samples that does not fit in memory (see
    /// [`memory`]); the buffers a CPU executable holds for another batch
    /// size count as available (they are freed first), and buffers it
    /// holds for this one need nothing more.
    pub fn check_memory(&self, batch: usize, what: &str) -> Result<(), Error> {
        let need = memory::Need { what: what.to_string(), parts: vec![self.memory_part(batch)], extra: 0 };
        let mut avail = memory::available()?;
        match self {
            ModuleRunner::Cpu(exe) => match exe.held_buffers() {
                Some((b, false, _)) if b == batch => return Ok(()),
                Some((_, _, held)) => {
                    if let Some(a) = &mut avail {
                        a.bytes = a.bytes.saturating_add(u64::try_from(held).unwrap_or(u64::MAX));
                    }
                }
                None => {}
            },
            ModuleRunner::Cuda(_) => avail = None,
            ModuleRunner::Interp(_) => {}
        }
        memory::check_against(&need, avail)
    }

    /// Runs from the initial state; the module's outputs. Shapes are
    /// checked before anything runs, and the memory the run needs (see
    /// [`ModuleRunner::check_memory`]).
    pub fn run(&self, weights: &Weights, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>, Error> {
        let module = self.module();
        self.check_memory(batch_of(module, inputs), &format!("running `{}`", module.name))?;
        match self {
            ModuleRunner::Interp(m) => {
                let (module, info) = &**m;
                let opts = snnc_interp::RunOptions::default();
                let res =
                    snnc_interp::run(module, info, weights, inputs, &opts).map_err(|e| Error::User(e.to_string()))?;
                Ok(res.outputs)
            }
            ModuleRunner::Cpu(exe) => {
                let opts = snnc_cpu::RunOptions { skip_final_state: true, ..Default::default() };
                Ok(exe.run(weights, inputs, &opts)?.outputs)
            }
            ModuleRunner::Cuda(exe) => exe.run(weights, inputs),
        }
    }
}

/// A module emitted as PTX and loaded on the first GPU (the CUDA backend's
/// runtime; checked against the interpreter on a PTX simulator, not yet on
/// a GPU). Runs from the initial state and returns the outputs.
#[derive(Debug)]
pub struct CudaRunner {
    module: Module,
    exe: snnc_cuda::CudaExecutable,
}

impl CudaRunner {
    /// Emits PTX for the device's architecture (sm_90 for compute
    /// capability 9.x and newer, else sm_80) and loads it.
    pub fn new(module: &Module, info: &ModuleInfo) -> Result<CudaRunner, Error> {
        let arch = match snnc_cuda::probe() {
            snnc_cuda::GpuStatus::Ok { compute_capability: (major, _), .. } if major >= 9 => snnc_cuda::Arch::Sm90,
            snnc_cuda::GpuStatus::Ok { .. } => snnc_cuda::Arch::Sm80,
            other => {
                let why = other.problem().unwrap_or_default();
                return Err(Error::Environment(format!("--target cuda: no usable GPU ({why}); use --target cpu")));
            }
        };
        let art = snnc_cuda::emit(module, info, &snnc_cuda::CudaOptions { arch }).map_err(cuda_error)?;
        let exe = snnc_cuda::CudaExecutable::load(&art).map_err(cuda_error)?;
        Ok(CudaRunner { module: module.clone(), exe })
    }

    /// Runs the module: weights and inputs are checked against the module
    /// ([`snnc_runtime::check_run`]: names, shapes, one batch size) before
    /// anything reaches the GPU.
    pub fn run(&self, weights: &Weights, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>, Error> {
        let none = BTreeMap::new();
        let batch =
            snnc_runtime::check_run(&self.module, weights, inputs, &none).map_err(|e| Error::User(e.to_string()))?;
        let to_f32 = |t: &Tensor| t.data.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let host_inputs = inputs.iter().map(|(k, t)| (k.clone(), to_f32(t))).collect();
        let params = weights.iter().map(|(k, t)| (k.clone(), to_f32(t))).collect();
        let res = self.exe.forward(batch, &host_inputs, &params).map_err(cuda_error)?;
        Ok(res
            .outputs
            .into_iter()
            .map(|(k, (shape, data))| {
                let data = data.into_iter().map(f64::from).collect();
                (k, Tensor { shape, dtype: ElemType::F32, data })
            })
            .collect())
    }
}

/// Checks a run a user asked for, before anything runs, with the rules
/// every backend shares: the weights and inputs fit the module
/// ([`snnc_runtime::check_run`]) and every value is finite in the module's
/// float type ([`snnc_runtime::check_finite`]). Returns the batch size.
pub fn check_run(module: &Module, weights: &Weights, inputs: &BTreeMap<String, Tensor>) -> Result<usize, Error> {
    let none = BTreeMap::new();
    let batch = snnc_runtime::check_run(module, weights, inputs, &none).map_err(|e| Error::User(e.to_string()))?;
    snnc_runtime::check_finite(module, weights, inputs, &none).map_err(|e| Error::User(e.to_string()))?;
    Ok(batch)
}

/// The driver's error for a CUDA backend error.
pub fn cuda_error(e: snnc_cuda::CudaError) -> Error {
    use snnc_cuda::CudaError;
    match e {
        CudaError::Unsupported(_) => Error::User(format!("{e}; use --target cpu")),
        CudaError::NoDevice(_) => Error::Environment(e.to_string()),
        CudaError::Input(_) => Error::User(e.to_string()),
        _ => Error::Internal(e.to_string()),
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub outputs: BTreeMap<String, Tensor>,
    pub traces: BTreeMap<String, Tensor>,
    pub batch: usize,
    /// Every state after the last step, by state name (empty on cuda).
    pub final_state: BTreeMap<String, Tensor>,
}

/// The weights after a run: `weights` with every plastic parameter (the
/// initial value of a `StateInit::Param` state) replaced by its state's
/// final value, so a later run (`--weights`) continues from them.
pub fn weights_after_run(module: &Module, weights: &Weights, final_state: &BTreeMap<String, Tensor>) -> Weights {
    let mut res = weights.clone();
    for (_, s) in module.states.iter() {
        if let snnc_ir::StateInit::Param(p) = s.init
            && let Some(t) = final_state.get(&s.name)
        {
            let name = &module.params[p].name;
            let dtype = res.get(name).map_or(t.dtype, |w| w.dtype);
            res.insert(name.clone(), t.cast(dtype));
        }
    }
    res
}

/// Whether the module has a plastic weight (a state starting at a
/// parameter's value).
pub fn has_plastic_weights(module: &Module) -> bool {
    module.states.iter().any(|(_, s)| matches!(s.init, snnc_ir::StateInit::Param(_)))
}

/// Runs a compiled network on a target.
pub fn run(
    compiled: &Compiled,
    target: Target,
    weights: &Weights,
    inputs: &BTreeMap<String, Tensor>,
    record: bool,
) -> Result<RunOutput, Error> {
    check_run(&compiled.module, weights, inputs)?;
    target.ensure_available()?;
    let module = &compiled.module;
    let batch = batch_of(module, inputs);
    let need = |buffers| {
        let what = format!("running `{}` on {}", compiled.network.name, target.name());
        let tensor_limit = (target == Target::Cuda).then_some(memory::MAX_TENSOR_VALUES);
        memory::Need {
            what,
            parts: vec![memory::Part { module, batch: batch as u64, buffers, tensor_limit }],
            extra: 0,
        }
    };
    let (outputs, traces, final_state) = match target {
        Target::Interp => {
            memory::check(&need(memory::interp_buffers(module, record)))?;
            let opts = snnc_interp::RunOptions { record, ..Default::default() };
            let res = snnc_interp::run(&compiled.module, &compiled.info, weights, inputs, &opts)
                .map_err(|e| Error::User(e.to_string()))?;
            (res.outputs, res.traces, res.final_state)
        }
        Target::Cpu => {
            let exe = snnc_cpu::compile(&compiled.module, &compiled.info)?;
            memory::check(&need(exe.planned_buffers(record)))?;
            let opts = snnc_cpu::RunOptions { record, ..Default::default() };
            let res = exe.run(weights, inputs, &opts)?;
            (res.outputs, res.traces, res.final_state)
        }
        Target::Cuda => {
            if record {
                return Err(Error::User(
                    "--record: the cuda backend does not record traces yet; record with --target cpu".into(),
                ));
            }
            let exe = CudaRunner::new(&compiled.module, &compiled.info)?;
            memory::check_against(&need(memory::cuda_buffers(module, exe.exe.manifest())), None)?;
            (exe.run(weights, inputs)?, BTreeMap::new(), BTreeMap::new())
        }
    };
    Ok(RunOutput { outputs, traces, batch, final_state })
}

/// The batch size of `inputs` for `module`: that of the first module input
/// with a batch dim given (1 if none).
pub fn batch_of(module: &Module, inputs: &BTreeMap<String, Tensor>) -> usize {
    module
        .inputs
        .iter()
        .find_map(|(_, input)| {
            let pos = input.ty.full_dims(module.steps).iter().position(|d| *d == Dim::Batch)?;
            inputs.get(&input.name)?.shape.get(pos).copied()
        })
        .unwrap_or(1)
}
