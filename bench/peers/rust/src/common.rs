//! Shared by every peer: counts, the counting allocator, latency histograms, JSON output.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

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
    pub timers: u64,
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
        timers: scaled(1_000_000, scale),
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

/// The net bytes counted so far, counting on.
pub fn count_peek() -> isize {
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

/// `timers`: rounds of arm-all then cancel-all (the median of each is kept), as `girder bench`.
pub const TIMER_ROUNDS: usize = 5;
/// Far enough that no timer fires while measured.
pub const TIMER_DELAY: Duration = Duration::from_secs(3600);

/// The median of `rounds`, in ns per timer.
pub fn median_ns(mut rounds: Vec<Duration>, n: u64) -> f64 {
    rounds.sort();
    rounds[rounds.len() / 2].as_secs_f64() * 1e9 / n as f64
}

/// Waits until the runtime's global queue is empty (checked every millisecond): what was just
/// spawned has run but for the few tasks still in the workers' local queues (256 each at most).
pub async fn drained() {
    let handle = tokio::runtime::Handle::current();
    while handle.metrics().global_queue_depth() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `timers` for the APIs whose timer is a tokio task (`tokio::spawn` of a sleep, ractor's and
/// kameo's `send_after`), run by the process that arms them: `arm` arms one timer that would
/// send the caller a message after [`TIMER_DELAY`] and returns its handle, `cancel` cancels one.
///
/// As `girder bench`: the handles go into a vector allocated before counting starts;
/// `bytes_per_timer` is the net heap growth while the first round arms; `arm_ns` and
/// `cancel_ns` time the calls. Both calls leave work to the runtime's workers, which `girder
/// bench` (and Erlang) do in the call: a tokio timer enters the time wheel at its task's first
/// poll, and `abort()` only marks the task and schedules it, to be dropped (leaving the wheel)
/// when a worker polls it. So `arm_done_ns` times from the first call until the runtime's global
/// queue is empty (every new task polled but for a few hundred, 1 ms resolution), and
/// `cancel_done_ns` until every cancelled task is gone (handles dropped too, 1 ms resolution);
/// `retained_bytes_per_timer` is what the first round still holds then (0: all freed). Between
/// the arm and cancel phases, 20 ms more for the tasks in the workers' local queues.
pub async fn task_timers<H>(n: u64, mut arm: impl FnMut() -> H, mut cancel: impl FnMut(&H)) -> Outcome {
    let handle = tokio::runtime::Handle::current();
    let mut handles: Vec<H> = Vec::with_capacity(n as usize);
    let before = handle.metrics().num_alive_tasks();
    let (mut arms, mut armed, mut cancels, mut dones) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut bytes, mut retained) = (0, 0);
    for round in 0..TIMER_ROUNDS {
        if round == 0 {
            count_start();
        }
        let t0 = Instant::now();
        for _ in 0..n {
            handles.push(arm());
        }
        arms.push(t0.elapsed());
        if round == 0 {
            bytes = count_peek();
        }
        drained().await;
        armed.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t0 = Instant::now();
        for h in &handles {
            cancel(h);
        }
        cancels.push(t0.elapsed());
        handles.clear();
        while handle.metrics().num_alive_tasks() > before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        dones.push(t0.elapsed());
        if round == 0 {
            retained = count_stop();
        }
    }
    vec![
        ("timers", n as f64),
        ("arm_ns", median_ns(arms, n)),
        ("cancel_ns", median_ns(cancels, n)),
        ("bytes_per_timer", per_proc(bytes, n)),
        ("arm_done_ns", median_ns(armed, n)),
        ("cancel_done_ns", median_ns(dones, n)),
        ("retained_bytes_per_timer", per_proc(retained, n)),
    ]
}
