//! Runtime statistics: what the node's processes are doing, counted as a side effect of the
//! runtime, never by user handlers.
//!
//! The hot paths pay (almost) nothing: a message is counted under the mailbox lock its push
//! takes anyway, exits and spawns are counted once each, and one call in [`call_sampling`]
//! (default 16) is timed into the `girder_call_duration_seconds` histogram of the
//! [`metrics`](https://docs.rs/metrics) facade. [`Node::stats`] adds the rest up when asked, which
//! is what an exporter (`girder-ops`) does at each scrape.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;

use crate::{ExitReason, Node, Pid};

/// A snapshot of a node's runtime counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    /// Processes alive now.
    pub processes: usize,
    /// Processes ever spawned.
    pub spawned: u64,
    /// Processes ever exited, by reason.
    pub exits: ExitCounts,
    /// User messages ever delivered to mailboxes (alive and exited processes).
    pub messages_in: u64,
    /// User messages taken by their processes (delivered minus still queued).
    pub messages_out: u64,
    /// Messages queued in all mailboxes now.
    pub mailbox_sum: u64,
    /// The longest mailbox now, and whose it is.
    pub mailbox_max: usize,
    /// The process with the longest mailbox.
    pub mailbox_max_pid: Option<Pid>,
    /// Restarts made by the node's supervisors, ever.
    pub restarts: u64,
    /// Messages dropped by full mailboxes' [`Overflow`](crate::Overflow) policies, ever.
    pub mailbox_dropped: u64,
    /// Sends refused by full mailboxes (`Full`), ever.
    pub mailbox_refused: u64,
    /// Calls dropped by their server or state machine before they started because their
    /// caller's deadline had passed while they waited, ever.
    pub calls_expired: u64,
}

/// Exits by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExitCounts {
    /// `Normal`.
    pub normal: u64,
    /// `Shutdown`.
    pub shutdown: u64,
    /// `Kill` / `Killed`.
    pub killed: u64,
    /// `NoProc`.
    pub noproc: u64,
    /// `NoConnection`.
    pub noconnection: u64,
    /// `Error(..)`.
    pub error: u64,
    /// `Panic(..)`.
    pub panic: u64,
}

impl ExitCounts {
    /// `(label, count)` pairs, for exporters.
    pub fn by_reason(&self) -> [(&'static str, u64); 7] {
        [
            ("normal", self.normal),
            ("shutdown", self.shutdown),
            ("killed", self.killed),
            ("noproc", self.noproc),
            ("noconnection", self.noconnection),
            ("error", self.error),
            ("panic", self.panic),
        ]
    }
}

/// The node's own counters (the rest is read off the processes).
#[derive(Default)]
pub(crate) struct Counters {
    exits: [AtomicU64; 7],
    /// Messages delivered to processes that have exited.
    messages_of_exited: AtomicU64,
    /// Messages dropped and sends refused by mailboxes of processes that have exited.
    dropped_of_exited: AtomicU64,
    refused_of_exited: AtomicU64,
    restarts: AtomicU64,
    calls_expired: AtomicU64,
}

impl Counters {
    pub(crate) fn call_expired(&self) {
        self.calls_expired.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn exited(
        &self,
        reason: &ExitReason,
        messages_in: u64,
        mailbox: Option<crate::MailboxStats>,
    ) {
        if let Some(m) = mailbox {
            if m.dropped > 0 {
                self.dropped_of_exited
                    .fetch_add(m.dropped, Ordering::Relaxed);
            }
            if m.refused > 0 {
                self.refused_of_exited
                    .fetch_add(m.refused, Ordering::Relaxed);
            }
        }
        let i = match reason {
            ExitReason::Normal => 0,
            ExitReason::Shutdown => 1,
            ExitReason::Kill | ExitReason::Killed => 2,
            ExitReason::NoProc => 3,
            ExitReason::NoConnection => 4,
            ExitReason::Error(_) => 5,
            ExitReason::Panic(_) => 6,
        };
        self.exits[i].fetch_add(1, Ordering::Relaxed);
        if messages_in > 0 {
            self.messages_of_exited
                .fetch_add(messages_in, Ordering::Relaxed);
        }
    }
}

impl Node {
    /// Adds up the node's runtime counters. Walks the process table (taking each mailbox lock
    /// briefly), so it is for scrapes and dashboards, not for hot paths.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{Event, ExitReason, Node};
    /// let node = Node::new("docs");
    /// let p = node.spawn(|mut ctx| async move {
    ///     loop {
    ///         if let Event::<()>::Stop(reason) = ctx.recv().await {
    ///             return reason;
    ///         }
    ///     }
    /// });
    /// p.send(()).unwrap();
    /// p.send(()).unwrap();
    /// assert_eq!(node.stats().messages_in, 2);
    /// p.stop(ExitReason::Shutdown);
    /// p.wait_exit().await;
    /// let s = node.stats();
    /// assert_eq!((s.spawned, s.exits.shutdown, s.processes), (1, 1, 0));
    /// assert_eq!(s.messages_in, 2);
    /// # }
    /// ```
    pub fn stats(&self) -> NodeStats {
        let c = &self.inner.counters;
        let e = |i: usize| c.exits[i].load(Ordering::Relaxed);
        let mut s = NodeStats {
            spawned: self.spawned(),
            restarts: self.restarts(),
            exits: ExitCounts {
                normal: e(0),
                shutdown: e(1),
                killed: e(2),
                noproc: e(3),
                noconnection: e(4),
                error: e(5),
                panic: e(6),
            },
            ..NodeStats::default()
        };
        let procs: Vec<_> = self.inner.procs.iter().map(|e| e.value().clone()).collect();
        s.processes = procs.len();
        let mut delivered = c.messages_of_exited.load(Ordering::Relaxed);
        s.mailbox_dropped = c.dropped_of_exited.load(Ordering::Relaxed);
        s.calls_expired = c.calls_expired.load(Ordering::Relaxed);
        s.mailbox_refused = c.refused_of_exited.load(Ordering::Relaxed);
        for p in procs {
            let len = p.mailbox_len();
            delivered += p.messages_in();
            if let Some(m) = p.mailbox_stats() {
                s.mailbox_dropped += m.dropped;
                s.mailbox_refused += m.refused;
            }
            s.mailbox_sum += len as u64;
            if len > s.mailbox_max {
                s.mailbox_max = len;
                s.mailbox_max_pid = Some(p.header().pid);
            }
        }
        s.messages_in = delivered;
        s.messages_out = delivered.saturating_sub(s.mailbox_sum);
        s
    }

    /// Restarts made by this node's supervisors, ever: one counter read, cheap enough to poll
    /// (a restart-storm alarm) where [`stats`](Self::stats) walks every process.
    ///
    /// ```
    /// let node = girder::Node::new("docs");
    /// assert_eq!(node.restarts(), 0);
    /// ```
    pub fn restarts(&self) -> u64 {
        self.inner.counters.restarts.load(Ordering::Relaxed)
    }
}

static SAMPLING: AtomicU32 = AtomicU32::new(16);

/// One call in `n` is timed into the call-latency histogram; 0 turns timing off. The default
/// is 16: a timing costs two clock reads and a histogram update, which would be measurable on
/// every call but not on one in sixteen.
///
/// ```
/// girder::stats::set_call_sampling(0); // no call timing at all
/// assert_eq!(girder::stats::call_sampling(), 0);
/// girder::stats::set_call_sampling(16);
/// ```
pub fn set_call_sampling(n: u32) {
    SAMPLING.store(n, Ordering::Relaxed);
}

/// See [`set_call_sampling`].
pub fn call_sampling() -> u32 {
    SAMPLING.load(Ordering::Relaxed)
}

thread_local! {
    /// Calls on this thread until the next timed one.
    static UNTIL_SAMPLE: Cell<u32> = const { Cell::new(0) };
}

/// True if this call is to be timed.
#[inline]
pub(crate) fn sample_call() -> bool {
    let n = SAMPLING.load(Ordering::Relaxed);
    if n == 0 {
        return false;
    }
    // A countdown rather than a counter taken modulo `n`: the division cost as much as a
    // locked instruction on every call.
    UNTIL_SAMPLE.with(|left| match left.get() {
        0 | 1 => {
            left.set(n);
            true
        }
        more => {
            left.set(more - 1);
            false
        }
    })
}

/// Times a sampled call: records when dropped.
pub(crate) struct CallTimer(Option<std::time::Instant>);

impl CallTimer {
    #[inline]
    pub(crate) fn start() -> CallTimer {
        CallTimer(sample_call().then(std::time::Instant::now))
    }
}

impl Drop for CallTimer {
    #[inline]
    fn drop(&mut self) {
        if let Some(start) = self.0 {
            record_call(start.elapsed());
        }
    }
}

/// Records a timed call.
#[cold]
fn record_call(took: Duration) {
    static HISTOGRAM: OnceLock<metrics::Histogram> = OnceLock::new();
    HISTOGRAM
        .get_or_init(|| metrics::histogram!("girder_call_duration_seconds"))
        .record(took.as_secs_f64());
}
