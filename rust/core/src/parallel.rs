//! raysplat's own rayon thread pool.
//!
//! The pool is sized by `RAYSPLAT_NUM_THREADS` (default: all cores) and can be resized with
//! [`set_num_threads`]. It never touches rayon's global pool, so it does not collide with other
//! rayon users in the same process. After `fork()` the child must call [`forget_after_fork`]:
//! the parent's worker threads do not exist there, and the pool is rebuilt on first use.

use std::sync::{Arc, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{Error, Result};

static POOL: RwLock<Option<Arc<ThreadPool>>> = RwLock::new(None);
static REQUESTED: RwLock<Option<usize>> = RwLock::new(None);

fn default_threads() -> usize {
    if let Some(n) = REQUESTED.read().ok().and_then(|g| *g) {
        return n;
    }
    std::env::var("RAYSPLAT_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build(n: usize) -> Arc<ThreadPool> {
    let pool = ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("raysplat-{i}"))
        .build()
        .or_else(|_| ThreadPoolBuilder::new().num_threads(1).build())
        .expect("a one-thread rayon pool can always be built");
    Arc::new(pool)
}

fn pool() -> Arc<ThreadPool> {
    if let Some(p) = POOL.read().ok().and_then(|g| g.clone()) {
        return p;
    }
    let mut guard = POOL.write().unwrap_or_else(|e| e.into_inner());
    guard
        .get_or_insert_with(|| build(default_threads()))
        .clone()
}

/// Runs `f` inside raysplat's pool (so `par_iter` inside uses it).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    pool().install(f)
}

/// Sets the number of worker threads (takes effect for the next kernel call).
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::value(
            "n",
            "the number of threads must be at least 1",
        ));
    }
    *REQUESTED.write().unwrap_or_else(|e| e.into_inner()) = Some(n);
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = Some(build(n));
    Ok(())
}

/// The number of worker threads kernels run on.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// Drops the pool without joining its threads; call in a child process right after `fork()`.
pub fn forget_after_fork() {
    if let Ok(mut guard) = POOL.try_write() {
        if let Some(p) = guard.take() {
            std::mem::forget(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_round_trips_and_zero_is_an_error() {
        let before = num_threads();
        assert!(before >= 1);
        let e = set_num_threads(0).unwrap_err();
        assert_eq!(e.to_string(), "n: the number of threads must be at least 1");
        assert_eq!(num_threads(), before, "a rejected size changes nothing");
        for n in [1, 3, 2] {
            set_num_threads(n).unwrap();
            assert_eq!(num_threads(), n);
            assert_eq!(
                install(rayon::current_num_threads),
                n,
                "install runs on raysplat's pool"
            );
        }
        set_num_threads(before).unwrap();
        assert_eq!(num_threads(), before);
    }

    #[test]
    fn install_runs_parallel_work_and_returns_its_value() {
        use rayon::prelude::*;
        let sum: u64 = install(|| (0..10_000u64).into_par_iter().sum());
        assert_eq!(sum, 10_000 * 9_999 / 2);
    }

    #[test]
    fn forgotten_pool_is_rebuilt_on_next_use() {
        forget_after_fork();
        assert!(num_threads() >= 1);
        assert_eq!(install(|| 7), 7);
    }
}
