//! How loaded a node is, measured where its processes run: one snapshot ([`Node::load`]) that
//! girder-ops' overload and memory alarms and girder-regulate's governors read alike.
//!
//! | measure | how | why |
//! |---|---|---|
//! | [`LoadSample::lag`] | how late a timer asked for every 100 ms fires, the worst of the last second, from one probe per scheduler | when every scheduler is busy, everything waits this long: the signal that work is being accepted faster than it is done |
//! | [`LoadSample::run_queue`] | processes waiting to run, over all schedulers | the BEAM's `run_queue` |
//! | [`LoadSample::schedulers`] | per scheduler: queue, share of the last second busy, queued work in time | one hot scheduler in an idle pool shows here, not in the sums |
//! | [`LoadSample::memory_bytes`] | the OS process's resident memory | what the OOM killer looks at |
//! | [`LoadSample::mailbox_max`], [`LoadSample::mailbox_fill`] | the longest mailbox; the fullest bounded one, as a share of its capacity | a process falling behind |
//!
//! The sampler starts on the first call to [`Node::load`] and runs as tasks of the node (on its
//! schedulers, if it has them): the probes, and a collector once a second. A node without
//! schedulers has one probe on its tokio runtime and no per-scheduler figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::{Node, OwnedTask};

/// How often a probe asks to be woken.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How often the collector publishes a sample.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// A snapshot of the node's load, from [`Node::load`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LoadSample {
    /// How late timers fired in the last second, at worst, where the node's processes run.
    pub lag: Duration,
    /// Processes (and tasks) waiting to run now, over all the node's schedulers (0 for a node
    /// on a plain tokio runtime, which does not say).
    pub run_queue: usize,
    /// Each scheduler's load (empty for a node on a plain tokio runtime).
    pub schedulers: Vec<SchedulerSample>,
    /// The OS process's resident memory, in bytes (0 where `/proc` is missing).
    pub memory_bytes: u64,
    /// The longest mailbox now.
    pub mailbox_max: usize,
    /// The fullest bounded mailbox, as a share of its capacity (0 to 1; 0 with none bounded).
    pub mailbox_fill: f64,
    /// Samples published so far (0: none yet; the figures are then what could be read at once).
    pub samples: u64,
}

/// One scheduler's load in the last second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SchedulerSample {
    /// Processes queued on it now.
    pub queued: usize,
    /// The share of the last second it was running something (0 to 1).
    pub busy: f64,
    /// Its queue in time: queued processes times its mean run. A process woken now waits about
    /// this long.
    pub queued_work: Duration,
}

/// The sampler's state, kept by the node.
pub(crate) struct Sampler {
    last: Mutex<LoadSample>,
    /// The worst lateness any probe saw since the collector last looked, in nanoseconds.
    worst_lag_ns: AtomicU64,
    _tasks: Mutex<Vec<OwnedTask>>,
}

impl Node {
    /// The node's load, as its sampler last measured it (once a second): scheduling lag, run
    /// queue, per-scheduler load, memory and mailbox fill. The first call starts the sampler;
    /// until its first sample the lag reads zero.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let node = girder::Node::new("docs");
    /// let first = node.load();
    /// assert_eq!(first.samples, 0);
    /// tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    /// let load = node.load();
    /// assert!(load.samples >= 1);
    /// assert!(load.lag < std::time::Duration::from_secs(1));
    /// # }
    /// ```
    pub fn load(&self) -> LoadSample {
        let sampler = self.inner.sampler.get_or_init(|| start(self));
        sampler.last.lock().clone()
    }
}

fn start(node: &Node) -> Arc<Sampler> {
    let sampler = Arc::new(Sampler {
        last: Mutex::new(LoadSample::default()),
        worst_lag_ns: AtomicU64::new(0),
        _tasks: Mutex::new(Vec::new()),
    });
    *sampler.last.lock() = collect(node, &mut Vec::new(), Duration::ZERO, 0);
    let probes = node
        .inner
        .spawner
        .as_ref()
        .map_or(1, |s| s.stats().threads.max(1));
    let mut tasks = Vec::with_capacity(probes + 1);
    // Spawned from here, probes are dealt round-robin over the schedulers; one that is stolen
    // still measures a scheduler of the node.
    for _ in 0..probes {
        tasks.push(node.spawn_owned(probe(Arc::downgrade(&sampler))));
    }
    let weak_node = Arc::downgrade(&node.inner);
    tasks.push(node.spawn_owned(collector(weak_node, Arc::downgrade(&sampler))));
    *sampler._tasks.lock() = tasks;
    sampler
}

/// Asks to be woken every [`PROBE_EVERY`] and notes how late it was.
async fn probe(sampler: Weak<Sampler>) {
    loop {
        let asked = Instant::now();
        tokio::time::sleep(PROBE_EVERY).await;
        let late = asked.elapsed().saturating_sub(PROBE_EVERY).as_nanos() as u64;
        let Some(s) = sampler.upgrade() else { return };
        s.worst_lag_ns.fetch_max(late, Ordering::Relaxed);
    }
}

/// Publishes a sample every [`COLLECT_EVERY`].
async fn collector(node: Weak<crate::node::NodeInner>, sampler: Weak<Sampler>) {
    let mut before = Vec::new();
    let mut at = Instant::now();
    let mut n = 0;
    loop {
        tokio::time::sleep(COLLECT_EVERY).await;
        let (Some(inner), Some(s)) = (node.upgrade(), sampler.upgrade()) else {
            return;
        };
        let node = Node { inner };
        let lag = Duration::from_nanos(s.worst_lag_ns.swap(0, Ordering::Relaxed));
        let elapsed = at.elapsed();
        at = Instant::now();
        n += 1;
        let mut sample = collect(&node, &mut before, elapsed, n);
        sample.lag = lag;
        *s.last.lock() = sample;
    }
}

/// Reads everything but the lag; `before` holds the schedulers' counters of the last call,
/// `elapsed` ago.
fn collect(
    node: &Node,
    before: &mut Vec<crate::scheduler::SchedulerLoad>,
    elapsed: Duration,
    samples: u64,
) -> LoadSample {
    let loads = node
        .inner
        .spawner
        .as_ref()
        .map(|s| s.loads())
        .unwrap_or_default();
    let schedulers = loads
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let busy = match before.get(i) {
                Some(b) if !elapsed.is_zero() => {
                    let parked = l.parked_ns.saturating_sub(b.parked_ns) as f64;
                    (1.0 - parked / elapsed.as_nanos() as f64).clamp(0.0, 1.0)
                }
                _ => 0.0,
            };
            SchedulerSample {
                queued: l.queued,
                busy,
                queued_work: Duration::from_nanos(l.mean_run_ns.saturating_mul(l.queued as u64)),
            }
        })
        .collect::<Vec<_>>();
    *before = loads;
    let (mailbox_max, mailbox_fill) = mailboxes(node);
    LoadSample {
        lag: Duration::ZERO,
        run_queue: schedulers.iter().map(|s| s.queued).sum(),
        schedulers,
        memory_bytes: resident_bytes(),
        mailbox_max,
        mailbox_fill,
        samples,
    }
}

/// The longest mailbox, and the fullest bounded one's share of its capacity.
fn mailboxes(node: &Node) -> (usize, f64) {
    let procs: Vec<_> = node.inner.procs.iter().map(|e| e.value().clone()).collect();
    let (mut max, mut fill) = (0usize, 0f64);
    for p in procs {
        let len = p.mailbox_len();
        max = max.max(len);
        if let Some(m) = p.mailbox_stats() {
            fill = fill.max(len as f64 / m.capacity.max(1) as f64);
        }
    }
    (max, fill.min(1.0))
}

/// The OS process's resident memory in bytes, from `/proc/self/statm` (0 where there is none).
///
/// ```
/// let rss = girder::sampler::resident_bytes();
/// assert!(rss > 0 || !std::path::Path::new("/proc/self/statm").exists());
/// ```
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * page_size())
        .unwrap_or(0)
}

fn page_size() -> u64 {
    // 4 KiB on the platforms Girder runs on; `statm` counts in pages.
    4096
}
