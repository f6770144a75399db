//! Packed ("ragged") layout of per-ray samples.
//!
//! Samples of ray `r` occupy `offsets[r]..offsets[r + 1]` of every flat per-sample array. A dense
//! `[n_rays, n_samples]` batch is the special case of equal segment lengths.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Segment boundaries of a packed batch: `offsets.len() == n_rays + 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    offsets: Vec<usize>,
}

impl Segments {
    /// `n_rays` segments of `len` samples each (the dense `[n_rays, len]` layout).
    pub fn uniform(n_rays: usize, len: usize) -> Self {
        Segments {
            offsets: (0..=n_rays).map(|r| r * len).collect(),
        }
    }

    /// Segments from a sorted `ray_indices` array (values in `0..n_rays`).
    pub fn from_ray_indices(ray_indices: &[i64], n_rays: usize) -> Result<Self> {
        let counts = counts_from_sorted(ray_indices, n_rays)?;
        let mut offsets = Vec::with_capacity(n_rays + 1);
        let mut acc = 0usize;
        offsets.push(0);
        for c in counts {
            acc += c;
            offsets.push(acc);
        }
        Ok(Segments { offsets })
    }

    /// Segments of `ray_indices` when they are sorted, `None` when they are not (the caller then
    /// reduces by scattering along the indices); every value must lie in `0..n_rays` either way.
    pub fn from_ray_indices_if_sorted(ray_indices: &[i64], n_rays: usize) -> Result<Option<Self>> {
        let mut sorted = true;
        let mut prev = 0i64;
        for &r in ray_indices {
            if r < 0 || r as u64 >= n_rays as u64 {
                return Err(Error::value(
                    "ray_indices",
                    format!("index {r} is outside 0..{n_rays} (n_rays)"),
                ));
            }
            sorted &= r >= prev;
            prev = r;
        }
        if !sorted {
            return Ok(None);
        }
        Self::from_ray_indices(ray_indices, n_rays).map(Some)
    }

    /// Segments from `n_rays + 1` non-decreasing offsets starting at 0 and ending at `n_samples`.
    pub fn from_offsets(offsets: &[i64], n_samples: usize) -> Result<Self> {
        if offsets.is_empty()
            || offsets[0] != 0
            || *offsets.last().unwrap_or(&0) != n_samples as i64
        {
            return Err(Error::value(
                "offsets",
                format!("must start at 0 and end at the number of samples ({n_samples})"),
            ));
        }
        if offsets.windows(2).any(|p| p[1] < p[0]) {
            return Err(Error::value("offsets", "must be non-decreasing"));
        }
        Ok(Segments {
            offsets: offsets.iter().map(|&o| o as usize).collect(),
        })
    }

    /// Number of segments (rays).
    pub fn n_rays(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Total number of samples.
    pub fn n_samples(&self) -> usize {
        *self.offsets.last().unwrap_or(&0)
    }

    /// Sample range of ray `r`.
    #[inline]
    pub fn range(&self, r: usize) -> std::ops::Range<usize> {
        self.offsets[r]..self.offsets[r + 1]
    }

    /// The `n_rays + 1` offsets.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// Calls `f(ray, range)` for every ray in parallel on raysplat's pool.
    pub fn par_for_each(&self, f: impl Fn(usize, std::ops::Range<usize>) + Sync + Send) {
        crate::parallel::install(|| {
            (0..self.n_rays())
                .into_par_iter()
                .with_min_len(256)
                .for_each(|r| f(r, self.range(r)));
        });
    }
}

impl Segments {
    /// Like [`Segments::par_for_each`], with per-thread state made by `init` (scratch buffers).
    pub fn par_for_each_init<S>(
        &self,
        init: impl Fn() -> S + Sync + Send,
        f: impl Fn(&mut S, usize, std::ops::Range<usize>) + Sync + Send,
    ) {
        crate::parallel::install(|| {
            (0..self.n_rays())
                .into_par_iter()
                .with_min_len(256)
                .for_each_init(&init, |state, r| f(state, r, self.range(r)));
        });
    }
}

/// Per-ray sample counts of a sorted `ray_indices` array; errors if unsorted or out of range.
pub fn counts_from_sorted(ray_indices: &[i64], n_rays: usize) -> Result<Vec<usize>> {
    let mut counts = vec![0usize; n_rays];
    let mut prev = 0i64;
    for &r in ray_indices {
        if r < 0 || r as u64 >= n_rays as u64 {
            return Err(Error::value(
                "ray_indices",
                format!("index {r} is outside 0..{n_rays} (n_rays)"),
            ));
        }
        if r < prev {
            return Err(Error::value(
                "ray_indices",
                "must be sorted in ascending order",
            ));
        }
        prev = r;
        counts[r as usize] += 1;
    }
    Ok(counts)
}

/// A raw pointer that may be shared between threads writing disjoint ranges.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T> {
    ptr: *mut T,
    len: usize,
}

unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub(crate) fn new(data: &mut [T]) -> Self {
        SharedMut {
            ptr: data.as_mut_ptr(),
            len: data.len(),
        }
    }

    /// A mutable view of `range`.
    ///
    /// # Safety
    /// No two live views may overlap, and the backing slice must outlive the view.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub(crate) unsafe fn slice(&self, range: std::ops::Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.end - range.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_from_ray_indices() {
        let s = Segments::from_ray_indices(&[0, 0, 2, 2, 2], 4).unwrap();
        assert_eq!(s.offsets(), &[0, 2, 2, 5, 5]);
        assert_eq!(s.n_samples(), 5);
    }

    #[test]
    fn rejects_unsorted_and_out_of_range() {
        assert!(Segments::from_ray_indices(&[1, 0], 2).is_err());
        assert!(Segments::from_ray_indices(&[0, 2], 2).is_err());
        assert!(Segments::from_ray_indices(&[-1], 2).is_err());
    }

    #[test]
    fn if_sorted_tells_unsorted_from_out_of_range() {
        let s = Segments::from_ray_indices_if_sorted(&[0, 0, 2], 3).unwrap();
        assert_eq!(s.unwrap().offsets(), &[0, 2, 2, 3]);
        assert_eq!(
            Segments::from_ray_indices_if_sorted(&[2, 0, 1], 3).unwrap(),
            None
        );
        assert!(Segments::from_ray_indices_if_sorted(&[2, 0, 3], 3).is_err());
        assert!(Segments::from_ray_indices_if_sorted(&[0, -1], 3).is_err());
        let empty = Segments::from_ray_indices_if_sorted(&[], 0)
            .unwrap()
            .unwrap();
        assert_eq!(empty.n_rays(), 0);
    }

    #[test]
    fn empty_batch() {
        let s = Segments::from_ray_indices(&[], 0).unwrap();
        assert_eq!(s.n_rays(), 0);
        assert_eq!(s.n_samples(), 0);
    }
}
