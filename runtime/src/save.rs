//! Saving a file the user named, without destroying what is at its path.
//!
//! [`write_file`] is the one way snnc writes such a file (recordings,
//! figures, `compile -o` artifacts, checkpoints, metrics). What it does
//! depends on what the path is:
//!
//! - a symbolic link is followed, link after link, and its target is saved;
//!   the link stays a link;
//! - a regular file, or nothing yet: the bytes go to a temporary file in the
//!   same folder (`.NAME.tmp-PID-N`), synced, renamed over the path, then the
//!   folder is synced, so a crash leaves either the old file or the new one;
//!   an existing file keeps its permissions;
//! - a character or block device or a FIFO (`/dev/null`, a named pipe), and
//!   a path through `/proc` (`/dev/stdout` is a link to `/proc/self/fd/1`)
//!   are opened and written through (appended to), never replaced; a FIFO
//!   waits for a reader, as a shell's `>` does;
//! - a folder is refused.
//!
//! A process killed while saving leaves its temporary file behind;
//! [`remove_stale_temporaries`] removes those of processes that are gone.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The most symbolic links followed from one path (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Why a file could not be saved. [`SaveError::is_users`] says whose fault
/// it is: a path that cannot name a file is the user's; a folder that
/// cannot be written, a full disk or a failing device is the machine's.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The path is a folder.
    #[error("{}: is a folder; give the path of a file to write", path.display())]
    IsFolder { path: PathBuf },
    /// The folder the file would go in does not exist.
    #[error("{}: the folder {} does not exist; create it first or choose another path", path.display(), folder.display())]
    NoFolder { path: PathBuf, folder: PathBuf },
    /// The path's symbolic links lead round in a loop (or too far).
    #[error("{}: more than {MAX_LINKS} symbolic links, or a loop of them; give the path of a file", path.display())]
    LinkLoop { path: PathBuf },
    /// An operating-system error (`action` says what snnc was doing).
    #[error("{}: cannot {action}: {source}", path.display())]
    Io { path: PathBuf, action: &'static str, source: std::io::Error },
}

impl SaveError {
    /// Whether the user's path is at fault (exit 2) rather than the
    /// machine (exit 3): see [`is_users_fault`].
    pub fn is_users(&self) -> bool {
        match self {
            SaveError::IsFolder { .. } | SaveError::NoFolder { .. } | SaveError::LinkLoop { .. } => true,
            SaveError::Io { source, .. } => is_users_fault(source),
        }
    }
}

/// Whether an I/O error writing a file says the path is wrong (a missing
/// folder, a file where a folder should be, a bad name) rather than that
/// the machine cannot write there (permissions, a read-only file system,
/// no space left, a device that fails).
pub fn is_users_fault(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NotFound
            | ErrorKind::NotADirectory
            | ErrorKind::IsADirectory
            | ErrorKind::AlreadyExists
            | ErrorKind::InvalidFilename
            | ErrorKind::InvalidInput
    )
}

/// Saves `bytes` at `path` (see the module doc for what each kind of path
/// gets). On error a regular file at `path` is unchanged and no temporary
/// file is left.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    let (target, through_proc) = follow_links(path)?;
    if through_proc {
        // `/dev/stdout`, `/proc/self/fd/N`: the kernel's links to open files
        // (a pipe, a terminal, a file the shell opened) are written through;
        // standard output and error through their own handles, so that the
        // bytes land where the process's other output is.
        let own = |fd: &str| {
            [format!("/proc/self/fd/{fd}"), format!("/proc/{}/fd/{fd}", std::process::id())]
                .iter()
                .any(|p| target == Path::new(p))
        };
        let io = |source| SaveError::Io { path: path.to_path_buf(), action: "write", source };
        return if own("1") {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush()).map_err(io)
        } else if own("2") {
            std::io::stderr().lock().write_all(bytes).map_err(io)
        } else {
            write_through(path, bytes)
        };
    }
    match fs::symlink_metadata(&target) {
        Ok(m) if m.is_dir() => Err(SaveError::IsFolder { path: target }),
        Ok(m) if m.is_file() => replace(&target, bytes, Some(m.permissions())),
        // A device, FIFO or socket: write through what is there.
        Ok(_) => write_through(&target, bytes),
        Err(e) if e.kind() == ErrorKind::NotFound => replace(&target, bytes, None),
        Err(source) => Err(SaveError::Io { path: target, action: "look at the path", source }),
    }
}

/// The path a chain of symbolic links ends at (`path` itself if it is no
/// link), and whether the chain goes through `/proc`, whose links to open
/// files (`/proc/self/fd/1`) name no path. A dangling link gives the path it
/// names.
fn follow_links(path: &Path) -> Result<(PathBuf, bool), SaveError> {
    let mut p = path.to_path_buf();
    let mut followed = false;
    for _ in 0..MAX_LINKS {
        // Folders on the way may be links too (`/dev/fd` is `/proc/self/fd`).
        if let (Some(dir), Some(name)) = (p.parent(), p.file_name())
            && let Ok(dir) = fs::canonicalize(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })
        {
            p = dir.join(name);
        }
        if p.starts_with("/proc") {
            return Ok((p, true));
        }
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&p).map_err(|source| SaveError::Io {
                    path: p.clone(),
                    action: "read the symbolic link",
                    source,
                })?;
                p = match p.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
                followed = true;
            }
            // Messages name the path as the user gave it where no link was followed.
            _ => return Ok((if followed { p } else { path.to_path_buf() }, false)),
        }
    }
    Err(SaveError::LinkLoop { path: path.to_path_buf() })
}

/// Opens what is at `path` (a device, a FIFO, an open file) for appending,
/// without creating or truncating anything, and writes `bytes` to it.
fn write_through(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    let io = |action| move |source| SaveError::Io { path: path.to_path_buf(), action, source };
    let mut file = OpenOptions::new().append(true).open(path).map_err(io("open it for writing"))?;
    file.write_all(bytes).map_err(io("write"))?;
    file.flush().map_err(io("write"))
}

/// The temporary file name of a save of `name`: `.NAME.tmp-PID-N`, with
/// `NAME` cut to 100 bytes so that the result stays a valid file name.
fn temporary_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut end = name.len().min(100);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}.tmp-{}-{unique}", &name[..end], std::process::id())
}

/// The PID in a temporary file name made by [`temporary_name`].
fn temporary_pid(name: &str) -> Option<u32> {
    let (_, tail) = name.strip_prefix('.')?.rsplit_once(".tmp-")?;
    let (pid, n) = tail.split_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Writes a temporary file beside `path` and renames it over `path`.
fn replace(path: &Path, bytes: &[u8], permissions: Option<Permissions>) -> Result<(), SaveError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(name) = path.file_name() else {
        return Err(SaveError::IsFolder { path: path.to_path_buf() });
    };
    let io = |action: &'static str| {
        let path = path.to_path_buf();
        move |source| SaveError::Io { path, action, source }
    };
    // A name can be taken by a file a killed process left (with a PID
    // this process now has, as PID 1 in a container): take the next one.
    let mut attempts = 0;
    let (tmp, mut file) = loop {
        let tmp = dir.join(temporary_name(&name.to_string_lossy()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && attempts < 1000 => attempts += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(SaveError::NoFolder { path: path.to_path_buf(), folder: dir });
            }
            Err(e) => return Err(io("create a temporary file in its folder")(e)),
        }
    };
    let written = (|| {
        file.write_all(bytes).map_err(io("write"))?;
        if let Some(p) = permissions {
            // Best effort: the bytes matter more than the mode bits.
            let _ = file.set_permissions(p);
        }
        file.sync_all().map_err(io("sync"))?;
        drop(file);
        fs::rename(&tmp, path).map_err(io("replace the file"))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    // Make the rename durable; not every platform can open a folder.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes from `dir` the temporary files of saves of the files `names`
/// whose process is gone (killed while saving), and returns their paths.
/// Only names [`temporary_name`] makes of `names` are touched, so a
/// user's own `.notes.tmp-2024-1` stays. Does nothing where `/proc`
/// cannot say which processes live.
pub fn remove_stale_temporaries(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    if !Path::new("/proc/self").exists() {
        return removed;
    }
    let Ok(entries) = fs::read_dir(dir) else { return removed };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !names.iter().any(|n| name.starts_with(&format!(".{n}.tmp-"))) {
            continue;
        }
        let Some(pid) = temporary_pid(name) else { continue };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let path = entry.path();
            if fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder for one test, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("snnc-save-{test}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn files(&self) -> Vec<String> {
            let mut names: Vec<String> =
                fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn regular_files_are_replaced_and_keep_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("regular");
        let path = dir.0.join("a.json");
        write_file(&path, b"one").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        write_file(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(dir.files(), ["a.json"]);
    }

    #[test]
    fn symbolic_links_are_followed_and_stay_links() {
        let dir = TempDir::new("links");
        let target = dir.0.join("target.json");
        fs::write(&target, "old").unwrap();
        std::os::unix::fs::symlink("target.json", dir.0.join("one")).unwrap();
        std::os::unix::fs::symlink(dir.0.join("one"), dir.0.join("two")).unwrap();
        write_file(&dir.0.join("two"), b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        for link in ["one", "two"] {
            assert!(fs::symlink_metadata(dir.0.join(link)).unwrap().file_type().is_symlink(), "{link}");
        }
        // A dangling link creates its target.
        std::os::unix::fs::symlink("fresh.json", dir.0.join("dangling")).unwrap();
        write_file(&dir.0.join("dangling"), b"x").unwrap();
        assert_eq!(fs::read(dir.0.join("fresh.json")).unwrap(), b"x");
        // A loop is refused.
        std::os::unix::fs::symlink("loop-b", dir.0.join("loop-a")).unwrap();
        std::os::unix::fs::symlink("loop-a", dir.0.join("loop-b")).unwrap();
        let e = write_file(&dir.0.join("loop-a"), b"x").unwrap_err();
        assert!(matches!(e, SaveError::LinkLoop { .. }) && e.is_users(), "{e}");
    }

    #[test]
    fn devices_are_written_through_and_folders_refused() {
        write_file(Path::new("/dev/null"), b"nothing").unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(&fs::metadata("/dev/null").unwrap().file_type()));
        // A link through /proc is written through, not resolved to a path.
        write_file(Path::new("/dev/stderr"), b"").unwrap();
        let e = write_file(Path::new("/dev/full"), b"too much").unwrap_err();
        assert!(!e.is_users(), "{e}");
        assert!(e.to_string().starts_with("/dev/full: cannot write: "), "{e}");

        let dir = TempDir::new("folders");
        fs::create_dir(dir.0.join("sub")).unwrap();
        fs::write(dir.0.join("sub/x"), "keep").unwrap();
        let e = write_file(&dir.0.join("sub"), b"new").unwrap_err();
        assert!(matches!(e, SaveError::IsFolder { .. }) && e.is_users(), "{e}");
        assert!(e.to_string().ends_with("sub: is a folder; give the path of a file to write"), "{e}");
        let e = write_file(&dir.0.join("no/such/m.csv"), b"").unwrap_err();
        assert!(matches!(e, SaveError::NoFolder { .. }) && e.is_users(), "{e}");
        assert!(e.to_string().contains("no/such does not exist; create it first"), "{e}");
        assert_eq!(dir.files(), ["sub"]);
        assert_eq!(fs::read(dir.0.join("sub/x")).unwrap(), b"keep");
    }

    #[test]
    fn a_temporary_name_left_by_a_killed_process_is_skipped() {
        let dir = TempDir::new("taken");
        // The next names this process would take, as a killed process with
        // the same PID (PID 1 in a container) could have left them.
        let probe = temporary_name("m.csv");
        let n: u64 = probe.rsplit('-').next().unwrap().parse().unwrap();
        for k in n + 1..n + 5 {
            fs::write(dir.0.join(format!(".m.csv.tmp-{}-{k}", std::process::id())), "old").unwrap();
        }
        write_file(&dir.0.join("m.csv"), b"new").unwrap();
        assert_eq!(fs::read(dir.0.join("m.csv")).unwrap(), b"new");
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = TempDir::new("stale");
        // PIDs above the kernel's maximum (4194304) never live.
        let dead = dir.0.join(".checkpoint.json.tmp-4999999-3");
        let live = dir.0.join(format!(".checkpoint.json.tmp-{}-0", std::process::id()));
        // A user's file that merely looks like a temporary, of another name.
        let users = dir.0.join(".notes.tmp-4999999-1");
        for p in [&dead, &live, &users, &dir.0.join(".x.tmp-1-y"), &dir.0.join("keep.json")] {
            fs::write(p, "x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(&dir.0, &["checkpoint.json", "x"]), [dead]);
        assert_eq!(dir.files().len(), 4);
        assert_eq!(temporary_pid(&temporary_name("weights.json")), Some(std::process::id()));
        // Long names are cut (at a character boundary) to stay a valid file name.
        assert!(temporary_name(&"é".repeat(200)).starts_with(&format!(".{}.tmp-", "é".repeat(50))));
    }
}
