//! The behaviour's side of `sys`: the requests, and what each behaviour loop keeps to answer
//! them (suspended or not, the traces attached).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{StateView, SysError, SysState, TraceEvent, Traced, MAX_DETAIL, MAX_VIEW};
use crate::{ExitReason, Pid};

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
    counts: Arc<super::DropCounts>,
}

impl Tracer {
    pub(super) fn new(tx: mpsc::Sender<TraceEvent>, counts: Arc<super::DropCounts>) -> Tracer {
        Tracer { tx, counts }
    }

    /// Queues `event`, after a notice of what was dropped before it if there is room for both.
    /// False once the trace has been dropped. What is dropped and not yet told is shared with
    /// the reader, which tells it itself when it finds the queue empty: otherwise a trace whose
    /// last events were dropped would never say so.
    fn send(&mut self, event: &TraceEvent) -> bool {
        use mpsc::error::TrySendError;
        let untold = self.counts.untold.swap(0, Ordering::AcqRel);
        if untold > 0 {
            let notice = TraceEvent {
                event: Traced::Dropped { count: untold },
                detail: None,
                ..event.clone()
            };
            match self.tx.try_send(notice) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.counts.untold.fetch_add(untold, Ordering::AcqRel);
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                self.counts.untold.fetch_add(1, Ordering::AcqRel);
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// Runs one of the behaviour's view callbacks (`state_view`, `trace_view`, a state's `Debug`)
/// with panics caught: looking at a process must never stop it.
pub(crate) fn caught<T>(view: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(view))
        .map_err(|p| ExitReason::from_panic(p).to_string())
}

/// A trace detail from a behaviour's `trace_view`, with panics caught.
pub(crate) fn detail(view: impl FnOnce() -> Option<String>) -> Option<String> {
    caught(view).unwrap_or_else(|panic| Some(format!("(trace_view failed: {panic})")))
}

/// A value's `Debug`, with panics caught.
pub(crate) fn debug_text(value: &impl std::fmt::Debug) -> String {
    caught(|| format!("{value:?}")).unwrap_or_else(|panic| format!("(Debug failed: {panic})"))
}

/// `text` cut to at most `max` bytes (at a character boundary), saying so.
pub(crate) fn capped(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push_str(" … (cut)");
    }
    text
}

/// A behaviour loop's `sys` state.
#[derive(Default)]
pub(crate) struct Sys {
    suspended: bool,
    tracers: Vec<Tracer>,
    /// A request just taken from the mailbox, for the loop to answer next.
    pub(crate) inbox: Option<Box<SysRequest>>,
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

    /// Records `event` to every attached trace, with the detail `detail` gives (called only
    /// when traced, with panics caught, cut to [`MAX_DETAIL`]); a full trace drops it (and
    /// counts it, and says so in the next event that fits), a dropped one is detached.
    pub(crate) fn trace(
        &mut self,
        pid: Pid,
        event: Traced,
        detail: impl FnOnce() -> Option<String>,
    ) {
        if self.tracers.is_empty() {
            return;
        }
        let detail = match caught(detail) {
            Ok(d) => d.map(|d| capped(d, MAX_DETAIL)),
            Err(panic) => Some(format!("(trace_view failed: {panic})")),
        };
        let event = TraceEvent {
            pid,
            at_ms: super::now_ms(),
            event,
            detail,
        };
        self.tracers.retain_mut(|t| t.send(&event));
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
                let (state, view) = match caught(view) {
                    Ok((state, view)) => (state.map(|s| capped(s, MAX_DETAIL)), cap_view(view)),
                    Err(panic) => (
                        None,
                        StateView::Text(format!("(state_view failed: {panic})")),
                    ),
                };
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
                    self.trace(pid, Traced::Suspended, || None);
                }
                let _ = reply.send(Ok(()));
            }
            SysRequest::Resume(reply) => {
                if self.suspended {
                    self.suspended = false;
                    self.trace(pid, Traced::Resumed, || None);
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

/// A view cut to [`MAX_VIEW`] bytes (a JSON view too big becomes its text, cut).
fn cap_view(view: StateView) -> StateView {
    match view {
        StateView::Text(t) => StateView::Text(capped(t, MAX_VIEW)),
        StateView::Json(v) => {
            let text = v.to_string();
            if text.len() > MAX_VIEW {
                StateView::Text(capped(text, MAX_VIEW))
            } else {
                StateView::Json(v)
            }
        }
        hidden => hidden,
    }
}
