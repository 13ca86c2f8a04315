//! snnc frontends: the network description (RON and Rust DSL) and its
//! lowering to IR primitives.

pub mod schema;

pub use schema::*;
