//! NIR export (`snnc export`, `docs/nir.md` "Export") and the round trips:
//!
//! * every example and fixture network NIR can express is exported, the
//!   file passes NIR's own reader (`nir.read`, which type-checks the
//!   graph; `scripts/install-nir.sh` installs nir 1.0.8), and reading it
//!   back gives the very same IR (so `LIFRecurrent` and `LILinear` come
//!   back as the cell, not as a chain of layers), bit-identical outputs
//!   (interpreter f64 and CPU f32) and bit-identical gradients
//!   (interpreter f64) with the same weights; the
//!   others are refused with the reason (listed in [`REFUSED`]);
//! * every real file of `tests/nir/`, read under `spec`, exported and read
//!   again, keeps every value of every node, its type, and the graph (the
//!   same network and weights).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use snnc::driver::{self, Target};
use snnc::{nir_export, nir_import};
use snnc_frontend::nir::{self as nirmod, NirFile, NirGraph, NirOptions, NodeKind, Producer};
use snnc_frontend::{LowerOptions, Network};
use snnc_ir::Dtype;
use snnc_passes::AutodiffOptions;
use snnc_runtime::{ElemType, Tensor, Weights};
use support::{TempDir, snnc, stderr};

/// The example and fixture networks NIR cannot express, and why (a part
/// of the error message).
const REFUSED: [(&str, &str); 23] = [
    ("examples/convnet.ron", "ConstantCurrent encoder has no NIR node"),
    ("examples/convnet_direct.ron", "Direct encoder has no NIR node"),
    ("examples/convnet_small.ron", "ConstantCurrent encoder has no NIR node"),
    ("examples/custom_neuron.ron", "is none of NIR's neurons"),
    ("examples/sew_resnet.ron", "Direct encoder has no NIR node"),
    ("examples/stdp_fields.ron", "Poisson encoder has no NIR node"),
    ("examples/tutorial.ron", "ConstantCurrent encoder has no NIR node"),
    ("tests/nets/batchnorm.ron", "NIR has no batch normalisation"),
    ("tests/nets/conv.ron", "NIR has no max pooling"),
    ("tests/nets/conv_options.ron", "NIR has no max pooling"),
    ("tests/nets/convnet.ron", "ConstantCurrent encoder has no NIR node"),
    ("tests/nets/direct_conv.ron", "Direct encoder has no NIR node"),
    ("tests/nets/encoders.ron", "SpikeLatency encoder has no NIR node"),
    ("tests/nets/graph_concat.ron", "NIR sums the edges into a node and has no concatenation"),
    ("tests/nets/lif_box_adex.ron", "NIR has no adaptive exponential neuron"),
    ("tests/nets/lsnn.ron", "NIR has no adaptive-threshold neuron"),
    ("tests/nets/poisson.ron", "Poisson encoder has no NIR node"),
    ("tests/nets/population.ron", "Population encoder has no NIR node"),
    ("tests/nets/signed_poisson.ron", "SignedPoisson encoder has no NIR node"),
    ("tests/nets/stdp.ron", "NIR has no plasticity"),
    ("tests/nets/tsodyks_markram.ron", "Poisson encoder has no NIR node"),
    ("tests/nets/tutorial.ron", "ConstantCurrent encoder has no NIR node"),
    ("tests/nets/zoo.ron", "has no NIR node"),
];

/// The networks that round-trip (besides the inline ones below).
const EXPRESSIBLE: [&str; 8] = [
    "examples/li.ron",
    "examples/lif.ron",
    "tests/nets/deep_ff.ron",
    "tests/nets/graph_residual.ron",
    "tests/nets/li_linear.ron",
    "tests/nets/lif_ff.ron",
    "tests/nets/lif_recurrent.ron",
    "tests/nets/plif.ron",
];

/// Every NIR layer kind the exporter writes, with the options that matter:
/// Conv2d (stride, padding, dilation, no bias; groups > 1 are exported but
/// NIR 1.0.8's type check rejects them: it takes `weight.shape[1]` for the
/// input channels, and non-square kernels: it takes `weight.shape[2]` for
/// both), LIFBox (reset by
/// subtraction, tanh surrogate, trainable tau), SumPool2d, IAF, AvgPool2d
/// (padded), Flatten, Scale, Affine, per-neuron
/// LIBox, and a readout.
const CONV_NET: &str = r#"(version: 1, name: "conv_all", steps: 5, input: [2, 9, 9], layers: [
    Conv2d(name: "c1", out_channels: 4, kernel_size: 3, stride: 2, padding: 1, bias: false),
    LIFBox(name: "box", p: (reset_method: subtract, method: tanh, alpha: 50, v_th: 0.3, trainable: [tau_mem_inv])),
    SumPool2d(name: "sum", kernel_size: 2),
    Conv2d(name: "c2", out_channels: 4, kernel_size: 3, dilation: 2, padding: 2),
    IAF(name: "iaf", p: (v_th: 0.2)),
    AvgPool2d(name: "avg", kernel_size: 2, stride: 1, padding: 1),
    Flatten(name: "flat"),
    Scale(name: "half", factor: 0.5),
    Linear(name: "fc", out: 5),
    LIBox(name: "out", p: (tau_mem_inv: [100, 90, 80, 70, 60], v_leak: 0.1)),
], readout: MaxLogSoftmax)"#;

/// Cross-layer recurrence (a cycle through `recurrent_inputs`), a named sum
/// and a layer read by two others.
const CYCLE_NET: &str = r#"(version: 1, name: "cycle", steps: 7, input: [3], layers: [
    Linear(name: "a", out: 4),
    Identity(name: "m", inputs: ["a"], recurrent_inputs: ["b"]),
    LIF(name: "l", p: (v_th: 0.1, tau_syn_inv: 333.3, method: circ)),
    Linear(name: "b", out: 4, bias: false, inputs: ["l"]),
    LI(name: "o", inputs: ["l"]),
])"#;

fn root(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// The directory holding NIR's Python package, or `None` (with the skip
/// printed) where it is missing and `CI` is not set.
fn nir_pythonpath() -> Option<PathBuf> {
    let dir = match std::env::var_os("SNNC_NIR_PYTHONPATH") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".cache/snnc/nir-1.0.8")
        }
    };
    if dir.join("nir").is_dir() {
        return Some(dir);
    }
    let message = format!("NIR's Python package not found in {} (run scripts/install-nir.sh)", dir.display());
    if std::env::var_os("CI").is_some() {
        panic!("{message}; CI is set, so the exported files must be read by nir.read");
    }
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let _ = writeln!(std::io::stderr().lock(), "{}: {test} SKIPPED: {message}", file!());
    None
}

/// Runs `nir.read` (type-checked) on each file; panics with Python's
/// message on the first it rejects.
fn python_reads(files: &[String]) {
    let Some(pp) = nir_pythonpath() else { return };
    let script = "import sys, nir\nfor f in sys.argv[1:]:\n    g = nir.read(f, type_check=True)\n    assert g.metadata['producer'] in ('snnc', b'snnc'), f\nprint('read', len(sys.argv) - 1)";
    let out = std::process::Command::new("python3")
        .env("PYTHONPATH", &pp)
        .arg("-c")
        .arg(script)
        .args(files)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "nir.read rejects an exported file:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("read {}", files.len()));
}

fn f64_weights(module: &snnc_ir::Module, seed: u64) -> Weights {
    snnc_runtime::init_weights(module, seed)
}

/// Exports `net` with `weights` to `dir`, reads it back (default options).
fn round_trip(net: &Network, weights: &Weights, dir: &TempDir, file: &str) -> (String, nir_import::Imported) {
    let bytes = nir_export::export_bytes(net, weights, Path::new(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let path = dir.write(&format!("{}.nir", net.name), bytes);
    let imported = nir_import::import(Path::new(&path), &NirOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    (path, imported)
}

fn compiled(net: &Network, float: Dtype, target: Target) -> driver::Compiled {
    let mut c = driver::compile(net, "t", &LowerOptions { float, ..Default::default() }).unwrap();
    let pipeline = driver::pipeline(target, None, &Default::default()).unwrap();
    driver::optimize(&mut c, &pipeline, &mut |_| {}).unwrap();
    c
}

fn cast(w: &Weights, e: ElemType) -> Weights {
    w.iter().map(|(k, t)| (k.clone(), t.cast(e))).collect()
}

fn same_bits(what: &str, a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: the outputs");
    for (k, x) in a {
        let y = &b[k];
        assert_eq!(x.shape, y.shape, "{what}: `{k}`");
        for (i, (p, q)) in x.data.iter().zip(&y.data).enumerate() {
            assert_eq!(p.to_bits(), q.to_bits(), "{what}: `{k}`[{i}]: {p} vs {q}");
        }
    }
}

/// `sum(seed * output)`'s gradients on the interpreter in f64.
fn gradients(net: &Network, weights: &Weights, example: &snnc_frontend::ExampleInput) -> BTreeMap<String, Tensor> {
    // Differentiated before any pass (as training does).
    let c = driver::compile(net, "t", &LowerOptions { float: Dtype::F64, ..Default::default() }).unwrap();
    let inputs = driver::example_inputs(&c.module, example, 2).unwrap();
    let out = driver::run(&c, Target::Interp, weights, &inputs, false).unwrap().outputs;
    let y = &out["output"];
    let mut m = c.module.clone();
    let report = snnc_passes::differentiate(&mut m, &AutodiffOptions { seeds: vec!["output".into()], inputs: vec![] })
        .unwrap_or_else(|e| panic!("{e}"));
    if report.gradients.is_empty() {
        return BTreeMap::new();
    }
    let seed: Vec<f64> = (0..y.data.len()).map(|k| ((k * 37) % 11) as f64 / 5.0 - 1.0).collect();
    let mut inputs = inputs;
    inputs.insert(report.seeds[0].1.clone(), Tensor::new(y.shape.clone(), ElemType::F64, seed).unwrap());
    let info = snnc_ir::validate(&m).unwrap();
    let r = snnc_interp::run(&m, &info, weights, &inputs, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    report.gradients.iter().map(|(p, o)| (p.clone(), r.outputs[o].clone())).collect()
}

/// How many round trips compared gradients (networks without weights have none).
static GRADIENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The round trip of one network: the same outputs and gradients.
fn check_round_trip(net: &Network, file: &str, dir: &TempDir) -> String {
    let m64 = compiled(net, Dtype::F64, Target::Interp);
    let w = f64_weights(&m64.module, 7);
    let (path, back) = round_trip(net, &w, dir, file);
    let p = Path::new(&path);
    let ir = |n: &Network| {
        let c = driver::compile(n, "t", &LowerOptions { float: Dtype::F64, ..Default::default() }).unwrap();
        snnc_ir::print(&c.module)
    };
    // The very same IR (before any pass): LIFRecurrent and LILinear are read back as the cell.
    assert_eq!(ir(net), ir(&back.network), "{file}: the IR read back");
    for (target, float) in [(Target::Interp, Dtype::F64), (Target::Cpu, Dtype::F32)] {
        let a = compiled(net, float, target);
        let b = compiled(&back.network, float, target);
        let wa = cast(&w, if float == Dtype::F64 { ElemType::F64 } else { ElemType::F32 });
        let wb = nir_import::module_weights(&b.module, p, &back.weights).unwrap();
        let xa = driver::example_inputs(&a.module, &net.example_input, 2).unwrap();
        // NIR has no example input: both run the original's.
        let xb = xa.clone();
        let ya = driver::run(&a, target, &wa, &xa, false).unwrap().outputs;
        let yb = driver::run(&b, target, &wb, &xb, false).unwrap().outputs;
        same_bits(&format!("{file}: {target:?} outputs"), &ya, &yb);
    }
    let wb = nir_import::module_weights(&compiled(&back.network, Dtype::F64, Target::Interp).module, p, &back.weights)
        .unwrap();
    let ga = gradients(net, &w, &net.example_input);
    let gb = gradients(&back.network, &wb, &net.example_input);
    assert_eq!(ga.is_empty(), gb.is_empty(), "{file}: gradients on one side only");
    GRADIENTS.fetch_add(usize::from(!ga.is_empty()), std::sync::atomic::Ordering::Relaxed);
    same_bits(&format!("{file}: gradients"), &ga, &gb);
    path
}

#[test]
fn every_expressible_network_round_trips_with_the_same_bits() {
    let dir = TempDir::new("roundtrip");
    let mut files = Vec::new();
    for f in EXPRESSIBLE {
        let net = snnc_frontend::load_network(&root(f)).unwrap_or_else(|e| panic!("{e}"));
        files.push(check_round_trip(&net, f, &dir));
    }
    for (name, text) in [("conv_all", CONV_NET), ("cycle", CYCLE_NET)] {
        let net = snnc_frontend::parse_network(text, name).unwrap_or_else(|e| panic!("{e}"));
        files.push(check_round_trip(&net, name, &dir));
    }
    assert!(GRADIENTS.load(std::sync::atomic::Ordering::Relaxed) >= 7, "too few networks with gradients");
    python_reads(&files);
}

#[test]
fn every_other_example_and_fixture_is_refused_with_the_reason() {
    let mut all: Vec<String> = Vec::new();
    for d in ["examples", "tests/nets"] {
        for e in std::fs::read_dir(root(d)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "ron") {
                all.push(format!("{d}/{}", p.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    all.sort();
    let listed: Vec<&str> = REFUSED.iter().map(|(f, _)| *f).chain(EXPRESSIBLE).collect();
    for f in &all {
        assert!(listed.contains(&f.as_str()), "{f} is neither in EXPRESSIBLE nor in REFUSED");
    }
    let dir = TempDir::new("refused");
    for (f, why) in REFUSED {
        let out = snnc(&["export", root(f).to_str().unwrap(), "-o", &dir.path("x.nir")]);
        assert_eq!(out.status.code(), Some(2), "{f}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("cannot export to NIR") && err.contains(why), "{f}: {err}");
        assert!(!dir.0.join("x.nir").exists(), "{f}: a refused export writes nothing");
    }
}

#[test]
fn the_cli_exports_with_given_weights_and_reads_back() {
    let dir = TempDir::new("cli");
    let net = root("tests/nets/deep_ff.ron");
    let nir = dir.path("deep_ff.nir");
    let out = snnc(&["export", net.to_str().unwrap(), "-o", &nir]);
    assert!(out.status.success(), "{}", stderr(&out));
    let a = snnc(&["run", net.to_str().unwrap()]);
    let b = snnc(&["run", &nir]);
    assert!(a.status.success() && b.status.success(), "{}", stderr(&b));
    let summary = |o: &std::process::Output| -> String {
        support::stdout(o).lines().filter(|l| !l.contains(" ms") && !l.contains("µs")).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(summary(&a).replace("deep_ff.ron", ""), summary(&b).replace("deep_ff.nir", ""));
    // A .nir input is re-exported with its own weights.
    let again = dir.path("again.nir");
    let out = snnc(&["export", &nir, "-o", &again]);
    assert!(out.status.success(), "{}", stderr(&out));
    let x = nirmod::read_nir_file(Path::new(&nir)).unwrap();
    let y = nirmod::read_nir_file(Path::new(&again)).unwrap();
    assert_eq!(x.graph.nodes, y.graph.nodes);
    assert_eq!(x.graph.edges, y.graph.edges);
}

/// The leaf nodes of a graph by their snnc layer name (nested graphs
/// flattened, their Input and Output left out).
fn leaves(g: &NirGraph, prefix: &str, out: &mut BTreeMap<String, snnc_frontend::nir::NirNode>) {
    for (name, node) in &g.nodes {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        match &node.graph {
            Some(sub) => leaves(sub, &path, out),
            None if !prefix.is_empty() && matches!(node.kind, NodeKind::Input | NodeKind::Output) => {}
            None => {
                let s: String = path
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
                    .collect();
                out.insert(s, node.clone());
            }
        }
    }
}

/// The fields snnc writes in its own form: Conv2d's `padding` (a string
/// `same`/`valid` becomes numbers) and `input_shape`, Flatten's dims and
/// `input_type`, Input/Output shapes (a leading batch dimension of 1 is
/// dropped).
const NORMALISED: [&str; 6] = ["padding", "input_shape", "start_dim", "end_dim", "input_type", "shape"];

#[test]
fn every_real_nir_file_keeps_its_values_through_snnc() {
    let dir = TempDir::new("nir_back");
    let mut written = Vec::new();
    let mut compared = 0;
    for e in std::fs::read_dir(root("tests/nir")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "nir") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let o = NirOptions { producer: Producer::Spec, steps: Some(8), ..Default::default() };
        let orig: NirFile = nirmod::read_nir_file(&path).unwrap();
        let a = nir_import::import(&path, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = compiled(&a.network, Dtype::F64, Target::Interp);
        let w = nir_import::module_weights(&c.module, &path, &a.weights).unwrap();
        let bytes = nir_export::export_bytes(&a.network, &w, &path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = dir.write(&name, bytes);
        written.push(out.clone());
        let back = nirmod::read_nir_file(Path::new(&out)).unwrap();
        // The same network and weights, read under `spec`.
        let b = nir_import::import(Path::new(&out), &o).unwrap();
        assert_eq!(a.network.layers, b.network.layers, "{name}: the layers and their wiring");
        assert_eq!((&a.network.input, a.network.dt), (&b.network.input, b.network.dt), "{name}");
        assert_eq!(a.weights, b.weights, "{name}: the weights");
        // Every value of every node.
        let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
        leaves(&orig.graph, "", &mut before);
        leaves(&back.graph, "", &mut after);
        for (node, x) in &before {
            if matches!(x.kind, NodeKind::Input | NodeKind::Output) {
                continue;
            }
            // Nodes that lead to no Output are left out on import.
            let Some(y) = after.get(node) else { continue };
            assert_eq!(x.kind, y.kind, "{name}: node `{node}`");
            for (f, xa) in &x.params {
                if NORMALISED.contains(&f.as_str()) {
                    continue;
                }
                let ya = y.params.get(f).unwrap_or_else(|| panic!("{name}: node `{node}` lost `{f}`"));
                let n = xa.len().max(ya.len());
                assert!(xa.len() == n || xa.len() == 1, "{name}: `{node}.{f}`");
                assert!(ya.len() == n || ya.len() == 1, "{name}: `{node}.{f}`");
                for k in 0..n {
                    let (p, q) = (xa.data[k % xa.len()], ya.data[k % ya.len()]);
                    assert_eq!(p.to_bits(), q.to_bits(), "{name}: `{node}.{f}`[{k}]: {p} vs {q}");
                }
                compared += 1;
            }
        }
    }
    assert!(written.len() >= 15 && compared > 100, "{} files, {compared} fields", written.len());
    python_reads(&written);
}
