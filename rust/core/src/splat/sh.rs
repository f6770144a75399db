//! Real spherical harmonics, degrees 0–3, evaluated in the direction from each camera centre to
//! each Gaussian (gsplat's `spherical_harmonics` with 3DGS's basis order and signs).

use rayon::prelude::*;

use crate::check::{expect_finite, expect_len};
use crate::error::{Error, Result};
use crate::real::Real;

/// Highest supported degree.
pub const SH_MAX_DEGREE: usize = 3;

const C0: f64 = 0.282_094_791_773_878_1;
const C1: f64 = 0.488_602_511_902_919_9;
const C2: [f64; 5] = [
    1.092_548_430_592_079_2,
    -1.092_548_430_592_079_2,
    0.315_391_565_252_520_05,
    -1.092_548_430_592_079_2,
    0.546_274_215_296_039_6,
];
const C3: [f64; 7] = [
    -0.590_043_589_926_643_5,
    2.890_611_442_640_554,
    -0.457_045_799_464_465_8,
    0.373_176_332_590_115_4,
    -0.457_045_799_464_465_8,
    1.445_305_721_320_277,
    -0.590_043_589_926_643_5,
];

/// The first `nb` basis values at unit direction `(x, y, z)` and, if `grad`, their derivatives
/// w.r.t. `(x, y, z)` (as polynomials, before normalisation).
#[allow(clippy::type_complexity)]
fn basis<T: Real>(nb: usize, d: [T; 3], grad: bool) -> ([T; 16], [[T; 3]; 16]) {
    let l = T::lit;
    let [x, y, z] = d;
    let z0 = T::zero();
    let mut b = [z0; 16];
    let mut g = [[z0; 3]; 16];
    b[0] = l(C0);
    if nb > 1 {
        let c1 = l(C1);
        b[1] = -c1 * y;
        b[2] = c1 * z;
        b[3] = -c1 * x;
        if grad {
            g[1] = [z0, -c1, z0];
            g[2] = [z0, z0, c1];
            g[3] = [-c1, z0, z0];
        }
    }
    if nb > 4 {
        let (xx, yy, zz) = (x * x, y * y, z * z);
        let c = C2.map(l);
        b[4] = c[0] * x * y;
        b[5] = c[1] * y * z;
        b[6] = c[2] * (l(2.0) * zz - xx - yy);
        b[7] = c[3] * x * z;
        b[8] = c[4] * (xx - yy);
        if grad {
            g[4] = [c[0] * y, c[0] * x, z0];
            g[5] = [z0, c[1] * z, c[1] * y];
            g[6] = [l(-2.0) * c[2] * x, l(-2.0) * c[2] * y, l(4.0) * c[2] * z];
            g[7] = [c[3] * z, z0, c[3] * x];
            g[8] = [l(2.0) * c[4] * x, l(-2.0) * c[4] * y, z0];
        }
        if nb > 9 {
            let c = C3.map(l);
            let (three, four, six, eight) = (l(3.0), l(4.0), l(6.0), l(8.0));
            b[9] = c[0] * y * (three * xx - yy);
            b[10] = c[1] * x * y * z;
            b[11] = c[2] * y * (four * zz - xx - yy);
            b[12] = c[3] * z * (l(2.0) * zz - three * xx - three * yy);
            b[13] = c[4] * x * (four * zz - xx - yy);
            b[14] = c[5] * z * (xx - yy);
            b[15] = c[6] * x * (xx - three * yy);
            if grad {
                g[9] = [six * c[0] * x * y, c[0] * (three * xx - three * yy), z0];
                g[10] = [c[1] * y * z, c[1] * x * z, c[1] * x * y];
                g[11] = [
                    l(-2.0) * c[2] * x * y,
                    c[2] * (four * zz - xx - three * yy),
                    eight * c[2] * y * z,
                ];
                g[12] = [
                    -six * c[3] * x * z,
                    -six * c[3] * y * z,
                    c[3] * (six * zz - three * xx - three * yy),
                ];
                g[13] = [
                    c[4] * (four * zz - three * xx - yy),
                    l(-2.0) * c[4] * x * y,
                    eight * c[4] * x * z,
                ];
                g[14] = [
                    l(2.0) * c[5] * x * z,
                    l(-2.0) * c[5] * y * z,
                    c[5] * (xx - yy),
                ];
                g[15] = [c[6] * (three * xx - three * yy), -six * c[6] * x * y, z0];
            }
        }
    }
    (b, g)
}

fn check<T: Real>(
    degree: usize,
    coeffs: &[T],
    k: usize,
    means: &[T],
    campos: &[T],
) -> Result<(usize, usize)> {
    if degree > SH_MAX_DEGREE {
        return Err(Error::value(
            "sh_degree",
            format!("must be at most {SH_MAX_DEGREE}, got {degree}"),
        ));
    }
    if k < (degree + 1) * (degree + 1) {
        return Err(Error::shape(
            "colors",
            format!(
                "sh_degree {degree} needs at least {} coefficients, got {k}",
                (degree + 1) * (degree + 1)
            ),
        ));
    }
    if means.len() % 3 != 0 || campos.len() % 3 != 0 {
        return Err(Error::shape("means", "length is not a multiple of 3"));
    }
    let (n, c) = (means.len() / 3, campos.len() / 3);
    expect_len("colors", coeffs.len(), n * k * 3)?;
    expect_finite("colors", coeffs)?;
    Ok((n, c))
}

/// Unit direction from `campos` to `mean` and the distance.
#[inline]
fn direction<T: Real>(mean: &[T], cam: &[T]) -> ([T; 3], T) {
    let d = [mean[0] - cam[0], mean[1] - cam[1], mean[2] - cam[2]];
    let norm = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
        .sqrt()
        .max(T::lit(1e-12));
    ([d[0] / norm, d[1] / norm, d[2] / norm], norm)
}

/// Colours `[C, N, 3]` of SH coefficients `[N, K, 3]` (first `(degree + 1)²` used) seen from
/// camera centres `campos` `[C, 3]`. No `+ 0.5` offset, no clamping.
pub fn sh_eval<T: Real>(
    degree: usize,
    coeffs: &[T],
    k: usize,
    means: &[T],
    campos: &[T],
) -> Result<Vec<T>> {
    let (n, _) = check(degree, coeffs, k, means, campos)?;
    let nb = (degree + 1) * (degree + 1);
    let mut out = vec![T::zero(); campos.len() * n];
    crate::parallel::install(|| {
        out.par_chunks_mut(3)
            .enumerate()
            .with_min_len(1024)
            .for_each(|(i, o)| {
                let (ci, gi) = (i / n, i % n);
                let (d, _) = direction(&means[3 * gi..3 * gi + 3], &campos[3 * ci..3 * ci + 3]);
                let (b, _) = basis(nb, d, false);
                let co = &coeffs[3 * k * gi..3 * k * (gi + 1)];
                for (j, &bj) in b.iter().enumerate().take(nb) {
                    o[0] += bj * co[3 * j];
                    o[1] += bj * co[3 * j + 1];
                    o[2] += bj * co[3 * j + 2];
                }
            });
    });
    Ok(out)
}

/// Gradients `(coeffs [N, K, 3], means [N, 3])` of [`sh_eval`] given `v_colors` `[C, N, 3]`.
pub fn sh_backward<T: Real>(
    degree: usize,
    coeffs: &[T],
    k: usize,
    means: &[T],
    campos: &[T],
    v_colors: &[T],
) -> Result<(Vec<T>, Vec<T>)> {
    let (n, c) = check(degree, coeffs, k, means, campos)?;
    expect_len("v_colors", v_colors.len(), 3 * c * n)?;
    let nb = (degree + 1) * (degree + 1);
    let mut v_coeffs = vec![T::zero(); n * k * 3];
    let mut v_means = vec![T::zero(); 3 * n];
    crate::parallel::install(|| {
        v_coeffs
            .par_chunks_mut(3 * k)
            .zip(v_means.par_chunks_mut(3))
            .enumerate()
            .with_min_len(512)
            .for_each(|(gi, (vc, vm))| {
                let co = &coeffs[3 * k * gi..3 * k * (gi + 1)];
                for ci in 0..c {
                    let i = ci * n + gi;
                    let vo = &v_colors[3 * i..3 * i + 3];
                    let (d, norm) =
                        direction(&means[3 * gi..3 * gi + 3], &campos[3 * ci..3 * ci + 3]);
                    let (b, g) = basis(nb, d, degree > 0);
                    let mut vd = [T::zero(); 3];
                    for j in 0..nb {
                        vc[3 * j] += b[j] * vo[0];
                        vc[3 * j + 1] += b[j] * vo[1];
                        vc[3 * j + 2] += b[j] * vo[2];
                        let s = co[3 * j] * vo[0] + co[3 * j + 1] * vo[1] + co[3 * j + 2] * vo[2];
                        for a in 0..3 {
                            vd[a] += s * g[j][a];
                        }
                    }
                    if degree > 0 {
                        let dot = vd[0] * d[0] + vd[1] * d[1] + vd[2] * d[2];
                        for a in 0..3 {
                            vm[a] += (vd[a] - d[a] * dot) / norm;
                        }
                    }
                }
            });
    });
    Ok((v_coeffs, v_means))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splat::fd;

    const K: usize = 16;

    #[test]
    fn degree_zero_is_the_constant_band() {
        let co = fd::values(2 * K * 3, 21, -1.0, 1.0);
        let means = fd::values(6, 22, -1.0, 1.0);
        let out = sh_eval(0, &co, K, &means, &[0.0, 0.0, 5.0]).unwrap();
        let c0 = 0.28209479177387814;
        for g in 0..2 {
            for ch in 0..3 {
                assert!((out[3 * g + ch] - c0 * co[3 * K * g + ch]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (n, c) = (4, 2);
        let co = fd::values(n * K * 3, 23, -1.0, 1.0);
        let means = fd::values(3 * n, 24, -1.0, 1.0);
        let campos = vec![0.3, -0.2, 4.0, -3.0, 1.0, 2.5];
        for degree in 0..=SH_MAX_DEGREE {
            let v = fd::values(3 * c * n, 25 + degree as u64, -1.0, 1.0);
            let (g_co, g_me) = sh_backward(degree, &co, K, &means, &campos, &v).unwrap();
            let loss =
                |co: &[f64], me: &[f64]| fd::dot(&sh_eval(degree, co, K, me, &campos).unwrap(), &v);
            let nb = (degree + 1) * (degree + 1);
            // coefficients beyond the degree's bands get exactly zero
            for g in 0..n {
                assert!(g_co[3 * K * g + 3 * nb..3 * K * (g + 1)]
                    .iter()
                    .all(|&x| x == 0.0));
            }
            fd::check("coeffs", &co, &g_co, 1e-6, |x| loss(x, &means));
            if degree == 0 {
                assert!(
                    g_me.iter().all(|&x| x == 0.0),
                    "degree 0 does not depend on the means"
                );
            } else {
                fd::check("means", &means, &g_me, 1e-6, |x| loss(&co, x));
            }
        }
    }

    #[test]
    fn rejects_too_few_coefficients_and_too_high_degree() {
        let co = vec![0.0; 4 * 3];
        assert!(sh_eval(2, &co, 4, &[0.0; 3], &[0.0, 0.0, 1.0]).is_err());
        assert!(sh_eval(
            SH_MAX_DEGREE + 1,
            &vec![0.0; 64 * 3],
            64,
            &[0.0; 3],
            &[0.0; 3]
        )
        .is_err());
    }
}
