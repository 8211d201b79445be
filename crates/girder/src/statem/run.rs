//! The generic state machine loop, written once for every [`StateMachine`].

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::{Action, BadTransition, StateEvent, StateMachine, StateMachineRef, Transition};
use crate::behaviour::{self, guarded, Msg, SourceId, Sources, Starter};
use crate::call::watch;
use crate::sys::{self, Sys, SysRequest, Traced};
use crate::StartError;
use crate::{Addr, Context, Event, ExitReason, Node, Pid, SpawnOptions};

/// The message type of a state machine's mailbox: the [`Msg`] every behaviour takes. Build
/// these through [`StateMachineRef`]'s methods; the type shows in [`StateMachineRef::addr`] and
/// [`StateMachineContext`].
pub type StateMachineMsg<S> =
    Msg<<S as StateMachine>::Call, <S as StateMachine>::Cast, <S as StateMachine>::Info>;

/// What a state machine's callbacks see: the process [`Context`] (through `Deref`: pid, node,
/// links, monitors, exit trapping) plus helpers.
///
/// ```
/// use girder::statem::{Action, StateEvent, StateMachine, StateMachineContext, Transition};
/// use girder::ExitReason;
///
/// /// Watches a process and goes to `true` when it exits.
/// struct Watch(girder::Pid);
///
/// impl StateMachine for Watch {
///     type State = bool; type Call = girder::ReplyTo<bool>; type Cast = (); type Info = (); type Timeout = ();
///
///     async fn init(&mut self, ctx: &mut StateMachineContext<Self>) -> Result<(bool, Vec<Action<Self>>), girder::InitError> {
///         ctx.monitor(self.0);
///         Ok((false, vec![]))
///     }
///
///     async fn handle_event(&mut self, gone: &bool, event: StateEvent<Self>, _: &mut StateMachineContext<Self>) -> Transition<Self> {
///         match event {
///             StateEvent::Down(_) => Transition::next(true),
///             StateEvent::Call(from) => Transition::keep().with(Action::reply(from, *gone)),
///             _ => Transition::keep(),
///         }
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = girder::Node::new("docs");
/// let target = node.spawn(|_: girder::Context<()>| async { ExitReason::Normal });
/// let watch = girder::statem::start(&node, Watch(target.pid())).await.unwrap();
/// // The `Down` is queued before `wait_exit` returns, and overtakes the call.
/// target.wait_exit().await;
/// assert_eq!(watch.call(|r| r).await, Ok(true));
/// # }
/// ```
pub struct StateMachineContext<S: StateMachine> {
    ctx: Context<StateMachineMsg<S>>,
    parent: Option<Pid>,
    sources: Sources<S::Info>,
    sys: Sys,
}

/// What the machine's loop takes next: a mailbox event or a source's item.
enum Next<S: StateMachine> {
    Event(Event<StateMachineMsg<S>>),
    Source(S::Info),
    Sys(SysRequest),
}

impl<S: StateMachine> StateMachineContext<S> {
    /// Adds an event source: every item of `stream` arrives as [`StateEvent::Info`]`(wrap(Some(item)))`,
    /// and its end once as `wrap(None)`; polled by the machine's own task, beside its mailbox,
    /// an item taken only when it is about to be handled (see
    /// [`ServerContext::add_source`](crate::ServerContext::add_source)).
    pub fn add_source<St, F>(&mut self, stream: St, wrap: F) -> SourceId
    where
        St: futures_util::Stream + Send + 'static,
        F: FnMut(Option<St::Item>) -> S::Info + Send + 'static,
    {
        self.sources.add(stream, wrap)
    }

    /// Removes an event source, dropping its stream. False if it had ended or was removed.
    pub fn remove_source(&mut self, id: SourceId) -> bool {
        self.sources.remove(id)
    }

    /// Takes an event source's stream back, with what it has buffered (see
    /// [`ServerContext::take_source`](crate::ServerContext::take_source)).
    pub fn take_source<St>(&mut self, id: SourceId) -> Option<St>
    where
        St: futures_util::Stream + Unpin + 'static,
    {
        self.sources.take(id)
    }

    /// How many event sources the machine has.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// The next mailbox event (system lane first, always) or source item, taking turns.
    fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Next<S>> {
        // A `sys` request taken from the mailbox comes first.
        if self.sys.inbox.is_some() {
            return Poll::Ready(Next::Sys(*self.sys.inbox.take().expect("checked")));
        }
        match self.poll_mailbox_or_sources(cx) {
            Poll::Pending if self.sys.inbox.is_some() => {
                Poll::Ready(Next::Sys(*self.sys.inbox.take().expect("checked")))
            }
            next => next,
        }
    }

    #[inline(always)]
    fn poll_mailbox_or_sources(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Next<S>> {
        let suspended = self.sys.is_suspended();
        let inbox = &mut self.sys.inbox;
        if suspended {
            return self
                .ctx
                .poll_suspended(cx, self.parent, inbox)
                .map(Next::Event);
        }
        if self.sources.is_empty() {
            return self.ctx.poll_event(cx, inbox).map(Next::Event);
        }
        if !self.ctx.has_sys() && self.sources.take_turn() {
            if let Poll::Ready(info) = self.sources.poll_next(cx) {
                return Poll::Ready(Next::Source(info));
            }
            return self.ctx.poll_event(cx, inbox).map(Next::Event);
        }
        if let Poll::Ready(e) = self.ctx.poll_event(cx, inbox) {
            return Poll::Ready(Next::Event(e));
        }
        if inbox.is_some() {
            return Poll::Pending;
        }
        self.sources.poll_next(cx).map(Next::Source)
    }

    /// Records an event to the attached traces.
    fn trace(&mut self, event: Traced, detail: Option<String>) {
        let pid = self.ctx.pid();
        self.sys.trace(pid, event, || detail);
    }

    /// A handle to this machine.
    pub fn me(&self) -> StateMachineRef<S> {
        StateMachineRef {
            addr: self.ctx.addr(),
        }
    }

    /// The process that started this machine linked, if any.
    pub fn parent(&self) -> Option<Pid> {
        self.parent
    }
}

impl<S: StateMachine> Deref for StateMachineContext<S> {
    type Target = Context<StateMachineMsg<S>>;
    fn deref(&self) -> &Self::Target {
        &self.ctx
    }
}

impl<S: StateMachine> DerefMut for StateMachineContext<S> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.ctx
    }
}

pub(super) async fn start<S: StateMachine>(
    node: &Node,
    machine: S,
    opts: SpawnOptions,
    name: Option<&str>,
) -> Result<Addr<StateMachineMsg<S>>, StartError> {
    let parent = opts.parent();
    let name = name.map(str::to_string);
    behaviour::start(node, opts, "statem", move |ctx, starter| {
        let ctx = StateMachineContext {
            ctx,
            parent,
            sources: Sources::new(),
            sys: Sys::default(),
        };
        run(machine, ctx, name, starter)
    })
    .await
}

/// `now + delay`; a delay too long to represent (`Duration::MAX`) means "never" (OTP's
/// `infinity`): about 30 years away, as tokio's own far future.
fn deadline(now: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    now.checked_add(delay.min(FAR))
        .expect("the clock is 30 years from overflowing")
}

/// Pending timeouts. Deadlines are kept here and one reusable timer sleeps until the nearest.
struct Timers<S: StateMachine> {
    state: Option<(Instant, S::Timeout)>,
    event: Option<(Instant, S::Timeout)>,
    generic: Vec<(&'static str, Instant, S::Timeout)>,
}

impl<S: StateMachine> Timers<S> {
    fn nearest(&self) -> Option<Instant> {
        let s = self.state.as_ref().map(|(d, _)| *d);
        let e = self.event.as_ref().map(|(d, _)| *d);
        let g = self.generic.iter().map(|(_, d, _)| *d).min();
        [s, e, g].into_iter().flatten().min()
    }

    /// Takes the earliest timeout that is due, as its event.
    fn take_due(&mut self, now: Instant) -> Option<StateEvent<S>> {
        let nearest = self.nearest().filter(|d| *d <= now)?;
        if self.state.as_ref().is_some_and(|(d, _)| *d == nearest) {
            return self.state.take().map(|(_, m)| StateEvent::StateTimeout(m));
        }
        if self.event.as_ref().is_some_and(|(d, _)| *d == nearest) {
            return self.event.take().map(|(_, m)| StateEvent::EventTimeout(m));
        }
        let i = self.generic.iter().position(|(_, d, _)| *d == nearest)?;
        let (name, _, msg) = self.generic.remove(i);
        Some(StateEvent::Timeout { name, msg })
    }
}

enum Incoming<S: StateMachine> {
    /// An event, and the identity of its call if it is one (see `call::watch`).
    Event(StateEvent<S>, Option<crate::call::watch::CallId>),
    Stop(ExitReason),
    /// Resumed from a suspension: look at the replay queue again.
    Resumed,
}

/// How a trace shows an event (a state change is traced where it happens).
fn traced<S: StateMachine>(event: &StateEvent<S>) -> Option<Traced> {
    Some(match event {
        StateEvent::Call(_) => Traced::Call,
        StateEvent::Cast(_) => Traced::Cast,
        StateEvent::Info(_) => Traced::Info,
        StateEvent::Exit { from, reason } => Traced::Exit {
            from: *from,
            reason: reason.to_string(),
        },
        StateEvent::Down(d) => Traced::Down {
            pid: d.pid,
            reason: d.reason.to_string(),
        },
        StateEvent::StateTimeout(_) | StateEvent::EventTimeout(_) | StateEvent::Timeout { .. } => {
            Traced::Timeout
        }
        StateEvent::Enter { .. } => return None,
    })
}

struct Machine<S: StateMachine> {
    machine: S,
    ctx: StateMachineContext<S>,
    state: S::State,
    timers: Timers<S>,
    /// Postponed events, waiting for the next state change.
    postponed: VecDeque<StateEvent<S>>,
    /// Events to handle before the mailbox: inserted events, then postponed events released by a
    /// state change.
    replay: VecDeque<StateEvent<S>>,
    sleep: Option<Pin<Box<Sleep>>>,
}

/// As the server's: a function returning an `async move` block, so the machine and its context
/// are kept once in the process's future, not twice (an `async fn` keeps its arguments and
/// their moved copies side by side).
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn run<S: StateMachine>(
    mut machine: S,
    mut ctx: StateMachineContext<S>,
    name: Option<String>,
    starter: Starter,
) -> impl std::future::Future<Output = ExitReason> + Send {
    async move {
        let starter = match starter.register(&ctx, name.as_deref()) {
            Ok(s) => s,
            Err(reason) => return reason,
        };
        let (state, actions) = match starter.init(machine.init(&mut ctx)).await {
            Ok(init) => init,
            Err(reason) => return reason,
        };
        let mut m = Machine {
            machine,
            ctx,
            state,
            timers: Timers {
                state: None,
                event: None,
                generic: Vec::new(),
            },
            postponed: VecDeque::new(),
            replay: VecDeque::new(),
            sleep: None,
        };
        m.apply_actions(actions);
        let mut stopping = None;
        if S::state_enter() {
            let old = m.state.clone();
            stopping = m.enter(old).await;
        }
        let reason = match stopping {
            Some(reason) => reason,
            None => m.serve().await,
        };
        m.ctx.record_exit_reason(&reason);
        m.ctx.trace(
            Traced::Stopping {
                reason: reason.to_string(),
            },
            None,
        );
        let _ = guarded(m.machine.terminate(&reason, &m.state, &mut m.ctx)).await;
        reason
    }
}

impl<S: StateMachine> Machine<S> {
    async fn serve(&mut self) -> ExitReason {
        loop {
            // Inserted and postponed events wait too while the machine is suspended.
            let replayed = match self.ctx.sys.is_suspended() {
                false => self.replay.pop_front(),
                true => None,
            };
            let (event, tag) = match replayed {
                Some(e) => (e, None),
                None => match self.next_event().await {
                    Incoming::Event(e, tag) => (e, tag),
                    Incoming::Stop(reason) => return reason,
                    Incoming::Resumed => continue,
                },
            };
            if self.ctx.sys.tracing() {
                if let Some(kind) = traced(&event) {
                    let detail = sys::detail(|| S::trace_view(&event));
                    self.ctx.trace(kind, detail);
                }
            }
            // Any event cancels the event timeout (one that fired was taken already).
            self.timers.event = None;
            let noted = watch::begin(tag);
            let handled = guarded(self.machine.handle_event(&self.state, event, &mut self.ctx));
            let stop = match handled.await {
                Ok(t) => self.transition(t).await,
                Err(panic) => Some(panic),
            };
            // After the transition's actions, which may reply to the call.
            watch::end(noted, self.ctx.node(), self.ctx.pid());
            if let Some(reason) = stop {
                return reason;
            }
        }
    }

    /// Waits for the next mailbox event or timeout. When both are ready the mailbox goes first
    /// (so an event that came in time still cancels an event timeout); the mailbox's receive
    /// budget bounds how long a due timeout can wait behind a busy mailbox.
    async fn next_event(&mut self) -> Incoming<S> {
        loop {
            let deadline = self.timers.nearest();
            if let Some(d) = deadline {
                match &mut self.sleep {
                    Some(s) => s.as_mut().reset(d),
                    None => self.sleep = Some(Box::pin(tokio::time::sleep_until(d))),
                }
            }
            let ctx = &mut self.ctx;
            let sleep = &mut self.sleep;
            let got = poll_fn(|cx| {
                if let Poll::Ready(e) = ctx.poll_next(cx) {
                    return Poll::Ready(Some(e));
                }
                // A suspended machine's timeouts fire once it is resumed.
                if ctx.sys.is_suspended() {
                    return Poll::Pending;
                }
                if let (Some(_), Some(s)) = (deadline, sleep.as_mut()) {
                    if s.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                }
                Poll::Pending
            })
            .await;
            let mut tag = None;
            let got = match got {
                Some(Next::Source(info)) => return Incoming::Event(StateEvent::Info(info), None),
                Some(Next::Event(e)) => Some(e),
                Some(Next::Sys(req)) => {
                    let was_suspended = self.ctx.sys.is_suspended();
                    let (pid, name) = (self.ctx.pid(), self.ctx.behaviour_name());
                    let (state, machine) = (&self.state, &self.machine);
                    self.ctx.sys.handle(pid, name, req, || {
                        (Some(format!("{state:?}")), machine.state_view())
                    });
                    if was_suspended && !self.ctx.sys.is_suspended() {
                        // Replayed events go before the mailbox again.
                        return Incoming::Resumed;
                    }
                    continue;
                }
                None => None,
            };
            let event = match got {
                None => match self.timers.take_due(Instant::now()) {
                    Some(e) => e,
                    None => continue,
                },
                // Its caller has given up and others wait: dropped before it starts.
                Some(Event::Message(Msg::Call(request)))
                    if request.stale(self.ctx.mailbox_len() > 0) =>
                {
                    self.ctx.node().inner.counters.call_expired();
                    continue;
                }
                Some(Event::Message(Msg::Call(request))) => {
                    let (req, t) = request.into_parts();
                    tag = t;
                    StateEvent::Call(req)
                }
                Some(Event::Message(Msg::Cast(msg))) => StateEvent::Cast(msg),
                Some(Event::Message(Msg::Info(msg))) => StateEvent::Info(msg),
                Some(Event::Stop(reason)) => return Incoming::Stop(reason),
                Some(Event::Exit { from, reason }) if Some(from) == self.ctx.parent => {
                    return Incoming::Stop(reason)
                }
                Some(Event::Exit { from, reason }) => StateEvent::Exit { from, reason },
                Some(Event::Down(d)) => StateEvent::Down(d),
            };
            return Incoming::Event(event, tag);
        }
    }

    /// Applies a transition; `Some(reason)` when the machine must stop.
    async fn transition(&mut self, t: Transition<S>) -> Option<ExitReason> {
        // Kept even on a stop: dropped with the machine, after its exit reason is recorded, so
        // a call among them ends with that reason.
        if let Some(event) = t.postponed {
            self.postponed.push_back(event);
        }
        if let Some(reason) = t.stop {
            // Replies given with the stop are still sent, as in OTP; inserted events are never
            // handled.
            self.apply_actions(t.actions);
            return Some(reason);
        }
        let changed = matches!(&t.next, Some(next) if *next != self.state);
        let mut old = None;
        if changed {
            let next = t.next.expect("a change has a next state");
            if self.ctx.sys.tracing() {
                let (from, to) = (sys::debug_text(&self.state), sys::debug_text(&next));
                self.ctx.trace(Traced::StateChange { from, to }, None);
            }
            old = Some(std::mem::replace(&mut self.state, next));
            self.timers.state = None;
            // Postponed events come back first, in their original order.
            while let Some(e) = self.postponed.pop_back() {
                self.replay.push_front(e);
            }
        }
        // Inserted events go before the released postponed ones, as in OTP.
        self.apply_actions(t.actions);
        match old {
            Some(old) if S::state_enter() => self.enter(old).await,
            _ => None,
        }
    }

    /// The state-enter call; it may set timeouts and reply, but not change state, postpone or
    /// insert events.
    async fn enter(&mut self, old: S::State) -> Option<ExitReason> {
        let event = StateEvent::Enter { old };
        let t = match guarded(self.machine.handle_event(&self.state, event, &mut self.ctx)).await {
            Ok(t) => t,
            Err(panic) => return Some(panic),
        };
        if let Some(reason) = t.stop {
            self.apply_actions(t.actions);
            return Some(reason);
        }
        let state = || format!("{:?}", self.state);
        let bad = if let Some(next) = t.next.as_ref().filter(|n| **n != self.state) {
            Some(BadTransition::StateChange {
                from: state(),
                to: format!("{next:?}"),
            })
        } else if t.postponed.is_some() {
            Some(BadTransition::Postpone { state: state() })
        } else if t.actions.iter().any(|a| matches!(a, Action::NextEvent(_))) {
            Some(BadTransition::NextEvent { state: state() })
        } else {
            None
        };
        if let Some(bad) = bad {
            return Some(ExitReason::error(bad.to_string()));
        }
        self.apply_actions(t.actions);
        None
    }

    /// Applies actions. Inserted events ([`Action::NextEvent`]) are queued to be handled next,
    /// in the order given, before anything already queued.
    fn apply_actions(&mut self, actions: Vec<Action<S>>) {
        let now = Instant::now();
        let mut inserted = Vec::new();
        for action in actions {
            match action {
                Action::StateTimeout(d, msg) => self.timers.state = Some((deadline(now, d), msg)),
                Action::EventTimeout(d, msg) => self.timers.event = Some((deadline(now, d), msg)),
                Action::Timeout(name, d, msg) => {
                    self.timers.generic.retain(|(n, _, _)| *n != name);
                    self.timers.generic.push((name, deadline(now, d), msg));
                }
                Action::CancelTimeout(name) => self.timers.generic.retain(|(n, _, _)| *n != name),
                Action::CancelStateTimeout => self.timers.state = None,
                Action::Reply(reply) => reply.send(),
                Action::NextEvent(event) => inserted.push(event),
            }
        }
        for e in inserted.into_iter().rev() {
            self.replay.push_front(e);
        }
    }
}
