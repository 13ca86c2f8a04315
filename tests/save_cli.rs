//! Saving never destroys what is at a path, and errors writing standard
//! output are errors: `--record`, `--plot` and `compile -o` follow symbolic
//! links, write through devices and FIFOs, refuse folders; `check`, `ir` and
//! `compile` whose standard output fails exit 3, a closed pipe exits 0.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod support;
use support::{TempDir, snnc, stderr};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A skip that shows in the test output (libtest does not capture it).
fn skip(why: &str) {
    let _ = writeln!(std::io::stderr().lock(), "skipped: {why}");
}

/// Makes the character device `dir/name` with numbers `1, minor` (`/dev/null`
/// is 1 3, `/dev/full` 1 7); false (with a skip line) where that needs root.
fn mknod(dir: &TempDir, name: &str, minor: &str) -> bool {
    let ok = Command::new("mknod").args([&dir.path(name), "c", "1", minor]).status().is_ok_and(|s| s.success());
    if !ok {
        skip(&format!("mknod {name} c 1 {minor} failed (it needs root)"));
    }
    ok
}

fn is_char_device(path: &str) -> bool {
    fs::symlink_metadata(path).unwrap().file_type().is_char_device()
}

#[test]
fn symbolic_links_are_followed_and_stay_links() {
    let dir = TempDir::new("links");
    std::os::unix::fs::symlink("real.json", dir.0.join("rec.json")).unwrap();
    std::os::unix::fs::symlink("real.svg", dir.0.join("fig.svg")).unwrap();
    let out = dir.0.join("out");
    fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink("../ir.txt", out.join("lif.ir")).unwrap();
    let o = snnc(&["run", "examples/lif.ron", "--record", &dir.path("rec.json"), "--plot", &dir.path("fig.svg")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = snnc(&["compile", "examples/lif.ron", "-o", &dir.path("out")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for link in ["rec.json", "fig.svg", "out/lif.ir"] {
        assert!(fs::symlink_metadata(dir.0.join(link)).unwrap().file_type().is_symlink(), "{link} was replaced");
    }
    assert!(fs::read_to_string(dir.0.join("real.json")).unwrap().contains("\"__meta__\""));
    assert!(fs::read_to_string(dir.0.join("real.svg")).unwrap().starts_with("<svg"));
    assert!(fs::read_to_string(dir.0.join("ir.txt")).unwrap().starts_with("module lif"));
}

#[test]
fn a_fifo_is_written_through() {
    let dir = TempDir::new("fifo");
    let fifo = dir.path("rec.json");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            fs::File::open(&fifo).unwrap().read_to_string(&mut text).unwrap();
            text
        })
    };
    let o = snnc(&["run", "examples/lif.ron", "--record", &fifo]);
    // Should snnc not have opened the FIFO, opening it here ends the reader's
    // wait. Opened for reading and writing, which on Linux never blocks (for
    // writing only, it would wait for a reader when the reader is done).
    drop(fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap());
    let got = reader.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(got.starts_with('{') && got.contains("\"__meta__\""), "the reader got {got:?}");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
}

#[test]
fn devices_are_written_through_never_replaced() {
    let dir = TempDir::new("devices");
    if !mknod(&dir, "null", "3") || !mknod(&dir, "full", "7") {
        return;
    }
    let o = snnc(&["run", "examples/lif.ron", "--record", &dir.path("null")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = snnc(&["run", "examples/lif.ron", "--record", &dir.path("full")]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let want = format!("error: {}: cannot write: No space left on device", dir.path("full"));
    assert!(stderr(&o).contains(&want), "{}", text(&o));
    for dev in ["null", "full"] {
        assert!(is_char_device(&dir.path(dev)), "{dev} is no longer a device");
    }
}

#[test]
fn folders_and_missing_folders_are_refused() {
    let dir = TempDir::new("folders");
    fs::write(dir.0.join("keep"), "keep").unwrap();
    let o = snnc(&["run", "examples/lif.ron", "--record", &dir.path("")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("is a folder; give the path of a file to write"), "{}", text(&o));
    let o = snnc(&["run", "examples/lif.ron", "--record", &dir.path("no/rec.json")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let want = format!("the folder {} does not exist", dir.path("no"));
    assert!(stderr(&o).contains(&want), "{}", text(&o));
    let names: Vec<_> = fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["keep"]);
}

#[test]
fn errors_writing_standard_output_exit_3() {
    let dir = TempDir::new("stdout");
    let full = if mknod(&dir, "full", "7") {
        dir.path("full")
    } else if Path::new("/dev/full").exists() {
        "/dev/full".to_string()
    } else {
        return skip("no /dev/full");
    };
    for args in [&["check", "examples/lif.ron"][..], &["ir", "examples/lif.ron"], &["compile", "examples/lif.ron"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::from(fs::OpenOptions::new().write(true).open(&full).unwrap()))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("error: cannot write to standard output: No space left on device"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn a_closed_pipe_is_no_error() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["ir", "examples/tutorial.ron", "--after", "all"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe, as `| head -1` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

#[test]
fn dev_stdout_is_standard_output() {
    let dir = TempDir::new("dev-stdout");
    for (path, to_file) in [("/dev/stdout", true), ("/dev/fd/1", true), ("/dev/stdout", false)] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_snnc"));
        cmd.args(["run", "examples/lif.ron", "--record", path]).current_dir(env!("CARGO_MANIFEST_DIR"));
        let file = dir.0.join("out.txt");
        if to_file {
            cmd.stdout(Stdio::from(fs::File::create(&file).unwrap()));
        }
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{path}: {}", stderr(&o));
        let got = if to_file { fs::read_to_string(&file).unwrap() } else { support::stdout(&o) };
        // The summary, the recording, then the line that says so, in order.
        let (summary, rest) = got.split_once("{\"").unwrap_or_else(|| panic!("{path}: no recording in {got}"));
        assert!(summary.starts_with("lif: T = 100 steps") && rest.contains("__meta__"), "{path}: {got}");
        assert!(rest.ends_with(&format!("recorded 4 tensors to {path}\n")), "{path}: {got}");
    }
}
