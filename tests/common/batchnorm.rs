//! BatchNorm layers of the random-network generator (evaluation lowering,
//! the default: the running statistics).

use snnc_frontend::Layer;

/// `BatchNorm2d` on a `[C, H, W]` shape, `BatchNorm1d` on a `[C]` vector
/// (`two_d` says which); `None` on any other shape. The output is float
/// and of the same shape.
pub(super) fn fit(two_d: bool, eps: f64, momentum: f64, shape: &[u32]) -> Option<(Layer, Vec<u32>, Option<bool>)> {
    let (inputs, recurrent_inputs, merge, name, variant) =
        (None, Vec::new(), Default::default(), None, Default::default());
    // `num_features` is left out (inferred) or given, alternately by `eps`.
    let num_features = (eps < 5e-3).then_some(shape[0]);
    let layer = match (two_d, shape.len()) {
        (true, 3) => Layer::BatchNorm2d { name, num_features, eps, momentum, variant, inputs, recurrent_inputs, merge },
        (false, 1) => {
            Layer::BatchNorm1d { name, num_features, eps, momentum, variant, inputs, recurrent_inputs, merge }
        }
        _ => return None,
    };
    Some((layer, shape.to_vec(), Some(false)))
}
