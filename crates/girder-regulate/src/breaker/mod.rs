//! Circuit breakers: stop calling what is failing, try it again after a while.
//!
//! A [`Breaker`] is **closed** while calls go through and their outcomes fill a sliding
//! [`Window`] (the last so many calls, or the calls of the last so long). Once the window holds
//! at least `minimum_calls` and their failure rate reaches the threshold, it **opens**: every
//! call is rejected at once with [`Rejected::CircuitOpen`] for the cool-down. After it, the
//! breaker is **half-open**: `half_open_trials` trial calls go through (the rest are still
//! rejected); if they all succeed it closes (with an empty window), and if one fails it opens
//! again, for a cool-down multiplied by the back-off factor each time it reopens in a row (up
//! to a maximum).
//!
//! The open → half-open step is taken when the breaker is next looked at (an acquire, a call,
//! [`Breaker::state`]): no timer runs. Every change of state is published on a
//! [`watch`] channel ([`Breaker::subscribe`]), for an alarm, and logged.
//!
//! An outcome that belongs to an earlier state (a call started while closed that ends after
//! the breaker opened) is not counted: only trials decide a half-open breaker.
//!
//! ```
//! use std::time::Duration;
//! use girder_regulate::breaker::{Breaker, CallError, State};
//! use girder_regulate::Rejected;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let breaker = Breaker::builder().minimum_calls(2).open_for(Duration::from_secs(1)).build();
//! for _ in 0..2 {
//!     let r = breaker.call(async { Err::<(), _>("down") }).await;
//!     assert!(matches!(r, Err(CallError::Failed("down"))));
//! }
//! assert_eq!(breaker.state(), State::Open);
//! let r = breaker.call(async { Ok::<_, &str>(1) }).await;
//! assert!(matches!(r, Err(CallError::Rejected(Rejected::CircuitOpen))));
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Rejected;
use window::Outcomes;
pub use window::Window;

mod window;

/// A breaker's state, as [`Breaker::state`] and [`Breaker::subscribe`] tell it.
///
/// ```
/// use girder_regulate::breaker::{Breaker, State};
/// assert_eq!(Breaker::builder().build().state(), State::Closed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls go through; their outcomes are counted.
    Closed,
    /// Calls are rejected until the cool-down ends.
    Open,
    /// A few trial calls go through; their outcomes decide.
    HalfOpen,
}

/// Why a call through a breaker failed: not made, or made and failed.
///
/// ```
/// use girder_regulate::breaker::{Breaker, CallError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let breaker = Breaker::builder().build();
/// match breaker.call(async { Err::<(), _>("timeout") }).await {
///     Err(CallError::Failed(e)) => assert_eq!(e, "timeout"),
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError<E> {
    /// The breaker did not let it through ([`Rejected::CircuitOpen`]).
    #[error("not called: {0}")]
    Rejected(Rejected),
    /// It was made and returned this error (counted as a failure).
    #[error("call failed: {0}")]
    Failed(E),
}

/// A circuit breaker: cheap to clone (an `Arc` inside), every clone the same breaker. See the
/// [module documentation](self).
///
/// ```
/// use girder_regulate::breaker::{Breaker, State};
///
/// let breaker = Breaker::builder().build();
/// let trial = breaker.acquire().unwrap();
/// trial.success();
/// assert_eq!(breaker.state(), State::Closed);
/// ```
#[derive(Debug, Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: Config,
    core: Mutex<Core>,
    tx: watch::Sender<State>,
}

#[derive(Debug, Clone)]
struct Config {
    failure_rate: f64,
    minimum_calls: usize,
    window: Window,
    open_for: Duration,
    backoff: f64,
    max_open_for: Duration,
    trials: u32,
    name: String,
}

#[derive(Debug)]
struct Core {
    phase: Phase,
    /// Bumped at every change of state: an outcome of an older epoch is not counted.
    epoch: u64,
    /// Times opened since last closed.
    opened_in_row: u32,
    outcomes: Outcomes,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { issued: u32, succeeded: u32 },
}

impl Breaker {
    /// A builder: failure rate 50 % over the last 20 calls, at least 10 calls, open 5 s
    /// (doubling each time it reopens in a row, up to 60 s), 3 trial calls.
    ///
    /// ```
    /// use std::time::Duration;
    /// use girder_regulate::breaker::{Breaker, Window};
    ///
    /// let breaker = Breaker::builder()
    ///     .name("payments")
    ///     .failure_rate(0.25)
    ///     .window(Window::Time { span: Duration::from_secs(30), buckets: 10 })
    ///     .minimum_calls(20)
    ///     .open_for(Duration::from_secs(2))
    ///     .backoff(2.0, Duration::from_secs(30))
    ///     .half_open_trials(1)
    ///     .build();
    /// # let _ = breaker;
    /// ```
    pub fn builder() -> BreakerBuilder {
        BreakerBuilder {
            cfg: Config {
                failure_rate: 0.5,
                minimum_calls: 10,
                window: Window::Count(20),
                open_for: Duration::from_secs(5),
                backoff: 2.0,
                max_open_for: Duration::from_secs(60),
                trials: 3,
                name: String::from("breaker"),
            },
        }
    }

    /// Lets one call through, or not: the returned [`Trial`] takes the call's outcome.
    ///
    /// ```
    /// use girder_regulate::breaker::Breaker;
    ///
    /// let breaker = Breaker::builder().build();
    /// match breaker.acquire() {
    ///     Ok(trial) => trial.failure(), // made the call; it failed
    ///     Err(rejected) => println!("not calling: {rejected}"),
    /// }
    /// ```
    pub fn acquire(&self) -> Result<Trial, Rejected> {
        let mut core = self.inner.core.lock();
        let now = Instant::now();
        self.inner.advance(&mut core, now);
        match &mut core.phase {
            Phase::Closed => {}
            Phase::Open { .. } => return Err(Rejected::CircuitOpen),
            Phase::HalfOpen { issued, .. } => {
                if *issued >= self.inner.cfg.trials {
                    return Err(Rejected::CircuitOpen);
                }
                *issued += 1;
            }
        }
        Ok(Trial {
            inner: Arc::clone(&self.inner),
            epoch: core.epoch,
            done: false,
        })
    }

    /// Makes the call if the breaker lets it through, and counts its outcome: an `Err` is a
    /// failure. A call cancelled (its future dropped) is not counted.
    ///
    /// ```
    /// use girder_regulate::breaker::Breaker;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let breaker = Breaker::builder().build();
    /// let n = breaker.call(async { Ok::<_, std::io::Error>(7) }).await.unwrap();
    /// assert_eq!(n, 7);
    /// # }
    /// ```
    pub async fn call<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, CallError<E>> {
        let trial = self.acquire().map_err(CallError::Rejected)?;
        match call.await {
            Ok(v) => {
                trial.success();
                Ok(v)
            }
            Err(e) => {
                trial.failure();
                Err(CallError::Failed(e))
            }
        }
    }

    /// The state now (taking the open → half-open step if the cool-down is over).
    ///
    /// ```
    /// use girder_regulate::breaker::{Breaker, State};
    /// assert_eq!(Breaker::builder().build().state(), State::Closed);
    /// ```
    pub fn state(&self) -> State {
        let mut core = self.inner.core.lock();
        self.inner.advance(&mut core, Instant::now());
        core.phase.state()
    }

    /// Every change of state from now on (the receiver holds the latest), for an alarm or a
    /// dashboard.
    ///
    /// ```
    /// use girder_regulate::breaker::{Breaker, State};
    ///
    /// let breaker = Breaker::builder().minimum_calls(1).build();
    /// let states = breaker.subscribe();
    /// breaker.acquire().unwrap().failure();
    /// assert_eq!(*states.borrow(), State::Open);
    /// ```
    pub fn subscribe(&self) -> watch::Receiver<State> {
        self.inner.tx.subscribe()
    }

    /// The failure rate over the window now (0.0 to 1.0), while closed; `None` while open or
    /// half-open, or with fewer calls in the window than `minimum_calls`.
    ///
    /// ```
    /// use girder_regulate::breaker::Breaker;
    ///
    /// let breaker = Breaker::builder().minimum_calls(2).failure_rate(0.9).build();
    /// breaker.acquire().unwrap().success();
    /// assert_eq!(breaker.failure_rate(), None);
    /// breaker.acquire().unwrap().failure();
    /// assert_eq!(breaker.failure_rate(), Some(0.5));
    /// ```
    pub fn failure_rate(&self) -> Option<f64> {
        let mut core = self.inner.core.lock();
        let now = Instant::now();
        self.inner.advance(&mut core, now);
        if !matches!(core.phase, Phase::Closed) {
            return None;
        }
        let (calls, failures) = core.outcomes.totals(now);
        (calls >= self.inner.cfg.minimum_calls.max(1)).then(|| failures as f64 / calls as f64)
    }

    /// Closes it now, with an empty window, whatever its state (an operator's reset).
    ///
    /// ```
    /// use girder_regulate::breaker::{Breaker, State};
    ///
    /// let breaker = Breaker::builder().minimum_calls(1).build();
    /// breaker.acquire().unwrap().failure();
    /// breaker.reset();
    /// assert_eq!(breaker.state(), State::Closed);
    /// ```
    pub fn reset(&self) {
        let mut core = self.inner.core.lock();
        self.inner.close(&mut core);
    }
}

impl Inner {
    /// The open → half-open step, once the cool-down is over.
    fn advance(&self, core: &mut Core, now: Instant) {
        if let Phase::Open { until } = core.phase {
            if now >= until {
                self.enter(
                    core,
                    Phase::HalfOpen {
                        issued: 0,
                        succeeded: 0,
                    },
                );
            }
        }
    }

    fn enter(&self, core: &mut Core, phase: Phase) {
        core.phase = phase;
        core.epoch += 1;
        let state = phase.state();
        tracing::info!(breaker = %self.cfg.name, ?state, "circuit breaker state change");
        self.tx.send_replace(state);
    }

    fn open(&self, core: &mut Core, now: Instant) {
        let factor = self.cfg.backoff.powi(core.opened_in_row.min(64) as i32);
        let cool = self
            .cfg
            .open_for
            .mul_f64(factor.min(1e9))
            .min(self.cfg.max_open_for);
        core.opened_in_row += 1;
        self.enter(core, Phase::Open { until: now + cool });
    }

    fn close(&self, core: &mut Core) {
        core.opened_in_row = 0;
        core.outcomes.clear();
        if !matches!(core.phase, Phase::Closed) {
            self.enter(core, Phase::Closed);
        }
    }

    fn record(&self, epoch: u64, outcome: Option<bool>) {
        let mut core = self.core.lock();
        if core.epoch != epoch {
            return;
        }
        let now = Instant::now();
        match (&mut core.phase, outcome) {
            (Phase::Closed, Some(failed)) => {
                core.outcomes.push(failed, now);
                let (calls, failures) = core.outcomes.totals(now);
                if failed
                    && calls >= self.cfg.minimum_calls.max(1)
                    && failures as f64 >= self.cfg.failure_rate * calls as f64
                {
                    self.open(&mut core, now);
                }
            }
            (Phase::HalfOpen { .. }, Some(true)) => self.open(&mut core, now),
            (Phase::HalfOpen { succeeded, .. }, Some(false)) => {
                *succeeded += 1;
                if *succeeded >= self.cfg.trials {
                    self.close(&mut core);
                }
            }
            (Phase::HalfOpen { issued, .. }, None) => *issued -= 1,
            _ => {}
        }
    }
}

impl Phase {
    fn state(self) -> State {
        match self {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

/// One call let through by a [`Breaker`]: report its outcome with [`success`](Self::success)
/// or [`failure`](Self::failure). Dropped without either, it is not counted (and, half-open,
/// its trial slot is freed for another).
///
/// ```
/// use girder_regulate::breaker::Breaker;
///
/// let breaker = Breaker::builder().build();
/// let trial = breaker.acquire().unwrap();
/// trial.success();
/// ```
#[derive(Debug)]
#[must_use = "a trial counts only when its outcome is reported"]
pub struct Trial {
    inner: Arc<Inner>,
    epoch: u64,
    done: bool,
}

impl Trial {
    /// The call succeeded.
    ///
    /// ```
    /// let breaker = girder_regulate::breaker::Breaker::builder().build();
    /// breaker.acquire().unwrap().success();
    /// ```
    pub fn success(mut self) {
        self.done = true;
        self.inner.record(self.epoch, Some(false));
    }

    /// The call failed.
    ///
    /// ```
    /// let breaker = girder_regulate::breaker::Breaker::builder().minimum_calls(1).build();
    /// breaker.acquire().unwrap().failure();
    /// assert!(breaker.acquire().is_err());
    /// ```
    pub fn failure(mut self) {
        self.done = true;
        self.inner.record(self.epoch, Some(true));
    }
}

impl Drop for Trial {
    fn drop(&mut self) {
        if !self.done {
            self.inner.record(self.epoch, None);
        }
    }
}

/// How a [`Breaker`] is built; from [`Breaker::builder`].
///
/// ```
/// use std::time::Duration;
/// use girder_regulate::breaker::Breaker;
/// let breaker = Breaker::builder().minimum_calls(5).open_for(Duration::from_secs(1)).build();
/// # let _ = breaker;
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build`"]
pub struct BreakerBuilder {
    cfg: Config,
}

impl BreakerBuilder {
    /// The name it logs its changes under.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.cfg.name = name.into();
        self
    }

    /// The failure rate (0.0 to 1.0) at which it opens.
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.cfg.failure_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// The fewest calls in the window before it may open.
    pub fn minimum_calls(mut self, n: usize) -> Self {
        self.cfg.minimum_calls = n;
        self
    }

    /// The window the failure rate is judged over.
    pub fn window(mut self, window: Window) -> Self {
        self.cfg.window = window;
        self
    }

    /// How long it stays open the first time.
    pub fn open_for(mut self, cool_down: Duration) -> Self {
        self.cfg.open_for = cool_down;
        self
    }

    /// Each reopening in a row (a failed trial) multiplies the cool-down by `factor` (1.0: no
    /// back-off), up to `max`.
    pub fn backoff(mut self, factor: f64, max: Duration) -> Self {
        self.cfg.backoff = factor.max(1.0);
        self.cfg.max_open_for = max;
        self
    }

    /// How many trial calls a half-open breaker lets through; all must succeed to close it
    /// (at least 1).
    pub fn half_open_trials(mut self, n: u32) -> Self {
        self.cfg.trials = n.max(1);
        self
    }

    /// The breaker, closed.
    pub fn build(self) -> Breaker {
        let outcomes = Outcomes::new(self.cfg.window);
        let core = Core {
            phase: Phase::Closed,
            epoch: 0,
            opened_in_row: 0,
            outcomes,
        };
        let (tx, _) = watch::channel(State::Closed);
        Breaker {
            inner: Arc::new(Inner {
                cfg: self.cfg,
                core: Mutex::new(core),
                tx,
            }),
        }
    }
}
