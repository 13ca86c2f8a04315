//! Norse's neuron zoo in the oracle files (`IAFCell`, `IzhikevichCell`,
//! `LIFExCell`, `LIFRefracCell`, `LIFAdExRefracCell`,
//! `coba_lif_feed_forward_step`, `LIBoxCell`, and the network layer types
//! `IAF`, `Izhikevich`, `LIFEx`, `LIFRefrac`) as snnc layers.

use serde_json::{Map, Value};
use snnc_frontend::neuron::zoo::{IzhikevichParams, IzhikevichPreset, TsodyksMarkramParams};
use snnc_frontend::{
    CobaLifParams, IafParams, Layer, LiBoxParams, LifAdExRefracParams, LifExParams, LifRefracParams, Merge, Method,
    NeuronParams,
};

use super::layers::unknown_param;
use super::{NOT_PARAMS, PResult, as_f64, as_obj, as_pv, as_str, bad, method};

/// The oracle's `model` names (cases of one cell) this module runs.
pub(super) const CELL_MODELS: [&str; 13] = [
    "stp_step",
    "CobaLIFCell",
    "IzhikevichRecurrentCell",
    "LIFExRecurrentCell",
    "LIFRefracRecurrentCell",
    "iaf_step",
    "IAFCell",
    "IzhikevichCell",
    "LIFExCell",
    "LIFRefracCell",
    "LIFAdExRefracCell",
    "coba_lif_feed_forward_step",
    "LIBoxCell",
];

/// Keys of `parameters` that describe the case, not the neuron.
const INFO: [&str; 3] = ["preset", "create_izhikevich_spiking_behavior", "initial_state_dtypes"];

/// The float fields of `P` from `obj`, and the surrogate's method and
/// alpha when given.
fn fields<P: NeuronParams + Default>(
    obj: &Map<String, Value>,
    model: &str,
) -> PResult<(P, Option<Method>, Option<f64>)> {
    let mut p = P::default();
    let (mut m, mut alpha) = (None, None);
    for (k, v) in obj {
        match k.as_str() {
            "method" => m = Some(method(v, k)?),
            "alpha" => alpha = Some(as_f64(v, k)?),
            k if NOT_PARAMS.contains(&k) || INFO.contains(&k) => {}
            k => match P::FIELDS.iter().find(|f| f.name() == k) {
                Some(&f) => *p.get_mut(f).expect("a field of P") = as_pv(v, k)?,
                None => return unknown_param(model, k),
            },
        }
    }
    Ok((p, m, alpha))
}

macro_rules! with_surrogate {
    ($obj:expr, $model:expr, $ty:ty) => {{
        let (mut p, m, alpha): ($ty, _, _) = fields($obj, $model)?;
        if let Some(m) = m {
            p.method = m;
        }
        if let Some(a) = alpha {
            p.alpha = a;
        }
        p
    }};
}

/// The feed-forward model of a recurrent zoo cell (`None`: not one).
fn feed_forward_of(model: &str) -> Option<&'static str> {
    Some(match model {
        "IzhikevichRecurrentCell" => "IzhikevichCell",
        "LIFExRecurrentCell" => "LIFExCell",
        "LIFRefracRecurrentCell" => "LIFRefracCell",
        "iaf_step" => "IAFCell",
        "CobaLIFCell" => "coba_lif_feed_forward_step",
        _ => return None,
    })
}

/// The layer of a recurrent zoo cell with `hidden` neurons, or `None` when
/// `model` is not one.
pub(super) fn recurrent_zoo_layer(
    model: &str,
    obj: &Map<String, Value>,
    name: Option<String>,
    n: u32,
    with_autapses: bool,
) -> PResult<Option<Layer>> {
    let Some(base) = feed_forward_of(model) else { return Ok(None) };
    let Some(mut layer) = zoo_layer(base, obj, name)? else { return Ok(None) };
    match &mut layer {
        Layer::IAF { hidden, autapses, .. }
        | Layer::Izhikevich { hidden, autapses, .. }
        | Layer::LIFEx { hidden, autapses, .. }
        | Layer::LIFRefrac { hidden, autapses, .. } => {
            *hidden = Some(n);
            // `iaf_step` uses the recurrent weights as given.
            *autapses = with_autapses || model == "iaf_step";
        }
        Layer::CobaLIF { hidden, .. } => *hidden = Some(n),
        _ => {}
    }
    Ok(Some(layer))
}

/// The layer of zoo `model` (a cell model or a network layer type) named
/// `name`, or `None` when `model` is not a zoo neuron.
pub(super) fn zoo_layer(model: &str, obj: &Map<String, Value>, name: Option<String>) -> PResult<Option<Layer>> {
    let wiring = (None, Vec::new(), Merge::Add);
    let (inputs, recurrent_inputs, merge) = wiring;
    let (hidden, autapses) = (None, false);
    Ok(Some(match model {
        "IAFCell" | "IAF" => {
            let p = with_surrogate!(obj, model, IafParams);
            Layer::IAF { name, p, hidden, autapses, inputs, recurrent_inputs, merge }
        }
        "LIFExCell" | "LIFEx" => {
            let p = with_surrogate!(obj, model, LifExParams);
            Layer::LIFEx { name, p, hidden, autapses, inputs, recurrent_inputs, merge }
        }
        "LIFRefracCell" | "LIFRefrac" => {
            let p = with_surrogate!(obj, model, LifRefracParams);
            Layer::LIFRefrac { name, p, hidden, autapses, inputs, recurrent_inputs, merge }
        }
        "LIFAdExRefracCell" => Layer::LIFAdExRefrac {
            name,
            p: with_surrogate!(obj, model, LifAdExRefracParams),
            inputs,
            recurrent_inputs,
            merge,
        },
        "coba_lif_feed_forward_step" => {
            let p = with_surrogate!(obj, model, CobaLifParams);
            Layer::CobaLIF { name, p, hidden, use_input: false, inputs, recurrent_inputs, merge }
        }
        "stp_step" => {
            let mut p = TsodyksMarkramParams::default();
            for (k, v) in obj {
                match k.as_str() {
                    "U" => p.U = as_f64(v, k)?,
                    "tau_f_inv" => p.tau_f_inv = as_f64(v, k)?,
                    "tau_d_inv" => p.tau_d_inv = as_f64(v, k)?,
                    // Unused by Norse's `stp_step`.
                    "tau_s_inv" => {}
                    k if NOT_PARAMS.contains(&k) => {}
                    k => return unknown_param(model, k),
                }
            }
            Layer::TsodyksMarkram { name, p, inputs, recurrent_inputs, merge }
        }
        "LIBoxCell" => {
            let (p, _, _): (LiBoxParams, _, _) = fields(obj, model)?;
            Layer::LIBox { name, p, inputs, recurrent_inputs, merge }
        }
        "IzhikevichCell" | "Izhikevich" => {
            let (preset, p) = izhikevich(obj, model)?;
            Layer::Izhikevich { name, preset, p, hidden, autapses, inputs, recurrent_inputs, merge }
        }
        _ => return Ok(None),
    }))
}

/// An Izhikevich neuron: a preset by name, or the values of
/// `create_izhikevich_spiking_behavior`.
fn izhikevich(obj: &Map<String, Value>, model: &str) -> PResult<(Option<IzhikevichPreset>, IzhikevichParams)> {
    let mut p = IzhikevichParams::default();
    let preset = match obj.get("preset") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let name = as_str(v, "parameters.preset")?;
            let Some(preset) = IzhikevichPreset::from_name(name) else {
                return bad(format!("unknown Izhikevich preset `{name}`"));
            };
            Some(preset)
        }
    };
    for (k, v) in obj {
        let slot = match k.as_str() {
            "a" => &mut p.a,
            "b" => &mut p.b,
            "c" => &mut p.c,
            "d" => &mut p.d,
            "sq" => &mut p.sq,
            "mn" => &mut p.mn,
            "bias" => &mut p.bias,
            "v_th" => &mut p.v_th,
            "tau_inv" => &mut p.tau_inv,
            "alpha" => &mut p.alpha,
            "method" => {
                p.method = Some(method(v, k)?);
                continue;
            }
            k if NOT_PARAMS.contains(&k) || INFO.contains(&k) => continue,
            k => return unknown_param(model, k),
        };
        *slot = Some(as_f64(v, k)?);
    }
    if preset.is_some() {
        // The listed values are the preset's; giving `b` would recompute the
        // preset's initial `u` (accomodation's is its own).
        p.b = None;
    } else {
        let Some(custom) = obj.get("create_izhikevich_spiking_behavior") else {
            return bad("an Izhikevich case without a preset needs `create_izhikevich_spiking_behavior`".to_string());
        };
        let custom = as_obj(custom, "parameters.create_izhikevich_spiking_behavior")?;
        for (field, slot) in [("v_rest", &mut p.v_rest), ("u_rest", &mut p.u_rest)] {
            let Some(v) = custom.get(field) else {
                return bad(format!("`create_izhikevich_spiking_behavior` has no `{field}`"));
            };
            *slot = Some(as_f64(v, field)?);
        }
    }
    Ok((preset, p))
}
