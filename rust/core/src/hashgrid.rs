//! Multi-resolution hash-grid encoding (Instant-NGP), forward and backward.
//!
//! Points `x` in `[0, 1]^3` (clamped) are encoded by `L` levels. Level `l` has resolution `r_l`:
//! `p = x * r_l`, the 8 grid vertices `(i, j, k)` around `p` (`0 <= i, j, k <= r_l`) are looked up
//! in the level's table of `table_size` rows of `n_feat` features and blended trilinearly. A
//! vertex indexes the table densely (`i + j (r + 1) + k (r + 1)^2`) when `(r + 1)^3 <= table_size`,
//! otherwise by the spatial hash `(i ^ j * 2654435761 ^ k * 805459861) mod table_size` in `u32`
//! arithmetic (`table_size` is a power of two). The encoding is `[N, L * n_feat]`, level-major.

use rayon::prelude::*;

use crate::check::{expect_finite, expect_len};
use crate::error::{Error, Result};
use crate::real::Real;

const PRIME_Y: u32 = 2_654_435_761;
const PRIME_Z: u32 = 805_459_861;
/// Points per parallel work item.
const CHUNK: usize = 512;

/// The shape of a hash-grid table: per-level resolutions, rows per level, features per row.
#[derive(Debug, Clone, PartialEq)]
pub struct HashGrid {
    /// Resolution of every level (cells per axis, >= 1).
    pub resolutions: Vec<u32>,
    /// Rows per level (a power of two).
    pub table_size: usize,
    /// Features per row.
    pub n_feat: usize,
}

impl HashGrid {
    /// Validates the spec.
    pub fn new(resolutions: Vec<u32>, table_size: usize, n_feat: usize) -> Result<Self> {
        if table_size == 0 || !table_size.is_power_of_two() || table_size > (1 << 30) {
            return Err(Error::value(
                "table_size",
                format!("must be a power of two in [1, 2^30], got {table_size}"),
            ));
        }
        if n_feat == 0 {
            return Err(Error::value("n_feat", "must be at least 1"));
        }
        if let Some(r) = resolutions.iter().find(|&&r| r == 0 || r > (1 << 20)) {
            return Err(Error::value(
                "resolutions",
                format!("every level's resolution must lie in [1, 2^20], got {r}"),
            ));
        }
        Ok(Self {
            resolutions,
            table_size,
            n_feat,
        })
    }

    /// Number of levels.
    pub fn n_levels(&self) -> usize {
        self.resolutions.len()
    }

    /// Number of table entries (`L * table_size * n_feat`).
    pub fn table_len(&self) -> usize {
        self.n_levels() * self.table_size * self.n_feat
    }

    /// Table rows and trilinear weights of the 8 vertices around `x` in level `lvl`.
    #[inline]
    fn corners<T: Real>(&self, lvl: usize, x: &[T]) -> ([usize; 8], [T; 8]) {
        let (rows, ws, _) = self.cell(lvl, x);
        (rows, ws)
    }

    /// [`HashGrid::corners`] plus the position of `x` inside its cell (`[0, 1]^3`).
    #[inline]
    fn cell<T: Real>(&self, lvl: usize, x: &[T]) -> ([usize; 8], [T; 8], [T; 3]) {
        let res = self.resolutions[lvl];
        let rf = T::lit(f64::from(res));
        let top = T::lit(f64::from(res - 1));
        let mut base = [0u32; 3];
        let mut frac = [T::zero(); 3];
        for a in 0..3 {
            let p = x[a].max(T::zero()).min(T::one()) * rf;
            let p0 = p.floor().min(top);
            frac[a] = p - p0;
            base[a] = p0.to_u32().unwrap_or(0);
        }
        let side = res as usize + 1;
        let dense = side
            .checked_mul(side)
            .and_then(|s| s.checked_mul(side))
            .is_some_and(|s| s <= self.table_size);
        let mask = self.table_size - 1;
        let mut rows = [0usize; 8];
        let mut ws = [T::zero(); 8];
        for (c, (row, w)) in rows.iter_mut().zip(ws.iter_mut()).enumerate() {
            let (dx, dy, dz) = ((c >> 2) & 1, (c >> 1) & 1, c & 1);
            let (i, j, k) = (
                base[0] + dx as u32,
                base[1] + dy as u32,
                base[2] + dz as u32,
            );
            *row = if dense {
                i as usize + j as usize * side + k as usize * side * side
            } else {
                (i ^ j.wrapping_mul(PRIME_Y) ^ k.wrapping_mul(PRIME_Z)) as usize & mask
            };
            let wx = if dx == 1 { frac[0] } else { T::one() - frac[0] };
            let wy = if dy == 1 { frac[1] } else { T::one() - frac[1] };
            let wz = if dz == 1 { frac[2] } else { T::one() - frac[2] };
            *w = wx * wy * wz;
        }
        (rows, ws, frac)
    }

    fn check_points<T: Real>(&self, x: &[T]) -> Result<usize> {
        if x.len() % 3 != 0 {
            return Err(Error::shape(
                "x",
                format!("must have shape [N, 3], got {} values", x.len()),
            ));
        }
        expect_finite("x", x)?;
        Ok(x.len() / 3)
    }

    /// Encodes points `x` `[N, 3]` with `table` `[L, table_size, n_feat]`; returns `[N, L * n_feat]`.
    pub fn forward<T: Real>(&self, x: &[T], table: &[T]) -> Result<Vec<T>> {
        let n = self.check_points(x)?;
        expect_len("table", table.len(), self.table_len())?;
        let (nl, nf, ts) = (self.n_levels(), self.n_feat, self.table_size);
        let width = nl * nf;
        let mut out = vec![T::zero(); n * width];
        if width == 0 {
            return Ok(out);
        }
        crate::parallel::install(|| {
            out.par_chunks_mut(CHUNK * width)
                .zip(x.par_chunks(CHUNK * 3))
                .for_each(|(o, xs)| {
                    // level-major inside a chunk: one level's table stays in cache
                    for lvl in 0..nl {
                        let tab = &table[lvl * ts * nf..(lvl + 1) * ts * nf];
                        for (orow, p) in o.chunks_exact_mut(width).zip(xs.chunks_exact(3)) {
                            let (rows, ws) = self.corners(lvl, p);
                            let dst = &mut orow[lvl * nf..(lvl + 1) * nf];
                            for (r, w) in rows.iter().zip(ws.iter()) {
                                let src = &tab[r * nf..(r + 1) * nf];
                                for (d, s) in dst.iter_mut().zip(src) {
                                    *d += *w * *s;
                                }
                            }
                        }
                    }
                });
        });
        Ok(out)
    }

    /// Gradient of [`HashGrid::forward`] w.r.t. the table, given `v_out` `[N, L * n_feat]`.
    /// Levels run in parallel (each owns its slice of the table), so the sums are deterministic.
    pub fn backward<T: Real>(&self, x: &[T], v_out: &[T]) -> Result<Vec<T>> {
        let n = self.check_points(x)?;
        let (nl, nf, ts) = (self.n_levels(), self.n_feat, self.table_size);
        let width = nl * nf;
        expect_len("v_out", v_out.len(), n * width)?;
        let mut grad = vec![T::zero(); self.table_len()];
        if grad.is_empty() {
            return Ok(grad);
        }
        crate::parallel::install(|| {
            grad.par_chunks_mut(ts * nf)
                .enumerate()
                .for_each(|(lvl, g)| {
                    for (p, go) in x.chunks_exact(3).zip(v_out.chunks_exact(width)) {
                        let src = &go[lvl * nf..(lvl + 1) * nf];
                        if src.iter().all(|v| *v == T::zero()) {
                            continue;
                        }
                        let (rows, ws) = self.corners(lvl, p);
                        for (r, w) in rows.iter().zip(ws.iter()) {
                            for (d, s) in g[r * nf..(r + 1) * nf].iter_mut().zip(src) {
                                *d += *w * *s;
                            }
                        }
                    }
                });
        });
        Ok(grad)
    }

    /// Gradient of [`HashGrid::forward`] w.r.t. the points `x` `[N, 3]`, given the `table` and
    /// `v_out` `[N, L * n_feat]`: the derivative of each level's trilinear blend inside the cell
    /// that holds the point (the encoding is continuous, piecewise trilinear; on a cell face
    /// the cell [`HashGrid::forward`] uses). Zero along an axis where `x` lies outside `[0, 1]`
    /// (clamped there).
    pub fn backward_x<T: Real>(&self, x: &[T], table: &[T], v_out: &[T]) -> Result<Vec<T>> {
        let n = self.check_points(x)?;
        expect_len("table", table.len(), self.table_len())?;
        let (nl, nf, ts) = (self.n_levels(), self.n_feat, self.table_size);
        let width = nl * nf;
        expect_len("v_out", v_out.len(), n * width)?;
        let mut v_x = vec![T::zero(); n * 3];
        if width == 0 || n == 0 {
            return Ok(v_x);
        }
        crate::parallel::install(|| {
            v_x.par_chunks_mut(CHUNK * 3)
                .zip(x.par_chunks(CHUNK * 3))
                .zip(v_out.par_chunks(CHUNK * width))
                .for_each(|((gx, xs), gos)| {
                    for lvl in 0..nl {
                        let tab = &table[lvl * ts * nf..(lvl + 1) * ts * nf];
                        let rf = T::lit(f64::from(self.resolutions[lvl]));
                        let rows_in = gx
                            .chunks_exact_mut(3)
                            .zip(xs.chunks_exact(3))
                            .zip(gos.chunks_exact(width));
                        for ((g, p), go) in rows_in {
                            let src = &go[lvl * nf..(lvl + 1) * nf];
                            if src.iter().all(|v| *v == T::zero()) {
                                continue;
                            }
                            let (rows, _, f) = self.cell(lvl, p);
                            let mut d = [T::zero(); 3];
                            for (c, r) in rows.iter().enumerate() {
                                // v_out · table row: how the output moves with this corner's weight
                                let gc = tab[r * nf..(r + 1) * nf]
                                    .iter()
                                    .zip(src)
                                    .fold(T::zero(), |acc, (t, v)| acc + *t * *v);
                                let bits = [(c >> 2) & 1, (c >> 1) & 1, c & 1];
                                let w: [T; 3] = std::array::from_fn(|a| {
                                    if bits[a] == 1 {
                                        f[a]
                                    } else {
                                        T::one() - f[a]
                                    }
                                });
                                let s: [T; 3] =
                                    std::array::from_fn(|a| if bits[a] == 1 { gc } else { -gc });
                                d[0] += s[0] * w[1] * w[2];
                                d[1] += s[1] * w[0] * w[2];
                                d[2] += s[2] * w[0] * w[1];
                            }
                            for a in 0..3 {
                                if p[a] >= T::zero() && p[a] <= T::one() {
                                    g[a] += d[a] * rf;
                                }
                            }
                        }
                    }
                });
        });
        Ok(v_x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> HashGrid {
        HashGrid::new(vec![2, 5, 40], 64, 2).unwrap()
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(HashGrid::new(vec![4], 100, 2).is_err());
        assert!(HashGrid::new(vec![0], 64, 2).is_err());
        assert!(HashGrid::new(vec![4], 64, 0).is_err());
        let g = grid();
        assert!(g.forward(&[0.5f32; 4], &vec![0.0; g.table_len()]).is_err());
        assert!(g.forward(&[0.5f32; 3], &[0.0; 3]).is_err());
        assert!(g
            .forward(&[f32::NAN, 0.0, 0.0], &vec![0.0; g.table_len()])
            .is_err());
    }

    #[test]
    fn constant_table_gives_constant_encoding() {
        let g = grid();
        let table = vec![0.25f64; g.table_len()];
        let x = [0.1, 0.7, 0.33, 1.0, 0.0, 0.5, -2.0, 3.0, 0.999];
        let out = g.forward(&x, &table).unwrap();
        assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-12));
    }

    #[test]
    fn backward_x_matches_finite_differences() {
        let g = grid();
        let table: Vec<f64> = (0..g.table_len())
            .map(|i| ((i * 7919) % 113) as f64 / 113.0 - 0.5)
            .collect();
        // inside cells (away from faces, where the blend is smooth), and one coordinate clamped
        let x = [
            0.123, 0.711, 0.337, 0.907, 0.052, 0.521, 1.3, 0.4331, 0.2713,
        ];
        let go: Vec<f64> = (0..3 * 6).map(|i| (i as f64 * 0.37).sin()).collect();
        let grad = g.backward_x(&x, &table, &go).unwrap();
        let loss = |p: &[f64]| -> f64 {
            let o = g.forward(p, &table).unwrap();
            o.iter().zip(&go).map(|(a, b)| a * b).sum()
        };
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x, x);
            xp[i] += 1e-7;
            xm[i] -= 1e-7;
            let fd = (loss(&xp) - loss(&xm)) / 2e-7;
            assert!(
                (fd - grad[i]).abs() < 1e-5,
                "coordinate {i}: {fd} vs {}",
                grad[i]
            );
        }
        assert_eq!(grad[6], 0.0); // clamped
        assert!(g.backward_x(&x, &table, &go[1..]).is_err());
        assert!(g.backward_x(&x[..0], &table, &[]).unwrap().is_empty());
    }

    #[test]
    fn backward_matches_finite_differences() {
        let g = grid();
        let table: Vec<f64> = (0..g.table_len())
            .map(|i| ((i * 7919) % 113) as f64 / 113.0 - 0.5)
            .collect();
        let x = [0.12, 0.71, 0.33, 0.9, 0.05, 0.52];
        let go: Vec<f64> = (0..2 * 6).map(|i| (i as f64 * 0.37).sin()).collect();
        let grad = g.backward(&x, &go).unwrap();
        let loss = |t: &[f64]| -> f64 {
            let o = g.forward(&x, t).unwrap();
            o.iter().zip(&go).map(|(a, b)| a * b).sum()
        };
        for i in (0..g.table_len()).step_by(3) {
            let (mut tp, mut tm) = (table.clone(), table.clone());
            tp[i] += 1e-6;
            tm[i] -= 1e-6;
            let fd = (loss(&tp) - loss(&tm)) / 2e-6;
            assert!(
                (fd - grad[i]).abs() < 1e-6,
                "entry {i}: {fd} vs {}",
                grad[i]
            );
        }
    }
}
