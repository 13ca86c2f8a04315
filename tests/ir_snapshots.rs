//! insta snapshots of the lowered IR of every fixture net in `tests/nets/`.
//!
//! To accept a change: `INSTA_UPDATE=always cargo test --test ir_snapshots`,
//! then review the diff of `tests/snapshots/` like code.

use std::path::Path;

use snnc_frontend::LowerOptions;

fn lowered(path: &Path) -> String {
    let net = snnc_frontend::load_network(path).unwrap_or_else(|e| panic!("{e}"));
    let module = snnc_frontend::lower(&net, &path.display().to_string(), &LowerOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    snnc_ir::validate(&module).unwrap_or_else(|e| panic!("{e}"));
    snnc_ir::print(&module)
}

fn fixtures() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nets");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/nets exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    files.sort();
    files
}

#[test]
fn lowered_ir_of_every_fixture() {
    let files = fixtures();
    assert!(files.len() >= 10, "expected the fixture nets in tests/nets, found {}", files.len());
    for path in files {
        let stem = path.file_stem().expect("a file name").to_string_lossy().to_string();
        insta::assert_snapshot!(format!("lower_{stem}"), lowered(&path));
    }
}

#[test]
fn lowering_is_deterministic() {
    for path in fixtures() {
        assert_eq!(lowered(&path), lowered(&path), "{}", path.display());
    }
}

#[test]
fn examples_lower_and_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for name in ["tutorial.ron", "convnet.ron", "convnet_direct.ron", "convnet_small.ron", "lif.ron", "li.ron"] {
        let text = lowered(&dir.join(name));
        assert!(text.starts_with("module "), "{name}");
    }
}
