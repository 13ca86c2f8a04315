//! snnc: a compiler for spiking neural networks with Norse's semantics.
//!
//! The driver library: it loads a network description, lowers it to IR,
//! and runs it on a target. The `snnc` binary is a thin CLI over it.
//!
//! # Compile once, run many
//!
//! [`compile`] lowers a network, runs the target's passes and compiles it;
//! the [`Executable`] runs batches of host tensors (see [`api`] for the
//! state it can carry between calls). This program (`examples/jit.rs`)
//! builds the Norse tutorial network with the DSL, compiles it for the CPU
//! (Cranelift JIT) and prints the class of each sample of a batch:
//!
#![doc = concat!("```no_run\n", include_str!("../examples/jit.rs"), "\n```")]

pub mod api;
pub mod bench;
pub mod conformance;
pub mod driver;
pub mod memory;
pub mod nir_export;
pub mod nir_import;
pub mod plot;
pub mod snapshots;
pub mod train;

pub use api::{Executable, Outputs, compile, compile_with};
pub use driver::{Compiled, Error, Target};
pub use snnc_cpu as cpu;
pub use snnc_frontend as frontend;
pub use snnc_interp as interp;
pub use snnc_ir as ir;
pub use snnc_runtime as runtime;
