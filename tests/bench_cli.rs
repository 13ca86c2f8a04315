//! `snnc bench`: a smoke test of the command and its JSON lines (the
//! timings are not checked), and its exit code without the data set.

use std::path::{Path, PathBuf};

mod support;
use support::snnc;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The Fashion-MNIST folder: the installed data set, or else a folder
/// holding a few synthetic 28×28 test images in the IDX format (the reader
/// takes uncompressed files whatever their name).
fn data_dir() -> PathBuf {
    let installed = Path::new(snnc::bench::DEFAULT_DATA_DIR);
    if installed.join(snnc::bench::TEST_IMAGES).is_file() {
        return installed.to_path_buf();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench_cli").join("fashion-mnist");
    std::fs::create_dir_all(&dir).expect("can create a scratch folder");
    let n = 4u32;
    let mut bytes = vec![0, 0, 0x08, 3];
    for d in [n, 28, 28] {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend((0..n * 28 * 28).map(|i| (i * 37 % 256) as u8));
    std::fs::write(dir.join(snnc::bench::TEST_IMAGES), bytes).expect("can write the images");
    dir
}

#[test]
fn quick_json_prints_one_line_per_config() {
    let data = data_dir();
    let data = data.to_str().expect("a UTF-8 path");
    let o = snnc(&["bench", "tutorial", "lif-layer-512", "--target", "interp", "--json", "--quick", "--data", data]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let expected = [("tutorial", "fwd"), ("tutorial", "fwdbwd"), ("lif-layer-512", "fwd"), ("lif-layer-512", "fwdbwd")];
    for (line, (name, mode)) in lines.iter().zip(expected) {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is a JSON object");
        assert_eq!(v["name"], name, "{line}");
        assert_eq!(v["target"], "interp", "{line}");
        assert_eq!(v["mode"], mode, "{line}");
        for field in ["median_s", "neuron_updates_per_s", "gflops"] {
            let x = v[field].as_f64().unwrap_or_else(|| panic!("`{field}` is a number: {line}"));
            assert!(x > 0.0 && x.is_finite(), "`{field}` = {x}: {line}");
        }
    }
    let tutorial: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let density = tutorial["input_density"].as_f64().expect("the tutorial reports its input density");
    assert!((0.0..=1.0).contains(&density), "{density}");
}

#[test]
fn quick_table_names_the_columns() {
    let data = data_dir();
    let o = snnc(&["bench", "tutorial", "--target", "interp", "--quick", "--data", data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for word in ["median ms", "neuron-upd/s", "GFLOP/s", "%peak", "%bw", "compile ms", "tutorial"] {
        assert!(out.contains(word), "no `{word}` in\n{out}");
    }
}

#[test]
fn missing_data_set_exits_3_with_the_install_command() {
    let o = snnc(&["bench", "tutorial", "--target", "interp", "--quick", "--data", "/nonexistent/fashion-mnist"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("apt-get install dataset-fashion-mnist"), "{}", text(&o.stderr));
}

#[test]
fn unknown_benchmark_exits_2() {
    let o = snnc(&["bench", "resnet", "--target", "interp", "--quick"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("tutorial, lif-layer-512, lif-layer-4096, convnet"), "{}", text(&o.stderr));
}
