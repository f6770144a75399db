//! Texture baking: scatter per-view pixels into a UV texture, and fill the texels no view saw.
//!
//! [`bake`] is the adjoint of bilinear texture sampling (`raysplat.sample_texture`): every pixel
//! `p` with weight `w_p > 0`, colour `c_p` and texture coordinate `(u, v)` lands on the four
//! texels around `x = u * W - 0.5`, `y = (1 - v) * H - 0.5` (clamp-to-edge, as the sampler)
//! with bilinear weights `b`:
//!
//! ```text
//! acc[texel] += w_p * b * c_p        wsum[texel] += w_p * b
//! texture    = acc / wsum  where wsum > 0, else 0          texel_weight = wsum
//! ```
//!
//! so every covered texel is a convex combination of the pixels that reach it. The texture is
//! split into bands of [`BAND`] rows; pixels are counting-sorted into the band(s) of their two
//! rows and the bands accumulate in parallel (in `f64`), each in pixel order: the result does
//! not depend on the thread count.
//!
//! [`dilate`] fills unfilled texels from their filled 8-neighbours (their mean), one ring per
//! pass, until every texel is filled, nothing changes, or `max_passes` is reached.

use rayon::prelude::*;

use crate::check::{expect_finite, expect_len};
use crate::error::{Error, Result};
use crate::real::Real;

/// Texture rows per parallel band.
pub const BAND: usize = 8;

/// Pixels to scatter into a `height x width x channels` texture.
#[derive(Debug, Clone, Copy)]
pub struct BakeRequest<'a, T> {
    /// `[P, C]` pixel colours.
    pub colors: &'a [T],
    /// `[P, 2]` texture coordinates `(u, v)`; `v = 0` is the last texture row.
    pub uv: &'a [T],
    /// `[P]` non-negative weights; pixels with weight 0 are skipped.
    pub weights: &'a [T],
    /// Channels `C`.
    pub channels: usize,
    /// Texture height in texels.
    pub height: usize,
    /// Texture width in texels.
    pub width: usize,
}

/// Result of [`bake`].
#[derive(Debug, Clone, PartialEq)]
pub struct Baked<T> {
    /// `[H, W, C]` normalised texture (zeros where `texel_weight == 0`).
    pub texture: Vec<T>,
    /// `[H, W]` total splat weight per texel.
    pub texel_weight: Vec<T>,
}

/// The four texels `(row, col)` and bilinear weights a pixel at `(u, v)` splats to.
#[inline]
fn footprint<T: Real>(u: T, v: T, h: usize, w: usize) -> [(usize, usize, f64); 4] {
    let (uf, vf) = (u.to_f64().unwrap_or(0.0), v.to_f64().unwrap_or(0.0));
    let x = (uf * w as f64 - 0.5).clamp(-1.0, w as f64);
    let y = ((1.0 - vf) * h as f64 - 0.5).clamp(-1.0, h as f64);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let cx = |i: i64| i.clamp(0, w as i64 - 1) as usize;
    let cy = |i: i64| i.clamp(0, h as i64 - 1) as usize;
    [
        (cy(y0), cx(x0), (1.0 - fx) * (1.0 - fy)),
        (cy(y0), cx(x0 + 1), fx * (1.0 - fy)),
        (cy(y0 + 1), cx(x0), (1.0 - fx) * fy),
        (cy(y0 + 1), cx(x0 + 1), fx * fy),
    ]
}

/// Scatters weighted pixels into a texture (see the module docs).
pub fn bake<T: Real>(req: &BakeRequest<'_, T>) -> Result<Baked<T>> {
    let (h, w, c) = (req.height, req.width, req.channels);
    if h == 0 || w == 0 {
        return Err(Error::value(
            "size",
            "texture height and width must be positive",
        ));
    }
    if c == 0 {
        return Err(Error::value("colors", "must have at least one channel"));
    }
    let p = req.weights.len();
    expect_len("colors", req.colors.len(), p * c)?;
    expect_len("uv", req.uv.len(), p * 2)?;
    expect_finite("colors", req.colors)?;
    expect_finite("uv", req.uv)?;
    expect_finite("weights", req.weights)?;
    if req.weights.iter().any(|&x| x < T::zero()) {
        return Err(Error::value("weights", "must be non-negative"));
    }
    let bands = h.div_ceil(BAND);
    // counting sort of pixel indices into the bands of their (up to two) rows
    let rows_of = |i: usize| {
        let f = footprint(req.uv[2 * i], req.uv[2 * i + 1], h, w);
        (f[0].0 / BAND, f[2].0 / BAND)
    };
    let live: Vec<(usize, usize, usize)> = crate::parallel::install(|| {
        (0..p)
            .into_par_iter()
            .filter(|&i| req.weights[i] > T::zero())
            .map(|i| {
                let (a, b) = rows_of(i);
                (i, a, b)
            })
            .collect()
    });
    let mut count = vec![0usize; bands + 1];
    for &(_, a, b) in &live {
        count[a + 1] += 1;
        if b != a {
            count[b + 1] += 1;
        }
    }
    for i in 0..bands {
        count[i + 1] += count[i];
    }
    let mut fill = count.clone();
    let mut order = vec![0usize; count[bands]];
    for &(i, a, b) in &live {
        order[fill[a]] = i;
        fill[a] += 1;
        if b != a {
            order[fill[b]] = i;
            fill[b] += 1;
        }
    }
    let mut texture = vec![T::zero(); h * w * c];
    let mut texel_weight = vec![T::zero(); h * w];
    crate::parallel::install(|| {
        texture
            .par_chunks_mut(BAND * w * c)
            .zip(texel_weight.par_chunks_mut(BAND * w))
            .enumerate()
            .for_each(|(band, (tex, tw))| {
                let r0 = band * BAND;
                let rows = tw.len() / w;
                let mut acc = vec![0f64; rows * w * c];
                let mut ws = vec![0f64; rows * w];
                for &i in &order[count[band]..count[band + 1]] {
                    let wp = req.weights[i].to_f64().unwrap_or(0.0);
                    let col = &req.colors[i * c..(i + 1) * c];
                    for (row, cx, b) in footprint(req.uv[2 * i], req.uv[2 * i + 1], h, w) {
                        if row < r0 || row >= r0 + rows || b == 0.0 {
                            continue;
                        }
                        let t = (row - r0) * w + cx;
                        let wb = wp * b;
                        ws[t] += wb;
                        for k in 0..c {
                            acc[t * c + k] += wb * col[k].to_f64().unwrap_or(0.0);
                        }
                    }
                }
                for t in 0..rows * w {
                    tw[t] = T::lit(ws[t]);
                    if ws[t] > 0.0 {
                        for k in 0..c {
                            tex[t * c + k] = T::lit(acc[t * c + k] / ws[t]);
                        }
                    }
                }
            });
    });
    Ok(Baked {
        texture,
        texel_weight,
    })
}

/// Result of [`dilate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Dilated<T> {
    /// `[H, W, C]` texture with the newly filled texels.
    pub texture: Vec<T>,
    /// `[H, W]` filled mask after dilation.
    pub filled: Vec<bool>,
    /// Passes that changed something.
    pub passes: usize,
}

/// Fills unfilled texels ring by ring with the mean of their filled 8-neighbours.
pub fn dilate<T: Real>(
    texture: &[T],
    filled: &[bool],
    height: usize,
    width: usize,
    channels: usize,
    max_passes: usize,
) -> Result<Dilated<T>> {
    let (h, w, c) = (height, width, channels);
    if h == 0 || w == 0 || c == 0 {
        return Err(Error::value("texture", "must be non-empty"));
    }
    expect_len("texture", texture.len(), h * w * c)?;
    expect_len("filled", filled.len(), h * w)?;
    expect_finite("texture", texture)?;
    let mut tex = texture.to_vec();
    let mut mask = filled.to_vec();
    let mut passes = 0;
    while passes < max_passes && mask.iter().any(|&m| !m) {
        let (prev_tex, prev_mask) = (&tex, &mask);
        let rows: Vec<(Vec<T>, Vec<bool>, bool)> = crate::parallel::install(|| {
            (0..h)
                .into_par_iter()
                .map(|y| {
                    let mut rt = prev_tex[y * w * c..(y + 1) * w * c].to_vec();
                    let mut rm = prev_mask[y * w..(y + 1) * w].to_vec();
                    let mut changed = false;
                    let mut sum = vec![T::zero(); c];
                    for x in 0..w {
                        if rm[x] {
                            continue;
                        }
                        sum.iter_mut().for_each(|s| *s = T::zero());
                        let mut n = 0usize;
                        for yy in y.saturating_sub(1)..(y + 2).min(h) {
                            for xx in x.saturating_sub(1)..(x + 2).min(w) {
                                let j = yy * w + xx;
                                if prev_mask[j] {
                                    n += 1;
                                    for k in 0..c {
                                        sum[k] += prev_tex[j * c + k];
                                    }
                                }
                            }
                        }
                        if n > 0 {
                            let inv = T::lit(n as f64);
                            for k in 0..c {
                                rt[x * c + k] = sum[k] / inv;
                            }
                            rm[x] = true;
                            changed = true;
                        }
                    }
                    (rt, rm, changed)
                })
                .collect()
        });
        if !rows.iter().any(|r| r.2) {
            break;
        }
        for (y, (rt, rm, _)) in rows.into_iter().enumerate() {
            tex[y * w * c..(y + 1) * w * c].copy_from_slice(&rt);
            mask[y * w..(y + 1) * w].copy_from_slice(&rm);
        }
        passes += 1;
    }
    Ok(Dilated {
        texture: tex,
        filled: mask,
        passes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::tests::lcg;

    /// Brute force: one texel at a time, over all pixels.
    fn brute(colors: &[f64], uv: &[f64], wts: &[f64], h: usize, w: usize, c: usize) -> Baked<f64> {
        let mut tex = vec![0.0; h * w * c];
        let mut tw = vec![0.0; h * w];
        for t in 0..h * w {
            let mut acc = vec![0.0; c];
            let mut s = 0.0;
            for i in 0..wts.len() {
                if wts[i] <= 0.0 {
                    continue;
                }
                for (r, cx, b) in footprint(uv[2 * i], uv[2 * i + 1], h, w) {
                    if r * w + cx == t {
                        s += wts[i] * b;
                        for k in 0..c {
                            acc[k] += wts[i] * b * colors[i * c + k];
                        }
                    }
                }
            }
            tw[t] = s;
            if s > 0.0 {
                for k in 0..c {
                    tex[t * c + k] = acc[k] / s;
                }
            }
        }
        Baked {
            texture: tex,
            texel_weight: tw,
        }
    }

    #[test]
    fn matches_brute_force_and_is_convex() {
        let (h, w, c, p) = (19, 13, 3, 400);
        let colors = lcg(p * c, 1);
        let uv: Vec<f64> = lcg(p * 2, 2).iter().map(|x| 1.2 * x - 0.1).collect();
        let wts: Vec<f64> = lcg(p, 3)
            .iter()
            .map(|&x| if x < 0.2 { 0.0 } else { x })
            .collect();
        let req = BakeRequest {
            colors: &colors,
            uv: &uv,
            weights: &wts,
            channels: c,
            height: h,
            width: w,
        };
        let got = bake(&req).unwrap();
        let want = brute(&colors, &uv, &wts, h, w, c);
        for (a, b) in got.texture.iter().zip(&want.texture) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        for (a, b) in got.texel_weight.iter().zip(&want.texel_weight) {
            assert!((a - b).abs() < 1e-12);
        }
        // convex: every covered texel lies within the colour range
        for (t, &s) in got.texel_weight.iter().enumerate() {
            if s > 0.0 {
                for k in 0..c {
                    let v = got.texture[t * c + k];
                    assert!((-1e-12..=1.0 + 1e-12).contains(&v));
                }
            }
        }
        // deterministic
        assert_eq!(bake(&req).unwrap(), got);
    }

    #[test]
    fn empty_and_bad_inputs() {
        let r = BakeRequest::<f32> {
            colors: &[],
            uv: &[],
            weights: &[],
            channels: 3,
            height: 4,
            width: 4,
        };
        let b = bake(&r).unwrap();
        assert!(b.texel_weight.iter().all(|&x| x == 0.0));
        let bad = BakeRequest::<f32> {
            colors: &[0.0, 0.0, 0.0],
            uv: &[0.5, f32::NAN],
            weights: &[1.0],
            ..r
        };
        assert_eq!(
            bake(&bad).unwrap_err().to_string(),
            "uv: contains NaN or infinite values"
        );
        let neg = BakeRequest::<f32> {
            colors: &[0.0, 0.0, 0.0],
            uv: &[0.5, 0.5],
            weights: &[-1.0],
            ..r
        };
        assert!(bake(&neg).unwrap_err().to_string().starts_with("weights"));
        let short = BakeRequest::<f32> {
            colors: &[0.0, 0.0],
            uv: &[0.5, 0.5],
            weights: &[1.0],
            ..r
        };
        assert!(bake(&short).unwrap_err().to_string().starts_with("colors"));
        let zero = BakeRequest::<f32> { height: 0, ..r };
        assert!(bake(&zero).is_err());
    }

    #[test]
    fn dilate_fills_everything_with_neighbour_means() {
        let (h, w) = (5, 6);
        let mut tex = vec![0.0f64; h * w];
        let mut filled = vec![false; h * w];
        tex[2 * w + 2] = 1.0;
        filled[2 * w + 2] = true;
        tex[2 * w + 3] = 3.0;
        filled[2 * w + 3] = true;
        let d = dilate(&tex, &filled, h, w, 1, 100).unwrap();
        assert!(d.filled.iter().all(|&m| m));
        assert_eq!(d.passes, 2);
        assert_eq!(d.texture[w + 2], 2.0); // both neighbours
        assert_eq!(d.texture[w + 1], 1.0); // only the left one
        assert_eq!(d.texture[2 * w + 2], 1.0); // filled texels keep their value
        let none = dilate(&[0.0f32; 4], &[false; 4], 2, 2, 1, 10).unwrap();
        assert_eq!(none.passes, 0);
        assert!(none.filled.iter().all(|&m| !m));
        let one = dilate(&tex, &filled, h, w, 1, 1).unwrap();
        assert_eq!(one.passes, 1);
        assert!(!one.filled[0]);
    }
}
