//! Output buffers for kernels.
//!
//! Large outputs are usually recycled blocks from [`crate::buffer_cache`] (when that allocator is
//! installed), zeroed in parallel on raysplat's pool; fresh ones are advised to use transparent
//! huge pages on Linux so that first-touch page faults (one per 4 KiB page otherwise) do not
//! dominate memory-bound kernels. Contents are always zero-initialised: [`zeros`] up front, and
//! [`Output`] piecewise, each piece zeroed in cache right before the kernel writes it (saving
//! a pass over memory).

/// Buffers at least this large (bytes) get the huge-page advice.
const HUGE_PAGE_THRESHOLD: usize = 4 << 20;

/// Buffers at least this large (bytes) are zeroed in parallel.
const PARALLEL_ZERO_THRESHOLD: usize = 1 << 20;

/// A zero-filled vector of `n` elements.
pub fn zeros<T: Copy + Send + num_traits::Zero>(n: usize) -> Vec<T> {
    if n * std::mem::size_of::<T>() < PARALLEL_ZERO_THRESHOLD {
        return vec![T::zero(); n];
    }
    use rayon::prelude::*;
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise_huge_pages(v.spare_capacity_mut());
    crate::parallel::install(|| {
        v.spare_capacity_mut()[..n]
            .par_chunks_mut(1 << 16)
            .for_each(|chunk| chunk.fill(std::mem::MaybeUninit::new(T::zero())));
    });
    // SAFETY: all `n` elements were initialised above.
    unsafe { v.set_len(n) };
    v
}

/// An output buffer of `n` elements that kernels claim in disjoint pieces from many threads.
///
/// Each piece is zero-filled when claimed (while it is about to be written anyway, so in
/// cache), and [`Output::finish`] returns the vector once every element has been claimed.
pub struct Output<T> {
    data: Vec<std::mem::MaybeUninit<T>>,
}

impl<T: Copy + num_traits::Zero> Output<T> {
    /// An unclaimed buffer of `n` elements.
    pub fn new(n: usize) -> Self {
        let mut data = Vec::with_capacity(n);
        // SAFETY: `MaybeUninit` elements need no initialisation.
        unsafe { data.set_len(n) };
        advise_huge_pages(&data);
        Output { data }
    }

    /// A handle through which threads claim disjoint pieces.
    pub fn pieces(&mut self) -> Pieces<T> {
        Pieces {
            ptr: self.data.as_mut_ptr(),
            len: self.data.len(),
        }
    }

    /// The initialised vector.
    ///
    /// # Safety
    /// Every element must have been claimed through [`Pieces::claim`].
    pub unsafe fn finish(self) -> Vec<T> {
        let mut data = std::mem::ManuallyDrop::new(self.data);
        // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the caller guarantees initialisation.
        Vec::from_raw_parts(data.as_mut_ptr().cast::<T>(), data.len(), data.capacity())
    }
}

/// Shared handle to an [`Output`] (see [`Output::pieces`]).
pub struct Pieces<T> {
    ptr: *mut std::mem::MaybeUninit<T>,
    len: usize,
}

impl<T> Clone for Pieces<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Pieces<T> {}
// SAFETY: threads only touch the disjoint pieces they claim.
unsafe impl<T: Send> Send for Pieces<T> {}
unsafe impl<T: Send> Sync for Pieces<T> {}

impl<T: Copy + num_traits::Zero> Pieces<T> {
    /// Zero-fills and returns the elements in `range`.
    ///
    /// # Safety
    /// No two live claims may overlap, and the [`Output`] must outlive the returned slice.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub unsafe fn claim(&self, range: std::ops::Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.len);
        let piece = std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len());
        piece.fill(std::mem::MaybeUninit::new(T::zero()));
        // SAFETY: every element was just initialised.
        &mut *(piece as *mut [std::mem::MaybeUninit<T>] as *mut [T])
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &[T]) {
    let bytes = std::mem::size_of_val(v);
    if bytes < HUGE_PAGE_THRESHOLD {
        return;
    }
    const ALIGN: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let aligned = start.div_ceil(ALIGN) * ALIGN;
    let end = start + bytes;
    if end > aligned + ALIGN {
        // SAFETY: madvise only changes paging policy of memory this vector owns; errors (e.g.
        // THP disabled) are harmless and ignored.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_: &[T]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_pieces_are_zeroed_and_assembled() {
        let mut out = Output::<f32>::new(10);
        let p = out.pieces();
        unsafe {
            p.claim(0..4).copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
            assert_eq!(p.claim(4..7), &[0.0; 3]);
            p.claim(7..10)[2] = 9.0;
        }
        let v = unsafe { out.finish() };
        assert_eq!(v, vec![1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.0]);
        assert_eq!(zeros::<f64>(300_000).iter().sum::<f64>(), 0.0);
    }
}
