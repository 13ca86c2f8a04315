//! The Rust API (`snnc::compile`, `Executable`): forward on the CPU agrees
//! with the interpreter, shapes are checked first, state is carried
//! between calls exactly as documented, and f64 on the CPU is refused.

use std::collections::BTreeMap;
use std::path::Path;

use snnc::runtime::Tensor;
use snnc::{Error, Target};

fn load(name: &str) -> snnc::frontend::Network {
    let path = format!("{}/examples/{name}.ron", env!("CARGO_MANIFEST_DIR"));
    snnc::frontend::load_network(Path::new(&path)).unwrap_or_else(|e| panic!("{e}"))
}

fn example_inputs(exe: &snnc::Executable, batch: usize) -> BTreeMap<String, Tensor> {
    let c = exe.compiled();
    snnc::driver::example_inputs(&c.module, &c.network.example_input, batch).expect("example inputs")
}

fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.shape, b.shape, "{what}");
    for (i, (x, y)) in a.data.iter().zip(&b.data).enumerate() {
        assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn forward_on_the_cpu_agrees_with_the_interpreter() {
    for name in ["tutorial", "convnet"] {
        let net = load(name);
        let mut cpu = snnc::compile(&net, Target::Cpu).expect("compiles for the cpu");
        let mut interp = snnc::compile(&net, Target::Interp).expect("compiles for the interpreter");
        let inputs = example_inputs(&cpu, 3);
        let a = cpu.forward(&inputs).expect("cpu forward");
        if name == "tutorial" {
            // The encoder's and the LI readout's step loops run as one kernel
            // each, with the time loop inside (lif1's holds a spike product).
            let snnc::api::Backend::Cpu(exe) = cpu.backend() else { panic!("a cpu executable") };
            assert_eq!(exe.whole_loop_count(), 2);
        }
        let b = interp.forward(&inputs).expect("interp forward");
        assert_close(&a.tensors["readout"], &b.tensors["readout"], name);
        assert_eq!(a.classes("readout"), b.classes("readout"));
        // Compile once, run many: the same bits again.
        let again = cpu.forward(&inputs).expect("second forward");
        assert_eq!(a.tensors["readout"].data, again.tensors["readout"].data);
    }
}

#[test]
fn shapes_are_checked_before_running() {
    let mut exe = snnc::compile(&load("tutorial"), Target::Cpu).unwrap();
    let x = Tensor::zeros(vec![2, 1, 28, 27], snnc::runtime::ElemType::F32);
    let err = exe.forward(&BTreeMap::from([("x".to_string(), x)])).unwrap_err();
    assert!(matches!(err, Error::User(_)), "{err:?}");
    assert!(
        err.to_string().contains("input `x` has shape [2, 1, 28, 27] but the module expects [B, 1, 28, 28]"),
        "{err}"
    );
    let err = exe.forward(&BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("missing input `x`"), "{err}");
}

#[test]
fn carried_state_continues_the_run() {
    // Two calls of T steps with the state carried compute one run of 2T.
    let net = load("lif");
    let t = net.steps as usize;
    let mut long_net = net.clone();
    long_net.steps = 2 * net.steps;
    let mut exe = snnc::compile(&net, Target::Cpu).unwrap();
    let mut long = snnc::compile(&long_net, Target::Cpu).unwrap();
    let long_inputs = example_inputs(&long, 2);
    let x = &long_inputs["x"];
    let per = x.len() / (2 * t);
    let half = |k: usize| {
        let data = x.data[k * t * per..(k + 1) * t * per].to_vec();
        let mut shape = x.shape.clone();
        shape[0] = t;
        BTreeMap::from([("x".to_string(), Tensor::new(shape, x.dtype, data).unwrap())])
    };
    assert!(exe.state().is_empty());
    let first = exe.forward_with_state(&half(0)).unwrap();
    assert_eq!(exe.state(), &first.final_state, "the final state is carried");
    let second = exe.forward_with_state(&half(1)).unwrap();
    let whole = long.forward(&long_inputs).unwrap();
    for (name, s) in &whole.final_state {
        assert_close(&second.final_state[name], s, name);
    }
    let out = &whole.tensors["output"];
    let tail = Tensor::new(second.tensors["output"].shape.clone(), out.dtype, out.data[t * per..].to_vec()).unwrap();
    assert_close(&second.tensors["output"], &tail, "output");
    // `forward` starts from the initial state and leaves the carried one alone.
    let fresh = exe.forward(&half(0)).unwrap();
    assert_eq!(fresh.tensors["output"].data, first.tensors["output"].data);
    assert_eq!(exe.state(), &second.final_state);
    exe.reset_state();
    assert!(exe.state().is_empty());
    let restarted = exe.forward_with_state(&half(0)).unwrap();
    assert_eq!(restarted.tensors["output"].data, first.tensors["output"].data);
}

#[test]
fn weights_can_be_replaced() {
    let mut exe = snnc::compile(&load("tutorial"), Target::Cpu).unwrap();
    let inputs = example_inputs(&exe, 2);
    let before = exe.forward(&inputs).unwrap();
    let w = exe.weights()["fc_out.weight"].clone();
    let zeros = Tensor::zeros(w.shape.clone(), w.dtype);
    exe.set_weights(BTreeMap::from([("fc_out.weight".to_string(), zeros)])).unwrap();
    let after = exe.forward(&inputs).unwrap();
    assert_ne!(before.tensors["readout"].data, after.tensors["readout"].data);
    // With a zero readout layer every class is equally likely.
    for v in &after.tensors["readout"].data {
        assert!((v - (-(10f64).ln())).abs() < 1e-5, "{v}");
    }
    let bad = Tensor::zeros(vec![3], w.dtype);
    assert!(exe.set_weights(BTreeMap::from([("fc_out.weight".to_string(), bad)])).is_err());
    assert!(exe.set_weights(BTreeMap::from([("nope".to_string(), w)])).is_err());
}

#[test]
fn f64_on_the_cpu_is_refused_and_cuda_is_not_built() {
    let net = load("lif");
    let opts = snnc::frontend::LowerOptions { float: snnc::ir::Dtype::F64, ..Default::default() };
    let err = snnc::compile_with(&net, Target::Cpu, &opts).unwrap_err();
    assert!(matches!(err, Error::User(_)), "{err:?}");
    assert!(err.to_string().contains("the interpreter runs f64"), "{err}");
    assert!(snnc::compile_with(&net, Target::Interp, &opts).is_ok());
    let err = snnc::compile(&net, Target::Cuda).unwrap_err();
    assert_eq!(err.exit_code(), 3);
}

/// `run_f32` (f32 in, borrowed f32 out, weights loaded once) gives the
/// bits of `run`, and checks what it is given.
#[test]
fn the_f32_fast_path_gives_the_bits_of_run() {
    let exe = snnc::compile(&load("tutorial"), Target::Cpu).unwrap();
    let snnc::api::Backend::Cpu(cpu) = exe.backend() else { panic!("a cpu executable") };
    let inputs = example_inputs(&exe, 3);
    let want = cpu.run(exe.weights(), &inputs, &Default::default()).expect("run");
    let x = &inputs["x"];
    let data: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
    let views = BTreeMap::from([("x".to_string(), snnc_cpu::F32View { shape: &x.shape, data: &data })]);
    let err = cpu.run_f32(&views, |_| ()).unwrap_err();
    assert!(err.to_string().contains("no weights loaded"), "{err}");
    cpu.load_weights(exe.weights()).expect("weights load");
    let got = cpu
        .run_f32(&views, |out| {
            let r = out.get("readout").expect("the readout");
            (r.shape.to_vec(), r.data.to_vec())
        })
        .expect("run_f32");
    assert_eq!(got.0, want.outputs["readout"].shape);
    let want_bits: Vec<u32> = want.outputs["readout"].data.iter().map(|&v| (v as f32).to_bits()).collect();
    assert_eq!(got.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want_bits);
    // Data that does not fit the shape, and a wrong shape.
    let short = BTreeMap::from([("x".to_string(), snnc_cpu::F32View { shape: &x.shape, data: &data[1..] })]);
    let err = cpu.run_f32(&short, |_| ()).unwrap_err();
    assert!(err.to_string().contains("has shape [3, 1, 28, 28] but 2351 values"), "{err}");
    let odd = [3, 1, 28, 27];
    let wrong = BTreeMap::from([("x".to_string(), snnc_cpu::F32View { shape: &odd, data: &data[..3 * 28 * 27] })]);
    let err = cpu.run_f32(&wrong, |_| ()).unwrap_err();
    assert!(err.to_string().contains("but the module expects [B, 1, 28, 28]"), "{err}");
}
