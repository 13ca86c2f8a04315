//! snnc frontends: the network description (RON and Rust DSL) and its
//! lowering to IR primitives.

pub mod check;
pub mod dsl;
pub mod error;
pub mod graph;
pub mod lower;
pub mod neuron;
pub mod nir;
pub mod parse;
pub mod schema;

pub use check::check_network;
pub use error::{FrontendError, Problem};
pub use lower::{
    LayerSummary, LowerOptions, batch_stat_outputs, dropout_mask_input, lower, lower_with_summary, surrogate,
};
pub use parse::{load_network, parse_network, to_ron};
pub use schema::*;
