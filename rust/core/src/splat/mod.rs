//! 3D Gaussian splatting with gsplat's semantics: EWA projection, spherical harmonics, tile
//! binning and front-to-back compositing, each with its backward pass.
//!
//! The stages mirror gsplat's `fully_fused_projection`, `spherical_harmonics`, `isect_tiles` and
//! `rasterize_to_pixels`; the Python package chains them under autograd. Layouts are flat and
//! row-major: `C` cameras, `N` Gaussians, per-camera quantities `[C, N, ...]`, images
//! `[C, H, W, D]`.

mod project;
mod raster;
mod sh;

pub use project::{
    project, project_backward, CameraModel, Cameras, Gaussians, ProjectGrads, ProjectParams,
    Projected,
};
pub use raster::{
    bin_tiles, rasterize, rasterize_backward, Raster, RasterGrads, Splats2d, Tiles, TILE,
};
pub use sh::{sh_backward, sh_eval, SH_MAX_DEGREE};

/// Opacity is clamped to this value (the and the original 3DGS's `0.99`).
pub const ALPHA_MAX: f64 = 0.99;
/// Contributions with a smaller opacity are skipped.
pub const ALPHA_MIN: f64 = 1.0 / 255.0;
/// A pixel stops compositing once its transmittance would fall to this value or below.
pub const T_MIN: f64 = 1e-4;
/// Screen radius in standard deviations (gsplat 1.5's `3.33`, tightened by opacity).
pub const RADIUS_SIGMAS: f64 = 3.33;

/// Finite-difference helpers shared by the splat kernels' tests (float64, central differences).
#[cfg(test)]
pub(crate) mod fd {
    /// `n` deterministic pseudo-random values in `[lo, hi)` (a 64-bit LCG seeded by `seed`).
    pub fn values(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
            })
            .collect()
    }

    /// `sum_i a_i * b_i`.
    pub fn dot(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Checks `analytic` against central differences of `loss` at `x`, entry by entry:
    /// `|analytic - numeric| <= tol * (1 + |numeric|)`; also that the gradient is not all zero.
    pub fn check(name: &str, x: &[f64], analytic: &[f64], tol: f64, loss: impl Fn(&[f64]) -> f64) {
        assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
        let h = 1e-6;
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
            xp[i] += h;
            xm[i] -= h;
            let numeric = (loss(&xp) - loss(&xm)) / (2.0 * h);
            let err = (analytic[i] - numeric).abs();
            assert!(
                err <= tol * (1.0 + numeric.abs()),
                "{name}[{i}]: analytic {} vs finite difference {numeric}",
                analytic[i]
            );
        }
        assert!(
            analytic.iter().any(|v| v.abs() > 1e-8),
            "{name}: all-zero gradient"
        );
    }
}
