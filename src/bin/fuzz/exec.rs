//! Running `snnc` as a child process: under an address-space limit
//! (`prlimit --as`), with a wall-clock timeout, stdin null, in the case's
//! folder; and classifying how it ended.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::locate::{Context, locate};

/// The most bytes of stdout and of stderr kept of one command.
const KEEP: usize = 1 << 20;

/// How to run snnc.
#[derive(Clone, Debug)]
pub struct Runner {
    pub snnc: PathBuf,
    /// The address-space limit in bytes, or `None` to run without `prlimit`.
    pub limit_as: Option<u64>,
    pub timeout: Duration,
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Exit(i32),
    Signal(i32),
    /// Still running after the timeout; it was killed.
    Timeout,
    /// It could not be started (a harness problem, not snnc's).
    NoStart(String),
}

/// A finished command.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Outcome {
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl Runner {
    /// Runs `snnc ARGS` in `dir` and waits for it, at most the timeout.
    pub fn run(&self, dir: &Path, args: &[String]) -> Outcome {
        let mut cmd = match self.limit_as {
            Some(bytes) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--as={bytes}")).arg("--").arg(&self.snnc);
                c
            }
            None => Command::new(&self.snnc),
        };
        cmd.args(args).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // No colours or backtraces that differ between machines.
        cmd.env("RUST_BACKTRACE", "0").env("NO_COLOR", "1");
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Outcome { status: Status::NoStart(e.to_string()), stdout: vec![], stderr: vec![] },
        };
        let out = reader(child.stdout.take());
        let err = reader(child.stderr.take());
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s.code().map(Status::Exit).or(s.signal().map(Status::Signal)),
                Ok(None) if start.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Some(Status::Timeout);
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => break Some(Status::NoStart(e.to_string())),
            }
        };
        let status = status.unwrap_or(Status::NoStart("no exit code and no signal".into()));
        Outcome { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
    }
}

/// Reads a pipe to its end on a thread, keeping the first [`KEEP`] bytes.
fn reader(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let Some(mut pipe) = pipe else { return kept };
        let mut buf = [0u8; 1 << 16];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = KEEP.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        kept
    })
}

/// What a command's ending says about snnc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Exit 0.
    Ok,
    /// Exit 2 with a message that locates the problem.
    User,
    /// Exit 3: the machine lacks something.
    Environment,
    /// Exit 2 with a message that does not locate the problem.
    Unlocated,
    /// Exit 1: snnc reports a bug of its own.
    Internal,
    /// Exit 101 or `panicked at` on stderr.
    Panic,
    /// SIGABRT, or `memory allocation of` on stderr.
    Abort,
    /// Killed by another signal.
    Signal,
    /// Still running at the timeout.
    Hang,
    /// Any other exit code.
    OtherExit,
    /// The harness could not start the command.
    NoStart,
}

impl Class {
    pub const ALL: [Class; 11] = [
        Class::Ok,
        Class::User,
        Class::Environment,
        Class::Unlocated,
        Class::Internal,
        Class::Panic,
        Class::Abort,
        Class::Signal,
        Class::Hang,
        Class::OtherExit,
        Class::NoStart,
    ];

    /// The name in the summary and in saved cases.
    pub fn name(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::User => "user",
            Class::Environment => "environment",
            Class::Unlocated => "unlocated",
            Class::Internal => "internal",
            Class::Panic => "panic",
            Class::Abort => "abort",
            Class::Signal => "signal",
            Class::Hang => "hang",
            Class::OtherExit => "other-exit",
            Class::NoStart => "no-start",
        }
    }

    /// A breach of the CLI's contract (the harness exits 1 when it saw one).
    pub fn is_failure(self) -> bool {
        !matches!(self, Class::Ok | Class::User | Class::Environment)
    }
}

/// Classifies a finished command; exit-2 messages are checked by
/// [`locate`] against what the command was given.
pub fn classify(o: &Outcome, cx: &Context) -> Class {
    let err = o.stderr_text();
    match o.status {
        Status::Timeout => Class::Hang,
        Status::NoStart(_) => Class::NoStart,
        _ if err.contains("panicked at") || o.status == Status::Exit(101) => Class::Panic,
        _ if err.contains("memory allocation of") || o.status == Status::Signal(6) => Class::Abort,
        Status::Signal(_) => Class::Signal,
        Status::Exit(0) => Class::Ok,
        Status::Exit(1) => Class::Internal,
        Status::Exit(2) if locate(&err, cx).is_some() => Class::User,
        Status::Exit(2) => Class::Unlocated,
        Status::Exit(3) => Class::Environment,
        Status::Exit(_) => Class::OtherExit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: Status, stderr: &str) -> Outcome {
        Outcome { status, stdout: vec![], stderr: stderr.as_bytes().to_vec() }
    }

    #[test]
    fn classes() {
        let cx = Context { files: vec!["net.ron".into()], ..Default::default() };
        let c = |s, e| classify(&outcome(s, e), &cx);
        assert_eq!(c(Status::Exit(0), ""), Class::Ok);
        assert_eq!(c(Status::Exit(2), "net.ron:1:2: error: x"), Class::User);
        assert_eq!(c(Status::Exit(2), "error: bad"), Class::Unlocated);
        assert_eq!(c(Status::Exit(3), "error: no GPU"), Class::Environment);
        assert_eq!(c(Status::Exit(1), "internal error"), Class::Internal);
        assert_eq!(c(Status::Exit(101), ""), Class::Panic);
        assert_eq!(c(Status::Exit(2), "thread 'main' panicked at src/x.rs:1:2"), Class::Panic);
        assert_eq!(c(Status::Signal(6), ""), Class::Abort);
        assert_eq!(c(Status::Signal(9), "memory allocation of 8 bytes failed"), Class::Abort);
        assert_eq!(c(Status::Signal(11), ""), Class::Signal);
        assert_eq!(c(Status::Timeout, ""), Class::Hang);
        assert_eq!(c(Status::Exit(127), ""), Class::OtherExit);
    }

    #[test]
    fn runs_and_times_out() {
        let dir = std::env::temp_dir();
        let sh = |script: &str, secs| {
            let r = Runner { snnc: "sh".into(), limit_as: None, timeout: Duration::from_secs(secs) };
            r.run(&dir, &["-c".into(), script.into()])
        };
        let o = sh("echo out; echo err >&2; exit 2", 10);
        assert_eq!((o.status, o.stdout, o.stderr), (Status::Exit(2), b"out\n".to_vec(), b"err\n".to_vec()));
        assert_eq!(sh("kill -SEGV $$", 10).status, Status::Signal(11));
        assert_eq!(sh("exec sleep 30", 0).status, Status::Timeout);
    }
}
