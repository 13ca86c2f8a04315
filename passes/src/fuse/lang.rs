//! The e-graph language of elementwise step code, separate from the IR.
//!
//! One term describes one value of a kernel, per element: inputs `in0`,
//! `in1`, ... (the kernel's inputs by position), constants, and one
//! operator per elementwise IR op. `convert.rs` translates both ways.
//!
//! The [`KernelAnalysis`] gives every e-class its dtype (by the IR's typing
//! rules) and, when the class is a constant, its value, folded exactly as
//! the interpreter computes it; a folded class also gets the constant as a
//! node, so extraction can pick it.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use egg::{Analysis, DidMerge, EGraph, Id, Language, define_language};
use snnc_ir::{Dtype, KernelInst, Surrogate};

use super::convert::node_to_inst;
use super::fold;

define_language! {
    /// Elementwise step code. The operators mirror `snnc_ir::KernelInst`.
    pub enum StepLang {
        "neg" = Neg([Id; 1]),
        "abs" = Abs([Id; 1]),
        "exp" = Exp([Id; 1]),
        "log" = Log([Id; 1]),
        "tanh" = Tanh([Id; 1]),
        "sqrt" = Sqrt([Id; 1]),
        "relu" = Relu([Id; 1]),
        "+" = Add([Id; 2]),
        "-" = Sub([Id; 2]),
        "*" = Mul([Id; 2]),
        "/" = Div([Id; 2]),
        "max" = Max([Id; 2]),
        "min" = Min([Id; 2]),
        ">" = Gt([Id; 2]),
        ">=" = Ge([Id; 2]),
        "<" = Lt([Id; 2]),
        "<=" = Le([Id; 2]),
        "==" = Eq([Id; 2]),
        // `(select cond on_true on_false)`.
        "select" = Select([Id; 3]),
        "stop_gradient" = StopGradient([Id; 1]),
        "cast_f32" = CastF32([Id; 1]),
        "cast_f64" = CastF64([Id; 1]),
        "cast_spike" = CastSpike([Id; 1]),
        // `(threshold:superspike x)`, `(threshold:tanh:2.0 x)`.
        Threshold(Thresh, [Id; 1]),
        // `in0`, `in1`, ...
        Input(InputRef),
        // `0.1`, `-0.0`, `inf` (the module's float), `0s`/`1s` (spikes).
        Num(Number),
    }
}

/// A kernel input by position, written `in3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InputRef(pub u32);

impl fmt::Display for InputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "in{}", self.0)
    }
}

impl FromStr for InputRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("in").ok_or("not an input")?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("not an input".into());
        }
        digits.parse().map(InputRef).map_err(|e| e.to_string())
    }
}

/// A constant: a value of the module's float type (exactly representable
/// in it, never NaN), or a spike (0 or 1). Compared by bits, so `-0.0` and
/// `0.0` are different constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Number {
    bits: u64,
    spike: bool,
}

impl Number {
    /// A float constant. `value` must not be NaN.
    pub fn float(value: f64) -> Self {
        debug_assert!(!value.is_nan(), "a constant is never NaN");
        Number { bits: value.to_bits(), spike: false }
    }

    /// A spike constant (0 or 1).
    pub fn spike(on: bool) -> Self {
        Number { bits: if on { 1.0f64 } else { 0.0f64 }.to_bits(), spike: true }
    }

    pub fn value(self) -> f64 {
        f64::from_bits(self.bits)
    }

    pub fn is_spike(self) -> bool {
        self.spike
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.spike {
            write!(f, "{}s", self.value())
        } else {
            // The shortest text that reads back as the same f64.
            write!(f, "{:?}", self.value())
        }
    }
}

impl FromStr for Number {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "0s" => return Ok(Number::spike(false)),
            "1s" => return Ok(Number::spike(true)),
            _ => {}
        }
        // Only number-like text: `f64::from_str` would also take `infinity`.
        let ok = s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) || matches!(s, "inf" | "-inf");
        let value: f64 = if ok {
            s.parse().map_err(|_| format!("`{s}` is not a number"))?
        } else {
            return Err(format!("`{s}` is not a number"));
        };
        Ok(Number::float(value))
    }
}

/// The threshold operator with its surrogate, written
/// `threshold:superspike`, `threshold:tanh:2.0`, `threshold:heaviside`.
/// Compared by the surrogate's name and the bits of its parameter.
#[derive(Clone, Copy, Debug)]
pub struct Thresh(pub Surrogate);

impl Thresh {
    fn key(&self) -> (&'static str, u64) {
        (self.0.name(), self.0.alpha().map_or(0, f64::to_bits))
    }
}

impl PartialEq for Thresh {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Thresh {}
impl PartialOrd for Thresh {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Thresh {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}
impl Hash for Thresh {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

impl fmt::Display for Thresh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.alpha() {
            Some(alpha) => write!(f, "threshold:{}:{alpha:?}", self.0.name()),
            None => write!(f, "threshold:{}", self.0.name()),
        }
    }
}

impl FromStr for Thresh {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("threshold:").ok_or("not a threshold")?;
        let (name, alpha) = match rest.split_once(':') {
            Some((name, a)) => (name, Some(a.parse::<f64>().map_err(|e| e.to_string())?)),
            None => (rest, None),
        };
        let surrogate = match (name, alpha) {
            ("superspike", None) => Surrogate::SuperSpike,
            ("heaviside", None) => Surrogate::Heaviside,
            ("tanh", Some(alpha)) => Surrogate::Tanh { alpha },
            ("triangle", Some(alpha)) => Surrogate::Triangle { alpha },
            ("circ", Some(alpha)) => Surrogate::Circ { alpha },
            ("erfc", Some(alpha)) => Surrogate::Erfc { alpha },
            _ => return Err(format!("unknown surrogate `{rest}`")),
        };
        Ok(Thresh(surrogate))
    }
}

/// What the e-graph knows about a kernel: the module's float type and the
/// dtype of each input.
#[derive(Clone, Debug)]
pub struct KernelAnalysis {
    pub float: Dtype,
    pub inputs: Vec<Dtype>,
}

impl KernelAnalysis {
    pub fn new(float: Dtype, inputs: Vec<Dtype>) -> Self {
        KernelAnalysis { float, inputs }
    }
}

/// An `f32` module whose inputs are all `f32` (for tests written as terms:
/// they make spikes with `threshold`).
impl Default for KernelAnalysis {
    fn default() -> Self {
        KernelAnalysis::new(Dtype::F32, Vec::new())
    }
}

/// The facts of one e-class.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub dtype: Dtype,
    /// The class's value if it is a constant.
    pub constant: Option<Number>,
}

/// The e-graph of one kernel.
pub type KernelGraph = EGraph<StepLang, KernelAnalysis>;

impl Analysis<StepLang> for KernelAnalysis {
    type Data = Facts;

    fn make(egraph: &mut KernelGraph, enode: &StepLang, _id: Id) -> Facts {
        let analysis = &egraph.analysis;
        let float = analysis.float;
        let child = |i: Id| &egraph[i].data;
        let arg_dtypes: Vec<Dtype> = enode.children().iter().map(|&c| child(c).dtype).collect();
        // The instruction this node stands for, its operands numbered 0, 1, 2.
        let mut k = 0u32;
        let inst = node_to_inst(enode, float, |_| {
            k += 1;
            k - 1
        });
        let dtype = match inst {
            // An input not listed is a float (see `Default`).
            KernelInst::Input(i) => analysis.inputs.get(i as usize).copied().unwrap_or(float),
            // Type a one-instruction body whose operands are inputs 0, 1, 2
            // with the children's dtypes.
            _ => {
                let mut body: Vec<KernelInst> = (0..arg_dtypes.len() as u32).map(KernelInst::Input).collect();
                body.push(inst);
                match snnc_ir::typing::kernel_dtypes(float, &arg_dtypes, &body) {
                    (Some(d), _) => *d.last().expect("one instruction"),
                    (None, errors) => {
                        panic!(
                            "an ill-typed term `{enode}` in the e-graph (a bug in a fusion rule): {}",
                            errors.join("; ")
                        )
                    }
                }
            }
        };
        let args: Option<Vec<f64>> = enode.children().iter().map(|&c| child(c).constant.map(Number::value)).collect();
        let constant = args
            .and_then(|args: Vec<f64>| fold::fold(float, &inst, &args))
            .filter(|v| !v.is_nan())
            .and_then(|v| match dtype {
                Dtype::Spike => Some(Number::spike(v != 0.0)),
                d if d == float => Some(Number::float(v)),
                // An `f32` value in an `f64` module is not a kernel constant.
                _ => None,
            });
        Facts { dtype, constant }
    }

    fn merge(&mut self, to: &mut Facts, from: Facts) -> DidMerge {
        assert_eq!(to.dtype, from.dtype, "a fusion rule merged values of different dtypes");
        match (to.constant, from.constant) {
            (Some(a), Some(b)) => {
                assert_eq!(a, b, "a fusion rule merged two different constants");
                DidMerge(false, false)
            }
            (None, Some(b)) => {
                to.constant = Some(b);
                DidMerge(true, false)
            }
            (Some(_), None) => DidMerge(false, true),
            (None, None) => DidMerge(false, false),
        }
    }

    fn modify(egraph: &mut KernelGraph, id: Id) {
        if let Some(c) = egraph[id].data.constant {
            let num = egraph.add(StepLang::Num(c));
            egraph.union(id, num);
        }
    }
}
