//! Waiting with a deadline: for a condition to hold ([`eventually`], [`eventually_async`]) or
//! for a future to finish ([`within`]), panicking with what was waited for when [`WAIT`]
//! passes.
//!
//! The deadline is measured on the wall clock (`std::time::Instant`), so a test that pauses
//! tokio's clock still gives up in real time. Between checks the waiter first yields (a
//! condition that holds a moment later costs no sleep), then sleeps 1 ms, doubling up to 16 ms.

use std::fmt::Display;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

/// How long a test waits for something that should happen before it fails: 10 s.
///
/// Generous on purpose, for a loaded 2-core machine and debug builds. It bounds a hang, not
/// speed: where a test asserts how fast something happens, it says so with its own bound.
pub const WAIT: Duration = Duration::from_secs(10);

/// What the condition of [`eventually`] returns: `bool` (`true` once it holds), or `Option<T>`
/// (`Some` once it holds, and the `T` is what [`eventually`] returns).
pub trait Holds {
    /// What the wait returns once the condition holds: `()` for a `bool`, `T` for an
    /// `Option<T>`.
    type Value;

    /// `Some` once the condition holds.
    fn holds(self) -> Option<Self::Value>;
}

impl Holds for bool {
    type Value = ();

    fn holds(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Holds for Option<T> {
    type Value = T;

    fn holds(self) -> Option<T> {
        self
    }
}

/// Checks `cond` until it holds and returns what it gave; panics saying `what` was waited for
/// if it does not hold within [`WAIT`].
///
/// The condition is a `bool`, or an `Option` whose `Some` value is returned (see [`Holds`]).
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use girder_testkit::eventually;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let ticks = Arc::new(AtomicU32::new(0));
/// let t = ticks.clone();
/// tokio::spawn(async move {
///     for _ in 0..3 {
///         t.fetch_add(1, Ordering::SeqCst);
///         tokio::task::yield_now().await;
///     }
/// });
/// eventually("three ticks", || ticks.load(Ordering::SeqCst) == 3).await;
/// // With an Option, the value that ended the wait.
/// let n = eventually("a tick", || Some(ticks.load(Ordering::SeqCst)).filter(|n| *n > 0)).await;
/// assert_eq!(n, 3);
/// # }
/// ```
pub async fn eventually<H: Holds>(what: impl Display, mut cond: impl FnMut() -> H) -> H::Value {
    let mut poll = Poll::new(WAIT);
    loop {
        if let Some(v) = cond().holds() {
            return v;
        }
        poll.next(&what).await;
    }
}

/// [`eventually`] for a condition that has to await (a call, a query): `cond` is an async
/// closure.
///
/// ```
/// use girder::{Node, Pid};
/// use girder_testkit::{eventually_async, procs::Echo};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let node = Node::new("t");
/// let echo = girder::server::start(&node, Echo).await.unwrap();
/// let mut n = 0;
/// let answered_by: Pid = eventually_async("an answer to the third call", async || {
///     n += 1;
///     let (pid, got) = echo.call(|r| (n, r)).await.unwrap();
///     (got == 3).then_some(pid)
/// })
/// .await;
/// assert_eq!(answered_by, echo.pid());
/// # }
/// ```
pub async fn eventually_async<H: Holds>(
    what: impl Display,
    mut cond: impl AsyncFnMut() -> H,
) -> H::Value {
    let mut poll = Poll::new(WAIT);
    loop {
        if let Some(v) = cond().await.holds() {
            return v;
        }
        poll.next(&what).await;
    }
}

/// Awaits `fut`, panicking saying `what` was waited for if it does not finish within [`WAIT`]
/// (on tokio's clock, as `tokio::time::timeout`).
///
/// ```
/// use girder::{Context, ExitReason, Node};
/// use girder_testkit::within;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let node = Node::new("t");
/// let p = node.spawn(|_: Context<()>| async { ExitReason::Normal });
/// assert_eq!(within("the process to exit", p.wait_exit()).await, ExitReason::Normal);
/// # }
/// ```
pub async fn within<F: IntoFuture>(what: impl Display, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("waited {WAIT:?} for: {what}"),
    }
}

/// A `what` written only if the wait fails, so it can show the state at that moment: the
/// `Display` of `describe()`'s result.
///
/// ```no_run
/// use girder_testkit::{eventually, wait::when_failing};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let queue = vec![1, 2, 3];
/// // Panics after WAIT with "waited 10s for: an empty queue (left: [1, 2, 3])".
/// eventually(when_failing(|| format!("an empty queue (left: {queue:?})")), || queue.is_empty()).await;
/// # }
/// ```
pub fn when_failing<D: Display>(describe: impl Fn() -> D) -> impl Display {
    struct Later<F>(F);
    impl<F: Fn() -> D, D: Display> Display for Later<F> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            (self.0)().fmt(f)
        }
    }
    Later(describe)
}

/// The pauses between checks, and the deadline.
struct Poll {
    deadline: Instant,
    bound: Duration,
    checks: u32,
}

impl Poll {
    /// Checks that yield before the first sleep.
    const YIELDS: u32 = 16;
    /// The longest sleep between two checks.
    const MAX_SLEEP: Duration = Duration::from_millis(16);

    fn new(bound: Duration) -> Poll {
        Poll {
            deadline: Instant::now() + bound,
            bound,
            checks: 0,
        }
    }

    /// Panics past the deadline; otherwise pauses before the next check.
    async fn next(&mut self, what: &impl Display) {
        assert!(
            Instant::now() < self.deadline,
            "waited {:?} for: {what}",
            self.bound
        );
        let n = self.checks;
        self.checks += 1;
        match n.checked_sub(Self::YIELDS) {
            None => tokio::task::yield_now().await,
            Some(n) => {
                let pause = Duration::from_millis(1 << n.min(4)).min(Self::MAX_SLEEP);
                tokio::time::sleep(pause).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_condition_that_never_holds_panics_saying_what_was_awaited() {
        let waited = tokio::spawn(async {
            let mut poll = Poll::new(Duration::from_millis(30));
            loop {
                poll.next(&"the impossible").await;
            }
        })
        .await
        .unwrap_err();
        let message = waited.into_panic();
        let message = message.downcast_ref::<String>().unwrap();
        assert_eq!(message, "waited 30ms for: the impossible");
    }

    #[tokio::test]
    async fn pauses_grow_to_the_cap() {
        let mut poll = Poll::new(WAIT);
        let t0 = Instant::now();
        for _ in 0..Poll::YIELDS {
            poll.next(&"").await;
        }
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "yields do not sleep"
        );
        let t0 = Instant::now();
        for _ in 0..10 {
            poll.next(&"").await;
        }
        // 1 + 2 + 4 + 8 + 16 × 6 ms at least.
        assert!(t0.elapsed() >= Duration::from_millis(111));
    }

    #[test]
    #[should_panic(expected = "waited 10s for: a future that never ends")]
    fn within_names_what_it_waited_for() {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(within(
                "a future that never ends",
                std::future::pending::<()>(),
            ));
    }
}
