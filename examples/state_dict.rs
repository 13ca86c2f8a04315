//! Run a network trained in Norse from a Rust program: the seed MNIST
//! tutorial's network (32 hidden neurons), its PyTorch `state_dict()` saved
//! with `safetensors.torch.save_file`, on 16 MNIST digits from a `.npy`
//! file, printing each digit's class and writing every output to an `.npz`.
//!
//! The files are the fixture of `tests/state_dict.rs`
//! (`tests/fixtures/state_dict/`, made by
//! `scripts/norse/state_dict_fixture.py`). Run it with
//! `cargo run --release --example state_dict`.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new("tests/fixtures/state_dict");
    let net = snnc::frontend::load_network(&dir.join("tutorial_small.ron"))?;
    let mut exe = snnc::compile(&net, snnc::Target::Cpu)?;

    // Norse names its tensors after the Python modules (`snn.l1.input_weights`);
    // rename them to the network's layers (`lif1.input_weights`).
    let renames = snnc::driver::read_rename_map(&dir.join("rename.txt"))?;
    exe.load_weights(&dir.join("model.safetensors"), &renames)?;

    // `images.npy`: float32 [16, 1, 28, 28], normalised as the tutorial does.
    let inputs = exe.read_inputs(&dir.join("images.npy"))?;
    let out = exe.forward(&inputs)?;
    let classes = out.classes("readout").expect("the network has a [B, 10] readout");
    println!("classes: {classes:?}");
    let file = std::env::temp_dir().join("snnc_state_dict_outputs.npz");
    snnc::api::save_npz(&file, &out.tensors)?;
    println!("wrote {} (readout [16, 10], output [32, 16, 10])", file.display());
    Ok(())
}
