//! Reading a `.nir` file (HDF5) into a [`NirFile`].
//!
//! The layout is the one `nir/serialization.py` writes: a string dataset
//! `version` and a group `node` holding the top-level graph. A node is a
//! group with a string dataset `type` and one dataset per field; a
//! `NIRGraph` has a group `nodes` (one group per node) and an `(E, 2)`
//! string dataset `edges`; any node may have a `metadata` group.
//!
//! Every size is bounded before anything is allocated (the file size, each
//! dataset's element count, the nesting depth, the node count), and a
//! malformed file is an error naming the node and the field, never a panic
//! (a panic inside the HDF5 library is caught and reported as an error).

use std::collections::BTreeMap;
use std::path::Path;

use hdf5_pure::{DType, Dataset, File, Group};

use super::{
    Array, MAX_DATASET_ELEMENTS, MAX_GRAPH_DEPTH, MAX_NIR_FILE_BYTES, MAX_NODES, MetaValue, NirError, NirFile,
    NirGraph, NirNode, NodeKind, StoredType,
};

/// Reads a `.nir` file (at most [`MAX_NIR_FILE_BYTES`]).
pub fn read_nir_file(path: &Path) -> Result<NirFile, NirError> {
    use std::io::Read;
    let fail = |m: String| NirError::new("", None, m);
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_NIR_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_NIR_FILE_BYTES {
        return Err(fail(format!(
            "the file is larger than {} MiB, the most a NIR file may be",
            MAX_NIR_FILE_BYTES >> 20
        )));
    }
    read_nir_bytes(bytes)
}

/// Reads a `.nir` file from its bytes.
pub fn read_nir_bytes(bytes: Vec<u8>) -> Result<NirFile, NirError> {
    if !hdf5_pure::is_hdf5_bytes(&bytes) {
        return Err(NirError::new("", None, "not an HDF5 file (a .nir file is HDF5, as `nir.write` makes it)"));
    }
    // The HDF5 library is large and reads untrusted bytes: a panic in it is
    // one more malformed-file error.
    std::panic::catch_unwind(move || read_inner(bytes)).unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(NirError::new("", None, format!("malformed HDF5 (the reader failed: {why})")))
    })
}

fn read_inner(bytes: Vec<u8>) -> Result<NirFile, NirError> {
    let file = File::from_bytes(bytes).map_err(|e| NirError::new("", None, format!("malformed HDF5: {e}")))?;
    let root = file.root();
    let names = root.datasets().map_err(|e| NirError::new("", None, format!("malformed HDF5: {e}")))?;
    let version = if names.iter().any(|n| n == "version") {
        let ds = root.dataset("version").map_err(|e| hdf("", "version", e))?;
        Some(read_text(&ds, "", "version")?)
    } else {
        None
    };
    let groups = root.groups().map_err(|e| NirError::new("", None, format!("malformed HDF5: {e}")))?;
    if !groups.iter().any(|g| g == "node") {
        return Err(NirError::new(
            "",
            None,
            "no group `node`: not a NIR file (NIR writes its graph under /node)".to_string(),
        ));
    }
    let node = root.group("node").map_err(|e| hdf("", "node", e))?;
    let mut count = 0;
    let top = read_node(&node, "", 0, &mut count)?;
    match top.kind {
        NodeKind::Graph => Ok(NirFile { version, graph: top.graph.unwrap_or_default() }),
        // A file of one node: a graph of that node alone.
        _ => Ok(NirFile {
            version,
            graph: NirGraph { nodes: vec![("node".to_string(), top)], edges: Vec::new(), metadata: BTreeMap::new() },
        }),
    }
}

fn hdf(node: &str, field: &str, e: hdf5_pure::Error) -> NirError {
    NirError::new(node, Some(field), format!("cannot read: {e}"))
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

/// Whether a dataset holds strings.
fn is_text(ds: &Dataset) -> bool {
    matches!(ds.dtype(), Ok(DType::String | DType::VariableLengthString))
}

thread_local! {
    /// The element bound of this thread's reads ([`MAX_DATASET_ELEMENTS`]).
    static ELEMENT_LIMIT: std::cell::Cell<u64> = const { std::cell::Cell::new(MAX_DATASET_ELEMENTS) };
}

/// Runs `f` with another element bound (tests of the bound).
#[cfg(test)]
pub(crate) fn with_element_limit<R>(limit: u64, f: impl FnOnce() -> R) -> R {
    let old = ELEMENT_LIMIT.with(|l| l.replace(limit));
    let r = f();
    ELEMENT_LIMIT.with(|l| l.set(old));
    r
}

/// The element count of a dataset, bounded.
fn bounded_len(ds: &Dataset, node: &str, field: &str) -> Result<usize, NirError> {
    let shape = ds.shape().map_err(|e| hdf(node, field, e))?;
    let limit = ELEMENT_LIMIT.with(|l| l.get());
    let mut n: u64 = 1;
    for &d in &shape {
        n = n.checked_mul(d).filter(|&n| n <= limit).ok_or_else(|| {
            NirError::new(
                node,
                Some(field),
                format!("shape {shape:?} holds more than {limit} elements, the most snnc reads"),
            )
        })?;
    }
    let size = ds.element_size().map_err(|e| hdf(node, field, e))?;
    if n.saturating_mul(size.max(1)) > MAX_NIR_FILE_BYTES * 4 {
        return Err(NirError::new(node, Some(field), "the dataset is too large to read"));
    }
    Ok(n as usize)
}

fn read_text(ds: &Dataset, node: &str, field: &str) -> Result<String, NirError> {
    let n = bounded_len(ds, node, field)?;
    if !is_text(ds) {
        return Err(NirError::new(node, Some(field), "expected a string, found a number"));
    }
    if n != 1 {
        return Err(NirError::new(node, Some(field), format!("expected one string, found {n}")));
    }
    let mut v = ds.read_string().map_err(|e| hdf(node, field, e))?;
    Ok(v.pop().unwrap_or_default().trim_end_matches('\0').to_string())
}

fn read_array(ds: &Dataset, node: &str, field: &str) -> Result<Array, NirError> {
    let n = bounded_len(ds, node, field)?;
    let dtype = ds.dtype().map_err(|e| hdf(node, field, e))?;
    let stored = match dtype {
        DType::F32 => StoredType::F32,
        DType::F64 => StoredType::F64,
        DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::U8 | DType::U16 | DType::U32 | DType::U64 => {
            StoredType::Int
        }
        // NumPy booleans are an HDF5 enum.
        DType::Enum(_) => StoredType::Int,
        other => {
            return Err(NirError::new(
                node,
                Some(field),
                format!("expected numbers (f32, f64 or integers), found the HDF5 type {other}"),
            ));
        }
    };
    let shape: Vec<usize> = ds.shape().map_err(|e| hdf(node, field, e))?.into_iter().map(|d| d as usize).collect();
    let data = match stored {
        StoredType::Int => match ds.read_i64() {
            Ok(v) => v.into_iter().map(|x| x as f64).collect(),
            Err(_) => ds.read_u64().map_err(|e| hdf(node, field, e))?.into_iter().map(|x| x as f64).collect(),
        },
        _ => ds.read_f64().map_err(|e| hdf(node, field, e))?,
    };
    if data.len() != n {
        return Err(NirError::new(
            node,
            Some(field),
            format!("the data holds {} values, the shape {shape:?} {n}", data.len()),
        ));
    }
    Ok(Array { shape, data, stored })
}

fn read_metadata(g: &Group, node: &str) -> Result<BTreeMap<String, MetaValue>, NirError> {
    let mut res = BTreeMap::new();
    let names = g.datasets().map_err(|e| hdf(node, "metadata", e))?;
    for name in names {
        let field = format!("metadata.{name}");
        let ds = g.dataset(&name).map_err(|e| hdf(node, &field, e))?;
        let v = if is_text(&ds) {
            let n = bounded_len(&ds, node, &field)?;
            if n != 1 {
                continue;
            }
            MetaValue::Text(read_text(&ds, node, &field)?)
        } else {
            match read_array(&ds, node, &field) {
                Ok(a) => MetaValue::Number(a),
                // Metadata is free-form: what is neither text nor numbers is skipped.
                Err(_) => continue,
            }
        };
        res.insert(name, v);
    }
    Ok(res)
}

fn read_node(g: &Group, path: &str, depth: usize, count: &mut usize) -> Result<NirNode, NirError> {
    *count += 1;
    if *count > MAX_NODES {
        return Err(NirError::new(path, None, format!("more than {MAX_NODES} nodes in the file")));
    }
    if depth > MAX_GRAPH_DEPTH {
        return Err(NirError::new(path, None, format!("graphs nested more than {MAX_GRAPH_DEPTH} deep")));
    }
    let datasets = g.datasets().map_err(|e| NirError::new(path, None, format!("cannot read the group: {e}")))?;
    let groups = g.groups().map_err(|e| NirError::new(path, None, format!("cannot read the group: {e}")))?;
    if !datasets.iter().any(|d| d == "type") {
        return Err(NirError::new(path, Some("type"), "missing: every NIR node has a string `type`"));
    }
    let ty = read_text(&g.dataset("type").map_err(|e| hdf(path, "type", e))?, path, "type")?;
    let kind = NodeKind::from_name(&ty).ok_or_else(|| {
        let known: Vec<&str> = NodeKind::ALL.iter().map(|k| k.name()).collect();
        NirError::new(path, Some("type"), format!("unknown node type `{ty}` (NIR's types are {})", known.join(", ")))
    })?;
    let metadata = if groups.iter().any(|n| n == "metadata") {
        read_metadata(&g.group("metadata").map_err(|e| hdf(path, "metadata", e))?, path)?
    } else {
        BTreeMap::new()
    };
    let mut node = NirNode { kind, params: BTreeMap::new(), strings: BTreeMap::new(), graph: None, metadata };
    if kind == NodeKind::Graph {
        let mut graph = read_graph(g, path, &datasets, &groups, depth, count)?;
        graph.metadata = node.metadata.clone();
        node.graph = Some(graph);
        return Ok(node);
    }
    let (required, optional) = kind.fields();
    for name in &datasets {
        if name == "type" {
            continue;
        }
        let ds = g.dataset(name).map_err(|e| hdf(path, name, e))?;
        if is_text(&ds) {
            let n = bounded_len(&ds, path, name)?;
            if n == 1 {
                node.strings.insert(name.clone(), read_text(&ds, path, name)?);
            }
        } else if required.contains(&name.as_str()) || optional.iter().any(|(f, _)| f == name) {
            node.params.insert(name.clone(), read_array(&ds, path, name)?);
        }
    }
    for f in required {
        if !node.params.contains_key(*f) {
            let why = if node.strings.contains_key(*f) { "a string, expected numbers" } else { "missing" };
            return Err(NirError::new(path, Some(f), format!("{why} (a NIR {} node needs it)", kind.name())));
        }
    }
    for (f, default) in optional {
        // Conv2d's and the pools' `padding` may be "same" or "valid"; every other field is numbers.
        if *f != "padding" && node.strings.contains_key(*f) && !node.params.contains_key(*f) {
            return Err(NirError::new(
                path,
                Some(f),
                format!("a string, expected numbers (a NIR {} node)", kind.name()),
            ));
        }
        if let Some(d) = default
            && !node.params.contains_key(*f)
            && !node.strings.contains_key(*f)
        {
            node.params.insert(f.to_string(), Array::scalar(*d));
        }
    }
    // Flatten's input_type may be a group {input: shape}.
    if kind == NodeKind::Flatten && groups.iter().any(|n| n == "input_type") {
        let it = g.group("input_type").map_err(|e| hdf(path, "input_type", e))?;
        if it.datasets().map_err(|e| hdf(path, "input_type", e))?.iter().any(|d| d == "input") {
            let ds = it.dataset("input").map_err(|e| hdf(path, "input_type.input", e))?;
            node.params.insert("input_type".into(), read_array(&ds, path, "input_type.input")?);
        }
    }
    Ok(node)
}

fn read_graph(
    g: &Group,
    path: &str,
    datasets: &[String],
    groups: &[String],
    depth: usize,
    count: &mut usize,
) -> Result<NirGraph, NirError> {
    if !groups.iter().any(|n| n == "nodes") {
        return Err(NirError::new(path, Some("nodes"), "missing: a NIRGraph has a group `nodes`"));
    }
    let nodes_group = g.group("nodes").map_err(|e| hdf(path, "nodes", e))?;
    let names = nodes_group.groups().map_err(|e| hdf(path, "nodes", e))?;
    let mut nodes = Vec::with_capacity(names.len().min(MAX_NODES));
    for name in names {
        let sub = nodes_group.group(&name).map_err(|e| hdf(path, &format!("nodes.{name}"), e))?;
        let node = read_node(&sub, &child(path, &name), depth + 1, count)?;
        nodes.push((name, node));
    }
    let mut edges = Vec::new();
    if datasets.iter().any(|d| d == "edges") {
        let ds = g.dataset("edges").map_err(|e| hdf(path, "edges", e))?;
        let n = bounded_len(&ds, path, "edges")?;
        if n > 2 * MAX_NODES * 16 {
            return Err(NirError::new(path, Some("edges"), "too many edges"));
        }
        if n > 0 {
            if !is_text(&ds) {
                return Err(NirError::new(path, Some("edges"), "expected (E, 2) strings, found numbers"));
            }
            let shape = ds.shape().map_err(|e| hdf(path, "edges", e))?;
            if shape.len() != 2 || shape[1] != 2 {
                return Err(NirError::new(path, Some("edges"), format!("expected the shape (E, 2), found {shape:?}")));
            }
            let flat = ds.read_string().map_err(|e| hdf(path, "edges", e))?;
            if flat.len() != n {
                return Err(NirError::new(path, Some("edges"), "the strings do not fill the shape"));
            }
            for pair in flat.chunks(2) {
                let clean = |s: &str| s.trim_end_matches('\0').to_string();
                edges.push((clean(&pair[0]), clean(&pair[1])));
            }
        }
    }
    Ok(NirGraph { nodes, edges, metadata: BTreeMap::new() })
}
