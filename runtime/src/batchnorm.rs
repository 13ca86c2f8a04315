//! BatchNorm running statistics: torch's update rule, applied after a
//! training batch to the non-trainable parameters `NAME.running_mean`,
//! `NAME.running_var` and `NAME.num_batches_tracked` from the training
//! module's per-step outputs `NAME.batch_mean` / `NAME.batch_var` (`[T, C]`,
//! biased variances; see `docs/batchnorm.md`). The trainer and the golden
//! runner both call [`update_running_stats`].

use crate::{Tensor, Weights};

/// Applies, for `t = 0..T` in order, `rm = (1 - momentum) * rm + momentum *
/// mean[t]`, `rv = (1 - momentum) * rv + momentum * var[t] * n / (n - 1)`
/// (the unbiased variance; `n` = the number of values each statistic was
/// taken over, `B·H·W` or `B`) and `num_batches_tracked += 1`, to the
/// layer `name`'s running statistics in `weights` (rounded to their dtype
/// after each update). `n == 1` uses the biased variance, as no unbiased
/// one exists (torch would give inf/NaN).
pub fn update_running_stats(
    weights: &mut Weights,
    name: &str,
    momentum: f64,
    n: usize,
    batch_mean: &Tensor,
    batch_var: &Tensor,
) -> Result<(), String> {
    let get = |w: &Weights, field: &str| -> Result<Tensor, String> {
        w.get(&format!("{name}.{field}"))
            .cloned()
            .ok_or_else(|| format!("BatchNorm `{name}`: the weights have no `{name}.{field}`"))
    };
    let (mut rm, mut rv, mut nbt) =
        (get(weights, "running_mean")?, get(weights, "running_var")?, get(weights, "num_batches_tracked")?);
    let c = rm.data.len();
    // `[T, C]`: one update per step; `[C]` (a time-batched layer): one.
    let ok = |t: &Tensor| {
        (t.shape.len() == 2 && t.shape[1] == c && t.shape[0] == batch_mean.shape[0])
            || (t.shape == [c] && batch_mean.shape == [c])
    };
    if !ok(batch_mean) || !ok(batch_var) || rv.data.len() != c || nbt.data.len() != 1 {
        return Err(format!(
            "BatchNorm `{name}`: batch statistics {:?} and {:?} do not fit running statistics of {c} channels",
            batch_mean.shape, batch_var.shape
        ));
    }
    let round = |t: &Tensor, v: f64| if t.dtype == crate::ElemType::F32 { f64::from(v as f32) } else { v };
    let corr = if n > 1 { n as f64 / (n as f64 - 1.0) } else { 1.0 };
    let updates = if batch_mean.shape.len() == 2 { batch_mean.shape[0] } else { 1 };
    for t in 0..updates {
        for k in 0..c {
            let (mu, var) = (batch_mean.data[t * c + k], batch_var.data[t * c + k]);
            rm.data[k] = round(&rm, momentum * mu + (1.0 - momentum) * rm.data[k]);
            rv.data[k] = round(&rv, momentum * (var * corr) + (1.0 - momentum) * rv.data[k]);
        }
        nbt.data[0] += 1.0;
    }
    weights.insert(format!("{name}.running_mean"), rm);
    weights.insert(format!("{name}.running_var"), rv);
    weights.insert(format!("{name}.num_batches_tracked"), nbt);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ElemType;

    fn t(shape: Vec<usize>, data: Vec<f64>) -> Tensor {
        Tensor::new(shape, ElemType::F64, data).unwrap()
    }

    #[test]
    fn two_steps_in_time_order_with_the_unbiased_variance() {
        let mut w = Weights::new();
        w.insert("bn.running_mean".into(), t(vec![2], vec![1.0, -1.0]));
        w.insert("bn.running_var".into(), t(vec![2], vec![2.0, 0.5]));
        w.insert("bn.num_batches_tracked".into(), t(vec![], vec![3.0]));
        let mean = t(vec![2, 2], vec![0.5, 0.0, 2.0, 1.0]);
        let var = t(vec![2, 2], vec![0.75, 3.0, 1.5, 0.0]);
        update_running_stats(&mut w, "bn", 0.5, 4, &mean, &var).unwrap();
        // Step 0: rm = [0.75, -0.5], rv = [0.5 * 1 + 1, 0.5 * 4 + 0.25] = [1.5, 2.25].
        // Step 1: rm = [1.375, 0.25], rv = [0.5 * 2 + 0.75, 0 + 1.125] = [1.75, 1.125].
        assert_eq!(w["bn.running_mean"].data, vec![1.375, 0.25]);
        assert_eq!(w["bn.running_var"].data, vec![1.75, 1.125]);
        assert_eq!(w["bn.num_batches_tracked"].data, vec![5.0]);
        let bad = t(vec![2, 3], vec![0.0; 6]);
        let e = update_running_stats(&mut w, "bn", 0.5, 4, &bad, &var).unwrap_err();
        assert!(e.contains("BatchNorm `bn`"), "{e}");
        assert!(update_running_stats(&mut w, "nope", 0.5, 4, &mean, &var).unwrap_err().contains("nope.running_mean"));
    }
}
