//! snnc: a compiler for spiking neural networks with Norse's semantics.
//!
//! The driver library: it loads a network description, lowers it to IR,
//! and runs it on a target. The `snnc` binary is a thin CLI over it.

pub mod conformance;
pub mod driver;
pub mod plot;

pub use driver::{Compiled, Error, Target};
pub use snnc_frontend as frontend;
pub use snnc_interp as interp;
pub use snnc_ir as ir;
pub use snnc_runtime as runtime;
