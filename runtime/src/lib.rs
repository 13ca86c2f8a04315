//! snnc runtime: host tensors, their JSON files, NumPy `.npy`/`.npz`
//! files ([`npy`]), weights (JSON and safetensors files), and what
//! backends share; and the host side of training: losses, optimizers,
//! data sets (image sets, `.npz` files, events: [`dataset`]) and
//! checkpoints; and the one way a file the user named is saved ([`save`]).

pub mod batchnorm;
pub mod check;
pub mod checkpoint;
pub mod dataset;
pub mod idx;
pub mod loss;
pub mod npy;
pub mod optim;
mod real;
pub mod safetensors_io;
pub mod save;
pub mod targets;
pub mod tensor;
pub mod train_error;
pub mod weights;

pub use check::{CheckError, check_finite, check_run};
pub use checkpoint::{Checkpoint, EpochMetrics, write_metrics_csv};
pub use dataset::{DataError, Dataset, ImageSet, InputKind, Inputs, Normalize, Split, batches, shuffle_order};
pub use loss::{
    Loss, LossInputs, Prediction, accuracy, argmax, cross_entropy_counts, log_softmax, mse_mean, nll_mean, nll_seed,
};
pub use npy::{NpyArray, NpyError, NpyValues, read_npy, read_npz, write_npy, write_npz};
pub use optim::{Adam, Optimizer, OptimizerConfig, OptimizerState, ParamState, Sgd};
pub use safetensors_io::{
    parse_rename, parse_rename_map, read_weights_safetensors, rename_weights, write_weights_safetensors,
};
pub use save::{SaveError, write_file};
pub use targets::Targets;
pub use tensor::{ElemType, ShapeError, Tensor};
pub use train_error::TrainError;
pub use weights::{
    Weights, WeightsError, check_weights, complete_weights, init_weights, read_weights_json, write_weights_json,
};
