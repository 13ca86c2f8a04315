//! `snnc compile --target cuda` writes PTX and its manifest without a GPU;
//! running on `--target cuda` without a usable GPU is an environment error
//! (exit 3) with a one-line reason.

use std::path::Path;
use std::process::Output;

mod support;
use support::snnc;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn compile_for_cuda_prints_ptx_for_each_arch() {
    for (arch, target) in [("sm80", ".target sm_80"), ("sm90", ".target sm_90")] {
        let o = snnc(&["compile", "examples/lif.ron", "--target", "cuda", "--arch", arch]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(t.contains(target) && t.contains(".entry"), "{t}");
    }
}

#[test]
fn compile_for_cuda_writes_the_module_and_manifest_with_the_backward_pass() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda_cli");
    let _ = std::fs::remove_dir_all(&dir);
    let o = snnc(&["compile", "examples/tutorial.ron", "--target", "cuda", "--backward", "-o", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ptx = std::fs::read_to_string(dir.join("tutorial.ptx")).expect("the PTX file");
    assert!(ptx.contains(".version") && ptx.contains(".entry"), "{ptx}");
    let manifest = std::fs::read_to_string(dir.join("tutorial.manifest.json")).expect("the manifest");
    let v: serde_json::Value = serde_json::from_str(&manifest).expect("the manifest is JSON");
    assert!(v.is_object(), "{manifest}");
    assert!(manifest.contains("grad.lif1.input_weights"), "the manifest names the gradient outputs");
}

#[test]
fn mismatched_emit_and_target_are_user_errors() {
    let o = snnc(&["compile", "examples/lif.ron", "--target", "cpu", "--emit", "ptx"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = snnc(&["compile", "examples/lif.ron", "--target", "cuda", "--emit", "clif"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn running_on_cuda_without_a_gpu_is_an_environment_error() {
    if snnc_cuda::probe().problem().is_none() {
        // Straight to stderr: `eprintln!` of a passing test is captured.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr().lock(),
            b"tests/cuda_cli.rs: running_on_cuda_without_a_gpu_is_an_environment_error SKIPPED: this machine has a GPU\n",
        );
        return;
    }
    for args in [
        &["run", "examples/lif.ron", "--target", "cuda"][..],
        &["train", "examples/tutorial.ron", "--target", "cuda", "--limit", "10"][..],
    ] {
        let o = snnc(args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(err.contains("--target cuda") && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
}
