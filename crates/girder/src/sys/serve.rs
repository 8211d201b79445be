//! The behaviour's side of `sys`: the requests, and what each behaviour loop keeps to answer
//! them (suspended or not, the traces attached).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::{StateView, SysError, SysState, TraceEvent, Traced};
use crate::Pid;

type Reply<T> = oneshot::Sender<Result<T, SysError>>;

/// A `sys` request, queued in the system lane.
pub(crate) enum SysRequest {
    GetState(Reply<SysState>),
    Suspend(Reply<()>),
    Resume(Reply<()>),
    Trace(Tracer, Reply<()>),
}

impl std::fmt::Debug for SysRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SysRequest::GetState(_) => "GetState",
            SysRequest::Suspend(_) => "Suspend",
            SysRequest::Resume(_) => "Resume",
            SysRequest::Trace(..) => "Trace",
        })
    }
}

impl SysRequest {
    /// Answers with an error (a plain process has no `sys` loop).
    pub(crate) fn refuse(self, err: SysError) {
        match self {
            SysRequest::GetState(r) => drop(r.send(Err(err))),
            SysRequest::Suspend(r) | SysRequest::Resume(r) | SysRequest::Trace(_, r) => {
                drop(r.send(Err(err)))
            }
        }
    }
}

/// One attached trace: a bounded channel that never makes the process wait.
pub(crate) struct Tracer {
    tx: mpsc::Sender<TraceEvent>,
    dropped: Arc<AtomicU64>,
}

impl Tracer {
    pub(super) fn new(tx: mpsc::Sender<TraceEvent>, dropped: Arc<AtomicU64>) -> Tracer {
        Tracer { tx, dropped }
    }
}

/// A behaviour loop's `sys` state.
#[derive(Default)]
pub(crate) struct Sys {
    suspended: bool,
    tracers: Vec<Tracer>,
}

impl Sys {
    pub(crate) fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Whether anything is traced: checked before building an event, so an untraced behaviour
    /// pays one branch per event.
    #[inline]
    pub(crate) fn tracing(&self) -> bool {
        !self.tracers.is_empty()
    }

    /// Records `event` to every attached trace; a full trace drops it (and counts it), a
    /// dropped one is detached.
    pub(crate) fn trace(&mut self, pid: Pid, event: Traced, detail: Option<String>) {
        if self.tracers.is_empty() {
            return;
        }
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let event = TraceEvent {
            pid,
            at_ms,
            event,
            detail,
        };
        self.tracers.retain(|t| match t.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                t.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// Answers a request. `view` gives a state machine's current state and the behaviour's
    /// view of its state; it is called only for `GetState`.
    pub(crate) fn handle(
        &mut self,
        pid: Pid,
        behaviour: &'static str,
        req: SysRequest,
        view: impl FnOnce() -> (Option<String>, StateView),
    ) {
        match req {
            SysRequest::GetState(reply) => {
                let (state, view) = view();
                self.tracers.retain(|t| !t.tx.is_closed());
                let _ = reply.send(Ok(SysState {
                    pid,
                    behaviour,
                    state,
                    view,
                    suspended: self.suspended,
                    tracers: self.tracers.len(),
                }));
            }
            SysRequest::Suspend(reply) => {
                if !self.suspended {
                    self.suspended = true;
                    self.trace(pid, Traced::Suspended, None);
                }
                let _ = reply.send(Ok(()));
            }
            SysRequest::Resume(reply) => {
                if self.suspended {
                    self.suspended = false;
                    self.trace(pid, Traced::Resumed, None);
                }
                let _ = reply.send(Ok(()));
            }
            SysRequest::Trace(tracer, reply) => {
                // Detached ones go first, so repeated traces of a process do not pile up.
                self.tracers.retain(|t| !t.tx.is_closed());
                if self.tracers.len() >= super::MAX_TRACES {
                    let _ = reply.send(Err(SysError::TooManyTraces(pid)));
                    return;
                }
                self.tracers.push(tracer);
                let _ = reply.send(Ok(()));
            }
        }
    }
}
