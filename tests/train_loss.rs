//! The losses of `snnc train --loss` through the library (tiny networks,
//! synthetic inputs, the CPU backend): each loss's weight gradient is the
//! gradient of its value (a finite difference where the network is
//! smooth, exact identities between the losses where it spikes), and a
//! network a loss cannot train is refused with the fix.

use snnc::driver::Target;
use snnc::train::TrainProgram;
use snnc_runtime::{ElemType, Loss, Targets, Tensor, Weights};

fn net(layers: &str, readout: &str, steps: u32) -> snnc_frontend::Network {
    let text = format!(
        "(version: 1, name: \"tiny\", steps: {steps}, input: [4], encoder: ConstantCurrent(), seed: 3, \
         layers: [{layers}], readout: {readout})"
    );
    snnc_frontend::parse_network(&text, "tiny.ron").expect("parses")
}

/// Four samples of four inputs, large enough to make LIF neurons spike.
fn inputs() -> Tensor {
    let data = (0..16).map(|i| f64::from(((i * 7) % 11) as f32 * 0.35)).collect();
    Tensor::new(vec![4, 4], ElemType::F32, data).unwrap()
}

fn bits(w: &std::collections::BTreeMap<String, Tensor>) -> Vec<(String, Vec<u64>)> {
    w.iter().map(|(k, t)| (k.clone(), t.data.iter().map(|x| x.to_bits()).collect())).collect()
}

fn scaled(w: &std::collections::BTreeMap<String, Tensor>, k: f64) -> std::collections::BTreeMap<String, Tensor> {
    w.iter()
        .map(|(n, t)| {
            (n.clone(), Tensor { data: t.data.iter().map(|x| f64::from(*x as f32 * k as f32)).collect(), ..t.clone() })
        })
        .collect()
}

/// `mse` on float targets: LI voltages are linear in the weights, so the
/// loss is quadratic in them and a central difference is exact but for
/// rounding.
#[test]
fn mse_trains_on_float_targets_and_its_gradient_is_the_loss_derivative() {
    for readout in ["LastStep", "Mean", "Max"] {
        let net = net("Linear(name: \"fc\", out: 3), LI()", readout, 6);
        let program = TrainProgram::new(&net, Target::Cpu, Loss::Mse).expect("compiles for mse");
        let targets =
            Targets::Values { per_sample: vec![3], data: (0..12).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect() };
        let x = inputs();
        let w: Weights = program.initial_weights.clone();
        let step = program.step(&w, &x, &targets, 0).expect("steps");
        assert_eq!(step.prediction.shape, vec![4, 3]);
        // The training module's prediction is the forward module's.
        assert_eq!(step.prediction, program.evaluate(&w, &x).unwrap());
        let loss = |w: &Weights| program.loss_value(&program.evaluate(w, &x).unwrap(), &targets).unwrap();
        assert!(loss(&w) > 0.0);
        let g = &step.grads["fc.weight"];
        let h = 1.0 / 64.0;
        let mut checked = 0;
        for i in 0..g.len() {
            let (mut up, mut down) = (w.clone(), w.clone());
            up.get_mut("fc.weight").unwrap().data[i] += h;
            down.get_mut("fc.weight").unwrap().data[i] -= h;
            let fd = (loss(&up) - loss(&down)) / (2.0 * h);
            let tol = if readout == "Max" { 2e-2 } else { 1e-3 } * fd.abs().max(0.05);
            assert!((fd - g.data[i]).abs() <= tol, "{readout}: fc.weight[{i}]: {fd} vs {}", g.data[i]);
            checked += usize::from(g.data[i] != 0.0);
        }
        assert!(checked > 6, "{readout}: the gradient is mostly zero: {:?}", g.data);
        // No classes: no accuracy.
        assert_eq!(program.loss.correct(&step.prediction, &targets).unwrap(), None);
        // Class labels are refused, saying where float targets come from.
        let e = program.step(&w, &x, &Targets::Classes(vec![0; 4]), 0).unwrap_err().to_string();
        assert!(e.contains("--loss mse: needs float targets") && e.contains("--data FILE.npz"), "{e}");
    }
}

/// snnTorch's mse-count is mse on the spike counts against
/// `T · rate` targets, divided by `T`: with `T = 8` (a power of two) the
/// two give the same bits up to that exact factor.
#[test]
fn mse_count_is_mse_of_the_spike_counts_divided_by_the_steps() {
    let net = net("Linear(name: \"fc\", out: 3), LIF(p: (v_th: 0.3))", "SpikeCount", 8);
    let counts = TrainProgram::new(&net, Target::Cpu, Loss::MseCount { correct_rate: 0.75, incorrect_rate: 0.25 })
        .expect("compiles for mse-count");
    let mse = TrainProgram::new(&net, Target::Cpu, Loss::Mse).expect("compiles for mse");
    let labels = vec![0u8, 2, 1, 2];
    // int(8 · 0.75) = 6 at the label, int(8 · 0.25) = 2 elsewhere.
    let values = labels.iter().flat_map(|&y| (0..3).map(move |c| if c == y { 6.0 } else { 2.0 })).collect();
    let values = Targets::Values { per_sample: vec![3], data: values };
    let classes = Targets::Classes(labels);
    let (x, w) = (inputs(), counts.initial_weights.clone());
    let a = counts.step(&w, &x, &classes, 0).expect("steps");
    let b = mse.step(&w, &x, &values, 0).expect("steps");
    assert_eq!(a.prediction, b.prediction, "the spike counts are the SpikeCount readout");
    assert!(a.prediction.data.iter().any(|&c| c > 0.0) && a.prediction.data.iter().any(|&c| c < 8.0));
    assert_eq!(bits(&a.grads), bits(&scaled(&b.grads, 0.125)));
    assert!(a.grads["fc.weight"].data.iter().any(|&g| g != 0.0));
    let (va, vb) =
        (counts.loss_value(&a.prediction, &classes).unwrap(), mse.loss_value(&b.prediction, &values).unwrap());
    assert_eq!(va, f64::from(vb as f32 / 8.0));
    // Accuracy: the class with the most spikes.
    let correct = counts.loss.correct(&a.prediction, &classes).unwrap().unwrap();
    assert_eq!(correct, snnc_runtime::accuracy(&a.prediction, &[0, 2, 1, 2]).unwrap());
}

/// snnTorch's ce-count is cross-entropy of the last layer's spike counts,
/// whatever the readout: the same bits as nll on a SpikeCount readout.
#[test]
fn ce_count_is_cross_entropy_of_the_spike_counts_whatever_the_readout() {
    let layers = "Linear(name: \"fc\", out: 3), LIF(p: (v_th: 0.3))";
    let nll = TrainProgram::new(&net(layers, "SpikeCount", 5), Target::Cpu, Loss::Nll).expect("compiles");
    let targets = Targets::Classes(vec![1, 0, 2, 1]);
    let (x, w) = (inputs(), nll.initial_weights.clone());
    let want = nll.step(&w, &x, &targets, 0).expect("steps");
    assert!(want.grads["fc.weight"].data.iter().any(|&g| g != 0.0));
    for readout in ["SpikeCount", "Max", "Sequence"] {
        let ce = TrainProgram::new(&net(layers, readout, 5), Target::Cpu, Loss::CeCount).expect("compiles");
        let got = ce.step(&w, &x, &targets, 0).expect("steps");
        assert_eq!(got.prediction, want.prediction, "{readout}");
        assert_eq!(bits(&got.grads), bits(&want.grads), "{readout}");
        assert_eq!(
            ce.loss_value(&got.prediction, &targets).unwrap(),
            nll.loss_value(&want.prediction, &targets).unwrap()
        );
        assert_eq!(ce.evaluate(&w, &x).unwrap(), want.prediction, "{readout}");
    }
}

#[test]
fn a_count_loss_needs_a_spiking_last_layer_with_a_neuron_per_class() {
    for loss in [Loss::CeCount, Loss::MseCount { correct_rate: 1.0, incorrect_rate: 0.0 }] {
        let net = net("Linear(name: \"fc\", out: 3), LI(name: \"out\")", "LastStep", 4);
        let e = TrainProgram::new(&net, Target::Cpu, loss).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let want = format!(
            "network `tiny`: --loss {} counts the spikes of the last layer, but the last layer `out` gives f32 \
             values, not spikes: end the network in a spiking layer (e.g. LIF), or use --loss nll or mse",
            loss.name()
        );
        assert_eq!(e.to_string(), want);
    }
    let e = TrainProgram::new(
        &net("Linear(out: 3), LIF()", "SpikeCount", 4),
        Target::Cpu,
        Loss::MseCount { correct_rate: 2.0, incorrect_rate: 0.0 },
    )
    .unwrap_err();
    assert!(e.to_string().contains("--correct-rate must be in [0, 1]"), "{e}");
}
