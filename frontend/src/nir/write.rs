//! Writing a [`NirFile`] as a `.nir` file (HDF5), in the layout NIR's own
//! `nir.write` (NIR 1.0.8, `nir/serialization.py`) produces and `nir.read`
//! accepts:
//!
//! * a scalar variable-length string dataset `version` at the root;
//! * a group `node` holding the top-level graph: a scalar string `type`
//!   (`"NIRGraph"`), a group `nodes` (one group per node), an `(E, 2)`
//!   variable-length string dataset `edges`, and a group `metadata` when
//!   the graph has any;
//! * a node: its scalar string `type`, one dataset per numeric field (a
//!   0-d dataset for a 0-d [`Array`], f32, f64 or int64 as the array says it
//!   is stored), one scalar string per string field, and `metadata`.
//!
//! [`read_nir_bytes`](super::read_nir_bytes) reads every file this writes
//! back to the same [`NirFile`] (same arrays, same stored types, same
//! strings, same edges).

use hdf5_pure::{DatasetBuilder, FileBuilder, GroupBuilder};

use super::{Array, MetaValue, NirError, NirFile, NirGraph, NirNode, StoredType};

/// The NIR version written in the file's `version` dataset: the Python
/// package whose layout this is.
pub const NIR_VERSION: &str = "1.0.8";

/// Writes a NIR file's bytes.
pub fn write_nir_bytes(file: &NirFile) -> Result<Vec<u8>, NirError> {
    let mut b = FileBuilder::new();
    scalar_text(b.create_dataset("version"), file.version.as_deref().unwrap_or(NIR_VERSION));
    let mut node = b.create_group("node");
    write_graph(&mut node, &file.graph, "")?;
    b.add_group(node.finish());
    b.finish().map_err(|e| NirError::new("", None, format!("cannot write the HDF5 file: {e}")))
}

/// Writes a NIR file.
pub fn write_nir_file(file: &NirFile, path: &std::path::Path) -> Result<(), NirError> {
    let bytes = write_nir_bytes(file)?;
    std::fs::write(path, bytes).map_err(|e| NirError::new("", None, format!("cannot write {}: {e}", path.display())))
}

fn scalar_text(ds: &mut DatasetBuilder, s: &str) {
    ds.with_vlen_strings(&[s]).with_shape(&[]);
}

fn array(ds: &mut DatasetBuilder, a: &Array) {
    let shape: Vec<u64> = a.shape.iter().map(|&d| d as u64).collect();
    match a.stored {
        StoredType::F32 => {
            let v: Vec<f32> = a.data.iter().map(|&x| x as f32).collect();
            ds.with_f32_data(&v);
        }
        StoredType::F64 => {
            ds.with_f64_data(&a.data);
        }
        StoredType::Int => {
            let v: Vec<i64> = a.data.iter().map(|&x| x as i64).collect();
            ds.with_i64_data(&v);
        }
    }
    ds.with_shape(&shape);
}

fn metadata(g: &mut GroupBuilder, m: &std::collections::BTreeMap<String, MetaValue>) {
    if m.is_empty() {
        return;
    }
    let mut mg = g.create_group("metadata");
    for (k, v) in m {
        match v {
            MetaValue::Text(s) => scalar_text(mg.create_dataset(k), s),
            MetaValue::Number(a) => array(mg.create_dataset(k), a),
        }
    }
    g.add_group(mg.finish());
}

fn check_name(path: &str, name: &str) -> Result<(), NirError> {
    if name.is_empty() || name.contains('/') || name == "." {
        return Err(NirError::new(path, None, format!("`{name}` cannot be an HDF5 group name")));
    }
    Ok(())
}

fn write_graph(g: &mut GroupBuilder, graph: &NirGraph, path: &str) -> Result<(), NirError> {
    scalar_text(g.create_dataset("type"), "NIRGraph");
    let mut nodes = g.create_group("nodes");
    for (name, node) in &graph.nodes {
        check_name(path, name)?;
        let sub = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
        let mut ng = nodes.create_group(name);
        write_node(&mut ng, node, &sub)?;
        nodes.add_group(ng.finish());
    }
    g.add_group(nodes.finish());
    let flat: Vec<&str> = graph.edges.iter().flat_map(|(a, b)| [a.as_str(), b.as_str()]).collect();
    g.create_dataset("edges").with_vlen_strings(&flat).with_shape(&[graph.edges.len() as u64, 2]);
    metadata(g, &graph.metadata);
    Ok(())
}

fn write_node(g: &mut GroupBuilder, node: &NirNode, path: &str) -> Result<(), NirError> {
    if let Some(sub) = &node.graph {
        return write_graph(g, sub, path);
    }
    scalar_text(g.create_dataset("type"), node.kind.name());
    for (k, a) in &node.params {
        array(g.create_dataset(k), a);
    }
    for (k, s) in &node.strings {
        scalar_text(g.create_dataset(k), s);
    }
    metadata(g, &node.metadata);
    Ok(())
}
