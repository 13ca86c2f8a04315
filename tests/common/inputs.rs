//! The random inputs of a generated case.

use std::collections::BTreeMap;

use snnc_ir::Module;
use snnc_runtime::Tensor;

/// Random inputs for every input of `module` with batch size `batch`, drawn
/// from `snnc_ir::rng::uniform` keyed by `seed`:
///
/// - a per-step input (`seq`, `[T, B, ...]`): currents in `[0, 3)`, which
///   make LIF neurons with Norse's parameters fire at various rates;
/// - a static input (an encoder's image, `[B, ...]`): pixels `p` in `[0, 1)`
///   normalised as the Norse tutorial normalises Fashion-MNIST,
///   `(p - 0.2860) / 0.3530` (about -0.81..2.02);
/// - an input named `uniform` (the Poisson encoder's replayed draws):
///   uniform numbers in `[0, 1)`.
pub fn inputs(module: &Module, batch: usize, seed: u64) -> BTreeMap<String, Tensor> {
    let elem = snnc_runtime::weights::elem_type(module.float);
    let mut res = BTreeMap::new();
    for (h, input) in module.inputs.iter() {
        let key = seed ^ snnc_ir::rng::mix64(0x1_0000 + h.index() as u64);
        let mut shape = input.ty.shape.resolve(batch);
        if input.ty.seq {
            shape.insert(0, module.steps as usize);
        }
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|k| {
                let u = snnc_ir::rng::uniform(key, 0, k as u64);
                if input.name == "uniform" {
                    u
                } else if input.ty.seq {
                    3.0 * u
                } else {
                    (u - 0.2860) / 0.3530
                }
            })
            .collect();
        let t = Tensor::new(shape, elem, data).expect("the data is made for the shape");
        res.insert(input.name.clone(), t);
    }
    res
}
