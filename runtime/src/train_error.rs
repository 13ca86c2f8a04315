//! The error type of the training runtime: losses, optimizers and
//! checkpoints ([`TrainError`]). Dataset errors are [`crate::DataError`].

use std::path::PathBuf;

use crate::save::{SaveError, is_users_fault};
use crate::tensor::ShapeError;

/// Why a loss, an optimizer step, or a checkpoint failed. Every variant names
/// the tensor or file at fault; none is a panic.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor has the wrong shape (`what` names it, `expected` says what
    /// fits, e.g. `[4, 10]` or `[batch, classes]`).
    #[error("{what}: expected shape {expected}, found {found:?}")]
    Shape { what: String, expected: String, found: Vec<usize> },
    /// A tensor whose element type cannot be used here (int64 where floats
    /// are needed).
    #[error("{what}: {dtype} tensors are not supported here; expected float32 or float64")]
    Dtype { what: String, dtype: &'static str },
    /// A tensor whose data does not fit its own shape.
    #[error("{what}: {source}")]
    BadTensor { what: String, source: ShapeError },
    /// A class label is not below the number of classes.
    #[error("label {label} of sample {index} is out of range for {classes} classes")]
    Label { index: usize, label: u8, classes: usize },
    /// A gradient was given for a name that is no parameter.
    #[error("gradient `{name}` has no parameter of that name; the parameters are {}", list(valid))]
    UnknownGradient { name: String, valid: Vec<String> },
    /// An optimizer hyperparameter outside its range (as torch.optim checks).
    #[error("invalid {optimizer} setting: {why}")]
    Hyperparameter { optimizer: &'static str, why: String },
    /// An optimizer state that does not fit its optimizer or parameters.
    #[error("optimizer state: {0}")]
    State(String),
    /// `checkpoint.json` does not exist (nothing to resume from).
    #[error("no checkpoint at {}: there is nothing to resume; train once without resuming to create it", path.display())]
    NoCheckpoint { path: PathBuf },
    /// A file or folder could not be read or written.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io { path: PathBuf, action: &'static str, source: std::io::Error },
    /// A checkpoint file exists but does not hold a valid checkpoint.
    #[error("{}: corrupt checkpoint: {why}", path.display())]
    Corrupt { path: PathBuf, why: String },
    /// A file could not be saved (see [`crate::save`]).
    #[error(transparent)]
    Save(#[from] SaveError),
    /// Another process holds the lock of a run folder.
    #[error("{}: another training ({}) is writing to this folder; wait for it to end, or train into another folder", dir.display(), pid.map_or_else(|| "process".to_string(), |p| format!("process {p}")))]
    Locked { dir: PathBuf, pid: Option<u32> },
    /// JSON holds no NaN or infinity, so a tensor holding one cannot be
    /// saved (training has diverged).
    #[error("{}: cannot save tensor `{tensor}`: it holds {value} at flat index {index}, which JSON cannot store", path.display())]
    NonFinite { path: PathBuf, tensor: String, index: usize, value: f64 },
    /// A loss given targets of the other kind (class labels where it needs
    /// float values, or the reverse), or a loss setting out of its range;
    /// `why` says what fits.
    #[error("--loss {loss}: {why}")]
    Loss { loss: &'static str, why: String },
}

impl TrainError {
    /// Whether the machine is at fault (a folder it cannot write, a full
    /// disk) rather than the user's input; see [`crate::save::is_users_fault`].
    pub fn is_environment(&self) -> bool {
        match self {
            TrainError::Save(e) => !e.is_users(),
            TrainError::Io { source, .. } => !is_users_fault(source),
            _ => false,
        }
    }
}

/// Renders names as `` `a`, `b` `` (or `(none)`).
fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}
