//! A session's backlog as its publishers see it: how many QoS 1 and 2 messages it holds for a
//! connected client and has not yet handed on, so that a publisher can wait for a subscriber
//! that is behind instead of the session queueing (and past `max_queued` dropping) messages the
//! publisher has been told are delivered.
//!
//! The policy (decision 016): while a session is attached to a connection, holds at least
//! `backpressure_queued` messages and is not known to be stalled, a publishing connection
//! waits before it routes another QoS 1 or 2 message to it, and reads nothing from its own
//! socket meanwhile: TCP carries the wait back to the publishing client. A wait that lasts
//! `backpressure_timeout` marks the session stalled (its client is not acknowledging, or two
//! clients wait on each other): from then on its publishers pass, and its queue fills up to
//! `max_queued` and drops past it, counted, until it has drained to half the mark. An offline
//! session never holds anyone: its queue is for a client that may never come back.
//!
//! ```
//! use girder_mqtt::backlog::Backlog;
//! let b = Backlog::new(2);
//! b.attached(true);
//! b.sent();
//! b.sent();
//! assert!(b.holds());
//! b.received();
//! assert!(!b.holds());
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tokio::sync::Notify;

/// The shared half of a session's backlog.
#[derive(Debug)]
pub struct Backlog {
    /// Deliveries cast into the session's mailbox and not yet taken out of it.
    in_mailbox: AtomicUsize,
    /// The session's queue, as it last said.
    queued: AtomicUsize,
    /// The mark at which publishers wait.
    high: usize,
    attached: AtomicBool,
    stalled: AtomicBool,
    /// A publisher waits: the session wakes it once below the mark.
    waiting: AtomicBool,
    room: Notify,
}

impl Backlog {
    /// A backlog whose publishers wait from `high` messages on (0: never).
    pub fn new(high: usize) -> Self {
        Backlog {
            in_mailbox: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            high: if high == 0 { usize::MAX } else { high },
            attached: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            room: Notify::new(),
        }
    }

    fn held(&self) -> usize {
        self.in_mailbox.load(SeqCst) + self.queued.load(SeqCst)
    }

    /// True if a publisher should wait before routing a QoS 1 or 2 message to this session.
    pub fn holds(&self) -> bool {
        self.attached.load(SeqCst) && !self.stalled.load(SeqCst) && self.held() >= self.high
    }

    /// True while the session has a connection.
    pub fn is_attached(&self) -> bool {
        self.attached.load(SeqCst)
    }

    /// A delivery is about to be cast to the session (undo with [`received`](Self::received)
    /// if the cast fails).
    pub fn sent(&self) {
        self.in_mailbox.fetch_add(1, SeqCst);
    }

    /// The session took a delivery out of its mailbox.
    pub fn received(&self) {
        self.in_mailbox.fetch_sub(1, SeqCst);
        self.wake_if_room();
    }

    /// The session's queue now holds `n`.
    pub fn queued(&self, n: usize) {
        self.queued.store(n, SeqCst);
        if self.stalled.load(SeqCst) && self.held() <= self.high / 2 {
            self.stalled.store(false, SeqCst);
        }
        self.wake_if_room();
    }

    /// The session has a connection (true) or none (false: nobody waits for it).
    pub fn attached(&self, yes: bool) {
        self.attached.store(yes, SeqCst);
        if !yes {
            self.stalled.store(false, SeqCst);
            self.wake();
        }
    }

    fn wake_if_room(&self) {
        if self.waiting.load(SeqCst) && !self.holds() {
            self.wake();
        }
    }

    fn wake(&self) {
        self.waiting.store(false, SeqCst);
        self.room.notify_waiters();
    }

    /// Waits while the session [`holds`](Self::holds), at most `timeout`; true if it made room,
    /// false if the wait timed out, and then the session is marked stalled and holds nobody
    /// until it has drained to half its mark.
    pub async fn wait_room(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before the check, so a wake between the check and the wait is kept.
            room.as_mut().enable();
            self.waiting.store(true, SeqCst);
            if !self.holds() {
                return true;
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                if self.holds() {
                    self.stalled.store(true, SeqCst);
                    tracing::debug!(
                        held = self.held(),
                        "a session kept publishers waiting past the timeout: taken as stalled"
                    );
                    self.wake();
                    return false;
                }
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::task::JoinHandle;

    /// A publisher waiting for room (for long), once it has had time to start waiting.
    async fn waiting(b: &Arc<Backlog>) -> JoinHandle<bool> {
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.wait_room(Duration::from_secs(30)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiter
    }

    /// What the waiter's wait came to, once it has been woken.
    async fn woken(waiter: JoinHandle<bool>) -> bool {
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .unwrap()
    }

    #[test]
    fn an_offline_session_never_holds() {
        let b = Backlog::new(1);
        b.sent();
        b.queued(10);
        assert!(!b.holds());
        b.attached(true);
        assert!(b.holds());
        b.attached(false);
        assert!(!b.holds());
    }

    #[test]
    fn a_mark_of_zero_holds_nobody() {
        let b = Backlog::new(0);
        b.attached(true);
        b.queued(usize::MAX / 2);
        assert!(!b.holds());
    }

    #[tokio::test]
    async fn a_waiting_publisher_is_woken_when_the_session_drains() {
        let b = Arc::new(Backlog::new(3));
        b.attached(true);
        b.queued(5);
        let waiter = waiting(&b).await;
        assert!(
            !waiter.is_finished(),
            "it waits while the session is at its mark"
        );
        b.queued(2);
        assert!(woken(waiter).await, "it made room");
    }

    #[tokio::test]
    async fn a_wait_past_the_timeout_marks_the_session_stalled_until_it_drains_to_half() {
        let b = Backlog::new(10);
        b.attached(true);
        b.queued(12);
        assert!(!b.wait_room(Duration::from_millis(20)).await);
        assert!(!b.holds(), "a stalled session holds nobody");
        b.queued(6);
        assert!(!b.holds());
        b.queued(5);
        b.queued(12);
        assert!(
            b.holds(),
            "drained to half its mark, it holds publishers again"
        );
    }

    #[tokio::test]
    async fn a_session_that_detaches_releases_its_publishers() {
        let b = Arc::new(Backlog::new(1));
        b.attached(true);
        b.queued(4);
        let waiter = waiting(&b).await;
        b.attached(false);
        assert!(woken(waiter).await, "it made room");
    }
}
