//! Per-neuron and trainable neuron parameters: parsing, checks, lowering.

use snnc_frontend::dsl::{Layer as L, Net};
use snnc_frontend::*;
use snnc_ir::{ParamInit, StateInit};

fn net(p: &str) -> String {
    format!("(version: 1, name: \"n\", steps: 3, input: [3], layers: [LIF(name: \"lif1\", p: ({p}))])")
}

fn parse(text: &str) -> Result<Network, FrontendError> {
    parse_network(text, "net.ron")
}

#[test]
fn lists_and_trainable_parse_and_round_trip() {
    let n = parse(&net("v_th: [0.5, 0.6, 0.7], tau_mem_inv: 120, trainable: [tau_mem_inv, v_th]")).unwrap();
    let Layer::LIF { p, .. } = &n.layers[0] else { panic!() };
    assert_eq!(p.v_th, ParamValue::PerNeuron(vec![0.5, 0.6, 0.7]));
    assert_eq!(p.tau_mem_inv, ParamValue::Scalar(120.0));
    assert_eq!(p.trainable, vec![NeuronParam::tau_mem_inv, NeuronParam::v_th]);
    let text = to_ron(&n);
    assert!(text.contains("v_th: [\n") || text.contains("v_th: [0.5"), "{text}");
    assert_eq!(parse(&text).unwrap(), n);
    // A file without the new fields writes no `trainable`.
    let plain = parse(&net("v_th: 0.5")).unwrap();
    assert!(!to_ron(&plain).contains("trainable"));
}

#[test]
fn lowering_makes_params_and_state_values() {
    let n = parse(&net("v_th: [0.5, 0.6, 0.7], v_leak: [0, 0.1, 0.2], tau_mem_inv: 120, trainable: [tau_mem_inv]"))
        .unwrap();
    let m = lower(&n, "net.ron", &LowerOptions::default()).unwrap();
    let params: Vec<_> = m.params.iter().map(|(_, p)| (p.name.clone(), p.trainable, p.shape.to_string())).collect();
    assert_eq!(
        params,
        vec![
            ("lif1.tau_mem_inv".to_string(), true, "[]".to_string()),
            ("lif1.v_leak".to_string(), false, "[3]".to_string()),
            ("lif1.v_th".to_string(), false, "[3]".to_string()),
        ]
    );
    let (_, tau) = m.params.iter().next().unwrap();
    assert_eq!(tau.init, ParamInit::Fill(120.0));
    let (_, v) = m.states.iter().find(|(_, s)| s.name == "lif1.v").unwrap();
    assert_eq!(v.init, StateInit::Values(vec![0.0, 0.1, 0.2]));
}

fn invalid(text: &str) -> String {
    match parse(text).and_then(|n| lower(&n, "net.ron", &LowerOptions::default()).map(|_| ())) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("accepted: {text}"),
    }
}

#[test]
fn wrong_list_length_names_layer_field_and_count() {
    let e = invalid(&net("v_th: [0.5, 0.6]"));
    assert!(e.contains("layers[0] `lif1` (LIF): p.v_th"), "{e}");
    assert!(e.contains("has 2 values, but the layer has 3 neurons per sample (shape [3])"), "{e}");
    assert!(e.contains("give one value per neuron (3"), "{e}");
}

#[test]
fn unknown_trainable_name_lists_the_valid_ones() {
    // Not a neuron parameter at all: the RON error lists every name.
    let e = invalid(&net("trainable: [tau]"));
    assert!(e.contains("net.ron:1:"), "{e}");
    assert!(e.contains("tau_mem_inv"), "{e}");
    // A parameter of another model.
    let e = invalid(&net("trainable: [beta]"));
    assert!(e.contains("p.trainable[0]: `beta` is not a parameter of this model"), "{e}");
    assert!(e.contains("tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset"), "{e}");
    let e = invalid(&net("trainable: [v_th, v_th]"));
    assert!(e.contains("`v_th` is listed twice"), "{e}");
}

#[test]
fn nan_and_step_rule_in_lists() {
    let e = invalid(&net("v_th: [0.5, NaN, 0.7]"));
    assert!(e.contains("p.v_th[1]: must be a finite number, found NaN"), "{e}");
    let e = invalid(&net("tau_mem_inv: [100, 3000, 100]"));
    assert!(e.contains("p.tau_mem_inv[1]"), "{e}");
    assert!(e.contains("more than 2"), "{e}");
    let e = invalid(&net("tau_syn_inv: [100, -1, 100]"));
    assert!(e.contains("p.tau_syn_inv[1]: must be greater than 0, found -1"), "{e}");
    let e = invalid(&net("v_th: []"));
    assert!(e.contains("p.v_th: must hold at least one value"), "{e}");
    // Warnings per element, one per field.
    let n = parse(&net("tau_mem_inv: [1500, 1500, 100]")).unwrap();
    let w = snnc_frontend::check::network_warnings(&n);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].at, "layers[0] `lif1` (LIF): p.tau_mem_inv[0]");
}

#[test]
fn dsl_sets_per_neuron_and_trainable() {
    let n = Net::new("n", 3)
        .input(vec![3])
        .layer(
            L::lif()
                .named("lif1")
                .v_th(vec![0.5, 0.6, 0.7])
                .tau_mem_inv(120.0)
                .trainable([NeuronParam::tau_mem_inv, NeuronParam::v_th]),
        )
        .build()
        .unwrap();
    assert_eq!(n, parse(&net("v_th: [0.5, 0.6, 0.7], tau_mem_inv: 120, trainable: [tau_mem_inv, v_th]")).unwrap());
}
