//! The generic state machine loop, written once for every [`StateMachine`].

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::Poll;

use tokio::time::{Instant, Sleep};

use super::{Action, BadTransition, StateEvent, StateMachine, StateMachineRef, Transition};
use crate::behaviour::{self, guarded, Starter};
use crate::server::{ReplyTo, StartError};
use crate::{Addr, Context, Event, ExitReason, Node, Pid, SpawnOptions};

/// The message type of a state machine's mailbox. Build these through [`StateMachineRef`].
pub enum StateMachineMsg<S: StateMachine> {
    /// A request and where its reply goes.
    Call(S::Call, ReplyTo<S::Reply>),
    /// A fire-and-forget request.
    Cast(S::Cast),
    /// Any other message.
    Info(S::Info),
}

/// What a state machine's callbacks see: the process [`Context`] plus helpers.
pub struct StateMachineContext<S: StateMachine> {
    ctx: Context<StateMachineMsg<S>>,
    parent: Option<Pid>,
}

impl<S: StateMachine> StateMachineContext<S> {
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
        run(machine, StateMachineContext { ctx, parent }, name, starter)
    })
    .await
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
    Event(StateEvent<S>),
    Stop(ExitReason),
}

struct Machine<S: StateMachine> {
    machine: S,
    ctx: StateMachineContext<S>,
    state: S::State,
    timers: Timers<S>,
    /// Postponed events, waiting for the next state change.
    postponed: VecDeque<StateEvent<S>>,
    /// Events to handle before the mailbox: postponed events released by a state change.
    replay: VecDeque<StateEvent<S>>,
    sleep: Option<Pin<Box<Sleep>>>,
}

async fn run<S: StateMachine>(
    mut machine: S,
    mut ctx: StateMachineContext<S>,
    name: Option<String>,
    starter: Starter,
) -> ExitReason {
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
    let _ = guarded(m.machine.terminate(&reason, &m.state, &mut m.ctx)).await;
    reason
}

impl<S: StateMachine> Machine<S> {
    async fn serve(&mut self) -> ExitReason {
        loop {
            let event = match self.replay.pop_front() {
                Some(e) => e,
                None => match self.next_event().await {
                    Incoming::Event(e) => e,
                    Incoming::Stop(reason) => return reason,
                },
            };
            // Any event cancels the event timeout (one that fired was taken already).
            self.timers.event = None;
            let t =
                match guarded(self.machine.handle_event(&self.state, event, &mut self.ctx)).await {
                    Ok(t) => t,
                    Err(panic) => return panic,
                };
            if let Some(reason) = self.transition(t).await {
                return reason;
            }
        }
    }

    /// Waits for the next mailbox event or timeout.
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
                if let Poll::Ready(e) = ctx.poll_recv(cx) {
                    return Poll::Ready(Some(e));
                }
                if let (Some(_), Some(s)) = (deadline, sleep.as_mut()) {
                    if s.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                }
                Poll::Pending
            })
            .await;
            let event = match got {
                None => match self.timers.take_due(Instant::now()) {
                    Some(e) => e,
                    None => continue,
                },
                Some(Event::Message(StateMachineMsg::Call(req, from))) => {
                    StateEvent::Call(req, from)
                }
                Some(Event::Message(StateMachineMsg::Cast(msg))) => StateEvent::Cast(msg),
                Some(Event::Message(StateMachineMsg::Info(msg))) => StateEvent::Info(msg),
                Some(Event::Stop(reason)) => return Incoming::Stop(reason),
                Some(Event::Exit { from, reason }) if Some(from) == self.ctx.parent => {
                    return Incoming::Stop(reason)
                }
                Some(Event::Exit { from, reason }) => StateEvent::Exit { from, reason },
                Some(Event::Down(d)) => StateEvent::Down(d),
            };
            return Incoming::Event(event);
        }
    }

    /// Applies a transition; `Some(reason)` when the machine must stop.
    async fn transition(&mut self, t: Transition<S>) -> Option<ExitReason> {
        if let Some(reason) = t.stop {
            // Replies given with the stop are still sent, as in OTP.
            self.apply_actions(t.actions);
            return Some(reason);
        }
        if let Some(event) = t.postponed {
            self.postponed.push_back(event);
        }
        let changed = matches!(&t.next, Some(next) if *next != self.state);
        let mut old = None;
        if changed {
            let next = t.next.expect("a change has a next state");
            old = Some(std::mem::replace(&mut self.state, next));
            self.timers.state = None;
            // Postponed events come back first, in their original order.
            while let Some(e) = self.postponed.pop_back() {
                self.replay.push_front(e);
            }
        }
        self.apply_actions(t.actions);
        match old {
            Some(old) if S::state_enter() => self.enter(old).await,
            _ => None,
        }
    }

    /// The state-enter call; it may set timeouts and reply, but not change state or postpone.
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
        if let Some(next) = t.next.filter(|n| *n != self.state) {
            let err = BadTransition {
                from: format!("{:?}", self.state),
                to: format!("{next:?}"),
            };
            return Some(ExitReason::error(err.to_string()));
        }
        if t.postponed.is_some() {
            return Some(ExitReason::error("a state enter call may not postpone"));
        }
        self.apply_actions(t.actions);
        None
    }

    fn apply_actions(&mut self, actions: Vec<Action<S>>) {
        let now = Instant::now();
        for action in actions {
            match action {
                Action::StateTimeout(d, msg) => self.timers.state = Some((now + d, msg)),
                Action::EventTimeout(d, msg) => self.timers.event = Some((now + d, msg)),
                Action::Timeout(name, d, msg) => {
                    self.timers.generic.retain(|(n, _, _)| *n != name);
                    self.timers.generic.push((name, now + d, msg));
                }
                Action::CancelTimeout(name) => self.timers.generic.retain(|(n, _, _)| *n != name),
                Action::CancelStateTimeout => self.timers.state = None,
                Action::Reply(to, value) => to.reply(value),
            }
        }
    }
}
