//! Output buffers for kernels.
//!
//! Large outputs are fresh memory on every call; on Linux they are advised to use transparent
//! huge pages so that first-touch page faults (one per 4 KiB page otherwise) do not dominate
//! memory-bound kernels. Contents are always zero-initialised.

/// Buffers at least this large (bytes) get the huge-page advice.
const HUGE_PAGE_THRESHOLD: usize = 4 << 20;

/// A zero-filled vector of `n` elements.
pub fn zeros<T: Copy + num_traits::Zero>(n: usize) -> Vec<T> {
    let v = vec![T::zero(); n];
    advise_huge_pages(&v);
    v
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
