//! Unit tests of the NIR reader and converter: hand-built graphs of every
//! node type, the assumptions printed, and malformed files (written here
//! with hdf5-pure's writer in NIR's layout).

use std::collections::BTreeMap;

use hdf5_pure::FileBuilder;
use hdf5_pure::GroupBuilder;

use super::*;
use crate::neuron::InitValue;
use crate::schema::{Layer, ParamValue, ResetMethod};

fn a(shape: &[usize], data: &[f64]) -> Array {
    Array::new(shape.to_vec(), data.to_vec())
}

fn s(v: f64) -> Array {
    Array::scalar(v)
}

fn node(kind: NodeKind, p: &[(&str, Array)]) -> NirNode {
    NirNode::new(kind, p)
}

/// `input -> n -> output` around one node, input shape `[k]`.
fn around(k: usize, n: NirNode) -> NirFile {
    let nodes = vec![
        ("input".to_string(), node(NodeKind::Input, &[("shape", a(&[1], &[k as f64]))])),
        ("n".to_string(), n),
        ("output".to_string(), node(NodeKind::Output, &[("shape", a(&[1], &[k as f64]))])),
    ];
    let edges = vec![("input".into(), "n".into()), ("n".into(), "output".into())];
    NirFile { version: None, graph: NirGraph { nodes, edges, metadata: BTreeMap::new() } }
}

fn conv(f: &NirFile, p: Producer) -> Result<Converted, NirError> {
    convert(f, "t", &NirOptions { producer: p, steps: Some(4), ..Default::default() })
}

fn only(c: &Converted) -> &Layer {
    assert_eq!(c.network.layers.len(), 1, "{:?}", c.network.layers);
    &c.network.layers[0]
}

fn lif(r: f64) -> NirNode {
    node(
        NodeKind::LIF,
        &[("tau", a(&[2], &[0.01, 0.02])), ("r", s(r)), ("v_leak", s(0.0)), ("v_threshold", a(&[2], &[1.0, 1.0]))],
    )
}

#[test]
fn lif_is_lifbox_in_spec_and_norse_and_equations_otherwise() {
    let c = conv(&around(2, lif(1.0)), Producer::Spec).unwrap();
    match only(&c) {
        Layer::LIFBox { p, name, .. } => {
            assert_eq!(name.as_deref(), Some("n"));
            assert_eq!(p.tau_mem_inv, ParamValue::PerNeuron(vec![100.0, 50.0]));
            assert_eq!(p.v_th, ParamValue::Scalar(1.0));
            assert_eq!(p.v_reset, ParamValue::Scalar(0.0));
            assert_eq!(p.reset_method, ResetMethod::Value);
        }
        l => panic!("{l:?}"),
    }
    // r != 1: the neuron language, R scaling the input.
    let c = conv(&around(2, lif(2.0)), Producer::Spec).unwrap();
    match only(&c) {
        Layer::Neuron { model, .. } => {
            assert_eq!(model.update, vec!["v = v + (dt * tau_mem_inv) * (((r * x) + v_leak) - v)".to_string()]);
            assert_eq!(model.params.get("r"), Some(&ParamValue::Scalar(2.0)));
            assert_eq!(model.spike.as_deref(), Some("v - v_th"));
            assert_eq!(model.reset, vec!["v = v_reset".to_string()]);
        }
        l => panic!("{l:?}"),
    }
    // snnTorch: beta = 1 - dt / tau at its dt (1e-4), reset by subtraction one step late.
    let c = conv(&around(2, lif(1.0)), Producer::Snntorch).unwrap();
    assert_eq!(c.network.dt, 1e-4);
    match only(&c) {
        Layer::Neuron { model, .. } => {
            assert_eq!(
                model.params.get("beta"),
                Some(&ParamValue::PerNeuron(vec![1.0 - 1e-4 / 0.01, 1.0 - 1e-4 / 0.02]))
            );
            assert_eq!(model.update, vec!["v = (beta * v + g * x) - heaviside(v - v_th) * v_th".to_string()]);
            assert!(model.reset.is_empty());
        }
        l => panic!("{l:?}"),
    }
}

#[test]
fn norse_tau_below_the_step_is_read_as_norse_1_1() {
    let n = node(NodeKind::LIF, &[("tau", s(1e-5)), ("r", s(1.0)), ("v_leak", s(0.0)), ("v_threshold", s(1.0))]);
    let c = conv(&around(3, n), Producer::Norse).unwrap();
    match only(&c) {
        Layer::LIFBox { p, .. } => assert_eq!(p.tau_mem_inv, ParamValue::Scalar(1e-3 / 1e-5)),
        l => panic!("{l:?}"),
    }
    let said = c.assumptions.iter().find(|s| s.contains("Norse 1.1.0")).expect("the assumption");
    assert!(said.contains("tau = 1e-5 s is 1/100 of a step"), "{said}");
    assert!(said.contains("pass --nir-from spec"), "{said}");
}

#[test]
fn cuba_lif_per_convention() {
    let n = || {
        node(
            NodeKind::CubaLIF,
            &[("tau_syn", s(0.005)), ("tau_mem", s(0.01)), ("r", s(1.0)), ("v_leak", s(0.0)), ("v_threshold", s(1.0))],
        )
    };
    match only(&conv(&around(2, n()), Producer::Norse).unwrap()) {
        Layer::LIF { p, .. } => {
            assert_eq!(p.tau_syn_inv, ParamValue::Scalar(200.0));
            assert_eq!(p.tau_mem_inv, ParamValue::Scalar(100.0));
        }
        l => panic!("{l:?}"),
    }
    match only(&conv(&around(2, n()), Producer::Spec).unwrap()) {
        Layer::Neuron { model, .. } => {
            assert_eq!(model.update[1], "i = i + (dt * tau_syn_inv) * (w_in * x - i)");
            assert_eq!(model.state.get("v"), Some(&InitValue::Name("v_leak".into())));
        }
        l => panic!("{l:?}"),
    }
    match only(&conv(&around(2, n()), Producer::Snntorch).unwrap()) {
        Layer::Neuron { model, .. } => {
            assert_eq!(model.update[0], "i = alpha * i + gs * x");
            assert_eq!(model.params.get("alpha"), Some(&ParamValue::Scalar(1.0 - 1e-4 / 0.005)));
        }
        l => panic!("{l:?}"),
    }
    // CubaLI: no spike, the voltage out.
    let li = node(NodeKind::CubaLI, &[("tau_syn", s(0.005)), ("tau_mem", s(0.01)), ("r", s(1.0)), ("v_leak", s(0.0))]);
    assert!(matches!(only(&conv(&around(2, li.clone()), Producer::Norse).unwrap()), Layer::LI { .. }));
    match only(&conv(&around(2, li), Producer::Spec).unwrap()) {
        Layer::Neuron { model, .. } => assert_eq!(model.output.as_deref(), Some("v")),
        l => panic!("{l:?}"),
    }
}

#[test]
fn li_if_i_threshold_scale() {
    let li = node(NodeKind::LI, &[("tau", s(0.01)), ("r", s(1.0)), ("v_leak", s(0.0))]);
    assert!(matches!(only(&conv(&around(2, li), Producer::Spec).unwrap()), Layer::LIBox { .. }));
    let iff = || node(NodeKind::IF, &[("r", s(1.0)), ("v_threshold", s(1.0))]);
    assert!(matches!(only(&conv(&around(2, iff()), Producer::Norse).unwrap()), Layer::IAF { .. }));
    let c = conv(&around(2, iff()), Producer::Spec).unwrap();
    match only(&c) {
        Layer::Neuron { model, .. } => assert_eq!(model.update, vec!["v = v + (dt * r) * x".to_string()]),
        l => panic!("{l:?}"),
    }
    assert!(c.assumptions.iter().any(|s| s.contains("read literally as dv/dt = R I")), "{:?}", c.assumptions);
    let i = node(NodeKind::I, &[("r", s(3.0))]);
    match only(&conv(&around(2, i), Producer::Norse).unwrap()) {
        Layer::Neuron { model, .. } => assert_eq!(model.update, vec!["v = v + r * x".to_string()]),
        l => panic!("{l:?}"),
    }
    let th = node(NodeKind::Threshold, &[("threshold", a(&[2], &[0.5, 0.7]))]);
    match only(&conv(&around(2, th), Producer::Spec).unwrap()) {
        Layer::Neuron { model, .. } => assert_eq!(model.update, vec!["y = spike(x - theta)".to_string()]),
        l => panic!("{l:?}"),
    }
    let sc = node(NodeKind::Scale, &[("scale", s(2.5))]);
    assert!(
        matches!(only(&conv(&around(2, sc), Producer::Spec).unwrap()), Layer::Scale { factor, .. } if *factor == 2.5)
    );
    let sc = node(NodeKind::Scale, &[("scale", a(&[2], &[1.0, 2.0]))]);
    assert!(matches!(only(&conv(&around(2, sc), Producer::Spec).unwrap()), Layer::Neuron { .. }));
}

#[test]
fn affine_linear_conv_pool_flatten() {
    let aff =
        node(NodeKind::Affine, &[("weight", a(&[3, 2], &[1., 2., 3., 4., 5., 6.])), ("bias", a(&[3], &[0.5; 3]))]);
    let c = conv(&around(2, aff), Producer::Spec).unwrap();
    assert!(matches!(only(&c), Layer::Linear { out: 3, input: Some(2), bias: true, .. }));
    assert_eq!(c.weights["n.weight"].shape, vec![3, 2]);
    assert_eq!(c.weights["n.bias"].data, vec![0.5; 3]);
    let lin = node(NodeKind::Linear, &[("weight", a(&[1, 2], &[1., 2.]))]);
    let c = conv(&around(2, lin), Producer::Spec).unwrap();
    assert!(matches!(only(&c), Layer::Linear { bias: false, .. }));
    assert!(!c.weights.contains_key("n.bias"));
    // Conv2d with "same" padding, dilation and groups; input [2, 5, 5] with a batch dim.
    let mut cv =
        node(NodeKind::Conv2d, &[("weight", a(&[4, 1, 3, 3], &[0.1; 36])), ("groups", s(2.0)), ("dilation", s(2.0))]);
    cv.strings.insert("padding".into(), "same".into());
    let mut f = around(2, cv);
    f.graph.nodes[0].1.params.insert("shape".into(), a(&[4], &[1., 2., 5., 5.]));
    let c = conv(&f, Producer::Spec).unwrap();
    assert_eq!(c.network.input, vec![2, 5, 5]);
    assert!(c.assumptions.iter().any(|s| s.contains("batch dimension")), "{:?}", c.assumptions);
    match only(&c) {
        Layer::Conv2d { padding, groups, dilation, in_channels, .. } => {
            assert_eq!(padding.0, [2, 2]);
            assert_eq!(*groups, 2);
            assert_eq!(dilation.0, [2, 2]);
            assert_eq!(*in_channels, Some(2));
        }
        l => panic!("{l:?}"),
    }
    for kind in [NodeKind::SumPool2d, NodeKind::AvgPool2d] {
        let p = node(kind, &[("kernel_size", a(&[2], &[2., 2.])), ("stride", a(&[2], &[2., 2.]))]);
        let l = only(&conv(&around(2, p), Producer::Spec).unwrap()).clone();
        assert_eq!(l.kind(), kind.name());
    }
    let fl = node(NodeKind::Flatten, &[("start_dim", s(0.0)), ("end_dim", s(-1.0))]);
    assert!(matches!(only(&conv(&around(2, fl), Producer::Spec).unwrap()), Layer::Flatten { .. }));
    let fl = node(NodeKind::Flatten, &[("start_dim", s(2.0)), ("end_dim", s(-1.0))]);
    let e = conv(&around(2, fl), Producer::Spec).unwrap_err();
    assert_eq!((e.node.as_str(), e.field.as_deref()), ("n", Some("start_dim")));
}

#[test]
fn delay_is_a_shift_register_of_whole_steps() {
    let d = node(NodeKind::Delay, &[("delay", s(0.003))]);
    let c = conv(&around(2, d), Producer::Spec).unwrap();
    match only(&c) {
        Layer::Neuron { model, .. } => {
            assert_eq!(model.update, vec!["y = s3", "s3 = s2", "s2 = s1", "s1 = x"]);
            assert_eq!(model.output.as_deref(), Some("y"));
        }
        l => panic!("{l:?}"),
    }
    crate::check_network(&c.network, "t").unwrap();
    let d = node(NodeKind::Delay, &[("delay", s(0.0))]);
    assert!(matches!(only(&conv(&around(2, d), Producer::Spec).unwrap()), Layer::Identity { .. }));
}

#[test]
fn refused_nodes_name_the_node() {
    let d = node(NodeKind::Delay, &[("delay", a(&[2], &[0.002, 0.003]))]);
    let e = conv(&around(2, d), Producer::Spec).unwrap_err();
    assert_eq!(e.to_string().split(':').next(), Some("node `n`, field `delay`"));
    let d = node(NodeKind::Delay, &[("delay", s(-0.002))]);
    assert!(conv(&around(2, d), Producer::Spec).is_err());
    let c1 = node(NodeKind::Conv1d, &[("weight", a(&[1, 1, 3], &[1.; 3])), ("stride", a(&[2], &[1., 1.]))]);
    let e = conv(&around(2, c1), Producer::Spec).unwrap_err();
    assert_eq!((e.node.as_str(), e.field.as_deref()), ("n", Some("stride")), "{e}");
    let bad = node(NodeKind::LIF, &[("tau", s(-1.0)), ("r", s(1.0)), ("v_leak", s(0.0)), ("v_threshold", s(1.0))]);
    let e = conv(&around(2, bad), Producer::Spec).unwrap_err();
    assert_eq!((e.node.as_str(), e.field.as_deref()), ("n", Some("tau")));
}

#[test]
fn cycles_nesting_and_dotted_names() {
    // input -> fc -> g (nested: in -> lif -> rec -> lif, lif -> out) -> output
    let lif = node(NodeKind::LIF, &[("tau", s(0.01)), ("r", s(1.0)), ("v_leak", s(0.0)), ("v_threshold", s(1.0))]);
    let sub = NirGraph {
        nodes: vec![
            ("in".into(), node(NodeKind::Input, &[("shape", a(&[1], &[2.]))])),
            ("lif".into(), lif),
            ("rec".into(), node(NodeKind::Linear, &[("weight", a(&[2, 2], &[0.; 4]))])),
            ("out".into(), node(NodeKind::Output, &[("shape", a(&[1], &[2.]))])),
        ],
        // Edges in any order.
        edges: vec![
            ("rec".into(), "lif".into()),
            ("lif".into(), "out".into()),
            ("in".into(), "lif".into()),
            ("lif".into(), "rec".into()),
        ],
        metadata: BTreeMap::new(),
    };
    let f = NirFile {
        version: None,
        graph: NirGraph {
            nodes: vec![
                ("input".into(), node(NodeKind::Input, &[("shape", a(&[1], &[3.]))])),
                ("fc".into(), node(NodeKind::Linear, &[("weight", a(&[2, 3], &[1.; 6]))])),
                ("g".into(), NirNode::subgraph(sub)),
                ("output".into(), node(NodeKind::Output, &[("shape", a(&[1], &[2.]))])),
            ],
            edges: vec![("g".into(), "output".into()), ("input".into(), "fc".into()), ("fc".into(), "g".into())],
            metadata: BTreeMap::new(),
        },
    };
    let c = conv(&f, Producer::Spec).unwrap();
    let names: Vec<String> = c.network.layers.iter().enumerate().map(|(i, l)| l.name(i)).collect();
    assert_eq!(names, vec!["fc", "g_rec", "g_lif"]);
    let w = c.network.layers[2].wiring();
    assert_eq!(w.inputs, Some(&["fc".to_string()][..]));
    assert_eq!(w.recurrent_inputs, &["g_rec".to_string()][..]);
    assert!(c.weights.contains_key("g_rec.weight"));
    assert!(c.assumptions.iter().any(|s| s.contains("`g.lif` is layer `g_lif`")), "{:?}", c.assumptions);
    crate::check_network(&c.network, "t").unwrap();
}

#[test]
fn metadata_dt_is_the_default_step() {
    let mut f = around(2, lif(1.0));
    f.graph.metadata.insert("dt".into(), MetaValue::Number(s(5e-4)));
    let c = conv(&f, Producer::Spec).unwrap();
    assert_eq!(c.network.dt, 5e-4);
    assert!(c.assumptions.iter().any(|s| s.contains("from the file's metadata")));
    let c = convert(&f, "t", &NirOptions { dt: Some(2e-3), ..Default::default() }).unwrap();
    assert_eq!(c.network.dt, 2e-3);
}

// ---- files ----

/// Writes a node group in NIR's layout (numbers as f32 or f64 datasets,
/// maybe gzip-chunked).
fn write_node(g: &mut GroupBuilder, name: &str, n: &NirNode, f64s: bool, gzip: bool) {
    let mut ng = g.create_group(name);
    ng.create_dataset("type").with_vlen_strings(&[n.kind.name()]).with_shape(&[]);
    for (k, v) in &n.params {
        let ds = ng.create_dataset(k);
        if f64s {
            ds.with_f64_data(&v.data);
        } else {
            ds.with_f32_data(&v.data.iter().map(|&x| x as f32).collect::<Vec<_>>());
        }
        ds.with_shape(&v.shape.iter().map(|&d| d as u64).collect::<Vec<_>>());
        if gzip && !v.shape.is_empty() {
            ds.with_chunks(&v.shape.iter().map(|&d| d as u64).collect::<Vec<_>>()).with_deflate(4);
        }
    }
    for (k, v) in &n.strings {
        ng.create_dataset(k).with_vlen_strings(&[v]).with_shape(&[]);
    }
    if let Some(sub) = &n.graph {
        let mut nodes = ng.create_group("nodes");
        for (k, c) in &sub.nodes {
            write_node(&mut nodes, k, c, f64s, gzip);
        }
        ng.add_group(nodes.finish());
        let flat: Vec<&str> = sub.edges.iter().flat_map(|(a, b)| [a.as_str(), b.as_str()]).collect();
        ng.create_dataset("edges").with_vlen_strings(&flat).with_shape(&[sub.edges.len() as u64, 2]);
    }
    g.add_group(ng.finish());
}

fn write_file(f: &NirFile, f64s: bool, gzip: bool) -> Vec<u8> {
    let mut b = FileBuilder::new();
    b.create_dataset("version").with_vlen_strings(&["1.0.8"]).with_shape(&[]);
    let mut node = b.create_group("node");
    node.create_dataset("type").with_vlen_strings(&["NIRGraph"]).with_shape(&[]);
    let mut nodes = node.create_group("nodes");
    for (k, c) in &f.graph.nodes {
        write_node(&mut nodes, k, c, f64s, gzip);
    }
    node.add_group(nodes.finish());
    let flat: Vec<&str> = f.graph.edges.iter().flat_map(|(a, b)| [a.as_str(), b.as_str()]).collect();
    node.create_dataset("edges").with_vlen_strings(&flat).with_shape(&[f.graph.edges.len() as u64, 2]);
    b.add_group(node.finish());
    b.finish().unwrap()
}

#[test]
fn files_round_trip_f32_f64_plain_and_gzip() {
    let mut f = around(2, lif(1.0));
    f.graph.nodes[1].1.params.remove("v_reset");
    for (f64s, gzip) in [(false, false), (true, false), (false, true), (true, true)] {
        let bytes = write_file(&f, f64s, gzip);
        let back = read_nir_bytes(bytes).unwrap();
        assert_eq!(back.version.as_deref(), Some("1.0.8"));
        let n = back.graph.node("n").unwrap();
        assert_eq!(n.kind, NodeKind::LIF);
        assert_eq!(n.params["tau"].shape, vec![2]);
        assert_eq!(n.params["tau"].stored, if f64s { StoredType::F64 } else { StoredType::F32 });
        assert_eq!(n.params["tau"].data[0], if f64s { 0.01 } else { f64::from(0.01f32) });
        assert_eq!(n.params["v_reset"], s(0.0), "the default of a missing v_reset");
        assert_eq!(back.graph.edges, f.graph.edges);
    }
}

#[test]
fn malformed_files_name_the_node_and_field() {
    // A missing field.
    let mut f = around(2, lif(1.0));
    f.graph.nodes[1].1.params.remove("v_threshold");
    let e = read_nir_bytes(write_file(&f, true, false)).unwrap_err();
    assert_eq!((e.node.as_str(), e.field.as_deref()), ("n", Some("v_threshold")));
    assert!(e.message.starts_with("missing"), "{e}");
    // A wrong dtype: a string where numbers belong.
    let mut f = around(2, lif(1.0));
    f.graph.nodes[1].1.params.remove("tau");
    f.graph.nodes[1].1.strings.insert("tau".into(), "fast".into());
    let e = read_nir_bytes(write_file(&f, true, false)).unwrap_err();
    assert_eq!((e.node.as_str(), e.field.as_deref()), ("n", Some("tau")));
    assert!(e.message.contains("a string, expected numbers"), "{e}");
    // An unknown type.
    let mut f = around(2, lif(1.0));
    f.graph.nodes[1].1.kind = NodeKind::Graph;
    f.graph.nodes[1].1.graph = None;
    let e = read_nir_bytes(write_file(&f, true, false)).unwrap_err();
    assert_eq!((e.node.as_str(), e.field.as_deref()), ("n", Some("nodes")));
    // Truncated: an error, whatever the cut.
    let bytes = write_file(&around(2, lif(1.0)), true, false);
    for cut in [8, 64, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        assert!(read_nir_bytes(bytes[..cut].to_vec()).is_err(), "cut at {cut}");
    }
    // An edge to a missing node, with no node like it.
    let mut f = around(2, lif(1.0));
    f.graph.edges.push(("n".into(), "zzz".into()));
    let e = conv(&f, Producer::Spec).unwrap_err();
    assert!(e.to_string().contains("an edge names `zzz`"), "{e}");
}

#[test]
fn huge_shapes_are_refused_before_allocating() {
    // The element bound is checked on the declared shape before any read: with the bound
    // lowered to 3, a [2, 2] weight is refused, naming the node and the field.
    let mut b = FileBuilder::new();
    let mut node = b.create_group("node");
    node.create_dataset("type").with_vlen_strings(&["Linear"]).with_shape(&[]);
    node.create_dataset("weight").with_f32_data(&[0.0; 4]).with_shape(&[2, 2]);
    b.add_group(node.finish());
    let bytes = b.finish().unwrap();
    assert!(read_nir_bytes(bytes.clone()).is_ok());
    let e = read::with_element_limit(3, || read_nir_bytes(bytes)).unwrap_err();
    assert_eq!((e.node.as_str(), e.field.as_deref()), ("", Some("weight")));
    assert!(e.message.contains("holds more than 3 elements"), "{e}");
}

/// A `Conv1d` is the `Conv2d` over `[C, 1, L]` with kernel height 1: the
/// Input `[C, L]` becomes `[C, 1, L]`, the weight `[O, C, K]` `[O, C, 1,
/// K]`, and stride, padding and dilation apply along `L`.
#[test]
fn conv1d_is_a_conv2d_of_height_one() {
    let w: Vec<f64> = (0..3 * 2 * 3).map(|k| k as f64 / 10.0).collect();
    let c1 = node(
        NodeKind::Conv1d,
        &[
            ("weight", a(&[3, 2, 3], &w)),
            ("bias", a(&[3], &[0.1, 0.2, 0.3])),
            ("stride", s(2.0)),
            ("padding", s(1.0)),
            ("dilation", s(1.0)),
            ("groups", s(1.0)),
        ],
    );
    let nodes = vec![
        ("input".to_string(), node(NodeKind::Input, &[("shape", a(&[2], &[2.0, 8.0]))])),
        ("c".to_string(), c1),
        ("output".to_string(), node(NodeKind::Output, &[("shape", a(&[2], &[3.0, 4.0]))])),
    ];
    let edges = vec![("input".into(), "c".into()), ("c".into(), "output".into())];
    let f = NirFile { version: None, graph: NirGraph { nodes, edges, metadata: BTreeMap::new() } };
    let c = conv(&f, Producer::Spec).unwrap();
    assert_eq!(c.network.input, vec![2, 1, 8]);
    match only(&c) {
        Layer::Conv2d { kernel_size, stride, padding, dilation, out_channels, .. } => {
            assert_eq!((kernel_size.0, stride.0, padding.0, dilation.0), ([1, 3], [1, 2], [0, 1], [1, 1]));
            assert_eq!(*out_channels, 3);
        }
        l => panic!("{l:?}"),
    }
    assert_eq!(c.weights["c.weight"].shape, vec![3, 2, 1, 3]);
    assert_eq!(c.weights["c.weight"].data, w);
    assert!(c.assumptions.iter().any(|a| a.contains("Conv1d is a Conv2d over [C, 1, L]")), "{:?}", c.assumptions);
    crate::check_network(&c.network, "t").unwrap();
}

/// snnc's `LIFRecurrent` and `LILinear` are written as several nodes and
/// read back as the one layer (same weights names, same parameters); a
/// file whose nodes are no longer wired as the cell is read node by node.
#[test]
fn snnc_cells_read_back_as_one_layer() {
    let net = crate::parse_network(
        r#"(version: 1, name: "cells", steps: 3, input: [4], layers: [
            LIFRecurrent(name: "rec", hidden: 3, p: (v_th: 0.5, tau_syn_inv: 150)),
            LILinear(name: "lil", out: 2, p: (tau_mem_inv: 50.0)),
        ])"#,
        "cells",
    )
    .unwrap();
    let t = |shape: &[usize], k: f64| {
        let n: usize = shape.iter().product();
        WeightTensor { shape: shape.to_vec(), data: (0..n).map(|i| k + i as f64 / 8.0).collect() }
    };
    let w = BTreeMap::from([
        ("rec.input_weights".to_string(), t(&[3, 4], 0.5)),
        ("rec.recurrent_weights".to_string(), t(&[3, 3], -0.25)),
        ("lil.input_weights".to_string(), t(&[2, 3], 1.0)),
    ]);
    let f = export(&net, &w).unwrap();
    let c = convert(&f, "cells", &NirOptions::default()).unwrap();
    let plain = |mut l: Layer| {
        let (i, r, _) = l.wiring_mut();
        *i = None;
        r.clear();
        l
    };
    let got: Vec<Layer> = c.network.layers.iter().cloned().map(plain).collect();
    assert_eq!(got, net.layers, "{:?}", c.assumptions);
    assert_eq!(c.network.layers[0].wiring().inputs, Some(&["x".to_string()][..]));
    assert_eq!(c.network.layers[1].wiring().inputs, Some(&["rec".to_string()][..]));
    assert_eq!(
        c.weights.keys().collect::<Vec<_>>(),
        ["lil.input_weights", "rec.input_weights", "rec.recurrent_weights"]
    );
    assert_eq!(c.weights["rec.input_weights"], w["rec.input_weights"]);
    assert_eq!(c.weights["lil.input_weights"], w["lil.input_weights"]);
    // Without autapses the diagonal is written as zeros (the cell masks it).
    let mut rec = w["rec.recurrent_weights"].clone();
    for k in 0..3 {
        rec.data[k * 3 + k] = 0.0;
    }
    assert_eq!(c.weights["rec.recurrent_weights"], rec);
    // Another node reading the recurrent weights: three layers, said.
    let mut g = f.clone();
    g.graph.edges.push(("rec_w_rec".into(), "lil_w_in".into()));
    let c = convert(&g, "cells", &NirOptions::default()).unwrap();
    let kinds: Vec<&str> = c.network.layers.iter().map(Layer::kind).collect();
    assert_eq!(kinds, ["Linear", "Linear", "LIF", "LILinear"], "{:?}", c.assumptions);
    assert!(
        c.assumptions.iter().any(|s| s.contains("`rec` says it is snnc's LIFRecurrent cell")),
        "{:?}",
        c.assumptions
    );
    // Another convention ignores snnc's metadata.
    let c = convert(&f, "cells", &NirOptions { producer: Producer::Norse, ..Default::default() }).unwrap();
    assert!(c.network.layers.iter().all(|l| !matches!(l, Layer::LIFRecurrent { .. } | Layer::LILinear { .. })));
}

/// snnTorch's `RSynaptic`: `recurrent(spk[t-1])` within the step, so the
/// delayed edge is the neuron's output into the weights (an Affine's bias
/// acts from t = 0); the other conventions delay the weights' output.
#[test]
fn snntorch_recurrence_delays_the_spikes_into_the_weights() {
    let cuba = node(
        NodeKind::CubaLIF,
        &[("tau_syn", s(2e-4)), ("tau_mem", s(1e-3)), ("r", s(10.0)), ("v_leak", s(0.0)), ("v_threshold", s(1.0))],
    );
    let w = node(NodeKind::Affine, &[("weight", a(&[2, 2], &[0.5; 4])), ("bias", a(&[2], &[0.25, -0.25]))]);
    let f = NirFile {
        version: None,
        graph: NirGraph {
            nodes: vec![
                ("input".into(), node(NodeKind::Input, &[("shape", a(&[1], &[2.]))])),
                ("lif".into(), cuba),
                ("w_rec".into(), w),
                ("output".into(), node(NodeKind::Output, &[("shape", a(&[1], &[2.]))])),
            ],
            edges: vec![
                ("w_rec".into(), "lif".into()),
                ("input".into(), "lif".into()),
                ("lif".into(), "w_rec".into()),
                ("lif".into(), "output".into()),
            ],
            metadata: BTreeMap::new(),
        },
    };
    let wiring = |c: &Converted, name: &str| {
        let l = c.network.layers.iter().find(|l| l.given_name() == Some(name)).unwrap();
        let w = l.wiring();
        (w.inputs.unwrap().to_vec(), w.recurrent_inputs.to_vec())
    };
    let c = conv(&f, Producer::Snntorch).unwrap();
    assert_eq!(wiring(&c, "w_rec"), (vec![], vec!["lif".to_string()]));
    assert_eq!(wiring(&c, "lif"), (vec!["w_rec".to_string(), "x".to_string()], vec![]));
    assert!(c.assumptions.iter().any(|s| s.contains("snnTorch's recurrent neuron")), "{:?}", c.assumptions);
    crate::check_network(&c.network, "t").unwrap();
    for p in [Producer::Spec, Producer::Norse] {
        let c = conv(&f, p).unwrap();
        assert_eq!(wiring(&c, "w_rec"), (vec!["lif".to_string()], vec![]));
        assert_eq!(wiring(&c, "lif"), (vec!["x".to_string()], vec!["w_rec".to_string()]));
    }
}

/// Read literally at a step far above its time constants, a neuron
/// diverges: the import says so and names the conventions that fit.
#[test]
fn a_time_constant_far_below_the_step_is_said_under_spec() {
    let cuba = node(
        NodeKind::CubaLIF,
        &[
            ("tau_mem", s(1e-4)),
            ("tau_syn", s(2e-4)),
            ("r", s(1.0)),
            ("v_leak", s(0.0)),
            ("v_threshold", s(1.0)),
            ("w_in", s(1.0)),
        ],
    );
    let c = conv(&around(2, cuba.clone()), Producer::Spec).unwrap();
    let said = c.assumptions.join("\n");
    assert!(said.contains("dt / tau_mem = 1.000e1 is above 2"), "{said}");
    assert!(said.contains("--nir-from snntorch"), "{said}");
    let c = conv(&around(2, cuba), Producer::Snntorch).unwrap();
    assert!(!c.assumptions.join("\n").contains("is above 2"), "{:?}", c.assumptions);
}
