//! Helpers of the passes' tests: fixture nets, deterministic inputs, runs
//! of the reference interpreter, and the bit-for-bit comparison of two runs.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use snnc_frontend::LowerOptions;
use snnc_interp::{RunOptions, RunResult};
use snnc_ir::{Dtype, Module, Op, RegionKind};
use snnc_runtime::{ElemType, Tensor};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every fixture net: `tests/nets/*.ron`, then the examples, by path.
pub fn fixture_paths() -> Vec<PathBuf> {
    let dir = root().join("tests/nets");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/nets exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    files.sort();
    for name in ["tutorial", "convnet", "lif", "li"] {
        files.push(root().join("examples").join(format!("{name}.ron")));
    }
    files
}

/// A fixture by name: `tests/nets/NAME.ron`, or `examples/NAME.ron` for
/// names starting with `examples/`.
pub fn path(name: &str) -> PathBuf {
    match name.strip_prefix("examples/") {
        Some(n) => root().join("examples").join(format!("{n}.ron")),
        None => root().join("tests/nets").join(format!("{name}.ron")),
    }
}

/// Lowers a network file in the given float type.
pub fn lower_file(path: &std::path::Path, float: Dtype) -> Module {
    let net = snnc_frontend::load_network(path).unwrap_or_else(|e| panic!("{e}"));
    lower_net(&net, float)
}

/// Lowers a network.
pub fn lower_net(net: &snnc_frontend::Network, float: Dtype) -> Module {
    let opts = LowerOptions { float, ..Default::default() };
    snnc_frontend::lower(net, "net.ron", &opts).unwrap_or_else(|e| panic!("{e}"))
}

/// A fixture by name, lowered in f32.
pub fn fixture(name: &str) -> Module {
    lower_file(&path(name), Dtype::F32)
}

/// Deterministic inputs for every module input: currents in `[0, 1.6)` per
/// step (so LIF neurons fire at various rates), or a static image in
/// `[0, 2)` for an encoder.
pub fn inputs(module: &Module, batch: usize) -> BTreeMap<String, Tensor> {
    let dtype = if module.float == Dtype::F64 { ElemType::F64 } else { ElemType::F32 };
    let mut res = BTreeMap::new();
    for (h, input) in module.inputs.iter() {
        let steps = if input.ty.seq { module.steps as usize } else { 1 };
        let per_step: usize = input.ty.shape.resolve(batch).iter().product();
        let scale = if input.ty.seq { 1.6 } else { 2.0 };
        let mut data = Vec::with_capacity(steps * per_step);
        for t in 0..steps {
            for k in 0..per_step {
                data.push(scale * snnc_ir::rng::uniform(100 + h.index() as u64, t as u32, k as u64));
            }
        }
        let mut shape = input.ty.shape.resolve(batch);
        if input.ty.seq {
            shape.insert(0, steps);
        }
        res.insert(input.name.clone(), Tensor::new(shape, dtype, data).expect("shape matches data"));
    }
    res
}

/// Runs a module on the interpreter with every named value recorded,
/// default weights of seed 3 and [`inputs`] of batch 2.
pub fn run(module: &Module) -> RunResult {
    run_batch(module, 2)
}

/// Whether a fixture is one of the big example nets, which the tests run
/// less often (the interpreter takes seconds on them in a test build).
pub fn heavy(path: &std::path::Path) -> bool {
    path.ends_with("examples/convnet.ron") || path.ends_with("examples/tutorial.ron")
}

/// [`run`] with a batch size.
pub fn run_batch(module: &Module, batch: usize) -> RunResult {
    let info = snnc_ir::validate(module).unwrap_or_else(|e| panic!("{e}\n{}", snnc_ir::print(module)));
    let weights = snnc_runtime::init_weights(module, 3);
    let opts = RunOptions { record: true, ..Default::default() };
    snnc_interp::run(module, &info, &weights, &inputs(module, batch), &opts).unwrap_or_else(|e| panic!("{e}"))
}

fn same_bits(a: &Tensor, b: &Tensor) -> bool {
    a.shape == b.shape
        && a.data.len() == b.data.len()
        && a.data.iter().zip(&b.data).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Checks that two runs give the same outputs, final states and traces
/// (the same names, each bit for bit); `what` names the comparison.
pub fn assert_same(what: &str, expected: &RunResult, actual: &RunResult) {
    for (kind, e, a) in [
        ("output", &expected.outputs, &actual.outputs),
        ("final state", &expected.final_state, &actual.final_state),
        ("trace", &expected.traces, &actual.traces),
    ] {
        let (ek, ak): (Vec<_>, Vec<_>) = (e.keys().collect(), a.keys().collect());
        assert_eq!(ek, ak, "{what}: the {kind} names differ");
        for (name, t) in e {
            let got = &a[name];
            // A named value hoisted out of its step loop (it reads only
            // static values) is recorded once: the same at every step.
            let hoisted = kind == "trace"
                && t.shape.len() == got.shape.len() + 1
                && t.shape[1..] == got.shape[..]
                && t.data
                    .chunks(got.data.len().max(1))
                    .all(|step| step.iter().zip(&got.data).all(|(x, y)| x.to_bits() == y.to_bits()));
            assert!(hoisted || same_bits(t, got), "{what}: {kind} `{name}` differs");
        }
    }
}

/// The regions of a module as `(kind, node count)`.
pub fn regions(module: &Module) -> Vec<(RegionKind, usize)> {
    module.body.iter().map(|r| (r.kind.clone(), r.nodes.len())).collect()
}

/// The names of the states written in each step loop, in body order.
pub fn loop_states(module: &Module) -> Vec<Vec<String>> {
    module
        .body
        .iter()
        .filter(|r| r.kind == RegionKind::Step)
        .map(|r| {
            r.nodes
                .iter()
                .filter_map(|&h| match module.nodes[h].op {
                    Op::StateWrite { state, .. } => Some(module.states[state].name.clone()),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// Runs one pass (by name) on a module and validates the result.
pub fn apply(module: &mut Module, name: &str) -> snnc_passes::PassReport {
    let pass = snnc_passes::by_name(name).unwrap_or_else(|| panic!("no pass `{name}`"));
    let report = pass.run(module).unwrap_or_else(|e| panic!("{name}: {e}"));
    snnc_ir::validate(module).unwrap_or_else(|e| panic!("{name} made invalid IR: {e}\n{}", snnc_ir::print(module)));
    report
}
