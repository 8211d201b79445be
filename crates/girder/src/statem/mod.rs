//! State machines: the `gen_statem` behaviour.
//!
//! A [`StateMachine`] has explicit states and one event callback, `handle_event(state, event)`,
//! that returns a [`Transition`]: stay or move to another state, plus [`Action`]s. The library
//! owns the loop: calls and casts, state-enter calls, timeouts, postponed and inserted events,
//! trapped exits, crash handling and `terminate`.
//!
//! * **State enter calls**: with [`StateMachine::state_enter`] on, every state change (and the
//!   initial state) is followed by an [`StateEvent::Enter`] call in the new state. It may set
//!   timeouts and reply, but not change the state, postpone or insert events (that stops the
//!   machine with a [`BadTransition`] error, as in OTP).
//! * **Timeouts**: a *state timeout* is cancelled by any state change; an *event timeout* is
//!   cancelled by any event; a *generic timeout* has a name, survives state changes and is
//!   cancelled only by setting it again or by [`Action::CancelTimeout`]. Setting a timeout again
//!   restarts it. The loop keeps the deadlines itself (no timer messages in flight), so a
//!   cancelled or replaced timeout never fires.
//! * **Postpone**: [`Transition::postpone`] keeps the current event and delivers it again after
//!   the next state change, before newer events, in the original order. (OTP's `postpone` is an
//!   action on the current event; in Rust the handler owns the event, so it hands it back.)
//! * **Inserted events**: [`Action::NextEvent`] queues an event to be handled next, before
//!   released postponed events and the mailbox.
//! * A panic in a callback ends the machine with [`ExitReason::Panic`] after `terminate` runs; a
//!   pending caller gets [`CallError::Exited`] at once. A machine started linked to a parent and
//!   trapping exits stops (running `terminate`) on an exit signal from that parent.

mod error;
mod run;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

pub use error::BadTransition;
pub use run::{StateMachineContext, StateMachineMsg};

use crate::server::{CallError, InitError, ReplyTo, StartError, DEFAULT_CALL_TIMEOUT};
use crate::sys::StateView;
use crate::{Addr, Down, ExitReason, Node, Pid, SendError, SpawnOptions};

/// An event handed to [`StateMachine::handle_event`].
///
/// ```
/// use girder::statem::{StateEvent, Transition};
/// # use girder::statem::{Action, StateMachine, StateMachineContext};
/// # use girder::ExitReason;
/// # struct Light;
/// # impl StateMachine for Light {
/// #     type State = bool; type Call = girder::ReplyTo<bool>; type Cast = (); type Info = &'static str; type Timeout = ();
/// #     async fn init(&mut self, _: &mut StateMachineContext<Self>) -> Result<(bool, Vec<Action<Self>>), girder::InitError> { Ok((false, vec![])) }
/// #     async fn handle_event(&mut self, on: &bool, event: StateEvent<Self>, _: &mut StateMachineContext<Self>) -> Transition<Self> { step(*on, event) }
/// # }
/// // One function of (state, event) decides everything.
/// fn step(on: bool, event: StateEvent<Light>) -> Transition<Light> {
///     match event {
///         StateEvent::Call(from) => {
///             from.reply(on);
///             Transition::keep()
///         }
///         StateEvent::Cast(()) => Transition::next(!on),
///         StateEvent::Info("off") => Transition::next(false),
///         // Enter calls, timeouts, trapped exits, downs and other infos: ignored here.
///         _ => Transition::keep(),
///     }
/// }
/// assert_eq!(format!("{:?}", StateEvent::<Light>::Enter { old: true }), "Enter { old: true }");
/// ```
pub enum StateEvent<S: StateMachine> {
    /// A call: its request carries the [`ReplyTo`] to answer through (now, later, or with
    /// [`Action::reply`]).
    Call(S::Call),
    /// A cast.
    Cast(S::Cast),
    /// Any other message.
    Info(S::Info),
    /// The state-enter call after a state change (or for the initial state, where `old` is the
    /// initial state itself). Only sent when [`StateMachine::state_enter`] is true.
    Enter {
        /// The state left.
        old: S::State,
    },
    /// The state timeout fired.
    StateTimeout(S::Timeout),
    /// The event timeout fired.
    EventTimeout(S::Timeout),
    /// A generic named timeout fired.
    Timeout {
        /// Its name.
        name: &'static str,
        /// Its content.
        msg: S::Timeout,
    },
    /// A trapped exit signal from a process other than the parent.
    Exit {
        /// Who exited.
        from: Pid,
        /// Why.
        reason: ExitReason,
    },
    /// A monitored process exited.
    Down(Down),
}

impl<S: StateMachine> Debug for StateEvent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateEvent::Call(..) => f.write_str("Call(..)"),
            StateEvent::Cast(_) => f.write_str("Cast(..)"),
            StateEvent::Info(_) => f.write_str("Info(..)"),
            StateEvent::Enter { old } => write!(f, "Enter {{ old: {old:?} }}"),
            StateEvent::StateTimeout(_) => f.write_str("StateTimeout(..)"),
            StateEvent::EventTimeout(_) => f.write_str("EventTimeout(..)"),
            StateEvent::Timeout { name, .. } => write!(f, "Timeout({name})"),
            StateEvent::Exit { from, reason } => write!(f, "Exit({from}, {reason})"),
            StateEvent::Down(d) => write!(f, "Down({d:?})"),
        }
    }
}

/// Something the machine does as part of a transition (or from `init`). A timeout with
/// `Duration::MAX` never fires (OTP's `infinity`), but still replaces one set before.
///
/// ```
/// use std::time::Duration;
/// use girder::statem::{Action, StateEvent, Transition};
/// # use girder::statem::{StateMachine, StateMachineContext};
/// # use girder::ExitReason;
/// # #[derive(Clone, Debug, PartialEq)] enum Phase { Idle, Busy }
/// # struct Job;
/// # impl StateMachine for Job {
/// #     type State = Phase; type Call = (); type Cast = (); type Info = &'static str; type Timeout = &'static str;
/// #     async fn init(&mut self, _: &mut StateMachineContext<Self>) -> Result<(Phase, Vec<Action<Self>>), girder::InitError> { Ok((Phase::Idle, vec![])) }
/// #     async fn handle_event(&mut self, _: &Phase, _: StateEvent<Self>, _: &mut StateMachineContext<Self>) -> Transition<Self> { Transition::keep() }
/// # }
/// let start_job: Transition<Job> = Transition::next(Phase::Busy)
///     // Give up on the job if still busy after 5 s (cancelled by leaving Busy).
///     .with(Action::StateTimeout(Duration::from_secs(5), "job took too long"))
///     // Complain if nothing at all happens for 1 s (cancelled by any event).
///     .with(Action::EventTimeout(Duration::from_secs(1), "idle"))
///     // A heartbeat that keeps running whatever the state.
///     .with(Action::Timeout("heartbeat", Duration::from_millis(500), "beat"))
///     // Handle this before anything in the mailbox.
///     .with(Action::NextEvent(StateEvent::Info("job started")));
/// ```
pub enum Action<S: StateMachine> {
    /// Sends `msg` as [`StateEvent::StateTimeout`] after the delay unless the state changes
    /// first. Setting it again replaces it.
    StateTimeout(Duration, S::Timeout),
    /// Sends `msg` as [`StateEvent::EventTimeout`] after the delay unless any event arrives
    /// first.
    EventTimeout(Duration, S::Timeout),
    /// Starts (or restarts) the generic timeout `name`; it survives state changes.
    Timeout(&'static str, Duration, S::Timeout),
    /// Cancels the generic timeout `name`, if set.
    CancelTimeout(&'static str),
    /// Cancels the state timeout, if set.
    CancelStateTimeout,
    /// Replies to a call once the transition is applied (OTP's `{reply, From, Reply}`); build
    /// it with [`Action::reply`].
    Reply(Reply),
    /// Handles this event next, before postponed events and the mailbox (OTP's `next_event`).
    /// Several are handled in the order given. Ignored when the transition stops the machine;
    /// not allowed in a state-enter call.
    NextEvent(StateEvent<S>),
}

/// A reply ready to send once a transition is applied ([`Action::reply`]).
pub struct Reply(Box<dyn FnOnce() + Send>);

impl Reply {
    pub(crate) fn send(self) {
        (self.0)()
    }
}

impl<S: StateMachine> Action<S> {
    /// Replies `value` through `from` when the transition is applied: after the state change,
    /// before the next event (OTP's `{reply, From, Reply}` action). Replying through `from`
    /// directly in the handler works as well.
    pub fn reply<T: Send + 'static>(from: ReplyTo<T>, value: T) -> Self {
        Action::Reply(Reply(Box::new(move || from.reply(value))))
    }
}

/// The outcome of handling an event: the next state (or the same), actions, maybe a postponed
/// event, or a stop.
///
/// ```
/// use girder::statem::{Action, StateMachine, Transition};
/// # use girder::statem::{StateEvent, StateMachineContext};
/// # struct M;
/// # impl StateMachine for M {
/// #     type State = u8; type Call = (); type Cast = (); type Info = (); type Timeout = ();
/// #     async fn init(&mut self, _: &mut StateMachineContext<Self>) -> Result<(u8, Vec<Action<Self>>), girder::InitError> { Ok((0, vec![])) }
/// #     async fn handle_event(&mut self, _: &u8, _: StateEvent<Self>, _: &mut StateMachineContext<Self>) -> Transition<Self> { Transition::keep() }
/// # }
/// let t: Transition<M> = Transition::next(1).with(Action::StateTimeout(std::time::Duration::from_secs(1), ()));
/// ```
pub struct Transition<S: StateMachine> {
    pub(crate) next: Option<S::State>,
    pub(crate) actions: Vec<Action<S>>,
    pub(crate) postponed: Option<StateEvent<S>>,
    pub(crate) stop: Option<ExitReason>,
}

impl<S: StateMachine> Transition<S> {
    /// Stay in the current state.
    pub fn keep() -> Self {
        Transition {
            next: None,
            actions: Vec::new(),
            postponed: None,
            stop: None,
        }
    }

    /// Move to `state` (a move to the same state is not a state change).
    pub fn next(state: S::State) -> Self {
        Transition {
            next: Some(state),
            ..Self::keep()
        }
    }

    /// Run `terminate` and exit with `reason`. Replies among the actions are still sent.
    pub fn stop(reason: ExitReason) -> Self {
        Transition {
            stop: Some(reason),
            ..Self::keep()
        }
    }

    /// Adds an action.
    pub fn with(mut self, action: Action<S>) -> Self {
        self.actions.push(action);
        self
    }

    /// Keeps `event` (the one being handled) to be delivered again after the next state change.
    /// If this transition itself changes the state, it comes back at once, in the new state.
    pub fn postpone(mut self, event: StateEvent<S>) -> Self {
        self.postponed = Some(event);
        self
    }
}

/// The `gen_statem` behaviour (handle-event-function mode).
///
/// ```
/// use std::time::Duration;
/// use girder::statem::{self, Action, StateEvent, StateMachine, StateMachineContext, Transition};
/// use girder::{ExitReason, Node, ReplyTo};
///
/// #[derive(Clone, Debug, PartialEq)]
/// enum Door { Locked, Open }
///
/// struct Lock { code: u32 }
///
/// impl StateMachine for Lock {
///     type State = Door;
///     type Call = (u32, ReplyTo<bool>); // try a code; is it right?
///     type Cast = ();
///     type Info = ();
///     type Timeout = ();
///
///     async fn init(&mut self, _: &mut StateMachineContext<Self>) -> Result<(Door, Vec<Action<Self>>), girder::InitError> {
///         Ok((Door::Locked, vec![]))
///     }
///
///     async fn handle_event(&mut self, state: &Door, event: StateEvent<Self>, _: &mut StateMachineContext<Self>) -> Transition<Self> {
///         match (state, event) {
///             (Door::Locked, StateEvent::Call((code, from))) if code == self.code => {
///                 from.reply(true);
///                 // Lock again after a while unless something else happens to the state.
///                 Transition::next(Door::Open).with(Action::StateTimeout(Duration::from_millis(20), ()))
///             }
///             (_, StateEvent::Call((_, from))) => { from.reply(false); Transition::keep() }
///             (Door::Open, StateEvent::StateTimeout(())) => Transition::next(Door::Locked),
///             _ => Transition::keep(),
///         }
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// let door = statem::start(&node, Lock { code: 1234 }).await.unwrap();
/// assert!(!door.call(|r| (1, r)).await.unwrap());
/// assert!(door.call(|r| (1234, r)).await.unwrap());
/// # }
/// ```
pub trait StateMachine: Sized + Send + 'static {
    /// The machine's states. (`Sync` because `handle_event` borrows the state across awaits.)
    type State: Clone + PartialEq + Debug + Send + Sync + 'static;
    /// Requests that expect a reply, each carrying the [`ReplyTo`] its reply goes to (as a
    /// [`Server`](crate::Server)'s do).
    type Call: Send + 'static;
    /// Fire-and-forget requests.
    type Cast: Send + 'static;
    /// Other messages.
    type Info: Send + 'static;
    /// The content of timeout events.
    type Timeout: Send + 'static;

    /// Runs in the new process before [`start`] returns: the initial state and actions (timeouts
    /// to start, events to insert). [`InitError::Stop`] or a panic aborts the start: the
    /// process exits with that reason and `start` returns [`StartError::Init`];
    /// [`InitError::Ignore`] declines to start (`start` returns [`StartError::Ignored`]).
    fn init(
        &mut self,
        ctx: &mut StateMachineContext<Self>,
    ) -> impl Future<Output = Result<(Self::State, Vec<Action<Self>>), InitError>> + Send;

    /// Whether state-enter calls are made. Default: no.
    fn state_enter() -> bool {
        false
    }

    /// Handles one event in `state`.
    fn handle_event(
        &mut self,
        state: &Self::State,
        event: StateEvent<Self>,
        ctx: &mut StateMachineContext<Self>,
    ) -> impl Future<Output = Transition<Self>> + Send;

    /// What [`sys::get_state`](crate::sys::get_state) shows of the machine's data (its
    /// current state is always shown, through `Debug`). Hidden unless you opt in, with
    /// `StateView::debug(self)` or `StateView::json(..)`.
    fn state_view(&self) -> StateView {
        StateView::Hidden
    }

    /// How a [`sys::trace`](crate::sys::trace) shows an event; `None` (the default) shows its
    /// kind only. Opt in with `Some(format!("{event:?}"))` when the message types are `Debug`.
    fn trace_view(event: &StateEvent<Self>) -> Option<String> {
        let _ = event;
        None
    }

    /// Runs when the machine stops: after a [`Transition::stop`], a panic, a [`BadTransition`],
    /// [`StateMachineRef::stop`], or an exit signal from the parent while trapping exits. It does
    /// not run when the process is killed outright (as in OTP).
    fn terminate(
        &mut self,
        reason: &ExitReason,
        state: &Self::State,
        ctx: &mut StateMachineContext<Self>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (reason, state, ctx);
        async {}
    }
}

/// A typed handle to a running [`StateMachine`].
///
/// ```
/// # use girder::statem::{Action, StateEvent, StateMachine, StateMachineContext, Transition};
/// # struct Toggle;
/// # impl StateMachine for Toggle {
/// #     type State = bool; type Call = girder::ReplyTo<bool>; type Cast = (); type Info = (); type Timeout = ();
/// #     async fn init(&mut self, _: &mut StateMachineContext<Self>) -> Result<(bool, Vec<Action<Self>>), girder::InitError> { Ok((false, vec![])) }
/// #     async fn handle_event(&mut self, on: &bool, event: StateEvent<Self>, _: &mut StateMachineContext<Self>) -> Transition<Self> {
/// #         match event {
/// #             StateEvent::Call(from) => Transition::keep().with(Action::reply(from, *on)),
/// #             StateEvent::Cast(()) => Transition::next(!on),
/// #             _ => Transition::keep(),
/// #         }
/// #     }
/// # }
/// use girder::statem::{self, StateMachineRef};
/// use girder::{CallError, ExitReason, Node, SpawnOptions};
///
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// statem::start_with(&node, Toggle, SpawnOptions::new(), Some("toggle")).await.unwrap();
/// let toggle = StateMachineRef::<Toggle>::lookup(&node, "toggle").unwrap();
/// toggle.cast(()).unwrap();
/// assert_eq!(toggle.call(|r| r).await, Ok(true));
/// assert_eq!(toggle.stop(ExitReason::Shutdown).await, ExitReason::Shutdown);
/// // A call to a machine that is gone fails at once, saying why.
/// assert_eq!(toggle.call(|r| r).await, Err(CallError::Exited(ExitReason::Shutdown)));
/// # }
/// ```
pub struct StateMachineRef<S: StateMachine> {
    addr: Addr<StateMachineMsg<S>>,
}

crate::behaviour::handle!(StateMachineRef [S: StateMachine] [S], StateMachineMsg<S>);

impl<S: StateMachine> StateMachineRef<S> {
    /// Calls the machine with the request `make` builds around its reply handle, and waits up
    /// to [`DEFAULT_CALL_TIMEOUT`] for the reply. Ends at once with [`CallError::Exited`] if
    /// the machine is not alive or dies first.
    pub fn call<'a, R: Send + 'static>(
        &'a self,
        make: impl FnOnce(ReplyTo<R>) -> S::Call + Send + 'a,
    ) -> impl Future<Output = Result<R, CallError>> + Send + 'a {
        crate::behaviour::call(&self.addr, make, DEFAULT_CALL_TIMEOUT)
    }

    /// Calls the machine and waits up to `timeout` for the reply (`Duration::MAX`: forever).
    pub fn call_timeout<'a, R: Send + 'static>(
        &'a self,
        make: impl FnOnce(ReplyTo<R>) -> S::Call + Send + 'a,
        timeout: Duration,
    ) -> impl Future<Output = Result<R, CallError>> + Send + 'a {
        crate::behaviour::call(&self.addr, make, timeout)
    }

    /// Sends a cast. Fails only if the machine is not alive or its bounded mailbox is full.
    pub fn cast(&self, msg: S::Cast) -> Result<(), SendError<S::Cast>> {
        crate::behaviour::cast(&self.addr, msg)
    }

    /// Sends an info message (handled as [`StateEvent::Info`]).
    pub fn info(&self, msg: S::Info) -> Result<(), SendError<S::Info>> {
        crate::behaviour::info(&self.addr, msg)
    }
}

/// Starts `machine` in a new, unlinked process and waits for its `init`.
///
/// ```
/// # use girder::statem::{Action, StateEvent, StateMachine, StateMachineContext, Transition};
/// # use girder::ExitReason;
/// # struct Toggle;
/// # impl StateMachine for Toggle {
/// #     type State = bool; type Call = girder::ReplyTo<bool>; type Cast = (); type Info = (); type Timeout = ();
/// #     async fn init(&mut self, _: &mut StateMachineContext<Self>) -> Result<(bool, Vec<Action<Self>>), girder::InitError> { Ok((false, vec![])) }
/// #     async fn handle_event(&mut self, on: &bool, event: StateEvent<Self>, _: &mut StateMachineContext<Self>) -> Transition<Self> {
/// #         match event {
/// #             StateEvent::Call(from) => Transition::keep().with(Action::reply(from, *on)),
/// #             _ => Transition::keep(),
/// #         }
/// #     }
/// # }
/// # #[tokio::main] async fn main() {
/// let node = girder::Node::new("docs");
/// let toggle = girder::statem::start(&node, Toggle).await.unwrap();
/// assert_eq!(toggle.call(|r| r).await, Ok(false));
/// # }
/// ```
pub async fn start<S: StateMachine>(
    node: &Node,
    machine: S,
) -> Result<StateMachineRef<S>, StartError> {
    start_with(node, machine, SpawnOptions::new(), None).await
}

/// Starts `machine` with spawn options (link to a parent, trap exits, mailbox bound) and, if
/// `name` is given, registers it under that name before `init` runs (failing with
/// [`StartError::AlreadyStarted`] if the name is taken).
///
/// ```
/// # use girder::statem::{Action, StateEvent, StateMachine, StateMachineContext, Transition};
/// # use girder::ExitReason;
/// # struct Idle;
/// # impl StateMachine for Idle {
/// #     type State = (); type Call = (); type Cast = (); type Info = (); type Timeout = ();
/// #     async fn init(&mut self, _: &mut StateMachineContext<Self>) -> Result<((), Vec<Action<Self>>), girder::InitError> { Ok(((), vec![])) }
/// #     async fn handle_event(&mut self, _: &(), _: StateEvent<Self>, _: &mut StateMachineContext<Self>) -> Transition<Self> { Transition::keep() }
/// # }
/// use girder::{statem, Node, SpawnOptions, StartError};
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// let first = statem::start_with(&node, Idle, SpawnOptions::new().capacity(64), Some("idle"))
///     .await
///     .unwrap();
/// let second = statem::start_with(&node, Idle, SpawnOptions::new(), Some("idle")).await;
/// assert_eq!(second.unwrap_err(), StartError::AlreadyStarted(first.pid()));
/// # }
/// ```
pub async fn start_with<S: StateMachine>(
    node: &Node,
    machine: S,
    opts: SpawnOptions,
    name: Option<&str>,
) -> Result<StateMachineRef<S>, StartError> {
    run::start(node, machine, opts, name)
        .await
        .map(|addr| StateMachineRef { addr })
}
