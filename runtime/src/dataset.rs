//! The image data sets of `snnc train` — Fashion-MNIST and MNIST —: loading
//! their IDX files, the Norse tutorials' preprocessing, seeded shuffling
//! and batches.
//!
//! # Files
//!
//! [`ImageData::load`] reads the four IDX files of a release (Zalando's
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
//! # Shuffling
//!
//! [`shuffle_order`] gives the order of the training samples in an epoch, a
//! pure function of `(n, seed, epoch)`:
//!
//! - the generator is SplitMix64 (Steele, Lea and Flood 2014) whose state
//!   starts at `seed ^ mix64(epoch)`, with `mix64` SplitMix64's output
//!   function; each draw adds `0x9E3779B97F4A7C15` to the state and returns
//!   `mix64` of the old state plus that constant, i.e. the standard
//!   `next()`;
//! - the order starts as `0, 1, ..., n-1` and is shuffled by Fisher–Yates
//!   from the back: for `i = n-1` down to `1`, swap positions `i` and `j`,
//!   `j` uniform in `0..=i`, drawn by Lemire's multiply-and-reject method
//!   (`j = (x * (i+1)) >> 64` for a 64-bit draw `x`, drawing again while the
//!   low 64 bits of the product are below `2^64 mod (i+1)`), so every order
//!   is equally likely.
//!
//! [`batches`] then cuts an order into batches; the last one may be smaller
//! (torch's `DataLoader` with `drop_last=False`).

use std::path::{Path, PathBuf};

use crate::idx::{IdxError, read_idx_images, read_idx_labels};
use crate::tensor::{ElemType, Tensor};

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
        ((f32::from(pixel) / 255.0) - mean) / std
    }
}

/// Image height and width.
pub const SIDE: usize = 28;
/// The number of classes.
pub const CLASSES: usize = 10;

/// Why a dataset could not be loaded or a batch made.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A dataset file is not there (the caller reports this as a missing
    /// part of the environment).
    #[error("{}: {set} file not found; {hint}", path.display())]
    Missing { path: PathBuf, set: &'static str, hint: String },
    /// A file is there but cannot be read or is not an IDX file.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// The files are IDX files but not Fashion-MNIST's.
    #[error("{}: {why}", path.display())]
    Format { path: PathBuf, why: String },
    /// A sample index past the end of the split.
    #[error("sample index {index} is out of range: the {split} split has {len} samples")]
    Index { split: &'static str, index: usize, len: usize },
    /// A batch size of zero.
    #[error("the batch size must be at least 1")]
    BatchSize,
}

/// One split (training or test): raw pixels and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// `"train"` or `"test"`.
    pub name: &'static str,
    /// The data set, which says how pixels are preprocessed.
    pub set: ImageSet,
    /// `len() * 28 * 28` pixels, image after image, row-major.
    pub pixels: Vec<u8>,
    /// One label per image, each below [`CLASSES`].
    pub labels: Vec<u8>,
}

/// The training (60000) and test (10000) splits of an image data set.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageData {
    pub set: ImageSet,
    pub train: Split,
    pub test: Split,
}

impl ImageData {
    /// Reads the four files of `set` from `dir` (see the module doc). A
    /// missing folder or file is [`DataError::Missing`] with an install
    /// hint.
    pub fn load(set: ImageSet, dir: &Path) -> Result<ImageData, DataError> {
        let torch = dir.join(set.torchvision_dir());
        // The folder given, else torchvision's below it, judged by one file.
        let dir = if find(set, dir, "t10k-labels-idx1-ubyte").is_err() && torch.is_dir() { &torch } else { dir };
        Ok(ImageData {
            set,
            train: Split::load(set, dir, "train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte")?,
            test: Split::load(set, dir, "test", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?,
        })
    }

    /// Keeps the first `n` training samples (all of them if there are fewer).
    /// The test split is unchanged.
    pub fn limit(mut self, n: usize) -> ImageData {
        self.train.truncate(n);
        self
    }
}

impl Split {
    fn load(set: ImageSet, dir: &Path, name: &'static str, images: &str, labels: &str) -> Result<Split, DataError> {
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
        Ok(Split { name, set, pixels, labels })
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps the first `n` samples (all if there are fewer).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * SIDE * SIDE);
    }

    /// The samples at `indices`, in that order: images `[b, 1, 28, 28]`
    /// float32, preprocessed (see the module doc), and their labels.
    pub fn batch(&self, indices: &[usize]) -> Result<(Tensor, Vec<u8>), DataError> {
        let table = normalised_pixels(self.set);
        let len = self.len();
        let size = SIDE * SIDE;
        let mut data = Vec::with_capacity(indices.len() * size);
        let mut labels = Vec::with_capacity(indices.len());
        for &index in indices {
            if index >= len {
                return Err(DataError::Index { split: self.name, index, len });
            }
            data.extend(self.pixels[index * size..(index + 1) * size].iter().map(|&p| table[usize::from(p)]));
            labels.push(self.labels[index]);
        }
        let images = Tensor { shape: vec![indices.len(), 1, SIDE, SIDE], dtype: ElemType::F32, data };
        Ok((images, labels))
    }
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

/// [`ImageSet::normalise`] of every byte, as f64.
fn normalised_pixels(set: ImageSet) -> [f64; 256] {
    std::array::from_fn(|p| f64::from(set.normalise(p as u8)))
}

/// SplitMix64's output function.
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64: a 64-bit state advanced by the golden-ratio increment.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `0..bound` (`bound >= 1`), by Lemire's method.
    fn below(&mut self, bound: u64) -> u64 {
        let mut m = u128::from(self.next()) * u128::from(bound);
        if (m as u64) < bound {
            let threshold = bound.wrapping_neg() % bound;
            while (m as u64) < threshold {
                m = u128::from(self.next()) * u128::from(bound);
            }
        }
        (m >> 64) as u64
    }
}

/// The order of `n` samples in epoch `epoch` of a run seeded with `seed`: a
/// permutation of `0..n`, a pure function of its arguments (see the module
/// doc for the exact algorithm).
pub fn shuffle_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = SplitMix64(seed ^ mix64(epoch));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Cuts an order into batches of `batch_size`; the last batch holds the
/// rest and may be smaller. `ceil(order.len() / batch_size)` batches.
pub fn batches(order: &[usize], batch_size: usize) -> Result<std::slice::Chunks<'_, usize>, DataError> {
    if batch_size == 0 {
        return Err(DataError::BatchSize);
    }
    Ok(order.chunks(batch_size))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn shuffle_is_a_deterministic_permutation() {
        for (n, seed, epoch) in [(0, 1, 0), (1, 1, 0), (2, 7, 3), (10, 42, 0), (1000, 42, 5)] {
            let order = shuffle_order(n, seed, epoch);
            assert_eq!(order, shuffle_order(n, seed, epoch));
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        }
        let a = shuffle_order(1000, 42, 0);
        assert_ne!(a, shuffle_order(1000, 42, 1), "epochs differ");
        assert_ne!(a, shuffle_order(1000, 43, 0), "seeds differ");
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
        // Pinned: the order is part of the reproducibility contract.
        assert_eq!(shuffle_order(10, 42, 0), PINNED_10_42_0);
    }

    const PINNED_10_42_0: [usize; 10] = [8, 3, 6, 5, 4, 0, 9, 2, 1, 7];

    #[test]
    fn splitmix64_matches_the_reference() {
        // The first outputs of SplitMix64 seeded with 1234567 (from the
        // reference C implementation, `splitmix64.c`).
        let mut rng = SplitMix64(1234567);
        let got: Vec<u64> = (0..3).map(|_| rng.next()).collect();
        assert_eq!(got, [6457827717110365317, 3203168211198807973, 9817491932198370423]);
    }

    #[test]
    fn shuffle_positions_are_roughly_uniform() {
        // Over many epochs each sample lands in each position about equally.
        let (n, epochs) = (5usize, 20_000u64);
        let mut counts = vec![0u32; n * n];
        for e in 0..epochs {
            for (pos, &i) in shuffle_order(n, 9, e).iter().enumerate() {
                counts[i * n + pos] += 1;
            }
        }
        let expected = epochs as f64 / n as f64;
        for c in counts {
            assert!((f64::from(c) - expected).abs() < 0.06 * expected, "{c} vs {expected}");
        }
    }

    #[test]
    fn batches_keep_the_last_partial_batch() {
        let order: Vec<usize> = (0..10).collect();
        let b: Vec<&[usize]> = batches(&order, 4).unwrap().collect();
        assert_eq!(b, [&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
        assert_eq!(batches(&order, 10).unwrap().count(), 1);
        assert_eq!(batches(&order, 0).unwrap_err().to_string(), "the batch size must be at least 1");
    }

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
        let data = ImageData::load(ImageSet::FashionMnist, &dir.0).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (12, 2));
        let (images, labels) = data.train.batch(&[11, 3]).unwrap();
        assert_eq!((images.shape.clone(), images.dtype), (vec![2, 1, 28, 28], ElemType::F32));
        assert_eq!(labels, [1, 3]);
        assert!(images.data[..784].iter().all(|&x| x == f64::from(ImageSet::FashionMnist.normalise(11))));
        assert!(images.data[784..].iter().all(|&x| x == f64::from(ImageSet::FashionMnist.normalise(3))));
        let e = data.train.batch(&[12]).unwrap_err().to_string();
        assert_eq!(e, "sample index 12 is out of range: the train split has 12 samples");
        let (empty, none) = data.test.batch(&[]).unwrap();
        assert_eq!((empty.shape, none.len()), (vec![0, 1, 28, 28], 0));

        let limited = data.clone().limit(5);
        assert_eq!((limited.train.len(), limited.train.pixels.len(), limited.test.len()), (5, 5 * 784, 2));
        assert_eq!(data.clone().limit(100).train.len(), 12);
    }

    #[test]
    fn missing_and_bad_files_are_reported() {
        let dir = TempDir::new("missing");
        let e = ImageData::load(ImageSet::FashionMnist, &dir.0.join("nope")).unwrap_err();
        assert!(matches!(e, DataError::Missing { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.ends_with("train-images-idx3-ubyte.gz: Fashion-MNIST file not found; install Debian's Fashion-MNIST package with `sudo apt-get install dataset-fashion-mnist` (it puts the files in /usr/share/datasets/fashion-mnist), or give the folder that holds the four IDX files with --data-dir DIR (DIR or DIR/FashionMNIST/raw is searched)"), "{text}");

        fake(&dir.0, 3);
        std::fs::remove_file(dir.0.join("t10k-labels-idx1-ubyte")).unwrap();
        let e = ImageData::load(ImageSet::FashionMnist, &dir.0).unwrap_err();
        assert!(matches!(&e, DataError::Missing { path, .. } if path.ends_with("t10k-labels-idx1-ubyte.gz")), "{e:?}");

        // A label that is not a class.
        std::fs::write(dir.0.join("t10k-labels-idx1-ubyte"), idx(&[2], &[0, 10])).unwrap();
        let e = ImageData::load(ImageSet::FashionMnist, &dir.0).unwrap_err().to_string();
        assert!(e.ends_with("t10k-labels-idx1-ubyte: label 10 of sample 1 is not a class (0 to 9)"), "{e}");
        // Fewer labels than images.
        std::fs::write(dir.0.join("t10k-labels-idx1-ubyte"), idx(&[1], &[0])).unwrap();
        let e = ImageData::load(ImageSet::FashionMnist, &dir.0).unwrap_err().to_string();
        assert!(e.contains("1 labels for 2 images"), "{e}");
        // Images of another size.
        std::fs::write(dir.0.join("t10k-images-idx3-ubyte.gz"), gzip(&idx(&[1, 2, 2], &[0; 4]))).unwrap();
        let e = ImageData::load(ImageSet::FashionMnist, &dir.0).unwrap_err().to_string();
        assert!(e.ends_with("t10k-images-idx3-ubyte.gz: images are 2×2; Fashion-MNIST images are 28×28"), "{e}");
        // Not an IDX file.
        std::fs::write(dir.0.join("t10k-images-idx3-ubyte.gz"), b"junk").unwrap();
        let e = ImageData::load(ImageSet::FashionMnist, &dir.0).unwrap_err();
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
            let data = ImageData::load(ImageSet::Mnist, root).unwrap();
            assert_eq!((data.set, data.train.len(), data.test.len()), (ImageSet::Mnist, 3, 2));
            let (images, _) = data.train.batch(&[2]).unwrap();
            let want = ((2.0f32 / 255.0) - 0.1307f32) / 0.3081f32;
            assert!(images.data.iter().all(|&x| x == f64::from(want)));
        }
        assert_eq!(ImageSet::Mnist.normalise(0), (0.0f32 - 0.1307f32) / 0.3081f32);
        // Fashion-MNIST's layout is not MNIST's: the message says where to
        // get MNIST and which folders were searched.
        let e = ImageData::load(ImageSet::Mnist, &dir.0.join("none")).unwrap_err().to_string();
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
        let data = ImageData::load(ImageSet::FashionMnist, dir).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (60_000, 10_000));
        assert_eq!(data.train.pixels.len(), 60_000 * 784);
        // Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
        for (split, per_class) in [(&data.train, 6000), (&data.test, 1000)] {
            let mut counts = [0usize; CLASSES];
            for &y in &split.labels {
                counts[usize::from(y)] += 1;
            }
            assert_eq!(counts, [per_class; CLASSES], "{}", split.name);
        }
        assert_eq!((data.train.labels[0], data.test.labels[0]), (9, 9), "both splits start with an ankle boot");
        // The normalisation constants are the training pixels' statistics.
        let n = data.train.pixels.len() as f64;
        let mean = data.train.pixels.iter().map(|&p| f64::from(p) / 255.0).sum::<f64>() / n;
        let var = data.train.pixels.iter().map(|&p| (f64::from(p) / 255.0 - mean).powi(2)).sum::<f64>() / n;
        assert!((mean - 0.2860).abs() < 5e-4, "mean {mean}");
        assert!((var.sqrt() - 0.3530).abs() < 5e-4, "std {}", var.sqrt());
        let (images, labels) = data.train.batch(&[0]).unwrap();
        assert_eq!(labels, [9]);
        assert_eq!(images.data[0], f64::from(ImageSet::FashionMnist.normalise(0)));
        let first_image_sum: u32 = data.train.pixels[..784].iter().map(|&p| u32::from(p)).sum();
        assert_eq!(first_image_sum, FIRST_TRAIN_IMAGE_SUM);
    }

    const FIRST_TRAIN_IMAGE_SUM: u32 = 76247;
}
