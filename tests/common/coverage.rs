//! What a set of generated cases exercises.

use std::collections::BTreeMap;

use snnc_frontend::{Encoder, Layer};

use super::Case;

/// Counts what a set of cases exercises: layer kinds, encoders, readouts,
/// surrogate methods (of every neuron and LIF encoder), reset methods,
/// autapses, conv stride/padding, bias, batch sizes and input ranks.
pub fn coverage(cases: &[Case]) -> BTreeMap<String, usize> {
    let mut c: BTreeMap<String, usize> = BTreeMap::new();
    let mut bump = |k: String| *c.entry(k).or_default() += 1;
    for case in cases {
        let net = &case.net;
        bump(format!("batch {}", case.batch));
        bump(format!("input rank {}", net.input.len()));
        bump(format!("readout {:?}", net.readout));
        let steps = match net.steps {
            1 => "1",
            2..=9 => "2..9",
            10..=29 => "10..29",
            _ => "30..50",
        };
        bump(format!("steps {steps}"));
        bump(format!("layers {}", net.layers.len()));
        match &net.encoder {
            None => bump("encoder none".into()),
            Some(e) => {
                bump(format!("encoder {}", e.kind()));
                if let Encoder::ConstantCurrent { p } | Encoder::SpikeLatency { p } = e {
                    bump(format!("method {}", p.method.norse_name()));
                }
            }
        }
        for layer in &net.layers {
            bump(format!("layer {}", layer.kind()));
            let w = layer.wiring();
            if w.inputs.is_some_and(|i| i.len() > 1) {
                bump(format!("graph same-step {:?}", w.merge));
            }
            if !w.recurrent_inputs.is_empty() {
                bump(format!("graph recurrent {:?}", w.merge));
            }
            let method = match layer {
                Layer::LIF { p, .. } | Layer::LIFRecurrent { p, .. } => Some(p.method),
                Layer::LSNN { p, .. } | Layer::LSNNRecurrent { p, .. } => Some(p.method),
                Layer::LIFBox { p, .. } => Some(p.method),
                Layer::LIFAdEx { p, .. } => Some(p.method),
                _ => None,
            };
            if let Some(m) = method {
                bump(format!("method {}", m.norse_name()));
            }
            match layer {
                Layer::LIFRecurrent { autapses, .. } | Layer::LSNNRecurrent { autapses, .. } => {
                    bump(format!("{} autapses {autapses}", layer.kind()));
                }
                Layer::LIFBox { p, .. } => bump(format!("LIFBox reset {:?}", p.reset_method)),
                Layer::Linear { bias, .. } => bump(format!("Linear bias {bias}")),
                Layer::Conv2d { kernel_size, stride, padding, dilation, groups, bias, .. } => {
                    bump(format!("Conv2d stride {}", if stride.0.iter().any(|&v| v > 1) { ">1" } else { "1" }));
                    bump(format!("Conv2d padding {}", if padding.0.iter().any(|&v| v > 0) { ">0" } else { "0" }));
                    bump(format!("Conv2d dilation {}", if dilation.0.iter().any(|&v| v > 1) { ">1" } else { "1" }));
                    bump(format!("Conv2d groups {}", if *groups > 1 { ">1" } else { "1" }));
                    if kernel_size.h() != kernel_size.w() {
                        bump("Conv2d rectangular kernel".into());
                    }
                    bump(format!("Conv2d bias {bias}"));
                }
                Layer::MaxPool2d { stride, padding, .. }
                | Layer::AvgPool2d { stride, padding, .. }
                | Layer::SumPool2d { stride, padding, .. } => {
                    let given = if stride.is_some() { "given" } else { "default" };
                    bump(format!("{} stride {given}", layer.kind()));
                    bump(format!("{} padding {}", layer.kind(), if padding.is_zero() { "0" } else { ">0" }));
                }
                _ => {}
            }
        }
    }
    c
}
