//! Value types: a dtype and a shape with a symbolic batch dimension.

use std::fmt;

/// Element type of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dtype {
    /// IEEE single precision: the default, and what every backend runs.
    F32,
    /// IEEE double precision: the reference interpreter only.
    F64,
    /// A spike: exactly 0 or 1. Backends may store it compactly; arithmetic
    /// with a float operand promotes it to that float type.
    Spike,
}

impl Dtype {
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F64)
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
            Dtype::Spike => "spike",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension of a shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// The batch dimension, fixed only when the module is run.
    Batch,
    /// A dimension known at compile time.
    Fixed(u32),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => f.write_str("B"),
            Dim::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// A shape, outermost dimension first (row-major).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// The rank-0 shape of a scalar.
    pub fn scalar() -> Self {
        Shape(Vec::new())
    }

    /// `[B, dims...]`.
    pub fn batched(dims: &[u32]) -> Self {
        let mut v = vec![Dim::Batch];
        v.extend(dims.iter().map(|&d| Dim::Fixed(d)));
        Shape(v)
    }

    /// A shape of fixed dimensions only.
    pub fn fixed(dims: &[u32]) -> Self {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn is_scalar(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has_batch(&self) -> bool {
        self.0.contains(&Dim::Batch)
    }

    /// The dimensions with the batch dimension replaced by `batch`.
    pub fn resolve(&self, batch: usize) -> Vec<usize> {
        self.0
            .iter()
            .map(|d| match d {
                Dim::Batch => batch,
                Dim::Fixed(n) => *n as usize,
            })
            .collect()
    }

    /// The number of elements of one sample (the product of fixed dims),
    /// saturating at `u64::MAX`.
    pub fn fixed_elements(&self) -> u64 {
        self.0.iter().fold(1u64, |acc, d| match d {
            Dim::Batch => acc,
            Dim::Fixed(n) => acc.saturating_mul(u64::from(*n)),
        })
    }

    /// The number of elements of one sample (the product of fixed dims), or
    /// `None` when it is more than `u64::MAX`.
    pub fn checked_fixed_elements(&self) -> Option<u64> {
        self.0.iter().try_fold(1u64, |acc, d| match d {
            Dim::Batch => Some(acc),
            Dim::Fixed(n) => acc.checked_mul(u64::from(*n)),
        })
    }

    /// The last dimension, if any.
    pub fn last(&self) -> Option<Dim> {
        self.0.last().copied()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The type of an IR value.
///
/// `seq == true` means the value holds every time step: its full shape is
/// `[T, shape...]`. A value with `seq == false` is either a per-step value
/// (inside a step loop) or a static one (outside, such as a readout).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Type {
    pub dtype: Dtype,
    pub seq: bool,
    pub shape: Shape,
}

impl Type {
    pub fn new(dtype: Dtype, shape: Shape) -> Self {
        Type { dtype, seq: false, shape }
    }

    pub fn seq(dtype: Dtype, shape: Shape) -> Self {
        Type { dtype, seq: true, shape }
    }

    pub fn scalar(dtype: Dtype) -> Self {
        Type::new(dtype, Shape::scalar())
    }

    /// The same type without the time dimension.
    pub fn step(&self) -> Type {
        Type { seq: false, ..self.clone() }
    }

    /// The same type with the time dimension.
    pub fn with_seq(&self) -> Type {
        Type { seq: true, ..self.clone() }
    }

    pub fn with_dtype(&self, dtype: Dtype) -> Type {
        Type { dtype, ..self.clone() }
    }

    /// All dimensions including time (as `Fixed(steps)`), outermost first.
    pub fn full_dims(&self, steps: u32) -> Vec<Dim> {
        let mut v = Vec::with_capacity(self.shape.rank() + 1);
        if self.seq {
            v.push(Dim::Fixed(steps));
        }
        v.extend(self.shape.0.iter().copied());
        v
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        let mut first = true;
        if self.seq {
            f.write_str("T")?;
            first = false;
        }
        for d in &self.shape.0 {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}
