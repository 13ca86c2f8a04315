//! The STDP configs of `snnc bench` (issue 18): a plastic layer 784 → 400
//! on Poisson-encoded images, forward with plasticity, as Diehl & Cook's
//! input layer (at most 20 Hz per pixel).
//!
//! The network (the same on Norse's side, `scripts/norse/norse_cpu.py`'s
//! `bench_S`): `PoissonEncoder(350, f_max=20)` on the first `batch`
//! Fashion-MNIST test images as pixels / 255, a `Linear(784, 400,
//! bias=False)` whose weight `stdp_step_linear` (Norse's default
//! `STDPParameters`: additive, η± = 1e-3, τ± = 50 ms, bounds [0, 1]) updates
//! after every step, and a `LIFCell` with `v_th = 0.2` (with PyTorch's
//! initial weights, clamped at 0 by the first update, the default `v_th =
//! 1` never fires; at 0.2 the neurons fire at about 24 Hz on the first 16
//! test images, 0.2 Hz on the first, dim one, alone).

use std::path::Path;

use snnc_frontend::dsl::{Encoder, Network};
use snnc_runtime::{ElemType, Tensor};

use super::{Config, InputKind, TEST_IMAGES};
use crate::driver::Error;

/// The benchmark network, in RON.
pub const NETWORK: &str = r#"(version: 1, name: "stdp-784x400", steps: 350, input: [784],
 encoder: Poisson(f_max: 20.0),
 layers: [
    Linear(name: "fc", out: 400, bias: false, plasticity: STDP()),
    LIF(name: "post", p: (v_th: 0.2)),
 ])"#;

/// Norse's best forward medians (batch 1; batch 16) in the side-by-side
/// runs recorded in BENCHMARKS.md ("STDP 784 → 400"), in seconds.
const NORSE_B1_S: f64 = 0.2281;
const NORSE_B16_S: f64 = 0.2650;

/// The network of the configs.
pub fn network() -> Network {
    snnc_frontend::parse_network(NETWORK, "bench `stdp-784x400`").expect("the STDP bench network is valid")
}

/// The config `stdp-784x400-b{batch}` (batch 1 or 16).
pub fn config(batch: usize) -> Config {
    Config {
        name: if batch == 1 { "stdp-784x400-b1" } else { "stdp-784x400-b16" },
        network: network(),
        batch,
        neurons: 400,
        // The product and STDP's two outer products, each 784·400 MACs per
        // step and sample.
        synapses_per_step: 3 * 784 * 400,
        input: InputKind::FashionMnistUnit,
        norse_best_s: if batch == 1 { NORSE_B1_S } else { NORSE_B16_S },
        norse_key: if batch == 1 { "S_norse_STDP_784x400_b1_forward" } else { "S_norse_STDP_784x400_b16_forward" },
        norse_train_s: f64::NAN,
        norse_train_key: "",
        trainable: false,
    }
}

/// The first `batch` Fashion-MNIST test images as `[batch, 784]`, pixels
/// / 255 (a rate encoder's intensities in [0, 1]).
pub fn unit_images(dir: &Path, batch: usize) -> Result<Tensor, Error> {
    let path = dir.join(TEST_IMAGES);
    // The same checks and messages as the normalised images'.
    super::fashion_mnist_batch(dir, batch)?;
    let (_, _, _, pixels) = snnc_runtime::idx::read_idx_images(&path).map_err(|e| Error::Environment(e.to_string()))?;
    let data = pixels[..batch * 784].iter().map(|&p| f64::from(f32::from(p) / 255.0)).collect();
    Ok(Tensor::new(vec![batch, 784], ElemType::F32, data).expect("the shape fits the data"))
}

/// The expected fraction of ones among a Poisson encoder's spikes on
/// `images`: the mean of `min(1, dt · f_max · x)`; `None` without such an
/// encoder.
pub fn poisson_density(net: &Network, images: &Tensor) -> Option<f64> {
    let Some(Encoder::Poisson { f_max, .. }) = &net.encoder else { return None };
    let p = net.dt * f_max;
    let n = images.data.len();
    (n > 0).then(|| images.data.iter().map(|&x| (p * x).clamp(0.0, 1.0)).sum::<f64>() / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver;
    use snnc_frontend::LowerOptions;

    #[test]
    fn the_stdp_configs_are_plastic_forward_only() {
        for (name, batch) in [("stdp-784x400-b1", 1), ("stdp-784x400-b16", 16)] {
            let c = super::super::config(name).unwrap();
            assert_eq!((c.batch, c.trainable, c.network.steps), (batch, false, 350));
            let lowered = driver::compile(&c.network, name, &LowerOptions::default()).unwrap();
            // The weight is state of the step loop, starting at the parameter.
            assert!(lowered.module.states.iter().any(|(_, s)| s.name == "fc.weight.plastic"), "{name}");
            assert_eq!(lowered.module.parameter_count(), 784 * 400);
        }
    }

    #[test]
    fn inputs_are_unit_images_and_uniforms() {
        let c = config(1);
        let lowered = driver::compile(&c.network, c.name, &LowerOptions::default()).unwrap();
        // The encoder draws its uniform numbers inside the module: one input.
        assert_eq!(lowered.module.inputs.len(), 1);
        let img = Tensor::new(vec![1, 4], ElemType::F32, vec![0.0, 0.5, 1.0, 1.0]).unwrap();
        // dt · f_max = 0.02.
        assert!((poisson_density(&c.network, &img).unwrap() - 0.0125).abs() < 1e-12);
        assert_eq!(poisson_density(&super::super::lif_layer(4), &img), None);
    }
}
