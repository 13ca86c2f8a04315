//! Loading and running emitted PTX on a GPU through cudarc.
//!
//! **Untested on a GPU**: this code was written and compiled on machines
//! without one. It follows the manifest (`manifest.rs`) literally: one
//! device buffer per manifest buffer, the launches of every region in
//! order, per-step regions once per step with `step_row` buffers offset to
//! row `t`.
//!
//! cudarc is built with dynamic loading, so nothing links against CUDA:
//! without a driver library, [`probe`] says so and every entry point
//! returns [`CudaError::NoDevice`] instead of panicking (cudarc itself
//! panics when the library is missing, so [`probe`] looks for the library
//! first and catches panics).

// The CUDA boundary: querying for the driver library and launching
// kernels are `unsafe` in cudarc.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;

use crate::manifest::Arg;
use crate::{CudaArtifact, CudaError, Manifest};

/// What the machine offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuStatus {
    /// A driver and at least one device: the first one's name and compute
    /// capability.
    Ok { devices: i32, name: String, compute_capability: (i32, i32) },
    /// No CUDA driver library (`libcuda.so`) on this machine.
    NoDriverLib,
    /// The driver is there but failed (e.g. no device): its message.
    DriverError(String),
}

impl GpuStatus {
    /// Why there is no usable GPU (`None` when there is one).
    pub fn problem(&self) -> Option<String> {
        match self {
            GpuStatus::Ok { .. } => None,
            GpuStatus::NoDriverLib => Some("no CUDA driver library (libcuda.so) on this machine".into()),
            GpuStatus::DriverError(e) => Some(format!("the CUDA driver failed: {e}")),
        }
    }
}

/// Looks for a GPU. Never panics: without the driver library it returns
/// [`GpuStatus::NoDriverLib`] before cudarc is asked anything.
pub fn probe() -> GpuStatus {
    // SAFETY: `is_culib_present` only tries to dlopen the driver library
    // by name and drops the handle; it touches no CUDA state.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return GpuStatus::NoDriverLib;
    }
    let query = || -> Result<(i32, String, (i32, i32)), DriverError> {
        let devices = CudaContext::device_count()?;
        let ctx = CudaContext::new(0)?;
        Ok((devices, ctx.name()?, ctx.compute_capability()?))
    };
    match std::panic::catch_unwind(query) {
        Ok(Ok((devices, name, compute_capability))) => GpuStatus::Ok { devices, name, compute_capability },
        Ok(Err(e)) => GpuStatus::DriverError(format!("{e:?}")),
        Err(_) => GpuStatus::DriverError("cudarc panicked while opening the device".into()),
    }
}

fn driver(e: DriverError) -> CudaError {
    CudaError::Driver(format!("{e:?}"))
}

/// What a forward run produces: outputs and final states by name, as
/// flat row-major f32 data (spikes 0.0/1.0) with their dims.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostRun {
    pub outputs: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub final_state: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

/// An emitted module loaded on the first GPU (untested on a GPU; see the
/// module docs).
#[derive(Debug)]
pub struct CudaExecutable {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: BTreeMap<String, CudaFunction>,
    manifest: Manifest,
}

impl CudaExecutable {
    /// Loads the PTX of `artifact` on device 0 (the driver compiles it for
    /// the device). [`CudaError::NoDevice`] without a usable GPU.
    pub fn load(artifact: &CudaArtifact) -> Result<Self, CudaError> {
        if let Some(why) = probe().problem() {
            return Err(CudaError::NoDevice(why));
        }
        let ctx = CudaContext::new(0).map_err(driver)?;
        let stream = ctx.default_stream();
        let module = ctx.load_module(Ptx::from_src(artifact.ptx.clone())).map_err(driver)?;
        let mut functions = BTreeMap::new();
        for k in &artifact.manifest.kernels {
            functions.insert(k.name.clone(), module.load_function(&k.name).map_err(driver)?);
        }
        Ok(CudaExecutable { ctx, stream, functions, manifest: artifact.manifest.clone() })
    }

    /// The manifest the executable runs.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Runs the module forward for `batch` samples. `inputs` and `params`
    /// hold every input and parameter by name, flat row-major f32 with the
    /// manifest buffer's element count; states start at their initial
    /// values.
    pub fn forward(
        &self,
        batch: usize,
        inputs: &BTreeMap<String, Vec<f32>>,
        params: &BTreeMap<String, Vec<f32>>,
    ) -> Result<HostRun, CudaError> {
        let m = &self.manifest;
        let b = u32::try_from(batch).map_err(|_| CudaError::Input(format!("batch size {batch} is too large")))?;
        let elements = |id: usize| -> Result<usize, CudaError> {
            let buf = &m.buffers[id];
            let bytes =
                if buf.batched { buf.bytes_per_sample.saturating_mul(u64::from(b)) } else { buf.bytes_per_sample };
            let n = bytes / 4;
            if n >= 1 << 32 {
                return Err(CudaError::Input(format!("buffer `{}` needs {n} elements (at most 2^32)", buf.name)));
            }
            Ok(n as usize)
        };
        // Host data of every buffer that is uploaded.
        let mut host: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
        for (bindings, what, data) in [(&m.inputs, "input", inputs), (&m.params, "parameter", params)] {
            for bnd in bindings {
                let d =
                    data.get(&bnd.name).ok_or_else(|| CudaError::Input(format!("{what} `{}` is missing", bnd.name)))?;
                let n = elements(bnd.buffer)?;
                if d.len() != n {
                    return Err(CudaError::Input(format!(
                        "{what} `{}` has {} values, expected {n}",
                        bnd.name,
                        d.len()
                    )));
                }
                host.insert(bnd.buffer, d.clone());
            }
        }
        for s in &m.states {
            let init = match s.init_param.and_then(|p| host.get(&p)) {
                Some(w) => w.clone(),
                None => s.initial(elements(s.buffer)?),
            };
            host.insert(s.buffer, init);
        }
        self.ctx.bind_to_thread().map_err(driver)?;
        let mut bufs: Vec<CudaSlice<f32>> = Vec::with_capacity(m.buffers.len());
        for buf in &m.buffers {
            let n = elements(buf.id)?.max(1);
            let slice = match host.get(&buf.id) {
                Some(d) if !d.is_empty() => self.stream.clone_htod(d).map_err(driver)?,
                _ => self.stream.alloc_zeros::<f32>(n).map_err(driver)?,
            };
            bufs.push(slice);
        }
        for (t, launch) in m.launch_order() {
            let f = self
                .functions
                .get(&launch.kernel)
                .ok_or_else(|| CudaError::Invalid(format!("kernel `{}` is not loaded", launch.kernel)))?;
            let step = t.unwrap_or(0);
            // Every buffer argument as a view (offset to row t where asked).
            let mut views = Vec::new();
            for a in &launch.args {
                if let Arg::Buffer { buffer, step_row } = *a {
                    let offset =
                        if step_row { step as usize * (elements(buffer)? / m.steps.max(1) as usize) } else { 0 };
                    views.push(bufs[buffer].slice(offset..));
                }
            }
            let mut builder = self.stream.launch_builder(f);
            let mut next_view = views.iter();
            for a in &launch.args {
                match a {
                    Arg::Batch => builder.arg(&b),
                    Arg::Step => builder.arg(&step),
                    Arg::Buffer { .. } => builder.arg(next_view.next().expect("one view per buffer argument")),
                };
            }
            let grid = |i: usize| -> Result<u32, CudaError> {
                u32::try_from(launch.grid[i].blocks(u64::from(b)))
                    .map_err(|_| CudaError::Input(format!("`{}` needs too many blocks", launch.kernel)))
            };
            let cfg = LaunchConfig {
                grid_dim: (grid(0)?, grid(1)?, grid(2)?),
                block_dim: (launch.block[0], launch.block[1], launch.block[2]),
                shared_mem_bytes: launch.shared_bytes,
            };
            // SAFETY: the kernel's parameters are the manifest's (the batch
            // size and step as u32, buffers as device pointers, in order),
            // every buffer was allocated with the manifest's size for this
            // batch, and the kernels index only within those sizes.
            unsafe { builder.launch(cfg) }.map_err(driver)?;
        }
        self.stream.synchronize().map_err(driver)?;
        let dims = |id: usize| -> Vec<usize> {
            m.buffers[id].dims.iter().map(|d| if d == "B" { batch } else { d.parse().unwrap_or(0) }).collect()
        };
        let mut run = HostRun::default();
        for o in &m.outputs {
            let data = self.stream.clone_dtoh(&bufs[o.buffer]).map_err(driver)?;
            run.outputs.insert(o.name.clone(), (dims(o.buffer), data));
        }
        for s in &m.states {
            let data = self.stream.clone_dtoh(&bufs[s.buffer]).map_err(driver)?;
            run.final_state.insert(s.name.clone(), (dims(s.buffer), data));
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where there is no GPU (every machine these tests run on so far),
    /// probing and loading fail cleanly; where there is one, probing finds
    /// it.
    #[test]
    fn without_a_gpu_everything_says_no_device() {
        let status = probe();
        match &status {
            GpuStatus::Ok { devices, .. } => assert!(*devices >= 1),
            _ => {
                let artifact = CudaArtifact {
                    ptx: String::new(),
                    manifest: serde_json::from_str(EMPTY_MANIFEST).expect("a valid manifest"),
                };
                match CudaExecutable::load(&artifact) {
                    Err(CudaError::NoDevice(why)) => assert!(!why.is_empty()),
                    other => panic!("expected NoDevice, got {other:?}"),
                }
            }
        }
    }

    const EMPTY_MANIFEST: &str = r#"{"module":"m","arch":"sm_80","ptx_version":"7.0","steps":1,
        "spike_storage":"f32","index_bits":32,"dense_matmul":"ptx_sgemm","buffers":[],"kernels":[],
        "regions":[],"inputs":[],"params":[],"states":[],"outputs":[]}"#;
}
