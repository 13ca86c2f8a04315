//! `bench-nir`: the read + convert time of every real NIR file in
//! `tests/nir/` (or the files given), the median of N runs, beside the
//! file's size; issue 17's bound is 100 ms for the largest file.
//!
//! ```sh
//! cargo build --release --bin bench-nir && target/release/bench-nir --runs 21
//! ```
//!
//! (Speed is measured here, never asserted in a test; BENCHMARKS.md,
//! "NIR import", has the figures.)

use std::path::PathBuf;
use std::time::Instant;

use snnc_frontend::nir::{NirOptions, convert, read_nir_file};

/// Issue 17's bound on the largest file's read + convert time.
const BOUND_MS: f64 = 100.0;

fn main() -> std::process::ExitCode {
    let mut runs = 21usize;
    let mut files: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => runs = n,
                _ => {
                    eprintln!("error: --runs takes a positive number");
                    return std::process::ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("usage: bench-nir [--runs N] [FILE.nir ...]  (default: every file of tests/nir)");
                return std::process::ExitCode::SUCCESS;
            }
            _ => files.push(PathBuf::from(a)),
        }
    }
    if files.is_empty() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nir");
        files = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "nir"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
    }
    println!("| file | bytes | nodes | read ms | read + convert ms (median of {runs}) | min ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut largest: Option<(u64, String, f64)> = None;
    for path in &files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let (mut read, mut total) = (Vec::new(), Vec::new());
        let mut nodes = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let f = match read_nir_file(path) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("error: {}: {e}", path.display());
                    return std::process::ExitCode::from(2);
                }
            };
            read.push(t.elapsed().as_secs_f64() * 1e3);
            let c = convert(&f, "bench", &NirOptions::default());
            total.push(t.elapsed().as_secs_f64() * 1e3);
            if let Err(e) = c {
                eprintln!("error: {}: {e}", path.display());
                return std::process::ExitCode::from(2);
            }
            nodes = f.graph.nodes.len();
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (r, m) = (med(&mut read), med(&mut total));
        println!("| {name} | {bytes} | {nodes} | {r:.2} | {m:.2} | {:.2} |", total[0]);
        if largest.as_ref().is_none_or(|(b, _, _)| bytes > *b) {
            largest = Some((bytes, name, m));
        }
    }
    if let Some((bytes, name, m)) = largest {
        let verdict = if m < BOUND_MS { "within" } else { "OVER" };
        println!("\nlargest file: {name} ({bytes} bytes), median {m:.2} ms: {verdict} the bound of {BOUND_MS} ms");
    }
    std::process::ExitCode::SUCCESS
}
