//! `fuzz`: mutates RON networks, JSON tensor files and command lines, runs
//! the real `snnc` binary on them under a 4 GiB address-space limit and a
//! timeout, and counts every breach of the CLI's contract: panics, aborts,
//! signals, hangs, exit 1, and exit-2 messages that do not locate their
//! problem. `docs/fuzzing.md` says how to run it and read its output.
//!
//! Exit codes: 0 no breach found; 1 a breach found (the summary lists
//! each distinct one with the folder that reproduces it); 2 bad usage.

mod binary;
mod case;
mod cmdline;
mod exec;
mod json;
mod locate;
mod mutate;
mod nir;
mod rng;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

use case::{Base, Case, Kind, Seeds};
use exec::{Class, Outcome, Runner, Status};

/// Fuzzes the snnc command line (see docs/fuzzing.md).
#[derive(Parser, Debug)]
#[command(name = "fuzz")]
struct Cli {
    /// The seed: the same seed makes the same mutants.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run cases 0..N (default 1000 without --minutes).
    #[arg(long)]
    cases: Option<u64>,
    /// Run for this many minutes (stops at --cases too, if given).
    #[arg(long)]
    minutes: Option<f64>,
    /// Run only this case (to reproduce one; every command is saved).
    #[arg(long)]
    case: Option<u64>,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Where each breach is saved with what reproduces it.
    #[arg(long, default_value = "fuzz-out")]
    out: PathBuf,
    /// Seconds a command may run before it counts as a hang.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// The snnc binary (default: `snnc` next to this one).
    #[arg(long)]
    snnc: Option<PathBuf>,
    /// The fraction of accepted RON mutants that go on past `check` (compile, run, train).
    #[arg(long, default_value_t = 0.2)]
    deep: f64,
    /// The address-space limit of each command in bytes (0: none).
    #[arg(long, default_value_t = 4 << 30)]
    limit_as: u64,
    /// Run (not only compile) accepted networks of at most this work estimate:
    /// steps × (parameters + 10 × state values per sample).
    #[arg(long, default_value_t = 5e7)]
    max_cost: f64,
    /// Folders of seed networks (`*.ron`; default: examples/ and tests/nets/ of this repository).
    #[arg(long)]
    corpus: Vec<PathBuf>,
    /// Only these kinds of mutants, comma-separated: ron, json, binary, nir, cmdline (default: all).
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    /// Fashion-MNIST for the training steps; training is skipped when it is absent.
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    data_dir: PathBuf,
}

/// What every worker reads, and the tallies they write.
#[derive(Debug)]
pub struct Shared {
    pub seed: u64,
    pub runner: Runner,
    pub bases: Vec<Base>,
    /// The corpus texts, for splicing.
    pub others: Vec<Vec<u8>>,
    pub deep: f64,
    pub max_cost: f64,
    /// The Fashion-MNIST folder, when it is there.
    pub train_data: Option<String>,
    /// The kinds of mutants made (`--kinds`).
    pub kinds: Vec<Kind>,
    out: PathBuf,
    save_all: bool,
    seeds_dir: PathBuf,
    stats: Mutex<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    mutants: BTreeMap<Kind, u64>,
    commands: BTreeMap<String, u64>,
    classes: BTreeMap<Class, u64>,
    skipped_large: u64,
    /// Distinct breaches by signature.
    failures: BTreeMap<String, Failure>,
}

#[derive(Debug)]
struct Failure {
    class: Class,
    count: u64,
    /// The first saved reproduction.
    saved: String,
    /// The first lines of its stderr.
    stderr: String,
}

/// The most reproductions saved per distinct breach.
const SAVES_PER_FAILURE: u64 = 3;

impl Shared {
    fn count_mutant(&self, kind: Kind) {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()).mutants.entry(kind).or_default() += 1;
    }

    fn count_skipped(&self) {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).skipped_large += 1;
    }

    /// Tallies one command and saves it when it breaches the contract.
    fn record(&self, case: &Case<'_>, args: &[String], o: &Outcome, class: Class) {
        let sub = args.first().filter(|a| !a.starts_with('-')).cloned().unwrap_or_else(|| "(none)".into());
        let sig = signature(class, &sub, o);
        let save = {
            let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            *st.commands.entry(sub).or_default() += 1;
            *st.classes.entry(class).or_default() += 1;
            if class.is_failure() {
                let f = st.failures.entry(sig.clone()).or_insert_with(|| Failure {
                    class,
                    count: 0,
                    saved: String::new(),
                    stderr: o.stderr_text().lines().take(4).collect::<Vec<_>>().join("\n"),
                });
                f.count += 1;
                f.count <= SAVES_PER_FAILURE
            } else {
                false
            }
        };
        if save || self.save_all {
            let name = format!("{}-s{}-c{}-{}", class.name(), self.seed, case.id, case.commands);
            let dir = self.out.join(&name);
            if let Err(e) = self.save(case, args, o, class, &dir) {
                eprintln!("fuzz: cannot save {}: {e}", dir.display());
            }
            let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = st.failures.get_mut(&sig)
                && f.saved.is_empty()
            {
                f.saved = dir.display().to_string();
            }
        }
    }

    /// Copies the case folder's files and writes the command (`repro.sh`),
    /// its output and the notes.
    fn save(&self, case: &Case<'_>, args: &[String], o: &Outcome, class: Class, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(case.dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_file() && meta.len() <= 16 << 20 {
                std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
            } else if meta.is_dir() && entry.file_name() == "empty-dir" {
                std::fs::create_dir_all(dir.join("empty-dir"))?;
            }
        }
        let limit = match self.runner.limit_as {
            Some(b) => format!("prlimit --as={b} -- "),
            None => String::new(),
        };
        let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        let script = format!(
            "#!/bin/sh\n# fuzz --seed {} --case {} ({}): {}\n# {}\ncd \"$(dirname \"$0\")\" && exec {limit}\"${{SNNC:-snnc}}\" {}\n",
            self.seed,
            case.id,
            case.kind.name(),
            class.name(),
            case.notes,
            quoted.join(" ")
        );
        std::fs::write(dir.join("repro.sh"), script)?;
        std::fs::write(dir.join("args.json"), serde_json::to_string(args).unwrap_or_default())?;
        std::fs::write(dir.join("stdout.txt"), &o.stdout)?;
        std::fs::write(dir.join("stderr.txt"), &o.stderr)?;
        std::fs::write(dir.join("class.txt"), format!("{}\n{:?}\n{}\n", class.name(), o.status, case.notes))
    }

    /// Valid tensor files for a corpus network: weights and input from the
    /// shapes of `snnc ir`, a recording from `snnc run --record`.
    fn make_seeds(&self, base: &Base) -> Seeds {
        let dir = self.seeds_dir.join(format!("{:x}", fingerprint(&base.text)));
        if std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("net.ron"), &base.text)).is_err() {
            return Seeds::default();
        }
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ir = self.runner.run(&dir, &args(&["ir", "net.ron"]));
        let (weights, input) = match ir.status {
            Status::Exit(0) => json::from_ir(&String::from_utf8_lossy(&ir.stdout)),
            _ => (None, None),
        };
        let rec = self.runner.run(&dir, &args(&["run", "net.ron", "--record", "rec.json"]));
        let record = match rec.status {
            Status::Exit(0) => std::fs::read(dir.join("rec.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()),
            _ => None,
        };
        Seeds { weights, input, record }
    }
}

/// What makes two breaches the same: the class, the subcommand, and the
/// telling line of stderr with its numbers blanked.
fn signature(class: Class, sub: &str, o: &Outcome) -> String {
    let err = o.stderr_text();
    let line = match class {
        Class::Hang => String::new(),
        Class::Signal => format!("{:?}", o.status),
        _ => err
            .lines()
            .find(|l| l.contains("panicked at") || l.contains("memory allocation of") || l.contains("overflowed"))
            .or_else(|| err.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or("")
            .to_string(),
    };
    let mut norm = String::new();
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !norm.ends_with('#') {
                norm.push('#');
            }
        } else {
            norm.push(c);
        }
    }
    let norm: String = norm.chars().take(160).collect();
    format!("{} {sub}: {norm}", class.name())
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn fingerprint(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3))
}

/// Reads the corpus (`*.ron` of each folder, sorted) and checks each
/// network once.
fn load_bases(dirs: &[PathBuf], runner: &Runner, work: &Path) -> std::io::Result<Vec<Base>> {
    let mut files = Vec::new();
    for d in dirs {
        for e in std::fs::read_dir(d)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "ron") {
                files.push(p);
            }
        }
    }
    files.sort();
    std::fs::create_dir_all(work)?;
    let mut bases = Vec::new();
    for f in files {
        let text = std::fs::read(&f)?;
        std::fs::write(work.join("net.ron"), &text)?;
        let o = runner.run(work, &["check".into(), "net.ron".into()]);
        let cost = (o.status == Status::Exit(0)).then(|| case::cost(&String::from_utf8_lossy(&o.stdout))).flatten();
        bases.push(Base { name: f.display().to_string(), text, cost, seeds: Default::default() });
    }
    Ok(bases)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match fuzz(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fuzz: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the cases; true when no breach was found.
fn fuzz(cli: &Cli) -> Result<bool, String> {
    let snnc = match &cli.snnc {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("snnc"),
    };
    if !snnc.is_file() {
        return Err(format!(
            "{}: no snnc binary there; build it (`cargo build --bin snnc`) or give --snnc PATH",
            snnc.display()
        ));
    }
    let prlimit = std::process::Command::new("prlimit").arg("--version").output().is_ok_and(|o| o.status.success());
    if !prlimit && cli.limit_as > 0 {
        eprintln!("fuzz: `prlimit` (util-linux) is missing: running without an address-space limit");
    }
    let limit_as = (prlimit && cli.limit_as > 0).then_some(cli.limit_as);
    if !(cli.timeout > 0.0 && cli.timeout.is_finite()) {
        return Err(format!("--timeout {}: give a positive number of seconds", cli.timeout));
    }
    let runner = Runner { snnc, limit_as, timeout: Duration::from_secs_f64(cli.timeout) };
    let work = std::env::temp_dir().join(format!("snnc-fuzz-{}-{}", std::process::id(), cli.seed));
    let corpus = if cli.corpus.is_empty() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        vec![root.join("examples"), root.join("tests/nets")]
    } else {
        cli.corpus.clone()
    };
    let bases = load_bases(&corpus, &runner, &work.join("corpus")).map_err(|e| format!("the corpus: {e}"))?;
    if bases.is_empty() {
        return Err("the corpus holds no *.ron network; give --corpus DIR".into());
    }
    let train_data =
        cli.data_dir.join("train-images-idx3-ubyte.gz").is_file().then(|| cli.data_dir.display().to_string());
    if train_data.is_none() {
        eprintln!("fuzz: no Fashion-MNIST in {}: the training steps are skipped", cli.data_dir.display());
    }
    let kinds = if cli.kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        cli.kinds
            .iter()
            .map(|k| {
                Kind::ALL.into_iter().find(|x| x.name() == k).ok_or_else(|| {
                    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                    format!("--kinds: unknown kind `{k}` (the kinds: {})", names.join(", "))
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let sh = Shared {
        kinds,
        seed: cli.seed,
        runner,
        others: bases.iter().map(|b| b.text.clone()).collect(),
        bases,
        deep: if cli.case.is_some() { 1.0 } else { cli.deep },
        max_cost: cli.max_cost,
        train_data,
        out: cli.out.clone(),
        save_all: cli.case.is_some(),
        seeds_dir: work.join("seeds"),
        stats: Mutex::default(),
    };
    let (first, end) = match (cli.case, cli.cases, cli.minutes) {
        (Some(c), _, _) => (c, c + 1),
        (None, Some(n), _) => (0, n),
        (None, None, Some(_)) => (0, u64::MAX),
        (None, None, None) => (0, 1000),
    };
    let deadline = cli.minutes.map(|m| Instant::now() + Duration::from_secs_f64(m.max(0.0) * 60.0));
    let jobs = cli.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let next = AtomicU64::new(first);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs)
            .map(|j| {
                let (sh, next, dir) = (&sh, &next, work.join(format!("w{j}")));
                s.spawn(move || {
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        if id >= end {
                            break;
                        }
                        if let Err(e) = case::run_case(sh, id, &dir) {
                            eprintln!("fuzz: case {id}: cannot write its files in {}: {e}", dir.display());
                        }
                    }
                })
            })
            .collect();
        s.spawn(|| {
            let mut last = Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() >= Duration::from_secs(5) {
                    last = Instant::now();
                    eprintln!("fuzz: {}", progress(&sh, start.elapsed()));
                }
            }
        });
        for w in workers {
            let _ = w.join();
        }
        done.store(true, Ordering::Relaxed);
    });
    let _ = std::fs::remove_dir_all(&work);
    let clean = summary(&sh, cli, start.elapsed());
    Ok(clean)
}

fn progress(sh: &Shared, t: Duration) -> String {
    let st = sh.stats.lock().unwrap_or_else(|e| e.into_inner());
    let mutants: u64 = st.mutants.values().sum();
    let commands: u64 = st.commands.values().sum();
    let breaches: u64 = st.classes.iter().filter(|(c, _)| c.is_failure()).map(|(_, n)| n).sum();
    format!(
        "{mutants} mutants, {commands} commands, {:.1} mutants/s, {breaches} breaches ({} distinct)",
        mutants as f64 / t.as_secs_f64().max(1e-9),
        st.failures.len()
    )
}

/// Prints the summary table; true when no breach was found.
fn summary(sh: &Shared, cli: &Cli, t: Duration) -> bool {
    let st = sh.stats.lock().unwrap_or_else(|e| e.into_inner());
    let mutants: u64 = st.mutants.values().sum();
    let kinds: Vec<String> = st.mutants.iter().map(|(k, n)| format!("{} {n}", k.name())).collect();
    println!(
        "fuzz summary: seed {}, {mutants} mutants ({}) in {:.1} s: {:.1} mutants/s",
        cli.seed,
        kinds.join(", "),
        t.as_secs_f64(),
        mutants as f64 / t.as_secs_f64().max(1e-9)
    );
    println!(
        "address-space limit: {}; timeout {} s; training steps: {}",
        sh.runner.limit_as.map_or("none".into(), |b| format!("{b} bytes")),
        cli.timeout,
        if sh.train_data.is_some() { "on" } else { "skipped (no Fashion-MNIST)" }
    );
    println!("{:<14} {:>9}", "command", "runs");
    for (sub, n) in &st.commands {
        println!("{sub:<14} {n:>9}");
    }
    println!("accepted networks too large to run (compiled only): {}", st.skipped_large);
    println!("{:<14} {:>9}", "class", "count");
    for c in Class::ALL {
        println!("{:<14} {:>9}", c.name(), st.classes.get(&c).copied().unwrap_or(0));
    }
    let counts: Vec<String> =
        Class::ALL.iter().map(|c| format!("{}={}", c.name(), st.classes.get(c).copied().unwrap_or(0))).collect();
    println!("counts: {}", counts.join(" "));
    println!("distinct breaches: {}", st.failures.len());
    for (sig, f) in &st.failures {
        println!(
            "- [{} x{}] {sig}\n  saved: {}",
            f.class.name(),
            f.count,
            if f.saved.is_empty() { "(not saved)" } else { &f.saved }
        );
        for l in f.stderr.lines() {
            println!("    | {l}");
        }
    }
    st.failures.is_empty()
}
