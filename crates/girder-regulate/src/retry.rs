//! Retries: exponential back-off with full jitter, bounded by attempts and a deadline, and the
//! delivery semantics they give.
//!
//! **At most once** is the default ([`Retry::at_most_once`], [`Retry::default`]): one attempt,
//! never repeated. A request that failed, timed out or whose reply was lost may or may not have
//! taken effect, and it is not sent again.
//!
//! **At least once** is asked for ([`Retry::at_least_once`]): a failed attempt is repeated
//! after a delay until one succeeds, an error is not retryable, the attempts run out or the
//! deadline comes. A repeat may take effect twice (the first attempt may have worked and only
//! its reply been lost), so the request must carry an [`IdempotencyKey`], the same on every
//! attempt ([`Retry::run_keyed`] hands it to each), and the receiver must recognise repeats
//! ([`Dedup`](crate::Dedup)): at-least-once delivery plus de-duplication is **effectively
//! once**. [`Retry::run`] without a key is for operations idempotent by nature (a read, a
//! "set to", a delete by id).
//!
//! The delay before retry `n` (1 for the first) is drawn uniformly from `0..=cap(n)`, where
//! `cap(n) = min(max, base * factor^(n-1))`: "full jitter", which spreads the retries of many
//! clients failing together instead of sending them back in step. An overall deadline bounds
//! the whole: an attempt in progress when it comes is cancelled, and a retry whose delay would
//! end past it is not made (the caller hears at once, not at the deadline).
//!
//! ```
//! use std::time::Duration;
//! use girder_regulate::{retry::RetryError, IdempotencyKey, Retry};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = Retry::at_least_once()
//!     .attempts(4)
//!     .backoff(Duration::from_millis(10), Duration::from_secs(1))
//!     .deadline(Duration::from_secs(5));
//! let key = IdempotencyKey::random();
//! let reply = policy
//!     .run_keyed(key, |attempt| async move {
//!         // send the request with attempt.key() ...
//!         if attempt.number() < 3 { Err("busy") } else { Ok("done") }
//!     })
//!     .await;
//! assert_eq!(reply, Ok("done"));
//!
//! let never = Retry::at_most_once().run(|_| async { Err::<(), _>("lost") }).await;
//! assert_eq!(never, Err(RetryError::Exhausted { attempts: 1, last: "lost" }));
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

use crate::IdempotencyKey;

/// The resolution of tokio's timer: a sleep ends on the next tick at or after its deadline.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// A retry policy: how many attempts, how far apart, until when. Cheap to clone; one policy
/// serves many requests. See the [module documentation](self) for the semantics.
///
/// ```
/// use std::time::Duration;
/// use girder_regulate::Retry;
///
/// let policy = Retry::at_least_once().backoff(Duration::from_millis(100), Duration::from_secs(2));
/// assert_eq!(policy.cap(1), Duration::from_millis(100));
/// assert_eq!(policy.cap(3), Duration::from_millis(400));
/// assert_eq!(policy.cap(10), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    attempts: u32,
    base: Duration,
    factor: f64,
    max: Duration,
    deadline: Option<Duration>,
}

impl Default for Retry {
    /// [`Retry::at_most_once`].
    fn default() -> Retry {
        Retry::at_most_once()
    }
}

/// Why a retried operation gave up.
///
/// ```
/// use girder_regulate::{retry::RetryError, Retry};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let r = Retry::at_least_once().attempts(2).run(|_| async { Err::<(), _>("down") }).await;
/// assert_eq!(r, Err(RetryError::Exhausted { attempts: 2, last: "down" }));
/// assert_eq!(r.unwrap_err().to_string(), "gave up after 2 attempt(s): down");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryError<E> {
    /// Every attempt allowed was made and failed; the last one's error.
    #[error("gave up after {attempts} attempt(s): {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: E,
    },
    /// An attempt failed with an error the predicate says is not worth retrying.
    #[error("not retryable (attempt {attempts}): {error}")]
    NotRetryable {
        /// Attempts made (the last is the one that failed so).
        attempts: u32,
        /// Its error.
        error: E,
    },
    /// The overall deadline came during an attempt (cancelled), or before the next retry
    /// could be made.
    #[error("deadline passed after {attempts} attempt(s)")]
    DeadlinePassed {
        /// Attempts made or started.
        attempts: u32,
        /// The last completed attempt's error, if one completed.
        last: Option<E>,
    },
}

impl<E> RetryError<E> {
    /// Attempts made (or started) before giving up.
    ///
    /// ```
    /// use girder_regulate::retry::RetryError;
    /// assert_eq!(RetryError::Exhausted { attempts: 3, last: "x" }.attempts(), 3);
    /// ```
    pub fn attempts(&self) -> u32 {
        match self {
            RetryError::Exhausted { attempts, .. }
            | RetryError::NotRetryable { attempts, .. }
            | RetryError::DeadlinePassed { attempts, .. } => *attempts,
        }
    }

    /// The last attempt's error, if one completed.
    ///
    /// ```
    /// use girder_regulate::retry::RetryError;
    /// let e = RetryError::DeadlinePassed { attempts: 1, last: None::<&str> };
    /// assert_eq!(e.into_last(), None);
    /// ```
    pub fn into_last(self) -> Option<E> {
        match self {
            RetryError::Exhausted { last, .. } => Some(last),
            RetryError::NotRetryable { error, .. } => Some(error),
            RetryError::DeadlinePassed { last, .. } => last,
        }
    }
}

/// What an attempt is told: its number and, with [`Retry::run_keyed`], the request's key.
///
/// ```
/// use girder_regulate::Retry;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let first = Retry::at_most_once().run(|a| async move { Ok::<_, ()>(a.number()) }).await;
/// assert_eq!(first, Ok(1));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    number: u32,
    key: Option<IdempotencyKey>,
    deadline: Option<Instant>,
}

impl Attempt {
    /// 1 for the first attempt, 2 for the first retry, ...
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let n = girder_regulate::Retry::default().run(|a| async move { Ok::<_, ()>(a.number()) }).await;
    /// assert_eq!(n, Ok(1));
    /// # }
    /// ```
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The request's idempotency key, the same on every attempt (with [`Retry::run_keyed`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let k = girder_regulate::Retry::default().run(|a| async move { Ok::<_, ()>(a.key()) }).await;
    /// assert_eq!(k, Ok(None)); // no key without run_keyed
    /// # }
    /// ```
    pub fn key(&self) -> Option<IdempotencyKey> {
        self.key
    }

    /// The overall deadline, to pass on to the receiver (it need not start work that no one
    /// will wait for).
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let p = girder_regulate::Retry::default().deadline(Duration::from_secs(1));
    /// let d = p.run(|a| async move { Ok::<_, ()>(a.deadline()) }).await;
    /// assert!(d.unwrap().is_some());
    /// # }
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl Retry {
    /// One attempt, never repeated.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut calls = 0;
    /// let r = girder_regulate::Retry::at_most_once()
    ///     .run(|_| { calls += 1; async { Err::<(), _>("x") } })
    ///     .await;
    /// assert!(r.is_err());
    /// assert_eq!(calls, 1);
    /// # }
    /// ```
    pub fn at_most_once() -> Retry {
        Retry {
            attempts: 1,
            ..Retry::at_least_once()
        }
    }

    /// Retried: 5 attempts, delays capped at 100 ms, 200 ms, 400 ms, 800 ms (factor 2, at
    /// most 10 s), no deadline.
    ///
    /// ```
    /// let policy = girder_regulate::Retry::at_least_once();
    /// assert_eq!(policy.max_attempts(), 5);
    /// ```
    pub fn at_least_once() -> Retry {
        Retry {
            attempts: 5,
            base: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(10),
            deadline: None,
        }
    }

    /// At most `n` attempts in all (at least 1).
    ///
    /// ```
    /// assert_eq!(girder_regulate::Retry::at_least_once().attempts(3).max_attempts(), 3);
    /// ```
    pub fn attempts(mut self, n: u32) -> Retry {
        self.attempts = n.max(1);
        self
    }

    /// The first retry's delay cap, and the most any cap grows to.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = girder_regulate::Retry::at_least_once().backoff(Duration::from_millis(50), Duration::from_secs(1));
    /// assert_eq!(p.cap(2), Duration::from_millis(100));
    /// ```
    pub fn backoff(mut self, base: Duration, max: Duration) -> Retry {
        self.base = base;
        self.max = max.max(base);
        self
    }

    /// How much each retry's cap grows (2.0 by default, at least 1.0).
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = girder_regulate::Retry::at_least_once().factor(3.0);
    /// assert_eq!(p.cap(2), Duration::from_millis(300));
    /// ```
    pub fn factor(mut self, factor: f64) -> Retry {
        self.factor = factor.max(1.0);
        self
    }

    /// The whole, attempts and delays, ends `total` after the first attempt starts.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = girder_regulate::Retry::at_least_once().deadline(Duration::from_secs(10));
    /// # let _ = p;
    /// ```
    pub fn deadline(mut self, total: Duration) -> Retry {
        self.deadline = Some(total);
        self
    }

    /// The most attempts it makes.
    pub fn max_attempts(&self) -> u32 {
        self.attempts
    }

    /// The most the delay before retry `n` (1 for the first) may be:
    /// `min(max, base * factor^(n-1))`.
    pub fn cap(&self, n: u32) -> Duration {
        let exp = n.saturating_sub(1).min(1000) as i32;
        let grown = self.base.as_secs_f64() * self.factor.powi(exp);
        if grown >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(grown)
        }
    }

    /// A delay before retry `n`, drawn uniformly from `0..=cap(n)` (full jitter).
    ///
    /// ```
    /// use std::time::Duration;
    /// let policy = girder_regulate::Retry::at_least_once();
    /// assert!(policy.delay(2) <= Duration::from_millis(200));
    /// ```
    pub fn delay(&self, n: u32) -> Duration {
        let cap = self.cap(n).as_nanos().min(u128::from(u64::MAX)) as u64;
        Duration::from_nanos(rand::rng().random_range(0..=cap))
    }

    /// Runs `op` until an attempt succeeds, retrying every error.
    ///
    /// ```
    /// use girder_regulate::Retry;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let r = Retry::at_least_once()
    ///     .run(|a| async move { if a.number() < 2 { Err("busy") } else { Ok("read") } })
    ///     .await;
    /// assert_eq!(r, Ok("read"));
    /// # }
    /// ```
    pub async fn run<T, E, F, Fut>(&self, op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.drive(None, |_: &E| true, op).await
    }

    /// [`run`](Self::run), retrying only the errors `retryable` says are worth it (a timeout,
    /// a refusal for overload; not a bad request).
    ///
    /// ```
    /// use girder_regulate::{retry::RetryError, Retry};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let r = Retry::at_least_once()
    ///     .run_if(|e: &&str| *e == "busy", |_| async { Err::<(), _>("bad request") })
    ///     .await;
    /// assert_eq!(r, Err(RetryError::NotRetryable { attempts: 1, error: "bad request" }));
    /// # }
    /// ```
    pub async fn run_if<T, E, F, Fut>(
        &self,
        retryable: impl Fn(&E) -> bool,
        op: F,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.drive(None, retryable, op).await
    }

    /// [`run`](Self::run) for a request that carries `key` on every attempt
    /// ([`Attempt::key`]), so the receiver can recognise repeats.
    ///
    /// ```
    /// use girder_regulate::{IdempotencyKey, Retry};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let key = IdempotencyKey::random();
    /// let r = Retry::at_least_once().run_keyed(key, |a| async move { Ok::<_, ()>(a.key()) }).await;
    /// assert_eq!(r, Ok(Some(key)));
    /// # }
    /// ```
    pub async fn run_keyed<T, E, F, Fut>(
        &self,
        key: IdempotencyKey,
        op: F,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.drive(Some(key), |_: &E| true, op).await
    }

    /// [`run_keyed`](Self::run_keyed) with a predicate, as [`run_if`](Self::run_if).
    ///
    /// ```
    /// use girder_regulate::{IdempotencyKey, Retry};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let key = IdempotencyKey::from_parts(1, 99);
    /// let r = Retry::at_least_once()
    ///     .run_keyed_if(key, |_: &()| true, |a| async move { Ok::<_, ()>(a.key()) })
    ///     .await;
    /// assert_eq!(r, Ok(Some(key)));
    /// # }
    /// ```
    pub async fn run_keyed_if<T, E, F, Fut>(
        &self,
        key: IdempotencyKey,
        retryable: impl Fn(&E) -> bool,
        op: F,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.drive(Some(key), retryable, op).await
    }

    async fn drive<T, E, F, Fut>(
        &self,
        key: Option<IdempotencyKey>,
        retryable: impl Fn(&E) -> bool,
        mut op: F,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let deadline = self.deadline.map(|d| Instant::now() + d);
        let mut last = None;
        for number in 1..=self.attempts {
            let attempt = op(Attempt {
                number,
                key,
                deadline,
            });
            let outcome = match deadline {
                Some(d) => match tokio::time::timeout_at(d, attempt).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        return Err(RetryError::DeadlinePassed {
                            attempts: number,
                            last,
                        })
                    }
                },
                None => attempt.await,
            };
            let error = match outcome {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !retryable(&error) {
                return Err(RetryError::NotRetryable {
                    attempts: number,
                    error,
                });
            }
            if number == self.attempts {
                return Err(RetryError::Exhausted {
                    attempts: number,
                    last: error,
                });
            }
            let delay = self.delay(number);
            // tokio's timer fires on whole-millisecond ticks, so the sleep may end up to a tick
            // after `delay`: a retry that would start at the deadline is not made either.
            if deadline.is_some_and(|d| Instant::now() + delay + TIMER_TICK >= d) {
                return Err(RetryError::DeadlinePassed {
                    attempts: number,
                    last: Some(error),
                });
            }
            tracing::debug!(
                attempt = number,
                ?delay,
                ?key,
                "retrying after a failed attempt"
            );
            last = Some(error);
            tokio::time::sleep(delay).await;
        }
        unreachable!("the last attempt returns")
    }
}
