//! EWA projection of 3D Gaussians into pinhole cameras (gsplat's `fully_fused_projection`).
//!
//! Per camera `c` and Gaussian `g`: `Σ = R(q) S Sᵀ R(q)ᵀ`, `p = V m + t`, `Σc = V Σ Vᵀ`,
//! `Σ2 = J Σc Jᵀ + eps2d·I` with the perspective Jacobian `J` whose `x/z`, `y/z` are clamped to
//! `1.3 · tan(fov / 2)` around the principal point; `conic = Σ2⁻¹`, `compensation =
//! sqrt(det(Σ2 - eps2d·I) / det Σ2)`. Culled (radius 0): depth outside `[near, far]`, a
//! non-positive determinant, an effective opacity below `1/255`, or a 3σ box off the image.

use rayon::prelude::*;

use super::{ALPHA_MIN, RADIUS_SIGMAS};
use crate::check::{expect_finite, expect_len};
use crate::error::{Error, Result};
use crate::real::Real;

type M3<T> = [[T; 3]; 3];

/// The Gaussians' parameters: means `[N, 3]`, quaternions `[N, 4]` (wxyz, normalised here),
/// activated scales `[N, 3]` and opacities `[N]`.
#[derive(Debug, Clone, Copy)]
pub struct Gaussians<'a, T> {
    /// `[N, 3]`
    pub means: &'a [T],
    /// `[N, 4]`, wxyz
    pub quats: &'a [T],
    /// `[N, 3]`
    pub scales: &'a [T],
    /// `[N]`
    pub opacities: &'a [T],
}

/// Pinhole cameras: world-to-camera matrices `[C, 4, 4]` (OpenCV) and intrinsics `[C, 3, 3]`.
#[derive(Debug, Clone, Copy)]
pub struct Cameras<'a, T> {
    /// `[C, 4, 4]`
    pub viewmats: &'a [T],
    /// `[C, 3, 3]`
    pub ks: &'a [T],
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
}

/// Projection settings.
#[derive(Debug, Clone, Copy)]
pub struct ProjectParams {
    /// Near clipping depth.
    pub near: f64,
    /// Far clipping depth.
    pub far: f64,
    /// Low-pass blur added to the 2D covariance's diagonal.
    pub eps2d: f64,
    /// Multiply opacities by the compensation when deciding culling and radii.
    pub antialiased: bool,
}

/// Per-camera projections, `[C, N, ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Projected<T> {
    /// Pixel coordinates `[C, N, 2]`.
    pub means2d: Vec<T>,
    /// Inverse 2D covariance `(a, b, c)` `[C, N, 3]`.
    pub conics: Vec<T>,
    /// Camera-space z `[C, N]`.
    pub depths: Vec<T>,
    /// Screen radii in pixels `[C, N, 2]` (0 = culled).
    pub radii: Vec<i32>,
    /// `sqrt(det Σ2 / det(Σ2 + eps2d I))` `[C, N]`.
    pub compensations: Vec<T>,
}

/// Gradients of [`project`]'s inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectGrads<T> {
    /// `[N, 3]`
    pub means: Vec<T>,
    /// `[N, 4]`
    pub quats: Vec<T>,
    /// `[N, 3]`
    pub scales: Vec<T>,
}

struct Cam<T> {
    r: M3<T>,
    t: [T; 3],
    fx: T,
    fy: T,
    cx: T,
    cy: T,
    lim_x: (T, T),
    lim_y: (T, T),
}

impl<T: Real> Cam<T> {
    fn new(v: &[T], k: &[T], width: usize, height: usize) -> Self {
        let r = [[v[0], v[1], v[2]], [v[4], v[5], v[6]], [v[8], v[9], v[10]]];
        let (fx, fy, cx, cy) = (k[0], k[4], k[2], k[5]);
        let (w, h) = (T::lit(width as f64), T::lit(height as f64));
        let (tfx, tfy) = (T::lit(0.5) * w / fx, T::lit(0.5) * h / fy);
        let m = T::lit(0.3);
        Cam {
            r,
            t: [v[3], v[7], v[11]],
            fx,
            fy,
            cx,
            cy,
            lim_x: (cx / fx + m * tfx, (w - cx) / fx + m * tfx),
            lim_y: (cy / fy + m * tfy, (h - cy) / fy + m * tfy),
        }
    }
}

/// The forward intermediates of one (camera, Gaussian) pair.
struct Fwd<T> {
    qn: [T; 4],
    qnorm: T,
    s: [T; 3],
    rq: M3<T>,
    mm: M3<T>,
    p: [T; 3],
    sigc: M3<T>,
    j: [[T; 3]; 2],
    u: (T, bool),
    v: (T, bool),
    cov: [T; 3],
    det0: T,
    det: T,
    comp: T,
    conic: [T; 3],
    mean2d: [T; 2],
}

fn matmul<T: Real>(a: &M3<T>, b: &M3<T>) -> M3<T> {
    let mut o = [[T::zero(); 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            o[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
        }
    }
    o
}

fn transpose<T: Real>(a: &M3<T>) -> M3<T> {
    let mut o = *a;
    for (i, row) in a.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            o[j][i] = x;
        }
    }
    o
}

fn quat_rot<T: Real>(q: &[T]) -> ([T; 4], T, M3<T>) {
    let norm = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
        .sqrt()
        .max(T::lit(1e-12));
    let qn = [q[0] / norm, q[1] / norm, q[2] / norm, q[3] / norm];
    let [w, x, y, z] = qn;
    let (one, two) = (T::one(), T::lit(2.0));
    let rq = [
        [
            one - two * (y * y + z * z),
            two * (x * y - w * z),
            two * (x * z + w * y),
        ],
        [
            two * (x * y + w * z),
            one - two * (x * x + z * z),
            two * (y * z - w * x),
        ],
        [
            two * (x * z - w * y),
            two * (y * z + w * x),
            one - two * (x * x + y * y),
        ],
    ];
    (qn, norm, rq)
}

fn forward_one<T: Real>(cam: &Cam<T>, m: &[T], q: &[T], s: &[T], eps2d: T) -> Fwd<T> {
    let (qn, qnorm, rq) = quat_rot(q);
    let mut mm = rq;
    for row in mm.iter_mut() {
        for (x, &sj) in row.iter_mut().zip(s) {
            *x *= sj;
        }
    }
    let sigma = matmul(&mm, &transpose(&mm));
    let r = &cam.r;
    let mut p = cam.t;
    for (i, pi) in p.iter_mut().enumerate() {
        *pi += r[i][0] * m[0] + r[i][1] * m[1] + r[i][2] * m[2];
    }
    let sigc = matmul(&matmul(r, &sigma), &transpose(r));
    let z = p[2];
    let rz = T::one() / z;
    let u0 = p[0] * rz;
    let uc = u0.max(-cam.lim_x.0).min(cam.lim_x.1);
    let v0 = p[1] * rz;
    let vc = v0.max(-cam.lim_y.0).min(cam.lim_y.1);
    let j = [
        [cam.fx * rz, T::zero(), -cam.fx * uc * rz],
        [T::zero(), cam.fy * rz, -cam.fy * vc * rz],
    ];
    let mut js = [[T::zero(); 3]; 2];
    for a in 0..2 {
        for b in 0..3 {
            js[a][b] = j[a][0] * sigc[0][b] + j[a][1] * sigc[1][b] + j[a][2] * sigc[2][b];
        }
    }
    let dot = |a: usize, b: usize| js[a][0] * j[b][0] + js[a][1] * j[b][1] + js[a][2] * j[b][2];
    let cov = [dot(0, 0), dot(0, 1), dot(1, 1)];
    let det0 = cov[0] * cov[2] - cov[1] * cov[1];
    let (ap, cp) = (cov[0] + eps2d, cov[2] + eps2d);
    let det = ap * cp - cov[1] * cov[1];
    let comp = if det0 > T::zero() && det > T::zero() {
        (det0 / det).sqrt()
    } else {
        T::zero()
    };
    let conic = [cp / det, -cov[1] / det, ap / det];
    let mean2d = [cam.fx * u0 + cam.cx, cam.fy * v0 + cam.cy];
    Fwd {
        qn,
        qnorm,
        s: [s[0], s[1], s[2]],
        rq,
        mm,
        p,
        sigc,
        j,
        u: (uc, uc != u0),
        v: (vc, vc != v0),
        cov,
        det0,
        det,
        comp,
        conic,
        mean2d,
    }
}

fn check_inputs<T: Real>(g: &Gaussians<'_, T>, cams: &Cameras<'_, T>) -> Result<(usize, usize)> {
    if g.means.len() % 3 != 0 {
        return Err(Error::shape(
            "means",
            format!("length {} is not a multiple of 3", g.means.len()),
        ));
    }
    let n = g.means.len() / 3;
    expect_len("quats", g.quats.len(), 4 * n)?;
    expect_len("scales", g.scales.len(), 3 * n)?;
    expect_len("opacities", g.opacities.len(), n)?;
    if cams.viewmats.len() % 16 != 0 {
        return Err(Error::shape("viewmats", "length is not a multiple of 16"));
    }
    let c = cams.viewmats.len() / 16;
    expect_len("Ks", cams.ks.len(), 9 * c)?;
    if cams.width == 0 || cams.height == 0 {
        return Err(Error::value("width", "width and height must be positive"));
    }
    for (name, v) in [
        ("means", g.means),
        ("quats", g.quats),
        ("scales", g.scales),
        ("opacities", g.opacities),
        ("viewmats", cams.viewmats),
        ("Ks", cams.ks),
    ] {
        expect_finite(name, v)?;
    }
    for k in cams.ks.chunks(9) {
        if !(k[0] > T::zero() && k[4] > T::zero()) {
            return Err(Error::value("Ks", "focal lengths must be positive"));
        }
    }
    Ok((n, c))
}

/// Projects `N` Gaussians into `C` cameras.
pub fn project<T: Real>(
    g: &Gaussians<'_, T>,
    cams: &Cameras<'_, T>,
    params: &ProjectParams,
) -> Result<Projected<T>> {
    let (n, c) = check_inputs(g, cams)?;
    if params.eps2d.is_nan() || params.eps2d < 0.0 {
        return Err(Error::value("eps2d", "must be non-negative"));
    }
    let cameras: Vec<Cam<T>> = (0..c)
        .map(|i| {
            Cam::new(
                &cams.viewmats[16 * i..],
                &cams.ks[9 * i..],
                cams.width,
                cams.height,
            )
        })
        .collect();
    let mut out = Projected {
        means2d: vec![T::zero(); 2 * c * n],
        conics: vec![T::zero(); 3 * c * n],
        depths: vec![T::zero(); c * n],
        radii: vec![0; 2 * c * n],
        compensations: vec![T::zero(); c * n],
    };
    let (near, far, eps) = (
        T::lit(params.near),
        T::lit(params.far),
        T::lit(params.eps2d),
    );
    let (w, h) = (T::lit(cams.width as f64), T::lit(cams.height as f64));
    let alpha_min = T::lit(ALPHA_MIN);
    crate::parallel::install(|| {
        out.means2d
            .par_chunks_mut(2)
            .zip(out.conics.par_chunks_mut(3))
            .zip(out.depths.par_iter_mut())
            .zip(out.radii.par_chunks_mut(2))
            .zip(out.compensations.par_iter_mut())
            .enumerate()
            .with_min_len(1024)
            .for_each(|(i, ((((m2, co), d), r), comp))| {
                let (ci, gi) = (i / n, i % n);
                let cam = &cameras[ci];
                let f = forward_one(
                    cam,
                    &g.means[3 * gi..3 * gi + 3],
                    &g.quats[4 * gi..4 * gi + 4],
                    &g.scales[3 * gi..3 * gi + 3],
                    eps,
                );
                let z = f.p[2];
                let keep = z >= near && z <= far && f.det > T::zero();
                if !keep {
                    return;
                }
                let mut opac = g.opacities[gi];
                if params.antialiased {
                    opac *= f.comp;
                }
                if opac.is_nan() || opac < alpha_min {
                    return;
                }
                let extend =
                    T::lit(RADIUS_SIGMAS).min((T::lit(2.0) * (opac / alpha_min).ln()).sqrt());
                let rx = (extend * (f.cov[0] + eps).sqrt()).ceil();
                let ry = (extend * (f.cov[2] + eps).sqrt()).ceil();
                if rx <= T::zero() && ry <= T::zero() {
                    return;
                }
                let [mx, my] = f.mean2d;
                if mx + rx <= T::zero() || mx - rx >= w || my + ry <= T::zero() || my - ry >= h {
                    return;
                }
                m2.copy_from_slice(&f.mean2d);
                co.copy_from_slice(&f.conic);
                *d = z;
                r[0] = rx.to_i32().unwrap_or(i32::MAX);
                r[1] = ry.to_i32().unwrap_or(i32::MAX);
                *comp = f.comp;
            });
    });
    Ok(out)
}

/// Gradients of [`project`] w.r.t. means, quaternions and scales, given the gradients of
/// `means2d`, `conics`, `depths` and `compensations` (`None` = zero). Culled pairs (radius 0)
/// get no gradient.
#[allow(clippy::too_many_arguments)]
pub fn project_backward<T: Real>(
    g: &Gaussians<'_, T>,
    cams: &Cameras<'_, T>,
    params: &ProjectParams,
    radii: &[i32],
    v_means2d: Option<&[T]>,
    v_conics: Option<&[T]>,
    v_depths: Option<&[T]>,
    v_comps: Option<&[T]>,
) -> Result<ProjectGrads<T>> {
    let (n, c) = check_inputs(g, cams)?;
    expect_len("radii", radii.len(), 2 * c * n)?;
    for (name, v, k) in [
        ("v_means2d", v_means2d, 2),
        ("v_conics", v_conics, 3),
        ("v_depths", v_depths, 1),
        ("v_compensations", v_comps, 1),
    ] {
        if let Some(v) = v {
            expect_len(name, v.len(), k * c * n)?;
        }
    }
    let cameras: Vec<Cam<T>> = (0..c)
        .map(|i| {
            Cam::new(
                &cams.viewmats[16 * i..],
                &cams.ks[9 * i..],
                cams.width,
                cams.height,
            )
        })
        .collect();
    let eps = T::lit(params.eps2d);
    let mut out = ProjectGrads {
        means: vec![T::zero(); 3 * n],
        quats: vec![T::zero(); 4 * n],
        scales: vec![T::zero(); 3 * n],
    };
    let get = |v: Option<&[T]>, i: usize| v.map_or(T::zero(), |v| v[i]);
    crate::parallel::install(|| {
        out.means
            .par_chunks_mut(3)
            .zip(out.quats.par_chunks_mut(4))
            .zip(out.scales.par_chunks_mut(3))
            .enumerate()
            .with_min_len(512)
            .for_each(|(gi, ((vm, vq), vs))| {
                for (ci, cam) in cameras.iter().enumerate() {
                    let i = ci * n + gi;
                    if radii[2 * i] <= 0 && radii[2 * i + 1] <= 0 {
                        continue;
                    }
                    let f = forward_one(
                        cam,
                        &g.means[3 * gi..3 * gi + 3],
                        &g.quats[4 * gi..4 * gi + 4],
                        &g.scales[3 * gi..3 * gi + 3],
                        eps,
                    );
                    let vmean = [get(v_means2d, 2 * i), get(v_means2d, 2 * i + 1)];
                    let vcon = [
                        get(v_conics, 3 * i),
                        get(v_conics, 3 * i + 1),
                        get(v_conics, 3 * i + 2),
                    ];
                    let grads =
                        backward_one(cam, &f, eps, vmean, vcon, get(v_depths, i), get(v_comps, i));
                    for k in 0..3 {
                        vm[k] += grads.0[k];
                        vs[k] += grads.2[k];
                    }
                    for (v, &gq) in vq.iter_mut().zip(&grads.1) {
                        *v += gq;
                    }
                }
            });
    });
    Ok(out)
}

#[allow(clippy::needless_range_loop)]
fn backward_one<T: Real>(
    cam: &Cam<T>,
    f: &Fwd<T>,
    eps: T,
    v_mean2d: [T; 2],
    v_conic: [T; 3],
    v_depth: T,
    v_comp: T,
) -> ([T; 3], [T; 4], [T; 3]) {
    let (zero, two, half) = (T::zero(), T::lit(2.0), T::lit(0.5));
    // conic = P = (Σ2 + eps I)^-1:  v_Σ2 = -P G P with G the symmetric gradient of P.
    let pm = [[f.conic[0], f.conic[1]], [f.conic[1], f.conic[2]]];
    let gm = [
        [v_conic[0], half * v_conic[1]],
        [half * v_conic[1], v_conic[2]],
    ];
    let mut pg = [[zero; 2]; 2];
    for a in 0..2 {
        for b in 0..2 {
            pg[a][b] = pm[a][0] * gm[0][b] + pm[a][1] * gm[1][b];
        }
    }
    let mut vs2 = [[zero; 2]; 2];
    for a in 0..2 {
        for b in 0..2 {
            vs2[a][b] = -(pg[a][0] * pm[0][b] + pg[a][1] * pm[1][b]);
        }
    }
    let (mut va, mut vb, mut vc) = (vs2[0][0], two * vs2[0][1], vs2[1][1]);
    // compensation = sqrt(det0 / det)
    if f.comp > zero && v_comp != zero {
        let [a, b, c] = f.cov;
        let (ap, cp) = (a + eps, c + eps);
        let k = v_comp * f.comp * half;
        va += k * (c / f.det0 - cp / f.det);
        vc += k * (a / f.det0 - ap / f.det);
        vb += k * (-two * b / f.det0 + two * b / f.det);
    }
    // Σ2 = J Σc Jᵀ
    let v2 = [[va, half * vb], [half * vb, vc]];
    let j = &f.j;
    let mut v_sigc = [[zero; 3]; 3];
    for a in 0..3 {
        for b in 0..3 {
            let mut acc = zero;
            for k in 0..2 {
                for l in 0..2 {
                    acc += j[k][a] * v2[k][l] * j[l][b];
                }
            }
            v_sigc[a][b] = acc;
        }
    }
    // v_J = 2 V2 J Σc
    let mut jsc = [[zero; 3]; 2];
    for a in 0..2 {
        for b in 0..3 {
            jsc[a][b] = j[a][0] * f.sigc[0][b] + j[a][1] * f.sigc[1][b] + j[a][2] * f.sigc[2][b];
        }
    }
    let mut vj = [[zero; 3]; 2];
    for a in 0..2 {
        for b in 0..3 {
            vj[a][b] = two * (v2[a][0] * jsc[0][b] + v2[a][1] * jsc[1][b]);
        }
    }
    // p (camera space)
    let [x, y, z] = f.p;
    let rz = T::one() / z;
    let rz2 = rz * rz;
    let (fx, fy) = (cam.fx, cam.fy);
    let mut vp = [zero, zero, v_depth];
    vp[0] += v_mean2d[0] * fx * rz;
    vp[2] -= v_mean2d[0] * fx * x * rz2;
    vp[1] += v_mean2d[1] * fy * rz;
    vp[2] -= v_mean2d[1] * fy * y * rz2;
    vp[2] -= vj[0][0] * fx * rz2 + vj[1][1] * fy * rz2;
    // J02 = -fx * u / z with u = clamp(x / z)
    if f.u.1 {
        vp[2] += vj[0][2] * fx * f.u.0 * rz2;
    } else {
        vp[0] -= vj[0][2] * fx * rz2;
        vp[2] += vj[0][2] * two * fx * x * rz2 * rz;
    }
    if f.v.1 {
        vp[2] += vj[1][2] * fy * f.v.0 * rz2;
    } else {
        vp[1] -= vj[1][2] * fy * rz2;
        vp[2] += vj[1][2] * two * fy * y * rz2 * rz;
    }
    let r = &cam.r;
    let mut v_mean = [zero; 3];
    for k in 0..3 {
        v_mean[k] = r[0][k] * vp[0] + r[1][k] * vp[1] + r[2][k] * vp[2];
    }
    // Σc = R Σ Rᵀ  ->  v_Σ = Rᵀ v_Σc R;  Σ = M Mᵀ  ->  v_M = (v_Σ + v_Σᵀ) M
    let v_sigma = matmul(&matmul(&transpose(r), &v_sigc), r);
    let mut vm = [[zero; 3]; 3];
    for a in 0..3 {
        for b in 0..3 {
            let mut acc = zero;
            for k in 0..3 {
                acc += (v_sigma[a][k] + v_sigma[k][a]) * f.mm[k][b];
            }
            vm[a][b] = acc;
        }
    }
    // M = Rq diag(s)
    let mut v_scale = [zero; 3];
    let mut v_rq = [[zero; 3]; 3];
    for a in 0..3 {
        for b in 0..3 {
            v_scale[b] += vm[a][b] * f.rq[a][b];
            v_rq[a][b] = vm[a][b] * f.s[b];
        }
    }
    let [w, qx, qy, qz] = f.qn;
    let g = |m: [[T; 3]; 3]| {
        let mut acc = zero;
        for a in 0..3 {
            for b in 0..3 {
                acc += v_rq[a][b] * m[a][b];
            }
        }
        two * acc
    };
    let vqn = [
        g([[zero, -qz, qy], [qz, zero, -qx], [-qy, qx, zero]]),
        g([[zero, qy, qz], [qy, -two * qx, -w], [qz, w, -two * qx]]),
        g([[-two * qy, qx, w], [qx, zero, qz], [-w, qz, -two * qy]]),
        g([[-two * qz, -w, qx], [w, -two * qz, qy], [qx, qy, zero]]),
    ];
    let dotq = f.qn[0] * vqn[0] + f.qn[1] * vqn[1] + f.qn[2] * vqn[2] + f.qn[3] * vqn[3];
    let mut v_quat = [zero; 4];
    for k in 0..4 {
        v_quat[k] = (vqn[k] - f.qn[k] * dotq) / f.qnorm;
    }
    (v_mean, v_quat, v_scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splat::fd;

    const W: usize = 64;
    const H: usize = 48;

    /// Two cameras looking down +z at the origin from about 4 units (the second rotated about y).
    fn cameras() -> (Vec<f64>, Vec<f64>) {
        let (s, c) = (0.3f64.sin(), 0.3f64.cos());
        #[rustfmt::skip]
        let viewmats = vec![
            1.0, 0.0, 0.0, 0.0,   0.0, 1.0, 0.0, 0.0,   0.0, 0.0, 1.0, 4.0,   0.0, 0.0, 0.0, 1.0,
            c, 0.0, s, 0.2,       0.0, 1.0, 0.0, -0.1,  -s, 0.0, c, 4.5,      0.0, 0.0, 0.0, 1.0,
        ];
        #[rustfmt::skip]
        let ks = vec![
            60.0, 0.0, 32.0,  0.0, 60.0, 24.0,  0.0, 0.0, 1.0,
            50.0, 0.0, 30.0,  0.0, 55.0, 25.0,  0.0, 0.0, 1.0,
        ];
        (viewmats, ks)
    }

    struct Inputs {
        means: Vec<f64>,
        quats: Vec<f64>,
        scales: Vec<f64>,
        opacities: Vec<f64>,
    }

    fn inputs(n: usize) -> Inputs {
        Inputs {
            means: fd::values(3 * n, 1, -0.6, 0.6),
            quats: fd::values(4 * n, 2, -1.0, 1.0),
            scales: fd::values(3 * n, 3, 0.05, 0.3),
            opacities: fd::values(n, 4, 0.3, 0.9),
        }
    }

    const PARAMS: ProjectParams = ProjectParams {
        near: 0.01,
        far: 100.0,
        eps2d: 0.3,
        antialiased: false,
    };

    fn run(x: &Inputs, vm: &[f64], ks: &[f64]) -> Projected<f64> {
        let g = Gaussians {
            means: &x.means,
            quats: &x.quats,
            scales: &x.scales,
            opacities: &x.opacities,
        };
        let cams = Cameras {
            viewmats: vm,
            ks,
            width: W,
            height: H,
        };
        project(&g, &cams, &PARAMS).unwrap()
    }

    #[test]
    fn backward_matches_finite_differences() {
        let n = 5;
        let x = inputs(n);
        let (vm, ks) = cameras();
        let out = run(&x, &vm, &ks);
        assert!(out.radii.iter().all(|&r| r > 0), "every pair is visible");
        let c = 2;
        let v_m2 = fd::values(2 * c * n, 5, -1.0, 1.0);
        let v_co = fd::values(3 * c * n, 6, -10.0, 10.0);
        let v_de = fd::values(c * n, 7, -1.0, 1.0);
        let v_cp = fd::values(c * n, 8, -1.0, 1.0);
        let loss = |x: &Inputs| {
            let o = run(x, &vm, &ks);
            fd::dot(&o.means2d, &v_m2)
                + fd::dot(&o.conics, &v_co)
                + fd::dot(&o.depths, &v_de)
                + fd::dot(&o.compensations, &v_cp)
        };
        let g = Gaussians {
            means: &x.means,
            quats: &x.quats,
            scales: &x.scales,
            opacities: &x.opacities,
        };
        let cams = Cameras {
            viewmats: &vm,
            ks: &ks,
            width: W,
            height: H,
        };
        let grads = project_backward(
            &g,
            &cams,
            &PARAMS,
            &out.radii,
            Some(&v_m2),
            Some(&v_co),
            Some(&v_de),
            Some(&v_cp),
        )
        .unwrap();
        let tol = 1e-6;
        fd::check("means", &x.means, &grads.means, tol, |m| {
            loss(&Inputs {
                means: m.to_vec(),
                ..inputs(n)
            })
        });
        fd::check("quats", &x.quats, &grads.quats, tol, |q| {
            loss(&Inputs {
                quats: q.to_vec(),
                ..inputs(n)
            })
        });
        fd::check("scales", &x.scales, &grads.scales, tol, |s| {
            loss(&Inputs {
                scales: s.to_vec(),
                ..inputs(n)
            })
        });
    }

    #[test]
    fn missing_output_gradients_count_as_zero() {
        let n = 3;
        let x = inputs(n);
        let (vm, ks) = cameras();
        let out = run(&x, &vm, &ks);
        let g = Gaussians {
            means: &x.means,
            quats: &x.quats,
            scales: &x.scales,
            opacities: &x.opacities,
        };
        let cams = Cameras {
            viewmats: &vm,
            ks: &ks,
            width: W,
            height: H,
        };
        let v_m2 = fd::values(2 * 2 * n, 9, -1.0, 1.0);
        let zeros = |k: usize| vec![0.0; k * 2 * n];
        let a = project_backward(
            &g,
            &cams,
            &PARAMS,
            &out.radii,
            Some(&v_m2),
            None,
            None,
            None,
        );
        let b = project_backward(
            &g,
            &cams,
            &PARAMS,
            &out.radii,
            Some(&v_m2),
            Some(&zeros(3)),
            Some(&zeros(1)),
            Some(&zeros(1)),
        );
        assert_eq!(a.unwrap(), b.unwrap());
    }

    #[test]
    fn culled_pairs_get_no_gradient() {
        let mut x = inputs(2);
        x.means[2] = -10.0; // behind both cameras
        let (vm, ks) = cameras();
        let out = run(&x, &vm, &ks);
        assert_eq!(&out.radii[0..2], &[0, 0]);
        let g = Gaussians {
            means: &x.means,
            quats: &x.quats,
            scales: &x.scales,
            opacities: &x.opacities,
        };
        let cams = Cameras {
            viewmats: &vm,
            ks: &ks,
            width: W,
            height: H,
        };
        let v = vec![1.0; 2 * 2 * 2];
        let grads =
            project_backward(&g, &cams, &PARAMS, &out.radii, Some(&v), None, None, None).unwrap();
        assert!(grads.means[0..3].iter().all(|&v| v == 0.0));
        assert!(grads.means[3..6].iter().any(|&v| v != 0.0));
    }
}
