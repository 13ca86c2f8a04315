//! Sizes whose shape arithmetic overflows 32 or 64 bits are the user's
//! error, never a panic: `snnc check` exits 2 naming the layer and the
//! field, and the Rust API returns an error with exit code 2.

mod support;

use std::path::PathBuf;

use support::{snnc, stderr};

/// A Conv2d whose padded input (`7 + 2 * 4294967295`) does not fit in 32
/// bits: it overflowed in the IR's typing rule (a panic in debug builds).
const PADDING: &str = "(version: 1, name: \"pad\", steps: 2, input: [1, 5, 7], encoder: ConstantCurrent(), \
     layers: [Conv2d(name: \"conv1\", out_channels: 2, kernel_size: 3, padding: 4294967295), LIF()])";

/// A Conv2d whose `in_channels * kernel_size^2` is 2^32 (it overflowed in
/// lowering) and whose weight is too large to hold.
const FAN_IN: &str = "(version: 1, name: \"fan_in\", steps: 2, input: [1, 3, 3], encoder: ConstantCurrent(), \
     layers: [Conv2d(name: \"conv1\", out_channels: 2, kernel_size: 65536, padding: 32767), LIF()])";

/// A fresh folder for this test's files.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("snnc-shape-overflow-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the temporary folder is writable");
    dir
}

#[test]
fn an_overflowing_padding_is_a_user_error_naming_the_layer_and_field() {
    let dir = temp_dir("padding");
    let path = dir.join("pad.ron");
    std::fs::write(&path, PADDING).unwrap();
    let o = snnc(&["check", path.to_str().unwrap()]);
    let err = stderr(&o);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("layers[0] `conv1` (Conv2d): padding: 4294967295 makes the padded input 8589934597 wide"),
        "{err}"
    );
    assert!(err.contains("use a padding of at most 2147483644"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_kernel_whose_fan_in_overflows_is_a_user_error() {
    let dir = temp_dir("fan-in");
    let path = dir.join("fan_in.ron");
    std::fs::write(&path, FAN_IN).unwrap();
    let o = snnc(&["check", path.to_str().unwrap()]);
    let err = stderr(&o);
    std::fs::remove_dir_all(&dir).unwrap();
    // Lowering succeeds; the weight (2 * 65536^2 values) is too large.
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_rust_api_reports_an_overflowing_padding_as_a_user_error() {
    let net = snnc::frontend::parse_network(PADDING, "pad.ron").unwrap();
    let err = match snnc::compile(&net, snnc::Target::Interp) {
        Ok(_) => panic!("an overflowing padding compiled"),
        Err(e) => e,
    };
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains("`conv1` (Conv2d): padding: 4294967295"), "{err}");
}
