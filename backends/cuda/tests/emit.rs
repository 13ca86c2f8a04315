//! Emission of every example and fixture net after the default pipeline:
//! no panic, deterministic text, a manifest that agrees with the PTX.
//! (Assembling with ptxas is `tests/ptx.rs` of the root package.)

use std::path::{Path, PathBuf};

use snnc_cuda::{Arch, CudaError, CudaOptions, Manifest, Schedule};
use snnc_frontend::LowerOptions;
use snnc_ir::{Module, ModuleInfo};

fn nets() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["examples", "tests/nets"] {
        for e in std::fs::read_dir(root.join(dir)).expect("the directory exists") {
            let p = e.expect("readable").path();
            if p.extension().is_some_and(|x| x == "ron") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn lowered(path: &Path) -> (Module, ModuleInfo) {
    let net = snnc_frontend::load_network(path).unwrap_or_else(|e| panic!("{e}"));
    let mut module = snnc_frontend::lower(&net, &path.display().to_string(), &LowerOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let info = snnc_passes::default_pipeline(snnc_passes::PipelineKind::Cuda)
        .run_all(&mut module)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (module, info)
}

fn emit(path: &Path, arch: Arch) -> Result<snnc_cuda::CudaArtifact, CudaError> {
    let (module, info) = lowered(path);
    snnc_cuda::emit(&module, &info, &CudaOptions { arch })
}

#[test]
fn every_net_emits_deterministically() {
    let out = std::env::var_os("SNNC_CUDA_DUMP").map(PathBuf::from);
    for path in nets() {
        for arch in Arch::ALL {
            let a = emit(&path, arch).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let b = emit(&path, arch).expect("emitted once");
            assert_eq!(a.ptx, b.ptx, "{}", path.display());
            assert_eq!(a.manifest, b.manifest, "{}", path.display());
            check_manifest(&a.manifest, &a.ptx);
            if let Some(dir) = &out {
                let stem = path.file_stem().expect("a name").to_string_lossy();
                let dirname = path.parent().and_then(|p| p.file_name()).expect("a dir").to_string_lossy();
                std::fs::create_dir_all(dir).expect("dump dir");
                let base = dir.join(format!("{dirname}_{stem}_{}", arch.target()));
                std::fs::write(base.with_extension("ptx"), &a.ptx).expect("write");
                std::fs::write(base.with_extension("json"), a.manifest.to_json()).expect("write");
            }
        }
    }
}

/// Every launched kernel is in the PTX with the manifest's parameters,
/// every argument fits its parameter, every buffer exists.
fn check_manifest(m: &Manifest, ptx: &str) {
    for k in &m.kernels {
        assert!(ptx.contains(&format!(".visible .entry {}(", k.name)), "kernel {} missing", k.name);
    }
    for (_, l) in m.launch_order() {
        let k = m.kernels.iter().find(|k| k.name == l.kernel).expect("a launched kernel is listed");
        assert_eq!(k.params.len(), l.args.len(), "{}", l.kernel);
        for (p, a) in k.params.iter().zip(&l.args) {
            match a {
                snnc_cuda::Arg::Batch | snnc_cuda::Arg::Step => assert_eq!(p.ty, "u32", "{}", l.kernel),
                snnc_cuda::Arg::Buffer { buffer, .. } => {
                    assert_eq!(p.ty, "u64", "{}", l.kernel);
                    assert!(*buffer < m.buffers.len());
                }
            }
        }
    }
    for r in &m.regions {
        if r.schedule != Schedule::PerStep {
            assert!(r.prologue.is_empty());
        }
    }
}

#[test]
fn a_feed_forward_lif_loop_is_one_kernel() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let a = emit(&root.join("examples/lif.ron"), Arch::Sm80).expect("emits");
    let loops: Vec<_> = a.manifest.regions.iter().filter(|r| r.schedule == Schedule::LoopKernel).collect();
    assert!(!loops.is_empty());
    assert!(a.manifest.regions.iter().all(|r| r.schedule != Schedule::PerStep));
    assert!(a.ptx.contains(".target sm_80") && a.ptx.contains(".version 7.0"));
    assert!(!a.ptx.contains("fma."), "no FMA: a neuron update rounds every op");
    assert!(!a.ptx.contains(".approx"), "no approximate instruction");
}

#[test]
fn a_recurrent_loop_runs_step_by_step() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let a = emit(&root.join("examples/tutorial.ron"), Arch::Sm90).expect("emits");
    let per_step: Vec<_> = a.manifest.regions.iter().filter(|r| r.schedule == Schedule::PerStep).collect();
    assert_eq!(per_step.len(), 1, "{}", a.manifest.to_json());
    let r = per_step[0];
    assert_eq!(r.prologue.len(), 1, "the recurrent weight is prepared once");
    assert!(r.body.len() >= 3, "spike product (2 kernels) then the neuron kernel");
    assert!(a.ptx.contains(".target sm_90") && a.ptx.contains(".version 7.8"));
}

/// The training pipeline: the forward passes, `autodiff`, the optimising
/// passes (by name, so that this test needs only the pass registry).
const TRAINING: &str = "const-fold,cse,dce,time-batch,autodiff,sparsify,fuse,unroll,cse,dce";

#[test]
fn every_net_emits_its_backward_pass() {
    let out = std::env::var_os("SNNC_CUDA_DUMP").map(PathBuf::from);
    let Ok(pipeline) = snnc_passes::parse_pipeline(TRAINING, &snnc_passes::PassOptions::default()) else {
        eprintln!("skipped: no autodiff pass");
        return;
    };
    let mut emitted = 0;
    for path in nets() {
        let net = snnc_frontend::load_network(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut module = snnc_frontend::lower(&net, &path.display().to_string(), &LowerOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let info = match pipeline.run_all(&mut module) {
            Ok(info) => info,
            Err(e) => {
                eprintln!("{}: the training pipeline fails: {e}", path.display());
                continue;
            }
        };
        for arch in Arch::ALL {
            match snnc_cuda::emit(&module, &info, &CudaOptions { arch }) {
                Ok(a) => {
                    check_manifest(&a.manifest, &a.ptx);
                    emitted += 1;
                    if let Some(dir) = &out {
                        let stem = path.file_stem().expect("a name").to_string_lossy();
                        let base = dir.join(format!("bwd_{stem}_{}", arch.target()));
                        std::fs::create_dir_all(dir).expect("dump dir");
                        std::fs::write(base.with_extension("ptx"), &a.ptx).expect("write");
                        std::fs::write(base.with_extension("json"), a.manifest.to_json()).expect("write");
                    }
                }
                Err(e) => eprintln!("{}: {e}", path.display()),
            }
        }
    }
    eprintln!("{emitted} backward modules emitted");
}

#[test]
fn f64_modules_and_foreign_infos_are_errors_not_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let net = snnc_frontend::load_network(&root.join("examples/lif.ron")).expect("loads");
    let opts = LowerOptions { float: snnc_ir::Dtype::F64, ..LowerOptions::default() };
    let module = snnc_frontend::lower(&net, "lif.ron", &opts).expect("lowers");
    let info = snnc_ir::validate(&module).expect("valid");
    match snnc_cuda::emit(&module, &info, &CudaOptions::default()) {
        Err(CudaError::Unsupported(why)) => assert!(why.contains("f64"), "{why}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    let (other, other_info) = lowered(&root.join("examples/tutorial.ron"));
    let (lif, _) = lowered(&root.join("examples/lif.ron"));
    assert!(matches!(snnc_cuda::emit(&lif, &other_info, &CudaOptions::default()), Err(CudaError::InfoMismatch)));
    assert!(snnc_cuda::emit(&other, &other_info, &CudaOptions::default()).is_ok());
}

#[test]
fn the_manifest_round_trips_through_json() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let a = emit(&root.join("examples/tutorial.ron"), Arch::Sm80).expect("emits");
    let back: Manifest = serde_json::from_str(&a.manifest.to_json()).expect("parses");
    assert_eq!(back, a.manifest);
}
