use super::*;
use snnc_frontend::{Encoder, LifParams};

fn t(shape: &[usize], data: &[f64]) -> Tensor {
    Tensor { shape: shape.to_vec(), dtype: ElemType::F64, data: data.to_vec() }
}

#[test]
fn float_tolerance_is_relative_to_the_largest_expected_value() {
    let e = t(&[3], &[1.0, -10.0, 0.5]);
    // allowed = 1e-5 + 1e-4 * 10 = 1.01e-3
    let ok = compare_tensor("v", &t(&[3], &[1.001, -10.0, 0.5]), &e, Kind::Float, 1e-5, 1e-4);
    assert_eq!(ok.status, Status::Pass);
    let bad = compare_tensor("v", &t(&[3], &[1.0, -10.0, 0.502]), &e, Kind::Float, 1e-5, 1e-4);
    assert_eq!(bad.status, Status::Fail("1 of 3 differ; first at [2]: expected 0.5, actual 0.502".into()));
    assert!((bad.max_abs_err.unwrap() - 0.002).abs() < 1e-12);
    assert!((bad.allowed.unwrap() - 1.01e-3).abs() < 1e-15);
}

#[test]
fn spikes_are_exact_and_nan_fails() {
    let e = t(&[2, 2], &[0.0, 1.0, 1.0, 0.0]);
    let r = compare_tensor("z", &t(&[2, 2], &[0.0, 1.0, 0.0, 0.0]), &e, Kind::Exact, 1.0, 1.0);
    assert_eq!(r.status, Status::Fail("1 of 4 differ; first at [1,0]: expected 1, actual 0".into()));
    let r = compare_tensor("v", &t(&[2, 2], &[0.0, f64::NAN, 1.0, 0.0]), &e, Kind::Float, 1.0, 1.0);
    assert!(matches!(r.status, Status::Fail(_)));
    assert_eq!(r.max_abs_err, Some(f64::INFINITY));
}

#[test]
fn shapes_must_agree_up_to_unit_dims() {
    let e = t(&[4, 3], &[0.0; 12]);
    let r = compare_tensor("z", &t(&[4, 1, 3], &[0.0; 12]), &e, Kind::Exact, 0.0, 0.0);
    assert_eq!(r.status, Status::Pass);
    let r = compare_tensor("z", &t(&[3, 4], &[0.0; 12]), &e, Kind::Exact, 0.0, 0.0);
    assert_eq!(r.status, Status::Fail("shape mismatch: expected [4, 3], actual [3, 4]".into()));
}

#[test]
fn argmax_over_time_takes_the_first_maximum() {
    // [T=3, 2]: column 0 ties at 0.0 (first index 0), column 1 peaks at t=1.
    let x = t(&[3, 2], &[0.0, 0.1, 0.0, 0.5, -1.0, 0.5]);
    let a = argmax_over_time(&x).unwrap();
    assert_eq!(a.shape, vec![2]);
    assert_eq!(a.data, vec![0.0, 1.0]);
}

#[test]
fn spike_names() {
    for n in ["z", "lif1.z", "encoder.z", "z_before_latency_mask", "max_over_time_argmax_t"] {
        assert_eq!(kind_of(n), Kind::Exact, "{n}");
    }
    for n in ["v", "lif1.v", "output", "log_p_y", "v_encoder_internal", "fc1.out"] {
        assert_eq!(kind_of(n), Kind::Float, "{n}");
    }
}

fn tensor_json(shape: &[usize], data: &[f64]) -> Value {
    serde_json::json!({"shape": shape, "dtype": "float32", "data": data})
}

#[test]
fn cell_cases_become_one_layer_networks() {
    let json = serde_json::json!({
        "schema": "snnc-norse-oracle/1", "name": "c", "model": "LIFRecurrentCell", "dtype": "float32",
        "parameters": {"tau_syn_inv": 250.0, "v_th": 0.5, "method": "tanh", "alpha": 2.0, "dt": 0.0005, "autapses": true},
        "inputs": {"x": tensor_json(&[2, 1, 3], &[0.0; 6])},
        "weights": {"input_weights": tensor_json(&[2, 3], &[0.0; 6]),
                    "recurrent_weights_given": tensor_json(&[2, 2], &[1.0; 4]),
                    "recurrent_weights_effective": tensor_json(&[2, 2], &[1.0; 4])},
        "initial_state": {"v": tensor_json(&[1, 2], &[0.5, 0.5])},
        "initial_state_is_norse_default": false,
        "expected": {"z": tensor_json(&[2, 1, 2], &[0.0; 4]), "v": tensor_json(&[2, 1, 2], &[0.0; 4])},
        "tolerance": {"atol": 1e-5, "rtol_to_max": 1e-4},
    });
    let plan = plan_case(&json).unwrap();
    let Program::Network { net, opts } = &plan.program else { panic!("not a network") };
    assert_eq!(opts.float, Dtype::F32);
    assert!(!opts.poisson_uniform_input);
    assert_eq!((net.steps, net.dt, net.input.clone()), (2, 0.0005, vec![3]));
    let p = LifParams {
        tau_syn_inv: 250.0.into(),
        v_th: 0.5.into(),
        method: Method::Tanh,
        alpha: 2.0,
        ..LifParams::default()
    };
    assert_eq!(
        net.layers,
        vec![Layer::LIFRecurrent {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: Some("cell".into()),
            input: Some(3),
            hidden: 2,
            p,
            autapses: true,
            input_density: None
        }]
    );
    assert_eq!(plan.weights.keys().collect::<Vec<_>>(), ["cell.input_weights", "cell.recurrent_weights"]);
    assert_eq!(plan.initial_state.keys().collect::<Vec<_>>(), ["cell.v"]);
    let sources: Vec<_> = plan.checks.iter().map(|c| (c.label.as_str(), c.source.clone(), c.kind)).collect();
    assert_eq!(
        sources,
        [("v", Source::Trace("cell.v".into()), Kind::Float), ("z", Source::Trace("cell.z".into()), Kind::Exact)]
    );
}

#[test]
fn network_cases_map_layers_encoder_and_readout() {
    let json = serde_json::json!({
        "schema": "snnc-norse-oracle/1", "name": "n", "model": "network", "dtype": "float64",
        "layers": [
            {"type": "Flatten", "name": "flatten0"},
            {"type": "LIFRecurrent", "name": "l1", "parameters": {"v_th": 0.5}, "autapses": false,
             "dt": 0.001, "input_size": 4, "hidden_size": 3},
            {"type": "Linear", "name": "fc", "in_features": 3, "out_features": 2, "bias": false},
            {"type": "LI", "name": "out", "parameters": {}, "dt": 0.001}],
        "encoder": {"type": "ConstantCurrentLIFEncoder", "seq_length": 5, "parameters": {}, "dt": 0.001},
        "inputs": {"x": tensor_json(&[2, 1, 2, 2], &[0.0; 8])},
        "weights": {"l1.recurrent_weights_given": tensor_json(&[3, 3], &[1.0; 9]),
                    "l1.recurrent_weights": tensor_json(&[3, 3], &[0.0; 9]),
                    "fc.weight": tensor_json(&[2, 3], &[0.0; 6])},
        "loss": {"type": "decode_max_log_softmax_nll", "value": 0.7, "targets": [1, 0]},
        "expected": {"output": tensor_json(&[5, 2, 2], &[0.0; 20]),
                     "log_p_y": tensor_json(&[2, 2], &[0.0; 4]),
                     "max_over_time_argmax_t": tensor_json(&[2, 2], &[0.0; 4]),
                     "encoder.z": tensor_json(&[5, 2, 1, 2, 2], &[0.0; 40])},
        "gradients": {"fc.weight": tensor_json(&[2, 3], &[0.0; 6])},
    });
    let plan = plan_case(&json).unwrap();
    assert_eq!((plan.atol, plan.rtol), (1e-12, 1e-10));
    let Program::Network { net, opts } = &plan.program else { panic!("not a network") };
    assert_eq!(opts.float, Dtype::F64);
    assert_eq!((net.steps, net.dt, net.input.clone()), (5, 0.001, vec![1, 2, 2]));
    assert_eq!(net.readout, Readout::MaxLogSoftmax);
    assert_eq!(net.encoder, Some(Encoder::ConstantCurrent { p: LifParams::default() }));
    assert_eq!(net.layers.len(), 4);
    assert_eq!(
        net.layers[1],
        Layer::LIFRecurrent {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name: Some("l1".into()),
            input: Some(4),
            hidden: 3,
            p: LifParams { v_th: 0.5.into(), ..LifParams::default() },
            autapses: false,
            input_density: None
        }
    );
    assert_eq!(plan.weights["l1.recurrent_weights"].data, vec![1.0; 9]);
    assert_eq!(plan.weights.len(), 2);
    let labels: Vec<_> = plan.checks.iter().map(|c| (c.label.as_str(), c.source.clone())).collect();
    assert_eq!(labels[0], ("encoder.z", Source::Trace("encoder.z".into())));
    assert_eq!(labels[1], ("log_p_y", Source::Output("readout".into())));
    assert_eq!(labels[2], ("max_over_time_argmax_t", Source::ArgmaxOverTime("output".into())));
    assert_eq!(labels[3], ("output", Source::Output("output".into())));
    assert_eq!(labels[4].0, "loss");
    assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
    assert_eq!(labels[5], ("gradients.fc.weight", Source::Gradient("fc.weight".into())));
    assert_eq!(plan.seeds.keys().collect::<Vec<_>>(), ["readout"]);
}

#[test]
fn different_layer_dts_are_unsupported() {
    let json = serde_json::json!({
        "schema": "snnc-norse-oracle/1", "model": "network", "dtype": "float32",
        "layers": [{"type": "LIF", "name": "a", "dt": 0.001}, {"type": "LI", "name": "b", "dt": 0.002}],
        "inputs": {"x": tensor_json(&[1, 1, 2], &[0.0; 2])},
        "expected": {},
    });
    match plan_case(&json) {
        Err(PlanError::Unsupported(e)) => assert!(e.contains("different dt"), "{e}"),
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[test]
fn poisson_feeds_the_uniforms() {
    let json = serde_json::json!({
        "schema": "snnc-norse-oracle/1", "model": "PoissonEncoder", "dtype": "float32",
        "parameters": {"seq_length": 3, "f_max": 20.0, "dt": 0.001, "seed": 42},
        "inputs": {"x": tensor_json(&[2], &[0.5, 1.0]), "uniform_random": tensor_json(&[3, 2], &[0.1; 6])},
        "expected": {"z": tensor_json(&[3, 2], &[0.0; 6])},
    });
    let plan = plan_case(&json).unwrap();
    let Program::Network { net, opts } = &plan.program else { panic!("not a network") };
    assert!(opts.poisson_uniform_input);
    assert_eq!(net.encoder, Some(Encoder::Poisson { f_max: 20.0, seed: 42 }));
    assert_eq!(net.input, vec![2]);
    assert_eq!(plan.inputs["x"].shape, vec![1, 2]);
    assert_eq!(plan.inputs["uniform"].shape, vec![3, 1, 2]);
    assert_eq!(plan.checks[0].source, Source::Trace("encoder.z".into()));
}

#[test]
fn malformed_files_are_bad_input() {
    let (_, outcome) = run_json(&serde_json::json!({"schema": "other"}), "f.json");
    assert!(matches!(outcome, CaseOutcome::BadInput(_)), "{outcome:?}");
    let (_, outcome) =
        run_json(&serde_json::json!({"schema": "snnc-norse-oracle/1", "model": "Izhikevich", "dtype": "float32"}), "f");
    assert_eq!(outcome, CaseOutcome::Unsupported("model `Izhikevich` is not supported by the runner".into()));
}

#[test]
fn render_aligns_columns_and_sums_up() {
    let report = Report {
        target: Target::Interp,
        cases: vec![
            CaseReport {
                name: "a_case".into(),
                path: "a_case.json".into(),
                dtype: Some("float32".into()),
                outcome: CaseOutcome::Ran(vec![
                    TensorReport {
                        tensor: "z".into(),
                        max_abs_err: Some(0.0),
                        allowed: Some(0.0),
                        status: Status::Pass,
                    },
                    TensorReport {
                        tensor: "gradients.w".into(),
                        max_abs_err: None,
                        allowed: None,
                        status: Status::Skipped("a reason".into()),
                    },
                ]),
            },
            CaseReport {
                name: "b".into(),
                path: "b.json".into(),
                dtype: None,
                outcome: CaseOutcome::Error("lowering failed: x".into()),
            },
        ],
    };
    let text = report.render();
    let expected = "\
case    tensor       max abs err  allowed  result
a_case  z                      0        0  PASS
a_case  gradients.w            -        -  skipped: a reason
b       -                      -        -  FAIL  lowering failed: x
1 passed, 1 failed, 1 skipped
";
    assert_eq!(text, expected);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.failures(), vec!["b: lowering failed: x".to_string()]);
}
