//! The grant: a guard holding one unit of the queue's capacity.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::limit::Outcome;
use super::Inner;

/// One unit of a [`Queue`](crate::Queue)'s capacity, held until dropped.
///
/// Dropping it releases the capacity and, for an adaptive regulator, reports the time it was
/// held as a successful sample. [`success`](Self::success) says so explicitly,
/// [`dropped`](Self::dropped) reports an overload (the work was refused or timed out
/// downstream: the limit shrinks), [`ignore`](Self::ignore) releases without teaching the
/// regulator anything (the work was cancelled, or failed for reasons of its own).
///
/// ```
/// use girder_regulate::Queue;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let queue = Queue::builder().count(1).build();
/// let permit = queue.ask().await.unwrap();
/// assert!(queue.try_ask().is_err()); // the one unit is held
/// permit.success();
/// assert!(queue.try_ask().is_ok());
/// # }
/// ```
#[must_use = "the capacity is released as soon as the permit is dropped"]
pub struct Permit {
    inner: Arc<Inner>,
    granted_at: Option<Instant>,
    released: bool,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("held_for", &self.held_for())
            .finish_non_exhaustive()
    }
}

impl Permit {
    pub(crate) fn new(inner: Arc<Inner>) -> Permit {
        let granted_at = inner.cfg.timed.then(Instant::now);
        Permit {
            inner,
            granted_at,
            released: false,
        }
    }

    /// How long it has been held, if the queue times its grants (it does with an adaptive
    /// regulator).
    ///
    /// ```
    /// use girder_regulate::{queue::Adaptive, Queue};
    ///
    /// let queue = Queue::builder().adaptive(Adaptive::gradient()).build();
    /// let permit = queue.try_ask().unwrap();
    /// assert!(permit.held_for().is_some());
    /// ```
    pub fn held_for(&self) -> Option<Duration> {
        self.granted_at.map(|t| t.elapsed())
    }

    /// Releases it: the work was served (the same as dropping it).
    ///
    /// ```
    /// # let queue = girder_regulate::Queue::builder().count(1).build();
    /// queue.try_ask().unwrap().success();
    /// ```
    pub fn success(mut self) {
        self.release(Outcome::Success);
    }

    /// Releases it with an overload signal: the work was dropped, refused or timed out by the
    /// resource behind the queue. An adaptive regulator's limit shrinks by its back-off ratio.
    ///
    /// ```
    /// use girder_regulate::{queue::Adaptive, Queue};
    ///
    /// let queue = Queue::builder().adaptive(Adaptive::gradient().initial(10)).build();
    /// queue.try_ask().unwrap().dropped();
    /// assert_eq!(queue.limit(), Some(9));
    /// ```
    pub fn dropped(mut self) {
        self.release(Outcome::Dropped);
    }

    /// Releases it without a sample: the regulator learns nothing from this one.
    ///
    /// ```
    /// # let queue = girder_regulate::Queue::builder().count(1).build();
    /// queue.try_ask().unwrap().ignore();
    /// ```
    pub fn ignore(mut self) {
        self.release(Outcome::Ignore);
    }

    fn release(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        let latency = self.granted_at.map(|t| t.elapsed());
        let mut wakers = Vec::new();
        self.inner
            .state
            .lock()
            .release(latency, outcome, &mut wakers);
        wakers.into_iter().for_each(std::task::Waker::wake);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.release(Outcome::Success);
    }
}
