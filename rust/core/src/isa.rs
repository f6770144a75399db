//! Runtime choice of instruction set for the hottest per-ray loops.
//!
//! Wheels target x86-64-v2 (SSE4.2) so they run on any 64-bit x86 CPU from the last 15 years.
//! Kernels whose loops vectorise also get an AVX2 build of their per-ray function, chosen once
//! per call when the CPU has it. Both builds run the same element-wise arithmetic (no fused
//! multiply-add, no reordered sums), so results are bit-identical either way.

/// Whether the AVX2 variants may run (x86-64 with AVX2, unless `RAYSPLAT_NO_AVX2` is set).
pub fn avx2() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| std::env::var_os("RAYSPLAT_NO_AVX2").is_none() && detected())
}

#[cfg(target_arch = "x86_64")]
fn detected() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn detected() -> bool {
    false
}

/// Defines `$base` and (on x86-64) `$avx2`: the same `#[inline(always)]` body `$inner`,
/// compiled for the baseline and for AVX2, with the channel count as a const generic
/// (`0` = take it from the argument `$c`).
macro_rules! per_ray_variants {
    ($base:ident, $avx2:ident, $inner:ident, <$t:ident>, ($($arg:ident: $ty:ty),*), $c:ident, $ret:ty) => {
        #[allow(clippy::too_many_arguments)]
        fn $base<$t: Real, const C: usize>($($arg: $ty,)* $c: usize) -> $ret {
            $inner($($arg,)* if C == 0 { $c } else { C })
        }

        /// # Safety
        /// The CPU must support AVX2 (see [`crate::isa::avx2`]).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx2<$t: Real, const C: usize>($($arg: $ty,)* $c: usize) -> $ret {
            $inner($($arg,)* if C == 0 { $c } else { C })
        }
    };
}
pub(crate) use per_ray_variants;

/// Picks the variant for channel count `$c` (specialised for 1, 3 and 4) and instruction set.
macro_rules! pick_variant {
    ($base:ident, $avx2:ident, $t:ty, $c:expr) => {{
        #[cfg(target_arch = "x86_64")]
        let avx2 = $crate::isa::avx2();
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        let _ = avx2;
        match ($c, avx2) {
            #[cfg(target_arch = "x86_64")]
            (1, true) => $avx2::<$t, 1> as _,
            #[cfg(target_arch = "x86_64")]
            (3, true) => $avx2::<$t, 3> as _,
            #[cfg(target_arch = "x86_64")]
            (4, true) => $avx2::<$t, 4> as _,
            #[cfg(target_arch = "x86_64")]
            (_, true) => $avx2::<$t, 0> as _,
            (1, _) => $base::<$t, 1> as _,
            (3, _) => $base::<$t, 3> as _,
            (4, _) => $base::<$t, 4> as _,
            _ => $base::<$t, 0> as _,
        }
    }};
}
pub(crate) use pick_variant;

/// Defines `$avx2`, the function `$inner` (an `#[inline(always)]` fn) compiled for AVX2.
macro_rules! avx2_variant {
    ($avx2:ident $(<$g:ident: $bound:path>)? => $inner:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        /// The AVX2 build of the function of the same name without the `_avx2` suffix.
        ///
        /// # Safety
        /// The CPU must support AVX2 (see [`crate::isa::avx2`]).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx2$(<$g: $bound>)?($($arg: $ty),*) -> $ret {
            $inner($($arg),*)
        }
    };
}
pub(crate) use avx2_variant;

/// `$avx2` on CPUs with AVX2, else `$base`, as a function pointer of the annotated type.
macro_rules! choose {
    ($base:expr, $avx2:expr) => {{
        #[cfg(target_arch = "x86_64")]
        let f = if $crate::isa::avx2() {
            $avx2 as _
        } else {
            $base as _
        };
        #[cfg(not(target_arch = "x86_64"))]
        let f = $base as _;
        f
    }};
}
pub(crate) use choose;

#[cfg(test)]
mod tests {
    use crate::real::Real;

    #[inline(always)]
    fn sum_sq<T: Real>(x: &[T], c: usize) -> T {
        x.iter()
            .step_by(c.max(1))
            .fold(T::zero(), |acc, &v| acc + v * v)
    }

    #[inline(always)]
    fn scale(x: &mut [f32], by: f32) -> f32 {
        x.iter_mut().for_each(|v| *v *= by);
        x.iter().sum()
    }

    avx2_variant!(scale_avx2 => scale, (x: &mut [f32], by: f32) -> f32);
    per_ray_variants!(sum_sq_base, sum_sq_avx2, sum_sq, <T>, (x: &[T]), c, T);

    type Scale = unsafe fn(&mut [f32], f32) -> f32;
    type SumSq<T> = unsafe fn(&[T], usize) -> T;

    fn data() -> Vec<f32> {
        (0..1001).map(|i| (i as f32 * 0.37).sin()).collect()
    }

    #[test]
    fn avx2_is_decided_once_and_never_without_the_cpu_feature() {
        let first = super::avx2();
        assert_eq!(first, super::avx2());
        if !super::detected() {
            assert!(!first);
        }
    }

    #[test]
    fn chosen_variant_matches_the_baseline_bit_for_bit() {
        let kernel: Scale = choose!(scale, scale_avx2);
        let (mut a, mut b) = (data(), data());
        // SAFETY: `choose!` returns the AVX2 build only on CPUs that have AVX2.
        let sa = unsafe { kernel(&mut a, 1.7) };
        let sb = scale(&mut b, 1.7);
        assert_eq!(sa.to_bits(), sb.to_bits());
        assert_eq!(a, b);
    }

    #[test]
    fn picked_variants_match_the_baseline_for_every_channel_count() {
        let x: Vec<f64> = data().iter().map(|&v| v as f64).collect();
        for c in [1, 2, 3, 4, 7] {
            let kernel: SumSq<f64> = pick_variant!(sum_sq_base, sum_sq_avx2, f64, c);
            // SAFETY: `pick_variant!` returns an AVX2 build only on CPUs that have AVX2.
            let got = unsafe { kernel(&x, c) };
            assert_eq!(got.to_bits(), sum_sq(&x, c).to_bits(), "c = {c}");
        }
    }
}
