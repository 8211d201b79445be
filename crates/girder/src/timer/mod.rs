//! Timers: send a message later, or cancel it; and the calls' deadlines and timeouts.
//!
//! [`send_after`] arms a timer in a wheel of the calling thread (`driver`, `wheel`): arming and
//! cancelling cost a lock and a few slab writes whatever the number armed, and an armed timer
//! holds its message, a weak handle to its target and a slab entry, about 56 bytes; no task.
//! Call deadlines and state machine timeouts use one reusable timer per process (`call`).

mod call;
mod driver;
mod wheel;

pub(crate) use call::{slack, timeout_at, Deadline};
pub(crate) use driver::Owned;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::process::addr::Target;
use crate::{Addr, SendError};

/// A pending timer started by [`send_after`]. Dropping it does not cancel it (as in Erlang);
/// call [`cancel`](TimerRef::cancel).
pub struct TimerRef {
    wheel: Arc<driver::Shared>,
    key: wheel::Key,
    cancelled: AtomicBool,
}

impl TimerRef {
    /// Cancels the timer. True if it had not fired yet, so the message will never be sent;
    /// false if it had already fired (its message is in the mailbox, or on its way there) or
    /// was cancelled before.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use std::time::Duration;
    /// use girder::{send_after, Node};
    /// let node = Node::new("docs");
    /// let p = node.spawn(|mut ctx: girder::Context<&str>| async move {
    ///     ctx.recv().await;
    ///     girder::ExitReason::Normal
    /// });
    /// let t = send_after(&p, "later", Duration::from_secs(60));
    /// assert!(t.remaining().unwrap() <= Duration::from_secs(60));
    /// assert!(t.cancel());
    /// assert!(!t.cancel());
    /// assert_eq!((t.remaining(), t.has_fired()), (None, false));
    /// # }
    /// ```
    pub fn cancel(&self) -> bool {
        let cancelled = self.wheel.cancel(self.key);
        if cancelled {
            self.cancelled.store(true, Ordering::Release);
        }
        cancelled
    }

    /// True once the timer has fired: its message has been sent (or found its target gone),
    /// or is being sent.
    pub fn has_fired(&self) -> bool {
        !self.cancelled.load(Ordering::Acquire) && !self.wheel.is_armed(self.key)
    }

    /// Time left before it fires, in whole milliseconds (`erlang:read_timer/1`); `None` once
    /// it has fired or been cancelled.
    pub fn remaining(&self) -> Option<Duration> {
        self.wheel.remaining(self.key)
    }
}

impl fmt::Debug for TimerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerRef")
            .field("remaining", &self.remaining())
            .field("fired", &self.has_fired())
            .finish()
    }
}

/// Sends `msg` to `to` after `delay`. A process that has exited by then simply does not get it,
/// and an armed timer does not keep it (or its mailbox) in memory. A full bounded mailbox gets
/// the message as soon as there is room.
///
/// The timer goes into the calling thread's timer wheel (one per scheduler on a node's
/// [`Schedulers`](crate::Schedulers)), not a task of its own: a million armed timers are a
/// million small slab entries. Times are whole milliseconds, never early.
///
/// # Panics
///
/// Outside a tokio runtime.
///
/// ```
/// # #[tokio::main] async fn main() {
/// use std::time::Duration;
/// use girder::{send_after, Event, ExitReason, Node};
/// let node = Node::new("docs");
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// let p = node.spawn(|mut ctx| async move {
///     let Event::Message(tick) = ctx.recv().await else { return ExitReason::error("?") };
///     tx.send(tick).unwrap();
///     ExitReason::Normal
/// });
/// let t = send_after(&p, "tick", Duration::from_millis(10));
/// assert_eq!(rx.await.unwrap(), "tick");
/// assert!(t.has_fired());
/// assert!(!t.cancel());
/// # }
/// ```
pub fn send_after<M: Send + 'static>(to: &Addr<M>, msg: M, delay: Duration) -> TimerRef {
    let wheel = driver::current();
    let key = match &to.target {
        Target::Local(core) => {
            // Weak, and cancelled at the target's exit: a timer keeps neither a dead process's
            // core and mailbox nor its own slot in the wheel.
            let weak = Arc::downgrade(core);
            let key = wheel.arm(
                delay,
                Box::new(move || {
                    if let Some(core) = weak.upgrade() {
                        deliver(Addr::local(core), msg);
                    }
                }),
            );
            let mut meta = core.header.meta.lock();
            if meta.has_exited() {
                drop(meta);
                wheel.cancel(key);
            } else {
                meta.extra().timers.push(&wheel, key);
            }
            key
        }
        Target::Remote(_) => {
            let to = to.clone();
            wheel.arm(delay, Box::new(move || deliver(to, msg)))
        }
    };
    TimerRef {
        wheel,
        key,
        cancelled: AtomicBool::new(false),
    }
}

fn deliver<M: Send + 'static>(to: Addr<M>, msg: M) {
    if let Err(SendError::Full(msg)) = to.send(msg) {
        tokio::spawn(async move {
            let _ = to.send_wait(msg).await;
        });
    }
}
