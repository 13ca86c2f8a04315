//! Compile a network for the CPU from a Rust program and run a batch.
//!
//! The Norse MNIST tutorial network, built with snnc's DSL, is lowered,
//! optimised for the CPU (time batching, event-driven spike products, fused
//! neuron kernels compiled by Cranelift) and run on a batch of 8 built-in
//! example images; the program prints each sample's class.
//!
//! Run it with `cargo run --release --example jit`.

use std::collections::BTreeMap;

use snnc::frontend::dsl::{Encoder, Layer, Net, Readout};
use snnc::runtime::{ElemType, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The network: constant-current encoder, recurrent LIF layer of 100
    // neurons (v_th 0.5), linear readout into leaky integrators.
    let net = Net::new("tutorial", 32)
        .input([1, 28, 28])
        .encoder(Encoder::constant_current())
        .layer(Layer::flatten().named("flatten"))
        .layer(Layer::lif_recurrent(100).named("lif1").v_th(0.5))
        .layer(Layer::linear(10).named("fc_out").no_bias())
        .layer(Layer::li().named("out"))
        .readout(Readout::MaxLogSoftmax)
        .build()?;

    // Compile once: lower, run the CPU pipeline, JIT the fused kernels.
    // The weights start at the network's default initialisation.
    let mut exe = snnc::compile(&net, snnc::Target::Cpu)?;

    // A batch of 8 images `[B, 1, 28, 28]`: rings of different radii.
    let batch = 8;
    let mut data = Vec::with_capacity(batch * 28 * 28);
    for b in 0..batch {
        for y in 0..28 {
            for x in 0..28 {
                let r = ((y as f64 - 13.5).powi(2) + (x as f64 - 13.5).powi(2)).sqrt();
                let radius = 4.0 + 1.2 * b as f64;
                data.push(if (r - radius).abs() < 1.5 { 2.0 } else { -0.4 });
            }
        }
    }
    let x = Tensor::new(vec![batch, 1, 28, 28], ElemType::F32, data)?;
    let inputs = BTreeMap::from([("x".to_string(), x)]);

    // Run it (shapes are checked before any generated code runs).
    let out = exe.forward(&inputs)?;
    let classes = out.classes("readout").expect("the network has a [B, 10] readout");
    for (b, class) in classes.iter().enumerate() {
        println!("sample {b}: class {class}");
    }
    Ok(())
}
