//! Checking a [`NeuronModel`] into a [`Program`]: every equation parsed,
//! every name resolved, every mistake listed with its place.

use std::collections::BTreeMap;

use super::expr::{Assignment, Expr, ExprError, ExprKind, parse_assignment, parse_expr};
use super::{InitValue, NeuronModel};
use crate::schema::{Method, ParamValue};

/// The functions of the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Exp,
    Log,
    Tanh,
    Sqrt,
    Abs,
    Relu,
    Min,
    Max,
    /// `clamp(x, lo, hi)` = `min(max(x, lo), hi)`, as `torch.clamp`.
    Clamp,
    /// `x > 0` as 0 or 1, without gradient (Norse's `heaviside`).
    Heaviside,
    /// `x > 0` with the layer's surrogate gradient (Norse's `threshold`).
    Spike,
    /// The value without gradient (`tensor.detach()`).
    Detach,
}

impl Func {
    pub const ALL: [Func; 12] = [
        Func::Exp,
        Func::Log,
        Func::Tanh,
        Func::Sqrt,
        Func::Abs,
        Func::Relu,
        Func::Min,
        Func::Max,
        Func::Clamp,
        Func::Heaviside,
        Func::Spike,
        Func::Detach,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Tanh => "tanh",
            Func::Sqrt => "sqrt",
            Func::Abs => "abs",
            Func::Relu => "relu",
            Func::Min => "min",
            Func::Max => "max",
            Func::Clamp => "clamp",
            Func::Heaviside => "heaviside",
            Func::Spike => "spike",
            Func::Detach => "detach",
        }
    }

    pub fn arity(self) -> usize {
        match self {
            Func::Min | Func::Max => 2,
            Func::Clamp => 3,
            _ => 1,
        }
    }

    pub fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// The names every model has.
const INPUT: &str = "x";
const INPUT_REC: &str = "x_rec";
const DT: &str = "dt";
const SPIKE: &str = "z";

/// A section of the step, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Update,
    Reset,
    After,
}

impl Section {
    fn field(self) -> &'static str {
        match self {
            Section::Update => "update",
            Section::Reset => "reset",
            Section::After => "after",
        }
    }
}

/// A checked model: what the lowering reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub states: Vec<(String, InitValue)>,
    pub params: Vec<(String, ParamValue)>,
    pub constants: BTreeMap<String, f64>,
    pub trainable: Vec<String>,
    pub update: Vec<Assignment>,
    pub spike: Option<Expr>,
    pub reset: Vec<Assignment>,
    pub after: Vec<Assignment>,
    pub detach: Vec<String>,
    pub output: String,
    pub method: Method,
    pub alpha: f64,
}

/// One mistake: where in the model (`update[2]`, `state.v`), what, and how
/// to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramError {
    pub at: String,
    pub message: String,
    pub help: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    State,
    Param,
    Constant,
    Builtin,
    Temp,
    Spike,
}

struct Checker {
    names: BTreeMap<String, Kind>,
    /// Every name an expression reads.
    read: std::collections::BTreeSet<String>,
    errors: Vec<ProgramError>,
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Program {
    /// Checks `model`: every mistake is listed, each with its place.
    pub fn check(model: &NeuronModel) -> Result<Program, Vec<ProgramError>> {
        Program::check_with(model, &[])
    }

    /// [`Program::check`] with more input names than `x`, `x_rec` and `dt`
    /// (the conductance inputs of a recurrent `CobaLIF`).
    pub fn check_with(model: &NeuronModel, inputs: &[&str]) -> Result<Program, Vec<ProgramError>> {
        let mut c = Checker { names: BTreeMap::new(), read: Default::default(), errors: Vec::new() };
        for &name in [INPUT, INPUT_REC, DT].iter().chain(inputs) {
            c.names.insert(name.to_string(), Kind::Builtin);
        }
        for (name, value) in model.params.iter() {
            c.declare(&format!("params.{name}"), name, Kind::Param);
            if value.values().iter().any(|x| !x.is_finite()) {
                c.error(format!("params.{name}"), "must be finite".into(), None);
            }
            if let ParamValue::PerNeuron(v) = value
                && v.is_empty()
            {
                c.error(format!("params.{name}"), "is an empty list".into(), Some(per_neuron_help()));
            }
        }
        for (name, value) in model.constants.iter() {
            c.declare(&format!("constants.{name}"), name, Kind::Constant);
            if !value.is_finite() {
                c.error(format!("constants.{name}"), format!("must be finite, found {value}"), None);
            }
        }
        if model.state.is_empty() {
            c.error(
                "state".into(),
                "a neuron needs at least one state variable".into(),
                Some("declare them with their initial values, e.g. `state: {\"v\": 0.0}`".into()),
            );
        }
        for (name, init) in model.state.iter() {
            c.declare(&format!("state.{name}"), name, Kind::State);
            c.init(name, init, model);
        }
        for name in &model.trainable {
            if model.params.get(name).is_none() {
                let help = if model.constants.get(name).is_some() {
                    format!("`{name}` is a constant (a Python float); move it to `params` to train it")
                } else {
                    format!("the parameters are {}", listed(model.params.keys()))
                };
                c.error("trainable".into(), format!("`{name}` is not a parameter of the model"), Some(help));
            }
        }
        if !(model.alpha.is_finite() && model.alpha > 0.0) {
            c.error("alpha".into(), format!("must be a positive number, found {}", model.alpha), None);
        }

        let update = c.section(Section::Update, &model.update);
        let spike = match &model.spike {
            Some(text) => match parse_expr(text) {
                Ok(e) => {
                    c.reads(&e, "spike", text);
                    Some(e)
                }
                Err(e) => {
                    c.expr_error("spike", text, e);
                    None
                }
            },
            None => None,
        };
        if model.spike.is_some() {
            c.names.insert(SPIKE.to_string(), Kind::Spike);
        } else if !model.reset.is_empty() {
            c.error("reset".into(), "a reset needs a spike condition".into(), Some(
                "add `spike: \"v - v_th\"` (the neuron spikes where it is > 0), or move these assignments to `update`"
                    .into(),
            ));
        }
        let reset = c.section(Section::Reset, &model.reset);
        let after = c.section(Section::After, &model.after);
        for name in &model.detach {
            if !c.names.contains_key(name) {
                c.error(
                    "detach".into(),
                    format!("`{name}` is not a value of the model"),
                    Some("list the values whose gradient the reset must not carry, e.g. `detach: [\"z\"]`".into()),
                );
            }
        }
        for name in &model.trainable {
            if model.params.get(name).is_some() && !c.read.contains(name) {
                c.error("trainable".into(), format!("`{name}` is trainable, but no equation reads it"), Some(
                    "a state's initial value carries no gradient (as Norse's `v = v_leak`): use the parameter in an \
                     equation, or leave it out of `trainable`"
                        .into(),
                ));
            }
        }
        let output = match &model.output {
            Some(o) => o.clone(),
            None if model.spike.is_some() => SPIKE.to_string(),
            None if model.state.0.len() == 1 => model.state.0[0].0.clone(),
            None => {
                c.error(
                    "output".into(),
                    "which value does the layer pass on?".into(),
                    Some(format!(
                        "a model without `spike` names its output, e.g. `output: \"{}\"`",
                        model.state.keys().next().unwrap_or("v")
                    )),
                );
                String::new()
            }
        };
        if !output.is_empty() && !matches!(c.names.get(&output), Some(Kind::State | Kind::Temp | Kind::Spike)) {
            c.error("output".into(), format!("`{output}` is not a state or value computed by the model"), None);
        }
        if !c.errors.is_empty() {
            return Err(c.errors);
        }
        Ok(Program {
            states: model.state.0.clone(),
            params: model.params.0.clone(),
            constants: model.constants.0.iter().cloned().collect(),
            trainable: model.trainable.clone(),
            update,
            spike,
            reset,
            after,
            detach: model.detach.clone(),
            output,
            method: model.method,
            alpha: model.alpha,
        })
    }

    /// Whether the output is the spike of `spike` itself (0 or 1, a spike
    /// tensor), not a value `after` computes from it.
    pub fn outputs_binary_spikes(&self) -> bool {
        self.spike.is_some() && self.output == "z" && !self.after.iter().any(|a| a.target == "z")
    }
}

fn per_neuron_help() -> String {
    "give one value per neuron of one sample, or one number for the whole layer".into()
}

fn listed<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

impl Checker {
    fn error(&mut self, at: String, message: String, help: Option<String>) {
        self.errors.push(ProgramError { at, message, help });
    }

    fn expr_error(&mut self, at: &str, text: &str, e: ExprError) {
        let message = e.render(text);
        self.errors.push(ProgramError { at: at.to_string(), message, help: e.help });
    }

    fn declare(&mut self, at: &str, name: &str, kind: Kind) {
        if !is_identifier(name) {
            self.error(
                at.into(),
                format!("`{}` is not a name", name.escape_debug()),
                Some("a name is letters, digits and `_`, not starting with a digit".into()),
            );
            return;
        }
        if name == SPIKE || Func::from_name(name).is_some() {
            self.error(at.into(), format!("`{name}` is reserved"), Some(format!(
                "`z` is the spike, `x`, `x_rec` and `dt` the input and time step, and {} functions; pick another name",
                listed(Func::ALL.iter().map(|f| f.name()))
            )));
            return;
        }
        match self.names.get(name) {
            Some(Kind::Builtin) => self.error(
                at.into(),
                format!("`{name}` is reserved"),
                Some(
                    "`x` is the input of the step, `x_rec` the recurrent input, `dt` the time step; pick another name"
                        .into(),
                ),
            ),
            Some(_) => self.error(
                at.into(),
                format!("`{name}` is declared twice"),
                Some("params, constants and states share one set of names".into()),
            ),
            None => {
                self.names.insert(name.to_string(), kind);
            }
        }
    }

    fn init(&mut self, name: &str, init: &InitValue, model: &NeuronModel) {
        let at = format!("state.{name}");
        match init {
            InitValue::Number(x) if !x.is_finite() => self.error(at, format!("must be finite, found {x}"), None),
            InitValue::Name(p) if model.params.get(p).is_none() && model.constants.get(p).is_none() => {
                self.error(
                    at,
                    format!("starts at `{p}`, which is not a parameter or constant"),
                    Some(format!(
                        "a state starts at a number, a parameter or constant ({}), or one value per neuron",
                        listed(model.params.keys().chain(model.constants.keys()))
                    )),
                );
            }
            InitValue::PerNeuron(v) if v.is_empty() || v.iter().any(|x| !x.is_finite()) => {
                self.error(at, "must be a non-empty list of finite numbers".into(), Some(per_neuron_help()));
            }
            _ => {}
        }
    }

    /// Parses and checks one section's assignments, declaring what they set.
    fn section(&mut self, section: Section, texts: &[String]) -> Vec<Assignment> {
        let mut out = Vec::new();
        let mut written: BTreeMap<String, usize> = BTreeMap::new();
        for (i, text) in texts.iter().enumerate() {
            let at = format!("{}[{i}]", section.field());
            let a = match parse_assignment(text) {
                Ok(a) => a,
                Err(e) => {
                    self.expr_error(&at, text, e);
                    continue;
                }
            };
            self.reads(&a.value, &at, text);
            let target = a.target.as_str();
            let kind = self.names.get(target).copied();
            let bad = match kind {
                Some(Kind::Param) => Some(format!("`{target}` is a parameter: parameters cannot be assigned")),
                Some(Kind::Constant) => Some(format!("`{target}` is a constant: constants cannot be assigned")),
                Some(Kind::Builtin) => Some(format!("`{target}` is the input or time step: it cannot be assigned")),
                Some(Kind::Spike) if section != Section::After => {
                    Some("`z` is the spike: it can be set only in `after`".to_string())
                }
                None if target == SPIKE => Some("`z` is the spike: it can be set only in `after`".to_string()),
                None if section == Section::Reset => Some(format!(
                    "a reset of an unknown state `{target}`: the states are {}",
                    listed(self.of_kind(Kind::State).iter().map(String::as_str))
                )),
                Some(Kind::Temp) if section == Section::Reset => {
                    Some(format!("`{target}` is not a state: a reset sets state variables"))
                }
                None if Func::from_name(target).is_some() => Some(format!("`{target}` is a function")),
                _ => None,
            };
            if let Some(message) = bad {
                let e = ExprError::new(a.target_span, message);
                self.expr_error(&at, text, e);
                continue;
            }
            if let Some(&first) = written.get(target) {
                let e = ExprError::new(
                    a.target_span,
                    format!(
                        "`{target}` is written twice in `{}` (first in {}[{first}])",
                        section.field(),
                        section.field()
                    ),
                )
                .with_help("each value is set once per section: give the intermediate value its own name");
                self.expr_error(&at, text, e);
                continue;
            }
            if kind == Some(Kind::Temp) {
                let e = ExprError::new(a.target_span, format!("`{target}` was set in an earlier section"))
                    .with_help("a value that is not a state is set once: give this one its own name");
                self.expr_error(&at, text, e);
                continue;
            }
            written.insert(target.to_string(), i);
            if kind.is_none() {
                self.names.insert(target.to_string(), Kind::Temp);
            }
            out.push(a);
        }
        out
    }

    fn of_kind(&self, kind: Kind) -> Vec<String> {
        self.names.iter().filter(|(_, k)| **k == kind).map(|(n, _)| n.clone()).collect()
    }

    /// Checks the names and calls `e` reads.
    fn reads(&mut self, e: &Expr, at: &str, text: &str) {
        match &e.kind {
            ExprKind::Num(_) => {}
            ExprKind::Name(n) => {
                self.read.insert(n.clone());
                if !self.names.contains_key(n) {
                    let help = if n == SPIKE {
                        "`z` (the spike) exists after `spike`: use it in `reset` and `after`".to_string()
                    } else if Func::from_name(n).is_some() {
                        format!("`{n}` is a function: call it, `{n}(...)`")
                    } else {
                        let mut known: Vec<String> = self.names.keys().cloned().collect();
                        known.sort();
                        format!(
                            "the names here are {} (a value is known after the assignment that sets it)",
                            listed(known.iter().map(String::as_str))
                        )
                    };
                    self.expr_error(at, text, ExprError::new(e.span, format!("unknown name `{n}`")).with_help(help));
                }
            }
            ExprKind::Neg(a) => self.reads(a, at, text),
            ExprKind::Bin(_, a, b) | ExprKind::Cmp(_, a, b) => {
                self.reads(a, at, text);
                self.reads(b, at, text);
            }
            ExprKind::Call { name, name_span, args } => {
                match Func::from_name(name) {
                    None => {
                        let help = format!("the functions are {}", listed(Func::ALL.iter().map(|f| f.name())));
                        self.expr_error(
                            at,
                            text,
                            ExprError::new(*name_span, format!("unknown function `{name}`")).with_help(help),
                        );
                    }
                    Some(f) if f.arity() != args.len() => {
                        let e = ExprError::new(
                            e.span,
                            format!(
                                "type error: `{name}` takes {} argument{}, found {}",
                                f.arity(),
                                if f.arity() == 1 { "" } else { "s" },
                                args.len()
                            ),
                        );
                        self.expr_error(at, text, e);
                    }
                    Some(_) => {}
                }
                for a in args {
                    self.reads(a, at, text);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neuron::OrderedMap;

    fn model(update: &[&str], spike: Option<&str>, reset: &[&str]) -> NeuronModel {
        NeuronModel {
            params: OrderedMap(vec![("v_th".into(), ParamValue::Scalar(1.0))]),
            constants: OrderedMap(vec![("c".into(), -65.0)]),
            state: OrderedMap(vec![("v".into(), InitValue::Number(0.0)), ("u".into(), InitValue::Number(0.0))]),
            update: update.iter().map(|s| s.to_string()).collect(),
            spike: spike.map(str::to_string),
            method: Method::Super,
            alpha: 100.0,
            reset: reset.iter().map(|s| s.to_string()).collect(),
            after: Vec::new(),
            detach: Vec::new(),
            output: None,
            trainable: Vec::new(),
        }
    }

    fn errors(m: &NeuronModel) -> Vec<String> {
        Program::check(m).unwrap_err().into_iter().map(|e| format!("{}: {}", e.at, e.message)).collect()
    }

    #[test]
    fn a_good_model_checks() {
        let p = Program::check(&model(&["k = dt * 2", "v = v + k * x", "u = u + v"], Some("v - v_th"), &["v = c"]))
            .unwrap();
        assert_eq!(p.update.len(), 3);
        assert_eq!(p.output, "z");
    }

    #[test]
    fn mistakes_point_into_the_equation() {
        let e = errors(&model(&["v = vv + 1"], Some("v - v_th"), &[]));
        assert_eq!(e, vec!["update[0]: column 5: unknown name `vv`\n    v = vv + 1\n        ^^"]);
        let e = errors(&model(&["v = v + 1", "v = v + 2"], Some("v"), &[]));
        assert!(
            e[0].starts_with("update[1]: column 1: `v` is written twice in `update` (first in update[0])"),
            "{e:?}"
        );
        let e = errors(&model(&[], Some("v"), &["w = 0"]));
        assert!(e[0].contains("a reset of an unknown state `w`: the states are `u`, `v`"), "{e:?}");
        let e = errors(&model(&["v = exp(v, 1)"], Some("v"), &[]));
        assert!(e[0].contains("type error: `exp` takes 1 argument, found 2"), "{e:?}");
        let e = errors(&model(&["v_th = 2"], Some("v"), &[]));
        assert!(e[0].contains("`v_th` is a parameter"), "{e:?}");
        let e = errors(&model(&["v = z"], Some("v"), &[]));
        assert!(e[0].contains("unknown name `z`"), "{e:?}");
        let e = errors(&model(&["v = v +"], None, &["v = 0"]));
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[1].contains("a reset needs a spike condition"), "{e:?}");
        assert!(e[2].contains("which value does the layer pass on?"), "{e:?}");
    }
}
