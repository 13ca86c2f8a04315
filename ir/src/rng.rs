//! The counter-based random number generator of `Op::Uniform`.
//!
//! Every backend must produce the same numbers, in any order and on any
//! thread, so the generator is a pure function of `(seed, t, k)`: SplitMix64's
//! finaliser applied twice. The result has 24 random bits, so it is exactly
//! representable in f32 and f64, and lies in `[0, 1)`.

/// SplitMix64's output function (Steele, Lea, Flood 2014).
#[inline]
pub const fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The uniform number for key `seed` at time step `t` and flat index `k`.
#[inline]
pub fn uniform(seed: u64, t: u32, k: u64) -> f64 {
    let counter = (u64::from(t) << 40) ^ k;
    let bits = mix64(seed ^ mix64(counter));
    (bits >> 40) as f64 / (1u64 << 24) as f64
}

/// A sequential stream on top of the same mixer, for weight initialisation.
#[derive(Clone, Debug)]
pub struct Stream {
    seed: u64,
    counter: u64,
}

impl Stream {
    pub fn new(seed: u64) -> Self {
        Stream { seed: mix64(seed), counter: 0 }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.counter += 1;
        mix64(self.seed ^ mix64(self.counter))
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal by the Box-Muller transform.
    pub fn next_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_deterministic() {
        let mut sum = 0.0;
        for k in 0..10_000 {
            let u = uniform(7, 3, k);
            assert!((0.0..1.0).contains(&u));
            assert_eq!(u, uniform(7, 3, k));
            sum += u;
        }
        let mean = sum / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert_ne!(uniform(7, 3, 1), uniform(8, 3, 1));
        assert_ne!(uniform(7, 3, 1), uniform(7, 4, 1));
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut s = Stream::new(1);
        let xs: Vec<f64> = (0..20_000).map(|_| s.next_normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{mean} {var}");
    }
}
