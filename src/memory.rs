//! The memory a run, a compilation or a training step needs, and the one
//! rule that refuses it before anything is allocated.
//!
//! The driver lists what the work will hold ([`Need`]: the buffers of the
//! target's plan, each sized per sample or fixed — the CPU executor's
//! [`snnc_cpu::Executable::planned_buffers`], every value of the
//! interpreter, the CUDA manifest's buffers — plus host bytes such as
//! parsed JSON), and [`check`] applies, in this order:
//!
//! 1. more than [`ABSURD_BYTES`] in all, or on CUDA one tensor of more
//!    than [`MAX_TENSOR_VALUES`] values: the input is absurd (exit 2); the
//!    message names the layer and the tensor and its size;
//! 2. more than the memory [`available`]: this machine is too small
//!    (exit 3); the message says how much is needed and available and the
//!    largest `--batch` that fits (every buffer is linear in the batch
//!    size).
//!
//! The memory available is the smallest of `MemAvailable` in
//! `/proc/meminfo`, the cgroup's `memory.max` less `memory.current`, and
//! the address-space limit (`ulimit -v`) less the process's `VmSize`; or
//! exactly the value of the environment variable [`LIMIT_ENV`]
//! (`SNNC_MEMORY_LIMIT=BYTES`, with an optional suffix `K`, `M`, `G` or `T`
//! for powers of 1024), which tests use to reach the exit-3 path without
//! allocating. The backends allocate their large buffers fallibly, so an
//! estimate that is off still ends in an error, not an abort.
//!
//! Files are read with limits as well ([`read_json_file`]): at most a
//! limit plus one byte, so `/dev/zero` or a pipe that never ends is
//! refused instead of filling the memory.

use std::io::Read;
use std::path::Path;

use snnc_cpu::PlannedBuffer;
use snnc_ir::{Dim, Handle, Module, Node, Op, Shape};

use crate::driver::{Error, ModuleRunner};

/// The environment variable that sets the memory available, in bytes.
pub const LIMIT_ENV: &str = "SNNC_MEMORY_LIMIT";
/// The most values the CUDA backend holds in one tensor (its kernels index
/// with 32 bits): 2^31, 8 GiB of f32.
pub const MAX_TENSOR_VALUES: u128 = 1 << 31;
/// More bytes than this for one run is absurd (1 TiB).
pub const ABSURD_BYTES: u128 = 1 << 40;
/// The largest JSON file (`--input`, `--profile`) read: 1 GiB.
pub const MAX_JSON_BYTES: u64 = 1 << 30;
/// Bytes a parsed JSON document takes per byte of its text, at most
/// (`serde_json::Value` is 32 bytes; the shortest number, `0,`, 2 bytes).
pub const JSON_EXPANSION: u128 = 16;
/// Bytes a binary weights file (safetensors) takes in memory per byte of the
/// file, at most: the file itself, and an f64 per 2-byte f16 value.
pub const BINARY_EXPANSION: u128 = 5;

/// The buffers of one module run with one batch size.
#[derive(Debug)]
pub struct Part<'a> {
    pub module: &'a Module,
    pub batch: u64,
    pub buffers: Vec<PlannedBuffer>,
    /// The most values the target can hold in one tensor, where it has a
    /// limit of its own: [`MAX_TENSOR_VALUES`] on CUDA (32-bit indices);
    /// host targets have none but the memory.
    pub tensor_limit: Option<u128>,
}

/// What some work (a run, a training step, parsing a file) will hold.
#[derive(Debug)]
pub struct Need<'a> {
    /// The work, as the messages name it: "running `lif` on cpu".
    pub what: String,
    pub parts: Vec<Part<'a>>,
    /// Bytes besides the parts' buffers (host tensors, parsed text).
    pub extra: u128,
}

impl<'a> Need<'a> {
    /// A need of `extra` bytes only.
    pub fn bytes(what: impl Into<String>, extra: u128) -> Need<'a> {
        Need { what: what.into(), parts: Vec::new(), extra }
    }

    /// The batch size the work runs with (the largest of its parts').
    pub fn batch(&self) -> u64 {
        self.parts.iter().map(|p| p.batch).max().unwrap_or(1)
    }

    /// The bytes for batch size `b` (each part runs `min(b, its batch)`).
    pub fn bytes_at(&self, b: u64) -> u128 {
        let parts = self.parts.iter().flat_map(|p| p.buffers.iter().map(move |x| x.bytes_at(p.batch.min(b))));
        parts.fold(self.extra, u128::saturating_add)
    }

    /// The largest batch size below the work's whose bytes are at most
    /// `limit`, if any.
    fn batch_within(&self, limit: u128) -> Option<u64> {
        let (mut lo, mut hi) = (0u64, self.batch());
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if self.bytes_at(mid) <= limit { lo = mid } else { hi = mid }
        }
        (lo >= 1 && self.bytes_at(lo) <= limit).then_some(lo)
    }

    /// The largest tensor: its part, buffer and values at the work's batch.
    fn largest(&self) -> Option<(&Part<'a>, &PlannedBuffer, u128)> {
        self.parts
            .iter()
            .flat_map(|p| p.buffers.iter().filter(|b| b.node.is_some()).map(move |b| (p, b)))
            .map(|(p, b)| (p, b, b.bytes_at(p.batch) / u128::from(b.elem_bytes.max(1))))
            .max_by_key(|&(_, _, values)| values)
    }
}

/// Refuses `what`, runs of each runner with its batch size (buffers held
/// together), if they do not fit (device memory is not compared with the
/// host's: a cuda runner gets the absurdity limits only).
pub fn check_runs(what: &str, runs: &[(&ModuleRunner, usize)]) -> Result<(), Error> {
    let parts = runs.iter().map(|(r, batch)| r.memory_part(*batch)).collect();
    let need = Need { what: what.to_string(), parts, extra: 0 };
    if runs.iter().any(|(r, _)| matches!(r, ModuleRunner::Cuda(_))) {
        return check_against(&need, None);
    }
    check(&need)
}

/// Applies the rule of the module doc to `need`.
pub fn check(need: &Need<'_>) -> Result<(), Error> {
    check_against(need, available()?)
}

/// [`check`] with the memory available given (`None`: the absurdity
/// limits only, e.g. for device memory).
pub fn check_against(need: &Need<'_>, avail: Option<Available>) -> Result<(), Error> {
    let batch = need.batch();
    let total = need.bytes_at(batch);
    let largest = need.largest();
    let limit = largest.and_then(|(p, _, _)| p.tensor_limit);
    let tensor = largest.map(|(p, b, values)| {
        let h = b.node.expect("only node buffers are compared");
        let mut name = describe(p.module, h);
        let ty = &p.module.nodes[h].ty;
        if !ty.seq && values > u128::from(ty.shape.fixed_elements()).saturating_mul(u128::from(p.batch)) {
            name += &format!(" (kept for all {} steps)", p.module.steps);
        }
        let size = bytes(values.saturating_mul(u128::from(b.elem_bytes)));
        (name, values, size, b.batched)
    });
    let batch_fix = |limit: u128| match need.batch_within(limit) {
        Some(b) => format!("use --batch {b} or smaller"),
        None if batch > 1 => "even --batch 1 does not fit: make the network smaller".to_string(),
        None => "make the network smaller (fewer steps, smaller layers, less padding)".to_string(),
    };
    if let Some((name, values, size, batched)) = &tensor
        && let Some(limit) = limit
        && *values > limit
    {
        let fix = if *batched && batch > 1 {
            let per_sample = values / u128::from(batch);
            match u64::try_from(limit / per_sample.max(1)) {
                Ok(b) if b >= 1 => format!("use --batch {b} or smaller"),
                _ => "make the layer smaller".to_string(),
            }
        } else {
            "make the layer smaller (its shape, padding, or the number of steps)".to_string()
        };
        return Err(Error::User(format!(
            "{}{}: {name} would hold {values} values ({size}), more than the {limit} the target allows in one \
             tensor; {fix}",
            need.what,
            with_batch(batch)
        )));
    }
    if total > ABSURD_BYTES {
        let what =
            tensor.as_ref().map(|(name, _, size, _)| format!(" (the largest is {name}, {size})")).unwrap_or_default();
        return Err(Error::User(format!(
            "{}{} would need {} of memory{what}, more than the {} snnc accepts; {}",
            need.what,
            with_batch(batch),
            bytes(total),
            bytes(ABSURD_BYTES),
            batch_fix(ABSURD_BYTES)
        )));
    }
    let Some(avail) = avail else { return Ok(()) };
    if total > u128::from(avail.bytes) {
        let what = tensor
            .as_ref()
            .map(|(name, _, size, _)| format!("; the largest tensor is {name}, {size}"))
            .unwrap_or_default();
        return Err(Error::Environment(format!(
            "{}{} needs {} of memory, but this machine has {} available ({}){what}; {}",
            need.what,
            with_batch(batch),
            bytes(total),
            bytes(u128::from(avail.bytes)),
            avail.source,
            batch_fix(u128::from(avail.bytes))
        )));
    }
    Ok(())
}

fn with_batch(batch: u64) -> String {
    if batch > 1 { format!(" with batch {batch}") } else { String::new() }
}

/// A node's value as messages name it: "tensor `lif1.v` of layer `lif1`",
/// "input `x`", or for an unnamed node its layer as
/// [`snnc_ir::layer::layer_of`] finds it ("the conv2d output %12
/// (f32[T,B,4,40004,40004]) of layer `conv1`").
pub fn describe(module: &Module, h: Handle<Node>) -> String {
    let node = &module.nodes[h];
    let what = match (&node.name, &node.op) {
        (Some(name), _) if !name.contains('.') => return format!("tensor `{name}`"),
        (Some(name), _) => format!("tensor `{name}`"),
        (None, Op::Input(i)) => return format!("input `{}`", module.inputs[*i].name),
        (None, Op::Param(p)) => format!("parameter `{}`", module.params[*p].name),
        _ => format!("the {} output %{} ({})", node.op.mnemonic(), h.index(), node.ty),
    };
    match snnc_ir::layer::layer_of(module, h) {
        Some(layer) => format!("{what} of layer `{layer}`"),
        None => what,
    }
}

/// Bytes as people read them: `512 B`, `3.2 MiB`, `25.6 GiB`.
pub fn bytes(n: u128) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The memory this process may still use, and where the figure comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Available {
    pub bytes: u64,
    pub source: String,
}

/// The memory available (see the module doc); `None` where nothing says.
/// A malformed [`LIMIT_ENV`] is the user's error.
pub fn available() -> Result<Option<Available>, Error> {
    if let Some(v) = std::env::var_os(LIMIT_ENV) {
        let text = v.to_string_lossy();
        let bytes = parse_bytes(&text)
            .ok_or_else(|| Error::User(format!("{LIMIT_ENV}={text}: not a byte count; write e.g. 8589934592 or 8G")))?;
        return Ok(Some(Available { bytes, source: format!("{LIMIT_ENV}={text}") }));
    }
    let read = |path: &str| std::fs::read_to_string(path).ok();
    // `Key:   123 kB` in a /proc file, in bytes.
    let field = |text: &str, key: &str| {
        let line = text.lines().find(|l| l.starts_with(key))?;
        let kb: u64 = line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        kb.checked_mul(1024)
    };
    let mut best: Option<Available> = None;
    let mut consider = |bytes: Option<u64>, source: &str| {
        if let Some(bytes) = bytes
            && best.as_ref().is_none_or(|b| bytes < b.bytes)
        {
            best = Some(Available { bytes, source: source.to_string() });
        }
    };
    consider(read("/proc/meminfo").and_then(|t| field(&t, "MemAvailable:")), "MemAvailable in /proc/meminfo");
    let cgroup = |f: &str| read(&format!("/sys/fs/cgroup/{f}")).and_then(|t| t.trim().parse::<u64>().ok());
    if let (Some(max), Some(current)) = (cgroup("memory.max"), cgroup("memory.current")) {
        // `memory.current` counts the page cache too, which the kernel
        // reclaims before it fails an allocation: its inactive part is free.
        let cache = read("/sys/fs/cgroup/memory.stat")
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("inactive_file ")?.trim().parse::<u64>().ok()))
            .unwrap_or(0);
        let used = current.saturating_sub(cache);
        consider(Some(max.saturating_sub(used)), "the cgroup's memory.max less memory.current's unreclaimable part");
    }
    let address_limit = read("/proc/self/limits").and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("Max address space"))?;
        line.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    if let Some(limit) = address_limit {
        let mapped = read("/proc/self/status").and_then(|t| field(&t, "VmSize:")).unwrap_or(0);
        consider(Some(limit.saturating_sub(mapped)), "the address-space limit (ulimit -v) less what snnc maps");
    }
    Ok(best)
}

/// `4096`, `512K`, `2G`, `1T` (powers of 1024; `KiB`/`KB`/`k` alike).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().ok()?;
    let shift = match t[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// Reads the text of a JSON file of at most `limit` bytes (`what` names it
/// in messages: "the input file"), then checks that parsing it fits in
/// memory. A longer file, one that never ends (`/dev/zero`), or a NUL
/// byte (never in JSON text) is the user's error.
pub fn read_json_file(path: &Path, what: &str, limit: u64) -> Result<String, Error> {
    let text = read_bounded(path, what, limit, JSON_EXPANSION, true)?;
    String::from_utf8(text).map_err(|e| {
        let why = format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to());
        Error::User(format!("{}: cannot read {what}: {why}", path.display()))
    })
}

/// Reads a binary file (a safetensors weights file) of at most `limit`
/// bytes by the rule of [`read_json_file`], without its text checks; what
/// it becomes must fit in memory ([`BINARY_EXPANSION`]).
pub fn read_binary_file(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, Error> {
    read_bounded(path, what, limit, BINARY_EXPANSION, false)
}

/// The one bounded reader: at most `limit` bytes, refusing a NUL byte when
/// `text`, then a memory check of `expansion` bytes per byte read.
fn read_bounded(path: &Path, what: &str, limit: u64, expansion: u128, text: bool) -> Result<Vec<u8>, Error> {
    let fail = |why: String| Error::User(format!("{}: cannot read {what}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > limit
    {
        return Err(fail(too_long(meta.len().to_string() + " bytes", limit)));
    }
    let mut reader = file.take(limit + 1);
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(e.to_string())),
        };
        if text && let Some(i) = chunk[..n].iter().position(|&b| b == 0) {
            return Err(fail(format!(
                "byte {} is a NUL byte, and JSON is text: is it the right file?",
                bytes.len() + i
            )));
        }
        bytes.try_reserve(n).map_err(|_| fail("out of memory".into()))?;
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() as u64 > limit {
            return Err(fail(too_long(format!("more than {limit} bytes"), limit)));
        }
    }
    let need =
        Need::bytes(format!("{}: parsing {what}", path.display()), (bytes.len() as u128).saturating_mul(expansion));
    check(&need)?;
    Ok(bytes)
}

/// The longest weights file of `module` that [`read_json_file`] reads: 64
/// bytes per parameter value (a pretty-printed f64 with its indentation
/// takes about 30) plus 1 MiB.
pub fn weights_file_limit(module: &Module) -> u64 {
    let values = module.params.iter().fold(0u64, |acc, (_, p)| acc.saturating_add(p.shape.fixed_elements()));
    values.saturating_mul(64).saturating_add(1 << 20)
}

fn too_long(size: String, limit: u64) -> String {
    format!("it holds {size}, more than the {} snnc reads from such a file; is it the right file?", bytes(limit.into()))
}

/// The buffers the reference interpreter holds for a run of `module`, as
/// its plan makes them: every node's value (`T ×` for sequence values),
/// the per-step history of `collect`ed values (and of every named
/// step-loop node when `record`), states, inputs and parameters, in the
/// module's float type; the outputs and traces as f64 host tensors.
pub fn interp_buffers(module: &Module, record: bool) -> Vec<PlannedBuffer> {
    let steps = u128::from(module.steps);
    let elem = if module.float == snnc_ir::Dtype::F64 { 8u8 } else { 4 };
    let count = |shape: &Shape, times: u128| {
        let n = shape.0.iter().fold(times, |acc, d| match d {
            Dim::Fixed(n) => acc.saturating_mul(u128::from(*n)),
            Dim::Batch => acc,
        });
        (shape.0.contains(&Dim::Batch), n)
    };
    let keep = module.kept_per_step(record);
    let mut res = Vec::new();
    let mut push = |node, (batched, n): (bool, u128), times: u128, elem_bytes: u8| {
        let bytes = n.saturating_mul(times).saturating_mul(u128::from(elem_bytes));
        res.push(PlannedBuffer { node, batched, bytes, elem_bytes });
    };
    for (h, node) in module.nodes.iter() {
        let full = count(&node.ty.shape, if node.ty.seq { steps } else { 1 });
        push(Some(h), full, 1, elem);
        if keep[h.index()] {
            push(Some(h), full, steps, elem);
        }
        if let Op::Fused(k) = &node.op {
            push(Some(h), full, k.outputs.len() as u128, elem);
        }
        if record && node.name.is_some() {
            push(Some(h), full, if keep[h.index()] { steps } else { 1 }, 8);
        }
    }
    for o in &module.outputs {
        let ty = &module.nodes[o.value].ty;
        push(Some(o.value), count(&ty.shape, if ty.seq { steps } else { 1 }), 1, 8);
    }
    for (_, s) in module.states.iter() {
        push(None, count(&s.ty.shape, 1), 2, elem);
    }
    for (_, input) in module.inputs.iter() {
        push(None, count(&input.ty.shape, if input.ty.seq { steps } else { 1 }), 1, elem);
    }
    for (_, p) in module.params.iter() {
        push(None, (false, count(&p.shape, 1).1), 1, elem);
    }
    res
}

/// The device buffers of a CUDA manifest (every value in f32).
pub fn cuda_buffers(module: &Module, manifest: &snnc_cuda::Manifest) -> Vec<PlannedBuffer> {
    manifest
        .buffers
        .iter()
        .map(|b| PlannedBuffer {
            node: b.nodes.first().map(|&i| Handle::from_index(i as usize)).filter(|h| h.index() < module.nodes.len()),
            batched: b.batched,
            bytes: u128::from(b.bytes_per_sample),
            elem_bytes: 4,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_byte_counts() {
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("512 MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("99999999999T"), None);
    }

    #[test]
    fn prints_bytes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(bytes(ABSURD_BYTES), "1.0 TiB");
    }
}
