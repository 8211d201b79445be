//! The shape every behaviour shares: one kind of mailbox message for calls, casts and other
//! messages, and one kind of handle.

use std::future::Future;

use crate::call::{CallError, ReplyTo, Request};
use crate::sys::{SysError, SysState, Trace};
use crate::{Addr, ExitReason, LookupError, Node, Pid, SendError};

/// What a behaviour's mailbox carries: a call (its request holds the [`ReplyTo`] its reply goes
/// to), a cast, or any other message. [`Server`](crate::Server)s and
/// [`StateMachine`](crate::statem::StateMachine)s both take `Msg<Call, Cast, Info>`, so one
/// handle, one way across nodes and one way to inspect them serve both. Handles build these;
/// code seldom needs to.
///
/// ```
/// use girder::behaviour::Msg;
/// use girder::call::Request;
/// let m: Msg<(), &str, ()> = Msg::Cast("hello");
/// assert!(matches!(m, Msg::Cast("hello")));
/// let c: Msg<u8, (), ()> = Msg::Call(Request::new(7));
/// assert!(matches!(c, Msg::Call(r) if *r.body() == 7));
/// ```
pub enum Msg<C, K, I> {
    /// A request that expects a reply.
    Call(Request<C>),
    /// A fire-and-forget request.
    Cast(K),
    /// Any other message (timers, notifications from other processes).
    Info(I),
}

/// What every behaviour handle offers, with the same names and meaning: [`ServerRef`],
/// [`StateMachineRef`], [`SupervisorRef`] and [`EventManager`] each implement it (and have the
/// same methods without the trait in scope). Generic code takes `impl Handle`.
///
/// [`ServerRef`]: crate::ServerRef
/// [`StateMachineRef`]: crate::StateMachineRef
/// [`SupervisorRef`]: crate::SupervisorRef
/// [`EventManager`]: crate::EventManager
///
/// ```
/// use girder::behaviour::Handle;
/// use girder::{ExitReason, Node, Supervisor};
///
/// /// Stops any behaviour, whatever it is.
/// async fn retire(h: &impl Handle) -> ExitReason {
///     h.stop(ExitReason::Shutdown).await
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// let sup = Supervisor::builder().start(&node).await.unwrap();
/// assert!(Handle::is_alive(&sup));
/// assert_eq!(retire(&sup).await, ExitReason::Shutdown);
/// # }
/// ```
pub trait Handle: Clone + Send + Sync + Sized + 'static {
    /// The behaviour's mailbox message.
    type Msg: Send + 'static;

    /// The underlying mailbox handle (local or remote).
    fn addr(&self) -> &Addr<Self::Msg>;

    /// A handle from a typed address, local or remote (a distribution layer builds remote
    /// ones).
    fn from_addr(addr: Addr<Self::Msg>) -> Self;

    /// The behaviour's pid.
    fn pid(&self) -> Pid {
        self.addr().pid()
    }

    /// The behaviour registered under `name` on `node`.
    fn lookup(node: &Node, name: &str) -> Result<Self, LookupError> {
        node.lookup(name).map(Self::from_addr)
    }

    /// The behaviour with `pid` on `node`.
    fn from_pid(node: &Node, pid: Pid) -> Result<Self, LookupError> {
        node.addr(pid).map(Self::from_addr)
    }

    /// Asks the behaviour to stop with `reason`, runs its `terminate`, and waits until it has
    /// exited. The request overtakes queued messages (it travels in the system lane); the
    /// message being handled finishes first. Returns the reason it exited with.
    fn stop(&self, reason: ExitReason) -> impl Future<Output = ExitReason> + Send {
        let addr = self.addr().clone();
        async move {
            addr.stop(reason);
            addr.wait_exit().await
        }
    }

    /// Waits until the behaviour exits and returns why.
    fn wait_exit(&self) -> impl Future<Output = ExitReason> + Send {
        let addr = self.addr().clone();
        async move { addr.wait_exit().await }
    }

    /// True while it has not exited.
    fn is_alive(&self) -> bool {
        self.addr().is_alive()
    }

    /// Messages waiting in its mailbox (0 for a remote one), counted as they come and go.
    fn mailbox_len(&self) -> usize {
        self.addr().mailbox_len()
    }

    /// Its state as it chooses to show it, without stopping it ([`sys::get_state`]).
    ///
    /// [`sys::get_state`]: crate::sys::get_state
    fn get_state(&self) -> impl Future<Output = Result<SysState, SysError>> + Send {
        let addr = self.addr().clone();
        async move { crate::sys::get_state_of(&addr).await }
    }

    /// Suspends it until [`resume`](Handle::resume)d ([`sys::suspend`]).
    ///
    /// [`sys::suspend`]: crate::sys::suspend
    fn suspend(&self) -> impl Future<Output = Result<(), SysError>> + Send {
        let addr = self.addr().clone();
        async move { crate::sys::suspend_of(&addr).await }
    }

    /// Resumes it ([`sys::resume`]).
    ///
    /// [`sys::resume`]: crate::sys::resume
    fn resume(&self) -> impl Future<Output = Result<(), SysError>> + Send {
        let addr = self.addr().clone();
        async move { crate::sys::resume_of(&addr).await }
    }

    /// Traces what it handles from now on ([`sys::trace`]).
    ///
    /// [`sys::trace`]: crate::sys::trace
    fn trace(&self) -> impl Future<Output = Result<Trace, SysError>> + Send {
        let addr = self.addr().clone();
        async move { crate::sys::trace_of(&addr).await }
    }
}

/// Implements [`Handle`] and the same methods inherently (so no trait import is needed) for a
/// handle struct holding `addr: Addr<$msg>` (and the given fields, set to their defaults by
/// `from_addr`).
macro_rules! handle {
    ($ty:ident [$($gen:tt)*] [$($arg:tt)*], $msg:ty $(, $field:ident = $default:expr)*) => {
        impl<$($gen)*> Clone for $ty<$($arg)*> {
            fn clone(&self) -> Self {
                $ty { addr: self.addr.clone() $(, $field: self.$field.clone())* }
            }
        }

        impl<$($gen)*> std::fmt::Debug for $ty<$($arg)*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self.addr.pid())
            }
        }

        impl<$($gen)*> $crate::behaviour::Handle for $ty<$($arg)*> {
            type Msg = $msg;
            fn addr(&self) -> &$crate::Addr<$msg> {
                &self.addr
            }
            fn from_addr(addr: $crate::Addr<$msg>) -> Self {
                $ty { addr $(, $field: $default)* }
            }
        }

        impl<$($gen)*> $ty<$($arg)*> {
            /// Its pid.
            pub fn pid(&self) -> $crate::Pid {
                self.addr.pid()
            }

            /// The underlying mailbox handle (local or remote).
            pub fn addr(&self) -> &$crate::Addr<$msg> {
                &self.addr
            }

            /// A handle from a typed address, local or remote (a distribution layer builds
            /// remote ones).
            pub fn from_addr(addr: $crate::Addr<$msg>) -> Self {
                $ty { addr $(, $field: $default)* }
            }

            /// The one registered under `name` on `node`.
            pub fn lookup(node: &$crate::Node, name: &str) -> Result<Self, $crate::LookupError> {
                <Self as $crate::behaviour::Handle>::lookup(node, name)
            }

            /// The one with `pid` on `node`.
            pub fn from_pid(node: &$crate::Node, pid: $crate::Pid) -> Result<Self, $crate::LookupError> {
                <Self as $crate::behaviour::Handle>::from_pid(node, pid)
            }

            /// Asks it to stop with `reason`, runs its `terminate`, and waits until it has
            /// exited; returns the reason it exited with. The request overtakes queued messages;
            /// the message being handled finishes first.
            pub async fn stop(&self, reason: $crate::ExitReason) -> $crate::ExitReason {
                <Self as $crate::behaviour::Handle>::stop(self, reason).await
            }

            /// Waits until it exits and returns why.
            pub async fn wait_exit(&self) -> $crate::ExitReason {
                self.addr.wait_exit().await
            }

            /// True while it has not exited.
            pub fn is_alive(&self) -> bool {
                self.addr.is_alive()
            }

            /// Messages waiting in its mailbox (0 for a remote one).
            pub fn mailbox_len(&self) -> usize {
                self.addr.mailbox_len()
            }

            /// Its state as it chooses to show it, without stopping it
            /// ([`sys::get_state`](crate::sys::get_state)).
            pub async fn get_state(&self) -> Result<$crate::sys::SysState, $crate::sys::SysError> {
                $crate::sys::get_state_of(&self.addr).await
            }

            /// Suspends it until resumed ([`sys::suspend`](crate::sys::suspend)).
            pub async fn suspend(&self) -> Result<(), $crate::sys::SysError> {
                $crate::sys::suspend_of(&self.addr).await
            }

            /// Resumes it ([`sys::resume`](crate::sys::resume)).
            pub async fn resume(&self) -> Result<(), $crate::sys::SysError> {
                $crate::sys::resume_of(&self.addr).await
            }

            /// Traces what it handles from now on ([`sys::trace`](crate::sys::trace)).
            pub async fn trace(&self) -> Result<$crate::sys::Trace, $crate::sys::SysError> {
                $crate::sys::trace_of(&self.addr).await
            }
        }
    };
}

pub(crate) use handle;

/// Calls, casts and infos for a handle whose mailbox takes [`Msg`].
pub(crate) fn call<'a, C, K, I, R, F>(
    addr: &'a Addr<Msg<C, K, I>>,
    make: F,
    timeout: std::time::Duration,
) -> impl Future<Output = Result<R, CallError>> + Send + 'a
where
    C: Send + 'static,
    K: Send + 'static,
    I: Send + 'static,
    R: Send + 'static,
    F: FnOnce(ReplyTo<R>) -> C + Send + 'a,
{
    crate::call::call(addr, timeout, Msg::Call, make)
}

pub(crate) fn cast<C, K, I>(addr: &Addr<Msg<C, K, I>>, msg: K) -> Result<(), SendError<K>>
where
    C: Send + 'static,
    K: Send + 'static,
    I: Send + 'static,
{
    super::send_as(addr, msg, Msg::Cast, |m| match m {
        Msg::Cast(c) => Some(c),
        _ => None,
    })
}

pub(crate) fn info<C, K, I>(addr: &Addr<Msg<C, K, I>>, msg: I) -> Result<(), SendError<I>>
where
    C: Send + 'static,
    K: Send + 'static,
    I: Send + 'static,
{
    super::send_as(addr, msg, Msg::Info, |m| match m {
        Msg::Info(i) => Some(i),
        _ => None,
    })
}
