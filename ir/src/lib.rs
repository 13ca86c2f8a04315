//! The snnc intermediate representation.
//!
//! A [`Module`] is a spiking network as a typed dataflow program over
//! time-stepped state. Its parts:
//!
//! - **inputs**, given on every run: a per-step sequence `[T, B, ...]` or a
//!   static tensor `[B, ...]` (e.g. an image fed to an encoder);
//! - **parameters** (weights) with fixed shapes, trainable or not;
//! - **state variables** with initial values, carried from step to step;
//! - a **body** of regions run in order: *step loops* run their nodes once
//!   per time step `t = 0..T`, *sequence regions* run once over whole
//!   `[T, B, ...]` tensors and static values;
//! - named **outputs**, values of sequence regions.
//!
//! # A time step
//!
//! Inside a step loop, `state_read $s` gives the state at the start of step
//! `t` (its initial value at `t = 0`), `state_write $s, %v` sets it for step
//! `t + 1`; every read precedes the write. `step %x` reads the current slice
//! of a sequence value computed before the loop, and `collect %v` (in a
//! later sequence region) stacks a per-step value over all steps. Nodes run
//! in the order they are listed; operands appear before use.
//!
//! # Types
//!
//! A [`Type`] is a [`Dtype`] (`f32`, `f64` or `spike`), a [`Shape`] whose
//! dimensions are fixed or the symbolic batch `B`, and a flag saying whether
//! the value holds every time step (printed as a leading `T`). The typing
//! rule of every op is documented on [`Op`] and implemented in [`typing`].
//!
//! # Validity
//!
//! [`validate`] checks every invariant and returns [`ModuleInfo`]; backends
//! take `&ModuleInfo` as proof that validation passed.

pub mod arena;
pub mod builder;
pub mod compact;
pub mod layer;
pub mod module;
pub mod op;
pub mod print;
pub mod rng;
pub mod stdp;
pub mod types;
pub mod typing;
pub mod valid;

pub use arena::{Arena, Handle};
pub use builder::{BuildError, Builder};
pub use compact::compact;
pub use module::{Input, Module, Node, Output, Param, ParamInit, Region, RegionKind, StateInit, StateVar};
pub use op::{BinaryOp, CompareOp, FusedKernel, KernelInst, MatMulKind, Op, PoolOp, ReduceOp, Surrogate, UnaryOp};
pub use print::print;
pub use stdp::{RuleFloat, StdpKind, StdpRule};
pub use types::{Dim, Dtype, Shape, Type};
pub use valid::{Location, ModuleInfo, ValidationError, ValidationErrors, validate};
