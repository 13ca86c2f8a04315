//! The CPU time other processes take while we time something, in cores,
//! as `scripts/norse/norse_cpu.py` measures it: the machine's busy time
//! (`/proc/stat`) less our own (`/proc/self/stat`), over the wall time.

use std::time::Instant;

/// A reading of the machine's and this process's CPU time.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    at: Instant,
    /// Busy jiffies of the machine and of this process, where readable.
    jiffies: Option<(u64, u64)>,
}

/// Reads the counters now.
pub fn snapshot() -> Snapshot {
    Snapshot { at: Instant::now(), jiffies: machine_busy().zip(own()) }
}

/// Other processes' CPU use between two snapshots, in cores; `None` where
/// `/proc` cannot be read.
pub fn foreign_cores(a: Snapshot, b: Snapshot) -> Option<f64> {
    let ((busy0, own0), (busy1, own1)) = (a.jiffies?, b.jiffies?);
    let wall = b.at.duration_since(a.at).as_secs_f64();
    if wall <= 0.0 {
        return None;
    }
    let foreign = busy1.saturating_sub(busy0) as f64 - own1.saturating_sub(own0) as f64;
    Some((foreign / CLOCK_TICKS / wall).max(0.0))
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux kernel configuration in use.
const CLOCK_TICKS: f64 = 100.0;

/// Busy jiffies of the whole machine: all time but idle and iowait.
fn machine_busy() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let vals: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = vals.iter().sum();
    Some(total - vals.get(3)? - vals.get(4).copied().unwrap_or(0))
}

/// This process's user + system jiffies.
fn own() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_load_on_linux() {
        let a = snapshot();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = snapshot();
        if cfg!(target_os = "linux") {
            let f = foreign_cores(a, b).expect("/proc is readable on Linux");
            assert!(f >= 0.0 && f.is_finite(), "{f}");
        }
    }
}
