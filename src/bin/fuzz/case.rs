//! One mutant: make it from the seed and the case number, write its files
//! into the worker's folder, run its commands, and record what happened.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

use crate::exec::{Class, Outcome};
use crate::locate::Context;
use crate::rng::Rng;
use crate::{Shared, binary, cmdline, json, mutate};

/// A network of the corpus, with what `snnc check` said about it.
#[derive(Debug)]
pub struct Base {
    /// The path it was read from (for the notes).
    pub name: String,
    pub text: Vec<u8>,
    /// The work estimate of [`cost`], when `check` accepts it.
    pub cost: Option<f64>,
    /// Valid tensor files for it, made on first use.
    pub seeds: OnceLock<Seeds>,
}

/// Valid tensor files of a network, made with snnc.
#[derive(Debug, Default)]
pub struct Seeds {
    pub weights: Option<Value>,
    pub input: Option<Value>,
    pub record: Option<Value>,
}

/// Networks whose work estimate is above this get no JSON mutants (their
/// tensor files would be megabytes).
const JSON_COST: f64 = 5e6;

/// The work estimate of a network from `snnc check`'s output:
/// steps × (trainable parameters + 10 × state values per sample).
pub fn cost(check_stdout: &str) -> Option<f64> {
    let steps: f64 = check_stdout.split("T = ").nth(1)?.split_whitespace().next()?.parse().ok()?;
    let total = check_stdout.lines().find_map(|l| l.strip_prefix("total: "))?;
    let params: f64 = total.split_whitespace().next()?.parse().ok()?;
    let state: f64 = total.split(", ").nth(1)?.split_whitespace().next()?.parse().ok()?;
    Some(steps * (params + 10.0 * state))
}

/// What kind of mutant a case is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Ron,
    Json,
    Binary,
    /// A real NIR file changed structurally ([`crate::nir`]).
    Nir,
    CommandLine,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Ron, Kind::Json, Kind::Binary, Kind::Nir, Kind::CommandLine];

    /// The share of the cases of each kind, in percent.
    fn weight(self) -> usize {
        match self {
            Kind::Ron => 55,
            Kind::Json => 17,
            Kind::Binary => 10,
            Kind::Nir => 5,
            Kind::CommandLine => 13,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ron => "ron",
            Kind::Json => "json",
            Kind::Binary => "binary",
            Kind::Nir => "nir",
            Kind::CommandLine => "cmdline",
        }
    }
}

/// One case being run: its folder, its notes, and the command count.
pub struct Case<'a> {
    pub sh: &'a Shared,
    pub id: u64,
    pub dir: &'a Path,
    pub kind: Kind,
    /// The base network and the operators applied (for the notes).
    pub notes: String,
    pub commands: usize,
}

impl Case<'_> {
    /// Runs `snnc ARGS` in the case folder and records the outcome.
    fn exec(&mut self, args: &[&str], cx: &Context) -> (Class, Outcome) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let cx = Context { args: args.clone(), ..cx.clone() };
        let o = self.sh.runner.run(self.dir, &args);
        let class = crate::exec::classify(&o, &cx);
        self.commands += 1;
        self.sh.record(self, &args, &o, class);
        (class, o)
    }
}

/// Runs case `id` in `dir` (emptied first).
pub fn run_case(sh: &Shared, id: u64, dir: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::for_case(sh.seed, id);
    let json_bases: Vec<&Base> = sh.bases.iter().filter(|b| b.cost.is_some_and(|c| c <= JSON_COST)).collect();
    let allowed: Vec<Kind> =
        sh.kinds.iter().copied().filter(|k| !json_bases.is_empty() || matches!(k, Kind::Ron | Kind::Nir)).collect();
    let allowed = if allowed.is_empty() { vec![Kind::Ron] } else { allowed };
    let mut r = rng.below(allowed.iter().map(|k| k.weight()).sum());
    let mut kind = allowed[0];
    for k in &allowed {
        if r < k.weight() {
            kind = *k;
            break;
        }
        r -= k.weight();
    }
    let mut case = Case { sh, id, dir, kind, notes: String::new(), commands: 0 };
    sh.count_mutant(kind);
    match kind {
        Kind::Ron => ron_case(&mut rng, &mut case),
        Kind::Json => json_case(&mut rng, &mut case, &json_bases),
        Kind::Binary => binary_case(&mut rng, &mut case, &json_bases),
        Kind::Nir => nir_case(&mut rng, &mut case),
        Kind::CommandLine => cmdline_case(&mut rng, &mut case, &json_bases),
    }
}

fn ron_case(rng: &mut Rng, case: &mut Case<'_>) -> std::io::Result<()> {
    let sh = case.sh;
    let base = rng.pick(&sh.bases);
    let mut text = base.text.clone();
    let ops = mutate::mutate_ron(rng, &mut text, &sh.others);
    case.notes = format!("ron mutant of {} by {}", base.name, ops.join(", "));
    std::fs::write(case.dir.join("net.ron"), &text)?;
    let cx = Context { files: vec!["net.ron".into()], layers: mutate::layer_names(&text), ..Default::default() };
    let (class, o) = case.exec(&["check", "net.ron"], &cx);
    if class != Class::Ok || !rng.chance(sh.deep) {
        return Ok(());
    }
    let emit = *rng.pick(&["ir", "clif"]);
    let arch = *rng.pick(&["sm80", "sm90"]);
    case.exec(&["compile", "net.ron", "--target", "cpu", "--emit", emit], &cx);
    case.exec(&["compile", "net.ron", "--target", "cuda", "--arch", arch, "-o", "ptx"], &cx);
    case.exec(&["compile", "net.ron", "--backward"], &cx);
    let small = cost(&String::from_utf8_lossy(&o.stdout)).is_some_and(|c| c <= sh.max_cost);
    if !small {
        sh.count_skipped();
        return Ok(());
    }
    case.exec(&["run", "net.ron", "--target", "cpu"], &cx);
    case.exec(&["run", "net.ron", "--target", "interp"], &cx);
    if sh.train_data.is_some() && rng.chance(0.1) {
        let data = sh.train_data.as_deref().unwrap_or_default();
        let args = [
            "train",
            "net.ron",
            "--limit",
            "64",
            "--test-limit",
            "64",
            "--epochs",
            "1",
            "--batch",
            "16",
            "--out",
            "train",
            "--quiet",
            "--data-dir",
            data,
        ];
        case.exec(&args, &cx);
    }
    Ok(())
}

/// Writes the base network and its valid tensor files into the case folder;
/// returns the tensor names for matching messages.
fn write_valid(case: &Case<'_>, base: &Base) -> std::io::Result<Vec<String>> {
    std::fs::write(case.dir.join("net.ron"), &base.text)?;
    let seeds = base.seeds.get_or_init(|| case.sh.make_seeds(base));
    let mut names = Vec::new();
    for (file, v) in [("w.json", &seeds.weights), ("in.json", &seeds.input), ("rec.json", &seeds.record)] {
        if let Some(v) = v {
            std::fs::write(case.dir.join(file), serde_json::to_vec(v).expect("a Value serializes"))?;
            if let Value::Object(m) = v {
                names.extend(m.keys().cloned());
            }
        }
    }
    Ok(names)
}

fn json_case(rng: &mut Rng, case: &mut Case<'_>, bases: &[&Base]) -> std::io::Result<()> {
    let base = *rng.pick(bases);
    let tensors = write_valid(case, base)?;
    let seeds = base.seeds.get().expect("made by write_valid");
    let mut choices: Vec<(&str, &Value)> = Vec::new();
    for (file, v) in [("w.json", &seeds.weights), ("in.json", &seeds.input), ("rec.json", &seeds.record)] {
        if let Some(v) = v {
            choices.push((file, v));
        }
    }
    if choices.is_empty() {
        return Ok(());
    }
    let (file, doc) = *rng.pick(&choices);
    let (bytes, ops) = json::mutate_json(rng, doc);
    case.notes = format!("json mutant of {file} for {} by {}", base.name, ops.join(", "));
    std::fs::write(case.dir.join(file), &bytes)?;
    // A message may name a key of the mutated file too.
    let mut tensors = tensors;
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes) {
        tensors.extend(m.keys().cloned());
    }
    let layers = mutate::layer_names(&base.text);
    let cx = Context { files: vec!["net.ron".into(), file.into()], layers, tensors, args: vec![], inside_only: false };
    let target = *rng.pick(&["cpu", "interp"]);
    match file {
        "w.json" => case.exec(&["run", "net.ron", "--weights", file, "--target", target], &cx),
        "in.json" => case.exec(&["run", "net.ron", "--input", file, "--target", target], &cx),
        _ => match rng.below(4) {
            0 => case.exec(&["run", "net.ron", "--profile", file], &cx),
            1 => case.exec(&["ir", "net.ron", "--profile", file, "--passes", "sparsify"], &cx),
            2 => case.exec(&["plot", file, "-o", "fig.svg"], &cx),
            _ => case.exec(&["plot", file, "-o", "fig.png", "--net", "net.ron"], &cx),
        },
    };
    Ok(())
}

/// A NumPy input, a safetensors weights file or an `.npz` data set,
/// mutated, run by `run --input`, `run --weights` or `train --data`.
fn binary_case(rng: &mut Rng, case: &mut Case<'_>, bases: &[&Base]) -> std::io::Result<()> {
    let target = *rng.pick(&["cpu", "interp"]);
    if rng.chance(0.2) {
        let files = binary::nir_files();
        if !files.is_empty() {
            let file = rng.pick(files);
            let mut bytes = std::fs::read(file)?;
            let ops = binary::mutate_any(rng, &mut bytes);
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            case.notes = format!("binary mutant of {name} by {}", ops.join(", "));
            std::fs::write(case.dir.join("model.nir"), &bytes)?;
            let cx = Context { files: vec!["model.nir".into()], ..Default::default() };
            let (class, _) = case.exec(&["check", "model.nir"], &cx);
            if class == Class::Ok {
                case.exec(&["run", "model.nir", "--nir-steps", "4", "--target", target], &cx);
            }
            return Ok(());
        }
    }
    if rng.chance(0.25) {
        let (net, data, extra) = *rng.pick(binary::DATA_SETS);
        let dir = binary::data_dir();
        let mut bytes = std::fs::read(dir.join(data))?;
        let ops = binary::mutate_any(rng, &mut bytes);
        case.notes = format!("binary mutant of {data} by {}", ops.join(", "));
        std::fs::copy(dir.join(net), case.dir.join("net.ron"))?;
        std::fs::write(case.dir.join("data.npz"), &bytes)?;
        let text = std::fs::read_to_string(dir.join(net))?;
        let cx = Context {
            files: vec!["net.ron".into(), "data.npz".into()],
            layers: mutate::layer_names(text.as_bytes()),
            ..Default::default()
        };
        let mut args = vec!["train", "net.ron", "--data", "data.npz", "--epochs", "1", "--batch", "8"];
        args.extend(["--out", "train", "--quiet", "--target", target]);
        args.extend(extra);
        case.exec(&args, &cx);
        return Ok(());
    }
    let base = *rng.pick(bases);
    let names = write_valid(case, base)?;
    let seeds = base.seeds.get().expect("made by write_valid");
    let inputs = seeds.input.as_ref().and_then(binary::tensors);
    let weights = seeds.weights.as_ref().and_then(binary::tensors);
    let cx = |file: &str| Context {
        files: vec!["net.ron".into(), file.into()],
        layers: mutate::layer_names(&base.text),
        tensors: names.clone(),
        args: vec![],
        inside_only: false,
    };
    match (rng.below(3), inputs, weights) {
        (0, Some(inputs), _) if inputs.len() == 1 => {
            let mut bytes = snnc_runtime::npy::npy_bytes(inputs.values().next().expect("one input"));
            let ops = binary::mutate_npy(rng, &mut bytes);
            case.notes = format!("binary mutant of in.npy for {} by {}", base.name, ops.join(", "));
            std::fs::write(case.dir.join("in.npy"), &bytes)?;
            case.exec(&["run", "net.ron", "--input", "in.npy", "--target", target], &cx("in.npy"));
        }
        (0 | 1, Some(inputs), _) => {
            let arrays: Vec<(String, &snnc_runtime::Tensor)> = inputs.iter().map(|(k, t)| (k.clone(), t)).collect();
            let Ok(mut bytes) = snnc_runtime::npy::npz_bytes("in.npz", &arrays) else { return Ok(()) };
            let ops = binary::mutate_any(rng, &mut bytes);
            case.notes = format!("binary mutant of in.npz for {} by {}", base.name, ops.join(", "));
            std::fs::write(case.dir.join("in.npz"), &bytes)?;
            case.exec(&["run", "net.ron", "--input", "in.npz", "--target", target], &cx("in.npz"));
        }
        (_, _, Some(weights)) => {
            let Ok(mut bytes) = snnc_runtime::write_weights_safetensors(&weights) else { return Ok(()) };
            let ops = binary::mutate_any(rng, &mut bytes);
            case.notes = format!("binary mutant of w.safetensors for {} by {}", base.name, ops.join(", "));
            std::fs::write(case.dir.join("w.safetensors"), &bytes)?;
            case.exec(&["run", "net.ron", "--weights", "w.safetensors", "--target", target], &cx("w.safetensors"));
        }
        _ => {}
    }
    Ok(())
}

/// A real NIR file changed structurally, checked, and run when accepted:
/// a refusal must name a node or a field of the file, not the file alone.
fn nir_case(rng: &mut Rng, case: &mut Case<'_>) -> std::io::Result<()> {
    let files = binary::nir_files();
    if files.is_empty() {
        return Ok(());
    }
    let file = rng.pick(files);
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some(mut tree) = crate::nir::read_tree(&std::fs::read(file)?) else {
        case.notes = format!("nir: {name} does not read as a tree");
        return Ok(());
    };
    let mut layers = crate::nir::node_names(&tree);
    let mut ops = Vec::new();
    for _ in 0..rng.range(1, 3) {
        let (op, node, field) = crate::nir::mutate(rng, &mut tree);
        ops.push(format!("{op} ({node}: {field})"));
    }
    layers.extend(crate::nir::node_names(&tree));
    case.notes = format!("nir mutant of {name} by {}", ops.join(", "));
    let bytes = match crate::nir::write_tree(&tree) {
        Ok(b) => b,
        Err(e) => {
            case.notes.push_str(&format!("; not written: {e}"));
            return Ok(());
        }
    };
    std::fs::write(case.dir.join("model.nir"), &bytes)?;
    let cx = Context { files: vec!["model.nir".into()], layers, inside_only: true, ..Default::default() };
    let from = *rng.pick(&["spec", "norse", "snntorch"]);
    let (class, _) = case.exec(&["check", "model.nir", "--nir-from", from], &cx);
    if class == Class::Ok && rng.chance(0.5) {
        let target = *rng.pick(&["cpu", "interp"]);
        case.exec(&["run", "model.nir", "--nir-steps", "3", "--nir-from", from, "--target", target], &cx);
    }
    Ok(())
}

fn cmdline_case(rng: &mut Rng, case: &mut Case<'_>, bases: &[&Base]) -> std::io::Result<()> {
    let base = *rng.pick(bases);
    let tensors = write_valid(case, base)?;
    std::fs::write(
        case.dir.join("metrics.csv"),
        "epoch,train_loss,test_loss,test_accuracy,seconds\n1,0.9,0.8,0.7,1.5\n2,0.6,0.5,0.8,1.4\n",
    )?;
    std::fs::create_dir_all(case.dir.join("empty-dir"))?;
    let args = cmdline::command_line(rng, case.sh.train_data.is_some());
    case.notes = format!("command line on {}", base.name);
    let files = ["net.ron", "w.json", "in.json", "rec.json", "metrics.csv"].map(String::from).to_vec();
    let cx = Context { files, layers: mutate::layer_names(&base.text), tensors, args: vec![], inside_only: false };
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    case.exec(&refs, &cx);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cost_from_check() {
        let out = "x.ron: ok\nnetwork `c`: T = 4 steps, dt = 1 ms (4 ms in all), input [5]\nreadout: LastStep\n\
                   total: 77 trainable parameters, 144 state values per sample, 43 IR nodes\n";
        assert_eq!(super::cost(out), Some(4.0 * (77.0 + 1440.0)));
        assert_eq!(super::cost("nothing"), None);
    }
}
