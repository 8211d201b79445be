//! The receiver's side of at-least-once: remembering what was already done.
//!
//! A sender that retries ([`Retry`](crate::Retry)) may deliver a request more than once. A
//! [`Dedup`] remembers the replies to recently seen [`IdempotencyKey`]s: the first request
//! with a key runs the work; a repeat gets the remembered reply without running it again, and
//! a repeat that arrives while the first is still running waits for its reply. At-least-once
//! delivery plus this is **effectively once**, for as long as a key is remembered.
//!
//! **Bounded memory.** At most `capacity` keys are remembered (with their replies), and none
//! longer than `max_age` if set. When the table is full, a new key evicts the oldest finished
//! entry (first in, first out); a key forgotten so runs again if it is repeated, so size the
//! table for the senders' retry horizon: capacity ≥ request rate × the longest a sender keeps
//! retrying (and `max_age` at least that long). Entries still running cannot be evicted: with
//! `capacity` keys all running at once, a new key is refused ([`DedupError::Full`]) rather than
//! run unremembered. Memory is `capacity` × (key + reply + ~64 bytes), whatever the traffic.
//!
//! If the work of the first request is cancelled (its caller dropped the future) or panics, it
//! is forgotten, and the first repeat waiting for it runs the work instead.
//!
//! ```
//! use girder_regulate::{Dedup, IdempotencyKey};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let dedup = Dedup::new(10_000);
//! let key = IdempotencyKey::from_parts(7, 1);
//! let first = dedup.run(key, || async { "charged 10 EUR" }).await.unwrap();
//! let again = dedup.run(key, || async { "charged 10 EUR twice!" }).await.unwrap();
//! assert_eq!((first, again), ("charged 10 EUR", "charged 10 EUR"));
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::IdempotencyKey;

/// A bounded memory of idempotency keys and their replies; cheap to clone (an `Arc` inside),
/// every clone the same table. See the [module documentation](self).
///
/// ```
/// use std::time::Duration;
/// use girder_regulate::Dedup;
///
/// let dedup: Dedup<u64> = Dedup::new(1_000).max_age(Duration::from_secs(600));
/// assert_eq!((dedup.len(), dedup.capacity()), (0, 1_000));
/// ```
#[derive(Debug)]
pub struct Dedup<R> {
    inner: Arc<Mutex<Table<R>>>,
}

impl<R> Clone for Dedup<R> {
    fn clone(&self) -> Self {
        Dedup {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Why a [`Dedup`] did not run the work.
///
/// ```
/// use girder_regulate::dedup::DedupError;
/// assert_eq!(DedupError::Full { capacity: 8 }.to_string(), "de-duplication table full: 8 keys running");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DedupError {
    /// Every remembered key is still running and the table is at its capacity: a new key
    /// cannot be remembered, so its work is not run.
    #[error("de-duplication table full: {capacity} keys running")]
    Full {
        /// The table's capacity.
        capacity: usize,
    },
}

/// A [`Dedup`]'s numbers, from [`Dedup::stats`].
///
/// ```
/// let s = girder_regulate::Dedup::<u8>::new(4).stats();
/// assert_eq!((s.entries, s.hits, s.runs), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupStats {
    /// Keys remembered now (finished or running).
    pub entries: usize,
    /// Repeats answered from memory (or by waiting for the first).
    pub hits: u64,
    /// Works run.
    pub runs: u64,
    /// Finished entries evicted to make room.
    pub evicted: u64,
    /// Finished entries dropped for age.
    pub expired: u64,
    /// Keys refused because the table was full of running ones.
    pub refused: u64,
}

#[derive(Debug)]
struct Table<R> {
    map: HashMap<IdempotencyKey, Entry<R>>,
    /// Keys in the order they were first seen, with the sequence number of their entry (an
    /// entry removed and made again gets a new one, so an old line is recognised as stale).
    order: VecDeque<(IdempotencyKey, u64)>,
    next_seq: u64,
    capacity: usize,
    max_age: Option<Duration>,
    stats: DedupStats,
}

#[derive(Debug)]
struct Entry<R> {
    seq: u64,
    slot: Slot<R>,
}

#[derive(Debug)]
enum Slot<R> {
    /// The work runs; repeats wait on these.
    Running(Vec<oneshot::Sender<R>>),
    /// The reply, and when it was made.
    Done(R, Instant),
}

/// What a request with a key does.
enum Role<R> {
    Reply(R),
    Wait(oneshot::Receiver<R>),
    Run(u64),
}

impl<R: Clone> Dedup<R> {
    /// A table remembering at most `capacity` keys (at least 1), with no age limit.
    ///
    /// ```
    /// let dedup: girder_regulate::Dedup<String> = girder_regulate::Dedup::new(100_000);
    /// assert_eq!(dedup.capacity(), 100_000);
    /// ```
    pub fn new(capacity: usize) -> Dedup<R> {
        let table = Table {
            map: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            capacity: capacity.max(1),
            max_age: None,
            stats: DedupStats::default(),
        };
        Dedup {
            inner: Arc::new(Mutex::new(table)),
        }
    }

    /// Forgets finished entries older than `max_age` too.
    ///
    /// ```
    /// use std::time::Duration;
    /// let dedup: girder_regulate::Dedup<()> = girder_regulate::Dedup::new(10).max_age(Duration::from_secs(300));
    /// # let _ = dedup;
    /// ```
    pub fn max_age(self, max_age: Duration) -> Dedup<R> {
        self.inner.lock().max_age = Some(max_age);
        self
    }

    /// Runs `work` for the first request with `key`; a repeat gets the first one's reply
    /// (waiting for it if it is still running), without running `work`.
    ///
    /// ```
    /// use girder_regulate::{Dedup, IdempotencyKey};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let dedup = Dedup::new(100);
    /// let k = IdempotencyKey::new(1);
    /// assert_eq!(dedup.run(k, || async { 1 }).await, Ok(1));
    /// assert_eq!(dedup.run(k, || async { 2 }).await, Ok(1));
    /// # }
    /// ```
    pub async fn run<F, Fut>(&self, key: IdempotencyKey, work: F) -> Result<R, DedupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        self.drive(key, work, |_| true).await
    }

    /// Number of keys remembered now.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let dedup = girder_regulate::Dedup::new(10);
    /// dedup.run(girder_regulate::IdempotencyKey::new(1), || async {}).await.unwrap();
    /// assert_eq!(dedup.len(), 1);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }

    /// Whether no key is remembered.
    ///
    /// ```
    /// assert!(girder_regulate::Dedup::<()>::new(1).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys it remembers.
    ///
    /// ```
    /// assert_eq!(girder_regulate::Dedup::<()>::new(0).capacity(), 1);
    /// ```
    pub fn capacity(&self) -> usize {
        self.inner.lock().capacity
    }

    /// Its numbers.
    ///
    /// ```
    /// use girder_regulate::{Dedup, IdempotencyKey};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let dedup = Dedup::new(1);
    /// dedup.run(IdempotencyKey::new(1), || async {}).await.unwrap();
    /// dedup.run(IdempotencyKey::new(1), || async {}).await.unwrap();
    /// dedup.run(IdempotencyKey::new(2), || async {}).await.unwrap();
    /// let s = dedup.stats();
    /// assert_eq!((s.entries, s.runs, s.hits, s.evicted), (1, 2, 1, 1));
    /// # }
    /// ```
    pub fn stats(&self) -> DedupStats {
        let t = self.inner.lock();
        DedupStats {
            entries: t.map.len(),
            ..t.stats.clone()
        }
    }

    async fn drive<F, Fut>(
        &self,
        key: IdempotencyKey,
        work: F,
        keep: impl Fn(&R) -> bool,
    ) -> Result<R, DedupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        let seq = loop {
            let role = self.inner.lock().role(key, Instant::now())?;
            match role {
                Role::Reply(r) => return Ok(r),
                Role::Wait(rx) => match rx.await {
                    Ok(r) => return Ok(r),
                    // The first was cancelled or panicked: look again (maybe run it now).
                    Err(_) => continue,
                },
                Role::Run(seq) => break seq,
            }
        };
        let mut guard = RunGuard {
            inner: &self.inner,
            key,
            seq,
            armed: true,
        };
        let reply = work().await;
        guard.armed = false;
        self.inner
            .lock()
            .finish(key, seq, reply.clone(), keep(&reply), Instant::now());
        Ok(reply)
    }
}

impl<T: Clone, E: Clone> Dedup<Result<T, E>> {
    /// [`run`](Self::run) for work that can fail: only a success is remembered. A repeat of a
    /// failed request runs the work again (repeats that were waiting for the failed one get
    /// its error).
    ///
    /// ```
    /// use girder_regulate::{Dedup, IdempotencyKey};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let dedup = Dedup::new(100);
    /// let k = IdempotencyKey::new(9);
    /// assert_eq!(dedup.try_run(k, || async { Err::<u8, _>("busy") }).await, Ok(Err("busy")));
    /// assert_eq!(dedup.try_run(k, || async { Ok::<_, &str>(1) }).await, Ok(Ok(1)));
    /// assert_eq!(dedup.try_run(k, || async { Ok::<_, &str>(2) }).await, Ok(Ok(1)));
    /// # }
    /// ```
    pub async fn try_run<F, Fut>(
        &self,
        key: IdempotencyKey,
        work: F,
    ) -> Result<Result<T, E>, DedupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.drive(key, work, Result::is_ok).await
    }
}

/// Forgets a running entry whose work did not finish (cancelled or panicked).
struct RunGuard<'a, R> {
    inner: &'a Mutex<Table<R>>,
    key: IdempotencyKey,
    seq: u64,
    armed: bool,
}

impl<R> Drop for RunGuard<'_, R> {
    fn drop(&mut self) {
        if self.armed {
            let mut t = self.inner.lock();
            if t.map.get(&self.key).is_some_and(|e| e.seq == self.seq) {
                t.map.remove(&self.key); // the waiters' senders drop: they look again
            }
        }
    }
}

impl<R: Clone> Table<R> {
    fn role(&mut self, key: IdempotencyKey, now: Instant) -> Result<Role<R>, DedupError> {
        let max_age = self.max_age;
        if let Some(e) = self.map.get_mut(&key) {
            match &mut e.slot {
                Slot::Done(_, at) if max_age.is_some_and(|m| now.duration_since(*at) >= m) => {
                    self.map.remove(&key);
                    self.stats.expired += 1;
                }
                Slot::Done(r, _) => {
                    self.stats.hits += 1;
                    return Ok(Role::Reply(r.clone()));
                }
                Slot::Running(waiters) => {
                    waiters.retain(|tx| !tx.is_closed());
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    self.stats.hits += 1;
                    return Ok(Role::Wait(rx));
                }
            }
        }
        self.make_room(now)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(
            key,
            Entry {
                seq,
                slot: Slot::Running(Vec::new()),
            },
        );
        self.order.push_back((key, seq));
        self.stats.runs += 1;
        Ok(Role::Run(seq))
    }

    /// Drops what is too old, then, if still full, the oldest finished entry.
    fn make_room(&mut self, now: Instant) -> Result<(), DedupError> {
        if let Some(max_age) = self.max_age {
            while let Some(&(key, seq)) = self.order.front() {
                match self.map.get(&key) {
                    Some(e) if e.seq == seq => match e.slot {
                        Slot::Done(_, at) if now.duration_since(at) >= max_age => {
                            self.map.remove(&key);
                            self.stats.expired += 1;
                        }
                        _ => break,
                    },
                    _ => {} // stale line
                }
                self.order.pop_front();
            }
        }
        // Lines whose entries were forgotten (cancelled work, failures not kept) are dropped
        // now and then, so the order list stays within twice the capacity.
        if self.order.len() > 2 * self.capacity + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
        let mut turns = self.order.len();
        while self.map.len() >= self.capacity {
            let Some((key, seq)) = self.order.pop_front().filter(|_| turns > 0) else {
                self.stats.refused += 1;
                return Err(DedupError::Full {
                    capacity: self.capacity,
                });
            };
            turns -= 1;
            match self.map.get(&key) {
                Some(e) if e.seq == seq => {
                    if matches!(e.slot, Slot::Running(_)) {
                        self.order.push_back((key, seq)); // cannot go: to the back
                    } else {
                        self.map.remove(&key);
                        self.stats.evicted += 1;
                    }
                }
                _ => {} // stale line
            }
        }
        Ok(())
    }

    fn finish(&mut self, key: IdempotencyKey, seq: u64, reply: R, keep: bool, now: Instant) {
        let Some(e) = self.map.get_mut(&key).filter(|e| e.seq == seq) else {
            return;
        };
        let waiters = if keep {
            match std::mem::replace(&mut e.slot, Slot::Done(reply.clone(), now)) {
                Slot::Running(w) => w,
                Slot::Done(..) => Vec::new(),
            }
        } else {
            match self.map.remove(&key).map(|e| e.slot) {
                Some(Slot::Running(w)) => w,
                _ => Vec::new(),
            }
        };
        for tx in waiters {
            let _ = tx.send(reply.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn order_list_stays_bounded_when_work_is_forgotten() {
        let dedup: Dedup<Result<(), ()>> = Dedup::new(10);
        for i in 0..10_000u128 {
            let _ = dedup
                .try_run(IdempotencyKey::new(i), || async { Err(()) })
                .await;
            assert!(dedup.inner.lock().order.len() <= 2 * 10 + 17);
        }
        assert!(dedup.is_empty());
    }

    #[tokio::test]
    async fn a_full_table_of_running_work_refuses_new_keys() {
        let dedup: Dedup<u8> = Dedup::new(2);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut running = Vec::new();
        for i in 0..2u128 {
            let (d, mut rx) = (dedup.clone(), rx.clone());
            running.push(tokio::spawn(async move {
                d.run(IdempotencyKey::new(i), || async move {
                    let _ = rx.wait_for(|go| *go).await;
                    1
                })
                .await
            }));
        }
        tokio::task::yield_now().await;
        let refused = dedup.run(IdempotencyKey::new(9), || async { 0 }).await;
        assert_eq!(refused, Err(DedupError::Full { capacity: 2 }));
        tx.send_replace(true);
        for r in running {
            assert_eq!(r.await.unwrap(), Ok(1));
        }
        assert_eq!(
            dedup.run(IdempotencyKey::new(9), || async { 0 }).await,
            Ok(0)
        );
        assert_eq!(dedup.len(), 2);
    }
}
