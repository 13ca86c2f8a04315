//! Norse's neuron zoo written in the neuron language: each built-in layer
//! (`IAF`, `Izhikevich`, `LIFEx`, `LIFRefrac`, `LIFAdExRefrac`, `CobaLIF`,
//! `LIBox`) is a [`NeuronModel`] made from its parameter struct, so it is
//! lowered, fused, differentiated and compiled by the same code as a
//! model a user writes. Every equation follows Norse 1.1.0's order of
//! operations (`docs/norse-semantics.md`); `e + x_rec` is `e` in a
//! feed-forward layer.

use serde::{Deserialize, Serialize};

use super::{InitValue, NeuronModel, OrderedMap};
use crate::schema::{
    CobaLifParams, IafParams, Layer, LiBoxParams, LifAdExRefracParams, LifExParams, LifRefracParams, Method,
    NeuronParams,
};

/// A model of parameter struct `p`: its float fields as tensor parameters,
/// its trainable list, surrogate `method`/`alpha`, and the equations.
fn tensor_model<P: NeuronParams>(
    p: &P,
    method: Method,
    alpha: f64,
    state: &[(&str, InitValue)],
    update: &[&str],
) -> NeuronModel {
    NeuronModel {
        params: P::FIELDS.iter().filter_map(|&f| Some((f.name(), p.get(f)?.clone()))).collect(),
        constants: OrderedMap::default(),
        state: state.iter().map(|(n, v)| (*n, v.clone())).collect(),
        update: update.iter().map(|s| s.to_string()).collect(),
        spike: None,
        method,
        alpha,
        reset: Vec::new(),
        after: Vec::new(),
        detach: Vec::new(),
        output: None,
        trainable: p.trainable().iter().map(|f| f.name().to_string()).collect(),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `IAFCell`: `v = (v + x) + x_rec`, spike at `v - v_th`, reset to
/// `v_reset`; starts at `v_reset`.
pub fn iaf(p: &IafParams) -> NeuronModel {
    let mut m = tensor_model(p, p.method, p.alpha, &[("v", "v_reset".into())], &["v = (v + x) + x_rec"]);
    m.spike = Some("v - v_th".into());
    m.reset = strings(&["v = v_reset"]);
    m
}

/// The LIF update of `lif_feed_forward_step` with the old voltage kept as
/// `v_old` (for the refractory models).
const LIF_UPDATE: [&str; 4] = [
    "i_j = (i + x) + x_rec",
    "v_old = v",
    "v = v + (dt * tau_mem_inv) * ((v_leak - v) + i_j)",
    "i = i_j + ((-dt) * tau_syn_inv) * i_j",
];

/// Norse's `compute_refractory_update`, after the inner model's reset.
const REFRACTORY: [&str; 4] = [
    "m = spike(rho)",
    "v = (1 - m) * v + m * v_old",
    "z = (1 - m) * z",
    "rho = (1 - z) * relu(rho - m) + z * rho_reset",
];

/// `LIFExCell`.
pub fn lif_ex(p: &LifExParams) -> NeuronModel {
    let state = [("v", "v_leak".into()), ("i", 0.0.into())];
    let mut m = tensor_model(
        p,
        p.method,
        p.alpha,
        &state,
        &[
            "i_j = (i + x) + x_rec",
            "dv_exp = delta_T * exp((v - v_th) / delta_T)",
            "v = v + (dt * tau_mem_inv) * (((v_leak - v) + dv_exp) + i_j)",
            "i = i_j + ((-dt) * tau_syn_inv) * i_j",
        ],
    );
    m.spike = Some("v - v_th".into());
    m.reset = strings(&["v = v_reset"]);
    m
}

/// `LIFRefracCell`: the LIF step, then the refractory mask (the surrogate
/// gradient flows into `rho`, as in Norse).
pub fn lif_refrac(p: &LifRefracParams) -> NeuronModel {
    let state = [("v", "v_leak".into()), ("i", 0.0.into()), ("rho", 0.0.into())];
    let mut m = tensor_model(p, p.method, p.alpha, &state, &LIF_UPDATE);
    m.spike = Some("v - v_th".into());
    m.reset = strings(&["v = v_reset"]);
    m.after = strings(&REFRACTORY);
    m
}

/// `LIFAdExRefracCell`: the LIFAdEx step, then the refractory mask; the
/// adaptation jump uses the unmasked spike (Norse's order).
pub fn lif_adex_refrac(p: &LifAdExRefracParams) -> NeuronModel {
    let state = [("v", "v_leak".into()), ("i", 0.0.into()), ("a", 0.0.into()), ("rho", 0.0.into())];
    let mut m = tensor_model(
        p,
        p.method,
        p.alpha,
        &state,
        &[
            "i_j = (i + x) + x_rec",
            "v_old = v",
            "dv_exp = delta_T * exp((v - v_th) / delta_T)",
            "v = v + (dt * tau_mem_inv) * ((((v_leak - v) + dv_exp) + i_j) - a)",
            "i = i_j + ((-dt) * tau_syn_inv) * i_j",
            "a = a + (dt * tau_ada_inv) * (adaptation_current * (v_old - v_leak) - a)",
        ],
    );
    m.spike = Some("v - v_th".into());
    m.reset = strings(&["v = v_reset"]);
    m.after = std::iter::once("a = a + z * adaptation_spike").chain(REFRACTORY).map(str::to_string).collect();
    m
}

/// `coba_lif_feed_forward_step`: the input's positive part drives the
/// excitatory conductance, its negative part the inhibitory one. Starts
/// at `v_rest` with no conductance.
pub fn coba_lif(p: &CobaLifParams) -> NeuronModel {
    let state = [("v", "v_rest".into()), ("g_e", 0.0.into()), ("g_i", 0.0.into())];
    let mut m = tensor_model(
        p,
        p.method,
        p.alpha,
        &state,
        &[
            "g_e1 = g_e + relu(x + x_rec)",
            "g_i1 = g_i + relu(-(x + x_rec))",
            "g_e = g_e1 + ((-dt) * tau_syn_exc_inv) * g_e1",
            "g_i = g_i1 + ((-dt) * tau_syn_inh_inv) * g_i1",
            "v = v + (dt * c_m_inv) * ((g_l * (v_rest - v) + g_e * (e_rev_E - v)) + g_i * (e_rev_I - v))",
        ],
    );
    m.spike = Some("v - v_thresh".into());
    m.reset = strings(&["v = v_reset"]);
    m
}

/// The names of the conductance inputs of a recurrent `CobaLIF` layer:
/// the input through `relu(W_in)` and `relu(-W_in)`, the previous spikes
/// through `relu(W_rec)` and `relu(-W_rec)`.
pub const CONDUCTANCE_INPUTS: [&str; 4] = ["x_exc", "x_inh", "x_rec_exc", "x_rec_inh"];

/// Norse's `CobaLIFCell` (`coba_lif_step`): as shipped, the conductance
/// jump of the input is computed and then overwritten, so only the
/// recurrent spikes drive the cell; `use_input` keeps the input's jump.
/// Norse's default state is all zeros (v = 0, not v_rest).
pub fn coba_lif_recurrent(p: &CobaLifParams, use_input: bool) -> NeuronModel {
    let state = [("v", 0.0.into()), ("g_e", 0.0.into()), ("g_i", 0.0.into())];
    let jumps: [&str; 2] = if use_input {
        ["g_e1 = (g_e + x_exc) + x_rec_exc", "g_i1 = (g_i + x_inh) + x_rec_inh"]
    } else {
        ["g_e1 = g_e + x_rec_exc", "g_i1 = g_i + x_rec_inh"]
    };
    let mut m = tensor_model(
        p,
        p.method,
        p.alpha,
        &state,
        &[
            jumps[0],
            jumps[1],
            "g_e = g_e1 + ((-dt) * tau_syn_exc_inv) * g_e1",
            "g_i = g_i1 + ((-dt) * tau_syn_inh_inv) * g_i1",
            "v = v + (dt * c_m_inv) * ((g_l * (v_rest - v) + g_e * (e_rev_E - v)) + g_i * (e_rev_I - v))",
        ],
    );
    m.spike = Some("v - v_thresh".into());
    m.reset = strings(&["v = v_reset"]);
    m
}

/// `LIBoxCell`: a leaky integrator without current; passes on `v`.
pub fn li_box(p: &LiBoxParams) -> NeuronModel {
    let mut m = tensor_model(
        p,
        Method::Super,
        100.0,
        &[("v", "v_leak".into())],
        &["v = v + (dt * tau_mem_inv) * ((v_leak - v) + (x + x_rec))"],
    );
    m.output = Some("v".into());
    m
}

/// `TsodyksMakramParameters` (Norse's `tsodyks_makram.py`, sic): Python
/// floats in 1/s, as in Norse (`tau_s_inv` is unused there and left out).
#[allow(non_snake_case)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TsodyksMarkramParams {
    /// The utilisation increment of a spike.
    pub U: f64,
    /// The inverse facilitation time constant.
    pub tau_f_inv: f64,
    /// The inverse depression (recovery) time constant.
    pub tau_d_inv: f64,
}

impl Default for TsodyksMarkramParams {
    fn default() -> Self {
        TsodyksMarkramParams { U: 0.45, tau_f_inv: 20.0, tau_d_inv: 1.0 / 0.75 }
    }
}

/// Norse's `stp_step`: short-term plasticity of each presynaptic neuron,
/// scaling its input spike `x` by `u' * x_d` (facilitation `u`, starting at
/// 0, and the available resources `x_d`, Norse's `x`, starting at 1; the
/// input is `x` in the language, so the state is renamed). No spike: the
/// output is the float `out`, not a spike tensor.
pub fn tsodyks_markram(p: &TsodyksMarkramParams) -> NeuronModel {
    let constants = [("U", p.U), ("tau_f_inv", p.tau_f_inv), ("tau_d_inv", p.tau_d_inv)];
    NeuronModel {
        params: OrderedMap::default(),
        constants: constants.into_iter().collect(),
        state: [("u", InitValue::Number(0.0)), ("x_d", InitValue::Number(1.0))].into_iter().collect(),
        update: strings(&[
            "u = (u + dt * ((-tau_f_inv) * u)) + (U * (1 - u)) * x",
            "out = (u * x_d) * x",
            "x_d = (x_d + dt * (tau_d_inv * (1 - x_d))) - out",
        ]),
        spike: None,
        method: Method::Super,
        alpha: 100.0,
        reset: Vec::new(),
        after: Vec::new(),
        detach: Vec::new(),
        output: Some("out".into()),
        trainable: Vec::new(),
    }
}

/// The model of a zoo layer with tensor parameters (every zoo layer but
/// `Izhikevich`, whose model depends on its preset: [`izhikevich`]).
pub fn model_of(layer: &Layer) -> Option<NeuronModel> {
    Some(match layer {
        Layer::IAF { p, .. } => iaf(p),
        Layer::LIFEx { p, .. } => lif_ex(p),
        Layer::LIFRefrac { p, hidden, .. } => {
            let mut m = lif_refrac(p);
            // `LIFRefracRecurrentCell` steps `lif_step`, whose reset reads
            // the spike detached (the feed-forward cell's does not).
            if hidden.is_some() {
                m.detach = vec!["z".into()];
            }
            m
        }
        Layer::LIFAdExRefrac { p, .. } => lif_adex_refrac(p),
        Layer::CobaLIF { p, hidden: None, .. } => coba_lif(p),
        Layer::CobaLIF { p, hidden: Some(_), use_input, .. } => coba_lif_recurrent(p, *use_input),
        Layer::LIBox { p, .. } => li_box(p),
        Layer::TsodyksMarkram { p, .. } => tsodyks_markram(p),
        _ => return None,
    })
}

/// Norse's Izhikevich presets (`norse.torch.tonic_spiking`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IzhikevichPreset {
    TonicSpiking,
    PhasicSpiking,
    TonicBursting,
    PhasicBursting,
    MixedMode,
    SpikeFrequencyAdaptation,
    #[serde(rename = "class_1_exc")]
    Class1Exc,
    #[serde(rename = "class_2_exc")]
    Class2Exc,
    SpikeLatency,
    SubthresholdOscillation,
    Resonator,
    Integrator,
    ReboundSpike,
    ReboundBurst,
    ThresholdVariability,
    Bistability,
    Dap,
    /// Norse's spelling.
    Accomodation,
    InhibitionInducedSpiking,
    InhibitionInducedBursting,
}

/// One preset: `a, b, c, d, mn, bias, tau_inv`, the initial `v` and, where
/// Norse gives `u` directly, the initial `u` (else `u = v_rest * b`).
struct Preset {
    abcd: [f64; 4],
    mn: f64,
    bias: f64,
    tau_inv: f64,
    v_rest: f64,
    u: Option<f64>,
}

const fn preset(abcd: [f64; 4], tau_inv: f64, v_rest: f64) -> Preset {
    Preset { abcd, mn: 5.0, bias: 140.0, tau_inv, v_rest, u: None }
}

impl IzhikevichPreset {
    pub const ALL: [IzhikevichPreset; 20] = [
        IzhikevichPreset::TonicSpiking,
        IzhikevichPreset::PhasicSpiking,
        IzhikevichPreset::TonicBursting,
        IzhikevichPreset::PhasicBursting,
        IzhikevichPreset::MixedMode,
        IzhikevichPreset::SpikeFrequencyAdaptation,
        IzhikevichPreset::Class1Exc,
        IzhikevichPreset::Class2Exc,
        IzhikevichPreset::SpikeLatency,
        IzhikevichPreset::SubthresholdOscillation,
        IzhikevichPreset::Resonator,
        IzhikevichPreset::Integrator,
        IzhikevichPreset::ReboundSpike,
        IzhikevichPreset::ReboundBurst,
        IzhikevichPreset::ThresholdVariability,
        IzhikevichPreset::Bistability,
        IzhikevichPreset::Dap,
        IzhikevichPreset::Accomodation,
        IzhikevichPreset::InhibitionInducedSpiking,
        IzhikevichPreset::InhibitionInducedBursting,
    ];

    /// The name as Norse (and RON) writes it.
    pub fn name(self) -> &'static str {
        use IzhikevichPreset::*;
        match self {
            TonicSpiking => "tonic_spiking",
            PhasicSpiking => "phasic_spiking",
            TonicBursting => "tonic_bursting",
            PhasicBursting => "phasic_bursting",
            MixedMode => "mixed_mode",
            SpikeFrequencyAdaptation => "spike_frequency_adaptation",
            Class1Exc => "class_1_exc",
            Class2Exc => "class_2_exc",
            SpikeLatency => "spike_latency",
            SubthresholdOscillation => "subthreshold_oscillation",
            Resonator => "resonator",
            Integrator => "integrator",
            ReboundSpike => "rebound_spike",
            ReboundBurst => "rebound_burst",
            ThresholdVariability => "threshold_variability",
            Bistability => "bistability",
            Dap => "dap",
            Accomodation => "accomodation",
            InhibitionInducedSpiking => "inhibition_induced_spiking",
            InhibitionInducedBursting => "inhibition_induced_bursting",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// `norse/torch/functional/izhikevich.py`.
    fn values(self) -> Preset {
        use IzhikevichPreset::*;
        match self {
            TonicSpiking => preset([0.02, 0.2, -65.0, 6.0], 250.0, -70.0),
            PhasicSpiking => preset([0.02, 0.25, -65.0, 6.0], 250.0, -64.0),
            TonicBursting => preset([0.02, 0.2, -50.0, 2.0], 250.0, -70.0),
            PhasicBursting => preset([0.02, 0.25, -55.0, 0.05], 200.0, -64.0),
            MixedMode => preset([0.02, 0.2, -55.0, 4.0], 250.0, -70.0),
            SpikeFrequencyAdaptation => preset([0.01, 0.2, -65.0, 8.0], 250.0, -70.0),
            Class1Exc | Integrator => Preset { mn: 4.1, bias: 108.0, ..preset([0.02, -0.1, -55.0, 6.0], 250.0, -60.0) },
            Class2Exc => preset([0.2, 0.26, -65.0, 0.0], 250.0, -64.0),
            SpikeLatency => preset([0.02, 0.2, -65.0, 6.0], 250.0, -70.0),
            SubthresholdOscillation => preset([0.05, 0.26, -60.0, 0.0], 250.0, -62.0),
            Resonator => preset([0.1, 0.26, -60.0, -1.0], 250.0, -62.0),
            ReboundSpike => preset([0.03, 0.25, -60.0, 4.0], 200.0, -64.0),
            ReboundBurst => preset([0.03, 0.25, -52.0, 0.0], 200.0, -64.0),
            ThresholdVariability => preset([0.03, 0.25, -60.0, 4.0], 250.0, -64.0),
            Bistability => preset([0.1, 0.26, -60.0, 0.0], 250.0, -61.0),
            Dap => preset([1.0, 0.2, -60.0, -21.0], 100.0, -70.0),
            Accomodation => Preset { u: Some(-16.0), ..preset([0.02, 1.0, -55.0, 4.0], 500.0, -65.0) },
            InhibitionInducedSpiking => preset([-0.02, -1.0, -60.0, 8.0], 250.0, -63.8),
            InhibitionInducedBursting => preset([-0.026, -1.0, -45.0, -2.0], 250.0, -63.8),
        }
    }
}

/// `IzhikevichParameters` and the initial state, for `Izhikevich(...)`:
/// every field overrides the preset's value; without a preset, `a`, `b`,
/// `c`, `d`, `v_rest` and `u_rest` are needed (Norse's
/// `create_izhikevich_spiking_behavior`). Python floats, as in Norse: they
/// cannot be per neuron or trainable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IzhikevichParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sq: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mn: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v_th: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tau_inv: Option<f64>,
    /// The initial `v` (Norse: `torch.tensor(float(v_rest))`, float32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v_rest: Option<f64>,
    /// The initial `u` is `u_rest * b` (Norse: `torch.tensor(u_rest) * b`,
    /// float32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub u_rest: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
}

/// The fields an Izhikevich layer without a preset must give.
pub const IZHIKEVICH_REQUIRED: [&str; 6] = ["a", "b", "c", "d", "v_rest", "u_rest"];

/// The Izhikevich model of `preset` with `p`'s overrides, or the names of
/// the fields that are missing (no preset). `single`: the module's float
/// type is f32 (a custom neuron's initial state is computed in it, as
/// `create_izhikevich_spiking_behavior` computes it in torch's default
/// dtype; a preset's is float32, computed when Norse is imported).
pub fn izhikevich(
    preset: Option<IzhikevichPreset>,
    p: &IzhikevichParams,
    single: bool,
) -> Result<NeuronModel, Vec<&'static str>> {
    let base = preset.map(IzhikevichPreset::values);
    let get = |given: Option<f64>, from: fn(&Preset) -> f64| given.or(base.as_ref().map(from));
    let a = get(p.a, |q| q.abcd[0]);
    let b = get(p.b, |q| q.abcd[1]);
    let c = get(p.c, |q| q.abcd[2]);
    let d = get(p.d, |q| q.abcd[3]);
    let v_rest = get(p.v_rest, |q| q.v_rest);
    let u_rest = p.u_rest.or(if p.v_rest.is_none() { base.as_ref().map(|q| q.v_rest) } else { None });
    let (Some(a), Some(b), Some(c), Some(d), Some(v_rest), Some(u_rest)) = (a, b, c, d, v_rest, u_rest) else {
        let given = [p.a, p.b, p.c, p.d, p.v_rest, p.u_rest];
        return Err(IZHIKEVICH_REQUIRED.iter().zip(given).filter(|(_, g)| g.is_none()).map(|(n, _)| *n).collect());
    };
    let mn = p.mn.or(base.as_ref().map(|q| q.mn)).unwrap_or(5.0);
    let bias = p.bias.or(base.as_ref().map(|q| q.bias)).unwrap_or(140.0);
    let tau_inv = p.tau_inv.or(base.as_ref().map(|q| q.tau_inv)).unwrap_or(250.0);
    // Norse's initial state: `torch.tensor(v_rest)` and
    // `torch.tensor(u_rest) * b`, float32 for a preset, else in the module's
    // float type; or the preset's own `u` (accomodation).
    let keeps_preset_state = p.v_rest.is_none() && p.u_rest.is_none() && p.b.is_none();
    let single = single || keeps_preset_state;
    let (v0, u0) =
        if single { (f64::from(v_rest as f32), f64::from((u_rest as f32) * (b as f32))) } else { (v_rest, u_rest * b) };
    let u0 = match base.as_ref().and_then(|q| q.u) {
        Some(u) if keeps_preset_state => u,
        _ => u0,
    };
    let constants = [
        ("a", a),
        ("b", b),
        ("c", c),
        ("d", d),
        ("sq", p.sq.unwrap_or(0.04)),
        ("mn", mn),
        ("bias", bias),
        ("v_th", p.v_th.unwrap_or(30.0)),
        ("tau_inv", tau_inv),
    ];
    Ok(NeuronModel {
        params: OrderedMap::default(),
        constants: constants.into_iter().collect(),
        state: [("v", InitValue::Number(v0)), ("u", InitValue::Number(u0))].into_iter().collect(),
        update: strings(&[
            "k = tau_inv * dt",
            "v_new = v + k * (((((sq * (v * v) + mn * v) + bias) - u) + x) + x_rec)",
            "u = u + (k * a) * (b * v - u)",
            "v = v_new",
        ]),
        spike: Some("v - v_th".into()),
        method: p.method.unwrap_or_default(),
        alpha: p.alpha.unwrap_or(100.0),
        reset: strings(&["v = c", "u = u + d"]),
        after: Vec::new(),
        detach: Vec::new(),
        output: None,
        trainable: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neuron::Program;

    #[test]
    fn every_zoo_model_checks() {
        let models = [
            iaf(&IafParams::default()),
            lif_ex(&LifExParams::default()),
            lif_refrac(&LifRefracParams::default()),
            lif_adex_refrac(&LifAdExRefracParams::default()),
            coba_lif(&CobaLifParams::default()),
            li_box(&LiBoxParams::default()),
            tsodyks_markram(&TsodyksMarkramParams::default()),
        ];
        for m in models.iter().chain(IzhikevichPreset::ALL.iter().map(|p| {
            Box::leak(Box::new(izhikevich(Some(*p), &IzhikevichParams::default(), true).unwrap())) as &NeuronModel
        })) {
            if let Err(e) = Program::check(m) {
                panic!("{m:?}: {e:?}");
            }
        }
    }

    #[test]
    fn izhikevich_initial_state_is_norses_float32() {
        let m = izhikevich(Some(IzhikevichPreset::TonicSpiking), &IzhikevichParams::default(), true).unwrap();
        assert_eq!(m.state.get("u"), Some(&InitValue::Number(-14.0)));
        let custom = IzhikevichParams {
            a: Some(0.05),
            b: Some(0.22),
            c: Some(-58.0),
            d: Some(3.0),
            v_rest: Some(-66.0),
            u_rest: Some(-66.0),
            tau_inv: Some(300.0),
            ..Default::default()
        };
        let m = izhikevich(None, &custom, true).unwrap();
        assert_eq!(izhikevich(None, &custom, false).unwrap().state.get("u"), Some(&InitValue::Number(-66.0 * 0.22)));
        // The golden file's value: torch.tensor(-66) * 0.22 in float32.
        assert_eq!(m.state.get("u"), Some(&InitValue::Number(-14.519999504089355)));
        let m = izhikevich(Some(IzhikevichPreset::Accomodation), &IzhikevichParams::default(), true).unwrap();
        assert_eq!(m.state.get("u"), Some(&InitValue::Number(-16.0)));
        assert_eq!(
            izhikevich(None, &IzhikevichParams { a: Some(1.0), ..Default::default() }, true).unwrap_err(),
            vec!["b", "c", "d", "v_rest", "u_rest"]
        );
    }
}
