//! snnc runtime: host tensors, their JSON files, weights, and what backends
//! share.

pub mod tensor;

pub use tensor::{ElemType, ShapeError, Tensor};
