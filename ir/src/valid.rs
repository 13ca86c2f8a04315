//! The validator: checks a module and returns [`ModuleInfo`], the proof that
//! it did. It collects every error with its location instead of stopping at
//! the first one.
//!
//! Order: module header, declarations, then handles and placement (so that
//! later checks may index without bounds checks), then types and scoping.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::arena::Handle;
use crate::module::{Module, Node, ParamInit, RegionKind, StateInit};
use crate::op::Op;
use crate::types::Dtype;

/// Where an error is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Module,
    Input(String),
    Param(String),
    State(String),
    /// A node: its handle and the index of its region.
    Node {
        node: usize,
        region: Option<usize>,
    },
    Output(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Module => f.write_str("module"),
            Location::Input(n) => write!(f, "input `{n}`"),
            Location::Param(n) => write!(f, "param `@{n}`"),
            Location::State(n) => write!(f, "state `${n}`"),
            Location::Node { node, region: Some(r) } => write!(f, "%{node} (region {r})"),
            Location::Node { node, region: None } => write!(f, "%{node}"),
            Location::Output(n) => write!(f, "output `{n}`"),
        }
    }
}

/// One problem found by the validator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found in a module.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the IR is invalid ({} error(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Facts about a valid module, computed by [`validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The region index of every node.
    pub region_of: Vec<usize>,
    /// How many times each node is used as an operand or output.
    pub use_count: Vec<u32>,
    /// For every state, the step region that reads and writes it.
    pub state_region: Vec<usize>,
}

/// Checks every invariant of the IR.
pub fn validate(module: &Module) -> Result<ModuleInfo, ValidationErrors> {
    let mut errors = Vec::new();
    let mut err = |location: Location, message: String| errors.push(ValidationError { location, message });

    // Header.
    if module.steps == 0 {
        err(Location::Module, "the number of steps T must be at least 1".into());
    }
    if !(module.dt.is_finite() && module.dt > 0.0) {
        err(Location::Module, format!("dt must be a positive number, got {}", module.dt));
    }
    if !module.float.is_float() {
        err(Location::Module, format!("the module's float type must be f32 or f64, got {}", module.float));
    }

    // Declarations.
    let mut seen = HashSet::new();
    for (_, i) in module.inputs.iter() {
        if !seen.insert(i.name.as_str()) {
            err(Location::Input(i.name.clone()), "duplicate input name".into());
        }
    }
    seen.clear();
    for (_, p) in module.params.iter() {
        if !seen.insert(p.name.as_str()) {
            err(Location::Param(p.name.clone()), "duplicate parameter name".into());
        }
        if p.shape.has_batch() {
            err(Location::Param(p.name.clone()), "a parameter cannot have a batch dimension".into());
        }
        if let ParamInit::Values(v) = &p.init
            && p.shape.checked_fixed_elements() != Some(v.len() as u64)
        {
            err(
                Location::Param(p.name.clone()),
                format!("`values` init holds {} values for shape {}", v.len(), p.shape),
            );
        }
        if p.dtype != module.float {
            err(
                Location::Param(p.name.clone()),
                format!("a parameter must have the module's float type {}, got {}", module.float, p.dtype),
            );
        }
    }
    seen.clear();
    for (_, s) in module.states.iter() {
        if !seen.insert(s.name.as_str()) {
            err(Location::State(s.name.clone()), "duplicate state name".into());
        }
        if s.ty.seq {
            err(Location::State(s.name.clone()), "a state is a per-step value and cannot be a sequence".into());
        }
        if let StateInit::Param(p) = s.init {
            match module.params.try_get(p) {
                None => {
                    err(Location::State(s.name.clone()), "`param` init names a parameter that does not exist".into())
                }
                Some(param) => {
                    if s.ty != crate::types::Type::new(param.dtype, param.shape.clone()) {
                        err(
                            Location::State(s.name.clone()),
                            format!(
                                "`param` init: the state's type {} is not the type {}{} of parameter `{}`",
                                s.ty, param.dtype, param.shape, param.name
                            ),
                        );
                    }
                }
            }
        }
        if let StateInit::Values(v) = &s.init {
            // fixed_elements counts the dims other than the batch: one sample.
            if s.ty.shape.checked_fixed_elements() != Some(v.len() as u64) {
                err(
                    Location::State(s.name.clone()),
                    format!("`values` init holds {} values, but one sample of {} has a different count", v.len(), s.ty),
                );
            }
            if s.ty.shape.0.iter().skip(1).any(|d| matches!(d, crate::types::Dim::Batch)) {
                err(Location::State(s.name.clone()), "`values` init needs the batch dimension first".into());
            }
            if !s.ty.dtype.is_float() {
                err(Location::State(s.name.clone()), "`values` init needs a float state".into());
            }
        }
    }

    // Regions: schedule attributes.
    for (r, region) in module.body.iter().enumerate() {
        if region.unroll == 0 {
            err(Location::Module, format!("region {r}: unroll must be at least 1 (1 means not unrolled)"));
        } else if region.unroll != 1 && region.kind == RegionKind::Seq {
            err(
                Location::Module,
                format!("region {r}: a sequence region cannot be unrolled (unroll {})", region.unroll),
            );
        }
        if region.reverse && region.kind == RegionKind::Seq {
            err(Location::Module, format!("region {r}: only a step loop can run in reverse"));
        }
    }

    // Placement: every node in exactly one region, in increasing order.
    let n = module.nodes.len();
    let mut region_of: Vec<Option<usize>> = vec![None; n];
    let mut position = vec![0usize; n];
    for (r, region) in module.body.iter().enumerate() {
        let mut last: Option<Handle<Node>> = None;
        for (pos, &h) in region.nodes.iter().enumerate() {
            if h.index() >= n {
                err(Location::Node { node: h.index(), region: Some(r) }, "node handle out of range".into());
                continue;
            }
            if let Some(prev) = region_of[h.index()] {
                err(
                    Location::Node { node: h.index(), region: Some(r) },
                    format!("node is placed twice (also in region {prev})"),
                );
                continue;
            }
            if last.is_some_and(|l| l >= h) {
                err(
                    Location::Node { node: h.index(), region: Some(r) },
                    "nodes of a region must be in increasing order".into(),
                );
            }
            last = Some(h);
            region_of[h.index()] = Some(r);
            position[h.index()] = pos;
        }
    }
    for (h, _) in module.nodes.iter() {
        if region_of[h.index()].is_none() {
            err(Location::Node { node: h.index(), region: None }, "node is not placed in any region".into());
        }
    }

    // Handles and scoping of operands.
    let mut handles_ok = vec![true; n];
    for (h, node) in module.nodes.iter() {
        let Some(r) = region_of[h.index()] else {
            handles_ok[h.index()] = false;
            continue;
        };
        let loc = || Location::Node { node: h.index(), region: Some(r) };
        let kind = &module.body[r].kind;
        // Declaration handles.
        let decl_ok = match node.op {
            Op::Input(i) => module.inputs.contains(i),
            Op::Param(p) => module.params.contains(p),
            Op::StateRead(s) | Op::StateWrite { state: s, .. } => module.states.contains(s),
            _ => true,
        };
        if !decl_ok {
            err(loc(), "reference to an undeclared input, parameter or state".into());
            handles_ok[h.index()] = false;
        }
        for a in node.op.operands() {
            if a.index() >= n {
                err(loc(), format!("operand %{} does not exist", a.index()));
                handles_ok[h.index()] = false;
                continue;
            }
            let Some(ra) = region_of[a.index()] else {
                handles_ok[h.index()] = false;
                continue;
            };
            let before = ra < r || (ra == r && position[a.index()] < position[h.index()]);
            if !before {
                err(loc(), format!("operand %{} is used before it is defined", a.index()));
                handles_ok[h.index()] = false;
                continue;
            }
            let a_kind = &module.body[ra].kind;
            let collect = matches!(node.op, Op::Collect(_));
            let ok = match (kind, a_kind) {
                (RegionKind::Seq, RegionKind::Step) => collect,
                (RegionKind::Seq, RegionKind::Seq) => !collect,
                (RegionKind::Step, RegionKind::Step) => ra == r,
                (RegionKind::Step, RegionKind::Seq) => matches!(node.op, Op::Step(_)) || !module.nodes[a].ty.seq,
            };
            if !ok {
                let why = match (kind, a_kind) {
                    (RegionKind::Seq, RegionKind::Step) => {
                        "a per-step value of a step loop is visible outside only through `collect`"
                    }
                    (RegionKind::Seq, RegionKind::Seq) => "`collect` takes a value of an earlier step loop",
                    (RegionKind::Step, RegionKind::Step) => "a step loop cannot see the values of another step loop",
                    (RegionKind::Step, RegionKind::Seq) => "a step loop reads a sequence value only through `step`",
                };
                err(loc(), format!("operand %{}: {why}", a.index()));
            }
        }
        // Region-specific ops.
        let step_only = matches!(node.op, Op::StateRead(_) | Op::StateWrite { .. } | Op::Step(_));
        if step_only && *kind != RegionKind::Step {
            err(loc(), format!("`{}` is only allowed in a step loop", node.op.mnemonic()));
        }
        if matches!(node.op, Op::Collect(_)) && *kind != RegionKind::Seq {
            err(loc(), "`collect` is only allowed in a sequence region".into());
        }
        if *kind == RegionKind::Step && node.ty.seq {
            err(loc(), format!("a step loop cannot hold a sequence value ({})", node.ty));
        }
        if let Op::Extract { kernel, .. } = node.op
            && kernel.index() < n
            && region_of[kernel.index()].is_some_and(|rk| rk != r)
        {
            err(loc(), format!("`extract` must be in the region of its `fused` node %{}", kernel.index()));
        }
    }

    // Types, for nodes whose handles are sound.
    for (h, node) in module.nodes.iter() {
        if !handles_ok[h.index()] {
            continue;
        }
        let loc = Location::Node { node: h.index(), region: region_of[h.index()] };
        // An `extract` is typed through its kernel's inputs: skip it when
        // the kernel's own handles are broken (that error is reported).
        if let Op::Extract { kernel, .. } = node.op
            && !handles_ok[kernel.index()]
        {
            continue;
        }
        // A kernel reports every problem of its body, not only the first.
        let typed = match &node.op {
            Op::Fused(kernel) => match crate::typing::check_kernel(module, kernel) {
                (Some(types), _) => Ok(types.into_iter().next().expect("a checked kernel has an output")),
                (None, errors) => {
                    for m in errors {
                        err(loc.clone(), format!("kernel `{}`: {m}", kernel.name));
                    }
                    continue;
                }
            },
            op => crate::typing::result_type(module, op),
        };
        match typed {
            Ok(ty) if ty == node.ty => {}
            Ok(ty) => err(loc, format!("recorded type {} differs from the computed type {ty}", node.ty)),
            Err(m) => err(loc, m),
        }
        if let Op::Const { value, dtype } = node.op {
            if value.is_nan() {
                err(Location::Node { node: h.index(), region: region_of[h.index()] }, "constant is NaN".into());
            }
            if dtype.is_float() && dtype != module.float {
                err(
                    Location::Node { node: h.index(), region: region_of[h.index()] },
                    format!("constant of type {dtype} in a {} module", module.float),
                );
            }
        }
    }

    // States: read and written in one step loop, written exactly once,
    // reads before the write.
    let mut state_region = vec![usize::MAX; module.states.len()];
    let mut writes: HashMap<usize, (usize, usize)> = HashMap::new();
    for (h, node) in module.nodes.iter() {
        if let Op::StateWrite { state, .. } = node.op {
            if !module.states.contains(state) {
                continue;
            }
            let Some(r) = region_of[h.index()] else { continue };
            if writes.insert(state.index(), (r, position[h.index()])).is_some() {
                err(Location::State(module.states[state].name.clone()), "state is written more than once".into());
            }
            state_region[state.index()] = r;
        }
    }
    for (s, st) in module.states.iter() {
        if !writes.contains_key(&s.index()) {
            err(Location::State(st.name.clone()), "state is never written".into());
        }
    }
    for (h, node) in module.nodes.iter() {
        if let Op::StateRead(state) = node.op {
            let (Some(r), Some(&(wr, wpos))) = (region_of[h.index()], writes.get(&state.index())) else {
                continue;
            };
            if r != wr {
                err(
                    Location::Node { node: h.index(), region: Some(r) },
                    "a state must be read in the step loop that writes it".into(),
                );
            } else if position[h.index()] > wpos {
                err(
                    Location::Node { node: h.index(), region: Some(r) },
                    "a state read must come before the state's write in its step loop".into(),
                );
            }
        }
    }

    // Outputs.
    let mut use_count = vec![0u32; n];
    for (_, node) in module.nodes.iter() {
        for a in node.op.operands() {
            if a.index() < n {
                use_count[a.index()] += 1;
            }
        }
    }
    seen.clear();
    for o in &module.outputs {
        if !seen.insert(o.name.as_str()) {
            err(Location::Output(o.name.clone()), "duplicate output name".into());
        }
        if o.value.index() >= n {
            err(Location::Output(o.name.clone()), "output value does not exist".into());
            continue;
        }
        use_count[o.value.index()] += 1;
        if let Some(r) = region_of[o.value.index()]
            && module.body[r].kind != RegionKind::Seq
        {
            err(
                Location::Output(o.name.clone()),
                "an output must be a value of a sequence region (use `collect` for per-step values)".into(),
            );
        }
        if module.nodes[o.value].ty.dtype == Dtype::F64 && module.float == Dtype::F32 {
            err(Location::Output(o.name.clone()), "f64 output in an f32 module".into());
        }
    }

    if errors.is_empty() {
        Ok(ModuleInfo {
            region_of: region_of.into_iter().map(|r| r.expect("checked above")).collect(),
            use_count,
            state_region,
        })
    } else {
        Err(ValidationErrors(errors))
    }
}
