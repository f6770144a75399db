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
    project, project_backward, Cameras, Gaussians, ProjectGrads, ProjectParams, Projected,
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
