//! What `snnc train` trains on: `--data` (an image set's name or an `.npz`
//! file), loaded for the network that trains on it.

use std::path::{Path, PathBuf};

use snnc_frontend::Network;
use snnc_runtime::dataset::{FileId, Layout, NpzOptions};
use snnc_runtime::{DataError, Dataset, ImageSet, Loss};

use crate::driver::Error;

/// `--data`: an image set in a folder, or a file.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// Fashion-MNIST or MNIST from the folder of their IDX files.
    Images { set: ImageSet, dir: PathBuf },
    /// An `.npz` file (see [`snnc_runtime::dataset::npz`]).
    File { path: PathBuf, options: NpzOptions },
}

impl DataSource {
    /// Parses `--data`: `fashion-mnist`, `mnist`, or a path ending in
    /// `.npz`; `dir` is `--data-dir`, for the image sets only.
    pub fn parse(data: &str, dir: Option<PathBuf>, options: NpzOptions) -> Result<DataSource, Error> {
        let set = match data {
            "fashion-mnist" => Some(ImageSet::FashionMnist),
            "mnist" => Some(ImageSet::Mnist),
            _ => None,
        };
        match set {
            Some(set) => {
                for (flag, given) in
                    [("--test-split", options.test_split.is_some()), ("--normalize", options.normalize.is_some())]
                {
                    if given {
                        return Err(Error::User(format!(
                            "{flag} applies to --data FILE.npz; {} comes split and normalised as its tutorial does",
                            set.name()
                        )));
                    }
                }
                let dir = dir.unwrap_or_else(|| PathBuf::from(set.default_dir()));
                Ok(DataSource::Images { set, dir })
            }
            None if data.ends_with(".npz") => {
                if let Some(d) = dir {
                    return Err(Error::User(format!(
                        "--data-dir {} is the folder of an image set's IDX files; --data {data} is a file: drop \
                         --data-dir",
                        d.display()
                    )));
                }
                if let Some(f) = options.test_split
                    && !(f > 0.0 && f < 1.0)
                {
                    return Err(Error::User(format!(
                        "--test-split must be a fraction between 0 and 1 (exclusive), not {f}"
                    )));
                }
                if let Some(n) = options.normalize
                    && !(n.mean.is_finite() && n.std.is_finite() && n.std != 0.0)
                {
                    return Err(Error::User(format!(
                        "--normalize MEAN,STD needs finite numbers and STD other than 0, not {},{}",
                        n.mean, n.std
                    )));
                }
                Ok(DataSource::File { path: PathBuf::from(data), options })
            }
            None => Err(Error::User(format!(
                "--data {data}: give fashion-mnist, mnist, or a NumPy file whose name ends in .npz"
            ))),
        }
    }

    /// What the checkpoint records of it (see `run_config`).
    pub fn config(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        match self {
            DataSource::Images { set, .. } => {
                m.insert("data".into(), set.key().into());
            }
            DataSource::File { path, options } => {
                m.insert("data".into(), path.display().to_string().into());
                m.insert("test_split".into(), serde_json::json!(options.test_split));
                let normalize = options.normalize.map(|n| format!("{},{}", n.mean, n.std));
                m.insert("normalize".into(), serde_json::json!(normalize));
            }
        }
        m
    }
}

/// What `net` takes, for reading a file for it.
pub fn layout(net: &Network) -> Layout {
    Layout {
        network: net.name.clone(),
        input: net.input.iter().map(|&d| d as usize).collect(),
        encoder: net.encoder.is_some(),
        steps: net.steps as usize,
    }
}

/// Loads an image data set; a missing data set is an environment error
/// (exit 3) with the way to get it.
pub fn load_data(set: ImageSet, dir: &Path) -> Result<Dataset, Error> {
    load(&DataSource::Images { set, dir: dir.to_path_buf() }, None)
}

/// Loads `source` for `net` (a file is read as the network's layout says;
/// the image sets are static whatever the network).
pub fn load(source: &DataSource, net: Option<&Network>) -> Result<Dataset, Error> {
    let loaded = match source {
        DataSource::Images { set, dir } => Dataset::images(*set, dir),
        DataSource::File { path, options } => {
            let Some(net) = net else {
                return Err(Error::Internal("a data file is read for a network".into()));
            };
            Dataset::npz(path, &layout(net), options).map_err(|e| match e {
                DataError::Format { path, why } => {
                    DataError::Format { path, why: format!("{why} (--data; see `snnc train --help`)") }
                }
                e => e,
            })
        }
    };
    // `DataError::Missing` carries the install hint itself.
    loaded.map_err(|e| match e {
        DataError::Missing { .. } => Error::Environment(e.to_string()),
        other => Error::User(other.to_string()),
    })
}

/// Checks that the data's targets are what `loss` compares with: class
/// labels for `nll`, `ce-count` and `mse-count`, float values for `mse`,
/// one per value of the network's readout (`values`; `network` names it).
pub fn check_loss_for_data(loss: &Loss, data: &Dataset, values: usize, network: &str) -> Result<(), Error> {
    let classes = data.train.targets.classes().is_some();
    if loss.needs_classes() && !classes {
        return Err(Error::User(format!(
            "--data {}: y holds float targets (values to regress), but --loss {} compares class scores with class \
             labels: train with --loss mse, or save integer class labels (y.astype(np.int64))",
            data.name,
            loss.name()
        )));
    }
    if !loss.needs_classes() && classes {
        return Err(Error::User(format!(
            "--loss {}: needs float targets, one per readout value (from `--data FILE.npz` with a float `y_train`); \
             {} gives class labels: use --loss nll, ce-count or mse-count",
            loss.name(),
            data.name
        )));
    }
    for split in [&data.train, &data.test] {
        if let snnc_runtime::Targets::Values { per_sample, .. } = &split.targets
            && per_sample[..] != [values]
        {
            return Err(Error::User(format!(
                "{}: the targets of a sample have shape {per_sample:?}, but the readout of network `{network}` \
                 gives {values} value(s) per sample ([B, {values}]): save y as [N, {values}]",
                split.origin
            )));
        }
    }
    Ok(())
}

/// Checks a resumed run's data file against the one its checkpoint
/// recorded (`data_file`: size and hash); a checkpoint that recorded none
/// (of an image set, or an older snnc) is not compared.
pub fn check_data_file(recorded: &serde_json::Value, data: &Dataset, dir: &Path) -> Result<(), Error> {
    let Some(was) = recorded.get("data_file") else { return Ok(()) };
    let was: Option<FileId> = serde_json::from_value(was.clone()).ok();
    if was.as_ref() == data.file.as_ref() {
        return Ok(());
    }
    let show = |f: Option<&FileId>| match f {
        Some(f) => format!("{} bytes, FNV-1a {}", f.bytes, f.fnv1a64),
        None => "none".into(),
    };
    Err(Error::User(format!(
        "--resume: the checkpoint in {} was trained on another {} ({} in the checkpoint, {} now): resume with the \
         file it was trained on, or start a new run with --force or another --out",
        dir.display(),
        data.name,
        show(was.as_ref()),
        show(data.file.as_ref())
    )))
}
