//! `time-batch` on BatchNorm in training lowering (docs/batchnorm.md): the
//! per-step statistics of a batched value leave the step loop as
//! `channel_mean_per_step` over the whole sequence, with the
//! normalisation; the statistics of a recurrent layer's output stay per
//! step; tdBN's first loop goes too. Every value keeps its bits.

mod common;

use common::{apply, assert_same, loop_states, run_batch};
use snnc_frontend::LowerOptions;
use snnc_ir::{Dtype, Module, Op, RegionKind};

fn lower(src: &str, float: Dtype) -> Module {
    let net = snnc_frontend::parse_network(src, "bn.ron").unwrap_or_else(|e| panic!("{e}"));
    let opts = LowerOptions { float, training: true, ..LowerOptions::default() };
    snnc_frontend::lower(&net, "bn.ron", &opts).unwrap_or_else(|e| panic!("{e}"))
}

/// The channel sums of each region: `(region kind, per_step)`.
fn channel_sums(m: &Module) -> Vec<(RegionKind, bool)> {
    let mut res = Vec::new();
    for region in &m.body {
        for &h in &region.nodes {
            if let Op::ChannelSum { per_step, .. } = m.nodes[h].op {
                res.push((region.kind.clone(), per_step));
            }
        }
    }
    res
}

/// Lowers `src` in training, runs time-batch, checks the bits (batch 3,
/// every named value recorded) and returns the result.
fn batched(src: &str, float: Dtype) -> Module {
    let before = lower(src, float);
    let reference = run_batch(&before, 3);
    let mut m = before.clone();
    apply(&mut m, "time-batch");
    assert_same(&format!("{float} after time-batch"), &reference, &run_batch(&m, 3));
    m
}

const FIXTURE: &str = include_str!("../../tests/nets/batchnorm.ron");

#[test]
fn per_step_statistics_leave_the_loop_with_the_normalisation() {
    for float in [Dtype::F32, Dtype::F64] {
        let m = batched(FIXTURE, float);
        let text = snnc_ir::print(&m);
        // Both layers' mean and variance, per step over the sequences.
        assert_eq!(channel_sums(&m), vec![(RegionKind::Seq, true); 4], "{text}");
        // The loops hold the neurons only.
        assert_eq!(loop_states(&m), [["lif0.v", "lif0.i"], ["lif1.v", "lif1.i"], ["li.v", "li.i"]], "{text}");
        for name in ["bn2.out", "bn1.out", "bn2.batch_mean", "bn1.batch_var"] {
            let h = m.node_by_name(name).unwrap_or_else(|| panic!("no `{name}`"));
            assert!(m.nodes[h].ty.seq, "{name}: {}", m.nodes[h].ty);
        }
        let mean = m.node_by_name("bn2.batch_mean").unwrap();
        assert_eq!(m.nodes[mean].ty.to_string(), format!("{float}[T,3]"));
        assert!(text.contains("channel_mean_per_step"), "{text}");
    }
}

#[test]
fn statistics_of_a_recurrent_layer_stay_per_step() {
    let src = "(version: 1, name: \"bnrec\", steps: 4, input: [3], layers: [\
        LIFRecurrent(name: \"rec\", hidden: 4, p: (v_th: 0.5)), \
        BatchNorm1d(name: \"bn\"), LIF(name: \"lif\")])";
    let m = batched(src, Dtype::F32);
    let sums = channel_sums(&m);
    assert_eq!(sums, vec![(RegionKind::Step, false); 2], "{}", snnc_ir::print(&m));
}

#[test]
fn time_batched_statistics_leave_the_first_loop() {
    let src = FIXTURE.replace("BatchNorm2d(name: \"bn2\")", "BatchNorm2d(name: \"bn2\", variant: time_batched)");
    assert_ne!(src, FIXTURE);
    let m = batched(&src, Dtype::F64);
    // tdBN's step moments of `h` and `h·h`, per step, then bn1's two.
    assert_eq!(channel_sums(&m), vec![(RegionKind::Seq, true); 4], "{}", snnc_ir::print(&m));
}

#[test]
fn statistics_of_a_loop_invariant_value_are_hoisted_with_it() {
    // A `Direct` encoder: the convolution of the static image is computed
    // once, and so is its BatchNorm; the collected statistics become the
    // per-step sums of the hoisted value (the same at every step).
    let src = "(version: 1, name: \"stem\", steps: 3, input: [1, 4, 4], encoder: Direct(), layers: [\
        Conv2d(name: \"conv\", out_channels: 2, kernel_size: 3, padding: 1, bias: false), \
        BatchNorm2d(name: \"bn\"), LIF(name: \"lif\")])";
    for float in [Dtype::F32, Dtype::F64] {
        let m = batched(src, float);
        let text = snnc_ir::print(&m);
        // The mean and variance once in the preamble, then each per step
        // for the `bn.batch_mean` / `bn.batch_var` outputs.
        let mut sums = channel_sums(&m);
        sums.sort_by_key(|(_, per_step)| *per_step);
        assert_eq!(
            sums,
            [(RegionKind::Seq, false), (RegionKind::Seq, false), (RegionKind::Seq, true), (RegionKind::Seq, true)],
            "{text}"
        );
        let out = m.node_by_name("bn.out").unwrap();
        assert_eq!(m.nodes[out].ty.to_string(), format!("{float}[B,2,4,4]"), "{text}");
        assert_eq!(loop_states(&m), [["lif.v", "lif.i"]], "{text}");
        let stat = m.outputs.iter().find(|o| o.name == "bn.batch_mean").unwrap().value;
        assert_eq!(m.nodes[stat].ty.to_string(), format!("{float}[T,2]"));
    }
}
