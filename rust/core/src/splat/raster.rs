//! Tile binning and front-to-back compositing of projected Gaussians (gsplat's `isect_tiles` +
//! `rasterize_to_pixels`), forward and backward.
//!
//! Each Gaussian with a non-zero radius covers the 16×16 tiles its `radii` box touches; each tile
//! sorts its Gaussians by depth (ties by index). A pixel (centre `x + 0.5, y + 0.5`) composites
//! its tile's list front to back: `alpha = min(0.99, o · exp(-σ))`, `σ = ½(a dx² + c dy²) + b dx dy`,
//! skipping `σ < 0` and `alpha < 1/255`, and stops before the Gaussian that would bring the
//! transmittance to `1e-4` or below. The backward pass walks each tile's list back to front
//! (gsplat's scheme), writes per-intersection gradients, and sums them per Gaussian in
//! intersection order, so results do not depend on the thread count.

use rayon::prelude::*;

use super::{ALPHA_MAX, ALPHA_MIN, T_MIN};
use crate::check::{expect_finite, expect_len};
use crate::error::{Error, Result};
use crate::real::Real;
use crate::segments::SharedMut;

/// Tile edge in pixels.
pub const TILE: usize = 16;
const NPIX: usize = TILE * TILE;

/// Projected Gaussians of `C` cameras: `[C, N, ...]`.
#[derive(Debug, Clone, Copy)]
pub struct Splats2d<'a, T> {
    /// `[C, N, 2]` pixel coordinates.
    pub means2d: &'a [T],
    /// `[C, N, 3]` conics `(a, b, c)`.
    pub conics: &'a [T],
    /// `[C, N, D]` features.
    pub colors: &'a [T],
    /// `[C, N]` opacities.
    pub opacities: &'a [T],
    /// Feature channels `D`.
    pub channels: usize,
}

/// Tile binning of `C` cameras: per-tile lists of Gaussians sorted by depth.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiles {
    /// Tiles per row.
    pub tile_w: usize,
    /// Tiles per column.
    pub tile_h: usize,
    /// `[C * tile_h * tile_w + 1]` start of each tile's list in `flatten_ids`.
    pub offsets: Vec<i64>,
    /// Flat `c * N + g` index of each intersection, grouped by tile, front to back.
    pub flatten_ids: Vec<i64>,
    /// `[C, N]` tiles touched by each Gaussian.
    pub tiles_per_gauss: Vec<i32>,
}

/// Rendered images.
#[derive(Debug, Clone, PartialEq)]
pub struct Raster<T> {
    /// `[C, H, W, D]` composited features (no background).
    pub colors: Vec<T>,
    /// `[C, H, W]` `1 - T`.
    pub alphas: Vec<T>,
    /// `[C, H, W]` final transmittance `T`.
    pub trans: Vec<T>,
    /// `[C, H, W]` position in the tile list of the last contributing Gaussian (-1: none).
    pub last: Vec<i32>,
}

/// Gradients of [`rasterize`]'s inputs, `[C, N, ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RasterGrads<T> {
    /// `[C, N, 2]`
    pub means2d: Vec<T>,
    /// `[C, N, 3]`
    pub conics: Vec<T>,
    /// `[C, N, D]`
    pub colors: Vec<T>,
    /// `[C, N]`
    pub opacities: Vec<T>,
    /// `[C, N, 2]` sums of the per-pixel absolute 2D mean gradients (when asked for).
    pub absgrad: Option<Vec<T>>,
}

fn tile_range<T: Real>(center: T, radius: i32, tiles: usize) -> (usize, usize) {
    let t = T::lit(TILE as f64);
    let (c, r) = (center / t, T::lit(radius as f64) / t);
    let clamp = |v: T| -> usize {
        if v > T::zero() {
            v.to_usize().unwrap_or(tiles).min(tiles)
        } else {
            0
        }
    };
    (clamp((c - r).floor()), clamp((c + r).ceil()))
}

fn tile_rect<T: Real>(m: &[T], r: &[i32], tw: usize, th: usize) -> (usize, usize, usize, usize) {
    if r[0] <= 0 && r[1] <= 0 {
        return (0, 0, 0, 0);
    }
    let (x0, x1) = tile_range(m[0], r[0], tw);
    let (y0, y1) = tile_range(m[1], r[1], th);
    (x0, x1.max(x0), y0, y1.max(y0))
}

fn tiles_of(width: usize, height: usize) -> (usize, usize) {
    (width.div_ceil(TILE), height.div_ceil(TILE))
}

/// Bins `N` Gaussians of `n_cameras` cameras into 16×16 tiles, sorted by depth within a tile.
pub fn bin_tiles<T: Real>(
    means2d: &[T],
    radii: &[i32],
    depths: &[T],
    n_cameras: usize,
    width: usize,
    height: usize,
) -> Result<Tiles> {
    let cn = depths.len();
    expect_len("means2d", means2d.len(), 2 * cn)?;
    expect_len("radii", radii.len(), 2 * cn)?;
    if n_cameras == 0 || cn % n_cameras != 0 {
        return Err(Error::shape(
            "depths",
            format!("{cn} values cannot be split over {n_cameras} cameras"),
        ));
    }
    expect_finite("means2d", means2d)?;
    expect_finite("depths", depths)?;
    let n = cn / n_cameras;
    let (tw, th) = tiles_of(width, height);
    let nt = tw * th;
    let mut tiles_per_gauss = vec![0i32; cn];
    crate::parallel::install(|| {
        tiles_per_gauss
            .par_iter_mut()
            .enumerate()
            .with_min_len(4096)
            .for_each(|(i, t)| {
                let (x0, x1, y0, y1) = tile_rect(&means2d[2 * i..], &radii[2 * i..], tw, th);
                *t = ((x1 - x0) * (y1 - y0)) as i32;
            });
    });
    // Counting sort by tile (Gaussian order within a tile), then a depth sort per tile.
    let mut counts = vec![0i64; n_cameras * nt + 1];
    let mut rects = Vec::with_capacity(cn);
    for i in 0..cn {
        if tiles_per_gauss[i] == 0 {
            continue;
        }
        let r = tile_rect(&means2d[2 * i..], &radii[2 * i..], tw, th);
        let base = (i / n) * nt;
        for ty in r.2..r.3 {
            for tx in r.0..r.1 {
                counts[base + ty * tw + tx + 1] += 1;
            }
        }
        rects.push((i, r));
    }
    for t in 1..counts.len() {
        counts[t] += counts[t - 1];
    }
    let offsets = counts;
    let mut cursor = offsets.clone();
    let mut flatten_ids = vec![0i64; *offsets.last().unwrap_or(&0) as usize];
    for &(i, (x0, x1, y0, y1)) in &rects {
        let base = (i / n) * nt;
        for ty in y0..y1 {
            for tx in x0..x1 {
                let t = base + ty * tw + tx;
                flatten_ids[cursor[t] as usize] = i as i64;
                cursor[t] += 1;
            }
        }
    }
    // Depth keys in total order (sign-flipped IEEE bits), ties broken by index.
    let key = |i: i64| -> u64 {
        let bits = depths[i as usize].to_f64().unwrap_or(f64::NAN).to_bits();
        if bits >> 63 == 1 {
            !bits
        } else {
            bits | (1 << 63)
        }
    };
    let ids = SharedMut::new(&mut flatten_ids);
    crate::parallel::install(|| {
        (0..n_cameras * nt).into_par_iter().for_each(|t| {
            // SAFETY: tile ranges are disjoint.
            let list = unsafe { ids.slice(offsets[t] as usize..offsets[t + 1] as usize) };
            let mut keyed: Vec<(u64, i64)> = list.iter().map(|&i| (key(i), i)).collect();
            keyed.sort_unstable();
            for (dst, (_, i)) in list.iter_mut().zip(keyed) {
                *dst = i;
            }
        });
    });
    Ok(Tiles {
        tile_w: tw,
        tile_h: th,
        offsets,
        flatten_ids,
        tiles_per_gauss,
    })
}

fn check_splats<T: Real>(
    s: &Splats2d<'_, T>,
    n_cameras: usize,
    tiles: &Tiles,
    width: usize,
    height: usize,
) -> Result<usize> {
    let cn = s.opacities.len();
    if s.channels == 0 {
        return Err(Error::shape("colors", "need at least one channel"));
    }
    expect_len("means2d", s.means2d.len(), 2 * cn)?;
    expect_len("conics", s.conics.len(), 3 * cn)?;
    expect_len("colors", s.colors.len(), s.channels * cn)?;
    let (tw, th) = tiles_of(width, height);
    if (tw, th) != (tiles.tile_w, tiles.tile_h) {
        return Err(Error::shape(
            "isect_offsets",
            "tile grid does not match width and height",
        ));
    }
    expect_len(
        "isect_offsets",
        tiles.offsets.len(),
        n_cameras * tw * th + 1,
    )?;
    let n_isect = tiles.flatten_ids.len();
    let mut prev = 0i64;
    for &o in &tiles.offsets {
        if o < prev || o as usize > n_isect {
            return Err(Error::value(
                "isect_offsets",
                "must be non-decreasing and within flatten_ids",
            ));
        }
        prev = o;
    }
    if tiles.flatten_ids.iter().any(|&i| i < 0 || i as usize >= cn) {
        return Err(Error::value(
            "flatten_ids",
            format!("indices must lie in [0, {cn})"),
        ));
    }
    for (name, v) in [
        ("means2d", s.means2d),
        ("conics", s.conics),
        ("colors", s.colors),
        ("opacities", s.opacities),
    ] {
        expect_finite(name, v)?;
    }
    Ok(cn)
}

/// The Gaussians of one tile, gathered structure-of-arrays.
struct TileList<T> {
    mx: Vec<T>,
    my: Vec<T>,
    ca: Vec<T>,
    cb: Vec<T>,
    cc: Vec<T>,
    op: Vec<T>,
    col: Vec<T>,
}

impl<T: Real> TileList<T> {
    /// Packs each Gaussian's `(mx, my, a, b, c, o, colour...)` contiguously (one cache line
    /// per gather instead of four).
    fn pack(s: &Splats2d<'_, T>) -> Vec<T> {
        let d = s.channels;
        let stride = 6 + d;
        let mut packed = vec![T::zero(); s.opacities.len() * stride];
        crate::parallel::install(|| {
            packed
                .par_chunks_mut(stride)
                .enumerate()
                .with_min_len(4096)
                .for_each(|(i, e)| {
                    e[..2].copy_from_slice(&s.means2d[2 * i..2 * i + 2]);
                    e[2..5].copy_from_slice(&s.conics[3 * i..3 * i + 3]);
                    e[5] = s.opacities[i];
                    e[6..].copy_from_slice(&s.colors[d * i..d * i + d]);
                });
        });
        packed
    }

    fn gather(packed: &[T], d: usize, ids: &[i64]) -> Self {
        let m = ids.len();
        let stride = 6 + d;
        let mut l = TileList {
            mx: Vec::with_capacity(m),
            my: Vec::with_capacity(m),
            ca: Vec::with_capacity(m),
            cb: Vec::with_capacity(m),
            cc: Vec::with_capacity(m),
            op: Vec::with_capacity(m),
            col: Vec::with_capacity(m * d),
        };
        for &id in ids {
            let e = &packed[id as usize * stride..(id as usize + 1) * stride];
            l.mx.push(e[0]);
            l.my.push(e[1]);
            l.ca.push(e[2]);
            l.cb.push(e[3]);
            l.cc.push(e[4]);
            l.op.push(e[5]);
            l.col.extend_from_slice(&e[6..]);
        }
        l
    }
}

/// Pixel-centre coordinates of a tile and whether each pixel lies in the image.
fn tile_pixels<T: Real>(
    x0: usize,
    y0: usize,
    width: usize,
    height: usize,
) -> ([T; NPIX], [T; NPIX], [bool; NPIX]) {
    let mut px = [T::zero(); NPIX];
    let mut py = [T::zero(); NPIX];
    let mut inside = [false; NPIX];
    for p in 0..NPIX {
        let (x, y) = (x0 + p % TILE, y0 + p / TILE);
        px[p] = T::lit(x as f64 + 0.5);
        py[p] = T::lit(y as f64 + 0.5);
        inside[p] = x < width && y < height;
    }
    (px, py, inside)
}

/// The tile-local pixel box `(i0, i1, j0, j1)` (exclusive ends) outside which a Gaussian's
/// `alpha = o · exp(-σ)` is below `1/255` (so skipping it there changes nothing): the ellipse
/// `σ ≤ ln(255 o)` has half-widths `sqrt(2 ln(255 o) Σxx)`, `Σ = conic⁻¹`, padded by a pixel.
#[inline]
#[allow(clippy::too_many_arguments)]
fn pixel_box<T: Real>(
    mx: T,
    my: T,
    a: T,
    b: T,
    c: T,
    o: T,
    x0: usize,
    y0: usize,
) -> (usize, usize, usize, usize) {
    let smax = (o * T::lit(255.0)).ln();
    if smax.is_nan() || smax < T::zero() {
        return (0, 0, 0, 0);
    }
    let det = a * c - b * b;
    if det.is_nan() || det <= T::zero() {
        return (0, TILE, 0, TILE);
    }
    let two_s = T::lit(2.0) * smax / det;
    let (hx, hy) = ((two_s * c).sqrt(), (two_s * a).sqrt());
    let half = T::lit(0.5);
    let range = |center: T, h: T, origin: usize| -> (usize, usize) {
        let rel = center - T::lit(origin as f64) - half;
        let lo = (rel - h).floor();
        let hi = (rel + h).ceil() + T::one();
        let clamp = |v: T| -> usize {
            if v > T::zero() {
                v.to_usize().unwrap_or(TILE).min(TILE)
            } else {
                0
            }
        };
        match (lo.is_finite(), hi.is_finite()) {
            (true, true) => (clamp(lo), clamp(hi)),
            _ => (0, TILE),
        }
    };
    let (i0, i1) = range(mx, hx, x0);
    let (j0, j1) = range(my, hy, y0);
    (i0, i1.max(i0), j0, j1.max(j0))
}

/// Composites `N` projected Gaussians of `n_cameras` cameras into `[C, H, W, D]` images.
#[allow(clippy::needless_range_loop)]
pub fn rasterize<T: Real>(
    s: &Splats2d<'_, T>,
    n_cameras: usize,
    width: usize,
    height: usize,
    tiles: &Tiles,
) -> Result<Raster<T>> {
    check_splats(s, n_cameras, tiles, width, height)?;
    let d = s.channels;
    let hw = width * height;
    let mut out = Raster {
        colors: vec![T::zero(); n_cameras * hw * d],
        alphas: vec![T::zero(); n_cameras * hw],
        trans: vec![T::one(); n_cameras * hw],
        last: vec![-1; n_cameras * hw],
    };
    let (tw, nt) = (tiles.tile_w, tiles.tile_w * tiles.tile_h);
    let packed = TileList::pack(s);
    let (oc, oa, ot, ol) = (
        SharedMut::new(&mut out.colors),
        SharedMut::new(&mut out.alphas),
        SharedMut::new(&mut out.trans),
        SharedMut::new(&mut out.last),
    );
    let (zero, one, half) = (T::zero(), T::one(), T::lit(0.5));
    let (amax, amin, tmin) = (T::lit(ALPHA_MAX), T::lit(ALPHA_MIN), T::lit(T_MIN));
    crate::parallel::install(|| {
        (0..n_cameras * nt).into_par_iter().for_each(|t| {
            let (ci, tt) = (t / nt, t % nt);
            let (x0, y0) = ((tt % tw) * TILE, (tt / tw) * TILE);
            let ids = &tiles.flatten_ids[tiles.offsets[t] as usize..tiles.offsets[t + 1] as usize];
            let l = TileList::gather(&packed, d, ids);
            let (px, py, mut active) = tile_pixels::<T>(x0, y0, width, height);
            let mut n_active = active.iter().filter(|&&a| a).count();
            let mut trans = [one; NPIX];
            let mut last = [-1i32; NPIX];
            let mut acc = vec![zero; d * NPIX];
            for k in 0..ids.len() {
                if n_active == 0 {
                    break;
                }
                let (mx, my, a, b, c, o) = (l.mx[k], l.my[k], l.ca[k], l.cb[k], l.cc[k], l.op[k]);
                let ck = &l.col[d * k..d * k + d];
                let (i0, i1, j0, j1) = pixel_box(mx, my, a, b, c, o, x0, y0);
                let smax = (o * T::lit(255.0)).ln() * T::lit(1.0001) + T::lit(1e-6);
                for j in j0..j1 {
                    if !active[j * TILE + i0..j * TILE + i1.max(i0)].contains(&true) {
                        continue;
                    }
                    let dy = my - py[j * TILE];
                    let (bdy, cdy) = (b * dy, half * c * dy * dy);
                    for i in i0..i1 {
                        let p = j * TILE + i;
                        if !active[p] {
                            continue;
                        }
                        let dx = mx - px[i];
                        let sigma = dx * (half * a * dx + bdy) + cdy;
                        if sigma < zero || sigma > smax {
                            continue;
                        }
                        let alpha = (o * (-sigma).exp_fast()).min(amax);
                        if alpha < amin {
                            continue;
                        }
                        let next = trans[p] * (one - alpha);
                        if next <= tmin {
                            active[p] = false;
                            n_active -= 1;
                            continue;
                        }
                        let w = alpha * trans[p];
                        for (q, &cv) in acc[p * d..p * d + d].iter_mut().zip(ck) {
                            *q += w * cv;
                        }
                        trans[p] = next;
                        last[p] = k as i32;
                    }
                }
            }
            for r in 0..TILE {
                let y = y0 + r;
                if y >= height {
                    break;
                }
                let xs = TILE.min(width - x0);
                let pix = (ci * height + y) * width + x0;
                // SAFETY: each tile writes only its own pixels.
                let (cs, al, tr, ls) = unsafe {
                    (
                        oc.slice(pix * d..(pix + xs) * d),
                        oa.slice(pix..pix + xs),
                        ot.slice(pix..pix + xs),
                        ol.slice(pix..pix + xs),
                    )
                };
                for x in 0..xs {
                    let p = r * TILE + x;
                    for ch in 0..d {
                        cs[x * d + ch] = acc[p * d + ch];
                    }
                    al[x] = one - trans[p];
                    tr[x] = trans[p];
                    ls[x] = last[p];
                }
            }
        });
    });
    Ok(out)
}

/// Gradients of [`rasterize`] given the saved `trans` and `last` and the gradients of the
/// colours `[C, H, W, D]` and alphas `[C, H, W]` (`None` = zero).
#[allow(clippy::too_many_arguments)]
pub fn rasterize_backward<T: Real>(
    s: &Splats2d<'_, T>,
    n_cameras: usize,
    width: usize,
    height: usize,
    tiles: &Tiles,
    trans: &[T],
    last: &[i32],
    v_colors: &[T],
    v_alphas: Option<&[T]>,
    absgrad: bool,
) -> Result<RasterGrads<T>> {
    let cn = check_splats(s, n_cameras, tiles, width, height)?;
    let d = s.channels;
    let hw = width * height;
    expect_len("trans", trans.len(), n_cameras * hw)?;
    expect_len("last", last.len(), n_cameras * hw)?;
    expect_len("v_colors", v_colors.len(), n_cameras * hw * d)?;
    if let Some(v) = v_alphas {
        expect_len("v_alphas", v.len(), n_cameras * hw)?;
    }
    let stride = 8 + d;
    let n_isect = tiles.flatten_ids.len();
    let mut buf = vec![T::zero(); n_isect * stride];
    let (tw, nt) = (tiles.tile_w, tiles.tile_w * tiles.tile_h);
    let packed = TileList::pack(s);
    let dst = SharedMut::new(&mut buf);
    let (zero, one, half) = (T::zero(), T::one(), T::lit(0.5));
    let (amax, amin) = (T::lit(ALPHA_MAX), T::lit(ALPHA_MIN));
    crate::parallel::install(|| {
        (0..n_cameras * nt).into_par_iter().for_each(|t| {
            let (ci, tt) = (t / nt, t % nt);
            let (x0, y0) = ((tt % tw) * TILE, (tt / tw) * TILE);
            let (lo, hi) = (tiles.offsets[t] as usize, tiles.offsets[t + 1] as usize);
            if lo == hi {
                return;
            }
            // SAFETY: tile ranges of the intersection buffer are disjoint.
            let g = unsafe { dst.slice(lo * stride..hi * stride) };
            let l = TileList::gather(&packed, d, &tiles.flatten_ids[lo..hi]);
            let (px, py, inside) = tile_pixels::<T>(x0, y0, width, height);
            let mut tf = [one; NPIX];
            let mut tcur = [one; NPIX];
            let mut lastp = [-1i32; NPIX];
            let mut va = [zero; NPIX];
            let mut vc = vec![zero; d * NPIX];
            let mut sacc = vec![zero; d * NPIX];
            for p in 0..NPIX {
                if !inside[p] {
                    continue;
                }
                let pix = (ci * height + y0 + p / TILE) * width + x0 + p % TILE;
                tf[p] = trans[pix];
                tcur[p] = trans[pix];
                lastp[p] = last[pix];
                va[p] = v_alphas.map_or(zero, |v| v[pix]);
                vc[p * d..p * d + d].copy_from_slice(&v_colors[pix * d..pix * d + d]);
            }
            let kmax = lastp.iter().copied().max().unwrap_or(-1);
            let mut vcol = vec![zero; d];
            for k in (0..=kmax.max(-1)).rev() {
                let ku = k as usize;
                let (mx, my, a, b, c, o) =
                    (l.mx[ku], l.my[ku], l.ca[ku], l.cb[ku], l.cc[ku], l.op[ku]);
                let ck = &l.col[d * ku..d * ku + d];
                vcol.iter_mut().for_each(|v| *v = zero);
                let (mut vmx, mut vmy, mut vca, mut vcb, mut vcc, mut vop, mut ax, mut ay) =
                    (zero, zero, zero, zero, zero, zero, zero, zero);
                let (i0, i1, j0, j1) = pixel_box(mx, my, a, b, c, o, x0, y0);
                // alpha >= 1/255 needs sigma <= ln(255 o) (with a little slack for rounding)
                let smax = (o * T::lit(255.0)).ln() * T::lit(1.0001) + T::lit(1e-6);
                for j in j0..j1 {
                    let dy = my - py[j * TILE];
                    for i in i0..i1 {
                        let p = j * TILE + i;
                        if k > lastp[p] {
                            continue;
                        }
                        let dx = mx - px[p];
                        let sigma = half * (a * dx * dx + c * dy * dy) + b * dx * dy;
                        if sigma < zero || sigma > smax {
                            continue;
                        }
                        let gexp = (-sigma).exp_fast();
                        let raw = o * gexp;
                        let alpha = raw.min(amax);
                        if alpha < amin {
                            continue;
                        }
                        let ra = one / (one - alpha);
                        let tb = tcur[p] * ra;
                        tcur[p] = tb;
                        let wgt = alpha * tb;
                        let mut v_alpha = va[p] * tf[p] * ra;
                        for ch in 0..d {
                            let q = p * d + ch;
                            let v = vc[q];
                            vcol[ch] += wgt * v;
                            v_alpha += v * (ck[ch] * tb - sacc[q] * ra);
                            sacc[q] += wgt * ck[ch];
                        }
                        if raw <= amax {
                            vop += v_alpha * gexp;
                            let vs = -v_alpha * alpha;
                            vca += half * dx * dx * vs;
                            vcb += dx * dy * vs;
                            vcc += half * dy * dy * vs;
                            let gx = vs * (a * dx + b * dy);
                            let gy = vs * (c * dy + b * dx);
                            vmx += gx;
                            vmy += gy;
                            ax += gx.abs();
                            ay += gy.abs();
                        }
                    }
                }
                let e = &mut g[ku * stride..(ku + 1) * stride];
                e[..8].copy_from_slice(&[vmx, vmy, vca, vcb, vcc, vop, ax, ay]);
                e[8..].copy_from_slice(&vcol);
            }
        });
    });
    // Per-Gaussian sums in intersection order (deterministic).
    let mut out = RasterGrads {
        means2d: vec![zero; 2 * cn],
        conics: vec![zero; 3 * cn],
        colors: vec![zero; d * cn],
        opacities: vec![zero; cn],
        absgrad: absgrad.then(|| vec![zero; 2 * cn]),
    };
    for (e, &id) in buf.chunks_exact(stride).zip(&tiles.flatten_ids) {
        let i = id as usize;
        out.means2d[2 * i] += e[0];
        out.means2d[2 * i + 1] += e[1];
        out.conics[3 * i] += e[2];
        out.conics[3 * i + 1] += e[3];
        out.conics[3 * i + 2] += e[4];
        out.opacities[i] += e[5];
        if let Some(a) = out.absgrad.as_mut() {
            a[2 * i] += e[6];
            a[2 * i + 1] += e[7];
        }
        for (o, &v) in out.colors[d * i..d * i + d].iter_mut().zip(&e[8..]) {
            *o += v;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splat::fd;

    const W: usize = 24;
    const H: usize = 20;
    const D: usize = 3;

    struct Inputs {
        means2d: Vec<f64>,
        conics: Vec<f64>,
        colors: Vec<f64>,
        opacities: Vec<f64>,
    }

    /// `n` Gaussians per camera over a 24x20 image (2x2 tiles), a few pixels wide, opacities
    /// below the 0.99 clamp so the image is smooth in every input.
    fn inputs(cn: usize) -> Inputs {
        let mut conics = Vec::with_capacity(3 * cn);
        let ab = fd::values(2 * cn, 12, 0.02, 0.06);
        let b = fd::values(cn, 13, -0.01, 0.01);
        for i in 0..cn {
            conics.extend([ab[2 * i], b[i], ab[2 * i + 1]]);
        }
        let mut means2d = fd::values(2 * cn, 11, 2.0, 18.0);
        for m in means2d.chunks_mut(2) {
            m[0] *= W as f64 / 20.0;
        }
        Inputs {
            means2d,
            conics,
            colors: fd::values(D * cn, 14, 0.0, 1.0),
            opacities: fd::values(cn, 15, 0.3, 0.8),
        }
    }

    fn splats(x: &Inputs) -> Splats2d<'_, f64> {
        Splats2d {
            means2d: &x.means2d,
            conics: &x.conics,
            colors: &x.colors,
            opacities: &x.opacities,
            channels: D,
        }
    }

    /// Tiles for every Gaussian covering the whole image, depth order by index.
    fn tiles(x: &Inputs, c: usize) -> Tiles {
        let cn = x.opacities.len();
        let radii = vec![40i32; 2 * cn];
        let depths: Vec<f64> = (0..cn).map(|i| 1.0 + i as f64).collect();
        bin_tiles(&x.means2d, &radii, &depths, c, W, H).unwrap()
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (c, n) = (2, 4);
        let x = inputs(c * n);
        let t = tiles(&x, c);
        let img = rasterize(&splats(&x), c, W, H, &t).unwrap();
        assert!(img.trans.iter().all(|&v| v > 1e-2), "no early termination");
        let v_colors = fd::values(c * H * W * D, 16, -1.0, 1.0);
        let v_alphas = fd::values(c * H * W, 17, -1.0, 1.0);
        let loss = |x: &Inputs| {
            let o = rasterize(&splats(x), c, W, H, &t).unwrap();
            fd::dot(&o.colors, &v_colors) + fd::dot(&o.alphas, &v_alphas)
        };
        let g = rasterize_backward(
            &splats(&x),
            c,
            W,
            H,
            &t,
            &img.trans,
            &img.last,
            &v_colors,
            Some(&v_alphas),
            true,
        )
        .unwrap();
        let tol = 1e-6;
        let base = || inputs(c * n);
        fd::check("means2d", &x.means2d, &g.means2d, tol, |m| {
            loss(&Inputs {
                means2d: m.to_vec(),
                ..base()
            })
        });
        fd::check("conics", &x.conics, &g.conics, tol, |v| {
            loss(&Inputs {
                conics: v.to_vec(),
                ..base()
            })
        });
        fd::check("colors", &x.colors, &g.colors, tol, |v| {
            loss(&Inputs {
                colors: v.to_vec(),
                ..base()
            })
        });
        fd::check("opacities", &x.opacities, &g.opacities, tol, |v| {
            loss(&Inputs {
                opacities: v.to_vec(),
                ..base()
            })
        });
        // absgrad sums |per-pixel gradient| of each mean: at least the gradient's magnitude
        let abs = g.absgrad.expect("absgrad requested");
        for (a, v) in abs.iter().zip(&g.means2d) {
            assert!(*a >= v.abs() - 1e-12, "absgrad {a} < |grad| {}", v.abs());
        }
    }

    #[test]
    fn missing_alpha_gradient_counts_as_zero() {
        let (c, n) = (1, 3);
        let x = inputs(c * n);
        let t = tiles(&x, c);
        let img = rasterize(&splats(&x), c, W, H, &t).unwrap();
        let v_colors = fd::values(c * H * W * D, 18, -1.0, 1.0);
        let zeros = vec![0.0; c * H * W];
        let run = |va: Option<&[f64]>| {
            rasterize_backward(
                &splats(&x),
                c,
                W,
                H,
                &t,
                &img.trans,
                &img.last,
                &v_colors,
                va,
                false,
            )
            .unwrap()
        };
        assert_eq!(run(None), run(Some(&zeros)));
    }

    #[test]
    fn empty_image_when_nothing_is_binned() {
        let x = inputs(2);
        let radii = vec![0i32; 4];
        let t = bin_tiles(&x.means2d, &radii, &[1.0, 2.0], 1, W, H).unwrap();
        assert!(t.flatten_ids.is_empty());
        let img = rasterize(&splats(&x), 1, W, H, &t).unwrap();
        assert!(img.colors.iter().all(|&v| v == 0.0));
        assert!(img.trans.iter().all(|&v| v == 1.0));
        assert!(img.last.iter().all(|&v| v == -1));
    }
}
