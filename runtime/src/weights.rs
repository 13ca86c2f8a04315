//! Weights: one host tensor per module parameter, by parameter name.
//!
//! - [`init_weights`] makes fresh weights from each parameter's
//!   [`ParamInit`], deterministically from a seed;
//! - [`check_weights`] checks a set of weights against a module before a
//!   run: every parameter present with its exact shape, nothing else;
//! - [`complete_weights`] fills in the constant parameters (masks) a
//!   weights file may leave out;
//! - [`read_weights_json`] / [`write_weights_json`] read and write a weights
//!   file, a JSON object `{"fc1.weight": TENSOR, ...}` where `TENSOR` is the
//!   form of [`Tensor::to_json`].

use std::collections::BTreeMap;

use snnc_ir::rng::{Stream, mix64};
use snnc_ir::{Dtype, Module, ParamInit};

use crate::tensor::{ElemType, ShapeError, Tensor};

/// Weights by parameter name (`Param::name`, e.g. `fc1.weight`).
pub type Weights = BTreeMap<String, Tensor>;

/// A set of weights does not fit a module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    /// A parameter of the module has no weight. `expected` lists the
    /// trainable parameters, `constant` the others (masks such as
    /// `lif1.autapse_mask`, which a weights file may leave out), `unknown`
    /// the names of the file that are no parameter (a state_dict of other
    /// names: the message says how to rename them).
    #[error(
        "missing weight `{name}`; the module's weights are {}{}{}",
        list(expected),
        constant_note(constant),
        rename_note(unknown)
    )]
    Missing { name: String, expected: Vec<String>, constant: Vec<String>, unknown: Vec<String> },
    /// A weight has another shape than its parameter.
    #[error(
        "weight `{name}` has shape {given:?} but the module expects {expected:?}{}",
        transposed_hint(expected, given)
    )]
    Shape { name: String, expected: Vec<usize>, given: Vec<usize> },
    /// Weights whose names are no parameter of the module.
    #[error("unknown weight(s) {}; the module's weights are {}", list(names), list(valid))]
    Unknown { names: Vec<String>, valid: Vec<String> },
    /// A weight's data does not fit its own shape.
    #[error("weight `{name}`: {source}")]
    BadTensor { name: String, source: ShapeError },
}

/// Renders names as `` `a`, `b` `` (or `(none)`).
fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// Says which constant parameters a weights file may leave out.
fn constant_note(constant: &[String]) -> String {
    if constant.is_empty() {
        return String::new();
    }
    format!(" (a weights file may leave out the constant {}: it keeps its initial value)", list(constant))
}

/// Names the weights that are no parameter and how to rename them.
fn rename_note(unknown: &[String]) -> String {
    if unknown.is_empty() {
        return String::new();
    }
    format!(
        "; the file holds {} instead: rename them to the module's names (snnc run --rename OLD=NEW, \
         --rename OLD.=NEW. for every name with that prefix, or --rename-map FILE)",
        list(unknown)
    )
}

/// A hint for a matrix given as the transpose of the expected shape.
fn transposed_hint(expected: &[usize], given: &[usize]) -> String {
    match (expected, given) {
        ([o, i], [a, b]) if o != i && (a, b) == (i, o) => {
            format!("; transposed? PyTorch stores Linear weights as [out, in] = [{o}, {i}]: give the transpose")
        }
        _ => String::new(),
    }
}

/// The names of the module's parameters that a weights file must hold
/// (trainable) and those it may leave out (constant masks).
fn param_names(module: &Module) -> (Vec<String>, Vec<String>) {
    let (mut trainable, mut constant) = (Vec::new(), Vec::new());
    for (_, p) in module.params.iter() {
        if p.trainable { &mut trainable } else { &mut constant }.push(p.name.clone());
    }
    (trainable, constant)
}

/// Fills in the constant parameters of `module` that `weights` lacks with
/// their initial value (they do not depend on a seed), so a weights file
/// need only hold the trainable ones.
pub fn complete_weights(module: &Module, weights: &mut Weights) {
    if module.params.iter().all(|(_, p)| p.trainable || weights.contains_key(&p.name)) {
        return;
    }
    let defaults = init_weights(module, 0);
    for (_, p) in module.params.iter() {
        if !p.trainable && !weights.contains_key(&p.name) {
            weights.insert(p.name.clone(), defaults[&p.name].clone());
        }
    }
}

/// The host element type of a module's float dtype (`f32` unless `f64`).
pub fn elem_type(float: Dtype) -> ElemType {
    match float {
        Dtype::F64 => ElemType::F64,
        Dtype::F32 | Dtype::Spike => ElemType::F32,
    }
}

/// Fresh weights for every parameter of `module`, by name.
///
/// Each tensor has the parameter's fixed shape and the element type of the
/// module's float dtype (`Module::float`, F32 or F64). Values follow
/// [`ParamInit`]:
///
/// | init | value of each element, row-major |
/// |---|---|
/// | `Zeros` | 0 |
/// | `Fill(x)` | x |
/// | `Uniform { bound }` | `bound * (2u - 1)`, `u` from `Stream::next_f64` (in `[-bound, bound)`) |
/// | `Normal { std }` | `std * n`, `n` from `Stream::next_normal` (mean 0) |
/// | `OffDiagonal` | 1, except 0 where the row index equals the column index (rank 2); 1 for other ranks |
/// | `Values(v)` | `v[k]` for element `k` (per-neuron neuron parameters) |
///
/// The random draws of parameter number `i` (its index in `module.params`)
/// come from `snnc_ir::rng::Stream::new(seed ^ mix64(i))`, one or two draws
/// per element in row-major order, computed in f64 and then rounded to the
/// element type. So the weights depend only on the seed, the parameter's
/// position and its shape: adding a parameter at the end changes no other.
/// An f32 value that rounds up to `bound` is replaced by the next f32 below,
/// so uniform weights stay in `[-bound, bound)` after rounding.
pub fn init_weights(module: &Module, seed: u64) -> Weights {
    let elem = elem_type(module.float);
    let mut weights = Weights::new();
    for (h, p) in module.params.iter() {
        let dims: Vec<usize> = p.shape.resolve(1);
        let n: usize = dims.iter().product();
        let mut stream = Stream::new(seed ^ mix64(h.index() as u64));
        let data: Vec<f64> = match p.init {
            ParamInit::Zeros => vec![0.0; n],
            ParamInit::Fill(x) => vec![x; n],
            // The validator checks the count; a short list (an unvalidated
            // module) is padded with zeros rather than panicking.
            ParamInit::Values(ref v) => (0..n).map(|k| v.get(k).copied().unwrap_or(0.0)).collect(),
            ParamInit::Uniform { bound } => (0..n)
                .map(|_| {
                    let x = bound * (2.0 * stream.next_f64() - 1.0);
                    if elem == ElemType::F32 && bound > 0.0 && f64::from(x as f32) >= bound {
                        f64::from((bound as f32).next_down())
                    } else {
                        x
                    }
                })
                .collect(),
            ParamInit::Normal { std } => (0..n).map(|_| std * stream.next_normal()).collect(),
            ParamInit::OffDiagonal => {
                let mut v = vec![1.0; n];
                if let [rows, cols] = dims[..] {
                    for i in 0..rows.min(cols) {
                        v[i * cols + i] = 0.0;
                    }
                }
                v
            }
        };
        let t = Tensor::new(dims, elem, data).expect("the data is made for the shape");
        weights.insert(p.name.clone(), t);
    }
    weights
}

/// Checks that `weights` holds exactly the module's parameters, each with
/// its parameter's shape (any element type: runs convert it).
///
/// Errors, in this order: the first missing parameter (trainable ones
/// first, in declaration order), the first weight with a wrong shape or
/// inconsistent data, then every unknown name at once.
pub fn check_weights(module: &Module, weights: &Weights) -> Result<(), WeightsError> {
    let expected: Vec<String> = module.params.iter().map(|(_, p)| p.name.clone()).collect();
    let (trainable, constant) = param_names(module);
    let unknown: Vec<String> = weights.keys().filter(|k| module.param_by_name(k).is_none()).cloned().collect();
    if let Some(name) = trainable.iter().chain(&constant).find(|n| !weights.contains_key(*n)) {
        return Err(WeightsError::Missing { name: name.clone(), expected: trainable, constant, unknown });
    }
    for (_, p) in module.params.iter() {
        let t = &weights[&p.name];
        let want = p.shape.resolve(1);
        if t.shape != want {
            return Err(WeightsError::Shape { name: p.name.clone(), expected: want, given: t.shape.clone() });
        }
        t.check().map_err(|source| WeightsError::BadTensor { name: p.name.clone(), source })?;
    }
    if !unknown.is_empty() {
        return Err(WeightsError::Unknown { names: unknown, valid: expected });
    }
    Ok(())
}

/// Parses a weights file: a JSON object mapping names to tensors. Values of
/// `float32` tensors are rounded to f32.
pub fn read_weights_json(text: &str) -> Result<Weights, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("weights file: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("weights file: expected a JSON object {name: tensor, ...}".into());
    };
    let mut weights = Weights::new();
    for (name, v) in map {
        let t = Tensor::from_json(&v).map_err(|e| format!("weights file: weight `{name}`: {e}"))?;
        let t = t.cast(t.dtype);
        weights.insert(name, t);
    }
    Ok(weights)
}

/// Writes weights as a JSON object `{name: tensor}` (names sorted). Reading
/// it back with [`read_weights_json`] gives the same weights, provided every
/// value is finite (JSON has no NaN or infinity).
pub fn write_weights_json(weights: &Weights) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        weights.iter().map(|(k, t)| (k.clone(), t.to_json())).collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use snnc_ir::{Builder, Param, Shape};

    fn module(float: Dtype) -> Module {
        let mut b = Builder::new("w", 4, 1e-3, float);
        let params = [
            ("a.weight", Shape::fixed(&[3, 4]), ParamInit::Uniform { bound: 0.5 }),
            ("a.bias", Shape::fixed(&[3]), ParamInit::Fill(0.1)),
            ("r.weight", Shape::fixed(&[3, 3]), ParamInit::Normal { std: 2.0 }),
            ("r.mask", Shape::fixed(&[3, 3]), ParamInit::OffDiagonal),
            ("z", Shape::scalar(), ParamInit::Zeros),
        ];
        for (name, shape, init) in params {
            b.param(Param { name: name.into(), dtype: float, shape, trainable: true, init });
        }
        b.finish()
    }

    #[test]
    fn init_follows_the_param_inits() {
        let m = module(Dtype::F32);
        let w = init_weights(&m, 7);
        assert_eq!(w.keys().collect::<Vec<_>>(), ["a.bias", "a.weight", "r.mask", "r.weight", "z"]);
        let a = &w["a.weight"];
        assert_eq!((a.shape.clone(), a.dtype), (vec![3, 4], ElemType::F32));
        assert!(a.data.iter().all(|x| (-0.5..0.5).contains(x) && f64::from(*x as f32) == *x));
        assert!(a.data.windows(2).all(|p| p[0] != p[1]));
        assert_eq!(w["a.bias"].data, vec![f64::from(0.1f32); 3]);
        assert_eq!(w["r.mask"].data, vec![0., 1., 1., 1., 0., 1., 1., 1., 0.]);
        assert!(w["r.weight"].data.iter().any(|x| x.abs() > 1.0));
        assert_eq!((w["z"].shape.clone(), w["z"].data.clone()), (vec![], vec![0.0]));
        check_weights(&m, &w).unwrap();
    }

    #[test]
    fn init_is_deterministic_and_depends_on_seed_and_position() {
        let m = module(Dtype::F64);
        let (w1, w2, w3) = (init_weights(&m, 7), init_weights(&m, 7), init_weights(&m, 8));
        assert_eq!(w1, w2);
        assert_ne!(w1["a.weight"], w3["a.weight"]);
        assert_eq!(w1["a.weight"].dtype, ElemType::F64);
        // Parameter 0 draws from Stream::new(seed ^ mix64(0)).
        let mut s = Stream::new(7 ^ mix64(0));
        assert_eq!(w1["a.weight"].data[0], 0.5 * (2.0 * s.next_f64() - 1.0));
    }

    #[test]
    fn check_reports_missing_shape_and_unknown() {
        let m = module(Dtype::F32);
        let mut w = init_weights(&m, 1);
        w.remove("a.bias");
        assert_eq!(
            check_weights(&m, &w).unwrap_err().to_string(),
            "missing weight `a.bias`; the module's weights are `a.weight`, `a.bias`, `r.weight`, `r.mask`, `z`"
        );
        let mut w = init_weights(&m, 1);
        w.insert("a.weight".into(), Tensor::zeros(vec![4, 3], ElemType::F32));
        assert_eq!(
            check_weights(&m, &w).unwrap_err().to_string(),
            "weight `a.weight` has shape [4, 3] but the module expects [3, 4]; transposed? PyTorch stores Linear \
             weights as [out, in] = [3, 4]: give the transpose"
        );
        let mut w = init_weights(&m, 1);
        w.insert("a.weight".into(), Tensor::zeros(vec![3, 5], ElemType::F32));
        assert_eq!(
            check_weights(&m, &w).unwrap_err().to_string(),
            "weight `a.weight` has shape [3, 5] but the module expects [3, 4]"
        );
        let mut w = init_weights(&m, 1);
        w.insert("b.weight".into(), Tensor::zeros(vec![1], ElemType::F32));
        w.insert("a.weigth".into(), Tensor::zeros(vec![1], ElemType::F32));
        assert_eq!(
            check_weights(&m, &w).unwrap_err().to_string(),
            "unknown weight(s) `a.weigth`, `b.weight`; the module's weights are `a.weight`, `a.bias`, `r.weight`, \
             `r.mask`, `z`"
        );
        let mut w = init_weights(&m, 1);
        w.get_mut("a.bias").unwrap().data.push(1.0);
        assert_eq!(
            check_weights(&m, &w).unwrap_err().to_string(),
            "weight `a.bias`: tensor data has 4 elements but shape [3] needs 3"
        );
    }

    #[test]
    fn constant_masks_are_optional() {
        let mut b = Builder::new("w", 4, 1e-3, Dtype::F32);
        for (name, trainable, init) in [
            ("r.weight", true, ParamInit::Zeros),
            ("r.autapse_mask", false, ParamInit::OffDiagonal),
            ("r.bias", true, ParamInit::Zeros),
        ] {
            b.param(Param { name: name.into(), dtype: Dtype::F32, shape: Shape::fixed(&[2, 2]), trainable, init });
        }
        let m = b.finish();
        let mut w = init_weights(&m, 1);
        w.remove("r.bias");
        w.remove("r.autapse_mask");
        assert_eq!(
            check_weights(&m, &w).unwrap_err().to_string(),
            "missing weight `r.bias`; the module's weights are `r.weight`, `r.bias` (a weights file may leave out \
             the constant `r.autapse_mask`: it keeps its initial value)"
        );
        complete_weights(&m, &mut w);
        assert_eq!(w["r.autapse_mask"].data, vec![0.0, 1.0, 1.0, 0.0]);
        assert!(!w.contains_key("r.bias"));
    }

    #[test]
    fn json_round_trip() {
        let m = module(Dtype::F32);
        let w = init_weights(&m, 3);
        let text = write_weights_json(&w);
        assert_eq!(read_weights_json(&text).unwrap(), w);
        // f64 values come back within an ulp: serde_json parses floats exactly
        // only with its `float_roundtrip` feature.
        let w64 = init_weights(&module(Dtype::F64), 3);
        let back = read_weights_json(&write_weights_json(&w64)).unwrap();
        assert_eq!(back.keys().collect::<Vec<_>>(), w64.keys().collect::<Vec<_>>());
        for (k, t) in &w64 {
            assert_eq!((&back[k].shape, back[k].dtype), (&t.shape, t.dtype));
            for (a, b) in back[k].data.iter().zip(&t.data) {
                assert!((a - b).abs() <= b.abs() * f64::EPSILON, "{k}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn json_reader_errors() {
        assert_eq!(read_weights_json("[1]").unwrap_err(), "weights file: expected a JSON object {name: tensor, ...}");
        let e = read_weights_json(r#"{"a": {"shape": [2], "dtype": "float32", "data": [1]}}"#).unwrap_err();
        assert_eq!(e, "weights file: weight `a`: tensor data has 1 elements but shape [2] needs 2");
        let e = read_weights_json(r#"{"a": {"shape": [1], "dtype": "float16", "data": [1]}}"#).unwrap_err();
        assert!(e.starts_with("weights file: weight `a`: not a tensor: unknown variant `float16`"), "{e}");
        assert!(read_weights_json("{").unwrap_err().starts_with("weights file: "));
        let e = read_weights_json(r#"{"a": {"shape": [2], "dtype": "float32", "data": [1, 1e300]}}"#).unwrap_err();
        assert!(e.starts_with("weights file: weight `a`: data[1] (element [1]) = 1e300 does not fit float32"), "{e}");
        let e =
            read_weights_json(r#"{"a": {"shape": [1], "dtype": "float32", "data": [1], "grad": null}}"#).unwrap_err();
        assert!(e.starts_with("weights file: weight `a`: not a tensor: unknown field `grad`"), "{e}");
        // f32 values are rounded on reading.
        let w = read_weights_json(r#"{"a": {"shape": [], "dtype": "float32", "data": [0.1]}}"#).unwrap();
        assert_eq!(w["a"].data, vec![f64::from(0.1f32)]);
    }
}
