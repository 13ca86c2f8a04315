//! The validator collects every error with its location; messages are
//! tested as rendered text.

use snnc_ir::{BinaryOp, Builder, Dtype, Handle, Module, Node, Op, Param, ParamInit, Shape, StateInit, Type, validate};

fn f32_state(b: &mut Builder, name: &str, n: u32) -> snnc_ir::Handle<snnc_ir::StateVar> {
    b.state(name, Type::new(Dtype::F32, Shape::batched(&[n])), StateInit::Fill(0.0))
}

/// A valid LIF-like module: input, one state, one step loop, an output.
fn small() -> Module {
    let mut b = Builder::new("small", 4, 1e-3, Dtype::F32);
    let x = b.input("x", Type::seq(Dtype::F32, Shape::batched(&[3])));
    let v = f32_state(&mut b, "v", 3);
    b.begin_seq();
    let xi = b.emit(Op::Input(x)).unwrap();
    let k = b.constant(0.5).unwrap();
    b.begin_step();
    let xt = b.emit(Op::Step(xi)).unwrap();
    let vr = b.state_read(v).unwrap();
    let s = b.add(vr, xt).unwrap();
    let s = b.mul(k, s).unwrap();
    let w = b.state_write(v, s).unwrap();
    b.name(w, "v");
    b.begin_seq();
    let c = b.emit(Op::Collect(w)).unwrap();
    b.output("output", c);
    b.finish()
}

fn errors(m: &Module) -> String {
    match validate(m) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_valid_module_gives_module_info() {
    let m = small();
    let info = validate(&m).expect("valid");
    assert_eq!(info.region_of.len(), m.nodes.len());
    assert_eq!(info.state_region, vec![1]);
    // The state write is used by the collect.
    let w = m.node_by_name("v").unwrap();
    assert_eq!(info.use_count[w.index()], 1);
}

#[test]
fn header_errors_are_all_reported() {
    let mut m = small();
    m.steps = 0;
    m.dt = f64::NAN;
    assert_eq!(
        errors(&m),
        "the IR is invalid (2 error(s)):\n  module: the number of steps T must be at least 1\n  module: dt must be a positive number, got NaN\n"
    );
}

#[test]
fn use_before_definition_and_wrong_scope() {
    let mut m = small();
    // Move the output's collect into the step loop: wrong region for
    // `collect`, and the loop would hold a sequence value.
    let collect = m.body[2].nodes.pop().unwrap();
    m.body[1].nodes.push(collect);
    let text = errors(&m);
    assert!(text.contains("`collect` is only allowed in a sequence region"), "{text}");
    assert!(text.contains("a step loop cannot hold a sequence value"), "{text}");
    assert!(text.contains("output `output`: an output must be a value of a sequence region"), "{text}");
}

#[test]
fn operands_that_do_not_exist_are_reported_once_each() {
    let mut m = small();
    let bad: Handle<Node> = Handle::from_index(999);
    let last_step = *m.body[1].nodes.last().unwrap();
    if let Op::StateWrite { value, .. } = &mut m.nodes[last_step].op {
        *value = bad;
    }
    let text = errors(&m);
    assert!(text.contains("operand %999 does not exist"), "{text}");
}

#[test]
fn type_mismatch_names_both_types() {
    let mut m = small();
    // Record a wrong type on the add.
    let add = m.nodes.iter().find(|(_, n)| matches!(n.op, Op::Binary { op: BinaryOp::Add, .. })).unwrap().0;
    m.nodes[add].ty = Type::new(Dtype::F32, Shape::batched(&[4]));
    let text = errors(&m);
    assert!(text.contains("recorded type f32[B,4] differs from the computed type f32[B,3]"), "{text}");
}

#[test]
fn states_must_be_written_once_and_read_first() {
    let mut b = Builder::new("states", 2, 1e-3, Dtype::F32);
    let v = f32_state(&mut b, "v", 2);
    let u = f32_state(&mut b, "u", 2);
    b.begin_step();
    let r = b.state_read(v).unwrap();
    b.state_write(v, r).unwrap();
    b.state_write(v, r).unwrap();
    let _late = b.state_read(v).unwrap();
    let _ = u;
    let m = b.finish();
    let text = errors(&m);
    assert!(text.contains("state `$v`: state is written more than once"), "{text}");
    assert!(text.contains("state `$u`: state is never written"), "{text}");
    assert!(text.contains("a state read must come before the state's write"), "{text}");
}

#[test]
fn builder_rejects_ill_typed_ops() {
    let mut b = Builder::new("types", 2, 1e-3, Dtype::F32);
    let x = b.input("x", Type::new(Dtype::F32, Shape::batched(&[3])));
    let w = b.param(Param {
        name: "w".into(),
        dtype: Dtype::F32,
        shape: Shape::fixed(&[4, 5]),
        trainable: true,
        init: ParamInit::Zeros,
    });
    let xi = b.emit(Op::Input(x)).unwrap();
    let wi = b.emit(Op::Param(w)).unwrap();
    let err = b.emit(Op::MatMul { input: xi, weight: wi, kind: snnc_ir::MatMulKind::Dense }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`matmul` input f32[B,3] does not match weight f32[4,5]: the input's last dimension must be 5"
    );
    let err = b.emit(Op::Threshold { arg: wi, surrogate: snnc_ir::Surrogate::SuperSpike }).map(|_| ());
    assert!(err.is_ok(), "threshold of a float is fine");
    let z = b.emit(Op::Threshold { arg: xi, surrogate: snnc_ir::Surrogate::SuperSpike }).unwrap();
    let err = b.emit(Op::Binary { op: BinaryOp::Add, lhs: z, rhs: z }).unwrap_err();
    assert_eq!(err.to_string(), "`add` of two spikes is not defined; cast one to float");
}

#[test]
fn printing_is_stable() {
    let text = snnc_ir::print(&small());
    assert_eq!(
        text,
        "module small {
  steps 4, dt 0.001, float f32
  input x : f32[T,B,3]
  state $v : f32[B,3] = 0.0
  seq {
    %0 = input x : f32[T,B,3]
    %1 = const 0.5 : f32[]
  }
  step t in 0..T {
    %2 = step %0 : f32[B,3]
    %3 = state_read $v : f32[B,3]
    %4 = add %3, %2 : f32[B,3]
    %5 = mul %1, %4 : f32[B,3]
    %6 = state_write $v, %5 : f32[B,3]           ; v
  }
  seq {
    %7 = collect %6 : f32[T,B,3]
  }
  output output = %7
}
"
    );
}

/// A state may start at a parameter's value (a plastic weight): it must
/// have the parameter's type, and it prints as `= @NAME`.
#[test]
fn a_state_initialised_from_a_parameter_has_its_type() {
    let build = |state_shape: &[u32]| {
        let mut b = Builder::new("plastic", 2, 1e-3, Dtype::F32);
        let p = b.param(Param {
            name: "fc.weight".into(),
            dtype: Dtype::F32,
            shape: Shape::fixed(&[2, 3]),
            trainable: true,
            init: ParamInit::Zeros,
        });
        let s = b.state("fc.weight.plastic", Type::new(Dtype::F32, Shape::fixed(state_shape)), StateInit::Param(p));
        b.begin_step();
        let w = b.state_read(s).unwrap();
        let k = b.constant(0.5).unwrap();
        let w2 = b.mul(w, k).unwrap();
        let wr = b.state_write(s, w2).unwrap();
        b.begin_seq();
        let c = b.emit(Op::Collect(wr)).unwrap();
        b.output("w", c);
        b.finish()
    };
    let good = build(&[2, 3]);
    assert_eq!(errors(&good), "ok");
    assert!(snnc_ir::print(&good).contains("state $fc.weight.plastic : f32[2,3] = @fc.weight"));
    let bad = errors(&build(&[3, 2]));
    assert!(
        bad.contains("`param` init: the state's type f32[3,2] is not the type f32[2,3] of parameter `fc.weight`"),
        "{bad}"
    );
}
