//! The image data sets of `snnc train` — Fashion-MNIST and MNIST —: loading
//! their IDX files and the Norse tutorials' preprocessing; each loads as a
//! [`Dataset`] of static `[1, 28, 28]` u8 samples with class labels.
//!
//! # Files
//!
//! [`Dataset::images`] reads the four IDX files of a release (Zalando's
//! Fashion-MNIST copies LeCun's MNIST file names) from one folder:
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each gzipped
//! (`.gz`, preferred) or plain. Images are 28×28 u8 pixels, labels 0..=9.
//! The folder is the one given, or below it where torchvision downloads
//! them (`MNIST/raw/`, `FashionMNIST/raw/`). Fashion-MNIST's default folder
//! is where Debian's `dataset-fashion-mnist` puts it ([`DEFAULT_DIR`]).
//!
//! # Preprocessing
//!
//! Pixels are kept as bytes and converted when a batch is made, as the
//! Norse tutorials' `ToTensor()` then `Normalize((MEAN,), (STD,))` compute
//! them, in f32, in this order:
//!
//! ```text
//! x = ((pixel as f32 / 255.0) - MEAN) / STD
//! ```
//!
//! (one rounding per operation; the constants are rounded to f32 first),
//! with `MEAN, STD` = 0.2860, 0.3530 for Fashion-MNIST (the Norse
//! Fashion-MNIST tutorial) and 0.1307, 0.3081 for MNIST (the Norse MNIST
//! tutorial, torchvision's usual values); see [`ImageSet::mean_std`].
//!

use std::path::{Path, PathBuf};

use super::{DataError, Dataset, InputKind, Inputs, Normalize, Split};
use crate::Targets;
use crate::idx::{read_idx_images, read_idx_labels};

/// Where Debian's `dataset-fashion-mnist` package installs the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Which image data set: the files are laid out alike, the preprocessing
/// and where to get them differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageSet {
    #[default]
    FashionMnist,
    Mnist,
}

impl ImageSet {
    /// The name people know it by.
    pub fn name(self) -> &'static str {
        match self {
            ImageSet::FashionMnist => "Fashion-MNIST",
            ImageSet::Mnist => "MNIST",
        }
    }

    /// The `--data` value (and the name a checkpoint records).
    pub fn key(self) -> &'static str {
        match self {
            ImageSet::FashionMnist => "fashion-mnist",
            ImageSet::Mnist => "mnist",
        }
    }

    /// The normalisation: mean and standard deviation of its pixels scaled
    /// to `[0, 1]`, as the Norse tutorials give them.
    pub fn mean_std(self) -> (f32, f32) {
        match self {
            ImageSet::FashionMnist => (0.2860, 0.3530),
            ImageSet::Mnist => (0.1307, 0.3081),
        }
    }

    /// The folder looked in when none is given.
    pub fn default_dir(self) -> &'static str {
        match self {
            ImageSet::FashionMnist => DEFAULT_DIR,
            ImageSet::Mnist => ".",
        }
    }

    /// The folder torchvision downloads its raw files into, below its root.
    fn torchvision_dir(self) -> &'static str {
        match self {
            ImageSet::FashionMnist => "FashionMNIST/raw",
            ImageSet::Mnist => "MNIST/raw",
        }
    }

    /// How to get the files, for [`DataError::Missing`].
    pub fn install_hint(self) -> String {
        let get = match self {
            ImageSet::FashionMnist => {
                "install Debian's Fashion-MNIST package with `sudo apt-get install dataset-fashion-mnist` (it puts \
                 the files in /usr/share/datasets/fashion-mnist), or"
            }
            ImageSet::Mnist => {
                "download MNIST (e.g. `torchvision.datasets.MNIST(root=DIR, download=True)`, which writes \
                 DIR/MNIST/raw) and"
            }
        };
        format!(
            "{get} give the folder that holds the four IDX files with --data-dir DIR (DIR or DIR/{} is searched)",
            self.torchvision_dir()
        )
    }

    /// A pixel preprocessed (see the module doc).
    pub fn normalise(self, pixel: u8) -> f32 {
        let (mean, std) = self.mean_std();
        Normalize { mean, std }.apply(pixel)
    }
}

/// Image height and width.
pub const SIDE: usize = 28;
/// The number of classes.
pub const CLASSES: usize = 10;

impl Dataset {
    /// Reads the four files of `set` from `dir` (see the module doc). A
    /// missing folder or file is [`DataError::Missing`] with an install
    /// hint.
    pub fn images(set: ImageSet, dir: &Path) -> Result<Dataset, DataError> {
        let torch = dir.join(set.torchvision_dir());
        // The folder given, else torchvision's below it, judged by one file.
        let dir = if find(set, dir, "t10k-labels-idx1-ubyte").is_err() && torch.is_dir() { &torch } else { dir };
        Ok(Dataset {
            name: set.name().to_string(),
            kind: InputKind::Static,
            train: load_split(set, dir, "train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte")?,
            test: load_split(set, dir, "test", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?,
            file: None,
        })
    }
}

/// One split of an image set: `[1, 28, 28]` bytes normalised by the set's
/// table, and class labels.
fn load_split(set: ImageSet, dir: &Path, name: &'static str, images: &str, labels: &str) -> Result<Split, DataError> {
    let images_path = find(set, dir, images)?;
    let labels_path = find(set, dir, labels)?;
    let (n, rows, cols, pixels) = read_idx_images(&images_path)?;
    if (rows, cols) != (SIDE, SIDE) {
        let why = format!("images are {rows}×{cols}; {} images are {SIDE}×{SIDE}", set.name());
        return Err(DataError::Format { path: images_path, why });
    }
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != n {
        let why = format!("{} labels for {n} images in {}", labels.len(), images_path.display());
        return Err(DataError::Format { path: labels_path, why });
    }
    if let Some(i) = labels.iter().position(|&y| usize::from(y) >= CLASSES) {
        let why = format!("label {} of sample {i} is not a class (0 to {})", labels[i], CLASSES - 1);
        return Err(DataError::Format { path: labels_path, why });
    }
    let (mean, std) = set.mean_std();
    Ok(Split {
        name,
        origin: labels_path.display().to_string(),
        shape: vec![1, SIDE, SIDE],
        inputs: Inputs::U8 { data: pixels, table: Box::new(Normalize { mean, std }.table()) },
        targets: Targets::Classes(labels),
    })
}

/// `dir/name.gz`, else `dir/name`, else [`DataError::Missing`] naming the
/// `.gz` file.
fn find(set: ImageSet, dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    Err(DataError::Missing { path: gz, set: set.name(), hint: set.install_hint() })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::tensor::ElemType;

    #[test]
    fn normalisation_follows_the_tutorial() {
        assert_eq!(ImageSet::FashionMnist.normalise(0), (0.0f32 - 0.2860f32) / 0.3530f32);
        assert_eq!(ImageSet::FashionMnist.normalise(255), (1.0f32 - 0.2860f32) / 0.3530f32);
        let x = 128.0f32 / 255.0;
        assert_eq!(ImageSet::FashionMnist.normalise(128), (x - 0.2860) / 0.3530);
        // Values from torch 2.15: ((torch.arange(256, dtype=uint8).float() / 255) - 0.2860) / 0.3530.
        for (p, want) in TORCH_NORMALISED {
            assert_eq!(f64::from(ImageSet::FashionMnist.normalise(p)), want, "pixel {p}");
        }
    }

    const TORCH_NORMALISED: [(u8, f64); 7] = [
        (0, -0.8101983666419983),
        (1, -0.7990891337394714),
        (37, -0.39915573596954346),
        (128, 0.6117870211601257),
        (200, 1.4116536378860474),
        (254, 2.0115537643432617),
        (255, 2.022662878036499),
    ];

    /// A folder of test files, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("snnc-dataset-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// Writes a small fake Fashion-MNIST: `n` training and 2 test images,
    /// image `i` filled with the byte `i`, label `i % 10`.
    fn fake(dir: &Path, n: u8) {
        let size = SIDE * SIDE;
        for (prefix, count) in [("train", n), ("t10k", 2)] {
            let pixels: Vec<u8> = (0..count).flat_map(|i| std::iter::repeat_n(i, size)).collect();
            let labels: Vec<u8> = (0..count).map(|i| i % 10).collect();
            let d = [u32::from(count), SIDE as u32, SIDE as u32];
            std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte.gz")), gzip(&idx(&d, &pixels))).unwrap();
            std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), idx(&[u32::from(count)], &labels)).unwrap();
        }
    }

    #[test]
    fn loads_batches_and_limits_small_files() {
        let dir = TempDir::new("small");
        fake(&dir.0, 12);
        let data = Dataset::images(ImageSet::FashionMnist, &dir.0).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (12, 2));
        let (images, labels) = data.train.batch(&[11, 3]).unwrap();
        assert_eq!((images.shape.clone(), images.dtype), (vec![2, 1, 28, 28], ElemType::F32));
        assert_eq!(labels, Targets::Classes(vec![1, 3]));
        assert!(images.data[..784].iter().all(|&x| x == f64::from(ImageSet::FashionMnist.normalise(11))));
        assert!(images.data[784..].iter().all(|&x| x == f64::from(ImageSet::FashionMnist.normalise(3))));
        let e = data.train.batch(&[12]).unwrap_err().to_string();
        assert_eq!(e, "sample index 12 is out of range: the train split has 12 samples");
        let (empty, none) = data.test.batch(&[]).unwrap();
        assert_eq!((empty.shape, none.len()), (vec![0, 1, 28, 28], 0));

        let limited = data.clone().limit(5);
        assert_eq!((limited.train.len(), limited.train.bytes().unwrap().len(), limited.test.len()), (5, 5 * 784, 2));
        assert_eq!(data.clone().limit(100).train.len(), 12);
    }

    #[test]
    fn missing_and_bad_files_are_reported() {
        let dir = TempDir::new("missing");
        let e = Dataset::images(ImageSet::FashionMnist, &dir.0.join("nope")).unwrap_err();
        assert!(matches!(e, DataError::Missing { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.ends_with("train-images-idx3-ubyte.gz: Fashion-MNIST file not found; install Debian's Fashion-MNIST package with `sudo apt-get install dataset-fashion-mnist` (it puts the files in /usr/share/datasets/fashion-mnist), or give the folder that holds the four IDX files with --data-dir DIR (DIR or DIR/FashionMNIST/raw is searched)"), "{text}");

        fake(&dir.0, 3);
        std::fs::remove_file(dir.0.join("t10k-labels-idx1-ubyte")).unwrap();
        let e = Dataset::images(ImageSet::FashionMnist, &dir.0).unwrap_err();
        assert!(matches!(&e, DataError::Missing { path, .. } if path.ends_with("t10k-labels-idx1-ubyte.gz")), "{e:?}");

        // A label that is not a class.
        std::fs::write(dir.0.join("t10k-labels-idx1-ubyte"), idx(&[2], &[0, 10])).unwrap();
        let e = Dataset::images(ImageSet::FashionMnist, &dir.0).unwrap_err().to_string();
        assert!(e.ends_with("t10k-labels-idx1-ubyte: label 10 of sample 1 is not a class (0 to 9)"), "{e}");
        // Fewer labels than images.
        std::fs::write(dir.0.join("t10k-labels-idx1-ubyte"), idx(&[1], &[0])).unwrap();
        let e = Dataset::images(ImageSet::FashionMnist, &dir.0).unwrap_err().to_string();
        assert!(e.contains("1 labels for 2 images"), "{e}");
        // Images of another size.
        std::fs::write(dir.0.join("t10k-images-idx3-ubyte.gz"), gzip(&idx(&[1, 2, 2], &[0; 4]))).unwrap();
        let e = Dataset::images(ImageSet::FashionMnist, &dir.0).unwrap_err().to_string();
        assert!(e.ends_with("t10k-images-idx3-ubyte.gz: images are 2×2; Fashion-MNIST images are 28×28"), "{e}");
        // Not an IDX file.
        std::fs::write(dir.0.join("t10k-images-idx3-ubyte.gz"), b"junk").unwrap();
        let e = Dataset::images(ImageSet::FashionMnist, &dir.0).unwrap_err();
        assert!(matches!(e, DataError::Idx(_)), "{e:?}");
    }

    #[test]
    fn mnist_is_found_where_torchvision_puts_it_and_normalised_as_the_tutorial() {
        let dir = TempDir::new("mnist");
        let raw = dir.0.join("MNIST/raw");
        std::fs::create_dir_all(&raw).unwrap();
        fake(&raw, 3);
        // The torchvision root, or the raw folder itself.
        for root in [&dir.0, &raw] {
            let data = Dataset::images(ImageSet::Mnist, root).unwrap();
            assert_eq!((data.name.as_str(), data.train.len(), data.test.len()), ("MNIST", 3, 2));
            let (images, _) = data.train.batch(&[2]).unwrap();
            let want = ((2.0f32 / 255.0) - 0.1307f32) / 0.3081f32;
            assert!(images.data.iter().all(|&x| x == f64::from(want)));
        }
        assert_eq!(ImageSet::Mnist.normalise(0), (0.0f32 - 0.1307f32) / 0.3081f32);
        // Fashion-MNIST's layout is not MNIST's: the message says where to
        // get MNIST and which folders were searched.
        let e = Dataset::images(ImageSet::Mnist, &dir.0.join("none")).unwrap_err().to_string();
        assert!(e.contains("none/train-images-idx3-ubyte.gz: MNIST file not found; download MNIST"), "{e}");
        assert!(e.contains("(DIR or DIR/MNIST/raw is searched)"), "{e}");
    }

    #[test]
    fn loads_the_real_dataset_when_installed() {
        let dir = Path::new(DEFAULT_DIR);
        if !dir.is_dir() {
            println!("skipped: {DEFAULT_DIR} is missing ({})", ImageSet::FashionMnist.install_hint());
            return;
        }
        let data = Dataset::images(ImageSet::FashionMnist, dir).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (60_000, 10_000));
        assert_eq!(data.train.bytes().unwrap().len(), 60_000 * 784);
        // Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
        for (split, per_class) in [(&data.train, 6000), (&data.test, 1000)] {
            let mut counts = [0usize; CLASSES];
            for &y in split.targets.classes().unwrap() {
                counts[usize::from(y)] += 1;
            }
            assert_eq!(counts, [per_class; CLASSES], "{}", split.name);
        }
        assert_eq!(
            (data.train.targets.classes().unwrap()[0], data.test.targets.classes().unwrap()[0]),
            (9, 9),
            "both splits start with an ankle boot"
        );
        // The normalisation constants are the training pixels' statistics.
        let n = data.train.bytes().unwrap().len() as f64;
        let mean = data.train.bytes().unwrap().iter().map(|&p| f64::from(p) / 255.0).sum::<f64>() / n;
        let var = data.train.bytes().unwrap().iter().map(|&p| (f64::from(p) / 255.0 - mean).powi(2)).sum::<f64>() / n;
        assert!((mean - 0.2860).abs() < 5e-4, "mean {mean}");
        assert!((var.sqrt() - 0.3530).abs() < 5e-4, "std {}", var.sqrt());
        let (images, labels) = data.train.batch(&[0]).unwrap();
        assert_eq!(labels, Targets::Classes(vec![9]));
        assert_eq!(images.data[0], f64::from(ImageSet::FashionMnist.normalise(0)));
        let first_image_sum: u32 = data.train.bytes().unwrap()[..784].iter().map(|&p| u32::from(p)).sum();
        assert_eq!(first_image_sum, FIRST_TRAIN_IMAGE_SUM);
    }

    const FIRST_TRAIN_IMAGE_SUM: u32 = 76247;
}
