//! Weights as safetensors files: `snnc weights` prints what a network
//! expects; `snnc run --weights W.safetensors` runs as the same weights in
//! JSON do; files written by the Python `safetensors` library load
//! (`tests/fixtures/weights/`, made by `scripts/make_safetensors_fixtures.py`);
//! F16 is converted; `--rename` maps names; malformed files and wrong
//! dtypes or names are the user's errors (exit 2), never a panic.

use std::fs;
use std::path::Path;

use snnc_frontend::LowerOptions;
use snnc_runtime::{ElemType, Tensor, Weights};

mod support;
use support::{TempDir, snnc, stderr, stdout};

const NET: &str = "tests/nets/lif_recurrent.ron";
const F32_FIXTURE: &str = "tests/fixtures/weights/lif_recurrent_f32.safetensors";
const F16_FIXTURE: &str = "tests/fixtures/weights/lif_recurrent_f16.safetensors";

/// The initial weights of a network file, by the library API.
fn initial_weights(net: &str, seed: u64) -> Weights {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let network = snnc::driver::load(&root.join(net)).unwrap();
    let c = snnc::driver::compile(&network, net, &LowerOptions::default()).unwrap();
    snnc_runtime::init_weights(&c.module, seed)
}

/// A safetensors file written by hand: `(name, dtype, shape, raw data)`.
fn raw_file(tensors: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let entry =
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]});
        header.insert(name.to_string(), entry);
        data.extend_from_slice(bytes);
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend(data);
    file
}

fn f32_bytes(t: &Tensor) -> Vec<u8> {
    t.data.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect()
}

/// `snnc run NET ARGS --target interp`, which must succeed; its output
/// without the timing (the first line).
fn run_ok(net: &str, args: &[&str]) -> String {
    let mut all = vec!["run", net, "--target", "interp"];
    all.extend_from_slice(args);
    let o = snnc(&all);
    assert!(o.status.success(), "{all:?}: {}", stderr(&o));
    stdout(&o).lines().skip(1).collect::<Vec<_>>().join("\n")
}

fn run_err(net: &str, args: &[&str]) -> String {
    let mut all = vec!["run", net, "--target", "interp"];
    all.extend_from_slice(args);
    let o = snnc(&all);
    assert_eq!(o.status.code(), Some(2), "{all:?}: {}{}", stdout(&o), stderr(&o));
    stderr(&o)
}

#[test]
fn weights_prints_the_template() {
    let o = snnc(&["weights", "examples/tutorial.ron"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "name                    shape             dtype     kind",
            "lif1.input_weights      [100, 784]        float32   trainable",
            "lif1.recurrent_weights  [100, 100]        float32   trainable",
            "lif1.autapse_mask       [100, 100]        float32   constant (optional: keeps its initial value)",
            "fc_out.weight           [10, 100]         float32   trainable",
        ]
    );
    assert!(lines[5].starts_with("# layouts are PyTorch's (a Linear weight is [out, in])"), "{text}");
    let o = snnc(&["weights", NET, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "rec.input_weights": {"shape": [3, 4], "dtype": "float32", "trainable": true},
            "rec.recurrent_weights": {"shape": [3, 3], "dtype": "float32", "trainable": true},
            "rec.autapse_mask": {"shape": [3, 3], "dtype": "float32", "trainable": false},
        })
    );
    let o = snnc(&["weights", "examples/lif.ron"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "(the network has no weights)\n");
    let o = snnc(&["weights", "no/such.ron"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn safetensors_runs_as_the_same_weights_in_json() {
    let dir = TempDir::new("same");
    let w = initial_weights("examples/tutorial.ron", 5);
    fs::write(dir.path("w.safetensors"), snnc_runtime::write_weights_safetensors(&w).unwrap()).unwrap();
    fs::write(dir.path("w.json"), snnc_runtime::write_weights_json(&w)).unwrap();
    let st = run_ok("examples/tutorial.ron", &["--weights", &dir.path("w.safetensors"), "--batch", "2"]);
    let json = run_ok("examples/tutorial.ron", &["--weights", &dir.path("w.json"), "--batch", "2"]);
    let seeded = run_ok("examples/tutorial.ron", &["--seed", "5", "--batch", "2"]);
    assert_eq!(st, json);
    assert_eq!(st, seeded);
    // The extension decides, in any case.
    fs::copy(dir.path("w.safetensors"), dir.path("W.SafeTensors")).unwrap();
    assert_eq!(run_ok("examples/tutorial.ron", &["--weights", &dir.path("W.SafeTensors"), "--batch", "2"]), st);
}

#[test]
fn files_of_the_python_library_load() {
    // The fixtures hold multiples of 1/8 (exact in f16): the F16 file runs
    // as the F32 one, and as the same values written by snnc as JSON.
    let mut w = Weights::new();
    let input: Vec<f64> = (0..12).map(|i| (f64::from(i) - 5.0) / 8.0 + 0.5).collect();
    let recurrent: Vec<f64> = (0..9).map(|i| (f64::from(i % 5) - 2.0) / 4.0).collect();
    w.insert("rec.input_weights".into(), Tensor::new(vec![3, 4], ElemType::F32, input).unwrap());
    w.insert("rec.recurrent_weights".into(), Tensor::new(vec![3, 3], ElemType::F32, recurrent).unwrap());
    let dir = TempDir::new("python");
    fs::write(dir.path("w.json"), snnc_runtime::write_weights_json(&w)).unwrap();
    let f32_run = run_ok(NET, &["--weights", F32_FIXTURE]);
    assert_eq!(f32_run, run_ok(NET, &["--weights", F16_FIXTURE]));
    assert_eq!(f32_run, run_ok(NET, &["--weights", &dir.path("w.json")]));
    // And the bytes read are those values.
    let read = |p: &str| snnc_runtime::read_weights_safetensors(&fs::read(p).unwrap()).unwrap();
    assert_eq!(read(F32_FIXTURE), w);
    assert_eq!(read(F16_FIXTURE), w);
}

#[test]
fn f16_and_bf16_files_are_converted() {
    let dir = TempDir::new("half");
    let w = initial_weights(NET, 9);
    let half = |t: &Tensor, bf: bool| -> Vec<u8> {
        t.data
            .iter()
            .flat_map(|&x| {
                let bits = (x as f32).to_bits();
                // Rounded toward zero: bf16 is the top half of the f32.
                if bf { ((bits >> 16) as u16).to_le_bytes() } else { half_bits(x as f32).to_le_bytes() }
            })
            .collect()
    };
    for (dtype, bf) in [("BF16", true), ("F16", false)] {
        let file = raw_file(&[
            ("rec.input_weights", dtype, &[3, 4], half(&w["rec.input_weights"], bf)),
            ("rec.recurrent_weights", dtype, &[3, 3], half(&w["rec.recurrent_weights"], bf)),
        ]);
        let path = dir.path(&format!("{dtype}.safetensors"));
        fs::write(&path, file).unwrap();
        let o = snnc(&["run", NET, "--target", "interp", "--weights", &path]);
        assert!(o.status.success(), "{dtype}: {}", stderr(&o));
    }
}

/// The f16 bits of an f32 below 65504 in magnitude, rounded toward zero
/// (values below f16's smallest normal become zero).
fn half_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    assert!(exp < 31, "{x} is beyond f16");
    if exp < 1 {
        return sign;
    }
    sign | ((exp as u16) << 10) | ((bits >> 13) & 0x3ff) as u16
}

#[test]
fn rename_maps_names() {
    let dir = TempDir::new("rename");
    let w = initial_weights(NET, 2);
    let file = raw_file(&[
        ("0.input_weights", "F32", &[3, 4], f32_bytes(&w["rec.input_weights"])),
        ("0.recurrent", "F32", &[3, 3], f32_bytes(&w["rec.recurrent_weights"])),
    ]);
    let path = dir.path("renamed.safetensors");
    fs::write(&path, file).unwrap();
    let seeded = run_ok(NET, &["--seed", "2"]);
    let renamed =
        run_ok(NET, &["--weights", &path, "--rename", "0.=rec.", "--rename", "rec.recurrent=rec.recurrent_weights"]);
    assert_eq!(renamed, seeded);
    // Without the renames the file's names are unknown.
    let e = run_err(NET, &["--weights", &path]);
    assert!(e.contains("renamed.safetensors: missing weight `rec.input_weights`"), "{e}");
    let e = run_err(NET, &["--weights", &path, "--rename", "0.=rec."]);
    assert!(e.contains("missing weight `rec.recurrent_weights`"), "{e}");
    // An OLD that names nothing is exit 2, naming it.
    let e = run_err(NET, &["--weights", &path, "--rename", "fc.weight=rec.input_weights"]);
    assert!(e.contains("--rename fc.weight=rec.input_weights: no tensor is named `fc.weight`"), "{e}");
    // The same renames from a map file; a bad line is exit 2 naming it.
    fs::write(dir.path("map.txt"), "# PyTorch names\n0.=rec.\n\nrec.recurrent = rec.recurrent_weights\n").unwrap();
    assert_eq!(run_ok(NET, &["--weights", &path, "--rename-map", &dir.path("map.txt")]), seeded);
    fs::write(dir.path("bad.txt"), "0.=rec.\nrec.recurrent\n").unwrap();
    let e = run_err(NET, &["--weights", &path, "--rename-map", &dir.path("bad.txt")]);
    assert!(e.contains("bad.txt: line 2: `rec.recurrent` is not OLD=NEW"), "{e}");
    // A malformed --rename is clap's exit 2.
    let e = run_err(NET, &["--weights", &path, "--rename", "nothing"]);
    assert!(e.contains("is not OLD=NEW"), "{e}");
}

#[test]
fn wrong_files_are_user_errors() {
    let dir = TempDir::new("wrong");
    let w = initial_weights(NET, 2);
    // A dtype that is no float, naming the tensor.
    let ints: Vec<u8> = (0..12i32).flat_map(|i| i.to_le_bytes()).collect();
    let file = raw_file(&[
        ("rec.input_weights", "I32", &[3, 4], ints),
        ("rec.recurrent_weights", "F32", &[3, 3], f32_bytes(&w["rec.recurrent_weights"])),
    ]);
    fs::write(dir.path("int.safetensors"), &file).unwrap();
    let e = run_err(NET, &["--weights", &dir.path("int.safetensors")]);
    assert!(e.contains("int.safetensors: tensor `rec.input_weights` has dtype I32, and weights are floats"), "{e}");
    // A truncated file, an empty one, and JSON under the extension.
    fs::write(dir.path("cut.safetensors"), &file[..file.len() - 5]).unwrap();
    let e = run_err(NET, &["--weights", &dir.path("cut.safetensors")]);
    assert!(e.contains("cut.safetensors: not a valid safetensors file"), "{e}");
    fs::write(dir.path("empty.safetensors"), b"").unwrap();
    let e = run_err(NET, &["--weights", &dir.path("empty.safetensors")]);
    assert!(e.contains("empty.safetensors: not a valid safetensors file"), "{e}");
    fs::write(dir.path("w.safetensors"), snnc_runtime::write_weights_json(&w)).unwrap();
    let e = run_err(NET, &["--weights", &dir.path("w.safetensors")]);
    assert!(e.contains("not a valid safetensors file"), "{e}");
    // Reading is bounded: a file that never ends, or one beyond the limit.
    std::os::unix::fs::symlink("/dev/zero", dir.path("zero.safetensors")).unwrap();
    let e = run_err(NET, &["--weights", &dir.path("zero.safetensors")]);
    assert!(e.contains("zero.safetensors: cannot read the weights file: it holds more than"), "{e}");
    fs::write(dir.path("big.safetensors"), vec![0u8; 2 << 20]).unwrap();
    let e = run_err(NET, &["--weights", &dir.path("big.safetensors")]);
    assert!(e.contains("big.safetensors: cannot read the weights file: it holds 2097152 bytes"), "{e}");
    // A transposed matrix gets the PyTorch hint; an extra name is unknown.
    let t = &w["rec.input_weights"];
    let file = raw_file(&[
        ("rec.input_weights", "F32", &[4, 3], f32_bytes(t)),
        ("rec.recurrent_weights", "F32", &[3, 3], f32_bytes(&w["rec.recurrent_weights"])),
    ]);
    fs::write(dir.path("t.safetensors"), file).unwrap();
    let e = run_err(NET, &["--weights", &dir.path("t.safetensors")]);
    assert!(e.contains("has shape [4, 3] but the module expects [3, 4]; transposed?"), "{e}");
    let file = raw_file(&[
        ("rec.input_weights", "F32", &[3, 4], f32_bytes(t)),
        ("rec.recurrent_weights", "F32", &[3, 3], f32_bytes(&w["rec.recurrent_weights"])),
        ("rec.bias", "F32", &[1], 1f32.to_le_bytes().to_vec()),
    ]);
    fs::write(dir.path("extra.safetensors"), file).unwrap();
    let e = run_err(NET, &["--weights", &dir.path("extra.safetensors")]);
    assert!(e.contains("unknown weight(s) `rec.bias`"), "{e}");
    // A non-finite F16 value (inf) is refused as in JSON.
    let mut inf = vec![0u8; 24];
    inf[0..2].copy_from_slice(&0x7c00u16.to_le_bytes());
    let file = raw_file(&[
        ("rec.input_weights", "F16", &[3, 4], inf),
        ("rec.recurrent_weights", "F32", &[3, 3], f32_bytes(&w["rec.recurrent_weights"])),
    ]);
    fs::write(dir.path("inf.safetensors"), file).unwrap();
    let e = run_err(NET, &["--weights", &dir.path("inf.safetensors")]);
    assert!(e.contains("inf.safetensors: ") && e.contains("rec.input_weights"), "{e}");
}
