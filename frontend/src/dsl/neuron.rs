//! The DSL of the neuron language and of Norse's zoo:
//!
//! ```
//! use snnc_frontend::neuron::NeuronModel;
//! use snnc_frontend::Layer;
//!
//! let iaf = NeuronModel::new()
//!     .param("v_th", 1.0)
//!     .state("v", 0.0)
//!     .update(["v = v + x"])
//!     .spike("v - v_th")
//!     .reset(["v = 0"]);
//! let layer = Layer::neuron(iaf).named("iaf");
//! assert_eq!(layer.kind(), "Neuron");
//! ```

use crate::neuron::zoo::{IzhikevichParams, IzhikevichPreset, TsodyksMarkramParams};
use crate::neuron::{InitValue, NeuronModel, OrderedMap};
use crate::schema::{
    CobaLifParams, IafParams, Layer, LiBoxParams, LifAdExRefracParams, LifExParams, LifRefracParams, Merge, Method,
    ParamValue,
};

fn strings<S: Into<String>>(v: impl IntoIterator<Item = S>) -> Vec<String> {
    v.into_iter().map(Into::into).collect()
}

impl Default for NeuronModel {
    fn default() -> Self {
        NeuronModel {
            params: OrderedMap::default(),
            constants: OrderedMap::default(),
            state: OrderedMap::default(),
            update: Vec::new(),
            spike: None,
            method: Method::Super,
            alpha: 100.0,
            reset: Vec::new(),
            after: Vec::new(),
            detach: Vec::new(),
            output: None,
            trainable: Vec::new(),
        }
    }
}

impl NeuronModel {
    /// An empty model; add its parts with the methods below.
    pub fn new() -> Self {
        Self::default()
    }

    /// A parameter (a tensor: one number, or one per neuron).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<ParamValue>) -> Self {
        self.params.insert(name, value.into());
        self
    }

    /// A constant (a Python float).
    pub fn constant(mut self, name: impl Into<String>, value: f64) -> Self {
        self.constants.insert(name, value);
        self
    }

    /// A state variable and its initial value (a number, a parameter's
    /// name, or one value per neuron).
    pub fn state(mut self, name: impl Into<String>, init: impl Into<InitValue>) -> Self {
        self.state.insert(name, init.into());
        self
    }

    /// The assignments before the spike.
    pub fn update<S: Into<String>>(mut self, lines: impl IntoIterator<Item = S>) -> Self {
        self.update = strings(lines);
        self
    }

    /// The spike condition (spikes where it is > 0).
    pub fn spike(mut self, condition: impl Into<String>) -> Self {
        self.spike = Some(condition.into());
        self
    }

    /// The surrogate gradient of the spike.
    pub fn surrogate(mut self, method: Method, alpha: f64) -> Self {
        self.method = method;
        self.alpha = alpha;
        self
    }

    /// The assignments applied where the neuron spiked.
    pub fn reset<S: Into<String>>(mut self, lines: impl IntoIterator<Item = S>) -> Self {
        self.reset = strings(lines);
        self
    }

    /// The assignments after the reset.
    pub fn after<S: Into<String>>(mut self, lines: impl IntoIterator<Item = S>) -> Self {
        self.after = strings(lines);
        self
    }

    /// The names the reset reads without gradient.
    pub fn detach<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.detach = strings(names);
        self
    }

    /// The value the layer passes on (default `z`).
    pub fn output(mut self, name: impl Into<String>) -> Self {
        self.output = Some(name.into());
        self
    }

    /// The parameters training updates.
    pub fn trainable<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.trainable = strings(names);
        self
    }
}

impl From<Vec<f64>> for InitValue {
    fn from(v: Vec<f64>) -> Self {
        InitValue::PerNeuron(v)
    }
}

macro_rules! zoo_layer {
    ($(#[$doc:meta])* $fn:ident, $kind:ident, $params:ty) => {
        $(#[$doc])*
        pub fn $fn(p: $params) -> Layer {
            Layer::$kind { name: None, p, inputs: None, recurrent_inputs: Vec::new(), merge: Merge::Add }
        }
    };
    ($(#[$doc:meta])* $fn:ident, $kind:ident, $params:ty, recurrent) => {
        $(#[$doc])*
        pub fn $fn(p: $params) -> Layer {
            Layer::$kind {
                name: None,
                p,
                hidden: None,
                autapses: false,
                inputs: None,
                recurrent_inputs: Vec::new(),
                merge: Merge::Add,
            }
        }
    };
}

impl Layer {
    /// A neuron model written as equations (feed-forward).
    pub fn neuron(model: NeuronModel) -> Layer {
        Layer::Neuron {
            name: None,
            model,
            hidden: None,
            autapses: false,
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Merge::Add,
        }
    }

    /// A recurrent layer of `hidden` neurons of `model`: `x` is the input
    /// through `NAME.input_weights`, `x_rec` the previous spikes through
    /// `NAME.recurrent_weights` (no autapses).
    pub fn recurrent_neuron(model: NeuronModel, hidden: u32) -> Layer {
        Layer::Neuron {
            name: None,
            model,
            hidden: Some(hidden),
            autapses: false,
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Merge::Add,
        }
    }

    zoo_layer!(
        /// `IAFCell`: `Layer::iaf(IafParams::default())`.
        iaf, IAF, IafParams, recurrent
    );
    zoo_layer!(
        /// `LIFExCell`.
        lif_ex, LIFEx, LifExParams, recurrent
    );
    zoo_layer!(
        /// `LIFRefracCell`.
        lif_refrac, LIFRefrac, LifRefracParams, recurrent
    );
    zoo_layer!(
        /// `LIFAdExRefracCell`.
        lif_adex_refrac, LIFAdExRefrac, LifAdExRefracParams
    );
    /// Conductance-based LIF (`coba_lif_feed_forward_step`); with
    /// [`Layer::recurrent`], Norse's `CobaLIFCell`.
    pub fn coba_lif(p: CobaLifParams) -> Layer {
        Layer::CobaLIF {
            name: None,
            p,
            hidden: None,
            use_input: false,
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Merge::Add,
        }
    }
    zoo_layer!(
        /// `LIBoxCell`.
        li_box, LIBox, LiBoxParams
    );

    /// Norse's `stp_step` (Tsodyks–Markram short-term plasticity) with
    /// Norse's default parameters, placed on a spike tensor before a
    /// `Linear` or `Conv2d`: each input spike scaled by `u' * x`.
    pub fn tsodyks_markram() -> Layer {
        Layer::tsodyks_markram_with(TsodyksMarkramParams::default())
    }

    /// [`Layer::tsodyks_markram`] with parameters `p`.
    pub fn tsodyks_markram_with(p: TsodyksMarkramParams) -> Layer {
        Layer::TsodyksMarkram { name: None, p, inputs: None, recurrent_inputs: Vec::new(), merge: Merge::Add }
    }

    /// `IzhikevichCell` of a Norse preset.
    pub fn izhikevich(preset: IzhikevichPreset) -> Layer {
        Layer::izhikevich_with(Some(preset), IzhikevichParams::default())
    }

    /// `IzhikevichCell` of a preset (or none) with `p`'s values.
    pub fn izhikevich_with(preset: Option<IzhikevichPreset>, p: IzhikevichParams) -> Layer {
        Layer::Izhikevich {
            name: None,
            preset,
            p,
            hidden: None,
            autapses: false,
            inputs: None,
            recurrent_inputs: Vec::new(),
            merge: Merge::Add,
        }
    }

    /// The same zoo layer made recurrent (Norse's `*RecurrentCell`) with
    /// `hidden` neurons; other layers are returned as they are.
    #[must_use]
    pub fn recurrent(mut self, n: u32) -> Layer {
        if let Layer::IAF { hidden, .. }
        | Layer::Izhikevich { hidden, .. }
        | Layer::LIFEx { hidden, .. }
        | Layer::LIFRefrac { hidden, .. }
        | Layer::CobaLIF { hidden, .. }
        | Layer::Neuron { hidden, .. } = &mut self
        {
            *hidden = Some(n);
        }
        self
    }
}
