//! proptest: random elementwise chains in f64 agree bit for bit with the
//! same arithmetic written directly in Rust. The cases are fixed
//! (`proptest_config`: `PROPTEST_CASES` sets their number,
//! `SNNC_PROPTEST_EXPLORE=1` draws new ones).

mod common;
#[path = "../../../tests/common/proptest_config.rs"]
mod proptest_config;

use common::*;
use proptest::prelude::*;
use snnc_ir::{BinaryOp, Builder, CompareOp, Dtype, Handle, Node, Op, Shape, Surrogate, Type, UnaryOp};
use snnc_runtime::Weights;

/// One link of the chain, applied to the running value `v`.
#[derive(Clone, Debug)]
enum Link {
    Unary(UnaryOp),
    /// `v op c` with a scalar constant.
    WithConst(BinaryOp, f64),
    /// `c op v`.
    ConstWith(BinaryOp, f64),
    /// `v op y` with the second input.
    WithInput(BinaryOp),
    /// `v op p` with a parameter broadcast over the batch.
    WithParam(BinaryOp),
    /// `select(v > y, v, c)`.
    SelectGt(f64),
    /// `threshold(v)` cast back to float.
    Threshold,
    /// `v < c` as 0/1.
    Lt(f64),
}

fn link() -> impl Strategy<Value = Link> {
    let unary = prop::sample::select(UnaryOp::ALL.to_vec());
    let binary = prop::sample::select(BinaryOp::ALL.to_vec());
    let constant = prop_oneof![-4.0f64..4.0, Just(0.0), Just(-1.0), Just(0.5)];
    prop_oneof![
        unary.prop_map(Link::Unary),
        (binary.clone(), constant.clone()).prop_map(|(o, c)| Link::WithConst(o, c)),
        (binary.clone(), constant.clone()).prop_map(|(o, c)| Link::ConstWith(o, c)),
        binary.clone().prop_map(Link::WithInput),
        binary.prop_map(Link::WithParam),
        constant.clone().prop_map(Link::SelectGt),
        Just(Link::Threshold),
        constant.prop_map(Link::Lt),
    ]
}

fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if b > a {
        b
    } else {
        a
    }
}

fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if b < a {
        b
    } else {
        a
    }
}

fn apply_binary(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => nan_max(a, b),
        BinaryOp::Min => nan_min(a, b),
    }
}

fn apply_unary(op: UnaryOp, a: f64) -> f64 {
    match op {
        UnaryOp::Neg => -a,
        UnaryOp::Abs => a.abs(),
        UnaryOp::Exp => a.exp(),
        UnaryOp::Log => a.ln(),
        UnaryOp::Tanh => a.tanh(),
        UnaryOp::Sqrt => a.sqrt(),
        UnaryOp::Relu => nan_max(a, 0.0),
    }
}

const N: usize = 3;

proptest! {
    #![proptest_config(proptest_config::proptest_config(96))]

    #[test]
    fn elementwise_chain_matches_direct_f64(
        links in prop::collection::vec(link(), 1..12),
        batch in 1usize..4,
        xs in prop::collection::vec(-3.0f64..3.0, 12),
        ys in prop::collection::vec(-3.0f64..3.0, 12),
        ps in prop::collection::vec(-2.0f64..2.0, N),
    ) {
        let float = Dtype::F64;
        let mut b = Builder::new("chain", 1, 1e-3, float);
        let xin = b.input("x", Type::new(float, Shape::batched(&[N as u32])));
        let yin = b.input("y", Type::new(float, Shape::batched(&[N as u32])));
        let pp = b.param(param("p", float, &[N as u32]));
        let x = b.emit(Op::Input(xin)).unwrap();
        let y = b.emit(Op::Input(yin)).unwrap();
        let p = b.emit(Op::Param(pp)).unwrap();
        let mut v: Handle<Node> = x;
        for l in &links {
            v = match *l {
                Link::Unary(op) => b.unary(op, v).unwrap(),
                Link::WithConst(op, c) => { let c = b.constant(c).unwrap(); b.binary(op, v, c).unwrap() }
                Link::ConstWith(op, c) => { let c = b.constant(c).unwrap(); b.binary(op, c, v).unwrap() }
                Link::WithInput(op) => b.binary(op, v, y).unwrap(),
                Link::WithParam(op) => b.binary(op, v, p).unwrap(),
                Link::SelectGt(c) => {
                    let cond = b.compare(CompareOp::Gt, v, y).unwrap();
                    let c = b.constant(c).unwrap();
                    b.emit(Op::Select { cond, on_true: v, on_false: c }).unwrap()
                }
                Link::Threshold => {
                    let z = b.threshold(v, Surrogate::SuperSpike).unwrap();
                    b.emit(Op::Cast { arg: z, dtype: float }).unwrap()
                }
                Link::Lt(c) => {
                    let c = b.constant(c).unwrap();
                    let z = b.compare(CompareOp::Lt, v, c).unwrap();
                    b.emit(Op::Cast { arg: z, dtype: float }).unwrap()
                }
            };
        }
        b.output("out", v);
        let m = b.finish();

        let n = batch * N;
        let (xs, ys) = (&xs[..n], &ys[..n]);
        let w = weights(&[("p", t64(&[N], ps.clone()))]);
        let r = run(&m, &w, &[("x", t64(&[batch, N], xs.to_vec())), ("y", t64(&[batch, N], ys.to_vec()))]);

        let want: Vec<f64> = (0..n)
            .map(|i| {
                let mut v = xs[i];
                for l in &links {
                    v = match *l {
                        Link::Unary(op) => apply_unary(op, v),
                        Link::WithConst(op, c) => apply_binary(op, v, c),
                        Link::ConstWith(op, c) => apply_binary(op, c, v),
                        Link::WithInput(op) => apply_binary(op, v, ys[i]),
                        Link::WithParam(op) => apply_binary(op, v, ps[i % N]),
                        Link::SelectGt(c) => if v > ys[i] { v } else { c },
                        Link::Threshold => if v > 0.0 { 1.0 } else { 0.0 },
                        Link::Lt(c) => if v < c { 1.0 } else { 0.0 },
                    };
                }
                v
            })
            .collect();
        let got = &r.outputs["out"];
        prop_assert_eq!(&got.shape, &vec![batch, N]);
        for (i, (g, w)) in got.data.iter().zip(&want).enumerate() {
            prop_assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "element {}: {} vs {}", i, g, w);
        }
    }
}

#[test]
fn weights_are_unused_in_an_empty_module() {
    // A module with no parameters takes empty weights.
    let m = Builder::new("empty", 1, 1e-3, Dtype::F64).finish();
    let r = run(&m, &Weights::new(), &[]);
    assert!(r.outputs.is_empty() && r.final_state.is_empty());
}
