//! Helpers shared by the criterion benchmarks (included with `#[path]`).

/// Deterministic pseudo-random numbers in [0, 1) (a 64-bit LCG; no dependency needed).
pub fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32) / (1u64 << 24) as f32
        })
        .collect()
}
