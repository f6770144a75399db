//! Segmented (per-ray) inclusive / exclusive sums and products, with their backward passes.

use crate::check::expect_len;
use crate::error::Result;
use crate::real::Real;
use crate::segments::{Segments, SharedMut};

/// Which scan to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOp {
    /// Running sum.
    Sum,
    /// Running product.
    Prod,
}

/// Forward scan of `inputs` within each segment. `exclusive` starts each segment at the identity.
pub fn scan<T: Real>(inputs: &[T], segs: &Segments, op: ScanOp, exclusive: bool) -> Result<Vec<T>> {
    expect_len("inputs", inputs.len(), segs.n_samples())?;
    crate::check::expect_finite("inputs", inputs)?;
    let mut out = crate::output::zeros(inputs.len());
    let dst = SharedMut::new(&mut out);
    segs.par_for_each(|_, rg| {
        // SAFETY: segments are disjoint.
        let o = unsafe { dst.slice(rg.clone()) };
        let x = &inputs[rg];
        let mut acc = match op {
            ScanOp::Sum => T::zero(),
            ScanOp::Prod => T::one(),
        };
        for (oi, &xi) in o.iter_mut().zip(x) {
            if exclusive {
                *oi = acc;
            }
            acc = match op {
                ScanOp::Sum => acc + xi,
                ScanOp::Prod => acc * xi,
            };
            if !exclusive {
                *oi = acc;
            }
        }
    });
    Ok(out)
}

/// Gradient of [`scan`] w.r.t. `inputs`, given the gradient `v_outputs` of its output.
pub fn scan_backward<T: Real>(
    inputs: &[T],
    v_outputs: &[T],
    segs: &Segments,
    op: ScanOp,
    exclusive: bool,
) -> Result<Vec<T>> {
    expect_len("inputs", inputs.len(), segs.n_samples())?;
    expect_len("v_outputs", v_outputs.len(), segs.n_samples())?;
    let mut out = crate::output::zeros(inputs.len());
    let dst = SharedMut::new(&mut out);
    segs.par_for_each(|_, rg| {
        // SAFETY: segments are disjoint.
        let o = unsafe { dst.slice(rg.clone()) };
        let x = &inputs[rg.clone()];
        let g = &v_outputs[rg];
        let n = x.len();
        match op {
            ScanOp::Sum => {
                // Reverse cumulative sum of the gradient.
                let mut acc = T::zero();
                for i in (0..n).rev() {
                    if exclusive {
                        o[i] = acc;
                        acc += g[i];
                    } else {
                        acc += g[i];
                        o[i] = acc;
                    }
                }
            }
            ScanOp::Prod => {
                // grad_k = E_k * R_k with E the exclusive product and
                // R_k = sum_{i >= k (or > k)} g_i prod_{k<j<=i (or <i)} x_j, built backwards
                // without any division, so zeros in the inputs are handled exactly.
                let mut r = T::zero();
                let mut rs = crate::output::zeros(n);
                for i in (0..n).rev() {
                    if exclusive {
                        rs[i] = r;
                        r = g[i] + x[i] * r;
                    } else {
                        r = g[i] + if i + 1 < n { x[i + 1] * r } else { T::zero() };
                        rs[i] = r;
                    }
                }
                let mut e = T::one();
                for i in 0..n {
                    o[i] = e * rs[i];
                    e *= x[i];
                }
            }
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed() -> (Vec<f32>, Segments) {
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let ri = [0i64, 0, 1, 1, 1, 2, 2, 2, 2];
        (x, Segments::from_ray_indices(&ri, 3).unwrap())
    }

    #[test]
    fn exclusive_sum_matches_nerfacc_example() {
        let (x, s) = packed();
        let y = scan(&x, &s, ScanOp::Sum, true).unwrap();
        assert_eq!(y, vec![0., 1., 0., 3., 7., 0., 6., 13., 21.]);
    }

    #[test]
    fn inclusive_prod_values() {
        let (x, s) = packed();
        let y = scan(&x, &s, ScanOp::Prod, false).unwrap();
        assert_eq!(y, vec![1., 2., 3., 12., 60., 6., 42., 336., 3024.]);
    }

    fn finite_difference(op: ScanOp, exclusive: bool) {
        let x: Vec<f32> = vec![0.3, 0.0, 1.2, 0.7, 0.9, 1.1, 0.5];
        let s = Segments::from_ray_indices(&[0, 0, 0, 0, 1, 1, 1], 2).unwrap();
        let g: Vec<f32> = vec![0.2, -0.4, 0.9, 0.1, 0.3, -0.7, 0.6];
        let analytic = scan_backward(&x, &g, &s, op, exclusive).unwrap();
        let loss = |x: &[f32]| -> f64 {
            let y = scan(x, &s, op, exclusive).unwrap();
            y.iter()
                .zip(&g)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        for k in 0..x.len() {
            let h = 1e-2f32;
            let mut xp = x.clone();
            xp[k] += h;
            let mut xm = x.clone();
            xm[k] -= h;
            let fd = (loss(&xp) - loss(&xm)) / (2.0 * h as f64);
            assert!(
                (fd - analytic[k] as f64).abs() < 2e-3,
                "{op:?} {exclusive} k={k}: {fd} vs {}",
                analytic[k]
            );
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        for op in [ScanOp::Sum, ScanOp::Prod] {
            for ex in [false, true] {
                finite_difference(op, ex);
            }
        }
    }
}
