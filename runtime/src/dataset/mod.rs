//! The data sets of `snnc train`: samples of any shape with their targets,
//! split into a training and a test split, and the seeded order of batches.
//!
//! A [`Dataset`] comes from one of three sources:
//!
//! - the image sets Fashion-MNIST and MNIST ([`images`]: IDX files, the
//!   Norse tutorials' normalisation);
//! - a user's `.npz` file of arrays ([`npz`]): `x` float or uint8, `y`
//!   integer class labels or float values;
//! - event recordings laid out as Tonic gives them, binned into frames as
//!   Tonic's `ToFrame(sensor_size, n_time_bins=T)` does ([`events`]).
//!
//! # Inputs
//!
//! Each split holds `len()` samples of one per-sample shape
//! ([`Split::shape`]) and is either
//!
//! - **static** ([`InputKind::Static`]): a sample is the network's input
//!   (`[...input]`), which the network's encoder turns into `T` steps; or
//! - **sequences** ([`InputKind::Sequence`]): a sample is `[T, ...input]`,
//!   one input per step, fed to a network without an encoder.
//!
//! [`Split::batch`] returns the samples sample-major, `[b, ...shape]`
//! float32, and their [`Targets`]; the trainer transposes sequences to the
//! network's `[T, b, ...]`.
//!
//! Samples are stored as bytes ([`Inputs::U8`], converted by a
//! [`Normalize`] table when a batch is made), as f32, or as event frames.
//!
//! # Normalisation of bytes
//!
//! torchvision's `ToTensor()` turns a `uint8` array into float32 `x / 255`
//! and `Normalize(mean, std)` then computes `(x - mean) / std` with `mean`
//! and `std` as float32 tensors. [`Normalize::apply`] does exactly that, one
//! f32 rounding per operation: `((byte as f32 / 255.0) - mean) / std`.
//! (`ToTensor()` also moves an image's channel axis from last to first;
//! nothing here moves axes: arrays are used in the layout they are given.)

pub mod events;
mod images;
pub mod npz;
mod shuffle;

use std::path::PathBuf;

pub use events::{EventFrames, FrameError, to_frame};
pub use images::{CLASSES, DEFAULT_DIR, ImageSet, SIDE};
pub use npz::{FileId, Layout, NpzOptions};
pub use shuffle::{batches, shuffle_order};

use crate::Targets;
use crate::tensor::{ElemType, Tensor};

/// Why a dataset could not be loaded or a batch made.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A dataset file is not there (the caller reports this as a missing
    /// part of the environment).
    #[error("{}: {set} file not found; {hint}", path.display())]
    Missing { path: PathBuf, set: &'static str, hint: String },
    /// A file is there but cannot be read or is not an IDX file.
    #[error(transparent)]
    Idx(#[from] crate::idx::IdxError),
    /// The file is read but its contents do not fit (wrong arrays, shapes,
    /// labels, values): `why` names the array and the fix.
    #[error("{}: {why}", path.display())]
    Format { path: PathBuf, why: String },
    /// A sample index past the end of the split.
    #[error("sample index {index} is out of range: the {split} split has {len} samples")]
    Index { split: &'static str, index: usize, len: usize },
    /// A batch size of zero.
    #[error("the batch size must be at least 1")]
    BatchSize,
}

/// Whether a sample is one input (encoded by the network) or one input per
/// step (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// `[...input]` per sample.
    Static,
    /// `[steps, ...input]` per sample.
    Sequence { steps: usize },
}

/// The normalisation of byte samples: `((byte / 255) - mean) / std` in f32
/// (torchvision's `ToTensor()` then `Normalize((mean,), (std,))`); `x / 255`
/// is mean 0, std 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    pub mean: f32,
    pub std: f32,
}

impl Normalize {
    /// `x / 255` (no mean or scale).
    pub const UNIT: Normalize = Normalize { mean: 0.0, std: 1.0 };

    /// One byte normalised.
    pub fn apply(self, byte: u8) -> f32 {
        ((f32::from(byte) / 255.0) - self.mean) / self.std
    }

    /// [`Normalize::apply`] of every byte, as f64 (a batch's values).
    pub fn table(self) -> [f64; 256] {
        std::array::from_fn(|p| f64::from(self.apply(p as u8)))
    }
}

/// The samples of a split, in one of their stored forms.
#[derive(Clone, Debug, PartialEq)]
pub enum Inputs {
    /// Bytes, converted by `table` (a [`Normalize::table`]).
    U8 { data: Vec<u8>, table: Box<[f64; 256]> },
    /// Float32 values as given.
    F32(Vec<f32>),
    /// Events, binned into frames when a batch is made.
    Events(EventFrames),
}

/// One split (training or test): samples and their targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// `"train"` or `"test"`.
    pub name: &'static str,
    /// Where the targets come from, for messages (a file, or a file and an
    /// array).
    pub origin: String,
    /// The shape of one sample: `[...input]` or `[T, ...input]`.
    pub shape: Vec<usize>,
    pub inputs: Inputs,
    /// One target per sample.
    pub targets: Targets,
}

impl Split {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values of one sample.
    pub fn sample_size(&self) -> usize {
        self.shape.iter().product()
    }

    /// The stored bytes, if samples are bytes.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.inputs {
            Inputs::U8 { data, .. } => Some(data),
            _ => None,
        }
    }

    /// Keeps the first `n` samples (all if there are fewer).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        let size = self.sample_size();
        match &mut self.inputs {
            Inputs::U8 { data, .. } => data.truncate(n * size),
            Inputs::F32(data) => data.truncate(n * size),
            Inputs::Events(frames) => frames.truncate(n),
        }
        match &mut self.targets {
            Targets::Classes(labels) => labels.truncate(n),
            Targets::Values { per_sample, data } => data.truncate(n * per_sample.iter().product::<usize>()),
        }
    }

    /// The samples at `indices`, in that order: `[b, ...shape]` float32
    /// (bytes normalised, events binned), and their targets.
    pub fn batch(&self, indices: &[usize]) -> Result<(Tensor, Targets), DataError> {
        let len = self.len();
        let size = self.sample_size();
        if let Some(&index) = indices.iter().find(|&&i| i >= len) {
            return Err(DataError::Index { split: self.name, index, len });
        }
        let mut data = Vec::with_capacity(indices.len() * size);
        for &index in indices {
            let range = index * size..(index + 1) * size;
            match &self.inputs {
                Inputs::U8 { data: bytes, table } => data.extend(bytes[range].iter().map(|&p| table[usize::from(p)])),
                Inputs::F32(values) => data.extend(values[range].iter().map(|&x| f64::from(x))),
                Inputs::Events(frames) => frames.frames_into(index, &mut data),
            }
        }
        let targets = match &self.targets {
            Targets::Classes(labels) => Targets::Classes(indices.iter().map(|&i| labels[i]).collect()),
            Targets::Values { per_sample, data: values } => {
                let per = per_sample.iter().product::<usize>();
                let data = indices.iter().flat_map(|&i| values[i * per..(i + 1) * per].iter().copied()).collect();
                Targets::Values { per_sample: per_sample.clone(), data }
            }
        };
        let mut shape = vec![indices.len()];
        shape.extend(&self.shape);
        Ok((Tensor { shape, dtype: ElemType::F32, data }, targets))
    }

    /// The first sample whose class label is not below `classes`:
    /// `(sample, label)`. `None` for float targets.
    pub fn label_outside(&self, classes: usize) -> Option<(usize, u8)> {
        let labels = self.targets.classes()?;
        labels.iter().position(|&y| usize::from(y) >= classes).map(|i| (i, labels[i]))
    }
}

/// A training and a test split of samples of one kind and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// What to call it: `Fashion-MNIST`, `MNIST`, or the file.
    pub name: String,
    pub kind: InputKind,
    pub train: Split,
    pub test: Split,
    /// The file it was read from, for a checkpoint (`None` for the image
    /// sets, which are named by their key).
    pub file: Option<FileId>,
}

impl Dataset {
    /// Keeps the first `n` training samples (all of them if there are fewer).
    /// The test split is unchanged.
    pub fn limit(mut self, n: usize) -> Dataset {
        self.train.truncate(n);
        self
    }

    /// Checks that every class label of both splits is below `classes` (the
    /// network's readout size; `network` names it for the message).
    pub fn check_classes(&self, classes: usize, network: &str) -> Result<(), String> {
        for split in [&self.train, &self.test] {
            if let Some((i, y)) = split.label_outside(classes) {
                return Err(format!(
                    "{}: label {y} of sample {i} is not a class of network `{network}`, whose readout has {classes} \
                     classes (0 to {}): give the readout (its last layer) at least {} outputs, or relabel the \
                     samples 0 to {}",
                    split.origin,
                    classes.saturating_sub(1),
                    usize::from(y) + 1,
                    classes.saturating_sub(1)
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(inputs: Inputs, shape: Vec<usize>, targets: Targets) -> Split {
        Split { name: "train", origin: "f.npz, array y".into(), shape, inputs, targets }
    }

    #[test]
    fn normalize_is_torchvisions_to_tensor_then_normalize() {
        // torch: (torch.tensor([0, 1, 128, 255], dtype=uint8).float() / 255 - 0.5) / 0.25
        let n = Normalize { mean: 0.5, std: 0.25 };
        assert_eq!(n.apply(0), -2.0);
        assert_eq!(n.apply(255), 2.0);
        assert_eq!(n.apply(128), ((128.0f32 / 255.0) - 0.5) / 0.25);
        // x / 255 alone: exactly the division.
        for b in [0u8, 1, 37, 200, 255] {
            assert_eq!(Normalize::UNIT.apply(b), f32::from(b) / 255.0);
        }
    }

    #[test]
    fn batches_pick_samples_and_targets_in_order() {
        let s = split(Inputs::F32(vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]), vec![2], Targets::Classes(vec![0, 1, 2]));
        let (x, y) = s.batch(&[2, 0]).unwrap();
        assert_eq!((x.shape, x.data), (vec![2, 2], vec![2.0, 2.5, 0.0, 0.5]));
        assert_eq!(y, Targets::Classes(vec![2, 0]));
        assert_eq!(s.label_outside(2), Some((2, 2)));
        assert_eq!(s.label_outside(3), None);
        let v = split(
            Inputs::U8 { data: vec![0, 255, 51, 102], table: Box::new(Normalize::UNIT.table()) },
            vec![1, 2],
            Targets::Values { per_sample: vec![1], data: vec![0.25, -1.0] },
        );
        let (x, y) = v.batch(&[1]).unwrap();
        assert_eq!((x.shape, x.data), (vec![1, 1, 2], vec![f64::from(0.2f32), f64::from(0.4f32)]));
        assert_eq!(y, Targets::Values { per_sample: vec![1], data: vec![-1.0] });
        let mut t = v.clone();
        t.truncate(1);
        assert_eq!((t.len(), t.bytes().unwrap()), (1, &[0u8, 255][..]));
        assert_eq!(
            v.batch(&[2]).unwrap_err().to_string(),
            "sample index 2 is out of range: the train split has 2 samples"
        );
    }
}
