//! The call protocol every behaviour shares: a request that expects a reply, a reply handle
//! ([`ReplyTo`]) that may be answered at once or later from anywhere, and a caller that never
//! hangs (OTP's `gen:call`).
//!
//! * A call waits at most its timeout ([`DEFAULT_CALL_TIMEOUT`], 5 s, as in OTP) and then ends
//!   with [`CallError::Timeout`]; a reply that comes later is dropped.
//! * A callee that is not alive, or dies before replying, ends the call at once with
//!   [`CallError::Exited`] and its exit reason: whether the reply handle was still queued, in
//!   the handler's hands, or handed on to another process or task that outlives the callee (as
//!   `gen:call` learns it from a monitor).
//! * A handle dropped unanswered while the callee lives ends the call with
//!   [`CallError::NoReply`].
//!
//! How, cheaply (docs/decisions/010-call-protocol.md): the reply lands in a slot the calling
//! process reuses call after call (`slot`); a handle queued in a mailbox that closes is dropped
//! and says why; and a handle that leaves its handler unanswered (`watch`) makes the callee tell
//! its caller, who then watches the callee's exit for the rest of that call. A call whose handle
//! is answered in its handler, the common case, pays for none of that.

mod error;
pub(crate) mod reply;
pub(crate) mod slot;
pub(crate) mod watch;
pub mod wire;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub use error::CallError;
pub use reply::{Outcome, ReplyTo};

use crate::{Addr, SendError};
use reply::Unanswered;
use slot::{Answer, SlotReceiver};

/// The default time a call waits for its reply, as in OTP.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A request on its way to a behaviour, as its mailbox carries it: the request itself (which
/// holds the [`ReplyTo`] its reply goes to) and what the callee needs to know of the call it
/// belongs to. Handles build these; a distribution layer builds them with [`Request::new`] for
/// requests that came from other nodes.
///
/// ```
/// use girder::call::Request;
/// let r = Request::new("ping");
/// assert_eq!(*r.body(), "ping");
/// assert_eq!(r.into_body(), "ping");
/// ```
pub struct Request<Q> {
    body: Q,
    /// The call's identity (reply slot, generation, caller), if a local process is waiting on
    /// it (see `watch`).
    tag: Option<watch::CallId>,
    /// When the caller stops waiting: past it, a callee with a backlog drops the request
    /// unhandled.
    deadline: Option<crate::timer::Deadline>,
}

impl<Q> Request<Q> {
    /// A request with no local caller to tell about its reply handle (one decoded from another
    /// node, whose node watches for it, or one built by hand).
    pub fn new(body: Q) -> Self {
        Request {
            body,
            tag: None,
            deadline: None,
        }
    }

    /// The same request with the moment its caller stops waiting (for a request from another
    /// node: the time it had left, counted from its arrival). A behaviour drops a request whose
    /// deadline has passed before it starts on it.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use girder::call::Request;
    /// let at = Instant::now() + Duration::from_secs(1);
    /// let r = Request::new("ping").with_deadline(at);
    /// let d = r.deadline().unwrap();
    /// assert!(d <= at + Duration::from_millis(1) && d + Duration::from_millis(1) >= at);
    /// ```
    pub fn with_deadline(mut self, at: std::time::Instant) -> Self {
        self.deadline = Some(crate::timer::Deadline::at(at));
        self
    }

    /// When the caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline.map(|d| d.to_std())
    }

    /// True if the request should be dropped unhandled: its deadline has passed. Checked only
    /// when the callee has a `backlog` (other messages waiting): a request taken from an empty
    /// mailbox has not waited, and a clock read per call would cost the fast path.
    #[inline]
    pub(crate) fn stale(&self, backlog: bool) -> bool {
        backlog && self.deadline.is_some_and(|d| d.passed_coarse())
    }

    /// The request.
    pub fn body(&self) -> &Q {
        &self.body
    }

    /// The request, without its envelope.
    pub fn into_body(self) -> Q {
        self.body
    }

    /// The request and the identity of its call, for the callee's loop.
    pub(crate) fn into_parts(self) -> (Q, Option<watch::CallId>) {
        (self.body, self.tag)
    }
}

impl<Q: std::fmt::Debug> std::fmt::Debug for Request<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.body.fmt(f)
    }
}

/// Sends the request `make` builds around a fresh reply handle, wrapped for the callee's
/// mailbox by `wrap`, and waits for its reply until `timeout` (`Duration::MAX`: forever; up to
/// 1/64 later, see `timer::slack`, and at most 10 ms more for the coarse clock a timeout of a
/// second or more is read with, see `timer::Deadline::after`). Ends at once with the callee's
/// exit reason if it dies, whoever holds the reply handle.
pub(crate) async fn call<M, Q, R>(
    addr: &Addr<M>,
    timeout: Duration,
    wrap: impl FnOnce(Request<Q>) -> M,
    make: impl FnOnce(ReplyTo<R>) -> Q,
) -> Result<R, CallError>
where
    M: Send + 'static,
    R: Send + 'static,
{
    // Records on every way out (reply, error, timeout, or the caller being dropped).
    let _timed = crate::stats::CallTimer::start();
    let deadline = (timeout != Duration::MAX).then(|| crate::timer::Deadline::after(timeout));
    let slack = crate::timer::slack(timeout);
    let (mut from, rx, watch) = ReplyTo::for_call();
    from.deadline = deadline;
    let gone = || match addr.exit_reason() {
        Some(reason) => CallError::Exited(reason),
        None => CallError::NoReply,
    };
    let tag = from.identity();
    let request = Request {
        body: make(from),
        tag,
        deadline,
    };
    // The common case, room in the mailbox, queues without building a waiting future.
    match addr.send(wrap(request)) {
        Ok(()) => {}
        Err(SendError::NoProc(_)) => return Err(gone()),
        Err(SendError::Full(msg)) => {
            let queued = match deadline {
                Some(d) => crate::timer::timeout_at(d, slack, addr.send_wait(msg))
                    .await
                    .ok_or(CallError::Timeout(timeout))?,
                None => addr.send_wait(msg).await,
            };
            match queued {
                Ok(()) => {}
                Err(SendError::Full(_)) => return Err(CallError::Overloaded),
                Err(SendError::NoProc(_)) => return Err(gone()),
            }
        }
    }
    let wait = Wait {
        rx,
        watch,
        callee: addr,
        exited: None,
    };
    let answer = match deadline {
        Some(d) => crate::timer::timeout_at(d, slack, wait)
            .await
            .ok_or(CallError::Timeout(timeout))?,
        None => wait.await,
    };
    match answer {
        Ok(reply) => Ok(reply),
        // The handler panicked: the callee is exiting; report its reason.
        Err(Unanswered::Panicking) => Err(CallError::Exited(addr.wait_exit().await)),
        Err(Unanswered::Exited(reason)) => Err(CallError::Exited(reason)),
        Err(Unanswered::Overloaded) => Err(CallError::Overloaded),
        // Dropped unhandled as its deadline passed (the callee checks before the caller's
        // timer, which has some slack, fires): the caller timed out.
        Err(Unanswered::Dropped) if deadline.is_some_and(|d| d.passed_coarse()) => {
            Err(CallError::Timeout(timeout))
        }
        Err(Unanswered::Dropped) => Err(gone()),
    }
}

/// Waits for the answer in the reply slot, or for the callee's exit once the callee said the
/// reply handle left its hands.
struct Wait<'a, M: Send + 'static, R: Send + 'static> {
    rx: SlotReceiver<R>,
    watch: watch::Caller,
    callee: &'a Addr<M>,
    /// The callee's exit reason, kept while an answer is still being written (boxed: rare, and
    /// every call's future carries the field).
    exited: Option<Box<crate::ExitReason>>,
}

impl<M: Send + 'static, R: Send + 'static> Future for Wait<'_, M, R> {
    type Output = Answer<R>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<R>> {
        // Every field is `Unpin` (the receiver holds a pointer, the watch a receiver).
        let this = self.get_mut();
        let own = this.watch.own();
        let told = |w: &std::task::Waker| watch::wakes(w, own);
        if let Poll::Ready(answer) = this.rx.poll_answer(cx, told) {
            return Poll::Ready(answer);
        }
        let told = this.rx.told();
        if this.watch.quiet(told) {
            return Poll::Pending;
        }
        let reason = match this.exited.take() {
            Some(reason) => *reason,
            None => {
                let (slot, _) = this.rx.identity();
                match this.watch.poll_exit(cx, this.callee, slot, told) {
                    Poll::Ready(reason) => reason,
                    Poll::Pending => return Poll::Pending,
                }
            }
        };
        // An answer given before the exit wins over it, as in Erlang, where the reply is a
        // message sent before the exit signal. It may have landed after the look above and
        // before the exit was seen: look again, now that the exit (which came after it) is.
        if let Poll::Ready(answer) = this.rx.poll_answer(cx, |_| false) {
            return Poll::Ready(answer);
        }
        // An answer being written wins too: it is in at once.
        if this.rx.writing() {
            this.exited = Some(Box::new(reason));
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Err(Unanswered::Exited(reason)))
    }
}
