//! Ray marching through a cascaded binary occupancy grid (Instant-NGP / nerfacc style).
//!
//! Level `l` covers the base box scaled by `2^l` about its centre, at the same resolution. A
//! point belongs to the finest level whose box contains it. Samples are the uniform steps
//! `t_k = t_start + k * dt` (`dt` grows as `cone_angle * t` when `cone_angle > 0`) whose
//! midpoint falls in an occupied cell; runs of steps inside one empty cell are skipped in one
//! jump using the cell's exit distance.

use rayon::prelude::*;

use crate::check::{expect_finite, expect_len};
use crate::error::{Error, Result};
use crate::isa::{avx2_variant, choose};
use crate::output::Output;
use crate::rays::slab;

/// Geometry of a cascaded occupancy grid.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSpec {
    /// Base (level 0) box `[xmin, ymin, zmin, xmax, ymax, zmax]`.
    pub aabb: [f32; 6],
    /// Cells per axis.
    pub resolution: [usize; 3],
    /// Number of cascade levels (>= 1).
    pub levels: usize,
}

impl GridSpec {
    /// Checks the box and sizes.
    pub fn validate(&self) -> Result<()> {
        if self.levels == 0 {
            return Err(Error::value("levels", "must be at least 1"));
        }
        if self.resolution.contains(&0) {
            return Err(Error::value("resolution", "must be at least 1 per axis"));
        }
        if self.aabb.iter().any(|v| !v.is_finite())
            || (0..3).any(|a| self.aabb[a] >= self.aabb[a + 3])
        {
            return Err(Error::value(
                "aabb",
                "must be finite with min < max on every axis",
            ));
        }
        Ok(())
    }

    /// Number of cells over all levels.
    pub fn n_cells(&self) -> usize {
        self.levels * self.resolution.iter().product::<usize>()
    }

    /// The box of level `l`.
    pub fn level_aabb(&self, l: usize) -> [f32; 6] {
        let s = (1u64 << l) as f32;
        let mut b = [0f32; 6];
        for a in 0..3 {
            let c = 0.5 * (self.aabb[a] + self.aabb[a + 3]);
            let h = 0.5 * (self.aabb[a + 3] - self.aabb[a]) * s;
            b[a] = c - h;
            b[a + 3] = c + h;
        }
        b
    }

    /// Precomputed per-level lookup tables.
    pub fn tables(&self) -> GridTables {
        let mut centre = [0f32; 3];
        let mut inv_half = [0f32; 3];
        for a in 0..3 {
            centre[a] = 0.5 * (self.aabb[a] + self.aabb[a + 3]);
            inv_half[a] = 1.0 / (0.5 * (self.aabb[a + 3] - self.aabb[a]));
        }
        let levels = (0..self.levels)
            .map(|l| {
                let b = self.level_aabb(l);
                let mut lo = [0f32; 3];
                let mut scale = [0f32; 3];
                let mut size = [0f32; 3];
                for a in 0..3 {
                    lo[a] = b[a];
                    scale[a] = self.resolution[a] as f32 / (b[a + 3] - b[a]);
                    size[a] = (b[a + 3] - b[a]) / self.resolution[a] as f32;
                }
                LevelTable {
                    lo,
                    scale,
                    size,
                    aabb: b,
                }
            })
            .collect();
        GridTables {
            centre,
            inv_half,
            levels,
            resolution: self.resolution,
        }
    }
}

/// Lookup constants of one cascade level.
#[derive(Debug, Clone)]
pub struct LevelTable {
    lo: [f32; 3],
    scale: [f32; 3],
    size: [f32; 3],
    aabb: [f32; 6],
}

/// Precomputed lookup constants of a [`GridSpec`] (see [`GridSpec::tables`]).
#[derive(Debug, Clone)]
pub struct GridTables {
    centre: [f32; 3],
    inv_half: [f32; 3],
    levels: Vec<LevelTable>,
    resolution: [usize; 3],
}

impl GridTables {
    /// Level, flat cell index and cell coordinates of point `x`; `None` outside the coarsest box.
    ///
    /// Level = smallest `l` with `max_a |x_a - c_a| / h_a < 2^l`; cell = `floor((x - lo_l) *
    /// res / extent_l)` clamped (the torch twin uses the same arithmetic).
    #[inline]
    pub fn locate(&self, x: [f32; 3]) -> Option<(usize, usize, [usize; 3])> {
        let mut m = 0f32;
        for ((xa, ca), ia) in x.iter().zip(&self.centre).zip(&self.inv_half) {
            m = m.max((xa - ca).abs() * ia);
        }
        if !m.is_finite() {
            return None;
        }
        let mut level = 0usize;
        let mut bound = 1f32;
        while m >= bound {
            level += 1;
            bound *= 2.0;
            if level >= self.levels.len() {
                return None;
            }
        }
        let t = &self.levels[level];
        let mut ijk = [0usize; 3];
        for a in 0..3 {
            let f = (x[a] - t.lo[a]) * t.scale[a];
            ijk[a] = (f.max(0.0) as usize).min(self.resolution[a] - 1);
        }
        let [rx, ry, rz] = self.resolution;
        Some((
            level,
            level * rx * ry * rz + (ijk[0] * ry + ijk[1]) * rz + ijk[2],
            ijk,
        ))
    }

    /// Distance at which a ray (origin `o`, inverse direction `inv_d`) leaves cell `ijk`.
    #[inline]
    fn cell_exit(&self, level: usize, ijk: [usize; 3], o: [f32; 3], inv_d: [f32; 3]) -> f32 {
        let t = &self.levels[level];
        let mut exit = f32::INFINITY;
        for a in 0..3 {
            if inv_d[a].is_finite() {
                let lo = t.lo[a] + t.size[a] * ijk[a] as f32;
                let bound = if inv_d[a] > 0.0 { lo + t.size[a] } else { lo };
                exit = exit.min((bound - o[a]) * inv_d[a]);
            }
        }
        exit
    }
}

/// Occupancy packed into bits (64x smaller than `bool`s, so a 128^3 grid fits in L2 cache).
struct Bits(Vec<u64>);

impl Bits {
    fn pack(binaries: &[bool]) -> Self {
        let words = crate::parallel::install(|| {
            binaries
                .par_chunks(64)
                .map(|c| {
                    if c.len() == 64 {
                        // 8 bools (bytes 0 / 1) at a time: the multiply gathers their low bits
                        // into the top byte.
                        c.chunks_exact(8).enumerate().fold(0u64, |acc, (q, b)| {
                            let bytes = u64::from_le_bytes(std::array::from_fn(|i| u8::from(b[i])));
                            let packed = bytes.wrapping_mul(0x0102_0408_1020_4080) >> 56;
                            acc | (packed << (8 * q))
                        })
                    } else {
                        c.iter()
                            .enumerate()
                            .fold(0u64, |acc, (i, &b)| acc | (u64::from(b) << i))
                    }
                })
                .collect()
        });
        Bits(words)
    }

    #[inline]
    fn get(&self, i: usize) -> bool {
        (self.0[i >> 6] >> (i & 63)) & 1 == 1
    }
}

/// Receives the samples of one ray, in order.
trait Sink {
    fn emit(&mut self, t_start: f32, t_end: f32);
}

/// Appends samples of consecutive rays to growable buffers: ray indices as runs, and interval
/// ends only when steps vary (uniform steps end at `t_start + step`).
#[derive(Default)]
struct Push {
    ray: i64,
    /// `(ray, number of samples)` in order.
    runs: Vec<(i64, u32)>,
    t_starts: Vec<f32>,
    /// Interval ends, kept only for non-uniform steps.
    t_ends: Option<Vec<f32>>,
}

impl Push {
    fn new(uniform: bool) -> Self {
        Push {
            t_ends: (!uniform).then(Vec::new),
            ..Push::default()
        }
    }

    fn len(&self) -> usize {
        self.t_starts.len()
    }
}

impl Sink for Push {
    #[inline]
    fn emit(&mut self, t_start: f32, t_end: f32) {
        match self.runs.last_mut() {
            Some((ray, count)) if *ray == self.ray => *count += 1,
            _ => self.runs.push((self.ray, 1)),
        }
        self.t_starts.push(t_start);
        if let Some(ends) = &mut self.t_ends {
            ends.push(t_end);
        }
    }
}

/// Marching parameters shared by all rays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarchParams {
    /// Minimum step size.
    pub step: f32,
    /// Step growth with distance (`dt = max(step, cone_angle * t)`), 0 for uniform steps.
    pub cone_angle: f32,
}

/// Packed output of [`march`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Marched {
    /// Ray of each sample, sorted.
    pub ray_indices: Vec<i64>,
    /// Interval starts.
    pub t_starts: Vec<f32>,
    /// Interval ends.
    pub t_ends: Vec<f32>,
}

#[inline]
fn step_size(t: f32, p: &MarchParams) -> f32 {
    if p.cone_angle > 0.0 {
        (t * p.cone_angle).clamp(p.step, 1e10)
    } else {
        p.step
    }
}

/// Marches every ray through the occupied cells of `binaries` (`[levels, rx, ry, rz]`).
///
/// `near` / `far` hold one value per ray or a single shared value; `jitter` (one value in
/// `[0, 1)` per ray) shifts the first step by `jitter * step` for stratified sampling.
#[allow(clippy::too_many_arguments)]
pub fn march(
    origins: &[f32],
    directions: &[f32],
    near: &[f32],
    far: &[f32],
    binaries: &[bool],
    spec: &GridSpec,
    params: MarchParams,
    jitter: Option<&[f32]>,
) -> Result<Marched> {
    spec.validate()?;
    if origins.len() % 3 != 0 {
        return Err(Error::shape("origins", "length must be a multiple of 3"));
    }
    let n = origins.len() / 3;
    expect_len("directions", directions.len(), origins.len())?;
    expect_len("binaries", binaries.len(), spec.n_cells())?;
    for (name, v) in [("near", near), ("far", far)] {
        if v.len() != 1 && v.len() != n {
            return Err(Error::shape(
                name,
                format!("expected 1 or {n} values, got {}", v.len()),
            ));
        }
    }
    if let Some(j) = jitter {
        expect_len("jitter", j.len(), n)?;
    }
    if params.step.is_nan() || params.step <= 0.0 || !params.step.is_finite() {
        return Err(Error::value(
            "render_step_size",
            "must be a positive finite number",
        ));
    }
    if params.cone_angle.is_nan() || params.cone_angle < 0.0 || !params.cone_angle.is_finite() {
        return Err(Error::value(
            "cone_angle",
            "must be a non-negative finite number",
        ));
    }
    expect_finite("origins", origins)?;
    expect_finite("directions", directions)?;
    expect_finite("near", near)?;
    if far.iter().any(|v| v.is_nan()) {
        return Err(Error::value("far", "contains NaN"));
    }
    let tables = spec.tables();
    let bits = Bits::pack(binaries);
    let hier =
        (spec.levels == 1 && params.cone_angle <= 0.0).then(|| Hierarchy::new(&tables, binaries));
    let outer = spec.level_aabb(spec.levels - 1);
    let ctx = RayMarcher {
        origins,
        directions,
        near,
        far,
        jitter,
        outer,
        bits,
        tables,
        hier,
        params,
    };
    // One pass per chunk of rays into growable buffers, then one parallel copy into the output
    // (measured faster than a count pass followed by a fill pass).
    let uniform = params.cone_angle <= 0.0;
    let chunks: Vec<Push> = crate::parallel::install(|| {
        let chunk = (n / (crate::parallel::num_threads() * 16)).clamp(64, 4096);
        (0..n.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                let mut out = Push::new(uniform);
                for r in c * chunk..((c + 1) * chunk).min(n) {
                    out.ray = r as i64;
                    ctx.ray(r, &mut out);
                }
                out
            })
            .collect()
    });
    Ok(concat(chunks, params.step))
}

/// Concatenates per-chunk outputs into one packed result, copying chunks in parallel; uniform
/// steps (`t_ends` not kept) end at `t_start + step`, exactly as they were emitted.
fn concat(chunks: Vec<Push>, step: f32) -> Marched {
    let total: usize = chunks.iter().map(Push::len).sum();
    let (mut ri_out, mut ts_out, mut te_out) = (
        Output::<i64>::new(total),
        Output::<f32>::new(total),
        Output::<f32>::new(total),
    );
    let (pr, ps, pe) = (ri_out.pieces(), ts_out.pieces(), te_out.pieces());
    let mut starts = Vec::with_capacity(chunks.len());
    let mut acc = 0usize;
    for c in &chunks {
        starts.push(acc);
        acc += c.len();
    }
    crate::parallel::install(|| {
        chunks
            .par_iter()
            .zip(starts.par_iter())
            .for_each(|(c, &s0)| {
                let rg = s0..s0 + c.len();
                // SAFETY: chunk ranges are disjoint.
                let (ri, ts, te) =
                    unsafe { (pr.claim(rg.clone()), ps.claim(rg.clone()), pe.claim(rg)) };
                ts.copy_from_slice(&c.t_starts);
                match &c.t_ends {
                    Some(ends) => te.copy_from_slice(ends),
                    None => {
                        for (e, &t) in te.iter_mut().zip(&c.t_starts) {
                            *e = t + step;
                        }
                    }
                }
                let mut at = 0;
                for &(ray, count) in &c.runs {
                    ri[at..at + count as usize].fill(ray);
                    at += count as usize;
                }
            });
    });
    // SAFETY: the chunks' ranges tile 0..total.
    unsafe {
        Marched {
            ray_indices: ri_out.finish(),
            t_starts: ts_out.finish(),
            t_ends: te_out.finish(),
        }
    }
}

/// Everything one ray's march needs; `ray` is generic over the sample sink so both passes inline.
struct RayMarcher<'a> {
    origins: &'a [f32],
    directions: &'a [f32],
    near: &'a [f32],
    far: &'a [f32],
    jitter: Option<&'a [f32]>,
    outer: [f32; 6],
    bits: Bits,
    tables: GridTables,
    hier: Option<Hierarchy>,
    params: MarchParams,
}

impl RayMarcher<'_> {
    #[inline]
    fn ray<S: Sink>(&self, r: usize, out: &mut S) {
        let (origins, directions) = (self.origins, self.directions);
        let o = [origins[3 * r], origins[3 * r + 1], origins[3 * r + 2]];
        let d = [
            directions[3 * r],
            directions[3 * r + 1],
            directions[3 * r + 2],
        ];
        let (t0, t1) = slab(o, d, &self.outer);
        let t_lo = t0.max(self.near[if self.near.len() == 1 { 0 } else { r }]);
        let t_hi = t1.min(self.far[if self.far.len() == 1 { 0 } else { r }]);
        if t_hi.partial_cmp(&t_lo) != Some(std::cmp::Ordering::Greater) {
            return;
        }
        let t_start = t_lo + self.jitter.map_or(0.0, |j| j[r]) * self.params.step;
        match &self.hier {
            Some(hier) => march_ray_dda(
                o,
                d,
                t_start,
                t_hi,
                &self.bits,
                &self.tables,
                hier,
                self.params.step,
                out,
            ),
            None => march_ray(
                o,
                d,
                t_start,
                t_hi,
                &self.bits,
                &self.tables,
                &self.params,
                out,
            ),
        }
    }
}

/// Side length, in cells, of the blocks of the coarse occupancy mask used to skip empty space.
const BLOCK: usize = 8;

/// A regular 3-D grid for [`dda`]: `lo + size * ijk` are cell corners, `cells` per axis.
#[derive(Debug, Clone, Copy)]
struct DdaGrid {
    lo: [f32; 3],
    size: [f32; 3],
    scale: [f32; 3],
    cells: [i64; 3],
}

/// Visits the cells of `g` that the ray `o + t d` crosses for `t` in `[t0, t1)`, in order, as
/// `visit(ijk, t_in, t_out)`, until the ray leaves the grid or `visit` returns `false`.
#[inline]
fn dda(
    g: &DdaGrid,
    o: [f32; 3],
    d: [f32; 3],
    t0: f32,
    t1: f32,
    mut visit: impl FnMut([i64; 3], f32, f32) -> bool,
) {
    // Per axis: cell index, direction, distance to the next face. Plain scalars (not arrays
    // indexed by the axis) keep the loop in registers.
    let init = |a: usize| -> (i64, i64, f32, f32) {
        let p = o[a] + t0 * d[a];
        let c = ((p - g.lo[a]) * g.scale[a]).floor();
        let i = (c.max(0.0) as i64).clamp(0, g.cells[a] - 1);
        let dir = if d[a] > 0.0 {
            1
        } else if d[a] < 0.0 {
            -1
        } else {
            0
        };
        let inv = if d[a] != 0.0 { 1.0 / d[a] } else { 0.0 };
        (i, dir, inv, face_time(g, a, i, dir, o[a], inv))
    };
    let (mut ix, sx, inv_x, mut tx) = init(0);
    let (mut iy, sy, inv_y, mut ty) = init(1);
    let (mut iz, sz, inv_z, mut tz) = init(2);
    let mut t_in = t0;
    loop {
        let t_out = tx.min(ty).min(tz).min(t1);
        if !visit([ix, iy, iz], t_in, t_out) || t_out >= t1 {
            return;
        }
        t_in = t_out;
        if tx <= ty && tx <= tz {
            ix += sx;
            if ix < 0 || ix >= g.cells[0] {
                return;
            }
            tx = face_time(g, 0, ix, sx, o[0], inv_x);
        } else if ty <= tz {
            iy += sy;
            if iy < 0 || iy >= g.cells[1] {
                return;
            }
            ty = face_time(g, 1, iy, sy, o[1], inv_y);
        } else {
            iz += sz;
            if iz < 0 || iz >= g.cells[2] {
                return;
            }
            tz = face_time(g, 2, iz, sz, o[2], inv_z);
        }
    }
}

/// Distance along axis `a` to the face through which cell `i` is left (infinite if `dir == 0`).
#[inline]
fn face_time(g: &DdaGrid, a: usize, i: i64, dir: i64, o: f32, inv_d: f32) -> f32 {
    if dir == 0 {
        return f32::INFINITY;
    }
    let face = g.lo[a] + g.size[a] * (i + i64::from(dir > 0)) as f32;
    (face - o) * inv_d
}

/// Coarse blocks of a single-level grid, for empty-space skipping.
struct Hierarchy {
    coarse: DdaGrid,
    /// Whether each coarse block holds at least one occupied cell.
    blocks: Vec<bool>,
}

impl Hierarchy {
    fn new(tables: &GridTables, binaries: &[bool]) -> Self {
        let lv = &tables.levels[0];
        let res = tables.resolution;
        let nb = res.map(|r| r.div_ceil(BLOCK));
        let bsize = lv.size.map(|s| s * BLOCK as f32);
        let coarse = DdaGrid {
            lo: lv.lo,
            size: bsize,
            scale: bsize.map(|s| 1.0 / s),
            cells: nb.map(|n| n as i64),
        };
        // One pass over the cells, a block-row (8 x-slices) per task; 8 z-neighbours are tested
        // as one 64-bit word.
        let mut blocks = vec![false; nb[0] * nb[1] * nb[2]];
        let (ry, rz) = (res[1], res[2]);
        crate::parallel::install(|| {
            blocks
                .par_chunks_mut(nb[1] * nb[2])
                .enumerate()
                .for_each(|(bx, plane)| {
                    for i in bx * BLOCK..((bx + 1) * BLOCK).min(res[0]) {
                        for j in 0..ry {
                            let row = &binaries[(i * ry + j) * rz..(i * ry + j + 1) * rz];
                            let out = &mut plane[(j / BLOCK) * nb[2]..(j / BLOCK + 1) * nb[2]];
                            for (o, cells) in out.iter_mut().zip(row.chunks(BLOCK)) {
                                *o |= any_true(cells);
                            }
                        }
                    }
                });
        });
        Hierarchy { coarse, blocks }
    }
}

/// Whether any of `cells` is set.
#[inline]
fn any_true(cells: &[bool]) -> bool {
    if let Ok(eight) = <[bool; 8]>::try_from(cells) {
        u64::from_le_bytes(eight.map(u8::from)) != 0
    } else {
        cells.iter().any(|&b| b)
    }
}

/// Single-level, uniform-step marching: a 3-D DDA (Amanatides & Woo) over 8^3 blocks crosses
/// empty blocks in one step; inside occupied blocks every step's midpoint gets the same point
/// lookup as the brute-force definition, so the result equals the step-by-step march exactly.
/// (Per-step lookups are cheaper than a cell-level DDA here: steps are a few per cell, and the
/// lookup is branch-free where the DDA's axis choice mispredicts.)
#[allow(clippy::too_many_arguments)]
fn march_ray_dda(
    o: [f32; 3],
    d: [f32; 3],
    t_start: f32,
    t_hi: f32,
    binaries: &Bits,
    tables: &GridTables,
    hier: &Hierarchy,
    step: f32,
    out: &mut impl Sink,
) {
    let [_, nby, nbz] = hier.coarse.cells;
    // Steps whose midpoint lies within `margin` of a block are tried by that block too, so
    // rounding in the block walk never loses one; `next_k` keeps each step to one try.
    let margin = 0.01 * step;
    let half = 0.5 * step;
    let inv_step = 1.0 / step;
    let mut next_k: i64 = 0;
    let mut flat = [0u32; BATCH];
    let lookup: LookupSteps = choose!(lookup_steps, lookup_steps_avx2);
    dda(&hier.coarse, o, d, t_start, t_hi, |b, t_in, t_out| {
        if !hier.blocks[((b[0] * nby + b[1]) * nbz + b[2]) as usize] {
            return true;
        }
        let k_lo = ((t_in - margin - t_start - half) * inv_step)
            .ceil()
            .max(0.0) as i64;
        let k_hi = ((t_out + margin - t_start - half) * inv_step).floor() as i64;
        let mut k = k_lo.max(next_k);
        while k <= k_hi {
            let len = ((k_hi - k + 1) as usize).min(BATCH);
            let ray = RayConst {
                o,
                d,
                t_start,
                step,
            };
            // SAFETY: `lookup` only picks AVX2 code on CPUs that have it.
            unsafe { lookup(&ray, tables, k, &mut flat[..len]) };
            for (j, &f) in flat[..len].iter().enumerate() {
                let t = t_start + (k + j as i64) as f32 * step;
                if t + half >= t_hi {
                    return false;
                }
                if f != OUTSIDE && binaries.get(f as usize) {
                    out.emit(t, t + step);
                }
            }
            k += len as i64;
        }
        next_k = next_k.max(k);
        true
    });
}

/// Steps whose cells are looked up together (the lookups vectorise).
const BATCH: usize = 64;
/// Flat index of a point outside the grid.
const OUTSIDE: u32 = u32::MAX;

/// One ray's step arithmetic: step `k` starts at `t_start + k * step`.
#[derive(Clone, Copy)]
struct RayConst {
    o: [f32; 3],
    d: [f32; 3],
    t_start: f32,
    step: f32,
}

/// A compiled variant of [`lookup_steps`].
type LookupSteps = unsafe fn(&RayConst, &GridTables, i64, &mut [u32]);

avx2_variant!(lookup_steps_avx2 => lookup_steps,
    (ray: &RayConst, tables: &GridTables, k0: i64, flat: &mut [u32]) -> ());

/// Level-0 flat cell index ([`OUTSIDE`] if none) of the midpoints of steps `k0, k0 + 1, ...`:
/// [`GridTables::locate_level0`]'s arithmetic, branch-free so the loop vectorises.
#[inline(always)]
fn lookup_steps(ray: &RayConst, tables: &GridTables, k0: i64, flat: &mut [u32]) {
    let RayConst {
        o,
        d,
        t_start,
        step,
    } = *ray;
    let half = 0.5 * step;
    let lv = &tables.levels[0];
    let (c, ih, lo, sc) = (tables.centre, tables.inv_half, lv.lo, lv.scale);
    let top = tables.resolution.map(|r| (r - 1) as f32);
    let [_, ry, rz] = tables.resolution.map(|r| r as u32);
    for (j, f) in flat.iter_mut().enumerate() {
        let mid = t_start + (k0 + j as i64) as f32 * step + half;
        let x = [o[0] + mid * d[0], o[1] + mid * d[1], o[2] + mid * d[2]];
        let m = ((x[0] - c[0]).abs() * ih[0])
            .max((x[1] - c[1]).abs() * ih[1])
            .max((x[2] - c[2]).abs() * ih[2]);
        // SAFETY (all three): clamped into [0, res - 1] first (NaN becomes 0 by `max`).
        let cell = |a: usize| -> u32 {
            let v = ((x[a] - lo[a]) * sc[a]).max(0.0).min(top[a]);
            unsafe { v.to_int_unchecked::<u32>() }
        };
        let idx = (cell(0) * ry + cell(1)) * rz + cell(2);
        *f = if m < 1.0 { idx } else { OUTSIDE };
    }
}

#[allow(clippy::too_many_arguments)]
fn march_ray(
    o: [f32; 3],
    d: [f32; 3],
    t_start: f32,
    t_hi: f32,
    binaries: &Bits,
    tables: &GridTables,
    p: &MarchParams,
    out: &mut impl Sink,
) {
    let uniform = p.cone_angle <= 0.0;
    let inv_d = d.map(|v| if v != 0.0 { 1.0 / v } else { f32::INFINITY });
    let mut k: u64 = 0; // step counter for uniform steps (t = t_start + k * step, no drift)
    let mut t = t_start;
    loop {
        if uniform {
            t = t_start + k as f32 * p.step;
        }
        let dt = step_size(t, p);
        let mid = t + 0.5 * dt;
        if mid.partial_cmp(&t_hi) != Some(std::cmp::Ordering::Less) {
            break;
        }
        let x = [o[0] + mid * d[0], o[1] + mid * d[1], o[2] + mid * d[2]];
        let Some((level, flat, ijk)) = tables.locate(x) else {
            k += 1;
            t += dt;
            continue;
        };
        if binaries.get(flat) {
            out.emit(t, t + dt);
            k += 1;
            t += dt;
            continue;
        }
        // Empty cell: leave it where the ray exits the cell or enters the next finer level.
        let mut t_exit = tables.cell_exit(level, ijk, o, inv_d);
        if level > 0 {
            let (t_in, t_out) = slab(o, d, &tables.levels[level - 1].aabb);
            if t_out >= t_in && t_in > mid {
                t_exit = t_exit.min(t_in);
            }
        }
        let t_exit = t_exit.min(t_hi);
        if uniform {
            // Jump over the steps whose midpoint is surely inside this cell, and re-test the
            // last one before the exit (it may sit on the boundary after rounding).
            let gap = ((t_exit - mid) / p.step).ceil();
            let jump = if gap.is_finite() && gap > 2.0 {
                gap as u64 - 1
            } else {
                1
            };
            k += jump;
        } else {
            // Conical steps: advance step by step (cheap arithmetic, no lookups).
            let mut steps = 0;
            loop {
                t += step_size(t, p);
                steps += 1;
                let next_mid = t + 0.5 * step_size(t, p);
                if next_mid >= t_exit - step_size(t, p) || steps > 1 << 20 {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(levels: usize) -> GridSpec {
        GridSpec {
            aabb: [-1., -1., -1., 1., 1., 1.],
            resolution: [8, 8, 8],
            levels,
        }
    }

    #[test]
    fn bit_packing_and_block_mask_match_the_cells() {
        for res in [[16usize, 16, 16], [13, 9, 70], [1, 1, 1]] {
            let n = res[0] * res[1] * res[2];
            let cells: Vec<bool> = (0..n).map(|i| (i * 2_654_435_761usize) % 97 < 3).collect();
            let bits = Bits::pack(&cells);
            assert!((0..n).all(|i| bits.get(i) == cells[i]));
            let g = GridSpec {
                aabb: [0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
                resolution: res,
                levels: 1,
            };
            let hier = Hierarchy::new(&g.tables(), &cells);
            let nb = res.map(|r| r.div_ceil(BLOCK));
            for (b, &occupied) in hier.blocks.iter().enumerate() {
                let (bx, by, bz) = (b / (nb[1] * nb[2]), (b / nb[2]) % nb[1], b % nb[2]);
                let want = (0..n).any(|i| {
                    let (x, y, z) = (i / (res[1] * res[2]), (i / res[2]) % res[1], i % res[2]);
                    cells[i] && x / BLOCK == bx && y / BLOCK == by && z / BLOCK == bz
                });
                assert_eq!(occupied, want, "res {res:?} block {b}");
            }
        }
    }

    #[test]
    fn full_grid_gives_uniform_steps() {
        let s = spec(1);
        let b = vec![true; s.n_cells()];
        let m = march(
            &[0., 0., -3.],
            &[0., 0., 1.],
            &[0.0],
            &[1e10],
            &b,
            &s,
            MarchParams {
                step: 0.1,
                cone_angle: 0.0,
            },
            None,
        )
        .unwrap();
        assert_eq!(m.t_starts.len(), 20);
        for (a, b) in m.t_starts.iter().zip(&m.t_ends) {
            assert!((b - a - 0.1).abs() < 1e-6);
        }
    }

    #[test]
    fn empty_grid_gives_nothing() {
        let s = spec(2);
        let b = vec![false; s.n_cells()];
        let m = march(
            &[0., 0., -3.],
            &[0., 0., 1.],
            &[0.0],
            &[1e10],
            &b,
            &s,
            MarchParams {
                step: 0.01,
                cone_angle: 0.0,
            },
            None,
        )
        .unwrap();
        assert!(m.t_starts.is_empty());
    }

    #[test]
    fn locate_picks_finest_level() {
        let s = spec(3).tables();
        assert_eq!(s.locate([0.5, 0.0, 0.0]).unwrap().0, 0);
        assert_eq!(s.locate([1.5, 0.0, 0.0]).unwrap().0, 1);
        assert_eq!(s.locate([-3.0, 0.0, 0.0]).unwrap().0, 2);
        assert!(s.locate([4.5, 0.0, 0.0]).is_none());
    }

    #[test]
    fn cone_steps_grow() {
        let s = spec(4);
        let b = vec![true; s.n_cells()];
        let m = march(
            &[0., 0., 0.],
            &[1., 0., 0.],
            &[0.1],
            &[1e10],
            &b,
            &s,
            MarchParams {
                step: 0.01,
                cone_angle: 0.1,
            },
            None,
        )
        .unwrap();
        for i in 0..m.t_starts.len() {
            let dt = m.t_ends[i] - m.t_starts[i];
            assert!((dt - (0.1 * m.t_starts[i]).max(0.01)).abs() < 1e-5);
        }
    }
}
