//! EWA projection of 3D Gaussians into cameras (gsplat's `fully_fused_projection`): pinhole,
//! orthographic and equidistant fisheye ([`CameraModel`]), with gradients w.r.t. the Gaussians
//! and (optionally) the world-to-camera matrices.
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

/// The camera model of [`project`] (gsplat's `camera_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CameraModel {
    /// Perspective: `(fx x/z + cx, fy y/z + cy)`, the Jacobian's `x/z`, `y/z` clamped to
    /// `1.3 · tan(fov / 2)`.
    #[default]
    Pinhole,
    /// Orthographic: `(fx x + cx, fy y + cy)`, a constant Jacobian.
    Ortho,
    /// Equidistant fisheye: `θ = atan2(|xy|, z)`, `(fx x θ/|xy| + cx, fy y θ/|xy| + cy)`
    /// (gsplat's `fisheye_proj`, its `1e-7` guards included).
    Fisheye,
}

impl CameraModel {
    /// Parses gsplat's names `"pinhole"`, `"ortho"`, `"fisheye"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "pinhole" => Ok(Self::Pinhole),
            "ortho" => Ok(Self::Ortho),
            "fisheye" => Ok(Self::Fisheye),
            other => Err(Error::value(
                "camera_model",
                format!("must be one of pinhole, ortho, fisheye, got {other:?}"),
            )),
        }
    }
}

/// The fisheye model's guard against `|xy| = 0` and `z = 0` (gsplat's `eps`).
const FISHEYE_EPS: f64 = 1e-7;

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
    /// Pinhole, orthographic or fisheye.
    pub camera_model: CameraModel,
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
    /// `[C, 4, 4]` (the last row zero) when asked for, else empty.
    pub viewmats: Vec<T>,
}

struct Cam<T> {
    model: CameraModel,
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
    fn new(v: &[T], k: &[T], width: usize, height: usize, model: CameraModel) -> Self {
        let r = [[v[0], v[1], v[2]], [v[4], v[5], v[6]], [v[8], v[9], v[10]]];
        let (fx, fy, cx, cy) = (k[0], k[4], k[2], k[5]);
        let (w, h) = (T::lit(width as f64), T::lit(height as f64));
        let (tfx, tfy) = (T::lit(0.5) * w / fx, T::lit(0.5) * h / fy);
        let m = T::lit(0.3);
        Cam {
            model,
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

/// A camera-space point's pixel position and the 2x3 Jacobian of the covariance projection;
/// for the pinhole model also the clamped `x/z`, `y/z` and whether each was clamped.
#[allow(clippy::type_complexity)]
fn project_point<T: Real>(cam: &Cam<T>, p: &[T; 3]) -> ([T; 2], [[T; 3]; 2], (T, bool), (T, bool)) {
    let [x, y, z] = *p;
    let zero = T::zero();
    match cam.model {
        CameraModel::Pinhole => {
            let rz = T::one() / z;
            let u0 = x * rz;
            let uc = u0.max(-cam.lim_x.0).min(cam.lim_x.1);
            let v0 = y * rz;
            let vc = v0.max(-cam.lim_y.0).min(cam.lim_y.1);
            let j = [
                [cam.fx * rz, zero, -cam.fx * uc * rz],
                [zero, cam.fy * rz, -cam.fy * vc * rz],
            ];
            let mean2d = [cam.fx * u0 + cam.cx, cam.fy * v0 + cam.cy];
            (mean2d, j, (uc, uc != u0), (vc, vc != v0))
        }
        CameraModel::Ortho => {
            let j = [[cam.fx, zero, zero], [zero, cam.fy, zero]];
            let mean2d = [cam.fx * x + cam.cx, cam.fy * y + cam.cy];
            (mean2d, j, (zero, false), (zero, false))
        }
        CameraModel::Fisheye => {
            let f = Fisheye::new(x, y, z);
            let mean2d = [cam.fx * x * f.k + cam.cx, cam.fy * y * f.k + cam.cy];
            let j = [
                [
                    cam.fx * (f.x2 * f.a + f.y2 * f.b),
                    cam.fx * f.xy * (f.a - f.b),
                    -cam.fx * x * f.inv,
                ],
                [
                    cam.fy * f.xy * (f.a - f.b),
                    cam.fy * (f.y2 * f.a + f.x2 * f.b),
                    -cam.fy * y * f.inv,
                ],
            ];
            (mean2d, j, (zero, false), (zero, false))
        }
    }
}

/// The intermediates of gsplat's `fisheye_proj` at a camera-space point.
struct Fisheye<T> {
    r: T,
    xy_len: T,
    k: T,
    x2: T,
    y2: T,
    xy: T,
    x2y2: T,
    inv: T,
    a: T,
    b: T,
}

impl<T: Real> Fisheye<T> {
    fn new(x: T, y: T, z: T) -> Self {
        let eps = T::lit(FISHEYE_EPS);
        let r = (x * x + y * y).sqrt();
        let xy_len = r + eps;
        let theta = xy_len.atan2(z + eps);
        let (x2, y2, xy) = (x * x + eps, y * y, x * y);
        let x2y2 = x2 + y2;
        let inv = T::one() / (x2y2 + z * z);
        let theta2 = xy_len.atan2(z);
        Fisheye {
            r,
            xy_len,
            k: theta / xy_len,
            x2,
            y2,
            xy,
            x2y2,
            inv,
            a: z * inv / x2y2,
            b: theta2 / xy_len / x2y2,
        }
    }

    /// The gradient w.r.t. the point of `v_mean2d · mean2d + Σ v_j ⊙ J` (reverse mode through
    /// [`project_point`]'s fisheye branch, step by step).
    #[allow(clippy::too_many_arguments)]
    fn backward(&self, x: T, y: T, z: T, fx: T, fy: T, vm: [T; 2], vj: &[[T; 3]; 2]) -> [T; 3] {
        let eps = T::lit(FISHEYE_EPS);
        let two = T::lit(2.0);
        let (a, b) = (self.a, self.b);
        let g_a = fx * (vj[0][0] * self.x2 + vj[0][1] * self.xy)
            + fy * (vj[1][0] * self.xy + vj[1][1] * self.y2);
        let g_b = fx * (vj[0][0] * self.y2 - vj[0][1] * self.xy)
            + fy * (vj[1][1] * self.x2 - vj[1][0] * self.xy);
        let mut g_x2 = fx * vj[0][0] * a + fy * vj[1][1] * b;
        let mut g_y2 = fx * vj[0][0] * b + fy * vj[1][1] * a;
        let g_xy = (a - b) * (fx * vj[0][1] + fy * vj[1][0]);
        let mut g_inv = -fx * x * vj[0][2] - fy * y * vj[1][2];
        let mut gx = -fx * self.inv * vj[0][2];
        let mut gy = -fy * self.inv * vj[1][2];
        let mut gz = T::zero();
        // a = z * inv / x2y2
        gz += g_a * self.inv / self.x2y2;
        g_inv += g_a * z / self.x2y2;
        let mut g_x2y2 = -g_a * a / self.x2y2;
        // b = theta2 / xy_len / x2y2
        let g_theta2 = g_b / (self.xy_len * self.x2y2);
        let mut g_xylen = -g_b * b / self.xy_len;
        g_x2y2 -= g_b * b / self.x2y2;
        // inv = 1 / (x2y2 + z^2)
        let g_s = -g_inv * self.inv * self.inv;
        g_x2y2 += g_s;
        gz += g_s * two * z;
        // theta2 = atan2(xy_len, z)
        let d2 = self.xy_len * self.xy_len + z * z;
        g_xylen += g_theta2 * z / d2;
        gz -= g_theta2 * self.xy_len / d2;
        g_x2 += g_x2y2;
        g_y2 += g_x2y2;
        gx += two * x * g_x2 + y * g_xy;
        gy += two * y * g_y2 + x * g_xy;
        // mean2d = (fx x k + cx, fy y k + cy), k = theta / xy_len, theta = atan2(xy_len, z + eps)
        let g_k = vm[0] * fx * x + vm[1] * fy * y;
        gx += vm[0] * fx * self.k;
        gy += vm[1] * fy * self.k;
        let g_theta = g_k / self.xy_len;
        g_xylen -= g_k * self.k / self.xy_len;
        let ze = z + eps;
        let d = self.xy_len * self.xy_len + ze * ze;
        g_xylen += g_theta * ze / d;
        gz -= g_theta * self.xy_len / d;
        // xy_len = sqrt(x^2 + y^2) + eps
        if self.r > T::zero() {
            gx += g_xylen * x / self.r;
            gy += g_xylen * y / self.r;
        }
        [gx, gy, gz]
    }
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
    let (mean2d, j, u, v) = project_point(cam, &p);
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
    Fwd {
        qn,
        qnorm,
        s: [s[0], s[1], s[2]],
        rq,
        mm,
        p,
        sigc,
        j,
        u,
        v,
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
                params.camera_model,
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

/// Gradients of [`project`] w.r.t. means, quaternions and scales, and w.r.t. the viewmats when
/// `want_viewmats`, given the gradients of `means2d`, `conics`, `depths` and `compensations`
/// (`None` = zero). Culled pairs (radius 0) get no gradient. The viewmat gradients are summed
/// over fixed blocks of Gaussians and then over the blocks in order (deterministic).
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
    want_viewmats: bool,
) -> Result<ProjectGrads<T>> {
    const BLOCK: usize = 256;
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
                params.camera_model,
            )
        })
        .collect();
    let eps = T::lit(params.eps2d);
    let mut out = ProjectGrads {
        means: vec![T::zero(); 3 * n],
        quats: vec![T::zero(); 4 * n],
        scales: vec![T::zero(); 3 * n],
        viewmats: Vec::new(),
    };
    let get = |v: Option<&[T]>, i: usize| v.map_or(T::zero(), |v| v[i]);
    let partials: Vec<Vec<T>> = crate::parallel::install(|| {
        out.means
            .par_chunks_mut(3 * BLOCK)
            .zip(out.quats.par_chunks_mut(4 * BLOCK))
            .zip(out.scales.par_chunks_mut(3 * BLOCK))
            .enumerate()
            .map(|(blk, ((vm_b, vq_b), vs_b))| {
                let mut vview = if want_viewmats {
                    vec![T::zero(); 16 * c]
                } else {
                    Vec::new()
                };
                let items = vm_b
                    .chunks_mut(3)
                    .zip(vq_b.chunks_mut(4))
                    .zip(vs_b.chunks_mut(3));
                for (k, ((vm, vq), vs)) in items.enumerate() {
                    let gi = blk * BLOCK + k;
                    let mean = &g.means[3 * gi..3 * gi + 3];
                    for (ci, cam) in cameras.iter().enumerate() {
                        let i = ci * n + gi;
                        if radii[2 * i] <= 0 && radii[2 * i + 1] <= 0 {
                            continue;
                        }
                        let f = forward_one(
                            cam,
                            mean,
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
                        let pg = backward_one(
                            cam,
                            &f,
                            eps,
                            vmean,
                            vcon,
                            get(v_depths, i),
                            get(v_comps, i),
                        );
                        for k in 0..3 {
                            vm[k] += pg.v_mean[k];
                            vs[k] += pg.v_scale[k];
                        }
                        for (v, &gq) in vq.iter_mut().zip(&pg.v_quat) {
                            *v += gq;
                        }
                        if want_viewmats {
                            accumulate_viewmat(
                                &mut vview[16 * ci..16 * ci + 16],
                                cam,
                                &f,
                                mean,
                                &pg,
                            );
                        }
                    }
                }
                vview
            })
            .collect()
    });
    if want_viewmats {
        let mut total = vec![T::zero(); 16 * c];
        for part in &partials {
            for (t, &p) in total.iter_mut().zip(part) {
                *t += p;
            }
        }
        out.viewmats = total;
    }
    Ok(out)
}

/// Adds one pair's viewmat gradient: `p = R m + t` gives `v_R += v_p mᵀ`, `v_t += v_p`;
/// `Σc = R Σ Rᵀ` (both symmetric) gives `v_R += 2 v_Σc R Σ`.
fn accumulate_viewmat<T: Real>(
    out: &mut [T],
    cam: &Cam<T>,
    f: &Fwd<T>,
    mean: &[T],
    pg: &PairGrads<T>,
) {
    let sigma = matmul(&f.mm, &transpose(&f.mm));
    let rs = matmul(&cam.r, &sigma);
    let two = T::lit(2.0);
    for (a, row) in pg.v_sigc.iter().enumerate() {
        for b in 0..3 {
            let mut acc = pg.v_p[a] * mean[b];
            for (k, &g) in row.iter().enumerate() {
                acc += two * g * rs[k][b];
            }
            out[4 * a + b] += acc;
        }
        out[4 * a + 3] += pg.v_p[a];
    }
}

/// One pair's gradients, with the camera-space ones the viewmat gradient needs.
struct PairGrads<T> {
    v_mean: [T; 3],
    v_quat: [T; 4],
    v_scale: [T; 3],
    v_p: [T; 3],
    v_sigc: M3<T>,
}

/// The gradient w.r.t. the camera-space point of `v_mean2d · mean2d + Σ v_J ⊙ J + v_depth z`.
fn point_backward<T: Real>(
    cam: &Cam<T>,
    f: &Fwd<T>,
    v_mean2d: [T; 2],
    vj: &[[T; 3]; 2],
    v_depth: T,
) -> [T; 3] {
    let [x, y, z] = f.p;
    let (fx, fy) = (cam.fx, cam.fy);
    let (zero, two) = (T::zero(), T::lit(2.0));
    match cam.model {
        CameraModel::Pinhole => {
            let rz = T::one() / z;
            let rz2 = rz * rz;
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
            vp
        }
        CameraModel::Ortho => [v_mean2d[0] * fx, v_mean2d[1] * fy, v_depth],
        CameraModel::Fisheye => {
            let mut vp = Fisheye::new(x, y, z).backward(x, y, z, fx, fy, v_mean2d, vj);
            vp[2] += v_depth;
            vp
        }
    }
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
) -> PairGrads<T> {
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
    let vp = point_backward(cam, f, v_mean2d, &vj, v_depth);
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
    PairGrads {
        v_mean,
        v_quat,
        v_scale,
        v_p: vp,
        v_sigc,
    }
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
        camera_model: CameraModel::Pinhole,
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
            false,
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

    /// Every input's gradient, the viewmats' included, for each camera model.
    #[test]
    fn backward_matches_finite_differences_every_model() {
        let n = 5;
        let c = 2;
        let (vm, ks) = cameras();
        // the orthographic cameras need a smaller focal length (pixels per world unit)
        let ks_ortho: Vec<f64> = ks
            .iter()
            .enumerate()
            .map(|(i, &k)| if i % 9 == 0 || i % 9 == 4 { 0.4 * k } else { k })
            .collect();
        for model in [
            CameraModel::Pinhole,
            CameraModel::Ortho,
            CameraModel::Fisheye,
        ] {
            let params = ProjectParams {
                camera_model: model,
                antialiased: true,
                ..PARAMS
            };
            let ks = if model == CameraModel::Ortho {
                &ks_ortho
            } else {
                &ks
            };
            let x = inputs(n);
            let proj = |x: &Inputs, vm: &[f64]| {
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
                project(&g, &cams, &params).unwrap()
            };
            let out = proj(&x, &vm);
            let visible = out.radii.chunks(2).filter(|r| r[0] > 0).count();
            assert!(visible >= 8, "{model:?}: {visible} of 10 pairs visible");
            let v_m2 = fd::values(2 * c * n, 5, -1.0, 1.0);
            let v_co = fd::values(3 * c * n, 6, -10.0, 10.0);
            let v_de = fd::values(c * n, 7, -1.0, 1.0);
            let v_cp = fd::values(c * n, 8, -1.0, 1.0);
            let loss = |x: &Inputs, vm: &[f64]| {
                let o = proj(x, vm);
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
                ks,
                width: W,
                height: H,
            };
            let grads = project_backward(
                &g,
                &cams,
                &params,
                &out.radii,
                Some(&v_m2),
                Some(&v_co),
                Some(&v_de),
                Some(&v_cp),
                true,
            )
            .unwrap();
            let tol = 1e-6;
            let name = |s: &str| format!("{model:?} {s}");
            fd::check(&name("means"), &x.means, &grads.means, tol, |m| {
                loss(
                    &Inputs {
                        means: m.to_vec(),
                        ..inputs(n)
                    },
                    &vm,
                )
            });
            fd::check(&name("quats"), &x.quats, &grads.quats, tol, |q| {
                loss(
                    &Inputs {
                        quats: q.to_vec(),
                        ..inputs(n)
                    },
                    &vm,
                )
            });
            fd::check(&name("scales"), &x.scales, &grads.scales, tol, |s| {
                loss(
                    &Inputs {
                        scales: s.to_vec(),
                        ..inputs(n)
                    },
                    &vm,
                )
            });
            fd::check(&name("viewmats"), &vm, &grads.viewmats, tol, |v| {
                loss(&inputs(n), v)
            });
            let without = project_backward(
                &g,
                &cams,
                &params,
                &out.radii,
                Some(&v_m2),
                Some(&v_co),
                Some(&v_de),
                Some(&v_cp),
                false,
            )
            .unwrap();
            assert!(without.viewmats.is_empty());
            assert_eq!(without.means, grads.means);
        }
    }

    #[test]
    fn camera_model_names() {
        assert_eq!(CameraModel::parse("ortho").unwrap(), CameraModel::Ortho);
        assert_eq!(CameraModel::parse("fisheye").unwrap(), CameraModel::Fisheye);
        assert_eq!(CameraModel::parse("pinhole").unwrap(), CameraModel::Pinhole);
        assert!(CameraModel::parse("ftheta").is_err());
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
            false,
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
            false,
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
        let grads = project_backward(
            &g,
            &cams,
            &PARAMS,
            &out.radii,
            Some(&v),
            None,
            None,
            None,
            false,
        )
        .unwrap();
        assert!(grads.means[0..3].iter().all(|&v| v == 0.0));
        assert!(grads.means[3..6].iter().any(|&v| v != 0.0));
    }
}
