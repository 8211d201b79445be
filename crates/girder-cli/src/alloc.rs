//! A global allocator that can count live heap bytes, for `mem_bytes_per_proc`.
//!
//! Counting is off unless a benchmark turns it on, so other workloads pay one relaxed load.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts counting from zero.
pub fn start() {
    LIVE.store(0, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
}

/// Net bytes allocated since `start`, and stops counting.
pub fn stop() -> isize {
    ON.store(false, Ordering::SeqCst);
    LIVE.load(Ordering::SeqCst)
}

/// The binary's malloc policy: on glibc, every thread allocates from the main arena (as if
/// `MALLOC_ARENA_MAX=1`), unless the user chose otherwise through `MALLOC_ARENA_MAX` or
/// `GLIBC_TUNABLES`. Runs first thing in `main`, before any other thread exists.
///
/// Why (docs/decisions/009-malloc-arena.md): glibc gives each new thread an arena of its own,
/// and a non-main arena grows one page per `mprotect` call with no padding, while the main
/// arena grows by `brk` with 128 KiB of padding. A scheduler thread spawning a million
/// processes made 131,540 `mprotect` calls; on the main arena the same spawns take ~25% less
/// time, and no workload measured slower (per-thread caches still serve most small
/// allocations without the arena's lock).
pub fn one_arena_unless_set() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::var_os("GLIBC_TUNABLES")
            .is_some_and(|t| t.to_string_lossy().contains("arena_max"));
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() && !tuned {
            // SAFETY: `mallopt` only sets a malloc parameter; no other thread is running yet.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        }
    }
}
