//! Shared by every peer: counts, the counting allocator, latency histograms, JSON output.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

pub fn scaled(n: u64, scale: f64) -> u64 {
    ((n as f64 * scale).round() as u64).max(1)
}

pub struct Counts {
    pub spawn: u64,
    pub ring_procs: usize,
    pub ring_hops: u64,
    pub pingpong: u64,
    pub c1_calls: u64,
    pub c100_callers: usize,
    pub c100_calls: u64,
    pub fanin_producers: usize,
    pub fanin_each: u64,
}

pub fn counts(scale: f64) -> Counts {
    Counts {
        spawn: scaled(1_000_000, scale),
        ring_procs: 1_000,
        ring_hops: scaled(10_000_000, scale),
        pingpong: scaled(2_000_000, scale),
        c1_calls: scaled(1_000_000, scale),
        c100_callers: 100,
        c100_calls: scaled(10_000, scale),
        fanin_producers: 100,
        fanin_each: scaled(100_000, scale),
    }
}

pub type Outcome = Vec<(&'static str, f64)>;

pub fn print(system: &str, workload: &str, out: &Outcome) {
    let mut obj = serde_json::Map::new();
    obj.insert("system".into(), system.into());
    obj.insert("workload".into(), workload.into());
    for (k, v) in out {
        let v = if v.fract() == 0.0 { serde_json::json!(*v as i64) } else { serde_json::json!((v * 100.0).round() / 100.0) };
        obj.insert((*k).into(), v);
    }
    println!("{}", serde_json::Value::Object(obj));
}

pub fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 10_000_000_000, 2).expect("histogram bounds")
}

pub fn call_outcome(calls: u64, secs: f64, h: &hdrhistogram::Histogram<u64>) -> Outcome {
    vec![
        ("calls_per_s", calls as f64 / secs),
        ("p50_us", h.value_at_quantile(0.50) as f64 / 1000.0),
        ("p99_us", h.value_at_quantile(0.99) as f64 / 1000.0),
    ]
}

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
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

pub fn count_start() {
    LIVE.store(0, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
}

pub fn count_stop() -> isize {
    ON.store(false, Ordering::SeqCst);
    LIVE.load(Ordering::SeqCst)
}

/// Bytes per process. The benchmark's own vector of handles is allocated (with its full
/// capacity) before counting starts, so it is not in `bytes`.
pub fn per_proc(bytes: isize, n: u64) -> f64 {
    (bytes as f64 / n as f64).round()
}

/// Waits (untimed) until at most `target` tasks are alive on the current tokio runtime: after the
/// spawn workload has told every idle process to stop, this waits for them to be gone.
pub async fn wait_alive_tasks(target: usize) {
    let handle = tokio::runtime::Handle::current();
    while handle.metrics().num_alive_tasks() > target {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits (untimed) until `counter` reaches `target`.
pub async fn wait_count(counter: &std::sync::atomic::AtomicU64, target: u64) {
    while counter.load(Ordering::Relaxed) < target {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

pub fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

/// The same malloc policy as the `girder` binary (see its `alloc::one_arena_unless_set` and
/// docs/decisions/009-malloc-arena.md): on glibc, one arena for every thread unless the user
/// set `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES`, so every column runs on the same allocator
/// settings.
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
