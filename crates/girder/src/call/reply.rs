use std::fmt;

use tokio::sync::oneshot;

use super::slot::{self, SlotReceiver, SlotSender};

/// Where the reply to one call goes. Reply at once, or keep it (move it to another task) and
/// reply later: that is a deferred reply. Dropping it without replying ends the call with
/// [`CallError::NoReply`](crate::CallError::NoReply).
///
/// ```
/// # #[tokio::main] async fn main() {
/// let (from, rx) = girder::ReplyTo::<u32>::pair();
/// tokio::spawn(async move { from.reply(7) });
/// assert_eq!(rx.await.unwrap(), 7);
/// # }
/// ```
pub struct ReplyTo<R> {
    tx: Option<Sender<R>>,
    /// When the caller stops waiting, if it said (a call with a timeout).
    pub(crate) deadline: Option<crate::timer::Deadline>,
}

enum Sender<R> {
    Plain(oneshot::Sender<R>),
    /// A call's reply slot also says why a handle was dropped unanswered.
    Call(SlotSender<R>),
    /// A proxy's handle: the outcome goes to a function (e.g. back over a connection).
    Forward(Box<dyn FnOnce(Outcome<R>) + Send + Sync>),
}

/// How a call ended, as a forwarding reply handle ([`ReplyTo::forward`]) learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<R> {
    /// The handler replied.
    Replied(R),
    /// The handle was dropped without a reply while the server kept running.
    Dropped,
    /// The handle was dropped while its handler was panicking: the server is exiting.
    Panicking,
    /// The call failed because the callee exited (see [`ReplyTo::fail`]).
    Failed(crate::ExitReason),
    /// The callee refused the call unhandled: it is overloaded (see [`ReplyTo::overloaded`]).
    Overloaded,
}

/// Why a reply handle was dropped without a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// Dropped by the handler (the server may still be running).
    Dropped,
    /// Dropped while its handler was panicking: the server is about to exit.
    Panicking,
    /// Failed on purpose by a proxy whose callee exited.
    Exited(crate::ExitReason),
    /// Refused unhandled: the callee (or the node it is on) is overloaded.
    Overloaded,
}

impl<R> ReplyTo<R> {
    /// A reply handle and the receiver its reply arrives on (for tests and custom protocols).
    pub fn pair() -> (Self, oneshot::Receiver<R>) {
        let (tx, rx) = oneshot::channel();
        (
            ReplyTo {
                tx: Some(Sender::Plain(tx)),
                deadline: None,
            },
            rx,
        )
    }

    /// A handle that answers nothing (what is left where a handle was taken out).
    pub(crate) fn none() -> Self {
        ReplyTo {
            tx: None,
            deadline: None,
        }
    }

    /// A reply handle for a call from the running process (or from outside any process),
    /// answered through one of its reusable reply slots (see `server::slot`).
    pub(crate) fn for_call() -> (Self, SlotReceiver<R>, super::watch::Caller)
    where
        R: Send + 'static,
    {
        let (slot, watch) = crate::process::local::take_slot();
        let (tx, rx) = slot::open(slot);
        (
            ReplyTo {
                tx: Some(Sender::Call(tx)),
                deadline: None,
            },
            rx,
            watch,
        )
    }

    /// A reply handle that hands the call's outcome to `f`: how a proxy, such as the
    /// distribution layer, answers a call that came from elsewhere.
    ///
    /// ```
    /// use girder::server::{Outcome, ReplyTo};
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let from = ReplyTo::forward(move |o: Outcome<u32>| tx.send(o).unwrap());
    /// from.reply(7);
    /// assert_eq!(rx.recv().unwrap(), Outcome::Replied(7));
    /// let tx2 = std::sync::mpsc::channel::<Outcome<u32>>().0;
    /// drop(ReplyTo::forward(move |o| { let _ = tx2.send(o); }));
    /// ```
    pub fn forward(f: impl FnOnce(Outcome<R>) + Send + Sync + 'static) -> Self {
        ReplyTo {
            tx: Some(Sender::Forward(Box::new(f))),
            deadline: None,
        }
    }

    /// The call this handle answers: its slot's address, generation and caller (for a call's
    /// own handle; `None` for the others).
    #[inline]
    pub(crate) fn identity(&self) -> Option<super::watch::CallId> {
        match &self.tx {
            Some(Sender::Call(tx)) => tx.identity(),
            _ => None,
        }
    }

    /// Sends the reply. If the caller has given up (timed out), the reply is dropped.
    pub fn reply(mut self, value: R) {
        match self.tx.take() {
            Some(Sender::Plain(tx)) => {
                let _ = tx.send(value);
            }
            Some(Sender::Call(tx)) => {
                super::watch::answered(tx.slot_id());
                tx.send(Ok(value))
            }
            Some(Sender::Forward(f)) => f(Outcome::Replied(value)),
            None => {}
        }
    }

    /// Ends the call with [`CallError::Exited`](crate::CallError::Exited)`(reason)`: for a proxy
    /// whose callee exited (or whose node became unreachable) before replying.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{CallError, ExitReason, Node, ReplyTo, Server, ServerContext, Flow};
    /// struct Proxy;
    /// impl Server for Proxy {
    ///     type Call = ReplyTo<()>; type Cast = (); type Info = ();
    ///     async fn handle_call(&mut self, from: ReplyTo<()>, _: &mut ServerContext<Self>) -> Flow {
    ///         from.fail(ExitReason::NoConnection);
    ///         Flow::Continue
    ///     }
    /// }
    /// let node = Node::new("docs");
    /// let proxy = girder::server::start(&node, Proxy).await.unwrap();
    /// assert_eq!(proxy.call(|r| r).await, Err(CallError::Exited(ExitReason::NoConnection)));
    /// # }
    /// ```
    pub fn fail(mut self, reason: crate::ExitReason) {
        match self.tx.take() {
            Some(Sender::Call(tx)) => {
                super::watch::answered(tx.slot_id());
                tx.send(Err(Unanswered::Exited(reason)))
            }
            Some(Sender::Forward(f)) => f(Outcome::Failed(reason)),
            Some(Sender::Plain(_)) | None => {}
        }
    }

    /// When the caller stops waiting (its call's timeout), if it has one: the same for a call
    /// from another node, whose time left travels with it.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use std::time::Duration;
    /// use girder::{Flow, Node, ReplyTo, Server, ServerContext};
    /// struct Clock;
    /// impl Server for Clock {
    ///     type Call = ReplyTo<Option<Duration>>; type Cast = (); type Info = ();
    ///     async fn handle_call(&mut self, from: ReplyTo<Option<Duration>>, _: &mut ServerContext<Self>) -> Flow {
    ///         let left = from.time_left();
    ///         from.reply(left);
    ///         Flow::Continue
    ///     }
    /// }
    /// let node = Node::new("docs");
    /// let clock = girder::server::start(&node, Clock).await.unwrap();
    /// let left = clock.call_timeout(|r| r, Duration::from_millis(500)).await.unwrap().unwrap();
    /// assert!(left > Duration::from_millis(400) && left <= Duration::from_millis(501));
    /// # }
    /// ```
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline.map(|d| d.to_std())
    }

    /// How long the caller will still wait (zero once it has given up), if it said.
    pub fn time_left(&self) -> Option<std::time::Duration> {
        self.deadline()
            .map(|d| d.saturating_duration_since(std::time::Instant::now()))
    }

    /// True if the caller is no longer waiting for this reply: it timed out (its deadline
    /// passed, also for a caller on another node) or went away. Work for it can stop.
    pub fn caller_gave_up(&self) -> bool {
        self.is_closed() || self.time_left().is_some_and(|left| left.is_zero())
    }

    /// Ends the call with [`CallError::Overloaded`](crate::CallError::Overloaded): the request
    /// was refused unhandled (for a proxy or a distribution layer whose callee turned it away).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::{CallError, Flow, Node, ReplyTo, Server, ServerContext};
    /// struct Busy;
    /// impl Server for Busy {
    ///     type Call = ReplyTo<()>; type Cast = (); type Info = ();
    ///     async fn handle_call(&mut self, from: ReplyTo<()>, _: &mut ServerContext<Self>) -> Flow {
    ///         from.overloaded();
    ///         Flow::Continue
    ///     }
    /// }
    /// let node = Node::new("docs");
    /// let busy = girder::server::start(&node, Busy).await.unwrap();
    /// assert_eq!(busy.call(|r| r).await, Err(CallError::Overloaded));
    /// # }
    /// ```
    pub fn overloaded(mut self) {
        match self.tx.take() {
            Some(Sender::Call(tx)) => {
                super::watch::answered(tx.slot_id());
                tx.send(Err(Unanswered::Overloaded))
            }
            Some(Sender::Forward(f)) => f(Outcome::Overloaded),
            Some(Sender::Plain(_)) | None => {}
        }
    }

    /// True if the caller is no longer waiting (a local caller that went away; see also
    /// [`caller_gave_up`](Self::caller_gave_up)).
    pub fn is_closed(&self) -> bool {
        match &self.tx {
            Some(Sender::Plain(tx)) => tx.is_closed(),
            Some(Sender::Call(tx)) => tx.is_closed(),
            Some(Sender::Forward(_)) => false,
            None => true,
        }
    }
}

impl<R> Drop for ReplyTo<R> {
    fn drop(&mut self) {
        // Checked only for a handle dropped unanswered: a replied one has no sender left.
        let panicking = || std::thread::panicking();
        match self.tx.take() {
            Some(Sender::Call(tx)) => {
                super::watch::answered(tx.slot_id());
                let why = if panicking() {
                    Unanswered::Panicking
                } else {
                    Unanswered::Dropped
                };
                tx.send(Err(why));
            }
            Some(Sender::Forward(f)) => f(if panicking() {
                Outcome::Panicking
            } else {
                Outcome::Dropped
            }),
            Some(Sender::Plain(_)) | None => {}
        }
    }
}

impl<R> fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplyTo(..)")
    }
}
