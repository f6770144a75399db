//! raysplat-core: the pure-Rust kernels behind raysplat.
//!
//! Every kernel reads flat, row-major `f32` / `i64` slices plus explicit sizes, validates them,
//! runs on raysplat's own rayon pool, and returns owned `Vec`s or an [`Error`]. Nothing here
//! knows about Python; the `raysplat-py` crate converts arrays and errors.

pub mod bake;
pub mod buffer_cache;
pub mod check;
pub mod distribution;
pub mod error;
pub mod grid;
pub mod hashgrid;
pub mod isa;
pub mod knn;
pub mod mesh;
pub mod output;
pub mod parallel;
pub mod prefix;
pub mod projection;
pub mod rays;
pub mod real;
pub mod sampling;
pub mod scan;
pub mod segments;
pub mod splat;
pub mod volrend;

pub use error::{Error, Result};
pub use real::Real;
pub use segments::Segments;
