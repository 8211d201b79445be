//! Timers: send a message later, or cancel it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::process::local::{with_current, CallTimer};

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

/// Timeouts from this long on read the kernel's coarse clock (see [`deadline_after`]).
const COARSE_FROM: Duration = Duration::from_secs(1);
/// Added to a coarse deadline so it is never early: the coarse clock lags the precise one by
/// up to one kernel tick (4 ms at the usual 250 Hz), in either direction after mapping.
const COARSE_GRAIN: Duration = Duration::from_millis(10);

/// The deadline `timeout` from now. For timeouts of a second or more (a call's default is 5 s)
/// it reads the kernel's coarse monotonic clock, a few nanoseconds instead of ~20 for the
/// precise one, and pads it so that it is never early (at most `COARSE_GRAIN` late): a call
/// path reads the clock once per call and that read was 5-7% of a local call.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    if timeout < COARSE_FROM {
        return Instant::now() + timeout;
    }
    static BASE: std::sync::OnceLock<(std::time::Instant, coarsetime::Instant)> =
        std::sync::OnceLock::new();
    let (base, coarse_base) = *BASE.get_or_init(|| {
        (
            std::time::Instant::now(),
            coarsetime::Instant::now_without_cache_update(),
        )
    });
    let since: Duration = coarsetime::Instant::now_without_cache_update()
        .duration_since(coarse_base)
        .into();
    Instant::from_std(base + since) + timeout + COARSE_GRAIN
}

/// Awaits `fut` until `deadline`, or up to `slack` after it; `None` if that passes first.
/// Inside a process this reuses the process's timer and leaves it alone when it is already set
/// within `[deadline, deadline + slack]`: back-to-back calls then do not touch the timer wheel
/// at all (a reset is an atomic read-modify-write on the entry plus tick arithmetic, ~10% of a
/// busy caller's time), nor poll the timer when it is still armed for the same waker (two
/// more read-modify-writes per call). Elsewhere it uses a fresh timer.
pub(crate) fn timeout_at<F: Future>(deadline: Instant, slack: Duration, fut: F) -> Timeout<F> {
    let timer = match with_current(|p| p.calls().timer.take()).flatten() {
        Some(mut t) => {
            let set = t.sleep.deadline();
            if set < deadline || set > deadline + slack || t.sleep.is_elapsed() {
                t.sleep.as_mut().reset(deadline + slack / 2);
                t.armed_for = None;
            }
            t
        }
        None => CallTimer {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            armed_for: None,
        },
    };
    Timeout {
        fut,
        timer: Some(timer),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`timeout_at`]: a struct rather than an `async fn`, so a call's every poll
    /// goes through one layer less. Gives the timer back to the process when dropped.
    pub(crate) struct Timeout<F> {
        #[pin]
        fut: F,
        timer: Option<CallTimer>,
    }

    impl<F> PinnedDrop for Timeout<F> {
        fn drop(this: Pin<&mut Self>) {
            let Some(timer) = this.project().timer.take() else { return };
            let spare = with_current(move |p| {
                let slot = &mut p.calls().timer;
                match slot {
                    Some(_) => Some(timer),
                    None => {
                        *slot = Some(timer);
                        None
                    }
                }
            });
            // A timer the process did not keep (outside a process, or a nested call's) is
            // dropped here, after the borrow of the process's slot ended.
            drop(spare);
        }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Some(v));
        }
        let timer = this
            .timer
            .as_mut()
            .expect("a pending timeout has its timer");
        let armed = timer
            .armed_for
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if armed && !timer.sleep.is_elapsed() {
            return Poll::Pending;
        }
        match timer.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                timer.armed_for = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !armed {
                    timer.armed_for = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}
