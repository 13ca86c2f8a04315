//! A fresh clone stands alone: no file of the repository names the
//! team's shared folder of notes it was first written next to (what it
//! needs is vendored: `docs/`, `scripts/norse/`, `tests/golden/`), and every
//! repository path a Markdown document names exists.
//!
//! A path is checked when it is the target of a Markdown link (relative to
//! the document) or a word of an inline code span whose first component is
//! a top-level folder of the repository (`docs/x.md`, `scripts/x.sh`,
//! `examples/x.ron`), relative to the repository or to one of its crates
//! (`tests/sim/` in the text about `backends/cuda`); placeholders such as
//! `net.ron` or `out/` and words with glob or template characters are not
//! paths. Fenced code blocks are skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The folder name that must not appear as a path, split so that this file
/// does not name it.
const SHARED: &str = concat!("shar", "ed/");

/// The repository's files, relative to its root: tracked and untracked but
/// not ignored ones when git is there, else every file outside `target/`
/// and hidden folders.
fn repo_files() -> Vec<PathBuf> {
    let git = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(ROOT)
        .output();
    let mut files: Vec<PathBuf> = match git {
        Ok(o) if o.status.success() => o
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect(),
        _ => {
            let mut out = Vec::new();
            walk(Path::new(ROOT), Path::new(""), &mut out);
            out
        }
    };
    // A tracked file deleted in the working tree is not there to read.
    files.retain(|f| Path::new(ROOT).join(f).is_file());
    files.sort();
    files.dedup();
    files
}

fn walk(abs: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(abs) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str.starts_with('.') || (rel.as_os_str().is_empty() && name_str == "target") {
            continue;
        }
        let (abs, rel) = (entry.path(), rel.join(&name));
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&abs, &rel, out),
            Ok(t) if t.is_file() => out.push(rel),
            _ => {}
        }
    }
}

/// The file's text, or `None` for a binary (not UTF-8, or holding a NUL).
fn text_of(rel: &Path) -> Option<String> {
    let bytes = std::fs::read(Path::new(ROOT).join(rel)).ok()?;
    if bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// The 1-based lines of `text` that name the shared folder as a path:
/// [`SHARED`] not preceded by a letter, digit, `_` or `-` (after `../`, a
/// space or a backtick it counts; as the end of a longer name it does not).
fn shared_lines(text: &str) -> Vec<(usize, String)> {
    let mut hits = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let found = line.match_indices(SHARED).any(|(at, _)| {
            !line[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
        });
        if found {
            hits.push((i + 1, line.trim().to_string()));
        }
    }
    hits
}

/// One paragraph of a Markdown document outside fenced code blocks: its
/// first line (1-based) and its text.
struct Paragraph {
    line: usize,
    text: String,
}

fn paragraphs(doc: &str) -> Vec<Paragraph> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    let mut cur: Option<Paragraph> = None;
    for (i, line) in doc.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        if let Some(open) = fence {
            if marker == Some(open) {
                fence = None;
            }
            continue;
        }
        if marker.is_some() || trimmed.is_empty() {
            out.extend(cur.take());
            fence = marker;
            continue;
        }
        match &mut cur {
            Some(p) => {
                p.text.push('\n');
                p.text.push_str(line);
            }
            None => cur = Some(Paragraph { line: i + 1, text: line.to_string() }),
        }
    }
    out.extend(cur);
    out
}

/// The inline code spans of a paragraph (content and 0-based line offset
/// within it), and the paragraph with the spans blanked out.
fn code_spans(text: &str) -> (Vec<(String, usize)>, String) {
    let bytes = text.as_bytes();
    let run_at = |i: usize| bytes[i..].iter().take_while(|&&b| b == b'`').count();
    let mut spans = Vec::new();
    let mut rest = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            let next = text[i..].find('`').map_or(text.len(), |k| i + k);
            rest.push_str(&text[i..next]);
            i = next;
            continue;
        }
        let n = run_at(i);
        // The closing run is the next run of exactly n backticks.
        let mut j = i + n;
        let close = loop {
            match text[j..].find('`') {
                None => break None,
                Some(k) => {
                    let at = j + k;
                    let m = run_at(at);
                    if m == n {
                        break Some(at);
                    }
                    j = at + m;
                }
            }
        };
        match close {
            Some(at) => {
                let line = text[..i].matches('\n').count();
                spans.push((text[i + n..at].to_string(), line));
                rest.push_str(&" ".repeat(at + n - i));
                i = at + n;
            }
            None => {
                rest.push_str(&text[i..i + n]);
                i += n;
            }
        }
    }
    (spans, rest)
}

/// The targets of the Markdown links `[..](target)` of a text without code
/// spans, with their 0-based line offsets.
fn link_targets(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("](") {
        let tail = &text[at + 2..];
        let Some(end) = tail.find(')') else { continue };
        let target = tail[..end].split_whitespace().next().unwrap_or("");
        let target = target.trim_start_matches('<').trim_end_matches('>');
        out.push((target.to_string(), text[..at].matches('\n').count()));
    }
    out
}

/// A word of a code span as a repository path, if it is one: a word whose
/// first component is one of `top` (trailing punctuation and a `:LINE`
/// suffix removed), without glob or template characters.
fn as_repo_path(word: &str, top: &BTreeSet<String>) -> Option<String> {
    let word = word.trim_start_matches('(').trim_end_matches([',', ';', '.', ')', ':']);
    if word.contains("://") || word.contains("...") || word.chars().any(|c| "*?{}<>[]$|=\"'`\\".contains(c)) {
        return None;
    }
    let word = match word.split_once(':') {
        Some((path, suffix)) if suffix.split(':').all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) => {
            path
        }
        Some(_) => return None,
        None => word,
    };
    let (first, rest) = word.split_once('/')?;
    (top.contains(first) && !rest.starts_with('/')).then(|| word.to_string())
}

/// Every repository path `doc` (at `rel`) names that does not exist, as
/// `file:line: path`. A code span's path may be relative to one of `crates`
/// (folders, `""` the repository's root); a link's is relative to `doc`.
fn missing_paths(
    rel: &Path,
    doc: &str,
    top: &BTreeSet<String>,
    crates: &[PathBuf],
    exists: &dyn Fn(&Path) -> bool,
) -> Vec<String> {
    let dir = rel.parent().unwrap_or(Path::new(""));
    let mut missing = Vec::new();
    for p in paragraphs(doc) {
        let (spans, rest) = code_spans(&p.text);
        for (span, offset) in spans {
            for word in span.split_whitespace() {
                if let Some(path) = as_repo_path(word, top)
                    && !crates.iter().any(|c| exists(&c.join(&path)))
                {
                    missing.push(format!("{}:{}: `{path}`", rel.display(), p.line + offset));
                }
            }
        }
        for (target, offset) in link_targets(&rest) {
            let target = target.split('#').next().unwrap_or("");
            if target.is_empty() || target.contains(':') {
                continue; // an anchor in the same document, or a URL
            }
            if !exists(&normalise(&dir.join(target))) {
                missing.push(format!("{}:{}: ({target})", rel.display(), p.line + offset));
            }
        }
    }
    missing
}

/// `a/b/../c` as `a/c` (a link may climb out of its document's folder).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn no_file_names_the_shared_folder() {
    let mut hits = Vec::new();
    for rel in repo_files() {
        let Some(text) = text_of(&rel) else { continue };
        for (line, content) in shared_lines(&text) {
            hits.push(format!("{}:{line}: {content}", rel.display()));
        }
    }
    assert!(
        hits.is_empty(),
        "these lines name a `../{SHARED}` path, which a clone does not have; name the copy in the repository \
         instead (docs/DESIGN.md, docs/norse-semantics.md, scripts/norse/, tests/golden/):\n{}",
        hits.join("\n")
    );
}

#[test]
fn every_path_a_document_names_exists() {
    let files = repo_files();
    let top: BTreeSet<String> = files
        .iter()
        .filter(|f| f.components().count() > 1)
        .filter_map(|f| f.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    assert!(top.contains("docs") && top.contains("src"), "the repository's folders are listed: {top:?}");
    let mut crates: Vec<PathBuf> =
        files.iter().filter(|f| f.ends_with("Cargo.toml")).filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
    crates.sort();
    let exists = |p: &Path| Path::new(ROOT).join(p).exists();
    let mut missing = Vec::new();
    let mut docs = 0;
    for rel in files.iter().filter(|f| f.extension().is_some_and(|e| e == "md")) {
        let Some(text) = text_of(rel) else { continue };
        docs += 1;
        missing.extend(missing_paths(rel, &text, &top, &crates, &exists));
    }
    assert!(docs >= 4, "README.md, ARCHITECTURE.md, BENCHMARKS.md and docs/ were read ({docs} documents)");
    assert!(
        missing.is_empty(),
        "these documents name repository paths that do not exist; fix the path or vendor the file:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_checks_find_what_they_look_for() {
    // Lines as they were before the shared folder's contents were vendored.
    let old = "golden files in `tests/golden/` (a copy of `../@golden/`).\n\
               not a path: cranelift-codegen-@x, snnc-@\n    /// e.g. @golden.\n";
    let lines: Vec<usize> = shared_lines(&old.replace('@', SHARED)).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lines, [1, 3]);

    let top: BTreeSet<String> = ["docs", "scripts", "examples"].into_iter().map(String::from).collect();
    let have: BTreeSet<PathBuf> =
        ["docs/a.md", "scripts/run.sh", "examples/tutorial.ron", "README.md"].into_iter().map(PathBuf::from).collect();
    let exists = |p: &Path| have.contains(p);
    let doc = "See `docs/a.md`, `docs/gone.md:12` and [b](b.md), [up](../README.md),\n\
               [web](https://x.org/a) and [here](#x). Run `scripts/run.sh\n\
               examples/tutorial.ron --out out/`; `net.ron`, `examples/*.ron` and\n\
               `docs/{a,b}.md` are not paths.\n\n\
               ```sh\nscripts/fenced.sh `docs/fenced.md`\n```\n\
               `` `scripts/x.sh` `` is code, `scripts/nope.sh` a path.\n";
    let missing = missing_paths(Path::new("docs/guide.md"), doc, &top, &[PathBuf::new()], &exists);
    assert_eq!(
        missing,
        ["docs/guide.md:1: `docs/gone.md`", "docs/guide.md:1: (b.md)", "docs/guide.md:9: `scripts/nope.sh`"]
    );
}

#[test]
fn conformance_defaults_to_the_vendored_golden_folder() {
    let conformance = env!("CARGO_BIN_EXE_conformance");
    let help = Command::new(conformance).arg("--help").output().expect("conformance runs");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "conformance --help exits 0: {help:?}");
    assert!(text.contains("[default: tests/golden]") && !text.contains(SHARED), "the help names the default: {text}");

    // No DIR: the `tests/golden` of the current folder, here a copy of one case.
    let dir = std::env::temp_dir().join(format!("snnc-standalone-{}", std::process::id()));
    let golden = dir.join("tests/golden");
    std::fs::create_dir_all(&golden).expect("the temp folder is writable");
    let case = "li_default_f32.json";
    std::fs::copy(Path::new(ROOT).join("tests/golden").join(case), golden.join(case)).expect("the case copies");
    let run = Command::new(conformance).current_dir(&dir).output().expect("conformance runs");
    let _ = std::fs::remove_dir_all(&dir);
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "conformance with no DIR passes the copied case: {run:?}");
    assert!(out.contains("li_default_f32"), "the table names the case: {out}");
}
