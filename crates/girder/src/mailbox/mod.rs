//! The mailbox: one queue core shared by bounded and unbounded mailboxes.
//!
//! Every process owns one mailbox with two lanes:
//!
//! * the **user lane** holds the process's typed messages, in the order each sender sent them;
//! * the **system lane** holds trapped exit signals, monitor `Down` notifications and stop
//!   requests. The receiver
//!   always looks at the system lane first, so a signal is never stuck behind a long user queue.
//!
//! Untrappable signals (a `kill`, or an abnormal exit reaching a process that does not trap exits)
//! do not go through the mailbox at all: they end the process's task directly.
//!
//! A mailbox is unbounded unless spawned with a capacity. What a bounded mailbox does when it
//! is full is its [`Overflow`] policy, named and counted, never silent:
//!
//! | policy | [`Addr::send`](crate::Addr::send) | [`Addr::send_wait`](crate::Addr::send_wait) | for |
//! |---|---|---|---|
//! | [`Overflow::Wait`] (default) | [`SendError::Full`], message handed back | waits for room | requests: the sender slows down |
//! | [`Overflow::FailFast`] | `Full` | `Full` at once | a receiver no sender may wait on |
//! | [`Overflow::DropNewest`] | `Ok`, the new message dropped and counted | the same | telemetry: keep the older picture |
//! | [`Overflow::DropOldest`] | `Ok`, the oldest queued message dropped and counted | the same | telemetry: keep the latest |
//!
//! Refusals and drops are counted per process ([`MailboxStats`], [`Addr::mailbox_stats`]) and
//! per node ([`NodeStats`](crate::stats::NodeStats)), which girder-ops exports. The capacity can
//! change while the process runs ([`Addr::set_mailbox_capacity`]), which is how a regulator
//! tightens and loosens a queue.
//!
//! See `docs/decisions/001-mailbox.md` for why the core is a short critical section over a
//! `VecDeque` that the receiver drains in batches, and why that section is guarded by a spin
//! lock.
//!
//! [`Addr::mailbox_stats`]: crate::Addr::mailbox_stats
//! [`Addr::set_mailbox_capacity`]: crate::Addr::set_mailbox_capacity

mod bound;
mod error;
mod lock;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context as TaskCx, Poll, Waker};

pub use bound::{MailboxStats, Overflow};
pub use error::SendError;

use bound::Bound;

use crate::{Down, ExitReason, Pid};
use lock::Mutex;

/// A signal that is delivered as a message: a trapped exit or a monitor notification.
#[derive(Debug)]
pub(crate) enum SysMsg {
    Exit {
        from: Pid,
        reason: ExitReason,
    },
    Down(Down),
    Stop(ExitReason),
    /// A `sys` request (boxed: rare, and it keeps the lane's entries small).
    Sys(Box<crate::sys::SysRequest>),
}

/// What the receiver got: a user message or a system message.
pub(crate) enum Received<M> {
    User(M),
    Sys(SysMsg),
}

struct Inner<M> {
    user: VecDeque<M>,
    sys: VecDeque<SysMsg>,
    waker: Option<Waker>,
    closed: bool,
}

pub(crate) struct Mailbox<M> {
    inner: Mutex<Inner<M>>,
    has_sys: AtomicBool,
    /// The receiver's waker is in `inner` and nothing was queued since the receiver last
    /// looked: a receiver that finds this set, for the waker it noted in its [`Batch`], may
    /// wait without taking the lock. Cleared under the lock by every push and by anything else
    /// that changes the waker.
    armed: AtomicBool,
    /// A bounded mailbox's room (one permit per message that may still be queued), policy
    /// and counts.
    bound: Option<Box<Bound>>,
    /// User messages ever queued here, and ever moved to the receiver's batch: written only
    /// under the lock (plain loads and stores, no read-modify-write), read without it, so the
    /// runtime's message metrics and the mailbox's length cost nothing on the hot path.
    delivered: AtomicU64,
    swapped: AtomicU64,
}

impl<M> Mailbox<M> {
    pub(crate) fn new(capacity: Option<usize>, overflow: Overflow) -> Self {
        Mailbox {
            inner: Mutex::new(Inner {
                user: VecDeque::new(),
                sys: VecDeque::new(),
                waker: None,
                closed: false,
            }),
            has_sys: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            bound: capacity.map(|c| Box::new(Bound::new(c, overflow))),
            delivered: AtomicU64::new(0),
            swapped: AtomicU64::new(0),
        }
    }

    /// Queues `m` without waiting: a full bounded mailbox applies its [`Overflow`] policy.
    pub(crate) fn send(&self, m: M) -> Result<(), SendError<M>> {
        if let Some(bound) = &self.bound {
            match bound.permits.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(tokio::sync::TryAcquireError::NoPermits) => return self.overflow(bound, m),
                Err(tokio::sync::TryAcquireError::Closed) => return Err(SendError::NoProc(m)),
            }
        }
        self.push(m)
    }

    /// Queues `m`, waiting for room in a bounded mailbox whose policy is [`Overflow::Wait`].
    pub(crate) async fn send_wait(&self, m: M) -> Result<(), SendError<M>> {
        if let Some(bound) = &self.bound {
            if bound.policy != Overflow::Wait {
                return self.send(m);
            }
            match bound.permits.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return Err(SendError::NoProc(m)),
            }
        }
        self.push(m)
    }

    /// A full bounded mailbox's answer to `m`.
    #[cold]
    fn overflow(&self, bound: &Bound, m: M) -> Result<(), SendError<M>> {
        match bound.policy {
            Overflow::Wait | Overflow::FailFast => {
                bound.refused.fetch_add(1, Ordering::Relaxed);
                Err(SendError::Full(m))
            }
            Overflow::DropNewest => {
                bound.dropped.fetch_add(1, Ordering::Relaxed);
                drop(m);
                Ok(())
            }
            Overflow::DropOldest => {
                let mut inner = self.inner.lock();
                if inner.closed {
                    return Err(SendError::NoProc(m));
                }
                bound.dropped.fetch_add(1, Ordering::Relaxed);
                // Everything queued may already be in the receiver's batch, out of reach: then
                // the newest goes instead.
                let Some(oldest) = inner.user.pop_front() else {
                    drop(inner);
                    drop(m);
                    return Ok(());
                };
                // The oldest leaves as if taken (so the queue's length stays right) and `m`
                // takes its place, and its permit.
                inner.user.push_back(m);
                let swapped = self.swapped.load(Ordering::Relaxed) + 1;
                self.swapped.store(swapped, Ordering::Relaxed);
                let delivered = self.delivered.load(Ordering::Relaxed) + 1;
                self.delivered.store(delivered, Ordering::Relaxed);
                self.armed.store(false, Ordering::Relaxed);
                let waker = inner.waker.take();
                drop(inner);
                drop(oldest);
                if let Some(w) = waker {
                    w.wake();
                }
                Ok(())
            }
        }
    }

    /// The bounded mailbox's capacity, policy and counts (`None`: unbounded).
    pub(crate) fn stats(&self) -> Option<MailboxStats> {
        self.bound.as_ref().map(|b| b.stats())
    }

    /// Changes a bounded mailbox's capacity; false if it is unbounded.
    pub(crate) fn set_capacity(&self, n: usize) -> bool {
        match &self.bound {
            Some(b) => {
                b.set_capacity(n);
                true
            }
            None => false,
        }
    }

    fn push(&self, m: M) -> Result<(), SendError<M>> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(SendError::NoProc(m));
        }
        inner.user.push_back(m);
        // Only ever written under the lock: a plain increment.
        let delivered = self.delivered.load(Ordering::Relaxed) + 1;
        self.delivered.store(delivered, Ordering::Relaxed);
        self.armed.store(false, Ordering::Relaxed);
        let waker = inner.waker.take();
        drop(inner);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queues a system message; false if the mailbox is closed (the process is gone).
    pub(crate) fn push_sys(&self, s: SysMsg) -> bool {
        let mut inner = self.inner.lock();
        if inner.closed {
            return false;
        }
        inner.sys.push_back(s);
        self.has_sys.store(true, Ordering::Release);
        self.armed.store(false, Ordering::Relaxed);
        let waker = inner.waker.take();
        drop(inner);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Removes and returns the first system message matching `pred` (selective receive).
    pub(crate) fn take_sys(&self, pred: impl Fn(&SysMsg) -> bool) -> Option<SysMsg> {
        let mut inner = self.inner.lock();
        let pos = inner.sys.iter().position(pred)?;
        let msg = inner.sys.remove(pos);
        if inner.sys.is_empty() {
            self.has_sys.store(false, Ordering::Release);
        }
        msg
    }

    /// Drops every queued system message matching `pred` (used by unlink and demonitor).
    pub(crate) fn remove_sys(&self, pred: impl Fn(&SysMsg) -> bool) {
        let mut inner = self.inner.lock();
        inner.sys.retain(|m| !pred(m));
        if inner.sys.is_empty() {
            self.has_sys.store(false, Ordering::Release);
        }
    }

    /// Registers the receiver's waker so a later system message wakes it (selective receive).
    pub(crate) fn poll_sys(
        &self,
        cx: &mut TaskCx<'_>,
        pred: impl Fn(&SysMsg) -> bool,
    ) -> Poll<SysMsg> {
        let mut inner = self.inner.lock();
        if let Some(pos) = inner.sys.iter().position(pred) {
            let msg = inner.sys.remove(pos).expect("position is in range");
            if inner.sys.is_empty() {
                self.has_sys.store(false, Ordering::Release);
            }
            return Poll::Ready(msg);
        }
        set_waker(&mut inner.waker, cx.waker());
        // Not the waker the receiver's batch noted.
        self.armed.store(false, Ordering::Relaxed);
        Poll::Pending
    }

    /// Moves every queued system message matching `pred` into `out`, in one pass; when none
    /// matches, registers the receiver's waker and returns `Pending` (a selective receive of
    /// many at once, for a supervisor waiting on many children).
    pub(crate) fn poll_sys_batch(
        &self,
        cx: &mut TaskCx<'_>,
        pred: impl Fn(&SysMsg) -> bool,
        out: &mut Vec<SysMsg>,
    ) -> Poll<()> {
        let mut inner = self.inner.lock();
        let before = out.len();
        // One pass that keeps the order of what stays; `VecDeque::retain` cannot hand the
        // matches out.
        let mut kept = VecDeque::with_capacity(inner.sys.len());
        while let Some(m) = inner.sys.pop_front() {
            if pred(&m) {
                out.push(m);
            } else {
                kept.push_back(m);
            }
        }
        inner.sys = kept;
        if inner.sys.is_empty() {
            self.has_sys.store(false, Ordering::Release);
        }
        if out.len() > before {
            return Poll::Ready(());
        }
        set_waker(&mut inner.waker, cx.waker());
        self.armed.store(false, Ordering::Relaxed);
        Poll::Pending
    }

    /// Closes the mailbox: later sends fail with `NoProc`. Returns what was queued, so the caller
    /// drops it outside the lock (dropping a pending call's reply handle wakes its caller).
    pub(crate) fn close(&self) -> (VecDeque<M>, VecDeque<SysMsg>) {
        if let Some(bound) = &self.bound {
            bound.permits.close();
        }
        let mut inner = self.inner.lock();
        inner.closed = true;
        inner.waker = None;
        self.armed.store(false, Ordering::Relaxed);
        (
            std::mem::take(&mut inner.user),
            std::mem::take(&mut inner.sys),
        )
    }

    /// User messages ever queued here.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Whether a system message is queued (read without the lock).
    #[inline]
    pub(crate) fn has_sys(&self) -> bool {
        self.has_sys.load(Ordering::Acquire)
    }

    /// User messages in the shared queue, read without the lock (a moment old at most).
    #[inline]
    pub(crate) fn shared_len(&self) -> usize {
        // Read swapped first: a push between the two loads only makes this larger, never wrap.
        let swapped = self.swapped.load(Ordering::Relaxed);
        self.delivered
            .load(Ordering::Relaxed)
            .saturating_sub(swapped) as usize
    }

    /// Messages queued and not yet taken by the receiver.
    pub(crate) fn queued(&self) -> usize {
        let inner = self.inner.lock();
        inner.user.len() + inner.sys.len()
    }

    /// The receiver's side. `batch` is the receiver's own: it swaps the whole shared queue into
    /// it under one lock and then takes from it without locking. Whenever it takes the lock it
    /// also leaves its waker, so that when the batch runs out and nothing came meanwhile
    /// (`armed` still set) it can wait without locking again.
    pub(crate) fn poll_recv(&self, cx: &mut TaskCx<'_>, batch: &mut Batch<M>) -> Poll<Received<M>> {
        if self.has_sys.load(Ordering::Acquire) {
            if let Some(s) = self.take_sys(|_| true) {
                return Poll::Ready(Received::Sys(s));
            }
        }
        if let Some(m) = batch.queue.pop_front() {
            self.received(1);
            return Poll::Ready(Received::User(m));
        }
        // A stale `true` is harmless: the push that clears it also wakes the waker left here,
        // which is this one.
        let waker_id = identity(cx.waker());
        if self.armed.load(Ordering::Acquire) && batch.armed_for == waker_id {
            return Poll::Pending;
        }
        let mut inner = self.inner.lock();
        if let Some(s) = inner.sys.pop_front() {
            if inner.sys.is_empty() {
                self.has_sys.store(false, Ordering::Release);
            }
            return Poll::Ready(Received::Sys(s));
        }
        set_waker(&mut inner.waker, cx.waker());
        self.armed.store(true, Ordering::Relaxed);
        batch.armed_for = waker_id;
        if inner.user.is_empty() {
            return Poll::Pending;
        }
        std::mem::swap(&mut inner.user, &mut batch.queue);
        // Everything delivered so far is now in the batch.
        self.swapped
            .store(self.delivered.load(Ordering::Relaxed), Ordering::Relaxed);
        drop(inner);
        let m = batch.queue.pop_front().expect("swapped a non-empty queue");
        self.received(1);
        Poll::Ready(Received::User(m))
    }

    /// A message left the mailbox: a bounded mailbox has room for one more.
    #[inline]
    fn received(&self, n: usize) {
        if let Some(bound) = &self.bound {
            bound.returned(n);
        }
    }
}

/// The receiver's end of a mailbox: its private batch of messages already taken from the
/// shared queue, and which waker it last left in the mailbox.
pub(crate) struct Batch<M> {
    queue: VecDeque<M>,
    /// `identity` of that waker: two words rather than a clone, so noting it costs no atomic
    /// reference count.
    armed_for: (usize, usize),
}

impl<M> Batch<M> {
    pub(crate) fn new() -> Self {
        Batch {
            queue: VecDeque::new(),
            armed_for: (0, 0),
        }
    }

    /// Messages taken from the mailbox and not yet handed out.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// What `Waker::will_wake` compares: the data pointer and the vtable.
fn identity(w: &Waker) -> (usize, usize) {
    (w.data() as usize, w.vtable() as *const _ as usize)
}

fn set_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}
