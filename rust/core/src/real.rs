//! The floating-point element type of differentiable kernels: `f32` for speed, `f64` for
//! gradient checks.

/// `f32` or `f64`.
pub trait Real:
    num_traits::Float
    + num_traits::FromPrimitive
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::iter::Sum
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Converts a literal.
    #[inline]
    fn lit(x: f64) -> Self {
        Self::from_f64(x).unwrap_or_else(Self::nan)
    }
}

impl Real for f32 {}
impl Real for f64 {}
