//! OTP's `sys` for every behaviour: read a running server's, state machine's, supervisor's or
//! event manager's state, suspend and resume it, and trace what it handles, without stopping
//! it.
//!
//! Requests go through the process's system lane (ahead of its queued messages) and are
//! answered by the behaviour's own loop between two callbacks, so a behaviour busy in a long
//! callback answers when it returns (or the request times out: [`TIMEOUT`]). A plain process
//! refuses them ([`SysError::NotABehaviour`]).
//!
//! What a state looks like is the behaviour's choice: a server or state machine shows nothing
//! unless it opts in with [`Server::state_view`](crate::Server::state_view) (or the state
//! machine's), through `Debug` or serde ([`StateView`]); message contents in a trace likewise
//! ([`Server::trace_view`](crate::Server::trace_view)). A state machine's current state is
//! always shown (its type is `Debug`), and supervisors and event managers show their children
//! and handlers.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use girder::sys::{self, StateView, Traced};
//! use girder::{Flow, Node, Server, ServerContext};
//!
//! #[derive(Debug)]
//! struct Counter(u64);
//!
//! impl Server for Counter {
//!     type Call = (); type Cast = u64; type Info = ();
//!     async fn handle_cast(&mut self, n: u64, _: &mut ServerContext<Self>) -> Flow {
//!         self.0 += n;
//!         Flow::Continue
//!     }
//!     fn state_view(&self) -> StateView {
//!         StateView::debug(self)
//!     }
//! }
//!
//! let node = Node::new("docs");
//! let counter = girder::server::start(&node, Counter(0)).await.unwrap();
//! let mut trace = sys::trace(&node, counter.pid()).await.unwrap();
//! counter.cast(2).unwrap();
//! assert_eq!(trace.next().await.unwrap().event, Traced::Cast);
//!
//! sys::suspend(&node, counter.pid()).await.unwrap();
//! counter.cast(40).unwrap(); // queued, not handled, while suspended
//! let state = sys::get_state(&node, counter.pid()).await.unwrap();
//! assert!(state.suspended);
//! assert_eq!(state.view, StateView::Text("Counter(\n    2,\n)".into()));
//!
//! sys::resume(&node, counter.pid()).await.unwrap();
//! assert_eq!(trace.next().await.unwrap().event, Traced::Suspended);
//! assert_eq!(trace.next().await.unwrap().event, Traced::Resumed);
//! assert_eq!(trace.next().await.unwrap().event, Traced::Cast);
//! # }
//! ```

mod serve;

pub(crate) use serve::{debug_text, detail, Sys, SysRequest};

use std::fmt::Debug;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::mailbox::SysMsg;
use crate::process::addr::Target;
use crate::process::core::AnyProcess;
use crate::{Addr, Node, Pid};

/// How long a `sys` request waits for the behaviour to answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// How many trace events wait for a slow reader before newer ones are dropped (and counted:
/// [`Trace::dropped`]). A traced process never waits for its tracer.
pub const TRACE_CAPACITY: usize = 1024;

/// How many traces one process may have attached at once.
pub const MAX_TRACES: usize = 8;

/// A trace event's detail (and a state machine's state) is cut to this many bytes.
pub const MAX_DETAIL: usize = 4 * 1024;

/// A state view is cut to this many bytes (a JSON one that is bigger becomes text).
pub const MAX_VIEW: usize = 256 * 1024;

/// A behaviour's state as `sys` shows it: hidden unless the behaviour opts in.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum StateView {
    /// Not shown (the default).
    Hidden,
    /// Text, usually from `Debug`.
    Text(String),
    /// A JSON value, from serde.
    Json(serde_json::Value),
}

impl StateView {
    /// The state through its `Debug` (pretty-printed).
    ///
    /// ```
    /// use girder::sys::StateView;
    /// assert_eq!(StateView::debug(&(1, "a")), StateView::Text("(\n    1,\n    \"a\",\n)".into()));
    /// ```
    pub fn debug<T: Debug + ?Sized>(state: &T) -> StateView {
        StateView::Text(format!("{state:#?}"))
    }

    /// The state through serde, as JSON (as text saying why if it does not serialize).
    ///
    /// ```
    /// use girder::sys::StateView;
    /// let view = StateView::json(&std::collections::BTreeMap::from([("sessions", 3)]));
    /// assert_eq!(view, StateView::Json(serde_json::json!({"sessions": 3})));
    /// ```
    pub fn json<T: Serialize + ?Sized>(state: &T) -> StateView {
        match serde_json::to_value(state) {
            Ok(v) => StateView::Json(v),
            Err(e) => StateView::Text(format!("(state does not serialize: {e})")),
        }
    }
}

/// What [`get_state`] returns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SysState {
    /// The process.
    pub pid: Pid,
    /// Its behaviour: `server`, `statem`, `supervisor` or `event_manager`.
    pub behaviour: &'static str,
    /// A state machine's current state (its `Debug`); `None` for other behaviours.
    pub state: Option<String>,
    /// The behaviour's state (a state machine's data), as it chooses to show it.
    pub view: StateView,
    /// Suspended: handling nothing but `sys` requests and stop signals.
    pub suspended: bool,
    /// How many traces are attached.
    pub tracers: usize,
}

/// One thing a traced behaviour did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceEvent {
    /// The traced process.
    pub pid: Pid,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What.
    pub event: Traced,
    /// The message's contents, if the behaviour shows them
    /// ([`Server::trace_view`](crate::Server::trace_view)).
    pub detail: Option<String>,
}

/// What a [`TraceEvent`] records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Traced {
    /// Got a call.
    Call,
    /// Got a cast.
    Cast,
    /// Got an info message (or a source's item).
    Info,
    /// Got a trapped exit signal.
    Exit {
        /// From whom.
        from: Pid,
        /// Why.
        reason: String,
    },
    /// Got a monitor's notice.
    Down {
        /// Who went down.
        pid: Pid,
        /// Why.
        reason: String,
    },
    /// A state machine's timeout fired.
    Timeout,
    /// A state machine moved to another state.
    StateChange {
        /// The state left (its `Debug`).
        from: String,
        /// The state entered.
        to: String,
    },
    /// Suspended by [`suspend`].
    Suspended,
    /// Resumed by [`resume`].
    Resumed,
    /// This many events were dropped before this one, the trace being read too slowly (also
    /// counted by [`Trace::dropped`]).
    Dropped {
        /// How many.
        count: u64,
    },
    /// Stopping; the last event of a trace.
    Stopping {
        /// Why.
        reason: String,
    },
}

/// Why a `sys` request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SysError {
    /// No such process on this node (or it exited before answering).
    #[error("process {0} is not alive")]
    NoProc(Pid),
    /// A plain process, not a behaviour: it has no `sys` loop.
    #[error("process {0} is not a behaviour")]
    NotABehaviour(Pid),
    /// The behaviour did not answer in time (busy in a long callback, or overloaded).
    #[error("process {0} did not answer within {1:?}")]
    Timeout(Pid, Duration),
    /// A process on another node: `sys` requests go to the node it runs on.
    #[error("process {0} is on another node")]
    Remote(Pid),
    /// [`MAX_TRACES`] traces are attached already.
    #[error("process {0} has {MAX_TRACES} traces attached already")]
    TooManyTraces(Pid),
}

/// A behaviour's events as they happen, from [`trace`]. Dropping it ends the trace.
#[derive(Debug)]
pub struct Trace {
    pid: Pid,
    rx: mpsc::Receiver<TraceEvent>,
    counts: Arc<DropCounts>,
}

/// Events a trace dropped, shared by the traced process and the reader.
#[derive(Debug, Default)]
pub(crate) struct DropCounts {
    /// All dropped so far.
    dropped: AtomicU64,
    /// Dropped and not yet told (by a [`Traced::Dropped`] notice): the process tells them
    /// before its next event if there is room, the reader when it has read everything queued.
    untold: AtomicU64,
}

impl Trace {
    /// The next event; `None` once the process has exited. Events dropped because the trace
    /// was read too slowly are told by a [`Traced::Dropped`] notice, at the latest when
    /// everything queued has been read.
    pub async fn next(&mut self) -> Option<TraceEvent> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut TaskCx<'_>) -> Poll<Option<TraceEvent>> {
        match self.rx.poll_recv(cx) {
            // Read up (not just out of tokio's cooperative budget, which also answers
            // Pending): whatever was dropped and not told yet is told now, rather than before
            // an event that may never come.
            Poll::Pending if self.rx.is_empty() => {
                let untold = self.counts.untold.swap(0, Ordering::AcqRel);
                if untold == 0 {
                    return Poll::Pending;
                }
                Poll::Ready(Some(TraceEvent {
                    pid: self.pid,
                    at_ms: now_ms(),
                    event: Traced::Dropped { count: untold },
                    detail: None,
                }))
            }
            other => other,
        }
    }

    /// The traced process.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Events dropped because this trace was read too slowly (the process never waits).
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }
}

impl futures_util::Stream for Trace {
    type Item = TraceEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Option<TraceEvent>> {
        self.poll_event(cx)
    }
}

/// Now, in milliseconds since the Unix epoch: a trace event's time.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A behaviour's state, without stopping it (`sys:get_state/1` and `get_status/1`).
pub async fn get_state(node: &Node, pid: Pid) -> Result<SysState, SysError> {
    let p = process(node, pid)?;
    request(&*p, pid, SysRequest::GetState).await
}

/// Suspends a behaviour: it handles nothing but `sys` requests and stop signals (a stop from
/// its supervisor, a trapped exit from its parent) until [`resume`]d; everything else waits in
/// its mailbox, calls included (their callers time out as usual).
pub async fn suspend(node: &Node, pid: Pid) -> Result<(), SysError> {
    let p = process(node, pid)?;
    request(&*p, pid, SysRequest::Suspend).await
}

/// Resumes a suspended behaviour (nothing if it was not suspended).
pub async fn resume(node: &Node, pid: Pid) -> Result<(), SysError> {
    let p = process(node, pid)?;
    request(&*p, pid, SysRequest::Resume).await
}

/// Traces a behaviour: every event it handles from now on, until the [`Trace`] is dropped or
/// the process exits. Several traces may be attached at once; each holds up to
/// [`TRACE_CAPACITY`] unread events.
pub async fn trace(node: &Node, pid: Pid) -> Result<Trace, SysError> {
    let p = process(node, pid)?;
    trace_on(&*p, pid).await
}

pub(crate) async fn get_state_of<M: Send + 'static>(addr: &Addr<M>) -> Result<SysState, SysError> {
    let (p, pid) = process_of(addr)?;
    request(&*p, pid, SysRequest::GetState).await
}

pub(crate) async fn suspend_of<M: Send + 'static>(addr: &Addr<M>) -> Result<(), SysError> {
    let (p, pid) = process_of(addr)?;
    request(&*p, pid, SysRequest::Suspend).await
}

pub(crate) async fn resume_of<M: Send + 'static>(addr: &Addr<M>) -> Result<(), SysError> {
    let (p, pid) = process_of(addr)?;
    request(&*p, pid, SysRequest::Resume).await
}

pub(crate) async fn trace_of<M: Send + 'static>(addr: &Addr<M>) -> Result<Trace, SysError> {
    let (p, pid) = process_of(addr)?;
    trace_on(&*p, pid).await
}

fn process_of<M: Send + 'static>(addr: &Addr<M>) -> Result<(Arc<dyn AnyProcess>, Pid), SysError> {
    let pid = addr.pid();
    match &addr.target {
        Target::Local(core) => Ok((core.clone(), pid)),
        Target::Remote(_) => Err(SysError::Remote(pid)),
    }
}

fn process(node: &Node, pid: Pid) -> Result<Arc<dyn AnyProcess>, SysError> {
    if !pid.is_local() {
        return Err(SysError::Remote(pid));
    }
    node.lookup_any(pid).ok_or(SysError::NoProc(pid))
}

async fn trace_on(p: &dyn AnyProcess, pid: Pid) -> Result<Trace, SysError> {
    let (tx, rx) = mpsc::channel(TRACE_CAPACITY);
    let counts = Arc::new(DropCounts::default());
    let tracer = serve::Tracer::new(tx, counts.clone());
    request(p, pid, |reply| SysRequest::Trace(tracer, reply)).await?;
    Ok(Trace { pid, rx, counts })
}

/// Sends a request through the system lane and waits for the behaviour's answer.
pub(crate) async fn request<T>(
    p: &dyn AnyProcess,
    pid: Pid,
    make: impl FnOnce(oneshot::Sender<Result<T, SysError>>) -> SysRequest,
) -> Result<T, SysError> {
    let (tx, rx) = oneshot::channel();
    if !p.push_sys(SysMsg::Sys(Box::new(make(tx)))) {
        return Err(SysError::NoProc(pid));
    }
    match tokio::time::timeout(TIMEOUT, rx).await {
        Ok(Ok(answer)) => answer,
        // Dropped unanswered: the process exited with the request queued.
        Ok(Err(_)) => Err(SysError::NoProc(pid)),
        Err(_) => Err(SysError::Timeout(pid, TIMEOUT)),
    }
}
