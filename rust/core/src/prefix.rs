//! Short prefix and suffix sums (one ray's samples) with a short dependency chain.
//!
//! A plain running sum costs one floating-point add latency per element. These split the slice
//! into [`CHAINS`] contiguous parts summed in an interleaved loop, then add each part's offset in
//! a second, vectorisable loop. The order of additions is fixed, so results are deterministic.

use crate::real::Real;

/// Independent partial sums; slices shorter than `8 * CHAINS` use one chain.
pub const CHAINS: usize = 4;

/// In place: `x[k] <- x[0] + ... + x[k]`. Returns the total.
#[inline(always)]
pub fn inclusive_sum<T: Real>(x: &mut [T]) -> T {
    chained_sum::<T, false>(x)
}

/// In place: `x[k] <- x[k + 1] + ... + x[n - 1]` (exclusive suffix sum). Returns the total.
#[inline]
pub fn exclusive_suffix_sum<T: Real>(x: &mut [T]) -> T {
    chained_sum::<T, true>(x)
}

/// Inclusive prefix sum, or (`SUFFIX`) exclusive suffix sum, in `CHAINS` interleaved parts.
#[inline(always)]
fn chained_sum<T: Real, const SUFFIX: bool>(x: &mut [T]) -> T {
    let n = x.len();
    // Position of the i-th element in summation order.
    let at = |i: usize| if SUFFIX { n - 1 - i } else { i };
    // Sum in order, storing either the running sum (prefix) or the sum before (suffix).
    let q = n / CHAINS;
    if q < 8 {
        let mut acc = T::zero();
        for i in 0..n {
            let v = x[at(i)];
            x[at(i)] = if SUFFIX { acc } else { acc + v };
            acc += v;
        }
        return acc;
    }
    let mut acc = [T::zero(); CHAINS];
    for i in 0..q {
        for (j, a) in acc.iter_mut().enumerate() {
            let p = at(j * q + i);
            let v = x[p];
            x[p] = if SUFFIX { *a } else { *a + v };
            *a += v;
        }
    }
    // The remainder continues the last chain.
    let mut tail = acc[CHAINS - 1];
    for i in CHAINS * q..n {
        let v = x[at(i)];
        x[at(i)] = if SUFFIX { tail } else { tail + v };
        tail += v;
    }
    let mut offset = T::zero();
    for j in 1..CHAINS {
        offset += acc[j - 1];
        let end = if j == CHAINS - 1 { n } else { (j + 1) * q };
        if SUFFIX {
            for v in &mut x[n - end..n - j * q] {
                *v += offset;
            }
        } else {
            for v in &mut x[j * q..end] {
                *v += offset;
            }
        }
    }
    offset + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_sequential() {
        for n in [0usize, 1, 5, 31, 32, 33, 64, 67, 200] {
            let x: Vec<f64> = (0..n)
                .map(|i| ((i * 37) % 11) as f64 * 0.25 - 1.0)
                .collect();
            let mut inc = x.clone();
            let total = inclusive_sum(&mut inc);
            let mut suf = x.clone();
            let total2 = exclusive_suffix_sum(&mut suf);
            let mut acc = 0.0;
            for i in 0..n {
                acc += x[i];
                assert!((inc[i] - acc).abs() < 1e-12, "n={n} i={i}");
                let tail: f64 = x[i + 1..].iter().sum();
                assert!((suf[i] - tail).abs() < 1e-12, "n={n} i={i}");
            }
            assert!((total - acc).abs() < 1e-12 && (total2 - acc).abs() < 1e-12);
        }
    }
}
