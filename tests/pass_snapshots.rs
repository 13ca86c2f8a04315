//! insta snapshots of the IR after every pass of the default interpreter
//! pipeline, for every fixture net in `tests/nets/`.
//!
//! Snapshot `pass_<net>__<index>_<pass>` holds the notes of the pass's
//! report (`// ...` lines) and the module as the pass left it, compacted
//! (renumbered in execution order, as the lowering snapshots are) so that
//! the text does not churn when a pass appends nodes.
//!
//! To accept a change: `INSTA_UPDATE=always cargo test --test pass_snapshots`,
//! then review the diff of `tests/snapshots/` like code.

mod common;

use snnc_passes::Pipeline;

fn pipeline() -> Pipeline {
    snnc_passes::default_pipeline(snnc_passes::PipelineKind::Interp)
}

/// The text of each step: `(pass, notes and IR)`.
fn after_each_pass(net: &snnc_frontend::Network) -> Vec<(&'static str, String)> {
    let mut module = common::lower(net);
    let mut steps = Vec::new();
    pipeline()
        .run(&mut module, &mut |after| {
            let mut compacted = after.module.clone();
            snnc_ir::compact(&mut compacted);
            let mut text: String = after.report.notes.iter().map(|n| format!("// {n}\n")).collect();
            text.push_str(&snnc_ir::print(&compacted));
            steps.push((after.pass, text));
        })
        .unwrap_or_else(|e| panic!("{}: {e}", net.name));
    steps
}

#[test]
fn ir_after_every_pass_of_every_fixture() {
    let paths = common::fixture_paths();
    assert!(paths.len() >= 10, "expected the fixture nets in tests/nets, found {}", paths.len());
    let names = pipeline().names();
    assert!(!names.is_empty(), "the default pipeline has no passes");
    for (path, net) in paths.iter().zip(common::fixture_nets()) {
        let stem = path.file_stem().expect("a file name").to_string_lossy().to_string();
        let steps = after_each_pass(&net);
        assert_eq!(
            steps.iter().map(|s| s.0).collect::<Vec<_>>(),
            names,
            "{stem}: the observer must see every pass, in order"
        );
        for (index, (pass, text)) in steps.into_iter().enumerate() {
            insta::assert_snapshot!(format!("pass_{stem}__{index:02}_{pass}"), text);
        }
    }
}
