//! Camera rays: pinhole ray generation, LLFF normalized device coordinates, ray-box slabs.

use rayon::prelude::*;

use crate::check::{expect_finite, expect_len};
use crate::error::{Error, Result};

/// Axis convention of camera space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// x right, y up, looking down -z (NeRF / Blender / nerfstudio).
    OpenGl,
    /// x right, y down, looking down +z (COLMAP / OpenCV).
    OpenCv,
}

/// Origins and directions, each `[n, 3]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Rays {
    /// Ray origins.
    pub origins: Vec<f32>,
    /// Ray directions.
    pub directions: Vec<f32>,
}

/// Describes which pixels of which cameras to generate rays for.
#[derive(Debug, Clone, Copy)]
pub struct RayRequest<'a> {
    /// Camera-to-world matrices, `[n_cams, 3, 4]`.
    pub c2w: &'a [f32],
    /// Intrinsics, `[n_cams, 3, 3]`.
    pub intrinsics: &'a [f32],
    /// Number of cameras.
    pub n_cams: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Camera-space axis convention.
    pub convention: Convention,
    /// Flat pixel indices `cam * H * W + y * W + x`; `None` = every pixel of every camera.
    pub pixels: Option<&'a [i64]>,
    /// Sub-pixel offsets `[n, 2]` in `[0, 1)`; `None` = pixel centres (+0.5).
    pub offsets: Option<&'a [f32]>,
    /// Normalise directions to unit length.
    pub normalize: bool,
}

/// Generates one ray per requested pixel.
pub fn generate_rays(req: &RayRequest<'_>) -> Result<Rays> {
    let (w, h, c) = (req.width, req.height, req.n_cams);
    expect_len("c2w", req.c2w.len(), c * 12)?;
    expect_len("K", req.intrinsics.len(), c * 9)?;
    expect_finite("c2w", req.c2w)?;
    expect_finite("K", req.intrinsics)?;
    let per_cam = w
        .checked_mul(h)
        .filter(|&p| p.checked_mul(c).is_some_and(|t| t <= i64::MAX as usize))
        .ok_or_else(|| Error::value("width", "width * height * cameras overflows"))?;
    let total = per_cam * c;
    let n = match req.pixels {
        Some(p) => {
            if let Some(&bad) = p.iter().find(|&&i| i < 0 || i as u64 >= total as u64) {
                return Err(Error::value(
                    "pixels",
                    format!("index {bad} is outside 0..{total}"),
                ));
            }
            p.len()
        }
        None => total,
    };
    if let Some(off) = req.offsets {
        expect_len("offsets", off.len(), n * 2)?;
    }
    for cam in 0..c {
        let k = &req.intrinsics[cam * 9..cam * 9 + 9];
        if k[0] == 0.0 || k[4] == 0.0 {
            return Err(Error::value(
                "K",
                "focal lengths K[0, 0] and K[1, 1] must be non-zero",
            ));
        }
    }
    let mut origins = crate::output::zeros::<f32>(n * 3);
    let mut directions = crate::output::zeros::<f32>(n * 3);
    crate::parallel::install(|| {
        origins
            .par_chunks_mut(3)
            .zip(directions.par_chunks_mut(3))
            .enumerate()
            .with_min_len(1024)
            .for_each(|(i, (o, d))| {
                let flat = req.pixels.map_or(i, |p| p[i] as usize);
                let (cam, rem) = (flat / per_cam, flat % per_cam);
                let (py, px) = (rem / w, rem % w);
                let (ox, oy) = req
                    .offsets
                    .map_or((0.5, 0.5), |off| (off[2 * i], off[2 * i + 1]));
                let k = &req.intrinsics[cam * 9..cam * 9 + 9];
                let m = &req.c2w[cam * 12..cam * 12 + 12];
                let x = (px as f32 + ox - k[2]) / k[0];
                let y = (py as f32 + oy - k[5]) / k[4];
                let dc = match req.convention {
                    Convention::OpenCv => [x, y, 1.0],
                    Convention::OpenGl => [x, -y, -1.0],
                };
                let mut dw = [0f32; 3];
                for r in 0..3 {
                    dw[r] = m[r * 4] * dc[0] + m[r * 4 + 1] * dc[1] + m[r * 4 + 2] * dc[2];
                    o[r] = m[r * 4 + 3];
                }
                let scale = if req.normalize {
                    let norm = (dw[0] * dw[0] + dw[1] * dw[1] + dw[2] * dw[2]).sqrt();
                    if norm > 0.0 {
                        1.0 / norm
                    } else {
                        1.0
                    }
                } else {
                    1.0
                };
                for r in 0..3 {
                    d[r] = dw[r] * scale;
                }
            });
    });
    Ok(Rays {
        origins,
        directions,
    })
}

/// Maps rays into LLFF normalized device coordinates (NeRF, Mildenhall et al. 2020, App. C).
///
/// Rays are first moved to the plane `z = -near`; the scene must lie in front of the camera
/// (OpenGL convention, looking down -z).
pub fn ndc_rays(
    origins: &[f32],
    directions: &[f32],
    focal: (f32, f32),
    width: f32,
    height: f32,
    near: f32,
) -> Result<Rays> {
    let n = origins.len() / 3;
    if origins.len() % 3 != 0 {
        return Err(Error::shape("origins", "length must be a multiple of 3"));
    }
    expect_len("directions", directions.len(), origins.len())?;
    expect_finite("origins", origins)?;
    expect_finite("directions", directions)?;
    if let Some(i) = (0..n).find(|&i| directions[3 * i + 2] == 0.0) {
        return Err(Error::value(
            "directions",
            format!("ray {i} is parallel to the image plane (direction z = 0)"),
        ));
    }
    let (fx, fy) = focal;
    let mut o_out = crate::output::zeros::<f32>(n * 3);
    let mut d_out = crate::output::zeros::<f32>(n * 3);
    crate::parallel::install(|| {
        o_out
            .par_chunks_mut(3)
            .zip(d_out.par_chunks_mut(3))
            .enumerate()
            .with_min_len(1024)
            .for_each(|(i, (oo, dd))| {
                let o = &origins[3 * i..3 * i + 3];
                let d = &directions[3 * i..3 * i + 3];
                let t = -(near + o[2]) / d[2];
                let (ox, oy, oz) = (o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2]);
                let ax = -fx / (width / 2.0);
                let ay = -fy / (height / 2.0);
                oo[0] = ax * ox / oz;
                oo[1] = ay * oy / oz;
                oo[2] = 1.0 + 2.0 * near / oz;
                dd[0] = ax * (d[0] / d[2] - ox / oz);
                dd[1] = ay * (d[1] / d[2] - oy / oz);
                dd[2] = -2.0 * near / oz;
            });
    });
    Ok(Rays {
        origins: o_out,
        directions: d_out,
    })
}

/// Entry / exit distances of rays through boxes.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxHits {
    /// `[n_rays, n_boxes]` entry distance, clamped to `>= 0` (0 for misses).
    pub t_near: Vec<f32>,
    /// `[n_rays, n_boxes]` exit distance (0 for misses).
    pub t_far: Vec<f32>,
    /// `[n_rays, n_boxes]` whether the ray meets the box in front of its origin.
    pub hit: Vec<bool>,
}

/// Slab intersection of one ray with one box `[xmin, ymin, zmin, xmax, ymax, zmax]`.
/// Returns the unclamped `(t_enter, t_exit)`; the ray misses when `t_exit < t_enter`.
#[inline]
pub fn slab(o: [f32; 3], d: [f32; 3], aabb: &[f32]) -> (f32, f32) {
    let mut t0 = f32::NEG_INFINITY;
    let mut t1 = f32::INFINITY;
    for a in 0..3 {
        let (lo, hi) = (aabb[a], aabb[a + 3]);
        if d[a] == 0.0 {
            if o[a] < lo || o[a] > hi {
                return (f32::INFINITY, f32::NEG_INFINITY);
            }
            continue;
        }
        let inv = 1.0 / d[a];
        let (mut ta, mut tb) = ((lo - o[a]) * inv, (hi - o[a]) * inv);
        if ta > tb {
            std::mem::swap(&mut ta, &mut tb);
        }
        t0 = t0.max(ta);
        t1 = t1.min(tb);
    }
    (t0, t1)
}

/// Intersects every ray with every box (`aabbs` is `[n_boxes, 6]`).
pub fn ray_aabb_intersect(origins: &[f32], directions: &[f32], aabbs: &[f32]) -> Result<BoxHits> {
    if origins.len() % 3 != 0 {
        return Err(Error::shape("origins", "length must be a multiple of 3"));
    }
    expect_len("directions", directions.len(), origins.len())?;
    if aabbs.is_empty() || aabbs.len() % 6 != 0 {
        return Err(Error::shape(
            "aabb",
            "must hold 6 values per box (min xyz, max xyz)",
        ));
    }
    expect_finite("origins", origins)?;
    expect_finite("directions", directions)?;
    expect_finite("aabb", aabbs)?;
    for b in aabbs.chunks(6) {
        if (0..3).any(|a| b[a] > b[a + 3]) {
            return Err(Error::value(
                "aabb",
                "min corner must not exceed max corner",
            ));
        }
    }
    let n = origins.len() / 3;
    let m = aabbs.len() / 6;
    let mut t_near = crate::output::zeros::<f32>(n * m);
    let mut t_far = crate::output::zeros::<f32>(n * m);
    let mut hit = vec![false; n * m];
    crate::parallel::install(|| {
        t_near
            .par_chunks_mut(m)
            .zip(t_far.par_chunks_mut(m))
            .zip(hit.par_chunks_mut(m))
            .enumerate()
            .with_min_len(1024)
            .for_each(|(i, ((tn, tf), h))| {
                let o = [origins[3 * i], origins[3 * i + 1], origins[3 * i + 2]];
                let d = [
                    directions[3 * i],
                    directions[3 * i + 1],
                    directions[3 * i + 2],
                ];
                for b in 0..m {
                    let (t0, t1) = slab(o, d, &aabbs[6 * b..6 * b + 6]);
                    let t0 = t0.max(0.0);
                    if t1 >= t0 {
                        tn[b] = t0;
                        tf[b] = t1;
                        h[b] = true;
                    }
                }
            });
    });
    Ok(BoxHits { t_near, t_far, hit })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity_cam() -> ([f32; 12], [f32; 9]) {
        let c2w = [1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 2.];
        let k = [10., 0., 2., 0., 10., 2., 0., 0., 1.];
        (c2w, k)
    }

    #[test]
    fn centre_pixel_looks_down_the_axis() {
        let (c2w, k) = identity_cam();
        // pixel (1, 1) with offset (1, 1) lands exactly on the principal point (2, 2)
        let req = RayRequest {
            c2w: &c2w,
            intrinsics: &k,
            n_cams: 1,
            width: 4,
            height: 4,
            convention: Convention::OpenGl,
            pixels: Some(&[5]),
            offsets: Some(&[1.0, 1.0]),
            normalize: true,
        };
        let rays = generate_rays(&req).unwrap();
        assert_eq!(rays.origins, vec![0., 0., 2.]);
        assert_eq!(rays.directions, vec![0., 0., -1.]);
        let cv = generate_rays(&RayRequest {
            convention: Convention::OpenCv,
            ..req
        })
        .unwrap();
        assert_eq!(cv.directions, vec![0., 0., 1.]);
    }

    #[test]
    fn bad_pixel_index_is_an_error() {
        let (c2w, k) = identity_cam();
        let req = RayRequest {
            c2w: &c2w,
            intrinsics: &k,
            n_cams: 1,
            width: 4,
            height: 4,
            convention: Convention::OpenGl,
            pixels: Some(&[16]),
            offsets: None,
            normalize: false,
        };
        assert!(generate_rays(&req).is_err());
    }

    #[test]
    fn slab_hits_and_misses() {
        let b = [-1., -1., -1., 1., 1., 1.];
        let hits =
            ray_aabb_intersect(&[0., 0., -3., 0., 5., -3.], &[0., 0., 1., 0., 0., 1.], &b).unwrap();
        assert_eq!(hits.hit, vec![true, false]);
        assert_eq!(hits.t_near[0], 2.0);
        assert_eq!(hits.t_far[0], 4.0);
        // origin inside the box: entry clamps to 0
        let inside = ray_aabb_intersect(&[0., 0., 0.], &[1., 0., 0.], &b).unwrap();
        assert_eq!((inside.t_near[0], inside.t_far[0]), (0.0, 1.0));
        // box behind the ray
        let behind = ray_aabb_intersect(&[0., 0., 3.], &[0., 0., 1.], &b).unwrap();
        assert!(!behind.hit[0]);
    }

    #[test]
    fn ndc_maps_near_plane_to_minus_one() {
        let r = ndc_rays(&[0., 0., 0.], &[0., 0., -1.], (1.0, 1.0), 2.0, 2.0, 1.0).unwrap();
        assert_eq!(r.origins, vec![0., 0., -1.]);
        assert_eq!(r.directions, vec![0., 0., 2.]);
    }
}
