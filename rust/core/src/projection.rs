//! Projection of per-ray sample points into reference cameras with bilinear image lookup
//! (ProNeRF's projection-aware sampling, Bello et al. 2023, `inverse_warp_rod1_rt2_coords`).
//!
//! For ray `r`, point `n` and reference slot `v` with camera `m = view_ids[r, v]`
//! (OpenGL camera-to-world `[R | t]`, pixel intrinsics `fx, fy, cx, cy`):
//! `c = Rᵀ (X - t)`, `u = fx · c_x / (-c_z) + cx`, `v = fy · (-c_y) / (-c_z) + cy`, the exact
//! inverse of `rays::generate_rays` (pixel `(px, py)` has its centre at `(px + 0.5, py + 0.5)`).
//! The image is sampled bilinearly between pixel centres (`grid_sample` with
//! `align_corners=False`, border clamp). A sample is valid when `c_z < 0` (in front of the
//! camera) and `0 ≤ u ≤ W`, `0 ≤ v ≤ H` (inside the image); invalid samples are 0 with zero
//! gradient. Callers holding LLFF NDC depths `t ∈ [0, 1)` convert them to metric camera depth
//! by `z = near / (1 - t)` before forming `X = o + z d`.

use rayon::prelude::*;

use crate::check::{expect_finite, expect_len};
use crate::error::{Error, Result};
use crate::real::Real;

/// Inputs of [`project_to_views`]; all arrays row-major.
#[derive(Debug, Clone, Copy)]
pub struct Projection<'a, T> {
    /// Points `[R, N, 3]`.
    pub points: &'a [T],
    /// Reference camera ids `[R, V]` into `0..n_cams`.
    pub view_ids: &'a [i64],
    /// OpenGL camera-to-world `[M, 3, 4]`.
    pub c2w: &'a [T],
    /// Pixel intrinsics `[M, 3, 3]`.
    pub intrinsics: &'a [T],
    /// Images `[M, H, W, C]`.
    pub images: &'a [T],
    /// Number of rays `R`.
    pub n_rays: usize,
    /// Points per ray `N`.
    pub n_points: usize,
    /// Reference views per ray `V`.
    pub n_views: usize,
    /// Number of cameras `M`.
    pub n_cams: usize,
    /// Image height `H`.
    pub height: usize,
    /// Image width `W`.
    pub width: usize,
    /// Channels `C`.
    pub channels: usize,
}

/// Bilinear footprint of one sample: four pixel offsets (into the image, in pixels), four
/// weights, and the derivative of the weights w.r.t. `(u, v)`.
struct Footprint<T> {
    idx: [usize; 4],
    w: [T; 4],
    dw_du: [T; 4],
    dw_dv: [T; 4],
    /// `d(u, v) / d(point)` as a 2x3 matrix.
    jac: [[T; 3]; 2],
}

impl<'a, T: Real> Projection<'a, T> {
    fn validate(&self) -> Result<()> {
        let (r, n, v, m) = (self.n_rays, self.n_points, self.n_views, self.n_cams);
        expect_len("points", self.points.len(), r * n * 3)?;
        expect_len("view_ids", self.view_ids.len(), r * v)?;
        expect_len("c2w", self.c2w.len(), m * 12)?;
        expect_len("K", self.intrinsics.len(), m * 9)?;
        expect_len(
            "images",
            self.images.len(),
            m * self.height * self.width * self.channels,
        )?;
        expect_finite("c2w", self.c2w)?;
        expect_finite("K", self.intrinsics)?;
        if self.height == 0 || self.width == 0 {
            return Err(Error::shape("images", "height and width must be positive"));
        }
        if let Some(&bad) = self
            .view_ids
            .iter()
            .find(|&&i| i < 0 || i as u64 >= m as u64)
        {
            return Err(Error::value(
                "view_ids",
                format!("camera id {bad} is outside 0..{m}"),
            ));
        }
        for cam in 0..m {
            let k = &self.intrinsics[cam * 9..cam * 9 + 9];
            if k[0] == T::zero() || k[4] == T::zero() {
                return Err(Error::value(
                    "K",
                    "focal lengths K[0, 0] and K[1, 1] must be non-zero",
                ));
            }
        }
        Ok(())
    }

    /// The footprint of point `x` in camera `cam`, or `None` when invalid.
    #[inline]
    fn footprint(&self, x: &[T], cam: usize) -> Option<Footprint<T>> {
        let m = &self.c2w[cam * 12..cam * 12 + 12];
        let k = &self.intrinsics[cam * 9..cam * 9 + 9];
        let d = [x[0] - m[3], x[1] - m[7], x[2] - m[11]];
        // c = Rᵀ d: c_i = Σ_j R[j][i] d_j.
        let mut c = [T::zero(); 3];
        for (i, ci) in c.iter_mut().enumerate() {
            *ci = m[i] * d[0] + m[4 + i] * d[1] + m[8 + i] * d[2];
        }
        if c[2].is_nan() || c[2] >= T::zero() {
            return None;
        }
        let (fx, fy, cx, cy) = (k[0], k[4], k[2], k[5]);
        let iz = T::one() / c[2];
        let u = -fx * c[0] * iz + cx;
        let v = fy * c[1] * iz + cy;
        let (wf, hf) = (T::lit(self.width as f64), T::lit(self.height as f64));
        if !(u >= T::zero() && u <= wf && v >= T::zero() && v <= hf) {
            return None;
        }
        // du/dc = (-fx/cz, 0, fx cx/cz²); dv/dc = (0, fy/cz, -fy cy/cz²); d(point) = R dc.
        let du_dc = [-fx * iz, T::zero(), fx * c[0] * iz * iz];
        let dv_dc = [T::zero(), fy * iz, -fy * c[1] * iz * iz];
        let mut jac = [[T::zero(); 3]; 2];
        for j in 0..3 {
            for i in 0..3 {
                jac[0][j] += m[4 * j + i] * du_dc[i];
                jac[1][j] += m[4 * j + i] * dv_dc[i];
            }
        }
        let half = T::lit(0.5);
        let (mut su, mut sv) = (u - half, v - half);
        let (wm, hm) = (wf - T::one(), hf - T::one());
        // Border clamp: the derivative vanishes where the coordinate is clamped.
        let (mut gu, mut gv) = (T::one(), T::one());
        if su < T::zero() || su > wm {
            su = su.max(T::zero()).min(wm);
            gu = T::zero();
        }
        if sv < T::zero() || sv > hm {
            sv = sv.max(T::zero()).min(hm);
            gv = T::zero();
        }
        let x0 = su.floor().to_usize().unwrap_or(0).min(self.width - 1);
        let y0 = sv.floor().to_usize().unwrap_or(0).min(self.height - 1);
        let x1 = (x0 + 1).min(self.width - 1);
        let y1 = (y0 + 1).min(self.height - 1);
        let fu = su - T::lit(x0 as f64);
        let fv = sv - T::lit(y0 as f64);
        let (gu_, gv_) = (T::one() - fu, T::one() - fv);
        let base = cam * self.height * self.width;
        Some(Footprint {
            idx: [
                base + y0 * self.width + x0,
                base + y0 * self.width + x1,
                base + y1 * self.width + x0,
                base + y1 * self.width + x1,
            ],
            w: [gu_ * gv_, fu * gv_, gu_ * fv, fu * fv],
            dw_du: [-gv_ * gu, gv_ * gu, -fv * gu, fv * gu],
            dw_dv: [-gu_ * gv, -fu * gv, gu_ * gv, fu * gv],
            jac,
        })
    }
}

/// Samples `[R, N, V, C]` and validity `[R, N, V]` of every point in its ray's reference views.
pub fn project_to_views<T: Real>(p: &Projection<'_, T>) -> Result<(Vec<T>, Vec<bool>)> {
    p.validate()?;
    let (n, v, ch) = (p.n_points, p.n_views, p.channels);
    let mut samples = crate::output::zeros::<T>(p.n_rays * n * v * ch);
    let mut valid = vec![false; p.n_rays * n * v];
    if samples.is_empty() && valid.is_empty() {
        return Ok((samples, valid));
    }
    crate::parallel::install(|| {
        samples
            .par_chunks_mut((n * v * ch).max(1))
            .zip(valid.par_chunks_mut((n * v).max(1)))
            .enumerate()
            .with_min_len(16)
            .for_each(|(r, (s, ok))| {
                for i in 0..n {
                    let x = &p.points[(r * n + i) * 3..(r * n + i) * 3 + 3];
                    for j in 0..v {
                        let cam = p.view_ids[r * v + j] as usize;
                        if let Some(f) = p.footprint(x, cam) {
                            ok[i * v + j] = true;
                            let o = &mut s[(i * v + j) * ch..(i * v + j + 1) * ch];
                            for k in 0..4 {
                                let px = &p.images[f.idx[k] * ch..(f.idx[k] + 1) * ch];
                                for (oc, &pc) in o.iter_mut().zip(px) {
                                    *oc += f.w[k] * pc;
                                }
                            }
                        }
                    }
                }
            });
    });
    Ok((samples, valid))
}

/// `(v_points, v_images)`, each `None` when not requested.
pub type ProjectionGrads<T> = (Option<Vec<T>>, Option<Vec<T>>);

/// Gradients `(v_points [R, N, 3], v_images [M, H, W, C])` of [`project_to_views`] given
/// `v_samples` `[R, N, V, C]`; each is computed only when asked for.
pub fn project_to_views_backward<T: Real>(
    p: &Projection<'_, T>,
    v_samples: &[T],
    need_points: bool,
    need_images: bool,
) -> Result<ProjectionGrads<T>> {
    p.validate()?;
    let (n, v, ch) = (p.n_points, p.n_views, p.channels);
    expect_len("v_samples", v_samples.len(), p.n_rays * n * v * ch)?;
    let v_points = need_points.then(|| {
        let mut g = crate::output::zeros::<T>(p.n_rays * n * 3);
        crate::parallel::install(|| {
            g.par_chunks_mut(3)
                .enumerate()
                .with_min_len(64)
                .for_each(|(rn, gx)| {
                    let r = rn / n;
                    let x = &p.points[rn * 3..rn * 3 + 3];
                    for j in 0..v {
                        let cam = p.view_ids[r * v + j] as usize;
                        let Some(f) = p.footprint(x, cam) else {
                            continue;
                        };
                        let gs = &v_samples[(rn * v + j) * ch..(rn * v + j + 1) * ch];
                        let (mut du, mut dv) = (T::zero(), T::zero());
                        for k in 0..4 {
                            let px = &p.images[f.idx[k] * ch..(f.idx[k] + 1) * ch];
                            let dot: T = px.iter().zip(gs).map(|(&a, &b)| a * b).sum();
                            du += f.dw_du[k] * dot;
                            dv += f.dw_dv[k] * dot;
                        }
                        for (a, gxa) in gx.iter_mut().enumerate() {
                            *gxa += du * f.jac[0][a] + dv * f.jac[1][a];
                        }
                    }
                });
        });
        g
    });
    let v_images = need_images.then(|| {
        let per_cam = p.height * p.width * ch;
        let mut g = crate::output::zeros::<T>(p.n_cams * per_cam);
        // Bucket the (ray, slot) pairs by camera (counting sort) so every camera's image
        // gradient is accumulated by one task without atomics, deterministically.
        let mut start = vec![0usize; p.n_cams + 1];
        for &id in p.view_ids {
            start[id as usize + 1] += 1;
        }
        for c in 0..p.n_cams {
            start[c + 1] += start[c];
        }
        let mut fill = start.clone();
        let mut order = vec![0usize; p.view_ids.len()];
        for (rv, &id) in p.view_ids.iter().enumerate() {
            order[fill[id as usize]] = rv;
            fill[id as usize] += 1;
        }
        crate::parallel::install(|| {
            g.par_chunks_mut(per_cam.max(1))
                .enumerate()
                .for_each(|(cam, gi)| {
                    let base = cam * p.height * p.width;
                    for &rv in &order[start[cam]..start[cam + 1]] {
                        let (r, j) = (rv / v, rv % v);
                        for i in 0..n {
                            let x = &p.points[(r * n + i) * 3..(r * n + i) * 3 + 3];
                            let Some(f) = p.footprint(x, cam) else {
                                continue;
                            };
                            let s = ((r * n + i) * v + j) * ch;
                            let gs = &v_samples[s..s + ch];
                            for k in 0..4 {
                                let o = (f.idx[k] - base) * ch;
                                for (gc, &sc) in gi[o..o + ch].iter_mut().zip(gs) {
                                    *gc += f.w[k] * sc;
                                }
                            }
                        }
                    }
                });
        });
        g
    });
    Ok((v_points, v_images))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity_cam() -> ([f64; 12], [f64; 9]) {
        (
            [1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0.],
            [2., 0., 2., 0., 2., 2., 0., 0., 1.],
        )
    }

    #[test]
    fn projects_pixel_centre_and_rejects_behind() {
        let (c2w, k) = identity_cam();
        // 4x4 single-channel image with value = pixel index.
        let img: Vec<f64> = (0..16).map(|i| i as f64).collect();
        // Pixel (1, 2): x = (1.5 - 2)/2 = -0.25, y = (2.5 - 2)/2 = 0.25 -> dir (-0.25, -0.25, -1).
        let pts = [-0.5, -0.5, -2.0, 0.0, 0.0, 1.0];
        let p = Projection {
            points: &pts,
            view_ids: &[0],
            c2w: &c2w,
            intrinsics: &k,
            images: &img,
            n_rays: 1,
            n_points: 2,
            n_views: 1,
            n_cams: 1,
            height: 4,
            width: 4,
            channels: 1,
        };
        let (s, ok) = project_to_views(&p).unwrap();
        assert_eq!(ok, vec![true, false]);
        assert!((s[0] - 9.0).abs() < 1e-12);
        assert_eq!(s[1], 0.0);
    }

    #[test]
    fn rejects_bad_view_id() {
        let (c2w, k) = identity_cam();
        let img = [0f64; 16];
        let p = Projection {
            points: &[0.0, 0.0, -1.0],
            view_ids: &[1],
            c2w: &c2w,
            intrinsics: &k,
            images: &img,
            n_rays: 1,
            n_points: 1,
            n_views: 1,
            n_cams: 1,
            height: 4,
            width: 4,
            channels: 1,
        };
        let e = project_to_views(&p).unwrap_err();
        assert!(e.to_string().starts_with("view_ids:"));
    }
}
