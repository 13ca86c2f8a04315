//! The typing rules of `concat` and `narrow`: every refused case has its
//! message, and the validator refuses what the builder would.

use snnc_ir::{Builder, Dim, Dtype, Handle, Node, Op, Shape, Type, validate};

/// A builder with one sequence region and an input of each type given.
fn inputs(types: &[Type]) -> (Builder, Vec<Handle<Node>>) {
    let mut b = Builder::new("concat", 4, 1e-3, Dtype::F32);
    let hs: Vec<_> = types.iter().enumerate().map(|(k, t)| b.input(format!("x{k}"), t.clone())).collect();
    b.begin_seq();
    let nodes = hs.into_iter().map(|h| b.emit(Op::Input(h)).unwrap()).collect();
    (b, nodes)
}

fn f32b(dims: &[u32]) -> Type {
    Type::new(Dtype::F32, Shape::batched(dims))
}

fn concat_err(types: &[Type]) -> String {
    let (mut b, xs) = inputs(types);
    b.concat(xs).unwrap_err().to_string()
}

#[test]
fn concat_sums_dim_one_and_keeps_dtype_and_time_flag() {
    let (mut b, xs) = inputs(&[f32b(&[2, 3, 3]), f32b(&[5, 3, 3]), f32b(&[1, 3, 3])]);
    let y = b.concat(xs).unwrap();
    assert_eq!(b.module().nodes[y].ty, f32b(&[8, 3, 3]));
    let spike = |d: &[u32]| Type::seq(Dtype::Spike, Shape::batched(d));
    let (mut b, xs) = inputs(&[spike(&[4]), spike(&[6])]);
    let y = b.concat(xs).unwrap();
    assert_eq!(b.module().nodes[y].ty, spike(&[10]));
    // One operand is a copy.
    let (mut b, xs) = inputs(&[f32b(&[4])]);
    let y = b.concat(xs).unwrap();
    assert_eq!(b.module().nodes[y].ty, f32b(&[4]));
}

#[test]
fn concat_refuses_what_does_not_fit() {
    let (mut b, _) = inputs(&[]);
    assert_eq!(b.concat(Vec::new()).unwrap_err().to_string(), "`concat` needs at least one operand");
    assert_eq!(
        concat_err(&[f32b(&[2, 3]), f32b(&[2, 4])]),
        "`concat` operand 1 is f32[B,2,4] but operand 0 is f32[B,2,3]: every dimension but dimension 1 must be equal"
    );
    assert_eq!(
        concat_err(&[f32b(&[2, 3]), f32b(&[2])]),
        "`concat` operand 1 is f32[B,2] but operand 0 is f32[B,2,3]: every dimension but dimension 1 must be equal"
    );
    assert_eq!(
        concat_err(&[f32b(&[2]), Type::new(Dtype::Spike, Shape::batched(&[2]))]),
        "`concat` operand 1 is spike[B,2] but operand 0 is f32[B,2]: every operand needs the same dtype (cast one)"
    );
    assert_eq!(
        concat_err(&[f32b(&[2]), Type::seq(Dtype::F32, Shape::batched(&[2]))]),
        "`concat` operand 1 is f32[T,B,2] but operand 0 is f32[B,2]: every operand needs the same time flag"
    );
    let no_batch = "needs a value [B, d1, ...] with the batch dimension first and at least one dimension after it";
    assert_eq!(
        concat_err(&[f32b(&[2]), Type::new(Dtype::F32, Shape::fixed(&[3, 2]))]),
        format!("`concat` operand 1 {no_batch}, got f32[3,2]")
    );
    assert_eq!(
        concat_err(&[Type::new(Dtype::F32, Shape::batched(&[]))]),
        format!("`concat` operand 0 {no_batch}, got f32[B]")
    );
    let batch_later = Type::new(Dtype::F32, Shape(vec![Dim::Fixed(2), Dim::Batch]));
    assert_eq!(concat_err(&[batch_later]), format!("`concat` operand 0 {no_batch}, got f32[2,B]"));
    // The sum must fit in 32 bits.
    let big = u32::MAX / 2 + 1;
    assert_eq!(
        concat_err(&[f32b(&[big]), f32b(&[big])]),
        "`concat` of 2 operands: dimension 1 would be 4294967296, more than 2^32 - 1"
    );
}

#[test]
fn narrow_slices_dim_one_and_refuses_out_of_range() {
    let (mut b, xs) = inputs(&[Type::seq(Dtype::Spike, Shape::batched(&[6, 2]))]);
    let y = b.narrow(xs[0], 2, 4).unwrap();
    assert_eq!(b.module().nodes[y].ty, Type::seq(Dtype::Spike, Shape::batched(&[4, 2])));
    assert_eq!(
        b.narrow(xs[0], 3, 4).unwrap_err().to_string(),
        "`narrow` of spike[T,B,6,2]: the slice [3, 3 + 4) is beyond dimension 1, which is 6; start + len must be at most 6"
    );
    assert_eq!(
        b.narrow(xs[0], u32::MAX, u32::MAX).unwrap_err().to_string(),
        format!(
            "`narrow` of spike[T,B,6,2]: the slice [{m}, {m} + {m}) is beyond dimension 1, which is 6; start + len must be at most 6",
            m = u32::MAX
        )
    );
    assert_eq!(
        b.narrow(xs[0], 0, 0).unwrap_err().to_string(),
        "`narrow` of spike[T,B,6,2] needs a length of at least 1, got 0"
    );
    let (mut b, xs) = inputs(&[Type::new(Dtype::F32, Shape::fixed(&[4, 4]))]);
    assert_eq!(
        b.narrow(xs[0], 0, 1).unwrap_err().to_string(),
        "`narrow` needs a value [B, d1, ...] with the batch dimension first and at least one dimension after it, \
         got f32[4,4]"
    );
}

#[test]
fn the_validator_refuses_ill_typed_concat_and_narrow() {
    let (mut b, xs) = inputs(&[f32b(&[2, 3]), f32b(&[4, 3])]);
    let y = b.concat(xs.clone()).unwrap();
    let n = b.narrow(y, 1, 5).unwrap();
    b.output("y", y);
    b.output("n", n);
    let good = b.finish();
    validate(&good).expect("valid");
    // Edit the ops behind the builder's back.
    let mut m = good.clone();
    m.nodes[y].op = Op::Concat { args: vec![xs[0], n] };
    m.nodes[n].op = Op::Narrow { arg: y, start: 2, len: 5 };
    let text = validate(&m).unwrap_err().to_string();
    assert!(text.contains("operand %3 is used before it is defined"), "{text}");
    assert!(
        text.contains("the slice [2, 2 + 5) is beyond dimension 1, which is 6; start + len must be at most 6"),
        "{text}"
    );
    let mut m = good.clone();
    m.nodes[y].op = Op::Concat { args: Vec::new() };
    let text = validate(&m).unwrap_err().to_string();
    assert!(text.contains("`concat` needs at least one operand"), "{text}");
    let mut m = good;
    m.nodes[y].op = Op::Concat { args: vec![xs[0], xs[0], xs[1]] };
    let text = validate(&m).unwrap_err().to_string();
    assert!(text.contains("recorded type f32[B,6,3] differs from the computed type f32[B,8,3]"), "{text}");
}

#[test]
fn concat_and_narrow_print_tersely() {
    let (mut b, xs) = inputs(&[f32b(&[2]), f32b(&[3])]);
    let y = b.concat(xs).unwrap();
    let n = b.narrow(y, 1, 3).unwrap();
    b.output("n", n);
    let text = snnc_ir::print(&b.finish());
    assert!(text.contains("    %2 = concat %0, %1 : f32[B,5]\n"), "{text}");
    assert!(text.contains("    %3 = narrow %2, 1, 3 : f32[B,3]\n"), "{text}");
}
