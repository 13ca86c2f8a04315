//! The Norse MNIST tutorial network written with snnc's Rust DSL: the same
//! network as `examples/tutorial.ron`. It is lowered to IR and run on the
//! reference interpreter for a batch of 4 built-in example images.
//!
//! Run it with `cargo run --release --example tutorial_dsl`.

use snnc::driver;
use snnc_frontend::LowerOptions;
use snnc_frontend::dsl::{Encoder, Layer, Net, Network, Readout};

/// The network, as in the tutorial: a constant-current encoder, a recurrent
/// LIF layer of 100 neurons with v_th 0.5, a linear readout without bias
/// into leaky integrators, and log_softmax of the max over time.
pub fn tutorial() -> Network {
    Net::new("tutorial", 32)
        .dt(0.001)
        .input([1, 28, 28])
        .encoder(Encoder::constant_current())
        .layer(Layer::flatten().named("flatten"))
        .layer(Layer::lif_recurrent(100).named("lif1").v_th(0.5))
        .layer(Layer::linear(10).named("fc_out").no_bias())
        .layer(Layer::li().named("out"))
        .readout(Readout::MaxLogSoftmax)
        .build()
        .expect("the tutorial network is valid")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = tutorial();
    let compiled = driver::compile(&net, "tutorial (DSL)", &LowerOptions::default())?;
    let weights = snnc_runtime::init_weights(&compiled.module, net.seed);
    let inputs = driver::example_inputs(&compiled.module, &net.example_input, 4)?;
    let res = driver::run(&compiled, driver::Target::Interp, &weights, &inputs, true)?;

    let readout = &res.outputs["readout"];
    let (batch, classes) = (readout.shape[0], readout.shape[1]);
    let hidden = &res.traces["lif1.z"]; // [T, B, 100]
    for (b, row) in readout.data.chunks(classes).enumerate() {
        let best = (0..classes).fold(0, |best, i| if row[i] > row[best] { i } else { best });
        let spikes: f64 = hidden.data.chunks(100).skip(b).step_by(batch).flatten().sum();
        println!("sample {b}: class {best} (log p = {:.4}), {spikes} hidden spikes", row[best]);
    }
    Ok(())
}
