//! Plastic weights (STDP on a `Linear`, `tests/nets/stdp.ron`): the weight
//! is state of the step loop, the CPU gives the interpreter's bits, the
//! passes keep the plastic product in the loop, a run of 2T steps equals
//! two runs of T carrying the state (weight and traces included), and the
//! mistakes are clear errors. Norse's numbers: the `stdp_linear_*` oracle
//! cases (`tests/golden.rs`, `tests/cpu_golden.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use snnc::Target;
use snnc_frontend::{Layer, Network};
use snnc_ir::{Op, RegionKind, StateInit};
use snnc_runtime::{ElemType, Tensor};

fn net() -> Network {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nets/stdp.ron");
    snnc_frontend::load_network(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// `[steps, batch, 4]` input currents: strong enough that both LIF layers
/// spike, varied per step, sample and neuron.
fn input(steps: usize, batch: usize, offset: usize) -> Tensor {
    let data =
        (0..steps * batch * 4).map(|k| 4.0 + 6.0 * (((k + offset * batch * 4) * 7919 % 13) as f64 / 13.0)).collect();
    Tensor::new(vec![steps, batch, 4], ElemType::F32, data).unwrap()
}

fn inputs(t: Tensor) -> BTreeMap<String, Tensor> {
    BTreeMap::from([("x".to_string(), t)])
}

#[test]
fn the_weight_is_state_of_the_step_loop_and_the_product_stays_in_it() {
    let mut exe = snnc::compile(&net(), Target::Cpu).unwrap();
    let m = &exe.compiled().module;
    let (_, w) = m.states.iter().find(|(_, s)| s.name == "fc.weight.plastic").expect("the plastic state");
    let StateInit::Param(p) = w.init else { panic!("{:?}", w.init) };
    assert_eq!(m.params[p].name, "fc.weight");
    assert_eq!(w.ty.to_string(), "f32[3,4]");
    // After the default pipeline (time-batch included) the product reading
    // the weight state is still in a step loop, per step.
    let in_step: Vec<bool> = m
        .body
        .iter()
        .flat_map(|r| r.nodes.iter().map(move |&h| (r.kind == RegionKind::Step, h)))
        .filter(|&(_, h)| matches!(m.nodes[h].op, Op::MatMul { weight, .. } if matches!(m.nodes[weight].op, Op::StateRead(_))))
        .map(|(step, h)| step && !m.nodes[h].ty.seq)
        .collect();
    assert_eq!(in_step, [true], "{}", snnc_ir::print(m));

    let w0 = exe.weights()["fc.weight"].clone();
    let cpu = exe.forward(&inputs(input(6, 2, 0))).unwrap();
    let mut interp = snnc::compile(&net(), Target::Interp).unwrap();
    let reference = interp.forward(&inputs(input(6, 2, 0))).unwrap();
    assert_eq!(cpu.tensors, reference.tensors);
    assert_eq!(cpu.final_state, reference.final_state);
    let w = &reference.final_state["fc.weight.plastic"];
    assert_eq!(w.shape, [3, 4]);
    let changed = w.data.iter().zip(&w0.data).filter(|(a, b)| a != b).count();
    assert!(changed > 0, "STDP changed no weight: {w:?}");
    let spikes = |name: &str| reference.final_state.keys().any(|k| k == name);
    assert!(spikes("fc.t_pre") && spikes("fc.t_post"));
    // The parameter itself is not changed by a run.
    assert_eq!(exe.weights()["fc.weight"], w0);
}

#[test]
fn two_runs_of_t_steps_carrying_the_state_equal_one_run_of_2t() {
    for target in [Target::Interp, Target::Cpu] {
        let mut long = net();
        long.steps = 12;
        let mut one = snnc::compile(&long, target).unwrap();
        let whole = one.forward(&inputs(input(12, 3, 0))).unwrap();
        let mut two = snnc::compile(&net(), target).unwrap();
        let first = two.forward_with_state(&inputs(input(6, 3, 0))).unwrap();
        let second = two.forward_with_state(&inputs(input(6, 3, 6))).unwrap();
        assert_eq!(second.final_state, whole.final_state, "{target:?}");
        let out = &whole.tensors["output"];
        let half = out.data.len() / 2;
        assert_eq!(first.tensors["output"].data, out.data[..half], "{target:?}");
        assert_eq!(second.tensors["output"].data, out.data[half..], "{target:?}");
        assert_ne!(first.final_state["fc.weight.plastic"], second.final_state["fc.weight.plastic"]);
    }
}

#[test]
fn the_postsynaptic_layer_must_spike() {
    let mut n = net();
    n.layers[2] = Layer::li().named("post").into();
    let err = snnc::compile(&n, Target::Interp).map(|_| ()).expect_err("refused").to_string();
    assert!(err.contains("layers[1] `fc` (Linear)") && err.contains("layer `post` (LI)"), "{err}");
    assert!(err.contains("not spikes"), "{err}");
    n.layers.truncate(2);
    let err = snnc::compile(&n, Target::Interp).map(|_| ()).expect_err("refused").to_string();
    assert!(err.contains("needs exactly one layer reading it"), "{err}");
}

#[test]
fn gradients_through_a_plastic_weight_are_refused() {
    let mut c = snnc::driver::compile(&net(), "stdp.ron", &Default::default()).unwrap();
    let grad = snnc_passes::AutodiffOptions { seeds: vec!["output".into()], inputs: Vec::new() };
    let err = snnc::driver::differentiate(&mut c.module, Target::Interp, None, &Default::default(), &grad)
        .map(|_| ())
        .expect_err("refused")
        .to_string();
    assert!(err.contains("parameter `fc.weight` is plastic"), "{err}");
}

#[path = "../backends/cuda/tests/sim/mod.rs"]
mod sim;

/// The PTX of the plastic network (the cuda target's pipeline), run by the
/// PTX simulator, gives the interpreter's outputs and final weight bit for
/// bit (no exp/log/tanh in this network's arithmetic that differs).
#[test]
fn the_simulated_ptx_agrees_with_the_interpreter() {
    let mut c = snnc::driver::compile(&net(), "stdp.ron", &Default::default()).unwrap();
    let opts = snnc::driver::pass_options(&c, None).unwrap();
    let pipeline = snnc::driver::pipeline(Target::Cuda, None, &opts).unwrap();
    snnc::driver::optimize(&mut c, &pipeline, &mut |_| {}).unwrap();
    let art = snnc_cuda::emit(&c.module, &c.info, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let weights = snnc_runtime::init_weights(&c.module, 5);
    let ins = inputs(input(6, 2, 0));
    let want = snnc_interp::run(&c.module, &c.info, &weights, &ins, &Default::default()).unwrap();

    let ptx = sim::Module::parse(&art.ptx);
    let names = sim::bindings(&art.manifest);
    let mut run = sim::Run::new(&art.manifest, 2);
    for (name, t) in ins.iter().chain(&weights) {
        if let Some(&b) = names.get(name) {
            run.set(b, &t.data.iter().map(|&x| x as f32).collect::<Vec<_>>());
        }
    }
    run.init_states();
    run.run(&ptx);
    let got: Vec<f64> = run.get(names["output"]).into_iter().map(f64::from).collect();
    assert_eq!(got, want.outputs["output"].data);
    let w: Vec<f64> = run.get(names["fc.weight.plastic"]).into_iter().map(f64::from).collect();
    assert_eq!(w, want.final_state["fc.weight.plastic"].data);
    assert_ne!(w, weights["fc.weight"].data, "STDP changed no weight");
}

#[test]
fn snnc_train_refuses_a_plastic_network() {
    let err = snnc::train::TrainProgram::new(&net(), Target::Cpu, snnc_runtime::Loss::Nll)
        .map(|_| ())
        .expect_err("refused")
        .to_string();
    assert!(err.contains("layer `fc` (Linear) has `plasticity`") && err.contains("not by gradient descent"), "{err}");
}

mod support;

/// `snnc run --save-weights` writes the weights as the run left them (the
/// plastic `fc.weight` learnt, the others as given), and a run from them
/// (`--weights`) continues learning: each file holds what the API's run
/// from the previous weights ends with.
#[test]
fn save_weights_writes_the_learnt_weights_and_a_run_continues_from_them() {
    let dir = support::TempDir::new("stdp_save");
    let net_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nets/stdp.ron");
    let net_path = net_path.to_str().unwrap();
    let (a, b) = (dir.path("a.json"), dir.path("b.safetensors"));
    for (args, file) in [(vec![], &a), (vec!["--weights", a.as_str()], &b)] {
        let mut cmd = vec!["run", net_path, "--target", "cpu", "--save-weights", file.as_str()];
        cmd.extend(args);
        let o = support::snnc(&cmd);
        assert!(o.status.success(), "{}", support::stderr(&o));
        assert!(support::stdout(&o).contains("saved 1 weights to"), "{}", support::stdout(&o));
    }
    let read = |p: &str| {
        let c = snnc::driver::compile(&net(), "stdp.ron", &Default::default()).unwrap();
        snnc::driver::read_weights_file(&c.module, Path::new(p), &[]).unwrap()
    };
    let (wa, wb) = (read(&a), read(&b));
    let mut exe = snnc::compile(&net(), Target::Cpu).unwrap();
    let c = exe.compiled();
    let example = snnc::driver::example_inputs(&c.module, &c.network.example_input, 1).unwrap();
    let w0 = exe.weights().clone();
    let first = exe.forward(&example).unwrap();
    assert_eq!(wa["fc.weight"].data, first.final_state["fc.weight.plastic"].data);
    assert_ne!(wa["fc.weight"], w0["fc.weight"]);
    exe.set_weights(wa.clone()).unwrap();
    let second = exe.forward(&example).unwrap();
    assert_eq!(wb["fc.weight"].data, second.final_state["fc.weight.plastic"].data);
    assert_ne!(wb["fc.weight"], wa["fc.weight"]);
}

/// STDP on a convolution (Norse's `stdp_step_conv2d`), written with the
/// DSL: the CPU and the simulated PTX give the interpreter's bits, and a
/// grouped convolution is refused.
#[test]
fn a_plastic_convolution_runs_alike_on_every_backend() {
    use snnc_frontend::dsl::Net;
    use snnc_frontend::{LifParams, Stdp, StdpRule};
    let lif = |v_th: f64| Layer::lif().params(LifParams { v_th: v_th.into(), ..LifParams::default() });
    let conv = |groups: u32| {
        Net::new("stdp_conv", 5)
            .input([2, 6, 6])
            .layer(lif(0.3).named("pre"))
            .layer(Layer::conv2d(4, 3).named("conv").padding(1).groups(groups).plasticity(Stdp {
                eta_plus: 0.05,
                eta_minus: 0.04,
                ..Stdp::rule(StdpRule::MultiplicativeRelu)
            }))
            .layer(lif(0.2).named("post"))
            .build_unchecked()
    };
    let data: Vec<f64> = (0..5 * 2 * 2 * 36).map(|k| 2.0 * ((k * 7919 % 13) as f64 / 13.0)).collect();
    let x = inputs(Tensor::new(vec![5, 2, 2, 6, 6], ElemType::F32, data).unwrap());
    let mut interp = snnc::compile(&conv(1), Target::Interp).unwrap();
    let want = interp.forward(&x).unwrap();
    let mut cpu = snnc::compile(&conv(1), Target::Cpu).unwrap();
    let got = cpu.forward(&x).unwrap();
    // The CPU's convolution (im2col GEMM) sums in another order: the same
    // spikes, and the states within float32 rounding.
    assert_eq!(got.tensors, want.tensors);
    for (name, w) in &want.final_state {
        let g = &got.final_state[name];
        let scale = w.data.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let worst = g.data.iter().zip(&w.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst <= 1e-5 * scale, "{name}: the cpu is {worst} away from the interpreter");
    }
    let w = &want.final_state["conv.weight.plastic"];
    assert_eq!(w.shape, [4, 2, 3, 3]);
    let spikes: f64 = want.tensors["output"].data.iter().sum();
    let all = want.tensors["output"].data.len() as f64;
    assert!(spikes > 0.0 && spikes < all, "{spikes} of {all} postsynaptic spikes");
    assert_ne!(w, &interp.weights()["conv.weight"], "STDP changed no weight");

    let mut c = snnc::driver::compile(&conv(1), "conv", &Default::default()).unwrap();
    let opts = snnc::driver::pass_options(&c, None).unwrap();
    snnc::driver::optimize(&mut c, &snnc::driver::pipeline(Target::Cuda, None, &opts).unwrap(), &mut |_| {}).unwrap();
    let art = snnc_cuda::emit(&c.module, &c.info, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let weights = interp.weights().clone();
    let reference = snnc_interp::run(&c.module, &c.info, &weights, &x, &Default::default()).unwrap();
    let ptx = sim::Module::parse(&art.ptx);
    let names = sim::bindings(&art.manifest);
    let mut run = sim::Run::new(&art.manifest, 2);
    for (name, t) in x.iter().chain(&weights) {
        if let Some(&b) = names.get(name) {
            run.set(b, &t.data.iter().map(|&v| v as f32).collect::<Vec<_>>());
        }
    }
    run.init_states();
    run.run(&ptx);
    let got: Vec<f64> = run.get(names["conv.weight.plastic"]).into_iter().map(f64::from).collect();
    assert_eq!(got, reference.final_state["conv.weight.plastic"].data);

    let err = snnc::compile(&conv(2), Target::Interp).map(|_| ()).expect_err("refused").to_string();
    assert!(err.contains("`conv` (Conv2d): plasticity") && err.contains("needs groups 1"), "{err}");
}

/// The STDP benchmark network (`snnc bench stdp-784x400-*`: Poisson spikes
/// into a plastic 784 → 400 Linear), shortened: its product and its
/// `t_post'ᵀ z_pre` are event-driven on the encoder's spikes, and the CPU
/// backend runs them on the weight of the step loop without transposing it
/// (`event::matmul_untransposed`, `matmul_grad_weight_direct`) — with the
/// interpreter's bits.
#[test]
fn event_driven_products_on_the_plastic_weight_give_the_interpreters_bits() {
    let text = snnc::bench::stdp::NETWORK.replace("steps: 350", "steps: 60");
    let net = snnc_frontend::parse_network(&text, "stdp bench").unwrap();
    let mut exe = snnc::compile(&net, Target::Cpu).unwrap();
    let m = &exe.compiled().module;
    let event = snnc_ir::MatMulKind::EventDriven;
    let on_state = |w: snnc_ir::Handle<snnc_ir::Node>| matches!(m.nodes[w].op, Op::StateRead(_));
    assert!(
        m.nodes
            .iter()
            .any(|(_, n)| matches!(n.op, Op::MatMul { weight, kind, .. } if kind == event && on_state(weight))),
        "{}",
        snnc_ir::print(m)
    );
    // The weight update is one `stdp_update` of the plastic weight's state
    // (the CPU runs it in place, event-driven where it pays).
    assert!(m.nodes.iter().any(|(_, n)| matches!(n.op, Op::StdpUpdate { weight, .. } if on_state(weight))));
    // Bright pixels (up to 2 % spikes per pixel and step), two samples.
    let data = (0..2 * 784).map(|k| f64::from((k * 37 % 101) as u8) / 100.0).collect();
    let x = inputs(Tensor::new(vec![2, 784], ElemType::F32, data).unwrap());
    let w0 = exe.weights()["fc.weight"].clone();
    let cpu = exe.forward(&x).unwrap();
    let reference = snnc::compile(&net, Target::Interp).unwrap().forward(&x).unwrap();
    assert_eq!(cpu.tensors, reference.tensors);
    assert_eq!(cpu.final_state, reference.final_state);
    let w = &reference.final_state["fc.weight.plastic"];
    assert!(w.data.iter().zip(&w0.data).filter(|(a, b)| a != b).count() > 1000, "STDP changed too few weights");
    let post: f64 = reference.tensors["output"].data.iter().sum();
    assert!(post > 0.0, "the LIF layer never fired");
}

/// `snnc plot WEIGHTS.safetensors -o FIELDS.png` draws the receptive
/// fields of the learnt weight: `fc.weight` `[3, 4]` is 3 fields of 2 × 2,
/// a grid of 2 columns and 2 rows (`snnc::plot::fields`).
#[test]
fn plot_draws_the_receptive_fields_of_saved_weights() {
    let dir = support::TempDir::new("stdp_fields");
    let net_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nets/stdp.ron");
    let (w, png, svg) = (dir.path("w.safetensors"), dir.path("fields.png"), dir.path("fields.svg"));
    let o = support::snnc(&["run", net_path.to_str().unwrap(), "--target", "cpu", "--save-weights", w.as_str()]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    let o = support::snnc(&["plot", w.as_str(), "-o", png.as_str()]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    assert!(support::stdout(&o).contains("receptive fields of `fc.weight` (3 of 2x2)"), "{}", support::stdout(&o));
    let bytes = std::fs::read(&png).unwrap();
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    use snnc::plot::fields::{GAP, SCALE};
    let side = 2 * (2 * SCALE + GAP) + GAP;
    assert_eq!((&bytes[1..4], be(16), be(20)), (&b"PNG"[..], side, side));
    let o = support::snnc(&["plot", w.as_str(), "-o", svg.as_str()]);
    assert!(!o.status.success() && support::stderr(&o).contains("drawn as PNG"), "{}", support::stderr(&o));
    let o = support::snnc(&["plot", w.as_str(), "-o", png.as_str(), "--weight", "nope"]);
    assert!(support::stderr(&o).contains("has no weight `nope`; it holds `fc.weight`"), "{}", support::stderr(&o));
}

/// `examples/stdp_fields.ron` on its Fashion-MNIST image: STDP imprints the
/// image on every neuron's weights. The Pearson correlation of each
/// neuron's weights with the image's pixels is ~0 before (PyTorch's
/// initial weights) and above 0.75 after the 3000 steps (0.775–0.797).
#[test]
fn the_stdp_example_imprints_its_image() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let net = snnc_frontend::load_network(&root.join("examples/stdp_fields.ron")).unwrap();
    let mut exe = snnc::compile(&net, Target::Cpu).unwrap();
    let c = exe.compiled();
    let x = snnc::driver::read_input_file(&c.module, &root.join("examples/data/fmnist_test_1.npy")).unwrap();
    let img = x["x"].data.clone();
    assert_eq!(x["x"].shape, [1, 784]);
    let corr = |w: &[f64]| {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (mw, mi) = (mean(w), mean(&img));
        let cov: f64 = w.iter().zip(&img).map(|(a, b)| (a - mw) * (b - mi)).sum();
        let var = |v: &[f64], m: f64| v.iter().map(|a| (a - m) * (a - m)).sum::<f64>();
        cov / (var(w, mw) * var(&img, mi)).sqrt()
    };
    let fields = |w: &Tensor| w.data.chunks(784).map(corr).collect::<Vec<f64>>();
    let before = fields(&exe.weights()["fc.weight"]);
    let after = fields(&exe.forward(&x).unwrap().final_state["fc.weight.plastic"]);
    assert!(before.iter().all(|c| c.abs() < 0.15), "{before:?}");
    assert!(after.iter().all(|c| *c > 0.75), "{after:?}");
}
