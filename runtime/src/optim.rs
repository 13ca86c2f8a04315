//! Optimizers: `torch.optim.SGD` and `torch.optim.Adam` on host tensors,
//! with PyTorch's defaults and update formulas, and a serialisable state so
//! that a resumed run continues bit-identically.
//!
//! # Numerics
//!
//! Each update follows torch's single-tensor path (`_single_tensor_sgd`,
//! `_single_tensor_adam`, the path torch takes for CPU tensors) operation by
//! operation, in the parameter's precision: every operation on a `float32`
//! parameter rounds to f32, on a `float64` parameter to f64. Python-side
//! scalars (`1 - beta1`, `lr / bias_correction1`, ...) are computed in f64,
//! as Python does, then rounded to the parameter's precision where torch
//! passes them to a kernel. Gradients are rounded to the parameter's
//! precision first.
//!
//! torch's CPU kernels fuse some multiply-adds; on x86-64 (checked against
//! torch 2.15 on an AVX-512 machine, vector body and scalar tail alike) these
//! are single-rounding fused multiply-adds, and so they are here:
//!
//! | torch call | computed as |
//! |---|---|
//! | `a.add(b, alpha=s)` | `fma(b, s, a)` |
//! | `m.lerp_(g, w)`, `\|w\| < 0.5` | `fma(w, g - m, m)` |
//! | `m.lerp_(g, w)`, `\|w\| >= 0.5` | `fma(w - 1, g - m, g)` |
//! | `v.addcmul_(g, g, value=c)` | `fma(c * g, g, v)` |
//! | `p.addcdiv_(m, d, value=c)` | `p + (c * m) / d` |
//! | `x.sqrt() / s`, `x.mul_(s)`, `x.add_(e)` | one rounding each |
//!
//! With these, SGD matches torch bit for bit (checked on 4103-element f32
//! and f64 tensors over five steps, with momentum, dampening, Nesterov and
//! weight decay). Adam does too except where torch's `sqrt` is not correctly
//! rounded: torch's CPU `sqrt` (MKL's vector math) is one ulp off for about
//! one f32 value in six, while this module uses the correctly rounded square
//! root, so a denominator, and the update through it, may differ by an ulp
//! (after five steps, 4 of 4103 f32 parameters differed; with torch's `sqrt`
//! replaced by a correctly rounded one, none did).
//!
//! # SGD (`torch.optim.SGD`, `maximize=False`)
//!
//! ```text
//! g = grad
//! if weight_decay != 0: g = g + weight_decay * p
//! if momentum != 0:
//!     buf = g                                          (first step)
//!     buf = momentum * buf + (1 - dampening) * g       (later steps)
//!     g = g + momentum * buf if nesterov else buf
//! p = p - lr * g
//! ```
//!
//! # Adam (`torch.optim.Adam`, `maximize=False`, coupled weight decay)
//!
//! ```text
//! step += 1                                            (per parameter)
//! if weight_decay != 0: g = g + weight_decay * p
//! m = m.lerp(g, 1 - beta1)                             (m + (1 - beta1) * (g - m))
//! v = beta2 * v + (1 - beta2) * g * g
//! bias_correction1 = 1 - beta1^step;  bias_correction2 = 1 - beta2^step  (f64)
//! step_size = lr / bias_correction1;  bc2_sqrt = bias_correction2^0.5    (f64)
//! if amsgrad: v_max = maximum(v_max, v); v = v_max
//! denom = sqrt(v) / bc2_sqrt + eps
//! p = p + (-step_size * m) / denom
//! ```
//!
//! A parameter without a gradient is left alone and its state does not
//! advance, as torch skips parameters whose `grad` is `None`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::real::Real;
use crate::tensor::{ElemType, Tensor};
use crate::train_error::TrainError;

/// `torch.optim.SGD`'s settings, with its defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sgd {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum factor (default 0: no momentum buffer).
    pub momentum: f64,
    /// Dampening of the momentum (default 0).
    pub dampening: f64,
    /// Nesterov momentum (default false; needs momentum > 0, dampening 0).
    pub nesterov: bool,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd { lr: 1e-3, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 }
    }
}

/// `torch.optim.Adam`'s settings, with its defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adam {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moments (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (default false).
    pub amsgrad: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, amsgrad: false }
    }
}

/// Which optimizer, with its settings. Serialised as
/// `{"type": "sgd", "lr": ..., ...}` or `{"type": "adam", ...}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OptimizerConfig {
    Sgd(Sgd),
    Adam(Adam),
}

impl OptimizerConfig {
    /// `"sgd"` or `"adam"`.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd(_) => "sgd",
            OptimizerConfig::Adam(_) => "adam",
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd(s) => s.lr,
            OptimizerConfig::Adam(a) => a.lr,
        }
    }

    /// Checks the ranges torch.optim checks, and that every number is finite.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |why: String| Err(TrainError::Hyperparameter { optimizer: self.name(), why });
        let nonneg = [("lr", self.lr())];
        match self {
            OptimizerConfig::Sgd(s) => {
                for (name, x) in nonneg.into_iter().chain([
                    ("momentum", s.momentum),
                    ("dampening", s.dampening),
                    ("weight_decay", s.weight_decay),
                ]) {
                    if !(x.is_finite() && x >= 0.0) {
                        return bad(format!("{name} must be a finite number >= 0, got {x}"));
                    }
                }
                if s.nesterov && (s.momentum <= 0.0 || s.dampening != 0.0) {
                    return bad("nesterov momentum requires momentum > 0 and dampening 0".into());
                }
            }
            OptimizerConfig::Adam(a) => {
                for (name, x) in nonneg.into_iter().chain([("eps", a.eps), ("weight_decay", a.weight_decay)]) {
                    if !(x.is_finite() && x >= 0.0) {
                        return bad(format!("{name} must be a finite number >= 0, got {x}"));
                    }
                }
                for (i, beta) in [a.betas.0, a.betas.1].into_iter().enumerate() {
                    if !(0.0..1.0).contains(&beta) {
                        return bad(format!("beta parameter at index {i} must be in [0, 1), got {beta}"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// One parameter's optimizer state, torch's `optimizer.state[p]`. Buffers
/// have the parameter's shape and element type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamState {
    /// Steps this parameter has taken.
    pub step: u64,
    /// SGD with momentum: the momentum buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum_buffer: Option<Tensor>,
    /// Adam: the first moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_avg: Option<Tensor>,
    /// Adam: the second moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_avg_sq: Option<Tensor>,
    /// Adam with amsgrad: the running maximum of the second moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_exp_avg_sq: Option<Tensor>,
}

/// Everything an optimizer holds: its settings and the state of every
/// parameter that has taken a step. Saving and restoring it resumes training
/// bit-identically (see [`Optimizer::from_state`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerState {
    pub config: OptimizerConfig,
    /// By parameter name.
    pub params: BTreeMap<String, ParamState>,
}

/// An optimizer with its state. See the module doc for the formulas.
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer {
    state: OptimizerState,
}

impl Optimizer {
    /// A fresh optimizer (no parameter state yet); errors on settings out of
    /// range.
    pub fn new(config: OptimizerConfig) -> Result<Optimizer, TrainError> {
        config.validate()?;
        Ok(Optimizer { state: OptimizerState { config, params: BTreeMap::new() } })
    }

    pub fn sgd(settings: Sgd) -> Result<Optimizer, TrainError> {
        Optimizer::new(OptimizerConfig::Sgd(settings))
    }

    pub fn adam(settings: Adam) -> Result<Optimizer, TrainError> {
        Optimizer::new(OptimizerConfig::Adam(settings))
    }

    /// Restores an optimizer from a saved state, checking the settings and
    /// that every buffer fits the optimizer (the right buffers present,
    /// consistent data, one shape and element type per parameter). The
    /// parameters themselves are checked on the next [`Optimizer::step`].
    pub fn from_state(state: OptimizerState) -> Result<Optimizer, TrainError> {
        state.config.validate()?;
        let mut state = state;
        for (name, ps) in &mut state.params {
            check_param_state(&state.config, name, ps)?;
        }
        Ok(Optimizer { state })
    }

    pub fn config(&self) -> &OptimizerConfig {
        &self.state.config
    }

    /// Changes the learning rate (for schedules); the state is kept.
    pub fn set_lr(&mut self, lr: f64) -> Result<(), TrainError> {
        let mut config = self.state.config;
        match &mut config {
            OptimizerConfig::Sgd(s) => s.lr = lr,
            OptimizerConfig::Adam(a) => a.lr = lr,
        }
        config.validate()?;
        self.state.config = config;
        Ok(())
    }

    pub fn state(&self) -> &OptimizerState {
        &self.state
    }

    pub fn into_state(self) -> OptimizerState {
        self.state
    }

    /// One optimization step: updates every parameter that has a gradient in
    /// `grads`, in place. Parameters without a gradient are left alone.
    ///
    /// Everything is checked before anything changes: each gradient must name
    /// a parameter and have its shape, parameters and gradients must be
    /// float32 or float64 with data that fits their shapes, and any saved
    /// buffer must have its parameter's shape and element type. On error the
    /// parameters and the state are unchanged.
    pub fn step(
        &mut self,
        params: &mut BTreeMap<String, Tensor>,
        grads: &BTreeMap<String, Tensor>,
    ) -> Result<(), TrainError> {
        for (name, grad) in grads {
            let Some(param) = params.get(name) else {
                return Err(TrainError::UnknownGradient {
                    name: name.clone(),
                    valid: params.keys().cloned().collect(),
                });
            };
            check_float(param, || format!("parameter `{name}`"))?;
            check_float(grad, || format!("gradient `{name}`"))?;
            if grad.shape != param.shape {
                return Err(TrainError::Shape {
                    what: format!("gradient `{name}`"),
                    expected: format!("{:?} (the parameter's shape)", param.shape),
                    found: grad.shape.clone(),
                });
            }
            if let Some(ps) = self.state.params.get(name) {
                for (buffer, t) in ps.buffers() {
                    if t.shape != param.shape || t.dtype != param.dtype {
                        return Err(TrainError::State(format!(
                            "`{name}`: the saved {buffer} is {} {:?} but the parameter is {} {:?}",
                            t.dtype.name(),
                            t.shape,
                            param.dtype.name(),
                            param.shape
                        )));
                    }
                }
            }
        }
        let config = self.state.config;
        for (name, grad) in grads {
            let param = params.get_mut(name).expect("checked above");
            let ps = self.state.params.entry(name.clone()).or_default();
            match (config, param.dtype) {
                (OptimizerConfig::Sgd(s), ElemType::F32) => sgd_step::<f32>(&s, param, grad, ps),
                (OptimizerConfig::Sgd(s), _) => sgd_step::<f64>(&s, param, grad, ps),
                (OptimizerConfig::Adam(a), ElemType::F32) => adam_step::<f32>(&a, param, grad, ps),
                (OptimizerConfig::Adam(a), _) => adam_step::<f64>(&a, param, grad, ps),
            }
        }
        Ok(())
    }
}

impl ParamState {
    /// The buffers present, by name.
    fn buffers(&self) -> impl Iterator<Item = (&'static str, &Tensor)> {
        [
            ("momentum_buffer", &self.momentum_buffer),
            ("exp_avg", &self.exp_avg),
            ("exp_avg_sq", &self.exp_avg_sq),
            ("max_exp_avg_sq", &self.max_exp_avg_sq),
        ]
        .into_iter()
        .filter_map(|(n, t)| t.as_ref().map(|t| (n, t)))
    }
}

fn check_float(t: &Tensor, what: impl Fn() -> String) -> Result<(), TrainError> {
    if t.dtype == ElemType::I64 {
        return Err(TrainError::Dtype { what: what(), dtype: t.dtype.name() });
    }
    t.check().map_err(|source| TrainError::BadTensor { what: what(), source })
}

/// Checks a restored parameter state against its optimizer, and rounds f32
/// buffers to f32.
fn check_param_state(config: &OptimizerConfig, name: &str, ps: &mut ParamState) -> Result<(), TrainError> {
    let err = |why: String| Err(TrainError::State(format!("`{name}`: {why}")));
    let (allowed, required): (&[&str], &[&str]) = match config {
        OptimizerConfig::Sgd(s) if s.momentum != 0.0 => (&["momentum_buffer"], &["momentum_buffer"]),
        OptimizerConfig::Sgd(_) => (&[], &[]),
        OptimizerConfig::Adam(a) if a.amsgrad => {
            (&["exp_avg", "exp_avg_sq", "max_exp_avg_sq"], &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"])
        }
        OptimizerConfig::Adam(_) => (&["exp_avg", "exp_avg_sq"], &["exp_avg", "exp_avg_sq"]),
    };
    let present: Vec<&str> = ps.buffers().map(|(n, _)| n).collect();
    if let Some(extra) = present.iter().find(|n| !allowed.contains(n)) {
        return err(format!("{extra} does not belong to {}", describe(config)));
    }
    if ps.step > 0 {
        if let Some(missing) = required.iter().find(|n| !present.contains(n)) {
            return err(format!("{} needs {missing} after {} step(s)", describe(config), ps.step));
        }
    } else if !present.is_empty() {
        return err("buffers are present but no step was taken".into());
    }
    let mut first: Option<(&str, ElemType, Vec<usize>)> = None;
    for (buffer, t) in ps.buffers() {
        check_float(t, || format!("optimizer state of `{name}`: {buffer}"))?;
        match &first {
            None => first = Some((buffer, t.dtype, t.shape.clone())),
            Some((b0, d0, s0)) if (*d0, s0) != (t.dtype, &t.shape) => {
                return err(format!("{buffer} is {} {:?} but {b0} is {} {s0:?}", t.dtype.name(), t.shape, d0.name()));
            }
            Some(_) => {}
        }
    }
    for t in
        [&mut ps.momentum_buffer, &mut ps.exp_avg, &mut ps.exp_avg_sq, &mut ps.max_exp_avg_sq].into_iter().flatten()
    {
        *t = t.cast(t.dtype);
    }
    Ok(())
}

fn describe(config: &OptimizerConfig) -> String {
    match config {
        OptimizerConfig::Sgd(s) if s.momentum != 0.0 => "SGD with momentum".into(),
        OptimizerConfig::Sgd(_) => "SGD without momentum".into(),
        OptimizerConfig::Adam(a) if a.amsgrad => "Adam with amsgrad".into(),
        OptimizerConfig::Adam(_) => "Adam".into(),
    }
}

/// `_single_tensor_sgd` for one parameter, in precision `T`.
fn sgd_step<T: Real>(s: &Sgd, param: &mut Tensor, grad: &Tensor, ps: &mut ParamState) {
    let (weight_decay, momentum) = (T::of(s.weight_decay), T::of(s.momentum));
    let one_minus_dampening = T::of(1.0 - s.dampening);
    let neg_lr = T::of(-s.lr);
    let first = ps.momentum_buffer.is_none();
    if s.momentum != 0.0 && first {
        ps.momentum_buffer = Some(Tensor::zeros(param.shape.clone(), param.dtype));
    }
    let mut buf = ps.momentum_buffer.as_mut().map(|b| &mut b.data);
    for (i, (p, &g)) in param.data.iter_mut().zip(&grad.data).enumerate() {
        let pv = T::of(*p);
        let mut g = T::of(g);
        if s.weight_decay != 0.0 {
            g = pv.fma(weight_decay, g); // grad.add(param, alpha=weight_decay)
        }
        if let Some(buf) = buf.as_deref_mut() {
            let b = if first {
                g // buf = grad.clone()
            } else {
                g.fma(one_minus_dampening, T::of(buf[i]) * momentum) // buf.mul_(momentum).add_(grad, alpha=1-dampening)
            };
            buf[i] = b.f64();
            g = if s.nesterov { b.fma(momentum, g) } else { b }; // grad.add(buf, alpha=momentum)
        }
        *p = g.fma(neg_lr, pv).f64(); // param.add_(grad, alpha=-lr)
    }
    ps.step += 1;
}

/// `_single_tensor_adam` for one parameter, in precision `T`.
fn adam_step<T: Real>(a: &Adam, param: &mut Tensor, grad: &Tensor, ps: &mut ParamState) {
    let (beta1, beta2) = a.betas;
    let zeros = || Some(Tensor::zeros(param.shape.clone(), param.dtype));
    if ps.exp_avg.is_none() {
        (ps.exp_avg, ps.exp_avg_sq) = (zeros(), zeros());
    }
    if a.amsgrad && ps.max_exp_avg_sq.is_none() {
        ps.max_exp_avg_sq = zeros();
    }
    ps.step += 1;
    // Python floats (f64), as in torch; `beta ** step` is C's `pow`.
    let step = ps.step as f64;
    let bias_correction1 = 1.0 - beta1.powf(step);
    let bias_correction2 = 1.0 - beta2.powf(step);
    let step_size = a.lr / bias_correction1;
    let bias_correction2_sqrt = bias_correction2.powf(0.5);
    // The scalars as the kernels receive them.
    let weight_decay = T::of(a.weight_decay);
    let lerp_weight = T::of(1.0 - beta1);
    let beta2_t = T::of(beta2);
    let one_minus_beta2 = T::of(1.0 - beta2);
    let bc2_sqrt = T::of(bias_correction2_sqrt);
    let eps = T::of(a.eps);
    let neg_step_size = T::of(-step_size);

    let m = &mut ps.exp_avg.as_mut().expect("created above").data;
    let v = &mut ps.exp_avg_sq.as_mut().expect("created above").data;
    let mut v_max = ps.max_exp_avg_sq.as_mut().map(|t| &mut t.data);
    for (i, (p, &g)) in param.data.iter_mut().zip(&grad.data).enumerate() {
        let pv = T::of(*p);
        let mut g = T::of(g);
        if a.weight_decay != 0.0 {
            g = pv.fma(weight_decay, g); // grad.add(param, alpha=weight_decay)
        }
        let mi = lerp(T::of(m[i]), g, lerp_weight); // exp_avg.lerp_(grad, 1 - beta1)
        let vi = (one_minus_beta2 * g).fma(g, T::of(v[i]) * beta2_t); // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1-beta2)
        m[i] = mi.f64();
        v[i] = vi.f64();
        let v_used = match v_max.as_deref_mut() {
            Some(v_max) => {
                let mx = maximum(T::of(v_max[i]), vi); // torch.maximum(max_exp_avg_sq, exp_avg_sq)
                v_max[i] = mx.f64();
                mx
            }
            None => vi,
        };
        let denom = v_used.sqrt() / bc2_sqrt + eps; // (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        *p = (pv + (neg_step_size * mi) / denom).f64(); // param.addcdiv_(exp_avg, denom, value=-step_size)
    }
}

/// torch's CPU `lerp` kernel: `start + weight * (end - start)`, fused, and
/// from the `end` side for large weights.
fn lerp<T: Real>(start: T, end: T, weight: T) -> T {
    let small = if weight < T::ZERO { -weight < T::of(0.5) } else { weight < T::of(0.5) };
    if small { weight.fma(end - start, start) } else { (weight - T::of(1.0)).fma(end - start, end) }
}

/// `torch.maximum`: NaN if either is NaN.
fn maximum<T: Real>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        T::of(f64::NAN)
    } else if a > b {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Map = BTreeMap<String, Tensor>;

    fn one(name: &str, dtype: ElemType, data: &[f64]) -> Map {
        Map::from([(name.to_string(), Tensor::new(vec![data.len()], dtype, data.to_vec()).unwrap())])
    }

    const P0: [f64; 5] = [0.5, -1.25, 2.0, 0.1, -0.3];
    const GRADS: [[f64; 5]; 3] =
        [[0.1, -0.2, 0.3, -0.4, 0.5], [0.7, 0.01, -0.5, 0.25, -0.125], [-0.3, 0.6, 0.05, 1.5, -2.0]];

    /// Three steps from `P0` with `GRADS`: the parameter after each, and the
    /// final state.
    fn run(config: OptimizerConfig, dtype: ElemType) -> (Vec<Vec<f64>>, ParamState) {
        let mut opt = Optimizer::new(config).unwrap();
        let mut params = one("w", dtype, &P0);
        let mut after = Vec::new();
        for g in GRADS {
            opt.step(&mut params, &one("w", dtype, &g)).unwrap();
            after.push(params["w"].data.clone());
        }
        (after, opt.state().params["w"].clone())
    }

    #[test]
    fn defaults_are_torchs() {
        assert_eq!(Sgd::default(), Sgd { lr: 1e-3, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 });
        assert_eq!(
            Adam::default(),
            Adam { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, amsgrad: false }
        );
        let s: Sgd = serde_json::from_str(r#"{"lr": 0.5}"#).unwrap();
        assert_eq!(s, Sgd { lr: 0.5, ..Sgd::default() });
        let c: OptimizerConfig = serde_json::from_str(r#"{"type": "adam", "betas": [0.8, 0.9]}"#).unwrap();
        assert_eq!(c, OptimizerConfig::Adam(Adam { betas: (0.8, 0.9), ..Adam::default() }));
    }

    #[test]
    fn sgd_by_hand() {
        // p -= lr * g.
        let mut opt = Optimizer::sgd(Sgd { lr: 0.5, ..Sgd::default() }).unwrap();
        let mut p = one("w", ElemType::F64, &[1.0, -2.0]);
        opt.step(&mut p, &one("w", ElemType::F64, &[0.5, 4.0])).unwrap();
        assert_eq!(p["w"].data, [0.75, -4.0]);
        // Momentum 0.5: buf = g, then buf = 0.5 buf + (1 - 0.5) g with dampening 0.5.
        let s = Sgd { lr: 0.5, momentum: 0.5, dampening: 0.5, ..Sgd::default() };
        let mut opt = Optimizer::sgd(s).unwrap();
        let mut p = one("w", ElemType::F32, &[0.0, 0.0]);
        opt.step(&mut p, &one("w", ElemType::F32, &[1.0, 2.0])).unwrap();
        assert_eq!(p["w"].data, [-0.5, -1.0]); // buf = [1, 2]
        opt.step(&mut p, &one("w", ElemType::F32, &[1.0, 1.0])).unwrap();
        // buf = [0.5 + 0.5, 1 + 0.5] = [1, 1.5]; p -= 0.5 buf.
        assert_eq!(opt.state().params["w"].momentum_buffer.as_ref().unwrap().data, [1.0, 1.5]);
        assert_eq!(p["w"].data, [-1.0, -1.75]);
        // Nesterov: g + momentum * buf; weight decay: g + wd * p.
        let s = Sgd { lr: 1.0, momentum: 0.5, nesterov: true, weight_decay: 0.25, ..Sgd::default() };
        let mut opt = Optimizer::sgd(s).unwrap();
        let mut p = one("w", ElemType::F64, &[4.0]);
        opt.step(&mut p, &one("w", ElemType::F64, &[1.0])).unwrap();
        // g = 1 + 0.25*4 = 2; buf = 2; g = 2 + 0.5*2 = 3; p = 4 - 3 = 1.
        assert_eq!(p["w"].data, [1.0]);
        assert_eq!(opt.state().params["w"].step, 1);
    }

    #[test]
    fn sgd_rounds_every_operation_to_f32() {
        // p + (-lr) g with one rounding in f32: 0.1 - 0.1*0.3 (all f32).
        let mut opt = Optimizer::sgd(Sgd { lr: 0.1, ..Sgd::default() }).unwrap();
        let mut p = one("w", ElemType::F32, &[0.1]);
        opt.step(&mut p, &one("w", ElemType::F32, &[0.3])).unwrap();
        assert_eq!(p["w"].data, [f64::from(0.3f32.mul_add(-0.1f32, 0.1f32))]);
        assert_ne!(f64::from(0.3f32.mul_add(-0.1f32, 0.1f32)), 0.1 - 0.1 * f64::from(0.3f32));
    }

    #[test]
    fn adam_first_step_by_hand() {
        // Step 1: m = (1 - b1) g, v = (1 - b2) g², bias corrections undo the
        // factors, so p moves by lr * g / (|g| + eps') = lr * sign(g), up to eps.
        let mut opt = Optimizer::adam(Adam { lr: 0.01, ..Adam::default() }).unwrap();
        let mut p = one("w", ElemType::F64, &[1.0, 1.0]);
        opt.step(&mut p, &one("w", ElemType::F64, &[0.5, -2.0])).unwrap();
        assert!((p["w"].data[0] - 0.99).abs() < 1e-9 && (p["w"].data[1] - 1.01).abs() < 1e-9, "{:?}", p["w"].data);
        let ps = &opt.state().params["w"];
        assert_eq!(ps.step, 1);
        // m = lerp(0, g, 0.1) = fma(0.1, g, 0); v = fma(0.001 g, g, 0).
        assert_eq!(ps.exp_avg.as_ref().unwrap().data, [(1.0 - 0.9) * 0.5, (1.0 - 0.9) * -2.0]);
        assert_eq!(ps.exp_avg_sq.as_ref().unwrap().data, [(1.0 - 0.999) * 0.5 * 0.5, (1.0 - 0.999) * -2.0 * -2.0]);
        assert!(ps.momentum_buffer.is_none() && ps.max_exp_avg_sq.is_none());
        // With a zero gradient nothing moves.
        let mut p = one("w", ElemType::F32, &[0.25]);
        let mut opt = Optimizer::adam(Adam::default()).unwrap();
        opt.step(&mut p, &one("w", ElemType::F32, &[0.0])).unwrap();
        assert_eq!(p["w"].data, [0.25]);
    }

    /// Expected parameters after each of the three steps of [`run`], from
    /// torch 2.15 on CPU (`torch.optim.SGD/Adam`, default foreach=None, which
    /// is the single-tensor path for CPU tensors).
    fn torch_fixtures() -> Vec<(&'static str, OptimizerConfig, ElemType, [[f64; 5]; 3])> {
        let sgd_momentum =
            OptimizerConfig::Sgd(Sgd { lr: 0.05, momentum: 0.9, dampening: 0.1, weight_decay: 0.01, ..Sgd::default() });
        let sgd_nesterov = OptimizerConfig::Sgd(Sgd {
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.001,
            ..Sgd::default()
        });
        let adam_amsgrad =
            OptimizerConfig::Adam(Adam { lr: 0.01, betas: (0.8, 0.99), eps: 1e-6, weight_decay: 0.1, amsgrad: true });
        let adam_big_beta1 = OptimizerConfig::Adam(Adam { lr: 0.01, betas: (0.3, 0.9), ..Adam::default() });
        vec![
            (
                "sgd",
                OptimizerConfig::Sgd(Sgd { lr: 0.1, ..Sgd::default() }),
                ElemType::F32,
                [
                    [
                        0.49000000953674316,
                        -1.2300000190734863,
                        1.9700000286102295,
                        0.14000000059604645,
                        -0.3500000238418579,
                    ],
                    [
                        0.42000001668930054,
                        -1.2310000658035278,
                        2.0199999809265137,
                        0.11500000208616257,
                        -0.33750003576278687,
                    ],
                    [
                        0.45000001788139343,
                        -1.2910001277923584,
                        2.0149998664855957,
                        -0.03500000014901161,
                        -0.13750003278255463,
                    ],
                ],
            ),
            (
                "sgd",
                OptimizerConfig::Sgd(Sgd { lr: 0.1, ..Sgd::default() }),
                ElemType::F64,
                [
                    [0.49, -1.23, 1.97, 0.14, -0.35],
                    [0.42, -1.2309999999999999, 2.02, 0.11500000000000002, -0.33749999999999997],
                    [0.45, -1.291, 2.015, -0.03499999999999999, -0.13749999999999996],
                ],
            ),
            (
                "sgd momentum",
                sgd_momentum,
                ElemType::F32,
                [
                    [
                        0.4947499930858612,
                        -1.2393749952316284,
                        1.9839999675750732,
                        0.11995000392198563,
                        -0.32485002279281616,
                    ],
                    [
                        0.4583023488521576,
                        -1.229704737663269,
                        1.9912071228027344,
                        0.12660102546215057,
                        -0.34144383668899536,
                    ],
                    [
                        0.43879324197769165,
                        -1.247448205947876,
                        1.9945476055145264,
                        0.06502997130155563,
                        -0.26622462272644043,
                    ],
                ],
            ),
            (
                "sgd momentum",
                sgd_momentum,
                ElemType::F64,
                [
                    [0.49475, -1.239375, 1.984, 0.11995, -0.32484999999999997],
                    [0.4583023625, -1.22970478125, 1.9912072, 0.1266010225, -0.34144381749999997],
                    [
                        0.438793252686875,
                        -1.2474482172234374,
                        1.9945476367600001,
                        0.06502997228987499,
                        -0.26622460353212496,
                    ],
                ],
            ),
            (
                "sgd nesterov",
                sgd_nesterov,
                ElemType::F32,
                [
                    [
                        0.49045249819755554,
                        -1.2308812141418457,
                        1.971310019493103,
                        0.13799050450325012,
                        -0.3474715054035187,
                    ],
                    [
                        0.4198356568813324,
                        -1.2235636711120605,
                        2.006391763687134,
                        0.13042335212230682,
                        -0.3558013439178467,
                    ],
                    [
                        0.416262686252594,
                        -1.2734670639038086,
                        2.010613441467285,
                        -0.007643275428563356,
                        -0.17890504002571106,
                    ],
                ],
            ),
            (
                "sgd nesterov",
                sgd_nesterov,
                ElemType::F64,
                [
                    [0.4904525, -1.23088125, 1.97131, 0.13799050000000002, -0.3474715],
                    [0.41983565701250003, -1.22356369128125, 2.00639172555, 0.13042334090250002, -0.3558013402075],
                    [
                        0.41626268429883384,
                        -1.2734670395399532,
                        2.0106133802810726,
                        -0.007643282930135716,
                        -0.17890503148443027,
                    ],
                ],
            ),
            (
                "adam",
                OptimizerConfig::Adam(Adam::default()),
                ElemType::F32,
                [
                    [
                        0.49900001287460327,
                        -1.2489999532699585,
                        1.9989999532699585,
                        0.10100000351667404,
                        -0.3009999990463257,
                    ],
                    [
                        0.4981686472892761,
                        -1.2483679056167603,
                        1.999293565750122,
                        0.10117360204458237,
                        -0.30146947503089905,
                    ],
                    [
                        0.4978266954421997,
                        -1.248819351196289,
                        1.999464988708496,
                        0.10060438513755798,
                        -0.3009413182735443,
                    ],
                ],
            ),
            (
                "adam",
                OptimizerConfig::Adam(Adam::default()),
                ElemType::F64,
                [
                    [0.4990000001, -1.24900000005, 1.9990000000333332, 0.100999999975, -0.30099999998],
                    [
                        0.4981686207761504,
                        -1.2483679576488211,
                        1.9992935612309812,
                        0.10117359475731458,
                        -0.3014694681383229,
                    ],
                    [
                        0.49782665886125244,
                        -1.24881944006868,
                        1.9994650423234541,
                        0.10060437795004484,
                        -0.300941302962826,
                    ],
                ],
            ),
            (
                "adam amsgrad",
                adam_amsgrad,
                ElemType::F32,
                [
                    [
                        0.49000006914138794,
                        -1.2400000095367432,
                        1.9900000095367432,
                        0.10999997705221176,
                        -0.3100000023841858,
                    ],
                    [
                        0.4810827076435089,
                        -1.2314516305923462,
                        1.9886656999588013,
                        0.11085464805364609,
                        -0.3134974241256714,
                    ],
                    [
                        0.47717154026031494,
                        -1.2335916757583618,
                        1.9849865436553955,
                        0.10428660362958908,
                        -0.3072265088558197,
                    ],
                ],
            ),
            (
                "adam amsgrad",
                adam_amsgrad,
                ElemType::F64,
                [
                    [
                        0.4900000666662222,
                        -1.2400000307691361,
                        1.99000001999996,
                        0.10999997435904012,
                        -0.30999997872344953,
                    ],
                    [
                        0.48108271377569,
                        -1.2314516218560554,
                        1.9886656847599034,
                        0.11085464449849021,
                        -0.31349740213648386,
                    ],
                    [
                        0.47717153241623433,
                        -1.2335917086622639,
                        1.9849865112061136,
                        0.10428659750199894,
                        -0.30722649149791015,
                    ],
                ],
            ),
            (
                "adam beta1 0.3",
                adam_big_beta1,
                ElemType::F32,
                [
                    [
                        0.49000000953674316,
                        -1.2400000095367432,
                        1.9900000095367432,
                        0.10999999940395355,
                        -0.3100000023841858,
                    ],
                    [
                        0.479042649269104,
                        -1.237209677696228,
                        1.997556209564209,
                        0.10696668922901154,
                        -0.3105403780937195,
                    ],
                    [
                        0.48034918308258057,
                        -1.2482686042785645,
                        1.999133586883545,
                        0.09528829157352448,
                        -0.2990485429763794,
                    ],
                ],
            ),
            (
                "adam beta1 0.3",
                adam_big_beta1,
                ElemType::F64,
                [
                    [0.4900000009999999, -1.2400000005, 1.9900000003333334, 0.10999999975000001, -0.3099999998],
                    [
                        0.47904263856436424,
                        -1.2372097074327753,
                        1.9975561977782246,
                        0.10696669001230182,
                        -0.3105403845335184,
                    ],
                    [
                        0.48034917097752955,
                        -1.2482685939577625,
                        1.999133601016618,
                        0.09528829421544495,
                        -0.2990485622613934,
                    ],
                ],
            ),
        ]
    }

    #[test]
    fn steps_match_torch() {
        for (name, config, dtype, want) in torch_fixtures() {
            let (got, _) = run(config, dtype);
            for (step, (g, w)) in got.iter().zip(want).enumerate() {
                assert_eq!(g[..], w[..], "{name} {dtype:?} step {}", step + 1);
            }
        }
    }

    #[test]
    fn final_buffers_match_torch() {
        let sgd =
            OptimizerConfig::Sgd(Sgd { lr: 0.05, momentum: 0.9, dampening: 0.1, weight_decay: 0.01, ..Sgd::default() });
        let (_, ps) = run(sgd, ElemType::F32);
        let buf =
            [0.39018213748931885, 0.35486873984336853, -0.06680870801210403, 1.2314209938049316, -1.504384160041809];
        assert_eq!(ps.momentum_buffer.unwrap().data, buf);
        let (_, ps) = run(OptimizerConfig::Adam(Adam::default()), ElemType::F32);
        assert_eq!(ps.step, 3);
        let m = [
            0.04110000282526016,
            0.044700004160404205,
            -0.015699995681643486,
            0.14010000228881836,
            -0.17075000703334808,
        ];
        let v = [
            0.0005894899950362742,
            0.00040001998422667384,
            0.0003420701250433922,
            0.0024721177760511637,
            0.00426511000841856,
        ];
        assert_eq!(ps.exp_avg.unwrap().data, m);
        assert_eq!(ps.exp_avg_sq.unwrap().data, v);
        let (_, ps) = run(OptimizerConfig::Adam(Adam::default()), ElemType::F64);
        let v = [
            0.0005894900100000004,
            0.00040001994000000036,
            0.0003420700900000003,
            0.0024721176600000024,
            0.004265109625000004,
        ];
        assert_eq!(ps.exp_avg_sq.unwrap().data, v);
    }

    #[test]
    fn a_restored_state_continues_bit_identically() {
        let configs = [
            OptimizerConfig::Sgd(Sgd { lr: 0.05, momentum: 0.9, nesterov: true, ..Sgd::default() }),
            OptimizerConfig::Adam(Adam { amsgrad: true, weight_decay: 0.01, ..Adam::default() }),
        ];
        for config in configs {
            for dtype in [ElemType::F32, ElemType::F64] {
                let (straight, _) = run(config, dtype);
                let mut opt = Optimizer::new(config).unwrap();
                let mut params = one("w", dtype, &P0);
                opt.step(&mut params, &one("w", dtype, &GRADS[0])).unwrap();
                let json = serde_json::to_string(opt.state()).unwrap();
                let state: OptimizerState = serde_json::from_str(&json).unwrap();
                assert_eq!(&state, opt.state());
                let mut resumed = Optimizer::from_state(state).unwrap();
                for g in &GRADS[1..] {
                    resumed.step(&mut params, &one("w", dtype, g)).unwrap();
                }
                assert_eq!(params["w"].data, straight[2], "{config:?} {dtype:?}");
            }
        }
    }

    #[test]
    fn parameters_without_gradients_are_left_alone() {
        let mut opt = Optimizer::adam(Adam::default()).unwrap();
        let mut params = one("a", ElemType::F32, &[1.0]);
        params.extend(one("b", ElemType::F32, &[2.0]));
        opt.step(&mut params, &one("a", ElemType::F32, &[1.0])).unwrap();
        assert_eq!(params["b"].data, [2.0]);
        assert_ne!(params["a"].data, [1.0]);
        assert_eq!(opt.state().params.keys().collect::<Vec<_>>(), ["a"]);
        opt.step(&mut params, &one("b", ElemType::F32, &[1.0])).unwrap();
        assert_eq!((opt.state().params["a"].step, opt.state().params["b"].step), (1, 1));
    }

    #[test]
    fn bad_steps_are_errors_and_change_nothing() {
        let mut opt = Optimizer::sgd(Sgd { momentum: 0.9, ..Sgd::default() }).unwrap();
        let mut params = one("fc.weight", ElemType::F32, &[1.0, 2.0]);
        let before = (params.clone(), opt.clone());
        let mut grads = one("fc.weight", ElemType::F32, &[1.0, 2.0, 3.0]);
        let e = opt.step(&mut params, &grads).unwrap_err().to_string();
        assert_eq!(e, "gradient `fc.weight`: expected shape [2] (the parameter's shape), found [3]");
        grads = one("fc.weigth", ElemType::F32, &[1.0, 2.0]);
        let e = opt.step(&mut params, &grads).unwrap_err().to_string();
        assert_eq!(e, "gradient `fc.weigth` has no parameter of that name; the parameters are `fc.weight`");
        grads = Map::from([("fc.weight".into(), Tensor { shape: vec![2], dtype: ElemType::I64, data: vec![0.0; 2] })]);
        let e = opt.step(&mut params, &grads).unwrap_err().to_string();
        assert_eq!(e, "gradient `fc.weight`: int64 tensors are not supported here; expected float32 or float64");
        grads = Map::from([("fc.weight".into(), Tensor { shape: vec![2], dtype: ElemType::F32, data: vec![0.0] })]);
        let e = opt.step(&mut params, &grads).unwrap_err().to_string();
        assert_eq!(e, "gradient `fc.weight`: tensor data has 1 elements but shape [2] needs 2");
        assert_eq!((params.clone(), opt.clone()), before);

        // A saved buffer that no longer fits its parameter.
        opt.step(&mut params, &one("fc.weight", ElemType::F32, &[1.0, 1.0])).unwrap();
        let mut params = one("fc.weight", ElemType::F32, &[1.0, 2.0, 3.0]);
        let e = opt.step(&mut params, &one("fc.weight", ElemType::F32, &[1.0; 3])).unwrap_err().to_string();
        assert_eq!(
            e,
            "optimizer state: `fc.weight`: the saved momentum_buffer is float32 [2] but the parameter is float32 [3]"
        );
    }

    #[test]
    fn settings_out_of_range_are_errors() {
        let e = Optimizer::sgd(Sgd { lr: -1.0, ..Sgd::default() }).unwrap_err().to_string();
        assert_eq!(e, "invalid sgd setting: lr must be a finite number >= 0, got -1");
        let e = Optimizer::sgd(Sgd { nesterov: true, ..Sgd::default() }).unwrap_err().to_string();
        assert_eq!(e, "invalid sgd setting: nesterov momentum requires momentum > 0 and dampening 0");
        let e = Optimizer::adam(Adam { betas: (0.9, 1.0), ..Adam::default() }).unwrap_err().to_string();
        assert_eq!(e, "invalid adam setting: beta parameter at index 1 must be in [0, 1), got 1");
        let e = Optimizer::adam(Adam { eps: f64::NAN, ..Adam::default() }).unwrap_err().to_string();
        assert_eq!(e, "invalid adam setting: eps must be a finite number >= 0, got NaN");
        let mut opt = Optimizer::adam(Adam::default()).unwrap();
        assert!(opt.set_lr(f64::INFINITY).is_err());
        opt.set_lr(0.5).unwrap();
        assert_eq!(opt.config().lr(), 0.5);
    }

    #[test]
    fn restoring_a_state_checks_it() {
        let (_, adam_state) = run(OptimizerConfig::Adam(Adam::default()), ElemType::F32);
        let sgd = OptimizerConfig::Sgd(Sgd::default());
        let state = OptimizerState { config: sgd, params: BTreeMap::from([("w".into(), adam_state.clone())]) };
        let e = Optimizer::from_state(state).unwrap_err().to_string();
        assert_eq!(e, "optimizer state: `w`: exp_avg does not belong to SGD without momentum");

        let amsgrad = OptimizerConfig::Adam(Adam { amsgrad: true, ..Adam::default() });
        let state = OptimizerState { config: amsgrad, params: BTreeMap::from([("w".into(), adam_state.clone())]) };
        let e = Optimizer::from_state(state).unwrap_err().to_string();
        assert_eq!(e, "optimizer state: `w`: Adam with amsgrad needs max_exp_avg_sq after 3 step(s)");

        let mut odd = adam_state.clone();
        odd.exp_avg = Some(Tensor::zeros(vec![4], ElemType::F32));
        let adam = OptimizerConfig::Adam(Adam::default());
        let state = OptimizerState { config: adam, params: BTreeMap::from([("w".into(), odd)]) };
        let e = Optimizer::from_state(state).unwrap_err().to_string();
        assert_eq!(e, "optimizer state: `w`: exp_avg_sq is float32 [5] but exp_avg is float32 [4]");

        let state = OptimizerState { config: adam, params: BTreeMap::from([("w".into(), adam_state)]) };
        assert!(Optimizer::from_state(state).is_ok());
    }
}
