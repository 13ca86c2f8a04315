//! Neuron models written as equations (the `Neuron` layer), and Norse's
//! neuron zoo written in the same language (`zoo`).
//!
//! A model declares its state variables with their initial values, its
//! parameters (tensors of the module's float type, which may be per neuron
//! and trainable), its constants (Python floats: arithmetic among them,
//! `dt` and numbers is done in f64 at compile time, as Python does, and
//! rounded once where it meets a tensor), and the step as ordered
//! assignments evaluated exactly as written:
//!
//! 1. `update`: assignments before the spike; a state read before its
//!    assignment is its value from the previous step, after it the new one;
//! 2. `spike`: `z = spike(EXPR)`, the threshold `EXPR > 0` with the layer's
//!    surrogate (`method`, `alpha`);
//! 3. `reset`: `s = EXPR` sets `s = (1 - z) * s + z * (EXPR)` (Norse's reset
//!    where it spiked), with `z` detached if `detach` names it;
//! 4. `after`: assignments after the reset (refractory masks, adaptation
//!    jumps; `z` may be set here, e.g. `z = (1 - m) * z`).
//!
//! The value `output` (default `z`) is what the layer passes on. The input
//! of the step is `x` (the summed synaptic input; for a recurrent layer the
//! input through `NAME.input_weights`), `x_rec` is the previous step's
//! spikes through `NAME.recurrent_weights` (0 in a feed-forward layer, where
//! `e + x_rec` is just `e`), and `dt` the time step. The language is
//! documented in `docs/neuron-language.md`; [`Program::check`] turns a
//! model into a checked program and lists every mistake with its place.

pub mod expr;
mod program;
pub mod zoo;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::schema::{Method, ParamValue};

pub use program::{Func, Program, ProgramError, Section};

/// A neuron model written as equations.
///
/// ```ron
/// Neuron(name: "izh", model: (
///     constants: {"a": 0.02, "b": 0.2, "c": -65, "d": 6, "tau_inv": 250},
///     state: {"v": -70, "u": -14},
///     update: [
///         "k = tau_inv * dt",
///         "v_new = v + k * ((((0.04 * (v * v) + 5 * v) + 140) - u) + x)",
///         "u = u + (k * a) * (b * v - u)",
///         "v = v_new",
///     ],
///     spike: "v - 30",
///     reset: ["v = c", "u = u + d"],
/// ))
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeuronModel {
    /// Parameters: tensors of the module's float type, a number or one value
    /// per neuron; may be trainable (`trainable`), and are the layer's
    /// parameters `LAYER.NAME` when per neuron or trainable.
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub params: OrderedMap<ParamValue>,
    /// Constants: Python floats (f64 arithmetic at compile time).
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub constants: OrderedMap<f64>,
    /// State variables and their initial values.
    pub state: OrderedMap<InitValue>,
    /// Assignments before the spike, in order.
    #[serde(default)]
    pub update: Vec<String>,
    /// The spike condition: the neuron spikes where this is > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spike: Option<String>,
    /// The surrogate gradient of `spike` and of `spike(..)` calls.
    #[serde(default)]
    pub method: Method,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Assignments applied where the neuron spiked:
    /// `s = e` means `s = (1 - z) * s + z * (e)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reset: Vec<String>,
    /// Assignments after the reset, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Names detached from the gradient where the reset reads them (Norse's
    /// `z.detach()` in `lif_step`): `["z"]`. Elsewhere, `detach(e)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detach: Vec<String>,
    /// The value the layer passes on (default `z`, or the only state when
    /// there is no spike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The parameters training updates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trainable: Vec<String>,
}

fn default_alpha() -> f64 {
    100.0
}

/// A state variable's initial value: a number, the name of a parameter or
/// constant (its value, detached), or one value per neuron.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitValue {
    Number(f64),
    Name(String),
    PerNeuron(Vec<f64>),
}

impl From<f64> for InitValue {
    fn from(x: f64) -> Self {
        InitValue::Number(x)
    }
}

impl From<&str> for InitValue {
    fn from(x: &str) -> Self {
        InitValue::Name(x.to_string())
    }
}

/// A map that keeps the order it was written in (RON `{"a": 1, "b": 2}`).
#[derive(Clone, Debug, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// Sets `key`, keeping its place if it is there, else at the end.
    pub fn insert(&mut self, key: impl Into<String>, value: V) {
        let key = key.into();
        match self.get_mut(&key) {
            Some(v) => *v = value,
            None => self.0.push((key, value)),
        }
    }
}

impl<K: Into<String>, V> FromIterator<(K, V)> for OrderedMap<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        OrderedMap(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of names to values, `{\"name\": value, ...}`")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                let mut seen = BTreeSet::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    if !seen.insert(k.clone()) {
                        return Err(serde::de::Error::custom(format!("`{k}` is given twice")));
                    }
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(Visitor(std::marker::PhantomData))
    }
}
