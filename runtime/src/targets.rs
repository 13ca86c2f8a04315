//! What a training batch is compared with: a class per sample, or float
//! values per sample (regression). Data sets produce it batch by batch; the
//! losses of [`crate::loss`] read it.

/// The targets of a batch (or of a whole split).
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// One class index per sample.
    Classes(Vec<u8>),
    /// Float targets: `per_sample` is the shape of one sample's target
    /// (e.g. `[K]` for a readout of `K` values), `data` holds them sample
    /// after sample.
    Values { per_sample: Vec<usize>, data: Vec<f32> },
}

impl Targets {
    /// The number of samples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(labels) => labels.len(),
            Targets::Values { per_sample, data } => match per_sample.iter().product::<usize>() {
                0 => 0,
                per => data.len() / per,
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class labels, if these are classes.
    pub fn classes(&self) -> Option<&[u8]> {
        match self {
            Targets::Classes(labels) => Some(labels),
            Targets::Values { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Targets;

    #[test]
    fn lengths_count_samples() {
        assert_eq!(Targets::Classes(vec![1, 2, 3]).len(), 3);
        let values = Targets::Values { per_sample: vec![2], data: vec![0.0; 8] };
        assert_eq!(values.len(), 4);
        assert_eq!(values.classes(), None);
        assert!(Targets::Values { per_sample: vec![0], data: vec![] }.is_empty());
    }
}
