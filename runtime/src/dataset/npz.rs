//! A user's data set in one `.npz` file (NumPy's `np.savez`).
//!
//! # Arrays
//!
//! Two splits, `x_train`, `y_train`, `x_test`, `y_test`; or one set `x`,
//! `y` whose last `ceil(F·N)` samples are the test split (`--test-split F`,
//! scikit-learn's `train_test_split(..., test_size=F, shuffle=False)`).
//!
//! - `x`: float16/32/64 (converted to float32; NaN and infinities are
//!   refused) or uint8 (normalised as [`Normalize`] says: `x / 255` by
//!   default, `(x / 255 - mean) / std` with `--normalize MEAN,STD`, which
//!   only bytes take);
//! - `y`: integer class labels `[N]` (0 to 255, each below the network's
//!   class count) or float targets `[N, ...]` ([`Targets::Values`]).
//!
//! Whether samples are static or sequences is the network's choice
//! ([`Layout`]): a network with an encoder takes `x` of shape `[N, ...input]`,
//! one without takes `[N, T, ...input]` with `T` its `steps`. "`...input`"
//! is the network's `input` or any shape of as many values (row-major, as
//! `reshape` reads it).
//!
//! # Events (Tonic)
//!
//! A file with an array `sensor_size` (`[W, H, P]`, Tonic's
//! `sensor_size`) holds event recordings: one structured array per sample
//! with integer fields `x`, `y`, `t`, `p` (Tonic's event dtype, any field
//! order and integer width), under `x_train_0` … `x_train_{N-1}` with
//! `y_train` and `x_test_0` … with `y_test`, or `x_0` … with `y` and
//! `--test-split`. Each is binned into `T` frames `[T, P, H, W]` (`T` the
//! network's steps) as Tonic's `ToFrame(sensor_size, n_time_bins=T)` does
//! ([`super::events`]): sequences for a network without an encoder whose
//! input is `[P, H, W]` or as many values. A Tonic data set is written so:
//!
//! ```python
//! import numpy as np, tonic
//! train = tonic.datasets.NMNIST("data", train=True)
//! test = tonic.datasets.NMNIST("data", train=False)
//! arrays = {"sensor_size": np.array(tonic.datasets.NMNIST.sensor_size)}
//! for name, ds in (("train", train), ("test", test)):
//!     labels = []
//!     for i, (events, label) in enumerate(ds):
//!         arrays[f"x_{name}_{i}"] = events
//!         labels.append(label)
//!     arrays[f"y_{name}"] = np.array(labels, dtype=np.int64)
//! np.savez("nmnist.npz", **arrays)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use super::events::{EventFrames, Events};
use super::{DataError, Dataset, InputKind, Inputs, Normalize, Split};
use crate::Targets;
use crate::npy::{NpyArray, NpyValues, read_npz};

/// What the network takes, which decides how `x` is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The network's name, for messages.
    pub network: String,
    /// The network's per-sample (per-step, without an encoder) input shape.
    pub input: Vec<usize>,
    /// Whether the network has an encoder (static samples).
    pub encoder: bool,
    /// The network's time steps `T`.
    pub steps: usize,
}

impl Layout {
    /// The shape `x` must have: `[N, ...input]` or `[N, T, ...input]`.
    fn wanted(&self) -> String {
        let input = self.input.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
        if self.encoder { format!("[N, {input}]") } else { format!("[N, {}, {input}]", self.steps) }
    }
}

/// The flags that say how a file is read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NpzOptions {
    /// `--test-split F`: the last `ceil(F·N)` samples of `x`, `y` are the
    /// test split.
    pub test_split: Option<f64>,
    /// `--normalize MEAN,STD` for uint8 `x`.
    pub normalize: Option<Normalize>,
}

/// A file's identity, recorded in a checkpoint so that a resumed run trains
/// on the same data: its size and the FNV-1a 64-bit hash of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    pub bytes: u64,
    pub fnv1a64: String,
}

impl FileId {
    /// The identity of `bytes`.
    pub fn of(bytes: &[u8]) -> FileId {
        let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        FileId { bytes: bytes.len() as u64, fnv1a64: format!("{h:016x}") }
    }
}

/// The arrays of a file and its path, for errors naming both.
struct File<'a> {
    path: &'a Path,
    arrays: BTreeMap<String, NpyArray>,
}

impl File<'_> {
    fn error(&self, why: impl Into<String>) -> DataError {
        DataError::Format { path: self.path.to_path_buf(), why: why.into() }
    }

    fn keys(&self) -> String {
        self.arrays.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
    }

    fn get(&self, key: &str) -> Result<&NpyArray, DataError> {
        self.arrays
            .get(key)
            .ok_or_else(|| self.error(format!("no array `{key}` (the file holds {}); {}", self.keys(), LAYOUTS)))
    }
}

/// The layouts a file may have, for errors.
const LAYOUTS: &str = "a data file holds x_train, y_train, x_test, y_test, or x and y with --test-split F (event \
                       recordings: sensor_size and x_train_0, x_train_1, ... or x_0, x_1, ...)";

impl Dataset {
    /// Reads a data set from an `.npz` file for a network taking `layout`
    /// (see the module doc).
    pub fn npz(path: &Path, layout: &Layout, opts: &NpzOptions) -> Result<Dataset, DataError> {
        let arrays = read_npz(path).map_err(|e| DataError::Format { path: path.to_path_buf(), why: npy_why(e) })?;
        let bytes = std::fs::read(path)
            .map_err(|e| DataError::Format { path: path.to_path_buf(), why: format!("cannot read: {e}") })?;
        let file = File { path, arrays };
        let events = file.arrays.contains_key("sensor_size");
        let (one, two) = if events {
            (file.arrays.contains_key("x_0"), file.arrays.contains_key("x_train_0"))
        } else {
            (file.arrays.contains_key("x"), file.arrays.contains_key("x_train"))
        };
        let prefixes: [(&'static str, &str, &str); 2] = match (one, two, opts.test_split) {
            (true, true, _) => {
                return Err(file.error(format!(
                    "it holds both one set (x, y) and two splits (x_train, ...): keep one; {LAYOUTS}"
                )));
            }
            (false, true, Some(_)) => {
                return Err(file.error(
                    "it holds a training and a test split (x_train, x_test): drop --test-split, which splits a \
                     file of one set (x, y)",
                ));
            }
            (false, true, None) => [("train", "x_train", "y_train"), ("test", "x_test", "y_test")],
            (true, false, None) => {
                return Err(file.error(
                    "it holds one set (x, y): give --test-split F to keep its last F·N samples for testing (or \
                     save x_train, y_train, x_test, y_test)",
                ));
            }
            (true, false, Some(_)) => [("all", "x", "y"), ("", "", "")],
            (false, false, _) => {
                let x = if events { "x_train_0` or `x_0" } else { "x_train` or `x" };
                return Err(file.error(format!("no array `{x}` (the file holds {}); {LAYOUTS}", file.keys())));
            }
        };
        let read = |name: &'static str, x: &str, y: &str| {
            if events { read_events(&file, name, x, y, layout) } else { read_split(&file, name, x, y, layout, opts) }
        };
        let (train, test) = match prefixes {
            [(_, x, y), ("", _, _)] => {
                let all = read("train", x, y)?;
                cut(&file, all, opts.test_split.unwrap_or(0.0))?
            }
            [(a, xa, ya), (b, xb, yb)] => (read(a, xa, ya)?, read(b, xb, yb)?),
        };
        let kind = if layout.encoder { InputKind::Static } else { InputKind::Sequence { steps: layout.steps } };
        Ok(Dataset { name: path.display().to_string(), kind, train, test, file: Some(FileId::of(&bytes)) })
    }
}

/// The reader's message without its leading path (the caller adds it).
fn npy_why(e: crate::npy::NpyError) -> String {
    let text = e.to_string();
    match &e {
        crate::npy::NpyError::Io { path, .. } | crate::npy::NpyError::Format { path, .. } => {
            text.strip_prefix(&format!("{path}: ")).map(str::to_string).unwrap_or(text)
        }
        _ => text,
    }
}

/// Splits one set: its last `ceil(f·N)` samples are the test split.
fn cut(file: &File<'_>, all: Split, f: f64) -> Result<(Split, Split), DataError> {
    let n = all.len();
    let n_test = (f * n as f64).ceil() as usize;
    if !(f > 0.0 && f < 1.0) || n_test == 0 || n_test >= n {
        return Err(file.error(format!(
            "--test-split {f} of its {n} samples leaves {} for training and {} for testing: each needs at least one \
             (F is a fraction between 0 and 1)",
            n.saturating_sub(n_test),
            n_test.min(n)
        )));
    }
    let n_train = n - n_test;
    let size = all.sample_size();
    let mut test = all.clone();
    test.name = "test";
    let mut train = all;
    train.truncate(n_train);
    test.inputs = match test.inputs {
        Inputs::U8 { data, table } => Inputs::U8 { data: data[n_train * size..].to_vec(), table },
        Inputs::F32(data) => Inputs::F32(data[n_train * size..].to_vec()),
        Inputs::Events(frames) => Inputs::Events(frames.skip(n_train)),
    };
    test.targets = match test.targets {
        Targets::Classes(labels) => Targets::Classes(labels[n_train..].to_vec()),
        Targets::Values { per_sample, data } => {
            let per = per_sample.iter().product::<usize>();
            Targets::Values { data: data[n_train * per..].to_vec(), per_sample }
        }
    };
    Ok((train, test))
}

/// `[2, 3]` as text.
fn shape_text(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// The targets of array `y` for `n` samples.
fn read_targets(file: &File<'_>, y: &str, n: usize) -> Result<Targets, DataError> {
    let a = file.get(y)?;
    if a.shape.first() != Some(&n) {
        return Err(file.error(format!(
            "array `{y}` has shape {}: it needs one target per sample of x, [{n}] (class labels) or [{n}, ...] \
             (float values)",
            shape_text(&a.shape)
        )));
    }
    let labels = |values: &mut dyn Iterator<Item = i64>| -> Result<Targets, DataError> {
        if a.shape.len() != 1 {
            return Err(file.error(format!(
                "array `{y}` holds integers of shape {}: class labels are one per sample, [{n}]",
                shape_text(&a.shape)
            )));
        }
        let mut out = Vec::with_capacity(n);
        for (i, v) in values.enumerate() {
            out.push(u8::try_from(v).map_err(|_| {
                file.error(format!(
                    "array `{y}`: label {v} of sample {i} is not a class: labels are 0 to 255 (number the classes \
                     from 0)"
                ))
            })?);
        }
        Ok(Targets::Classes(out))
    };
    match &a.values {
        NpyValues::U8(v) => labels(&mut v.iter().map(|&b| i64::from(b))),
        NpyValues::Int(v) => labels(&mut v.iter().copied()),
        NpyValues::Float { data, .. } => {
            let values = finite_f32(file, y, &a.shape, data)?;
            Ok(Targets::Values { per_sample: a.shape[1..].to_vec(), data: values })
        }
        NpyValues::Record(_) => Err(file.error(format!(
            "array `{y}` is a structured array ({}): targets are integer class labels or float values",
            a.descr
        ))),
    }
}

/// Float values as f32, refusing NaN and infinities (named by index).
fn finite_f32(file: &File<'_>, name: &str, shape: &[usize], data: &[f64]) -> Result<Vec<f32>, DataError> {
    let mut out = Vec::with_capacity(data.len());
    for (i, &v) in data.iter().enumerate() {
        let x = v as f32;
        if !x.is_finite() {
            let at = shape_text(&crate::tensor::index_of(shape, i));
            let why = if v.is_finite() { format!("{v}, beyond float32") } else { format!("{v}") };
            return Err(file.error(format!(
                "array `{name}` holds {why} at {at} (sample {}): inputs and targets must be finite numbers; remove \
                 or replace that sample",
                i / (data.len() / shape[0].max(1)).max(1)
            )));
        }
        out.push(x);
    }
    Ok(out)
}

/// Checks `x`'s per-sample shape against the network; the split's sample
/// shape (`[...input]` or `[T, ...input]`).
fn sample_shape(file: &File<'_>, x: &str, shape: &[usize], layout: &Layout) -> Result<Vec<usize>, DataError> {
    let per: usize = layout.input.iter().product();
    let rest = &shape[1.min(shape.len())..];
    let network = &layout.network;
    if layout.encoder {
        if !rest.is_empty() && rest.iter().product::<usize>() == per {
            return Ok(layout.input.clone());
        }
    } else if rest.len() >= 2 && rest[1..].iter().product::<usize>() == per {
        if rest[0] == layout.steps {
            let mut s = vec![layout.steps];
            s.extend(&layout.input);
            return Ok(s);
        }
        return Err(file.error(format!(
            "array `{x}` holds sequences of {} steps (shape {}), but network `{network}` runs {} steps: set `steps: \
             {}` in the network, or cut the sequences to {} steps",
            rest[0],
            shape_text(shape),
            layout.steps,
            rest[0],
            layout.steps
        )));
    }
    let input = shape_text(&layout.input);
    let (this, other) = if layout.encoder {
        let other = format!("[N, {}, {}]", layout.steps, &input[1..input.len() - 1]);
        (
            format!("has an encoder, so it takes static samples {}", layout.wanted()),
            format!("sequences {other} would fit it without the encoder"),
        )
    } else {
        let other = format!("[N, {}]", &input[1..input.len() - 1]);
        (
            format!("has no encoder, so it takes sequences of {} steps {}", layout.steps, layout.wanted()),
            format!("static samples {other} would fit it with an encoder"),
        )
    };
    Err(file.error(format!(
        "array `{x}` has shape {}, which does not fit network `{network}` (input {input}): it {this}; {other}",
        shape_text(shape)
    )))
}

/// A split of plain arrays `x`, `y`.
fn read_split(
    file: &File<'_>,
    name: &'static str,
    x: &str,
    y: &str,
    layout: &Layout,
    opts: &NpzOptions,
) -> Result<Split, DataError> {
    let a = file.get(x)?;
    let shape = sample_shape(file, x, &a.shape, layout)?;
    let n = a.shape[0];
    let inputs = match &a.values {
        NpyValues::U8(data) => {
            Inputs::U8 { data: data.clone(), table: Box::new(opts.normalize.unwrap_or(Normalize::UNIT).table()) }
        }
        NpyValues::Float { data, .. } => {
            if opts.normalize.is_some() {
                return Err(file.error(format!(
                    "array `{x}` holds floats ({}), which are used as they are: --normalize applies to uint8 \
                     inputs; drop it, or normalise the floats before saving them",
                    a.descr
                )));
            }
            Inputs::F32(finite_f32(file, x, &a.shape, data)?)
        }
        NpyValues::Int(_) | NpyValues::Record(_) => {
            return Err(file.error(format!(
                "array `{x}` has dtype {}: inputs are float (float16/32/64) or uint8 (save `x.astype(np.float32)` \
                 or `x.astype(np.uint8)`)",
                a.descr
            )));
        }
    };
    let targets = read_targets(file, y, n)?;
    Ok(Split { name, origin: format!("{}, array {y}", file.path.display()), shape, inputs, targets })
}

/// A split of event recordings `x_0`, `x_1`, ... (`x` is the prefix without
/// the index), labels `y`.
fn read_events(file: &File<'_>, name: &'static str, x: &str, y: &str, layout: &Layout) -> Result<Split, DataError> {
    let s = file.get("sensor_size")?;
    let sensor: Vec<f64> = match &s.values {
        NpyValues::U8(v) => v.iter().map(|&b| f64::from(b)).collect(),
        NpyValues::Int(v) => v.iter().map(|&i| i as f64).collect(),
        NpyValues::Float { data, .. } => data.clone(),
        NpyValues::Record(_) => Vec::new(),
    };
    let sensor: [usize; 3] = match sensor[..] {
        [w, h, p] if [w, h, p].iter().all(|&d| d >= 1.0 && d.fract() == 0.0 && d < 1e9) => {
            [w as usize, h as usize, p as usize]
        }
        _ => {
            return Err(file.error(format!(
                "array `sensor_size` is {:?}: it is Tonic's sensor_size, three positive integers [W, H, P]",
                sensor
            )));
        }
    };
    let [w, h, p] = sensor;
    if layout.encoder {
        return Err(file.error(format!(
            "it holds event recordings, binned into {} frames [P, H, W] = [{p}, {h}, {w}] per sample (sequences): \
             network `{}` has an encoder; remove it and give the network `input: [{p}, {h}, {w}]`",
            layout.steps, layout.network
        )));
    }
    if layout.input.iter().product::<usize>() != p * h * w {
        return Err(file.error(format!(
            "its frames are [P, H, W] = [{p}, {h}, {w}] (sensor_size [{w}, {h}, {p}]), but network `{}` takes input \
             {}: give it `input: [{p}, {h}, {w}]` (or [{}])",
            layout.network,
            shape_text(&layout.input),
            p * h * w
        )));
    }
    let prefix = format!("{x}_");
    let count =
        file.arrays.keys().filter(|k| k.strip_prefix(&prefix).is_some_and(|i| i.parse::<usize>().is_ok())).count();
    let targets = read_targets(file, y, count)?;
    let mut frames = EventFrames::new(sensor, layout.steps);
    for i in 0..count {
        let key = format!("{prefix}{i}");
        let a = file.get(&key)?;
        let NpyValues::Record(fields) = &a.values else {
            return Err(file.error(format!(
                "array `{key}` has dtype {}: a recording is a structured array with fields x, y, t, p (Tonic's events)",
                a.descr
            )));
        };
        let field = |f: &str| {
            fields.iter().find(|(n, _)| n == f).map(|(_, v)| v.as_slice()).ok_or_else(|| {
                file.error(format!(
                    "array `{key}` has no field `{f}` (its dtype is {}): recordings have fields x, y, t, p",
                    a.descr
                ))
            })
        };
        let ev = Events { x: field("x")?, y: field("y")?, t: field("t")?, p: field("p")? };
        frames.push(ev).map_err(|e| file.error(format!("array `{key}`: {e}")))?;
    }
    let mut shape = vec![layout.steps];
    shape.extend(&layout.input);
    Ok(Split {
        name,
        origin: format!("{}, array {y}", file.path.display()),
        shape,
        inputs: Inputs::Events(frames),
        targets,
    })
}
