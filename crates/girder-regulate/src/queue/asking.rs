//! The future of an ask: granted, rejected, or waiting in the queue with a timer for its
//! expiry (and, for one waiter at a time, for the rate regulator's next token).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

use super::state::{Arrival, Look};
use super::{Ask, Permit, Queue};
use crate::Rejected;

/// The future [`Queue::ask`], [`Queue::ask_until`] and [`Queue::ask_with`] return: a
/// [`Permit`], or why not.
///
/// Nothing happens until it is first polled. Dropping it while it waits takes it out of the
/// queue at once, and a grant it was handed but had not yet seen goes to the next waiter, so a
/// cancelled caller leaves no ghost holding capacity.
///
/// ```
/// use std::time::Duration;
/// use girder_regulate::Queue;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let queue = Queue::builder().count(1).build();
/// let held = queue.ask().await.unwrap();
/// // A caller that gives up: its ask is dropped while waiting.
/// let gave_up = tokio::time::timeout(Duration::from_millis(10), queue.ask()).await;
/// assert!(gave_up.is_err());
/// assert_eq!(queue.stats().queued, 0);
/// drop(held);
/// assert!(queue.try_ask().is_ok());
/// # }
/// ```
#[must_use = "an ask does nothing until awaited"]
#[derive(Debug)]
pub struct Asking<'a> {
    queue: &'a Queue,
    ask: Ask,
    /// Set once queued, until the outcome is seen.
    id: Option<u64>,
    done: bool,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<'a> Asking<'a> {
    pub(crate) fn new(queue: &'a Queue, ask: Ask) -> Asking<'a> {
        Asking {
            queue,
            ask,
            id: None,
            done: false,
            sleep: None,
        }
    }

    fn granted(&mut self) -> Poll<Result<Permit, Rejected>> {
        self.done = true;
        Poll::Ready(Ok(Permit::new(Arc::clone(&self.queue.inner))))
    }

    fn rejected(&mut self, r: Rejected) -> Poll<Result<Permit, Rejected>> {
        self.done = true;
        Poll::Ready(Err(r))
    }
}

impl Future for Asking<'_> {
    type Output = Result<Permit, Rejected>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.done, "`Asking` polled after it completed");
        let inner = &this.queue.inner;
        let id = match this.id {
            Some(id) => id,
            None => {
                let mut wakers = Vec::new();
                let arrival = inner
                    .state
                    .lock()
                    .arrive(&inner.cfg, &this.ask, &mut wakers);
                wakers.into_iter().for_each(std::task::Waker::wake);
                match arrival {
                    Arrival::Granted => return this.granted(),
                    Arrival::Rejected(r) => return this.rejected(r),
                    Arrival::Queued(id) => *this.id.insert(id),
                }
            }
        };
        loop {
            let look = inner.state.lock().look(id, cx.waker());
            let wake_at = match look {
                Look::Granted => return this.granted(),
                Look::Rejected(r) => return this.rejected(r),
                Look::Waiting(None) => return Poll::Pending,
                Look::Waiting(Some(at)) => at,
            };
            let sleep = match &mut this.sleep {
                Some(s) => {
                    if s.deadline() != wake_at {
                        s.as_mut().reset(wake_at);
                    }
                    s
                }
                None => this
                    .sleep
                    .insert(Box::pin(tokio::time::sleep_until(wake_at))),
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let mut wakers = Vec::new();
            inner.state.lock().on_timer(id, Instant::now(), &mut wakers);
            wakers.into_iter().for_each(std::task::Waker::wake);
        }
    }
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        if let (Some(id), false) = (self.id, self.done) {
            let mut wakers = Vec::new();
            self.queue.inner.state.lock().cancel(id, &mut wakers);
            wakers.into_iter().for_each(std::task::Waker::wake);
        }
    }
}
