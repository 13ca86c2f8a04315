//! Layers and neuron parameters of the oracle files, as snnc layers: the
//! `layers` of a `network` case and the `nodes` of a `graph` case (with
//! their wiring: `inputs`, `recurrent_inputs`, `merge`).

use serde_json::{Map, Value};
use snnc_frontend::{
    BatchNormVariant, Layer, LiParams, LifAdExParams, LifBoxParams, LifParams, LsnnParams, Merge, NeuronParam, Pair,
    ResetMethod,
};

use super::{NOT_PARAMS, PResult, as_bool, as_f64, as_obj, as_pair, as_pv, as_str, as_u32, bad, method, unsupported};

pub(super) fn unknown_param<T>(model: &str, key: &str) -> PResult<T> {
    unsupported(format!("{model} parameter `{key}` is not supported"))
}

pub(super) fn lif_params(obj: &Map<String, Value>, model: &str) -> PResult<LifParams> {
    let mut p = LifParams::default();
    for (k, v) in obj {
        match k.as_str() {
            "tau_syn_inv" => p.tau_syn_inv = as_pv(v, k)?,
            "tau_mem_inv" => p.tau_mem_inv = as_pv(v, k)?,
            "v_leak" => p.v_leak = as_pv(v, k)?,
            "v_th" => p.v_th = as_pv(v, k)?,
            "v_reset" => p.v_reset = as_pv(v, k)?,
            "method" => p.method = method(v, k)?,
            "alpha" => p.alpha = as_f64(v, k)?,
            k if NOT_PARAMS.contains(&k) => {}
            _ => return unknown_param(model, k),
        }
    }
    Ok(p)
}

pub(super) fn li_params(obj: &Map<String, Value>, model: &str) -> PResult<LiParams> {
    let mut p = LiParams::default();
    for (k, v) in obj {
        match k.as_str() {
            "tau_syn_inv" => p.tau_syn_inv = as_pv(v, k)?,
            "tau_mem_inv" => p.tau_mem_inv = as_pv(v, k)?,
            "v_leak" => p.v_leak = as_pv(v, k)?,
            k if NOT_PARAMS.contains(&k) => {}
            _ => return unknown_param(model, k),
        }
    }
    Ok(p)
}

pub(super) fn lsnn_params(obj: &Map<String, Value>, model: &str) -> PResult<LsnnParams> {
    let mut p = LsnnParams::default();
    for (k, v) in obj {
        match k.as_str() {
            "tau_syn_inv" => p.tau_syn_inv = as_pv(v, k)?,
            "tau_mem_inv" => p.tau_mem_inv = as_pv(v, k)?,
            "tau_adapt_inv" => p.tau_adapt_inv = as_pv(v, k)?,
            "v_leak" => p.v_leak = as_pv(v, k)?,
            "v_th" => p.v_th = as_pv(v, k)?,
            "v_reset" => p.v_reset = as_pv(v, k)?,
            "beta" => p.beta = as_pv(v, k)?,
            "method" => p.method = method(v, k)?,
            "alpha" => p.alpha = as_f64(v, k)?,
            k if NOT_PARAMS.contains(&k) => {}
            _ => return unknown_param(model, k),
        }
    }
    Ok(p)
}

pub(super) fn lif_box_params(obj: &Map<String, Value>, model: &str) -> PResult<LifBoxParams> {
    let mut p = LifBoxParams::default();
    for (k, v) in obj {
        match k.as_str() {
            "tau_mem_inv" => p.tau_mem_inv = as_pv(v, k)?,
            "v_leak" => p.v_leak = as_pv(v, k)?,
            "v_th" => p.v_th = as_pv(v, k)?,
            "v_reset" => p.v_reset = as_pv(v, k)?,
            "method" => p.method = method(v, k)?,
            "alpha" => p.alpha = as_f64(v, k)?,
            "reset_method" => {
                p.reset_method = match as_str(v, k)? {
                    "reset_value" | "value" => ResetMethod::Value,
                    "reset_subtract" | "subtract" => ResetMethod::Subtract,
                    other => return unsupported(format!("{model} reset method `{other}` is not supported")),
                }
            }
            k if NOT_PARAMS.contains(&k) => {}
            _ => return unknown_param(model, k),
        }
    }
    Ok(p)
}

pub(super) fn lif_adex_params(obj: &Map<String, Value>, model: &str) -> PResult<LifAdExParams> {
    let mut p = LifAdExParams::default();
    for (k, v) in obj {
        match k.as_str() {
            "adaptation_current" => p.adaptation_current = as_pv(v, k)?,
            "adaptation_spike" => p.adaptation_spike = as_pv(v, k)?,
            "delta_T" => p.delta_T = as_pv(v, k)?,
            "tau_ada_inv" => p.tau_ada_inv = as_pv(v, k)?,
            "tau_syn_inv" => p.tau_syn_inv = as_pv(v, k)?,
            "tau_mem_inv" => p.tau_mem_inv = as_pv(v, k)?,
            "v_leak" => p.v_leak = as_pv(v, k)?,
            "v_th" => p.v_th = as_pv(v, k)?,
            "v_reset" => p.v_reset = as_pv(v, k)?,
            "method" => p.method = method(v, k)?,
            "alpha" => p.alpha = as_f64(v, k)?,
            k if NOT_PARAMS.contains(&k) => {}
            _ => return unknown_param(model, k),
        }
    }
    Ok(p)
}

/// Whether an oracle name holds spikes (compared exactly).
/// A field of a layer object, under any of the given names.
pub(super) fn field<'a>(layer: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| layer.get(*k))
}

pub(super) fn req_field<'a>(layer: &'a Map<String, Value>, keys: &[&str], what: &str) -> PResult<&'a Value> {
    match field(layer, keys) {
        Some(v) => Ok(v),
        None => bad(format!("{what}: missing field `{}`", keys[0])),
    }
}

pub(super) fn opt_u32(layer: &Map<String, Value>, keys: &[&str], what: &str) -> PResult<Option<u32>> {
    field(layer, keys).filter(|v| !v.is_null()).map(|v| as_u32(v, &format!("{what}.{}", keys[0]))).transpose()
}

pub(super) fn layer_params<'a>(layer: &'a Map<String, Value>, what: &str) -> PResult<&'a Map<String, Value>> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match layer.get("parameters").or_else(|| layer.get("p").filter(|p| p.is_object())) {
        Some(v) => as_obj(v, &format!("{what}.parameters")),
        None => Ok(EMPTY.get_or_init(Map::new)),
    }
}

/// One layer of a network case, and its `dt` when it has one.
pub(super) fn layer_from(obj: &Map<String, Value>, index: usize) -> PResult<(Layer, Option<f64>)> {
    let ty = as_str(req_field(obj, &["type"], &format!("layers[{index}]"))?, "type")?;
    let name = match obj.get("name") {
        Some(n) => Some(as_str(n, &format!("layers[{index}].name"))?.to_string()),
        None => None,
    };
    let what = format!("layer `{}`", name.as_deref().unwrap_or(ty));
    let dt = obj.get("dt").map(|v| as_f64(v, &format!("{what}.dt"))).transpose()?;
    let bias = match obj.get("bias") {
        Some(b) => as_bool(b, &format!("{what}.bias"))?,
        None => true,
    };
    let autapses = match obj.get("autapses") {
        Some(b) => as_bool(b, &format!("{what}.autapses"))?,
        None => false,
    };
    let params = layer_params(obj, &what)?;
    let layer = match ty {
        "Linear" => Layer::Linear {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name,
            input: opt_u32(obj, &["in_features", "in"], &what)?,
            out: as_u32(req_field(obj, &["out_features", "out"], &what)?, &format!("{what}.out_features"))?,
            bias,
            input_density: None,
            plasticity: None,
        },
        "Conv2d" => Layer::Conv2d {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name,
            in_channels: opt_u32(obj, &["in_channels"], &what)?,
            out_channels: as_u32(req_field(obj, &["out_channels"], &what)?, &format!("{what}.out_channels"))?,
            kernel_size: as_pair(req_field(obj, &["kernel_size"], &what)?, &format!("{what}.kernel_size"))?,
            stride: opt_pair(obj, &["stride"], &what)?.unwrap_or(Pair::one()),
            padding: opt_pair(obj, &["padding"], &what)?.unwrap_or_default(),
            dilation: opt_pair(obj, &["dilation"], &what)?.unwrap_or(Pair::one()),
            groups: opt_u32(obj, &["groups"], &what)?.unwrap_or(1),
            bias,
            input_density: None,
            plasticity: None,
        },
        "MaxPool2d" | "AvgPool2d" | "SumPool2d" | "LPPool2d" => {
            let kernel_size = as_pair(req_field(obj, &["kernel", "kernel_size"], &what)?, &format!("{what}.kernel"))?;
            let stride = opt_pair(obj, &["stride"], &what)?;
            let padding = opt_pair(obj, &["padding"], &what)?.unwrap_or_default();
            let (inputs, recurrent_inputs, merge) = (None, Vec::new(), Merge::Add);
            match ty {
                "MaxPool2d" => Layer::MaxPool2d { name, kernel_size, stride, padding, inputs, recurrent_inputs, merge },
                "AvgPool2d" => {
                    let count_include_pad = match obj.get("count_include_pad") {
                        Some(b) => as_bool(b, &format!("{what}.count_include_pad"))?,
                        None => true,
                    };
                    Layer::AvgPool2d {
                        name,
                        kernel_size,
                        stride,
                        padding,
                        count_include_pad,
                        inputs,
                        recurrent_inputs,
                        merge,
                    }
                }
                "SumPool2d" => Layer::SumPool2d { name, kernel_size, stride, padding, inputs, recurrent_inputs, merge },
                _ => {
                    let norm_type = match obj.get("norm_type") {
                        Some(v) => as_f64(v, &format!("{what}.norm_type"))?,
                        None => 1.0,
                    };
                    Layer::LPPool2d { name, norm_type, kernel_size, stride, inputs, recurrent_inputs, merge }
                }
            }
        }
        "Flatten" => Layer::Flatten { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name },
        "ReLU" => Layer::ReLU { inputs: None, recurrent_inputs: Vec::new(), merge: Default::default(), name },
        "Scale" => Layer::Scale {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name,
            factor: as_f64(req_field(obj, &["factor"], &what)?, &format!("{what}.factor"))?,
        },
        "LIF" => Layer::LIF {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name,
            p: lif_params(params, &what)?,
        },
        "LI" => Layer::LI {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name,
            p: li_params(params, &what)?,
        },
        "LSNN" => Layer::LSNN {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name,
            p: lsnn_params(params, &what)?,
        },
        "LIFBox" => Layer::LIFBox {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name,
            p: lif_box_params(params, &what)?,
        },
        "LIFAdEx" => Layer::LIFAdEx {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name,
            p: lif_adex_params(params, &what)?,
        },
        "LIFRecurrent" | "LSNNRecurrent" => {
            let input = opt_u32(obj, &["input_size", "in_features", "in"], &what)?;
            let hidden = as_u32(
                req_field(obj, &["hidden_size", "out_features", "hidden"], &what)?,
                &format!("{what}.hidden_size"),
            )?;
            if ty == "LIFRecurrent" {
                Layer::LIFRecurrent {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name,
                    input,
                    hidden,
                    p: lif_params(params, &what)?,
                    autapses,
                    input_density: None,
                }
            } else {
                Layer::LSNNRecurrent {
                    inputs: None,
                    recurrent_inputs: Vec::new(),
                    merge: Default::default(),
                    name,
                    input,
                    hidden,
                    p: lsnn_params(params, &what)?,
                    autapses,
                    input_density: None,
                }
            }
        }
        "LILinear" => Layer::LILinear {
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Default::default(),
            name,
            input: opt_u32(obj, &["in_features", "input_size", "in"], &what)?,
            out: as_u32(
                req_field(obj, &["out_features", "hidden_size", "out"], &what)?,
                &format!("{what}.out_features"),
            )?,
            p: li_params(params, &what)?,
            input_density: None,
        },
        "Dropout" => {
            if obj.get("training").is_some_and(|t| t.as_bool() != Some(true)) {
                return unsupported(format!("{what}: only training-mode dropout (a given mask) is an oracle case"));
            }
            Layer::Dropout {
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Merge::Add,
                name,
                p: as_f64(req_field(obj, &["p"], &what)?, &format!("{what}.p"))?,
            }
        }
        "BatchNorm1d" | "BatchNorm2d" => {
            let num_features = opt_u32(obj, &["num_features"], &what)?;
            let eps = obj.get("eps").map(|v| as_f64(v, &format!("{what}.eps"))).transpose()?.unwrap_or(1e-5);
            let momentum =
                obj.get("momentum").map(|v| as_f64(v, &format!("{what}.momentum"))).transpose()?.unwrap_or(0.1);
            let variant = match obj.get("variant").and_then(Value::as_str) {
                None | Some("per_step") => BatchNormVariant::PerStep,
                Some("time_batched") => BatchNormVariant::TimeBatched,
                Some(other) => return unsupported(format!("{what}: BatchNorm variant `{other}`")),
            };
            let (inputs, recurrent_inputs, merge) = (None, Vec::new(), Merge::Add);
            if ty == "BatchNorm1d" {
                Layer::BatchNorm1d { name, num_features, eps, momentum, variant, inputs, recurrent_inputs, merge }
            } else {
                Layer::BatchNorm2d { name, num_features, eps, momentum, variant, inputs, recurrent_inputs, merge }
            }
        }
        "Identity" => Layer::Identity { inputs: None, recurrent_inputs: Vec::new(), merge: Merge::Add, name },
        other => match super::zoo::zoo_layer(other, params, name)? {
            Some(layer) => layer,
            None => return unsupported(format!("layer type `{other}` is not supported")),
        },
    };
    let mut layer = layer;
    wiring(obj, &what, &mut layer)?;
    learnable(obj, &what, &mut layer)?;
    Ok((layer, dt))
}

/// The graph fields of a node: `inputs` (`"x"` is the network input),
/// `recurrent_inputs` and `merge`. A layer of a `network` case has none.
fn wiring(obj: &Map<String, Value>, what: &str, layer: &mut Layer) -> PResult<()> {
    let names = |key: &str| -> PResult<Option<Vec<String>>> {
        let Some(v) = obj.get(key) else { return Ok(None) };
        let Some(list) = v.as_array() else { return bad(format!("{what}.{key} must be a list of names")) };
        list.iter().map(|n| as_str(n, &format!("{what}.{key}")).map(str::to_string)).collect::<PResult<_>>().map(Some)
    };
    let (inputs, recurrent_inputs, merge) = layer.wiring_mut();
    *inputs = names("inputs")?;
    *recurrent_inputs = names("recurrent_inputs")?.unwrap_or_default();
    if let Some(m) = obj.get("merge") {
        *merge = match as_str(m, &format!("{what}.merge"))? {
            "add" => Merge::Add,
            "concat" => Merge::Concat,
            other => return unsupported(format!("{what}: merge `{other}` is not supported")),
        };
    }
    Ok(())
}

/// A graph node's `learnable` list: the neuron parameters that are torch
/// parameters (trained, with a gradient), snnc's `trainable`.
fn learnable(obj: &Map<String, Value>, what: &str, layer: &mut Layer) -> PResult<()> {
    let Some(list) = obj.get("learnable") else { return Ok(()) };
    let Some(list) = list.as_array() else { return bad(format!("{what}.learnable must be a list of names")) };
    let names = list
        .iter()
        .map(|n| {
            let name = as_str(n, &format!("{what}.learnable"))?;
            serde_json::from_value::<NeuronParam>(Value::String(name.to_string()))
                .or_else(|_| unsupported(format!("{what}: learnable parameter `{name}` is not supported")))
        })
        .collect::<PResult<Vec<_>>>()?;
    match layer {
        Layer::LIF { p, .. } | Layer::LIFRecurrent { p, .. } => p.trainable = names,
        Layer::LI { p, .. } | Layer::LILinear { p, .. } => p.trainable = names,
        Layer::LSNN { p, .. } | Layer::LSNNRecurrent { p, .. } => p.trainable = names,
        Layer::LIFBox { p, .. } => p.trainable = names,
        Layer::LIFAdEx { p, .. } => p.trainable = names,
        _ => return unsupported(format!("{what}: learnable parameters on a layer without neurons")),
    }
    Ok(())
}

/// The optional size `key` of a layer (null is absent).
fn opt_pair(obj: &Map<String, Value>, keys: &[&str], what: &str) -> PResult<Option<Pair>> {
    field(obj, keys).filter(|v| !v.is_null()).map(|v| as_pair(v, &format!("{what}.{}", keys[0]))).transpose()
}
