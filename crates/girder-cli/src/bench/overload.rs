//! `overload` (issue 14): a service of fixed capacity offered 1×, 2×, 5× and 10× what it can
//! do, open loop, every request with a 100 ms deadline, with and without a
//! `girder_regulate::Queue` in front.
//!
//! Each case runs in a fresh OS process (`girder bench-overload`, hidden), so its peak resident
//! memory (VmHWM) is its own and not a previous case's. A first child measures the service's
//! capacity; every case is then offered a multiple of that same number.
//!
//! The service is [`WORKERS`] Girder `Server`s, each taking [`WORK`] per request by *sleeping*:
//! the work holds a worker, not a core, so the capacity (about `WORKERS / WORK`, less the
//! timers' overshoot) hardly moves when the 2-core machine is shared with a compiler; a busy
//! spin would measure the neighbours. Requests go to the worker with the fewest outstanding,
//! so with at most `WORKERS` in flight (the regulated case) none waits behind another.
//!
//! Each request is a Girder process spawned at its scheduled arrival time by a paced generator
//! (open loop: arrivals do not wait for replies, so overload piles up as it would from real
//! clients). Latency is measured from the *scheduled* arrival, so a late generator cannot
//! hide queueing (no coordinated omission).

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use girder::{
    CallError, Context, ExitReason, Flow, Node, ReplyTo, Server, ServerContext, ServerRef,
};
use girder_regulate::Queue;
use hdrhistogram::Histogram;

use super::Outcome;

/// Workers in the service: its concurrency.
const WORKERS: usize = 4;
/// What one request costs a worker.
const WORK: Duration = Duration::from_millis(2);
/// Every request's deadline, from its arrival.
pub const DEADLINE: Duration = Duration::from_millis(100);
/// How long a client waits for a reply before giving up (unregulated requests queue far past
/// their deadline; a real client would not wait for ever).
const PATIENCE: Duration = Duration::from_secs(1);
/// The regulated queue's limit on waiting: what is left of the deadline after the work, with
/// room for the timers' overshoot.
const MAX_QUEUE_TIME: Duration = Duration::from_millis(70);
/// Offered load as multiples of the capacity.
const OFFERED: [f64; 4] = [1.0, 2.0, 5.0, 10.0];

/// The keys a case reports, in order (the JSON line adds `workload`, `system`, `runtime`).
const KEYS: [&str; 15] = [
    "offered_x",
    "regulated",
    "goodput_ratio",
    "p50_ms",
    "p99_ms",
    "deadline_ms",
    "peak_rss_mb",
    "capacity_per_s",
    "offered_per_s",
    "goodput_per_s",
    "arrived",
    "in_deadline",
    "late",
    "rejected",
    "unfinished",
];

/// One worker: sleeps [`WORK`] per request, then replies.
struct Worker;

impl Server for Worker {
    type Call = ReplyTo<()>;
    type Cast = ();
    type Info = ();

    async fn handle_call(&mut self, from: ReplyTo<()>, _: &mut ServerContext<Self>) -> Flow {
        tokio::time::sleep(WORK).await;
        from.reply(());
        Flow::Continue
    }
}

/// The service: its workers and each one's outstanding requests.
struct Service {
    workers: Vec<(ServerRef<Worker>, AtomicUsize)>,
}

impl Service {
    async fn start(node: &Node) -> Result<Arc<Service>, String> {
        let mut workers = Vec::with_capacity(WORKERS);
        for _ in 0..WORKERS {
            // Unbounded mailboxes: the unregulated case shows what that does under overload.
            let w = girder::server::start(node, Worker)
                .await
                .map_err(|e| e.to_string())?;
            workers.push((w, AtomicUsize::new(0)));
        }
        Ok(Arc::new(Service { workers }))
    }

    /// One request, to the worker with the fewest outstanding.
    async fn call(&self) -> Result<(), CallError> {
        let (worker, load) = self
            .workers
            .iter()
            .min_by_key(|(_, n)| n.load(Ordering::Relaxed))
            .expect("at least one worker");
        load.fetch_add(1, Ordering::Relaxed);
        let r = worker.call_timeout(|r| r, PATIENCE).await;
        load.fetch_sub(1, Ordering::Relaxed);
        r
    }
}

/// What the requests of one case came to.
#[derive(Default)]
struct Tally {
    in_deadline: AtomicU64,
    /// Of those, completed while arrivals were still being offered: the goodput's numerator
    /// (counting what the queue still held at the end would overstate the rate).
    in_window: AtomicU64,
    late: AtomicU64,
    rejected: AtomicU64,
    resolved: AtomicU64,
}

/// The parent's side: a calibrating child, then one child per case.
pub fn run(scale: f64, schedulers: usize) -> Result<Vec<Outcome>, String> {
    let calibration = child(&["--calibrate"], scale, schedulers)?;
    let capacity = calibration
        .get("capacity_per_s")
        .and_then(serde_json::Value::as_f64)
        .filter(|c| *c > 0.0)
        .ok_or_else(|| format!("overload: calibration said {calibration}"))?;
    let mut out = Vec::new();
    for regulated in [false, true] {
        for x in OFFERED {
            let mut args = vec![
                "--offered-x".to_string(),
                x.to_string(),
                "--capacity".to_string(),
                capacity.to_string(),
            ];
            if regulated {
                args.push("--regulated".into());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let line = child(&args, scale, schedulers)?;
            let values = KEYS
                .iter()
                .map(|k| {
                    let v = &line[*k];
                    v.as_f64()
                        .or_else(|| v.as_bool().map(f64::from))
                        .map(|v| (*k, v))
                        .ok_or_else(|| format!("overload: the case's line lacks {k}: {line}"))
                })
                .collect::<Result<_, _>>()?;
            out.push(Outcome {
                workload: "overload",
                values,
            });
        }
    }
    Ok(out)
}

/// Runs `girder bench-overload ARGS` and parses its one JSON line.
fn child(args: &[&str], scale: f64, schedulers: usize) -> Result<serde_json::Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .arg("bench-overload")
        .args(args)
        .args(["--scale", &scale.to_string()])
        // The child's `Node::new` takes its pool from this (0: tokio tasks).
        .env(girder::scheduler::SCHEDULERS_ENV, schedulers.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start an overload case: {e}"))?;
    if !out.status.success() {
        return Err(format!("overload case {args:?} failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .map_err(|e| format!("overload case {args:?} printed {text:?}: {e}"))
}

/// What `girder bench-overload` is asked to do.
pub struct CaseArgs {
    /// Measure the capacity instead of running a case.
    pub calibrate: bool,
    pub offered_x: f64,
    pub regulated: bool,
    /// Requests a second the service completes (from the calibration).
    pub capacity: f64,
    pub scale: f64,
}

/// The child's side: runs one case (or the calibration) and prints one JSON line.
pub fn case(args: CaseArgs) -> Result<(), String> {
    if !(args.scale > 0.0 && args.scale <= 10.0) {
        return Err(format!("--scale must be in (0, 10], got {}", args.scale));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let line = rt.block_on(async {
        let node = Node::new("overload");
        let service = Service::start(&node).await?;
        if args.calibrate {
            let capacity = calibrate(&node, &service, args.scale).await;
            return Ok(serde_json::json!({ "capacity_per_s": capacity }));
        }
        if !(args.capacity > 0.0 && args.offered_x > 0.0) {
            return Err("--capacity and --offered-x must be positive".to_string());
        }
        Ok(offer(&node, service, &args).await)
    })?;
    let mut out = std::io::stdout();
    writeln!(out, "{line}").map_err(|e| e.to_string())
}

/// Closed loop, many more callers than workers, for a while: completions a second is the
/// capacity.
async fn calibrate(node: &Node, service: &Arc<Service>, scale: f64) -> f64 {
    let span = Duration::from_secs_f64((2.0 * scale).clamp(0.3, 2.0));
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    for _ in 0..WORKERS * 4 {
        let (service, done, tx) = (service.clone(), done.clone(), tx.clone());
        node.spawn(move |_: Context<()>| async move {
            while t0.elapsed() < span {
                if service.call().await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(tx);
            ExitReason::Normal
        });
    }
    drop(tx);
    let _ = rx.recv().await; // every caller has dropped its sender
    done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

/// Offers `offered_x × capacity` requests a second for a few seconds, then waits a little for
/// the stragglers, and reports.
async fn offer(node: &Node, service: Arc<Service>, args: &CaseArgs) -> serde_json::Value {
    let rate = args.offered_x * args.capacity;
    let phase = Duration::from_secs_f64((4.0 * args.scale).clamp(0.25, 40.0));
    // What is still unresolved after the grace is counted as unfinished (and late).
    let grace = Duration::from_secs_f64(args.scale.clamp(0.2, 1.0)).min(PATIENCE);
    let queue = args.regulated.then(|| {
        Queue::builder()
            .count(WORKERS)
            .max_queue_time(MAX_QUEUE_TIME)
            // About what the workers get through in the queue time: a longer queue would only
            // hold requests that time out.
            .max_queue_len(((args.capacity * MAX_QUEUE_TIME.as_secs_f64()).ceil() as usize).max(1))
            .build()
    });
    let tally = Arc::new(Tally::default());
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
    ));
    let total = (rate * phase.as_secs_f64()).round().max(1.0) as u64;
    let t0 = Instant::now();
    let window_end = t0 + phase;
    let mut sent = 0u64;
    while sent < total {
        let due = ((t0.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        while sent < due {
            let arrival = t0 + Duration::from_secs_f64(sent as f64 / rate);
            let (service, queue, tally, hist) =
                (service.clone(), queue.clone(), tally.clone(), hist.clone());
            node.spawn(move |_: Context<()>| async move {
                request(arrival, window_end, &service, queue.as_ref(), &tally, &hist).await;
                ExitReason::Normal
            });
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ended = Instant::now();
    while tally.resolved.load(Ordering::Relaxed) < total && ended.elapsed() < grace {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let peak_rss_mb = peak_rss_bytes() as f64 / (1024.0 * 1024.0);
    let in_deadline = tally.in_deadline.load(Ordering::Relaxed);
    let unfinished = total.saturating_sub(tally.resolved.load(Ordering::Relaxed));
    let hist = hist.lock().expect("not poisoned");
    let goodput = tally.in_window.load(Ordering::Relaxed) as f64 / phase.as_secs_f64();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    serde_json::json!({
        "offered_x": args.offered_x,
        "regulated": args.regulated,
        "goodput_ratio": goodput / args.capacity,
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "deadline_ms": DEADLINE.as_millis() as u64,
        "peak_rss_mb": peak_rss_mb,
        "capacity_per_s": args.capacity,
        "offered_per_s": rate,
        "goodput_per_s": goodput,
        "arrived": total,
        "in_deadline": in_deadline,
        "late": tally.late.load(Ordering::Relaxed) + unfinished,
        "rejected": tally.rejected.load(Ordering::Relaxed),
        "unfinished": unfinished,
    })
}

/// One request, from its scheduled arrival (`window_end`: when arrivals stop): through the queue if there is one, then the
/// service. A completed request's latency goes into `hist`; so does a call the client gave up
/// on, at its patience (a floor), so that giving up does not flatter the unregulated p99.
async fn request(
    arrival: Instant,
    window_end: Instant,
    service: &Service,
    queue: Option<&Queue>,
    tally: &Tally,
    hist: &Mutex<Histogram<u64>>,
) {
    let result = match queue {
        Some(q) => match q.ask().await {
            Ok(permit) => {
                let r = service.call().await;
                drop(permit);
                Some(r)
            }
            // Rejected: fails fast, never reaches the service.
            Err(_) => None,
        },
        None => Some(service.call().await),
    };
    let took = arrival.elapsed();
    match result {
        None => {
            tally.rejected.fetch_add(1, Ordering::Relaxed);
        }
        Some(r) => {
            let counted = if r.is_ok() { took } else { took.max(PATIENCE) };
            hist.lock()
                .expect("not poisoned")
                .saturating_record(counted.as_micros() as u64);
            if r.is_ok() && took <= DEADLINE {
                tally.in_deadline.fetch_add(1, Ordering::Relaxed);
                if Instant::now() <= window_end {
                    tally.in_window.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                tally.late.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    tally.resolved.fetch_add(1, Ordering::Relaxed);
}

/// The process's peak resident set (VmHWM), in bytes; 0 where /proc does not say.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// The table line of one case.
pub fn table_line(o: &Outcome) {
    let get = |k: &str| {
        o.values
            .iter()
            .find(|(n, _)| *n == k)
            .map_or(0.0, |(_, v)| *v)
    };
    println!(
        "{:<10} {:>4}× {:<12} goodput {:>5.1}%  p99 {:>7.1} ms  rejected {:>7}  late {:>7}  peak {:>5.0} MB  (capacity {:.0}/s)",
        "overload",
        get("offered_x"),
        if get("regulated") != 0.0 { "regulated" } else { "unregulated" },
        get("goodput_ratio") * 100.0,
        get("p99_ms"),
        get("rejected"),
        get("late"),
        get("peak_rss_mb"),
        get("capacity_per_s"),
    );
}
