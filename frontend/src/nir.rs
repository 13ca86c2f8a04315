//! NIR (the Neuromorphic Intermediate Representation, neuromorphs/NIR)
//! import: [`read`] reads a `.nir` file (HDF5, through the pure-Rust
//! `hdf5-pure`) into a [`NirGraph`], and [`convert`] makes a snnc
//! [`Network`](crate::Network) of it with its weights, under explicit
//! conventions ([`NirOptions`]: the step `dt` and the producer whose
//! discretisation is assumed). `docs/nir.md` says what is assumed and what
//! is refused.
//!
//! The graph is kept close to the file: each node has its NIR type
//! ([`NodeKind`]), its numeric datasets ([`Array`], any of f32, f64 or
//! integers, read as f64 with the stored type remembered), its string
//! datasets, and, for a nested `NIRGraph`, its subgraph. The reader checks
//! that every field NIR requires of the node's type is there and numeric;
//! the converter checks the values.

use std::collections::BTreeMap;

pub mod convert;
pub mod export;
mod neurons;
pub mod read;
mod snnc_meta;
pub mod write;

pub use convert::{Converted, NirOptions, Producer, WeightTensor, convert};
pub use export::{ExportError, export};
pub use read::{read_nir_bytes, read_nir_file};
pub use write::{write_nir_bytes, write_nir_file};

/// The largest `.nir` file read: 1 GiB.
pub const MAX_NIR_FILE_BYTES: u64 = 1 << 30;
/// The most elements one dataset may hold: 2^28 (1 GiB as f32).
pub const MAX_DATASET_ELEMENTS: u64 = 1 << 28;
/// The deepest nesting of `NIRGraph`s read.
pub const MAX_GRAPH_DEPTH: usize = 16;
/// The most nodes (over all nesting levels) and edges of one file.
pub const MAX_NODES: usize = 100_000;

/// Something in a NIR file that cannot be read or converted: where (the
/// node's dotted path and the field) and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}{}", place(.node, .field), .message)]
pub struct NirError {
    /// The node's dotted path (`lif1.w_rec`); empty for the file itself.
    pub node: String,
    /// The field (dataset) of the node, if the problem is one field's.
    pub field: Option<String>,
    pub message: String,
}

fn place(node: &str, field: &Option<String>) -> String {
    match (node.is_empty(), field) {
        (true, None) => String::new(),
        (true, Some(f)) => format!("`{f}`: "),
        (false, None) => format!("node `{node}`: "),
        (false, Some(f)) => format!("node `{node}`, field `{f}`: "),
    }
}

impl NirError {
    pub fn new(node: &str, field: Option<&str>, message: impl Into<String>) -> NirError {
        NirError { node: node.to_string(), field: field.map(str::to_string), message: message.into() }
    }
}

/// The stored element type of a numeric dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredType {
    F32,
    F64,
    Int,
}

/// A numeric dataset: its shape (empty for a 0-d value) and its values,
/// row-major, as f64 (f32 and integers convert exactly).
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
    pub stored: StoredType,
}

impl Array {
    /// A 0-d array.
    pub fn scalar(v: f64) -> Array {
        Array { shape: Vec::new(), data: vec![v], stored: StoredType::F64 }
    }

    /// An array of this shape (the product must be `data.len()`).
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Array {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Array { shape, data, stored: StoredType::F64 }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Whether every element is `v`.
    pub fn all(&self, v: f64) -> bool {
        self.data.iter().all(|&x| x == v)
    }
}

/// The node types NIR defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    Input,
    Output,
    Affine,
    Linear,
    Scale,
    Conv1d,
    Conv2d,
    SumPool2d,
    AvgPool2d,
    Flatten,
    Delay,
    Threshold,
    I,
    IF,
    LI,
    LIF,
    CubaLI,
    CubaLIF,
    Graph,
}

impl NodeKind {
    pub const ALL: [NodeKind; 19] = [
        NodeKind::Input,
        NodeKind::Output,
        NodeKind::Affine,
        NodeKind::Linear,
        NodeKind::Scale,
        NodeKind::Conv1d,
        NodeKind::Conv2d,
        NodeKind::SumPool2d,
        NodeKind::AvgPool2d,
        NodeKind::Flatten,
        NodeKind::Delay,
        NodeKind::Threshold,
        NodeKind::I,
        NodeKind::IF,
        NodeKind::LI,
        NodeKind::LIF,
        NodeKind::CubaLI,
        NodeKind::CubaLIF,
        NodeKind::Graph,
    ];

    /// The name in the file's `type` dataset.
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::Input => "Input",
            NodeKind::Output => "Output",
            NodeKind::Affine => "Affine",
            NodeKind::Linear => "Linear",
            NodeKind::Scale => "Scale",
            NodeKind::Conv1d => "Conv1d",
            NodeKind::Conv2d => "Conv2d",
            NodeKind::SumPool2d => "SumPool2d",
            NodeKind::AvgPool2d => "AvgPool2d",
            NodeKind::Flatten => "Flatten",
            NodeKind::Delay => "Delay",
            NodeKind::Threshold => "Threshold",
            NodeKind::I => "I",
            NodeKind::IF => "IF",
            NodeKind::LI => "LI",
            NodeKind::LIF => "LIF",
            NodeKind::CubaLI => "CubaLI",
            NodeKind::CubaLIF => "CubaLIF",
            NodeKind::Graph => "NIRGraph",
        }
    }

    pub fn from_name(name: &str) -> Option<NodeKind> {
        NodeKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The numeric fields NIR requires of this type (as its reader,
    /// `nir/serialization.py`, does), and the optional ones with their
    /// default when missing (`None`: no default, simply absent).
    pub fn fields(self) -> (&'static [&'static str], &'static [(&'static str, Option<f64>)]) {
        match self {
            NodeKind::Input | NodeKind::Output => (&["shape"], &[]),
            NodeKind::Affine => (&["weight", "bias"], &[]),
            NodeKind::Linear => (&["weight"], &[]),
            NodeKind::Scale => (&["scale"], &[]),
            NodeKind::Conv1d | NodeKind::Conv2d => (
                &["weight"],
                &[
                    ("bias", None),
                    ("stride", Some(1.0)),
                    ("padding", Some(0.0)),
                    ("dilation", Some(1.0)),
                    ("groups", Some(1.0)),
                    ("input_shape", None),
                ],
            ),
            NodeKind::SumPool2d | NodeKind::AvgPool2d => {
                (&["kernel_size"], &[("stride", None), ("padding", Some(0.0))])
            }
            NodeKind::Flatten => (&[], &[("start_dim", Some(1.0)), ("end_dim", Some(-1.0)), ("input_type", None)]),
            NodeKind::Delay => (&["delay"], &[]),
            NodeKind::Threshold => (&["threshold"], &[]),
            NodeKind::I => (&["r"], &[]),
            NodeKind::IF => (&["r", "v_threshold"], &[("v_reset", Some(0.0))]),
            NodeKind::LI => (&["tau", "r", "v_leak"], &[]),
            NodeKind::LIF => (&["tau", "r", "v_leak", "v_threshold"], &[("v_reset", Some(0.0))]),
            NodeKind::CubaLI => (&["tau_syn", "tau_mem", "r", "v_leak"], &[("w_in", Some(1.0))]),
            NodeKind::CubaLIF => {
                (&["tau_syn", "tau_mem", "r", "v_leak", "v_threshold"], &[("v_reset", Some(0.0)), ("w_in", Some(1.0))])
            }
            NodeKind::Graph => (&[], &[]),
        }
    }
}

/// A value of a `metadata` group: a number array or a string.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    Number(Array),
    Text(String),
}

/// One node of a NIR graph.
#[derive(Clone, Debug, PartialEq)]
pub struct NirNode {
    pub kind: NodeKind,
    /// Numeric datasets by name (the defaults of missing optional fields
    /// filled in as 0-d arrays, see [`NodeKind::fields`]).
    pub params: BTreeMap<String, Array>,
    /// String datasets by name (a Conv's `padding: "same"`).
    pub strings: BTreeMap<String, String>,
    /// The nodes of a nested `NIRGraph`.
    pub graph: Option<NirGraph>,
    pub metadata: BTreeMap<String, MetaValue>,
}

impl NirNode {
    /// A node of `kind` with these numeric parameters (for tests and
    /// hand-built graphs); missing optional fields get their defaults.
    pub fn new(kind: NodeKind, params: &[(&str, Array)]) -> NirNode {
        let mut map: BTreeMap<String, Array> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        for (f, default) in kind.fields().1 {
            if let Some(d) = default {
                map.entry(f.to_string()).or_insert_with(|| Array::scalar(*d));
            }
        }
        NirNode { kind, params: map, strings: BTreeMap::new(), graph: None, metadata: BTreeMap::new() }
    }

    /// A nested graph node.
    pub fn subgraph(graph: NirGraph) -> NirNode {
        NirNode {
            kind: NodeKind::Graph,
            params: BTreeMap::new(),
            strings: BTreeMap::new(),
            graph: Some(graph),
            metadata: BTreeMap::new(),
        }
    }
}

/// A NIR graph: named nodes and directed edges `(from, to)` between them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NirGraph {
    /// The nodes, in the file's order (HDF5 lists a group's members by name).
    pub nodes: Vec<(String, NirNode)>,
    pub edges: Vec<(String, String)>,
    pub metadata: BTreeMap<String, MetaValue>,
}

impl NirGraph {
    pub fn node(&self, name: &str) -> Option<&NirNode> {
        self.nodes.iter().find(|(n, _)| n == name).map(|(_, n)| n)
    }
}

/// A whole `.nir` file: the version of the `nir` package that wrote it and
/// its top-level graph.
#[derive(Clone, Debug, PartialEq)]
pub struct NirFile {
    pub version: Option<String>,
    pub graph: NirGraph,
}

#[cfg(test)]
mod tests;
