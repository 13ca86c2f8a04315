//! snnc runtime: host tensors, their JSON files, weights, and what backends
//! share.

pub mod idx;
pub mod tensor;
pub mod weights;

pub use tensor::{ElemType, ShapeError, Tensor};
pub use weights::{Weights, WeightsError, check_weights, init_weights, read_weights_json, write_weights_json};
