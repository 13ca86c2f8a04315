//! The network's graph: which layer reads which, and the order they run in.
//!
//! A description lists layers; each reads the previous one unless it names
//! its inputs (see [`Layer`]'s wiring fields). This module resolves those
//! names once, for both `check` (the mistakes below are check errors) and
//! lowering (the run order and the merges):
//!
//! * a name that is neither a layer nor `x` (the network input);
//! * a layer that reads itself, or a cycle, at the same step: a cycle needs
//!   a one-step delay, `recurrent_inputs`;
//! * `x` as a recurrent input (the input has no previous step of its own:
//!   give it to a layer and delay that layer);
//! * `inputs: []` without recurrent inputs (the layer reads nothing);
//! * a layer that nobody reads and that is not the output (the last layer).
//!
//! Layers run in an order where each runs after its same-step inputs, the
//! file's order wherever that allows (a stable topological sort): a chain or
//! a list in execution order runs as written.

use std::collections::BTreeMap;

use crate::error::{Problem, layer_at, shown_name};
use crate::schema::{Layer, Merge};

/// The name of the network input in `inputs`.
pub const INPUT: &str = "x";

/// Where a layer's input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The network input (after the encoder, if there is one).
    Input,
    /// Layer `index` (of the description's list) at the same step.
    Layer(usize),
    /// Layer `index`'s output of the previous step (zeros at t = 0).
    Delayed(usize),
}

/// One layer's resolved inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Same-step inputs first, then the delayed ones, as merged.
    pub sources: Vec<Source>,
    pub merge: Merge,
}

/// The resolved graph of a description's layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    /// One per layer, in the description's order.
    pub nodes: Vec<Node>,
    /// The run order: indices into `nodes`, each after its same-step inputs.
    pub order: Vec<usize>,
}

impl Graph {
    /// Whether the description is a plain chain: every layer reads the one
    /// before it (the first reads the input), nothing more.
    pub fn is_chain(&self) -> bool {
        self.nodes.iter().enumerate().all(|(i, n)| {
            let prev = if i == 0 { Source::Input } else { Source::Layer(i - 1) };
            n.sources == [prev]
        })
    }

    /// The layers whose previous-step output some layer reads, in the
    /// description's order.
    pub fn delayed(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .nodes
            .iter()
            .flat_map(|n| &n.sources)
            .filter_map(|s| match s {
                Source::Delayed(j) => Some(*j),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Resolves the wiring of `layers`, or returns every mistake in it.
pub fn resolve(layers: &[Layer]) -> Result<Graph, Vec<Problem>> {
    let names: Vec<String> = layers.iter().enumerate().map(|(i, l)| l.name(i)).collect();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        // Duplicates are reported by the name check; the first one wins.
        index.entry(n.as_str()).or_insert(i);
    }
    let mut problems = Vec::new();
    let mut nodes = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        let w = layer.wiring();
        let at = layer_at(i, layer);
        let mut sources = Vec::new();
        match w.inputs {
            None => sources.push(if i == 0 { Source::Input } else { Source::Layer(i - 1) }),
            Some(list) => {
                for name in list {
                    match (name.as_str(), index.get(name.as_str())) {
                        (_, Some(&j)) if j == i => problems.push(
                            Problem::new(
                                format!("{at}: inputs"),
                                format!("the layer reads its own output at the same step (`{}`)", shown_name(name)),
                            )
                            .with_help(format!(
                                "a layer can read its own previous step: recurrent_inputs: [\"{}\"]",
                                shown_name(name)
                            )),
                        ),
                        (_, Some(&j)) => sources.push(Source::Layer(j)),
                        (INPUT, None) => sources.push(Source::Input),
                        (_, None) => problems.push(unknown(&at, "inputs", name, &names)),
                    }
                }
            }
        }
        for name in w.recurrent_inputs {
            match (name.as_str(), index.get(name.as_str())) {
                (_, Some(&j)) => sources.push(Source::Delayed(j)),
                (INPUT, None) => problems.push(
                    Problem::new(
                        format!("{at}: recurrent_inputs"),
                        "`x` (the network input) cannot be delayed: recurrent inputs name layers",
                    )
                    .with_help("read `x` through a layer, e.g. `Identity(inputs: [\"x\"])`, and delay that layer"),
                ),
                (_, None) => problems.push(unknown(&at, "recurrent_inputs", name, &names)),
            }
        }
        if w.inputs.is_some_and(|l| l.is_empty()) && w.recurrent_inputs.is_empty() {
            problems.push(
                Problem::new(format!("{at}: inputs"), "the layer reads nothing: `inputs: []` and no recurrent_inputs")
                    .with_help("name the layers it reads, or leave `inputs` out to read the previous layer"),
            );
        }
        nodes.push(Node { sources, merge: w.merge });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let order = match run_order(&nodes) {
        Ok(order) => order,
        Err(cycle) => {
            let path: Vec<String> =
                cycle.iter().chain(cycle.first()).map(|&j| format!("`{}`", shown_name(&names[j]))).collect();
            let first = cycle[0];
            return Err(vec![
                Problem::new(
                    format!("{}: inputs", layer_at(first, &layers[first])),
                    format!("the layers read each other at the same step: {}", path.join(" -> ")),
                )
                .with_help(format!(
                    "a cycle needs a one-step delay: read one of them with recurrent_inputs, e.g. \
                     recurrent_inputs: [\"{}\"] instead of inputs",
                    shown_name(&names[*cycle.last().expect("a cycle has layers")])
                )),
            ]);
        }
    };
    let mut read = vec![false; nodes.len()];
    for n in &nodes {
        for s in &n.sources {
            if let Source::Layer(j) | Source::Delayed(j) = *s {
                read[j] = true;
            }
        }
    }
    for (i, layer) in layers.iter().enumerate() {
        if !read[i] && i + 1 != layers.len() {
            problems.push(
                Problem::new(
                    layer_at(i, layer),
                    "no layer reads this layer's output, and it is not the network's output (the last layer)",
                )
                .with_help(format!(
                    "name it in a later layer's inputs (e.g. inputs: [\"{}\", ...]), or remove it",
                    shown_name(&names[i])
                )),
            );
        }
    }
    if problems.is_empty() { Ok(Graph { nodes, order }) } else { Err(problems) }
}

fn unknown(at: &str, field: &str, name: &str, names: &[String]) -> Problem {
    let mut known: Vec<&str> = vec![INPUT];
    known.extend(names.iter().map(String::as_str));
    let list: Vec<String> = known.iter().take(12).map(|n| format!("`{}`", shown_name(n))).collect();
    let more = if known.len() > 12 { ", ..." } else { "" };
    Problem::new(format!("{at}: {field}"), format!("no layer is named `{}`", shown_name(name)))
        .with_help(format!("the names are {}{more} (`x` is the network input)", list.join(", ")))
}

/// A stable topological order of the same-step edges: the smallest ready
/// index first. A cycle is returned as the layers along it.
fn run_order(nodes: &[Node]) -> Result<Vec<usize>, Vec<usize>> {
    let n = nodes.len();
    let deps = |i: usize| {
        nodes[i].sources.iter().filter_map(|s| match s {
            Source::Layer(j) => Some(*j),
            _ => None,
        })
    };
    let mut waiting: Vec<usize> = (0..n).map(|i| deps(i).count()).collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in deps(i) {
            users[j].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            waiting[u] -= 1;
            if waiting[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk same-step inputs among the blocked layers until one repeats.
    let blocked = |i: usize| waiting[i] > 0;
    let start = (0..n).find(|&i| blocked(i)).expect("some layer is blocked");
    let mut path = vec![start];
    let mut at = start;
    loop {
        let next = deps(at).find(|&j| blocked(j)).expect("a blocked layer waits for a blocked layer");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            // Along the data flow, from the layer listed first.
            let mut cycle = path.split_off(pos);
            cycle.reverse();
            let first = cycle.iter().enumerate().min_by_key(|&(_, &j)| j).map_or(0, |(k, _)| k);
            cycle.rotate_left(first);
            return Err(cycle);
        }
        path.push(next);
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_network;

    fn graph(layers: &str) -> Result<Graph, Vec<Problem>> {
        let text = format!("(version: 1, name: \"g\", steps: 2, input: [4], layers: [{layers}])");
        let net = parse_network(&text, "g.ron").expect("parses");
        resolve(&net.layers)
    }

    #[test]
    fn a_list_is_a_chain() {
        let g = graph("Linear(out: 3), LIF()").unwrap();
        assert!(g.is_chain());
        assert_eq!(g.order, vec![0, 1]);
    }

    #[test]
    fn layers_run_after_their_inputs_in_file_order_otherwise() {
        let g = graph(
            r#"LIF(name: "b", inputs: ["a"]), Linear(name: "a", out: 4, inputs: ["x"]),
               Identity(name: "s", inputs: ["a", "b"])"#,
        )
        .unwrap();
        assert_eq!(g.order, vec![1, 0, 2]);
        assert!(!g.is_chain());
    }

    #[test]
    fn a_cycle_without_delay_is_named() {
        let p = graph(
            r#"Linear(name: "a", out: 4, inputs: ["x", "c"]), LIF(name: "b"), Linear(name: "c", out: 4),
               LI(name: "d", inputs: ["b"])"#,
        )
        .unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("`a` -> `b` -> `c` -> `a`"), "{}", p[0].message);
        assert!(p[0].help.as_deref().unwrap().contains("recurrent_inputs"));
    }

    #[test]
    fn delays_close_cycles() {
        let g = graph(
            r#"Linear(name: "a", out: 4, inputs: ["x"], recurrent_inputs: ["c"]), LIF(name: "b"),
               Linear(name: "c", out: 4)"#,
        )
        .unwrap();
        assert_eq!(g.order, vec![0, 1, 2]);
        assert_eq!(g.nodes[0].sources, vec![Source::Input, Source::Delayed(2)]);
        assert_eq!(g.delayed(), vec![2]);
    }

    #[test]
    fn mistakes_are_listed() {
        let p = graph(
            r#"Linear(name: "a", out: 4, inputs: ["nope"]), LIF(name: "b", inputs: ["b"]),
               LIF(name: "c", recurrent_inputs: ["x"]), LI(name: "d", inputs: [])"#,
        )
        .unwrap_err();
        let text: Vec<String> = p.iter().map(|p| format!("{}: {}", p.at, p.message)).collect();
        assert_eq!(p.len(), 4, "{text:#?}");
        assert!(text[0].contains("no layer is named `nope`"));
        assert!(text[1].contains("reads its own output"));
        assert!(text[2].contains("cannot be delayed"));
        assert!(text[3].contains("reads nothing"));
    }

    #[test]
    fn an_unused_layer_is_an_error() {
        let p = graph(r#"Linear(name: "a", out: 4), LIF(name: "b", inputs: ["x"])"#).unwrap_err();
        assert_eq!(p.len(), 1);
        assert!(p[0].at.contains("`a`"), "{}", p[0].at);
        assert!(p[0].message.contains("no layer reads"));
    }
}
