//! Call deadlines, and the call timeout on the calling process's reusable timer
//! (docs/decisions/003-call-timeouts.md).
//!
//! Every call computes a deadline and checks the process's timer against it, so this is on the
//! hot path of every local call: deadlines are plain integers (units of 2⁻³² s since a fixed
//! base, coarsetime's), compared and added as integers; a tokio `Instant` is built only when
//! the timer has to move.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::process::local::{with_current, CallTimer};

/// Timeouts from this long on read the kernel's coarse clock (see [`Deadline::after`]).
const COARSE_FROM: Duration = Duration::from_secs(1);
/// Added to a coarse deadline so it is never early: the coarse clock lags the precise one by
/// up to one kernel tick (4 ms at the usual 250 Hz), in either direction after mapping.
const COARSE_GRAIN: Duration = Duration::from_millis(10);
/// Timeouts are capped here (as tokio caps far-future sleeps), so no deadline overflows.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// A call's deadline: 2⁻³² s units since [`base`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline(u64);

/// The clock base: a precise and a coarse reading taken together, once per OS process.
struct Base {
    precise: std::time::Instant,
    coarse: u64,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| Base {
        precise: std::time::Instant::now(),
        coarse: coarsetime::Instant::now_without_cache_update().as_u64(),
    })
}

/// `d` in the deadline's units.
fn units(d: Duration) -> u64 {
    coarsetime::Duration::from(d.min(FAR)).as_u64()
}

impl Deadline {
    /// The deadline `timeout` from now. For timeouts of a second or more (a call's default is
    /// 5 s) it reads the kernel's coarse monotonic clock, 5 ns instead of 23 for the precise one
    /// on the 2-core machine, padded so that it is never early (at most `COARSE_GRAIN` late).
    pub(crate) fn after(timeout: Duration) -> Deadline {
        let base = base();
        if timeout < COARSE_FROM {
            return Deadline(units(base.precise.elapsed()) + units(timeout));
        }
        let now = coarsetime::Instant::now_without_cache_update().as_u64();
        Deadline(
            now.saturating_sub(base.coarse)
                .saturating_add(units(timeout))
                .saturating_add(units(COARSE_GRAIN)),
        )
    }

    /// The deadline at `at` (a moment from another clock reading, such as a remote call's
    /// time left added to its arrival).
    pub(crate) fn at(at: std::time::Instant) -> Deadline {
        Deadline(units(at.saturating_duration_since(base().precise)))
    }

    /// The same moment as a std `Instant`.
    pub(crate) fn to_std(self) -> std::time::Instant {
        base().precise + Duration::from(coarsetime::Duration::from_u64(self.0))
    }

    /// True if the deadline has passed by the kernel's coarse clock: 5 ns, and late by at most
    /// a kernel tick, which errs on the side of running the work.
    #[inline]
    pub(crate) fn passed_coarse(self) -> bool {
        let now = coarsetime::Instant::now_without_cache_update().as_u64();
        now.saturating_sub(base().coarse) > self.0
    }

    fn later_by(self, units: u64) -> Deadline {
        Deadline(self.0.saturating_add(units))
    }

    /// The same moment as a tokio `Instant`, for the timer.
    fn instant(self) -> tokio::time::Instant {
        let since = Duration::from(coarsetime::Duration::from_u64(self.0));
        tokio::time::Instant::from_std(base().precise + since)
    }
}

/// How late a call may time out, in the deadline's units: 1/64 of its timeout, at least 1 ms
/// (the timer wheel's grain) and at most 1 s. The slack lets a caller's timer stay put across
/// back-to-back calls.
pub(crate) fn slack(timeout: Duration) -> u64 {
    (units(timeout) / 64).clamp(
        units(Duration::from_millis(1)),
        units(Duration::from_secs(1)),
    )
}

/// Awaits `fut` until `deadline`, or up to `slack` after it; `None` if that passes first.
/// Inside a process this reuses the process's timer and leaves it alone when it is already set
/// within `[deadline, deadline + slack]`: back-to-back calls then do not touch the timer wheel
/// at all (a reset is an atomic read-modify-write on the entry plus tick arithmetic, ~10% of a
/// busy caller's time), nor poll the timer when it is still armed for the same waker (two
/// more read-modify-writes per call). Elsewhere it uses a fresh timer.
pub(crate) fn timeout_at<F: Future>(deadline: Deadline, slack: u64, fut: F) -> Timeout<F> {
    let timer = match with_current(|p| p.calls().timer.take()).flatten() {
        // Set no earlier than the deadline, which is in the future: it has not fired.
        Some(t) if t.set_at >= deadline && t.set_at <= deadline.later_by(slack) => t,
        Some(mut t) => {
            t.set_at = deadline.later_by(slack / 2);
            t.sleep.as_mut().reset(t.set_at.instant());
            t.armed_for = None;
            t
        }
        None => CallTimer {
            sleep: Box::pin(tokio::time::sleep_until(deadline.instant())),
            armed_for: None,
            set_at: deadline,
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `deadline` as an offset from the precise clock's `now`.
    fn from_now(deadline: Deadline) -> (std::time::Instant, std::time::Instant) {
        let now = std::time::Instant::now();
        (deadline.instant().into_std(), now)
    }

    #[test]
    fn a_deadline_is_never_early_and_at_most_the_coarse_grain_late() {
        for timeout in [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_millis(999),
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(3600),
        ] {
            for _ in 0..1000 {
                let before = std::time::Instant::now();
                let (at, after) = from_now(Deadline::after(timeout));
                assert!(at >= before + timeout, "early for {timeout:?}");
                // The coarse clock's padding plus a tick of its lag, generously.
                assert!(
                    at <= after + timeout + COARSE_GRAIN + Duration::from_millis(10),
                    "late for {timeout:?}: {:?}",
                    at - (after + timeout)
                );
            }
        }
    }

    #[test]
    fn absurd_timeouts_are_capped_not_overflowed() {
        let far = Deadline::after(Duration::from_secs(u64::MAX));
        assert!(far > Deadline::after(Duration::from_secs(86_400 * 365)));
        // Converts to an instant ~30 years ahead instead of panicking.
        let _ = far.later_by(slack(Duration::from_secs(u64::MAX))).instant();
    }

    #[test]
    fn slack_is_a_64th_between_a_millisecond_and_a_second() {
        assert_eq!(slack(Duration::ZERO), units(Duration::from_millis(1)));
        assert_eq!(
            slack(Duration::from_secs(5)),
            units(Duration::from_secs(5)) / 64
        );
        assert_eq!(
            slack(Duration::from_secs(3600)),
            units(Duration::from_secs(1))
        );
    }
}
