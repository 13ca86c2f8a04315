//! `channel_sum_per_step` / `channel_mean_per_step` and the per-step
//! `channel_broadcast` of a `[T, C]` (BatchNorm's statistics once
//! `time-batch` lifts them): exact numbers, the bits of the same sums
//! taken step by step in a step loop, and the typing rules.

mod common;

use common::*;
use snnc_ir::{Builder, Dim, Dtype, Op, Shape, Type};
use snnc_runtime::Weights;

const F32: Dtype = Dtype::F32;

#[test]
fn per_step_sums_and_broadcasts_have_exact_numbers() {
    // x: [T=2, B=2, C=2, 2]; step 0 holds 1..8, step 1 holds 10, 20, ...
    let mut b = Builder::new("chan", 2, 1e-3, Dtype::F64);
    let x = b.input("x", Type::seq(Dtype::F64, Shape::batched(&[2, 2])));
    b.begin_seq();
    let x = b.emit(Op::Input(x)).unwrap();
    let sum = b.channel_sum_per_step(x, false).unwrap();
    let mean = b.channel_sum_per_step(x, true).unwrap();
    let spread = b.channel_broadcast(mean, Shape::batched(&[2, 2])).unwrap();
    let mshape = Shape::fixed(&[2, 3]);
    let spread_mean = b.emit(Op::ChannelBroadcast { arg: sum, shape: mshape, mean: true }).unwrap();
    let whole = b.channel_sum(x, false).unwrap();
    assert_eq!(b.module().nodes[sum].ty, Type::seq(Dtype::F64, Shape::fixed(&[2])));
    assert_eq!(b.module().nodes[spread].ty, Type::seq(Dtype::F64, Shape::batched(&[2, 2])));
    assert_eq!(b.module().nodes[spread_mean].ty, Type::seq(Dtype::F64, Shape::fixed(&[2, 3])));
    assert_eq!(b.module().nodes[whole].ty, Type::new(Dtype::F64, Shape::fixed(&[2])));
    for (name, v) in [("sum", sum), ("mean", mean), ("spread", spread), ("spread_mean", spread_mean), ("whole", whole)]
    {
        b.output(name, v);
    }
    let m = b.finish();
    let data: Vec<f64> = (1..=8).map(f64::from).chain((1..=8).map(|v| f64::from(v * 10))).collect();
    let r = run(&m, &Weights::new(), &[("x", t64(&[2, 2, 2, 2], data))]);
    // Step 0: channel 0 is 1, 2 (sample 0) and 5, 6 (sample 1); channel 1
    // is 3, 4, 7, 8.
    assert_eq!(r.outputs["sum"].shape, vec![2, 2]);
    assert_bits(&r.outputs["sum"].data, &[14.0, 22.0, 140.0, 220.0]);
    assert_bits(&r.outputs["mean"].data, &[3.5, 5.5, 35.0, 55.0]);
    assert_eq!(r.outputs["spread"].shape, vec![2, 2, 2, 2]);
    #[rustfmt::skip]
    assert_bits(&r.outputs["spread"].data, &[
        3.5, 3.5, 5.5, 5.5,  3.5, 3.5, 5.5, 5.5,
        35.0, 35.0, 55.0, 55.0,  35.0, 35.0, 55.0, 55.0,
    ]);
    // `_mean` divides by the copies of one step (3), not 2·3.
    assert_eq!(r.outputs["spread_mean"].shape, vec![2, 2, 3]);
    let per: Vec<f64> = [14.0, 22.0, 140.0, 220.0].iter().flat_map(|&v: &f64| [v / 3.0; 3]).collect();
    assert_bits(&r.outputs["spread_mean"].data, &per);
    // Without `per_step`, a sequence is summed over time too.
    assert_bits(&r.outputs["whole"].data, &[154.0, 242.0]);
}

#[test]
fn per_step_sums_give_the_bits_of_a_step_loop() {
    // Values whose sums round differently in another order.
    let (steps, batch) = (3usize, 4usize);
    let mut b = Builder::new("chan", steps as u32, 1e-3, F32);
    let xi = b.input("x", Type::seq(F32, Shape::batched(&[3, 2, 5])));
    b.begin_seq();
    let xs = b.emit(Op::Input(xi)).unwrap();
    let seq_mean = b.channel_sum_per_step(xs, true).unwrap();
    let seq_spread = b.channel_broadcast(seq_mean, Shape::batched(&[3, 2, 5])).unwrap();
    let seq_d = b.sub(xs, seq_spread).unwrap();
    b.output("seq_mean", seq_mean);
    b.output("seq_d", seq_d);
    b.begin_step();
    let x = b.emit(Op::Step(xs)).unwrap();
    let mean = b.channel_sum(x, true).unwrap();
    let spread = b.channel_broadcast(mean, Shape::batched(&[3, 2, 5])).unwrap();
    let d = b.sub(x, spread).unwrap();
    b.begin_seq();
    for (name, v) in [("loop_mean", mean), ("loop_d", d)] {
        let c = b.emit(Op::Collect(v)).unwrap();
        b.output(name, c);
    }
    let m = b.finish();
    let n = steps * batch * 30;
    let data: Vec<f32> =
        (0..n).map(|j| ((j * 7919) % 1000) as f32 * if j % 3 == 0 { 1e-4 } else { 1.37 } - 300.0).collect();
    let r = run(&m, &Weights::new(), &[("x", t32(&[steps, batch, 3, 2, 5], &data))]);
    assert_eq!(r.outputs["seq_mean"].shape, vec![steps, 3]);
    assert_bits(&r.outputs["seq_mean"].data, &r.outputs["loop_mean"].data);
    assert_bits(&r.outputs["seq_d"].data, &r.outputs["loop_d"].data);
    // Not trivial: the f32 mean of step 0, channel 0, is the f32 sum in
    // order divided once.
    let mut s = 0.0f32;
    for bi in 0..batch {
        for i in 0..10 {
            s += data[bi * 30 + i];
        }
    }
    assert_eq!(r.outputs["seq_mean"].data[0], f64::from(s / 40.0));
}

#[test]
fn per_step_channel_ops_are_typed() {
    let mut b = Builder::new("chan", 2, 1e-3, F32);
    let zi = b.input("z", Type::seq(F32, Shape(Vec::new())));
    let bad = Shape(vec![Dim::Batch, Dim::Fixed(4)]);
    let si = b.input("s", Type::seq(F32, Shape::batched(&[3])));
    b.begin_seq();
    // No channel dim.
    let z = b.emit(Op::Input(zi)).unwrap();
    let err = b.channel_sum_per_step(z, true).unwrap_err().to_string();
    assert!(err.contains("`channel_mean_per_step` of") && err.contains("needs a shape [B, C, ...]"), "{err}");
    let s = b.emit(Op::Input(si)).unwrap();
    let seq_c = b.channel_sum_per_step(s, false).unwrap();
    let err = b.channel_broadcast(seq_c, bad).unwrap_err().to_string();
    assert!(err.contains("the channel dim of the shape must be the operand's"), "{err}");
    // A `[T, B, C]` is no statistic.
    let err = b.channel_broadcast(s, Shape::batched(&[3])).unwrap_err().to_string();
    assert!(err.contains("needs a float [C] (fixed, or one per step)"), "{err}");
}

#[test]
fn a_per_step_sum_of_a_value_without_time_repeats_its_sum() {
    // The statistic of a loop-invariant value at every step, as a step
    // loop computes it (what `time-batch` makes of a hoisted one).
    let steps = 3usize;
    let mut b = Builder::new("chan", steps as u32, 1e-3, F32);
    let xi = b.input("x", Type::new(F32, Shape::batched(&[2, 3])));
    let x = b.emit(Op::Input(xi)).unwrap();
    let rep = b.channel_sum_per_step(x, true).unwrap();
    assert_eq!(b.module().nodes[rep].ty, Type::seq(F32, Shape::fixed(&[2])));
    b.output("rep", rep);
    b.begin_step();
    let m = b.channel_sum(x, true).unwrap();
    b.begin_seq();
    let c = b.emit(Op::Collect(m)).unwrap();
    b.output("loop", c);
    let m = b.finish();
    let data = [1.0f32, 2.0, 4.0, 10.0, 20.0, 40.0, 0.5, 0.25, 0.125, 3.0, 5.0, 7.0];
    let r = run(&m, &Weights::new(), &[("x", t32(&[2, 2, 3], &data))]);
    assert_eq!(r.outputs["rep"].shape, vec![steps, 2]);
    // Channel 0: 1 + 2 + 4 + 0.5 + 0.25 + 0.125; channel 1: 10 + 20 + 40 + 3 + 5 + 7.
    let one = [7.875f32 / 6.0, 85.0f32 / 6.0];
    let want: Vec<f64> = (0..steps).flat_map(|_| one.map(f64::from)).collect();
    assert_bits(&r.outputs["rep"].data, &want);
    assert_bits(&r.outputs["rep"].data, &r.outputs["loop"].data);
}
