//! A small seeded generator (splitmix64), so workloads are reproducible
//! from a seed without pulling in the `rand` crate.

/// splitmix64 (Steele, Lea, Flood 2014): one 64-bit state, one add and a
/// mix per draw. Not cryptographic; more than good enough for workloads.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-40 for the
    /// ranges used here). `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Geometric number of failures before a success, with the given mean
    /// (0, 1, 2, ... with P(k) = p (1-p)^k, p = 1 / (1 + mean)).
    pub fn geometric(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        let p = 1.0 / (1.0 + mean);
        // 1 - unit() is in (0, 1], so the logarithm is finite.
        let u = 1.0 - self.unit();
        (u.ln() / (1.0 - p).ln()).floor().min(1e9) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_roughly_uniform() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            buckets[x as usize] += 1;
        }
        assert!(buckets.iter().all(|&c| (9_000..11_000).contains(&c)));
        let mean = (0..100_000).map(|_| a.geometric(4.0)).sum::<u64>() as f64 / 100_000.0;
        assert!((3.8..4.2).contains(&mean), "geometric mean {mean}");
    }
}
