//! Structural NIR mutants: a real file of `tests/nir/` read into its HDF5
//! tree (groups, datasets with their shapes and types), one node or the
//! graph changed the way a broken producer would, and written back as a
//! valid HDF5 file with `hdf5-pure`'s writer. The reader must refuse each
//! with a message naming the node or the field (or read it, when the change
//! is one NIR allows), never panic.

use hdf5_pure::{DType, FileBuilder, GroupBuilder};

use crate::rng::Rng;

/// A dataset's values.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    F64(Vec<f64>),
    F32(Vec<f64>),
    Int(Vec<i64>),
    Str(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ds {
    pub shape: Vec<u64>,
    pub values: Values,
}

/// A group: its datasets and subgroups, in the file's order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grp {
    pub datasets: Vec<(String, Ds)>,
    pub groups: Vec<(String, Grp)>,
}

impl Grp {
    fn ds(&self, name: &str) -> Option<&Ds> {
        self.datasets.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    fn ds_mut(&mut self, name: &str) -> Option<&mut Ds> {
        self.datasets.iter_mut().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    fn group_mut(&mut self, name: &str) -> Option<&mut Grp> {
        self.groups.iter_mut().find(|(n, _)| n == name).map(|(_, g)| g)
    }

    /// The node's `type`, if it is a node.
    fn node_type(&self) -> Option<&str> {
        match &self.ds("type")?.values {
            Values::Str(s) => s.first().map(|s| s.trim_end_matches('\0')),
            _ => None,
        }
    }
}

/// Reads a file's HDF5 tree; `None` when a part cannot be read.
pub fn read_tree(bytes: &[u8]) -> Option<Grp> {
    let f = hdf5_pure::File::from_bytes(bytes.to_vec()).ok()?;
    read_group(&f.root())
}

fn read_group(g: &hdf5_pure::Group) -> Option<Grp> {
    let mut out = Grp::default();
    for name in g.datasets().ok()? {
        let d = g.dataset(&name).ok()?;
        let shape = d.shape().ok()?;
        let values = match d.dtype().ok()? {
            DType::String | DType::VariableLengthString => {
                Values::Str(d.read_string().ok()?.into_iter().map(|s| s.trim_end_matches('\0').to_string()).collect())
            }
            DType::F64 => Values::F64(d.read_f64().ok()?),
            DType::F32 => Values::F32(d.read_f64().ok()?),
            _ => Values::Int(d.read_i64().ok()?),
        };
        out.datasets.push((name, Ds { shape, values }));
    }
    for name in g.groups().ok()? {
        out.groups.push((name.clone(), read_group(&g.group(&name).ok()?)?));
    }
    Some(out)
}

/// Writes a tree as an HDF5 file.
pub fn write_tree(root: &Grp) -> Result<Vec<u8>, String> {
    let mut b = FileBuilder::new();
    for (name, d) in &root.datasets {
        put(b.create_dataset(name), d);
    }
    for (name, g) in &root.groups {
        let gb = build_group(b.create_group(name), g);
        b.add_group(gb);
    }
    b.finish().map_err(|e| e.to_string())
}

fn build_group(mut gb: GroupBuilder, g: &Grp) -> hdf5_pure::FinishedGroup {
    for (name, d) in &g.datasets {
        put(gb.create_dataset(name), d);
    }
    for (name, sub) in &g.groups {
        let s = build_group(gb.create_group(name), sub);
        gb.add_group(s);
    }
    gb.finish()
}

fn put(b: &mut hdf5_pure::DatasetBuilder, d: &Ds) {
    match &d.values {
        Values::F64(v) => b.with_f64_data(v),
        Values::F32(v) => b.with_f32_data(&v.iter().map(|&x| x as f32).collect::<Vec<_>>()),
        Values::Int(v) => b.with_i64_data(v),
        Values::Str(v) => b.with_vlen_strings(&v.iter().map(String::as_str).collect::<Vec<_>>()),
    };
    b.with_shape(&d.shape);
}

/// The path of every node group under `/node` (dotted, as snnc names
/// them) with a reference path of group names.
fn nodes(g: &Grp, prefix: &str, path: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    if let Some((_, group)) = g.groups.iter().find(|(n, _)| n == "nodes") {
        for (name, sub) in &group.groups {
            let dotted = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            path.extend(["nodes".to_string(), name.clone()]);
            out.push((dotted.clone(), path.clone()));
            nodes(sub, &dotted, path, out);
            path.truncate(path.len() - 2);
        }
    }
}

fn at<'a>(root: &'a mut Grp, path: &[String]) -> Option<&'a mut Grp> {
    let mut g = root.group_mut("node")?;
    for p in path {
        g = g.group_mut(p)?;
    }
    Some(g)
}

/// Every node's dotted name and its `_` form (the names a message may give).
pub fn node_names(root: &Grp) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((_, top)) = root.groups.iter().find(|(n, _)| n == "node") {
        nodes(top, "", &mut Vec::new(), &mut out);
    }
    let mut names: Vec<String> = out.iter().map(|(n, _)| n.clone()).collect();
    names.extend(out.iter().map(|(n, _)| n.replace('.', "_")));
    names
}

/// Numbers that break a parameter.
const BAD: &[f64] = &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 0.0, 1e300, -0.0];

fn numbers(v: &Values) -> Option<Vec<f64>> {
    match v {
        Values::F64(x) | Values::F32(x) => Some(x.clone()),
        Values::Int(x) => Some(x.iter().map(|&i| i as f64).collect()),
        _ => None,
    }
}

/// Applies one structural change to the tree; returns its name and the
/// node and field it changed.
pub fn mutate(rng: &mut Rng, root: &mut Grp) -> (&'static str, String, String) {
    let mut list = Vec::new();
    if let Some((_, top)) = root.groups.iter().find(|(n, _)| n == "node") {
        nodes(top, "", &mut Vec::new(), &mut list);
    }
    // The graphs: the top one (empty path) and each nested one.
    let mut graphs: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    for (name, path) in &list {
        if at(root, path).is_some_and(|g| g.node_type() == Some("NIRGraph")) {
            graphs.push((name.clone(), path.clone()));
        }
    }
    if list.is_empty() {
        return ("none", String::new(), String::new());
    }
    let op = rng.below(14);
    if op >= 11 {
        // A graph-level change: edges.
        let (gname, gpath) = rng.pick(&graphs).clone();
        let Some(g) = at(root, &gpath) else { return ("none", gname, String::new()) };
        let Some(Ds { shape, values: Values::Str(edges) }) = g.ds_mut("edges") else {
            return ("no-edges", gname, "edges".into());
        };
        let rows = edges.len() / 2;
        match op {
            11 if rows > 0 => {
                let r = rng.below(rows);
                let e = [edges[2 * r].clone(), edges[2 * r + 1].clone()];
                edges.extend(e);
                shape[0] += 1;
                return ("duplicate-edge", gname, "edges".into());
            }
            12 if rows > 0 => {
                let i = rng.below(edges.len());
                edges[i] = rng.pick(&["missing_node", "", "nodes", "lif1.missing", "input.x"]).to_string();
                return ("edge-to-missing-node", gname, "edges".into());
            }
            _ => {
                let Some(g) = at(root, &gpath) else { return ("none", gname, String::new()) };
                g.datasets.retain(|(n, _)| n != "edges");
                return ("missing-edges", gname, "edges".into());
            }
        }
    }
    let (name, path) = rng.pick(&list).clone();
    let Some(g) = at(root, &path) else { return ("none", name, String::new()) };
    let fields: Vec<String> = g
        .datasets
        .iter()
        .filter(|(n, d)| n != "type" && numbers(&d.values).is_some())
        .map(|(n, _)| n.clone())
        .collect();
    let field = if fields.is_empty() { "type".to_string() } else { rng.pick(&fields).clone() };
    let prefer = |rng: &mut Rng, want: &[&str]| -> String {
        let have: Vec<&String> = fields.iter().filter(|f| want.contains(&f.as_str())).collect();
        if have.is_empty() { field.clone() } else { (*rng.pick(&have)).clone() }
    };
    match op {
        0 => {
            // Fewer elements than the node needs: a truncated 1-d dataset.
            let f = prefer(rng, &["weight", "bias", "tau", "tau_mem", "v_threshold"]);
            if let Some(d) = g.ds_mut(&f)
                && let Some(mut v) = numbers(&d.values)
            {
                let keep = rng.below(v.len().max(1));
                v.truncate(keep);
                d.shape = vec![v.len() as u64];
                d.values = Values::F64(v);
            }
            ("truncated", name, f)
        }
        1 => {
            // A wrong shape for the node: one dimension changed, the data resized.
            let f = prefer(rng, &["weight"]);
            if let Some(d) = g.ds_mut(&f)
                && !d.shape.is_empty()
                && let Some(mut v) = numbers(&d.values)
            {
                let i = rng.below(d.shape.len());
                let new = if d.shape[i] > 1 && rng.chance(0.5) { d.shape[i] - 1 } else { d.shape[i] + 1 };
                d.shape[i] = new;
                v.resize(d.shape.iter().product::<u64>() as usize, 0.5);
                d.values = Values::F64(v);
            }
            ("wrong-shape", name, f)
        }
        2 => {
            // A string where numbers belong.
            if let Some(d) = g.ds_mut(&field) {
                *d = Ds { shape: vec![1], values: Values::Str(vec!["0.5".into()]) };
            }
            ("string-for-number", name, field)
        }
        3 => {
            // Integers where floats belong.
            if let Some(d) = g.ds_mut(&field)
                && let Some(v) = numbers(&d.values)
            {
                d.values = Values::Int(v.iter().map(|&x| x as i64).collect());
            }
            ("int-for-float", name, field)
        }
        4 => {
            // A 3-d time constant (or other parameter).
            let f = prefer(rng, &["tau", "tau_mem", "tau_syn", "v_threshold", "r"]);
            if let Some(d) = g.ds_mut(&f)
                && let Some(v) = numbers(&d.values)
            {
                let n = v.len().max(1);
                let mut v = v;
                v.resize(n * 4, v.first().copied().unwrap_or(1.0));
                d.shape = vec![n as u64, 2, 2];
                d.values = Values::F64(v);
            }
            ("3d-parameter", name, f)
        }
        5 => {
            // An oversized parameter: far more values than the node has
            // neurons or weights (a shape declared larger than its data
            // cannot be written: the HDF5 writer refuses a dataset without
            // its data; byte-level mutations of the real files reach
            // such shapes).
            if let Some(d) = g.ds_mut(&field) {
                let dims: &[&[u64]] = &[&[300_000], &[1024, 300], &[64, 64, 64]];
                let shape = rng.pick(dims).to_vec();
                let n = shape.iter().product::<u64>() as usize;
                *d = Ds { shape, values: Values::F32(vec![0.5; n]) };
            }
            ("oversized", name, field)
        }
        6 => {
            // A missing field.
            let f = if rng.chance(0.3) {
                "type".to_string()
            } else {
                prefer(rng, &["weight", "tau", "tau_mem", "tau_syn", "v_threshold", "r", "shape"])
            };
            g.datasets.retain(|(n, _)| *n != f);
            ("missing-field", name, f)
        }
        7 => {
            if let Some(d) = g.ds_mut("type") {
                d.values = Values::Str(vec![rng.pick(&["Frobnicate", "", "lif", "Conv3d", "NIRGraph"]).to_string()]);
            }
            ("unknown-type", name, "type".into())
        }
        8 | 9 => {
            // NaN, inf, a negative or zero value in a parameter.
            let f = if op == 9 { prefer(rng, &["tau", "tau_mem", "tau_syn", "delay"]) } else { field };
            if let Some(d) = g.ds_mut(&f)
                && let Some(mut v) = numbers(&d.values)
                && !v.is_empty()
            {
                let bad = if op == 9 { -v[0].abs().max(1e-3) } else { *rng.pick(BAD) };
                let i = rng.below(v.len());
                v[i] = bad;
                d.values = Values::F64(v);
            }
            (if op == 9 { "negative-tau" } else { "bad-number" }, name, f)
        }
        _ => {
            // An empty dataset.
            if let Some(d) = g.ds_mut(&field) {
                *d = Ds { shape: vec![0], values: Values::F64(Vec::new()) };
            }
            ("empty-field", name, field)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files_round_trip_through_the_writer() {
        for path in crate::binary::nir_files() {
            let bytes = std::fs::read(path).unwrap();
            let tree = read_tree(&bytes).unwrap_or_else(|| panic!("{}", path.display()));
            let out = write_tree(&tree).unwrap();
            let a = snnc_frontend::nir::read_nir_bytes(bytes).unwrap();
            let b = snnc_frontend::nir::read_nir_bytes(out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(a.graph.nodes.len(), b.graph.nodes.len(), "{}", path.display());
            assert_eq!(a.graph.edges, b.graph.edges, "{}", path.display());
        }
    }

    #[test]
    fn every_operator_writes_a_file() {
        let bytes = std::fs::read(&crate::binary::nir_files()[0]).unwrap();
        let tree = read_tree(&bytes).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..300 {
            let mut rng = Rng::for_case(7, seed);
            let mut t = tree.clone();
            let (op, _, _) = mutate(&mut rng, &mut t);
            seen.insert(op);
            write_tree(&t).unwrap_or_else(|e| panic!("{op}: {e}"));
        }
        assert!(seen.len() >= 12, "{seen:?}");
    }
}
