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

    /// `exp(self)`; `f32` uses a branch-free polynomial that vectorises (about 1 ulp).
    #[inline]
    fn exp_fast(self) -> Self {
        self.exp()
    }
}

impl Real for f32 {
    #[inline]
    fn exp_fast(self) -> f32 {
        exp_f32(self)
    }
}

impl Real for f64 {}

/// Branch-free `exp` for `f32` (Cephes `expf` polynomial, round-to-nearest by the 1.5 * 2^23
/// trick so that loops over slices auto-vectorise). Inputs are clamped to `[-87, 88]`, so the
/// result never underflows to a subnormal. NaN propagates.
#[inline]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer in the low bits
    let xc = x.clamp(-87.0, 88.0);
    let kf = xc * LOG2E + MAGIC;
    let k = kf - MAGIC;
    // The integer k sits in the mantissa of kf; integer ops only, so loops vectorise.
    let ki = (kf.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = xc - k * C1 - k * C2;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits((ki.wrapping_add(127) as u32) << 23);
    let v = y * scale;
    if x.is_nan() {
        x
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std_exp() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let (a, b) = (exp_f32(x) as f64, (x as f64).exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(-1000.0) < 1e-37);
    }
}
