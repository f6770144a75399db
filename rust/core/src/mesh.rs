//! Triangle-mesh rasterization: triangle ids, perspective-correct barycentrics and depth.
//!
//! Pipeline:
//!
//! 1. Vertices go to camera space (OpenCV axes internally: x right, y down, looking down +z) in
//!    `f64`.
//! 2. Every triangle is clipped (Sutherland–Hodgman) against the near plane `z = near` and a
//!    guard band of [`GUARD_BAND`] pixels around the image, so nothing behind the camera is
//!    drawn and projected coordinates stay small enough for exact integer edge functions. Each
//!    clipped vertex carries its barycentric weights in the original triangle; the clipped
//!    polygon is fanned into sub-triangles `(0, k + 1, k + 2)`. Intersections are always computed
//!    from the inside endpoint of an edge, so the two triangles sharing a clipped edge get
//!    bit-identical points.
//! 3. Projected vertices are snapped to a fixed-point grid of `1 / 2^SUBPIXEL_BITS` pixel, and
//!    coverage at pixel centres (`+0.5`) is decided with exact `i64` edge functions and the
//!    top-left fill rule (a point on an edge belongs to the triangle on its right, or below it
//!    for a horizontal edge, in image coordinates with y down). Adjacent triangles therefore
//!    cover every pixel along a shared edge exactly once: no cracks, no double coverage.
//! 4. Sub-triangles are binned into `TILE x TILE` pixel tiles; tiles are z-buffered in parallel.
//!    The nearest surface wins, ties go to the lower triangle id, so the result does not depend
//!    on the thread count. There is no backface culling.

use rayon::prelude::*;

use crate::check::{expect_finite, expect_len};
use crate::error::{Error, Result};
pub use crate::rays::Convention;

/// Sub-pixel precision of the snapped vertex coordinates.
pub const SUBPIXEL_BITS: u32 = 8;
const SUB: i64 = 1 << SUBPIXEL_BITS;
const HALF: i64 = SUB / 2;
/// Extra pixels on every side of the image that triangles are clipped to.
pub const GUARD_BAND: f64 = (1u64 << 20) as f64;
/// Largest supported image width / height.
pub const MAX_SIZE: usize = 1 << 16;
/// Tile edge length in pixels.
pub const TILE: usize = 16;
/// Default near-plane distance.
pub const DEFAULT_NEAR: f32 = 1e-4;
/// At most 3 + 5 polygon vertices after clipping against 5 planes.
const MAX_POLY: usize = 8;
const FACE_CHUNK: usize = 2048;

/// One camera and image to rasterize a mesh into.
#[derive(Debug, Clone, Copy)]
pub struct MeshRequest<'a> {
    /// Vertex positions `[V, 3]` in world space.
    pub vertices: &'a [f32],
    /// Vertex indices `[F, 3]`.
    pub faces: &'a [i64],
    /// World-to-camera matrix `[4, 4]` (only the top three rows are used).
    pub viewmat: &'a [f32],
    /// Pinhole intrinsics `[3, 3]`; the last row must be `[0, 0, 1]`.
    pub intrinsics: &'a [f32],
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Camera-space axis convention of `viewmat`.
    pub convention: Convention,
    /// Near-plane distance along the view axis (> 0); geometry closer than it is clipped away.
    pub near: f32,
}

/// Per-pixel rasterization result, all `[H, W, ...]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshRaster {
    /// `[H, W]` index of the visible face, `-1` where empty.
    pub triangle_id: Vec<i64>,
    /// `[H, W, 3]` perspective-correct barycentric weights of the face's three vertices (zeros
    /// where empty).
    pub barycentrics: Vec<f32>,
    /// `[H, W]` camera-space depth along the view axis, `+inf` where empty.
    pub depth: Vec<f32>,
}

/// A clipped, projected, positively oriented sub-triangle.
#[derive(Debug, Clone, Copy)]
struct Tri {
    x: [i64; 3],
    y: [i64; 3],
    /// `1 / z` per vertex.
    iz: [f64; 3],
    /// Barycentric weights of each vertex in the original face.
    w: [[f64; 3]; 3],
    area: i64,
    face: u32,
    /// Pixel bounding box `[x0, y0, x1, y1]`, inclusive, clamped to the image.
    bbox: [u32; 4],
}

#[derive(Debug, Clone, Copy, Default)]
struct ClipV {
    p: [f64; 3],
    w: [f64; 3],
}

/// The five clip-plane values of camera-space point `p` (inside when all are `>= 0`).
#[inline]
fn planes(p: &[f64; 3], k: &[f64; 6], w: f64, h: f64, near: f64) -> [f64; 5] {
    let u = k[0] * p[0] + k[1] * p[1] + k[2] * p[2];
    let v = k[3] * p[0] + k[4] * p[1] + k[5] * p[2];
    let z = p[2];
    [
        z - near,
        u + GUARD_BAND * z,
        (w + GUARD_BAND) * z - u,
        v + GUARD_BAND * z,
        (h + GUARD_BAND) * z - v,
    ]
}

#[inline]
fn plane(p: &[f64; 3], k: &[f64; 6], w: f64, h: f64, near: f64, i: usize) -> f64 {
    planes(p, k, w, h, near)[i]
}

/// Snapped fixed-point pixel coordinates of camera-space point `p` (`z > 0`).
#[inline]
fn project(p: &[f64; 3], k: &[f64; 6]) -> (i64, i64) {
    let lim = (GUARD_BAND + MAX_SIZE as f64 + 1.0) * SUB as f64;
    let u = (k[0] * p[0] + k[1] * p[1] + k[2] * p[2]) / p[2];
    let v = (k[3] * p[0] + k[4] * p[1] + k[5] * p[2]) / p[2];
    let snap = |c: f64| (c * SUB as f64 + 0.5).floor().clamp(-lim, lim) as i64;
    (snap(u), snap(v))
}

/// Intersection of segment `a`-`b` with a plane, computed from the inside endpoint `a`.
#[inline]
fn cut(a: &ClipV, da: f64, b: &ClipV, db: f64) -> ClipV {
    let t = da / (da - db);
    let mut r = ClipV::default();
    for i in 0..3 {
        r.p[i] = a.p[i] + t * (b.p[i] - a.p[i]);
        r.w[i] = a.w[i] + t * (b.w[i] - a.w[i]);
    }
    r
}

/// Clips polygon `poly[..n]` against plane `pi`; returns the new vertex count.
fn clip_plane(poly: &mut [ClipV; MAX_POLY], n: usize, ctx: &Ctx, pi: usize) -> usize {
    let mut out = [ClipV::default(); MAX_POLY];
    let mut m = 0;
    let mut d = [0f64; MAX_POLY];
    for (dj, v) in d.iter_mut().zip(&poly[..n]) {
        *dj = plane(&v.p, &ctx.k, ctx.w, ctx.h, ctx.near, pi);
    }
    for j in 0..n {
        let nj = (j + 1) % n;
        let (a, b) = (&poly[j], &poly[nj]);
        let (da, db) = (d[j], d[nj]);
        if da >= 0.0 && m < MAX_POLY {
            out[m] = *a;
            m += 1;
        }
        if (da >= 0.0) != (db >= 0.0) && m < MAX_POLY {
            out[m] = if da >= 0.0 {
                cut(a, da, b, db)
            } else {
                cut(b, db, a, da)
            };
            m += 1;
        }
    }
    *poly = out;
    m
}

struct Ctx {
    k: [f64; 6],
    w: f64,
    h: f64,
    near: f64,
    width: usize,
    height: usize,
}

/// Per-vertex camera-space data.
#[derive(Debug, Clone, Copy)]
struct Vert {
    p: [f64; 3],
    inside: bool,
    x: i64,
    y: i64,
}

fn push_tri(out: &mut Vec<Tri>, ctx: &Ctx, face: u32, v: [(i64, i64, f64, [f64; 3]); 3]) {
    let (mut a, mut b, c) = (v[0], v[1], v[2]);
    let mut area = (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0);
    if area == 0 {
        return;
    }
    if area < 0 {
        std::mem::swap(&mut a, &mut b);
        area = -area;
    }
    let xs = [a.0, b.0, c.0];
    let ys = [a.1, b.1, c.1];
    let (xmin, xmax) = (
        *xs.iter().min().unwrap_or(&0),
        *xs.iter().max().unwrap_or(&0),
    );
    let (ymin, ymax) = (
        *ys.iter().min().unwrap_or(&0),
        *ys.iter().max().unwrap_or(&0),
    );
    // pixel centre px * SUB + HALF inside [min, max]
    let px0 = (xmin - HALF + SUB - 1).div_euclid(SUB).max(0);
    let px1 = (xmax - HALF).div_euclid(SUB).min(ctx.width as i64 - 1);
    let py0 = (ymin - HALF + SUB - 1).div_euclid(SUB).max(0);
    let py1 = (ymax - HALF).div_euclid(SUB).min(ctx.height as i64 - 1);
    if px0 > px1 || py0 > py1 {
        return;
    }
    out.push(Tri {
        x: xs,
        y: ys,
        iz: [1.0 / a.2, 1.0 / b.2, 1.0 / c.2],
        w: [a.3, b.3, c.3],
        area,
        face,
        bbox: [px0 as u32, py0 as u32, px1 as u32, py1 as u32],
    });
}

fn setup_face(out: &mut Vec<Tri>, ctx: &Ctx, verts: &[Vert], face: u32, idx: [usize; 3]) {
    let unit = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let vs = [verts[idx[0]], verts[idx[1]], verts[idx[2]]];
    if vs.iter().all(|v| v.inside) {
        let t = |i: usize| (vs[i].x, vs[i].y, vs[i].p[2], unit[i]);
        push_tri(out, ctx, face, [t(0), t(1), t(2)]);
        return;
    }
    let mut poly = [ClipV::default(); MAX_POLY];
    for i in 0..3 {
        poly[i] = ClipV {
            p: vs[i].p,
            w: unit[i],
        };
    }
    let mut n = 3;
    for pi in 0..5 {
        n = clip_plane(&mut poly, n, ctx, pi);
        if n < 3 {
            return;
        }
    }
    // Unclipped original vertices keep their shared projection (bit-identical to neighbours).
    let proj = |c: &ClipV| -> (i64, i64, f64, [f64; 3]) {
        let orig = (0..3).find(|&i| c.w == unit[i] && c.p == vs[i].p);
        let (x, y) = match orig {
            Some(i) => (vs[i].x, vs[i].y),
            None => project(&c.p, &ctx.k),
        };
        (x, y, c.p[2], c.w)
    };
    let first = proj(&poly[0]);
    for kk in 0..n - 2 {
        push_tri(
            out,
            ctx,
            face,
            [first, proj(&poly[kk + 1]), proj(&poly[kk + 2])],
        );
    }
}

/// Validates a request; returns the number of vertices and faces.
fn validate(req: &MeshRequest<'_>) -> Result<(usize, usize)> {
    if req.vertices.len() % 3 != 0 {
        return Err(Error::shape("vertices", "length must be a multiple of 3"));
    }
    if req.faces.len() % 3 != 0 {
        return Err(Error::shape("faces", "length must be a multiple of 3"));
    }
    expect_len("viewmat", req.viewmat.len(), 16)?;
    expect_len("K", req.intrinsics.len(), 9)?;
    if req.width == 0 || req.height == 0 || req.width > MAX_SIZE || req.height > MAX_SIZE {
        return Err(Error::value(
            "width",
            format!(
                "image size must be within 1..={MAX_SIZE}, got {}x{}",
                req.width, req.height
            ),
        ));
    }
    if !(req.near.is_finite() && req.near > 0.0) {
        return Err(Error::value(
            "near",
            format!("must be finite and positive, got {}", req.near),
        ));
    }
    expect_finite("vertices", req.vertices)?;
    expect_finite("viewmat", req.viewmat)?;
    expect_finite("K", req.intrinsics)?;
    let k = req.intrinsics;
    if k[0] == 0.0 || k[4] == 0.0 {
        return Err(Error::value(
            "K",
            "focal lengths K[0, 0] and K[1, 1] must be non-zero",
        ));
    }
    if k[6] != 0.0 || k[7] != 0.0 || k[8] != 1.0 {
        return Err(Error::value("K", "the last row must be [0, 0, 1]"));
    }
    let nv = req.vertices.len() / 3;
    let nf = req.faces.len() / 3;
    if nf > u32::MAX as usize {
        return Err(Error::shape(
            "faces",
            "at most 2^32 - 1 faces are supported",
        ));
    }
    let bad = crate::parallel::install(|| {
        req.faces
            .par_iter()
            .with_min_len(1 << 14)
            .find_first(|&&i| i < 0 || i as u64 >= nv as u64)
            .copied()
    });
    if let Some(bad) = bad {
        return Err(Error::value(
            "faces",
            format!("vertex index {bad} is outside 0..{nv}"),
        ));
    }
    Ok((nv, nf))
}

/// Rasterizes a triangle mesh seen by one pinhole camera.
pub fn rasterize_mesh(req: &MeshRequest<'_>) -> Result<MeshRaster> {
    let (nv, nf) = validate(req)?;
    let (width, height) = (req.width, req.height);
    let npix = width * height;
    let mut out = MeshRaster {
        triangle_id: vec![-1; npix],
        barycentrics: vec![0.0; npix * 3],
        depth: vec![f32::INFINITY; npix],
    };
    if nf == 0 {
        return Ok(out);
    }
    let kf = req.intrinsics;
    let ctx = Ctx {
        k: [
            kf[0] as f64,
            kf[1] as f64,
            kf[2] as f64,
            kf[3] as f64,
            kf[4] as f64,
            kf[5] as f64,
        ],
        w: width as f64,
        h: height as f64,
        near: req.near as f64,
        width,
        height,
    };
    let m = req.viewmat;
    let flip = match req.convention {
        Convention::OpenCv => [1.0, 1.0, 1.0],
        Convention::OpenGl => [1.0, -1.0, -1.0],
    };
    let ctx = &ctx;
    crate::parallel::install(|| {
        // 1. vertices to camera space and the fixed-point image plane
        let verts: Vec<Vert> = (0..nv)
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| {
                let x = [
                    req.vertices[3 * i] as f64,
                    req.vertices[3 * i + 1] as f64,
                    req.vertices[3 * i + 2] as f64,
                ];
                let mut p = [0f64; 3];
                for r in 0..3 {
                    let row = &m[4 * r..4 * r + 4];
                    p[r] = flip[r]
                        * (row[0] as f64 * x[0]
                            + row[1] as f64 * x[1]
                            + row[2] as f64 * x[2]
                            + row[3] as f64);
                }
                let inside = planes(&p, &ctx.k, ctx.w, ctx.h, ctx.near)
                    .iter()
                    .all(|&d| d >= 0.0);
                let (x, y) = if inside { project(&p, &ctx.k) } else { (0, 0) };
                Vert { p, inside, x, y }
            })
            .collect();
        // 2. clip, project and snap the faces (chunks keep the face order)
        let chunks: Vec<Vec<Tri>> = req
            .faces
            .par_chunks(3 * FACE_CHUNK)
            .enumerate()
            .map(|(c, fs)| {
                let mut tris = Vec::with_capacity(fs.len() / 3);
                for (j, f) in fs.chunks_exact(3).enumerate() {
                    let face = (c * FACE_CHUNK + j) as u32;
                    setup_face(
                        &mut tris,
                        ctx,
                        &verts,
                        face,
                        [f[0] as usize, f[1] as usize, f[2] as usize],
                    );
                }
                tris
            })
            .collect();
        let tris: Vec<Tri> = chunks.into_iter().flatten().collect();
        // 3. bin into tiles (counting sort; each list stays in face order)
        let tx = width.div_ceil(TILE);
        let ty = height.div_ceil(TILE);
        let mut offsets = vec![0usize; tx * ty + 1];
        for t in &tris {
            for by in t.bbox[1] as usize / TILE..=t.bbox[3] as usize / TILE {
                for bx in t.bbox[0] as usize / TILE..=t.bbox[2] as usize / TILE {
                    offsets[by * tx + bx + 1] += 1;
                }
            }
        }
        for i in 0..tx * ty {
            offsets[i + 1] += offsets[i];
        }
        let mut cursor = offsets.clone();
        let mut lists = vec![0u32; offsets[tx * ty]];
        for (ti, t) in tris.iter().enumerate() {
            for by in t.bbox[1] as usize / TILE..=t.bbox[3] as usize / TILE {
                for bx in t.bbox[0] as usize / TILE..=t.bbox[2] as usize / TILE {
                    let b = by * tx + bx;
                    lists[cursor[b]] = ti as u32;
                    cursor[b] += 1;
                }
            }
        }
        // 4. z-buffer each tile, then scatter into the image
        let tiles: Vec<TileOut> = (0..tx * ty)
            .into_par_iter()
            .map(|b| {
                let (x0, y0) = ((b % tx) * TILE, (b / tx) * TILE);
                let x1 = (x0 + TILE).min(width) - 1;
                let y1 = (y0 + TILE).min(height) - 1;
                raster_tile(&tris, &lists[offsets[b]..offsets[b + 1]], [x0, y0, x1, y1])
            })
            .collect();
        for (b, t) in tiles.iter().enumerate() {
            let (x0, y0) = ((b % tx) * TILE, (b / tx) * TILE);
            for (ly, row) in t.id.chunks(TILE).enumerate() {
                for (lx, &id) in row.iter().enumerate() {
                    if id < 0 {
                        continue;
                    }
                    let (x, y) = (x0 + lx, y0 + ly);
                    if x >= width || y >= height {
                        continue;
                    }
                    let (l, p) = (ly * TILE + lx, y * width + x);
                    out.triangle_id[p] = id;
                    out.depth[p] = t.depth[l];
                    out.barycentrics[3 * p..3 * p + 3].copy_from_slice(&t.bary[3 * l..3 * l + 3]);
                }
            }
        }
    });
    Ok(out)
}

struct TileOut {
    id: Vec<i64>,
    depth: Vec<f32>,
    bary: Vec<f32>,
}

/// Edge function coefficients of edge `a -> b`: `E(p) = A * px + B * py + C` and the fill-rule
/// bias (`0` when the edge owns points lying exactly on it, `-1` otherwise).
#[inline]
fn edge(ax: i64, ay: i64, bx: i64, by: i64) -> (i64, i64, i64) {
    let (dx, dy) = (bx - ax, by - ay);
    // Top-left rule = a point on the edge is inside when nudging it by (+eps, +eps^2) moves it
    // inside; the gradient of E is (-dy, dx).
    let owned = dy < 0 || (dy == 0 && dx > 0);
    (dx, dy, if owned { 0 } else { -1 })
}

/// The three edge functions (opposite vertex 0, 1, 2) of `t` at fixed-point point `(px, py)`.
#[inline]
fn edge_values(t: &Tri, px: i64, py: i64) -> [i64; 3] {
    let e =
        |a: usize, b: usize| (t.x[b] - t.x[a]) * (py - t.y[a]) - (t.y[b] - t.y[a]) * (px - t.x[a]);
    [e(1, 2), e(2, 0), e(0, 1)]
}

fn raster_tile(tris: &[Tri], list: &[u32], rect: [usize; 4]) -> TileOut {
    let [x0, y0, x1, y1] = rect;
    let mut best_z = vec![f64::INFINITY; TILE * TILE];
    let mut best_t = vec![u32::MAX; TILE * TILE];
    for &ti in list {
        let t = &tris[ti as usize];
        let bx0 = (t.bbox[0] as usize).max(x0);
        let bx1 = (t.bbox[2] as usize).min(x1);
        let by0 = (t.bbox[1] as usize).max(y0);
        let by1 = (t.bbox[3] as usize).min(y1);
        if bx0 > bx1 || by0 > by1 {
            continue;
        }
        let edges = [
            edge(t.x[1], t.y[1], t.x[2], t.y[2]),
            edge(t.x[2], t.y[2], t.x[0], t.y[0]),
            edge(t.x[0], t.y[0], t.x[1], t.y[1]),
        ];
        let area = t.area as f64;
        let px0 = bx0 as i64 * SUB + HALF;
        for py in by0..=by1 {
            let fy = py as i64 * SUB + HALF;
            let mut e = edge_values(t, px0, fy);
            for px in bx0..=bx1 {
                if (e[0] + edges[0].2) | (e[1] + edges[1].2) | (e[2] + edges[2].2) >= 0 {
                    let iz =
                        (e[0] as f64 * t.iz[0] + e[1] as f64 * t.iz[1] + e[2] as f64 * t.iz[2])
                            / area;
                    let z = 1.0 / iz;
                    let l = (py - y0) * TILE + (px - x0);
                    let cur = best_t[l];
                    if z < best_z[l]
                        || (z == best_z[l] && cur != u32::MAX && t.face < tris[cur as usize].face)
                    {
                        best_z[l] = z;
                        best_t[l] = ti;
                    }
                }
                for k in 0..3 {
                    e[k] -= edges[k].1 * SUB;
                }
            }
        }
    }
    let mut out = TileOut {
        id: vec![-1; TILE * TILE],
        depth: vec![f32::INFINITY; TILE * TILE],
        bary: vec![0.0; 3 * TILE * TILE],
    };
    for py in y0..=y1 {
        for px in x0..=x1 {
            let l = (py - y0) * TILE + (px - x0);
            if best_t[l] == u32::MAX {
                continue;
            }
            let t = &tris[best_t[l] as usize];
            let e = edge_values(t, px as i64 * SUB + HALF, py as i64 * SUB + HALF);
            let q = [
                e[0] as f64 * t.iz[0],
                e[1] as f64 * t.iz[1],
                e[2] as f64 * t.iz[2],
            ];
            let s = q[0] + q[1] + q[2];
            let mut b = [0f64; 3];
            for (i, qi) in q.iter().enumerate() {
                for (bj, wj) in b.iter_mut().zip(t.w[i].iter()) {
                    *bj += qi / s * wj;
                }
            }
            out.id[l] = t.face as i64;
            out.depth[l] = best_z[l] as f32;
            for (o, bj) in out.bary[3 * l..3 * l + 3].iter_mut().zip(b) {
                *o = bj as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EYE: [f32; 16] = [
        1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1.,
    ];

    fn k(f: f32, w: usize, h: usize) -> [f32; 9] {
        [f, 0., w as f32 / 2.0, 0., f, h as f32 / 2.0, 0., 0., 1.]
    }

    fn render(v: &[f32], f: &[i64], w: usize, h: usize, conv: Convention) -> Result<MeshRaster> {
        let kk = k(w as f32, w, h);
        rasterize_mesh(&MeshRequest {
            vertices: v,
            faces: f,
            viewmat: &EYE,
            intrinsics: &kk,
            width: w,
            height: h,
            convention: conv,
            near: DEFAULT_NEAR,
        })
    }

    /// A `n x n` grid of quads (two triangles each, random diagonal) spanning `[-s, s]^2` at
    /// depth `z` (OpenCV camera space).
    fn grid(n: usize, s: f32, z: f32, seed: u64) -> (Vec<f32>, Vec<i64>) {
        let mut v = Vec::new();
        let mut state = seed;
        for j in 0..=n {
            for i in 0..=n {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let jitter = if i > 0 && i < n && j > 0 && j < n {
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.6
                } else {
                    0.0
                };
                let x = -s + 2.0 * s * (i as f32 + jitter) / n as f32;
                let y = -s + 2.0 * s * (j as f32 - jitter) / n as f32;
                v.extend_from_slice(&[x, y, z]);
            }
        }
        let mut f = Vec::new();
        for j in 0..n {
            for i in 0..n {
                let a = (j * (n + 1) + i) as i64;
                let (b, c, d) = (a + 1, a + n as i64 + 1, a + n as i64 + 2);
                if (i + j) % 2 == 0 {
                    f.extend_from_slice(&[a, b, d, a, d, c]);
                } else {
                    f.extend_from_slice(&[a, b, c, b, d, c]);
                }
            }
        }
        (v, f)
    }

    #[test]
    fn full_screen_grid_covers_every_pixel_exactly_once() {
        let (w, h) = (37, 29);
        let (v, f) = grid(7, 2.0, 1.5, 7);
        let mut count = vec![0u32; w * h];
        for tri in f.chunks(3) {
            let r = render(&v, tri, w, h, Convention::OpenCv).unwrap();
            for (c, &id) in count.iter_mut().zip(&r.triangle_id) {
                *c += (id >= 0) as u32;
            }
        }
        assert!(count.iter().all(|&c| c == 1), "{count:?}");
        let all = render(&v, &f, w, h, Convention::OpenCv).unwrap();
        assert!(all.triangle_id.iter().all(|&i| i >= 0));
        assert!(all.depth.iter().all(|&d| (d - 1.5).abs() < 1e-5));
    }

    #[test]
    fn barycentrics_sum_to_one_and_ids_are_in_range() {
        let (v, f) = grid(3, 0.4, 2.0, 3);
        let r = render(&v, &f, 24, 24, Convention::OpenCv).unwrap();
        for (p, &id) in r.triangle_id.iter().enumerate() {
            if id >= 0 {
                assert!((id as usize) < f.len() / 3);
                let b = &r.barycentrics[3 * p..3 * p + 3];
                assert!((b.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                assert!(b.iter().all(|&x| (-1e-6..=1.0 + 1e-6).contains(&x)));
            }
        }
    }

    #[test]
    fn nearest_wins_and_ties_go_to_lower_id() {
        let far = [-1., -1., 3., 1., -1., 3., 0., 1., 3.];
        let near = [-1., -1., 2., 1., -1., 2., 0., 1., 2.];
        let v: Vec<f32> = far.iter().chain(near.iter()).copied().collect();
        let r = render(&v, &[0, 1, 2, 3, 4, 5], 16, 16, Convention::OpenCv).unwrap();
        assert_eq!(r.triangle_id[8 * 16 + 8], 1);
        assert_eq!(r.depth[8 * 16 + 8], 2.0);
        // same triangle twice: the lower id wins everywhere
        let r = render(&near, &[0, 1, 2, 2, 1, 0], 16, 16, Convention::OpenCv).unwrap();
        assert!(r.triangle_id.iter().all(|&i| i <= 0));
        assert!(r.triangle_id.contains(&0));
    }

    #[test]
    fn opengl_is_opencv_with_y_and_z_flipped() {
        let v = [-0.5f32, -0.3, 2.0, 0.6, -0.2, 2.5, 0.1, 0.7, 3.0];
        let gl: Vec<f32> = v.chunks(3).flat_map(|p| [p[0], -p[1], -p[2]]).collect();
        let a = render(&v, &[0, 1, 2], 20, 16, Convention::OpenCv).unwrap();
        let b = render(&gl, &[0, 1, 2], 20, 16, Convention::OpenGl).unwrap();
        assert_eq!(a, b);
        assert!(a.triangle_id.contains(&0));
    }

    #[test]
    fn near_plane_clips_instead_of_dropping() {
        // a floor-like triangle crossing the camera plane: the part in front is still drawn
        let v = [-1f32, 0.5, -1.0, 1.0, 0.5, -1.0, 0.0, 0.5, 4.0];
        let r = render(&v, &[0, 1, 2], 32, 32, Convention::OpenCv).unwrap();
        let drawn: Vec<usize> = (0..32 * 32).filter(|&p| r.triangle_id[p] == 0).collect();
        assert!(!drawn.is_empty());
        for &p in &drawn {
            assert!(r.depth[p] >= DEFAULT_NEAR);
            // depth is consistent with the barycentric interpolation of vertex z
            let b = &r.barycentrics[3 * p..3 * p + 3];
            let z = b[0] * v[2] + b[1] * v[5] + b[2] * v[8];
            assert!(
                (z - r.depth[p]).abs() < 1e-3 * r.depth[p].max(1.0),
                "{z} {}",
                r.depth[p]
            );
        }
        // entirely behind the camera: nothing
        let behind = [-1f32, -1.0, -2.0, 1.0, -1.0, -2.0, 0.0, 1.0, -2.0];
        let r = render(&behind, &[0, 1, 2], 8, 8, Convention::OpenCv).unwrap();
        assert!(r.triangle_id.iter().all(|&i| i == -1));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let v = [0f32, 0., 1., 1., 0., 1., 0., 1., 1.];
        assert!(matches!(
            render(&v, &[0, 1, 3], 8, 8, Convention::OpenCv),
            Err(Error::Value { name: "faces", .. })
        ));
        assert!(matches!(
            render(&v, &[0, 1, -1], 8, 8, Convention::OpenCv),
            Err(Error::Value { name: "faces", .. })
        ));
        assert!(matches!(
            render(&v[..8], &[0, 1, 2], 8, 8, Convention::OpenCv),
            Err(Error::Shape { .. })
        ));
        let mut nan = v;
        nan[4] = f32::NAN;
        assert!(matches!(
            render(&nan, &[0, 1, 2], 8, 8, Convention::OpenCv),
            Err(Error::Value {
                name: "vertices",
                ..
            })
        ));
        assert!(render(&v, &[0, 1, 2], 0, 8, Convention::OpenCv).is_err());
        let empty = render(&[], &[], 4, 3, Convention::OpenGl).unwrap();
        assert!(empty.triangle_id.iter().all(|&i| i == -1));
        assert!(empty.depth.iter().all(|d| d.is_infinite()));
    }
}
