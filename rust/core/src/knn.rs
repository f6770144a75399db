//! Exact k-nearest-neighbour search over 3-D points with a kd-tree.
//!
//! Conventions shared by every entry point:
//! - points and queries are flat row-major `[n, 3]` `f32` slices;
//! - distances are Euclidean (not squared), computed in `f64` from the `f32` coordinates and
//!   rounded to `f32` once at the end;
//! - each result row is sorted by `(distance, index)`: equal distances go to the lower index;
//! - when the queries are the points themselves (`queries == None`), row `i` starts with `i`
//!   itself at distance 0 followed by the `k - 1` nearest *other* points, or, with
//!   `exclude_self`, holds the `k` nearest other points.
//!
//! The tree splits at the median of the axis of widest spread (balanced, leaves of at most
//! [`LEAF_SIZE`] points), is built in parallel and queried in parallel on raysplat's pool. Every
//! node stores the smallest point index below it, so ties (duplicate points, all points
//! identical) are pruned exactly and cost `O(log n)` per query rather than `O(n)`.

use rayon::prelude::*;

use crate::check::expect_finite;
use crate::error::{Error, Result};

/// Maximum number of points in a leaf.
pub const LEAF_SIZE: usize = 12;
/// Subtrees with fewer points than this are built sequentially.
const PAR_BUILD_MIN: usize = 1 << 15;
/// Queries per parallel task.
const QUERY_CHUNK: usize = 256;
/// Marker of a leaf in [`Node::dim`].
const LEAF: u8 = 3;
/// "No index to skip" (point indices are always smaller).
const NO_SKIP: u32 = u32::MAX;

/// Neighbours of `m` queries: `[m, k]` row-major, each row sorted ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Knn {
    /// Euclidean distances.
    pub distances: Vec<f32>,
    /// Indices into the points.
    pub indices: Vec<i64>,
    /// Neighbours per query.
    pub k: usize,
}

impl Knn {
    fn empty(k: usize) -> Self {
        Knn {
            distances: Vec::new(),
            indices: Vec::new(),
            k,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    p: [f32; 3],
    id: u32,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Split coordinate (inner nodes).
    split: f32,
    /// Split axis, or [`LEAF`].
    dim: u8,
    /// Offset from this node to its right child (the left child is the next node).
    right: u32,
    /// Entry range of a leaf.
    lo: u32,
    hi: u32,
    /// Smallest point index in the subtree.
    min_id: u32,
}

/// An immutable kd-tree over a fixed set of 3-D points.
#[derive(Debug, Clone)]
pub struct KdTree {
    entries: Vec<Entry>,
    nodes: Vec<Node>,
}

fn points_count(name: &'static str, data: &[f32]) -> Result<usize> {
    if data.len() % 3 != 0 {
        return Err(Error::shape(
            name,
            format!(
                "expected shape (n, 3), got {} values (not a multiple of 3)",
                data.len()
            ),
        ));
    }
    expect_finite(name, data)?;
    Ok(data.len() / 3)
}

/// Validates the arguments of [`knn`]; returns `(n, m)`.
fn validate(
    points: &[f32],
    queries: Option<&[f32]>,
    k: usize,
    exclude_self: bool,
) -> Result<(usize, usize)> {
    let n = points_count("points", points)?;
    if n >= NO_SKIP as usize {
        return Err(Error::shape(
            "points",
            format!("at most {} points are supported, got {n}", NO_SKIP - 1),
        ));
    }
    let m = match queries {
        Some(q) => points_count("queries", q)?,
        None => n,
    };
    if k == 0 {
        return Err(Error::value("k", "must be at least 1, got 0"));
    }
    if exclude_self && queries.is_some() {
        return Err(Error::value(
            "exclude_self",
            "only applies when queries is None",
        ));
    }
    let available = if exclude_self { n.saturating_sub(1) } else { n };
    if m > 0 && k > available {
        let what = if exclude_self {
            "the number of other points N - 1"
        } else {
            "the number of points N"
        };
        return Err(Error::value(
            "k",
            format!("k={k} exceeds {what} = {available}"),
        ));
    }
    Ok((n, m))
}

/// Exact k nearest neighbours of `queries` (or of every point, when `None`) among `points`.
///
/// See the module docs for the ordering and self-match rules. Errors: `points`/`queries` not
/// `[n, 3]` or not finite; `k == 0`; `k` larger than the number of candidates (`n`, or `n - 1`
/// with `exclude_self`) while there is at least one query; `exclude_self` with explicit queries.
pub fn knn(points: &[f32], queries: Option<&[f32]>, k: usize, exclude_self: bool) -> Result<Knn> {
    let (_, m) = validate(points, queries, k, exclude_self)?;
    if m == 0 {
        return Ok(Knn::empty(k));
    }
    Ok(crate::parallel::install(|| {
        let tree = KdTree::build(points);
        match queries {
            Some(q) => tree.search_all(q, k),
            None => tree.search_self(k, exclude_self),
        }
    }))
}

/// Brute-force `O(n·m)` twin of [`knn`] with the same validation and result: the oracle of the
/// tests. Runs in parallel over the queries.
pub fn knn_brute(
    points: &[f32],
    queries: Option<&[f32]>,
    k: usize,
    exclude_self: bool,
) -> Result<Knn> {
    let (n, m) = validate(points, queries, k, exclude_self)?;
    if m == 0 {
        return Ok(Knn::empty(k));
    }
    let self_query = queries.is_none();
    let q = queries.unwrap_or(points);
    let mut distances = vec![0f32; m * k];
    let mut indices = vec![0i64; m * k];
    crate::parallel::install(|| {
        distances
            .par_chunks_mut(k)
            .zip(indices.par_chunks_mut(k))
            .enumerate()
            .for_each(|(i, (dr, ir))| {
                let qi = [q[3 * i] as f64, q[3 * i + 1] as f64, q[3 * i + 2] as f64];
                let mut all: Vec<(f64, u32)> = (0..n)
                    .filter(|&j| !(self_query && j == i))
                    .map(|j| {
                        (
                            dist2(&qi, &[points[3 * j], points[3 * j + 1], points[3 * j + 2]]),
                            j as u32,
                        )
                    })
                    .collect();
                let head = usize::from(self_query && !exclude_self);
                let cmp = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
                if k - head < all.len() {
                    all.select_nth_unstable_by(k - head, cmp);
                    all.truncate(k - head);
                }
                all.sort_unstable_by(cmp);
                if head == 1 {
                    dr[0] = 0.0;
                    ir[0] = i as i64;
                }
                for (s, &(d2, j)) in all.iter().take(k - head).enumerate() {
                    dr[head + s] = d2.sqrt() as f32;
                    ir[head + s] = j as i64;
                }
            });
    });
    Ok(Knn {
        distances,
        indices,
        k,
    })
}

/// Squared distance in `f64`, summed as `(dx² + dy²) + dz²`.
#[inline(always)]
fn dist2(q: &[f64; 3], p: &[f32; 3]) -> f64 {
    let dx = q[0] - p[0] as f64;
    let dy = q[1] - p[1] as f64;
    let dz = q[2] - p[2] as f64;
    dx * dx + dy * dy + dz * dz
}

/// The `k` best `(d², index)` pairs seen so far, kept sorted.
struct Best {
    k: usize,
    d: Vec<f64>,
    i: Vec<u32>,
    /// The current k-th best (or +inf / MAX while fewer than `k` are known).
    wd: f64,
    wi: u32,
    skip: u32,
}

impl Best {
    fn new(k: usize) -> Self {
        Best {
            k,
            d: Vec::with_capacity(k),
            i: Vec::with_capacity(k),
            wd: f64::INFINITY,
            wi: u32::MAX,
            skip: NO_SKIP,
        }
    }

    fn reset(&mut self, skip: u32) {
        self.d.clear();
        self.i.clear();
        self.wd = f64::INFINITY;
        self.wi = u32::MAX;
        self.skip = skip;
    }

    /// Whether `(d2, id)` beats the current k-th best.
    #[inline(always)]
    fn beats(&self, d2: f64, id: u32) -> bool {
        d2 < self.wd || (d2 == self.wd && id < self.wi)
    }

    #[inline]
    fn push(&mut self, d2: f64, id: u32) {
        if id == self.skip {
            return;
        }
        if self.d.len() == self.k {
            self.d.pop();
            self.i.pop();
        }
        let mut j = self.d.len();
        while j > 0 && (self.d[j - 1] > d2 || (self.d[j - 1] == d2 && self.i[j - 1] > id)) {
            j -= 1;
        }
        self.d.insert(j, d2);
        self.i.insert(j, id);
        if self.d.len() == self.k {
            self.wd = self.d[self.k - 1];
            self.wi = self.i[self.k - 1];
        }
    }
}

/// Index of the axis with the widest spread (lowest axis on ties).
fn widest_axis(entries: &[Entry]) -> usize {
    let fold = |(mut lo, mut hi): ([f32; 3], [f32; 3]), e: &Entry| {
        for a in 0..3 {
            lo[a] = lo[a].min(e.p[a]);
            hi[a] = hi[a].max(e.p[a]);
        }
        (lo, hi)
    };
    let init = ([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]);
    let merge = |a: ([f32; 3], [f32; 3]), b: ([f32; 3], [f32; 3])| {
        let mut r = a;
        for ax in 0..3 {
            r.0[ax] = a.0[ax].min(b.0[ax]);
            r.1[ax] = a.1[ax].max(b.1[ax]);
        }
        r
    };
    let (lo, hi) = if entries.len() >= PAR_BUILD_MIN {
        entries
            .par_chunks(1 << 13)
            .map(|c| c.iter().fold(init, fold))
            .reduce(|| init, merge)
    } else {
        entries.iter().fold(init, fold)
    };
    let mut best = 0;
    let mut spread = f64::NEG_INFINITY;
    for a in 0..3 {
        let s = hi[a] as f64 - lo[a] as f64;
        if s > spread {
            spread = s;
            best = a;
        }
    }
    best
}

/// Partitions `entries` around its median along the widest axis: the first `len / 2` entries
/// are the smallest by `(coordinate, index)`. Returns `(axis, split coordinate)`.
fn partition(entries: &mut [Entry]) -> (usize, f32) {
    let dim = widest_axis(entries);
    let mid = entries.len() / 2;
    entries.select_nth_unstable_by(mid, |a, b| {
        a.p[dim].total_cmp(&b.p[dim]).then(a.id.cmp(&b.id))
    });
    (dim, entries[mid].p[dim])
}

fn leaf(entries: &[Entry], base: usize) -> Node {
    let min_id = entries.iter().map(|e| e.id).min().unwrap_or(u32::MAX);
    Node {
        split: 0.0,
        dim: LEAF,
        right: 0,
        lo: base as u32,
        hi: (base + entries.len()) as u32,
        min_id,
    }
}

/// Appends the subtree over `entries` (which start at position `base`) to `out` in pre-order.
fn build_seq(entries: &mut [Entry], base: usize, out: &mut Vec<Node>) {
    if entries.len() <= LEAF_SIZE {
        out.push(leaf(entries, base));
        return;
    }
    let (dim, split) = partition(entries);
    let mid = entries.len() / 2;
    let at = out.len();
    out.push(Node {
        split,
        dim: dim as u8,
        right: 0,
        lo: 0,
        hi: 0,
        min_id: 0,
    });
    let (l, r) = entries.split_at_mut(mid);
    build_seq(l, base, out);
    let right_at = out.len();
    build_seq(r, base + mid, out);
    let min_id = out[at + 1].min_id.min(out[right_at].min_id);
    out[at].right = (right_at - at) as u32;
    out[at].min_id = min_id;
}

/// Parallel version of [`build_seq`]; returns the subtree's nodes.
fn build_par(entries: &mut [Entry], base: usize) -> Vec<Node> {
    if entries.len() < PAR_BUILD_MIN {
        let mut out = Vec::with_capacity(2 * entries.len() / LEAF_SIZE + 1);
        build_seq(entries, base, &mut out);
        return out;
    }
    let (dim, split) = partition(entries);
    let mid = entries.len() / 2;
    let (l, r) = entries.split_at_mut(mid);
    let (lv, rv) = rayon::join(|| build_par(l, base), || build_par(r, base + mid));
    let min_id = lv[0].min_id.min(rv[0].min_id);
    let mut out = Vec::with_capacity(1 + lv.len() + rv.len());
    out.push(Node {
        split,
        dim: dim as u8,
        right: 1 + lv.len() as u32,
        lo: 0,
        hi: 0,
        min_id,
    });
    out.extend(lv);
    out.extend(rv);
    out
}

impl KdTree {
    /// Builds the tree over flat `[n, 3]` points (validated: finite, length a multiple of 3,
    /// fewer than `u32::MAX` points).
    pub fn new(points: &[f32]) -> Result<Self> {
        validate(points, None, 1, false)?;
        Ok(crate::parallel::install(|| Self::build(points)))
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree holds no point.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Exact `k` nearest neighbours of each of the flat `[m, 3]` `queries` (see [`knn`]).
    pub fn query(&self, queries: &[f32], k: usize) -> Result<Knn> {
        let m = points_count("queries", queries)?;
        if k == 0 {
            return Err(Error::value("k", "must be at least 1, got 0"));
        }
        if m > 0 && k > self.len() {
            return Err(Error::value(
                "k",
                format!("k={k} exceeds the number of points N = {}", self.len()),
            ));
        }
        if m == 0 {
            return Ok(Knn::empty(k));
        }
        Ok(crate::parallel::install(|| self.search_all(queries, k)))
    }

    /// Builds without validation; must run inside the pool.
    fn build(points: &[f32]) -> Self {
        let mut entries: Vec<Entry> = points
            .par_chunks_exact(3)
            .enumerate()
            .map(|(i, p)| Entry {
                p: [p[0], p[1], p[2]],
                id: i as u32,
            })
            .collect();
        let nodes = if entries.is_empty() {
            Vec::new()
        } else {
            build_par(&mut entries, 0)
        };
        KdTree { entries, nodes }
    }

    /// Fills `best` with the neighbours of `q` found below node `at`.
    fn search(&self, at: usize, q: &[f64; 3], off: &mut [f64; 3], best: &mut Best) {
        let node = &self.nodes[at];
        if node.dim == LEAF {
            for e in &self.entries[node.lo as usize..node.hi as usize] {
                let d2 = dist2(q, &e.p);
                if best.beats(d2, e.id) {
                    best.push(d2, e.id);
                }
            }
            return;
        }
        let dim = node.dim as usize;
        let (left, right) = (at + 1, at + node.right as usize);
        let diff = q[dim] - node.split as f64;
        let go_left_first = if diff < 0.0 {
            true
        } else if diff > 0.0 {
            false
        } else {
            self.nodes[left].min_id < self.nodes[right].min_id
        };
        let (near, far) = if go_left_first {
            (left, right)
        } else {
            (right, left)
        };
        self.search(near, q, off, best);
        // Lower bound of the distance to the far cell: the same rounded sum as `dist2`, so it
        // never exceeds the distance to any point there.
        let saved = off[dim];
        off[dim] = diff;
        let rd = off[0] * off[0] + off[1] * off[1] + off[2] * off[2];
        if best.beats(rd, self.nodes[far].min_id) {
            self.search(far, q, off, best);
        }
        off[dim] = saved;
    }

    fn query_one(&self, q: [f32; 3], skip: u32, best: &mut Best) {
        best.reset(skip);
        let q = [q[0] as f64, q[1] as f64, q[2] as f64];
        let mut off = [0f64; 3];
        self.search(0, &q, &mut off, best);
    }

    /// Queries at arbitrary points; must run inside the pool, `k <= len`.
    fn search_all(&self, queries: &[f32], k: usize) -> Knn {
        let m = queries.len() / 3;
        let mut distances = vec![0f32; m * k];
        let mut indices = vec![0i64; m * k];
        distances
            .par_chunks_mut(k * QUERY_CHUNK)
            .zip(indices.par_chunks_mut(k * QUERY_CHUNK))
            .enumerate()
            .for_each(|(c, (dc, ic))| {
                let mut best = Best::new(k);
                for (r, (dr, ir)) in dc.chunks_mut(k).zip(ic.chunks_mut(k)).enumerate() {
                    let i = c * QUERY_CHUNK + r;
                    self.query_one(
                        [queries[3 * i], queries[3 * i + 1], queries[3 * i + 2]],
                        NO_SKIP,
                        &mut best,
                    );
                    write_row(&best, 0, dr, ir);
                }
            });
        Knn {
            distances,
            indices,
            k,
        }
    }

    /// Every point queried against the others (walked in tree order for locality); must run
    /// inside the pool. `k <= len`, or `k < len` with `exclude_self`.
    fn search_self(&self, k: usize, exclude_self: bool) -> Knn {
        let n = self.entries.len();
        let head = usize::from(!exclude_self);
        let others = k - head;
        // Results in tree order first, then gathered into point order.
        let mut d_tree = vec![0f32; n * k];
        let mut i_tree = vec![0i64; n * k];
        d_tree
            .par_chunks_mut(k * QUERY_CHUNK)
            .zip(i_tree.par_chunks_mut(k * QUERY_CHUNK))
            .enumerate()
            .for_each(|(c, (dc, ic))| {
                let mut best = Best::new(others.max(1));
                for (r, (dr, ir)) in dc.chunks_mut(k).zip(ic.chunks_mut(k)).enumerate() {
                    let e = self.entries[c * QUERY_CHUNK + r];
                    if head == 1 {
                        dr[0] = 0.0;
                        ir[0] = e.id as i64;
                    }
                    if others > 0 {
                        self.query_one(e.p, e.id, &mut best);
                        write_row(&best, head, dr, ir);
                    }
                }
            });
        let mut pos = vec![0u32; n];
        for (t, e) in self.entries.iter().enumerate() {
            pos[e.id as usize] = t as u32;
        }
        let mut distances = vec![0f32; n * k];
        let mut indices = vec![0i64; n * k];
        distances
            .par_chunks_mut(k)
            .zip(indices.par_chunks_mut(k))
            .zip(pos.par_iter())
            .with_min_len(1024)
            .for_each(|((dr, ir), &t)| {
                let t = t as usize;
                dr.copy_from_slice(&d_tree[t * k..t * k + k]);
                ir.copy_from_slice(&i_tree[t * k..t * k + k]);
            });
        Knn {
            distances,
            indices,
            k,
        }
    }
}

fn write_row(best: &Best, head: usize, dr: &mut [f32], ir: &mut [i64]) {
    for (s, (&d2, &id)) in best.d.iter().zip(&best.i).enumerate() {
        dr[head + s] = d2.sqrt() as f32;
        ir[head + s] = id as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64-based uniform floats in [0, 1).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32
        }
        fn cloud(&mut self, n: usize) -> Vec<f32> {
            (0..3 * n).map(|_| self.next() * 2.0 - 1.0).collect()
        }
    }

    fn check(points: &[f32], queries: Option<&[f32]>, k: usize, exclude_self: bool) {
        let fast = knn(points, queries, k, exclude_self).unwrap();
        let slow = knn_brute(points, queries, k, exclude_self).unwrap();
        assert_eq!(fast, slow, "k={k} exclude_self={exclude_self}");
    }

    #[test]
    fn random_clouds_match_brute_force() {
        let mut rng = Rng(1);
        for &n in &[1usize, 2, 5, 13, 100, 1000] {
            let pts = rng.cloud(n);
            let qs = rng.cloud(257);
            for &k in &[1usize, 2, 3, 8, 16] {
                if k <= n {
                    check(&pts, None, k, false);
                    check(&pts, Some(&qs), k, false);
                }
                if k < n {
                    check(&pts, None, k, true);
                }
            }
        }
    }

    #[test]
    fn k_equals_n_returns_everything_sorted() {
        let pts = Rng(2).cloud(40);
        check(&pts, None, 40, false);
        check(&pts, None, 39, true);
        let r = knn(&pts, None, 40, false).unwrap();
        for row in r.distances.chunks(40) {
            assert!(row.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn duplicates_and_integer_grid_ties() {
        let mut rng = Rng(3);
        // Snap to a coarse grid: many exact duplicates and equal distances.
        let mut pts: Vec<f32> = rng.cloud(1200).iter().map(|v| (v * 4.0).round()).collect();
        pts.extend_from_slice(&pts.clone()[..300]);
        let qs: Vec<f32> = rng
            .cloud(200)
            .iter()
            .map(|v| (v * 4.0).round() * 0.5)
            .collect();
        for &k in &[1usize, 3, 10, 50] {
            check(&pts, None, k, false);
            check(&pts, None, k, true);
            check(&pts, Some(&qs), k, false);
        }
    }

    #[test]
    fn all_points_identical() {
        let pts = [0.25f32, -1.0, 3.0].repeat(20_000);
        let r = knn(&pts, None, 4, false).unwrap();
        for (i, row) in r.indices.chunks(4).enumerate() {
            let mut want = vec![i as i64];
            want.extend((0..4).filter(|&j| j != i).take(3).map(|j| j as i64));
            assert_eq!(row, &want[..]);
        }
        assert!(r.distances.iter().all(|&d| d == 0.0));
        let r = knn(&pts, None, 3, true).unwrap();
        assert_eq!(&r.indices[..3], &[1, 2, 3]);
        assert_eq!(&r.indices[3 * 5..3 * 6], &[0, 1, 2]);
        let small = [1f32, 1.0, 1.0].repeat(50);
        check(&small, None, 7, false);
        check(&small, None, 7, true);
        check(&small, Some(&[1.0, 1.0, 2.0, 0.0, 0.0, 0.0]), 50, false);
    }

    #[test]
    fn clustered_and_degenerate_layouts() {
        let mut rng = Rng(4);
        let mut pts = Vec::new();
        for c in 0..12 {
            let centre = [c as f32 * 10.0, (c % 3) as f32, 0.0];
            for _ in 0..100 {
                for c in centre {
                    pts.push(c + rng.next() * 1e-3);
                }
            }
        }
        // Points on a line and on a plane.
        let line: Vec<f32> = (0..900)
            .map(|i| {
                if i % 3 == 0 {
                    (i / 3) as f32 * 0.1
                } else {
                    0.0
                }
            })
            .collect();
        let plane: Vec<f32> = (0..999)
            .map(|i| if i % 3 == 2 { 0.0 } else { rng.next() })
            .collect();
        let qs = rng.cloud(100);
        for p in [&pts, &line, &plane] {
            check(p, None, 5, false);
            check(p, None, 5, true);
            check(p, Some(&qs), 6, false);
        }
    }

    #[test]
    fn self_is_first_and_distances_are_euclidean() {
        let pts = [0f32, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 1.0];
        let r = knn(&pts, None, 3, false).unwrap();
        assert_eq!(r.indices, vec![0, 2, 1, 1, 0, 2, 2, 0, 1]);
        assert_eq!(&r.distances[..3], &[0.0, 1.0, 5.0]);
        let q = knn(&pts, Some(&[0.0, 0.0, 0.4]), 2, false).unwrap();
        assert_eq!(q.indices, vec![0, 2]);
        let tree = KdTree::new(&pts).unwrap();
        assert_eq!(tree.len(), 3);
        assert_eq!(tree.query(&[0.0, 0.0, 0.4], 2).unwrap(), q);
    }

    #[test]
    fn deterministic_across_thread_counts() {
        let pts: Vec<f32> = Rng(5)
            .cloud(30_000)
            .iter()
            .map(|v| (v * 20.0).round())
            .collect();
        let a = knn(&pts, None, 6, false).unwrap();
        let b = crate::parallel::install(|| knn(&pts, None, 6, false).unwrap());
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let c = single.install(|| {
            let tree = KdTree::build(&pts);
            tree.search_self(6, false)
        });
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn empty_inputs() {
        let r = knn(&[], None, 3, false).unwrap();
        assert!(r.distances.is_empty() && r.indices.is_empty());
        let r = knn(&[0.0, 0.0, 0.0], Some(&[]), 1, false).unwrap();
        assert!(r.indices.is_empty());
        assert!(knn(&[], Some(&[0.0, 0.0, 0.0]), 1, false).is_err());
        assert!(KdTree::new(&[]).unwrap().is_empty());
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let pts = Rng(6).cloud(10);
        let name = |r: Result<Knn>| match r {
            Err(Error::Shape { name, .. }) | Err(Error::Value { name, .. }) => name,
            Ok(_) => "ok",
        };
        assert_eq!(name(knn(&pts[..29], None, 1, false)), "points");
        assert_eq!(name(knn(&pts, Some(&[0.0; 4]), 1, false)), "queries");
        assert_eq!(name(knn(&pts, None, 0, false)), "k");
        assert_eq!(name(knn(&pts, None, 11, false)), "k");
        assert_eq!(name(knn(&pts, None, 10, true)), "k");
        assert_eq!(name(knn(&pts, Some(&[0.0; 3]), 11, false)), "k");
        assert_eq!(name(knn(&pts, Some(&[0.0; 3]), 2, true)), "exclude_self");
        let mut bad = pts.clone();
        bad[7] = f32::NAN;
        assert_eq!(name(knn(&bad, None, 1, false)), "points");
        assert_eq!(
            name(knn(&pts, Some(&[0.0, f32::INFINITY, 0.0]), 1, false)),
            "queries"
        );
        assert_eq!(name(knn(&[0.0; 3], None, 1, true)), "k");
        assert_eq!(name(knn_brute(&pts, None, 11, false)), "k");
        let tree = KdTree::new(&pts).unwrap();
        assert!(tree.query(&[0.0; 3], 11).is_err());
        assert!(tree.query(&[0.0; 3], 0).is_err());
    }
}
