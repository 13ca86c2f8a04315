//! Graph wiring for the random networks of [`super::arb_case`].

use snnc_frontend::{Layer, LowerOptions, Network};

use super::MAX_ELEMENTS;

/// Turns a chain into a graph: each pick may add to one layer a second
/// input that keeps the layer's input shape — a same-step input from an
/// earlier layer or `x` (a residual `add`), the previous step of any layer
/// (cross-layer recurrence, `add`) — or, for a layer whose output does not
/// depend on the size of its input's first axis (`Linear`, `LILinear`, the
/// recurrent cells on vectors, `Conv2d` on images), a `concat` along that
/// axis. Output shapes never change, so the rest of the chain still fits.
pub fn wire(net: &mut Network, picks: &[u32]) {
    let n = net.layers.len();
    if picks.is_empty() || n == 0 {
        return;
    }
    let Ok((_, summary)) = snnc_frontend::lower_with_summary(net, "case.ron", &LowerOptions::default()) else {
        return;
    };
    let offset = usize::from(net.encoder.is_some());
    let shapes: Vec<Vec<u32>> = summary[offset..].iter().map(|l| l.shape.clone()).collect();
    let names: Vec<String> = net.layers.iter().enumerate().map(|(i, l)| l.name(i)).collect();
    for &pick in picks {
        let kind = pick % 4;
        let j = (pick / 4) as usize % n;
        let k = (pick / 64) as usize % (n + 1);
        let in_shape = if j == 0 { net.input.clone() } else { shapes[j - 1].clone() };
        let (source, source_shape) =
            if k == n { ("x".to_string(), net.input.clone()) } else { (names[k].clone(), shapes[k].clone()) };
        let same_step = k == n || k < j;
        let default_input = if j == 0 { "x".to_string() } else { names[j - 1].clone() };
        let concat_ok = match &net.layers[j] {
            Layer::Linear { .. }
            | Layer::LILinear { .. }
            | Layer::LIFRecurrent { .. }
            | Layer::LSNNRecurrent { .. } => in_shape.len() == 1,
            Layer::Conv2d { .. } => in_shape.len() == 3,
            _ => false,
        } && source_shape.len() == in_shape.len()
            && source_shape[1..] == in_shape[1..]
            && source_shape[0] + in_shape[0] <= 2 * MAX_ELEMENTS;
        let layer = &mut net.layers[j];
        let single = layer.wiring().inputs.is_none() && layer.wiring().recurrent_inputs.is_empty();
        let merge = layer.wiring().merge;
        match kind {
            1 | 2
                if source_shape == in_shape
                    && merge == snnc_frontend::Merge::Add
                    && if kind == 1 { same_step } else { k < n } =>
            {
                let (inputs, recurrent, _) = layer.wiring_mut();
                if kind == 1 {
                    inputs.get_or_insert_with(|| vec![default_input]).push(source);
                } else {
                    recurrent.push(source);
                }
            }
            3 if concat_ok && single => {
                match layer {
                    Layer::Linear { input, .. }
                    | Layer::LILinear { input, .. }
                    | Layer::LIFRecurrent { input, .. }
                    | Layer::LSNNRecurrent { input, .. } => *input = None,
                    Layer::Conv2d { in_channels, .. } => *in_channels = None,
                    _ => {}
                }
                let (inputs, recurrent, merge) = layer.wiring_mut();
                *merge = snnc_frontend::Merge::Concat;
                if same_step {
                    *inputs = Some(vec![default_input, source]);
                } else {
                    recurrent.push(source);
                }
            }
            _ => {}
        }
    }
}
