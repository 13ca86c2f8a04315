//! Work that would exhaust the memory fails cleanly: exit 2 when the input
//! is absurd (naming the layer and the tensor), exit 3 when this machine is
//! too small (suggesting a `--batch`), never an abort. Every run is under
//! `prlimit --as=4GiB`, so a regression aborts instead of swapping, and the
//! exit-3 cases set `SNNC_MEMORY_LIMIT` so that they need no memory.

mod support;

use std::io::Write;
use std::process::{Command, Output};

use support::{TempDir, stderr};

/// Runs `snnc ARGS` under a 4 GiB address-space limit, with
/// `SNNC_MEMORY_LIMIT` set to `limit` if given.
fn snnc_limited(limit: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new("prlimit");
    cmd.arg("--as=4294967296").arg(env!("CARGO_BIN_EXE_snnc")).args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd.env_remove("SNNC_MEMORY_LIMIT");
    if let Some(l) = limit {
        cmd.env("SNNC_MEMORY_LIMIT", l);
    }
    cmd.output().expect("prlimit runs")
}

/// Asserts the exit code and that stderr holds every one of `parts`.
fn assert_fails(o: &Output, code: i32, parts: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    for p in parts {
        assert!(err.contains(p), "`{p}` missing from: {err}");
    }
    assert!(!err.contains("memory allocation of"), "{err}");
}

#[test]
fn a_huge_example_input_is_refused_with_a_batch_that_fits() {
    let dir = TempDir::new("input");
    let net = dir
        .write("big.ron", br#"(version: 1, name: "big", steps: 100, input: [10000000], layers: [LIF(name: "lif1")])"#);
    // 14.9 GiB of f64 input at batch 2.
    let o = snnc_limited(Some("12G"), &["run", &net, "--batch", "2"]);
    assert_fails(&o, 3, &["input `x`", "14.9 GiB", "12.0 GiB available", "SNNC_MEMORY_LIMIT=12G", "use --batch 1"]);
}

#[test]
fn huge_padding_is_the_users_error() {
    let dir = TempDir::new("padding");
    let net = dir.write(
        "pad.ron",
        br#"(version: 1, name: "pad", steps: 10, input: [1, 6, 6], encoder: Direct(),
            layers: [Conv2d(name: "conv1", out_channels: 4, kernel_size: 3, padding: 20000), LIF(name: "lif1")])"#,
    );
    let o = snnc_limited(None, &["run", &net]);
    assert_fails(&o, 2, &["conv1"]);
}

#[test]
fn a_million_samples_do_not_fit_and_a_smaller_batch_is_suggested() {
    for target in ["cpu", "interp"] {
        let o = snnc_limited(Some("2G"), &["run", "examples/lif.ron", "--batch", "1000000", "--target", target]);
        assert_fails(&o, 3, &["2.0 GiB available", "use --batch"]);
    }
    // The run itself, beyond the example input, on both backends.
    for target in ["cpu", "interp"] {
        let o = snnc_limited(Some("1G"), &["run", "examples/lif.ron", "--batch", "100000", "--target", target]);
        assert_fails(&o, 3, &[&format!("running `lif` on {target} with batch 100000"), "layer `lif`", "use --batch"]);
    }
    let o = snnc_limited(Some("4G"), &["run", "examples/lif.ron", "--batch", "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_convolution_of_a_large_image_names_the_tensor() {
    let dir = TempDir::new("image");
    let net = dir.write(
        "image.ron",
        br#"(version: 1, name: "image", steps: 8, input: [3, 4000, 4000], encoder: Direct(),
            layers: [Conv2d(name: "conv1", out_channels: 32, kernel_size: 5), LIF(name: "lif1")])"#,
    );
    // The host targets hold tensors of any size the memory holds: this
    // machine is too small (the run is limited to 4 GiB).
    for target in ["cpu", "interp"] {
        let o = snnc_limited(None, &["run", &net, "--target", target]);
        assert_fails(&o, 3, &["GiB of memory, but this machine has", "of layer `lif1`", "make the network smaller"]);
    }
    // CUDA indexes with 32 bits: more than 2^31 values in one tensor is
    // refused as the input's fault, before any GPU is needed.
    let o = snnc_limited(None, &["compile", &net, "--target", "cuda"]);
    assert_fails(&o, 2, &["layer `lif1`"]);
}

/// IDX bytes: the header of `dims`, then `data`.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// A Fashion-MNIST folder of `n` training and 2 test images.
fn dataset(dir: &TempDir, n: u32) {
    let pixels: Vec<u8> = (0..n * 784).map(|i| i as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    dir.write("train-images-idx3-ubyte", idx(&[n, 28, 28], &pixels));
    dir.write("train-labels-idx1-ubyte", idx(&[n], &labels));
    dir.write("t10k-images-idx3-ubyte", idx(&[2, 28, 28], &pixels[..2 * 784]));
    dir.write("t10k-labels-idx1-ubyte", idx(&[2], &labels[..2]));
}

#[test]
fn training_a_thousand_steps_is_refused_before_the_first_step() {
    let dir = TempDir::new("train");
    dataset(&dir, 256);
    let text = std::fs::read_to_string("examples/convnet_direct.ron").unwrap().replace("steps: 8,", "steps: 1000,");
    let net = dir.write("convnet_1000.ron", text.as_bytes());
    let out = dir.0.join("out").display().to_string();
    let data = dir.0.display().to_string();
    let o = snnc_limited(None, &["train", &net, "--data-dir", &data, "--out", &out, "--quiet"]);
    assert_fails(
        &o,
        3,
        &["training `convnet_direct` on cpu with batch 256 needs 132.9 GiB", "of layer `lif1`", "use --batch"],
    );
    // With a small machine, a batch that fits it.
    let o = snnc_limited(Some("1G"), &["train", &net, "--data-dir", &data, "--out", &out, "--batch", "8", "--quiet"]);
    assert_fails(&o, 3, &["1.0 GiB available", "use --batch"]);
}

#[test]
fn a_gzip_bomb_in_the_data_set_is_refused() {
    let dir = TempDir::new("bomb");
    dataset(&dir, 4);
    // The header announces 4 labels; 32 MiB of zeros follow.
    let mut bomb = idx(&[4], &[0, 1, 2, 3]);
    bomb.resize(bomb.len() + (32 << 20), 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&bomb).unwrap();
    dir.write("train-labels-idx1-ubyte.gz", gz.finish().unwrap());
    let data = dir.0.display().to_string();
    let out = dir.0.join("out").display().to_string();
    let o = snnc_limited(None, &["train", "examples/convnet_small.ron", "--data-dir", &data, "--out", &out]);
    assert_fails(&o, 2, &["train-labels-idx1-ubyte.gz", "need 4 bytes of data, the file holds more"]);
}

#[test]
fn files_that_never_end_are_refused() {
    let o = snnc_limited(None, &["run", "/dev/zero"]);
    assert_fails(&o, 2, &["/dev/zero", "more than 16 MiB"]);
    let o = snnc_limited(None, &["check", "/dev/urandom"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    for flag in ["--input", "--weights", "--profile"] {
        let o = snnc_limited(None, &["run", "examples/lif.ron", flag, "/dev/zero"]);
        assert_fails(&o, 2, &["/dev/zero", "NUL byte"]);
    }
}

#[test]
fn a_bad_memory_limit_is_the_users_error() {
    let o = snnc_limited(Some("lots"), &["run", "examples/lif.ron"]);
    assert_fails(&o, 2, &["SNNC_MEMORY_LIMIT=lots", "not a byte count"]);
}
