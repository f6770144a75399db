//! A caching global allocator for large buffers.
//!
//! Kernels return fresh output vectors of the same sizes on every call of a training loop. From
//! the system allocator each of them is new memory the kernel must fault in and zero page by
//! page, which costs as much as the kernel itself for memory-bound ops. [`CachingAlloc`] keeps
//! freed blocks of at least [`MIN_CACHED_BYTES`] and hands them out again to requests of the
//! same size and alignment (like PyTorch's CUDA caching allocator), up to a byte budget
//! (default [`DEFAULT_BUDGET_BYTES`], see [`set_budget`]); everything else goes straight to the
//! system allocator.
//!
//! The cache never blocks: when its lock is busy the request bypasses it, so a `fork` taken while
//! another thread holds the lock cannot deadlock the child.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Smallest block size (bytes) the cache keeps.
pub const MIN_CACHED_BYTES: usize = 1 << 20;
/// Default budget of cached (freed, not yet reused) bytes.
pub const DEFAULT_BUDGET_BYTES: usize = 512 << 20;
/// Most blocks kept at once.
const SLOTS: usize = 32;

#[derive(Clone, Copy)]
struct Block {
    ptr: usize,
    size: usize,
    align: usize,
}

struct Blocks {
    /// Oldest first.
    list: [Option<Block>; SLOTS],
    bytes: usize,
}

static BLOCKS: Mutex<Blocks> = Mutex::new(Blocks {
    list: [None; SLOTS],
    bytes: 0,
});
static BUDGET: AtomicUsize = AtomicUsize::new(DEFAULT_BUDGET_BYTES);

/// Sets how many freed bytes the cache may hold (0 disables it) and releases the excess.
pub fn set_budget(bytes: usize) {
    BUDGET.store(bytes, Ordering::Relaxed);
    trim(bytes);
}

/// The current budget in bytes.
pub fn budget() -> usize {
    BUDGET.load(Ordering::Relaxed)
}

/// Bytes currently held by the cache (0 if its lock is busy).
pub fn cached_bytes() -> usize {
    BLOCKS.try_lock().map(|b| b.bytes).unwrap_or(0)
}

/// Returns every cached block to the system.
pub fn release() {
    trim(0);
}

/// Frees cached blocks, oldest first, until at most `limit` bytes remain.
fn trim(limit: usize) {
    let mut freed = [None; SLOTS];
    // Never wait on the lock indefinitely: in a forked child it may be held by a thread that
    // no longer exists.
    let mut guard = None;
    for _ in 0..1000 {
        if let Ok(g) = BLOCKS.try_lock() {
            guard = Some(g);
            break;
        }
        std::thread::yield_now();
    }
    if let Some(mut b) = guard {
        for (slot, out) in (0..SLOTS).zip(freed.iter_mut()) {
            if b.bytes <= limit {
                break;
            }
            if let Some(block) = b.list[slot].take() {
                b.bytes -= block.size;
                *out = Some(block);
            }
        }
        compact(&mut b.list);
    }
    for block in freed.into_iter().flatten() {
        // SAFETY: the block came from `System` with this layout and is no longer referenced.
        unsafe { System.dealloc(block.ptr as *mut u8, layout_of(block)) };
    }
}

/// Moves the occupied slots to the front, keeping their order.
fn compact(list: &mut [Option<Block>; SLOTS]) {
    let mut w = 0;
    for r in 0..SLOTS {
        if let Some(block) = list[r].take() {
            list[w] = Some(block);
            w += 1;
        }
    }
}

fn layout_of(block: Block) -> Layout {
    // SAFETY: size and align were taken from a valid `Layout`.
    unsafe { Layout::from_size_align_unchecked(block.size, block.align) }
}

/// Takes a cached block matching `layout`, if any.
fn take(layout: Layout) -> Option<*mut u8> {
    let mut b = BLOCKS.try_lock().ok()?;
    let slot = (0..SLOTS).rev().find(|&s| {
        b.list[s].is_some_and(|k| k.size == layout.size() && k.align == layout.align())
    })?;
    let block = b.list[slot].take()?;
    b.bytes -= block.size;
    compact(&mut b.list);
    Some(block.ptr as *mut u8)
}

/// Offers a freed block to the cache; `false` when it must go back to the system.
fn put(ptr: *mut u8, layout: Layout) -> bool {
    let budget = BUDGET.load(Ordering::Relaxed);
    if layout.size() > budget {
        return false;
    }
    let Ok(mut b) = BLOCKS.try_lock() else {
        return false;
    };
    let mut evicted = [None; SLOTS];
    let mut n_evicted = 0;
    // Make room: oldest blocks go first.
    while b.bytes + layout.size() > budget || b.list[SLOTS - 1].is_some() {
        let Some(old) = b.list[0].take() else { break };
        b.bytes -= old.size;
        evicted[n_evicted] = Some(old);
        n_evicted += 1;
        compact(&mut b.list);
    }
    let fits = b.bytes + layout.size() <= budget;
    if fits {
        if let Some(slot) = b.list.iter().position(Option::is_none) {
            b.list[slot] = Some(Block {
                ptr: ptr as usize,
                size: layout.size(),
                align: layout.align(),
            });
            b.bytes += layout.size();
        }
    }
    drop(b);
    for block in evicted.into_iter().flatten() {
        // SAFETY: as in `trim`.
        unsafe { System.dealloc(block.ptr as *mut u8, layout_of(block)) };
    }
    fits
}

/// The caching allocator; install it with `#[global_allocator]` in the final binary or library.
pub struct CachingAlloc;

// SAFETY: every block is either the system's or a whole, unused system block of exactly the
// requested size and alignment.
unsafe impl GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_CACHED_BYTES {
            if let Some(p) = take(layout) {
                return p;
            }
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_CACHED_BYTES {
            if let Some(p) = take(layout) {
                std::ptr::write_bytes(p, 0, layout.size());
                return p;
            }
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Blocks in use are plain system blocks: let the system grow them in place (or remap
        // them) rather than copying into a new block.
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= MIN_CACHED_BYTES && put(ptr, layout) {
            return;
        }
        System.dealloc(ptr, layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_reused_and_budget_is_respected() {
        let a = CachingAlloc;
        let layout = Layout::from_size_align(3 << 20, 64).unwrap();
        let before = cached_bytes();
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write(7);
            a.dealloc(p, layout);
            assert!(cached_bytes() >= before + layout.size());
            let q = a.alloc_zeroed(layout);
            assert_eq!(q, p, "same-size request reuses the block");
            assert!((0..layout.size()).step_by(4096).all(|i| *q.add(i) == 0));
            a.dealloc(q, layout);
        }
        set_budget(0);
        assert_eq!(cached_bytes(), 0);
        unsafe {
            let p = a.alloc(layout);
            a.dealloc(p, layout);
        }
        assert_eq!(cached_bytes(), 0);
        set_budget(DEFAULT_BUDGET_BYTES);
    }
}
