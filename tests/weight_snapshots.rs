//! Weight snapshots (`snnc run --record REC --record-every K`,
//! `snnc::snapshots`): a run cut into chunks of K steps, carrying its state,
//! gives the bits of one run — on a Poisson-encoded network too, whose
//! random numbers depend on the step — and the plastic weight between the
//! chunks; `snnc plot REC -o FIG.png` draws their evolution.

use std::collections::BTreeMap;
use std::path::Path;

use snnc::Target;
use snnc::snapshots::{self, STEPS_KEY};
use snnc_runtime::{ElemType, Tensor};

mod support;

/// 12 Poisson-encoded inputs into a plastic Linear(12 -> 4) and a LIF.
const POISSON_NET: &str = r#"(version: 1, name: "stdp_poisson", steps: 20, input: [12],
 encoder: Poisson(f_max: 300.0),
 layers: [
    Linear(name: "fc", out: 4, bias: false, plasticity: STDP(eta_plus: 0.05, eta_minus: 0.04)),
    LIF(name: "post", p: (v_th: 0.1)),
 ])"#;

fn compiled(text: &str, steps: u32, target: Target) -> (snnc::Compiled, snnc_passes::Pipeline) {
    let mut net = snnc_frontend::parse_network(text, "net").unwrap();
    net.steps = steps;
    let mut c = snnc::driver::compile(&net, "net", &Default::default()).unwrap();
    let opts = snnc::driver::pass_options(&c, None).unwrap();
    let pipeline = snnc::driver::pipeline(target, None, &opts).unwrap();
    snnc::driver::optimize(&mut c, &pipeline, &mut |_| {}).unwrap();
    (c, pipeline)
}

fn input(batch: usize) -> BTreeMap<String, Tensor> {
    let data = (0..batch * 12).map(|k| 0.2 + 0.8 * ((k * 7919 % 13) as f64 / 13.0)).collect();
    BTreeMap::from([("x".to_string(), Tensor::new(vec![batch, 12], ElemType::F32, data).unwrap())])
}

/// Chunks of 6, 6, 6 and 2 steps equal one run of 20, bit for bit, on the
/// interpreter and the CPU: outputs, every recorded trace, the final state;
/// the snapshots are the weights at steps 0, 6, 12, 18 and 20 (the one at
/// 6 is the final weight of a 6-step run).
#[test]
fn a_chunked_run_gives_the_bits_of_one_run_and_the_weights_between() {
    for target in [Target::Interp, Target::Cpu] {
        let (c, pipeline) = compiled(POISSON_NET, 20, target);
        let weights = snnc::driver::init_weights(&c.module, 0).unwrap();
        let x = input(2);
        let whole = snnc::driver::run(&c, target, &weights, &x, true).unwrap();
        let (chunked, snaps) = snapshots::run(&c, target, &pipeline, &weights, &x, 6).unwrap();
        assert_eq!(chunked.outputs, whole.outputs, "{target:?}");
        assert_eq!(chunked.traces, whole.traces, "{target:?}");
        assert_eq!(chunked.final_state, whole.final_state, "{target:?}");
        let spikes: f64 = whole.outputs["output"].data.iter().sum();
        assert!(spikes > 5.0 && spikes < 160.0, "{spikes} postsynaptic spikes");
        assert!(whole.traces["encoder.z"].data.iter().sum::<f64>() > 50.0);

        assert_eq!(snaps.steps, [0, 6, 12, 18, 20]);
        let w = &snaps.weights["fc.weight"];
        assert_eq!(w.shape, [5, 4, 12]);
        let at = |i: usize| &w.data[i * 48..(i + 1) * 48];
        assert_eq!(at(0), weights["fc.weight"].data);
        assert_eq!(at(4), whole.final_state["fc.weight.plastic"].data);
        let (short, _) = compiled(POISSON_NET, 6, target);
        let six = snnc::driver::run(&short, target, &weights, &x, false).unwrap();
        assert_eq!(at(1), six.final_state["fc.weight.plastic"].data);
        assert!((0..4).all(|i| at(i) != at(i + 1)), "STDP changed no weight between two snapshots");
        let t = &snaps.tensors()[STEPS_KEY];
        assert_eq!((t.dtype, &t.data[..]), (ElemType::I64, &[0.0, 6.0, 12.0, 18.0, 20.0][..]));
    }
}

/// K = 0, K above the steps, a network without a plastic weight and the
/// cuda target are refused with the fix.
#[test]
fn bad_strides_are_refused() {
    let (c, _) = compiled(POISSON_NET, 20, Target::Interp);
    let err = |k, t| snapshots::check(&c, t, k).unwrap_err().to_string();
    assert!(err(0, Target::Cpu).contains("K from 1 to the network's 20 steps"), "{}", err(0, Target::Cpu));
    assert!(err(21, Target::Cpu).contains("more than the 20 steps of `stdp_poisson`; use at most 20"));
    assert!(err(5, Target::Cuda).contains("use --target cpu"));
    assert!(snapshots::check(&c, Target::Cpu, 20).is_ok());
    let plain = POISSON_NET.replace(", plasticity: STDP(eta_plus: 0.05, eta_minus: 0.04)", "");
    let (c, _) = compiled(&plain, 20, Target::Interp);
    let e = snapshots::check(&c, Target::Cpu, 5).unwrap_err().to_string();
    assert!(e.contains("has no plastic weight") && e.contains("drop --record-every"), "{e}");
}

/// `snnc run --record rec.npz --record-every 2` on `tests/nets/stdp.ron`
/// (per-step input, 6 steps): the recording holds `fc.weight` `[4, 3, 4]`
/// and `weight_steps` [0, 2, 4, 6] besides the traces; `snnc plot rec.npz`
/// draws the evolution (PNG), and so does `--evolution` on a JSON one.
#[test]
fn run_records_snapshots_and_plot_draws_their_evolution() {
    let dir = support::TempDir::new("snapshots");
    let net = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nets/stdp.ron");
    let net = net.to_str().unwrap();
    let (npz, json, png) = (dir.path("rec.npz"), dir.path("rec.json"), dir.path("evo.png"));
    for rec in [&npz, &json] {
        let o = support::snnc(&["run", net, "--record", rec.as_str(), "--record-every", "2"]);
        assert!(o.status.success(), "{}", support::stderr(&o));
        let out = support::stdout(&o);
        assert!(out.contains("with 4 snapshots of fc.weight (steps [0, 2, 4, 6])"), "{out}");
    }
    let arrays = snnc_runtime::read_npz(Path::new(&npz)).unwrap();
    assert_eq!(arrays["fc.weight"].shape, [4, 3, 4]);
    assert_eq!(arrays[STEPS_KEY].shape, [4]);
    assert!(arrays.contains_key("post.z") && arrays.contains_key("output"));

    let o = support::snnc(&["plot", npz.as_str(), "-o", png.as_str()]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    assert!(support::stdout(&o).contains("the evolution of `fc.weight` over 4 snapshots (steps 0..6)"));
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    let o = support::snnc(&["plot", json.as_str(), "-o", png.as_str(), "--evolution"]);
    assert!(o.status.success(), "{}", support::stderr(&o));

    // Mistakes.
    let o = support::snnc(&["run", net, "--record", npz.as_str(), "--record-every", "0"]);
    assert!(!o.status.success() && support::stderr(&o).contains("K from 1 to the network's 6 steps"));
    let o = support::snnc(&["run", net, "--record-every", "2"]);
    assert!(!o.status.success() && support::stderr(&o).contains("--record"), "{}", support::stderr(&o));
    let svg = dir.path("evo.svg");
    let o = support::snnc(&["plot", npz.as_str(), "-o", svg.as_str()]);
    assert!(support::stderr(&o).contains("drawn as PNG"), "{}", support::stderr(&o));
    let plain = dir.path("plain.json");
    let o = support::snnc(&["run", net, "--record", plain.as_str()]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    let o = support::snnc(&["plot", plain.as_str(), "-o", png.as_str(), "--evolution"]);
    assert!(support::stderr(&o).contains("has no weight snapshots"), "{}", support::stderr(&o));
}

/// The evolution figure of a 784-input weight has receptive fields: the
/// PNG is wider than the histogram alone only when fields do not fit in
/// 1200 pixels, and its first row of fields is drawn in grey.
#[test]
fn the_evolution_of_image_weights_shows_receptive_fields() {
    let n = 3;
    let data = (0..n * 2 * 784).map(|k| (k % 784) as f64 / 784.0 * (1 + k / 1568) as f64).collect();
    let w = Tensor::new(vec![n, 2, 784], ElemType::F32, data).unwrap();
    let snaps = snapshots::Snapshots { steps: vec![0, 10, 20], weights: BTreeMap::from([("fc.weight".into(), w)]) };
    let (png, msg) = snnc::plot::evolution::png(&snaps).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(msg.contains("with receptive fields"), "{msg}");
}
