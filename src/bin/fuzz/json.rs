//! JSON tensor files: valid ones made from a network with snnc itself
//! (weights and inputs from the shapes `snnc ir` prints, recordings by
//! `snnc run --record`), and their mutations.

use serde_json::{Value, json};

use crate::mutate::{mutate_bytes, replace_number};
use crate::rng::Rng;

/// A tensor file as `snnc run --weights/--input` reads it.
fn tensor(shape: &[u64], salt: u64) -> Value {
    let n: u64 = shape.iter().product();
    let data: Vec<f64> = (0..n).map(|i| ((i * 7919 + salt * 31) % 1000) as f64 / 1000.0 - 0.25).collect();
    json!({ "shape": shape, "dtype": "float32", "data": data })
}

/// The most values of one made-up tensor file (larger networks get none).
const MAX_VALUES: u64 = 200_000;

/// A weights file and an input file for a network, from its lowered IR
/// text (`param @NAME : f32[..]`, `input NAME : f32[T,B,..]`, `steps N`).
pub fn from_ir(ir: &str) -> (Option<Value>, Option<Value>) {
    let mut steps = 1u64;
    let mut weights = serde_json::Map::new();
    let mut inputs = serde_json::Map::new();
    let mut total = 0u64;
    for line in ir.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("steps ") {
            steps = rest.split(',').next().and_then(|s| s.trim().parse().ok()).unwrap_or(1);
            continue;
        }
        let (target, rest) = if let Some(r) = line.strip_prefix("param @") {
            (&mut weights, r)
        } else if let Some(r) = line.strip_prefix("input ") {
            (&mut inputs, r)
        } else {
            continue;
        };
        let Some((name, ty)) = rest.split_once(" : ") else { continue };
        let Some(dims) = ty.split_once('[').and_then(|(_, d)| d.split_once(']')).map(|(d, _)| d) else { continue };
        let shape: Option<Vec<u64>> = dims
            .split(',')
            .filter(|d| !d.trim().is_empty())
            .map(|d| match d.trim() {
                "T" => Some(steps),
                "B" => Some(1),
                d => d.parse().ok(),
            })
            .collect();
        let Some(shape) = shape else { continue };
        total = total.saturating_add(shape.iter().product());
        if total > MAX_VALUES {
            return (None, None);
        }
        target.insert(name.trim().to_string(), tensor(&shape, target.len() as u64));
    }
    let w = (!weights.is_empty()).then_some(Value::Object(weights));
    let i = (!inputs.is_empty()).then_some(Value::Object(inputs));
    (w, i)
}

/// The structural operators on a tensor file, by name.
pub const JSON_OPS: &[&str] = &[
    "shape-dim",
    "shape-add",
    "shape-remove",
    "shape-empty",
    "data-truncate",
    "data-extend",
    "data-empty",
    "data-value",
    "dtype",
    "key-delete",
    "key-rename",
    "key-add",
    "tensor-replace",
    "document-replace",
    "unwrap-single",
];

/// JSON numbers and non-numbers for dimensions and values.
fn odd_value(rng: &mut Rng) -> Value {
    let vals = [
        json!(0),
        json!(-1),
        json!(1),
        json!(4294967296u64),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5),
        json!(1e300),
        json!(-1e300),
        json!(-0.0),
        json!(1e-45),
        json!("2"),
        Value::Null,
        json!(true),
        json!([1]),
        json!({}),
    ];
    rng.pick(&vals).clone()
}

/// Mutates a tensor file (weights, input or recording): 1 or 2 structural
/// operators, then, sometimes, a text-level one. Returns the bytes and the
/// operators' names.
pub fn mutate_json(rng: &mut Rng, doc: &Value) -> (Vec<u8>, Vec<&'static str>) {
    let mut doc = doc.clone();
    let mut ops = Vec::new();
    for _ in 0..rng.range(1, 2) {
        let op = *rng.pick(JSON_OPS);
        apply(rng, op, &mut doc);
        ops.push(op);
    }
    let mut text = serde_json::to_vec(&doc).expect("a Value serializes");
    if rng.chance(0.3) {
        if rng.chance(0.5) {
            let specials = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "0x10", "01", "1.", "-", "1e"];
            replace_number(rng, &mut text, &specials);
            ops.push("json-number");
        } else {
            ops.push(mutate_bytes(rng, &mut text));
        }
    }
    (text, ops)
}

fn apply(rng: &mut Rng, op: &str, doc: &mut Value) {
    if op == "document-replace" {
        *doc = rng.pick(&[json!([]), json!(1), Value::Null, json!("x"), json!({})]).clone();
        return;
    }
    let Value::Object(map) = doc else { return };
    let keys: Vec<String> = map.keys().cloned().collect();
    if keys.is_empty() {
        return;
    }
    let key = rng.pick(&keys).clone();
    match op {
        "key-rename" => {
            let v = map.remove(&key).unwrap_or_default();
            let names = ["", "x.y", "__meta__", "output", "lif.v", "fc.weight", "X"];
            let new = if rng.chance(0.2) { "k".repeat(10_000) } else { rng.pick(&names).to_string() };
            map.insert(new, v);
        }
        "key-add" => {
            map.insert(format!("extra{}", rng.below(10)), odd_value(rng));
        }
        "unwrap-single" => {
            // A lone tensor instead of an object of named tensors.
            *doc = map.get(&key).cloned().unwrap_or_default();
        }
        _ => match map.get_mut(&key) {
            Some(Value::Object(t)) => tensor_op(rng, op, t),
            _ => {
                map.insert(key, odd_value(rng));
            }
        },
    }
}

fn tensor_op(rng: &mut Rng, op: &str, t: &mut serde_json::Map<String, Value>) {
    let shape = t.get_mut("shape").and_then(Value::as_array_mut);
    match (op, shape) {
        ("shape-dim", Some(s)) if !s.is_empty() => {
            let i = rng.below(s.len());
            s[i] = odd_value(rng);
        }
        ("shape-add", Some(s)) => {
            let i = rng.below(s.len() + 1);
            s.insert(i, json!(*rng.pick(&[1u64, 2, 0, 65536])));
        }
        ("shape-remove", Some(s)) if !s.is_empty() => {
            let i = rng.below(s.len());
            s.remove(i);
        }
        ("shape-empty", Some(s)) => s.clear(),
        _ => {}
    }
    let data = t.get_mut("data").and_then(Value::as_array_mut);
    match (op, data) {
        ("data-truncate", Some(d)) => {
            let n = rng.below(d.len() + 1);
            d.truncate(n);
        }
        ("data-extend", Some(d)) => {
            let n = rng.range(1, 1000);
            d.extend(std::iter::repeat_n(json!(0.5), n));
        }
        ("data-empty", Some(d)) => d.clear(),
        ("data-value", Some(d)) if !d.is_empty() => {
            let i = rng.below(d.len());
            d[i] = odd_value(rng);
        }
        _ => {}
    }
    match op {
        "dtype" => {
            let d = [json!("float64"), json!("float16"), json!("int32"), json!("bogus"), json!(1), Value::Null];
            t.insert("dtype".into(), rng.pick(&d).clone());
        }
        "key-delete" => {
            let k = *rng.pick(&["shape", "data", "dtype"]);
            t.remove(k);
        }
        "tensor-replace" => {
            let v = odd_value(rng);
            t.clear();
            if let Value::Object(o) = v {
                *t = o;
            } else {
                t.insert("data".into(), v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_from_ir() {
        let ir = "module m {\n  steps 4, dt 0.001, float f32\n  input x : f32[T,B,3]\n  param @fc.weight : f32[2,3] = uniform(0.5)\n";
        let (w, i) = from_ir(ir);
        let w = w.unwrap();
        assert_eq!(w["fc.weight"]["shape"], json!([2, 3]));
        assert_eq!(w["fc.weight"]["data"].as_array().unwrap().len(), 6);
        assert_eq!(i.unwrap()["x"]["shape"], json!([4, 1, 3]));
    }

    #[test]
    fn mutations_are_deterministic() {
        let (w, _) = from_ir("  param @a.weight : f32[2,3] = uniform(0.5)\n  param @a.bias : f32[2] = uniform(0.5)\n");
        let w = w.unwrap();
        for case in 0..200 {
            let run = || mutate_json(&mut Rng::for_case(9, case), &w);
            assert_eq!(run(), run());
        }
    }
}
