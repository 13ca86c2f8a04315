//! Neuron parameters: Norse's parameter structs (`LIFParameters`, ...),
//! each float field a [`ParamValue`] (one value, or one per neuron), and
//! the `trainable` lists of [`NeuronParam`] names.

use serde::{Deserialize, Serialize};

use super::Method;

/// A float neuron parameter: one value for the whole layer (`v_th: 0.5`) or
/// one value per neuron (`v_th: [0.5, 0.6, 0.7]`), the list as long as the
/// number of neurons of one sample (in row-major order of the layer's
/// per-sample shape, `[C, H, W]` in `C` order).
///
/// In RON it is a number or a list of numbers; [`to_ron`](crate::parse::to_ron)
/// writes it back the same way. `From<f64>` and `From<Vec<f64>>` make it
/// easy to write in Rust: `v_th: 0.5.into()`.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    Scalar(f64),
    PerNeuron(Vec<f64>),
}

impl ParamValue {
    /// Every value: one for a scalar, the list for a per-neuron value.
    pub fn values(&self) -> &[f64] {
        match self {
            ParamValue::Scalar(x) => std::slice::from_ref(x),
            ParamValue::PerNeuron(v) => v,
        }
    }

    /// The value of a scalar parameter.
    pub fn scalar(&self) -> Option<f64> {
        match self {
            ParamValue::Scalar(x) => Some(*x),
            ParamValue::PerNeuron(_) => None,
        }
    }

    pub fn is_per_neuron(&self) -> bool {
        matches!(self, ParamValue::PerNeuron(_))
    }
}

impl From<f64> for ParamValue {
    fn from(x: f64) -> Self {
        ParamValue::Scalar(x)
    }
}

impl From<Vec<f64>> for ParamValue {
    fn from(v: Vec<f64>) -> Self {
        ParamValue::PerNeuron(v)
    }
}

impl From<&[f64]> for ParamValue {
    fn from(v: &[f64]) -> Self {
        ParamValue::PerNeuron(v.to_vec())
    }
}

impl PartialEq<f64> for ParamValue {
    fn eq(&self, other: &f64) -> bool {
        matches!(self, ParamValue::Scalar(x) if x == other)
    }
}

impl Serialize for ParamValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ParamValue::Scalar(x) => s.serialize_f64(*x),
            ParamValue::PerNeuron(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ParamValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or a list of numbers (one per neuron)")
            }
            fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<ParamValue, E> {
                Ok(ParamValue::Scalar(x))
            }
            fn visit_f32<E: serde::de::Error>(self, x: f32) -> Result<ParamValue, E> {
                Ok(ParamValue::Scalar(f64::from(x)))
            }
            fn visit_i64<E: serde::de::Error>(self, x: i64) -> Result<ParamValue, E> {
                Ok(ParamValue::Scalar(x as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, x: u64) -> Result<ParamValue, E> {
                Ok(ParamValue::Scalar(x as f64))
            }
            fn visit_i128<E: serde::de::Error>(self, x: i128) -> Result<ParamValue, E> {
                Ok(ParamValue::Scalar(x as f64))
            }
            fn visit_u128<E: serde::de::Error>(self, x: u128) -> Result<ParamValue, E> {
                Ok(ParamValue::Scalar(x as f64))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ParamValue, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(x) = seq.next_element::<f64>()? {
                    v.push(x);
                }
                Ok(ParamValue::PerNeuron(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The name of a float neuron parameter, as written in a `trainable` list
/// (`trainable: [tau_mem_inv, v_th]`). Each parameter struct accepts the
/// names of its own float fields ([`NeuronParams::FIELDS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[allow(non_camel_case_types)]
pub enum NeuronParam {
    tau_syn_inv,
    tau_mem_inv,
    v_leak,
    v_th,
    v_reset,
    tau_adapt_inv,
    beta,
    adaptation_current,
    adaptation_spike,
    delta_T,
    tau_ada_inv,
    rho_reset,
    tau_syn_exc_inv,
    tau_syn_inh_inv,
    c_m_inv,
    g_l,
    e_rev_I,
    e_rev_E,
    v_rest,
    v_thresh,
}

impl NeuronParam {
    /// The field's name.
    pub fn name(self) -> &'static str {
        match self {
            NeuronParam::tau_syn_inv => "tau_syn_inv",
            NeuronParam::tau_mem_inv => "tau_mem_inv",
            NeuronParam::v_leak => "v_leak",
            NeuronParam::v_th => "v_th",
            NeuronParam::v_reset => "v_reset",
            NeuronParam::tau_adapt_inv => "tau_adapt_inv",
            NeuronParam::beta => "beta",
            NeuronParam::adaptation_current => "adaptation_current",
            NeuronParam::adaptation_spike => "adaptation_spike",
            NeuronParam::delta_T => "delta_T",
            NeuronParam::tau_ada_inv => "tau_ada_inv",
            NeuronParam::rho_reset => "rho_reset",
            NeuronParam::tau_syn_exc_inv => "tau_syn_exc_inv",
            NeuronParam::tau_syn_inh_inv => "tau_syn_inh_inv",
            NeuronParam::c_m_inv => "c_m_inv",
            NeuronParam::g_l => "g_l",
            NeuronParam::e_rev_I => "e_rev_I",
            NeuronParam::e_rev_E => "e_rev_E",
            NeuronParam::v_rest => "v_rest",
            NeuronParam::v_thresh => "v_thresh",
        }
    }
}

impl std::fmt::Display for NeuronParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What every neuron parameter struct offers: its float fields by name and
/// its `trainable` list.
pub trait NeuronParams {
    /// The float fields, in declaration order.
    const FIELDS: &'static [NeuronParam];
    /// The value of a float field (`None` for a name not in [`Self::FIELDS`]).
    fn get(&self, field: NeuronParam) -> Option<&ParamValue>;
    /// The value of a float field, to change it.
    fn get_mut(&mut self, field: NeuronParam) -> Option<&mut ParamValue>;
    /// The fields training updates.
    fn trainable(&self) -> &[NeuronParam];
    /// Whether `field` is in the `trainable` list.
    fn is_trainable(&self, field: NeuronParam) -> bool {
        self.trainable().contains(&field)
    }
}

macro_rules! neuron_params {
    ($ty:ty { $($field:ident),* }) => {
        impl NeuronParams for $ty {
            const FIELDS: &'static [NeuronParam] = &[$(NeuronParam::$field),*];
            fn get(&self, field: NeuronParam) -> Option<&ParamValue> {
                match field {
                    $(NeuronParam::$field => Some(&self.$field),)*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
            fn get_mut(&mut self, field: NeuronParam) -> Option<&mut ParamValue> {
                match field {
                    $(NeuronParam::$field => Some(&mut self.$field),)*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
            fn trainable(&self) -> &[NeuronParam] {
                &self.trainable
            }
        }
    };
}

neuron_params!(LiParams { tau_syn_inv, tau_mem_inv, v_leak });
neuron_params!(LifBoxParams { tau_mem_inv, v_leak, v_th, v_reset });

fn is_empty(v: &[NeuronParam]) -> bool {
    v.is_empty()
}

/// `LIParameters`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiParams {
    pub tau_syn_inv: ParamValue,
    pub tau_mem_inv: ParamValue,
    pub v_leak: ParamValue,
    /// The float fields training updates (`trainable: [tau_mem_inv, v_th]`):
    /// each becomes a trainable parameter `LAYER.FIELD`.
    #[serde(skip_serializing_if = "is_empty")]
    pub trainable: Vec<NeuronParam>,
}

impl Default for LiParams {
    fn default() -> Self {
        LiParams {
            tau_syn_inv: ParamValue::Scalar(200.0),
            tau_mem_inv: ParamValue::Scalar(100.0),
            v_leak: ParamValue::Scalar(0.0),
            trainable: Vec::new(),
        }
    }
}

/// How `LIFBox` resets after a spike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResetMethod {
    /// `v = v_reset` (Norse's `reset_value`, the default).
    #[default]
    Value,
    /// `v = v - v_th` (Norse's `reset_subtract`).
    Subtract,
}

/// `LIFBoxParameters`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifBoxParams {
    pub tau_mem_inv: ParamValue,
    pub v_leak: ParamValue,
    pub v_th: ParamValue,
    pub v_reset: ParamValue,
    pub method: Method,
    pub alpha: f64,
    pub reset_method: ResetMethod,
    /// The float fields training updates (`trainable: [tau_mem_inv, v_th]`):
    /// each becomes a trainable parameter `LAYER.FIELD`.
    #[serde(skip_serializing_if = "is_empty")]
    pub trainable: Vec<NeuronParam>,
}

impl Default for LifBoxParams {
    fn default() -> Self {
        LifBoxParams {
            tau_mem_inv: ParamValue::Scalar(100.0),
            v_leak: ParamValue::Scalar(0.0),
            v_th: ParamValue::Scalar(1.0),
            v_reset: ParamValue::Scalar(0.0),
            method: Method::Super,
            alpha: 100.0,
            reset_method: ResetMethod::Value,
            trainable: Vec::new(),
        }
    }
}

/// Writes a Norse parameter struct of float tensor fields: the struct with
/// its `method`, `alpha` and `trainable` fields, its [`Default`] (Norse's
/// values) and its [`NeuronParams`].
macro_rules! float_params {
    ($(#[$doc:meta])* $ty:ident { $($field:ident: $default:expr),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        #[allow(non_snake_case)]
        pub struct $ty {
            $(pub $field: ParamValue,)*
            pub method: Method,
            pub alpha: f64,
            /// The float fields training updates: each becomes a trainable
            /// parameter `LAYER.FIELD`.
            #[serde(skip_serializing_if = "is_empty")]
            pub trainable: Vec<NeuronParam>,
        }

        impl Default for $ty {
            fn default() -> Self {
                $ty {
                    $($field: ParamValue::Scalar($default),)*
                    method: Method::Super,
                    alpha: 100.0,
                    trainable: Vec::new(),
                }
            }
        }

        neuron_params!($ty { $($field),* });
    };
}

float_params!(
    /// `LIFParameters` (also used by the LIF encoders).
    LifParams { tau_syn_inv: 200.0, tau_mem_inv: 100.0, v_leak: 0.0, v_th: 1.0, v_reset: 0.0 }
);

float_params!(
    /// `LSNNParameters`.
    LsnnParams {
        tau_syn_inv: 200.0,
        tau_mem_inv: 100.0,
        tau_adapt_inv: 1.0 / 800.0,
        v_leak: 0.0,
        v_th: 1.0,
        v_reset: 0.0,
        beta: 1.8,
    }
);

float_params!(
    /// `LIFAdExParameters`.
    LifAdExParams {
        adaptation_current: 4.0,
        adaptation_spike: 0.02,
        delta_T: 0.5,
        tau_ada_inv: 2.0,
        tau_syn_inv: 200.0,
        tau_mem_inv: 100.0,
        v_leak: 0.0,
        v_th: 1.0,
        v_reset: 0.0,
    }
);

float_params!(
    /// `IAFParameters` (Norse's `IAFCell`; `dt` unused).
    IafParams { v_th: 1.0, v_reset: 0.0 }
);

float_params!(
    /// `LIFExParameters`.
    LifExParams {
        delta_T: 0.5,
        tau_syn_inv: 200.0,
        tau_mem_inv: 100.0,
        v_leak: 0.0,
        v_th: 1.0,
        v_reset: 0.0,
    }
);

float_params!(
    /// `LIFRefracParameters`: `LIFParameters` and `rho_reset`, written flat
    /// (`p: (v_th: 0.5, rho_reset: 3)`).
    LifRefracParams {
        tau_syn_inv: 200.0,
        tau_mem_inv: 100.0,
        v_leak: 0.0,
        v_th: 1.0,
        v_reset: 0.0,
        rho_reset: 5.0,
    }
);

float_params!(
    /// `LIFAdExRefracParameters`: `LIFAdExParameters` and `rho_reset`,
    /// written flat.
    LifAdExRefracParams {
        adaptation_current: 4.0,
        adaptation_spike: 0.02,
        delta_T: 0.5,
        tau_ada_inv: 2.0,
        tau_syn_inv: 200.0,
        tau_mem_inv: 100.0,
        v_leak: 0.0,
        v_th: 1.0,
        v_reset: 0.0,
        rho_reset: 5.0,
    }
);

float_params!(
    /// `CobaLIFParameters` (conductance-based LIF).
    CobaLifParams {
        tau_syn_exc_inv: 0.2,
        tau_syn_inh_inv: 0.2,
        c_m_inv: 5.0,
        g_l: 0.25,
        e_rev_I: -100.0,
        e_rev_E: 60.0,
        v_rest: -20.0,
        v_reset: -70.0,
        v_thresh: -10.0,
    }
);

/// `LIBoxParameters` (a leaky integrator without current; no spikes, so no
/// surrogate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiBoxParams {
    pub tau_mem_inv: ParamValue,
    pub v_leak: ParamValue,
    /// The float fields training updates.
    #[serde(skip_serializing_if = "is_empty")]
    pub trainable: Vec<NeuronParam>,
}

impl Default for LiBoxParams {
    fn default() -> Self {
        LiBoxParams { tau_mem_inv: ParamValue::Scalar(100.0), v_leak: ParamValue::Scalar(0.0), trainable: Vec::new() }
    }
}

neuron_params!(LiBoxParams { tau_mem_inv, v_leak });
