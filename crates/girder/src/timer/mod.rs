//! Timers: send a message later, or cancel it; and the calls' deadlines and timeouts.

mod call;

pub(crate) use call::{slack, timeout_at, Deadline};

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;

use crate::Addr;

const ARMED: u8 = 0;
const FIRED: u8 = 1;
const CANCELLED: u8 = 2;

/// A pending timer started by [`send_after`]. Dropping it does not cancel it (as in Erlang);
/// call [`cancel`](TimerRef::cancel).
#[derive(Debug)]
pub struct TimerRef {
    state: Arc<AtomicU8>,
    task: AbortHandle,
}

impl TimerRef {
    /// Cancels the timer. True if it had not fired yet, so the message will never be sent.
    pub fn cancel(&self) -> bool {
        let cancelled = self
            .state
            .compare_exchange(ARMED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        self.task.abort();
        cancelled
    }

    /// True once the message has been sent (or found its target gone).
    pub fn has_fired(&self) -> bool {
        self.state.load(Ordering::Acquire) == FIRED
    }
}

/// Sends `msg` to `to` after `delay`. A process that has exited by then simply does not get it.
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
    let state = Arc::new(AtomicU8::new(ARMED));
    let to = to.clone();
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if task_state
            .compare_exchange(ARMED, FIRED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // A full bounded mailbox gets the message as soon as there is room.
            let _ = to.send_wait(msg).await;
        }
    });
    TimerRef {
        state,
        task: task.abort_handle(),
    }
}
